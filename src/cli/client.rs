//! Clients of a running guardian, over its Unix socket: status, stop, start, restart, events;
//! and `logs`, which reads the service's log file directly.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::{Command, Global, Remote};
use crate::config::Loaded;
use crate::config::load::LoadError;
use crate::daemon::socket_path;
use crate::error::{FatalError, exit};

/// The state dir: from the flag, else the config, else the default.
fn state_dir(g: &Global, loaded: Option<&Loaded>) -> PathBuf {
    if let Some(d) = &g.state_dir {
        return d.clone();
    }
    if let Some(l) = loaded {
        return l.config.guardian.state_dir.clone();
    }
    crate::config::load::default_state_dir(&super::load_options(g).env)
}

/// The config, as far as a client needs it. With `--state-dir` it is not needed (the state
/// dir is all a client needs): it is used when it loads (PID-file verdicts, log paths,
/// service names) and left out when it does not. When no file is found, there is none (the
/// default state dir). Otherwise a config that is there and does not load is the error
/// (exit 2): guessing another state dir would only say that no guardian runs there.
pub(super) fn client_config(g: &Global) -> Result<Option<Loaded>, FatalError> {
    if g.state_dir.is_some() {
        return Ok(super::load(g).ok());
    }
    match super::load(g) {
        Ok(l) => Ok(Some(l)),
        Err(FatalError::Config(LoadError::NotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Where the client commands reach the guardian: `--api` over TCP (neither the config nor
/// the state dir is needed then), else the Unix socket of the state dir. `top` starts here.
pub fn reach(
    g: &Global,
    remote: &Remote,
) -> Result<(Endpoint, Option<Loaded>, PathBuf), FatalError> {
    let loaded = if remote.api.is_some() {
        None
    } else {
        client_config(g)?
    };
    let dir = state_dir(g, loaded.as_ref());
    let at = endpoint(remote, &dir)?;
    Ok((at, loaded, dir))
}

/// The one-thread runtime a client command runs on.
pub fn runtime(dir: &Path) -> Result<tokio::runtime::Runtime, FatalError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| FatalError::Io {
            action: "start the async runtime for",
            path: dir.to_owned(),
            source,
        })
}

pub fn run(g: &Global, command: Command) -> Result<u8, FatalError> {
    let (_, loaded, dir) = reach(g, &Remote::default())?;
    runtime(&dir)?.block_on(async {
        match command {
            Command::Status {
                service,
                json,
                format,
            } => {
                let how = StatusView {
                    service,
                    json,
                    format,
                };
                status(&dir, &how, loaded.as_ref()).await
            }
            Command::Stop { service: None } => {
                let (_, body) = call(&dir, "POST", "/shutdown", "stop").await?;
                println!(
                    "{}",
                    body["message"].as_str().unwrap_or("guardian is stopping")
                );
                Ok(exit::OK)
            }
            Command::Stop { service: Some(s) } => action(&dir, &s, "stop").await,
            Command::Reload => {
                let (code, body) = call(&dir, "POST", "/reload", "reload").await?;
                if code == 200 {
                    print!("{}", body["message"].as_str().unwrap_or("reloaded\n"));
                    Ok(exit::OK)
                } else {
                    eprintln!(
                        "error: the new config was not applied; the running config stays\n{}",
                        body["error"]
                            .as_str()
                            .unwrap_or("the guardian refused the reload")
                    );
                    Ok(if code == 422 {
                        exit::CONFIG
                    } else {
                        exit::FAILURE
                    })
                }
            }
            Command::Start { service } => action(&dir, &service, "start").await,
            Command::Restart { service } => action(&dir, &service, "restart").await,
            Command::Events { service, json, n } => events(&dir, &service, json, n).await,
            other => Err(FatalError::Message(format!(
                "{other:?} is handled elsewhere"
            ))),
        }
    })
}

/// Where a running guardian answers: its Unix socket (the default), or its TCP API with the
/// bearer token.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp { addr: String, token: String },
}

/// The TCP API with its token when `--api` is given, else the Unix socket in `dir`.
fn endpoint(remote: &Remote, dir: &Path) -> Result<Endpoint, FatalError> {
    let (Some(addr), Some(file)) = (&remote.api, &remote.token_file) else {
        return Ok(Endpoint::Unix(dir.to_owned()));
    };
    let token = std::fs::read_to_string(file).map_err(|source| FatalError::Io {
        action: "read the token file",
        path: file.clone(),
        source,
    })?;
    let addr = addr
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    Ok(Endpoint::Tcp {
        addr,
        token: token.trim().to_owned(),
    })
}

/// One HTTP/1 request over the Unix socket; NotRunning when nothing answers.
pub(crate) async fn call(
    dir: &Path,
    method: &str,
    path: &str,
    command: &str,
) -> Result<(u16, Value), FatalError> {
    call_at(&Endpoint::Unix(dir.to_owned()), method, path, command).await
}

/// One HTTP/1 request to `at`.
/// The largest answer the CLI takes from guardian: `/status` is about 300 bytes a service,
/// so this holds some 200 000 of them (a health check's answer is capped far lower).
const ANSWER_LIMIT: usize = 64 << 20;

pub(crate) async fn call_at(
    at: &Endpoint,
    method: &str,
    path: &str,
    command: &str,
) -> Result<(u16, Value), FatalError> {
    use http_body_util::{BodyExt, Limited};
    let resp = open_at(at, method, path, &[], command).await?;
    let status = resp.status().as_u16();
    let bytes = Limited::new(resp.into_body(), ANSWER_LIMIT)
        .collect()
        .await
        .map_err(|e| FatalError::Message(format!("the guardian's answer was cut off: {e}")))?
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, body))
}

/// Sends `method path` to `at`; the caller reads the body as it comes. NotRunning when
/// nothing answers.
pub(crate) async fn open_at(
    at: &Endpoint,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    command: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, FatalError> {
    use crate::health::http::open;
    let not_running = || FatalError::NotRunning {
        state_dir: match at {
            Endpoint::Unix(d) => d.clone(),
            Endpoint::Tcp { addr, .. } => PathBuf::from(addr),
        },
        command: command.to_owned(),
    };
    let result = match at {
        Endpoint::Unix(d) => {
            let stream = tokio::net::UnixStream::connect(socket_path(d))
                .await
                .map_err(|_| not_running())?;
            open(stream, method, path, "guardian", None, headers).await
        }
        Endpoint::Tcp { addr, token } => {
            let stream = tokio::net::TcpStream::connect(addr.as_str())
                .await
                .map_err(|_| not_running())?;
            open(stream, method, path, addr, Some(token), headers).await
        }
    };
    result.map_err(|_| not_running())
}

async fn action(dir: &Path, service: &str, what: &str) -> Result<u8, FatalError> {
    let (code, body) = call(dir, "POST", &format!("/services/{service}/{what}"), what).await?;
    match code {
        200 => {
            println!("{}", body["message"].as_str().unwrap_or("done"));
            Ok(exit::OK)
        }
        404 => {
            eprintln!(
                "error: {}\n  list the services with: guardian status",
                body["error"].as_str().unwrap_or("no such service")
            );
            Ok(exit::NO_SUCH_SERVICE)
        }
        _ => {
            eprintln!(
                "error: {}",
                body["error"].as_str().unwrap_or("the guardian refused")
            );
            Ok(exit::FAILURE)
        }
    }
}

/// What `guardian status` was asked to show.
struct StatusView {
    service: Option<String>,
    json: bool,
    format: Option<String>,
}

/// The fields of a service in `/status`, stable for scripts (`--format`, `--json`).
pub const STATUS_FIELDS: &[&str] = &[
    "name",
    "state",
    "pid",
    "port",
    "uptime_seconds",
    "restarts",
    "health",
    "circuit_breaker",
    "adopted",
    "autostart",
    "consecutive_failures",
    "last_exit",
    "last_error",
    "next_restart_in",
    "waiting_for",
    "exit_code",
    "replica_of",
];

/// `{field}` replaced by the service's value (a string without quotes; null as empty).
fn render_template(template: &str, s: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let Some(end) = tail.find('}') else {
            return Err(format!("`{template}` has an unclosed `{{`"));
        };
        let key = &tail[..end];
        if !STATUS_FIELDS.contains(&key) {
            return Err(format!(
                "unknown field `{{{key}}}` in --format; the fields are {}",
                STATUS_FIELDS
                    .iter()
                    .map(|f| format!("{{{f}}}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        match &s[key] {
            Value::Null => {}
            Value::String(v) => out.push_str(v),
            other => out.push_str(&other.to_string()),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

async fn status(dir: &Path, how: &StatusView, loaded: Option<&Loaded>) -> Result<u8, FatalError> {
    let (_, mut doc) = match call(dir, "GET", "/status", "status").await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            // No guardian: say what the PID files alone show.
            if let Some(l) = loaded {
                for s in l.config.instances() {
                    if let Ok((verdict, _)) =
                        crate::process::pidfile::observe(&s.pidfile, &s.identity, s.port)
                            .map(|(o, r)| (crate::policy::stale_pid::decide(&o), r))
                    {
                        eprintln!("  {}: {verdict}", s.name);
                    }
                }
            }
            return Ok(exit::FAILURE);
        }
    };
    if let Some(name) = &how.service {
        let all = doc["services"].as_array().cloned().unwrap_or_default();
        let known: Vec<String> = all
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect();
        let picked: Vec<Value> = all
            .into_iter()
            .filter(|s| s["name"] == name.as_str() || s["replica_of"] == name.as_str())
            .collect();
        if picked.is_empty() {
            return Err(FatalError::NoSuchService {
                name: name.clone(),
                known,
            });
        }
        doc["services"] = Value::Array(picked);
    }
    if let Some(template) = &how.format {
        for s in doc["services"].as_array().into_iter().flatten() {
            match render_template(template, s) {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(exit::CONFIG);
                }
            }
        }
        return Ok(exit::OK);
    }
    if how.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("UNWRAP: json values serialize")
        );
        return Ok(exit::OK);
    }
    let color = crate::process::output::color_wanted();
    let g = &doc["guardian"];
    println!(
        "guardian pid {} (v{}), up {}",
        g["pid"],
        g["version"].as_str().unwrap_or("?"),
        human_secs(g["uptime_seconds"].as_f64())
    );
    println!(
        "{:<16} {:<9} {:>8} {:>6} {:>10} {:>8} {:<8} {:<9}",
        "SERVICE", "STATE", "PID", "PORT", "UPTIME", "RESTARTS", "HEALTH", "BREAKER"
    );
    for s in doc["services"].as_array().into_iter().flatten() {
        let state = s["state"].as_str().unwrap_or("?");
        let style = match state {
            "running" => anstyle::AnsiColor::Green.on_default(),
            "failed" | "blocked" => anstyle::AnsiColor::Red.on_default(),
            "backoff" | "starting" | "stopping" | "waiting" => {
                anstyle::AnsiColor::Yellow.on_default()
            }
            _ => anstyle::Style::new(),
        };
        let painted = if color {
            format!("{style}{state:<9}{style:#}")
        } else {
            format!("{state:<9}")
        };
        let or_dash = |v: &Value| {
            if v.is_null() {
                "-".to_owned()
            } else {
                v.to_string()
            }
        };
        println!(
            "{:<16} {} {:>8} {:>6} {:>10} {:>8} {:<8} {:<9}",
            s["name"].as_str().unwrap_or("?"),
            painted,
            or_dash(&s["pid"]),
            or_dash(&s["port"]),
            human_secs(s["uptime_seconds"].as_f64()),
            s["restarts"].to_string(),
            s["health"].as_str().unwrap_or("-"),
            s["circuit_breaker"].as_str().unwrap_or("-"),
        );
        if state == "failed"
            && let Some(err) = s["last_error"].as_str().or(s["last_exit"].as_str())
        {
            println!("  └ {}", err.lines().next().unwrap_or(""));
        }
        if let Some(why) = s["waiting_for"].as_str() {
            println!("  └ {why}");
        }
        if state == "completed" {
            println!("  └ exit code {}", or_dash(&s["exit_code"]));
        }
        // What the service says of itself with sd_notify (SPEC §14).
        if let Some(text) = s["status_text"].as_str().filter(|t| !t.is_empty()) {
            println!("  └ says: {}", text.lines().next().unwrap_or(""));
        }
        if let Some(at) = s["last_watchdog"].as_f64() {
            let ago = (crate::process::pidfile::unix_now() - at).max(0.0);
            println!("  └ last watchdog ping {} ago", human_secs(Some(ago)));
        }
    }
    if how.service.is_some() {
        for s in doc["services"].as_array().into_iter().flatten() {
            let name = s["name"].as_str().unwrap_or("?");
            if let Some(sockets) = s["sockets"].as_object() {
                let held: Vec<String> = sockets
                    .iter()
                    .map(|(n, a)| format!("{n} {}", a.as_str().unwrap_or("?")))
                    .collect();
                println!(
                    "\nsockets of {name} (held by guardian): {}",
                    held.join(", ")
                );
            }
            println!("\nlast events of {name}:");
            events(dir, name, false, 5).await?;
        }
    }
    Ok(exit::OK)
}

fn human_secs(s: Option<f64>) -> String {
    match s {
        Some(s) => humantime::format_duration(std::time::Duration::from_secs(s as u64)).to_string(),
        None => "-".into(),
    }
}

async fn events(dir: &Path, service: &str, json: bool, n: usize) -> Result<u8, FatalError> {
    let (code, body) = call(
        dir,
        "GET",
        &format!("/services/{service}/events?n={n}"),
        "events",
    )
    .await?;
    if code == 404 {
        eprintln!(
            "error: {}",
            body["error"].as_str().unwrap_or("no such service")
        );
        return Ok(exit::NO_SUCH_SERVICE);
    }
    for e in body.as_array().into_iter().flatten() {
        if json {
            println!("{e}");
        } else {
            let ok = if e["success"].as_bool() == Some(true) {
                "ok"
            } else {
                "FAIL"
            };
            let extra = e["error_message"]
                .as_str()
                .or(e["detail"].as_str())
                .unwrap_or("");
            let pid = e["pid"]
                .as_i64()
                .map(|p| format!(" pid {p}"))
                .unwrap_or_default();
            println!(
                "{} {:<18} {:<4}{pid} {}",
                e["timestamp_iso"].as_str().unwrap_or(""),
                e["action"].as_str().unwrap_or(""),
                ok,
                extra.lines().next().unwrap_or("")
            );
        }
    }
    Ok(exit::OK)
}
