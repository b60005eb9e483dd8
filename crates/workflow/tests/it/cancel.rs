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

#[tokio::test]
async fn finally_steps_run_after_the_others_whatever_became_of_them() {
    let rig = rig();
    // Completed: the minutes see it so; they read the run's outcome.
    let s = rig
        .run(
            r#"
name: minutes
steps:
  - { id: a, agent: webster, task: "[id=a]" }
  - { id: b, agent: auditor, task: "[id=b] {{ steps.a.result }}" }
finally:
  - { id: minutes, agent: tech-lead, task: "[id=minutes] {{ run.status }} | {{ run.steps }} | {{ steps.b.result }}" }
output: "{{ steps.minutes.result }}"
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed, "{s:?}");
    assert_eq!(status(&s, "minutes"), StepStatus::Completed);
    let (_, task) = rig.fake.last("minutes");
    assert!(
        task.contains("[id=minutes] completed | a: completed\nb: completed | result of b"),
        "{task}"
    );
    assert_eq!(s.output.as_deref(), Some("result of minutes"));
    assert!(rig.log.pos("end:b") < rig.log.pos("start:minutes"));

    // Failed under `on_failure: stop`: nothing new starts, but the
    // finally steps do, and the run stays failed.
    let s = rig
        .run(
            r#"
name: stopped
steps:
  - { id: a, agent: webster, task: "[id=fa] [s=failed]" }
  - { id: b, agent: auditor, task: "[id=fb] {{ steps.a.result }}" }
finally:
  - { id: tidy, agent: tech-lead, task: "[id=tidy] {{ run.status }}: {{ run.steps }}" }
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(rig.fake.count("fb"), 0);
    let (_, task) = rig.fake.last("tidy");
    assert!(task.contains("[id=tidy] failed: a: failed ("), "{task}");

    // A finally step that fails turns `completed` into
    // `completed-with-failures`, and stops nothing.
    let s = rig
        .run(
            r#"
name: flaky-minutes
steps:
  - { id: a, agent: webster, task: "[id=ga]" }
finally:
  - { id: one, agent: tech-lead, task: "[id=one] [s=failed]" }
  - { id: two, agent: auditor, task: "[id=two] {{ run.status }}" }
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::CompletedWithFailures);
    assert_eq!(status(&s, "two"), StepStatus::Completed);
}

#[tokio::test]
async fn finally_steps_run_after_a_cancel_request() {
    let rig = rig();
    let yaml = r#"
name: cancel-then-tidy
steps:
  - { id: a, agent: auditor, task: "[id=ca] [hang]" }
finally:
  - { id: tidy, agent: tech-lead, task: "[id=ctidy] {{ run.status }}" }
"#;
    let wf = load(yaml, "c.yaml").unwrap();
    let run_id = orch_delegate::orch_handoff::RunId::new("wf-cancel-tidy").unwrap();
    let mut o = opts(&wf);
    o.run_id = Some(run_id.clone());
    let exec = rig.exec();
    let ask = async {
        rig.fake.hung.notified().await;
        request_cancel(&*rig.store, &run_id, "manager", "stop")
            .await
            .unwrap();
        std::future::pending::<()>().await;
    };
    let token = CancellationToken::new();
    let s = tokio::select! {
        r = exec.run(&wf, yaml, o, &token) => r.unwrap(),
        () = ask => unreachable!(),
    };
    assert_eq!(s.status, RunStatus::Cancelled);
    assert_eq!(status(&s, "tidy"), StepStatus::Completed);
    let (_, task) = rig.fake.last("ctidy");
    assert!(task.contains("[id=ctidy] cancelled"), "{task}");
}
