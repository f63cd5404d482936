//! What README.md says guardian does, each claim with a test that fails without it
//! (issue 27, item 5). Other modules hold the rest; these are the claims that had none.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

const LONG: Duration = Duration::from_secs(40);

fn state(sb: &Sandbox, cfg: &Path, name: &str) -> String {
    sb.service(cfg, name)["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// README, stacks: "if one does not come back, the roll stops and says so".
#[test]
fn a_rolling_restart_stops_at_an_instance_that_does_not_come_back() {
    let sb = Sandbox::new();
    let server = example_bin("socketio_server");
    let first = free_port_range(41);
    let cfg = sb.write(
        "g.toml",
        &format!(
            r#"[services.api]
command = ["sh", "-c", "[ -e broken.{{replica}} ] && exit 3; exec {} --port {{port}}"]
cwd = "."
port_range = [{}, {}]
replicas = 3
backoff = {{ initial_delay = "100ms", max_retries = 1, jitter = 0 }}
"#,
            server.display(),
            first,
            first + 40,
        ),
    );
    let _g = sb.start(&cfg);
    let pid = |n: &str| sb.pid_of(&cfg, n);
    assert!(wait_for(LONG, || ["api.1", "api.2", "api.3"]
        .iter()
        .all(|n| pid(n).is_some())));
    let (one, three) = (pid("api.1").unwrap(), pid("api.3").unwrap());
    sb.write("broken.2", "");
    let out = sb.client(&cfg, &["restart", "api"]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.all()
            .contains("rolling restart of api stopped: api.2 did not become ready again"),
        "{}",
        out.all()
    );
    assert!(
        out.all().contains("api.3 were left as they were"),
        "{}",
        out.all()
    );
    assert!(
        pid("api.1").is_some_and(|p| p != one),
        "api.1 was restarted"
    );
    assert_eq!(pid("api.3"), Some(three), "api.3 was left alone");
    let failed = sb
        .events("api")
        .into_iter()
        .any(|e| e["action"] == "rolling_restart" && e["success"] == false);
    assert!(failed, "no event says the roll stopped");
}

/// README, stacks: "A waiting service does not spend its startup_timeout or max_retries."
#[test]
fn a_waiting_service_spends_neither_its_startup_timeout_nor_its_retries() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        r#"[services.db]
command = ["sleep", "300"]
autostart = false

[services.api]
command = ["sleep", "301"]
depends_on = { db = "started" }
startup_timeout = "500ms"
backoff = { max_retries = 1 }
"#,
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || state(&sb, &cfg, "api") == "waiting"));
    // Four startup timeouts' worth of waiting: still waiting, nothing counted.
    let waited = std::time::Instant::now();
    assert!(!wait_for(Duration::from_secs(2), || state(
        &sb, &cfg, "api"
    ) != "waiting"));
    assert!(waited.elapsed() >= Duration::from_secs(2));
    let api = sb.service(&cfg, "api");
    assert_eq!(api["consecutive_failures"], 0, "{api}");
    assert_eq!(api["restarts"], 0, "{api}");
    assert_eq!(sb.client(&cfg, &["start", "db"]).code, 0);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "api").is_some()));
    assert_eq!(sb.service(&cfg, "api")["consecutive_failures"], 0);
}

/// README, stacks: "/health counts a completed task as fine."
#[test]
fn health_counts_a_completed_task_as_fine() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.task]\ncommand = [\"true\"]\nrestart = \"no\"\n[services.web]\ncommand = [\"sleep\", \"300\"]\n",
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || state(&sb, &cfg, "task") == "completed"
        && sb.pid_of(&cfg, "web").is_some()));
    let sock = sb.state_dir().join("guardian.sock");
    let (code, body) = http(Target::Unix(&sock), "GET", "/health", &[], b"");
    assert_eq!(code, 200, "{body}");
    // A task that failed is not fine: the same /health turns 503.
    let cfg = sb.write(
        "g.toml",
        "[services.task]\ncommand = [\"false\"]\nrestart = \"no\"\n[services.web]\ncommand = [\"sleep\", \"300\"]\n",
    );
    assert_eq!(sb.client(&cfg, &["reload"]).code, 0);
    assert_eq!(sb.client(&cfg, &["start", "task"]).code, 0);
    assert!(wait_for(LONG, || state(&sb, &cfg, "task") == "failed"));
    let (code, body) = http(Target::Unix(&sock), "GET", "/health", &[], b"");
    assert_eq!(code, 503, "{body}");
}

/// README, stacks: "A dependent that is already running is left running".
#[test]
fn a_running_dependent_is_left_running_when_its_dependency_fails() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        r#"[services.db]
command = ["sh", "-c", "[ -e fail ] && exit 1; exec sleep 300"]
cwd = "."
backoff = { initial_delay = "50ms", max_retries = 1, jitter = 0 }

[services.api]
command = ["sleep", "301"]
depends_on = { db = "started" }
"#,
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "api").is_some()));
    let api = sb.pid_of(&cfg, "api").unwrap();
    sb.write("fail", "");
    kill(sb.pid_of(&cfg, "db").unwrap(), Signal::SIGKILL);
    assert!(wait_for(LONG, || state(&sb, &cfg, "db") == "failed"));
    assert_eq!(sb.pid_of(&cfg, "api"), Some(api), "api was touched");
}

/// A service that stamps the time it got SIGTERM, its trap set before it counts as started.
fn stamped(name: &str) -> String {
    format!(
        "[services.{name}]\ncommand = [\"sh\", \"-c\", \"trap 'date +%s%N > {name}.term; exit 0' TERM; touch {name}.up; while true; do sleep 0.05; done\"]\ncwd = \".\"\n"
    )
}

/// README, stacks: "Stop order is the reverse of the dependency order for … services
/// removed by a reload".
#[test]
fn services_removed_by_a_reload_stop_in_reverse_dependency_order() {
    let sb = Sandbox::new();
    let keep = "[services.keep]\ncommand = [\"sleep\", \"300\"]\n";
    let cfg = sb.write(
        "g.toml",
        &format!(
            "{keep}{}{}depends_on = {{ db = \"started\" }}\n{}depends_on = {{ api = \"started\" }}\n",
            stamped("db"),
            stamped("api"),
            stamped("worker")
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || ["db", "api", "worker"]
        .iter()
        .all(|n| sb.path().join(format!("{n}.up")).exists())));
    std::fs::write(&cfg, keep).unwrap();
    assert_eq!(sb.client(&cfg, &["reload"]).code, 0);
    let t = |n: &str| -> Option<u128> {
        std::fs::read_to_string(sb.path().join(format!("{n}.term")))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    assert!(wait_for(LONG, || ["db", "api", "worker"]
        .iter()
        .all(|n| t(n).is_some())));
    let (db, api, worker) = (t("db").unwrap(), t("api").unwrap(), t("worker").unwrap());
    assert!(
        worker < api && api < db,
        "worker {worker}, api {api}, db {db}"
    );
}

/// README, environment: env files "are read again on every reload; a change restarts the
/// service".
#[test]
fn an_env_file_change_restarts_only_its_service_on_reload() {
    let sb = Sandbox::new();
    sb.write("app.env", "MODE=one\n");
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"sh\", \"-c\", \"echo $MODE > mode; exec sleep 300\"]\ncwd = \".\"\nenv_file = [\"app.env\"]\n[services.b]\ncommand = [\"sleep\", \"301\"]\n",
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "a").is_some()
        && sb.pid_of(&cfg, "b").is_some()));
    let (a, b) = (sb.pid_of(&cfg, "a").unwrap(), sb.pid_of(&cfg, "b").unwrap());
    sb.write("app.env", "MODE=two\n");
    let out = sb.client(&cfg, &["reload"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(wait_for(LONG, || sb
        .pid_of(&cfg, "a")
        .is_some_and(|p| p != a)));
    assert!(wait_for(LONG, || std::fs::read_to_string(
        sb.path().join("mode")
    )
    .is_ok_and(|m| m.trim() == "two")));
    assert_eq!(sb.pid_of(&cfg, "b"), Some(b));
}

/// README, environment: `group` applies at run time (guardian runs as root here).
#[test]
fn group_is_the_services_group_at_run_time() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (guardian may only switch groups as root); CI runs as root"
    );
    let sb = Sandbox::new();
    let nogroup = nix::unistd::Group::from_name("nogroup")
        .unwrap()
        .expect("Debian's nogroup");
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"sh\", \"-c\", \"id -g > gid; id -u > uid; exec sleep 300\"]\ncwd = \".\"\ngroup = \"nogroup\"\n",
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || std::fs::read_to_string(
        sb.path().join("uid")
    )
    .is_ok_and(|u| !u.trim().is_empty())));
    let gid = std::fs::read_to_string(sb.path().join("gid")).unwrap();
    assert_eq!(gid.trim(), nogroup.gid.to_string());
    let uid = std::fs::read_to_string(sb.path().join("uid")).unwrap();
    assert_eq!(uid.trim(), "0", "group alone keeps guardian's user");
}

/// README, environment: a limit above guardian's hard limit is a config error when guardian
/// is not root.
#[test]
fn a_limit_above_the_hard_limit_is_a_config_error_when_not_root() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    std::fs::set_permissions(sb.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"sleep\", \"300\"]\nlimits = { nofile = 4096 }\n",
    );
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let (uid, gid) = (
        format!("--reuid={}", nobody.uid),
        format!("--regid={}", nobody.gid),
    );
    // As nobody with a hard limit of 1024 descriptors: 4096 cannot be granted.
    let mut c = std::process::Command::new(require("prlimit", "util-linux"));
    c.args(["--nofile=1024:1024", "--"])
        .arg(require("setpriv", "util-linux"))
        .args([uid.as_str(), gid.as_str(), "--clear-groups", GUARDIAN])
        .args(["validate", "-c", cfg.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(sb.path())
        .stdin(Stdio::null());
    let out = output(&mut c);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("services.a.limits.nofile"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("1024"), "{}", out.stderr);
    // As root the same limit is granted.
    let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.all());
}

/// README, output: "The prefix is coloured … only when guardian's stdout is a terminal and
/// NO_COLOR is unset."
#[test]
fn echoed_lines_are_coloured_on_a_terminal_unless_no_color() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.web]\ncommand = [\"sh\", \"-c\", \"echo hello-from-web; exec sleep 300\"]\n",
    );
    let run = |no_color: bool| -> String {
        let inner = format!(
            "exec {GUARDIAN} run -c {} --state-dir {}",
            cfg.display(),
            sb.state_dir().display()
        );
        let mut c = std::process::Command::new(require("script", "util-linux"));
        c.args(["-qefc", &inner, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TERM", "xterm-256color")
            .current_dir(sb.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if no_color {
            c.env("NO_COLOR", "1");
        }
        let mut child = c.spawn().unwrap();
        let screen = collect(child.stdout.take().unwrap());
        let text = || String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
        assert!(
            wait_for(LONG, || text().contains("hello-from-web")),
            "{}",
            text()
        );
        let pid = std::fs::read_to_string(sb.state_dir().join("guardian.pid"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["pid"].as_i64())
            .expect("guardian's PID file") as i32;
        kill(pid, Signal::SIGTERM);
        let _ = child.wait();
        text()
    };
    // The echoed line (`web | hello-from-web`), not guardian's own log of the start.
    let echoed = |text: &str| {
        text.lines()
            .find(|l| l.contains("hello-from-web") && !l.contains("guardian::events"))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no echoed line in {text:?}"))
    };
    let coloured = run(false);
    let line = echoed(&coloured);
    assert!(line.contains("\x1b["), "no colour on a terminal: {line:?}");
    let plain = run(true);
    let line = echoed(&plain);
    assert!(!line.contains("\x1b["), "colour despite NO_COLOR: {line:?}");
    assert!(line.contains("web | hello-from-web"), "{line:?}");
    // guardian's own log lines follow the same rule.
    assert!(
        !plain.contains("\x1b[32m"),
        "coloured log despite NO_COLOR: {plain:?}"
    );
}

/// README, bounds: "when the queue is full … the piece is dropped and counted in
/// guardian_log_dropped_bytes_total{service}". guardian's stdout here is a pipe nobody
/// reads: the echo blocks the output thread, the queue fills, and pieces are dropped.
#[test]
fn output_the_queue_cannot_take_is_dropped_and_counted() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.flood]\ncommand = [\"sh\", \"-c\", \"yes flood-line-of-some-length\"]\n",
    );
    let mut c = sb.run_cmd(&cfg);
    c.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut g = GuardianUnderTest {
        child: c.spawn().unwrap(),
        state_dir: sb.state_dir(),
        config: cfg.clone(),
    };
    let sock = sb.state_dir().join("guardian.sock");
    let dropped = || -> u64 {
        let (_, m) = http(Target::Unix(&sock), "GET", "/metrics", &[], b"");
        m.lines()
            .find(|l| l.starts_with("guardian_log_dropped_bytes_total{service=\"flood\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        wait_for(LONG, || dropped() > 0),
        "nothing was counted as dropped"
    );
    // guardian keeps answering and supervising meanwhile.
    assert_eq!(sb.service(&cfg, "flood")["state"], "running");
    drop(g.child.stdout.take());
    assert!(g.stop().is_some());
}

/// README, stacks: "`guardian start|stop NAME` acts on every instance, `guardian restart
/// NAME` is rolling … and `NAME.K` acts on one"; status lists the instances of NAME.
#[test]
fn client_commands_resolve_a_replicated_service_to_its_instances() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.api]\ncommand = [\"sh\", \"-c\", \"echo hi from {replica}; exec sleep 300\"]\nreplicas = 2\n[services.other]\ncommand = [\"sleep\", \"301\"]\n",
    );
    let _g = sb.start(&cfg);
    let pid = |n: &str| sb.pid_of(&cfg, n);
    assert!(wait_for(LONG, || pid("api.1").is_some() && pid("api.2").is_some()));
    let out = sb.client(&cfg, &["status", "api"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("api.1") && out.stdout.contains("api.2"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("other"), "{}", out.stdout);
    let one = pid("api.1").unwrap();
    assert_eq!(sb.client(&cfg, &["stop", "api.2"]).code, 0);
    assert!(wait_for(LONG, || state(&sb, &cfg, "api.2") == "stopped"));
    assert_eq!(pid("api.1"), Some(one), "stop api.2 touched api.1");
    assert_eq!(sb.client(&cfg, &["stop", "api"]).code, 0);
    assert!(wait_for(LONG, || state(&sb, &cfg, "api.1") == "stopped"));
    assert_eq!(sb.client(&cfg, &["start", "api"]).code, 0);
    assert!(wait_for(LONG, || pid("api.1").is_some() && pid("api.2").is_some()));
    let (one, two) = (pid("api.1").unwrap(), pid("api.2").unwrap());
    let out = sb.client(&cfg, &["restart", "api"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("one at a time"), "{}", out.stdout);
    assert!(wait_for(LONG, || pid("api.1").is_some_and(|p| p != one)
        && pid("api.2").is_some_and(|p| p != two)));
    // The declared name means every instance's log, each line with its instance's prefix.
    assert!(wait_for(LONG, || {
        let out = sb.client(&cfg, &["logs", "api"]);
        out.stdout.contains("api.1 | hi from 1") && out.stdout.contains("api.2 | hi from 2")
    }));
    assert!(wait_for(LONG, || sb
        .client(&cfg, &["logs", "api.2"])
        .stdout
        .lines()
        .any(|l| l == "hi from 2")));
}
