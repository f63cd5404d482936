//! Process facts from /proc through procfs: state, exact start ticks, command line, the
//! holder of a TCP port, process trees; and signals sent only through a verified pidfd.
//! Reads /proc only; blocking, so async callers use `spawn_blocking` on hot paths.

use std::collections::HashSet;
use std::io;
use std::os::fd::OwnedFd;

use procfs::process::{FDTarget, Process};
use rustix::process::{Pid, PidfdFlags, Signal as RSignal};

/// What /proc says of one process.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    /// `R`, `S`, `D`, `Z`, …
    pub state: char,
    /// Clock ticks after boot: exact, so a recycled PID cannot match by chance.
    pub start_ticks: u64,
    pub cmdline: Vec<String>,
}

impl Facts {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }

    pub fn command_line(&self) -> String {
        self.cmdline.join(" ")
    }
}

/// `None` when the process does not exist (or vanished while being read).
pub fn facts(pid: i32) -> Option<Facts> {
    if pid <= 0 {
        return None;
    }
    let p = Process::new(pid).ok()?;
    let stat = p.stat().ok()?;
    let cmdline = p.cmdline().unwrap_or_default();
    Some(Facts {
        pid,
        ppid: stat.ppid,
        pgrp: stat.pgrp,
        state: stat.state,
        start_ticks: stat.starttime,
        cmdline,
    })
}

/// `pid` and its ancestors below guardian, nearest first (at most 64): the chain that says
/// which service's tree a process is of. One read of /proc/PID/stat each, and none above
/// guardian itself, so a service's own message costs one read.
pub fn ancestors(pid: i32) -> Vec<i32> {
    use procfs::FromRead;
    let me = std::process::id() as i32;
    let mut out = vec![pid];
    let mut at = pid;
    while out.len() < 64 {
        let parent = procfs::process::Stat::from_file(format!("/proc/{at}/stat"))
            .ok()
            .map(|s| s.ppid);
        match parent {
            Some(p) if p > 1 && p != me && !out.contains(&p) => {
                out.push(p);
                at = p;
            }
            _ => break,
        }
    }
    out
}

/// Only the start ticks of `pid`: one read of /proc/PID/stat.
pub fn start_ticks(pid: i32) -> Option<u64> {
    use procfs::FromRead;
    procfs::process::Stat::from_file(format!("/proc/{pid}/stat"))
        .ok()
        .map(|s| s.starttime)
}

/// Seconds since the epoch at which a process with these start ticks started.
pub fn start_time_secs(ticks: u64) -> f64 {
    let boot = procfs::boot_time_secs().unwrap_or(0) as f64;
    boot + ticks as f64 / procfs::ticks_per_second() as f64
}

/// Every pattern occurs in the command line (joined with spaces).
pub fn cmdline_matches(cmdline: &[String], patterns: &[String]) -> bool {
    let joined = cmdline.join(" ");
    !cmdline.is_empty() && patterns.iter().all(|p| joined.contains(p.as_str()))
}

/// The kernel's highest PID.
pub fn pid_max() -> i64 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4_194_304)
}

/// Socket inodes listening on TCP `port` (IPv4 and IPv6).
pub fn listening_inodes(port: u16) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in [procfs::net::tcp(), procfs::net::tcp6()]
        .into_iter()
        .flatten()
    {
        for e in table {
            if e.state == procfs::net::TcpState::Listen && e.local_address.port() == port {
                inodes.insert(e.inode);
            }
        }
    }
    inodes
}

/// Who listens on a TCP port.
#[derive(Clone, Debug, PartialEq)]
pub enum PortHolder {
    Free,
    Pid(Facts),
    /// Listening, but the socket belongs to a process whose fds this user cannot read.
    Unknown,
}

pub fn port_holder(port: u16) -> PortHolder {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return PortHolder::Free;
    }
    holders_of(&inodes)
        .into_iter()
        .next()
        .and_then(facts)
        .map_or(PortHolder::Unknown, PortHolder::Pid)
}

/// PIDs with an open fd on any of these socket inodes, lowest first.
pub fn holders_of(inodes: &HashSet<u64>) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(all) = procfs::process::all_processes() else {
        return pids;
    };
    for p in all.flatten() {
        let Ok(fds) = p.fd() else { continue };
        if fds
            .flatten()
            .any(|fd| matches!(fd.target, FDTarget::Socket(i) if inodes.contains(&i)))
        {
            pids.push(p.pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// The direct children of `pid`, from its `task/*/children` files: reads that process only.
pub fn children_of(pid: i32) -> Vec<i32> {
    children_of_threads(pid, |_| true)
}

/// The children of those threads of `pid` whose TID `read` accepts.
pub fn children_of_threads(pid: i32, read: impl Fn(i32) -> bool) -> Vec<i32> {
    let Ok(tasks) = Process::new(pid).and_then(|p| p.tasks()) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter(|t| read(t.tid))
        .flat_map(|t| t.children().unwrap_or_default())
        .map(|c| c as i32)
        .collect()
}

/// `root` and every process below it, walking children links: only those processes are read.
pub fn tree(root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let kids = children_of(out[i]);
        out.extend(
            kids.into_iter()
                .filter(|k| !out.contains(k))
                .collect::<Vec<_>>(),
        );
        i += 1;
    }
    out
}

/// Does `root` or a descendant listen on `port`?
pub fn tree_listens_on(root: i32, port: u16) -> bool {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return false;
    }
    let tree: HashSet<i32> = tree(root).into_iter().collect();
    holders_of(&inodes).iter().any(|p| tree.contains(p))
}

/// A pidfd for `pid`, opened only if the process still has these start ticks: from here on
/// a signal through it cannot reach a recycled PID.
pub fn verified_pidfd(pid: i32, start_ticks: u64) -> io::Result<OwnedFd> {
    let rpid = Pid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fd = rustix::process::pidfd_open(rpid, PidfdFlags::empty())?;
    match facts(pid) {
        Some(f) if f.start_ticks == start_ticks && !f.is_zombie() => Ok(fd),
        _ => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("pid {pid} is no longer the verified process"),
        )),
    }
}

/// Sends `sig` to a verified process through its pidfd.
pub fn signal_pidfd(fd: &OwnedFd, sig: nix::sys::signal::Signal) -> io::Result<()> {
    let sig = RSignal::from_named_raw(sig as i32)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    rustix::process::pidfd_send_signal(fd, sig).map_err(io::Error::from)
}

/// The variable that marks every process of a service, so that daemonized grandchildren
/// (which leave the process group) are still found and stopped with it.
pub const MARK: &str = "_GUARDIAN_SERVICE";

/// The service `pid` belongs to by its mark, when it carries one.
pub fn service_mark(pid: i32) -> Option<String> {
    mark_of(&std::fs::read(format!("/proc/{pid}/environ")).ok()?)
}

/// The service a process's environment (`/proc/PID/environ`) marks it as part of.
fn mark_of(environ: &[u8]) -> Option<String> {
    environ.split(|b| *b == 0).find_map(|kv| {
        let kv = std::str::from_utf8(kv).ok()?;
        kv.strip_prefix(MARK)?.strip_prefix('=').map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_service_mark() {
        assert_eq!(
            mark_of(b"A=1\0_GUARDIAN_SERVICE=web\0B=2\0"),
            Some("web".into())
        );
        assert_eq!(mark_of(b"A=1\0"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = facts(std::process::id() as i32).expect("own /proc entry");
        assert!(!me.is_zombie());
        assert!(me.start_ticks > 0);
        assert!(start_time_secs(me.start_ticks) > 1.0e9);
        assert!(facts(0).is_none());
    }

    #[test]
    fn patterns_must_all_occur() {
        let cmd = vec![
            "python3".to_owned(),
            "-m".to_owned(),
            "app.socketio_server".to_owned(),
        ];
        assert!(cmdline_matches(&cmd, &["socketio_server".to_owned()]));
        assert!(cmdline_matches(
            &cmd,
            &["python3".to_owned(), "app".to_owned()]
        ));
        assert!(!cmdline_matches(&cmd, &["node".to_owned()]));
        assert!(!cmdline_matches(&[], &[]));
    }

    #[test]
    fn finds_the_holder_of_a_listening_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        match port_holder(port) {
            PortHolder::Pid(f) => assert_eq!(f.pid, std::process::id() as i32),
            other => panic!("expected this process, got {other:?}"),
        }
        assert!(tree_listens_on(std::process::id() as i32, port));
        drop(l);
        assert_eq!(port_holder(port), PortHolder::Free);
    }
}
