//! The metrics files of SPEC §6: the guardian's `metrics_file` with every service, and each
//! service's own `metrics.file` when `metrics.enabled`. Rewritten atomically (temporary file
//! and rename) after state changes and health checks, never more often than once a second.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::policy::health::Status;
use crate::process::pidfile::write_atomic;
use crate::supervisor::{ServiceSnapshot, Snapshot, State};

/// The least time between two writes.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The flat per-service form.
pub fn flat(s: &ServiceSnapshot) -> Value {
    let d = &s.detail;
    let passed = d
        .checks_by_result
        .iter()
        .find(|(st, _)| *st == Status::Healthy)
        .map_or(0, |(_, n)| *n);
    json!({
        "service": s.name,
        "start_time": d.start_time,
        "restarts": s.restarts,
        "total_failures": d.total_failures,
        "last_failure": d.last_failure,
        "health_checks_passed": passed,
        "health_checks_failed": d.checks_failed,
        "uptime_seconds": s.uptime_seconds,
        "last_health_check": d.last_check,
        "status": if s.state == State::Running { s.health.as_str() } else { s.state.as_str() },
        "state": s.state,
        "pid": s.pid,
    })
}

/// True when the file was written.
fn write(path: &Path, doc: &Value) -> bool {
    let mut bytes = serde_json::to_vec_pretty(doc).expect("UNWRAP: JSON values serialize");
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
    let services: serde_json::Map<String, Value> = snap
        .services
        .iter()
        .map(|s| (s.name.clone(), flat(s)))
        .collect();
    if let Some(path) = &snap.metrics_file {
        let doc = json!({
            "guardian": {
                "pid": std::process::id(),
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": guardian_uptime,
                "config_generation": snap.config_generation,
            },
            "services": services,
        });
        write(path, &doc);
    }
    written.retain(|name, _| services.contains_key(name));
    for s in &snap.services {
        let Some(path) = &s.detail.metrics_file else {
            continue;
        };
        let flat = &services[&s.name];
        let mut without_uptime = flat.clone();
        if let Some(o) = without_uptime.as_object_mut() {
            o.remove("uptime_seconds");
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&without_uptime.to_string(), &mut h);
        std::hash::Hash::hash(path, &mut h);
        let now = std::hash::Hasher::finish(&h);
        if written.get(&s.name) != Some(&now) && write(path, flat) {
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
