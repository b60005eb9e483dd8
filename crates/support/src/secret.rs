//! Secrets in memory: a value that is never printed, and blanking one out
//! of text that might quote it.

use std::fmt;

/// A secret value (a hook token, a bot token, a NATS token). `Debug` and
/// `Display` print `[redacted]`; [`Secret::expose`] hands the value to
/// whatever sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the request or connection that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `text` with every occurrence of `secret` replaced by `[redacted]`
/// (`text` as it is when the secret is empty).
pub fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() || !text.contains(secret) {
        text.to_owned()
    } else {
        text.replace(secret, "[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] Secret([redacted])");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redact_blanks_every_occurrence() {
        assert_eq!(
            redact("a hunter2 b hunter2", "hunter2"),
            "a [redacted] b [redacted]"
        );
        assert_eq!(redact("fine", ""), "fine");
        assert_eq!(redact("fine", "x"), "fine");
    }
}
