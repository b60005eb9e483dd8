//! Cancelling a workflow run from any process (`orch workflow cancel`).
//!
//! A cancel request is a handoff-shaped document in the store's `Control`
//! scope under `<wfRunId>.cancel` (`agent`: who asks, `result`: why),
//! written exclusively: the first request stands. The process running the
//! workflow waits for it through the store's one watcher (FsStore's
//! inotify, NatsStore's key watch) as it waits for any handoff, and then
//! cancels the run as Ctrl-C does (every delegation in flight gets a
//! `cancelled` ledger line), runs its `finally` steps, and stores the run
//! as `cancelled`, saying who asked and why. A run that no process runs
//! any more (paused, killed) sees the request when it is resumed.

use std::hash::Hasher as _;

use orch_delegate::orch_handoff::{
    Handoff, HandoffKey, HandoffStore, MAX_ID_LEN, PutMode, RunId, Scope, Status, StoreError,
    validate_id,
};
use serde::{Deserialize, Serialize};

use crate::error::ExecError;

/// Who asked to cancel a run, why and when (in the run summary).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelRequest {
    /// Who asked (an agent id, or the name a front end gives a person).
    pub by: String,
    /// Why (cut to [`REASON_KEPT`](crate::REASON_KEPT) bytes).
    pub reason: String,
    /// When the request was written.
    #[schemars(with = "String")]
    pub at: jiff::Timestamp,
}

impl CancelRequest {
    /// The request a cancel document states.
    pub(crate) fn of(h: &Handoff) -> Self {
        Self {
            by: h.agent.clone(),
            reason: crate::run::cut(&h.result, crate::REASON_KEPT).into_owned(),
            at: h
                .timestamp
                .as_deref()
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(jiff::Timestamp::now),
        }
    }
}

/// Where a request to cancel workflow run `run` is written:
/// `<run>.cancel` in [`Scope::Control`] (a run id too long for that is
/// cut and followed by a hash of the whole, as delegation ids are).
pub fn cancel_key(run: &RunId) -> HandoffKey {
    let tail = ".cancel";
    let full = format!("{run}{tail}");
    let id = if full.len() <= MAX_ID_LEN {
        full
    } else {
        let mut h = fnv::FnvHasher::default();
        h.write(run.as_str().as_bytes());
        let hash = format!("-{:016x}", h.finish());
        let keep = MAX_ID_LEN.saturating_sub(tail.len() + hash.len());
        let prefix: String = run.as_str().chars().take(keep).collect();
        format!("{prefix}{hash}{tail}")
    };
    HandoffKey {
        scope: Scope::Control,
        run_id: RunId::new(id).unwrap_or_else(|_| RunId::generate()),
    }
}

/// The cancel request of run `run`, if one was written.
pub async fn cancel_requested(
    store: &dyn HandoffStore,
    run: &RunId,
) -> Result<Option<CancelRequest>, ExecError> {
    match store.get(&cancel_key(run)).await {
        Ok(found) => Ok(found.as_ref().map(CancelRequest::of)),
        Err(StoreError::Invalid { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Asks whoever runs workflow run `run` to cancel it: `by` (an id) and
/// why. The first request stands: another is refused, naming it. The run
/// must exist; whether it still runs is the caller's to judge.
pub async fn request_cancel(
    store: &dyn HandoffStore,
    run: &RunId,
    by: &str,
    reason: &str,
) -> Result<CancelRequest, ExecError> {
    validate_id(by).map_err(|e| ExecError::Usage(format!("cannot cancel as {by:?}: {e}")))?;
    crate::run::read_summary(store, run).await?;
    let key = cancel_key(run);
    let mut h = Handoff::new(key.run_id.clone(), by, Status::Failed, reason);
    h.notes = format!("a request to cancel workflow run {run}");
    h.timestamp = Some(jiff::Timestamp::now().to_string());
    match store.put(key.scope, &h, PutMode::Create).await {
        Ok(()) => Ok(CancelRequest::of(&h)),
        Err(StoreError::AlreadyExists { .. }) => {
            let earlier = cancel_requested(store, run).await?;
            Err(ExecError::Usage(match earlier {
                Some(r) => format!(
                    "run {run}: {} already asked to cancel it ({})",
                    r.by,
                    orch_support::text::one_line(&r.reason)
                ),
                None => format!("run {run}: a cancel request is already in the store"),
            }))
        }
        Err(e) => Err(e.into()),
    }
}
