//! Stacks (SPEC §8): what an exit means under a restart policy, whether a service may start
//! now given what its dependencies are, the start order, and cycles. Pure: callers pass what
//! they observed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

/// `restart = "always" | "on-failure" | "no"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    No,
}

impl RestartPolicy {
    pub const NAMES: &[&str] = &["always", "on-failure", "no"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "always" => Self::Always,
            "on-failure" => Self::OnFailure,
            "no" => Self::No,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// What guardian does after a process exited on its own (not stopped by guardian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterExit {
    /// The backoff of SPEC §5.
    Restart,
    /// Exited 0 and not restarted: `completed`.
    Complete,
    /// Exited non-zero or by a signal and not restarted: `failed`.
    Fail,
}

/// `success`: the process exited with code 0.
pub fn after_exit(policy: RestartPolicy, success: bool) -> AfterExit {
    match (policy, success) {
        (RestartPolicy::Always, _) | (RestartPolicy::OnFailure, false) => AfterExit::Restart,
        (_, true) => AfterExit::Complete,
        (RestartPolicy::No, false) => AfterExit::Fail,
    }
}

/// A `depends_on` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Its process was spawned.
    Started,
    /// It passed readiness (its port accepts, or its first healthy round).
    Ready,
    /// Its health is `healthy` (without checks: the same as ready).
    Healthy,
    /// It exited 0 and is not restarted.
    Completed,
}

impl Condition {
    pub const NAMES: &[&str] = &["started", "ready", "healthy", "completed"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "started" => Self::Started,
            "ready" => Self::Ready,
            "healthy" => Self::Healthy,
            "completed" => Self::Completed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// One instance of a dependency, as its dependents see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not running and not on its way: stopped, waiting, in backoff, or stopping.
    Down,
    /// Spawned, not ready yet.
    Starting,
    /// Ready; `healthy` is its current health.
    Ready {
        healthy: bool,
    },
    Completed,
    /// `failed`, or `blocked` by its own dependencies: nothing will start it on its own.
    Failed,
}

pub fn holds(condition: Condition, phase: Phase) -> bool {
    match condition {
        Condition::Started => matches!(
            phase,
            Phase::Starting | Phase::Ready { .. } | Phase::Completed
        ),
        Condition::Ready => matches!(phase, Phase::Ready { .. } | Phase::Completed),
        Condition::Healthy => matches!(phase, Phase::Ready { healthy: true }),
        Condition::Completed => phase == Phase::Completed,
    }
}

/// May a service start now?
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    Go,
    /// The dependencies whose condition does not hold yet, in config order.
    Wait(Vec<(String, Condition)>),
    /// This dependency failed: nothing happens until it recovers.
    Blocked(String),
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gate::Go => f.write_str("may start"),
            Gate::Wait(deps) => {
                f.write_str("waiting for ")?;
                for (i, (name, c)) in deps.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{name} ({})", c.as_str())?;
                }
                Ok(())
            }
            Gate::Blocked(dep) => write!(f, "blocked: its dependency {dep} failed"),
        }
    }
}

/// `deps`: each dependency with its condition and the phases of all its instances (a
/// dependency with replicas holds only when every instance does). A failed dependency blocks,
/// unless the condition already holds for it (a `started` condition on a task that ran).
pub fn gate(deps: &[(&str, Condition, Vec<Phase>)]) -> Gate {
    let mut waiting = Vec::new();
    for (name, condition, phases) in deps {
        if phases.iter().all(|p| holds(*condition, *p)) {
            continue;
        }
        if phases.contains(&Phase::Failed) {
            return Gate::Blocked((*name).to_owned());
        }
        waiting.push(((*name).to_owned(), *condition));
    }
    if waiting.is_empty() {
        Gate::Go
    } else {
        Gate::Wait(waiting)
    }
}

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
    use Condition::*;
    use Phase::{Down, Failed, Starting};

    const HEALTHY: Phase = Phase::Ready { healthy: true };
    const DONE: Phase = Phase::Completed;
    type Dep<'a> = (&'a str, Condition, Vec<Phase>);
    type Graph<'a> = BTreeMap<&'a str, Vec<&'a str>>;

    const UNHEALTHY: Phase = Phase::Ready { healthy: false };

    #[test]
    fn restart_policy_table() {
        let table = [
            (RestartPolicy::Always, true, AfterExit::Restart),
            (RestartPolicy::Always, false, AfterExit::Restart),
            (RestartPolicy::OnFailure, true, AfterExit::Complete),
            (RestartPolicy::OnFailure, false, AfterExit::Restart),
            (RestartPolicy::No, true, AfterExit::Complete),
            (RestartPolicy::No, false, AfterExit::Fail),
        ];
        for (policy, success, want) in table {
            assert_eq!(after_exit(policy, success), want, "{policy:?} {success}");
        }
    }

    #[test]
    fn condition_table() {
        // (condition, phase, holds)
        let table = [
            (Started, Down, false),
            (Started, Starting, true),
            (Started, UNHEALTHY, true),
            (Started, DONE, true),
            (Started, Failed, false),
            (Ready, Starting, false),
            (Ready, UNHEALTHY, true),
            (Ready, HEALTHY, true),
            (Ready, DONE, true),
            (Healthy, UNHEALTHY, false),
            (Healthy, HEALTHY, true),
            (Healthy, DONE, false),
            (Healthy, Starting, false),
            (Completed, HEALTHY, false),
            (Completed, DONE, true),
            (Completed, Failed, false),
        ];
        for (c, p, want) in table {
            assert_eq!(holds(c, p), want, "{c:?} on {p:?}");
        }
    }

    #[test]
    fn start_decision_table() {
        let wait = |v: &[(&str, Condition)]| {
            Gate::Wait(v.iter().map(|(n, c)| (n.to_string(), *c)).collect())
        };
        let table: Vec<(Vec<Dep>, Gate)> = vec![
            (vec![], Gate::Go),
            (vec![("db", Healthy, vec![HEALTHY])], Gate::Go),
            (
                vec![("db", Healthy, vec![UNHEALTHY])],
                wait(&[("db", Healthy)]),
            ),
            (vec![("db", Healthy, vec![Down])], wait(&[("db", Healthy)])),
            (
                vec![("db", Healthy, vec![Failed])],
                Gate::Blocked("db".into()),
            ),
            (
                vec![("migrate", Completed, vec![Starting])],
                wait(&[("migrate", Completed)]),
            ),
            (vec![("migrate", Completed, vec![DONE])], Gate::Go),
            (
                vec![("migrate", Completed, vec![Failed])],
                Gate::Blocked("migrate".into()),
            ),
            // every replica must hold
            (
                vec![("api", Ready, vec![HEALTHY, Starting, HEALTHY])],
                wait(&[("api", Ready)]),
            ),
            (vec![("api", Ready, vec![HEALTHY, UNHEALTHY])], Gate::Go),
            // one failed replica blocks
            (
                vec![("api", Ready, vec![HEALTHY, Failed])],
                Gate::Blocked("api".into()),
            ),
            // several: the ones not holding are named, in order; a failure wins
            (
                vec![
                    ("db", Healthy, vec![Starting]),
                    ("cache", Started, vec![Starting]),
                    ("migrate", Completed, vec![Down]),
                ],
                wait(&[("db", Healthy), ("migrate", Completed)]),
            ),
            (
                vec![
                    ("db", Healthy, vec![Starting]),
                    ("migrate", Completed, vec![Failed]),
                ],
                Gate::Blocked("migrate".into()),
            ),
        ];
        for (deps, want) in table {
            assert_eq!(gate(&deps), want, "{deps:?}");
        }
    }

    #[test]
    fn gate_text_is_what_status_shows() {
        let g = gate(&[
            ("db", Healthy, vec![Starting]),
            ("migrate", Completed, vec![Down]),
        ]);
        assert_eq!(
            g.to_string(),
            "waiting for db (healthy), migrate (completed)"
        );
    }

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
