//! The config shape of a [`Policy`]: a map caller → list of agents, where
//! `"*"` (alone in the list, or as a bare string) grants every agent.
//!
//! Deserializing validates exactly like [`Policy::from_rules`], rule by rule,
//! so a format that tracks positions (serde_json, YAML) reports the error at
//! the offending rule. Serializing writes every grant as a list (`["*"]` for
//! [`Grant::All`]), which reads back to the same policy.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::policy::{WILDCARD, grant_from_list};
use crate::{Grant, Policy};

impl Serialize for Grant {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::All => {
                let mut seq = serializer.serialize_seq(Some(1))?;
                seq.serialize_element(WILDCARD)?;
                seq.end()
            }
            Self::Only(list) => serializer.collect_seq(list),
        }
    }
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.rules())
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PolicyVisitor)
    }
}

struct PolicyVisitor;

impl<'de> Visitor<'de> for PolicyVisitor {
    type Value = Policy;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map from each caller to the agents it may delegate to")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Policy, A::Error> {
        let mut policy = Policy::deny_all();
        while let Some(caller) = map.next_key::<String>()? {
            policy
                .check_new_caller(&caller)
                .map_err(de::Error::custom)?;
            let grant = map.next_value_seed(RuleSeed { caller: &caller })?;
            policy.insert_checked(caller, grant);
        }
        Ok(policy)
    }
}

/// Deserializes one rule's value (a list of names, or `"*"`) into a
/// validated [`Grant`]; knows its caller so errors can name the rule.
struct RuleSeed<'c> {
    caller: &'c str,
}

impl<'de> DeserializeSeed<'de> for RuleSeed<'_> {
    type Value = Grant;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Grant, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RuleSeed<'_> {
    type Value = Grant;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a list of agent names or \"*\" in the rule for {}",
            self.caller
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Grant, E> {
        if v == WILDCARD {
            Ok(Grant::All)
        } else {
            Err(E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Grant, A::Error> {
        let mut names = Vec::new();
        while let Some(name) = seq.next_element_seed(NameSeed {
            caller: self.caller,
        })? {
            names.push(name);
        }
        grant_from_list(self.caller, names).map_err(de::Error::custom)
    }
}

/// Deserializes one agent name of a rule.
struct NameSeed<'c> {
    caller: &'c str,
}

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_string(self)
    }
}

impl<'de> Visitor<'de> for NameSeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an agent name (a string) in the rule for {}",
            self.caller
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use serde::Deserialize;

    use crate::{Grant, Policy};

    /// The CLI's config embeds the policy under `acl`.
    #[derive(Debug, Deserialize)]
    struct Config {
        acl: Policy,
    }

    fn from_json(text: &str) -> Result<Policy, String> {
        serde_json::from_str::<Config>(text)
            .map(|c| c.acl)
            .map_err(|e| e.to_string())
    }

    fn from_yaml(text: &str) -> Result<Policy, String> {
        serde_norway::from_str::<Config>(text)
            .map(|c| c.acl)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn yaml_in_the_documented_shape() {
        let policy = from_yaml("acl: { manager: [\"*\"], tech-lead: [webster, nx-expert] }\n")
            .expect("valid policy");
        let expected = Policy::from_rules([
            ("manager", vec!["*"]),
            ("tech-lead", vec!["webster", "nx-expert"]),
        ])
        .expect("valid rules");
        assert_eq!(policy, expected);
    }

    #[test]
    fn yaml_default_policy_with_bare_wildcard() {
        let text = "\
acl:
  manager: '*'
  tech-lead: [webster, nx-expert, study-builder, secretary]
  optimizer:
    - webster
    - study-builder
    - secretary
";
        assert_eq!(from_yaml(text), Ok(Policy::atomizer_default()));
    }

    #[test]
    fn json_bare_wildcard_and_empty_list() {
        let policy = from_json(r#"{"acl": {"manager": "*", "secretary": []}}"#).expect("valid");
        assert_eq!(policy.grant("manager"), Some(&Grant::All));
        assert_eq!(policy.grant("secretary"), Some(&Grant::Only(vec![])));
        assert_eq!(policy.grant("auditor"), None);
    }

    #[test]
    fn serialize_round_trips_in_list_form() {
        let policy = Policy::atomizer_default();
        let json = serde_json::to_string(&policy).expect("serializes");
        assert_eq!(
            json,
            r#"{"manager":["*"],"optimizer":["webster","study-builder","secretary"],"tech-lead":["webster","nx-expert","study-builder","secretary"]}"#
        );
        assert_eq!(serde_json::from_str::<Policy>(&json).ok(), Some(policy));
        assert_eq!(
            serde_json::to_string(&Policy::deny_all()).ok().as_deref(),
            Some("{}")
        );
    }

    /// Every refused config, JSON and YAML, with the message a user sees.
    #[test]
    fn config_errors() {
        let json_cases = [
            r#"{"acl": {"tech-lead": ["webster"], "tech-lead": ["auditor"]}}"#,
            r#"{"acl": {"": ["webster"]}}"#,
            r#"{"acl": {"manager": ["webster", ""]}}"#,
            r#"{"acl": {"*": ["webster"]}}"#,
            r#"{"acl": {"manager": [" webster"]}}"#,
            r#"{"acl": {"manager": ["web ster"]}}"#,
            r#"{"acl": {"manager": ["webster\u001b[31m"]}}"#,
            r#"{"acl": {"man\u0000ager": ["webster"]}}"#,
            r#"{"acl": {"manager": ["webster\u202e"]}}"#,
            r#"{"acl": {"manager": [".hidden"]}}"#,
            r#"{"acl": {"manager": ["*", "webster"]}}"#,
            r#"{"acl": {"tech-lead": ["webster", "webster"]}}"#,
            r#"{"acl": {"tech-lead": ["tech-lead"]}}"#,
            r#"{"acl": {"manager": 5}}"#,
            r#"{"acl": {"manager": "webster"}}"#,
            r#"{"acl": {"manager": [1]}}"#,
            r#"{"acl": {"manager": {"webster": true}}}"#,
            r#"{"acl": {"manager": null}}"#,
            r#"{"acl": ["manager"]}"#,
        ];
        let yaml_cases = [
            "acl:\n  tech-lead: [webster]\n  tech-lead: [auditor]\n",
            "acl:\n  manager: webster\n",
            "acl:\n  manager:\n",
            "acl:\n  tech-lead: [webster, [nx-expert]]\n",
        ];
        let mut out = String::new();
        for case in json_cases {
            let got = from_json(case).expect_err("config must be refused");
            writeln!(out, "json {case}\n  -> {got}").expect("write to string");
        }
        for case in yaml_cases {
            let got = from_yaml(case).expect_err("config must be refused");
            writeln!(out, "yaml {case:?}\n  -> {got}").expect("write to string");
        }
        insta::assert_snapshot!(out);
    }
}
