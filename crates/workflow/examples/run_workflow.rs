//! A workflow run end to end: load YAML text, check the run (agents, ACL,
//! inputs) before anything is sent, then let the [`Executor`] delegate each
//! step to the simulated fleet over a file store in a temp dir.
//!
//! Run: `cargo run -p orch-workflow --example run_workflow`.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use orch_delegate::orch_acl::Policy;
use orch_delegate::orch_handoff::{FsStore, FsStoreConfig, HandoffStore};
use orch_delegate::transport::sim::{SimConfig, SimTransport};
use orch_delegate::{AgentEntry, Delegator, DelegatorConfig, Transport};
use orch_workflow::{Executor, RunOptions, check_run, load};
use tokio_util::sync::CancellationToken;

const WORKFLOW: &str = r#"
name: checked-answer
inputs:
  question:
    required: true
defaults:
  timeout: 1m
steps:
  - id: research
    agent: webster
    task: "Research: {{ inputs.question }}"
  - id: review
    agent: tech-lead
    task: |
      Check this answer to {{ inputs.question }}:
      {{ steps.research.result }}
    gate:
      status: [complete, partial]
  - id: escalate
    agent: auditor
    when: "steps.review.status == blocked"
    task: "The review is blocked: {{ steps.review.notes }}"
output: "{{ steps.review.result }}"
"#;

const AGENTS: [&str; 3] = ["webster", "tech-lead", "auditor"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Parse and check the file itself: shape, templates, references, cycles.
    let workflow = load(WORKFLOW, "checked-answer.yaml")?;

    // Check this run: known agents, the ACL of every step, the inputs.
    let policy = Policy::atomizer_default();
    let inputs = BTreeMap::from([(
        "question".to_owned(),
        "yield strength of Ti-6Al-4V".to_owned(),
    )]);
    let inputs = check_run(&workflow, &AGENTS, &policy, "manager", &inputs).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        lines.join("\n")
    })?;

    // A delegator over the simulated fleet, as in orch-delegate's example.
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn HandoffStore> = Arc::new(FsStore::open(FsStoreConfig::new(dir.path()))?);
    let sim: Arc<dyn Transport> = Arc::new(SimTransport::new(
        Arc::clone(&store),
        SimConfig {
            delay: Duration::from_millis(50),
            ..SimConfig::default()
        },
    ));
    let agents = AGENTS
        .iter()
        .map(|id| AgentEntry::new(*id, Arc::clone(&sim)))
        .collect();
    let delegator = Delegator::new(store, policy, agents, DelegatorConfig::default())?;

    let options = RunOptions {
        caller: "manager".to_owned(),
        inputs,
        run_id: None,
    };
    let summary = Executor::new(Arc::new(delegator))
        .run(&workflow, WORKFLOW, options, &CancellationToken::new())
        .await?;

    println!("run {}: {:?}", summary.run_id, summary.status);
    for step in &workflow.steps {
        if let Some(s) = summary.steps.get(&step.id) {
            match &s.reason {
                Some(reason) => println!("  {:<9} {:?}: {reason}", step.id, s.status),
                None => println!("  {:<9} {:?}", step.id, s.status),
            }
        }
    }
    if let Some(output) = &summary.output {
        println!("output: {output}");
    }
    Ok(())
}
