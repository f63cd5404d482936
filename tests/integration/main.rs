//! The single integration-test binary: each module drives the real `guardian` binary.
//! Integration tests run on the real clock, never a paused one, so the std clock is allowed.

#![allow(clippy::disallowed_methods)]

mod support;

mod alerts;
mod api;
mod bounds;
mod browser;
mod claims;
mod cli;
mod docs;
mod doctor;
mod environment;
mod export;
mod health;
mod import;
mod layout;
mod notify;
mod pidfile;
mod reload;
mod soak;
mod socketio;
mod sockets;
mod stacks;
mod supervise;
mod top;
mod trust;
