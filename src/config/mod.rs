//! The validated config: typed, defaults filled, every cross-field rule checked. Built from the
//! layers in `load.rs`, checked in `validate.rs`, compared in `diff.rs`. Pure: no IO here.

pub mod alerts;
pub mod diff;
pub mod duration;
pub mod graph;
pub mod host;
pub mod load;
pub mod raw;
pub mod report;
pub mod suggest;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Serialize, Serializer};

pub use load::{LoadOptions, Loaded, load};
pub use report::{ValidationError, ValidationErrors};

/// Everything guardian runs from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    pub guardian: GuardianSpec,
    /// The services as declared; `instances()` expands replicas.
    pub services: BTreeMap<ServiceName, ServiceSpec>,
    /// Alert sinks by name (SPEC §15).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub alerts: BTreeMap<String, alerts::AlertSpec>,
}

impl Config {
    /// Every instance guardian runs: `NAME` for a single one, `NAME.1` … `NAME.N` for replicas.
    pub fn instances(&self) -> impl Iterator<Item = ServiceSpec> + '_ {
        self.services.values().flat_map(ServiceSpec::instance_specs)
    }

    /// The instances a name means: the one instance of that name, or every replica of a
    /// declared service. Empty when nothing has that name.
    pub fn resolve(&self, name: &str) -> Vec<ServiceSpec> {
        self.instances()
            .filter(|i| i.name.as_str() == name || i.group.as_str() == name)
            .collect()
    }
}

/// A service name: lowercase `[a-z0-9_]`, so that `GUARDIAN_SERVICES__NAME__…` can reach it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ServiceName(String);

impl ServiceName {
    pub fn new(name: &str) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Ok(ServiceName(name.to_owned()))
        } else {
            let hint = name
                .to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
            Err(format!(
                "service name `{name}` must be 1 to 64 lowercase letters, digits or `_` (environment variables cannot name it otherwise); rename it, e.g. `{hint}`"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Replica `k` of a declared service: `NAME.K` (the `.` keeps it apart from every
    /// declared name).
    pub fn replica(group: &ServiceName, k: u32) -> Self {
        ServiceName(format!("{group}.{k}"))
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub const NAMES: &[&str] = &["trace", "debug", "info", "warn", "error"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "trace" => Self::Trace,
            "debug" => Self::Debug,
            "info" => Self::Info,
            "warn" | "warning" => Self::Warn,
            "error" => Self::Error,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GuardianSpec {
    pub state_dir: PathBuf,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub watch_config: bool,
    pub stop_services_on_exit: bool,
    pub metrics_file: PathBuf,
    pub events_file: PathBuf,
    pub events_max_size_mb: u64,
    pub events_backup_count: u32,
    pub echo: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiSpec>,
}

impl GuardianSpec {
    pub fn events_max_bytes(&self) -> u64 {
        self.events_max_size_mb.saturating_mul(1024 * 1024)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApiSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    pub allow_plaintext: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOrphan {
    Adopt,
    Replace,
    Fail,
}

/// One guarded service, as configured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceSpec {
    #[serde(skip)]
    pub name: ServiceName,
    /// Templates: `{port}` is known only when a port is chosen from `port_range`.
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    /// Listening sockets held by guardian (SPEC §13), by name: passed in name order.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sockets: BTreeMap<String, Listen>,
    /// Keys whose values are not secret (SPEC §12): shown in events, `/status` and prints.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub public_env: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_prefix: Option<String>,
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_range: Option<[u16; 2]>,
    /// Expanded at load time: adoption must find it before any port is chosen.
    pub pidfile: PathBuf,
    #[serde(serialize_with = "human")]
    pub startup_timeout: Duration,
    #[serde(serialize_with = "human")]
    pub shutdown_timeout: Duration,
    #[serde(serialize_with = "signal_name")]
    pub stop_signal: Signal,
    pub on_orphan: OnOrphan,
    pub autostart: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    pub log: LogSpec,
    pub metrics: MetricsSpec,
    pub identity: IdentitySpec,
    pub backoff: BackoffSpec,
    pub health: HealthSpec,
    pub recovery: RecoverySpec,
    pub restart: RestartPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<Readiness>,
    pub restart_strategy: RestartStrategy,
    /// The longest wait between two `WATCHDOG=1` once ready (SPEC §14).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "human_opt")]
    pub watchdog: Option<Duration>,
    /// When it ends for good, guardian stops the stack and exits with its code (SPEC §14).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub essential: bool,
    pub depends_on: BTreeMap<ServiceName, Dependency>,
    pub replicas: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(rename = "group", skip_serializing_if = "Option::is_none")]
    pub unix_group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "octal")]
    pub umask: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_file: Vec<PathBuf>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<Limit, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Resolved from the host when the config is loaded (`config::host`): the variables of
    /// `env_file` (literal, not templates), and the ids of `user` and `group`.
    #[serde(skip)]
    pub env_from_files: BTreeMap<String, String>,
    #[serde(skip)]
    pub uid: Option<u32>,
    #[serde(skip)]
    pub gid: Option<u32>,
    /// The declared service this instance belongs to (its own name without replicas).
    #[serde(skip)]
    pub group: ServiceName,
    /// This instance's number K, 1 for a service without replicas.
    #[serde(skip)]
    pub replica: u32,
    /// What differs between the instances; empty in an instance's own spec.
    #[serde(skip)]
    pub instances: Vec<Instance>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub condition: Condition,
    /// Restart this service after the dependency restarts.
    pub restart: bool,
}

/// The per-instance values of a declared service, placeholders expanded for the instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub name: ServiceName,
    pub replica: u32,
    pub port: Option<u16>,
    pub pidfile: PathBuf,
    pub log_file: PathBuf,
    pub metrics_file: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogSpec {
    pub max_size_mb: u64,
    pub backup_count: u32,
    /// Always `{state_dir}/logs/{name}.log`.
    #[serde(skip)]
    pub file: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricsSpec {
    pub enabled: bool,
    pub file: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IdentitySpec {
    pub patterns: Vec<String>,
    pub match_port: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackoffSpec {
    #[serde(serialize_with = "human")]
    pub initial_delay: Duration,
    #[serde(serialize_with = "human")]
    pub max_delay: Duration,
    pub factor: f64,
    pub jitter: f64,
    pub max_retries: u32,
    #[serde(serialize_with = "human")]
    pub reset_after: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthSpec {
    #[serde(serialize_with = "human")]
    pub interval: Duration,
    #[serde(serialize_with = "human")]
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub history_size: u32,
    #[serde(serialize_with = "human")]
    pub aggregation_window: Duration,
    pub checks: Vec<CheckSpec>,
    pub resources: ResourcesSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CheckSpec {
    Tcp {},
    Http {
        path: String,
        expect_status: u16,
        #[serde(skip_serializing_if = "Option::is_none")]
        body_contains: Option<String>,
    },
    Exec {
        command: Vec<String>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ResourcesSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<Threshold>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<Threshold>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_descriptors: Option<Threshold>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<Threshold>,
}

impl ResourcesSpec {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Threshold {
    pub warning: f64,
    pub critical: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecoverySpec {
    pub enabled: bool,
    pub warning_threshold: u32,
    pub critical_threshold: u32,
    #[serde(serialize_with = "human")]
    pub failure_window: Duration,
    #[serde(serialize_with = "human")]
    pub min_recovery_interval: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_connections: Option<ClearConnections>,
    pub circuit_breaker: BreakerSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClearConnections {
    Http {
        method: String,
        path: String,
    },
    #[serde(serialize_with = "signal_name")]
    Signal(Signal),
    Command(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakerSpec {
    pub failure_threshold: u32,
    #[serde(serialize_with = "human")]
    pub open_timeout: Duration,
    pub success_threshold: u32,
}

impl ServiceSpec {
    /// The spec of each instance: name, replica, port, PID file, log and metrics file set.
    pub fn instance_specs(&self) -> impl Iterator<Item = ServiceSpec> + '_ {
        self.instances.iter().map(|i| ServiceSpec {
            name: i.name.clone(),
            replica: i.replica,
            port: i.port,
            pidfile: i.pidfile.clone(),
            log: LogSpec {
                file: i.log_file.clone(),
                ..self.log.clone()
            },
            metrics: MetricsSpec {
                file: i.metrics_file.clone(),
                ..self.metrics.clone()
            },
            instances: Vec::new(),
            ..self.clone()
        })
    }

    /// The values placeholders expand to, once the port is known.
    pub fn vars(&self, state_dir: &std::path::Path, port: Option<u16>) -> Vars {
        Vars {
            replica: self.replica,
            name: self.name.to_string(),
            host: self.host.clone(),
            port,
            state_dir: state_dir.display().to_string(),
            pidfile: Some(self.pidfile.display().to_string()),
        }
    }

    /// The port guardian itself watches (free before a start, accepting for readiness, held
    /// by a proven instance): none when guardian holds the service's sockets, since then
    /// guardian holds the port and it always accepts.
    pub fn watched_port(&self) -> Option<u16> {
        self.port.filter(|_| self.sockets.is_empty())
    }

    /// Whether the value of `key` may show: listed in `public_env`, or an `env` value made of
    /// placeholders only (`"{port}"`, `"{host}:{port}"`): a fact guardian put there.
    pub fn is_public_env(&self, key: &str) -> bool {
        self.public_env.iter().any(|k| k == key)
            || self.env.get(key).is_some_and(|t| only_placeholders(t))
    }

    /// The fixed port, or the first of the range: what `{port}` means before a spawn.
    pub fn nominal_port(&self) -> Option<u16> {
        self.port.or(self.port_range.map(|r| r[0]))
    }
}

/// The values of the placeholders `{name} {host} {port} {state_dir} {pidfile} {replica}`.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    pub name: String,
    pub replica: u32,
    pub host: String,
    pub port: Option<u16>,
    pub state_dir: String,
    pub pidfile: Option<String>,
}

pub const PLACEHOLDERS: &[&str] = &["name", "host", "port", "state_dir", "pidfile", "replica"];

/// Where a held socket listens (SPEC §13).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Listen {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

/// The most sockets one service may hold: the descriptors 3 to 18.
pub const MAX_SOCKETS: usize = 16;

impl Listen {
    /// `tcp://HOST:PORT` (an IP address; IPv6 in brackets; `localhost` is 127.0.0.1) or
    /// `unix:///absolute/path`.
    pub fn parse(text: &str) -> Result<Listen, String> {
        if let Some(path) = text.strip_prefix("unix://") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(format!(
                    "`{text}`: a unix socket needs an absolute path, e.g. unix:///run/app.sock"
                ));
            }
            if path.len() > 107 {
                return Err(format!(
                    "`{text}`: a unix socket path has at most 107 bytes"
                ));
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        let Some(rest) = text.strip_prefix("tcp://") else {
            return Err(format!(
                "`{text}` is not an address: write tcp://HOST:PORT (tcp://127.0.0.1:8080, tcp://[::1]:8080, tcp://0.0.0.0:80) or unix:///path"
            ));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let rest = match rest.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => rest.to_owned(),
        };
        let addr: std::net::SocketAddr = rest.parse().map_err(|_| {
            format!("`{text}`: HOST:PORT must be an IP address and a port (tcp://127.0.0.1:8080, tcp://[::1]:8080)")
        })?;
        if addr.port() == 0 {
            return Err(format!(
                "`{text}`: the port must be between 1 and 65535 (a held socket keeps its address)"
            ));
        }
        Ok(Listen::Tcp(addr))
    }

    pub fn port(&self) -> Option<u16> {
        match self {
            Listen::Tcp(a) => Some(a.port()),
            Listen::Unix(_) => None,
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "tcp://{a}"),
            Listen::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

impl Serialize for Listen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Whether `template` says nothing but placeholders and punctuation (`"{host}:{port}"`).
pub fn only_placeholders(template: &str) -> bool {
    let mut rest = template;
    let mut any = false;
    while let Some(i) = rest.find('{') {
        if rest[..i].chars().any(char::is_alphanumeric) {
            return false;
        }
        let tail = &rest[i + 1..];
        let Some(end) = tail.find('}') else {
            return false;
        };
        if !PLACEHOLDERS.contains(&&tail[..end]) {
            return false;
        }
        any = true;
        rest = &tail[end + 1..];
    }
    any && !rest.chars().any(char::is_alphanumeric)
}

/// Expands `{…}` placeholders; `{{` and `}}` stand for literal braces.
pub fn expand(template: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("{{") {
            out.push('{');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("}}") {
            out.push('}');
            rest = t;
        } else if let Some(t) = tail.strip_prefix('{') {
            let Some(end) = t.find('}') else {
                return Err(format!(
                    "`{template}` has an unclosed `{{`; write `{{{{` for a literal brace"
                ));
            };
            let key = &t[..end];
            let value = match key {
                "name" => Some(vars.name.clone()),
                "host" => Some(vars.host.clone()),
                "port" => vars.port.map(|p| p.to_string()),
                "state_dir" => Some(vars.state_dir.clone()),
                "pidfile" => vars.pidfile.clone(),
                "replica" => Some(vars.replica.to_string()),
                _ => {
                    return Err(format!(
                        "unknown placeholder `{{{key}}}` in `{template}`; the placeholders are {}",
                        PLACEHOLDERS
                            .iter()
                            .map(|p| format!("{{{p}}}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                }
            };
            let Some(value) = value else {
                return Err(format!(
                    "`{{{key}}}` in `{template}` has no value here: {}",
                    if key == "port" {
                        "the service has no `port` or `port_range`"
                    } else {
                        "a pidfile cannot name itself"
                    }
                ));
            };
            out.push_str(&value);
            rest = &t[end + 1..];
        } else {
            return Err(format!(
                "`{template}` has a lone `}}`; write `}}}}` for a literal brace"
            ));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `restart = "always" | "on-failure" | "no"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    No,
}

impl RestartPolicy {
    pub const NAMES: &[&str] = &["always", "on-failure", "no"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "always" => Self::Always,
            "on-failure" => Self::OnFailure,
            "no" => Self::No,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// `ready`: when a started instance counts as ready (SPEC §14). Unset keeps the default:
/// the port accepts, else the first healthy round, else at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Port,
    Healthy,
    /// `READY=1` on its NOTIFY_SOCKET.
    Notify,
    /// The first output line that matches this pattern (checked when the config loads).
    Log(String),
    Started,
}

impl Readiness {
    pub const NAMES: &[&str] = &["port", "healthy", "notify", "log:REGEX", "started"];

    /// The value as written; `log:` is parsed here and its pattern compiled by the caller.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "port" => Self::Port,
            "healthy" => Self::Healthy,
            "notify" => Self::Notify,
            "started" => Self::Started,
            _ => return s.strip_prefix("log:").map(|p| Self::Log(p.to_owned())),
        })
    }
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Port => f.write_str("port"),
            Self::Healthy => f.write_str("healthy"),
            Self::Notify => f.write_str("notify"),
            Self::Log(p) => write!(f, "log:{p}"),
            Self::Started => f.write_str("started"),
        }
    }
}

impl Serialize for Readiness {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `restart_strategy`: how a restart replaces a running instance (SPEC §13).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartStrategy {
    /// Stop the old instance, then start the new one.
    #[default]
    StopFirst,
    /// Start the new one, wait until it is ready, then stop the old one (it drains).
    StartFirst,
}

impl RestartStrategy {
    pub const NAMES: &[&str] = &["stop-first", "start-first"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "stop-first" => Self::StopFirst,
            "start-first" => Self::StartFirst,
            _ => return None,
        })
    }
}

/// A `depends_on` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Its process was spawned.
    Started,
    /// It passed readiness (its port accepts, or its first healthy round).
    Ready,
    /// Its health is `healthy` (without checks: the same as ready).
    Healthy,
    /// It exited 0 and is not restarted.
    Completed,
}

impl Condition {
    pub const NAMES: &[&str] = &["started", "ready", "healthy", "completed"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "started" => Self::Started,
            "ready" => Self::Ready,
            "healthy" => Self::Healthy,
            "completed" => Self::Completed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

fn octal<S: Serializer>(m: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{:03o}", m.unwrap_or(0)))
}

/// A resource limit a service may set (`limits.NAME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    Nofile,
    Nproc,
    Core,
    Memlock,
    Stack,
    As,
}

impl Limit {
    pub const NAMES: &[&str] = &["nofile", "nproc", "core", "memlock", "stack", "as"];
    pub const ALL: [Limit; 6] = [
        Limit::Nofile,
        Limit::Nproc,
        Limit::Core,
        Limit::Memlock,
        Limit::Stack,
        Limit::As,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Whether its values are sizes in bytes (they accept "64MiB").
    pub fn is_size(self) -> bool {
        matches!(
            self,
            Limit::Core | Limit::Memlock | Limit::Stack | Limit::As
        )
    }
}

/// `u64::MAX` stands for "unlimited" (RLIM_INFINITY).
pub const UNLIMITED: u64 = u64::MAX;

/// A limit's value: a number, a size with a binary or decimal unit ("64MiB", "1G"), or
/// "unlimited".
pub fn parse_limit(text: &str, size: bool) -> Result<u64, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinity") {
        return Ok(UNLIMITED);
    }
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| {
        format!("`{text}` is not a number, a size such as \"64MiB\", or \"unlimited\"")
    })?;
    let mult: u64 = match unit.trim() {
        "" => 1,
        _ if !size => {
            return Err(format!(
                "`{text}`: this limit is a count, not a size; write a plain number"
            ));
        }
        "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}`; use KiB, MiB, GiB or TiB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn human<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&duration::Secs(*d))
}

fn human_opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => human(d, s),
        None => s.serialize_none(),
    }
}

fn signal_name<S: Serializer>(sig: &Signal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(sig.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            name: "web".into(),
            replica: 1,
            host: "127.0.0.1".into(),
            port: Some(8080),
            state_dir: "/s".into(),
            pidfile: Some("/s/web.pid".into()),
        }
    }

    #[test]
    fn expands_every_placeholder_and_escapes() {
        let got = expand("{name}@{host}:{port} {state_dir} {pidfile} {{x}}", &vars()).unwrap();
        assert_eq!(got, "web@127.0.0.1:8080 /s /s/web.pid {x}");
    }

    #[test]
    fn unknown_or_unset_placeholders_are_errors() {
        assert!(
            expand("{nmae}", &vars())
                .unwrap_err()
                .contains("unknown placeholder `{nmae}`")
        );
        let no_port = Vars {
            port: None,
            ..vars()
        };
        assert!(
            expand("--port={port}", &no_port)
                .unwrap_err()
                .contains("no `port`")
        );
        assert!(expand("{name", &vars()).unwrap_err().contains("unclosed"));
    }

    #[test]
    fn service_names_are_lowercase_words() {
        assert!(ServiceName::new("socket_io2").is_ok());
        for bad in ["", "Web", "web-1", "a b", "ü"] {
            assert!(ServiceName::new(bad).is_err(), "{bad}");
        }
    }
}
