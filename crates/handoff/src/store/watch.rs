//! The one watcher of a store and the waiter map it wakes.
//!
//! [`Dispatch`] owns the map `HandoffKey → [waiter]` (a `std::sync::Mutex`
//! around a `HashMap`; it is never held across an `.await`). A waiter is an
//! `Arc<tokio::sync::Notify>` woken with `notify_one`, which stores a permit
//! when nobody is parked yet: a wake-up that arrives between a waiter's
//! "read the file" and its "await" is not lost.
//!
//! The watcher backend calls [`Dispatch::handle`] on its own thread with
//! every `notify` event. The handler maps each path to a key (skipping
//! hidden/temp names, non-`.json` names and invalid ids), and calls
//! `notify_one` on that key's waiters: a short critical section, no
//! allocation beyond the key, no channel, so notify's thread never blocks
//! on a slow consumer. Events only mean "look again": the waiter re-reads
//! the file and its content decides. On `need_rescan()` (kernel queue
//! overflow) or a watcher error every waiter is woken and re-checks its own
//! file, which is the rescan.
//!
//! Two backends, one per store at most:
//!
//! - **inotify** (`notify::RecommendedWatcher`), watching the root and
//!   `sub/` non-recursively. A watched directory that is removed or moved
//!   away takes its watch with it; a re-arm thread ([`Rearm`]) watches it
//!   again once it is back (see there).
//! - **polling** ([`Poller`]): one thread per store that, every interval,
//!   `lstat`s only the files someone waits for and wakes a key's waiters
//!   when the file's identity (device, inode, size, mtime and ctime in
//!   nanoseconds) changed. This replaces `notify::PollWatcher`, which was
//!   the first plan: it compares mtimes in whole seconds and, without
//!   `compare_contents`, misses a second write within the same second (a
//!   handoff written in two chunks would sit truncated until the
//!   deadline), while with `compare_contents` it hashes every file of the
//!   store on every tick; and it walks the whole directory (every old
//!   handoff) each tick. Polling what is waited for is O(waiters).
//!   Its events go through the same [`Dispatch::handle`].

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, DataChange, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::RunId;
use crate::store::{HandoffKey, Scope, StoreError};

/// How an [`FsStore`](super::FsStore) learns that a handoff file changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    /// inotify, falling back to polling if the watcher cannot be created
    /// (instance or watch limit reached, file system without inotify).
    /// Cannot detect NFS, where inotify "works" but misses other hosts'
    /// writes: choose [`WatchMode::Poll`] there.
    #[default]
    Auto,
    /// inotify only; failing to set it up is an error.
    Inotify,
    /// Poll the awaited files every [`FsStoreConfig::poll_interval`](super::FsStoreConfig::poll_interval).
    Poll,
}

impl WatchMode {
    /// `auto`, `inotify` or `poll`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Inotify => "inotify",
            Self::Poll => "poll",
        }
    }
}

impl fmt::Display for WatchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WatchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "inotify" => Ok(Self::Inotify),
            "poll" => Ok(Self::Poll),
            other => Err(format!(
                "unknown watch mode {other:?}: expected auto, inotify or poll"
            )),
        }
    }
}

/// One registered waiter.
pub(crate) type Waiter = Arc<Notify>;

/// The waiter map and the event handler of one store. Shared (`Arc`) by the
/// store and the watcher thread.
pub(crate) struct Dispatch {
    top: PathBuf,
    sub: PathBuf,
    control: PathBuf,
    waiters: Mutex<HashMap<HandoffKey, Vec<Waiter>>>,
    /// Tells the inotify backend's re-arm thread that a watched directory
    /// went away (`None` without one).
    lost: Mutex<Option<mpsc::Sender<PathBuf>>>,
    rearms: AtomicU64,
    active: AtomicUsize,
    rescans: AtomicU64,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last wake-up, plus one (0 = never).
    last_wake: AtomicU64,
}

impl Dispatch {
    /// A dispatcher for a store whose top-level handoffs live in `top`,
    /// sub-delegation handoffs in `sub` and requests to workflow runs in
    /// `control` (all as the watcher reports them).
    pub(crate) fn new(top: PathBuf, sub: PathBuf, control: PathBuf) -> Self {
        Self {
            top,
            sub,
            control,
            waiters: Mutex::new(HashMap::new()),
            lost: Mutex::new(None),
            rearms: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            rescans: AtomicU64::new(0),
            epoch: Instant::now(),
            last_wake: AtomicU64::new(0),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<HandoffKey, Vec<Waiter>>> {
        // Nothing panics while holding the lock; if something ever did, the
        // map is still consistent (every operation is a single insert or
        // remove), so recover rather than poison every later waiter.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new waiter for `key`.
    pub(crate) fn register(&self, key: &HandoffKey) -> Waiter {
        let waiter = Arc::new(Notify::new());
        self.map()
            .entry(key.clone())
            .or_default()
            .push(Arc::clone(&waiter));
        self.active.fetch_add(1, Ordering::Relaxed);
        waiter
    }

    /// Removes `waiter` (and the key, if it was the last one).
    pub(crate) fn unregister(&self, key: &HandoffKey, waiter: &Waiter) {
        let mut map = self.map();
        if let Entry::Occupied(mut entry) = map.entry(key.clone()) {
            let list = entry.get_mut();
            if let Some(i) = list.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                list.swap_remove(i);
                self.active.fetch_sub(1, Ordering::Relaxed);
            }
            if list.is_empty() {
                entry.remove();
            }
        }
    }

    /// Registered waiters.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Times every waiter was woken because events may have been lost.
    pub(crate) fn rescans(&self) -> u64 {
        self.rescans.load(Ordering::Relaxed)
    }

    /// Times the inotify watches were set up again after a watched
    /// directory was removed (or moved away) and came back.
    pub(crate) fn rearms(&self) -> u64 {
        self.rearms.load(Ordering::Relaxed)
    }

    fn lost_sender(&self) -> MutexGuard<'_, Option<mpsc::Sender<PathBuf>>> {
        self.lost.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the handler last woke a waiter.
    pub(crate) fn last_wake(&self) -> Option<Instant> {
        match self.last_wake.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.epoch + Duration::from_nanos(n - 1)),
        }
    }

    /// Where the handoff for `key` lives.
    pub(crate) fn path_of(&self, key: &HandoffKey) -> PathBuf {
        let dir = match key.scope {
            Scope::Top => &self.top,
            Scope::Sub => &self.sub,
            Scope::Control => &self.control,
        };
        dir.join(format!("{}.json", key.run_id))
    }

    /// The key a watched path stands for, if any: `<top>/<id>.json` or
    /// `<sub>/<id>.json` with a valid id. Hidden names (temp files), other
    /// extensions (`ledger.jsonl`, `*.rejected-N`) and directories' own
    /// events map to nothing.
    pub(crate) fn key_of(&self, path: &Path) -> Option<HandoffKey> {
        let parent = path.parent()?;
        let scope = if parent == self.top {
            Scope::Top
        } else if parent == self.sub {
            Scope::Sub
        } else if parent == self.control {
            Scope::Control
        } else {
            return None;
        };
        let name = path.file_name()?.to_str()?;
        let id = name.strip_suffix(".json")?;
        // Run ids never start with '.', so temp files never match.
        let run_id = RunId::new(id).ok()?;
        Some(HandoffKey { scope, run_id })
    }

    /// The event handler: runs on the watcher's thread, never blocks.
    pub(crate) fn handle(&self, event: notify::Result<Event>) {
        match event {
            Err(e) => {
                tracing::warn!(error = %e, "file watcher error; waking every waiter to re-check");
                self.wake_all();
            }
            Ok(event) if event.need_rescan() => {
                tracing::debug!("file watcher asked for a rescan; waking every waiter");
                self.wake_all();
            }
            Ok(event) => {
                if means_directory_gone(&event.kind) {
                    for path in &event.paths {
                        if *path == self.top || *path == self.sub || *path == self.control {
                            // The watch died with the directory: the re-arm
                            // thread watches it again once it is back.
                            if let Some(lost) = &*self.lost_sender() {
                                let _ = lost.send(path.clone());
                            }
                        }
                    }
                }
                if !means_content_may_have_changed(&event.kind) {
                    return;
                }
                for path in &event.paths {
                    if let Some(key) = self.key_of(path) {
                        self.wake(&key);
                    }
                }
            }
        }
    }

    fn wake(&self, key: &HandoffKey) {
        let map = self.map();
        if let Some(list) = map.get(key) {
            for waiter in list {
                waiter.notify_one();
            }
            drop(map);
            self.stamp_wake();
        }
    }

    /// Wakes every waiter: each re-reads its own file. This is the rescan.
    pub(crate) fn wake_all(&self) {
        self.rescans.fetch_add(1, Ordering::Relaxed);
        for list in self.map().values() {
            for waiter in list {
                waiter.notify_one();
            }
        }
        self.stamp_wake();
    }

    fn stamp_wake(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last_wake.store(nanos + 1, Ordering::Relaxed);
    }
}

/// Whether an event kind can mean a handoff file appeared or changed.
///
/// Reads are *not* such events: inotify (as notify configures it) reports
/// `OPEN` and `CLOSE_NOWRITE`, which every waiter's own read produces; waking
/// on them would make waiters wake each other forever. Metadata-only changes,
/// removals and the source side of a rename cannot produce a handoff either.
fn means_content_may_have_changed(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) => true,
        EventKind::Modify(ModifyKind::Data(_)) => true,
        EventKind::Modify(ModifyKind::Name(mode)) => !matches!(mode, RenameMode::From),
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Remove(_) => false,
        EventKind::Any | EventKind::Other => true,
    }
}

/// Whether an event can mean that a watched directory itself went away:
/// removed (`DELETE_SELF`, or `DELETE` of `sub/` in the root) or moved
/// (`MOVE_SELF`). inotify watches an inode, so the watch is then dead or
/// watching the wrong directory.
fn means_directory_gone(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From))
    )
}

/// The watcher a store owns. It is only held: dropping it stops its threads.
pub(crate) enum Backend {
    /// inotify through notify's recommended watcher, and the thread that
    /// watches the directories again after they were removed and recreated.
    Notify { _rearm: Rearm },
    /// The store's own poller.
    Poll { _poller: Poller },
}

impl Backend {
    /// Starts the backend `mode` asks for. For [`WatchMode::Auto`], falls
    /// back to polling when inotify cannot be set up (instance or watch
    /// limits, unsupported file system). The directories are watched before
    /// this returns.
    pub(crate) fn start(
        mode: WatchMode,
        dispatch: &Arc<Dispatch>,
        poll_interval: Duration,
    ) -> Result<Self, StoreError> {
        match mode {
            WatchMode::Inotify => Self::inotify(dispatch, poll_interval),
            WatchMode::Poll => Self::poll(dispatch, poll_interval),
            WatchMode::Auto => match Self::inotify(dispatch, poll_interval) {
                Ok(backend) => Ok(backend),
                Err(e) => {
                    tracing::warn!(error = %e, "inotify unavailable, falling back to polling");
                    Self::poll(dispatch, poll_interval)
                }
            },
        }
    }

    fn inotify(dispatch: &Arc<Dispatch>, poll_interval: Duration) -> Result<Self, StoreError> {
        let handler = Arc::clone(dispatch);
        let mut watcher = notify::RecommendedWatcher::new(
            move |event| handler.handle(event),
            notify::Config::default(),
        )
        .map_err(|e| StoreError::Watch {
            path: dispatch.top.clone(),
            message: e.to_string(),
        })?;
        for dir in [&dispatch.top, &dispatch.sub, &dispatch.control] {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| StoreError::Watch {
                    path: dir.clone(),
                    message: e.to_string(),
                })?;
        }
        let rearm = Rearm::start(watcher, dispatch, poll_interval)?;
        Ok(Self::Notify { _rearm: rearm })
    }

    fn poll(dispatch: &Arc<Dispatch>, interval: Duration) -> Result<Self, StoreError> {
        Poller::start(dispatch, interval).map(|poller| Self::Poll { _poller: poller })
    }

    /// Which kind of watcher this is.
    pub(crate) fn mode(&self) -> WatchMode {
        match self {
            Self::Notify { .. } => WatchMode::Inotify,
            Self::Poll { .. } => WatchMode::Poll,
        }
    }
}

/// The inotify watcher and its re-arm thread, stopped and joined on drop.
///
/// inotify watches a directory's inode: when the store root or `sub/` is
/// removed (or moved away) the watch dies with it (or follows the old
/// directory), and a directory recreated at the same path would never be
/// seen. The handler reports such an event here; this thread then checks
/// every poll interval whether the directories are back, watches them
/// again (dropping stale watches first), and wakes every waiter to re-read
/// its file, so a handoff written before the watch was back is found too.
/// Both steps are logged at warn level: in between, waiting relies on this
/// thread, not on inotify.
pub(crate) struct Rearm {
    dispatch: Arc<Dispatch>,
    thread: Option<JoinHandle<()>>,
}

impl Rearm {
    fn start(
        watcher: notify::RecommendedWatcher,
        dispatch: &Arc<Dispatch>,
        interval: Duration,
    ) -> Result<Self, StoreError> {
        let (lost, lost_rx) = mpsc::channel::<PathBuf>();
        // Before the thread starts: a loss reported meanwhile is queued.
        *dispatch.lost_sender() = Some(lost);
        let thread_dispatch = Arc::clone(dispatch);
        let thread = std::thread::Builder::new()
            .name("orch-store-rearm".to_owned())
            .spawn(move || rearm_loop(watcher, &thread_dispatch, interval, &lost_rx))
            .map_err(|e| {
                drop(dispatch.lost_sender().take());
                StoreError::Watch {
                    path: dispatch.top.clone(),
                    message: format!("cannot start the watch re-arm thread: {e}"),
                }
            })?;
        Ok(Self {
            dispatch: Arc::clone(dispatch),
            thread: Some(thread),
        })
    }
}

impl Drop for Rearm {
    fn drop(&mut self) {
        // Dropping the only sender ends the thread's `recv`; the watcher it
        // owns stops with it.
        drop(self.dispatch.lost_sender().take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn rearm_loop(
    mut watcher: notify::RecommendedWatcher,
    dispatch: &Dispatch,
    interval: Duration,
    lost: &mpsc::Receiver<PathBuf>,
) {
    let handoff_dirs = [dispatch.top.clone(), dispatch.sub.clone()];
    let is_dir = |d: &Path| std::fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_dir());
    // `control/` (requests to workflow runs) may come back after the
    // handoff directories, or only when the next request is written: the
    // handoffs are watched again without waiting for it.
    let mut control_missing = false;
    loop {
        let gone = if control_missing {
            match lost.recv_timeout(interval) {
                Ok(gone) => gone,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if is_dir(&dispatch.control)
                        && watcher
                            .watch(&dispatch.control, RecursiveMode::NonRecursive)
                            .is_ok()
                    {
                        control_missing = false;
                        dispatch.wake_all();
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else {
            // Blocks until a directory is reported gone, or the store stops.
            match lost.recv() {
                Ok(gone) => gone,
                Err(_) => return,
            }
        };
        tracing::warn!(
            dir = %gone.display(),
            "a store directory was removed or moved away; its inotify watch is gone: \
             checking every {interval:?} for it to come back"
        );
        loop {
            // Drain further reports of the same loss.
            match lost.recv_timeout(interval) {
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if !handoff_dirs.iter().all(|d| is_dir(d)) {
                continue;
            }
            // Reports of this loss that are still queued.
            while lost.try_recv().is_ok() {}
            // Stale watches (a moved directory) go first; a deleted one is
            // already gone, and unwatching it fails harmlessly.
            for dir in handoff_dirs.iter().chain([&dispatch.control]) {
                let _ = watcher.unwatch(dir);
            }
            let armed = handoff_dirs
                .iter()
                .try_for_each(|d| watcher.watch(d, RecursiveMode::NonRecursive));
            match armed {
                Ok(()) => {
                    control_missing = !(is_dir(&dispatch.control)
                        && watcher
                            .watch(&dispatch.control, RecursiveMode::NonRecursive)
                            .is_ok());
                    dispatch.rearms.fetch_add(1, Ordering::Relaxed);
                    // Files written before the watch was back.
                    dispatch.wake_all();
                    tracing::warn!(
                        dir = %dispatch.top.display(),
                        "the store directories are back: watching them again"
                    );
                    break;
                }
                // Gone again in between: keep checking.
                Err(e) => tracing::debug!(error = %e, "re-arming the store watch failed"),
            }
        }
    }
}

/// The polling backend: one thread, stopped and joined on drop.
pub(crate) struct Poller {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Poller {
    fn start(dispatch: &Arc<Dispatch>, interval: Duration) -> Result<Self, StoreError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let dispatch = Arc::clone(dispatch);
        let top = dispatch.top.clone();
        let thread = std::thread::Builder::new()
            .name("orch-store-poll".to_owned())
            .spawn(move || poll_loop(&dispatch, interval, &stopped))
            .map_err(|e| StoreError::Watch {
                path: top,
                message: format!("cannot start the polling thread: {e}"),
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // Disconnecting the channel ends the thread's `recv_timeout` at once.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the poller last saw at a path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Not looked at yet: the first sighting of an existing file wakes (the
    /// waiter may have checked before the file appeared).
    Unknown,
    Missing,
    File {
        dev: u64,
        ino: u64,
        len: u64,
        mtime: (i64, i64),
        ctime: (i64, i64),
    },
    Unreadable(std::io::ErrorKind),
}

fn look(path: &Path) -> Seen {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Seen::File {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Seen::Missing,
        Err(e) => Seen::Unreadable(e.kind()),
    }
}

fn poll_loop(dispatch: &Dispatch, interval: Duration, stopped: &mpsc::Receiver<()>) {
    let mut seen: HashMap<HandoffKey, (PathBuf, Seen)> = HashMap::new();
    let mut changed: Vec<PathBuf> = Vec::new();
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
        {
            // Follow the waiter map: forget keys nobody waits for, add new
            // ones. Only hash lookups under the lock; no I/O.
            let map = dispatch.map();
            seen.retain(|key, _| map.contains_key(key));
            for key in map.keys() {
                if !seen.contains_key(key) {
                    seen.insert(key.clone(), (dispatch.path_of(key), Seen::Unknown));
                }
            }
        }
        for (path, last) in seen.values_mut() {
            let now = look(path);
            if now != *last {
                *last = now;
                if now != Seen::Missing {
                    changed.push(path.clone());
                }
            }
        }
        for path in changed.drain(..) {
            let event =
                Event::new(EventKind::Modify(ModifyKind::Data(DataChange::Any))).add_path(path);
            dispatch.handle(Ok(event));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use notify::event::{CreateKind, Flag, RemoveKind};

    use super::*;

    fn dispatch() -> Dispatch {
        Dispatch::new(
            PathBuf::from("/s"),
            PathBuf::from("/s/sub"),
            PathBuf::from("/s/control"),
        )
    }

    fn key(scope: Scope, id: &str) -> HandoffKey {
        HandoffKey {
            scope,
            run_id: RunId::new(id).unwrap(),
        }
    }

    fn ev(kind: EventKind, paths: &[&str]) -> notify::Result<Event> {
        let mut e = Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        Ok(e)
    }

    /// Whether `waiter` holds a wake-up, consuming it.
    async fn woken(waiter: &Waiter) -> bool {
        // `timeout` polls the inner future before looking at the timer, so a
        // stored permit is seen and a missing one times out at once.
        tokio::time::timeout(Duration::ZERO, waiter.notified())
            .await
            .is_ok()
    }

    #[test]
    fn paths_map_to_keys() {
        let d = dispatch();
        let cases: &[(&str, Option<HandoffKey>)] = &[
            ("/s/run-1.json", Some(key(Scope::Top, "run-1"))),
            ("/s/sub/run-1.json", Some(key(Scope::Sub, "run-1"))),
            ("/s/.run-1.json.tmp-1-2", None),
            ("/s/.run-1.json", None),
            ("/s/run-1.json.rejected-1", None),
            ("/s/ledger.jsonl", None),
            ("/s/sub", None),
            ("/s/workflows/wf/step.json", None),
            ("/other/run-1.json", None),
            ("/s/a b.json", None),
            ("/s/.json", None),
        ];
        for (path, want) in cases {
            assert_eq!(&d.key_of(Path::new(path)), want, "{path}");
        }
        assert_eq!(
            d.path_of(&key(Scope::Sub, "x")),
            PathBuf::from("/s/sub/x.json")
        );
    }

    #[tokio::test]
    async fn events_wake_only_their_key_and_only_for_content_changes() {
        let d = dispatch();
        let a = d.register(&key(Scope::Top, "a"));
        let b = d.register(&key(Scope::Top, "b"));
        let sub_a = d.register(&key(Scope::Sub, "a"));
        let wake = [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Any,
        ];
        for kind in wake {
            d.handle(ev(kind, &["/s/a.json"]));
            assert!(woken(&a).await, "{kind:?}");
            assert!(!woken(&b).await, "{kind:?}");
            assert!(!woken(&sub_a).await, "{kind:?}");
        }
        // A rename into place reports both paths; the temp one is ignored.
        d.handle(ev(
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            &["/s/.b.json.tmp-1-1", "/s/b.json"],
        ));
        assert!(woken(&b).await);
        assert!(!woken(&a).await);
        let ignore = [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(notify::event::MetadataKind::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            EventKind::Remove(RemoveKind::File),
        ];
        for kind in ignore {
            d.handle(ev(kind, &["/s/a.json"]));
            assert!(!woken(&a).await, "{kind:?}");
        }
        d.handle(ev(EventKind::Create(CreateKind::File), &["/s/sub/a.json"]));
        assert!(woken(&sub_a).await);
        assert!(!woken(&a).await);
        assert_eq!(d.rescans(), 0);
        assert!(d.last_wake().is_some());
    }

    #[tokio::test]
    async fn rescan_and_errors_wake_everyone() {
        let d = dispatch();
        let waiters: Vec<Waiter> = ["a", "b", "c"]
            .iter()
            .map(|id| d.register(&key(Scope::Top, id)))
            .chain([d.register(&key(Scope::Sub, "a"))])
            .collect();
        // What notify sends on IN_Q_OVERFLOW: no path, the rescan flag.
        d.handle(Ok(Event::new(EventKind::Other).set_flag(Flag::Rescan)));
        for w in &waiters {
            assert!(woken(w).await);
        }
        d.handle(Err(notify::Error::generic("boom")));
        for w in &waiters {
            assert!(woken(w).await);
        }
        assert_eq!(d.rescans(), 2);
    }

    #[tokio::test]
    async fn a_wake_before_the_await_is_kept() {
        let d = dispatch();
        let k = key(Scope::Top, "a");
        let w = d.register(&k);
        d.handle(ev(EventKind::Create(CreateKind::File), &["/s/a.json"]));
        d.handle(ev(EventKind::Create(CreateKind::File), &["/s/a.json"]));
        // Two wakes coalesce into one permit.
        assert!(woken(&w).await);
        assert!(!woken(&w).await);
    }

    #[test]
    fn auto_falls_back_to_polling_when_inotify_cannot_watch() {
        // inotify cannot watch a directory that does not exist; polling can
        // (it just sees nothing yet). The same path to failure as a full
        // inotify instance or watch table.
        let gone = tempfile::tempdir().unwrap().path().join("gone");
        let d = Arc::new(Dispatch::new(
            gone.clone(),
            gone.join("sub"),
            gone.join("control"),
        ));
        let interval = Duration::from_millis(5);
        let err = Backend::start(WatchMode::Inotify, &d, interval)
            .err()
            .unwrap();
        assert!(
            matches!(&err, StoreError::Watch { path, .. } if *path == gone),
            "{err:?}"
        );
        let auto = Backend::start(WatchMode::Auto, &d, interval).unwrap();
        assert_eq!(auto.mode(), WatchMode::Poll);
        drop(auto); // joins the polling thread
        let ok = Dispatch::new(
            std::env::temp_dir(),
            std::env::temp_dir(),
            std::env::temp_dir(),
        );
        let auto = Backend::start(WatchMode::Auto, &Arc::new(ok), interval).unwrap();
        assert_eq!(auto.mode(), WatchMode::Inotify);
    }

    #[tokio::test]
    async fn the_poller_wakes_on_a_change_within_one_second() {
        let dir = tempfile::tempdir().unwrap();
        let d = Arc::new(Dispatch::new(
            dir.path().to_owned(),
            dir.path().join("s"),
            dir.path().join("c"),
        ));
        let k = key(Scope::Top, "p");
        let w = d.register(&k);
        let _poller = Backend::start(WatchMode::Poll, &d, Duration::from_millis(1)).unwrap();
        let path = d.path_of(&k);
        let give_up = Duration::from_secs(30);
        // Each change ends the wait; the deadline only bounds a failure.
        // Appears whole (renamed into place), so the poller sees exactly one
        // change and leaves no stale wake-up behind.
        let tmp = dir.path().join(".p.json.tmp");
        std::fs::write(&tmp, b"{").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        tokio::time::timeout(give_up, w.notified()).await.unwrap();
        // Same second, same inode, only the size differs: notify's
        // PollWatcher (1 s mtime resolution) would miss this one.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"}"))
            .unwrap();
        tokio::time::timeout(give_up, w.notified()).await.unwrap();
    }

    #[test]
    fn unregister_shrinks_the_map() {
        let d = dispatch();
        let k = key(Scope::Top, "a");
        let w1 = d.register(&k);
        let w2 = d.register(&k);
        assert_eq!(d.active(), 2);
        d.unregister(&k, &w1);
        d.unregister(&k, &w1);
        assert_eq!(d.active(), 1);
        d.unregister(&k, &w2);
        assert_eq!(d.active(), 0);
        assert!(d.map().is_empty());
    }
}
