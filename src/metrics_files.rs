//! The metrics files of SPEC §6: the guardian's `metrics_file` with every service, and each
//! service's own `metrics.file` when `metrics.enabled`. Rewritten atomically (temporary file
//! and rename) after state changes and health checks, never more often than once a second.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::pidfile::write_atomic;
use crate::policy::health::Status;
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

fn write(path: &Path, doc: &Value) {
    let mut bytes = serde_json::to_vec_pretty(doc).expect("UNWRAP: JSON values serialize");
    bytes.push(b'\n');
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = write_atomic(path, &bytes, false) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the metrics file");
    }
}

/// Writes every file of this snapshot. Blocking.
pub fn write_all(snap: &Snapshot, guardian_uptime: f64) {
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
    for s in &snap.services {
        if let Some(path) = &s.detail.metrics_file {
            write(path, &services[&s.name]);
        }
    }
}

/// Follows the snapshot until cancelled: one write per change, at most one per second, and
/// always the latest state in the end.
pub async fn run(mut rx: watch::Receiver<Snapshot>, token: CancellationToken, started: f64) {
    loop {
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = token.cancelled() => return,
        }
        let snap = rx
            .borrow_and_update()
            .clone()
            .at(tokio::time::Instant::now());
        let uptime = (crate::pidfile::unix_now() - started).max(0.0);
        let _ = tokio::task::spawn_blocking(move || write_all(&snap, uptime)).await;
        tokio::select! {
            _ = tokio::time::sleep(MIN_INTERVAL) => {}
            _ = token.cancelled() => return,
        }
    }
}
