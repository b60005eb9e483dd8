//! The crate's one error type, and [`Allowed`], the "what you may do
//! instead" half of a denial.

use std::fmt;

use crate::Grant;

/// Everything the ACL refuses: a delegation (caller → target, or too deep)
/// and a policy that does not validate.
///
/// [`AclError::is_denied`] tells the two kinds apart: a denial is the
/// answer to a well-formed question (DESIGN §5: exit 3, ledger `denied`);
/// the rest are configuration errors (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclError {
    /// The policy grants `caller` no delegation to `target`.
    #[error("{caller} may not delegate to {target}; {caller} {allowed}")]
    Denied {
        /// Who asked.
        caller: String,
        /// The agent it asked for.
        target: String,
        /// Whom `caller` may delegate to instead.
        allowed: Allowed,
    },
    /// `caller` asked to delegate to itself, which no grant allows.
    #[error("{caller} may not delegate to itself; {caller} {allowed}")]
    SelfDelegation {
        /// Who asked (and was asked for).
        caller: String,
        /// Whom `caller` may delegate to instead.
        allowed: Allowed,
    },
    /// A sub-delegation would be deeper than the limit (see
    /// [`check_depth`](crate::check_depth)).
    #[error(
        "delegation depth {depth} exceeds the limit of {limit} \
         (a top-level delegation is depth 0, each sub-delegation adds 1)"
    )]
    DepthExceeded {
        /// Depth of the refused delegation.
        depth: u32,
        /// The configured limit.
        limit: u32,
    },
    /// A rule has an empty caller name.
    #[error("a rule has an empty caller name")]
    EmptyCaller,
    /// `*` was used as a caller name.
    #[error("\"*\" is not a caller name; write one rule per caller")]
    WildcardCaller,
    /// A rule lists an empty agent name.
    #[error("the rule for {caller} lists an empty agent name")]
    EmptyTarget {
        /// Caller of the offending rule.
        caller: String,
    },
    /// A caller or agent name starts or ends with whitespace.
    #[error("name {name:?} has leading or trailing whitespace")]
    Whitespace {
        /// The offending name, as written.
        name: String,
    },
    /// A caller or agent name that breaks the id rule (DESIGN §3: ASCII
    /// letters, digits, `.`, `_`, `-`, a letter or digit first, at most 128
    /// characters). The message shows the name escaped.
    #[error("not an agent id: {source}")]
    InvalidName {
        /// Why (it quotes the name, escaped and shortened).
        #[source]
        source: orch_support::id::InvalidId,
    },
    /// Two rules name the same caller.
    #[error("duplicate rule for caller {caller}")]
    DuplicateCaller {
        /// The caller named twice.
        caller: String,
    },
    /// One rule lists the same agent twice.
    #[error("the rule for {caller} lists {target} twice")]
    DuplicateTarget {
        /// Caller of the offending rule.
        caller: String,
        /// The agent listed twice.
        target: String,
    },
    /// A rule mixes `*` with agent names.
    #[error(
        "the rule for {caller} mixes \"*\" with agent names; \
         use \"*\" alone to allow every agent"
    )]
    WildcardMixed {
        /// Caller of the offending rule.
        caller: String,
    },
    /// A rule lists its own caller.
    #[error("the rule for {caller} lists {caller} itself; self-delegation is never allowed")]
    SelfInRule {
        /// Caller of the offending rule.
        caller: String,
    },
}

impl AclError {
    /// Whether this refuses a delegation ([`Denied`](Self::Denied),
    /// [`SelfDelegation`](Self::SelfDelegation),
    /// [`DepthExceeded`](Self::DepthExceeded)) rather than reporting a
    /// policy that does not validate.
    pub fn is_denied(&self) -> bool {
        matches!(
            self,
            Self::Denied { .. } | Self::SelfDelegation { .. } | Self::DepthExceeded { .. }
        )
    }
}

/// Whom a caller may delegate to, as told in a denial. Its `Display` is the
/// second half of the message: `may delegate to: webster, secretary`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Allowed {
    /// No rule, or an empty one.
    Nobody,
    /// The caller holds `*`.
    AnyExceptSelf,
    /// The caller's list, in rule order (never empty).
    Only(Vec<String>),
}

impl Allowed {
    pub(crate) fn from_grant(grant: Option<&Grant>) -> Self {
        match grant {
            None => Self::Nobody,
            Some(Grant::All) => Self::AnyExceptSelf,
            Some(Grant::Only(list)) if list.is_empty() => Self::Nobody,
            Some(Grant::Only(list)) => Self::Only(list.clone()),
        }
    }
}

impl fmt::Display for Allowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nobody => f.write_str("may not delegate to anyone"),
            Self::AnyExceptSelf => f.write_str("may delegate to any agent except itself"),
            Self::Only(list) => write!(f, "may delegate to: {}", list.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{AclError, Policy, check_depth};

    fn denial(caller: &str, target: &str) -> AclError {
        match Policy::atomizer_default().check(caller, target) {
            Err(e) => e,
            Ok(()) => panic!("{caller} -> {target} should be denied"),
        }
    }

    #[test]
    fn denied_restricted_caller() {
        let e = denial("tech-lead", "auditor");
        assert!(e.is_denied());
        insta::assert_snapshot!(e.to_string());
    }

    #[test]
    fn denied_caller_without_rule() {
        let e = denial("webster", "secretary");
        assert!(e.is_denied());
        insta::assert_snapshot!(e.to_string());
    }

    #[test]
    fn denied_self_delegation_with_wildcard() {
        let e = denial("manager", "manager");
        assert!(matches!(e, AclError::SelfDelegation { .. }));
        insta::assert_snapshot!(e.to_string());
    }

    #[test]
    fn denied_self_delegation_with_list() {
        let e = denial("optimizer", "optimizer");
        assert!(matches!(e, AclError::SelfDelegation { .. }));
        insta::assert_snapshot!(e.to_string());
    }

    #[test]
    fn denied_depth_exceeded() {
        let e = match check_depth(4, 3) {
            Err(e) => e,
            Ok(()) => panic!("depth 4 over limit 3 should be refused"),
        };
        assert!(e.is_denied());
        insta::assert_snapshot!(e.to_string());
    }

    #[test]
    fn config_errors_are_not_denials() {
        assert!(!AclError::EmptyCaller.is_denied());
        assert!(
            !AclError::DuplicateCaller {
                caller: "manager".into()
            }
            .is_denied()
        );
    }
}
