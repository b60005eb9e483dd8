//! `orch metrics prom`: the Prometheus text exposition format (0.0.4).
//!
//! Every family has `# HELP` and `# TYPE`; label values escape `\`, `"`
//! and newlines; histograms have cumulative `_bucket{le=…}` samples ending
//! with `+Inf`, then `_sum` and `_count`, in seconds. Counters count what
//! the report's window holds: scrape a report without `--since` (e.g.
//! through node_exporter's textfile collector) for counters that only go
//! up.

use std::fmt::Write as _;

use crate::report::{Distribution, Report};

/// Renders `report` in the Prometheus text exposition format.
pub fn render_prometheus(report: &Report) -> String {
    let mut w = Writer::default();

    w.family(
        "orch_delegations_total",
        "Delegations by target agent and outcome: complete, partial, blocked, failed (the handoff's status), timed-out, invalid, error, cancelled, pending.",
        "counter",
    );
    for a in &report.agents {
        for (status, n) in a.outcomes.named() {
            w.sample(
                "orch_delegations_total",
                &[("agent", &a.agent), ("status", status)],
                n,
            );
        }
    }

    w.family(
        "orch_handoffs_by_confidence_total",
        "Handoffs by target agent and stated confidence (unstated: none given).",
        "counter",
    );
    for a in &report.agents {
        for (confidence, n) in a.confidence.named() {
            w.sample(
                "orch_handoffs_by_confidence_total",
                &[("agent", &a.agent), ("confidence", confidence)],
                n,
            );
        }
    }

    w.family(
        "orch_delegation_latency_seconds",
        "Time from dispatch to a valid handoff, by target agent.",
        "histogram",
    );
    for a in &report.agents {
        w.histogram(
            "orch_delegation_latency_seconds",
            &[("agent", &a.agent)],
            &a.latency,
        );
    }

    for (name, help, value) in [
        (
            "orch_delegation_reasks_total",
            "Re-asks after an invalid handoff or a run that ended without one, by target agent.",
            (|a: &crate::AgentStats| a.reasks) as fn(&crate::AgentStats) -> u64,
        ),
        (
            "orch_dispatch_retries_total",
            "Transport retries of a dispatch, by target agent.",
            |a| a.dispatch_retries,
        ),
        (
            "orch_sub_delegations_total",
            "Delegations made by a delegated agent (handoff under sub/), by target agent.",
            |a| a.sub_delegations,
        ),
        (
            "orch_late_handoffs_total",
            "Handoffs that landed after their delegation had ended otherwise, by target agent.",
            |a| a.late_handoffs,
        ),
    ] {
        w.family(name, help, "counter");
        for a in &report.agents {
            w.sample(name, &[("agent", &a.agent)], value(a));
        }
    }

    w.family(
        "orch_caller_delegations_total",
        "Delegations by caller and target agent (caller \"\": a handoff no ledger line accounts for).",
        "counter",
    );
    for c in &report.callers {
        let caller = c.caller.as_deref().unwrap_or("");
        for (agent, n) in &c.agents {
            w.sample(
                "orch_caller_delegations_total",
                &[("caller", caller), ("agent", agent)],
                *n,
            );
        }
    }

    w.family(
        "orch_acl_denials_total",
        "Delegations the ACL refused, by caller and target agent.",
        "counter",
    );
    for c in &report.callers {
        let caller = c.caller.as_deref().unwrap_or("");
        for (agent, n) in &c.denied {
            w.sample(
                "orch_acl_denials_total",
                &[("caller", caller), ("agent", agent)],
                *n,
            );
        }
    }

    w.family(
        "orch_workflow_runs_total",
        "Workflow runs by workflow and status.",
        "counter",
    );
    for wf in &report.workflows {
        for (status, n) in wf.statuses.named() {
            w.sample(
                "orch_workflow_runs_total",
                &[("workflow", &wf.workflow), ("status", status)],
                n,
            );
        }
    }

    w.family(
        "orch_workflow_child_runs_total",
        "Workflow runs that are child runs (started by another run's `uses` step), by workflow; also counted in orch_workflow_runs_total.",
        "counter",
    );
    for wf in &report.workflows {
        w.sample(
            "orch_workflow_child_runs_total",
            &[("workflow", &wf.workflow)],
            wf.child_runs,
        );
    }

    w.family(
        "orch_workflow_duration_seconds",
        "Duration of finished workflow runs, by workflow.",
        "histogram",
    );
    for wf in &report.workflows {
        w.histogram(
            "orch_workflow_duration_seconds",
            &[("workflow", &wf.workflow)],
            &wf.duration,
        );
    }

    w.family(
        "orch_workflow_step_failures_total",
        "Workflow steps that failed or were rejected, and step attempts that timed out (kind: failed, rejected, timed-out).",
        "counter",
    );
    for wf in &report.workflows {
        for s in &wf.failing_steps {
            for (kind, n) in [
                ("failed", s.failed),
                ("rejected", s.rejected),
                ("timed-out", s.timed_out),
            ] {
                w.sample(
                    "orch_workflow_step_failures_total",
                    &[
                        ("workflow", &wf.workflow),
                        ("step", &s.step),
                        ("kind", kind),
                    ],
                    n,
                );
            }
        }
    }

    w.family(
        "orch_workflow_step_iterations_total",
        "Iterations of workflow `repeat` steps (one per run when the first answer was good enough).",
        "counter",
    );
    for wf in &report.workflows {
        for s in &wf.repeated_steps {
            w.sample(
                "orch_workflow_step_iterations_total",
                &[("workflow", &wf.workflow), ("step", &s.step)],
                s.iterations,
            );
        }
    }

    w.family(
        "orch_workflow_step_instances_total",
        "Instances of workflow `for_each` steps by outcome: completed, failed, cancelled (no longer needed by the step's join; not a failure).",
        "counter",
    );
    for wf in &report.workflows {
        for s in &wf.fanned_steps {
            for (outcome, n) in [
                ("completed", s.completed),
                ("failed", s.failed),
                ("cancelled", s.cancelled),
            ] {
                w.sample(
                    "orch_workflow_step_instances_total",
                    &[
                        ("workflow", &wf.workflow),
                        ("step", &s.step),
                        ("outcome", outcome),
                    ],
                    n,
                );
            }
        }
    }

    w.family(
        "orch_workflow_sub_workflow_steps_total",
        "Runs of workflow `uses` steps (each a child run of another workflow) by outcome: completed, failed (failed or rejected), other (not ended).",
        "counter",
    );
    for wf in &report.workflows {
        for s in &wf.sub_workflow_steps {
            let other = s.runs.saturating_sub(s.completed + s.failed);
            for (outcome, n) in [
                ("completed", s.completed),
                ("failed", s.failed),
                ("other", other),
            ] {
                w.sample(
                    "orch_workflow_sub_workflow_steps_total",
                    &[
                        ("workflow", &wf.workflow),
                        ("step", &s.step),
                        ("outcome", outcome),
                    ],
                    n,
                );
            }
        }
    }

    let p = &report.problems;
    for (name, help, n) in [
        (
            "orch_store_unreadable_files",
            "Files in the store that could not be read (corrupt, partial, foreign, symlinks, too large).",
            p.unreadable_files,
        ),
        (
            "orch_ledger_bad_lines",
            "Ledger lines that do not parse.",
            p.ledger_bad_lines,
        ),
        (
            "orch_store_missing_handoff_files",
            "Handoffs the ledger records whose file is no longer in the store.",
            p.missing_handoff_files,
        ),
    ] {
        w.family(name, help, "gauge");
        w.sample(name, &[], n);
    }
    w.out
}

#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        labels_into(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], d: &Distribution) {
        let bucket = format!("{name}_bucket");
        for b in &d.buckets {
            self.out.push_str(&bucket);
            labels_into(&mut self.out, labels, Some(&seconds(b.le_ms)));
            let _ = writeln!(self.out, " {}", b.count);
        }
        self.out.push_str(&bucket);
        labels_into(&mut self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", d.count);
        let _ = write!(self.out, "{name}_sum");
        labels_into(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", seconds(d.sum_ms));
        let _ = write!(self.out, "{name}_count");
        labels_into(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", d.count);
    }
}

fn labels_into(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_label_into(out, v);
        out.push('"');
    }
    out.push('}');
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes backslash and line feed.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Milliseconds as seconds, exactly: `1500` → `1.5`, `100` → `0.1`.
fn seconds(ms: u64) -> String {
    let (s, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        return s.to_string();
    }
    let frac = format!("{frac:03}");
    format!("{s}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        labels_into(&mut s, &[("agent", "a\\b\"c\nd")], Some("+Inf"));
        assert_eq!(s, r#"{agent="a\\b\"c\nd",le="+Inf"}"#);
        assert_eq!(escape_help("x\\y\nz"), r"x\\y\nz");
    }

    #[test]
    fn milliseconds_print_as_exact_seconds() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(100), "0.1");
        assert_eq!(seconds(2_500), "2.5");
        assert_eq!(seconds(1_001), "1.001");
        assert_eq!(seconds(3_600_000), "3600");
    }
}
