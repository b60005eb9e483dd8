//! One delegation: the agent (named, or `auto`: routed within the ACL),
//! the task with its channel context, sent and waited for.

use std::time::Duration;

use orch_delegate::orch_handoff::RunId;
use orch_delegate::{DelegateError, DelegationEvent, Delegator, Outcome, Request, TransportError};
use orch_registry::Registry;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::app::context::channel_context;
use crate::app::error::AppError;
use crate::app::route::{Routing, route};
use crate::app::wiring::Setup;

/// What to delegate, to whom, on whose behalf.
#[derive(Clone, Debug)]
pub(crate) struct DelegateRequest {
    /// An agent id, or `auto` to let the router choose among the agents the
    /// caller may use (unless an agent is really called `auto`).
    pub(crate) agent: String,
    pub(crate) task: String,
    pub(crate) caller: String,
    /// How long to wait for the handoff (default: `delegation.timeout`).
    pub(crate) timeout: Option<Duration>,
    /// The caller's own run, making this a sub-delegation.
    pub(crate) parent: Option<String>,
    /// Have the result checked by the agent's validator (implied by
    /// `validator`).
    pub(crate) validate: bool,
    pub(crate) validator: Option<String>,
    /// A Discord channel whose recent messages go into the task.
    pub(crate) channel_context: Option<String>,
    pub(crate) channel_messages: usize,
    /// Use this run id (known before the delegation ends: `delegate_start`
    /// of the MCP front end) instead of a fresh one.
    pub(crate) run_id: Option<RunId>,
}

/// A delegation's result: the outcome (the handoff, or why there is none)
/// and, when the agent was `auto`, how it was chosen.
#[derive(Debug, Serialize)]
pub(crate) struct Delegation {
    #[serde(flatten)]
    pub(crate) outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) routing: Option<Routing>,
}

/// Everything a delegation needs, wired once: the delegator over the
/// opened store, the registry, the configuration. A long-lived front end
/// (the MCP server) opens it once and runs every delegation through it.
pub(crate) struct Delegating {
    setup: Setup,
    registry: Registry,
    delegator: Delegator,
    /// Serialises [`open_runs`](Self::open_runs)' ledger reads.
    tail_reads: tokio::sync::Mutex<()>,
}

/// How much of the ledger's end [`Delegating::open_runs`] reads: the
/// recent past (thousands of lines), whatever the history's size.
const OPEN_RUNS_TAIL: u64 = 1024 * 1024;

impl Delegating {
    /// Opens the store and builds the delegator. `timeout` is the
    /// delegation's (a NATS store operation may keep trying, a cluster
    /// electing a leader, for as long as the delegation may take: at least
    /// 5 s). `observer` hears each dispatch retry as it happens.
    pub(crate) async fn open(
        mut setup: Setup,
        timeout: Option<Duration>,
        observer: impl Fn(&DelegationEvent) + Send + Sync + 'static,
    ) -> Result<Self, AppError> {
        let registry = setup.registry()?;
        setup.config.store.nats.request_timeout = timeout
            .unwrap_or(setup.config.delegation.timeout.0)
            .max(Duration::from_secs(5));
        let store = setup.open_store().await?;
        let delegator = setup.delegator(store, &registry)?.with_observer(observer);
        Ok(Self {
            setup,
            registry,
            delegator,
            tail_reads: tokio::sync::Mutex::new(()),
        })
    }

    /// The runs dispatched to `agent` that have not ended (no handoff,
    /// timeout, failure or cancellation in the ledger yet), among the
    /// ledger's last [`OPEN_RUNS_TAIL`] bytes (only its lines that name the agent are parsed): the tasks it is working on,
    /// oldest first. One reading at a time: concurrent calls of a busy
    /// front end never hold many tails at once.
    pub(crate) async fn open_runs(&self, agent: &str) -> Result<Vec<RunId>, AppError> {
        use orch_delegate::orch_handoff::LedgerEventKind as K;
        let _one = self.tail_reads.lock().await;
        // Every line of a run dispatched to the agent names it so.
        let holding = serde_json::json!({ "agent": agent }).to_string();
        let holding = holding.trim_start_matches('{').trim_end_matches('}');
        let ledger = self
            .delegator
            .store()
            .read_ledger_tail(OPEN_RUNS_TAIL, Some(holding))
            .await?;
        let mut open: Vec<RunId> = Vec::new();
        for e in ledger.events {
            let Some(id) = e.run_id else { continue };
            match e.event {
                K::Dispatched if e.agent.as_deref() == Some(agent) && !open.contains(&id) => {
                    open.push(id);
                }
                K::Handoff | K::Timeout | K::Failed | K::Cancelled => {
                    open.retain(|r| *r != id);
                }
                _ => {}
            }
        }
        Ok(open)
    }

    /// The registry the delegations go by.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The configuration it was opened with.
    pub(crate) fn setup(&self) -> &Setup {
        &self.setup
    }

    /// The largest task `agent` takes, and whose limit it is (for `auto` or
    /// an unknown agent: the largest of every agent's).
    pub(crate) fn task_limit(&self, agent: &str) -> (u64, String) {
        let d = &self.delegator;
        match d.transport_of(agent) {
            Some(t) => (
                t.max_task_bytes(),
                format!("{agent}'s {} transport", t.name()),
            ),
            None => (
                d.agent_ids()
                    .iter()
                    .filter_map(|id| d.transport_of(id))
                    .map(|t| t.max_task_bytes())
                    .max()
                    .unwrap_or(orch_delegate::DEFAULT_MAX_TASK_BYTES),
                "every agent's transport".to_owned(),
            ),
        }
    }

    /// For `auto`: the ranking within the ACL, whose best agent gets the
    /// task; `None` when the request names its agent. No match is a usage
    /// error (the caller should name the agent).
    pub(crate) fn route(&self, request: &DelegateRequest) -> Result<Option<Routing>, AppError> {
        check_task(&request.task)?;
        if request.agent != "auto" || self.registry.get("auto").is_some() {
            return Ok(None);
        }
        let routing = route(
            &self.registry,
            &self.setup.config.acl,
            &request.task,
            &request.caller,
        )?;
        if routing.best.is_none() {
            return Err(AppError::Usage(format!(
                "no agent {} may delegate to matches this task (allowed: {}); name the agent instead of `auto`",
                request.caller,
                routing.allowed.join(", ")
            )));
        }
        Ok(Some(routing))
    }

    /// Sends the task to the request's agent (or `routing`'s best) and
    /// waits for the handoff, the deadline or `cancel`.
    pub(crate) async fn run(
        &self,
        request: DelegateRequest,
        routing: Option<Routing>,
        cancel: &CancellationToken,
    ) -> Result<Delegation, AppError> {
        check_task(&request.task)?;
        let agent = routing
            .as_ref()
            .and_then(|r| r.best.clone())
            .unwrap_or_else(|| request.agent.clone());
        let context = match &request.channel_context {
            Some(channel) => Some(
                channel_context(
                    &self.setup,
                    &self.registry,
                    channel,
                    request.channel_messages,
                )
                .await?,
            ),
            None => None,
        };
        let mut r = Request::new(&agent, request.task, &request.caller);
        r.context = context;
        r.timeout = request
            .timeout
            .unwrap_or(self.setup.config.delegation.timeout.0);
        r.parent = request
            .parent
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(|p| RunId::new(p).map_err(|e| AppError::Usage(format!("--parent {p:?}: {e}"))))
            .transpose()?;
        r.validate = request.validate || request.validator.is_some();
        r.validator = request.validator;
        r.run_id = request.run_id;
        let outcome = self
            .delegator
            .delegate(r, cancel)
            .await
            .map_err(map_error)?;
        Ok(Delegation { outcome, routing })
    }
}

fn check_task(task: &str) -> Result<(), AppError> {
    if task.trim().is_empty() {
        return Err(AppError::Usage("the task is empty".into()));
    }
    Ok(())
}

/// Maps a delegation error to the application's error (and so its exit
/// code).
pub(crate) fn map_error(e: DelegateError) -> AppError {
    match &e {
        DelegateError::UnknownAgent { .. }
        | DelegateError::Usage { .. }
        | DelegateError::TooLarge { .. } => AppError::Usage(e.to_string()),
        DelegateError::Denied(_) => AppError::Denied(format!("denied: {e}")),
        // An incomplete transport configuration is a config error, and a
        // request the transport finds too large is bad input: exit 2, as
        // no retry can help.
        DelegateError::Transport {
            source: TransportError::Config { .. } | TransportError::TooLarge { .. },
            ..
        } => AppError::Usage(e.to_string()),
        DelegateError::Transport { .. } => AppError::Transport(e.to_string()),
        DelegateError::Cancelled { .. } => AppError::Cancelled(e.to_string()),
        _ => AppError::Internal(e.to_string()),
    }
}
