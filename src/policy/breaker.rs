//! The circuit breaker over recovery actions: closed → open after `failure_threshold`
//! consecutive failed recoveries → half_open once `open_timeout` has passed → closed after
//! `success_threshold` successes; a failure while half_open opens it again. Pure.

use serde::Serialize;
use tokio::time::Instant;

use crate::config::BreakerSpec;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    #[default]
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }

    /// The number of `guardian_circuit_breaker_state` (SPEC §6).
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Breaker {
    state: BreakerState,
    /// Consecutive failures while closed; successes while half_open.
    count: u32,
    opened_at: Option<Instant>,
}

impl Breaker {
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// When an open breaker lets the next action through.
    pub fn reopens_at(&self, spec: &BreakerSpec) -> Option<Instant> {
        (self.state == BreakerState::Open)
            .then(|| self.opened_at.map(|t| t + spec.open_timeout))
            .flatten()
    }

    /// Moves open → half_open once `open_timeout` has passed; returns the new state if it moved.
    pub fn poll(&mut self, spec: &BreakerSpec, now: Instant) -> Option<BreakerState> {
        match self.reopens_at(spec) {
            Some(at) if now >= at => {
                self.state = BreakerState::HalfOpen;
                self.count = 0;
                Some(self.state)
            }
            _ => None,
        }
    }

    /// May a recovery action run now?
    pub fn allows(&mut self, spec: &BreakerSpec, now: Instant) -> bool {
        self.poll(spec, now);
        self.state != BreakerState::Open
    }

    /// Feeds one recovery's outcome; returns the new state if it moved.
    pub fn record(
        &mut self,
        spec: &BreakerSpec,
        success: bool,
        now: Instant,
    ) -> Option<BreakerState> {
        self.poll(spec, now);
        let before = self.state;
        match (self.state, success) {
            (BreakerState::Closed, true) => self.count = 0,
            (BreakerState::Closed, false) => {
                self.count += 1;
                if self.count >= spec.failure_threshold {
                    self.open(now);
                }
            }
            (BreakerState::HalfOpen, true) => {
                self.count += 1;
                if self.count >= spec.success_threshold {
                    self.state = BreakerState::Closed;
                    self.count = 0;
                }
            }
            (BreakerState::HalfOpen, false) => self.open(now),
            // No action runs while open; a late outcome keeps it open.
            (BreakerState::Open, _) => {}
        }
        (self.state != before).then_some(self.state)
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open;
        self.count = 0;
        self.opened_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use BreakerState::*;

    fn spec() -> BreakerSpec {
        BreakerSpec {
            failure_threshold: 3,
            open_timeout: Duration::from_secs(60),
            success_threshold: 2,
        }
    }

    enum Step {
        Fail,
        Ok,
        Wait(u64),
    }
    use Step::*;

    #[tokio::test(start_paused = true)]
    async fn full_cycle_on_the_clock() {
        let s = spec();
        let mut b = Breaker::default();
        // (step, state after it, may an action run after it)
        let table = [
            (Fail, Closed, true),
            (Ok, Closed, true),
            (Fail, Closed, true),
            (Fail, Closed, true),
            (Fail, Open, false),
            (Wait(59), Open, false),
            (Wait(1), HalfOpen, true),
            (Fail, Open, false),
            (Wait(60), HalfOpen, true),
            (Ok, HalfOpen, true),
            (Ok, Closed, true),
            (Fail, Closed, true),
        ];
        for (i, (step, state, allowed)) in table.into_iter().enumerate() {
            let now = Instant::now();
            match step {
                Fail => {
                    b.record(&s, false, now);
                }
                Ok => {
                    b.record(&s, true, now);
                }
                Wait(secs) => tokio::time::advance(Duration::from_secs(secs)).await,
            }
            assert_eq!(b.allows(&s, Instant::now()), allowed, "step {i}");
            assert_eq!(b.state(), state, "step {i}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reports_each_move_once() {
        let s = BreakerSpec {
            failure_threshold: 1,
            success_threshold: 1,
            ..spec()
        };
        let mut b = Breaker::default();
        let t0 = Instant::now();
        assert_eq!(b.record(&s, false, t0), Some(Open));
        assert_eq!(b.reopens_at(&s), Some(t0 + Duration::from_secs(60)));
        assert_eq!(b.poll(&s, t0 + Duration::from_secs(30)), None);
        assert_eq!(b.poll(&s, t0 + Duration::from_secs(60)), Some(HalfOpen));
        assert_eq!(b.poll(&s, t0 + Duration::from_secs(61)), None);
        assert_eq!(
            b.record(&s, true, t0 + Duration::from_secs(61)),
            Some(Closed)
        );
        assert_eq!(b.record(&s, true, t0 + Duration::from_secs(62)), None);
    }
}
