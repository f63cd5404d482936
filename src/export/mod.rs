//! `guardian export`: the same guardian.toml for a fleet engine (SPEC §10). Each engine is a
//! pure function from the validated config to files; this module holds what they share and
//! the one place that writes them (all or nothing).

pub mod kubernetes;
pub mod systemd;

use std::path::{Path, PathBuf};

use crate::config::duration::Secs;
use crate::config::{ClearConnections, ServiceSpec};

/// One output file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub file: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "`services.{service}.command[0]`: `{program}` is not on PATH here, and a unit needs an absolute program\n  1. write its absolute path in `command`\n  2. or install it, then export again"
    )]
    Program { service: String, program: String },
    #[error(
        "no service `{name}` to export (services: {})\n  1. check the name: guardian validate",
        known.join(", ")
    )]
    NoSuchService { name: String, known: Vec<String> },
    #[error("cannot write {}: {source}\n  1. check that its folder exists and is writable; nothing was written", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The program as an absolute path: as written when absolute, found on PATH when a bare
/// name, made absolute from the service's cwd when relative.
pub fn resolve_program(
    s: &ServiceSpec,
    which: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExportError> {
    let program = &s.command[0];
    if program.starts_with('/') {
        return Ok(program.clone());
    }
    if program.contains('/') {
        return Ok(Path::new(&absolute_cwd(s))
            .join(program)
            .display()
            .to_string());
    }
    which(program).ok_or_else(|| ExportError::Program {
        service: s.name.to_string(),
        program: program.clone(),
    })
}

/// The service's working directory as an absolute path (relative ones start where guardian
/// runs, as they do under `guardian run`).
pub fn absolute_cwd(s: &ServiceSpec) -> String {
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let dir = match &s.cwd {
        Some(c) if c.is_absolute() => c.clone(),
        Some(c) => here.join(c),
        None => here,
    };
    // `./x` and `x/.` read better without the dot.
    let mut clean = PathBuf::new();
    for part in dir.components() {
        if part != std::path::Component::CurDir {
            clean.push(part);
        }
    }
    clean.display().to_string()
}

/// What the engines cannot express, in words: written as a comment, never silently dropped.
pub fn lost(s: &ServiceSpec) -> Vec<String> {
    let mut out = vec!["Kept by guardian only (no equivalent in this engine):".to_owned()];
    let h = &s.health;
    if h.checks.is_empty() {
        out.push("  health checks: none configured".to_owned());
    } else {
        let checks: Vec<String> = h
            .checks
            .iter()
            .map(|c| systemd::describe_check(c, s.nominal_port()))
            .collect();
        out.push(format!(
            "  health checks every {} (timeout {}, critical after {}): {}",
            Secs(h.interval),
            Secs(h.timeout),
            h.unhealthy_threshold,
            checks.join("; ")
        ));
    }
    if s.recovery.enabled {
        let r = &s.recovery;
        let clear = match &r.clear_connections {
            Some(ClearConnections::Http { method, path }) => format!("{method} {path}"),
            Some(ClearConnections::Signal(sig)) => sig.as_str().to_owned(),
            Some(ClearConnections::Command(c)) => c.join(" "),
            None => "not configured".to_owned(),
        };
        out.push(format!(
            "  graduated recovery (log, clear connections: {clear}, restart, emergency stop), at most one step per {}",
            Secs(r.min_recovery_interval)
        ));
        let b = &r.circuit_breaker;
        out.push(format!(
            "  circuit breaker: opens after {} failed recoveries for {}, closes after {} successes",
            b.failure_threshold,
            Secs(b.open_timeout),
            b.success_threshold
        ));
    }
    out.push(format!(
        "  backoff jitter ({}) and reset after a run of {}",
        s.backoff.jitter,
        Secs(s.backoff.reset_after)
    ));
    out.push("To keep those, run guardian in front of this service (guardian run).".to_owned());
    out
}

/// Writes every file into `dir`, or none: they go to a fresh folder beside it first, and are
/// renamed into place only once all are written. A rename that fails midway (a folder where
/// a file goes, say) undoes the ones before it: the files they replaced come back.
pub fn write_all(dir: &Path, units: &[Unit]) -> Result<(), ExportError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let staging = dir.join(format!(".guardian-export-{}", std::process::id()));
    std::fs::create_dir(&staging).map_err(err(&staging))?;
    let result = (|| {
        for u in units {
            let p = staging.join(&u.file);
            std::fs::write(&p, &u.text).map_err(err(&p))?;
        }
        let mut done: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
        let mut place = |u: &Unit| -> Result<(), ExportError> {
            let to = dir.join(&u.file);
            // What it replaces is kept (a hard link in the staging folder) until all are in.
            let kept = staging.join(format!("{}.replaced", u.file));
            let old = match std::fs::symlink_metadata(&to) {
                Ok(_) => {
                    std::fs::hard_link(&to, &kept).map_err(err(&to))?;
                    Some(kept)
                }
                Err(_) => None,
            };
            std::fs::rename(staging.join(&u.file), &to).map_err(err(&to))?;
            done.push((to, old));
            Ok(())
        };
        let placed = units.iter().try_for_each(&mut place);
        if placed.is_err() {
            for (to, old) in done.into_iter().rev() {
                let _ = match old {
                    Some(kept) => std::fs::rename(kept, &to),
                    None => std::fs::remove_file(&to),
                };
            }
        }
        placed
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}
