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
    assert_eq!(oversize.code, 4, "{}", oversize.transcript(&orch));
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
