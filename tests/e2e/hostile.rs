//! Hostile text from agents and workflow files never reaches the terminal
//! raw: escape sequences, CR, NUL, BEL and bidi controls are shown escaped
//! in every human output, and `--json` keeps them exactly (escaped by
//! serde). The harness checks every run of every e2e test for raw control
//! characters; these tests feed them in on purpose.

use std::os::unix::fs::PermissionsExt;

use crate::{Orch, settings};

/// What a hostile agent puts in its answer, as JSON string escapes: CSI
/// (recolour, clear the screen), OSC (window title, terminated by BEL), a
/// CR that would overwrite the line, NUL, a C1 CSI, bidi overrides and
/// isolates, a zero-width space and a line separator.
const HOSTILE_JSON: &str = r"ok\u001b[31mRED\u001b[2J\u001b]0;pwned\u0007 cr\rover nul\u0000 c1\u009b31m bidi\u202eevil\u2066iso\u2069 zw\u200bsp ls\u2028end";

/// The same text as Rust sees it once the JSON is parsed.
fn hostile() -> String {
    serde_json::from_str(&format!("\"{HOSTILE_JSON}\"")).unwrap()
}

/// An exec agent that answers every task with hostile result, notes,
/// artifacts and an unknown field.
fn hostile_agent(orch: &Orch) {
    let script = orch.path("hostile.sh");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
cat >/dev/null
tmp="$ORCH_HANDOFF_PATH.tmp"
cat > "$tmp" <<EOF
{{"schemaVersion":"1.0","runId":"$ORCH_RUN_ID","agent":"$ORCH_AGENT","status":"complete",
 "result":"line one\r\n{HOSTILE_JSON}\nlast line","confidence":"high",
 "notes":"first note\n\u001b[1mbold\u001b[0m note",
 "artifacts":["a\u001b[5mblink.txt\nsecond line",{{"path":"p\u202eath.md"}}],
 "x-\u001b[31mkey":true}}
EOF
mv "$tmp" "$ORCH_HANDOFF_PATH"
"#
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    orch.write_config(&format!(
        "
agents:
  webster: {{ transport: {{ kind: exec, command: ['{}'] }} }}
  auditor: {{ transport: {{ kind: sim, delay: 10ms }} }}
",
        script.display()
    ));
}

/// `delegate` and `handoff show` print the answer escaped; `--json` keeps
/// every character as it was written.
#[test]
fn delegate_and_handoff_show_escape_what_the_agent_wrote() {
    let orch = Orch::new();
    hostile_agent(&orch);
    let args = [
        "delegate",
        "webster",
        "Find CTE of Zerodur",
        "--caller",
        "manager",
    ];
    let human = orch.ok(&args);
    assert!(
        human
            .stdout
            .contains(r"RED\u{1b}[2J\u{1b}]0;pwned\u{7} cr\rover"),
        "{}",
        human.stdout
    );
    let mut transcript = human.transcript(&orch);

    let json = orch.ok(&[&args[..], &["--json"]].concat());
    let outcome: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let result = outcome["handoff"]["result"].as_str().unwrap();
    assert_eq!(result, format!("line one\r\n{}\nlast line", hostile()));
    let run_id = outcome["runId"].as_str().unwrap();

    transcript.push_str(&orch.ok(&["handoff", "show", run_id]).transcript(&orch));
    let shown = orch.ok(&["handoff", "show", run_id, "--json"]);
    let handoff: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(handoff["result"], outcome["handoff"]["result"]);
    assert_eq!(handoff["x-\u{1b}[31mkey"], true);
    settings().bind(|| insta::assert_snapshot!(transcript));
}

/// A workflow whose name and result are hostile: the run's progress lines,
/// summary and output, `workflow status`, `runs`, `show`, `graph`,
/// `validate` and the dry run show them escaped.
#[test]
fn workflow_output_escapes_names_and_results() {
    let orch = Orch::new();
    hostile_agent(&orch);
    let file = orch.path("hostile.yaml");
    std::fs::write(
        &file,
        "name: \"evil\\e[31mname\\u202e\"\n\
         description: \"first\\rline\\e]0;title\\a\"\n\
         inputs:\n  topic: { default: \"Zerodur\\e[2J\", description: \"what\\e[1m to study\" }\n\
         steps:\n  - id: research\n    agent: webster\n    task: \"Study {{ inputs.topic }}\"\n\
         output: \"{{ steps.research.result }}\"\n",
    )
    .unwrap();
    let wf = file.to_str().unwrap();
    let mut transcript = String::new();
    for args in [
        &["workflow", "validate", wf][..],
        &["workflow", "show", wf],
        &["workflow", "graph", wf],
        &["workflow", wf, "--caller", "manager", "--dry-run"],
    ] {
        transcript.push_str(&orch.ok(args).transcript(&orch));
    }
    let run = orch.ok(&["workflow", wf, "--caller", "manager", "--non-interactive"]);
    assert!(
        run.stdout.contains(r"evil\u{1b}[31mname\u{202e}"),
        "{}",
        run.stdout
    );
    transcript.push_str(&run.transcript(&orch));
    let runs = orch.ok(&["workflow", "runs", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    assert_eq!(runs[0]["workflow"], "evil\u{1b}[31mname\u{202e}");
    let id = runs[0]["runId"].as_str().unwrap().to_owned();
    transcript.push_str(&orch.ok(&["workflow", "status", &id]).transcript(&orch));
    transcript.push_str(&orch.ok(&["workflow", "runs"]).transcript(&orch));
    let transcript = transcript.replace(&id, "[WFRUN]");
    let mut settings = settings();
    settings.add_filter(r"\[\d\d:\d\d:\d\d\]", "[HH:MM:SS]");
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[STARTED]");
    settings.bind(|| insta::assert_snapshot!(transcript));
}

/// Messages that quote a file name or a file's content (`handoff validate`)
/// escape them too.
#[test]
fn validate_messages_escape_file_names_and_quoted_content() {
    let orch = Orch::new();
    let named = orch.path("a\u{1b}[2Jb\u{202e}.json");
    std::fs::write(
        &named,
        r#"{"schemaVersion":"1.0","runId":"orch-x","agent":"webster","status":"complete","result":"ok"}"#,
    )
    .unwrap();
    let broken = orch.path("broken.json");
    std::fs::write(
        &broken,
        "{\"schemaVersion\":\"1.0\",\"runId\":\"orch-x\",\u{1b}]0;pwned\u{7}\u{1b}[31m}",
    )
    .unwrap();
    let mut transcript = orch
        .ok(&["handoff", "validate", named.to_str().unwrap()])
        .transcript(&orch);
    let bad_status = orch.path("status.json");
    std::fs::write(
        &bad_status,
        r#"{"schemaVersion":"1.0","runId":"orch-x","agent":"webster","status":"\u001b]0;pwned\u0007\u001b[2Jdone","result":"ok"}"#,
    )
    .unwrap();
    for file in [&broken, &bad_status] {
        let run = orch.run(&["handoff", "validate", file.to_str().unwrap()], None);
        assert_eq!(run.code, 2, "{}", run.transcript(&orch));
        transcript.push_str(&run.transcript(&orch));
    }
    settings().bind(|| insta::assert_snapshot!(transcript));
}

/// Log lines (WARN) carry no colour codes when stderr is not a terminal,
/// even without `NO_COLOR`.
#[test]
fn log_lines_are_plain_when_stderr_is_not_a_terminal() {
    let orch = Orch::new();
    let run_dir = orch
        .store()
        .join("workflows/wf-broken-20260101T000000Z-00000000");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(run_dir.join("summary.json"), b"{ not json").unwrap();
    let mut cmd = orch.command();
    cmd.env_remove("NO_COLOR").args(["workflow", "runs"]);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}
