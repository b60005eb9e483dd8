//! `for_each` steps against the executor tests' fake fleet (see
//! `exec.rs`): each instance's task carries its own `[id=…]`, so the fake
//! counts the dispatches of every instance, and an item may carry the
//! fake's markers (`[d=MS]`, `[s=failed]`, `[hang]`, …) into its task.

use std::sync::atomic::Ordering;

use orch_delegate::orch_handoff::{LedgerEventKind, RunId};
use orch_workflow::{
    AttemptStatus, RunStatus, StepStatus, instance_record_id, read_step, read_summary,
};
use tokio_util::sync::CancellationToken;

use crate::exec::{reason, rig, status};

/// The ledger's lines of `kind` for delegations of `run` whose id starts
/// with `<run>.<prefix>`.
async fn lines(rig: &crate::exec::Rig, run: &RunId, prefix: &str, kind: LedgerEventKind) -> usize {
    let ledger = rig.store.read_ledger().await.unwrap();
    let start = format!("{run}.{prefix}");
    ledger
        .events
        .iter()
        .filter(|e| e.event == kind)
        .filter(|e| {
            e.run_id
                .as_ref()
                .is_some_and(|r| r.as_str().starts_with(&start))
        })
        .count()
}

#[tokio::test]
async fn each_item_is_an_instance_and_dependents_read_them_in_item_order() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: fan
inputs:
  materials: { default: "Zerodur, ULE [d=40], Invar" }
steps:
  - id: research
    agent: webster
    for_each: "{{ inputs.materials }}"
    as: material
    task: "[id=r-{{ material }}] find {{ material }}"
  - id: rank
    agent: tech-lead
    task: "[id=rank] {{ steps.research.result }}|{{ steps.research.statuses }}|{{ steps.research[1].result }}|{{ steps.research.results }}"
output: "{{ steps.rank.result }}"
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed, "{s:?}");
    assert_eq!(status(&s, "research"), StepStatus::Completed);
    for id in ["r-Zerodur", "r-ULE [d=40]", "r-Invar", "rank"] {
        assert_eq!(rig.fake.count(id), 1, "{id}");
    }
    let counts = s.steps["research"].instances.unwrap();
    assert_eq!((counts.total, counts.completed, counts.failed), (3, 3, 0));
    let (_, task) = rig.fake.last("rank");
    assert!(
        task.contains(
            "### Zerodur\nresult of r-Zerodur\n\n### ULE [d=40]\nresult of r-ULE [d=40]\n\n### Invar\nresult of r-Invar|[\"complete\",\"complete\",\"complete\"]|result of r-ULE [d=40]|[\"result of r-Zerodur\",\"result of r-ULE [d=40]\",\"result of r-Invar\"]"
        ),
        "{task}"
    );
    // Each instance has its record and its own delegation ids.
    for (i, item) in ["Zerodur", "ULE [d=40]", "Invar"].iter().enumerate() {
        let rec = read_step(&*rig.store, &s.run_id, &instance_record_id("research", i))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.status, StepStatus::Completed);
        let of = rec.instance.as_ref().unwrap();
        assert_eq!(
            (of.step.as_str(), of.index as usize, of.item.as_str()),
            ("research", i, *item)
        );
        assert_eq!(
            rec.attempts[0].run_id.as_str(),
            format!("{}.research.{i}.1", s.run_id)
        );
        assert!(rec.rendered_task.unwrap().contains(&format!("find {item}")));
    }
    let step = read_step(&*rig.store, &s.run_id, "research")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(step.fan_out.unwrap().instances.completed, 3);
    assert!(step.attempts.is_empty(), "the instances hold the attempts");
    // The events name instances `step[N]`.
    let events = rig.log.events();
    assert!(events.contains(&"fan:research:3".to_owned()), "{events:?}");
    assert!(
        events.contains(&"start:research[1]".to_owned()),
        "{events:?}"
    );
    assert!(events.contains(&"end:research".to_owned()), "{events:?}");
}

#[tokio::test]
async fn a_yaml_list_of_items_and_a_failing_instance_fails_the_step_under_join_all() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: fan
steps:
  - id: check
    agent: auditor
    for_each: ["a", "b [s=failed]", "c"]
    task: "[id=c-{{ item }}]"
  - { id: after, agent: webster, task: "[id=after] {{ steps.check.result }}" }
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(status(&s, "check"), StepStatus::Failed);
    assert!(
        reason(&s, "check").starts_with("1 of 3 instances failed: check[1]: "),
        "{}",
        reason(&s, "check")
    );
    assert_eq!(rig.fake.count("after"), 0);
    let c = s.steps["check"].instances.unwrap();
    assert_eq!((c.completed, c.failed, c.cancelled), (2, 1, 0));
}

#[tokio::test]
async fn join_any_takes_the_first_that_completes_and_cancels_the_rest() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: fan
steps:
  - id: ask
    agent: webster
    for_each: ["slow [hang]", "fast [d=5]", "never [hang]"]
    join: any
    task: "[id=a-{{ item }}]"
  - { id: next, agent: auditor, task: "[id=next] {{ steps.ask.statuses }} {{ steps.ask.status }}" }
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed, "{s:?}");
    let c = s.steps["ask"].instances.unwrap();
    assert_eq!((c.completed, c.failed, c.cancelled), (1, 0, 2));
    let (_, task) = rig.fake.last("next");
    assert!(
        task.contains("[\"cancelled\",\"complete\",\"cancelled\"] complete"),
        "{task}"
    );
    // The stopped delegations are `cancelled` in the ledger, never failed.
    assert_eq!(
        lines(&rig, &s.run_id, "ask.", LedgerEventKind::Cancelled).await,
        2
    );
    for i in [0, 2] {
        let rec = read_step(&*rig.store, &s.run_id, &instance_record_id("ask", i))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.status, StepStatus::Skipped);
        assert_eq!(rec.attempts[0].status, AttemptStatus::Cancelled);
    }
}

#[tokio::test]
async fn join_min_goes_on_with_what_arrived_by_the_deadline_as_partial() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: fan
steps:
  - id: poll
    agent: webster
    for_each: ["a", "b", "c [hang]", "d [hang]"]
    join: { min: 3 }
    timeout: 400ms
    task: "[id=p-{{ item }}]"
  - { id: next, agent: auditor, task: "[id=next] {{ steps.poll.status }}" }
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed, "{s:?}");
    assert_eq!(status(&s, "poll"), StepStatus::Completed);
    assert!(
        reason(&s, "poll").contains("2 of the 3 instances"),
        "{}",
        reason(&s, "poll")
    );
    let (_, task) = rig.fake.last("next");
    assert!(task.contains("[id=next] partial"), "{task}");
    let c = s.steps["poll"].instances.unwrap();
    assert_eq!((c.completed, c.failed, c.cancelled), (2, 0, 2));

    // Met before the deadline: the rest is cancelled at once.
    let s = rig
        .run(
            r#"
name: fan2
steps:
  - id: poll
    agent: webster
    for_each: ["a", "b", "c [hang]"]
    join: { min: 2 }
    task: "[id=q-{{ item }}]"
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(s.steps["poll"].instances.unwrap().cancelled, 1);
    assert_eq!(s.steps["poll"].reason, None, "{s:?}");
}

#[tokio::test]
async fn a_short_min_join_fails_a_gate_that_wants_complete() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: fan
steps:
  - id: poll
    agent: webster
    for_each: ["a", "b [s=failed]"]
    join: { min: 2 }
    gate: { status: [complete] }
    task: "[id=g-{{ item }}]"
"#,
        )
        .await;
    assert_eq!(status(&s, "poll"), StepStatus::Failed);
    assert!(
        reason(&s, "poll").starts_with("gate: status partial (1 of the 2 instances"),
        "{}",
        reason(&s, "poll")
    );
}

#[tokio::test]
async fn max_parallel_caps_a_steps_instances_and_the_run_caps_the_total() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: fan
steps:
  - id: many
    agent: webster
    for_each: ["1", "2", "3", "4", "5", "6"]
    max_parallel: 2
    task: "[id=m-{{ item }}] [d=20]"
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(rig.fake.max_in_flight.load(Ordering::SeqCst), 2);
    // They start in item order.
    let starts: Vec<String> = rig
        .log
        .events()
        .into_iter()
        .filter(|e| e.starts_with("start:many["))
        .collect();
    assert_eq!(
        starts,
        (0..6)
            .map(|i| format!("start:many[{i}]"))
            .collect::<Vec<_>>()
    );

    // `join: any` one at a time: the first completes, the rest are never
    // sent.
    let rig = crate::exec::rig();
    let s = rig
        .run(
            r#"
name: fan
steps:
  - id: one
    agent: webster
    for_each: ["1", "2", "3"]
    max_parallel: 1
    join: any
    task: "[id=o-{{ item }}]"
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(
        (
            rig.fake.count("o-1"),
            rig.fake.count("o-2"),
            rig.fake.count("o-3")
        ),
        (1, 0, 0)
    );
    assert_eq!(s.steps["one"].instances.unwrap().cancelled, 2);

    let rig = crate::exec::rig();
    let s = rig
        .run(
            r#"
name: fan
max_parallel: 3
steps:
  - id: many
    agent: webster
    for_each: ["1", "2", "3", "4", "5", "6"]
    task: "[id=m-{{ item }}] [d=20]"
  - { id: other, agent: auditor, task: "[id=other] [d=20]" }
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(rig.fake.max_in_flight.load(Ordering::SeqCst), 3);
    assert_eq!(rig.fake.count("other"), 1);
}

#[tokio::test]
async fn items_from_a_steps_artifacts_and_none_fails_the_step() {
    let rig = rig();
    // The fake gives no artifacts: the fan-out has no items.
    let s = rig
        .run(
            r#"
name: fan
steps:
  - { id: gather, agent: webster, task: "[id=gather]" }
  - id: each
    agent: auditor
    for_each: "{{ steps.gather.artifacts }}"
    task: "[id=e-{{ item }}]"
"#,
        )
        .await;
    assert_eq!(status(&s, "each"), StepStatus::Failed);
    assert_eq!(reason(&s, "each"), "`for_each` gives no items");
    // One item per line of a step's result.
    let s = rig
        .run(
            r#"
name: fan2
steps:
  - { id: gather, agent: webster, task: "[id=gather2]" }
  - id: each
    agent: auditor
    for_each: "{{ steps.gather.result }}\nsecond line"
    task: "[id=x-{{ item }}]"
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed, "{s:?}");
    assert_eq!(rig.fake.count("x-result of gather2"), 1);
    assert_eq!(rig.fake.count("x-second line"), 1);
}

/// A fan-out killed with one instance answered, one in flight and the
/// rest not sent: resume sends nothing twice, re-awaits the one in flight
/// (with the records as written, and with none landed).
#[tokio::test]
async fn resume_of_a_fan_out_sends_no_instance_twice() {
    for forget in [false, true] {
        let rig = rig();
        rig.forgetful.forget_steps.store(forget, Ordering::SeqCst);
        let yaml = r#"
name: fan
steps:
  - id: research
    agent: webster
    for_each: ["done", "flying [hangfirst]", "later"]
    max_parallel: 1
    task: "[id=r-{{ item }}]"
  - { id: after, agent: auditor, task: "[id=after] {{ steps.research.statuses }}" }
"#;
        // One at a time: `done` answers; `flying` hangs on its first
        // dispatch (the run is dropped then); `later` waits for the slot.
        // Their agents die with orch (as sim and exec agents do).
        let run_id = rig
            .run_until_hung(yaml, &format!("wf-fan-resume-{forget}"))
            .await;
        rig.forgetful.forget_steps.store(false, Ordering::SeqCst);
        rig.fake.dies_with_sender.store(true, Ordering::SeqCst);
        assert_eq!(rig.fake.count("r-done"), 1);
        assert_eq!(rig.fake.count("r-later"), 0);
        let done = rig
            .exec()
            .resume(&run_id, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(
            done.status,
            RunStatus::Completed,
            "forget {forget}: {done:?}"
        );
        assert_eq!(
            rig.fake.count("r-done"),
            1,
            "forget {forget}: not sent again"
        );
        assert_eq!(
            rig.fake.count("r-flying [hangfirst]"),
            2,
            "forget {forget}: lost with its agent's process, sent again as the next id"
        );
        assert_eq!(rig.fake.count("r-later"), 1, "forget {forget}");
        assert_eq!(rig.fake.count("after"), 1);
        let flying = read_step(&*rig.store, &run_id, &instance_record_id("research", 1))
            .await
            .unwrap()
            .unwrap();
        let st: Vec<&str> = flying.attempts.iter().map(|a| a.status.as_str()).collect();
        assert_eq!(st, ["lost", "complete"], "forget {forget}");
        let summary = read_summary(&*rig.store, &run_id).await.unwrap();
        assert_eq!(summary.steps["research"].instances.unwrap().completed, 3);
    }
}

#[tokio::test]
async fn each_instance_repeats_until_good_enough() {
    let rig = rig();
    let s = rig
        .run(
            r#"
name: fan
steps:
  - id: review
    agent: tech-lead
    for_each: ["x", "y [c=low]"]
    repeat: { until: "confidence >= high", max: 3 }
    task: "[id=v-{{ item }}] last: {{ previous.confidence }}"
"#,
        )
        .await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(rig.fake.count("v-x"), 1, "good enough at once");
    assert_eq!(rig.fake.count("v-y [c=low]"), 3, "asked until `max`");
    let (_, task) = rig.fake.last("v-y [c=low]");
    assert!(task.contains("last: low"), "{task}");
    let y = read_step(&*rig.store, &s.run_id, &instance_record_id("review", 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(y.iterations(), Some(3));
    assert_eq!(
        y.attempts[2].run_id.as_str(),
        format!("{}.review.1.3", s.run_id)
    );
}

#[tokio::test]
async fn resume_retry_failed_sends_again_only_the_failed_instances() {
    let rig = rig();
    let yaml = r#"
name: fan
steps:
  - id: check
    agent: auditor
    for_each: ["good", "flaky [failfirst=1]"]
    task: "[id=k-{{ item }}]"
  - { id: after, agent: webster, task: "[id=after] {{ steps.check.statuses }}" }
"#;
    let s = rig.run(yaml).await;
    assert_eq!(s.status, RunStatus::Failed);
    let done = rig
        .exec()
        .resume_with(
            &s.run_id,
            &orch_workflow::ResumeOptions { retry_failed: true },
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
    assert_eq!(rig.fake.count("k-good"), 1, "a completed instance stays");
    assert_eq!(rig.fake.count("k-flaky [failfirst=1]"), 2);
    let flaky = read_step(&*rig.store, &s.run_id, &instance_record_id("check", 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(flaky.instance.as_ref().unwrap().index, 1);
    assert_eq!(
        flaky.attempts[0].run_id.as_str(),
        format!("{}.check.1.2", s.run_id),
        "the next derived id"
    );
    let (_, task) = rig.fake.last("after");
    assert!(task.contains("[\"complete\",\"complete\"]"), "{task}");
}
