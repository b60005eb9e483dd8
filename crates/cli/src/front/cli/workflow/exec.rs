//! Running workflows: `orch workflow <NAME>` (and `run`), `--dry-run`,
//! `resume`, `approve`, `runs`, `status`; the executor's seams (router,
//! channel context, progress lines, terminal approver).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use orch_handoff::RunId;
use orch_registry::Registry;
use orch_workflow::{
    ApprovalDecision, Approver, Executor, Preview, PreviewStep, Progress, ProgressEvent, RunStatus,
    StepOutput,
};

use super::parse_inputs;
use crate::app;
use crate::app::error::{AppError, Exit};
use crate::app::wiring::Setup;
use crate::app::workflow::{RunRequest, RunTree};
use crate::front::cli::args::{GlobalArgs, WorkflowRunArgs, format_duration};
use crate::front::out;

/// Exit code of a run paused at an approval gate (not a DESIGN §5 code:
/// nothing failed, but the run has not finished either).
pub(crate) const EXIT_AWAITING_APPROVAL: u8 = 20;

/// The exit code for a run's final status: completed 0, completed with
/// failures 10 (like a partial handoff), failed 12, awaiting approval 20,
/// cancelled 130.
pub(crate) fn exit_code(status: RunStatus) -> ExitCode {
    match status {
        RunStatus::Completed => Exit::Ok.into(),
        RunStatus::CompletedWithFailures => Exit::Partial.into(),
        RunStatus::Failed => Exit::Failed.into(),
        RunStatus::AwaitingApproval => ExitCode::from(EXIT_AWAITING_APPROVAL),
        RunStatus::Cancelled => Exit::Cancelled.into(),
        RunStatus::Running => Exit::Internal.into(),
    }
}

/// How a status serialises (`awaiting-approval`): the word people and
/// tools read.
pub(crate) fn word<T: serde::Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `orch workflow <NAME> …` / `orch workflow run <NAME> …`.
pub(crate) async fn run(global: &GlobalArgs, args: WorkflowRunArgs) -> Result<ExitCode, AppError> {
    let request = RunRequest {
        workflow: args.workflow.clone(),
        inputs: parse_inputs(&args.inputs)?,
        caller: args.caller.clone(),
    };
    let setup = Setup::load(&global.settings())?;
    let checked = app::workflow::check(&setup, request)?;
    if args.dry_run {
        let preview = app::workflow::preview(&setup, checked).await?;
        if args.json {
            out::print_json(&preview)?;
        } else {
            out::print(&render_preview(&preview))?;
        }
        return Ok(Exit::Ok.into());
    }
    let interactive = !args.non_interactive && std::io::stdin().is_terminal();
    let wf = &checked.loaded.workflow;
    let steps = app::workflow::step_paths(wf);
    // The run id is chosen here so the live view can place each dispatch
    // retry beside the step whose attempt it is.
    let run_id = RunId::generate_workflow(&wf.name);
    let registry = checked.registry.clone();
    let (executor, view) = executor(setup, registry, interactive, &steps, &run_id).await?;
    let store = Arc::clone(executor.store());
    let summary = crate::front::cli::with_ctrl_c(|cancel| async move {
        app::workflow::run(&executor, checked, run_id, &cancel).await
    })
    .await;
    view.end();
    finish(&app::workflow::tree(&*store, summary?).await?, args.json)
}

/// `orch workflow resume <RUN> [--retry-failed]`.
pub(crate) async fn resume(
    global: &GlobalArgs,
    id: &str,
    opts: &orch_workflow::ResumeOptions,
    non_interactive: bool,
    json: bool,
) -> Result<ExitCode, AppError> {
    let id = app::workflow::run_id(id)?;
    let setup = Setup::load(&global.settings())?;
    let registry = setup.registry()?;
    let interactive = !non_interactive && std::io::stdin().is_terminal();
    // The steps in the workflow's order, for the live view.
    let steps = app::workflow::steps_of(&setup, &id).await?;
    let (executor, view) = executor(setup, registry, interactive, &steps, &id).await?;
    let store = Arc::clone(executor.store());
    let summary = crate::front::cli::with_ctrl_c(|cancel| async move {
        app::workflow::resume(&executor, &id, opts, &cancel).await
    })
    .await;
    view.end();
    finish(&app::workflow::tree(&*store, summary?).await?, json)
}

/// `orch workflow approve <RUN> <STEP> [--reject --reason R]`.
pub(crate) async fn approve(
    global: &GlobalArgs,
    id: &str,
    step: &str,
    reject: bool,
    reason: Option<String>,
) -> Result<ExitCode, AppError> {
    let id = app::workflow::run_id(id)?;
    let setup = Setup::load(&global.settings())?;
    let decision = if reject {
        ApprovalDecision::Reject {
            reason: reason.unwrap_or_else(|| "rejected without a reason".into()),
        }
    } else {
        ApprovalDecision::Approve
    };
    app::workflow::approve(&setup, &id, step, decision).await?;
    out::print(&format!(
        "{} step `{step}` of {id}; run `orch workflow resume {id}` to continue\n",
        if reject { "rejected" } else { "approved" }
    ))?;
    Ok(Exit::Ok.into())
}

/// `orch workflow cancel <RUN> [--reason R] [--caller ID]`: asks the
/// process running it to cancel it; a paused (or interrupted) run, which
/// no process runs, is taken up here and ends as cancelled.
pub(crate) async fn cancel(
    global: &GlobalArgs,
    id: &str,
    caller: Option<&str>,
    reason: &str,
    json: bool,
) -> Result<ExitCode, AppError> {
    let id = app::workflow::run_id(id)?;
    // Checked against the id rule with the other callers (`check_ids`).
    let by = caller.unwrap_or("cli");
    let setup = Setup::load(&global.settings())?;
    let asked = app::workflow::cancel(&setup, &id, by, reason).await?;
    if !asked.paused {
        if json {
            out::print_json(&asked)?;
        } else {
            out::print(&format!(
                "asked to cancel {id}: the process running it stops its delegations and ends the run as cancelled (`orch workflow status {id}` shows it; if no process runs it any more, `orch workflow resume {id}` ends it)\n"
            ))?;
        }
        return Ok(Exit::Ok.into());
    }
    // Nobody runs it: end it here, as its resume would.
    let registry = setup.registry()?;
    let exec = app::workflow::executor(setup, registry, |_| {}).await?;
    let store = Arc::clone(exec.store());
    let summary = crate::front::cli::with_ctrl_c(|token| async move {
        app::workflow::resume(&exec, &id, &orch_workflow::ResumeOptions::default(), &token).await
    })
    .await?;
    let tree = app::workflow::tree(&*store, summary).await?;
    if json {
        out::print_json(&tree)?;
    } else {
        out::print(&render_summary(&tree))?;
    }
    Ok(Exit::Ok.into())
}

/// `orch workflow runs`.
pub(crate) async fn runs(global: &GlobalArgs, json: bool) -> Result<ExitCode, AppError> {
    let summaries = app::workflow::runs(&Setup::load(&global.settings())?).await?;
    if json {
        out::print_json(&summaries)?;
        return Ok(Exit::Ok.into());
    }
    if summaries.is_empty() {
        out::print("no workflow runs in the store\n")?;
        return Ok(Exit::Ok.into());
    }
    let w_id = summaries
        .iter()
        .map(|s| s.run_id.as_str().len())
        .max()
        .unwrap_or(0);
    let w_wf = summaries
        .iter()
        .map(|s| width(&out::one_line(&s.workflow)))
        .max()
        .unwrap_or(0)
        .max(8);
    let mut text = format!(
        "{:<w_id$}  {:<w_wf$}  {:<23}  {:<20}  caller\n",
        "run", "workflow", "status", "started"
    );
    for s in &summaries {
        text.push_str(&format!(
            "{:<w_id$}  {:<w_wf$}  {:<23}  {:<20}  {}\n",
            s.run_id.as_str(),
            out::one_line(&s.workflow),
            word(s.status),
            s.started.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            out::one_line(&s.caller)
        ));
    }
    out::print(&text)?;
    Ok(Exit::Ok.into())
}

/// `orch workflow status <RUN>`.
pub(crate) async fn status(
    global: &GlobalArgs,
    id: &str,
    json: bool,
) -> Result<ExitCode, AppError> {
    let id = app::workflow::run_id(id)?;
    let tree = app::workflow::status_tree(&Setup::load(&global.settings())?, &id).await?;
    if json {
        out::print_json(&tree)?;
    } else {
        out::print(&render_summary(&tree))?;
    }
    Ok(Exit::Ok.into())
}

/// Prints the summary (with its child runs) and maps its status to the
/// exit code.
fn finish(tree: &RunTree, json: bool) -> Result<ExitCode, AppError> {
    let summary = &tree.summary;
    if json {
        out::print_json(tree)?;
    } else {
        out::print(&render_summary(tree))?;
    }
    match summary.status {
        RunStatus::AwaitingApproval => {
            // The steps that wait, a child run's as `uses-step/step`.
            let mut rows = Vec::new();
            step_rows(tree, "", &mut rows);
            let waiting: Vec<String> = rows
                .into_iter()
                .filter(|r| r.st.status == orch_workflow::StepStatus::AwaitingApproval)
                .filter(|r| r.uses.is_none())
                .map(|r| out::one_line(&r.id).into_owned())
                .collect();
            let id = &summary.run_id;
            let step = match waiting.as_slice() {
                [one] => one.clone(),
                _ => "<step>".to_owned(),
            };
            let each = if waiting.len() > 1 {
                format!(" for each of {}", waiting.join(", "))
            } else {
                String::new()
            };
            out::note(&format!(
                "paused for approval: `orch workflow approve {id} {step}`{each} (or `--reject --reason …`), then `orch workflow resume {id}`"
            ));
        }
        RunStatus::Cancelled if summary.cancelled.is_some() => {}
        RunStatus::Cancelled => out::note(&format!(
            "cancelled: `orch workflow resume {}` continues it",
            summary.run_id
        )),
        RunStatus::Running => out::note(&format!(
            "the run is still marked running: `orch workflow resume {}` continues it",
            summary.run_id
        )),
        RunStatus::Failed | RunStatus::Completed | RunStatus::CompletedWithFailures => {}
    }
    Ok(exit_code(summary.status))
}

fn secs(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "-".to_owned(),
        |ms| format!("{:.2}s", Duration::from_millis(ms).as_secs_f64()),
    )
}

/// One row of the steps table: a step of the run, or of a child run
/// (`uses-step/step`).
struct Row {
    id: String,
    st: orch_workflow::StepSummary,
    /// A `uses` step: the workflow its child run runs.
    uses: Option<String>,
}

/// The steps of `tree` in its workflow's order (when its stored source
/// still loads), each `uses` step followed by its child run's, at any
/// depth, named `prefix` + id.
fn step_rows(tree: &RunTree, prefix: &str, rows: &mut Vec<Row>) {
    let s = &tree.summary;
    let order: Vec<String> = app::workflow::stored_workflow(s)
        .map(|wf| wf.steps.iter().map(|st| st.id.clone()).collect())
        .unwrap_or_else(|_| s.steps.keys().cloned().collect());
    for id in &order {
        let Some(st) = s.steps.get(id) else { continue };
        let uses = s.children.get(id).map(|_| {
            tree.child_runs
                .get(id)
                .map_or_else(|| "a workflow".to_owned(), |c| c.summary.workflow.clone())
        });
        rows.push(Row {
            id: format!("{prefix}{id}"),
            st: st.clone(),
            uses,
        });
        if let Some(child) = tree.child_runs.get(id) {
            step_rows(child, &format!("{prefix}{id}/"), rows);
        }
    }
}

/// The human rendering of a run summary, with its child runs' steps.
pub(crate) fn render_summary(tree: &RunTree) -> String {
    let s = &tree.summary;
    let mut text = format!(
        "workflow {}: {}\n",
        out::one_line(&s.workflow),
        word(s.status)
    );
    let mut row = |k: &str, v: &str| text.push_str(&format!("  {k:<9}{}\n", out::one_line(v)));
    row("run", s.run_id.as_str());
    row("caller", &s.caller);
    row("from", &s.origin);
    if let Some(p) = &s.parent {
        row("parent", &format!("{} (step {})", p.run_id, p.step));
    }
    for (step, child) in &s.children {
        if tree.child_runs.contains_key(step) {
            row("child", &format!("{child} (step {step})"));
        }
    }
    if let Some(c) = &s.cancelled {
        row(
            "cancel",
            &format!(
                "by {} at {}: {}",
                c.by,
                c.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                c.reason
            ),
        );
    }
    if !s.inputs.is_empty() {
        text.push_str("\ninputs:\n");
        let inputs: Vec<_> = s
            .inputs
            .iter()
            .map(|(k, v)| (out::one_line(k), out::one_line(v)))
            .collect();
        let w = inputs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
        for (k, v) in &inputs {
            text.push_str(&format!("  {k:<w$}  {v}\n"));
        }
    }
    text.push_str("\nsteps:\n");
    let mut rows = Vec::new();
    step_rows(tree, "", &mut rows);
    let w_step = rows.iter().map(|r| width(&r.id)).max().unwrap_or(0);
    let agent = |r: &Row| match &r.uses {
        Some(wf) => format!("uses {}", out::one_line(wf)),
        None => out::one_line(r.st.agent.as_deref().unwrap_or("-")).into_owned(),
    };
    let w_agent = rows.iter().map(|r| width(&agent(r))).max().unwrap_or(1);
    let plural = |n: u32, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    // A repeat step says how many iterations its attempts made; a
    // `for_each` step how its instances ended.
    let attempts = |r: &Row| match (r.st.instances, r.st.iterations) {
        _ if r.uses.is_some() => "child run".to_owned(),
        (Some(c), _) => {
            let mut s = format!("{} ({} completed", plural(c.total, "instance"), c.completed);
            if c.failed > 0 {
                s.push_str(&format!(", {} failed", c.failed));
            }
            if c.cancelled > 0 {
                s.push_str(&format!(", {} cancelled", c.cancelled));
            }
            s.push(')');
            s
        }
        (None, Some(i)) => format!(
            "{} ({})",
            plural(r.st.attempts, "attempt"),
            plural(i, "iteration")
        ),
        (None, None) => plural(r.st.attempts, "attempt"),
    };
    let w_attempts = rows.iter().map(|r| attempts(r).len()).max().unwrap_or(0);
    for r in &rows {
        let (id, st) = (out::one_line(&r.id), &r.st);
        text.push_str(&format!(
            "  {id:<w_step$}  {:<17}  {:<w_agent$}  {:<w_attempts$}  {:>7}{}\n",
            word(st.status),
            agent(r),
            attempts(r),
            secs(st.duration_ms),
            st.reason
                .as_deref()
                .map(|r| format!("  {}", out::one_line(r)))
                .unwrap_or_default()
        ));
    }
    if let Some(output) = &s.output {
        text.push_str("\noutput:\n");
        for line in out::terminal(output.trim_end()).lines() {
            text.push_str(&format!("  {line}\n"));
        }
    }
    if let Some(note) = &s.output_note {
        text.push_str(&format!("\noutput: none\n  {}\n", out::one_line(note)));
    }
    text
}

/// Columns a value takes: its characters (values are escaped first, so no
/// control character is counted).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// The application's executor of workflow run `run` with this front
/// end's seams: progress (a live view on a terminal, else lines on
/// stderr; dispatch retries beside their step) and (interactive) a
/// terminal approver.
async fn executor(
    setup: Setup,
    registry: Registry,
    interactive: bool,
    steps: &[String],
    run: &RunId,
) -> Result<(Executor, View), AppError> {
    let bars = std::io::stderr()
        .is_terminal()
        .then(|| Arc::new(Bars::new(steps)));
    let retries = Retries {
        run: run.clone(),
        steps: steps.to_vec(),
        bars: bars.clone(),
    };
    let mut exec =
        app::workflow::executor(setup, registry, move |event| retries.show(event)).await?;
    let view = match bars {
        Some(bars) => {
            exec = exec.with_progress(Arc::clone(&bars) as Arc<dyn Progress>);
            View(Some(bars))
        }
        None => {
            exec = exec.with_progress(Arc::new(Lines));
            View(None)
        }
    };
    if interactive {
        exec = exec.with_approver(Arc::new(TerminalApprover {
            lock: tokio::sync::Mutex::new(()),
            multi: view.0.as_ref().map(|b| b.multi.clone()),
        }));
    }
    Ok((exec, view))
}

/// Shows the Delegator's dispatch retries of one workflow run: on the bar
/// of the step whose attempt retries (its derived run id names it), or as
/// a line on stderr.
struct Retries {
    run: RunId,
    steps: Vec<String>,
    bars: Option<Arc<Bars>>,
}

impl Retries {
    fn show(&self, event: &orch_delegate::DelegationEvent) {
        let orch_delegate::DelegationEvent::Retrying(r) = event else {
            return;
        };
        let step = self.step_of(&r.run_id);
        match (&self.bars, step) {
            (Some(bars), Some(step)) => bars.with_bar(step, |bar| {
                bar.set_message(format!("dispatch retry: {}", out::one_line(&r.detail())));
            }),
            (Some(bars), None) => bars
                .multi
                .suspend(|| out::note(&format!("retry: {}", out::one_line(&r.to_string())))),
            (None, Some(step)) => Lines::line(&format!(
                "{step} dispatch retry: {}",
                out::one_line(&r.detail())
            )),
            (None, None) => Lines::line(&format!("retry: {}", out::one_line(&r.to_string()))),
        }
    }

    /// The step whose attempt `id` is (`attempt_run_id` of this run), if
    /// any: a step's own, or one of a `for_each` step's instances
    /// (`<step>.<N>`).
    fn step_of(&self, id: &RunId) -> Option<&str> {
        let (rest, n) = id.as_str().rsplit_once('.')?;
        let n: u32 = n.parse().ok()?;
        if let Some(step) = self
            .steps
            .iter()
            .find(|s| orch_workflow::attempt_run_id(&self.run, s, n) == *id)
        {
            return Some(step);
        }
        // An instance: `<run>.<step>.<N>.<n>` (long ids are hashed, so the
        // id is rebuilt and compared, never only parsed).
        let (rest, index) = rest.rsplit_once('.')?;
        let index: usize = index.parse().ok()?;
        let step = rest.rsplit_once('.').map_or(rest, |(_, s)| s);
        self.steps
            .iter()
            .filter(|s| s.as_str() == step || id.as_str().len() >= orch_handoff::MAX_ID_LEN)
            .find(|s| {
                let record = orch_workflow::instance_record_id(s, index);
                orch_workflow::attempt_run_id(&self.run, &record, n) == *id
            })
            .map(String::as_str)
    }
}

/// The live view, if any: ended before the summary is printed.
struct View(Option<Arc<Bars>>);

impl View {
    fn end(&self) {
        if let Some(bars) = &self.0 {
            bars.end();
        }
    }
}

/// The terminal view: one line per step with its state and elapsed time.
struct Bars {
    multi: indicatif::MultiProgress,
    bars: std::sync::Mutex<std::collections::BTreeMap<String, indicatif::ProgressBar>>,
    width: usize,
}

impl Bars {
    fn new(steps: &[String]) -> Self {
        let width = steps.iter().map(String::len).max().unwrap_or(8).max(8);
        let me = Self {
            multi: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
            bars: std::sync::Mutex::new(Default::default()),
            width,
        };
        for step in steps {
            me.with_bar(step, |bar| bar.set_message("pending"));
        }
        me
    }

    fn with_bar(&self, step: &str, f: impl FnOnce(&indicatif::ProgressBar)) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let bar = bars.entry(step.to_owned()).or_insert_with(|| {
            let style = indicatif::ProgressStyle::with_template(&format!(
                "{{spinner}} {{prefix:<{}}}  {{elapsed:>4}}  {{wide_msg}}",
                self.width
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
            let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
            bar.set_style(style);
            bar.set_prefix(step.to_owned());
            bar
        });
        f(bar);
    }

    fn end(&self) {
        if let Ok(bars) = self.bars.lock() {
            for bar in bars.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
        }
    }
}

impl Progress for Bars {
    fn event(&self, e: &ProgressEvent) {
        let (step, text) = event_text(e);
        if step.contains('[') {
            // An instance of a `for_each` step: its step's line counts
            // them (`Instances`), one line per instance would be too many.
            return;
        }
        self.with_bar(step, |bar| match e {
            ProgressEvent::Started { agent, attempt, .. } => {
                bar.reset_elapsed();
                bar.enable_steady_tick(Duration::from_millis(120));
                // A live bar says what is going on now.
                bar.set_message(format!(
                    "running ({}, attempt {attempt})",
                    out::one_line(agent)
                ));
            }
            ProgressEvent::Finished { .. } | ProgressEvent::Skipped { .. } => {
                bar.finish_with_message(text);
            }
            ProgressEvent::AwaitingApproval { .. } => {
                bar.disable_steady_tick();
                bar.set_message(text);
            }
            ProgressEvent::Reawaiting { .. } => {
                bar.enable_steady_tick(Duration::from_millis(120));
                bar.set_message(text);
            }
            ProgressEvent::FannedOut { .. } => {
                bar.reset_elapsed();
                bar.enable_steady_tick(Duration::from_millis(120));
                bar.set_message(text);
            }
            ProgressEvent::Retrying { .. }
            | ProgressEvent::Lost { .. }
            | ProgressEvent::Repeating { .. }
            | ProgressEvent::Instances { .. } => bar.set_message(text),
        });
    }
}

/// The step an event is about, and what it says of it (values shown
/// escaped): the words of the progress lines and of the live view.
pub(crate) fn event_text(e: &ProgressEvent) -> (&str, String) {
    match e {
        ProgressEvent::Started {
            step,
            agent,
            attempt,
        } => (
            step,
            format!("started ({}, attempt {attempt})", out::one_line(agent)),
        ),
        ProgressEvent::Retrying {
            step,
            attempt,
            delay,
        } => (
            step,
            format!(
                "retrying in {} (attempt {attempt})",
                format_duration(*delay)
            ),
        ),
        ProgressEvent::Repeating {
            step,
            iteration,
            max,
            reason,
        } => (
            step,
            format!(
                "asked again (iteration {iteration} of at most {max}): until {}",
                out::one_line(reason)
            ),
        ),
        ProgressEvent::Finished {
            step,
            status,
            elapsed,
        } => (
            step,
            format!("{} after {:.2}s", word(status), elapsed.as_secs_f64()),
        ),
        ProgressEvent::Skipped { step, reason } => {
            (step, format!("skipped: {}", out::one_line(reason)))
        }
        ProgressEvent::AwaitingApproval { step } => (step, "awaits approval".to_owned()),
        ProgressEvent::Reawaiting {
            step,
            agent,
            attempt,
            since,
            until,
        } => (
            step,
            format!(
                "re-awaiting attempt {attempt} ({}), sent {}, until {}",
                out::one_line(agent),
                clock(*since),
                clock(*until)
            ),
        ),
        ProgressEvent::Lost {
            step,
            attempt,
            reason,
        } => (
            step,
            format!(
                "attempt {attempt} lost: {}; sending again",
                out::one_line(reason)
            ),
        ),
        ProgressEvent::FannedOut { step, items, join } => (
            step,
            format!(
                "fanned out: {items} instance{} (join: {join})",
                if *items == 1 { "" } else { "s" }
            ),
        ),
        ProgressEvent::Instances { step, counts } => (step, instances_text(counts)),
    }
}

/// `4 of 10 instances ended: 3 completed, 1 failed` (cancelled ones when
/// there are any).
fn instances_text(c: &orch_workflow::InstanceCounts) -> String {
    let ended = c.completed + c.failed + c.cancelled;
    let mut text = format!(
        "{ended} of {} instance{} ended: {} completed, {} failed",
        c.total,
        if c.total == 1 { "" } else { "s" },
        c.completed,
        c.failed
    );
    if c.cancelled > 0 {
        text.push_str(&format!(", {} cancelled", c.cancelled));
    }
    text
}

/// One line per event on stderr: `[12:03:04] research started (webster, attempt 1)`.
struct Lines;

impl Progress for Lines {
    fn event(&self, e: &ProgressEvent) {
        // Each instance says when it starts and ends; counting them after
        // each end as well would double the lines.
        if matches!(e, ProgressEvent::Instances { .. }) {
            return;
        }
        let (step, text) = event_text(e);
        Self::line(&format!("{step} {text}"));
    }
}

impl Lines {
    /// `[12:03:04] <line>` on stderr.
    fn line(line: &str) {
        let now = jiff::Timestamp::now().strftime("%H:%M:%S").to_string();
        out::note(&format!("[{now}] {line}"));
    }
}

/// A moment as people read it: UTC to the second (`2026-11-25T11:41:40Z`).
fn clock(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Asks on the terminal (stderr/stdin) whether a gated step may go on.
struct TerminalApprover {
    /// One question at a time.
    lock: tokio::sync::Mutex<()>,
    /// The live view, paused while asking.
    multi: Option<indicatif::MultiProgress>,
}

#[async_trait::async_trait]
impl Approver for TerminalApprover {
    async fn approve(&self, step: &str, output: &StepOutput) -> ApprovalDecision {
        let _one = self.lock.lock().await;
        let step = step.to_owned();
        let output = output.clone();
        let multi = self.multi.clone();
        let asked = tokio::task::spawn_blocking(move || match multi {
            Some(m) => m.suspend(|| ask(&step, &output)),
            None => ask(&step, &output),
        })
        .await;
        // A terminal that cannot be read cannot approve.
        asked.unwrap_or_else(|_| ApprovalDecision::Reject {
            reason: "the approval prompt failed".into(),
        })
    }
}

fn ask(step: &str, output: &StepOutput) -> ApprovalDecision {
    use std::io::BufRead;
    out::note(&format!(
        "\nstep `{step}` finished {} (confidence {}) and needs your approval:",
        word(output.status),
        output.confidence.map_or_else(|| "-".to_owned(), word)
    ));
    for line in out::terminal(&output.result).lines() {
        out::note(&format!("  | {line}"));
    }
    for (i, line) in out::terminal(output.notes.trim()).lines().enumerate() {
        out::note(&format!(
            "  {} {line}",
            if i == 0 { "notes:" } else { "      " }
        ));
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        out::prompt(&format!("approve `{step}`? [y]es / [n]o: "));
        let Some(Ok(answer)) = lines.next() else {
            return ApprovalDecision::Reject {
                reason: "no answer on the terminal".into(),
            };
        };
        match answer.trim().to_lowercase().as_str() {
            "y" | "yes" => return ApprovalDecision::Approve,
            "n" | "no" => {
                out::prompt("reason (optional): ");
                let reason = lines
                    .next()
                    .and_then(Result::ok)
                    .map(|r| r.trim().to_owned())
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "rejected on the terminal".into());
                return ApprovalDecision::Reject { reason };
            }
            _ => {}
        }
    }
}

/// The dry run's text: the [`Preview`] for a person.
fn render_preview(p: &Preview) -> String {
    let mut text = format!(
        "dry run of {} ({}) for {}: nothing is sent\n",
        out::one_line(&p.workflow),
        out::one_line(&p.origin),
        out::one_line(&p.caller)
    );
    if !p.inputs.is_empty() {
        text.push_str("\ninputs:\n");
        for (k, v) in &p.inputs {
            text.push_str(&format!("  {k} = {v:?}\n"));
        }
    }
    text.push_str("\nplan:\n");
    for (i, level) in p.levels.iter().enumerate() {
        let how = if level.len() > 1 { "in parallel: " } else { "" };
        text.push_str(&format!("  {}. {how}{}\n", i + 1, level.join(", ")));
    }
    if let Some(n) = p.max_parallel {
        text.push_str(&format!("  (at most {n} at once)\n"));
    }
    let finally: Vec<&str> = p
        .steps
        .iter()
        .filter(|s| s.finally)
        .map(|s| s.id.as_str())
        .collect();
    if !finally.is_empty() {
        text.push_str(&format!(
            "  finally, once every other step has ended: {}\n",
            finally.join(", ")
        ));
    }
    for step in &p.steps {
        render_preview_step(&mut text, step);
    }
    if let Some(output) = &p.output {
        text.push_str("\noutput:\n");
        for line in out::terminal(output).lines() {
            text.push_str(&format!("    {line}\n"));
        }
    }
    text
}

fn render_preview_step(text: &mut String, step: &PreviewStep) {
    let what = if step.finally { "finally step" } else { "step" };
    text.push_str(&format!("\n{what} {} → {}\n", step.id, step.agent));
    let waits = match (step.finally, step.waits_for.is_empty()) {
        (true, _) => "every other step to end".to_owned(),
        (false, true) => "nothing (starts at once)".to_owned(),
        (false, false) => step.waits_for.join(", "),
    };
    text.push_str(&format!("  waits for: {waits}\n"));
    text.push_str(&format!(
        "  timeout {}, retries {}, on failure {}\n",
        step.timeout,
        step.retries,
        match step.on_failure {
            orch_workflow::OnFailure::Stop => "stop",
            orch_workflow::OnFailure::Continue => "continue",
        }
    ));
    if let Some(when) = &step.when {
        text.push_str(&format!("  when: {when}\n"));
    }
    if let Some(gate) = &step.gate {
        let statuses: Vec<&str> = gate.status.iter().map(|s| s.as_str()).collect();
        let mut parts = Vec::new();
        parts.push(format!(
            "status {}",
            if statuses.is_empty() {
                "complete|partial".to_owned()
            } else {
                statuses.join("|")
            }
        ));
        if let Some(c) = gate.min_confidence {
            parts.push(format!("confidence ≥ {}", c.as_str()));
        }
        if gate.approval {
            parts.push("human approval".to_owned());
        }
        text.push_str(&format!("  gate: {}\n", parts.join(", ")));
    }
    if let Some((channel, messages)) = &step.context {
        text.push_str(&format!(
            "  context: the last {messages} messages of {channel} (fetched at run time)\n"
        ));
    }
    if let Some(r) = &step.repeat {
        text.push_str(&format!(
            "  repeat: until {}, at most {} iterations (`previous` is empty on the first)\n",
            out::one_line(&r.until),
            r.max
        ));
    }
    if let Some(u) = &step.uses {
        // The child run, expanded: its own plan, steps and tasks.
        text.push_str(&format!(
            "  runs {} ({}) as a child run; its output is this step's result\n",
            out::one_line(&u.name),
            out::one_line(&u.run.origin)
        ));
        for line in render_preview(&u.run).lines().skip(1) {
            if line.is_empty() {
                text.push_str("  │\n");
            } else {
                text.push_str(&format!("  │ {line}\n"));
            }
        }
        return;
    }
    text.push_str("  task:\n");
    for line in out::terminal(&step.task).lines() {
        text.push_str(&format!("    {line}\n"));
    }
    if let Some(f) = &step.for_each {
        render_preview_fan(text, f);
    }
}

/// Instance tasks shown in a dry run's text (all of them in `--json`).
const PREVIEW_INSTANCES: usize = 10;

/// A `for_each` step in a dry run: where its items come from, the items
/// and the first instances' tasks.
fn render_preview_fan(text: &mut String, f: &orch_workflow::PreviewForEach) {
    let mut how = format!("join {}", f.join);
    if let Some(n) = f.max_parallel {
        how.push_str(&format!(", at most {n} at once"));
    }
    text.push_str(&format!(
        "  for each {} of {} ({how}, at most {} items)\n",
        f.name,
        out::one_line(&f.source),
        f.max_items
    ));
    let Some(items) = &f.items else {
        text.push_str("  items: from a step's result, known when it has run\n");
        return;
    };
    text.push_str(&format!(
        "  {} item{}:\n",
        items.len(),
        if items.len() == 1 { "" } else { "s" }
    ));
    for (i, item) in items.iter().enumerate() {
        text.push_str(&format!("    [{i}] {}\n", out::one_line(item)));
    }
    for (i, task) in f.tasks.iter().enumerate().take(PREVIEW_INSTANCES) {
        text.push_str(&format!("  task of [{i}]:\n"));
        for line in out::terminal(task).lines() {
            text.push_str(&format!("    {line}\n"));
        }
    }
    if f.tasks.len() > PREVIEW_INSTANCES {
        text.push_str(&format!(
            "  … and {} more instance tasks (all of them with --json)\n",
            f.tasks.len() - PREVIEW_INSTANCES
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use orch_acl::Policy;

    use super::*;
    use crate::app::route::AclRouter;

    #[test]
    fn exit_codes_by_run_status() {
        assert_eq!(exit_code(RunStatus::Completed), ExitCode::from(0));
        assert_eq!(
            exit_code(RunStatus::CompletedWithFailures),
            ExitCode::from(10)
        );
        assert_eq!(exit_code(RunStatus::Failed), ExitCode::from(12));
        assert_eq!(exit_code(RunStatus::AwaitingApproval), ExitCode::from(20));
        assert_eq!(exit_code(RunStatus::Cancelled), ExitCode::from(130));
    }

    #[test]
    fn placeholders_keep_inputs_and_mark_step_outputs() {
        let wf = orch_workflow::load(
            "name: t\ninputs:\n  x: { default: X1 }\nsteps:\n  - id: a\n    agent: webster\n    task: \"do {{ inputs.x }}\"\n  - id: b\n    agent: auditor\n    task: \"check {{ steps.a.result }} in {{ run.id }}\"\n",
            "t.yaml",
        )
        .unwrap();
        let registry = Registry::embedded_default();
        let policy = Policy::default();
        let inputs = orch_workflow::check_run(
            &wf,
            &registry.ids(),
            &policy,
            "manager",
            &Default::default(),
        )
        .unwrap();
        let router = AclRouter {
            registry: Arc::new(registry),
            policy,
        };
        let preview = Preview::build(&wf, &inputs, "manager", &router);
        assert_eq!(preview.steps[1].task, "check ⟨steps.a.result⟩ in ⟨run.id⟩");
        assert_eq!(preview.steps[0].task, "do X1");
    }
}
