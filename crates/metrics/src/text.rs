//! `orch metrics text`: aligned tables a person reads at a glance.

use std::fmt::Write as _;

use orch_support::text::one_line;

use crate::report::{Outcomes, Report};

/// How to render text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextOptions {
    /// ANSI colour (bold headings, problems in yellow). The caller decides:
    /// on a terminal, and not when `NO_COLOR` is set.
    pub colour: bool,
    /// How many failing steps to show (the worst, over all workflows).
    pub top_steps: usize,
}

impl Default for TextOptions {
    fn default() -> Self {
        Self {
            colour: false,
            top_steps: 10,
        }
    }
}

struct Style {
    on: bool,
}

impl Style {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
    fn warn(&self, s: &str) -> String {
        self.wrap("33", s)
    }
}

/// Renders `report` as text: a summary, then tables of agents (outcomes;
/// latency and quality), callers, workflows (their child runs; their
/// failing, `repeat`, `for_each` and `uses` steps), then what could not be
/// read.
pub fn render_text(report: &Report, options: &TextOptions) -> String {
    let st = Style { on: options.colour };
    let mut out = String::new();
    let t = &report.totals;
    let window = match &report.window.since {
        Some(since) => format!("since {since}"),
        None => "all time".to_owned(),
    };
    let _ = writeln!(
        out,
        "{} · {} · {} (until {}){}",
        st.bold("orch metrics"),
        one_line(&report.source.store),
        window,
        report.window.until,
        match report.source.mode {
            crate::Mode::Ledger => "",
            crate::Mode::Rescan => " · rescan",
        }
    );
    let mut filters = Vec::new();
    if !report.filters.agents.is_empty() {
        filters.push(format!("agent {}", report.filters.agents.join(", ")));
    }
    if !report.filters.workflows.is_empty() {
        filters.push(format!("workflow {}", report.filters.workflows.join(", ")));
    }
    if !filters.is_empty() {
        let _ = writeln!(out, "filtered to {}", one_line(&filters.join("; ")));
    }
    out.push('\n');

    // Summary.
    if t.delegations == 0 {
        out.push_str("no delegations");
    } else {
        let _ = write!(
            out,
            "{}: {}",
            plural(t.delegations, "delegation"),
            outcome_list(&t.outcomes)
        );
    }
    if t.acl_denials > 0 {
        let _ = write!(out, " · {}", plural(t.acl_denials, "ACL denial"));
    }
    out.push('\n');
    if t.latency.count > 0 {
        let _ = writeln!(
            out,
            "dispatch → handoff: p50 {} · p90 {} · p99 {} · max {} (over {})",
            dur(t.latency.p50_ms),
            dur(t.latency.p90_ms),
            dur(t.latency.p99_ms),
            dur(t.latency.max_ms),
            plural(t.latency.count, "handoff")
        );
    }
    let extras: Vec<String> = [
        (t.reasks, "re-ask"),
        (t.dispatch_retries, "dispatch retry"),
        (t.sub_delegations, "sub-delegation"),
        (t.late_handoffs, "late handoff"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| plural(n, what))
    .collect();
    if !extras.is_empty() {
        let _ = writeln!(out, "{}", extras.join(" · "));
    }

    if !report.agents.is_empty() {
        let mut outcomes = Table::new(&[
            ("agent", false),
            ("delegations", true),
            ("complete", true),
            ("partial", true),
            ("blocked", true),
            ("failed", true),
            ("timed out", true),
            ("other", true),
        ]);
        let mut quality = Table::new(&[
            ("agent", false),
            ("handoffs", true),
            ("p50", true),
            ("p90", true),
            ("p99", true),
            ("max", true),
            ("high", true),
            ("medium", true),
            ("low", true),
            ("unstated", true),
            ("re-asks", true),
            ("denied", true),
            ("sub", true),
        ]);
        for a in &report.agents {
            let o = &a.outcomes;
            outcomes.row(vec![
                a.agent.clone(),
                a.delegations.to_string(),
                o.complete.to_string(),
                o.partial.to_string(),
                o.blocked.to_string(),
                o.failed.to_string(),
                o.timed_out.to_string(),
                other(o).to_string(),
            ]);
            let c = &a.confidence;
            let l = &a.latency;
            quality.row(vec![
                a.agent.clone(),
                o.handoffs().to_string(),
                dur(l.p50_ms),
                dur(l.p90_ms),
                dur(l.p99_ms),
                dur(l.max_ms),
                c.high.to_string(),
                c.medium.to_string(),
                c.low.to_string(),
                c.unstated.to_string(),
                a.reasks.to_string(),
                a.acl_denials.to_string(),
                a.sub_delegations.to_string(),
            ]);
        }
        section(&mut out, &st, "Agents", &outcomes);
        section(
            &mut out,
            &st,
            "Latency (dispatch → handoff) and confidence",
            &quality,
        );
        out.push_str(&st.dim(
            "other: invalid handoff, transport error, cancelled or still pending (see `orch metrics json`)",
        ));
        out.push('\n');
    }

    if !report.callers.is_empty() {
        let mut callers = Table::new(&[
            ("caller", false),
            ("delegations", true),
            ("sub", true),
            ("denied", true),
            ("to", false),
        ]);
        for c in &report.callers {
            let mut to: Vec<(&String, &u64)> = c.agents.iter().collect();
            to.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let mut targets: Vec<String> = to.iter().map(|(a, n)| format!("{a} {n}")).collect();
            if !c.denied.is_empty() {
                let denied: Vec<String> =
                    c.denied.iter().map(|(a, n)| format!("{a} {n}")).collect();
                targets.push(format!("(denied: {})", denied.join(", ")));
            }
            callers.row(vec![
                c.caller.clone().unwrap_or_else(|| "(unknown)".to_owned()),
                c.delegations.to_string(),
                c.sub_delegations.to_string(),
                c.acl_denials.to_string(),
                targets.join(", "),
            ]);
        }
        section(&mut out, &st, "Callers", &callers);
    }

    if !report.workflows.is_empty() {
        // A `child` column only when some runs are child runs.
        let with_child = report.workflows.iter().any(|w| w.child_runs > 0);
        let mut columns = vec![("workflow", false), ("runs", true)];
        if with_child {
            columns.push(("child", true));
        }
        columns.extend([
            ("completed", true),
            ("with failures", true),
            ("failed", true),
            ("other", true),
            ("p50", true),
            ("p90", true),
            ("max", true),
        ]);
        let mut runs = Table::new(&columns);
        let mut steps = Table::new(&[
            ("workflow", false),
            ("step", false),
            ("agent", false),
            ("runs", true),
            ("failed", true),
            ("rejected", true),
            ("timed out", true),
            ("retries", true),
        ]);
        for w in &report.workflows {
            let s = &w.statuses;
            let mut row = vec![w.workflow.clone(), w.runs.to_string()];
            if with_child {
                row.push(w.child_runs.to_string());
            }
            row.extend([
                s.completed.to_string(),
                s.completed_with_failures.to_string(),
                s.failed.to_string(),
                (s.running + s.awaiting_approval + s.cancelled + s.other).to_string(),
                dur(w.duration.p50_ms),
                dur(w.duration.p90_ms),
                dur(w.duration.max_ms),
            ]);
            runs.row(row);
        }
        // The worst steps over all workflows (each list is sorted already).
        let mut failing: Vec<(&str, &crate::StepStats)> = report
            .workflows
            .iter()
            .flat_map(|w| {
                w.failing_steps
                    .iter()
                    .map(move |s| (w.workflow.as_str(), s))
            })
            .collect();
        failing.sort_by_key(|(_, s)| std::cmp::Reverse(s.failed + s.rejected + s.timed_out));
        for (workflow, step) in failing.into_iter().take(options.top_steps) {
            steps.row(vec![
                workflow.to_owned(),
                step.step.clone(),
                step.agents.join(", "),
                step.runs.to_string(),
                step.failed.to_string(),
                step.rejected.to_string(),
                step.timed_out.to_string(),
                step.retries.to_string(),
            ]);
        }
        section(&mut out, &st, "Workflows", &runs);
        out.push_str(
            &st.dim("other: running, awaiting approval or cancelled; durations of finished runs"),
        );
        out.push('\n');
        if with_child {
            out.push_str(
                &st.dim("child: runs started by another run's `uses` step (also counted in runs)"),
            );
            out.push('\n');
        }
        if !steps.rows.is_empty() {
            section(&mut out, &st, "Steps that fail or time out most", &steps);
        }
        let mut repeats = Table::new(&[
            ("workflow", false),
            ("step", false),
            ("runs", true),
            ("iterations", true),
            ("per run", true),
        ]);
        for w in &report.workflows {
            for r in &w.repeated_steps {
                repeats.row(vec![
                    w.workflow.clone(),
                    r.step.clone(),
                    r.runs.to_string(),
                    r.iterations.to_string(),
                    format!("{:.1}", r.iterations as f64 / r.runs.max(1) as f64),
                ]);
            }
        }
        if !repeats.rows.is_empty() {
            section(
                &mut out,
                &st,
                "Repeat steps (asked until good enough)",
                &repeats,
            );
        }
        let mut fans = Table::new(&[
            ("workflow", false),
            ("step", false),
            ("runs", true),
            ("instances", true),
            ("completed", true),
            ("failed", true),
            ("cancelled", true),
        ]);
        for w in &report.workflows {
            for f in &w.fanned_steps {
                fans.row(vec![
                    w.workflow.clone(),
                    f.step.clone(),
                    f.runs.to_string(),
                    f.instances.to_string(),
                    f.completed.to_string(),
                    f.failed.to_string(),
                    f.cancelled.to_string(),
                ]);
            }
        }
        if !fans.rows.is_empty() {
            section(
                &mut out,
                &st,
                "Fanned-out steps (one instance per item)",
                &fans,
            );
            out.push_str(&st.dim(
                "cancelled: no longer needed once the step's join was met (not a failure); the rest had not ended",
            ));
            out.push('\n');
        }
        let mut subs = Table::new(&[
            ("workflow", false),
            ("step", false),
            ("runs", true),
            ("completed", true),
            ("failed", true),
        ]);
        for w in &report.workflows {
            for u in &w.sub_workflow_steps {
                subs.row(vec![
                    w.workflow.clone(),
                    u.step.clone(),
                    u.runs.to_string(),
                    u.completed.to_string(),
                    u.failed.to_string(),
                ]);
            }
        }
        if !subs.rows.is_empty() {
            section(
                &mut out,
                &st,
                "Sub-workflow steps (`uses`: a child run each)",
                &subs,
            );
            out.push_str(&st.dim(
                "runs: runs in which the step started; failed: failed or rejected; the rest had not ended",
            ));
            out.push('\n');
        }
    }

    problems(&mut out, &st, report);
    out
}

fn problems(out: &mut String, st: &Style, report: &Report) {
    let p = &report.problems;
    out.push('\n');
    if p.unreadable_files == 0 && p.ledger_bad_lines == 0 && p.missing_handoff_files == 0 {
        out.push_str("every file and ledger line was read\n");
        return;
    }
    const SHOWN: usize = 10;
    let _ = writeln!(out, "{}", st.bold("Problems"));
    if p.unreadable_files > 0 {
        let _ = writeln!(
            out,
            "{}",
            st.warn(&format!(
                "{}:",
                plural(p.unreadable_files, "unreadable file")
            ))
        );
        let width = p
            .files
            .iter()
            .take(SHOWN)
            .map(|f| one_line(&f.path).chars().count())
            .max()
            .unwrap_or(0);
        for f in p.files.iter().take(SHOWN) {
            let path = one_line(&f.path);
            let _ = writeln!(out, "  {path:<width$}  {}", one_line(&f.reason));
        }
        more(out, p.unreadable_files, SHOWN);
    }
    if p.ledger_bad_lines > 0 {
        let _ = writeln!(
            out,
            "{}",
            st.warn(&format!(
                "{} in ledger.jsonl (a torn last line is normal after a crash):",
                plural(p.ledger_bad_lines, "bad line")
            ))
        );
        for l in p.ledger_lines.iter().take(SHOWN) {
            let _ = writeln!(out, "  line {}: {}", l.line, one_line(&l.reason));
        }
        more(out, p.ledger_bad_lines, SHOWN);
    }
    if p.missing_handoff_files > 0 {
        let _ = writeln!(
            out,
            "{}",
            st.warn(&format!(
                "{} recorded in the ledger {} no file in the store",
                plural(p.missing_handoff_files, "handoff"),
                if p.missing_handoff_files == 1 {
                    "has"
                } else {
                    "have"
                }
            ))
        );
    }
}

fn more(out: &mut String, total: u64, shown: usize) {
    if total > shown as u64 {
        let _ = writeln!(
            out,
            "  … and {} more (all of them: `orch metrics json`)",
            total - shown as u64
        );
    }
}

fn other(o: &Outcomes) -> u64 {
    o.invalid + o.error + o.cancelled + o.pending
}

/// `8 complete, 1 timed out`: the non-zero outcomes.
fn outcome_list(o: &Outcomes) -> String {
    let parts: Vec<String> = o
        .named()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| {
            let name = match name {
                "timed-out" => "timed out",
                other => other,
            };
            format!("{n} {name}")
        })
        .collect();
    parts.join(", ")
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else if let Some(stem) = what.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'o', 'u'])
    {
        format!("{n} {stem}ies")
    } else {
        format!("{n} {what}s")
    }
}

/// `850ms`, `1.23s`, `12.3s`, `4m05s`, `1h02m`; `-` for none.
pub(crate) fn dur(ms: Option<u64>) -> String {
    let Some(ms) = ms else {
        return "-".to_owned();
    };
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..10_000 => format!("{}.{:02}s", ms / 1000, ms % 1000 / 10),
        10_000..60_000 => format!("{}.{}s", ms / 1000, ms % 1000 / 100),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// Column-aligned rows.
struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, bool)]) -> Self {
        Self {
            headers: columns.iter().map(|c| c.0).collect(),
            right: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; every cell is shown on one line with hostile characters
    /// escaped (names come from the ledger and from agents' files).
    fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.iter().map(|c| one_line(c).into_owned()).collect());
    }

    fn render(&self, st: &Style) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[&str]| {
            let mut s = String::new();
            for (i, cell) in cells.iter().enumerate().take(n) {
                let pad = widths[i].saturating_sub(cell.chars().count());
                let last = i + 1 == n;
                if i > 0 {
                    s.push_str("  ");
                }
                if self.right[i] {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(cell);
                } else {
                    s.push_str(cell);
                    if !last {
                        s.push_str(&" ".repeat(pad));
                    }
                }
            }
            s.truncate(s.trim_end().len());
            s
        };
        let mut out = st.dim(&line(&self.headers));
        out.push('\n');
        for row in &self.rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            out.push_str(&line(&cells));
            out.push('\n');
        }
        out
    }
}

fn section(out: &mut String, st: &Style, title: &str, table: &Table) {
    out.push('\n');
    out.push_str(&st.bold(title));
    out.push('\n');
    out.push_str(&table.render(st));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        let cases = [
            (None, "-"),
            (Some(0), "0ms"),
            (Some(850), "850ms"),
            (Some(1_234), "1.23s"),
            (Some(12_345), "12.3s"),
            (Some(245_000), "4m05s"),
            (Some(3_720_000), "1h02m"),
        ];
        for (ms, text) in cases {
            assert_eq!(dur(ms), text, "{ms:?}");
        }
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "dispatch retry"), "1 dispatch retry");
        assert_eq!(plural(2, "dispatch retry"), "2 dispatch retries");
        assert_eq!(plural(0, "re-ask"), "0 re-asks");
        assert_eq!(plural(3, "day"), "3 days");
    }

    #[test]
    fn tables_align_and_colour_only_when_asked() {
        let mut t = Table::new(&[("agent", false), ("n", true)]);
        t.row(vec!["webster".into(), "12".into()]);
        t.row(vec!["a".into(), "3".into()]);
        assert_eq!(
            t.render(&Style { on: false }),
            "agent     n\nwebster  12\na         3\n"
        );
        assert!(t.render(&Style { on: true }).contains("\x1b[2m"));
    }

    #[test]
    fn hostile_cells_are_escaped_on_one_line_and_aligned() {
        let mut t = Table::new(&[("agent", false), ("n", true)]);
        t.row(vec!["we\u{1b}[2Jb\nx".into(), "1".into()]);
        t.row(vec!["a".into(), "3".into()]);
        // Coloured output is written without the CLI's last check: the
        // table itself must be safe.
        let shown = t.render(&Style { on: true });
        let plain = t.render(&Style { on: false });
        assert_eq!(
            plain,
            "agent            n\nwe\\u{1b}[2Jb\\nx  1\na                3\n"
        );
        let body = shown.lines().skip(1).collect::<String>();
        assert!(!body.contains('\x1b'), "{shown:?}");
    }
}
