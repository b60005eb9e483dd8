//! `orch workflow` through the binary: run, dry-run, approve, resume (after
//! a kill -9), runs, status, validate, graph, list, show.

use crate::{FAST_SIM, Orch, settings};

#[test]
fn list_show_and_graph_the_shipped_workflows() {
    let orch = Orch::new();
    let mut transcript = orch.ok(&["workflow", "list"]).transcript(&orch);
    for name in ["quick-research", "material-trade-study", "design-review"] {
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
            &["question=What is the CTE of Invar 36 at 20 °C?"],
        ),
        ("design-review", &["design=mirror mount rev C"]),
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
            // Sequential, so the progress lines have a stable order.
            wf_settings().bind(|| insta::assert_snapshot!(run.transcript(&orch)));
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
        "question=CTE of Invar?",
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
/// again and step 2's delegation (still being worked on by its agent) is
/// re-awaited, not sent twice.
#[test]
fn kill_9_mid_run_then_resume_redispatches_no_finished_step() {
    use std::os::unix::fs::PermissionsExt;
    let orch = Orch::new();
    let go = orch.path("go");
    // The slow agent answers once the test says so: after the kill.
    let slow = orch.path("slow.sh");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\ncat > /dev/null\n# at most a minute: the agent outlives the killed orch, and a failed test must not leave it behind\ni=0; while [ ! -e '{}' ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done\nexec orch handoff submit --run-id \"$ORCH_RUN_ID\" --agent \"$ORCH_AGENT\" --status complete --confidence high --result 'evaluated after the crash'\n",
            go.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    orch.write_config(&format!(
        "
transports:
  sim: {{ kind: sim, delay: 20ms, slow_delay: 1h }}
agents:
  manager:   {{ transport: sim }}
  webster:   {{ transport: sim }}
  tech-lead: {{ transport: {{ kind: exec, command: ['{}'] }} }}
  auditor:   {{ transport: sim }}
",
        slow.display()
    ));
    std::fs::write(
        orch.path("three.yaml"),
        "name: three\nsteps:\n  - id: research\n    agent: webster\n    task: Research the mount\n  - id: evaluate\n    agent: tech-lead\n    task: \"Evaluate: {{ steps.research.result }}\"\n  - id: audit\n    agent: auditor\n    task: \"Audit: {{ steps.evaluate.result }}\"\noutput: \"{{ steps.audit.result }}\"\n",
    )
    .unwrap();
    let mut child = orch
        .command()
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
    // Wait for: step 1's handoff and step 2's dispatch in the ledger.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ledger = orch.ledger();
        let has = |event: &str, agent: &str| {
            ledger
                .iter()
                .any(|l| l["event"] == event && l["agent"] == agent)
        };
        if has("handoff", "webster") && has("dispatched", "tech-lead") {
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
    std::fs::write(&go, "").unwrap();
    let resumed = orch.run(&["workflow", "resume", &id, "--non-interactive"], None);
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
    let done: serde_json::Value = serde_json::from_str(&summary_json(&orch, &id)).unwrap();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["steps"]["evaluate"]["attempts"], 1);
    wf_settings().bind(|| insta::assert_snapshot!(resumed.transcript(&orch)));
}

/// Ctrl-C stores the run as `cancelled` (exit 130), its in-flight step
/// still `running` for resume.
#[test]
fn ctrl_c_stores_the_run_as_cancelled() {
    let orch = Orch::new();
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
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let id = only_run(&orch);
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
