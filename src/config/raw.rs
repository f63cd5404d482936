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
    pub guardian: Option<RawGuardian>,
    /// Services to guard, by name (lowercase letters, digits and `_`).
    pub services: Option<BTreeMap<String, RawService>>,
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
    pub api: Option<RawApi>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// TCP address, e.g. "127.0.0.1:9090". The Unix socket {state_dir}/guardian.sock always exists.
    pub listen: Option<String>,
    /// Bearer token file: required for POST over TCP and for any non-loopback listen.
    pub token_file: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Program and arguments; placeholders {name} {host} {port} {state_dir} {pidfile}.
    pub command: Option<Vec<String>>,
    pub cwd: Option<String>,
    pub env: Option<BTreeMap<String, Text>>,
    /// Turns on the flat PREFIX_* environment overrides for this service.
    pub env_prefix: Option<String>,
    pub host: Option<Text>,
    pub port: Option<u16>,
    /// [first, last]: the first free port is used.
    pub port_range: Option<[u16; 2]>,
    pub pidfile: Option<String>,
    pub startup_timeout: Option<Secs>,
    pub shutdown_timeout: Option<Secs>,
    pub stop_signal: Option<String>,
    /// adopt | replace | fail
    pub on_orphan: Option<String>,
    pub autostart: Option<bool>,
    /// The service's own log level, passed to the child as PREFIX_LOG_LEVEL.
    pub log_level: Option<String>,
    pub log: Option<RawLog>,
    pub metrics: Option<RawMetrics>,
    pub identity: Option<RawIdentity>,
    pub backoff: Option<RawBackoff>,
    pub health: Option<RawHealth>,
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
    pub group: Option<String>,
    /// Octal, e.g. "027".
    pub umask: Option<Text>,
    /// dotenv files (KEY=VALUE, # comments, quotes, export KEY=..., ${VAR}), layered under `env`.
    pub env_file: Option<Vec<String>>,
    /// setrlimit before exec: nofile, nproc, core, memlock, stack, as; a number, a size such as
    /// "64MiB", or "unlimited".
    pub limits: Option<BTreeMap<String, Text>>,
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
    pub max_size_mb: Option<u64>,
    pub backup_count: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: Option<bool>,
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
    pub initial_delay: Option<Secs>,
    pub max_delay: Option<Secs>,
    pub factor: Option<f64>,
    pub jitter: Option<f64>,
    pub max_retries: Option<u32>,
    pub reset_after: Option<Secs>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub interval: Option<Secs>,
    pub timeout: Option<Secs>,
    pub unhealthy_threshold: Option<u32>,
    pub history_size: Option<u32>,
    pub aggregation_window: Option<Secs>,
    pub checks: Option<Vec<RawCheck>>,
    pub resources: Option<RawResources>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RawCheck {
    /// Connect to host:port.
    Tcp {},
    /// GET host:port + path.
    Http {
        path: Option<String>,
        expect_status: Option<u16>,
        /// The body must contain this text.
        body_contains: Option<String>,
    },
    /// Exit 0 = healthy; non-zero or timeout = critical.
    Exec { command: Vec<String> },
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    pub cpu_percent: Option<RawThreshold>,
    pub memory_mb: Option<RawThreshold>,
    pub file_descriptors: Option<RawThreshold>,
    pub threads: Option<RawThreshold>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawThreshold {
    pub warning: Option<f64>,
    pub critical: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRecovery {
    pub enabled: Option<bool>,
    pub warning_threshold: Option<u32>,
    pub critical_threshold: Option<u32>,
    pub failure_window: Option<Secs>,
    pub min_recovery_interval: Option<Secs>,
    pub clear_connections: Option<RawClearConnections>,
    pub circuit_breaker: Option<RawBreaker>,
}

/// Exactly one of `http`, `signal` or `command`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawClearConnections {
    pub http: Option<RawHttpAction>,
    pub signal: Option<String>,
    pub command: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawHttpAction {
    pub method: Option<String>,
    pub path: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub failure_threshold: Option<u32>,
    pub open_timeout: Option<Secs>,
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
