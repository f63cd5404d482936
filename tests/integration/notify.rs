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

/// Whether the service has an event with this action.
fn saw(sb: &Sandbox, name: &str, action: &str) -> bool {
    sb.actions(name).iter().any(|a| a == action)
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
    assert!(saw(&sb, "a", "startup_timeout"), "{:?}", sb.actions("a"));
}

#[test]
fn bad_ready_values_are_config_errors() {
    let sb = Sandbox::new();
    for (extra, want) in [
        (
            "ready = \"soon\"",
            "`soon` is not one of: port, healthy, notify, log:REGEX, started",
        ),
        ("ready = \"port\"", "port readiness needs a `port`"),
        (
            "ready = \"healthy\"",
            "healthy readiness needs health checks",
        ),
        (
            "ready = \"log:(up\"",
            "the pattern after `log:` does not compile",
        ),
        ("ready = \"log:\"", "`log:` needs a pattern"),
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

#[test]
fn bad_watchdog_and_essential_values_are_config_errors() {
    let sb = Sandbox::new();
    for (extra, key, want) in [
        ("watchdog = \"50ms\"", "watchdog", "50ms is too short"),
        ("watchdog = 0", "watchdog", "is too short"),
        (
            "essential = true\nautostart = false",
            "essential",
            "an essential service must start with guardian",
        ),
    ] {
        let cfg = sb.write(
            "g.toml",
            &format!("[services.a]\ncommand = [\"sleep\", \"300\"]\n{extra}\n"),
        );
        let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
        assert_eq!(out.code, 2, "{extra}: {}", out.all());
        assert!(
            out.stderr.contains(&format!("`services.a.{key}`")) && out.stderr.contains(want),
            "{want}:\n{}",
            out.stderr
        );
    }
}

/// A regex that does not compile is named with its position in the file and the regex
/// engine's own pointer into the pattern.
#[test]
fn a_log_pattern_that_does_not_compile_is_shown_where_it_is() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"sleep\", \"300\"]\nready = \"log:listening on (port\"\n",
    );
    let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("g.toml:3"), "{}", out.stderr);
    assert!(out.stderr.contains("unclosed group"), "{}", out.stderr);
}

/// `ready = "log:REGEX"`: the instance is ready at the first output line that matches, not
/// before; a pattern that never matches runs into startup_timeout.
#[test]
fn ready_log_waits_for_the_first_matching_line() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"sh\", \"-c\", \"echo starting up; echo listening on port x; while [ ! -e go ]; do sleep 0.05; done; echo listening on port 8080; exec sleep 300\"]\ncwd = \".\"\nready = 'log:^listening on port \\d+$'\nstartup_timeout = \"60s\"\n[services.b]\ncommand = [\"sh\", \"-c\", \"echo hello; exec sleep 300\"]\nready = \"log:never printed\"\nstartup_timeout = \"1s\"\nbackoff = { initial_delay = \"50ms\", max_retries = 1 }\n",
    );
    let _g = sb.start(&cfg);
    let log = sb.state_dir().join("logs/a.log");
    assert!(wait_for(LONG, || std::fs::read_to_string(&log)
        .is_ok_and(|l| l.contains("listening on port x"))));
    // Lines that do not match leave it starting.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state(&sb, &cfg, "a"), "starting");
    sb.write("go", "");
    assert!(wait_for(LONG, || state(&sb, &cfg, "a") == "running"));
    assert!(wait_for(LONG, || state(&sb, &cfg, "b") == "failed"));
    assert!(saw(&sb, "b", "startup_timeout"));
}

/// `watchdog` with the real `systemd-notify`: the service gets WATCHDOG_USEC and its own
/// PID as WATCHDOG_PID; pings in time leave it alone (and show as last_watchdog);
/// WATCHDOG=trigger restarts it, with events whose trigger is `watchdog`.
#[test]
fn watchdog_pings_keep_a_service_and_watchdog_trigger_restarts_it() {
    let notify = require("systemd-notify", "systemd");
    let sb = Sandbox::new();
    let script = format!(
        "echo \"$WATCHDOG_USEC $WATCHDOG_PID $$\" > wd.txt; while [ ! -e trigger ]; do {n} WATCHDOG=1; sleep 0.2; done; rm trigger; {n} WATCHDOG=trigger; exec sleep 300",
        n = notify.display()
    );
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.a]\ncommand = [\"sh\", \"-c\", {script:?}]\ncwd = \".\"\nwatchdog = \"1s\"\n[services.a.health]\nunhealthy_threshold = 1\n"
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || state(&sb, &cfg, "a") == "running"));
    assert!(wait_for(LONG, || sb.path().join("wd.txt").exists()));
    let first = sb.pid_of(&cfg, "a").unwrap();
    assert!(wait_for(LONG, || std::fs::read_to_string(
        sb.path().join("wd.txt")
    )
    .is_ok_and(|t| t.trim() == format!("1000000 {first} {first}"))));
    // Three periods of pings in time: no watchdog verdict, and the last ping shows.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!saw(&sb, "a", "watchdog"), "{:?}", sb.actions("a"));
    assert!(sb.service(&cfg, "a")["last_watchdog"].as_f64().is_some());
    let out = sb.client(&cfg, &["status"]);
    assert!(out.stdout.contains("last watchdog ping"), "{}", out.stdout);
    // The service asks to be treated as hung.
    sb.write("trigger", "");
    assert!(wait_for(LONG, || sb
        .pid_of(&cfg, "a")
        .is_some_and(|p| p != first)));
    let events = sb.events("a");
    let wd = events
        .iter()
        .find(|e| e["action"] == "watchdog")
        .expect("a watchdog event");
    assert_eq!(wd["trigger"], "watchdog");
    assert!(
        wd["error_message"]
            .as_str()
            .unwrap()
            .contains("WATCHDOG=trigger")
    );
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "restart_service" && e["trigger"] == "watchdog"),
        "{events:?}"
    );
}

/// The reference server pings from its event loop and says how many clients it has; once
/// its loop blocks (`--block-loop-after`), its port still accepts in the kernel, but the
/// pings stop: the watchdog catches it and the recovery ladder restarts it.
#[test]
fn a_hung_event_loop_is_caught_by_the_watchdog() {
    let sb = Sandbox::new();
    let port = free_port();
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.web]\ncommand = [\"{}\", \"--port\", \"{{port}}\", \"--block-loop-after\", \"3s\"]\nport = {port}\nready = \"notify\"\nwatchdog = \"1s\"\nshutdown_timeout = \"1s\"\n[services.web.health]\nunhealthy_threshold = 1\n",
            example_bin("socketio_server").display()
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || state(&sb, &cfg, "web") == "running"));
    let first = sb.pid_of(&cfg, "web").unwrap();
    assert!(wait_for(LONG, || sb.service(&cfg, "web")["status_text"]
        == "0 clients connected"));
    assert!(wait_for(LONG, || sb.service(&cfg, "web")["last_watchdog"]
        .as_f64()
        .is_some()));
    let out = sb.client(&cfg, &["status"]);
    assert!(
        out.stdout.contains("says: 0 clients connected"),
        "{}",
        out.stdout
    );
    // Hung: caught by the watchdog, restarted.
    assert!(wait_for(LONG, || sb
        .pid_of(&cfg, "web")
        .is_some_and(|p| p != first)));
    let events = sb.events("web");
    assert!(
        events.iter().any(|e| e["action"] == "watchdog"
            && e["pid"] == first
            && e["error_message"]
                .as_str()
                .is_some_and(|m| m.contains("no WATCHDOG=1 for"))),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "restart_service" && e["trigger"] == "watchdog"),
        "{events:?}"
    );
    assert!(wait_for(LONG, || !alive(first)));
}

/// A small program of its own (python3's socket module, no systemd library) says
/// EXTEND_TIMEOUT_USEC, MAINPID (it forks and its first process exits, as a classic daemon
/// does), RELOADING=1 … READY=1, ERRNO and STOPPING=1.
#[test]
fn a_small_program_speaks_every_message() {
    let python = require("python3", "python3");
    let sb = Sandbox::new();
    sb.write(
        "daemon.py",
        r#"import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def say(m):
    s.sendto(m.encode(), os.environ["NOTIFY_SOCKET"])
def wait(f):
    while not os.path.exists(f):
        time.sleep(0.05)
say("EXTEND_TIMEOUT_USEC=30000000")
wait("go")
child = os.fork()
if child:
    say("MAINPID=%d\nREADY=1\nSTATUS=forked" % child)
    time.sleep(0.5)
    sys.exit(0)
open("child.pid", "w").write(str(os.getpid()))
wait("reload")
say("RELOADING=1")
time.sleep(0.3)
say("READY=1\nSTATUS=reloaded")
wait("fail")
say("ERRNO=2\nSTOPPING=1")
time.sleep(0.3)
sys.exit(3)
"#,
    );
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.d]\ncommand = [\"{}\", \"daemon.py\"]\ncwd = \".\"\nready = \"notify\"\nstartup_timeout = \"1s\"\nrestart = \"no\"\n",
            python.display()
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || saw(&sb, "d", "extend_timeout")));
    let first = sb.service(&cfg, "d")["pid"].as_i64().unwrap() as i32;
    // Past its startup_timeout of 1 s, still starting: the deadline moved.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(state(&sb, &cfg, "d"), "starting");
    sb.write("go", "");
    assert!(wait_for(LONG, || sb.path().join("child.pid").exists()
        && state(&sb, &cfg, "d") == "running"));
    let child: i32 = std::fs::read_to_string(sb.path().join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "d") == Some(child)));
    // The first process exits: not the service's end.
    assert!(wait_for(LONG, || !alive(first)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state(&sb, &cfg, "d"), "running");
    assert_eq!(sb.pid_of(&cfg, "d"), Some(child));
    let pidfile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.state_dir().join("d.pid")).unwrap())
            .unwrap();
    assert_eq!(pidfile["pid"], child);
    sb.write("reload", "");
    assert!(wait_for(LONG, || saw(&sb, "d", "reloaded")));
    assert!(saw(&sb, "d", "reloading"));
    assert_eq!(sb.service(&cfg, "d")["status_text"], "reloaded");
    sb.write("fail", "");
    assert!(wait_for(LONG, || state(&sb, &cfg, "d") == "failed"));
    let events = sb.events("d");
    assert!(events.iter().any(|e| e["action"] == "stopping"));
    let exit = events
        .iter()
        .find(|e| e["action"] == "exit")
        .expect("an exit event");
    assert!(
        exit["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("it said ERRNO=2: No such file or directory")),
        "{exit}"
    );
    assert_eq!(exit["pid"], child);
}

/// A flood of datagrams from outside every service's tree: each is dropped and counted,
/// guardian's memory does not grow with it, and it goes on answering.
#[test]
fn a_flood_of_foreign_datagrams_is_dropped_and_nothing_grows() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.a]\ncommand = [\"sleep\", \"300\"]\n");
    let g = sb.start(&cfg);
    assert!(wait_for(LONG, || state(&sb, &cfg, "a") == "running"));
    let foreign = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let to = sb.state_dir().join("notify.sock");
    let flood = |n: usize| {
        let mut sent = 0;
        for i in 0..n {
            let msg = format!("READY=1\nSTATUS=flood {i}\nWATCHDOG=1");
            if foreign.send_to(msg.as_bytes(), &to).is_ok() {
                sent += 1;
            }
        }
        sent
    };
    flood(20_000);
    assert!(wait_for(LONG, || notify_dropped(&sb) >= 1));
    let rss_before = proc_status_kib(g.pid(), "VmRSS");
    let before = notify_dropped(&sb);
    let sent = flood(100_000);
    assert!(sent > 0);
    assert!(wait_for(LONG, || notify_dropped(&sb) > before));
    let rss_after = proc_status_kib(g.pid(), "VmRSS");
    assert!(
        rss_after < rss_before + 8 * 1024,
        "guardian grew from {rss_before} KiB to {rss_after} KiB under the flood"
    );
    assert_eq!(state(&sb, &cfg, "a"), "running");
    assert!(sb.service(&cfg, "a")["status_text"].is_null());
}

/// `essential = true` (SPEC §14): when the essential service ends for good, guardian stops
/// the other services and exits with its code: the exit code, 128 + the signal, 0 for a
/// task that completed, the last exit's code once retries run out.
#[test]
fn an_essential_service_ends_guardian_with_its_code() {
    let table = [
        (
            "[\"sh\", \"-c\", \"sleep 0.5; exit 7\"]",
            "restart = \"no\"",
            7,
        ),
        (
            "[\"sh\", \"-c\", \"sleep 0.5; kill -9 $$\"]",
            "restart = \"no\"",
            137,
        ),
        (
            "[\"sh\", \"-c\", \"sleep 0.5; exit 0\"]",
            "restart = \"on-failure\"",
            0,
        ),
        (
            "[\"sh\", \"-c\", \"sleep 0.5; exit 5\"]",
            "backoff = { initial_delay = \"50ms\", max_retries = 1 }",
            5,
        ),
    ];
    for (command, restart, code) in table {
        let sb = Sandbox::new();
        let cfg = sb.write(
            "g.toml",
            &format!(
                "[services.main]\ncommand = {command}\nessential = true\n{restart}\n[services.side]\ncommand = [\"sleep\", \"300\"]\n"
            ),
        );
        let mut g = sb.start(&cfg);
        assert!(wait_for(LONG, || sb.pid_of(&cfg, "side").is_some()));
        let side = sb.pid_of(&cfg, "side").unwrap();
        assert_eq!(
            g.wait_exit(LONG),
            Some(code),
            "{command} {restart}: {}",
            sb.stderr()
        );
        assert!(!alive(side), "the other service outlived guardian");
        assert!(saw(&sb, "main", "essential"), "{:?}", sb.actions("main"));
    }
}

/// Without `essential`, the same end leaves guardian running.
#[test]
fn a_service_that_is_not_essential_leaves_guardian_running() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.main]\ncommand = [\"sh\", \"-c\", \"exit 7\"]\nrestart = \"no\"\n",
    );
    let mut g = sb.start(&cfg);
    assert!(wait_for(LONG, || state(&sb, &cfg, "main") == "failed"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(g.pid()));
    assert_eq!(g.stop(), Some(0));
}
