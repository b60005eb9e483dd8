//! The ACL as configured: who may delegate to whom.

use orch_acl::Policy;

use crate::app::error::AppError;
use crate::app::wiring::Setup;

/// The configured policy.
pub(crate) fn policy(setup: &Setup) -> &Policy {
    &setup.config.acl
}

/// Whether `caller` may delegate to `target`; a denial says why.
pub(crate) fn check(setup: &Setup, caller: &str, target: &str) -> Result<(), AppError> {
    policy(setup)
        .check(caller, target)
        .map_err(|e| AppError::Denied(format!("denied: {e}")))
}
