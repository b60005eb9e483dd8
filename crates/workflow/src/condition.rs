//! `when` conditions: a tiny language over earlier steps and inputs.
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | "(" expr ")" | compare
//! compare := "steps.ID.status" ("==" | "!=") STATUS
//!          | "steps.ID.confidence" ("==" | "!=" | "<" | "<=" | ">" | ">=") CONFIDENCE
//!          | "inputs.NAME" ("==" | "!=") (WORD | "quoted" | 'quoted')
//! ```
//!
//! Confidence is ordered low < medium < high; a step without a confidence
//! fails every confidence comparison except `!=`.

use std::fmt;

use orch_delegate::orch_handoff::{Confidence, Status};

use crate::error::RenderError;
use crate::template::{Field, Ref, RenderContext, SyntaxError, parse_ref};

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Eq => ord == Equal,
            Op::Ne => ord != Equal,
            Op::Lt => ord == Less,
            Op::Le => ord != Greater,
            Op::Gt => ord == Greater,
            Op::Ge => ord != Less,
        }
    }
}

/// A parsed `when` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// `steps.ID.status OP STATUS`.
    Status {
        /// The step.
        step: String,
        /// `==` or `!=`.
        op: Op,
        /// The status compared with.
        value: Status,
    },
    /// `steps.ID.confidence OP CONFIDENCE`.
    Confidence {
        /// The step.
        step: String,
        /// Any comparison.
        op: Op,
        /// The level compared with.
        value: Confidence,
    },
    /// `inputs.NAME OP "text"`.
    Input {
        /// The input.
        name: String,
        /// `==` or `!=`.
        op: Op,
        /// The text compared with.
        value: String,
    },
    /// `not C`.
    Not(Box<Condition>),
    /// `A and B`.
    And(Box<Condition>, Box<Condition>),
    /// `A or B`.
    Or(Box<Condition>, Box<Condition>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Op(Op),
    Open,
    Close,
}

fn tokenize(s: &str) -> Result<Vec<(Tok, usize, usize)>, SyntaxError> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                Tok::Open
            }
            b')' => {
                i += 1;
                Tok::Close
            }
            b'=' | b'!' | b'<' | b'>' => {
                let two = bytes.get(i + 1) == Some(&b'=');
                i += if two { 2 } else { 1 };
                match (c, two) {
                    (b'=', true) => Tok::Op(Op::Eq),
                    (b'!', true) => Tok::Op(Op::Ne),
                    (b'<', false) => Tok::Op(Op::Lt),
                    (b'<', true) => Tok::Op(Op::Le),
                    (b'>', false) => Tok::Op(Op::Gt),
                    (b'>', true) => Tok::Op(Op::Ge),
                    _ => {
                        return Err(SyntaxError {
                            offset: start,
                            len: i - start,
                            message: format!(
                                "unknown operator `{}`: use ==, !=, <, <=, >, >=",
                                &s[start..i]
                            ),
                        });
                    }
                }
            }
            b'"' | b'\'' => {
                let Some(end) = s[i + 1..].find(c as char).map(|e| i + 1 + e) else {
                    return Err(SyntaxError {
                        offset: start,
                        len: 1,
                        message: "unterminated string".into(),
                    });
                };
                i = end + 1;
                Tok::Str(s[start + 1..end].to_owned())
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'-' | b'.'))
                {
                    i += 1;
                }
                Tok::Word(s[start..i].to_owned())
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or(' ');
                return Err(SyntaxError {
                    offset: start,
                    len: ch.len_utf8(),
                    message: format!("unexpected character `{ch}` in condition"),
                });
            }
        };
        out.push((tok, start, i - start));
    }
    Ok(out)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize, usize)>,
    pos: usize,
    /// A `repeat.until` of this step: bare `status` and `confidence` are
    /// its own.
    this: Option<&'a str>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }

    fn err_here(&self, message: String) -> SyntaxError {
        match self.toks.get(self.pos) {
            Some((_, offset, len)) => SyntaxError {
                offset: *offset,
                len: *len,
                message,
            },
            None => SyntaxError {
                offset: self.src.len(),
                len: 0,
                message,
            },
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn or(&mut self) -> Result<Condition, SyntaxError> {
        let mut left = self.and()?;
        while self.is_word("or") {
            self.pos += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, SyntaxError> {
        let mut left = self.unary()?;
        while self.is_word("and") {
            self.pos += 1;
            left = Condition::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Condition, SyntaxError> {
        if self.is_word("not") {
            self.pos += 1;
            return Ok(Condition::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            let inner = self.or()?;
            if self.peek() != Some(&Tok::Close) {
                return Err(self.err_here("expected `)`".into()));
            }
            self.pos += 1;
            return Ok(inner);
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Condition, SyntaxError> {
        let Some(Tok::Word(lhs)) = self.peek().cloned() else {
            return Err(self.err_here(
                "expected `steps.ID.status`, `steps.ID.confidence` or `inputs.NAME`".into(),
            ));
        };
        let lhs_at = self.pos;
        let r = match (self.this, lhs.as_str()) {
            (Some(id), "status") => Ref::Step {
                id: id.to_owned(),
                field: Field::Status,
            },
            (Some(id), "confidence") => Ref::Step {
                id: id.to_owned(),
                field: Field::Confidence,
            },
            _ => parse_ref(&lhs).map_err(|m| self.err_here(m))?,
        };
        self.pos += 1;
        let Some(Tok::Op(op)) = self.peek().cloned() else {
            return Err(self.err_here(format!(
                "expected a comparison (`==`, `!=`, `>=`…) after `{lhs}`"
            )));
        };
        self.pos += 1;
        let value = match self.peek().cloned() {
            Some(Tok::Word(w) | Tok::Str(w)) => w,
            _ => {
                return Err(
                    self.err_here(format!("expected a value after `{lhs} {}`", op.as_str()))
                );
            }
        };
        let value_err = |p: &Self, m: String| SyntaxError {
            message: m,
            ..p.err_here(String::new())
        };
        let cond = match r {
            Ref::Step {
                id,
                field: Field::Status,
            } => {
                if !matches!(op, Op::Eq | Op::Ne) {
                    return Err(value_err(
                        self,
                        format!(
                            "a status compares only with `==` or `!=`, not `{}`",
                            op.as_str()
                        ),
                    ));
                }
                let value = match value.as_str() {
                    "complete" => Status::Complete,
                    "partial" => Status::Partial,
                    "blocked" => Status::Blocked,
                    "failed" => Status::Failed,
                    other => {
                        return Err(value_err(
                            self,
                            format!(
                                "unknown status `{other}`: expected one of `complete`, `partial`, `blocked`, `failed`"
                            ),
                        ));
                    }
                };
                Condition::Status {
                    step: id,
                    op,
                    value,
                }
            }
            Ref::Step {
                id,
                field: Field::Confidence,
            } => {
                let value = match value.as_str() {
                    "low" => Confidence::Low,
                    "medium" => Confidence::Medium,
                    "high" => Confidence::High,
                    other => {
                        return Err(value_err(
                            self,
                            format!(
                                "unknown confidence `{other}`: expected one of `low`, `medium`, `high`"
                            ),
                        ));
                    }
                };
                Condition::Confidence {
                    step: id,
                    op,
                    value,
                }
            }
            Ref::Input(name) => {
                if !matches!(op, Op::Eq | Op::Ne) {
                    return Err(value_err(
                        self,
                        format!(
                            "an input compares only with `==` or `!=`, not `{}`",
                            op.as_str()
                        ),
                    ));
                }
                Condition::Input { name, op, value }
            }
            other => {
                self.pos = lhs_at;
                return Err(self.err_here(format!(
                    "`{other}` cannot be used in a condition: use `steps.ID.status`, `steps.ID.confidence` or `inputs.NAME`"
                )));
            }
        };
        self.pos += 1;
        Ok(cond)
    }
}

impl Condition {
    /// Parses a condition.
    pub(crate) fn parse(src: &str) -> Result<Self, SyntaxError> {
        Self::parse_for(src, None)
    }

    /// Parses the `repeat.until` of step `this`: bare `status` and
    /// `confidence` read its own last handoff (`steps.THIS.…` too).
    pub(crate) fn parse_until(src: &str, this: &str) -> Result<Self, SyntaxError> {
        Self::parse_for(src, Some(this))
    }

    fn parse_for(src: &str, this: Option<&str>) -> Result<Self, SyntaxError> {
        let toks = tokenize(src)?;
        let mut p = Parser {
            src,
            toks,
            pos: 0,
            this,
        };
        if p.toks.is_empty() {
            return Err(p.err_here("the condition is empty".into()));
        }
        let c = p.or()?;
        if p.pos < p.toks.len() {
            return Err(p.err_here("expected `and`, `or` or the end of the condition".into()));
        }
        Ok(c)
    }

    /// Parses a condition written in code.
    pub fn new(src: &str) -> Result<Self, String> {
        Self::parse(src).map_err(|e| e.message)
    }

    /// Every reference, in order (steps read and inputs compared).
    pub(crate) fn refs(&self, out: &mut Vec<Ref>) {
        match self {
            Condition::Status { step, .. } => out.push(Ref::Step {
                id: step.clone(),
                field: Field::Status,
            }),
            Condition::Confidence { step, .. } => out.push(Ref::Step {
                id: step.clone(),
                field: Field::Confidence,
            }),
            Condition::Input { name, .. } => out.push(Ref::Input(name.clone())),
            Condition::Not(c) => c.refs(out),
            Condition::And(a, b) | Condition::Or(a, b) => {
                a.refs(out);
                b.refs(out);
            }
        }
    }

    /// The ids of the steps this condition reads, in order.
    pub fn step_refs(&self) -> Vec<String> {
        let mut refs = Vec::new();
        self.refs(&mut refs);
        refs.into_iter()
            .filter_map(|r| match r {
                Ref::Step { id, .. } => Some(id),
                _ => None,
            })
            .collect()
    }

    /// Evaluates the condition; a step it reads that has not finished, or
    /// an input without a value, is an error.
    pub fn eval(&self, ctx: &dyn RenderContext) -> Result<bool, RenderError> {
        let step = |id: &str| {
            ctx.step(id).ok_or_else(|| {
                RenderError::Missing(format!(
                    "condition reads step `{id}`, which has not finished"
                ))
            })
        };
        Ok(match self {
            Condition::Status {
                step: id,
                op,
                value,
            } => {
                let s = step(id)?.status;
                (s == *value) == (*op == Op::Eq)
            }
            Condition::Confidence {
                step: id,
                op,
                value,
            } => match step(id)?.confidence {
                Some(c) => op.holds(c.cmp(value)),
                None => *op == Op::Ne,
            },
            Condition::Input { name, op, value } => {
                let v = ctx.input(name).ok_or_else(|| {
                    RenderError::Missing(format!(
                        "condition reads input `{name}`, which has no value"
                    ))
                })?;
                (v == value) == (*op == Op::Eq)
            }
            Condition::Not(c) => !c.eval(ctx)?,
            Condition::And(a, b) => a.eval(ctx)? && b.eval(ctx)?,
            Condition::Or(a, b) => a.eval(ctx)? || b.eval(ctx)?,
        })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Status { step, op, value } => {
                write!(f, "steps.{step}.status {} {}", op.as_str(), value.as_str())
            }
            Condition::Confidence { step, op, value } => {
                write!(
                    f,
                    "steps.{step}.confidence {} {}",
                    op.as_str(),
                    value.as_str()
                )
            }
            Condition::Input { name, op, value } => {
                write!(f, "inputs.{name} {} {value:?}", op.as_str())
            }
            Condition::Not(c) => write!(f, "not ({c})"),
            Condition::And(a, b) => write!(f, "({a}) and ({b})"),
            Condition::Or(a, b) => write!(f, "({a}) or ({b})"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::template::{Context, StepOutput};

    fn ctx() -> Context {
        let mut c = Context::default();
        c.inputs.insert("mode".into(), "fast".into());
        c.steps.insert(
            "a".into(),
            StepOutput {
                status: Status::Complete,
                confidence: Some(Confidence::Medium),
                result: String::new(),
                notes: String::new(),
                artifacts: vec![],
                instances: Vec::new(),
            },
        );
        c
    }

    #[test]
    fn evaluates() {
        let cases = [
            ("steps.a.status == complete", true),
            ("steps.a.status != failed", true),
            ("steps.a.confidence >= medium", true),
            ("steps.a.confidence > medium", false),
            (
                "steps.a.confidence < high and inputs.mode == \"fast\"",
                true,
            ),
            (
                "not (steps.a.status == complete) or inputs.mode == 'slow'",
                false,
            ),
            ("inputs.mode != fast or steps.a.confidence == medium", true),
        ];
        for (src, want) in cases {
            let c = Condition::new(src).unwrap();
            assert_eq!(c.eval(&ctx()).unwrap(), want, "{src}");
        }
        assert_eq!(
            Condition::new(
                "steps.a.status == complete and steps.b.confidence >= low or inputs.x == y"
            )
            .unwrap()
            .step_refs(),
            ["a", "b"]
        );
        assert!(
            Condition::new("steps.zz.status == complete")
                .unwrap()
                .eval(&ctx())
                .is_err()
        );
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            ("", "empty"),
            ("steps.a.status = complete", "unknown operator"),
            ("steps.a.status == done", "unknown status `done`"),
            ("steps.a.status > complete", "only with"),
            ("steps.a.confidence >= huge", "unknown confidence"),
            ("steps.a.result == x", "cannot be used"),
            ("(steps.a.status == complete", "expected `)`"),
            ("steps.a.status == complete extra", "expected `and`"),
            ("steps.a.status ==", "expected a value"),
            ("inputs.x == \"open", "unterminated"),
        ];
        for (src, want) in cases {
            let e = Condition::new(src).unwrap_err();
            assert!(e.contains(want), "{src}: {e}");
        }
    }
}
