//! Health verdicts: a value against its thresholds, the worst of a tick's results, and the
//! service's status over time (`unhealthy_threshold` consecutive failed ticks make it critical),
//! with a bounded history and an aggregated view. Pure: callers pass `now`.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::config::Threshold;

/// A health result. Ordered from best to worst: a tick's status is its worst result, and
/// `unknown` ranks above `healthy`, so a check that cannot decide never reads as healthy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    #[default]
    Unknown,
    Warning,
    Critical,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Healthy,
        Status::Unknown,
        Status::Warning,
        Status::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Unknown => "unknown",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }

    /// The number of `guardian_service_health_status` (SPEC §6).
    pub fn gauge(self) -> i64 {
        match self {
            Status::Unknown => 0,
            Status::Healthy => 1,
            Status::Warning => 2,
            Status::Critical => 3,
        }
    }

    /// The worst of several results; `healthy` when there are none.
    pub fn worst(all: impl IntoIterator<Item = Status>) -> Status {
        all.into_iter().max().unwrap_or(Status::Healthy)
    }
}

/// A measured value against its thresholds; `None` (not measurable) is `unknown`.
pub fn judge(value: Option<f64>, t: &Threshold) -> Status {
    match value {
        None => Status::Unknown,
        Some(v) if v >= t.critical => Status::Critical,
        Some(v) if v >= t.warning => Status::Warning,
        Some(_) => Status::Healthy,
    }
}

/// Counts per status, the worst and the last, over `aggregation_window`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Aggregate {
    pub healthy: u32,
    pub warning: u32,
    pub critical: u32,
    pub unknown: u32,
    pub worst: Option<Status>,
    pub last: Option<Status>,
}

/// One service's health over time.
#[derive(Clone, Debug, Default)]
pub struct Monitor {
    status: Status,
    consecutive_failures: u32,
    history: VecDeque<(Instant, Status)>,
    pub checks_performed: u64,
    pub checks_failed: u64,
}

impl Monitor {
    /// The service's status now.
    pub fn status(&self) -> Status {
        self.status
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// A new instance starts unjudged; the counters and history carry on.
    pub fn restart(&mut self) {
        self.status = Status::Unknown;
        self.consecutive_failures = 0;
    }

    /// Takes one tick's status and returns the service's. A critical tick makes the service
    /// critical only at the `unhealthy_threshold`-th in a row; before that the status stays
    /// what it was. Warnings count at once; `unknown` neither counts nor resets.
    pub fn observe(
        &mut self,
        tick: Status,
        now: Instant,
        unhealthy_threshold: u32,
        history_size: u32,
    ) -> Status {
        self.checks_performed += 1;
        self.history.push_back((now, tick));
        while self.history.len() > history_size as usize {
            self.history.pop_front();
        }
        match tick {
            Status::Healthy => {
                self.consecutive_failures = 0;
                self.status = Status::Healthy;
            }
            Status::Warning => {
                self.consecutive_failures = 0;
                self.status = Status::Warning;
            }
            Status::Critical => {
                self.checks_failed += 1;
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                if self.consecutive_failures >= unhealthy_threshold {
                    self.status = Status::Critical;
                }
            }
            Status::Unknown => self.status = Status::Unknown,
        }
        self.status
    }

    /// The ticks of the last `window`.
    pub fn aggregate(&self, now: Instant, window: Duration) -> Aggregate {
        let mut a = Aggregate::default();
        for (t, s) in &self.history {
            if now.saturating_duration_since(*t) > window {
                continue;
            }
            match s {
                Status::Healthy => a.healthy += 1,
                Status::Warning => a.warning += 1,
                Status::Critical => a.critical += 1,
                Status::Unknown => a.unknown += 1,
            }
            a.worst = a.worst.max(Some(*s));
            a.last = Some(*s);
        }
        a
    }

    pub fn history_len(&self) -> usize {
        self.history.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn thresholds_and_worst() {
        let t = Threshold {
            warning: 80.0,
            critical: 95.0,
        };
        let table = [
            (Some(10.0), Healthy),
            (Some(80.0), Warning),
            (Some(94.9), Warning),
            (Some(95.0), Critical),
            (None, Unknown),
        ];
        for (v, want) in table {
            assert_eq!(judge(v, &t), want, "{v:?}");
        }
        assert_eq!(Status::worst([Healthy, Unknown]), Unknown);
        assert_eq!(Status::worst([Warning, Healthy, Critical]), Critical);
        assert_eq!(Status::worst([]), Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn critical_only_after_consecutive_failures() {
        let mut m = Monitor::default();
        let table = [
            (Healthy, Healthy),
            (Critical, Healthy),
            (Critical, Healthy),
            (Critical, Critical),
            (Critical, Critical),
            (Unknown, Unknown),
            (Critical, Critical),
            (Healthy, Healthy),
            (Critical, Healthy),
            (Warning, Warning),
            (Critical, Warning),
        ];
        for (i, (tick, want)) in table.into_iter().enumerate() {
            let got = m.observe(tick, Instant::now(), 3, 5);
            assert_eq!(got, want, "tick {i}: {tick:?}");
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(m.checks_performed, 11);
        assert_eq!(m.checks_failed, 7);
        assert_eq!(m.history_len(), 5, "the ring keeps history_size results");
    }

    #[tokio::test(start_paused = true)]
    async fn aggregates_only_the_window() {
        let mut m = Monitor::default();
        for tick in [Critical, Critical, Healthy, Warning, Healthy] {
            m.observe(tick, Instant::now(), 3, 100);
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        // Now = 50 s; the window of 25 s holds the ticks at 30 s and 40 s.
        let a = m.aggregate(Instant::now(), Duration::from_secs(25));
        assert_eq!(
            a,
            Aggregate {
                healthy: 1,
                warning: 1,
                critical: 0,
                unknown: 0,
                worst: Some(Warning),
                last: Some(Healthy),
            }
        );
        assert_eq!(
            m.aggregate(Instant::now(), Duration::from_secs(60))
                .critical,
            2
        );
    }
}
