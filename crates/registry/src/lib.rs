//! Who the agents are, which one fits a task, and what was said on Discord
//! (DESIGN §7).
//!
//! This crate holds the agent registry ([`Registry`], read from
//! `AGENTS_REGISTRY.json`: per agent its id, name, role, description,
//! capability tags, channels, transport settings, validator and
//! `maxConcurrent`, plus a map of channel names to Discord channel ids),
//! the [`Router`] seam with its default, [`Bm25Router`] (ranks agents
//! against a task text by BM25 over capabilities, role, name and
//! description, with the reasons shown), and the Discord channel context
//! ([`discord`]: recent messages over REST, oldest first, rendered and
//! trimmed to a character budget).
//!
//! Decisions a newcomer asks about:
//!
//! - **The router does not know the ACL.** [`Router::rank`] ranks only the
//!   candidates it is given; whoever composes (the CLI) first filters the
//!   registry's agents by the caller's ACL
//!   (`orch_acl::Policy::allowed_targets`). So this crate does not depend on
//!   `orch-acl`, and a denied agent can never be chosen by routing.
//! - **Channel context is a string.** The delegator takes rendered context
//!   text, not a Discord client, so `orch-delegate` knows nothing about
//!   Discord; the CLI asks this crate for the text and passes it on. The
//!   Discord base URL is configurable, so tests run against a local fake.
#![warn(missing_docs)]

pub mod discord;
mod registry;
mod router;

pub use registry::*;
pub use router::*;

/// Ranks agents for a task text.
///
/// Used as `Box<dyn Router>` by the CLI, so the default router can be
/// swapped (an embedding-based one, a fixed table in tests).
pub trait Router: Send + Sync {
    /// Ranks `candidates` (agent ids the caller may delegate to) for `task`.
    ///
    /// Best first: scores descending, ties in the order of `candidates`.
    /// Every returned agent is one of `candidates`, at most once. A
    /// candidate with no evidence for the task may be left out, so an empty
    /// result means no candidate fits.
    fn rank(&self, task: &str, candidates: &[&str]) -> Vec<Ranked>;
}

fn _assert_object_safe(_: &dyn Router) {}

/// One agent's place in a ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// The agent id (one of the candidates).
    pub agent: String,
    /// How well the agent fits, non-negative; higher is better. Comparable
    /// only within one ranking.
    pub score: f64,
    /// Why, for humans (`orch route` shows them): e.g. `"thermal margins"
    /// matched capability "thermal margins"` or `"Check" matched
    /// description`.
    pub reasons: Vec<String>,
}
