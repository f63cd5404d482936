//! Stacks (SPEC §8): the start gate over dependencies, dependents woken when a dependency
//! changes, stops in reverse dependency order, commands on every replica of a service, and
//! rolling restarts. The decisions are `policy::deps`; this file applies them.

use std::collections::{BTreeSet, VecDeque};

use super::*;
use crate::policy::deps::{self, Gate, Phase};

/// A rolling restart of a replicated service: one instance at a time, the next once the
/// previous is ready again.
pub(super) struct Rolling {
    pub(super) current: String,
    pub(super) queue: VecDeque<String>,
    pub(super) done: Vec<String>,
    pub(super) reply: Option<oneshot::Sender<Reply>>,
}

/// A stop that waits for dependents: `pending` are not signalled yet; `all` is every service
/// of the stop, so that one already signalled still holds back its dependencies.
#[derive(Default)]
pub(super) struct OrderedStop {
    pub(super) pending: BTreeMap<String, &'static str>,
    pub(super) all: BTreeSet<String>,
}

fn alive(s: &Service) -> bool {
    matches!(s.state, State::Running | State::Starting | State::Stopping)
}

impl<S: Spawner> Supervisor<S> {
    /// The instances of a declared service (`api` → `api`, or `api.1` … `api.N`), by name
    /// order: names are `[a-z0-9_]`, so nothing sorts between `api` and `api.N`.
    pub(super) fn members(&self, group: &str) -> Vec<String> {
        self.services
            .range::<str, _>((std::ops::Bound::Included(group), std::ops::Bound::Unbounded))
            .map(|(n, _)| n)
            .take_while(|n| {
                n.as_str() == group
                    || n.strip_prefix(group)
                        .is_some_and(|rest| rest.starts_with('.'))
            })
            .filter(|n| self.services[n.as_str()].spec.group.as_str() == group)
            .cloned()
            .collect()
    }

    /// What a name means to a command: one instance, or every replica of a declared service.
    pub(super) fn resolve(&self, name: &str) -> Vec<String> {
        if self.services.contains_key(name) {
            return vec![name.to_owned()];
        }
        self.members(name)
    }

    fn phase(s: &Service) -> Phase {
        match s.state {
            State::Starting => Phase::Starting,
            State::Running => Phase::Ready {
                healthy: s.monitor.status() == Status::Healthy,
            },
            State::Completed => Phase::Completed,
            State::Failed | State::Blocked => Phase::Failed,
            _ => Phase::Down,
        }
    }

    fn gate_of(&self, name: &str) -> Gate {
        let deps: Vec<(&str, crate::config::Condition, Vec<Phase>)> = self.services[name]
            .spec
            .depends_on
            .iter()
            .map(|(dep, d)| {
                let phases = self
                    .members(dep.as_str())
                    .iter()
                    .map(|m| Self::phase(&self.services[m.as_str()]))
                    .collect();
                (dep.as_str(), d.condition, phases)
            })
            .collect();
        deps::gate(&deps)
    }

    /// Starts the service if its dependencies allow it; else it waits (or is blocked), and
    /// `status` says for what.
    pub(super) fn request_start(&mut self, name: &str, trigger: &str) {
        if self.shutting_down.is_some() {
            return;
        }
        let gate = self.gate_of(name);
        let state = match &gate {
            Gate::Go => {
                self.gated.remove(name);
                let svc = self.services.get_mut(name).expect("UNWRAP: known name");
                svc.waiting_for = None;
                return self.start(name, trigger);
            }
            Gate::Wait(_) => State::Waiting,
            Gate::Blocked(_) => State::Blocked,
        };
        let text = match &gate {
            Gate::Blocked(dep) => {
                let failed = self
                    .members(dep)
                    .iter()
                    .any(|m| self.services[m.as_str()].state == State::Failed);
                format!(
                    "blocked: its dependency {dep} is {}; it starts when {dep} recovers",
                    if failed { "failed" } else { "blocked" }
                )
            }
            other => other.to_string(),
        };
        self.gated.insert(name.to_owned());
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        if svc.state == state && svc.waiting_for.as_deref() == Some(text.as_str()) {
            return;
        }
        let was = svc.state;
        svc.state = state;
        svc.restart_at = None;
        svc.waiting_for = Some(text.clone());
        self.touched.insert(name.to_owned());
        if state == State::Blocked {
            self.record(Event::new(name, "blocked", trigger, false).error(text));
        } else if was != State::Waiting {
            self.record(Event::new(name, "waiting", trigger, true).detail(text));
        }
    }

    /// Re-decides every waiting or blocked service until nothing changes: one service
    /// starting, completing or failing can let (or stop) a chain of others. What it starts
    /// is spawned in one batch.
    pub(super) fn settle(&mut self) {
        self.batched(|_| {});
    }

    /// `settle` without the spawns: every gated service is asked again, until the answers
    /// stop changing; the starts are queued in the batch.
    pub(super) fn release_gated(&mut self) {
        loop {
            self.gated.retain(|n| {
                self.services
                    .get(n)
                    .is_some_and(|s| matches!(s.state, State::Waiting | State::Blocked))
            });
            let before: Vec<(String, State, Option<String>)> = self
                .gated
                .iter()
                .map(|n| {
                    let s = &self.services[n.as_str()];
                    (n.clone(), s.state, s.waiting_for.clone())
                })
                .collect();
            if before.is_empty() {
                return;
            }
            for (n, _, _) in &before {
                self.request_start(n, "dependency");
            }
            let unchanged = before.iter().all(|(n, st, w)| {
                let s = &self.services[n.as_str()];
                s.state == *st && &s.waiting_for == w
            });
            if unchanged {
                return;
            }
        }
    }

    /// The dependency `group` is about to restart: every running dependent that asked for
    /// `restart = true` stops now and starts again once its condition holds.
    pub(super) fn restart_dependents(&mut self, group: &str) {
        let names: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| {
                matches!(s.state, State::Running | State::Starting)
                    && s.spec
                        .depends_on
                        .iter()
                        .any(|(d, dep)| d.as_str() == group && dep.restart)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in names {
            self.record(
                Event::new(&n, "restart_scheduled", "dependency", true).detail(format!(
                    "{group} restarts, and depends_on.{group}.restart = true"
                )),
            );
            let svc = self.services.get_mut(&n).expect("UNWRAP: known name");
            svc.start_after_stop = true;
            self.touched.insert(n.clone());
            self.stop(&n, "dependency", None);
        }
    }

    /// Stops `names` in reverse dependency order: each once every dependent among them has
    /// stopped; unrelated ones at once, in parallel.
    pub(super) fn stop_in_order(&mut self, names: Vec<String>, trigger: &'static str) {
        for n in names {
            self.ordered.all.insert(n.clone());
            self.ordered.pending.insert(n, trigger);
        }
        self.advance_stops();
    }

    pub(super) fn advance_stops(&mut self) {
        if self.ordered.pending.is_empty() {
            self.ordered.all.clear();
            return;
        }
        // The declared services some still-living member of the stop depends on.
        let needed: BTreeSet<String> = self
            .ordered
            .all
            .iter()
            .filter_map(|n| self.services.get(n))
            .filter(|s| alive(s))
            .flat_map(|s| s.spec.depends_on.keys().map(|d| d.to_string()))
            .collect();
        let ready: Vec<(String, &'static str)> = self
            .ordered
            .pending
            .iter()
            .filter(|(n, _)| {
                self.services
                    .get(n.as_str())
                    .is_none_or(|s| !needed.contains(s.spec.group.as_str()))
            })
            .map(|(n, t)| (n.clone(), *t))
            .collect();
        for (n, trigger) in ready {
            self.ordered.pending.remove(&n);
            if self.services.contains_key(&n) {
                self.touched.insert(n.clone());
                self.stop(&n, trigger, None);
            }
        }
        let services = &self.services;
        self.ordered
            .all
            .retain(|n| services.get(n).is_some_and(alive));
    }

    /// Runs `each` on every instance with its own reply slot, and answers once all have.
    pub(super) fn fan_out(
        &mut self,
        names: Vec<String>,
        reply: oneshot::Sender<Reply>,
        mut each: impl FnMut(&mut Self, &str, oneshot::Sender<Reply>),
    ) {
        let mut replies = Vec::new();
        for n in &names {
            let (tx, rx) = oneshot::channel();
            each(self, n, tx);
            replies.push(rx);
        }
        tokio::spawn(async move {
            let mut lines = Vec::new();
            for rx in replies {
                match rx.await {
                    Ok(Reply::Done(m)) => lines.push(m),
                    Ok(Reply::Refused(m)) => lines.push(m),
                    Ok(Reply::NoSuchService(n)) => lines.push(format!("no service {n}")),
                    Err(_) => lines.push("the supervisor has stopped".to_owned()),
                }
            }
            let _ = reply.send(Reply::Done(lines.join("\n")));
        });
    }

    /// `guardian restart NAME` for a service with replicas: one instance at a time.
    pub(super) fn roll(&mut self, group: &str, names: Vec<String>, reply: oneshot::Sender<Reply>) {
        if let Some(old) = self.rolling.remove(group).and_then(|r| r.reply) {
            let _ = old.send(Reply::Refused(format!(
                "the rolling restart of {group} was replaced by a new one"
            )));
        }
        let mut queue: VecDeque<String> = names.into();
        let first = queue.pop_front().expect("UNWRAP: a group has members");
        self.rolling.insert(
            group.to_owned(),
            Rolling {
                current: first.clone(),
                queue,
                done: Vec::new(),
                reply: Some(reply),
            },
        );
        self.record(
            Event::new(group, "rolling_restart", "command", true)
                .detail(format!("one instance at a time, starting with {first}")),
        );
        self.restart_one(&first);
    }

    /// Restarts one instance: stop then start, or just start when it is not running.
    pub(super) fn restart_one(&mut self, name: &str) {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        svc.reset_by_user();
        if self.start_first(name, &mut None) {
            return;
        }
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        self.touched.insert(name.to_owned());
        match svc.state {
            State::Running | State::Starting | State::Stopping => {
                svc.start_after_stop = true;
                self.stop(name, "command", None);
            }
            _ => self.request_start(name, "command"),
        }
    }

    /// An instance became ready: if a rolling restart waits for it, the next one goes.
    pub(super) fn roll_on(&mut self, name: &str) {
        let group = self.services[name].spec.group.to_string();
        let Some(r) = self.rolling.get_mut(&group) else {
            return;
        };
        if r.current != name {
            return;
        }
        r.done.push(name.to_owned());
        match r.queue.pop_front() {
            Some(next) => {
                r.current = next.clone();
                self.restart_one(&next);
            }
            None => {
                let r = self.rolling.remove(&group).expect("UNWRAP: found above");
                if let Some(reply) = r.reply {
                    let _ = reply.send(Reply::Done(format!(
                        "{group} restarted one at a time: {}",
                        r.done.join(", ")
                    )));
                }
            }
        }
    }

    /// An instance of a rolling restart did not come back: the roll stops there, the rest
    /// keep running.
    pub(super) fn roll_failed(&mut self, name: &str, why: &str) {
        let Some(svc) = self.services.get(name) else {
            return;
        };
        let group = svc.spec.group.to_string();
        if self.rolling.get(&group).is_none_or(|r| r.current != name) {
            return;
        }
        let r = self.rolling.remove(&group).expect("UNWRAP: found above");
        let left: Vec<String> = r.queue.into_iter().collect();
        let msg = format!(
            "rolling restart of {group} stopped: {name} did not become ready again ({why}); {} left as they were\n  1. see why: guardian logs {name}\n  2. then: guardian restart {group}",
            if left.is_empty() {
                "no other instance was".to_owned()
            } else {
                format!("{} were", left.join(", "))
            }
        );
        self.record(Event::new(&group, "rolling_restart", "command", false).error(msg.clone()));
        if let Some(reply) = r.reply {
            let _ = reply.send(Reply::Refused(msg));
        }
    }
}
