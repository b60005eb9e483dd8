//! Integration tests of `orch-discord` against its local fake Discord.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod discord;
