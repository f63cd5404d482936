//! One service's own keys: command, host and ports, sockets, env, lifecycle, identity,
//! dependencies, replicas (each instance's name, port, PID file, log and metrics file).

use super::*;

pub(super) fn service(
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
            let hint = crate::config::suggest::nearest(&key, Limit::NAMES)
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

    let backoff = recovery::backoff(c, &name, rs.backoff.unwrap_or_default());
    let health = recovery::health(c, &name, rs.health.unwrap_or_default(), port.is_some());
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
    let recovery = recovery::recovery(c, &name, rs.recovery.unwrap_or_default(), port.is_some());

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
