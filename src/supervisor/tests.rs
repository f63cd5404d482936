//! Actor tests: the FakeSpawner on a paused clock, exact restart instants asserted.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::raw::RawConfig;
use crate::config::validate::{Context, validate};
use crate::process::fake::{FakeSpawner, Script};

fn config(dir: &std::path::Path, service_toml: &str) -> Config {
    let text = format!("[services.web]\ncommand = [\"web\"]\n{service_toml}");
    let raw: RawConfig = toml::from_str(&text).unwrap();
    let origin = |_: &str| None;
    validate(
        raw,
        &Context {
            default_state_dir: dir.to_owned(),
            origin: &origin,
        },
    )
    .unwrap()
}

struct Rig {
    spawner: Arc<FakeSpawner>,
    handle: SupervisorHandle,
    token: CancellationToken,
    t0: Instant,
    _dir: tempfile::TempDir,
}

fn rig(service_toml: &str, scripts: Vec<Script>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), service_toml);
    let spawner = Arc::new(FakeSpawner::new(scripts));
    let events = Arc::new(EventLog::new(dir.path().join("events.jsonl"), 1 << 20, 1));
    let (sup, handle) = Supervisor::new(cfg, spawner.clone(), events, 1);
    let token = CancellationToken::new();
    let t0 = Instant::now();
    tokio::spawn(sup.run(token.clone()));
    Rig {
        spawner,
        handle,
        token,
        t0,
        _dir: dir,
    }
}

impl Rig {
    fn offsets(&self) -> Vec<Duration> {
        self.spawner
            .spawn_times()
            .iter()
            .map(|t| *t - self.t0)
            .collect()
    }

    fn state(&self) -> State {
        self.handle.snapshot().services[0].state
    }
}

fn secs(v: &[f64]) -> Vec<Duration> {
    v.iter().map(|s| Duration::from_secs_f64(*s)).collect()
}

#[tokio::test(start_paused = true)]
async fn crashing_service_backs_off_exactly_then_fails() {
    let crash = Script::ExitAfter(Duration::ZERO, 1);
    let r = rig(
        "[services.web.backoff]\ninitial_delay = \"1s\"\nfactor = 2.0\njitter = 0\nmax_retries = 3\n",
        vec![crash.clone(), crash.clone(), crash.clone(), crash],
    );
    tokio::time::sleep(Duration::from_secs(100)).await;
    // Spawned at 0, then after 1s, 2s and 4s of backoff; the fourth failure gives up.
    assert_eq!(r.offsets(), secs(&[0.0, 1.0, 3.0, 7.0]));
    assert_eq!(r.state(), State::Failed);
    assert_eq!(r.handle.snapshot().services[0].restarts, 3);
    r.token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_long_run_resets_the_retry_count() {
    let quick = Script::ExitAfter(Duration::ZERO, 1);
    let long = Script::ExitAfter(Duration::from_secs(120), 1);
    let r = rig(
        "[services.web.backoff]\ninitial_delay = \"1s\"\nfactor = 2.0\njitter = 0\nmax_retries = 5\nreset_after = \"60s\"\n",
        vec![
            quick.clone(),
            quick,
            long,
            Script::ExitAfter(Duration::ZERO, 1),
            Script::Run,
        ],
    );
    tokio::time::sleep(Duration::from_secs(300)).await;
    // 0 crash → 1s → 1 crash → 2s → 3 runs 120s → exit at 123 resets: next delay is 1s again.
    assert_eq!(r.offsets(), secs(&[0.0, 1.0, 3.0, 124.0, 126.0]));
    r.token.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_start_failure_counts_and_retries() {
    let r = rig(
        "[services.web.backoff]\ninitial_delay = \"2s\"\njitter = 0\nmax_retries = 1\n",
        vec![Script::FailToSpawn, Script::FailToSpawn],
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(r.offsets(), secs(&[0.0, 2.0]));
    assert_eq!(r.state(), State::Failed);
    assert!(
        r.handle.snapshot().services[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("no such program")
    );
}

#[tokio::test(start_paused = true)]
async fn stop_escalates_to_sigkill_after_the_grace() {
    let r = rig("shutdown_timeout = \"3s\"\n", vec![Script::IgnoreTerm]);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(r.state(), State::Running);
    let reply = r.handle.stop("web").await;
    assert_eq!(reply, Reply::Done("web stopped".into()));
    let sigs: Vec<(Duration, Signal)> = r
        .spawner
        .signals()
        .iter()
        .map(|(t, _, s)| (*t - r.t0, *s))
        .collect();
    assert_eq!(sigs[0], (Duration::from_millis(10), Signal::SIGTERM));
    assert_eq!(sigs[1], (Duration::from_millis(3010), Signal::SIGKILL));
    assert_eq!(r.state(), State::Stopped);
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(r.offsets().len(), 1, "a stopped service is not restarted");
}

#[tokio::test(start_paused = true)]
async fn restart_resets_failures_and_starts_a_new_instance() {
    let r = rig(
        "[services.web.backoff]\njitter = 0\n",
        vec![Script::Run, Script::Run],
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let first = r.handle.snapshot().services[0].pid;
    assert!(matches!(r.handle.restart("web").await, Reply::Done(_)));
    tokio::time::sleep(Duration::from_millis(1)).await;
    let snap = r.handle.snapshot().services[0].clone();
    assert_ne!(snap.pid, first);
    assert_eq!(snap.state, State::Running);
    assert_eq!(r.offsets(), secs(&[0.0, 5.0]));
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_everything_and_completes() {
    let r = rig("", vec![Script::Run]);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        r.handle.shutdown(false).await,
        Reply::Done("guardian stopped".into())
    );
    assert_eq!(r.spawner.signals()[0].2, Signal::SIGTERM);
    assert_eq!(
        r.handle.start("nope").await,
        Reply::Refused("the supervisor has stopped".into())
    );
}

#[tokio::test(start_paused = true)]
async fn reload_touches_only_what_changed() {
    let r = rig("[services.web.backoff]\njitter = 0\n", vec![]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid_of = |name: &str| {
        r.handle
            .snapshot()
            .services
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.pid)
    };
    let web = pid_of("web").unwrap();
    let dir = r._dir.path();
    let next = |extra: &str| config(dir, extra);

    // Policy only, plus a new service: web keeps its process.
    let reply = r
        .handle
        .reload(Ok(next(
            "[services.web.backoff]\njitter = 0\nmax_retries = 3\n[services.api]\ncommand = [\"api\"]\n",
        )))
        .await;
    let Reply::Done(text) = reply else {
        panic!("{reply:?}")
    };
    assert!(text.contains("+ api") && text.contains("= web"), "{text}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(pid_of("web"), Some(web));
    assert!(pid_of("api").is_some());
    assert_eq!(r.handle.snapshot().config_generation, 1);

    // A spawn change restarts web alone; api is removed.
    let api = pid_of("api").unwrap();
    let mut changed = next("[services.web.backoff]\njitter = 0\nmax_retries = 3\n");
    changed
        .services
        .values_mut()
        .for_each(|s| s.command = vec!["web2".into()]);
    let reply = r.handle.reload(Ok(changed)).await;
    assert!(
        matches!(&reply, Reply::Done(t) if t.contains("~ web") && t.contains("- api")),
        "{reply:?}"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(pid_of("web").is_some_and(|p| p != web));
    assert_eq!(r.handle.snapshot().services.len(), 1, "api is gone");
    assert!(
        r.spawner
            .signals()
            .iter()
            .any(|(_, p, s)| *p == api && *s == Signal::SIGTERM)
    );

    // An invalid config changes nothing and is counted.
    let now = pid_of("web");
    let reply = r.handle.reload(Err("bad.toml: line 3".into())).await;
    assert_eq!(reply, Reply::Refused("bad.toml: line 3".into()));
    let snap = r.handle.snapshot();
    assert_eq!(
        (snap.config_generation, snap.reloads_ok, snap.reloads_failed),
        (2, 2, 1)
    );
    assert_eq!(snap.last_reload_error.as_deref(), Some("bad.toml: line 3"));
    assert_eq!(pid_of("web"), now);
    r.token.cancel();
}

/// The watchdog on the paused clock (SPEC §14): a service that pings within the period is
/// left alone; one that stops pinging gets a critical `watchdog` result (health critical at
/// unhealthy_threshold = 1) and an event with trigger `watchdog`; pings that resume make it
/// healthy again.
#[tokio::test(start_paused = true)]
async fn the_watchdog_judges_each_period_by_its_pings() {
    use crate::policy::notify::Notice;
    let ping = Notice {
        watchdog: true,
        ..Notice::default()
    };
    // (ping every, for how long, then: health after 10 s, watchdog events)
    let table: [(u64, u64, Status, bool); 4] = [
        (400, 10_000, Status::Healthy, false),
        (900, 10_000, Status::Healthy, false),
        (0, 0, Status::Critical, true),
        (400, 3_000, Status::Critical, true),
    ];
    for (every, until, health, missed) in table {
        let r = rig(
            "watchdog = \"1s\"\n[services.web.health]\nunhealthy_threshold = 1\n[services.web.recovery]\nenabled = false\n",
            vec![],
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        let pid = r.handle.snapshot().services[0].pid.unwrap();
        let mut at = 0;
        while every > 0 && at < until {
            tokio::time::sleep(Duration::from_millis(every)).await;
            at += every;
            r.handle.notify(vec![pid], ping.clone());
        }
        tokio::time::sleep(Duration::from_millis(10_000 - at.min(10_000))).await;
        let s = &r.handle.snapshot().services[0];
        assert_eq!(
            (s.state, s.health),
            (State::Running, health),
            "every {every} ms until {until}"
        );
        let events = std::fs::read_to_string(r._dir.path().join("events.jsonl")).unwrap();
        let seen = events.lines().any(|l| {
            l.contains("\"action\":\"watchdog\"") && l.contains("\"trigger\":\"watchdog\"")
        });
        assert_eq!(seen, missed, "every {every} ms until {until}: {events}");
        r.token.cancel();
    }
}

/// Pings that come back after a miss count as a healthy result.
#[tokio::test(start_paused = true)]
async fn pings_that_resume_after_a_miss_make_it_healthy_again() {
    use crate::policy::notify::Notice;
    let r = rig(
        "watchdog = \"1s\"\n[services.web.health]\nunhealthy_threshold = 1\n[services.web.recovery]\nenabled = false\n",
        vec![],
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(r.handle.snapshot().services[0].health, Status::Critical);
    let pid = r.handle.snapshot().services[0].pid.unwrap();
    for _ in 0..10 {
        r.handle.notify(
            vec![pid],
            Notice {
                watchdog: true,
                ..Notice::default()
            },
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(r.handle.snapshot().services[0].health, Status::Healthy);
    r.token.cancel();
}

/// EXTEND_TIMEOUT_USEC moves the start-up deadline: without it the instance is killed at
/// startup_timeout; with it, READY=1 later still counts.
#[tokio::test(start_paused = true)]
async fn extend_timeout_moves_the_startup_deadline() {
    use crate::policy::notify::Notice;
    for extend in [false, true] {
        let r = rig("ready = \"notify\"\nstartup_timeout = \"2s\"\n", vec![]);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let pid = r.handle.snapshot().services[0].pid.unwrap();
        if extend {
            let n = Notice {
                extend_timeout_usec: Some(5_000_000),
                ..Notice::default()
            };
            r.handle.notify(vec![pid], n);
        }
        tokio::time::sleep(Duration::from_millis(3000)).await;
        let ready = Notice {
            ready: true,
            ..Notice::default()
        };
        r.handle.notify(vec![pid], ready);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = &r.handle.snapshot().services[0];
        if extend {
            assert_eq!((s.state, s.pid), (State::Running, Some(pid)));
        } else {
            assert_ne!(s.pid, Some(pid), "killed at startup_timeout: {s:?}");
        }
        r.token.cancel();
    }
}
