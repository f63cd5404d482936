//! The commands that do their work and exit: validate, schema, init, check-running, and the
//! clients of a running guardian. Reads config and PID files; prints to stdout.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Cli, Command, Global, PrintFormat, find_services, load, load_options, names};
use crate::config::{self, CheckSpec, Config};
use crate::error::{FatalError, exit};
use crate::policy::redact::Secrets;
use crate::process::pidfile;

/// The commented starter config, also `examples/guardian.toml`.
pub const EXAMPLE_TOML: &str = include_str!("../../examples/guardian.toml");

pub fn dispatch(cli: Cli) -> Result<u8, FatalError> {
    let g = cli.global;
    match cli.command {
        Command::Validate { json: true, .. } => validate_json(&g),
        Command::Validate { print, explain, .. } => validate(&g, print, explain),
        Command::Schema { markdown } => {
            let json = schema_json();
            if markdown {
                let schema: serde_json::Value = serde_json::from_str(&json)
                    .map_err(|e| FatalError::Message(format!("the schema is not JSON: {e}")))?;
                print!("{}", super::reference::markdown(&schema));
            } else {
                println!("{json}");
            }
            Ok(exit::OK)
        }
        Command::Init {
            path,
            name,
            example,
            command,
        } => {
            let text = match example {
                Some(crate::cli::InitExample::Socketio) => EXAMPLE_TOML.to_owned(),
                None => starter(&name, &command)?,
            };
            init(path.as_deref(), &text)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "guardian",
                &mut std::io::stdout(),
            );
            Ok(exit::OK)
        }
        Command::Man => man(),
        Command::Export { engine } => export(&g, engine),
        Command::Import {
            format,
            file,
            out,
            env,
        } => import(format, &file, out.as_deref(), env),
        Command::Alert {
            action: crate::cli::AlertAction::Test { name },
        } => alert_test(&g, &name),
        Command::CheckRunning {
            service,
            port,
            json,
        } => check_running(&g, service.as_deref(), port, json),
        Command::Run => crate::daemon::run(load_options(&g)),
        Command::Doctor => super::doctor::run(&g),
        Command::Top { remote } => super::top::run(super::client::reach(&g, &remote)?.0),
        Command::Logs {
            services,
            follow,
            n,
            remote,
        } => {
            let (at, loaded, dir) = super::client::reach(&g, &remote)?;
            let local = remote
                .api
                .is_none()
                .then_some((dir.as_path(), loaded.as_ref()));
            super::client::runtime(&dir)?
                .block_on(super::logs::run(&at, local, &services, follow, n))
        }
        other => super::client::run(&g, other),
    }
}

/// `guardian import FORMAT FILE`: the TOML on stdout or in a new file, what was left out
/// on stderr.
fn import(
    format: crate::import::Format,
    file: &Path,
    out: Option<&Path>,
    env: Option<String>,
) -> Result<u8, FatalError> {
    use crate::import;
    if let Some(out) = out
        && out.exists()
    {
        eprintln!(
            "error: {} already exists; guardian import never overwrites. Pass another --out, or remove it first",
            out.display()
        );
        return Ok(exit::FAILURE);
    }
    let opts = import::Options {
        env,
        environ: std::env::vars().collect(),
    };
    let draft = match import::read(format, file, &opts) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::CONFIG);
        }
    };
    let done = import::finish(format, file, draft);
    match out {
        Some(out) => {
            if let Err(e) = import::write_new(out, &done.toml) {
                eprintln!("error: cannot write {}: {e}", out.display());
                return Ok(exit::FAILURE);
            }
            eprintln!("wrote {}", out.display());
        }
        None => print!("{}", done.toml),
    }
    for (from, to) in &done.renamed {
        eprintln!(
            "renamed: `{from}` is `{to}` (guardian names are lowercase letters, digits and `_`, each once)"
        );
    }
    for l in &done.left_out {
        eprintln!("left out: {l}");
    }
    if done.left_out.is_empty() {
        Ok(exit::OK)
    } else {
        eprintln!(
            "{} key(s) left out; each is a comment next to its service. Check the result: guardian validate -c FILE",
            done.left_out.len()
        );
        Ok(exit::IMPORT_PARTIAL)
    }
}

/// `guardian alert test NAME`: one test alert through the sink, with its retries.
fn alert_test(g: &Global, name: &str) -> Result<u8, FatalError> {
    let loaded = load(g)?;
    let c = &loaded.config;
    let Some(spec) = c.alerts.get(name) else {
        let known: Vec<&str> = c.alerts.keys().map(String::as_str).collect();
        eprintln!(
            "error: there is no alert sink `{name}`{}",
            if known.is_empty() {
                " (the config has no [alerts.NAME] section)".to_owned()
            } else {
                format!("; sinks: {}", known.join(", "))
            }
        );
        return Ok(exit::CONFIG);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FatalError::Message(format!("cannot start the runtime: {e}")))?;
    let shown = match &spec.target {
        crate::config::alerts::AlertTarget::Webhook(u) => u.shown(),
        crate::config::alerts::AlertTarget::Exec(argv) => argv.join(" "),
    };
    match rt.block_on(crate::alerts::test(name, spec, &c.guardian.state_dir)) {
        Ok(said) => {
            println!("alert sink {name} ({shown}): delivered ({said})");
            Ok(exit::OK)
        }
        Err(why) => {
            eprintln!(
                "error: alert sink {name} ({shown}): not delivered: {why}\n  1. check the receiver, then: guardian alert test {name}"
            );
            Ok(exit::FAILURE)
        }
    }
}

fn export(g: &Global, engine: crate::cli::ExportEngine) -> Result<u8, FatalError> {
    use crate::export::{self, ExportError};
    let loaded = load(g)?;
    let c = &loaded.config;
    let fail = |e: ExportError| {
        eprintln!("error: {e}");
        Ok(exit::CONFIG)
    };
    match engine {
        crate::cli::ExportEngine::Systemd { out, services } => {
            for s in &services {
                if !c.services.keys().any(|n| n.as_str() == s) {
                    return fail(ExportError::NoSuchService {
                        name: s.clone(),
                        known: c.services.keys().map(|n| n.to_string()).collect(),
                    });
                }
            }
            let units =
                match export::systemd::export(c, &services, &crate::config::host::which_on_path) {
                    Ok(u) => u,
                    Err(e) => return fail(e),
                };
            match out {
                Some(dir) => {
                    if let Err(e) = export::write_all(&dir, &units) {
                        eprintln!("error: {e}");
                        return Ok(exit::FAILURE);
                    }
                    for u in &units {
                        println!("wrote {}", dir.join(&u.file).display());
                    }
                }
                None => {
                    for u in &units {
                        println!("# {}\n{}", u.file, u.text);
                    }
                }
            }
            Ok(exit::OK)
        }
        crate::cli::ExportEngine::Kubernetes {
            image,
            namespace,
            out,
        } => {
            let opts = export::kubernetes::Options {
                image: image.as_deref(),
                namespace: namespace.as_deref(),
            };
            let text = match export::kubernetes::export(c, &opts) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(exit::CONFIG);
                }
            };
            match out {
                Some(file) => {
                    let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
                    let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
                    let unit = export::Unit {
                        file: name.unwrap_or_else(|| "stack.yaml".into()),
                        text,
                    };
                    if let Err(e) = export::write_all(dir.unwrap_or(Path::new(".")), &[unit]) {
                        eprintln!("error: {e}");
                        return Ok(exit::FAILURE);
                    }
                    println!("wrote {}", file.display());
                }
                None => print!("{text}"),
            }
            Ok(exit::OK)
        }
    }
}

/// One page: the synopsis, every subcommand with its options, the exit codes and the files.
fn man() -> Result<u8, FatalError> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut page = Vec::new();
    let io = |e: std::io::Error| FatalError::Message(format!("cannot write the man page: {e}"));
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .map_err(io)?;
    for sub in cmd.get_subcommands() {
        let name = format!("guardian {}", sub.get_name());
        page.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
        let man = clap_mangen::Man::new(sub.clone().name(name.clone()).bin_name(name));
        man.render_synopsis_section(&mut page).map_err(io)?;
        man.render_description_section(&mut page).map_err(io)?;
        man.render_options_section(&mut page).map_err(io)?;
    }
    page.extend_from_slice(MAN_TAIL.as_bytes());
    std::io::stdout().write_all(&page).map_err(io)?;
    Ok(exit::OK)
}

const MAN_TAIL: &str = r#".SH "EXIT STATUS"
.TP
0
success; for \fBstatus\fR, a guardian is running; for \fBcheck-running\fR, a verified instance runs
.TP
1
a runtime failure, or no guardian is running (client commands), or no instance runs (check-running)
.TP
2
a usage or config error (the old config keeps running after a refused reload)
.TP
3
another guardian holds the state dir
.TP
4
no service by that name
.SH FILES
.TP
\fI./guardian.toml\fR, \fI$XDG_CONFIG_HOME/guardian/guardian.toml\fR
the config, when neither \fB\-c\fR nor \fBGUARDIAN_CONFIG\fR names one
.TP
\fI$RUNTIME_DIRECTORY\fR, \fI$XDG_RUNTIME_DIR/guardian\fR, \fI/tmp/guardian\-$UID\fR
the default state dir: guardian.pid, guardian.sock, NAME.pid, logs/NAME.log, events.jsonl, metrics.json
.SH ENVIRONMENT
.TP
\fBGUARDIAN_SECTION__KEY\fR
any config key, levels separated by two underscores (GUARDIAN_SERVICES__WEB__PORT=8080)
.TP
\fBGUARDIAN_CONFIG\fR, \fBGUARDIAN_LOG\fR
the config file; a tracing filter for guardian's own log
.TP
\fBNO_COLOR\fR, \fBCLICOLOR_FORCE\fR
no colour at all; colour even when not on a terminal
"#;

/// The `$id` of the config's JSON Schema.
pub const SCHEMA_ID: &str = "urn:guardian:config:schema:v1";

/// The JSON Schema of the config file, as committed in `schemas/guardian.schema.json`.
pub fn schema_json() -> String {
    let mut schema = schemars::schema_for!(config::raw::RawConfig);
    // Editors key a schema by its `$id`; the file ships in the repository and with `init`.
    schema.insert("$id".into(), SCHEMA_ID.into());
    serde_json::to_string_pretty(&schema).expect("UNWRAP: a schema always serializes")
}

/// `validate --json`: the same facts as the text, one object per problem.
fn validate_json(g: &Global) -> Result<u8, FatalError> {
    use serde_json::json;
    match config::load(&load_options(g)) {
        Ok(loaded) => {
            let all = names(&loaded.config);
            println!(
                "{}",
                json!({"valid": true, "services": all, "problems": []})
            );
            Ok(exit::OK)
        }
        Err(e) => {
            println!("{}", json!({"valid": false, "problems": e.problems()}));
            Ok(exit::CONFIG)
        }
    }
}

/// The config as `validate --print` shows it (SPEC §12: secrets never leave guardian): each
/// `env` value that is not public is `***`, and so is any value of `env` or `env_file` in
/// the command and the exec checks.
fn shown(c: &Config) -> Config {
    let mut c = c.clone();
    for s in c.services.values_mut() {
        let secrets = Secrets::new(
            s.env_from_files
                .iter()
                .chain(&s.env)
                .map(|(k, v)| (k.as_str(), v.as_str())),
            |k| s.is_public_env(k),
            &[],
        );
        for arg in s.command.iter_mut() {
            *arg = secrets.argument(arg);
        }
        for check in &mut s.health.checks {
            if let CheckSpec::Exec { command } = check {
                for arg in command.iter_mut() {
                    *arg = secrets.argument(arg);
                }
            }
        }
        let hidden: Vec<String> = s
            .env
            .keys()
            .filter(|k| !s.is_public_env(k))
            .cloned()
            .collect();
        for k in hidden {
            s.env.insert(k, "***".to_owned());
        }
    }
    c
}

fn validate(g: &Global, print: Option<PrintFormat>, explain: bool) -> Result<u8, FatalError> {
    let loaded = load(g)?;
    // What `run` would refuse about the held sockets, short of binding them (SPEC §13).
    let sockets = crate::process::sockets::preflight(&loaded.config);
    if !sockets.is_empty() {
        for (key, e) in &sockets {
            eprintln!("error: `{key}`: {e}");
        }
        return Ok(exit::CONFIG);
    }
    let c = &loaded.config;
    let shown = print.map(|_| shown(c));
    match print {
        Some(PrintFormat::Json) => println!(
            "{}",
            serde_json::to_string_pretty(&shown).expect("UNWRAP: Config serializes")
        ),
        Some(PrintFormat::Toml) => print!(
            "{}",
            toml::to_string(&shown).map_err(|e| FatalError::Message(format!(
                "cannot print the config as TOML: {e}"
            )))?
        ),
        None => {}
    }
    if explain {
        let prov = config::load::provenance(&loaded.figment);
        print!("{}", super::explain::explain(c, &prov));
    }
    if print.is_none() && !explain {
        let files: Vec<String> = loaded
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let all = names(c);
        println!(
            "config is valid: {} service{} ({}) from {}",
            all.len(),
            if all.len() == 1 { "" } else { "s" },
            all.join(", "),
            files.join(", ")
        );
    }
    Ok(exit::OK)
}

/// The starter `init` writes: one service that runs as is on any machine.
fn starter(name: &str, command: &[String]) -> Result<String, FatalError> {
    config::ServiceName::new(name).map_err(|e| FatalError::Message(format!("--name: {e}")))?;
    let quoted = |args: &[String]| {
        args.iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let service = if command.is_empty() {
        format!(
            r#"[services.{name}]
# A Python web server on the first free port of the range; replace it with your program.
command = ["python3", "-m", "http.server", "{{port}}", "--bind", "{{host}}"]
port_range = [8000, 8099]
health = {{ interval = "10s", checks = [{{ kind = "http", path = "/", expect_status = 200 }}] }}
"#
        )
    } else {
        format!(
            "[services.{name}]
command = [{}]
# port = 8000                          # then: health = {{ checks = [{{ kind = \"tcp\" }}] }}
",
            quoted(command)
        )
    };
    Ok(format!(
        r#"#:schema ./guardian.schema.json
# guardian.toml, written by `guardian init`. Editors that read `#:schema` (taplo, Even Better
# TOML) check it once the schema is there: guardian schema > guardian.schema.json
#
#   guardian validate --explain     check it, and see every default spelled out
#   guardian run                    run it in the foreground (Ctrl-C stops everything)
#   guardian status                 from another terminal
#
# Every key: guardian init --example socketio other.toml, or `guardian schema`.
# Placeholders: {{name}} {{host}} {{port}} {{state_dir}} {{pidfile}} {{replica}}

{service}# restart = "always"                    # always | on-failure | no
# depends_on = {{ db = "healthy" }}        # started | ready | healthy | completed
# replicas = 1
# env = {{ LOG_LEVEL = "info" }}
# env_file = [".env"]
"#
    ))
}

fn init(path: Option<&Path>, text: &str) -> Result<u8, FatalError> {
    let path = path.map_or_else(|| PathBuf::from("guardian.toml"), Path::to_path_buf);
    match crate::import::write_new(&path, text) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "error: {} already exists; guardian init never overwrites. Edit it, or pass another path: guardian init other.toml",
                path.display()
            );
            return Ok(exit::FAILURE);
        }
        Err(source) => {
            return Err(FatalError::Io {
                action: "write",
                path,
                source,
            });
        }
    }
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
        (Some(name), _) => find_services(c, name)?,
        (None, Some(p)) => c
            .instances()
            .filter(|s| {
                s.port == Some(p) || s.port_range.is_some_and(|[a, b]| (a..=b).contains(&p))
            })
            .collect(),
        (None, None) => c.instances().collect(),
    };
    if selected.is_empty() {
        let p = port.unwrap_or_default();
        let holder = crate::process::procinfo::port_holder(p);
        let line = match &holder {
            crate::process::procinfo::PortHolder::Free => {
                format!("not running: no configured service uses port {p}, and the port is free")
            }
            crate::process::procinfo::PortHolder::Pid(f) => format!(
                "not running: no configured service uses port {p}; it is held by pid {} ({})",
                f.pid,
                f.command_line()
            ),
            crate::process::procinfo::PortHolder::Unknown => format!(
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
