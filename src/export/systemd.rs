//! `guardian export systemd`: one unit per service, a template unit per replicated service.
//! Pure: the config and a resolver for program paths in, unit files out.

use std::fmt::Write;

use super::{ExportError, Unit, lost, resolve_program};
use crate::config::{CheckSpec, Condition, Config, Limit, RestartPolicy, ServiceSpec, UNLIMITED};
use crate::config::{Vars, duration::Secs, expand};

/// `%` is a specifier and `$` a variable reference in ExecStart: both are doubled. An argument
/// with a space, a quote or a backslash is double-quoted with C escapes.
pub fn escape_exec_arg(arg: &str) -> String {
    let doubled = arg.replace('%', "%%").replace('$', "$$");
    if !doubled.is_empty()
        && !doubled
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        return doubled;
    }
    let mut out = String::from("\"");
    for c in doubled.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            other => out.push(other),
        }
    }
    out.push('"');
    out
}

/// One `Environment=` assignment: quoted, `%` doubled (systemd does not expand `$` there).
fn env_line(key: &str, value: &str) -> String {
    let kv = format!("{key}={value}")
        .replace('%', "%%")
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!("Environment=\"{kv}\"")
}

fn unit_name(group: &str, replicated: bool) -> String {
    if replicated {
        format!("guardian-{group}@.service")
    } else {
        format!("guardian-{group}.service")
    }
}

/// The units of the chosen services (all when `only` is empty), in name order.
pub fn export(
    config: &Config,
    only: &[String],
    which: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Unit>, ExportError> {
    let mut units = Vec::new();
    for (name, spec) in &config.services {
        if !only.is_empty() && !only.iter().any(|o| o == name.as_str()) {
            continue;
        }
        units.push(unit(config, spec, which)?);
        if spec.replicas == 1 {
            units.extend(socket_units(spec));
        }
    }
    Ok(units)
}

/// The socket units of a service's held sockets (SPEC §13): `guardian-NAME.socket` for a
/// service with one (systemd pairs it with `guardian-NAME.service` by name), one
/// `guardian-NAME-SOCKET.socket` per socket otherwise, each naming its service.
fn socket_unit_names(s: &ServiceSpec) -> Vec<(String, String)> {
    let name = s.name.as_str();
    s.sockets
        .keys()
        .map(|sock| {
            let file = if s.sockets.len() == 1 {
                format!("guardian-{name}.socket")
            } else {
                format!("guardian-{name}-{sock}.socket")
            };
            (sock.clone(), file)
        })
        .collect()
}

fn socket_units(s: &ServiceSpec) -> Vec<Unit> {
    let name = s.name.as_str();
    socket_unit_names(s)
        .into_iter()
        .map(|(sock, file)| {
            let listen = &s.sockets[&sock];
            let mut u = String::new();
            let _ = writeln!(
                u,
                "# {file}: exported by guardian {} from services.{name}.sockets.{sock}.",
                env!("CARGO_PKG_VERSION")
            );
            let _ = writeln!(u, "\n[Unit]\nDescription=guardian socket {sock} of {name}");
            let _ = writeln!(u, "\n[Socket]");
            match listen {
                crate::config::Listen::Tcp(a) => {
                    let _ = writeln!(u, "ListenStream={a}");
                }
                crate::config::Listen::Unix(p) => {
                    let _ = writeln!(u, "ListenStream={}", p.display());
                    let _ = writeln!(u, "SocketMode=0660");
                    if let Some(user) = &s.user {
                        let _ = writeln!(u, "SocketUser={user}");
                    }
                    if let Some(group) = &s.unix_group {
                        let _ = writeln!(u, "SocketGroup={group}");
                    }
                }
            }
            let _ = writeln!(u, "FileDescriptorName={sock}");
            let _ = writeln!(u, "Backlog={}", crate::process::sockets::BACKLOG);
            let _ = writeln!(u, "Service=guardian-{name}.service");
            let _ = writeln!(u, "\n[Install]\nWantedBy=sockets.target");
            Unit { file, text: u }
        })
        .collect()
}

fn unit(
    config: &Config,
    s: &ServiceSpec,
    which: &dyn Fn(&str) -> Option<String>,
) -> Result<Unit, ExportError> {
    let name = s.name.as_str();
    let replicated = s.replicas > 1;
    // In a template, the instance name is the port when the service has one (each replica
    // listens on its own), else the replica number.
    let instance_is_port = replicated && s.port.is_some();
    // Markers for what the template's instance name (%i) stands for; put in after escaping,
    // so that escaping does not double their `%`.
    const INSTANCE: char = '\u{1}';
    let vars = Vars {
        name: if replicated {
            format!("{name}.{INSTANCE}")
        } else {
            name.to_owned()
        },
        replica: 1,
        host: s.host.clone(),
        port: s.nominal_port(),
        state_dir: config.guardian.state_dir.display().to_string(),
        pidfile: Some(s.pidfile.display().to_string()),
    };
    let raw = |a: &str| -> String {
        let mut marked = a.to_owned();
        if replicated {
            marked = marked.replace("{replica}", &INSTANCE.to_string());
            if instance_is_port {
                marked = marked.replace("{port}", &INSTANCE.to_string());
            }
        }
        expand(&marked, &vars).unwrap_or(marked)
    };
    let specifier = |text: String| text.replace(INSTANCE, "%i");
    let program = resolve_program(s, which)?;
    let mut exec = escape_exec_arg(&program);
    for a in &s.command[1..] {
        exec.push(' ');
        exec.push_str(&specifier(escape_exec_arg(&raw(a))));
    }

    let mut u = String::new();
    let file = unit_name(name, replicated);
    let _ = writeln!(
        u,
        "# {file}: exported by guardian {} from the service `{name}`.",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        u,
        "# Re-export after editing guardian.toml: guardian export systemd --out DIR"
    );
    for line in lost(s) {
        let _ = writeln!(u, "# {line}");
    }
    if replicated && !s.sockets.is_empty() {
        let _ = writeln!(
            u,
            "# sockets: guardian passes one held socket to every replica; systemd cannot hand a socket unit to a template's instances, so each instance here binds its own"
        );
    }
    if replicated {
        let instances: Vec<String> = s
            .instances
            .iter()
            .map(|i| {
                let id = if instance_is_port {
                    i.port.map_or(i.replica.to_string(), |p| p.to_string())
                } else {
                    i.replica.to_string()
                };
                format!("guardian-{name}@{id}.service")
            })
            .collect();
        let _ = writeln!(
            u,
            "# {} replicas: systemctl enable --now {}",
            s.replicas,
            instances.join(" ")
        );
        if s.command.iter().any(|a| a.contains("{replica}")) && instance_is_port {
            let _ = writeln!(
                u,
                "# {{replica}} has no systemd specifier here: the instance name (%i) is the port"
            );
        }
    }
    let _ = writeln!(u, "\n[Unit]");
    let _ = writeln!(
        u,
        "Description=guardian service {name}{}",
        if replicated { " (instance %i)" } else { "" }
    );
    let b = &s.backoff;
    // max_retries restarts in a row, then failed: systemd's start limit, over the longest
    // time those restarts can take.
    let window: f64 = (1..=b.max_retries.max(1))
        .map(|k| {
            crate::policy::backoff::delay_for(b, k).as_secs_f64() + s.startup_timeout.as_secs_f64()
        })
        .sum::<f64>()
        .max(10.0);
    let _ = writeln!(u, "StartLimitIntervalSec={}", window.ceil() as u64);
    let _ = writeln!(u, "StartLimitBurst={}", b.max_retries.saturating_add(1));
    for (dep, d) in &s.depends_on {
        let target = config
            .services
            .get(dep)
            .map(|t| {
                if t.replicas > 1 {
                    // Every instance of the dependency, through its template's slice of names.
                    t.instances
                        .iter()
                        .map(|i| {
                            let id = if t.port.is_some() {
                                i.port.map_or(i.replica.to_string(), |p| p.to_string())
                            } else {
                                i.replica.to_string()
                            };
                            format!("guardian-{dep}@{id}.service")
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                } else {
                    format!("guardian-{dep}.service")
                }
            })
            .unwrap_or_else(|| format!("guardian-{dep}.service"));
        let _ = writeln!(u, "After={target}");
        match d.condition {
            Condition::Started => {
                let _ = writeln!(u, "Wants={target}");
            }
            _ => {
                let _ = writeln!(u, "Requires={target}");
            }
        }
        if d.condition == Condition::Healthy {
            let _ = writeln!(
                u,
                "# depends_on.{dep} = healthy: systemd orders by start-up only; health is guardian's"
            );
        }
    }

    if !replicated && !s.sockets.is_empty() {
        let names: Vec<String> = socket_unit_names(s).into_iter().map(|(_, f)| f).collect();
        let _ = writeln!(u, "Requires={}", names.join(" "));
        let _ = writeln!(u, "After={}", names.join(" "));
    }
    if s.essential {
        // essential (SPEC §14): when it ends for good, the service manager exits with its
        // code: in a container, the container ends; on a host, the stack's user manager.
        let _ = writeln!(u, "FailureAction=exit");
        if s.restart != RestartPolicy::Always {
            let _ = writeln!(u, "SuccessAction=exit");
        }
    }
    let _ = writeln!(u, "\n[Service]");
    if !replicated && !s.sockets.is_empty() {
        let names: Vec<String> = socket_unit_names(s).into_iter().map(|(_, f)| f).collect();
        let _ = writeln!(u, "Sockets={}", names.join(" "));
    }
    if s.restart == RestartPolicy::No {
        let _ = writeln!(u, "Type=oneshot\nRemainAfterExit=yes");
    } else if s.ready == Some(crate::config::Readiness::Notify) {
        // The service says READY=1 itself; systemd waits for it as guardian does.
        let _ = writeln!(u, "Type=notify\nNotifyAccess=all");
    } else {
        let _ = writeln!(u, "Type=exec");
    }
    let _ = writeln!(u, "ExecStart={exec}");
    let cwd = super::absolute_cwd(s);
    let _ = writeln!(u, "WorkingDirectory={}", escape_exec_arg(&cwd));
    for f in &s.env_file {
        let path = if f.is_absolute() {
            f.clone()
        } else {
            std::path::Path::new(&cwd).join(f)
        };
        let _ = writeln!(
            u,
            "EnvironmentFile={}",
            path.display().to_string().replace('%', "%%")
        );
    }
    for (k, v) in &s.env {
        let _ = writeln!(u, "{}", specifier(env_line(k, &raw(v))));
    }
    let restart = match s.restart {
        RestartPolicy::Always => "always",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::No => "no",
    };
    let _ = writeln!(u, "Restart={restart}");
    if s.restart != RestartPolicy::No {
        let _ = writeln!(u, "RestartSec={}ms", b.initial_delay.as_millis());
        // Exponential backoff (systemd 254+): steps from RestartSec up to the cap.
        let steps = ((b.max_delay.as_secs_f64() / b.initial_delay.as_secs_f64().max(0.001)).ln()
            / b.factor.max(1.0001).ln())
        .ceil()
        .clamp(1.0, 3000.0) as u64;
        let _ = writeln!(u, "RestartSteps={steps}");
        let _ = writeln!(u, "RestartMaxDelaySec={}ms", b.max_delay.as_millis());
    }
    if let Some(w) = s.watchdog {
        // The service pings with sd_notify either way; systemd aborts it past WatchdogSec.
        let _ = writeln!(u, "WatchdogSec={}ms", w.as_millis());
        if s.ready != Some(crate::config::Readiness::Notify) {
            let _ = writeln!(u, "NotifyAccess=all");
        }
    }
    let _ = writeln!(u, "TimeoutStartSec={}ms", s.startup_timeout.as_millis());
    let _ = writeln!(u, "TimeoutStopSec={}ms", s.shutdown_timeout.as_millis());
    let _ = writeln!(u, "KillSignal={}", s.stop_signal.as_str());
    let _ = writeln!(u, "KillMode=control-group");
    if let Some(user) = &s.user {
        let _ = writeln!(u, "User={user}");
    }
    if let Some(group) = &s.unix_group {
        let _ = writeln!(u, "Group={group}");
    }
    if let Some(m) = s.umask {
        let _ = writeln!(u, "UMask={m:04o}");
    }
    for (limit, value) in &s.limits {
        let key = match limit {
            Limit::Nofile => "LimitNOFILE",
            Limit::Nproc => "LimitNPROC",
            Limit::Core => "LimitCORE",
            Limit::Memlock => "LimitMEMLOCK",
            Limit::Stack => "LimitSTACK",
            Limit::As => "LimitAS",
        };
        let v = if *value == UNLIMITED {
            "infinity".to_owned()
        } else {
            value.to_string()
        };
        let _ = writeln!(u, "{key}={v}");
    }
    let r = &s.health.resources;
    if let Some(t) = r.memory_mb {
        let _ = writeln!(u, "MemoryMax={}M", t.critical.ceil() as u64);
    }
    if let Some(t) = r.cpu_percent {
        let _ = writeln!(u, "CPUQuota={}%", t.critical.ceil() as u64);
    }
    let _ = writeln!(u, "\n[Install]\nWantedBy=multi-user.target");
    Ok(Unit { file, text: u })
}

/// Health checks in words, for the comment block.
pub fn describe_check(c: &CheckSpec, port: Option<u16>) -> String {
    match c {
        CheckSpec::Tcp {} => format!(
            "tcp connect to port {}",
            port.map_or("?".into(), |p| p.to_string())
        ),
        CheckSpec::Http {
            path,
            expect_status,
            ..
        } => format!("http GET {path} expecting {expect_status}"),
        CheckSpec::Exec { command } => format!("exec {}", command.join(" ")),
    }
}

/// `Secs` re-exported for the comment block's durations.
pub fn secs(d: std::time::Duration) -> String {
    Secs(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_arguments_are_escaped_the_way_systemd_reads_them() {
        let table = [
            ("plain", "plain"),
            ("50%", "50%%"),
            ("$HOME", "$$HOME"),
            ("two words", "\"two words\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
            ("a\\b", "\"a\\\\b\""),
            ("", "\"\""),
            ("x;y", "\"x;y\""),
        ];
        for (arg, want) in table {
            assert_eq!(escape_exec_arg(arg), want, "{arg}");
        }
        assert_eq!(env_line("A", "1% \"q\""), "Environment=\"A=1%% \\\"q\\\"\"");
    }
}
