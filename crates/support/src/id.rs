//! The id rule of DESIGN §3, shared by run ids, step ids, registry agent
//! ids, a handoff's `agent` and every caller name: `[A-Za-z0-9._-]`, 1 to
//! 128 characters, and (stricter than the spec, so no id can be `.`, `..`
//! or a hidden temp file) a letter or digit first. Such an id is safe as a
//! file name, a NATS key token and a terminal string.

/// Longest id accepted (DESIGN §3).
pub const MAX_ID_LEN: usize = 128;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidId {
    /// The id is the empty string.
    #[error("id is empty")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("id is {len} characters long, the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Length of the rejected id in bytes.
        len: usize,
    },
    /// The id contains a character outside `[A-Za-z0-9._-]`.
    #[error("id {id:?} contains {ch:?}: only ASCII letters, digits, '.', '_' and '-' are allowed")]
    BadChar {
        /// The rejected id, shortened for display (`{:?}` escapes it).
        id: String,
        /// The first offending character.
        ch: char,
    },
    /// The id does not start with a letter or digit.
    #[error("id {id:?} must start with an ASCII letter or digit")]
    BadStart {
        /// The rejected id (only id characters, so safe to show).
        id: String,
    },
}

/// Checks `s` against the id rule.
pub fn validate_id(s: &str) -> Result<(), InvalidId> {
    if s.is_empty() {
        return Err(InvalidId::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(InvalidId::TooLong { len: s.len() });
    }
    if let Some(ch) = s.chars().find(|&c| !is_id_char(c)) {
        let id: String = s.chars().take(40).collect();
        return Err(InvalidId::BadChar { id, ch });
    }
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(InvalidId::BadStart { id: s.to_owned() });
    }
    Ok(())
}

/// Whether `c` may appear in an id.
pub fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        for ok in [
            "a",
            "webster",
            "tech-lead",
            "wf-x.step.1",
            "A_9",
            &"x".repeat(128),
        ] {
            assert_eq!(validate_id(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(validate_id(""), Err(InvalidId::Empty));
        assert_eq!(
            validate_id(&"x".repeat(129)),
            Err(InvalidId::TooLong { len: 129 })
        );
        for (bad, ch) in [
            ("webster\0evil", '\0'),
            ("web\nster", '\n'),
            ("a\u{1b}[31m", '\u{1b}'),
            ("abc\u{202e}", '\u{202e}'),
            ("a b", ' '),
            ("../x", '/'),
        ] {
            assert!(
                matches!(validate_id(bad), Err(InvalidId::BadChar { ch: c, .. }) if c == ch),
                "{bad:?}"
            );
        }
        for bad in [".hidden", "-x", "_x", ".", ".."] {
            assert!(
                matches!(validate_id(bad), Err(InvalidId::BadStart { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn messages_never_carry_raw_control_characters() {
        let err = validate_id("webster\u{1b}]0;pwned\u{7}")
            .unwrap_err()
            .to_string();
        assert!(!err.chars().any(char::is_control), "{err:?}");
    }
}
