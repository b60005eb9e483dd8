//! Text hygiene for hostile input.
//!
//! Agents write handoffs, workflow authors write names, gateways write
//! error bodies: none of it may reach a terminal raw. An ESC starts a CSI
//! or OSC sequence (recolour, move the cursor, set the window title, write
//! a clickable link, on some terminals query and inject input), a CR or BS
//! overwrites what was printed before, a NUL or BEL misbehaves in logs, and
//! the bidi controls (U+202A–U+202E, U+2066–U+2069) reorder what a reader
//! sees (the "Trojan Source" attack). Zero-width characters and Unicode
//! tag characters hide text from a reader that a model still reads.
//!
//! [`is_hazard`] is the one definition of such a character. Three ways to
//! deal with them:
//!
//! - [`terminal`]: multi-line text for a terminal (a handoff's result,
//!   notes). Line breaks and tabs stay; `\r\n` becomes `\n`; every other
//!   hazard is shown as a visible escape, `\u{1b}`, so nothing is hidden and
//!   nothing is executed.
//! - [`one_line`]: a value inside a line (an agent id, a workflow name, a
//!   status line): like [`terminal`], but line breaks and tabs are escaped
//!   too (`\n`, `\t`), so one value can never start a new output line.
//! - [`strip`] / [`squash`]: remove them instead, for text rendered into a
//!   task for a model (Discord channel history) or folded into one message.
//!
//! JSON output needs none of this: serde escapes every control character,
//! and JSON is for machines.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must never reach a terminal raw: C0 and C1 control
/// characters and DEL (`char::is_control`), plus the invisible characters
/// of [`is_invisible`].
pub fn is_hazard(c: char) -> bool {
    c.is_control() || is_invisible(c)
}

/// Characters that print as nothing but change what a reader sees or
/// hides text from them: zero-width spaces and joiners, bidi marks,
/// embeddings, overrides and isolates (U+200E/F, U+202A–U+202E,
/// U+2066–U+2069, U+061C), line and paragraph separators, word joiner and
/// invisible operators, the byte-order mark, and the tag characters
/// (U+E0000–U+E007F, used to smuggle text past readers).
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

/// Multi-line text made safe for a terminal: `\n` and `\t` are kept,
/// `\r\n` becomes `\n`, every other [`is_hazard`] character becomes a
/// visible escape (`\u{1b}`). Borrows when there is nothing to change.
pub fn terminal(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// A value made safe to show inside one line of terminal output: like
/// [`terminal`], and line breaks and tabs are escaped too (`\n`, `\r`,
/// `\t`). Borrows when there is nothing to change.
pub fn one_line(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, one_line: bool) -> Cow<'_, str> {
    let keep = |c: char| !(is_hazard(c) && (one_line || !matches!(c, '\n' | '\t')));
    if s.chars().all(keep) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if keep(c) {
            out.push(c);
            continue;
        }
        match c {
            '\r' if !one_line && chars.peek() == Some(&'\n') => {}
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// `s` without any [`is_hazard`] character but `\n` (`\r\n` and a lone
/// `\r` become `\n`; a tab becomes a space): for text rendered into a task
/// for a model, where an escape would only be noise.
pub fn strip(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' => out.push('\n'),
            '\t' => out.push(' '),
            c if is_hazard(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// `s` on one line: runs of whitespace and control characters fold into
/// one space, invisible characters go, and the ends are trimmed. For
/// quoting what a server said inside an error message.
pub fn squash(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(1024));
    let mut gap = false;
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() {
            gap = true;
        } else if is_invisible(c) {
            // Dropped without making a gap: `a\u{200b}b` reads as `ab`.
        } else {
            if gap && !out.is_empty() {
                out.push(' ');
            }
            gap = false;
            out.push(c);
        }
    }
    out
}

/// The first `max` characters of `s`, then `…` if anything was cut.
pub fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// At most `max` characters in all, the last one `…` when cut (nothing
/// for a `max` of 0).
pub fn shorten_within(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// A response body quoted for an error message (`"…"` with escapes), or
/// `(empty body)`.
pub fn quoted_body(s: &str) -> String {
    if s.is_empty() {
        "(empty body)".to_owned()
    } else {
        format!("{s:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character class the hardening issue names, in one string.
    const HOSTILE: &str =
        "a\u{1b}[31mred\u{1b}]0;title\u{7}b\rc\0d\u{202e}e\u{2066}f\u{9b}g\u{200b}h\u{e0041}";

    #[test]
    fn terminal_escapes_every_hazard_and_keeps_lines() {
        assert_eq!(
            terminal(HOSTILE),
            "a\\u{1b}[31mred\\u{1b}]0;title\\u{7}b\\rc\\u{0}d\\u{202e}e\\u{2066}f\\u{9b}g\\u{200b}h\\u{e0041}"
        );
        assert_eq!(terminal("one\r\ntwo\n\tthree"), "one\ntwo\n\tthree");
        assert!(matches!(
            terminal("plain text, ünïcödé ✓\n"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn one_line_never_breaks_a_line() {
        assert_eq!(one_line("web\nster\r\n\tx"), "web\\nster\\r\\n\\tx");
        let shown = one_line(HOSTILE);
        assert!(!shown.chars().any(is_hazard), "{shown:?}");
        assert!(matches!(one_line("tech-lead"), Cow::Borrowed(_)));
    }

    #[test]
    fn nothing_hazardous_survives_any_mode() {
        for c in (0..=0x10ffff)
            .filter_map(char::from_u32)
            .filter(|&c| is_hazard(c))
        {
            let s = format!("x{c}y");
            assert!(!one_line(&s).chars().any(is_hazard), "{c:?}");
            assert!(
                !terminal(&s)
                    .chars()
                    .any(|c| is_hazard(c) && c != '\n' && c != '\t'),
                "{c:?}"
            );
            assert!(
                !strip(&s).chars().any(|c| is_hazard(c) && c != '\n'),
                "{c:?}"
            );
            assert!(!squash(&s).chars().any(is_hazard), "{c:?}");
        }
    }

    #[test]
    fn strip_and_squash() {
        assert_eq!(strip("a\r\nb\rc\td\u{1b}[0m\u{202e}"), "a\nb\nc d[0m");
        assert_eq!(squash("  Bad\r\n\tgateway \u{200b}x\0 "), "Bad gateway x");
        assert_eq!(squash("a\u{200b}b"), "ab");
    }
}
