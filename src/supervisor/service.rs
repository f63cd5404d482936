//! One service as the actor holds it: its spec, its current instance and its counters.

use super::*;

pub(super) struct Service {
    pub(super) spec: ServiceSpec,
    pub(super) state: State,
    pub(super) pid: Option<i32>,
    pub(super) port: Option<u16>,
    /// Bumped on every spawn and every cancel, so that late facts of an old instance are ignored.
    pub(super) instance: u64,
    pub(super) started_at: Option<Instant>,
    pub(super) restarts: u64,
    pub(super) failures: u32,
    pub(super) adopted: bool,
    pub(super) pidfile: Option<ServicePidFile>,
    pub(super) last_exit: Option<String>,
    pub(super) last_error: Option<String>,
    pub(super) restart_at: Option<Instant>,
    pub(super) start_after_stop: bool,
    pub(super) stop_waiters: Vec<oneshot::Sender<Reply>>,
    pub(super) timed_out: bool,
    /// Cancels this instance's readiness probe, health monitor and grace timer.
    pub(super) instance_token: CancellationToken,
    /// Cancels only the health monitor (a reload of `health` starts a new one).
    pub(super) health_token: CancellationToken,
    pub(super) monitor: Monitor,
    pub(super) recovery: Recovery,
    pub(super) last_tick: Option<Tick>,
    pub(super) last_check_at: Option<f64>,
    pub(super) checks_by_result: BTreeMap<Status, u64>,
    pub(super) recoveries: BTreeMap<(Action, bool), u64>,
    /// A restart_service step in flight: when it began and the health that caused it.
    pub(super) recovery_restart: Option<(Instant, Status)>,
    /// emergency_stop: once the process is gone the service is `failed`.
    pub(super) fail_after_stop: bool,
    /// Removed by a reload: dropped once its process is gone.
    pub(super) remove_after_stop: bool,
    pub(super) start_time: Option<f64>,
    pub(super) total_failures: u64,
    pub(super) last_failure: Option<f64>,
    /// `waiting for …` / `blocked: …` while the service is gated by its dependencies.
    pub(super) waiting_for: Option<String>,
    /// The exit code of the last run that ended on its own.
    pub(super) exit_code: Option<i32>,
    /// The last run's end as a shell reports it (exit code, or 128 + signal): guardian's
    /// exit code when it is essential.
    pub(super) last_status: Option<i32>,
    /// The environment values of the last start that may show (`public_env`, placeholders'
    /// expansions) for `/status`; `None` when there is none.
    pub(super) public_env: Option<Arc<BTreeMap<String, String>>>,
    /// The last `STATUS=` its process sent (sd_notify), until it restarts.
    pub(super) status_text: Option<String>,
    /// The instance a start-first restart replaces, until it has drained.
    pub(super) draining: Option<super::handoff::Draining>,
    /// What the current instance said with sd_notify beyond STATUS= (SPEC §14).
    pub(super) notify: NotifyFacts,
    /// The trigger of the recovery events under way: `health_check` or `watchdog`.
    pub(super) recovery_trigger: &'static str,
    /// `ready = "log:…"` compiled once (again only when a reload changes it).
    ready_regex: Option<crate::process::LinePattern>,
}

/// sd_notify facts of the current instance, reset when a new one starts.
#[derive(Default)]
pub(super) struct NotifyFacts {
    /// Unix milliseconds of the last `WATCHDOG=1` (0: none): snapshots read it when asked,
    /// so a ping costs no publish.
    pub(super) last_ping: Arc<std::sync::atomic::AtomicU64>,
    /// The last `WATCHDOG=1`, or when the watchdog began (at ready).
    pub(super) pinged_at: Option<Instant>,
    /// The last watchdog verdict was a miss: the next ping in time is a healthy result.
    pub(super) missed: bool,
    /// `EXTEND_TIMEOUT_USEC`: the start-up or stop deadline is not before this.
    pub(super) extended_until: Option<Instant>,
    /// `ERRNO=`: the error the service said it failed with.
    pub(super) errno: Option<i32>,
    /// `RELOADING=1` or `STOPPING=1` said, until `READY=1` (or the end): the watchdog waits.
    pub(super) phase: Option<&'static str>,
    /// `ready = "log:…"`: fires at the first matching output line.
    pub(super) ready_line: Option<oneshot::Receiver<()>>,
}

impl Service {
    pub(super) fn new(spec: ServiceSpec) -> Self {
        Service {
            port: spec.port,
            spec,
            state: State::Stopped,
            pid: None,
            instance: 0,
            started_at: None,
            restarts: 0,
            failures: 0,
            adopted: false,
            pidfile: None,
            last_exit: None,
            last_error: None,
            public_env: None,
            status_text: None,
            draining: None,
            notify: NotifyFacts::default(),
            recovery_trigger: "health_check",
            ready_regex: None,
            restart_at: None,
            start_after_stop: false,
            stop_waiters: Vec::new(),
            timed_out: false,
            instance_token: CancellationToken::new(),
            health_token: CancellationToken::new(),
            monitor: Monitor::default(),
            recovery: Recovery::default(),
            last_tick: None,
            last_check_at: None,
            checks_by_result: BTreeMap::new(),
            recoveries: BTreeMap::new(),
            recovery_restart: None,
            fail_after_stop: false,
            remove_after_stop: false,
            start_time: None,
            total_failures: 0,
            last_failure: None,
            waiting_for: None,
            exit_code: None,
            last_status: None,
        }
    }

    /// The compiled `log:` pattern of `ready`, if it has one.
    pub(super) fn ready_pattern(&mut self) -> Option<crate::process::LinePattern> {
        let Some(crate::config::Readiness::Log(p)) = &self.spec.ready else {
            return None;
        };
        if self.ready_regex.as_ref().is_none_or(|r| r.0.as_str() != p) {
            self.ready_regex = regex::Regex::new(p)
                .ok()
                .map(|r| crate::process::LinePattern(Arc::new(r)));
        }
        self.ready_regex.clone()
    }

    /// `guardian start` / `restart`: a fresh retry count and a closed breaker.
    pub(super) fn reset_by_user(&mut self) {
        self.failures = 0;
        self.recovery = Recovery::default();
        self.fail_after_stop = false;
    }

    pub(super) fn detail(&self, now: Instant) -> Detail {
        let spec = &self.spec;
        let running = self.state == State::Running;
        Detail {
            checks: self
                .last_tick
                .as_ref()
                .filter(|_| running)
                .map(|t| t.results.clone())
                .unwrap_or_default(),
            process: self
                .last_tick
                .as_ref()
                .filter(|_| running)
                .and_then(|t| t.process.clone()),
            summary: self.monitor.aggregate(now, spec.health.aggregation_window),
            checks_performed: self.monitor.checks_performed,
            checks_failed: self.monitor.checks_failed,
            checks_by_result: self
                .checks_by_result
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect(),
            last_check: self.last_check_at,
            recoveries: self
                .recoveries
                .iter()
                .map(|((action, success), count)| RecoveryCount {
                    action: *action,
                    success: *success,
                    count: *count,
                })
                .collect(),
            pending_recovery: self.recovery.pending(),
            breaker_reopens_in: self
                .recovery
                .breaker()
                .reopens_at(&spec.recovery.circuit_breaker)
                .map(|t| t.saturating_duration_since(now).as_secs_f64()),
            start_time: self.start_time.filter(|_| self.pid.is_some()),
            total_failures: self.total_failures,
            last_failure: self.last_failure,
            metrics_file: spec.metrics.enabled.then(|| spec.metrics.file.clone()),
            log_file: spec.log.file.clone(),
        }
    }
}
