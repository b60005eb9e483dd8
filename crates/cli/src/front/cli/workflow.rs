//! `orch workflow <NAME>` (run, dry-run), `run|resume|approve|cancel|runs|status`
//! and `validate|graph|list|show`.

pub(crate) mod exec;

use std::collections::BTreeMap;
use std::process::ExitCode;

use orch_workflow::{Target, Workflow};

use crate::app;
use crate::app::workflow::RunRequest;

use crate::app::error::{AppError, Exit};
use crate::app::wiring::Setup;
use crate::front::cli::args::{GlobalArgs, WorkflowArgs, WorkflowCmd};
use crate::front::out;

/// Largest workflow file read (the loader refuses more than 1 MiB anyway).
pub(crate) async fn run(global: &GlobalArgs, args: WorkflowArgs) -> Result<ExitCode, AppError> {
    match (args.cmd, args.run) {
        (Some(WorkflowCmd::Run(run)), _) | (None, Some(run)) => exec::run(global, run).await,
        (Some(WorkflowCmd::Runs { json }), _) => exec::runs(global, json).await,
        (Some(WorkflowCmd::Status { run_id, json }), _) => {
            exec::status(global, &run_id, json).await
        }
        (
            Some(WorkflowCmd::Resume {
                run_id,
                retry_failed,
                non_interactive,
                json,
            }),
            _,
        ) => {
            let opts = orch_workflow::ResumeOptions { retry_failed };
            exec::resume(global, &run_id, &opts, non_interactive, json).await
        }
        (
            Some(WorkflowCmd::Approve {
                run_id,
                step,
                reject,
                reason,
            }),
            _,
        ) => exec::approve(global, &run_id, &step, reject, reason).await,
        (
            Some(WorkflowCmd::Cancel {
                run_id,
                reason,
                caller,
                json,
            }),
            _,
        ) => exec::cancel(global, &run_id, caller.as_deref(), &reason, json).await,
        (Some(cmd), _) => inspect(global, cmd).map(ExitCode::from),
        (None, None) => Err(AppError::Usage(
            "name a workflow to run (`orch workflow <NAME> --caller X`) or a subcommand (see `orch workflow --help`)".into(),
        )),
    }
}

fn inspect(global: &GlobalArgs, cmd: WorkflowCmd) -> Result<Exit, AppError> {
    match cmd {
        WorkflowCmd::List => list(),
        WorkflowCmd::Validate {
            workflow,
            caller,
            inputs,
        } => validate(global, &workflow, caller.as_deref(), &inputs),
        WorkflowCmd::Graph { workflow } => {
            out::print(&mermaid(&app::workflow::load(&workflow)?.workflow))?;
            Ok(Exit::Ok)
        }
        WorkflowCmd::Show { workflow } => {
            let loaded = app::workflow::load(&workflow)?;
            out::print(&describe(&loaded.workflow, &loaded.origin))?;
            Ok(Exit::Ok)
        }
        WorkflowCmd::Run(_)
        | WorkflowCmd::Runs { .. }
        | WorkflowCmd::Status { .. }
        | WorkflowCmd::Resume { .. }
        | WorkflowCmd::Approve { .. }
        | WorkflowCmd::Cancel { .. } => Err(AppError::Internal(
            "workflow subcommand dispatched to the wrong handler".into(),
        )),
    }
}

/// Where a workflow named on the command line comes from: a file path, a
/// file in `./workflows/`, or a built-in template, in that order.
fn list() -> Result<Exit, AppError> {
    let rows: Vec<[String; 3]> = app::workflow::list()
        .iter()
        .map(|r| [&r.name, &r.from, &r.description].map(|v| out::one_line(v).into_owned()))
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w_name, w_from) = (width(0).max(4), width(1).max(4));
    let mut s = format!("{:<w_name$}  {:<w_from$}  description\n", "name", "from");
    for [name, from, description] in rows {
        s.push_str(&format!(
            "{name:<w_name$}  {from:<w_from$}  {description}\n"
        ));
    }
    out::print(&s)?;
    Ok(Exit::Ok)
}

pub(crate) fn parse_inputs(pairs: &[String]) -> Result<BTreeMap<String, String>, AppError> {
    let mut inputs = BTreeMap::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(AppError::Usage(format!(
                "--input {pair:?}: write it as name=value"
            )));
        };
        if inputs.insert(k.trim().to_owned(), v.to_owned()).is_some() {
            return Err(AppError::Usage(format!(
                "--input {:?} is given twice",
                k.trim()
            )));
        }
    }
    Ok(inputs)
}

fn validate(
    global: &GlobalArgs,
    name: &str,
    caller: Option<&str>,
    pairs: &[String],
) -> Result<Exit, AppError> {
    let (wf, origin, checked) = match caller {
        Some(caller) => {
            let request = RunRequest {
                workflow: name.to_owned(),
                inputs: parse_inputs(pairs)?,
                caller: caller.to_owned(),
            };
            let checked = app::workflow::check(&Setup::load(&global.settings())?, request)?;
            (
                checked.loaded.workflow,
                checked.loaded.origin,
                "file, agents, ACL and inputs",
            )
        }
        None => {
            let loaded = app::workflow::load(name)?;
            (loaded.workflow, loaded.origin, "file")
        }
    };
    out::print(&format!(
        "{}: valid ({checked}): {} steps, {} can run in parallel at most\n",
        out::one_line(&origin),
        wf.steps.len(),
        wf.plan().levels().iter().map(Vec::len).max().unwrap_or(0)
    ))?;
    for w in orch_workflow::warnings(&wf) {
        out::note(&format!("warning: {w}"));
    }
    Ok(Exit::Ok)
}

pub(crate) fn target(step: &orch_workflow::Step) -> String {
    match &step.target {
        Target::Agent(agent) => agent.clone(),
        Target::Route => "route: auto".to_owned(),
        Target::Workflow(u) => format!("uses {}", u.name),
    }
}

/// The DAG as a Mermaid flowchart; a `uses` step is a subgraph of its
/// child workflow's steps (node ids `step__child`, at any depth).
fn mermaid(wf: &Workflow) -> String {
    let mut s = format!(
        "---\ntitle: {}\n---\nflowchart LR\n",
        out::one_line(&wf.name)
    );
    mermaid_body(wf, "", "  ", &mut s);
    s
}

/// The nodes and edges of `wf`, its node ids prefixed with `ns`, each
/// line indented by `indent`.
fn mermaid_body(wf: &Workflow, ns: &str, indent: &str, s: &mut String) {
    // An edge from or to a `uses` step goes from or to its subgraph.
    for step in &wf.steps {
        if let Target::Workflow(u) = &step.target {
            let mut label = format!("{}: uses {}", step.id, u.name);
            if step.gate.is_some() {
                label.push_str(", gate");
            }
            if step.when.is_some() {
                label.push_str(", when");
            }
            let label = out::one_line(&label).replace('"', "'");
            s.push_str(&format!("{indent}subgraph {ns}{}[\"{label}\"]\n", step.id));
            s.push_str(&format!("{indent}  direction LR\n"));
            mermaid_body(
                &u.workflow,
                &format!("{ns}{}__", step.id),
                &format!("{indent}  "),
                s,
            );
            s.push_str(&format!("{indent}end\n"));
            continue;
        }
        let mut label = format!("{}<br/>{}", step.id, target(step));
        if step.gate.is_some() {
            label.push_str("<br/>gate");
        }
        if step.when.is_some() {
            label.push_str("<br/>when");
        }
        if let Some(r) = &step.repeat {
            label.push_str(&format!("<br/>↻ until good, ≤{}", r.max));
        }
        let label = out::one_line(&label).replace('"', "'");
        match &step.for_each {
            // A fan-out is one node, drawn stacked: ×N, or × each of what
            // its items come from.
            Some(f) => {
                let times = match f.listed() {
                    Some(n) => format!("×{n}"),
                    None => format!("× each of {}", f.source()),
                };
                let join = match f.join {
                    orch_workflow::Join::All => String::new(),
                    j => format!(", join {}", j.describe()),
                };
                s.push_str(&format!(
                    "{indent}{ns}{}[[\"{label}<br/>{}{join}\"]]\n",
                    step.id,
                    out::one_line(&times).replace('"', "'")
                ));
            }
            None => s.push_str(&format!("{indent}{ns}{}[\"{label}\"]\n", step.id)),
        }
    }
    for (from, to) in wf.plan().edges() {
        s.push_str(&format!("{indent}{ns}{from} --> {ns}{to}\n"));
    }
    // The `finally` steps run once every other step has ended.
    let finally: Vec<&str> = wf
        .steps
        .iter()
        .filter(|st| st.finally)
        .map(|st| st.id.as_str())
        .collect();
    if !finally.is_empty() {
        s.push_str(&format!(
            "{indent}subgraph {ns}_finally[\"finally: once every other step has ended\"]\n"
        ));
        for id in finally {
            s.push_str(&format!("{indent}  {ns}{id}\n"));
        }
        s.push_str(&format!("{indent}end\n"));
    }
}

fn describe(wf: &Workflow, origin: &str) -> String {
    let mut s = format!("{} ({})\n", out::one_line(&wf.name), out::one_line(origin));
    for line in out::terminal(wf.description.trim()).lines() {
        s.push_str(&format!("  {line}\n"));
    }
    if !wf.inputs.is_empty() {
        s.push_str("\ninputs:\n");
        for (name, spec) in &wf.inputs {
            let how = match (&spec.default, spec.required) {
                (_, true) => "required".to_owned(),
                (Some(d), false) => format!("default {d:?}"),
                (None, false) => "optional".to_owned(),
            };
            s.push_str(&format!(
                "  {name:<14} {how}  {}\n",
                out::one_line(spec.description.trim())
            ));
        }
    }
    s.push_str("\nsteps:\n");
    for step in &wf.steps {
        let deps = wf.plan().deps(&step.id);
        let mut line = format!("  {:<12} {:<14}", step.id, target(step));
        if !deps.is_empty() {
            line.push_str(&format!(" after {}", deps.join(", ")));
        }
        line.push_str(&format!(
            "  timeout {}, retries {}",
            crate::front::cli::args::format_duration(wf.timeout_of(step)),
            wf.retries_of(step)
        ));
        if let Some(gate) = &step.gate {
            let statuses: Vec<String> = gate
                .status
                .iter()
                .map(|st| format!("{st:?}").to_lowercase())
                .collect();
            let mut parts = Vec::new();
            if !statuses.is_empty() {
                parts.push(format!("status {}", statuses.join("|")));
            }
            if let Some(c) = gate.min_confidence {
                parts.push(format!("confidence ≥ {}", format!("{c:?}").to_lowercase()));
            }
            if gate.approval {
                parts.push("human approval".to_owned());
            }
            line.push_str(&format!("  gate: {}", parts.join(", ")));
        }
        if let Some(r) = &step.repeat {
            line.push_str(&format!(
                "  repeat: until {}, ≤{}",
                out::one_line(&r.until_text),
                r.max
            ));
        }
        if step.finally {
            line.push_str("  finally");
        }
        if let Some(f) = &step.for_each {
            line.push_str(&format!(
                "  for each {} of {}, join {}",
                f.name,
                out::one_line(&f.source()),
                f.join.describe()
            ));
            if let Some(n) = f.max_parallel {
                line.push_str(&format!(", ≤{n} at once"));
            }
        }
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str("\nparallel levels:\n");
    for (i, level) in wf.plan().levels().iter().enumerate() {
        s.push_str(&format!("  {}. {}\n", i + 1, level.join(", ")));
    }
    s
}
