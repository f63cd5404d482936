//! The actor: sole owner of every service's state. One `select!` loop takes commands from the
//! handle and past-tense facts from its own tasks (exits, readiness, timers), decides with
//! `policy`, acts through a `Spawner`, and publishes a snapshot after each step.

pub mod handle;
pub mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{CheckSpec, ClearConnections, Config, OnOrphan, ServiceSpec, expand};
use crate::events::{Event, EventLog};
use crate::health::{Probe, Sampler, Tick};
use crate::pidfile::{self, PidRecord, ServicePidFile, unix_now};
use crate::policy::backoff::{self, Decision};
use crate::policy::breaker::BreakerState;
use crate::policy::health::{Monitor, Status};
use crate::policy::recovery::{Action, Advice, Recovery};
use crate::process::{ExitInfo, SpawnRequest, Spawned, Spawner};
use crate::procinfo;
pub use handle::{Command, Reply, SupervisorHandle};
pub use snapshot::{Detail, RecoveryCount, ServiceSnapshot, Snapshot, State};

/// The slowest a port-less service's checks are polled for readiness.
const READINESS_POLL_MAX: Duration = Duration::from_millis(500);

/// Facts the actor's own tasks report back.
#[derive(Debug)]
enum Fact {
    ChildExited {
        name: String,
        instance: u64,
        exit: ExitInfo,
    },
    BecameReady {
        name: String,
        instance: u64,
    },
    StartupTimedOut {
        name: String,
        instance: u64,
    },
    RestartDue {
        name: String,
        instance: u64,
    },
    GraceExpired {
        name: String,
        instance: u64,
    },
    HealthChecked {
        name: String,
        instance: u64,
        tick: Tick,
    },
    /// A clear_connections step ended (restart and emergency_stop end through the lifecycle).
    RecoveryFinished {
        name: String,
        action: Action,
        result: Result<String, String>,
        took: Duration,
        health: Status,
    },
}

impl Fact {
    fn service(&self) -> &str {
        match self {
            Fact::ChildExited { name, .. }
            | Fact::BecameReady { name, .. }
            | Fact::StartupTimedOut { name, .. }
            | Fact::RestartDue { name, .. }
            | Fact::GraceExpired { name, .. }
            | Fact::HealthChecked { name, .. }
            | Fact::RecoveryFinished { name, .. } => name,
        }
    }
}

struct Service {
    spec: ServiceSpec,
    state: State,
    pid: Option<i32>,
    port: Option<u16>,
    /// Bumped on every spawn and every cancel, so that late facts of an old instance are ignored.
    instance: u64,
    started_at: Option<Instant>,
    restarts: u64,
    failures: u32,
    adopted: bool,
    pidfile: Option<ServicePidFile>,
    last_exit: Option<String>,
    last_error: Option<String>,
    restart_at: Option<Instant>,
    start_after_stop: bool,
    stop_waiters: Vec<oneshot::Sender<Reply>>,
    timed_out: bool,
    /// Cancels this instance's readiness probe, health monitor and grace timer.
    instance_token: CancellationToken,
    /// Cancels only the health monitor (a reload of `health` starts a new one).
    health_token: CancellationToken,
    monitor: Monitor,
    recovery: Recovery,
    last_tick: Option<Tick>,
    last_check_at: Option<f64>,
    checks_by_result: BTreeMap<Status, u64>,
    recoveries: BTreeMap<(Action, bool), u64>,
    /// A restart_service step in flight: when it began and the health that caused it.
    recovery_restart: Option<(Instant, Status)>,
    /// emergency_stop: once the process is gone the service is `failed`.
    fail_after_stop: bool,
    /// Removed by a reload: dropped once its process is gone.
    remove_after_stop: bool,
    start_time: Option<f64>,
    total_failures: u64,
    last_failure: Option<f64>,
}

impl Service {
    fn new(spec: ServiceSpec) -> Self {
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
        }
    }

    /// `guardian start` / `restart`: a fresh retry count and a closed breaker.
    fn reset_by_user(&mut self) {
        self.failures = 0;
        self.recovery = Recovery::default();
        self.fail_after_stop = false;
    }

    fn detail(&self, now: Instant) -> Detail {
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
        }
    }
}

pub struct Supervisor<S: Spawner> {
    config: Config,
    spawner: Arc<S>,
    events: Arc<EventLog>,
    services: BTreeMap<String, Service>,
    commands: mpsc::Receiver<Command>,
    facts_tx: mpsc::UnboundedSender<Fact>,
    facts: mpsc::UnboundedReceiver<Fact>,
    snapshot: watch::Sender<Snapshot>,
    rng: StdRng,
    echo: bool,
    shutting_down: Option<(bool, Vec<oneshot::Sender<Reply>>)>,
    generation: u64,
    reloads_ok: u64,
    reloads_failed: u64,
    last_reload_error: Option<String>,
}

impl<S: Spawner> Supervisor<S> {
    pub fn new(
        config: Config,
        spawner: Arc<S>,
        events: Arc<EventLog>,
        echo: bool,
        seed: u64,
    ) -> (Self, SupervisorHandle) {
        let (tx, commands) = mpsc::channel(64);
        let (facts_tx, facts) = mpsc::unbounded_channel();
        let (snapshot, snapshot_rx) = watch::channel(Snapshot::default());
        let services = config
            .services
            .iter()
            .map(|(name, spec)| (name.to_string(), Service::new(spec.clone())))
            .collect();
        let sup = Supervisor {
            config,
            spawner,
            events,
            services,
            commands,
            facts_tx,
            facts,
            snapshot,
            rng: StdRng::seed_from_u64(seed),
            echo,
            shutting_down: None,
            generation: 0,
            reloads_ok: 0,
            reloads_failed: 0,
            last_reload_error: None,
        };
        (
            sup,
            SupervisorHandle {
                tx,
                snapshot: snapshot_rx,
            },
        )
    }

    /// Adopts or starts every autostart service, then serves until shutdown.
    pub async fn run(mut self, token: CancellationToken) {
        let names: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| s.spec.autostart)
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            self.adopt_or_start(&name);
        }
        self.publish();
        loop {
            // A fact touches one service: only its part of the snapshot is rebuilt.
            let mut only = None;
            tokio::select! {
                Some(cmd) = self.commands.recv() => self.command(cmd),
                Some(fact) = self.facts.recv() => {
                    only = Some(fact.service().to_owned());
                    self.fact(fact);
                }
                _ = token.cancelled(), if self.shutting_down.is_none() => self.begin_shutdown(false, None),
            }
            match only {
                Some(name) => self.publish_one(&name),
                None => self.publish(),
            }
            if self.shutdown_complete() {
                break;
            }
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.config.guardian.state_dir.clone()
    }

    fn record(&self, event: Event) {
        self.events.record(&event);
    }

    fn after(&self, delay: Duration, token: Option<CancellationToken>, fact: Fact) {
        if delay.is_zero() && token.is_none() {
            // No timer for "now": the timer wheel would add up to a millisecond.
            let _ = self.facts_tx.send(fact);
            return;
        }
        let tx = self.facts_tx.clone();
        tokio::spawn(async move {
            match token {
                Some(t) => tokio::select! {
                    _ = tokio::time::sleep(delay) => { let _ = tx.send(fact); }
                    _ = t.cancelled() => {}
                },
                None => {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(fact);
                }
            }
        });
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Start(name, reply) => {
                let r = self.with_service(&name, |sup, name| sup.start_command(name));
                let _ = reply.send(r);
            }
            Command::Stop(name, reply) => {
                if !self.services.contains_key(&name) {
                    let _ = reply.send(Reply::NoSuchService(name));
                    return;
                }
                self.stop(&name, "command", Some(reply));
            }
            Command::Restart(name, reply) => {
                let Some(svc) = self.services.get_mut(&name) else {
                    let _ = reply.send(Reply::NoSuchService(name));
                    return;
                };
                svc.reset_by_user();
                match svc.state {
                    State::Running | State::Starting | State::Stopping => {
                        svc.start_after_stop = true;
                        self.stop(&name, "command", Some(reply));
                    }
                    _ => {
                        self.start(&name, "command");
                        let _ = reply.send(Reply::Done(format!("{name} started")));
                    }
                }
            }
            Command::Reload(loaded, reply) => {
                let r = match self.reload(loaded.map(|c| *c)) {
                    Ok(text) => Reply::Done(text),
                    Err(e) => Reply::Refused(e),
                };
                let _ = reply.send(r);
            }
            Command::Shutdown {
                keep_services,
                reply,
            } => self.begin_shutdown(keep_services, Some(reply)),
        }
    }

    fn with_service(&mut self, name: &str, f: impl FnOnce(&mut Self, &str) -> Reply) -> Reply {
        if self.services.contains_key(name) {
            f(self, name)
        } else {
            Reply::NoSuchService(name.to_owned())
        }
    }

    fn start_command(&mut self, name: &str) -> Reply {
        let svc = self
            .services
            .get_mut(name)
            .expect("UNWRAP: checked by with_service");
        svc.reset_by_user();
        match svc.state {
            State::Running | State::Starting => Reply::Done(format!("{name} is already running")),
            State::Stopping => {
                svc.start_after_stop = true;
                Reply::Done(format!("{name} will start once it has stopped"))
            }
            State::Stopped | State::Failed | State::Backoff => {
                self.start(name, "command");
                Reply::Done(format!("{name} started"))
            }
        }
    }

    /// At guardian start: adopt a live verified instance, or start a fresh one.
    fn adopt_or_start(&mut self, name: &str) {
        let spec = self.services[name].spec.clone();
        let port = spec.port;
        match pidfile::check(&spec.pidfile, &spec.identity, port) {
            Err(e) => self.refuse_start(name, None, e.to_string()),
            Ok((verdict, record)) => match verdict.running {
                Some(pid) if spec.on_orphan == OnOrphan::Fail => {
                    let msg = format!(
                        "a verified instance already runs (pid {pid}) and on_orphan = \"fail\"\n  1. stop it: kill -TERM {pid}\n  2. or let guardian take it over: on_orphan = \"adopt\"\n  look: ps -p {pid} -o pid,ppid,etime,cmd"
                    );
                    self.refuse_start(name, Some(pid), msg);
                }
                Some(pid) => {
                    let ticks = record
                        .as_ref()
                        .and_then(|r| r.start_ticks)
                        .or_else(|| procinfo::facts(pid).map(|f| f.start_ticks));
                    let adopted = ticks
                        .ok_or_else(|| std::io::Error::other("its start time could not be read"))
                        .and_then(|t| self.spawner.adopt(pid, t));
                    match adopted {
                        Ok(spawned) => {
                            let rec_port = record.as_ref().and_then(|r| r.port).or(port);
                            self.watch(name, spawned, rec_port, true);
                            let svc = self
                                .services
                                .get_mut(name)
                                .expect("UNWRAP: name comes from the map");
                            svc.state = State::Running;
                            self.record(
                                Event::new(name, "adopted", "startup", true)
                                    .pid(pid)
                                    .detail(verdict.to_string()),
                            );
                            if spec.on_orphan == OnOrphan::Replace {
                                let svc = self
                                    .services
                                    .get_mut(name)
                                    .expect("UNWRAP: name comes from the map");
                                svc.start_after_stop = true;
                                self.stop(name, "startup", None);
                            }
                        }
                        Err(e) => {
                            self.record(
                                Event::new(name, "adopted", "startup", false)
                                    .pid(pid)
                                    .error(format!(
                                        "cannot watch pid {pid}: {e}; starting a new instance"
                                    )),
                            );
                            self.start(name, "startup");
                        }
                    }
                }
                None => {
                    if verdict.remove_file {
                        self.record(
                            Event::new(name, "stale_pidfile", "startup", true)
                                .detail(verdict.to_string()),
                        );
                    }
                    self.start(name, "startup");
                }
            },
        }
    }

    /// A start guardian will not attempt: recorded, and the service left `failed`.
    fn refuse_start(&mut self, name: &str, pid: Option<i32>, msg: String) {
        let mut event = Event::new(name, "start", "startup", false).error(msg.clone());
        event.pid = pid;
        self.record(event);
        let svc = self
            .services
            .get_mut(name)
            .expect("UNWRAP: callers pass known names");
        svc.state = State::Failed;
        svc.last_error = Some(msg);
    }

    /// Picks the port (fixed, or the first free one of the range); a foreign holder is an error
    /// that names it.
    fn choose_port(spec: &ServiceSpec) -> Result<Option<u16>, String> {
        if let Some(p) = spec.port {
            return match procinfo::port_holder(p) {
                procinfo::PortHolder::Free => Ok(Some(p)),
                procinfo::PortHolder::Pid(f) => Err(format!(
                    "port {p} is held by pid {} ({})\n  1. look: ss -ltnp 'sport = :{p}' ; ps -p {} -o pid,ppid,etime,cmd\n  2. stop that process, or give the service another port",
                    f.pid,
                    f.command_line(),
                    f.pid
                )),
                procinfo::PortHolder::Unknown => Err(format!(
                    "port {p} is held by a process this user cannot see\n  1. look: sudo ss -ltnp 'sport = :{p}'"
                )),
            };
        }
        if let Some([a, b]) = spec.port_range {
            return (a..=b)
                .find(|p| procinfo::listening_inodes(*p).is_empty())
                .map(Some)
                .ok_or_else(|| format!("every port of port_range [{a}, {b}] is taken\n  1. look: ss -ltnp\n  2. widen the range"));
        }
        Ok(None)
    }

    fn start(&mut self, name: &str, trigger: &str) {
        let state_dir = self.state_dir();
        let echo = self.echo;
        let svc = self
            .services
            .get_mut(name)
            .expect("UNWRAP: callers pass known names");
        svc.instance += 1;
        svc.timed_out = false;
        svc.restart_at = None;
        svc.adopted = false;
        let spec = svc.spec.clone();
        let port = match Self::choose_port(&spec) {
            Ok(p) => p,
            Err(msg) => {
                self.record(Event::new(name, "port_conflict", trigger, false).error(msg.clone()));
                return self.failed_start(name, msg);
            }
        };
        let vars = spec.vars(&state_dir, port);
        let command: Result<Vec<String>, String> =
            spec.command.iter().map(|a| expand(a, &vars)).collect();
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &spec.env {
            match expand(v, &vars) {
                Ok(v) => {
                    env.insert(k.clone(), v);
                }
                Err(e) => return self.failed_start(name, e),
            }
        }
        if let (Some(prefix), Some(level)) = (&spec.env_prefix, &spec.log_level) {
            env.insert(format!("{prefix}_LOG_LEVEL"), level.clone());
        }
        let command = match command {
            Ok(c) => c,
            Err(e) => return self.failed_start(name, e),
        };
        let req = SpawnRequest {
            service: name.to_owned(),
            command: command.clone(),
            cwd: spec.cwd.clone(),
            env,
            log_file: spec.log.file.clone(),
            log_max_bytes: spec.log.max_size_mb.saturating_mul(1024 * 1024),
            log_backups: spec.log.backup_count,
            echo,
        };
        match self.spawner.spawn(&req) {
            Err(e) => {
                let msg = e.to_string();
                self.record(Event::new(name, "start", trigger, false).error(msg.clone()));
                self.failed_start(name, msg)
            }
            Ok(spawned) => {
                let pid = spawned.pid;
                self.watch(name, spawned, port, false);
                let record = PidRecord::of(pid, name, &spec.host, port, &command);
                let svc = self.services.get_mut(name).expect("UNWRAP: known name");
                match ServicePidFile::write(&spec.pidfile, &record) {
                    Ok(f) => svc.pidfile = Some(f),
                    Err(e) => {
                        let msg = e.to_string();
                        svc.last_error = Some(msg.clone());
                        self.record(
                            Event::new(name, "pidfile", trigger, false)
                                .pid(pid)
                                .error(msg),
                        );
                    }
                }
                self.record(
                    Event::new(name, "start", trigger, true)
                        .pid(pid)
                        .detail(command.join(" ")),
                );
                self.probe_readiness(name, port);
            }
        }
    }

    /// Tracks a spawned or adopted process as the service's current instance.
    fn watch(&mut self, name: &str, spawned: Spawned, port: Option<u16>, adopted: bool) {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        if adopted {
            svc.instance += 1;
            if let Ok(f) = ServicePidFile::write(
                &svc.spec.pidfile,
                &PidRecord::of(spawned.pid, name, &svc.spec.host, port, &svc.spec.command),
            ) {
                svc.pidfile = Some(f);
            }
        }
        svc.instance_token = CancellationToken::new();
        svc.pid = Some(spawned.pid);
        svc.port = port;
        svc.adopted = adopted;
        svc.state = State::Starting;
        svc.started_at = Some(Instant::now());
        svc.start_time = Some(
            procinfo::facts(spawned.pid)
                .map_or_else(unix_now, |f| procinfo::start_time_secs(f.start_ticks)),
        );
        svc.monitor.restart();
        svc.last_tick = None;
        let (tx, instance, name) = (self.facts_tx.clone(), svc.instance, name.to_owned());
        tokio::spawn(async move {
            let exit = spawned.exited.await;
            let _ = tx.send(Fact::ChildExited {
                name,
                instance,
                exit,
            });
        });
    }

    /// Ready when the port accepts; without a port, at the first healthy round of checks;
    /// with neither, at once.
    fn probe_readiness(&mut self, name: &str, port: Option<u16>) {
        let probe = self.probe_of(name);
        let svc = &self.services[name];
        let (instance, token, timeout) = (
            svc.instance,
            svc.instance_token.clone(),
            svc.spec.startup_timeout,
        );
        if port.is_none() && !probe.as_ref().is_some_and(Probe::has_checks) {
            let _ = self.facts_tx.send(Fact::BecameReady {
                name: name.to_owned(),
                instance,
            });
            return;
        }
        let host = svc.spec.host.clone();
        let every = svc.spec.health.interval.min(READINESS_POLL_MAX);
        let tx = self.facts_tx.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let probe = async {
                let mut sampler = Sampler::default();
                loop {
                    let ready = match (port, &probe) {
                        (Some(port), _) => tokio::net::TcpStream::connect((host.as_str(), port))
                            .await
                            .is_ok(),
                        (None, Some(p)) => p.tick(&mut sampler).await.status == Status::Healthy,
                        (None, None) => true,
                    };
                    if ready {
                        return;
                    }
                    let pause = if port.is_some() {
                        Duration::from_millis(25)
                    } else {
                        every
                    };
                    tokio::time::sleep(pause).await;
                }
            };
            tokio::select! {
                r = tokio::time::timeout(timeout, probe) => {
                    let fact = match r {
                        Ok(()) => Fact::BecameReady { name, instance },
                        Err(_) => Fact::StartupTimedOut { name, instance },
                    };
                    let _ = tx.send(fact);
                }
                _ = token.cancelled() => {}
            }
        });
    }

    /// What the service's checks need, placeholders expanded; `None` when it has no pid.
    fn probe_of(&self, name: &str) -> Option<Probe> {
        let svc = &self.services[name];
        let vars = svc.spec.vars(&self.config.guardian.state_dir, svc.port);
        let checks = svc
            .spec
            .health
            .checks
            .iter()
            .map(|c| match c {
                CheckSpec::Exec { command } => CheckSpec::Exec {
                    command: command
                        .iter()
                        .map(|a| expand(a, &vars).unwrap_or_else(|_| a.clone()))
                        .collect(),
                },
                other => other.clone(),
            })
            .collect();
        Some(Probe {
            host: svc.spec.host.clone(),
            port: svc.port,
            pid: svc.pid?,
            checks,
            resources: svc.spec.health.resources.clone(),
            timeout: svc.spec.health.timeout,
            cwd: svc.spec.cwd.clone(),
        })
    }

    /// Every `interval` while this instance lives: one round of checks, reported as a fact.
    /// Without checks there is nothing to poll: the service is healthy while it runs, and
    /// guardian stays asleep (process facts are read when the API asks).
    fn monitor_health(&mut self, name: &str) {
        let Some(probe) = self.probe_of(name) else {
            return;
        };
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        svc.health_token.cancel();
        if !probe.has_checks() {
            let h = &svc.spec.health;
            svc.monitor.observe(
                Status::Healthy,
                Instant::now(),
                h.unhealthy_threshold,
                h.history_size,
            );
            return;
        }
        svc.health_token = svc.instance_token.child_token();
        let (instance, token, every) = (
            svc.instance,
            svc.health_token.clone(),
            svc.spec.health.interval,
        );
        let tx = self.facts_tx.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let mut sampler = Sampler::default();
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = token.cancelled() => return,
                }
                let tick = tokio::select! {
                    t = probe.tick(&mut sampler) => t,
                    _ = token.cancelled() => return,
                };
                let fact = Fact::HealthChecked {
                    name: name.clone(),
                    instance,
                    tick,
                };
                if tx.send(fact).is_err() {
                    return;
                }
            }
        });
    }

    fn health_checked(&mut self, name: &str, instance: u64, tick: Tick) {
        let Some(svc) = self.current(name, instance, State::Running) else {
            return;
        };
        let now = Instant::now();
        let h = &svc.spec.health;
        let before = svc.monitor.status();
        let status = svc
            .monitor
            .observe(tick.status, now, h.unhealthy_threshold, h.history_size);
        *svc.checks_by_result.entry(tick.status).or_default() += 1;
        svc.last_check_at = Some(unix_now());
        let problems = tick.problems();
        let pid = svc.pid.unwrap_or_default();
        svc.last_tick = Some(tick);
        let threshold = svc.spec.health.unhealthy_threshold;
        let advice = svc
            .recovery
            .observe(&svc.spec.recovery, threshold, status, now);
        if status != before {
            let mut e = Event::new(
                name,
                "health_changed",
                "health_check",
                status == Status::Healthy,
            )
            .pid(pid);
            e.health_status = Some(status.as_str().to_owned());
            e.detail = Some(format!("{} → {}", before.as_str(), status.as_str()));
            if !problems.is_empty() {
                e.error_message = Some(problems.clone());
            }
            self.record(e);
        }
        self.advise(name, advice, status, &problems);
    }

    /// Acts on what the recovery machine said: verdicts and breaker moves become events, and
    /// a step to take is taken.
    fn advise(&mut self, name: &str, advice: Advice, status: Status, problems: &str) {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        if let Some((action, worked)) = advice.judged {
            *svc.recoveries.entry((action, worked)).or_default() += 1;
            let threshold = svc.spec.health.unhealthy_threshold;
            let mut e = Event::new(name, "recovery_verdict", "health_check", worked);
            e.health_status = Some(status.as_str().to_owned());
            if worked {
                e.detail = Some(format!(
                    "{} brought the service back to healthy",
                    action.as_str()
                ));
            } else {
                e.error_message = Some(format!(
                    "{} did not bring the service back to healthy within {threshold} checks (or it failed); the next step is one rung higher",
                    action.as_str()
                ));
            }
            self.record(e);
        }
        if let Some(state) = advice.breaker {
            let b = &self.services[name].spec.recovery.circuit_breaker;
            let text = match state {
                BreakerState::Open => format!(
                    "open: {} failed recoveries; no recovery action for open_timeout {}\n  1. see why: guardian events {name}\n  2. reset it now: guardian restart {name}",
                    b.failure_threshold,
                    crate::config::duration::Secs(b.open_timeout)
                ),
                BreakerState::HalfOpen => {
                    "half_open: open_timeout passed; the next recovery action is a trial".to_owned()
                }
                BreakerState::Closed => {
                    format!("closed after {} successful recoveries", b.success_threshold)
                }
            };
            let mut e = Event::new(
                name,
                "circuit_breaker",
                "health_check",
                state != BreakerState::Open,
            )
            .detail(text);
            e.health_status = Some(status.as_str().to_owned());
            self.record(e);
        }
        if let Some(action) = advice.act {
            self.recover(name, action, status, problems);
        }
    }

    /// Takes one recovery step.
    fn recover(&mut self, name: &str, action: Action, status: Status, problems: &str) {
        let now = Instant::now();
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        let pid = svc.pid;
        match action {
            Action::LogWarning => {
                tracing::warn!(service = name, problems, "health warning");
                self.recovery_finished(
                    name,
                    action,
                    Ok(format!("logged: {problems}")),
                    Duration::ZERO,
                    status,
                );
            }
            Action::ClearConnections => {
                let clear = svc.spec.recovery.clear_connections.clone();
                let (host, port, timeout, cwd) = (
                    svc.spec.host.clone(),
                    svc.port,
                    svc.spec.health.timeout,
                    svc.spec.cwd.clone(),
                );
                let vars = svc.spec.vars(&self.config.guardian.state_dir, port);
                let (tx, name) = (self.facts_tx.clone(), name.to_owned());
                let result = match (&clear, pid) {
                    (Some(ClearConnections::Signal(sig)), Some(pid)) => Some(
                        self.spawner
                            .signal(pid, *sig)
                            .map(|()| format!("sent {} to pid {pid}", sig.as_str()))
                            .map_err(|e| format!("cannot signal pid {pid}: {e}")),
                    ),
                    (_, None) => Some(Err("the service has no process".to_owned())),
                    _ => None,
                };
                if let Some(result) = result {
                    return self.recovery_finished(&name, action, result, Duration::ZERO, status);
                }
                tokio::spawn(async move {
                    let result = match clear {
                        Some(ClearConnections::Http { method, path }) => match port {
                            None => Err("the service has no port".to_owned()),
                            Some(port) => match tokio::time::timeout(
                                timeout,
                                crate::health::http::request_tcp(&host, port, &method, &path),
                            )
                            .await
                            {
                                Err(_) => Err(format!(
                                    "{method} {path}: no answer within {}",
                                    crate::config::duration::Secs(timeout)
                                )),
                                Ok(Err(e)) => Err(format!("{method} {path}: {e}")),
                                Ok(Ok((code, _))) if (200..300).contains(&code) => {
                                    Ok(format!("{method} {path} answered {code}"))
                                }
                                Ok(Ok((code, _))) => {
                                    Err(format!("{method} {path} answered {code}"))
                                }
                            },
                        },
                        Some(ClearConnections::Command(cmd)) => {
                            let cmd: Vec<String> = cmd
                                .iter()
                                .map(|a| expand(a, &vars).unwrap_or_else(|_| a.clone()))
                                .collect();
                            match crate::health::run_command(&cmd, cwd.as_deref(), timeout).await {
                                (Status::Healthy, m) => Ok(format!("{}: {m}", cmd.join(" "))),
                                (_, m) => Err(format!("{}: {m}", cmd.join(" "))),
                            }
                        }
                        _ => Err("clear_connections is not configured".to_owned()),
                    };
                    let _ = tx.send(Fact::RecoveryFinished {
                        name,
                        action,
                        result,
                        took: now.elapsed(),
                        health: status,
                    });
                });
            }
            Action::RestartService => {
                svc.recovery_restart = Some((now, status));
                svc.start_after_stop = true;
                svc.restarts += 1;
                self.stop(name, "health_check", None);
            }
            Action::EmergencyStop => {
                svc.fail_after_stop = true;
                self.stop(name, "health_check", None);
                let svc = &self.services[name];
                let result = match (svc.state, svc.pid) {
                    (State::Stopping, Some(pid)) => {
                        self.spawner.signal_group(name, pid, Signal::SIGKILL);
                        Ok(format!(
                            "sent SIGKILL to the process group of pid {pid}; the service stays failed until: guardian start {name}"
                        ))
                    }
                    _ => Err("the service was not running".to_owned()),
                };
                self.recovery_finished(name, action, result, Duration::ZERO, status);
            }
        }
    }

    /// A recovery step ended: an event with its duration, then its outcome to the machine.
    fn recovery_finished(
        &mut self,
        name: &str,
        action: Action,
        result: Result<String, String>,
        took: Duration,
        health: Status,
    ) {
        let Some(svc) = self.services.get_mut(name) else {
            return;
        };
        let ok = result.is_ok();
        if action == Action::EmergencyStop {
            *svc.recoveries.entry((action, ok)).or_default() += 1;
        }
        let advice = svc
            .recovery
            .finished(&svc.spec.recovery, ok, Instant::now());
        let mut e = Event::new(name, action.as_str(), "health_check", ok);
        e.health_status = Some(health.as_str().to_owned());
        e.duration_ms = Some(took.as_secs_f64() * 1000.0);
        e.pid = svc.pid;
        match result {
            Ok(d) => e.detail = Some(d),
            Err(err) => e.error_message = Some(err),
        }
        self.record(e);
        self.advise(name, advice, health, "");
    }

    /// A restart_service step ends when the new instance is ready, or fails to start.
    fn restart_step_ended(&mut self, name: &str, result: Result<String, String>) {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        if let Some((t0, health)) = svc.recovery_restart.take() {
            self.recovery_finished(name, Action::RestartService, result, t0.elapsed(), health);
        }
    }

    /// Gives a service its spec from a reloaded config; what else happens depends on what
    /// changed.
    fn adopt_spec(&mut self, new: &Config, name: &str) -> &mut Service {
        let svc = self
            .services
            .get_mut(name)
            .expect("UNWRAP: diffed against this config");
        if let Some(spec) = new.services.values().find(|s| s.name.as_str() == name) {
            svc.spec = spec.clone();
        }
        svc
    }

    /// Applies a reloaded config: only what changed is touched. An invalid config (or a
    /// refused change) is counted and leaves everything as it was.
    fn reload(&mut self, loaded: Result<Config, String>) -> Result<String, String> {
        let refuse = |sup: &mut Self, e: String| {
            sup.reloads_failed += 1;
            sup.last_reload_error = Some(e.clone());
            sup.record(Event::new("guardian", "reload", "reload", false).error(e.clone()));
            Err(e)
        };
        let new = match loaded {
            Ok(c) => c,
            Err(e) => return refuse(self, e),
        };
        let d = crate::config::diff::diff(&self.config, &new);
        if let Some(why) = d.refused.clone() {
            return refuse(self, why);
        }
        for name in &d.removed {
            let name = name.as_str();
            if let Some(svc) = self.services.get_mut(name) {
                svc.remove_after_stop = true;
                svc.start_after_stop = false;
                self.stop(name, "reload", None);
            }
        }
        for (name, keys) in &d.restarted {
            let name = name.as_str();
            self.adopt_spec(&new, name);
            self.record(
                Event::new(name, "reload", "reload", true)
                    .detail(format!("restarted: {} changed", keys.join(", "))),
            );
            let svc = self
                .services
                .get_mut(name)
                .expect("UNWRAP: diffed against this config");
            if matches!(
                svc.state,
                State::Running | State::Starting | State::Stopping
            ) {
                svc.start_after_stop = true;
                self.stop(name, "reload", None);
            }
        }
        for (name, keys) in &d.updated {
            let name = name.as_str();
            let svc = self.adopt_spec(&new, name);
            let rewatch = keys.contains(&"health") && svc.state == State::Running;
            if rewatch {
                svc.health_token.cancel();
            }
            self.record(
                Event::new(name, "reload", "reload", true)
                    .detail(format!("policies updated in place: {}", keys.join(", "))),
            );
            if rewatch {
                self.monitor_health(name);
            }
        }
        let g = &new.guardian;
        self.events
            .configure(&g.events_file, g.events_max_bytes(), g.events_backup_count);
        self.config = new;
        for name in &d.added {
            let spec = self.config.services[name].clone();
            let autostart = spec.autostart;
            self.services.insert(name.to_string(), Service::new(spec));
            self.record(Event::new(name.as_str(), "reload", "reload", true).detail("added"));
            if autostart {
                self.adopt_or_start(name.as_str());
            }
        }
        self.generation += 1;
        self.reloads_ok += 1;
        self.last_reload_error = None;
        let text = d.to_string();
        self.record(
            Event::new("guardian", "reload", "reload", true).detail(format!(
                "generation {}: {}",
                self.generation,
                text.trim_end().replace('\n', "; ")
            )),
        );
        Ok(format!("config generation {}\n{text}", self.generation))
    }

    /// A start that did not produce a running process counts toward max_retries.
    fn failed_start(&mut self, name: &str, reason: String) {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        svc.last_error = Some(reason.clone());
        svc.failures = svc.failures.saturating_add(1);
        svc.pid = None;
        svc.total_failures += 1;
        svc.last_failure = Some(unix_now());
        self.restart_step_ended(name, Err(reason));
        self.schedule_restart(name, "start_failed");
    }

    fn schedule_restart(&mut self, name: &str, trigger: &str) {
        if self.shutting_down.is_some() {
            self.services
                .get_mut(name)
                .expect("UNWRAP: known name")
                .state = State::Stopped;
            return;
        }
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        match backoff::decide(&svc.spec.backoff, svc.failures, &mut self.rng) {
            Decision::RestartAfter { delay, attempt } => {
                svc.state = State::Backoff;
                svc.restart_at = Some(Instant::now() + delay);
                let instance = svc.instance;
                let max = svc.spec.backoff.max_retries;
                self.record(
                    Event::new(name, "restart_scheduled", trigger, true).detail(format!(
                        "retry {attempt} of {max} in {}",
                        crate::config::duration::Secs(Duration::from_millis(
                            delay.as_millis() as u64
                        ))
                    )),
                );
                self.after(
                    delay,
                    None,
                    Fact::RestartDue {
                        name: name.to_owned(),
                        instance,
                    },
                );
            }
            Decision::GiveUp { failures } => {
                svc.state = State::Failed;
                svc.restart_at = None;
                let why = svc
                    .last_exit
                    .clone()
                    .or(svc.last_error.clone())
                    .unwrap_or_default();
                let log = svc.spec.log.file.display().to_string();
                self.record(Event::new(name, "failed", trigger, false).error(format!(
                    "{failures} consecutive failed starts (max_retries = {}); last: {why}\n  1. read its output: guardian logs {name}   ({log})\n  2. fix the cause, then: guardian start {name}",
                    failures - 1
                )));
            }
        }
    }

    fn stop(&mut self, name: &str, trigger: &str, reply: Option<oneshot::Sender<Reply>>) {
        let svc = self
            .services
            .get_mut(name)
            .expect("UNWRAP: callers check the name");
        match svc.state {
            State::Running | State::Starting => {
                let pid = svc
                    .pid
                    .expect("UNWRAP: running and starting services have a pid");
                svc.state = State::Stopping;
                svc.stop_waiters.extend(reply);
                let (sig, grace, instance, token) = (
                    svc.spec.stop_signal,
                    svc.spec.shutdown_timeout,
                    svc.instance,
                    svc.instance_token.clone(),
                );
                self.spawner.signal_group(name, pid, sig);
                self.record(
                    Event::new(name, "stop", trigger, true)
                        .pid(pid)
                        .detail(format!("sent {} to the process group", sig.as_str())),
                );
                self.after(
                    grace,
                    Some(token),
                    Fact::GraceExpired {
                        name: name.to_owned(),
                        instance,
                    },
                );
            }
            State::Stopping => svc.stop_waiters.extend(reply),
            State::Backoff => {
                svc.instance += 1;
                svc.state = State::Stopped;
                svc.restart_at = None;
                self.record(Event::new(name, "stopped", trigger, true).detail("restart cancelled"));
                self.after_stopped(name);
                if let Some(r) = reply {
                    let _ = r.send(Reply::Done(format!("{name} stopped")));
                }
            }
            State::Stopped | State::Failed => {
                svc.state = State::Stopped;
                self.after_stopped(name);
                if let Some(r) = reply {
                    let _ = r.send(Reply::Done(format!("{name} is not running")));
                }
            }
        }
    }

    fn after_stopped(&mut self, name: &str) {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        if svc.remove_after_stop {
            svc.instance_token.cancel();
            self.services.remove(name);
            self.record(Event::new(name, "removed", "reload", true));
            return;
        }
        if std::mem::take(&mut svc.start_after_stop) && self.shutting_down.is_none() {
            svc.failures = 0;
            self.start(name, "command");
        }
    }

    /// The service, if `instance` is still its current one and it is in `state`: a fact about
    /// an older instance, or one that arrives after a state change, is ignored.
    fn current(&mut self, name: &str, instance: u64, state: State) -> Option<&mut Service> {
        self.services
            .get_mut(name)
            .filter(|s| s.instance == instance && s.state == state)
    }

    fn fact(&mut self, fact: Fact) {
        match fact {
            Fact::ChildExited {
                name,
                instance,
                exit,
            } => self.exited(&name, instance, exit),
            Fact::BecameReady { name, instance } => {
                let Some(svc) = self.current(&name, instance, State::Starting) else {
                    return;
                };
                svc.state = State::Running;
                let pid = svc.pid.unwrap_or_default();
                let took = svc.started_at.map(|t| t.elapsed().as_secs_f64() * 1000.0);
                let mut e = Event::new(&name, "ready", "startup", true).pid(pid);
                e.duration_ms = took;
                self.record(e);
                self.monitor_health(&name);
                self.restart_step_ended(&name, Ok(format!("running again as pid {pid}")));
            }
            Fact::HealthChecked {
                name,
                instance,
                tick,
            } => self.health_checked(&name, instance, tick),
            Fact::RecoveryFinished {
                name,
                action,
                result,
                took,
                health,
            } => self.recovery_finished(&name, action, result, took, health),
            Fact::StartupTimedOut { name, instance } => {
                let Some(svc) = self.current(&name, instance, State::Starting) else {
                    return;
                };
                svc.timed_out = true;
                let pid = svc.pid.unwrap_or_default();
                let limit = crate::config::duration::Secs(svc.spec.startup_timeout);
                self.spawner.signal_group(&name, pid, Signal::SIGKILL);
                self.record(
                    Event::new(&name, "startup_timeout", "startup", false)
                        .pid(pid)
                        .error(format!(
                            "not ready within startup_timeout {limit}; the process group was killed"
                        )),
                );
            }
            Fact::RestartDue { name, instance } => {
                let Some(svc) = self.current(&name, instance, State::Backoff) else {
                    return;
                };
                svc.restarts += 1;
                self.start(&name, "backoff");
            }
            Fact::GraceExpired { name, instance } => {
                let Some(svc) = self.current(&name, instance, State::Stopping) else {
                    return;
                };
                let pid = svc.pid.unwrap_or_default();
                let grace = crate::config::duration::Secs(svc.spec.shutdown_timeout);
                self.spawner.signal_group(&name, pid, Signal::SIGKILL);
                self.record(Event::new(&name, "kill", "shutdown", true).pid(pid).detail(format!("still running after shutdown_timeout {grace}: sent SIGKILL to the process group")));
            }
        }
    }

    fn exited(&mut self, name: &str, instance: u64, exit: ExitInfo) {
        let Some(svc) = self
            .services
            .get_mut(name)
            .filter(|s| s.instance == instance)
        else {
            return;
        };
        svc.instance_token.cancel();
        let pid = svc.pid.take().unwrap_or_default();
        if let Some(f) = svc.pidfile.take() {
            f.remove();
        }
        // Anything of the service still alive (a grandchild that left the group) goes with it.
        self.spawner.signal_group(name, pid, Signal::SIGKILL);
        let svc = self.services.get_mut(name).expect("UNWRAP: found above");
        let ran = svc.started_at.map_or(Duration::ZERO, |t| t.elapsed());
        let text = if svc.timed_out {
            format!("{exit} after startup_timeout")
        } else {
            exit.to_string()
        };
        svc.last_exit = Some(text.clone());
        if svc.state == State::Stopping {
            svc.state = State::Stopped;
            let waiters = std::mem::take(&mut svc.stop_waiters);
            let done = if svc.start_after_stop {
                format!("{name} restarted")
            } else {
                format!("{name} stopped")
            };
            self.record(
                Event::new(name, "stopped", "command", true)
                    .pid(pid)
                    .detail(text),
            );

            for w in waiters {
                let _ = w.send(Reply::Done(done.clone()));
            }
            let svc = self.services.get_mut(name).expect("UNWRAP: found above");
            if std::mem::take(&mut svc.fail_after_stop) {
                svc.state = State::Failed;
                svc.last_error = Some(format!(
                    "stopped by emergency_stop after failed recoveries\n  1. see why: guardian events {name}\n  2. start it again: guardian start {name}"
                ));
                return;
            }
            self.after_stopped(name);
            return;
        }
        svc.total_failures += 1;
        svc.last_failure = Some(unix_now());
        let was_running = svc.state == State::Running;
        svc.failures = backoff::count_failure(
            &svc.spec.backoff,
            svc.failures,
            if was_running { ran } else { Duration::ZERO },
        );
        let mut e = Event::new(name, "exit", "crash", false)
            .pid(pid)
            .error(text.clone());
        e.duration_ms = Some(ran.as_secs_f64() * 1000.0);
        self.record(e);
        if !was_running {
            self.restart_step_ended(
                name,
                Err(format!(
                    "the new instance ended before it was ready: {text}"
                )),
            );
        }
        self.schedule_restart(name, "crash");
    }

    fn begin_shutdown(&mut self, keep_services: bool, reply: Option<oneshot::Sender<Reply>>) {
        let (_, waiters) = self
            .shutting_down
            .get_or_insert((keep_services, Vec::new()));
        waiters.extend(reply);
        let names: Vec<String> = self.services.keys().rev().cloned().collect();
        for name in names {
            if keep_services {
                let svc = self.services.get_mut(&name).expect("UNWRAP: known name");
                if let Some(f) = svc.pidfile.take() {
                    f.keep();
                }
                svc.instance += 1;
                svc.instance_token.cancel();
                svc.state = State::Stopped;
                svc.pid = None;
            } else {
                self.stop(&name, "shutdown", None);
            }
        }
    }

    fn shutdown_complete(&mut self) -> bool {
        let Some((_, waiters)) = &mut self.shutting_down else {
            return false;
        };
        if self
            .services
            .values()
            .any(|s| matches!(s.state, State::Stopping | State::Starting | State::Running))
        {
            return false;
        }
        for w in waiters.drain(..) {
            let _ = w.send(Reply::Done("guardian stopped".into()));
        }
        true
    }

    fn service_snapshot(name: &str, s: &Service, now: Instant) -> ServiceSnapshot {
        ServiceSnapshot {
            name: name.to_owned(),
            state: s.state,
            pid: s.pid,
            port: s.port,
            uptime_seconds: matches!(s.state, State::Running | State::Starting)
                .then(|| s.started_at.map_or(0.0, |t| (now - t).as_secs_f64())),
            restarts: s.restarts,
            health: if s.state == State::Running {
                s.monitor.status()
            } else {
                Status::Unknown
            },
            circuit_breaker: s.recovery.breaker().state(),
            adopted: s.adopted,
            autostart: s.spec.autostart,
            consecutive_failures: s.failures,
            last_exit: s.last_exit.clone(),
            last_error: s.last_error.clone(),
            next_restart_in: s
                .restart_at
                .map(|t| t.saturating_duration_since(now).as_secs_f64()),
            detail: s.detail(now),
        }
    }

    /// Rebuilds one service's entry (it is always present: names only change on reload).
    fn publish_one(&self, name: &str) {
        let Some(s) = self.services.get(name) else {
            return self.publish();
        };
        let entry = Self::service_snapshot(name, s, Instant::now());
        self.snapshot.send_modify(|snap| {
            match snap
                .services
                .binary_search_by(|x| x.name.as_str().cmp(name))
            {
                Ok(i) => snap.services[i] = entry,
                Err(i) => snap.services.insert(i, entry),
            }
        });
    }

    fn publish(&self) {
        let now = Instant::now();
        let services = self
            .services
            .iter()
            .map(|(name, s)| Self::service_snapshot(name, s, now))
            .collect();
        let metrics_file = Some(self.config.guardian.metrics_file.clone());
        self.snapshot.send_modify(|snap| {
            snap.services = services;
            snap.metrics_file = metrics_file;
            snap.config_generation = self.generation;
            snap.reloads_ok = self.reloads_ok;
            snap.reloads_failed = self.reloads_failed;
            snap.last_reload_error = self.last_reload_error.clone();
        });
    }
}
