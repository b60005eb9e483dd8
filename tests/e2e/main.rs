//! End-to-end tests: they run the real `orch` binary in a temp store.
//!
//! One `Orch` harness owns a temporary store directory and runs the binary
//! with a clean environment; `transcript` renders a run as text for insta,
//! with the temp path and timestamps redacted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod acl;
mod cluster;
mod config;
mod context;
mod delegate;
mod handoff;
mod hostile;
mod mcp;
mod metrics;
mod nats;
mod openclaw;
mod routing;
mod skill;
mod workflow;

mod harness;

pub(crate) use harness::*;
