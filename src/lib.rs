//! guardian: a declarative process guardian.
//!
//! # Layout
//! Dependencies point inward: `cli → daemon → {api, reload, systemd, health, pidfile} →
//! supervisor → policy → config`; nothing on the engine side imports `cli`.
//! - `cli`: argument types, the one-shot commands, the API client, `doctor`.
//! - `daemon`: `guardian run`'s wiring: the lock, the runtime, the tasks, ordered shutdown.
//! - `api`: the HTTP API on the Unix socket and TCP, `/metrics`, the status page.
//! - `alerts`: events that page a human, delivered to webhooks and commands off the engine.
//! - `reload`: SIGHUP and file changes → debounce → load → the supervisor.
//! - `systemd`: READY, STATUS, RELOADING, WATCHDOG.
//! - `metrics_files`: the metrics JSON files, rewritten at most once a second.
//! - `supervisor`: the actor that owns every service's state.
//! - `health`: tcp, http, exec checks and resource samples.
//! - `process`: the `Spawner` trait, the Unix spawner and the output thread.
//! - `policy`: pure decisions: backoff, breaker, recovery, health, stale PID, dependencies.
//! - `config`: the layered config (figment), validation, diff, explanation, error reports.
//! - `pidfile`, `procinfo`, `events`, `error`: PID files and locks, /proc facts, the event
//!   log, exit codes.
#![warn(clippy::unwrap_used)]
// Errors here are cold: built once when a command or a load fails, never in a loop.
#![allow(clippy::result_large_err)]

pub mod alerts;
pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod error;
pub mod events;
pub mod export;
pub mod health;
pub mod import;
pub mod metrics_files;
pub mod pidfile;
pub mod policy;
pub mod process;
pub mod procinfo;
pub mod reload;
pub mod supervisor;
pub mod systemd;
