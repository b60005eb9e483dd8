//! The workflow model: what a loaded, validated workflow file says.
//!
//! Two layers: `Raw*` types mirror the YAML (serde reads them and schemars
//! describes them for `schema/workflow.schema.json`); the public types are
//! what validation builds from them, with templates and conditions parsed
//! and `agent` / `route` folded into one [`Target`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use orch_delegate::orch_handoff::{Confidence, Status};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use crate::condition::Condition;
use crate::error::RenderError;
use crate::plan::Plan;
use crate::source::SourceMap;
use crate::template::{Field, Ref, RenderContext, Template};

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
/// Most items a `for_each` step takes when it gives no `max_items`.
pub const DEFAULT_MAX_ITEMS: usize = 1000;
/// The highest `max_items` a `for_each` step may give.
pub const MAX_ITEMS: usize = 100_000;
/// The name of a `for_each` step's item when it gives no `as`.
pub const DEFAULT_ITEM_NAME: &str = "item";
/// Messages read from a step's `context` channel when `messages` is not given.
pub const DEFAULT_CONTEXT_MESSAGES: usize = 20;
/// How deep `uses` may nest: a workflow, a sub-workflow it uses, and so on,
/// at most this many levels below the workflow that is run.
pub const MAX_USES_DEPTH: usize = 5;

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
    /// The steps in file order, then the `finally` steps in file order
    /// ([`Step::finally`]).
    pub steps: Vec<Step>,
    /// At most this many steps run at once (`None`: no cap).
    pub max_parallel: Option<usize>,
    /// What the run reports as its result.
    pub output: Option<Template>,
    pub(crate) plan: Plan,
    pub(crate) source: SourceMap,
    /// `steps[..main]` are the workflow's steps, the rest its `finally`
    /// steps.
    pub(crate) main: usize,
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

    /// Where step `i` of [`steps`](Self::steps) is written: `steps[i]`, or
    /// `finally[j]`.
    pub fn step_path(&self, i: usize) -> String {
        match i.checked_sub(self.main) {
            Some(j) => format!("finally[{j}]"),
            None => format!("steps[{i}]"),
        }
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

    /// Every workflow file this one reaches through `uses`, at any depth,
    /// each once per (file, name) pair: what a run stores so that resume
    /// loads it without the files.
    pub fn used(&self) -> Vec<UsedWorkflow> {
        let mut out: Vec<UsedWorkflow> = Vec::new();
        self.collect_used(&mut out);
        out
    }

    fn collect_used(&self, out: &mut Vec<UsedWorkflow>) {
        for step in &self.steps {
            let Target::Workflow(u) = &step.target else {
                continue;
            };
            let from = self.origin();
            if !out.iter().any(|w| w.from == from && w.name == u.name) {
                out.push(UsedWorkflow {
                    from: from.to_owned(),
                    name: u.name.clone(),
                    origin: u.workflow.origin().to_owned(),
                    source: u.source.clone(),
                });
                u.workflow.collect_used(out);
            }
        }
    }

    /// The `uses` steps' workflows, with the step that uses each.
    pub fn children(&self) -> impl Iterator<Item = (&Step, &Uses)> {
        self.steps.iter().filter_map(|s| match &s.target {
            Target::Workflow(u) => Some((s, &**u)),
            _ => None,
        })
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
    /// `uses: NAME`: another workflow, run as a child run of its own.
    Workflow(Arc<Uses>),
}

/// A `uses` step: the workflow it runs as a child run, and that run's
/// inputs. The child's `output` is the step's result; its outcome, the
/// step's status (`completed` → `complete`, `completed-with-failures` →
/// `partial`; a failed, rejected or cancelled child fails the step) and
/// its confidence ([`RunSummary::confidence`](crate::RunSummary::confidence)).
#[derive(Clone, Debug)]
pub struct Uses {
    /// The workflow as written after `uses:` (a name or a path).
    pub name: String,
    /// Its inputs (`with:`), templates read in the parent run.
    pub with: BTreeMap<String, Template>,
    /// The workflow, loaded and checked (its own `uses` too).
    pub workflow: Workflow,
    /// Its text, stored with the run so resume never depends on the file.
    pub source: String,
}

impl Uses {
    /// The child run's inputs: `with` as rendered, and the defaults of the
    /// inputs it leaves out.
    pub fn inputs(&self, mut with: BTreeMap<String, String>) -> BTreeMap<String, String> {
        for (name, spec) in &self.workflow.inputs {
            if let (false, Some(d)) = (with.contains_key(name), &spec.default) {
                with.insert(name.clone(), d.clone());
            }
        }
        with
    }
}

impl PartialEq for Uses {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.with == other.with
            && self.source == other.source
            && self.workflow.origin() == other.workflow.origin()
    }
}

impl Eq for Uses {}

/// A workflow file one of a run's workflows reaches through `uses`, as
/// stored in its summary ([`RunSummary::uses`](crate::RunSummary::uses)):
/// resume loads the run from these, never from the files.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsedWorkflow {
    /// The origin of the workflow whose step says `uses`.
    pub from: String,
    /// What that step's `uses` says.
    pub name: String,
    /// Where it was found (a path, or `<built-in NAME>`).
    pub origin: String,
    /// Its text.
    pub source: String,
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
    /// One delegation per item of a list (an instance each).
    pub for_each: Option<ForEach>,
    /// One of the workflow's `finally` steps: it runs once every other
    /// step has ended (completed, failed, skipped or cancelled), reads
    /// `{{ run.status }}` and `{{ run.steps }}`, and changes the run's
    /// status only by failing (a completed run then ends
    /// `completed-with-failures`).
    pub finally: bool,
}

/// `for_each`: the step is delegated once per item of a list, each an
/// *instance* (`research[0]`, `research[1]`, …) with its own attempts,
/// retries, timeout, gate and record; the step ends by its `join`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForEach {
    /// Where the items come from.
    pub items: Items,
    /// The name the task reads the item by (`{{ NAME }}`; default `item`).
    pub name: String,
    /// At most this many of the step's instances run at once (`None`: no
    /// cap but the workflow's `max_parallel`).
    pub max_parallel: Option<usize>,
    /// When the step is done.
    pub join: Join,
    /// The most items the step takes; a longer list is refused.
    pub max_items: usize,
}

/// The items of a `for_each` step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Items {
    /// A YAML list: one item per element (each a template).
    List(Vec<Template>),
    /// One template whose text is split into items: a JSON array of
    /// strings as is, else one item per line if it has several lines,
    /// else one per comma; each trimmed, empty ones dropped. A template
    /// that is only `{{ steps.ID.artifacts }}` gives that step's artifacts.
    Split(Template),
}

/// When a `for_each` step is done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Join {
    /// Every instance ended; the step's outcome is the worst of theirs.
    #[default]
    All,
    /// The first instance that completes: the others are cancelled.
    Any,
    /// `N` instances completed (the others are cancelled); at the step's
    /// deadline, what arrived (partial if fewer than `N`).
    Min(usize),
}

/// The most bytes a `for_each` template may render to before it is split
/// into items.
pub(crate) const ITEMS_TEXT_MAX: u64 = 16 * 1024 * 1024;

impl ForEach {
    /// The items in `ctx` (see [`Items`]), or why there are none to take;
    /// the count is the caller's to check against `max_items` and `join`.
    pub fn items_in(&self, ctx: &dyn RenderContext) -> Result<Vec<String>, RenderError> {
        let items = match &self.items {
            Items::List(list) => list
                .iter()
                .map(|t| t.render_within(ctx, ITEMS_TEXT_MAX))
                .collect::<Result<Vec<_>, _>>()?,
            Items::Split(t) => match t.only_ref() {
                // A list already: taken as it is, so an item may hold a
                // comma or a line break.
                Some(r @ Ref::Step { id, field })
                    if matches!(field, Field::Artifacts | Field::Results) =>
                {
                    let out = ctx.step(id).ok_or_else(|| {
                        RenderError::Missing(format!(
                            "`{r}` has no value: step `{id}` has not finished"
                        ))
                    })?;
                    match field {
                        Field::Artifacts => out.artifacts.clone(),
                        _ if out.instances.is_empty() => vec![out.result.clone()],
                        _ => out
                            .instances
                            .iter()
                            .filter_map(|i| i.output.as_ref().map(|o| o.result.clone()))
                            .collect(),
                    }
                }
                _ => split_items(&t.render_within(ctx, ITEMS_TEXT_MAX)?),
            },
        };
        Ok(items
            .into_iter()
            .map(|i| i.trim().to_owned())
            .filter(|i| !i.is_empty())
            .collect())
    }

    /// Where the items come from, as written: the template, or the list
    /// (`[a, b, c]`).
    pub fn source(&self) -> String {
        match &self.items {
            Items::Split(t) => t.source().to_owned(),
            Items::List(list) => format!(
                "[{}]",
                list.iter()
                    .map(Template::source)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// How many items a list written in the file has (`None`: they come
    /// from a template).
    pub fn listed(&self) -> Option<usize> {
        match &self.items {
            Items::List(list) => Some(list.len()),
            Items::Split(_) => None,
        }
    }

    /// Whether the items read another step's output (else they are known
    /// from the inputs when the run starts).
    pub fn reads_steps(&self) -> bool {
        let reads = |t: &Template| t.refs().any(|r| !matches!(r, Ref::Input(_)));
        match &self.items {
            Items::List(list) => list.iter().any(reads),
            Items::Split(t) => reads(t),
        }
    }
}

/// A text split into items: a JSON array of strings (or numbers) as it is;
/// else one item per line if it has several lines; else one per comma.
fn split_items(text: &str) -> Vec<String> {
    let trimmed = text.trim();
    if trimmed.starts_with('[')
        && let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(trimmed)
    {
        let items: Option<Vec<String>> = values
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect();
        if let Some(items) = items {
            return items;
        }
    }
    let sep = if trimmed.contains('\n') { '\n' } else { ',' };
    trimmed.split(sep).map(str::to_owned).collect()
}

impl Join {
    /// As written in a workflow file: `all`, `any`, `min 3`.
    pub fn describe(self) -> String {
        match self {
            Join::All => "all".to_owned(),
            Join::Any => "any".to_owned(),
            Join::Min(n) => format!("min {n}"),
        }
    }
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
    description = "A reusable pipeline of delegations (DESIGN §8). Templates: {{ inputs.X }}, {{ steps.ID.result|status|confidence|notes|artifacts }}, {{ run.id }}; in the task of a step with `repeat`, {{ previous.result|reason|status|confidence }} (empty on its first iteration); in the task of a step with `for_each`, its item ({{ item }}, or the name `as` gives); of a `for_each` step, {{ steps.ID.results|statuses }} (JSON arrays, in item order) and {{ steps.ID[N].FIELD }} (one instance)."
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
    /// Steps that always run once every other step has ended (completed,
    /// failed, skipped or cancelled): minutes, clean-up, notifications.
    /// They read `{{ run.status }}` and `{{ run.steps }}`; the others may
    /// not read them.
    #[serde(default)]
    pub(crate) finally: Vec<RawStep>,
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

/// One step: exactly one of `agent`, `route` and `uses`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Step")]
#[schemars(extend("oneOf" = [
    { "required": ["agent", "task"] },
    { "required": ["route", "task"] },
    { "required": ["uses"] }
]))]
pub(crate) struct RawStep {
    /// Unique id: letters, digits, `_` and `-`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"))]
    pub(crate) id: String,
    /// The agent that does the step.
    #[schemars(length(min = 1))]
    pub(crate) agent: Option<String>,
    /// `auto`: the router picks the agent.
    pub(crate) route: Option<RouteMode>,
    /// The task (a template); not for a `uses` step.
    #[schemars(length(min = 1))]
    pub(crate) task: Option<String>,
    /// Run another workflow as a child run: a built-in's name, a name in
    /// `./workflows/`, or a path (relative to this file). Its `output` is
    /// the step's result.
    #[schemars(length(min = 1))]
    pub(crate) uses: Option<String>,
    /// Of a `uses` step: the child run's inputs, each a template read in
    /// this run (e.g. `query: "{{ inputs.topic }}"`).
    #[serde(rename = "with")]
    pub(crate) with: Option<BTreeMap<String, String>>,
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
    /// Delegate the step once per item: a YAML list, or a template split
    /// into items (a JSON array of strings, else one per line, else one
    /// per comma), e.g. `{{ inputs.materials }}` or
    /// `{{ steps.gather.artifacts }}`. The task reads the item as
    /// `{{ item }}` (or the name `as` gives).
    pub(crate) for_each: Option<RawItems>,
    /// The name of the item in the task (default `item`).
    #[serde(rename = "as")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"))]
    pub(crate) item_name: Option<String>,
    /// Of a `for_each` step: at most this many of its instances at once
    /// (the workflow's `max_parallel` still caps the total).
    #[schemars(range(min = 1))]
    pub(crate) max_parallel: Option<u64>,
    /// Of a `for_each` step: when it is done: `all` (default), `any`, or
    /// `{ min: N }`.
    pub(crate) join: Option<RawJoin>,
    /// Of a `for_each` step: the most items it takes (default 1000, at
    /// most 100000).
    #[schemars(range(min = 1, max = 100_000))]
    pub(crate) max_items: Option<u64>,
}

/// `for_each`: a list, or a template split into items.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "ForEach")]
pub(crate) enum RawItems {
    /// One item per element (each a template).
    List(Vec<String>),
    /// A template whose text is split into items.
    Split(String),
}

/// `join: all`, `join: any`, `join: { min: 3 }`.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Join")]
pub(crate) enum RawJoin {
    /// `all` or `any`.
    Word(JoinWord),
    /// `{ min: N }`: done when N instances completed.
    Min(RawJoinMin),
}

/// `all` or `any`.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum JoinWord {
    /// Every instance.
    All,
    /// The first that completes.
    Any,
}

/// `{ min: N }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "JoinMin")]
pub(crate) struct RawJoinMin {
    /// How many instances must complete.
    #[schemars(range(min = 1))]
    pub(crate) min: u64,
}

// By hand, for messages that say what is expected (an untagged enum's
// only says that nothing matched).
impl<'de> Deserialize<'de> for RawItems {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawItems;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of items or a template such as \"{{ inputs.materials }}\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawItems, E> {
                Ok(RawItems::Split(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawItems, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<ItemText>()? {
                    items.push(item.0);
                }
                Ok(RawItems::List(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// One element of a `for_each` list: text (a number or a boolean is taken
/// as written).
struct ItemText(String);

impl<'de> Deserialize<'de> for ItemText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ItemText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an item: text, a number or a boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ItemText, E> {
                Ok(ItemText(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ItemText, E> {
                Ok(ItemText(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ItemText, E> {
                Ok(ItemText(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ItemText, E> {
                Ok(ItemText(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ItemText, E> {
                Ok(ItemText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawJoin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawJoin;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`all`, `any` or `{ min: N }`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawJoin, E> {
                match v {
                    "all" => Ok(RawJoin::Word(JoinWord::All)),
                    "any" => Ok(RawJoin::Word(JoinWord::Any)),
                    other => Err(E::custom(format!(
                        "unknown join `{other}`: expected `all`, `any` or `{{ min: N }}`"
                    ))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawJoin, A::Error> {
                RawJoinMin::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawJoin::Min)
            }
        }
        d.deserialize_any(V)
    }
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
