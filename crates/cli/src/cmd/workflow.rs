//! `orch workflow <NAME>` (run, dry-run), `run|resume|approve|runs|status`
//! and `validate|graph|list|show`.

mod exec;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use orch_workflow::{Target, Workflow, WorkflowError};

use crate::args::{GlobalArgs, WorkflowArgs, WorkflowCmd};
use crate::exit::{CliError, Exit};
use crate::out;
use crate::wiring::Setup;

/// Largest workflow file read (the loader refuses more than 1 MiB anyway).
const MAX_READ: u64 = 2 * 1024 * 1024;

pub(crate) async fn run(global: &GlobalArgs, args: WorkflowArgs) -> Result<ExitCode, CliError> {
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
        (Some(cmd), _) => inspect(global, cmd).map(ExitCode::from),
        (None, None) => Err(CliError::Usage(
            "name a workflow to run (`orch workflow <NAME> --caller X`) or a subcommand (see `orch workflow --help`)".into(),
        )),
    }
}

fn inspect(global: &GlobalArgs, cmd: WorkflowCmd) -> Result<Exit, CliError> {
    match cmd {
        WorkflowCmd::List => list(),
        WorkflowCmd::Validate {
            workflow,
            caller,
            inputs,
        } => validate(global, &workflow, caller.as_deref(), &inputs),
        WorkflowCmd::Graph { workflow } => {
            let (wf, _) = load(&workflow)?;
            out::print(&mermaid(&wf))?;
            Ok(Exit::Ok)
        }
        WorkflowCmd::Show { workflow } => {
            let (wf, origin) = load(&workflow)?;
            out::print(&describe(&wf, &origin))?;
            Ok(Exit::Ok)
        }
        WorkflowCmd::Run(_)
        | WorkflowCmd::Runs { .. }
        | WorkflowCmd::Status { .. }
        | WorkflowCmd::Resume { .. }
        | WorkflowCmd::Approve { .. } => Err(CliError::Internal(
            "workflow subcommand dispatched to the wrong handler".into(),
        )),
    }
}

/// Where a workflow named on the command line comes from: a file path, a
/// file in `./workflows/`, or a built-in template, in that order.
pub(crate) fn source_of(name: &str) -> Result<(String, String), CliError> {
    let path = PathBuf::from(name);
    let local = Path::new("workflows").join(format!("{name}.yaml"));
    for candidate in [&path, &local] {
        if candidate.is_file() {
            return read(candidate).map(|text| (text, candidate.display().to_string()));
        }
    }
    if let Some(text) = orch_workflow::builtin(name) {
        return Ok((text.to_owned(), format!("<built-in {name}>")));
    }
    let known: Vec<&str> = orch_workflow::builtin_names().collect();
    Err(CliError::Usage(format!(
        "no workflow {name:?}: not a file, not in ./workflows/, and not built in ({})",
        known.join(", ")
    )))
}

fn read(path: &Path) -> Result<String, CliError> {
    use std::io::Read;
    let cannot =
        |e: std::io::Error| CliError::Usage(format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    // The size cap names the file's real size, not what a capped read got
    // (and a cut in the middle of a character is no UTF-8 error).
    let size = file.metadata().map_err(cannot)?.len();
    orch_workflow::check_file_size(size, &path.display().to_string())
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_READ)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > size {
        // It grew while being read: what was read is judged.
        orch_workflow::check_file_size(bytes.len() as u64, &path.display().to_string())
            .map_err(|e| CliError::Usage(e.to_string()))?;
    }
    String::from_utf8(bytes).map_err(|e| {
        CliError::Usage(format!(
            "{}: not UTF-8 (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Reads and loads a workflow; errors name file, line and column (exit 2).
pub(crate) fn load(name: &str) -> Result<(Workflow, String), CliError> {
    let (text, origin) = source_of(name)?;
    let wf = orch_workflow::load(&text, &origin).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok((wf, origin))
}

fn list() -> Result<Exit, CliError> {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("workflows") {
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        for path in files {
            let origin = path.display().to_string();
            let description = match read(&path).and_then(|t| {
                orch_workflow::load(&t, &origin).map_err(|e| CliError::Usage(e.to_string()))
            }) {
                Ok(wf) => wf.description,
                Err(e) => format!("(invalid: {e})"),
            };
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            rows.push((name, origin, description));
        }
    }
    for name in orch_workflow::builtin_names() {
        if rows.iter().any(|(n, _, _)| n == name) {
            continue;
        }
        let description = orch_workflow::builtin(name)
            .and_then(|t| orch_workflow::load(t, name).ok())
            .map(|wf| wf.description)
            .unwrap_or_default();
        rows.push((name.to_owned(), "built in".to_owned(), description));
    }
    let rows: Vec<[String; 3]> = rows
        .iter()
        .map(|(n, f, d)| [n, f, d].map(|v| out::one_line(v).into_owned()))
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

/// `--input k=v` pairs; a key given twice is an error.
pub(crate) fn parse_inputs(pairs: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let mut inputs = BTreeMap::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(CliError::Usage(format!(
                "--input {pair:?}: write it as name=value"
            )));
        };
        if inputs.insert(k.trim().to_owned(), v.to_owned()).is_some() {
            return Err(CliError::Usage(format!(
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
) -> Result<Exit, CliError> {
    let (wf, origin) = load(name)?;
    let mut checked = "file";
    if let Some(caller) = caller {
        let setup = Setup::load(global)?;
        let registry = setup.registry()?;
        let inputs = parse_inputs(pairs)?;
        orch_workflow::check_run(&wf, &registry.ids(), &setup.config.acl, caller, &inputs)
            .map_err(report)?;
        checked = "file, agents, ACL and inputs";
    }
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

/// Every error of a run check, one per line; exit 3 when all are ACL
/// denials, else 2.
pub(crate) fn report(errors: Vec<WorkflowError>) -> CliError {
    let all_denied = errors.iter().all(WorkflowError::is_denied);
    let text = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    if all_denied {
        CliError::Denied(format!("denied: {text}"))
    } else {
        CliError::Usage(text)
    }
}

pub(crate) fn target(step: &orch_workflow::Step) -> String {
    match &step.target {
        Target::Agent(agent) => agent.clone(),
        Target::Route => "route: auto".to_owned(),
    }
}

/// The DAG as a Mermaid flowchart.
fn mermaid(wf: &Workflow) -> String {
    let mut s = format!(
        "---\ntitle: {}\n---\nflowchart LR\n",
        out::one_line(&wf.name)
    );
    for step in &wf.steps {
        let mut label = format!("{}<br/>{}", step.id, target(step));
        if step.gate.is_some() {
            label.push_str("<br/>gate");
        }
        if step.when.is_some() {
            label.push_str("<br/>when");
        }
        s.push_str(&format!("  {}[\"{}\"]\n", step.id, label.replace('"', "'")));
    }
    for (from, to) in wf.plan().edges() {
        s.push_str(&format!("  {from} --> {to}\n"));
    }
    s
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
            crate::args::format_duration(wf.timeout_of(step)),
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
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str("\nparallel levels:\n");
    for (i, level) in wf.plan().levels().iter().enumerate() {
        s.push_str(&format!("  {}. {}\n", i + 1, level.join(", ")));
    }
    s
}
