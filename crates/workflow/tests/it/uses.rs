//! `uses`: sub-workflows loaded through a resolver (errors with the file,
//! line and column of every file involved), checked for the caller, and run
//! as child runs linked to their parent: output, failure, approval from the
//! parent's run id, kill and resume, timeout and cancel.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use orch_delegate::orch_acl::Policy;
use orch_delegate::orch_handoff::{LedgerEventKind, RunId};
use orch_workflow::{
    ApprovalDecision, ErrorKind, ParentLink, Resolve, Resolved, RunStatus, StepStatus,
    awaiting_approval, check_run, child_run_id, load_with, read_step, read_summary, request_cancel,
};
use tokio_util::sync::CancellationToken;

use crate::AGENTS;
use crate::exec::{opts, reason, rig, status};

/// Workflow files by name (their origin is the name).
struct Files(Vec<(&'static str, String)>);

impl Resolve for Files {
    fn resolve(&self, name: &str, _from: &str) -> Result<Resolved, String> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| Resolved {
                origin: (*n).to_owned(),
                text: text.clone(),
            })
            .ok_or_else(|| format!("unknown workflow `{name}`"))
    }
}

const CHILD: &str = r#"name: child
inputs:
  topic: { required: true }
  tone: { default: plain }
steps:
  - { id: r, agent: webster, task: "[id=r] research {{ inputs.topic }} ({{ inputs.tone }})" }
  - { id: v, agent: tech-lead, task: "[id=v] check {{ steps.r.result }}" }
output: "{{ steps.v.result }}"
"#;

fn files(extra: &[(&'static str, &str)]) -> Files {
    let mut all = vec![("child.yaml", CHILD.to_owned())];
    all.extend(extra.iter().map(|(n, t)| (*n, (*t).to_owned())));
    Files(all)
}

fn load_err(text: &str, extra: &[(&'static str, &str)]) -> orch_workflow::WorkflowError {
    load_with(text, "parent.yaml", &files(extra)).unwrap_err()
}

#[test]
fn a_cycle_between_workflows_names_the_uses_of_both_files() {
    let a = "name: a\nsteps:\n  - id: x\n    uses: b.yaml\n";
    let b = "name: b\nsteps:\n  - { id: y, agent: webster, task: t }\n  - id: z\n    uses: a.yaml\noutput: \"{{ steps.y.result }}\"\n";
    let e = load_with(a, "a.yaml", &files(&[("a.yaml", a), ("b.yaml", b)])).unwrap_err();
    assert_eq!(e.kind, ErrorKind::WorkflowCycle);
    assert_eq!((e.origin.as_str(), e.line, e.column), ("b.yaml", 5, 11));
    assert!(
        e.message.contains(
            "a.yaml → b.yaml → a.yaml (a.yaml:4:11 uses b.yaml; b.yaml:5:11 uses a.yaml)"
        ),
        "{e}"
    );

    let own = "name: own\nsteps:\n  - id: x\n    uses: own.yaml\n";
    let e = load_with(own, "own.yaml", &files(&[("own.yaml", own)])).unwrap_err();
    assert_eq!(
        (e.kind, e.line, e.column),
        (ErrorKind::WorkflowCycle, 4, 11)
    );
    assert!(e.message.contains("workflow own.yaml uses itself"), "{e}");
}

#[test]
fn nesting_deeper_than_five_is_refused_at_the_sixth() {
    let level = |n: usize| {
        format!(
            "name: d{n}\nsteps:\n  - id: x\n    uses: d{}.yaml\noutput: \"{{{{ steps.x.result }}}}\"\n",
            n + 1
        )
    };
    let leaf = "name: leaf\nsteps:\n  - { id: y, agent: webster, task: t }\noutput: \"{{ steps.y.result }}\"\n";
    let names = [
        "d1.yaml", "d2.yaml", "d3.yaml", "d4.yaml", "d5.yaml", "d6.yaml",
    ];
    // Five levels under the root load; six do not.
    let mut five: Vec<(&'static str, String)> = (1..5).map(|n| (names[n - 1], level(n))).collect();
    five.push(("d5.yaml", leaf.to_owned()));
    assert!(load_with(&level(0), "d0.yaml", &Files(five)).is_ok());
    let mut six: Vec<(&'static str, String)> = (1..6).map(|n| (names[n - 1], level(n))).collect();
    six.push(("d6.yaml", leaf.to_owned()));
    let e = load_with(&level(0), "d0.yaml", &Files(six)).unwrap_err();
    assert_eq!(
        (e.kind, e.origin.as_str()),
        (ErrorKind::WorkflowCycle, "d5.yaml")
    );
    assert!(
        e.message
            .contains("nest more than 5 deep: d0.yaml → d1.yaml → d2.yaml → d3.yaml → d4.yaml → d5.yaml → d6.yaml"),
        "{e}"
    );
}

#[test]
fn uses_errors_name_the_line_and_column() {
    let cases: &[(&str, ErrorKind, (usize, usize), &str)] = &[
        (
            "name: p\nsteps:\n  - id: bg\n    uses: nope\n",
            ErrorKind::UnknownWorkflow,
            (4, 11),
            "step `bg`: unknown workflow `nope`",
        ),
        (
            "name: p\nsteps:\n  - id: bg\n    uses: child.yaml\n    with: { topic: x, colour: red }\n",
            ErrorKind::UnknownInput,
            (5, 31),
            "workflow `child` has no input `colour` (known: tone, topic)",
        ),
        (
            "name: p\nsteps:\n  - id: bg\n    uses: child.yaml\n",
            ErrorKind::MissingInput,
            (4, 11),
            "workflow `child` needs input `topic`: give it in `with`",
        ),
        (
            "name: p\nsteps:\n  - id: bg\n    uses: child.yaml\n    with: { topic: x }\n    task: do it\n",
            ErrorKind::Schema,
            (6, 11),
            "step `bg` uses a workflow: `task` does not apply (pass values to it with `with`)",
        ),
        (
            "name: p\nsteps:\n  - id: bg\n    uses: child.yaml\n    with: { topic: x }\n    for_each: [a, b]\n",
            ErrorKind::Schema,
            (6, 15),
            "`for_each` does not apply",
        ),
        (
            "name: p\nsteps:\n  - { id: a, agent: webster, task: t, with: { x: y } }\n",
            ErrorKind::Schema,
            (3, 45),
            "step `a` gives `with`, which is for a `uses` step",
        ),
        (
            "name: p\nsteps:\n  - id: bg\n    uses: child.yaml\n    with: { topic: \"{{ steps.nope.result }}\" }\n",
            ErrorKind::UnknownStep,
            (5, 21),
            "names an unknown step `nope`",
        ),
        (
            "name: p\nsteps:\n  - id: bg\n    uses: quiet.yaml\n",
            ErrorKind::UnknownWorkflow,
            (4, 11),
            "workflow `quiet` (quiet.yaml) has no `output`: a workflow run by `uses` must say what it returns",
        ),
        (
            "name: p\nsteps:\n  - id: a\n    task: t\n",
            ErrorKind::Schema,
            (3, 5),
            "needs `agent: NAME`, `route: auto` or `uses: WORKFLOW`",
        ),
    ];
    let quiet = "name: quiet\nsteps:\n  - { id: y, agent: webster, task: t }\n";
    for (yaml, kind, (line, column), message) in cases {
        let e = load_err(yaml, &[("quiet.yaml", quiet)]);
        assert_eq!(e.kind, *kind, "{yaml}\n{e}");
        assert_eq!((e.line, e.column), (*line, *column), "{yaml}\n{e}");
        assert_eq!(e.origin, "parent.yaml", "{e}");
        assert!(e.message.contains(message), "{yaml}\n{e}");
    }
    // An error inside the used file names that file, and who used it.
    let broken = "name: broken\nsteps:\n  - { id: y, agent: webster, task: \"{{ steps.zz.result }}\" }\noutput: x\n";
    let e = load_err(
        "name: p\nsteps:\n  - id: bg\n    uses: broken.yaml\n",
        &[("broken.yaml", broken)],
    );
    assert_eq!((e.origin.as_str(), e.line), ("broken.yaml", 3));
    assert!(e.message.ends_with("(used by parent.yaml:4:11)"), "{e}");
}

#[test]
fn the_acl_of_every_child_step_is_checked_for_the_caller() {
    let child = "name: audit\nsteps:\n  - { id: y, agent: auditor, task: t }\noutput: \"{{ steps.y.result }}\"\n";
    let wf = load_with(
        "name: p\nsteps:\n  - { id: a, agent: webster, task: t }\n  - id: bg\n    uses: audit.yaml\n",
        "parent.yaml",
        &files(&[("audit.yaml", child)]),
    )
    .unwrap();
    let errors = check_run(
        &wf,
        AGENTS,
        &Policy::atomizer_default(),
        "tech-lead",
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert!(e.is_denied());
    assert_eq!((e.origin.as_str(), e.line), ("audit.yaml", 3));
    assert!(e.message.ends_with("(used by parent.yaml:5:11)"), "{e}");
    // The manager may: no error.
    check_run(
        &wf,
        AGENTS,
        &Policy::atomizer_default(),
        "manager",
        &BTreeMap::new(),
    )
    .unwrap();
}

const PARENT: &str = r#"name: parent
steps:
  - id: bg
    uses: child.yaml
    with: { topic: "mirrors [x]" }
  - { id: after, agent: auditor, task: "[id=after] {{ steps.bg.result }} ({{ steps.bg.status }}, {{ steps.bg.confidence }})" }
output: "{{ steps.after.result }}"
"#;

#[tokio::test]
async fn a_child_run_is_linked_both_ways_and_its_output_is_the_steps_result() {
    let rig = rig();
    let wf = load_with(PARENT, "parent.yaml", &files(&[])).unwrap();
    let exec = rig.exec();
    let s = exec
        .run(&wf, PARENT, opts(&wf), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.status, RunStatus::Completed, "{s:?}");
    assert_eq!(status(&s, "bg"), StepStatus::Completed);
    let child_id = child_run_id(&s.run_id, "bg");
    assert_eq!(
        s.children,
        BTreeMap::from([("bg".to_owned(), child_id.clone())])
    );
    assert_eq!(s.uses.len(), 1);
    assert_eq!(
        (s.uses[0].from.as_str(), s.uses[0].origin.as_str()),
        ("parent.yaml", "child.yaml")
    );

    let child = read_summary(&*rig.store, &child_id).await.unwrap();
    assert_eq!(child.status, RunStatus::Completed);
    assert_eq!(
        child.parent,
        Some(ParentLink {
            run_id: s.run_id.clone(),
            step: "bg".into()
        })
    );
    assert_eq!(child.caller, "manager");
    assert_eq!(child.inputs["topic"], "mirrors [x]");
    assert_eq!(child.inputs["tone"], "plain", "the child's default applies");
    assert_eq!(child.output.as_deref(), Some("result of v"));
    assert_eq!(
        child.confidence,
        Some(orch_delegate::orch_handoff::Confidence::High)
    );

    // The dependent read the child's output, status and confidence.
    let (_, msg) = rig.fake.last("after");
    assert!(msg.contains("result of v (complete, high)"), "{msg}");
    let rec = read_step(&*rig.store, &s.run_id, "bg")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.child.as_ref().map(|c| c.run_id.clone()), Some(child_id));
    assert_eq!(rec.child.and_then(|c| c.status), Some(RunStatus::Completed));
    // Its steps report as `bg/…`.
    let log = &rig.log;
    assert!(log.pos("start:bg") < log.pos("start:bg/r"));
    assert!(log.pos("end:bg/v") < log.pos("end:bg"));
    assert!(log.pos("end:bg") < log.pos("start:after"));
}

#[tokio::test]
async fn a_failed_child_fails_the_step_and_says_which_of_its_steps() {
    let rig = rig();
    let child = "name: c\nsteps:\n  - { id: w, agent: webster, task: \"[id=w] [s=failed]\" }\noutput: \"{{ steps.w.result }}\"\n";
    let yaml = "name: p\nsteps:\n  - id: bg\n    uses: c.yaml\n  - { id: after, agent: auditor, task: \"[id=after] {{ steps.bg.result }}\" }\n";
    let wf = load_with(yaml, "parent.yaml", &files(&[("c.yaml", child)])).unwrap();
    let s = rig
        .exec()
        .run(&wf, yaml, opts(&wf), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.status, RunStatus::Failed);
    assert_eq!(status(&s, "bg"), StepStatus::Failed);
    assert!(
        reason(&s, "bg").contains(&format!("child run {}.bg failed: step `w`", s.run_id)),
        "{}",
        reason(&s, "bg")
    );
    assert_eq!(status(&s, "after"), StepStatus::Pending);
    assert_eq!(rig.fake.count("after"), 0);
}

#[tokio::test]
async fn a_child_gate_is_approved_from_the_parent_run_and_resume_goes_on() {
    let rig = rig();
    let child = "name: c\nsteps:\n  - { id: r, agent: webster, task: \"[id=r]\" }\n  - id: v\n    agent: tech-lead\n    task: \"[id=v] {{ steps.r.result }}\"\n    gate: { approval: true }\noutput: \"{{ steps.v.result }}\"\n";
    let yaml = "name: p\nsteps:\n  - id: bg\n    uses: c.yaml\n  - { id: after, agent: auditor, task: \"[id=after] {{ steps.bg.result }}\" }\n";
    let wf = load_with(yaml, "parent.yaml", &files(&[("c.yaml", child)])).unwrap();
    let exec = rig.exec();
    let s = exec
        .run(&wf, yaml, opts(&wf), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.status, RunStatus::AwaitingApproval);
    assert_eq!(status(&s, "bg"), StepStatus::AwaitingApproval);
    assert_eq!(
        awaiting_approval(&*rig.store, &s.run_id).await.unwrap(),
        ["bg/v"]
    );
    // The `uses` step itself is not what waits.
    let e = orch_workflow::approve(&*rig.store, &s.run_id, "bg", ApprovalDecision::Approve)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("approve bg/v"), "{e}");
    // Its child step's id alone finds it.
    orch_workflow::approve(&*rig.store, &s.run_id, "v", ApprovalDecision::Approve)
        .await
        .unwrap();
    let s = exec
        .resume(&s.run_id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.status, RunStatus::Completed, "{s:?}");
    assert_eq!(status(&s, "after"), StepStatus::Completed);
    // Nothing of the child was sent twice.
    assert_eq!((rig.fake.count("r"), rig.fake.count("v")), (1, 1));
    let (_, msg) = rig.fake.last("after");
    assert!(msg.contains("result of v"), "{msg}");
}

#[tokio::test]
async fn a_run_killed_inside_its_child_resumes_both_and_sends_nothing_twice() {
    let rig = rig();
    // Its delegations die with the process: the lost one is sent again at
    // once on resume, the completed ones never.
    rig.fake.dies_with_sender.store(true, Ordering::SeqCst);
    let child = "name: c\nsteps:\n  - { id: r, agent: webster, task: \"[id=r]\" }\n  - { id: v, agent: tech-lead, task: \"[id=v] [hangfirst] {{ steps.r.result }}\" }\noutput: \"{{ steps.v.result }}\"\n";
    let yaml = "name: p\nsteps:\n  - { id: a, agent: auditor, task: \"[id=a]\" }\n  - id: bg\n    uses: c.yaml\n    needs: [a]\n  - { id: after, agent: auditor, task: \"[id=after] {{ steps.bg.result }}\" }\n";
    let resolver = files(&[("c.yaml", child)]);
    let wf = load_with(yaml, "parent.yaml", &resolver).unwrap();
    let run_id = RunId::new("wf-killed").unwrap();
    let mut o = opts(&wf);
    o.run_id = Some(run_id.clone());
    let exec = rig.exec();
    let cancel = CancellationToken::new();
    tokio::select! {
        r = exec.run(&wf, yaml, o, &cancel) => panic!("run ended: {r:?}"),
        () = rig.fake.hung.notified() => {}
    }
    // As after a kill -9: whatever records were written stay.
    let s = exec
        .resume(&run_id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.status, RunStatus::Completed, "{s:?}");
    assert_eq!(
        (
            rig.fake.count("a"),
            rig.fake.count("r"),
            rig.fake.count("after")
        ),
        (1, 1, 1)
    );
    assert_eq!(rig.fake.count("v"), 2, "the lost delegation is sent again");
    let child = read_summary(&*rig.store, &child_run_id(&run_id, "bg"))
        .await
        .unwrap();
    assert_eq!(child.status, RunStatus::Completed);
    assert!(rig.log.events().contains(&"lost:bg/v".to_owned()));
}

#[tokio::test]
async fn a_uses_step_past_its_timeout_cancels_its_child() {
    let rig = rig();
    let child = "name: c\nsteps:\n  - { id: h, agent: webster, task: \"[id=h] [hang]\" }\noutput: \"{{ steps.h.result }}\"\n";
    let yaml = "name: p\nsteps:\n  - id: bg\n    uses: c.yaml\n    timeout: 300ms\n    on_failure: continue\n";
    let wf = load_with(yaml, "parent.yaml", &files(&[("c.yaml", child)])).unwrap();
    let s = rig
        .exec()
        .run(&wf, yaml, opts(&wf), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.status, RunStatus::CompletedWithFailures);
    assert!(
        reason(&s, "bg").starts_with("timed out after 300ms"),
        "{}",
        reason(&s, "bg")
    );
    let child = read_summary(&*rig.store, &child_run_id(&s.run_id, "bg"))
        .await
        .unwrap();
    assert_eq!(child.status, RunStatus::Cancelled);
}

#[tokio::test]
async fn cancelling_the_parent_cancels_the_delegations_of_its_child() {
    let rig = rig();
    let child = "name: c\nsteps:\n  - { id: h, agent: webster, task: \"[id=h] [hang]\" }\noutput: \"{{ steps.h.result }}\"\n";
    let yaml = "name: p\nsteps:\n  - id: bg\n    uses: c.yaml\n";
    let wf = load_with(yaml, "parent.yaml", &files(&[("c.yaml", child)])).unwrap();
    let run_id = RunId::new("wf-stop").unwrap();
    let mut o = opts(&wf);
    o.run_id = Some(run_id.clone());
    let exec = rig.exec();
    let ask = async {
        rig.fake.hung.notified().await;
        request_cancel(&*rig.store, &run_id, "manager", "not needed")
            .await
            .unwrap();
        std::future::pending::<()>().await;
    };
    let cancel = CancellationToken::new();
    let s = tokio::select! {
        r = exec.run(&wf, yaml, o, &cancel) => r.unwrap(),
        () = ask => unreachable!(),
    };
    assert_eq!(s.status, RunStatus::Cancelled);
    assert_eq!(
        status(&s, "bg"),
        StepStatus::Running,
        "resume would take it up"
    );
    let child = read_summary(&*rig.store, &child_run_id(&run_id, "bg"))
        .await
        .unwrap();
    assert_eq!(child.status, RunStatus::Cancelled);
    let ledger = rig.store.read_ledger().await.unwrap();
    assert!(
        ledger
            .events
            .iter()
            .any(|e| e.event == LedgerEventKind::Cancelled
                && e.run_id
                    .as_ref()
                    .is_some_and(|r| r.as_str() == "wf-stop.bg.h.1")),
        "{:?}",
        ledger.events
    );
}

#[tokio::test]
async fn retry_failed_starts_the_childs_failed_steps_again() {
    let rig = rig();
    let child = "name: c\nsteps:\n  - { id: r, agent: webster, task: \"[id=r]\" }\n  - { id: w, agent: tech-lead, task: \"[id=w] [failfirst=1] {{ steps.r.result }}\" }\noutput: \"{{ steps.w.result }}\"\n";
    let yaml = "name: p\nsteps:\n  - id: bg\n    uses: c.yaml\n  - { id: after, agent: auditor, task: \"[id=after] {{ steps.bg.result }}\" }\n";
    let wf = load_with(yaml, "parent.yaml", &files(&[("c.yaml", child)])).unwrap();
    let exec = rig.exec();
    let s = exec
        .run(&wf, yaml, opts(&wf), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.status, RunStatus::Failed);
    let opts = orch_workflow::ResumeOptions { retry_failed: true };
    let s = exec
        .resume_with(&s.run_id, &opts, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.status, RunStatus::Completed, "{s:?}");
    // Only the failed step of the child was sent again.
    assert_eq!(
        (
            rig.fake.count("r"),
            rig.fake.count("w"),
            rig.fake.count("after")
        ),
        (1, 2, 1)
    );
}

#[tokio::test]
async fn a_paused_parent_asked_to_cancel_ends_with_its_child_cancelled() {
    let rig = rig();
    let child = "name: c\nsteps:\n  - id: v\n    agent: tech-lead\n    task: \"[id=v]\"\n    gate: { approval: true }\noutput: \"{{ steps.v.result }}\"\n";
    let yaml = "name: p\nsteps:\n  - id: bg\n    uses: c.yaml\n";
    let wf = load_with(yaml, "parent.yaml", &files(&[("c.yaml", child)])).unwrap();
    let exec = rig.exec();
    let s = exec
        .run(&wf, yaml, opts(&wf), &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.status, RunStatus::AwaitingApproval);
    request_cancel(&*rig.store, &s.run_id, "manager", "dropped")
        .await
        .unwrap();
    let s = exec
        .resume(&s.run_id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.status, RunStatus::Cancelled);
    let child = read_summary(&*rig.store, &child_run_id(&s.run_id, "bg"))
        .await
        .unwrap();
    assert_eq!(child.status, RunStatus::Cancelled);
    assert_eq!(rig.fake.count("v"), 1);
}
