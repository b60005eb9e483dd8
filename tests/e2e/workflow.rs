//! `orch workflow` through the binary: run, dry-run, approve, resume (after
//! a kill -9), runs, status, validate, graph, list, show.

use crate::{FAST_SIM, Orch, settings};

/// A stand-in exec agent: `sh -c SCRIPT` that answers through `orch handoff
/// submit` (with the run id and agent the exec transport passes).
fn agent_script(orch: &Orch, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = orch.path(name);
    std::fs::write(&path, format!("#!/bin/sh\ncat > /dev/null\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn list_show_and_graph_the_shipped_workflows() {
    let orch = Orch::new();
    let mut transcript = orch.ok(&["workflow", "list"]).transcript(&orch);
    for name in [
        "quick-research",
        "material-trade-study",
        "design-review",
        "design-review-until-confident",
    ] {
        transcript.push_str(&orch.ok(&["workflow", "show", name]).transcript(&orch));
        transcript.push_str(&orch.ok(&["workflow", "graph", name]).transcript(&orch));
    }
    settings().bind(|| insta::assert_snapshot!(transcript));
}

#[test]
fn validate_checks_file_agents_acl_and_inputs() {
    let orch = Orch::new();
    std::fs::create_dir_all(orch.path("workflows")).unwrap();
    std::fs::write(
        orch.path("workflows/loop.yaml"),
        "name: loop\nsteps:\n  - id: a\n    agent: webster\n    task: \"{{ steps.b.result }}\"\n  - id: b\n    agent: webster\n    task: \"{{ steps.a.result }}\"\n",
    )
    .unwrap();
    let cases: &[(&str, &[&str], i32)] = &[
        ("file only", &["workflow", "validate", "design-review"], 0),
        (
            "full check",
            &[
                "workflow",
                "validate",
                "material-trade-study",
                "--caller",
                "manager",
                "--input",
                "materials=Zerodur, ULE",
            ],
            0,
        ),
        (
            "denied steps and a missing input",
            &[
                "workflow",
                "validate",
                "material-trade-study",
                "--caller",
                "optimizer",
            ],
            2,
        ),
        (
            "only denials",
            &[
                "workflow",
                "validate",
                "design-review",
                "--caller",
                "tech-lead",
                "--input",
                "design=mirror mount rev C",
            ],
            3,
        ),
        (
            "a cycle in ./workflows/",
            &["workflow", "validate", "loop"],
            2,
        ),
        ("unknown workflow", &["workflow", "validate", "nope"], 2),
    ];
    let mut transcript = String::new();
    for (name, args, code) in cases {
        let run = orch.run(args, None);
        assert_eq!(run.code, *code, "{name}: {}", run.transcript(&orch));
        transcript.push_str(&format!("# {name}\n{}\n", run.transcript(&orch)));
    }
    settings().bind(|| insta::assert_snapshot!(transcript));
}

/// `settings()` plus workflow run ids and progress-line clocks.
fn wf_settings() -> insta::Settings {
    let mut s = settings();
    s.add_filter(r"wf-[a-z0-9.-]+?-\d{8}T\d{6}Z-[0-9a-f]{8}", "[WFRUN]");
    s.add_filter(r"\[\d{2}:\d{2}:\d{2}\]", "[TIME]");
    s
}

/// The one workflow run in the store.
fn only_run(orch: &Orch) -> String {
    let mut ids: Vec<String> = std::fs::read_dir(orch.store().join("workflows"))
        .expect("workflows dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids.pop().unwrap()
}

/// `summary.json` of `run`, without `source` and with ids, times and
/// durations redacted.
fn summary_json(orch: &Orch, run: &str) -> String {
    let path = orch
        .store()
        .join("workflows")
        .join(run)
        .join("summary.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let map = v.as_object_mut().unwrap();
    *map = std::mem::take(map)
        .into_iter()
        .filter(|(k, _)| k != "source")
        .collect();
    map.insert("runId".into(), "[WFRUN]".into());
    for key in ["started", "finished"] {
        if map.get(key).is_some_and(|t| !t.is_null()) {
            map.insert(key.into(), "[TIMESTAMP]".into());
        }
    }
    for step in map["steps"].as_object_mut().unwrap().values_mut() {
        if step.get("durationMs").is_some_and(|d| !d.is_null()) {
            step["durationMs"] = "[MS]".into();
        }
    }
    serde_json::to_string_pretty(&v).unwrap()
}

/// `text` with its lines that contain `marker` grouped by the word that
/// holds it (`research[2]`), each group's lines in their order, in the
/// places those lines take: the lines of parallel instances.
fn sort_lines_with(text: &str, marker: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut marked: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains(marker))
        .collect();
    marked.sort_by_key(|l| {
        l.split_whitespace()
            .find(|w| w.contains(marker))
            .unwrap_or_default()
            .to_owned()
    });
    let mut marked = marked.into_iter();
    let mut out: Vec<&str> = lines
        .into_iter()
        .map(|l| {
            if l.contains(marker) {
                marked.next().unwrap_or(l)
            } else {
                l
            }
        })
        .collect();
    out.push("");
    out.join("\n")
}

/// How many `dispatched` ledger lines each agent has.
fn dispatches(orch: &Orch) -> std::collections::BTreeMap<String, usize> {
    let mut n = std::collections::BTreeMap::new();
    for line in orch.ledger() {
        if line["event"] == "dispatched" {
            *n.entry(line["agent"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
    }
    n
}

#[test]
fn the_three_templates_run_end_to_end_on_the_sim_fleet() {
    let cases: &[(&str, &[&str])] = &[
        (
            "material-trade-study",
            &[
                "materials=Zerodur, Clearceram-Z HS, ULE",
                "requirements=CTE < 0.01 ppm/K",
            ],
        ),
        (
            "quick-research",
            &["query=What is the CTE of Invar 36 at 20 °C?"],
        ),
        ("design-review", &["design=mirror mount rev C"]),
        (
            "design-review-until-confident",
            &["design=mirror mount rev C"],
        ),
    ];
    for (name, inputs) in cases {
        let orch = Orch::new();
        orch.write_config(FAST_SIM);
        let mut args = vec!["workflow", name];
        for input in *inputs {
            args.extend(["--input", input]);
        }
        args.extend(["--caller", "manager", "--non-interactive"]);
        let run = orch.run(&args, None);
        assert_eq!(run.code, 0, "{}", run.transcript(&orch));
        let id = only_run(&orch);
        assert!(run.stdout.contains(&id), "{}", run.stdout);
        wf_settings().bind(|| {
            insta::assert_snapshot!(format!("summary_{name}"), summary_json(&orch, &id));
        });
        if *name == "material-trade-study" {
            // Its research instances run in parallel: their lines are
            // sorted so the transcript has a stable order.
            let transcript = sort_lines_with(&run.transcript(&orch), "research[");
            wf_settings().bind(|| insta::assert_snapshot!(transcript));
            // One webster delegation per material, each with its own id.
            let ledger = orch.ledger();
            for i in 0..3 {
                let id = format!("{id}.research.{i}.1");
                assert!(
                    ledger
                        .iter()
                        .any(|l| l["event"] == "dispatched" && l["runId"] == id.as_str()),
                    "{id}"
                );
            }
            assert_eq!(dispatches(&orch)["webster"], 3);
        }
    }
}

#[test]
fn dry_run_prints_the_plan_and_sends_nothing() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    let run = orch.ok(&[
        "workflow",
        "run",
        "material-trade-study",
        "--input",
        "materials=Zerodur, Clearceram-Z HS, ULE",
        "--caller",
        "manager",
        "--dry-run",
    ]);
    assert_eq!(orch.store_files(), Vec::<String>::new());
    let mut transcript = run.transcript(&orch);
    let design = orch.ok(&[
        "workflow",
        "design-review",
        "--input",
        "design=mirror mount rev C",
        "--caller",
        "manager",
        "--dry-run",
    ]);
    transcript.push_str(&design.transcript(&orch));
    let denied = orch.run(
        &[
            "workflow",
            "design-review",
            "--input",
            "design=x",
            "--caller",
            "tech-lead",
            "--dry-run",
        ],
        None,
    );
    assert_eq!(denied.code, 3, "{}", denied.transcript(&orch));
    transcript.push_str(&denied.transcript(&orch));
    let json = orch.ok(&[
        "workflow",
        "quick-research",
        "--input",
        "query=CTE of Invar?",
        "--caller",
        "manager",
        "--dry-run",
        "--json",
    ]);
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(plan["steps"].as_array().unwrap().len(), 2, "{plan}");
    assert_eq!(plan["steps"][1]["waitsFor"][0], "research", "{plan}");
    assert_eq!(orch.store_files(), Vec::<String>::new());
    wf_settings().bind(|| insta::assert_snapshot!(transcript));
}

/// Writes `yaml` as gated.yaml on the fast sim fleet and runs it
/// non-interactively: it must pause at its approval gate (exit 20).
/// Returns that run and the workflow run id.
fn pause_at_gate(orch: &Orch, yaml: &str) -> (crate::Run, String) {
    orch.write_config(FAST_SIM);
    std::fs::write(orch.path("gated.yaml"), yaml).unwrap();
    let paused = orch.run(
        &[
            "workflow",
            "gated.yaml",
            "--caller",
            "manager",
            "--non-interactive",
        ],
        None,
    );
    assert_eq!(paused.code, 20, "{}", paused.transcript(orch));
    let id = only_run(orch);
    (paused, id)
}

#[test]
fn an_approval_gate_pauses_then_approve_and_resume_finish_it() {
    let orch = Orch::new();
    let (paused, id) = pause_at_gate(
        &orch,
        "name: gated\nsteps:\n  - id: draft\n    agent: webster\n    task: Draft the test note\n    gate: { approval: true }\n  - id: review\n    agent: auditor\n    task: \"Review this draft: {{ steps.draft.result }}\"\noutput: \"{{ steps.review.result }}\"\n",
    );
    let mut transcript = paused.transcript(&orch);
    transcript.push_str(&orch.ok(&["workflow", "runs"]).transcript(&orch));
    let early = orch.run(&["workflow", "approve", &id, "review"], None);
    assert_eq!(early.code, 2, "{}", early.transcript(&orch));
    transcript.push_str(&early.transcript(&orch));
    transcript.push_str(
        &orch
            .ok(&["workflow", "approve", &id, "draft"])
            .transcript(&orch),
    );
    transcript.push_str(
        &orch
            .ok(&["workflow", "resume", &id, "--non-interactive"])
            .transcript(&orch),
    );
    transcript.push_str(&orch.ok(&["workflow", "status", &id]).transcript(&orch));
    transcript.push_str(&orch.ok(&["workflow", "runs"]).transcript(&orch));
    let status: serde_json::Value =
        serde_json::from_str(&orch.ok(&["workflow", "status", &id, "--json"]).stdout).unwrap();
    assert_eq!(status["status"], "completed");
    assert_eq!(
        dispatches(&orch),
        [("auditor".to_owned(), 1), ("webster".to_owned(), 1)].into()
    );
    wf_settings().bind(|| insta::assert_snapshot!(transcript));
}

#[test]
fn a_rejected_step_fails_the_run() {
    let orch = Orch::new();
    let (_, id) = pause_at_gate(
        &orch,
        "name: gated\nsteps:\n  - id: draft\n    agent: webster\n    task: Draft the test note\n    gate: { approval: true }\n  - id: review\n    agent: auditor\n    task: \"Review this draft: {{ steps.draft.result }}\"\n",
    );
    orch.ok(&[
        "workflow",
        "approve",
        &id,
        "draft",
        "--reject",
        "--reason",
        "too vague",
    ]);
    let resumed = orch.run(&["workflow", "resume", &id, "--non-interactive"], None);
    assert_eq!(resumed.code, 12, "{}", resumed.transcript(&orch));
    wf_settings().bind(|| insta::assert_snapshot!(resumed.transcript(&orch)));
}

/// kill -9 in the middle of step 2, then resume: step 1 is not dispatched
/// again and step 2's delegation (still being worked on by its agent, on a
/// gateway: it outlives the killed orch) is re-awaited, not sent twice;
/// resume says which delegation it waits for, since when and until when.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_resume_redispatches_no_finished_step() {
    let (orch, resumed, token) = kill_9_at_step_2_then_resume(false).await;
    wf_settings().bind(|| insta::assert_snapshot!(resumed.transcript(&orch)));
    resumed.assert_hides(&orch, &token);
}

/// The same, killed between a batch's write to the run's journal and its
/// sync: step 1's final record is in the journal (the page cache survives
/// the kill) but was never acknowledged, so its view was never written.
/// Resume rebuilds the view from the journal: step 1 is not sent again,
/// step 2 is re-awaited, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_a_journal_write_and_its_sync_then_resume_loses_nothing() {
    let (orch, resumed, token) = kill_9_at_step_2_then_resume(true).await;
    assert!(
        resumed.stderr.contains("re-awaiting"),
        "{}",
        resumed.transcript(&orch)
    );
    resumed.assert_hides(&orch, &token);
}

/// Runs research → evaluate (on a gateway whose agent outlives orch) →
/// audit, kills orch with SIGKILL once research has answered and evaluate
/// is acknowledged (`hold`: with the journal writer stopped after writing
/// research's final record and before syncing it), resumes, answers for
/// evaluate's agent, and checks nothing was sent twice and the run
/// completed. Returns the resume's run and the hook token to hide.
async fn kill_9_at_step_2_then_resume(hold: bool) -> (Orch, crate::Run, String) {
    use std::io::BufRead;
    const TOKEN_VAR: &str = "ORCH_E2E_HOOK_TOKEN";
    let mut options =
        orch_delegate::testing::FakeGatewayOptions::new("e2e-secret-token-5d1e", ["tech-lead"]);
    // The gateway's agent works for longer than the test: the test
    // answers for it, once resume is waiting.
    options.answer_delay = std::time::Duration::from_secs(3600);
    let gw = orch_delegate::testing::FakeGateway::start(options)
        .await
        .expect("fake gateway");
    let orch = Orch::new();
    orch.write_config(&format!(
        "
transports:
  sim: {{ kind: sim, delay: 20ms, slow_delay: 1h }}
  gateway: {{ kind: openclaw, url: '{}', token_env: {TOKEN_VAR} }}
agents:
  manager:   {{ transport: sim }}
  webster:   {{ transport: sim }}
  tech-lead: {{ transport: gateway }}
  auditor:   {{ transport: sim }}
",
        gw.url()
    ));
    std::fs::write(
        orch.path("three.yaml"),
        "name: three\nsteps:\n  - id: research\n    agent: webster\n    task: Research the mount\n  - id: evaluate\n    agent: tech-lead\n    task: \"Evaluate: {{ steps.research.result }}\"\n  - id: audit\n    agent: auditor\n    task: \"Audit: {{ steps.evaluate.result }}\"\noutput: \"{{ steps.audit.result }}\"\n",
    )
    .unwrap();
    let marker = orch.path("journal-held");
    let mut command = orch.command();
    if hold {
        command.env(
            "ORCH_TESTING_HOLD_JOURNAL",
            format!("research.json:{}", marker.display()),
        );
    }
    let mut child = command
        .env(TOKEN_VAR, gw.token())
        .args([
            "workflow",
            "three.yaml",
            "--caller",
            "manager",
            "--non-interactive",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for: step 1's handoff and step 2's acknowledged dispatch.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ledger = orch.ledger();
        let has = |event: &str, agent: &str| {
            ledger
                .iter()
                .any(|l| l["event"] == event && l["agent"] == agent)
        };
        if has("handoff", "webster") && has("acked", "tech-lead") && (!hold || marker.exists()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not reach step 2: {ledger:?}"
        );
        assert!(child.try_wait().unwrap().is_none(), "orch ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let id = only_run(&orch);
    let killed: serde_json::Value = serde_json::from_str(&summary_json(&orch, &id)).unwrap();
    // Stored before anything was sent; its step states may lag (it is
    // written at most every 100 ms), the ledger and handoffs do not.
    assert_eq!(killed["status"], "running");
    let run_dir = orch.store().join("workflows").join(&id);
    if hold {
        // Written to the journal, never synced nor acknowledged (its view
        // may be in place: views are written while their batch syncs).
        let journal = std::fs::read_to_string(run_dir.join("journal.jsonl")).unwrap();
        assert!(
            journal.contains("{\"file\":\"research.json\","),
            "{journal}"
        );
    }

    let mut resume = orch
        .command()
        .env(TOKEN_VAR, gw.token())
        .args(["workflow", "resume", &id, "--non-interactive"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(resume.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert_ne!(
            stderr.read_line(&mut line).unwrap(),
            0,
            "resume ended without re-awaiting: {seen}"
        );
        seen.push_str(&line);
        if line.contains("re-awaiting") {
            break;
        }
    }
    // The agent answers while resume waits.
    let delegation = format!("{id}.evaluate.1");
    orch.ok(&[
        "handoff",
        "submit",
        "--run-id",
        &delegation,
        "--agent",
        "tech-lead",
        "--status",
        "complete",
        "--confidence",
        "high",
        "--result",
        "evaluated after the crash",
    ]);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    seen.push_str(&rest);
    let out = resume.wait_with_output().unwrap();
    let resumed = crate::Run {
        args: ["workflow", "resume", &id, "--non-interactive"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: seen,
    };
    assert_eq!(resumed.code, 0, "{}", resumed.transcript(&orch));
    assert_eq!(
        dispatches(&orch),
        [
            ("auditor".to_owned(), 1),
            ("tech-lead".to_owned(), 1),
            ("webster".to_owned(), 1)
        ]
        .into()
    );
    assert_eq!(gw.runs_started(), 1, "the gateway was asked once");
    let done: serde_json::Value = serde_json::from_str(&summary_json(&orch, &id)).unwrap();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["steps"]["evaluate"]["attempts"], 1);
    assert_eq!(done["steps"]["research"]["attempts"], 1);
    let research: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("research.json")).unwrap())
            .unwrap();
    assert_eq!(research["status"], "completed");
    (orch, resumed, gw.token().to_owned())
}

/// Starts a one-step sim workflow whose agent never answers, interrupts
/// it (SIGINT) once its delegation is out, and returns the run id and
/// what the interrupted run wrote on stderr (it exits 130).
fn interrupted_sim_run(orch: &Orch) -> (String, String) {
    orch.write_config(FAST_SIM);
    std::fs::write(
        orch.path("two.yaml"),
        "name: two\nsteps:\n  - id: wait\n    agent: secretary\n    task: \"[sim:silent] wait for me\"\n    timeout: 10m\n",
    )
    .unwrap();
    let child = orch
        .command()
        .args([
            "workflow",
            "two.yaml",
            "--caller",
            "manager",
            "--non-interactive",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !orch.ledger().iter().any(|l| l["event"] == "dispatched") {
        assert!(std::time::Instant::now() < deadline, "never dispatched");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    crate::interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    (only_run(orch), stderr)
}

/// Ctrl-C a sim run, then resume: the sim agent died with the orch that
/// ran it, so resume sends the step again at once (a new delegation id),
/// and says so, instead of waiting out the step's ten-minute timeout.
#[test]
fn resume_sends_again_at_once_what_died_with_the_interrupted_run() {
    let orch = Orch::new();
    let (id, _) = interrupted_sim_run(&orch);
    let dispatched = |orch: &Orch| {
        orch.ledger()
            .iter()
            .filter(|l| l["event"] == "dispatched")
            .count()
    };
    let mut resume = orch
        .command()
        .args(["workflow", "resume", &id, "--non-interactive"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The new delegation goes out at once; its agent (silent again) is
    // answered for by the test.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while dispatched(&orch) < 2 {
        if std::time::Instant::now() >= deadline {
            let _ = resume.kill();
            panic!("resume did not send the dead delegation again");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = format!("{id}.wait.2");
    assert!(
        orch.ledger()
            .iter()
            .any(|l| l["event"] == "dispatched" && l["runId"] == second.as_str()),
        "{:?}",
        orch.ledger()
    );
    orch.ok(&[
        "handoff",
        "submit",
        "--run-id",
        &second,
        "--agent",
        "secretary",
        "--status",
        "complete",
        "--result",
        "waited",
    ]);
    let out = resume.wait_with_output().unwrap();
    let resumed = crate::Run {
        args: ["workflow", "resume", &id, "--non-interactive"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(resumed.code, 0, "{}", resumed.transcript(&orch));
    wf_settings().bind(|| insta::assert_snapshot!(resumed.transcript(&orch)));
}

/// Ctrl-C stores the run as `cancelled` (exit 130), its in-flight step
/// still `running` for resume.
#[test]
fn ctrl_c_stores_the_run_as_cancelled() {
    let orch = Orch::new();
    let (id, stderr) = interrupted_sim_run(&orch);
    assert!(
        stderr.contains(&format!("orch workflow resume {id}")),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_str(&summary_json(&orch, &id)).unwrap();
    assert_eq!(summary["status"], "cancelled");
    assert_eq!(summary["steps"]["wait"]["status"], "running");
}

/// A step that failed (its agent was down) runs again with
/// `resume --retry-failed`; the step that completed does not.
#[test]
fn resume_retry_failed_runs_the_failed_step_again_and_nothing_else() {
    use std::os::unix::fs::PermissionsExt;
    let orch = Orch::new();
    let up = orch.path("up");
    let flaky = orch.path("flaky.sh");
    std::fs::write(
        &flaky,
        format!(
            "#!/bin/sh\ncat > /dev/null\nif [ -e '{}' ]; then s=complete; r='CTE 0 ± 0.007 ppm/K'; else s=failed; r='the materials database is down'; fi\nexec orch handoff submit --run-id \"$ORCH_RUN_ID\" --agent \"$ORCH_AGENT\" --status $s --confidence high --result \"$r\"\n",
            up.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&flaky, std::fs::Permissions::from_mode(0o755)).unwrap();
    orch.write_config(&format!(
        "
transports:
  sim: {{ kind: sim, delay: 0ms }}
agents:
  manager: {{ transport: sim }}
  webster: {{ transport: {{ kind: exec, command: ['{}'] }} }}
  auditor: {{ transport: sim }}
",
        flaky.display()
    ));
    std::fs::write(
        orch.path("flaky.yaml"),
        "name: flaky\nsteps:\n  - id: check\n    agent: auditor\n    task: Check the mount drawing\n  - id: research\n    agent: webster\n    task: Find the CTE of Zerodur\n  - id: audit\n    agent: auditor\n    task: \"Audit: {{ steps.research.result }}\"\n",
    )
    .unwrap();
    let failed = orch.run(
        &[
            "workflow",
            "flaky.yaml",
            "--caller",
            "manager",
            "--non-interactive",
        ],
        None,
    );
    assert_eq!(failed.code, 12, "{}", failed.transcript(&orch));
    let id = only_run(&orch);

    // Nothing to do without the flag: the stored run comes back.
    let again = orch.run(&["workflow", "resume", &id, "--non-interactive"], None);
    assert_eq!(again.code, 12, "{}", again.transcript(&orch));

    std::fs::write(&up, "").unwrap();
    let resumed = orch.run(
        &[
            "workflow",
            "resume",
            &id,
            "--retry-failed",
            "--non-interactive",
        ],
        None,
    );
    assert_eq!(resumed.code, 0, "{}", resumed.transcript(&orch));
    assert_eq!(
        dispatches(&orch),
        [("auditor".to_owned(), 2), ("webster".to_owned(), 2)].into(),
        "check once, research twice, audit once"
    );
    let done: serde_json::Value = serde_json::from_str(&summary_json(&orch, &id)).unwrap();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["steps"]["research"]["attempts"], 2);
    assert_eq!(done["steps"]["check"]["attempts"], 1);
    wf_settings().bind(|| insta::assert_snapshot!(resumed.transcript(&orch)));
}

/// The size cap names the file's real size; a byte order mark is fine;
/// YAML tags and out-of-bounds `retries` / `timeout` are refused by name,
/// with line and column.
#[test]
fn validate_names_the_real_size_tags_and_bounds_and_accepts_a_bom() {
    let orch = Orch::new();
    let step = "steps:\n  - id: a\n    agent: webster\n    task: one\n";
    let mut huge = format!("name: huge\n{step}# ");
    huge.push_str(&"x".repeat(5_242_950 - huge.len() - 1));
    huge.push('\n');
    assert_eq!(huge.len(), 5_242_950);
    let files: &[(&str, String, i32)] = &[
        ("huge.yaml", huge, 2),
        ("bom.yaml", format!("\u{feff}name: bom\n{step}"), 0),
        ("binary.yaml", format!("name: !!binary aGk=\n{step}"), 2),
        (
            "ruby.yaml",
            "name: x\nsteps:\n  - !ruby/object:Gem::Installer\n    id: a\n    agent: webster\n    task: one\n".to_owned(),
            2,
        ),
        ("retries.yaml", format!("name: r\n{step}    retries: 1000\n"), 2),
        ("timeout.yaml", format!("name: t\n{step}    timeout: 200h\n"), 2),
    ];
    let mut transcript = String::new();
    for (name, text, code) in files {
        std::fs::write(orch.path(name), text).unwrap();
        let run = orch.run(&["workflow", "validate", name], None);
        assert_eq!(run.code, *code, "{}", run.transcript(&orch));
        transcript.push_str(&run.transcript(&orch));
    }
    settings().bind(|| insta::assert_snapshot!(transcript));
}

/// A workflow whose `output` reads a step its `when` skipped: `validate`
/// warns; the run completes and says why there is no output.
#[test]
fn output_of_a_skipped_step_is_explained() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    std::fs::write(
        orch.path("skip.yaml"),
        "name: skip\nsteps:\n  - id: draft\n    agent: webster\n    task: Draft it\n  - id: polish\n    agent: auditor\n    task: \"Polish: {{ steps.draft.result }}\"\n    when: \"steps.draft.confidence == low\"\noutput: \"{{ steps.polish.result }}\"\n",
    )
    .unwrap();
    let mut transcript = orch
        .ok(&["workflow", "validate", "skip.yaml"])
        .transcript(&orch);
    let run = orch.ok(&[
        "workflow",
        "skip.yaml",
        "--caller",
        "manager",
        "--non-interactive",
    ]);
    transcript.push_str(&run.transcript(&orch));
    let id = only_run(&orch);
    let summary: serde_json::Value = serde_json::from_str(&summary_json(&orch, &id)).unwrap();
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["output"], serde_json::Value::Null);
    assert!(
        summary["outputNote"]
            .as_str()
            .unwrap()
            .starts_with("no output: it reads step `polish`, which was skipped"),
        "{summary}"
    );
    wf_settings().bind(|| insta::assert_snapshot!(transcript));
}

/// A failed start leaves no run behind: a summary write that fails (here
/// the file size limit, as a full disk would), and a run whose summary the
/// store could not read back (a small handoff cap), refused up front.
#[test]
fn a_failed_start_leaves_nothing_behind() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    std::fs::write(
        orch.path("one.yaml"),
        format!(
            "name: one\ndescription: {}\nsteps:\n  - id: a\n    agent: webster\n    task: one\n",
            "d".repeat(4000)
        ),
    )
    .unwrap();
    let args = [
        "workflow",
        "one.yaml",
        "--caller",
        "manager",
        "--non-interactive",
    ];
    // Writes over 512 bytes fail (EFBIG, the signal ignored).
    let out = orch
        .command_for("/bin/sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_orch"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("summary.json"), "{stderr}");
    let workflows: Vec<String> = std::fs::read_dir(orch.store().join("workflows"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        workflows,
        Vec::<String>::new(),
        "an empty run directory was left"
    );

    // Records of at most 4 × 2048 bytes: this run's summary (with the
    // 4 KB workflow file) could never be read back.
    orch.write_config(&format!("{FAST_SIM}store: {{ max_handoff_bytes: 2048 }}\n"));
    let refused = orch.run(&args, None);
    assert_eq!(refused.code, 2, "{}", refused.transcript(&orch));
    assert_eq!(orch.store_files(), Vec::<String>::new());
    wf_settings().bind(|| insta::assert_snapshot!(refused.transcript(&orch)));
}

/// A 3 MiB result read 100 times by the next task: the step fails naming
/// itself, the size and the template, and nothing of that size is sent or
/// stored; a dry run finds a task too large from its inputs alone, with
/// the step's line and column.
#[test]
fn a_task_over_the_transports_limit_is_a_step_failure_and_a_dry_run_error() {
    let orch = Orch::new();
    let big = agent_script(
        &orch,
        "big.sh",
        "head -c 3145728 /dev/zero | tr '\\0' y > \"$ORCH_RUN_ID.txt\"\nexec orch handoff submit --run-id \"$ORCH_RUN_ID\" --agent \"$ORCH_AGENT\" --status complete --confidence high --result-file \"$ORCH_RUN_ID.txt\"",
    );
    orch.write_config(&format!(
        "
transports:
  sim: {{ kind: sim, delay: 0ms }}
agents:
  manager: {{ transport: sim }}
  webster: {{ transport: {{ kind: exec, command: ['{}'] }} }}
  auditor: {{ transport: sim }}
",
        big.display()
    ));
    std::fs::write(
        orch.path("huge.yaml"),
        format!(
            "name: huge\ninputs:\n  note: {{ default: \"\" }}\nsteps:\n  - id: research\n    agent: webster\n    task: Find everything\n  - id: digest\n    agent: auditor\n    task: \"{{{{ inputs.note }}}}{}\"\n",
            "{{ steps.research.result }}".repeat(100)
        ),
    )
    .unwrap();
    let args = [
        "workflow",
        "huge.yaml",
        "--caller",
        "manager",
        "--non-interactive",
    ];
    let failed = orch.run(&args, None);
    assert_eq!(failed.code, 12, "{}", failed.transcript(&orch));
    assert_eq!(
        dispatches(&orch),
        [("webster".to_owned(), 1)].into(),
        "digest never sent"
    );
    let largest = orch
        .store_files()
        .iter()
        .filter(|f| f.starts_with("workflows/"))
        .map(|f| std::fs::metadata(orch.store().join(f)).unwrap().len())
        .max()
        .unwrap();
    assert!(largest < 64 * 1024, "a {largest}-byte record");
    let mut transcript = failed.transcript(&orch);
    // The known part alone: three 100 KB inputs are over 256 KiB.
    let note = format!("note={}", "n".repeat(100_000));
    std::fs::write(
        orch.path("inputs.yaml"),
        "name: inputs\ninputs:\n  note: { required: true }\nsteps:\n  - id: a\n    agent: auditor\n    task: \"{{ inputs.note }} {{ inputs.note }} {{ inputs.note }}\"\n",
    )
    .unwrap();
    let dry = orch.run(
        &[
            "workflow",
            "inputs.yaml",
            "--caller",
            "manager",
            "--input",
            &note,
            "--dry-run",
        ],
        None,
    );
    assert_eq!(dry.code, 2, "{}", dry.transcript(&orch));
    assert!(
        dry.stderr.contains("inputs.yaml:7:11: step `a`"),
        "{}",
        dry.stderr
    );
    transcript.push_str(
        &dry.transcript(&orch)
            .replace(&"n".repeat(100_000), "[100000 × n]"),
    );
    // The instructions quote the store's path: their size is the temp
    // dir's.
    let mut settings = wf_settings();
    settings.add_filter(
        r"over the limit of \d+ bytes \([\d.]+ KiB\)",
        "over the limit of [LIMIT]",
    );
    settings.add_filter(r"\d+ of them for orc", "[N] of them for orc");
    settings.bind(|| insta::assert_snapshot!(transcript));
}

/// The seed tool's own command line, verbatim (issue 16): the shipped
/// templates name their inputs as the original does.
#[test]
fn the_seed_tools_quick_research_command_runs_unchanged() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    let run = orch.run(
        &[
            "workflow",
            "quick-research",
            "--input",
            "query=CTE of ULE",
            "--caller",
            "manager",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.transcript(&orch));
    let id = only_run(&orch);
    let summary: serde_json::Value = serde_json::from_str(&summary_json(&orch, &id)).unwrap();
    assert_eq!(summary["inputs"]["query"], "CTE of ULE", "{summary}");
    assert_eq!(summary["status"], "completed", "{summary}");
}

/// A `repeat` step on the sim fleet: the first answer is of low
/// confidence (`[sim:low-confidence]`); from the second iteration on,
/// `{{ previous.status }}` spoils the keyword and the sim answers high.
/// (Not `{{ previous.result }}`: the sim's answer quotes the task, keyword
/// and all.)
const REPEAT_WF: &str = "name: loop-review\ninputs:\n  design: { required: true }\nsteps:\n  - id: review\n    agent: tech-lead\n    task: \"Review {{ inputs.design }} [sim:low-confidence{{ previous.status }}]\\nLast time: {{ previous.confidence }}\\nWhy again: {{ previous.reason }}\"\n    repeat: { until: \"confidence >= high\", max: 3 }\n  - id: minutes\n    agent: secretary\n    task: \"Minutes of: {{ steps.review.result }}\"\noutput: \"{{ steps.minutes.result }}\"\n";

#[test]
fn a_repeat_step_asks_again_until_good_enough_on_the_sim_fleet() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    std::fs::create_dir_all(orch.path("workflows")).unwrap();
    std::fs::write(orch.path("workflows/loop-review.yaml"), REPEAT_WF).unwrap();
    let args = [
        "workflow",
        "loop-review",
        "--input",
        "design=mount rev C",
        "--caller",
        "manager",
        "--non-interactive",
    ];
    let dry = orch.ok(&[&args[..], &["--dry-run"]].concat());
    let json = orch.ok(&[&args[..], &["--dry-run", "--json"]].concat());
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        plan["steps"][0]["repeat"],
        serde_json::json!({ "until": "confidence >= high", "max": 3 }),
        "{plan}"
    );
    assert!(plan["steps"][1].get("repeat").is_none(), "{plan}");
    let graph = orch.ok(&["workflow", "graph", "loop-review"]);
    let run = orch.run(&args, None);
    assert_eq!(run.code, 0, "{}", run.transcript(&orch));
    let id = only_run(&orch);
    let dispatched: Vec<String> = orch
        .ledger()
        .iter()
        .filter(|l| l["event"] == "dispatched")
        .map(|l| l["runId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        dispatched,
        [
            format!("{id}.review.1"),
            format!("{id}.review.2"),
            format!("{id}.minutes.1")
        ],
        "each iteration is a delegation of its own"
    );
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(orch.store().join("workflows").join(&id).join("review.json"))
            .unwrap(),
    )
    .unwrap();
    let iterations: Vec<&serde_json::Value> = record["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["iteration"])
        .collect();
    assert_eq!(iterations, [1, 2], "{record}");
    let task = record["renderedTask"].as_str().unwrap();
    assert!(
        task.contains(
            "Why again: until `confidence >= high` is false: status complete, confidence low"
        ),
        "{task}"
    );
    let mut transcript = dry.transcript(&orch);
    transcript.push_str(&graph.transcript(&orch));
    transcript.push_str(&run.transcript(&orch));
    wf_settings().bind(|| {
        insta::assert_snapshot!(transcript);
        insta::assert_snapshot!("summary_loop-review", summary_json(&orch, &id));
    });
}

/// kill -9 at several points of a fan-out whose agent is on a gateway (it
/// outlives orch), then resume: every instance is sent to the gateway
/// exactly once, whether it had answered, was in flight or was not yet
/// sent when orch died; the run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_points_of_a_fan_out_then_resume_sends_no_instance_twice() {
    const TOKEN_VAR: &str = "ORCH_E2E_HOOK_TOKEN";
    for answered_before_kill in [0usize, 2, 4] {
        let mut options =
            orch_delegate::testing::FakeGatewayOptions::new("e2e-secret-token-fa9", ["tech-lead"]);
        // The test answers for the gateway's agent.
        options.answer_delay = std::time::Duration::from_secs(3600);
        let gw = orch_delegate::testing::FakeGateway::start(options)
            .await
            .expect("fake gateway");
        let orch = Orch::new();
        orch.write_config(&format!(
            "
transports:
  sim: {{ kind: sim, delay: 20ms, slow_delay: 1h }}
  gateway: {{ kind: openclaw, url: '{}', token_env: {TOKEN_VAR} }}
agents:
  manager:   {{ transport: sim }}
  webster:   {{ transport: sim }}
  tech-lead: {{ transport: gateway }}
",
            gw.url()
        ));
        std::fs::write(
            orch.path("fan.yaml"),
            "name: fan\nsteps:\n  - id: survey\n    agent: tech-lead\n    for_each: [a, b, c, d, e, f]\n    max_parallel: 3\n    task: \"Survey {{ item }}\"\n  - id: sum\n    agent: webster\n    task: \"Sum: {{ steps.survey.statuses }}\"\n",
        )
        .unwrap();
        let mut child = orch
            .command()
            .env(TOKEN_VAR, gw.token())
            .args([
                "workflow",
                "fan.yaml",
                "--caller",
                "manager",
                "--non-interactive",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Answer `answered_before_kill` instances, then kill orch once it
        // heard them and has the next ones acknowledged by the gateway.
        let mut answered = std::collections::BTreeSet::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let ledger = orch.ledger();
            let ids = |event: &str| -> Vec<String> {
                ledger
                    .iter()
                    .filter(|l| l["event"] == event)
                    .filter_map(|l| l["runId"].as_str())
                    .filter(|id| id.contains(".survey."))
                    .map(str::to_owned)
                    .collect()
            };
            let heard = ids("handoff").len();
            let acked = ids("acked").len();
            if heard == answered_before_kill && acked == (answered_before_kill + 3).min(6) {
                break;
            }
            if answered.len() < answered_before_kill
                && let Some(id) = ids("acked").into_iter().find(|id| !answered.contains(id))
            {
                answer(&orch, &id);
                answered.insert(id);
            }
            assert!(std::time::Instant::now() < deadline, "stuck: {ledger:?}");
            assert!(child.try_wait().unwrap().is_none(), "orch ended early");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let id = only_run(&orch);

        // Resume, answering every instance the gateway has as it goes.
        let mut resume = orch
            .command()
            .env(TOKEN_VAR, gw.token())
            .args(["workflow", "resume", &id, "--non-interactive"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = resume.try_wait().unwrap() {
                break status;
            }
            for line in orch.ledger() {
                let Some(run) = line["runId"].as_str() else {
                    continue;
                };
                if line["event"] == "acked" && run.contains(".survey.") && !answered.contains(run) {
                    answer(&orch, run);
                    answered.insert(run.to_owned());
                }
            }
            assert!(std::time::Instant::now() < deadline, "resume is stuck");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut resume.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            status.success(),
            "killed after {answered_before_kill}: {stderr}"
        );
        assert_eq!(
            gw.runs_started(),
            6,
            "killed after {answered_before_kill}: each instance sent once: {stderr}"
        );
        let dispatched: Vec<String> = orch
            .ledger()
            .iter()
            .filter(|l| l["event"] == "dispatched")
            .filter_map(|l| l["runId"].as_str())
            .filter(|r| r.contains(".survey."))
            .map(str::to_owned)
            .collect();
        let mut expect: Vec<String> = (0..6).map(|i| format!("{id}.survey.{i}.1")).collect();
        let mut got = dispatched.clone();
        got.sort();
        expect.sort();
        assert_eq!(got, expect, "killed after {answered_before_kill}");
        let done: serde_json::Value = serde_json::from_str(&summary_json(&orch, &id)).unwrap();
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(
            done["steps"]["survey"]["instances"]["completed"], 6,
            "{done}"
        );
    }

    /// Answers delegation `id` as the gateway's agent.
    fn answer(orch: &Orch, id: &str) {
        orch.ok(&[
            "handoff",
            "submit",
            "--run-id",
            id,
            "--agent",
            "tech-lead",
            "--status",
            "complete",
            "--confidence",
            "high",
            "--result",
            "surveyed",
        ]);
    }
}

/// `orch workflow cancel` from another process: the running `orch
/// workflow` stops its delegation (a `cancelled` ledger line) and exits
/// 130, the summary says who cancelled and why; a second cancel, and one
/// of a run that ended, are usage errors (exit 2).
#[test]
fn cancel_from_another_process_stops_the_run_and_says_who_and_why() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    std::fs::write(
        orch.path("two.yaml"),
        "name: two\nsteps:\n  - id: wait\n    agent: secretary\n    task: \"[sim:silent] wait for me\"\n    timeout: 10m\n  - id: after\n    agent: webster\n    task: \"then {{ steps.wait.result }}\"\n",
    )
    .unwrap();
    let child = orch
        .command()
        .args([
            "workflow",
            "two.yaml",
            "--caller",
            "manager",
            "--non-interactive",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !orch.ledger().iter().any(|l| l["event"] == "dispatched") {
        assert!(std::time::Instant::now() < deadline, "never dispatched");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let id = only_run(&orch);
    let asked = orch.ok(&[
        "workflow",
        "cancel",
        &id,
        "--reason",
        "the design changed",
        "--caller",
        "manager",
    ]);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&summary_json(&orch, &id)).unwrap();
    assert_eq!(summary["status"], "cancelled");
    assert_eq!(summary["cancelled"]["by"], "manager");
    assert_eq!(summary["cancelled"]["reason"], "the design changed");
    assert_eq!(summary["steps"]["after"]["status"], "pending");
    assert!(
        orch.ledger()
            .iter()
            .any(|l| l["event"] == "cancelled" && l["runId"] == format!("{id}.wait.1").as_str()),
        "{:?}",
        orch.ledger()
    );
    let again = orch.run(&["workflow", "cancel", &id], None);
    assert_eq!(again.code, 2, "{}", again.transcript(&orch));
    let mut transcript = asked.transcript(&orch);
    transcript.push_str(&again.transcript(&orch));
    wf_settings().bind(|| insta::assert_snapshot!(transcript));
}

/// A run paused at an approval gate has no process running it: `cancel`
/// ends it there and prints its summary; a run that completed cannot be
/// cancelled.
#[test]
fn cancel_ends_a_paused_run_and_refuses_one_that_ended() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    std::fs::write(
        orch.path("gate.yaml"),
        "name: gate\nsteps:\n  - id: draft\n    agent: webster\n    task: Draft it\n    gate: { approval: true }\n  - id: publish\n    agent: secretary\n    task: \"Publish {{ steps.draft.result }}\"\n",
    )
    .unwrap();
    let paused = orch.run(
        &[
            "workflow",
            "gate.yaml",
            "--caller",
            "manager",
            "--non-interactive",
        ],
        None,
    );
    assert_eq!(paused.code, 20, "{}", paused.transcript(&orch));
    let id = only_run(&orch);
    let cancelled = orch.ok(&["workflow", "cancel", &id, "--reason", "no longer needed"]);
    let summary: serde_json::Value = serde_json::from_str(&summary_json(&orch, &id)).unwrap();
    assert_eq!(summary["status"], "cancelled");
    assert_eq!(summary["cancelled"]["by"], "cli");
    assert_eq!(
        dispatches(&orch).get("secretary"),
        None,
        "publish never sent"
    );

    let done = Orch::new();
    done.write_config(FAST_SIM);
    done.ok(&[
        "workflow",
        "quick-research",
        "--input",
        "query=CTE of ULE",
        "--caller",
        "manager",
        "--non-interactive",
    ]);
    let ended = done.run(&["workflow", "cancel", &only_run(&done)], None);
    assert_eq!(ended.code, 2, "{}", ended.transcript(&done));
    let mut transcript = cancelled.transcript(&orch);
    transcript.push_str(&ended.transcript(&done));
    wf_settings().bind(|| insta::assert_snapshot!(transcript));
}

/// A `finally` step runs after a failed step stopped the run, reads how it
/// ended, and the run stays failed (exit 12); dry-run and graph show it
/// apart from the other steps.
#[test]
fn a_finally_step_runs_after_a_failure_and_dry_run_and_graph_show_it() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    std::fs::write(
        orch.path("tidy.yaml"),
        "name: tidy\nsteps:\n  - id: research\n    agent: webster\n    task: \"[sim:partial] look it up\"\n    gate: { status: [complete] }\n  - id: evaluate\n    agent: tech-lead\n    task: \"Evaluate {{ steps.research.result }}\"\nfinally:\n  - id: minutes\n    agent: secretary\n    task: \"Minutes. Run {{ run.status }}:\\n{{ run.steps }}\"\n",
    )
    .unwrap();
    let run = orch.run(
        &[
            "workflow",
            "tidy.yaml",
            "--caller",
            "manager",
            "--non-interactive",
        ],
        None,
    );
    assert_eq!(run.code, 12, "{}", run.transcript(&orch));
    let id = only_run(&orch);
    let summary: serde_json::Value = serde_json::from_str(&summary_json(&orch, &id)).unwrap();
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["steps"]["minutes"]["status"], "completed");
    assert_eq!(summary["steps"]["evaluate"]["status"], "skipped");
    let minutes = orch
        .ledger()
        .iter()
        .filter(|l| l["event"] == "dispatched" && l["agent"] == "secretary")
        .count();
    assert_eq!(minutes, 1);
    let dry = orch.ok(&["workflow", "tidy.yaml", "--caller", "manager", "--dry-run"]);
    let graph = orch.ok(&["workflow", "graph", "tidy.yaml"]);
    let mut transcript = run.transcript(&orch);
    transcript.push_str(&dry.transcript(&orch));
    transcript.push_str(&graph.transcript(&orch));
    wf_settings().bind(|| insta::assert_snapshot!(transcript));
}

/// The ids of every stored workflow run, sorted.
fn all_runs(orch: &Orch) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(orch.store().join("workflows"))
        .expect("workflows dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

/// The shipped `research-brief` runs `quick-research` as a child run: two
/// linked runs, the child's steps shown under its step (live lines,
/// status, JSON), the dry run and the graph expand it.
#[test]
fn research_brief_runs_quick_research_as_a_linked_child_run() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    let args = [
        "workflow",
        "research-brief",
        "--input",
        "topic=CTE of ULE at 20 °C",
        "--caller",
        "manager",
        "--non-interactive",
    ];
    let dry = orch.ok(&[&args[..], &["--dry-run"]].concat());
    assert_eq!(
        orch.store_files(),
        Vec::<String>::new(),
        "a dry run stores nothing"
    );
    let mut transcript = dry.transcript(&orch);
    let run = orch.run(&args, None);
    assert_eq!(run.code, 0, "{}", run.transcript(&orch));
    let runs = all_runs(&orch);
    assert_eq!(runs.len(), 2, "{runs:?}");
    let (id, child) = (&runs[0], &runs[1]);
    assert_eq!(child, &format!("{id}.background"));
    transcript.push_str(&run.transcript(&orch));
    transcript.push_str(&orch.ok(&["workflow", "status", id]).transcript(&orch));
    transcript.push_str(
        &orch
            .ok(&["workflow", "graph", "research-brief"])
            .transcript(&orch),
    );
    wf_settings().bind(|| insta::assert_snapshot!(transcript));

    let status: serde_json::Value =
        serde_json::from_str(&orch.ok(&["workflow", "status", id, "--json"]).stdout).unwrap();
    assert_eq!(status["status"], "completed");
    assert_eq!(status["children"]["background"], child.as_str());
    assert_eq!(status["uses"][0]["origin"], "<built-in quick-research>");
    let inner = &status["childRuns"]["background"];
    assert_eq!(inner["parent"]["runId"], id.as_str());
    assert_eq!(inner["parent"]["step"], "background");
    assert_eq!(inner["inputs"]["query"], "CTE of ULE at 20 °C");
    assert_eq!(inner["steps"]["validate"]["status"], "completed");
    // Its output was the brief's input.
    let ledger = orch.ledger();
    assert_eq!(
        dispatches(&orch),
        [
            ("study-builder".to_owned(), 1),
            ("tech-lead".to_owned(), 1),
            ("webster".to_owned(), 1)
        ]
        .into()
    );
    assert!(
        ledger
            .iter()
            .any(|l| l["event"] == "dispatched"
                && l["runId"] == format!("{child}.research.1").as_str()),
        "the child's delegations carry its run id"
    );
}

/// Local workflows that use each other: a cycle names both files' `uses`;
/// a child's approval gate pauses the parent, is approved from the
/// parent's run id, and resume finishes both.
#[test]
fn local_sub_workflows_cycles_and_a_child_gate_approved_from_the_parent() {
    let orch = Orch::new();
    orch.write_config(FAST_SIM);
    std::fs::create_dir_all(orch.path("flows")).unwrap();
    std::fs::write(
        orch.path("flows/a.yaml"),
        "name: a\nsteps:\n  - id: x\n    uses: b.yaml\n",
    )
    .unwrap();
    std::fs::write(
        orch.path("flows/b.yaml"),
        "name: b\nsteps:\n  - id: y\n    uses: ./a.yaml\noutput: \"{{ steps.y.result }}\"\n",
    )
    .unwrap();
    let cycle = orch.run(&["workflow", "validate", "flows/a.yaml"], None);
    assert_eq!(cycle.code, 2, "{}", cycle.transcript(&orch));
    let mut transcript = cycle.transcript(&orch);

    std::fs::write(
        orch.path("flows/check.yaml"),
        "name: check\ninputs:\n  draft: { required: true }\nsteps:\n  - id: review\n    agent: auditor\n    task: \"Review: {{ inputs.draft }}\"\n    gate: { approval: true }\noutput: \"{{ steps.review.result }}\"\n",
    )
    .unwrap();
    std::fs::write(
        orch.path("flows/outer.yaml"),
        "name: outer\nsteps:\n  - { id: draft, agent: webster, task: Draft the note }\n  - id: checked\n    uses: check.yaml\n    with: { draft: \"{{ steps.draft.result }}\" }\n  - { id: file, agent: secretary, task: \"File: {{ steps.checked.result }}\" }\noutput: \"{{ steps.file.result }}\"\n",
    )
    .unwrap();
    let paused = orch.run(
        &[
            "workflow",
            "flows/outer.yaml",
            "--caller",
            "manager",
            "--non-interactive",
        ],
        None,
    );
    assert_eq!(paused.code, 20, "{}", paused.transcript(&orch));
    transcript.push_str(&paused.transcript(&orch));
    let id = all_runs(&orch).remove(0);
    let wrong = orch.run(&["workflow", "approve", &id, "checked"], None);
    assert_eq!(wrong.code, 2, "{}", wrong.transcript(&orch));
    transcript.push_str(&wrong.transcript(&orch));
    transcript.push_str(
        &orch
            .ok(&["workflow", "approve", &id, "checked/review"])
            .transcript(&orch),
    );
    let resumed = orch.run(&["workflow", "resume", &id, "--non-interactive"], None);
    assert_eq!(resumed.code, 0, "{}", resumed.transcript(&orch));
    transcript.push_str(&resumed.transcript(&orch));
    assert_eq!(
        dispatches(&orch),
        [
            ("auditor".to_owned(), 1),
            ("secretary".to_owned(), 1),
            ("webster".to_owned(), 1)
        ]
        .into(),
        "nothing was sent twice"
    );
    wf_settings().bind(|| insta::assert_snapshot!(transcript));
}
