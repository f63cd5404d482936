//! `guardian top` in a real pseudo-terminal (util-linux's `script` makes one) against a
//! running guardian: the screen shows the services, `r` restarts the selected one, `q` quits
//! and the terminal is given back. Over the Unix socket and over the TCP API with the token.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

const LONG: Duration = Duration::from_secs(30);

/// `guardian top ARGS` in a 30×140 pseudo-terminal: what it drew so far, and its keyboard.
struct Pty {
    child: Child,
    keys: ChildStdin,
    screen: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn start(sb: &Sandbox, args: &str) -> Pty {
        Pty::start_with(sb, args, &[])
    }

    fn start_with(sb: &Sandbox, args: &str, env: &[(&str, &str)]) -> Pty {
        let inner = format!("stty rows 30 cols 140; exec {GUARDIAN} top {args}");
        let mut child = Command::new(require("script", "util-linux"))
            .args(["-qefc", &inner, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TERM", "xterm-256color")
            .env("HOME", sb.path())
            .envs(env.iter().copied())
            .current_dir(sb.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script is part of util-linux");
        let screen = collect(child.stdout.take().unwrap());
        let keys = child.stdin.take().unwrap();
        Pty {
            child,
            keys,
            screen,
        }
    }

    fn seen(&self, s: &str) -> bool {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).contains(s)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    fn press(&mut self, key: &[u8]) {
        self.keys.write_all(key).unwrap();
        self.keys.flush().unwrap();
    }

    /// `q`, then the exit code; the terminal must have been given back.
    fn quit(&mut self) {
        self.press(b"q");
        let mut code = None;
        assert!(wait_for(LONG, || {
            code = self.child.try_wait().unwrap().map(|s| s.code());
            code.is_some()
        }));
        assert_eq!(code.unwrap(), Some(0), "{}", self.text());
        // The alternate screen was left and the cursor shown again.
        assert!(self.seen("\x1b[?1049l"), "alternate screen not left");
        assert!(self.seen("\x1b[?25h"), "cursor not shown again");
    }
}

impl Drop for Pty {
    /// A failed test must not leave `script` and `top` behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn restart_with_r(sb: &Sandbox, cfg: &std::path::Path, pty: &mut Pty) {
    let first = sb.pid_of(cfg, "web").unwrap();
    assert!(
        wait_for(LONG, || pty.seen("web") && pty.seen("running")),
        "{}",
        pty.text()
    );
    pty.press(b"r");
    assert!(
        wait_for(LONG, || sb.pid_of(cfg, "web").is_some_and(|p| p != first)),
        "no restart: {}",
        pty.text()
    );
    assert!(wait_for(LONG, || pty.seen("restart web")), "no result line");
}

#[test]
fn top_shows_the_services_restarts_on_r_and_restores_the_terminal_on_q() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "g.toml",
        "[services.web]\ncommand = [\"sh\", \"-c\", \"echo hello from web; exec sleep 300\"]\n",
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    let mut pty = Pty::start(
        &sb,
        &format!(
            "-c {} --state-dir {}",
            cfg.display(),
            sb.state_dir().display()
        ),
    );
    assert!(
        wait_for(LONG, || pty.seen("hello")),
        "the log pane: {}",
        pty.text()
    );
    restart_with_r(&sb, &cfg, &mut pty);
    // On a terminal, states are coloured (the NO_COLOR test below checks the opposite).
    assert!(pty.seen(COLOUR), "no colour on a terminal");
    pty.quit();
}

/// A foreground colour as crossterm writes it.
const COLOUR: &str = "\x1b[38;5;";

#[test]
fn top_starts_on_s_shows_events_on_e_and_has_no_colour_under_no_color() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.web]\ncommand = [\"sleep\", \"300\"]\n");
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    assert_eq!(sb.client(&cfg, &["stop", "web"]).code, 0);
    let args = format!(
        "-c {} --state-dir {}",
        cfg.display(),
        sb.state_dir().display()
    );
    let mut pty = Pty::start_with(&sb, &args, &[("NO_COLOR", "1")]);
    assert!(
        wait_for(LONG, || pty.seen("web") && pty.seen("stopped")),
        "{}",
        pty.text()
    );
    pty.press(b"e");
    // The events pane: the stop above, as an event (the log pane has no such line).
    assert!(wait_for(LONG, || pty.seen("SIGTERM")), "{}", pty.text());
    pty.press(b"s");
    assert!(
        wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()),
        "s did not start web: {}",
        pty.text()
    );
    assert!(wait_for(LONG, || pty.seen("start web")), "no result line");
    assert!(!pty.seen(COLOUR), "colour despite NO_COLOR");
    pty.quit();
}

#[test]
fn top_gives_the_terminal_back_after_a_panic() {
    let sb = Sandbox::new();
    let cfg = sb.write("g.toml", "[services.web]\ncommand = [\"sleep\", \"300\"]\n");
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    let args = format!(
        "-c {} --state-dir {}",
        cfg.display(),
        sb.state_dir().display()
    );
    // A test build panics after its first screen when told to.
    let mut pty = Pty::start_with(&sb, &args, &[("_GUARDIAN_TEST_TOP_PANIC", "1")]);
    let mut code = None;
    assert!(wait_for(LONG, || {
        code = pty.child.try_wait().unwrap().map(|s| s.code());
        code.is_some()
    }));
    assert_eq!(code.unwrap(), Some(101), "{}", pty.text());
    let text = pty.text();
    let entered = text
        .find("\x1b[?1049h")
        .expect("the alternate screen was entered");
    let left = text
        .rfind("\x1b[?1049l")
        .expect("the alternate screen was not left");
    assert!(left > entered, "{text}");
    assert!(text[left..].contains("\x1b[?25h") || text[entered..].contains("\x1b[?25h"));
    assert!(text.contains("injected panic"), "{text}");
}

#[test]
fn top_works_over_the_tcp_api_with_the_token() {
    let sb = Sandbox::new();
    let (section, addr) = sb.api_section("top-token-42");
    let cfg = sb.write(
        "g.toml",
        &format!(
            "{section}[services.web]\ncommand = [\"sh\", \"-c\", \"echo from-over-the-wire; exec sleep 300\"]\n"
        ),
    );
    let _g = sb.start(&cfg);
    assert!(wait_for(LONG, || sb.pid_of(&cfg, "web").is_some()));
    let token = sb.path().join("token");
    let mut pty = Pty::start(
        &sb,
        &format!("--api {addr} --token-file {}", token.display()),
    );
    // The log pane reads the log over the API too.
    assert!(
        wait_for(LONG, || pty.seen("from-over-the-wire")),
        "the log pane over TCP: {}",
        pty.text()
    );
    restart_with_r(&sb, &cfg, &mut pty);
    assert!(pty.seen(&addr), "the header names the API");
    pty.quit();
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
