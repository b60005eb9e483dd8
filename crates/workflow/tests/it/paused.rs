//! Scheduling in paused (virtual) time: the executor over an in-memory
//! store and a fake transport whose agents take whole seconds of virtual
//! time, so makespans and start times are exact.
//!
//! The in-memory store wakes waiters through a `watch` channel on `put`, so
//! no wake-up ever depends on real I/O: when every task is idle, tokio's
//! auto-advance jumps to the next agent's finishing time, never to a wait's
//! deadline ahead of a handoff that is already written.
//!
//! Task markers read by the fake: `[id=X]` (the step) and `[d=SECS]` (the
//! agent's virtual working time, default 1).

use orch_delegate::orch_handoff::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orch_delegate::orch_acl::Policy;
use orch_delegate::orch_handoff::{
    Confidence, DEFAULT_MAX_HANDOFF_BYTES, Existing, Expect, Handoff, HandoffError, HandoffKey,
    HandoffStore, LedgerEvent, LedgerRead, PutMode, RunId, Scope, Status, StoreError, Subscription,
    WaitOutcome, WorkflowRecord, parse_handoff_capped,
};
use orch_delegate::{Ack, Envelope, Transport, TransportError};
use orch_workflow::{Executor, RunOptions, RunStatus, RunSummary, StepStatus, check_run, load};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::AGENTS;

// ---------------------------------------------------------------------------
// The in-memory store.

struct MemStore {
    handoffs: Mutex<HashMap<HandoffKey, Vec<u8>>>,
    records: Mutex<BTreeMap<(RunId, Option<String>), serde_json::Value>>,
    ledger: Mutex<Vec<LedgerEvent>>,
    /// Bumped on every handoff write; subscriptions watch it.
    version: watch::Sender<u64>,
}

impl MemStore {
    fn new() -> Self {
        Self {
            handoffs: Mutex::new(HashMap::new()),
            records: Mutex::new(BTreeMap::new()),
            ledger: Mutex::new(Vec::new()),
            version: watch::Sender::new(0),
        }
    }

    fn write(&self, key: &HandoffKey, bytes: Vec<u8>) {
        self.handoffs.lock().unwrap().insert(key.clone(), bytes);
        self.version.send_modify(|v| *v += 1);
    }

    /// A put of the store seam: `Create` refuses a key that is taken.
    fn put(&self, key: &HandoffKey, bytes: Vec<u8>, mode: PutMode) -> Result<(), StoreError> {
        {
            let mut handoffs = self.handoffs.lock().unwrap();
            if mode == PutMode::Create && handoffs.contains_key(key) {
                return Err(StoreError::AlreadyExists {
                    location: format!("/mem/{:?}/{}.json", key.scope, key.run_id),
                    existing: Existing::unreadable(),
                });
            }
            handoffs.insert(key.clone(), bytes);
        }
        self.version.send_modify(|v| *v += 1);
        Ok(())
    }

    fn check(&self, key: &HandoffKey) -> Option<Result<Handoff, HandoffError>> {
        let bytes = self.handoffs.lock().unwrap().get(key).cloned()?;
        let expect = Expect {
            run_id: Some(&key.run_id),
            agent: None,
        };
        Some(parse_handoff_capped(
            &bytes,
            &expect,
            DEFAULT_MAX_HANDOFF_BYTES,
        ))
    }
}

fn record_key(run: &RunId, record: &WorkflowRecord) -> (RunId, Option<String>) {
    match record {
        WorkflowRecord::Step(step) => (run.clone(), Some(step.clone())),
        WorkflowRecord::Summary => (run.clone(), None),
    }
}

struct MemSubscription {
    key: HandoffKey,
    store: Arc<MemStore>,
    rx: watch::Receiver<u64>,
}

#[async_trait]
impl Subscription for MemSubscription {
    fn key(&self) -> &HandoffKey {
        &self.key
    }

    async fn wait(&mut self, deadline: Instant) -> Result<WaitOutcome, StoreError> {
        loop {
            // Mark the current version seen before looking, so a put after
            // the look wakes `changed`.
            self.rx.borrow_and_update();
            match self.store.check(&self.key) {
                Some(Ok(h)) => return Ok(WaitOutcome::Landed(h)),
                Some(Err(e)) => return Ok(WaitOutcome::Invalid(e)),
                None => {}
            }
            match tokio::time::timeout_at(deadline, self.rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Ok(WaitOutcome::TimedOut),
            }
        }
    }
}

/// The store seam over a shared [`MemStore`].
struct Mem(Arc<MemStore>);

#[async_trait]
impl Handoffs for Mem {
    fn describe(&self) -> String {
        "in-memory test store".into()
    }
    fn location(&self, key: &HandoffKey) -> String {
        format!("/mem/{:?}/{}.json", key.scope, key.run_id)
    }
    async fn put(&self, scope: Scope, handoff: &Handoff, mode: PutMode) -> Result<(), StoreError> {
        let key = HandoffKey {
            scope,
            run_id: handoff.run_id.clone(),
        };
        self.0.put(&key, handoff.to_json_pretty(), mode)
    }
    async fn put_raw(
        &self,
        key: &HandoffKey,
        bytes: &[u8],
        mode: PutMode,
    ) -> Result<(), StoreError> {
        self.0.put(key, bytes.to_vec(), mode)
    }
    async fn get(&self, key: &HandoffKey) -> Result<Option<Handoff>, StoreError> {
        match self.0.check(key) {
            None => Ok(None),
            Some(Ok(h)) => Ok(Some(h)),
            Some(Err(source)) => Err(StoreError::Invalid {
                path: self.location(key).into(),
                source,
            }),
        }
    }
    async fn subscribe(&self, key: &HandoffKey) -> Result<Box<dyn Subscription>, StoreError> {
        Ok(Box::new(MemSubscription {
            key: key.clone(),
            store: Arc::clone(&self.0),
            rx: self.0.version.subscribe(),
        }))
    }
    async fn quarantine(&self, key: &HandoffKey) -> Result<Option<String>, StoreError> {
        let gone = self.0.handoffs.lock().unwrap().remove(key);
        Ok(gone.map(|_| format!("{}.rejected", self.location(key))))
    }
    async fn list(&self, scope: Scope) -> Result<Vec<RunId>, StoreError> {
        let mut ids: Vec<RunId> = self
            .0
            .handoffs
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.scope == scope)
            .map(|k| k.run_id.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

#[async_trait]
impl WorkflowRecords for Mem {
    async fn put_workflow_record(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.0
            .records
            .lock()
            .unwrap()
            .insert(record_key(run, record), value.clone());
        Ok(())
    }
    async fn get_workflow_record(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(self
            .0
            .records
            .lock()
            .unwrap()
            .get(&record_key(run, record))
            .cloned())
    }
    async fn list_workflow_runs(&self) -> Result<Vec<RunId>, StoreError> {
        let mut runs: Vec<RunId> = self
            .0
            .records
            .lock()
            .unwrap()
            .keys()
            .map(|(r, _)| r.clone())
            .collect();
        runs.dedup();
        Ok(runs)
    }
    async fn list_workflow_steps(&self, run: &RunId) -> Result<Vec<String>, StoreError> {
        Ok(self
            .0
            .records
            .lock()
            .unwrap()
            .keys()
            .filter(|(r, _)| r == run)
            .filter_map(|(_, s)| s.clone())
            .collect())
    }
}

#[async_trait]
impl Ledger for Mem {
    async fn append_ledger(&self, event: &LedgerEvent) -> Result<(), StoreError> {
        self.0.ledger.lock().unwrap().push(event.clone());
        Ok(())
    }
    async fn read_ledger(&self) -> Result<LedgerRead, StoreError> {
        Ok(LedgerRead {
            events: self.0.ledger.lock().unwrap().clone(),
            bad_lines: Vec::new(),
        })
    }
}

// ---------------------------------------------------------------------------
// The fake agent fleet.

/// One dispatch: step, agent, start and end relative to the test's start.
#[derive(Clone, Debug)]
struct Span {
    step: String,
    agent: String,
    start: Duration,
    end: Duration,
}

struct Fake {
    store: Arc<MemStore>,
    t0: Instant,
    spans: Mutex<Vec<Span>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

fn marker<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    let open = format!("[{key}=");
    let at = msg.find(&open)? + open.len();
    let end = msg[at..].find(']')? + at;
    Some(&msg[at..end])
}

#[async_trait]
impl Transport for Fake {
    fn name(&self) -> &str {
        "fake"
    }

    async fn dispatch(&self, env: &Envelope) -> Result<Ack, TransportError> {
        let msg = &env.message;
        let step = marker(msg, "id").unwrap_or("?").to_owned();
        let secs: u64 = marker(msg, "d").map_or(1, |d| d.parse().unwrap());
        let start = self.t0.elapsed();
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let mut h = Handoff::new(
            env.run_id.clone(),
            &env.agent,
            Status::Complete,
            format!("result of {step}"),
        );
        h.confidence = Some(Confidence::High);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.spans.lock().unwrap().push(Span {
            step,
            agent: env.agent.clone(),
            start,
            end: self.t0.elapsed(),
        });
        self.store.write(
            &HandoffKey {
                scope: env.scope,
                run_id: env.run_id.clone(),
            },
            h.to_json_pretty(),
        );
        Ok(Ack {
            remote_run_id: None,
            completion: None,
        })
    }
}

impl Fake {
    fn span(&self, step: &str) -> Span {
        let spans = self.spans.lock().unwrap();
        let found: Vec<&Span> = spans.iter().filter(|s| s.step == step).collect();
        assert_eq!(found.len(), 1, "one dispatch of {step}: {spans:?}");
        found[0].clone()
    }

    fn starts_ends(&self, step: &str) -> (u64, u64) {
        let s = self.span(step);
        (secs(s.start), secs(s.end))
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

/// Whole seconds, asserting the duration is exactly that.
fn secs(d: Duration) -> u64 {
    assert_eq!(d.subsec_nanos(), 0, "{d:?} is not whole seconds");
    d.as_secs()
}

struct Rig {
    fake: Arc<Fake>,
    exec: Executor,
    t0: Instant,
}

fn rig() -> Rig {
    let mem = Arc::new(MemStore::new());
    let t0 = Instant::now();
    let fake = Arc::new(Fake {
        store: Arc::clone(&mem),
        t0,
        spans: Mutex::new(Vec::new()),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
    });
    let store: Arc<dyn HandoffStore> = Arc::new(Mem(mem));
    let delegator = crate::delegator(store, Arc::clone(&fake) as Arc<dyn Transport>);
    let exec = Executor::new(delegator).with_retry_base(Duration::from_secs(1));
    Rig { fake, exec, t0 }
}

impl Rig {
    /// Runs `yaml`; returns the summary and the makespan in whole seconds.
    async fn run(&self, yaml: &str) -> (RunSummary, u64) {
        let wf = load(yaml, "test.yaml").unwrap();
        let inputs = check_run(
            &wf,
            AGENTS,
            &Policy::atomizer_default(),
            "manager",
            &BTreeMap::new(),
        )
        .unwrap();
        let opts = RunOptions {
            caller: "manager".into(),
            inputs,
            run_id: None,
        };
        let s = self
            .exec
            .run(&wf, yaml, opts, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(s.status, RunStatus::Completed);
        for (id, step) in &s.steps {
            assert_eq!(step.status, StepStatus::Completed, "{id}");
        }
        (s, secs(self.t0.elapsed()))
    }
}

// ---------------------------------------------------------------------------
// Scheduling.

#[tokio::test(start_paused = true)]
async fn paused_diamond_makespan_is_the_critical_path() {
    // a(1) → b(1), c(10) → d(1): critical path a-c-d = 12s.
    let rig = rig();
    let (s, makespan) = rig
        .run(
            r#"
name: diamond
steps:
  - { id: a, agent: webster, task: "[id=a] [d=1]" }
  - { id: b, agent: webster, task: "[id=b] [d=1] {{ steps.a.result }}" }
  - { id: c, agent: auditor, task: "[id=c] [d=10] {{ steps.a.result }}" }
  - { id: d, agent: tech-lead, task: "[id=d] [d=1] {{ steps.b.result }} {{ steps.c.result }}" }
output: "{{ steps.d.result }}"
"#,
        )
        .await;
    assert_eq!(s.output.as_deref(), Some("result of d"));
    assert_eq!(rig.fake.starts_ends("a"), (0, 1));
    assert_eq!(rig.fake.starts_ends("b"), (1, 2));
    assert_eq!(rig.fake.starts_ends("c"), (1, 11));
    assert_eq!(rig.fake.starts_ends("d"), (11, 12));
    assert_eq!(makespan, 12);
    assert_eq!(rig.fake.max_in_flight(), 2);
}

#[tokio::test(start_paused = true)]
async fn paused_wide_fan_out_and_fan_in() {
    // root(1) → s0..s9 (5 each, all at once) → sink(1): 7s.
    let rig = rig();
    let mut yaml = String::from(
        "name: fan\nsteps:\n  - { id: root, agent: webster, task: \"[id=root] [d=1]\" }\n",
    );
    for i in 0..10 {
        yaml.push_str(&format!(
            "  - {{ id: s{i}, agent: webster, task: \"[id=s{i}] [d=5] {{{{ steps.root.result }}}}\" }}\n"
        ));
    }
    let needs: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    yaml.push_str(&format!(
        "  - {{ id: sink, agent: auditor, task: \"[id=sink] [d=1]\", needs: [{}] }}\n",
        needs.join(", ")
    ));
    let (_, makespan) = rig.run(&yaml).await;
    assert_eq!(rig.fake.starts_ends("root"), (0, 1));
    for i in 0..10 {
        assert_eq!(rig.fake.starts_ends(&format!("s{i}")), (1, 6), "s{i}");
    }
    assert_eq!(rig.fake.starts_ends("sink"), (6, 7));
    assert_eq!(makespan, 7);
    assert_eq!(rig.fake.max_in_flight(), 10);
}

#[tokio::test(start_paused = true)]
async fn paused_long_chain() {
    // s0 → s1 → … → s19, 1s each: s_i runs [i, i+1], 20s in all.
    let rig = rig();
    let mut yaml = String::from(
        "name: chain\nsteps:\n  - { id: s0, agent: webster, task: \"[id=s0] [d=1]\" }\n",
    );
    for i in 1..20 {
        yaml.push_str(&format!(
            "  - {{ id: s{i}, agent: webster, task: \"[id=s{i}] [d=1] {{{{ steps.s{}.result }}}}\" }}\n",
            i - 1
        ));
    }
    let (_, makespan) = rig.run(&yaml).await;
    for i in 0..20u64 {
        assert_eq!(rig.fake.starts_ends(&format!("s{i}")), (i, i + 1), "s{i}");
    }
    assert_eq!(makespan, 20);
    assert_eq!(rig.fake.max_in_flight(), 1);
}

#[tokio::test(start_paused = true)]
async fn paused_eager_start_does_not_wait_for_a_slow_sibling() {
    // a(1) → c(1); b(10) is a sibling branch: c starts at 1s, b ends at 10s.
    let rig = rig();
    let (_, makespan) = rig
        .run(
            r#"
name: eager
steps:
  - { id: a, agent: webster, task: "[id=a] [d=1]" }
  - { id: b, agent: auditor, task: "[id=b] [d=10]" }
  - { id: c, agent: tech-lead, task: "[id=c] [d=1] {{ steps.a.result }}" }
"#,
        )
        .await;
    assert_eq!(rig.fake.starts_ends("a"), (0, 1));
    assert_eq!(rig.fake.starts_ends("b"), (0, 10));
    assert_eq!(rig.fake.starts_ends("c"), (1, 2));
    assert_eq!(makespan, 10);
}

#[tokio::test(start_paused = true)]
async fn paused_max_parallel_is_respected() {
    // Six independent 1s steps, two at a time: 3s, two starts at each of
    // 0s, 1s, 2s.
    let rig = rig();
    let mut yaml = String::from("name: capped\nmax_parallel: 2\nsteps:\n");
    for i in 0..6 {
        let agent = AGENTS[i % 3];
        yaml.push_str(&format!(
            "  - {{ id: s{i}, agent: {agent}, task: \"[id=s{i}] [d=1]\" }}\n"
        ));
    }
    let (_, makespan) = rig.run(&yaml).await;
    assert_eq!(makespan, 3);
    assert_eq!(rig.fake.max_in_flight(), 2);
    let mut starts: Vec<u64> = (0..6)
        .map(|i| rig.fake.starts_ends(&format!("s{i}")).0)
        .collect();
    starts.sort_unstable();
    assert_eq!(starts, [0, 0, 1, 1, 2, 2]);
}

#[tokio::test(start_paused = true)]
async fn paused_the_longest_chain_goes_first_when_slots_are_short() {
    // Two slots; two 1s leaves come first in the file, then a 3-step chain.
    // File order would start both leaves first and end at 4s; the chain's
    // head goes first and the run ends at 3s.
    let rig = rig();
    let (_, makespan) = rig
        .run(
            r#"
name: priority
max_parallel: 2
steps:
  - { id: l1, agent: webster, task: "[id=l1] [d=1]" }
  - { id: l2, agent: auditor, task: "[id=l2] [d=1]" }
  - { id: c1, agent: tech-lead, task: "[id=c1] [d=1]" }
  - { id: c2, agent: tech-lead, task: "[id=c2] [d=1] {{ steps.c1.result }}" }
  - { id: c3, agent: tech-lead, task: "[id=c3] [d=1] {{ steps.c2.result }}" }
"#,
        )
        .await;
    assert_eq!(rig.fake.starts_ends("c1"), (0, 1));
    assert_eq!(rig.fake.starts_ends("l1"), (0, 1), "ties keep file order");
    assert_eq!(rig.fake.starts_ends("c2"), (1, 2));
    assert_eq!(rig.fake.starts_ends("l2"), (1, 2));
    assert_eq!(rig.fake.starts_ends("c3"), (2, 3));
    assert_eq!(makespan, 3);
}

#[tokio::test(start_paused = true)]
async fn paused_agent_max_concurrent_is_respected() {
    // Four 1s steps on `solo` (maxConcurrent 1) run one after another over
    // 0..4s while webster's 4s step runs alongside.
    let rig = rig();
    let mut yaml = String::from("name: solo\nsteps:\n");
    for i in 0..4 {
        yaml.push_str(&format!(
            "  - {{ id: s{i}, agent: solo, task: \"[id=s{i}] [d=1]\" }}\n"
        ));
    }
    yaml.push_str("  - { id: w, agent: webster, task: \"[id=w] [d=4]\" }\n");
    let (_, makespan) = rig.run(&yaml).await;
    let mut solo: Vec<(u64, u64)> = rig
        .fake
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.agent == "solo")
        .map(|s| (secs(s.start), secs(s.end)))
        .collect();
    solo.sort_unstable();
    assert_eq!(solo, [(0, 1), (1, 2), (2, 3), (3, 4)]);
    for pair in solo.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "solo steps overlap: {solo:?}");
    }
    assert_eq!(rig.fake.starts_ends("w"), (0, 4));
    assert_eq!(makespan, 4);
    assert_eq!(rig.fake.max_in_flight(), 2);
}
