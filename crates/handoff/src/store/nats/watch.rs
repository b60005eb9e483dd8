//! The one key watch of a [`NatsStore`](super::NatsStore) and the waiters it
//! wakes.
//!
//! [`Waiters`] is the map KV key → waiter slots (a `std::sync::Mutex`
//! around a `HashMap`, never held across an `.await`). A [`Slot`] holds a
//! `tokio::sync::Notify` (woken with `notify_one`, which stores a permit
//! when nobody is parked yet, so a wake-up between a waiter's look and its
//! await is kept) and the newest update the watch delivered for its key.
//!
//! The watch is one ordered push consumer over the handoff bucket
//! (`Store::watch_all`, delivering new entries *with* their values), read by
//! a task the store owns. Each entry goes to the slots of its key: a put as
//! its bytes, a delete or purge as "absent" (so a delete never wakes a
//! waiter with garbage), and only if its revision is newer than what the
//! slot holds. Waiters judge the value the watch delivered; they do not read
//! the key again, so a lagging replica answering a read cannot hide an
//! update the watch already showed.
//!
//! async-nats' ordered consumer re-creates itself after a reconnect or a
//! sequence gap, from the last sequence it delivered. Anything that may mean
//! lost entries (an error from the watch, a reconnect, the watch ending)
//! wakes every waiter with "look again": each reads its key once more.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Notify;

/// What the watch saw for a key.
#[derive(Clone, Debug)]
pub(super) struct Update {
    /// The entry's revision (stream sequence).
    pub(super) revision: u64,
    /// The value of a put; `None` after a delete or purge.
    pub(super) value: Option<Bytes>,
}

/// One waiter: a wake-up permit and the newest update for its key.
#[derive(Default)]
pub(super) struct Slot {
    notify: Notify,
    latest: Mutex<Option<Update>>,
    /// Set by [`Waiters::wake_all`]: entries may have been missed, read the
    /// key again.
    recheck: AtomicBool,
}

impl Slot {
    fn latest(&self) -> MutexGuard<'_, Option<Update>> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn offer(&self, update: &Update) {
        let mut latest = self.latest();
        if latest.as_ref().is_none_or(|u| u.revision < update.revision) {
            *latest = Some(update.clone());
        }
    }

    /// Waits for the next wake-up (or takes a stored permit).
    pub(super) async fn notified(&self) {
        self.notify.notified().await;
    }

    /// The update delivered since the waiter last looked, if it is newer
    /// than `seen`.
    pub(super) fn take_newer(&self, seen: u64) -> Option<Update> {
        self.latest().take().filter(|u| u.revision > seen)
    }

    /// Whether the waiter must read its key again (and clears the flag).
    pub(super) fn take_recheck(&self) -> bool {
        self.recheck.swap(false, Ordering::AcqRel)
    }
}

/// The waiter map of one store, shared by the store and its watch task.
pub(super) struct Waiters {
    map: Mutex<HashMap<String, Vec<Arc<Slot>>>>,
    active: AtomicUsize,
    rechecks: AtomicU64,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last wake-up, plus one (0 = never).
    last_wake: AtomicU64,
}

impl Waiters {
    pub(super) fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            rechecks: AtomicU64::new(0),
            epoch: Instant::now(),
            last_wake: AtomicU64::new(0),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Vec<Arc<Slot>>>> {
        // Every operation under the lock is a single insert or remove: the
        // map stays consistent even if a holder panicked.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn register(&self, key: &str) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        self.map()
            .entry(key.to_owned())
            .or_default()
            .push(Arc::clone(&slot));
        self.active.fetch_add(1, Ordering::Relaxed);
        slot
    }

    pub(super) fn unregister(&self, key: &str, slot: &Arc<Slot>) {
        let mut map = self.map();
        if let Entry::Occupied(mut entry) = map.entry(key.to_owned()) {
            let list = entry.get_mut();
            if let Some(i) = list.iter().position(|s| Arc::ptr_eq(s, slot)) {
                list.swap_remove(i);
                self.active.fetch_sub(1, Ordering::Relaxed);
            }
            if list.is_empty() {
                entry.remove();
            }
        }
    }

    pub(super) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    pub(super) fn rechecks(&self) -> u64 {
        self.rechecks.load(Ordering::Relaxed)
    }

    pub(super) fn last_wake(&self) -> Option<Instant> {
        match self.last_wake.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.epoch + std::time::Duration::from_nanos(n - 1)),
        }
    }

    /// Hands a watched entry to the waiters of its key.
    pub(super) fn handle(&self, entry: &kv::Entry) {
        let update = Update {
            revision: entry.revision,
            value: match entry.operation {
                kv::Operation::Put => Some(entry.value.clone()),
                kv::Operation::Delete | kv::Operation::Purge => None,
            },
        };
        let map = self.map();
        let Some(slots) = map.get(&entry.key) else {
            return;
        };
        for slot in slots {
            slot.offer(&update);
            slot.notify.notify_one();
        }
        self.stamp();
    }

    /// Wakes every waiter to read its key again (entries may be lost).
    pub(super) fn wake_all(&self) {
        let map = self.map();
        if map.is_empty() {
            return;
        }
        self.rechecks.fetch_add(1, Ordering::Relaxed);
        for slot in map.values().flatten() {
            slot.recheck.store(true, Ordering::Release);
            slot.notify.notify_one();
        }
    }

    fn stamp(&self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last_wake.store(nanos + 1, Ordering::Relaxed);
    }
}

/// The running watch: a task reading the ordered consumer. Aborted on drop,
/// so it never outlives the store that owns it.
pub(super) struct Watcher {
    task: tokio::task::JoinHandle<()>,
    ended: Arc<AtomicBool>,
}

impl Watcher {
    /// Creates the watch over the whole bucket (new entries only) and starts
    /// its task. When this returns, the consumer exists and its delivery
    /// subject is subscribed: every later put reaches the waiters.
    pub(super) async fn start(
        bucket: &kv::Store,
        waiters: &Arc<Waiters>,
    ) -> Result<Self, kv::WatchError> {
        let mut watch = bucket.watch_all().await?;
        let ended = Arc::new(AtomicBool::new(false));
        let task = {
            let waiters = Arc::clone(waiters);
            let ended = Arc::clone(&ended);
            tokio::spawn(async move {
                while let Some(item) = watch.next().await {
                    match item {
                        Ok(entry) => waiters.handle(&entry),
                        Err(e) => {
                            // The stream may be dead (a dropped connection):
                            // async-nats panics if it is polled again. End
                            // this watch; the waiters woken below start a new
                            // one and read their keys.
                            tracing::warn!("NATS store watch: {e}; every waiter looks again");
                            break;
                        }
                    }
                }
                tracing::debug!("NATS store watch ended");
                ended.store(true, Ordering::Release);
                waiters.wake_all();
            })
        };
        Ok(Self { task, ended })
    }

    /// Whether the watch stopped (the connection was closed); the next
    /// waiter starts a new one.
    pub(super) fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire) || self.task.is_finished()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
