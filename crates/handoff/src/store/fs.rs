//! [`FsStore`]: the file implementation of [`HandoffStore`] (DESIGN §4).
//!
//! # Layout
//!
//! ```text
//! <root>/<runId>.json                        Scope::Top handoff
//! <root>/sub/<runId>.json                    Scope::Sub handoff
//! <root>/<runId>.json.rejected-<n>           quarantined handoff (n = 1, 2, …)
//! <root>/workflows/<wfRunId>/<stepId>.json   workflow step record
//! <root>/workflows/<wfRunId>/summary.json    workflow run summary
//! <root>/ledger.jsonl                        append-only event ledger
//! ```
//!
//! `open` creates the root, `sub/` and `workflows/` and resolves the root
//! once with `canonicalize`: a root that is itself a symlink (an operator's
//! choice, e.g. `/srv/orch -> /data/orch`) is accepted and replaced by its
//! real path, which is what [`crate::Handoffs::location`] tells agents and what
//! the watcher reports. Below the root nothing is followed: `sub/`,
//! `workflows/` and workflow run directories must be real directories
//! (checked with `lstat`), and files are opened with `O_NOFOLLOW`.
//!
//! Ids are validated before a path is built: run ids by construction
//! ([`RunId`]), step ids with [`validate_id`]. The step id `summary` (in any
//! case, so case-insensitive file systems cannot collide either) is refused
//! with [`StoreError::ReservedId`]: it would name the run summary.
//!
//! # Writes
//!
//! Every file write is atomic: a temp file `.<name>.tmp-<pid>-<n>` in the
//! target's directory (leading dot: the watcher and listings ignore it; `n`
//! is a process-wide counter, so two stores on one root never collide),
//! `write_all`, `sync_all`, into place, fsync of the directory. On any
//! error the temp file is removed; the target is either the old file or
//! the new one, never a mix.
//!
//! "Into place" depends on the [`PutMode`]. [`PutMode::Replace`] (and
//! workflow records) `rename` over the target. [`PutMode::Create`], an
//! agent's answer, must not replace one already there, and checking first
//! would leave a window in which two writers both see nothing: it is
//! `renameat2(RENAME_NOREPLACE)` (rustix), or where the file system lacks
//! that flag, a hard `link` of the temp file (which fails if the name is
//! taken, atomically too) and `unlink` of the temp name. A taken name is
//! [`StoreError::AlreadyExists`], with the agent and status of the handoff
//! there if it is a valid one. So of twenty agents answering one run at
//! once exactly one is stored.
//!
//! # Reads
//!
//! A read opens with `O_NOFOLLOW | O_NONBLOCK`, requires a regular file,
//! checks the size on the *opened* file (no race with a swap) and reads at
//! most `cap + 1` bytes. A symlink is [`StoreError::Symlink`], an oversized
//! file [`StoreError::TooLarge`]; a FIFO or directory is an
//! [`StoreError::Io`] ("not a regular file"). Workflow records use the same
//! reader with a cap of 4 × the handoff cap (a step record embeds a handoff).
//!
//! # Waiting
//!
//! One watcher per store, created by the first [`crate::Handoffs::subscribe`],
//! so processes that only `put` (agents running `orch handoff submit`) never
//! create one. [`FsStore::watchers_created`] counts them (never more than
//! one). Waiters live in a map key → `Arc<tokio::sync::Notify>`; the
//! watcher's event handler runs on the watcher's thread, maps each event
//! path to a key and calls `notify_one` on that key's waiters (a stored
//! permit, so a wake-up between a waiter's read and its await is kept). It
//! never blocks and never sends on a channel. Read events (`OPEN`,
//! `CLOSE_NOWRITE`, which waiters' own reads cause), metadata changes and
//! removals are ignored; everything that can change content means "read
//! again". A rescan request (inotify queue overflow) or a watcher error
//! wakes every waiter to re-read its own file.
//!
//! Backends ([`WatchMode`]): inotify on the root and `sub/`
//! (non-recursive; a directory removed or moved away and recreated is
//! watched again by a re-arm thread, said at warn level, counted by
//! [`FsStore::rearms`]), or a polling thread that `lstat`s only the awaited
//! files every [`FsStoreConfig::poll_interval`] and compares device, inode,
//! size and nanosecond mtime/ctime. notify's own `PollWatcher` is not used:
//! it compares mtimes in whole seconds, so a handoff completed within the
//! second it was created would never be seen complete (or it hashes every
//! file of the store on every tick), and it walks the whole store each
//! tick. `Auto` falls back to polling when inotify cannot be set up.
//!
//! `subscribe` registers a waiter for the key *and* makes sure the watch is
//! established before it returns. [`Subscription::wait`] then reads the file
//! first (a handoff that landed before or during the subscription is found
//! here), and otherwise loops: await a wake-up or the deadline
//! (`tokio::time::timeout_at`, so paused test time works), read again.
//! What a read finds decides:
//!
//! | file                                   | outcome                                   |
//! |----------------------------------------|-------------------------------------------|
//! | missing                                | keep waiting                              |
//! | valid handoff                          | [`WaitOutcome::Landed`]                   |
//! | empty or cut off (`is_incomplete`)     | keep waiting; still so at the deadline: [`WaitOutcome::TimedOutIncomplete`] with that error |
//! | invalid and complete (syntax, field, mismatch) | [`WaitOutcome::Invalid`] at once  |
//! | larger than the cap                    | [`WaitOutcome::Invalid`] (`HandoffError::TooLarge`) at once, without reading it |
//! | symlink, FIFO, directory, I/O error    | `Err` at once ([`StoreError::Symlink`], [`StoreError::Io`]) |
//!
//! So a hostile or broken agent can neither make a waiter hang past its
//! deadline nor make it read more than the cap. At the deadline the file is
//! read one last time, so a handoff that lands at the last moment counts.
//! Dropping the subscription removes its waiter from the map
//! ([`FsStore::active_waiters`] goes back down).
//!
//! # Ledger
//!
//! [`crate::Ledger::dispatched`] reads the ledger backwards in 1 MiB chunks,
//! looking for the run id's bytes with `memchr::memmem` and parsing only
//! the lines that hold them, so `orch handoff submit` finds a recent run
//! after reading the ledger's tail (a run never dispatched costs one pass
//! at memory speed).
//!
//! `append_ledger` serializes one line and appends it with a single
//! `write_all` under an exclusive `flock` on a freshly opened
//! `O_APPEND` descriptor, so appends from many tasks, threads and processes
//! never interleave. Lines are not fsynced: once `write` returns the line is
//! in the page cache and survives the process being killed; only a kernel
//! crash or power loss can lose the last lines, the reader tolerates a torn
//! tail, and the ledger is an index whose facts (the handoff files) are
//! fsynced themselves (`metrics --rescan` rebuilds from them). An fsync per
//! line would cost a disk flush per event (see the `store` benchmark).
//!
//! # Blocking I/O
//!
//! Handoffs, records and ledger lines are small local files. Single-file
//! operations without fsync (`get`, a waiter's read, `append_ledger`,
//! `get_workflow_record`) run inline: they take microseconds
//! and moving them to the blocking pool would double their latency (a
//! thread hop per read is what the detection-latency budget cannot afford).
//! Operations that fsync (`put`, `put_raw`, `put_workflow_record`: two
//! flushes each, about 0.5 ms here and more on a busy disk; `quarantine`) or scale with the store
//! (`list`, `list_unordered`, `list_workflow_*`, `read_ledger`,
//! `read_ledger_raw`) go to
//! `tokio::task::spawn_blocking` when a tokio runtime is present, so they
//! never stall a runtime worker; without one they run inline.
//!
//! # Sharing
//!
//! [`FsStore`] is a handle (`Arc` inside): `clone` is cheap and clones share
//! the watcher, the waiter map and the counters. The watcher lives as long
//! as the store or any of its subscriptions and stops when the last one is
//! dropped.

use crate::prelude::*;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::files::{self, Entries, Publish, Written, io_err};
use super::journal::{self, JOURNAL, Journal};
pub use super::watch::WatchMode;
use super::watch::{Backend, Dispatch, Waiter};
use crate::store::{
    Existing, HandoffKey, LedgerEvent, LedgerRange, LedgerRead, PutMode, Scope, StoreError,
    Subscription, WaitOutcome, WorkflowRecord,
};
use crate::{
    DEFAULT_MAX_HANDOFF_BYTES, Expect, Handoff, HandoffError, RunId, parse_handoff_capped,
    validate_id,
};

/// Settings of an [`FsStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsStoreConfig {
    /// The store directory; created (with parents) by [`FsStore::open`].
    pub root: PathBuf,
    /// How waiting learns about new files. Default [`WatchMode::Auto`].
    pub watch: WatchMode,
    /// Polling period of [`WatchMode::Poll`] (and of `Auto`'s fallback).
    /// Default 100 ms; values under 1 ms are raised to 1 ms.
    pub poll_interval: Duration,
    /// Largest handoff file read, in bytes. Default
    /// [`DEFAULT_MAX_HANDOFF_BYTES`] (4 MiB). Workflow records may be up to
    /// four times this.
    pub max_handoff_bytes: u64,
}

impl FsStoreConfig {
    /// Defaults for a store at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            watch: WatchMode::Auto,
            poll_interval: Duration::from_millis(100),
            max_handoff_bytes: DEFAULT_MAX_HANDOFF_BYTES,
        }
    }
}

/// Workflow records embed a handoff plus attempts and timings.
const RECORD_CAP_FACTOR: u64 = 4;

/// What a journal line holds beyond its record (its key and framing).
const JOURNAL_LINE_SLACK: u64 = 1024;

/// Name of the workflow run summary; refused as a step id.
const SUMMARY: &str = "summary";

/// Process-wide temp file counter (two stores on one root in one process
/// must not pick the same temp name).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The file store (DESIGN §4): handoffs at `<root>/<runId>.json` and
/// `<root>/sub/<runId>.json`, workflow records under `<root>/workflows/`,
/// the ledger at `<root>/ledger.jsonl`.
///
/// - Writes are atomic (temp file, fsync, rename, fsync of the directory).
/// - Reads never follow a symlink ([`StoreError::Symlink`]) and never read
///   more than [`FsStoreConfig::max_handoff_bytes`] ([`StoreError::TooLarge`]).
/// - Waiting uses one watcher per store, created by the first
///   [`crate::Handoffs::subscribe`] (see [`WatchMode`]); every subscription
///   registers in a shared waiter map. A file that is empty or cut off is
///   read again until the deadline; any other invalid file ends the wait at
///   once as [`WaitOutcome::Invalid`]; a symlink, directory or FIFO at the
///   handoff's path ends it with an error.
/// - The step id `summary` is reserved ([`StoreError::ReservedId`]).
///
/// A handle: `clone` is cheap, and clones share the watcher, the waiter map
/// and the counters. The watcher stops when the store and all its
/// subscriptions are dropped.
#[derive(Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    sub: PathBuf,
    /// Requests to workflow runs ([`Scope::Control`]).
    control: PathBuf,
    workflows: PathBuf,
    ledger: PathBuf,
    watch: WatchMode,
    poll_interval: Duration,
    cap: u64,
    dispatch: Arc<Dispatch>,
    backend: Mutex<Option<Backend>>,
    watchers_created: AtomicUsize,
    incomplete_reads: AtomicU64,
    /// The writer of every run's journal (group commit).
    journal: Journal,
    /// Run directories this store made or found (at most
    /// [`RUN_DIRS_KEPT`]): a run's later records skip the trip to the
    /// blocking pool that checking for its directory costs. A directory
    /// removed under a live run makes that run's next write fail (and
    /// leaves this set).
    run_dirs: Mutex<std::collections::HashSet<PathBuf>>,
}

/// Most run directories [`Inner::run_dirs`] remembers (then it starts
/// again empty).
const RUN_DIRS_KEPT: usize = 4096;

impl fmt::Debug for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsStore")
            .field("root", &self.inner.root)
            .field("watch", &self.inner.watch)
            .field("watch_mode_in_use", &self.watch_mode_in_use())
            .field("active_waiters", &self.active_waiters())
            .finish()
    }
}

impl FsStore {
    /// Opens (creating if needed) the store at `config.root`: the root with
    /// its parents, `sub/` and `workflows/`. The root may be a symlink (it is
    /// resolved once, here); `sub/` and `workflows/` may not.
    pub fn open(config: FsStoreConfig) -> Result<Self, StoreError> {
        let FsStoreConfig {
            root,
            watch,
            poll_interval,
            max_handoff_bytes,
        } = config;
        std::fs::create_dir_all(&root).map_err(|e| io_err("create directory", &root, e))?;
        let root = std::fs::canonicalize(&root).map_err(|e| io_err("resolve", &root, e))?;
        files::check_dir(&root)?;
        let sub = root.join("sub");
        let control = root.join("control");
        let workflows = root.join("workflows");
        files::ensure_dir(&sub)?;
        files::ensure_dir(&control)?;
        files::ensure_dir(&workflows)?;
        Ok(Self {
            inner: Arc::new(Inner {
                ledger: root.join("ledger.jsonl"),
                dispatch: Arc::new(Dispatch::new(root.clone(), sub.clone(), control.clone())),
                root,
                sub,
                control,
                workflows,
                watch,
                poll_interval: poll_interval.max(Duration::from_millis(1)),
                cap: max_handoff_bytes,
                backend: Mutex::new(None),
                watchers_created: AtomicUsize::new(0),
                incomplete_reads: AtomicU64::new(0),
                journal: Journal::start()?,
                run_dirs: Mutex::default(),
            }),
        })
    }

    /// The store directory (resolved, absolute).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The file of the handoff for `key`.
    pub fn path_of(&self, key: &HandoffKey) -> PathBuf {
        self.inner.dispatch.path_of(key)
    }

    /// How many watchers this store has installed, ever: 0 before the first
    /// subscription, then 1. A diagnostic for the one-watcher invariant.
    pub fn watchers_created(&self) -> usize {
        self.inner.watchers_created.load(Ordering::Relaxed)
    }

    /// Subscriptions currently registered in the waiter map.
    pub fn active_waiters(&self) -> usize {
        self.inner.dispatch.active()
    }

    /// The backend in use ([`WatchMode::Inotify`] or [`WatchMode::Poll`]),
    /// `None` until the first subscription creates it.
    pub fn watch_mode_in_use(&self) -> Option<WatchMode> {
        self.inner.backend().as_ref().map(Backend::mode)
    }

    /// How many times a waiter read a handoff file that was empty or cut off
    /// (still being written) and went on waiting. A diagnostic.
    pub fn incomplete_reads(&self) -> u64 {
        self.inner.incomplete_reads.load(Ordering::Relaxed)
    }

    /// How many times every waiter was woken to re-check because watcher
    /// events may have been lost (inotify queue overflow, watcher error).
    pub fn rescans(&self) -> u64 {
        self.inner.dispatch.rescans()
    }

    /// How many times the inotify watches were set up again because the
    /// store root or `sub/` was removed (or moved away) and came back.
    pub fn rearms(&self) -> u64 {
        self.inner.dispatch.rearms()
    }

    /// [`crate::Ledger::dispatched`] reading the ledger `chunk` bytes at a
    /// time, so property tests can cut lines at every place; blocking.
    #[doc(hidden)]
    pub fn dispatched_in_chunks(
        &self,
        run_id: &RunId,
        chunk: usize,
    ) -> Result<Option<LedgerEvent>, StoreError> {
        files::find_dispatched_by(&self.inner.ledger, run_id, chunk)
    }

    /// When the watcher's handler last woke a waiter (for benchmarks that
    /// split detection latency into "event handled" and "waiter returned").
    #[doc(hidden)]
    pub fn last_wake_at(&self) -> Option<std::time::Instant> {
        self.inner.dispatch.last_wake()
    }

    fn run_dir(&self, run: &RunId) -> PathBuf {
        self.inner.workflows.join(run.as_str())
    }

    async fn write_handoff(
        &self,
        key: &HandoffKey,
        bytes: Vec<u8>,
        mode: PutMode,
    ) -> Result<(), StoreError> {
        let dir = match key.scope {
            Scope::Top => self.inner.root.clone(),
            Scope::Sub => self.inner.sub.clone(),
            Scope::Control => {
                // Made at open; again if the store was recreated without
                // it (the watcher takes it up once it is back).
                let control = self.inner.control.clone();
                blocking(&control.clone(), move || files::ensure_dir(&control)).await?;
                self.inner.control.clone()
            }
        };
        let name = format!("{}.json", key.run_id);
        let publish = match mode {
            PutMode::Create => Publish::NoReplace,
            PutMode::Replace => Publish::Replace,
        };
        let written = blocking(&self.path_of(key), move || {
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            files::write_atomic(&dir, &name, &bytes, n, publish)
        })
        .await?;
        match written {
            Written::Done(_) => Ok(()),
            Written::Taken(path) => Err(StoreError::AlreadyExists {
                location: path.display().to_string(),
                existing: self.existing(key, &path),
            }),
        }
    }

    /// What is stored at `path` (for [`StoreError::AlreadyExists`]).
    fn existing(&self, key: &HandoffKey, path: &Path) -> Existing {
        let expect = Expect {
            run_id: Some(&key.run_id),
            agent: None,
        };
        match files::read_capped(path, self.inner.cap) {
            Ok(Some(bytes)) => match parse_handoff_capped(&bytes, &expect, self.inner.cap) {
                Ok(h) => Existing::handoff(&h),
                Err(_) => Existing::unreadable(),
            },
            _ => Existing::unreadable(),
        }
    }
}

impl Inner {
    fn backend(&self) -> std::sync::MutexGuard<'_, Option<Backend>> {
        self.backend.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the store's watcher unless it exists. Synchronous: when this
    /// returns, the directories are watched.
    fn ensure_watcher(&self) -> Result<(), StoreError> {
        let mut backend = self.backend();
        if backend.is_none() {
            let started = Backend::start(self.watch, &self.dispatch, self.poll_interval)?;
            tracing::debug!(root = %self.root.display(), mode = %started.mode(), "store watcher started");
            *backend = Some(started);
            self.watchers_created.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// One look at a waited-for handoff.
    fn check(&self, key: &HandoffKey, path: &Path) -> Result<Check, StoreError> {
        let bytes = match files::read_capped(path, self.cap) {
            Ok(None) => return Ok(Check::Missing),
            Ok(Some(bytes)) => bytes,
            Err(StoreError::TooLarge { size, cap, .. }) => {
                return Ok(Check::Invalid(HandoffError::TooLarge { size, cap }));
            }
            Err(e) => return Err(e),
        };
        let expect = Expect {
            run_id: Some(&key.run_id),
            agent: None,
        };
        Ok(match parse_handoff_capped(&bytes, &expect, self.cap) {
            Ok(handoff) => Check::Landed(handoff),
            Err(e) if e.is_incomplete() => {
                self.incomplete_reads.fetch_add(1, Ordering::Relaxed);
                Check::Incomplete(e)
            }
            Err(e) => Check::Invalid(e),
        })
    }
}

enum Check {
    Missing,
    Landed(Handoff),
    Incomplete(HandoffError),
    Invalid(HandoffError),
}

/// Runs blocking file work on tokio's blocking pool when there is a
/// runtime, inline otherwise. `path` names the work in the error if the
/// runtime shuts down under it.
async fn blocking<T, F>(path: &Path, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return f();
    };
    match runtime.spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Io {
            op: "run file operation",
            path: path.to_owned(),
            source: std::io::Error::other(e),
        }),
    }
}

fn step_file(record: &WorkflowRecord) -> Result<String, StoreError> {
    match record {
        WorkflowRecord::Summary => Ok(format!("{SUMMARY}.json")),
        WorkflowRecord::Step(id) => {
            validate_id(id).map_err(|source| StoreError::InvalidId {
                id: id.chars().take(40).collect(),
                source,
            })?;
            if id.eq_ignore_ascii_case(SUMMARY) {
                return Err(StoreError::ReservedId { id: id.clone() });
            }
            Ok(format!("{id}.json"))
        }
    }
}

/// A waiter registered in the store's map; unregisters on drop.
struct FsSubscription {
    key: HandoffKey,
    path: PathBuf,
    waiter: Waiter,
    store: Arc<Inner>,
}

impl Drop for FsSubscription {
    fn drop(&mut self) {
        self.store.dispatch.unregister(&self.key, &self.waiter);
    }
}

#[async_trait]
impl Subscription for FsSubscription {
    fn key(&self) -> &HandoffKey {
        &self.key
    }

    async fn wait(&mut self, deadline: Instant) -> Result<WaitOutcome, StoreError> {
        loop {
            match self.store.check(&self.key, &self.path)? {
                Check::Landed(handoff) => return Ok(WaitOutcome::Landed(handoff)),
                Check::Invalid(e) => return Ok(WaitOutcome::Invalid(e)),
                Check::Missing | Check::Incomplete(_) => {}
            }
            let woken = tokio::time::timeout_at(deadline, self.waiter.notified()).await;
            if woken.is_err() {
                // One last look: a file that landed at the deadline counts;
                // one still cut off is a timeout that says so.
                return Ok(match self.store.check(&self.key, &self.path)? {
                    Check::Landed(handoff) => WaitOutcome::Landed(handoff),
                    Check::Invalid(e) => WaitOutcome::Invalid(e),
                    Check::Incomplete(e) => WaitOutcome::TimedOutIncomplete(e),
                    Check::Missing => WaitOutcome::TimedOut,
                });
            }
        }
    }
}

#[async_trait]
impl Handoffs for FsStore {
    fn describe(&self) -> String {
        format!("file store at {}", self.inner.root.display())
    }
    fn location(&self, key: &HandoffKey) -> String {
        self.path_of(key).display().to_string()
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
                path: self.path_of(&key),
                source,
            });
        }
        self.write_handoff(&key, bytes, mode).await
    }
    async fn put_raw(
        &self,
        key: &HandoffKey,
        bytes: &[u8],
        mode: PutMode,
    ) -> Result<(), StoreError> {
        self.write_handoff(key, bytes.to_vec(), mode).await
    }
    async fn get(&self, key: &HandoffKey) -> Result<Option<Handoff>, StoreError> {
        let path = self.path_of(key);
        let Some(bytes) = files::read_capped(&path, self.inner.cap)? else {
            return Ok(None);
        };
        let expect = Expect {
            run_id: Some(&key.run_id),
            agent: None,
        };
        match parse_handoff_capped(&bytes, &expect, self.inner.cap) {
            Ok(handoff) => Ok(Some(handoff)),
            Err(source) => Err(StoreError::Invalid { path, source }),
        }
    }
    async fn subscribe(&self, key: &HandoffKey) -> Result<Box<dyn Subscription>, StoreError> {
        let subscription = FsSubscription {
            key: key.clone(),
            path: self.path_of(key),
            waiter: self.inner.dispatch.register(key),
            store: Arc::clone(&self.inner),
        };
        // On error the subscription is dropped, which unregisters it.
        self.inner.ensure_watcher()?;
        Ok(Box::new(subscription))
    }
    async fn prepare_waits(&self) -> Result<(), StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(&self.inner.root.clone(), move || inner.ensure_watcher()).await
    }
    async fn quarantine(&self, key: &HandoffKey) -> Result<Option<String>, StoreError> {
        let path = self.path_of(key);
        let moved = blocking(&path.clone(), move || files::quarantine(&path)).await?;
        Ok(moved.map(|p| p.display().to_string()))
    }
    async fn list(&self, scope: Scope) -> Result<Vec<RunId>, StoreError> {
        let mut ids = self.list_unordered(scope).await?;
        ids.sort_unstable();
        Ok(ids)
    }
    async fn list_unordered(&self, scope: Scope) -> Result<Vec<RunId>, StoreError> {
        let dir = match scope {
            Scope::Top => self.inner.root.clone(),
            Scope::Sub => self.inner.sub.clone(),
            Scope::Control => self.inner.control.clone(),
        };
        let ids = blocking(&dir.clone(), move || {
            files::list_ids_unordered(&dir, Entries::JsonFiles)
        })
        .await?;
        Ok(ids
            .into_iter()
            .filter_map(|id| RunId::new(id).ok())
            .collect())
    }
}

impl FsStore {
    /// A workflow record as its view's bytes, with the run's directory and
    /// the view's name; refused over the record cap before anything (even
    /// the run's directory) is created: written, it could never be read
    /// back.
    fn encode_record(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
        value: &serde_json::Value,
    ) -> Result<(PathBuf, String, Vec<u8>), StoreError> {
        let name = step_file(record)?;
        let dir = self.run_dir(run);
        let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Corrupt {
            path: dir.join(&name),
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        let cap = self.max_record_bytes();
        if bytes.len() as u64 > cap {
            return Err(StoreError::TooLarge {
                path: dir.join(&name),
                size: bytes.len() as u64,
                cap,
            });
        }
        Ok((dir, name, bytes))
    }
}

impl FsStore {
    /// Makes sure the run directory `dir` exists (once per run and store:
    /// see [`Inner::run_dirs`]); whether this call created it.
    async fn ensure_run_dir(&self, dir: &Path) -> Result<bool, StoreError> {
        if self.run_dirs().contains(dir) {
            return Ok(false);
        }
        let run_dir = dir.to_owned();
        let created = blocking(dir, move || files::ensure_dir(&run_dir)).await?;
        let mut known = self.run_dirs();
        if known.len() >= RUN_DIRS_KEPT {
            known.clear();
        }
        known.insert(dir.to_owned());
        Ok(created)
    }

    fn forget_run_dir(&self, dir: &Path) {
        self.run_dirs().remove(dir);
    }

    fn run_dirs(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<PathBuf>> {
        self.inner
            .run_dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes a workflow record's view `name` in `dir`: whole (temp file and
/// rename) but without `fsync`, since the run's journal holds its truth.
async fn write_view(dir: PathBuf, name: String, bytes: Vec<u8>) -> Result<(), StoreError> {
    blocking(&dir.join(&name), move || {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        files::write_atomic(&dir, &name, &bytes, n, Publish::ReplaceView).map(drop)
    })
    .await
}

#[async_trait]
impl WorkflowRecords for FsStore {
    async fn put_workflow_record(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let (dir, name, bytes) = self.encode_record(run, record, value)?;
        let created = self.ensure_run_dir(&dir).await?;
        // The journal is the record's durable truth: appended and synced,
        // with every record that arrived meanwhile. A new run's directory
        // is synced into `workflows/` by the same batch, after the
        // journal's own sync (one flush on a journalling file system,
        // where the first sync commits the directories too). The view is
        // written meanwhile, without a sync: a view may be ahead of the
        // journal until the append returns (a crash there leaves a view
        // that `rebuild_workflow_views` rewrites, or the record of an
        // answer the agent's durable handoff already holds).
        let journal = dir.join(JOURNAL);
        let new_dir = created.then(|| self.inner.workflows.clone());
        let append = self
            .inner
            .journal
            .append(journal.clone(), &name, value, new_dir);
        let view = write_view(dir.clone(), name.clone(), bytes);
        let (appended, viewed) = tokio::join!(append, view);
        // The error names the record (`<step>.json`), then the journal.
        if let Err(e) = appended {
            if created {
                // The first record of a run failed (a full disk): leave no
                // run directory behind, only ever removing what this put
                // made.
                let _ = std::fs::remove_file(dir.join(&name));
                if std::fs::metadata(&journal).is_ok_and(|m| m.len() == 0) {
                    let _ = std::fs::remove_file(&journal);
                }
                let _ = std::fs::remove_dir(&dir);
            }
            self.forget_run_dir(&dir);
            return Err(StoreError::Io {
                op: "store the record",
                path: dir.join(&name),
                source: std::io::Error::other(e.to_string()),
            });
        }
        if viewed.is_err() {
            self.forget_run_dir(&dir);
        }
        viewed
    }
    async fn put_workflow_view(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let (dir, name, bytes) = self.encode_record(run, record, value)?;
        // One trip to the blocking pool: the run's directory, then the view.
        blocking(&dir.join(&name), move || {
            files::ensure_dir(&dir)?;
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            files::write_atomic(&dir, &name, &bytes, n, Publish::ReplaceView).map(drop)
        })
        .await
    }
    async fn rebuild_workflow_views(&self, run: &RunId) -> Result<usize, StoreError> {
        let dir = self.run_dir(run);
        let max_line = self.max_record_bytes().saturating_add(JOURNAL_LINE_SLACK);
        blocking(&dir.clone(), move || {
            if !files::check_dir(&dir)? {
                return Ok(0);
            }
            let mut rewritten = 0;
            for (name, value) in journal::latest(&dir.join(JOURNAL), max_line)? {
                let mut bytes =
                    serde_json::to_vec_pretty(&value).map_err(|e| StoreError::Corrupt {
                        path: dir.join(&name),
                        message: e.to_string(),
                    })?;
                bytes.push(b'\n');
                let path = dir.join(&name);
                let current = files::read_capped(&path, max_line).ok().flatten();
                if current.as_deref() != Some(bytes.as_slice()) {
                    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
                    files::write_atomic(&dir, &name, &bytes, n, Publish::ReplaceView)?;
                    rewritten += 1;
                }
            }
            Ok(rewritten)
        })
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
        let name = step_file(record)?;
        let dir = self.run_dir(run);
        if !files::check_dir(&dir)? {
            return Ok(None);
        }
        let path = dir.join(name);
        let cap = self.inner.cap.saturating_mul(RECORD_CAP_FACTOR);
        let Some(bytes) = files::read_capped(&path, cap)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                message: e.to_string(),
            })
    }
    async fn list_workflow_runs(&self) -> Result<Vec<RunId>, StoreError> {
        let dir = self.inner.workflows.clone();
        let ids = blocking(&dir.clone(), move || files::list_ids(&dir, Entries::Dirs)).await?;
        Ok(ids
            .into_iter()
            .filter_map(|id| RunId::new(id).ok())
            .collect())
    }
    async fn list_workflow_steps(&self, run: &RunId) -> Result<Vec<String>, StoreError> {
        let dir = self.run_dir(run);
        blocking(&dir.clone(), move || {
            if !files::check_dir(&dir)? {
                return Ok(Vec::new());
            }
            let mut steps = files::list_ids(&dir, Entries::JsonFiles)?;
            steps.retain(|id| !id.eq_ignore_ascii_case(SUMMARY));
            Ok(steps)
        })
        .await
    }
}

#[async_trait]
impl Ledger for FsStore {
    async fn append_ledger(&self, event: &LedgerEvent) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(event).map_err(|e| StoreError::Corrupt {
            path: self.inner.ledger.clone(),
            message: e.to_string(),
        })?;
        line.push(b'\n');
        files::append_locked(&self.inner.ledger, &line)
    }
    async fn dispatched(&self, run_id: &RunId) -> Result<Option<LedgerEvent>, StoreError> {
        let path = self.inner.ledger.clone();
        let run_id = run_id.clone();
        blocking(&path.clone(), move || {
            files::find_dispatched(&path, &run_id)
        })
        .await
    }
    async fn read_ledger(&self) -> Result<LedgerRead, StoreError> {
        let path = self.inner.ledger.clone();
        blocking(&path.clone(), move || files::read_ledger(&path)).await
    }
    async fn read_ledger_tail(
        &self,
        max_bytes: u64,
        holding: Option<&str>,
    ) -> Result<LedgerRead, StoreError> {
        let path = self.inner.ledger.clone();
        let holding = holding.map(|h| h.as_bytes().to_vec());
        blocking(&path.clone(), move || {
            files::read_ledger_tail(&path, max_bytes, holding.as_deref())
        })
        .await
    }
    async fn read_ledger_raw(&self) -> Result<Vec<u8>, StoreError> {
        let path = self.inner.ledger.clone();
        blocking(&path.clone(), move || files::read_whole(&path)).await
    }
    async fn read_ledger_range(&self, start: u64, max_len: u64) -> Result<LedgerRange, StoreError> {
        let path = self.inner.ledger.clone();
        blocking(&path.clone(), move || {
            files::read_range(&path, start, max_len)
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn watch_mode_round_trips_through_text() {
        for mode in [WatchMode::Auto, WatchMode::Inotify, WatchMode::Poll] {
            assert_eq!(mode.to_string().parse::<WatchMode>(), Ok(mode));
        }
        assert!("fanotify".parse::<WatchMode>().is_err());
        assert_eq!(WatchMode::default(), WatchMode::Auto);
    }

    #[test]
    fn step_ids_are_checked() {
        assert_eq!(step_file(&WorkflowRecord::Summary).unwrap(), "summary.json");
        assert_eq!(
            step_file(&WorkflowRecord::Step("fetch-1".into())).unwrap(),
            "fetch-1.json"
        );
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(
                matches!(
                    step_file(&WorkflowRecord::Step(bad.into())),
                    Err(StoreError::InvalidId { .. })
                ),
                "{bad:?}"
            );
        }
        for reserved in ["summary", "Summary"] {
            assert!(matches!(
                step_file(&WorkflowRecord::Step(reserved.into())),
                Err(StoreError::ReservedId { .. })
            ));
        }
    }

    #[test]
    fn open_refuses_symlinked_subdirectories() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("sub")).unwrap();
        let err = FsStore::open(FsStoreConfig::new(dir.path())).unwrap_err();
        assert!(matches!(err, StoreError::Symlink { .. }), "{err:?}");
    }

    #[test]
    fn a_symlinked_root_is_resolved_once() {
        let real = tempfile::tempdir().unwrap();
        let links = tempfile::tempdir().unwrap();
        let link = links.path().join("store");
        std::os::unix::fs::symlink(real.path(), &link).unwrap();
        let store = FsStore::open(FsStoreConfig::new(&link)).unwrap();
        assert_eq!(store.root(), real.path().canonicalize().unwrap());
        assert!(real.path().join("sub").is_dir());
        assert!(real.path().join("workflows").is_dir());
    }
}
