//! The serde mirror of a config file: every field optional so that layers can merge, unknown
//! keys refused. Pure: no IO. Defaults and meaning live in `validate.rs`.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::duration::Secs;

/// A whole config file, or the merge of every layer.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "guardian config",
    description = "guardian.toml / guardian.json"
)]
pub struct RawConfig {
    /// The JSON Schema an editor checks this file against (VS Code and others read it);
    /// guardian ignores it.
    #[serde(rename = "$schema")]
    pub schema: Option<String>,
    /// guardian's own settings.
    pub guardian: Option<RawGuardian>,
    /// Services to guard, by name (lowercase letters, digits and `_`).
    pub services: Option<BTreeMap<String, RawService>>,
    /// Where alerts go (SPEC §15): sinks by name, each a webhook or a command.
    pub alerts: Option<BTreeMap<String, RawAlert>>,
}

/// One alert sink.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    /// POST each alert here: http:// or https:// (the system's CA roots, or `ca_file`).
    pub webhook: Option<String>,
    /// Instead of a webhook: run this command with the alert as JSON on stdin and
    /// GUARDIAN_ALERT_EVENT, GUARDIAN_ALERT_SERVICE, GUARDIAN_ALERT_MESSAGE set.
    pub exec: Option<Vec<String>>,
    /// The webhook's body: "json" (default), "slack" ({"text": …}) or "alertmanager" (an
    /// Alertmanager /api/v2/alerts list; `recovered` resolves what it recovers from).
    pub format: Option<String>,
    /// failed, breaker_open, breaker_closed, unhealthy, recovered, watchdog, restarted,
    /// reload_refused, guardian_started, guardian_stopping. Default: every one but restarted.
    pub events: Option<Vec<String>>,
    /// Only these services (guardian's own events always pass). Default: every service.
    pub services: Option<Vec<String>>,
    /// A key file (owner-only, as the API's token file): each body is signed with
    /// X-Guardian-Signature: sha256=HEX, its HMAC-SHA256.
    pub secret_file: Option<String>,
    /// CA certificates (PEM) for an https webhook, instead of the system's roots.
    pub ca_file: Option<String>,
    /// The same (service, event) at most once in this window; the next one says how many
    /// were held back. Default: 10m.
    pub repeat_after: Option<Secs>,
    /// Each delivery attempt's limit (3 retries with backoff follow a failure). Default: 5s.
    pub timeout: Option<Secs>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawGuardian {
    /// Default: $XDG_RUNTIME_DIR/guardian, else /tmp/guardian-$UID.
    pub state_dir: Option<String>,
    /// trace | debug | info | warn | error
    pub log_level: Option<String>,
    /// text | json
    pub log_format: Option<String>,
    /// Reload when a config file changes. Default: true.
    pub watch_config: Option<bool>,
    /// false: services outlive the guardian and are adopted by the next one. Default: true.
    pub stop_services_on_exit: Option<bool>,
    /// Default: {state_dir}/metrics.json
    pub metrics_file: Option<String>,
    /// Default: {state_dir}/events.jsonl
    pub events_file: Option<String>,
    /// The events file is rotated past this size (MiB). Default: 10.
    pub events_max_size_mb: Option<u64>,
    /// Rotated events files kept (events.jsonl.1 …). Default: 3.
    pub events_backup_count: Option<u32>,
    /// Pass every line a service writes to guardian's stdout/stderr, prefixed `NAME | `.
    /// Default: true.
    pub echo: Option<bool>,
    /// The HTTP API on TCP (the Unix socket always exists).
    pub api: Option<RawApi>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// TCP address, e.g. "127.0.0.1:9090". The Unix socket {state_dir}/guardian.sock always exists.
    pub listen: Option<String>,
    /// Bearer token file: required for POST over TCP and for any non-loopback listen.
    pub token_file: Option<String>,
    /// PEM certificate chain: serve the TCP API over TLS (with tls_key).
    pub tls_cert: Option<String>,
    /// PEM private key of tls_cert; readable by its owner only.
    pub tls_key: Option<String>,
    /// Serve plain HTTP off loopback anyway (the token travels in clear). Default: false.
    pub allow_plaintext: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Program and arguments; placeholders {name} {host} {port} {state_dir} {pidfile} {replica}.
    pub command: Option<Vec<String>>,
    /// Working directory; relative to where guardian was started. Default: guardian's own.
    pub cwd: Option<String>,
    /// Variables for the service, on top of guardian's environment and `env_file`; values take placeholders.
    pub env: Option<BTreeMap<String, Text>>,
    /// When a started instance counts as ready: "port" (its port accepts), "healthy" (its
    /// first healthy round), "notify" (it sends READY=1 to $NOTIFY_SOCKET, the systemd
    /// protocol), "log:REGEX" (its first output line that matches), "started" (at once).
    /// Default: port with a port, else healthy with checks, else started.
    pub ready: Option<String>,
    /// Once ready, the service must send WATCHDOG=1 to $NOTIFY_SOCKET at least this often
    /// (it gets WATCHDOG_USEC and WATCHDOG_PID); a missed ping is a critical result with the
    /// reason `watchdog`, and the recovery ladder acts on it. At least 100ms.
    pub watchdog: Option<Secs>,
    /// When this service is failed, or ends and will not be restarted, guardian stops every
    /// service and exits with its exit code (128 + signal): a container's entry point.
    pub essential: Option<bool>,
    /// How `guardian restart`, a reload that changes how it starts and each step of a rolling
    /// restart replace a running instance: "stop-first" (default) or "start-first" (the new
    /// one first; the old one is stopped once the new one is ready, and drains for its
    /// shutdown_timeout). start-first needs `sockets` and ready = "notify".
    pub restart_strategy: Option<String>,
    /// Listening sockets guardian binds and holds for the service's whole life, passed to it
    /// with the systemd protocol (fds 3…, LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES):
    /// NAME = "tcp://HOST:PORT" | "tcp://[::1]:PORT" | "unix:///path". A restart refuses no
    /// connection: they wait in the backlog.
    pub sockets: Option<BTreeMap<String, String>>,
    /// Keys of `env` or `env_file` whose values are not secret: they show in events,
    /// `/status` and `validate --print`. Every other value is masked as `***`.
    pub public_env: Option<Vec<String>>,
    /// Turns on the flat PREFIX_* environment overrides for this service.
    pub env_prefix: Option<String>,
    /// The address the service listens on, for `{host}`, readiness and checks. Default: 127.0.0.1.
    pub host: Option<Text>,
    /// The port the service listens on (replica K: port + K - 1). Ready when it accepts.
    pub port: Option<u16>,
    /// [first, last]: the first free port is used.
    pub port_range: Option<[u16; 2]>,
    /// Default: {state_dir}/{name}.pid (JSON, locked while the service runs).
    pub pidfile: Option<String>,
    /// From spawn to ready; past it the process group is killed and the start counts as failed. Default: 30s.
    pub startup_timeout: Option<Secs>,
    /// From stop_signal to SIGKILL of the process group. Default: 10s.
    pub shutdown_timeout: Option<Secs>,
    /// Sent to the process group to stop it. Default: SIGTERM.
    pub stop_signal: Option<String>,
    /// adopt | replace | fail
    pub on_orphan: Option<String>,
    /// Start with guardian. Default: true.
    pub autostart: Option<bool>,
    /// The service's own log level, passed to the child as PREFIX_LOG_LEVEL.
    pub log_level: Option<String>,
    /// stdout/stderr to {state_dir}/logs/{name}.log, rotated by size.
    pub log: Option<RawLog>,
    /// A flat metrics file for this service.
    pub metrics: Option<RawMetrics>,
    /// How a PID is proven to be this service before guardian touches it.
    pub identity: Option<RawIdentity>,
    /// Restart delays after an exit.
    pub backoff: Option<RawBackoff>,
    /// Health checks and resource thresholds.
    pub health: Option<RawHealth>,
    /// Graduated recovery driven by health, behind a circuit breaker.
    pub recovery: Option<RawRecovery>,
    /// always (default) | on-failure | no: whether an exit is followed by a restart.
    pub restart: Option<String>,
    /// Services this one waits for, with a condition each: started | ready | healthy |
    /// completed. Short form `{ db = "healthy" }`, long form
    /// `{ db = { condition = "healthy", restart = true } }`.
    pub depends_on: Option<BTreeMap<String, RawDependency>>,
    /// Instances NAME.1 … NAME.N, each with its own port, PID file and log. Default: 1.
    pub replicas: Option<u32>,
    /// Run as this user (and its primary group unless `group` is set). guardian must be root.
    pub user: Option<String>,
    /// Run with this group. Default: the user's primary group.
    pub group: Option<String>,
    /// Octal, e.g. "027".
    pub umask: Option<Text>,
    /// dotenv files (KEY=VALUE, # comments, quotes, export KEY=..., ${VAR}), layered under `env`.
    pub env_file: Option<Vec<String>>,
    /// setrlimit before exec: nofile, nproc, core, memlock, stack, as; a number, a size such as
    /// "64MiB", or "unlimited".
    pub limits: Option<BTreeMap<String, Text>>,
    /// The container image for `guardian export kubernetes` (overrides --image). Not used
    /// by `guardian run`.
    pub image: Option<String>,
}

/// One `depends_on` entry: a condition name, or `{ condition, restart }`.
#[derive(Clone, Debug, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum RawDependency {
    Condition(String),
    Long(RawDependencyLong),
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawDependencyLong {
    /// started | ready | healthy | completed. Default: started.
    pub condition: Option<String>,
    /// Restart this service after the dependency restarts. Default: false.
    pub restart: Option<bool>,
}

impl<'de> Deserialize<'de> for RawDependency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DepVisitor;
        impl<'de> Visitor<'de> for DepVisitor {
            type Value = RawDependency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a condition (\"started\", \"ready\", \"healthy\", \"completed\") or { condition = \"…\", restart = true }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDependency, E> {
                Ok(RawDependency::Condition(v.to_owned()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawDependency, A::Error> {
                RawDependencyLong::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawDependency::Long)
            }
        }
        deserializer.deserialize_any(DepVisitor)
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// Rotate past this size (MiB). Default: 50.
    pub max_size_mb: Option<u64>,
    /// Rotated files kept (NAME.log.1 …). Default: 5.
    pub backup_count: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Write the metrics file. Default: false.
    pub enabled: Option<bool>,
    /// Default: {state_dir}/{name}-metrics.json
    pub file: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// Substrings of the command line; default: the command's program name.
    pub patterns: Option<Vec<String>>,
    /// The process or a descendant must be the one listening on the port.
    pub match_port: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    /// The first restart delay. Default: 1s.
    pub initial_delay: Option<Secs>,
    /// The cap of the delay. Default: 60s.
    pub max_delay: Option<Secs>,
    /// Each delay is the last times this (at least 1.0). Default: 2.0.
    pub factor: Option<f64>,
    /// ± this fraction of each delay, at random (0 to 1). Default: 0.1.
    pub jitter: Option<f64>,
    /// Consecutive failed starts before the service is `failed`. Default: 10.
    pub max_retries: Option<u32>,
    /// A run this long counts as a success and resets the count. Default: 60s.
    pub reset_after: Option<Secs>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// Time between rounds of checks (rounds never overlap). Default: 30s.
    pub interval: Option<Secs>,
    /// Each check's time limit (may exceed the interval). Default: min(5s, interval).
    pub timeout: Option<Secs>,
    /// Consecutive critical rounds before the service is critical. Default: 3.
    pub unhealthy_threshold: Option<u32>,
    /// Results kept for the aggregate. Default: 100.
    pub history_size: Option<u32>,
    /// The window of the aggregate shown by /health. Default: 5m.
    pub aggregation_window: Option<Secs>,
    /// tcp, http or exec checks; a round's result is its worst check.
    pub checks: Option<Vec<RawCheck>>,
    /// Thresholds over the whole process tree of the service.
    pub resources: Option<RawResources>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RawCheck {
    /// Connect to host:port.
    Tcp {},
    /// GET host:port + path.
    Http {
        /// Default: /health
        path: Option<String>,
        /// Default: 200
        expect_status: Option<u16>,
        /// The body must contain this text.
        body_contains: Option<String>,
    },
    /// Exit 0 = healthy; non-zero or timeout = critical.
    Exec {
        /// Program and arguments, run in its own process group and killed at the timeout.
        command: Vec<String>,
    },
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    /// Percent of one core.
    pub cpu_percent: Option<RawThreshold>,
    /// Resident memory, MiB.
    pub memory_mb: Option<RawThreshold>,
    /// Open file descriptors.
    pub file_descriptors: Option<RawThreshold>,
    /// Threads.
    pub threads: Option<RawThreshold>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawThreshold {
    /// At or above: warning.
    pub warning: Option<f64>,
    /// At or above: critical.
    pub critical: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRecovery {
    /// Act on health (false: report only). Default: true.
    pub enabled: Option<bool>,
    /// Warnings within failure_window before a step is taken. Default: 2.
    pub warning_threshold: Option<u32>,
    /// Critical results within failure_window before a step is taken. Default: 1.
    pub critical_threshold: Option<u32>,
    /// Default: 5m.
    pub failure_window: Option<Secs>,
    /// No two recovery steps closer than this. Default: 60s.
    pub min_recovery_interval: Option<Secs>,
    /// How to make the service drop its clients: http, signal or command.
    pub clear_connections: Option<RawClearConnections>,
    /// Stops recovery after repeated failed steps.
    pub circuit_breaker: Option<RawBreaker>,
}

/// Exactly one of `http`, `signal` or `command`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawClearConnections {
    /// An HTTP request to the service.
    pub http: Option<RawHttpAction>,
    /// A signal to the service's main process, e.g. SIGUSR1.
    pub signal: Option<String>,
    /// A command; exit 0 = done. Placeholders as in `command`.
    pub command: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawHttpAction {
    /// Default: POST.
    pub method: Option<String>,
    /// The request path, e.g. /admin/disconnect-all.
    pub path: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Failed recoveries before it opens. Default: 5.
    pub failure_threshold: Option<u32>,
    /// How long it stays open. Default: 5m.
    pub open_timeout: Option<Secs>,
    /// Successes in half-open before it closes. Default: 3.
    pub success_threshold: Option<u32>,
}

/// A string that also takes a bare number or boolean: the environment layer parses
/// `SOCKETIO_PORT=8765`-style values as TOML, so `FOO=12345` arrives as an integer
/// (CRATES.md pitfall 5).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[schemars(transparent)]
pub struct Text(pub String);

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}
