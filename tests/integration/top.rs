//! `guardian top` in a real pseudo-terminal (util-linux's `script` makes one) against a
//! running guardian: the screen shows the services, `r` restarts the selected one, `q` quits
//! and the terminal is given back.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

const LONG: Duration = Duration::from_secs(30);

#[test]
fn top_shows_the_services_restarts_on_r_and_restores_the_terminal_on_q() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.web]\ncommand = [\"sh\", \"-c\", \"echo hello from web; exec sleep 300\"]\n",
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    let first = sb.pid_of(&cfg, "web").unwrap();
    let inner = format!(
        "stty rows 30 cols 120; exec {GUARDIAN} top -c {} --state-dir {}",
        cfg.display(),
        sb.state_dir().display()
    );
    let mut script = Command::new("script")
        .args(["-qefc", &inner, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TERM", "xterm-256color")
        .env("HOME", sb.path())
        .current_dir(sb.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script is part of util-linux");
    let screen = Arc::new(Mutex::new(Vec::new()));
    let mut out = script.stdout.take().unwrap();
    let sink = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let seen = |s: &str| String::from_utf8_lossy(&screen.lock().unwrap()).contains(s);
    assert!(
        wait_for(LONG, || seen("web") && seen("running") && seen("hello")),
        "{}",
        String::from_utf8_lossy(&screen.lock().unwrap())
    );
    let mut keys = script.stdin.take().unwrap();
    keys.write_all(b"r").unwrap();
    keys.flush().unwrap();
    assert!(
        wait_for(LONG, || sb.pid_of(&cfg, "web").is_some_and(|p| p != first)),
        "no restart"
    );
    assert!(wait_for(LONG, || seen("restart web")), "no result line");
    keys.write_all(b"q").unwrap();
    keys.flush().unwrap();
    let mut code = None;
    assert!(wait_for(LONG, || {
        code = script.try_wait().unwrap().map(|s| s.code());
        code.is_some()
    }));
    assert_eq!(code.unwrap(), Some(0));
    // The alternate screen was left and the cursor shown again: the terminal is restored.
    assert!(seen("\x1b[?1049l"), "alternate screen not left");
    assert!(seen("\x1b[?25h"), "cursor not shown again");
}

#[test]
fn top_without_a_terminal_says_to_use_status() {
    let sb = Sandbox::new();
    let out = sb.run(&["top", "--state-dir", sb.state_dir().to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("guardian top needs a terminal"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("guardian status"), "{}", out.stderr);
}
