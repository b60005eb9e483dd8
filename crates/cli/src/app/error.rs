//! The application's one error type and the documented exit codes it maps
//! to (DESIGN §5).

use std::process::ExitCode;

use orch_handoff::Status;

/// The documented exit codes of `orch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Success; for a handoff: status `complete`.
    Ok = 0,
    /// An unexpected failure (I/O on the store, the runtime).
    Internal = 1,
    /// Usage, configuration or validation error.
    Usage = 2,
    /// The ACL denied the delegation.
    Denied = 3,
    /// The transport failed (after retries).
    Transport = 4,
    /// Handoff status `partial`.
    Partial = 10,
    /// Handoff status `blocked`.
    Blocked = 11,
    /// Handoff status `failed`.
    Failed = 12,
    /// Nothing arrived before the deadline.
    TimedOut = 13,
    /// Interrupted (Ctrl-C): 128 + SIGINT.
    Cancelled = 130,
}

impl Exit {
    /// The exit code that reports a handoff of this status.
    pub(crate) fn for_status(status: Status) -> Self {
        match status {
            Status::Complete => Self::Ok,
            Status::Partial => Self::Partial,
            Status::Blocked => Self::Blocked,
            Status::Failed => Self::Failed,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// An error that ends the command, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    /// Bad arguments or input (exit 2).
    #[error("{0}")]
    Usage(String),
    /// ACL denial (exit 3).
    #[error("{0}")]
    Denied(String),
    /// Transport failure (exit 4).
    #[error("{0}")]
    Transport(String),
    /// Ctrl-C (exit 130).
    #[error("{0}")]
    Cancelled(String),
    /// Writing to stdout failed; a closed pipe is not reported.
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
    /// Anything else (exit 1).
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    pub(crate) fn exit(&self) -> Exit {
        match self {
            Self::Usage(_) => Exit::Usage,
            Self::Denied(_) => Exit::Denied,
            Self::Transport(_) => Exit::Transport,
            Self::Cancelled(_) => Exit::Cancelled,
            Self::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Exit::Ok,
            Self::Output(_) | Self::Internal(_) => Exit::Internal,
        }
    }

    pub(crate) fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl From<orch_handoff::StoreError> for AppError {
    fn from(e: orch_handoff::StoreError) -> Self {
        use orch_handoff::StoreError as E;
        match e {
            E::InvalidId { .. }
            | E::ReservedId { .. }
            | E::Invalid { .. }
            | E::Symlink { .. }
            | E::TooLarge { .. }
            | E::Corrupt { .. } => Self::Usage(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_design() {
        let table = [
            (Exit::Ok, 0),
            (Exit::Internal, 1),
            (Exit::Usage, 2),
            (Exit::Denied, 3),
            (Exit::Transport, 4),
            (Exit::Partial, 10),
            (Exit::Blocked, 11),
            (Exit::Failed, 12),
            (Exit::TimedOut, 13),
            (Exit::Cancelled, 130),
        ];
        for (exit, code) in table {
            assert_eq!(exit as u8, code, "{exit:?}");
        }
        assert_eq!(Exit::for_status(Status::Blocked), Exit::Blocked);
    }
}
