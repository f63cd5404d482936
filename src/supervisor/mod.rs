//! The actor: sole owner of every service's state. One `select!` loop takes commands from the
//! handle and past-tense facts from its own tasks (exits, readiness, timers), decides with
//! `policy`, acts through a `Spawner`, and publishes a snapshot after each step.

pub mod handle;
pub mod snapshot;
#[cfg(test)]
mod tests;

mod handoff;
mod health;
mod lifecycle;
mod notify;
mod recovery;
mod reload;
mod service;
mod stack;

pub use lifecycle::notify_socket;

use std::collections::{BTreeMap, BTreeSet};
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
use crate::policy::backoff::{self, Decision};
use crate::policy::breaker::BreakerState;
use crate::policy::health::{Monitor, Status};
use crate::policy::recovery::{Action, Advice, Recovery};
use crate::process::pidfile::{self, PidRecord, ServicePidFile, unix_now};
use crate::process::procinfo;
use crate::process::{ExitInfo, SpawnRequest, Spawned, Spawner};
pub use handle::{Command, ReloadRequest, Reply, SupervisorHandle};
use notify::extended;
use service::Service;
pub use snapshot::{Detail, RecoveryCount, ServiceSnapshot, Snapshot, State};

/// The slowest a port-less service's checks are polled for readiness.
const READINESS_POLL_MAX: Duration = Duration::from_millis(500);

/// Facts the actor's own tasks report back.
#[derive(Debug)]
enum Fact {
    ChildExited {
        name: String,
        instance: u64,
        /// Which process: after `MAINPID=` the instance's first one may end on its own.
        pid: i32,
        exit: ExitInfo,
    },
    /// The watchdog's period has passed: was there a `WATCHDOG=1`?
    WatchdogDue {
        name: String,
        instance: u64,
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
    /// A start-first restart's old instance has drained for its shutdown_timeout.
    DrainExpired {
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
            | Fact::WatchdogDue { name, .. }
            | Fact::DrainExpired { name, .. }
            | Fact::StartupTimedOut { name, .. }
            | Fact::RestartDue { name, .. }
            | Fact::GraceExpired { name, .. }
            | Fact::HealthChecked { name, .. }
            | Fact::RecoveryFinished { name, .. } => name,
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
    shutting_down: Option<(bool, Vec<oneshot::Sender<Reply>>)>,
    generation: u64,
    reloads_ok: u64,
    reloads_failed: u64,
    last_reload_error: Option<String>,
    /// Services in `waiting` or `blocked`: re-decided whenever something changes.
    gated: BTreeSet<String>,
    /// Services changed by a step besides the one its fact was about: republished.
    touched: BTreeSet<String>,
    /// sd_notify messages dropped (foreign sender, too long, queue full): shared with the
    /// handle, which the reader and /metrics use.
    notify_dropped: Arc<std::sync::atomic::AtomicU64>,
    /// `first_turn` has run.
    first_turn_taken: bool,
    /// Starts queued by `batched`, spawned together when it ends.
    batch: Option<Vec<(lifecycle::PendingStart, SpawnRequest)>>,
    ordered: stack::OrderedStop,
    /// Rolling restarts in progress, by declared service.
    rolling: BTreeMap<String, stack::Rolling>,
    /// Set when an essential service ended for good: guardian's exit code (SPEC §14).
    exit_code: Option<i32>,
}

/// Test builds only: sleeps for the milliseconds the variable `var` gives, if set, so a
/// test can make one step of start-up late.
#[cfg(debug_assertions)]
pub(crate) async fn stall_for_tests(var: &str) {
    if let Some(ms) = std::env::var(var).ok().and_then(|v| v.parse().ok()) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

impl<S: Spawner> Supervisor<S> {
    pub fn new(
        config: Config,
        spawner: Arc<S>,
        events: Arc<EventLog>,
        seed: u64,
    ) -> (Self, SupervisorHandle) {
        let (tx, commands) = mpsc::channel(64);
        let (facts_tx, facts) = mpsc::unbounded_channel();
        let (snapshot, snapshot_rx) = watch::channel(Snapshot::default());
        let notify_dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let services = config
            .instances()
            .map(|spec| (spec.name.to_string(), Service::new(spec)))
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
            shutting_down: None,
            generation: 0,
            reloads_ok: 0,
            reloads_failed: 0,
            last_reload_error: None,
            gated: BTreeSet::new(),
            touched: BTreeSet::new(),
            batch: None,
            ordered: stack::OrderedStop::default(),
            rolling: BTreeMap::new(),
            exit_code: None,
            notify_dropped: notify_dropped.clone(),
            first_turn_taken: false,
        };
        (
            sup,
            SupervisorHandle {
                tx,
                snapshot: snapshot_rx,
                notify_dropped,
            },
        )
    }

    /// The first turn: adopts or starts every autostart service. It needs no runtime (the
    /// tasks it asks for wait for one, see `process::tasks`), so `guardian run` may take it
    /// before building its own; otherwise `run` does.
    pub fn first_turn(&mut self) {
        if self.first_turn_taken {
            return;
        }
        self.first_turn_taken = true;
        let names: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| s.spec.autostart)
            .map(|(n, _)| n.clone())
            .collect();
        self.batched(|sup| {
            for name in names {
                sup.adopt_or_start(&name);
            }
        });
        self.touched.clear();
        self.publish();
    }

    /// Takes the first turn (unless taken), then serves until shutdown. Returns the exit
    /// code of the essential service whose end stopped guardian, if one did.
    pub async fn run(mut self, token: CancellationToken) -> Option<i32> {
        // Test builds: the engine's first turn made late, so a test can ask the API first.
        #[cfg(debug_assertions)]
        if !self.first_turn_taken {
            stall_for_tests("_GUARDIAN_TEST_ENGINE_STALL_MS").await;
        }
        self.first_turn();
        loop {
            // A fact touches one service: only its part of the snapshot is rebuilt.
            let mut only = None;
            tokio::select! {
                Some(cmd) = self.commands.recv() => {
                    // Test builds: the loop stops turning for a while, as a wedged engine's
                    // would (only this task waits; the runtime's threads go on).
                    #[cfg(debug_assertions)]
                    if let Command::Stall(d) = cmd {
                        tokio::time::sleep(d).await;
                        continue;
                    }
                    // An sd_notify message touches one service at most, and a ping nothing
                    // that `/status` shows: a thousand pings a second rebuild no snapshot.
                    if let Command::Notify { from, notice } = cmd {
                        match self.notified(&from, notice) {
                            Some(name) => only = Some(name),
                            None => continue,
                        }
                    } else {
                        self.command(cmd)
                    }
                }
                Some(fact) = self.facts.recv() => {
                    // A watchdog period that passed with its pings in time changes nothing
                    // shown: no publish.
                    if let Fact::WatchdogDue { name, instance } = &fact
                        && !self.watchdog_due(name, *instance)
                    {
                        continue;
                    }
                    only = Some(fact.service().to_owned());
                    self.fact(fact);
                }
                _ = token.cancelled(), if self.shutting_down.is_none() => self.begin_shutdown(false, None),
            }
            self.advance_stops();
            self.settle();
            match only {
                Some(name) => {
                    self.publish_one(&name);
                    for other in std::mem::take(&mut self.touched) {
                        self.publish_one(&other);
                    }
                }
                None => {
                    self.touched.clear();
                    self.publish();
                }
            }
            if self.shutdown_complete() {
                return self.exit_code;
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
        // From now, though the timer may be made later (a first start's, once the runtime
        // exists).
        let due = tokio::time::Instant::now() + delay;
        crate::process::tasks::spawn(async move {
            match token {
                Some(t) => tokio::select! {
                    _ = tokio::time::sleep_until(due) => { let _ = tx.send(fact); }
                    _ = t.cancelled() => {}
                },
                None => {
                    tokio::time::sleep_until(due).await;
                    let _ = tx.send(fact);
                }
            }
        });
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Start(name, reply) => {
                let names = self.resolve(&name);
                match names.len() {
                    0 => drop(reply.send(Reply::NoSuchService(name))),
                    1 => drop(reply.send(self.start_command(&names[0]))),
                    _ => self.fan_out(names, reply, |sup, n, r| {
                        let _ = r.send(sup.start_command(n));
                    }),
                }
            }
            Command::Stop(name, reply) => {
                let names = self.resolve(&name);
                match names.len() {
                    0 => drop(reply.send(Reply::NoSuchService(name))),
                    1 => self.stop(&names[0], "command", Some(reply)),
                    _ => self.fan_out(names, reply, |sup, n, r| sup.stop(n, "command", Some(r))),
                }
            }
            Command::Restart(name, reply) => {
                let names = self.resolve(&name);
                match names.len() {
                    0 => drop(reply.send(Reply::NoSuchService(name))),
                    1 => self.restart_command(&names[0], reply),
                    _ => self.roll(&name, names, reply),
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
            Command::Ping(reply) => drop(reply.send(Reply::Done("pong".into()))),
            Command::Notify { from, notice } => drop(self.notified(&from, notice)),
            // Handled in the loop itself, which it holds up.
            #[cfg(debug_assertions)]
            Command::Stall(_) => {}
        }
    }

    fn restart_command(&mut self, name: &str, reply: oneshot::Sender<Reply>) {
        let svc = self.services.get_mut(name).expect("UNWRAP: resolved");
        svc.reset_by_user();
        let mut reply = Some(reply);
        if self.start_first(name, &mut reply) {
            return;
        }
        let reply = reply.expect("UNWRAP: start_first keeps it when it returns false");
        let svc = self.services.get_mut(name).expect("UNWRAP: resolved");
        match svc.state {
            State::Running | State::Starting | State::Stopping => {
                svc.start_after_stop = true;
                self.stop(name, "command", Some(reply));
            }
            _ => {
                self.request_start(name, "command");
                let _ = reply.send(self.start_reply(name));
            }
        }
    }

    /// What a start command answers: started, or what it waits for.
    fn start_reply(&self, name: &str) -> Reply {
        let svc = &self.services[name];
        match (&svc.waiting_for, svc.state) {
            (Some(w), State::Waiting | State::Blocked) => Reply::Done(format!("{name}: {w}")),
            _ => Reply::Done(format!("{name} started")),
        }
    }

    fn start_command(&mut self, name: &str) -> Reply {
        let svc = self.services.get_mut(name).expect("UNWRAP: resolved");
        svc.reset_by_user();
        match svc.state {
            State::Running | State::Starting => Reply::Done(format!("{name} is already running")),
            State::Stopping => {
                svc.start_after_stop = true;
                Reply::Done(format!("{name} will start once it has stopped"))
            }
            State::Stopped
            | State::Failed
            | State::Backoff
            | State::Completed
            | State::Waiting
            | State::Blocked
            | State::Draining => {
                self.request_start(name, "command");
                self.start_reply(name)
            }
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
                pid,
                exit,
            } => self.exited(&name, instance, pid, exit),
            // Judged in the loop (`watchdog_due`), which hands over only the verdicts.
            Fact::WatchdogDue { .. } => {}
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
                self.arm_watchdog(&name);
                self.restart_step_ended(&name, Ok(format!("running again as pid {pid}")));
                self.roll_on(&name);
                self.drain_old(&name);
            }
            Fact::DrainExpired { name, instance } => self.drain_expired(&name, instance),
            Fact::HealthChecked {
                name,
                instance,
                tick,
            } => self.health_checked(&name, instance, tick, "health_check"),
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
                if let Some(later) = extended(svc) {
                    let token = Some(svc.instance_token.clone());
                    return self.after(later, token, Fact::StartupTimedOut { name, instance });
                }
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
                self.request_start(&name, "backoff");
            }
            Fact::GraceExpired { name, instance } => {
                let Some(svc) = self.current(&name, instance, State::Stopping) else {
                    return;
                };
                if let Some(later) = extended(svc) {
                    let token = Some(svc.instance_token.clone());
                    return self.after(later, token, Fact::GraceExpired { name, instance });
                }
                let pid = svc.pid.unwrap_or_default();
                let grace = crate::config::duration::Secs(svc.spec.shutdown_timeout);
                self.spawner.signal_group(&name, pid, Signal::SIGKILL);
                self.record(Event::new(&name, "kill", "shutdown", true).pid(pid).detail(format!("still running after shutdown_timeout {grace}: sent SIGKILL to the process group")));
            }
        }
    }

    fn service_snapshot(name: &str, s: &Service, now: Instant) -> ServiceSnapshot {
        ServiceSnapshot {
            name: name.to_owned(),
            state: s.state,
            pid: s.pid,
            port: s.port,
            // Both computed when read (`Snapshot::at`).
            uptime_seconds: None,
            next_restart_in: None,
            started_at: s
                .started_at
                .filter(|_| matches!(s.state, State::Running | State::Starting)),
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
            restart_at: s.restart_at,
            waiting_for: s
                .waiting_for
                .clone()
                .filter(|_| matches!(s.state, State::Waiting | State::Blocked)),
            exit_code: s.exit_code,
            replica_of: (s.spec.replicas > 1).then(|| s.spec.group.to_string()),
            env: s.public_env.clone(),
            status_text: s.status_text.clone(),
            last_watchdog: None,
            watchdog_ping: s
                .spec
                .watchdog
                .map(|_| snapshot::LastPing(s.notify.last_ping.clone())),
            errno: s.notify.errno,
            sockets: s
                .spec
                .sockets
                .iter()
                .map(|(n, l)| (n.clone(), l.to_string()))
                .collect(),
            revision: 0,
            detail: s.detail(now),
        }
    }

    /// Rebuilds one service's entry (it is always present: names only change on reload).
    fn publish_one(&self, name: &str) {
        let Some(s) = self.services.get(name) else {
            return self.publish();
        };
        let mut entry = Self::service_snapshot(name, s, Instant::now());
        self.snapshot.send_modify(|snap| {
            match snap
                .services
                .binary_search_by(|x| x.name.as_str().cmp(name))
            {
                Ok(i) => {
                    entry.revision = if snap.services[i].same_status(&entry) {
                        snap.services[i].revision
                    } else {
                        snap.revision += 1;
                        snap.revision
                    };
                    snap.services[i] = entry;
                }
                Err(i) => {
                    snap.revision += 1;
                    entry.revision = snap.revision;
                    snap.services.insert(i, entry);
                }
            }
        });
    }

    fn publish(&self) {
        let now = Instant::now();
        let mut services: Vec<ServiceSnapshot> = Vec::with_capacity(self.services.len());
        for (name, s) in &self.services {
            services.push(Self::service_snapshot(name, s, now));
            // A start-first restart's old instance: its own row, right after (names sort so).
            if let Some(d) = &s.draining {
                services.push(ServiceSnapshot {
                    name: format!("{name}.draining"),
                    state: State::Draining,
                    pid: Some(d.pid),
                    port: s.port,
                    started_at: d.started_at,
                    autostart: s.spec.autostart,
                    replica_of: Some(name.clone()),
                    last_exit: None,
                    ..ServiceSnapshot::default()
                });
            }
        }
        let metrics_file = Some(self.config.guardian.metrics_file.clone());
        self.snapshot.send_modify(|snap| {
            // Entries are sorted by name in both: an unchanged one keeps its revision.
            let next = snap.revision + 1;
            let mut changed = services.len() != snap.services.len();
            for entry in &mut services {
                entry.revision = match snap
                    .services
                    .binary_search_by(|x| x.name.as_str().cmp(&entry.name))
                {
                    Ok(i) if snap.services[i].same_status(entry) => snap.services[i].revision,
                    _ => {
                        changed = true;
                        next
                    }
                };
            }
            if changed {
                snap.revision = next;
            }
            snap.services = services;
            snap.metrics_file = metrics_file;
            snap.config_generation = self.generation;
            snap.reloads_ok = self.reloads_ok;
            snap.reloads_failed = self.reloads_failed;
            snap.last_reload_error = self.last_reload_error.clone();
        });
    }
}
