//! `orch handoff …` through the binary.

use std::process::Stdio;

use crate::Orch;

const RUN: &str = "orch-20261125T114140Z-0badc0de";

fn submit(orch: &Orch, extra: &[&str]) -> crate::Run {
    let mut args = vec![
        "handoff",
        "submit",
        "--run-id",
        RUN,
        "--agent",
        "webster",
        "--status",
        "complete",
        "--result",
        "Zerodur CTE is 0 ± 0.007 ppm/K (0–50 °C, expansion class 0)",
        "--confidence",
        "high",
        "--artifact",
        "reports/zerodur.md",
    ];
    args.extend_from_slice(extra);
    orch.run(&args, None)
}

#[test]
fn submit_then_show_and_validate() {
    let orch = Orch::new();
    let run = submit(&orch, &["--notes", "class 0 only"]);
    assert_eq!(run.code, 0, "{}", run.transcript(&orch));
    let mut transcript = run.transcript(&orch);
    transcript.push_str(&orch.ok(&["handoff", "show", RUN]).transcript(&orch));
    let json = orch.ok(&["handoff", "show", RUN, "--json"]);
    transcript.push_str(&json.transcript(&orch));
    let file = orch.store().join(format!("{RUN}.json"));
    let validate = orch.ok(&[
        "handoff",
        "validate",
        file.to_str().unwrap(),
        "--run-id",
        RUN,
        "--agent",
        "webster",
    ]);
    transcript.push_str(&validate.transcript(&orch));
    insta::assert_snapshot!(transcript);
    assert_eq!(orch.store_files(), vec![format!("{RUN}.json")]);
}

#[test]
fn submit_json_from_stdin_keeps_unknown_fields() {
    let orch = Orch::new();
    let doc = format!(
        r#"{{"schemaVersion":"1.2","runId":"{RUN}","agent":"tech-lead","status":"partial",
            "result":"margins ok at 20 °C","futureField":{{"x":[1,2]}}}}"#
    );
    let run = orch.run(
        &["handoff", "submit", "--json", "-", "--run-id", RUN],
        Some(doc.as_bytes()),
    );
    assert_eq!(run.code, 0, "{}", run.transcript(&orch));
    let shown = orch.ok(&["handoff", "show", RUN, "--json"]).stdout;
    let value: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(value["futureField"]["x"][1], 2, "{shown}");
    assert_eq!(value["schemaVersion"], "1.2");
}

/// Every refused submission: exit 2, a message that says what is wrong,
/// and nothing written to the store.
#[test]
fn refused_submissions_write_nothing() {
    let orch = Orch::new();
    let mismatched = r#"{"schemaVersion":"1.0","runId":"orch-other","agent":"webster","status":"complete","result":"x"}"#;
    let cases: Vec<(&str, Vec<&str>, Option<&str>)> = vec![
        (
            "hostile run id",
            vec![
                "--run-id", "../x", "--agent", "webster", "--status", "complete", "--result", "x",
            ],
            None,
        ),
        (
            "unknown status",
            vec![
                "--run-id", RUN, "--agent", "webster", "--status", "done", "--result", "x",
            ],
            None,
        ),
        (
            "no result",
            vec![
                "--run-id", RUN, "--agent", "webster", "--status", "complete",
            ],
            None,
        ),
        (
            "empty agent",
            vec![
                "--run-id", RUN, "--agent", "", "--status", "complete", "--result", "x",
            ],
            None,
        ),
        (
            "run id mismatch in --json",
            vec!["--json", "-", "--run-id", RUN],
            Some(mismatched),
        ),
        (
            "truncated --json",
            vec!["--json", "-"],
            Some(r#"{"schemaVersion":"1.0","#),
        ),
    ];
    let mut transcript = String::new();
    for (name, args, stdin) in cases {
        let mut full = vec!["handoff", "submit"];
        full.extend(args);
        let run = orch.run(&full, stdin.map(str::as_bytes));
        assert_eq!(run.code, 2, "{name}: {}", run.transcript(&orch));
        assert!(
            orch.store_files().is_empty(),
            "{name}: {:?}",
            orch.store_files()
        );
        transcript.push_str(&format!("# {name}\n{}\n", run.transcript(&orch)));
    }
    insta::assert_snapshot!(transcript);
}

#[test]
fn an_existing_handoff_is_not_replaced_without_force() {
    let orch = Orch::new();
    assert_eq!(submit(&orch, &[]).code, 0);
    let again = submit(&orch, &[]);
    assert_eq!(again.code, 2, "{}", again.transcript(&orch));
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    let forced = orch.run(
        &[
            "handoff", "submit", "--run-id", RUN, "--agent", "webster", "--status", "partial",
            "--result", "second", "--force",
        ],
        None,
    );
    assert_eq!(forced.code, 0, "{}", forced.transcript(&orch));
    let shown = orch.ok(&["handoff", "show", RUN, "--json"]).stdout;
    assert!(shown.contains("\"partial\""), "{shown}");
    assert_eq!(orch.store_files(), vec![format!("{RUN}.json")]);
}

#[test]
fn an_invalid_answer_is_kept_aside_when_replaced() {
    let orch = Orch::new();
    std::fs::create_dir_all(orch.store()).unwrap();
    std::fs::write(orch.store().join(format!("{RUN}.json")), b"{ not json").unwrap();
    assert_eq!(submit(&orch, &[]).code, 0);
    assert_eq!(
        orch.store_files(),
        vec![format!("{RUN}.json"), format!("{RUN}.json.rejected-1")]
    );
}

#[test]
fn sub_delegations_live_under_sub() {
    let orch = Orch::new();
    assert_eq!(submit(&orch, &["--sub"]).code, 0);
    assert_eq!(orch.store_files(), vec![format!("sub/{RUN}.json")]);
    let top = orch.run(&["handoff", "show", RUN], None);
    assert_eq!(top.code, 2, "{}", top.transcript(&orch));
    orch.ok(&["handoff", "show", RUN, "--sub"]);
}

#[test]
fn wait_returns_a_handoff_already_there_with_its_status_exit_code() {
    let orch = Orch::new();
    let run = orch.run(
        &[
            "handoff",
            "submit",
            "--run-id",
            RUN,
            "--agent",
            "optimizer",
            "--status",
            "partial",
            "--result",
            "two of three cases",
            "--notes",
            "case C diverged",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.transcript(&orch));
    let wait = orch.run(&["handoff", "wait", RUN, "--timeout", "5s"], None);
    assert_eq!(wait.code, 10, "{}", wait.transcript(&orch));
    insta::assert_snapshot!(wait.transcript(&orch));
}

#[test]
fn wait_sees_a_handoff_submitted_by_another_process() {
    for mode in ["auto", "poll"] {
        let orch = Orch::new();
        let waiter = orch
            .command()
            .args(["handoff", "wait", RUN, "--timeout", "60", "--watch", mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Whether the waiter has subscribed yet or not, subscribe-then-check
        // guarantees it sees this handoff; the test holds either way.
        assert_eq!(submit(&orch, &[]).code, 0);
        let out = waiter.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{mode}: {stdout}");
        assert!(stdout.contains("Zerodur"), "{mode}: {stdout}");
    }
}

#[test]
fn wait_times_out_with_exit_13() {
    let orch = Orch::new();
    let wait = orch.run(&["handoff", "wait", RUN, "--timeout", "300ms"], None);
    assert_eq!(wait.code, 13, "{}", wait.transcript(&orch));
    insta::assert_snapshot!(wait.transcript(&orch));
}

#[test]
fn validate_reports_the_place_of_the_error() {
    let orch = Orch::new();
    let file = orch.path("bad.json");
    std::fs::write(
        &file,
        format!(
            "{{\n  \"schemaVersion\": \"1.0\",\n  \"runId\": \"{RUN}\",\n  \"agent\": \"webster\",\n  \"status\": \"done\",\n  \"result\": \"x\"\n}}\n"
        ),
    )
    .unwrap();
    let run = orch.run(&["handoff", "validate", file.to_str().unwrap()], None);
    assert_eq!(run.code, 2, "{}", run.transcript(&orch));
    insta::assert_snapshot!(run.transcript(&orch));
}

#[test]
fn help_texts() {
    let orch = Orch::new();
    for args in [
        &["--help"][..],
        &["handoff", "--help"],
        &["handoff", "submit", "--help"],
        &["handoff", "wait", "--help"],
        &["acl", "--help"],
        &["delegate", "--help"],
        &["route", "--help"],
        &["context", "--help"],
        &["registry", "--help"],
        &["config", "--help"],
        &["workflow", "--help"],
        &["workflow", "run", "--help"],
    ] {
        let run = orch.ok(args);
        let name = format!("help_{}", args[..args.len() - 1].join("_"));
        insta::assert_snapshot!(name, crate::redact(&run.stdout, &orch));
    }
}
