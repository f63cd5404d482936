//! supervisord.conf → guardian (SPEC §16), read as supervisord reads it
//! (supervisor/options.py): `[include] files =` globs relative to the including file,
//! `%(here)s`, `%(program_name)s`, `%(process_num)d`, `%(numprocs)d`, `%(group_name)s`,
//! `%(host_node_name)s` and `%(ENV_X)s` expansions, `[supervisord] environment=` under every
//! program's own.

use std::collections::BTreeMap;
use std::path::Path;

use super::ini::{self, Entry, Section};
use super::{Draft, ImportError, LeftOut, Options, Service};
use crate::config::duration::Secs;
use crate::config::raw::{RawBackoff, RawDependency, RawLog, Text};

pub fn read(file: &Path, text: &str, opts: &Options) -> Result<Draft, ImportError> {
    let mut sections = Vec::new();
    ini::parse(file, text, &mut sections).map_err(ImportError)?;
    let base = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let here = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let mut draft = Draft::default();
    // [include]: each pattern relative to the main file; no match is a warning in
    // supervisord, a left-out line here.
    if let Some(inc) = sections.iter().find(|s| s.name == "include").cloned() {
        let Some(files) = inc.get("files") else {
            return Err(ImportError(format!(
                "{}:{}: [include] has no `files =` (supervisord refuses this too)",
                file.display(),
                inc.line
            )));
        };
        let look = |n: &str| common(n, &here, &host, opts);
        let patterns = ini::expand(&files.value, &look).map_err(|e| at(files, &e))?;
        for pattern in patterns.split_whitespace() {
            let full = base.join(pattern);
            let mut found: Vec<_> = glob::glob(&full.to_string_lossy())
                .map_err(|e| at(files, &format!("`{pattern}` is not a glob: {e}")))?
                .flatten()
                .collect();
            found.sort();
            if found.is_empty() {
                draft.left_out.push(LeftOut {
                    file: files.file.clone(),
                    line: Some(files.line),
                    key: "include.files".into(),
                    why: format!("no file matches `{}`", full.display()),
                });
            }
            for f in found {
                let t = std::fs::read_to_string(&f).map_err(|e| {
                    ImportError(format!(
                        "{}:{}: cannot read the included {}: {e}",
                        files.file.display(),
                        files.line,
                        f.display()
                    ))
                })?;
                ini::parse(&f, &t, &mut sections).map_err(ImportError)?;
            }
        }
    }
    let global_env = match sections.iter().find(|s| s.name == "supervisord") {
        Some(s) => {
            for e in &s.entries {
                if e.key != "environment" {
                    draft.left_out.push(left(
                        e,
                        "supervisord",
                        "supervisord's own setting; guardian's own are under [guardian]",
                    ));
                }
            }
            match s.get("environment") {
                Some(e) => {
                    let look = |n: &str| common(n, &here, &host, opts);
                    let v = ini::expand(&e.value, &look).map_err(|m| at(e, &m))?;
                    key_value_pairs(&v).map_err(|m| at(e, &m))?
                }
                None => Vec::new(),
            }
        }
        None => Vec::new(),
    };
    let mut priorities: Vec<(i64, String)> = Vec::new();
    for s in &sections {
        let (kind, name) = s.name.split_once(':').unwrap_or((s.name.as_str(), ""));
        match kind {
            "program" if !name.is_empty() => {
                let (svc, priority) = program(s, name, &here, &host, &global_env, opts)?;
                priorities.push((priority, svc.name.clone()));
                draft.services.push(svc);
            }
            "supervisord" | "include" => {}
            "group" => draft.left_out.push(section_left(s, "a group is supervisord's way to start and stop programs together; guardian starts each service itself (use `guardian restart NAME` per service, or depends_on)")),
            "fcgi-program" => draft.left_out.push(section_left(s, "guardian does not manage FastCGI sockets; a `sockets` entry holds a listener for a server that accepts LISTEN_FDS")),
            "eventlistener" => draft.left_out.push(section_left(s, "supervisord's event protocol has no guardian equivalent; guardian's events are on GET /events and in [alerts.NAME]")),
            "unix_http_server" | "inet_http_server" | "supervisorctl" => draft.left_out.push(section_left(s, "supervisord's control channel; guardian's is its API: the Unix socket {state_dir}/guardian.sock and [guardian.api]")),
            "rpcinterface" | "ctlplugin" => draft.left_out.push(section_left(s, "a supervisord plugin")),
            _ => draft.left_out.push(section_left(s, "not a section supervisord reads")),
        }
    }
    order_by_priority(&mut draft, &priorities);
    Ok(draft)
}

/// supervisord starts lower priorities first (default 999): each program depends on those
/// of the next lower priority, `started`.
fn order_by_priority(draft: &mut Draft, priorities: &[(i64, String)]) {
    let mut levels: Vec<i64> = priorities.iter().map(|(p, _)| *p).collect();
    levels.sort();
    levels.dedup();
    if levels.len() < 2 {
        return;
    }
    for s in &mut draft.services {
        let Some((p, _)) = priorities.iter().find(|(_, n)| *n == s.name) else {
            continue;
        };
        let below = levels.iter().rev().find(|l| *l < p);
        if let Some(below) = below {
            for (_, dep) in priorities.iter().filter(|(q, _)| q == below) {
                s.depends_on
                    .push((dep.clone(), RawDependency::Condition("started".into())));
            }
            s.notes.push(format!(
                "priority {p}: starts after the priority {below} programs (depends_on, started)"
            ));
        }
    }
}

fn at(e: &Entry, msg: &str) -> ImportError {
    ImportError(format!("{}:{}: {}: {msg}", e.file.display(), e.line, e.key))
}

fn left(e: &Entry, section: &str, why: &str) -> LeftOut {
    LeftOut {
        file: e.file.clone(),
        line: Some(e.line),
        key: format!("{section}.{}", e.key),
        why: why.to_owned(),
    }
}

fn section_left(s: &Section, why: &str) -> LeftOut {
    LeftOut {
        file: s.file.clone(),
        line: Some(s.line),
        key: format!("[{}]", s.name),
        why: why.to_owned(),
    }
}

/// The names every expansion knows.
fn common(name: &str, here: &Path, host: &str, opts: &Options) -> Option<String> {
    match name {
        "here" => Some(here.display().to_string()),
        "host_node_name" => Some(host.to_owned()),
        _ => name
            .strip_prefix("ENV_")
            .and_then(|v| opts.environ.get(v).cloned()),
    }
}

fn program(
    s: &Section,
    name: &str,
    here: &Path,
    host: &str,
    global_env: &[(String, String)],
    opts: &Options,
) -> Result<(Service, i64), ImportError> {
    let numprocs: u32 = match s.get("numprocs") {
        Some(e) => e
            .value
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| at(e, "must be a whole number of at least 1"))?,
        None => 1,
    };
    let mut svc = Service {
        name: name.to_owned(),
        origin: format!("{}:{} [{}]", s.file.display(), s.line, s.name),
        ..Default::default()
    };
    // The program's own environment first: its ENV_ names reach its other keys.
    let mut own_env: Vec<(String, String)> = Vec::new();
    let process_num_used = std::cell::Cell::new(false);
    let look = |n: &str, env: &[(String, String)]| -> Option<String> {
        match n {
            "program_name" | "group_name" => Some(name.to_owned()),
            "numprocs" => Some(numprocs.to_string()),
            "process_num" => {
                process_num_used.set(true);
                Some("{replica}".to_owned())
            }
            _ => n
                .strip_prefix("ENV_")
                .and_then(|v| env.iter().find(|(k, _)| k == v).map(|(_, x)| x.clone()))
                .or_else(|| common(n, here, host, opts)),
        }
    };
    if let Some(e) = s.get("environment") {
        let v = ini::expand(&e.value, &|n| look(n, global_env)).map_err(|m| at(e, &m))?;
        own_env = key_value_pairs(&v).map_err(|m| at(e, &m))?;
    }
    let mut env: BTreeMap<String, Text> = global_env
        .iter()
        .map(|(k, v)| (k.clone(), Text(v.clone())))
        .collect();
    let mut all_env = global_env.to_vec();
    for (k, v) in &own_env {
        env.insert(k.clone(), Text(v.clone()));
        all_env.push((k.clone(), v.clone()));
    }
    let get = |key: &str| -> Result<Option<(String, &Entry)>, ImportError> {
        match s.get(key) {
            Some(e) => Ok(Some((
                ini::expand(&e.value, &|n| look(n, &all_env)).map_err(|m| at(e, &m))?,
                e,
            ))),
            None => Ok(None),
        }
    };
    let raw = &mut svc.raw;
    let secs = |v: &str, e: &Entry| -> Result<Secs, ImportError> {
        v.parse::<u64>()
            .map(|n| Secs(std::time::Duration::from_secs(n)))
            .map_err(|_| at(e, "must be a whole number of seconds"))
    };
    let mut priority = 999;
    let mut logged = false;
    for e in &s.entries {
        let Some((v, e)) = get(&e.key)? else { continue };
        let section = format!("program:{name}");
        match e.key.as_str() {
            "command" => {
                let argv = shlex::split(&v)
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| at(e, "not a command supervisord can split (an unclosed quote?)"))?;
                raw.command = Some(argv);
            }
            "environment" => {}
            "directory" => raw.cwd = Some(v),
            "user" => raw.user = Some(v),
            "umask" => raw.umask = Some(Text(v)),
            "numprocs" => {
                if numprocs > 1 {
                    raw.replicas = Some(numprocs);
                }
            }
            "numprocs_start" => svc.left_out.push(left(e, &section, "guardian numbers replicas 1…N ({replica}); supervisord's process_num started here")),
            "process_name" => svc.notes.push(format!(
                "process_name `{v}`: guardian names instances {name}.1 … {name}.N"
            )),
            "priority" => {
                priority = v.parse().map_err(|_| at(e, "must be a whole number"))?;
            }
            "autostart" => raw.autostart = Some(boolean(&v, e)?),
            "autorestart" => {
                raw.restart = Some(
                    match v.to_ascii_lowercase().as_str() {
                        "unexpected" => "on-failure",
                        x if boolean(x, e)? => "always",
                        _ => "no",
                    }
                    .into(),
                )
            }
            "exitcodes" => {
                if v.replace(' ', "") != "0" {
                    svc.left_out.push(left(e, &section, "guardian counts exit 0 as success and any other code as a failure"));
                }
            }
            "startsecs" => {
                let d = secs(&v, e)?;
                if d.0.is_zero() {
                    svc.notes.push("startsecs = 0: every start counts as a success in supervisord; guardian's default reset_after (60s) applies".into());
                } else {
                    raw.backoff.get_or_insert_with(RawBackoff::default).reset_after = Some(d);
                }
            }
            "startretries" => {
                raw.backoff.get_or_insert_with(RawBackoff::default).max_retries =
                    Some(v.parse().map_err(|_| at(e, "must be a whole number"))?);
            }
            "stopsignal" => {
                let up = v.to_ascii_uppercase();
                raw.stop_signal = Some(if up.starts_with("SIG") { up } else { format!("SIG{up}") });
            }
            "stopwaitsecs" => raw.shutdown_timeout = Some(secs(&v, e)?),
            "stopasgroup" | "killasgroup" => {
                if !boolean(&v, e)? {
                    svc.notes.push(format!("{}: guardian always signals the whole process group", e.key));
                }
            }
            "redirect_stderr" => logged = true,
            "stdout_logfile_maxbytes" => {
                if let Some(mb) = megabytes(&v) {
                    raw.log.get_or_insert_with(RawLog::default).max_size_mb = Some(mb.max(1));
                    logged = true;
                } else {
                    svc.left_out.push(left(e, &section, "not a size guardian can read (e.g. 50MB)"));
                }
            }
            "stdout_logfile_backups" => {
                raw.log.get_or_insert_with(RawLog::default).backup_count =
                    Some(v.parse().map_err(|_| at(e, "must be a whole number"))?);
            }
            "stdout_logfile" | "stderr_logfile" => {
                if !v.eq_ignore_ascii_case("auto") {
                    svc.left_out.push(left(e, &section, "guardian writes stdout and stderr to {state_dir}/logs/{name}.log (rotated by log.max_size_mb)"));
                }
            }
            "stderr_logfile_maxbytes" | "stderr_logfile_backups" => svc.left_out.push(left(e, &section, "guardian logs stderr with stdout in one file: its size and backups are log.max_size_mb and log.backup_count")),
            k if k.ends_with("_capture_maxbytes") || k.ends_with("_events_enabled") => svc.left_out.push(left(e, &section, "supervisord's event protocol has no guardian equivalent; guardian's events are on GET /events and in [alerts.NAME]")),
            k if k.ends_with("_syslog") => svc.left_out.push(left(e, &section, "guardian writes logs to files; ship them to syslog with a log shipper")),
            "serverurl" => svc.left_out.push(left(e, &section, "the URL childutils use to reach supervisord; guardian's API is {state_dir}/guardian.sock")),
            _ => svc.left_out.push(left(e, &section, "no guardian equivalent")),
        }
    }
    let _ = logged;
    if raw.command.is_none() {
        return Err(ImportError(format!(
            "{}:{}: [program:{name}] has no command (supervisord refuses this too)",
            s.file.display(),
            s.line
        )));
    }
    if process_num_used.get() {
        svc.notes.push(
            "%(process_num)d became {replica}: guardian counts replicas 1…N, supervisord counted 0…N-1"
                .into(),
        );
    }
    if !env.is_empty() {
        svc.raw.env = Some(env);
    }
    Ok((svc, priority))
}

fn boolean(v: &str, e: &Entry) -> Result<bool, ImportError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(at(e, &format!("`{v}` is not true or false"))),
    }
}

/// supervisord's byte sizes (`50MB`, `1GB`, `1024KB`, bytes) in whole MiB.
fn megabytes(v: &str) -> Option<u64> {
    let up = v.trim().to_ascii_uppercase();
    let (num, mult) = if let Some(n) = up.strip_suffix("GB") {
        (n, 1024.0)
    } else if let Some(n) = up.strip_suffix("MB") {
        (n, 1.0)
    } else if let Some(n) = up.strip_suffix("KB") {
        (n, 1.0 / 1024.0)
    } else {
        (up.as_str(), 1.0 / (1024.0 * 1024.0))
    };
    let n: f64 = num.trim().parse().ok()?;
    Some((n * mult).ceil() as u64)
}

/// `KEY=val,KEY2="val, with comma"` as supervisord's `dict_of_key_value_pairs` reads it
/// (a shlex lexer: quotes group, commas separate).
pub fn key_value_pairs(v: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut parts = Vec::new();
    for c in v.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, ',') => parts.push(std::mem::take(&mut cur)),
            (None, c) if c.is_whitespace() => {}
            (None, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err(format!("an unclosed quote in `{v}`"));
    }
    parts.push(cur);
    for p in parts.into_iter().filter(|p| !p.is_empty()) {
        let (k, val) = p
            .split_once('=')
            .ok_or_else(|| format!("`{p}` is not KEY=value"))?;
        out.push((k.to_owned(), val.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_pairs_as_supervisord_splits_them() {
        assert_eq!(
            key_value_pairs("A=1, B=\"x, y\",C='z'").unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x, y".into()),
                ("C".into(), "z".into())
            ]
        );
        assert!(key_value_pairs("A").is_err());
        assert!(key_value_pairs("A=\"x").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(megabytes("50MB"), Some(50));
        assert_eq!(megabytes("1GB"), Some(1024));
        assert_eq!(megabytes("512KB"), Some(1));
        assert_eq!(megabytes("x"), None);
    }
}
