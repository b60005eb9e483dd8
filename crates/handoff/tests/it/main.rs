//! Integration tests of `orch-handoff`: one test binary, one module per area.

mod common;
mod conformance;
#[cfg(feature = "nats")]
mod nats;
mod props;
mod record;
mod store;
