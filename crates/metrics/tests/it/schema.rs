//! The published JSON Schema of the report.

use crate::crate_dir;

#[test]
fn schema_file_is_up_to_date() {
    let path = crate_dir().join("schema/metrics.schema.json");
    let mut generated = serde_json::to_string_pretty(&orch_metrics::report_json_schema()).unwrap();
    generated.push('\n');
    if std::env::var_os("ORCH_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the Rust types: run `ORCH_BLESS=1 cargo test -p orch-metrics` and commit it",
        path.display()
    );
}

#[test]
fn the_schema_names_its_version_and_every_section() {
    let schema = orch_metrics::report_json_schema().to_value();
    assert_eq!(schema["title"], "orch metrics report");
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in [
        "schema",
        "generatedAt",
        "source",
        "window",
        "filters",
        "totals",
        "agents",
        "callers",
        "workflows",
        "problems",
    ] {
        assert!(required.contains(&field), "{field}");
    }
}
