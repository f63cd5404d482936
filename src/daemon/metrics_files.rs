//! The metrics files of SPEC §6: the guardian's `metrics_file` with every service, and each
//! service's own `metrics.file` when `metrics.enabled`. Rewritten atomically (temporary file
//! and rename) after state changes and health checks, never more often than once a second.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::policy::health::Status;
use crate::process::pidfile::write_atomic;
use crate::supervisor::{ServiceSnapshot, Snapshot, State};

/// The least time between two writes.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The flat per-service form, serialized straight from the snapshot (no JSON tree: at a
/// thousand services a tree of values cost megabytes each write).
#[derive(Clone, Copy, Serialize)]
pub struct Flat<'a> {
    service: &'a str,
    start_time: Option<f64>,
    restarts: u64,
    total_failures: u64,
    last_failure: Option<f64>,
    health_checks_passed: u64,
    health_checks_failed: u64,
    uptime_seconds: Option<f64>,
    last_health_check: Option<f64>,
    status: &'static str,
    state: State,
    pid: Option<i32>,
}

impl<'a> Flat<'a> {
    pub fn of(s: &'a ServiceSnapshot) -> Flat<'a> {
        let d = &s.detail;
        let passed = d
            .checks_by_result
            .iter()
            .find(|(st, _)| *st == Status::Healthy)
            .map_or(0, |(_, n)| *n);
        Flat {
            service: &s.name,
            start_time: d.start_time,
            restarts: s.restarts,
            total_failures: d.total_failures,
            last_failure: d.last_failure,
            health_checks_passed: passed,
            health_checks_failed: d.checks_failed,
            uptime_seconds: s.uptime_seconds,
            last_health_check: d.last_check,
            status: if s.state == State::Running {
                s.health.as_str()
            } else {
                s.state.as_str()
            },
            state: s.state,
            pid: s.pid,
        }
    }
}

/// The guardian's file: its own figures and every service's flat form.
#[derive(Serialize)]
struct All<'a> {
    guardian: Guardian,
    services: Services<'a>,
}

#[derive(Serialize)]
struct Guardian {
    pid: u32,
    version: &'static str,
    uptime_seconds: f64,
    config_generation: u64,
}

/// The services as a map by name, serialized as it is read.
struct Services<'a>(&'a [ServiceSnapshot]);

impl Serialize for Services<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = ser.serialize_map(Some(self.0.len()))?;
        for s in self.0 {
            map.serialize_entry(&s.name, &Flat::of(s))?;
        }
        map.end()
    }
}

/// True when the file was written.
fn write(path: &Path, doc: &impl Serialize) -> bool {
    let mut bytes = serde_json::to_vec_pretty(doc).expect("UNWRAP: plain structs serialize");
    bytes.push(b'\n');
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match write_atomic(path, &bytes, false) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the metrics file");
            false
        }
    }
}

/// Writes every file of this snapshot. Blocking.
/// What each service's own file last said, uptime aside (a hash of it, by service name).
pub type Written = std::collections::HashMap<String, u64>;

/// Writes the guardian's file, and the file of each service whose entry changed (its state,
/// its checks, its restarts) since `written` was filled: a service that had no check and no
/// change keeps its file, so that a thousand of them cost no thousand files a second.
pub fn write_all(snap: &Snapshot, guardian_uptime: f64, written: &mut Written) {
    if let Some(path) = &snap.metrics_file {
        let doc = All {
            guardian: Guardian {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION"),
                uptime_seconds: guardian_uptime,
                config_generation: snap.config_generation,
            },
            services: Services(&snap.services),
        };
        write(path, &doc);
    }
    if !written.is_empty() {
        let names: std::collections::HashSet<&str> =
            snap.services.iter().map(|s| s.name.as_str()).collect();
        written.retain(|name, _| names.contains(name.as_str()));
    }
    for s in &snap.services {
        let Some(path) = &s.detail.metrics_file else {
            continue;
        };
        let flat = Flat::of(s);
        let without_uptime = Flat {
            uptime_seconds: None,
            ..flat
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(
            &serde_json::to_vec(&without_uptime).unwrap_or_default(),
            &mut h,
        );
        std::hash::Hash::hash(path, &mut h);
        let now = std::hash::Hasher::finish(&h);
        if written.get(&s.name) != Some(&now) && write(path, &flat) {
            written.insert(s.name.clone(), now);
        }
    }
}

/// Follows the snapshot until cancelled: one write per change, at most one per second, and
/// always the latest state in the end.
pub async fn run(mut rx: watch::Receiver<Snapshot>, token: CancellationToken, started: f64) {
    let mut written = Written::new();
    loop {
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = token.cancelled() => return,
        }
        let snap = rx
            .borrow_and_update()
            .clone()
            .at(tokio::time::Instant::now());
        let uptime = (crate::process::pidfile::unix_now() - started).max(0.0);
        let mut was = std::mem::take(&mut written);
        written = tokio::task::spawn_blocking(move || {
            write_all(&snap, uptime, &mut was);
            was
        })
        .await
        .unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(MIN_INTERVAL) => {}
            _ = token.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::ServiceSnapshot;
    use serde_json::Value;

    fn service(dir: &Path, name: &str) -> ServiceSnapshot {
        let mut s = ServiceSnapshot {
            name: name.into(),
            uptime_seconds: Some(1.0),
            ..Default::default()
        };
        s.detail.metrics_file = Some(dir.join(format!("{name}-metrics.json")));
        s
    }

    #[test]
    fn a_service_file_is_rewritten_only_when_its_service_changed() {
        let dir = tempfile::tempdir().unwrap();
        let file = |n: &str| dir.path().join(format!("{n}-metrics.json"));
        let mut snap = Snapshot {
            services: vec![service(dir.path(), "a"), service(dir.path(), "b")],
            metrics_file: Some(dir.path().join("metrics.json")),
            ..Default::default()
        };
        let mut written = Written::new();
        write_all(&snap, 1.0, &mut written);
        assert!(file("a").exists() && file("b").exists());
        std::fs::remove_file(file("a")).unwrap();
        std::fs::remove_file(file("b")).unwrap();
        std::fs::remove_file(dir.path().join("metrics.json")).unwrap();
        // a restarted; b only aged.
        snap.services[0].restarts = 1;
        snap.services[1].uptime_seconds = Some(2.0);
        write_all(&snap, 2.0, &mut written);
        let a: Value = serde_json::from_slice(&std::fs::read(file("a")).unwrap()).unwrap();
        assert_eq!(a["restarts"], 1);
        assert!(
            !file("b").exists(),
            "b did not change: its file is not rewritten"
        );
        let all: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("metrics.json")).unwrap())
                .unwrap();
        assert_eq!(all["services"]["b"]["uptime_seconds"], 2.0);
    }
}
