//! SPEC §9 with real processes: service output echoed on guardian's own stdout/stderr, the
//! sd_notify protocol on a real datagram socket (READY, STATUS, WATCHDOG, RELOADING),
//! `$RUNTIME_DIRECTORY`, guardian as PID 1 of a PID namespace, and the shipped unit file.

use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

const LONG: Duration = Duration::from_secs(30);

fn run_to_files(sb: &Sandbox, cfg: &std::path::Path) -> GuardianUnderTest {
    let mut c = sb.run_cmd(cfg);
    c.stdout(std::fs::File::create(sb.path().join("out.txt")).unwrap())
        .stderr(std::fs::File::create(sb.path().join("err.txt")).unwrap());
    GuardianUnderTest {
        child: c.spawn().expect("spawn guardian"),
        state_dir: sb.state_dir(),
        config: cfg.to_owned(),
    }
}

fn read(sb: &Sandbox, file: &str) -> String {
    std::fs::read_to_string(sb.path().join(file)).unwrap_or_default()
}

#[test]
fn service_output_is_echoed_with_the_instance_name_unless_echo_is_off() {
    let sb = Sandbox::new();
    let service = "[services.w]\ncommand = [\"sh\", \"-c\", \"echo hello from $REPLICA; echo oops >&2; exec sleep 300\"]\nreplicas = 2\nenv = { REPLICA = \"{replica}\" }\n";
    let cfg = sb.write("g.toml", service);
    let mut g = run_to_files(&sb, &cfg);
    assert!(
        wait_for(LONG, || {
            let out = read(&sb, "out.txt");
            out.contains("w.1 | hello from 1\n") && out.contains("w.2 | hello from 2\n")
        }),
        "stdout: {}\nstderr: {}",
        read(&sb, "out.txt"),
        read(&sb, "err.txt")
    );
    assert!(wait_for(LONG, || read(&sb, "err.txt").contains("w.1 | oops\n")));
    assert!(!read(&sb, "out.txt").contains("oops"));
    // Not a terminal: no colour.
    assert!(!read(&sb, "out.txt").contains('\x1b'));
    // The log file still has every line, unprefixed.
    let log = std::fs::read_to_string(sb.state_dir().join("logs/w.1.log")).unwrap();
    assert!(
        log.contains("hello from 1\n") && !log.contains("w.1 |"),
        "{log}"
    );
    assert_eq!(g.stop(), Some(0));

    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", &format!("[guardian]\necho = false\n{service}"));
    let mut g = run_to_files(&sb, &cfg);
    assert!(wait_for(LONG, || {
        std::fs::read_to_string(sb.state_dir().join("logs/w.2.log"))
            .is_ok_and(|l| l.contains("hello from 2"))
    }));
    assert_eq!(g.stop(), Some(0));
    assert!(
        !read(&sb, "out.txt").contains("hello"),
        "{}",
        read(&sb, "out.txt")
    );
}

#[test]
fn under_systemd_status_lines_watchdog_pings_and_reloading_are_sent() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[guardian]\nwatch_config = false\n[services.a]\ncommand = [\"sleep\", \"300\"]\n[services.b]\ncommand = [\"sleep\", \"301\"]\ndepends_on = { a = \"ready\" }\n",
    );
    let sock_path = sb.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(LONG)).unwrap();
    let mut g = sb.spawn_with_env(
        &cfg,
        &[
            ("NOTIFY_SOCKET", sock_path.as_os_str()),
            ("WATCHDOG_USEC", "200000".as_ref()),
        ],
    );
    let mut seen = recv_until(&sock, "READY=1");
    let status = "STATUS=2 running, 0 waiting, 0 failed";
    if !seen.iter().any(|m| m.contains(status)) {
        seen.extend(recv_until(&sock, status));
    }
    // The watchdog: pinged at half of WATCHDOG_USEC, again and again.
    recv_until(&sock, "WATCHDOG=1");
    recv_until(&sock, "WATCHDOG=1");
    // A reload is framed by RELOADING=1 (with the monotonic time) and READY=1.
    assert_eq!(sb.client(&cfg, &["reload"]).code, 0);
    let seen = recv_until(&sock, "RELOADING=1");
    let reloading = seen.last().unwrap();
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    recv_until(&sock, "READY=1");
    kill(g.pid(), Signal::SIGTERM);
    recv_until(&sock, "STOPPING=1");
    assert_eq!(g.stop(), Some(0));
}

/// The pings come at about half of WATCHDOG_USEC (never faster, never at the whole period),
/// and stop while the engine is wedged (a test build's `POST /debug/stall`), then resume.
#[test]
fn the_watchdog_pings_at_half_its_period_and_not_while_the_engine_is_wedged() {
    use std::time::Instant;
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.a]\ncommand = [\"sleep\", \"300\"]\n");
    let sock_path = sb.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(LONG)).unwrap();
    let period = Duration::from_millis(600);
    let usec = period.as_micros().to_string();
    let mut g = sb.spawn_with_env(
        &cfg,
        &[
            ("NOTIFY_SOCKET", sock_path.as_os_str()),
            ("WATCHDOG_USEC", usec.as_ref()),
        ],
    );
    recv_until(&sock, "READY=1");
    let pings = |n: usize| -> Vec<Instant> {
        (0..n)
            .map(|_| {
                recv_until(&sock, "WATCHDOG=1");
                Instant::now()
            })
            .collect()
    };
    let at = pings(8);
    let mut gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    assert!(
        gaps[0] >= period * 4 / 10,
        "a ping came {:?} after the one before: faster than half of {period:?}",
        gaps[0]
    );
    assert!(
        gaps[gaps.len() / 2] <= period * 8 / 10,
        "the median gap is {:?}: not half of {period:?}",
        gaps[gaps.len() / 2]
    );
    // Wedge the engine for 2.5 s: no ping while it is wedged, then they resume.
    let before = *at.last().unwrap();
    let (code, body) = http(
        Target::Unix(&sb.state_dir().join("guardian.sock")),
        "POST",
        "/debug/stall?ms=2500",
        &[],
        b"",
    );
    assert_eq!(code, 200, "{body}");
    let after = pings(4);
    let mut all = vec![before];
    all.extend(after);
    let longest = all.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        longest >= Duration::from_millis(2000),
        "the pings went on while the engine was wedged (longest gap {longest:?})"
    );
    assert_eq!(g.stop(), Some(0));
}

#[test]
fn runtime_directory_is_the_default_state_dir() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.a]\ncommand = [\"sleep\", \"300\"]\n");
    let rt = sb.path().join("rt");
    let mut c = sb.cmd();
    c.args(["run", "-c", cfg.to_str().unwrap()])
        .env("RUNTIME_DIRECTORY", &rt)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut g = GuardianUnderTest {
        child: c.spawn().unwrap(),
        state_dir: rt.clone(),
        config: cfg.clone(),
    };
    assert!(wait_for(LONG, || rt.join("a.pid").exists()));
    assert!(rt.join("guardian.pid").exists());
    assert!(!sb.path().join("run/guardian").exists());
    assert_eq!(g.stop(), Some(0));
}

fn zombies_under(pid: i32) -> Vec<i32> {
    children(pid)
        .into_iter()
        .filter(|c| {
            std::fs::read_to_string(format!("/proc/{c}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
        })
        .collect()
}

#[test]
fn as_pid_1_of_a_pid_namespace_it_reaps_orphans_and_stops_cleanly_on_sigterm() {
    let sb = Sandbox::new();
    // Every half second the service leaves an orphan behind that exits soon after.
    let cfg = sb.write(
        "g.toml",
        "[services.parent]\ncommand = [\"sh\", \"-c\", \"while true; do (sleep 0.1 &); sleep 0.5; done\"]\n[services.b]\ncommand = [\"sleep\", \"300\"]\ndepends_on = { parent = \"started\" }\n",
    );
    let state = sb.state_dir();
    let mut unshare = sb
        .run_cmd_via(&["unshare", "--pid", "--fork", "--mount-proc"], &cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(sb.path().join("err.txt")).unwrap())
        .spawn()
        .expect("unshare is part of util-linux");
    let mut guardian = None;
    assert!(
        wait_for(LONG, || {
            guardian = children(unshare.id() as i32).first().copied();
            guardian.is_some() && state.join("b.pid").exists()
        }),
        "{}",
        read(&sb, "err.txt")
    );
    let guardian = guardian.unwrap();
    let status = std::fs::read_to_string(format!("/proc/{guardian}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.trim_end().ends_with("\t1"),
        "guardian is PID 1 inside: {nspid}"
    );
    // Orphans come and go for a while; none stays a zombie.
    std::thread::sleep(Duration::from_secs(2));
    let mut clean = 0;
    for _ in 0..20 {
        if zombies_under(guardian).is_empty() {
            clean += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        clean >= 15,
        "zombies linger under PID 1: {:?}",
        zombies_under(guardian)
    );
    kill(guardian, Signal::SIGTERM);
    let mut code = None;
    assert!(wait_for(LONG, || {
        code = unshare.try_wait().unwrap().map(|s| s.code());
        code.is_some()
    }));
    assert_eq!(code.unwrap(), Some(0), "{}", read(&sb, "err.txt"));
    assert!(!state.join("b.pid").exists() && !state.join("parent.pid").exists());
}

#[test]
fn the_shipped_unit_file_passes_systemd_analyze_verify() {
    let unit = repo_file("contrib/guardian.service");
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart's program exists: point it at the built binary.
    let text = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("/usr/local/bin/guardian", GUARDIAN);
    let copy = dir.path().join("guardian.service");
    std::fs::write(&copy, text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze (scripts/test installs it)");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(
        !all.contains("guardian.service:"),
        "verify complains about the unit: {all}"
    );
}

fn proc_line(pid: i32, file: &str, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or("")
        .to_owned()
}

#[test]
fn user_group_umask_limits_and_env_files_reach_the_process() {
    let sb = Sandbox::new();
    sb.write(
        "app.env",
        "# defaults\nexport FROM_FILE=file\nOVERRIDDEN=file\nQUOTED='a b'\nEXPANDED=\"${FROM_FILE}-x\"\n",
    );
    sb.write("more.env", "SECOND=2\n");
    let cfg = sb.write(
        "g.toml",
        r#"
[services.plain]
command = ["sleep", "300"]
env_file = ["app.env", "more.env"]
env = { OVERRIDDEN = "env" }

[services.shaped]
command = ["sleep", "301"]
user = "nobody"
umask = "027"
limits = { nofile = 1234, core = 0, stack = "16MiB" }
"#,
    );
    let _g = sb.start(&cfg);
    assert!(
        wait_for(LONG, || sb.pid_of(&cfg, "plain").is_some()
            && sb.pid_of(&cfg, "shaped").is_some()),
        "{}",
        sb.stderr()
    );
    let plain = sb.pid_of(&cfg, "plain").unwrap();
    let env = std::fs::read(format!("/proc/{plain}/environ")).unwrap();
    let vars: Vec<String> = env
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    for want in [
        "FROM_FILE=file",
        "OVERRIDDEN=env",
        "QUOTED=a b",
        "EXPANDED=file-x",
        "SECOND=2",
    ] {
        assert!(vars.iter().any(|v| v == want), "{want} in {vars:?}");
    }
    // Not shaped: guardian's own user, umask and limits.
    assert!(proc_line(plain, "status", "Uid:").starts_with("Uid:\t0\t"));

    let shaped = sb.pid_of(&cfg, "shaped").unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let uid = proc_line(shaped, "status", "Uid:");
    assert_eq!(
        uid.split_whitespace().nth(1).unwrap(),
        nobody.uid.to_string(),
        "{uid}"
    );
    let gid = proc_line(shaped, "status", "Gid:");
    assert_eq!(
        gid.split_whitespace().nth(1).unwrap(),
        nobody.gid.to_string()
    );
    assert_eq!(proc_line(shaped, "status", "Umask:"), "Umask:\t0027");
    let limits = |key: &str| -> Vec<String> {
        proc_line(shaped, "limits", key)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(&limits("Max open files")[3..5], ["1234", "1234"]);
    assert_eq!(&limits("Max core file size")[4..6], ["0", "0"]);
    assert_eq!(&limits("Max stack size")[3..5], ["16777216", "16777216"]);
    // guardian's own files stay guardian's.
    let meta = std::fs::metadata(sb.state_dir().join("shaped.pid")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0);
}

#[test]
fn bad_users_env_files_and_limits_are_config_errors_naming_file_and_line() {
    let sb = Sandbox::new();
    sb.write("bad.env", "GOOD=1\nNOT A VALID LINE\n");
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let table = [
        (
            "[services.a]\ncommand = [\"x\"]\nuser = \"no_such_user_q\"\n".to_owned(),
            "there is no user `no_such_user_q`",
        ),
        (
            "[services.a]\ncommand = [\"x\"]\ngroup = \"no_such_group_q\"\n".to_owned(),
            "there is no group `no_such_group_q`",
        ),
        (
            "[services.a]\ncommand = [\"x\"]\nenv_file = [\"missing.env\"]\n".to_owned(),
            "cannot read env file",
        ),
        (
            "[services.a]\ncommand = [\"x\"]\nenv_file = [\"bad.env\"]\n".to_owned(),
            "bad.env:2: cannot parse `NOT A VALID LINE`",
        ),
        (
            format!(
                "[services.a]\ncommand = [\"x\"]\nlimits = {{ nofile = {} }}\n",
                nr_open + 1
            ),
            "above the kernel's maximum of open files",
        ),
        (
            "[services.a]\ncommand = [\"x\"]\nlimits = { nofiles = 10 }\n".to_owned(),
            "did you mean `nofile`?",
        ),
        (
            "[services.a]\ncommand = [\"x\"]\nlimits = { memlock = \"64 potatoes\" }\n".to_owned(),
            "unknown unit",
        ),
        (
            "[services.a]\ncommand = [\"x\"]\numask = \"999\"\n".to_owned(),
            "not an octal mode",
        ),
    ];
    for (text, want) in table {
        let cfg = sb.write("g.toml", &text);
        let out = sb.run(&["validate", "-c", cfg.to_str().unwrap()]);
        assert_eq!(out.code, 2, "{text}\n{}", out.all());
        assert!(out.all().contains(want), "{want}\nin {}", out.all());
    }
    // A limit in bytes accepts sizes; the effective value is printed.
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"x\"]\nlimits = { memlock = \"64MiB\", nofile = 4096 }\n",
    );
    let out = sb.run(&["validate", "-c", cfg.to_str().unwrap(), "--print", "json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("\"memlock\": 67108864"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_fd_limit_is_raised_to_the_hard_limit_and_a_stack_too_big_for_it_is_refused() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.w]\ncommand = [\"sleep\", \"300\"]\nreplicas = 2\n",
    );
    let state = sb.state_dir();
    let guardian_cmd = |limit: &str, config: &std::path::Path| {
        let mut c = sb.run_cmd_via(&["prlimit", &format!("--nofile={limit}")], config);
        c.stdout(Stdio::null());
        c
    };
    let mut c = guardian_cmd("80:300", &cfg);
    c.stderr(Stdio::null());
    let mut g = GuardianUnderTest {
        child: c.spawn().expect("prlimit is part of util-linux"),
        state_dir: state.clone(),
        config: cfg.clone(),
    };
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "w.2").is_some()));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", g.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        &line.split_whitespace().collect::<Vec<_>>()[3..5],
        ["300", "300"],
        "{line}"
    );
    assert_eq!(g.stop(), Some(0));

    let big = sb.write(
        "big.toml",
        "[services.w]\ncommand = [\"sleep\", \"300\"]\nreplicas = 100\n",
    );
    let out = output(&mut guardian_cmd("80:300", &big));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("100 services need about 528 open files")
            && out.stderr.contains("the hard limit is 300")
            && out.stderr.contains("LimitNOFILE="),
        "{}",
        out.stderr
    );
    assert!(!state.join("w.1.pid").exists());
}

#[test]
fn a_user_switch_without_root_fails_once_with_the_reason() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.a]\ncommand = [\"sleep\", \"300\"]\nuser = \"root\"\nbackoff = { initial_delay = \"50ms\" }\n[services.b]\ncommand = [\"sleep\", \"301\"]\n",
    );
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    nix::unistd::chown(sb.path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
    let state = sb.state_dir();
    // guardian itself runs as nobody: it may not start a service as root.
    let (uid, gid) = (
        format!("--reuid={}", nobody.uid),
        format!("--regid={}", nobody.gid),
    );
    let mut c = sb.run_cmd_via(&["setpriv", &uid, &gid, "--clear-groups"], &cfg);
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(sb.path().join("err.txt")).unwrap());
    let mut g = GuardianUnderTest {
        child: c.spawn().expect("setpriv is part of util-linux"),
        state_dir: state.clone(),
        config: cfg.clone(),
    };
    assert!(
        wait_for(LONG, || sb.pid_of(&cfg, "b").is_some()
            && sb.service(&cfg, "a")["state"] == "failed"),
        "{}",
        read(&sb, "err.txt")
    );
    std::thread::sleep(Duration::from_millis(300));
    let actions = sb.actions("a");
    assert_eq!(
        actions,
        ["start"],
        "one refused start, no retries: {actions:?}"
    );
    let error = sb.service(&cfg, "a")["last_error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("needs guardian to run as root"), "{error}");
    assert_eq!(g.stop(), Some(0));
}
