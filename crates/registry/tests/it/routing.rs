//! Routing with the default registry and the default router.
//!
//! The cases are data: [`TOP_AGENT`] (task → the agent that must rank
//! first when every agent is a candidate) and [`NOTHING_MATCHES`]. Each
//! goes through [`check`], the only code here that calls the router for a
//! table case.

use orch_acl::Policy;
use orch_registry::{Bm25Params, Bm25Router, Ranked, Registry, Router};

/// Task text → expected best agent, all eight agents as candidates.
const TOP_AGENT: &[(&str, &str)] = &[
    // webster: literature and materials data
    ("Find the CTE of Zerodur between 0 and 50 °C", "webster"),
    (
        "Look up the Young's modulus and density of Invar 36",
        "webster",
    ),
    (
        "Search the literature for papers on carbon-fibre mirror substrates",
        "webster",
    ),
    (
        "What is the thermal conductivity of aluminium 6061?",
        "webster",
    ),
    (
        "Get datasheets and supplier information for silicon carbide",
        "webster",
    ),
    // tech-lead: technical review, margins
    ("Check the thermal margins of the mirror mount", "tech-lead"),
    (
        "Review the structural margins of the bracket against the requirements",
        "tech-lead",
    ),
    (
        "Give a technical review of the proposed lens barrel design",
        "tech-lead",
    ),
    (
        "Is the error budget of the telescope still within the requirements?",
        "tech-lead",
    ),
    // nx-expert: Siemens NX CAD/FEA
    (
        "Mesh the bracket and run a modal analysis in NX",
        "nx-expert",
    ),
    (
        "Build the CAD model of the mounting flange in Siemens NX",
        "nx-expert",
    ),
    (
        "Run a buckling analysis in NX Nastran on the support struts",
        "nx-expert",
    ),
    (
        "Post-process the FEA stresses and plot the displacements",
        "nx-expert",
    ),
    // study-builder: setting up optimization studies
    (
        "Set up a design-of-experiments study for the truss",
        "study-builder",
    ),
    (
        "Define the design variables, bounds and constraints of the mirror thickness study",
        "study-builder",
    ),
    (
        "Prepare a Latin hypercube sampling plan for the parametric study",
        "study-builder",
    ),
    // optimizer: running optimizations and trade-offs
    ("Run the optimization of the mirror thickness", "optimizer"),
    (
        "Explore the trade-offs between mass and stiffness and give me the Pareto front",
        "optimizer",
    ),
    ("Optimise the rib layout to minimise mass", "optimizer"),
    (
        "Launch a multi-objective optimisation and monitor its convergence",
        "optimizer",
    ),
    // auditor: QA and audit of results
    ("Audit the results of last week's FEA", "auditor"),
    (
        "Do a QA pass on the deliverables before they go out",
        "auditor",
    ),
    (
        "Verify that the calculations are traceable and reproducible",
        "auditor",
    ),
    (
        "Check compliance with our quality assurance procedures",
        "auditor",
    ),
    // secretary: notes, reports, scheduling
    ("Write the minutes of today's meeting", "secretary"),
    (
        "Draft the weekly status update email for the team",
        "secretary",
    ),
    (
        "Schedule a call with the supplier next Tuesday and send the agenda",
        "secretary",
    ),
    ("Summarise this thread into a short report", "secretary"),
    // manager: coordination
    (
        "Coordinate the team and prioritise next week's work",
        "manager",
    ),
    (
        "Decide who works on what and assign the tasks for the sprint",
        "manager",
    ),
    (
        "Track project progress and flag the main risks to the milestones",
        "manager",
    ),
    (
        "Which of these should we do first? Please prioritize the backlog",
        "manager",
    ),
];

/// Tasks no agent of the default registry has evidence for.
const NOTHING_MATCHES: &[&str] = &[
    "bake a chocolate cake",
    "What's the weather like in Paris tomorrow?",
    "",
    "   \n\t ",
    "the and of to with",
    "!!! ??? ...",
    "Zzxqv blorf",
];

fn all_candidates(registry: &Registry) -> Vec<&str> {
    registry.ids()
}

/// Ranks `task` over every agent and checks the best one.
#[track_caller]
fn check(router: &dyn Router, candidates: &[&str], task: &str, expected: Option<&str>) {
    let ranked = router.rank(task, candidates);
    let top = ranked.first().map(|r| r.agent.as_str());
    assert_eq!(
        top,
        expected,
        "task {task:?}\nranking:\n{}",
        describe(&ranked)
    );
}

fn describe(ranked: &[Ranked]) -> String {
    ranked
        .iter()
        .map(|r| {
            format!(
                "  {:<14} {:6.3}  {}",
                r.agent,
                r.score,
                r.reasons.join("; ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn table_of_tasks_routes_to_the_expected_agent() {
    let registry = Registry::embedded_default();
    let router = Bm25Router::new(&registry);
    let candidates = all_candidates(&registry);
    assert!(TOP_AGENT.len() >= 24);
    let mut failures = Vec::new();
    for (task, expected) in TOP_AGENT {
        let ranked = router.rank(task, &candidates);
        if ranked.first().map(|r| r.agent.as_str()) != Some(*expected) {
            failures.push(format!(
                "{task:?}: expected {expected}\n{}",
                describe(&ranked)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} tasks misrouted:\n{}",
        failures.len(),
        TOP_AGENT.len(),
        failures.join("\n")
    );
    // Every agent is the answer to some task.
    for id in registry.ids() {
        assert!(
            TOP_AGENT.iter().any(|(_, agent)| *agent == id),
            "no task routes to {id}"
        );
    }
}

#[test]
fn nothing_matches_gives_an_empty_ranking() {
    let registry = Registry::embedded_default();
    let router = Bm25Router::new(&registry);
    let candidates = all_candidates(&registry);
    for task in NOTHING_MATCHES {
        check(&router, &candidates, task, None);
    }
}

#[test]
fn rankings_are_sorted_well_formed_and_deterministic() {
    let registry = Registry::embedded_default();
    let router = Bm25Router::new(&registry);
    let candidates = all_candidates(&registry);
    for (task, _) in TOP_AGENT {
        let ranked = router.rank(task, &candidates);
        assert_eq!(ranked, router.rank(task, &candidates), "{task}");
        assert_eq!(ranked, Bm25Router::new(&registry).rank(task, &candidates));
        for pair in ranked.windows(2) {
            assert!(pair[0].score >= pair[1].score, "{task}: not sorted");
        }
        let mut agents: Vec<&str> = ranked.iter().map(|r| r.agent.as_str()).collect();
        agents.sort_unstable();
        agents.dedup();
        assert_eq!(agents.len(), ranked.len(), "{task}: an agent twice");
        for r in &ranked {
            assert!(r.score.is_finite() && r.score > 0.0, "{task}: {r:?}");
            assert!(
                (1..=4).contains(&r.reasons.len()),
                "{task}: {} reasons",
                r.reasons.len()
            );
        }
    }
}

#[test]
fn only_candidates_are_ranked() {
    let registry = Registry::embedded_default();
    let router = Bm25Router::new(&registry);
    let task = "Run the optimization of the mirror thickness";
    // Unknown ids and repeats are ignored.
    let ranked = router.rank(task, &["study-builder", "nobody", "study-builder"]);
    let agents: Vec<&str> = ranked.iter().map(|r| r.agent.as_str()).collect();
    assert_eq!(agents, ["study-builder"]);
    assert!(router.rank(task, &[]).is_empty());
    // Scores do not depend on who else is a candidate (IDF is over the
    // whole registry).
    let alone = router.rank(task, &["optimizer"]);
    let all = router.rank(task, &registry.ids());
    let in_all = all.iter().find(|r| r.agent == "optimizer").unwrap();
    assert_eq!(alone[0], *in_all);
}

#[test]
fn ties_keep_the_candidate_order() {
    // Two agents with identical documents score the same.
    let json = br#"{"agents": [
        {"id": "b", "name": "Twin", "role": "thermal analyst", "description": "", "transport": "sim"},
        {"id": "a", "name": "Twin", "role": "thermal analyst", "description": "", "transport": "sim"}
    ]}"#;
    let registry = Registry::from_json(json, "twins.json").unwrap();
    // A word every agent has carries little weight: keep all evidence.
    let params = Bm25Params {
        min_score: 0.0,
        ..Bm25Params::default()
    };
    let router = Bm25Router::with_params(&registry, params);
    let order = |candidates: &[&str]| -> Vec<String> {
        router
            .rank("thermal", candidates)
            .into_iter()
            .map(|r| r.agent)
            .collect()
    };
    assert_eq!(order(&["a", "b"]), ["a", "b"]);
    assert_eq!(order(&["b", "a"]), ["b", "a"]);
}

#[test]
fn acl_filtered_candidates_never_offer_a_denied_agent() {
    let registry = Registry::embedded_default();
    let router = Bm25Router::new(&registry);
    let policy = Policy::atomizer_default();
    let allowed = policy.allowed_targets("tech-lead", registry.ids());
    assert!(!allowed.contains(&"auditor"));
    for task in [
        "Audit the results of last week's FEA",
        "Do a QA pass on the deliverables before they go out",
        "Check compliance with our quality assurance procedures",
        "audit",
    ] {
        // With every agent, the auditor wins…
        check(&router, &registry.ids(), task, Some("auditor"));
        // …but tech-lead may not use it: another agent or nothing.
        let ranked = router.rank(task, &allowed);
        assert!(
            ranked.iter().all(|r| allowed.contains(&r.agent.as_str())),
            "{task}: {ranked:?}"
        );
        assert!(ranked.iter().all(|r| r.agent != "auditor"), "{task}");
    }
    // An agent nobody granted anything gets nothing at all.
    let none = policy.allowed_targets("auditor", registry.ids());
    assert!(router.rank("Audit the results", &none).is_empty());
}

#[test]
fn reasons_say_which_words_matched_what() {
    let registry = Registry::embedded_default();
    let router = Bm25Router::new(&registry);
    let candidates = registry.ids();
    let mut out = String::new();
    for task in [
        "Check the thermal margins of the mirror mount",
        "Set up a design-of-experiments study for the truss",
        "Find the CTE of Zerodur between 0 and 50 °C",
    ] {
        out.push_str(&format!("task: {task}\n"));
        for r in router.rank(task, &candidates).iter().take(3) {
            out.push_str(&format!("  {} ({:.2})\n", r.agent, r.score));
            for reason in &r.reasons {
                out.push_str(&format!("    - {reason}\n"));
            }
        }
    }
    insta::assert_snapshot!(out);
}

#[test]
fn hostile_tasks_never_panic() {
    let registry = Registry::embedded_default();
    let router = Bm25Router::new(&registry);
    let candidates = registry.ids();
    let huge = "Audit the FEA results ".repeat(12_000); // ~256 KiB
    let tasks = [
        huge.as_str(),
        "İstanbul İİİ ß ﬃ ǅ — Ångström CTE",
        "\u{0}\u{1}\u{7f} audit \u{202e}tidua",
        "🔥🔥 optimise 🚀 mass 🧪",
        "a-b-c-d-e-f-g-h-i-j",
        "x".repeat(10_000).as_str(),
        "ies ses s es ing ed ation ization",
        "عربى 中文 日本語 한국어",
    ]
    .map(str::to_owned);
    for task in &tasks {
        let ranked = router.rank(task, &candidates);
        for r in &ranked {
            assert!(candidates.contains(&r.agent.as_str()));
            assert!(r.score.is_finite());
            assert!(r.reasons.iter().all(|reason| reason.chars().count() < 300));
        }
    }
    assert_eq!(
        router
            .rank(&huge, &candidates)
            .first()
            .map(|r| r.agent.as_str()),
        Some("auditor")
    );
}
