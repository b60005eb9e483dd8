//! [`DelegateError`]: why a delegation produced no [`Outcome`](super::Outcome).

use orch_acl::AclError;
use orch_handoff::{RunId, StoreError};

use super::GaveUp;
use crate::TransportError;

/// Why [`Delegator::delegate`](super::Delegator::delegate) returned no
/// outcome. An agent that answered badly or not at all is *not* an error:
/// that is an [`Outcome`](super::Outcome) whose
/// [`End`](super::End) says so. [`DelegateError::exit_code`] maps each
/// variant to the CLI's exit code (DESIGN §5).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DelegateError {
    /// The agent (or validator) is not registered. Exit 2.
    #[error("unknown agent {agent:?}; known agents: {}", known_list(.known))]
    UnknownAgent {
        /// The name asked for.
        agent: String,
        /// Every registered agent id, sorted.
        known: Vec<String>,
    },
    /// The ACL refused the delegation or the validator, or the delegation
    /// chain is too deep ([`AclError::DepthExceeded`]). Exit 3. Nothing was
    /// sent, and the ledger has a `denied` line.
    #[error(transparent)]
    Denied(AclError),
    /// The request cannot be carried out as asked: unknown parent run, a
    /// caller that is not the parent run's agent, no validator, a run id
    /// that already has a handoff, a bad agent table. Exit 2.
    #[error("{message}")]
    Usage {
        /// What is wrong and what to do instead.
        message: String,
    },
    /// The transport failed for good: a non-retryable error, or retries
    /// out of time (or over the policy's cap). Exit 4, except for a
    /// transport that is misconfigured or refused the task as too large
    /// (exit 2: no retry, now or later, can help).
    #[error(
        "dispatch to {agent} failed after {attempts} {}: {source}{}",
        super::retry::tries_word(*.attempts),
        gave_up_suffix(.gave_up)
    )]
    Transport {
        /// The agent the task was for.
        agent: String,
        /// How many times the envelope was dispatched.
        attempts: u32,
        /// The last error.
        #[source]
        source: TransportError,
        /// Why no further try was made.
        gave_up: GaveUp,
    },
    /// The task message is larger than the agent's transport delivers
    /// ([`Transport::max_task_bytes`](crate::Transport::max_task_bytes)).
    /// Exit 2: it is the task that must change (or the limit), and a retry
    /// cannot help. Nothing was sent; the ledger has a `failed` line.
    #[error(
        "the task message for {agent} is {size} bytes (task {task}, context {context}, orch's header and instructions {}), larger than the {limit}-byte limit of its {transport} transport (max_task_bytes): nothing was sent; shorten the task or its context, or raise the transport's max_task_bytes",
        .size.saturating_sub(*.task + *.context)
    )]
    TooLarge {
        /// The agent the task was for.
        agent: String,
        /// The transport's name (`openclaw`, `exec`, `sim`).
        transport: String,
        /// The whole task message, in bytes.
        size: u64,
        /// The transport's limit, in bytes.
        limit: u64,
        /// The task text's share of `size`.
        task: u64,
        /// The context's share of `size`.
        context: u64,
    },
    /// The handoff store failed (I/O, watcher, the `dispatched` ledger
    /// line). Exit 1.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cancellation token fired before the delegation ended. Exit 130.
    #[error("delegation {run_id} was cancelled")]
    Cancelled {
        /// The run that was cancelled.
        run_id: RunId,
    },
}

impl DelegateError {
    /// The CLI exit code: 2 unknown agent / usage / a task too large / a
    /// misconfigured transport (and an ACL error that is not a denial), 3
    /// denied, 4 transport, 1 store, 130 cancelled.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::UnknownAgent { .. } | Self::Usage { .. } | Self::TooLarge { .. } => 2,
            Self::Denied(e) if e.is_denied() => 3,
            Self::Denied(_) => 2,
            Self::Transport {
                source: TransportError::Config { .. } | TransportError::TooLarge { .. },
                ..
            } => 2,
            Self::Transport { .. } => 4,
            Self::Store(_) => 1,
            Self::Cancelled { .. } => 130,
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::Usage {
            message: message.into(),
        }
    }
}

fn gave_up_suffix(gave_up: &GaveUp) -> String {
    match gave_up {
        GaveUp::Final => String::new(),
        other => format!("; {other}"),
    }
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "none".to_owned()
    } else {
        known.join(", ")
    }
}
