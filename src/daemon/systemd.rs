//! Under systemd (`Type=notify`, SPEC §9): READY=1 once autostart services have settled,
//! STATUS= with the service counts whenever they change, and WATCHDOG=1 at half of
//! `WATCHDOG_USEC`, each ping only after a round trip through the supervisor actor, so a wedged
//! engine stops the pings and systemd restarts guardian. Outside systemd (no `NOTIFY_SOCKET`)
//! nothing here runs.

use std::fmt::Write;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::supervisor::{Snapshot, State, SupervisorHandle};

/// Whether a service manager listens.
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Starts the notification tasks on `tracker`.
pub fn spawn(handle: &SupervisorHandle, tracker: &TaskTracker, token: &CancellationToken) {
    if !enabled() {
        return;
    }
    tracker.spawn(ready_then_status(handle.watch(), token.child_token()));
    if let Some(every) = sd_notify::watchdog_enabled() {
        tracker.spawn(watchdog(handle.clone(), every / 2, token.child_token()));
    }
}

/// `3 running, 1 waiting, 0 failed`, then the other states that have members.
pub fn status_line(snap: &Snapshot) -> String {
    let count = |st: State| snap.services.iter().filter(|s| s.state == st).count();
    let mut line = format!(
        "{} running, {} waiting, {} failed",
        count(State::Running),
        count(State::Waiting),
        count(State::Failed)
    );
    for st in [
        State::Starting,
        State::Backoff,
        State::Blocked,
        State::Completed,
        State::Stopping,
        State::Stopped,
    ] {
        let n = count(st);
        if n > 0 {
            let _ = write!(line, ", {n} {}", st.as_str());
        }
    }
    line
}

/// Settled: every autostart service is running, or will not move by itself.
pub fn settled(snap: &Snapshot) -> bool {
    // Until the supervisor's first publish the snapshot is empty (a config always has a
    // service).
    !snap.services.is_empty()
        && snap.services.iter().filter(|s| s.autostart).all(|s| {
            matches!(
                s.state,
                State::Running | State::Failed | State::Stopped | State::Completed | State::Blocked
            )
        })
}

async fn ready_then_status(mut rx: watch::Receiver<Snapshot>, token: CancellationToken) {
    let mut ready = false;
    let mut last = String::new();
    loop {
        let (line, up) = {
            let snap = rx.borrow_and_update();
            (status_line(&snap), settled(&snap))
        };
        if line != last {
            let _ = sd_notify::notify(&[NotifyState::Status(&line)]);
            last = line;
        }
        if up && !ready {
            ready = true;
            let _ = sd_notify::notify(&[NotifyState::Ready]);
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = token.cancelled() => return,
        }
    }
}

async fn watchdog(handle: SupervisorHandle, every: std::time::Duration, token: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = token.cancelled() => return,
        }
        // The actor answers only when its loop turns: a wedged engine gets no ping.
        tokio::select! {
            alive = handle.ping() => if alive {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            },
            _ = token.cancelled() => return,
        }
    }
}

/// RELOADING=1 with the monotonic time (systemd 253+ wants both) before a reload.
pub fn reloading() {
    if !enabled() {
        return;
    }
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    let _ = sd_notify::notify(&states);
}

/// READY=1 after a reload, applied or refused.
pub fn reloaded() {
    if enabled() {
        let _ = sd_notify::notify(&[NotifyState::Ready]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::ServiceSnapshot;

    fn snap(states: &[State]) -> Snapshot {
        Snapshot {
            services: states
                .iter()
                .enumerate()
                .map(|(i, st)| ServiceSnapshot {
                    name: format!("s{i}"),
                    state: *st,
                    autostart: true,
                    ..ServiceSnapshot::default()
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn status_lines_count_states() {
        use State::*;
        let table: &[(&[State], &str, bool)] = &[
            (
                &[Running, Running, Running, Waiting],
                "3 running, 1 waiting, 0 failed",
                false,
            ),
            (&[Running, Failed], "1 running, 0 waiting, 1 failed", true),
            (
                &[Running, Completed, Blocked],
                "1 running, 0 waiting, 0 failed, 1 blocked, 1 completed",
                true,
            ),
            (
                &[Starting, Backoff],
                "0 running, 0 waiting, 0 failed, 1 starting, 1 backoff",
                false,
            ),
        ];
        for (states, line, up) in table {
            let s = snap(states);
            assert_eq!(status_line(&s), *line);
            assert_eq!(settled(&s), *up, "{line}");
        }
        assert!(!settled(&snap(&[])));
    }
}
