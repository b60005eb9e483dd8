//! `orch mcp --as AGENT`: orch's operations as MCP tools over stdio, for an
//! agent's MCP client (OpenClaw's `mcp.servers`). A front end like the
//! command line: each tool translates its arguments into a request of the
//! application layer and its answer into structured content plus a short
//! text; the logic is the application layer's.
//!
//! Identity comes from the server's start (`--as`, `$ORCH_AGENT`), never
//! from a tool's arguments: every call acts as that agent, so the ACL
//! holds. Inside an orch task (`$ORCH_PARENT_RUN`) its delegations are
//! sub-delegations of that run. Only protocol goes to stdout; logs go to
//! stderr (the tracing subscriber's writer).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orch_delegate::Outcome;
use orch_delegate::orch_handoff::{Artifact, Confidence, Handoff, RunId, Status};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ProgressToken,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{
    ErrorData as McpError, Peer, RoleServer, ServerHandler, ServiceExt, tool, tool_handler,
    tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::app::delegate::{DelegateRequest, Delegating, Delegation};
use crate::app::error::{AppError, Exit};
use crate::app::handoff::HandoffFields;
use crate::app::wiring::{Settings, Setup};
use crate::front::cli::args::{GlobalArgs, McpArgs};

/// The resources: a delegation's handoff, a workflow run's summary.
const HANDOFF_URI: &str = "orch://handoff/{runId}";
const WORKFLOW_URI: &str = "orch://workflow/{runId}";

/// The longest `delegate_wait` waits in one call.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Runs the server until the client closes stdin.
pub(crate) async fn serve(global: &GlobalArgs, args: McpArgs) -> Result<Exit, AppError> {
    let settings = global.settings();
    let setup = Setup::load(&settings)?;
    let registry = setup.registry()?;
    if registry.get(&args.agent).is_none() {
        return Err(AppError::Usage(format!(
            "--as {}: not an agent of the registry (agents: {})",
            args.agent,
            registry.ids().join(", ")
        )));
    }
    if args.print_config.is_some() {
        crate::front::out::print_json(&openclaw_config(&setup, &args.agent)?)?;
        return Ok(Exit::Ok);
    }
    let progress: Listeners = Arc::new(Mutex::new(HashMap::new()));
    let heard = Arc::clone(&progress);
    let delegating = Delegating::open(setup, None, move |event| {
        // A retry, an acknowledgement or a re-ask of a call that asked for
        // progress.
        let listener = heard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(event.run_id())
            .cloned();
        if let Some(l) = listener {
            l.say(event.to_string());
        }
    })
    .await?;
    let server = Orch {
        agent: args.agent,
        parent: args.parent.filter(|p| !p.trim().is_empty()),
        settings: Arc::new(settings),
        delegating: Arc::new(delegating),
        started: Arc::new(Mutex::new(HashMap::new())),
        progress,
        tool_router: Orch::tool_router() + Orch::workflow_router(),
    };
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| AppError::Internal(format!("MCP: the session did not start: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| AppError::Internal(format!("MCP: the session ended with an error: {e}")))?;
    Ok(Exit::Ok)
}

/// The `mcp` block of OpenClaw's openclaw.json that starts this server as
/// `agent`: this binary, the store it uses (as a descriptor, so the server
/// finds it from any directory), and a request timeout a delegation fits in
/// (OpenClaw's default is shorter than an agent's work).
fn openclaw_config(setup: &Setup, agent: &str) -> Result<serde_json::Value, AppError> {
    let exe = std::env::current_exe()
        .map_err(|e| AppError::Internal(format!("cannot tell where this binary is: {e}")))?;
    let timeout = setup.config.delegation.timeout.0 + Duration::from_secs(60);
    Ok(serde_json::json!({
        "mcp": {
            "servers": {
                format!("orch-{agent}"): {
                    "command": exe.display().to_string(),
                    "args": ["mcp", "--as", agent],
                    "env": { "ORCH_STORE": setup.store_descriptor() },
                    "requestTimeoutMs": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                }
            }
        }
    }))
}

/// Who hears a delegation's progress: the call's peer and token.
#[derive(Clone)]
struct Listener {
    peer: Peer<RoleServer>,
    token: ProgressToken,
    /// Progress so far (each message counts one up).
    step: Arc<Mutex<f64>>,
}

impl Listener {
    /// The caller of `ctx`, if it gave a progress token.
    fn of(ctx: &RequestContext<RoleServer>) -> Option<Self> {
        Some(Self {
            peer: ctx.peer.clone(),
            token: ctx.meta.get_progress_token()?,
            step: Arc::new(Mutex::new(0.0)),
        })
    }

    fn say(&self, message: String) {
        let progress = {
            let mut step = self.step.lock().unwrap_or_else(PoisonError::into_inner);
            *step += 1.0;
            *step
        };
        let (peer, param) = (
            self.peer.clone(),
            ProgressNotificationParam::new(self.token.clone(), progress).with_message(message),
        );
        tokio::spawn(async move {
            let _ = peer.notify_progress(param).await;
        });
    }
}

type Listeners = Arc<Mutex<HashMap<RunId, Listener>>>;

/// A delegation started by `delegate_start`, until `delegate_wait` takes
/// its outcome.
type Started = Arc<Mutex<HashMap<RunId, JoinHandle<Result<Delegation, AppError>>>>>;

/// The server: one agent's view of orch.
#[derive(Clone)]
pub(crate) struct Orch {
    agent: String,
    parent: Option<String>,
    settings: Arc<Settings>,
    delegating: Arc<Delegating>,
    started: Started,
    progress: Listeners,
    tool_router: ToolRouter<Self>,
}

// ---------------------------------------------------------------------------
// Tool arguments and answers (their JSON Schemas are what the model sees).

/// `delegate` and `delegate_start`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DelegateParams {
    /// The agent to give the task to, or "auto" to let orch pick the best
    /// agent you may delegate to.
    agent: String,
    /// The task, self-contained: the agent sees nothing else.
    task: String,
    /// How long to wait for the answer, in seconds (default: the
    /// configuration's delegation timeout).
    #[schemars(range(min = 1, max = 604_800))]
    timeout_seconds: Option<u64>,
    /// A Discord channel whose recent messages are added to the task.
    channel_context: Option<String>,
    /// How many recent messages of that channel (default 20).
    #[schemars(range(min = 1, max = 1000))]
    channel_messages: Option<usize>,
    /// Have the agent's validator check a complete or partial answer.
    #[serde(default)]
    validate: bool,
    /// The run id of the orch task you are working on, making this a
    /// sub-delegation of it. Leave it out when you work on one task: orch
    /// finds it.
    parent: Option<String>,
}

/// An agent's answer to a delegation.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HandoffAnswer {
    /// The delegation's run id.
    run_id: String,
    /// The agent that answered (or was asked).
    agent: String,
    /// complete, partial, blocked, failed or timed-out.
    status: String,
    /// The agent's result (absent when no valid answer came).
    result: Option<String>,
    /// high, medium or low, when the agent said.
    confidence: Option<String>,
    /// The agent's notes.
    notes: Option<String>,
    /// Paths or URLs the agent produced.
    artifacts: Vec<String>,
    /// For agent "auto": the agent orch chose.
    routed_to: Option<String>,
}

/// `delegate_start`'s answer.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StartedAnswer {
    /// The run id to pass to `delegate_wait`.
    run_id: String,
    /// The agent the task went to (after routing, for "auto").
    agent: String,
}

/// `delegate_wait`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitParams {
    /// The run id `delegate_start` gave.
    run_id: String,
    /// How long to wait in this call (at most 60 s; default 30).
    #[schemars(range(min = 0, max = 60))]
    wait_seconds: Option<u64>,
}

/// `delegate_wait`'s answer: the handoff, or `pending`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WaitAnswer {
    /// `pending` while the agent works; else how it ended (as `delegate`).
    status: String,
    /// The answer, once it came.
    handoff: Option<HandoffAnswer>,
}

/// `route`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteParams {
    /// The task to find an agent for.
    task: String,
}

/// `route`'s answer.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RouteAnswer {
    /// The agents you may delegate to.
    allowed: Vec<String>,
    /// The best agent, if one matched.
    best: Option<String>,
    /// Agents that matched, best first, with why.
    ranking: Vec<Ranked>,
}

/// One ranked agent.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Ranked {
    /// The agent.
    agent: String,
    /// Its score (higher is better).
    score: f64,
    /// What matched.
    reasons: Vec<String>,
}

/// `handoff_submit`: your answer to a task orch gave you.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitParams {
    /// The run id given in your task.
    run_id: String,
    /// complete, partial, blocked or failed.
    status: StatusArg,
    /// Your result: the answer itself, self-contained.
    result: String,
    /// How sure you are: high, medium or low.
    confidence: Option<ConfidenceArg>,
    /// Caveats, assumptions, what you could not do.
    notes: Option<String>,
    /// Paths or URLs you produced.
    #[serde(default)]
    artifacts: Vec<String>,
}

/// A handoff status.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StatusArg {
    /// Done.
    Complete,
    /// Done in part.
    Partial,
    /// Cannot go on without something.
    Blocked,
    /// Could not do it.
    Failed,
}

/// A confidence.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ConfidenceArg {
    /// Sure.
    High,
    /// Fairly sure.
    Medium,
    /// Unsure.
    Low,
}

/// `handoff_submit`'s answer.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SubmitAnswer {
    /// The run answered.
    run_id: String,
    /// Where the answer was stored.
    location: String,
}

/// `workflow_run`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkflowRunParams {
    /// The workflow: a name from `workflow_list`, or a file path.
    name: String,
    /// Its inputs by name (see `workflow_list` for what each takes).
    #[serde(default)]
    inputs: std::collections::BTreeMap<String, String>,
    /// Wait for the run to end (or pause for approval) and return its
    /// summary (default); false: return its run id at once.
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

/// A workflow run: its id, its status, and (when known) its summary.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunAnswer {
    /// The workflow run id.
    run_id: String,
    /// running, completed, completed-with-failures, failed,
    /// awaiting-approval or cancelled.
    status: String,
    /// The run summary as `orch workflow status --json` gives it (steps,
    /// output, child runs of `uses` steps as `childRuns`); absent for a run
    /// just started.
    summary: Option<serde_json::Value>,
}

/// `workflow_status`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkflowStatusParams {
    /// The workflow run id.
    run_id: String,
}

/// `workflow_approve`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveParams {
    /// The workflow run id.
    run_id: String,
    /// The step that waits for approval (a child run's as `uses-step/step`).
    step: String,
    /// true: approve; false: reject.
    approve: bool,
    /// Why (recorded with a rejection).
    reason: Option<String>,
}

/// `workflow_approve`'s answer.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApproveAnswer {
    /// The workflow run id.
    run_id: String,
    /// The step decided.
    step: String,
    /// approved or rejected.
    decision: String,
    /// The run was taken up again on this server to carry the decision out.
    resumed: bool,
}

/// `workflow_list`'s answer.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct WorkflowList {
    /// The workflows you can run.
    workflows: Vec<WorkflowEntry>,
}

/// One workflow.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct WorkflowEntry {
    /// Its name (what `workflow_run` takes).
    name: String,
    /// Its file, or "built in".
    from: String,
    /// What it does (or why it does not load).
    description: String,
}

/// `metrics`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsParams {
    /// Only what happened since: a duration back from now (24h, 7d), an RFC
    /// 3339 time or a date.
    since: Option<String>,
    /// Only delegations to this agent.
    agent: Option<String>,
}

// ---------------------------------------------------------------------------

/// A tool-level error: the application's message, as the CLI words it.
fn failed(e: &AppError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(e.to_string())])
}

/// Structured content and a short text of it.
fn answer(value: &impl Serialize, text: String) -> Result<CallToolResult, McpError> {
    let v = serde_json::to_value(value)
        .map_err(|e| McpError::internal_error(format!("cannot encode the answer: {e}"), None))?;
    let mut r = CallToolResult::structured(v);
    r.content = vec![ContentBlock::text(text)];
    Ok(r)
}

fn status_word(o: &Outcome) -> &'static str {
    use orch_delegate::OutcomeStatus as S;
    match o.status() {
        S::Complete => "complete",
        S::Partial => "partial",
        S::Blocked => "blocked",
        S::Failed => "failed",
        S::TimedOut => "timed-out",
    }
}

fn artifact_text(a: &Artifact) -> String {
    match a {
        Artifact::Plain(s) => s.clone(),
        Artifact::Ref(r) => serde_json::to_string(r).unwrap_or_default(),
    }
}

impl HandoffAnswer {
    fn of(d: &Delegation) -> Self {
        let o = &d.outcome;
        let h: Option<&Handoff> = o.handoff.as_ref();
        Self {
            run_id: o.run_id.to_string(),
            agent: o.agent.clone(),
            status: status_word(o).to_owned(),
            result: h.map(|h| h.result.clone()),
            confidence: h.and_then(|h| h.confidence).map(|c| c.as_str().to_owned()),
            notes: h.map(|h| h.notes.clone()).filter(|n| !n.is_empty()),
            artifacts: h
                .map(|h| h.artifacts.iter().map(artifact_text).collect())
                .unwrap_or_default(),
            routed_to: d.routing.as_ref().and_then(|r| r.best.clone()),
        }
    }

    /// A short rendering for the model.
    fn text(&self) -> String {
        let mut s = format!("{} ({}): {}", self.agent, self.run_id, self.status);
        if let Some(c) = &self.confidence {
            s.push_str(&format!(", confidence {c}"));
        }
        if let Some(r) = &self.result {
            s.push_str(&format!("\n{r}"));
        }
        if let Some(n) = &self.notes {
            s.push_str(&format!("\nnotes: {n}"));
        }
        s
    }
}

impl Orch {
    fn setup(&self) -> Result<Setup, AppError> {
        Setup::load(&self.settings)
    }

    /// The run a delegation of this agent is a sub-delegation of: the one
    /// `given` (it must be a task this agent is working on), else the one
    /// the server was started inside (`$ORCH_PARENT_RUN`), else the one
    /// task the ledger says it is working on (none, or several: a
    /// top-level delegation).
    async fn parent_of(&self, given: Option<String>) -> Result<Option<String>, AppError> {
        let given = given.filter(|p| !p.trim().is_empty());
        if given.is_none() && self.parent.is_some() {
            return Ok(self.parent.clone());
        }
        let open = self.delegating.open_runs(&self.agent).await?;
        match given {
            Some(p) if open.iter().any(|r| r.as_str() == p) => Ok(Some(p)),
            Some(p) => Err(AppError::Usage(format!(
                "parent {p}: not a task {} is working on ({})",
                self.agent,
                if open.is_empty() {
                    "it has none open".to_owned()
                } else {
                    format!(
                        "open: {}",
                        open.iter()
                            .map(RunId::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ))),
            None if open.len() == 1 => Ok(open.first().map(|r| r.as_str().to_owned())),
            None => Ok(None),
        }
    }

    /// The application's request for `p`, acting as this server's agent.
    async fn request(
        &self,
        mut p: DelegateParams,
        run_id: RunId,
    ) -> Result<DelegateRequest, AppError> {
        let parent = self.parent_of(p.parent.take()).await?;
        Ok(DelegateRequest {
            agent: p.agent,
            task: p.task,
            caller: self.agent.clone(),
            timeout: p.timeout_seconds.map(Duration::from_secs),
            parent,
            validate: p.validate,
            validator: None,
            channel_context: p.channel_context,
            channel_messages: p
                .channel_messages
                .unwrap_or(orch_workflow::DEFAULT_CONTEXT_MESSAGES),
            run_id: Some(run_id),
        })
    }

    /// A delegation about to be sent: its run id (chosen now, so progress
    /// and `delegate_wait` can name it), the request, and for "auto" the
    /// routing.
    async fn prepare(
        &self,
        p: DelegateParams,
    ) -> Result<(RunId, DelegateRequest, Option<app::route::Routing>), AppError> {
        let run = RunId::generate();
        let request = self.request(p, run.clone()).await?;
        let routing = self.delegating.route(&request)?;
        Ok((run, request, routing))
    }

    /// Progress of run `run` goes to the caller of `ctx`, if it asked.
    fn listen(&self, run: &RunId, ctx: &RequestContext<RoleServer>) -> Option<Listener> {
        let l = Listener::of(ctx)?;
        self.progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run.clone(), l.clone());
        Some(l)
    }

    fn unlisten(&self, run: &RunId) {
        self.progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(run);
    }
}

#[tool_router]
impl Orch {
    /// Give a task to another agent and wait for its answer (the handoff:
    /// status, result, confidence, notes, artifacts). The ACL decides whom
    /// you may delegate to; "auto" picks the best of them. Progress
    /// notifications say when it was sent and each retry; cancelling the
    /// call cancels the delegation.
    #[tool(output_schema = rmcp::handler::server::common::schema_for_output::<HandoffAnswer>())]
    async fn delegate(
        &self,
        Parameters(p): Parameters<DelegateParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let (run, request, routing) = match self.prepare(p).await {
            Ok(prepared) => prepared,
            Err(e) => return Ok(failed(&e)),
        };
        let listener = self.listen(&run, &ctx);
        if let Some(l) = &listener {
            let to = routing
                .as_ref()
                .and_then(|r| r.best.clone())
                .unwrap_or_else(|| request.agent.clone());
            l.say(format!("sending the task to {to} (run {run})"));
        }
        let done = self.delegating.run(request, routing, &ctx.ct).await;
        self.unlisten(&run);
        match done {
            Ok(d) => {
                let a = HandoffAnswer::of(&d);
                let text = a.text();
                answer(&a, text)
            }
            Err(e) => Ok(failed(&e)),
        }
    }

    /// Start a delegation and return its run id at once; collect the answer
    /// with `delegate_wait`. For clients whose tool calls time out sooner
    /// than an agent answers.
    #[tool(output_schema = rmcp::handler::server::common::schema_for_output::<StartedAnswer>())]
    async fn delegate_start(
        &self,
        Parameters(p): Parameters<DelegateParams>,
    ) -> Result<CallToolResult, McpError> {
        let (run, request, routing) = match self.prepare(p).await {
            Ok(prepared) => prepared,
            Err(e) => return Ok(failed(&e)),
        };
        let agent = routing
            .as_ref()
            .and_then(|r| r.best.clone())
            .unwrap_or_else(|| request.agent.clone());
        let delegating = Arc::clone(&self.delegating);
        // Runs until it ends: the server's end drops it.
        let task = tokio::spawn(async move {
            let never = CancellationToken::new();
            delegating.run(request, routing, &never).await
        });
        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run.clone(), task);
        let a = StartedAnswer {
            run_id: run.to_string(),
            agent: agent.clone(),
        };
        answer(
            &a,
            format!("started {run} with {agent}: call delegate_wait"),
        )
    }

    /// Wait up to `wait_seconds` (at most 60) for a delegation that
    /// `delegate_start` started: its answer, or status "pending".
    #[tool(output_schema = rmcp::handler::server::common::schema_for_output::<WaitAnswer>())]
    async fn delegate_wait(
        &self,
        Parameters(p): Parameters<WaitParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let run = match RunId::new(&p.run_id) {
            Ok(r) => r,
            Err(e) => {
                return Ok(failed(&AppError::Usage(format!(
                    "run_id {:?}: {e}",
                    p.run_id
                ))));
            }
        };
        let Some(mut task) = self
            .started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&run)
        else {
            return Ok(failed(&AppError::Usage(format!(
                "no delegation {run} was started by delegate_start on this server (or its answer was already taken)"
            ))));
        };
        let wait = Duration::from_secs(p.wait_seconds.unwrap_or(30)).min(MAX_WAIT);
        let ended = tokio::select! {
            r = &mut task => Some(r),
            () = tokio::time::sleep(wait) => None,
            () = ctx.ct.cancelled() => None,
        };
        let Some(joined) = ended else {
            // Still working: kept for the next wait.
            self.started
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(run.clone(), task);
            let a = WaitAnswer {
                status: "pending".into(),
                handoff: None,
            };
            return answer(&a, format!("{run}: pending, call delegate_wait again"));
        };
        match joined {
            Ok(Ok(d)) => {
                let h = HandoffAnswer::of(&d);
                let text = h.text();
                let a = WaitAnswer {
                    status: h.status.clone(),
                    handoff: Some(h),
                };
                answer(&a, text)
            }
            Ok(Err(e)) => Ok(failed(&e)),
            Err(e) => Ok(failed(&AppError::Internal(format!(
                "the delegation {run} stopped: {e}"
            )))),
        }
    }

    /// Rank the agents you may delegate to for a task, best first, with
    /// what matched.
    #[tool(output_schema = rmcp::handler::server::common::schema_for_output::<RouteAnswer>())]
    async fn route(
        &self,
        Parameters(p): Parameters<RouteParams>,
    ) -> Result<CallToolResult, McpError> {
        let routing = match app::route::route(
            self.delegating.registry(),
            &self.delegating.setup().config.acl,
            &p.task,
            &self.agent,
        ) {
            Ok(r) => r,
            Err(e) => return Ok(failed(&e)),
        };
        let a = RouteAnswer {
            allowed: routing.allowed.clone(),
            best: routing.best.clone(),
            ranking: routing
                .ranking
                .iter()
                .map(|c| Ranked {
                    agent: c.agent.clone(),
                    score: c.score,
                    reasons: c.reasons.clone(),
                })
                .collect(),
        };
        let text = match &a.best {
            Some(b) => format!("best: {b} (you may delegate to {})", a.allowed.join(", ")),
            None => format!(
                "no agent matched; you may delegate to {}",
                a.allowed.join(", ")
            ),
        };
        answer(&a, text)
    }

    /// Answer a task orch gave you: your handoff for its run id (stored
    /// where the delegating agent waits for it). One answer per run: a
    /// second is refused.
    #[tool(output_schema = rmcp::handler::server::common::schema_for_output::<SubmitAnswer>())]
    async fn handoff_submit(
        &self,
        Parameters(p): Parameters<SubmitParams>,
    ) -> Result<CallToolResult, McpError> {
        let run_id = match RunId::new(&p.run_id) {
            Ok(r) => r,
            Err(e) => {
                return Ok(failed(&AppError::Usage(format!(
                    "run_id {:?}: {e}",
                    p.run_id
                ))));
            }
        };
        let fields = HandoffFields {
            run_id,
            agent: self.agent.clone(),
            status: match p.status {
                StatusArg::Complete => Status::Complete,
                StatusArg::Partial => Status::Partial,
                StatusArg::Blocked => Status::Blocked,
                StatusArg::Failed => Status::Failed,
            },
            result: p.result,
            confidence: p.confidence.map(|c| match c {
                ConfidenceArg::High => Confidence::High,
                ConfidenceArg::Medium => Confidence::Medium,
                ConfidenceArg::Low => Confidence::Low,
            }),
            notes: p.notes.unwrap_or_default(),
            artifacts: p.artifacts,
        };
        let stored = async {
            let handoff = fields.build()?;
            app::handoff::submit_answer(&self.setup()?, handoff).await
        };
        match stored.await {
            Ok(s) => {
                let a = SubmitAnswer {
                    run_id: s.run_id.to_string(),
                    location: s.location.clone(),
                };
                answer(
                    &a,
                    format!("stored the answer to {} at {}", s.run_id, s.location),
                )
            }
            Err(e) => Ok(failed(&e)),
        }
    }
}

/// A workflow run's progress, told to the caller that asked for it.
struct RunProgress(Listener);

impl orch_workflow::Progress for RunProgress {
    fn event(&self, e: &orch_workflow::ProgressEvent) {
        let (step, text) = crate::front::cli::workflow::exec::event_text(e);
        self.0.say(format!("{step} {text}"));
    }
}

impl Orch {
    /// Checks and runs a workflow for this agent; with `wait`, to its end.
    async fn run_workflow(
        &self,
        p: WorkflowRunParams,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<RunAnswer, AppError> {
        let setup = self.setup()?;
        let request = app::workflow::RunRequest {
            workflow: p.name,
            inputs: p.inputs,
            caller: self.agent.clone(),
        };
        let checked = app::workflow::check(&setup, request)?;
        let registry = checked.registry.clone();
        let run_id = RunId::generate_workflow(&checked.loaded.workflow.name);
        let mut exec = app::workflow::executor(setup, registry, |_| {}).await?;
        if let (true, Some(listener)) = (p.wait, Listener::of(ctx)) {
            exec = exec.with_progress(Arc::new(RunProgress(listener)));
        }
        let store = Arc::clone(exec.store());
        if !p.wait {
            // Runs on in this server until it ends or pauses.
            let id = run_id.clone();
            tokio::spawn(async move {
                let never = CancellationToken::new();
                if let Err(e) = app::workflow::run(&exec, checked, id.clone(), &never).await {
                    tracing::warn!(run = %id, error = %e, "a workflow run started by workflow_run failed");
                }
            });
            return Ok(RunAnswer {
                run_id: run_id.to_string(),
                status: "running".into(),
                summary: None,
            });
        }
        let summary = app::workflow::run(&exec, checked, run_id, &ctx.ct).await?;
        let tree = app::workflow::tree(&*store, summary).await?;
        Ok(RunAnswer {
            run_id: tree.summary.run_id.to_string(),
            status: crate::front::cli::workflow::exec::word(tree.summary.status),
            summary: serde_json::to_value(&tree).ok(),
        })
    }
}

#[tool_router(router = workflow_router)]
impl Orch {
    /// The workflows you can run (files in ./workflows/ and the built-in
    /// ones), with what each does.
    #[tool(output_schema = rmcp::handler::server::common::schema_for_output::<WorkflowList>())]
    async fn workflow_list(&self) -> Result<CallToolResult, McpError> {
        let a = WorkflowList {
            workflows: app::workflow::list()
                .into_iter()
                .map(|l| WorkflowEntry {
                    name: l.name,
                    from: l.from,
                    description: l.description,
                })
                .collect(),
        };
        let text = a
            .workflows
            .iter()
            .map(|w| format!("{}: {}", w.name, w.description))
            .collect::<Vec<_>>()
            .join("\n");
        answer(&a, text)
    }

    /// Run a workflow as you (every step is checked against your ACL before
    /// anything is sent). By default waits for its end and returns its
    /// summary, with progress notifications per step; cancelling the call
    /// cancels the run.
    #[tool(output_schema = rmcp::handler::server::common::schema_for_output::<RunAnswer>())]
    async fn workflow_run(
        &self,
        Parameters(p): Parameters<WorkflowRunParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        match self.run_workflow(p, &ctx).await {
            Ok(a) => {
                let text = match a
                    .summary
                    .as_ref()
                    .and_then(|s| s.get("output"))
                    .and_then(|o| o.as_str())
                {
                    Some(out) => format!("run {}: {}\n{out}", a.run_id, a.status),
                    None => format!("run {}: {}", a.run_id, a.status),
                };
                answer(&a, text)
            }
            Err(e) => Ok(failed(&e)),
        }
    }

    /// Approve (or reject) a workflow step that waits for a human's or a
    /// lead's decision; the run then goes on. Only the agents the
    /// configuration names as approvers may (default: the manager).
    #[tool(output_schema = rmcp::handler::server::common::schema_for_output::<ApproveAnswer>())]
    async fn workflow_approve(
        &self,
        Parameters(p): Parameters<ApproveParams>,
    ) -> Result<CallToolResult, McpError> {
        let decided = async {
            let setup = self.setup()?;
            let approvers = &setup.config.workflows.approvers;
            if !approvers.contains(&self.agent) {
                return Err(AppError::Denied(format!(
                    "denied: {} may not approve workflow steps (approvers: {}; see `workflows.approvers`)",
                    self.agent,
                    approvers.join(", ")
                )));
            }
            let id = app::workflow::run_id(&p.run_id)?;
            let decision = if p.approve {
                orch_workflow::ApprovalDecision::Approve
            } else {
                orch_workflow::ApprovalDecision::Reject {
                    reason: p
                        .reason
                        .clone()
                        .filter(|r| !r.trim().is_empty())
                        .unwrap_or_else(|| format!("rejected by {}", self.agent)),
                }
            };
            app::workflow::approve(&setup, &id, &p.step, decision).await?;
            // Nobody runs a paused run: it is taken up here, as `orch
            // workflow resume` would. A run some process still runs (a
            // terminal asking its own approver) is left to it.
            let paused = app::workflow::run_status(&setup, &id).await?
                == orch_workflow::RunStatus::AwaitingApproval;
            if !paused {
                return Ok((id, false));
            }
            let registry = setup.registry()?;
            let exec = app::workflow::executor(setup, registry, |_| {}).await?;
            let run = id.clone();
            tokio::spawn(async move {
                let never = CancellationToken::new();
                let opts = orch_workflow::ResumeOptions::default();
                if let Err(e) = app::workflow::resume(&exec, &run, &opts, &never).await {
                    tracing::warn!(run = %run, error = %e, "resuming an approved run failed");
                }
            });
            Ok::<_, AppError>((id, true))
        };
        match decided.await {
            Ok((id, resumed)) => {
                let a = ApproveAnswer {
                    run_id: id.to_string(),
                    step: p.step.clone(),
                    decision: if p.approve { "approved" } else { "rejected" }.to_owned(),
                    resumed,
                };
                let text = if resumed {
                    format!(
                        "{} step `{}` of {}; the run goes on",
                        a.decision, a.step, a.run_id
                    )
                } else {
                    format!("{} step `{}` of {}", a.decision, a.step, a.run_id)
                };
                answer(&a, text)
            }
            Err(e) => Ok(failed(&e)),
        }
    }

    /// A workflow run's summary: its status, each step's, its output, and
    /// its child runs.
    #[tool(output_schema = rmcp::handler::server::common::schema_for_output::<RunAnswer>())]
    async fn workflow_status(
        &self,
        Parameters(p): Parameters<WorkflowStatusParams>,
    ) -> Result<CallToolResult, McpError> {
        let found = async {
            let id = app::workflow::run_id(&p.run_id)?;
            app::workflow::status_tree(&self.setup()?, &id).await
        };
        match found.await {
            Ok(tree) => {
                let a = RunAnswer {
                    run_id: tree.summary.run_id.to_string(),
                    status: crate::front::cli::workflow::exec::word(tree.summary.status),
                    summary: serde_json::to_value(&tree).ok(),
                };
                let text = format!("run {}: {}", a.run_id, a.status);
                answer(&a, text)
            }
            Err(e) => Ok(failed(&e)),
        }
    }

    /// Metrics over delegations and workflow runs: per agent, per caller,
    /// per workflow (the JSON report of `orch metrics json`).
    #[tool(output_schema = rmcp::handler::server::common::schema_for_output::<orch_metrics::Report>())]
    async fn metrics(
        &self,
        Parameters(p): Parameters<MetricsParams>,
    ) -> Result<CallToolResult, McpError> {
        let report = async {
            let since = match &p.since {
                Some(s) => Some(
                    s.parse::<orch_metrics::Since>()
                        .map_err(|e| AppError::Usage(format!("since {s:?}: {e}")))?,
                ),
                None => None,
            };
            let request = app::metrics::MetricsRequest {
                since,
                agents: p.agent.clone().into_iter().collect(),
                ..Default::default()
            };
            app::metrics::report(&self.setup()?, request).await
        };
        match report.await {
            Ok(r) => {
                let text = format!(
                    "{} delegations, {} workflows",
                    r.totals.delegations,
                    r.workflows.len()
                );
                answer(&r, text)
            }
            Err(e) => Ok(failed(&e)),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Orch {
    async fn list_resource_templates(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, McpError> {
        use rmcp::model::{ListResourceTemplatesResult, ResourceTemplate};
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(HANDOFF_URI, "handoff")
                .with_description("A delegation's handoff (the agent's answer), as JSON.")
                .with_mime_type("application/json"),
            ResourceTemplate::new(WORKFLOW_URI, "workflow run")
                .with_description(
                    "A workflow run's summary with its child runs, as `workflow_status` gives it.",
                )
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, McpError> {
        use rmcp::model::{ReadResourceResult, ResourceContents};
        let uri = request.uri.clone();
        let not_found = |why: String| {
            McpError::resource_not_found(why, Some(serde_json::json!({ "uri": uri })))
        };
        let read = async {
            let setup = self.setup()?;
            if let Some(id) = uri.strip_prefix("orch://handoff/") {
                let run =
                    RunId::new(id).map_err(|e| AppError::Usage(format!("run id {id:?}: {e}")))?;
                // A sub-delegation's answer lives in the sub scope.
                let top =
                    app::handoff::show(&setup, &app::handoff::key_of(run.clone(), false)).await;
                let handoff = match top {
                    Ok(h) => h,
                    Err(_) => app::handoff::show(&setup, &app::handoff::key_of(run, true)).await?,
                };
                return Ok(Some(serde_json::to_value(&handoff).unwrap_or_default()));
            }
            if let Some(id) = uri.strip_prefix("orch://workflow/") {
                let run = app::workflow::run_id(id)?;
                let tree = app::workflow::status_tree(&setup, &run).await?;
                return Ok(Some(serde_json::to_value(&tree).unwrap_or_default()));
            }
            Ok::<_, AppError>(None)
        };
        match read.await {
            Ok(Some(value)) => {
                let text = serde_json::to_string_pretty(&value).unwrap_or_default();
                Ok(ReadResourceResult::new(vec![
                    ResourceContents::text(text, request.uri.clone())
                        .with_mime_type("application/json"),
                ])
                .into())
            }
            Ok(None) => Err(not_found(format!(
                "no resource {uri}: orch has {HANDOFF_URI} and {WORKFLOW_URI}"
            ))),
            Err(e) => Err(not_found(e.to_string())),
        }
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
            .with_server_info(Implementation::new("orch", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "orch delegates tasks between agents. You are {}: `delegate` gives a task to another agent and waits for its answer (the ACL says to whom; `route` ranks them); `delegate_start`/`delegate_wait` do the same in two calls; `handoff_submit` answers a task orch gave you, by its run id; `workflow_list`, `workflow_run` and `workflow_status` run the team's workflows; `metrics` reports on past work.",
                self.agent
            ))
    }
}
