//! The report's filters (`--since`, `--agent`, `--workflow`), ready to
//! test against.

use std::collections::HashSet;

use jiff::Timestamp;

use crate::Options;

/// The filters, ready to test against.
pub(crate) struct Filter {
    pub(crate) since: Option<Timestamp>,
    pub(crate) agents: Option<HashSet<String>>,
    pub(crate) workflows: Option<HashSet<String>>,
}

impl Filter {
    pub(crate) fn of(o: &Options) -> Self {
        let set = |v: &[String]| (!v.is_empty()).then(|| v.iter().cloned().collect());
        Self {
            since: o.since,
            agents: set(&o.agents),
            workflows: set(&o.workflows),
        }
    }

    pub(crate) fn in_window(&self, when: Option<&str>) -> bool {
        match self.since {
            None => true,
            Some(since) => when
                .and_then(|w| w.parse::<Timestamp>().ok())
                .is_some_and(|t| t >= since),
        }
    }

    pub(crate) fn agent(&self, agent: &str) -> bool {
        self.agents.as_ref().is_none_or(|a| a.contains(agent))
    }
}
