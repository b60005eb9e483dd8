//! The [`HandoffStore`] seam and what travels through it.

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::{Handoff, HandoffError, InvalidId, RunId, Status};

mod files;
mod fs;
mod journal;
mod ledger;
#[cfg(feature = "nats")]
mod nats;
mod nats_config;
mod watch;
pub use fs::{FsStore, FsStoreConfig, WatchMode};
pub use ledger::{LedgerEvent, LedgerEventKind, LedgerRead};

#[cfg(feature = "nats")]
pub use nats::NatsStore;
pub use nats_config::{DEFAULT_NATS_URL, NatsAuth, NatsStoreConfig, NatsToken};

/// Where a handoff lives: top-level delegations at the store root, handoffs
/// of sub-delegations (the caller is itself a delegated agent) under `sub/`.
/// `Control` holds no delegation's answer: requests to a workflow run (a
/// cancel, `<wfRunId>.cancel`), written and watched like handoffs so that
/// a running executor hears them through the store's one watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `<root>/<runId>.json`
    Top,
    /// `<root>/sub/<runId>.json`
    Sub,
    /// `<root>/control/<id>.json`: a request to a workflow run.
    Control,
}

/// The address of one handoff.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandoffKey {
    /// Top-level or sub-delegation.
    pub scope: Scope,
    /// The run it answers.
    pub run_id: RunId,
}

impl HandoffKey {
    /// A top-level handoff.
    pub fn top(run_id: RunId) -> Self {
        Self {
            scope: Scope::Top,
            run_id,
        }
    }
    /// A sub-delegation's handoff.
    pub fn sub(run_id: RunId) -> Self {
        Self {
            scope: Scope::Sub,
            run_id,
        }
    }
}

/// Which record of a workflow run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WorkflowRecord {
    /// `workflows/<wfRunId>/<stepId>.json`; the step id obeys the run-id rules.
    Step(String),
    /// `workflows/<wfRunId>/summary.json`
    Summary,
}

/// How a wait ended.
#[derive(Clone, Debug, PartialEq)]
pub enum WaitOutcome {
    /// A valid handoff landed.
    Landed(Handoff),
    /// A complete file landed that is not a valid handoff.
    Invalid(HandoffError),
    /// Nothing landed before the deadline.
    TimedOut,
    /// The deadline passed while the handoff was still incomplete (empty or
    /// cut off, [`HandoffError::is_incomplete`]): a timeout, not an invalid
    /// answer; the error says what the partial file looked like. An agent
    /// killed half-way through a direct write leaves this.
    TimedOutIncomplete(HandoffError),
}

/// Whether a put may replace a handoff already stored under its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PutMode {
    /// Publish only if the key holds nothing yet, atomically (no
    /// check-then-write window): of several puts racing for one key exactly
    /// one wins, every other gets [`StoreError::AlreadyExists`]. What an
    /// agent's answer is.
    Create,
    /// Replace whatever the key holds (`orch handoff submit --force`).
    Replace,
}

/// What a [`PutMode::Create`] found already stored under its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Existing {
    /// The agent that wrote it, if it is a valid handoff.
    pub agent: Option<String>,
    /// Its status, if it is a valid handoff.
    pub status: Option<Status>,
}

impl Existing {
    /// A valid handoff by `agent` with `status`.
    pub fn handoff(h: &Handoff) -> Self {
        Self {
            agent: Some(h.agent.clone()),
            status: Some(h.status),
        }
    }

    /// Something that is not a valid handoff (or could not be read back).
    pub fn unreadable() -> Self {
        Self {
            agent: None,
            status: None,
        }
    }

    /// Whether it is a valid handoff (else a file to quarantine).
    pub fn is_valid(&self) -> bool {
        self.agent.is_some()
    }
}

impl std::fmt::Display for Existing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.agent, self.status) {
            (Some(agent), Some(status)) => write!(
                f,
                "a {} handoff by {}",
                status.as_str(),
                orch_support::text::one_line(agent)
            ),
            _ => f.write_str("a file that is not a valid handoff"),
        }
    }
}

/// Errors of a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A run id or step id that could name a path outside the store.
    #[error("invalid id {id:?}: {source}")]
    InvalidId {
        /// The rejected id (shortened).
        id: String,
        /// Why.
        #[source]
        source: InvalidId,
    },
    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `write`, `rename`, …).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The stored file is not a valid handoff.
    #[error("{}: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: HandoffError,
    },
    /// A [`PutMode::Create`] found the key taken: the run already has an
    /// answer.
    #[error("{location} already holds {existing}")]
    AlreadyExists {
        /// Where the existing handoff is ([`crate::Handoffs::location`]).
        location: String,
        /// What is there.
        existing: Existing,
    },
    /// A stored JSON record (workflow record, ledger line) does not parse.
    #[error("{}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A step id the store reserves for its own files (`summary`, in any
    /// case: it would name the workflow run summary).
    #[error("step id {id:?} is reserved: it would name the workflow run summary")]
    ReservedId {
        /// The rejected id.
        id: String,
    },
    /// A symlink where a store file should be; symlinks are never followed.
    #[error("{} is a symlink; the store does not follow symlinks", path.display())]
    Symlink {
        /// The path.
        path: PathBuf,
    },
    /// A file larger than the store's size cap.
    #[error("{} is {size} bytes, larger than the {cap}-byte limit", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// The file watcher could not be set up or failed.
    #[error("watching {}: {message}", path.display())]
    Watch {
        /// The directory being watched.
        path: PathBuf,
        /// What notify said.
        message: String,
    },
    /// A remote store's server cannot be used: unreachable, refusing the
    /// credentials, or without the service the store needs (NATS without
    /// JetStream). The message says what to check; it never holds a secret.
    #[error("{server}: {message}")]
    Unavailable {
        /// The server, e.g. `NATS server at nats://10.0.0.5:4222` (never
        /// with credentials).
        server: String,
        /// What went wrong and what to check.
        message: String,
    },
    /// A request to a remote store's server failed.
    #[error("{op} {what}: {message}")]
    Remote {
        /// What was being done (`put`, `get`, `watch`, …).
        op: &'static str,
        /// What it was done to (a key, a bucket, the ledger).
        what: String,
        /// What the server or client said.
        message: String,
    },
    /// The store's settings cannot work (e.g. a bucket name NATS refuses).
    #[error("{message}")]
    Config {
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// A registered interest in one handoff. Created by
/// [`crate::Handoffs::subscribe`] *before* the task is dispatched, so a handoff
/// written at any moment after subscribing is seen. Dropping it unregisters.
#[async_trait]
pub trait Subscription: Send {
    /// The handoff this subscription waits for.
    fn key(&self) -> &HandoffKey;

    /// Waits until a handoff for the key is present, or `deadline`.
    ///
    /// Checks the store first, so a handoff already there is returned at
    /// once. May be called again (e.g. after [`crate::Handoffs::quarantine`]
    /// and a re-ask) and keeps its registration in between.
    async fn wait(&mut self, deadline: Instant) -> Result<WaitOutcome, StoreError>;
}

/// Storage of handoffs, workflow records and the ledger (DESIGN §2, §4):
/// the three parts ([`Handoffs`], [`WorkflowRecords`], [`Ledger`]) in one.
/// Every type with all three is one (a blanket impl), so a store is written
/// as three impls and read as what a caller needs: `&dyn Ledger` for
/// metrics, the whole store for the delegator.
pub trait HandoffStore: Handoffs + WorkflowRecords + Ledger {}

impl<T: Handoffs + WorkflowRecords + Ledger + ?Sized> HandoffStore for T {}

/// The handoffs: write, read, wait for, quarantine and list them.
#[async_trait]
pub trait Handoffs: Send + Sync {
    /// Human description, e.g. `file store at /srv/orch/handoffs`.
    fn describe(&self) -> String;

    /// Where an agent must write the handoff for `key`: an absolute path for
    /// the file store, `nats://<server>/<bucket>/<key>` for the NATS store.
    /// Goes into the task message's instructions.
    fn location(&self, key: &HandoffKey) -> String;

    /// Validates `handoff` and writes it atomically under its run id. With
    /// [`PutMode::Create`] the write is also exclusive: if the key holds
    /// anything (valid or not) nothing is written and the error is
    /// [`StoreError::AlreadyExists`], saying what is there.
    async fn put(&self, scope: Scope, handoff: &Handoff, mode: PutMode) -> Result<(), StoreError>;

    /// Writes bytes atomically as the agent's answer for `key`, without
    /// validating them: for transports that relay what an agent produced
    /// (and the simulated fleet's "malformed" behaviour). `mode` as for
    /// [`put`](Self::put).
    async fn put_raw(
        &self,
        key: &HandoffKey,
        bytes: &[u8],
        mode: PutMode,
    ) -> Result<(), StoreError>;

    /// Reads the handoff for `key`; `Ok(None)` if there is none yet.
    async fn get(&self, key: &HandoffKey) -> Result<Option<Handoff>, StoreError>;

    /// Registers interest in `key` (see [`Subscription`]).
    async fn subscribe(&self, key: &HandoffKey) -> Result<Box<dyn Subscription>, StoreError>;

    /// Starts ahead of time what the first [`subscribe`](Self::subscribe)
    /// would start (the file store's watcher: a thread and its inotify
    /// watches), so that a workflow run pays for it while its first
    /// record is stored, not on its first step's way out. The default
    /// does nothing; an error here is the one `subscribe` would give.
    async fn prepare_waits(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Subscribes and waits until `deadline`.
    async fn wait(&self, key: &HandoffKey, deadline: Instant) -> Result<WaitOutcome, StoreError> {
        self.subscribe(key).await?.wait(deadline).await
    }

    /// Moves an invalid handoff aside (kept for inspection, e.g.
    /// `<runId>.json.rejected-1`) so a re-asked agent can write a fresh one.
    /// Returns where it went, or `None` if there was nothing to move.
    async fn quarantine(&self, key: &HandoffKey) -> Result<Option<String>, StoreError>;

    /// Run ids of the handoffs present in `scope`, sorted.
    async fn list(&self, scope: Scope) -> Result<Vec<RunId>, StoreError>;

    /// The ids of [`list`](Self::list), in no particular order: for scans
    /// over the whole store that need no order (sorting 100,000 ids costs
    /// more than listing them). The default is `list`.
    async fn list_unordered(&self, scope: Scope) -> Result<Vec<RunId>, StoreError> {
        self.list(scope).await
    }
}

/// Workflow records (step records and run summaries), opaque JSON here.
#[async_trait]
pub trait WorkflowRecords: Send + Sync {
    /// Largest workflow record (as written) this store reads back, in
    /// bytes: [`put_workflow_record`](Self::put_workflow_record) refuses a
    /// larger one ([`StoreError::TooLarge`]) rather than write what
    /// [`get_workflow_record`](Self::get_workflow_record) would refuse.
    /// The default is four times [`DEFAULT_MAX_HANDOFF_BYTES`](crate::DEFAULT_MAX_HANDOFF_BYTES).
    fn max_record_bytes(&self) -> u64 {
        crate::DEFAULT_MAX_HANDOFF_BYTES.saturating_mul(4)
    }

    /// Writes a workflow record atomically; a record over
    /// [`max_record_bytes`](Self::max_record_bytes) is refused and nothing
    /// is written.
    async fn put_workflow_record(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
        value: &serde_json::Value,
    ) -> Result<(), StoreError>;

    /// Writes a record that needs no durability: a view of a run's
    /// progress for people watching, which a crash may lose (the last one
    /// written with [`put_workflow_record`](Self::put_workflow_record)
    /// then stands). Refused over
    /// [`max_record_bytes`](Self::max_record_bytes) like any record. The
    /// default writes it as a durable record; [`FsStore`] writes only the
    /// view, without journalling or `fsync`.
    async fn put_workflow_view(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.put_workflow_record(run, record, value).await
    }

    /// Reads a workflow record; `Ok(None)` if absent.
    async fn get_workflow_record(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
    ) -> Result<Option<serde_json::Value>, StoreError>;

    /// Workflow run ids present, sorted.
    async fn list_workflow_runs(&self) -> Result<Vec<RunId>, StoreError>;

    /// Step ids with a record in `run`, sorted (the summary is not a step).
    async fn list_workflow_steps(&self, run: &RunId) -> Result<Vec<String>, StoreError>;

    /// Makes what [`WorkflowRecords::get_workflow_record`] reads of `run`
    /// agree with what was durably stored, after a crash; returns how many
    /// records it rewrote. For a store whose reads are its durable truth
    /// (the default) there is nothing to do. [`FsStore`] keeps each run's
    /// truth in a journal and its per-record files as views written
    /// without `fsync`: this rewrites the views the journal disagrees with.
    async fn rebuild_workflow_views(&self, run: &RunId) -> Result<usize, StoreError> {
        let _ = run;
        Ok(0)
    }
}

/// The ledger: one event per line (or message), appended by every process.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Appends one event to the ledger; safe with several processes
    /// appending at once (each line lands whole).
    async fn append_ledger(&self, event: &LedgerEvent) -> Result<(), StoreError>;

    /// The newest `dispatched` ledger line of `run_id`, if the ledger has one:
    /// whether anybody ever asked for this run (`orch handoff submit`
    /// refuses answers to runs never dispatched, a typo in the run id).
    ///
    /// The default reads the whole ledger; [`FsStore`] scans the file
    /// backwards for the id's bytes, so a recent run is found after reading
    /// only the ledger's tail.
    async fn dispatched(&self, run_id: &RunId) -> Result<Option<LedgerEvent>, StoreError> {
        let read = self.read_ledger().await?;
        Ok(read
            .events
            .into_iter()
            .rev()
            .find(|e| e.event == LedgerEventKind::Dispatched && e.run_id.as_ref() == Some(run_id)))
    }

    /// Reads the whole ledger. Lines that do not parse (a torn last line, a
    /// foreign writer) are reported in [`LedgerRead::bad_lines`], not fatal.
    async fn read_ledger(&self) -> Result<LedgerRead, StoreError>;

    /// The ledger's recent lines: at least those in its last `max_bytes`
    /// bytes (whole lines only), for a reader that asks about what is
    /// going on now and must not pay for the whole history. `holding` is
    /// a hint: lines whose JSON (as orch writes it, compact) does not hold
    /// those bytes may be left out unparsed, so a reader still checks the
    /// events it gets. The default reads the whole ledger; [`FsStore`]
    /// reads only the file's tail and parses only the lines that hold the
    /// bytes.
    async fn read_ledger_tail(
        &self,
        max_bytes: u64,
        holding: Option<&str>,
    ) -> Result<LedgerRead, StoreError> {
        let _ = (max_bytes, holding);
        self.read_ledger().await
    }

    /// The whole ledger as bytes: JSON lines as written, for readers that
    /// parse it themselves (metrics parse it lean, borrowed and in parallel
    /// instead of building a [`LedgerEvent`] per line). A missing ledger is
    /// empty. Lines are not checked: a torn or foreign line is the reader's
    /// to report.
    ///
    /// The default writes the events of [`read_ledger`](Self::read_ledger)
    /// back as lines, one per event (lines that did not parse are left out);
    /// [`FsStore`] returns the file itself.
    async fn read_ledger_raw(&self) -> Result<Vec<u8>, StoreError> {
        let read = self.read_ledger().await?;
        let mut out = Vec::new();
        for event in &read.events {
            serde_json::to_writer(&mut out, event).map_err(|e| StoreError::Corrupt {
                path: PathBuf::from("ledger.jsonl"),
                message: e.to_string(),
            })?;
            out.push(b'\n');
        }
        Ok(out)
    }

    /// The ledger's bytes from byte `start` on, at most `max_len` of them,
    /// as written (not cut at lines: the reader finds the line ends), with
    /// the ledger's whole length when read. A `start` at or past the end
    /// reads nothing; the length then tells a reader that its position is
    /// past the end (the ledger was truncated or replaced). This is how a
    /// reader that remembers where it stopped reads only what is new, and
    /// how one finds a time in a time-ordered ledger by bisection.
    ///
    /// The default slices [`read_ledger_raw`](Self::read_ledger_raw) (the
    /// whole ledger is read: correct, not fast); [`FsStore`] reads only the
    /// range.
    async fn read_ledger_range(&self, start: u64, max_len: u64) -> Result<LedgerRange, StoreError> {
        let all = self.read_ledger_raw().await?;
        let len = all.len() as u64;
        let from = usize::try_from(start.min(len)).unwrap_or(all.len());
        let to = usize::try_from(start.saturating_add(max_len).min(len)).unwrap_or(all.len());
        Ok(LedgerRange {
            bytes: all.get(from..to).map(<[u8]>::to_vec).unwrap_or_default(),
            len,
        })
    }
}

/// What [`Ledger::read_ledger_range`] read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerRange {
    /// The bytes, from the asked start.
    pub bytes: Vec<u8>,
    /// The ledger's whole length when it was read.
    pub len: u64,
}

/// Compile-time check that the seams stay dyn-compatible.
fn _assert_object_safe(
    _: &dyn HandoffStore,
    _: &dyn Handoffs,
    _: &dyn WorkflowRecords,
    _: &dyn Ledger,
    _: &dyn Subscription,
) {
}
