//! The application layer: configuration, wiring and the operations every
//! front end calls (delegate, route, workflows, metrics, handoffs). Each
//! operation takes a typed request and returns a typed, serialisable
//! result; front ends only translate their input and render the result.

pub(crate) mod acl;
pub(crate) mod config;
pub(crate) mod context;
pub(crate) mod delegate;
pub(crate) mod descriptor;
pub(crate) mod error;
pub(crate) mod handoff;
pub(crate) mod metrics;
pub(crate) mod route;
pub(crate) mod wiring;
pub(crate) mod workflow;
