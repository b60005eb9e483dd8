//! The CLI on the NATS store (`store.kind: nats`): the same commands, two
//! "hosts" that share nothing but the NATS server (two temp directories,
//! each with its own `orch.yaml`), and the errors an operator sees.
//!
//! Each test starts its own `nats-server` on loopback
//! (`orch_handoff::testing::NatsServer`); without the binary the tests say
//! so and pass, except with `CI=true`.

use std::process::{Child, Stdio};

use orch_handoff::testing::{NatsServer, NatsServerOptions};

use crate::{FAST_SIM, Orch, Run, settings};

/// An `orch.yaml` for the fast sim fleet on the NATS store.
fn config(url: &str, extra: &str) -> String {
    format!("store:\n  kind: nats\n  url: {url}\n  bucket: e2e\n{extra}{FAST_SIM}")
}

/// One host: a temp directory with its own `orch.yaml`, and no
/// `ORCH_HANDOFF_DIR` (which would select a file store).
fn host(yaml: &str) -> Orch {
    let orch = Orch::new();
    orch.write_config(yaml);
    orch
}

fn command(orch: &Orch, args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = orch.command();
    cmd.env_remove("ORCH_HANDOFF_DIR")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run_env(orch: &Orch, args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = command(orch, args, env).output().expect("run orch");
    finish(args, output)
}

fn run(orch: &Orch, args: &[&str]) -> Run {
    run_env(orch, args, &[])
}

fn spawn(orch: &Orch, args: &[&str]) -> Child {
    command(orch, args, &[]).spawn().expect("spawn orch")
}

fn finish(args: &[&str], output: std::process::Output) -> Run {
    Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn ok(orch: &Orch, args: &[&str]) -> Run {
    let run = run(orch, args);
    assert_eq!(run.code, 0, "{}", run.transcript(orch));
    run
}

/// The first run id (`orch-…`) in `text`.
fn run_id(text: &str) -> String {
    let start = text.find("orch-2").expect("a run id");
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

#[test]
fn delegate_wait_submit_and_show_across_hosts() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let here = host(&config(&server.url(), ""));
    let there = host(&config(&server.url(), ""));

    // A delegation through the sim fleet, answered through NATS.
    let delegated = ok(
        &here,
        &[
            "delegate",
            "webster",
            "Find CTE of Zerodur",
            "--caller",
            "manager",
        ],
    );
    let mut transcript = delegated.transcript(&here);
    let first = run_id(&delegated.stdout);
    transcript.push_str(&ok(&there, &["handoff", "show", &first]).transcript(&there));

    // A caller waits here; an agent on another host answers there.
    let waited = "orch-20261125T114140Z-0badc0de";
    let waiter = spawn(&here, &["handoff", "wait", waited, "--timeout", "60s"]);
    let submitted = ok(
        &there,
        &[
            "handoff",
            "submit",
            "--run-id",
            waited,
            "--agent",
            "webster",
            "--status",
            "partial",
            "--result",
            "Zerodur CTE is 0 ± 0.007 ppm/K",
            "--notes",
            "class 0 only",
            // Nobody delegated this run: the caller only waits on it.
            "--unsolicited",
        ],
    );
    let waited_run = finish(
        &["handoff", "wait", waited, "--timeout", "60s"],
        waiter.wait_with_output().expect("wait for orch"),
    );
    transcript.push_str(&submitted.transcript(&there));
    transcript.push_str(&waited_run.transcript(&here));
    assert_eq!(
        waited_run.code,
        10,
        "partial: {}",
        waited_run.transcript(&here)
    );

    // Submitting again is refused without --force, from either host.
    let again = run(
        &here,
        &[
            "handoff",
            "submit",
            "--run-id",
            waited,
            "--agent",
            "webster",
            "--status",
            "complete",
            "--result",
            "again",
            "--unsolicited",
        ],
    );
    assert_eq!(again.code, 2, "{}", again.transcript(&here));
    transcript.push_str(&again.transcript(&here));

    // Nothing touched either host's disk: the store is the server.
    assert_eq!(here.store_files(), Vec::<String>::new());
    assert!(!here.path(".orch").exists() && !there.path(".orch").exists());
    settings().bind(|| insta::assert_snapshot!(transcript));
}

#[test]
fn a_workflow_runs_end_to_end_on_nats() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let here = host(&config(&server.url(), ""));
    let there = host(&config(&server.url(), ""));
    let run = ok(
        &here,
        &[
            "workflow",
            "quick-research",
            "--input",
            "query=What is the CTE of Invar 36 at 20 °C?",
            "--caller",
            "manager",
            "--non-interactive",
            "--json",
        ],
    );
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).expect("summary json");
    let id = summary["runId"].as_str().expect("runId").to_owned();
    assert_eq!(summary["status"], "completed", "{summary}");

    // Another host reads the same run from the server.
    let status = ok(&there, &["workflow", "status", &id, "--json"]);
    let stored: serde_json::Value = serde_json::from_str(&status.stdout).expect("status json");
    assert_eq!(stored["status"], "completed");
    for step in ["research", "validate"] {
        assert_eq!(stored["steps"][step]["status"], "completed", "{stored}");
    }
    assert_eq!(stored["output"], summary["output"]);
    let runs = ok(&there, &["workflow", "runs", "--json"]);
    assert!(runs.stdout.contains(&id), "{}", runs.stdout);

    // The ledger is on the server too: metrics read it from another host.
    let metrics = run_env(&there, &["metrics", "json"], &[]);
    assert_eq!(metrics.code, 0, "{}", metrics.transcript(&there));
    let report: serde_json::Value = serde_json::from_str(&metrics.stdout).expect("metrics json");
    let text = report.to_string();
    assert!(
        text.contains("webster") && text.contains("tech-lead"),
        "{text}"
    );
    assert!(!here.path(".orch").exists());
}

#[test]
fn unreachable_servers_missing_jetstream_and_tokens_are_clear() {
    let Some(server) = NatsServer::start_with(&NatsServerOptions {
        jetstream: false,
        ..NatsServerOptions::default()
    }) else {
        return;
    };
    let mut transcript = String::new();

    // Nobody listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nobody = host(&config(&format!("nats://127.0.0.1:{port}"), ""));
    let r = run(
        &nobody,
        &["handoff", "show", "orch-20261125T114140Z-0badc0de"],
    );
    assert_eq!(r.code, 1, "{}", r.transcript(&nobody));
    transcript.push_str(&r.transcript(&nobody));

    // A server without JetStream.
    let no_js = host(&config(&server.url(), ""));
    let r = run(&no_js, &["delegate", "webster", "x", "--caller", "manager"]);
    assert_eq!(r.code, 1, "{}", r.transcript(&no_js));
    transcript.push_str(&r.transcript(&no_js));

    // A token variable that is not set: a config error, naming the variable.
    let unset = host(&config(
        &server.url(),
        "  token_env: ORCH_TEST_NATS_TOKEN\n",
    ));
    let r = run(&unset, &["workflow", "runs"]);
    assert_eq!(r.code, 2, "{}", r.transcript(&unset));
    transcript.push_str(&r.transcript(&unset));
    settings().bind(|| insta::assert_snapshot!(transcript));
}

#[test]
fn a_token_from_the_environment_opens_the_store_and_is_never_shown() {
    let token = "e2e-Secret-token-1234";
    let Some(server) = NatsServer::start_with(&NatsServerOptions {
        token: Some(token.into()),
        ..NatsServerOptions::default()
    }) else {
        return;
    };
    let orch = host(&config(
        &server.url(),
        "  token_env: ORCH_TEST_NATS_TOKEN\n",
    ));
    let env = [("ORCH_TEST_NATS_TOKEN", token)];
    let shown = run_env(&orch, &["config", "show"], &env);
    assert_eq!(shown.code, 0, "{}", shown.transcript(&orch));
    assert!(
        shown
            .stdout
            .contains("# store: NATS token $ORCH_TEST_NATS_TOKEN is set (value never shown)"),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("token_env: ORCH_TEST_NATS_TOKEN"));
    let delegated = run_env(
        &orch,
        &[
            "delegate",
            "webster",
            "Find CTE of Zerodur",
            "--caller",
            "manager",
            "--json",
        ],
        &env,
    );
    assert_eq!(delegated.code, 0, "{}", delegated.transcript(&orch));
    let wrong = run_env(
        &orch,
        &["handoff", "show", &run_id(&delegated.stdout)],
        &[("ORCH_TEST_NATS_TOKEN", "wrong-Secret-token")],
    );
    assert_eq!(wrong.code, 1, "{}", wrong.transcript(&orch));
    assert!(
        wrong.stderr.contains("refused the credentials"),
        "{}",
        wrong.stderr
    );
    for run in [&shown, &delegated, &wrong] {
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            !all.contains(token) && !all.contains("wrong-Secret"),
            "{all}"
        );
    }
}

/// An exec agent needs none of the caller's files: orch hands it the store
/// (`ORCH_STORE`, and `--store` in the task), so a bare `orch handoff
/// submit` in a directory with no config reaches the caller. The same
/// answer sent to the wrong store (no `ORCH_STORE`, the local default)
/// fails loudly instead of vanishing.
#[test]
fn an_exec_agent_answers_through_the_store_descriptor_from_anywhere() {
    use std::os::unix::fs::PermissionsExt;
    let Some(server) = NatsServer::start() else {
        return;
    };
    let here = Orch::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let agent = here.path("agent.sh");
    std::fs::write(
        &agent,
        "#!/bin/sh\ncat > task.txt\nprintf '%s' \"$ORCH_STORE\" > store.txt\nexec orch handoff submit --run-id \"$ORCH_RUN_ID\" --agent \"$ORCH_AGENT\" --status complete --result 'answered from another host'\n",
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    here.write_config(&format!(
        "store:\n  kind: nats\n  url: {}\n  bucket: e2e\nagents:\n  manager: {{ transport: {{ kind: sim }} }}\n  webster: {{ transport: {{ kind: exec, command: ['{}'], cwd: '{}' }} }}\n",
        server.url(),
        agent.display(),
        elsewhere.path().display()
    ));
    let delegated = ok(
        &here,
        &[
            "delegate",
            "webster",
            "Find the CTE of Zerodur",
            "--caller",
            "manager",
        ],
    );
    assert!(
        delegated.stdout.contains("answered from another host"),
        "{}",
        delegated.transcript(&here)
    );
    let descriptor = format!("{}/e2e", server.url());
    let given = std::fs::read_to_string(elsewhere.path().join("store.txt")).unwrap();
    assert_eq!(given, descriptor);
    let task = std::fs::read_to_string(elsewhere.path().join("task.txt")).unwrap();
    assert!(task.contains(&format!("--store {descriptor}")), "{task}");
    assert!(!task.contains("--config"), "{task}");
    assert!(!elsewhere.path().join(".orch").exists());

    // The same answer where no store is named: the local default, which
    // never saw this run dispatched.
    let lost = Orch::new();
    let args = [
        "handoff",
        "submit",
        "--run-id",
        "orch-20261202T060000Z-0badc0de",
        "--agent",
        "webster",
        "--status",
        "complete",
        "--result",
        "answered from the wrong host",
    ];
    let refused = run(&lost, &args);
    assert_eq!(refused.code, 2, "{}", refused.transcript(&lost));
    assert!(
        refused.stderr.contains("was never dispatched") && refused.stderr.contains("ORCH_STORE"),
        "{}",
        refused.stderr
    );
    assert!(lost.store_files().is_empty(), "{:?}", lost.store_files());
}
