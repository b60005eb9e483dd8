//! Test support: a fake OpenClaw gateway (feature `testing`).
//!
//! [`FakeGateway`] is a local HTTP server that answers like the real
//! OpenClaw gateway's hooks endpoint as `shared/rigs/openclaw/README.md`
//! records it, and acts as the agents behind it the way the rig's fake
//! model makes real agents act: each started run writes a handoff to the
//! first absolute path ending in `.json` in its message. It lets this
//! crate's tests and the workspace end-to-end tests (which run the `orch`
//! binary against it) exercise the `openclaw` transport without Node.
//!
//! The contract it follows (on `POST {path}/agent`, checked in this order):
//!
//! - hooks disabled, or any other path → `404` (plain `Not Found`);
//!   another method → `405` (plain `Method Not Allowed`);
//! - token missing or wrong (`Authorization: Bearer <t>` or
//!   `x-openclaw-token: <t>`) → `401` (plain `Unauthorized`);
//! - body over [`FakeGatewayOptions::max_body`] → `413
//!   {"ok":false,"error":"payload too large"}`;
//! - body not a JSON object → `400 {"ok":false,"error":"invalid JSON"}`
//!   (this wording is the fake's own); no `message` → `400
//!   {"ok":false,"error":"message required"}`; an `agentId` not in
//!   [`FakeGatewayOptions::agents`] → `400 {"ok":false,"error":"unknown
//!   agentId \"x\""}` (without `agentId`, the first agent, OpenClaw's
//!   default agent, runs it);
//! - then the next scripted [`FakeFailure`], if any;
//! - a known `Idempotency-Key` → the first response again (same `runId`,
//!   same `completion`), waiting for it if the first run is still going;
//!   no new run;
//! - else a new run starts: `200 {"ok":true,"runId":"<uuid>"}` at once, or
//!   with `"waitForCompletion":true` once the run settled, with
//!   `"completion":{"status":"ok"}` (`"error"` for `[fake:error]`,
//!   `"timeout"` when [`FakeGatewayOptions::answer_delay`] outlasts the
//!   request's `timeoutSeconds`).
//!
//! What a run does is scripted by markers in the message, as in the rig:
//! `[fake:partial]`, `[fake:blocked]`, `[fake:failed]`, `[fake:low]`,
//! `[fake:silent]` (ends without writing), `[fake:malformed]` (writes
//! `{not json`); and, additions of this fake, `[fake:malformed-once]`
//! (malformed on the first run for that handoff file, valid afterwards)
//! and `[fake:error]` (the run ends with status `error`, nothing written).
//! The handoff's `result` is `Fake gateway answer to: ` and the message's
//! first line, like the rig's `Fake model answer to: …`.
//!
//! Bodies of the scripted 409/429/502/503 are this fake's own invention:
//! the rig never saw those statuses.
//!
//! Faults beyond the contract, for the delegator's retries: a scripted
//! [`FakeFailure::Hang`] never answers (a hung gateway), and
//! [`FakeGateway::go_down`] / [`FakeGateway::come_up`] close and bind
//! again the listening socket on the same port (a gateway restarting:
//! connections are refused in between).

mod agent;
mod net;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use self::agent::{Act, plan, write_atomically};
use self::net::{Conn, CutListener, Power};

/// How long a run may take when the request gives no `timeoutSeconds`
/// (OpenClaw's default, 48 h).
const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(48 * 3600);

/// How a [`FakeGateway`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeGatewayOptions {
    /// The hook token (`hooks.token`).
    pub token: String,
    /// The hooks path (`hooks.path`), default `/hooks`.
    pub path: String,
    /// Known agent ids; the first is the default agent. Others get `400
    /// unknown agentId`.
    pub agents: Vec<String>,
    /// `hooks.enabled`; `false` answers every request with `404`.
    pub hooks_enabled: bool,
    /// Largest accepted body in bytes (default 256 KiB); larger → `413`.
    pub max_body: usize,
    /// Failures returned, in order, to the next requests that pass
    /// authentication and validation, before anything else happens.
    pub fail_next: Vec<FakeFailure>,
    /// How long each run works before it writes its handoff (default 0).
    pub answer_delay: Duration,
}

impl Default for FakeGatewayOptions {
    /// Token `fake-hook-token`, path `/hooks`, one agent `main`, hooks
    /// enabled, 256 KiB bodies, no failures, no delay.
    fn default() -> Self {
        Self {
            token: "fake-hook-token".to_owned(),
            path: "/hooks".to_owned(),
            agents: vec!["main".to_owned()],
            hooks_enabled: true,
            max_body: 256 * 1024,
            fail_next: Vec::new(),
            answer_delay: Duration::ZERO,
        }
    }
}

impl FakeGatewayOptions {
    /// The defaults with this token and these agents.
    pub fn new<I, S>(token: impl Into<String>, agents: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            token: token.into(),
            agents: agents.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// A scripted answer, returned instead of the normal one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeFailure {
    /// `429 {"ok":false,"error":"too many requests"}` with `Retry-After:
    /// <retry_after_secs>`.
    Status429 {
        /// The `Retry-After` value, in seconds.
        retry_after_secs: u64,
    },
    /// `409 {"ok":false,"error":"conflict: the agent is busy"}`.
    Status409,
    /// `502` plain `Bad Gateway`.
    Status502,
    /// `503` plain `Service Unavailable`.
    Status503,
    /// Any status, body and optional `Retry-After` header value.
    Status {
        /// HTTP status.
        status: u16,
        /// Body, sent as is (JSON if it parses as JSON, else plain text).
        body: String,
        /// `Retry-After` header value, sent as is.
        retry_after: Option<String>,
    },
    /// Close the connection without a response; no run starts.
    DropConnection,
    /// Start the run (and remember its idempotency key), then close the
    /// connection without a response: a retry with the same key must get
    /// the replayed response, not a second run.
    DropAfterStart,
    /// Never answer (until the client gives up or the fake shuts down);
    /// no run starts: a hung gateway.
    Hang,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `POST`, `GET`, …
    pub method: String,
    /// The request path (without the query).
    pub path: String,
    /// All headers, names lowercased, in arrival order, except the
    /// credentials (`authorization`, `x-openclaw-token`).
    pub headers: Vec<(String, String)>,
    /// Whether the request carried the right token.
    pub auth_valid: bool,
    /// The body, if it was JSON.
    pub body: Option<Value>,
    /// The body's size in bytes (as far as it was read).
    pub body_len: usize,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A fake OpenClaw gateway on `127.0.0.1:<random port>`; see the module
/// documentation for the contract. Dropping it stops the server and every
/// run still going.
///
/// It serves on the runtime that started it: a test that blocks a thread
/// while the gateway must answer (say, `std::process::Command::output()`
/// running `orch delegate`) needs a multi-thread runtime
/// (`#[tokio::test(flavor = "multi_thread")]`) or `tokio::process`.
pub struct FakeGateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
    power: Arc<Power>,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGateway")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeGateway {
    /// Binds `127.0.0.1:0` and starts serving on the current runtime.
    pub async fn start(opts: FakeGatewayOptions) -> std::io::Result<FakeGateway> {
        let tcp = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = tcp.local_addr()?;
        let shutdown = CancellationToken::new();
        let path = format!("/{}", opts.path.trim().trim_matches('/'));
        let endpoint = if path == "/" {
            "/agent".to_owned()
        } else {
            format!("{path}/agent")
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(Inner {
                failures: opts.fail_next.iter().cloned().collect(),
                ..Inner::default()
            }),
            endpoint,
            opts,
            shutdown: shutdown.clone(),
            runs_finished: Arc::new(AtomicU64::new(0)),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared))
            .into_make_service_with_connect_info::<Conn>();
        let power = Arc::new(Power::new(shutdown.clone(), addr));
        let listener = CutListener {
            tcp: Some(tcp),
            power: Arc::clone(&power),
        };
        let server = tokio::spawn(async move {
            let serve =
                axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake gateway server failed");
            }
        });
        Ok(Self {
            addr,
            shared,
            power,
            server: Some(server),
        })
    }

    /// Goes down as a restarting gateway does: closes the listening socket
    /// (connections to [`FakeGateway::addr`] are refused from now on) and
    /// cuts every open connection. Runs already started go on. Returns once
    /// the socket is closed.
    pub async fn go_down(&self) {
        self.power.go_down().await;
    }

    /// Comes back up on the same address; connections succeed once this
    /// returns. Fails only if the port was taken in between.
    pub async fn come_up(&self) -> std::io::Result<()> {
        self.power.come_up().await
    }

    /// `http://127.0.0.1:<port>`, the gateway's base URL (the transport's
    /// `url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The hook token it accepts.
    pub fn token(&self) -> &str {
        &self.shared.opts.token
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many runs started (replays of an idempotency key start none).
    pub fn runs_started(&self) -> usize {
        self.shared.lock().runs_started
    }

    /// How many runs have settled (written their handoff, or not).
    pub fn runs_finished(&self) -> usize {
        self.shared.runs_finished.load(Ordering::SeqCst) as usize
    }

    /// Adds `failure` to the end of the scripted failures.
    pub fn push_failure(&self, failure: FakeFailure) {
        self.shared.lock().failures.push_back(failure);
    }

    /// Stops accepting, cuts open connections, and stops every run still
    /// going; returns once all of that is done.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(server) = self.server.take() {
            // The server ends once its connections closed, which cancelling
            // forces; a panic in it is of no interest here.
            let _ = server.await;
        }
        let mut runs = std::mem::take(&mut self.shared.lock().runs);
        runs.shutdown().await;
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
        }
        self.shared.lock().runs.abort_all();
    }
}

struct Shared {
    opts: FakeGatewayOptions,
    /// `{path}/agent`.
    endpoint: String,
    state: Mutex<Inner>,
    shutdown: CancellationToken,
    /// Shared with the run tasks (which must not hold `Shared`: it owns
    /// them).
    runs_finished: Arc<AtomicU64>,
}

#[derive(Default)]
struct Inner {
    requests: Vec<RecordedRequest>,
    failures: VecDeque<FakeFailure>,
    /// Idempotency key → the response of its first request.
    admissions: HashMap<String, watch::Receiver<Option<Value>>>,
    /// Handoff file name → runs that wrote (or tried to write) it.
    runs_per_file: HashMap<String, u32>,
    runs_started: usize,
    runs: JoinSet<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state stays consistent even if a holder panicked: every
        // update is a single push or insert.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The one handler: routing, auth and validation are done here, in the
/// order the module documentation gives.
async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_owned();
    let opts = &shared.opts;
    let auth_valid = auth_valid(&parts.headers, &opts.token);
    let mut record = RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        headers: parts
            .headers
            .iter()
            .filter(|(n, _)| *n != header::AUTHORIZATION && n.as_str() != "x-openclaw-token")
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        auth_valid,
        body: None,
        body_len: 0,
        idempotency_key: parts
            .headers
            .get("idempotency-key")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    };

    if !opts.hooks_enabled || path != shared.endpoint {
        shared.lock().requests.push(record);
        return plain(StatusCode::NOT_FOUND, "Not Found");
    }
    if method != Method::POST {
        shared.lock().requests.push(record);
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if !auth_valid {
        shared.lock().requests.push(record);
        return plain(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > opts.max_body as u64) {
        record.body_len = declared.unwrap_or(0) as usize;
        shared.lock().requests.push(record);
        return too_large();
    }
    let bytes = match axum::body::to_bytes(body, opts.max_body).await {
        Ok(bytes) => bytes,
        Err(_) => {
            shared.lock().requests.push(record);
            return too_large();
        }
    };
    record.body_len = bytes.len();
    record.body = serde_json::from_slice::<Value>(&bytes).ok();
    let Some(Value::Object(fields)) = record.body.clone() else {
        shared.lock().requests.push(record);
        return error(StatusCode::BAD_REQUEST, "invalid JSON");
    };
    let message = match fields.get("message") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        _ => {
            shared.lock().requests.push(record);
            return error(StatusCode::BAD_REQUEST, "message required");
        }
    };
    let agent = match fields.get("agentId") {
        Some(Value::String(a)) if opts.agents.contains(a) => a.clone(),
        None | Some(Value::Null) if !opts.agents.is_empty() => opts.agents[0].clone(),
        other => {
            let shown = match other {
                Some(Value::String(a)) => a.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            shared.lock().requests.push(record);
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unknown agentId {shown:?}"),
            );
        }
    };
    let wait = fields.get("waitForCompletion") == Some(&Value::Bool(true));
    let run_timeout = fields
        .get("timeoutSeconds")
        .and_then(Value::as_f64)
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_RUN_TIMEOUT, |s| {
            Duration::from_secs_f64(s.min(DEFAULT_RUN_TIMEOUT.as_secs_f64()))
        });
    let key = record.idempotency_key.clone();

    // Decide under one lock: scripted failure, replay, or a new run.
    let (failure, admission) = {
        let mut state = shared.lock();
        state.requests.push(record);
        let failure = state.failures.pop_front();
        let scripted_early = matches!(
            failure,
            Some(ref f) if !matches!(f, FakeFailure::DropAfterStart)
        );
        if scripted_early {
            (failure, None)
        } else if let Some(replay) = key.as_ref().and_then(|k| state.admissions.get(k)) {
            (failure, Some(Admission::Replay(replay.clone())))
        } else if shared.shutdown.is_cancelled() {
            (None, Some(Admission::ShuttingDown))
        } else {
            let (tx, rx) = watch::channel(None);
            if let Some(k) = &key {
                state.admissions.insert(k.clone(), rx.clone());
            }
            state.runs_started += 1;
            let run_id = fake_uuid();
            let act = plan(&message, &agent, |file| {
                let runs = state.runs_per_file.entry(file.to_owned()).or_insert(0);
                *runs += 1;
                *runs
            });
            let accepted = json!({ "ok": true, "runId": run_id });
            if !wait {
                // Answered on admission; the run goes on in the background.
                let _ = tx.send(Some(accepted.clone()));
            }
            while state.runs.try_join_next().is_some() {}
            let delay = opts.answer_delay;
            let finished = Arc::clone(&shared.runs_finished);
            state.runs.spawn(async move {
                let completion = run(act, delay, run_timeout).await;
                finished.fetch_add(1, Ordering::SeqCst);
                if wait {
                    let mut response = accepted;
                    if let Some(map) = response.as_object_mut() {
                        map.insert("completion".to_owned(), completion);
                    }
                    let _ = tx.send(Some(response));
                }
            });
            (failure, Some(Admission::Replay(rx)))
        }
    };

    match failure {
        Some(FakeFailure::DropAfterStart | FakeFailure::DropConnection) => {
            conn.kill.cancel();
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "dropped");
        }
        Some(FakeFailure::Hang) => {
            // Until the client gives up (hyper then drops this future) or
            // the connection is cut.
            conn.kill.cancelled().await;
            return plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
        }
        Some(f) => return scripted(f),
        None => {}
    }
    match admission {
        Some(Admission::Replay(mut rx)) => {
            let answer = tokio::select! {
                answer = rx.wait_for(Option::is_some) => answer.ok().and_then(|a| a.clone()),
                () = shared.shutdown.cancelled() => None,
            };
            match answer {
                Some(body) => json_response(StatusCode::OK, &body),
                None => plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
            }
        }
        Some(Admission::ShuttingDown) | None => {
            plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
    }
}

enum Admission {
    /// Wait for this response (a new run's or a replayed one).
    Replay(watch::Receiver<Option<Value>>),
    ShuttingDown,
}

/// One run: work for `delay`, then act, all within `timeout`. Returns the
/// run's `completion` object.
async fn run(act: Act, delay: Duration, timeout: Duration) -> Value {
    let work = async {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match act {
            Act::Nothing => Ok(()),
            Act::Error(e) => Err(e),
            Act::Write { path, body } => {
                if let Err(e) = write_atomically(&path, &body.render()).await {
                    // A failed `write` tool call does not fail a real run:
                    // the model reads the error and answers anyway.
                    tracing::warn!(path = %path.display(), error = %e, "fake agent could not write its handoff");
                }
                Ok(())
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(())) => json!({ "status": "ok" }),
        Ok(Err(e)) => json!({ "status": "error", "error": e }),
        Err(_) => json!({ "status": "timeout", "error": "run timed out" }),
    }
}

fn auth_valid(headers: &HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == token);
    let custom = headers
        .get("x-openclaw-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim() == token);
    !token.is_empty() && (bearer || custom)
}

fn scripted(failure: FakeFailure) -> Response {
    match failure {
        FakeFailure::Status429 { retry_after_secs } => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "too many requests");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        FakeFailure::Status409 => error(StatusCode::CONFLICT, "conflict: the agent is busy"),
        FakeFailure::Status502 => plain(StatusCode::BAD_GATEWAY, "Bad Gateway"),
        FakeFailure::Status503 => plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        FakeFailure::Status {
            status,
            body,
            retry_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let is_json = serde_json::from_str::<Value>(&body).is_ok();
            let mut response = (status, body).into_response();
            let kind = if is_json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        // Handled by the caller (they cut the connection, or never answer).
        FakeFailure::DropConnection | FakeFailure::DropAfterStart | FakeFailure::Hang => {
            plain(StatusCode::INTERNAL_SERVER_ERROR, "dropped")
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = (status, Body::from(text)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "ok": false, "error": message }))
}

fn too_large() -> Response {
    error(StatusCode::PAYLOAD_TOO_LARGE, "payload too large")
}

/// A UUID-shaped run id, unique within the process.
fn fake_uuid() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let seed = u64::from(std::process::id());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        seed & 0xffff_ffff,
        (n >> 48) & 0xffff,
        (n >> 36) & 0xfff,
        (n >> 24) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}
