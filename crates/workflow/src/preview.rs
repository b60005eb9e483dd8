//! What a run would do, without sending anything (`orch workflow … --dry-run`):
//! a [`Preview`] that front ends render as text or serialise as JSON.

use std::collections::BTreeMap;

use orch_delegate::orch_handoff::{Confidence, Status};
use serde::Serialize;

use crate::exec::StepRouter;
use crate::model::{ForEach, OnFailure, Target, Workflow};
use crate::template::{Ref, Segment, Template};
use crate::validate::ResolvedInputs;

/// A run's plan with its inputs filled in (serialised camelCase; the
/// fields marked "text only" are for the human rendering).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    /// The workflow's name.
    pub workflow: String,
    /// Where it came from (a file, or `builtin:NAME`).
    pub origin: String,
    /// Who would run it.
    pub caller: String,
    /// The input values (defaults applied).
    pub inputs: BTreeMap<String, String>,
    /// Steps that may run at the same time, level by level (for display: a
    /// step really starts the moment its own dependencies end).
    pub levels: Vec<Vec<String>>,
    /// The workflow's `max_parallel` (text only).
    #[serde(skip)]
    pub max_parallel: Option<usize>,
    /// Every step, in file order.
    pub steps: Vec<PreviewStep>,
    /// The `output` template with the inputs filled in.
    pub output: Option<String>,
}

/// One step of a [`Preview`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewStep {
    /// The step id.
    pub id: String,
    /// The agent, or for `route: auto` what the router picks now.
    pub agent: String,
    /// The steps it waits for.
    pub waits_for: Vec<String>,
    /// Its timeout (`10m`).
    pub timeout: String,
    /// How often it is tried again.
    pub retries: u32,
    /// What happens when it fails (text only).
    #[serde(skip)]
    pub on_failure: OnFailure,
    /// Its `when` condition, as written (text only).
    #[serde(skip)]
    pub when: Option<String>,
    /// Its gate (text only).
    #[serde(skip)]
    pub gate: Option<PreviewGate>,
    /// The channel context it reads at run time: (channel, messages) (text only).
    #[serde(skip)]
    pub context: Option<(String, usize)>,
    /// Its `repeat`: asked again while `until` is false, at most `max`
    /// times in all; left out for other steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<PreviewRepeat>,
    /// Its `for_each`: the items and each instance's task; left out for
    /// other steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_each: Option<PreviewForEach>,
    /// A `finally` step: it runs once every other step has ended.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub finally: bool,
    /// Its `uses`: the workflow it runs as a child run, expanded; left out
    /// for other steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<Box<PreviewUses>>,
    /// The task with the inputs filled in; the steps' results it reads
    /// show as `⟨steps.X.result⟩` (and a repeat step's last iteration as
    /// `⟨previous.result⟩`: empty on the first).
    pub task: String,
}

/// A step's `for_each` in a [`Preview`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewForEach {
    /// Where the items come from, as written.
    pub source: String,
    /// The name the task reads the item by.
    #[serde(rename = "as")]
    pub name: String,
    /// When the step is done: `all`, `any`, `min N`.
    pub join: String,
    /// At most this many instances at once (`None`: no cap of its own).
    pub max_parallel: Option<usize>,
    /// The most items it takes.
    pub max_items: usize,
    /// The items, when the inputs give them (`None`: another step's
    /// output does, at run time).
    pub items: Option<Vec<String>>,
    /// Each instance's task, in item order, when the items are known.
    pub tasks: Vec<String>,
}

/// A `uses` step in a [`Preview`]: the child run it would start.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewUses {
    /// What `uses` says.
    pub name: String,
    /// The child run's preview: its inputs are the step's `with` (values
    /// read from other steps shown as `⟨steps.X.result⟩`) and the child's
    /// defaults.
    pub run: Preview,
}

/// A step's `repeat` in a [`Preview`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PreviewRepeat {
    /// The condition, as written.
    pub until: String,
    /// The most iterations.
    pub max: u32,
}

/// A step's gate in a [`Preview`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviewGate {
    /// Accepted statuses (empty: complete or partial).
    pub status: Vec<Status>,
    /// Lowest accepted confidence.
    pub min_confidence: Option<Confidence>,
    /// A human must approve.
    pub approval: bool,
}

impl Preview {
    /// The preview of `wf` run by `caller` with `inputs`; `route: auto`
    /// steps ask `router` now (at run time they are routed again).
    pub fn build(
        wf: &Workflow,
        inputs: &ResolvedInputs,
        caller: &str,
        router: &dyn StepRouter,
    ) -> Self {
        let plan = wf.plan();
        let steps = wf
            .steps
            .iter()
            .map(|step| {
                let task = fill_inputs(&step.task, inputs, None);
                let agent = match &step.target {
                    Target::Agent(a) => a.clone(),
                    Target::Route => match router.route(&task, caller) {
                        Some(a) => format!("route: auto → {a} (chosen now; re-routed at run time)"),
                        None => "route: auto → no agent matches now".to_owned(),
                    },
                    Target::Workflow(u) => format!("uses {}", u.name),
                };
                let uses = match &step.target {
                    Target::Workflow(u) => {
                        let with = u
                            .with
                            .iter()
                            .map(|(k, t)| (k.clone(), fill_inputs(t, inputs, None)))
                            .collect();
                        let child = ResolvedInputs::from_map(u.inputs(with));
                        Some(Box::new(PreviewUses {
                            name: u.name.clone(),
                            run: Preview::build(&u.workflow, &child, caller, router),
                        }))
                    }
                    _ => None,
                };
                PreviewStep {
                    id: step.id.clone(),
                    agent,
                    waits_for: plan.deps(&step.id).into_iter().map(str::to_owned).collect(),
                    // A child run has no deadline but the step's own.
                    timeout: match (&step.target, step.timeout) {
                        (Target::Workflow(_), None) => "none (its steps' own)".to_owned(),
                        _ => orch_support::duration::format(wf.timeout_of(step)),
                    },
                    retries: match &step.target {
                        Target::Workflow(_) => 0,
                        _ => wf.retries_of(step),
                    },
                    on_failure: wf.on_failure_of(step),
                    when: step.when.as_ref().map(ToString::to_string),
                    gate: step.gate.as_ref().map(|g| PreviewGate {
                        status: g.status.clone(),
                        min_confidence: g.min_confidence,
                        approval: g.approval,
                    }),
                    context: step
                        .context
                        .as_ref()
                        .map(|c| (c.channel.clone(), c.messages)),
                    repeat: step.repeat.as_ref().map(|r| PreviewRepeat {
                        until: r.until_text.clone(),
                        max: r.max,
                    }),
                    for_each: step.for_each.as_ref().map(|f| fan_out(step, f, inputs)),
                    finally: step.finally,
                    uses,
                    task,
                }
            })
            .collect();
        Self {
            workflow: wf.name.clone(),
            origin: wf.origin().to_owned(),
            caller: caller.to_owned(),
            inputs: inputs.as_map().clone(),
            // The `finally` steps are not levels of the run: they come last.
            levels: plan
                .levels()
                .into_iter()
                .map(|l| {
                    l.into_iter()
                        .filter(|id| wf.step(id).is_some_and(|s| !s.finally))
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .filter(|l| !l.is_empty())
                .collect(),
            max_parallel: wf.max_parallel,
            steps,
            output: wf.output.as_ref().map(|t| fill_inputs(t, inputs, None)),
        }
    }
}

/// A `for_each` step's preview: its items and each instance's task when
/// the inputs give them.
fn fan_out(step: &crate::model::Step, f: &ForEach, inputs: &ResolvedInputs) -> PreviewForEach {
    let items = (!f.reads_steps())
        .then(|| {
            let ctx = crate::template::Context {
                inputs: inputs.as_map().clone(),
                ..Default::default()
            };
            f.items_in(&ctx).ok()
        })
        .flatten();
    let tasks = items
        .iter()
        .flatten()
        .map(|item| fill_inputs(&step.task, inputs, Some(item)))
        .collect();
    PreviewForEach {
        source: f.source(),
        name: f.name.clone(),
        join: f.join.describe(),
        max_parallel: f.max_parallel,
        max_items: f.max_items,
        items,
        tasks,
    }
}

/// `t` with its inputs (and an instance's `item`) filled in and every
/// other reference shown as `⟨steps.X.result⟩` (a missing input as
/// `⟨inputs.X⟩`).
fn fill_inputs(t: &Template, inputs: &ResolvedInputs, item: Option<&str>) -> String {
    let mut s = String::new();
    for seg in t.segments() {
        match seg {
            Segment::Text(text) => s.push_str(text),
            Segment::Ref(Ref::Input(name)) => match inputs.get(name) {
                Some(v) => s.push_str(v),
                None => s.push_str(&format!("⟨inputs.{name}⟩")),
            },
            Segment::Ref(r @ Ref::Item(_)) => match item {
                Some(item) => s.push_str(item),
                None => s.push_str(&format!("⟨{r}⟩")),
            },
            Segment::Ref(r) => s.push_str(&format!("⟨{r}⟩")),
        }
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Always(&'static str);

    impl StepRouter for Always {
        fn route(&self, _: &str, _: &str) -> Option<String> {
            Some(self.0.to_owned())
        }
    }

    #[test]
    fn the_json_is_the_documented_shape_and_routes_now() {
        let wf = crate::load(
            "name: t\ninputs:\n  x: { default: X1 }\noutput: \"{{ steps.b.result }}\"\nsteps:\n  - id: a\n    route: auto\n    task: \"do {{ inputs.x }}\"\n  - id: b\n    agent: auditor\n    timeout: 90s\n    retries: 2\n    task: \"check {{ steps.a.result }}\"\n",
            "t.yaml",
        )
        .unwrap();
        let inputs = crate::check_run(
            &wf,
            &["webster", "auditor"],
            &orch_delegate::orch_acl::Policy::default(),
            "manager",
            &Default::default(),
        )
        .unwrap();
        let preview = Preview::build(&wf, &inputs, "manager", &Always("webster"));
        let json = serde_json::to_value(&preview).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "workflow": "t",
                "origin": "t.yaml",
                "caller": "manager",
                "inputs": { "x": "X1" },
                "levels": [["a"], ["b"]],
                "steps": [
                    { "id": "a", "agent": "route: auto → webster (chosen now; re-routed at run time)",
                      "waitsFor": [], "timeout": "10m", "retries": 0, "task": "do X1" },
                    { "id": "b", "agent": "auditor", "waitsFor": ["a"], "timeout": "1m 30s",
                      "retries": 2, "task": "check ⟨steps.a.result⟩" },
                ],
                "output": "⟨steps.b.result⟩",
            })
        );
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "workflow", "origin", "caller", "inputs", "levels", "steps", "output"
            ]
        );
    }
}
