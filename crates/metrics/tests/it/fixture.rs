//! The fixed fixture store (`tests/fixture/store`): snapshots of the three
//! renderers, and the Prometheus output through a real parser.
//!
//! The store holds one of everything: complete, partial (after a re-ask),
//! blocked, timed out (with a transport retry and a late handoff), a
//! sub-delegation, a transport failure, a final invalid handoff, a
//! cancellation, a pending run, a validation line, a handoff line whose file
//! is gone, a hand-submitted handoff (by `walk-in`, whom the Prometheus
//! parser test renames to a name that needs escaping: a handoff's `agent`
//! must be an id, but ledger lines are free text),
//! a foreign JSON file, two ACL denials, a torn last ledger line, and four
//! workflow runs.

use std::collections::HashMap;
use std::process::Command;

use openmetrics_parser::{PrometheusType, PrometheusValue};
use orch_metrics::{Report, TextOptions, render_json, render_prometheus, render_text};

use crate::{fixture, options, rescan, scan, stable};

fn report() -> Report {
    let dir = fixture();
    stable(scan(dir.path(), &options()))
}

#[test]
fn text() {
    let text = render_text(&report(), &TextOptions::default());
    assert!(!text.contains('\x1b'));
    insta::assert_snapshot!(text);
}

#[test]
fn text_in_colour() {
    let colour = render_text(
        &report(),
        &TextOptions {
            colour: true,
            ..TextOptions::default()
        },
    );
    assert!(colour.contains("\x1b[1mAgents\x1b[0m"));
    // The same text once the escapes are gone.
    let plain = colour
        .replace("\x1b[1m", "")
        .replace("\x1b[2m", "")
        .replace("\x1b[33m", "")
        .replace("\x1b[0m", "");
    assert_eq!(plain, render_text(&report(), &TextOptions::default()));
}

#[test]
fn json() {
    let report = report();
    let json = render_json(&report);
    insta::assert_snapshot!(json);
    // It reads back into the same report.
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn prom() {
    insta::assert_snapshot!(render_prometheus(&report()));
}

#[test]
fn rescan_agrees_on_the_fixture() {
    let dir = fixture();
    let fast = scan(dir.path(), &options());
    let mut full = scan(dir.path(), &rescan());
    assert_eq!(full.source.files_read, 9);
    full.source = fast.source.clone();
    assert_eq!(full, fast);
}

/// Parses with openmetrics-parser (a grammar for the text format that also
/// checks histogram structure) and reads values back, escaped labels
/// included; `promtool check metrics` too when it is installed.
#[test]
fn prom_parses_with_a_real_parser() {
    let mut report = report();
    // Ledger lines may name any agent; such a name must survive escaping.
    for agent in &mut report.agents {
        if agent.agent == "walk-in" {
            agent.agent = "we\"ird\\agent".to_owned();
        }
    }
    let text = render_prometheus(&report);
    let parsed = openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let families = &parsed.families;

    // Label values in the order of the family's label names.
    let ordered = |family: &str, labels: &[(&str, &str)]| -> Vec<String> {
        let f = families.get(family).unwrap_or_else(|| panic!("{family}"));
        assert_eq!(f.get_label_names().len(), labels.len(), "{family}");
        f.get_label_names()
            .iter()
            .map(|n| {
                let (_, v) = labels.iter().find(|(k, _)| k == n).unwrap();
                v.to_string()
            })
            .collect()
    };
    let value = |family: &str, labels: &[(&str, &str)]| -> f64 {
        let f = &families[family];
        let labels = ordered(family, labels);
        let sample = f
            .get_sample_by_label_values(&labels)
            .unwrap_or_else(|| panic!("{family}{labels:?}"));
        match &sample.value {
            PrometheusValue::Counter(c) => c.value.as_f64(),
            PrometheusValue::Gauge(n) => n.as_f64(),
            other => panic!("{other:?}"),
        }
    };
    let delegations = |agent, status| {
        value(
            "orch_delegations_total",
            &[("agent", agent), ("status", status)],
        )
    };
    assert_eq!(delegations("webster", "complete"), 3.0);
    assert_eq!(delegations("nx-expert", "timed-out"), 1.0);
    // An agent name with a quote and a backslash survives the round trip.
    assert_eq!(delegations("we\"ird\\agent", "complete"), 1.0);
    assert_eq!(
        value(
            "orch_acl_denials_total",
            &[("caller", "tech-lead"), ("agent", "auditor")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "orch_workflow_runs_total",
            &[("workflow", "quick-research"), ("status", "failed")]
        ),
        1.0
    );
    assert_eq!(value("orch_store_unreadable_files", &[]), 2.0);
    assert_eq!(value("orch_ledger_bad_lines", &[]), 1.0);

    let histogram = |family: &str, labels: &[(&str, &str)]| {
        let f = &families[family];
        assert_eq!(f.family_type, PrometheusType::Histogram);
        let labels = ordered(family, labels);
        match &f.get_sample_by_label_values(&labels).unwrap().value {
            PrometheusValue::Histogram(h) => h.clone(),
            other => panic!("{other:?}"),
        }
    };
    let webster = histogram("orch_delegation_latency_seconds", &[("agent", "webster")]);
    assert_eq!(webster.count, Some(4));
    assert_eq!(webster.sum.unwrap().as_f64(), 42.0 + 95.0 + 30.0 + 61.0);
    let buckets: HashMap<String, f64> = webster
        .buckets
        .iter()
        .map(|b| (b.upper_bound.to_string(), b.count.as_f64()))
        .collect();
    assert_eq!(buckets["30"], 1.0);
    assert_eq!(buckets["60"], 2.0);
    assert_eq!(buckets["120"], 4.0);
    assert_eq!(buckets["inf"], 4.0);
    let runs = histogram(
        "orch_workflow_duration_seconds",
        &[("workflow", "quick-research")],
    );
    assert_eq!(runs.count, Some(2));
    assert_eq!(runs.sum.unwrap().as_f64(), 210.0 + 1500.0);

    // Every family has HELP and a type.
    for (name, f) in families {
        assert!(!f.help.is_empty(), "{name}");
        assert_ne!(f.family_type, PrometheusType::Unknown, "{name}");
    }
    promtool_check(&text);
}

/// `promtool check metrics`, when promtool is installed (it is not needed).
pub(crate) fn promtool_check(text: &str) {
    use std::io::Write;
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
