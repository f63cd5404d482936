//! SPEC §5 health and recovery with real processes: the reference server's fault switches
//! drive the checks, the recovery ladder and the circuit breaker.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);

/// A config guarding the reference server on a free port, with fast checks.
fn server_config(sb: &Sandbox, server_args: &[&str], extra: &str) -> PathBuf {
    let port = free_port();
    let mut command = vec![
        example_bin("socketio_server").display().to_string(),
        "--port".to_owned(),
        "{port}".to_owned(),
    ];
    command.extend(server_args.iter().map(|s| s.to_string()));
    let command = serde_json::to_string(&command).unwrap();
    sb.write(
        "g.toml",
        &format!(
            r#"[services.web]
command = {command}
port = {port}
[services.web.backoff]
initial_delay = "100ms"
jitter = 0
[services.web.health]
interval = "300ms"
timeout = "250ms"
unhealthy_threshold = 2
{extra}
"#
        ),
    )
}

/// Waits for a restart_service step and a new PID; returns why the service went critical.
fn restarted_because(sb: &Sandbox, cfg: &std::path::Path, first: i32) -> String {
    assert!(
        wait_for(LONG, || sb
            .events("web")
            .iter()
            .any(|e| e["action"] == "restart_service")),
        "{:?}",
        sb.actions("web")
    );
    assert!(wait_for(LONG, || sb
        .pid_of(cfg, "web")
        .is_some_and(|p| p != first)));
    let events = sb.events("web");
    let critical = events
        .iter()
        .find(|e| e["action"] == "health_changed" && e["health_status"] == "critical")
        .expect("a critical health event");
    critical["error_message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn index_of(actions: &[String], action: &str) -> Option<usize> {
    actions.iter().position(|a| a == action)
}

fn event<'a>(events: &'a [serde_json::Value], action: &str) -> Option<&'a serde_json::Value> {
    events.iter().find(|e| e["action"] == action)
}

#[test]
fn failing_health_endpoint_clears_connections_then_restarts() {
    let sb = Sandbox::new();
    let cfg = server_config(
        &sb,
        &["--unhealthy-after", "1s"],
        r#"checks = [{ kind = "http", path = "/health", expect_status = 200 }]
[services.web.recovery]
min_recovery_interval = "0s"
clear_connections = { http = { method = "POST", path = "/admin/disconnect-all" } }
"#,
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    let first = sb.pid_of(&cfg, "web").unwrap();
    assert!(
        wait_for(LONG, || {
            sb.events("web")
                .iter()
                .any(|e| e["action"] == "restart_service" && e["success"] == true)
        }),
        "{:?}\n{}",
        sb.actions("web"),
        sb.stderr()
    );
    let actions = sb.actions("web");
    let clear = index_of(&actions, "clear_connections").expect("clear_connections first");
    let restart = index_of(&actions, "restart_service").unwrap();
    assert!(clear < restart, "{actions:?}");
    let events = sb.events("web");
    let c = event(&events, "clear_connections").unwrap();
    assert_eq!(c["success"], true, "{c}");
    assert_eq!(c["trigger"], "health_check");
    assert_eq!(c["health_status"], "critical");
    assert!(c["duration_ms"].as_f64().is_some(), "{c}");
    let r = event(&events, "restart_service").unwrap();
    assert!(r["duration_ms"].as_f64().unwrap() > 0.0, "{r}");
    assert!(wait_for(LONG, || sb
        .pid_of(&cfg, "web")
        .is_some_and(|p| p != first)));
}

#[test]
fn a_server_that_accepts_but_never_answers_is_restarted() {
    let sb = Sandbox::new();
    let cfg = server_config(
        &sb,
        &["--hang-after", "1s"],
        r#"checks = [{ kind = "tcp" }, { kind = "http", path = "/health" }]
[services.web.recovery]
min_recovery_interval = "0s"
"#,
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    let first = sb.pid_of(&cfg, "web").unwrap();
    let why = restarted_because(&sb, &cfg, first);
    assert!(why.contains("no answer within the timeout"), "{why}");
    assert!(!why.contains("tcp:"), "TCP still accepts: {why}");
}

#[test]
fn memory_past_critical_restarts_the_service() {
    let sb = Sandbox::new();
    let cfg = server_config(
        &sb,
        &["--leak-mb-per-sec", "100"],
        r#"[services.web.health.resources]
memory_mb = { warning = 150, critical = 200 }
[services.web.recovery]
min_recovery_interval = "0s"
"#,
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    let first = sb.pid_of(&cfg, "web").unwrap();
    let why = restarted_because(&sb, &cfg, first);
    assert!(why.contains("memory_mb"), "{why}");
}

#[test]
fn breaker_opens_waits_open_timeout_then_lets_one_action_through() {
    let sb = Sandbox::new();
    let cfg = server_config(
        &sb,
        &["--unhealthy-after", "0s"],
        r#"checks = [{ kind = "http", path = "/health" }]
[services.web.recovery]
min_recovery_interval = "0s"
clear_connections = { signal = "SIGUSR1" }
[services.web.recovery.circuit_breaker]
failure_threshold = 2
open_timeout = "3s"
success_threshold = 1
"#,
    );
    let _g = sb.start(&cfg);
    let steps = ["clear_connections", "restart_service", "emergency_stop"];
    assert!(
        wait_for(LONG, || sb
            .actions("web")
            .iter()
            .any(|a| a == "emergency_stop")),
        "{:?}\n{}",
        sb.actions("web"),
        sb.stderr()
    );
    let events = sb.events("web");
    let relevant: Vec<(&str, String)> = events
        .iter()
        .filter_map(|e| {
            let a = e["action"].as_str()?;
            if steps.contains(&a) {
                Some((a, String::new()))
            } else if a == "circuit_breaker" {
                let d = e["detail"].as_str()?;
                Some((a, d.split(':').next()?.to_owned()))
            } else {
                None
            }
        })
        .collect();
    let want = [
        ("clear_connections", ""),
        ("restart_service", ""),
        ("circuit_breaker", "open"),
        ("circuit_breaker", "half_open"),
        ("emergency_stop", ""),
    ];
    let got: Vec<(&str, &str)> = relevant.iter().map(|(a, d)| (*a, d.as_str())).collect();
    assert_eq!(got, want);
    // Nothing ran while open: the trial came no sooner than open_timeout after the opening.
    let at = |action: &str, detail: &str| {
        events
            .iter()
            .find(|e| {
                e["action"] == action && e["detail"].as_str().unwrap_or("").starts_with(detail)
            })
            .and_then(|e| e["timestamp"].as_f64())
            .unwrap()
    };
    let opened = at("circuit_breaker", "open");
    let trial = at("emergency_stop", "");
    assert!(trial - opened >= 3.0, "trial {trial} opened {opened}");
    // emergency_stop leaves the service failed until started again.
    assert!(wait_for(LONG, || sb.service(&cfg, "web")["state"] == "failed"));
    let status = sb.service(&cfg, "web");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("guardian start web"),
        "{status}"
    );
    let out = sb.client(&cfg, &["start", "web"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(wait_for(LONG, || sb.service(&cfg, "web")["state"] == "running"));
    assert_eq!(sb.service(&cfg, "web")["circuit_breaker"], "closed");
}

#[test]
fn a_hanging_exec_check_is_killed_at_its_timeout() {
    let sb = Sandbox::new();
    let flag = sb.path().join("hang");
    let pids = sb.path().join("probe.pids");
    let script = format!(
        "if [ -e {f} ]; then sleep 300 & echo $! >> {p}; wait; fi",
        f = flag.display(),
        p = pids.display()
    );
    let cfg = sb.write(
        "g.toml",
        &format!(
            r#"[services.svc]
command = ["sleep", "600"]
[services.svc.health]
interval = "300ms"
timeout = "250ms"
unhealthy_threshold = 1
checks = [{{ kind = "exec", command = ["sh", "-c", {script}] }}]
[services.svc.recovery]
enabled = false
"#,
            script = serde_json::to_string(&script).unwrap()
        ),
    );
    let _g = sb.start(&cfg);
    // Port-less with checks: ready at the first healthy check.
    assert!(wait_for(LONG, || sb.service(&cfg, "svc")["health"] == "healthy"));
    std::fs::write(&flag, "").unwrap();
    assert!(
        wait_for(LONG, || sb.service(&cfg, "svc")["health"] == "critical"),
        "{}",
        sb.service(&cfg, "svc")
    );
    let events = sb.events("svc");
    let critical = events
        .iter()
        .find(|e| e["action"] == "health_changed" && e["health_status"] == "critical")
        .unwrap();
    assert!(
        critical["error_message"]
            .as_str()
            .unwrap()
            .contains("did not finish within the timeout"),
        "{critical}"
    );
    let probe_pids: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(!probe_pids.is_empty());
    for p in probe_pids {
        assert!(
            wait_for(LONG, || !alive(p)),
            "probe child {p} was left behind"
        );
    }
}

#[test]
fn disabled_recovery_reports_health_and_does_nothing() {
    let sb = Sandbox::new();
    let cfg = server_config(
        &sb,
        &["--unhealthy-after", "0s"],
        r#"checks = [{ kind = "http", path = "/health" }]
[services.web.recovery]
enabled = false
min_recovery_interval = "0s"
"#,
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.service(&cfg, "web")["health"] == "critical"));
    let pid = sb.pid_of(&cfg, "web").unwrap();
    // Several more checks: still the same process, and no recovery step at all.
    let seen = sb.service(&cfg, "web");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sb.pid_of(&cfg, "web"), Some(pid), "{seen}");
    let actions = sb.actions("web");
    for step in [
        "log_warning",
        "clear_connections",
        "restart_service",
        "emergency_stop",
    ] {
        assert!(!actions.iter().any(|a| a == step), "{actions:?}");
    }
    let (_, health) = sb.get_json("/health");
    assert_eq!(health["services"]["web"]["status"], "critical", "{health}");
    assert!(
        health["services"]["web"]["checks"][0]["message"]
            .as_str()
            .unwrap()
            .contains("answered 500")
    );
}
