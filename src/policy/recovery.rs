//! Graduated recovery (SPEC §5): which step to take, when, and whether the last one worked.
//! Warnings climb log_warning → clear_connections; criticals climb clear_connections →
//! restart_service → emergency_stop. A step climbs one rung when it errors or when the service
//! is not healthy again within `unhealthy_threshold` checks after it; a success brings both
//! ladders back to their first rung. No two steps closer than `min_recovery_interval`, and
//! none while the breaker is open. Pure: callers pass the status they observed and `now`.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::breaker::{Breaker, BreakerState};
use super::health::Status;
use crate::config::RecoverySpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    LogWarning,
    ClearConnections,
    RestartService,
    EmergencyStop,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::LogWarning,
        Action::ClearConnections,
        Action::RestartService,
        Action::EmergencyStop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::LogWarning => "log_warning",
            Action::ClearConnections => "clear_connections",
            Action::RestartService => "restart_service",
            Action::EmergencyStop => "emergency_stop",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ladder {
    Warning = 0,
    Critical = 1,
}

impl Ladder {
    /// The rungs; clear_connections is skipped when it is not configured.
    fn rungs(self, has_clear: bool) -> Vec<Action> {
        let all: &[Action] = match self {
            Ladder::Warning => &[Action::LogWarning, Action::ClearConnections],
            Ladder::Critical => &[
                Action::ClearConnections,
                Action::RestartService,
                Action::EmergencyStop,
            ],
        };
        all.iter()
            .copied()
            .filter(|a| has_clear || *a != Action::ClearConnections)
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Pending {
    action: Action,
    ladder: Ladder,
    /// Still running: its outcome comes through `finished`.
    running: bool,
    /// Checks seen since it finished.
    checks: u32,
}

/// What the caller should do after an observation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Advice {
    /// An earlier step, judged now: the action and whether it brought the service back.
    pub judged: Option<(Action, bool)>,
    /// The breaker moved to this state.
    pub breaker: Option<BreakerState>,
    /// Run this now, then report its outcome with `finished`.
    pub act: Option<Action>,
}

#[derive(Clone, Debug, Default)]
pub struct Recovery {
    warnings: VecDeque<Instant>,
    criticals: VecDeque<Instant>,
    rung: [usize; 2],
    pending: Option<Pending>,
    last_action: Option<Instant>,
    breaker: Breaker,
}

impl Recovery {
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The step in flight or waiting for its verdict.
    pub fn pending(&self) -> Option<Action> {
        self.pending.as_ref().map(|p| p.action)
    }

    /// Takes the service's status after a health check.
    pub fn observe(
        &mut self,
        spec: &RecoverySpec,
        unhealthy_threshold: u32,
        status: Status,
        now: Instant,
    ) -> Advice {
        let b = &spec.circuit_breaker;
        let mut advice = Advice {
            breaker: self.breaker.poll(b, now),
            ..Advice::default()
        };
        if let Some(p) = self.pending.as_mut().filter(|p| !p.running) {
            if status == Status::Healthy {
                advice.judged = Some((p.action, true));
                advice.breaker = self.settle(spec, true, now).or(advice.breaker);
            } else {
                p.checks += 1;
                if p.checks >= unhealthy_threshold {
                    advice.judged = Some((p.action, false));
                    advice.breaker = self.settle(spec, false, now).or(advice.breaker);
                }
            }
        }
        match status {
            Status::Warning => self.warnings.push_back(now),
            Status::Critical => self.criticals.push_back(now),
            _ => {}
        }
        for q in [&mut self.warnings, &mut self.criticals] {
            while q
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > spec.failure_window)
            {
                q.pop_front();
            }
        }
        if !spec.enabled || self.pending.is_some() {
            return advice;
        }
        let ladder = if self.criticals.len() >= spec.critical_threshold as usize {
            Ladder::Critical
        } else if self.warnings.len() >= spec.warning_threshold as usize {
            Ladder::Warning
        } else {
            return advice;
        };
        if self
            .last_action
            .is_some_and(|t| now.saturating_duration_since(t) < spec.min_recovery_interval)
        {
            return advice;
        }
        if !self.breaker.allows(b, now) {
            return advice;
        }
        let rungs = ladder.rungs(spec.clear_connections.is_some());
        let action = rungs[self.rung[ladder as usize].min(rungs.len() - 1)];
        self.pending = Some(Pending {
            action,
            ladder,
            running: true,
            checks: 0,
        });
        self.last_action = Some(now);
        self.warnings.clear();
        self.criticals.clear();
        advice.act = Some(action);
        advice
    }

    /// The outcome of the step in flight: an error fails it at once; otherwise the next
    /// health checks judge it. emergency_stop is final: the service stays failed.
    pub fn finished(&mut self, spec: &RecoverySpec, ok: bool, now: Instant) -> Advice {
        let Some(p) = self.pending.as_mut().filter(|p| p.running) else {
            return Advice::default();
        };
        let action = p.action;
        if action == Action::EmergencyStop {
            self.pending = None;
            return Advice::default();
        }
        if ok {
            p.running = false;
            return Advice::default();
        }
        Advice {
            judged: Some((action, false)),
            breaker: self.settle(spec, false, now),
            act: None,
        }
    }

    /// Ends the pending step: success returns both ladders to their first rung, failure climbs.
    fn settle(&mut self, spec: &RecoverySpec, success: bool, now: Instant) -> Option<BreakerState> {
        let p = self.pending.take()?;
        if success {
            self.rung = [0, 0];
        } else {
            let top = p.ladder.rungs(spec.clear_connections.is_some()).len() - 1;
            let r = &mut self.rung[p.ladder as usize];
            *r = (*r + 1).min(top);
        }
        self.breaker.record(&spec.circuit_breaker, success, now)
    }

    /// How long until an action may run again, if one is held back by the interval.
    pub fn cooldown(&self, spec: &RecoverySpec, now: Instant) -> Option<Duration> {
        let until = self.last_action? + spec.min_recovery_interval;
        (until > now).then(|| until - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BreakerSpec, ClearConnections};
    use Status::*;

    fn spec(clear: bool) -> RecoverySpec {
        RecoverySpec {
            enabled: true,
            warning_threshold: 2,
            critical_threshold: 1,
            failure_window: Duration::from_secs(300),
            min_recovery_interval: Duration::ZERO,
            clear_connections: clear.then(|| ClearConnections::Http {
                method: "POST".into(),
                path: "/admin/disconnect-all".into(),
            }),
            circuit_breaker: BreakerSpec {
                failure_threshold: 5,
                open_timeout: Duration::from_secs(300),
                success_threshold: 1,
            },
        }
    }

    #[derive(Clone, Copy)]
    enum Step {
        /// A health check with this status.
        See(Status),
        /// The step in flight finished, with or without error.
        Done(bool),
        Wait(u64),
    }
    use Step::*;

    /// Runs the steps one second apart and logs what the machine said.
    async fn run(spec: &RecoverySpec, steps: &[Step]) -> Vec<String> {
        let mut r = Recovery::default();
        let mut log = Vec::new();
        for step in steps {
            let now = Instant::now();
            let advice = match *step {
                See(s) => r.observe(spec, 3, s, now),
                Done(ok) => r.finished(spec, ok, now),
                Wait(s) => {
                    tokio::time::advance(Duration::from_secs(s)).await;
                    continue;
                }
            };
            if let Some((a, ok)) = advice.judged {
                log.push(format!(
                    "{} {}",
                    a.as_str(),
                    if ok { "worked" } else { "failed" }
                ));
            }
            if let Some(b) = advice.breaker {
                log.push(format!("breaker {}", b.as_str()));
            }
            if let Some(a) = advice.act {
                log.push(format!("do {}", a.as_str()));
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        log
    }

    #[tokio::test(start_paused = true)]
    async fn critical_climbs_one_rung_per_failed_step() {
        let steps = [
            See(Critical),
            Done(true),
            See(Critical),
            See(Critical),
            See(Critical),
            Done(true),
            See(Unknown),
            See(Critical),
            See(Critical),
            Done(true),
        ];
        let want = [
            "do clear_connections",
            "clear_connections failed",
            "do restart_service",
            "restart_service failed",
            "do emergency_stop",
        ];
        assert_eq!(run(&spec(true), &steps).await, want);
    }

    #[tokio::test(start_paused = true)]
    async fn unconfigured_clear_connections_is_skipped() {
        let steps = [
            See(Critical),
            Done(true),
            See(Critical),
            See(Critical),
            See(Critical),
        ];
        let want = [
            "do restart_service",
            "restart_service failed",
            "do emergency_stop",
        ];
        assert_eq!(run(&spec(false), &steps).await, want);
    }

    #[tokio::test(start_paused = true)]
    async fn warnings_log_then_clear_and_success_resets() {
        let steps = [
            See(Warning),
            See(Warning),
            Done(true),
            See(Warning),
            See(Warning),
            See(Warning),
            See(Warning),
            Done(true),
            See(Healthy),
            See(Warning),
            See(Warning),
        ];
        let want = [
            "do log_warning",
            "log_warning failed",
            "do clear_connections",
            "clear_connections worked",
            "do log_warning",
        ];
        assert_eq!(run(&spec(true), &steps).await, want);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_fails_the_step_at_once() {
        let steps = [See(Critical), Done(false), See(Critical)];
        let want = [
            "do clear_connections",
            "clear_connections failed",
            "do restart_service",
        ];
        assert_eq!(run(&spec(true), &steps).await, want);
    }

    #[tokio::test(start_paused = true)]
    async fn min_recovery_interval_holds_the_next_step() {
        let s = RecoverySpec {
            min_recovery_interval: Duration::from_secs(60),
            ..spec(true)
        };
        // clear at t=0 fails by t=3; criticals at 4..=6 are held; at 64 the restart runs.
        let steps = [
            See(Critical),
            Done(true),
            See(Critical),
            See(Critical),
            See(Critical),
            See(Critical),
            See(Critical),
            Wait(53),
            See(Critical),
        ];
        let want = [
            "do clear_connections",
            "clear_connections failed",
            "do restart_service",
        ];
        assert_eq!(run(&s, &steps).await, want);
    }

    #[tokio::test(start_paused = true)]
    async fn warnings_outside_the_window_do_not_add_up() {
        let s = RecoverySpec {
            failure_window: Duration::from_secs(30),
            ..spec(true)
        };
        let steps = [See(Warning), Wait(40), See(Warning), Wait(40), See(Warning)];
        assert!(run(&s, &steps).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_recovery_never_acts() {
        let s = RecoverySpec {
            enabled: false,
            ..spec(true)
        };
        let steps = [See(Critical), See(Critical), See(Warning), See(Warning)];
        assert!(run(&s, &steps).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_holds_then_lets_one_through() {
        let s = RecoverySpec {
            circuit_breaker: BreakerSpec {
                failure_threshold: 2,
                open_timeout: Duration::from_secs(100),
                success_threshold: 1,
            },
            ..spec(true)
        };
        let steps = [
            See(Critical),
            Done(false),
            See(Critical),
            Done(false),
            // Open: criticals change nothing for open_timeout.
            See(Critical),
            Wait(50),
            See(Critical),
            Wait(45),
            // 100 s after it opened: half_open, one action runs.
            See(Critical),
            See(Critical),
            Done(true),
            See(Healthy),
        ];
        let want = [
            "do clear_connections",
            "clear_connections failed",
            "do restart_service",
            "restart_service failed",
            "breaker open",
            "breaker half_open",
            "do emergency_stop",
        ];
        assert_eq!(run(&s, &steps).await, want);
        // In half_open the second critical did not start a second action while one ran.
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_success_closes() {
        let s = RecoverySpec {
            circuit_breaker: BreakerSpec {
                failure_threshold: 1,
                open_timeout: Duration::from_secs(10),
                success_threshold: 1,
            },
            ..spec(true)
        };
        let steps = [
            See(Critical),
            Done(false),
            Wait(10),
            See(Critical),
            Done(true),
            See(Healthy),
        ];
        let want = [
            "do clear_connections",
            "clear_connections failed",
            "breaker open",
            "breaker half_open",
            "do restart_service",
            "restart_service worked",
            "breaker closed",
        ];
        assert_eq!(run(&s, &steps).await, want);
    }
}
