//! `GET /metrics`: the snapshot as OpenMetrics text through prometheus-client. The snapshot
//! is the source of truth, so it is encoded directly by one `Collector` (the crate's way for
//! values kept elsewhere): no registry of per-series atomics or label maps is built per
//! scrape, and the series come out in the snapshot's order.

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::policy::health::Status;
use crate::policy::recovery::Action;
use crate::supervisor::{Snapshot, State};

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders every metric of SPEC §6. Counters are named without `_total`: the encoder
/// appends it.
/// `dropped`: output bytes dropped per service (SPEC §11).
/// `auth_failures`: wrong or missing tokens on TCP (SPEC §12).
/// `notify_dropped`: sd_notify messages dropped (SPEC §14).
/// `alerts`: deliveries per sink and result (SPEC §15).
pub fn render(
    snap: Snapshot,
    uptime_seconds: f64,
    dropped: Vec<(String, u64)>,
    auth_failures: u64,
    notify_dropped: u64,
    alerts: Vec<(String, &'static str, u64)>,
) -> String {
    let mut r = Registry::default();
    r.register_collector(Box::new(View {
        snap,
        uptime_seconds,
        dropped,
        auth_failures,
        notify_dropped,
        alerts,
    }));
    let mut out = String::with_capacity(1024);
    encode(&mut out, &r).expect("UNWRAP: writing to a String cannot fail");
    out
}

#[derive(Debug)]
struct View {
    snap: Snapshot,
    uptime_seconds: f64,
    dropped: Vec<(String, u64)>,
    auth_failures: u64,
    notify_dropped: u64,
    alerts: Vec<(String, &'static str, u64)>,
}

/// One sample's value: a gauge (integer or float) or a counter.
#[derive(Clone, Copy)]
enum V {
    Int(i64),
    Float(f64),
    Count(u64),
}

impl V {
    fn put(self, m: &mut prometheus_client::encoding::MetricEncoder) -> fmt::Result {
        match self {
            V::Int(v) => m.encode_gauge(&v),
            V::Float(v) => m.encode_gauge(&v),
            V::Count(v) => m.encode_counter::<NoLabelSet, u64, f64>(&v, None),
        }
    }

    fn kind(self) -> MetricType {
        match self {
            V::Count(_) => MetricType::Counter,
            _ => MetricType::Gauge,
        }
    }
}

/// One family: its descriptor, then one sample per label set. `kind` names the type even
/// when there is no sample.
fn family<S: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (S, V)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in series {
        v.put(&mut m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A metric without labels.
fn single(enc: &mut DescriptorEncoder, name: &str, help: &str, v: V) -> fmt::Result {
    v.put(&mut enc.encode_descriptor(name, help, None, v.kind())?)
}

fn svc(s: &crate::supervisor::ServiceSnapshot) -> [(&'static str, &str); 1] {
    [("service", s.name.as_str())]
}

impl Collector for View {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        use MetricType::{Counter, Gauge};
        let services = &self.snap.services;
        single(
            &mut enc,
            "guardian_up",
            "1 while the guardian runs",
            V::Int(1),
        )?;
        single(
            &mut enc,
            "guardian_uptime_seconds",
            "Seconds since the guardian started",
            V::Float(self.uptime_seconds),
        )?;
        family(
            &mut enc,
            "guardian_service_up",
            "1 while the service is running",
            Gauge,
            services
                .iter()
                .map(|s| (svc(s), V::Int(i64::from(s.state == State::Running)))),
        )?;
        family(
            &mut enc,
            "guardian_service_restarts",
            "Restarts of the service (after crashes, recovery and commands)",
            Counter,
            services.iter().map(|s| (svc(s), V::Count(s.restarts))),
        )?;
        // Every series exists from the start, at zero, so that dashboards and alerts find them.
        family(
            &mut enc,
            "guardian_health_checks",
            "Rounds of health checks, by their result",
            Counter,
            services.iter().flat_map(|s| {
                Status::ALL.into_iter().map(move |status| {
                    let n: u64 = s
                        .detail
                        .checks_by_result
                        .iter()
                        .filter(|(st, _)| *st == status)
                        .map(|(_, n)| n)
                        .sum();
                    (
                        [("service", s.name.as_str()), ("result", status.as_str())],
                        V::Count(n),
                    )
                })
            }),
        )?;
        family(
            &mut enc,
            "guardian_service_health_status",
            "0 unknown, 1 healthy, 2 warning, 3 critical",
            Gauge,
            services.iter().map(|s| (svc(s), V::Int(s.health.gauge()))),
        )?;
        family(
            &mut enc,
            "guardian_recovery_actions",
            "Recovery steps by action and verdict",
            Counter,
            services.iter().flat_map(|s| {
                Action::ALL.into_iter().flat_map(move |action| {
                    [(true, "success"), (false, "failure")].into_iter().map(
                        move |(success, result)| {
                            let n: u64 = s
                                .detail
                                .recoveries
                                .iter()
                                .filter(|r| r.action == action && r.success == success)
                                .map(|r| r.count)
                                .sum();
                            (
                                [
                                    ("service", s.name.as_str()),
                                    ("action", action.as_str()),
                                    ("result", result),
                                ],
                                V::Count(n),
                            )
                        },
                    )
                })
            }),
        )?;
        family(
            &mut enc,
            "guardian_circuit_breaker_state",
            "0 closed, 1 half_open, 2 open",
            Gauge,
            services
                .iter()
                .map(|s| (svc(s), V::Int(s.circuit_breaker.gauge()))),
        )?;
        let process = || {
            services
                .iter()
                .filter_map(|s| Some((svc(s), s.detail.process.as_ref()?)))
        };
        family(
            &mut enc,
            "guardian_service_cpu_percent",
            "CPU of the service's process tree, percent of one core",
            Gauge,
            process().filter_map(|(l, p)| Some((l, V::Float(p.cpu_percent?)))),
        )?;
        family(
            &mut enc,
            "guardian_service_memory_bytes",
            "Resident memory of the service's process tree",
            Gauge,
            process().map(|(l, p)| (l, V::Int(p.memory_bytes as i64))),
        )?;
        family(
            &mut enc,
            "guardian_service_open_fds",
            "Open file descriptors of the service's process tree",
            Gauge,
            process().map(|(l, p)| (l, V::Int(p.file_descriptors as i64))),
        )?;
        // Every service at zero, and services gone since (by reload) with what they dropped.
        let mut dropped: BTreeMap<&str, u64> =
            services.iter().map(|s| (s.name.as_str(), 0)).collect();
        for (service, n) in &self.dropped {
            dropped.insert(service, *n);
        }
        family(
            &mut enc,
            "guardian_log_dropped_bytes",
            "Output bytes of the service dropped because its log could not take them",
            Counter,
            dropped
                .into_iter()
                .map(|(s, n)| ([("service", s)], V::Count(n))),
        )?;
        single(
            &mut enc,
            "guardian_api_auth_failures",
            "Requests on TCP refused for a missing or wrong token",
            V::Count(self.auth_failures),
        )?;
        single(
            &mut enc,
            "guardian_notify_dropped",
            "sd_notify messages dropped: from no service's processes, over 4 KiB, or a full queue",
            V::Count(self.notify_dropped),
        )?;
        family(
            &mut enc,
            "guardian_alerts",
            "Alerts per sink: sent, failed (after 3 retries) or dropped (the sink's queue was full)",
            Counter,
            self.alerts
                .iter()
                .filter(|(_, r, _)| *r != "suppressed")
                .map(|(s, r, n)| ([("sink", s.as_str()), ("result", *r)], V::Count(*n))),
        )?;
        family(
            &mut enc,
            "guardian_config_reloads",
            "Config reloads by result",
            Counter,
            [
                ([("result", "success")], V::Count(self.snap.reloads_ok)),
                ([("result", "failure")], V::Count(self.snap.reloads_failed)),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::resources::ProcessInfo;
    use crate::supervisor::{RecoveryCount, ServiceSnapshot};

    #[test]
    fn every_series_comes_from_the_snapshot_in_its_order() {
        let mut a = ServiceSnapshot {
            name: "a".into(),
            state: State::Running,
            restarts: 3,
            health: Status::Healthy,
            ..Default::default()
        };
        a.detail.checks_by_result = vec![(Status::Healthy, 5), (Status::Critical, 1)];
        a.detail.recoveries = vec![RecoveryCount {
            action: Action::RestartService,
            success: true,
            count: 2,
        }];
        a.detail.process = Some(ProcessInfo {
            cpu_percent: Some(12.5),
            memory_bytes: 4096,
            file_descriptors: 7,
            ..Default::default()
        });
        let b = ServiceSnapshot {
            name: "b".into(),
            ..Default::default()
        };
        let snap = Snapshot {
            services: vec![a, b],
            reloads_ok: 4,
            ..Default::default()
        };
        let text = render(
            snap,
            9.5,
            vec![("gone".into(), 7)],
            1,
            2,
            vec![("ops".into(), "sent", 3), ("ops".into(), "suppressed", 9)],
        );
        for line in [
            "guardian_up 1",
            "guardian_uptime_seconds 9.5",
            "guardian_service_up{service=\"a\"} 1",
            "guardian_service_up{service=\"b\"} 0",
            "guardian_service_restarts_total{service=\"a\"} 3",
            "guardian_health_checks_total{service=\"a\",result=\"healthy\"} 5",
            "guardian_health_checks_total{service=\"a\",result=\"critical\"} 1",
            "guardian_health_checks_total{service=\"b\",result=\"warning\"} 0",
            "guardian_service_health_status{service=\"a\"} 1",
            "guardian_recovery_actions_total{service=\"a\",action=\"restart_service\",result=\"success\"} 2",
            "guardian_recovery_actions_total{service=\"b\",action=\"emergency_stop\",result=\"failure\"} 0",
            "guardian_service_cpu_percent{service=\"a\"} 12.5",
            "guardian_service_memory_bytes{service=\"a\"} 4096",
            "guardian_service_open_fds{service=\"a\"} 7",
            "guardian_log_dropped_bytes_total{service=\"a\"} 0",
            "guardian_log_dropped_bytes_total{service=\"gone\"} 7",
            "guardian_api_auth_failures_total 1",
            "guardian_notify_dropped_total 2",
            "guardian_alerts_total{sink=\"ops\",result=\"sent\"} 3",
            "guardian_config_reloads_total{result=\"success\"} 4",
            "# TYPE guardian_service_restarts counter",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert!(!text.contains("suppressed"), "{text}");
        // A service without process facts has no process series.
        assert!(!text.contains("guardian_service_memory_bytes{service=\"b\"}"));
        let a_up = text.find("service_up{service=\"a\"}").unwrap();
        let b_up = text.find("service_up{service=\"b\"}").unwrap();
        assert!(a_up < b_up);
        assert!(text.ends_with("# EOF\n"));
    }
}
