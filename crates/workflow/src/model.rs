//! The workflow model: what a loaded, validated workflow file says.
//!
//! Two layers: `Raw*` types mirror the YAML (serde reads them and schemars
//! describes them for `schema/workflow.schema.json`); the public types are
//! what validation builds from them, with templates and conditions parsed
//! and `agent` / `route` folded into one [`Target`].

use std::collections::BTreeMap;
use std::time::Duration;

use orch_delegate::orch_handoff::{Confidence, Status};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use crate::condition::Condition;
use crate::plan::Plan;
use crate::source::SourceMap;
use crate::template::Template;

/// Built-in step timeout when neither the step nor `defaults` gives one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Built-in retry count when neither the step nor `defaults` gives one.
pub const DEFAULT_RETRIES: u32 = 0;
/// Most retries a step (or `defaults`) may ask for.
pub const MAX_RETRIES: u32 = 100;
/// Longest timeout a step (or `defaults`) may have: 7 days.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most iterations a `repeat` step may ask for.
pub const MAX_REPEAT: u32 = 20;
/// Messages read from a step's `context` channel when `messages` is not given.
pub const DEFAULT_CONTEXT_MESSAGES: usize = 20;

/// A loaded and validated workflow.
#[derive(Clone, Debug)]
pub struct Workflow {
    /// The workflow's name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Declared inputs by name.
    pub inputs: BTreeMap<String, InputSpec>,
    /// Step settings used where a step gives none.
    pub defaults: StepDefaults,
    /// The steps, in file order.
    pub steps: Vec<Step>,
    /// At most this many steps run at once (`None`: no cap).
    pub max_parallel: Option<usize>,
    /// What the run reports as its result.
    pub output: Option<Template>,
    pub(crate) plan: Plan,
    pub(crate) source: SourceMap,
}

impl Workflow {
    /// The dependency plan of the steps.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Where the workflow came from (a path or `builtin:<name>`).
    pub fn origin(&self) -> &str {
        self.source.origin()
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The step's timeout: its own, else `defaults`, else 10 minutes.
    pub fn timeout_of(&self, step: &Step) -> Duration {
        step.timeout
            .or(self.defaults.timeout)
            .unwrap_or(DEFAULT_TIMEOUT)
    }

    /// The step's retry count: its own, else `defaults`, else 0.
    pub fn retries_of(&self, step: &Step) -> u32 {
        step.retries
            .or(self.defaults.retries)
            .unwrap_or(DEFAULT_RETRIES)
    }

    /// What a failure of the step does: its own, else `defaults`, else stop.
    pub fn on_failure_of(&self, step: &Step) -> OnFailure {
        step.on_failure
            .or(self.defaults.on_failure)
            .unwrap_or_default()
    }
}

/// A declared input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputSpec {
    /// The run must give it (no default).
    pub required: bool,
    /// The value used when the run gives none.
    pub default: Option<String>,
    /// What it means, for `--help`-like listings.
    pub description: String,
}

/// Step settings used where a step gives none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepDefaults {
    /// How long a step may take.
    pub timeout: Option<Duration>,
    /// How many times a failed step is asked again.
    pub retries: Option<u32>,
    /// What a failed step does to the run.
    pub on_failure: Option<OnFailure>,
}

/// What a failed step (or a failed gate) does to the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop the run: no new step starts.
    #[default]
    Stop,
    /// Carry on with the steps that do not depend on this one.
    Continue,
}

/// Who does a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `agent: NAME`.
    Agent(String),
    /// `route: auto`: the router picks among the agents the caller may use.
    Route,
}

/// One step of a workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Unique id within the workflow.
    pub id: String,
    /// The agent, or routing.
    pub target: Target,
    /// The task sent to the agent.
    pub task: Template,
    /// Explicit dependencies, as written.
    pub needs: Vec<String>,
    /// Its own timeout, if given.
    pub timeout: Option<Duration>,
    /// Its own retry count, if given.
    pub retries: Option<u32>,
    /// Run only when this holds (otherwise skipped).
    pub when: Option<Condition>,
    /// What the handoff must satisfy for the run to go on.
    pub gate: Option<Gate>,
    /// Its own failure policy, if given.
    pub on_failure: Option<OnFailure>,
    /// A Discord channel whose recent messages are added to the task.
    pub context: Option<ContextSpec>,
    /// Ask again, with the last answer, until it is good enough.
    pub repeat: Option<Repeat>,
}

/// `repeat: { until, max }`: the step is delegated again (a new
/// delegation, its task rendered with `{{ previous.… }}`) while `until`
/// is false of its last handoff, at most `max` times in all. The step's
/// outcome is its last iteration's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repeat {
    /// When an iteration is good enough (the `when` language; bare
    /// `status` and `confidence` are this step's).
    pub until: Condition,
    /// `until` as written, for messages.
    pub until_text: String,
    /// Most iterations, the first included (1 to [`MAX_REPEAT`]).
    pub max: u32,
}

/// What a step's handoff must satisfy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    /// Accepted statuses (empty: any).
    pub status: Vec<Status>,
    /// Lowest accepted confidence.
    pub min_confidence: Option<Confidence>,
    /// A human must approve before dependents start.
    pub approval: bool,
}

/// A Discord channel read into the task.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextSpec {
    /// Channel name (as in the registry's channel map).
    #[schemars(length(min = 1))]
    pub channel: String,
    /// How many recent messages (default 20).
    #[serde(default = "default_messages")]
    #[schemars(range(min = 1, max = 1000))]
    pub messages: usize,
}

fn default_messages() -> usize {
    DEFAULT_CONTEXT_MESSAGES
}

// ---------------------------------------------------------------------------
// The YAML shape.

/// A duration: seconds (`120`) or `90s`, `10m`, `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dur(pub(crate) Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        orch_support::duration::Dur::deserialize(d).map(|d| Dur(d.0))
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Seconds (120) or a duration like 90s, 10m, 1h 30m; longer than zero, at most 7 days.",
            "oneOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "string", "pattern": "^\\s*(\\d+\\s*(ms|s|m|h)\\s*)+$" }
            ]
        })
    }
}

/// `route: auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RouteMode {
    /// Pick the agent with the router.
    Auto,
}

/// A workflow file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "orch workflow",
    description = "A reusable pipeline of delegations (DESIGN §8). Templates: {{ inputs.X }}, {{ steps.ID.result|status|confidence|notes|artifacts }}, {{ run.id }}; in the task of a step with `repeat`, {{ previous.result|reason|status|confidence }} (empty on its first iteration)."
)]
pub(crate) struct RawWorkflow {
    /// The workflow's name.
    #[schemars(length(min = 1))]
    pub(crate) name: String,
    /// What it is for.
    #[serde(default)]
    pub(crate) description: String,
    /// Declared inputs by name.
    #[serde(default)]
    pub(crate) inputs: BTreeMap<String, RawInput>,
    /// Step settings used where a step gives none.
    #[serde(default)]
    pub(crate) defaults: RawDefaults,
    /// The steps; a step starts as soon as the steps it depends on finish.
    #[schemars(length(min = 1))]
    pub(crate) steps: Vec<RawStep>,
    /// At most this many steps run at once.
    #[schemars(range(min = 1))]
    pub(crate) max_parallel: Option<u64>,
    /// What the run reports as its result (a template).
    pub(crate) output: Option<String>,
}

/// A declared input.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Input")]
pub(crate) struct RawInput {
    /// The run must give it.
    #[serde(default)]
    pub(crate) required: bool,
    /// The value used when the run gives none.
    pub(crate) default: Option<String>,
    /// What it means.
    #[serde(default)]
    pub(crate) description: String,
}

/// Step settings used where a step gives none.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Defaults")]
pub(crate) struct RawDefaults {
    /// How long a step may take (default 10m).
    pub(crate) timeout: Option<Dur>,
    /// How many times a failed step is asked again (default 0, at most 100).
    #[schemars(range(max = 100))]
    pub(crate) retries: Option<u32>,
    /// What a failed step does to the run (default stop).
    pub(crate) on_failure: Option<OnFailure>,
}

/// One step: exactly one of `agent` and `route`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Step")]
#[schemars(extend("oneOf" = [{ "required": ["agent"] }, { "required": ["route"] }]))]
pub(crate) struct RawStep {
    /// Unique id: letters, digits, `_` and `-`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"))]
    pub(crate) id: String,
    /// The agent that does the step.
    #[schemars(length(min = 1))]
    pub(crate) agent: Option<String>,
    /// `auto`: the router picks the agent.
    pub(crate) route: Option<RouteMode>,
    /// The task (a template).
    #[schemars(length(min = 1))]
    pub(crate) task: String,
    /// Steps that must finish first (template references add more).
    #[serde(default)]
    pub(crate) needs: Vec<String>,
    /// How long the step may take.
    pub(crate) timeout: Option<Dur>,
    /// How many times a failed step is asked again (at most 100).
    #[schemars(range(max = 100))]
    pub(crate) retries: Option<u32>,
    /// Run only when this holds, e.g. `steps.research.confidence >= medium`.
    pub(crate) when: Option<String>,
    /// What the handoff must satisfy.
    pub(crate) gate: Option<RawGate>,
    /// What a failure does to the run.
    pub(crate) on_failure: Option<OnFailure>,
    /// A Discord channel read into the task.
    pub(crate) context: Option<ContextSpec>,
    /// Delegate the step again while `until` is false of its last handoff;
    /// its task may read `{{ previous.result|reason|status|confidence }}`.
    pub(crate) repeat: Option<RawRepeat>,
}

/// `repeat: { until: "confidence >= high", max: 3 }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Repeat")]
pub(crate) struct RawRepeat {
    /// When an iteration is good enough, e.g. `confidence >= high and
    /// status == complete` (bare `status`/`confidence`: this step's).
    #[schemars(length(min = 1))]
    pub(crate) until: String,
    /// Most iterations, the first included (1 to 20).
    #[schemars(range(min = 1, max = 20))]
    pub(crate) max: u32,
}

/// What a step's handoff must satisfy.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Gate")]
pub(crate) struct RawGate {
    /// Accepted statuses.
    #[serde(default)]
    pub(crate) status: Vec<Status>,
    /// Lowest accepted confidence.
    pub(crate) min_confidence: Option<Confidence>,
    /// A human must approve.
    #[serde(default)]
    pub(crate) approval: bool,
}

/// The JSON Schema of workflow files (`schema/workflow.schema.json`).
pub fn workflow_json_schema() -> serde_json::Value {
    orch_support::schema::published::<RawWorkflow>(orch_support::schema::Direction::Deserialize)
}
