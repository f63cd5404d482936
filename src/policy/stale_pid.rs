//! The stale-PID ladder of SPEC §4 as one decision over what was observed. Pure: no IO, no
//! clock; `pidfile.rs` observes, this decides.

use std::fmt;

/// What the PID file held.
#[derive(Clone, Debug, PartialEq)]
pub enum FileObs {
    Missing,
    Empty,
    Invalid(String),
    Pid(i32),
}

/// What /proc said of the PID in the file.
#[derive(Clone, Debug, PartialEq)]
pub enum ProcObs {
    Gone,
    Zombie,
    Alive(Identity),
}

/// The identity test of a live process.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// Its command line contains every identity pattern.
    pub cmdline_matches: bool,
    /// Its start time equals the recorded one; `None` when the file recorded none (legacy).
    pub start_matches: Option<bool>,
    /// It or a descendant listens on the port; `None` when `match_port` is off.
    pub port_matches: Option<bool>,
}

/// Who holds the service's port, when it has one.
#[derive(Clone, Debug, PartialEq)]
pub enum PortObs {
    Free,
    /// A process listens; `ours` when its command line passes the identity patterns.
    HeldBy {
        pid: i32,
        cmdline: String,
        ours: bool,
    },
    /// Listening, but the socket's owner could not be seen (another user's process).
    HeldByUnknown,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub file: FileObs,
    /// Another process (a live guardian) holds the file's lock.
    pub locked: bool,
    /// `None` when the file named no PID.
    pub process: Option<ProcObs>,
    /// `None` when the service has no port.
    pub port: Option<PortObs>,
}

/// The rung that decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rung {
    NoFile,
    BadFile,
    ProcessGone,
    Zombie,
    CommandMismatch,
    StartTimeMismatch,
    PortMismatch,
    Verified,
}

impl fmt::Display for Rung {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rung::NoFile => "no pid file",
            Rung::BadFile => "empty or invalid pid file",
            Rung::ProcessGone => "process gone (stale pid file)",
            Rung::Zombie => "process is a zombie",
            Rung::CommandMismatch => {
                "pid alive but its command line does not match the identity patterns (not ours)"
            }
            Rung::StartTimeMismatch => {
                "pid alive but started at another time (pid reused; not ours)"
            }
            Rung::PortMismatch => {
                "pid alive but neither it nor a descendant listens on the port (not ours)"
            }
            Rung::Verified => "process alive and verified",
        })
    }
}

/// The verdict, with what the caller may do about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub rung: Rung,
    /// A verified instance runs with this PID: the only PID anything may signal.
    pub running: Option<i32>,
    /// The file is stale and nobody holds it: remove it.
    pub remove_file: bool,
    /// The port, when it was checked because the file did not prove an instance.
    pub port: Option<PortObs>,
    pub locked: bool,
}

impl Verdict {
    /// A foreign process on the port: the start would fail with a port conflict.
    pub fn port_conflict(&self) -> Option<(i32, &str)> {
        match &self.port {
            Some(PortObs::HeldBy {
                pid,
                cmdline,
                ours: false,
            }) => Some((*pid, cmdline)),
            _ => None,
        }
    }

    /// No PID file proves an instance, but the port holder passes identity: an instance that
    /// runs without (or outside) guardian's files.
    pub fn unmanaged_instance(&self) -> Option<i32> {
        match &self.port {
            Some(PortObs::HeldBy {
                pid, ours: true, ..
            }) if self.running.is_none() => Some(*pid),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.running {
            Some(pid) => write!(f, "running (pid {pid}): {}", self.rung)?,
            None => write!(f, "not running: {}", self.rung)?,
        }
        if self.locked && self.running.is_none() {
            write!(
                f,
                "; the pid file is locked by a live guardian, so it is kept"
            )?;
        } else if self.remove_file {
            write!(f, "; the pid file is removed")?;
        }
        match &self.port {
            Some(PortObs::Free) => write!(f, "; port is free"),
            Some(PortObs::HeldBy { pid, cmdline, ours }) => {
                let whose = if *ours {
                    "matches the identity patterns"
                } else {
                    "is a foreign process"
                };
                write!(f, "; port is held by pid {pid} ({cmdline}), which {whose}")
            }
            Some(PortObs::HeldByUnknown) => {
                write!(f, "; port is held by a process this user cannot see")
            }
            None => Ok(()),
        }
    }
}

/// Climbs the ladder: missing → bad → gone → zombie → identity → verified.
pub fn decide(obs: &Observation) -> Verdict {
    let not_running = |rung: Rung, stale: bool| Verdict {
        rung,
        running: None,
        // A locked PID file is never treated as stale, by anyone.
        remove_file: stale && !obs.locked,
        port: obs.port.clone(),
        locked: obs.locked,
    };
    match (&obs.file, &obs.process) {
        (FileObs::Missing, _) => not_running(Rung::NoFile, false),
        (FileObs::Empty | FileObs::Invalid(_), _) => not_running(Rung::BadFile, true),
        (FileObs::Pid(_), None | Some(ProcObs::Gone)) => not_running(Rung::ProcessGone, true),
        (FileObs::Pid(_), Some(ProcObs::Zombie)) => not_running(Rung::Zombie, true),
        (FileObs::Pid(pid), Some(ProcObs::Alive(id))) => {
            if !id.cmdline_matches {
                not_running(Rung::CommandMismatch, true)
            } else if id.start_matches == Some(false) {
                not_running(Rung::StartTimeMismatch, true)
            } else if id.port_matches == Some(false) {
                not_running(Rung::PortMismatch, true)
            } else {
                Verdict {
                    rung: Rung::Verified,
                    running: Some(*pid),
                    remove_file: false,
                    port: None,
                    locked: obs.locked,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(cmd: bool, start: Option<bool>, port: Option<bool>) -> Option<ProcObs> {
        Some(ProcObs::Alive(Identity {
            cmdline_matches: cmd,
            start_matches: start,
            port_matches: port,
        }))
    }

    fn obs(file: FileObs, locked: bool, process: Option<ProcObs>) -> Observation {
        Observation {
            file,
            locked,
            process,
            port: Some(PortObs::Free),
        }
    }

    #[test]
    fn every_rung_of_the_ladder() {
        use FileObs::*;
        // (observation, rung, running pid, file removed)
        let table: Vec<(Observation, Rung, Option<i32>, bool)> = vec![
            (obs(Missing, false, None), Rung::NoFile, None, false),
            (obs(Empty, false, None), Rung::BadFile, None, true),
            (
                obs(Invalid("garbage".into()), false, None),
                Rung::BadFile,
                None,
                true,
            ),
            (
                obs(Pid(10), false, Some(ProcObs::Gone)),
                Rung::ProcessGone,
                None,
                true,
            ),
            (
                obs(Pid(10), false, Some(ProcObs::Zombie)),
                Rung::Zombie,
                None,
                true,
            ),
            (
                obs(Pid(10), false, alive(false, Some(true), None)),
                Rung::CommandMismatch,
                None,
                true,
            ),
            (
                obs(Pid(10), false, alive(true, Some(false), None)),
                Rung::StartTimeMismatch,
                None,
                true,
            ),
            (
                obs(Pid(10), false, alive(true, Some(true), Some(false))),
                Rung::PortMismatch,
                None,
                true,
            ),
            (
                obs(Pid(10), false, alive(true, Some(true), Some(true))),
                Rung::Verified,
                Some(10),
                false,
            ),
            (
                obs(Pid(10), false, alive(true, None, None)),
                Rung::Verified,
                Some(10),
                false,
            ),
            // A locked file is never stale, whatever else was seen.
            (
                obs(Pid(10), true, Some(ProcObs::Gone)),
                Rung::ProcessGone,
                None,
                false,
            ),
            (obs(Empty, true, None), Rung::BadFile, None, false),
            (
                obs(Pid(10), true, alive(true, Some(false), None)),
                Rung::StartTimeMismatch,
                None,
                false,
            ),
            (
                obs(Pid(10), true, alive(true, Some(true), None)),
                Rung::Verified,
                Some(10),
                false,
            ),
        ];
        for (o, rung, running, removed) in table {
            let v = decide(&o);
            assert_eq!(
                (v.rung, v.running, v.remove_file),
                (rung, running, removed),
                "{o:?}"
            );
        }
    }

    #[test]
    fn the_port_is_reported_when_no_instance_is_proven() {
        let held = PortObs::HeldBy {
            pid: 77,
            cmdline: "nc -l 8080".into(),
            ours: false,
        };
        let v = decide(&Observation {
            file: FileObs::Missing,
            locked: false,
            process: None,
            port: Some(held.clone()),
        });
        assert_eq!(v.port_conflict(), Some((77, "nc -l 8080")));
        assert!(
            v.to_string()
                .contains("port is held by pid 77 (nc -l 8080), which is a foreign process")
        );
        let mine = PortObs::HeldBy {
            pid: 78,
            cmdline: "server".into(),
            ours: true,
        };
        let v = decide(&Observation {
            file: FileObs::Missing,
            locked: false,
            process: None,
            port: Some(mine),
        });
        assert_eq!(v.unmanaged_instance(), Some(78));
        assert_eq!(v.port_conflict(), None);
    }

    #[test]
    fn verdicts_name_their_rung() {
        let v = decide(&obs(FileObs::Pid(5), false, alive(true, Some(false), None)));
        assert_eq!(
            v.to_string(),
            "not running: pid alive but started at another time (pid reused; not ours); the pid file is removed; port is free"
        );
    }
}
