//! Writing to stdout: a closed pipe ends the command quietly.

use std::io::{IsTerminal, Write};

use crate::exit::CliError;

/// Writes `text` to stdout in one go.
pub(crate) fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(CliError::Output)
}

/// Pretty JSON with a trailing newline.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Internal(format!("serializing output: {e}")))?;
    text.push('\n');
    print(&text)
}

/// Whether to colour stdout: only on a terminal, and not when `NO_COLOR` is
/// set to anything but the empty string (<https://no-color.org>).
pub(crate) fn stdout_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
