//! The published JSON Schema of workflow files.

use std::path::PathBuf;

use orch_workflow::{builtin, builtin_names, workflow_json_schema};

/// Fails unless `schema/<file>` is `schema` (`ORCH_BLESS=1` writes it).
fn assert_committed(file: &str, schema: &serde_json::Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join(file);
    let mut generated = serde_json::to_string_pretty(schema).unwrap();
    generated.push('\n');
    if std::env::var_os("ORCH_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the Rust types: run `ORCH_BLESS=1 cargo test -p orch-workflow` and commit it",
        path.display()
    );
}

#[test]
fn schema_file_is_up_to_date() {
    assert_committed("workflow.schema.json", &workflow_json_schema());
}

/// The shipped workflows use only keys the schema declares.
#[test]
fn builtins_use_only_schema_keys() {
    let schema = workflow_json_schema();
    let top = schema["properties"].as_object().unwrap();
    let step_ref = schema["$defs"]["Step"]["properties"].as_object().unwrap();
    for name in builtin_names() {
        let doc: serde_json::Value = serde_norway::from_str(builtin(name).unwrap()).unwrap();
        for key in doc.as_object().unwrap().keys() {
            assert!(top.contains_key(key), "{name}: `{key}` not in the schema");
        }
        for step in doc["steps"].as_array().unwrap() {
            for key in step.as_object().unwrap().keys() {
                assert!(
                    step_ref.contains_key(key),
                    "{name}: step key `{key}` not in the schema"
                );
            }
        }
    }
}

#[test]
fn run_schema_file_is_up_to_date() {
    assert_committed("run.schema.json", &orch_workflow::run_json_schema());
}

/// A stored summary uses exactly the keys the run schema declares, and an
/// attempt's status is one of the schema's values.
#[test]
fn a_summary_uses_the_run_schema_keys() {
    use orch_workflow::{AttemptStatus, RunStatus, RunSummary, StepStatus, StepSummary};
    let schema = orch_workflow::run_json_schema();
    let summary = RunSummary {
        schema: 1,
        run_id: orch_delegate::orch_handoff::RunId::new("wf-1").unwrap(),
        workflow: "w".into(),
        origin: "w.yaml".into(),
        source: "name: w\n".into(),
        status: RunStatus::Completed,
        caller: "manager".into(),
        inputs: [("q".to_owned(), "x".to_owned())].into(),
        steps: [(
            "a".to_owned(),
            StepSummary {
                status: StepStatus::Completed,
                agent: Some("webster".into()),
                attempts: 1,
                duration_ms: Some(5),
                reason: None,
                iterations: None,
                instances: None,
            },
        )]
        .into(),
        started: jiff::Timestamp::UNIX_EPOCH,
        finished: Some(jiff::Timestamp::UNIX_EPOCH),
        output: Some("done".into()),
        output_note: Some("n".into()),
        cancelled: Some(orch_workflow::CancelRequest {
            by: "manager".into(),
            reason: "r".into(),
            at: jiff::Timestamp::UNIX_EPOCH,
        }),
        confidence: Some(orch_delegate::orch_handoff::Confidence::High),
        parent: Some(orch_workflow::ParentLink {
            run_id: orch_delegate::orch_handoff::RunId::new("wf-0").unwrap(),
            step: "background".into(),
        }),
        children: [(
            "b".to_owned(),
            orch_delegate::orch_handoff::RunId::new("wf-1.b").unwrap(),
        )]
        .into(),
        uses: vec![orch_workflow::UsedWorkflow {
            from: "w.yaml".into(),
            name: "quick-research".into(),
            origin: "<built-in quick-research>".into(),
            source: "name: quick-research\n".into(),
        }],
    };
    let value = serde_json::to_value(&summary).unwrap();
    let declared = schema["$defs"]["RunSummary"]["properties"]
        .as_object()
        .unwrap();
    for key in value.as_object().unwrap().keys() {
        assert!(
            declared.contains_key(key),
            "summary key `{key}` not in the schema"
        );
    }
    let statuses: Vec<String> = schema["$defs"]["AttemptStatus"]["enum"]
        .as_array()
        .map(|v| v.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_else(|| {
            schema["$defs"]["AttemptStatus"]["oneOf"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["const"].as_str().unwrap().to_owned())
                .collect()
        });
    for s in [
        AttemptStatus::Running,
        AttemptStatus::TimedOut,
        AttemptStatus::Lost,
    ] {
        assert!(statuses.iter().any(|v| v == s.as_str()), "{statuses:?}");
    }
}
