//! Stacks (SPEC §8): what an exit means under a restart policy, and whether a service may
//! start now given what its dependencies are. Pure: callers pass what they observed.

use std::fmt;

pub use crate::config::{Condition, RestartPolicy};

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

#[cfg(test)]
mod tests {
    use super::*;
    use Condition::*;
    use Phase::{Down, Failed, Starting};

    const HEALTHY: Phase = Phase::Ready { healthy: true };
    const DONE: Phase = Phase::Completed;
    type Dep<'a> = (&'a str, Condition, Vec<Phase>);

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
}
