//! `guardian doctor`: a troubleshooting report that reads only files, /proc and (when one
//! runs) the guardian's socket. It changes nothing. Exit 1 when anything needs attention.

use std::fmt::Write as _;
use std::path::Path;

use crate::cli::Global;
use crate::config::load::LoadError;
use crate::config::{Config, ServiceSpec};
use crate::error::{FatalError, exit};
use crate::events;
use crate::policy::stale_pid::{self, PortObs};
use crate::process::pidfile;

/// What doctor found: the report and the next steps, numbered at the end.
#[derive(Default)]
struct Report {
    text: String,
    steps: Vec<String>,
    problems: usize,
}

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        let _ = writeln!(self.text, "{}", s.as_ref());
    }

    fn problem(&mut self, what: impl AsRef<str>, step: impl Into<String>) {
        self.problems += 1;
        self.line(format!("  ✗ {}", what.as_ref()));
        self.steps.push(step.into());
    }
}

pub fn run(g: &Global) -> Result<u8, FatalError> {
    let mut r = Report::default();
    r.line("config");
    // With `--state-dir` the config is not needed to look at the guardian; without it, a
    // config that does not load leaves no state dir to look at.
    let mut broken = false;
    let loaded = match super::load(g) {
        Err(FatalError::Config(LoadError::NotFound { .. })) => None,
        Ok(l) => {
            let files: Vec<String> = l.files.iter().map(|f| f.display().to_string()).collect();
            r.line(format!("  ✓ valid: {}", files.join(", ")));
            Some(l)
        }
        Err(e) => {
            r.problem(
                format!("invalid: {e:#}"),
                "fix the config, then check it with: guardian validate",
            );
            broken = true;
            None
        }
    };
    if broken && g.state_dir.is_none() {
        print!("{}", r.text);
        println!(
            "\nthe config does not load: fix it first, or pass --state-dir DIR to look at a guardian"
        );
        return Ok(exit::CONFIG);
    }
    let state_dir = g.state_dir.clone().unwrap_or_else(|| match &loaded {
        Some(l) => l.config.guardian.state_dir.clone(),
        None => crate::config::load::default_state_dir(&super::load_options(g).env),
    });
    r.line(format!("guardian (state dir {})", state_dir.display()));
    let guardian = pidfile::running_guardian(&state_dir);
    match &guardian {
        Some(rec) => r.line(format!(
            "  ✓ running: pid {} since {}",
            rec.pid, rec.start_time
        )),
        None => r.problem(
            "not running: nothing guards the services",
            "start it: guardian run",
        ),
    }
    let status = guardian.as_ref().and_then(|_| fetch_status(&state_dir));
    if let Some(l) = &loaded {
        for spec in l.config.instances() {
            service(&mut r, &l.config, &spec, status.as_ref());
        }
    }
    print!("{}", r.text);
    if r.problems == 0 {
        println!("\nno problems found");
        Ok(exit::OK)
    } else {
        println!(
            "\n{} problem{} found. Next steps:",
            r.problems,
            if r.problems == 1 { "" } else { "s" }
        );
        for (i, s) in r.steps.iter().enumerate() {
            println!("  {}. {s}", i + 1);
        }
        Ok(if broken { exit::CONFIG } else { exit::FAILURE })
    }
}

/// Whether the end of a service's log shows it failing to bind (EADDRINUSE).
fn binds_itself(log: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(log) else {
        return false;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut tail = Vec::new();
    let _ = f.read_to_end(&mut tail);
    let text = String::from_utf8_lossy(&tail);
    ["Address already in use", "EADDRINUSE", "os error 98"]
        .iter()
        .any(|s| text.contains(s))
}

fn fetch_status(state_dir: &Path) -> Option<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(super::client::call(state_dir, "GET", "/status", "doctor"))
        .ok()
        .map(|(_, v)| v)
}

fn service(
    r: &mut Report,
    config: &Config,
    spec: &ServiceSpec,
    status: Option<&serde_json::Value>,
) {
    let name = spec.name.as_str();
    r.line(format!("service {name}"));
    if !spec.sockets.is_empty() && binds_itself(&spec.log.file) {
        let port = spec.port.map_or(String::new(), |p| format!(" (port {p})"));
        r.problem(
            format!("it binds its own listener{port} while guardian holds the socket: its log says the address is in use"),
            format!("make {name} take its listener from LISTEN_FDS (fd 3…, sd_listen_fds) instead of binding, or remove `sockets` from services.{name}"),
        );
    }
    let live = status.and_then(|s| {
        s["services"]
            .as_array()?
            .iter()
            .find(|x| x["name"] == name)
            .cloned()
    });
    if let Some(s) = &live {
        let state = s["state"].as_str().unwrap_or("?");
        if state == "failed" {
            let why = s["last_error"]
                .as_str()
                .or(s["last_exit"].as_str())
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            r.problem(
                format!("state failed: {why}"),
                format!("read why with: guardian logs {name} ; then: guardian start {name}"),
            );
        } else {
            r.line(format!(
                "  ✓ state {state}, health {}, breaker {}",
                s["health"].as_str().unwrap_or("-"),
                s["circuit_breaker"].as_str().unwrap_or("-")
            ));
        }
    }
    // The PID file through the ladder, read-only.
    match pidfile::observe(&spec.pidfile, &spec.identity, spec.port) {
        Err(e) => r.problem(
            format!("pid file {}: {e}", spec.pidfile.display()),
            format!("look at it: ls -l {}", spec.pidfile.display()),
        ),
        Ok((obs, _)) => {
            let v = stale_pid::decide(&obs);
            let text = format!("pid file {}: {}", spec.pidfile.display(), v.rung);
            if v.remove_file {
                r.problem(
                    format!("{text} (stale)"),
                    format!(
                        "remove the stale pid file: rm {}   (guardian also does at start)",
                        spec.pidfile.display()
                    ),
                );
            } else if let Some(pid) = v.running {
                r.line(format!("  ✓ {text}: pid {pid} verified"));
            } else {
                r.line(format!("  · {text}"));
            }
            match (&v.port, spec.port) {
                (Some(PortObs::HeldBy { pid, cmdline, ours: false }), Some(port)) => r.problem(
                    format!("port {port} is held by a foreign process: pid {pid} ({cmdline})"),
                    format!("see who holds port {port}: ss -ltnp 'sport = :{port}' ; ps -p {pid} -o pid,ppid,etime,cmd ; stop it or change the port"),
                ),
                (Some(PortObs::HeldBy { pid, ours: true, .. }), Some(port)) if live.is_none() => r.problem(
                    format!("port {port} is held by pid {pid}, which looks like this service but no guardian tracks it"),
                    format!("let guardian adopt it (on_orphan = \"adopt\"): guardian run ; or stop it: kill -TERM {pid}"),
                ),
                (Some(PortObs::Free), Some(port)) if live.is_some_and(|s| s["state"] == "running") => {
                    r.line(format!("  · port {port} is free"));
                }
                (_, Some(port)) => r.line(format!("  · port {port}: {}", port_text(&v.port))),
                _ => {}
            }
        }
    }
    // The last events.
    let recent = events::tail(&config.guardian.events_file, Some(name), 5);
    if !recent.is_empty() {
        r.line("  last events:");
        for e in recent {
            let what = e
                .error_message
                .or(e.detail)
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            r.line(format!(
                "    {} {} {} {what}",
                e.timestamp_iso,
                e.action,
                if e.success { "ok" } else { "FAILED" }
            ));
        }
    }
    // The log and its last error lines.
    let log = &spec.log.file;
    r.line(format!("  log: {}", log.display()));
    for l in error_lines(log, 3) {
        r.line(format!("    | {l}"));
    }
}

fn port_text(p: &Option<PortObs>) -> String {
    match p {
        None => "not checked".into(),
        Some(PortObs::Free) => "free".into(),
        Some(PortObs::HeldBy { pid, cmdline, .. }) => format!("held by pid {pid} ({cmdline})"),
        Some(PortObs::HeldByUnknown) => {
            "held by a process this user cannot see (look: sudo ss -ltnp)".into()
        }
    }
}

/// The last `n` lines of the log's tail that look like errors.
fn error_lines(log: &Path, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(log) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut tail = String::new();
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_ok() {
        tail = String::from_utf8_lossy(&buf).into_owned();
    }
    let mut hits: Vec<String> = tail
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            [
                "error",
                "panic",
                "fatal",
                "traceback",
                "exception",
                "cannot",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .map(str::to_owned)
        .collect();
    let keep = hits.len().saturating_sub(n);
    hits.drain(..keep);
    hits
}
