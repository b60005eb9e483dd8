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
    orch.dispatched(RUN, "webster", None);
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
    assert_eq!(
        orch.store_files(),
        vec!["ledger.jsonl".to_owned(), format!("{RUN}.json")]
    );
}

#[test]
fn submit_json_from_stdin_keeps_unknown_fields() {
    let orch = Orch::new();
    orch.dispatched(RUN, "tech-lead", None);
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
    orch.dispatched(RUN, "webster", None);
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
    assert_eq!(
        orch.store_files(),
        vec!["ledger.jsonl".to_owned(), format!("{RUN}.json")]
    );
}

#[test]
fn an_invalid_answer_is_kept_aside_when_replaced() {
    let orch = Orch::new();
    orch.dispatched(RUN, "webster", None);
    std::fs::write(orch.store().join(format!("{RUN}.json")), b"{ not json").unwrap();
    assert_eq!(submit(&orch, &[]).code, 0);
    assert_eq!(
        orch.store_files(),
        vec![
            "ledger.jsonl".to_owned(),
            format!("{RUN}.json"),
            format!("{RUN}.json.rejected-1")
        ]
    );
}

#[test]
fn sub_delegations_live_under_sub() {
    let orch = Orch::new();
    orch.dispatched(RUN, "webster", Some("orch-20261125T114000Z-00000001"));
    assert_eq!(submit(&orch, &["--sub"]).code, 0);
    assert_eq!(
        orch.store_files(),
        vec!["ledger.jsonl".to_owned(), format!("sub/{RUN}.json")]
    );
    let top = orch.run(&["handoff", "show", RUN], None);
    assert_eq!(top.code, 2, "{}", top.transcript(&orch));
    orch.ok(&["handoff", "show", RUN, "--sub"]);
}

#[test]
fn wait_returns_a_handoff_already_there_with_its_status_exit_code() {
    let orch = Orch::new();
    orch.dispatched(RUN, "optimizer", None);
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
        orch.dispatched(RUN, "webster", None);
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

/// Twenty agents answer one run at once: exactly one is stored, every other
/// is told who answered first, and nothing is left half-written.
#[test]
fn concurrent_submits_to_one_run_have_exactly_one_winner() {
    let orch = Orch::new();
    orch.dispatched(RUN, "webster", None);
    let children: Vec<_> = (0..20)
        .map(|i| {
            orch.command()
                .args([
                    "handoff",
                    "submit",
                    "--run-id",
                    RUN,
                    "--agent",
                    "webster",
                    "--status",
                    "complete",
                    "--result",
                    &format!("answer {i}"),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let winners: Vec<usize> = (0..20)
        .filter(|&i| outputs[i].status.code() == Some(0))
        .collect();
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    for (i, out) in outputs.iter().enumerate() {
        if i == winners[0] {
            continue;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{i}: {stderr}");
        assert!(
            stderr.contains("already has an answer: a complete handoff by webster"),
            "{i}: {stderr}"
        );
    }
    let shown = orch.ok(&["handoff", "show", RUN, "--json"]).stdout;
    let stored: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(stored["result"], format!("answer {}", winners[0]));
    assert_eq!(
        orch.store_files(),
        vec!["ledger.jsonl".to_owned(), format!("{RUN}.json")]
    );
}

/// A run id nobody dispatched (a typo) is refused, as is an answer in the
/// wrong scope; `--unsolicited` stores one anyway.
#[test]
fn submit_refuses_a_run_that_was_never_dispatched() {
    let orch = Orch::new();
    let mut transcript = String::new();
    let never = submit(&orch, &[]);
    assert_eq!(never.code, 2, "{}", never.transcript(&orch));
    assert!(orch.store_files().is_empty(), "{:?}", orch.store_files());
    transcript.push_str(&never.transcript(&orch));
    orch.dispatched(RUN, "webster", Some("orch-20261125T114000Z-00000001"));
    let top = submit(&orch, &[]);
    assert_eq!(top.code, 2, "{}", top.transcript(&orch));
    transcript.push_str(&top.transcript(&orch));
    let other = "orch-20261125T114140Z-0000beef";
    orch.dispatched(other, "webster", None);
    let sub = orch.run(
        &[
            "handoff", "submit", "--run-id", other, "--agent", "webster", "--status", "complete",
            "--result", "x", "--sub",
        ],
        None,
    );
    assert_eq!(sub.code, 2, "{}", sub.transcript(&orch));
    transcript.push_str(&sub.transcript(&orch));
    assert_eq!(orch.store_files(), vec!["ledger.jsonl".to_owned()]);
    let unsolicited = "orch-20261125T114140Z-00c0ffee";
    let stored = orch.run(
        &[
            "handoff",
            "submit",
            "--run-id",
            unsolicited,
            "--agent",
            "webster",
            "--status",
            "complete",
            "--result",
            "nobody asked",
            "--unsolicited",
        ],
        None,
    );
    assert_eq!(stored.code, 0, "{}", stored.transcript(&orch));
    transcript.push_str(&stored.transcript(&orch));
    insta::assert_snapshot!(transcript);
}

/// Waits for `child` to exit, at most `limit` (a bound on a failure, not a
/// synchronisation: a child that hangs is killed and the test fails).
fn exit_within(mut child: std::process::Child, limit: std::time::Duration) -> std::process::Output {
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let Ok(status) = rx.recv_timeout(limit) else {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        panic!("orch did not exit within {limit:?}");
    };
    let read = |pipe: Option<std::process::ChildStdout>| {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            std::io::Read::read_to_end(&mut p, &mut buf).unwrap();
        }
        buf
    };
    let mut err = Vec::new();
    if let Some(mut p) = stderr {
        std::io::Read::read_to_end(&mut p, &mut err).unwrap();
    }
    std::process::Output {
        status: status.unwrap(),
        stdout: read(stdout),
        stderr: err,
    }
}

/// A FIFO (or any file that is not a regular file) is refused at once,
/// never read: reading one would wait for a writer forever.
#[test]
fn a_fifo_is_refused_at_once() {
    let orch = Orch::new();
    orch.dispatched(RUN, "webster", None);
    let fifo = orch.path("handoff.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let fifo = fifo.to_str().unwrap();
    let mut transcript = String::new();
    let cases: [&[&str]; 3] = [
        &["handoff", "validate", fifo],
        &["handoff", "submit", "--json", fifo],
        &[
            "handoff",
            "submit",
            "--run-id",
            RUN,
            "--agent",
            "webster",
            "--status",
            "complete",
            "--result-file",
            fifo,
        ],
    ];
    for args in cases {
        let child = orch
            .command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = exit_within(child, std::time::Duration::from_secs(60));
        let run = crate::Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert_eq!(run.code, 2, "{}", run.transcript(&orch));
        transcript.push_str(&run.transcript(&orch));
    }
    assert_eq!(orch.store_files(), vec!["ledger.jsonl".to_owned()]);
    insta::assert_snapshot!(transcript);
}

/// `agent` (and every caller or agent name) obeys the id rule: NUL, newline,
/// ESC and bidi overrides are refused with a message that shows them
/// escaped, never raw.
#[test]
fn agent_names_with_control_characters_are_refused() {
    let orch = Orch::new();
    orch.dispatched(RUN, "webster", None);
    let mut transcript = String::new();
    // The arguments hold the hostile characters, so the transcript shows
    // them escaped (`{:?}`) rather than through the harness.
    let mut check = |run: crate::Run| {
        assert_eq!(run.code, 2, "{:?}", run.stderr);
        assert!(
            !run.stderr
                .lines()
                .any(|l| l.chars().any(orch_support::text::is_hazard)),
            "raw control character in {:?}",
            run.stderr
        );
        let shown = format!("$ orch {:?}\nexit: {}\n{}", run.args, run.code, run.stderr);
        transcript.push_str(&crate::redact(&shown, &orch));
    };
    for agent in [
        "webster\u{0}evil",
        "web\nster",
        "webster\u{1b}[31m",
        "webster\u{202e}",
    ] {
        let doc = serde_json::json!({
            "schemaVersion": "1.0", "runId": RUN, "agent": agent,
            "status": "complete", "result": "x",
        });
        let file = orch.path("agent.json");
        std::fs::write(&file, doc.to_string()).unwrap();
        check(orch.run(&["handoff", "validate", file.to_str().unwrap()], None));
        check(orch.run(
            &["handoff", "submit", "--json", "-"],
            Some(doc.to_string().as_bytes()),
        ));
    }
    check(orch.run(
        &[
            "handoff",
            "submit",
            "--run-id",
            RUN,
            "--agent",
            "web\u{1b}]0;x\u{7}ster",
            "--status",
            "complete",
            "--result",
            "x",
        ],
        None,
    ));
    check(orch.run_env(
        &["delegate", "webster", "look it up"],
        None,
        &[("ORCH_AGENT", "manager\u{1b}[2J")],
    ));
    check(orch.run(&["acl", "check", "manager", "web\u{202e}ster"], None));
    check(orch.run(&["route", "look it up", "--caller", "a b"], None));
    assert_eq!(orch.store_files(), vec!["ledger.jsonl".to_owned()]);
    insta::assert_snapshot!(transcript);
}

/// A handoff still cut off at the deadline is a timeout (exit 13) that says
/// a partial file was seen, not an invalid answer (exit 2).
#[test]
fn wait_on_a_file_still_cut_off_at_the_deadline_times_out() {
    let orch = Orch::new();
    std::fs::create_dir_all(orch.store()).unwrap();
    std::fs::write(
        orch.store().join(format!("{RUN}.json")),
        format!("{{\"schemaVersion\": \"1.0\", \"runId\": \"{RUN}\","),
    )
    .unwrap();
    let wait = orch.run(&["handoff", "wait", RUN, "--timeout", "300ms"], None);
    assert_eq!(wait.code, 13, "{}", wait.transcript(&orch));
    assert!(
        wait.stderr.contains("a partial file was seen"),
        "{}",
        wait.stderr
    );
    insta::assert_snapshot!(wait.transcript(&orch));
}
