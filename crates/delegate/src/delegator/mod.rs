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
//! Steps 1-3 are `admit.rs`, 4-6 `run.rs` (one run, its asks a state
//! machine) and `ask.rs` (one ask: dispatch, retries and the wait), 7
//! `validate.rs`. A run's identity (run id, agent, caller, parent, scope,
//! handoff path) is built once, in `identity.rs`, and its messages,
//! envelopes, ledger lines (`ledger.rs`) and outcome are made from it.
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
//!   [`Observer`] (`orch delegate` prints them on stderr), as an ask's
//!   acknowledgement is a [`DelegationEvent::Acked`] and a re-ask a
//!   [`DelegationEvent::Reasked`] (`orch mcp` reports all three as
//!   progress). A delegation
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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orch_acl::Policy;
use orch_handoff::{HandoffStore, RunId, Scope, Status};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Transport;
use message::{MessageInput, task_message};

mod admit;
mod ask;
mod error;
mod identity;
mod ledger;
mod message;
mod outcome;
mod retry;
mod run;
mod validate;

pub use error::DelegateError;
pub(crate) use identity::Identity;
pub use outcome::{End, Outcome, OutcomeStatus, Timings, Validation};
pub use retry::{
    Acked, DelegationEvent, GaveUp, Observer, Reasked, RetryWait, Retrying, Unacknowledged,
    WaitRule,
};

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
/// [`RetryPolicy::wait`] between tries. In `orch.yaml` it is
/// `delegation.retry` (`attempts`, `base_delay`, `max_delay`,
/// `max_retry_after`; durations as `250ms`, `8s`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// A cap on tries per dispatch, the first included. `None` (the
    /// default): as many as fit before the delegation's deadline. `Some(0)`
    /// counts as 1.
    #[serde(rename = "attempts", skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Wait before the first retry; doubled for each further one (default
    /// 250 ms).
    #[serde(with = "orch_support::duration::serde")]
    pub base_delay: Duration,
    /// Cap of the exponential wait (default 8 s).
    #[serde(with = "orch_support::duration::serde")]
    pub max_delay: Duration,
    /// Cap of a receiver's `Retry-After` (default 60 s).
    #[serde(with = "orch_support::duration::serde")]
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
    /// [`Delegator::message_bytes`] of an empty task, by what it depends
    /// on (see there).
    instructions: Mutex<HashMap<InstructionsKey, u64>>,
}

/// Agent, caller, the run id's length, the handoff location's length and
/// its directory.
type InstructionsKey = (String, String, usize, usize, String);

/// Most [`InstructionsKey`]s kept (a workflow needs one per agent and id
/// length).
const INSTRUCTIONS_KEPT: usize = 1024;

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
    /// Who the run is for and where its answer goes.
    who: Identity<'a>,
    task: &'a str,
    context: Option<&'a str>,
    timeout: Duration,
    started: jiff::Timestamp,
    t0: Instant,
    deadline: Instant,
    /// The run a validation judges.
    validates: Option<&'a RunId>,
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
            instructions: Mutex::new(HashMap::new()),
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
    ///
    /// The instructions hold the run id and the handoff's location as they
    /// are, and the location's directory: with an empty task their length
    /// is kept by those lengths and that directory, so a workflow's check
    /// of every step before a run renders them once per agent and id
    /// length, not once per step.
    pub fn message_bytes(
        &self,
        run_id: &RunId,
        agent: &str,
        caller: &str,
        task: &str,
        context: Option<&str>,
    ) -> u64 {
        let who = self.identity(agent, run_id.clone(), caller, None);
        let render = || {
            let message = task_message(&MessageInput {
                who: &who,
                task,
                context,
                submit_args: &self.config.submit_args,
                reask: None,
            });
            message.len() as u64
        };
        if !task.is_empty() || context.is_some() {
            return render();
        }
        let path = who.handoff_path.as_str();
        let key: InstructionsKey = (
            agent.to_owned(),
            caller.to_owned(),
            run_id.as_str().len(),
            path.len(),
            path.rsplit_once('/').map_or("", |(dir, _)| dir).to_owned(),
        );
        let kept = || {
            self.instructions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(&n) = kept().get(&key) {
            return n;
        }
        let n = render();
        let mut map = kept();
        if map.len() >= INSTRUCTIONS_KEPT {
            map.clear();
        }
        map.insert(key, n);
        n
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

        // 1. Resolve.
        let (agent, validator) = self.resolve(&request)?;
        // 2-3. Sub-delegation (parent, caller, depth) and the ACL, for the
        // agent and the validator, before anything is sent.
        self.admit(&request, agent, validator).await?;

        // 4. Run id.
        let run_id = request.run_id.clone().unwrap_or_else(RunId::generate);
        let who = self.identity(
            &agent.entry.id,
            run_id,
            &request.caller,
            request.parent.as_ref(),
        );
        if request.run_id.is_some() {
            self.refuse_existing(&who.key).await?;
        }

        // 5-6.
        let plan = Plan {
            agent,
            who,
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

/// A slot of the agent's concurrency limit (nothing when it has none),
/// held until the run ends and shared with a dispatch finishing in the
/// background.
#[derive(Clone)]
struct Slot {
    _permit: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}

/// A run past its `dispatched` line: what its states' transitions share.
struct Dispatched<'r, 'a> {
    plan: &'r Plan<'a>,
    cancel: &'r CancellationToken,
    sub: Box<dyn orch_handoff::Subscription>,
    slot: Slot,
    /// The first dispatch, which `latencyMs` counts from.
    dispatch_start: Instant,
    out: Outcome,
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
