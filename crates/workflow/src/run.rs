//! Run storage: the step records and the run summary of a workflow run
//! (DESIGN §4), as camelCase JSON under `workflows/<wfRunId>/` in the
//! handoff store.

use std::collections::BTreeMap;

use orch_delegate::orch_handoff::{
    Confidence, Expect, Handoff, HandoffKey, HandoffStore, MAX_ID_LEN, RunId, WorkflowRecord,
    parse_handoff,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ExecError;

/// The state of a whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Steps are running (or the process died while they were).
    Running,
    /// Every step completed or was skipped by its `when`.
    Completed,
    /// Every step ended, some failed under `on_failure: continue`.
    CompletedWithFailures,
    /// A step failed under `on_failure: stop`.
    Failed,
    /// Nothing can run until a step is approved (`approve`, then `resume`).
    AwaitingApproval,
    /// The run was cancelled (Ctrl-C); `resume` continues it.
    Cancelled,
}

/// The state of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// Delegated, no final answer yet.
    Running,
    /// Passed its gate (and approval).
    Completed,
    /// Its attempts or its gate failed.
    Failed,
    /// Not run: `when` was false, or a dependency did not complete.
    Skipped,
    /// Passed its gate, waits for a human.
    AwaitingApproval,
    /// A human rejected its result.
    Rejected,
}

/// A human's decision on a step with `gate.approval`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", tag = "decision")]
pub enum ApprovalDecision {
    /// Go on.
    Approve,
    /// The step fails (its `on_failure` applies).
    Reject {
        /// Why (stored cut to [`REASON_KEPT`] bytes).
        #[serde(serialize_with = "cut_reason")]
        reason: String,
    },
}

// ---------------------------------------------------------------------------
// Bounds. A record the engine writes must always read back: the store
// refuses records over `orch_delegate::orch_handoff::WorkflowRecords::max_record_bytes` (4 × its handoff
// cap), so nothing in a record may grow with what agents write. Each text
// is cut when it is stored, measured as JSON (an escaped control character
// takes six bytes); the handoff is not copied at all (the store holds it,
// the record names it), and the number of attempts kept is capped.

/// Bytes of a rendered task a step record keeps; a longer task is stored
/// cut, with its size and SHA-256, and rendered again on resume.
pub const TASK_KEPT: usize = 64 * 1024;
/// Bytes of a step's `reason` (and of a rejection's) a step record keeps.
pub const REASON_KEPT: usize = 4 * 1024;
/// Bytes of an attempt's `detail` a step record keeps.
pub const DETAIL_KEPT: usize = 1024;
/// Bytes of a step's `reason` the run summary keeps (the step record has
/// more).
pub const SUMMARY_REASON_KEPT: usize = 256;
/// Attempts a step record lists: beyond this, the oldest earlier attempts
/// (then the oldest `lost` ones) are dropped and only counted.
pub const ATTEMPTS_KEPT: usize = 128;

/// The JSON-escaped length of `c` (as serde_json writes it).
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// The longest prefix of `s` whose JSON form takes at most `max` bytes.
pub(crate) fn json_prefix(s: &str, max: usize) -> &str {
    let mut used = 0usize;
    for (i, c) in s.char_indices() {
        used += escaped_len(c);
        if used > max {
            return &s[..i];
        }
    }
    s
}

/// `s` if its JSON form fits in `max` bytes, else a prefix and `…`.
pub(crate) fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    let whole = json_prefix(s, max);
    if whole.len() == s.len() {
        return std::borrow::Cow::Borrowed(s);
    }
    let kept = json_prefix(s, max.saturating_sub('…'.len_utf8()));
    std::borrow::Cow::Owned(format!("{kept}…"))
}

fn cut_reason<S: Serializer>(s: &str, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&cut(s, REASON_KEPT))
}

fn cut_reason_opt<S: Serializer>(s: &Option<String>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(&*cut(s, REASON_KEPT)),
        None => ser.serialize_none(),
    }
}

fn cut_detail<S: Serializer>(s: &Option<String>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(&*cut(s, DETAIL_KEPT)),
        None => ser.serialize_none(),
    }
}

fn cut_task<S: Serializer>(s: &Option<String>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => ser.serialize_some(json_prefix(s, TASK_KEPT)),
        None => ser.serialize_none(),
    }
}

/// Hex SHA-256 of `s`.
pub(crate) fn sha256(s: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(s.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The run id of attempt `n` (1-based) of `step` in workflow run `wf`:
/// `<wf>.<step>.<n>`.
///
/// Derived, not random: a resumed run can tell whether an earlier process
/// already sent this attempt (its `dispatched` ledger line, or its handoff
/// in the store) without having recorded it first, so the step record need
/// not be written before the dispatch; and a re-send carries the same
/// `Idempotency-Key`, which a gateway deduplicates. Step ids contain no
/// `.`, so the id splits back into its parts unambiguously. Where the
/// result would pass the id length limit, the workflow part is cut and
/// followed by a hash of the whole workflow run id (FNV-1a, stable across
/// builds), so two long runs still get different ids.
pub fn attempt_run_id(wf: &RunId, step: &str, n: u32) -> RunId {
    derived_id(wf, &format!(".{step}.{n}"))
}

/// The run id of the child run of `uses` step `step` of workflow run `wf`:
/// `<wfRunId>.<step>` (shortened with a hash as [`attempt_run_id`] does
/// when it would pass the id's length).
pub fn child_run_id(wf: &RunId, step: &str) -> RunId {
    derived_id(wf, &format!(".{step}"))
}

/// `<wf><tail>`, or, where that would pass the id length limit, the
/// workflow run id cut and followed by a hash of the whole of it (FNV-1a,
/// stable across builds), then `tail`.
fn derived_id(wf: &RunId, tail: &str) -> RunId {
    use std::hash::Hasher as _;

    let full = format!("{wf}{tail}");
    let id = if full.len() <= MAX_ID_LEN {
        full
    } else {
        let mut h = fnv::FnvHasher::default();
        h.write(wf.as_str().as_bytes());
        let hash = format!("-{:016x}", h.finish());
        let keep = MAX_ID_LEN.saturating_sub(tail.len() + hash.len());
        let prefix: String = wf.as_str().chars().take(keep).collect();
        format!("{prefix}{hash}{tail}")
    };
    // Every part is in the id alphabet, so this holds; a random id is the
    // fallback that keeps a run going if it ever did not.
    RunId::new(id).unwrap_or_else(|_| RunId::generate())
}

/// The JSON Schema of the run records under `workflows/<wfRunId>/`
/// (committed as `schema/run.schema.json`): the summary (`summary.json`,
/// [`RunSummary`]) and the step records (`<stepId>.json`, [`StepRecord`]),
/// as `$defs` of one document that accepts either.
pub fn run_json_schema() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let summary = generator.subschema_for::<RunSummary>();
    let step = generator.subschema_for::<StepRecord>();
    let defs = generator.take_definitions(true);
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "orch workflow run record",
        "description": "A workflow run's records in the handoff store: workflows/<wfRunId>/summary.json (RunSummary) and workflows/<wfRunId>/<stepId>.json (StepRecord).",
        "oneOf": [summary, step],
        "$defs": defs,
    })
}

/// How one delegation of a step went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptStatus {
    /// Sent, no end yet (or the process died meanwhile).
    Running,
    /// A handoff with status `complete`.
    Complete,
    /// A handoff with status `partial`.
    Partial,
    /// A handoff with status `blocked`.
    Blocked,
    /// A handoff with status `failed`, or no valid handoff.
    Failed,
    /// No handoff before the step's timeout.
    TimedOut,
    /// The delegation could not be made (a transport or store error).
    Error,
    /// Found dead on resume (its agent can no longer answer); sent again.
    Lost,
    /// Stopped: its `for_each` step's `join` no longer needed it.
    Cancelled,
}

impl AttemptStatus {
    /// As written in the record: `running`, `complete`, …, `timed-out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Partial => "partial",
            Self::Blocked => "blocked",
            Self::Failed => "failed",
            Self::TimedOut => "timed-out",
            Self::Error => "error",
            Self::Lost => "lost",
            Self::Cancelled => "cancelled",
        }
    }
}

impl From<orch_delegate::OutcomeStatus> for AttemptStatus {
    fn from(status: orch_delegate::OutcomeStatus) -> Self {
        use orch_delegate::OutcomeStatus as O;
        match status {
            O::Complete => Self::Complete,
            O::Partial => Self::Partial,
            O::Blocked => Self::Blocked,
            O::Failed => Self::Failed,
            O::TimedOut => Self::TimedOut,
        }
    }
}

/// One delegation of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The delegation's run id (recorded before it is dispatched).
    pub run_id: RunId,
    /// `running`, then how it ended.
    pub status: AttemptStatus,
    /// When it was sent.
    #[schemars(with = "String")]
    pub started: jiff::Timestamp,
    /// When it ended.
    #[schemars(with = "Option<String>")]
    pub finished: Option<jiff::Timestamp>,
    /// The step's timeout when it was sent (for re-awaiting on resume).
    pub timeout_ms: u64,
    /// What went wrong, if anything (stored cut to [`DETAIL_KEPT`] bytes).
    #[serde(serialize_with = "cut_detail")]
    pub detail: Option<String>,
    /// Of a `repeat` step: the iteration this delegation belongs to (from
    /// 1; retries of an iteration share its number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iteration: Option<u32>,
}

/// Whether a step's handoff passed its gate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateDecision {
    /// Passed.
    pub passed: bool,
    /// Why (what was required and what came).
    pub reason: String,
}

/// `workflows/<wfRunId>/<stepId>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// The step id.
    pub step: String,
    /// Its state.
    pub status: StepStatus,
    /// The agent that does it (after routing).
    pub agent: Option<String>,
    /// The run id of the current (last) delegation.
    pub delegation_run_id: Option<RunId>,
    /// Every delegation, oldest first.
    pub attempts: Vec<Attempt>,
    /// Delegations from before `resume --retry-failed` gave the step a
    /// fresh start (its retry budget counts `attempts` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_attempts: Vec<Attempt>,
    /// Attempts no longer listed (over [`ATTEMPTS_KEPT`]), counted so that
    /// derived delegation ids keep counting up.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_attempts: u64,
    /// The task as sent. Whole in memory; a task over [`TASK_KEPT`] bytes
    /// is stored cut, with [`rendered_task_bytes`](Self::rendered_task_bytes)
    /// and [`rendered_task_sha256`](Self::rendered_task_sha256) (set it with
    /// [`set_rendered_task`](Self::set_rendered_task)).
    #[serde(serialize_with = "cut_task")]
    pub rendered_task: Option<String>,
    /// The whole task's size in bytes, when it is stored cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered_task_bytes: Option<u64>,
    /// The whole task's SHA-256 (hex), when it is stored cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered_task_sha256: Option<String>,
    /// The gate's verdict on the last handoff.
    pub gate: Option<GateDecision>,
    /// A human's decision, when the gate asks for one.
    pub approval: Option<ApprovalDecision>,
    /// The last valid handoff. Not stored in the record (the store holds
    /// it under [`handoff_run_id`](Self::handoff_run_id)); [`read_step`]
    /// reads it back from there. Records of older versions that embed it
    /// still read.
    #[serde(
        default,
        skip_serializing,
        deserialize_with = "handoff_json::deserialize"
    )]
    #[schemars(skip)]
    pub handoff: Option<Handoff>,
    /// The delegation whose handoff [`handoff`](Self::handoff) is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_run_id: Option<RunId>,
    /// When the step started.
    #[schemars(with = "Option<String>")]
    pub started: Option<jiff::Timestamp>,
    /// When it ended.
    #[schemars(with = "Option<String>")]
    pub finished: Option<jiff::Timestamp>,
    /// Why it was skipped or failed (stored cut to [`REASON_KEPT`] bytes).
    #[serde(serialize_with = "cut_reason_opt")]
    pub reason: Option<String>,
    /// Of a `for_each` step: its items and how its instances ended (each
    /// instance has a record of its own, `<step>.<N>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fan_out: Option<FanOutRecord>,
    /// Of an instance of a `for_each` step (record `<step>.<N>`): which.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceOf>,
    /// Of a `uses` step: its child run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<ChildRun>,
    /// Of a `for_each` step: what its instances produced together, for the
    /// steps that read it. Not stored (built from the instances' records
    /// and handoffs).
    #[serde(skip)]
    #[schemars(skip)]
    pub fanned: Option<crate::template::StepOutput>,
}

/// A `for_each` step's items and its instances' ends, in its record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FanOutRecord {
    /// The SHA-256 (hex) of the items as a JSON array: on resume, the
    /// items are rendered again and must be the same.
    pub items_sha256: String,
    /// How the instances stand.
    pub instances: InstanceCounts,
}

/// How a `for_each` step's instances stand.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct InstanceCounts {
    /// One per item.
    pub total: u32,
    /// Completed (passed the step's gate).
    pub completed: u32,
    /// Failed (no answer, or one that did not pass the gate).
    pub failed: u32,
    /// Stopped or never sent: the `join` no longer needed them.
    pub cancelled: u32,
}

impl InstanceCounts {
    /// Instances not ended yet (pending or running).
    pub fn open(&self) -> u32 {
        self.total
            .saturating_sub(self.completed)
            .saturating_sub(self.failed)
            .saturating_sub(self.cancelled)
    }
}

/// Which instance of a `for_each` step a record is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceOf {
    /// The `for_each` step.
    pub step: String,
    /// Its place in item order, from 0 (`step[index]`).
    pub index: u32,
    /// Its item (stored cut to [`DETAIL_KEPT`] bytes; the task has it
    /// whole).
    #[serde(serialize_with = "cut_item")]
    pub item: String,
}

fn cut_item<S: Serializer>(s: &str, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&cut(s, DETAIL_KEPT))
}

/// The record id of instance `index` of `for_each` step `step`:
/// `<step>.<index>` (a step id has no `.`, so it never names a step).
pub fn instance_record_id(step: &str, index: usize) -> String {
    format!("{step}.{index}")
}

/// How instance `index` of `step` is shown: `step[index]`.
pub fn instance_label(step: &str, index: usize) -> String {
    format!("{step}[{index}]")
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StepRecord {
    /// Whether `resume --retry-failed` starts this step again: it failed or
    /// was rejected, or was skipped because a dependency did not complete.
    pub fn retryable(&self) -> bool {
        match self.status {
            StepStatus::Failed | StepStatus::Rejected => true,
            StepStatus::Skipped => self
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("dependency `")),
            _ => false,
        }
    }

    /// Pending again, its attempts kept as `earlier_attempts` (so
    /// delegation ids keep counting up).
    pub(crate) fn restart(&mut self) {
        let mut earlier = std::mem::take(&mut self.earlier_attempts);
        earlier.append(&mut self.attempts);
        *self = Self {
            earlier_attempts: earlier,
            dropped_attempts: self.dropped_attempts,
            delegation_run_id: self.delegation_run_id.take(),
            ..Self::new(&self.step)
        };
        self.compact();
    }

    /// Of a `repeat` step: the iteration of its last delegation.
    pub fn iterations(&self) -> Option<u32> {
        self.attempts.iter().rev().find_map(|a| a.iteration)
    }

    /// Delegations made for this step, before and after any restart.
    pub(crate) fn delegations(&self) -> usize {
        let dropped = usize::try_from(self.dropped_attempts).unwrap_or(usize::MAX);
        dropped
            .saturating_add(self.earlier_attempts.len())
            .saturating_add(self.attempts.len())
    }

    /// Adds an attempt, keeping at most [`ATTEMPTS_KEPT`] listed.
    pub(crate) fn push_attempt(&mut self, a: Attempt) {
        self.attempts.push(a);
        self.compact();
    }

    /// Drops the oldest earlier attempts, then the oldest `lost` ones,
    /// then (a `repeat` step) the oldest of earlier iterations, while more
    /// than [`ATTEMPTS_KEPT`] are listed. Attempts that count against the
    /// retry budget (at most `retries + 1` of the current iteration) are
    /// never dropped.
    fn compact(&mut self) {
        while self.earlier_attempts.len() + self.attempts.len() > ATTEMPTS_KEPT {
            let current = self.iterations();
            if !self.earlier_attempts.is_empty() {
                self.earlier_attempts.remove(0);
            } else if let Some(i) = self
                .attempts
                .iter()
                .position(|a| a.status == AttemptStatus::Lost)
            {
                self.attempts.remove(i);
            } else if let Some(i) = self
                .attempts
                .iter()
                .position(|a| a.iteration.is_some() && a.iteration < current)
            {
                self.attempts.remove(i);
            } else {
                break;
            }
            self.dropped_attempts += 1;
        }
    }

    /// Sets the task as sent, with its size and hash when it is too long
    /// to be stored whole.
    pub fn set_rendered_task(&mut self, task: String) {
        if task.len() == json_prefix(&task, TASK_KEPT).len() {
            self.rendered_task_bytes = None;
            self.rendered_task_sha256 = None;
        } else {
            self.rendered_task_bytes = Some(task.len() as u64);
            self.rendered_task_sha256 = Some(sha256(&task));
        }
        self.rendered_task = Some(task);
    }

    /// Whether [`rendered_task`](Self::rendered_task) is the whole task
    /// (not a record's cut copy).
    pub fn has_whole_task(&self) -> bool {
        match (&self.rendered_task, self.rendered_task_bytes) {
            (Some(t), Some(n)) => t.len() as u64 == n,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Sets the handoff the step's outcome rests on (the store keeps it;
    /// the record names it).
    pub(crate) fn set_handoff(&mut self, h: Handoff) {
        self.handoff_run_id = Some(h.run_id.clone());
        self.handoff = Some(h);
    }

    /// A pending record.
    pub fn new(step: &str) -> Self {
        Self {
            step: step.to_owned(),
            status: StepStatus::Pending,
            agent: None,
            delegation_run_id: None,
            attempts: Vec::new(),
            earlier_attempts: Vec::new(),
            dropped_attempts: 0,
            rendered_task: None,
            rendered_task_bytes: None,
            rendered_task_sha256: None,
            gate: None,
            approval: None,
            handoff: None,
            handoff_run_id: None,
            started: None,
            finished: None,
            reason: None,
            fan_out: None,
            instance: None,
            child: None,
            fanned: None,
        }
    }

    /// Of a `uses` step waiting for approval: whether the approval is its
    /// child run's (a step of the child waits), not the step's own gate.
    pub fn waits_on_child(&self) -> bool {
        self.child
            .as_ref()
            .is_some_and(|c| c.status == Some(RunStatus::AwaitingApproval))
    }

    /// What the steps that read this one see: its handoff, or what a
    /// `for_each` step's instances produced together.
    pub fn output(&self) -> Option<crate::template::StepOutput> {
        match (&self.fanned, &self.handoff) {
            (Some(out), _) => Some(out.clone()),
            (None, Some(h)) => Some(crate::template::StepOutput::from_handoff(h)),
            (None, None) => None,
        }
    }
}

/// One step in the summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepSummary {
    /// Its state.
    pub status: StepStatus,
    /// The agent.
    pub agent: Option<String>,
    /// How many delegations were made.
    pub attempts: u32,
    /// From start to end.
    pub duration_ms: Option<u64>,
    /// Why it was skipped, failed or rejected.
    pub reason: Option<String>,
    /// Of a `repeat` step: how many iterations were asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u32>,
    /// Of a `for_each` step: how its instances stand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<InstanceCounts>,
}

/// `workflows/<wfRunId>/summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Format version (1).
    pub schema: u32,
    /// The workflow run id.
    pub run_id: RunId,
    /// The workflow's name.
    pub workflow: String,
    /// Where the workflow came from.
    pub origin: String,
    /// The workflow file's text, so resume does not depend on the file.
    pub source: String,
    /// The run's state.
    pub status: RunStatus,
    /// Who runs it.
    pub caller: String,
    /// Input values (defaults applied).
    pub inputs: BTreeMap<String, String>,
    /// Every step, by id.
    pub steps: BTreeMap<String, StepSummary>,
    /// When it started.
    #[schemars(with = "String")]
    pub started: jiff::Timestamp,
    /// When it ended (last time).
    #[schemars(with = "Option<String>")]
    pub finished: Option<jiff::Timestamp>,
    /// The rendered `output` template, once every step it reads completed.
    pub output: Option<String>,
    /// Why a run that ended has no `output` although the workflow has one
    /// (a step it reads was skipped or failed; it was too large to store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_note: Option<String>,
    /// Who asked to cancel the run (`orch workflow cancel`), why and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<crate::cancel::CancelRequest>,
    /// The lowest confidence of the handoffs its `output` reads (unstated
    /// counts as low), once it has an output: a `uses` step's confidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
    /// Of a child run (a `uses` step's): the run and step that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentLink>,
    /// The child runs of its `uses` steps, by step (their ids are derived:
    /// [`child_run_id`]), whether they started yet or not.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub children: BTreeMap<String, RunId>,
    /// Every workflow file its `uses` steps reach, at any depth, as they
    /// were when the run started: resume loads them from here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<crate::model::UsedWorkflow>,
}

/// The run and step a child run belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentLink {
    /// The parent run.
    #[schemars(with = "String")]
    pub run_id: RunId,
    /// Its `uses` step.
    pub step: String,
}

/// A `uses` step's child run, in the step's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildRun {
    /// The child run ([`child_run_id`]).
    #[schemars(with = "String")]
    pub run_id: RunId,
    /// The workflow it runs.
    pub workflow: String,
    /// How it stood when the step last heard of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
}

impl StepSummary {
    pub(crate) fn of(r: &StepRecord) -> Self {
        let duration_ms = match (r.started, r.finished) {
            (Some(s), Some(f)) => u64::try_from(f.duration_since(s).as_millis().max(0)).ok(),
            _ => None,
        };
        Self {
            status: r.status,
            agent: r.agent.clone(),
            attempts: u32::try_from(r.delegations()).unwrap_or(u32::MAX),
            duration_ms,
            reason: r
                .reason
                .as_deref()
                .map(|r| cut(r, SUMMARY_REASON_KEPT).into_owned()),
            iterations: r.iterations(),
            instances: r.fan_out.as_ref().map(|f| f.instances),
        }
    }
}

/// The largest a step record of `step` can become, in bytes as the store
/// writes it (pretty JSON): every text at its cap, every attempt listed.
pub(crate) fn largest_step_record(step: &str, longest_agent: usize) -> u64 {
    let wide = |n: usize| "x".repeat(n);
    let id = || RunId::new(wide(MAX_ID_LEN)).unwrap_or_else(|_| RunId::generate());
    let ts = jiff::Timestamp::MAX;
    let attempt = Attempt {
        run_id: id(),
        status: AttemptStatus::TimedOut,
        started: ts,
        finished: Some(ts),
        timeout_ms: u64::MAX,
        // Plain letters serialize as they are: their bytes are added
        // below rather than written out (this runs before every run).
        detail: Some(String::new()),
        iteration: Some(u32::MAX),
    };
    let mut rec = StepRecord::new(step);
    rec.status = StepStatus::AwaitingApproval;
    rec.agent = Some(wide(longest_agent));
    rec.delegation_run_id = Some(id());
    rec.attempts = vec![attempt; ATTEMPTS_KEPT];
    rec.dropped_attempts = u64::MAX;
    rec.set_rendered_task(wide(TASK_KEPT + 1));
    rec.gate = Some(GateDecision {
        passed: false,
        reason: "status complete is not one of complete, partial, blocked, failed and confidence unstated is below medium".to_owned(),
    });
    rec.approval = Some(ApprovalDecision::Reject {
        reason: String::new(),
    });
    rec.handoff_run_id = Some(id());
    rec.started = Some(ts);
    rec.finished = Some(ts);
    rec.reason = Some(String::new());
    // A record is a `for_each` step's or an instance's, never both; the
    // instance's part is the larger.
    rec.instance = Some(InstanceOf {
        step: step.to_owned(),
        index: u32::MAX,
        item: String::new(),
    });
    let plain = ATTEMPTS_KEPT * DETAIL_KEPT + 2 * REASON_KEPT + DETAIL_KEPT;
    pretty_len(&rec) + plain as u64
}

/// The largest `s` can become, in bytes as the store writes it: every step
/// at its widest (status, agent, counts, reason), the output at
/// `output_limit`, and a note.
///
/// Measured with its first step only, then each other step's entry added:
/// an entry's bytes depend only on the lengths of its id and agent as
/// JSON, so each such pair is measured once, on a bare summary (a
/// 1,000-step run is not serialized whole before its first dispatch).
pub(crate) fn largest_summary(s: &RunSummary, longest_agent: usize, output_limit: usize) -> u64 {
    let agent = "x".repeat(longest_agent);
    let widest = |agent_of: Option<&String>| StepSummary {
        status: StepStatus::AwaitingApproval,
        agent: Some(match agent_of {
            Some(a) if a.len() >= longest_agent => a.clone(),
            _ => agent.clone(),
        }),
        attempts: u32::MAX,
        duration_ms: Some(u64::MAX),
        reason: Some("x".repeat(SUMMARY_REASON_KEPT)),
        iterations: Some(u32::MAX),
        instances: Some(InstanceCounts {
            total: u32::MAX,
            completed: u32::MAX,
            failed: u32::MAX,
            cancelled: u32::MAX,
        }),
    };
    let mut bare = RunSummary {
        schema: s.schema,
        run_id: s.run_id.clone(),
        workflow: String::new(),
        origin: String::new(),
        source: String::new(),
        status: RunStatus::CompletedWithFailures,
        caller: String::new(),
        inputs: BTreeMap::new(),
        steps: BTreeMap::new(),
        // The widest timestamps: a real one's fraction has 0 to 9 digits.
        started: jiff::Timestamp::MAX,
        finished: Some(jiff::Timestamp::MAX),
        output: None,
        output_note: Some("x".repeat(REASON_KEPT)),
        // Its reason's plain letters are added below.
        cancelled: Some(crate::cancel::CancelRequest {
            by: "x".repeat(MAX_ID_LEN),
            reason: String::new(),
            at: jiff::Timestamp::MAX,
        }),
        confidence: None,
        parent: None,
        children: BTreeMap::new(),
        uses: Vec::new(),
    };
    // The output's plain letters are added, not written out.
    let mut wide = RunSummary {
        workflow: s.workflow.clone(),
        origin: s.origin.clone(),
        source: s.source.clone(),
        caller: s.caller.clone(),
        inputs: s.inputs.clone(),
        output: Some(String::new()),
        // The longest confidence word.
        confidence: Some(Confidence::Medium),
        parent: s.parent.clone(),
        children: s.children.clone(),
        uses: s.uses.clone(),
        ..bare.clone()
    };
    let mut entries = s.steps.iter();
    // The output and a cancel's reason, as plain letters.
    let output = output_limit as u64 + REASON_KEPT as u64;
    let Some((first_id, first)) = entries.next() else {
        return pretty_len(&wide) + output;
    };
    wide.steps
        .insert(first_id.clone(), widest(first.agent.as_ref()));
    let mut total = pretty_len(&wide);
    bare.steps.insert("a".to_owned(), widest(None));
    let one = pretty_len(&bare);
    let mut added: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for (id, st) in entries {
        let entry = widest(st.agent.as_ref());
        let key = (pretty_len(id) - 1, pretty_len(&entry.agent) - 1);
        let bytes = *added.entry(key).or_insert_with(|| {
            // Same JSON lengths, plain letters: `b…` never equals `a`.
            let id = "b".repeat(usize::try_from(key.0).unwrap_or(2).saturating_sub(2));
            let agent = "x".repeat(usize::try_from(key.1).unwrap_or(2).saturating_sub(2));
            bare.steps.insert(
                id.clone(),
                StepSummary {
                    agent: Some(agent),
                    ..widest(None)
                },
            );
            let two = pretty_len(&bare);
            bare.steps.remove(&id);
            two - one
        });
        total += bytes;
    }
    total + output
}

/// The size of `value` as a store writes a record (pretty JSON and a
/// newline), counted without building it.
fn pretty_len<T: Serialize>(value: &T) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    serde_json::to_writer_pretty(&mut n, value).map_or(u64::MAX, |()| n.0 + 1)
}

mod handoff_json {
    use super::*;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Handoff>, D::Error> {
        let v = Option::<serde_json::Value>::deserialize(d)?;
        let Some(v) = v else { return Ok(None) };
        let bytes = serde_json::to_vec(&v).map_err(serde::de::Error::custom)?;
        parse_handoff(
            &bytes,
            &Expect {
                run_id: None,
                agent: None,
            },
        )
        .map(Some)
        .map_err(serde::de::Error::custom)
    }
}

fn corrupt(run: &RunId, what: &str, e: impl std::fmt::Display) -> ExecError {
    ExecError::Corrupt {
        run_id: run.clone(),
        message: format!("{what}: {e}"),
    }
}

pub(crate) async fn put_step(
    store: &dyn HandoffStore,
    run: &RunId,
    rec: &StepRecord,
) -> Result<(), ExecError> {
    let v = serde_json::to_value(rec).map_err(|e| corrupt(run, &rec.step, e))?;
    store
        .put_workflow_record(run, &WorkflowRecord::Step(rec.step.clone()), &v)
        .await?;
    Ok(())
}

pub(crate) async fn put_summary(store: &dyn HandoffStore, s: &RunSummary) -> Result<(), ExecError> {
    let v = summary_value(s)?;
    store
        .put_workflow_record(&s.run_id, &WorkflowRecord::Summary, &v)
        .await?;
    Ok(())
}

/// Stores a mid-run summary as a view: a progress report that a crash may
/// lose (the last summary [`put_summary`] stored then stands).
pub(crate) async fn put_summary_view(
    store: &dyn HandoffStore,
    s: &RunSummary,
) -> Result<(), ExecError> {
    let v = summary_value(s)?;
    store
        .put_workflow_view(&s.run_id, &WorkflowRecord::Summary, &v)
        .await?;
    Ok(())
}

fn summary_value(s: &RunSummary) -> Result<serde_json::Value, ExecError> {
    serde_json::to_value(s).map_err(|e| corrupt(&s.run_id, "summary", e))
}

/// Reads the record of `step` in run `run` (`None` if it has none), with
/// its handoff read back from the store (left out if the store no longer
/// has it or it does not read: [`StepRecord::handoff_run_id`] still names
/// it).
pub async fn read_step(
    store: &dyn HandoffStore,
    run: &RunId,
    step: &str,
) -> Result<Option<StepRecord>, ExecError> {
    let mut rec: StepRecord = match store
        .get_workflow_record(run, &WorkflowRecord::Step(step.to_owned()))
        .await?
    {
        None => return Ok(None),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| corrupt(run, &format!("step record {step}"), e))?,
    };
    if rec.handoff.is_none()
        && let Some(id) = rec.handoff_run_id.clone()
    {
        match store.get(&HandoffKey::top(id.clone())).await {
            Ok(h) => rec.handoff = h,
            Err(e) => {
                tracing::warn!(step, handoff = %id, error = %e, "the handoff of a step does not read");
            }
        }
    }
    Ok(Some(rec))
}

/// Reads the summary of run `run`.
pub async fn read_summary(store: &dyn HandoffStore, run: &RunId) -> Result<RunSummary, ExecError> {
    match store
        .get_workflow_record(run, &WorkflowRecord::Summary)
        .await?
    {
        None => Err(ExecError::NotFound {
            run_id: run.clone(),
        }),
        Some(v) => serde_json::from_value(v).map_err(|e| corrupt(run, "summary", e)),
    }
}

/// Records a human's decision on a step awaiting approval; the run goes on
/// with `resume`. Refused when the step is not awaiting approval. A step
/// of a child run (a `uses` step's) is named `uses-step/step` from the
/// parent run, or by its id alone when only one child run has it
/// awaiting approval.
pub async fn approve(
    store: &dyn HandoffStore,
    run: &RunId,
    step: &str,
    decision: ApprovalDecision,
) -> Result<(), ExecError> {
    let summary = read_summary(store, run).await?;
    // `a/b`: step `b` of the child run of `uses` step `a` (at any depth).
    if let Some((head, rest)) = step.split_once('/') {
        let Some(child) = summary.children.get(head) else {
            return Err(ExecError::Usage(format!(
                "run {run} has no `uses` step `{head}`{}",
                listed(summary.children.keys())
            )));
        };
        return Box::pin(approve(store, child, rest, decision)).await;
    }
    let Some(st) = summary.steps.get(step) else {
        // A step of a child run, named without its path: taken when
        // exactly one child run has it awaiting approval.
        let paths: Vec<String> = awaiting_approval(store, run)
            .await?
            .into_iter()
            .filter(|p| p.rsplit('/').next() == Some(step) && p.contains('/'))
            .collect();
        return match paths.as_slice() {
            [one] => Box::pin(approve(store, run, one, decision)).await,
            [] => Err(ExecError::Usage(format!(
                "run {run} has no step `{step}`{}",
                listed(summary.steps.keys())
            ))),
            many => Err(ExecError::Usage(format!(
                "step `{step}` awaits approval in several child runs of {run}: name one of {}",
                many.join(", ")
            ))),
        };
    };
    let rec = read_step(store, run, step).await?;
    let mut rec = match rec {
        Some(rec) if rec.status == StepStatus::AwaitingApproval && rec.waits_on_child() => {
            let inner = awaiting_approval(store, run)
                .await?
                .into_iter()
                .filter(|p| p.starts_with(&format!("{step}/")))
                .collect::<Vec<_>>();
            return Err(ExecError::Usage(format!(
                "step `{step}` of run {run} runs a sub-workflow that waits for approval: approve {}",
                if inner.is_empty() {
                    "its step".to_owned()
                } else {
                    inner.join(" or ")
                }
            )));
        }
        Some(rec) if rec.status == StepStatus::AwaitingApproval => rec,
        other => {
            let status = other.map_or(st.status, |r| r.status);
            return Err(ExecError::Usage(format!(
                "step `{step}` of run {run} is not awaiting approval (it is {})",
                serde_json::to_value(status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )));
        }
    };
    rec.approval = Some(decision);
    put_step(store, run, &rec).await
}

/// The steps of run `run` that wait for a human's decision, with those of
/// its child runs (at any depth) as `uses-step/step`; each has none yet.
pub async fn awaiting_approval(
    store: &dyn HandoffStore,
    run: &RunId,
) -> Result<Vec<String>, ExecError> {
    let summary = read_summary(store, run).await?;
    let mut out = Vec::new();
    for (id, st) in &summary.steps {
        if st.status != StepStatus::AwaitingApproval {
            continue;
        }
        let Some(rec) = read_step(store, run, id).await? else {
            continue;
        };
        match summary.children.get(id) {
            Some(child) if rec.waits_on_child() => {
                for p in Box::pin(awaiting_approval(store, child)).await? {
                    out.push(format!("{id}/{p}"));
                }
            }
            _ if rec.approval.is_none() => out.push(id.clone()),
            _ => {}
        }
    }
    Ok(out)
}

/// `" (known: a, b)"`, or nothing for none.
fn listed<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" (known: {})", names.join(", "))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The whole summary at its widest, serialized: what
    /// [`largest_summary`] adds up without building it.
    fn widest_whole(s: &RunSummary, longest_agent: usize, output_limit: usize) -> u64 {
        let mut wide = s.clone();
        let agent = "x".repeat(longest_agent);
        for st in wide.steps.values_mut() {
            st.status = StepStatus::AwaitingApproval;
            if st.agent.as_ref().is_none_or(|a| a.len() < longest_agent) {
                st.agent = Some(agent.clone());
            }
            st.attempts = u32::MAX;
            st.duration_ms = Some(u64::MAX);
            st.reason = Some("x".repeat(SUMMARY_REASON_KEPT));
            st.iterations = Some(u32::MAX);
            st.instances = Some(InstanceCounts {
                total: u32::MAX,
                completed: u32::MAX,
                failed: u32::MAX,
                cancelled: u32::MAX,
            });
        }
        wide.status = RunStatus::CompletedWithFailures;
        wide.started = jiff::Timestamp::MAX;
        wide.finished = Some(jiff::Timestamp::MAX);
        wide.output = Some("x".repeat(output_limit));
        wide.output_note = Some("x".repeat(REASON_KEPT));
        wide.confidence = Some(Confidence::Medium);
        wide.cancelled = Some(crate::cancel::CancelRequest {
            by: "x".repeat(MAX_ID_LEN),
            reason: "x".repeat(REASON_KEPT),
            at: jiff::Timestamp::MAX,
        });
        serde_json::to_vec_pretty(&wide).unwrap().len() as u64 + 1
    }

    #[test]
    fn a_repeat_steps_earlier_iterations_are_compacted_oldest_first() {
        let mut rec = StepRecord::new("review");
        let attempt = |n: usize, iteration: u32| Attempt {
            run_id: RunId::new(format!("wf-x.review.{n}")).unwrap(),
            status: AttemptStatus::Partial,
            started: jiff::Timestamp::UNIX_EPOCH,
            finished: None,
            timeout_ms: 1,
            detail: None,
            iteration: Some(iteration),
        };
        // 20 iterations of 7 attempts: 140 delegations.
        for n in 0..140 {
            rec.push_attempt(attempt(n + 1, u32::try_from(n / 7 + 1).unwrap()));
        }
        assert_eq!(rec.attempts.len(), ATTEMPTS_KEPT);
        assert_eq!(rec.dropped_attempts, 12);
        assert_eq!(rec.delegations(), 140, "ids keep counting up");
        // Iteration 1 (7) and the first 5 of iteration 2 went.
        assert_eq!(rec.attempts[0].run_id.as_str(), "wf-x.review.13");
        assert_eq!(rec.iterations(), Some(20));
        let current = rec.attempts.iter().filter(|a| a.iteration == Some(20));
        assert_eq!(current.count(), 7, "the current iteration's are kept");
    }

    #[test]
    fn the_largest_summary_adds_up_to_the_whole_serialized() {
        let step = |agent: Option<&str>| StepSummary {
            status: StepStatus::Pending,
            agent: agent.map(str::to_owned),
            attempts: 0,
            duration_ms: None,
            reason: None,
            iterations: None,
            instances: None,
        };
        let mut s = RunSummary {
            schema: 1,
            run_id: RunId::new("wf-20261203-000000-abcd").unwrap(),
            workflow: "wf".into(),
            origin: "wf.yaml".into(),
            source: "name: wf\nsteps: \"quoted\\n\"\n".into(),
            status: RunStatus::Running,
            caller: "manager".into(),
            inputs: [("q".to_owned(), "a \"b\"".to_owned())].into(),
            steps: BTreeMap::new(),
            started: jiff::Timestamp::now(),
            finished: None,
            output: None,
            output_note: None,
            cancelled: None,
            confidence: None,
            parent: Some(ParentLink {
                run_id: RunId::new("wf-parent").unwrap(),
                step: "background".into(),
            }),
            children: [("a".to_owned(), RunId::new("wf-x.a").unwrap())].into(),
            uses: vec![crate::model::UsedWorkflow {
                from: "wf.yaml".into(),
                name: "quick-research".into(),
                origin: "<built-in quick-research>".into(),
                source: "name: quick-research\n\"q\"".into(),
            }],
        };
        assert_eq!(largest_summary(&s, 9, 100), widest_whole(&s, 9, 100));
        for (i, id) in ["a", "draft", "b_2", "review-all", "x"].iter().enumerate() {
            let agent = match i % 3 {
                0 => None,
                1 => Some("webster"),
                _ => Some("a-very-long-agent-name"),
            };
            s.steps.insert((*id).to_owned(), step(agent));
            for (longest, output) in [(0, 0), (9, 100), (30, 7)] {
                assert_eq!(
                    largest_summary(&s, longest, output),
                    widest_whole(&s, longest, output),
                    "{} steps, longest agent {longest}",
                    s.steps.len()
                );
            }
        }
    }

    #[test]
    fn the_largest_step_record_adds_up_to_the_whole_serialized() {
        for (step, agent) in [("a", 0), ("review-all", 7), ("x_1", 40)] {
            let wide = |n: usize| "x".repeat(n);
            let id = || RunId::new(wide(MAX_ID_LEN)).unwrap();
            let ts = jiff::Timestamp::MAX;
            let attempt = Attempt {
                run_id: id(),
                status: AttemptStatus::TimedOut,
                started: ts,
                finished: Some(ts),
                timeout_ms: u64::MAX,
                detail: Some(wide(DETAIL_KEPT)),
                iteration: Some(u32::MAX),
            };
            let mut rec = StepRecord::new(step);
            rec.status = StepStatus::AwaitingApproval;
            rec.agent = Some(wide(agent));
            rec.delegation_run_id = Some(id());
            rec.attempts = vec![attempt; ATTEMPTS_KEPT];
            rec.dropped_attempts = u64::MAX;
            rec.set_rendered_task(wide(TASK_KEPT + 1));
            rec.gate = Some(GateDecision {
                passed: false,
                reason: "status complete is not one of complete, partial, blocked, failed and confidence unstated is below medium".to_owned(),
            });
            rec.approval = Some(ApprovalDecision::Reject {
                reason: wide(REASON_KEPT),
            });
            rec.handoff_run_id = Some(id());
            rec.started = Some(ts);
            rec.finished = Some(ts);
            rec.reason = Some(wide(REASON_KEPT));
            rec.instance = Some(InstanceOf {
                step: step.to_owned(),
                index: u32::MAX,
                item: wide(DETAIL_KEPT),
            });
            let whole = serde_json::to_vec_pretty(&rec).unwrap().len() as u64 + 1;
            // A `for_each` step's own part is smaller than an instance's.
            let mut fan = rec.clone();
            fan.instance = None;
            fan.fan_out = Some(FanOutRecord {
                items_sha256: "f".repeat(64),
                instances: InstanceCounts {
                    total: u32::MAX,
                    completed: u32::MAX,
                    failed: u32::MAX,
                    cancelled: u32::MAX,
                },
            });
            assert!(serde_json::to_vec_pretty(&fan).unwrap().len() as u64 + 1 < whole);
            assert_eq!(largest_step_record(step, agent), whole, "{step}");
        }
    }
}
