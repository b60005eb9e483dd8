//! Workflows: reusable YAML pipelines of delegations (DESIGN §8).
//!
//! ```
//! # use std::{collections::BTreeMap, sync::Arc};
//! # use orch_delegate::orch_handoff::{FsStore, FsStoreConfig, HandoffStore};
//! # use orch_delegate::transport::sim::{SimConfig, SimTransport};
//! # use orch_delegate::{AgentEntry, Delegator, DelegatorConfig};
//! use orch_delegate::orch_acl::Policy;
//! use orch_workflow::{Executor, RunOptions, RunStatus, check_run, load};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let yaml = "name: hello\nsteps:\n  - { id: greet, agent: webster, task: Say hello }\n";
//! let workflow = load(yaml, "hello.yaml")?;
//! let policy = Policy::atomizer_default();
//! let inputs = check_run(&workflow, &["webster"], &policy, "manager", &BTreeMap::new())
//!     .map_err(|errors| format!("{errors:?}"))?;
//! # let dir = tempfile::tempdir()?;
//! # let store: Arc<dyn HandoffStore> = Arc::new(FsStore::open(FsStoreConfig::new(dir.path()))?);
//! # let sim = Arc::new(SimTransport::new(Arc::clone(&store), SimConfig::default()));
//! # let agents = vec![AgentEntry::new("webster", sim)];
//! // `store` and `agents`: a file store and the simulated fleet, as in orch-delegate.
//! let delegator = Delegator::new(store, policy, agents, DelegatorConfig::default())?;
//! let options = RunOptions { caller: "manager".into(), inputs, run_id: None };
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let executor = Executor::new(Arc::new(delegator));
//! let summary = executor.run(&workflow, yaml, options, &cancel).await?;
//! assert_eq!(summary.status, RunStatus::Completed);
//! # Ok(())
//! # }
//! ```
//!
//! `examples/run_workflow.rs` runs a three-step workflow this way and prints
//! each step's status.
//!
//! What it holds:
//!
//! - the **model** of a workflow file ([`Workflow`], [`Step`], [`Target`]
//!   — `agent: NAME`, `route: auto`, or `uses: WORKFLOW` ([`Uses`]: another
//!   workflow run as a child run) —, [`Gate`], [`InputSpec`],
//!   [`StepDefaults`] with effective values via [`Workflow::timeout_of`] and
//!   friends: the step's own value, else `defaults`, else 10 minutes, 0
//!   retries, `on_failure: stop`);
//! - **parsing**: [`load`] drops a leading byte order mark, then runs a
//!   pre-pass over YAML events (`saphyr-parser`) that refuses files over
//!   1 MiB ([`check_file_size`] names the real size), nesting deeper than
//!   64, several documents, any anchor or alias (so no alias bombs) and any
//!   tag (`!!binary`, `!ruby/object`), and
//!   indexes the position of every node by path (`steps[2].needs[0]`); then
//!   serde (`serde_norway` + `serde_path_to_error`, unknown keys refused)
//!   reads the shape; then the meaning is checked: step ids (unique, no
//!   dots, `summary` reserved), `agent` xor `route`, [`Template`]s
//!   (`{{ inputs.X }}`, `{{ steps.ID.result|status|confidence|notes|artifacts }}`,
//!   `{{ run.id }}`) and `when` [`Condition`]s parsed once with their
//!   references resolved, `needs`, and cycles, which are named
//!   (`research → evaluate → audit → research`); [`load_with`] finds the
//!   workflows `uses` names through a [`Resolve`] and loads them the same
//!   way (cycles between files and nesting past [`MAX_USES_DEPTH`] are
//!   errors naming every file's `uses`);
//! - **run checks**: [`check_run`] tests agents, the ACL of every step for
//!   the caller and the inputs, and reports every problem at once;
//!   [`check_task_sizes`] finds the tasks that can never fit what their
//!   agent's transport delivers; [`warnings`] what is valid but likely a
//!   mistake (an `output` that may read a skipped step);
//! - the **plan** ([`Plan`]): dependencies are `needs` ∪ steps read by the
//!   task ∪ steps read by `when`; topological order stable by file order;
//!   [`Plan::levels`] for display; an indexed view (positions in that
//!   order, dependencies and dependents as positions, each step's height)
//!   built once, which the executor runs on;
//! - the JSON Schema of workflow files ([`workflow_json_schema`],
//!   committed as `schema/workflow.schema.json`) and the three shipped
//!   workflows ([`builtin`]);
//! - the **executor** ([`Executor`]): an event loop that starts each step
//!   the moment its dependencies end (up to `max_parallel`), with `when`,
//!   retries with backoff, timeouts, gates, human approval through an
//!   injected [`Approver`] (none: the run pauses as `awaiting-approval`),
//!   `on_failure`, cancellation, and seams for routing ([`StepRouter`]),
//!   channel context ([`ContextSource`]) and a live view ([`Progress`]);
//!   see the `exec` module docs;
//! - **run storage and resume**: a [`StepRecord`] per step and a
//!   [`RunSummary`] under `workflows/<wfRunId>/`, written as the run goes;
//!   [`Executor::resume`] continues a killed, cancelled or paused run
//!   (in-flight delegations are looked up and re-awaited before anything
//!   is sent again); [`approve`] records a human decision.
//!
//! Every [`WorkflowError`] names the file, line and column
//! (`<origin>:<line>:<column>: <message>`). Positions come from the event
//! pre-pass, not from serde: serde_norway locates only its own errors, and
//! the meaning checks need the place of a node they find wrong. Inside a
//! task or condition string the column is that of the offending piece
//! (found in the source text from the scalar's start), else that of the
//! scalar.
//!
//! The terminal side (TTY approver, live view, Ctrl-C → cancel token, the
//! dry-run rendering of a [`Preview`]) lives in the CLI, which implements this
//! crate's seams.
//!
//! Decisions a newcomer will ask about:
//!
//! - **A step starts the moment its dependencies finish**, not level by
//!   level, so the makespan follows the critical path ([`Plan::levels`] is
//!   for display only). The executor is one loop over a closed `Event`
//!   enum (a step finished, an approval arrived, the summary writer can
//!   take the next summary, the run was cancelled): one place decides,
//!   which is easy to test and to persist.
//! - **Everything is checked before anything is sent.** A run first passes
//!   [`load`] and [`check_run`], including the ACL for every step, so a
//!   workflow never stops half-way on a denial it could have foreseen.
//! - **A missing value is an error, not an empty string**:
//!   [`Template::render`] and [`Condition::eval`] fail when a step has not
//!   finished or an input has no value.
//! - **Approval does not block a process.** A gate with `approval` asks on
//!   the terminal when the run is interactive; otherwise the run is stored
//!   as `awaiting-approval` and continued later by `approve` / `resume`.
//! - **Layering.** It builds on `orch-delegate` and what that crate
//!   re-exports (`orch-handoff`, `orch-acl`), plus `orch-support`, and nothing else of the
//!   workspace: the CLI passes the registry's agent ids and the policy in.
#![warn(missing_docs)]

mod budget;
mod builtin;
mod cancel;
mod condition;
mod error;
mod exec;
mod model;
mod plan;
mod preview;
mod run;
mod source;
mod template;
mod uses;
mod validate;

pub use builtin::{builtin, builtin_names};
pub use cancel::{CancelRequest, cancel_key, cancel_requested, request_cancel};
pub use condition::{Condition, Op};
pub use error::{ErrorKind, ExecError, Growth, RenderError, TooLarge, Warning, WorkflowError};
pub use exec::{
    Approver, ContextSource, Executor, Progress, ProgressEvent, ResumeOptions, RunOptions,
    StepRouter,
};
pub use model::{
    ContextSpec, DEFAULT_CONTEXT_MESSAGES, DEFAULT_ITEM_NAME, DEFAULT_MAX_ITEMS, DEFAULT_RETRIES,
    DEFAULT_TIMEOUT, ForEach, Gate, InputSpec, Items, Join, MAX_ITEMS, MAX_REPEAT, MAX_RETRIES,
    MAX_TIMEOUT, MAX_USES_DEPTH, OnFailure, Repeat, Step, StepDefaults, Target, UsedWorkflow, Uses,
    Workflow, workflow_json_schema,
};
pub use plan::Plan;
pub use preview::{Preview, PreviewForEach, PreviewGate, PreviewRepeat, PreviewStep, PreviewUses};
pub use run::{
    ATTEMPTS_KEPT, ApprovalDecision, Attempt, AttemptStatus, ChildRun, DETAIL_KEPT, FanOutRecord,
    GateDecision, InstanceCounts, InstanceOf, ParentLink, REASON_KEPT, RunStatus, RunSummary,
    SUMMARY_REASON_KEPT, StepRecord, StepStatus, StepSummary, TASK_KEPT, approve, attempt_run_id,
    awaiting_approval, child_run_id, instance_label, instance_record_id, read_step, read_summary,
    run_json_schema,
};
pub use source::{MAX_DEPTH, MAX_FILE_BYTES, check_file_size};
pub use template::{
    Context, Field, Instance, Previous, PreviousField, Ref, RenderContext, RunOutcome, Segment,
    StepOutput, Template,
};
pub use uses::{Builtins, Resolve, Resolved, Stored, builtin_origin};
pub use validate::{ResolvedInputs, check_run, check_task_sizes, load, load_with, warnings};
