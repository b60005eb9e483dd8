//! The crate's errors: [`WorkflowError`] for a workflow file or a run
//! request against it (every one names the file, line and column), and
//! [`ExecError`] for a run that could not be carried out.
//!
//! `ExecError` lives here, not beside the executor, because run storage
//! (`run.rs`) returns it too: the executor builds on run storage, never the
//! other way round.

use orch_delegate::orch_handoff::{RunId, StoreError};

/// What went wrong, for callers that map errors to exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file is over the size cap, too deeply nested, or uses anchors.
    Limit,
    /// Not YAML.
    Syntax,
    /// YAML, but not the shape of a workflow (unknown key, wrong type…).
    Schema,
    /// Two steps share an id, or an id is not allowed.
    StepId,
    /// A reference to a step that does not exist.
    UnknownStep,
    /// The dependencies of the steps form a cycle.
    Cycle,
    /// A `{{ … }}` template is malformed or names something unknown.
    Template,
    /// A `when` condition is malformed or names something unknown.
    Condition,
    /// A step names an agent the registry does not know.
    UnknownAgent,
    /// The caller may not delegate to a step's agent.
    Denied,
    /// A required input was not given.
    MissingInput,
    /// An input was given that the workflow does not declare.
    UnknownInput,
    /// A step's task is larger than its agent's transport delivers.
    TaskTooLarge,
    /// A `for_each` step has no items, more than its `max_items`, or fewer
    /// than its `join` needs.
    Items,
    /// A `uses` step names a workflow that cannot be found or cannot be
    /// run by `uses` (it has no `output`).
    UnknownWorkflow,
    /// Workflows use each other in a cycle, or nest deeper than
    /// [`MAX_USES_DEPTH`](crate::MAX_USES_DEPTH).
    WorkflowCycle,
}

/// An error in a workflow file, or in a run request against it.
///
/// Displays as `<origin>:<line>:<column>: <message>`; lines and columns
/// count from 1.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {message}")]
#[non_exhaustive]
pub struct WorkflowError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The file (or `builtin:<name>`) the workflow came from.
    pub origin: String,
    /// Line of the offending node, from 1.
    pub line: usize,
    /// Column of the offending node, from 1.
    pub column: usize,
    /// Path of the offending node, e.g. `steps[2].needs[0]` (empty for the
    /// whole file).
    pub path: String,
    /// What is wrong, lowercase, without the location.
    pub message: String,
}

impl WorkflowError {
    /// Whether this is an ACL denial (the CLI maps it to exit 3).
    pub fn is_denied(&self) -> bool {
        self.kind == ErrorKind::Denied
    }
}

/// Why a template or condition could not be evaluated at run time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// A value it needs is missing (an input without a value, a step that
    /// has not finished).
    #[error("{0}")]
    Missing(String),
    /// The rendered text would pass its size limit: rendering stopped
    /// there, and nothing of that size was built.
    #[error(transparent)]
    TooLarge(TooLarge),
}

/// A rendered text over its size limit: how large it would have been, and
/// which references made it so.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
#[non_exhaustive]
pub struct TooLarge {
    /// The size the whole text would have, in bytes (counted, not built).
    pub size: u64,
    /// The limit it passed, in bytes.
    pub limit: u64,
    /// What the text is made of: each reference (`steps.a.result`) with
    /// how many times it appears and the bytes it adds in all, largest
    /// first; the template's own text is `text`.
    pub growth: Vec<Growth>,
}

/// One part of a [`TooLarge`] text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Growth {
    /// The reference (`steps.a.result`), or `text` for the template's own
    /// text.
    pub what: String,
    /// How many times it appears.
    pub times: u64,
    /// The bytes it adds, in all.
    pub bytes: u64,
}

/// `314572800 bytes (300.0 MiB)`.
pub(crate) fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f >= KIB * KIB {
        format!("{n} bytes ({:.1} MiB)", f / KIB / KIB)
    } else if f >= KIB {
        format!("{n} bytes ({:.1} KiB)", f / KIB)
    } else {
        format!("{n} bytes")
    }
}

impl TooLarge {
    fn describe(&self) -> String {
        format!(
            "it would be {}, over the limit of {}; made of {}",
            bytes(self.size),
            bytes(self.limit),
            self.made_of()
        )
    }

    /// `` `{{ steps.a.result }}` ×100: 314572800 bytes (300.0 MiB), the
    /// template's own text: 12 bytes ``: the three largest parts.
    pub fn made_of(&self) -> String {
        let parts: Vec<String> = self
            .growth
            .iter()
            .filter(|g| g.bytes > 0)
            .take(3)
            .map(|g| {
                let what = if g.what == "text" {
                    "the template's own text".to_owned()
                } else {
                    format!("`{{{{ {} }}}}`", g.what)
                };
                let times = if g.times > 1 && g.what != "text" {
                    format!(" ×{}", g.times)
                } else {
                    String::new()
                };
                format!("{what}{times}: {}", bytes(g.bytes))
            })
            .collect();
        let counted = self.growth.iter().filter(|g| g.bytes > 0).count();
        let more = if counted > 3 {
            format!(" and {} more", counted - 3)
        } else {
            String::new()
        };
        format!("{}{more}", parts.join(", "))
    }
}

/// Something in a valid workflow that is likely a mistake (`orch workflow
/// validate` prints it). Displays as `<origin>:<line>:<column>: <message>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {message}")]
#[non_exhaustive]
pub struct Warning {
    /// The file the workflow came from.
    pub origin: String,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// What may go wrong.
    pub message: String,
}

/// Why a run could not be carried out (a failing step is not an error: it
/// is in the [`RunSummary`](crate::RunSummary)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// A stored record does not read back.
    #[error("workflow run {run_id}: stored record is corrupt: {message}")]
    Corrupt {
        /// The run.
        run_id: RunId,
        /// What is wrong.
        message: String,
    },
    /// No such run.
    #[error("no workflow run {run_id} in the store")]
    NotFound {
        /// The run asked for.
        run_id: RunId,
    },
    /// The workflow stored with the run no longer loads.
    #[error("workflow stored with the run: {0}")]
    Workflow(WorkflowError),
    /// The run cannot start: a step's task can never fit what its agent's
    /// transport delivers ([`check_task_sizes`](crate::check_task_sizes)).
    #[error("{0}")]
    Refused(WorkflowError),
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Usage(String),
}

impl From<StoreError> for ExecError {
    fn from(e: StoreError) -> Self {
        ExecError::Store(e)
    }
}
