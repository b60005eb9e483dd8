//! Secrets in memory: a value that is never printed, and blanking one out
//! of text that might quote it; and [`read_secret`], which reads one from
//! the environment variable or file a configuration *names* (tokens are
//! never written into orch's configuration).

use std::fmt;
use std::path::{Path, PathBuf};

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

/// Why [`read_secret`] found no secret. Messages name the variable or the
/// file, never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// Neither a variable nor a file was named.
    #[error("no {what} configured (token_env or token_file)")]
    NotConfigured {
        /// What the secret is for (`hook token`, `NATS token`).
        what: &'static str,
    },
    /// The named variable is not set (or not UTF-8).
    #[error("the {what} variable {var} is not set")]
    NotSet {
        /// What the secret is for.
        what: &'static str,
        /// The variable.
        var: String,
    },
    /// The named file cannot be read.
    #[error("cannot read the {what} file {}: {error}", path.display())]
    Unreadable {
        /// What the secret is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        error: std::io::Error,
    },
    /// The variable or file holds only whitespace.
    #[error("the {what} is empty")]
    Empty {
        /// What the secret is for.
        what: &'static str,
    },
}

/// Reads a secret from the environment variable `env` (first) or the file
/// `file` a configuration names, without the whitespace around it (a file
/// usually ends with a newline). `what` names the secret in errors (`hook
/// token` → "the hook token variable X is not set"); no error holds the
/// value.
pub fn read_secret(
    env: Option<&str>,
    file: Option<&Path>,
    what: &'static str,
) -> Result<Secret, SecretError> {
    let value = match (env, file) {
        (Some(var), _) => std::env::var(var).map_err(|_| SecretError::NotSet {
            what,
            var: var.to_owned(),
        })?,
        (None, Some(path)) => {
            std::fs::read_to_string(path).map_err(|error| SecretError::Unreadable {
                what,
                path: path.to_owned(),
                error,
            })?
        }
        (None, None) => return Err(SecretError::NotConfigured { what }),
    };
    let value = value.trim();
    if value.is_empty() {
        return Err(SecretError::Empty { what });
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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

    #[test]
    fn read_secret_names_the_source_never_the_value() {
        // A variable no test sets: the environment is shared by the test
        // threads, so none is set here.
        let unset = "ORCH_SUPPORT_TEST_SURELY_UNSET_TOKEN";
        let err = read_secret(Some(unset), None, "hook token").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the hook token variable {unset} is not set")
        );
        let none = read_secret(None, None, "NATS token").unwrap_err();
        assert_eq!(
            none.to_string(),
            "no NATS token configured (token_env or token_file)"
        );

        let dir = std::env::temp_dir().join(format!("orch-secret-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "  hunter2-value\n").unwrap();
        let read = read_secret(None, Some(&file), "hook token").unwrap();
        assert_eq!(read.expose(), "hunter2-value");
        std::fs::write(&file, " \n").unwrap();
        let empty = read_secret(None, Some(&file), "hook token").unwrap_err();
        assert_eq!(empty.to_string(), "the hook token is empty");
        let missing = dir.join("missing");
        let err = read_secret(None, Some(&missing), "NATS token").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot read the NATS token file {}: ",
                missing.display()
            )),
            "{text}"
        );
        std::fs::write(&file, "hunter2-value").unwrap();
        for e in [err, empty] {
            assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
