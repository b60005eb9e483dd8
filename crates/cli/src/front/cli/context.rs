//! `orch context <channel> --messages N`.

use crate::app::context::channel_context;
use crate::app::error::{AppError, Exit};
use crate::app::wiring::Setup;
use crate::front::cli::args::{ContextArgs, GlobalArgs};
use crate::front::out;

pub(crate) async fn run(global: &GlobalArgs, args: ContextArgs) -> Result<Exit, AppError> {
    let setup = Setup::load(&global.settings())?;
    let registry = setup.registry()?;
    let mut text = channel_context(&setup, &registry, &args.channel, args.messages).await?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    out::print(&text)?;
    Ok(Exit::Ok)
}
