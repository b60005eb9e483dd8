//! Delegator integration tests: a real `FsStore` in a temp dir and scripted
//! fake transports that answer like agents (they write handoffs into the
//! store), record every envelope, and fail, ack or complete as scripted.

use orch_handoff::prelude::*;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orch_delegate::orch_acl::{AclError, Policy};
use orch_delegate::orch_handoff::{
    Confidence, FsStore, FsStoreConfig, Handoff, HandoffKey, HandoffStore, LedgerEvent,
    LedgerEventKind, RunId, Scope, Status,
};
use orch_delegate::{
    Ack, AgentEntry, Completion, DelegateError, DelegationEvent, Delegator, DelegatorConfig, End,
    Envelope, GaveUp, Outcome, OutcomeStatus, Request, RetryPolicy, RetryWait, Transport,
    TransportError, Unacknowledged, WaitRule,
};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use LedgerEventKind as K;

// ---------------------------------------------------------------------------
// The scripted fake agent.

/// What the fake does on one `dispatch` call.
#[derive(Clone)]
enum Act {
    /// Write a valid handoff with this status, then ack.
    Answer(Status),
    /// Write a valid handoff with this status and notes, then ack.
    AnswerWithNotes(Status, &'static str),
    /// Write a valid handoff claiming to be from another agent, then ack.
    AnswerAs(&'static str),
    /// Write these bytes as the handoff, then ack.
    Raw(&'static str),
    /// Ack without writing anything.
    Ack,
    /// Ack reporting that the agent's run ended, without writing anything.
    Ended(&'static str),
    /// Fail with this error.
    Fail(TransportError),
    /// Write a valid handoff, then keep the dispatch running until the
    /// fake's `release` is notified (like `exec` waiting for its child).
    AnswerThenHold,
    /// Wait this long, then fail with a connect error saying so (a gateway
    /// that never answers, and the transport's request timeout).
    Hang(Duration),
}

struct Fake {
    store: FsStore,
    script: Mutex<VecDeque<Act>>,
    /// Every envelope received, with the (tokio) time it arrived.
    envelopes: Mutex<Vec<(Envelope, Instant)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Times to yield inside `dispatch`, so concurrent delegations overlap.
    yields: usize,
    dispatched: Notify,
    release: Notify,
    finished: AtomicUsize,
    finished_notify: Notify,
    /// [`Transport::max_task_bytes`], if not the default.
    max_task: Option<u64>,
}

impl Fake {
    fn new(store: FsStore, script: Vec<Act>) -> Self {
        Self {
            store,
            script: Mutex::new(script.into()),
            envelopes: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            yields: 0,
            dispatched: Notify::new(),
            release: Notify::new(),
            finished: AtomicUsize::new(0),
            finished_notify: Notify::new(),
            max_task: None,
        }
    }

    fn envelopes(&self) -> Vec<Envelope> {
        self.envelopes
            .lock()
            .unwrap()
            .iter()
            .map(|(e, _)| e.clone())
            .collect()
    }

    fn times(&self) -> Vec<Instant> {
        self.envelopes
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t)| *t)
            .collect()
    }

    fn distinct_keys(&self) -> usize {
        self.envelopes()
            .iter()
            .map(Envelope::idempotency_key)
            .collect::<HashSet<_>>()
            .len()
    }

    /// Writes the handoff like an agent would (temp file, rename), but
    /// synchronously: the file is in place before `dispatch` returns, in
    /// the same poll, so the delegator always sees the ack first.
    fn write(&self, env: &Envelope, agent: &str, status: Status, notes: &str) {
        let mut h = Handoff::new(
            env.run_id.clone(),
            agent,
            status,
            format!("result of {} (ask {})", env.run_id, env.attempt),
        );
        h.confidence = Some(Confidence::High);
        h.notes = notes.to_owned();
        self.write_raw(env, &h.to_json_pretty());
    }

    fn write_raw(&self, env: &Envelope, bytes: &[u8]) {
        let key = HandoffKey {
            scope: env.scope,
            run_id: env.run_id.clone(),
        };
        let path = self.store.path_of(&key);
        assert_eq!(path.display().to_string(), env.handoff_location);
        let tmp = path.with_file_name(format!(".{}.tmp", env.run_id));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    async fn act(&self, env: &Envelope, act: Act) -> Result<Ack, TransportError> {
        let ack = Ok(Ack {
            remote_run_id: Some(format!("remote-{}", env.idempotency_key())),
            completion: None,
        });
        match act {
            Act::Answer(status) => self.write(env, &env.agent, status, ""),
            Act::AnswerWithNotes(status, notes) => self.write(env, &env.agent, status, notes),
            Act::AnswerAs(agent) => self.write(env, agent, Status::Complete, ""),
            Act::Raw(bytes) => self.write_raw(env, bytes.as_bytes()),
            Act::Ack => {}
            Act::Ended(detail) => {
                return Ok(Ack {
                    remote_run_id: None,
                    completion: Some(Completion {
                        ok: false,
                        detail: detail.to_owned(),
                    }),
                });
            }
            Act::Fail(e) => return Err(e),
            Act::AnswerThenHold => {
                self.write(env, &env.agent, Status::Complete, "");
                self.release.notified().await;
            }
            Act::Hang(d) => {
                tokio::time::sleep(d).await;
                return Err(TransportError::Connect {
                    message: format!(
                        "POST http://gw/hooks/agent: the gateway did not answer within {}s",
                        d.as_secs()
                    ),
                });
            }
        }
        ack
    }
}

#[async_trait]
impl Transport for Fake {
    fn name(&self) -> &str {
        "fake"
    }

    fn max_task_bytes(&self) -> u64 {
        self.max_task
            .unwrap_or(orch_delegate::DEFAULT_MAX_TASK_BYTES)
    }

    async fn dispatch(&self, envelope: &Envelope) -> Result<Ack, TransportError> {
        self.envelopes
            .lock()
            .unwrap()
            .push((envelope.clone(), Instant::now()));
        self.dispatched.notify_one();
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        for _ in 0..self.yields {
            tokio::task::yield_now().await;
        }
        let act = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Act::Answer(Status::Complete));
        let result = self.act(envelope, act).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.finished.fetch_add(1, Ordering::SeqCst);
        self.finished_notify.notify_one();
        result
    }
}

// ---------------------------------------------------------------------------
// The rig.

struct Rig {
    _dir: tempfile::TempDir,
    fs: FsStore,
    delegator: Delegator,
    fakes: BTreeMap<String, Arc<Fake>>,
    /// What the Delegator's observer saw.
    events: Arc<Mutex<Vec<DelegationEvent>>>,
}

/// Agents of the default policy used here: manager may delegate to all,
/// tech-lead to webster and secretary (among others), nobody else to
/// anyone.
fn rig(agents: Vec<(&str, Vec<Act>)>) -> Rig {
    rig_with(
        agents,
        Policy::atomizer_default(),
        DelegatorConfig::default(),
        |_| {},
    )
}

fn rig_with(
    agents: Vec<(&str, Vec<Act>)>,
    policy: Policy,
    config: DelegatorConfig,
    edit: impl Fn(&mut AgentEntry),
) -> Rig {
    rig_full(agents, policy, config, 0, edit)
}

fn rig_full(
    agents: Vec<(&str, Vec<Act>)>,
    policy: Policy,
    config: DelegatorConfig,
    yields: usize,
    edit: impl Fn(&mut AgentEntry),
) -> Rig {
    rig_sized(agents, policy, config, yields, None, edit)
}

fn rig_sized(
    agents: Vec<(&str, Vec<Act>)>,
    policy: Policy,
    config: DelegatorConfig,
    yields: usize,
    max_task: Option<u64>,
    edit: impl Fn(&mut AgentEntry),
) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(FsStoreConfig::new(dir.path().join("store"))).unwrap();
    let store: Arc<dyn HandoffStore> = Arc::new(fs.clone());
    let mut fakes = BTreeMap::new();
    let mut entries = Vec::new();
    for (id, script) in agents {
        let mut fake = Fake::new(fs.clone(), script);
        fake.yields = yields;
        fake.max_task = max_task;
        let fake = Arc::new(fake);
        fakes.insert(id.to_owned(), Arc::clone(&fake));
        let mut entry = AgentEntry::new(id, fake);
        edit(&mut entry);
        entries.push(entry);
    }
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let delegator = Delegator::new(store, policy, entries, config)
        .unwrap()
        .with_observer(move |e| seen.lock().unwrap().push(e.clone()));
    Rig {
        _dir: dir,
        fs,
        delegator,
        fakes,
        events,
    }
}

impl Rig {
    fn fake(&self, id: &str) -> &Fake {
        &self.fakes[id]
    }

    async fn delegate(&self, request: Request) -> Result<Outcome, DelegateError> {
        self.delegator
            .delegate(request, &CancellationToken::new())
            .await
    }

    async fn ledger(&self) -> Vec<LedgerEvent> {
        let read = self.fs.read_ledger().await.unwrap();
        assert!(read.bad_lines.is_empty(), "{:?}", read.bad_lines);
        read.events
    }

    async fn kinds(&self) -> Vec<LedgerEventKind> {
        self.ledger().await.iter().map(|e| e.event).collect()
    }
}

fn ask(agent: &str, caller: &str) -> Request {
    let mut r = Request::new(agent, format!("task for {agent}"), caller);
    r.timeout = Duration::from_secs(30);
    r
}

fn unavailable(retry_after: Option<Duration>) -> TransportError {
    TransportError::Unavailable {
        message: "busy".into(),
        retry_after,
    }
}

// ---------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn success() {
    let rig = rig(vec![("webster", vec![Act::Answer(Status::Complete)])]);
    let out = rig.delegate(ask("webster", "manager")).await.unwrap();

    assert_eq!(out.status(), OutcomeStatus::Complete);
    assert_eq!(out.end, End::Handoff);
    assert_eq!((out.dispatches, out.reasks), (1, 0));
    assert_eq!(out.scope, Scope::Top);
    let h = out.handoff.as_ref().unwrap();
    assert_eq!(
        (h.run_id.clone(), h.agent.as_str()),
        (out.run_id.clone(), "webster")
    );
    let expected_path = rig.fs.path_of(&HandoffKey::top(out.run_id.clone()));
    assert_eq!(out.handoff_path, expected_path.display().to_string());
    assert!(out.timings.acked_after.is_some() && out.timings.handoff_after.is_some());

    let envs = rig.fake("webster").envelopes();
    assert_eq!(envs.len(), 1);
    let env = &envs[0];
    assert_eq!(
        (env.attempt, env.scope, env.parent.clone()),
        (1, Scope::Top, None)
    );
    assert_eq!(
        (env.agent.as_str(), env.caller.as_str()),
        ("webster", "manager")
    );
    assert_eq!(env.handoff_location, out.handoff_path);
    let header = env.message.lines().next().unwrap();
    assert!(header.ends_with(&out.handoff_path), "{header}");
    assert!(env.message.contains("task for webster"));

    let ledger = rig.ledger().await;
    let kinds: Vec<_> = ledger.iter().map(|e| e.event).collect();
    assert_eq!(kinds, [K::Dispatched, K::Acked, K::Handoff]);
    for e in &ledger {
        assert_eq!(e.run_id.as_ref(), Some(&out.run_id));
        assert_eq!(e.agent.as_deref(), Some("webster"));
        assert_eq!(e.caller.as_deref(), Some("manager"));
        assert!(e.ts.parse::<jiff::Timestamp>().is_ok(), "{}", e.ts);
    }
    let handoff = &ledger[2];
    assert_eq!(handoff.status, Some(Status::Complete));
    assert_eq!(handoff.confidence, Some(Confidence::High));
    assert!(handoff.latency_ms.is_some());
    assert_eq!(
        ledger[1].detail.as_deref(),
        Some(format!("remote-{}", out.run_id).as_str())
    );
}

#[tokio::test]
async fn each_status_maps_to_the_outcome_status() {
    let cases = [
        (Status::Complete, OutcomeStatus::Complete),
        (Status::Partial, OutcomeStatus::Partial),
        (Status::Blocked, OutcomeStatus::Blocked),
        (Status::Failed, OutcomeStatus::Failed),
    ];
    let script = cases.iter().map(|(s, _)| Act::Answer(*s)).collect();
    let rig = rig(vec![("webster", script)]);
    for (status, expected) in cases {
        let out = rig.delegate(ask("webster", "manager")).await.unwrap();
        assert_eq!(out.handoff.as_ref().unwrap().status, status);
        assert_eq!(out.status(), expected, "{status:?}");
    }
}

#[tokio::test]
async fn acl_denial_sends_nothing_and_is_in_the_ledger() {
    let rig = rig(vec![("webster", vec![]), ("secretary", vec![])]);
    let err = rig.delegate(ask("secretary", "webster")).await.unwrap_err();
    assert!(
        matches!(&err, DelegateError::Denied(AclError::Denied { caller, target, .. }) if caller == "webster" && target == "secretary"),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), 3);
    assert!(rig.fake("secretary").envelopes().is_empty());
    let ledger = rig.ledger().await;
    assert_eq!(ledger.len(), 1);
    let e = &ledger[0];
    assert_eq!(e.event, K::Denied);
    assert_eq!(
        (e.caller.as_deref(), e.agent.as_deref()),
        (Some("webster"), Some("secretary"))
    );
    assert_eq!(e.detail.as_deref(), Some(err.to_string().as_str()));
    // Nothing was subscribed either.
    assert_eq!(rig.fs.watchers_created(), 0);
}

#[tokio::test]
async fn unknown_agent() {
    let rig = rig(vec![("webster", vec![]), ("auditor", vec![])]);
    let err = rig.delegate(ask("websterr", "manager")).await.unwrap_err();
    match &err {
        DelegateError::UnknownAgent { agent, known } => {
            assert_eq!(agent, "websterr");
            assert_eq!(known, &["auditor", "webster"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.exit_code(), 2);
    assert_eq!(
        err.to_string(),
        "unknown agent \"websterr\"; known agents: auditor, webster"
    );
    assert!(rig.ledger().await.is_empty());
}

const INVALID: &str = r#"{"schemaVersion": "1.0"}"#;

#[tokio::test]
async fn reask_then_success() {
    let rig = rig(vec![(
        "webster",
        vec![Act::Raw(INVALID), Act::Answer(Status::Complete)],
    )]);
    let out = rig.delegate(ask("webster", "manager")).await.unwrap();
    assert_eq!(out.status(), OutcomeStatus::Complete);
    assert_eq!((out.dispatches, out.reasks), (2, 1));

    let ledger = rig.ledger().await;
    let kinds: Vec<_> = ledger.iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [
            K::Dispatched,
            K::Acked,
            K::Invalid,
            K::Reasked,
            K::Acked,
            K::Handoff
        ]
    );
    let error = ledger[2].detail.clone().unwrap();
    assert!(
        error.starts_with("missing required fields `runId`"),
        "{error}"
    );
    assert_eq!(ledger[3].attempt, Some(2));
    assert_eq!(ledger[3].detail.as_deref(), Some(error.as_str()));

    let envs = rig.fake("webster").envelopes();
    assert_eq!(envs.len(), 2);
    assert_eq!(envs[1].attempt, 2);
    assert_eq!(envs[1].idempotency_key(), format!("{}.reask-1", out.run_id));
    assert!(
        envs[1].message.contains(&format!("    {error}\n")),
        "{}",
        envs[1].message
    );
    assert!(!envs[0].message.contains("Asked again"));

    // The invalid file was moved aside, not lost.
    let path = rig.fs.path_of(&HandoffKey::top(out.run_id.clone()));
    let rejected = format!("{}.rejected-1", path.display());
    assert_eq!(std::fs::read_to_string(rejected).unwrap(), INVALID);
}

#[tokio::test]
async fn reask_then_failure() {
    let rig = rig(vec![(
        "webster",
        vec![Act::Raw(INVALID), Act::Raw(r#"{"schemaVersion": "2.0"}"#)],
    )]);
    let out = rig.delegate(ask("webster", "manager")).await.unwrap();
    assert!(
        matches!(&out.end, End::Invalid { error } if error.to_string().starts_with("unsupported schemaVersion \"2.0\"")),
        "{:?}",
        out.end
    );
    assert_eq!(out.status(), OutcomeStatus::Failed);
    assert_eq!(out.handoff, None);
    assert_eq!(
        rig.kinds().await,
        [
            K::Dispatched,
            K::Acked,
            K::Invalid,
            K::Reasked,
            K::Acked,
            K::Invalid
        ]
    );
}

#[tokio::test]
async fn a_handoff_from_another_agent_is_invalid() {
    let rig = rig(vec![(
        "webster",
        vec![Act::AnswerAs("secretary"), Act::Answer(Status::Complete)],
    )]);
    let out = rig.delegate(ask("webster", "manager")).await.unwrap();
    assert_eq!((out.status(), out.reasks), (OutcomeStatus::Complete, 1));
    let ledger = rig.ledger().await;
    assert_eq!(
        ledger[2].detail.as_deref(),
        Some(
            "handoff agent is \"secretary\", expected \"webster\": the handoff was written by another agent; write your own agent id"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn timeout() {
    let rig = rig(vec![("webster", vec![Act::Ack])]);
    let mut r = ask("webster", "manager");
    r.timeout = Duration::from_secs(120);
    let t0 = Instant::now();
    let out = rig.delegate(r).await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(120));
    assert_eq!(out.end, End::TimedOut);
    assert_eq!(out.status(), OutcomeStatus::TimedOut);
    let ledger = rig.ledger().await;
    let last = ledger.last().unwrap();
    assert_eq!(last.event, K::Timeout);
    assert_eq!(last.detail.as_deref(), Some("no handoff within 2m"));
    assert_eq!(last.latency_ms, Some(120_000));
}

/// A handoff still cut off at the deadline (an agent that died mid-write)
/// is a timeout that says a partial file was seen, not an invalid answer
/// (and no re-ask is wasted on a run whose time is up).
#[tokio::test(start_paused = true)]
async fn a_handoff_still_cut_off_at_the_deadline_is_a_timeout() {
    let rig = rig(vec![(
        "webster",
        vec![Act::Raw("{\"schemaVersion\": \"1.0\",")],
    )]);
    let mut r = ask("webster", "manager");
    r.timeout = Duration::from_secs(120);
    let out = rig.delegate(r).await.unwrap();
    assert_eq!(out.end, End::TimedOut);
    assert_eq!(out.status(), OutcomeStatus::TimedOut);
    assert_eq!(out.reasks, 0);
    let reason = out.timeout_reason().unwrap();
    assert!(
        reason.starts_with("a partial file was seen: handoff is truncated"),
        "{reason}"
    );
    let json = serde_json::to_value(&out).unwrap();
    assert_eq!(json["end"]["kind"], "timed-out");
    assert_eq!(json["end"]["detail"], reason.as_str());
    let ledger = rig.ledger().await;
    let last = ledger.last().unwrap();
    assert_eq!(last.event, K::Timeout);
    let detail = last.detail.as_deref().unwrap();
    assert!(
        detail.starts_with("no handoff within 2m; a partial file was seen: handoff is truncated"),
        "{detail}"
    );
    assert_eq!(rig.kinds().await, [K::Dispatched, K::Acked, K::Timeout]);
}

/// The caller goes into the ledger and into the task message: a name that
/// is not an agent id is refused before anything is sent or written.
#[tokio::test]
async fn a_caller_that_is_not_an_agent_id_is_refused() {
    let rig = rig(vec![("webster", vec![])]);
    for caller in ["manager\u{1b}[31m", "man ager", "manager\u{202e}", ""] {
        let err = rig.delegate(ask("webster", caller)).await.unwrap_err();
        assert_eq!(err.exit_code(), 2, "{caller:?}: {err}");
        let message = err.to_string();
        assert!(
            message.starts_with("the caller is not an agent id"),
            "{message}"
        );
        assert!(
            !message.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{message:?}"
        );
    }
    assert!(rig.fake("webster").envelopes().is_empty());
    assert_eq!(rig.kinds().await, []);
}

#[tokio::test(start_paused = true)]
async fn retryable_errors_are_retried_with_the_same_key() {
    let connect = TransportError::Connect {
        message: "connection refused".into(),
    };
    let rig = rig(vec![(
        "webster",
        vec![
            Act::Fail(unavailable(None)),
            Act::Fail(connect),
            Act::Answer(Status::Complete),
        ],
    )]);
    let out = rig.delegate(ask("webster", "manager")).await.unwrap();
    assert_eq!(out.status(), OutcomeStatus::Complete);
    assert_eq!((out.dispatches, out.reasks), (3, 0));

    let fake = rig.fake("webster");
    assert_eq!(fake.envelopes().len(), 3);
    assert_eq!(fake.distinct_keys(), 1, "retried without a second dispatch");
    let t = fake.times();
    assert_eq!(t[1] - t[0], Duration::from_millis(250));
    assert_eq!(t[2] - t[1], Duration::from_millis(500));

    let ledger = rig.ledger().await;
    let kinds: Vec<_> = ledger.iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [K::Dispatched, K::Retried, K::Retried, K::Acked, K::Handoff]
    );
    assert_eq!(
        ledger[1].detail.as_deref(),
        Some("try 1 failed: the receiver is unavailable: busy; next try in 250ms")
    );
    assert_eq!(
        ledger[2].detail.as_deref(),
        Some("try 2 failed: could not reach the receiver: connection refused; next try in 500ms")
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_capped() {
    let rig = rig(vec![(
        "webster",
        vec![
            Act::Fail(unavailable(Some(Duration::from_secs(3)))),
            Act::Answer(Status::Complete),
            Act::Fail(unavailable(Some(Duration::from_secs(90)))),
            Act::Answer(Status::Complete),
        ],
    )]);
    let mut r = ask("webster", "manager");
    r.timeout = Duration::from_secs(300);
    rig.delegate(r.clone()).await.unwrap();
    rig.delegate(r).await.unwrap();
    let t = rig.fake("webster").times();
    assert_eq!(t[1] - t[0], Duration::from_secs(3), "honoured");
    assert_eq!(
        t[3] - t[2],
        Duration::from_secs(60),
        "capped by max_retry_after"
    );
}

#[tokio::test(start_paused = true)]
async fn no_retry_past_the_deadline() {
    let rig = rig(vec![(
        "webster",
        vec![Act::Fail(unavailable(Some(Duration::from_secs(45))))],
    )]);
    let t0 = Instant::now();
    let err = rig.delegate(ask("webster", "manager")).await.unwrap_err();
    assert_eq!(
        t0.elapsed(),
        Duration::ZERO,
        "failed at once, no useless wait"
    );
    assert!(
        matches!(err, DelegateError::Transport { attempts: 1, .. }),
        "{err:?}"
    );
    let ledger = rig.ledger().await;
    assert!(
        ledger
            .last()
            .unwrap()
            .detail
            .as_deref()
            .unwrap()
            .ends_with(
                "(1 try; gave up: the next try, in 45s (as Retry-After asked), would start after the deadline (in 30s))"
            )
    );
}

/// `max_attempts` is an optional cap on top of the deadline.
#[tokio::test(start_paused = true)]
async fn a_retry_cap_stops_at_max_attempts() {
    let config = DelegatorConfig {
        retry: RetryPolicy {
            max_attempts: Some(5),
            ..RetryPolicy::default()
        },
        ..DelegatorConfig::default()
    };
    let rig = rig_with(
        vec![("webster", vec![Act::Fail(unavailable(None)); 6])],
        Policy::atomizer_default(),
        config,
        |_| {},
    );
    let err = rig.delegate(ask("webster", "manager")).await.unwrap_err();
    assert!(
        matches!(
            err,
            DelegateError::Transport {
                attempts: 5,
                gave_up: GaveUp::MaxTries(5),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), 4);
    assert_eq!(
        err.to_string(),
        "dispatch to webster failed after 5 tries: the receiver is unavailable: busy; gave up: the retry policy allows 5 tries"
    );
    assert_eq!(rig.fake("webster").envelopes().len(), 5);
    let ledger = rig.ledger().await;
    let kinds: Vec<_> = ledger.iter().map(|e| e.event).collect();
    assert_eq!(kinds.iter().filter(|k| **k == K::Retried).count(), 4);
    assert_eq!(kinds.last(), Some(&K::Failed));
    assert_eq!(
        ledger[1].detail.as_deref(),
        Some("try 1 of 5 failed: the receiver is unavailable: busy; next try in 250ms")
    );
}

/// A gateway restarting for a minute: the default policy retries, with
/// the capped exponential backoff, until the delegation's deadline, and
/// the observer sees every retry as it happens.
#[tokio::test(start_paused = true)]
async fn retries_ride_a_restart_until_the_deadline() {
    let refused = TransportError::Connect {
        message: "POST http://gw/hooks/agent: cannot connect: Connection refused".into(),
    };
    let mut script = vec![Act::Fail(refused.clone()); 12];
    script.push(Act::Answer(Status::Complete));
    let rig = rig(vec![("webster", script)]);
    let mut r = ask("webster", "manager");
    r.timeout = Duration::from_secs(120);
    let out = rig.delegate(r).await.unwrap();
    assert_eq!(out.status(), OutcomeStatus::Complete);
    assert_eq!(out.dispatches, 13);

    let fake = rig.fake("webster");
    assert_eq!(fake.distinct_keys(), 1, "every try is the same request");
    let t = fake.times();
    let gaps: Vec<u128> = t.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    assert_eq!(
        gaps,
        [
            250, 500, 1000, 2000, 4000, 8000, 8000, 8000, 8000, 8000, 8000, 8000
        ]
    );
    // Down for 63.75 s, answered at once when back.
    assert_eq!(out.timings.acked_after, Some(Duration::from_millis(63_750)));

    // Twelve retries, then the acknowledgement of the thirteenth try.
    let events = rig.events.lock().unwrap().clone();
    assert_eq!(events.len(), 13, "{events:?}");
    let DelegationEvent::Acked(acked) = &events[12] else {
        panic!("{events:?}");
    };
    assert_eq!(
        (&acked.run_id, acked.agent.as_str(), acked.ask),
        (&out.run_id, "webster", 1)
    );
    let DelegationEvent::Retrying(last) = &events[11] else {
        panic!("{events:?}");
    };
    assert_eq!((last.failed_try, last.ask, last.max_tries), (12, 1, None));
    assert_eq!(last.run_id, out.run_id);
    assert_eq!(last.error, refused);
    assert_eq!(
        last.wait,
        RetryWait {
            delay: Duration::from_secs(8),
            rule: WaitRule::Backoff
        }
    );
    insta::assert_snapshot!(
        events[0].to_string(),
        @"dispatch to webster: try 1 failed: could not reach the receiver: POST http://gw/hooks/agent: cannot connect: Connection refused; next try in 250ms"
    );
    let kinds = rig.kinds().await;
    assert_eq!(kinds.iter().filter(|k| **k == K::Retried).count(), 12);
}

/// A `Retry-After` of 0 or a date in the past (0 after parsing) never
/// makes the delegator retry at once: it waits the backoff.
#[tokio::test(start_paused = true)]
async fn a_retry_after_in_the_past_waits_the_backoff() {
    let mut script = vec![Act::Fail(unavailable(Some(Duration::ZERO))); 4];
    script.push(Act::Answer(Status::Complete));
    let rig = rig(vec![("webster", script)]);
    rig.delegate(ask("webster", "manager")).await.unwrap();
    let t = rig.fake("webster").times();
    let gaps: Vec<u128> = t.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    assert_eq!(gaps, [250, 500, 1000, 2000]);
    let ledger = rig.ledger().await;
    assert_eq!(
        ledger[1].detail.as_deref(),
        Some(
            "try 1 failed: the receiver is unavailable: busy; next try in 250ms (Retry-After asked for 0s, raised to the backoff)"
        )
    );
}

/// A huge `Retry-After` is capped at `max_retry_after`; when even that
/// does not fit before the deadline, the error says so.
#[tokio::test(start_paused = true)]
async fn a_retry_after_too_long_for_the_deadline_says_why_it_gave_up() {
    let huge = Some(Duration::from_secs(100_000));
    let rig = rig(vec![(
        "webster",
        vec![
            Act::Fail(unavailable(huge)),
            Act::Fail(unavailable(huge)),
            Act::Answer(Status::Complete),
        ],
    )]);
    let t0 = Instant::now();
    let err = rig.delegate(ask("webster", "manager")).await.unwrap_err();
    assert_eq!(t0.elapsed(), Duration::ZERO, "no useless wait");
    let DelegateError::Transport { gave_up, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        *gave_up,
        GaveUp::OutOfTime {
            wait: RetryWait {
                delay: Duration::from_secs(60),
                rule: WaitRule::RetryAfterCapped {
                    asked: Duration::from_secs(100_000)
                }
            },
            left: Duration::from_secs(30),
        }
    );
    insta::assert_snapshot!(
        err.to_string(),
        @"dispatch to webster failed after 1 try: the receiver is unavailable: busy; gave up: the next try, in 1m (Retry-After asked for 100000s, capped at max_retry_after), would start after the deadline (in 30s)"
    );
    // With time for it, the capped wait is waited.
    let mut r = ask("webster", "manager");
    r.timeout = Duration::from_secs(300);
    rig.delegate(r).await.unwrap();
    let t = rig.fake("webster").times();
    assert_eq!(t[2] - t[1], Duration::from_secs(60));
}

/// A gateway that never answers: every try times out in the transport and
/// is retried, the deadline passes, and the outcome says the transport
/// never acknowledged the task, with what each try said.
#[tokio::test(start_paused = true)]
async fn a_hanging_gateway_times_out_saying_it_never_answered() {
    let rig = rig(vec![(
        "webster",
        vec![Act::Hang(Duration::from_secs(30)); 5],
    )]);
    let mut r = ask("webster", "manager");
    r.timeout = Duration::from_secs(120);
    let out = rig.delegate(r).await.unwrap();
    assert_eq!(out.end, End::TimedOut);
    assert_eq!(out.status(), OutcomeStatus::TimedOut);
    // Tries at 0, 30.25, 60.75 and 91.75 s: the fourth is still waiting.
    let u = out.unacknowledged.clone().unwrap();
    assert_eq!((u.tries, u.failures, u.alike), (4, 3, true));
    insta::assert_snapshot!(
        u.to_string(),
        @"the transport never acknowledged the task: 3 tries, each failed: could not reach the receiver: POST http://gw/hooks/agent: the gateway did not answer within 30s; try 4 was still waiting for an answer at the deadline"
    );
    let ledger = rig.ledger().await;
    let last = ledger.last().unwrap();
    assert_eq!(last.event, K::Timeout);
    assert_eq!(
        last.detail.as_deref(),
        Some(format!("no handoff within 2m ({u})").as_str())
    );
    let json = serde_json::to_value(&out).unwrap();
    assert_eq!(
        json["end"],
        serde_json::json!({ "kind": "timed-out", "detail": u.to_string() })
    );
}

/// A first try still waiting at the deadline says that much.
#[tokio::test(start_paused = true)]
async fn a_first_try_still_waiting_at_the_deadline_is_unacknowledged() {
    let hung = rig(vec![("webster", vec![Act::Hang(Duration::from_secs(600))])]);
    let out = hung.delegate(ask("webster", "manager")).await.unwrap();
    assert_eq!(
        out.unacknowledged,
        Some(Unacknowledged {
            tries: 1,
            failures: 0,
            last_error: None,
            alike: true,
        })
    );
    // An acknowledged delegation that times out has nothing to add.
    let acked = rig(vec![("webster", vec![Act::Ack])]);
    let out = acked.delegate(ask("webster", "manager")).await.unwrap();
    assert_eq!((out.end, out.unacknowledged), (End::TimedOut, None));
}

/// A task message over the transport's `max_task_bytes` is refused before
/// anything is sent: no dispatch, no `dispatched` line, one `failed` line,
/// exit 2, and the error gives the real sizes.
#[tokio::test]
async fn a_task_over_the_transports_limit_is_refused_before_sending() {
    let rig = rig_sized(
        vec![("webster", vec![])],
        Policy::atomizer_default(),
        DelegatorConfig::default(),
        0,
        Some(4000),
        |_| {},
    );
    let mut r = ask("webster", "manager");
    r.task = "x".repeat(5000);
    r.context = Some("y".repeat(100));
    let err = rig.delegate(r).await.unwrap_err();
    let DelegateError::TooLarge {
        size,
        limit,
        task,
        context,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((*limit, *task, *context), (4000, 5000, 100));
    assert!(*size > 5100, "{size}");
    assert_eq!(err.exit_code(), 2);
    let message = err
        .to_string()
        .replace(&size.to_string(), "[SIZE]")
        .replace(&(size - 5100).to_string(), "[REST]");
    insta::assert_snapshot!(
        message,
        @"the task message for webster is [SIZE] bytes (task 5000, context 100, orch's header and instructions [REST]), larger than the 4000-byte limit of its fake transport (max_task_bytes): nothing was sent; shorten the task or its context, or raise the transport's max_task_bytes"
    );
    assert!(rig.fake("webster").envelopes().is_empty(), "nothing sent");
    let ledger = rig.ledger().await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0].event, K::Failed);
    assert_eq!(ledger[0].detail.as_deref(), Some(err.to_string().as_str()));
    assert_eq!(ledger[0].agent.as_deref(), Some("webster"));

    // A task that fits is sent as usual.
    let mut r = ask("webster", "manager");
    r.task = "x".repeat(1000);
    let out = rig.delegate(r).await.unwrap();
    assert_eq!(out.status(), OutcomeStatus::Complete);
}

/// Every invalid answer is moved aside, the last one too, so the final
/// name never holds an invalid file and the outcome names files that
/// exist.
#[tokio::test]
async fn the_last_invalid_answer_is_moved_aside_too() {
    let rig = rig(vec![(
        "webster",
        vec![Act::Raw(INVALID), Act::Raw(INVALID)],
    )]);
    let out = rig.delegate(ask("webster", "manager")).await.unwrap();
    assert!(matches!(out.end, End::Invalid { .. }), "{:?}", out.end);
    assert_eq!(out.rejected.len(), 2, "{:?}", out.rejected);
    assert!(
        out.rejected[1].ends_with(".json.rejected-2"),
        "{:?}",
        out.rejected
    );
    for path in &out.rejected {
        assert!(std::path::Path::new(path).is_file(), "{path}");
    }
    assert!(
        !std::path::Path::new(&out.handoff_path).exists(),
        "the invalid file stayed at {}",
        out.handoff_path
    );
    let json = serde_json::to_value(&out).unwrap();
    assert_eq!(json["rejected"], serde_json::json!(out.rejected));
}

#[tokio::test]
async fn non_retryable_fails_after_one_try() {
    let rig = rig(vec![(
        "webster",
        vec![Act::Fail(TransportError::Rejected {
            status: 400,
            message: "unknown agent".into(),
        })],
    )]);
    let err = rig.delegate(ask("webster", "manager")).await.unwrap_err();
    match &err {
        DelegateError::Transport {
            agent,
            attempts,
            source,
            gave_up,
        } => {
            assert_eq!((agent.as_str(), *attempts), ("webster", 1));
            assert_eq!(*gave_up, GaveUp::Final);
            assert!(!source.is_retryable());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "dispatch to webster failed after 1 try: the receiver rejected the task with status 400: unknown agent"
    );
    assert_eq!(rig.fake("webster").envelopes().len(), 1);
    let ledger = rig.ledger().await;
    assert_eq!(
        ledger.iter().map(|e| e.event).collect::<Vec<_>>(),
        [K::Dispatched, K::Failed]
    );
}

#[tokio::test(start_paused = true)]
async fn completion_without_handoff_reasks_then_gives_up() {
    let rig = rig(vec![(
        "webster",
        vec![Act::Ended("exit status 1"), Act::Ended("exit status 2")],
    )]);
    let t0 = Instant::now();
    let out = rig.delegate(ask("webster", "manager")).await.unwrap();
    // Two grace periods, not the 30 s deadline.
    assert_eq!(t0.elapsed(), Duration::from_secs(4));
    assert_eq!(
        out.end,
        End::NoHandoff {
            detail: "exit status 2".into()
        }
    );
    assert_eq!(out.status(), OutcomeStatus::Failed);
    assert_eq!((out.dispatches, out.reasks), (2, 1));
    let envs = rig.fake("webster").envelopes();
    assert!(
        envs[1]
            .message
            .contains("your run ended without writing a handoff to"),
        "{}",
        envs[1].message
    );
    let ledger = rig.ledger().await;
    assert_eq!(
        ledger.iter().map(|e| e.event).collect::<Vec<_>>(),
        [K::Dispatched, K::Acked, K::Reasked, K::Acked, K::Failed]
    );
    assert_eq!(
        ledger[4].detail.as_deref(),
        Some("the run ended without a handoff: exit status 2")
    );
}

#[tokio::test]
async fn completion_with_a_handoff_is_a_handoff() {
    // The file is written, then the run ends: found at once.
    struct WriteThenEnd(Arc<Fake>);
    #[async_trait]
    impl Transport for WriteThenEnd {
        fn name(&self) -> &str {
            "write-then-end"
        }
        async fn dispatch(&self, env: &Envelope) -> Result<Ack, TransportError> {
            self.0.write(env, &env.agent, Status::Partial, "");
            Ok(Ack {
                remote_run_id: None,
                completion: Some(Completion {
                    ok: true,
                    detail: "exit status 0".into(),
                }),
            })
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(FsStoreConfig::new(dir.path())).unwrap();
    let store: Arc<dyn HandoffStore> = Arc::new(fs.clone());
    let fake = Arc::new(Fake::new(fs, vec![]));
    let d = Delegator::new(
        store,
        Policy::atomizer_default(),
        vec![AgentEntry::new("webster", Arc::new(WriteThenEnd(fake)))],
        DelegatorConfig::default(),
    )
    .unwrap();
    let out = d
        .delegate(ask("webster", "manager"), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.status(), OutcomeStatus::Partial);
}

#[tokio::test]
async fn a_dispatch_still_running_when_the_handoff_lands_finishes_in_the_background() {
    let rig = rig(vec![("webster", vec![Act::AnswerThenHold])]);
    let out = rig.delegate(ask("webster", "manager")).await.unwrap();
    assert_eq!(out.status(), OutcomeStatus::Complete);
    let fake = rig.fake("webster");
    // The outcome came while the dispatch was still running...
    assert_eq!(fake.finished.load(Ordering::SeqCst), 0);
    assert_eq!(out.timings.acked_after, None);
    // ...and the dispatch was not dropped: released, it runs to its end.
    let finished = fake.finished_notify.notified();
    fake.release.notify_one();
    finished.await;
    assert_eq!(fake.finished.load(Ordering::SeqCst), 1);
    assert_eq!(rig.kinds().await, [K::Dispatched, K::Handoff]);
}

#[tokio::test]
async fn validator_approves() {
    let rig = rig_with(
        vec![
            ("webster", vec![Act::Answer(Status::Complete)]),
            ("auditor", vec![Act::Answer(Status::Complete)]),
        ],
        Policy::atomizer_default(),
        DelegatorConfig::default(),
        |e| {
            if e.id == "webster" {
                e.validator = Some("auditor".into());
            }
        },
    );
    let mut r = ask("webster", "manager");
    r.validate = true;
    let out = rig.delegate(r).await.unwrap();
    let v = out.validation.as_ref().unwrap();
    assert_eq!((v.validator.as_str(), v.approved), ("auditor", true));
    assert_eq!(out.status(), OutcomeStatus::Complete);
    assert_ne!(v.outcome.run_id, out.run_id);
    assert_eq!(v.outcome.scope, Scope::Top);
    assert_eq!(v.summary(), "approved");

    let envs = rig.fake("auditor").envelopes();
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].caller, "manager");
    let msg = &envs[0].message;
    assert!(msg.contains("> task for webster"), "{msg}");
    assert!(
        msg.contains(&format!("> result of {} (ask 1)", out.run_id)),
        "{msg}"
    );

    let ledger = rig.ledger().await;
    let validated = ledger.last().unwrap();
    assert_eq!(validated.event, K::Validated);
    assert_eq!(validated.run_id.as_ref(), Some(&out.run_id));
    assert_eq!(validated.agent.as_deref(), Some("auditor"));
    assert_eq!(validated.detail.as_deref(), Some("approved"));
    assert_eq!(
        validated.extra["validationRunId"],
        serde_json::json!(v.outcome.run_id.as_str())
    );
}

#[tokio::test]
async fn validator_rejects() {
    let rig = rig(vec![
        ("webster", vec![Act::Answer(Status::Complete)]),
        (
            "auditor",
            vec![Act::AnswerWithNotes(
                Status::Failed,
                "the source is a forum post",
            )],
        ),
    ]);
    let mut r = ask("webster", "manager");
    r.validate = true;
    r.validator = Some("auditor".into());
    let out = rig.delegate(r).await.unwrap();
    assert_eq!(out.handoff.as_ref().unwrap().status, Status::Complete);
    let v = out.validation.as_ref().unwrap();
    assert!(!v.approved);
    assert_eq!(out.status(), OutcomeStatus::Failed);
    let ledger = rig.ledger().await;
    assert_eq!(
        ledger.last().unwrap().detail.as_deref(),
        Some("rejected by auditor: the source is a forum post")
    );
    assert_eq!(ledger.last().unwrap().status, Some(Status::Failed));
}

#[tokio::test(start_paused = true)]
async fn a_validator_that_times_out_fails_the_outcome() {
    let rig = rig(vec![
        ("webster", vec![Act::Answer(Status::Complete)]),
        ("auditor", vec![Act::Ack]),
    ]);
    let mut r = ask("webster", "manager");
    r.validator = Some("auditor".into());
    r.validate = true;
    let out = rig.delegate(r).await.unwrap();
    let v = out.validation.as_ref().unwrap();
    assert_eq!(v.outcome.end, End::TimedOut);
    assert_eq!(out.status(), OutcomeStatus::Failed);
    assert_eq!(v.summary(), "no verdict from auditor: timed out");
}

#[tokio::test]
async fn validator_problems_are_caught_before_anything_is_sent() {
    let rig = rig_with(
        vec![("webster", vec![]), ("auditor", vec![])],
        Policy::atomizer_default(),
        DelegatorConfig::default(),
        |_| {},
    );
    // No validator configured or given.
    let mut r = ask("webster", "manager");
    r.validate = true;
    let err = rig.delegate(r.clone()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "agent webster has no validator: pass --validator"
    );
    // Unknown validator.
    r.validator = Some("nobody".into());
    let err = rig.delegate(r.clone()).await.unwrap_err();
    assert!(matches!(err, DelegateError::UnknownAgent { ref agent, .. } if agent == "nobody"));
    // tech-lead may delegate to webster but not to auditor.
    r.caller = "tech-lead".into();
    r.validator = Some("auditor".into());
    let err = rig.delegate(r).await.unwrap_err();
    assert!(
        matches!(&err, DelegateError::Denied(AclError::Denied { target, .. }) if target == "auditor"),
        "{err:?}"
    );
    assert!(rig.fake("webster").envelopes().is_empty());
    assert!(rig.fake("auditor").envelopes().is_empty());
    assert_eq!(rig.kinds().await, [K::Denied]);
}

#[tokio::test]
async fn sub_delegation() {
    let rig = rig(vec![
        ("tech-lead", vec![]),
        ("webster", vec![]),
        ("auditor", vec![]),
    ]);
    let top = rig.delegate(ask("tech-lead", "manager")).await.unwrap();

    let mut r = ask("webster", "tech-lead");
    r.parent = Some(top.run_id.clone());
    let out = rig.delegate(r).await.unwrap();
    assert_eq!(out.status(), OutcomeStatus::Complete);
    assert_eq!(out.scope, Scope::Sub);
    assert_eq!(out.parent.as_ref(), Some(&top.run_id));
    let sub_path = rig
        .fs
        .root()
        .join("sub")
        .join(format!("{}.json", out.run_id));
    assert_eq!(out.handoff_path, sub_path.display().to_string());
    assert!(sub_path.is_file());
    let env = &rig.fake("webster").envelopes()[0];
    assert_eq!(
        (env.scope, env.parent.as_ref()),
        (Scope::Sub, Some(&top.run_id))
    );
    assert!(env.message.contains(" --sub"), "{}", env.message);
    let ledger = rig.ledger().await;
    let handoff = ledger
        .iter()
        .find(|e| e.event == K::Handoff && e.run_id.as_ref() == Some(&out.run_id))
        .unwrap();
    assert_eq!(handoff.parent.as_ref(), Some(&top.run_id));
    assert_eq!(handoff.caller.as_deref(), Some("tech-lead"));

    // The ACL is checked against the parent run's agent: tech-lead may not
    // delegate to auditor (manager could).
    let mut r = ask("auditor", "tech-lead");
    r.parent = Some(top.run_id.clone());
    let err = rig.delegate(r).await.unwrap_err();
    assert!(
        matches!(err, DelegateError::Denied(AclError::Denied { .. })),
        "{err:?}"
    );

    // Only the parent run's agent may sub-delegate under it.
    let mut r = ask("webster", "manager");
    r.parent = Some(top.run_id.clone());
    let err = rig.delegate(r).await.unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().starts_with(&format!(
            "parent run {} was delegated to tech-lead, not to manager",
            top.run_id
        )),
        "{err}"
    );

    // An unknown parent.
    let mut r = ask("webster", "tech-lead");
    r.parent = Some(RunId::new("orch-20260101T000000Z-00000000").unwrap());
    let err = rig.delegate(r).await.unwrap_err();
    assert!(matches!(err, DelegateError::Usage { .. }), "{err:?}");
    assert!(err.to_string().contains("is unknown"), "{err}");
    assert_eq!(rig.fake("auditor").envelopes().len(), 0);
}

#[tokio::test]
async fn the_depth_limit_stops_a_loop() {
    let policy =
        Policy::from_rules([("human", vec!["a"]), ("a", vec!["b"]), ("b", vec!["a"])]).unwrap();
    let rig = rig_with(
        vec![("a", vec![]), ("b", vec![])],
        policy,
        DelegatorConfig::default(),
        |_| {},
    );
    // human -> a (depth 0) -> b (1) -> a (2) -> b (3) -> a (4: refused).
    let mut parent = rig.delegate(ask("a", "human")).await.unwrap().run_id;
    let mut caller = "a";
    for depth in 1..=4u32 {
        let target = if caller == "a" { "b" } else { "a" };
        let mut r = ask(target, caller);
        r.parent = Some(parent.clone());
        let result = rig.delegate(r).await;
        if depth <= 3 {
            let out = result.unwrap();
            assert_eq!(out.scope, Scope::Sub);
            parent = out.run_id;
            caller = target;
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(
                    err,
                    DelegateError::Denied(AclError::DepthExceeded { depth: 4, limit: 3 })
                ),
                "{err:?}"
            );
            assert_eq!(err.exit_code(), 3);
        }
    }
    let dispatched = rig.fake("a").envelopes().len() + rig.fake("b").envelopes().len();
    assert_eq!(dispatched, 4);
    let ledger = rig.ledger().await;
    let denied = ledger.last().unwrap();
    assert_eq!(denied.event, K::Denied);
    assert_eq!(denied.parent.as_ref(), Some(&parent));
}

#[tokio::test]
async fn cancel() {
    let rig = rig(vec![("webster", vec![Act::Ack])]);
    let token = CancellationToken::new();
    let fake = rig.fake("webster");
    let dispatched = fake.dispatched.notified();
    let (result, ()) = tokio::join!(
        rig.delegator.delegate(ask("webster", "manager"), &token),
        async {
            dispatched.await;
            token.cancel();
        }
    );
    let err = result.unwrap_err();
    let DelegateError::Cancelled { run_id } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(err.exit_code(), 130);
    let ledger = rig.ledger().await;
    let last = ledger.last().unwrap();
    assert_eq!(last.event, K::Cancelled);
    assert_eq!(last.run_id.as_ref(), Some(run_id));
    assert_eq!(rig.fs.active_waiters(), 0, "the subscription was dropped");
}

#[tokio::test]
async fn an_already_cancelled_token_sends_nothing() {
    let rig = rig(vec![("webster", vec![])]);
    let token = CancellationToken::new();
    token.cancel();
    let err = rig
        .delegator
        .delegate(ask("webster", "manager"), &token)
        .await
        .unwrap_err();
    assert!(matches!(err, DelegateError::Cancelled { .. }), "{err:?}");
    assert!(rig.fake("webster").envelopes().is_empty());
    assert_eq!(rig.kinds().await, [K::Cancelled]);
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_slot_counts_against_the_deadline() {
    let rig = rig_with(
        vec![("webster", vec![Act::Ack, Act::Answer(Status::Complete)])],
        Policy::atomizer_default(),
        DelegatorConfig::default(),
        |e| e.max_concurrent = Some(1),
    );
    // The first delegation holds the only slot until its deadline (30 s);
    // the second, with 10 s, never gets it.
    let mut second = ask("webster", "manager");
    second.timeout = Duration::from_secs(10);
    let t0 = Instant::now();
    let (a, b) = tokio::join!(
        rig.delegate(ask("webster", "manager")),
        rig.delegate(second)
    );
    assert_eq!(a.unwrap().end, End::TimedOut);
    let b = b.unwrap();
    assert_eq!(b.end, End::TimedOut);
    assert_eq!(b.dispatches, 0);
    assert_eq!(t0.elapsed(), Duration::from_secs(30));
    assert_eq!(rig.fake("webster").envelopes().len(), 1);
    let ledger = rig.ledger().await;
    let slot = ledger
        .iter()
        .find(|e| e.run_id.as_ref() == Some(&b.run_id))
        .unwrap();
    assert_eq!(slot.event, K::Timeout);
    assert_eq!(
        slot.detail.as_deref(),
        Some("the deadline passed while waiting for a free slot (webster takes 1 at a time)")
    );
}

#[tokio::test]
async fn max_concurrent_serialises_delegations_to_one_agent() {
    for (limit, expected) in [(Some(1), 1), (None, 2)] {
        let rig = rig_full(
            vec![("webster", vec![])],
            Policy::atomizer_default(),
            DelegatorConfig::default(),
            8,
            |e| e.max_concurrent = limit,
        );
        let (a, b) = tokio::join!(
            rig.delegate(ask("webster", "manager")),
            rig.delegate(ask("webster", "manager"))
        );
        assert_eq!(a.unwrap().status(), OutcomeStatus::Complete);
        assert_eq!(b.unwrap().status(), OutcomeStatus::Complete);
        let fake = rig.fake("webster");
        assert_eq!(fake.envelopes().len(), 2);
        assert_eq!(
            fake.max_in_flight.load(Ordering::SeqCst),
            expected,
            "max_concurrent {limit:?}"
        );
    }
}

#[tokio::test]
async fn a_given_run_id_that_already_has_a_handoff_is_refused() {
    let rig = rig(vec![("webster", vec![])]);
    let first = rig.delegate(ask("webster", "manager")).await.unwrap();
    let mut r = ask("webster", "manager");
    r.run_id = Some(first.run_id.clone());
    let err = rig.delegate(r).await.unwrap_err();
    assert!(matches!(err, DelegateError::Usage { .. }), "{err:?}");
    assert_eq!(rig.fake("webster").envelopes().len(), 1);

    let id = RunId::new("orch-20260101T000000Z-0000abcd").unwrap();
    let mut r = ask("webster", "manager");
    r.run_id = Some(id.clone());
    assert_eq!(rig.delegate(r).await.unwrap().run_id, id);
}

#[tokio::test]
async fn agent_table_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(FsStoreConfig::new(dir.path())).unwrap();
    let store: Arc<dyn HandoffStore> = Arc::new(fs.clone());
    let fake: Arc<dyn Transport> = Arc::new(Fake::new(fs, vec![]));
    let new = |agents: Vec<AgentEntry>| {
        Delegator::new(
            Arc::clone(&store),
            Policy::atomizer_default(),
            agents,
            DelegatorConfig::default(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    let entry = |id: &str| AgentEntry::new(id, Arc::clone(&fake));
    assert_eq!(
        new(vec![entry("a"), entry("a")]),
        Err("agent \"a\" is listed twice".into())
    );
    let mut v = entry("a");
    v.validator = Some("ghost".into());
    assert_eq!(
        new(vec![v]),
        Err("agent \"a\" names validator \"ghost\", which is not a known agent".into())
    );
    let mut z = entry("a");
    z.max_concurrent = Some(0);
    assert!(new(vec![z]).is_err());
    assert_eq!(new(vec![entry("b"), entry("a")]), Ok(()));
}

/// A full run with a retry, a re-ask and a validation: every event, in
/// order, with the fields metrics read.
#[tokio::test(start_paused = true)]
async fn the_ledger_tells_the_whole_story() {
    let rig = rig(vec![
        (
            "webster",
            vec![
                Act::Fail(unavailable(None)),
                Act::Raw(INVALID),
                Act::Answer(Status::Complete),
            ],
        ),
        ("auditor", vec![Act::Answer(Status::Complete)]),
    ]);
    let mut r = ask("webster", "manager");
    r.validate = true;
    r.validator = Some("auditor".into());
    let out = rig.delegate(r).await.unwrap();
    assert_eq!(out.status(), OutcomeStatus::Complete);
    let v = &out.validation.as_ref().unwrap().outcome.run_id;

    let ledger = rig.ledger().await;
    let story: Vec<(K, &RunId, Option<u32>)> = ledger
        .iter()
        .map(|e| (e.event, e.run_id.as_ref().unwrap(), e.attempt))
        .collect();
    let o = &out.run_id;
    assert_eq!(
        story,
        [
            (K::Dispatched, o, Some(1)),
            (K::Retried, o, Some(1)),
            (K::Acked, o, Some(1)),
            (K::Invalid, o, Some(1)),
            (K::Reasked, o, Some(2)),
            (K::Acked, o, Some(2)),
            (K::Handoff, o, Some(2)),
            (K::Dispatched, v, Some(1)),
            (K::Acked, v, Some(1)),
            (K::Handoff, v, Some(1)),
            (K::Validated, o, None),
        ]
    );
    assert_eq!(
        ledger[7].detail.as_deref(),
        Some(format!("via fake, validating {o}").as_str())
    );
    assert_eq!(ledger[0].detail.as_deref(), Some("via fake"));
    assert_eq!(ledger[6].latency_ms, Some(250));
    // Timestamps never go backwards.
    let ts: Vec<jiff::Timestamp> = ledger.iter().map(|e| e.ts.parse().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
}

#[tokio::test]
async fn outcome_json() {
    let rig = rig(vec![("webster", vec![Act::Answer(Status::Partial)])]);
    let out = rig.delegate(ask("webster", "manager")).await.unwrap();
    let json = serde_json::to_value(&out).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "runId",
            "agent",
            "caller",
            "parent",
            "status",
            "end",
            "handoff",
            "validation",
            "dispatches",
            "reasks",
            "timings",
            "handoffPath"
        ]
    );
    assert_eq!(json["status"], "partial");
    assert_eq!(json["end"], serde_json::json!({ "kind": "handoff" }));
    assert_eq!(json["handoff"]["status"], "partial");
    let timings: Vec<&str> = json["timings"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(timings, ["started", "ackedMs", "handoffMs", "totalMs"]);
    assert!(json["timings"]["started"].as_str().unwrap().ends_with('Z'));

    let mut timed_out = out.clone();
    timed_out.end = End::TimedOut;
    timed_out.handoff = None;
    let json = serde_json::to_value(&timed_out).unwrap();
    assert_eq!(json["status"], "timed-out");
    assert_eq!(json["end"], serde_json::json!({ "kind": "timed-out" }));
}

/// `message_bytes` of an empty task is kept per agent, caller and id and
/// location length: exact only while the instructions hold the run id and
/// the location as they are. Checked against a task of one byte (never
/// kept) for ids of the same lengths and different letters (every kind
/// a run id may hold).
#[tokio::test]
async fn the_kept_instruction_sizes_are_those_of_the_rendered_messages() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(FsStoreConfig::new(dir.path())).unwrap();
    let store: Arc<dyn HandoffStore> = Arc::new(fs.clone());
    let fake = Arc::new(Fake::new(fs, vec![]));
    let config = DelegatorConfig {
        submit_args: vec!["--handoff-dir".into(), "/srv/orch store".into()],
        ..DelegatorConfig::default()
    };
    let d = Delegator::new(
        store,
        Policy::atomizer_default(),
        vec![
            AgentEntry::new("webster", Arc::clone(&fake) as Arc<dyn Transport>),
            AgentEntry::new("tech-lead", fake as Arc<dyn Transport>),
        ],
        config,
    )
    .unwrap();
    let ids = [
        "wf-a.s1.1",
        "wf-b.s2.9",
        "wf-b.x_.9",
        "wf-a.review.1",
        "wf-z.REVIEW.7",
        "wf-a.r-v-w.999999",
        "a",
    ];
    for agent in ["webster", "tech-lead"] {
        for caller in ["manager", "tech-lead"] {
            for id in ids {
                let id = RunId::new(id).unwrap();
                let kept = d.message_bytes(&id, agent, caller, "", None);
                let one = d.message_bytes(&id, agent, caller, "x", None);
                assert_eq!(kept + 1, one, "{agent} from {caller}, {id}");
            }
        }
    }
}
