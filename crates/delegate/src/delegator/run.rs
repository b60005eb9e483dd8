//! One run end to end (steps 4-6 of the module docs): the first message and
//! its size, a slot, the subscription, the `dispatched` line, then the
//! asks as a small state machine ([`State`]): `Asking` (one ask, see
//! `ask.rs`) → `Answered` → `Done`, or → `Reasking` → `Asking` again.

use std::sync::Arc;
use std::time::Duration;

use orch_handoff::{HandoffError, LedgerEventKind};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ask::Step;
use super::message::{MessageInput, task_message};
use super::outcome::shorten;
use super::retry::{friendly, tries_word};
use super::{
    DelegateError, Delegator, Dispatched, End, GaveUp, Outcome, Plan, Slot, Unacknowledged,
    slots_of,
};
use crate::TransportError;

/// Where a run is between its asks.
enum State {
    /// Ask number `ask` is sent with `message` (already size-checked).
    Asking { ask: u32, message: String },
    /// Ask number `ask` ended this way, `latency` after the first dispatch
    /// (boxed: a handoff is large, and the other states are small).
    Answered {
        ask: u32,
        step: Box<Step>,
        latency: Duration,
    },
    /// The agent is asked again after ask number `ask`, for this reason.
    Reasking { ask: u32, why: String },
    /// The run ended; its outcome says how.
    Done,
}

impl Delegator {
    /// Steps 4-6 for one run: size, slot, subscription, asks, outcome.
    pub(super) async fn run(
        &self,
        plan: Plan<'_>,
        cancel: &CancellationToken,
    ) -> Result<Outcome, DelegateError> {
        let who = &plan.who;
        let mut out = who.outcome(plan.started);
        // The first message is built (and its size checked) before anything
        // is waited for, written or sent.
        let first = self.message(&plan, None);
        self.check_size(&plan, &first, 1).await?;
        let Some(slot) = self.take_slot(&plan, cancel).await? else {
            out.timings.total = plan.t0.elapsed();
            return Ok(out);
        };
        if cancel.is_cancelled() {
            let line = who.line(LedgerEventKind::Cancelled, None);
            self.log(line.detail("cancelled before dispatch")).await;
            return Err(DelegateError::Cancelled {
                run_id: who.run_id().clone(),
            });
        }

        let sub = self.store.subscribe(&who.key).await?;
        let transport = plan.agent.entry.transport.name();
        let line = who.line(LedgerEventKind::Dispatched, Some(1));
        let line = line.detail(match plan.validates {
            None => format!("via {transport}"),
            Some(judged) => format!("via {transport}, validating {judged}"),
        });
        self.log_or_fail(line).await?;
        let dispatch_start = Instant::now();
        tracing::debug!(run_id = %who.run_id(), agent = who.agent, caller = who.caller, "dispatching");

        let mut run = Dispatched {
            plan: &plan,
            cancel,
            sub,
            slot,
            dispatch_start,
            out,
        };
        let mut state = State::Asking {
            ask: 1,
            message: first,
        };
        loop {
            state = match state {
                State::Asking { ask, message } => self.asking(&mut run, ask, message).await?,
                State::Answered { ask, step, latency } => {
                    self.answered(&mut run, ask, *step, latency).await?
                }
                State::Reasking { ask, why } => self.reasking(&mut run, ask, why).await?,
                State::Done => break,
            };
        }
        let Dispatched { sub, mut out, .. } = run;
        drop(sub);
        out.timings.total = plan.t0.elapsed();
        Ok(out)
    }

    /// The task message of `plan`'s run; a re-ask quotes why.
    fn message(&self, plan: &Plan<'_>, reask: Option<&str>) -> String {
        task_message(&MessageInput {
            who: &plan.who,
            task: plan.task,
            context: plan.context,
            submit_args: &self.config.submit_args,
            reask,
        })
    }

    /// Refuses a task message larger than the agent's transport delivers:
    /// a `failed` ledger line, and [`DelegateError::TooLarge`]. Nothing is
    /// sent.
    async fn check_size(
        &self,
        plan: &Plan<'_>,
        message: &str,
        ask: u32,
    ) -> Result<(), DelegateError> {
        let transport = &plan.agent.entry.transport;
        let limit = transport.max_task_bytes();
        let size = message.len() as u64;
        if size <= limit {
            return Ok(());
        }
        let error = DelegateError::TooLarge {
            agent: plan.agent.entry.id.clone(),
            transport: transport.name().to_owned(),
            size,
            limit,
            task: plan.task.trim_end().len() as u64,
            context: plan
                .context
                .filter(|c| !c.trim().is_empty())
                .map_or(0, |c| c.trim_end().len() as u64),
        };
        let line = plan.who.line(LedgerEventKind::Failed, Some(ask));
        self.log(line.detail(error.to_string())).await;
        tracing::info!(run_id = %plan.who.run_id(), size, limit, "task message too large: nothing sent");
        Err(error)
    }

    /// A slot of the agent's concurrency limit, within the deadline: `None`
    /// when the deadline passed first (a `timeout` line is written).
    async fn take_slot(
        &self,
        plan: &Plan<'_>,
        cancel: &CancellationToken,
    ) -> Result<Option<Slot>, DelegateError> {
        let Some(slots) = &plan.agent.slots else {
            return Ok(Some(Slot { _permit: None }));
        };
        let who = &plan.who;
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                let line = who.line(LedgerEventKind::Cancelled, None);
                self.log(line.detail("cancelled while waiting for a free slot")).await;
                Err(DelegateError::Cancelled { run_id: who.run_id().clone() })
            }
            permit = Arc::clone(slots).acquire_owned() => Ok(Some(Slot {
                _permit: permit.ok().map(Arc::new),
            })),
            () = tokio::time::sleep_until(plan.deadline) => {
                let line = who.line(LedgerEventKind::Timeout, None);
                self.log(line.detail(format!(
                    "the deadline passed while waiting for a free slot ({} takes {} at a time)",
                    who.agent,
                    slots_of(plan.agent)
                )))
                .await;
                Ok(None)
            }
        }
    }

    /// `Asking` → `Answered`: one ask. A store failure fails the run.
    async fn asking(
        &self,
        run: &mut Dispatched<'_, '_>,
        ask: u32,
        message: String,
    ) -> Result<State, DelegateError> {
        let timeout = run.plan.deadline.saturating_duration_since(Instant::now());
        let envelope = Arc::new(run.plan.who.envelope(message, timeout, ask));
        let step = self.ask(run, envelope).await;
        let latency = run.dispatch_start.elapsed();
        match step {
            Ok(step) => Ok(State::Answered {
                ask,
                step: Box::new(step),
                latency,
            }),
            Err(error) => {
                let line = run.plan.who.line(LedgerEventKind::Failed, Some(ask));
                let line = line.latency(latency).detail(format!("store: {error}"));
                self.log(line).await;
                Err(error.into())
            }
        }
    }

    /// `Answered` → `Done`, `Reasking`, or the run's error: what the ask's
    /// end means for the run, and its ledger line.
    async fn answered(
        &self,
        run: &mut Dispatched<'_, '_>,
        ask: u32,
        step: Step,
        latency: Duration,
    ) -> Result<State, DelegateError> {
        let plan = run.plan;
        let who = &plan.who;
        // A valid file from another agent is invalid for this run.
        let step = match step {
            Step::Landed(h) if h.agent != who.agent => Step::Invalid(HandoffError::Mismatch {
                field: "agent",
                expected: who.agent.to_owned(),
                found: shorten(&h.agent, 60),
            }),
            step => step,
        };
        let can_reask = run.out.reasks < self.config.reasks && Instant::now() < plan.deadline;
        let line = |kind| who.line(kind, Some(ask)).latency(latency);
        match step {
            Step::Landed(h) => {
                run.out.timings.handoff_after = Some(run.dispatch_start.elapsed());
                self.log(line(LedgerEventKind::Handoff).handoff(&h)).await;
                run.out.handoff = Some(h);
                run.out.end = End::Handoff;
                Ok(State::Done)
            }
            Step::Invalid(error) => self.invalid(run, ask, error, latency, can_reask).await,
            Step::NoHandoff(detail) if can_reask => Ok(State::Reasking {
                ask,
                why: format!(
                    "your run ended without writing a handoff to {} ({detail})",
                    who.handoff_path
                ),
            }),
            Step::NoHandoff(detail) => {
                let why = format!("the run ended without a handoff: {detail}");
                self.log(line(LedgerEventKind::Failed).detail(why)).await;
                run.out.end = End::NoHandoff { detail };
                Ok(State::Done)
            }
            Step::TimedOut { unacked, partial } => {
                let detail = timeout_detail(plan.timeout, unacked.as_ref(), partial.as_ref());
                self.log(line(LedgerEventKind::Timeout).detail(detail))
                    .await;
                run.out.end = End::TimedOut;
                run.out.unacknowledged = unacked;
                run.out.partial = partial;
                Ok(State::Done)
            }
            Step::Cancelled => {
                self.log(line(LedgerEventKind::Cancelled)).await;
                Err(DelegateError::Cancelled {
                    run_id: who.run_id().clone(),
                })
            }
            Step::Failed {
                error,
                tries,
                gave_up,
            } => {
                let detail = failure_detail(&error, tries, &gave_up);
                self.log(line(LedgerEventKind::Failed).detail(detail)).await;
                Err(DelegateError::Transport {
                    agent: who.agent.to_owned(),
                    attempts: tries,
                    source: error,
                    gave_up,
                })
            }
        }
    }

    /// An invalid handoff: its `invalid` line, moved aside like `orch
    /// handoff submit` does (the last one too: an invalid file never stays
    /// at the final name, where it would read as the answer), then re-asked
    /// or the end.
    async fn invalid(
        &self,
        run: &mut Dispatched<'_, '_>,
        ask: u32,
        error: HandoffError,
        latency: Duration,
        can_reask: bool,
    ) -> Result<State, DelegateError> {
        let plan = run.plan;
        let who = &plan.who;
        let line = who.line(LedgerEventKind::Invalid, Some(ask));
        self.log(line.latency(latency).detail(error.to_string()))
            .await;
        match self.store.quarantine(&who.key).await {
            Ok(moved) => run.out.rejected.extend(moved),
            Err(store) if can_reask => {
                let line = who.line(LedgerEventKind::Failed, Some(ask));
                self.log(line.detail(format!("store: {store}"))).await;
                return Err(store.into());
            }
            Err(store) => tracing::warn!(
                run_id = %who.run_id(),
                "could not move the invalid handoff aside: {store}"
            ),
        }
        if !can_reask {
            run.out.end = End::Invalid { error };
            return Ok(State::Done);
        }
        Ok(State::Reasking {
            ask,
            why: error.to_string(),
        })
    }

    /// `Reasking` → `Asking`: the `reasked` line, and the next message,
    /// which quotes why (it is a little longer: its size is checked again).
    async fn reasking(
        &self,
        run: &mut Dispatched<'_, '_>,
        ask: u32,
        why: String,
    ) -> Result<State, DelegateError> {
        let plan = run.plan;
        run.out.reasks += 1;
        let ask = ask + 1;
        let line = plan.who.line(LedgerEventKind::Reasked, Some(ask));
        self.log(line.detail(why.as_str())).await;
        self.notify(super::DelegationEvent::Reasked(super::retry::Reasked {
            run_id: plan.who.run_id().clone(),
            agent: plan.who.agent.to_owned(),
            ask,
            reason: why.clone(),
        }));
        tracing::debug!(run_id = %plan.who.run_id(), ask, "re-asking");
        let message = self.message(plan, Some(&why));
        self.check_size(plan, &message, ask).await?;
        Ok(State::Asking { ask, message })
    }
}

/// The `detail` of a `timeout` line after the asks.
fn timeout_detail(
    timeout: Duration,
    unacked: Option<&Unacknowledged>,
    partial: Option<&HandoffError>,
) -> String {
    let mut detail = format!("no handoff within {}", friendly(timeout));
    if let Some(u) = unacked {
        detail.push_str(&format!(" ({u})"));
    }
    if let Some(p) = partial {
        detail.push_str(&format!("; a partial file was seen: {p}"));
    }
    detail
}

/// The `detail` of the `failed` line of a transport that failed for good.
fn failure_detail(error: &TransportError, tries: u32, gave_up: &GaveUp) -> String {
    match gave_up {
        GaveUp::Final => format!("{error} ({tries} {})", tries_word(tries)),
        other => format!("{error} ({tries} {}; {other})", tries_word(tries)),
    }
}
