//! `orch config show|init` and config errors through the binary.

use crate::{Orch, settings};

#[test]
fn show_embedded_default() {
    let orch = Orch::new();
    let run = orch.ok(&["config", "show"]);
    settings().bind(|| insta::assert_snapshot!(run.transcript(&orch)));
}

#[test]
fn init_writes_an_example_that_loads_and_never_overwrites() {
    let orch = Orch::new();
    let run = orch.ok(&["config", "init"]);
    assert!(orch.path("orch.yaml").is_file());
    let again = orch.run(&["config", "init"], None);
    assert_eq!(again.code, 2, "{}", again.transcript(&orch));
    // The example names a token variable that is not set here: show says so
    // and never prints a value.
    let show = orch.ok(&["config", "show"]);
    assert!(
        show.stdout.contains("$OPENCLAW_HOOKS_TOKEN is NOT set"),
        "{}",
        show.stdout
    );
    settings().bind(|| {
        insta::assert_snapshot!(format!(
            "{}{}",
            run.transcript(&orch),
            again.transcript(&orch)
        ))
    });
}

#[test]
fn a_token_is_never_printed() {
    let orch = Orch::new();
    orch.write_config(
        "
transports:
  gateway: { kind: openclaw, url: 'http://127.0.0.1:9', token_env: HOOKS_TOKEN }
agents:
  webster: { transport: gateway }
  manager: { transport: { kind: sim } }
",
    );
    let secret = "s3cr3t-hook-token-value";
    for args in [
        &["config", "show"][..],
        &["config", "show", "--json"],
        &[
            "delegate",
            "webster",
            "x",
            "--caller",
            "manager",
            "--timeout",
            "2s",
            "-vv",
        ],
    ] {
        let out = orch
            .command()
            .env("HOOKS_TOKEN", secret)
            .args(args)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(secret), "{args:?} printed the token:\n{all}");
    }
}

#[test]
fn config_errors_name_file_line_and_field() {
    let orch = Orch::new();
    orch.write_config("agents:\n  webster: { transport: sim, max_concurent: 2 }\n");
    let run = orch.run(&["delegate", "webster", "x", "--caller", "manager"], None);
    assert_eq!(run.code, 2, "{}", run.transcript(&orch));
    let unset = Orch::new();
    unset.write_config(
        "
transports:
  gateway: { kind: openclaw, url: 'http://127.0.0.1:9', token_env: ORCH_TEST_UNSET_TOKEN }
agents:
  webster: { transport: gateway }
  manager: { transport: { kind: sim } }
",
    );
    let missing = unset.run(&["delegate", "webster", "x", "--caller", "manager"], None);
    assert_eq!(missing.code, 2, "{}", missing.transcript(&unset));
    settings().bind(|| {
        insta::assert_snapshot!(format!(
            "{}\n{}",
            run.transcript(&orch),
            missing.transcript(&unset)
        ))
    });
}

/// Credentials written into a transport URL are never shown: not by
/// `config show` (YAML or JSON), not by `registry show`, not by the
/// delegation the transport refuses, whose message says what is wrong once.
#[test]
fn credentials_in_a_url_are_never_shown() {
    let orch = Orch::new();
    orch.write_config(
        "
transports:
  gateway: { kind: openclaw, url: 'http://ops:hunter2@127.0.0.1:9', token_env: HOOKS_TOKEN }
agents:
  webster: { transport: gateway }
  auditor: { transport: { kind: openclaw, url: 'https://tok3n@gw.example', token_env: HOOKS_TOKEN } }
  manager: { transport: { kind: sim } }
",
    );
    let env = [("HOOKS_TOKEN", "a-hook-token")];
    let runs: Vec<crate::Run> = [
        &["config", "show"][..],
        &["config", "show", "--json"],
        &["registry", "show", "auditor", "--json"],
        &["registry", "list", "--json"],
        &["delegate", "webster", "x", "--caller", "manager", "-vv"],
    ]
    .iter()
    .map(|args| orch.run_env(args, None, &env))
    .collect();
    for run in &runs {
        for secret in ["hunter2", "tok3n", "ops:"] {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "{secret} shown:\n{}",
                run.transcript(&orch)
            );
        }
    }
    assert!(
        runs[0]
            .stdout
            .contains("url: http://[redacted]@127.0.0.1:9"),
        "{}",
        runs[0].stdout
    );
    let refused = &runs[4];
    assert_eq!(refused.code, 2, "{}", refused.transcript(&orch));
    assert_eq!(
        refused.stderr.matches("transport configuration").count(),
        1,
        "{}",
        refused.stderr
    );
    settings().bind(|| {
        insta::assert_snapshot!(format!(
            "{}\n{}",
            runs[0].transcript(&orch),
            refused
                .transcript(&orch)
                .lines()
                .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
                .collect::<Vec<_>>()
                .join("\n")
        ))
    });
}
