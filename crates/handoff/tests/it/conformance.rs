//! One behaviour suite for every `HandoffStore`: each test below runs
//! against `FsStore` and (feature `nats`) `NatsStore`, through the
//! [`Fixture`] trait and the `suite!` macro at the end.
//!
//! The NATS tests start their own `nats-server` (JetStream, a free loopback
//! port, a temp store directory; `orch_handoff::testing::NatsServer`). If
//! the binary is missing they print a notice and pass, except with `CI=true`,
//! where that is a failure.
//!
//! Waits run in real time; a deadline only bounds a failure, except where a
//! test is about the deadline (then it is short and the outcome does not
//! depend on how long anything took). The file-store specifics (symlinks,
//! `O_NOFOLLOW`, the inotify watcher count, polling) stay in `store.rs`.
#![allow(clippy::unwrap_used)]

use orch_handoff::prelude::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use orch_handoff::{
    FsStore, FsStoreConfig, HandoffError, HandoffKey, HandoffStore, LedgerEvent, LedgerEventKind,
    PutMode, RunId, Scope, Status, StoreError, WaitOutcome, WatchMode, WorkflowRecord,
};
use tokio::time::Instant;

use crate::common::{deadline, handoff, id, key, landed, ledger_event, tree, until};

// ---------------------------------------------------------------- fixtures

/// A store under test, plus what the suite needs to play the agent.
#[async_trait::async_trait]
trait Fixture: Send + Sync {
    /// The store the caller uses.
    fn store(&self) -> Arc<dyn HandoffStore>;
    /// Another process (or host) on the same store.
    async fn other(&self) -> Arc<dyn HandoffStore>;
    /// Subscriptions registered in the caller's store.
    fn active_waiters(&self) -> usize;
    /// How often the caller's waiters saw an incomplete value.
    fn incomplete_reads(&self) -> u64;
    /// Everything the store holds, as its backend sees it (for the file
    /// store every path on disk, temp files included): what a refused
    /// operation must leave as it was.
    async fn footprint(&self) -> Vec<String>;
    /// Writes an agent's answer the way agents do (a file renamed into
    /// place; a put from another connection).
    async fn agent_write(&self, key: &HandoffKey, bytes: &[u8]);
    /// The first part of an answer written in two steps.
    async fn write_start(&self, key: &HandoffKey, head: &[u8]);
    /// The second step: the file grows by the rest; the NATS value is
    /// replaced by the whole.
    async fn write_finish(&self, key: &HandoffKey, whole: &[u8], head_len: usize);
}

struct FsFixture {
    dir: tempfile::TempDir,
    store: FsStore,
}

impl FsFixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = FsStoreConfig::new(dir.path());
        config.watch = WatchMode::Inotify;
        let store = FsStore::open(config).unwrap();
        Self { dir, store }
    }

    fn rename_into_place(path: &Path, bytes: &[u8]) {
        let name = path.file_name().unwrap().to_str().unwrap();
        let tmp = path.with_file_name(format!(".{name}.agent-tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
}

#[async_trait::async_trait]
impl Fixture for FsFixture {
    fn store(&self) -> Arc<dyn HandoffStore> {
        Arc::new(self.store.clone())
    }
    async fn other(&self) -> Arc<dyn HandoffStore> {
        Arc::new(FsStore::open(FsStoreConfig::new(self.dir.path())).unwrap())
    }
    fn active_waiters(&self) -> usize {
        self.store.active_waiters()
    }
    fn incomplete_reads(&self) -> u64 {
        self.store.incomplete_reads()
    }
    async fn footprint(&self) -> Vec<String> {
        tree(self.dir.path())
            .into_iter()
            .map(|p| p.display().to_string())
            .collect()
    }
    async fn agent_write(&self, key: &HandoffKey, bytes: &[u8]) {
        Self::rename_into_place(&self.store.path_of(key), bytes);
    }
    async fn write_start(&self, key: &HandoffKey, head: &[u8]) {
        Self::rename_into_place(&self.store.path_of(key), head);
    }
    async fn write_finish(&self, key: &HandoffKey, whole: &[u8], head_len: usize) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.store.path_of(key))
            .unwrap();
        file.write_all(&whole[head_len..]).unwrap();
    }
}

#[cfg(feature = "nats")]
struct NatsFixture {
    // Dropped last: the stores disconnect before the server stops.
    store: orch_handoff::NatsStore,
    agent: orch_handoff::NatsStore,
    server: orch_handoff::testing::NatsServer,
}

#[cfg(feature = "nats")]
impl NatsFixture {
    async fn new() -> Option<Self> {
        let server = orch_handoff::testing::NatsServer::start()?;
        let store = nats_store(&server).await;
        let agent = nats_store(&server).await;
        Some(Self {
            store,
            agent,
            server,
        })
    }
}

#[cfg(feature = "nats")]
async fn nats_store(server: &orch_handoff::testing::NatsServer) -> orch_handoff::NatsStore {
    let config = orch_handoff::NatsStoreConfig::new(server.url());
    orch_handoff::NatsStore::connect(config).await.unwrap()
}

#[cfg(feature = "nats")]
#[async_trait::async_trait]
impl Fixture for NatsFixture {
    fn store(&self) -> Arc<dyn HandoffStore> {
        Arc::new(self.store.clone())
    }
    async fn other(&self) -> Arc<dyn HandoffStore> {
        Arc::new(nats_store(&self.server).await)
    }
    fn active_waiters(&self) -> usize {
        self.store.active_waiters()
    }
    fn incomplete_reads(&self) -> u64 {
        self.store.incomplete_reads()
    }
    async fn footprint(&self) -> Vec<String> {
        listing(&self.store).await
    }
    // An agent rewriting its file, as `rename` over it does on disk.
    async fn agent_write(&self, key: &HandoffKey, bytes: &[u8]) {
        self.agent
            .put_raw(key, bytes, PutMode::Replace)
            .await
            .unwrap();
    }
    async fn write_start(&self, key: &HandoffKey, head: &[u8]) {
        self.agent
            .put_raw(key, head, PutMode::Replace)
            .await
            .unwrap();
    }
    async fn write_finish(&self, key: &HandoffKey, whole: &[u8], _head_len: usize) {
        self.agent
            .put_raw(key, whole, PutMode::Replace)
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------- helpers

/// Starts `store.wait(key)` in a task and returns once it is registered.
async fn spawn_waiter(
    f: &dyn Fixture,
    key: &HandoffKey,
    deadline: Instant,
) -> tokio::task::JoinHandle<Result<WaitOutcome, StoreError>> {
    let before = f.active_waiters();
    let store = f.store();
    let k = key.clone();
    let task = tokio::spawn(async move { store.wait(&k, deadline).await });
    until("waiter registered", || f.active_waiters() > before).await;
    task
}

/// What the listings of a store show.
#[cfg(feature = "nats")]
async fn listing(store: &dyn HandoffStore) -> Vec<String> {
    let mut out = Vec::new();
    for scope in [Scope::Top, Scope::Sub] {
        for run in store.list(scope).await.unwrap() {
            out.push(format!("{scope:?} {run}"));
        }
    }
    for run in store.list_workflow_runs().await.unwrap() {
        for step in store.list_workflow_steps(&run).await.unwrap() {
            out.push(format!("workflow {run} step {step}"));
        }
        out.push(format!("workflow {run}"));
    }
    out
}

// ------------------------------------------------ waiting: when it lands

#[derive(Clone, Copy, Debug)]
enum When {
    BeforeSubscribe,
    BeforeWait,
    WhileWaiting,
}

async fn a_handoff_is_seen_whenever_it_lands(f: &dyn Fixture) {
    let store = f.store();
    for scope in [Scope::Top, Scope::Sub] {
        for when in [When::BeforeSubscribe, When::BeforeWait, When::WhileWaiting] {
            let run = format!("run-{scope:?}-{when:?}");
            let k = key(scope, &run);
            let bytes = handoff(&run).to_json_pretty();
            let got = match when {
                When::BeforeSubscribe => {
                    f.agent_write(&k, &bytes).await;
                    store.wait(&k, deadline()).await.unwrap()
                }
                When::BeforeWait => {
                    let mut sub = store.subscribe(&k).await.unwrap();
                    f.agent_write(&k, &bytes).await;
                    sub.wait(deadline()).await.unwrap()
                }
                When::WhileWaiting => {
                    let waiter = spawn_waiter(f, &k, deadline()).await;
                    f.agent_write(&k, &bytes).await;
                    waiter.await.unwrap().unwrap()
                }
            };
            let h = landed(got);
            assert_eq!(h.run_id, k.run_id, "{scope:?} {when:?}");
            assert_eq!(h.result, format!("result of {run}"));
            assert_eq!(f.active_waiters(), 0, "{scope:?} {when:?}");
        }
    }
}

async fn a_value_written_in_two_steps_is_not_reported_broken(f: &dyn Fixture) {
    let k = key(Scope::Top, "chunky");
    let bytes = handoff("chunky").to_json_pretty();
    let head = &bytes[..bytes.len() / 2];
    let waiter = spawn_waiter(f, &k, deadline()).await;
    f.write_start(&k, head).await;
    until("the waiter saw the incomplete value", || {
        f.incomplete_reads() >= 1
    })
    .await;
    assert!(!waiter.is_finished(), "gave up on a half-written handoff");
    f.write_finish(&k, &bytes, head.len()).await;
    let h = landed(waiter.await.unwrap().unwrap());
    assert_eq!(h.result, "result of chunky");
    assert_eq!(f.store().get(&k).await.unwrap(), Some(h));
}

/// A timeout (the agent may have died mid-write), not an invalid answer;
/// the outcome carries what the partial value looked like.
async fn a_value_still_cut_off_at_the_deadline_is_a_timeout(f: &dyn Fixture) {
    let k = key(Scope::Sub, "cut");
    let bytes = handoff("cut").to_json_pretty();
    f.agent_write(&k, &bytes[..bytes.len() / 2]).await;
    let start = Instant::now();
    let got = f
        .store()
        .wait(&k, start + Duration::from_millis(300))
        .await
        .unwrap();
    assert!(
        matches!(&got, WaitOutcome::TimedOutIncomplete(e) if e.is_incomplete()),
        "{got:?}"
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
}

async fn nothing_landing_times_out_at_the_deadline(f: &dyn Fixture) {
    let start = Instant::now();
    let got = f
        .store()
        .wait(
            &key(Scope::Top, "never"),
            start + Duration::from_millis(200),
        )
        .await
        .unwrap();
    assert_eq!(got, WaitOutcome::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(f.active_waiters(), 0);
}

async fn bad_values_end_the_wait_at_once(f: &dyn Fixture) {
    type Judge = fn(&HandoffError) -> bool;
    let cases: [(&str, Vec<u8>, Judge); 3] = [
        ("not JSON", b"this is not json\n".to_vec(), |e| {
            matches!(e, HandoffError::Syntax { .. })
        }),
        (
            "another run's handoff",
            handoff("other").to_json_pretty(),
            |e| matches!(e, HandoffError::Mismatch { field: "runId", .. }),
        ),
        ("schema 2", br#"{"schemaVersion":"2.0"}"#.to_vec(), |e| {
            !e.is_incomplete()
        }),
    ];
    for (n, (name, bytes, judge)) in cases.into_iter().enumerate() {
        for while_waiting in [false, true] {
            let k = key(Scope::Top, &format!("bad-{n}-{while_waiting}"));
            let got = if while_waiting {
                let waiter = spawn_waiter(f, &k, deadline()).await;
                f.agent_write(&k, &bytes).await;
                waiter.await.unwrap().unwrap()
            } else {
                f.agent_write(&k, &bytes).await;
                f.store().wait(&k, deadline()).await.unwrap()
            };
            assert!(
                matches!(&got, WaitOutcome::Invalid(e) if judge(e)),
                "{name} (while waiting: {while_waiting}): {got:?}"
            );
        }
    }
}

async fn oversized_handoffs_never_land(f: &dyn Fixture) {
    let store = f.store();
    let k = key(Scope::Top, "huge");
    let size = 5u64 << 20;
    let bytes = vec![b' '; 5 << 20];
    match store.put_raw(&k, &bytes, PutMode::Create).await {
        // Refused at the door (NATS: never sent).
        Err(StoreError::TooLarge { size: s, cap, .. }) => {
            assert_eq!((s, cap), (size, 4 << 20));
            assert_eq!(store.get(&k).await.unwrap(), None);
        }
        // Stored (a file), then refused by every reader without reading it.
        Ok(()) => {
            let err = store.get(&k).await.unwrap_err();
            assert!(
                matches!(err, StoreError::TooLarge { size: s, .. } if s == size),
                "{err:?}"
            );
            let got = store.wait(&k, deadline()).await.unwrap();
            assert!(
                matches!(got, WaitOutcome::Invalid(HandoffError::TooLarge { size: s, .. }) if s == size),
                "{got:?}"
            );
        }
        Err(e) => panic!("{e:?}"),
    }
    // A valid handoff whose result is over the cap is refused by `put`.
    let mut big = handoff("big");
    big.result = "x".repeat(5 << 20);
    let err = store
        .put(Scope::Top, &big, PutMode::Create)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid {
                source: HandoffError::TooLarge { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.get(&key(Scope::Top, "big")).await.unwrap(), None);
}

async fn get_reports_what_is_wrong(f: &dyn Fixture) {
    let store = f.store();
    let k = key(Scope::Top, "g");
    assert_eq!(store.get(&k).await.unwrap(), None);
    f.agent_write(&k, b"{\"schemaVersion\": ").await;
    let err = store.get(&k).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid { source, .. } if source.is_incomplete()),
        "{err:?}"
    );
    assert!(err.to_string().contains('g'), "{err}");
    f.agent_write(&k, b"not json").await;
    assert!(matches!(
        store.get(&k).await,
        Err(StoreError::Invalid {
            source: HandoffError::Syntax { .. },
            ..
        })
    ));
    f.agent_write(&k, &handoff("g").to_json_pretty()).await;
    assert_eq!(store.get(&k).await.unwrap().unwrap().result, "result of g");
}

async fn put_validates_and_keeps_scopes_apart(f: &dyn Fixture) {
    let store = f.store();
    let mut h = handoff("p");
    h.schema_version = "2.0".into();
    let err = store
        .put(Scope::Sub, &h, PutMode::Create)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert_eq!(store.get(&key(Scope::Sub, "p")).await.unwrap(), None);

    let h = handoff("p");
    store.put(Scope::Sub, &h, PutMode::Create).await.unwrap();
    // Create never replaces, and says what is there; Replace does.
    let mut second = handoff("p");
    second.agent = "auditor".into();
    second.status = Status::Partial;
    let err = store
        .put(Scope::Sub, &second, PutMode::Create)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::AlreadyExists { existing, location }
                if existing.agent.as_deref() == Some("webster")
                    && existing.status == Some(Status::Complete)
                    && *location == store.location(&key(Scope::Sub, "p"))
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("a complete handoff by webster"),
        "{err}"
    );
    assert_eq!(
        store.get(&key(Scope::Sub, "p")).await.unwrap(),
        Some(h.clone())
    );
    store
        .put(Scope::Sub, &second, PutMode::Replace)
        .await
        .unwrap();
    assert_eq!(
        store.get(&key(Scope::Sub, "p")).await.unwrap(),
        Some(second)
    );
    store.put(Scope::Sub, &h, PutMode::Replace).await.unwrap();
    assert_eq!(
        store.get(&key(Scope::Sub, "p")).await.unwrap(),
        Some(h.clone())
    );
    assert_eq!(store.get(&key(Scope::Top, "p")).await.unwrap(), None);
    // Another process sees it.
    let other = f.other().await;
    assert_eq!(other.get(&key(Scope::Sub, "p")).await.unwrap(), Some(h));
    store
        .put_raw(&key(Scope::Top, "raw"), b"garbage", PutMode::Create)
        .await
        .unwrap();
    assert!(matches!(
        other.get(&key(Scope::Top, "raw")).await,
        Err(StoreError::Invalid { .. })
    ));
    // What is there may be no handoff at all; Create still refuses.
    let err = store
        .put(Scope::Top, &handoff("raw"), PutMode::Create)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { existing, .. } if !existing.is_valid()),
        "{err:?}"
    );
    let location = store.location(&key(Scope::Sub, "p"));
    assert!(location.contains('p'), "{location}");
    assert_ne!(location, store.location(&key(Scope::Top, "p")));
}

async fn quarantine_then_a_fresh_answer_lands_on_the_same_subscription(f: &dyn Fixture) {
    let store = f.store();
    let k = key(Scope::Top, "q");
    assert_eq!(store.quarantine(&k).await.unwrap(), None);

    let mut sub = store.subscribe(&k).await.unwrap();
    f.agent_write(&k, b"{ broken").await;
    f.agent_write(&k, b"not json").await;
    let got = sub.wait(deadline()).await.unwrap();
    assert!(matches!(got, WaitOutcome::Invalid(_)), "{got:?}");

    let first = store.quarantine(&k).await.unwrap().unwrap();
    assert_eq!(store.get(&k).await.unwrap(), None);
    assert_eq!(store.list(Scope::Top).await.unwrap(), Vec::<RunId>::new());

    // The re-asked agent answers while the same subscription waits.
    let writer = {
        let bytes = handoff("q").to_json_pretty();
        let k = k.clone();
        async move {
            until("waiter parked", || f.active_waiters() == 1).await;
            f.agent_write(&k, &bytes).await;
        }
    };
    let (got, ()) = tokio::join!(sub.wait(deadline()), writer);
    assert_eq!(landed(got.unwrap()).result, "result of q");
    drop(sub);

    let second = store.quarantine(&k).await.unwrap().unwrap();
    assert_ne!(first, second);
    assert!(
        first.ends_with('1') && second.ends_with('2'),
        "{first} {second}"
    );
    assert_eq!(store.list(Scope::Top).await.unwrap(), Vec::<RunId>::new());
    assert_eq!(f.active_waiters(), 0);
}

async fn five_hundred_waiters_each_get_their_own(f: &dyn Fixture) {
    const N: usize = 500;
    let store = f.store();
    let scope_of = |i: usize| {
        if i.is_multiple_of(2) {
            Scope::Top
        } else {
            Scope::Sub
        }
    };
    let mut tasks = Vec::with_capacity(N);
    for i in 0..N {
        let store = Arc::clone(&store);
        let k = key(scope_of(i), &format!("orch-many-{i:04}.x"));
        tasks.push(tokio::spawn(async move {
            let got = store.wait(&k, deadline()).await;
            (k, got)
        }));
    }
    until("all subscribed", || f.active_waiters() == N).await;
    // Half through another handle's `put`, half as agents write them.
    let other = f.other().await;
    for i in 0..N {
        let k = key(scope_of(i), &format!("orch-many-{i:04}.x"));
        let h = handoff(k.run_id.as_str());
        if i.is_multiple_of(2) {
            other.put(k.scope, &h, PutMode::Create).await.unwrap();
        } else {
            f.agent_write(&k, &h.to_json_pretty()).await;
        }
    }
    for task in tasks {
        let (k, got) = task.await.unwrap();
        let h = landed(got.unwrap());
        assert_eq!(h.run_id, k.run_id);
        assert_eq!(h.result, format!("result of {}", k.run_id));
    }
    assert_eq!(f.active_waiters(), 0);
}

async fn hostile_ids_are_refused_before_any_key_and_odd_valid_ids_work(f: &dyn Fixture) {
    let store = f.store();
    let run = id("wf-ok");
    store
        .put_workflow_record(&run, &WorkflowRecord::Summary, &serde_json::json!({}))
        .await
        .unwrap();
    let before = f.footprint().await;
    let long = "x".repeat(200);
    for bad in [
        "../x",
        "a/b",
        "",
        long.as_str(),
        "..",
        "/etc/passwd",
        ".hidden",
        "a*b",
        "a>b",
        "a b",
    ] {
        assert!(RunId::new(bad).is_err(), "run id {bad:?} accepted");
        let record = WorkflowRecord::Step(bad.to_owned());
        let err = store
            .put_workflow_record(&run, &record, &serde_json::json!({"x": 1}))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidId { .. }),
            "{bad:?}: {err:?}"
        );
        let err = store.get_workflow_record(&run, &record).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidId { .. }),
            "{bad:?}: {err:?}"
        );
    }
    for reserved in ["summary", "SUMMARY"] {
        let err = store
            .put_workflow_record(
                &run,
                &WorkflowRecord::Step(reserved.into()),
                &serde_json::json!({}),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::ReservedId { .. }), "{err:?}");
    }
    assert_eq!(f.footprint().await, before, "nothing written");

    // Valid ids that are awkward for a key-value store: dots anywhere.
    for odd in ["a..b", "x.", "wf-1.step.2", "A_b-C"] {
        for scope in [Scope::Top, Scope::Sub] {
            let k = key(scope, odd);
            store
                .put(scope, &handoff(odd), PutMode::Create)
                .await
                .unwrap();
            assert_eq!(store.get(&k).await.unwrap().unwrap().run_id, k.run_id);
            assert_eq!(
                landed(store.wait(&k, deadline()).await.unwrap()).run_id,
                k.run_id
            );
            assert!(
                store.list(scope).await.unwrap().contains(&k.run_id),
                "{odd}"
            );
        }
        let wf = id(&format!("wf.{odd}"));
        let step = WorkflowRecord::Step(format!("{odd}.s"));
        store
            .put_workflow_record(&wf, &step, &serde_json::json!({"odd": odd}))
            .await
            .unwrap();
        assert_eq!(
            store.get_workflow_record(&wf, &step).await.unwrap(),
            Some(serde_json::json!({"odd": odd}))
        );
        assert_eq!(
            store.list_workflow_steps(&wf).await.unwrap(),
            [format!("{odd}.s")]
        );
        assert!(store.list_workflow_runs().await.unwrap().contains(&wf));
    }
}

async fn list_returns_handoff_ids_sorted(f: &dyn Fixture) {
    let store = f.store();
    assert_eq!(store.list(Scope::Top).await.unwrap(), Vec::<RunId>::new());
    for run in ["c", "a", "b.1", "b"] {
        store
            .put(Scope::Top, &handoff(run), PutMode::Create)
            .await
            .unwrap();
    }
    store
        .put(Scope::Sub, &handoff("s"), PutMode::Create)
        .await
        .unwrap();
    f.agent_write(&key(Scope::Top, "z"), b"broken").await;
    store
        .quarantine(&key(Scope::Top, "z"))
        .await
        .unwrap()
        .unwrap();
    store
        .put_workflow_record(&id("wf"), &WorkflowRecord::Summary, &serde_json::json!({}))
        .await
        .unwrap();
    let top: Vec<String> = store
        .list(Scope::Top)
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(top, ["a", "b", "b.1", "c"]);
    assert_eq!(store.list(Scope::Sub).await.unwrap(), [id("s")]);
    // An invalid handoff is still a handoff that is there.
    f.agent_write(&key(Scope::Sub, "t"), b"broken").await;
    assert_eq!(store.list(Scope::Sub).await.unwrap(), [id("s"), id("t")]);
    let mut unordered = store.list_unordered(Scope::Top).await.unwrap();
    unordered.sort();
    assert_eq!(unordered, store.list(Scope::Top).await.unwrap());
}

async fn workflow_records_round_trip(f: &dyn Fixture) {
    let store = f.store();
    let run = id("wf-demo-20261123T224500Z-3f9a1c2b");
    assert_eq!(store.list_workflow_runs().await.unwrap(), []);
    assert_eq!(
        store.list_workflow_steps(&run).await.unwrap(),
        Vec::<String>::new()
    );
    let summary = WorkflowRecord::Summary;
    assert_eq!(
        store.get_workflow_record(&run, &summary).await.unwrap(),
        None
    );

    let step = serde_json::json!({"handoff": {"runId": "x"}, "attempts": 2, "ms": [1, 2]});
    let sum = serde_json::json!({"status": "complete", "steps": {"fetch": "ok"}});
    for s in ["fetch", "analyse", "Summary-2"] {
        store
            .put_workflow_record(&run, &WorkflowRecord::Step(s.into()), &step)
            .await
            .unwrap();
    }
    store
        .put_workflow_record(&run, &summary, &sum)
        .await
        .unwrap();
    store
        .put_workflow_record(&run, &summary, &sum)
        .await
        .unwrap();
    // Records up to four times the handoff cap are fine (a step record
    // embeds a handoff).
    let big = serde_json::json!({"result": "x".repeat(6 << 20)});
    store
        .put_workflow_record(&run, &WorkflowRecord::Step("big".into()), &big)
        .await
        .unwrap();
    // One the store could not read back is refused, and leaves nothing
    // behind (no run without a readable summary).
    let cap = store.max_record_bytes();
    let huge = serde_json::json!({"result": "x".repeat(usize::try_from(cap).unwrap())});
    let fresh = id("wf-huge");
    let err = store
        .put_workflow_record(&fresh, &summary, &huge)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::TooLarge { size, cap: c, .. } if size > cap && c == cap),
        "{err}"
    );
    let other = f.other().await;
    assert_eq!(
        other
            .get_workflow_record(&run, &WorkflowRecord::Step("fetch".into()))
            .await
            .unwrap(),
        Some(step)
    );
    assert_eq!(
        other
            .get_workflow_record(&run, &WorkflowRecord::Step("big".into()))
            .await
            .unwrap(),
        Some(big)
    );
    assert_eq!(
        other.get_workflow_record(&run, &summary).await.unwrap(),
        Some(sum)
    );
    assert_eq!(
        other.list_workflow_steps(&run).await.unwrap(),
        ["Summary-2", "analyse", "big", "fetch"]
    );
    assert_eq!(
        other.list_workflow_runs().await.unwrap(),
        std::slice::from_ref(&run)
    );
    // Workflow records are not handoffs.
    assert_eq!(other.list(Scope::Top).await.unwrap(), Vec::<RunId>::new());
}

async fn ledger_appends_from_many_tasks_and_two_handles_land_whole(f: &dyn Fixture) {
    const TASKS: usize = 8;
    const EACH: usize = 100;
    let store = f.store();
    assert_eq!(store.read_ledger().await.unwrap(), Default::default());
    assert!(store.read_ledger_raw().await.unwrap().is_empty());
    let other = f.other().await;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = if t.is_multiple_of(2) {
            Arc::clone(&store)
        } else {
            Arc::clone(&other)
        };
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                store
                    .append_ledger(&ledger_event(&format!("task{t}"), n))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let read = store.read_ledger().await.unwrap();
    assert_eq!(read.bad_lines, []);
    assert_eq!(read.events.len(), TASKS * EACH);
    for t in 0..TASKS {
        let writer = format!("task{t}");
        // Each writer's events are whole and in its order.
        let mine: Vec<usize> = read
            .events
            .iter()
            .filter_map(|e| {
                let d = e.detail.as_deref()?;
                let (w, rest) = d.split_once(':')?;
                assert_eq!(rest.len(), rest.split_once(':')?.0.len() + 1 + 300);
                (w == writer).then(|| rest.split_once(':').unwrap().0.parse().unwrap())
            })
            .collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>(), "{writer}");
    }
    // The raw ledger holds the same events, one line each.
    let raw = other.read_ledger_raw().await.unwrap();
    let events: Vec<LedgerEvent> = raw
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(events, read.events);
    assert!(raw.ends_with(b"\n"));
}

async fn a_subscription_sees_only_its_own_key(f: &dyn Fixture) {
    let store = f.store();
    let mine = key(Scope::Top, "mine");
    let mut sub = store.subscribe(&mine).await.unwrap();
    // Neighbours, the other scope, a prefix of the id: none of them is it.
    for (scope, run) in [
        (Scope::Sub, "mine"),
        (Scope::Top, "mine.1"),
        (Scope::Top, "min"),
    ] {
        f.agent_write(&key(scope, run), &handoff(run).to_json_pretty())
            .await;
    }
    let got = sub
        .wait(Instant::now() + Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(got, WaitOutcome::TimedOut);
    f.agent_write(&mine, &handoff("mine").to_json_pretty())
        .await;
    assert_eq!(
        landed(sub.wait(deadline()).await.unwrap()).run_id,
        mine.run_id
    );
    let seen: BTreeSet<RunId> = store.list(Scope::Top).await.unwrap().into_iter().collect();
    assert_eq!(seen, [id("min"), id("mine"), id("mine.1")].into());
}

/// Twenty agents answer one run at once, each through its own connection
/// (or process): exactly one answer is stored, every other put is told who
/// answered first. Then a quarantined key is free again.
async fn racing_creates_have_exactly_one_winner(f: &dyn Fixture) {
    const N: usize = 20;
    let k = key(Scope::Top, "race");
    let mut stores = Vec::with_capacity(N);
    for _ in 0..N {
        stores.push(f.other().await);
    }
    let start = Arc::new(tokio::sync::Barrier::new(N));
    let mut tasks = Vec::with_capacity(N);
    for (i, store) in stores.into_iter().enumerate() {
        let start = Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            let mut h = handoff("race");
            h.result = format!("answer {i}");
            start.wait().await;
            store.put(Scope::Top, &h, PutMode::Create).await
        }));
    }
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(()) => winners.push(i),
            Err(StoreError::AlreadyExists { existing, .. }) => {
                assert_eq!(existing.agent.as_deref(), Some("webster"));
                assert_eq!(existing.status, Some(Status::Complete));
            }
            Err(e) => panic!("{i}: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = f.store().get(&k).await.unwrap().unwrap();
    assert_eq!(stored.result, format!("answer {}", winners[0]));
    // An answer moved aside frees the key for the re-asked agent.
    f.store().quarantine(&k).await.unwrap().unwrap();
    f.store()
        .put(Scope::Top, &handoff("race"), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(
        f.store().get(&k).await.unwrap().unwrap().result,
        "result of race"
    );
}

/// `dispatched` finds the newest `dispatched` line of a run, not lines that
/// merely mention it (a parent, a validation), nor any other event.
async fn dispatched_finds_the_runs_newest_dispatched_line(f: &dyn Fixture) {
    let store = f.store();
    assert_eq!(store.dispatched(&id("a")).await.unwrap(), None);
    let line = |kind, run: &str, parent: Option<&str>, attempt| {
        let mut e = LedgerEvent::now(kind);
        e.run_id = Some(id(run));
        e.agent = Some("webster".into());
        e.parent = parent.map(id);
        e.attempt = Some(attempt);
        e
    };
    let events = [
        line(LedgerEventKind::Dispatched, "a", None, 1),
        line(LedgerEventKind::Acked, "a", None, 1),
        line(LedgerEventKind::Dispatched, "b", Some("a"), 1),
        line(LedgerEventKind::Handoff, "c", Some("a"), 1),
        line(LedgerEventKind::Dispatched, "a", None, 2),
        line(LedgerEventKind::Handoff, "a", None, 2),
    ];
    for e in &events {
        store.append_ledger(e).await.unwrap();
    }
    let other = f.other().await;
    assert_eq!(
        other.dispatched(&id("a")).await.unwrap(),
        Some(events[4].clone())
    );
    assert_eq!(
        other.dispatched(&id("b")).await.unwrap(),
        Some(events[2].clone())
    );
    // `c` only has a handoff line, `a.b` and `x` none at all.
    for none in ["c", "a.b", "x"] {
        assert_eq!(other.dispatched(&id(none)).await.unwrap(), None, "{none}");
    }
}

// ------------------------------------------------------------------ suite

/// Instantiates every test for each store.
macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod fs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::FsFixture::new()).await;
                }
            )*
        }

        #[cfg(feature = "nats")]
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(fixture) = super::NatsFixture::new().await else {
                        return;
                    };
                    super::$test(&fixture).await;
                }
            )*
        }
    };
}

suite!(
    a_handoff_is_seen_whenever_it_lands,
    a_value_written_in_two_steps_is_not_reported_broken,
    a_value_still_cut_off_at_the_deadline_is_a_timeout,
    nothing_landing_times_out_at_the_deadline,
    bad_values_end_the_wait_at_once,
    oversized_handoffs_never_land,
    get_reports_what_is_wrong,
    put_validates_and_keeps_scopes_apart,
    quarantine_then_a_fresh_answer_lands_on_the_same_subscription,
    five_hundred_waiters_each_get_their_own,
    hostile_ids_are_refused_before_any_key_and_odd_valid_ids_work,
    list_returns_handoff_ids_sorted,
    workflow_records_round_trip,
    ledger_appends_from_many_tasks_and_two_handles_land_whole,
    a_subscription_sees_only_its_own_key,
    racing_creates_have_exactly_one_winner,
    dispatched_finds_the_runs_newest_dispatched_line,
);
