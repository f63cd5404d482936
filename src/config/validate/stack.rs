//! The stack as a whole: rules between services.

use super::*;

/// Rules between services: ports, PID files and env prefixes must not collide (across every
/// instance), and dependencies must name services, not form a cycle, and ask `completed` only
/// of a service that can complete.
pub(super) fn cross_service(c: &mut Check, services: &BTreeMap<ServiceName, ServiceSpec>) {
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
                let hint = crate::config::suggest::nearest(dep.as_str(), &names)
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
    if let Some(cycle) = crate::config::graph::find_cycle(&graph) {
        c.fail(
            format!("services.{}.depends_on", cycle[0]),
            format!(
                "dependency cycle: {}; no service of it could ever start. Remove one of these dependencies",
                cycle.join(" → ")
            ),
        );
    }
}
