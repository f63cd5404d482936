//! `guardian validate --explain`: where each non-default value came from, and each service's
//! restart schedule and breaker policy in plain words. Pure: formats what it is given.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::config::Config;
use crate::config::duration::Secs;
use crate::policy::backoff;

/// The report, one line per fact.
pub fn explain(config: &Config, provenance: &[(String, String)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "values set by a layer (everything else is a built-in default):"
    );
    if provenance.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for (key, origin) in provenance {
        let _ = writeln!(out, "  {key:<48} from {origin}");
    }
    let _ = writeln!(
        out,
        "\nstart order (each line after the one above; a line starts in parallel):"
    );
    let graph: BTreeMap<&str, Vec<&str>> = config
        .services
        .iter()
        .map(|(n, s)| {
            (
                n.as_str(),
                s.depends_on.keys().map(|d| d.as_str()).collect(),
            )
        })
        .collect();
    for (i, wave) in crate::config::graph::waves(&graph).iter().enumerate() {
        let _ = writeln!(out, "  {}. {}", i + 1, wave.join(", "));
    }
    let _ = writeln!(out, "  (stop order is the reverse)");
    for (name, s) in &config.services {
        let b = &s.backoff;
        let _ = writeln!(out, "\nservice `{name}`:");
        if s.replicas > 1 {
            let _ = writeln!(
                out,
                "  {} replicas: {}",
                s.replicas,
                s.instances
                    .iter()
                    .map(|i| match i.port {
                        Some(p) => format!("{} (port {p})", i.name),
                        None => i.name.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for (dep, d) in &s.depends_on {
            let _ = writeln!(
                out,
                "  starts once {dep} is {}{}",
                d.condition.as_str(),
                if d.restart {
                    format!("; restarts after {dep} restarts")
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(
            out,
            "  restart = \"{}\": {}",
            s.restart.as_str(),
            match s.restart {
                crate::config::RestartPolicy::Always =>
                    "restarted after any exit, with this backoff:",
                crate::config::RestartPolicy::OnFailure =>
                    "restarted after a non-zero exit or a signal, with this backoff (exit 0: completed):",
                crate::config::RestartPolicy::No =>
                    "never restarted (exit 0: completed; otherwise: failed)",
            }
        );
        if s.restart != crate::config::RestartPolicy::No {
            let shown = b.max_retries.min(6);
            for attempt in 1..=shown {
                let (lo, hi) = backoff::jitter_range(b, attempt);
                let d = backoff::delay_for(b, attempt);
                let band = if lo == hi {
                    String::new()
                } else {
                    format!(" (jitter: {} to {})", Secs(round(lo)), Secs(round(hi)))
                };
                let _ = writeln!(out, "    retry {attempt}: after {}{band}", Secs(round(d)));
            }
            if b.max_retries > shown {
                let _ = writeln!(
                    out,
                    "    retries {} to {}: after {}, growing by ×{} up to the cap of {}",
                    shown + 1,
                    b.max_retries,
                    Secs(round(backoff::delay_for(b, shown + 1))),
                    b.factor,
                    Secs(b.max_delay)
                );
            }
            let _ = writeln!(
                out,
                "  gives up after {} consecutive failed starts: the service is `failed` until `guardian start {name}`",
                b.max_retries
            );
            let _ = writeln!(
                out,
                "  a run of {} or longer counts as a success and resets the count",
                Secs(b.reset_after)
            );
        }
        let h = &s.health;
        if h.checks.is_empty() && h.resources.is_empty() {
            let _ = writeln!(
                out,
                "  health: no checks (healthy while it runs; nothing is polled)"
            );
        } else {
            let _ = writeln!(
                out,
                "  health: a round of checks every {}, each check given {}{}; rounds never overlap (a round longer than the interval is followed at once by the next); critical after {} failed rounds",
                Secs(h.interval),
                Secs(h.timeout),
                if h.timeout > h.interval {
                    " (longer than the interval)"
                } else {
                    ""
                },
                h.unhealthy_threshold
            );
        }
        let r = &s.recovery;
        if r.enabled {
            let cb = &r.circuit_breaker;
            let _ = writeln!(
                out,
                "  recovery: no two actions closer than {}; the breaker opens after {} failed recovery actions, stays open {} (no action runs), then lets actions through half-open and closes after {} successes",
                Secs(r.min_recovery_interval),
                cb.failure_threshold,
                Secs(cb.open_timeout),
                cb.success_threshold
            );
        } else {
            let _ = writeln!(
                out,
                "  recovery: disabled (health is reported, nothing is done)"
            );
        }
    }
    out
}

fn round(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(d.as_millis() as u64)
}
