//! One delegation over the simulated fleet: a [`Delegator`] on a file store
//! in a temp dir, `manager` asks `webster` under the default ACL, and the
//! handoff the simulated agent writes comes back as the outcome.
//!
//! Run: `cargo run -p orch-delegate --example delegate`.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use orch_delegate::orch_acl::Policy;
use orch_delegate::orch_handoff::{FsStore, FsStoreConfig, HandoffStore};
use orch_delegate::transport::sim::{SimConfig, SimTransport};
use orch_delegate::{AgentEntry, Delegator, DelegatorConfig, Request};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The store: handoffs, sub-delegations and the ledger under one directory.
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn HandoffStore> = Arc::new(FsStore::open(FsStoreConfig::new(dir.path()))?);

    // The simulated fleet answers through the same store the delegator waits on.
    let sim = Arc::new(SimTransport::new(
        Arc::clone(&store),
        SimConfig {
            delay: Duration::from_millis(50),
            ..SimConfig::default()
        },
    ));
    let agents = vec![AgentEntry::new("webster", sim)];
    let delegator = Delegator::new(
        store,
        Policy::atomizer_default(),
        agents,
        DelegatorConfig::default(),
    )?;

    let request = Request::new("webster", "Find the yield strength of Ti-6Al-4V", "manager");
    let outcome = delegator
        .delegate(request, &CancellationToken::new())
        .await?;

    println!("run id:  {}", outcome.run_id);
    println!("status:  {}", outcome.status());
    if let Some(handoff) = &outcome.handoff {
        println!("result:  {}", handoff.result);
    }
    println!("handoff: {}", outcome.handoff_path);
    Ok(())
}
