//! Integration tests of `orch-handoff`: one test binary, one module per area.

mod record;
mod store;
