//! [`Policy`], [`Grant`] and the delegation-depth limit.

use std::collections::BTreeMap;

use crate::{AclError, Allowed};

/// The wildcard that grants every agent (except the caller itself).
pub(crate) const WILDCARD: &str = "*";

/// The default limit for [`check_depth`]: top-level (0) → sub (1) →
/// sub-sub (2) → sub-sub-sub (3), and no deeper.
pub const DEFAULT_MAX_DEPTH: u32 = 3;

/// Refuses a delegation deeper than `limit`.
///
/// Depth counts hops from a top-level delegation: a delegation made by a
/// human or by an agent that is not itself running a delegated task has
/// depth 0, and each sub-delegation (a delegation whose `--parent` is a run
/// of depth `d`) has depth `d + 1`. `depth > limit` is refused, so a limit
/// of 0 allows top-level delegations only.
pub fn check_depth(depth: u32, limit: u32) -> Result<(), AclError> {
    if depth > limit {
        Err(AclError::DepthExceeded { depth, limit })
    } else {
        Ok(())
    }
}

/// What one caller may delegate to.
///
/// Inside a [`Policy`] a grant is always valid: [`Grant::Only`] keeps the
/// rule's order (so messages read like the config), holds no duplicates,
/// never `*` or an empty name, and never the caller itself. An empty list is
/// an explicit "nobody", the same as having no rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Every agent except the caller itself (`*` in config).
    All,
    /// Exactly these agents, in rule order.
    Only(Vec<String>),
}

/// A caller → [`Grant`] table; everything it does not grant is denied.
///
/// Built by [`Policy::atomizer_default`], [`Policy::deny_all`],
/// [`Policy::from_rules`] or deserialized from config (see the crate docs
/// for the shape); all of them validate the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    rules: BTreeMap<String, Grant>,
}

impl Default for Policy {
    /// The team's policy, [`Policy::atomizer_default`].
    fn default() -> Self {
        Self::atomizer_default()
    }
}

impl Policy {
    /// The team's policy (DESIGN §6): manager → every agent; tech-lead →
    /// webster, nx-expert, study-builder, secretary; optimizer → webster,
    /// study-builder, secretary; anyone else → nobody.
    pub fn atomizer_default() -> Self {
        let only = |names: &[&str]| Grant::Only(names.iter().map(|&n| n.to_owned()).collect());
        let rules = BTreeMap::from([
            ("manager".to_owned(), Grant::All),
            (
                "tech-lead".to_owned(),
                only(&["webster", "nx-expert", "study-builder", "secretary"]),
            ),
            (
                "optimizer".to_owned(),
                only(&["webster", "study-builder", "secretary"]),
            ),
        ]);
        Self { rules }
    }

    /// A policy with no rules: every delegation is denied.
    pub fn deny_all() -> Self {
        Self {
            rules: BTreeMap::new(),
        }
    }

    /// Builds a policy from `(caller, targets)` pairs, where a target `"*"`
    /// (alone in its list) grants every agent.
    ///
    /// Refused, with the error naming the rule: an empty or
    /// whitespace-padded name, a name that is not an agent id (the id rule
    /// of `orch_support::id`), `*` as a caller, a caller given twice, a
    /// target listed twice, `*` mixed with names, a rule listing its own
    /// caller. An empty list is accepted and grants nobody.
    pub fn from_rules<I, S>(rules: I) -> Result<Self, AclError>
    where
        I: IntoIterator<Item = (S, Vec<S>)>,
        S: Into<String>,
    {
        let mut policy = Self::deny_all();
        for (caller, targets) in rules {
            let caller = caller.into();
            policy.check_new_caller(&caller)?;
            let grant = grant_from_list(&caller, targets.into_iter().map(Into::into))?;
            policy.rules.insert(caller, grant);
        }
        Ok(policy)
    }

    /// Whether `caller` may delegate to `target`; the error says why not
    /// and whom `caller` may delegate to instead.
    pub fn check(&self, caller: &str, target: &str) -> Result<(), AclError> {
        if self.may_delegate(caller, target) {
            return Ok(());
        }
        let allowed = Allowed::from_grant(self.grant(caller));
        if caller == target {
            Err(AclError::SelfDelegation {
                caller: caller.to_owned(),
                allowed,
            })
        } else {
            Err(AclError::Denied {
                caller: caller.to_owned(),
                target: target.to_owned(),
                allowed,
            })
        }
    }

    /// The rule for `caller`, if it has one.
    pub fn grant(&self, caller: &str) -> Option<&Grant> {
        self.rules.get(caller)
    }

    /// [`Policy::check`] as a `bool`, without building an error.
    pub fn may_delegate(&self, caller: &str, target: &str) -> bool {
        if caller == target || target.is_empty() || target == WILDCARD {
            return false;
        }
        match self.rules.get(caller) {
            None => false,
            Some(Grant::All) => true,
            Some(Grant::Only(list)) => list.iter().any(|t| t == target),
        }
    }

    /// The agents of `agents` that `caller` may delegate to, in the order
    /// given (for routing: filter the registry's agents by the caller's ACL).
    pub fn allowed_targets<'a>(
        &self,
        caller: &str,
        agents: impl IntoIterator<Item = &'a str>,
    ) -> Vec<&'a str> {
        agents
            .into_iter()
            .filter(|agent| self.may_delegate(caller, agent))
            .collect()
    }

    /// Every rule, sorted by caller (stable for display).
    pub fn rules(&self) -> impl Iterator<Item = (&str, &Grant)> {
        self.rules
            .iter()
            .map(|(caller, grant)| (caller.as_str(), grant))
    }

    /// Refuses a caller name that is invalid or already has a rule.
    pub(crate) fn check_new_caller(&self, caller: &str) -> Result<(), AclError> {
        if caller.is_empty() {
            return Err(AclError::EmptyCaller);
        }
        if caller == WILDCARD {
            return Err(AclError::WildcardCaller);
        }
        check_trimmed(caller)?;
        check_id(caller)?;
        if self.rules.contains_key(caller) {
            return Err(AclError::DuplicateCaller {
                caller: caller.to_owned(),
            });
        }
        Ok(())
    }

    /// Adds a rule; `caller` must have passed [`Policy::check_new_caller`].
    pub(crate) fn insert_checked(&mut self, caller: String, grant: Grant) {
        self.rules.insert(caller, grant);
    }
}

/// Validates one rule's target list into a [`Grant`].
pub(crate) fn grant_from_list(
    caller: &str,
    targets: impl IntoIterator<Item = String>,
) -> Result<Grant, AclError> {
    let mut wildcard = false;
    let mut names: Vec<String> = Vec::new();
    for target in targets {
        if target.is_empty() {
            return Err(AclError::EmptyTarget {
                caller: caller.to_owned(),
            });
        }
        check_trimmed(&target)?;
        if target != WILDCARD {
            check_id(&target)?;
        }
        if target == caller {
            return Err(AclError::SelfInRule {
                caller: caller.to_owned(),
            });
        }
        let seen = if target == WILDCARD {
            std::mem::replace(&mut wildcard, true)
        } else {
            names.contains(&target)
        };
        if seen {
            return Err(AclError::DuplicateTarget {
                caller: caller.to_owned(),
                target,
            });
        }
        if target != WILDCARD {
            names.push(target);
        }
    }
    match (wildcard, names.is_empty()) {
        (true, true) => Ok(Grant::All),
        (true, false) => Err(AclError::WildcardMixed {
            caller: caller.to_owned(),
        }),
        (false, _) => Ok(Grant::Only(names)),
    }
}

fn check_id(name: &str) -> Result<(), AclError> {
    orch_support::id::validate_id(name).map_err(|source| AclError::InvalidName { source })
}

fn check_trimmed(name: &str) -> Result<(), AclError> {
    if name.trim() == name {
        Ok(())
    } else {
        Err(AclError::Whitespace {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENTS: [&str; 8] = [
        "manager",
        "tech-lead",
        "webster",
        "nx-expert",
        "study-builder",
        "secretary",
        "optimizer",
        "auditor",
    ];

    /// The default matrix of DESIGN §6, written out: rows are callers,
    /// columns are targets in the header's order; `Y` = allowed, `.` =
    /// denied. `stranger` stands for any caller without a rule.
    const DEFAULT_MATRIX: &str = "
        caller         manager tech-lead webster nx-expert study-builder secretary optimizer auditor
        manager           .        Y        Y        Y          Y           Y         Y        Y
        tech-lead         .        .        Y        Y          Y           Y         .        .
        webster           .        .        .        .          .           .         .        .
        nx-expert         .        .        .        .          .           .         .        .
        study-builder     .        .        .        .          .           .         .        .
        secretary         .        .        .        .          .           .         .        .
        optimizer         .        .        Y        .          Y           Y         .        .
        auditor           .        .        .        .          .           .         .        .
        stranger          .        .        .        .          .           .         .        .
    ";

    /// Parses a matrix into `(caller, target, allowed)` cells.
    fn cells(matrix: &str) -> Vec<(&str, &str, bool)> {
        let mut lines = matrix.lines().map(str::trim).filter(|l| !l.is_empty());
        let header: Vec<&str> = lines
            .next()
            .expect("matrix has a header")
            .split_whitespace()
            .skip(1)
            .collect();
        let mut out = Vec::new();
        for line in lines {
            let mut words = line.split_whitespace();
            let caller = words.next().expect("row has a caller");
            let marks: Vec<&str> = words.collect();
            assert_eq!(
                marks.len(),
                header.len(),
                "row {caller} has a mark per column"
            );
            for (target, mark) in header.iter().zip(marks) {
                let allowed = match mark {
                    "Y" => true,
                    "." => false,
                    other => panic!("bad mark {other:?} in row {caller}"),
                };
                out.push((caller, *target, allowed));
            }
        }
        out
    }

    /// The one helper that asks the policy: every entry point must agree
    /// with the expectation. Returns a description of each disagreement.
    fn check(policy: &Policy, caller: &str, target: &str, allowed: bool) -> Option<String> {
        let checked = policy.check(caller, target);
        let agree = checked.is_ok() == allowed
            && policy.may_delegate(caller, target) == allowed
            && policy.allowed_targets(caller, [target]).is_empty() != allowed
            && match &checked {
                Ok(()) => true,
                Err(AclError::SelfDelegation { caller: c, .. }) => caller == target && c == caller,
                Err(AclError::Denied {
                    caller: c,
                    target: t,
                    ..
                }) => caller != target && c == caller && t == target,
                Err(_) => false,
            };
        (!agree).then(|| format!("{caller} -> {target}: expected {allowed}, got {checked:?}"))
    }

    #[test]
    fn default_matrix() {
        let cells = cells(DEFAULT_MATRIX);
        assert_eq!(cells.len(), 9 * 8);
        assert_eq!(cells.iter().filter(|c| c.2).count(), 7 + 4 + 3);
        let policy = Policy::default();
        let wrong: Vec<String> = cells
            .iter()
            .filter_map(|&(caller, target, allowed)| check(&policy, caller, target, allowed))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn deny_all_denies_every_cell() {
        let policy = Policy::deny_all();
        let wrong: Vec<String> = cells(DEFAULT_MATRIX)
            .iter()
            .filter_map(|&(caller, target, _)| check(&policy, caller, target, false))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn default_equals_the_same_rules_built_from_data() {
        let built = Policy::from_rules([
            ("optimizer", vec!["webster", "study-builder", "secretary"]),
            ("manager", vec!["*"]),
            (
                "tech-lead",
                vec!["webster", "nx-expert", "study-builder", "secretary"],
            ),
        ]);
        assert_eq!(built, Ok(Policy::atomizer_default()));
    }

    #[test]
    fn allowed_targets_filters_in_given_order() {
        let policy = Policy::default();
        assert_eq!(
            policy.allowed_targets("manager", AGENTS),
            AGENTS[1..].to_vec()
        );
        assert_eq!(
            policy.allowed_targets("optimizer", AGENTS.iter().rev().copied()),
            ["secretary", "study-builder", "webster"]
        );
        assert!(policy.allowed_targets("auditor", AGENTS).is_empty());
    }

    #[test]
    fn rules_are_sorted_by_caller() {
        let policy = Policy::default();
        let callers: Vec<&str> = policy.rules().map(|(c, _)| c).collect();
        assert_eq!(callers, ["manager", "optimizer", "tech-lead"]);
        assert_eq!(Policy::deny_all().rules().count(), 0);
    }

    #[test]
    fn wildcard_grants_unknown_names_but_never_self_star_or_empty() {
        let policy = Policy::default();
        assert!(policy.may_delegate("manager", "someone-new"));
        assert!(!policy.may_delegate("manager", "*"));
        assert!(!policy.may_delegate("manager", ""));
        assert!(!policy.may_delegate("tech-lead", "someone-new"));
    }

    #[test]
    fn names_are_case_sensitive() {
        let policy = Policy::default();
        assert!(!policy.may_delegate("Manager", "webster"));
        assert!(!policy.may_delegate("tech-lead", "Webster"));
    }

    #[test]
    fn empty_list_grants_nobody() {
        let policy = Policy::from_rules([("secretary", vec![])]).expect("valid");
        assert_eq!(policy.grant("secretary"), Some(&Grant::Only(vec![])));
        let err = policy.check("secretary", "webster").expect_err("denied");
        assert_eq!(
            err.to_string(),
            "secretary may not delegate to webster; secretary may not delegate to anyone"
        );
    }

    #[test]
    fn from_rules_refuses_invalid_rules() {
        type Rules = Vec<(&'static str, Vec<&'static str>)>;
        let cases: Vec<(Rules, AclError)> = vec![
            (vec![("", vec!["webster"])], AclError::EmptyCaller),
            (vec![("*", vec!["webster"])], AclError::WildcardCaller),
            (
                vec![(" manager", vec!["webster"])],
                AclError::Whitespace {
                    name: " manager".into(),
                },
            ),
            (
                vec![("manager", vec!["webster "])],
                AclError::Whitespace {
                    name: "webster ".into(),
                },
            ),
            (
                vec![("manager", vec!["webster", ""])],
                AclError::EmptyTarget {
                    caller: "manager".into(),
                },
            ),
            (
                vec![("manager", vec!["*"]), ("manager", vec!["webster"])],
                AclError::DuplicateCaller {
                    caller: "manager".into(),
                },
            ),
            (
                vec![("tech-lead", vec!["webster", "auditor", "webster"])],
                AclError::DuplicateTarget {
                    caller: "tech-lead".into(),
                    target: "webster".into(),
                },
            ),
            (
                vec![("manager", vec!["*", "*"])],
                AclError::DuplicateTarget {
                    caller: "manager".into(),
                    target: "*".into(),
                },
            ),
            (
                vec![("manager", vec!["webster", "*"])],
                AclError::WildcardMixed {
                    caller: "manager".into(),
                },
            ),
            (
                vec![("tech-lead", vec!["webster", "tech-lead"])],
                AclError::SelfInRule {
                    caller: "tech-lead".into(),
                },
            ),
            (
                vec![("man\u{1b}[2Jager", vec!["webster"])],
                invalid("man\u{1b}[2Jager"),
            ),
            (vec![("manager", vec!["web ster"])], invalid("web ster")),
            (
                vec![("manager", vec!["webster\u{202e}"])],
                invalid("webster\u{202e}"),
            ),
            (vec![("manager", vec!["-webster"])], invalid("-webster")),
        ];
        fn invalid(name: &str) -> AclError {
            AclError::InvalidName {
                source: orch_support::id::validate_id(name).expect_err("not an id"),
            }
        }
        for (rules, expected) in cases {
            let shown = format!("{rules:?}");
            assert_eq!(Policy::from_rules(rules), Err(expected), "rules {shown}");
        }
    }

    #[test]
    fn depth_limit() {
        let cases = [
            (0, 3, true),
            (1, 3, true),
            (3, 3, true),
            (4, 3, false),
            (0, 0, true),
            (1, 0, false),
            (u32::MAX, DEFAULT_MAX_DEPTH, false),
        ];
        for (depth, limit, ok) in cases {
            let got = check_depth(depth, limit);
            assert_eq!(got.is_ok(), ok, "depth {depth} limit {limit}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e, AclError::DepthExceeded { depth, limit });
            }
        }
    }
}
