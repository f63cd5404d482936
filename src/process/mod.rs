//! The supervisor's only way to touch the OS: spawn a child, watch an adopted PID, signal a
//! process group. `unix.rs` does it for real; `fake.rs` scripts it for actor tests. Beside
//! them, what a process is known by: `pidfile` (JSON PID files, their locks and the state
//! dir), `procinfo` (facts from /proc: start ticks, command lines, trees, port holders); and
//! `tasks`, where the tasks a start asks for wait when it comes before the async runtime.

#[cfg(test)]
pub mod fake;
pub mod log;
pub mod output;
pub mod pidfile;
pub mod procinfo;
pub mod sockets;
pub mod tasks;
pub mod unix;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use futures_util::future::BoxFuture;
use nix::sys::signal::Signal;

/// Everything needed to start one instance, placeholders already expanded.
#[derive(Clone, Debug, PartialEq)]
pub struct SpawnRequest {
    pub service: String,
    pub command: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub log_file: PathBuf,
    pub log_max_bytes: u64,
    pub log_backups: u32,
    /// Echo output on guardian's stdout/stderr with a `NAME | ` prefix.
    pub echo: bool,
    /// Who the process runs as, and what it inherits beyond the environment (SPEC §9). All
    /// unset keeps the posix_spawn fast path.
    pub run_as: RunAs,
    /// Held listening sockets passed as fds 3… (SPEC §13): (name, address) in name order.
    /// Empty keeps the posix_spawn fast path.
    pub sockets: Vec<(String, String)>,
    /// `watchdog`: WATCHDOG_USEC is in `env`; WATCHDOG_PID is the child's own PID, written
    /// after the fork (off the posix_spawn fast path, as with sockets).
    pub watchdog_pid: bool,
    /// `ready = "log:…"`: the output pump watches for the first line that matches.
    pub ready_line: Option<LinePattern>,
}

/// A compiled `log:` pattern, shared by every start of its service.
#[derive(Clone, Debug)]
pub struct LinePattern(pub std::sync::Arc<regex::Regex>);

impl PartialEq for LinePattern {
    fn eq(&self, o: &Self) -> bool {
        self.0.as_str() == o.0.as_str()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunAs {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub umask: Option<u32>,
    pub limits: Vec<(crate::config::Limit, u64)>,
}

impl RunAs {
    pub fn is_default(&self) -> bool {
        self == &RunAs::default()
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// As a shell reports it: the exit code, 128 + the signal, or 1 when unknown.
    pub fn status(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 1,
        }
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => match Signal::try_from(s) {
                Ok(sig) => write!(f, "killed by {}", sig.as_str()),
                Err(_) => write!(f, "killed by signal {s}"),
            },
            (None, None) => f.write_str("ended (status unknown: not our child)"),
        }
    }
}

/// A started or adopted process: its PID and a future that resolves when it ends.
pub struct Spawned {
    pub pid: i32,
    /// Its start time in clock ticks after boot, read once when it was started or adopted.
    pub start_ticks: Option<u64>,
    pub exited: BoxFuture<'static, ExitInfo>,
    /// `ready = "log:…"`: fires at the first output line that matches.
    pub ready_line: Option<tokio::sync::oneshot::Receiver<()>>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot start `{program}`: {reason}")]
pub struct SpawnError {
    pub program: String,
    pub reason: String,
}

pub trait Spawner: Send + Sync + 'static {
    fn spawn(&self, req: &SpawnRequest) -> Result<Spawned, SpawnError>;
    /// Starts every request, in order; the results come in the same order. A spawner may
    /// start the next ones while the caller handles the first results (a whole stack at
    /// start-up, the services a dependency released).
    fn spawn_many<'a>(
        &'a self,
        reqs: &'a [SpawnRequest],
    ) -> Box<dyn Iterator<Item = Result<Spawned, SpawnError>> + 'a> {
        Box::new(reqs.iter().map(|r| self.spawn(r)))
    }
    /// Watches a verified PID that is not our child (adoption).
    fn adopt(&self, pid: i32, start_ticks: u64) -> std::io::Result<Spawned>;
    /// Signals the group led by `pid`, its tree, and the service's orphans that left both.
    fn signal_group(&self, service: &str, pid: i32, sig: Signal);
    /// Signals only the service's main process (clear_connections by signal).
    fn signal(&self, pid: i32, sig: Signal) -> std::io::Result<()>;
}

/// Children that one of guardian's own tasks waits for (exec checks, clear_connections
/// commands): the orphan reaper leaves them alone, or it would steal their exit status.
static WAITED: std::sync::Mutex<std::collections::BTreeSet<i32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Whether `pid` is a child some task of guardian waits for.
pub fn is_waited(pid: i32) -> bool {
    WAITED
        .lock()
        .expect("UNWRAP: never poisoned: no panic while held")
        .contains(&pid)
}

/// Spawns `cmd` and registers its PID as waited for, under the reaper's own lock, so that no
/// reap can come between the two. The guard forgets the PID when dropped (after the wait).
pub fn spawn_waited(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<(tokio::process::Child, WaitedGuard)> {
    let mut set = WAITED
        .lock()
        .expect("UNWRAP: never poisoned: no panic while held");
    let child = cmd.spawn()?;
    let pid = child.id().map(|p| p as i32);
    if let Some(p) = pid {
        set.insert(p);
    }
    Ok((child, WaitedGuard(pid)))
}

pub struct WaitedGuard(Option<i32>);

impl Drop for WaitedGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            WAITED
                .lock()
                .expect("UNWRAP: never poisoned: no panic while held")
                .remove(&p);
        }
    }
}
