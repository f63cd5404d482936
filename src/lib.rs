//! guardian: a declarative process guardian.
//!
//! # Layout
//! - `config`: the layered config (figment), its validation, diff and explanation.
#![warn(clippy::unwrap_used)]
// Errors here are cold: built once when a command or a load fails, never in a loop.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod error;
pub mod events;
pub mod health;
pub mod metrics_files;
pub mod pidfile;
pub mod policy;
pub mod process;
pub mod procinfo;
pub mod reload;
pub mod supervisor;
pub mod systemd;
