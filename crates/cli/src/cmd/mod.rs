//! One module per command group.

pub(crate) mod acl;
pub(crate) mod config;
pub(crate) mod context;
pub(crate) mod delegate;
pub(crate) mod handoff;
pub(crate) mod registry;
pub(crate) mod route;
pub(crate) mod workflow;
