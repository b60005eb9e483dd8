//! The [`HandoffStore`] seam and what travels through it.

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::{Handoff, HandoffError, InvalidId, RunId};

mod files;
mod fs;
mod ledger;
mod watch;
pub use fs::{FsStore, FsStoreConfig, WatchMode};
pub use ledger::{LedgerEvent, LedgerEventKind, LedgerRead};

/// Where a handoff lives: top-level delegations at the store root, handoffs
/// of sub-delegations (the caller is itself a delegated agent) under `sub/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `<root>/<runId>.json`
    Top,
    /// `<root>/sub/<runId>.json`
    Sub,
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
    /// A file landed but is not a valid handoff (and, if it looked
    /// incomplete, stayed so until the deadline).
    Invalid(HandoffError),
    /// Nothing landed before the deadline.
    TimedOut,
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
}

/// A registered interest in one handoff. Created by
/// [`HandoffStore::subscribe`] *before* the task is dispatched, so a handoff
/// written at any moment after subscribing is seen. Dropping it unregisters.
#[async_trait]
pub trait Subscription: Send {
    /// The handoff this subscription waits for.
    fn key(&self) -> &HandoffKey;

    /// Waits until a handoff for the key is present, or `deadline`.
    ///
    /// Checks the store first, so a handoff already there is returned at
    /// once. May be called again (e.g. after [`HandoffStore::quarantine`]
    /// and a re-ask) and keeps its registration in between.
    async fn wait(&mut self, deadline: Instant) -> Result<WaitOutcome, StoreError>;
}

/// Storage of handoffs, workflow records and the ledger (DESIGN §2, §4).
#[async_trait]
pub trait HandoffStore: Send + Sync {
    /// Human description, e.g. `file store at /srv/orch/handoffs`.
    fn describe(&self) -> String;

    /// Where an agent must write the handoff for `key`: an absolute path for
    /// the file store. Goes into the task message's instructions.
    fn location(&self, key: &HandoffKey) -> String;

    /// Validates `handoff` and writes it atomically under its run id.
    async fn put(&self, scope: Scope, handoff: &Handoff) -> Result<(), StoreError>;

    /// Writes bytes atomically as the agent's answer for `key`, without
    /// validating them: for transports that relay what an agent produced
    /// (and the simulated fleet's "malformed" behaviour).
    async fn put_raw(&self, key: &HandoffKey, bytes: &[u8]) -> Result<(), StoreError>;

    /// Reads the handoff for `key`; `Ok(None)` if there is none yet.
    async fn get(&self, key: &HandoffKey) -> Result<Option<Handoff>, StoreError>;

    /// Registers interest in `key` (see [`Subscription`]).
    async fn subscribe(&self, key: &HandoffKey) -> Result<Box<dyn Subscription>, StoreError>;

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

    /// Writes a workflow record atomically.
    async fn put_workflow_record(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
        value: &serde_json::Value,
    ) -> Result<(), StoreError>;

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

    /// Appends one event to the ledger; safe with several processes
    /// appending at once (each line lands whole).
    async fn append_ledger(&self, event: &LedgerEvent) -> Result<(), StoreError>;

    /// Reads the whole ledger. Lines that do not parse (a torn last line, a
    /// foreign writer) are reported in [`LedgerRead::bad_lines`], not fatal.
    async fn read_ledger(&self) -> Result<LedgerRead, StoreError>;
}

/// Compile-time check that the seams stay dyn-compatible.
fn _assert_object_safe(_: &dyn HandoffStore, _: &dyn Subscription) {}
