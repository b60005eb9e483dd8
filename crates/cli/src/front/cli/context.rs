//! `orch context <channel> --messages N`.

use crate::app::context::channel_context;
use crate::app::error::{CliError, Exit};
use crate::front::cli::args::{ContextArgs, GlobalArgs};
use crate::front::out;
use crate::wiring::Setup;

pub(crate) async fn run(global: &GlobalArgs, args: ContextArgs) -> Result<Exit, CliError> {
    let setup = Setup::load(global)?;
    let registry = setup.registry()?;
    let mut text = channel_context(&setup, &registry, &args.channel, args.messages).await?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    out::print(&text)?;
    Ok(Exit::Ok)
}
