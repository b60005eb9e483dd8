//! Workflows: finding and loading one, checking it for a caller, previewing
//! (dry run), running, resuming and approving runs, and reading them back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use orch_delegate::DelegationEvent;
use orch_handoff::RunId;
use orch_registry::Registry;
use orch_workflow::{
    ApprovalDecision, ExecError, Executor, Preview, ResolvedInputs, ResumeOptions, RunOptions,
    RunStatus, RunSummary, Workflow, WorkflowError,
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::app::context::Channels;
use crate::app::error::AppError;
use crate::app::route::AclRouter;
use crate::app::wiring::Setup;

/// Largest workflow file read.
const MAX_READ: u64 = 2 * 1024 * 1024;

/// The text of workflow `name` (a file, `./workflows/<name>.yaml`, or a
/// built-in) and where it came from.
pub(crate) fn source_of(name: &str) -> Result<(String, String), AppError> {
    first_of(&[PathBuf::from(name), local_file(name)], name).unwrap_or_else(|| {
        let known: Vec<&str> = orch_workflow::builtin_names().collect();
        Err(AppError::Usage(format!(
            "no workflow {name:?}: not a file, not in ./workflows/, and not built in ({})",
            known.join(", ")
        )))
    })
}

/// `./workflows/<name>.yaml`.
fn local_file(name: &str) -> PathBuf {
    Path::new("workflows").join(format!("{name}.yaml"))
}

/// The text and origin of the first of `files` that is a file, else of
/// the built-in workflow `name`; `None` if there is neither.
fn first_of(files: &[PathBuf], name: &str) -> Option<Result<(String, String), AppError>> {
    if let Some(file) = files.iter().find(|f| f.is_file()) {
        return Some(read(file).map(|text| (text, normalise(file).display().to_string())));
    }
    orch_workflow::builtin(name)
        .map(|text| Ok((text.to_owned(), orch_workflow::builtin_origin(name))))
}

/// Finds the workflows that `uses` names: a name with a `/` or ending in
/// `.yaml`/`.yml` is a file, relative to the directory of the workflow
/// that uses it (a built-in's: the current directory); any other name is
/// `./workflows/<name>.yaml`, else a built-in. Paths are kept lexically
/// normalised, so that one file always has one origin (cycles are found
/// by it).
pub(crate) struct FsResolver;

impl orch_workflow::Resolve for FsResolver {
    fn resolve(&self, name: &str, from: &str) -> Result<orch_workflow::Resolved, String> {
        let is_path = name.contains('/') || name.ends_with(".yaml") || name.ends_with(".yml");
        if is_path {
            let base = if from.starts_with("<built-in ") {
                PathBuf::new()
            } else {
                Path::new(from)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            };
            let path = normalise(&base.join(name));
            if !path.is_file() {
                return Err(format!("no workflow file {}", path.display()));
            }
            let text = read(&path).map_err(|e| e.to_string())?;
            return Ok(orch_workflow::Resolved {
                origin: path.display().to_string(),
                text,
            });
        }
        match first_of(&[local_file(name)], name) {
            Some(Ok((text, origin))) => Ok(orch_workflow::Resolved { origin, text }),
            Some(Err(e)) => Err(e.to_string()),
            None => Err(format!(
                "unknown workflow `{name}`: not in ./workflows/, and not built in ({})",
                orch_workflow::builtin_names()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// `path` without `.` components and with `..` taken against what comes
/// before it (lexically: no file system access).
fn normalise(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if out
                    .components()
                    .next_back()
                    .is_some_and(|l| matches!(l, Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn read(path: &Path) -> Result<String, AppError> {
    use std::io::Read;
    let cannot =
        |e: std::io::Error| AppError::Usage(format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    // The size cap names the file's real size, not what a capped read got
    // (and a cut in the middle of a character is no UTF-8 error).
    let size = file.metadata().map_err(cannot)?.len();
    orch_workflow::check_file_size(size, &path.display().to_string())
        .map_err(|e| AppError::Usage(e.to_string()))?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_READ)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > size {
        // It grew while being read: what was read is judged.
        orch_workflow::check_file_size(bytes.len() as u64, &path.display().to_string())
            .map_err(|e| AppError::Usage(e.to_string()))?;
    }
    String::from_utf8(bytes).map_err(|e| {
        AppError::Usage(format!(
            "{}: not UTF-8 (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// A loaded workflow, its text (stored with the run, so resume never
/// depends on the file) and its origin.
pub(crate) struct Loaded {
    pub(crate) workflow: Workflow,
    pub(crate) text: String,
    pub(crate) origin: String,
}

/// Finds and loads workflow `name` (syntax, shape and meaning within the
/// file).
pub(crate) fn load(name: &str) -> Result<Loaded, AppError> {
    let (text, origin) = source_of(name)?;
    let workflow = orch_workflow::load_with(&text, &origin, &FsResolver)
        .map_err(|e| AppError::Usage(e.to_string()))?;
    Ok(Loaded {
        workflow,
        text,
        origin,
    })
}

/// One workflow a caller can run.
#[derive(Debug, Serialize)]
pub(crate) struct Listed {
    pub(crate) name: String,
    /// The file, or `built in`.
    pub(crate) from: String,
    /// Its description, or why it does not load.
    pub(crate) description: String,
}

/// The workflows in `./workflows/` and the built-in ones a file of the same
/// name does not shadow.
pub(crate) fn list() -> Vec<Listed> {
    let mut rows: Vec<Listed> = Vec::new();
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
                orch_workflow::load_with(&t, &origin, &FsResolver)
                    .map_err(|e| AppError::Usage(e.to_string()))
            }) {
                Ok(wf) => wf.description,
                Err(e) => format!("(invalid: {e})"),
            };
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            rows.push(Listed {
                name,
                from: origin,
                description,
            });
        }
    }
    for name in orch_workflow::builtin_names() {
        if rows.iter().any(|r| r.name == name) {
            continue;
        }
        let description = orch_workflow::builtin(name)
            .and_then(|t| {
                orch_workflow::load_with(t, &orch_workflow::builtin_origin(name), &FsResolver).ok()
            })
            .map(|wf| wf.description)
            .unwrap_or_default();
        rows.push(Listed {
            name: name.to_owned(),
            from: "built in".to_owned(),
            description,
        });
    }
    rows
}

/// Every error of a workflow check as one application error: denied when
/// every one is an ACL denial, else a usage error.
pub(crate) fn report(errors: Vec<WorkflowError>) -> AppError {
    let all_denied = errors.iter().all(WorkflowError::is_denied);
    let text = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    if all_denied {
        AppError::Denied(format!("denied: {text}"))
    } else {
        AppError::Usage(text)
    }
}

/// Maps an executor error to the application's error.
pub(crate) fn map_exec(e: ExecError) -> AppError {
    match e {
        ExecError::NotFound { .. }
        | ExecError::Usage(_)
        | ExecError::Workflow(_)
        | ExecError::Refused(_) => AppError::Usage(e.to_string()),
        _ => AppError::Internal(e.to_string()),
    }
}

/// A workflow run id as given by a user.
pub(crate) fn run_id(id: &str) -> Result<RunId, AppError> {
    RunId::new(id).map_err(|e| AppError::Usage(format!("workflow run {id:?}: {e}")))
}

/// A run to start: which workflow, its inputs, on whose behalf.
#[derive(Clone, Debug)]
pub(crate) struct RunRequest {
    pub(crate) workflow: String,
    pub(crate) inputs: BTreeMap<String, String>,
    pub(crate) caller: String,
}

/// A workflow checked for a caller (agents, ACL, inputs), ready to preview
/// or run.
pub(crate) struct Checked {
    pub(crate) loaded: Loaded,
    /// The inputs with defaults filled in.
    pub(crate) inputs: ResolvedInputs,
    pub(crate) caller: String,
    pub(crate) registry: Registry,
}

/// Loads the request's workflow and checks it for its caller: every error,
/// not the first.
pub(crate) fn check(setup: &Setup, request: RunRequest) -> Result<Checked, AppError> {
    let loaded = load(&request.workflow)?;
    let registry = setup.registry()?;
    let inputs = orch_workflow::check_run(
        &loaded.workflow,
        &registry.ids(),
        &setup.config.acl,
        &request.caller,
        &request.inputs,
    )
    .map_err(report)?;
    Ok(Checked {
        loaded,
        inputs,
        caller: request.caller,
        registry,
    })
}

/// What a run would do (the dry run): nothing is sent. The task sizes are
/// checked against the transports' limits (asked of the Delegator, which
/// sends nothing here).
pub(crate) async fn preview(setup: &Setup, checked: Checked) -> Result<Preview, AppError> {
    let store = setup.open_store().await?;
    let delegator = setup.delegator(store, &checked.registry)?;
    let wf = &checked.loaded.workflow;
    orch_workflow::check_task_sizes(wf, &checked.inputs, &delegator, &checked.caller)
        .map_err(report)?;
    let router = AclRouter {
        registry: Arc::new(checked.registry),
        policy: setup.config.acl.clone(),
    };
    Ok(Preview::build(
        wf,
        &checked.inputs,
        &checked.caller,
        &router,
    ))
}

/// The executor over the configured store and agents, with BM25 routing
/// within the ACL and Discord channel context; `observer` hears the
/// Delegator's dispatch retries. A front end adds its progress view and
/// approver.
pub(crate) async fn executor(
    setup: Setup,
    registry: Registry,
    observer: impl Fn(&DelegationEvent) + Send + Sync + 'static,
) -> Result<Executor, AppError> {
    let store = setup.open_store().await?;
    let delegator = Arc::new(setup.delegator(store, &registry)?.with_observer(observer));
    let policy = setup.config.acl.clone();
    let setup = Arc::new(setup);
    let registry = Arc::new(registry);
    Ok(Executor::new(delegator)
        .with_router(Arc::new(AclRouter {
            registry: Arc::clone(&registry),
            policy,
        }))
        .with_context_source(Arc::new(Channels { setup, registry })))
}

/// Runs a checked workflow as run `run_id` until it ends, pauses for
/// approval, or `cancel` fires.
pub(crate) async fn run(
    executor: &Executor,
    checked: Checked,
    run_id: RunId,
    cancel: &CancellationToken,
) -> Result<RunSummary, AppError> {
    let Checked {
        loaded,
        inputs,
        caller,
        ..
    } = checked;
    executor
        .check_task_sizes(&loaded.workflow, &inputs, &caller)
        .map_err(report)?;
    let opts = RunOptions {
        caller,
        inputs,
        run_id: Some(run_id),
    };
    executor
        .run(&loaded.workflow, &loaded.text, opts, cancel)
        .await
        .map_err(map_exec)
}

/// Resumes run `id` (see [`Executor::resume_with`]).
pub(crate) async fn resume(
    executor: &Executor,
    id: &RunId,
    opts: &ResumeOptions,
    cancel: &CancellationToken,
) -> Result<RunSummary, AppError> {
    executor
        .resume_with(id, opts, cancel)
        .await
        .map_err(map_exec)
}

/// The step ids of stored run `id`, in the workflow's order.
pub(crate) async fn steps_of(setup: &Setup, id: &RunId) -> Result<Vec<String>, AppError> {
    let store = setup.open_store().await?;
    let summary = orch_workflow::read_summary(&*store, id)
        .await
        .map_err(map_exec)?;
    Ok(stored_workflow(&summary)
        .map(|wf| step_paths(&wf))
        .unwrap_or_default())
}

/// The workflow a stored run runs, as it was when the run started.
pub(crate) fn stored_workflow(summary: &RunSummary) -> Result<Workflow, WorkflowError> {
    orch_workflow::load_with(
        &summary.source,
        &summary.origin,
        &orch_workflow::Stored(&summary.uses),
    )
}

/// The ids of `wf`'s steps in its order, each `uses` step followed by its
/// child workflow's as `step/child-step` (at any depth).
pub(crate) fn step_paths(wf: &Workflow) -> Vec<String> {
    let mut out = Vec::new();
    for st in &wf.steps {
        out.push(st.id.clone());
        if let orch_workflow::Target::Workflow(u) = &st.target {
            out.extend(
                step_paths(&u.workflow)
                    .into_iter()
                    .map(|p| format!("{}/{p}", st.id)),
            );
        }
    }
    out
}

/// A stored run with its child runs (those that started), at any depth.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunTree {
    #[serde(flatten)]
    pub(crate) summary: RunSummary,
    /// The child runs of its `uses` steps, by step.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) child_runs: BTreeMap<String, RunTree>,
}

/// How run `id` stands (its summary's status).
pub(crate) async fn run_status(setup: &Setup, id: &RunId) -> Result<RunStatus, AppError> {
    let store = setup.open_store().await?;
    Ok(orch_workflow::read_summary(&*store, id)
        .await
        .map_err(map_exec)?
        .status)
}

/// Run `id` and its child runs.
pub(crate) async fn status_tree(setup: &Setup, id: &RunId) -> Result<RunTree, AppError> {
    let store = setup.open_store().await?;
    tree(
        &*store,
        orch_workflow::read_summary(&*store, id)
            .await
            .map_err(map_exec)?,
    )
    .await
}

/// `summary` with its child runs read from `store` (at any depth).
pub(crate) async fn tree(
    store: &dyn orch_handoff::HandoffStore,
    summary: RunSummary,
) -> Result<RunTree, AppError> {
    let mut child_runs = BTreeMap::new();
    for (step, child) in &summary.children {
        match orch_workflow::read_summary(store, child).await {
            Ok(s) => {
                child_runs.insert(step.clone(), Box::pin(tree(store, s)).await?);
            }
            // Not started (yet).
            Err(ExecError::NotFound { .. }) => {}
            Err(e) => return Err(map_exec(e)),
        }
    }
    Ok(RunTree {
        summary,
        child_runs,
    })
}

/// Records a decision for a step paused at its approval gate; `resume`
/// then carries it out.
pub(crate) async fn approve(
    setup: &Setup,
    id: &RunId,
    step: &str,
    decision: ApprovalDecision,
) -> Result<(), AppError> {
    let store = setup.open_store().await?;
    orch_workflow::approve(&*store, id, step, decision)
        .await
        .map_err(map_exec)
}

/// What `cancel` did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Cancelling {
    /// The run.
    pub(crate) run_id: RunId,
    /// The request written.
    pub(crate) request: orch_workflow::CancelRequest,
    /// How the run stood when asked.
    pub(crate) was: RunStatus,
    /// No process runs it (paused, or interrupted): it is for the caller
    /// to take it up (`resume`), which ends it as cancelled.
    pub(crate) paused: bool,
}

/// Asks whoever runs `id` to cancel it (`by`, `reason`): a request in the
/// store that the running executor hears through its watcher. A run that
/// ended cannot be cancelled; a paused or interrupted one (no process
/// runs it) is reported so, for the front end to take it up.
pub(crate) async fn cancel(
    setup: &Setup,
    id: &RunId,
    by: &str,
    reason: &str,
) -> Result<Cancelling, AppError> {
    let store = setup.open_store().await?;
    let summary = orch_workflow::read_summary(&*store, id)
        .await
        .map_err(map_exec)?;
    let was = summary.status;
    let word = |s: RunStatus| {
        serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    match was {
        RunStatus::Completed | RunStatus::CompletedWithFailures | RunStatus::Failed => {
            return Err(AppError::Usage(format!(
                "run {id} already ended ({}): there is nothing to cancel",
                word(was)
            )));
        }
        RunStatus::Cancelled if summary.cancelled.is_some() => {
            return Err(AppError::Usage(format!("run {id} is already cancelled")));
        }
        RunStatus::Running | RunStatus::AwaitingApproval | RunStatus::Cancelled => {}
    }
    let request = orch_workflow::request_cancel(&*store, id, by, reason)
        .await
        .map_err(map_exec)?;
    Ok(Cancelling {
        run_id: id.clone(),
        request,
        was,
        paused: matches!(was, RunStatus::AwaitingApproval | RunStatus::Cancelled),
    })
}

/// One stored run, as `orch workflow runs` lists it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunRow {
    pub(crate) run_id: RunId,
    pub(crate) workflow: String,
    pub(crate) status: RunStatus,
    pub(crate) caller: String,
    pub(crate) started: Timestamp,
    pub(crate) finished: Option<Timestamp>,
}

/// Every stored run, oldest first (a summary that cannot be read is
/// skipped with a warning).
pub(crate) async fn runs(setup: &Setup) -> Result<Vec<RunRow>, AppError> {
    let store = setup.open_store().await?;
    let ids = store.list_workflow_runs().await?;
    let mut rows = Vec::new();
    for id in ids {
        match orch_workflow::read_summary(&*store, &id).await {
            Ok(s) => rows.push(RunRow {
                run_id: s.run_id,
                workflow: s.workflow,
                status: s.status,
                caller: s.caller,
                started: s.started,
                finished: s.finished,
            }),
            Err(e) => tracing::warn!("skipping workflow run {id}: {e}"),
        }
    }
    rows.sort_by(|a, b| a.started.cmp(&b.started).then(a.run_id.cmp(&b.run_id)));
    Ok(rows)
}
