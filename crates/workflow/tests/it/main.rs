#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod builtin;
mod cancel;
mod corpus;
mod exec;
mod fan;
mod paused;
mod props;
mod schema;
mod uses;

use std::sync::Arc;

use orch_delegate::orch_acl::Policy;
use orch_delegate::orch_handoff::HandoffStore;
use orch_delegate::{AgentEntry, Delegator, DelegatorConfig, Transport};

/// The agents the executor tests delegate to; `solo` takes one task at a
/// time (maxConcurrent 1).
pub(crate) const AGENTS: &[&str] = &["webster", "tech-lead", "auditor", "solo"];

/// A delegator over `store` whose every agent answers through `transport`,
/// under the default ACL and delegation settings.
pub(crate) fn delegator(
    store: Arc<dyn HandoffStore>,
    transport: Arc<dyn Transport>,
) -> Arc<Delegator> {
    let entries = AGENTS
        .iter()
        .map(|&id| {
            let mut e = AgentEntry::new(id, Arc::clone(&transport));
            if id == "solo" {
                e.max_concurrent = Some(1);
            }
            e
        })
        .collect();
    Arc::new(
        Delegator::new(
            store,
            Policy::atomizer_default(),
            entries,
            DelegatorConfig::default(),
        )
        .unwrap(),
    )
}
