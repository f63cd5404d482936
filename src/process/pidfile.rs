//! PID files and single instance (SPEC §4): the state dir, the guardian's own lock, service
//! PID files (JSON, 0644, never through a symlink, written whole, locked while the service
//! runs), and the probe that observes what the stale-PID ladder decides on. File and /proc IO.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::IdentitySpec;
use crate::policy::stale_pid::{self, FileObs, Identity, Observation, PortObs, ProcObs, Verdict};
use crate::process::procinfo::{self, PortHolder};

/// The largest PID file read; anything longer is refused as invalid.
const MAX_PID_FILE: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("state dir {} is a symlink; guardian refuses it so that nobody can redirect its files\n  1. point --state-dir (or guardian.state_dir) at a real directory\n  2. look: ls -ld {}", path.display(), path.display())]
    StateDirSymlink { path: PathBuf },
    #[error("state dir {} exists but is not a directory; move it away or choose another --state-dir", path.display())]
    StateDirNotDir { path: PathBuf },
    #[error("state dir {} belongs to uid {owner}, not to you (uid {me}); use your own, e.g. --state-dir /tmp/guardian-{me}", path.display())]
    StateDirOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("state dir {} has mode {mode:o}: it is writable by group or others, so anyone could plant a PID file\n  1. fix it: chmod 700 {}", path.display(), path.display())]
    StateDirMode { path: PathBuf, mode: u32 },
    #[error("pid file {} is a symlink; guardian never follows one (its target is left untouched)\n  1. look: ls -l {}\n  2. remove the link if it is not yours to keep: rm {}", path.display(), path.display(), path.display())]
    Symlink { path: PathBuf },
    #[error("cannot {action} {}{}", path.display(), hint(source))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            " (permission denied: check the owner and mode of the folder, or choose another --state-dir)"
        }
        _ => "",
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PidFileError + 'a {
    move |source| PidFileError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The wall clock, read here only: PID files record when things started.
#[allow(clippy::disallowed_methods)]
pub fn wall_clock() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

pub fn unix_now() -> f64 {
    wall_clock()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn iso(secs: f64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// Creates the state dir 0700, or checks an existing one: a real directory of ours that
/// nobody else can write to.
pub fn ensure_state_dir(path: &Path) -> Result<(), PidFileError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(io_err("create the parent of state dir", path))?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create state dir", path)(e)),
            }
            check_state_dir(path)
        }
        Err(e) => Err(io_err("inspect state dir", path)(e)),
        Ok(_) => check_state_dir(path),
    }
}

/// The checks of `ensure_state_dir`, without creating anything.
pub fn check_state_dir(path: &Path) -> Result<(), PidFileError> {
    let meta = std::fs::symlink_metadata(path).map_err(io_err("inspect state dir", path))?;
    if meta.file_type().is_symlink() {
        return Err(PidFileError::StateDirSymlink {
            path: path.to_owned(),
        });
    }
    if !meta.is_dir() {
        return Err(PidFileError::StateDirNotDir {
            path: path.to_owned(),
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(PidFileError::StateDirOwner {
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(PidFileError::StateDirMode {
            path: path.to_owned(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// What a service PID file holds (SPEC §4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PidRecord {
    pub pid: i64,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub server_id: String,
    #[serde(default)]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub start_time: String,
    /// Seconds since the epoch; for display and for writers that keep no ticks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start_time: Option<f64>,
    /// Clock ticks after boot: the exact identity guardian compares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardian_pid: Option<i64>,
    #[serde(default)]
    pub guardian_version: String,
    #[serde(default)]
    pub platform: String,
    #[serde(default)]
    pub created_at: String,
}

impl PidRecord {
    /// The record of a live process that started `ticks` clock ticks after boot.
    pub fn of(
        pid: i32,
        ticks: Option<u64>,
        service: &str,
        host: &str,
        port: Option<u16>,
        command: &[String],
    ) -> Self {
        let started = ticks.map(procinfo::start_time_secs);
        let now = unix_now();
        PidRecord {
            pid: i64::from(pid),
            service: service.to_owned(),
            server_id: port.map_or_else(|| service.to_owned(), |p| format!("{service}-{p}")),
            host: host.to_owned(),
            port,
            command: command.to_vec(),
            start_time: iso(started.unwrap_or(now)),
            process_start_time: started.map(|s| (s * 100.0).round() / 100.0),
            start_ticks: ticks,
            guardian_pid: Some(i64::from(std::process::id())),
            guardian_version: env!("CARGO_PKG_VERSION").to_owned(),
            platform: std::env::consts::OS.to_owned(),
            created_at: iso(now),
        }
    }
}

/// What was found at a PID file path.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    Missing,
    Empty,
    Invalid(String),
    Record(Box<PidRecord>),
}

fn open_nofollow(path: &Path) -> Result<Option<File>, PidFileError> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(PidFileError::Symlink {
            path: path.to_owned(),
        }),
        Err(e) => Err(io_err("open pid file", path)(e)),
    }
}

fn parse_content(text: &[u8], too_large: bool) -> Content {
    if too_large {
        return Content::Invalid(format!("larger than {MAX_PID_FILE} bytes"));
    }
    let Ok(text) = std::str::from_utf8(text) else {
        return Content::Invalid("not UTF-8 text".into());
    };
    let text = text.trim();
    if text.is_empty() {
        return Content::Empty;
    }
    let pid_max = procinfo::pid_max();
    let check = |pid: i64| -> Result<(), String> {
        if pid <= 0 || pid > pid_max {
            Err(format!("pid {pid} is outside 1..={pid_max}"))
        } else {
            Ok(())
        }
    };
    if let Ok(pid) = text.parse::<i64>() {
        // A legacy file: just the number.
        return match check(pid) {
            Ok(()) => Content::Record(Box::new(PidRecord { pid, ..legacy() })),
            Err(e) => Content::Invalid(e),
        };
    }
    match serde_json::from_str::<PidRecord>(text) {
        Ok(r) => match check(r.pid) {
            Ok(()) => Content::Record(Box::new(r)),
            Err(e) => Content::Invalid(e),
        },
        Err(e) if e.to_string().contains("missing field `pid`") => {
            Content::Invalid("JSON without `pid`".into())
        }
        Err(e) => Content::Invalid(format!("not a pid or a JSON record ({e})")),
    }
}

fn legacy() -> PidRecord {
    PidRecord {
        pid: 0,
        service: String::new(),
        server_id: String::new(),
        host: String::new(),
        port: None,
        command: Vec::new(),
        start_time: String::new(),
        process_start_time: None,
        start_ticks: None,
        guardian_pid: None,
        guardian_version: String::new(),
        platform: String::new(),
        created_at: String::new(),
    }
}

/// Reads a PID file (bounded), and whether another process holds its lock.
pub fn read(path: &Path) -> Result<(Content, bool), PidFileError> {
    let Some(file) = open_nofollow(path)? else {
        return Ok((Content::Missing, false));
    };
    let mut buf = Vec::new();
    (&file)
        .take(MAX_PID_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(io_err("read pid file", path))?;
    let too_large = buf.len() as u64 > MAX_PID_FILE;
    let locked = matches!(
        file.try_lock_shared(),
        Err(std::fs::TryLockError::WouldBlock)
    );
    Ok((parse_content(&buf, too_large), locked))
}

/// Observes a service's PID file, process and port: the input of the stale-PID ladder.
pub fn observe(
    path: &Path,
    identity: &IdentitySpec,
    port: Option<u16>,
) -> Result<(Observation, Option<PidRecord>), PidFileError> {
    let (content, locked) = read(path)?;
    let (file, record) = match content {
        Content::Missing => (FileObs::Missing, None),
        Content::Empty => (FileObs::Empty, None),
        Content::Invalid(why) => (FileObs::Invalid(why), None),
        Content::Record(r) => (FileObs::Pid(r.pid as i32), Some(*r)),
    };
    let process = record
        .as_ref()
        .map(|r| match procinfo::facts(r.pid as i32) {
            None => ProcObs::Gone,
            Some(f) if f.is_zombie() => ProcObs::Zombie,
            Some(f) => ProcObs::Alive(Identity {
                cmdline_matches: procinfo::cmdline_matches(&f.cmdline, &identity.patterns),
                start_matches: match (r.start_ticks, r.process_start_time) {
                    (Some(t), _) => Some(t == f.start_ticks),
                    (None, Some(s)) => {
                        Some((procinfo::start_time_secs(f.start_ticks) - s).abs() <= 1.0)
                    }
                    (None, None) => None,
                },
                port_matches: match (identity.match_port, port) {
                    (true, Some(p)) => Some(procinfo::tree_listens_on(f.pid, p)),
                    _ => None,
                },
            }),
        });
    let proven = matches!(&process, Some(ProcObs::Alive(id)) if id.cmdline_matches && id.start_matches != Some(false) && id.port_matches != Some(false));
    let port = match port {
        Some(p) if !proven => Some(match procinfo::port_holder(p) {
            PortHolder::Free => PortObs::Free,
            PortHolder::Unknown => PortObs::HeldByUnknown,
            PortHolder::Pid(f) => PortObs::HeldBy {
                pid: f.pid,
                ours: procinfo::cmdline_matches(&f.cmdline, &identity.patterns),
                cmdline: f.command_line(),
            },
        }),
        _ => None,
    };
    Ok((
        Observation {
            file,
            locked,
            process,
            port,
        },
        record,
    ))
}

/// Observes, decides, and removes a stale file that nobody holds. The verdict names its rung.
pub fn check(
    path: &Path,
    identity: &IdentitySpec,
    port: Option<u16>,
) -> Result<(Verdict, Option<PidRecord>), PidFileError> {
    let (obs, record) = observe(path, identity, port)?;
    let verdict = stale_pid::decide(&obs);
    if verdict.remove_file {
        remove_if_unlocked(path)?;
    }
    Ok((verdict, record))
}

/// Removes a PID file unless someone holds its lock; never follows a symlink.
fn remove_if_unlocked(path: &Path) -> Result<(), PidFileError> {
    let Some(file) = open_nofollow(path)? else {
        return Ok(());
    };
    if file.try_lock().is_ok() && same_file(&file, path) {
        std::fs::remove_file(path)
            .or_else(ignore_missing)
            .map_err(io_err("remove stale pid file", path))?;
    }
    Ok(())
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// The path still names this open file (not a file put there since).
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Writes `contents` to a locked temporary file in the same folder and renames it into place,
/// so that no reader sees half a file and the lock travels with it. Refuses a symlink at `path`.
fn write_locked(path: &Path, contents: &[u8]) -> Result<File, PidFileError> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(PidFileError::Symlink {
            path: path.to_owned(),
        });
    }
    write_atomic(path, contents, true).map_err(io_err("write pid file", path))
}

/// A temporary file in the same folder (mode 0644, optionally locked), filled and renamed
/// over `path`: readers see the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, contents: &[u8], lock: bool) -> io::Result<File> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut n = 0u32;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        if lock {
            file.try_lock().map_err(io::Error::from)?;
        }
        // No fsync: the rename alone keeps readers from half a file, and a file that did not
        // survive a power cut describes processes that did not survive it either.
        file.write_all(contents)?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(file)
}

/// A service's PID file, locked for as long as this value lives.
#[derive(Debug)]
pub struct ServicePidFile {
    file: File,
    path: PathBuf,
}

impl ServicePidFile {
    pub fn write(path: &Path, record: &PidRecord) -> Result<Self, PidFileError> {
        let mut json =
            serde_json::to_vec_pretty(record).expect("UNWRAP: a PidRecord always serializes");
        json.push(b'\n');
        let file = write_locked(path, &json)?;
        Ok(ServicePidFile {
            file,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file (if it is still ours) and releases the lock.
    pub fn remove(self) {
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Releases the lock and leaves the file in place, for the next guardian to adopt.
    pub fn keep(self) {}

    /// Where a draining instance's PID file goes: `PATH.draining`.
    pub fn aside(path: &Path) -> PathBuf {
        let mut aside = path.to_owned().into_os_string();
        aside.push(".draining");
        PathBuf::from(aside)
    }

    /// Moves the file (its lock goes with it) to `PATH.draining`, so that the instance that
    /// replaces this one can write PATH (start-first, SPEC §13).
    pub fn set_aside(mut self) -> Self {
        let aside = Self::aside(&self.path);
        if same_file(&self.file, &self.path) && std::fs::rename(&self.path, &aside).is_ok() {
            self.path = aside;
        }
        self
    }

    /// Moves a file set aside back to `path` (the new instance failed: the old one serves on).
    pub fn put_back(mut self, path: &Path) -> Self {
        if self.path != path && std::fs::rename(&self.path, path).is_ok() {
            self.path = path.to_owned();
        }
        self
    }
}

/// The guardian's own record in `{state_dir}/guardian.pid`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuardianRecord {
    pub pid: i64,
    pub version: String,
    pub start_time: String,
    pub process_start_time: f64,
    #[serde(default)]
    pub start_ticks: Option<u64>,
    #[serde(default)]
    pub config_files: Vec<String>,
}

/// Another guardian holds the state dir.
#[derive(Debug, thiserror::Error)]
pub struct DaemonConflict {
    pub path: PathBuf,
    pub holder: Option<GuardianRecord>,
    pub cmdline: Option<String>,
    pub uptime: Option<Duration>,
}

impl std::fmt::Display for DaemonConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dir = self.path.parent().unwrap_or(Path::new(".")).display();
        match &self.holder {
            Some(h) => {
                write!(
                    f,
                    "another guardian (pid {}) holds {}",
                    h.pid,
                    self.path.display()
                )?;
                write!(f, "\n  started {}", h.start_time)?;
                if let Some(up) = self.uptime {
                    write!(
                        f,
                        " (up {})",
                        humantime::format_duration(Duration::from_secs(up.as_secs()))
                    )?;
                }
                if let Some(cmd) = &self.cmdline {
                    write!(f, ": {cmd}")?;
                }
                write!(
                    f,
                    "\n  1. see what it runs: guardian --state-dir {dir} status\n  2. stop it: guardian --state-dir {dir} stop   (or: kill -TERM {})\n  3. or run this one on its own state dir: guardian run --state-dir OTHER_DIR\n  look further: ps -p {} -o pid,ppid,etime,cmd",
                    h.pid, h.pid
                )
            }
            None => write!(
                f,
                "another guardian holds {} (its record is being written or unreadable)\n  1. see it: guardian --state-dir {dir} status\n  2. find it: fuser -v {}",
                self.path.display(),
                self.path.display()
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error(transparent)]
    Conflict(#[from] DaemonConflict),
    #[error(transparent)]
    PidFile(#[from] PidFileError),
}

/// The exclusive lock on `{state_dir}/guardian.pid`, held for the guardian's whole life.
#[derive(Debug)]
pub struct GuardianLock {
    file: File,
    path: PathBuf,
    /// The record of a guardian that died without cleaning up, replaced by this one.
    pub replaced: Option<GuardianRecord>,
}

pub fn guardian_pid_path(state_dir: &Path) -> PathBuf {
    state_dir.join("guardian.pid")
}

impl GuardianLock {
    pub fn acquire(state_dir: &Path, config_files: &[PathBuf]) -> Result<Self, AcquireError> {
        let path = guardian_pid_path(state_dir);
        for _ in 0..100 {
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    return Err(PidFileError::Symlink { path }.into());
                }
                Err(e) => {
                    return Err(PidFileError::Io {
                        action: "open",
                        path,
                        source: e,
                    }
                    .into());
                }
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Err(conflict(&path).into()),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(PidFileError::Io {
                        action: "lock",
                        path,
                        source: e,
                    }
                    .into());
                }
            }
            // Locked, but the path may name a newer file by now: then that one decides.
            if !same_file(&file, &path) {
                continue;
            }
            let mut old = Vec::new();
            let _ = (&file).take(MAX_PID_FILE).read_to_end(&mut old);
            let replaced = serde_json::from_slice::<GuardianRecord>(&old).ok();
            let me = std::process::id() as i32;
            let ticks = procinfo::start_ticks(me);
            let started = ticks.map_or_else(unix_now, procinfo::start_time_secs);
            let record = GuardianRecord {
                pid: i64::from(me),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                start_time: iso(started),
                process_start_time: (started * 100.0).round() / 100.0,
                start_ticks: ticks,
                config_files: config_files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            };
            let mut json = serde_json::to_vec_pretty(&record)
                .expect("UNWRAP: a GuardianRecord always serializes");
            json.push(b'\n');
            let new = write_locked(&path, &json)?;
            drop(file);
            return Ok(GuardianLock {
                file: new,
                path,
                replaced,
            });
        }
        Err(conflict(&path).into())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for GuardianLock {
    fn drop(&mut self) {
        if same_file(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The holder may be between taking the lock and renaming its record into place: give it
/// a moment (this runs before any async runtime exists).
#[allow(clippy::disallowed_methods)]
fn conflict(path: &Path) -> DaemonConflict {
    let read = || {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<GuardianRecord>(&b).ok())
    };
    let mut holder = read();
    for _ in 0..50 {
        if holder.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        holder = read();
    }
    let facts = holder.as_ref().and_then(|h| procinfo::facts(h.pid as i32));
    DaemonConflict {
        path: path.to_owned(),
        uptime: holder
            .as_ref()
            .map(|h| Duration::from_secs_f64((unix_now() - h.process_start_time).max(0.0))),
        cmdline: facts.map(|f| f.command_line()),
        holder,
    }
}

/// The running guardian's record, if one holds the state dir.
pub fn running_guardian(state_dir: &Path) -> Option<GuardianRecord> {
    let path = guardian_pid_path(state_dir);
    let file = open_nofollow(&path).ok()??;
    if !matches!(
        file.try_lock_shared(),
        Err(std::fs::TryLockError::WouldBlock)
    ) {
        return None;
    }
    let mut buf = Vec::new();
    (&file).take(MAX_PID_FILE).read_to_end(&mut buf).ok()?;
    serde_json::from_slice(&buf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_content() {
        let ok = |c: Content| matches!(c, Content::Record(_));
        assert_eq!(parse_content(b"", false), Content::Empty);
        assert_eq!(parse_content(b"  \n", false), Content::Empty);
        assert!(ok(parse_content(b"12345\n", false)));
        assert!(ok(parse_content(br#"{"pid": 42, "service": "x"}"#, false)));
        let invalid = |b: &[u8]| match parse_content(b, false) {
            Content::Invalid(why) => why,
            other => panic!("{other:?}"),
        };
        assert!(invalid(b"garbage").contains("not a pid"));
        assert!(invalid(br#"{"service": "x"}"#).contains("without `pid`"));
        assert!(invalid(b"0").contains("outside"));
        assert!(invalid(b"-5").contains("outside"));
        assert!(invalid(b"99999999999").contains("outside"));
        assert!(
            matches!(parse_content(b"1", true), Content::Invalid(w) if w.contains("larger than"))
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// PID files of any content: read without a panic; a rejection says what is wrong.
        #[test]
        fn any_pid_file_bytes_are_read_without_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("svc.pid");
            std::fs::write(&path, &bytes).unwrap();
            let (content, locked) = read(&path).unwrap();
            proptest::prop_assert!(!locked);
            if let Content::Invalid(why) = content {
                proptest::prop_assert!(!why.is_empty());
            }
        }

        /// JSON-shaped PID files with odd values: same.
        #[test]
        fn json_records_with_odd_values_never_panic(pid in proptest::prelude::any::<i64>(), ticks in proptest::prelude::any::<i64>(), svc in ".{0,20}") {
            let text = serde_json::json!({"pid": pid, "service": svc, "start_ticks": ticks}).to_string();
            let _ = parse_content(text.as_bytes(), false);
        }
    }
}
