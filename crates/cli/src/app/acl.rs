//! The ACL as configured: who may delegate to whom.

use orch_acl::Policy;

use crate::app::error::CliError;
use crate::wiring::Setup;

/// The configured policy.
pub(crate) fn policy(setup: &Setup) -> &Policy {
    &setup.config.acl
}

/// Whether `caller` may delegate to `target`; a denial says why.
pub(crate) fn check(setup: &Setup, caller: &str, target: &str) -> Result<(), CliError> {
    policy(setup)
        .check(caller, target)
        .map_err(|e| CliError::Denied(format!("denied: {e}")))
}
