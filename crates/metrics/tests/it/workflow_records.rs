//! Workflow run records in `orch-workflow`'s exact shape (its own types,
//! serialized and stored as the executor stores them) are what metrics
//! read; a record in any other shape is a problem, not a count.

use std::collections::BTreeMap;
use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use orch_handoff::{RunId, WorkflowRecord};
use orch_metrics::{FanOutStats, Options, RunStatuses, SubWorkflowStats};
use orch_workflow::{
    Attempt, AttemptStatus, FanOutRecord, InstanceCounts, InstanceOf, ParentLink, RunStatus,
    RunSummary, StepRecord, StepStatus, StepSummary, attempt_run_id, child_run_id,
    instance_record_id,
};

use crate::{open, options, scan};

fn t0() -> Timestamp {
    "2026-11-20T10:00:00Z".parse().unwrap()
}

fn run_id(n: u32) -> RunId {
    RunId::new(format!("wf-review-20261120T100000Z-{n:08x}")).unwrap()
}

fn summary(id: &RunId, status: RunStatus, started: Timestamp) -> RunSummary {
    RunSummary {
        schema: 1,
        run_id: id.clone(),
        workflow: "review".to_owned(),
        origin: "review.yaml".to_owned(),
        source: "name: review\nsteps: []\n".to_owned(),
        status,
        caller: "manager".to_owned(),
        inputs: BTreeMap::from([("topic".to_owned(), "mirrors".to_owned())]),
        steps: BTreeMap::new(),
        started,
        finished: None,
        output: None,
        output_note: None,
        cancelled: None,
        confidence: None,
        parent: None,
        children: BTreeMap::new(),
        uses: Vec::new(),
    }
}

fn step(status: StepStatus, agent: &str, attempts: u32) -> StepSummary {
    StepSummary {
        status,
        agent: Some(agent.to_owned()),
        attempts,
        duration_ms: None,
        reason: None,
        iterations: None,
        instances: None,
    }
}

fn attempt(run: &RunId, step: &str, n: u32, status: AttemptStatus) -> Attempt {
    Attempt {
        run_id: attempt_run_id(run, step, n),
        status,
        started: t0(),
        finished: Some(t0() + SignedDuration::from_secs(30)),
        timeout_ms: 30_000,
        detail: None,
        iteration: None,
    }
}

/// Stores the records as the executor does: serialized to a JSON value,
/// then `put_workflow_record`.
fn put(root: &Path, summaries: &[RunSummary], steps: &[(RunId, StepRecord)]) {
    let store = open(root);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for s in summaries {
            let v = serde_json::to_value(s).unwrap();
            store
                .put_workflow_record(&s.run_id, &WorkflowRecord::Summary, &v)
                .await
                .unwrap();
        }
        for (run, rec) in steps {
            let v = serde_json::to_value(rec).unwrap();
            store
                .put_workflow_record(run, &WorkflowRecord::Step(rec.step.clone()), &v)
                .await
                .unwrap();
        }
    });
}

#[test]
fn records_in_the_workflow_crates_shape_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (run_id(1), run_id(2));
    let mut done = summary(&a, RunStatus::CompletedWithFailures, t0());
    done.finished = Some(t0() + SignedDuration::from_secs(90));
    done.output_note = Some("step `check` was rejected".to_owned());
    done.steps = BTreeMap::from([
        (
            "research".to_owned(),
            step(StepStatus::Failed, "webster", 2),
        ),
        (
            "write".to_owned(),
            step(StepStatus::Completed, "secretary", 1),
        ),
        ("check".to_owned(), step(StepStatus::Rejected, "auditor", 1)),
    ]);
    let mut research = StepRecord::new("research");
    research.status = StepStatus::Failed;
    research.agent = Some("webster".to_owned());
    research.attempts = vec![
        attempt(&a, "research", 1, AttemptStatus::TimedOut),
        attempt(&a, "research", 2, AttemptStatus::Failed),
    ];
    research.delegation_run_id = Some(attempt_run_id(&a, "research", 2));
    research.set_rendered_task("Find the CTE of Zerodur".to_owned());
    research.started = Some(t0());
    research.finished = Some(t0() + SignedDuration::from_secs(60));
    research.reason = Some("the agent reported failure".to_owned());
    let mut running = summary(&b, RunStatus::Running, t0() + SignedDuration::from_hours(1));
    running.steps = BTreeMap::from([(
        "research".to_owned(),
        step(StepStatus::Running, "webster", 1),
    )]);
    put(dir.path(), &[done, running], &[(a.clone(), research)]);

    let report = scan(dir.path(), &options());
    assert_eq!(report.problems, orch_metrics::Problems::default());
    assert_eq!(report.totals.workflow_runs, 2);
    let [wf] = report.workflows.as_slice() else {
        panic!("{:#?}", report.workflows)
    };
    assert_eq!(wf.workflow, "review");
    assert_eq!(wf.runs, 2);
    assert_eq!(
        wf.statuses,
        RunStatuses {
            running: 1,
            completed_with_failures: 1,
            ..RunStatuses::default()
        }
    );
    assert_eq!(wf.duration.count, 1);
    assert_eq!(wf.duration.max_ms, Some(90_000));
    let failing: Vec<_> = wf
        .failing_steps
        .iter()
        .map(|s| {
            (
                s.step.as_str(),
                s.agents.clone(),
                s.runs,
                s.failed,
                s.rejected,
                s.timed_out,
                s.retries,
            )
        })
        .collect();
    assert_eq!(
        failing,
        [
            ("research", vec!["webster".to_owned()], 2, 1, 0, 1, 1),
            ("check", vec!["auditor".to_owned()], 1, 0, 1, 0, 0),
        ]
    );

    // The window is on the summary's typed `started`.
    let late = scan(
        dir.path(),
        &Options {
            since: Some(t0() + SignedDuration::from_mins(30)),
            ..options()
        },
    );
    assert_eq!(late.totals.workflow_runs, 1);
    assert_eq!(late.workflows[0].statuses.running, 1);
    // A `--workflow` filter reads every step record of the selected runs
    // (a step with none yet is skipped, not a problem).
    let selected = scan(
        dir.path(),
        &Options {
            workflows: vec!["review".to_owned()],
            ..options()
        },
    );
    assert_eq!(selected.totals.workflow_runs, 2);
    assert_eq!(selected.workflows, report.workflows);
    assert_eq!(selected.problems, report.problems);
}

#[test]
fn every_run_status_has_its_own_column() {
    let dir = tempfile::tempdir().unwrap();
    let statuses = [
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::CompletedWithFailures,
        RunStatus::Failed,
        RunStatus::AwaitingApproval,
        RunStatus::Cancelled,
    ];
    let summaries: Vec<RunSummary> = (1..)
        .zip(statuses)
        .map(|(n, status)| summary(&run_id(n), status, t0()))
        .collect();
    put(dir.path(), &summaries, &[]);
    let report = scan(dir.path(), &options());
    assert_eq!(report.problems.unreadable_files, 0);
    assert_eq!(
        report.workflows[0].statuses,
        RunStatuses {
            running: 1,
            completed: 1,
            completed_with_failures: 1,
            failed: 1,
            awaiting_approval: 1,
            cancelled: 1,
            other: 0,
        }
    );
}

#[test]
fn records_in_another_shape_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let good = |id: &RunId| {
        let mut s = summary(id, RunStatus::Failed, t0());
        s.steps = BTreeMap::from([("s".to_owned(), step(StepStatus::Failed, "webster", 1))]);
        serde_json::to_value(s).unwrap()
    };
    // A status orch-workflow does not know.
    let mut unknown = good(&run_id(1));
    unknown["status"] = "exploded".into();
    // Only the fields metrics count (what an older metrics read).
    let subset = serde_json::json!({
        "workflow": "review",
        "status": "failed",
        "started": "2026-11-20T10:00:00Z",
        "steps": {},
    });
    // A started time that is not one.
    let mut bad_time = good(&run_id(3));
    bad_time["started"] = "yesterday".into();
    // A summary that reads, with a step record whose attempt status is
    // unknown.
    let mut rec = serde_json::to_value(StepRecord::new("s")).unwrap();
    rec["status"] = "failed".into();
    rec["attempts"] = serde_json::json!([{
        "runId": "wf-review-20261120T100000Z-00000004.s.1",
        "status": "vanished",
        "started": "2026-11-20T10:00:00Z",
        "finished": null,
        "timeoutMs": 1000,
        "detail": null,
    }]);
    for (n, value) in [
        (1, unknown),
        (2, subset),
        (3, bad_time),
        (4, good(&run_id(4))),
    ] {
        let dir = root.join("workflows").join(run_id(n).as_str());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("summary.json"), value.to_string()).unwrap();
    }
    std::fs::write(
        root.join("workflows")
            .join(run_id(4).as_str())
            .join("s.json"),
        rec.to_string(),
    )
    .unwrap();

    let report = scan(root, &options());
    let reasons: Vec<(&str, &str)> = report
        .problems
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.reason.as_str()))
        .collect();
    let path = |n: u32, file: &str| format!("workflows/{}/{file}", run_id(n));
    let reason_of = |p: &str| {
        reasons
            .iter()
            .find(|(path, _)| *path == p)
            .unwrap_or_else(|| panic!("{p} not listed: {reasons:#?}"))
            .1
    };
    assert_eq!(report.problems.unreadable_files, 4, "{reasons:#?}");
    let unknown = reason_of(&path(1, "summary.json"));
    assert!(
        unknown.starts_with("not a workflow run summary: unknown variant `exploded`"),
        "{unknown}"
    );
    let subset = reason_of(&path(2, "summary.json"));
    assert!(
        subset.starts_with("not a workflow run summary: missing field"),
        "{subset}"
    );
    assert!(reason_of(&path(3, "summary.json")).starts_with("not a workflow run summary: "));
    let attempt = reason_of(&path(4, "s.json"));
    assert!(
        attempt.starts_with("not a workflow step record: unknown variant `vanished`"),
        "{attempt}"
    );
    // The run whose summary reads still counts; its step's attempts do not.
    assert_eq!(report.totals.workflow_runs, 1);
    let wf = &report.workflows[0];
    assert_eq!(wf.statuses.failed, 1);
    assert_eq!(wf.failing_steps[0].failed, 1);
    assert_eq!(wf.failing_steps[0].timed_out, 0);
}

#[test]
fn repeat_steps_count_their_iterations_and_iterations_are_not_retries() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (run_id(1), run_id(2));
    let mut first = summary(&a, RunStatus::Completed, t0());
    // Three iterations, one of them retried once: 4 delegations.
    let mut review = step(StepStatus::Completed, "tech-lead", 4);
    review.iterations = Some(3);
    first.steps = BTreeMap::from([
        ("review".to_owned(), review),
        (
            "minutes".to_owned(),
            step(StepStatus::Completed, "secretary", 1),
        ),
    ]);
    let mut second = summary(
        &b,
        RunStatus::Completed,
        t0() + SignedDuration::from_mins(5),
    );
    let mut review = step(StepStatus::Failed, "tech-lead", 1);
    review.iterations = Some(1);
    second.steps = BTreeMap::from([("review".to_owned(), review)]);
    put(dir.path(), &[first, second], &[]);

    let report = scan(dir.path(), &options());
    let [wf] = report.workflows.as_slice() else {
        panic!("{:#?}", report.workflows)
    };
    assert_eq!(
        wf.repeated_steps,
        [orch_metrics::RepeatStats {
            step: "review".to_owned(),
            runs: 2,
            iterations: 4,
        }]
    );
    let review = wf
        .failing_steps
        .iter()
        .find(|s| s.step == "review")
        .unwrap();
    assert_eq!((review.failed, review.retries), (1, 1), "{review:?}");
    let prom = orch_metrics::render_prometheus(&report);
    assert!(
        prom.contains("orch_workflow_step_iterations_total{workflow=\"review\",step=\"review\"} 4"),
        "{prom}"
    );
}

/// The record of instance `index` of `for_each` step `step` in run `run`,
/// ended `status` after delegations of `attempts`.
fn instance(
    run: &RunId,
    step: &str,
    index: u32,
    status: StepStatus,
    attempts: &[AttemptStatus],
) -> (RunId, StepRecord) {
    let id = instance_record_id(step, index as usize);
    let mut rec = StepRecord::new(&id);
    rec.status = status;
    rec.agent = Some("webster".to_owned());
    rec.instance = Some(InstanceOf {
        step: step.to_owned(),
        index,
        item: format!("item {index}"),
    });
    rec.attempts = (1..)
        .zip(attempts)
        .map(|(n, s)| attempt(run, &id, n, *s))
        .collect();
    rec.started = Some(t0());
    rec.finished = Some(t0() + SignedDuration::from_secs(60));
    (run.clone(), rec)
}

/// A `for_each` step's summary entry: no delegations of its own.
fn fanned(status: StepStatus, instances: InstanceCounts) -> StepSummary {
    StepSummary {
        instances: Some(instances),
        ..step(status, "webster", 0)
    }
}

#[test]
fn fan_out_steps_count_their_instances_and_cancelled_ones_never_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (run_id(1), run_id(2));
    // `join: any` over 3 items: two completed, the third stopped in flight
    // once the join was met (its delegation `cancelled`).
    let mut first = summary(&a, RunStatus::Completed, t0());
    first.finished = Some(t0() + SignedDuration::from_secs(90));
    first.steps = BTreeMap::from([
        (
            "research".to_owned(),
            fanned(
                StepStatus::Completed,
                InstanceCounts {
                    total: 3,
                    completed: 2,
                    failed: 0,
                    cancelled: 1,
                },
            ),
        ),
        (
            "write".to_owned(),
            step(StepStatus::Completed, "secretary", 1),
        ),
    ]);
    // `join: { min: 3 }` over 4 items: one completed, one failed after two
    // timeouts, one failed with a failed handoff, and one its step's
    // deadline stopped as it timed out (skipped: not a failure); the gate
    // refused the partial result.
    let mut second = summary(&b, RunStatus::Failed, t0() + SignedDuration::from_mins(5));
    second.finished = Some(t0() + SignedDuration::from_mins(7));
    second.steps = BTreeMap::from([(
        "research".to_owned(),
        fanned(
            StepStatus::Failed,
            InstanceCounts {
                total: 4,
                completed: 1,
                failed: 2,
                cancelled: 1,
            },
        ),
    )]);
    let mut fan = StepRecord::new("research");
    fan.status = StepStatus::Failed;
    fan.fan_out = Some(FanOutRecord {
        items_sha256: "0".repeat(64),
        instances: second.steps["research"].instances.unwrap(),
    });
    use AttemptStatus as A;
    use StepStatus as S;
    let records = [
        instance(&a, "research", 0, S::Completed, &[A::Complete]),
        instance(&a, "research", 1, S::Completed, &[A::Partial]),
        instance(&a, "research", 2, S::Skipped, &[A::TimedOut, A::Cancelled]),
        (b.clone(), fan),
        instance(&b, "research", 0, S::Completed, &[A::Complete]),
        instance(&b, "research", 1, S::Failed, &[A::TimedOut, A::TimedOut]),
        instance(&b, "research", 2, S::Failed, &[A::Failed]),
        instance(&b, "research", 3, S::Skipped, &[A::TimedOut]),
    ];
    put(dir.path(), &[first, second], &records);
    // Every instance delegation is in the ledger (as the executor leaves
    // it: no `workflow` field, only its derived run id), and one more
    // delegation of no workflow.
    let mut ledger = String::new();
    let mut delegations = 0;
    for (_, rec) in &records {
        for att in &rec.attempts {
            delegations += 1;
            ledger.push_str(&format!(
                "{{\"ts\":\"{}\",\"event\":\"dispatched\",\"runId\":\"{}\",\"agent\":\"webster\",\"caller\":\"manager\"}}\n",
                att.started, att.run_id
            ));
        }
    }
    ledger.push_str("{\"ts\":\"2026-11-20T10:00:00Z\",\"event\":\"dispatched\",\"runId\":\"orch-20261120T100000Z-00000001\",\"agent\":\"webster\",\"caller\":\"manager\"}\n");
    std::fs::write(dir.path().join("ledger.jsonl"), ledger).unwrap();

    let report = scan(dir.path(), &options());
    assert_eq!(report.problems, orch_metrics::Problems::default());
    assert_eq!(report.totals.delegations, delegations + 1);
    let [wf] = report.workflows.as_slice() else {
        panic!("{:#?}", report.workflows)
    };
    assert_eq!(
        wf.fanned_steps,
        [FanOutStats {
            step: "research".to_owned(),
            runs: 2,
            instances: 7,
            completed: 3,
            failed: 2,
            cancelled: 2,
        }]
    );
    assert_eq!(wf.repeated_steps, []);
    // The step failed once (its own status); its timed-out attempts are
    // those of its failed instances: not the one its deadline stopped, nor
    // the cancelled one's earlier timeout.
    assert_eq!(
        wf.failing_steps,
        [orch_metrics::StepStats {
            step: "research".to_owned(),
            agents: vec!["webster".to_owned()],
            runs: 2,
            failed: 1,
            rejected: 0,
            timed_out: 2,
            retries: 0,
        }]
    );

    let text = orch_metrics::render_text(&report, &orch_metrics::TextOptions::default());
    let table = [
        "Fanned-out steps (one instance per item)",
        "workflow  step      runs  instances  completed  failed  cancelled",
        "review    research     2          7          3       2          2",
        "cancelled: no longer needed once the step's join was met (not a failure); the rest had not ended",
    ]
    .join("\n");
    assert!(text.contains(&table), "{text}");

    let prom = orch_metrics::render_prometheus(&report);
    let lines: Vec<&str> = prom
        .lines()
        .filter(|l| l.contains("orch_workflow_step_instances_total"))
        .collect();
    assert_eq!(
        lines,
        [
            "# HELP orch_workflow_step_instances_total Instances of workflow `for_each` steps by outcome: completed, failed, cancelled (no longer needed by the step's join; not a failure).",
            "# TYPE orch_workflow_step_instances_total counter",
            "orch_workflow_step_instances_total{workflow=\"review\",step=\"research\",outcome=\"completed\"} 3",
            "orch_workflow_step_instances_total{workflow=\"review\",step=\"research\",outcome=\"failed\"} 2",
            "orch_workflow_step_instances_total{workflow=\"review\",step=\"research\",outcome=\"cancelled\"} 2",
        ]
    );
    assert!(
        prom.contains("orch_workflow_step_failures_total{workflow=\"review\",step=\"research\",kind=\"timed-out\"} 2"),
        "{prom}"
    );

    // A `--workflow` filter reads every instance's record: their
    // delegations (`<run>.<step>.<N>.<n>`) are the workflow's, and the
    // figures stay the same.
    let selected = scan(
        dir.path(),
        &Options {
            workflows: vec!["review".to_owned()],
            ..options()
        },
    );
    assert_eq!(selected.workflows, report.workflows);
    assert_eq!(selected.problems, report.problems);
    assert_eq!(selected.totals.delegations, delegations);
    assert_eq!(selected.agents[0].delegations, delegations);
}

/// A `uses` step's summary entry: no delegations, no agent of its own.
fn uses(status: StepStatus) -> StepSummary {
    StepSummary {
        agent: None,
        ..step(status, "", 0)
    }
}

/// The child run of `parent`'s `uses` step `step`: a run of workflow
/// `research` that names its parent.
fn child(parent: &RunId, step: &str, status: RunStatus) -> RunSummary {
    let id = child_run_id(parent, step);
    let mut s = summary(&id, status, t0() + SignedDuration::from_secs(1));
    s.workflow = "research".to_owned();
    s.parent = Some(ParentLink {
        run_id: parent.clone(),
        step: step.to_owned(),
    });
    s.steps = BTreeMap::from([("search".to_owned(), step_of(status, "webster"))]);
    s
}

/// A delegated step whose status matches a run that ended `status`.
fn step_of(status: RunStatus, agent: &str) -> StepSummary {
    let st = match status {
        RunStatus::Running => StepStatus::Running,
        RunStatus::Failed => StepStatus::Failed,
        _ => StepStatus::Completed,
    };
    step(st, agent, 1)
}

#[test]
fn uses_steps_count_their_child_runs_and_child_runs_are_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (run_id(1), run_id(2), run_id(3));
    let parent = |id: &RunId, status, steps: Vec<(&str, StepSummary)>, uses: &[&str]| {
        let mut s = summary(id, status, t0());
        s.steps = steps.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        // Every `uses` step has its child's id, started or not.
        s.children = uses
            .iter()
            .map(|step| ((*step).to_owned(), child_run_id(id, step)))
            .collect();
        s
    };
    // `background` completed; a plain step after it.
    let first = parent(
        &a,
        RunStatus::Completed,
        vec![
            ("background", uses(StepStatus::Completed)),
            ("write", step(StepStatus::Completed, "secretary", 1)),
        ],
        &["background"],
    );
    // `background`'s result was rejected (its child run completed), so
    // `digest` never started.
    let second = parent(
        &b,
        RunStatus::Failed,
        vec![
            ("background", uses(StepStatus::Rejected)),
            ("digest", uses(StepStatus::Skipped)),
        ],
        &["background", "digest"],
    );
    // `background` still running; `digest` not started yet.
    let third = parent(
        &c,
        RunStatus::Running,
        vec![
            ("background", uses(StepStatus::Running)),
            ("digest", uses(StepStatus::Pending)),
        ],
        &["background", "digest"],
    );
    // The three child runs, and a run of `research` of its own.
    let mut alone = summary(&run_id(4), RunStatus::Failed, t0());
    alone.workflow = "research".to_owned();
    alone.steps = BTreeMap::from([("search".to_owned(), step_of(RunStatus::Failed, "webster"))]);
    put(
        dir.path(),
        &[
            first,
            second,
            third,
            child(&a, "background", RunStatus::Completed),
            child(&b, "background", RunStatus::Completed),
            child(&c, "background", RunStatus::Running),
            alone,
        ],
        &[],
    );

    let report = scan(dir.path(), &options());
    assert_eq!(report.problems, orch_metrics::Problems::default());
    assert_eq!(report.totals.workflow_runs, 7);
    let [research, review] = report.workflows.as_slice() else {
        panic!("{:#?}", report.workflows)
    };
    assert_eq!(
        (
            research.workflow.as_str(),
            research.runs,
            research.child_runs
        ),
        ("research", 4, 3)
    );
    assert_eq!(research.sub_workflow_steps, []);
    assert_eq!(
        (review.workflow.as_str(), review.runs, review.child_runs),
        ("review", 3, 0)
    );
    assert_eq!(
        review.sub_workflow_steps,
        [
            SubWorkflowStats {
                step: "background".to_owned(),
                runs: 3,
                completed: 1,
                failed: 1,
            },
            SubWorkflowStats {
                step: "digest".to_owned(),
                runs: 0,
                completed: 0,
                failed: 0,
            },
        ]
    );
    assert_eq!(review.fanned_steps, []);
    assert_eq!(review.repeated_steps, []);
    // Its rejection is the `uses` step's, among the failing steps too.
    assert_eq!(
        review.failing_steps,
        [orch_metrics::StepStats {
            step: "background".to_owned(),
            agents: vec![],
            runs: 3,
            failed: 0,
            rejected: 1,
            timed_out: 0,
            retries: 0,
        }]
    );

    // JSON names them `childRuns` and `subWorkflowSteps`, and reads back.
    let json = orch_metrics::render_json(&report);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["workflows"][0]["childRuns"], 3);
    assert_eq!(
        value["workflows"][1]["subWorkflowSteps"][0],
        serde_json::json!({"step": "background", "runs": 3, "completed": 1, "failed": 1})
    );
    let back: orch_metrics::Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    // A report of an older orch, without them, still reads.
    let mut old = value.clone();
    for wf in old["workflows"].as_array_mut().unwrap() {
        let wf = wf.as_object_mut().unwrap();
        wf.remove("childRuns");
        wf.remove("subWorkflowSteps");
    }
    let old: orch_metrics::Report = serde_json::from_value(old).unwrap();
    assert_eq!(old.workflows[0].child_runs, 0);
    assert_eq!(old.workflows[1].sub_workflow_steps, []);

    let text = orch_metrics::render_text(&report, &orch_metrics::TextOptions::default());
    let runs = [
        "workflow  runs  child  completed  with failures  failed  other  p50  p90  max",
        "research     4      3          2              0       1      1    -    -    -",
        "review       3      0          1              0       1      1    -    -    -",
        "other: running, awaiting approval or cancelled; durations of finished runs",
        "child: runs started by another run's `uses` step (also counted in runs)",
    ]
    .join("\n");
    assert!(text.contains(&runs), "{text}");
    let table = [
        "Sub-workflow steps (`uses`: a child run each)",
        "workflow  step        runs  completed  failed",
        "review    background     3          1       1",
        "review    digest         0          0       0",
        "runs: runs in which the step started; failed: failed or rejected; the rest had not ended",
    ]
    .join("\n");
    assert!(text.contains(&table), "{text}");

    let prom = orch_metrics::render_prometheus(&report);
    let lines: Vec<&str> = prom
        .lines()
        .filter(|l| {
            l.contains("orch_workflow_child_runs_total")
                || l.contains("orch_workflow_sub_workflow_steps_total")
        })
        .collect();
    assert_eq!(
        lines,
        [
            "# HELP orch_workflow_child_runs_total Workflow runs that are child runs (started by another run's `uses` step), by workflow; also counted in orch_workflow_runs_total.",
            "# TYPE orch_workflow_child_runs_total counter",
            "orch_workflow_child_runs_total{workflow=\"research\"} 3",
            "orch_workflow_child_runs_total{workflow=\"review\"} 0",
            "# HELP orch_workflow_sub_workflow_steps_total Runs of workflow `uses` steps (each a child run of another workflow) by outcome: completed, failed (failed or rejected), other (not ended).",
            "# TYPE orch_workflow_sub_workflow_steps_total counter",
            "orch_workflow_sub_workflow_steps_total{workflow=\"review\",step=\"background\",outcome=\"completed\"} 1",
            "orch_workflow_sub_workflow_steps_total{workflow=\"review\",step=\"background\",outcome=\"failed\"} 1",
            "orch_workflow_sub_workflow_steps_total{workflow=\"review\",step=\"background\",outcome=\"other\"} 1",
            "orch_workflow_sub_workflow_steps_total{workflow=\"review\",step=\"digest\",outcome=\"completed\"} 0",
            "orch_workflow_sub_workflow_steps_total{workflow=\"review\",step=\"digest\",outcome=\"failed\"} 0",
            "orch_workflow_sub_workflow_steps_total{workflow=\"review\",step=\"digest\",outcome=\"other\"} 0",
        ]
    );
    openmetrics_parser::prometheus::parse_prometheus(&prom)
        .unwrap_or_else(|e| panic!("{e:?}\n{prom}"));

    // A `--workflow` filter on the child workflow keeps its child runs;
    // by a child's run id, that run alone.
    let selected = scan(
        dir.path(),
        &Options {
            workflows: vec!["research".to_owned()],
            ..options()
        },
    );
    assert_eq!(
        selected.workflows.as_slice(),
        std::slice::from_ref(research)
    );
    let one = scan(
        dir.path(),
        &Options {
            workflows: vec![child_run_id(&b, "background").to_string()],
            ..options()
        },
    );
    assert_eq!((one.workflows[0].runs, one.workflows[0].child_runs), (1, 1));
    // An `--agent` filter counts only the steps that agent ran: a `uses`
    // step has no agent.
    let by_agent = scan(
        dir.path(),
        &Options {
            agents: vec!["secretary".to_owned()],
            ..options()
        },
    );
    let [review] = by_agent.workflows.as_slice() else {
        panic!("{:#?}", by_agent.workflows)
    };
    assert_eq!((review.runs, review.child_runs), (1, 0));
    assert_eq!(review.sub_workflow_steps, []);
}
