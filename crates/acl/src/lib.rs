//! Who may delegate to whom (DESIGN §6).
//!
//! A [`Policy`] maps each *caller* (the id on whose behalf a task is sent:
//! an agent, or a human's id) to a [`Grant`]: every agent, or a fixed list of
//! agents. [`Policy::check`] is the one question every path that sends a task
//! asks (delegate, auto-routing, workflow steps, validators, re-asks), and its
//! [`AclError::Denied`] says what the caller *may* do instead. Delegation
//! chains are bounded by [`check_depth`].
//!
//! Decisions a newcomer asks about:
//!
//! - **Default deny, no self-delegation.** A caller without a rule may
//!   delegate to nobody. No caller may delegate to itself, whatever its
//!   grant: `*` means "every agent except the caller". A rule that lists its
//!   own caller is refused when the policy is built, not silently ignored.
//! - **The policy knows names, not agents.** `*` grants any target *name*;
//!   whether the name is a registered agent is the registry's question, and
//!   DESIGN §5 asks it first (unknown agent, exit 2) before the ACL (denied,
//!   exit 3). To list whom a caller may reach, filter the known agents with
//!   [`Policy::allowed_targets`]. Names are compared exactly (case-sensitive);
//!   `*` and the empty string are never targets.
//! - **One validation path.** [`Policy::from_rules`] and the serde
//!   `Deserialize` impl share the same checks, so a policy in a config file
//!   can never hold what the API would refuse. The config shape is a map
//!   *caller → list of agents*, where `"*"` (alone in the list, or as a bare
//!   string) grants every agent:
//!
//!   ```yaml
//!   acl:
//!     manager: "*"
//!     tech-lead: [webster, nx-expert, study-builder, secretary]
//!     secretary: []            # explicit: nobody (same as no rule)
//!   ```
//!
//!   Refused: an empty or whitespace-padded name, `*` as a caller, a caller
//!   listed twice, a target listed twice in one rule, `*` mixed with names
//!   (`["*", "webster"]` is ambiguous: write `"*"`), and a rule naming its
//!   own caller.
//! - **Depth.** A delegation made directly (by a human or a top-level
//!   agent) has depth 0; each sub-delegation (`--parent` hop) adds 1.
//!   [`check_depth`] refuses `depth > limit`, so with the default limit of
//!   [`DEFAULT_MAX_DEPTH`] = 3 a chain may go top-level (0) → sub (1) →
//!   sub-sub (2) → sub-sub-sub (3) and no further.
#![warn(missing_docs)]

mod config;
mod error;
mod policy;

pub use error::{AclError, Allowed};
pub use policy::{DEFAULT_MAX_DEPTH, Grant, Policy, check_depth};
