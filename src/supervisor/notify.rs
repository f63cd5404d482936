//! What a service says for itself with sd_notify (SPEC §14): readiness, status, the
//! watchdog, extended deadlines, its main PID; and essential services, whose end is
//! guardian's.

use std::sync::atomic::Ordering;

use super::*;
use crate::config::Readiness;
use crate::config::duration::Secs;
use crate::health::CheckResult;
use crate::policy::notify::Notice;

impl<S: Spawner> Supervisor<S> {
    /// An sd_notify message from the process whose ancestry is `from`. It counts for the
    /// service whose current process sent it or is an ancestor of its sender; the old
    /// instance of a start-first restart is heard and ignored; any other sender is dropped
    /// and counted. Returns the service when what `/status` shows of it changed.
    pub(super) fn notified(&mut self, from: &[i32], n: Notice) -> Option<String> {
        let found = self.services.iter().find_map(|(name, s)| {
            if s.pid.is_some_and(|p| from.contains(&p)) {
                Some((name.clone(), false))
            } else {
                let old = s.draining.as_ref().is_some_and(|d| from.contains(&d.pid));
                old.then(|| (name.clone(), true))
            }
        });
        let Some((name, draining)) = found else {
            self.notify_dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if draining {
            return None;
        }
        let now = Instant::now();
        let svc = self.services.get_mut(&name).expect("UNWRAP: found above");
        let pid = svc.pid.unwrap_or_default();
        let mut changed = false;
        if n.watchdog {
            svc.notify.pinged_at = Some(now);
            svc.notify
                .last_ping
                .store((unix_now() * 1000.0) as u64, Ordering::Relaxed);
        }
        if let Some(text) = n.status
            && svc.status_text.as_deref() != Some(text.as_str())
        {
            svc.status_text = Some(text);
            changed = true;
        }
        if let Some(errno) = n.errno
            && svc.notify.errno != Some(errno)
        {
            svc.notify.errno = Some(errno);
            changed = true;
        }
        if let Some(us) = n.extend_timeout_usec
            && matches!(svc.state, State::Starting | State::Stopping)
        {
            let until = now + Duration::from_micros(us);
            svc.notify.extended_until =
                Some(svc.notify.extended_until.map_or(until, |t| t.max(until)));
            let what = if svc.state == State::Starting {
                "startup_timeout"
            } else {
                "shutdown_timeout"
            };
            let e = Event::new(&name, "extend_timeout", "notify", true)
                .pid(pid)
                .detail(format!(
                    "EXTEND_TIMEOUT_USEC={us}: its {what} ends no sooner than {} from now",
                    Secs(Duration::from_micros(us))
                ));
            self.record(e);
        }
        for (said, phase) in [(n.stopping, "stopping"), (n.reloading, "reloading")] {
            let svc = self.services.get_mut(&name).expect("UNWRAP: found above");
            if said && svc.notify.phase != Some(phase) {
                svc.notify.phase = Some(phase);
                let said = if phase == "stopping" {
                    "STOPPING=1"
                } else {
                    "RELOADING=1"
                };
                self.record(
                    Event::new(&name, phase, "notify", true)
                        .pid(pid)
                        .detail(format!("the service said {said}; its watchdog waits")),
                );
                changed = true;
            }
        }
        if let Some(main) = n.mainpid {
            changed |= self.main_pid(&name, main);
        }
        let svc = self.services.get_mut(&name).expect("UNWRAP: found above");
        if n.ready {
            if svc.state == State::Starting && svc.spec.ready == Some(Readiness::Notify) {
                let _ = self.facts_tx.send(Fact::BecameReady {
                    name: name.clone(),
                    instance: svc.instance,
                });
            } else if svc.notify.phase == Some("reloading") {
                svc.notify.phase = None;
                svc.notify.pinged_at = Some(now);
                self.record(
                    Event::new(&name, "reloaded", "notify", true)
                        .pid(pid)
                        .detail("the service said READY=1 after RELOADING=1"),
                );
                changed = true;
            }
        }
        if n.watchdog_trigger {
            let svc = &self.services[&name];
            if svc.state == State::Running && svc.spec.watchdog.is_some() {
                self.watchdog_missed(&name, "the service sent WATCHDOG=trigger".to_owned());
                changed = true;
            }
        }
        changed.then_some(name)
    }

    /// `MAINPID=`: a process of the service's own tree becomes its tracked PID (a server that
    /// forks its worker, a wrapper script). Anything else is refused with an event.
    fn main_pid(&mut self, name: &str, main: i32) -> bool {
        let svc = &self.services[name];
        let Some(old) = svc.pid else { return false };
        if main == old || !matches!(svc.state, State::Starting | State::Running) {
            return false;
        }
        let ours = procinfo::ancestors(main).contains(&old)
            || procinfo::service_mark(main).is_some_and(|m| m == name);
        let watched = procinfo::start_ticks(main)
            .filter(|_| ours)
            .ok_or_else(|| std::io::Error::other("it is not a process of the service's tree"))
            .and_then(|t| self.spawner.adopt(main, t));
        let spawned =
            match watched {
                Ok(s) => s,
                Err(e) => {
                    self.record(Event::new(name, "mainpid", "notify", false).pid(old).error(
                        format!("MAINPID={main} refused: {e}; still tracking pid {old}"),
                    ));
                    return false;
                }
            };
        let svc = self.services.get_mut(name).expect("UNWRAP: checked above");
        svc.pid = Some(main);
        let record = PidRecord::of(
            main,
            spawned.start_ticks,
            name,
            &svc.spec.host,
            svc.port,
            &svc.spec.command,
        );
        if let Ok(f) = ServicePidFile::write(&svc.spec.pidfile, &record) {
            svc.pidfile = Some(f);
        }
        let instance = svc.instance;
        self.report_exit(name, instance, spawned);
        self.record(
            Event::new(name, "mainpid", "notify", true)
                .pid(main)
                .detail(format!("MAINPID={main}: tracking pid {main} (was {old})")),
        );
        true
    }

    /// At ready: the watchdog's first period starts, if the service has one.
    pub(super) fn arm_watchdog(&mut self, name: &str) {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        let Some(limit) = svc.spec.watchdog else {
            return;
        };
        svc.notify.pinged_at = Some(Instant::now());
        let (instance, token) = (svc.instance, svc.instance_token.clone());
        self.after(
            limit,
            Some(token),
            Fact::WatchdogDue {
                name: name.to_owned(),
                instance,
            },
        );
    }

    /// A watchdog period has passed: a ping within it re-arms the timer for the rest of the
    /// period after that ping (after a miss, it also counts as a healthy result); none is a
    /// miss. `RELOADING=1` and `STOPPING=1` pause the verdicts. Returns whether it judged
    /// (a miss, or a recovery), that is whether anything shown changed.
    pub(super) fn watchdog_due(&mut self, name: &str, instance: u64) -> bool {
        let Some(svc) = self.current(name, instance, State::Running) else {
            return false;
        };
        let Some(limit) = svc.spec.watchdog else {
            return false;
        };
        let now = Instant::now();
        let since = svc
            .notify
            .pinged_at
            .map_or(limit, |t| now.saturating_duration_since(t));
        let token = Some(svc.instance_token.clone());
        let due = |wait| {
            (
                wait,
                token,
                Fact::WatchdogDue {
                    name: name.to_owned(),
                    instance,
                },
            )
        };
        if svc.notify.phase.is_some() || since < limit {
            let recovered = svc.notify.phase.is_none() && std::mem::take(&mut svc.notify.missed);
            let (wait, token, fact) = due(if svc.notify.phase.is_some() {
                limit
            } else {
                limit - since
            });
            self.after(wait, token, fact);
            if recovered {
                let ok = CheckResult {
                    check: "watchdog".into(),
                    status: Status::Healthy,
                    message: "WATCHDOG=1 arrives again".into(),
                    duration_ms: 0.0,
                };
                self.judge_watchdog(name, ok);
            }
            return recovered;
        }
        // The next verdict is one whole period later.
        svc.notify.pinged_at = Some(now);
        let (wait, token, fact) = due(limit);
        self.after(wait, token, fact);
        self.watchdog_missed(name, format!("no WATCHDOG=1 for {}", Secs(since)));
        true
    }

    /// A missed ping (or `WATCHDOG=trigger`): an event, and a critical result with the
    /// reason `watchdog` for the recovery ladder and its breaker.
    fn watchdog_missed(&mut self, name: &str, why: String) {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        svc.notify.missed = true;
        let pid = svc.pid.unwrap_or_default();
        self.record(
            Event::new(name, "watchdog", "watchdog", false)
                .pid(pid)
                .error(why.clone()),
        );
        let critical = CheckResult {
            check: "watchdog".into(),
            status: Status::Critical,
            message: why,
            duration_ms: 0.0,
        };
        self.judge_watchdog(name, critical);
    }

    fn judge_watchdog(&mut self, name: &str, result: CheckResult) {
        let instance = self.services[name].instance;
        let tick = Tick {
            status: result.status,
            results: vec![result],
            process: None,
        };
        self.health_checked(name, instance, tick, "watchdog");
    }

    /// An essential service (SPEC §14) has ended for good: the first one stops the stack, and
    /// guardian exits with its code.
    pub(super) fn ended_for_good(&mut self, name: &str, code: i32) {
        if !self.services[name].spec.essential || self.exit_code.is_some() {
            return;
        }
        self.exit_code = Some(code);
        self.record(
            Event::new(name, "essential", "exit", code == 0).detail(format!(
                "essential service {name} ended for good: stopping every service; guardian exits with {code}"
            )),
        );
        if self.shutting_down.is_none() {
            self.begin_shutdown(false, None);
        }
    }
}

/// How much later a deadline falls than planned, after `EXTEND_TIMEOUT_USEC`.
pub(super) fn extended(svc: &Service) -> Option<Duration> {
    svc.notify
        .extended_until
        .map(|t| t.saturating_duration_since(Instant::now()))
        .filter(|d| !d.is_zero())
}
