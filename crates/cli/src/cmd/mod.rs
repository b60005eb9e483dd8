//! One module per command group.

pub(crate) mod acl;
pub(crate) mod handoff;
