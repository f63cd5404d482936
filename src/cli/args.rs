//! The command line of SPEC §1: clap types only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "guardian",
    version,
    about = "A declarative process guardian",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone, Default)]
pub struct Global {
    /// Config file (repeatable; later files override earlier). Default: $GUARDIAN_CONFIG,
    /// ./guardian.toml, $XDG_CONFIG_HOME/guardian/guardian.toml.
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Where PID files, logs, the socket and the event log live.
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// trace | debug | info | warn | error
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// text | json
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// Where a client command reaches guardian when not through the local Unix socket.
#[derive(Args, Debug, Clone, Default)]
pub struct Remote {
    /// A guardian's TCP API (HOST:PORT) instead of the local Unix socket.
    #[arg(long, requires = "token_file")]
    pub api: Option<String>,
    /// The bearer token for --api.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// Each subcommand's arguments are built only when that subcommand is the one given
/// (`defer`): `guardian run` does not build the other 24 on its way to the first service.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Run in the foreground until SIGTERM/SIGINT or `guardian stop`.
    Run,
    /// Load and check the config exactly as `run` would.
    Validate {
        /// Print the effective merged config.
        #[arg(long, value_enum)]
        print: Option<PrintFormat>,
        /// Say where each non-default value came from, and each service's restart schedule.
        #[arg(long)]
        explain: bool,
        /// The verdict as JSON on stdout: {valid, problems: [{file, line, column, key, origin,
        /// message}]}, for CI annotations.
        #[arg(long, conflicts_with_all = ["print", "explain"])]
        json: bool,
    },
    /// Ask the running guardian for its status: every service, or one (with its last events).
    Status {
        /// One service, or every replica of one (`api`, `api.2`).
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(service_names))]
        service: Option<String>,
        /// The whole document as JSON (the same as GET /status).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// One line per service from a template of its fields: '{pid}', '{name} {state}'.
        #[arg(long)]
        format: Option<String>,
    },
    /// A troubleshooting report: config, guardian, each service's PID file, port, events, log.
    Doctor,
    /// Ask the running guardian to reload its config; prints what changed.
    Reload,
    /// Stop one service, or the guardian and all its services.
    Stop {
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(service_names))]
        service: Option<String>,
    },
    /// Start one service (resets its retry count and breaker).
    Start {
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(service_names))]
        service: String,
    },
    /// Gracefully restart one service (resets its retry count and breaker).
    Restart {
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(service_names))]
        service: String,
    },
    /// Is a verified instance running? Decided from the PID files alone.
    CheckRunning {
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(service_names))]
        service: Option<String>,
        #[arg(long, conflicts_with = "service")]
        port: Option<u16>,
        #[arg(long)]
        json: bool,
    },
    /// The service's recent lifecycle and recovery events.
    Events {
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(service_names))]
        service: String,
        #[arg(long)]
        json: bool,
        #[arg(short = 'n', default_value_t = 20)]
        n: usize,
    },
    /// The services' captured stdout and stderr; with several, each line is prefixed
    /// `NAME | ` (in colour on a terminal). A replicated service means all its instances.
    Logs {
        #[arg(required = true, add = clap_complete::engine::ArgValueCompleter::new(service_names))]
        services: Vec<String>,
        /// Keep printing lines as the services write them (over the API, so it works with
        /// --api from another host too).
        #[arg(short = 'f', long)]
        follow: bool,
        #[arg(short = 'n', default_value_t = 50)]
        n: usize,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print the JSON Schema of the config.
    Schema {
        /// Print the configuration reference as Markdown instead (docs/reference.md).
        #[arg(long)]
        markdown: bool,
    },
    /// Write a commented starter guardian.toml.
    Init {
        path: Option<PathBuf>,
        /// The service's name.
        #[arg(long, default_value = "web")]
        name: String,
        /// Write a known example instead: `socketio` (the reference server of this repository).
        #[arg(long, conflicts_with = "command")]
        example: Option<InitExample>,
        /// The service's program and arguments (after `--`). Default: a Python web server on
        /// a free port, with an http check.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Print a completion script: bash, zsh, fish, elvish or powershell.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff): every command, the exit codes and the files.
    Man,
    /// A live view of every service in the terminal, with its log, events and controls.
    Top {
        #[command(flatten)]
        remote: Remote,
    },
    /// Write the same stack for a fleet engine.
    Export {
        #[command(subcommand)]
        engine: ExportEngine,
    },
    /// Turn a supervisord.conf, PM2 ecosystem file, Compose file or Procfile into a
    /// guardian.toml. Exit 0: all mapped; 3: written, with keys left out (listed on stderr
    /// and as comments); 2: the input cannot be read.
    Import {
        format: crate::import::Format,
        file: PathBuf,
        /// Write here (never over an existing file) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// PM2: merge env_NAME over env.
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
    },
    /// Alert sinks (`[alerts.NAME]`).
    Alert {
        #[command(subcommand)]
        action: AlertAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertAction {
    /// Send a test alert through one sink, from this process: exit 0 when it was delivered,
    /// 1 with the reason when not.
    Test {
        /// The sink's name (`[alerts.NAME]`).
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportEngine {
    /// One guardian-NAME.service unit per service (a template guardian-NAME@.service for
    /// replicas); printed, or written into --out.
    Systemd {
        /// Write the units into this folder (all or none) instead of printing them.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only these services (default: all).
        #[arg(add = clap_complete::engine::ArgValueCompleter::new(service_names))]
        services: Vec<String>,
    },
    /// One YAML stream: a Deployment per service, a Job per task, a Service per port.
    Kubernetes {
        /// The container image of every service without its own `image` key.
        #[arg(long)]
        image: Option<String>,
        /// Put every object in this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Write the stream to this file (all or nothing) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InitExample {
    Socketio,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PrintFormat {
    Toml,
    Json,
}

/// Service names for dynamic completion (`source <(COMPLETE=bash guardian)`): the instances
/// and declared services of the config found from here, quietly nothing when there is none.
fn service_names(current: &std::ffi::OsStr) -> Vec<clap_complete::engine::CompletionCandidate> {
    let Some(prefix) = current.to_str() else {
        return Vec::new();
    };
    let opts = crate::config::LoadOptions::default().with_process_env();
    let Ok(loaded) = crate::config::load(&opts) else {
        return Vec::new();
    };
    let mut names: Vec<String> = loaded
        .config
        .services
        .keys()
        .map(|n| n.to_string())
        .chain(loaded.config.instances().map(|s| s.name.to_string()))
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(clap_complete::engine::CompletionCandidate::new)
        .collect()
}
