//! The dependency plan: which step waits for which, in what order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The steps' dependency DAG.
///
/// A step depends on its `needs`, on every step its task template reads and
/// on every step its `when` reads. `order` is a topological order that
/// keeps file order wherever the dependencies allow; `levels` group the
/// steps by longest dependency chain, for display only (the executor starts
/// a step the moment its own dependencies finish).
///
/// The executor works on an indexed view built once with the plan: a step
/// is named by its *position* in `order` (`id_at`), with its dependencies
/// (`deps_at`) and dependents (`dependents_at`) as positions too, and its
/// height (`height_at`: steps on the longest chain to a sink, the
/// executor's guess of the critical path), so a run never turns a step id
/// back into a position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Step ids in file order; the other fields but the `_at` ones index
    /// into it.
    ids: Vec<String>,
    deps: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    /// File indices in topological order: `order[p]` is the step at
    /// position `p`.
    order: Vec<usize>,
    levels: Vec<Vec<usize>>,
    /// The dependencies of the step at each position, as positions, in the
    /// order of `deps`.
    deps_at: Vec<Vec<usize>>,
    /// The direct dependents of the step at each position, as positions.
    dependents_at: Vec<Vec<usize>>,
    /// Steps on the longest chain from the step at each position to a
    /// sink, counting that step.
    height_at: Vec<usize>,
}

impl Plan {
    /// Builds the plan for steps `ids` (file order) where `deps[i]` lists
    /// the indices step `i` depends on. A cycle is returned as the indices
    /// along it in data-flow order (dependency first), the first repeated
    /// at the end, starting at the earliest step of the file in the cycle.
    pub(crate) fn build(ids: Vec<String>, deps: Vec<Vec<usize>>) -> Result<Self, Vec<usize>> {
        let n = ids.len();
        if let Some(cycle) = find_cycle(&deps) {
            return Err(cycle);
        }
        let mut dependents = vec![Vec::new(); n];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        // Kahn's algorithm, smallest file index first.
        let mut missing: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut heap: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| missing[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        let mut level = vec![0usize; n];
        while let Some(Reverse(i)) = heap.pop() {
            order.push(i);
            for &j in &dependents[i] {
                level[j] = level[j].max(level[i] + 1);
                missing[j] -= 1;
                if missing[j] == 0 {
                    heap.push(Reverse(j));
                }
            }
        }
        let depth = level.iter().copied().max().map_or(0, |m| m + 1);
        let mut levels = vec![Vec::new(); depth];
        for i in 0..n {
            levels[level[i]].push(i);
        }
        let mut position = vec![0usize; n];
        for (p, &i) in order.iter().enumerate() {
            position[i] = p;
        }
        let at = |ix: &[usize]| ix.iter().map(|&i| position[i]).collect::<Vec<_>>();
        let deps_at: Vec<Vec<usize>> = order.iter().map(|&i| at(&deps[i])).collect();
        let dependents_at: Vec<Vec<usize>> = order.iter().map(|&i| at(&dependents[i])).collect();
        // A dependent comes later in `order`, so its height is known first.
        let mut height_at = vec![1usize; n];
        for p in (0..n).rev() {
            height_at[p] = 1 + dependents_at[p]
                .iter()
                .map(|&d| height_at[d])
                .max()
                .unwrap_or(0);
        }
        Ok(Self {
            ids,
            deps,
            dependents,
            order,
            levels,
            deps_at,
            dependents_at,
            height_at,
        })
    }

    /// How many steps the plan has.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// The id of the step at position `p` of [`Plan::order`].
    pub(crate) fn id_at(&self, p: usize) -> &str {
        &self.ids[self.order[p]]
    }

    /// The dependencies of the step at position `p`, as positions, in file
    /// order of first mention (as [`Plan::deps`]).
    pub(crate) fn deps_at(&self, p: usize) -> &[usize] {
        &self.deps_at[p]
    }

    /// The direct dependents of the step at position `p`, as positions.
    pub(crate) fn dependents_at(&self, p: usize) -> &[usize] {
        &self.dependents_at[p]
    }

    /// Steps on the longest chain from the step at position `p` to a step
    /// nothing depends on, counting both: 1 for a sink.
    pub(crate) fn height_at(&self, p: usize) -> usize {
        self.height_at[p]
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|x| x == id)
    }

    fn names(&self, ix: &[usize]) -> Vec<&str> {
        ix.iter().map(|&i| self.ids[i].as_str()).collect()
    }

    /// Step ids in a topological order, stable by file order.
    pub fn order(&self) -> Vec<&str> {
        self.names(&self.order)
    }

    /// The steps `id` depends on, in file order of first mention.
    pub fn deps(&self, id: &str) -> Vec<&str> {
        self.index(id)
            .map_or_else(Vec::new, |i| self.names(&self.deps[i]))
    }

    /// The steps that depend on `id`.
    pub fn dependents(&self, id: &str) -> Vec<&str> {
        self.index(id)
            .map_or_else(Vec::new, |i| self.names(&self.dependents[i]))
    }

    /// Steps grouped by longest dependency chain: everything in one level
    /// could run in parallel. For display only.
    pub fn levels(&self) -> Vec<Vec<&str>> {
        self.levels.iter().map(|l| self.names(l)).collect()
    }

    /// The dependency edges as `(dependency, dependent)`, for graphs.
    pub fn edges(&self) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        for &i in &self.order {
            for &d in &self.deps[i] {
                out.push((self.ids[d].as_str(), self.ids[i].as_str()));
            }
        }
        out
    }
}

/// The first cycle found by a depth-first search in file order.
fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let n = deps.len();
    let mut mark = vec![Mark::New; n];
    for root in 0..n {
        if mark[root] != Mark::New {
            continue;
        }
        // (node, next dep to look at); `path` mirrors the open nodes.
        let mut stack = vec![(root, 0usize)];
        mark[root] = Mark::Open;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&d) = deps[node].get(*next) {
                *next += 1;
                match mark[d] {
                    Mark::New => {
                        mark[d] = Mark::Open;
                        stack.push((d, 0));
                    }
                    Mark::Open => {
                        // stack from d to node is a chain of "depends on".
                        let from = stack.iter().position(|&(x, _)| x == d).unwrap_or(0);
                        let mut cycle: Vec<usize> = stack[from..].iter().map(|&(x, _)| x).collect();
                        // Data-flow order: dependency first.
                        cycle.reverse();
                        let first = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|&(_, &x)| x)
                            .map_or(0, |(k, _)| k);
                        cycle.rotate_left(first);
                        cycle.push(cycle[0]);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

/// The ids of `ix`, joined with arrows.
pub(crate) fn arrows(ids: &[String], ix: &[usize]) -> String {
    ix.iter()
        .map(|&i| ids[i].as_str())
        .collect::<Vec<_>>()
        .join(" → ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn plan(deps: &[&[usize]]) -> Result<Plan, Vec<usize>> {
        let ids = (0..deps.len()).map(|i| format!("s{i}")).collect();
        Plan::build(ids, deps.iter().map(|d| d.to_vec()).collect())
    }

    #[test]
    fn order_levels_positions() {
        // s0, s1 independent; s2 needs both; s3 needs s0.
        let p = plan(&[&[], &[], &[0, 1], &[0]]).unwrap();
        assert_eq!(p.order(), ["s0", "s1", "s2", "s3"]);
        assert_eq!(p.levels(), vec![vec!["s0", "s1"], vec!["s2", "s3"]]);
        assert_eq!(p.edges(), [("s0", "s2"), ("s1", "s2"), ("s0", "s3")]);
        assert_eq!(p.len(), 4);
        assert_eq!(p.deps_at(2), [0, 1]);
        assert_eq!(p.dependents_at(0), [2, 3]);
        assert_eq!(
            (0..4).map(|i| p.height_at(i)).collect::<Vec<_>>(),
            [2, 2, 1, 1]
        );

        // Positions follow the topological order, not the file order: s0
        // needs s2 and s2 needs s3, so the order is s1, s3, s2, s0.
        let p = plan(&[&[2], &[], &[3], &[]]).unwrap();
        assert_eq!(p.order(), ["s1", "s3", "s2", "s0"]);
        assert_eq!((0..4).map(|i| p.id_at(i)).collect::<Vec<_>>(), p.order());
        assert_eq!(p.deps_at(3), [2]);
        assert_eq!(p.dependents_at(1), [2]);
        assert_eq!(
            (0..4).map(|i| p.height_at(i)).collect::<Vec<_>>(),
            [1, 3, 2, 1]
        );
    }

    #[test]
    fn order_is_stable_by_file_order() {
        // s0 needs s2: s1 comes before s0, which waits.
        let p = plan(&[&[2], &[], &[]]).unwrap();
        assert_eq!(p.order(), ["s1", "s2", "s0"]);
    }

    #[test]
    fn cycles_are_named_in_data_flow_order() {
        // s0 needs s2, s1 needs s0, s2 needs s1: s0 → s1 → s2 → s0.
        let c = plan(&[&[2], &[0], &[1]]).unwrap_err();
        assert_eq!(c, [0, 1, 2, 0]);
        assert_eq!(plan(&[&[0]]).unwrap_err(), [0, 0]);
    }
}
