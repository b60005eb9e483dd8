//! Channel context: a Discord channel's recent messages, rendered for a
//! task message (`orch context`, `delegate --channel-context`, a step's
//! `context:`).

use std::sync::Arc;

use orch_discord::{BotToken, DiscordClient, DiscordConfig, DiscordError, RenderOptions};
use orch_registry::Registry;
use orch_workflow::ContextSource;

use crate::app::error::AppError;
use crate::app::wiring::Setup;

/// Most messages one context may hold.
const MAX_MESSAGES: usize = 1000;

/// Fetches the newest `messages` of `channel` (a name from the registry's
/// channels map, or a raw channel id) and renders them for a task message.
pub(crate) async fn channel_context(
    setup: &Setup,
    registry: &Registry,
    channel: &str,
    messages: usize,
) -> Result<String, AppError> {
    if messages == 0 || messages > MAX_MESSAGES {
        return Err(AppError::Usage(format!(
            "--messages must be between 1 and {MAX_MESSAGES}"
        )));
    }
    let Some((name, id)) = registry.resolve_channel(channel) else {
        let known: Vec<&str> = registry.channels().keys().map(String::as_str).collect();
        return Err(AppError::Usage(format!(
            "unknown channel {channel:?}: give a Discord channel id or one of the registry's channel names ({})",
            if known.is_empty() {
                "none defined".to_owned()
            } else {
                known.join(", ")
            }
        )));
    };
    let d = &setup.config.discord;
    let mut config = DiscordConfig::new(bot_token(setup)?);
    config.base_url = d.base_url.clone();
    config.max_retry_wait = d.max_retry_wait.0;
    let client = DiscordClient::new(config).map_err(map_error)?;
    let fetched = client
        .recent_messages(&id, messages)
        .await
        .map_err(map_error)?;
    let options = RenderOptions {
        max_chars: d.max_chars,
        channel_label: name.map_or_else(|| id.clone(), |n| format!("#{n}")),
        bot_user_id: None,
    };
    Ok(orch_discord::render(&fetched, &options).text)
}

/// The bot token from `discord.token_env` (default `DISCORD_BOT_TOKEN`),
/// else `discord.token_file`. Errors name where to put it, never a value.
fn bot_token(setup: &Setup) -> Result<BotToken, AppError> {
    let d = &setup.config.discord;
    if let Some(value) = std::env::var(&d.token_env)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        return Ok(BotToken::new(value.trim().to_owned()));
    }
    if let Some(file) = &d.token_file {
        let value = std::fs::read_to_string(file).map_err(|e| {
            AppError::Usage(format!(
                "cannot read the Discord token file {}: {e}",
                file.display()
            ))
        })?;
        if !value.trim().is_empty() {
            return Ok(BotToken::new(value.trim().to_owned()));
        }
    }
    Err(AppError::Usage(format!(
        "no Discord bot token: set ${} or discord.token_file in orch.yaml",
        d.token_env
    )))
}

/// Token, permission and channel problems are the user's to fix (exit 2);
/// rate limits and network trouble are transport errors (exit 4).
fn map_error(e: DiscordError) -> AppError {
    let message = format!("discord: {e}");
    match e {
        DiscordError::Unauthorized
        | DiscordError::Forbidden { .. }
        | DiscordError::UnknownChannel { .. }
        | DiscordError::Config { .. } => AppError::Usage(message),
        _ => AppError::Transport(message),
    }
}

/// `context:` in a workflow: [`channel_context`] for the executor.
pub(crate) struct Channels {
    pub(crate) setup: Arc<Setup>,
    pub(crate) registry: Arc<Registry>,
}

#[async_trait::async_trait]
impl ContextSource for Channels {
    async fn fetch(&self, channel: &str, messages: usize) -> Result<String, String> {
        channel_context(&self.setup, &self.registry, channel, messages)
            .await
            .map_err(|e| e.to_string())
    }
}
