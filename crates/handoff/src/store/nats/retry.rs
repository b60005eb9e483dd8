//! Riding out a failover: which failures another try can change, and the
//! capped, jittered backoff between tries.
//!
//! While a JetStream cluster elects a new leader (a node was lost, a
//! network blip), requests time out, find no responders, or are answered
//! "no leader" / "temporarily unavailable" for a few seconds. Those are
//! [`transient`]: the store tries again, waiting 100 ms, 200 ms, … up to
//! its `retry_max_delay`, until the operation's deadline. Everything else
//! (a refused size, a wrong revision, a missing stream) is an answer and is
//! returned at once.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use tokio::time::Instant;

/// The first wait between tries.
const FIRST_DELAY: Duration = Duration::from_millis(100);

/// Whether a failure (its message, as async-nats words it) may pass by
/// itself: a timeout, no responders, no leader, a lost connection.
pub(super) fn transient(message: &str) -> bool {
    // async-nats reports a publish that found no responders (the stream's
    // leader is being elected) as "no stream found for given subject".
    const MARKS: [&str; 13] = [
        "timed out",
        "timeout",
        "no responders",
        "leader",
        "temporarily unavailable",
        "not current",
        "disconnected",
        "connection",
        "broken pipe",
        "reset by peer",
        "stream is offline",
        "no stream found for given subject",
        "replica that is behind",
    ];
    let lower = message.to_ascii_lowercase();
    MARKS.iter().any(|mark| lower.contains(mark))
}

/// The waits between tries: doubling from 100 ms up to a cap, each cut by a
/// random part of up to a half, so clients that failed together do not
/// retry in lockstep.
pub(super) struct Backoff {
    next: Duration,
    max: Duration,
    state: RandomState,
    n: u64,
}

impl Backoff {
    pub(super) fn new(max: Duration) -> Self {
        let max = max.max(Duration::from_millis(1));
        Self {
            next: FIRST_DELAY.min(max),
            max,
            state: RandomState::new(),
            n: 0,
        }
    }

    /// The next wait.
    pub(super) fn next_delay(&mut self) -> Duration {
        let full = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        self.n += 1;
        // A fraction in [0.5, 1.0) from a randomly keyed hash of the count.
        let random = self.state.hash_one(self.n) % 1024;
        full.mul_f64(0.5 + random as f64 / 2048.0)
    }
}

/// How long an operation may keep trying, and the longest wait between
/// tries.
#[derive(Clone, Copy, Debug)]
pub(super) struct Policy {
    /// The whole operation's time, tries and waits included.
    pub(super) budget: Duration,
    pub(super) max_delay: Duration,
}

impl Policy {
    /// The deadline of an operation that starts now.
    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.budget
    }
}

/// Why an operation gave up.
#[derive(Debug)]
pub(super) enum Failure<E> {
    /// An answer another try cannot change, or the last transient error
    /// when the deadline came.
    Failed(E),
    /// The deadline came during a try.
    Expired,
}

impl<E: fmt::Display> fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(e) => e.fmt(f),
            Self::Expired => f.write_str("timed out: no answer before the deadline"),
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `deadline` comes,
/// waiting with [`Backoff`] between transient failures and saying at warn
/// level what it is waiting for (once, then every 5 s).
pub(super) async fn run<T, E, F, Fut>(
    policy: Policy,
    what: &(dyn Fn() -> String + Sync),
    deadline: Instant,
    mut attempt: F,
) -> Result<T, Failure<E>>
where
    E: fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new(policy.max_delay);
    let mut warned: Option<Instant> = None;
    let mut tries = 0u32;
    loop {
        tries += 1;
        let error = match tokio::time::timeout_at(deadline, attempt()).await {
            Err(_) => return Err(Failure::Expired),
            Ok(Ok(value)) => {
                if warned.is_some() {
                    tracing::warn!("NATS store: {} succeeded after {tries} tries", what());
                }
                return Ok(value);
            }
            Ok(Err(e)) => e,
        };
        let message = error.to_string();
        let delay = backoff.next_delay();
        let now = Instant::now();
        if !transient(&message) || now + delay >= deadline {
            return Err(Failure::Failed(error));
        }
        let left = deadline.saturating_duration_since(now).as_secs_f64();
        if warned.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(5)) {
            tracing::warn!(
                "NATS store: {}: {message}; trying again for up to {left:.0} s (is the cluster electing a leader?)",
                what()
            );
            warned = Some(now);
        } else {
            tracing::debug!("NATS store: {}: {message}; try {tries}", what());
        }
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            budget: Duration::from_secs(30),
            max_delay: Duration::from_millis(20),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_tried_again_until_one_succeeds() {
        let calls = std::cell::Cell::new(0);
        let c = &calls;
        let got = run(
            policy(),
            &|| "get x".into(),
            policy().deadline(),
            move || async move {
                c.set(c.get() + 1);
                if c.get() < 4 {
                    Err("request timed out")
                } else {
                    Ok(c.get())
                }
            },
        )
        .await;
        assert_eq!(got.ok(), Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_returned_at_once_and_the_deadline_ends_the_tries() {
        let calls = std::cell::Cell::new(0);
        let c = &calls;
        let got: Result<(), _> = run(
            policy(),
            &|| "put x".into(),
            policy().deadline(),
            move || async move {
                c.set(c.get() + 1);
                Err("wrong last revision")
            },
        )
        .await;
        assert!(matches!(got, Err(Failure::Failed("wrong last revision"))));
        assert_eq!(calls.get(), 1);

        let start = Instant::now();
        let deadline = start + Duration::from_secs(2);
        let got: Result<(), _> = run(policy(), &|| "put x".into(), deadline, move || async move {
            Err("no responders")
        })
        .await;
        assert!(matches!(got, Err(Failure::Failed("no responders"))));
        assert!(Instant::now() <= deadline);

        let hung: Result<(), Failure<&str>> = run(
            policy(),
            &|| "put x".into(),
            deadline + Duration::from_secs(1),
            move || async move { std::future::pending().await },
        )
        .await;
        assert!(matches!(hung, Err(Failure::Expired)));
    }

    #[test]
    fn failover_failures_are_transient_answers_are_not() {
        for m in [
            "jetstream request timed out",
            "timed out: didn't receive ack in time",
            "failed to get stream: no responders",
            "jetstream error: JetStream cluster no metadata leader (code 503, error code 10008)",
            "JetStream system temporarily unavailable (code 503, error code 10008)",
            "watch failed: consumer creation failed: timed out",
            "ack error: broken pipe",
            "no stream found for given subject",
        ] {
            assert!(transient(m), "{m}");
        }
        for m in [
            "key already exists",
            "wrong last revision",
            "message size exceeds maximum allowed",
            "stream not found (code 404, error code 10059)",
            "authorization violation",
        ] {
            assert!(!transient(m), "{m}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_below_the_full_wait() {
        let mut b = Backoff::new(Duration::from_millis(800));
        let fulls = [100, 200, 400, 800, 800, 800];
        for full in fulls {
            let d = b.next_delay();
            let full = Duration::from_millis(full);
            assert!(d >= full / 2 && d < full, "{d:?} for {full:?}");
        }
        let mut tiny = Backoff::new(Duration::from_millis(10));
        assert!(tiny.next_delay() < Duration::from_millis(10));
    }
}
