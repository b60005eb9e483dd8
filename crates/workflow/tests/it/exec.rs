//! The executor against a real `FsStore` in a temp dir and a scripted fake
//! transport that answers like an agent: it writes the handoff into the
//! store at the end of `dispatch`, after a delay read from the task text.
//!
//! Real time with short delays: in paused time a store wait may end at its
//! deadline instead of when inotify reports the file (time jumps while the
//! watcher's wake-up is on its way), which would make the order of events
//! meaningless. The tests assert orders and counts, never durations.
//!
//! Task markers read by the fake: `[id=X]` (the step, for counting),
//! `[d=MS]` (delay before answering), `[s=STATUS]`, `[c=CONF]`, `[hang]`
//! (ack, never answer), `[hangfirst]` (hang on the first dispatch only),
//! `[failfirst=N]` (answer `failed` to the first N
//! dispatches of the step).

use orch_delegate::orch_handoff::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orch_delegate::orch_acl::Policy;
use orch_delegate::orch_handoff::{
    Confidence, DEFAULT_MAX_HANDOFF_BYTES, FsStore, FsStoreConfig, Handoff, HandoffKey,
    HandoffStore, LedgerEvent, LedgerRead, PutMode, RunId, Scope, Status, StoreError, Subscription,
    WorkflowRecord,
};
use orch_delegate::{Ack, Delegator, Envelope, Transport, TransportError};
use orch_workflow::{
    ApprovalDecision, Approver, Executor, Progress, ProgressEvent, RunOptions, RunStatus,
    RunSummary, StepOutput, StepStatus, Workflow, approve, attempt_run_id, check_run, load,
    read_step, read_summary,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::AGENTS;

// ---------------------------------------------------------------------------
// The fake agent fleet.

#[derive(Default)]
pub(crate) struct Fake {
    pub(crate) store: Mutex<Option<FsStore>>,
    /// Dispatches per step id.
    pub(crate) dispatches: Mutex<BTreeMap<String, usize>>,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) max_in_flight: AtomicUsize,
    pub(crate) per_agent: Mutex<BTreeMap<String, (usize, usize)>>,
    /// The last message and agent each step id was sent.
    pub(crate) last: Mutex<BTreeMap<String, (String, String)>>,
    pub(crate) hung: Notify,
    /// `Transport::max_task_bytes` (0: the default).
    pub(crate) max_task: AtomicU64,
    /// `Transport::outlives_sender` is false (like sim and exec).
    pub(crate) dies_with_sender: AtomicBool,
    /// The longest message dispatched.
    pub(crate) longest: AtomicUsize,
}

/// The timestamp of a `[big]` handoff (fixed, so its size is exact).
const BIG_TIMESTAMP: &str = "2026-12-01T00:00:00Z";

/// The largest result a handoff can carry: the whole file at the store's
/// cap (the fake writes it pretty, as `to_json_pretty` does).
fn largest_result(run_id: &RunId, agent: &str) -> String {
    let mut h = Handoff::new(run_id.clone(), agent, Status::Complete, String::new());
    h.confidence = Some(Confidence::High);
    h.timestamp = Some(BIG_TIMESTAMP.to_owned());
    let room = DEFAULT_MAX_HANDOFF_BYTES as usize - h.to_json_pretty().len();
    "R".repeat(room)
}

/// The value of marker `[KEY=VALUE]` in `msg` (a value may hold
/// bracketed markers of its own: `[id=r-x [d=40]]`).
fn marker<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    let open = format!("[{key}=");
    let at = msg.find(&open)? + open.len();
    let mut depth = 0usize;
    for (i, c) in msg[at..].char_indices() {
        match c {
            '[' => depth += 1,
            ']' if depth == 0 => return Some(&msg[at..at + i]),
            ']' => depth -= 1,
            _ => {}
        }
    }
    None
}

impl Fake {
    pub(crate) fn count(&self, step: &str) -> usize {
        self.dispatches
            .lock()
            .unwrap()
            .get(step)
            .copied()
            .unwrap_or(0)
    }

    /// (agent, message) of the last dispatch of `step`.
    pub(crate) fn last(&self, step: &str) -> (String, String) {
        self.last.lock().unwrap().get(step).cloned().unwrap()
    }

    fn agent_max(&self, agent: &str) -> usize {
        self.per_agent.lock().unwrap().get(agent).map_or(0, |x| x.1)
    }
}

#[async_trait]
impl Transport for Fake {
    fn name(&self) -> &str {
        "fake"
    }

    fn max_task_bytes(&self) -> u64 {
        match self.max_task.load(Ordering::SeqCst) {
            0 => orch_delegate::DEFAULT_MAX_TASK_BYTES,
            n => n,
        }
    }

    fn outlives_sender(&self) -> bool {
        !self.dies_with_sender.load(Ordering::SeqCst)
    }

    async fn dispatch(&self, env: &Envelope) -> Result<Ack, TransportError> {
        let msg = &env.message;
        self.longest.fetch_max(msg.len(), Ordering::SeqCst);
        let step = marker(msg, "id").unwrap_or("?").to_owned();
        let n = {
            let mut d = self.dispatches.lock().unwrap();
            let n = d.entry(step.clone()).or_default();
            *n += 1;
            *n
        };
        self.last
            .lock()
            .unwrap()
            .insert(step.clone(), (env.agent.clone(), msg.clone()));
        if msg.contains("[reject]") {
            return Err(TransportError::Rejected {
                status: 400,
                message: "unknown agentId".into(),
            });
        }
        let unreachable: usize = marker(msg, "unreachablefirst").map_or(0, |d| d.parse().unwrap());
        if n <= unreachable {
            return Err(TransportError::Connect {
                message: "connection refused".into(),
            });
        }
        let ack = Ok(Ack {
            remote_run_id: None,
            completion: None,
        });
        let hang_nth: usize = marker(msg, "hangnth").map_or(0, |d| d.parse().unwrap());
        if msg.contains("[hang]") || (n == 1 && msg.contains("[hangfirst]")) || n == hang_nth {
            self.hung.notify_one();
            return ack;
        }
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        {
            let mut pa = self.per_agent.lock().unwrap();
            let e = pa.entry(env.agent.clone()).or_default();
            e.0 += 1;
            e.1 = e.1.max(e.0);
        }
        let delay: u64 = marker(msg, "d").map_or(5, |d| d.parse().unwrap());
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let fail_first: usize = marker(msg, "failfirst").map_or(0, |d| d.parse().unwrap());
        let status = if n <= fail_first {
            Status::Failed
        } else {
            match marker(msg, "s") {
                Some("partial") => Status::Partial,
                Some("blocked") => Status::Blocked,
                Some("failed") => Status::Failed,
                _ => Status::Complete,
            }
        };
        let result = if msg.contains("[big]") {
            largest_result(&env.run_id, &env.agent)
        } else {
            format!("result of {step}")
        };
        let mut h = Handoff::new(env.run_id.clone(), &env.agent, status, result);
        h.confidence = match marker(msg, "c") {
            Some("low") => Some(Confidence::Low),
            Some("medium") => Some(Confidence::Medium),
            Some("none") => None,
            _ => Some(Confidence::High),
        };
        if msg.contains("[big]") {
            h.timestamp = Some(BIG_TIMESTAMP.to_owned());
        }
        let fs = self.store.lock().unwrap().clone().unwrap();
        let path = fs.path_of(&HandoffKey {
            scope: env.scope,
            run_id: env.run_id.clone(),
        });
        let tmp = path.with_file_name(format!(".{}.tmp", env.run_id));
        std::fs::write(&tmp, h.to_json_pretty()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        self.per_agent
            .lock()
            .unwrap()
            .get_mut(&env.agent)
            .unwrap()
            .0 -= 1;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        ack
    }
}

/// Records progress events as `start:X`, `end:X`, `skip:X`, `wait:X`,
/// `retry:X`.
#[derive(Default)]
pub(crate) struct Log(Mutex<Vec<String>>);

impl Progress for Log {
    fn event(&self, e: &ProgressEvent) {
        let s = match e {
            ProgressEvent::Started { step, .. } => format!("start:{step}"),
            ProgressEvent::Finished { step, .. } => format!("end:{step}"),
            ProgressEvent::Skipped { step, .. } => format!("skip:{step}"),
            ProgressEvent::AwaitingApproval { step } => format!("wait:{step}"),
            ProgressEvent::Retrying { step, .. } => format!("retry:{step}"),
            ProgressEvent::Reawaiting { step, .. } => format!("reawait:{step}"),
            ProgressEvent::Lost { step, .. } => format!("lost:{step}"),
            ProgressEvent::Repeating {
                step, iteration, ..
            } => format!("repeat:{step}:{iteration}"),
            ProgressEvent::FannedOut { step, items, .. } => format!("fan:{step}:{items}"),
            ProgressEvent::Instances { step, counts } => format!(
                "inst:{step}:{}/{}/{}",
                counts.completed, counts.failed, counts.cancelled
            ),
        };
        self.0.lock().unwrap().push(s);
    }
}

impl Log {
    pub(crate) fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub(crate) fn pos(&self, e: &str) -> usize {
        self.events()
            .iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("no {e} in {:?}", self.events()))
    }
}

/// The store as the executor sees it: while `forget_steps` is set, step
/// records are acknowledged but never written, as when the process dies
/// before those writes land.
pub(crate) struct Forgetful {
    inner: FsStore,
    pub(crate) forget_steps: AtomicBool,
    /// The largest workflow record written (as the store writes it).
    largest_record: AtomicUsize,
}

#[async_trait]
impl Handoffs for Forgetful {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn location(&self, key: &HandoffKey) -> String {
        self.inner.location(key)
    }
    async fn put(&self, scope: Scope, handoff: &Handoff, mode: PutMode) -> Result<(), StoreError> {
        self.inner.put(scope, handoff, mode).await
    }
    async fn put_raw(
        &self,
        key: &HandoffKey,
        bytes: &[u8],
        mode: PutMode,
    ) -> Result<(), StoreError> {
        self.inner.put_raw(key, bytes, mode).await
    }
    async fn get(&self, key: &HandoffKey) -> Result<Option<Handoff>, StoreError> {
        self.inner.get(key).await
    }
    async fn subscribe(&self, key: &HandoffKey) -> Result<Box<dyn Subscription>, StoreError> {
        self.inner.subscribe(key).await
    }
    async fn quarantine(&self, key: &HandoffKey) -> Result<Option<String>, StoreError> {
        self.inner.quarantine(key).await
    }
    async fn list(&self, scope: Scope) -> Result<Vec<RunId>, StoreError> {
        self.inner.list(scope).await
    }
}

#[async_trait]
impl WorkflowRecords for Forgetful {
    fn max_record_bytes(&self) -> u64 {
        self.inner.max_record_bytes()
    }
    async fn put_workflow_record(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        if matches!(record, WorkflowRecord::Step(_)) && self.forget_steps.load(Ordering::SeqCst) {
            return Ok(());
        }
        let size = serde_json::to_vec_pretty(value).unwrap().len() + 1;
        self.largest_record.fetch_max(size, Ordering::SeqCst);
        self.inner.put_workflow_record(run, record, value).await
    }
    async fn get_workflow_record(
        &self,
        run: &RunId,
        record: &WorkflowRecord,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        self.inner.get_workflow_record(run, record).await
    }
    async fn list_workflow_runs(&self) -> Result<Vec<RunId>, StoreError> {
        self.inner.list_workflow_runs().await
    }
    async fn list_workflow_steps(&self, run: &RunId) -> Result<Vec<String>, StoreError> {
        self.inner.list_workflow_steps(run).await
    }
}

#[async_trait]
impl Ledger for Forgetful {
    async fn append_ledger(&self, event: &LedgerEvent) -> Result<(), StoreError> {
        self.inner.append_ledger(event).await
    }
    async fn read_ledger(&self) -> Result<LedgerRead, StoreError> {
        self.inner.read_ledger().await
    }
}

pub(crate) struct Rig {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) forgetful: Arc<Forgetful>,
    pub(crate) store: Arc<dyn HandoffStore>,
    pub(crate) delegator: Arc<Delegator>,
    pub(crate) fake: Arc<Fake>,
    pub(crate) log: Arc<Log>,
}

pub(crate) fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(FsStoreConfig::new(dir.path().join("store"))).unwrap();
    let fake = Arc::new(Fake::default());
    *fake.store.lock().unwrap() = Some(fs.clone());
    let forgetful = Arc::new(Forgetful {
        inner: fs,
        forget_steps: AtomicBool::new(false),
        largest_record: AtomicUsize::new(0),
    });
    let store: Arc<dyn HandoffStore> = Arc::clone(&forgetful) as Arc<dyn HandoffStore>;
    let delegator = crate::delegator(Arc::clone(&store), Arc::clone(&fake) as Arc<dyn Transport>);
    Rig {
        _dir: dir,
        forgetful,
        store,
        delegator,
        fake,
        log: Arc::new(Log::default()),
    }
}

impl Rig {
    pub(crate) fn exec(&self) -> Executor {
        Executor::new(Arc::clone(&self.delegator))
            .with_progress(Arc::clone(&self.log) as Arc<dyn Progress>)
            .with_retry_base(Duration::from_millis(10))
    }

    /// Runs `yaml` as run `run_id` until the fake hangs on a task marked
    /// `[hangfirst]`, then drops the run: like a kill -9 of orch with that
    /// delegation in flight.
    pub(crate) async fn run_until_hung(&self, yaml: &str, run_id: &str) -> RunId {
        let wf = load(yaml, "hung.yaml").unwrap();
        let run_id = RunId::new(run_id).unwrap();
        let mut o = opts(&wf);
        o.run_id = Some(run_id.clone());
        let exec = self.exec();
        let cancel = CancellationToken::new();
        tokio::select! {
            r = exec.run(&wf, yaml, o, &cancel) => panic!("run ended: {r:?}"),
            () = self.fake.hung.notified() => {}
        }
        run_id
    }

    pub(crate) async fn run_with(&self, exec: &Executor, yaml: &str) -> RunSummary {
        let wf = load(yaml, "test.yaml").unwrap();
        exec.run(&wf, yaml, opts(&wf), &CancellationToken::new())
            .await
            .unwrap()
    }

    pub(crate) async fn run(&self, yaml: &str) -> RunSummary {
        self.run_with(&self.exec(), yaml).await
    }
}

pub(crate) fn opts(wf: &Workflow) -> RunOptions {
    let inputs = check_run(
        wf,
        AGENTS,
        &Policy::atomizer_default(),
        "manager",
        &BTreeMap::new(),
    )
    .unwrap();
    RunOptions {
        caller: "manager".into(),
        inputs,
        run_id: None,
    }
}

pub(crate) fn status(s: &RunSummary, step: &str) -> StepStatus {
    s.steps[step].status
}

pub(crate) fn reason(s: &RunSummary, step: &str) -> String {
    s.steps[step].reason.clone().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Scheduling.

#[tokio::test]
async fn diamond_runs_in_dependency_order_and_renders_output() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: diamond
steps:
  - { id: a, agent: webster, task: "[id=a]" }
  - { id: b, agent: webster, task: "[id=b] {{ steps.a.result }}" }
  - { id: c, agent: auditor, task: "[id=c] [d=30] {{ steps.a.result }}" }
  - { id: d, agent: tech-lead, task: "[id=d] {{ steps.b.result }} {{ steps.c.result }}" }
output: "{{ steps.d.result }} / {{ steps.c.status }}"
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed);
    for id in ["a", "b", "c", "d"] {
        assert_eq!(status(&s, id), StepStatus::Completed);
        assert_eq!(rig.fake.count(id), 1);
    }
    assert!(rig.log.pos("end:a") < rig.log.pos("start:b"));
    assert!(rig.log.pos("end:a") < rig.log.pos("start:c"));
    assert!(rig.log.pos("end:b") < rig.log.pos("start:d"));
    assert!(rig.log.pos("end:c") < rig.log.pos("start:d"));
    assert_eq!(s.output.as_deref(), Some("result of d / complete"));

    // The stored summary and step records say the same.
    let stored = read_summary(&*rig.store, &s.run_id).await.unwrap();
    assert_eq!(stored, s);
    let d = read_step(&*rig.store, &s.run_id, "d")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, StepStatus::Completed);
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(
        d.rendered_task.as_deref(),
        Some("[id=d] result of b result of c")
    );
    assert_eq!(d.gate.as_ref().map(|g| g.passed), Some(true));
    assert_eq!(d.handoff.as_ref().unwrap().result, "result of d");
}

#[tokio::test]
async fn wide_fan_out_and_fan_in() {
    let rig = rig();
    let mut yaml =
        String::from("name: fan\nsteps:\n  - { id: root, agent: webster, task: \"[id=root]\" }\n");
    for i in 0..10 {
        yaml.push_str(&format!(
            "  - {{ id: s{i}, agent: webster, task: \"[id=s{i}] [d=40] {{{{ steps.root.result }}}}\" }}\n"
        ));
    }
    let needs: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    yaml.push_str(&format!(
        "  - {{ id: sink, agent: auditor, task: \"[id=sink]\", needs: [{}] }}\n",
        needs.join(", ")
    ));
    let s = rig.run(&yaml).await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(
        rig.fake.max_in_flight.load(Ordering::SeqCst),
        10,
        "all ten at once"
    );
    let sink = rig.log.pos("start:sink");
    for i in 0..10 {
        assert!(rig.log.pos(&format!("end:s{i}")) < sink);
        assert!(rig.log.pos("end:root") < rig.log.pos(&format!("start:s{i}")));
    }
}

#[tokio::test]
async fn long_chain() {
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
    let s = rig.run(&yaml).await;
    assert_eq!(s.status, RunStatus::Completed);
    let want: Vec<String> = (0..20)
        .flat_map(|i| [format!("start:s{i}"), format!("end:s{i}")])
        .collect();
    assert_eq!(rig.log.events(), want);
    assert_eq!(rig.fake.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_step_starts_as_soon_as_its_own_dependency_ends() {
    // a (fast) → c; b (slow) is a sibling branch: c starts while b runs.
    let rig = rig();
    let s = rig
        .run(
            r#"
name: eager
steps:
  - { id: a, agent: webster, task: "[id=a] [d=5]" }
  - { id: b, agent: auditor, task: "[id=b] [d=400]" }
  - { id: c, agent: tech-lead, task: "[id=c] [d=5] {{ steps.a.result }}" }
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed);
    assert!(
        rig.log.pos("end:c") < rig.log.pos("end:b"),
        "{:?}",
        rig.log.events()
    );
}

#[tokio::test]
async fn max_parallel_is_respected() {
    let rig = rig();
    let mut yaml = String::from("name: capped\nmax_parallel: 2\nsteps:\n");
    for i in 0..6 {
        let agent = AGENTS[i % 3];
        yaml.push_str(&format!(
            "  - {{ id: s{i}, agent: {agent}, task: \"[id=s{i}] [d=30]\" }}\n"
        ));
    }
    let s = rig.run(&yaml).await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(rig.fake.max_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_agents_max_concurrent_is_respected() {
    let rig = rig();
    let mut yaml = String::from("name: solo\nsteps:\n");
    for i in 0..4 {
        yaml.push_str(&format!(
            "  - {{ id: s{i}, agent: solo, task: \"[id=s{i}] [d=20]\" }}\n"
        ));
    }
    yaml.push_str("  - { id: w, agent: webster, task: \"[id=w] [d=20]\" }\n");
    let s = rig.run(&yaml).await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(rig.fake.agent_max("solo"), 1);
    assert!(rig.fake.max_in_flight.load(Ordering::SeqCst) >= 2);
}

// ---------------------------------------------------------------------------
// when, gates, retries, timeouts.

#[tokio::test]
async fn when_false_skips_with_the_reason_and_dependents_follow() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: when
steps:
  - { id: a, agent: webster, task: "[id=a]" }
  - { id: b, agent: webster, task: "[id=b]", when: "steps.a.confidence == low" }
  - { id: c, agent: webster, task: "[id=c] {{ steps.b.result }}" }
  - { id: d, agent: webster, task: "[id=d]", when: "steps.a.status == complete" }
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(status(&s, "b"), StepStatus::Skipped);
    assert_eq!(reason(&s, "b"), "when `steps.a.confidence == low` is false");
    assert_eq!(status(&s, "c"), StepStatus::Skipped);
    assert_eq!(reason(&s, "c"), "dependency `b` was skipped");
    assert_eq!(status(&s, "d"), StepStatus::Completed);
    assert_eq!((rig.fake.count("b"), rig.fake.count("c")), (0, 0));
}

const GATED: &str = r#"
name: gated
defaults: { on_failure: ONFAIL }
steps:
  - { id: g, agent: webster, task: "[id=g] [c=low]", gate: { status: [complete], min_confidence: medium } }
  - { id: x, agent: auditor, task: "[id=x] [d=100]" }
  - { id: y, agent: auditor, task: "[id=y]", needs: [x] }
  - { id: z, agent: auditor, task: "[id=z] {{ steps.g.result }}" }
"#;

#[tokio::test]
async fn a_failed_gate_with_stop_starts_nothing_new() {
    let rig = rig();
    let s = rig.run(&GATED.replace("ONFAIL", "stop")).await;
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(status(&s, "g"), StepStatus::Failed);
    assert_eq!(reason(&s, "g"), "gate: confidence low is below medium");
    assert_eq!(
        status(&s, "x"),
        StepStatus::Completed,
        "running steps finish"
    );
    assert_eq!(status(&s, "y"), StepStatus::Pending);
    assert_eq!(status(&s, "z"), StepStatus::Pending);
    assert_eq!(rig.fake.count("y"), 0);
    let g = read_step(&*rig.store, &s.run_id, "g")
        .await
        .unwrap()
        .unwrap();
    assert!(!g.gate.unwrap().passed);
}

#[tokio::test]
async fn a_failed_gate_with_continue_skips_only_its_dependents() {
    let rig = rig();
    let s = rig.run(&GATED.replace("ONFAIL", "continue")).await;
    assert_eq!(s.status, RunStatus::CompletedWithFailures);
    assert_eq!(status(&s, "g"), StepStatus::Failed);
    assert_eq!(status(&s, "y"), StepStatus::Completed);
    assert_eq!(status(&s, "z"), StepStatus::Skipped);
    assert_eq!(reason(&s, "z"), "dependency `g` failed");
}

#[tokio::test]
async fn a_gate_on_status() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: st
steps:
  - { id: a, agent: webster, task: "[id=a] [s=partial]", gate: { status: [complete] } }
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(
        reason(&s, "a"),
        "gate: status partial is not one of complete"
    );
}

#[tokio::test]
async fn failed_attempts_are_retried_then_succeed() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: retry
steps:
  - { id: r, agent: webster, task: "[id=r] [failfirst=2]", retries: 2 }
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(s.steps["r"].attempts, 3);
    assert_eq!(rig.fake.count("r"), 3);
    assert_eq!(
        rig.log.events(),
        [
            "start:r", "retry:r", "start:r", "retry:r", "start:r", "end:r"
        ]
    );
    let r = read_step(&*rig.store, &s.run_id, "r")
        .await
        .unwrap()
        .unwrap();
    let st: Vec<&str> = r.attempts.iter().map(|a| a.status.as_str()).collect();
    assert_eq!(st, ["failed", "failed", "complete"]);
    assert_eq!(r.delegation_run_id.as_ref(), Some(&r.attempts[2].run_id));
}

/// A step retries a transport that stayed unreachable through its
/// attempt (another attempt may find it back), never one that refused the
/// task (it would refuse again).
#[tokio::test]
async fn only_transport_failures_a_retry_can_change_are_retried() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: transport
defaults: { on_failure: continue }
steps:
  - { id: u, agent: webster, task: "[id=u] [unreachablefirst=1]", retries: 1, timeout: 200ms }
  - { id: x, agent: auditor, task: "[id=x] [reject]", retries: 3 }
"#,
        )
        .await;
    assert_eq!(s.steps["u"].status, StepStatus::Completed);
    assert_eq!(s.steps["u"].attempts, 2);
    assert_eq!(s.steps["x"].status, StepStatus::Failed);
    assert_eq!(s.steps["x"].attempts, 1);
    assert_eq!(rig.fake.count("x"), 1, "a rejected task is not sent again");
}

#[tokio::test]
async fn retries_run_out() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: retry
steps:
  - { id: r, agent: webster, task: "[id=r] [failfirst=5]", retries: 1 }
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(rig.fake.count("r"), 2);
    assert_eq!(reason(&s, "r"), "the agent reported failure: result of r");
}

#[tokio::test]
async fn a_step_that_never_answers_times_out() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: slow
steps:
  - { id: h, agent: webster, task: "[id=h] [hang]", timeout: 300ms }
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(status(&s, "h"), StepStatus::Failed);
    assert!(
        reason(&s, "h").starts_with("timed out after"),
        "{}",
        reason(&s, "h")
    );
}

// ---------------------------------------------------------------------------
// Approval.

struct Says(ApprovalDecision, Mutex<Vec<(String, String)>>);

#[async_trait]
impl Approver for Says {
    async fn approve(&self, step: &str, output: &StepOutput) -> ApprovalDecision {
        self.1
            .lock()
            .unwrap()
            .push((step.to_owned(), output.result.clone()));
        self.0.clone()
    }
}

const APPROVAL: &str = r#"
name: approval
steps:
  - { id: a, agent: webster, task: "[id=a]", gate: { approval: true } }
  - { id: b, agent: auditor, task: "[id=b] {{ steps.a.result }}" }
"#;

#[tokio::test]
async fn an_interactive_approval_lets_the_run_go_on() {
    let rig = rig();
    let says = Arc::new(Says(ApprovalDecision::Approve, Mutex::default()));
    let exec = rig
        .exec()
        .with_approver(Arc::clone(&says) as Arc<dyn Approver>);
    let s = rig.run_with(&exec, APPROVAL).await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(
        *says.1.lock().unwrap(),
        [("a".to_owned(), "result of a".to_owned())]
    );
    assert!(rig.log.pos("wait:a") < rig.log.pos("end:a"));
    assert!(rig.log.pos("end:a") < rig.log.pos("start:b"));
}

#[tokio::test]
async fn an_interactive_rejection_fails_the_step() {
    let rig = rig();
    let no = ApprovalDecision::Reject {
        reason: "numbers are off".into(),
    };
    let exec = rig
        .exec()
        .with_approver(Arc::new(Says(no.clone(), Mutex::default())));
    let s = rig.run_with(&exec, APPROVAL).await;
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(status(&s, "a"), StepStatus::Rejected);
    assert_eq!(reason(&s, "a"), "rejected: numbers are off");
    assert_eq!(rig.fake.count("b"), 0);
    let a = read_step(&*rig.store, &s.run_id, "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.approval, Some(no));
}

#[tokio::test]
async fn a_non_interactive_run_pauses_then_approve_and_resume_finish_it() {
    let rig = rig();
    let s = rig.run(APPROVAL).await;
    assert_eq!(s.status, RunStatus::AwaitingApproval);
    assert_eq!(status(&s, "a"), StepStatus::AwaitingApproval);
    assert_eq!(status(&s, "b"), StepStatus::Pending);

    // Approving a step that is not waiting is refused.
    let err = approve(&*rig.store, &s.run_id, "b", ApprovalDecision::Approve)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("is not awaiting approval (it is pending)"),
        "{err}"
    );

    approve(&*rig.store, &s.run_id, "a", ApprovalDecision::Approve)
        .await
        .unwrap();
    // A new executor (a new process): only the stored run is needed.
    let done = rig
        .exec()
        .resume(&s.run_id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(status(&done, "b"), StepStatus::Completed);
    assert_eq!((rig.fake.count("a"), rig.fake.count("b")), (1, 1));
}

// ---------------------------------------------------------------------------
// Crash, resume and cancellation.

const TWO: &str = r#"
name: two
steps:
  - { id: a, agent: webster, task: "[id=a]" }
  - { id: b, agent: auditor, task: "[id=b] [hang] {{ steps.a.result }}" }
  - { id: c, agent: auditor, task: "[id=c] {{ steps.b.result }}" }
"#;

#[tokio::test]
async fn resume_after_a_crash_uses_a_handoff_that_landed_meanwhile() {
    let rig = rig();
    // The worst case: no step record lands before the process dies.
    rig.forgetful.forget_steps.store(true, Ordering::SeqCst);
    let run_id = rig.run_until_hung(TWO, "wf-two-crash").await;
    // The run future is dropped: like kill -9 after b was dispatched.
    rig.forgetful.forget_steps.store(false, Ordering::SeqCst);
    let s = read_summary(&*rig.store, &run_id).await.unwrap();
    assert_eq!(s.status, RunStatus::Running);
    assert_eq!(read_step(&*rig.store, &run_id, "a").await.unwrap(), None);
    assert_eq!(read_step(&*rig.store, &run_id, "b").await.unwrap(), None);

    // The agent answers while nobody waits, under the id b was sent with.
    let delegation = attempt_run_id(&run_id, "b", 1);
    let h = Handoff::new(
        delegation.clone(),
        "auditor",
        Status::Complete,
        "late answer",
    );
    rig.store
        .put(Scope::Top, &h, PutMode::Create)
        .await
        .unwrap();

    let done = rig
        .exec()
        .resume(&run_id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(
        (
            rig.fake.count("a"),
            rig.fake.count("b"),
            rig.fake.count("c")
        ),
        (1, 1, 1),
        "nothing re-sent"
    );
    // a's outcome was re-derived from its handoff, b's was awaited.
    let a = read_step(&*rig.store, &run_id, "a").await.unwrap().unwrap();
    assert_eq!(a.status, StepStatus::Completed);
    let b = read_step(&*rig.store, &run_id, "b").await.unwrap().unwrap();
    let tried: Vec<(&str, &str)> = b
        .attempts
        .iter()
        .map(|t| (t.run_id.as_str(), t.status.as_str()))
        .collect();
    assert_eq!(tried, [(delegation.as_str(), "complete")]);
    let c = read_step(&*rig.store, &run_id, "c").await.unwrap().unwrap();
    assert_eq!(c.rendered_task.as_deref(), Some("[id=c] late answer"));
}

#[tokio::test]
async fn attempt_run_ids_are_derived_and_stay_within_the_id_limit() {
    let wf = RunId::new("wf-two-20261125T101010Z-0badcafe").unwrap();
    assert_eq!(
        attempt_run_id(&wf, "research", 2).as_str(),
        "wf-two-20261125T101010Z-0badcafe.research.2"
    );
    let long = RunId::new("w".repeat(128)).unwrap();
    let other = RunId::new(format!("{}x", "w".repeat(127))).unwrap();
    let step = "s".repeat(64);
    let a = attempt_run_id(&long, &step, 1);
    let b = attempt_run_id(&other, &step, 1);
    assert_eq!(a.as_str().len(), 128);
    assert!(a.as_str().ends_with(&format!(".{step}.1")), "{a}");
    assert_ne!(a, b, "the hash keeps long ids apart");
    assert_eq!(a, attempt_run_id(&long, &step, 1), "stable");
}

#[tokio::test]
async fn cancelling_marks_the_run_cancelled() {
    let rig = rig();
    let wf = load(TWO, "two.yaml").unwrap();
    let exec = rig.exec();
    let cancel = CancellationToken::new();
    let fire = async {
        rig.fake.hung.notified().await;
        cancel.cancel();
        std::future::pending::<()>().await;
    };
    let s = tokio::select! {
        r = exec.run(&wf, TWO, opts(&wf), &cancel) => r.unwrap(),
        () = fire => unreachable!(),
    };
    assert_eq!(s.status, RunStatus::Cancelled);
    assert_eq!(status(&s, "a"), StepStatus::Completed);
    assert_eq!(status(&s, "b"), StepStatus::Running, "resume re-awaits it");
    assert_eq!(status(&s, "c"), StepStatus::Pending);
    let stored = read_summary(&*rig.store, &s.run_id).await.unwrap();
    assert_eq!(stored.status, RunStatus::Cancelled);
}

#[tokio::test]
async fn a_run_id_is_used_once_and_unknown_runs_are_reported() {
    let rig = rig();
    let yaml = "name: one\nsteps:\n  - { id: a, agent: webster, task: \"[id=a]\" }\n";
    let wf = load(yaml, "one.yaml").unwrap();
    let s = rig.run(yaml).await;
    let mut o = opts(&wf);
    o.run_id = Some(s.run_id.clone());
    let err = rig
        .exec()
        .run(&wf, yaml, o, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = rig
        .exec()
        .resume(&RunId::new("wf-nope").unwrap(), &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "no workflow run wf-nope in the store");
}

#[tokio::test]
async fn resume_sends_again_when_the_in_flight_delegation_never_answers() {
    let rig = rig();
    let yaml = r#"
name: lost
steps:
  - { id: b, agent: auditor, task: "[id=b] [hangfirst]", timeout: 300ms }
"#;
    let run_id = rig.run_until_hung(yaml, "wf-lost").await;
    let done = rig
        .exec()
        .resume(&run_id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(rig.fake.count("b"), 2, "re-awaited, then sent again");
    let b = read_step(&*rig.store, &run_id, "b").await.unwrap().unwrap();
    let st: Vec<&str> = b.attempts.iter().map(|a| a.status.as_str()).collect();
    assert_eq!(st, ["lost", "complete"]);
}

#[tokio::test]
async fn resume_asks_the_approver_of_the_new_process() {
    let rig = rig();
    let s = rig.run(APPROVAL).await;
    assert_eq!(s.status, RunStatus::AwaitingApproval);
    let says = Arc::new(Says(ApprovalDecision::Approve, Mutex::default()));
    let exec = rig
        .exec()
        .with_approver(Arc::clone(&says) as Arc<dyn Approver>);
    let done = exec
        .resume(&s.run_id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(says.1.lock().unwrap().len(), 1);
    assert_eq!((rig.fake.count("a"), rig.fake.count("b")), (1, 1));
}

// ---------------------------------------------------------------------------
// Context and routing seams.

/// Serves `CTX <channel> <n>` for every channel but `broken`.
#[derive(Default)]
struct Channels(Mutex<Vec<(String, usize)>>);

#[async_trait]
impl orch_workflow::ContextSource for Channels {
    async fn fetch(&self, channel: &str, messages: usize) -> Result<String, String> {
        self.0.lock().unwrap().push((channel.to_owned(), messages));
        if channel == "broken" {
            return Err("Discord answered 403 Missing Access".to_owned());
        }
        Ok(format!("CTX {channel} {messages}"))
    }
}

#[tokio::test]
async fn a_step_context_is_fetched_once_and_sent_with_the_task() {
    let rig = rig();
    let channels = Arc::new(Channels::default());
    let exec = rig
        .exec()
        .with_context_source(Arc::clone(&channels) as Arc<dyn orch_workflow::ContextSource>);
    let s = rig
        .run_with(
            &exec,
            r#"
name: ctx
steps:
  - id: a
    agent: webster
    task: "[id=a] [failfirst=1] read the thread"
    retries: 1
    context: { channel: technical, messages: 5 }
  - { id: b, agent: auditor, task: "[id=b] no context" }
  - id: c
    agent: auditor
    task: "[id=c] never sent"
    context: { channel: broken }
"#,
        )
        .await;
    assert_eq!(status(&s, "a"), StepStatus::Completed);
    assert_eq!(rig.fake.count("a"), 2, "failed once, retried");
    assert!(rig.fake.last("a").1.contains("CTX technical 5"));
    assert!(!rig.fake.last("b").1.contains("CTX"));
    // Fetched once for both attempts of a; b has none; c's fails.
    assert_eq!(
        *channels.0.lock().unwrap(),
        [("technical".to_owned(), 5), ("broken".to_owned(), 20)]
    );
    assert_eq!(status(&s, "c"), StepStatus::Failed);
    assert_eq!(rig.fake.count("c"), 0, "nothing sent without its context");
    let c = read_step(&*rig.store, &s.run_id, "c")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        c.reason.as_deref(),
        Some("context from `broken`: Discord answered 403 Missing Access")
    );
}

/// Routes tasks that mention an audit to the auditor; nothing else fits.
struct AuditRouter;

impl orch_workflow::StepRouter for AuditRouter {
    fn route(&self, task: &str, caller: &str) -> Option<String> {
        assert_eq!(caller, "manager");
        task.contains("audit").then(|| "auditor".to_owned())
    }
}

const ROUTED: &str = r#"
name: routed
steps:
  - { id: r, route: auto, task: "[id=r] audit the budget" }
  - { id: n, route: auto, task: "[id=n] bake a cake" }
"#;

#[tokio::test]
async fn route_auto_steps_go_where_the_router_says() {
    let rig = rig();
    let exec = rig.exec().with_router(Arc::new(AuditRouter));
    let s = rig.run_with(&exec, ROUTED).await;
    assert_eq!(status(&s, "r"), StepStatus::Completed);
    assert_eq!(rig.fake.last("r").0, "auditor");
    assert_eq!(s.steps["r"].agent.as_deref(), Some("auditor"));
    assert_eq!(status(&s, "n"), StepStatus::Failed);
    assert_eq!(rig.fake.count("n"), 0);
    assert_eq!(
        s.steps["n"].reason.as_deref(),
        Some("no agent fits the task")
    );
}

#[tokio::test]
async fn route_auto_without_a_router_is_refused_before_anything_is_sent() {
    let rig = rig();
    let wf = load(ROUTED, "routed.yaml").unwrap();
    let err = rig
        .exec()
        .run(&wf, ROUTED, opts(&wf), &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "step `r` uses `route: auto`, but no router is configured"
    );
    assert_eq!(rig.fake.count("r") + rig.fake.count("n"), 0);
    assert_eq!(
        rig.store.list_workflow_runs().await.unwrap(),
        [],
        "no run stored"
    );
}

// ---------------------------------------------------------------------------
// Resume with --retry-failed.

const FLAKY: &str = r#"
name: flaky
steps:
  - { id: a, agent: webster, task: "[id=a] [failfirst=1]" }
  - { id: b, agent: auditor, task: "[id=b] {{ steps.a.result }}" }
  - { id: c, agent: tech-lead, task: "[id=c]" }
"#;

#[tokio::test]
async fn resume_retry_failed_restarts_failed_steps_and_their_dependents_only() {
    let rig = rig();
    let s = rig.run(FLAKY).await;
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(status(&s, "a"), StepStatus::Failed);
    assert_eq!(status(&s, "b"), StepStatus::Pending, "on_failure: stop");
    assert_eq!(status(&s, "c"), StepStatus::Completed);

    // A plain resume has nothing to do: the stored run comes back as is.
    let same = rig
        .exec()
        .resume(&s.run_id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(same, s);
    assert_eq!(rig.fake.count("a"), 1);

    let opts = orch_workflow::ResumeOptions { retry_failed: true };
    let done = rig
        .exec()
        .resume_with(&s.run_id, &opts, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(
        (
            rig.fake.count("a"),
            rig.fake.count("b"),
            rig.fake.count("c")
        ),
        (2, 1, 1),
        "c completed before: not re-run"
    );
    assert_eq!(done.steps["a"].attempts, 2);
    let a = read_step(&*rig.store, &s.run_id, "a")
        .await
        .unwrap()
        .unwrap();
    let ids = |v: &[orch_workflow::Attempt]| -> Vec<(String, String)> {
        v.iter()
            .map(|t| (t.run_id.to_string(), t.status.as_str().to_owned()))
            .collect()
    };
    assert_eq!(
        ids(&a.earlier_attempts),
        [(format!("{}.a.1", s.run_id), "failed".to_owned())]
    );
    assert_eq!(
        ids(&a.attempts),
        [(format!("{}.a.2", s.run_id), "complete".to_owned())]
    );
}

#[tokio::test]
async fn resume_retry_failed_runs_steps_skipped_for_a_failed_dependency() {
    let rig = rig();
    let yaml = r#"
name: flaky-continue
defaults: { on_failure: continue }
steps:
  - { id: a, agent: webster, task: "[id=a] [failfirst=1]" }
  - { id: b, agent: auditor, task: "[id=b] {{ steps.a.result }}" }
  - { id: c, agent: tech-lead, task: "[id=c]", when: "steps.b.status == complete" }
"#;
    let s = rig.run(yaml).await;
    assert_eq!(s.status, RunStatus::CompletedWithFailures);
    assert_eq!(status(&s, "b"), StepStatus::Skipped);
    assert_eq!(status(&s, "c"), StepStatus::Skipped);
    let opts = orch_workflow::ResumeOptions { retry_failed: true };
    let done = rig
        .exec()
        .resume_with(&s.run_id, &opts, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    for step in ["a", "b", "c"] {
        assert_eq!(status(&done, step), StepStatus::Completed, "{step}");
    }
}

// ---------------------------------------------------------------------------
// Sizes: what a record holds, what a task may take.

/// Waits (on real events: the records the run writes) until `step`'s
/// record lists `n` attempts.
async fn until_attempts(store: &dyn HandoffStore, run: &RunId, step: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = read_step(store, run, step).await.unwrap()
            && r.attempts.len() >= n
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{step} never listed {n} attempts"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const FIVE: &str = "{{ steps.r.result }}{{ steps.r.result }}{{ steps.r.result }}{{ steps.r.result }}{{ steps.r.result }}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_stay_readable_with_the_largest_results_through_resume_and_retry_failed() {
    let rig = rig();
    // A transport that takes 64 MiB tasks: the task embeds the largest
    // legal result five times (20 MiB), legally.
    rig.fake.max_task.store(64 << 20, Ordering::SeqCst);
    let yaml = format!(
        r#"
name: big
steps:
  - {{ id: r, agent: webster, task: "[id=r] [big]" }}
  - {{ id: w, agent: auditor, task: "[id=w] [failfirst=1] {FIVE}" }}
  - {{ id: v, agent: tech-lead, task: "[id=v] [failfirst=1] [hangnth=2] {FIVE}", retries: 1 }}
"#
    );
    let wf = load(&yaml, "big.yaml").unwrap();
    let run_id = RunId::new("wf-big").unwrap();
    let mut o = opts(&wf);
    o.run_id = Some(run_id.clone());
    let exec = rig.exec();
    let cancel = CancellationToken::new();
    // w fails; v fails once, then its retry (whose record is written as
    // it goes out) hangs: the process "dies" there.
    let died = async {
        rig.fake.hung.notified().await;
        until_attempts(&*rig.store, &run_id, "v", 2).await;
    };
    tokio::select! {
        r = exec.run(&wf, &yaml, o, &cancel) => panic!("run ended: {r:?}"),
        () = died => {}
    }
    let big = largest_result(&attempt_run_id(&run_id, "r", 1), "webster").len();
    let whole = "[id=v] [failfirst=1] [hangnth=2] ".len() + 5 * big;

    // Every record written reads back: none is over what the store reads.
    let cap = rig.store.max_record_bytes() as usize;
    assert!(
        rig.forgetful.largest_record.load(Ordering::SeqCst) <= cap,
        "a record of {} bytes",
        rig.forgetful.largest_record.load(Ordering::SeqCst)
    );
    let v = read_step(&*rig.store, &run_id, "v").await.unwrap().unwrap();
    assert!(!v.has_whole_task(), "the 20 MiB task is stored cut");
    assert_eq!(v.rendered_task_bytes, Some(whole as u64));
    assert_eq!(
        v.rendered_task.as_ref().unwrap().len(),
        orch_workflow::TASK_KEPT
    );
    assert!(
        v.rendered_task_sha256
            .as_deref()
            .is_some_and(|h| h.len() == 64)
    );
    assert!(v.handoff_run_id.is_some(), "its failed answer is named");

    // Resume: v's delegation died with the process (like sim and exec):
    // sent again at once, with the whole task rendered again.
    rig.fake.dies_with_sender.store(true, Ordering::SeqCst);
    let before = rig.fake.last("v").1;
    let done = rig
        .exec()
        .resume(&run_id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(status(&done, "r"), StepStatus::Completed);
    assert_eq!(status(&done, "w"), StepStatus::Failed);
    assert_eq!(status(&done, "v"), StepStatus::Completed);
    assert_eq!(rig.fake.count("v"), 3);
    let after = rig.fake.last("v").1;
    let task_of = |m: &str| {
        m[m.find("## Task\n\n").unwrap() + 9..]
            .split("\n\n## How to hand off")
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(task_of(&before).len(), whole);
    assert_eq!(task_of(&after), task_of(&before), "the same whole task");
    let v = read_step(&*rig.store, &run_id, "v").await.unwrap().unwrap();
    let st: Vec<&str> = v.attempts.iter().map(|a| a.status.as_str()).collect();
    assert_eq!(st, ["failed", "lost", "complete"]);

    // --retry-failed: w is rendered again from r's handoff (which its
    // record names, not copies) and completes.
    let opts = orch_workflow::ResumeOptions { retry_failed: true };
    let done = rig
        .exec()
        .resume_with(&run_id, &opts, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(rig.fake.count("w"), 2);
    assert_eq!(
        task_of(&rig.fake.last("w").1).len(),
        "[id=w] [failfirst=1] ".len() + 5 * big
    );
    assert!(rig.forgetful.largest_record.load(Ordering::SeqCst) <= cap);
    let r = read_step(&*rig.store, &run_id, "r").await.unwrap().unwrap();
    assert_eq!(
        r.handoff.as_ref().unwrap().result.len(),
        big,
        "read back from the store"
    );
    assert_eq!(
        r.handoff.unwrap().to_json_pretty().len() as u64,
        DEFAULT_MAX_HANDOFF_BYTES,
        "the largest legal handoff"
    );
}

#[tokio::test]
async fn a_task_over_its_transports_limit_fails_its_step_without_being_built_or_stored() {
    let rig = rig();
    // 100 references to the largest legal result: 400 MiB if rendered.
    let hundred = "{{ steps.r.result }}".repeat(100);
    let yaml = format!(
        r#"
name: huge
steps:
  - {{ id: r, agent: webster, task: "[id=r] [big]" }}
  - {{ id: w, agent: auditor, task: "[id=w] {hundred}" }}
"#
    );
    let s = rig.run(&yaml).await;
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(status(&s, "w"), StepStatus::Failed);
    assert_eq!(rig.fake.count("w"), 0, "nothing sent");
    let big = largest_result(&attempt_run_id(&s.run_id, "r", 1), "webster").len() as u64;
    let reason = reason(&s, "w");
    assert!(
        reason.starts_with(&format!(
            "task too large for `auditor`: it would be {} bytes",
            100 * big + 7
        )),
        "{reason}"
    );
    assert!(
        reason.contains(&format!(
            "made of `{{{{ steps.r.result }}}}` ×100: {} bytes",
            100 * big
        )),
        "{reason}"
    );
    let w = read_step(&*rig.store, &s.run_id, "w")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.rendered_task, None, "nothing of it stored");
    assert!(
        w.reason
            .unwrap()
            .contains("fake transport: messages up to 262144 bytes")
    );
    assert!(rig.forgetful.largest_record.load(Ordering::SeqCst) < 64 * 1024);
}

#[tokio::test]
async fn the_limit_is_on_the_message_sent_and_known_parts_are_checked_before_the_run() {
    let rig = rig();
    rig.fake.max_task.store(16 * 1024, Ordering::SeqCst);
    let yaml = r#"
name: sized
inputs:
  text: { required: true }
steps:
  - { id: a, agent: webster, task: "[id=a] {{ inputs.text }}" }
  - { id: b, agent: auditor, task: "[id=b] {{ steps.a.result }} {{ inputs.text }}" }
"#;
    let wf = load(yaml, "sized.yaml").unwrap();
    let with = |text: &str| {
        let inputs: BTreeMap<String, String> = [("text".to_owned(), text.to_owned())].into();
        check_run(&wf, AGENTS, &Policy::atomizer_default(), "manager", &inputs).unwrap()
    };
    // 10 KiB fits a 16 KiB message with orch's instructions.
    let fits = with(&"t".repeat(10 * 1024));
    let s = rig
        .exec()
        .run(
            &wf,
            yaml,
            RunOptions {
                caller: "manager".into(),
                inputs: fits,
                run_id: None,
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(s.status, RunStatus::Completed, "{:?}", s.steps);
    assert!(rig.fake.longest.load(Ordering::SeqCst) <= 16 * 1024);
    assert!(rig.fake.longest.load(Ordering::SeqCst) > 10 * 1024);
    // 15 KiB cannot: refused before anything is stored or sent, at the
    // step's task, for both steps that read it.
    let exec = rig.exec();
    let errors = exec
        .check_task_sizes(&wf, &with(&"t".repeat(15 * 1024)), "manager")
        .unwrap_err();
    let at: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at, [(6, 36), (7, 36)], "{errors:?}");
    assert!(
        errors[0].to_string().starts_with("sized.yaml:6:36: step `a`: task, before any step result, too large for `webster`: at least 15367 bytes (15.0 KiB), over the limit of "),
        "{}",
        errors[0]
    );
    let runs = rig.store.list_workflow_runs().await.unwrap().len();
    let err = exec
        .run(
            &wf,
            yaml,
            RunOptions {
                caller: "manager".into(),
                inputs: with(&"t".repeat(15 * 1024)),
                run_id: None,
            },
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("step `a`: task, before any step result, too large"),
        "{err}"
    );
    assert_eq!(rig.store.list_workflow_runs().await.unwrap().len(), runs);
}

#[tokio::test]
async fn output_reading_a_skipped_step_says_so_and_validate_warns() {
    let rig = rig();
    let yaml = r#"
name: skip
steps:
  - { id: a, agent: webster, task: "[id=a] [c=low]" }
  - { id: b, agent: auditor, task: "[id=b]", when: "steps.a.confidence == high" }
output: "{{ steps.b.result }}"
"#;
    let wf = load(yaml, "skip.yaml").unwrap();
    let warnings: Vec<String> = orch_workflow::warnings(&wf)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        warnings,
        [
            "skip.yaml:6:10: `output` reads step `b`, which its `when: steps.a.confidence == high` may skip: the run would then complete with no output"
        ]
    );
    let s = rig.run(yaml).await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(s.output, None);
    assert_eq!(
        s.output_note.as_deref(),
        Some(
            "no output: it reads step `b`, which was skipped (when `steps.a.confidence == high` is false)"
        )
    );
    assert_eq!(read_summary(&*rig.store, &s.run_id).await.unwrap(), s);
}

#[tokio::test]
async fn resume_sends_a_delegation_that_died_with_its_sender_again_at_once() {
    let rig = rig();
    rig.fake.dies_with_sender.store(true, Ordering::SeqCst);
    let yaml = r#"
name: dead
steps:
  - { id: b, agent: auditor, task: "[id=b] [hangfirst]", timeout: 10m }
"#;
    let run_id = rig.run_until_hung(yaml, "wf-dead").await;
    // Not the ten minutes of its timeout: the guard only keeps a broken
    // build from hanging the suite.
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        rig.exec().resume(&run_id, &CancellationToken::new()),
    )
    .await
    .expect("resume waited for a delegation that cannot answer")
    .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(rig.fake.count("b"), 2);
    assert!(rig.log.pos("lost:b") < rig.log.pos("end:b"));
    assert!(!rig.log.events().contains(&"reawait:b".to_owned()));
    let b = read_step(&*rig.store, &run_id, "b").await.unwrap().unwrap();
    let tried: Vec<(String, &str)> = b
        .attempts
        .iter()
        .map(|a| (a.run_id.to_string(), a.status.as_str()))
        .collect();
    assert_eq!(
        tried,
        [
            ("wf-dead.b.1".to_owned(), "lost"),
            ("wf-dead.b.2".to_owned(), "complete")
        ],
        "a new delegation id (and so a new idempotency key)"
    );
    assert_eq!(
        b.attempts[0].detail.as_deref(),
        Some(
            "its delegation ended with the orch process that sent it (fake transport); sent again"
        )
    );
}

#[tokio::test]
async fn resume_says_which_delegation_it_re_awaits_and_until_when() {
    let rig = rig();
    let yaml = r#"
name: lost
steps:
  - { id: b, agent: auditor, task: "[id=b] [hangfirst]", timeout: 300ms }
"#;
    let run_id = rig.run_until_hung(yaml, "wf-lost").await;
    let log = Arc::new(Events::default());
    let done = rig
        .exec()
        .with_progress(Arc::clone(&log) as Arc<dyn Progress>)
        .resume(&run_id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    let events = log.0.lock().unwrap().clone();
    let ProgressEvent::Reawaiting {
        step,
        agent,
        attempt,
        since,
        until,
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        (step.as_str(), agent.as_str(), *attempt),
        ("b", "auditor", 1)
    );
    assert_eq!(
        until.duration_since(*since),
        jiff::SignedDuration::from_millis(300)
    );
    assert!(
        matches!(&events[1], ProgressEvent::Lost { reason, .. } if reason == "no handoff came before its deadline"),
        "{events:?}"
    );
}

#[derive(Default)]
struct Events(Mutex<Vec<ProgressEvent>>);

impl Progress for Events {
    fn event(&self, e: &ProgressEvent) {
        self.0.lock().unwrap().push(e.clone());
    }
}

#[tokio::test]
async fn a_delegation_the_ledger_saw_end_is_not_mistaken_for_one_in_flight() {
    // The step timed out; its final record never landed (a full disk).
    // Resume takes the end from the ledger: a try used, nothing re-sent.
    let rig = rig();
    rig.forgetful.forget_steps.store(true, Ordering::SeqCst);
    let yaml = r#"
name: ended
steps:
  - { id: h, agent: webster, task: "[id=h] [hang]", timeout: 300ms }
"#;
    let s = rig.run(yaml).await;
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(read_step(&*rig.store, &s.run_id, "h").await.unwrap(), None);
    rig.forgetful.forget_steps.store(false, Ordering::SeqCst);
    let done = rig
        .exec()
        .resume(&s.run_id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(rig.fake.count("h"), 1, "not sent again");
    let h = read_step(&*rig.store, &s.run_id, "h")
        .await
        .unwrap()
        .unwrap();
    let tried: Vec<&str> = h.attempts.iter().map(|a| a.status.as_str()).collect();
    assert_eq!(tried, ["timed-out"]);
    assert_eq!(
        reason(&done, "h"),
        "timed out (recorded in the ledger by the process that sent it)"
    );
}

// ---------------------------------------------------------------------------
// `repeat`.

/// `r` answers low confidence while its task says `[c=low]`; from the
/// second iteration on, `{{ previous.confidence }}` spoils the marker and
/// the fake answers high.
const REPEAT: &str = r#"
name: rep
steps:
  - { id: a, agent: webster, task: "[id=a]" }
  - id: r
    agent: tech-lead
    task: "[id=r] [c=low{{ previous.confidence }}] on {{ steps.a.result }}; last: {{ previous.result }} / {{ previous.reason }}"
    repeat: { until: "confidence >= high and status == complete", max: 3 }
  - { id: z, agent: auditor, task: "[id=z] {{ steps.r.confidence }}" }
"#;

/// How each attempt of `step` ended, with its iteration.
async fn iterations(
    store: &dyn HandoffStore,
    run: &RunId,
    step: &str,
) -> Vec<(&'static str, Option<u32>)> {
    let rec = read_step(store, run, step).await.unwrap().unwrap();
    rec.attempts
        .iter()
        .map(|a| (a.status.as_str(), a.iteration))
        .collect()
}

#[tokio::test]
async fn repeat_asks_again_with_the_last_answer_until_good_enough() {
    let rig = rig();
    let s = rig.run(REPEAT).await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(rig.fake.count("r"), 2, "asked twice");
    assert_eq!(s.steps["r"].iterations, Some(2));
    assert_eq!(s.steps["r"].attempts, 2);
    assert_eq!(s.steps["a"].iterations, None, "not a repeat step");
    let r = read_step(&*rig.store, &s.run_id, "r")
        .await
        .unwrap()
        .unwrap();
    let tried: Vec<(String, Option<u32>)> = r
        .attempts
        .iter()
        .map(|a| (a.run_id.to_string(), a.iteration))
        .collect();
    assert_eq!(
        tried,
        [
            (attempt_run_id(&s.run_id, "r", 1).to_string(), Some(1)),
            (attempt_run_id(&s.run_id, "r", 2).to_string(), Some(2)),
        ],
        "each iteration is its own delegation"
    );
    let why = "until `confidence >= high and status == complete` is false: status complete, confidence low";
    assert_eq!(
        r.attempts[0].detail.as_deref(),
        Some(format!("{why}: asked again").as_str())
    );
    // The second iteration's task reads the first's answer (the record
    // keeps the task last sent).
    assert_eq!(
        r.rendered_task.as_deref(),
        Some(format!("[id=r] [c=lowlow] on result of a; last: result of r / {why}").as_str())
    );
    assert_eq!(
        r.handoff.as_ref().unwrap().confidence,
        Some(Confidence::High)
    );
    // The step's outcome is its last iteration's.
    assert!(rig.fake.last("z").1.contains("[id=z] high"));
    assert!(rig.log.pos("repeat:r:2") > rig.log.pos("start:r"));
    assert!(rig.log.pos("repeat:r:2") < rig.log.pos("end:r"));
}

#[tokio::test]
async fn repeat_renders_previous_empty_on_the_first_iteration() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: rep1
steps:
  - id: r
    agent: tech-lead
    task: "[id=r] <{{ previous.result }}|{{ previous.reason }}|{{ previous.status }}|{{ previous.confidence }}>"
    repeat: { until: "status == complete", max: 3 }
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(rig.fake.count("r"), 1, "good enough at once");
    assert_eq!(s.steps["r"].iterations, Some(1));
    assert!(rig.fake.last("r").1.contains("[id=r] <|||>"));
}

#[tokio::test]
async fn repeat_stops_at_max_and_the_last_answer_goes_to_the_gate() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: repmax
steps:
  - id: r
    agent: tech-lead
    task: "[id=r] [c=low] {{ previous.result }}"
    repeat: { until: "confidence >= high", max: 2 }
  - id: g
    agent: tech-lead
    task: "[id=g] [c=low] {{ previous.result }}"
    repeat: { until: "confidence >= high", max: 2 }
    gate: { min_confidence: medium }
    on_failure: continue
"#,
        )
        .await;
    assert_eq!(rig.fake.count("r"), 2, "at most `max`");
    assert_eq!(rig.fake.count("g"), 2);
    // No gate: the last answer stands.
    assert_eq!(status(&s, "r"), StepStatus::Completed);
    let r = read_step(&*rig.store, &s.run_id, "r")
        .await
        .unwrap()
        .unwrap();
    let last = r.attempts.last().unwrap().detail.clone().unwrap();
    assert!(last.contains("after 2 iterations"), "{last}");
    // A gate judges the last answer as it would any.
    assert_eq!(status(&s, "g"), StepStatus::Failed);
    assert!(
        reason(&s, "g").contains("confidence"),
        "{}",
        reason(&s, "g")
    );
    assert_eq!(s.status, RunStatus::CompletedWithFailures);
}

#[tokio::test]
async fn retries_are_counted_per_iteration() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: reptry
steps:
  - id: r
    agent: tech-lead
    retries: 1
    task: "[id=r] [failfirst=1] [c=low{{ previous.status }}]"
    repeat: { until: "confidence >= high", max: 3 }
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(
        iterations(&*rig.store, &s.run_id, "r").await,
        [
            ("failed", Some(1)),
            ("complete", Some(1)),
            ("complete", Some(2))
        ]
    );
}

#[tokio::test]
async fn resume_of_a_repeat_step_sends_no_iteration_twice() {
    // With the step records as written, and the worst case: none lands.
    for forget in [false, true] {
        resume_of_a_repeat_step(forget).await;
    }
}

async fn resume_of_a_repeat_step(forget: bool) {
    let rig = rig();
    // The second iteration's delegation dies with the process (its
    // transport does not outlive it).
    rig.forgetful.forget_steps.store(forget, Ordering::SeqCst);
    rig.fake.dies_with_sender.store(true, Ordering::SeqCst);
    let yaml = REPEAT.replace("[id=r]", "[id=r] [hangnth=2]");
    let run_id = rig.run_until_hung(&yaml, "wf-rep-crash").await;
    rig.forgetful.forget_steps.store(false, Ordering::SeqCst);
    assert_eq!(rig.fake.count("r"), 2);

    let done = rig
        .exec()
        .resume(&run_id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    // Iteration 1 answered before the crash: kept or re-derived, never
    // sent again; iteration 2 died with its sender: sent once more, as
    // delegation 3, with iteration 1's answer in its task.
    assert_eq!((rig.fake.count("a"), rig.fake.count("r")), (1, 3));
    assert_eq!(
        iterations(&*rig.store, &run_id, "r").await,
        [
            ("complete", Some(1)),
            ("lost", Some(2)),
            ("complete", Some(2))
        ]
    );
    let sent = rig.fake.last("r").1;
    assert!(
        sent.contains("[c=lowlow] on result of a; last: result of r / until `confidence"),
        "forget {forget}: {sent}"
    );
    assert_eq!(done.steps["r"].iterations, Some(2));
}
