//! The default router: BM25 over each agent's capabilities, role, name and
//! description.
//!
//! Each agent is one document with four weighted fields (BM25F-style: a
//! term's frequency is the weighted sum of its frequencies in the fields,
//! the document length the weighted sum of the field lengths). Inverse
//! document frequencies come from every agent of the registry, so an
//! agent's score does not depend on which other agents the caller may use;
//! they are divided by the IDF of a word only one agent has, so scores
//! (and [`Bm25Params::min_score`]) are in "rare words" whatever the size of
//! the registry. A multi-word capability found as a phrase in the task
//! ("design of experiments") earns a bonus on top of its words.
//!
//! Reasons credit each matched word to one place (a capability, preferring
//! one matched as a phrase or holding more of the task's words; else the
//! role, the name, the description), group the words by place, and list
//! the places by their share of the score.
//!
//! Text goes through one [`tokens`] function for both sides: lowercase,
//! split on anything not alphanumeric, English stopwords and one-letter
//! words dropped, then [`stem`], a small suffix stripper that makes
//! "optimizations", "optimising" and "optimize" one term.

use std::collections::{BTreeMap, BTreeSet};

use crate::{AgentInfo, Ranked, Registry, Router};

/// How much each field of an agent counts (a term in a capability counts
/// `capabilities` times as much as once in the description).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FieldWeights {
    /// Capability tags.
    pub capabilities: f64,
    /// The role.
    pub role: f64,
    /// The description.
    pub description: f64,
    /// The display name and the id.
    pub name: f64,
}

impl Default for FieldWeights {
    fn default() -> Self {
        Self {
            capabilities: 3.0,
            role: 2.0,
            description: 1.0,
            name: 1.5,
        }
    }
}

/// Parameters of [`Bm25Router`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bm25Params {
    /// Term-frequency saturation (BM25 `k1`, default 1.2).
    pub k1: f64,
    /// Length normalisation (BM25 `b`, default 0.75).
    pub b: f64,
    /// Agents scoring at or below this are left out (default 0.5).
    ///
    /// Scores are in units of one *rare* word (IDFs are divided by the IDF
    /// of a word only one agent has), so the threshold means the same for
    /// a registry of 3 agents or 30: a rare word scores about 1.6 in a
    /// capability and 1.0 in a description; a word that half the agents
    /// share scores below 0.5 in a description, and that alone is not
    /// evidence.
    pub min_score: f64,
    /// Field weights.
    pub field_weights: FieldWeights,
    /// Bonus for a multi-word capability found as a phrase in the task, as
    /// a multiple of the summed IDF of its words (default 0.5).
    pub phrase_bonus: f64,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Self {
            k1: 1.2,
            b: 0.75,
            min_score: 0.5,
            field_weights: FieldWeights::default(),
            phrase_bonus: 0.5,
        }
    }
}

/// Most reasons given per agent.
const MAX_REASONS: usize = 4;

/// Longest task excerpt quoted in a reason, in characters.
const QUOTE_CHARS: usize = 40;

/// The default [`Router`]: BM25 over the registry's agents (see the module
/// documentation).
#[derive(Clone, Debug)]
pub struct Bm25Router {
    params: Bm25Params,
    docs: Vec<AgentDoc>,
    /// Agent id → index in `docs`.
    by_id: BTreeMap<String, usize>,
    /// Term → inverse document frequency over all agents, divided by that
    /// of a word only one agent has.
    idf: BTreeMap<String, f64>,
    /// Mean weighted document length.
    avg_len: f64,
}

/// One agent, indexed.
#[derive(Clone, Debug)]
struct AgentDoc {
    role: String,
    name: String,
    capabilities: Vec<Capability>,
    /// Term → where it occurs and its weighted frequency.
    terms: BTreeMap<String, TermInDoc>,
    /// Weighted length.
    len: f64,
}

#[derive(Clone, Debug)]
struct Capability {
    text: String,
    terms: Vec<String>,
}

#[derive(Clone, Debug, Default)]
struct TermInDoc {
    weighted_tf: f64,
    /// Indices of the capabilities that contain the term, in order.
    capabilities: Vec<usize>,
    in_role: bool,
    in_name: bool,
    in_description: bool,
}

impl Bm25Router {
    /// A router over `registry` with the default [`Bm25Params`].
    pub fn new(registry: &Registry) -> Self {
        Self::with_params(registry, Bm25Params::default())
    }

    /// A router over `registry` with explicit parameters.
    pub fn with_params(registry: &Registry, params: Bm25Params) -> Self {
        let docs: Vec<AgentDoc> = registry
            .agents()
            .iter()
            .map(|agent| AgentDoc::new(agent, &params.field_weights))
            .collect();
        let mut df: BTreeMap<&str, usize> = BTreeMap::new();
        for doc in &docs {
            for term in doc.terms.keys() {
                *df.entry(term.as_str()).or_default() += 1;
            }
        }
        let n = docs.len() as f64;
        let raw_idf = |df: f64| (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        // Positive for any n ≥ 1; a registry has at least one agent.
        let rare = raw_idf(1.0).max(f64::MIN_POSITIVE);
        let idf = df
            .into_iter()
            .map(|(term, df)| (term.to_owned(), raw_idf(df as f64) / rare))
            .collect();
        let avg_len = if docs.is_empty() {
            1.0
        } else {
            (docs.iter().map(|d| d.len).sum::<f64>() / n).max(f64::MIN_POSITIVE)
        };
        let by_id = registry
            .agents()
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect();
        Self {
            params,
            docs,
            by_id,
            idf,
            avg_len,
        }
    }

    /// Scores one agent for the query; `None` when nothing matched.
    fn score(&self, doc: &AgentDoc, query: &Query<'_>) -> Option<(f64, Vec<String>)> {
        let Bm25Params { k1, b, .. } = self.params;
        let norm = k1 * (1.0 - b + b * doc.len / self.avg_len);
        // (term index in the query, contribution)
        let mut matched: Vec<(usize, f64)> = Vec::new();
        for (q, term) in query.terms.iter().enumerate() {
            let Some(hit) = doc.terms.get(&term.stem) else {
                continue;
            };
            let idf = self.idf.get(&term.stem).copied().unwrap_or_default();
            let tf = hit.weighted_tf;
            matched.push((q, idf * tf * (k1 + 1.0) / (tf + norm)));
        }
        if matched.is_empty() {
            return None;
        }
        // Capabilities found as phrases in the task, with their bonus and
        // the task span that matched.
        let mut phrases: BTreeMap<usize, (f64, &str)> = BTreeMap::new();
        for (c, capability) in doc.capabilities.iter().enumerate() {
            if capability.terms.len() < 2 {
                continue;
            }
            if let Some(span) = query.find_phrase(&capability.terms) {
                let idf_sum: f64 = capability
                    .terms
                    .iter()
                    .map(|t| self.idf.get(t).copied().unwrap_or_default())
                    .sum();
                phrases.insert(c, (self.params.phrase_bonus * idf_sum, span));
            }
        }
        let score = matched.iter().map(|(_, s)| s).sum::<f64>()
            + phrases.values().map(|(bonus, _)| bonus).sum::<f64>();
        Some((score, self.reasons(doc, query, &matched, &phrases)))
    }

    /// Groups the matched terms by what they matched, most important first.
    fn reasons(
        &self,
        doc: &AgentDoc,
        query: &Query<'_>,
        matched: &[(usize, f64)],
        phrases: &BTreeMap<usize, (f64, &str)>,
    ) -> Vec<String> {
        let matched_stems: Vec<&str> = matched
            .iter()
            .map(|(q, _)| query.terms[*q].stem.as_str())
            .collect();
        let mut groups: BTreeMap<Target, Group> = BTreeMap::new();
        for &(q, contribution) in matched {
            let term = &query.terms[q];
            let Some(hit) = doc.terms.get(&term.stem) else {
                continue;
            };
            let target = if let Some(c) = best_capability(doc, hit, &matched_stems, phrases) {
                Target::Capability(c)
            } else if hit.in_role {
                Target::Role
            } else if hit.in_name {
                Target::Name
            } else {
                Target::Description
            };
            let group = groups.entry(target).or_insert(Group {
                contribution: 0.0,
                terms: Vec::new(),
            });
            group.contribution += contribution;
            group.terms.push(q);
        }
        for (c, (bonus, _)) in phrases {
            if let Some(group) = groups.get_mut(&Target::Capability(*c)) {
                group.contribution += bonus;
            }
        }
        let mut ordered: Vec<(Target, Group)> = groups.into_iter().collect();
        // Terms are pushed in query order, so `terms[0]` is the earliest.
        ordered.sort_by(|(_, a), (_, b)| {
            b.contribution
                .total_cmp(&a.contribution)
                .then(a.terms.first().cmp(&b.terms.first()))
        });
        ordered
            .into_iter()
            .take(MAX_REASONS)
            .map(|(target, Group { terms: qs, .. })| {
                let words = match target {
                    Target::Capability(c) if phrases.contains_key(&c) => {
                        quote(phrases.get(&c).map_or("", |(_, span)| span))
                    }
                    _ => list(qs.iter().map(|q| quote(query.terms[*q].surface))),
                };
                match target {
                    Target::Capability(c) => format!(
                        "{words} matched capability {}",
                        quote(&doc.capabilities[c].text)
                    ),
                    Target::Role => format!("{words} matched role {}", quote(&doc.role)),
                    Target::Name => format!("{words} matched name {}", quote(&doc.name)),
                    Target::Description => format!("{words} matched description"),
                }
            })
            .collect()
    }
}

impl Router for Bm25Router {
    fn rank(&self, task: &str, candidates: &[&str]) -> Vec<Ranked> {
        let query = Query::new(task);
        if query.terms.is_empty() {
            return Vec::new();
        }
        let mut seen = vec![false; self.docs.len()];
        let mut ranked: Vec<(usize, Ranked)> = Vec::new();
        for (order, candidate) in candidates.iter().enumerate() {
            let Some(&i) = self.by_id.get(*candidate) else {
                continue;
            };
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            let Some((score, reasons)) = self.score(&self.docs[i], &query) else {
                continue;
            };
            if score > self.params.min_score {
                ranked.push((
                    order,
                    Ranked {
                        agent: (*candidate).to_owned(),
                        score,
                        reasons,
                    },
                ));
            }
        }
        ranked.sort_by(|(oa, a), (ob, b)| b.score.total_cmp(&a.score).then(oa.cmp(ob)));
        ranked.into_iter().map(|(_, r)| r).collect()
    }
}

/// Matched words credited to one target.
struct Group {
    /// Their summed score (plus the phrase bonus).
    contribution: f64,
    /// Their indices in the query's terms, ascending.
    terms: Vec<usize>,
}

/// What a group of matched words is credited to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Capability(usize),
    Role,
    Name,
    Description,
}

/// The capability to credit a term to: one matched as a phrase, else the
/// one containing the most matched words, else the first.
fn best_capability(
    doc: &AgentDoc,
    hit: &TermInDoc,
    matched_stems: &[&str],
    phrases: &BTreeMap<usize, (f64, &str)>,
) -> Option<usize> {
    let covered = |c: usize| {
        doc.capabilities[c]
            .terms
            .iter()
            .filter(|t| matched_stems.contains(&t.as_str()))
            .count()
    };
    hit.capabilities
        .iter()
        .copied()
        .enumerate()
        .max_by(|(ia, a), (ib, b)| {
            phrases
                .contains_key(a)
                .cmp(&phrases.contains_key(b))
                .then(covered(*a).cmp(&covered(*b)))
                .then(ib.cmp(ia))
        })
        .map(|(_, c)| c)
}

impl AgentDoc {
    fn new(agent: &AgentInfo, weights: &FieldWeights) -> Self {
        let mut terms: BTreeMap<String, TermInDoc> = BTreeMap::new();
        let mut len = 0.0;
        let capabilities: Vec<Capability> = agent
            .capabilities
            .iter()
            .map(|text| Capability {
                text: text.clone(),
                terms: tokens(text).into_iter().map(|t| t.stem).collect(),
            })
            .collect();
        for (c, capability) in capabilities.iter().enumerate() {
            for term in &capability.terms {
                let entry = terms.entry(term.clone()).or_default();
                entry.weighted_tf += weights.capabilities;
                if entry.capabilities.last() != Some(&c) {
                    entry.capabilities.push(c);
                }
                len += weights.capabilities;
            }
        }
        for token in tokens(&agent.role) {
            let entry = terms.entry(token.stem).or_default();
            entry.weighted_tf += weights.role;
            entry.in_role = true;
            len += weights.role;
        }
        // The name and the id name the same thing: each word counts once.
        let mut name_terms: Vec<String> = tokens(&agent.name).into_iter().map(|t| t.stem).collect();
        for token in tokens(&agent.id) {
            if !name_terms.contains(&token.stem) {
                name_terms.push(token.stem);
            }
        }
        for term in name_terms {
            let entry = terms.entry(term).or_default();
            entry.weighted_tf += weights.name;
            entry.in_name = true;
            len += weights.name;
        }
        for token in tokens(&agent.description) {
            let entry = terms.entry(token.stem).or_default();
            entry.weighted_tf += weights.description;
            entry.in_description = true;
            len += weights.description;
        }
        // Terms in no field with positive weight do not exist for scoring.
        terms.retain(|_, t| t.weighted_tf > 0.0);
        Self {
            role: agent.role.clone(),
            name: agent.name.clone(),
            capabilities,
            terms,
            len,
        }
    }
}

/// The task, tokenised.
struct Query<'a> {
    /// Every token in order (for phrases).
    sequence: Vec<Token<'a>>,
    /// Distinct terms in order of first appearance.
    terms: Vec<Token<'a>>,
}

impl<'a> Query<'a> {
    fn new(task: &'a str) -> Self {
        let sequence = tokens(task);
        let mut seen = BTreeSet::new();
        let terms = sequence
            .iter()
            .filter(|token| seen.insert(token.stem.as_str()))
            .cloned()
            .collect();
        Self { sequence, terms }
    }

    /// The task text spanning the first occurrence of `phrase` as
    /// consecutive terms.
    fn find_phrase(&self, phrase: &[String]) -> Option<&'a str> {
        self.sequence
            .windows(phrase.len())
            .find(|window| window.iter().zip(phrase).all(|(t, p)| t.stem == *p))
            .and_then(|window| {
                let (first, last) = (window.first()?, window.last()?);
                first.text.get(first.start..last.start + last.surface.len())
            })
    }
}

/// One word of a text: its stem and where it was.
#[derive(Clone, Debug)]
struct Token<'a> {
    stem: String,
    /// The word as written.
    surface: &'a str,
    /// Byte offset of the word in `text`.
    start: usize,
    /// The whole text.
    text: &'a str,
}

/// English words that carry no routing signal.
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "done",
    "down",
    "during",
    "each",
    "either",
    "etc",
    "few",
    "find",
    "for",
    "from",
    "further",
    "get",
    "give",
    "had",
    "has",
    "have",
    "having",
    "help",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "kindly",
    "let",
    "like",
    "look",
    "make",
    "may",
    "me",
    "might",
    "more",
    "most",
    "must",
    "my",
    "myself",
    "need",
    "needs",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "please",
    "same",
    "shall",
    "she",
    "should",
    "so",
    "some",
    "such",
    "tell",
    "than",
    "thanks",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "us",
    "very",
    "via",
    "want",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "whether",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// Lowercase words of `text` without stopwords and one-letter words,
/// stemmed, with their positions.
fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                let surface = &text[s..i];
                let lower = surface.to_lowercase();
                if lower.chars().count() > 1 && !STOPWORDS.contains(&lower.as_str()) {
                    out.push(Token {
                        stem: stem(&lower),
                        surface,
                        start: s,
                        text,
                    });
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Suffix rules: (suffix, replacement, shortest stem left). The first rule
/// that applies wins; stripping repeats (at most three times), so
/// "vibrational" → "vibration" → "vibr".
const SUFFIXES: &[(&str, &str, usize)] = &[
    ("ization", "", 3),
    ("isation", "", 3),
    ("ibility", "ible", 2),
    ("ability", "able", 2),
    ("ation", "", 3),
    ("izing", "", 4),
    ("ising", "", 4),
    ("ating", "", 3),
    ("izer", "", 4),
    ("iser", "", 4),
    ("ized", "", 4),
    ("ised", "", 4),
    ("ated", "", 3),
    ("ment", "", 5),
    ("ize", "", 4),
    ("ise", "", 4),
    ("ate", "", 3),
    ("ing", "", 3),
    ("sis", "s", 3),
    ("ed", "", 3),
    ("al", "", 4),
    ("ly", "", 4),
];

/// A light English stemmer (a few Porter-style rules, not Porter): plural
/// `s`, `-ing`/`-ed`, `-ise`/`-ize`/`-ation` and friends, British and
/// American spellings together, then a final `e`/`y` dropped and a doubled
/// final consonant undoubled. Enough that "optimizations", "optimising",
/// "optimize", "optimal" and "optimizer" meet, and "studies" meets "study".
/// Words with non-ASCII letters and words of three letters or fewer are
/// left alone.
fn stem(word: &str) -> String {
    if word.len() <= 3 || !word.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return word.to_owned();
    }
    let mut w = word.replace("yz", "ys");
    // Plurals.
    if let Some(stem) = w.strip_suffix("ies").filter(|s| s.len() >= 2) {
        w = format!("{stem}y");
    } else if let Some(stem) = w.strip_suffix("sses") {
        w = format!("{stem}ss");
    } else if w.ends_with('s') && !(w.ends_with("ss") || w.ends_with("us") || w.ends_with("is")) {
        w.pop();
    }
    for _ in 0..3 {
        let Some(next) = SUFFIXES.iter().find_map(|(suffix, replacement, min)| {
            let stem = w.strip_suffix(suffix)?;
            let vowel = stem.bytes().any(|b| b"aeiouy".contains(&b));
            (stem.len() >= *min && vowel).then(|| format!("{stem}{replacement}"))
        }) else {
            break;
        };
        w = next;
    }
    if w.len() >= 4 && w.ends_with('e') {
        w.pop();
    }
    if w.len() >= 5 && w.ends_with('y') {
        w.pop();
    }
    let bytes = w.as_bytes();
    if let [.., a, b] = bytes
        && a == b
        && !b"aeiou".contains(b)
        && b.is_ascii_alphabetic()
    {
        w.pop();
    }
    w
}

/// `"text"`, clipped and with quotes and control characters escaped.
fn quote(text: &str) -> String {
    let clipped = match text.char_indices().nth(QUOTE_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    };
    format!("\"{}\"", clipped.escape_debug())
}

/// `a`, `a and b`, `a, b and c`.
fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stems(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| stem(w)).collect()
    }

    #[track_caller]
    fn same_stem(words: &[&str]) {
        let all = stems(words);
        assert!(
            all.iter().all(|s| *s == all[0]),
            "{words:?} stem to {all:?}"
        );
    }

    #[test]
    fn stemming_joins_word_families() {
        same_stem(&[
            "optimization",
            "optimizations",
            "optimisation",
            "optimising",
            "optimizing",
            "optimize",
            "optimise",
            "optimised",
            "optimized",
            "optimizer",
            "optimiser",
            "optimal",
        ]);
        same_stem(&["study", "studies", "studying"]);
        same_stem(&["mesh", "meshes", "meshing", "meshed"]);
        same_stem(&["schedule", "schedules", "scheduling", "scheduled"]);
        same_stem(&[
            "prioritise",
            "prioritize",
            "prioritisation",
            "priority",
            "priorities",
        ]);
        same_stem(&["audit", "audits", "auditing", "audited"]);
        same_stem(&["margin", "margins"]);
        same_stem(&["structure", "structures", "structural"]);
        same_stem(&[
            "analyse",
            "analyze",
            "analysis",
            "analyses",
            "analysing",
            "analyzed",
        ]);
        same_stem(&["coordinate", "coordination", "coordinating", "coordinated"]);
        same_stem(&["requirement", "requirements", "require", "required"]);
        same_stem(&["run", "runs", "running"]);
        same_stem(&["plan", "planning", "planned"]);
        same_stem(&["model", "modelling", "modeling", "models"]);
        same_stem(&["summary", "summaries", "summarise", "summarize"]);
        same_stem(&["traceability", "traceable"]);
        same_stem(&["minimise", "minimisation", "minimize"]);
        same_stem(&["week", "weekly", "weeks"]);
        same_stem(&["stress", "stresses"]);
        same_stem(&["calculate", "calculation", "calculations"]);
    }

    #[test]
    fn stemming_keeps_short_and_unrelated_words_apart() {
        assert_eq!(stem("cad"), "cad");
        assert_eq!(stem("fea"), "fea");
        assert_eq!(stem("string"), "string");
        assert_eq!(stem("process"), stem("processing"));
        assert_ne!(stem("modal"), stem("model"));
        assert_ne!(stem("thermal"), stem("thermos"));
        assert_eq!(stem("zérodur"), "zérodur");
    }

    #[test]
    fn tokens_drop_stopwords_and_keep_positions() {
        // "Find" is a generic request verb, so a stopword like "the".
        let text = "Find the CTE of Zerodur, between 0 and 50 °C!";
        let found: Vec<(String, &str)> = tokens(text)
            .into_iter()
            .map(|t| (t.stem, &text[t.start..t.start + t.surface.len()]))
            .collect();
        assert_eq!(
            found,
            [
                ("cte".to_owned(), "CTE"),
                ("zerodur".to_owned(), "Zerodur"),
                ("50".to_owned(), "50"),
            ]
        );
    }

    #[test]
    fn phrases_are_found_across_punctuation() {
        let query = Query::new("Set up a design-of-experiments study");
        let phrase: Vec<String> = tokens("design of experiments")
            .into_iter()
            .map(|t| t.stem)
            .collect();
        assert_eq!(query.find_phrase(&phrase), Some("design-of-experiments"));
    }

    #[test]
    fn lists_read_like_english() {
        let l = |v: &[&str]| list(v.iter().map(|s| (*s).to_owned()));
        assert_eq!(l(&[]), "");
        assert_eq!(l(&["a"]), "a");
        assert_eq!(l(&["a", "b"]), "a and b");
        assert_eq!(l(&["a", "b", "c"]), "a, b and c");
    }
}
