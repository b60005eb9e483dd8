//! The three transports: `openclaw` (Gateway HTTP hooks), `exec` (a local
//! command) and `sim` (the simulated fleet).

pub mod exec;
pub mod openclaw;
pub mod sim;
