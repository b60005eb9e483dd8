//! One ask (a message and its retries) as a small state machine.
//!
//! The dispatch side is a [`Dispatch`]: `InFlight` (a transport call) →
//! `Done` when acked, or → `Backoff` on a retryable error → `InFlight`
//! again (same envelope, same idempotency key). The store is waited on
//! throughout, and cancellation watched. Whatever happens first is an
//! [`Event`], and each event has one transition ([`Delegator::acked`],
//! [`Delegator::dispatch_failed`], [`Ask::retry`], [`Delegator::waited`]);
//! the ask ends with a [`Step`] (or a store error), which the run judges.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};

use orch_handoff::{Handoff, HandoffError, LedgerEventKind, RunId, StoreError, WaitOutcome};
use tokio::time::{Instant, Sleep};

use super::{DelegationEvent, Delegator, Dispatched, GaveUp, Retrying, Slot, Unacknowledged};
use crate::{Ack, Completion, Envelope, Transport, TransportError};

type DispatchFuture = Pin<Box<dyn Future<Output = Result<Ack, TransportError>> + Send>>;

/// The dispatch side of one ask.
pub(super) enum Dispatch {
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

/// What ended one wait of the ask's loop.
enum Event {
    Cancelled,
    Dispatch(Driven),
    Wait(Result<WaitOutcome, StoreError>),
}

/// How one ask (a message and its retries) ended.
pub(super) enum Step {
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

/// The state of one ask between events.
struct Ask {
    dispatch: Dispatch,
    /// Kept for retries only: once acked, the message is not needed any
    /// more (it is the bulk of a waiting delegation's memory).
    envelope: Option<Arc<Envelope>>,
    /// The ask (1 = the first message): the ledger's `attempt`.
    attempt: u32,
    /// The retry policy's cap on tries, at least 1.
    max_tries: Option<u32>,
    tries: u32,
    /// Failed tries of this ask, for a timeout that was never acked.
    failures: u32,
    last_error: Option<TransportError>,
    /// Every failure so far was the same error.
    alike: bool,
    acked: bool,
    /// Set when the transport reported that the agent's run ended.
    completion: Option<Completion>,
    /// The deadline, or the end of the completion grace.
    wait_deadline: Instant,
}

impl Ask {
    /// Starts the first try of `envelope`.
    fn start(
        run: &mut Dispatched<'_, '_>,
        envelope: Arc<Envelope>,
        max_tries: Option<u32>,
    ) -> Self {
        run.out.dispatches += 1;
        Self {
            dispatch: Dispatch::InFlight(start_dispatch(
                &run.plan.agent.entry.transport,
                &envelope,
            )),
            attempt: envelope.attempt,
            envelope: Some(envelope),
            max_tries,
            tries: 1,
            failures: 0,
            last_error: None,
            alike: true,
            acked: false,
            completion: None,
            wait_deadline: run.plan.deadline,
        }
    }

    /// `Backoff` → `InFlight`: the next try of the same envelope.
    fn retry(&mut self, run: &mut Dispatched<'_, '_>) {
        self.tries += 1;
        run.out.dispatches += 1;
        self.dispatch = match &self.envelope {
            Some(envelope) => {
                Dispatch::InFlight(start_dispatch(&run.plan.agent.entry.transport, envelope))
            }
            None => Dispatch::Done,
        };
    }

    /// The wait ran out (`partial`: on a file still cut off).
    fn timed_out(self, partial: Option<HandoffError>) -> Step {
        match (self.completion, partial) {
            // A file still cut off once the agent's run is known to have
            // ended is final: an invalid answer.
            (Some(_), Some(e)) => Step::Invalid(e),
            (Some(c), None) => Step::NoHandoff(c.detail),
            (None, partial) => Step::TimedOut {
                unacked: (!self.acked).then_some(Unacknowledged {
                    tries: self.tries,
                    failures: self.failures,
                    last_error: self.last_error,
                    alike: self.alike,
                }),
                partial,
            },
        }
    }

    fn failed(&self, error: TransportError, gave_up: GaveUp) -> Step {
        Step::Failed {
            error,
            tries: self.tries,
            gave_up,
        }
    }
}

impl Delegator {
    /// One ask: dispatch `envelope` (retrying transient failures) while
    /// waiting on the run's subscription, until a handoff lands, the run is
    /// known to have ended without one, the deadline, cancellation or a
    /// final transport error.
    pub(super) async fn ask(
        &self,
        run: &mut Dispatched<'_, '_>,
        envelope: Arc<Envelope>,
    ) -> Result<Step, StoreError> {
        let max_tries = self.config.retry.max_attempts.map(|m| m.max(1));
        let mut ask = Ask::start(run, envelope, max_tries);
        loop {
            let event = {
                let wait = run.sub.wait(ask.wait_deadline);
                // Dispatch before wait: a dispatch future is always polled
                // (started) before a handoff can end the ask.
                tokio::select! {
                    biased;
                    () = run.cancel.cancelled() => Event::Cancelled,
                    d = drive(&mut ask.dispatch) => Event::Dispatch(d),
                    w = wait => Event::Wait(w),
                }
            };
            match event {
                Event::Cancelled => return Ok(Step::Cancelled),
                Event::Dispatch(Driven::Returned(Ok(ack))) => self.acked(run, &mut ask, ack).await,
                Event::Dispatch(Driven::Returned(Err(error))) => {
                    if let Some(step) = self.dispatch_failed(run, &mut ask, error).await {
                        return Ok(step);
                    }
                }
                Event::Dispatch(Driven::BackoffOver) => ask.retry(run),
                Event::Wait(waited) => return self.waited(run, ask, waited),
            }
        }
    }

    /// `InFlight` → `Done`: the transport admitted the task (and may know
    /// the agent's run ended: then only the completion grace is waited).
    async fn acked(&self, run: &mut Dispatched<'_, '_>, ask: &mut Ask, ack: Ack) {
        ask.dispatch = Dispatch::Done;
        ask.acked = true;
        let latency = run.dispatch_start.elapsed();
        run.out.timings.acked_after.get_or_insert(latency);
        ask.envelope = None;
        let who = &run.plan.who;
        let line = who.line(LedgerEventKind::Acked, Some(ask.attempt));
        self.log(line.latency(latency).maybe_detail(ack.remote_run_id))
            .await;
        self.notify(DelegationEvent::Acked(super::retry::Acked {
            run_id: who.run_id().clone(),
            agent: who.agent.to_owned(),
            ask: ask.attempt,
        }));
        if let Some(c) = ack.completion {
            // The run ended: its handoff is there or about to be.
            let deadline = run.plan.deadline;
            ask.wait_deadline = Instant::now()
                .checked_add(self.config.completion_grace)
                .map_or(deadline, |t| t.min(deadline));
            tracing::debug!(run_id = %who.run_id(), ok = c.ok, "agent run ended: {}", c.detail);
            ask.completion = Some(c);
        }
    }

    /// `InFlight` → `Backoff` (a `retried` line and an observer event), or
    /// the end of the ask when the error is final, the tries are used up or
    /// the next try could not start before the deadline.
    async fn dispatch_failed(
        &self,
        run: &mut Dispatched<'_, '_>,
        ask: &mut Ask,
        error: TransportError,
    ) -> Option<Step> {
        if !error.is_retryable() {
            return Some(ask.failed(error, GaveUp::Final));
        }
        if let Some(max) = ask.max_tries
            && ask.tries >= max
        {
            return Some(ask.failed(error, GaveUp::MaxTries(max)));
        }
        let wait = self.config.retry.wait(ask.tries, error.retry_after());
        let (now, deadline) = (Instant::now(), run.plan.deadline);
        if now.checked_add(wait.delay).is_none_or(|t| t >= deadline) {
            let left = deadline.saturating_duration_since(now);
            return Some(ask.failed(error, GaveUp::OutOfTime { wait, left }));
        }
        let who = &run.plan.who;
        let retrying = Retrying {
            run_id: who.run_id().clone(),
            agent: who.agent.to_owned(),
            ask: ask.attempt,
            failed_try: ask.tries,
            max_tries: ask.max_tries,
            error: error.clone(),
            wait,
        };
        let line = who.line(LedgerEventKind::Retried, Some(ask.attempt));
        self.log(line.detail(retrying.detail())).await;
        tracing::debug!(run_id = %who.run_id(), tries = ask.tries, delay = ?wait.delay, "retrying dispatch: {error}");
        self.notify(DelegationEvent::Retrying(retrying));
        ask.failures += 1;
        ask.alike = ask.alike && ask.last_error.as_ref().is_none_or(|l| *l == error);
        ask.last_error = Some(error);
        ask.dispatch = Dispatch::Backoff(Box::pin(tokio::time::sleep(wait.delay)));
        None
    }

    /// The store's wait ended: the ask ends. A dispatch still in flight
    /// behind a handoff that landed is finished in the background.
    fn waited(
        &self,
        run: &Dispatched<'_, '_>,
        ask: Ask,
        waited: Result<WaitOutcome, StoreError>,
    ) -> Result<Step, StoreError> {
        let run_id = run.plan.who.run_id();
        Ok(match waited? {
            WaitOutcome::Landed(h) => {
                self.finish_in_background(ask.dispatch, run_id, run.plan.deadline, &run.slot);
                Step::Landed(h)
            }
            WaitOutcome::Invalid(e) => {
                self.finish_in_background(ask.dispatch, run_id, run.plan.deadline, &run.slot);
                Step::Invalid(e)
            }
            WaitOutcome::TimedOut => ask.timed_out(None),
            WaitOutcome::TimedOutIncomplete(e) => ask.timed_out(Some(e)),
        })
    }

    /// Lets a transport call that is still running when its handoff landed
    /// finish in a task the Delegator owns, bounded by the deadline and
    /// holding the agent's slot.
    fn finish_in_background(
        &self,
        dispatch: Dispatch,
        run_id: &RunId,
        deadline: Instant,
        slot: &Slot,
    ) {
        let Dispatch::InFlight(fut) = dispatch else {
            return;
        };
        let slot = slot.clone();
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
            let _slot = slot;
            match tokio::time::timeout_at(deadline, fut).await {
                Ok(Ok(ack)) => tracing::debug!(%run_id, remote = ?ack.remote_run_id, "dispatch finished after the handoff"),
                Ok(Err(e)) => tracing::debug!(%run_id, "dispatch failed after the handoff: {e}"),
                Err(_) => tracing::debug!(%run_id, "dispatch still running at the deadline: dropped"),
            }
        });
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
