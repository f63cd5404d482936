//! Compose files → guardian (SPEC §16), by the Compose specification (05-services.md,
//! 12-interpolation.md): `command`/`entrypoint` as a string (split as a shell would) or a
//! list, `environment` as a map or a list, `env_file` as a string, a list or long entries,
//! `depends_on` short or long with conditions, `healthcheck`, `deploy.replicas`, `ulimits`,
//! `ports`, and `${X}`, `${X:-default}`, `${X-default}`, `${X:?err}`, `${X:+alt}`, `$X`, `$$`
//! from the environment, then `.env` beside the file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::{Draft, ImportError, LeftOut, Options, Service};
use crate::config::duration::Secs;
use crate::config::raw::{
    RawBackoff, RawCheck, RawDependency, RawDependencyLong, RawHealth, RawService, Text,
};

pub fn read(file: &Path, text: &str, opts: &Options) -> Result<Draft, ImportError> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        ImportError(format!(
            "{}: not YAML Compose can read: {e}",
            file.display()
        ))
    })?;
    let mut vars: HashMap<String, String> = HashMap::new();
    let dotenv = file.parent().unwrap_or(Path::new(".")).join(".env");
    if dotenv.exists() {
        let iter = dotenvy::from_path_iter(&dotenv)
            .map_err(|e| ImportError(format!("{}: {e}", dotenv.display())))?;
        for item in iter {
            let (k, v) = item.map_err(|e| ImportError(format!("{}: {e}", dotenv.display())))?;
            vars.insert(k, v);
        }
    }
    vars.extend(opts.environ.clone());
    let doc =
        interpolate(doc, &vars).map_err(|e| ImportError(format!("{}: {e}", file.display())))?;
    let Some(services) = doc.get("services").and_then(Value::as_mapping) else {
        return Err(ImportError(format!(
            "{}: not a Compose file: it has no `services:` mapping",
            file.display()
        )));
    };
    let mut draft = Draft::default();
    if let Some(top) = doc.as_mapping() {
        for k in top.keys().filter_map(Value::as_str) {
            if !matches!(k, "services" | "version" | "name") && !k.starts_with("x-") {
                draft.left_out.push(LeftOut {
                    file: file.to_owned(),
                    line: yaml_line(text, &[k]),
                    key: k.to_owned(),
                    why: match k {
                        "networks" => "guardian's services share the host's network".into(),
                        "volumes" => "guardian's services use the host's file system".into(),
                        "secrets" | "configs" => {
                            "give the files by path (env_file, or the command's arguments)".into()
                        }
                        _ => "no guardian equivalent".into(),
                    },
                });
            }
        }
    }
    for (name, def) in services {
        let Some(name) = name.as_str() else { continue };
        match service(file, text, name, def)? {
            Ok(svc) => draft.services.push(svc),
            Err(left) => draft.left_out.push(left),
        }
    }
    Ok(draft)
}

/// The 1-based line of the key at `path` in a block-style YAML text: keys are followed by
/// their indentation (a `- ` item's key sits after its dash), so `volumes` at the top is
/// not a service's `volumes`.
pub fn yaml_line(text: &str, path: &[&str]) -> Option<usize> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let mut col = line.len() - body.len();
        let mut rest = body;
        while let Some(r) = rest.strip_prefix("- ") {
            let r2 = r.trim_start();
            col += rest.len() - r2.len();
            rest = r2;
        }
        let Some(colon) = rest.find(':') else {
            continue;
        };
        let key = rest[..colon].trim().trim_matches(['"', '\'']);
        let after = &rest[colon + 1..];
        if key.is_empty() || !(after.is_empty() || after.starts_with([' ', '\t'])) {
            continue;
        }
        while stack.last().is_some_and(|(c, _)| *c >= col) {
            stack.pop();
        }
        stack.push((col, key.to_owned()));
        if stack.len() == path.len() && stack.iter().zip(path).all(|((_, k), p)| k == p) {
            return Some(i + 1);
        }
    }
    None
}

/// Compose's interpolation over every string value.
fn interpolate(v: Value, vars: &HashMap<String, String>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(substitute(&s, vars)?),
        Value::Sequence(seq) => Value::Sequence(
            seq.into_iter()
                .map(|x| interpolate(x, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(m) => {
            let mut out = serde_yaml_ng::Mapping::new();
            for (k, x) in m {
                out.insert(k, interpolate(x, vars)?);
            }
            Value::Mapping(out)
        }
        Value::Tagged(t) => Value::Tagged(Box::new(serde_yaml_ng::value::TaggedValue {
            tag: t.tag,
            value: interpolate(t.value, vars)?,
        })),
        other => other,
    })
}

/// One string: `$$` is a `$`; `${X}` forms as 12-interpolation.md lists them.
pub fn substitute(s: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = closing(r).ok_or_else(|| format!("`${{` without `}}` in `{s}`"))?;
            let inner = &r[..end];
            out.push_str(&braced(inner, vars)?);
            rest = &r[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(vars.get(&after[..len]).map_or("", String::as_str));
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The `}` closing a `${`, past nested ones in a default.
fn closing(r: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in r.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn braced(inner: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let name_end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let (name, op) = inner.split_at(name_end);
    let val = vars.get(name);
    let set = val.is_some();
    let non_empty = val.is_some_and(|v| !v.is_empty());
    let nested = |t: &str| substitute(t, vars);
    Ok(match op {
        "" => val.cloned().unwrap_or_default(),
        o if o.starts_with(":-") => {
            if non_empty {
                val.cloned().unwrap_or_default()
            } else {
                nested(&o[2..])?
            }
        }
        o if o.starts_with('-') => {
            if set {
                val.cloned().unwrap_or_default()
            } else {
                nested(&o[1..])?
            }
        }
        o if o.starts_with(":+") => {
            if non_empty {
                nested(&o[2..])?
            } else {
                String::new()
            }
        }
        o if o.starts_with('+') => {
            if set {
                nested(&o[1..])?
            } else {
                String::new()
            }
        }
        o if o.starts_with(":?") => {
            if non_empty {
                val.cloned().unwrap_or_default()
            } else {
                return Err(format!("{name}: {}", nested(&o[2..])?));
            }
        }
        o if o.starts_with('?') => {
            if set {
                val.cloned().unwrap_or_default()
            } else {
                return Err(format!("{name}: {}", nested(&o[1..])?));
            }
        }
        _ => {
            return Err(format!(
                "`${{{inner}}}` is not an interpolation Compose knows"
            ));
        }
    })
}

/// A command as a string (split as a shell would) or a list.
fn argv(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => shlex::split(s),
        Value::Sequence(seq) => Some(seq.iter().filter_map(scalar).collect()),
        Value::Null => Some(Vec::new()),
        _ => None,
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Compose durations: `1m30s`, `10s`, `1h5m`, `500ms`, `1.5s`.
pub fn duration(v: &Value) -> Option<Duration> {
    let s = scalar(v)?;
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_end].parse().ok()?;
        let unit_end = rest[num_end..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .map_or(rest.len(), |i| num_end + i);
        let unit = match &rest[num_end..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += Duration::from_secs_f64(n * unit);
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// One service, or why it cannot come along at all (no command to run).
fn service(
    file: &Path,
    text: &str,
    name: &str,
    def: &Value,
) -> Result<Result<Service, LeftOut>, ImportError> {
    let line = |k: &[&str]| -> Option<usize> {
        let mut path = vec!["services", name];
        path.extend(k.iter().filter(|k| !k.is_empty()));
        yaml_line(text, &path)
    };
    let mut svc = Service {
        name: name.to_owned(),
        origin: format!(
            "{}{} services.{name}",
            file.display(),
            line(&[]).map(|l| format!(":{l}")).unwrap_or_default()
        ),
        ..Default::default()
    };
    let mut lefts: Vec<(String, String)> = Vec::new();
    let bad = |k: &str, why: &str| {
        ImportError(format!(
            "{}{}: services.{name}.{k}: {why}",
            file.display(),
            line(&[k]).map(|l| format!(":{l}")).unwrap_or_default()
        ))
    };
    let Some(map) = def.as_mapping() else {
        return Err(bad("", "a service must be a mapping"));
    };
    let raw: &mut RawService = &mut svc.raw;
    let mut entrypoint = None;
    let mut command = None;
    let mut env: BTreeMap<String, Text> = BTreeMap::new();
    for (k, v) in map {
        let Some(k) = k.as_str() else { continue };
        match k {
            "command" => command = Some(argv(v).ok_or_else(|| bad(k, "a string or a list"))?),
            "entrypoint" => entrypoint = Some(argv(v).ok_or_else(|| bad(k, "a string or a list"))?),
            "environment" => match v {
                Value::Mapping(m) => {
                    for (ek, ev) in m {
                        let Some(ek) = scalar(ek) else { continue };
                        match scalar(ev) {
                            Some(ev) => {
                                env.insert(ek, Text(ev));
                            }
                            None => svc.notes.push(format!("environment {ek} (no value): passed through from guardian's own environment, which every service inherits")),
                        }
                    }
                }
                Value::Sequence(seq) => {
                    for e in seq.iter().filter_map(scalar) {
                        match e.split_once('=') {
                            Some((ek, ev)) => {
                                env.insert(ek.to_owned(), Text(ev.to_owned()));
                            }
                            None => svc.notes.push(format!("environment {e} (no value): passed through from guardian's own environment, which every service inherits")),
                        }
                    }
                }
                _ => return Err(bad(k, "a mapping or a list of KEY=VALUE")),
            },
            "env_file" => {
                let entries: Vec<&Value> = match v {
                    Value::Sequence(seq) => seq.iter().collect(),
                    v => vec![v],
                };
                let mut files = Vec::new();
                for e in entries {
                    match e {
                        Value::String(p) => files.push(p.clone()),
                        Value::Mapping(m) => {
                            let path = m
                                .get("path")
                                .and_then(scalar)
                                .ok_or_else(|| bad(k, "a long entry needs `path`"))?;
                            if m.get("required") == Some(&Value::Bool(false)) {
                                lefts.push((
                                    format!("env_file {path} required: false"),
                                    "guardian needs every env_file to exist".into(),
                                ));
                            }
                            files.push(path);
                        }
                        _ => return Err(bad(k, "a path, a list, or {path, required}")),
                    }
                }
                raw.env_file = Some(files);
            }
            "working_dir" => raw.cwd = scalar(v),
            "user" => {
                let u = scalar(v).unwrap_or_default();
                match u.split_once(':') {
                    Some((user, group)) => {
                        raw.user = Some(user.to_owned());
                        raw.group = Some(group.to_owned());
                    }
                    None => raw.user = Some(u),
                }
            }
            "depends_on" => {
                match v {
                    Value::Sequence(seq) => {
                        for d in seq.iter().filter_map(scalar) {
                            svc.depends_on
                                .push((d, RawDependency::Condition("started".into())));
                        }
                    }
                    Value::Mapping(m) => {
                        for (d, spec) in m {
                            let Some(d) = scalar(d) else { continue };
                            let condition = match spec.get("condition").and_then(Value::as_str) {
                                None | Some("service_started") => "started",
                                Some("service_healthy") => "healthy",
                                Some("service_completed_successfully") => "completed",
                                Some(other) => {
                                    return Err(bad(
                                        k,
                                        &format!("`{other}` is not a Compose condition"),
                                    ));
                                }
                            };
                            if spec.get("required") == Some(&Value::Bool(false)) {
                                lefts.push((format!("depends_on.{d}.required"), "guardian waits for every dependency; drop it if it is optional".into()));
                            }
                            let dep = match spec.get("restart").and_then(Value::as_bool) {
                                Some(true) => RawDependency::Long(RawDependencyLong {
                                    condition: Some(condition.into()),
                                    restart: Some(true),
                                }),
                                _ => RawDependency::Condition(condition.into()),
                            };
                            svc.depends_on.push((d, dep));
                        }
                    }
                    _ => return Err(bad(k, "a list or a mapping")),
                }
            }
            "healthcheck" => {
                if let Some(m) = v.as_mapping() {
                    for hk in m.keys().filter_map(Value::as_str) {
                        if !matches!(
                            hk,
                            "test"
                                | "interval"
                                | "timeout"
                                | "retries"
                                | "start_period"
                                | "disable"
                        ) {
                            lefts.push((
                                format!("healthcheck.{hk}"),
                                "guardian checks at one interval from the start".into(),
                            ));
                        }
                    }
                }
                if let Some(h) = healthcheck(v).map_err(|e| bad(k, &e))? {
                    raw.health = Some(h.0);
                    if let Some(sp) = h.1 {
                        raw.startup_timeout = Some(sp);
                        svc.notes.push("healthcheck.start_period: startup_timeout (guardian's checks start once it is ready)".into());
                    }
                }
            }
            "restart" => {
                let r = scalar(v).unwrap_or_default();
                let (policy, max) = r.split_once(':').unwrap_or((r.as_str(), ""));
                raw.restart = Some(
                    match policy {
                        "no" => "no",
                        "always" => "always",
                        "on-failure" => "on-failure",
                        "unless-stopped" => {
                            svc.notes.push("restart unless-stopped: always (a service stopped with `guardian stop` stays stopped)".into());
                            "always"
                        }
                        other => return Err(bad(k, &format!("`{other}` is not no, always, on-failure or unless-stopped"))),
                    }
                    .into(),
                );
                if let Ok(n) = max.parse::<u32>() {
                    raw.backoff
                        .get_or_insert_with(RawBackoff::default)
                        .max_retries = Some(n);
                }
            }
            "deploy" => {
                if let Some(m) = v.as_mapping() {
                    for (dk, dv) in m {
                        let Some(dk) = dk.as_str() else { continue };
                        match dk {
                            "replicas" => match dv.as_u64() {
                                Some(n) if n >= 1 => raw.replicas = Some(n as u32),
                                Some(_) => lefts.push((
                                    "deploy.replicas".into(),
                                    "0 replicas: set autostart = false instead".into(),
                                )),
                                None => return Err(bad("deploy.replicas", "a whole number")),
                            },
                            other => lefts.push((
                                format!("deploy.{other}"),
                                "an orchestrator's setting; guardian runs on one host".into(),
                            )),
                        }
                    }
                }
            }
            "stop_signal" => {
                let up = scalar(v).unwrap_or_default().to_ascii_uppercase();
                raw.stop_signal = Some(if up.starts_with("SIG") {
                    up
                } else {
                    format!("SIG{up}")
                });
            }
            "stop_grace_period" => {
                raw.shutdown_timeout =
                    Some(Secs(duration(v).ok_or_else(|| {
                        bad(k, "not a duration such as 10s or 1m30s")
                    })?));
            }
            "ulimits" => {
                let Some(m) = v.as_mapping() else {
                    return Err(bad(k, "a mapping"));
                };
                let mut limits = BTreeMap::new();
                for (lk, lv) in m {
                    let Some(lk) = scalar(lk) else { continue };
                    let n = match lv {
                        Value::Mapping(sh) => {
                            let soft = sh.get("soft").and_then(scalar);
                            let hard = sh.get("hard").and_then(scalar);
                            if hard.is_some() && hard != soft {
                                lefts.push((format!("ulimits.{lk}.hard"), "guardian sets one value for both soft and hard; the soft one was taken".into()));
                            }
                            soft.or(hard)
                        }
                        v => scalar(v),
                    };
                    match (lk.as_str(), n) {
                        ("nofile" | "nproc" | "core" | "memlock" | "stack", Some(n)) => {
                            limits.insert(lk, Text(n));
                        }
                        (_, _) => lefts.push((
                            format!("ulimits.{lk}"),
                            "guardian sets nofile, nproc, core, memlock, stack and as".into(),
                        )),
                    }
                }
                if !limits.is_empty() {
                    raw.limits = Some(limits);
                }
            }
            "ports" => {
                let Some(seq) = v.as_sequence() else {
                    return Err(bad(k, "a list"));
                };
                let mut targets = Vec::new();
                for p in seq {
                    let (target, published) = match p {
                        Value::Mapping(m) => (
                            m.get("target").and_then(scalar),
                            m.get("published").and_then(scalar),
                        ),
                        v => {
                            let s = scalar(v).unwrap_or_default();
                            let s = s.split('/').next().unwrap_or("").to_owned();
                            let parts: Vec<&str> = s.rsplitn(2, ':').collect();
                            let target = parts[0].to_owned();
                            let published = parts
                                .get(1)
                                .map(|p| p.rsplit(':').next().unwrap_or("").to_owned());
                            (Some(target), published)
                        }
                    };
                    let t = target
                        .as_deref()
                        .and_then(|t| t.parse::<u16>().ok())
                        .filter(|t| *t > 0);
                    match t {
                        Some(t) => {
                            if let Some(p) =
                                published.filter(|p| !p.is_empty() && *p != t.to_string())
                            {
                                svc.notes.push(format!("ports {p}:{t}: the process listens on {t} itself (no container maps {p} to it)"));
                            }
                            targets.push(t);
                        }
                        None => lefts.push((
                            format!("ports {}", target.unwrap_or_default()),
                            "not one port guardian can wait for (a range?)".into(),
                        )),
                    }
                }
                if let Some(first) = targets.first() {
                    raw.port = Some(*first);
                }
                for t in targets.iter().skip(1) {
                    lefts.push((
                        format!("ports {t}"),
                        "guardian waits for one port a service; the first was taken".into(),
                    ));
                }
            }
            "image" => raw.image = scalar(v),
            "container_name" | "hostname" => {}
            other => lefts.push((
                other.to_owned(),
                match other {
                    "build" => "guardian runs commands; build the program first".into(),
                    "volumes" => "guardian's services use the host's file system".into(),
                    "networks" | "network_mode" | "extra_hosts" | "dns" => {
                        "guardian's services share the host's network".into()
                    }
                    "labels" => "no guardian equivalent".into(),
                    _ => "no guardian equivalent".into(),
                },
            )),
        }
    }
    let mut full = entrypoint.unwrap_or_default();
    full.extend(command.unwrap_or_default());
    if full.is_empty() {
        let key = if raw.image.is_some() { "image" } else { "" };
        return Ok(Err(LeftOut {
            file: file.to_owned(),
            line: line(&[key]).or_else(|| line(&[])),
            key: format!("services.{name}{}{key}", if key.is_empty() { "" } else { "." }),
            why: "guardian runs commands, not images — give it a command (the whole service is left out)".into(),
        }));
    }
    raw.command = Some(full);
    // Compose reads env_file beside the Compose file; guardian from the service's cwd when
    // it has one: such paths are made absolute.
    if raw.cwd.is_some()
        && let Some(files) = &mut raw.env_file
    {
        let base = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_owned());
        for f in files
            .iter_mut()
            .filter(|f| Path::new(f.as_str()).is_relative())
        {
            *f = base.join(f.as_str()).display().to_string();
        }
    }
    if !env.is_empty() {
        raw.env = Some(env);
    }
    if raw.image.is_some() {
        svc.notes.push("image: kept for `guardian export kubernetes`; `guardian run` runs the command on this host".into());
    }
    for (k, why) in lefts {
        let first = k.split([' ', '.']).next().unwrap_or(&k).to_owned();
        svc.left_out.push(LeftOut {
            file: file.to_owned(),
            line: line(&[&first]),
            key: format!("services.{name}.{k}"),
            why,
        });
    }
    Ok(Ok(svc))
}

/// `healthcheck` → an exec check (and start_period, for startup_timeout). None when
/// disabled.
fn healthcheck(v: &Value) -> Result<Option<(RawHealth, Option<Secs>)>, String> {
    let Some(m) = v.as_mapping() else {
        return Err("a mapping".into());
    };
    if m.get("disable").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let command = match m.get("test") {
        Some(Value::String(s)) => vec!["sh".into(), "-c".into(), s.clone()],
        Some(Value::Sequence(seq)) => {
            let parts: Vec<String> = seq.iter().filter_map(scalar).collect();
            match parts.first().map(String::as_str) {
                Some("NONE") => return Ok(None),
                Some("CMD") if parts.len() > 1 => parts[1..].to_vec(),
                Some("CMD-SHELL") if parts.len() > 1 => {
                    vec!["sh".into(), "-c".into(), parts[1..].join(" ")]
                }
                _ => return Err("test must start with CMD, CMD-SHELL or NONE".into()),
            }
        }
        None => return Err("a healthcheck needs `test`".into()),
        _ => return Err("test is a string or a list".into()),
    };
    let d = |k: &str| -> Result<Option<Secs>, String> {
        match m.get(k) {
            Some(v) => duration(v)
                .map(|d| Some(Secs(d)))
                .ok_or_else(|| format!("{k} is not a duration such as 10s or 1m30s")),
            None => Ok(None),
        }
    };
    let h = RawHealth {
        interval: d("interval")?,
        timeout: d("timeout")?,
        unhealthy_threshold: m.get("retries").and_then(Value::as_u64).map(|n| n as u32),
        checks: Some(vec![RawCheck::Exec { command }]),
        ..Default::default()
    };
    Ok(Some((h, d("start_period")?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_as_the_spec_lists_it() {
        let vars: HashMap<String, String> = [("SET", "v"), ("EMPTY", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (from, to) in [
            ("${SET}", "v"),
            ("$SET/x", "v/x"),
            ("${UNSET:-d}", "d"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${UNSET-${SET}}", "v"),
            ("${SET:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("$$HOME", "$HOME"),
            ("cost $5", "cost "),
            ("a $ b", "a $ b"),
        ] {
            assert_eq!(substitute(from, &vars).unwrap(), to, "{from}");
        }
        assert!(
            substitute("${UNSET:?is needed}", &vars)
                .unwrap_err()
                .contains("is needed")
        );
        assert!(substitute("${SET", &vars).is_err());
    }

    #[test]
    fn keys_are_found_under_their_parents() {
        let y = "services:\n  db:\n    volumes:\n      - x:/y\n    image: pg\n  web:\n    image: w\nvolumes:\n  x: {}\n";
        assert_eq!(yaml_line(y, &["volumes"]), Some(8));
        assert_eq!(yaml_line(y, &["services", "db", "volumes"]), Some(3));
        assert_eq!(yaml_line(y, &["services", "web", "image"]), Some(7));
        assert_eq!(yaml_line(y, &["services", "web", "volumes"]), None);
        let list = "apps:\n  - name: a\n    watch: true\n";
        assert_eq!(yaml_line(list, &["apps", "watch"]), Some(3));
    }

    #[test]
    fn durations() {
        assert_eq!(
            duration(&Value::from("1m30s")),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            duration(&Value::from("500ms")),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            duration(&Value::from("1h5m")),
            Some(Duration::from_secs(3900))
        );
        assert_eq!(duration(&Value::from("10")), None);
        assert_eq!(duration(&Value::from("5x")), None);
    }
}
