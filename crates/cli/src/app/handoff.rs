//! Handoffs: an agent's answer submitted to the store (exclusively: of
//! racing answers exactly one wins), and a run's handoff read or waited for.

use orch_handoff::{
    Artifact, Confidence, Existing, Expect, Handoff, HandoffKey, PutMode, RunId, Scope, Status,
    StoreError, WaitOutcome, parse_handoff,
};
use serde::Serialize;
use tokio::time::Instant;

use crate::app::error::AppError;
use crate::app::wiring::{Setup, Store};

/// A handoff given field by field (what `orch handoff submit --status …`
/// and a tool call give), checked by the same parser every reader uses.
#[derive(Clone, Debug)]
pub(crate) struct HandoffFields {
    pub(crate) run_id: RunId,
    pub(crate) agent: String,
    pub(crate) status: Status,
    pub(crate) result: String,
    pub(crate) confidence: Option<Confidence>,
    pub(crate) notes: String,
    pub(crate) artifacts: Vec<String>,
}

impl HandoffFields {
    /// The handoff these fields make, or why they make none (the agent is
    /// not an agent id, the result is too large, …).
    pub(crate) fn build(self) -> Result<Handoff, AppError> {
        check_agent(&self.agent)?;
        let mut handoff = Handoff::new(self.run_id, self.agent, self.status, self.result);
        handoff.confidence = self.confidence;
        handoff.notes = self.notes;
        handoff.artifacts = self.artifacts.into_iter().map(Artifact::Plain).collect();
        let bytes = handoff.to_json_pretty();
        parse_handoff(&bytes, &Expect::default())
            .map_err(|e| AppError::Usage(format!("invalid handoff: {e}")))
    }
}

/// Refuses an answering agent that is not an agent id.
pub(crate) fn check_agent(agent: &str) -> Result<(), AppError> {
    if agent.trim().is_empty() {
        return Err(AppError::Usage(
            "--agent is empty: give the id of the agent that did the task".into(),
        ));
    }
    orch_handoff::validate_id(agent)
        .map_err(|e| AppError::Usage(format!("--agent is not an agent id: {e}")))
}

/// An answer to store.
#[derive(Clone, Debug)]
pub(crate) struct SubmitRequest {
    pub(crate) handoff: Handoff,
    /// The run is a sub-delegation (its answer lives in the sub scope).
    pub(crate) sub: bool,
    /// Replace an answer already there (an invalid file is kept aside).
    pub(crate) force: bool,
    /// Store it even though nobody dispatched this run.
    pub(crate) unsolicited: bool,
}

/// Where an answer was stored.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Submitted {
    pub(crate) run_id: RunId,
    pub(crate) agent: String,
    pub(crate) status: Status,
    /// The store's name for where it is (a path, or a NATS key).
    pub(crate) location: String,
}

/// Stores an agent's answer: only for a run that was dispatched (unless
/// `unsolicited`), in its scope, and never over another answer (unless
/// `force`).
pub(crate) async fn submit(setup: &Setup, request: SubmitRequest) -> Result<Submitted, AppError> {
    let SubmitRequest {
        handoff,
        sub,
        force,
        unsolicited,
    } = request;
    let store = setup.open_store().await?;
    let key = key_of(handoff.run_id.clone(), sub);
    let location = store.location(&key);
    if !unsolicited {
        check_dispatched(&store, &key).await?;
    }
    if force {
        // An invalid answer already there is kept for inspection, not lost.
        match store.get(&key).await {
            Ok(_) => {}
            Err(StoreError::Invalid { .. }) => {
                store.quarantine(&key).await?;
            }
            Err(e) => return Err(e.into()),
        }
        store.put(key.scope, &handoff, PutMode::Replace).await?;
    } else {
        publish(&store, &key, &handoff).await?;
    }
    Ok(Submitted::of(handoff, location))
}

impl Submitted {
    fn of(handoff: Handoff, location: String) -> Self {
        Self {
            run_id: handoff.run_id,
            agent: handoff.agent,
            status: handoff.status,
            location,
        }
    }
}

/// Stores `handoff` as the answer of the agent it names to a run that was
/// dispatched to that agent, in the run's scope (a sub-delegation's
/// answer under `sub/`): what an agent answering through a tool call
/// gives, without knowing where the store keeps it. Never over another
/// answer.
pub(crate) async fn submit_answer(setup: &Setup, handoff: Handoff) -> Result<Submitted, AppError> {
    let store = setup.open_store().await?;
    let Some(dispatched) = store.dispatched(&handoff.run_id).await? else {
        return Err(AppError::Usage(format!(
            "run {} was never dispatched: the {} has no delegation with this run id; copy the run id given in your task",
            handoff.run_id,
            store.describe()
        )));
    };
    if let Some(to) = dispatched.agent.as_deref().filter(|a| *a != handoff.agent) {
        return Err(AppError::Denied(format!(
            "denied: run {} was dispatched to {to}, not to {}: only that agent may answer it",
            handoff.run_id, handoff.agent
        )));
    }
    // Checked above, on the store already open: published as `submit`
    // publishes, in the run's scope.
    let key = key_of(handoff.run_id.clone(), dispatched.parent.is_some());
    let location = store.location(&key);
    publish(&store, &key, &handoff).await?;
    Ok(Submitted::of(handoff, location))
}

/// The key of run `run_id`'s answer (`sub`: a sub-delegation's).
pub(crate) fn key_of(run_id: RunId, sub: bool) -> HandoffKey {
    if sub {
        HandoffKey::sub(run_id)
    } else {
        HandoffKey::top(run_id)
    }
}

/// The handoff stored for `key`; none is a usage error that says where it
/// was looked for.
pub(crate) async fn show(setup: &Setup, key: &HandoffKey) -> Result<Handoff, AppError> {
    let store = setup.open_store().await?;
    match store.get(key).await? {
        Some(handoff) => Ok(handoff),
        None => Err(AppError::Usage(format!(
            "no handoff for run {} at {}",
            key.run_id,
            store.location(key)
        ))),
    }
}

/// How a wait for a handoff ended.
#[derive(Debug)]
pub(crate) enum Waited {
    Landed(Handoff),
    /// Nothing valid before the deadline; `partial` says what a file still
    /// cut off at the deadline failed with.
    TimedOut {
        location: String,
        partial: Option<String>,
    },
}

/// Waits until `key`'s handoff lands or `timeout` passes. A complete file
/// that is not a valid handoff is a usage error naming it.
pub(crate) async fn wait(
    setup: &Setup,
    key: &HandoffKey,
    timeout: std::time::Duration,
) -> Result<Waited, AppError> {
    let store = setup.open_store().await?;
    let deadline = Instant::now() + timeout;
    match store.wait(key, deadline).await? {
        WaitOutcome::Landed(handoff) => Ok(Waited::Landed(handoff)),
        WaitOutcome::Invalid(e) => Err(AppError::Usage(format!("{}: {e}", store.location(key)))),
        WaitOutcome::TimedOut => Ok(Waited::TimedOut {
            location: store.location(key),
            partial: None,
        }),
        WaitOutcome::TimedOutIncomplete(e) => Ok(Waited::TimedOut {
            location: store.location(key),
            partial: Some(e.to_string()),
        }),
    }
}

/// Refuses a run id nobody dispatched (a typo would otherwise be stored
/// where no caller waits), and an answer in the wrong scope (`--sub`).
async fn check_dispatched(store: &Store, key: &HandoffKey) -> Result<(), AppError> {
    let Some(dispatched) = store.dispatched(&key.run_id).await? else {
        return Err(AppError::Usage(format!(
            "run {} was never dispatched: the {} has no delegation with this run id; \
             copy the run id given in your task, and the store it names (--store, or \
             ORCH_STORE as orch sets it for its agents), or pass --unsolicited to store an \
             answer nobody asked for",
            key.run_id,
            store.describe()
        )));
    };
    match (&dispatched.parent, key.scope) {
        (Some(parent), Scope::Top) => Err(AppError::Usage(format!(
            "run {} is a sub-delegation (of run {parent}): add --sub",
            key.run_id
        ))),
        (None, Scope::Sub) => Err(AppError::Usage(format!(
            "run {} is a top-level delegation, not a sub-delegation: drop --sub",
            key.run_id
        ))),
        _ => Ok(()),
    }
}

/// Stores `handoff` unless the run already has an answer: an exclusive
/// publish, so of agents racing to answer one run exactly one succeeds. A
/// file there that is not a valid handoff is moved aside (kept, never
/// deleted) and the publish tried again.
async fn publish(store: &Store, key: &HandoffKey, handoff: &Handoff) -> Result<(), AppError> {
    // Each round moves one invalid file aside; only writers racing to plant
    // invalid files could keep this going.
    for _ in 0..5 {
        let existing = match store.put(key.scope, handoff, PutMode::Create).await {
            Ok(()) => return Ok(()),
            Err(StoreError::AlreadyExists { existing, .. }) => existing,
            Err(e) => return Err(e.into()),
        };
        // Read it again to tell a valid answer from a file to move aside.
        let existing = if existing.is_valid() {
            existing
        } else {
            match store.get(key).await {
                Ok(Some(h)) => Existing::handoff(&h),
                Ok(None) => continue,
                Err(
                    StoreError::Invalid { .. }
                    | StoreError::TooLarge { .. }
                    | StoreError::Symlink { .. },
                ) => {
                    store.quarantine(key).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        };
        return Err(AppError::Usage(format!(
            "run {} already has an answer: {existing} at {}; nothing was written (pass --force to replace it)",
            key.run_id,
            store.location(key)
        )));
    }
    Err(AppError::Usage(format!(
        "run {}: invalid files keep appearing at {}; nothing was written",
        key.run_id,
        store.location(key)
    )))
}
