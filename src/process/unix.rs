//! The real spawner: std's posix_spawn path with its own process group, from a thread with a
//! descriptor table of its own; output captured into a size-rotated log, exits reaped on
//! SIGCHLD (our children) or watched through a pidfd (adopted ones). The only `unsafe` of
//! the crate.
//!
//! A running service costs guardian two descriptors (one with `echo = false`): the read end
//! of its output pipe(s) and its PID file's lock. Its exit needs none: guardian is the
//! parent, so the PID cannot be reused before guardian itself reaps it, and one SIGCHLD
//! handler reaps for every service.

use std::collections::HashMap;

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::log::RotatingLog;
use super::output::{DroppedBytes, Sink, Writer};
use super::{ExitInfo, SpawnError, SpawnRequest, Spawned, Spawner};
use crate::process::procinfo;

/// Our running children, each with where its exit status goes.
type Children = HashMap<i32, oneshot::Sender<ExitInfo>>;

pub struct UnixSpawner {
    color: bool,
    /// Echoed stderr needs its own pipe only when guardian's stderr is another stream than
    /// its stdout (docker's two streams); on one terminal, one journald stream or one file
    /// a single pipe carries both and shows the same.
    split_stderr: bool,
    /// Every service process we spawned and have not reaped yet: only `reap_children` waits
    /// for them, and it takes this lock, so a PID found here cannot have been reused.
    /// std Mutex: held only around spawn, a signal, a reap pass or a /proc scan, never
    /// across .await.
    children: Arc<Mutex<Children>>,
    /// The queue to the output thread: every log and echo write happens there.
    writer: Writer,
    /// Spawns from a descriptor table of its own (see `Launcher`), once started
    /// (`start_threads`); until then services are spawned from the calling thread.
    launcher: std::sync::OnceLock<Arc<Launcher>>,
    dropped: Arc<DroppedBytes>,
    /// Live followers of the services' output (the API's `logs?follow=1`).
    followers: Arc<super::output::Followers>,
    /// The variables of guardian's own service manager found in its environment at start
    /// (LISTEN_*, NOTIFY_SOCKET, WATCHDOG_*): kept from every service.
    managers_vars: Vec<&'static str>,
}

/// What systemd (or any service manager) gives guardian itself.
const MANAGERS_VARS: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "LISTEN_PID",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// The spawning thread and the children table of this process's spawner, for exec checks
/// and clear_connections commands (`spawn_check`). One spawner per guardian; set by the first.
static CHECKS: std::sync::OnceLock<(Arc<Launcher>, Arc<Mutex<Children>>)> =
    std::sync::OnceLock::new();

impl UnixSpawner {
    /// Bytes the output thread cannot write are counted in `dropped`. `color`: paint each
    /// service's prefix (guardian's stdout is a terminal and NO_COLOR is unset). Services are
    /// spawned from the calling thread, and their output waits, until `start_threads`.
    pub fn new(
        dropped: Arc<DroppedBytes>,
        followers: Arc<super::output::Followers>,
        color: bool,
    ) -> Self {
        UnixSpawner {
            color,
            split_stderr: stderr_apart(),
            launcher: std::sync::OnceLock::new(),
            children: Arc::default(),
            writer: Writer::default(),
            dropped,
            followers,
            managers_vars: MANAGERS_VARS
                .iter()
                .copied()
                .filter(|v| std::env::var_os(v).is_some())
                .collect(),
        }
    }

    /// Starts the output thread, and the spawning thread (its descriptor table is a copy of
    /// guardian's as it is now: call it once the async runtime exists, before any listener
    /// is opened), which spawns every later service and every exec check.
    /// `first_starts`: what the starts before it opened (`Descriptor::all_open` before and
    /// after), left out of its table.
    pub fn start_threads(&self, first_starts: Vec<Descriptor>) -> std::io::Result<()> {
        self.writer.start_thread()?;
        let launcher = Arc::new(Launcher::start(self.children.clone(), first_starts)?);
        let _ = CHECKS.set((launcher.clone(), self.children.clone()));
        let _ = self.launcher.set(launcher);
        Ok(())
    }

    /// The spawning thread's TID (0 before it starts: no thread has it).
    fn spawning_tid(&self) -> i32 {
        self.launcher.get().map_or(0, |l| l.tid)
    }

    fn launcher(&self) -> std::io::Result<&Arc<Launcher>> {
        self.launcher
            .get()
            .ok_or_else(|| std::io::Error::other("the spawning thread has not started"))
    }

    /// Holds a bound listening socket for guardian's life under `address` (its key in every
    /// `SpawnRequest::sockets`): the spawning thread keeps a copy, so the caller's may close.
    pub fn hold(&self, address: &str, fd: &std::os::fd::OwnedFd) -> std::io::Result<()> {
        use std::os::fd::AsFd;
        self.launcher()?.hold(address, fd.as_fd())
    }

    /// Closes the held socket of `address`; instances that inherited it keep their copy.
    pub fn release(&self, address: &str) {
        if let Ok(launcher) = self.launcher() {
            let _ = launcher.jobs.send(Work::Release {
                address: address.to_owned(),
            });
        }
    }

    /// Ends every child started so far (SIGKILL to its group): for a guardian that cannot go
    /// on after its first starts, so that it leaves nothing running that nobody watches.
    pub fn kill_children(&self) {
        let children = self
            .children
            .lock()
            .expect("UNWRAP: the lock is never poisoned: no panic while held");
        for pid in children.keys() {
            let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }

    /// Reaps every service process that has ended and hands each its status; called on
    /// every SIGCHLD. Cheap: one `waitid` peek per ended child while only ours are waiting.
    /// False when a zombie that is not a service's (an orphan reparented to guardian, or a
    /// check's child that tokio waits for) is first in line: then each of ours is asked by
    /// PID, and the caller should run `reap_orphans`.
    pub fn reap_children(&self) -> bool {
        let mut children = self
            .children
            .lock()
            .expect("UNWRAP: the lock is never poisoned: no panic while held");
        let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        loop {
            let pid = match waitid(Id::All, peek) {
                Ok(status) => match status.pid() {
                    Some(pid) => pid.as_raw(),
                    None => return true,
                },
                // ECHILD: no child at all.
                Err(_) => return true,
            };
            if !children.contains_key(&pid) || !reap(pid, &mut children) {
                break;
            }
        }
        let ours: Vec<i32> = children.keys().copied().collect();
        for pid in ours {
            reap(pid, &mut children);
        }
        false
    }

    /// Reaps exited orphans that were reparented to guardian (it is a child subreaper), by
    /// PID: never `waitpid(-1)`, which would steal the statuses of our services and checks.
    pub fn reap_orphans(&self) {
        let children = self
            .children
            .lock()
            .expect("UNWRAP: the lock is never poisoned: no panic while held");
        let me = std::process::id() as i32;
        let spawning = self.spawning_tid();
        for pid in procinfo::children_of_threads(me, |tid| tid != spawning) {
            if !children.contains_key(&pid)
                && !super::is_waited(pid)
                && procinfo::facts(pid).is_some_and(|f| f.is_zombie())
            {
                let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
            }
        }
    }
}

/// Reaps `pid` if it has ended and sends its status to whoever waits for it; false when it
/// is still running.
fn reap(pid: i32, children: &mut Children) -> bool {
    let info = match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => ExitInfo {
            code: Some(code),
            signal: None,
        },
        Ok(WaitStatus::Signaled(_, sig, _)) => ExitInfo {
            code: None,
            signal: Some(sig as i32),
        },
        Ok(_) => return false,
        // ECHILD: someone else reaped it; its status is lost.
        Err(_) => ExitInfo {
            code: None,
            signal: None,
        },
    };
    if let Some(tx) = children.remove(&pid) {
        let _ = tx.send(info);
    }
    true
}

/// Whether guardian's stderr is another stream than its stdout (then echoed stderr needs a
/// pipe of its own per service).
pub fn stderr_apart() -> bool {
    !same_stream(&std::io::stdout(), &std::io::stderr())
}

/// Whether two descriptors lead to the same file, terminal or pipe.
fn same_stream(a: &impl std::os::fd::AsFd, b: &impl std::os::fd::AsFd) -> bool {
    match (rustix::fs::fstat(a), rustix::fs::fstat(b)) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    }
}

/// Marks every descriptor guardian inherited beyond stdio close-on-exec: guardian may keep
/// them, its services get only their own stdio (as systemd gives its units).
pub fn keep_inherited_descriptors_from_services() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC takes plain integers and only sets a flag
    // on descriptors; it closes nothing.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

/// Gives the heap's free pages back to the system: loading a config of thousands of
/// services leaves megabytes freed but still resident.
pub fn release_free_memory() {
    // SAFETY: malloc_trim takes an integer and only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Unmaps guardian's own code and read-only data: the executable's `r-xp` mapping and the
/// `r--p` ones before it (headers, symbols, `.rodata`, unwind tables). Starting touches code
/// all over a 10 MB binary (the config layers, clap, TOML, validation) and the kernel maps
/// 64 KiB around each touched page; once started, almost none of it runs again, yet every
/// mapped page counts as guardian's memory. The pages stay in the page cache, clean and
/// reclaimable; a page used again is mapped again on its first use (a minor fault). The
/// relocated read-only data after the code (RELRO) holds written pages and is left alone.
pub fn release_startup_code() {
    let (Ok(maps), Ok(exe)) = (
        std::fs::read_to_string("/proc/self/maps"),
        std::fs::read_link("/proc/self/exe"),
    ) else {
        return;
    };
    for (start, end) in code_ranges(&maps, &exe.to_string_lossy()) {
        // SAFETY: the range is a whole mapping of the executable that is not writable and
        // lies before or in its code, so no page of it was ever written (relocations are
        // applied to the RW/RELRO segment after the code): dropping the pages loses nothing,
        // and each one is read again from the same file on its next use.
        unsafe {
            let _ = rustix::mm::madvise(
                start as *mut std::ffi::c_void,
                end - start,
                rustix::mm::Advice::LinuxDontNeed,
            );
        }
    }
}

/// The address ranges `release_startup_code` drops: the mappings of `exe` up to and with the
/// last executable one, if they are all read-only and private.
fn code_ranges(maps: &str, exe: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut seen_code = false;
    for line in maps.lines() {
        let mut f = line.splitn(6, ' ');
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let path = f.nth(3).map_or("", str::trim_start);
        if path != exe {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        match perms {
            "r--p" if !seen_code => out.push((a, b)),
            "r-xp" => {
                seen_code = true;
                out.push((a, b));
            }
            // The first mapping after the code (RELRO or data) ends the run.
            _ if seen_code => break,
            // A writable mapping before the code: an unusual layout; touch nothing.
            _ => return Vec::new(),
        }
    }
    if seen_code { out } else { Vec::new() }
}

/// At most two malloc arenas: guardian's few threads do not need one each, and every arena
/// keeps its own free pages resident.
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt takes two integers and only tunes the allocator; called before any
    // thread besides main exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// User, group, umask and limits. Only a service that sets one of them pays for a `pre_exec`
/// hook (std then forks instead of using posix_spawn); ids alone use std's own support.
fn apply_run_as(cmd: &mut std::process::Command, run: &super::RunAs) {
    use std::os::unix::process::CommandExt;
    if let Some(gid) = run.gid {
        cmd.gid(gid);
    }
    if let Some(uid) = run.uid {
        cmd.uid(uid);
    }
    if run.umask.is_none() && run.limits.is_empty() {
        return;
    }
    let umask = run.umask;
    let limits: Vec<(libc::__rlimit_resource_t, libc::rlimit)> = run
        .limits
        .iter()
        .map(|(l, v)| {
            let v = if *v == crate::config::UNLIMITED {
                libc::RLIM_INFINITY
            } else {
                *v
            };
            (
                crate::config::host::resource(*l) as libc::__rlimit_resource_t,
                libc::rlimit {
                    rlim_cur: v,
                    rlim_max: v,
                },
            )
        })
        .collect();
    // SAFETY: runs in the child between fork and exec; umask and setrlimit are
    // async-signal-safe system calls, and the closure only reads data it owns.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(m) = umask {
                libc::umask(m as libc::mode_t);
            }
            for (resource, lim) in &limits {
                if libc::setrlimit(*resource, lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Makes guardian the reaper of its services' orphaned descendants.
pub fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

impl UnixSpawner {
    /// The command for `req`, and whether its stderr gets a pipe of its own.
    fn command(&self, req: &SpawnRequest) -> (std::process::Command, bool) {
        let mut cmd = std::process::Command::new(req.command.first().map_or("", String::as_str));
        cmd.args(req.command.iter().skip(1))
            .envs(&req.env)
            .env(procinfo::MARK, &req.service);
        if let Some(cwd) = &req.cwd {
            cmd.current_dir(cwd);
        }
        if !req.sockets.is_empty() {
            let names: Vec<&str> = req.sockets.iter().map(|(n, _)| n.as_str()).collect();
            // LISTEN_PID is the child's own: `pass_sockets` writes it.
            cmd.envs(super::sockets::listen_env(&names));
        }
        // guardian's own service manager's variables (read once, at start) are not the
        // service's: its sockets are guardian's, and a service that said READY=1 to guardian's
        // NOTIFY_SOCKET would speak for guardian. What `req.env` sets (its own LISTEN_* and
        // NOTIFY_SOCKET) stays.
        for var in &self.managers_vars {
            if !req.env.contains_key(*var)
                && (req.sockets.is_empty() || !var.starts_with("LISTEN_"))
            {
                cmd.env_remove(var);
            }
        }
        // Its own process group (pgid = its pid), set by posix_spawn itself: no pre_exec hook,
        // so std can use posix_spawn (vfork-fast) instead of fork. The terminal's Ctrl-C goes
        // to guardian's group only; guardian stops the services itself.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        apply_run_as(&mut cmd, &req.run_as);
        // One pipe for stdout and stderr unless stderr is echoed to a stream of its own: the
        // log holds both streams in one file either way.
        (cmd, req.echo && self.split_stderr)
    }

    /// A started child becomes a service instance: its output pumped to its log, its exit
    /// awaited.
    fn take_over(
        &self,
        req: &SpawnRequest,
        split: bool,
        exit: oneshot::Receiver<ExitInfo>,
        launched: std::io::Result<(i32, Vec<std::os::fd::OwnedFd>)>,
    ) -> Result<Spawned, SpawnError> {
        let program = req.command.first().cloned().unwrap_or_default();
        let (pid, mut readers) = launched.map_err(|e| SpawnError {
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "no such program (check `command` and `cwd`; PATH is {})",
                    std::env::var("PATH").unwrap_or_default()
                ),
                std::io::ErrorKind::PermissionDenied => {
                    format!("permission denied (is it executable? chmod +x {program})")
                }
                _ => e.to_string(),
            },
            program,
        })?;
        let err_r = if split { readers.pop() } else { None };
        let out_r = readers.pop();

        let (sink, ready_line) = Sink::watching(
            RotatingLog::new(req.log_file.clone(), req.log_max_bytes, req.log_backups),
            req.echo
                .then(|| super::output::prefix(&req.service, self.color)),
            self.dropped.counter(&req.service),
            req.ready_line.clone(),
            Some(self.followers.point(&req.service)),
        );
        let streams = [(out_r, false), (err_r, true)];
        for (reader, stderr) in streams {
            let Some(reader) = reader else { continue };
            let (w, sink, service) = (self.writer.clone(), sink.clone(), req.service.clone());
            // The pipe is registered with the runtime in the task: a first start may come
            // before the runtime exists (its output waits in the pipe until then).
            super::tasks::spawn(async move {
                match tokio::net::unix::pipe::Receiver::from_owned_fd(reader) {
                    Ok(pipe) => w.pump(pipe, sink, stderr).await,
                    Err(e) => {
                        tracing::error!(service = %service, error = %e, "cannot read the service's output; it is not logged")
                    }
                }
            });
        }
        let exited = async move {
            exit.await.unwrap_or(ExitInfo {
                code: None,
                signal: None,
            })
        }
        .boxed();
        Ok(Spawned {
            pid,
            // Read here, beside the spawning thread: it goes on with the next start.
            start_ticks: procinfo::start_ticks(pid),
            exited,
            ready_line,
        })
    }
}

impl Spawner for UnixSpawner {
    fn spawn(&self, req: &SpawnRequest) -> Result<Spawned, SpawnError> {
        self.spawn_many(std::slice::from_ref(req))
            .next()
            .unwrap_or_else(|| {
                Err(SpawnError {
                    program: req.command.first().cloned().unwrap_or_default(),
                    reason: "the spawning thread is gone".into(),
                })
            })
    }

    fn spawn_many<'a>(
        &'a self,
        reqs: &'a [SpawnRequest],
    ) -> Box<dyn Iterator<Item = Result<Spawned, SpawnError>> + 'a> {
        let mut jobs = Vec::with_capacity(reqs.len());
        let mut exits = Vec::with_capacity(reqs.len());
        for req in reqs {
            let (tx, rx) = oneshot::channel();
            let (cmd, split) = self.command(req);
            let sockets: Vec<String> = req.sockets.iter().map(|(_, a)| a.clone()).collect();
            let mut pid_vars = Vec::new();
            if !sockets.is_empty() {
                pid_vars.push("LISTEN_PID");
            }
            if req.watchdog_pid {
                pid_vars.push("WATCHDOG_PID");
            }
            jobs.push((cmd, split, tx, sockets, pid_vars));
            exits.push((split, rx));
        }
        // Every job is queued before the first result is read: the spawning thread goes on
        // with the next ones while the caller writes PID files for the first.
        let launches: Box<dyn Iterator<Item = _>> = match self.launcher.get() {
            Some(launcher) => Box::new(launcher.launch_all(jobs)),
            // Before the spawning thread (guardian's first starts): from this thread, one
            // at a time as the caller reads them.
            None => {
                let children = self.children.clone();
                Box::new(
                    jobs.into_iter()
                        .map(move |(mut cmd, split, exit, sockets, pid_vars)| {
                            cmd.stdin(Stdio::null());
                            if !pid_vars.is_empty() {
                                pass_sockets(&mut cmd, &sockets, &HashMap::new(), &pid_vars)?;
                            }
                            start_piped(cmd, split, exit, &children)
                        }),
                )
            }
        };
        Box::new(
            reqs.iter()
                .zip(exits)
                .zip(launches)
                .map(|((req, (split, exit)), launched)| self.take_over(req, split, exit, launched)),
        )
    }

    fn adopt(&self, pid: i32, start_ticks: u64) -> std::io::Result<Spawned> {
        let fd = procinfo::verified_pidfd(pid, start_ticks)?;
        let exited = async move {
            // Registered when first awaited: an adoption at guardian's start may come before
            // the runtime exists. A pidfd turns readable when the process ends; its status
            // belongs to its parent.
            // SAFETY: the pidfd is owned by the AsyncFd for its whole registration.
            match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
                Ok(afd) => drop(afd.readable().await),
                Err(e) => {
                    // Not watchable (the kernel refused the registration): asked once a second.
                    tracing::warn!(pid, error = %e, "cannot watch an adopted process; checking it every second");
                    while procinfo::start_ticks(pid) == Some(start_ticks) {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
            ExitInfo {
                code: None,
                signal: None,
            }
        }
        .boxed();
        Ok(Spawned {
            pid,
            start_ticks: Some(start_ticks),
            exited,
            ready_line: None,
        })
    }

    fn signal(&self, pid: i32, sig: Signal) -> std::io::Result<()> {
        if pid <= 1 {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        }
        // Held across the kill: a child of ours cannot be reaped (and its PID reused) between.
        let _children = self
            .children
            .lock()
            .expect("UNWRAP: the lock is never poisoned: no panic while held");
        kill(Pid::from_raw(pid), sig).map_err(std::io::Error::from)
    }

    fn signal_group(&self, service: &str, pid: i32, sig: Signal) {
        // 0 would be guardian's own group, 1 init's: never a service's.
        if pid <= 1 {
            return;
        }
        // Found before the signal: once the leader dies its children move to guardian.
        let children = self
            .children
            .lock()
            .expect("UNWRAP: the lock is never poisoned: no panic while held");
        let members = family(service, pid, self.spawning_tid(), |p| {
            children.contains_key(&p)
        });
        // A main PID named with MAINPID= may not lead a group of its own.
        if killpg(Pid::from_raw(pid), sig) == Err(nix::errno::Errno::ESRCH) {
            let _ = kill(Pid::from_raw(pid), sig);
        }
        // Descendants that left the group (daemonized with setsid) but carry the service mark.
        for member in members {
            if member != pid {
                let _ = kill(Pid::from_raw(member), sig);
            }
        }
    }
}

/// Spawns services from a thread whose descriptor table is its own (`unshare(CLONE_FILES)`)
/// and holds almost nothing: a new process starts with a copy of its parent's table and the
/// kernel closes every close-on-exec descriptor at exec, so spawning from guardian's shared
/// table (two descriptors per running service) would cost each start time in proportion to
/// the services already running. The thread makes the pipes in its table, spawns, and hands
/// the read ends to guardian's table over a socket (SCM_RIGHTS).
struct Launcher {
    /// The spawning thread's TID: every service is a child of that thread, and only of it.
    tid: i32,
    jobs: std::sync::mpsc::Sender<Work>,
    /// Guardian's end of the socket the read ends arrive on. std Mutex: held from a job's
    /// sending to the receipt of its descriptors, so that each caller reads its own.
    inbox: Mutex<std::os::unix::net::UnixDatagram>,
}

/// One spawn as `launch_all` takes it: the command, whether stderr has a pipe of its own,
/// where its exit goes, its held sockets' addresses and its PID variables.
type JobSpec = (
    std::process::Command,
    bool,
    oneshot::Sender<ExitInfo>,
    Vec<String>,
    Vec<&'static str>,
);

/// A started child as the spawning thread reports it: PID, pipes sent.
type Launched = (i32, usize);

struct Job {
    cmd: std::process::Command,
    output: Output,
    exit: oneshot::Sender<ExitInfo>,
    reply: Reply,
    /// The held sockets (by address) the command gets as fds 3…, in order.
    sockets: Vec<String>,
    /// Variables whose value is the child's own PID (LISTEN_PID, WATCHDOG_PID).
    pid_vars: Vec<&'static str>,
}

/// What the spawning thread is asked to do.
// Spawn is nearly every message: boxing it would add an allocation to every start.
#[allow(clippy::large_enum_variant)]
enum Work {
    Spawn(Job),
    /// Keep the listening socket that arrives next on the socket pair, under this address.
    Hold {
        address: String,
        done: std::sync::mpsc::SyncSender<std::io::Result<()>>,
    },
    /// Close the held socket of this address (services that inherited it keep theirs).
    Release {
        address: String,
    },
}

/// Where a started command's stdout and stderr go.
#[derive(Clone, Copy)]
enum Output {
    /// New pipes whose read ends come back over the socket; `split`: a second one for stderr.
    Pipes { split: bool },
    /// The null device (exec checks): nothing comes back but the PID.
    Null,
}

/// Where the spawning thread answers: a caller that blocks (the supervisor, which then reads
/// the read ends in order) or one that awaits (a check's task).
enum Reply {
    Wait(std::sync::mpsc::SyncSender<std::io::Result<Launched>>),
    Await(oneshot::Sender<std::io::Result<Launched>>),
}

impl Launcher {
    fn start(children: Arc<Mutex<Children>>, leave: Vec<Descriptor>) -> std::io::Result<Launcher> {
        let (inbox, outbox) = std::os::unix::net::UnixDatagram::pair()?;
        let (jobs, queue) = std::sync::mpsc::channel::<Work>();
        let (ready, table_made) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("guardian-spawn".into())
            .spawn(move || launch_all(outbox, queue, &children, &leave, ready))?;
        // The thread's table is copied before this returns, so it holds only what is open now
        // (the runtime's descriptors and the guardian lock, less `leave`), never a listener
        // opened later, which its copy would keep accepting after guardian closed it.
        let tid = table_made
            .recv()
            .map_err(|_| std::io::Error::other("the spawning thread did not start"))?;
        Ok(Launcher {
            tid,
            jobs,
            inbox: Mutex::new(inbox),
        })
    }

    /// Hands a bound listening socket to the spawning thread, which holds it from now on
    /// under `address` (guardian's own copy may close).
    fn hold(&self, address: &str, fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let inbox = self
            .inbox
            .lock()
            .expect("UNWRAP: the lock is never poisoned: no panic while held");
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .send(Work::Hold {
                address: address.to_owned(),
                done,
            })
            .map_err(|_| std::io::Error::other("the spawning thread is gone"))?;
        let fds = [fd];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        rustix::net::sendmsg(
            &*inbox,
            &[std::io::IoSlice::new(&[1])],
            &mut control,
            SendFlags::empty(),
        )?;
        answer
            .recv()
            .map_err(|_| std::io::Error::other("the spawning thread is gone"))?
    }

    /// Queues every job (a command, whether stderr gets a pipe of its own, where its exit
    /// goes) and returns their results in order as the spawning thread gets to them: each a
    /// PID and the read ends (stdout's, then stderr's), owned by guardian's table.
    fn launch_all(&self, jobs: Vec<JobSpec>) -> Launches<'_> {
        // Held until the last result is read: the read ends arrive in the order of the jobs.
        let inbox = self
            .inbox
            .lock()
            .expect("UNWRAP: the lock is never poisoned: no panic while held");
        let answers = jobs
            .into_iter()
            .map(|(cmd, split, exit, sockets, pid_vars)| {
                let (reply, answer) = std::sync::mpsc::sync_channel(1);
                // When the thread is gone, `reply` is dropped with the job: the answer says so.
                let _ = self.jobs.send(Work::Spawn(Job {
                    cmd,
                    output: Output::Pipes { split },
                    exit,
                    reply: Reply::Wait(reply),
                    sockets,
                    pid_vars,
                }));
                answer
            })
            .collect();
        Launches { inbox, answers }
    }
}

/// A command started by `spawn_check`. Dropped before it ended (its check was cancelled), its
/// process group is killed, as tokio's `kill_on_drop` did.
pub struct CheckChild {
    pid: i32,
    exit: oneshot::Receiver<ExitInfo>,
    children: Arc<Mutex<Children>>,
    ended: bool,
}

impl CheckChild {
    /// Its end, reaped like the services' on SIGCHLD.
    pub async fn wait(&mut self) -> ExitInfo {
        let exit = (&mut self.exit).await.unwrap_or(ExitInfo {
            code: None,
            signal: None,
        });
        self.ended = true;
        exit
    }

    /// SIGKILL to its process group, while it is still our unreaped child (so its PID cannot
    /// have been reused).
    pub fn kill_group(&self) {
        let children = self
            .children
            .lock()
            .expect("UNWRAP: the lock is never poisoned: no panic while held");
        if children.contains_key(&self.pid) {
            let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
    }
}

impl Drop for CheckChild {
    fn drop(&mut self) {
        if !self.ended {
            self.kill_group();
        }
    }
}

/// Starts `cmd` with stdin, stdout and stderr on the null device from the spawning thread, so
/// that the exec does not copy and close every descriptor guardian holds (two a service).
/// `cmd` back when this process runs no spawner (the supervisor's tests): then the caller
/// spawns it.
pub async fn spawn_check(
    cmd: std::process::Command,
) -> Result<std::io::Result<CheckChild>, std::process::Command> {
    let Some((launcher, children)) = CHECKS.get() else {
        return Err(cmd);
    };
    let (exit, exited) = oneshot::channel();
    let (reply, answer) = oneshot::channel();
    // The thread is gone only when guardian ends: the job (and `reply`) is dropped with it.
    let _ = launcher.jobs.send(Work::Spawn(Job {
        cmd,
        output: Output::Null,
        exit,
        reply: Reply::Await(reply),
        sockets: Vec::new(),
        pid_vars: Vec::new(),
    }));
    let launched = answer
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("the spawning thread is gone")));
    Ok(launched.map(|(pid, _)| CheckChild {
        pid,
        exit: exited,
        children: children.clone(),
        ended: false,
    }))
}

/// Results of queued jobs, in order. Dropped early, it still reads the rest, so that the next
/// caller gets its own read ends.
struct Launches<'a> {
    inbox: std::sync::MutexGuard<'a, std::os::unix::net::UnixDatagram>,
    answers: std::collections::VecDeque<std::sync::mpsc::Receiver<std::io::Result<Launched>>>,
}

impl Iterator for Launches<'_> {
    type Item = std::io::Result<(i32, Vec<std::os::fd::OwnedFd>)>;

    fn next(&mut self) -> Option<Self::Item> {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
        let answer = self.answers.pop_front()?;
        let gone = || std::io::Error::other("the spawning thread is gone");
        let (pid, sent) = match answer.recv().map_err(|_| gone()) {
            Ok(Ok(launched)) => launched,
            Ok(Err(e)) | Err(e) => return Some(Err(e)),
        };
        let mut fds = Vec::with_capacity(2);
        if sent > 0 {
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut byte = [0u8; 1];
            if let Err(e) = rustix::net::recvmsg(
                &*self.inbox,
                &mut [std::io::IoSliceMut::new(&mut byte)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                return Some(Err(e.into()));
            }
            for msg in control.drain() {
                if let RecvAncillaryMessage::ScmRights(got) = msg {
                    fds.extend(got);
                }
            }
        }
        Some(Ok((pid, fds)))
    }
}

impl Drop for Launches<'_> {
    fn drop(&mut self) {
        for _ in self.by_ref() {}
    }
}

/// The spawning thread: its own table first, then one job at a time until guardian ends.
fn launch_all(
    outbox: std::os::unix::net::UnixDatagram,
    queue: std::sync::mpsc::Receiver<Work>,
    children: &Mutex<Children>,
    leave: &[Descriptor],
    ready: std::sync::mpsc::SyncSender<i32>,
) {
    // SAFETY: from here on this thread has a copy of the table as it is now (guardian's
    // start-up descriptors: the runtime's polls, the signals' sockets, the guardian lock, all
    // open for guardian's whole life). It uses only what it opens itself, `outbox`, and,
    // when a signal handler runs on it, the signals' sockets, whose copies have the same
    // numbers and lead to the same sockets. No other thread sees this table. The copies are
    // kept (not closed) for that reason: a few, a constant, not one per service.
    if unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FILES) }.is_err() {
        tracing::warn!(
            "cannot give the spawning thread a table of its own; each start closes every descriptor guardian holds"
        );
    } else {
        // Except the first starts' own (output pipes, PID files), when they came before this
        // thread: a copy here would outlive guardian's.
        for d in leave {
            d.close_if_same();
        }
    }
    let _ = ready.send(rustix::thread::gettid().as_raw_nonzero().get());
    // Every service's stdin: one open of the null device, a dup per start (no path walk).
    let null_file = std::fs::File::open("/dev/null");
    // The descriptors held sockets go to in a child (3…) are taken here by copies of the
    // null device (close-on-exec), so that nothing the spawn itself opens lands there.
    if let Ok(f) = &null_file {
        reserve_low_descriptors(f);
    }
    let null = || match &null_file {
        Ok(f) => f.try_clone().map(Stdio::from),
        Err(e) => Err(std::io::Error::other(format!("cannot open /dev/null: {e}"))),
    };
    let mut held: HashMap<String, std::os::fd::OwnedFd> = HashMap::new();
    while let Ok(work) = queue.recv() {
        let mut job = match work {
            Work::Spawn(job) => job,
            Work::Hold { address, done } => {
                let _ = done.send(receive_one(&outbox).map(|fd| {
                    held.insert(address, fd);
                }));
                continue;
            }
            Work::Release { address } => {
                held.remove(&address);
                continue;
            }
        };
        let launched = null().and_then(|stdin| {
            job.cmd.stdin(stdin);
            if let Output::Null = job.output {
                job.cmd.stdout(null()?).stderr(null()?);
            }
            if !job.pid_vars.is_empty() {
                pass_sockets(&mut job.cmd, &job.sockets, &held, &job.pid_vars)?;
            }
            launch(job.cmd, job.output, job.exit, &outbox, children)
        });
        match job.reply {
            Reply::Wait(r) => drop(r.send(launched)),
            Reply::Await(r) => drop(r.send(launched)),
        }
    }
}

/// An open descriptor: its number, and the file it leads to (device, inode).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Descriptor {
    fd: i32,
    file: (u64, u64),
}

impl Descriptor {
    /// Every descriptor open in this process's table now, as /proc lists them.
    pub fn all_open() -> Vec<Descriptor> {
        use rustix::fs::{CWD, Dir, Mode, OFlags, openat};
        use std::os::fd::AsRawFd;
        let Ok(dir) = openat(
            CWD,
            "/proc/self/fd",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return Vec::new();
        };
        let own = dir.as_raw_fd();
        let Ok(mut entries) = Dir::new(dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Some(Ok(e)) = entries.read() {
            let fd = e
                .file_name()
                .to_str()
                .ok()
                .and_then(|n| n.parse::<i32>().ok());
            if let Some(fd) = fd.filter(|fd| *fd != own)
                && let Some(d) = Descriptor::of(fd)
            {
                out.push(d);
            }
        }
        out
    }

    fn of(fd: i32) -> Option<Descriptor> {
        // SAFETY: only asked about (fstat), never closed or kept past this call.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let st = rustix::fs::fstat(borrowed).ok()?;
        Some(Descriptor {
            fd,
            file: (st.st_dev, st.st_ino),
        })
    }

    /// Closes it in this thread's table if its number still leads to the same file.
    fn close_if_same(&self) {
        if Descriptor::of(self.fd).as_ref() == Some(self) {
            // SAFETY: called only from the spawning thread on its own (unshared) table, on
            // a copy nothing of that thread uses.
            unsafe { libc::close(self.fd) };
        }
    }
}

/// Takes every free descriptor of 3 to 3 + MAX_SOCKETS with a close-on-exec copy of `null`.
fn reserve_low_descriptors(null: &std::fs::File) {
    use std::os::fd::AsRawFd;
    let top = 3 + crate::config::MAX_SOCKETS as i32;
    for fd in 3..top {
        // SAFETY: fcntl with F_GETFD and F_DUPFD_CLOEXEC takes integers and only asks about or
        // creates a descriptor; the copy is left open on purpose (never closed).
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) == -1 {
                libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, fd);
            }
        }
    }
}

/// One descriptor sent by `Launcher::hold`, now in this thread's table.
fn receive_one(outbox: &std::os::unix::net::UnixDatagram) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        outbox,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut got) = msg
            && let Some(fd) = got.next()
        {
            return Ok(fd);
        }
    }
    Err(std::io::Error::other(
        "no socket arrived with the hold request",
    ))
}

/// The systemd protocol (SPEC §13, §14): the held sockets become fds 3, 4, … of the child,
/// and LISTEN_PID (and WATCHDOG_PID: `pid_vars`) its own PID. std hands its environment to
/// exec only after the `pre_exec` hooks ran, so the hook execs itself, with an environment
/// built here (guardian's, with the command's changes) whose PID digits it writes first.
/// Such a service is forked (not posix_spawned); services with neither sockets nor a
/// watchdog keep the fast path.
fn pass_sockets(
    cmd: &mut std::process::Command,
    addresses: &[String],
    held: &HashMap<String, std::os::fd::OwnedFd>,
    pid_vars: &[&'static str],
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let mut fds = [0i32; crate::config::MAX_SOCKETS];
    for (i, a) in addresses.iter().enumerate().take(fds.len()) {
        fds[i] = held
            .get(a)
            .ok_or_else(|| std::io::Error::other(format!("the socket {a} is not held")))?
            .as_raw_fd();
    }
    let n = addresses.len().min(fds.len());
    let nul = |b: &[u8]| {
        let mut v = Vec::with_capacity(b.len() + 1);
        v.extend_from_slice(b);
        v.push(0);
        v
    };
    let mut env: std::collections::BTreeMap<std::ffi::OsString, std::ffi::OsString> =
        std::env::vars_os().collect();
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => env.insert(k.to_owned(), v.to_owned()),
            None => env.remove(k),
        };
    }
    let mut envs: Vec<Vec<u8>> = env
        .iter()
        .filter(|(k, _)| !pid_vars.iter().any(|v| k.as_bytes() == v.as_bytes()))
        .map(|(k, v)| nul(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect();
    let first_pid_var = envs.len();
    for var in pid_vars {
        envs.push(nul(format!("{var}={PID_PLACEHOLDER}").as_bytes()));
    }
    let mut argv: Vec<Vec<u8>> = vec![nul(cmd.get_program().as_bytes())];
    argv.extend(cmd.get_args().map(|a| nul(a.as_bytes())));
    let exec = Exec::new(argv, envs, first_pid_var);
    // SAFETY: runs in the child between fork and exec. fcntl, dup2, getpid and execvpe are
    // async-signal-safe system calls; the hook allocates nothing: it writes digits into a
    // buffer `Exec` owns and hands exec arrays built before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let first = 3;
            // Each socket first goes out of the way (a source may sit where another goes).
            let mut moved = [0i32; crate::config::MAX_SOCKETS];
            for i in 0..n {
                moved[i] = libc::fcntl(fds[i], libc::F_DUPFD_CLOEXEC, first + n as i32);
                if moved[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in moved.iter().enumerate().take(n) {
                // dup2's copy is not close-on-exec: the service keeps it.
                if libc::dup2(*fd, first + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            exec.run(libc::getpid())
        });
    }
    Ok(())
}

/// The value LISTEN_PID and WATCHDOG_PID hold until the child writes its PID over it: as
/// wide as any PID (pid_max is at most 4194304).
const PID_PLACEHOLDER: &str = "0000000000";

/// An exec prepared before a fork: NUL-terminated argument and environment strings, the
/// null-terminated pointer arrays to them, and where the PID digits go.
struct Exec {
    _argv: Vec<Vec<u8>>,
    _envs: Vec<Vec<u8>>,
    argv_ptrs: Vec<*const libc::c_char>,
    env_ptrs: Vec<*const libc::c_char>,
    pid_digits: Vec<*mut u8>,
}

// SAFETY: the pointers lead into the buffers this value owns (heap memory that does not move
// when the value does); they are only read or written in the forked child.
unsafe impl Send for Exec {}
// SAFETY: as above; the parent never touches them after building.
unsafe impl Sync for Exec {}

impl Exec {
    /// `envs` ends with `VAR=` placeholders for the PID, from `first_pid_var` on.
    fn new(argv: Vec<Vec<u8>>, mut envs: Vec<Vec<u8>>, first_pid_var: usize) -> Exec {
        let pid_digits = envs[first_pid_var..]
            .iter_mut()
            .map(|e| {
                let at = e.iter().position(|b| *b == b'=').map_or(0, |i| i + 1);
                e[at..].as_mut_ptr()
            })
            .collect();
        let ptrs = |v: &Vec<Vec<u8>>| {
            let mut p: Vec<*const libc::c_char> = v.iter().map(|s| s.as_ptr().cast()).collect();
            p.push(std::ptr::null());
            p
        };
        Exec {
            argv_ptrs: ptrs(&argv),
            env_ptrs: ptrs(&envs),
            _argv: argv,
            _envs: envs,
            pid_digits,
        }
    }

    /// Writes `pid` into the PID variables and execs; returns only on failure.
    ///
    /// # Safety
    /// Only in the forked child, once.
    unsafe fn run(&self, pid: libc::pid_t) -> std::io::Result<()> {
        let mut digits = [0u8; 10];
        let mut len = 0;
        let mut v = pid as u32;
        loop {
            digits[len] = b'0' + (v % 10) as u8;
            len += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        // SAFETY: the placeholder holds 10 digits and a NUL, room for any PID and its NUL;
        // the arrays are null-terminated and point at NUL-terminated strings.
        unsafe {
            for at in &self.pid_digits {
                for i in 0..len {
                    *at.add(i) = digits[len - 1 - i];
                }
                *at.add(len) = 0;
            }
            libc::execvpe(
                self.argv_ptrs[0],
                self.argv_ptrs.as_ptr(),
                self.env_ptrs.as_ptr(),
            );
        }
        Err(std::io::Error::last_os_error())
    }
}

fn launch(
    mut cmd: std::process::Command,
    output: Output,
    exit: oneshot::Sender<ExitInfo>,
    outbox: &std::os::unix::net::UnixDatagram,
    children: &Mutex<Children>,
) -> std::io::Result<Launched> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    use std::os::fd::AsFd;
    let split = match output {
        Output::Pipes { split } => split,
        Output::Null => {
            let mut table = children
                .lock()
                .expect("UNWRAP: the lock is never poisoned: no panic while held");
            let pid = cmd.spawn()?.id() as i32;
            table.insert(pid, exit);
            return Ok((pid, 0));
        }
    };
    let (pid, readers) = start_piped(cmd, split, exit, children)?;
    let readers: Vec<_> = readers.iter().map(|r| r.as_fd()).collect();
    let rights = [SendAncillaryMessage::ScmRights(&readers)];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    for m in rights {
        control.push(m);
    }
    match rustix::net::sendmsg(
        outbox,
        &[std::io::IoSlice::new(&[0])],
        &mut control,
        SendFlags::empty(),
    ) {
        Ok(_) => Ok((pid, readers.len())),
        Err(e) => {
            // The service runs (and is watched); only its output is lost.
            tracing::error!(pid, error = %e, "cannot hand a service's output pipe over; its output is not logged");
            Ok((pid, 0))
        }
    }
}

/// Spawns `cmd` with its output into a new pipe (a second one for stderr when `split`) and
/// enters it in `children`: its PID, and the read ends (stdout's, then stderr's) in this
/// thread's table.
fn start_piped(
    mut cmd: std::process::Command,
    split: bool,
    exit: oneshot::Sender<ExitInfo>,
    children: &Mutex<Children>,
) -> std::io::Result<(i32, Vec<std::os::fd::OwnedFd>)> {
    let (out_r, out_w) = std::io::pipe()?;
    let err_r = if split {
        let (r, w) = std::io::pipe()?;
        cmd.stderr(w);
        Some(r)
    } else {
        cmd.stderr(out_w.try_clone()?);
        None
    };
    cmd.stdout(out_w);
    let mut table = children
        .lock()
        .expect("UNWRAP: the lock is never poisoned: no panic while held");
    // std's Child is only a PID here: dropping it neither waits nor kills.
    let pid = cmd.spawn()?.id() as i32;
    table.insert(pid, exit);
    drop(table);
    // The write ends went to the child and close here: each pipe ends when the service and
    // everything that inherited its output are gone.
    drop(cmd);
    let mut readers = vec![std::os::fd::OwnedFd::from(out_r)];
    readers.extend(err_r.map(std::os::fd::OwnedFd::from));
    Ok((pid, readers))
}

/// The service's processes: its tree, plus orphans reparented to guardian that carry its mark.
/// Reads only the service's tree and guardian's own children that no service owns: once a
/// leader dies its descendants move to guardian (a subreaper), so they are found there.
/// The children of `spawning` (the spawning thread) are skipped unread: they are the
/// services, and an orphan goes to guardian's main thread (the kernel picks the first live
/// thread of the reaper), so stopping n services reads n small lists, not n lists of n.
pub fn family(service: &str, pid: i32, spawning: i32, managed: impl Fn(i32) -> bool) -> Vec<i32> {
    let mut out = procinfo::tree(pid);
    let me = std::process::id() as i32;
    for orphan in procinfo::children_of_threads(me, |tid| tid != spawning) {
        if out.contains(&orphan) || managed(orphan) {
            continue;
        }
        if procinfo::service_mark(orphan).as_deref() == Some(service) {
            out.extend(procinfo::tree(orphan));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_ranges_are_the_read_only_mappings_up_to_the_code() {
        let exe = "/usr/bin/guardian";
        let maps = "\
5593b00b1000-5593b0326000 r--p 00000000 fe:00 1 /usr/bin/guardian
5593b0326000-5593b0c67000 r-xp 00274000 fe:00 1 /usr/bin/guardian
5593b0c67000-5593b0caa000 r--p 00bb4000 fe:00 1 /usr/bin/guardian
5593b0caa000-5593b0cac000 rw-p 00bf6000 fe:00 1 /usr/bin/guardian
7f6b8dc1a000-7f6b8dc40000 r--p 00000000 fe:00 2 /usr/lib/x86_64-linux-gnu/libc.so.6
7f6b8dc40000-7f6b8dd95000 r-xp 00026000 fe:00 2 /usr/lib/x86_64-linux-gnu/libc.so.6
";
        assert_eq!(
            code_ranges(maps, exe),
            vec![
                (0x5593b00b1000, 0x5593b0326000),
                (0x5593b0326000, 0x5593b0c67000)
            ]
        );
        // Another program's path, a path with spaces, a writable mapping first: nothing.
        assert!(code_ranges(maps, "/usr/bin/other").is_empty());
        let spaced = "1000-2000 r--p 0 fe:00 1 /opt/my apps/guardian\n2000-3000 r-xp 1000 fe:00 1 /opt/my apps/guardian\n";
        assert_eq!(
            code_ranges(spaced, "/opt/my apps/guardian"),
            vec![(0x1000, 0x2000), (0x2000, 0x3000)]
        );
        let odd = "1000-2000 rw-p 0 fe:00 1 /usr/bin/guardian\n2000-3000 r-xp 1000 fe:00 1 /usr/bin/guardian\n";
        assert!(code_ranges(odd, exe).is_empty());
        assert!(code_ranges("", exe).is_empty());
    }

    #[test]
    fn rotates_by_size_and_keeps_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/web.log");
        let mut log = RotatingLog::new(path.clone(), 10, 2);
        for line in ["aaaaaaaa\n", "bbbbbbbb\n", "cccccccc\n", "dddddddd\n"] {
            log.write(line.as_bytes());
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "dddddddd\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("logs/web.log.1")).unwrap(),
            "cccccccc\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("logs/web.log.2")).unwrap(),
            "bbbbbbbb\n"
        );
        assert!(!dir.path().join("logs/web.log.3").exists());
    }
}
