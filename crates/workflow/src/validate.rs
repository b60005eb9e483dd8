//! Loading (syntax, shape, meaning within the file) and the checks of a
//! run request (agents, ACL, inputs).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use orch_delegate::orch_acl::Policy;

use crate::condition::Condition;
use crate::error::{ErrorKind, WorkflowError};
use crate::model::{
    DEFAULT_ITEM_NAME, DEFAULT_MAX_ITEMS, ForEach, Gate, InputSpec, Items, Join, JoinWord,
    MAX_ITEMS, MAX_REPEAT, MAX_RETRIES, MAX_TIMEOUT, MAX_USES_DEPTH, OnFailure, RawItems, RawJoin,
    RawRepeat, RawStep, RawWorkflow, Repeat, RouteMode, Step, StepDefaults, Target, Uses, Workflow,
};
use crate::plan::{Plan, arrows};
use crate::source::SourceMap;
use crate::template::{Field, Ref, Template, is_item_name};
use crate::uses::{Builtins, Resolve};

/// Step ids the run store keeps for itself.
const RESERVED_STEP_IDS: &[&str] = &["summary"];

/// Names a `for_each` item may not take: they start the other references.
const RESERVED_ITEM_NAMES: &[&str] = &["inputs", "steps", "run", "previous"];

/// What a template may read beyond inputs, steps and `run.id`.
#[derive(Clone, Copy, Default)]
struct Reads<'a> {
    /// `{{ previous.… }}`: the task of a `repeat` step.
    previous: bool,
    /// `{{ NAME }}`: the task of a `for_each` step whose item is `NAME`.
    item: Option<&'a str>,
    /// `{{ run.status }}` and `{{ run.steps }}`: the task of a `finally`
    /// step.
    finally: bool,
    /// The `finally` steps: their own tasks, and the run's `output`.
    finally_steps: bool,
}

/// Input values of a run, with defaults applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedInputs(BTreeMap<String, String>);

impl ResolvedInputs {
    /// Values as they are (a child run's: its `with`, defaults applied).
    pub(crate) fn from_map(values: BTreeMap<String, String>) -> Self {
        Self(values)
    }

    /// The value of input `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Every input, by name.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The map of values.
    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }
}

/// Whether `s` can name a step or an input: `[A-Za-z0-9][A-Za-z0-9_-]{0,63}`.
fn is_name(s: &str) -> bool {
    s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// serde_norway appends " at line X column Y"; we print the location first.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => message[..i].to_owned(),
        _ => message.to_owned(),
    }
}

/// Loads a workflow from YAML `text`; `origin` names it in errors (a path,
/// or `<built-in NAME>`). A `uses` may name a built-in workflow only: see
/// [`load_with`].
///
/// Checks, in order: size cap, YAML syntax, no anchors or aliases, nesting
/// depth, the shape (unknown keys, types, durations), then the meaning
/// within the file: ids, one of `agent`, `route: auto` and `uses`,
/// templates and conditions and what they reference, `needs`, and cycles.
/// Returns the first error found.
pub fn load(text: &str, origin: &str) -> Result<Workflow, WorkflowError> {
    load_with(text, origin, &Builtins)
}

/// [`load`], with the workflows that `uses` names found by `resolver`, and
/// each of them loaded and checked the same way (its inputs against
/// `with`, its `output`), down to [`MAX_USES_DEPTH`] levels; a workflow
/// that uses itself, directly or through others, is an error naming the
/// `uses` of each file on the way (file, line and column).
pub fn load_with(
    text: &str,
    origin: &str,
    resolver: &dyn Resolve,
) -> Result<Workflow, WorkflowError> {
    load_nested(
        text,
        origin,
        &Nest {
            resolver,
            chain: Vec::new(),
        },
    )
}

/// Where a workflow being loaded sits among the workflows that use it.
struct Nest<'a> {
    resolver: &'a dyn Resolve,
    /// The workflows above it, outermost first: each one's origin and
    /// where (`file:line:column`) its `uses` names the next.
    chain: Vec<(String, String)>,
}

fn load_nested(text: &str, origin: &str, nest: &Nest<'_>) -> Result<Workflow, WorkflowError> {
    // A UTF-8 byte order mark (as some editors save) is not content; the
    // positions are those an editor shows, which hides it too.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let source = SourceMap::scan(text, origin)?;
    let de = serde_norway::Deserializer::from_str(text);
    let raw: RawWorkflow = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        let mut message = strip_location(&inner.to_string());
        // serde_norway may prefix the message with (part of) the path.
        if let Some((prefix, rest)) = message.split_once(": ")
            && !prefix.is_empty()
            && path.starts_with(prefix)
        {
            message = rest.to_owned();
        }
        // An unknown key is reported at the key, against its parent.
        let unknown_key = message.starts_with("unknown field");
        let shown = if unknown_key {
            path.rfind(['.', '[']).map_or("", |i| &path[..i])
        } else {
            path.as_str()
        };
        let message = if shown.is_empty() {
            message
        } else {
            format!("`{shown}`: {message}")
        };
        match inner.location() {
            // serde_norway places value errors raised inside a field's own
            // deserializer at the enclosing mapping; the index knows better.
            Some(_) if !unknown_key && source.has(&path) => {
                source.error(ErrorKind::Schema, path, message)
            }
            Some(l) => source.error_at(
                ErrorKind::Schema,
                path,
                source.within((l.line(), l.column())),
                message,
            ),
            None => source.error(ErrorKind::Schema, path, message),
        }
    })?;
    build(raw, source, nest)
}

/// Where each dependency of a step was first mentioned: (path, line, column).
type Mentions = BTreeMap<usize, (String, (usize, usize))>;

fn build(raw: RawWorkflow, source: SourceMap, nest: &Nest<'_>) -> Result<Workflow, WorkflowError> {
    let err = |kind, path: String, message: String| source.error(kind, path, message);
    if raw.name.trim().is_empty() {
        return Err(err(
            ErrorKind::Schema,
            "name".into(),
            "`name` must not be empty".into(),
        ));
    }
    if raw.steps.is_empty() {
        return Err(err(
            ErrorKind::Schema,
            "steps".into(),
            "a workflow needs at least one step".into(),
        ));
    }
    if raw.max_parallel == Some(0) {
        return Err(err(
            ErrorKind::Schema,
            "max_parallel".into(),
            "`max_parallel` must be at least 1 (leave it out for no cap)".into(),
        ));
    }
    let max_parallel = raw
        .max_parallel
        .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
    let mut inputs = BTreeMap::new();
    for (name, spec) in raw.inputs {
        let path = format!("inputs.{name}");
        if !is_name(&name) {
            return Err(err(
                ErrorKind::Schema,
                path,
                format!("input name `{name}` is not allowed: use letters, digits, `_` and `-`"),
            ));
        }
        if spec.required && spec.default.is_some() {
            return Err(err(
                ErrorKind::Schema,
                path,
                format!("input `{name}` is required and has a default: give one or the other"),
            ));
        }
        inputs.insert(
            name,
            InputSpec {
                required: spec.required,
                default: spec.default,
                description: spec.description,
            },
        );
    }
    let defaults = StepDefaults {
        timeout: raw.defaults.timeout.map(|d| d.0),
        retries: raw.defaults.retries,
        on_failure: raw.defaults.on_failure,
    };
    check_timeout(defaults.timeout, "defaults.timeout", &source)?;
    check_retries(defaults.retries, "defaults.retries", &source)?;

    // The steps, then the `finally` steps: one list, each with where it
    // is written (`steps[2]`, `finally[0]`).
    let main = raw.steps.len();
    let all: Vec<(String, &RawStep)> = raw
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("steps[{i}]"), s))
        .chain(
            raw.finally
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("finally[{i}]"), s)),
        )
        .collect();

    // Ids first: references need to know every step.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (at, step)) in all.iter().enumerate() {
        let path = format!("{at}.id");
        if !is_name(&step.id) {
            return Err(err(
                ErrorKind::StepId,
                path,
                format!(
                    "step id `{}` is not allowed: use up to 64 letters, digits, `_` and `-`, starting with a letter or digit",
                    step.id
                ),
            ));
        }
        if RESERVED_STEP_IDS.contains(&step.id.as_str()) {
            return Err(err(
                ErrorKind::StepId,
                path,
                format!("step id `{}` is reserved", step.id),
            ));
        }
        if let Some(&first) = index.get(step.id.as_str()) {
            let at = source.node(&format!("{}.id", all[first].0));
            return Err(err(
                ErrorKind::StepId,
                path,
                format!(
                    "duplicate step id `{}` (first defined at line {})",
                    step.id, at.line
                ),
            ));
        }
        index.insert(&step.id, i);
    }

    // The `for_each` steps: only they have instances to read.
    let fans: BTreeSet<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| s.for_each.is_some())
        .map(|(i, _)| i)
        .collect();
    let known = Known {
        index: &index,
        fans: &fans,
        inputs: &inputs,
        main,
    };
    let mut steps = Vec::with_capacity(all.len());
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(all.len());
    let mut mentions: Vec<Mentions> = Vec::with_capacity(all.len());
    for (i, (at, rs)) in all.iter().enumerate() {
        let (step, step_deps, step_mentions) = build_step(i, at, rs, &known, &source, nest)?;
        steps.push(step);
        deps.push(step_deps);
        mentions.push(step_mentions);
    }

    let output = match &raw.output {
        None => None,
        Some(text) => {
            let t = parse_template(text, "output", &source)?;
            check_refs(
                &t,
                "output",
                text,
                &known,
                &source,
                Reads {
                    finally_steps: true,
                    ..Reads::default()
                },
                |_, _, _| Ok(()),
            )?;
            Some(t)
        }
    };

    let ids: Vec<String> = steps.iter().map(|s: &Step| s.id.clone()).collect();
    let plan = Plan::build(ids.clone(), deps).map_err(|cycle| {
        // Point at where the first step of the cycle reads the last one.
        let (first, last) = (cycle[0], cycle[cycle.len() - 2]);
        let (path, at) = mentions[first].get(&last).cloned().unwrap_or_else(|| {
            let p = format!("{}.id", all[first].0);
            let n = source.node(&p);
            (p, (n.line, n.column))
        });
        let message = if cycle.len() == 2 {
            format!("step `{}` depends on itself", ids[first])
        } else {
            format!("dependency cycle: {}", arrows(&ids, &cycle))
        };
        source.error_at(ErrorKind::Cycle, path, at, message)
    })?;

    Ok(Workflow {
        name: raw.name,
        description: raw.description,
        inputs,
        defaults,
        steps,
        max_parallel,
        output,
        plan,
        source,
        main,
    })
}

/// A timeout must be longer than zero and at most [`MAX_TIMEOUT`].
fn check_timeout(
    timeout: Option<Duration>,
    path: &str,
    source: &SourceMap,
) -> Result<(), WorkflowError> {
    match timeout {
        Some(t) if t.is_zero() => Err(source.error(
            ErrorKind::Schema,
            path,
            "a timeout must be longer than zero",
        )),
        Some(t) if t > MAX_TIMEOUT => Err(source.error(
            ErrorKind::Schema,
            path,
            format!(
                "a timeout of {} is longer than the limit of 7 days",
                friendly(t)
            ),
        )),
        _ => Ok(()),
    }
}

/// `retries` is at most [`MAX_RETRIES`].
fn check_retries(
    retries: Option<u32>,
    path: &str,
    source: &SourceMap,
) -> Result<(), WorkflowError> {
    match retries {
        Some(n) if n > MAX_RETRIES => Err(source.error(
            ErrorKind::Schema,
            path,
            format!("`retries` is {n}; a step may be retried at most {MAX_RETRIES} times"),
        )),
        _ => Ok(()),
    }
}

/// `8d 4h`, `90s`: a duration as a person writes it.
fn friendly(d: Duration) -> String {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|s| jiff::Span::try_from(s).ok())
        .and_then(|span| {
            span.round(
                jiff::SpanRound::new()
                    .largest(jiff::Unit::Day)
                    .days_are_24_hours(),
            )
            .ok()
        })
        .map_or_else(|| format!("{}s", d.as_secs()), |span| format!("{span:#}"))
}

fn parse_template(text: &str, path: &str, source: &SourceMap) -> Result<Template, WorkflowError> {
    Template::parse(text).map_err(|e| {
        let at = source.locate(path, text, e.offset, e.len);
        source.error_at(ErrorKind::Template, path, at, e.message)
    })
}

/// What a reference may name: the steps (by id, with their place in the
/// file), which of them are `for_each` steps, and the inputs.
struct Known<'a> {
    index: &'a BTreeMap<&'a str, usize>,
    fans: &'a BTreeSet<usize>,
    inputs: &'a BTreeMap<String, InputSpec>,
    /// The steps before this index are the workflow's; from it on, its
    /// `finally` steps (which the others may not read).
    main: usize,
}

/// Checks every reference of `t` against the steps and inputs (and what
/// else the template may read: `reads`), and hands each step reference
/// (index, offset, len) to `on_step`.
fn check_refs(
    t: &Template,
    path: &str,
    text: &str,
    known_names: &Known<'_>,
    source: &SourceMap,
    reads: Reads<'_>,
    mut on_step: impl FnMut(usize, usize, usize) -> Result<(), WorkflowError>,
) -> Result<(), WorkflowError> {
    let Known {
        index,
        fans,
        inputs,
        main,
    } = known_names;
    for (r, offset, len) in t.refs_with_offsets() {
        let at = || source.locate(path, text, offset, len);
        let finally_error = |id: &str| {
            source.error_at(
                ErrorKind::Template,
                path,
                at(),
                format!(
                    "`{{{{ {r} }}}}` reads `{id}`, a `finally` step: they run after every other step has ended, so only another `finally` step can read one"
                ),
            )
        };
        let step_error = |id: &str| {
            source.error_at(
                ErrorKind::UnknownStep,
                path,
                at(),
                format!(
                    "`{{{{ {r} }}}}` names an unknown step `{id}`{}",
                    known(index.keys())
                ),
            )
        };
        match r {
            Ref::Input(name) if !inputs.contains_key(name) => {
                return Err(source.error_at(
                    ErrorKind::Template,
                    path,
                    at(),
                    format!(
                        "`{{{{ {r} }}}}` names an unknown input `{name}`{}",
                        known(inputs.keys())
                    ),
                ));
            }
            Ref::Step { id, field } => match index.get(id.as_str()) {
                Some(&j) if field.is_fan_out() && !fans.contains(&j) => {
                    return Err(source.error_at(
                        ErrorKind::Template,
                        path,
                        at(),
                        format!(
                            "`{{{{ {r} }}}}` reads the instances of a `for_each` step, and step `{id}` has no `for_each`: read `steps.{id}.{}`",
                            if *field == Field::Results { "result" } else { "status" }
                        ),
                    ));
                }
                Some(&j) if j >= *main && !reads.finally_steps => {
                    return Err(finally_error(id));
                }
                Some(&j) => on_step(j, offset, len)?,
                None => return Err(step_error(id)),
            },
            Ref::Instance { id, .. } => match index.get(id.as_str()) {
                Some(&j) if j >= *main && !reads.finally_steps => {
                    return Err(finally_error(id));
                }
                Some(&j) if !fans.contains(&j) => {
                    return Err(source.error_at(
                        ErrorKind::Template,
                        path,
                        at(),
                        format!(
                            "`{{{{ {r} }}}}` reads one instance of a `for_each` step, and step `{id}` has no `for_each`"
                        ),
                    ));
                }
                Some(&j) => on_step(j, offset, len)?,
                None => return Err(step_error(id)),
            },
            Ref::Previous(_) if !reads.previous => {
                return Err(source.error_at(
                    ErrorKind::Template,
                    path,
                    at(),
                    format!(
                        "`{{{{ {r} }}}}` reads the iteration before this one: only the task of a step with `repeat` has one"
                    ),
                ));
            }
            Ref::RunStatus | Ref::RunSteps if !reads.finally => {
                return Err(source.error_at(
                    ErrorKind::Template,
                    path,
                    at(),
                    format!(
                        "`{{{{ {r} }}}}` is how the run ended: only the task of a `finally` step reads it"
                    ),
                ));
            }
            Ref::Item(name) if reads.item != Some(name.as_str()) => {
                let message = match reads.item {
                    Some(item) => format!(
                        "unknown reference `{name}`: this step's item is `{{{{ {item} }}}}` (`as` names it)"
                    ),
                    None => format!(
                        "unknown reference `{name}`: references start with `inputs.`, `steps.`, `run.` or `previous.` (a bare name is the item of a `for_each` step, in its task)"
                    ),
                };
                return Err(source.error_at(ErrorKind::Template, path, at(), message));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `" (known: a, b)"` or `" (none declared)"`.
fn known<S: AsRef<str>>(names: impl Iterator<Item = S>) -> String {
    let names: Vec<String> = names.map(|n| n.as_ref().to_owned()).collect();
    if names.is_empty() {
        " (none declared)".into()
    } else {
        format!(" (known: {})", names.join(", "))
    }
}

/// Step `i` of the combined list (the steps, then the `finally` steps),
/// written at `prefix` (`steps[2]`, `finally[0]`).
fn build_step(
    i: usize,
    prefix: &str,
    rs: &RawStep,
    known_names: &Known<'_>,
    source: &SourceMap,
    nest: &Nest<'_>,
) -> Result<(Step, Vec<usize>, Mentions), WorkflowError> {
    let (index, inputs) = (known_names.index, known_names.inputs);
    let finally = i >= known_names.main;
    let at = |field: &str| format!("{prefix}.{field}");
    let err = |kind, path: String, message: String| source.error(kind, path, message);
    let id = rs.id.as_str();
    if rs.uses.is_some() {
        refuse_with_uses(prefix, rs, source)?;
    } else if rs.with.is_some() {
        return Err(err(
            ErrorKind::Schema,
            at("with"),
            format!(
                "step `{id}` gives `with`, which is for a `uses` step: pass its values in the task"
            ),
        ));
    }
    let target = match (&rs.agent, rs.route) {
        // Built below, once its `with` templates are read.
        _ if rs.uses.is_some() => Target::Route,
        (Some(_), Some(_)) => {
            return Err(err(
                ErrorKind::Schema,
                at("route"),
                format!("step `{id}` gives both `agent` and `route`: give one"),
            ));
        }
        (None, None) => {
            return Err(err(
                ErrorKind::Schema,
                prefix.to_owned(),
                format!("step `{id}` needs `agent: NAME`, `route: auto` or `uses: WORKFLOW`"),
            ));
        }
        (Some(agent), None) if agent.trim().is_empty() || agent.trim() != agent => {
            return Err(err(
                ErrorKind::Schema,
                at("agent"),
                format!("step `{id}`: `agent` must be a non-empty name without spaces around it"),
            ));
        }
        (Some(agent), None) => Target::Agent(agent.clone()),
        (None, Some(RouteMode::Auto)) => Target::Route,
    };
    let task_text = match (&rs.task, &rs.uses) {
        (Some(t), _) => t,
        (None, Some(_)) => "",
        (None, None) => {
            return Err(err(
                ErrorKind::Schema,
                prefix.to_owned(),
                format!("step `{id}` has no `task`: say what the agent should do"),
            ));
        }
    };
    if rs.uses.is_none() && task_text.trim().is_empty() {
        return Err(err(
            ErrorKind::Schema,
            at("task"),
            format!("step `{id}` has an empty `task`"),
        ));
    }
    check_timeout(rs.timeout.map(|d| d.0), &at("timeout"), source)?;
    check_retries(rs.retries, &at("retries"), source)?;

    let mut deps: Vec<usize> = Vec::new();
    let mut mentions = Mentions::new();
    let mut add = |j: usize, path: String, pos: (usize, usize)| {
        if !deps.contains(&j) {
            deps.push(j);
        }
        mentions.entry(j).or_insert((path, pos));
    };

    for (k, need) in rs.needs.iter().enumerate() {
        let path = at(&format!("needs[{k}]"));
        match index.get(need.as_str()) {
            Some(&j) if j >= known_names.main && !finally => {
                return Err(err(
                    ErrorKind::UnknownStep,
                    path,
                    format!(
                        "step `{id}` needs `{need}`, a `finally` step: they run after every other step has ended"
                    ),
                ));
            }
            Some(&j) => {
                let n = source.node(&path);
                add(j, path, (n.line, n.column));
            }
            None => {
                return Err(err(
                    ErrorKind::UnknownStep,
                    path,
                    format!(
                        "step `{id}` needs an unknown step `{need}`{}",
                        known(index.keys())
                    ),
                ));
            }
        }
    }

    let for_each = build_for_each(prefix, rs, known_names, source, &mut add)?;

    let task_path = at("task");
    let task = parse_template(task_text, &task_path, source)?;
    check_refs(
        &task,
        &task_path,
        task_text,
        known_names,
        source,
        Reads {
            previous: rs.repeat.is_some(),
            item: for_each.as_ref().map(|f| f.name.as_str()),
            finally,
            finally_steps: finally,
        },
        |j, offset, len| {
            add(
                j,
                task_path.clone(),
                source.locate(&task_path, task_text, offset, len),
            );
            Ok(())
        },
    )?;

    let target = match &rs.uses {
        Some(name) => Target::Workflow(std::sync::Arc::new(build_uses(
            prefix,
            rs,
            name,
            known_names,
            source,
            nest,
            &mut add,
        )?)),
        None => target,
    };

    let when = match &rs.when {
        None => None,
        Some(text) => {
            let path = at("when");
            Some(parse_condition(
                text,
                &path,
                "when",
                None,
                inputs,
                source,
                |sid, pos| {
                    match index.get(sid) {
                    Some(&j) if j >= known_names.main && !finally => Err(source.error_at(
                        ErrorKind::Condition,
                        path.clone(),
                        pos,
                        format!(
                            "`when` reads `{sid}`, a `finally` step: they run after every other step has ended"
                        ),
                    )),
                    Some(&j) => {
                        add(j, path.clone(), pos);
                        Ok(())
                    }
                    None => Err(source.error_at(
                        ErrorKind::Condition,
                        path.clone(),
                        pos,
                        format!(
                            "`when` reads an unknown step `{sid}`{}",
                            known(index.keys())
                        ),
                    )),
                }
                },
            )?)
        }
    };

    let repeat = match &rs.repeat {
        None => None,
        Some(r) => Some(build_repeat(id, &at("repeat"), r, inputs, source)?),
    };

    if finally && rs.gate.as_ref().is_some_and(|g| g.approval) {
        return Err(err(
            ErrorKind::Schema,
            at("gate.approval"),
            format!(
                "`finally` step `{id}` cannot wait for approval: the run is ending when it runs"
            ),
        ));
    }
    let gate = rs.gate.as_ref().map(|g| Gate {
        status: g.status.clone(),
        min_confidence: g.min_confidence,
        approval: g.approval,
    });
    if let Some(ctx) = &rs.context {
        if ctx.channel.trim().is_empty() {
            return Err(err(
                ErrorKind::Schema,
                at("context.channel"),
                "`context.channel` must not be empty".into(),
            ));
        }
        if !(1..=1000).contains(&ctx.messages) {
            return Err(err(
                ErrorKind::Schema,
                at("context.messages"),
                "`context.messages` must be between 1 and 1000".into(),
            ));
        }
    }

    Ok((
        Step {
            id: rs.id.clone(),
            target,
            task,
            needs: rs.needs.clone(),
            timeout: rs.timeout.map(|d| d.0),
            retries: rs.retries,
            when,
            gate,
            on_failure: rs.on_failure,
            context: rs.context.clone(),
            repeat,
            for_each,
            finally,
        },
        deps,
        mentions,
    ))
}

/// Says which `uses` (`file:line:column`) an error inside a used
/// workflow came through: the innermost only, once.
fn used_by(e: &mut WorkflowError, at: &str) {
    if !e.message.contains(" (used by ") {
        e.message = format!("{} (used by {at})", e.message);
    }
}

/// A `uses` step may not give what only a delegation has: each key is
/// refused where it is written.
fn refuse_with_uses(prefix: &str, rs: &RawStep, source: &SourceMap) -> Result<(), WorkflowError> {
    let given = [
        (
            "agent",
            rs.agent.is_some(),
            "its steps name their own agents",
        ),
        (
            "route",
            rs.route.is_some(),
            "its steps name their own agents",
        ),
        ("task", rs.task.is_some(), "pass values to it with `with`"),
        (
            "context",
            rs.context.is_some(),
            "give it to the step of the workflow that reads it",
        ),
        (
            "retries",
            rs.retries.is_some(),
            "its steps retry by their own settings",
        ),
        (
            "repeat",
            rs.repeat.is_some(),
            "repeat a step inside it instead",
        ),
        (
            "for_each",
            rs.for_each.is_some(),
            "fan out a step inside it instead",
        ),
        ("as", rs.item_name.is_some(), "it is for a `for_each` step"),
        (
            "max_parallel",
            rs.max_parallel.is_some(),
            "it is for a `for_each` step",
        ),
        ("join", rs.join.is_some(), "it is for a `for_each` step"),
        (
            "max_items",
            rs.max_items.is_some(),
            "it is for a `for_each` step",
        ),
    ];
    match given.iter().find(|(_, is, _)| *is) {
        Some((key, _, hint)) => Err(source.error(
            ErrorKind::Schema,
            format!("{prefix}.{key}"),
            format!(
                "step `{}` uses a workflow: `{key}` does not apply ({hint})",
                rs.id
            ),
        )),
        None => Ok(()),
    }
}

/// The workflow a `uses` step runs, found through `nest`'s resolver and
/// loaded (its own `uses` too), with its `with` inputs checked against
/// what it declares; the steps the `with` templates read are handed to
/// `add` as dependencies.
fn build_uses(
    prefix: &str,
    rs: &RawStep,
    name: &str,
    known_names: &Known<'_>,
    source: &SourceMap,
    nest: &Nest<'_>,
    add: &mut impl FnMut(usize, String, (usize, usize)),
) -> Result<Uses, WorkflowError> {
    let id = rs.id.as_str();
    let path = format!("{prefix}.uses");
    let here = source.node(&path);
    let here_at = format!("{}:{}:{}", source.origin(), here.line, here.column);
    if name.trim().is_empty() || name.trim() != name {
        return Err(source.error(
            ErrorKind::Schema,
            path,
            format!("step `{id}`: `uses` must name a workflow, without spaces around it"),
        ));
    }
    let found = nest.resolver.resolve(name, source.origin()).map_err(|m| {
        source.error(
            ErrorKind::UnknownWorkflow,
            path.clone(),
            format!("step `{id}`: {m}"),
        )
    })?;
    if found.origin == source.origin() {
        return Err(source.error(
            ErrorKind::WorkflowCycle,
            path,
            format!("step `{id}`: workflow {} uses itself", found.origin),
        ));
    }
    if let Some(k) = nest.chain.iter().position(|(o, _)| *o == found.origin) {
        let mut files: Vec<&str> = nest.chain[k..].iter().map(|(o, _)| o.as_str()).collect();
        files.push(source.origin());
        files.push(&found.origin);
        let mut uses: Vec<String> = nest.chain[k..]
            .iter()
            .enumerate()
            .map(|(j, (_, at))| format!("{at} uses {}", files[j + 1]))
            .collect();
        uses.push(format!("{here_at} uses {}", found.origin));
        return Err(source.error(
            ErrorKind::WorkflowCycle,
            path,
            format!(
                "step `{id}`: workflow cycle: {} ({})",
                files.join(" → "),
                uses.join("; ")
            ),
        ));
    }
    if nest.chain.len() >= MAX_USES_DEPTH {
        let files: Vec<&str> = nest
            .chain
            .iter()
            .map(|(o, _)| o.as_str())
            .chain([source.origin(), found.origin.as_str()])
            .collect();
        return Err(source.error(
            ErrorKind::WorkflowCycle,
            path,
            format!(
                "step `{id}`: sub-workflows nest more than {MAX_USES_DEPTH} deep: {}",
                files.join(" → ")
            ),
        ));
    }
    let mut chain = nest.chain.clone();
    chain.push((source.origin().to_owned(), here_at.clone()));
    let inner = Nest {
        resolver: nest.resolver,
        chain,
    };
    let workflow = load_nested(&found.text, &found.origin, &inner).map_err(|mut e| {
        // A cycle's message names every file's `uses` already.
        if e.kind != ErrorKind::WorkflowCycle {
            used_by(&mut e, &here_at);
        }
        e
    })?;
    if workflow.output.is_none() {
        return Err(source.error(
            ErrorKind::UnknownWorkflow,
            path,
            format!(
                "step `{id}`: workflow `{}` ({}) has no `output`: a workflow run by `uses` must say what it returns",
                workflow.name, found.origin
            ),
        ));
    }
    let mut with = BTreeMap::new();
    for (key, text) in rs.with.iter().flatten() {
        let wpath = format!("{prefix}.with.{key}");
        if !workflow.inputs.contains_key(key) {
            return Err(source.error(
                ErrorKind::UnknownInput,
                wpath,
                format!(
                    "step `{id}`: workflow `{}` has no input `{key}`{}",
                    workflow.name,
                    known(workflow.inputs.keys())
                ),
            ));
        }
        let t = parse_template(text, &wpath, source)?;
        check_refs(
            &t,
            &wpath,
            text,
            known_names,
            source,
            Reads::default(),
            |j, offset, len| {
                add(j, wpath.clone(), source.locate(&wpath, text, offset, len));
                Ok(())
            },
        )?;
        with.insert(key.clone(), t);
    }
    let missing: Vec<&str> = workflow
        .inputs
        .iter()
        .filter(|(k, spec)| spec.required && !with.contains_key(*k))
        .map(|(k, _)| k.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(source.error(
            ErrorKind::MissingInput,
            path,
            format!(
                "step `{id}`: workflow `{}` needs input{} {}: give {} in `with`",
                workflow.name,
                if missing.len() == 1 { "" } else { "s" },
                missing
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if missing.len() == 1 { "it" } else { "them" }
            ),
        ));
    }
    Ok(Uses {
        name: name.to_owned(),
        with,
        workflow,
        source: found.text,
    })
}

/// Step `i`'s `for_each` and the keys that go with it (`as`,
/// `max_parallel`, `join`, `max_items`); the steps its items read are
/// handed to `add` as dependencies. A list written in the file is checked
/// now (not empty, at most `max_items`, at least `join.min`); items that
/// come from inputs are checked with the run (`check_run`), from other
/// steps when the step starts.
fn build_for_each(
    prefix: &str,
    rs: &RawStep,
    known_names: &Known<'_>,
    source: &SourceMap,
    add: &mut impl FnMut(usize, String, (usize, usize)),
) -> Result<Option<ForEach>, WorkflowError> {
    let at = |field: &str| format!("{prefix}.{field}");
    let id = rs.id.as_str();
    let Some(raw) = &rs.for_each else {
        let keys = [
            ("as", rs.item_name.is_some()),
            ("max_parallel", rs.max_parallel.is_some()),
            ("join", rs.join.is_some()),
            ("max_items", rs.max_items.is_some()),
        ];
        if let Some((key, _)) = keys.iter().find(|(_, given)| *given) {
            return Err(source.error(
                ErrorKind::Schema,
                at(key),
                format!("step `{id}`: `{key}` goes with `for_each`, which this step does not have"),
            ));
        }
        return Ok(None);
    };
    let name = rs
        .item_name
        .clone()
        .unwrap_or_else(|| DEFAULT_ITEM_NAME.to_owned());
    if !is_item_name(&name) {
        return Err(source.error(
            ErrorKind::Schema,
            at("as"),
            format!(
                "step `{id}`: `as: {name}` cannot name an item: use letters, digits and `_`, starting with a letter or `_`"
            ),
        ));
    }
    if RESERVED_ITEM_NAMES.contains(&name.as_str()) {
        return Err(source.error(
            ErrorKind::Schema,
            at("as"),
            format!("step `{id}`: `as: {name}` is taken by the `{name}.` references: choose another name"),
        ));
    }
    let max_parallel = match rs.max_parallel {
        Some(0) => {
            return Err(source.error(
                ErrorKind::Schema,
                at("max_parallel"),
                format!("step `{id}`: `max_parallel` must be at least 1 (leave it out for no cap)"),
            ));
        }
        m => m.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
    };
    let max_items = match rs.max_items {
        None => DEFAULT_MAX_ITEMS,
        Some(m) if (1..=MAX_ITEMS as u64).contains(&m) => usize::try_from(m).unwrap_or(MAX_ITEMS),
        Some(m) => {
            return Err(source.error(
                ErrorKind::Schema,
                at("max_items"),
                format!("step `{id}`: `max_items` is {m}: a step may take 1 to {MAX_ITEMS} items"),
            ));
        }
    };
    let join = match &rs.join {
        None | Some(RawJoin::Word(JoinWord::All)) => Join::All,
        Some(RawJoin::Word(JoinWord::Any)) => Join::Any,
        Some(RawJoin::Min(m)) if m.min == 0 => {
            return Err(source.error(
                ErrorKind::Schema,
                at("join.min"),
                format!(
                    "step `{id}`: `join: {{ min: 0 }}` would need nothing: `min` is at least 1"
                ),
            ));
        }
        Some(RawJoin::Min(m)) => Join::Min(usize::try_from(m.min).unwrap_or(usize::MAX)),
    };
    // The items: each element of a list, or one template to split. They
    // may read inputs, steps (which become dependencies) and `run.id`,
    // never their own item.
    let path = at("for_each");
    let mut check = |text: &str, path: &str| -> Result<Template, WorkflowError> {
        let t = parse_template(text, path, source)?;
        check_refs(
            &t,
            path,
            text,
            known_names,
            source,
            Reads::default(),
            |j, offset, len| {
                add(j, path.to_owned(), source.locate(path, text, offset, len));
                Ok(())
            },
        )?;
        Ok(t)
    };
    let items = match raw {
        RawItems::Split(text) => {
            if text.trim().is_empty() {
                return Err(source.error(
                    ErrorKind::Items,
                    path,
                    format!("step `{id}`: `for_each` is empty: give a list or a template such as \"{{{{ inputs.materials }}}}\""),
                ));
            }
            Items::Split(check(text, &path)?)
        }
        RawItems::List(list) => {
            let mut items = Vec::with_capacity(list.len());
            for (k, text) in list.iter().enumerate() {
                items.push(check(text, &format!("{path}[{k}]"))?);
            }
            Items::List(items)
        }
    };
    let fan = ForEach {
        items,
        name,
        max_parallel,
        join,
        max_items,
    };
    if let Items::List(list) = &fan.items {
        check_item_count(&fan, list.len(), id, &path, &at("join.min"), source)?;
    }
    Ok(Some(fan))
}

/// Whether `count` items suit step `id`'s `for_each`: at least one, at
/// most `max_items`, at least `join.min`. `path` locates the items,
/// `min_path` the `join.min`.
fn check_item_count(
    fan: &ForEach,
    count: usize,
    id: &str,
    path: &str,
    min_path: &str,
    source: &SourceMap,
) -> Result<(), WorkflowError> {
    if count == 0 {
        return Err(source.error(
            ErrorKind::Items,
            path,
            format!("step `{id}`: `for_each` gives no items: a step needs at least one"),
        ));
    }
    if count > fan.max_items {
        return Err(source.error(
            ErrorKind::Items,
            path,
            format!(
                "step `{id}`: `for_each` gives {count} items, more than its `max_items` of {} (raise it, up to {MAX_ITEMS})",
                fan.max_items
            ),
        ));
    }
    if let Join::Min(n) = fan.join
        && n > count
    {
        return Err(source.error(
            ErrorKind::Items,
            min_path,
            format!(
                "step `{id}`: `join: {{ min: {n} }}` needs {n} instances to complete, and `for_each` gives {count} item{}",
                if count == 1 { "" } else { "s" }
            ),
        ));
    }
    Ok(())
}

/// Parses condition `text` at `path` (`what` names it in messages:
/// `when`, `repeat.until`; `this`: the step whose own `status` and
/// `confidence` an `until` reads bare), checks the inputs it compares, and
/// hands each step it reads, with where it is read, to `on_step`.
fn parse_condition(
    text: &str,
    path: &str,
    what: &str,
    this: Option<&str>,
    inputs: &BTreeMap<String, InputSpec>,
    source: &SourceMap,
    mut on_step: impl FnMut(&str, (usize, usize)) -> Result<(), WorkflowError>,
) -> Result<Condition, WorkflowError> {
    let parsed = match this {
        Some(id) => Condition::parse_until(text, id),
        None => Condition::parse(text),
    };
    let c = parsed.map_err(|e| {
        let pos = source.locate(path, text, e.offset, e.len);
        source.error_at(
            ErrorKind::Condition,
            path,
            pos,
            format!("bad `{what}`: {}", e.message),
        )
    })?;
    let mut refs = Vec::new();
    c.refs(&mut refs);
    for r in refs {
        let piece = r.to_string();
        let offset = text.find(&piece).unwrap_or(0);
        let pos = source.locate(path, text, offset, piece.len());
        match &r {
            Ref::Step { id, .. } => on_step(id, pos)?,
            Ref::Input(name) if !inputs.contains_key(name) => {
                return Err(source.error_at(
                    ErrorKind::Condition,
                    path,
                    pos,
                    format!(
                        "`{what}` reads an unknown input `{name}`{}",
                        known(inputs.keys())
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(c)
}

/// Step `id`'s `repeat` (at `path`): `until` in the `when` language,
/// reading only this step's status and confidence and the inputs; `max`
/// from 1 to [`MAX_REPEAT`].
fn build_repeat(
    id: &str,
    path: &str,
    r: &RawRepeat,
    inputs: &BTreeMap<String, InputSpec>,
    source: &SourceMap,
) -> Result<Repeat, WorkflowError> {
    if !(1..=MAX_REPEAT).contains(&r.max) {
        return Err(source.error(
            ErrorKind::Schema,
            format!("{path}.max"),
            format!(
                "`repeat.max` is {}: a step may be asked 1 to {MAX_REPEAT} times",
                r.max
            ),
        ));
    }
    let upath = format!("{path}.until");
    let text = &r.until;
    let until = parse_condition(
        text,
        &upath,
        "repeat.until",
        Some(id),
        inputs,
        source,
        |sid, pos| {
            if sid == id {
                return Ok(());
            }
            Err(source.error_at(
                ErrorKind::Condition,
                upath.clone(),
                pos,
                format!(
                    "`repeat.until` reads step `{sid}`: it judges this step's own answer (`status`, `confidence`) and the inputs"
                ),
            ))
        },
    )?;
    Ok(Repeat {
        until,
        until_text: text.clone(),
        max: r.max,
    })
}

/// Checks a run request against a loaded workflow: every `agent` is one of
/// `agents`; `caller` may delegate to every step's agent under `policy`
/// (a `route: auto` step needs the caller to be allowed at least one of
/// `agents`); every required input is given; no undeclared input is given.
/// Collects every error. On success, returns the inputs with defaults
/// applied.
pub fn check_run(
    wf: &Workflow,
    agents: &[&str],
    policy: &Policy,
    caller: &str,
    inputs: &BTreeMap<String, String>,
) -> Result<ResolvedInputs, Vec<WorkflowError>> {
    let src = &wf.source;
    let mut errors = Vec::new();
    check_targets(wf, agents, policy, caller, &mut errors);
    let mut resolved = BTreeMap::new();
    for (name, spec) in &wf.inputs {
        match (inputs.get(name), &spec.default) {
            (Some(v), _) => {
                resolved.insert(name.clone(), v.clone());
            }
            (None, Some(d)) => {
                resolved.insert(name.clone(), d.clone());
            }
            (None, None) if spec.required => errors.push(src.error(
                ErrorKind::MissingInput,
                format!("inputs.{name}"),
                format!("missing required input `{name}`: pass --input {name}=…"),
            )),
            (None, None) => {}
        }
    }
    let declared: BTreeSet<&str> = wf.inputs.keys().map(String::as_str).collect();
    for name in inputs.keys().filter(|n| !declared.contains(n.as_str())) {
        errors.push(src.error(
            ErrorKind::UnknownInput,
            "inputs",
            format!("unknown input `{name}`{}", known(declared.iter())),
        ));
    }
    // Items that come from the inputs are known now: none, too many, or
    // fewer than the join needs is an error before anything is sent.
    if errors.is_empty() {
        let ctx = crate::template::Context {
            inputs: resolved.clone(),
            ..Default::default()
        };
        for (i, step) in wf.steps.iter().enumerate() {
            let Some(fan) = step.for_each.as_ref().filter(|f| !f.reads_steps()) else {
                continue;
            };
            let path = format!("{}.for_each", wf.step_path(i));
            match fan.items_in(&ctx) {
                Ok(items) => {
                    if let Err(e) = check_item_count(
                        fan,
                        items.len(),
                        &step.id,
                        &path,
                        &format!("{}.join.min", wf.step_path(i)),
                        src,
                    ) {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(src.error(
                    ErrorKind::Items,
                    path,
                    format!("step `{}`: `for_each`: {e}", step.id),
                )),
            }
        }
    }
    if errors.is_empty() {
        Ok(ResolvedInputs(resolved))
    } else {
        Err(errors)
    }
}

/// The agents of `wf`'s steps and of every workflow its `uses` steps run
/// (a child run acts for the same caller): known, and allowed for `caller`.
fn check_targets(
    wf: &Workflow,
    agents: &[&str],
    policy: &Policy,
    caller: &str,
    errors: &mut Vec<WorkflowError>,
) {
    let src = &wf.source;
    for (i, step) in wf.steps.iter().enumerate() {
        match &step.target {
            Target::Agent(agent) => {
                let path = format!("{}.agent", wf.step_path(i));
                if !agents.contains(&agent.as_str()) {
                    errors.push(src.error(
                        ErrorKind::UnknownAgent,
                        path,
                        format!(
                            "step `{}`: unknown agent `{agent}` (known: {})",
                            step.id,
                            agents.join(", ")
                        ),
                    ));
                } else if let Err(e) = policy.check(caller, agent) {
                    errors.push(src.error(
                        ErrorKind::Denied,
                        path,
                        format!("step `{}`: {e}", step.id),
                    ));
                }
            }
            Target::Route => {
                if policy
                    .allowed_targets(caller, agents.iter().copied())
                    .is_empty()
                {
                    errors.push(src.error(
                        ErrorKind::Denied,
                        format!("{}.route", wf.step_path(i)),
                        format!("step `{}` routes automatically, but `{caller}` may not delegate to any agent", step.id),
                    ));
                }
            }
            Target::Workflow(u) => {
                let from = errors.len();
                check_targets(&u.workflow, agents, policy, caller, errors);
                let node = src.node(&format!("{}.uses", wf.step_path(i)));
                let at = format!("{}:{}:{}", wf.origin(), node.line, node.column);
                for e in &mut errors[from..] {
                    used_by(e, &at);
                }
            }
        }
    }
}

/// Checks, before anything is sent, that what is known of every step's
/// task before the run (its own text and the inputs it reads: a lower
/// bound of what it renders to) fits what its agent's transport delivers
/// ([`Transport::max_task_bytes`], less orch's instructions around the
/// task); a `route: auto` step is held to the roomiest agent. The run
/// itself stops rendering a task the moment it passes the limit; this
/// finds the tasks that can never fit, with the step's line and column.
/// Collects every error.
///
/// [`Transport::max_task_bytes`]: orch_delegate::Transport::max_task_bytes
pub fn check_task_sizes(
    wf: &Workflow,
    inputs: &ResolvedInputs,
    delegator: &orch_delegate::Delegator,
    caller: &str,
) -> Result<(), Vec<WorkflowError>> {
    let run = orch_delegate::orch_handoff::RunId::generate_workflow(&wf.name);
    check_task_sizes_for(wf, inputs.as_map(), delegator, caller, &run)
}

/// [`check_task_sizes`] for workflow run `run`.
pub(crate) fn check_task_sizes_for(
    wf: &Workflow,
    inputs: &BTreeMap<String, String>,
    delegator: &orch_delegate::Delegator,
    caller: &str,
    run: &orch_delegate::orch_handoff::RunId,
) -> Result<(), Vec<WorkflowError>> {
    let mut errors = Vec::new();
    for (i, step) in wf.steps.iter().enumerate() {
        let Some(budget) = crate::budget::budgets(delegator, run, step, caller)
            .into_iter()
            .next()
        else {
            continue;
        };
        let mut known = step
            .task
            .known_size(&|name| inputs.get(name).map(|v| v.len() as u64));
        if known.size <= budget.task() {
            continue;
        }
        known.limit = budget.task();
        errors.push(wf.source.error(
            ErrorKind::TaskTooLarge,
            format!("{}.task", wf.step_path(i)),
            format!(
                "step `{}`: {}",
                step.id,
                budget.refusal("task, before any step result,", &known)
            ),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// What in a valid workflow is likely a mistake: the `output` reads a step
/// that may end without a result while the run still completes (its own
/// `when` or one of a step it depends on may skip it; it or a step it
/// depends on may fail under `on_failure: continue`). The run then reports
/// no output and says why; this says it before the run.
pub fn warnings(wf: &Workflow) -> Vec<crate::error::Warning> {
    let mut out = Vec::new();
    let Some(output) = &wf.output else {
        return out;
    };
    let text = output.source();
    let mut seen = BTreeSet::new();
    for (r, offset, len) in output.refs_with_offsets() {
        let Ref::Step { id, .. } = r else { continue };
        if !seen.insert(id.as_str()) {
            continue;
        }
        let Some(why) = may_not_complete(wf, id) else {
            continue;
        };
        let (line, column) = wf.source.locate("output", text, offset, len);
        out.push(crate::error::Warning {
            origin: wf.origin().to_owned(),
            line,
            column,
            message: format!(
                "`output` reads step `{id}`, which {why}: the run would then complete with no output"
            ),
        });
    }
    out
}

/// Why step `id` may end without a result in a run that still completes.
fn may_not_complete(wf: &Workflow, id: &str) -> Option<String> {
    let step = wf.step(id)?;
    if let Some(when) = &step.when {
        return Some(format!("its `when: {when}` may skip"));
    }
    if wf.on_failure_of(step) == OnFailure::Continue {
        return Some("may fail under `on_failure: continue`".to_owned());
    }
    // Its dependencies, nearest first.
    let mut queue: std::collections::VecDeque<&str> = wf.plan().deps(id).into();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    while let Some(dep) = queue.pop_front() {
        if !seen.insert(dep) {
            continue;
        }
        let Some(d) = wf.step(dep) else { continue };
        if d.when.is_some() {
            return Some(format!(
                "is skipped when step `{dep}` is (its `when` may skip it)"
            ));
        }
        if wf.on_failure_of(d) == OnFailure::Continue {
            return Some(format!(
                "is skipped when step `{dep}` fails under `on_failure: continue`"
            ));
        }
        queue.extend(wf.plan().deps(dep));
    }
    None
}
