//! `orch`: the composition root.
//!
//! [`app`] is the application layer (configuration, wiring, the
//! operations); [`front`] holds the front ends, today the command line.
//! `main` parses arguments, builds the tokio runtime, runs one command and
//! maps its outcome to the documented exit code (see
//! [`app::error::Exit`]). Every concrete type (store, policy, transports,
//! router) is chosen in [`app::wiring`] and nowhere else.

// Everything the binary writes to the terminal goes through `out`, which
// makes hostile text safe: no `print!`/`eprint!` (clippy's print lints).

mod app;
mod front;

use std::process::ExitCode;

use clap::Parser;

use crate::app::error::{AppError, Exit};
use crate::front::cli::args::{Cli, Command};
use crate::front::{cli as cmd, out};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    report_panics();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out::note(&format!("error: cannot start the async runtime: {e}"));
            return Exit::Internal.into();
        }
    };
    // A panic is a bug; it ends the command with the internal-error code,
    // never with Rust's raw panic output (see `report_panics`).
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(run(cli))));
    let Ok(result) = result else {
        return Exit::Internal.into();
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if !err.is_broken_pipe() {
                out::note(&format!("error: {err}"));
            }
            err.exit().into()
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, AppError> {
    cli.check_ids()?;
    let exit = match cli.command {
        Command::Delegate(args) => cmd::delegate::run(&cli.global, args).await,
        Command::Handoff(cmd) => cmd::handoff::run(&cli.global, cmd).await,
        Command::Acl(cmd) => cmd::acl::run(&cli.global, cmd),
        Command::Route(args) => cmd::route::run(&cli.global, args),
        Command::Context(args) => cmd::context::run(&cli.global, args).await,
        Command::Registry(cmd) => cmd::registry::run(&cli.global, cmd),
        // A workflow run has one code beyond `Exit`: awaiting approval (20).
        Command::Workflow(args) => return cmd::workflow::run(&cli.global, args).await,
        Command::Config(cmd) => cmd::config::run(&cli.global, cmd),
        Command::Metrics(args) => cmd::metrics::run(&cli.global, args).await,
        Command::Skill(cmd) => cmd::skill::run(cmd),
        Command::Mcp(args) => crate::front::mcp::serve(&cli.global, args).await,
    }?;
    Ok(exit.into())
}

/// Replaces Rust's panic output (a raw message, maybe a backtrace notice)
/// with one escaped line that says what happened and where. A panic in a
/// background task (tokio catches those) is reported the same way; one in
/// the command itself ends it with [`Exit::Internal`].
fn report_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        out::note(&format!(
            "internal error: a bug in orch{place}: {}; please report it",
            out::one_line(&message)
        ));
    }));
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // A second initialisation can only happen in tests; ignoring it is right.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(log_fields())
        .with_writer(std::io::stderr)
        .with_ansi(out::stderr_colour())
        .with_target(false)
        .try_init();
}

/// How log fields are written: each value on one line with every hazardous
/// character escaped. Log fields carry what agents and servers wrote, and
/// tracing's own escaping leaves CR, NUL and bidi controls alone.
fn log_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use std::fmt::Write as _;

    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let mut shown = String::new();
        let _ = write!(shown, "{value:?}");
        let shown = out::one_line(&shown);
        if field.name() == "message" {
            write!(w, "{shown}")
        } else {
            write!(w, "{field}={shown}")
        }
    })
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    /// A log line with hostile text in its message and its fields comes out
    /// on one line with nothing a terminal would act on.
    #[test]
    fn log_lines_escape_hostile_fields() {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .map_err(|_| std::io::Error::other("poisoned"))?
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(super::log_fields())
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let detail = "gateway said \u{1b}[31mno\r\nnew line\u{202e}";
            tracing::warn!(detail, error = %"e\u{0}\u{7}", "agent wrote \u{1b}]0;title\u{7}: {}", "x\ry");
        });
        let bytes = buf.0.lock().map(|b| b.clone()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let line = text.strip_suffix('\n').unwrap_or(&text);
        assert!(!line.chars().any(orch_support::text::is_hazard), "{line:?}");
        assert!(
            line.contains(r"agent wrote \u{1b}]0;title\u{7}: x\ry"),
            "{line}"
        );
        assert!(line.contains(r"error=e\u{0}\u{7}"), "{line}");
    }
}
