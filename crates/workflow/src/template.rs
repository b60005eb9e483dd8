//! `{{ … }}` templates in step tasks and the workflow `output`.
//!
//! A template is parsed once, at load time, into literal text and
//! references: `{{ inputs.X }}`, `{{ steps.ID.FIELD }}` (FIELD one of
//! `result`, `status`, `confidence`, `notes`, `artifacts`) and
//! `{{ run.id }}`; in the task of a step with `repeat`, also
//! `{{ previous.result }}`, `{{ previous.reason }}`, `{{ previous.status }}`
//! and `{{ previous.confidence }}`: the iteration before this one, empty on
//! the first. Spaces inside the braces are optional. There is no escape:
//! every `{{` opens a reference. Rendering fails on a missing value rather
//! than printing an empty string (`previous` aside).

use std::borrow::Cow;
use std::fmt;

use crate::error::{Growth, RenderError, TooLarge};
use orch_delegate::orch_handoff::{Artifact, Confidence, Handoff, Status};

/// A field of a finished step that a template or condition can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The handoff's `result` text.
    Result,
    /// `complete`, `partial`, `blocked` or `failed`.
    Status,
    /// `low`, `medium` or `high` (`unstated` when the handoff has none).
    Confidence,
    /// The handoff's `notes`.
    Notes,
    /// The artifacts, one per line.
    Artifacts,
    /// Of a `for_each` step: every instance's result, in item order, as a
    /// JSON array of strings (`""` for an instance without one).
    Results,
    /// Of a `for_each` step: every instance's outcome, in item order, as a
    /// JSON array: its handoff's status, or `failed`, `cancelled` (no longer
    /// needed by the join) or `pending`.
    Statuses,
}

impl Field {
    /// Every field, in the order error messages list them.
    pub const ALL: [Field; 7] = [
        Field::Result,
        Field::Status,
        Field::Confidence,
        Field::Notes,
        Field::Artifacts,
        Field::Results,
        Field::Statuses,
    ];

    /// The name used in templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Result => "result",
            Field::Status => "status",
            Field::Confidence => "confidence",
            Field::Notes => "notes",
            Field::Artifacts => "artifacts",
            Field::Results => "results",
            Field::Statuses => "statuses",
        }
    }

    /// Whether only a `for_each` step has this field.
    pub fn is_fan_out(self) -> bool {
        matches!(self, Field::Results | Field::Statuses)
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// One `{{ … }}` reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ref {
    /// `{{ inputs.NAME }}`.
    Input(String),
    /// `{{ steps.ID.FIELD }}`.
    Step {
        /// The step id.
        id: String,
        /// The field read.
        field: Field,
    },
    /// `{{ run.id }}`: the workflow run id.
    RunId,
    /// `{{ run.status }}`: how the run ended (`completed`, `failed`,
    /// `completed-with-failures`, `cancelled`), in a `finally` step.
    RunStatus,
    /// `{{ run.steps }}`: every step's outcome, one per line
    /// (`research: completed`, `audit: skipped (…)`), in a `finally` step.
    RunSteps,
    /// `{{ previous.FIELD }}`: the last iteration of a `repeat` step (empty
    /// on the first).
    Previous(PreviousField),
    /// `{{ NAME }}`: the item of a `for_each` step's instance (`NAME` is
    /// the step's `as`, by default `item`).
    Item(String),
    /// `{{ steps.ID[N].FIELD }}`: instance `N` (from 0) of `for_each` step
    /// `ID`.
    Instance {
        /// The step id.
        id: String,
        /// The instance, from 0 in item order.
        index: usize,
        /// The field read.
        field: Field,
    },
}

/// What `{{ previous.FIELD }}` reads of the iteration before this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PreviousField {
    /// Its handoff's `result`.
    Result,
    /// Why it was not good enough: the `until` condition and what came.
    Reason,
    /// Its handoff's status.
    Status,
    /// Its handoff's confidence (`unstated` when it had none).
    Confidence,
}

impl PreviousField {
    /// Every field, in the order error messages list them.
    pub const ALL: [PreviousField; 4] = [
        PreviousField::Result,
        PreviousField::Reason,
        PreviousField::Status,
        PreviousField::Confidence,
    ];

    /// The name used in templates.
    pub fn as_str(self) -> &'static str {
        match self {
            PreviousField::Result => "result",
            PreviousField::Reason => "reason",
            PreviousField::Status => "status",
            PreviousField::Confidence => "confidence",
        }
    }
}

/// The iteration before this one of a `repeat` step, as
/// `{{ previous.FIELD }}` reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Previous {
    /// What it produced.
    pub output: StepOutput,
    /// Why another iteration was asked for.
    pub reason: String,
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ref::Input(name) => write!(f, "inputs.{name}"),
            Ref::Step { id, field } => write!(f, "steps.{id}.{}", field.as_str()),
            Ref::RunId => f.write_str("run.id"),
            Ref::RunStatus => f.write_str("run.status"),
            Ref::RunSteps => f.write_str("run.steps"),
            Ref::Previous(field) => write!(f, "previous.{}", field.as_str()),
            Ref::Item(name) => f.write_str(name),
            Ref::Instance { id, index, field } => {
                write!(f, "steps.{id}[{index}].{}", field.as_str())
            }
        }
    }
}

/// A piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Text copied as is.
    Text(String),
    /// A value looked up at render time.
    Ref(Ref),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
}

/// A template syntax error: byte offset and length of the offending piece
/// in the template text, and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) offset: usize,
    pub(crate) len: usize,
    pub(crate) message: String,
}

/// What the finished step `id` produced, as templates and conditions see
/// it. Of a `for_each` step: what its instances produced together (see
/// [`StepOutput::fan_in`]), and each of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepOutput {
    /// The handoff status.
    pub status: Status,
    /// The handoff confidence, when the agent gave one.
    pub confidence: Option<Confidence>,
    /// The handoff result text.
    pub result: String,
    /// The handoff notes (may be empty).
    pub notes: String,
    /// Paths or URLs of the artifacts.
    pub artifacts: Vec<String>,
    /// Of a `for_each` step: each instance, in item order (empty for
    /// other steps).
    pub instances: Vec<Instance>,
}

/// One instance of a `for_each` step, as templates see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Its item.
    pub item: String,
    /// How it ended: its handoff's status, or `failed`, `cancelled`,
    /// `pending` (see [`Field::Statuses`]).
    pub outcome: String,
    /// Its answer, when it has one.
    pub output: Option<StepOutput>,
}

impl StepOutput {
    /// The parts of a handoff that templates can read.
    pub fn from_handoff(h: &Handoff) -> Self {
        let artifacts = h
            .artifacts
            .iter()
            .filter_map(|a| match a {
                Artifact::Plain(s) => Some(s.clone()),
                Artifact::Ref(r) => r.path.clone().or_else(|| r.url.clone()),
            })
            .collect();
        Self {
            status: h.status,
            confidence: h.confidence,
            result: h.result.clone(),
            notes: h.notes.clone(),
            artifacts,
            instances: Vec::new(),
        }
    }

    /// What the instances of a `for_each` step produced together: each
    /// answer's result (and notes) under a `### ITEM` heading, in item
    /// order (an instance without an answer says why); every artifact;
    /// the worst status and the lowest confidence of the answers the step
    /// counts (`counted`: for `join: any` / `min`, the completed ones);
    /// `partial` over them when `short` (a `min` join that met fewer than
    /// its `N` by the step's deadline).
    pub fn fan_in(instances: Vec<Instance>, counted: &[bool], short: bool) -> Self {
        let mut result = String::new();
        let mut notes = String::new();
        let mut artifacts = Vec::new();
        let mut status: Option<Status> = None;
        let mut confidence: Option<Confidence> = None;
        let mut any_confidence = true;
        for (i, inst) in instances.iter().enumerate() {
            if !result.is_empty() {
                result.push_str("\n\n");
            }
            result.push_str("### ");
            result.push_str(&inst.item);
            result.push('\n');
            match &inst.output {
                Some(out) => {
                    result.push_str(&out.result);
                    if !out.notes.is_empty() {
                        if !notes.is_empty() {
                            notes.push_str("\n\n");
                        }
                        notes.push_str("### ");
                        notes.push_str(&inst.item);
                        notes.push('\n');
                        notes.push_str(&out.notes);
                    }
                    artifacts.extend(out.artifacts.iter().cloned());
                    if counted.get(i).copied().unwrap_or(true) {
                        status = Some(status.map_or(out.status, |s| worst(s, out.status)));
                        match (out.confidence, any_confidence) {
                            (Some(c), true) => {
                                confidence = Some(confidence.map_or(c, |m| m.min(c)));
                            }
                            _ => {
                                any_confidence = false;
                                confidence = None;
                            }
                        }
                    }
                }
                None => {
                    result.push('(');
                    result.push_str(&inst.outcome);
                    result.push_str(", no result)");
                }
            }
        }
        let mut status = status.unwrap_or(Status::Failed);
        if short && status == Status::Complete {
            status = Status::Partial;
        }
        Self {
            status,
            confidence,
            result,
            notes,
            artifacts,
            instances,
        }
    }
}

/// The worse of two statuses: complete < partial < blocked < failed.
fn worst(a: Status, b: Status) -> Status {
    let rank = |s: Status| match s {
        Status::Complete => 0,
        Status::Partial => 1,
        Status::Blocked => 2,
        Status::Failed => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// The values a template or condition is evaluated against.
pub trait RenderContext {
    /// The value of input `name` (defaults already applied).
    fn input(&self, name: &str) -> Option<&str>;
    /// The output of step `id`, if it has finished.
    fn step(&self, id: &str) -> Option<&StepOutput>;
    /// The workflow run id.
    fn run_id(&self) -> Option<&str>;
    /// The iteration before this one, for a `repeat` step past its first.
    fn previous(&self) -> Option<&Previous> {
        None
    }
    /// The item of a `for_each` step's instance, by the step's name for
    /// it.
    fn item(&self, _name: &str) -> Option<&str> {
        None
    }
    /// How the run ended, for a `finally` step.
    fn outcome(&self) -> Option<&RunOutcome> {
        None
    }
}

/// How the run ended, as a `finally` step reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// `{{ run.status }}`.
    pub status: String,
    /// `{{ run.steps }}`.
    pub steps: String,
}

/// A plain [`RenderContext`] built from maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// Input values by name.
    pub inputs: std::collections::BTreeMap<String, String>,
    /// Outputs of finished steps by id.
    pub steps: std::collections::BTreeMap<String, StepOutput>,
    /// The run id, once there is one.
    pub run_id: Option<String>,
    /// The iteration before this one of a `repeat` step.
    pub previous: Option<Previous>,
    /// The item of a `for_each` step's instance: (its name, its value).
    pub item: Option<(String, String)>,
    /// How the run ended, for a `finally` step.
    pub outcome: Option<RunOutcome>,
}

impl RenderContext for Context {
    fn input(&self, name: &str) -> Option<&str> {
        self.inputs.get(name).map(String::as_str)
    }
    fn step(&self, id: &str) -> Option<&StepOutput> {
        self.steps.get(id)
    }
    fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }
    fn previous(&self) -> Option<&Previous> {
        self.previous.as_ref()
    }
    fn item(&self, name: &str) -> Option<&str> {
        self.item
            .as_ref()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn outcome(&self) -> Option<&RunOutcome> {
        self.outcome.as_ref()
    }
}

/// Parses the inside of `{{ … }}` or a condition operand: `inputs.X`,
/// `steps.ID.FIELD`, `run.id`. The error is a message.
pub(crate) fn parse_ref(expr: &str) -> Result<Ref, String> {
    let parts: Vec<&str> = expr.split('.').collect();
    match parts.as_slice() {
        ["inputs", name] if !name.is_empty() => Ok(Ref::Input((*name).to_owned())),
        ["inputs", ..] => Err(format!("`{expr}` is not a reference: write `inputs.NAME`")),
        ["steps", id, field] if !id.is_empty() => match Field::parse(field) {
            Some(field) => match instance_of(id) {
                Some(Ok((id, index))) => Ok(Ref::Instance {
                    id: id.to_owned(),
                    index,
                    field,
                }),
                Some(Err(())) => Err(format!(
                    "`{expr}` is not a reference: one instance is `steps.ID[N].FIELD`, N a number from 0"
                )),
                None => Ok(Ref::Step {
                    id: (*id).to_owned(),
                    field,
                }),
            },
            None => Err(format!(
                "unknown step field `{field}` in `{expr}`: expected one of {}",
                one_of(Field::ALL.iter().map(|f| f.as_str()))
            )),
        },
        ["steps", ..] => Err(format!(
            "`{expr}` is not a reference: write `steps.ID.FIELD`"
        )),
        ["run", "id"] => Ok(Ref::RunId),
        ["run", "status"] => Ok(Ref::RunStatus),
        ["run", "steps"] => Ok(Ref::RunSteps),
        ["previous", field] => PreviousField::ALL
            .into_iter()
            .find(|f| f.as_str() == *field)
            .map(Ref::Previous)
            .ok_or_else(|| {
                format!(
                    "unknown field `{field}` in `{expr}`: expected one of {}",
                    one_of(PreviousField::ALL.iter().map(|f| f.as_str()))
                )
            }),
        ["run", ..] => Err(format!(
            "`{expr}` is not a reference: the run's fields are `run.id`, and in a `finally` step `run.status` and `run.steps`"
        )),
        [name] if is_item_name(name) => Ok(Ref::Item((*name).to_owned())),
        _ => Err(format!(
            "unknown reference `{expr}`: references start with `inputs.`, `steps.`, `run.` or `previous.`"
        )),
    }
}

/// `ID[N]`: `Some(Ok((ID, N)))`; `Some(Err(()))` if it has a `[` but is
/// not of that shape; `None` without a `[`.
fn instance_of(s: &str) -> Option<Result<(&str, usize), ()>> {
    let open = s.find('[')?;
    let inner = s[open + 1..].strip_suffix(']');
    Some(match inner.map(|n| (n, n.parse::<usize>())) {
        Some((n, Ok(index))) if open > 0 && n.bytes().all(|b| b.is_ascii_digit()) => {
            Ok((&s[..open], index))
        }
        _ => Err(()),
    })
}

/// Whether `s` can name a `for_each` step's item: `[A-Za-z_][A-Za-z0-9_]*`,
/// at most 64 characters.
pub(crate) fn is_item_name(s: &str) -> bool {
    s.len() <= 64
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `` `a`, `b`, `c` ``: the names a reference may take.
fn one_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Template {
    /// Parses a template.
    pub(crate) fn parse(source: &str) -> Result<Self, SyntaxError> {
        let mut segments = Vec::new();
        let mut rest = 0usize;
        while let Some(open) = source[rest..].find("{{").map(|i| rest + i) {
            if open > rest {
                segments.push(Segment::Text(source[rest..open].to_owned()));
            }
            let Some(close) = source[open + 2..].find("}}").map(|i| open + 2 + i) else {
                return Err(SyntaxError {
                    offset: open,
                    len: 2,
                    message: "`{{` is never closed with `}}`".into(),
                });
            };
            let inner = source[open + 2..close].trim();
            let r = parse_ref(inner).map_err(|message| SyntaxError {
                offset: open,
                len: close + 2 - open,
                message,
            })?;
            segments.push(Segment::Ref(r));
            rest = close + 2;
        }
        if rest < source.len() {
            segments.push(Segment::Text(source[rest..].to_owned()));
        }
        Ok(Self {
            source: source.to_owned(),
            segments,
        })
    }

    /// Parses a template written in code (not from a file).
    pub fn new(source: &str) -> Result<Self, String> {
        Self::parse(source).map_err(|e| e.message)
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed pieces.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Every reference, in order, with its byte offset and length in the
    /// source text.
    pub(crate) fn refs_with_offsets(&self) -> Vec<(&Ref, usize, usize)> {
        let mut out = Vec::new();
        let mut from = 0;
        for seg in &self.segments {
            if let Segment::Ref(r) = seg
                && let Some(open) = self.source[from..].find("{{").map(|i| from + i)
            {
                let close = self.source[open..]
                    .find("}}")
                    .map_or(self.source.len(), |i| open + i + 2);
                out.push((r, open, close - open));
                from = close;
            }
        }
        out
    }

    /// Every reference, in order.
    pub fn refs(&self) -> impl Iterator<Item = &Ref> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Ref(r) => Some(r),
            Segment::Text(_) => None,
        })
    }

    /// The one reference this template is made of (spaces around it
    /// aside), if it is only that.
    pub(crate) fn only_ref(&self) -> Option<&Ref> {
        let mut found = None;
        for seg in &self.segments {
            match seg {
                Segment::Text(t) if t.trim().is_empty() => {}
                Segment::Ref(r) if found.is_none() => found = Some(r),
                _ => return None,
            }
        }
        found
    }

    /// The ids of the steps this template reads, in order, with repeats.
    pub fn step_refs(&self) -> impl Iterator<Item = &str> {
        self.refs().filter_map(|r| match r {
            Ref::Step { id, .. } | Ref::Instance { id, .. } => Some(id.as_str()),
            _ => None,
        })
    }

    /// Renders the template; a value it needs that `ctx` lacks is an error.
    /// Unbounded: for text whose size the caller bounds some other way
    /// (see [`render_within`](Self::render_within)).
    pub fn render(&self, ctx: &dyn RenderContext) -> Result<String, RenderError> {
        self.render_within(ctx, u64::MAX)
    }

    /// Renders the template into at most `limit` bytes. The moment the text
    /// passes the limit, building stops (what was built is dropped) and the
    /// rest is only measured, so the error says how large the text would
    /// be and which references grew it ([`RenderError::TooLarge`]) without
    /// ever holding it. A missing value is still an error first.
    pub fn render_within(
        &self,
        ctx: &dyn RenderContext,
        limit: u64,
    ) -> Result<String, RenderError> {
        let cap = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut out = String::with_capacity(self.source.len().min(cap));
        let mut size = 0u64;
        let mut over = false;
        for seg in &self.segments {
            let piece = match seg {
                Segment::Text(t) => Cow::Borrowed(t.as_str()),
                Segment::Ref(r) => lookup(r, ctx)?,
            };
            size = size.saturating_add(piece.len() as u64);
            if !over && size > limit {
                over = true;
                out = String::new();
            }
            if !over {
                out.push_str(&piece);
            }
        }
        if over {
            return Err(RenderError::TooLarge(self.too_large(ctx, size, limit)));
        }
        Ok(out)
    }

    /// What a text over `limit` is made of, largest part first.
    pub(crate) fn too_large(&self, ctx: &dyn RenderContext, size: u64, limit: u64) -> TooLarge {
        let parts = self.segments.iter().map(|seg| match seg {
            Segment::Text(t) => ("text".to_owned(), t.len() as u64),
            Segment::Ref(r) => (r.to_string(), lookup(r, ctx).map_or(0, |p| p.len() as u64)),
        });
        TooLarge {
            size,
            limit,
            growth: growth(parts),
        }
    }

    /// The bytes of the template that are known before any step has run:
    /// its own text and the inputs it reads (`inputs`), a lower bound of
    /// what it renders to; with the references that count, largest first.
    pub(crate) fn known_size(&self, inputs: &dyn Fn(&str) -> Option<u64>) -> TooLarge {
        let parts: Vec<(String, u64)> = self
            .segments
            .iter()
            .filter_map(|seg| match seg {
                Segment::Text(t) => Some(("text".to_owned(), t.len() as u64)),
                Segment::Ref(r @ Ref::Input(name)) => {
                    Some((r.to_string(), inputs(name).unwrap_or(0)))
                }
                Segment::Ref(_) => None,
            })
            .collect();
        let size = parts.iter().fold(0u64, |n, (_, b)| n.saturating_add(*b));
        TooLarge {
            size,
            limit: 0,
            growth: growth(parts),
        }
    }
}

/// The parts of a rendered text (what, bytes) grouped by what they are,
/// largest first.
fn growth(parts: impl IntoIterator<Item = (String, u64)>) -> Vec<Growth> {
    let mut grown: Vec<Growth> = Vec::new();
    for (what, bytes) in parts {
        match grown.iter_mut().find(|g| g.what == what) {
            Some(g) => {
                g.times += 1;
                g.bytes = g.bytes.saturating_add(bytes);
            }
            None => grown.push(Growth {
                what,
                times: 1,
                bytes,
            }),
        }
    }
    grown.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.what.cmp(&b.what)));
    grown
}

/// The text of one reference, borrowed from `ctx` where it can be.
pub(crate) fn lookup<'a>(r: &Ref, ctx: &'a dyn RenderContext) -> Result<Cow<'a, str>, RenderError> {
    let missing = || RenderError::Missing(format!("`{r}` has no value"));
    match r {
        Ref::Input(name) => ctx.input(name).map(Cow::Borrowed).ok_or_else(missing),
        Ref::RunId => ctx.run_id().map(Cow::Borrowed).ok_or_else(missing),
        Ref::RunStatus => ctx
            .outcome()
            .map(|o| Cow::Borrowed(o.status.as_str()))
            .ok_or_else(missing),
        Ref::RunSteps => ctx
            .outcome()
            .map(|o| Cow::Borrowed(o.steps.as_str()))
            .ok_or_else(missing),
        // Empty on a repeat step's first iteration (validation keeps
        // `previous` to the tasks of repeat steps).
        Ref::Previous(field) => Ok(match ctx.previous() {
            None => Cow::Borrowed(""),
            Some(p) => match field {
                PreviousField::Result => Cow::Borrowed(p.output.result.as_str()),
                PreviousField::Reason => Cow::Borrowed(p.reason.as_str()),
                PreviousField::Status => Cow::Borrowed(p.output.status.as_str()),
                PreviousField::Confidence => {
                    Cow::Borrowed(p.output.confidence.map_or("unstated", Confidence::as_str))
                }
            },
        }),
        Ref::Item(name) => ctx.item(name).map(Cow::Borrowed).ok_or_else(missing),
        Ref::Step { id, field } => {
            let out = ctx.step(id).ok_or_else(|| {
                RenderError::Missing(format!("`{r}` has no value: step `{id}` has not finished"))
            })?;
            Ok(field_of(out, *field))
        }
        Ref::Instance { id, index, field } => {
            let out = ctx.step(id).ok_or_else(|| {
                RenderError::Missing(format!("`{r}` has no value: step `{id}` has not finished"))
            })?;
            let inst = out.instances.get(*index).ok_or_else(|| {
                RenderError::Missing(format!(
                    "`{r}` has no value: step `{id}` has {} instance{}",
                    out.instances.len(),
                    if out.instances.len() == 1 { "" } else { "s" }
                ))
            })?;
            let answer = inst.output.as_ref().ok_or_else(|| {
                RenderError::Missing(format!(
                    "`{r}` has no value: instance {index} ({}) has no answer ({})",
                    inst.item, inst.outcome
                ))
            })?;
            Ok(field_of(answer, *field))
        }
    }
}

/// The text of `field` of a step's output.
fn field_of(out: &StepOutput, field: Field) -> Cow<'_, str> {
    match field {
        Field::Result => Cow::Borrowed(out.result.as_str()),
        Field::Status => Cow::Borrowed(out.status.as_str()),
        // The handoff field is optional: say so rather than fail.
        Field::Confidence => Cow::Borrowed(out.confidence.map_or("unstated", Confidence::as_str)),
        Field::Notes => Cow::Borrowed(out.notes.as_str()),
        Field::Artifacts => Cow::Owned(out.artifacts.join("\n")),
        // A step that is not a `for_each` step is its own only instance.
        Field::Results if out.instances.is_empty() => Cow::Owned(json(&[out.result.as_str()])),
        Field::Statuses if out.instances.is_empty() => Cow::Owned(json(&[out.status.as_str()])),
        Field::Results => Cow::Owned(json(
            &out.instances
                .iter()
                .map(|i| i.output.as_ref().map_or("", |o| o.result.as_str()))
                .collect::<Vec<_>>(),
        )),
        Field::Statuses => Cow::Owned(json(
            &out.instances
                .iter()
                .map(|i| i.outcome.as_str())
                .collect::<Vec<_>>(),
        )),
    }
}

/// A JSON array of strings.
fn json(items: &[&str]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ctx() -> Context {
        let mut c = Context::default();
        c.inputs.insert("m".into(), "Invar, Zerodur".into());
        c.steps.insert(
            "research".into(),
            StepOutput {
                status: Status::Complete,
                confidence: Some(Confidence::High),
                result: "R".into(),
                notes: String::new(),
                artifacts: vec!["a.md".into(), "b.csv".into()],
                instances: Vec::new(),
            },
        );
        c.run_id = Some("wf-1".into());
        c
    }

    #[test]
    fn parses_and_renders() {
        let t = Template::new("x {{inputs.m}} / {{ steps.research.result }} {{ steps.research.confidence }} {{run.id}}\n{{ steps.research.artifacts }}").unwrap();
        assert_eq!(
            t.render(&ctx()).unwrap(),
            "x Invar, Zerodur / R high wf-1\na.md\nb.csv"
        );
        assert_eq!(
            t.step_refs().collect::<Vec<_>>(),
            ["research", "research", "research"]
        );
        let offsets: Vec<_> = t
            .refs_with_offsets()
            .iter()
            .map(|(_, o, l)| (*o, *l))
            .collect();
        assert_eq!(offsets[0], (2, 12));
    }

    #[test]
    fn missing_values_are_errors() {
        let t = Template::new("{{ steps.other.result }}").unwrap();
        assert!(
            t.render(&ctx())
                .unwrap_err()
                .to_string()
                .contains("has not finished")
        );
        let t = Template::new("{{ inputs.nope }}").unwrap();
        assert!(t.render(&ctx()).is_err());
    }

    #[test]
    fn syntax_errors() {
        assert!(
            Template::new("{{ inputs.m ")
                .unwrap_err()
                .contains("never closed")
        );
        assert!(
            Template::new("{{ steps.a.resulz }}")
                .unwrap_err()
                .contains("unknown step field")
        );
        assert!(
            Template::new("{{ env.HOME }}")
                .unwrap_err()
                .contains("unknown reference")
        );
        assert!(Template::new("{{ steps.a }}").is_err());
        assert_eq!(Template::new("no refs").unwrap().segments().len(), 1);
    }
}
