//! Handoff records, run ids, and the store that carries them.
//!
//! ```
//! use orch_handoff::{Expect, FsStore, FsStoreConfig, HandoffKey, Handoffs, PutMode, RunId};
//! use orch_handoff::{Scope, Status, parse_handoff};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let json = br#"{"schemaVersion": "1.0", "runId": "orch-20260101T000000Z-0123abcd",
//!     "agent": "webster", "status": "complete", "result": "about 880 MPa"}"#;
//! let run_id = RunId::new("orch-20260101T000000Z-0123abcd")?;
//! let expect = Expect { run_id: Some(&run_id), agent: Some("webster") };
//! let handoff = parse_handoff(json, &expect)?;
//! assert_eq!(handoff.status, Status::Complete);
//!
//! # let dir = tempfile::tempdir()?;
//! let store = FsStore::open(FsStoreConfig::new(dir.path()))?;
//! store.put(Scope::Top, &handoff, PutMode::Create).await?;
//! assert_eq!(store.get(&HandoffKey::top(run_id)).await?, Some(handoff));
//! # Ok(())
//! # }
//! ```
//!
//! A *handoff* is the JSON file an agent writes when it finishes a delegated
//! task (DESIGN §3). This crate owns its types, the parser (errors point at
//! the field, line and column), and the [`HandoffStore`] trait with its file
//! implementation [`FsStore`] (DESIGN §4) and, with the feature `nats`, the
//! NATS JetStream implementation `NatsStore` for fleets on several hosts
//! (DESIGN §10). The feature `testing` adds `testing::NatsServer`, a
//! throwaway loopback nats-server for tests and benchmarks.
//!
//! Two decisions a newcomer asks about:
//!
//! - **One watcher per store.** Linux allows 128 inotify instances per user,
//!   so [`FsStore`] owns a single `notify` watcher and a map run id →
//!   waiters. Waiting is *subscribe, then check*: a handoff that landed
//!   before the subscription is found by the check, one that lands after it
//!   by the watcher, so a fast agent is never missed.
//! - **The file's content is the truth.** Watcher events only mean "look
//!   again"; a file that does not parse yet because it is still being
//!   written is looked at again until the deadline, never reported as final.
#![warn(missing_docs)]

mod parse;
mod record;
mod runid;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use parse::{Expect, HandoffError, parse_handoff, parse_handoff_capped};
pub use record::{
    Artifact, ArtifactRef, Confidence, DEFAULT_MAX_HANDOFF_BYTES, Handoff, SCHEMA_VERSION, Status,
    handoff_json_schema,
};
pub use runid::{InvalidId, MAX_ID_LEN, RunId, validate_id};
#[cfg(feature = "nats")]
pub use store::NatsStore;
pub use store::{DEFAULT_NATS_URL, NatsAuth, NatsStoreConfig, NatsToken};
pub use store::{
    Existing, FsStore, FsStoreConfig, HandoffKey, HandoffStore, Handoffs, Ledger, LedgerEvent,
    LedgerEventKind, LedgerRange, LedgerRead, PutMode, Scope, StoreError, Subscription,
    WaitOutcome, WatchMode, WorkflowRecord, WorkflowRecords,
};

/// The store traits, for `use orch_handoff::prelude::*;`: a method of a
/// [`HandoffStore`] is one of its three parts', and calling it needs that
/// part's trait in scope.
pub mod prelude {
    pub use crate::store::{HandoffStore, Handoffs, Ledger, WorkflowRecords};
}
