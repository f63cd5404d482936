//! Recovery: the graduated steps health asks for, and their verdicts for the breaker.

use super::*;

impl<S: Spawner> Supervisor<S> {
    /// Acts on what the recovery machine said: verdicts and breaker moves become events, and
    /// a step to take is taken.
    pub(super) fn advise(&mut self, name: &str, advice: Advice, status: Status, problems: &str) {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        if let Some((action, worked)) = advice.judged {
            *svc.recoveries.entry((action, worked)).or_default() += 1;
            let threshold = svc.spec.health.unhealthy_threshold;
            let mut e = Event::new(name, "recovery_verdict", svc.recovery_trigger, worked);
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
            let trigger = self.services[name].recovery_trigger;
            let mut e = Event::new(
                name,
                "circuit_breaker",
                trigger,
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
    pub(super) fn recover(&mut self, name: &str, action: Action, status: Status, problems: &str) {
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
                let trigger = svc.recovery_trigger;
                self.stop(name, trigger, None);
            }
            Action::EmergencyStop => {
                svc.fail_after_stop = true;
                let trigger = svc.recovery_trigger;
                self.stop(name, trigger, None);
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
    pub(super) fn recovery_finished(
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
        let mut e = Event::new(name, action.as_str(), svc.recovery_trigger, ok);
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
    pub(super) fn restart_step_ended(&mut self, name: &str, result: Result<String, String>) {
        let svc = self.services.get_mut(name).expect("UNWRAP: known name");
        if let Some((t0, health)) = svc.recovery_restart.take() {
            self.recovery_finished(name, Action::RestartService, result, t0.elapsed(), health);
        }
    }
}
