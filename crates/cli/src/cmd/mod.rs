//! One module per command group.

pub(crate) mod acl;
pub(crate) mod config;
pub(crate) mod delegate;
pub(crate) mod handoff;
