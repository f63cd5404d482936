//! SPEC §4 through the binary: check-running on every rung with real processes, and the
//! guardian lock under a race.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::*;

fn config(sb: &Sandbox) -> std::path::PathBuf {
    let pidfile = sb.state_dir().join("svc.pid");
    sb.write(
        "g.toml",
        &format!(
            "[services.svc]\ncommand = [\"sleep\", \"300\"]\npidfile = \"{}\"\n",
            pidfile.display()
        ),
    )
}

fn prepare(sb: &Sandbox) -> std::path::PathBuf {
    std::fs::create_dir_all(sb.state_dir()).unwrap();
    std::fs::set_permissions(
        sb.state_dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    sb.state_dir().join("svc.pid")
}

fn record(pid: u32, ticks: Option<u64>) -> String {
    let t = ticks
        .map(|t| format!(", \"start_ticks\": {t}"))
        .unwrap_or_default();
    format!("{{\"pid\": {pid}, \"service\": \"svc\", \"command\": [\"sleep\", \"300\"]{t}}}")
}

fn ticks(pid: u32) -> u64 {
    guardian::process::procinfo::facts(pid as i32)
        .unwrap()
        .start_ticks
}

struct Reaped(std::process::Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper(arg: &str) -> Reaped {
    Reaped(
        Command::new("sleep")
            .arg(arg)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn check(sb: &Sandbox, cfg: &std::path::Path) -> Output {
    sb.client(cfg, &["check-running", "svc"])
}

#[test]
fn check_running_climbs_every_rung() {
    let sb = Sandbox::new();
    let cfg = config(&sb);
    let pf = prepare(&sb);

    let out = check(&sb, &cfg);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("not running: no pid file"),
        "{}",
        out.stdout
    );

    for bad in [
        "",
        "garbage",
        "{\"service\": \"svc\"}",
        "0",
        "-4",
        "99999999999",
    ] {
        std::fs::write(&pf, bad).unwrap();
        let out = check(&sb, &cfg);
        assert_eq!(out.code, 1, "{bad:?}");
        assert!(
            out.stdout
                .contains("empty or invalid pid file; the pid file is removed"),
            "{bad:?}: {}",
            out.stdout
        );
        assert!(!pf.exists(), "{bad:?}: removed");
    }

    // A 10 MiB file is read bounded and refused.
    std::fs::write(&pf, vec![b'1'; 10 * 1024 * 1024]).unwrap();
    assert!(check(&sb, &cfg).stdout.contains("empty or invalid"));

    // A live, verified instance; also as a legacy plain number.
    let live = sleeper("300");
    std::fs::write(&pf, record(live.0.id(), Some(ticks(live.0.id())))).unwrap();
    let out = check(&sb, &cfg);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!(
            "running (pid {}): process alive and verified",
            live.0.id()
        )),
        "{}",
        out.stdout
    );
    std::fs::write(&pf, format!("{}\n", live.0.id())).unwrap();
    assert_eq!(check(&sb, &cfg).code, 0);

    // A recycled pid: right command line, another start time.
    std::fs::write(&pf, record(live.0.id(), Some(ticks(live.0.id()) - 1))).unwrap();
    let out = check(&sb, &cfg);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout
            .contains("started at another time (pid reused; not ours)"),
        "{}",
        out.stdout
    );
    assert!(
        alive(live.0.id() as i32),
        "a process that fails identity is never signalled"
    );

    // A live process that is not ours.
    let foreign = Reaped(Command::new("cat").stdin(Stdio::piped()).spawn().unwrap());
    std::fs::write(&pf, record(foreign.0.id(), None)).unwrap();
    let out = check(&sb, &cfg);
    assert!(
        out.stdout
            .contains("does not match the identity patterns (not ours)"),
        "{}",
        out.stdout
    );
    assert!(alive(foreign.0.id() as i32));

    // A process that is gone.
    let mut dead = sleeper("0");
    let dead_pid = dead.0.id();
    dead.0.wait().unwrap();
    std::fs::write(&pf, record(dead_pid, None)).unwrap();
    assert!(
        check(&sb, &cfg)
            .stdout
            .contains("process gone (stale pid file); the pid file is removed")
    );

    // A zombie: the child of a parent that never reaps it.
    let mut parent = Command::new("sh")
        .args(["-c", "sleep 0 & echo $!; exec sleep 300"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(parent.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let zombie: u32 = line.trim().parse().unwrap();
    let _parent = Reaped(parent);
    assert!(wait_for(Duration::from_secs(10), || !alive(zombie as i32)));
    std::fs::write(&pf, record(zombie, None)).unwrap();
    let out = check(&sb, &cfg);
    assert!(
        out.stdout
            .contains("process is a zombie; the pid file is removed"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_symlinked_pid_file_is_refused_and_its_target_untouched() {
    let sb = Sandbox::new();
    let cfg = config(&sb);
    let pf = prepare(&sb);
    let target = sb.write("precious.txt", "keep me");
    std::os::unix::fs::symlink(&target, &pf).unwrap();
    let out = check(&sb, &cfg);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("is a symlink; guardian never follows one"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    assert!(
        std::fs::symlink_metadata(&pf)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_locked_pid_file_is_never_treated_as_stale() {
    let sb = Sandbox::new();
    let cfg = config(&sb);
    let pf = prepare(&sb);
    std::fs::write(&pf, "{\"pid\": 4000000}").unwrap();
    // Another process holds the lock, as a live guardian would.
    // Its own process group: flock forks `sleep`, and both must go at the end.
    let mut holder = Command::new("flock")
        .args(["-x", pf.to_str().unwrap(), "sleep", "300"])
        .process_group(0)
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(10), || check(&sb, &cfg)
        .stdout
        .contains("locked by a live guardian")));
    assert!(pf.exists(), "a locked pid file is never removed");
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(holder.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = holder.wait();
}

#[test]
fn unsafe_state_dirs_are_refused() {
    let sb = Sandbox::new();
    let cfg = config(&sb);
    std::fs::create_dir_all(sb.state_dir()).unwrap();
    std::fs::set_permissions(
        sb.state_dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out = sb.client(&cfg, &["run"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("writable by group or others") && out.stderr.contains("chmod 700"),
        "{}",
        out.stderr
    );

    let link = sb.path().join("link");
    std::os::unix::fs::symlink(sb.path(), &link).unwrap();
    let out = sb.run(&[
        "run",
        "-c",
        cfg.to_str().unwrap(),
        "--state-dir",
        link.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("is a symlink"), "{}", out.stderr);
}

#[test]
fn twenty_racers_one_winner_and_a_killed_holder_is_replaced() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "race.toml",
        "[services.svc]\ncommand = [\"sleep\", \"300\"]\nshutdown_timeout = \"2s\"\n",
    );
    let racers: Vec<std::process::Child> = (0..20)
        .map(|_| {
            let mut c = sb.run_cmd(&cfg);
            c.stdout(Stdio::null()).stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    assert!(wait_for(Duration::from_secs(30), || sb
        .state_dir()
        .join("guardian.sock")
        .exists()));
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sb.state_dir().join("guardian.pid")).unwrap(),
    )
    .unwrap();
    let winner = record["pid"].as_i64().unwrap() as u32;
    let mut winners = Vec::new();
    for mut r in racers {
        if r.id() == winner {
            winners.push(r);
            continue;
        }
        let out = r.wait_with_output_ref();
        assert_eq!(out.0, Some(3), "loser exit code; stderr: {}", out.1);
        assert!(
            out.1.contains(&format!("another guardian (pid {winner})")),
            "{}",
            out.1
        );
    }
    assert_eq!(winners.len(), 1);
    let svc_pid = sb.service(&cfg, "svc")["pid"].as_i64().unwrap() as i32;
    let mut holder = winners.pop().unwrap();
    kill(holder.id() as i32, Signal::SIGKILL);
    holder.wait().unwrap();
    // The next one acquires at once, reports the record it replaced, and adopts the service.
    let next = sb.start(&cfg);
    assert!(
        wait_for(Duration::from_secs(10), || sb
            .stderr()
            .contains("replaced the record of a guardian")),
        "{}",
        sb.stderr()
    );
    assert!(
        sb.stderr().contains(&format!("pid={winner}")),
        "{}",
        sb.stderr()
    );
    assert!(wait_for(Duration::from_secs(10), || sb
        .service(&cfg, "svc")["adopted"]
        == true));
    assert_eq!(
        sb.service(&cfg, "svc")["pid"].as_i64().unwrap() as i32,
        svc_pid
    );
    drop(next);
    assert!(wait_for(Duration::from_secs(10), || !alive(svc_pid)));
}

trait WaitRef {
    fn wait_with_output_ref(&mut self) -> (Option<i32>, String);
}

impl WaitRef for std::process::Child {
    fn wait_with_output_ref(&mut self) -> (Option<i32>, String) {
        use std::io::Read;
        let mut err = String::new();
        if let Some(mut s) = self.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        (self.wait().ok().and_then(|s| s.code()), err)
    }
}
