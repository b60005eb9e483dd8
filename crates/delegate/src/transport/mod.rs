//! The [`Transport`] seam (the trait, the [`Envelope`] it delivers, the
//! [`Ack`] and [`TransportError`] it answers with) and its three
//! implementations: `openclaw` (Gateway HTTP hooks), `exec` (a local
//! command) and `sim` (the simulated fleet). The crate root re-exports the
//! seam.

use std::time::Duration;

use async_trait::async_trait;
use orch_handoff::{RunId, Scope};

pub mod exec;
pub mod openclaw;
pub mod sim;

/// Delivers a task envelope to an agent.
///
/// Implementations are shared by concurrent delegations (`Send + Sync`,
/// `&self`) and used as `Box<dyn Transport>` / `Arc<dyn Transport>`.
#[async_trait]
pub trait Transport: Send + Sync {
    /// The transport's kind, as named in config and logs (`openclaw`,
    /// `exec`, `sim`).
    fn name(&self) -> &str;

    /// Hands `envelope` to its agent and returns once the receiver admitted
    /// it. Does not wait for the handoff and does not retry: the caller
    /// retries retryable errors with the same envelope.
    async fn dispatch(&self, envelope: &Envelope) -> Result<Ack, TransportError>;

    /// Largest task message this transport delivers, in bytes (default
    /// [`DEFAULT_MAX_TASK_BYTES`], the OpenClaw gateway's body cap; each
    /// transport's config can override it). A task over it is refused by
    /// the [`Delegator`](crate::Delegator) before it is sent
    /// ([`DelegateError::TooLarge`](crate::DelegateError::TooLarge)), and a workflow stops rendering a task
    /// as soon as it passes it.
    fn max_task_bytes(&self) -> u64 {
        DEFAULT_MAX_TASK_BYTES
    }

    /// Whether a delegation sent through this transport can still answer
    /// after the orch process that sent it has ended. `true` for a remote
    /// agent (OpenClaw: the gateway runs the agent), `false` where the
    /// agent lives and dies with the sender (the simulated fleet's tasks,
    /// an `exec` command whose process group orch kills). Resume re-awaits
    /// a delegation in flight only when it can still answer, and sends the
    /// others again at once. The default is `true`: waiting is the safe
    /// choice for a transport that does not say.
    fn outlives_sender(&self) -> bool {
        true
    }
}

/// The default [`Transport::max_task_bytes`]: 256 KiB, the OpenClaw
/// gateway's request body cap.
pub const DEFAULT_MAX_TASK_BYTES: u64 = 256 * 1024;

fn _assert_object_safe(_: &dyn Transport) {}

/// One task on its way to an agent: everything a transport needs, already
/// decided by the delegator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The delegation's run id; also the idempotency key of every
    /// (re)dispatch.
    pub run_id: RunId,
    /// Id of the target agent (as in the registry).
    pub agent: String,
    /// Id of whoever delegates (an agent or a human), already allowed by the
    /// ACL.
    pub caller: String,
    /// The full task message: task text, optional channel-context block and
    /// the handoff instructions.
    pub message: String,
    /// Where the agent must write its handoff (for the file store, the
    /// absolute path of `<root>/[sub/]<runId>.json`).
    pub handoff_location: String,
    /// How long the delegator waits for the handoff; transports that can
    /// bound the agent's run pass it on (OpenClaw `timeoutSeconds`).
    pub timeout: Duration,
    /// The run this one is a sub-delegation of, if any (`--parent`).
    pub parent: Option<RunId>,
    /// Where the handoff goes: [`Scope::Sub`] exactly when `parent` is set.
    pub scope: Scope,
    /// 1 for the first dispatch, 2 for the first re-ask, and so on. Retries
    /// of one dispatch keep the attempt (and so the idempotency key).
    pub attempt: u32,
}

impl Envelope {
    /// The idempotency key of this dispatch: the run id for the first
    /// attempt, `<runId>.reask-<n>` for re-asks, so a retried dispatch is
    /// recognised as the same request but a re-ask is a new one.
    pub fn idempotency_key(&self) -> String {
        if self.attempt <= 1 {
            self.run_id.to_string()
        } else {
            format!("{}.reask-{}", self.run_id, self.attempt - 1)
        }
    }
}

/// The receiver admitted the task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ack {
    /// The receiver's own id for the run, if it gives one (OpenClaw's
    /// `runId`); for logs and the ledger only.
    pub remote_run_id: Option<String>,
    /// Set when the transport knows the agent's run has *ended* by the time
    /// `dispatch` returns (OpenClaw with `waitForCompletion`, the `exec`
    /// transport once its command exited). The delegator then checks the
    /// store once instead of waiting out the deadline: a run that ended
    /// without a handoff is re-asked or failed at once.
    pub completion: Option<Completion>,
}

/// How an agent's run ended, as far as the transport can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// `true` when the run ended normally (OpenClaw `completion.status` `ok`,
    /// exit status 0).
    pub ok: bool,
    /// What the transport knows about the end: OpenClaw's status and error,
    /// or the command's exit status and the tail of its stderr. Never
    /// contains secrets.
    pub detail: String,
}

/// Why a dispatch failed. Messages never contain secrets (tokens, auth
/// headers), since they end up in output and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The receiver refused the task and would refuse it again (bad
    /// payload, unknown agent, bad token, hooks disabled). Not retryable.
    #[error("the receiver rejected the task with status {status}: {message}")]
    Rejected {
        /// The receiver's status (HTTP status for `openclaw`).
        status: u16,
        /// What the receiver said, shortened.
        message: String,
    },
    /// The receiver is there but cannot take the task now (HTTP 409, 429,
    /// 502, 503). Retryable, after `retry_after` if the receiver said so.
    #[error("the receiver is unavailable: {message}")]
    Unavailable {
        /// What the receiver said, shortened.
        message: String,
        /// How long the receiver asked to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The receiver could not be reached (connection refused or reset,
    /// DNS, a local command that could not be started). Retryable.
    #[error("could not reach the receiver: {message}")]
    Connect {
        /// What failed.
        message: String,
    },
    /// The request carrying the task is larger than the receiver accepts
    /// (OpenClaw: a 256 KiB body, which JSON escaping makes larger than the
    /// message it carries). Found before sending; not retryable. (A task
    /// message over [`Transport::max_task_bytes`] never gets this far: the
    /// delegator refuses it first.)
    #[error(
        "the request is {size} bytes, larger than the {limit}-byte limit of the receiver: shorten the task or its context"
    )]
    TooLarge {
        /// Size of the request, in bytes.
        size: u64,
        /// The receiver's limit, in bytes.
        limit: u64,
    },
    /// The transport is misconfigured (missing URL, token variable unset,
    /// empty command). Not retryable.
    #[error("transport configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
}

impl TransportError {
    /// Whether dispatching the same envelope again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Connect { .. })
    }

    /// How long the receiver asked the caller to wait before retrying, if
    /// it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
