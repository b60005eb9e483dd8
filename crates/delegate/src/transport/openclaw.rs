//! The `openclaw` transport: OpenClaw Gateway HTTP hooks (DESIGN §5).
//!
//! One dispatch is one `POST {url}{path}/agent` with the hook token as a
//! bearer token, the envelope's idempotency key as `Idempotency-Key`, and
//! the JSON body `{ message, name, agentId, deliver: false, timeoutSeconds,
//! waitForCompletion? }`. The gateway answers `200 {"ok":true,"runId":…}`
//! once it admitted the run (or, with `waitForCompletion`, once the run
//! settled, with a `completion`). Every other answer is mapped to a
//! [`TransportError`] that says whether a retry may help and, for the ones
//! that will not, what to fix.
//!
//! The token never leaves this module except in the `Authorization` header
//! (marked sensitive): error messages quote at most
//! [`MAX_QUOTE_CHARS`] characters of the gateway's answer, with any
//! occurrence of the token blanked out, and never the request's URL
//! credentials (a URL with userinfo is refused at construction).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use orch_support::http::{cause, is_loopback, read_capped};
use orch_support::secret::read_secret;
use orch_support::text::{quoted_body, shorten, squash};
use orch_support::url::redact_userinfo;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Ack, Completion, DEFAULT_MAX_TASK_BYTES, Envelope, Secret, Transport, TransportError};

/// OpenClaw's default hooks path.
pub const DEFAULT_PATH: &str = "/hooks";
/// OpenClaw's request body limit for hooks (256 KiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Default TCP connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`OpenClawConfig::request_timeout`]: how long one request
/// waits for the gateway's answer when it answers on admission
/// (`waitForCompletion` off).
pub const ADMISSION_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time granted on top of the envelope's timeout when the gateway
/// answers only once the agent's run settled (`waitForCompletion` on).
pub const COMPLETION_MARGIN: Duration = Duration::from_secs(30);
/// How much of a response body is read: OpenClaw's answers are a few
/// hundred bytes; a longer one is cut (and then is not `ok:true` JSON).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How many characters of a gateway answer an error message quotes.
pub const MAX_QUOTE_CHARS: usize = 200;

/// Where and how to reach an OpenClaw gateway.
///
/// In serde (a `kind: openclaw` transport of `orch.yaml`): `url`
/// (required), `path`, `token_env` or `token_file` (the token is only
/// *named*: [`OpenClawTransport::new`] reads it), `wait_for_completion`,
/// `agent_id`, `max_task_bytes` and `request_timeout` (a duration:
/// `30s`); unknown keys are refused, and a token value is never read from
/// or written to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenClawConfig {
    /// Base URL of the gateway, e.g. `http://127.0.0.1:18789` (no
    /// credentials in it: the token is [`OpenClawConfig::token`], or named
    /// by `token_env` / `token_file`).
    pub url: String,
    /// Hooks path (OpenClaw's `hooks.path`), default `/hooks`.
    #[serde(default = "default_path")]
    pub path: String,
    /// The environment variable that holds the hook token, read by
    /// [`OpenClawTransport::new`] when [`OpenClawConfig::token`] is unset.
    #[serde(default)]
    pub token_env: Option<String>,
    /// The file that holds the hook token (when neither the token nor
    /// `token_env` is given).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The hook token, sent as `Authorization: Bearer <token>`; `None`:
    /// read from `token_env` or `token_file`. Never (de)serialised.
    #[serde(skip)]
    pub token: Option<Secret>,
    /// Send `waitForCompletion: true`: the gateway answers once the agent's
    /// run settled, so the delegator learns at once that a run ended
    /// without a handoff.
    #[serde(default)]
    pub wait_for_completion: bool,
    /// The OpenClaw `agentId` to address, if it differs from orch's agent
    /// id (default: the envelope's agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// TCP connect timeout (default 5 s).
    #[serde(skip, default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Largest request body sent; larger envelopes are refused before
    /// anything is sent. `None` (what a deserialised config has): twice
    /// `max_task_bytes`, at least [`DEFAULT_MAX_BODY_BYTES`] (the body
    /// carries the message JSON-encoded, where newlines and quotes take two
    /// bytes, so a raised task limit raises the body's with it).
    /// [`OpenClawConfig::new`] sets OpenClaw's limit, 256 KiB.
    #[serde(skip)]
    pub max_body_bytes: Option<usize>,
    /// Largest task message ([`Transport::max_task_bytes`]; default
    /// [`DEFAULT_MAX_TASK_BYTES`]). The body carries it JSON-encoded, so it
    /// must also fit `max_body_bytes`.
    #[serde(default = "default_max_task_bytes")]
    pub max_task_bytes: u64,
    /// How long one request waits for the gateway's answer when it answers
    /// on admission (`wait_for_completion` off; default
    /// [`ADMISSION_TIMEOUT`]). A gateway that never answers fails each try
    /// after this long, and the delegator retries.
    #[serde(
        default = "default_request_timeout",
        with = "orch_support::duration::serde"
    )]
    pub request_timeout: Duration,
}

fn default_path() -> String {
    DEFAULT_PATH.to_owned()
}

fn default_connect_timeout() -> Duration {
    DEFAULT_CONNECT_TIMEOUT
}

fn default_max_task_bytes() -> u64 {
    DEFAULT_MAX_TASK_BYTES
}

fn default_request_timeout() -> Duration {
    ADMISSION_TIMEOUT
}

impl OpenClawConfig {
    /// A config for the gateway at `url` with OpenClaw's defaults: path
    /// `/hooks`, the envelope's agent id, no `waitForCompletion`, 5 s
    /// connect timeout, 256 KiB bodies and tasks, 30 s per request.
    pub fn new(url: impl Into<String>, token: Secret) -> Self {
        Self {
            url: url.into(),
            path: DEFAULT_PATH.to_owned(),
            token_env: None,
            token_file: None,
            token: Some(token),
            agent_id: None,
            wait_for_completion: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_body_bytes: Some(DEFAULT_MAX_BODY_BYTES),
            max_task_bytes: DEFAULT_MAX_TASK_BYTES,
            request_timeout: ADMISSION_TIMEOUT,
        }
    }

    /// The body limit in force: [`OpenClawConfig::max_body_bytes`], or
    /// twice `max_task_bytes` and at least [`DEFAULT_MAX_BODY_BYTES`].
    pub fn body_limit(&self) -> usize {
        self.max_body_bytes.unwrap_or_else(|| {
            usize::try_from(self.max_task_bytes)
                .unwrap_or(usize::MAX)
                .saturating_mul(2)
                .max(DEFAULT_MAX_BODY_BYTES)
        })
    }

    /// The hook token: [`OpenClawConfig::token`], else read from
    /// `token_env` or `token_file`. Errors name the variable or the file,
    /// never a value.
    fn resolve_token(&self) -> Result<Secret, TransportError> {
        match &self.token {
            Some(token) => Ok(token.clone()),
            None => read_secret(
                self.token_env.as_deref(),
                self.token_file.as_deref(),
                "hook token",
            )
            .map_err(|e| config_error(e.to_string())),
        }
    }
}

/// Delivers envelopes to an OpenClaw gateway's `/hooks/agent` endpoint.
///
/// Holds one HTTP client (connection pool) for all dispatches; cheap to
/// share behind an `Arc`.
pub struct OpenClawTransport {
    client: reqwest::Client,
    /// `{url}{path}/agent`.
    endpoint: Url,
    /// The endpoint as shown in messages: no userinfo, query or fragment.
    shown_endpoint: String,
    /// `Bearer <token>`, marked sensitive.
    auth: HeaderValue,
    token: Secret,
    agent_id: Option<String>,
    wait_for_completion: bool,
    max_body_bytes: usize,
    max_task_bytes: u64,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl fmt::Debug for OpenClawTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenClawTransport")
            .field("endpoint", &self.shown_endpoint)
            .field("token", &self.token)
            .field("agent_id", &self.agent_id)
            .field("wait_for_completion", &self.wait_for_completion)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_task_bytes", &self.max_task_bytes)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl OpenClawTransport {
    /// Checks `config`, reads the token it names (unless it holds one) and
    /// builds the HTTP client. Refuses a token variable that is not set or
    /// a token file that cannot be read (the error names them, never a
    /// value), a URL that is not `http`/`https`, a URL with credentials,
    /// an empty token and a token that cannot be sent in a header.
    pub fn new(config: OpenClawConfig) -> Result<Self, TransportError> {
        let token = config.resolve_token()?;
        let base = config.url.trim();
        if base.is_empty() {
            return Err(config_error("the openclaw url is empty"));
        }
        let parsed = Url::parse(base).map_err(|e| {
            config_error(format!(
                "the openclaw url {:?} is not a valid url: {e}",
                shorten(&redact_userinfo(base), 100)
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(config_error(format!(
                "the openclaw url must start with http:// or https://, not {}://",
                parsed.scheme()
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(config_error(
                "the openclaw url must not contain credentials: name the token variable or file in orch config instead",
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(config_error(
                "the openclaw url must not have a query or fragment",
            ));
        }
        let path = normalize_path(&config.path)?;
        let joined = format!("{}{}/agent", base.trim_end_matches('/'), path);
        let endpoint = Url::parse(&joined).map_err(|e| {
            config_error(format!(
                "the openclaw url and path do not form a valid url: {e}"
            ))
        })?;
        let shown_endpoint = show_url(&endpoint);

        let max_body_bytes = config.body_limit();
        let token_value = token.expose();
        if token_value.trim().is_empty() {
            return Err(config_error("the openclaw hook token is empty"));
        }
        if token_value.trim() != token_value {
            return Err(config_error(
                "the openclaw hook token starts or ends with whitespace (token not shown)",
            ));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {token_value}")).map_err(|_| {
            config_error(
                "the openclaw hook token contains characters that cannot be sent in an http header (token not shown)",
            )
        })?;
        auth.set_sensitive(true);

        if let Some(agent) = &config.agent_id
            && agent.trim().is_empty()
        {
            return Err(config_error("the openclaw agent_id is empty"));
        }
        if max_body_bytes == 0 {
            return Err(config_error("the openclaw max_body_bytes is 0"));
        }
        if config.max_task_bytes == 0 {
            return Err(config_error("the openclaw max_task_bytes is 0"));
        }
        if config.request_timeout.is_zero() {
            return Err(config_error("the openclaw request_timeout is 0"));
        }

        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("orch/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&endpoint) {
            // A proxy from the environment must never see a loopback
            // gateway's token.
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|e| config_error(format!("cannot build the http client: {}", cause(&e))))?;

        Ok(Self {
            client,
            endpoint,
            shown_endpoint,
            auth,
            token,
            agent_id: config.agent_id,
            wait_for_completion: config.wait_for_completion,
            max_body_bytes,
            max_task_bytes: config.max_task_bytes,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
        })
    }

    /// The URL dispatches go to (`{url}{path}/agent`).
    pub fn endpoint(&self) -> &str {
        &self.shown_endpoint
    }

    fn agent_id<'a>(&'a self, envelope: &'a Envelope) -> &'a str {
        self.agent_id.as_deref().unwrap_or(&envelope.agent)
    }

    /// The request body for `envelope`.
    fn body(&self, envelope: &Envelope) -> Value {
        let mut body = json!({
            "message": envelope.message,
            "name": format!("orch {}", envelope.run_id),
            "agentId": self.agent_id(envelope),
            "deliver": false,
            "timeoutSeconds": timeout_seconds(envelope.timeout),
        });
        if self.wait_for_completion
            && let Some(map) = body.as_object_mut()
        {
            map.insert("waitForCompletion".to_owned(), Value::Bool(true));
        }
        body
    }

    fn request_timeout(&self, envelope: &Envelope) -> Duration {
        if self.wait_for_completion {
            envelope.timeout.saturating_add(COMPLETION_MARGIN)
        } else {
            self.request_timeout
        }
    }

    /// Quotes a gateway answer for an error message: at most
    /// [`MAX_QUOTE_CHARS`] characters, the token blanked out.
    fn quote(&self, body: &[u8]) -> String {
        shorten(&self.redact(&error_text(body)), MAX_QUOTE_CHARS)
    }

    /// `text` with every occurrence of the token blanked out.
    fn redact(&self, text: &str) -> String {
        let token = self.token.expose();
        if token.is_empty() {
            text.to_owned()
        } else {
            text.replace(token, "[redacted]")
        }
    }

    fn map_response(
        &self,
        envelope: &Envelope,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        sent: usize,
    ) -> Result<Ack, TransportError> {
        let code = status.as_u16();
        let reason = status.canonical_reason().unwrap_or("");
        let rejected = |message: String| TransportError::Rejected {
            status: code,
            message,
        };
        match code {
            200 => self.ack(body).ok_or_else(|| {
                rejected(format!(
                    "openclaw answered 200 but not with {{\"ok\":true,…}} JSON: {}: check that `url` points at an openclaw gateway",
                    quoted_body(&self.quote(body))
                ))
            }),
            400 => {
                let said = self.quote(body);
                if said.to_ascii_lowercase().contains("agentid") {
                    let agent = self.agent_id(envelope);
                    Err(rejected(format!(
                        "openclaw does not know agent {agent:?} ({}): add it to the gateway's agents and hooks.allowedAgentIds, or set the agent's remote_id in orch.yaml",
                        quoted_body(&said)
                    )))
                } else {
                    Err(rejected(format!(
                        "openclaw refused the request as malformed: {}",
                        quoted_body(&said)
                    )))
                }
            }
            401 => Err(rejected(
                "the gateway refused the hook token: check the token variable or file named in orch config (token not shown)"
                    .to_owned(),
            )),
            404 => Err(rejected(format!(
                "no hooks endpoint at POST {}: enable hooks in the gateway config, check `path` (default /hooks)",
                self.shown_endpoint
            ))),
            405 => Err(rejected(format!(
                "the gateway does not accept POST at {}: check `url` and `path` (default /hooks)",
                self.shown_endpoint
            ))),
            // The gateway's own limit is not known here (it may be lower
            // than ours), so say what it answered rather than invent a limit.
            413 => Err(rejected(format!(
                "the gateway refused the {sent}-byte request as too large (HTTP 413: {}): shorten the task or its context, or raise the gateway's body limit",
                quoted_body(&self.quote(body))
            ))),
            409 | 429 | 502 | 503 | 504 | 500..=599 => Err(TransportError::Unavailable {
                message: format!(
                    "openclaw answered {code} {reason}: {}",
                    quoted_body(&self.quote(body))
                ),
                retry_after: headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, jiff::Timestamp::now())),
            }),
            _ => Err(rejected(format!(
                "openclaw answered {code} {reason}: {}",
                quoted_body(&self.quote(body))
            ))),
        }
    }

    /// Reads a 200 body; `None` unless it is JSON with `"ok": true`.
    fn ack(&self, body: &[u8]) -> Option<Ack> {
        let value: Value = serde_json::from_slice(body).ok()?;
        if value.get("ok") != Some(&Value::Bool(true)) {
            return None;
        }
        let remote_run_id = value.get("runId").and_then(id_string);
        let completion = if self.wait_for_completion {
            value
                .get("completion")
                .and_then(|c| completion(c, remote_run_id.as_deref()))
        } else {
            None
        };
        Some(Ack {
            remote_run_id,
            completion,
        })
    }
}

#[async_trait]
impl Transport for OpenClawTransport {
    fn name(&self) -> &str {
        "openclaw"
    }

    fn max_task_bytes(&self) -> u64 {
        self.max_task_bytes
    }

    async fn dispatch(&self, envelope: &Envelope) -> Result<Ack, TransportError> {
        let body =
            serde_json::to_vec(&self.body(envelope)).map_err(|e| TransportError::Config {
                message: format!("cannot encode the request body: {e}"),
            })?;
        if body.len() > self.max_body_bytes {
            return Err(TransportError::TooLarge {
                size: body.len() as u64,
                limit: self.max_body_bytes as u64,
            });
        }
        let sent = body.len();
        let key = envelope.idempotency_key();
        let key_header = HeaderValue::from_str(&key).map_err(|_| TransportError::Config {
            message: format!(
                "the idempotency key {:?} cannot be sent in an http header",
                shorten(&key, 60)
            ),
        })?;
        tracing::debug!(
            endpoint = %self.shown_endpoint,
            run_id = %envelope.run_id,
            idempotency_key = %key,
            bytes = sent,
            wait = self.wait_for_completion,
            "openclaw dispatch"
        );
        let timeout = self.request_timeout(envelope);
        let response = self
            .client
            .post(self.endpoint.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("Idempotency-Key", key_header)
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| self.connect_error(e, timeout))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = read_capped(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| self.connect_error(e, timeout))?;
        let result = self.map_response(envelope, status, &headers, &bytes, sent);
        match &result {
            Ok(ack) => tracing::debug!(
                run_id = %envelope.run_id,
                remote_run_id = ?ack.remote_run_id,
                completion = ?ack.completion,
                "openclaw admitted the run"
            ),
            Err(e) => {
                tracing::debug!(run_id = %envelope.run_id, error = %e, "openclaw dispatch failed")
            }
        }
        result
    }
}

impl OpenClawTransport {
    /// A failure before a full response arrived: always [`TransportError::Connect`]
    /// (retryable: the idempotency key makes a retry safe). A timeout says
    /// which one: `timeout` is the whole request's.
    fn connect_error(&self, e: reqwest::Error, timeout: Duration) -> TransportError {
        let what = if e.is_timeout() && e.is_connect() {
            format!(
                "could not connect within {}",
                friendly(self.connect_timeout)
            )
        } else if e.is_timeout() {
            format!("the gateway did not answer within {}", friendly(timeout))
        } else if e.is_connect() {
            format!("cannot connect: {}", cause(&e))
        } else {
            format!("connection failed: {}", cause(&e))
        };
        TransportError::Connect {
            message: format!("POST {}: {}", self.shown_endpoint, self.redact(&what)),
        }
    }
}

fn config_error(message: impl Into<String>) -> TransportError {
    TransportError::Config {
        message: message.into(),
    }
}

/// `/hooks`, `hooks`, `/hooks/` → `/hooks`; `""` and `/` → `""`.
fn normalize_path(path: &str) -> Result<String, TransportError> {
    let trimmed = path.trim().trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed
        .chars()
        .any(|c| c.is_whitespace() || c == '?' || c == '#')
    {
        return Err(config_error(format!(
            "the openclaw path {:?} must be a plain url path like /hooks",
            shorten(path, 100)
        )));
    }
    Ok(format!("/{trimmed}"))
}

/// A URL for messages: scheme, host, port and path only.
fn show_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Cannot fail for http(s) URLs; a failure leaves the value as it was,
    // and the constructor refuses URLs with credentials anyway.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Whole seconds, rounded up, at least 1.
fn timeout_seconds(timeout: Duration) -> u64 {
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    secs.max(1)
}

/// A run id the gateway sent: a string, or a number written as text.
fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(shorten(s, 128)),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `completion: { status, error? }` → [`Completion`].
fn completion(c: &Value, run_id: Option<&str>) -> Option<Completion> {
    let status = c.get("status")?.as_str()?;
    let status = shorten(&squash(status), 40);
    let mut detail = format!("openclaw run {} ended: {status}", run_id.unwrap_or("?"));
    if let Some(error) = c.get("error") {
        let error = match error {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let error = squash(&error);
        if !error.is_empty() {
            detail.push_str(": ");
            detail.push_str(&shorten(&error, MAX_QUOTE_CHARS));
        }
    }
    Some(Completion {
        ok: status == "ok",
        detail,
    })
}

/// What an error body says: the `error` (or `message`) field of a JSON
/// body, else the body as text; whitespace and control characters folded
/// into single spaces.
pub(crate) fn error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text) {
        for field in ["error", "message"] {
            match map.get(field) {
                Some(Value::String(s)) => return squash(s),
                Some(Value::Object(inner)) => {
                    if let Some(Value::String(s)) = inner.get("message") {
                        return squash(s);
                    }
                }
                _ => {}
            }
        }
    }
    squash(&text)
}

/// `5s`, `1.5s`, `250ms` (whole seconds are the common case here).
fn friendly(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// `Retry-After`: delta-seconds or an HTTP-date (relative to `now`; a date
/// in the past means "now", which the delegator raises to its backoff).
/// `None` when it is neither.
pub(crate) fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate rather than fail: the
        // delegator caps the wait anyway.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    let at = PARSER.parse_timestamp(value).ok()?;
    let delta = at.duration_since(now);
    Some(if delta.is_negative() {
        Duration::ZERO
    } else {
        delta.unsigned_abs()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_config_reads_its_keys_and_never_a_token() {
        let read = |json: Value| serde_json::from_value::<OpenClawConfig>(json);
        let c = read(json!({
            "url": "http://127.0.0.1:18789",
            "token_env": "GW_TOKEN",
            "request_timeout": "1m",
            "max_task_bytes": 1_000_000,
        }))
        .unwrap();
        assert_eq!(c.path, "/hooks");
        assert_eq!(c.token_env.as_deref(), Some("GW_TOKEN"));
        assert_eq!(c.token, None);
        assert_eq!(c.request_timeout, Duration::from_secs(60));
        assert_eq!(c.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        // The body limit follows a raised task limit.
        assert_eq!(c.max_body_bytes, None);
        assert_eq!(c.body_limit(), 2_000_000);
        assert_eq!(
            read(json!({"url": "http://h", "token_env": "T"}))
                .unwrap()
                .body_limit(),
            2 * DEFAULT_MAX_BODY_BYTES
        );
        assert_eq!(
            OpenClawConfig::new("http://h", Secret::new("t")).body_limit(),
            DEFAULT_MAX_BODY_BYTES
        );
        for key in ["token", "max_body_bytes", "connect_timeout", "tokenEnv"] {
            let e = read(json!({"url": "http://h", key: "x"}))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("unknown field `{key}`")), "{e}");
        }
        // A token given in code is never written out.
        let mut given = OpenClawConfig::new("http://h", Secret::new("hunter2-token"));
        given.agent_id = Some("tech-lead".into());
        let shown = serde_json::to_value(&given).unwrap();
        assert!(!shown.to_string().contains("hunter2"), "{shown}");
        assert_eq!(
            shown,
            json!({"url": "http://h", "path": "/hooks", "token_env": null, "token_file": null, "wait_for_completion": false, "agent_id": "tech-lead", "max_task_bytes": 262144, "request_timeout": "30s"})
        );
    }

    #[test]
    fn a_named_token_is_read_by_the_transport_and_errors_name_the_source() {
        let config = |json: Value| serde_json::from_value::<OpenClawConfig>(json).unwrap();
        let unset = "ORCH_OPENCLAW_TEST_SURELY_UNSET_TOKEN";
        let err = OpenClawTransport::new(config(json!({"url": "http://h", "token_env": unset})))
            .unwrap_err();
        assert!(matches!(err, TransportError::Config { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("transport configuration: the hook token variable {unset} is not set")
        );
        let dir = std::env::temp_dir().join(format!("orch-openclaw-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hook-token");
        let missing =
            OpenClawTransport::new(config(json!({"url": "http://h", "token_file": file})))
                .unwrap_err()
                .to_string();
        assert!(
            missing.contains(&format!(
                "cannot read the hook token file {}",
                file.display()
            )),
            "{missing}"
        );
        std::fs::write(&file, "hunter2-token\n").unwrap();
        let t =
            OpenClawTransport::new(config(json!({"url": "http://h", "token_file": file}))).unwrap();
        assert_eq!(t.token.expose(), "hunter2-token");
        assert!(!format!("{t:?}").contains("hunter2"));
        // Read first: a missing token is what is reported.
        let both =
            OpenClawTransport::new(config(json!({"url": "http://me:pw@h", "token_env": unset})))
                .unwrap_err()
                .to_string();
        assert!(both.contains(unset), "{both}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = at("2026-01-10T10:00:00Z");
        let cases = [
            ("0", Some(0)),
            ("7", Some(7)),
            (" 120 ", Some(120)),
            ("99999999999999999999999", Some(u64::MAX)),
            ("Sat, 10 Jan 2026 10:00:30 GMT", Some(30)),
            ("Sat, 10 Jan 2026 09:00:00 GMT", Some(0)),
            ("Sat, 10 Jan 2026 11:00:00 +0100", Some(0)),
            ("-5", None),
            ("1.5", None),
            ("soon", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_retry_after(input, now),
                want.map(Duration::from_secs),
                "{input:?}"
            );
        }
    }

    #[test]
    fn error_bodies() {
        let cases: [(&[u8], &str); 8] = [
            (
                br#"{"ok":false,"error":"unknown agentId \"x\""}"#,
                r#"unknown agentId "x""#,
            ),
            (br#"{"ok":false,"error":{"message":"nested"}}"#, "nested"),
            (br#"{"message":"from message"}"#, "from message"),
            (b"Unauthorized", "Unauthorized"),
            (b"  Bad\r\n\tGateway \n", "Bad Gateway"),
            (br#"{"ok":false}"#, r#"{"ok":false}"#),
            (b"", ""),
            (b"\xff\xfeoops", "\u{fffd}\u{fffd}oops"),
        ];
        for (body, want) in cases {
            assert_eq!(error_text(body), want, "{body:?}");
        }
    }

    #[test]
    fn shorten_counts_characters() {
        assert_eq!(shorten("héllo", 3), "hél…");
        assert_eq!(shorten("héllo", 5), "héllo");
        assert_eq!(
            shorten(&"é".repeat(500), MAX_QUOTE_CHARS).chars().count(),
            201
        );
    }

    #[test]
    fn timeout_rounds_up_to_whole_seconds() {
        assert_eq!(timeout_seconds(Duration::ZERO), 1);
        assert_eq!(timeout_seconds(Duration::from_millis(1)), 1);
        assert_eq!(timeout_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(timeout_seconds(Duration::from_secs(120)), 120);
    }

    #[test]
    fn paths_and_urls() {
        assert_eq!(normalize_path("/hooks").ok(), Some("/hooks".to_owned()));
        assert_eq!(normalize_path("hooks/").ok(), Some("/hooks".to_owned()));
        assert_eq!(normalize_path("/").ok(), Some(String::new()));
        assert!(normalize_path("/a b").is_err());
        let t = |url: &str| OpenClawTransport::new(OpenClawConfig::new(url, Secret::new("tok")));
        assert_eq!(
            t("http://127.0.0.1:18789/").map(|t| t.endpoint().to_owned()),
            Ok("http://127.0.0.1:18789/hooks/agent".to_owned())
        );
        for bad in [
            "",
            "ftp://host",
            "http://user:pw@host",
            "http://host/?a=b",
            "not a url",
        ] {
            assert!(
                matches!(t(bad), Err(TransportError::Config { .. })),
                "{bad:?}"
            );
        }
        // Credentials are never quoted, not even in a url that does not parse.
        for bad in ["http://u:hunter2@ho st", "http://u:hunter2@host"] {
            let Err(e) = t(bad) else {
                panic!("{bad:?} accepted");
            };
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        for token in ["", " zq9x ", "a\nb"] {
            let r = OpenClawTransport::new(OpenClawConfig::new("http://h", Secret::new(token)));
            let Err(TransportError::Config { message }) = r else {
                panic!("{token:?} accepted");
            };
            assert!(token.trim().is_empty() || !message.contains(token));
        }
    }

    #[test]
    fn completions() {
        let c = |v: Value| completion(&v, Some("r1"));
        assert_eq!(
            c(json!({"status": "ok"})),
            Some(Completion {
                ok: true,
                detail: "openclaw run r1 ended: ok".to_owned()
            })
        );
        assert_eq!(
            c(json!({"status": "error", "error": "model\nfailed"})),
            Some(Completion {
                ok: false,
                detail: "openclaw run r1 ended: error: model failed".to_owned()
            })
        );
        assert_eq!(c(json!({"status": "timeout"})).map(|c| c.ok), Some(false));
        assert_eq!(c(json!({})), None);
    }
}
