//! The errors that end a command, and the one table of exit codes (SPEC §1).

use std::path::PathBuf;

use crate::config::load::LoadError;
use crate::process::pidfile::{DaemonConflict, PidFileError};

/// Exit codes: one table for the whole binary.
pub mod exit {
    pub const OK: u8 = 0;
    /// A runtime failure, or "no guardian is running" for client commands.
    pub const FAILURE: u8 = 1;
    /// A usage or config error.
    pub const CONFIG: u8 = 2;
    /// Another guardian holds the state dir.
    pub const CONFLICT: u8 = 3;
    /// No service by that name.
    pub const NO_SUCH_SERVICE: u8 = 4;
    /// `guardian import`: the config was written, but some keys were left out (SPEC §16).
    pub const IMPORT_PARTIAL: u8 = 3;
}

/// An error that stops a command (and the daemon).
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error(transparent)]
    Conflict(#[from] DaemonConflict),
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error("no guardian is running on state dir {}\n  1. start one: guardian run\n  2. or point at the right one: guardian --state-dir DIR {command}", state_dir.display())]
    NotRunning { state_dir: PathBuf, command: String },
    #[error("no service named `{name}`; the services are: {}\n  list them with: guardian status", known.join(", "))]
    NoSuchService { name: String, known: Vec<String> },
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A held socket (SPEC §13) that cannot be bound: a config error, before anything starts.
    #[error("{0}")]
    Sockets(String),
    #[error("{0}")]
    Message(String),
}

impl FatalError {
    pub fn exit_code(&self) -> u8 {
        match self {
            FatalError::Config(_) | FatalError::Sockets(_) => exit::CONFIG,
            FatalError::Conflict(_) => exit::CONFLICT,
            FatalError::NoSuchService { .. } => exit::NO_SUCH_SERVICE,
            FatalError::PidFile(_)
            | FatalError::NotRunning { .. }
            | FatalError::Io { .. }
            | FatalError::Message(_) => exit::FAILURE,
        }
    }
}
