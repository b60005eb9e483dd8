//! The shipped workflows load, validate and plan as designed.

use std::collections::BTreeMap;

use orch_delegate::orch_acl::Policy;
use orch_delegate::orch_handoff::{Confidence, Status};
use orch_workflow::{
    Context, OnFailure, StepOutput, Target, builtin, builtin_names, check_run, load,
};

use crate::corpus::AGENTS;

fn inputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn every_builtin_loads_and_passes_the_run_checks_for_manager() {
    let names: Vec<_> = builtin_names().collect();
    assert_eq!(
        names,
        [
            "design-review",
            "design-review-until-confident",
            "material-trade-study",
            "quick-research",
            "research-brief"
        ]
    );
    let given = [
        (
            "design-review",
            inputs(&[("design", "Primary mirror mount, rev C")]),
        ),
        (
            "design-review-until-confident",
            inputs(&[("design", "Primary mirror mount, rev C")]),
        ),
        (
            "material-trade-study",
            inputs(&[("materials", "Invar 36, Zerodur")]),
        ),
        (
            "quick-research",
            inputs(&[("query", "CTE of Zerodur at 20 °C?")]),
        ),
        ("research-brief", inputs(&[("topic", "CTE of ULE")])),
    ];
    for (name, given) in given {
        let text = builtin(name).unwrap();
        let wf = load(text, &format!("builtin:{name}")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(wf.name, name);
        check_run(&wf, AGENTS, &Policy::atomizer_default(), "manager", &given)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    assert!(builtin("nope").is_none());
}

#[test]
fn research_brief_runs_quick_research_as_a_child_run() {
    let wf = load(
        builtin("research-brief").unwrap(),
        &orch_workflow::builtin_origin("research-brief"),
    )
    .unwrap();
    assert_eq!(wf.plan().order(), ["background", "brief"]);
    let Target::Workflow(uses) = &wf.step("background").unwrap().target else {
        panic!("background is not a `uses` step");
    };
    assert_eq!(uses.name, "quick-research");
    assert_eq!(uses.workflow.origin(), "<built-in quick-research>");
    assert_eq!(uses.source, builtin("quick-research").unwrap());
    let with: Vec<&String> = uses.with.keys().collect();
    assert_eq!(with, ["context", "query"]);
    let used = wf.used();
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].from, "<built-in research-brief>");
}

#[test]
fn design_review_until_confident_repeats_its_review() {
    let wf = load(
        builtin("design-review-until-confident").unwrap(),
        "builtin:design-review-until-confident",
    )
    .unwrap();
    assert_eq!(wf.plan().order(), ["review", "sign-off"]);
    let review = wf.step("review").unwrap();
    let repeat = review.repeat.as_ref().unwrap();
    assert_eq!(repeat.max, 3);
    assert_eq!(
        repeat.until_text,
        "status == complete and confidence >= high"
    );
    assert!(wf.step("sign-off").unwrap().repeat.is_none());
}

#[test]
fn material_trade_study_plan_gate_and_defaults() {
    let wf = load(builtin("material-trade-study").unwrap(), "mts").unwrap();
    assert_eq!(wf.plan().order(), ["research", "evaluate", "audit"]);
    assert_eq!(wf.plan().deps("audit"), ["evaluate", "research"]);
    let evaluate = wf.step("evaluate").unwrap();
    let gate = evaluate.gate.as_ref().unwrap();
    assert_eq!(gate.status, [Status::Complete]);
    assert_eq!(gate.min_confidence, Some(Confidence::Medium));
    assert_eq!(wf.timeout_of(evaluate).as_secs(), 15 * 60);
    assert_eq!(
        wf.timeout_of(wf.step("research").unwrap()).as_secs(),
        20 * 60
    );
    assert_eq!(wf.retries_of(evaluate), 1);
    assert_eq!(wf.on_failure_of(evaluate), OnFailure::Stop);
    assert_eq!(evaluate.target, Target::Agent("tech-lead".into()));

    let resolved = check_run(
        &wf,
        AGENTS,
        &Policy::atomizer_default(),
        "manager",
        &inputs(&[("materials", "Invar 36, Zerodur")]),
    )
    .unwrap();
    assert_eq!(resolved.get("requirements"), Some("CTE < 0.01 ppm/K"));

    // Render the audit task with finished upstream steps.
    let done = |result: &str| StepOutput {
        status: Status::Complete,
        confidence: Some(Confidence::High),
        result: result.into(),
        notes: String::new(),
        artifacts: vec![],
        instances: Vec::new(),
    };
    let ctx = Context {
        inputs: resolved.into_map(),
        steps: [
            ("research".to_owned(), done("TABLE")),
            ("evaluate".to_owned(), done("VERDICT")),
        ]
        .into(),
        run_id: Some("wf-test".into()),
        previous: None,
        item: None,
        outcome: None,
    };
    let task = wf.step("audit").unwrap().task.render(&ctx).unwrap();
    assert!(task.contains("Requirements: CTE < 0.01 ppm/K"));
    assert!(task.contains("VERDICT") && task.contains("TABLE"));
    assert!(!task.contains("{{"));
    // The research step is not finished in a context without it.
    let early = Context {
        steps: BTreeMap::new(),
        ..ctx
    };
    assert!(wf.step("evaluate").unwrap().task.render(&early).is_err());
}

#[test]
fn design_review_runs_two_reviews_in_parallel() {
    let wf = load(builtin("design-review").unwrap(), "dr").unwrap();
    assert_eq!(
        wf.plan().levels(),
        vec![vec!["engineering", "optimization"], vec!["consolidate"]]
    );
    assert_eq!(wf.max_parallel, Some(2));
    let q = load(builtin("quick-research").unwrap(), "qr").unwrap();
    assert_eq!(q.plan().edges(), [("research", "validate")]);
}

#[test]
fn a_denied_caller_is_told_for_every_step() {
    let wf = load(builtin("design-review").unwrap(), "dr").unwrap();
    let errs = check_run(
        &wf,
        AGENTS,
        &Policy::atomizer_default(),
        "optimizer",
        &inputs(&[("design", "x")]),
    )
    .unwrap_err();
    // optimizer may reach none of tech-lead, itself, auditor.
    assert_eq!(errs.len(), 3);
    assert!(errs.iter().all(|e| e.is_denied()));
}
