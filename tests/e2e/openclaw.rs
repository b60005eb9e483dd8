//! `orch delegate` through the `openclaw` transport against a local fake
//! gateway that speaks the real hooks contract (orch_delegate::testing).
//!
//! The fake serves on the test's multi-thread runtime while the test thread
//! blocks on the `orch` process.

use orch_delegate::testing::{FakeFailure, FakeGateway, FakeGatewayOptions};

use crate::{Orch, settings};

const TOKEN_VAR: &str = "ORCH_E2E_HOOK_TOKEN";
const AGENTS: [&str; 3] = ["webster", "tech-lead", "auditor"];

async fn gateway(fail_next: Vec<FakeFailure>) -> FakeGateway {
    gateway_with(fail_next, std::time::Duration::ZERO).await
}

async fn gateway_with(
    fail_next: Vec<FakeFailure>,
    answer_delay: std::time::Duration,
) -> FakeGateway {
    let mut options = FakeGatewayOptions::new("e2e-secret-token-9f2c", AGENTS);
    options.fail_next = fail_next;
    options.answer_delay = answer_delay;
    FakeGateway::start(options).await.expect("fake gateway")
}

/// A config with webster and tech-lead on the gateway (tech-lead with
/// waitForCompletion), `manager` on the sim fleet, and `ghost` an agent the
/// gateway does not know.
fn setup(gw: &FakeGateway) -> Orch {
    let orch = Orch::new();
    orch.write_config(&format!(
        "
delegation: {{ retry: {{ base_delay: 10ms, max_delay: 50ms }} }}
transports:
  gateway: {{ kind: openclaw, url: '{url}', token_env: {TOKEN_VAR} }}
  gateway-wait: {{ kind: openclaw, url: '{url}', token_env: {TOKEN_VAR}, wait_for_completion: true }}
agents:
  webster:   {{ transport: gateway }}
  tech-lead: {{ transport: gateway-wait }}
  ghost:     {{ transport: gateway }}
  manager:   {{ transport: {{ kind: sim }} }}
",
        url = gw.url()
    ));
    orch
}

fn delegate(orch: &Orch, gw: &FakeGateway, args: &[&str]) -> crate::Run {
    delegate_with(orch, args, None, gw.token())
}

fn delegate_with(orch: &Orch, args: &[&str], stdin: Option<&[u8]>, token: &str) -> crate::Run {
    let mut full = vec!["delegate"];
    full.extend_from_slice(args);
    let run = orch.run_env(&full, stdin, &[(TOKEN_VAR, token)]);
    run.assert_hides(orch, token);
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_through_the_gateway() {
    let gw = gateway(vec![]).await;
    let orch = setup(&gw);
    let cases: &[(&str, &str, i32)] = &[
        ("complete", "Find CTE of Zerodur", 0),
        ("partial", "Find CTE of Zerodur [fake:partial]", 10),
        ("blocked", "Find CTE of Zerodur [fake:blocked]", 11),
        ("low confidence", "Find CTE of Zerodur [fake:low]", 0),
    ];
    let mut transcript = String::new();
    for (name, task, code) in cases {
        let run = delegate(
            &orch,
            &gw,
            &["webster", task, "--caller", "manager", "--timeout", "30s"],
        );
        assert_eq!(run.code, *code, "{name}: {}", run.transcript(&orch));
        transcript.push_str(&format!("# {name}\n{}\n", run.transcript(&orch)));
    }
    settings().bind(|| insta::assert_snapshot!(transcript));
    // What went over the wire: the hooks contract of DESIGN §5.
    let first = &gw.requests()[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/hooks/agent");
    assert!(first.auth_valid);
    let body = first.body.as_ref().unwrap();
    assert_eq!(body["agentId"], "webster");
    assert_eq!(body["deliver"], false);
    assert_eq!(body["timeoutSeconds"], 30);
    let run_id = first.idempotency_key.clone().unwrap();
    assert_eq!(body["name"], format!("orch {run_id}"));
    assert_eq!(gw.runs_started(), cases.len());
}

/// With waitForCompletion, a run that ends without a handoff is noticed at
/// once: re-asked once, then failed, long before `--timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_run_fails_fast_with_wait_for_completion() {
    let gw = gateway(vec![]).await;
    let orch = setup(&gw);
    let run = delegate(
        &orch,
        &gw,
        &[
            "tech-lead",
            "Review margins [fake:silent]",
            "--caller",
            "manager",
            "--timeout",
            "10m",
            "--json",
        ],
    );
    assert_eq!(run.code, 12, "{}", run.transcript(&orch));
    let value: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(value["reasks"], 1, "{value}");
    assert_eq!(
        value["end"]["kind"], "no-handoff",
        "a run that ended without a handoff, not a timeout: {value}"
    );
    assert_eq!(gw.runs_started(), 2, "the first run and one re-ask");
}

/// An invalid handoff is answered with a re-ask that quotes the exact error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_handoff_is_reasked_with_the_error() {
    let gw = gateway(vec![]).await;
    let orch = setup(&gw);
    let run = delegate(
        &orch,
        &gw,
        &[
            "tech-lead",
            "Review margins [fake:malformed]",
            "--caller",
            "manager",
            "--timeout",
            "30s",
        ],
    );
    assert_eq!(run.code, 12, "{}", run.transcript(&orch));
    let requests = gw.requests();
    assert_eq!(requests.len(), 2, "first dispatch and one re-ask");
    let reask = requests[1].body.as_ref().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reask.contains("invalid JSON at line 1"), "{reask}");
    assert_ne!(requests[0].idempotency_key, requests[1].idempotency_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_what_to_fix() {
    let gw = gateway(vec![]).await;
    let orch = setup(&gw);
    let mut transcript = String::new();
    let wrong_token = delegate_with(
        &orch,
        &["webster", "Find CTE", "--caller", "manager"],
        None,
        "not-the-token",
    );
    assert_eq!(wrong_token.code, 4, "{}", wrong_token.transcript(&orch));
    transcript.push_str(&format!(
        "# wrong token\n{}\n",
        wrong_token.transcript(&orch)
    ));
    let unknown = delegate(&orch, &gw, &["ghost", "Find CTE", "--caller", "manager"]);
    assert_eq!(unknown.code, 4, "{}", unknown.transcript(&orch));
    transcript.push_str(&format!(
        "# agent unknown to the gateway\n{}\n",
        unknown.transcript(&orch)
    ));
    let before = gw.requests().len();
    let huge = "x".repeat(300 * 1024);
    let oversize = delegate_with(
        &orch,
        &["webster", "-", "--caller", "manager"],
        Some(huge.as_bytes()),
        gw.token(),
    );
    // Refused with its real size before anything is sent: bad input (2),
    // not a transport failure (4).
    assert_eq!(oversize.code, 2, "{}", oversize.transcript(&orch));
    assert_eq!(gw.requests().len(), before, "refused before sending");
    transcript.push_str(&format!(
        "# over-size task\n{}\n",
        oversize.transcript(&orch)
    ));
    let denied = delegate(&orch, &gw, &["webster", "Find CTE", "--caller", "auditor"]);
    assert_eq!(denied.code, 3, "{}", denied.transcript(&orch));
    assert_eq!(gw.requests().len(), before, "an ACL denial sends nothing");
    transcript.push_str(&format!("# acl denial\n{}\n", denied.transcript(&orch)));
    settings().bind(|| insta::assert_snapshot!(transcript));
}

/// A dispatch whose response was lost after the run started is retried
/// with the same Idempotency-Key, and the gateway starts no second run.
/// (The agent takes a moment to answer, so the retries happen first; an
/// answer that lands during the backoff ends the delegation without them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_a_dropped_connection_does_not_start_a_second_run() {
    let gw = gateway_with(
        vec![FakeFailure::DropAfterStart, FakeFailure::Status503],
        std::time::Duration::from_millis(1500),
    )
    .await;
    let orch = setup(&gw);
    let run = delegate(
        &orch,
        &gw,
        &[
            "webster",
            "Find CTE of Zerodur",
            "--caller",
            "manager",
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.transcript(&orch));
    let keys: Vec<_> = gw
        .requests()
        .iter()
        .map(|r| r.idempotency_key.clone())
        .collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");
    assert_eq!(gw.runs_started(), 1);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(value["dispatches"], 3, "{value}");
}

/// A config like `setup`'s, with the default retry backoff shortened and
/// `extra` added to the gateway transport.
fn setup_with(gw: &FakeGateway, extra: &str) -> Orch {
    let orch = Orch::new();
    orch.write_config(&format!(
        "
delegation: {{ retry: {{ base_delay: 10ms, max_delay: 20ms }} }}
transports:
  gateway: {{ kind: openclaw, url: '{url}', token_env: {TOKEN_VAR}{extra} }}
agents:
  webster: {{ transport: gateway }}
  manager: {{ transport: {{ kind: sim }} }}
",
        url = gw.url()
    ));
    orch
}

/// The gateway restarts: connections are refused for longer than the old
/// fixed budget of 5 tries. `orch delegate` retries until its deadline,
/// says so on stderr for every try, and goes through once the gateway is
/// back. (The gateway comes back after the 8th retry line, not after a
/// time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegation_rides_a_gateway_restart_and_shows_each_retry() {
    use std::io::BufRead;
    let gw = gateway(vec![]).await;
    let orch = setup_with(&gw, "");
    gw.go_down().await;
    let mut child = orch
        .command()
        .env(TOKEN_VAR, gw.token())
        .args([
            "delegate",
            "webster",
            "Find CTE of Zerodur",
            "--caller",
            "manager",
            "--timeout",
            "60s",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while lines.len() < 8 {
        let line = rx.recv().await.expect("orch ended before 8 retries");
        assert!(line.starts_with("retry: "), "{line}");
        lines.push(line);
    }
    gw.come_up().await.unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    reader.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(gw.runs_started(), 1);
    let retried = orch
        .ledger()
        .iter()
        .filter(|e| e["event"] == "retried")
        .count();
    assert!(retried >= 8, "{retried}");
    settings().bind(|| {
        insta::assert_snapshot!(lines[..3].join("\n"), @r"
        retry: dispatch to webster: try 1 failed: could not reach the receiver: POST http://127.0.0.1:[PORT]/hooks/agent: cannot connect: tcp connect error: Connection refused (os error 111); next try in 10ms
        retry: dispatch to webster: try 2 failed: could not reach the receiver: POST http://127.0.0.1:[PORT]/hooks/agent: cannot connect: tcp connect error: Connection refused (os error 111); next try in 20ms
        retry: dispatch to webster: try 3 failed: could not reach the receiver: POST http://127.0.0.1:[PORT]/hooks/agent: cannot connect: tcp connect error: Connection refused (os error 111); next try in 20ms
        ")
    });
}

/// `Retry-After: 100000` is capped at `max_retry_after`, and when that
/// does not fit before the deadline the error says so (one request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_retry_after_says_why_it_gave_up() {
    let gw = gateway(vec![FakeFailure::Status {
        status: 429,
        body: r#"{"ok":false,"error":"slow down"}"#.into(),
        retry_after: Some("100000".into()),
    }])
    .await;
    let orch = setup_with(&gw, "");
    let run = delegate(
        &orch,
        &gw,
        &[
            "webster",
            "Find CTE",
            "--caller",
            "manager",
            "--timeout",
            "30s",
        ],
    );
    assert_eq!(run.code, 4, "{}", run.transcript(&orch));
    assert_eq!(gw.requests().len(), 1);
    let mut s = settings();
    s.add_filter(r"deadline \(in [0-9.]+m?s\)", "deadline (in [LEFT])");
    s.bind(|| insta::assert_snapshot!(run.transcript(&orch)));
}

/// A gateway that never answers: exit 13, and the outcome says the
/// gateway never acknowledged the task and how each try ended (not only
/// at `-vv`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_gateway_says_it_never_answered() {
    let gw = gateway(vec![FakeFailure::Hang; 10]).await;
    let orch = setup_with(&gw, ", request_timeout: 1s");
    let run = delegate(
        &orch,
        &gw,
        &[
            "webster",
            "Find CTE",
            "--caller",
            "manager",
            "--timeout",
            "2500ms",
        ],
    );
    assert_eq!(run.code, 13, "{}", run.transcript(&orch));
    assert!(
        run.stdout.contains(
            "no handoff before the deadline; the transport never acknowledged the task: "
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("the gateway did not answer within 1s")
            && run
                .stdout
                .contains("was still waiting for an answer at the deadline"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("retry: "), "{}", run.stderr);
    assert_eq!(gw.runs_started(), 0);
    let timeout = orch.ledger().into_iter().last().unwrap();
    assert_eq!(timeout["event"], "timeout");
    assert!(
        timeout["detail"]
            .as_str()
            .unwrap()
            .contains("the transport never acknowledged the task"),
        "{timeout}"
    );
}

/// A workflow step's dispatch retries show beside the step on stderr (one
/// line per retry, named by the step), not only in the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_step_shows_its_dispatch_retries() {
    let unavailable = || FakeFailure::Status {
        status: 503,
        body: "gateway restarting".into(),
        retry_after: None,
    };
    let gw = gateway(vec![unavailable(), unavailable()]).await;
    let orch = setup(&gw);
    std::fs::write(
        orch.path("one.yaml"),
        "name: one\nsteps:\n  - id: research\n    agent: webster\n    task: Find CTE of Zerodur\n",
    )
    .unwrap();
    let run = orch.run_env(
        &[
            "workflow",
            "one.yaml",
            "--caller",
            "manager",
            "--non-interactive",
        ],
        None,
        &[(TOKEN_VAR, gw.token())],
    );
    assert_eq!(run.code, 0, "{}", run.transcript(&orch));
    let retries: Vec<&str> = run
        .stderr
        .lines()
        .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
        .filter(|l| l.contains("dispatch retry"))
        .collect();
    settings().bind(|| {
        insta::assert_snapshot!(retries.join("\n"), @r#"
        research dispatch retry: try 1 failed: the receiver is unavailable: openclaw answered 503 Service Unavailable: "gateway restarting"; next try in 10ms
        research dispatch retry: try 2 failed: the receiver is unavailable: openclaw answered 503 Service Unavailable: "gateway restarting"; next try in 20ms
        "#);
    });
}
