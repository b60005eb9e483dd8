//! The one error type of the crate: every error names the file, line and
//! column.

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

/// A value a template or condition needs is missing at run time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
#[non_exhaustive]
pub struct RenderError(pub String);
