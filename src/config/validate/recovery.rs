//! How a service comes back: its restart backoff, its health checks and the recovery ladder
//! with its circuit breaker.

use super::*;
use crate::config::duration::Secs;

pub(super) fn backoff(c: &mut Check, name: &ServiceName, rb: RawBackoff) -> BackoffSpec {
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

pub(super) fn health(
    c: &mut Check,
    name: &ServiceName,
    rh: RawHealth,
    has_port: bool,
) -> HealthSpec {
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

pub(super) fn recovery(
    c: &mut Check,
    name: &ServiceName,
    rr: RawRecovery,
    has_port: bool,
) -> RecoverySpec {
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
