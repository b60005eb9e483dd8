//! Retries of transient dispatch failures: how long to wait
//! ([`RetryWait`], [`WaitRule`]), why the delegator stopped ([`GaveUp`]),
//! what a delegation whose transport never acknowledged it reports
//! ([`Unacknowledged`]), and the events an observer sees
//! ([`DelegationEvent`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use orch_handoff::RunId;

use crate::TransportError;

/// How long the delegator waits before the next try, and which rule chose
/// it ([`RetryPolicy::wait`](super::RetryPolicy::wait)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryWait {
    /// The wait.
    pub delay: Duration,
    /// Why this long.
    pub rule: WaitRule,
}

/// Which rule set a [`RetryWait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitRule {
    /// No `Retry-After`: the exponential backoff (`base_delay × 2ⁿ⁻¹`,
    /// capped by `max_delay`).
    Backoff,
    /// The receiver's `Retry-After`, honoured as it was given (it lies
    /// between the backoff and `max_retry_after`).
    RetryAfter,
    /// The receiver's `Retry-After` was shorter than the backoff (`0`, or a
    /// date in the past): raised to the backoff, so a receiver can never
    /// make the delegator hammer it.
    RetryAfterRaised {
        /// What the receiver asked for.
        asked: Duration,
    },
    /// The receiver's `Retry-After` was longer than `max_retry_after`:
    /// capped there.
    RetryAfterCapped {
        /// What the receiver asked for.
        asked: Duration,
    },
}

/// `250ms`, `3s (as Retry-After asked)`, `250ms (Retry-After asked for 0s,
/// raised to the backoff)`, `60s (Retry-After asked for 100000s, capped at
/// max_retry_after)`.
impl fmt::Display for RetryWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let delay = friendly(self.delay);
        match self.rule {
            WaitRule::Backoff => f.write_str(&delay),
            WaitRule::RetryAfter => write!(f, "{delay} (as Retry-After asked)"),
            WaitRule::RetryAfterRaised { asked } => write!(
                f,
                "{delay} (Retry-After asked for {}, raised to the backoff)",
                friendly(asked)
            ),
            WaitRule::RetryAfterCapped { asked } => write!(
                f,
                "{delay} (Retry-After asked for {}, capped at max_retry_after)",
                friendly(asked)
            ),
        }
    }
}

/// Why the delegator stopped retrying a dispatch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GaveUp {
    /// The error is one a retry cannot help (a rejection, a task too
    /// large, a misconfigured transport).
    Final,
    /// The retry policy's `max_attempts` tries were made.
    MaxTries(u32),
    /// The next try would have started at or after the delegation's
    /// deadline.
    OutOfTime {
        /// The wait the next try needed.
        wait: RetryWait,
        /// The time that was left before the deadline.
        left: Duration,
    },
}

/// What follows the error in a message: empty for [`GaveUp::Final`].
impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Final => Ok(()),
            Self::MaxTries(n) => {
                write!(f, "gave up: the retry policy allows {n} {}", tries_word(*n))
            }
            Self::OutOfTime { wait, left } => write!(
                f,
                "gave up: the next try, in {wait}, would start after the deadline (in {})",
                friendly(*left)
            ),
        }
    }
}

/// Why a delegation that timed out never got its transport's
/// acknowledgement ([`Outcome::unacknowledged`](super::Outcome::unacknowledged)):
/// every try failed with a transient error (and was retried), or was still
/// waiting for an answer at the deadline. A hanging gateway shows here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unacknowledged {
    /// Transport calls made for the last ask (the last one may have still
    /// been running at the deadline).
    pub tries: u32,
    /// How many of them failed.
    pub failures: u32,
    /// The last failure, if any.
    pub last_error: Option<TransportError>,
    /// Whether every failure said the same thing.
    pub alike: bool,
}

/// `the transport never acknowledged the task: 3 tries, each failed: …;
/// try 4 was still waiting for an answer at the deadline`.
impl fmt::Display for Unacknowledged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the transport never acknowledged the task: ")?;
        let pending = self.tries > self.failures;
        match &self.last_error {
            None => {
                return f.write_str("its only try was still waiting for an answer at the deadline");
            }
            Some(e) if self.failures == 1 => write!(f, "try 1 failed: {e}")?,
            Some(e) if self.alike => write!(f, "{} tries, each failed: {e}", self.failures)?,
            Some(e) => write!(f, "{} tries failed, the last: {e}", self.failures)?,
        }
        if pending {
            write!(
                f,
                "; try {} was still waiting for an answer at the deadline",
                self.failures + 1
            )?;
        }
        Ok(())
    }
}

/// Something that happened during a delegation, reported to the
/// Delegator's [`Observer`] as it happens (see
/// [`Delegator::with_observer`](super::Delegator::with_observer)). Every
/// event is also in the ledger; events are for showing progress live.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DelegationEvent {
    /// A dispatch try failed with a transient error; the next one follows
    /// after a wait.
    Retrying(Retrying),
    /// The transport admitted an ask: the agent has the task.
    Acked(Acked),
    /// The agent is asked again (its run ended without a valid handoff).
    Reasked(Reasked),
}

impl DelegationEvent {
    /// The delegation it is about.
    pub fn run_id(&self) -> &RunId {
        match self {
            Self::Retrying(r) => &r.run_id,
            Self::Acked(a) => &a.run_id,
            Self::Reasked(r) => &r.run_id,
        }
    }
}

impl fmt::Display for DelegationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Retrying(r) => r.fmt(f),
            Self::Acked(a) => write!(
                f,
                "{} has the task (ask {}, run {})",
                a.agent, a.ask, a.run_id
            ),
            Self::Reasked(r) => write!(
                f,
                "asking {} again (ask {}, run {}): {}",
                r.agent, r.ask, r.run_id, r.reason
            ),
        }
    }
}

/// [`DelegationEvent::Acked`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Acked {
    /// The delegation.
    pub run_id: RunId,
    /// The agent the task is for.
    pub agent: String,
    /// The ask: 1 for the first message, 2 for the first re-ask.
    pub ask: u32,
}

/// [`DelegationEvent::Reasked`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reasked {
    /// The delegation.
    pub run_id: RunId,
    /// The agent the task is for.
    pub agent: String,
    /// The ask that follows (2 for the first re-ask).
    pub ask: u32,
    /// Why: what was wrong with the last answer, as the message quotes it.
    pub reason: String,
}

/// [`DelegationEvent::Retrying`]: one failed try and the wait before the
/// next.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retrying {
    /// The delegation (for a workflow step, its derived run id).
    pub run_id: RunId,
    /// The agent the task is for.
    pub agent: String,
    /// The ask: 1 for the first message, 2 for the first re-ask.
    pub ask: u32,
    /// The try that failed, 1-based, counted within the ask.
    pub failed_try: u32,
    /// The retry policy's cap on tries, if it has one.
    pub max_tries: Option<u32>,
    /// What failed.
    pub error: TransportError,
    /// How long until the next try, and why that long.
    pub wait: RetryWait,
}

impl Retrying {
    /// `try 2 of 5 failed: <error>; next try in 500ms` (the ledger's
    /// `retried` detail; `of 5` only when the policy caps the tries).
    pub fn detail(&self) -> String {
        let of = self
            .max_tries
            .map(|m| format!(" of {m}"))
            .unwrap_or_default();
        format!(
            "try {}{of} failed: {}; next try in {}",
            self.failed_try, self.error, self.wait
        )
    }
}

/// `dispatch to webster: try 2 failed: <error>; next try in 500ms`.
impl fmt::Display for Retrying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dispatch to {}: {}", self.agent, self.detail())
    }
}

/// Receives a Delegator's [`DelegationEvent`]s, synchronously, on the task
/// that runs the delegation: it must return quickly and never block (print
/// a line, send on a channel).
pub type Observer = Arc<dyn Fn(&DelegationEvent) + Send + Sync>;

pub(crate) fn tries_word(n: u32) -> &'static str {
    if n == 1 { "try" } else { "tries" }
}

/// `250ms`, `3s`, `1.5s`, `2m` — for ledger details and messages.
pub(crate) fn friendly(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".to_owned()
    } else if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> TransportError {
        TransportError::Connect {
            message: "no answer within 30s".into(),
        }
    }

    #[test]
    fn unacknowledged_says_how_every_try_went() {
        let u = |tries, failures, last: Option<TransportError>, alike| {
            Unacknowledged {
                tries,
                failures,
                last_error: last,
                alike,
            }
            .to_string()
        };
        insta::assert_snapshot!(
            [
                u(1, 0, None, true),
                u(1, 1, Some(unavailable()), true),
                u(4, 3, Some(unavailable()), true),
                u(3, 3, Some(unavailable()), false),
            ]
            .join("\n"),
            @r"
        the transport never acknowledged the task: its only try was still waiting for an answer at the deadline
        the transport never acknowledged the task: try 1 failed: could not reach the receiver: no answer within 30s
        the transport never acknowledged the task: 3 tries, each failed: could not reach the receiver: no answer within 30s; try 4 was still waiting for an answer at the deadline
        the transport never acknowledged the task: 3 tries failed, the last: could not reach the receiver: no answer within 30s
        "
        );
    }

    #[test]
    fn waits_say_which_rule_applied() {
        let w = |ms, rule| {
            RetryWait {
                delay: Duration::from_millis(ms),
                rule,
            }
            .to_string()
        };
        let asked = |s| Duration::from_secs(s);
        insta::assert_snapshot!(
            [
                w(250, WaitRule::Backoff),
                w(3000, WaitRule::RetryAfter),
                w(250, WaitRule::RetryAfterRaised { asked: asked(0) }),
                w(60_000, WaitRule::RetryAfterCapped { asked: asked(100_000) }),
            ]
            .join("\n"),
            @r"
        250ms
        3s (as Retry-After asked)
        250ms (Retry-After asked for 0s, raised to the backoff)
        1m (Retry-After asked for 100000s, capped at max_retry_after)
        "
        );
    }

    #[test]
    fn friendly_durations() {
        assert_eq!(friendly(Duration::from_millis(250)), "250ms");
        assert_eq!(friendly(Duration::from_secs(3)), "3s");
        assert_eq!(friendly(Duration::from_millis(1500)), "1.5s");
        assert_eq!(friendly(Duration::from_secs(120)), "2m");
    }
}
