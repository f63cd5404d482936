//! The immutable view the API, the CLI and metrics read; published by the actor through a
//! `watch` channel, so nobody locks supervisor state.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Starting,
    Running,
    Backoff,
    Stopping,
    Stopped,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceSnapshot {
    pub name: String,
    pub state: State,
    pub pid: Option<i32>,
    pub port: Option<u16>,
    pub uptime_seconds: Option<f64>,
    pub restarts: u64,
    pub health: String,
    pub circuit_breaker: String,
    pub adopted: bool,
    pub autostart: bool,
    pub consecutive_failures: u32,
    pub last_exit: Option<String>,
    pub last_error: Option<String>,
    /// When the next restart is due, in seconds from the snapshot.
    pub next_restart_in: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Snapshot {
    pub services: Vec<ServiceSnapshot>,
    pub config_generation: u64,
}
