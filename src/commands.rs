//! The commands that do their work and exit: validate, schema, init, check-running, and the
//! clients of a running guardian. Reads config and PID files; prints to stdout.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::{Cli, Command, Global, PrintFormat};
use crate::config::{self, Config, LoadOptions, Loaded};
use crate::error::{FatalError, exit};
use crate::pidfile;

/// The commented starter config, also `examples/guardian.toml`.
pub const EXAMPLE_TOML: &str = include_str!("../examples/guardian.toml");

pub fn dispatch(cli: Cli) -> Result<u8, FatalError> {
    let g = cli.global;
    match cli.command {
        Command::Validate { print, explain } => validate(&g, print, explain),
        Command::Schema => {
            println!("{}", schema_json());
            Ok(exit::OK)
        }
        Command::Init { path } => init(path.as_deref()),
        Command::CheckRunning {
            service,
            port,
            json,
        } => check_running(&g, service.as_deref(), port, json),
        Command::Run => crate::daemon::run(&g),
        Command::Doctor => crate::doctor::run(&g),
        other => crate::client::run(&g, other),
    }
}

pub fn load_options(g: &Global) -> LoadOptions {
    LoadOptions {
        files: g.config.clone(),
        state_dir: g.state_dir.clone(),
        log_level: g.log_level.clone(),
        log_format: g.log_format.clone(),
        env: Default::default(),
    }
    .with_process_env()
}

pub fn load(g: &Global) -> Result<Loaded, FatalError> {
    Ok(config::load(&load_options(g))?)
}

/// The JSON Schema of the config file, as committed in `schemas/guardian.schema.json`.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(config::raw::RawConfig);
    serde_json::to_string_pretty(&schema).expect("UNWRAP: a schema always serializes")
}

fn validate(g: &Global, print: Option<PrintFormat>, explain: bool) -> Result<u8, FatalError> {
    let loaded = load(g)?;
    let c = &loaded.config;
    match print {
        Some(PrintFormat::Json) => println!(
            "{}",
            serde_json::to_string_pretty(c).expect("UNWRAP: Config serializes")
        ),
        Some(PrintFormat::Toml) => print!(
            "{}",
            toml::to_string(c).map_err(|e| FatalError::Message(format!(
                "cannot print the config as TOML: {e}"
            )))?
        ),
        None => {}
    }
    if explain {
        let prov = config::load::provenance(&loaded.figment);
        print!("{}", config::explain::explain(c, &prov));
    }
    if print.is_none() && !explain {
        let files: Vec<String> = loaded
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        println!(
            "config is valid: {} service{} ({}) from {}",
            c.services.len(),
            if c.services.len() == 1 { "" } else { "s" },
            names(c).join(", "),
            files.join(", ")
        );
    }
    Ok(exit::OK)
}

fn names(c: &Config) -> Vec<String> {
    c.services.keys().map(|n| n.to_string()).collect()
}

fn init(path: Option<&Path>) -> Result<u8, FatalError> {
    let path = path.map_or_else(|| PathBuf::from("guardian.toml"), Path::to_path_buf);
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "error: {} already exists; guardian init never overwrites. Edit it, or pass another path: guardian init other.toml",
                path.display()
            );
            return Ok(exit::FAILURE);
        }
        Err(source) => {
            return Err(FatalError::Io {
                action: "create",
                path,
                source,
            });
        }
    };
    f.write_all(EXAMPLE_TOML.as_bytes())
        .map_err(|source| FatalError::Io {
            action: "write",
            path: path.clone(),
            source,
        })?;
    println!(
        "wrote {}; check it with: guardian validate -c {}",
        path.display(),
        path.display()
    );
    Ok(exit::OK)
}

fn check_running(
    g: &Global,
    service: Option<&str>,
    port: Option<u16>,
    json: bool,
) -> Result<u8, FatalError> {
    let loaded = load(g)?;
    let c = &loaded.config;
    let selected: Vec<_> = match (service, port) {
        (Some(name), _) => vec![find_service(c, name)?],
        (None, Some(p)) => c
            .services
            .values()
            .filter(|s| {
                s.port == Some(p) || s.port_range.is_some_and(|[a, b]| (a..=b).contains(&p))
            })
            .collect(),
        (None, None) => c.services.values().collect(),
    };
    if selected.is_empty() {
        let p = port.unwrap_or_default();
        let holder = crate::procinfo::port_holder(p);
        let line = match &holder {
            crate::procinfo::PortHolder::Free => {
                format!("not running: no configured service uses port {p}, and the port is free")
            }
            crate::procinfo::PortHolder::Pid(f) => format!(
                "not running: no configured service uses port {p}; it is held by pid {} ({})",
                f.pid,
                f.command_line()
            ),
            crate::procinfo::PortHolder::Unknown => format!(
                "not running: no configured service uses port {p}; it is held by a process you cannot see"
            ),
        };
        if json {
            println!(
                "{}",
                serde_json::json!({"running": false, "port": p, "verdict": line})
            );
        } else {
            println!("{line}");
        }
        return Ok(exit::FAILURE);
    }
    let mut all = true;
    let mut docs = Vec::new();
    for s in selected {
        let port = port.or(s.port);
        let (verdict, _) = pidfile::check(&s.pidfile, &s.identity, port)?;
        all &= verdict.running.is_some();
        if json {
            docs.push(serde_json::json!({
                "service": s.name.as_str(), "running": verdict.running.is_some(), "pid": verdict.running,
                "rung": format!("{:?}", verdict.rung), "verdict": verdict.to_string(), "pidfile": s.pidfile,
            }));
        } else {
            println!("{}: {verdict}", s.name);
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&docs).expect("UNWRAP: json values serialize")
        );
    }
    Ok(if all { exit::OK } else { exit::FAILURE })
}

pub fn find_service<'a>(c: &'a Config, name: &str) -> Result<&'a config::ServiceSpec, FatalError> {
    c.services
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, s)| s)
        .ok_or_else(|| FatalError::NoSuchService {
            name: name.to_owned(),
            known: names(c),
        })
}
