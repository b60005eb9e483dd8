//! Delegation: deliver a task to an agent and wait for its handoff
//! (DESIGN §5).
//!
//! ```
//! # use std::sync::Arc;
//! use orch_delegate::orch_acl::Policy;
//! use orch_delegate::orch_handoff::{FsStore, FsStoreConfig, HandoffStore};
//! use orch_delegate::transport::sim::{SimConfig, SimTransport};
//! use orch_delegate::{AgentEntry, Delegator, DelegatorConfig, OutcomeStatus, Request};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let store: Arc<dyn HandoffStore> = Arc::new(FsStore::open(FsStoreConfig::new(dir.path()))?);
//! let sim = Arc::new(SimTransport::new(Arc::clone(&store), SimConfig::default()));
//! let agents = vec![AgentEntry::new("webster", sim)];
//! let config = DelegatorConfig::default();
//! let delegator = Delegator::new(store, Policy::atomizer_default(), agents, config)?;
//!
//! let request = Request::new("webster", "Find the yield strength of Ti-6Al-4V", "manager");
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let outcome = delegator.delegate(request, &cancel).await?;
//! assert_eq!(outcome.status(), OutcomeStatus::Complete);
//! # Ok(())
//! # }
//! ```
//!
//! `examples/delegate.rs` does the same and prints the outcome;
//! `examples/custom_transport.rs` implements a [`Transport`] of its own.
//!
//! This crate holds the [`Transport`] seam, its implementations
//! ([`transport::openclaw`]: OpenClaw Gateway HTTP hooks;
//! [`transport::exec`]: a local command; [`transport::sim`]: a simulated
//! fleet for demos and tests) and the [`Delegator`], which runs one
//! delegation end to end: ACL check, new run id, subscribe to the handoff
//! store, build the task message and refuse it if it is
//! over the transport's size limit, dispatch with retries until the
//! deadline (each one reported to an [`Observer`]), wait until the deadline, re-ask once on an invalid handoff,
//! optionally hand the result to a validator agent, and write the ledger.
//! With the `testing` feature, `testing::FakeGateway` is a local fake
//! OpenClaw gateway that speaks the real hooks contract.
//!
//! Decisions a newcomer asks about:
//!
//! - **A transport only delivers.** [`Transport::dispatch`] returns once the
//!   receiver has *admitted* the task (OpenClaw answers `{ "ok": true,
//!   "runId": … }`); the result always arrives as a handoff in the store,
//!   whatever the transport. So waiting, deadlines and validation are written
//!   once, in the delegator, not per transport.
//! - **The run id is the idempotency key.** Every retry of one delegation
//!   sends the same [`Envelope::run_id`] (OpenClaw's `Idempotency-Key`), so a
//!   retried dispatch never starts the task twice. Whether to retry is the
//!   error's call: [`TransportError::is_retryable`] and
//!   [`TransportError::retry_after`].
//! - **Layering.** This crate depends only on `orch-handoff` and `orch-acl`
//!   and re-exports both ([`orch_handoff`], [`orch_acl`]) so `orch-workflow`
//!   builds on this crate alone. It knows nothing about Discord or the agent
//!   registry: the caller passes channel context as an already rendered
//!   string, and resolves agents and their transports before asking.
#![warn(missing_docs)]

pub use orch_acl;
pub use orch_handoff;

mod delegator;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;

pub use delegator::{
    Acked, AgentEntry, DelegateError, DelegationEvent, Delegator, DelegatorConfig, End, GaveUp,
    Observer, Outcome, OutcomeStatus, Reasked, Request, RetryPolicy, RetryWait, Retrying, Timings,
    Unacknowledged, Validation, WaitRule,
};
pub use orch_support::secret::Secret;
pub use transport::{Ack, Completion, DEFAULT_MAX_TASK_BYTES, Envelope, Transport, TransportError};
