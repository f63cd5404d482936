//! PM2 ecosystem files → guardian (SPEC §16), read as PM2 reads them (lib/Common.js,
//! `parseConfig`): `.json` is JSON5, `.yaml`/`.yml` YAML, `.js`/`.cjs`/`.mjs` evaluated by
//! `node` (the module's export, printed as JSON). The apps are `apps: [...]`, or a bare list,
//! or one app object.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::{Draft, ImportError, LeftOut, Options, Service, locate};
use crate::config::duration::Secs;
use crate::config::raw::{RawBackoff, RawHealth, RawResources, RawService, RawThreshold, Text};

/// PM2's interpreter by extension (lib/API/interpreter.json).
const INTERPRETERS: &[(&str, &str)] = &[
    (".sh", "bash"),
    (".py", "python"),
    (".rb", "ruby"),
    (".php", "php"),
    (".pl", "perl"),
    (".js", "node"),
    (".cjs", "node"),
    (".mjs", "node"),
    (".coffee", "coffee"),
    (".ls", "lsc"),
    (".ts", "bun"),
    (".tsx", "bun"),
];

pub fn read(file: &Path, text: &str, opts: &Options) -> Result<Draft, ImportError> {
    let ext = file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let (value, positions) = match ext.as_str() {
        "yaml" | "yml" => {
            let v: Value = serde_yaml_ng::from_str(text).map_err(|e| {
                ImportError(format!("{}: not YAML PM2 can read: {e}", file.display()))
            })?;
            (v, true)
        }
        "js" | "cjs" | "mjs" => (evaluate(file)?, true),
        _ => {
            let v: Value = json5::from_str(text).map_err(|e| {
                let at = e
                    .position()
                    .map(|p| format!(":{}:{}", p.line + 1, p.column + 1))
                    .unwrap_or_default();
                ImportError(format!(
                    "{}{at}: not JSON5 (PM2 reads .json files as JSON5): {e}",
                    file.display()
                ))
            })?;
            (v, true)
        }
    };
    let apps = match &value {
        Value::Object(m) if m.contains_key("apps") => match &m["apps"] {
            Value::Array(a) => a.clone(),
            Value::Object(_) => vec![m["apps"].clone()],
            _ => return Err(not_config(file, "`apps` is neither a list nor an app")),
        },
        Value::Array(a) => a.clone(),
        Value::Object(m) if m.contains_key("script") => vec![value.clone()],
        _ => {
            return Err(not_config(
                file,
                "it has no `apps` list (PM2 reads `module.exports = { apps: [...] }`)",
            ));
        }
    };
    let mut draft = Draft::default();
    if let Value::Object(m) = &value {
        for k in m.keys().filter(|k| *k != "apps") {
            draft.left_out.push(LeftOut {
                file: file.to_owned(),
                line: positions.then(|| locate(text, 0, &[k])).flatten(),
                key: k.clone(),
                why: "not an app (deploy and other sections are PM2's own)".into(),
            });
        }
    }
    let mut from = 0;
    let mut envs_seen = std::collections::BTreeSet::new();
    for (i, app) in apps.iter().enumerate() {
        let Value::Object(app) = app else {
            return Err(not_config(file, &format!("apps[{i}] is not an object")));
        };
        // Keys are searched after the previous app's anchor (its name or script).
        let anchor_key = if app.contains_key("name") {
            "name"
        } else {
            "script"
        };
        let anchor = super::find_key(text, from, anchor_key);
        let region = from;
        if let Some(a) = anchor {
            from = a;
        }
        let line = |k: &str| -> Option<usize> {
            if !positions {
                return None;
            }
            locate(text, region, &[k])
        };
        for k in app.keys().filter_map(|k| k.strip_prefix("env_")) {
            envs_seen.insert(k.to_owned());
        }
        draft.services.push(one(file, i, app, &line, opts)?);
    }
    if opts.env.is_none() && !envs_seen.is_empty() {
        let list: Vec<String> = envs_seen.into_iter().collect();
        draft.notes.push(format!(
            "environments in this file: {}; env_NAME was not merged: choose one with --env NAME",
            list.join(", ")
        ));
    }
    if let Some(want) = &opts.env
        && !apps.iter().any(|a| a.get(format!("env_{want}")).is_some())
    {
        return Err(ImportError(format!(
            "{}: no app has env_{want}; drop --env or name one the file has",
            file.display()
        )));
    }
    Ok(draft)
}

fn not_config(file: &Path, why: &str) -> ImportError {
    ImportError(format!("{}: not a PM2 ecosystem: {why}", file.display()))
}

/// The config a `.js` ecosystem file exports, as `node` evaluates it.
fn evaluate(file: &Path) -> Result<Value, ImportError> {
    const SCRIPT: &str = "const {pathToFileURL}=require('url');import(pathToFileURL(process.argv[1]).href).then(m=>{let c=m.default;if(c&&c.default)c=c.default;process.stdout.write(JSON.stringify(c===undefined?null:c))},e=>{process.stderr.write(String(e&&e.stack||e));process.exit(1)})";
    let abs = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
    let out = std::process::Command::new("node")
        .arg("-e")
        .arg(SCRIPT)
        .arg(&abs)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            ImportError(format!(
                "{}: PM2 evaluates .js ecosystem files with node, and node cannot be run ({e})\n  1. install node (e.g. apt-get install nodejs)\n  2. or write the apps as ecosystem.json and import that",
                file.display()
            ))
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first: Vec<&str> = err.lines().take(6).collect();
        return Err(ImportError(format!(
            "{}: node could not evaluate it ({}):\n  {}",
            file.display(),
            out.status,
            first.join("\n  ")
        )));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        ImportError(format!(
            "{}: node printed something other than a config ({e}); the file must export {{ apps: [...] }}",
            file.display()
        ))
    })
}

fn ms(v: &Value) -> Option<Duration> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|x| *x >= 0.0)
            .map(|x| Duration::from_secs_f64(x / 1000.0)),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| *x >= 0.0)
            .map(|x| Duration::from_secs_f64(x / 1000.0)),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// PM2's memory sizes: `260M`, `1G`, `512K`, or bytes.
fn megabytes(v: &Value) -> Option<f64> {
    let s = text(v)?;
    let up = s.trim().to_ascii_uppercase();
    let (num, mult) = match up.chars().last()? {
        'G' => (&up[..up.len() - 1], 1024.0),
        'M' => (&up[..up.len() - 1], 1.0),
        'K' => (&up[..up.len() - 1], 1.0 / 1024.0),
        _ => (up.as_str(), 1.0 / (1024.0 * 1024.0)),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .map(|n| n * mult)
        .filter(|m| *m > 0.0)
}

fn env_map(v: &Value) -> Option<BTreeMap<String, Text>> {
    let Value::Object(m) = v else { return None };
    Some(
        m.iter()
            .filter_map(|(k, v)| Some((k.clone(), Text(text(v)?))))
            .collect(),
    )
}

fn one(
    file: &Path,
    index: usize,
    app: &serde_json::Map<String, Value>,
    line: &dyn Fn(&str) -> Option<usize>,
    opts: &Options,
) -> Result<Service, ImportError> {
    let name = app.get("name").and_then(text).unwrap_or_else(|| {
        app.get("script")
            .and_then(text)
            .map(|s| {
                Path::new(&s)
                    .file_stem()
                    .map_or(s.clone(), |n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| format!("app{}", index + 1))
    });
    let mut svc = Service {
        name: name.clone(),
        origin: format!(
            "{}{} apps[{index}]",
            file.display(),
            line("name")
                .or_else(|| line("script"))
                .map(|l| format!(":{l}"))
                .unwrap_or_default()
        ),
        ..Default::default()
    };
    let left = |svc: &mut Service, k: &str, why: &str| {
        svc.left_out.push(LeftOut {
            file: file.to_owned(),
            line: line(k),
            key: format!("apps[{index}].{k}"),
            why: why.to_owned(),
        })
    };
    let Some(script) = app.get("script").and_then(text) else {
        return Err(ImportError(format!(
            "{}: apps[{index}] ({name}) has no script (PM2 refuses this too)",
            file.display()
        )));
    };
    let args: Vec<String> = match app.get("args") {
        Some(Value::Array(a)) => a.iter().filter_map(text).collect(),
        Some(v) => match text(v) {
            Some(s) => shlex::split(&s).ok_or_else(|| {
                ImportError(format!(
                    "{}: apps[{index}].args: an unclosed quote",
                    file.display()
                ))
            })?,
            None => Vec::new(),
        },
        None => Vec::new(),
    };
    let interpreter = app
        .get("interpreter")
        .or_else(|| app.get("exec_interpreter"))
        .and_then(text);
    let interpreter_args: Vec<String> = app
        .get("interpreter_args")
        .or_else(|| app.get("node_args"))
        .and_then(|v| match v {
            Value::Array(a) => Some(a.iter().filter_map(text).collect()),
            v => text(v).and_then(|s| shlex::split(&s)),
        })
        .unwrap_or_default();
    let mut argv = Vec::new();
    if script.contains(' ') && interpreter.is_none() {
        // PM2 runs a script with spaces through bash -c.
        argv.extend(["bash".to_owned(), "-c".to_owned(), script.clone()]);
    } else {
        let by_ext = INTERPRETERS
            .iter()
            .find(|(e, _)| script.ends_with(e))
            .map(|(_, i)| (*i).to_owned());
        match interpreter.or(by_ext) {
            Some(i) if i != "none" => {
                argv.push(i);
                argv.extend(interpreter_args);
                argv.push(script.clone());
            }
            _ => argv.push(script.clone()),
        }
    }
    argv.extend(args);
    let raw: &mut RawService = &mut svc.raw;
    raw.command = Some(argv);
    let mut env = app.get("env").and_then(env_map).unwrap_or_default();
    if let Some(want) = &opts.env
        && let Some(over) = app.get(&format!("env_{want}")).and_then(env_map)
    {
        env.extend(over);
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as i64);
    let mut notes = Vec::new();
    let mut lefts: Vec<(String, String)> = Vec::new();
    for (k, v) in app {
        match k.as_str() {
            "name" | "script" | "args" | "interpreter" | "exec_interpreter" | "interpreter_args"
            | "node_args" | "env" => {}
            k if k.starts_with("env_") => {}
            "cwd" => raw.cwd = text(v),
            "user" | "uid" | "username" => raw.user = text(v),
            "gid" => raw.group = text(v),
            "instances" => {
                let n = match v {
                    Value::String(s) if s == "max" => cpus,
                    v => text(v).and_then(|s| s.parse::<i64>().ok()).unwrap_or(1),
                };
                let n = match n {
                    0 => cpus,
                    n if n < 0 => (cpus + n).max(1),
                    n => n,
                };
                if n != text(v).and_then(|s| s.parse().ok()).unwrap_or(-99) {
                    notes.push(format!(
                        "instances {v}: {n} replicas, this machine's CPU count at import time; edit replicas for the target machine"
                    ));
                }
                if n > 1 {
                    raw.replicas = Some(n as u32);
                }
            }
            "exec_mode" => {
                if text(v).is_some_and(|m| m.contains("cluster")) {
                    notes.push("exec_mode cluster: guardian runs replicas as separate processes; to share one port, hold it in `sockets` (SPEC §13) and let each replica accept on the passed listener instead of Node's cluster module".into());
                }
            }
            "autorestart" => {
                if v == &Value::Bool(false) {
                    raw.restart = Some("no".into());
                }
            }
            "autostart" => raw.autostart = v.as_bool(),
            "max_restarts" => {
                raw.backoff.get_or_insert_with(RawBackoff::default).max_retries =
                    v.as_u64().map(|n| n as u32)
            }
            "min_uptime" => {
                raw.backoff.get_or_insert_with(RawBackoff::default).reset_after =
                    ms(v).map(Secs)
            }
            "restart_delay" => {
                let b = raw.backoff.get_or_insert_with(RawBackoff::default);
                if let Some(d) = ms(v) {
                    b.initial_delay = Some(Secs(d));
                    b.max_delay = Some(Secs(d));
                    b.factor = Some(1.0);
                }
            }
            "exp_backoff_restart_delay" => {
                // PM2: the delay grows 1.5× from this, up to 15 s.
                let b = raw.backoff.get_or_insert_with(RawBackoff::default);
                if let Some(d) = ms(v) {
                    b.initial_delay = Some(Secs(d));
                    b.factor = Some(1.5);
                    b.max_delay = Some(Secs(Duration::from_secs(15)));
                }
            }
            "kill_timeout" => raw.shutdown_timeout = ms(v).map(Secs),
            "listen_timeout" => raw.startup_timeout = ms(v).map(Secs),
            "max_memory_restart" => match megabytes(v) {
                Some(mb) => {
                    let h = raw.health.get_or_insert_with(RawHealth::default);
                    h.resources.get_or_insert_with(RawResources::default).memory_mb =
                        Some(RawThreshold {
                            warning: Some((mb * 0.9).round().max(1.0)),
                            critical: Some(mb.round().max(1.0)),
                        });
                    h.unhealthy_threshold = Some(1);
                    notes.push(format!(
                        "max_memory_restart {v}: a critical memory threshold; guardian's recovery restarts it (PM2 checks every 30 s, and so does the default health interval)"
                    ));
                }
                None => lefts.push((k.clone(), "not a memory size (e.g. 260M)".into())),
            },
            "wait_ready" => {
                if v == &Value::Bool(true) {
                    raw.ready = Some("notify".into());
                    notes.push("wait_ready: ready = \"notify\"; the app must send READY=1 to $NOTIFY_SOCKET (sd_notify) instead of process.send('ready')".into());
                }
            }
            "port" => {
                if let Some(p) = v.as_u64().filter(|p| (1..=65535).contains(p)) {
                    raw.port = Some(p as u16);
                    env.entry("PORT".into()).or_insert(Text("{port}".into()));
                } else {
                    lefts.push((k.clone(), "not a port number".into()));
                }
            }
            "stop_exit_codes" => lefts.push((k.clone(), "guardian counts exit 0 as success; restart = \"on-failure\" restarts on any other".into())),
            "watch" | "ignore_watch" | "watch_delay" | "watch_options" => lefts.push((k.clone(), "guardian does not restart on file changes of the app (it reloads its own config)".into())),
            "out_file" | "error_file" | "err_file" | "output" | "error" | "log_file" | "merge_logs" | "combine_logs" | "log_date_format" | "log_type" | "disable_logs" | "pid_file" => lefts.push((k.clone(), "guardian writes {state_dir}/logs/{name}.log and {state_dir}/{name}.pid itself".into())),
            "cron_restart" => lefts.push((k.clone(), "guardian has no scheduled restarts; use a systemd timer or cron calling `guardian restart NAME`".into())),
            _ => lefts.push((k.clone(), "no guardian equivalent".into())),
        }
    }
    if !env.is_empty() {
        raw.env = Some(env);
    }
    svc.notes.extend(notes);
    for (k, why) in lefts {
        left(&mut svc, &k, &why);
    }
    Ok(svc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_as_pm2_writes_them() {
        assert_eq!(megabytes(&Value::from("260M")), Some(260.0));
        assert_eq!(megabytes(&Value::from("1G")), Some(1024.0));
        assert_eq!(megabytes(&Value::from(1048576)), Some(1.0));
        assert_eq!(megabytes(&Value::from("lots")), None);
        assert_eq!(ms(&Value::from(1500)), Some(Duration::from_millis(1500)));
        assert_eq!(ms(&Value::from("x")), None);
    }
}
