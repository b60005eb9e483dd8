//! The ledger lines a delegation writes (the table in the module docs).
//!
//! Every line goes through [`Line`]: its `runId`, `agent`, `caller` and
//! `parent` are set in one place ([`Line::new`]), from the run's
//! [`Identity`] ([`Identity::line`]) or, for the two lines written outside
//! a run, from the refused request ([`Line::denied`]) or the judged outcome
//! ([`Line::validated`]). The rest is set by the chained setters.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use orch_handoff::{Handoff, LedgerEvent, LedgerEventKind, RunId, Status, StoreError};

use super::identity::Identity;
use super::outcome::millis;
use super::{Delegator, Outcome, Request};

/// One ledger line, stamped when it is built.
#[must_use = "a ledger line does nothing until it is logged"]
pub(super) struct Line(LedgerEvent);

impl Line {
    /// The one place a line's identity fields are set.
    fn new(
        kind: LedgerEventKind,
        run_id: Option<&RunId>,
        agent: &str,
        caller: &str,
        parent: Option<&RunId>,
    ) -> Self {
        let mut e = LedgerEvent::now(kind);
        e.run_id = run_id.cloned();
        e.agent = Some(agent.to_owned());
        e.caller = Some(caller.to_owned());
        e.parent = parent.cloned();
        Self(e)
    }

    /// `denied`: the ACL or depth limit refused `request` to `target`
    /// (no `runId` unless the request named one).
    pub(super) fn denied(request: &Request, target: &str, error: &orch_acl::AclError) -> Self {
        Self::new(
            LedgerEventKind::Denied,
            request.run_id.as_ref(),
            target,
            &request.caller,
            request.parent.as_ref(),
        )
        .detail(error.to_string())
    }

    /// `validated`: `validator` judged `judged` (or could not) in its run
    /// `validation_run`. Under the judged run's id, caller and parent.
    pub(super) fn validated(judged: &Outcome, validator: &str, validation_run: String) -> Self {
        let mut line = Self::new(
            LedgerEventKind::Validated,
            Some(&judged.run_id),
            validator,
            &judged.caller,
            judged.parent.as_ref(),
        );
        line.0
            .extra
            .insert("validationRunId".to_owned(), validation_run.into());
        line
    }

    /// `latencyMs`: `since` the first dispatch.
    pub(super) fn latency(mut self, since: Duration) -> Self {
        self.0.latency_ms = Some(millis(since));
        self
    }

    pub(super) fn detail(self, detail: impl Into<String>) -> Self {
        self.maybe_detail(Some(detail.into()))
    }

    pub(super) fn maybe_detail(mut self, detail: Option<String>) -> Self {
        self.0.detail = detail;
        self
    }

    pub(super) fn status(mut self, status: Option<Status>) -> Self {
        self.0.status = status;
        self
    }

    /// The `status` and `confidence` of a valid handoff.
    pub(super) fn handoff(mut self, handoff: &Handoff) -> Self {
        self.0.status = Some(handoff.status);
        self.0.confidence = handoff.confidence;
        self
    }
}

impl Identity<'_> {
    /// A line of this run; `attempt` is the ask (1 = the first message).
    pub(super) fn line(&self, kind: LedgerEventKind, attempt: Option<u32>) -> Line {
        let mut line = Line::new(
            kind,
            Some(self.run_id()),
            self.agent,
            self.caller,
            self.parent,
        );
        line.0.attempt = attempt;
        line
    }
}

impl Delegator {
    /// Appends a ledger line; a failure is logged, not returned. Boxed, so
    /// the many `log(..).await` points keep only a pointer in the
    /// delegation's future (it is held by every waiting delegation).
    pub(super) fn log(&self, line: Line) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let event = line.0;
            if let Err(e) = self.store.append_ledger(&event).await {
                tracing::warn!(event = ?event.event, run_id = ?event.run_id, "could not append to the ledger: {e}");
            }
        })
    }

    /// Appends a line that must be written, or fails the delegation: only
    /// the `dispatched` line (see the module docs).
    pub(super) async fn log_or_fail(&self, line: Line) -> Result<(), StoreError> {
        self.store.append_ledger(&line.0).await
    }
}
