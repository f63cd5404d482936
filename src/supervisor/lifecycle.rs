//! Lifecycle: adopting or starting an instance, readiness, exits, backoff, stopping and
//! shutdown.

use super::*;
use crate::config::{Readiness, ServiceSpec, Vars};
use crate::policy::deps::{self, AfterExit};
use crate::policy::redact::Secrets;

/// At most this many starts are queued before they are spawned: enough to keep the spawning
/// thread busy, and a bound on what a batch holds at once (each start's command and
/// environment, a few KB), whatever the size of the stack.
const BATCH: usize = 128;

/// A start whose spawn is queued (see `batched`): what handling its result needs.
pub(super) struct PendingStart {
    name: String,
    trigger: String,
    port: Option<u16>,
    command: Vec<String>,
    /// The command line as the start event shows it, secrets redacted.
    shown: String,
}

impl<S: Spawner> Supervisor<S> {
    /// At guardian start: adopt a live verified instance, or start a fresh one.
    pub(super) fn adopt_or_start(&mut self, name: &str) {
        // An old instance a crashed guardian left draining is stopped first.
        self.finish_left_drain(name);
        let spec = self.services[name].spec.clone();
        let port = spec.watched_port();
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
                            self.arm_watchdog(name);
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
                            self.request_start(name, "startup");
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
                    self.request_start(name, "startup");
                }
            },
        }
    }

    /// A start guardian will not attempt: recorded, and the service left `failed`.
    pub(super) fn refuse_start(&mut self, name: &str, pid: Option<i32>, msg: String) {
        let mut event = Event::new(name, "start", "startup", false).error(msg.clone());
        event.pid = pid;
        self.record(event);
        let svc = self
            .services
            .get_mut(name)
            .expect("UNWRAP: callers pass known names");
        svc.state = State::Failed;
        svc.last_error = Some(msg);
        self.ended_for_good(name, 1);
    }

    /// Picks the port (fixed, or the first free one of the range); a foreign holder is an error
    /// that names it.
    pub(super) fn choose_port(spec: &ServiceSpec) -> Result<Option<u16>, String> {
        if !spec.sockets.is_empty() {
            // guardian holds it (SPEC §13).
            return Ok(spec.port);
        }
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

    pub(super) fn start(&mut self, name: &str, trigger: &str) {
        let state_dir = self.state_dir();
        let echo = self.config.guardian.echo;
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
        let me = nix::unistd::Uid::effective();
        if let Some(uid) = spec.uid
            && !me.is_root()
            && uid != me.as_raw()
        {
            let user = spec.user.clone().unwrap_or_default();
            return self.refuse_start(
                name,
                None,
                format!(
                    "user = \"{user}\" needs guardian to run as root (it runs as uid {me}); not retried\n  1. run guardian as root (its unit, or sudo)\n  2. or remove `user` from services.{}",
                    spec.group
                ),
            );
        }
        // Lowest first: guardian's own environment (inherited), env_file, env.
        let mut env: BTreeMap<String, String> = spec.env_from_files.clone();
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
        let public: BTreeMap<String, String> = env
            .iter()
            .filter(|(k, _)| spec.is_public_env(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        if svc.public_env.as_deref() != Some(&public) {
            svc.public_env = (!public.is_empty()).then(|| Arc::new(public));
        }
        let mut req = SpawnRequest {
            service: name.to_owned(),
            command: command.clone(),
            cwd: spec.cwd.clone(),
            env,
            log_file: spec.log.file.clone(),
            log_max_bytes: spec.log.max_size_mb.saturating_mul(1024 * 1024),
            log_backups: spec.log.backup_count,
            echo,
            run_as: crate::process::RunAs {
                uid: spec.uid,
                gid: spec.gid,
                umask: spec.umask,
                limits: spec.limits.iter().map(|(l, v)| (*l, *v)).collect(),
            },
            sockets: spec
                .sockets
                .iter()
                .map(|(n, l)| (n.clone(), l.to_string()))
                .collect(),
            watchdog_pid: spec.watchdog.is_some(),
            ready_line: match &spec.ready {
                Some(Readiness::Log(_)) => svc.ready_pattern(),
                _ => None,
            },
        };
        let pending = PendingStart {
            name: name.to_owned(),
            trigger: trigger.to_owned(),
            port,
            shown: shown_command(&spec, &vars, &command, &req.env),
            command,
        };
        // guardian's own, not the service's: never masked as secrets (SPEC §14).
        req.env.insert(
            "NOTIFY_SOCKET".to_owned(),
            notify_socket(&state_dir).display().to_string(),
        );
        if let Some(d) = spec.watchdog {
            req.env
                .insert("WATCHDOG_USEC".to_owned(), d.as_micros().to_string());
        }
        if let Some(batch) = &mut self.batch {
            batch.push((pending, req));
            if batch.len() >= BATCH {
                self.spawn_batch();
            }
            return;
        }
        let result = self.spawner.spawn(&req);
        self.started(pending, result);
    }

    /// Runs `f`, whose starts are queued, then spawns them all at once and handles each
    /// result as it arrives, while the spawning thread goes on with the next: a thousand
    /// services start at the pace of the spawns, not of spawns plus PID files. Services that
    /// those starts release (dependencies) start in the next round, until none is left.
    /// Nested, it runs `f` in the outer batch.
    pub(super) fn batched(&mut self, f: impl FnOnce(&mut Self)) {
        if self.batch.is_some() {
            return f(self);
        }
        self.batch = Some(Vec::new());
        f(self);
        loop {
            self.release_gated();
            if self.batch.as_ref().is_none_or(Vec::is_empty) {
                break;
            }
            self.spawn_batch();
        }
        self.batch = None;
    }

    /// Spawns what the batch holds (it stays open for more) and handles each result.
    fn spawn_batch(&mut self) {
        let queued = self.batch.replace(Vec::new()).unwrap_or_default();
        let (pending, reqs): (Vec<PendingStart>, Vec<SpawnRequest>) = queued.into_iter().unzip();
        let spawner = self.spawner.clone();
        for (p, result) in pending.into_iter().zip(spawner.spawn_many(&reqs)) {
            self.started(p, result);
        }
    }

    /// What follows a spawn: watching the process, its PID file, the start event.
    fn started(&mut self, p: PendingStart, result: Result<Spawned, crate::process::SpawnError>) {
        let (name, trigger, port) = (p.name.as_str(), p.trigger.as_str(), p.port);
        match result {
            Err(e) => {
                let msg = e.to_string();
                self.record(Event::new(name, "start", trigger, false).error(msg.clone()));
                self.failed_start(name, msg)
            }
            Ok(spawned) => {
                let (pid, ticks) = (spawned.pid, spawned.start_ticks);
                self.watch(name, spawned, port, false);
                let svc = self.services.get_mut(name).expect("UNWRAP: known name");
                let record = PidRecord::of(pid, ticks, name, &svc.spec.host, port, &p.command);
                match ServicePidFile::write(&svc.spec.pidfile, &record) {
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
                        .detail(p.shown),
                );
                self.probe_readiness(name, port);
            }
        }
    }

    /// Tracks a spawned or adopted process as the service's current instance.
    pub(super) fn watch(&mut self, name: &str, spawned: Spawned, port: Option<u16>, adopted: bool) {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        if adopted {
            svc.instance += 1;
            if let Ok(f) = ServicePidFile::write(
                &svc.spec.pidfile,
                &PidRecord::of(
                    spawned.pid,
                    spawned.start_ticks,
                    name,
                    &svc.spec.host,
                    port,
                    &svc.spec.command,
                ),
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
            spawned
                .start_ticks
                .map_or_else(unix_now, procinfo::start_time_secs),
        );
        svc.monitor.restart();
        svc.last_tick = None;
        svc.status_text = None;
        let mut spawned = spawned;
        svc.notify = super::service::NotifyFacts {
            ready_line: spawned.ready_line.take(),
            ..Default::default()
        };
        let instance = svc.instance;
        self.report_exit(name, instance, spawned);
    }

    /// Sends `ChildExited` for `instance` once the process has ended.
    pub(super) fn report_exit(&self, name: &str, instance: u64, spawned: Spawned) {
        let (tx, name, pid) = (self.facts_tx.clone(), name.to_owned(), spawned.pid);
        crate::process::tasks::spawn(async move {
            let exit = spawned.exited.await;
            let _ = tx.send(Fact::ChildExited {
                name,
                instance,
                pid,
                exit,
            });
        });
    }

    /// Ready as `ready` says (SPEC §14); unset, when the port accepts, else at the first
    /// healthy round of checks, else at once. One deadline bounds every kind:
    /// `startup_timeout`, which `EXTEND_TIMEOUT_USEC` may move.
    pub(super) fn probe_readiness(&mut self, name: &str, port: Option<u16>) {
        let probe = self.probe_of(name);
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        // A held socket always accepts: readiness is then the first healthy round, if any.
        let port = port.filter(|_| svc.spec.sockets.is_empty());
        let (instance, token, timeout) = (
            svc.instance,
            svc.instance_token.clone(),
            svc.spec.startup_timeout,
        );
        let ready_line = svc.notify.ready_line.take();
        let (port, probe, waits) = match &svc.spec.ready {
            None | Some(Readiness::Port) => (port, probe, Waits::Probe),
            Some(Readiness::Healthy) => (None, probe, Waits::Probe),
            Some(Readiness::Started) => (None, None, Waits::Probe),
            // READY=1 arrives as a command (`notified`); only the deadline runs here.
            Some(Readiness::Notify) => (None, None, Waits::Notify),
            Some(Readiness::Log(_)) => (None, None, Waits::Line(ready_line)),
        };
        let tx = self.facts_tx.clone();
        let became = Fact::BecameReady {
            name: name.to_owned(),
            instance,
        };
        if matches!(waits, Waits::Probe)
            && port.is_none()
            && !probe.as_ref().is_some_and(Probe::has_checks)
        {
            let _ = tx.send(became);
            return;
        }
        self.after(
            timeout,
            Some(token.clone()),
            Fact::StartupTimedOut {
                name: name.to_owned(),
                instance,
            },
        );
        let svc = &self.services[name];
        let (host, every) = (
            svc.spec.host.clone(),
            svc.spec.health.interval.min(READINESS_POLL_MAX),
        );
        if matches!(waits, Waits::Notify) {
            return;
        }
        let ready = async move {
            match waits {
                Waits::Notify => {}
                // The pump fires it at the first matching line; gone with the process.
                Waits::Line(Some(rx)) => match rx.await {
                    Ok(()) => {}
                    Err(_) => std::future::pending().await,
                },
                Waits::Line(None) => std::future::pending().await,
                Waits::Probe => {
                    let mut sampler = Sampler::default();
                    loop {
                        let ready = match (port, &probe) {
                            (Some(port), _) => {
                                tokio::net::TcpStream::connect((host.as_str(), port))
                                    .await
                                    .is_ok()
                            }
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
                }
            }
        };
        crate::process::tasks::spawn(async move {
            tokio::select! {
                () = ready => { let _ = tx.send(became); }
                _ = token.cancelled() => {}
            }
        });
    }

    /// A start that did not produce a running process counts toward max_retries.
    pub(super) fn failed_start(&mut self, name: &str, reason: String) {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        svc.last_error = Some(reason.clone());
        svc.failures = svc.failures.saturating_add(1);
        svc.pid = None;
        svc.total_failures += 1;
        svc.last_failure = Some(unix_now());
        self.roll_failed(name, &reason);
        self.restart_step_ended(name, Err(reason));
        self.schedule_restart(name, "start_failed");
    }

    pub(super) fn schedule_restart(&mut self, name: &str, trigger: &str) {
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
                let code = svc.last_status.unwrap_or(1);
                self.record(Event::new(name, "failed", trigger, false).error(format!(
                    "{failures} consecutive failed starts (max_retries = {}); last: {why}\n  1. read its output: guardian logs {name}   ({log})\n  2. fix the cause, then: guardian start {name}",
                    failures - 1
                )));
                self.ended_for_good(name, code);
            }
        }
    }

    pub(super) fn stop(
        &mut self,
        name: &str,
        trigger: &str,
        reply: Option<oneshot::Sender<Reply>>,
    ) {
        // A start-first restart under way: the old instance is stopped too.
        self.stop_draining(name);
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
                svc.notify.extended_until = None;
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
            State::Completed => {
                self.after_stopped(name);
                if let Some(r) = reply {
                    let _ = r.send(Reply::Done(format!("{name} has completed: not running")));
                }
            }
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
            State::Stopped | State::Failed | State::Waiting | State::Blocked | State::Draining => {
                svc.state = State::Stopped;
                svc.waiting_for = None;
                self.after_stopped(name);
                if let Some(r) = reply {
                    let _ = r.send(Reply::Done(format!("{name} is not running")));
                }
            }
        }
    }

    pub(super) fn after_stopped(&mut self, name: &str) {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        if svc.remove_after_stop {
            svc.instance_token.cancel();
            self.services.remove(name);
            self.record(Event::new(name, "removed", "reload", true));
            return;
        }
        if std::mem::take(&mut svc.start_after_stop) && self.shutting_down.is_none() {
            svc.failures = 0;
            self.request_start(name, "command");
        }
    }

    pub(super) fn exited(&mut self, name: &str, instance: u64, pid: i32, exit: ExitInfo) {
        if self.drained(name, instance, exit) {
            return;
        }
        let Some(svc) = self
            .services
            .get_mut(name)
            .filter(|s| s.instance == instance)
        else {
            return;
        };
        // Only the tracked process's end is the service's: not the first process of an
        // instance that said MAINPID= for another, nor a second report once it is gone.
        if svc.pid != Some(pid) {
            return;
        }
        svc.instance_token.cancel();
        let pid = svc.pid.take().unwrap_or_default();
        if let Some(f) = svc.pidfile.take() {
            f.remove();
        }
        // Anything of the service still alive (a grandchild that left the group) goes with it.
        self.spawner.signal_group(name, pid, Signal::SIGKILL);
        let svc = self.services.get_mut(name).expect("UNWRAP: found above");
        let ran = svc.started_at.map_or(Duration::ZERO, |t| t.elapsed());
        let mut text = if svc.timed_out {
            format!("{exit} after startup_timeout")
        } else {
            exit.to_string()
        };
        if let Some(errno) = svc.notify.errno {
            let desc = nix::errno::Errno::from_raw(errno).desc();
            text.push_str(&format!(" (it said ERRNO={errno}: {desc})"));
        }
        svc.last_exit = Some(text.clone());
        let group = svc.spec.group.to_string();
        if svc.state == State::Stopping {
            if svc.start_after_stop {
                self.restart_dependents(&group);
            }
            let svc = self.services.get_mut(name).expect("UNWRAP: found above");
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
        svc.exit_code = exit.code;
        svc.last_status = Some(exit.status());
        let was_running = svc.state == State::Running;
        let after = deps::after_exit(svc.spec.restart, exit.code == Some(0));
        if after == AfterExit::Complete {
            svc.state = State::Completed;
            svc.failures = 0;
            let mut e = Event::new(name, "completed", "exit", true)
                .pid(pid)
                .detail(format!(
                    "{text}; restart = \"{}\"",
                    svc.spec.restart.as_str()
                ));
            e.duration_ms = Some(ran.as_secs_f64() * 1000.0);
            self.record(e);
            self.restart_step_ended(name, Ok(format!("{name} completed")));
            self.roll_on(name);
            self.ended_for_good(name, exit.status());
            return;
        }
        svc.total_failures += 1;
        svc.last_failure = Some(unix_now());
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
        if !was_running && self.new_instance_failed(name, &text) {
            return;
        }
        if !was_running {
            let why = format!("the new instance ended before it was ready: {text}");
            self.roll_failed(name, &why);
            self.restart_step_ended(name, Err(why));
        }
        if after == AfterExit::Fail {
            let svc = self.services.get_mut(name).expect("UNWRAP: found above");
            svc.state = State::Failed;
            let log = svc.spec.log.file.display().to_string();
            let msg = format!(
                "{text} and restart = \"no\": not restarted\n  1. read its output: guardian logs {name}   ({log})\n  2. fix the cause, then: guardian start {name}"
            );
            svc.last_error = Some(msg.clone());
            self.record(Event::new(name, "failed", "crash", false).error(msg));
            self.ended_for_good(name, exit.status());
            return;
        }
        self.restart_dependents(&group);
        self.schedule_restart(name, "crash");
    }

    pub(super) fn begin_shutdown(
        &mut self,
        keep_services: bool,
        reply: Option<oneshot::Sender<Reply>>,
    ) {
        let (_, waiters) = self
            .shutting_down
            .get_or_insert((keep_services, Vec::new()));
        waiters.extend(reply);
        self.rolling.clear();
        let names: Vec<String> = self.services.keys().cloned().collect();
        if !keep_services {
            return self.stop_in_order(names, "shutdown");
        }
        for name in names {
            let svc = self.services.get_mut(&name).expect("UNWRAP: known name");
            if let Some(f) = svc.pidfile.take() {
                f.keep();
            }
            svc.instance += 1;
            svc.instance_token.cancel();
            svc.state = State::Stopped;
            svc.pid = None;
        }
    }

    pub(super) fn shutdown_complete(&mut self) -> bool {
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
}

/// What a starting instance's readiness waits for, besides its deadline.
enum Waits {
    /// `READY=1`, which arrives as a command.
    Notify,
    /// The first output line that matches (`None`: the pump could not watch).
    Line(Option<oneshot::Receiver<()>>),
    /// The port, or the checks.
    Probe,
}

/// Where services send sd_notify messages (one datagram socket for all, SPEC §14).
pub fn notify_socket(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join("notify.sock")
}

/// The command line as events show it: the values of the service's environment are masked
/// (`policy::redact`), but for `public_env` keys and the placeholders' expansions.
fn shown_command(
    spec: &ServiceSpec,
    vars: &Vars,
    command: &[String],
    env: &BTreeMap<String, String>,
) -> String {
    let (port, replica) = (vars.port.map(|p| p.to_string()), vars.replica.to_string());
    let mut facts = vec![
        vars.name.as_str(),
        vars.host.as_str(),
        vars.state_dir.as_str(),
        replica.as_str(),
    ];
    facts.extend(port.as_deref());
    facts.extend(vars.pidfile.as_deref());
    Secrets::new(
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        |k| spec.is_public_env(k),
        &facts,
    )
    .command(command)
}
