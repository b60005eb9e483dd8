//! `orch metrics` through the binary: counts over real (simulated)
//! delegations, snapshots of the three formats on the fixed fixture store
//! of `crates/metrics/tests/fixture`, and usage errors.

use std::path::Path;

use crate::{FAST_SIM, Orch, settings};

fn json(orch: &Orch, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["metrics", "json"];
    full.extend_from_slice(args);
    let run = orch.ok(&full);
    serde_json::from_str(&run.stdout).unwrap()
}

fn run_id(run: &crate::Run) -> String {
    let value: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    value["runId"].as_str().unwrap().to_owned()
}

#[test]
fn counts_what_was_delegated() {
    let orch = Orch::new();
    orch.write_config(&format!(
        "{FAST_SIM}acl: {{ manager: ['*'], tech-lead: [webster, nx-expert, study-builder, secretary] }}\n"
    ));
    let delegate = |args: &[&str]| {
        let mut full = vec!["delegate"];
        full.extend_from_slice(args);
        orch.run(&full, None)
    };
    for (args, code) in [
        (
            &["webster", "Find the CTE of Zerodur", "--caller", "manager"][..],
            0,
        ),
        (
            &["webster", "Find the CTE of ULE", "--caller", "manager"],
            0,
        ),
        (
            &["secretary", "[sim:partial] Minutes", "--caller", "manager"],
            10,
        ),
        (
            &[
                "secretary",
                "[sim:malformed-once] Minutes",
                "--caller",
                "manager",
            ],
            0,
        ),
        (
            &[
                "nx-expert",
                "[sim:silent] Mesh it",
                "--caller",
                "tech-lead",
                "--timeout",
                "1s",
            ],
            13,
        ),
        (&["auditor", "Audit this", "--caller", "tech-lead"], 3),
    ] {
        let run = delegate(args);
        assert_eq!(run.code, code, "{}", run.transcript(&orch));
    }
    // A sub-delegation: tech-lead, delegated by manager, delegates onward.
    let parent = delegate(&["tech-lead", "Plan it", "--caller", "manager", "--json"]);
    assert_eq!(parent.code, 0, "{}", parent.transcript(&orch));
    let sub = delegate(&[
        "webster",
        "Find sources",
        "--caller",
        "tech-lead",
        "--parent",
        &run_id(&parent),
    ]);
    assert_eq!(sub.code, 0, "{}", sub.transcript(&orch));

    let report = json(&orch, &[]);
    let totals = &report["totals"];
    assert_eq!(totals["delegations"], 7, "{report:#}");
    assert_eq!(totals["outcomes"]["complete"], 5);
    assert_eq!(totals["outcomes"]["partial"], 1);
    assert_eq!(totals["outcomes"]["timedOut"], 1);
    assert_eq!(totals["reasks"], 1);
    assert_eq!(totals["aclDenials"], 1);
    assert_eq!(totals["subDelegations"], 1);
    assert_eq!(totals["latency"]["count"], 6);
    let agent = |id: &str| {
        report["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent"] == id)
            .unwrap_or_else(|| panic!("{id}: {report:#}"))
            .clone()
    };
    assert_eq!(agent("webster")["delegations"], 3);
    assert_eq!(agent("webster")["subDelegations"], 1);
    assert_eq!(agent("secretary")["reasks"], 1);
    assert_eq!(agent("nx-expert")["outcomes"]["timedOut"], 1);
    assert_eq!(agent("auditor")["aclDenials"], 1);
    // Every sim answer took at least its 20 ms delay.
    assert!(agent("webster")["latency"]["p50Ms"].as_u64().unwrap() >= 20);
    assert_eq!(report["problems"]["unreadableFiles"], 0);

    // Reading every file gives the same figures.
    let full = json(&orch, &["--rescan"]);
    assert_eq!(full["source"]["mode"], "rescan");
    for key in ["totals", "agents", "callers", "workflows", "problems"] {
        assert_eq!(full[key], report[key], "{key}");
    }

    // Filters.
    let webster = json(&orch, &["--agent", "webster"]);
    assert_eq!(webster["totals"]["delegations"], 3);
    assert_eq!(webster["agents"].as_array().unwrap().len(), 1);
    let future = json(&orch, &["--since", "2999-01-01"]);
    assert_eq!(future["totals"]["delegations"], 0);
    let recent = json(&orch, &["--since", "1h"]);
    assert_eq!(recent["totals"]["delegations"], 7);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The fixture store of orch-metrics' own tests, in this harness's store.
fn fixture() -> Orch {
    let orch = Orch::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../metrics/tests/fixture/store");
    copy_dir(&fixture, &orch.store());
    orch
}

#[test]
fn text_json_and_prom_on_the_fixture() {
    let orch = fixture();
    let mut transcript = String::new();
    // The whole ledger and the listing (every problem the fixture holds),
    // then through the index: built on the first call, read on the second
    // (it does not list the store: the files no ledger line accounts for
    // are left to `--no-index`), and the `--since` tail.
    for args in [
        &["metrics", "--no-index"][..],
        &[
            "metrics",
            "--no-index",
            "--since",
            "2026-11-20T10:30:00Z",
            "--agent",
            "webster",
        ],
        &["metrics", "text", "--workflow", "quick-research"],
        &["metrics", "json", "--no-index"],
        &["metrics", "prom", "--no-index"],
        &["metrics", "json", "--rescan", "--since", "2026-11-20"],
        &["metrics", "json"],
        &["metrics", "text"],
        &["metrics", "json", "--since", "2026-11-20T10:30:00Z"],
    ] {
        let run = orch.run(args, None);
        assert_eq!(run.code, 0, "{}", run.transcript(&orch));
        transcript.push_str(&run.transcript(&orch));
        transcript.push('\n');
    }
    settings().bind(|| insta::assert_snapshot!(transcript));
}

#[test]
fn an_empty_store_and_usage_errors() {
    let orch = Orch::new();
    let mut transcript = String::new();
    for (args, code) in [
        (&["metrics"][..], 0),
        (&["metrics", "prom"], 0),
        (&["metrics", "--since", "yesterday"], 2),
        (&["metrics", "--since=-3d"], 2),
        (&["metrics", "xml"], 2),
        (&["metrics", "--help"], 0),
    ] {
        let run = orch.run(args, None);
        assert_eq!(run.code, code, "{}", run.transcript(&orch));
        transcript.push_str(&run.transcript(&orch));
        transcript.push('\n');
    }
    settings().bind(|| insta::assert_snapshot!(transcript));
    let empty = json(&orch, &[]);
    assert_eq!(empty["schema"], 1);
    assert_eq!(empty["totals"]["delegations"], 0);
    assert_eq!(empty["agents"], serde_json::json!([]));
}
