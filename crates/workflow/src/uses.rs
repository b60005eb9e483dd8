//! Finding the workflows `uses` names: the [`Resolve`] seam, the built-in
//! resolver [`load`](crate::load) uses, and the resolver over what a run
//! stored ([`Stored`]), which resume uses so that it never depends on the
//! files.

use crate::model::UsedWorkflow;

/// A workflow `uses` found: where it came from and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Where it was found: a path, or `<built-in NAME>`. Two `uses` that
    /// reach the same file must give the same origin (cycles are found by
    /// it).
    pub origin: String,
    /// Its YAML text.
    pub text: String,
}

/// Finds the workflow a `uses:` names.
pub trait Resolve {
    /// The workflow `name` (as written after `uses:`) used by the workflow
    /// from `from` (its origin); `Err`: why there is none, naming what
    /// was looked for (the caller adds the file and line).
    fn resolve(&self, name: &str, from: &str) -> Result<Resolved, String>;
}

/// The origin of built-in workflow `name`.
pub fn builtin_origin(name: &str) -> String {
    format!("<built-in {name}>")
}

/// Resolves built-in workflows only: what [`load`](crate::load) uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct Builtins;

impl Resolve for Builtins {
    fn resolve(&self, name: &str, _from: &str) -> Result<Resolved, String> {
        match crate::builtin(name) {
            Some(text) => Ok(Resolved {
                origin: builtin_origin(name),
                text: text.to_owned(),
            }),
            None => Err(format!(
                "unknown workflow `{name}` (built in: {})",
                crate::builtin_names().collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// Resolves from the workflows a run stored ([`RunSummary::uses`]), as
/// they were when the run started.
///
/// [`RunSummary::uses`]: crate::RunSummary::uses
#[derive(Clone, Copy, Debug)]
pub struct Stored<'a>(pub &'a [UsedWorkflow]);

impl Resolve for Stored<'_> {
    fn resolve(&self, name: &str, from: &str) -> Result<Resolved, String> {
        self.0
            .iter()
            .find(|w| w.from == from && w.name == name)
            .map(|w| Resolved {
                origin: w.origin.clone(),
                text: w.source.clone(),
            })
            .ok_or_else(|| format!("the run's stored workflows have no `{name}` used by {from}"))
    }
}
