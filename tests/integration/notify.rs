//! SPEC §14, readiness from the service itself: `ready = "notify"` with the real
//! `systemd-notify` tool and with the reference server, messages from outside the service's
//! tree dropped and counted, and startup_timeout bounding the wait.

use std::time::Duration;

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);

fn state(sb: &Sandbox, cfg: &std::path::Path, name: &str) -> String {
    sb.service(cfg, name)["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn notify_dropped(sb: &Sandbox) -> u64 {
    let sock = sb.state_dir().join("guardian.sock");
    let (_, m) = http(Target::Unix(&sock), "GET", "/metrics", &[], b"");
    m.lines()
        .find_map(|l| l.strip_prefix("guardian_notify_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn ready_notify_waits_for_ready_from_the_service_tree_and_shows_its_status() {
    let notify = require("systemd-notify", "systemd");
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.a]\ncommand = [\"sh\", \"-c\", \"while [ ! -e go ]; do sleep 0.05; done; {} --ready '--status=loaded 3 maps'; exec sleep 300\"]\ncwd = \".\"\nready = \"notify\"\nstartup_timeout = \"60s\"\n",
            notify.display()
        ),
    );
    let mut g = sb.start(&cfg);
    assert!(wait_for(LONG, || state(&sb, &cfg, "a") == "starting"));
    // Started, not ready: it has said nothing yet. Something outside its tree says READY=1.
    let before = notify_dropped(&sb);
    let foreign = std::os::unix::net::UnixDatagram::unbound().unwrap();
    foreign
        .send_to(b"READY=1", sb.state_dir().join("notify.sock"))
        .unwrap();
    // And a message over 4 KiB.
    foreign
        .send_to(&[b'X'; 5000], sb.state_dir().join("notify.sock"))
        .unwrap();
    assert!(wait_for(LONG, || notify_dropped(&sb) >= before + 2));
    assert_eq!(
        state(&sb, &cfg, "a"),
        "starting",
        "a foreign READY=1 counted"
    );
    // Its own tree says it (systemd-notify is a child of the service's shell).
    sb.write("go", "");
    assert!(wait_for(LONG, || state(&sb, &cfg, "a") == "running"));
    assert!(wait_for(LONG, || sb.service(&cfg, "a")["status_text"]
        == "loaded 3 maps"));
    let ready = sb
        .events("a")
        .into_iter()
        .find(|e| e["action"] == "ready")
        .expect("a ready event");
    assert_eq!(ready["success"], true);
    // A clean stop leaves no notify socket behind.
    assert_eq!(g.stop(), Some(0));
    assert!(!sb.state_dir().join("notify.sock").exists());
}

#[test]
fn the_reference_server_says_it_is_ready() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.web]\ncommand = [\"{}\", \"--port\", \"{{port}}\"]\nport = {}\nready = \"notify\"\n",
            example_bin("socketio_server").display(),
            free_port()
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || state(&sb, &cfg, "web") == "running"));
}

#[test]
fn startup_timeout_bounds_the_wait_for_ready() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"sleep\", \"300\"]\nready = \"notify\"\nstartup_timeout = \"500ms\"\nbackoff = { initial_delay = \"50ms\", max_retries = 1 }\n",
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || state(&sb, &cfg, "a") == "failed"));
    assert!(
        sb.actions("a").iter().any(|a| a == "startup_timeout"),
        "{:?}",
        sb.actions("a")
    );
}

#[test]
fn bad_ready_values_are_config_errors() {
    let sb = Sandbox::new();
    for (extra, want) in [
        (
            "ready = \"soon\"",
            "`soon` is not one of: port, healthy, notify, started",
        ),
        ("ready = \"port\"", "port readiness needs a `port`"),
        (
            "ready = \"healthy\"",
            "healthy readiness needs health checks",
        ),
        (
            "ready = \"log:^up$\"",
            "log:REGEX readiness is not built yet",
        ),
    ] {
        let cfg = sb.write(
            "g.toml",
            &format!("[services.a]\ncommand = [\"sleep\", \"300\"]\n{extra}\n"),
        );
        let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
        assert_eq!(out.code, 2, "{extra}: {}", out.all());
        assert!(
            out.stderr.contains("`services.a.ready`") && out.stderr.contains(want),
            "{want}:\n{}",
            out.stderr
        );
    }
}
