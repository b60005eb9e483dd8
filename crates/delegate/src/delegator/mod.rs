//! The [`Delegator`]: one delegation end to end (DESIGN §5).
//!
//! [`Delegator::delegate`] runs, in order:
//!
//! 1. **Resolve** the agent (and, with `validate`, the validator): unknown →
//!    [`DelegateError::UnknownAgent`]; a caller that is not an agent id
//!    (the id rule, `orch_support::id`) → [`DelegateError::Usage`].
//! 2. **Sub-delegation** (`parent` set): the parent run is looked up in the
//!    ledger (its `dispatched` line names its agent and its own parent); the
//!    caller must be the parent run's agent; the depth (hops up the parent
//!    chain, top-level = 0) must be within [`DelegatorConfig::max_depth`].
//! 3. **ACL** caller → agent, and caller → validator, before anything is
//!    sent: refused → ledger `denied`, [`DelegateError::Denied`].
//! 4. **Run id, size, slot, subscription**: a fresh [`RunId`] (or the
//!    request's); the task message, refused if it is larger than the
//!    transport's [`Transport::max_task_bytes`] ([`DelegateError::TooLarge`],
//!    nothing sent); a slot of the agent's `max_concurrent` semaphore, held
//!    until the delegation ends; the store subscription, taken *before*
//!    dispatching.
//! 5. **Dispatch** with retries, *concurrently* with the wait: a transport
//!    may return only when the agent's run ended (exec, OpenClaw with
//!    `waitForCompletion`), and its handoff usually lands before that.
//! 6. **Wait** until the deadline (computed once, at the start): an invalid
//!    handoff is moved aside (`.rejected-N`, the last one too, as `orch
//!    handoff submit` does) and re-asked ([`DelegatorConfig::reasks`]) with
//!    the exact error quoted; a transport that reports the run ended without
//!    a handoff is re-asked the same way, then [`End::NoHandoff`].
//! 7. **Validate** (optional): a separate top-level delegation to the
//!    validator, linked by a `validated` ledger line.
//!
//! # Decisions
//!
//! - **A dispatch still running when the handoff lands is finished in the
//!   background**, not dropped: dropping it would kill an `exec` agent that
//!   is exiting after writing its handoff (and cut an OpenClaw
//!   `waitForCompletion` request). The Delegator owns these tasks (a
//!   `JoinSet`, aborted when the Delegator is dropped); each is bounded by
//!   the delegation's deadline and keeps the agent's concurrency slot until
//!   it ends. On timeout, cancellation or a transport/store error the
//!   in-flight dispatch is dropped (an `exec` child is killed).
//! - **Every ledger line of a delegation is written before `delegate`
//!   returns**; a dispatch finished in the background writes none (so its
//!   `acked` line is missing, and [`Timings::acked_after`] is `None`).
//! - **Ledger failures**: the `dispatched` line must be written (else
//!   [`DelegateError::Store`], nothing sent): it is what sub-delegations and
//!   metrics find runs by. Every other line is best effort
//!   (`tracing::warn!`), never failing a delegation that otherwise worked.
//! - **Retries** go on until the delegation's deadline, not for a fixed
//!   count ([`RetryPolicy::max_attempts`] is an optional cap), so a
//!   delegation rides out a gateway restart. The wait is the capped
//!   exponential backoff, or the receiver's `Retry-After` clamped between
//!   that backoff (a `0` or a past date cannot make the delegator hammer)
//!   and `max_retry_after` ([`RetryPolicy::wait`], [`WaitRule`]). Retries
//!   are not jittered (tests stay deterministic; one caller rarely hammers
//!   one gateway in lock-step) and never scheduled past the deadline: a
//!   retry that could not start before it fails the delegation with the
//!   transport's error and says so ([`GaveUp::OutOfTime`]). Each retry is
//!   a ledger line and a [`DelegationEvent::Retrying`] for the Delegator's
//!   [`Observer`] (`orch delegate` prints them on stderr). A delegation
//!   that times out without its transport ever acknowledging it says why
//!   ([`Outcome::unacknowledged`]: a hanging gateway).
//! - **Validation** runs only on a `complete` or `partial` handoff (a
//!   `failed` or `blocked` one fails already), with a fresh deadline of the
//!   request's timeout, as the same caller (whose ACL to the validator was
//!   checked in step 3).
//!
//! # Ledger
//!
//! Every line carries `ts`, `runId`, `agent`, `caller` and `parent`. The
//! `attempt` field is always the *ask* (1 = the first message, 2 = the
//! first re-ask), never the retry try.
//!
//! | event        | when                                              | extra fields |
//! |--------------|---------------------------------------------------|--------------|
//! | `denied`     | the ACL or depth limit refused (no `runId` unless the request named one) | `detail` (the refusal) |
//! | `dispatched` | once per run, before the first try                 | `attempt` 1, `detail` `via <transport>[, validating <runId>]` |
//! | `retried`    | a retryable try failed, another follows           | `attempt`, `detail` `try n[ of m] failed: <error>; next try in <wait>` ([`Retrying::detail`]) |
//! | `acked`      | the transport admitted the task                   | `attempt`, `latencyMs`, `detail` (remote run id) |
//! | `invalid`    | an invalid handoff landed                          | `attempt`, `latencyMs`, `detail` (the error) |
//! | `reasked`    | the agent is asked again                           | `attempt` (the new ask), `detail` (why) |
//! | `handoff`    | a valid handoff landed                             | `attempt`, `status`, `confidence`, `latencyMs` |
//! | `timeout`    | the deadline passed                                | `attempt`, `latencyMs`, `detail` (with [`Unacknowledged`] when the transport never acknowledged; says if a partial file was seen) |
//! | `failed`     | the transport failed for good, the run ended without a handoff, or the store failed | `attempt`, `latencyMs`, `detail` |
//! | `failed`     | the task message is over the transport's `max_task_bytes` (no `dispatched` line: nothing was sent) | `attempt` 1, `detail` (the error) |
//! | `cancelled`  | the cancellation token fired                       | `attempt`, `latencyMs` |
//! | `validated`  | the validator judged (or could not)                | `runId` = the judged run, `agent` = the validator, `status` (the validator's), `detail`, `validationRunId` |
//!
//! `latencyMs` counts from the first dispatch. The validation delegation
//! writes its own lines under its own run id.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orch_acl::{Policy, check_depth};
use orch_handoff::{
    Handoff, HandoffError, HandoffKey, HandoffStore, LedgerEvent, LedgerEventKind, RunId, Scope,
    Status, StoreError, Subscription, WaitOutcome,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::message::{MessageInput, task_message, validation_task};
use crate::{Ack, Completion, Envelope, Transport, TransportError};

mod error;
mod outcome;
mod retry;

pub use error::DelegateError;
pub use outcome::{End, Outcome, OutcomeStatus, Timings, Validation};
use outcome::{millis, shorten};
pub use retry::{DelegationEvent, GaveUp, Observer, RetryWait, Retrying, Unacknowledged, WaitRule};
use retry::{friendly, tries_word};

/// One agent the Delegator can reach.
#[derive(Clone)]
pub struct AgentEntry {
    /// The agent id (as in the registry and the ACL).
    pub id: String,
    /// How tasks reach it.
    pub transport: Arc<dyn Transport>,
    /// The agent that validates its results by default (`--validate`
    /// without `--validator`).
    pub validator: Option<String>,
    /// At most this many delegations to the agent at once in this
    /// Delegator (more wait for a slot, within their deadline). `None`:
    /// unbounded. `Some(0)` is refused by [`Delegator::new`].
    pub max_concurrent: Option<usize>,
}

impl AgentEntry {
    /// An agent reached through `transport`, with no default validator and
    /// no concurrency limit.
    pub fn new(id: impl Into<String>, transport: Arc<dyn Transport>) -> Self {
        Self {
            id: id.into(),
            transport,
            validator: None,
            max_concurrent: None,
        }
    }
}

impl fmt::Debug for AgentEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentEntry")
            .field("id", &self.id)
            .field("transport", &self.transport.name())
            .field("validator", &self.validator)
            .field("max_concurrent", &self.max_concurrent)
            .finish()
    }
}

/// How transient dispatch failures are retried (the same envelope, so the
/// same idempotency key): until the delegation's deadline, waiting
/// [`RetryPolicy::wait`] between tries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// A cap on tries per dispatch, the first included. `None` (the
    /// default): as many as fit before the delegation's deadline. `Some(0)`
    /// counts as 1.
    pub max_attempts: Option<u32>,
    /// Wait before the first retry; doubled for each further one (default
    /// 250 ms).
    pub base_delay: Duration,
    /// Cap of the exponential wait (default 8 s).
    pub max_delay: Duration,
    /// Cap of a receiver's `Retry-After` (default 60 s).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: None,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th failed try (1-based), and the rule
    /// that chose it. The backoff is `base_delay * 2^(failures-1)` capped
    /// by [`RetryPolicy::max_delay`]; a receiver's `retry_after` is
    /// honoured between that backoff (the floor: a `0` or a date in the
    /// past cannot make the delegator retry at once) and
    /// [`RetryPolicy::max_retry_after`] (the cap, unless the backoff itself
    /// is longer). No jitter.
    pub fn wait(&self, failures: u32, retry_after: Option<Duration>) -> RetryWait {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let backoff = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let (delay, rule) = match retry_after {
            None => (backoff, WaitRule::Backoff),
            Some(asked) if asked < backoff => (backoff, WaitRule::RetryAfterRaised { asked }),
            Some(asked) if asked > self.max_retry_after.max(backoff) => (
                self.max_retry_after.max(backoff),
                WaitRule::RetryAfterCapped { asked },
            ),
            Some(asked) => (asked, WaitRule::RetryAfter),
        };
        RetryWait { delay, rule }
    }

    /// [`RetryPolicy::wait`]'s delay alone.
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        self.wait(failures, retry_after).delay
    }
}

/// Settings of a [`Delegator`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DelegatorConfig {
    /// Deepest sub-delegation allowed (default
    /// [`orch_acl::DEFAULT_MAX_DEPTH`]).
    pub max_depth: u32,
    /// Re-asks after an invalid handoff or a run that ended without one
    /// (default 1).
    pub reasks: u32,
    /// Retries of transient dispatch failures.
    pub retry: RetryPolicy,
    /// After a transport reports the agent's run ended, how long to wait
    /// for its handoff to show up in the store (a polling store sees it
    /// late) before calling it a run without a handoff. Default 2 s.
    pub completion_grace: Duration,
    /// Extra arguments the agent must pass to `orch handoff submit` and
    /// `orch delegate`, e.g. `["--handoff-dir", "/abs/store"]`; quoted into
    /// the task message. Set by the CLI.
    pub submit_args: Vec<String>,
}

impl Default for DelegatorConfig {
    fn default() -> Self {
        Self {
            max_depth: orch_acl::DEFAULT_MAX_DEPTH,
            reasks: 1,
            retry: RetryPolicy::default(),
            completion_grace: Duration::from_secs(2),
            submit_args: Vec::new(),
        }
    }
}

/// One delegation to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The target agent id.
    pub agent: String,
    /// The task text.
    pub task: String,
    /// Who delegates (an agent id, or a human's id).
    pub caller: String,
    /// How long to wait for the handoff, from the call (retries, re-asks
    /// and waiting for a concurrency slot included). A validation gets a
    /// fresh timeout of the same length. Default 120 s.
    pub timeout: Duration,
    /// Already rendered context (channel history) for the message.
    pub context: Option<String>,
    /// The run this one is a sub-delegation of; the caller must be that
    /// run's agent.
    pub parent: Option<RunId>,
    /// Have a validator judge a `complete` or `partial` result.
    pub validate: bool,
    /// The validator (default: the agent's [`AgentEntry::validator`]).
    pub validator: Option<String>,
    /// Use this run id instead of a fresh one; refused if a handoff for it
    /// already exists.
    pub run_id: Option<RunId>,
}

impl Request {
    /// A request with a 120 s timeout, no context, no parent, no
    /// validation and a fresh run id.
    pub fn new(
        agent: impl Into<String>,
        task: impl Into<String>,
        caller: impl Into<String>,
    ) -> Self {
        Self {
            agent: agent.into(),
            task: task.into(),
            caller: caller.into(),
            timeout: Duration::from_secs(120),
            context: None,
            parent: None,
            validate: false,
            validator: None,
            run_id: None,
        }
    }
}

/// Runs delegations: ACL, dispatch with retries, waiting, re-asks,
/// validation and the ledger (see the module docs). Shared by concurrent
/// delegations (`&self`).
pub struct Delegator {
    store: Arc<dyn HandoffStore>,
    policy: Policy,
    agents: Vec<Agent>,
    index: HashMap<String, usize>,
    config: DelegatorConfig,
    /// Dispatches still running after their delegation ended (see the
    /// module docs); aborted when the Delegator is dropped.
    drains: Mutex<JoinSet<()>>,
    /// Told about retries as they happen ([`Delegator::with_observer`]).
    observer: Option<Observer>,
}

struct Agent {
    entry: AgentEntry,
    slots: Option<Arc<Semaphore>>,
}

impl fmt::Debug for Delegator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delegator")
            .field("store", &self.store.describe())
            .field("agents", &self.agent_ids())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one run of a delegation is about (the delegation itself, or its
/// validation).
struct Plan<'a> {
    agent: &'a Agent,
    run_id: RunId,
    caller: &'a str,
    parent: Option<&'a RunId>,
    task: &'a str,
    context: Option<&'a str>,
    timeout: Duration,
    started: jiff::Timestamp,
    t0: Instant,
    deadline: Instant,
    validates: Option<&'a RunId>,
}

/// The fields every ledger line of one run carries.
struct Line<'a> {
    run_id: &'a RunId,
    agent: &'a str,
    caller: &'a str,
    parent: Option<&'a RunId>,
}

impl Line<'_> {
    fn event(&self, kind: LedgerEventKind, attempt: Option<u32>) -> LedgerEvent {
        let mut e = LedgerEvent::now(kind);
        e.run_id = Some(self.run_id.clone());
        e.agent = Some(self.agent.to_owned());
        e.caller = Some(self.caller.to_owned());
        e.parent = self.parent.cloned();
        e.attempt = attempt;
        e
    }
}

type DispatchFuture = Pin<Box<dyn Future<Output = Result<Ack, TransportError>> + Send>>;

/// The dispatch side of one ask.
enum Dispatch {
    /// A transport call in flight.
    InFlight(DispatchFuture),
    /// Waiting before the next try.
    Backoff(Pin<Box<Sleep>>),
    /// Acked, or nothing more to do.
    Done,
}

enum Driven {
    Returned(Result<Ack, TransportError>),
    BackoffOver,
}

enum Event {
    Cancelled,
    Dispatch(Driven),
    Wait(Result<WaitOutcome, StoreError>),
}

/// How one ask (a message and its retries) ended.
enum Step {
    Landed(Handoff),
    Invalid(HandoffError),
    NoHandoff(String),
    TimedOut {
        /// Set when the transport never acknowledged the ask.
        unacked: Option<Unacknowledged>,
        /// The handoff was still incomplete at the deadline.
        partial: Option<HandoffError>,
    },
    Cancelled,
    Failed {
        error: TransportError,
        tries: u32,
        gave_up: GaveUp,
    },
}

/// Far enough to mean "no deadline" without overflowing `Instant`.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Delegator {
    /// A Delegator over `store`, checking `policy`, reaching `agents`.
    ///
    /// Refused ([`DelegateError::Usage`]): an empty or duplicate agent id,
    /// a validator that is not one of `agents`, `max_concurrent` of 0.
    pub fn new(
        store: Arc<dyn HandoffStore>,
        policy: Policy,
        agents: Vec<AgentEntry>,
        config: DelegatorConfig,
    ) -> Result<Self, DelegateError> {
        let mut index = HashMap::with_capacity(agents.len());
        for (i, entry) in agents.iter().enumerate() {
            if entry.id.trim().is_empty() {
                return Err(DelegateError::usage("an agent has an empty id"));
            }
            if index.insert(entry.id.clone(), i).is_some() {
                return Err(DelegateError::usage(format!(
                    "agent {:?} is listed twice",
                    entry.id
                )));
            }
            if entry.max_concurrent == Some(0) {
                return Err(DelegateError::usage(format!(
                    "agent {:?} has max_concurrent 0: it could never run; use at least 1",
                    entry.id
                )));
            }
        }
        for entry in &agents {
            if let Some(v) = &entry.validator
                && !index.contains_key(v)
            {
                return Err(DelegateError::usage(format!(
                    "agent {:?} names validator {v:?}, which is not a known agent",
                    entry.id
                )));
            }
        }
        let agents = agents
            .into_iter()
            .map(|entry| Agent {
                slots: entry.max_concurrent.map(|n| Arc::new(Semaphore::new(n))),
                entry,
            })
            .collect();
        Ok(Self {
            store,
            policy,
            agents,
            index,
            config,
            drains: Mutex::new(JoinSet::new()),
            observer: None,
        })
    }

    /// Reports every [`DelegationEvent`] of this Delegator's delegations
    /// (validations included) to `observer` as it happens: `orch delegate`
    /// prints each retry on stderr, a workflow's live view can show it
    /// beside its step (the event's run id is the step attempt's derived
    /// id). The observer runs on the delegation's task: it must not block.
    pub fn with_observer(
        mut self,
        observer: impl Fn(&DelegationEvent) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    fn notify(&self, event: DelegationEvent) {
        if let Some(observer) = &self.observer {
            observer(&event);
        }
    }

    /// The agent ids, in the order given to [`Delegator::new`].
    pub fn agent_ids(&self) -> Vec<&str> {
        self.agents.iter().map(|a| a.entry.id.as_str()).collect()
    }

    /// The transport that reaches `agent`, if it is one of this
    /// Delegator's agents (for what only the transport knows:
    /// [`Transport::max_task_bytes`], [`Transport::outlives_sender`]).
    pub fn transport_of(&self, agent: &str) -> Option<&Arc<dyn Transport>> {
        self.index
            .get(agent)
            .map(|&i| &self.agents[i].entry.transport)
    }

    /// The length in bytes of the message the first ask of a top-level
    /// delegation `run_id` to `agent` from `caller` would send, with this
    /// `task` and `context`: what [`Transport::max_task_bytes`] limits (the
    /// handoff instructions around a task are part of what is sent). With
    /// an empty task it is what the instructions take.
    pub fn message_bytes(
        &self,
        run_id: &RunId,
        agent: &str,
        caller: &str,
        task: &str,
        context: Option<&str>,
    ) -> u64 {
        let handoff_path = self.store.location(&HandoffKey::top(run_id.clone()));
        let message = task_message(&MessageInput {
            run_id,
            agent,
            caller,
            task,
            context,
            handoff_path: &handoff_path,
            scope: Scope::Top,
            submit_args: &self.config.submit_args,
            reask: None,
        });
        message.len() as u64
    }

    /// The ACL every delegation is checked against.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The handoff store.
    pub fn store(&self) -> &Arc<dyn HandoffStore> {
        &self.store
    }

    /// Runs one delegation (see the module docs) and returns its outcome.
    ///
    /// An agent that answers badly, late or not at all is an [`Outcome`]
    /// (see [`Outcome::status`]); errors are for delegations that could not
    /// be made or carried through: unknown agent, usage, ACL denial,
    /// transport failure, store failure, cancellation.
    pub async fn delegate(
        &self,
        request: Request,
        cancel: &CancellationToken,
    ) -> Result<Outcome, DelegateError> {
        let started = jiff::Timestamp::now();
        let t0 = Instant::now();
        let deadline = deadline_after(t0, request.timeout);

        // 1. Resolve. The caller's name goes into the ledger and into
        // messages: it obeys the id rule, like every agent id.
        if let Err(e) = orch_support::id::validate_id(&request.caller) {
            return Err(DelegateError::usage(format!(
                "the caller is not an agent id: {e}"
            )));
        }
        let agent = self.agent(&request.agent)?;
        let validator = if request.validate {
            let name = match (&request.validator, &agent.entry.validator) {
                (Some(v), _) | (None, Some(v)) => v,
                (None, None) => {
                    return Err(DelegateError::usage(format!(
                        "agent {} has no validator: pass --validator",
                        agent.entry.id
                    )));
                }
            };
            Some(self.agent(name)?)
        } else {
            None
        };

        // 2. Sub-delegation: parent, caller, depth.
        if let Some(parent) = &request.parent {
            let depth = self.depth_under(parent, &request).await?;
            if let Err(e) = check_depth(depth, self.config.max_depth) {
                return Err(self.deny(&request, &request.agent, e).await);
            }
        }

        // 3. ACL, for the agent and the validator, before anything is sent.
        if let Err(e) = self.policy.check(&request.caller, &agent.entry.id) {
            return Err(self.deny(&request, &agent.entry.id, e).await);
        }
        if let Some(v) = validator
            && let Err(e) = self.policy.check(&request.caller, &v.entry.id)
        {
            return Err(self.deny(&request, &v.entry.id, e).await);
        }

        // 4. Run id.
        let scope = scope_of(request.parent.as_ref());
        let run_id = match &request.run_id {
            Some(id) => {
                self.refuse_existing(&HandoffKey {
                    scope,
                    run_id: id.clone(),
                })
                .await?;
                id.clone()
            }
            None => RunId::generate(),
        };

        // 5-6.
        let plan = Plan {
            agent,
            run_id,
            caller: &request.caller,
            parent: request.parent.as_ref(),
            task: &request.task,
            context: request.context.as_deref(),
            timeout: request.timeout,
            started,
            t0,
            deadline,
            validates: None,
        };
        let mut outcome = self.run(plan, cancel).await?;

        // 7. Validation.
        if let Some(v) = validator
            && let Some(h) = &outcome.handoff
            && matches!(h.status, Status::Complete | Status::Partial)
        {
            // Boxed: a validation is rare, and inline it would double the
            // size of every delegation's future.
            Box::pin(self.validate(&mut outcome, v, &request, cancel)).await?;
            outcome.timings.total = t0.elapsed();
        }
        Ok(outcome)
    }

    fn agent(&self, id: &str) -> Result<&Agent, DelegateError> {
        match self.index.get(id) {
            Some(&i) => Ok(&self.agents[i]),
            None => {
                let mut known: Vec<String> =
                    self.agents.iter().map(|a| a.entry.id.clone()).collect();
                known.sort();
                Err(DelegateError::UnknownAgent {
                    agent: id.to_owned(),
                    known,
                })
            }
        }
    }

    /// The depth a sub-delegation of `parent` would have, after checking
    /// that `parent` is a known run of the request's caller.
    async fn depth_under(&self, parent: &RunId, request: &Request) -> Result<u32, DelegateError> {
        let ledger = self.store.read_ledger().await?;
        // run id -> (agent, parent), from each run's first `dispatched` line.
        let mut runs: HashMap<&RunId, (&str, Option<&RunId>)> = HashMap::new();
        for e in &ledger.events {
            if e.event == LedgerEventKind::Dispatched
                && let Some(id) = &e.run_id
            {
                runs.entry(id)
                    .or_insert((e.agent.as_deref().unwrap_or(""), e.parent.as_ref()));
            }
        }
        let Some(&(parent_agent, mut up)) = runs.get(parent) else {
            return Err(DelegateError::usage(format!(
                "parent run {parent} is unknown: no delegation with that run id was dispatched \
                 from the {} (pass the run id given in your task)",
                self.store.describe()
            )));
        };
        if parent_agent != request.caller {
            return Err(DelegateError::usage(format!(
                "parent run {parent} was delegated to {parent_agent}, not to {}: only \
                 {parent_agent} may sub-delegate under it (pass --caller {parent_agent})",
                request.caller
            )));
        }
        let mut depth = 1u32;
        // Stop once past the limit: that is enough to refuse, and a corrupt
        // ledger with a parent cycle cannot loop forever.
        while let Some(p) = up {
            depth += 1;
            if depth > self.config.max_depth {
                break;
            }
            up = runs.get(p).and_then(|&(_, pp)| pp);
        }
        Ok(depth)
    }

    /// Writes the `denied` line and builds the error.
    async fn deny(
        &self,
        request: &Request,
        target: &str,
        error: orch_acl::AclError,
    ) -> DelegateError {
        let mut e = LedgerEvent::now(LedgerEventKind::Denied);
        e.run_id = request.run_id.clone();
        e.agent = Some(target.to_owned());
        e.caller = Some(request.caller.clone());
        e.parent = request.parent.clone();
        e.detail = Some(error.to_string());
        self.log(e).await;
        tracing::info!(caller = %request.caller, agent = target, "delegation denied: {error}");
        DelegateError::Denied(error)
    }

    async fn refuse_existing(&self, key: &HandoffKey) -> Result<(), DelegateError> {
        let state = match self.store.get(key).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) => "a handoff",
            Err(StoreError::Invalid { .. }) => "an (invalid) handoff",
            Err(e) => return Err(e.into()),
        };
        Err(DelegateError::usage(format!(
            "run {} already has {state} at {}: use a new run id",
            key.run_id,
            self.store.location(key)
        )))
    }

    /// Refuses a task message larger than the agent's transport delivers:
    /// a `failed` ledger line, and [`DelegateError::TooLarge`]. Nothing is
    /// sent.
    async fn check_size(
        &self,
        agent: &Agent,
        plan: &Plan<'_>,
        line: &Line<'_>,
        message: &str,
        ask: u32,
    ) -> Result<(), DelegateError> {
        let transport = &agent.entry.transport;
        let limit = transport.max_task_bytes();
        let size = message.len() as u64;
        if size <= limit {
            return Ok(());
        }
        let error = DelegateError::TooLarge {
            agent: agent.entry.id.clone(),
            transport: transport.name().to_owned(),
            size,
            limit,
            task: plan.task.trim_end().len() as u64,
            context: plan
                .context
                .filter(|c| !c.trim().is_empty())
                .map_or(0, |c| c.trim_end().len() as u64),
        };
        let mut e = line.event(LedgerEventKind::Failed, Some(ask));
        e.detail = Some(error.to_string());
        self.log(e).await;
        tracing::info!(run_id = %plan.run_id, size, limit, "task message too large: nothing sent");
        Err(error)
    }

    /// Appends a ledger line; a failure is logged, not returned. Boxed, so
    /// the many `log(..).await` points keep only a pointer in the
    /// delegation's future (it is held by every waiting delegation).
    fn log(&self, event: LedgerEvent) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if let Err(e) = self.store.append_ledger(&event).await {
                tracing::warn!(event = ?event.event, run_id = ?event.run_id, "could not append to the ledger: {e}");
            }
        })
    }

    /// Steps 4-6 for one run: slot, subscription, asks, outcome.
    async fn run(
        &self,
        plan: Plan<'_>,
        cancel: &CancellationToken,
    ) -> Result<Outcome, DelegateError> {
        let agent = plan.agent;
        let agent_id = agent.entry.id.as_str();
        let scope = scope_of(plan.parent);
        let key = HandoffKey {
            scope,
            run_id: plan.run_id.clone(),
        };
        let handoff_path = self.store.location(&key);
        let line = Line {
            run_id: &plan.run_id,
            agent: agent_id,
            caller: plan.caller,
            parent: plan.parent,
        };
        let deadline = plan.deadline;
        let mut out = Outcome {
            run_id: plan.run_id.clone(),
            agent: agent_id.to_owned(),
            caller: plan.caller.to_owned(),
            parent: plan.parent.cloned(),
            scope,
            handoff_path: handoff_path.clone(),
            rejected: Vec::new(),
            unacknowledged: None,
            partial: None,
            end: End::TimedOut,
            handoff: None,
            validation: None,
            dispatches: 0,
            reasks: 0,
            timings: Timings {
                started: plan.started,
                acked_after: None,
                handoff_after: None,
                total: Duration::ZERO,
            },
        };

        let message_for = |reask: Option<&str>| {
            task_message(&MessageInput {
                run_id: &plan.run_id,
                agent: agent_id,
                caller: plan.caller,
                task: plan.task,
                context: plan.context,
                handoff_path: &handoff_path,
                scope,
                submit_args: &self.config.submit_args,
                reask,
            })
        };
        // The first message is built (and its size checked) before anything
        // is waited for, written or sent.
        let mut first = Some(message_for(None));
        if let Some(m) = &first {
            self.check_size(agent, &plan, &line, m, 1).await?;
        }

        // A slot of the agent's concurrency limit, within the deadline.
        let permit = match &agent.slots {
            None => None,
            Some(slots) => {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => {
                        let mut e = line.event(LedgerEventKind::Cancelled, None);
                        e.detail = Some("cancelled while waiting for a free slot".to_owned());
                        self.log(e).await;
                        return Err(DelegateError::Cancelled { run_id: plan.run_id });
                    }
                    permit = Arc::clone(slots).acquire_owned() => permit.ok().map(Arc::new),
                    () = tokio::time::sleep_until(deadline) => {
                        let mut e = line.event(LedgerEventKind::Timeout, None);
                        e.detail = Some(format!(
                            "the deadline passed while waiting for a free slot ({agent_id} takes {} at a time)",
                            slots_of(agent)
                        ));
                        self.log(e).await;
                        out.timings.total = plan.t0.elapsed();
                        return Ok(out);
                    }
                }
            }
        };

        if cancel.is_cancelled() {
            let mut e = line.event(LedgerEventKind::Cancelled, None);
            e.detail = Some("cancelled before dispatch".to_owned());
            self.log(e).await;
            return Err(DelegateError::Cancelled {
                run_id: plan.run_id,
            });
        }

        let mut sub = self.store.subscribe(&key).await?;
        let mut dispatched = line.event(LedgerEventKind::Dispatched, Some(1));
        dispatched.detail = Some(match plan.validates {
            None => format!("via {}", agent.entry.transport.name()),
            Some(judged) => format!("via {}, validating {judged}", agent.entry.transport.name()),
        });
        self.store.append_ledger(&dispatched).await?;
        let dispatch_start = Instant::now();
        tracing::debug!(run_id = %plan.run_id, agent = agent_id, caller = plan.caller, "dispatching");

        let mut ask = 1u32;
        let mut reask: Option<String> = None;
        loop {
            let message = match first.take() {
                Some(m) => m,
                None => {
                    // A re-ask quotes why: it is a little longer.
                    let m = message_for(reask.as_deref());
                    self.check_size(agent, &plan, &line, &m, ask).await?;
                    m
                }
            };
            let envelope = Arc::new(Envelope {
                run_id: plan.run_id.clone(),
                agent: agent_id.to_owned(),
                caller: plan.caller.to_owned(),
                message,
                handoff_location: handoff_path.clone(),
                timeout: deadline.saturating_duration_since(Instant::now()),
                parent: plan.parent.cloned(),
                scope,
                attempt: ask,
            });
            let step = self
                .ask(
                    agent,
                    &line,
                    envelope,
                    sub.as_mut(),
                    dispatch_start,
                    deadline,
                    cancel,
                    &permit,
                    &mut out,
                )
                .await;
            let latency = Some(millis(dispatch_start.elapsed()));
            let step = match step {
                Ok(step) => step,
                Err(error) => {
                    let mut e = line.event(LedgerEventKind::Failed, Some(ask));
                    e.latency_ms = latency;
                    e.detail = Some(format!("store: {error}"));
                    self.log(e).await;
                    return Err(error.into());
                }
            };
            // A valid file from another agent is invalid for this run.
            let step = match step {
                Step::Landed(h) if h.agent != agent_id => Step::Invalid(HandoffError::Mismatch {
                    field: "agent",
                    expected: agent_id.to_owned(),
                    found: shorten(&h.agent, 60),
                }),
                step => step,
            };
            let can_reask = out.reasks < self.config.reasks && Instant::now() < deadline;
            match step {
                Step::Landed(h) => {
                    out.timings.handoff_after = Some(dispatch_start.elapsed());
                    let mut e = line.event(LedgerEventKind::Handoff, Some(ask));
                    e.status = Some(h.status);
                    e.confidence = h.confidence;
                    e.latency_ms = latency;
                    self.log(e).await;
                    out.handoff = Some(h);
                    out.end = End::Handoff;
                    break;
                }
                Step::Invalid(error) => {
                    let mut e = line.event(LedgerEventKind::Invalid, Some(ask));
                    e.latency_ms = latency;
                    e.detail = Some(error.to_string());
                    self.log(e).await;
                    // Moved aside like `orch handoff submit` does, the last
                    // one too: an invalid file never stays at the final
                    // name (where it would read as the answer).
                    match self.store.quarantine(&key).await {
                        Ok(moved) => out.rejected.extend(moved),
                        Err(store) if can_reask => {
                            let mut e = line.event(LedgerEventKind::Failed, Some(ask));
                            e.detail = Some(format!("store: {store}"));
                            self.log(e).await;
                            return Err(store.into());
                        }
                        Err(store) => tracing::warn!(
                            run_id = %plan.run_id,
                            "could not move the invalid handoff aside: {store}"
                        ),
                    }
                    if !can_reask {
                        out.end = End::Invalid { error };
                        break;
                    }
                    reask = Some(error.to_string());
                }
                Step::NoHandoff(detail) => {
                    if !can_reask {
                        let mut e = line.event(LedgerEventKind::Failed, Some(ask));
                        e.latency_ms = latency;
                        e.detail = Some(format!("the run ended without a handoff: {detail}"));
                        self.log(e).await;
                        out.end = End::NoHandoff { detail };
                        break;
                    }
                    reask = Some(format!(
                        "your run ended without writing a handoff to {handoff_path} ({detail})"
                    ));
                }
                Step::TimedOut { unacked, partial } => {
                    let mut e = line.event(LedgerEventKind::Timeout, Some(ask));
                    e.latency_ms = latency;
                    let mut detail = format!("no handoff within {}", friendly(plan.timeout));
                    if let Some(u) = &unacked {
                        detail.push_str(&format!(" ({u})"));
                    }
                    if let Some(p) = &partial {
                        detail.push_str(&format!("; a partial file was seen: {p}"));
                    }
                    e.detail = Some(detail);
                    self.log(e).await;
                    out.end = End::TimedOut;
                    out.unacknowledged = unacked;
                    out.partial = partial;
                    break;
                }
                Step::Cancelled => {
                    let mut e = line.event(LedgerEventKind::Cancelled, Some(ask));
                    e.latency_ms = latency;
                    self.log(e).await;
                    return Err(DelegateError::Cancelled {
                        run_id: plan.run_id,
                    });
                }
                Step::Failed {
                    error,
                    tries,
                    gave_up,
                } => {
                    let mut e = line.event(LedgerEventKind::Failed, Some(ask));
                    e.latency_ms = latency;
                    e.detail = Some(match &gave_up {
                        GaveUp::Final => format!("{error} ({tries} {})", tries_word(tries)),
                        other => format!("{error} ({tries} {}; {other})", tries_word(tries)),
                    });
                    self.log(e).await;
                    return Err(DelegateError::Transport {
                        agent: agent_id.to_owned(),
                        attempts: tries,
                        source: error,
                        gave_up,
                    });
                }
            }
            // Re-ask.
            out.reasks += 1;
            ask += 1;
            let mut e = line.event(LedgerEventKind::Reasked, Some(ask));
            e.detail = reask.clone();
            self.log(e).await;
            tracing::debug!(run_id = %plan.run_id, ask, "re-asking");
        }
        drop(sub);
        out.timings.total = plan.t0.elapsed();
        Ok(out)
    }

    /// One ask: dispatch `envelope` (retrying transient failures) while
    /// waiting on `sub`, until a handoff lands, the run is known to have
    /// ended without one, the deadline, cancellation or a final transport
    /// error.
    #[allow(clippy::too_many_arguments)]
    async fn ask(
        &self,
        agent: &Agent,
        line: &Line<'_>,
        envelope: Arc<Envelope>,
        sub: &mut dyn Subscription,
        dispatch_start: Instant,
        deadline: Instant,
        cancel: &CancellationToken,
        permit: &Option<Arc<OwnedSemaphorePermit>>,
        out: &mut Outcome,
    ) -> Result<Step, StoreError> {
        let retry = &self.config.retry;
        let max_tries = retry.max_attempts.map(|m| m.max(1));
        let mut tries = 1u32;
        // Failed tries of this ask, for a timeout that was never acked.
        let mut failures = 0u32;
        let mut last_error: Option<TransportError> = None;
        let mut alike = true;
        out.dispatches += 1;
        let (run_id, attempt) = (envelope.run_id.clone(), envelope.attempt);
        let mut dispatch = Dispatch::InFlight(start_dispatch(&agent.entry.transport, &envelope));
        // Kept for retries only: once acked, the message is not needed any
        // more (it is the bulk of a waiting delegation's memory).
        let mut envelope = Some(envelope);
        let mut acked = false;
        let mut completion: Option<Completion> = None;
        let mut wait_deadline = deadline;
        loop {
            let event = {
                let wait = sub.wait(wait_deadline);
                // Dispatch before wait: a dispatch future is always polled
                // (started) before a handoff can end the ask.
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => Event::Cancelled,
                    d = drive(&mut dispatch) => Event::Dispatch(d),
                    w = wait => Event::Wait(w),
                }
            };
            match event {
                Event::Cancelled => return Ok(Step::Cancelled),
                Event::Dispatch(Driven::Returned(Ok(ack))) => {
                    dispatch = Dispatch::Done;
                    acked = true;
                    let latency = dispatch_start.elapsed();
                    out.timings.acked_after.get_or_insert(latency);
                    envelope = None;
                    let mut e = line.event(LedgerEventKind::Acked, Some(attempt));
                    e.latency_ms = Some(millis(latency));
                    e.detail = ack.remote_run_id;
                    self.log(e).await;
                    if let Some(c) = ack.completion {
                        // The run ended: its handoff is there or about to be.
                        wait_deadline = Instant::now()
                            .checked_add(self.config.completion_grace)
                            .map_or(deadline, |t| t.min(deadline));
                        tracing::debug!(%run_id, ok = c.ok, "agent run ended: {}", c.detail);
                        completion = Some(c);
                    }
                }
                Event::Dispatch(Driven::Returned(Err(error))) => {
                    if !error.is_retryable() {
                        return Ok(Step::Failed {
                            error,
                            tries,
                            gave_up: GaveUp::Final,
                        });
                    }
                    if let Some(max) = max_tries
                        && tries >= max
                    {
                        return Ok(Step::Failed {
                            error,
                            tries,
                            gave_up: GaveUp::MaxTries(max),
                        });
                    }
                    let wait = retry.wait(tries, error.retry_after());
                    let now = Instant::now();
                    if now.checked_add(wait.delay).is_none_or(|t| t >= deadline) {
                        return Ok(Step::Failed {
                            error,
                            tries,
                            gave_up: GaveUp::OutOfTime {
                                wait,
                                left: deadline.saturating_duration_since(now),
                            },
                        });
                    }
                    let retrying = Retrying {
                        run_id: run_id.clone(),
                        agent: agent.entry.id.clone(),
                        ask: attempt,
                        failed_try: tries,
                        max_tries,
                        error: error.clone(),
                        wait,
                    };
                    let mut e = line.event(LedgerEventKind::Retried, Some(attempt));
                    e.detail = Some(retrying.detail());
                    self.log(e).await;
                    tracing::debug!(%run_id, tries, delay = ?wait.delay, "retrying dispatch: {error}");
                    self.notify(DelegationEvent::Retrying(retrying));
                    failures += 1;
                    alike = alike && last_error.as_ref().is_none_or(|l| *l == error);
                    last_error = Some(error);
                    dispatch = Dispatch::Backoff(Box::pin(tokio::time::sleep(wait.delay)));
                }
                Event::Dispatch(Driven::BackoffOver) => {
                    tries += 1;
                    out.dispatches += 1;
                    dispatch = match &envelope {
                        Some(envelope) => {
                            Dispatch::InFlight(start_dispatch(&agent.entry.transport, envelope))
                        }
                        None => Dispatch::Done,
                    };
                }
                Event::Wait(Err(e)) => return Err(e),
                Event::Wait(Ok(WaitOutcome::Landed(h))) => {
                    self.finish_in_background(dispatch, &run_id, deadline, permit);
                    return Ok(Step::Landed(h));
                }
                Event::Wait(Ok(WaitOutcome::Invalid(e))) => {
                    self.finish_in_background(dispatch, &run_id, deadline, permit);
                    return Ok(Step::Invalid(e));
                }
                Event::Wait(Ok(
                    outcome @ (WaitOutcome::TimedOut | WaitOutcome::TimedOutIncomplete(_)),
                )) => {
                    let partial = match outcome {
                        WaitOutcome::TimedOutIncomplete(e) => Some(e),
                        _ => None,
                    };
                    return Ok(match (completion, partial) {
                        // A file still cut off once the agent's run is known
                        // to have ended is final: an invalid answer.
                        (Some(_), Some(e)) => Step::Invalid(e),
                        (Some(c), None) => Step::NoHandoff(c.detail),
                        (None, partial) => Step::TimedOut {
                            unacked: (!acked).then_some(Unacknowledged {
                                tries,
                                failures,
                                last_error,
                                alike,
                            }),
                            partial,
                        },
                    });
                }
            }
        }
    }

    /// Lets a transport call that is still running when its handoff landed
    /// finish in a task the Delegator owns, bounded by the deadline and
    /// holding the agent's slot.
    fn finish_in_background(
        &self,
        dispatch: Dispatch,
        run_id: &RunId,
        deadline: Instant,
        permit: &Option<Arc<OwnedSemaphorePermit>>,
    ) {
        let Dispatch::InFlight(fut) = dispatch else {
            return;
        };
        let permit = permit.clone();
        let run_id = run_id.clone();
        let mut drains = self.drains.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(done) = drains.try_join_next() {
            if let Err(e) = done
                && e.is_panic()
            {
                tracing::warn!("a transport panicked while finishing a dispatch in the background");
            }
        }
        drains.spawn(async move {
            let _slot = permit;
            match tokio::time::timeout_at(deadline, fut).await {
                Ok(Ok(ack)) => tracing::debug!(%run_id, remote = ?ack.remote_run_id, "dispatch finished after the handoff"),
                Ok(Err(e)) => tracing::debug!(%run_id, "dispatch failed after the handoff: {e}"),
                Err(_) => tracing::debug!(%run_id, "dispatch still running at the deadline: dropped"),
            }
        });
    }

    /// Step 7: a validation delegation for `out`'s handoff.
    async fn validate(
        &self,
        out: &mut Outcome,
        validator: &Agent,
        request: &Request,
        cancel: &CancellationToken,
    ) -> Result<(), DelegateError> {
        let Some(handoff) = &out.handoff else {
            return Ok(());
        };
        let task = validation_task(&out.agent, &request.task, handoff, &out.handoff_path);
        let t0 = Instant::now();
        let plan = Plan {
            agent: validator,
            run_id: RunId::generate(),
            caller: &request.caller,
            parent: None,
            task: &task,
            context: None,
            timeout: request.timeout,
            started: jiff::Timestamp::now(),
            t0,
            deadline: deadline_after(t0, request.timeout),
            validates: Some(&out.run_id),
        };
        let validator_id = validator.entry.id.as_str();
        let validation_run = plan.run_id.to_string();
        let result = self.run(plan, cancel).await;
        // Stamped now, after the validator's own lines.
        let mut e = LedgerEvent::now(LedgerEventKind::Validated);
        e.run_id = Some(out.run_id.clone());
        e.agent = Some(validator_id.to_owned());
        e.caller = Some(out.caller.clone());
        e.parent = out.parent.clone();
        e.extra
            .insert("validationRunId".to_owned(), validation_run.into());
        match result {
            Ok(judged) => {
                let approved = judged.end == End::Handoff
                    && judged
                        .handoff
                        .as_ref()
                        .is_some_and(|h| h.status == Status::Complete);
                let validation = Validation {
                    validator: validator_id.to_owned(),
                    approved,
                    outcome: Box::new(judged),
                };
                e.status = validation.outcome.handoff.as_ref().map(|h| h.status);
                e.detail = Some(validation.summary());
                self.log(e).await;
                out.validation = Some(validation);
                Ok(())
            }
            Err(error) => {
                e.detail = Some(format!("no verdict from {validator_id}: {error}"));
                self.log(e).await;
                Err(match error {
                    DelegateError::Cancelled { .. } => DelegateError::Cancelled {
                        run_id: out.run_id.clone(),
                    },
                    other => other,
                })
            }
        }
    }
}

/// Polls the dispatch side; never ready when there is nothing to do.
async fn drive(dispatch: &mut Dispatch) -> Driven {
    match dispatch {
        Dispatch::InFlight(fut) => Driven::Returned(fut.as_mut().await),
        Dispatch::Backoff(sleep) => {
            sleep.as_mut().await;
            Driven::BackoffOver
        }
        Dispatch::Done => std::future::pending().await,
    }
}

fn start_dispatch(transport: &Arc<dyn Transport>, envelope: &Arc<Envelope>) -> DispatchFuture {
    let transport = Arc::clone(transport);
    let envelope = Arc::clone(envelope);
    Box::pin(async move { transport.dispatch(&envelope).await })
}

fn scope_of(parent: Option<&RunId>) -> Scope {
    if parent.is_some() {
        Scope::Sub
    } else {
        Scope::Top
    }
}

fn deadline_after(t0: Instant, timeout: Duration) -> Instant {
    t0.checked_add(timeout)
        .or_else(|| t0.checked_add(FAR))
        .unwrap_or(t0)
}

fn slots_of(agent: &Agent) -> usize {
    agent.entry.max_concurrent.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        let ms = |n| p.delay(n, None).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5), ms(6), ms(7)],
            [250, 500, 1000, 2000, 4000, 8000, 8000]
        );
        assert_eq!(p.delay(40, None), Duration::from_secs(8));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn retry_after_is_clamped_between_the_backoff_and_the_cap() {
        let p = RetryPolicy::default();
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let cases = [
            // (failures, Retry-After, wait, rule)
            (1, None, ms(250), WaitRule::Backoff),
            (1, Some(s(3)), s(3), WaitRule::RetryAfter),
            // 0 or a past date: the backoff, never an immediate retry.
            (
                1,
                Some(Duration::ZERO),
                ms(250),
                WaitRule::RetryAfterRaised {
                    asked: Duration::ZERO,
                },
            ),
            (
                4,
                Some(ms(100)),
                s(2),
                WaitRule::RetryAfterRaised { asked: ms(100) },
            ),
            (
                1,
                Some(s(100_000)),
                s(60),
                WaitRule::RetryAfterCapped { asked: s(100_000) },
            ),
            (
                1,
                Some(Duration::MAX),
                s(60),
                WaitRule::RetryAfterCapped {
                    asked: Duration::MAX,
                },
            ),
            (1, Some(s(60)), s(60), WaitRule::RetryAfter),
        ];
        for (failures, asked, delay, rule) in cases {
            assert_eq!(
                p.wait(failures, asked),
                RetryWait { delay, rule },
                "{failures} {asked:?}"
            );
        }
        // A backoff longer than the Retry-After cap wins over both.
        let long = RetryPolicy {
            max_delay: s(120),
            base_delay: s(100),
            ..RetryPolicy::default()
        };
        assert_eq!(long.delay(1, Some(s(1000))), s(100));
    }

    #[test]
    fn exit_codes() {
        let usage = DelegateError::usage("x");
        assert_eq!(usage.exit_code(), 2);
        let denied =
            DelegateError::Denied(orch_acl::AclError::DepthExceeded { depth: 4, limit: 3 });
        assert_eq!(denied.exit_code(), 3);
        let cancelled = DelegateError::Cancelled {
            run_id: RunId::generate(),
        };
        assert_eq!(cancelled.exit_code(), 130);
    }
}
