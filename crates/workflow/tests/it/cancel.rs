//! `request_cancel` from "another process" (the test) while a run is in
//! flight, and on a paused run.

use orch_delegate::orch_handoff::LedgerEventKind;
use orch_workflow::{RunStatus, StepStatus, cancel_requested, load, read_summary, request_cancel};
use tokio_util::sync::CancellationToken;

use crate::exec::{opts, rig, status};

#[tokio::test]
async fn a_cancel_request_stops_a_running_workflow_and_says_who_and_why() {
    let rig = rig();
    let yaml = r#"
name: cancel-me
steps:
  - { id: a, agent: webster, task: "[id=a]" }
  - { id: b, agent: auditor, task: "[id=b] [hang] {{ steps.a.result }}" }
  - { id: c, agent: webster, task: "[id=c] {{ steps.b.result }}" }
"#;
    let wf = load(yaml, "cancel.yaml").unwrap();
    let exec = rig.exec();
    let cancel = CancellationToken::new();
    let mut o = opts(&wf);
    let run_id = orch_delegate::orch_handoff::RunId::new("wf-cancel-me").unwrap();
    o.run_id = Some(run_id.clone());
    let ask = async {
        rig.fake.hung.notified().await;
        request_cancel(&*rig.store, &run_id, "manager", "the requirements changed")
            .await
            .unwrap();
        std::future::pending::<()>().await;
    };
    let s = tokio::select! {
        r = exec.run(&wf, yaml, o, &cancel) => r.unwrap(),
        () = ask => unreachable!(),
    };
    assert_eq!(s.status, RunStatus::Cancelled);
    assert_eq!(status(&s, "a"), StepStatus::Completed);
    assert_eq!(status(&s, "c"), StepStatus::Pending, "nothing new started");
    assert_eq!(rig.fake.count("c"), 0);
    let by = s.cancelled.as_ref().unwrap();
    assert_eq!(
        (by.by.as_str(), by.reason.as_str()),
        ("manager", "the requirements changed")
    );
    assert_eq!(read_summary(&*rig.store, &run_id).await.unwrap(), s);
    // The delegation in flight was cancelled in the ledger.
    let ledger = rig.store.read_ledger().await.unwrap();
    assert!(
        ledger
            .events
            .iter()
            .any(|e| e.event == LedgerEventKind::Cancelled
                && e.run_id
                    .as_ref()
                    .is_some_and(|r| r.as_str() == "wf-cancel-me.b.1")),
        "{:?}",
        ledger.events
    );
    // A second request names the first.
    let err = request_cancel(&*rig.store, &run_id, "tech-lead", "again")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("manager already asked"), "{err}");
}

#[tokio::test]
async fn a_paused_run_asked_to_cancel_ends_cancelled_when_taken_up() {
    let rig = rig();
    let yaml = r#"
name: paused
steps:
  - { id: a, agent: webster, task: "[id=a]", gate: { approval: true } }
  - { id: b, agent: auditor, task: "[id=b] {{ steps.a.result }}" }
"#;
    let s = rig.run(yaml).await;
    assert_eq!(s.status, RunStatus::AwaitingApproval);
    request_cancel(&*rig.store, &s.run_id, "auditor", "not needed any more")
        .await
        .unwrap();
    assert_eq!(
        cancel_requested(&*rig.store, &s.run_id)
            .await
            .unwrap()
            .map(|r| r.by),
        Some("auditor".to_owned())
    );
    let done = rig
        .exec()
        .resume(&s.run_id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Cancelled);
    assert_eq!(done.cancelled.unwrap().reason, "not needed any more");
    assert_eq!(rig.fake.count("b"), 0);
    // An unknown run cannot be asked.
    let err = request_cancel(
        &*rig.store,
        &orch_delegate::orch_handoff::RunId::new("wf-nope").unwrap(),
        "manager",
        "x",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no workflow run wf-nope"), "{err}");
}
