#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod builtin;
mod corpus;
mod exec;
mod paused;
mod schema;
