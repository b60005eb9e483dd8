//! Credentials in URLs: `http://user:pass@host` must never be shown.
//!
//! orch refuses URLs with credentials where it uses them (the OpenClaw
//! gateway, the Discord API, NATS servers: tokens have their own settings),
//! but a config that holds one is still *shown* (`orch config show`, the
//! error that refuses it, a registry listing). [`redact_userinfo`] is what
//! every such place applies first.

use std::borrow::Cow;

/// What the userinfo of a URL is replaced by.
pub const REDACTED: &str = "[redacted]";

/// `text` with the userinfo (`user:pass@`) of every URL in it replaced by
/// `[redacted]@`: `http://me:hunter2@gw:18789/hooks` becomes
/// `http://[redacted]@gw:18789/hooks`. Works on any text, not only on one
/// valid URL (an error message quoting a URL that does not parse, a
/// comma-separated server list): after each `://`, the authority runs to
/// the next `/`, `?`, `#`, quote, angle bracket, comma, line break or end,
/// and if it holds an `@`, everything before its last `@` goes. A space
/// does not end it: a password with a space in it (not a valid URL, but
/// quoted by the error that says so) is redacted too, at the price of
/// over-redacting prose that follows a bare `scheme://host` and holds an
/// `@` before any `/`. Borrows when there is nothing to redact.
pub fn redact_userinfo(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find("://") {
        let start = search + found + 3;
        let len = text[start..]
            .find(|c: char| {
                matches!(
                    c,
                    '/' | '?' | '#' | '"' | '\'' | ',' | '<' | '>' | '\n' | '\r'
                )
            })
            .unwrap_or(text.len() - start);
        let authority = &text[start..start + len];
        if let Some(at) = authority.rfind('@') {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = start + at;
        }
        search = start + len;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_goes_and_the_rest_stays() {
        let cases = [
            ("http://127.0.0.1:18789", "http://127.0.0.1:18789"),
            (
                "http://me:hunter2@gw:18789/hooks",
                "http://[redacted]@gw:18789/hooks",
            ),
            ("https://hunter2@gw", "https://[redacted]@gw"),
            ("http://a:b@c@gw/x?u=v@w", "http://[redacted]@gw/x?u=v@w"),
            (
                "nats://u:p@h1:4222, nats://h2:4222,tls://t@h3",
                "nats://[redacted]@h1:4222, nats://h2:4222,tls://[redacted]@h3",
            ),
            (
                "the url \"http://me:pa ss@gw\" is not valid",
                "the url \"http://[redacted]@gw\" is not valid",
            ),
            ("mailto:me@example.com", "mailto:me@example.com"),
            ("no url at all @ here", "no url at all @ here"),
            ("http://", "http://"),
            ("ends with ://", "ends with ://"),
            ("http://é:ü@gw", "http://[redacted]@gw"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_userinfo(input), want, "{input:?}");
        }
        assert!(matches!(redact_userinfo("http://gw/a@b"), Cow::Borrowed(_)));
    }
}
