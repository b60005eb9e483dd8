//! [`Identity`]: who one run is for and where its answer goes.

use std::time::Duration;

use orch_handoff::{HandoffKey, RunId, Scope};

use super::{Delegator, End, Outcome, Timings, scope_of};
use crate::Envelope;

/// Who one run (a delegation, or its validation) is for and where its
/// answer goes. Built once per run ([`Delegator::identity`]); its task
/// messages, envelopes, ledger lines and outcome all take the run id,
/// agent, caller, parent, scope and handoff path from here.
#[derive(Debug)]
pub(crate) struct Identity<'a> {
    /// The run id, and the scope: [`Scope::Sub`] exactly when `parent` is
    /// set. Where the handoff is stored.
    pub(crate) key: HandoffKey,
    /// The agent the task goes to (the handoff's `agent`).
    pub(crate) agent: &'a str,
    /// Who delegates (an agent id or a human's id).
    pub(crate) caller: &'a str,
    /// The run this one is a sub-delegation of.
    pub(crate) parent: Option<&'a RunId>,
    /// Where the agent is told to hand off: the store's
    /// [`location`](orch_handoff::Handoffs::location) of `key` (for the
    /// file store, the absolute path of `<root>/[sub/]<runId>.json`).
    pub(crate) handoff_path: String,
}

impl Identity<'_> {
    pub(crate) fn run_id(&self) -> &RunId {
        &self.key.run_id
    }

    pub(crate) fn scope(&self) -> Scope {
        self.key.scope
    }

    /// The envelope of ask `attempt` (1 = the first message), carrying
    /// `message` and the time left before the deadline.
    pub(crate) fn envelope(&self, message: String, timeout: Duration, attempt: u32) -> Envelope {
        Envelope {
            run_id: self.key.run_id.clone(),
            agent: self.agent.to_owned(),
            caller: self.caller.to_owned(),
            message,
            handoff_location: self.handoff_path.clone(),
            timeout,
            parent: self.parent.cloned(),
            scope: self.key.scope,
            attempt,
        }
    }

    /// The outcome of a run started at `started` before anything happened:
    /// timed out, no handoff, nothing dispatched.
    pub(crate) fn outcome(&self, started: jiff::Timestamp) -> Outcome {
        Outcome {
            run_id: self.key.run_id.clone(),
            agent: self.agent.to_owned(),
            caller: self.caller.to_owned(),
            parent: self.parent.cloned(),
            scope: self.key.scope,
            handoff_path: self.handoff_path.clone(),
            rejected: Vec::new(),
            unacknowledged: None,
            partial: None,
            end: End::TimedOut,
            handoff: None,
            validation: None,
            dispatches: 0,
            reasks: 0,
            timings: Timings {
                started,
                acked_after: None,
                handoff_after: None,
                total: Duration::ZERO,
            },
        }
    }
}

impl Delegator {
    /// The identity of run `run_id` of `agent` for `caller` (a
    /// sub-delegation when `parent` is set), with the store's handoff
    /// location for it.
    pub(super) fn identity<'a>(
        &self,
        agent: &'a str,
        run_id: RunId,
        caller: &'a str,
        parent: Option<&'a RunId>,
    ) -> Identity<'a> {
        let key = HandoffKey {
            scope: scope_of(parent),
            run_id,
        };
        let handoff_path = self.store.location(&key);
        Identity {
            key,
            agent,
            caller,
            parent,
            handoff_path,
        }
    }
}
