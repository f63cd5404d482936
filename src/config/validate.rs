//! RawConfig → Config: fills defaults and checks every rule, collecting all problems at once.
//! Pure: no IO; the caller passes where each key came from and the default state dir.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::duration::Secs;
use super::raw::*;
use super::*;

/// The most instances one service may have.
pub const MAX_REPLICAS: u32 = 1000;

/// A health check timeout left unset is `min(this, interval)` (SPEC §11).
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// One problem: the key path, where its value came from, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// Dotted key path, e.g. `services.web.backoff.factor`.
    pub key: String,
    /// The file, environment variable or flag that set the key, when known.
    pub origin: Option<String>,
    pub message: String,
    /// Where in its file the key is written, when it came from a file (filled by `load`).
    pub at: Option<super::report::Located>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.at {
            let text = super::report::render(at, &format!("`{}`: {}", self.key, self.message));
            return f.write_str(text.trim_end());
        }
        write!(f, "`{}`", self.key)?;
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one config, in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        if let [one] = &self.0[..]
            && one.at.is_some()
        {
            // One located problem reads like a compiler's: `FILE:L:C: error: …` first.
            return write!(
                f,
                "{one}\nfix it, then check again with `guardian validate`"
            );
        }
        writeln!(
            f,
            "{n} problem{} in the config:",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, e) in self.0.iter().enumerate() {
            if e.at.is_some() {
                writeln!(f, "{e}")?;
            } else {
                writeln!(f, "  {}. {e}", i + 1)?;
            }
        }
        write!(f, "fix them, then check again with `guardian validate`")
    }
}

impl std::error::Error for ValidationErrors {}

/// What validation needs from outside: the default state dir and where keys came from.
pub struct Context<'a> {
    pub default_state_dir: PathBuf,
    pub origin: &'a dyn Fn(&str) -> Option<String>,
}

pub(super) struct Check<'a> {
    errors: Vec<ValidationError>,
    ctx: &'a Context<'a>,
}

impl Check<'_> {
    pub(super) fn fail(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        let origin = (self.ctx.origin)(&key);
        self.errors.push(ValidationError {
            key,
            origin,
            message: message.into(),
            at: None,
        });
    }

    fn nonzero(&mut self, key: String, d: Duration) -> Duration {
        if d.is_zero() {
            self.fail(key, "must be greater than zero");
        }
        d
    }

    fn at_least_one(&mut self, key: String, n: u32) -> u32 {
        if n == 0 {
            self.fail(key, "must be at least 1");
        }
        n
    }

    fn template(&mut self, key: String, template: &str, vars: &Vars) {
        if let Err(e) = expand(template, vars) {
            self.fail(key, e);
        }
    }

    fn signal(&mut self, key: String, name: &str) -> Signal {
        let upper = name.trim().to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        Signal::from_str(&full).unwrap_or_else(|_| {
            self.fail(key, format!("`{name}` is not a signal; use a name such as SIGTERM, SIGINT, SIGQUIT or SIGUSR1"));
            Signal::SIGTERM
        })
    }
}

/// The defaults SPEC §2 names, for `validate --explain` and `init`.
pub const DEFAULT_HOST: &str = "127.0.0.1";

pub fn validate(raw: RawConfig, ctx: &Context<'_>) -> Result<Config, ValidationErrors> {
    let mut c = Check {
        errors: Vec::new(),
        ctx,
    };
    let g = raw.guardian.unwrap_or_default();

    let state_dir = match &g.state_dir {
        Some(s) if s.trim().is_empty() => {
            c.fail("guardian.state_dir", "must not be empty");
            ctx.default_state_dir.clone()
        }
        Some(s) => PathBuf::from(s),
        None => ctx.default_state_dir.clone(),
    };
    let sd = state_dir.display().to_string();
    let guardian_vars = Vars {
        state_dir: sd.clone(),
        ..Vars::default()
    };
    let guardian_path =
        |c: &mut Check, key: &str, value: &Option<String>, default: &str| -> PathBuf {
            let template = value.as_deref().unwrap_or(default);
            match expand(template, &guardian_vars) {
                Ok(p) => PathBuf::from(p),
                Err(_)
                    if template.contains("{name}")
                        || template.contains("{port}")
                        || template.contains("{host}") =>
                {
                    c.fail(key, "only `{state_dir}` can be used here");
                    PathBuf::new()
                }
                Err(e) => {
                    c.fail(key, e);
                    PathBuf::new()
                }
            }
        };
    let metrics_file = guardian_path(
        &mut c,
        "guardian.metrics_file",
        &g.metrics_file,
        "{state_dir}/metrics.json",
    );
    let events_file = guardian_path(
        &mut c,
        "guardian.events_file",
        &g.events_file,
        "{state_dir}/events.jsonl",
    );
    let events_max_size_mb = g.events_max_size_mb.unwrap_or(10);
    if events_max_size_mb == 0 {
        c.fail("guardian.events_max_size_mb", "must be at least 1");
    }

    let log_level = match g.log_level.as_deref() {
        None => LogLevel::Info,
        Some(s) => LogLevel::parse(s).unwrap_or_else(|| {
            c.fail(
                "guardian.log_level",
                format!(
                    "`{s}` is not a log level; use one of {}",
                    LogLevel::NAMES.join(", ")
                ),
            );
            LogLevel::Info
        }),
    };
    let log_format = match g.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(s) => {
            c.fail(
                "guardian.log_format",
                format!("`{s}` is not a log format; use `text` or `json`"),
            );
            LogFormat::Text
        }
    };

    let api = g.api.map(|a| {
        let listen = a.listen.as_deref().and_then(|l| match l.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                c.fail("guardian.api.listen", format!("`{l}` is not an address; write IP:PORT such as `127.0.0.1:9090`"));
                None
            }
        });
        let token_file = a.token_file.map(PathBuf::from);
        if let Some(addr) = listen
            && !addr.ip().is_loopback()
            && token_file.is_none()
        {
            c.fail(
                "guardian.api.listen",
                format!("`{addr}` is not a loopback address, so `guardian.api.token_file` is required; set it, or listen on 127.0.0.1"),
            );
        }
        let (tls_cert, tls_key) = (a.tls_cert.map(PathBuf::from), a.tls_key.map(PathBuf::from));
        match (&tls_cert, &tls_key) {
            (Some(_), None) => c.fail("guardian.api.tls_key", "is required with tls_cert: the certificate's private key (PEM)"),
            (None, Some(_)) => c.fail("guardian.api.tls_cert", "is required with tls_key: the certificate chain (PEM)"),
            _ => {}
        }
        let allow_plaintext = a.allow_plaintext.unwrap_or(false);
        // Asked only once the token is there: one missing piece at a time.
        if let Some(addr) = listen
            && !addr.ip().is_loopback()
            && token_file.is_some()
            && tls_cert.is_none()
            && !allow_plaintext
        {
            c.fail(
                "guardian.api.listen",
                format!("`{addr}` is not a loopback address, so the API needs TLS: set tls_cert and tls_key (openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj /CN=guardian -keyout key.pem -out cert.pem), or allow_plaintext = true to send the token in clear"),
            );
        }
        ApiSpec {
            listen,
            token_file,
            tls_cert,
            tls_key,
            allow_plaintext,
        }
    });

    let raw_services = raw.services.unwrap_or_default();
    if raw_services.is_empty() {
        c.fail("services", "no service is defined: add a `[services.NAME]` table with a `command` (run `guardian init` for a commented example)");
    }

    let mut services = BTreeMap::new();
    for (name, rs) in raw_services {
        let name = match ServiceName::new(&name) {
            Ok(n) => n,
            Err(e) => {
                c.fail(format!("services.{name}"), e);
                continue;
            }
        };
        if let Some(spec) = service(&mut c, name.clone(), rs, &state_dir) {
            services.insert(name, spec);
        }
    }
    cross_service(&mut c, &services);
    let names: Vec<&str> = services.keys().map(|n| n.as_str()).collect();
    let alerts = super::alerts::validate(&mut c, raw.alerts.unwrap_or_default(), &names);

    if !c.errors.is_empty() {
        return Err(ValidationErrors(c.errors));
    }
    Ok(Config {
        guardian: GuardianSpec {
            state_dir,
            log_level,
            log_format,
            watch_config: g.watch_config.unwrap_or(true),
            stop_services_on_exit: g.stop_services_on_exit.unwrap_or(true),
            metrics_file,
            events_file,
            events_max_size_mb,
            events_backup_count: g.events_backup_count.unwrap_or(3),
            echo: g.echo.unwrap_or(true),
            api,
        },
        services,
        alerts,
    })
}

fn service(
    c: &mut Check,
    name: ServiceName,
    rs: RawService,
    state_dir: &Path,
) -> Option<ServiceSpec> {
    let p = |k: &str| format!("services.{name}.{k}");
    let command = rs.command.unwrap_or_default();
    if command.is_empty() || command[0].trim().is_empty() {
        c.fail(p("command"), "is required and its first item must name a program, e.g. command = [\"python3\", \"server.py\"]");
    }
    let host = rs
        .host
        .map(|t| t.0)
        .unwrap_or_else(|| DEFAULT_HOST.to_owned());
    if host.trim().is_empty() {
        c.fail(p("host"), "must not be empty");
    }
    match (rs.port, rs.port_range) {
        (Some(_), Some(_)) => c.fail(
            p("port_range"),
            "set either `port` or `port_range`, not both",
        ),
        (Some(0), None) => c.fail(p("port"), "must be between 1 and 65535"),
        (None, Some([a, b])) if a == 0 || a > b => c.fail(
            p("port_range"),
            format!("[{a}, {b}] must be [first, last] with 1 <= first <= last"),
        ),
        _ => {}
    }
    let mut sockets = BTreeMap::new();
    for (sname, text) in rs.sockets.clone().unwrap_or_default() {
        let key = format!("{}.{sname}", p("sockets"));
        if sname.is_empty()
            || !sname
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.')
        {
            c.fail(key, "a socket name is letters, digits, `_`, `-` and `.` (it is passed in LISTEN_FDNAMES)");
            continue;
        }
        match Listen::parse(text.trim()) {
            Ok(l) => {
                sockets.insert(sname, l);
            }
            Err(e) => c.fail(key, e),
        }
    }
    if sockets.len() > MAX_SOCKETS {
        c.fail(
            p("sockets"),
            format!(
                "{} sockets; a service holds at most {MAX_SOCKETS}",
                sockets.len()
            ),
        );
    }
    if !sockets.is_empty() && rs.port_range.is_some() {
        c.fail(
            p("port_range"),
            "a service with `sockets` keeps its addresses (its replicas share them): remove port_range",
        );
    }
    // A service without `port` takes the port of its first tcp socket (SPEC §13).
    let socket_port = sockets.values().find_map(Listen::port);
    let port = rs.port.or(socket_port).or(rs.port_range.map(|r| r[0]));
    let shared = !sockets.is_empty();
    let replicas = rs.replicas.unwrap_or(1);
    if replicas == 0 || replicas > MAX_REPLICAS {
        c.fail(
            p("replicas"),
            format!("must be between 1 and {MAX_REPLICAS}"),
        );
    } else if let Some(first) = rs.port
        && !shared
        && u32::from(first) + replicas - 1 > u32::from(u16::MAX)
    {
        c.fail(
            p("port"),
            format!("{replicas} replicas take ports {first} to {}, past 65535; lower the port or the replicas", u32::from(first) + replicas - 1),
        );
    } else if let Some([a, b]) = rs.port_range
        && a <= b
        && u32::from(b - a) + 1 < replicas
    {
        c.fail(
            p("port_range"),
            format!(
                "[{a}, {b}] has {} ports for {replicas} replicas; widen it",
                b - a + 1
            ),
        );
    }
    let replicas = replicas.clamp(1, MAX_REPLICAS);
    let vars = Vars {
        replica: 1,
        name: name.to_string(),
        host: host.clone(),
        port,
        state_dir: state_dir.display().to_string(),
        pidfile: None,
    };

    let pidfile_template = rs
        .pidfile
        .unwrap_or_else(|| "{state_dir}/{name}.pid".to_owned());
    let pidfile_vars = Vars {
        port: rs.port.or(socket_port),
        ..vars.clone()
    };
    let pidfile = match expand(&pidfile_template, &pidfile_vars) {
        Ok(p) => PathBuf::from(p),
        Err(e) => {
            let hint = if rs.port_range.is_some() && pidfile_template.contains("{port}") {
                "a pidfile cannot use {port} with port_range: it must be known before a port is chosen".to_owned()
            } else {
                e
            };
            c.fail(p("pidfile"), hint);
            PathBuf::new()
        }
    };
    let vars = Vars {
        pidfile: Some(pidfile.display().to_string()),
        ..vars
    };
    for (i, arg) in command.iter().enumerate() {
        c.template(format!("{}[{i}]", p("command")), arg, &vars);
    }
    let env: BTreeMap<String, String> = rs
        .env
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in &env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            c.fail(
                format!("{}.{k}", p("env")),
                "is not a valid environment variable name",
            );
        }
        c.template(format!("{}.{k}", p("env")), v, &vars);
    }
    let restart_strategy = match rs.restart_strategy.as_deref() {
        None => RestartStrategy::StopFirst,
        Some(s) => RestartStrategy::parse(s).unwrap_or_else(|| {
            c.fail(
                p("restart_strategy"),
                format!("`{s}` is not one of: {}", RestartStrategy::NAMES.join(", ")),
            );
            RestartStrategy::StopFirst
        }),
    };
    let public_env = rs.public_env.unwrap_or_default();
    let has_env_file = rs.env_file.as_ref().is_some_and(|f| !f.is_empty());
    for (i, k) in public_env.iter().enumerate() {
        // An env_file's keys are known only once it is read (config::host).
        if !env.contains_key(k) && !has_env_file {
            let known: Vec<&str> = env.keys().map(String::as_str).collect();
            c.fail(
                format!("{}[{i}]", p("public_env")),
                format!(
                    "`{k}` is not a key of `env` (it has: {}); public_env names variables whose values may show",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
            );
        }
    }
    if let Some(prefix) = &rs.env_prefix {
        let ok = prefix
            .chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_uppercase())
            && prefix
                .chars()
                .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_');
        if !ok || prefix == "GUARDIAN" {
            c.fail(p("env_prefix"), format!("`{prefix}` must be upper case letters, digits and `_`, start with a letter, and not be GUARDIAN"));
        }
    }
    let log_level = rs.log_level.map(|l| {
        if LogLevel::parse(&l).is_none() {
            c.fail(
                p("log_level"),
                format!(
                    "`{l}` is not a log level; use one of {}",
                    LogLevel::NAMES.join(", ")
                ),
            );
        }
        l
    });

    let startup_timeout = c.nonzero(
        p("startup_timeout"),
        rs.startup_timeout.map_or(Duration::from_secs(30), |s| s.0),
    );
    let shutdown_timeout = c.nonzero(
        p("shutdown_timeout"),
        rs.shutdown_timeout.map_or(Duration::from_secs(10), |s| s.0),
    );
    let stop_signal = c.signal(
        p("stop_signal"),
        rs.stop_signal.as_deref().unwrap_or("SIGTERM"),
    );
    let on_orphan = match rs.on_orphan.as_deref() {
        None | Some("adopt") => OnOrphan::Adopt,
        Some("replace") => OnOrphan::Replace,
        Some("fail") => OnOrphan::Fail,
        Some(other) => {
            c.fail(
                p("on_orphan"),
                format!("`{other}` is not one of adopt, replace, fail"),
            );
            OnOrphan::Adopt
        }
    };

    let rl = rs.log.unwrap_or_default();
    let log = LogSpec {
        max_size_mb: rl.max_size_mb.unwrap_or(50),
        backup_count: rl.backup_count.unwrap_or(5),
        file: state_dir.join("logs").join(format!("{name}.log")),
    };
    if log.max_size_mb == 0 {
        c.fail(p("log.max_size_mb"), "must be at least 1");
    }
    let rm = rs.metrics.unwrap_or_default();
    let metrics_template = rm
        .file
        .unwrap_or_else(|| "{state_dir}/{name}-metrics.json".to_owned());
    let metrics = MetricsSpec {
        enabled: rm.enabled.unwrap_or(false),
        file: expand(&metrics_template, &vars)
            .map(PathBuf::from)
            .unwrap_or_else(|e| {
                c.fail(p("metrics.file"), e);
                PathBuf::new()
            }),
    };

    let ri = rs.identity.unwrap_or_default();
    let program = command.first().map(|prog| {
        let base = prog.rsplit('/').next().unwrap_or(prog);
        base.to_owned()
    });
    let patterns = ri.patterns.unwrap_or_else(|| program.into_iter().collect());
    if patterns.iter().any(|p| p.trim().is_empty()) {
        c.fail(
            p("identity.patterns"),
            "an empty pattern matches every process; remove it",
        );
    }
    let match_port = ri.match_port.unwrap_or(false);
    if match_port && port.is_none() {
        c.fail(
            p("identity.match_port"),
            "needs a `port` or `port_range` on the service",
        );
    }

    let restart = match rs.restart.as_deref() {
        None => RestartPolicy::Always,
        Some(r) => RestartPolicy::parse(r).unwrap_or_else(|| {
            c.fail(
                p("restart"),
                format!("`{r}` is not one of {}", RestartPolicy::NAMES.join(", ")),
            );
            RestartPolicy::Always
        }),
    };
    let mut depends_on = BTreeMap::new();
    for (dep, rd) in rs.depends_on.unwrap_or_default() {
        let key = format!("{}.{dep}", p("depends_on"));
        let (condition, restart) = match rd {
            RawDependency::Condition(c) => (Some(c), false),
            RawDependency::Long(l) => (l.condition, l.restart.unwrap_or(false)),
        };
        let condition = match condition.as_deref() {
            None => Condition::Started,
            Some(text) => Condition::parse(text).unwrap_or_else(|| {
                c.fail(
                    key.clone(),
                    format!(
                        "`{text}` is not a condition; use one of {}",
                        Condition::NAMES.join(", ")
                    ),
                );
                Condition::Started
            }),
        };
        match ServiceName::new(&dep) {
            Ok(dep) => {
                depends_on.insert(dep, Dependency { condition, restart });
            }
            Err(e) => c.fail(key, e),
        }
    }
    let instances = (1..=replicas)
        .map(|k| {
            let iname = if replicas == 1 {
                name.clone()
            } else {
                ServiceName::replica(&name, k)
            };
            let ivars = Vars {
                name: iname.to_string(),
                replica: k,
                // Replicas of a service with sockets share them (and their port).
                port: if shared {
                    port
                } else {
                    rs.port.map(|p| p + (k - 1) as u16)
                },
                ..vars.clone()
            };
            let ipidfile = expand(
                &pidfile_template,
                &Vars {
                    pidfile: None,
                    ..ivars.clone()
                },
            )
            .map_or_else(|_| pidfile.clone(), PathBuf::from);
            let ivars = Vars {
                pidfile: Some(ipidfile.display().to_string()),
                ..ivars
            };
            Instance {
                replica: k,
                port: ivars.port,
                pidfile: ipidfile,
                log_file: state_dir.join("logs").join(format!("{iname}.log")),
                metrics_file: expand(&metrics_template, &ivars)
                    .map_or_else(|_| metrics.file.clone(), PathBuf::from),
                name: iname,
            }
        })
        .collect();

    let umask = rs.umask.map(|u| {
        u32::from_str_radix(u.0.trim(), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .unwrap_or_else(|| {
                c.fail(
                    p("umask"),
                    format!(
                        "`{}` is not an octal mode between 000 and 777, e.g. \"027\"",
                        u.0
                    ),
                );
                0o022
            })
    });
    let mut limits = BTreeMap::new();
    for (key, value) in rs.limits.unwrap_or_default() {
        let Some(limit) = Limit::parse(&key) else {
            let hint = super::suggest::nearest(&key, Limit::NAMES)
                .map(|n| format!("did you mean `{n}`? "))
                .unwrap_or_default();
            c.fail(
                format!("{}.{key}", p("limits")),
                format!(
                    "unknown limit; {hint}the limits are {}",
                    Limit::NAMES.join(", ")
                ),
            );
            continue;
        };
        match parse_limit(&value.0, limit.is_size()) {
            Ok(v) => {
                limits.insert(limit, v);
            }
            Err(e) => c.fail(format!("{}.{key}", p("limits")), e),
        }
    }
    for (key, v) in [("user", &rs.user), ("group", &rs.group)] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            c.fail(
                p(key),
                "must not be empty; remove it to run as guardian's own user",
            );
        }
    }
    let env_file: Vec<PathBuf> = rs
        .env_file
        .unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .collect();

    let backoff = backoff(c, &name, rs.backoff.unwrap_or_default());
    let health = health(c, &name, rs.health.unwrap_or_default(), port.is_some());
    let ready = rs.ready.as_deref().and_then(|r| {
        let parsed = Readiness::parse(r);
        match &parsed {
            None => c.fail(p("ready"), format!("`{r}` is not one of: {}", Readiness::NAMES.join(", "))),
            Some(Readiness::Port) if port.is_none() || !sockets.is_empty() => c.fail(
                p("ready"),
                "port readiness needs a `port` the service binds itself (a held socket always accepts)",
            ),
            Some(Readiness::Healthy) if health.checks.is_empty() => {
                c.fail(p("ready"), "healthy readiness needs health checks")
            }
            Some(Readiness::Log(pattern)) => match regex::Regex::new(pattern) {
                Err(e) => c.fail(
                    p("ready"),
                    format!("the pattern after `log:` does not compile:\n{e}"),
                ),
                Ok(_) if pattern.is_empty() => c.fail(
                    p("ready"),
                    "`log:` needs a pattern, such as \"log:listening on\"",
                ),
                Ok(_) => {}
            },
            _ => {}
        }
        parsed
    });
    let watchdog = rs.watchdog.map(|s| s.0);
    if let Some(d) = watchdog
        && d < Duration::from_millis(100)
    {
        c.fail(
            p("watchdog"),
            format!(
                "{} is too short: the service pings from its own loop, so a watchdog under 100ms only measures the scheduler; use 100ms or more (systemd services often use 10s–30s)",
                crate::config::duration::Secs(d)
            ),
        );
    }
    let essential = rs.essential.unwrap_or(false);
    if essential && rs.autostart == Some(false) {
        c.fail(
            p("essential"),
            "an essential service must start with guardian (autostart = false would leave nothing to end); remove `autostart = false` or `essential`",
        );
    }
    if restart_strategy == RestartStrategy::StartFirst {
        if sockets.is_empty() {
            c.fail(
                p("restart_strategy"),
                "start-first needs `sockets`: the old and the new instance cannot both bind one port, so guardian must hold it",
            );
        } else if ready != Some(Readiness::Notify) {
            // Both instances share the held socket: a port or http check is answered by
            // whichever accepts, usually the old one, so only the new process can say it.
            c.fail(
                p("restart_strategy"),
                "start-first needs ready = \"notify\": while both instances share the socket, only the new process can say it is ready (READY=1 with sd_notify); a check would be answered by the old one",
            );
        }
    }
    let recovery = recovery(c, &name, rs.recovery.unwrap_or_default(), port.is_some());

    Some(ServiceSpec {
        command,
        cwd: rs.cwd.map(PathBuf::from),
        env,
        env_prefix: rs.env_prefix,
        host,
        port: rs.port.or(socket_port),
        port_range: rs.port_range,
        // With replicas each instance has its own; the service keeps the template, so that
        // `validate --print` gives a config that loads again.
        pidfile: if replicas > 1 {
            PathBuf::from(&pidfile_template)
        } else {
            pidfile
        },
        startup_timeout,
        shutdown_timeout,
        stop_signal,
        on_orphan,
        autostart: rs.autostart.unwrap_or(true),
        log_level,
        log,
        metrics,
        identity: IdentitySpec {
            patterns,
            match_port,
        },
        backoff,
        health,
        recovery,
        restart,
        ready,
        restart_strategy,
        watchdog,
        essential,
        depends_on,
        replicas,
        user: rs.user,
        unix_group: rs.group,
        umask,
        env_file,
        sockets,
        public_env,
        limits,
        image: rs.image.filter(|i| !i.trim().is_empty()),
        env_from_files: BTreeMap::new(),
        uid: None,
        gid: None,
        group: name.clone(),
        replica: 1,
        instances,
        name,
    })
}

fn backoff(c: &mut Check, name: &ServiceName, rb: RawBackoff) -> BackoffSpec {
    let p = |k: &str| format!("services.{name}.backoff.{k}");
    let b = BackoffSpec {
        initial_delay: rb.initial_delay.map_or(Duration::from_secs(1), |s| s.0),
        max_delay: rb.max_delay.map_or(Duration::from_secs(60), |s| s.0),
        factor: rb.factor.unwrap_or(2.0),
        jitter: rb.jitter.unwrap_or(0.1),
        max_retries: rb.max_retries.unwrap_or(10),
        reset_after: rb.reset_after.map_or(Duration::from_secs(60), |s| s.0),
    };
    if !(b.factor >= 1.0 && b.factor.is_finite()) {
        c.fail(
            p("factor"),
            format!(
                "must be at least 1.0 (got {}); 1.0 keeps every delay equal",
                b.factor
            ),
        );
    }
    if !(0.0..=1.0).contains(&b.jitter) {
        c.fail(
            p("jitter"),
            format!("must be a fraction between 0 and 1 (got {})", b.jitter),
        );
    }
    if b.initial_delay > b.max_delay {
        c.fail(
            p("initial_delay"),
            format!(
                "{} is longer than max_delay {}",
                Secs(b.initial_delay),
                Secs(b.max_delay)
            ),
        );
    }
    if b.reset_after.is_zero() {
        c.fail(p("reset_after"), "must be greater than zero");
    }
    b
}

fn health(c: &mut Check, name: &ServiceName, rh: RawHealth, has_port: bool) -> HealthSpec {
    let p = |k: &str| format!("services.{name}.health.{k}");
    let interval = c.nonzero(
        p("interval"),
        rh.interval.map_or(Duration::from_secs(30), |s| s.0),
    );
    // A timeout may exceed the interval: rounds never overlap (the next one starts at the later
    // of the interval and the end of the previous round). Unset, it is min(5s, interval).
    let timeout = c.nonzero(
        p("timeout"),
        rh.timeout
            .map_or(DEFAULT_CHECK_TIMEOUT.min(interval), |s| s.0),
    );
    let unhealthy_threshold = c.at_least_one(
        p("unhealthy_threshold"),
        rh.unhealthy_threshold.unwrap_or(3),
    );
    let history_size = c.at_least_one(p("history_size"), rh.history_size.unwrap_or(100));
    let aggregation_window = c.nonzero(
        p("aggregation_window"),
        rh.aggregation_window
            .map_or(Duration::from_secs(300), |s| s.0),
    );
    let mut checks = Vec::new();
    for (i, rc) in rh.checks.unwrap_or_default().into_iter().enumerate() {
        let key = format!("{}[{i}]", p("checks"));
        let needs_port = matches!(rc, RawCheck::Tcp {} | RawCheck::Http { .. });
        if needs_port && !has_port {
            c.fail(
                key.clone(),
                "a tcp or http check needs a `port` or `port_range` on the service",
            );
        }
        checks.push(match rc {
            RawCheck::Tcp {} => CheckSpec::Tcp {},
            RawCheck::Http {
                path,
                expect_status,
                body_contains,
            } => {
                let path = path.unwrap_or_else(|| "/health".to_owned());
                if !path.starts_with('/') {
                    c.fail(
                        format!("{key}.path"),
                        format!("`{path}` must start with `/`"),
                    );
                }
                let expect_status = expect_status.unwrap_or(200);
                if !(100..=599).contains(&expect_status) {
                    c.fail(
                        format!("{key}.expect_status"),
                        format!("{expect_status} is not an HTTP status (100 to 599)"),
                    );
                }
                CheckSpec::Http {
                    path,
                    expect_status,
                    body_contains,
                }
            }
            RawCheck::Exec { command } => {
                if command.first().is_none_or(|p| p.trim().is_empty()) {
                    c.fail(format!("{key}.command"), "must name a program");
                }
                CheckSpec::Exec { command }
            }
        });
    }
    let rr = rh.resources.unwrap_or_default();
    let threshold = |c: &mut Check, k: &str, t: Option<RawThreshold>| -> Option<Threshold> {
        let t = t?;
        let key = format!("{}.{k}", p("resources"));
        match (t.warning, t.critical) {
            (Some(w), Some(cr)) => {
                if !(w >= 0.0 && cr >= 0.0) {
                    c.fail(key, "thresholds cannot be negative");
                } else if w >= cr {
                    c.fail(key, format!("warning {w} must be below critical {cr}"));
                }
                Some(Threshold {
                    warning: w,
                    critical: cr,
                })
            }
            _ => {
                c.fail(
                    key,
                    "needs both `warning` and `critical`, e.g. { warning = 80.0, critical = 95.0 }",
                );
                None
            }
        }
    };
    let resources = ResourcesSpec {
        cpu_percent: threshold(c, "cpu_percent", rr.cpu_percent),
        memory_mb: threshold(c, "memory_mb", rr.memory_mb),
        file_descriptors: threshold(c, "file_descriptors", rr.file_descriptors),
        threads: threshold(c, "threads", rr.threads),
    };
    HealthSpec {
        interval,
        timeout,
        unhealthy_threshold,
        history_size,
        aggregation_window,
        checks,
        resources,
    }
}

fn recovery(c: &mut Check, name: &ServiceName, rr: RawRecovery, has_port: bool) -> RecoverySpec {
    let p = |k: &str| format!("services.{name}.recovery.{k}");
    let clear_connections = rr.clear_connections.and_then(|cc| {
        let key = p("clear_connections");
        match (cc.http, cc.signal, cc.command) {
            (Some(h), None, None) => {
                if !has_port {
                    c.fail(
                        key.clone(),
                        "`http` needs a `port` or `port_range` on the service",
                    );
                }
                let method = h
                    .method
                    .unwrap_or_else(|| "POST".to_owned())
                    .to_ascii_uppercase();
                if !["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&method.as_str()) {
                    c.fail(
                        format!("{key}.http.method"),
                        format!("`{method}` is not GET, POST, PUT, DELETE or PATCH"),
                    );
                }
                let path = h.path.unwrap_or_else(|| "/admin/disconnect-all".to_owned());
                if !path.starts_with('/') {
                    c.fail(
                        format!("{key}.http.path"),
                        format!("`{path}` must start with `/`"),
                    );
                }
                Some(ClearConnections::Http { method, path })
            }
            (None, Some(s), None) => Some(ClearConnections::Signal(
                c.signal(format!("{key}.signal"), &s),
            )),
            (None, None, Some(cmd)) => {
                if cmd.first().is_none_or(|p| p.trim().is_empty()) {
                    c.fail(format!("{key}.command"), "must name a program");
                }
                Some(ClearConnections::Command(cmd))
            }
            _ => {
                c.fail(key, "set exactly one of `http`, `signal` or `command`");
                None
            }
        }
    });
    let rb = rr.circuit_breaker.unwrap_or_default();
    let circuit_breaker = BreakerSpec {
        failure_threshold: c.at_least_one(
            p("circuit_breaker.failure_threshold"),
            rb.failure_threshold.unwrap_or(5),
        ),
        open_timeout: c.nonzero(
            p("circuit_breaker.open_timeout"),
            rb.open_timeout.map_or(Duration::from_secs(300), |s| s.0),
        ),
        success_threshold: c.at_least_one(
            p("circuit_breaker.success_threshold"),
            rb.success_threshold.unwrap_or(3),
        ),
    };
    RecoverySpec {
        enabled: rr.enabled.unwrap_or(true),
        warning_threshold: c
            .at_least_one(p("warning_threshold"), rr.warning_threshold.unwrap_or(2)),
        critical_threshold: c
            .at_least_one(p("critical_threshold"), rr.critical_threshold.unwrap_or(1)),
        failure_window: c.nonzero(
            p("failure_window"),
            rr.failure_window.map_or(Duration::from_secs(300), |s| s.0),
        ),
        min_recovery_interval: rr
            .min_recovery_interval
            .map_or(Duration::from_secs(60), |s| s.0),
        clear_connections,
        circuit_breaker,
    }
}

/// Rules between services: ports, PID files and env prefixes must not collide (across every
/// instance), and dependencies must name services, not form a cycle, and ask `completed` only
/// of a service that can complete.
fn cross_service(c: &mut Check, services: &BTreeMap<ServiceName, ServiceSpec>) {
    let mut ports: HashMap<u16, &ServiceName> = HashMap::new();
    let mut pidfiles: HashMap<&Path, &ServiceName> = HashMap::new();
    let mut prefixes: HashMap<&str, &ServiceName> = HashMap::new();
    for (name, s) in services {
        // Replicas of a service with sockets share its port (SPEC §13): one entry for all.
        let shared = !s.sockets.is_empty();
        for i in s.instances.iter().take(if shared { 1 } else { usize::MAX }) {
            if let Some(port) = i.port
                && let Some(other) = ports.insert(port, &i.name)
            {
                let of = if i.name == *name {
                    String::new()
                } else {
                    format!(" (of `{}`)", i.name)
                };
                c.fail(format!("services.{name}.port"), format!("port {port}{of} is also the port of service `{other}`; give each service its own port"));
            }
            if let Some(other) = pidfiles.insert(&i.pidfile, &i.name) {
                c.fail(
                    format!("services.{name}.pidfile"),
                    format!(
                        "{} (of `{}`) is also the pidfile of `{other}`; with replicas, put {{name}} or {{replica}} in it",
                        i.pidfile.display(),
                        i.name
                    ),
                );
            }
        }
        if let Some(prefix) = &s.env_prefix
            && let Some(other) = prefixes.insert(prefix, name)
        {
            c.fail(
                format!("services.{name}.env_prefix"),
                format!("`{prefix}` is also the env_prefix of service `{other}`"),
            );
        }
    }
    // Two services cannot hold one address (nor one port on a wildcard and a specific IP).
    let mut held: Vec<(&Listen, &ServiceName, &str)> = Vec::new();
    for (name, s) in services {
        for (sname, l) in &s.sockets {
            let clash = held.iter().find(|(o, _, _)| match (l, o) {
                (Listen::Tcp(a), Listen::Tcp(b)) => {
                    a.port() == b.port()
                        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
                }
                _ => l == *o,
            });
            if let Some((_, other, other_socket)) = clash {
                c.fail(
                    format!("services.{name}.sockets.{sname}"),
                    format!("`{l}` is also held for service `{other}` (sockets.{other_socket}); one address, one service"),
                );
            }
            held.push((l, name, sname));
        }
    }
    for (name, s) in services {
        if let Some([a, b]) = s.port_range {
            for (port, other) in &ports {
                if (a..=b).contains(port) {
                    c.fail(
                        format!("services.{name}.port_range"),
                        format!("[{a}, {b}] contains port {port} of service `{other}`"),
                    );
                }
            }
        }
    }
    let names: Vec<&str> = services.keys().map(ServiceName::as_str).collect();
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, s) in services {
        for (dep, d) in &s.depends_on {
            let key = format!("services.{name}.depends_on.{dep}");
            if dep == name {
                c.fail(key, "a service cannot depend on itself; remove this entry");
                continue;
            }
            let Some(target) = services.get(dep) else {
                let hint = super::suggest::nearest(dep.as_str(), &names)
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                c.fail(
                    key,
                    format!(
                        "there is no service `{dep}`{hint} (services: {})",
                        names.join(", ")
                    ),
                );
                continue;
            };
            if d.condition == Condition::Completed && target.restart == RestartPolicy::Always {
                c.fail(
                    key,
                    format!("`{dep}` has restart = \"always\", so it never completes; give it restart = \"no\" or \"on-failure\", or wait for \"ready\" or \"healthy\""),
                );
            }
            graph.entry(name.as_str()).or_default().push(dep.as_str());
        }
        graph.entry(name.as_str()).or_default();
    }
    if let Some(cycle) = super::graph::find_cycle(&graph) {
        c.fail(
            format!("services.{}.depends_on", cycle[0]),
            format!(
                "dependency cycle: {}; no service of it could ever start. Remove one of these dependencies",
                cycle.join(" → ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> Result<Config, ValidationErrors> {
        let raw: RawConfig = toml::from_str(toml_text).expect("test toml parses");
        let origin = |_: &str| Some("test.toml".to_owned());
        validate(
            raw,
            &Context {
                default_state_dir: "/state".into(),
                origin: &origin,
            },
        )
    }

    fn errors(toml_text: &str) -> Vec<String> {
        check(toml_text)
            .expect_err("config should be invalid")
            .0
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn minimal_service_gets_every_default() {
        let cfg = check(
            "[services.web]\ncommand = [\"/usr/bin/web\", \"--port\", \"{port}\"]\nport = 8080",
        )
        .unwrap();
        assert_eq!(cfg.guardian.state_dir, PathBuf::from("/state"));
        assert_eq!(
            cfg.guardian.events_file,
            PathBuf::from("/state/events.jsonl")
        );
        let web = &cfg.services[&ServiceName::new("web").unwrap()];
        assert_eq!(web.pidfile, PathBuf::from("/state/web.pid"));
        assert_eq!(web.identity.patterns, vec!["web".to_owned()]);
        assert_eq!(web.backoff.max_retries, 10);
        assert_eq!(web.backoff.initial_delay, Duration::from_secs(1));
        assert_eq!(web.health.interval, Duration::from_secs(30));
        assert_eq!(
            web.recovery.circuit_breaker.open_timeout,
            Duration::from_secs(300)
        );
        assert_eq!(web.stop_signal, Signal::SIGTERM);
        assert_eq!(web.on_orphan, OnOrphan::Adopt);
        assert_eq!(web.log.file, PathBuf::from("/state/logs/web.log"));
    }

    #[test]
    fn health_timeout_defaults_to_the_shorter_of_5s_and_the_interval() {
        let table = [
            // (interval, timeout, expected timeout)
            ("interval = \"500ms\"", Duration::from_millis(500)),
            ("interval = \"30s\"", Duration::from_secs(5)),
            (
                "interval = \"1s\"\ntimeout = \"10s\"",
                Duration::from_secs(10),
            ),
            (
                "interval = \"5s\"\ntimeout = \"5s\"",
                Duration::from_secs(5),
            ),
        ];
        for (health, want) in table {
            let cfg = check(&format!(
                "[services.web]\ncommand = [\"web\"]\n[services.web.health]\n{health}"
            ))
            .unwrap_or_else(|e| panic!("{health:?} should be valid: {e}"));
            let web = &cfg.services[&ServiceName::new("web").unwrap()];
            assert_eq!(web.health.timeout, want, "{health:?}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errs = errors(
            r#"
[guardian.api]
listen = "0.0.0.0:9090"
[services.a]
command = []
port = 80
port_range = [90, 80]
[services.a.backoff]
factor = 0.5
jitter = 1.5
[services.a.health]
interval = "5s"
timeout = "5s"
[services.a.health.resources]
cpu_percent = { warning = 95.0, critical = 80.0 }
[services.b]
command = ["b", "{nope}"]
port = 80
[services.b.health]
interval = 0
"#,
        );
        let want = [
            "`guardian.api.listen` (from test.toml): `0.0.0.0:9090` is not a loopback address",
            "`services.a.command` (from test.toml): is required",
            "`services.a.port_range` (from test.toml): set either `port` or `port_range`",
            "`services.a.backoff.factor` (from test.toml): must be at least 1.0 (got 0.5)",
            "`services.a.backoff.jitter` (from test.toml): must be a fraction between 0 and 1",
            "`services.a.health.resources.cpu_percent` (from test.toml): warning 95 must be below critical 80",
            "`services.b.command[1]` (from test.toml): unknown placeholder `{nope}`",
            "`services.b.health.interval` (from test.toml): must be greater than zero",
            "`services.b.port` (from test.toml): port 80 is also the port of service `a`",
        ];
        for w in want {
            assert!(
                errs.iter().any(|e| e.starts_with(w)),
                "missing {w:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn replicas_get_their_own_name_port_pidfile_and_log() {
        let cfg = check(
            "[services.api]\ncommand=[\"x\", \"--id={replica}\"]\nport=9000\nreplicas=3\ndepends_on={ db = { condition = \"healthy\", restart = true } }\n[services.db]\ncommand=[\"x\"]",
        )
        .unwrap();
        let api: Vec<ServiceSpec> = cfg.resolve("api");
        let names: Vec<&str> = api.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api.1", "api.2", "api.3"]);
        let ports: Vec<Option<u16>> = api.iter().map(|s| s.port).collect();
        assert_eq!(ports, [Some(9000), Some(9001), Some(9002)]);
        assert!(
            api[1].pidfile.ends_with("api.2.pid"),
            "{:?}",
            api[1].pidfile
        );
        assert!(api[2].log.file.ends_with("logs/api.3.log"));
        assert_eq!(api[1].replica, 2);
        assert_eq!(api[1].group.as_str(), "api");
        let dep = api[0].depends_on[&ServiceName::new("db").unwrap()];
        assert_eq!(dep.condition, Condition::Healthy);
        assert!(dep.restart);
        assert_eq!(cfg.resolve("api.2").len(), 1);
        assert_eq!(cfg.resolve("db")[0].name.as_str(), "db");
        assert!(cfg.resolve("nope").is_empty());
    }

    #[test]
    fn table_of_single_mistakes() {
        let table: &[(&str, &str)] = &[
            ("", "`services` (from test.toml): no service is defined"),
            (
                "[services.Web]\ncommand=[\"x\"]",
                "service name `Web` must be",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\nport=0",
                "`services.w.port` (from test.toml): must be between 1 and 65535",
            ),
            (
                "[services.api]\ncommand=[\"x\"]\ndepends_on={ dbb = \"ready\" }\n[services.db]\ncommand=[\"x\"]",
                "`services.api.depends_on.dbb` (from test.toml): there is no service `dbb`; did you mean `db`?",
            ),
            (
                "[services.api]\ncommand=[\"x\"]\ndepends_on={ api = \"ready\" }",
                "`services.api.depends_on.api` (from test.toml): a service cannot depend on itself",
            ),
            (
                "[services.api]\ncommand=[\"x\"]\ndepends_on={ cache = \"ready\" }\n[services.cache]\ncommand=[\"x\"]\ndepends_on={ api = \"started\" }",
                "`services.api.depends_on` (from test.toml): dependency cycle: api → cache → api",
            ),
            (
                "[services.api]\ncommand=[\"x\"]\ndepends_on={ m = \"completed\" }\n[services.m]\ncommand=[\"x\"]",
                "`services.api.depends_on.m` (from test.toml): `m` has restart = \"always\", so it never completes",
            ),
            (
                "[services.api]\ncommand=[\"x\"]\ndepends_on={ m = { condition = \"done\" } }\n[services.m]\ncommand=[\"x\"]",
                "`done` is not a condition; use one of started, ready, healthy, completed",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\nrestart=\"sometimes\"",
                "`services.w.restart` (from test.toml): `sometimes` is not one of always, on-failure, no",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\nreplicas=0",
                "`services.w.replicas` (from test.toml): must be between 1 and 1000",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\nreplicas=3\nport_range=[9000,9001]",
                "[9000, 9001] has 2 ports for 3 replicas",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\nreplicas=2\npidfile=\"/tmp/w.pid\"",
                "put {name} or {replica} in it",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\nreplicas=2\nport=9000\n[services.v]\ncommand=[\"x\"]\nport=9001",
                "port 9001 (of `w.2`) is also the port of service `v`",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\nstop_signal=\"SIGNOPE\"",
                "`SIGNOPE` is not a signal",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\non_orphan=\"keep\"",
                "`keep` is not one of adopt, replace, fail",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\n[services.w.health]\nchecks=[{kind=\"tcp\"}]",
                "a tcp or http check needs a `port`",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\nport_range=[1,5]\npidfile=\"/p/{port}.pid\"",
                "a pidfile cannot use {port} with port_range",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\n[services.w.backoff]\ninitial_delay=\"2m\"",
                "2m is longer than max_delay 1m",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\nport=5\n[services.w.recovery.clear_connections]\nsignal=\"SIGUSR1\"\ncommand=[\"y\"]",
                "set exactly one of",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\nenv_prefix=\"lower\"",
                "`lower` must be upper case",
            ),
            (
                "[guardian]\nlog_level=\"loud\"\n[services.w]\ncommand=[\"x\"]",
                "`loud` is not a log level",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\n[services.w.recovery.circuit_breaker]\nsuccess_threshold=0",
                "success_threshold` (from test.toml): must be at least 1",
            ),
            (
                "[services.w]\ncommand=[\"x\"]\nport=5\n[services.v]\ncommand=[\"y\"]\nport_range=[1,10]",
                "[1, 10] contains port 5 of service `w`",
            ),
        ];
        for (text, want) in table {
            let errs = errors(text);
            assert!(
                errs.iter().any(|e| e.contains(want)),
                "{text:?}: missing {want:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn signals_accept_short_names() {
        let cfg = check("[services.w]\ncommand=[\"x\"]\nstop_signal=\"int\"").unwrap();
        assert_eq!(
            cfg.services.values().next().unwrap().stop_signal,
            Signal::SIGINT
        );
    }
}
