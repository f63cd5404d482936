//! End to end: the reference Socket.IO server under guardian, with a real Socket.IO client.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::socketio::Client;
use crate::support::*;

const LONG: Duration = Duration::from_secs(40);

fn config(sb: &Sandbox, server_args: &[&str], extra: &str) -> (PathBuf, String) {
    let port = free_port();
    let mut command = vec![example_bin("socketio_server").display().to_string()];
    command.extend(server_args.iter().map(|s| s.to_string()));
    let cfg = sb.write(
        "g.toml",
        &format!(
            r#"[services.socketio]
command = {command}
env = {{ SOCKETIO_PORT = "{{port}}", SOCKETIO_HOST = "{{host}}" }}
env_prefix = "SOCKETIO"
port = {port}
[services.socketio.backoff]
initial_delay = "100ms"
jitter = 0
[services.socketio.health]
interval = "300ms"
timeout = "250ms"
unhealthy_threshold = 2
checks = [{{ kind = "tcp" }}, {{ kind = "http", path = "/health" }}]
{extra}"#,
            command = serde_json::to_string(&command).unwrap()
        ),
    );
    (cfg, format!("127.0.0.1:{port}"))
}

fn connect(addr: &str) -> Client {
    let mut last = None;
    for _ in 0..200 {
        match Client::connect(addr) {
            Ok(c) => return c,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("cannot connect to {addr}: {last:?}");
}

#[test]
fn a_client_exchanges_events_and_reconnects_after_a_sigkill() {
    let sb = Sandbox::new();
    let (cfg, addr) = config(&sb, &[], "");
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "socketio").is_some()));
    let c = connect(&addr);
    let (pong, ack) = c.ping(&json!({"n": 1})).unwrap();
    assert_eq!(pong, r#"42["pong",{"n":1}]"#);
    assert!(ack.contains(r#""ok":true"#), "{ack}");

    let first = sb.pid_of(&cfg, "socketio").unwrap();
    kill(first, Signal::SIGKILL);
    assert!(wait_for(LONG, || sb
        .pid_of(&cfg, "socketio")
        .is_some_and(|p| p != first)));
    assert!(c.wait_disconnect().is_some(), "the old session is gone");
    let c = connect(&addr);
    let (pong, _) = c.ping(&json!({"n": 2})).unwrap();
    assert_eq!(pong, r#"42["pong",{"n":2}]"#);
    let (_, health) = {
        let (code, body) = http(Target::Tcp(&addr), "GET", "/health", &[], b"");
        (
            code,
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        )
    };
    assert_eq!(health["events_processed"], 1);
    assert_eq!(health["clients_connected"], 1);
}

#[test]
fn an_unhealthy_server_has_its_clients_cleared_then_is_restarted() {
    let sb = Sandbox::new();
    let (cfg, addr) = config(
        &sb,
        &["--unhealthy-after", "2s"],
        r#"[services.socketio.recovery]
min_recovery_interval = "0s"
clear_connections = { http = { method = "POST", path = "/admin/disconnect-all" } }
"#,
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "socketio").is_some()));
    let first = sb.pid_of(&cfg, "socketio").unwrap();
    let c = connect(&addr);
    c.ping(&json!("hi")).unwrap();
    assert_eq!(
        c.wait_disconnect().as_deref(),
        Some("41"),
        "clear_connections disconnects the client while the server still runs"
    );
    assert!(
        wait_for(LONG, || sb
            .pid_of(&cfg, "socketio")
            .is_some_and(|p| p != first)),
        "{:?}",
        sb.actions("socketio")
    );
    let actions = sb.actions("socketio");
    let clear = actions
        .iter()
        .position(|a| a == "clear_connections")
        .unwrap();
    let restart = actions.iter().position(|a| a == "restart_service").unwrap();
    assert!(clear < restart, "{actions:?}");
    let c = connect(&addr);
    c.ping(&json!("again")).unwrap();
}

#[test]
fn socketio_max_retries_from_the_environment_bounds_a_crash_loop() {
    let sb = Sandbox::new();
    let (cfg, _) = config(&sb, &["--crash-after", "0s"], "");
    let mut g = sb.spawn_with_env(&cfg, &[("SOCKETIO_MAX_RETRIES", "2".as_ref())]);
    assert!(wait_for(LONG, || sb.service(&cfg, "socketio")["state"] == "failed"));
    let starts = sb
        .events("socketio")
        .iter()
        .filter(|e| e["action"] == "start")
        .count();
    assert_eq!(starts, 3, "the first start and two retries");
    let failed = sb
        .events("socketio")
        .into_iter()
        .find(|e| e["action"] == "failed")
        .unwrap();
    assert!(
        failed["error_message"]
            .as_str()
            .unwrap()
            .contains("max_retries = 2"),
        "{failed}"
    );
    assert_eq!(g.stop(), Some(0));
}

#[test]
fn editing_the_health_interval_keeps_the_server_pid() {
    let sb = Sandbox::new();
    let (cfg, addr) = config(&sb, &[], "");
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "socketio").is_some()));
    let pid = sb.pid_of(&cfg, "socketio").unwrap();
    let c = connect(&addr);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("interval = \"300ms\"", "interval = \"2s\""),
    )
    .unwrap();
    assert!(wait_for(
        LONG,
        || sb.get_json("/status").1["guardian"]["config_generation"] == 1
    ));
    assert_eq!(sb.pid_of(&cfg, "socketio"), Some(pid));
    // The client's session survived the reload.
    c.ping(&json!("still here")).unwrap();
}
