//! Problems the scan's threads find in the store: what is wrong with a
//! file, listed in [`Report::problems`](crate::Report).

use std::sync::{Mutex, PoisonError};

use orch_handoff::StoreError;
use orch_support::text::shorten;

use crate::report::FileProblem;

/// Problems found by the scan's threads.
#[derive(Default)]
pub(crate) struct ProblemList {
    files: Mutex<Vec<FileProblem>>,
}

impl ProblemList {
    pub(crate) fn file(&self, path: String, reason: String) {
        let reason = shorten(reason.trim(), 160);
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(FileProblem { path, reason });
    }

    pub(crate) fn into_files(self) -> Vec<FileProblem> {
        self.files
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// What is wrong with a file, without its (store-specific) path.
pub(crate) fn store_reason(e: &StoreError) -> String {
    match e {
        StoreError::Invalid { source, .. } => source.to_string(),
        StoreError::Corrupt { message, .. } => message.clone(),
        StoreError::Symlink { .. } => "a symlink (never followed)".to_owned(),
        StoreError::TooLarge { size, cap, .. } => {
            format!("{size} bytes, larger than the {cap}-byte limit")
        }
        StoreError::Io { op, source, .. } => format!("{op}: {source}"),
        other => other.to_string(),
    }
}
