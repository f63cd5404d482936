//! Health: the checks of a running instance, polled every `interval`, and what a round means.

use super::*;

impl<S: Spawner> Supervisor<S> {
    /// What the service's checks need, placeholders expanded; `None` when it has no pid.
    pub(super) fn probe_of(&self, name: &str) -> Option<Probe> {
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
    pub(super) fn monitor_health(&mut self, name: &str) {
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
        crate::process::tasks::spawn(async move {
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

    /// One result for the monitor and the recovery ladder: a round of checks, or the
    /// watchdog's verdict (`trigger` names which, in the events it leads to).
    pub(super) fn health_checked(
        &mut self,
        name: &str,
        instance: u64,
        tick: Tick,
        trigger: &'static str,
    ) {
        let Some(svc) = self.current(name, instance, State::Running) else {
            return;
        };
        svc.recovery_trigger = trigger;
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
            let mut e =
                Event::new(name, "health_changed", trigger, status == Status::Healthy).pid(pid);
            e.health_status = Some(status.as_str().to_owned());
            e.detail = Some(format!("{} → {}", before.as_str(), status.as_str()));
            if !problems.is_empty() {
                e.error_message = Some(problems.clone());
            }
            self.record(e);
        }
        self.advise(name, advice, status, &problems);
    }
}
