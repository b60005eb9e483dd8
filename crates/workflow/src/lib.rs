//! Workflows: reusable YAML pipelines of delegations (DESIGN §8).
//!
//! Not built yet; later issues fill it. This crate will hold:
//!
//! - the **model** of a workflow file (`name`, `description`, `inputs`,
//!   `defaults`, `steps` with `agent`, `task`, `needs`, `timeout`,
//!   `retries`, `when`, `gate`, `on_failure`, and `output`) and its
//!   **validation**: schema, duplicate step ids, cycles, template references
//!   (`{{ inputs.X }}`, `{{ steps.ID.result|status|confidence|notes|artifacts }}`,
//!   `{{ run.id }}`), inputs, agents and the ACL of every step, with errors
//!   that name the file, line and column;
//! - the **planner**: a step depends on its explicit `needs` and on every
//!   step its templates reference, and the result must be a DAG;
//! - the **executor**, which delegates each step through `orch-delegate`,
//!   with retries and backoff, `when` conditions, gates (statuses, minimum
//!   confidence, human approval), a `max_parallel` cap and a dry-run mode
//!   that sends nothing;
//! - **run storage and resume**: step records and the run summary under
//!   `workflows/<wfRunId>/` in the handoff store, so a killed or paused run
//!   continues with only the steps that did not finish.
//!
//! Decisions a newcomer will ask about:
//!
//! - **A step starts the moment its dependencies finish**, not level by
//!   level, so the makespan follows the critical path. The executor is a
//!   loop over a closed `Event` enum (step finished, timeout fired, approval
//!   arrived, cancel requested): one place decides, which is easy to test
//!   and to persist.
//! - **Everything is checked before anything is sent.** A run first passes
//!   the same validation as a dry-run, including the ACL for every step, so
//!   a workflow never stops half-way on a denial it could have foreseen.
//! - **Approval does not block a process.** A gate with `approval` asks on
//!   the terminal when the run is interactive; otherwise the run is stored
//!   as `awaiting-approval` and continued later by `approve` / `resume`.
//! - **Layering.** It builds on `orch-delegate` and what that crate
//!   re-exports (`orch-handoff`, `orch-acl`) and nothing else of the
//!   workspace.
#![warn(missing_docs)]
