//! SPEC §5 lifecycle with real processes: restart on SIGKILL, backoff to failed, the stop
//! grace, daemonized grandchildren, adoption after a guardian crash, spawn errors.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

const LONG: Duration = Duration::from_secs(30);

fn pidfile_pid(path: &std::path::Path) -> Option<i32> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

#[test]
fn sigkilled_service_is_restarted_with_a_new_pid() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.svc]\ncommand = [\"sleep\", \"300\"]\n[services.svc.backoff]\ninitial_delay = \"300ms\"\njitter = 0\n");
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "svc").is_some()));
    let first = sb.pid_of(&cfg, "svc").unwrap();
    assert_eq!(pidfile_pid(&sb.state_dir().join("svc.pid")), Some(first));
    kill(first, Signal::SIGKILL);
    assert!(
        wait_for(LONG, || sb.pid_of(&cfg, "svc").is_some_and(|p| p != first)),
        "{}",
        sb.stderr()
    );
    let second = sb.pid_of(&cfg, "svc").unwrap();
    assert_eq!(sb.service(&cfg, "svc")["restarts"], 1);
    assert_eq!(pidfile_pid(&sb.state_dir().join("svc.pid")), Some(second));
    let ev = sb.events("svc");
    let exit = ev
        .iter()
        .find(|e| e["action"] == "exit")
        .expect("exit event");
    assert_eq!(exit["error_message"], "killed by SIGKILL");
    assert!(ev.iter().any(|e| e["action"] == "restart_scheduled"
        && e["detail"].as_str().unwrap().contains("in 300ms")));
}

#[test]
fn a_service_that_exits_at_once_ends_failed_after_max_retries() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.svc]\ncommand = [\"false\"]\nenv_prefix = \"SVC\"\n[services.svc.backoff]\ninitial_delay = \"50ms\"\nfactor = 2.0\njitter = 0\n");
    let _g = sb.spawn_with_env(&cfg, &[("SVC_MAX_RETRIES", "2".as_ref())]);
    assert!(wait_for(LONG, || sb.service(&cfg, "svc")["state"] == "failed"));
    let ev = sb.events("svc");
    let delays: Vec<&str> = ev
        .iter()
        .filter(|e| e["action"] == "restart_scheduled")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(
        delays,
        vec!["retry 1 of 2 in 50ms", "retry 2 of 2 in 100ms"]
    );
    let failed = ev.iter().find(|e| e["action"] == "failed").unwrap();
    assert!(
        failed["error_message"]
            .as_str()
            .unwrap()
            .contains("guardian start svc"),
        "{failed}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sb.events("svc")
            .iter()
            .filter(|e| e["action"] == "start")
            .count(),
        3,
        "nothing restarts a failed service"
    );
    // `guardian start` resets it.
    let out = sb.client(&cfg, &["start", "svc"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(wait_for(LONG, || sb
        .events("svc")
        .iter()
        .filter(|e| e["action"] == "start")
        .count()
        >= 4));
}

#[test]
fn a_service_ignoring_sigterm_is_killed_after_the_timeout() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.stubborn]\ncommand = [\"sh\", \"-c\", \"trap '' TERM; while true; do sleep 0.1; done\"]\nshutdown_timeout = \"1s\"\nidentity = { patterns = [\"trap\"] }\n");
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "stubborn").is_some()));
    let pid = sb.pid_of(&cfg, "stubborn").unwrap();
    let out = sb.client(&cfg, &["stop", "stubborn"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(!alive(pid));
    assert_eq!(sb.service(&cfg, "stubborn")["state"], "stopped");
    assert!(!sb.state_dir().join("stubborn.pid").exists());
    let ev = sb.events("stubborn");
    assert!(ev.iter().any(|e| e["action"] == "kill"), "{ev:?}");
    assert!(
        ev.iter()
            .any(|e| e["action"] == "stopped" && e["detail"] == "killed by SIGKILL"),
        "{ev:?}"
    );
}

#[test]
fn a_daemonized_grandchild_is_stopped_with_its_service_and_no_zombie_is_left() {
    let sb = Sandbox::new();
    let marker = sb.path().join("grandchild.pid");
    let script = format!(
        "setsid sh -c 'echo $$ > {}; exec sleep 300' & sleep 300",
        marker.display()
    );
    let cfg = sb.write("g.toml", &format!("[services.forker]\ncommand = [\"sh\", \"-c\", \"{script}\"]\nshutdown_timeout = \"2s\"\n"));
    let mut g = sb.start(&cfg);
    assert!(wait_for(LONG, || marker.exists()
        && std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse::<i32>()
            .is_ok()));
    let grandchild: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let service = sb.pid_of(&cfg, "forker").unwrap();
    assert!(alive(grandchild));
    assert_eq!(sb.client(&cfg, &["stop", "forker"]).code, 0);
    assert!(
        wait_for(LONG, || !alive(grandchild) && !alive(service)),
        "grandchild {grandchild} survived"
    );
    let zombies = |parent: i32| -> Vec<i32> {
        procfs::process::all_processes()
            .unwrap()
            .flatten()
            .filter_map(|p| p.stat().ok())
            .filter(|s| s.ppid == parent && s.state == 'Z')
            .map(|s| s.pid)
            .collect()
    };
    assert!(
        wait_for(LONG, || zombies(g.pid()).is_empty()),
        "zombies under guardian: {:?}",
        zombies(g.pid())
    );
    assert_eq!(g.stop(), Some(0));
}

#[test]
fn a_guardian_killed_with_sigkill_leaves_the_service_and_the_next_one_adopts_it() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.svc]\ncommand = [\"sleep\", \"300\"]\n[services.svc.backoff]\ninitial_delay = \"100ms\"\n");
    let mut first = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "svc").is_some()));
    let pid = sb.pid_of(&cfg, "svc").unwrap();
    kill(first.pid(), Signal::SIGKILL);
    first.child.wait().unwrap();
    assert!(alive(pid), "the service outlives a crashed guardian");
    let _second = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.service(&cfg, "svc")["adopted"] == true));
    assert_eq!(
        sb.pid_of(&cfg, "svc"),
        Some(pid),
        "same pid, no second copy"
    );
    assert_eq!(
        sb.events("svc")
            .iter()
            .filter(|e| e["action"] == "start")
            .count(),
        1
    );
    // It dies later: noticed through the pidfd, and restarted.
    kill(pid, Signal::SIGKILL);
    assert!(
        wait_for(LONG, || sb.pid_of(&cfg, "svc").is_some_and(|p| p != pid)),
        "{}",
        sb.stderr()
    );
}

#[test]
fn stop_services_on_exit_false_hands_the_service_to_the_next_guardian() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[guardian]\nstop_services_on_exit = false\n[services.svc]\ncommand = [\"sleep\", \"300\"]\n");
    let mut first = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "svc").is_some()));
    let pid = sb.pid_of(&cfg, "svc").unwrap();
    assert_eq!(first.stop(), Some(0));
    assert!(alive(pid));
    assert!(
        !sb.state_dir().join("guardian.pid").exists(),
        "the guardian's own pid file is removed"
    );
    let second = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.service(&cfg, "svc")["adopted"] == true));
    assert_eq!(sb.pid_of(&cfg, "svc"), Some(pid));
    drop(second);
    // The config still says not to stop services: it is still alive for the next one.
    assert!(alive(pid));
    kill(pid, Signal::SIGKILL);
}

#[test]
fn a_missing_program_is_a_clear_failed_start() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.ghost]\ncommand = [\"/nonexistent/program\"]\n[services.ghost.backoff]\ninitial_delay = \"50ms\"\nmax_retries = 1\n");
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.service(&cfg, "ghost")["state"] == "failed"));
    let ev = sb.events("ghost");
    let start = ev.iter().find(|e| e["action"] == "start").unwrap();
    assert_eq!(start["success"], false);
    assert!(
        start["error_message"]
            .as_str()
            .unwrap()
            .contains("cannot start `/nonexistent/program`: no such program"),
        "{start}"
    );
}

#[test]
fn an_unwritable_log_folder_does_not_stop_the_service() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.svc]\ncommand = [\"sh\", \"-c\", \"echo hello; exec sleep 300\"]\n",
    );
    std::fs::create_dir_all(sb.state_dir()).unwrap();
    std::fs::set_permissions(
        sb.state_dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    // A file where the logs folder should be: nothing can be created under it, even by root.
    std::fs::write(sb.state_dir().join("logs"), "not a folder").unwrap();
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "svc").is_some()));
    assert!(
        wait_for(LONG, || sb.stderr().contains("cannot write a log file")),
        "{}",
        sb.stderr()
    );
    assert_eq!(sb.service(&cfg, "svc")["state"], "running");
    // The bytes that could not be written are counted (`hello\n`).
    let sock = sb.state_dir().join("guardian.sock");
    let (_, metrics) = http(Target::Unix(&sock), "GET", "/metrics", &[], b"");
    assert!(
        metrics.contains("guardian_log_dropped_bytes_total{service=\"svc\"} 6"),
        "{metrics}"
    );
}

#[test]
fn logs_show_the_captured_output_and_unknown_services_exit_4() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.talker]\ncommand = [\"sh\", \"-c\", \"echo out-line; echo err-line >&2; exec sleep 300\"]\n");
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb
        .client(&cfg, &["logs", "talker"])
        .stdout
        .contains("err-line")));
    let out = sb.client(&cfg, &["logs", "talker", "-n", "5"]);
    assert!(out.stdout.contains("out-line"), "{}", out.stdout);
    assert_eq!(sb.client(&cfg, &["logs", "nobody"]).code, 4);
    assert_eq!(sb.client(&cfg, &["restart", "nobody"]).code, 4);
    assert_eq!(sb.client(&cfg, &["events", "nobody"]).code, 4);
}

#[test]
fn client_commands_without_a_guardian_exit_1_and_status_shows_pid_file_verdicts() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.svc]\ncommand = [\"sleep\", \"300\"]\n");
    let out = sb.client(&cfg, &["status"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("no guardian is running")
            && out.stderr.contains("svc: not running: no pid file"),
        "{}",
        out.stderr
    );
    assert_eq!(sb.client(&cfg, &["stop"]).code, 1);
    assert_eq!(sb.client(&cfg, &["restart", "svc"]).code, 1);
}

#[test]
fn five_hundred_sigkills_give_five_hundred_restarts_and_never_two_instances() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.svc]\ncommand = [\"sleep\", \"300\"]\n[services.svc.backoff]\ninitial_delay = 0\nmax_retries = 1000\n");
    let _g = sb.start(&cfg);
    let pidfile = sb.state_dir().join("svc.pid");
    let mut last = 0;
    for i in 0..500 {
        assert!(
            wait_for(LONG, || pidfile_pid(&pidfile)
                .is_some_and(|p| p != last && alive(p))),
            "restart {i}"
        );
        let pid = pidfile_pid(&pidfile).unwrap();
        let sleepers = procfs::process::all_processes()
            .unwrap()
            .flatten()
            .filter(|p| {
                p.cmdline()
                    .is_ok_and(|c| c.first().map(String::as_str) == Some("sleep"))
                    && p.stat().is_ok_and(|s| s.ppid == _g.pid() && s.state != 'Z')
            })
            .count();
        assert!(sleepers <= 1, "two instances at once after {i} kills");
        kill(pid, Signal::SIGKILL);
        last = pid;
    }
    assert!(wait_for(LONG, || sb.service(&cfg, "svc")["restarts"] == 500));
}

/// A guardian that leaves its `sleep 300` service running for the next one; returns its pid.
fn leave_a_service_behind(sb: &Sandbox) -> i32 {
    let cfg = sb.write(
        "first.toml",
        "[guardian]\nstop_services_on_exit = false\n[services.svc]\ncommand = [\"sleep\", \"300\"]\n",
    );
    let mut g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "svc").is_some()));
    let pid = sb.pid_of(&cfg, "svc").unwrap();
    assert_eq!(g.stop(), Some(0));
    assert!(alive(pid));
    pid
}

#[test]
fn on_orphan_replace_stops_the_old_instance_and_starts_a_new_one() {
    let sb = Sandbox::new();
    let old = leave_a_service_behind(&sb);
    let cfg = sb.write(
        "g.toml",
        "[services.svc]\ncommand = [\"sleep\", \"300\"]\non_orphan = \"replace\"\n",
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb
        .pid_of(&cfg, "svc")
        .is_some_and(|p| p != old)));
    assert!(wait_for(LONG, || !alive(old)));
    let actions = sb.actions("svc");
    let adopted = actions.iter().rposition(|a| a == "adopted").unwrap();
    let stop = actions.iter().rposition(|a| a == "stop").unwrap();
    let start = actions.iter().rposition(|a| a == "start").unwrap();
    assert!(adopted < stop && stop < start, "{actions:?}");
}

#[test]
fn on_orphan_fail_leaves_the_old_instance_alone_and_says_how_to_resolve() {
    let sb = Sandbox::new();
    let old = leave_a_service_behind(&sb);
    let cfg = sb.write(
        "g.toml",
        "[services.svc]\ncommand = [\"sleep\", \"300\"]\non_orphan = \"fail\"\n",
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.service(&cfg, "svc")["state"] == "failed"));
    assert!(alive(old), "a refused instance is never signalled");
    let err = sb.service(&cfg, "svc")["last_error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(err.contains(&format!("kill -TERM {old}")), "{err}");
    assert!(err.contains("on_orphan = \"adopt\""), "{err}");
    kill(old, Signal::SIGKILL);
}

#[test]
fn a_second_signal_kills_every_service_at_once() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.stubborn]\ncommand = [\"sh\", \"-c\", \"trap '' TERM; while true; do sleep 0.1; done\"]\nshutdown_timeout = \"300s\"\nidentity = { patterns = [\"trap\"] }\n",
    );
    let mut g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "stubborn").is_some()));
    let pid = sb.pid_of(&cfg, "stubborn").unwrap();
    kill(g.pid(), Signal::SIGTERM);
    assert!(wait_for(LONG, || sb.service(&cfg, "stubborn")["state"] == "stopping"));
    assert!(alive(pid), "the first signal waits for shutdown_timeout");
    kill(g.pid(), Signal::SIGINT);
    // Not 300 s: the second signal SIGKILLs the group and guardian exits cleanly.
    assert!(wait_for(LONG, || !alive(pid)));
    assert_eq!(g.stop(), Some(0));
    assert!(!sb.state_dir().join("stubborn.pid").exists());
}

#[test]
fn under_systemd_ready_is_sent_once_the_services_are_up_and_stopping_at_the_end() {
    let sb = Sandbox::new();
    let port = free_port();
    // The service listens only after a second: READY=1 must wait for it.
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.web]\ncommand = [\"sh\", \"-c\", \"sleep 1; exec {} --port {port}\"]\nport = {port}\n",
            example_bin("socketio_server").display()
        ),
    );
    let sock_path = sb.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(LONG)).unwrap();
    let mut g = sb.spawn_with_env(&cfg, &[("NOTIFY_SOCKET", sock_path.as_os_str())]);
    recv_until(&sock, "READY=1");
    assert_eq!(
        sb.service(&cfg, "web")["state"],
        "running",
        "ready only once it runs"
    );
    kill(g.pid(), Signal::SIGTERM);
    recv_until(&sock, "STOPPING=1");
    assert_eq!(g.stop(), Some(0));
}

/// A SIGTERM that arrives while the first services start is a graceful stop: nothing is
/// left running (signals are watched before any service starts).
#[test]
fn a_sigterm_during_start_up_leaves_no_service_behind() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"sleep\", \"300\"]\n[services.b]\ncommand = [\"sleep\", \"301\"]\n",
    );
    let mut g = sb.spawn_with_env(&cfg, &[]);
    let gpid = g.pid();
    let mut seen = Vec::new();
    assert!(wait_for(LONG, || {
        seen = children(gpid);
        !seen.is_empty()
    }));
    kill(gpid, Signal::SIGTERM);
    assert_eq!(g.stop(), Some(0), "a graceful stop");
    for pid in seen {
        assert!(
            wait_for(LONG, || !alive(pid)),
            "service pid {pid} outlived guardian"
        );
    }
}

/// The processes whose command line contains `marker`.
fn running_with(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

/// The same, with the SIGTERM sent by the first services themselves as they start, while
/// the rest of start-up is held up. Before signals were watched ahead of the first start,
/// guardian died of it (killed by the signal) and left the services running.
#[test]
fn a_sigterm_sent_by_a_starting_service_is_a_graceful_stop() {
    let sb = Sandbox::new();
    let marker = format!("{}.{}", 3000 + std::process::id() % 1000, 7);
    let text: String = (0..8)
        .map(|i| {
            format!(
                "[services.s{i}]\ncommand = [\"sh\", \"-c\", \"kill -TERM $PPID; exec sleep {marker}\"]\n"
            )
        })
        .collect();
    let cfg = sb.write("g.toml", &text);
    // The rest of start-up is held up (a test build's stall) while the services start.
    let mut g = sb.spawn_with_env(&cfg, &[("_GUARDIAN_TEST_STARTUP_STALL_MS", "500".as_ref())]);
    assert_eq!(g.wait_exit(LONG), Some(0), "a graceful stop");
    let left = || running_with(&marker);
    let mut seen = Vec::new();
    assert!(
        wait_for(LONG, || {
            seen = left();
            seen.is_empty()
        }),
        "services {seen:?} outlived guardian"
    );
}

/// Services that start before guardian's async runtime exists (a stack without held
/// sockets): a test build holds the runtime back, and the services speak, say READY=1 and
/// exit in that time. Nothing is lost: the line is in the log, the exit is seen with its
/// code, READY=1 counts.
#[test]
fn what_the_first_services_do_before_the_runtime_exists_is_not_lost() {
    let notify = require("systemd-notify", "systemd");
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.quick]\ncommand = [\"sh\", \"-c\", \"echo said-at-once; exit 3\"]\nenv_prefix = \"QUICK\"\n\
             [services.ready]\ncommand = [\"sh\", \"-c\", \"{} --ready; exec sleep 300\"]\nready = \"notify\"\nstartup_timeout = \"60s\"\n",
            notify.display()
        ),
    );
    let mut g = sb.spawn_with_env(
        &cfg,
        &[
            ("_GUARDIAN_TEST_EARLY_STALL_MS", "800".as_ref()),
            ("QUICK_MAX_RETRIES", "0".as_ref()),
        ],
    );
    assert!(
        wait_for(LONG, || sb.service(&cfg, "ready")["state"] == "running"),
        "READY=1 sent before the runtime was lost: {}",
        sb.stderr()
    );
    assert!(wait_for(LONG, || sb.service(&cfg, "quick")["state"] == "failed"));
    let exit = sb
        .events("quick")
        .into_iter()
        .find(|e| e["action"] == "exit")
        .expect("an exit event");
    assert_eq!(exit["error_message"], "exit code 3", "{exit}");
    let log = std::fs::read_to_string(sb.state_dir().join("logs/quick.log")).unwrap_or_default();
    assert!(log.contains("said-at-once"), "log: {log:?}");
    assert_eq!(g.stop(), Some(0));
}

/// A SIGTERM that comes while the first services run but guardian's runtime does not exist
/// yet (held back by a test build) is a graceful stop too: guardian catches it from before
/// its first start.
#[test]
fn a_sigterm_before_the_runtime_exists_is_a_graceful_stop() {
    let sb = Sandbox::new();
    let marker = format!("{}.{}", 3000 + std::process::id() % 1000, 9);
    let cfg = sb.write(
        "g.toml",
        &format!(
            "[services.s]\ncommand = [\"sh\", \"-c\", \"kill -TERM $PPID; exec sleep {marker}\"]\n"
        ),
    );
    let mut g = sb.spawn_with_env(&cfg, &[("_GUARDIAN_TEST_EARLY_STALL_MS", "800".as_ref())]);
    assert_eq!(
        g.wait_exit(LONG),
        Some(0),
        "a graceful stop: {}",
        sb.stderr()
    );
    assert!(
        sb.actions("s").iter().any(|a| a == "stopped"),
        "{:?}",
        sb.actions("s")
    );
    assert!(
        wait_for(LONG, || running_with(&marker).is_empty()),
        "the service outlived guardian"
    );
}

/// A service starts with no signal blocked and nothing of guardian's open beyond its stdio
/// (guardian spawns from a thread of its own; neither its mask nor its table leaks).
#[test]
fn a_service_starts_with_an_empty_signal_mask_and_only_its_stdio() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.s]\ncommand = [\"sleep\", \"300\"]\n");
    let _g = sb.start(&cfg);
    let mut pid = None;
    assert!(wait_for(Duration::from_secs(20), || {
        pid = sb.pid_of(&cfg, "s");
        pid.is_some()
    }));
    let pid = pid.unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let blocked = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .unwrap()
        .trim();
    assert_eq!(blocked, "0000000000000000", "{status}");
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort();
    assert_eq!(fds, [0, 1, 2]);
    // And a stop is prompt: SIGTERM reaches it, and its exit reaches guardian.
    let t0 = std::time::Instant::now();
    let out = sb.client(&cfg, &["stop", "s"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(!alive(pid));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the stop took {:?}",
        t0.elapsed()
    );
}

/// `guardian logs -f a b`: both services' lines as they are written, interleaved, each with
/// its `NAME | ` prefix (no colour when stdout is not a terminal), through the API's stream;
/// it stops with an error naming the services when one is unknown.
#[test]
fn logs_follow_interleaves_several_services_with_their_prefix() {
    use std::io::BufRead;
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[guardian]\necho = false\n\
         [services.a]\ncommand = [\"sh\", \"-c\", \"echo early-a; while [ ! -e go ]; do sleep 0.05; done; echo late-a; exec sleep 300\"]\ncwd = \".\"\n\
         [services.b]\ncommand = [\"sh\", \"-c\", \"echo early-b; while [ ! -e go ]; do sleep 0.05; done; echo late-b; exec sleep 300\"]\ncwd = \".\"\n",
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb
        .client(&cfg, &["logs", "a", "b"])
        .stdout
        == "a | early-a\nb | early-b\n"));
    let out = sb.client(&cfg, &["logs", "-f", "a", "nobody"]);
    assert_eq!(out.code, 4, "{}", out.all());
    assert!(out.stderr.contains("nobody"), "{}", out.stderr);
    let mut follow = sb.cmd();
    follow
        .args(["-c", cfg.to_str().unwrap(), "--state-dir"])
        .arg(sb.state_dir())
        .args(["logs", "-f", "-n", "1", "a", "b"])
        .stdout(std::process::Stdio::piped());
    let mut child = follow.spawn().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let (out, lines) = (child.stdout.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        })
    };
    let seen = |want: &[&str]| {
        let got = lines.lock().unwrap();
        want.iter().all(|w| got.iter().any(|l| l == w))
    };
    assert!(wait_for(LONG, || seen(&["a | early-a", "b | early-b"])));
    sb.write("go", "");
    assert!(
        wait_for(LONG, || seen(&["a | late-a", "b | late-b"])),
        "{:?}",
        lines.lock().unwrap()
    );
    assert!(lines.lock().unwrap().iter().all(|l| !l.contains('\x1b')));
    kill(child.id() as i32, Signal::SIGTERM);
    let _ = child.wait();
    reader.join().unwrap();
}
