//! Writing to the terminal: human text is made safe, a closed pipe ends the
//! command quietly.
//!
//! What agents write is hostile input. Every renderer cleans the values it
//! interpolates (`orch_support::text::one_line` inside a line, `terminal`
//! for a multi-line body, so a value can neither start a line nor hide one),
//! and everything human this module writes passes `terminal` once more: a
//! value a renderer forgot can still not send an escape sequence to the
//! terminal. JSON is written as serde made it (it escapes control
//! characters itself, and JSON output is for machines).

use std::io::{IsTerminal, Write};

use orch_support::text;
/// A value shown inside one line of human output (or a multi-line body:
/// `terminal`).
pub(crate) use orch_support::text::{one_line, terminal};

use crate::app::error::AppError;

/// Writes human text to stdout in one go, hazardous characters made
/// visible.
pub(crate) fn print(s: &str) -> Result<(), AppError> {
    write_stdout(&text::terminal(s))
}

/// Writes text as it is: a machine format that escapes on its own terms
/// (JSON, the Prometheus exposition format), or text this program styled
/// itself (ANSI colours, on a terminal only) whose values the renderer
/// already cleaned.
pub(crate) fn print_raw(s: &str) -> Result<(), AppError> {
    write_stdout(s)
}

fn write_stdout(s: &str) -> Result<(), AppError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(s.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(AppError::Output)
}

/// Pretty JSON with a trailing newline, exactly as serde wrote it.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), AppError> {
    let mut json = serde_json::to_string_pretty(value)
        .map_err(|e| AppError::Internal(format!("serializing output: {e}")))?;
    json.push('\n');
    write_stdout(&json)
}

/// Writes one diagnostic line (a newline is added) to stderr, hazardous
/// characters made visible. Errors writing to stderr are ignored, as
/// `eprintln!` would panic on them.
pub(crate) fn note(s: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{}", text::terminal(s));
}

/// Writes diagnostic text without a newline (a prompt) to stderr.
pub(crate) fn prompt(s: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{}", text::terminal(s)).and_then(|()| stderr.flush());
}

/// Whether to colour a stream: only on a terminal, and not when `NO_COLOR`
/// is set to anything but the empty string (<https://no-color.org>).
fn colour(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether to colour stdout.
pub(crate) fn stdout_colour() -> bool {
    colour(std::io::stdout().is_terminal())
}

/// Whether to colour stderr (log lines).
pub(crate) fn stderr_colour() -> bool {
    colour(std::io::stderr().is_terminal())
}
