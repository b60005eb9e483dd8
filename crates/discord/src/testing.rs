//! Test support: a fake Discord REST API (feature `testing`).
//!
//! [`FakeDiscord`] serves `GET /api/v10/channels/{id}/messages` on
//! `127.0.0.1:<random port>` the way Discord does, so this crate's tests and
//! the workspace end-to-end tests (which run `orch context` against it)
//! exercise [`DiscordClient`](super::DiscordClient) without the network.
//!
//! The contract it follows, checked in this order:
//!
//! - any other path → `404 {"message": "404: Not Found", "code": 0}`;
//!   another method → `405 {"message": "405: Method Not Allowed", "code":
//!   0}`;
//! - `Authorization` not exactly `Bot <token>` → `401 {"message": "401:
//!   Unauthorized", "code": 0}`;
//! - the next scripted [`FakeDiscordFailure`], if any (a 429 carries
//!   Discord's body `{"message", "retry_after", "global"}`, `Retry-After`
//!   and the `X-RateLimit-*` headers);
//! - a channel id that is not a snowflake → `400` `Invalid Form Body`
//!   (code 50035);
//! - a channel in [`FakeDiscordOptions::forbidden`] → `403 {"message":
//!   "Missing Access", "code": 50001}`; a channel not in
//!   [`FakeDiscordOptions::channels`] → `404 {"message": "Unknown
//!   Channel", "code": 10003}`;
//! - `limit` (default 50) outside 1..=100, or `limit`/`before` not a
//!   number → `400` `Invalid Form Body` (code 50035);
//! - else `200` with up to `limit` messages older than `before` (all when
//!   absent), **newest first**, in the API's shape: the fields of
//!   [`Message`] plus ones the client must ignore (`channel_id`,
//!   `mentions`, `pinned`, `flags`, `components`, the author's `avatar`,
//!   …); `message_reference`/`referenced_message` only on replies, `bot`
//!   only on bots, as Discord does. `after` and `around` are not supported
//!   (ignored).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Attachment, Author, Embed, Message, MessageReference, parse_snowflake};

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// How a [`FakeDiscord`] behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeDiscordOptions {
    /// The bot token it accepts (`Authorization: Bot <token>`).
    pub token: String,
    /// Channel id → its messages, in any order (served newest first by
    /// snowflake id).
    pub channels: BTreeMap<String, Vec<Message>>,
    /// Channel ids the bot may not read: `403 Missing Access`.
    pub forbidden: BTreeSet<String>,
    /// Failures returned, in order, to the next authenticated requests.
    pub fail_next: Vec<FakeDiscordFailure>,
}

impl Default for FakeDiscordOptions {
    /// Token `fake-discord-bot-token`, no channels, no failures.
    fn default() -> Self {
        Self {
            token: "fake-discord-bot-token".to_owned(),
            channels: BTreeMap::new(),
            forbidden: BTreeSet::new(),
            fail_next: Vec::new(),
        }
    }
}

/// A scripted answer, returned instead of the normal one.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeDiscordFailure {
    /// A per-route `429`: body `{"message": "You are being rate limited.",
    /// "retry_after": <secs>, "global": false}`, `Retry-After` (whole
    /// seconds, rounded up) and `X-RateLimit-*` headers with scope `user`.
    RateLimited {
        /// `retry_after`, in seconds.
        retry_after_secs: f64,
    },
    /// The global `429`: as [`FakeDiscordFailure::RateLimited`] with
    /// `"global": true`, `X-RateLimit-Global: true` and scope `global`.
    GlobalRateLimited {
        /// `retry_after`, in seconds.
        retry_after_secs: f64,
    },
    /// A server error with `{"message": "<status>: <reason>", "code": 0}`.
    ServerError(u16),
    /// Any status with this body (sent as JSON when it parses as JSON).
    Status {
        /// HTTP status.
        status: u16,
        /// The body.
        body: String,
    },
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedDiscordRequest {
    /// `GET`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Whether `Authorization` was exactly `Bot <token>` (the header
    /// itself is not kept).
    pub auth_valid: bool,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// When it arrived, on tokio's clock (paused in paused-time tests).
    pub at: tokio::time::Instant,
}

impl RecordedDiscordRequest {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A fake Discord REST API on `127.0.0.1:<random port>`; see the module
/// documentation for the contract. Dropping it stops the server.
///
/// It serves on the runtime that started it.
pub struct FakeDiscord {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeDiscord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDiscord")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeDiscord {
    /// Binds `127.0.0.1:0` and starts serving on the current runtime.
    pub async fn start(opts: FakeDiscordOptions) -> std::io::Result<FakeDiscord> {
        let tcp = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = tcp.local_addr()?;
        let channels = opts
            .channels
            .iter()
            .map(|(id, messages)| {
                let mut sorted: Vec<(u64, Value)> = messages
                    .iter()
                    .map(|m| (parse_snowflake(&m.id).unwrap_or(0), wire(m, id)))
                    .collect();
                sorted.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
                (id.clone(), sorted)
            })
            .collect();
        let shared = Arc::new(Shared {
            channels,
            state: Mutex::new(Inner {
                requests: Vec::new(),
                failures: opts.fail_next.iter().cloned().collect(),
            }),
            opts,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(tcp, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake discord server failed");
            }
        });
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:<port>/api/v10`: the base URL to put in
    /// [`DiscordConfig::base_url`](super::DiscordConfig::base_url).
    pub fn url(&self) -> String {
        format!("http://{}/api/v10", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bot token it accepts.
    pub fn token(&self) -> &str {
        &self.shared.opts.token
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedDiscordRequest> {
        self.shared.lock().requests.clone()
    }

    /// Adds `failure` to the end of the scripted failures.
    pub fn push_failure(&self, failure: FakeDiscordFailure) {
        self.shared.lock().failures.push_back(failure);
    }

    /// Stops the server and waits until it has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// The snowflake id of a message sent at `at` (sequence bits 0).
    pub fn snowflake_at(at: jiff::Timestamp) -> u64 {
        let ms = u64::try_from(at.as_millisecond()).unwrap_or(0);
        ms.saturating_sub(DISCORD_EPOCH_MS) << 22
    }

    /// When the message with snowflake `id` was sent, as Discord writes
    /// it: `2026-11-25T09:00:00.000000+00:00`.
    pub fn timestamp_of(id: u64) -> String {
        let ms = (id >> 22) + DISCORD_EPOCH_MS;
        let at = i64::try_from(ms)
            .ok()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        format!("{}+00:00", at.strftime("%Y-%m-%dT%H:%M:%S%.6f"))
    }

    /// `n` realistic messages, oldest first: the first has snowflake
    /// `start_id`, each next one is sent 37 seconds later (ids and
    /// timestamps agree). Five authors take turns, one a bot; every 7th
    /// message replies to the one before, every 11th has an attachment,
    /// every 13th an embed, every 9th spans two lines.
    ///
    /// `FakeDiscord::snowflake_at("2026-11-25T09:00:00Z".parse()?)` is a
    /// good `start_id`.
    pub fn generate_messages(n: usize, start_id: u64) -> Vec<Message> {
        const STEP: u64 = 37_000 << 22;
        let authors = [
            ("100000000000000001", "ada", Some("Ada Lovelace"), false),
            ("100000000000000002", "grace.hopper", None, false),
            ("100000000000000003", "atomizer", Some("Atomizer"), true),
            (
                "100000000000000004",
                "margaret",
                Some("Margaret Hamilton"),
                false,
            ),
            ("100000000000000005", "linus", Some("Linus"), false),
        ];
        let topics = [
            "thermal margins of the bracket look fine",
            "the mesh study converged at 0.8 mm",
            "can someone check the load cases?",
            "build is green",
            "updated the trade study table",
            "moving the review to Thursday",
        ];
        let mut out: Vec<Message> = Vec::with_capacity(n);
        for i in 0..n {
            let id = start_id.saturating_add(STEP.saturating_mul(i as u64));
            let (author_id, username, global, bot) = authors[i % authors.len()];
            let mut content = format!("message {i}: {}", topics[i % topics.len()]);
            if i % 9 == 8 {
                content.push_str("\nsecond line of the same message");
            }
            let mut m = Message {
                id: id.to_string(),
                author: Author {
                    id: author_id.to_owned(),
                    username: username.to_owned(),
                    global_name: global.map(str::to_owned),
                    bot,
                },
                content,
                timestamp: Self::timestamp_of(id),
                attachments: Vec::new(),
                embeds: Vec::new(),
                message_reference: None,
                referenced_message: None,
                kind: 0,
            };
            if i % 7 == 6
                && let Some(previous) = out.last()
            {
                let mut original = previous.clone();
                original.referenced_message = None;
                m.kind = 19;
                m.message_reference = Some(MessageReference {
                    message_id: Some(previous.id.clone()),
                    kind: 0,
                });
                m.referenced_message = Some(Box::new(original));
            }
            if i % 11 == 10 {
                m.attachments.push(Attachment {
                    filename: format!("report-{i}.pdf"),
                    size: 40_000 + 1_000 * i as u64,
                    content_type: Some("application/pdf".to_owned()),
                    url: Some(format!(
                        "https://cdn.discordapp.com/attachments/1/{id}/report-{i}.pdf"
                    )),
                });
            }
            if i % 13 == 12 {
                m.embeds.push(Embed {
                    title: Some(format!("Build #{i} passed")),
                    description: Some("all checks green".to_owned()),
                    url: Some(format!("https://ci.example/builds/{i}")),
                });
            }
            out.push(m);
        }
        out
    }
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

struct Shared {
    opts: FakeDiscordOptions,
    /// Channel id → (snowflake, wire JSON), newest first.
    channels: BTreeMap<String, Vec<(u64, Value)>>,
    state: Mutex<Inner>,
}

struct Inner {
    requests: Vec<RecordedDiscordRequest>,
    failures: VecDeque<FakeDiscordFailure>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is a single push or pop: the state stays consistent
        // even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A message as Discord sends it: our fields plus ones the client ignores.
fn wire(m: &Message, channel_id: &str) -> Value {
    let mut author = json!({
        "id": m.author.id,
        "username": m.author.username,
        "global_name": m.author.global_name,
        "avatar": null,
        "discriminator": "0",
        "public_flags": 0,
    });
    if m.author.bot
        && let Some(a) = author.as_object_mut()
    {
        a.insert("bot".to_owned(), Value::Bool(true));
    }
    let mut v = json!({
        "type": m.kind,
        "channel_id": channel_id,
        "id": m.id,
        "author": author,
        "content": m.content,
        "timestamp": m.timestamp,
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": m.attachments.iter().map(|a| json!({
            "id": "1",
            "filename": a.filename,
            "size": a.size,
            "url": a.url,
            "proxy_url": a.url,
            "content_type": a.content_type,
        })).collect::<Vec<_>>(),
        "embeds": m.embeds.iter().map(|e| json!({
            "type": "rich",
            "title": e.title,
            "description": e.description,
            "url": e.url,
        })).collect::<Vec<_>>(),
        "pinned": false,
        "flags": 0,
        "components": [],
    });
    if let Some(map) = v.as_object_mut()
        && let Some(reference) = &m.message_reference
    {
        map.insert(
            "message_reference".to_owned(),
            json!({
                "type": reference.kind,
                "channel_id": channel_id,
                "message_id": reference.message_id,
            }),
        );
        map.insert(
            "referenced_message".to_owned(),
            m.referenced_message
                .as_deref()
                .map_or(Value::Null, |r| wire(r, channel_id)),
        );
    }
    v
}

fn discord_error(status: StatusCode, message: &str, code: u32) -> Response {
    (
        status,
        axum::Json(json!({ "message": message, "code": code })),
    )
        .into_response()
}

fn invalid_form_body(field: &str, code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": { field: { "_errors": [ { "code": code, "message": message } ] } },
        })),
    )
        .into_response()
}

fn header(response: &mut Response, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(name, v);
    }
}

fn rate_limit_headers(response: &mut Response, remaining: u32, reset_after: f64) {
    let reset = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0 + reset_after;
    header(response, "x-ratelimit-limit", "5".to_owned());
    header(response, "x-ratelimit-remaining", remaining.to_string());
    header(response, "x-ratelimit-reset", format!("{reset:.3}"));
    header(
        response,
        "x-ratelimit-reset-after",
        format!("{reset_after:.3}"),
    );
    header(
        response,
        "x-ratelimit-bucket",
        "2f1a7c4b9e0d3a5f6b8c1d2e3f4a5b6c".to_owned(),
    );
}

fn failure_response(failure: FakeDiscordFailure) -> Response {
    match failure {
        FakeDiscordFailure::RateLimited { retry_after_secs } => {
            rate_limited(retry_after_secs, false)
        }
        FakeDiscordFailure::GlobalRateLimited { retry_after_secs } => {
            rate_limited(retry_after_secs, true)
        }
        FakeDiscordFailure::ServerError(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = format!(
                "{}: {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Server Error")
            );
            discord_error(status, &message, 0)
        }
        FakeDiscordFailure::Status { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match serde_json::from_str::<Value>(&body) {
                Ok(json) => (status, axum::Json(json)).into_response(),
                Err(_) => (status, body).into_response(),
            }
        }
    }
}

fn rate_limited(retry_after_secs: f64, global: bool) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({
            "message": "You are being rate limited.",
            "retry_after": retry_after_secs,
            "global": global,
        })),
    )
        .into_response();
    let whole = retry_after_secs.max(0.0).ceil() as u64;
    header(&mut response, "retry-after", whole.to_string());
    rate_limit_headers(&mut response, 0, retry_after_secs.max(0.0));
    header(
        &mut response,
        "x-ratelimit-scope",
        if global { "global" } else { "user" }.to_owned(),
    );
    if global {
        header(&mut response, "x-ratelimit-global", "true".to_owned());
    }
    response
}

/// The one handler, checking in the order the module documentation gives.
async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .and_then(|q| reqwest::Url::parse(&format!("http://fake/?{q}")).ok())
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    let expected = format!("Bot {}", shared.opts.token);
    let auth_valid = parts
        .headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    let record = RecordedDiscordRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        auth_valid,
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        at: tokio::time::Instant::now(),
    };
    let failure = {
        let mut state = shared.lock();
        state.requests.push(record);
        let channel = path
            .strip_prefix("/api/v10/channels/")
            .and_then(|rest| rest.strip_suffix("/messages"))
            .filter(|id| !id.is_empty() && !id.contains('/'));
        match channel {
            None => return discord_error(StatusCode::NOT_FOUND, "404: Not Found", 0),
            Some(_) if parts.method != Method::GET => {
                return discord_error(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed", 0);
            }
            Some(_) if !auth_valid => {
                return discord_error(StatusCode::UNAUTHORIZED, "401: Unauthorized", 0);
            }
            Some(_) => state.failures.pop_front(),
        }
    };
    if let Some(failure) = failure {
        return failure_response(failure);
    }
    let channel = path
        .trim_start_matches("/api/v10/channels/")
        .trim_end_matches("/messages");
    if parse_snowflake(channel).is_none() {
        return invalid_form_body(
            "channel_id",
            "NUMBER_TYPE_COERCE",
            &format!("Value \"{channel}\" is not snowflake."),
        );
    }
    if shared.opts.forbidden.contains(channel) {
        return discord_error(StatusCode::FORBIDDEN, "Missing Access", 50001);
    }
    let Some(messages) = shared.channels.get(channel) else {
        return discord_error(StatusCode::NOT_FOUND, "Unknown Channel", 10003);
    };
    let param = |name: &str| {
        query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let limit = match param("limit").map(str::parse::<i64>) {
        None => 50,
        Some(Ok(n)) if (1..=100).contains(&n) => n as usize,
        Some(Ok(n)) if n < 1 => {
            return invalid_form_body(
                "limit",
                "NUMBER_TYPE_MIN",
                "int value should be greater than or equal to 1.",
            );
        }
        Some(Ok(_)) => {
            return invalid_form_body(
                "limit",
                "NUMBER_TYPE_MAX",
                "int value should be less than or equal to 100.",
            );
        }
        Some(Err(_)) => {
            return invalid_form_body("limit", "NUMBER_TYPE_COERCE", "Value is not int.");
        }
    };
    let before = match param("before") {
        None => None,
        Some(b) => match parse_snowflake(b) {
            Some(b) => Some(b),
            None => {
                return invalid_form_body(
                    "before",
                    "NUMBER_TYPE_COERCE",
                    &format!("Value \"{b}\" is not snowflake."),
                );
            }
        },
    };
    let page: Vec<&Value> = messages
        .iter()
        .filter(|(id, _)| before.is_none_or(|b| *id < b))
        .take(limit)
        .map(|(_, v)| v)
        .collect();
    let mut response = (StatusCode::OK, axum::Json(page)).into_response();
    rate_limit_headers(&mut response, 4, 1.0);
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_messages_are_consistent() {
        let start = FakeDiscord::snowflake_at("2026-11-25T09:00:00Z".parse().unwrap());
        assert_eq!(start, 1_575_073_559_347_200_000);
        let ms = FakeDiscord::generate_messages(30, start);
        assert_eq!(ms[0].timestamp, "2026-11-25T09:00:00.000000+00:00");
        assert_eq!(ms[1].timestamp, "2026-11-25T09:00:37.000000+00:00");
        let ids: Vec<u64> = ms.iter().map(|m| m.id.parse().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ms.iter().any(|m| m.author.bot));
        assert!(ms.iter().any(|m| !m.attachments.is_empty()));
        assert!(ms.iter().any(|m| !m.embeds.is_empty()));
        let reply = &ms[6];
        assert_eq!(reply.kind, 19);
        assert_eq!(
            reply.referenced_message.as_ref().map(|r| r.id.as_str()),
            Some(ms[5].id.as_str())
        );
    }

    #[test]
    fn wire_shape_round_trips() {
        let start = FakeDiscord::snowflake_at("2026-11-25T09:00:00Z".parse().unwrap());
        for m in FakeDiscord::generate_messages(30, start) {
            let v = wire(&m, "1");
            assert_eq!(v["channel_id"], "1");
            assert_eq!(v["author"].get("bot").is_some(), m.author.bot);
            assert_eq!(
                v.get("message_reference").is_some(),
                m.message_reference.is_some()
            );
            let back: Message = serde_json::from_value(v).unwrap();
            assert_eq!(back, m);
        }
    }
}
