//! Integration tests of `orch-registry`: one test binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod registry;
mod routing;
