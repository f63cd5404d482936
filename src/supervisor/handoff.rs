//! `restart_strategy = "start-first"` (SPEC §13): the new instance starts while the old one
//! still serves on the held sockets; once the new one is ready the old one gets its
//! stop_signal and drains for its shutdown_timeout (then SIGKILL). If the new one never
//! becomes ready, it is gone and the old one serves on, with an event. The old one's PID file
//! is set aside (`NAME.pid.draining`, its lock kept) while it drains.

use super::*;
use crate::config::RestartStrategy;

/// The instance a start-first restart replaces, while the new one starts and then while it
/// drains.
pub(super) struct Draining {
    pub(super) pid: i32,
    /// Its instance number, for its exit.
    pub(super) instance: u64,
    pub(super) pidfile: Option<ServicePidFile>,
    pub(super) started_at: Option<Instant>,
    pub(super) start_time: Option<f64>,
    /// Set once the new instance is ready and the old one was sent its stop_signal.
    pub(super) since: Option<Instant>,
    /// Who asked for the restart (`guardian restart`): answered once the new one serves.
    pub(super) reply: Option<oneshot::Sender<Reply>>,
}

impl<S: Spawner> Supervisor<S> {
    /// Starts `name`'s new instance before stopping the old one, when its strategy says so
    /// and it runs; false when a plain restart applies.
    pub(super) fn start_first(
        &mut self,
        name: &str,
        reply: &mut Option<oneshot::Sender<Reply>>,
    ) -> bool {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        if svc.spec.restart_strategy != RestartStrategy::StartFirst
            || svc.state != State::Running
            || svc.draining.is_some()
        {
            return false;
        }
        let Some(pid) = svc.pid else { return false };
        // The old instance's readiness probe and health monitor end here; its exit watcher
        // goes on and reports under its own instance number.
        svc.instance_token.cancel();
        svc.draining = Some(Draining {
            pid,
            instance: svc.instance,
            pidfile: svc.pidfile.take().map(ServicePidFile::set_aside),
            started_at: svc.started_at,
            start_time: svc.start_time,
            since: None,
            reply: reply.take(),
        });
        svc.pid = None;
        self.record(
            Event::new(name, "start_first", "command", true)
                .pid(pid)
                .detail(format!(
                    "starting a new instance; pid {pid} serves until it is ready"
                )),
        );
        self.start(name, "restart");
        self.publish();
        true
    }

    /// At start-up: an old instance that a crashed guardian left draining (its PID file set
    /// aside as `NAME.pid.draining`) is proven like any adoption, watched, and stopped now;
    /// a stale file is removed.
    pub(super) fn finish_left_drain(&mut self, name: &str) {
        let spec = &self.services[name].spec;
        let path = ServicePidFile::aside(&spec.pidfile);
        if !path.exists() {
            return;
        }
        let Ok((verdict, Some(record))) = pidfile::check(&path, &spec.identity, None) else {
            return;
        };
        let Some(pid) = verdict.running else { return };
        let ticks = record
            .start_ticks
            .or_else(|| procinfo::facts(pid).map(|f| f.start_ticks));
        let Some(spawned) = ticks.and_then(|t| self.spawner.adopt(pid, t).ok()) else {
            return;
        };
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        // An instance number of its own, for its exit (the next start takes the one after).
        svc.instance += 1;
        let instance = svc.instance;
        svc.draining = Some(Draining {
            pid,
            instance,
            pidfile: ServicePidFile::write(&path, &record).ok(),
            started_at: None,
            start_time: None,
            since: None,
            reply: None,
        });
        self.report_exit(name, instance, spawned);
        self.record(
            Event::new(name, "draining", "startup", true)
                .pid(pid)
                .detail("left draining by a guardian that ended: stopped now"),
        );
        self.begin_drain(name);
    }

    /// Sends the old instance its stop_signal and starts its drain time, once: what it was
    /// (its PID), and who waits for the restart. None when nothing waits to drain.
    fn begin_drain(&mut self, name: &str) -> Option<(i32, Option<oneshot::Sender<Reply>>)> {
        let svc = self.services.get_mut(name)?;
        let (sig, grace) = (svc.spec.stop_signal, svc.spec.shutdown_timeout);
        let d = svc.draining.as_mut().filter(|d| d.since.is_none())?;
        d.since = Some(Instant::now());
        let (old, instance, reply) = (d.pid, d.instance, d.reply.take());
        self.spawner.signal_group(name, old, sig);
        self.after(
            grace,
            None,
            Fact::DrainExpired {
                name: name.to_owned(),
                instance,
            },
        );
        Some((old, reply))
    }

    /// The new instance is ready: the old one gets its stop_signal and drains.
    pub(super) fn drain_old(&mut self, name: &str) {
        let Some((old, reply)) = self.begin_drain(name) else {
            return;
        };
        let svc = &self.services[name];
        let (new_pid, sig, grace) = (
            svc.pid.unwrap_or_default(),
            svc.spec.stop_signal,
            svc.spec.shutdown_timeout,
        );
        self.record(
            Event::new(name, "draining", "command", true)
                .pid(old)
                .detail(format!(
                    "pid {new_pid} is ready; sent {} to pid {old}, which drains for up to {}",
                    sig.as_str(),
                    crate::config::duration::Secs(grace)
                )),
        );
        if let Some(r) = reply {
            let _ = r.send(Reply::Done(format!(
                "{name} restarted start-first: pid {new_pid} serves, pid {old} drains"
            )));
        }
        self.publish();
    }

    /// The service is being stopped while a start-first restart is under way: the old instance
    /// gets its stop_signal now, as the new one does.
    pub(super) fn stop_draining(&mut self, name: &str) {
        if let Some((_, Some(r))) = self.begin_drain(name) {
            let _ = r.send(Reply::Refused(format!(
                "{name} was stopped before its new instance was ready"
            )));
        }
    }

    /// The drain time is over: what is left of the old instance is killed.
    pub(super) fn drain_expired(&mut self, name: &str, instance: u64) {
        let Some(d) = self
            .services
            .get(name)
            .and_then(|s| s.draining.as_ref())
            .filter(|d| d.instance == instance)
        else {
            return;
        };
        let pid = d.pid;
        self.spawner.signal_group(name, pid, Signal::SIGKILL);
        self.record(
            Event::new(name, "kill", "shutdown", true)
                .pid(pid)
                .detail("still draining after shutdown_timeout: sent SIGKILL to the process group"),
        );
    }

    /// An exit of the draining instance: true when `instance` was it.
    pub(super) fn drained(&mut self, name: &str, instance: u64, exit: ExitInfo) -> bool {
        let Some(svc) = self.services.get_mut(name) else {
            return false;
        };
        if svc.draining.as_ref().is_none_or(|d| d.instance != instance) {
            return false;
        }
        let d = svc.draining.take().expect("UNWRAP: checked above");
        if let Some(f) = d.pidfile {
            f.remove();
        }
        self.spawner.signal_group(name, d.pid, Signal::SIGKILL);
        let took = d.since.map(|t| t.elapsed().as_secs_f64() * 1000.0);
        let mut e = Event::new(name, "drained", "command", true)
            .pid(d.pid)
            .detail(exit.to_string());
        e.duration_ms = took;
        self.record(e);
        self.publish();
        true
    }

    /// The new instance of a start-first restart ended before it was ready: the old one is
    /// the service's instance again and serves on. True when that was the case.
    pub(super) fn new_instance_failed(&mut self, name: &str, why: &str) -> bool {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        let Some(d) = svc.draining.take_if(|d| d.since.is_none()) else {
            return false;
        };
        let path = svc.spec.pidfile.clone();
        svc.instance = d.instance;
        svc.pid = Some(d.pid);
        svc.pidfile = d.pidfile.map(|f| f.put_back(&path));
        svc.started_at = d.started_at;
        svc.start_time = d.start_time;
        svc.state = State::Running;
        svc.instance_token = CancellationToken::new();
        let msg = format!(
            "the new instance did not become ready ({why}); pid {} serves on",
            d.pid
        );
        svc.last_error = Some(msg.clone());
        self.record(
            Event::new(name, "start_first", "command", false)
                .pid(d.pid)
                .error(msg.clone()),
        );
        if let Some(r) = d.reply {
            let _ = r.send(Reply::Refused(format!("{name}: {msg}")));
        }
        self.monitor_health(name);
        self.roll_failed(name, why);
        self.publish();
        true
    }
}
