//! The pre-pass over a workflow file, before any deserialization: size and
//! nesting caps, no anchors or aliases, one document, and an index from
//! each node's path (`steps[2].needs[0]`) to where it is in the file.

use std::collections::BTreeMap;

use saphyr_parser::{Event, Parser};

use crate::error::{ErrorKind, WorkflowError};

/// Largest workflow file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Deepest nesting of mappings and sequences accepted.
pub const MAX_DEPTH: usize = 64;

/// Where a node starts (line and column from 1) and where its text starts,
/// in characters from the start of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) line: usize,
    pub(crate) column: usize,
    start_char: usize,
}

/// Path → position of every node of one workflow file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SourceMap {
    origin: String,
    text: String,
    nodes: BTreeMap<String, Node>,
    /// Where the file ends ([`end_of`]).
    end: (usize, usize),
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl SourceMap {
    /// Runs the pre-pass over `text`.
    pub(crate) fn scan(text: &str, origin: &str) -> Result<Self, WorkflowError> {
        let fail = |kind, line, column, path: &str, message: String| WorkflowError {
            kind,
            origin: origin.to_owned(),
            line,
            column,
            path: path.to_owned(),
            message,
        };
        check_file_size(text.len() as u64, origin)?;
        let end = end_of(text);
        let mut map = Self {
            origin: origin.to_owned(),
            text: text.to_owned(),
            nodes: BTreeMap::new(),
            end,
        };
        let mut stack: Vec<Frame> = Vec::new();
        let mut documents = 0usize;
        let mut root_seen = false;
        for item in Parser::new_from_str(text) {
            let (event, span) = item.map_err(|e| {
                let (line, column) = clamp((e.marker().line(), e.marker().col() + 1), end);
                if e.info().contains("tab")
                    && let Some((l, c)) = indenting_tab(text, line)
                {
                    return fail(
                        ErrorKind::Syntax,
                        l,
                        c,
                        "",
                        "invalid YAML: a tab is used for indentation; YAML indents with spaces"
                            .into(),
                    );
                }
                fail(
                    ErrorKind::Syntax,
                    line,
                    column,
                    "",
                    format!("invalid YAML: {}", e.info()),
                )
            })?;
            let (line, column) = clamp((span.start.line(), span.start.col() + 1), end);
            if let Event::Scalar(_, _, _, Some(tag))
            | Event::SequenceStart(_, Some(tag))
            | Event::MappingStart(_, Some(tag)) = &event
            {
                return Err(fail(
                    ErrorKind::Syntax,
                    line,
                    column,
                    "",
                    format!(
                        "YAML tags are not allowed in workflow files: `{}`",
                        tag_text(tag)
                    ),
                ));
            }
            let anchor = match &event {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(fail(
                            ErrorKind::Syntax,
                            line,
                            column,
                            "",
                            "a workflow file holds one YAML document".into(),
                        ));
                    }
                    continue;
                }
                Event::Alias(_) => {
                    return Err(fail(
                        ErrorKind::Limit,
                        line,
                        column,
                        "",
                        "anchors and aliases are not allowed in workflow files".into(),
                    ));
                }
                Event::Scalar(_, _, anchor, _)
                | Event::SequenceStart(anchor, _)
                | Event::MappingStart(anchor, _) => *anchor,
                Event::SequenceEnd | Event::MappingEnd => {
                    stack.pop();
                    continue;
                }
                _ => continue,
            };
            if anchor > 0 {
                return Err(fail(
                    ErrorKind::Limit,
                    line,
                    column,
                    "",
                    "anchors and aliases are not allowed in workflow files".into(),
                ));
            }
            // Where this node sits: a key, or a value at a path.
            let path = match stack.last_mut() {
                None => {
                    root_seen = true;
                    String::new()
                }
                Some(Frame::Seq { path, next }) => {
                    let p = format!("{path}[{next}]");
                    *next += 1;
                    p
                }
                Some(Frame::Map { path, key }) => match key.take() {
                    Some(k) => child(path, &k),
                    None => match &event {
                        Event::Scalar(value, ..) => {
                            *key = Some(value.to_string());
                            continue;
                        }
                        _ => {
                            return Err(fail(
                                ErrorKind::Schema,
                                line,
                                column,
                                path,
                                "mapping keys must be plain strings".into(),
                            ));
                        }
                    },
                },
            };
            map.nodes.insert(
                path.clone(),
                Node {
                    line,
                    column,
                    start_char: span.start.index(),
                },
            );
            match event {
                Event::SequenceStart(..) => stack.push(Frame::Seq { path, next: 0 }),
                Event::MappingStart(..) => stack.push(Frame::Map { path, key: None }),
                _ => {}
            }
            if stack.len() > MAX_DEPTH {
                return Err(fail(
                    ErrorKind::Limit,
                    line,
                    column,
                    "",
                    format!("the file nests deeper than {MAX_DEPTH} levels"),
                ));
            }
        }
        if !root_seen {
            return Err(fail(
                ErrorKind::Schema,
                1,
                1,
                "",
                "the file is empty: a workflow needs at least `name` and `steps`".into(),
            ));
        }
        Ok(map)
    }

    /// `(line, column)`, or the end of the file if that is past it.
    pub(crate) fn within(&self, at: (usize, usize)) -> (usize, usize) {
        clamp(at, self.end)
    }

    /// Whether a node sits exactly at `path`.
    pub(crate) fn has(&self, path: &str) -> bool {
        self.nodes.contains_key(path)
    }

    /// Where the file came from.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// The node at `path`, or the nearest enclosing node that exists.
    pub(crate) fn node(&self, path: &str) -> Node {
        let mut p = path;
        loop {
            if let Some(n) = self.nodes.get(p) {
                return *n;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None if !p.is_empty() => p = "",
                None => {
                    return Node {
                        line: 1,
                        column: 1,
                        start_char: 0,
                    };
                }
            }
        }
    }

    /// An error at the node `path`.
    pub(crate) fn error(
        &self,
        kind: ErrorKind,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> WorkflowError {
        let path = path.into();
        let node = self.node(&path);
        self.error_at(kind, path, (node.line, node.column), message)
    }

    /// An error at an explicit position.
    pub(crate) fn error_at(
        &self,
        kind: ErrorKind,
        path: impl Into<String>,
        (line, column): (usize, usize),
        message: impl Into<String>,
    ) -> WorkflowError {
        WorkflowError {
            kind,
            origin: self.origin.clone(),
            line,
            column,
            path: path.into(),
            message: message.into(),
        }
    }

    /// Where `value[offset..offset + len]` (a piece of the string scalar at
    /// `path`) is in the file: found by searching the source text from the
    /// scalar's start, which works for plain, quoted and block scalars
    /// unless the piece itself contains escapes; else the scalar's start.
    pub(crate) fn locate(
        &self,
        path: &str,
        value: &str,
        offset: usize,
        len: usize,
    ) -> (usize, usize) {
        let node = self.node(path);
        let fallback = (node.line, node.column);
        let Some(start) = self
            .text
            .char_indices()
            .nth(node.start_char)
            .map(|(b, _)| b)
        else {
            return fallback;
        };
        let (piece, extra) = if len == 0 {
            (value, value.len())
        } else {
            (value.get(offset..offset + len).unwrap_or(""), 0)
        };
        if piece.is_empty() {
            return fallback;
        }
        let nth = if len == 0 {
            0
        } else {
            value
                .get(..offset)
                .map_or(0, |before| before.matches(piece).count())
        };
        let rest = &self.text[start..];
        let Some((at, _)) = rest.match_indices(piece).nth(nth) else {
            return fallback;
        };
        let target = start + at + extra;
        let before = &self.text[..target];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, self.text[line_start..target].chars().count() + 1)
    }
}

/// Where the file ends: the line after its last line break (YAML counts
/// `\n`, `\r\n` and a lone `\r`) and the column after its last character.
fn end_of(text: &str) -> (usize, usize) {
    let mut last_line = 1;
    let mut last_start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
            last_line += 1;
            last_start = i + 1;
        }
    }
    (last_line, text[last_start..].chars().count() + 1)
}

/// `(line, column)`, or `end` if that is past it: the scanner places an
/// error at the end of input, and an empty node there, on the line after
/// the last (found by the property tests).
fn clamp((line, column): (usize, usize), end: (usize, usize)) -> (usize, usize) {
    if line > end.0 {
        end
    } else {
        (line.max(1), column.max(1))
    }
}

/// Refuses a workflow file of `size` bytes if it is over
/// [`MAX_FILE_BYTES`]: the error names the real size (a caller that reads
/// a file only up to a cap passes the file's length, not what it read).
pub fn check_file_size(size: u64, origin: &str) -> Result<(), WorkflowError> {
    if size <= MAX_FILE_BYTES as u64 {
        return Ok(());
    }
    Err(WorkflowError {
        kind: ErrorKind::Limit,
        origin: origin.to_owned(),
        line: 1,
        column: 1,
        path: String::new(),
        message: format!(
            "the file is {size} bytes; workflow files are limited to {MAX_FILE_BYTES} bytes (1 MiB)"
        ),
    })
}

/// A tag as written (`!!binary`, `!ruby/object`), at most 60 characters.
fn tag_text(tag: &saphyr_parser::Tag) -> String {
    let text = if tag.is_yaml_core_schema() {
        format!("!!{}", tag.suffix)
    } else if tag.handle.starts_with('!') {
        format!("{}{}", tag.handle, tag.suffix)
    } else {
        format!("!<{}{}>", tag.handle, tag.suffix)
    };
    // YAML tags are URI characters (`%`-escaped otherwise): nothing to
    // neutralise, only to shorten.
    let mut shown: String = text.chars().take(60).collect();
    if text.chars().count() > 60 {
        shown.push('…');
    }
    shown
}

/// The first tab in the leading whitespace of a line, from line `from`
/// on: where a "found a tab" scanner error really is.
fn indenting_tab(text: &str, from: usize) -> Option<(usize, usize)> {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find_map(|(i, line)| {
            let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
            line[..indent].find('\t').map(|c| (i + 1, c + 1))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_and_positions() {
        let text = "name: x\nsteps:\n  - id: a\n    needs: [b, c]\n";
        let map = SourceMap::scan(text, "f.yaml").unwrap();
        let n = map.node("steps[0].needs[1]");
        assert_eq!((n.line, n.column), (4, 16));
        let n = map.node("steps[0].id");
        assert_eq!((n.line, n.column), (3, 9));
        let n = map.node("steps[0].nothing");
        assert_eq!((n.line, n.column), (3, 5));
    }

    #[test]
    fn locate_in_scalars() {
        let text = "a: \"x {{ y }}\"\nb: |\n  one\n  two {{ y }}\n";
        let map = SourceMap::scan(text, "f").unwrap();
        assert_eq!(map.locate("a", "x {{ y }}", 2, 7), (1, 7));
        assert_eq!(map.locate("b", "one\ntwo {{ y }}\n", 8, 7), (4, 7));
    }
}
