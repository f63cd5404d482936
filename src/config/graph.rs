//! The dependency graph of a config: cycles (a config error) and the start order in waves
//! (`validate --explain`). Pure.

use std::collections::{BTreeMap, BTreeSet};

/// The first cycle in a dependency graph, as its path (`["api", "cache", "api"]`), if any.
pub fn find_cycle(graph: &BTreeMap<&str, Vec<&str>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = path.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node, Mark::Open);
        path.push(node);
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(dep, graph, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

/// Start order in waves: each wave depends only on earlier ones, and a wave's services start
/// in parallel. The graph must be acyclic (nodes on a cycle are left out).
pub fn waves<'a>(graph: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<Vec<&'a str>> {
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    loop {
        let wave: Vec<&str> = graph
            .iter()
            .filter(|(n, deps)| {
                !placed.contains(*n)
                    && deps
                        .iter()
                        .all(|d| placed.contains(d) || !graph.contains_key(d))
            })
            .map(|(n, _)| *n)
            .collect();
        if wave.is_empty() {
            return out;
        }
        placed.extend(wave.iter().copied());
        out.push(wave);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Graph<'a> = BTreeMap<&'a str, Vec<&'a str>>;

    fn graph<'a>(edges: &[(&'a str, &[&'a str])]) -> BTreeMap<&'a str, Vec<&'a str>> {
        edges.iter().map(|(n, d)| (*n, d.to_vec())).collect()
    }

    #[test]
    fn cycles_are_found_and_named_whole() {
        let table: Vec<(Graph, Option<&str>)> = vec![
            (graph(&[("api", &["db"]), ("db", &[])]), None),
            (
                graph(&[("api", &["cache"]), ("cache", &["api"])]),
                Some("api → cache → api"),
            ),
            (graph(&[("a", &["a"])]), Some("a → a")),
            (
                graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["b"])]),
                Some("b → c → b"),
            ),
            (
                graph(&[("a", &["b", "c"]), ("b", &["d"]), ("c", &["d"]), ("d", &[])]),
                None,
            ),
        ];
        for (g, want) in table {
            let got = find_cycle(&g).map(|c| c.join(" → "));
            assert_eq!(got.as_deref(), want, "{g:?}");
        }
    }

    #[test]
    fn waves_put_each_service_after_its_dependencies() {
        let g = graph(&[
            ("api", &["db", "migrate"]),
            ("db", &[]),
            ("migrate", &["db"]),
            ("cache", &[]),
            ("worker", &["api"]),
        ]);
        assert_eq!(
            waves(&g),
            vec![
                vec!["cache", "db"],
                vec!["migrate"],
                vec!["api"],
                vec!["worker"]
            ]
        );
    }
}
