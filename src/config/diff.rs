//! What a reload changes (SPEC §5): services added, removed, restarted (their spawn settings
//! changed), updated in place (only policies changed: same process, same PID) and untouched;
//! and the guardian-level keys. Pure.

use std::fmt;

use super::{Config, ServiceName, ServiceSpec};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigDiff {
    pub added: Vec<ServiceName>,
    pub removed: Vec<ServiceName>,
    /// Spawn settings changed: a graceful restart of that service alone.
    pub restarted: Vec<(ServiceName, Vec<&'static str>)>,
    /// Only policies changed: applied to the running process.
    pub updated: Vec<(ServiceName, Vec<&'static str>)>,
    pub unchanged: Vec<ServiceName>,
    /// Guardian-level keys that changed and apply live.
    pub guardian: Vec<&'static str>,
    /// A change that cannot apply without a restart of guardian itself.
    pub refused: Option<String>,
}

/// The keys whose change needs a new process: what the child is, where and as whom it runs.
fn spawn_changes(a: &ServiceSpec, b: &ServiceSpec) -> Vec<&'static str> {
    [
        ("command", a.command != b.command),
        ("cwd", a.cwd != b.cwd),
        ("env", a.env != b.env),
        ("env_prefix", a.env_prefix != b.env_prefix),
        ("log_level", a.log_level != b.log_level),
        ("host", a.host != b.host),
        ("port", a.port != b.port),
        ("port_range", a.port_range != b.port_range),
        ("identity", a.identity != b.identity),
        ("pidfile", a.pidfile != b.pidfile),
        (
            "env_file",
            a.env_file != b.env_file || a.env_from_files != b.env_from_files,
        ),
        ("user", a.user != b.user || a.uid != b.uid),
        ("group", a.unix_group != b.unix_group || a.gid != b.gid),
        ("umask", a.umask != b.umask),
        ("limits", a.limits != b.limits),
        ("sockets", a.sockets != b.sockets),
        // WATCHDOG_USEC is in the service's environment.
        ("watchdog", a.watchdog != b.watchdog),
    ]
    .into_iter()
    .filter_map(|(k, changed)| changed.then_some(k))
    .collect()
}

/// The keys that apply to the running process.
fn policy_changes(a: &ServiceSpec, b: &ServiceSpec) -> Vec<&'static str> {
    [
        ("health", a.health != b.health),
        ("recovery", a.recovery != b.recovery),
        ("backoff", a.backoff != b.backoff),
        ("startup_timeout", a.startup_timeout != b.startup_timeout),
        ("shutdown_timeout", a.shutdown_timeout != b.shutdown_timeout),
        ("stop_signal", a.stop_signal != b.stop_signal),
        ("on_orphan", a.on_orphan != b.on_orphan),
        ("autostart", a.autostart != b.autostart),
        ("log", a.log != b.log),
        ("metrics", a.metrics != b.metrics),
        ("restart", a.restart != b.restart),
        ("depends_on", a.depends_on != b.depends_on),
        ("replicas", a.replicas != b.replicas),
        ("public_env", a.public_env != b.public_env),
        ("ready", a.ready != b.ready),
        ("restart_strategy", a.restart_strategy != b.restart_strategy),
        ("essential", a.essential != b.essential),
    ]
    .into_iter()
    .filter_map(|(k, changed)| changed.then_some(k))
    .collect()
}

pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    for (name, spec) in &new.services {
        match old.services.get(name) {
            None => d.added.push(name.clone()),
            Some(before) => {
                let spawn = spawn_changes(before, spec);
                let policy = policy_changes(before, spec);
                if !spawn.is_empty() {
                    let mut keys = spawn;
                    keys.extend(policy);
                    d.restarted.push((name.clone(), keys));
                } else if !policy.is_empty() {
                    d.updated.push((name.clone(), policy));
                } else {
                    d.unchanged.push(name.clone());
                }
            }
        }
    }
    d.removed = old
        .services
        .keys()
        .filter(|n| !new.services.contains_key(*n))
        .cloned()
        .collect();
    let (a, b) = (&old.guardian, &new.guardian);
    if a.state_dir != b.state_dir {
        d.refused = Some(format!(
            "guardian.state_dir changed ({} → {}); it holds the lock, the socket and the PID files, so it cannot move while guardian runs\n  1. put it back, or\n  2. restart guardian: guardian stop && guardian run",
            a.state_dir.display(),
            b.state_dir.display()
        ));
    }
    d.guardian = [
        ("log_level", a.log_level != b.log_level),
        ("log_format", a.log_format != b.log_format),
        ("watch_config", a.watch_config != b.watch_config),
        (
            "stop_services_on_exit",
            a.stop_services_on_exit != b.stop_services_on_exit,
        ),
        ("metrics_file", a.metrics_file != b.metrics_file),
        ("events_file", a.events_file != b.events_file),
        (
            "events_max_size_mb",
            a.events_max_size_mb != b.events_max_size_mb,
        ),
        (
            "events_backup_count",
            a.events_backup_count != b.events_backup_count,
        ),
        ("echo", a.echo != b.echo),
        ("api", a.api != b.api),
    ]
    .into_iter()
    .filter_map(|(k, changed)| changed.then_some(k))
    .collect();
    d
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.restarted.is_empty()
            && self.updated.is_empty()
            && self.guardian.is_empty()
    }
}

/// `+ added`, `- removed`, `~ restarted`, `= policies updated`, one line each.
impl fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no changes");
        }
        for n in &self.added {
            writeln!(f, "+ {n} (added: started)")?;
        }
        for n in &self.removed {
            writeln!(f, "- {n} (removed: stopped)")?;
        }
        for (n, keys) in &self.restarted {
            writeln!(f, "~ {n} (restarted: {} changed)", keys.join(", "))?;
        }
        for (n, keys) in &self.updated {
            writeln!(
                f,
                "= {n} (policies updated, same process: {})",
                keys.join(", ")
            )?;
        }
        if !self.guardian.is_empty() {
            writeln!(f, "= guardian ({})", self.guardian.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawConfig;
    use crate::config::validate::{Context, validate};

    fn config(text: &str) -> Config {
        let raw: RawConfig = toml::from_str(text).unwrap();
        let origin = |_: &str| None;
        validate(
            raw,
            &Context {
                default_state_dir: "/tmp/guardian-diff-test".into(),
                origin: &origin,
            },
        )
        .unwrap()
    }

    const BASE: &str = r#"
[services.a]
command = ["sleep", "1"]
port = 8000
[services.b]
command = ["sleep", "2"]
"#;

    fn names(v: &[ServiceName]) -> Vec<&str> {
        v.iter().map(ServiceName::as_str).collect()
    }

    fn keyed(v: &[(ServiceName, Vec<&'static str>)]) -> Vec<(String, Vec<&'static str>)> {
        v.iter().map(|(n, k)| (n.to_string(), k.clone())).collect()
    }

    #[test]
    fn sorts_every_service() {
        // (what is appended to BASE-like text, added, removed, restarted, updated, unchanged)
        type Row = (
            &'static str,
            Vec<&'static str>,
            Vec<&'static str>,
            Vec<(&'static str, Vec<&'static str>)>,
            Vec<(&'static str, Vec<&'static str>)>,
            Vec<&'static str>,
        );
        let table: Vec<Row> = vec![
            (BASE, vec![], vec![], vec![], vec![], vec!["a", "b"]),
            (
                "[services.a]\ncommand = [\"sleep\", \"1\"]\nport = 8000\n[services.a.health]\ninterval = \"50s\"\n[services.b]\ncommand = [\"sleep\", \"2\"]\n",
                vec![],
                vec![],
                vec![],
                vec![("a", vec!["health"])],
                vec!["b"],
            ),
            (
                "[services.a]\ncommand = [\"sleep\", \"9\"]\nport = 8000\n[services.b]\ncommand = [\"sleep\", \"2\"]\n[services.b.backoff]\nmax_retries = 3\n",
                vec![],
                vec![],
                vec![("a", vec!["command"])],
                vec![("b", vec!["backoff"])],
                vec![],
            ),
            (
                "[services.a]\ncommand = [\"sleep\", \"1\"]\nport = 8001\nshutdown_timeout = 3\n[services.c]\ncommand = [\"x\"]\n",
                vec!["c"],
                vec!["b"],
                vec![("a", vec!["port", "shutdown_timeout"])],
                vec![],
                vec![],
            ),
            (
                "[services.a]\ncommand = [\"sleep\", \"1\"]\nport = 8000\nenv = { K = \"v\" }\n[services.b]\ncommand = [\"sleep\", \"2\"]\n[services.b.identity]\npatterns = [\"sleep\", \"2\"]\n",
                vec![],
                vec![],
                vec![("a", vec!["env"]), ("b", vec!["identity"])],
                vec![],
                vec![],
            ),
        ];
        let old = config(BASE);
        for (text, added, removed, restarted, updated, unchanged) in table {
            let d = diff(&old, &config(text));
            assert_eq!(names(&d.added), added, "{text}");
            assert_eq!(names(&d.removed), removed, "{text}");
            let want = |v: Vec<(&str, Vec<&'static str>)>| {
                v.into_iter()
                    .map(|(n, k)| (n.to_owned(), k))
                    .collect::<Vec<_>>()
            };
            assert_eq!(keyed(&d.restarted), want(restarted), "{text}");
            assert_eq!(keyed(&d.updated), want(updated), "{text}");
            assert_eq!(names(&d.unchanged), unchanged, "{text}");
        }
    }

    #[test]
    fn guardian_keys_and_a_moved_state_dir() {
        let old = config(BASE);
        let new = config(&format!(
            "[guardian]\nlog_level = \"debug\"\nstate_dir = \"/tmp/elsewhere\"\n{BASE}"
        ));
        let d = diff(&old, &new);
        assert!(d.guardian.contains(&"log_level"));
        assert!(d.refused.unwrap().contains("state_dir changed"));
        assert!(diff(&old, &old).is_empty());
    }

    #[test]
    fn prints_one_line_per_change() {
        let d = diff(
            &config(BASE),
            &config(
                "[services.a]\ncommand = [\"sleep\", \"9\"]\nport = 8000\n[services.c]\ncommand = [\"x\"]\n",
            ),
        );
        assert_eq!(
            d.to_string(),
            "+ c (added: started)\n- b (removed: stopped)\n~ a (restarted: command changed)\n"
        );
    }
}
