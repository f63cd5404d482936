//! The immutable view the API, the CLI and metrics read; published by the actor through a
//! `watch` channel, so nobody locks supervisor state.

use serde::Serialize;

use crate::health::CheckResult;
use crate::health::resources::ProcessInfo;
use crate::policy::breaker::BreakerState;
use crate::policy::health::{Aggregate, Status};
use crate::policy::recovery::Action;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Starting,
    Running,
    Backoff,
    Stopping,
    #[default]
    Stopped,
    Failed,
    /// Its dependencies' conditions do not hold yet.
    Waiting,
    /// A dependency failed.
    Blocked,
    /// Exited 0 and not restarted (`restart = "no"` or `"on-failure"`).
    Completed,
    /// The old instance of a start-first restart, stopped once its successor was ready.
    Draining,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Backoff => "backoff",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Failed => "failed",
            State::Waiting => "waiting",
            State::Blocked => "blocked",
            State::Completed => "completed",
            State::Draining => "draining",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServiceSnapshot {
    pub name: String,
    pub state: State,
    pub pid: Option<i32>,
    pub port: Option<u16>,
    /// Computed when the snapshot is read (`Snapshot::at`), from `started_at`.
    pub uptime_seconds: Option<f64>,
    /// When the current process started (running or starting services only).
    #[serde(skip)]
    pub started_at: Option<tokio::time::Instant>,
    pub restarts: u64,
    /// `unknown` unless the service runs.
    pub health: Status,
    pub circuit_breaker: BreakerState,
    pub adopted: bool,
    pub autostart: bool,
    pub consecutive_failures: u32,
    pub last_exit: Option<String>,
    pub last_error: Option<String>,
    /// When the next restart is due, in seconds from the read (`Snapshot::at`).
    pub next_restart_in: Option<f64>,
    #[serde(skip)]
    pub restart_at: Option<tokio::time::Instant>,
    /// `waiting for db (healthy)` or `blocked: its dependency db failed`.
    pub waiting_for: Option<String>,
    /// The exit code of the last run that ended on its own (a completed task's is 0).
    pub exit_code: Option<i32>,
    /// The declared service of a replica (`api` for `api.2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_of: Option<String>,
    /// The last `STATUS=` line its process sent with sd_notify (SPEC §14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_text: Option<String>,
    /// Unix seconds of its last `WATCHDOG=1` (SPEC §14); computed when read (`Snapshot::at`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_watchdog: Option<f64>,
    #[serde(skip)]
    pub watchdog_ping: Option<LastPing>,
    /// `ERRNO=` as its process said it with sd_notify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// The listening sockets guardian holds for it (SPEC §13): name → address.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sockets: std::collections::BTreeMap<String, String>,
    /// The environment values of the last start that are not secret (SPEC §12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<std::sync::Arc<std::collections::BTreeMap<String, String>>>,
    /// The snapshot revision at which this entry last changed (`GET /status?since=`).
    pub revision: u64,
    /// The rest: for /health, /diagnostics, metrics and the metrics files.
    #[serde(skip)]
    pub detail: Detail,
}

impl ServiceSnapshot {
    /// Whether what `/status` shows of the two differs only by the passing of time (uptime
    /// and countdowns are computed when read, from instants that are compared here).
    pub fn same_status(&self, o: &ServiceSnapshot) -> bool {
        self.name == o.name
            && self.state == o.state
            && self.pid == o.pid
            && self.port == o.port
            && self.started_at == o.started_at
            && self.restarts == o.restarts
            && self.health == o.health
            && self.circuit_breaker == o.circuit_breaker
            && self.adopted == o.adopted
            && self.autostart == o.autostart
            && self.consecutive_failures == o.consecutive_failures
            && self.last_exit == o.last_exit
            && self.last_error == o.last_error
            && self.restart_at == o.restart_at
            && self.waiting_for == o.waiting_for
            && self.exit_code == o.exit_code
            && self.replica_of == o.replica_of
            && self.env == o.env
            && self.status_text == o.status_text
            && self.errno == o.errno
            && self.sockets == o.sockets
    }
}

/// A service's last `WATCHDOG=1`, shared with the actor: a ping is stored, not published.
#[derive(Clone, Debug, Default)]
pub struct LastPing(pub std::sync::Arc<std::sync::atomic::AtomicU64>);

impl LastPing {
    /// Unix seconds, if it has pinged.
    pub fn get(&self) -> Option<f64> {
        let ms = self.0.load(std::sync::atomic::Ordering::Relaxed);
        (ms > 0).then(|| ms as f64 / 1000.0)
    }
}

impl PartialEq for LastPing {
    fn eq(&self, o: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &o.0)
    }
}

/// Health, recovery and process facts of one service.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Detail {
    /// The last round of checks.
    pub checks: Vec<CheckResult>,
    pub process: Option<ProcessInfo>,
    pub summary: Aggregate,
    pub checks_performed: u64,
    pub checks_failed: u64,
    /// Ticks per result: healthy, unknown, warning, critical.
    pub checks_by_result: Vec<(Status, u64)>,
    /// Unix seconds of the last check.
    pub last_check: Option<f64>,
    /// Recoveries per action and verdict.
    pub recoveries: Vec<RecoveryCount>,
    pub pending_recovery: Option<Action>,
    /// Seconds until an open breaker lets an action through.
    pub breaker_reopens_in: Option<f64>,
    /// Unix seconds at which the current instance started.
    pub start_time: Option<f64>,
    /// Every exit that was not asked for, and every failed start.
    pub total_failures: u64,
    pub last_failure: Option<f64>,
    /// The service's own metrics file, when `metrics.enabled`.
    pub metrics_file: Option<std::path::PathBuf>,
    /// Its output's log file (`GET /services/NAME/logs`).
    #[serde(skip)]
    pub log_file: std::path::PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecoveryCount {
    pub action: Action,
    pub success: bool,
    pub count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Snapshot {
    pub services: Vec<ServiceSnapshot>,
    /// Bumped whenever what `/status` shows of any service changes, or services come and go.
    pub revision: u64,
    pub config_generation: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// The error of the last reload that was refused, until one is applied.
    pub last_reload_error: Option<String>,
    /// The guardian's `metrics_file`.
    pub metrics_file: Option<std::path::PathBuf>,
}

impl Snapshot {
    /// The snapshot as of `now`: every uptime is computed at read time, never when the
    /// snapshot was last rebuilt (a quiet service's snapshot can be hours old).
    pub fn at(mut self, now: tokio::time::Instant) -> Self {
        for s in &mut self.services {
            s.uptime_seconds = s
                .started_at
                .map(|t| now.saturating_duration_since(t).as_secs_f64());
            s.next_restart_in = s
                .restart_at
                .map(|t| t.saturating_duration_since(now).as_secs_f64());
            s.last_watchdog = s.watchdog_ping.as_ref().and_then(LastPing::get);
        }
        self
    }
}
