//! The `openclaw` transport against the fake OpenClaw gateway: every
//! outcome of a dispatch, and the fake's own contract.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orch_delegate::orch_handoff::{Expect, RunId, Scope, Status, parse_handoff};
use orch_delegate::testing::{FakeFailure, FakeGateway, FakeGatewayOptions};
use orch_delegate::transport::openclaw::{OpenClawConfig, OpenClawTransport};
use orch_delegate::{Ack, Envelope, Secret, Transport, TransportError};
use serde_json::{Value, json};

const TOKEN: &str = "tok-5ecret-hook-token-0042";

fn options() -> FakeGatewayOptions {
    FakeGatewayOptions::new(TOKEN, ["webster", "tech-lead"])
}

async fn gateway(opts: FakeGatewayOptions) -> FakeGateway {
    FakeGateway::start(opts).await.expect("fake gateway starts")
}

fn transport_with(url: &str, edit: impl FnOnce(&mut OpenClawConfig)) -> OpenClawTransport {
    let mut config = OpenClawConfig::new(url, Secret::new(TOKEN));
    edit(&mut config);
    OpenClawTransport::new(config).expect("valid config")
}

fn transport(gw: &FakeGateway) -> OpenClawTransport {
    transport_with(&gw.url(), |_| {})
}

fn waiting(gw: &FakeGateway) -> OpenClawTransport {
    transport_with(&gw.url(), |c| c.wait_for_completion = true)
}

/// An envelope for `agent` whose message names `<dir>/<run>.json` in its
/// first line, like orch's task message.
fn envelope(dir: &Path, run: &str, agent: &str, task: &str) -> Envelope {
    let handoff = dir.join(format!("{run}.json"));
    Envelope {
        run_id: RunId::new(run).expect("valid run id"),
        agent: agent.to_owned(),
        caller: "main".to_owned(),
        message: format!(
            "[orch run {run}] write your handoff to {}\n\n{task}",
            handoff.display()
        ),
        handoff_location: handoff.display().to_string(),
        timeout: Duration::from_secs(120),
        parent: None,
        scope: Scope::Top,
        attempt: 1,
    }
}

fn handoff_path(dir: &Path, run: &str) -> PathBuf {
    dir.join(format!("{run}.json"))
}

/// Snapshots what a caller sees of `err`: its message, whether a retry may
/// help, and how long to wait; checks that no token leaks into it.
fn check_error(name: &str, err: &TransportError) {
    let shown = format!("{err}\n{err:?}");
    assert!(!shown.contains(TOKEN), "token leaked: {shown}");
    let report = format!(
        "{err}\nretryable: {}\nretry_after: {:?}",
        err.is_retryable(),
        err.retry_after()
    );
    insta::with_settings!({
        prepend_module_to_snapshot => true,
        snapshot_suffix => name,
        filters => vec![(r"127\.0\.0\.1:\d+", "127.0.0.1:[port]")],
    }, {
        insta::assert_snapshot!("error", report);
    });
}

async fn dispatch_err(t: &OpenClawTransport, env: &Envelope) -> TransportError {
    match t.dispatch(env).await {
        Ok(ack) => panic!("expected an error, got {ack:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn ack_carries_the_gateways_run_id() {
    let gw = gateway(options()).await;
    let dir = tempfile::tempdir().unwrap();
    let ack = transport(&gw)
        .dispatch(&envelope(dir.path(), "r-ack", "webster", "Say hi"))
        .await
        .unwrap();
    let remote = ack.remote_run_id.expect("a remote run id");
    assert_eq!(remote.len(), 36, "uuid-shaped: {remote}");
    assert_eq!(ack.completion, None);
    assert_eq!(gw.runs_started(), 1);
}

#[tokio::test]
async fn request_has_the_documented_shape() {
    let gw = gateway(options()).await;
    let dir = tempfile::tempdir().unwrap();
    let env = envelope(dir.path(), "r-shape", "webster", "Check the shape");
    transport(&gw).dispatch(&env).await.unwrap();

    let requests = gw.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/hooks/agent")
    );
    assert!(r.auth_valid);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.idempotency_key.as_deref(), Some("r-shape"));
    assert_eq!(r.header("idempotency-key"), Some("r-shape"));
    assert!(
        r.header("authorization").is_none(),
        "credentials are not recorded"
    );
    assert_eq!(
        r.body,
        Some(json!({
            "message": env.message,
            "name": "orch r-shape",
            "agentId": "webster",
            "deliver": false,
            "timeoutSeconds": 120,
        }))
    );
}

#[tokio::test]
async fn configured_agent_id_wait_and_reask_key() {
    let gw = gateway(options()).await;
    let dir = tempfile::tempdir().unwrap();
    let t = transport_with(&gw.url(), |c| {
        c.agent_id = Some("tech-lead".to_owned());
        c.wait_for_completion = true;
        c.path = "hooks/".to_owned();
    });
    let mut env = envelope(dir.path(), "r-cfg", "orch-lead", "Configured");
    env.timeout = Duration::from_millis(1500);
    env.attempt = 2;
    t.dispatch(&env).await.unwrap();

    let r = &gw.requests()[0];
    assert_eq!(r.idempotency_key.as_deref(), Some("r-cfg.reask-1"));
    let body = r.body.as_ref().unwrap();
    assert_eq!(body["agentId"], "tech-lead");
    assert_eq!(body["timeoutSeconds"], 2, "rounded up to whole seconds");
    assert_eq!(body["waitForCompletion"], true);
    let written = std::fs::read(handoff_path(dir.path(), "r-cfg")).unwrap();
    let handoff = parse_handoff(&written, &Expect::default()).unwrap();
    assert_eq!(handoff.agent, "tech-lead");
}

#[tokio::test]
async fn unknown_agent_says_what_to_fix() {
    let gw = gateway(options()).await;
    let dir = tempfile::tempdir().unwrap();
    let err = dispatch_err(&transport(&gw), &envelope(dir.path(), "r1", "nobody", "x")).await;
    assert!(matches!(err, TransportError::Rejected { status: 400, .. }));
    check_error("400-unknown-agent", &err);
    assert_eq!(gw.runs_started(), 0);
}

#[tokio::test]
async fn wrong_token_is_rejected_without_showing_it() {
    let gw = gateway(options()).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "wrong-token-that-must-not-leak";
    let t = OpenClawTransport::new(OpenClawConfig::new(gw.url(), Secret::new(wrong))).unwrap();
    let err = dispatch_err(&t, &envelope(dir.path(), "r1", "webster", "x")).await;
    assert!(matches!(err, TransportError::Rejected { status: 401, .. }));
    for shown in [err.to_string(), format!("{err:?}"), format!("{t:?}")] {
        assert!(!shown.contains(wrong) && !shown.contains(TOKEN), "{shown}");
    }
    check_error("401-token", &err);
    assert!(!gw.requests()[0].auth_valid);
}

#[tokio::test]
async fn hooks_disabled_and_wrong_path() {
    let gw = gateway(FakeGatewayOptions {
        hooks_enabled: false,
        ..options()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = envelope(dir.path(), "r1", "webster", "x");
    let err = dispatch_err(&transport(&gw), &env).await;
    assert!(matches!(err, TransportError::Rejected { status: 404, .. }));
    check_error("404-hooks-disabled", &err);

    let gw = gateway(options()).await;
    let t = transport_with(&gw.url(), |c| c.path = "/openclaw-hooks".to_owned());
    let err = dispatch_err(&t, &env).await;
    assert!(matches!(err, TransportError::Rejected { status: 404, .. }));
    check_error("404-wrong-path", &err);
}

#[tokio::test]
async fn body_over_the_gateways_limit_is_too_large() {
    let gw = gateway(FakeGatewayOptions {
        max_body: 64 * 1024,
        ..options()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = envelope(dir.path(), "r1", "webster", &"x".repeat(200 * 1024));
    let err = dispatch_err(&transport(&gw), &env).await;
    let TransportError::Rejected {
        status: 413,
        ref message,
    } = err
    else {
        panic!("{err:?}");
    };
    assert!(message.contains("too large"), "{message}");
    assert!(!err.is_retryable());
    check_error("413-gateway", &err);
    assert_eq!(gw.requests().len(), 1);
    assert_eq!(gw.runs_started(), 0);
}

#[test]
fn the_task_limit_is_configurable() {
    let t = transport_with("http://127.0.0.1:9", |_| {});
    assert_eq!(t.max_task_bytes(), orch_delegate::DEFAULT_MAX_TASK_BYTES);
    let t = transport_with("http://127.0.0.1:9", |c| c.max_task_bytes = 1000);
    assert_eq!(t.max_task_bytes(), 1000);
    let zero = OpenClawTransport::new(OpenClawConfig {
        max_task_bytes: 0,
        ..OpenClawConfig::new("http://127.0.0.1:9", Secret::new(TOKEN))
    });
    assert!(
        matches!(zero, Err(TransportError::Config { .. })),
        "{zero:?}"
    );
}

#[tokio::test]
async fn body_over_256_kib_is_refused_before_sending() {
    let gw = gateway(options()).await;
    let dir = tempfile::tempdir().unwrap();
    let env = envelope(dir.path(), "r1", "webster", &"x".repeat(256 * 1024));
    let err = dispatch_err(&transport(&gw), &env).await;
    let TransportError::TooLarge { size, limit } = err else {
        panic!("{err:?}");
    };
    assert_eq!(limit, 256 * 1024);
    assert!(size > limit);
    check_error("413-local", &err);
    assert!(gw.requests().is_empty());
}

/// Every scripted status: what the transport makes of it.
#[tokio::test]
async fn statuses_map_to_retryable_or_final_errors() {
    let date = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(3600))
        .unwrap();
    let http_date = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&date)
        .unwrap();
    let status = |status: u16, body: &str, retry_after: Option<&str>| FakeFailure::Status {
        status,
        body: body.to_owned(),
        retry_after: retry_after.map(str::to_owned),
    };
    let cases = [
        (
            "429",
            FakeFailure::Status429 {
                retry_after_secs: 7,
            },
            true,
        ),
        ("409", FakeFailure::Status409, true),
        ("502", FakeFailure::Status502, true),
        ("503", FakeFailure::Status503, true),
        ("504", status(504, "Gateway Timeout", None), true),
        (
            "500",
            status(500, r#"{"ok":false,"error":"boom"}"#, None),
            true,
        ),
        ("503-date", status(503, "", Some(&http_date)), true),
        (
            "503-bad-retry-after",
            status(503, "busy", Some("soon")),
            true,
        ),
        ("405", status(405, "Method Not Allowed", None), false),
        ("418", status(418, "I'm a teapot", None), false),
        ("403", status(403, "Forbidden", None), false),
        (
            "200-huge",
            status(
                200,
                &format!(
                    r#"{{"ok":true,"runId":"r","pad":"{}"}}"#,
                    "x".repeat(1 << 20)
                ),
                None,
            ),
            false,
        ),
        (
            "400-other",
            status(
                400,
                r#"{"ok":false,"error":"timeoutSeconds must be positive"}"#,
                None,
            ),
            false,
        ),
        ("200-not-ok", status(200, r#"{"ok":false}"#, None), false),
        (
            "200-html",
            status(200, "<html><body>hello</body></html>", None),
            false,
        ),
        (
            "long-body",
            status(
                500,
                &format!("{} {TOKEN} {}", "a".repeat(50), "b".repeat(300)),
                None,
            ),
            true,
        ),
    ];
    for (name, failure, retryable) in cases {
        let gw = gateway(FakeGatewayOptions {
            fail_next: vec![failure],
            ..options()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let err = dispatch_err(&transport(&gw), &envelope(dir.path(), "r1", "webster", "x")).await;
        assert_eq!(err.is_retryable(), retryable, "{name}: {err:?}");
        if name == "503-date" {
            let wait = err.retry_after().expect("an HTTP-date is understood");
            assert!(
                wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600),
                "{wait:?}"
            );
            continue;
        }
        check_error(name, &err);
        assert_eq!(gw.runs_started(), 0, "{name}");
    }
}

#[tokio::test]
async fn retry_after_a_scripted_failure_dispatches_once() {
    let gw = gateway(FakeGatewayOptions {
        fail_next: vec![
            FakeFailure::Status503,
            FakeFailure::Status429 {
                retry_after_secs: 1,
            },
        ],
        ..options()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let t = waiting(&gw);
    let env = envelope(dir.path(), "r-retry", "webster", "x");
    assert!(t.dispatch(&env).await.unwrap_err().is_retryable());
    assert!(t.dispatch(&env).await.unwrap_err().is_retryable());
    let ack = t.dispatch(&env).await.unwrap();
    assert!(ack.completion.is_some_and(|c| c.ok));
    assert_eq!(gw.runs_started(), 1);
    assert_eq!(gw.requests().len(), 3);
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    // Bound but not listening: connecting is refused, and no other test
    // (or test process) can take the port meanwhile.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    let t = transport_with(&format!("http://127.0.0.1:{port}"), |_| {});
    let dir = tempfile::tempdir().unwrap();
    let err = dispatch_err(&t, &envelope(dir.path(), "r1", "webster", "x")).await;
    assert!(matches!(err, TransportError::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    check_error("connect-refused", &err);
    drop(socket);
}

#[tokio::test]
async fn dropped_connection_is_retryable_and_starts_nothing() {
    let gw = gateway(FakeGatewayOptions {
        fail_next: vec![FakeFailure::DropConnection],
        ..options()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let t = transport(&gw);
    let env = envelope(dir.path(), "r-drop", "webster", "x");
    let err = dispatch_err(&t, &env).await;
    assert!(matches!(err, TransportError::Connect { .. }), "{err:?}");
    check_error("connection-dropped", &err);
    assert_eq!(gw.runs_started(), 0);
    t.dispatch(&env).await.unwrap();
    assert_eq!(gw.runs_started(), 1);
}

#[tokio::test]
async fn lost_response_is_replayed_not_run_twice() {
    for wait in [false, true] {
        let gw = gateway(FakeGatewayOptions {
            fail_next: vec![FakeFailure::DropAfterStart],
            ..options()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let t = transport_with(&gw.url(), |c| c.wait_for_completion = wait);
        let env = envelope(dir.path(), "r-lost", "webster", "x");
        let err = dispatch_err(&t, &env).await;
        assert!(err.is_retryable(), "{err:?}");
        let first = t.dispatch(&env).await.unwrap();
        let again = t.dispatch(&env).await.unwrap();
        assert_eq!(first, again, "a replay answers the same");
        assert_eq!(first.completion.is_some(), wait);
        assert_eq!(gw.runs_started(), 1, "wait: {wait}");
        assert_eq!(gw.requests().len(), 3);
        if wait {
            assert!(handoff_path(dir.path(), "r-lost").exists());
        }
    }
}

#[tokio::test]
async fn wait_for_completion_returns_after_the_handoff() {
    let gw = gateway(options()).await;
    let dir = tempfile::tempdir().unwrap();
    let env = envelope(
        dir.path(),
        "r-wait",
        "webster",
        "Write it [fake:partial] [fake:low]",
    );
    let ack = waiting(&gw).dispatch(&env).await.unwrap();
    let completion = ack.completion.clone().expect("a completion");
    assert!(completion.ok);
    let run = ack.remote_run_id.clone().unwrap();
    assert_eq!(completion.detail, format!("openclaw run {run} ended: ok"));

    let written = std::fs::read(handoff_path(dir.path(), "r-wait")).expect("handoff written");
    let handoff = parse_handoff(
        &written,
        &Expect {
            run_id: Some(&env.run_id),
            agent: Some("webster"),
        },
    )
    .unwrap();
    assert_eq!(handoff.status, Status::Partial);
    assert_eq!(
        handoff.result,
        format!(
            "Fake gateway answer to: {}",
            env.message.lines().next().unwrap()
        )
    );
    assert_eq!(gw.runs_finished(), 1);
}

#[tokio::test]
async fn silent_and_failing_runs_end_without_a_handoff() {
    let gw = gateway(options()).await;
    let dir = tempfile::tempdir().unwrap();
    let t = waiting(&gw);
    let check = async |run: &str, marker: &str| -> Ack {
        let ack = t
            .dispatch(&envelope(dir.path(), run, "webster", marker))
            .await
            .unwrap();
        assert!(!handoff_path(dir.path(), run).exists(), "{marker}");
        ack
    };
    let silent = check("r-silent", "[fake:silent]").await;
    assert!(silent.completion.is_some_and(|c| c.ok));
    let failed = check("r-error", "[fake:error]").await;
    let completion = failed.completion.unwrap();
    assert!(!completion.ok);
    let run = failed.remote_run_id.unwrap();
    assert_eq!(
        completion.detail,
        format!("openclaw run {run} ended: error: the fake agent failed ([fake:error])")
    );
}

#[tokio::test]
async fn run_outliving_its_timeout_ends_with_timeout() {
    let gw = gateway(FakeGatewayOptions {
        answer_delay: Duration::from_secs(3600),
        ..options()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = envelope(dir.path(), "r-slow", "webster", "slow");
    env.timeout = Duration::from_millis(10);
    let ack = waiting(&gw).dispatch(&env).await.unwrap();
    let completion = ack.completion.unwrap();
    assert!(!completion.ok);
    assert!(
        completion.detail.ends_with("ended: timeout: run timed out"),
        "{}",
        completion.detail
    );
    assert!(!handoff_path(dir.path(), "r-slow").exists());
}

#[tokio::test]
async fn malformed_once_is_valid_on_the_reask() {
    let gw = gateway(options()).await;
    let dir = tempfile::tempdir().unwrap();
    let t = waiting(&gw);
    let mut env = envelope(dir.path(), "r-once", "webster", "[fake:malformed-once]");
    let path = handoff_path(dir.path(), "r-once");
    t.dispatch(&env).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"{not json");
    env.attempt = 2;
    t.dispatch(&env).await.unwrap();
    let handoff = parse_handoff(&std::fs::read(&path).unwrap(), &Expect::default()).unwrap();
    assert_eq!(handoff.status, Status::Complete);
    assert_eq!(gw.runs_started(), 2);
}

/// The fake's contract as the rig README records it, seen with a plain
/// HTTP client.
#[tokio::test]
async fn fake_follows_the_documented_contract() {
    let gw = gateway(options()).await;
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/hooks/agent", gw.url());
    let message = format!("write {}", handoff_path(dir.path(), "r-raw").display());
    let post = |body: Value| client.post(&url).json(&body);
    let answer = async |rb: reqwest::RequestBuilder| {
        let r = rb.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };

    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "get",
            client.get(&url).bearer_auth(TOKEN),
            405,
            "Method Not Allowed",
        ),
        (
            "no token",
            post(json!({"message": "m"})),
            401,
            "Unauthorized",
        ),
        (
            "wrong token",
            post(json!({"message": "m"})).bearer_auth("nope"),
            401,
            "Unauthorized",
        ),
        (
            "no message",
            post(json!({"agentId": "webster"})).bearer_auth(TOKEN),
            400,
            r#"{"ok":false,"error":"message required"}"#,
        ),
        (
            "unknown agent",
            post(json!({"message": "m", "agentId": "nobody"})).bearer_auth(TOKEN),
            400,
            r#"{"ok":false,"error":"unknown agentId \"nobody\""}"#,
        ),
        (
            "not json",
            client.post(&url).bearer_auth(TOKEN).body("{"),
            400,
            r#"{"ok":false,"error":"invalid JSON"}"#,
        ),
        (
            "other path",
            client
                .post(format!("{}/hooks/other", gw.url()))
                .bearer_auth(TOKEN)
                .json(&json!({"message": "m"})),
            404,
            "Not Found",
        ),
    ];
    for (name, request, status, body) in cases {
        assert_eq!(answer(request).await, (status, body.to_owned()), "{name}");
    }
    assert_eq!(gw.runs_started(), 0);

    // x-openclaw-token works as well as a bearer token; no agentId runs the
    // default (first) agent; a repeated key replays.
    let admit = || {
        post(json!({"message": message, "waitForCompletion": true}))
            .header("x-openclaw-token", TOKEN)
            .header("Idempotency-Key", "k1")
    };
    let (status, first) = answer(admit()).await;
    assert_eq!(status, 200, "{first}");
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["ok"], true);
    assert_eq!(first["completion"], json!({"status": "ok"}));
    let (_, again) = answer(admit()).await;
    assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), first);
    assert_eq!(gw.runs_started(), 1);
    let handoff = std::fs::read(handoff_path(dir.path(), "r-raw")).unwrap();
    assert_eq!(
        parse_handoff(&handoff, &Expect::default()).unwrap().agent,
        "webster"
    );
    assert!(
        gw.requests()
            .iter()
            .all(|r| r.header("x-openclaw-token").is_none())
    );

    gw.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_background_runs() {
    let gw = gateway(FakeGatewayOptions {
        answer_delay: Duration::from_secs(3600),
        ..options()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    transport(&gw)
        .dispatch(&envelope(dir.path(), "r-bg", "webster", "x"))
        .await
        .unwrap();
    assert_eq!((gw.runs_started(), gw.runs_finished()), (1, 0));
    // Returns only once the hour-long run was stopped (and the keep-alive
    // connection of the transport above was cut).
    tokio::time::timeout(Duration::from_secs(30), gw.shutdown())
        .await
        .expect("shutdown does not wait for runs");
    assert!(!handoff_path(dir.path(), "r-bg").exists());
}
