//! [`NatsStore`]: the [`HandoffStore`] on NATS JetStream, for fleets spread
//! over several hosts (DESIGN §10; feature `nats`).
//!
//! inotify does not see writes made on another host, so the file store
//! cannot carry a fleet over NFS. Here every host talks to the same NATS
//! server (or cluster) and the store lives in JetStream:
//!
//! ```text
//! KV bucket  <bucket>              h/<id>, s/<id>: handoffs; q/h/<id>/<n>, q/s/<id>/<n>: quarantined
//! KV bucket  <bucket>-workflows    w/<wfRunId>/summary, w/<wfRunId>/step/<stepId>
//! stream     ORCH_LEDGER_<bucket>  subject orch.<bucket>.ledger, one ledger event per message
//! ```
//!
//! Key names are in `keys.rs` (ids are written with `.` as `=`, so every
//! key is a single subject token whatever the id). Workflow records have a
//! bucket of their own: they may be four times the handoff cap (as in the
//! file store), and the handoff watch then carries handoffs only.
//!
//! # Opening
//!
//! [`NatsStore::connect`] checks the settings ([`NatsStoreConfig::check`]),
//! reads the token the config names, if any ([`NatsAuth::token`]: errors
//! name the variable or file), connects (token or `.creds` file; never
//! logged),
//! then creates what is missing: both buckets (history
//! [`NatsStoreConfig::history`], [`NatsStoreConfig::replicas`], file
//! storage, max value size = the handoff cap, and four times it for
//! workflow records) and the ledger stream. Creating what already exists
//! with the same settings is a no-op; a bucket that exists with other
//! settings is used as it is. The streams are created with plain JetStream
//! stream requests (as `nats kv add` would): async-nats' own
//! `create_key_value` first reads account info in a shape that nats-server
//! 2.9 (Debian's) does not send. An unreachable server, refused
//! credentials or a server without JetStream are [`StoreError::Unavailable`]
//! with what to check.
//!
//! # Waiting
//!
//! Like the file store: one watch per store, created by the first
//! [`crate::Handoffs::subscribe`], and a map key → waiters (`watch.rs`).
//! `subscribe` registers the waiter and makes sure the watch consumer exists
//! and is subscribed before it returns; [`Subscription::wait`] then reads
//! the key (a handoff that landed before or during the subscription is found
//! there) and otherwise judges what the watch delivers for the key, newest
//! revision only, until the deadline, where it reads the key one last time.
//! The outcomes are the file store's:
//!
//! | value                                          | outcome |
//! |------------------------------------------------|---------|
//! | absent, deleted or purged                      | keep waiting |
//! | valid handoff                                  | [`WaitOutcome::Landed`] |
//! | empty or cut off (`is_incomplete`)             | keep waiting; still so at the deadline: [`WaitOutcome::TimedOutIncomplete`] |
//! | invalid and complete                           | [`WaitOutcome::Invalid`] at once |
//! | larger than the cap                            | [`WaitOutcome::Invalid`] (`HandoffError::TooLarge`) at once |
//! | server unreachable, request failed             | `Err` |
//!
//! # Sizes
//!
//! A handoff over [`NatsStoreConfig::max_handoff_bytes`] is refused before
//! it is sent ([`StoreError::TooLarge`]), and the bucket refuses it too. The
//! server's `max_payload` (1 MiB by default) must be at least the cap: a
//! store that connects to a smaller one warns, and a value over it fails
//! with an error that says to raise `max_payload`.
//!
//! # Ledger
//!
//! `append_ledger` publishes one event and waits for JetStream's ack, so an
//! event that was acknowledged is stored. `read_ledger` reads the stream in
//! order with an ordered consumer up to the last sequence it had when the
//! read began; messages that do not parse are reported as bad lines,
//! numbered by their position (1-based), as the file store numbers lines.
//! `read_ledger_raw` returns the messages joined by newlines.
//!
//! # Sharing
//!
//! [`NatsStore`] is a handle (`Arc` inside): clones share the connection,
//! the watch and the waiter map. The watch task belongs to the store and is
//! aborted when the store and all its subscriptions are dropped.

mod keys;
mod retry;
mod watch;

use crate::prelude::*;
use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use async_nats::{ConnectErrorKind, ConnectOptions, Event};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;

use self::retry::{Failure, Policy};
use self::watch::{POLL_INTERVAL, Slot, Waiters, WatchDeps, Watcher};
use super::files::MAX_LEDGER_LINE;
use super::nats_config::{NatsAuth, NatsStoreConfig};
use crate::store::{
    Existing, HandoffKey, LedgerEvent, LedgerEventKind, LedgerRead, PutMode, Scope, StoreError,
    Subscription, WaitOutcome, WorkflowRecord,
};
use crate::{Expect, Handoff, HandoffError, RunId, parse_handoff_capped};

/// How long creating a consumer (a watch, a ledger read, a key listing)
/// may take before it is tried again. Normally milliseconds; but with a
/// node of the cluster down, nats-server 2.9 may place the new consumer on
/// that node, and the request then hangs until it times out, where a
/// second try lands elsewhere at once.
pub(super) const CONSUMER_TIMEOUT: Duration = Duration::from_secs(1);

/// Workflow records embed a handoff plus attempts and timings (as in the
/// file store).
const RECORD_CAP_FACTOR: u64 = 4;

/// The NATS JetStream store (see the module docs): handoffs and workflow
/// records in KV buckets, waiting by a key watch, the ledger as a stream.
///
/// A handle: `clone` is cheap, and clones share the connection, the watch
/// and the waiter map.
#[derive(Clone)]
pub struct NatsStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `NATS server at nats://…` (no credentials), for errors.
    server: String,
    /// The first server URL without credentials, for locations.
    url: String,
    bucket: String,
    workflow_bucket: String,
    cap: u64,
    /// The retry budget of one operation and the backoff cap.
    policy: Policy,
    /// One JetStream request's timeout.
    attempt_timeout: Duration,
    /// The token, to scrub it from any message that might quote it.
    secret: Option<String>,
    client: async_nats::Client,
    js: jetstream::Context,
    handoffs: kv::Store,
    workflows: kv::Store,
    ledger: stream::Stream,
    ledger_subject: String,
    waiters: Arc<Waiters>,
    watcher: tokio::sync::Mutex<Option<Watcher>>,
    watchers_created: Arc<AtomicUsize>,
    incomplete_reads: AtomicU64,
}

impl fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsStore")
            .field("url", &self.inner.url)
            .field("bucket", &self.inner.bucket)
            .field("active_waiters", &self.active_waiters())
            .finish_non_exhaustive()
    }
}

impl NatsStore {
    /// Connects to the server and opens the store, creating the buckets and
    /// the ledger stream if they do not exist yet.
    pub async fn connect(config: NatsStoreConfig) -> Result<Self, StoreError> {
        config
            .check()
            .map_err(|message| StoreError::Config { message })?;
        let urls: Vec<String> = config
            .url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        let shown: Vec<String> = urls.iter().map(|u| shown_url(u)).collect();
        let Some(first) = shown.first().cloned() else {
            return Err(StoreError::Config {
                message: "no NATS server url given".to_owned(),
            });
        };
        let server = format!("NATS server at {}", shown.join(", "));
        let waiters = Arc::new(Waiters::new());

        let mut options = ConnectOptions::new()
            .name("orch")
            .connection_timeout(config.connect_timeout)
            .request_timeout(Some(config.attempt_timeout.min(config.request_timeout)));
        {
            let waiters = Arc::clone(&waiters);
            // `Connected` comes for the first connection too: only one after
            // a disconnect means the watch may have missed entries.
            let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
            options = options.event_callback(move |event| {
                let waiters = Arc::clone(&waiters);
                let dropped = Arc::clone(&dropped);
                async move {
                    match event {
                        Event::Connected => {
                            if dropped.swap(false, Ordering::AcqRel) {
                                tracing::warn!("NATS store: reconnected");
                                waiters.reconnected();
                            }
                        }
                        // Until the watch is back, waiters read their keys
                        // on an interval.
                        Event::Disconnected => {
                            dropped.store(true, Ordering::Release);
                            tracing::warn!("NATS store: disconnected; reconnecting");
                            waiters.reset_watch();
                        }
                        other => tracing::debug!("NATS store: {other}"),
                    }
                }
            });
        }
        let secret = match &config.auth {
            NatsAuth::CredentialsFile(path) => {
                options = options
                    .credentials_file(path)
                    .await
                    .map_err(|e| StoreError::Config {
                        message: format!(
                            "cannot use the NATS credentials file {}: {}",
                            path.display(),
                            e.kind()
                        ),
                    })?;
                None
            }
            // A token given, or read now from the variable or file named.
            auth => {
                let token = auth.token().map_err(|e| StoreError::Config {
                    message: e.to_string(),
                })?;
                match token {
                    Some(token) => {
                        options = options.token(token.expose().to_owned());
                        Some(token.expose().to_owned())
                    }
                    None => None,
                }
            }
        };
        let scrub = |text: String| scrub(text, secret.as_deref());
        let client = options.connect(urls).await.map_err(|e| {
            let message = match e.kind() {
                ConnectErrorKind::ServerParse => {
                    return StoreError::Config {
                        message: scrub(format!("invalid NATS server url {}: {e}", shown.join(", "))),
                    };
                }
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    format!(
                        "the server refused the credentials ({e}); check the token or credentials file the config names"
                    )
                }
                ConnectErrorKind::Tls => format!("TLS failed: {e}"),
                _ => format!("cannot connect ({e}); is nats-server running?"),
            };
            StoreError::Unavailable {
                server: server.clone(),
                message: scrub(message),
            }
        })?;
        let max_payload = client.server_info().max_payload as u64;
        if max_payload < config.max_handoff_bytes {
            tracing::warn!(
                "the {server} accepts messages of at most {max_payload} bytes (max_payload), less than the handoff cap of {} bytes: larger handoffs will be refused; set `max_payload: 8MB` in the nats-server configuration",
                config.max_handoff_bytes
            );
        }
        if !client.server_info().jetstream {
            return Err(jetstream_disabled(&server));
        }
        let attempt_timeout = config.attempt_timeout.min(config.request_timeout);
        let mut js = jetstream::new(client.clone());
        js.set_timeout(attempt_timeout);

        let policy = Policy {
            budget: config.request_timeout,
            max_delay: config.retry_max_delay,
        };
        let opener = Opener {
            js: &js,
            server: &server,
            replicas: config.replicas.max(1),
            history: config.history.max(1),
            policy,
            deadline: policy.deadline(),
        };
        let bucket = config.bucket.clone();
        let workflow_bucket = format!("{bucket}-workflows");
        let ledger_subject = format!("orch.{bucket}.ledger");
        let ledger_stream = format!("ORCH_LEDGER_{bucket}");
        let (handoffs, workflows, ledger) = tokio::try_join!(
            opener.bucket(&bucket, "orch handoffs", config.max_handoff_bytes),
            opener.bucket(
                &workflow_bucket,
                "orch workflow records",
                config.max_handoff_bytes.saturating_mul(RECORD_CAP_FACTOR),
            ),
            opener.ledger(&ledger_stream, &ledger_subject),
        )?;
        tracing::debug!(%server, %bucket, "NATS store open");
        Ok(Self {
            inner: Arc::new(Inner {
                server,
                url: first,
                bucket,
                workflow_bucket,
                cap: config.max_handoff_bytes,
                policy,
                attempt_timeout,
                secret,
                client,
                js,
                handoffs,
                workflows,
                ledger,
                ledger_subject,
                waiters,
                watcher: tokio::sync::Mutex::new(None),
                watchers_created: Arc::default(),
                incomplete_reads: AtomicU64::new(0),
            }),
        })
    }

    /// The handoff bucket.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// The workflow record bucket (`<bucket>-workflows`).
    pub fn workflow_bucket(&self) -> &str {
        &self.inner.workflow_bucket
    }

    /// The ledger stream's subject (`orch.<bucket>.ledger`).
    pub fn ledger_subject(&self) -> &str {
        &self.inner.ledger_subject
    }

    /// The KV key of the handoff for `key` (e.g. `h/<runId>`, with `.` in
    /// the id written as `=`), for tools such as `nats kv get`.
    pub fn key_of(&self, key: &HandoffKey) -> String {
        keys::handoff(key)
    }

    /// The largest message the server accepts (its `max_payload`).
    pub fn server_max_payload(&self) -> u64 {
        self.inner.client.server_info().max_payload as u64
    }

    /// Subscriptions currently registered in the waiter map.
    pub fn active_waiters(&self) -> usize {
        self.inner.waiters.active()
    }

    /// How many watches this store has started, ever: 0 before the first
    /// subscription, then 1 (more only if a watch ended and was restarted).
    pub fn watchers_created(&self) -> usize {
        self.inner.watchers_created.load(Ordering::Relaxed)
    }

    /// How many times a waiter saw a value that was empty or cut off and
    /// went on waiting. A diagnostic.
    pub fn incomplete_reads(&self) -> u64 {
        self.inner.incomplete_reads.load(Ordering::Relaxed)
    }

    /// How many times every waiter was told to read its key again
    /// (reconnects, watch errors). A diagnostic.
    pub fn rechecks(&self) -> u64 {
        self.inner.waiters.rechecks()
    }

    /// When the watch last woke a waiter (for benchmarks that split
    /// detection latency).
    #[doc(hidden)]
    pub fn last_wake_at(&self) -> Option<std::time::Instant> {
        self.inner.waiters.last_wake()
    }
}

/// Opens (or creates) the store's streams.
struct Opener<'a> {
    js: &'a jetstream::Context,
    server: &'a str,
    replicas: usize,
    history: i64,
    policy: Policy,
    /// One deadline for the whole open.
    deadline: Instant,
}

/// Whether a failed open says the stream does not exist.
fn not_found(message: &str) -> bool {
    message.contains("10059") || message.to_ascii_lowercase().contains("stream not found")
}

impl Opener<'_> {
    fn error<E: fmt::Display>(&self, what: String, failure: &Failure<E>) -> StoreError {
        remote_failure(self.server, "open", what, failure.to_string())
    }

    /// Runs `attempt` with the store's retries, within the open's deadline.
    async fn retry<T, E: fmt::Display, Fut: Future<Output = Result<T, E>>>(
        &self,
        what: &(dyn Fn() -> String + Sync),
        attempt: impl FnMut() -> Fut,
    ) -> Result<T, Failure<E>> {
        retry::run(self.policy, what, self.deadline, attempt).await
    }

    /// Opens a stream (`open`), creating it from `config` if it does not
    /// exist. It is opened first: an open needs only the stream's leader, a
    /// create the cluster's metadata leader too, and every command but the
    /// first finds it there. One that exists with other settings is used as
    /// it is. A stream just created may not be visible at once on every
    /// node: not found after a create is tried again.
    async fn open_or_create<T, E, Fut>(
        &self,
        what: &(dyn Fn() -> String + Sync),
        config: &stream::Config,
        open: &(dyn Fn() -> Fut + Sync),
    ) -> Result<T, StoreError>
    where
        E: fmt::Display,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        let attempt = move || async move {
            match open().await {
                Ok(found) => return Ok(found),
                Err(e) if !not_found(&e.to_string()) => return Err(e.to_string()),
                Err(_) => {}
            }
            if let Err(e) = self.js.create_stream(config.clone()).await {
                let message = e.to_string();
                // Created by someone else meanwhile (or by a try of ours
                // whose answer was lost): open it. Any other refusal is the
                // answer.
                let taken = message.contains("10058") || message.contains("already in use");
                if !taken && !retry::transient(&message) {
                    return Err(message);
                }
            }
            match open().await {
                Ok(found) => Ok(found),
                Err(e) if not_found(&e.to_string()) => Err(format!(
                    "timed out: the stream is not visible yet after creating it ({e})"
                )),
                Err(e) => Err(e.to_string()),
            }
        };
        let open_what = || format!("open {}", what());
        self.retry(&open_what, attempt)
            .await
            .map_err(|f| self.error(what(), &f))
    }

    /// A KV bucket, created as `nats kv add` makes it if it does not exist.
    async fn bucket(
        &self,
        name: &str,
        description: &str,
        max_value: u64,
    ) -> Result<kv::Store, StoreError> {
        let config = stream::Config {
            name: format!("KV_{name}"),
            description: Some(description.to_owned()),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: self.history,
            max_message_size: i32::try_from(max_value).unwrap_or(i32::MAX),
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        let what = || format!("bucket {name} on the {}", self.server);
        let js = self.js;
        self.open_or_create(&what, &config, &move || js.get_key_value(name))
            .await
    }

    /// The ledger stream, opened first and created if it does not exist.
    async fn ledger(&self, name: &str, subject: &str) -> Result<stream::Stream, StoreError> {
        let config = stream::Config {
            name: name.to_owned(),
            description: Some("orch ledger: one event per message".to_owned()),
            subjects: vec![subject.to_owned()],
            max_message_size: i32::try_from(MAX_LEDGER_LINE).unwrap_or(i32::MAX),
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            discard: stream::DiscardPolicy::Old,
            deny_delete: true,
            allow_direct: true,
            ..Default::default()
        };
        let what = || format!("ledger stream {name} on the {}", self.server);
        let js = self.js;
        self.open_or_create(&what, &config, &move || js.get_stream(name))
            .await
    }
}

/// A failed request as a [`StoreError`]: JetStream switched off says so;
/// anything else is [`StoreError::Remote`], with what to check when it was
/// retried to the deadline.
fn remote_failure(server: &str, op: &'static str, what: String, message: String) -> StoreError {
    let lower = message.to_ascii_lowercase();
    if lower.contains("jetstream unavailable") || lower.contains("jetstream not enabled") {
        return jetstream_disabled(server);
    }
    StoreError::Remote {
        op,
        what,
        message: with_hint(message),
    }
}

/// A failure message, with what to check when it looks like a cluster
/// without a quorum.
fn with_hint(message: String) -> String {
    if retry::transient(&message) {
        format!(
            "{message} (retried until the deadline; is a quorum of the JetStream cluster up? raise store.request_timeout to wait longer)"
        )
    } else {
        message
    }
}

fn jetstream_disabled(server: &str) -> StoreError {
    StoreError::Unavailable {
        server: server.to_owned(),
        message: "JetStream is not enabled on the server (start nats-server with -js, or add \
                  `jetstream {}` to its configuration)"
            .to_owned(),
    }
}

/// A server URL without user info (`nats://user:pass@host` → `nats://host`).
fn shown_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let rest = match rest.rsplit_once('@') {
        Some((_, host)) => host,
        None => rest,
    };
    let rest = rest.trim_end_matches('/');
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => format!("nats://{rest}"),
    }
}

/// Replaces the secret wherever a message might quote it.
fn scrub(text: String, secret: Option<&str>) -> String {
    orch_support::secret::redact(&text, secret.unwrap_or(""))
}

/// The newest entry of `key`, read from the stream's leader (`STREAM.MSG.GET`).
///
/// Not async-nats' `entry`: on a bucket with `allow_direct` (as `nats kv
/// add` makes them) that is a direct get, which any replica answers, and a
/// replica that was down and is catching up answered "no such key" for a
/// value put moments before. The leader has every acknowledged write.
async fn leader_entry(bucket: &kv::Store, key: &str) -> Result<Option<kv::Entry>, String> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let subject = format!("{}{key}", bucket.prefix);
    let message = match bucket
        .stream
        .get_last_raw_message_by_subject(&subject)
        .await
    {
        Ok(message) => message,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let operation = kv_operation(Some(&message.headers));
    Ok(Some(kv::Entry {
        bucket: bucket.name.clone(),
        key: key.to_owned(),
        value: message.payload,
        revision: message.sequence,
        created: message.time,
        delta: 0,
        operation,
        seen_current: false,
    }))
}

/// What a KV message is, by its `KV-Operation` header (none: a put).
fn kv_operation(headers: Option<&async_nats::HeaderMap>) -> kv::Operation {
    match headers
        .and_then(|h| h.get("KV-Operation"))
        .map(|v| v.as_str())
    {
        Some("DEL") => kv::Operation::Delete,
        Some("PURGE") => kv::Operation::Purge,
        _ => kv::Operation::Put,
    }
}

/// A ledger message id unique to this event: a random per-process part
/// and a counter.
fn message_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::OnceLock;
    static PROCESS: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let process = *PROCESS.get_or_init(|| RandomState::new().hash_one(std::process::id()));
    format!(
        "orch-{process:016x}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// What one look at a waited-for handoff found.
enum Check {
    Missing,
    Landed(Handoff),
    Incomplete(HandoffError),
    Invalid(HandoffError),
}

impl Inner {
    fn remote(
        &self,
        op: &'static str,
        what: impl Into<String>,
        e: impl fmt::Display,
    ) -> StoreError {
        let message = scrub(e.to_string(), self.secret.as_deref());
        remote_failure(&self.server, op, what.into(), message)
    }

    /// Runs `attempt` with the store's retries (see `retry.rs`) until
    /// `deadline`.
    async fn retry<T, E: fmt::Display, Fut: Future<Output = Result<T, E>>>(
        &self,
        what: &(dyn Fn() -> String + Sync),
        deadline: Instant,
        attempt: impl FnMut() -> Fut,
    ) -> Result<T, Failure<E>> {
        retry::run(self.policy, what, deadline, attempt).await
    }

    /// The deadline of a one-shot operation starting now.
    fn deadline(&self) -> Instant {
        self.policy.deadline()
    }

    fn location(&self, bucket: &str, key: &str) -> String {
        format!("{}/{bucket}/{key}", self.url)
    }

    fn handoff_location(&self, key: &str) -> String {
        self.location(&self.bucket, key)
    }

    async fn entry(
        &self,
        bucket: &kv::Store,
        key: &str,
        deadline: Instant,
    ) -> Result<Option<kv::Entry>, StoreError> {
        let what = || format!("get {}", self.location(&bucket.name, key));
        self.retry(&what, deadline, move || async move {
            leader_entry(bucket, key).await
        })
        .await
        .map_err(|f| self.remote("get", self.location(&bucket.name, key), f))
    }

    /// The value of a key and its revision; `None` if absent or deleted.
    async fn value(
        &self,
        bucket: &kv::Store,
        key: &str,
        deadline: Instant,
    ) -> Result<(u64, Option<Bytes>), StoreError> {
        Ok(match self.entry(bucket, key, deadline).await? {
            Some(e) if e.operation == kv::Operation::Put => (e.revision, Some(e.value)),
            Some(e) => (e.revision, None),
            None => (0, None),
        })
    }

    /// Refuses a value the server would refuse, with what to change.
    fn check_payload(&self, where_: &str, len: usize) -> Result<(), StoreError> {
        let max_payload = self.client.server_info().max_payload;
        if len > max_payload {
            return Err(StoreError::Remote {
                op: "put",
                what: where_.to_owned(),
                message: format!(
                    "{len} bytes is more than the server accepts (max_payload {max_payload} bytes): raise `max_payload` in the nats-server configuration (e.g. `max_payload: 8MB`) to at least the handoff cap ({} bytes)",
                    self.cap
                ),
            });
        }
        Ok(())
    }

    /// A failed write as a [`StoreError`], naming the bucket's size limit
    /// when that is what refused it.
    fn write_error(
        &self,
        bucket: &kv::Store,
        where_: &str,
        len: usize,
        text: String,
    ) -> StoreError {
        if text.contains("message size exceeds maximum") {
            StoreError::Remote {
                op: "put",
                what: where_.to_owned(),
                message: format!(
                    "{len} bytes is more than the bucket {} accepts (its max value size was set when it was created; raise it with `nats kv edit`, or lower store.max_handoff_bytes)",
                    bucket.name
                ),
            }
        } else {
            self.remote("put", where_.to_owned(), text)
        }
    }

    /// Puts a value (a put tried again writes the same bytes: harmless).
    async fn put_value(
        &self,
        bucket: &kv::Store,
        key: &str,
        bytes: Bytes,
    ) -> Result<(), StoreError> {
        let where_ = self.location(&bucket.name, key);
        self.check_payload(&where_, bytes.len())?;
        let len = bytes.len();
        let what = || format!("put {where_}");
        let bytes = &bytes;
        self.retry(&what, self.deadline(), move || async move {
            bucket.put(key, bytes.clone()).await
        })
        .await
        .map_err(|f| self.write_error(bucket, &where_, len, f.to_string()))?;
        Ok(())
    }

    /// Writes the handoff for `key` as `mode` says. [`PutMode::Create`] is
    /// KV `create`: the server refuses it if the key holds a value (a
    /// deleted or quarantined key counts as free), so of racing creates
    /// exactly one wins. A create tried again after a lost answer finds its
    /// own value there: that counts as written.
    async fn put_handoff(
        &self,
        key: &HandoffKey,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<(), StoreError> {
        let kv_key = keys::handoff(key);
        if mode == PutMode::Replace {
            return self.put_value(&self.handoffs, &kv_key, bytes).await;
        }
        let where_ = self.handoff_location(&kv_key);
        self.check_payload(&where_, bytes.len())?;
        let len = bytes.len();
        let what = || format!("create {where_}");
        let (kv_key, bytes) = (kv_key.as_str(), &bytes);
        let error = match self
            .retry(&what, self.deadline(), move || async move {
                self.handoffs.create(&kv_key, bytes.clone()).await
            })
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        // `create` of a deleted key is an update at the delete's revision:
        // losing that race is reported as a failed update, not as
        // `AlreadyExists`. Either way, a value there now means the key was
        // taken, by someone else unless it is these very bytes.
        if let (_, Some(value)) = self.value(&self.handoffs, kv_key, self.deadline()).await? {
            if value == *bytes {
                return Ok(());
            }
            let expect = Expect {
                run_id: Some(&key.run_id),
                agent: None,
            };
            return Err(StoreError::AlreadyExists {
                location: where_,
                existing: match parse_handoff_capped(&value, &expect, self.cap) {
                    Ok(h) => Existing::handoff(&h),
                    Err(_) => Existing::unreadable(),
                },
            });
        }
        Err(self.write_error(&self.handoffs, &where_, len, error.to_string()))
    }

    /// Every key of a bucket that holds a value. Each try reads the whole
    /// listing; one that stalls (its consumer lost to a failover) or that
    /// comes from a replica still catching up is tried again.
    async fn keys(&self, bucket: &kv::Store) -> Result<Vec<String>, StoreError> {
        let what = || format!("bucket {} on the {}", bucket.name, self.server);
        let list_what = || format!("list {}", what());
        self.retry(&list_what, self.deadline(), move || async move {
            self.keys_once(bucket).await
        })
        .await
        .map_err(|f| self.remote("list", what(), f))
    }

    /// One listing: the newest message of every key (headers only), from a
    /// consumer that must reach the stream's last sequence as the leader
    /// reports it. A consumer runs on one replica and reads that replica's
    /// copy: on a node just restarted and still catching up, it would
    /// otherwise list only what that node has.
    async fn keys_once(&self, bucket: &kv::Store) -> Result<Vec<String>, String> {
        let state = bucket
            .stream
            .get_info()
            .await
            .map_err(|e| e.to_string())?
            .state;
        if state.messages == 0 {
            return Ok(Vec::new());
        }
        let created = tokio::time::timeout(
            CONSUMER_TIMEOUT,
            bucket
                .stream
                .create_consumer(consumer::push::OrderedConfig {
                    deliver_subject: self.client.new_inbox(),
                    description: Some("orch key listing".to_owned()),
                    filter_subject: format!("{}>", bucket.prefix),
                    headers_only: true,
                    replay_policy: consumer::ReplayPolicy::Instant,
                    deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                    ..Default::default()
                }),
        )
        .await
        .map_err(|_| "timed out creating the listing's consumer".to_owned())?;
        let consumer = created.map_err(|e| e.to_string())?;
        let behind = |highest: u64| {
            format!(
                "the listing came from a replica that is behind (sequence {highest} of {}); trying another",
                state.last_sequence
            )
        };
        if consumer.cached_info().num_pending == 0 {
            return Err(behind(0));
        }
        let mut messages = tokio::time::timeout(CONSUMER_TIMEOUT, consumer.messages())
            .await
            .map_err(|_| "timed out starting the listing".to_owned())?
            .map_err(|e| e.to_string())?;
        let mut keys = Vec::new();
        let mut highest = 0;
        loop {
            let next = tokio::time::timeout(self.attempt_timeout, messages.next())
                .await
                .map_err(|_| "timed out waiting for the next key".to_owned())?;
            let Some(message) = next else { break };
            let message = message.map_err(|e| e.to_string())?;
            let info = message.info().map_err(|e| e.to_string())?;
            highest = highest.max(info.stream_sequence);
            let pending = info.pending;
            let removed = kv_operation(message.headers.as_ref()) != kv::Operation::Put;
            if !removed && let Some(key) = message.subject.strip_prefix(bucket.prefix.as_str()) {
                keys.push(key.to_owned());
            }
            if pending == 0 {
                break;
            }
        }
        // The newest message of the stream is the newest of its key: a
        // complete listing delivers it (or a later one).
        if highest < state.last_sequence {
            return Err(behind(highest));
        }
        Ok(keys)
    }

    /// Starts the watch supervisor unless it runs, and waits (within the
    /// store's request timeout) until its watch has run once: from then on
    /// every put reaches the registered waiters, or, while the watch is
    /// being replaced, the waiters poll.
    async fn ensure_watcher(&self) -> Result<(), StoreError> {
        let mut watcher = self.watcher.lock().await;
        let watcher = watcher.get_or_insert_with(|| {
            Watcher::spawn(WatchDeps {
                bucket: self.handoffs.clone(),
                client: self.client.clone(),
                waiters: Arc::clone(&self.waiters),
                max_delay: self.policy.max_delay,
                created: Arc::clone(&self.watchers_created),
            })
        });
        watcher.ready(self.deadline()).await.map_err(|e| {
            self.remote(
                "watch",
                format!("bucket {} on the {}", self.bucket, self.server),
                e,
            )
        })
    }

    /// Judges a value of the handoff for `key`.
    fn judge(&self, key: &HandoffKey, value: Option<&[u8]>) -> Check {
        let Some(bytes) = value else {
            return Check::Missing;
        };
        let expect = Expect {
            run_id: Some(&key.run_id),
            agent: None,
        };
        match parse_handoff_capped(bytes, &expect, self.cap) {
            Ok(handoff) => Check::Landed(handoff),
            Err(e) if e.is_incomplete() => {
                self.incomplete_reads.fetch_add(1, Ordering::Relaxed);
                Check::Incomplete(e)
            }
            Err(e) => Check::Invalid(e),
        }
    }

    async fn ledger_state(&self) -> Result<stream::State, StoreError> {
        let what = || format!("ledger on the {}", self.server);
        let read_what = || format!("read the {}", what());
        let info = self
            .retry(&read_what, self.deadline(), move || async move {
                self.ledger.get_info().await
            })
            .await
            .map_err(|f| self.remote("read", what(), f))?;
        Ok(info.state)
    }

    async fn ledger_messages(&self) -> Result<Vec<Bytes>, StoreError> {
        let state = self.ledger_state().await?;
        if state.messages == 0 {
            return Ok(Vec::new());
        }
        self.ledger_range(None, state.last_sequence, state.messages)
            .await
    }

    /// The ledger messages with sequence `from` (`None`: the first) up to
    /// `last`, in order; `expected` sizes the buffer. Each try reads the
    /// whole range; one that stalls is tried again.
    async fn ledger_range(
        &self,
        from: Option<u64>,
        last: u64,
        expected: u64,
    ) -> Result<Vec<Bytes>, StoreError> {
        let what = || format!("ledger on the {}", self.server);
        let read_what = || format!("read the {}", what());
        self.retry(&read_what, self.deadline(), move || async move {
            self.ledger_range_once(from, last, expected).await
        })
        .await
        .map_err(|f| self.remote("read", what(), f))
    }

    async fn ledger_range_once(
        &self,
        from: Option<u64>,
        last: u64,
        expected: u64,
    ) -> Result<Vec<Bytes>, String> {
        let deliver_policy = match from {
            None => consumer::DeliverPolicy::All,
            Some(start_sequence) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
        };
        let created = tokio::time::timeout(
            CONSUMER_TIMEOUT,
            self.ledger.create_consumer(consumer::pull::OrderedConfig {
                filter_subject: self.ledger_subject.clone(),
                deliver_policy,
                ..Default::default()
            }),
        )
        .await
        .map_err(|_| "timed out creating the reading consumer".to_owned())?;
        let consumer = created.map_err(|e| e.to_string())?;
        let mut messages = tokio::time::timeout(CONSUMER_TIMEOUT, consumer.messages())
            .await
            .map_err(|_| "timed out starting the read".to_owned())?
            .map_err(|e| e.to_string())?;
        // The expected count comes from the server: a sane buffer, whatever
        // it says.
        let mut out = Vec::with_capacity(usize::try_from(expected.min(65_536)).unwrap_or(0));
        loop {
            let next = tokio::time::timeout(self.attempt_timeout, messages.next())
                .await
                .map_err(|_| "timed out waiting for the next message".to_owned())?;
            let Some(message) = next else { break };
            let message = message.map_err(|e| e.to_string())?;
            let sequence = message.info().map_err(|e| e.to_string())?.stream_sequence;
            if sequence > last {
                break;
            }
            out.push(message.payload.clone());
            if sequence >= last {
                break;
            }
        }
        Ok(out)
    }
}

/// A waiter registered in the store's map; unregisters on drop.
struct NatsSubscription {
    key: HandoffKey,
    kv_key: String,
    slot: Arc<Slot>,
    store: Arc<Inner>,
    /// Highest revision of the key this waiter has judged.
    seen: u64,
}

impl Drop for NatsSubscription {
    fn drop(&mut self) {
        self.store.waiters.unregister(&self.kv_key, &self.slot);
    }
}

impl NatsSubscription {
    /// Reads the key, trying until `deadline`.
    async fn look(&mut self, deadline: Instant) -> Result<Check, StoreError> {
        let (revision, value) = self
            .store
            .value(&self.store.handoffs, &self.kv_key, deadline)
            .await?;
        self.seen = self.seen.max(revision);
        Ok(self.store.judge(&self.key, value.as_deref()))
    }

    /// Reads the key while waiting: a read that fails (the cluster is
    /// electing a leader) counts as "not there yet"; the next wake-up or
    /// poll reads again.
    async fn poll(&mut self, deadline: Instant) -> Check {
        let until = deadline.min(Instant::now() + self.store.attempt_timeout);
        match self.look(until).await {
            Ok(check) => check,
            Err(e) => {
                tracing::debug!(key = %self.kv_key, "NATS store: reading a waited-for key: {e}");
                Check::Missing
            }
        }
    }
}

#[async_trait]
impl Subscription for NatsSubscription {
    fn key(&self) -> &HandoffKey {
        &self.key
    }

    async fn wait(&mut self, deadline: Instant) -> Result<WaitOutcome, StoreError> {
        let mut check = self.poll(deadline).await;
        loop {
            match check {
                Check::Landed(handoff) => return Ok(WaitOutcome::Landed(handoff)),
                Check::Invalid(e) => return Ok(WaitOutcome::Invalid(e)),
                Check::Missing | Check::Incomplete(_) => {}
            }
            check = loop {
                // While the watch is being replaced, read the key on an
                // interval instead of trusting a blind watch.
                let polling = !self.store.waiters.healthy();
                let until = if polling {
                    deadline.min(Instant::now() + POLL_INTERVAL)
                } else {
                    deadline
                };
                let woken = tokio::time::timeout_at(until, self.slot.notified()).await;
                if woken.is_err() && Instant::now() < deadline {
                    break self.poll(deadline).await;
                }
                if woken.is_err() {
                    // One last look: a value that landed at the deadline
                    // counts; one still cut off is a timeout that says so.
                    let last = deadline.max(Instant::now()) + self.store.attempt_timeout;
                    return Ok(match self.look(last).await? {
                        Check::Landed(handoff) => WaitOutcome::Landed(handoff),
                        Check::Invalid(e) => WaitOutcome::Invalid(e),
                        Check::Incomplete(e) => WaitOutcome::TimedOutIncomplete(e),
                        Check::Missing => WaitOutcome::TimedOut,
                    });
                }
                if self.slot.take_recheck() {
                    // Entries may have been missed: read the key.
                    break self.poll(deadline).await;
                }
                if let Some(update) = self.slot.take_newer(self.seen) {
                    self.seen = update.revision;
                    break self.store.judge(&self.key, update.value.as_deref());
                }
                // A wake-up for a revision already judged: wait on.
            };
        }
    }
}

#[async_trait]
impl Handoffs for NatsStore {
    fn describe(&self) -> String {
        format!(
            "NATS store: bucket {} on {}",
            self.inner.bucket, self.inner.url
        )
    }
    fn location(&self, key: &HandoffKey) -> String {
        self.inner.handoff_location(&keys::handoff(key))
    }
    async fn put(&self, scope: Scope, handoff: &Handoff, mode: PutMode) -> Result<(), StoreError> {
        let key = HandoffKey {
            scope,
            run_id: handoff.run_id.clone(),
        };
        let bytes = handoff.to_json_pretty();
        let expect = Expect {
            run_id: Some(&handoff.run_id),
            agent: None,
        };
        // Write only what a reader will accept.
        if let Err(source) = parse_handoff_capped(&bytes, &expect, self.inner.cap) {
            return Err(StoreError::Invalid {
                path: PathBuf::from(self.location(&key)),
                source,
            });
        }
        self.inner.put_handoff(&key, bytes.into(), mode).await
    }
    async fn put_raw(
        &self,
        key: &HandoffKey,
        bytes: &[u8],
        mode: PutMode,
    ) -> Result<(), StoreError> {
        let size = bytes.len() as u64;
        if size > self.inner.cap {
            return Err(StoreError::TooLarge {
                path: PathBuf::from(self.location(key)),
                size,
                cap: self.inner.cap,
            });
        }
        self.inner
            .put_handoff(key, Bytes::copy_from_slice(bytes), mode)
            .await
    }
    async fn get(&self, key: &HandoffKey) -> Result<Option<Handoff>, StoreError> {
        let kv_key = keys::handoff(key);
        let (_, value) = self
            .inner
            .value(&self.inner.handoffs, &kv_key, self.inner.deadline())
            .await?;
        let Some(bytes) = value else {
            return Ok(None);
        };
        let path = PathBuf::from(self.inner.handoff_location(&kv_key));
        let size = bytes.len() as u64;
        if size > self.inner.cap {
            return Err(StoreError::TooLarge {
                path,
                size,
                cap: self.inner.cap,
            });
        }
        let expect = Expect {
            run_id: Some(&key.run_id),
            agent: None,
        };
        parse_handoff_capped(&bytes, &expect, self.inner.cap)
            .map(Some)
            .map_err(|source| StoreError::Invalid { path, source })
    }
    async fn subscribe(&self, key: &HandoffKey) -> Result<Box<dyn Subscription>, StoreError> {
        let kv_key = keys::handoff(key);
        let subscription = NatsSubscription {
            key: key.clone(),
            slot: self.inner.waiters.register(&kv_key),
            kv_key,
            store: Arc::clone(&self.inner),
            seen: 0,
        };
        // On error the subscription is dropped, which unregisters it.
        self.inner.ensure_watcher().await?;
        Ok(Box::new(subscription))
    }
    async fn quarantine(&self, key: &HandoffKey) -> Result<Option<String>, StoreError> {
        let inner = &self.inner;
        let kv_key = keys::handoff(key);
        let Some(entry) = inner
            .entry(&inner.handoffs, &kv_key, inner.deadline())
            .await?
        else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        // `create` takes the first free number atomically: two quarantines
        // racing each other never overwrite a rejected copy.
        let mut moved = None;
        for n in 1..=10_000u32 {
            let q = keys::quarantined(key, n);
            let what = || format!("quarantine to {}", inner.handoff_location(&q));
            let (q_key, entry) = (q.as_str(), &entry);
            let created = inner
                .retry(&what, inner.deadline(), move || async move {
                    inner.handoffs.create(q_key, entry.value.clone()).await
                })
                .await;
            match created {
                Ok(_) => {
                    moved = Some(q);
                    break;
                }
                Err(Failure::Failed(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    // Taken, unless by this very copy on a try whose answer
                    // was lost.
                    if let (_, Some(value)) =
                        inner.value(&inner.handoffs, &q, inner.deadline()).await?
                        && value == entry.value
                    {
                        moved = Some(q);
                        break;
                    }
                }
                Err(e) => return Err(inner.remote("quarantine", inner.handoff_location(&q), e)),
            }
        }
        let Some(moved) = moved else {
            return Err(inner.remote(
                "quarantine",
                inner.handoff_location(&kv_key),
                "no free quarantine number",
            ));
        };
        // Remove the rejected value, unless a fresh answer replaced it
        // meanwhile (then that one stays).
        let what = || format!("delete {}", inner.handoff_location(&kv_key));
        let (kv_key, revision) = (kv_key.as_str(), entry.revision);
        match inner
            .retry(&what, inner.deadline(), move || async move {
                inner
                    .handoffs
                    .delete_expect_revision(kv_key, Some(revision))
                    .await
            })
            .await
        {
            Ok(()) => {}
            Err(Failure::Failed(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                tracing::debug!(key = %kv_key, "a newer handoff arrived while quarantining; kept");
            }
            Err(e) => return Err(inner.remote("quarantine", inner.handoff_location(kv_key), e)),
        }
        Ok(Some(inner.handoff_location(&moved)))
    }
    async fn list(&self, scope: Scope) -> Result<Vec<RunId>, StoreError> {
        let mut ids = self.list_unordered(scope).await?;
        ids.sort_unstable();
        Ok(ids)
    }
    async fn list_unordered(&self, scope: Scope) -> Result<Vec<RunId>, StoreError> {
        Ok(self
            .inner
            .keys(&self.inner.handoffs)
            .await?
            .iter()
            .filter_map(|k| keys::parse_handoff(scope, k))
            .collect())
    }
}

#[async_trait]
impl WorkflowRecords for NatsStore {
    async fn put_workflow_record(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let key = keys::record(run, record)?;
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Corrupt {
            path: PathBuf::from(self.inner.location(&self.inner.workflow_bucket, &key)),
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        let cap = self.max_record_bytes();
        if bytes.len() as u64 > cap {
            return Err(StoreError::TooLarge {
                path: PathBuf::from(self.inner.location(&self.inner.workflow_bucket, &key)),
                size: bytes.len() as u64,
                cap,
            });
        }
        self.inner
            .put_value(&self.inner.workflows, &key, bytes.into())
            .await
    }
    fn max_record_bytes(&self) -> u64 {
        self.inner.cap.saturating_mul(RECORD_CAP_FACTOR)
    }
    async fn get_workflow_record(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let key = keys::record(run, record)?;
        let (_, value) = self
            .inner
            .value(&self.inner.workflows, &key, self.inner.deadline())
            .await?;
        let Some(bytes) = value else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: PathBuf::from(self.inner.location(&self.inner.workflow_bucket, &key)),
                message: e.to_string(),
            })
    }
    async fn list_workflow_runs(&self) -> Result<Vec<RunId>, StoreError> {
        let runs: BTreeSet<RunId> = self
            .inner
            .keys(&self.inner.workflows)
            .await?
            .iter()
            .filter_map(|k| keys::parse_record(k).map(|(run, _)| run))
            .collect();
        Ok(runs.into_iter().collect())
    }
    async fn list_workflow_steps(&self, run: &RunId) -> Result<Vec<String>, StoreError> {
        let mut steps: Vec<String> = self
            .inner
            .keys(&self.inner.workflows)
            .await?
            .iter()
            .filter_map(|k| match keys::parse_record(k) {
                Some((r, Some(step))) if r == *run => Some(step),
                _ => None,
            })
            .collect();
        steps.sort_unstable();
        Ok(steps)
    }
}

#[async_trait]
impl Ledger for NatsStore {
    async fn append_ledger(&self, event: &LedgerEvent) -> Result<(), StoreError> {
        let inner = &self.inner;
        let what = || format!("ledger on the {}", inner.server);
        let line = serde_json::to_vec(event).map_err(|e| StoreError::Corrupt {
            path: PathBuf::from(what()),
            message: e.to_string(),
        })?;
        // A message id makes a try after a lost ack harmless: the stream
        // drops a second copy within its duplicate window (2 minutes).
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", message_id().as_str());
        let line = Bytes::from(line);
        let append_what = || format!("append to the {}", what());
        let (headers, line) = (&headers, &line);
        inner
            .retry(&append_what, inner.deadline(), move || async move {
                let ack = inner
                    .js
                    .publish_with_headers(
                        inner.ledger_subject.clone(),
                        headers.clone(),
                        line.clone(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                ack.await.map_err(|e| e.to_string())
            })
            .await
            .map_err(|f| inner.remote("append to", what(), f))?;
        Ok(())
    }
    /// Reads the ledger stream backwards in windows (1,024 messages, then
    /// doubling up to 65,536), newest first: a recent run costs one small
    /// read, not the whole stream.
    async fn dispatched(&self, run_id: &RunId) -> Result<Option<LedgerEvent>, StoreError> {
        let inner = &self.inner;
        let state = inner.ledger_state().await?;
        if state.messages == 0 {
            return Ok(None);
        }
        let needle = format!("\"{run_id}\"");
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        let first = state.first_sequence.max(1);
        let mut last = state.last_sequence;
        if last < first {
            // A stream state that does not add up (a lagging replica):
            // nothing to search.
            return Ok(None);
        }
        let mut window = 1024u64;
        loop {
            let from = last.saturating_sub(window - 1).max(first);
            let messages = inner
                .ledger_range(Some(from), last, last - from + 1)
                .await?;
            let found = messages.iter().rev().find_map(|m| {
                if m.len() > MAX_LEDGER_LINE || finder.find(m).is_none() {
                    return None;
                }
                serde_json::from_slice::<LedgerEvent>(m.trim_ascii())
                    .ok()
                    .filter(|e| {
                        e.event == LedgerEventKind::Dispatched && e.run_id.as_ref() == Some(run_id)
                    })
            });
            if found.is_some() || from <= first {
                return Ok(found);
            }
            last = from - 1;
            window = (window * 2).min(65_536);
        }
    }
    async fn read_ledger(&self) -> Result<LedgerRead, StoreError> {
        let mut out = LedgerRead::default();
        for (i, message) in self.inner.ledger_messages().await?.iter().enumerate() {
            let number = i + 1;
            if message.len() > MAX_LEDGER_LINE {
                out.bad_lines
                    .push((number, format!("line longer than {MAX_LEDGER_LINE} bytes")));
                continue;
            }
            let text = message.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_slice::<LedgerEvent>(text) {
                Ok(event) => out.events.push(event),
                Err(e) => out.bad_lines.push((number, e.to_string())),
            }
        }
        Ok(out)
    }
    async fn read_ledger_raw(&self) -> Result<Vec<u8>, StoreError> {
        let messages = self.inner.ledger_messages().await?;
        let mut out = Vec::with_capacity(messages.iter().map(|m| m.len() + 1).sum());
        for message in &messages {
            out.extend_from_slice(message);
            out.push(b'\n');
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::NatsToken;

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(shown_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(shown_url("nats://u:hunter2@h:4222/"), "nats://h:4222");
        assert_eq!(shown_url("tls://tok@h:4222"), "tls://h:4222");
        assert_eq!(shown_url("h:4222"), "nats://h:4222");
    }

    #[test]
    fn secrets_are_scrubbed_and_never_debug_printed() {
        assert_eq!(
            scrub("bad token hunter2".into(), Some("hunter2")),
            "bad token [redacted]"
        );
        assert_eq!(scrub("fine".into(), None), "fine");
        let mut config = NatsStoreConfig::new("nats://h:4222");
        config.auth = NatsAuth::Token(NatsToken::new("hunter2"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}
