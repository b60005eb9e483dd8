#![allow(clippy::unwrap_used, clippy::expect_used)]
mod delegator;
mod exec_sim;
mod faults;
mod openclaw;
