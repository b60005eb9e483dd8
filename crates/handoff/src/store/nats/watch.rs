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
//! (`Store::watch_all`, delivering new entries *with* their values), kept
//! alive by a supervisor task the store owns ([`Watcher`]). Each entry goes
//! to the slots of its key: a put as its bytes, a delete or purge as
//! "absent" (so a delete never wakes a waiter with garbage), and only if
//! its revision is newer than what the slot holds. Waiters judge the value
//! the watch delivered; they do not read the key again, so a lagging
//! replica answering a read cannot hide an update the watch already showed.
//!
//! # Healing
//!
//! A watch can go blind in a failover: the node holding its consumer dies
//! (a missed idle heartbeat, ~10 s later), the stream gets a new leader,
//! the connection drops. The supervisor ends the watch on any of these (an
//! error from the watch, a `LEADER_ELECTED` or `QUORUM_LOST` advisory of
//! the bucket's stream, a disconnect or reconnect event) and creates a new
//! one from the revision after the last it delivered, so nothing is
//! skipped, trying again with capped backoff until it succeeds. While it is
//! not healthy ([`Waiters::healthy`] false), every waiter reads its key
//! every [`POLL_INTERVAL`] (the polling fallback, as the file store has);
//! once it is back, every waiter reads its key once more.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::Notify;

use super::retry::Backoff;

/// How often a waiter reads its key while the watch is not healthy.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(500);

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
    /// Whether the watch is running and delivering; false before the first
    /// and between a failure and its replacement.
    healthy: AtomicBool,
    /// Tells the supervisor to replace the watch (a reconnect).
    reset: Notify,
}

impl Waiters {
    pub(super) fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            rechecks: AtomicU64::new(0),
            epoch: Instant::now(),
            last_wake: AtomicU64::new(0),
            healthy: AtomicBool::new(false),
            reset: Notify::new(),
        }
    }

    /// Whether the watch delivers; when not, waiters poll.
    pub(super) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Release);
    }

    /// The connection dropped or came back: the watch may have missed
    /// entries. Waiters poll until the supervisor has replaced it.
    pub(super) fn reset_watch(&self) {
        self.set_healthy(false);
        self.reset.notify_one();
        self.wake_all();
    }

    /// The connection is back: a watch that looks healthy may have missed
    /// entries while it was away (replace it); one being replaced already
    /// needs nothing more. Every waiter looks again either way.
    pub(super) fn reconnected(&self) {
        if self.healthy() {
            self.reset_watch();
        } else {
            self.wake_all();
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

/// How the watch is doing, as the supervisor reports it.
#[derive(Clone, Debug)]
enum Health {
    /// Not created yet, or being replaced.
    Starting,
    /// Created and subscribed: every later put reaches the waiters.
    Healthy,
    /// The last try to create it failed with this.
    Failing(String),
}

/// The supervisor of the watch: a task that creates the ordered consumer,
/// reads it, and replaces it whenever it may have gone blind (see the
/// module docs). Aborted on drop, so it never outlives the store.
pub(super) struct Watcher {
    task: tokio::task::JoinHandle<()>,
    health: tokio::sync::watch::Receiver<Health>,
    /// Whether it was ever healthy.
    started: AtomicBool,
}

/// What the supervisor needs.
pub(super) struct WatchDeps {
    pub(super) bucket: kv::Store,
    pub(super) client: async_nats::Client,
    pub(super) waiters: Arc<Waiters>,
    pub(super) max_delay: Duration,
    /// Counts the consumers created.
    pub(super) created: Arc<AtomicUsize>,
}

impl Watcher {
    /// Starts the supervisor; [`Watcher::ready`] waits for the first watch.
    pub(super) fn spawn(deps: WatchDeps) -> Self {
        let (tx, health) = tokio::sync::watch::channel(Health::Starting);
        let task = tokio::spawn(async move {
            // A panic inside async-nats (or here) must not leave the waiters
            // blind for good: start over, as after any watch failure.
            loop {
                let run = std::panic::AssertUnwindSafe(supervise(&deps, &tx))
                    .catch_unwind()
                    .await;
                if run.is_ok() {
                    break;
                }
                tracing::error!("NATS store watch: panicked; starting a new one");
                deps.waiters.set_healthy(false);
                deps.waiters.wake_all();
                tokio::time::sleep(deps.max_delay).await;
            }
        });
        Self {
            task,
            health,
            started: AtomicBool::new(false),
        }
    }

    /// Waits until the watch has been healthy once (then every later put
    /// reaches the waiters, or they poll), up to `deadline`. `Err` with
    /// the last failure if it was not by then.
    pub(super) async fn ready(&self, deadline: tokio::time::Instant) -> Result<(), String> {
        if self.started.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut health = self.health.clone();
        let waited =
            tokio::time::timeout_at(deadline, health.wait_for(|h| matches!(h, Health::Healthy)))
                .await;
        match waited {
            Ok(Ok(_)) => {
                self.started.store(true, Ordering::Release);
                Ok(())
            }
            Ok(Err(_)) => Err("the watch task ended".to_owned()),
            Err(_) => Err(match &*self.health.borrow() {
                Health::Failing(e) => e.clone(),
                _ => "timed out creating the watch".to_owned(),
            }),
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The advisories that mean the bucket's stream changed leader (its
/// consumers may be gone): `$JS.EVENT.ADVISORY.STREAM.<kind>.KV_<bucket>`.
async fn advisories(
    client: &async_nats::Client,
    bucket: &str,
) -> BoxStream<'static, async_nats::Message> {
    let subject = format!("$JS.EVENT.ADVISORY.STREAM.*.KV_{bucket}");
    match client.subscribe(subject).await {
        Ok(subscriber) => subscriber.boxed(),
        Err(e) => {
            tracing::debug!("NATS store watch: no leader advisories: {e}");
            futures_util::stream::pending().boxed()
        }
    }
}

/// Keeps a watch running (see the module docs).
async fn supervise(deps: &WatchDeps, health: &tokio::sync::watch::Sender<Health>) {
    let WatchDeps {
        bucket,
        client,
        waiters,
        max_delay,
        created,
    } = deps;
    let max_delay = *max_delay;
    let mut advisories = advisories(client, &bucket.name).await;
    // The revision after the last one delivered; `None` before any.
    let mut next: Option<u64> = None;
    let mut backoff = Backoff::new(max_delay);
    let mut failing_since: Option<Instant> = None;
    let mut first = true;
    loop {
        let create = async {
            match next {
                Some(revision) => bucket.watch_all_from_revision(revision).await,
                None => bucket.watch_all().await,
            }
        };
        let attempt = tokio::time::timeout(super::CONSUMER_TIMEOUT, create).await;
        // async-nats creates the consumer, then queues the SUB of its
        // delivery subject without waiting for the server: a put from
        // another connection in between went to a subject nobody had
        // subscribed yet. A flush (PING/PONG) returns once the server has
        // processed the SUB.
        let attempt = match attempt {
            Err(_) => Err("timed out creating the watch's consumer".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(watch)) => client
                .flush()
                .await
                .map(|()| watch)
                .map_err(|e| e.to_string()),
        };
        let mut watch = match attempt {
            Ok(watch) => watch,
            Err(e) => {
                let now = Instant::now();
                if failing_since.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(5)) {
                    tracing::warn!(
                        "NATS store watch: cannot create it on bucket {}: {e}; trying again (waiters read their keys every {} ms meanwhile)",
                        bucket.name,
                        POLL_INTERVAL.as_millis()
                    );
                    failing_since = Some(now);
                }
                health.send_replace(Health::Failing(e));
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        created.fetch_add(1, Ordering::Relaxed);
        backoff = Backoff::new(max_delay);
        // A watch that could not be created for a while was warned about;
        // one replaced at once (an ordered consumer reset under load, a
        // leader election) loses nothing and is only logged.
        if failing_since.take().is_some() {
            tracing::warn!(
                "NATS store watch: running again on bucket {}{}",
                bucket.name,
                next.map(|r| format!(" from revision {r}"))
                    .unwrap_or_default()
            );
        } else if !first {
            tracing::info!(
                "NATS store watch: running again on bucket {}{}",
                bucket.name,
                next.map(|r| format!(" from revision {r}"))
                    .unwrap_or_default()
            );
        }
        waiters.set_healthy(true);
        health.send_replace(Health::Healthy);
        if !first {
            // Whatever was missed while blind: every waiter looks once.
            waiters.wake_all();
        }
        first = false;
        let reason = loop {
            tokio::select! {
                item = watch.next() => match item {
                    Some(Ok(entry)) => {
                        next = Some(entry.revision + 1);
                        waiters.handle(&entry);
                    }
                    // Do not poll a failed watch again: replace it.
                    Some(Err(e)) => break e.to_string(),
                    None => break "the watch ended".to_owned(),
                },
                () = waiters.reset.notified() => break "the connection dropped or came back".to_owned(),
                Some(advisory) = advisories.next() => {
                    let kind = advisory.subject.split('.').nth(4).unwrap_or_default();
                    if kind == "LEADER_ELECTED" || kind == "QUORUM_LOST" {
                        break format!("stream KV_{} reported {kind}", bucket.name);
                    }
                }
            }
        };
        waiters.set_healthy(false);
        health.send_replace(Health::Starting);
        waiters.wake_all();
        tracing::info!(
            "NATS store watch: {reason}; recreating it (waiters read their keys every {} ms meanwhile)",
            POLL_INTERVAL.as_millis()
        );
        drop(watch);
    }
}
