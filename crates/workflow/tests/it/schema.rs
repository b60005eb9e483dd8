//! The published JSON Schema of workflow files.

use std::path::PathBuf;

use orch_workflow::{builtin, builtin_names, workflow_json_schema};

#[test]
fn schema_file_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema/workflow.schema.json");
    let mut generated = serde_json::to_string_pretty(&workflow_json_schema()).unwrap();
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
