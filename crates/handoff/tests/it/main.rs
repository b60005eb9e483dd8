//! Integration tests of `orch-handoff`: one test binary, one module per area.

#[cfg(feature = "nats")]
mod cluster;
mod common;
mod conformance;
#[cfg(feature = "nats")]
mod nats;
mod props;
mod record;
mod store;
