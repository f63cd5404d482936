//! The last hour of each service, minute by minute, for the page's charts (issue 35):
//! restarts, health results, and CPU and memory where they are measured: by its health checks
//! (resource thresholds), or, with `metrics.enabled`, read from /proc through the API's facts
//! cache (CPU there is the average since the process started). Folded from the published
//! snapshots, at most once every `EVERY` and only when
//! one changed (nothing runs while nothing happens), and once more when a chart is asked for.
//! Cost: 60 minutes of 24 bytes and the counters, under 2 KB a service, 2 MB at 1000.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::health::resources::ProcessInfo;
use crate::supervisor::Snapshot;

/// Facts of services that measure nothing themselves but have `metrics.enabled`, by name.
pub type Measured = HashMap<String, ProcessInfo>;

/// Reads the facts `fold` needs for the metrics-enabled services of `snap` (through the cache,
/// so at most one /proc read a second a process, shared with /metrics and /diagnostics).
pub async fn measure(
    facts: &Arc<crate::api::facts::FactsCache>,
    wanted: Vec<(String, i32)>,
) -> Measured {
    if wanted.is_empty() {
        return Measured::new();
    }
    let pids: Vec<i32> = wanted.iter().map(|(_, p)| *p).collect();
    let got = facts.get(&pids).await;
    wanted
        .into_iter()
        .zip(got)
        .filter_map(|((name, _), f)| Some((name, f?)))
        .collect()
}

/// The running services of `snap` with `metrics.enabled` and no sample of their own.
pub fn to_measure(snap: &Snapshot) -> Vec<(String, i32)> {
    snap.services
        .iter()
        .filter(|s| s.detail.metrics_file.is_some() && s.detail.process.is_none())
        .filter_map(|s| Some((s.name.clone(), s.pid?)))
        .collect()
}

/// Minutes kept.
pub const MINUTES: u64 = 60;
/// The least time between two folds of the published snapshot.
pub const EVERY: Duration = Duration::from_secs(5);

/// One minute of one service.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Minute {
    /// Its start, Unix seconds.
    pub t: u64,
    pub restarts: u32,
    pub checks_ok: u32,
    pub checks_failed: u32,
    /// The highest sample in the minute.
    pub cpu_percent: Option<f32>,
    pub memory_mb: Option<f32>,
}

#[derive(Default)]
struct Series {
    /// The counters at the last fold; a minute gets what they grew by.
    restarts: u64,
    performed: u64,
    failed: u64,
    minutes: VecDeque<Minute>,
}

#[derive(Default)]
pub struct History {
    /// std Mutex: held for one fold or one read, never across .await.
    by_service: Mutex<HashMap<String, Series>>,
}

impl History {
    /// Adds what changed since the last fold to the minute `now` (Unix seconds) falls in.
    /// A service seen for the first time starts from its counters as they are (what came
    /// before is not in the hour it saw); one gone from the snapshot is forgotten.
    pub fn fold(&self, snap: &Snapshot, measured: &Measured, now: u64) {
        let minute = now - now % 60;
        let mut all = self
            .by_service
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held");
        all.retain(|name, _| snap.services.iter().any(|s| &s.name == name));
        for s in &snap.services {
            let d = &s.detail;
            let series = all.entry(s.name.clone()).or_insert_with(|| Series {
                restarts: s.restarts,
                performed: d.checks_performed,
                failed: d.checks_failed,
                minutes: VecDeque::new(),
            });
            // Counters that went down were reset (the service was replaced by a reload).
            let grew = |now: u64, before: u64| now.saturating_sub(before) as u32;
            let restarts = grew(s.restarts, series.restarts);
            let failed = grew(d.checks_failed, series.failed);
            let ok = grew(d.checks_performed, series.performed).saturating_sub(failed);
            (series.restarts, series.performed, series.failed) =
                (s.restarts, d.checks_performed, d.checks_failed);
            let sample = d.process.as_ref().or_else(|| measured.get(&s.name));
            if restarts == 0 && ok == 0 && failed == 0 && sample.is_none() {
                continue;
            }
            if series.minutes.back().is_none_or(|m| m.t != minute) {
                series.minutes.push_back(Minute {
                    t: minute,
                    ..Minute::default()
                });
            }
            while series
                .minutes
                .front()
                .is_some_and(|m| m.t + MINUTES * 60 <= minute)
            {
                series.minutes.pop_front();
            }
            let m = series.minutes.back_mut().expect("UNWRAP: pushed above");
            m.restarts += restarts;
            m.checks_ok += ok;
            m.checks_failed += failed;
            if let Some(p) = sample {
                let max = |old: Option<f32>, new: f32| Some(old.map_or(new, |o| o.max(new)));
                if let Some(cpu) = p.cpu_percent {
                    m.cpu_percent = max(m.cpu_percent, cpu as f32);
                }
                m.memory_mb = max(m.memory_mb, p.memory_mb as f32);
            }
        }
    }

    /// The service's minutes within the hour before `now`, oldest first.
    pub fn of(&self, service: &str, now: u64) -> Option<Vec<Minute>> {
        let all = self
            .by_service
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held");
        let s = all.get(service)?;
        let from = (now - now % 60).saturating_sub((MINUTES - 1) * 60);
        Some(s.minutes.iter().filter(|m| m.t >= from).copied().collect())
    }
}

/// Folds each published snapshot, at most once every `EVERY`, until `stop`.
pub async fn run(
    history: Arc<History>,
    facts: Arc<crate::api::facts::FactsCache>,
    mut snapshots: tokio::sync::watch::Receiver<Snapshot>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            r = snapshots.changed() => if r.is_err() { return },
            _ = stop.cancelled() => return,
        }
        let wanted = to_measure(&snapshots.borrow());
        let measured = measure(&facts, wanted).await;
        // Folded under the watch's read lock: no copy of a thousand services.
        history.fold(
            &snapshots.borrow_and_update(),
            &measured,
            crate::process::pidfile::unix_now() as u64,
        );
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::ServiceSnapshot;

    impl History {
        fn fold_at(&self, snap: &Snapshot, now: u64) {
            self.fold(snap, &Measured::new(), now);
        }
    }

    fn snap(restarts: u64, performed: u64, failed: u64) -> Snapshot {
        let mut s = ServiceSnapshot {
            name: "web".into(),
            restarts,
            ..ServiceSnapshot::default()
        };
        s.detail.checks_performed = performed;
        s.detail.checks_failed = failed;
        Snapshot {
            services: vec![s],
            ..Snapshot::default()
        }
    }

    #[test]
    fn minutes_count_what_grew_and_the_hour_slides() {
        let h = History::default();
        // Seen first with 3 restarts already: they are from before, not counted.
        h.fold_at(&snap(3, 10, 0), 6_000);
        assert_eq!(h.of("web", 6_000), Some(vec![]));
        h.fold_at(&snap(5, 16, 1), 6_030);
        h.fold_at(&snap(5, 18, 1), 6_075);
        let m = h.of("web", 6_075).unwrap();
        let want = |t, restarts, checks_ok, checks_failed| Minute {
            t,
            restarts,
            checks_ok,
            checks_failed,
            ..Minute::default()
        };
        assert_eq!(m, vec![want(6_000, 2, 5, 1), want(6_060, 0, 2, 0)]);
        // Reset counters (a reload replaced the service) count from their new values.
        h.fold_at(&snap(0, 0, 0), 6_100);
        h.fold_at(&snap(1, 0, 0), 6_110);
        assert_eq!(h.of("web", 6_110).unwrap()[1].restarts, 1);
        // An hour later the first minutes are gone.
        h.fold_at(&snap(2, 0, 0), 6_000 + 3_600);
        let m = h.of("web", 6_000 + 3_600).unwrap();
        assert_eq!(m, vec![want(6_060, 1, 2, 0), want(9_600, 1, 0, 0)]);
        // A service gone from the snapshot is forgotten.
        h.fold_at(&Snapshot::default(), 9_700);
        assert_eq!(h.of("web", 9_700), None);
    }
}
