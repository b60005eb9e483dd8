//! The Delegator and the `openclaw` transport against a fake gateway that
//! misbehaves the way real ones do: it restarts (connections refused for a
//! while), hangs (never answers), or sends odd `Retry-After`s.
//!
//! Real sockets need real time (paused time would fire the request
//! timeouts while the runtime waits on I/O), so the retry policy here is
//! short, and every step the test takes waits for an event (the observer's
//! retries), never for time. Exact waits are checked with paused time in
//! `delegator.rs`.

use std::sync::Arc;
use std::time::Duration;

use orch_delegate::orch_acl::Policy;
use orch_delegate::orch_handoff::{FsStore, FsStoreConfig, HandoffStore};
use orch_delegate::testing::{FakeFailure, FakeGateway, FakeGatewayOptions};
use orch_delegate::transport::openclaw::{OpenClawConfig, OpenClawTransport};
use orch_delegate::{
    AgentEntry, DelegateError, DelegationEvent, Delegator, DelegatorConfig, GaveUp, OutcomeStatus,
    Request, RetryPolicy, Retrying, Secret, TransportError, WaitRule,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "tok-faults-7a1c";

struct Rig {
    _dir: tempfile::TempDir,
    gw: FakeGateway,
    delegator: Arc<Delegator>,
    retries: mpsc::UnboundedReceiver<Retrying>,
}

async fn rig(fail_next: Vec<FakeFailure>, edit: impl FnOnce(&mut OpenClawConfig)) -> Rig {
    let mut options = FakeGatewayOptions::new(TOKEN, ["webster"]);
    options.fail_next = fail_next;
    let gw = FakeGateway::start(options).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn HandoffStore> =
        Arc::new(FsStore::open(FsStoreConfig::new(dir.path())).unwrap());
    let mut config = OpenClawConfig::new(gw.url(), Secret::new(TOKEN));
    edit(&mut config);
    let transport = Arc::new(OpenClawTransport::new(config).unwrap());
    let (tx, retries) = mpsc::unbounded_channel();
    let delegator = Delegator::new(
        store,
        Policy::atomizer_default(),
        vec![AgentEntry::new("webster", transport)],
        DelegatorConfig {
            retry: RetryPolicy {
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(20),
                ..RetryPolicy::default()
            },
            ..DelegatorConfig::default()
        },
    )
    .unwrap()
    .with_observer(move |event| {
        let DelegationEvent::Retrying(r) = event else {
            return;
        };
        let _ = tx.send(r.clone());
    });
    Rig {
        _dir: dir,
        gw,
        delegator: Arc::new(delegator),
        retries,
    }
}

fn request(timeout: Duration) -> Request {
    let mut r = Request::new("webster", "Find the CTE of Zerodur", "manager");
    r.timeout = timeout;
    r
}

/// More retries than the old fixed budget of 5 tries, then the gateway is
/// back: the delegation goes through, with one run on the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegation_rides_a_gateway_restart() {
    let mut rig = rig(vec![], |_| {}).await;
    rig.gw.go_down().await;
    let delegator = Arc::clone(&rig.delegator);
    let run = tokio::spawn(async move {
        delegator
            .delegate(request(Duration::from_secs(60)), &CancellationToken::new())
            .await
    });
    for n in 1..=8 {
        let r = rig.retries.recv().await.unwrap();
        assert_eq!(r.failed_try, n);
        assert!(
            matches!(&r.error, TransportError::Connect { message } if message.contains("cannot connect")),
            "{r:?}"
        );
    }
    rig.gw.come_up().await.unwrap();
    let out = run.await.unwrap().unwrap();
    assert_eq!(out.status(), OutcomeStatus::Complete);
    assert!(out.dispatches > 8, "{}", out.dispatches);
    assert_eq!(rig.gw.runs_started(), 1);
}

/// A `Retry-After` date in the past is not "retry at once": the wait is
/// raised to the backoff, and the retry says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_date_in_the_past_is_raised_to_the_backoff() {
    let past = FakeFailure::Status {
        status: 503,
        body: r#"{"ok":false,"error":"restarting"}"#.into(),
        retry_after: Some("Sat, 01 Jan 2000 00:00:00 GMT".into()),
    };
    let mut rig = rig(vec![past; 3], |_| {}).await;
    let out = rig
        .delegator
        .delegate(request(Duration::from_secs(30)), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.status(), OutcomeStatus::Complete);
    let mut waits = Vec::new();
    while let Ok(r) = rig.retries.try_recv() {
        waits.push(r.wait);
    }
    let ms = Duration::from_millis;
    let raised = WaitRule::RetryAfterRaised {
        asked: Duration::ZERO,
    };
    assert_eq!(
        waits.iter().map(|w| (w.delay, w.rule)).collect::<Vec<_>>(),
        [(ms(10), raised), (ms(20), raised), (ms(20), raised)]
    );
}

/// `Retry-After: 100000` with a 30 s deadline: one try, and the error says
/// the capped wait does not fit before the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retry_after_gives_up_saying_why() {
    let huge = FakeFailure::Status {
        status: 429,
        body: r#"{"ok":false,"error":"slow down"}"#.into(),
        retry_after: Some("100000".into()),
    };
    let rig = rig(vec![huge], |_| {}).await;
    let err = rig
        .delegator
        .delegate(request(Duration::from_secs(30)), &CancellationToken::new())
        .await
        .unwrap_err();
    let DelegateError::Transport {
        attempts, gave_up, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*attempts, 1);
    assert!(
        matches!(
            gave_up,
            GaveUp::OutOfTime { wait, .. }
                if wait.delay == Duration::from_secs(60)
                    && wait.rule == WaitRule::RetryAfterCapped { asked: Duration::from_secs(100_000) }
        ),
        "{gave_up:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("gave up: the next try, in 1m (Retry-After asked for 100000s, capped at max_retry_after), would start after the deadline"),
        "{shown}"
    );
    assert_eq!(rig.gw.requests().len(), 1);
}

/// A gateway that never answers: each try fails after the transport's
/// request timeout, saying so, and is retried; no run starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_gateway_fails_each_try_after_the_request_timeout() {
    let mut rig = rig(vec![FakeFailure::Hang, FakeFailure::Hang], |c| {
        c.request_timeout = Duration::from_millis(200);
    })
    .await;
    let out = rig
        .delegator
        .delegate(request(Duration::from_secs(30)), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.status(), OutcomeStatus::Complete);
    assert_eq!(out.dispatches, 3);
    let first = rig.retries.recv().await.unwrap();
    insta::with_settings!({filters => vec![(r"127\.0\.0\.1:\d+", "127.0.0.1:[port]")]}, {
        insta::assert_snapshot!(first.to_string(), @"dispatch to webster: try 1 failed: could not reach the receiver: POST http://127.0.0.1:[port]/hooks/agent: the gateway did not answer within 200ms; next try in 10ms");
    });
    assert_eq!(
        rig.gw.runs_started(),
        1,
        "the hung requests started nothing"
    );
}
