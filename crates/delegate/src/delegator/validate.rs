//! Step 7: a validator judges a delegation's handoff, in a run of its own
//! linked to the judged one by a `validated` ledger line.

use orch_handoff::{RunId, Status};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ledger::Line;
use super::message::validation_task;
use super::{
    Agent, DelegateError, Delegator, End, Outcome, Plan, Request, Validation, deadline_after,
};

impl Delegator {
    /// Step 7: a validation delegation for `out`'s handoff: a fresh
    /// top-level run of `validator` with a fresh deadline of the request's
    /// timeout, as the same caller.
    pub(super) async fn validate(
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
        let validator_id = validator.entry.id.as_str();
        let t0 = Instant::now();
        let plan = Plan {
            agent: validator,
            who: self.identity(validator_id, RunId::generate(), &request.caller, None),
            task: &task,
            context: None,
            timeout: request.timeout,
            started: jiff::Timestamp::now(),
            t0,
            deadline: deadline_after(t0, request.timeout),
            validates: Some(&out.run_id),
        };
        let validation_run = plan.who.run_id().to_string();
        let result = self.run(plan, cancel).await;
        // Stamped now, after the validator's own lines.
        let line = Line::validated(out, validator_id, validation_run);
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
                let status = validation.outcome.handoff.as_ref().map(|h| h.status);
                self.log(line.status(status).detail(validation.summary()))
                    .await;
                out.validation = Some(validation);
                Ok(())
            }
            Err(error) => {
                let detail = format!("no verdict from {validator_id}: {error}");
                self.log(line.detail(detail)).await;
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
