//! Front ends: thin translations between a way of asking (today the clap
//! command line) and the application layer's operations.

pub(crate) mod cli;
pub(crate) mod out;
