//! Discord channel context (DESIGN §7): the recent messages of a channel,
//! fetched over Discord's REST API and rendered as text for an agent.
//!
//! [`DiscordClient::recent_messages`] asks `GET
//! {base_url}/channels/{id}/messages?limit=N[&before=<id>]` with
//! `Authorization: Bot <token>`, in pages of at most 100 (Discord's limit),
//! each page before the oldest message seen so far, and returns the newest
//! `count` messages **oldest first**. [`render`] turns them into lines such
//! as `[2026-11-25 10:03] Ada Lovelace: the margins look fine`, trimmed to
//! a character budget.
//!
//! Decisions a newcomer asks about:
//!
//! - **Errors say what to fix.** 401 is the token, 403 the bot's
//!   permissions in that channel, 404 (Discord code 10003) the channel id.
//!   A 429 is waited out (`retry_after`, seconds, from the body, else the
//!   `Retry-After` header) as long as the total wait stays within
//!   [`DiscordConfig::max_retry_wait`]; then [`DiscordError::RateLimited`].
//! - **The token is a [`BotToken`]**: `Debug`/`Display` print
//!   `[redacted]`, it is sent only in a header marked sensitive, and any
//!   quote of a Discord answer has it blanked out. Where the token comes
//!   from (environment, file) is the caller's business.
//! - **Tolerant decoding.** Unknown fields are ignored; a message without an
//!   author (Discord has system messages) is skipped with a warning; a page
//!   that is not a list of messages is a [`DiscordError::Decode`] that quotes
//!   the start of the body.
//! - **Sleeps are `tokio::time::sleep`**, so tests run the 429 path in
//!   paused time.
//! - **A leaf.** It knows no other orch crate but `orch-support`: the
//!   delegator takes rendered context text, not a Discord client, and the
//!   CLI (the composition root) asks this crate for the text.
#![warn(missing_docs)]

mod render;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::time::Duration;

use orch_support::http::{is_loopback, read_capped};
use orch_support::secret::redact;
use orch_support::text::{quoted_body, shorten, squash};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use self::render::{RenderOptions, Rendered, render};

/// Discord's REST API, version 10.
pub const DEFAULT_BASE_URL: &str = "https://discord.com/api/v10";
/// Default total time spent waiting out 429 answers in one
/// [`DiscordClient::recent_messages`] call.
pub const DEFAULT_MAX_RETRY_WAIT: Duration = Duration::from_secs(30);
/// Default time limit of one HTTP request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Discord's largest `limit` for one page of messages.
pub const MAX_PAGE_SIZE: usize = 100;
/// The most messages one [`DiscordClient::recent_messages`] call fetches
/// (ten pages).
pub const MAX_MESSAGES: usize = 1000;
/// The largest response body read (a page of 100 messages with big embeds
/// stays well below).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// How many characters of a Discord answer an error message quotes.
pub const MAX_QUOTE_CHARS: usize = 200;

/// Answers 429 at most this often in a row before giving up, whatever
/// `retry_after` says (a server that keeps answering `retry_after: 0`
/// must not make us spin).
const MAX_RATE_LIMIT_RETRIES: u32 = 20;
/// Retries of a 502/503/504, with these waits before them.
const SERVER_ERROR_BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(1)];
/// The wait when a 429 says nothing about how long to wait.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(1);
/// Discord's required `User-Agent` form: `DiscordBot ($url, $version)`.
const USER_AGENT: &str = concat!(
    "DiscordBot (",
    env!("CARGO_PKG_REPOSITORY"),
    ", ",
    env!("CARGO_PKG_VERSION"),
    ")"
);

/// A Discord bot token: `Debug` and `Display` print `[redacted]`; the only
/// way to the value is `expose`, called where it goes on the wire.
pub type BotToken = orch_support::secret::Secret;

/// Where and how to reach Discord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscordConfig {
    /// The API base, default [`DEFAULT_BASE_URL`]; tests point it at a
    /// local fake (`FakeDiscord::url()`).
    pub base_url: String,
    /// The bot token, sent as `Authorization: Bot <token>`.
    pub token: BotToken,
    /// Total time one [`DiscordClient::recent_messages`] call may spend
    /// waiting out 429 answers (default 30 s). A wait that would go past it
    /// is not started: the call fails with [`DiscordError::RateLimited`].
    pub max_retry_wait: Duration,
    /// Time limit of one HTTP request, connecting included (default 15 s).
    pub request_timeout: Duration,
}

impl DiscordConfig {
    /// Discord itself, with the defaults: 30 s of 429 waits, 15 s per
    /// request.
    pub fn new(token: BotToken) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            token,
            max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// A Discord message, as `GET /channels/{id}/messages` returns it (only
/// the fields channel context uses; unknown fields are ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Snowflake id; later messages have larger ids.
    pub id: String,
    /// Who wrote it.
    pub author: Author,
    /// The text; empty for messages with only attachments or embeds, and
    /// for other users' messages when the bot lacks the Message Content
    /// intent.
    #[serde(default)]
    pub content: String,
    /// When it was sent, ISO 8601 (`2026-11-25T10:03:12.345000+00:00`).
    pub timestamp: String,
    /// Attached files.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Embeds (link previews, bot cards).
    #[serde(default)]
    pub embeds: Vec<Embed>,
    /// The message this one replies to (or forwards).
    #[serde(default)]
    pub message_reference: Option<MessageReference>,
    /// The replied-to message itself, when Discord includes it (`null`
    /// when it was deleted).
    #[serde(default)]
    pub referenced_message: Option<Box<Message>>,
    /// Discord's message `type`: 0 a plain message, 19 a reply, 20/23 an
    /// application command; others are system messages (7: someone
    /// joined, 6: a pin, …).
    #[serde(default, rename = "type")]
    pub kind: u32,
}

/// A message's author.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Author {
    /// The user's snowflake id.
    pub id: String,
    /// The unique user name.
    pub username: String,
    /// The display name, if the user set one.
    #[serde(default)]
    pub global_name: Option<String>,
    /// Whether the author is a bot.
    #[serde(default)]
    pub bot: bool,
}

impl Author {
    /// The name people see: the display name, else the user name.
    pub fn display_name(&self) -> &str {
        match self.global_name.as_deref() {
            Some(name) if !name.trim().is_empty() => name,
            _ => &self.username,
        }
    }
}

/// An attached file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The file name.
    pub filename: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// MIME type, when Discord knows it.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Where to download it.
    #[serde(default)]
    pub url: Option<String>,
}

/// An embed (a link preview or a bot's card).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Embed {
    /// The embed's title.
    #[serde(default)]
    pub title: Option<String>,
    /// The embed's text.
    #[serde(default)]
    pub description: Option<String>,
    /// The link it is about.
    #[serde(default)]
    pub url: Option<String>,
}

/// What a message refers to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageReference {
    /// The referenced message's id.
    #[serde(default)]
    pub message_id: Option<String>,
    /// Discord's reference `type`: 0 a reply, 1 a forward.
    #[serde(default, rename = "type")]
    pub kind: u32,
}

/// What went wrong talking to Discord. Every message says what to fix;
/// none contains the token.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DiscordError {
    /// 401: Discord does not accept the token.
    #[error(
        "discord refused the bot token (401 Unauthorized): check DISCORD_BOT_TOKEN or the token file (token not shown)"
    )]
    Unauthorized,
    /// 403: the bot may not read the channel.
    #[error(
        "the bot cannot read discord channel {channel} (403 Forbidden): give it the View Channel and Read Message History permissions there"
    )]
    Forbidden {
        /// The channel id.
        channel: String,
    },
    /// 404 with Discord's code 10003: no such channel (or not one the bot
    /// can see at all).
    #[error(
        "unknown discord channel {channel} (404 Unknown Channel): check the channel id, or its name in the registry's channels map"
    )]
    UnknownChannel {
        /// The channel id.
        channel: String,
    },
    /// 429 for longer than [`DiscordConfig::max_retry_wait`] allows.
    #[error("{}", rate_limited_message(*.waited, *.retry_after, *.budget))]
    RateLimited {
        /// Time already spent waiting out 429 answers.
        waited: Duration,
        /// The wait Discord asked for last.
        retry_after: Duration,
        /// The configured budget ([`DiscordConfig::max_retry_wait`]).
        budget: Duration,
    },
    /// Any other HTTP answer that is not a page of messages.
    #[error("{message}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// What Discord said and, where known, what to do.
        message: String,
    },
    /// No answer: connection refused, TLS, timeout.
    #[error("{message}")]
    Connect {
        /// What failed, with the URL (no query, no token).
        message: String,
    },
    /// A 200 answer that is not a list of messages.
    #[error("{message}")]
    Decode {
        /// What is wrong, with the start of the body quoted.
        message: String,
    },
    /// A bad configuration or argument (URL, token shape, channel id,
    /// message count).
    #[error("{message}")]
    Config {
        /// What to fix.
        message: String,
    },
}

/// Fetches channel messages from Discord's REST API.
///
/// Holds one HTTP client (connection pool); cheap to share behind an `Arc`.
pub struct DiscordClient {
    client: reqwest::Client,
    /// The base URL without a trailing slash.
    base: String,
    /// `Bot <token>`, marked sensitive.
    auth: HeaderValue,
    token: BotToken,
    max_retry_wait: Duration,
    request_timeout: Duration,
}

impl fmt::Debug for DiscordClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordClient")
            .field("base_url", &self.base)
            .field("token", &self.token)
            .field("max_retry_wait", &self.max_retry_wait)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl DiscordClient {
    /// Checks `config` and builds the HTTP client. Refuses a base URL that
    /// is not `http`/`https` or carries credentials, a query or a fragment,
    /// an empty token, and a token that cannot be sent in a header.
    pub fn new(config: DiscordConfig) -> Result<Self, DiscordError> {
        let base = config.base_url.trim().trim_end_matches('/');
        if base.is_empty() {
            return Err(config_error("the discord base url is empty"));
        }
        let parsed = Url::parse(base).map_err(|e| {
            config_error(format!(
                "the discord base url {:?} is not a valid url: {e}",
                shorten(&orch_support::url::redact_userinfo(base), 100)
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(config_error(format!(
                "the discord base url must start with https:// (or http:// for a local fake), not {}://",
                parsed.scheme()
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(config_error(
                "the discord base url must not contain credentials: the bot token goes in its own setting",
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(config_error(
                "the discord base url must not have a query or fragment",
            ));
        }

        let raw = config.token.expose();
        let token = raw.strip_prefix("Bot ").unwrap_or(raw);
        if token.trim().is_empty() {
            return Err(config_error(
                "the discord bot token is empty: set DISCORD_BOT_TOKEN or the token file",
            ));
        }
        if token.trim() != token {
            return Err(config_error(
                "the discord bot token starts or ends with whitespace (token not shown)",
            ));
        }
        let mut auth = HeaderValue::from_str(&format!("Bot {token}")).map_err(|_| {
            config_error(
                "the discord bot token contains characters that cannot be sent in an http header (token not shown)",
            )
        })?;
        auth.set_sensitive(true);
        let token = BotToken::new(token);

        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            // No idle-connection reaper timer: one call makes a handful of
            // requests in a row, and a background timer would make
            // paused-time tests jump the clock.
            .pool_idle_timeout(None)
            .pool_max_idle_per_host(1);
        if is_loopback(&parsed) {
            // A proxy from the environment must never see a local fake's
            // traffic (or its token).
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|e| {
            config_error(format!("cannot build the http client: {}", cause(&e, None)))
        })?;

        Ok(Self {
            client,
            base: base.to_owned(),
            auth,
            token,
            max_retry_wait: config.max_retry_wait,
            request_timeout: config.request_timeout,
        })
    }

    /// The API base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The newest `count` messages of channel `channel_id`, returned
    /// **oldest first**.
    ///
    /// Asks for pages of at most [`MAX_PAGE_SIZE`], each `before` the
    /// oldest message seen, and stops at a short page (the channel's
    /// start). `count` 0 returns nothing without a request; more than
    /// [`MAX_MESSAGES`] is refused. Messages without an author are skipped
    /// (with a warning), so fewer than `count` may come back even when the
    /// channel has more.
    pub async fn recent_messages(
        &self,
        channel_id: &str,
        count: usize,
    ) -> Result<Vec<Message>, DiscordError> {
        check_channel_id(channel_id)?;
        if count == 0 {
            return Ok(Vec::new());
        }
        if count > MAX_MESSAGES {
            return Err(config_error(format!(
                "asked for {count} messages; at most {MAX_MESSAGES} can be fetched at once"
            )));
        }

        let mut budget = WaitBudget::default();
        let mut collected: Vec<(u64, Message)> = Vec::with_capacity(count);
        let mut received = 0usize;
        let mut before: Option<u64> = None;
        let mut page_no = 0usize;
        while received < count {
            page_no += 1;
            let limit = (count - received).min(MAX_PAGE_SIZE);
            let body = self
                .get_page(channel_id, limit, before, &mut budget)
                .await?;
            let page = self.decode_page(channel_id, page_no, &body)?;
            received += page.raw_len;
            collected.extend(page.messages);
            let Some(oldest) = page.oldest_id else {
                break;
            };
            if page.raw_len < limit {
                break;
            }
            if before.is_some_and(|b| oldest >= b) {
                tracing::warn!(
                    channel = channel_id,
                    page = page_no,
                    "discord returned a page that does not go back in time; stopping"
                );
                break;
            }
            before = Some(oldest);
        }

        collected.sort_by_key(|(id, _)| *id);
        collected.dedup_by_key(|(id, _)| *id);
        if collected.len() > count {
            collected.drain(..collected.len() - count);
        }
        Ok(collected.into_iter().map(|(_, m)| m).collect())
    }

    /// One page: the raw 200 body, after waiting out 429s and retrying
    /// 502/503/504 a couple of times.
    async fn get_page(
        &self,
        channel: &str,
        limit: usize,
        before: Option<u64>,
        budget: &mut WaitBudget,
    ) -> Result<Vec<u8>, DiscordError> {
        let shown = format!("{}/channels/{channel}/messages", self.base);
        let mut url = Url::parse(&shown)
            .map_err(|e| config_error(format!("cannot build the url {shown:?}: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("limit", &limit.to_string());
            if let Some(before) = before {
                query.append_pair("before", &before.to_string());
            }
        }
        let mut server_errors = 0usize;
        loop {
            tracing::debug!(channel, limit, ?before, "discord: get channel messages");
            let response = self
                .client
                .get(url.clone())
                .header(AUTHORIZATION, self.auth.clone())
                .header(ACCEPT, HeaderValue::from_static("application/json"))
                .timeout(self.request_timeout)
                .send()
                .await
                .map_err(|e| self.connect_error(&shown, &e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = read_capped(response, MAX_RESPONSE_BYTES)
                .await
                .map_err(|e| self.connect_error(&shown, &e))?;
            match status.as_u16() {
                200..=299 => {
                    if body.len() >= MAX_RESPONSE_BYTES {
                        return Err(DiscordError::Decode {
                            message: format!(
                                "GET {shown}: the answer is larger than {} MiB; this is not a page of messages",
                                MAX_RESPONSE_BYTES / (1024 * 1024)
                            ),
                        });
                    }
                    return Ok(body);
                }
                429 => {
                    let wait = retry_after(&headers, &body);
                    budget.spend(wait, self.max_retry_wait)?;
                    tracing::info!(
                        channel,
                        wait_ms = wait.as_millis() as u64,
                        global = is_global(&headers, &body),
                        "discord rate limit: waiting before retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                401 => return Err(DiscordError::Unauthorized),
                403 => {
                    return Err(DiscordError::Forbidden {
                        channel: channel.to_owned(),
                    });
                }
                404 if discord_code(&body) == Some(UNKNOWN_CHANNEL) => {
                    return Err(DiscordError::UnknownChannel {
                        channel: channel.to_owned(),
                    });
                }
                404 => {
                    return Err(DiscordError::Http {
                        status: 404,
                        message: format!(
                            "no discord api at GET {shown} (404: {}): check the base url (default {DEFAULT_BASE_URL})",
                            quoted_body(&self.quote(&body))
                        ),
                    });
                }
                502..=504 if server_errors < SERVER_ERROR_BACKOFF.len() => {
                    let wait = SERVER_ERROR_BACKOFF[server_errors];
                    server_errors += 1;
                    tracing::info!(
                        channel,
                        status = status.as_u16(),
                        wait_ms = wait.as_millis() as u64,
                        "discord unavailable: retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(self.http_error(&shown, status, &body, server_errors)),
            }
        }
    }

    fn http_error(
        &self,
        shown: &str,
        status: StatusCode,
        body: &[u8],
        retries: usize,
    ) -> DiscordError {
        let code = status.as_u16();
        let reason = status.canonical_reason().unwrap_or("");
        let said = quoted_body(&self.quote(body));
        let message = match code {
            400 => format!(
                "discord refused GET {shown} as malformed (400 Bad Request: {said}): this is a bug in orch or the base url points at something else"
            ),
            500..=599 if retries > 0 => format!(
                "discord answered {code} {reason} to GET {shown} ({said}), also after {retries} retries: try again later"
            ),
            500..=599 => {
                format!("discord answered {code} {reason} to GET {shown} ({said}): try again later")
            }
            _ => format!("discord answered {code} {reason} to GET {shown}: {said}"),
        };
        DiscordError::Http {
            status: code,
            message,
        }
    }

    /// A failure before a full answer arrived.
    fn connect_error(&self, shown: &str, e: &reqwest::Error) -> DiscordError {
        let what = if e.is_timeout() {
            format!("no answer within {}", secs(self.request_timeout))
        } else if e.is_connect() {
            format!("cannot connect: {}", cause(e, Some(self.token.expose())))
        } else {
            format!("connection failed: {}", cause(e, Some(self.token.expose())))
        };
        DiscordError::Connect {
            message: format!("GET {shown}: {what}"),
        }
    }

    /// Quotes a Discord answer for an error message: at most
    /// [`MAX_QUOTE_CHARS`] characters, the token blanked out.
    fn quote(&self, body: &[u8]) -> String {
        shorten(
            &redact(&error_text(body), self.token.expose()),
            MAX_QUOTE_CHARS,
        )
    }

    fn decode_page(
        &self,
        channel: &str,
        page_no: usize,
        body: &[u8],
    ) -> Result<Page, DiscordError> {
        let decode_error = |what: String| DiscordError::Decode {
            message: format!(
                "page {page_no} of discord channel {channel}: {what}; the answer starts with {}",
                quoted_body(&shorten(
                    &redact(&squash(&String::from_utf8_lossy(body)), self.token.expose()),
                    MAX_QUOTE_CHARS
                ))
            ),
        };
        let items: Vec<Value> = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(items)) => items,
            Ok(_) => return Err(decode_error("not a list of messages".to_owned())),
            Err(e) => return Err(decode_error(format!("not JSON ({e})"))),
        };
        let mut page = Page {
            raw_len: items.len(),
            messages: Vec::with_capacity(items.len()),
            oldest_id: None,
        };
        for (index, item) in items.into_iter().enumerate() {
            let id = item
                .get("id")
                .and_then(Value::as_str)
                .and_then(parse_snowflake)
                .ok_or_else(|| {
                    decode_error(format!("message [{index}] has no snowflake \"id\""))
                })?;
            page.oldest_id = Some(page.oldest_id.map_or(id, |o: u64| o.min(id)));
            if item.get("author").is_none_or(Value::is_null) {
                tracing::warn!(
                    channel,
                    message_id = id,
                    "discord message without an author skipped"
                );
                continue;
            }
            let message: Message = serde_path_to_error::deserialize(item).map_err(|e| {
                decode_error(format!(
                    "message [{index}] (id {id}): {}: {}",
                    e.path(),
                    e.inner()
                ))
            })?;
            page.messages.push((id, message));
        }
        Ok(page)
    }
}

/// One decoded page.
struct Page {
    /// Items in the answer, skipped ones included (a full page means there
    /// may be more).
    raw_len: usize,
    messages: Vec<(u64, Message)>,
    oldest_id: Option<u64>,
}

/// The time spent waiting out 429s during one call.
#[derive(Default)]
struct WaitBudget {
    waited: Duration,
    retries: u32,
}

impl WaitBudget {
    /// Books `wait`, or says why it must not be waited.
    fn spend(&mut self, wait: Duration, max: Duration) -> Result<(), DiscordError> {
        let total = self.waited.saturating_add(wait);
        if total > max || self.retries >= MAX_RATE_LIMIT_RETRIES {
            return Err(DiscordError::RateLimited {
                waited: self.waited,
                retry_after: wait,
                budget: max,
            });
        }
        self.waited = total;
        self.retries += 1;
        Ok(())
    }
}

/// Discord's JSON error code for "Unknown Channel".
const UNKNOWN_CHANNEL: i64 = 10003;

/// The `code` of a Discord JSON error body.
fn discord_code(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("code")?
        .as_i64()
}

/// How long a 429 asks to wait: the body's `retry_after` (seconds, with
/// fractions), else the `Retry-After` header (whole seconds), else
/// `X-RateLimit-Reset-After`, else one second.
fn retry_after(headers: &HeaderMap, body: &[u8]) -> Duration {
    let from_body = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("retry_after").and_then(Value::as_f64));
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    from_body
        .or_else(|| header(RETRY_AFTER.as_str()))
        .or_else(|| header("x-ratelimit-reset-after"))
        .map_or(DEFAULT_RATE_LIMIT_WAIT, seconds)
}

/// Whether a 429 is Discord's global limit (for the log).
fn is_global(headers: &HeaderMap, body: &[u8]) -> bool {
    headers.contains_key("x-ratelimit-global")
        || serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("global").and_then(Value::as_bool))
            .unwrap_or(false)
}

/// Seconds as a duration: negative and NaN are 0, absurdly large values
/// saturate (and then exceed any budget).
fn seconds(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

/// A snowflake: 1 to 20 ASCII digits that fit a `u64`.
fn parse_snowflake(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The message of [`DiscordError::RateLimited`].
fn rate_limited_message(waited: Duration, retry_after: Duration, budget: Duration) -> String {
    if waited.saturating_add(retry_after) <= budget {
        format!(
            "discord kept rate limiting the bot ({MAX_RATE_LIMIT_RETRIES} answers 429 in a row, {} waited): try again later",
            secs(waited)
        )
    } else if waited.is_zero() {
        format!(
            "discord is rate limiting the bot and asks to wait {}, more than the {} wait budget: try again later",
            secs(retry_after),
            secs(budget)
        )
    } else {
        format!(
            "discord is rate limiting the bot: after waiting {} it asks for {} more, past the {} wait budget: try again later",
            secs(waited),
            secs(retry_after),
            secs(budget)
        )
    }
}

/// `3s`, `2.5s`, `0.125s`: seconds with at most three decimals.
fn secs(d: Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}s")
}

fn check_channel_id(channel: &str) -> Result<(), DiscordError> {
    if parse_snowflake(channel).is_some() {
        return Ok(());
    }
    Err(config_error(format!(
        "{:?} is not a discord channel id (a snowflake: digits only, like 1100000000000000001): give the id, or a name from the registry's channels map",
        shorten(&squash(channel), 60)
    )))
}

/// What went wrong below reqwest, without the URL; `secret` blanked out.
fn cause(e: &reqwest::Error, secret: Option<&str>) -> String {
    redact(&orch_support::http::cause(e), secret.unwrap_or(""))
}

fn config_error(message: impl Into<String>) -> DiscordError {
    DiscordError::Config {
        message: message.into(),
    }
}

/// What an error body says: Discord's `message` (with its `code`), else
/// the body as text, whitespace folded.
fn error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text)
        && let Some(Value::String(message)) = map.get("message")
    {
        return match map.get("code").and_then(Value::as_i64) {
            Some(code) if code != 0 => format!("{} (code {code})", squash(message)),
            _ => squash(message),
        };
    }
    squash(&text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn token_is_never_printed() {
        let t = BotToken::new("MTIz.secret.token");
        assert_eq!(format!("{t} {t:?}"), "[redacted] Secret([redacted])");
        let config = DiscordConfig::new(t);
        assert!(!format!("{config:?}").contains("secret"));
        let client = DiscordClient::new(config).unwrap();
        assert!(!format!("{client:?}").contains("secret"));
    }

    #[test]
    fn config_is_checked() {
        let with = |url: &str, token: &str| {
            let mut c = DiscordConfig::new(BotToken::new(token));
            c.base_url = url.to_owned();
            DiscordClient::new(c).map(|c| c.base_url().to_owned())
        };
        assert_eq!(
            with("https://discord.com/api/v10/", "t").unwrap(),
            "https://discord.com/api/v10"
        );
        assert!(with("http://127.0.0.1:9/api/v10", "Bot t").is_ok());
        let errors = [
            with("", "t"),
            with("ftp://x", "t"),
            with("https://u:p@discord.com/api/v10", "t"),
            with("https://discord.com/api/v10?x=1", "t"),
            with("https://discord.com/api/v10", ""),
            with("https://discord.com/api/v10", "Bot "),
            with("https://discord.com/api/v10", " t"),
            with("https://discord.com/api/v10", "t\nx"),
        ];
        for e in errors {
            let e = e.unwrap_err();
            assert!(matches!(e, DiscordError::Config { .. }), "{e:?}");
        }
        // A URL that does not even parse is quoted without its credentials.
        let e = with("https://bot:hunter2@disc ord.com", "t").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("[redacted]@"), "{e}");
    }

    #[test]
    fn snowflakes() {
        assert_eq!(
            parse_snowflake("1100000000000000001"),
            Some(1_100_000_000_000_000_001)
        );
        assert_eq!(parse_snowflake("18446744073709551615"), Some(u64::MAX));
        for bad in ["", "18446744073709551616", "12a", "-1", " 1", "１"] {
            assert_eq!(parse_snowflake(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_sources() {
        let mut h = HeaderMap::new();
        let body =
            br#"{"message":"You are being rate limited.","retry_after":1.234,"global":false}"#;
        assert_eq!(retry_after(&h, body), Duration::from_millis(1234));
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h, b"<html>"), Duration::from_secs(2));
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset-after", HeaderValue::from_static("0.5"));
        assert_eq!(retry_after(&h, b""), Duration::from_millis(500));
        assert_eq!(retry_after(&HeaderMap::new(), b""), DEFAULT_RATE_LIMIT_WAIT);
        assert_eq!(
            retry_after(&HeaderMap::new(), br#"{"retry_after":-3}"#),
            Duration::ZERO
        );
        assert_eq!(
            retry_after(&HeaderMap::new(), br#"{"retry_after":1e300}"#),
            Duration::MAX
        );
    }

    #[test]
    fn budget_refuses_a_wait_past_it() {
        let mut b = WaitBudget::default();
        let max = Duration::from_secs(10);
        b.spend(Duration::from_secs(4), max).unwrap();
        b.spend(Duration::from_secs(6), max).unwrap();
        let e = b.spend(Duration::from_millis(1), max).unwrap_err();
        assert_eq!(
            e,
            DiscordError::RateLimited {
                waited: Duration::from_secs(10),
                retry_after: Duration::from_millis(1),
                budget: max
            }
        );
        let mut b = WaitBudget::default();
        for _ in 0..MAX_RATE_LIMIT_RETRIES {
            b.spend(Duration::ZERO, max).unwrap();
        }
        assert!(b.spend(Duration::ZERO, max).is_err());
    }

    #[test]
    fn rate_limit_messages() {
        let s = Duration::from_secs;
        assert_eq!(secs(Duration::from_millis(2500)), "2.5s");
        assert_eq!(secs(s(30)), "30s");
        assert_eq!(secs(Duration::ZERO), "0s");
        let e = |waited, retry_after| {
            DiscordError::RateLimited {
                waited,
                retry_after,
                budget: s(30),
            }
            .to_string()
        };
        assert_eq!(
            e(Duration::ZERO, s(3600)),
            "discord is rate limiting the bot and asks to wait 3600s, more than the 30s wait budget: try again later"
        );
        assert_eq!(
            e(s(20), s(11)),
            "discord is rate limiting the bot: after waiting 20s it asks for 11s more, past the 30s wait budget: try again later"
        );
        assert_eq!(
            e(s(2), Duration::ZERO),
            "discord kept rate limiting the bot (20 answers 429 in a row, 2s waited): try again later"
        );
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_text(br#"{"message": "Unknown Channel", "code": 10003}"#),
            "Unknown Channel (code 10003)"
        );
        assert_eq!(
            error_text(br#"{"message": "404: Not Found", "code": 0}"#),
            "404: Not Found"
        );
        assert_eq!(error_text(b"  Bad\r\n Gateway "), "Bad Gateway");
        assert_eq!(
            discord_code(br#"{"message": "x", "code": 10003}"#),
            Some(10003)
        );
        assert_eq!(discord_code(b"nope"), None);
    }
}
