//! guardian: a declarative process guardian.
//!
//! # Layout
//! One room per line; dependencies point down the list and never back up (no room, and no
//! file inside a folder, imports one that imports it).
//! - `cli`: argument types, the one-shot commands, the API client, `doctor`, `top`, `logs`.
//! - `daemon`: `guardian run`'s wiring (lock, runtime, tasks, ordered shutdown), reloads, its
//!   own sd_notify, the metrics files.
//! - `error`: fatal errors and exit codes.
//! - `export`: the stack written as systemd units and Kubernetes manifests.
//! - `import`: supervisord, PM2, Compose and Procfile setups read in.
//! - `api`: the HTTP API on the Unix socket and TCP, `/metrics`, SSE, the status page.
//! - `alerts`: events that page a human, delivered to webhooks and commands off the engine.
//! - `supervisor`: the one actor that owns every service's state.
//! - `health`: tcp, http and exec checks and resource samples.
//! - `events`: the event log (JSON lines, rotated) and its live feed.
//! - `process`: the `Spawner` trait, the Unix spawner, output pumps, held sockets, PID files
//!   and their locks, facts from /proc, tasks asked for before the runtime exists.
//! - `policy`: pure decisions: backoff, breaker, recovery, health, stale PID, dependencies.
//! - `config`: the layered config (figment), validation, diff, explanation, error reports.
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
pub mod policy;
pub mod process;
pub mod supervisor;
