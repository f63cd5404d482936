//! `GET /metrics`: the snapshot as OpenMetrics text through prometheus-client. A fresh
//! registry per scrape, filled from the snapshot, so the actor never waits on a scrape.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::policy::health::Status;
use crate::policy::recovery::Action;
use crate::supervisor::{Snapshot, State};

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Svc {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SvcResult {
    service: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SvcAction {
    service: String,
    action: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    result: String,
}

type FGauge = Gauge<f64, AtomicU64>;

/// Renders every metric of SPEC §6. Counters are registered without `_total`: the encoder
/// appends it.
/// `dropped`: output bytes dropped per service (SPEC §11).
/// `auth_failures`: wrong or missing tokens on TCP (SPEC §12).
pub fn render(
    snap: &Snapshot,
    uptime_seconds: f64,
    dropped: &[(String, u64)],
    auth_failures: u64,
) -> String {
    let mut r = Registry::default();
    let up = Gauge::<i64>::default();
    up.set(1);
    r.register("guardian_up", "1 while the guardian runs", up);
    let uptime = FGauge::default();
    uptime.set(uptime_seconds);
    r.register(
        "guardian_uptime_seconds",
        "Seconds since the guardian started",
        uptime,
    );

    let svc_up = Family::<Svc, Gauge>::default();
    let restarts = Family::<Svc, Counter>::default();
    let checks = Family::<SvcResult, Counter>::default();
    let health = Family::<Svc, Gauge>::default();
    let recoveries = Family::<SvcAction, Counter>::default();
    let breaker = Family::<Svc, Gauge>::default();
    let cpu = Family::<Svc, FGauge>::default();
    let memory = Family::<Svc, Gauge>::default();
    let fds = Family::<Svc, Gauge>::default();
    for s in &snap.services {
        let l = Svc {
            service: s.name.clone(),
        };
        svc_up
            .get_or_create(&l)
            .set(i64::from(s.state == State::Running));
        restarts.get_or_create(&l).inc_by(s.restarts);
        health.get_or_create(&l).set(s.health.gauge());
        breaker.get_or_create(&l).set(s.circuit_breaker.gauge());
        // Every series exists from the start, at zero, so that dashboards and alerts find them.
        for status in Status::ALL {
            checks
                .get_or_create(&SvcResult {
                    service: s.name.clone(),
                    result: status.as_str().to_owned(),
                })
                .inc_by(0);
        }
        for action in Action::ALL {
            for result in ["success", "failure"] {
                recoveries
                    .get_or_create(&SvcAction {
                        service: s.name.clone(),
                        action: action.as_str().to_owned(),
                        result: result.to_owned(),
                    })
                    .inc_by(0);
            }
        }
        for (status, n) in &s.detail.checks_by_result {
            checks
                .get_or_create(&SvcResult {
                    service: s.name.clone(),
                    result: status.as_str().to_owned(),
                })
                .inc_by(*n);
        }
        for rc in &s.detail.recoveries {
            recoveries
                .get_or_create(&SvcAction {
                    service: s.name.clone(),
                    action: rc.action.as_str().to_owned(),
                    result: if rc.success { "success" } else { "failure" }.to_owned(),
                })
                .inc_by(rc.count);
        }
        if let Some(p) = &s.detail.process {
            if let Some(c) = p.cpu_percent {
                cpu.get_or_create(&l).set(c);
            }
            memory.get_or_create(&l).set(p.memory_bytes as i64);
            fds.get_or_create(&l).set(p.file_descriptors as i64);
        }
    }
    r.register(
        "guardian_service_up",
        "1 while the service is running",
        svc_up,
    );
    r.register(
        "guardian_service_restarts",
        "Restarts of the service (after crashes, recovery and commands)",
        restarts,
    );
    r.register(
        "guardian_health_checks",
        "Rounds of health checks, by their result",
        checks,
    );
    r.register(
        "guardian_service_health_status",
        "0 unknown, 1 healthy, 2 warning, 3 critical",
        health,
    );
    r.register(
        "guardian_recovery_actions",
        "Recovery steps by action and verdict",
        recoveries,
    );
    r.register(
        "guardian_circuit_breaker_state",
        "0 closed, 1 half_open, 2 open",
        breaker,
    );
    r.register(
        "guardian_service_cpu_percent",
        "CPU of the service's process tree, percent of one core",
        cpu,
    );
    r.register(
        "guardian_service_memory_bytes",
        "Resident memory of the service's process tree",
        memory,
    );
    r.register(
        "guardian_service_open_fds",
        "Open file descriptors of the service's process tree",
        fds,
    );
    let dropped_bytes = Family::<Svc, Counter>::default();
    for s in &snap.services {
        dropped_bytes
            .get_or_create(&Svc {
                service: s.name.clone(),
            })
            .inc_by(0);
    }
    for (service, n) in dropped {
        dropped_bytes
            .get_or_create(&Svc {
                service: service.clone(),
            })
            .inc_by(*n);
    }
    r.register(
        "guardian_log_dropped_bytes",
        "Output bytes of the service dropped because its log could not take them",
        dropped_bytes,
    );
    let auth = Counter::<u64>::default();
    auth.inc_by(auth_failures);
    r.register(
        "guardian_api_auth_failures",
        "Requests on TCP refused for a missing or wrong token",
        auth,
    );
    let reloads = Family::<Outcome, Counter>::default();
    for (result, n) in [
        ("success", snap.reloads_ok),
        ("failure", snap.reloads_failed),
    ] {
        reloads
            .get_or_create(&Outcome {
                result: result.to_owned(),
            })
            .inc_by(n);
    }
    r.register(
        "guardian_config_reloads",
        "Config reloads by result",
        reloads,
    );
    let mut out = String::new();
    encode(&mut out, &r).expect("UNWRAP: writing to a String cannot fail");
    out
}
