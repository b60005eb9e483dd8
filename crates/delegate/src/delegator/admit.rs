//! Steps 1-3 and the run id of step 4: what is checked before anything is
//! sent (the agent and validator, a sub-delegation's parent and depth, the
//! ACL, a requested run id that is already taken).

use std::collections::HashMap;

use orch_acl::check_depth;
use orch_handoff::{HandoffKey, LedgerEventKind, RunId, StoreError};

use super::ledger::Line;
use super::{Agent, DelegateError, Delegator, Request};

impl Delegator {
    /// Step 1: the agent and, with `validate`, the validator. The caller's
    /// name goes into the ledger and into messages: it obeys the id rule,
    /// like every agent id.
    pub(super) fn resolve(
        &self,
        request: &Request,
    ) -> Result<(&Agent, Option<&Agent>), DelegateError> {
        if let Err(e) = orch_support::id::validate_id(&request.caller) {
            return Err(DelegateError::usage(format!(
                "the caller is not an agent id: {e}"
            )));
        }
        let agent = self.agent(&request.agent)?;
        if !request.validate {
            return Ok((agent, None));
        }
        let name = match (&request.validator, &agent.entry.validator) {
            (Some(v), _) | (None, Some(v)) => v,
            (None, None) => {
                return Err(DelegateError::usage(format!(
                    "agent {} has no validator: pass --validator",
                    agent.entry.id
                )));
            }
        };
        Ok((agent, Some(self.agent(name)?)))
    }

    /// Steps 2 and 3: a sub-delegation's parent, caller and depth; the ACL
    /// for the agent and the validator. A refusal is a `denied` line.
    pub(super) async fn admit(
        &self,
        request: &Request,
        agent: &Agent,
        validator: Option<&Agent>,
    ) -> Result<(), DelegateError> {
        if let Some(parent) = &request.parent {
            let depth = self.depth_under(parent, request).await?;
            if let Err(e) = check_depth(depth, self.config.max_depth) {
                return Err(self.deny(request, &request.agent, e).await);
            }
        }
        if let Err(e) = self.policy.check(&request.caller, &agent.entry.id) {
            return Err(self.deny(request, &agent.entry.id, e).await);
        }
        if let Some(v) = validator
            && let Err(e) = self.policy.check(&request.caller, &v.entry.id)
        {
            return Err(self.deny(request, &v.entry.id, e).await);
        }
        Ok(())
    }

    pub(super) fn agent(&self, id: &str) -> Result<&Agent, DelegateError> {
        match self.index.get(id) {
            Some(&i) => Ok(&self.agents[i]),
            None => {
                let mut known: Vec<String> =
                    self.agents.iter().map(|a| a.entry.id.clone()).collect();
                known.sort();
                Err(DelegateError::UnknownAgent {
                    agent: id.to_owned(),
                    known,
                })
            }
        }
    }

    /// The depth a sub-delegation of `parent` would have, after checking
    /// that `parent` is a known run of the request's caller.
    async fn depth_under(&self, parent: &RunId, request: &Request) -> Result<u32, DelegateError> {
        let ledger = self.store.read_ledger().await?;
        // run id -> (agent, parent), from each run's first `dispatched` line.
        let mut runs: HashMap<&RunId, (&str, Option<&RunId>)> = HashMap::new();
        for e in &ledger.events {
            if e.event == LedgerEventKind::Dispatched
                && let Some(id) = &e.run_id
            {
                runs.entry(id)
                    .or_insert((e.agent.as_deref().unwrap_or(""), e.parent.as_ref()));
            }
        }
        let Some(&(parent_agent, mut up)) = runs.get(parent) else {
            return Err(DelegateError::usage(format!(
                "parent run {parent} is unknown: no delegation with that run id was dispatched \
                 from the {} (pass the run id given in your task)",
                self.store.describe()
            )));
        };
        if parent_agent != request.caller {
            return Err(DelegateError::usage(format!(
                "parent run {parent} was delegated to {parent_agent}, not to {}: only \
                 {parent_agent} may sub-delegate under it (pass --caller {parent_agent})",
                request.caller
            )));
        }
        let mut depth = 1u32;
        // Stop once past the limit: that is enough to refuse, and a corrupt
        // ledger with a parent cycle cannot loop forever.
        while let Some(p) = up {
            depth += 1;
            if depth > self.config.max_depth {
                break;
            }
            up = runs.get(p).and_then(|&(_, pp)| pp);
        }
        Ok(depth)
    }

    /// Writes the `denied` line and builds the error.
    async fn deny(
        &self,
        request: &Request,
        target: &str,
        error: orch_acl::AclError,
    ) -> DelegateError {
        self.log(Line::denied(request, target, &error)).await;
        tracing::info!(caller = %request.caller, agent = target, "delegation denied: {error}");
        DelegateError::Denied(error)
    }

    /// Refuses a requested run id that already has a handoff (valid or
    /// not).
    pub(super) async fn refuse_existing(&self, key: &HandoffKey) -> Result<(), DelegateError> {
        let state = match self.store.get(key).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) => "a handoff",
            Err(StoreError::Invalid { .. }) => "an (invalid) handoff",
            Err(e) => return Err(e.into()),
        };
        Err(DelegateError::usage(format!(
            "run {} already has {state} at {}: use a new run id",
            key.run_id,
            self.store.location(key)
        )))
    }
}
