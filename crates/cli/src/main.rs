//! `orch`: the command-line composition root.
//!
//! `main` parses arguments, builds the tokio runtime, runs one command and
//! maps its outcome to the documented exit code (see [`exit::Exit`]). Every
//! concrete type (store, policy, later transports and routers) is chosen
//! here and nowhere else.

// The binary's job is to talk to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod cmd;
mod config;
mod exit;
mod out;
mod wiring;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::exit::{CliError, Exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Internal.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            if !err.is_broken_pipe() {
                eprintln!("error: {err}");
            }
            err.exit().into()
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
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
    }?;
    Ok(exit.into())
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
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
