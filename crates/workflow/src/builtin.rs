//! The workflows shipped with orch (`workflows/*.yaml` at the repository
//! root, embedded in the binary).

const BUILTINS: &[(&str, &str)] = &[
    (
        "design-review",
        include_str!("../../../workflows/design-review.yaml"),
    ),
    (
        "design-review-until-confident",
        include_str!("../../../workflows/design-review-until-confident.yaml"),
    ),
    (
        "material-trade-study",
        include_str!("../../../workflows/material-trade-study.yaml"),
    ),
    (
        "quick-research",
        include_str!("../../../workflows/quick-research.yaml"),
    ),
    (
        "research-brief",
        include_str!("../../../workflows/research-brief.yaml"),
    ),
];

/// The YAML text of the shipped workflow `name`.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// The names of the shipped workflows, sorted.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(n, _)| *n)
}
