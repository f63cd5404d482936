//! Sandbox (a temp dir with its own state dir and a clean environment), the binary under
//! test, and `wait_for`.

#![allow(dead_code)]

pub mod socketio;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const GUARDIAN: &str = env!("CARGO_BIN_EXE_guardian");

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("guardian-it-")
            .tempdir()
            .expect("tempdir");
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, contents).expect("write fixture");
        p
    }

    /// The binary with a clean environment: nothing of the developer's leaks in.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(GUARDIAN);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_RUNTIME_DIR", self.path().join("run"))
            .current_dir(self.path())
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        output(&mut c)
    }
}

pub fn output(c: &mut Command) -> Output {
    let o = c.output().expect("run guardian");
    Output {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A memory figure of a live process from /proc/PID/status (`VmRSS`, `VmHWM`), in KiB. A
/// process or field that cannot be read fails the test: a bound on 0 would prove nothing.
pub fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{text}"))
}

/// The path of an outside program a test needs. A missing one fails the test naming the
/// Debian package to install (scripts/test installs them all); a test never passes without it.
pub fn require(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{program} is missing: install it (apt-get install {package}); scripts/test does")
    })
}

/// Everything `out` writes, as it arrives, read by a thread of its own until it ends.
pub fn collect(
    mut out: impl std::io::Read + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    seen
}

/// Polls `cond` until it holds or `deadline` passes; true when it held.
pub fn wait_for(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A `guardian run` child of the test, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct GuardianUnderTest {
    pub child: std::process::Child,
    pub state_dir: PathBuf,
    pub config: PathBuf,
}

impl Sandbox {
    /// `guardian run` on this config and the sandbox's state dir, not yet started.
    pub fn run_cmd(&self, config: &Path) -> Command {
        let mut c = self.cmd();
        c.args([
            "run",
            "-c",
            config.to_str().unwrap(),
            "--state-dir",
            self.state_dir().to_str().unwrap(),
        ]);
        c
    }

    /// `guardian run` on this config and state dir under a wrapper program (`unshare …`,
    /// `setpriv …`, `prlimit …`), with the same clean environment.
    pub fn run_cmd_via(&self, wrapper: &[&str], config: &Path) -> Command {
        let plain = self.run_cmd(config);
        let mut c = Command::new(wrapper[0]);
        c.args(&wrapper[1..])
            .arg(plain.get_program())
            .args(plain.get_args())
            .env_clear()
            .current_dir(self.path())
            .stdin(Stdio::null());
        for (k, v) in plain.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c
    }

    pub fn start(&self, config: &Path) -> GuardianUnderTest {
        let mut c = self.run_cmd(config);
        c.stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path().join("guardian.stderr")).unwrap());
        let child = c.spawn().expect("spawn guardian run");
        let g = GuardianUnderTest {
            child,
            state_dir: self.state_dir(),
            config: config.to_owned(),
        };
        assert!(
            wait_for(Duration::from_secs(20), || g
                .state_dir
                .join("guardian.sock")
                .exists()),
            "guardian did not come up: {}",
            self.stderr()
        );
        g
    }

    /// Guardian on a config of `sleep` services with these names, every one running.
    pub fn start_sleeping(&self, names: &[&str]) -> (PathBuf, GuardianUnderTest) {
        let text: String = names
            .iter()
            .map(|n| format!("[services.{n}]\ncommand = [\"sleep\", \"300\"]\n"))
            .collect();
        let cfg = self.write("g.toml", &text);
        let g = self.start(&cfg);
        assert!(
            wait_for(Duration::from_secs(30), || names
                .iter()
                .all(|n| self.pid_of(&cfg, n).is_some())),
            "{names:?} did not all start: {}",
            self.stderr()
        );
        (cfg, g)
    }

    /// `guardian run` with extra environment variables, not waiting for its socket (it may
    /// never come up, or the test wants to see what happens first).
    pub fn spawn_with_env(
        &self,
        config: &Path,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> GuardianUnderTest {
        let mut c = self.run_cmd(config);
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdout(Stdio::null()).stderr(Stdio::null());
        GuardianUnderTest {
            child: c.spawn().expect("spawn guardian run"),
            state_dir: self.state_dir(),
            config: config.to_owned(),
        }
    }

    /// A `[guardian.api]` section on a free loopback port with a token file (mode 0600); the
    /// section's text and the address.
    pub fn api_section(&self, token: &str) -> (String, String) {
        use std::os::unix::fs::PermissionsExt;
        let file = self.write("token", token);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        (
            format!(
                "[guardian.api]\nlisten = \"{addr}\"\ntoken_file = \"{}\"\n",
                file.display()
            ),
            addr,
        )
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.path().join("guardian.stderr")).unwrap_or_default()
    }

    /// A client command against the sandbox's state dir.
    pub fn client(&self, config: &Path, args: &[&str]) -> Output {
        let (cfg, dir) = (
            config.display().to_string(),
            self.state_dir().display().to_string(),
        );
        let mut all = vec!["-c", cfg.as_str(), "--state-dir", dir.as_str()];
        all.extend_from_slice(args);
        self.run(&all)
    }

    pub fn status_json(&self, config: &Path) -> serde_json::Value {
        let out = self.client(config, &["status", "--json"]);
        serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    pub fn service(&self, config: &Path, name: &str) -> serde_json::Value {
        let doc = self.status_json(config);
        doc["services"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    pub fn events(&self, name: &str) -> Vec<serde_json::Value> {
        let text =
            std::fs::read_to_string(self.state_dir().join("events.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["service"] == name)
            .collect()
    }
}

impl Sandbox {
    /// The service's pid while it is `running`.
    pub fn pid_of(&self, config: &Path, name: &str) -> Option<i32> {
        let s = self.service(config, name);
        (s["state"] == "running")
            .then(|| s["pid"].as_i64())
            .flatten()
            .map(|p| p as i32)
    }

    /// The `action` of each of the service's events, oldest first.
    pub fn actions(&self, name: &str) -> Vec<String> {
        self.events(name)
            .iter()
            .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// An example program built next to the test binary by `cargo build --examples`.
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --examples` (scripts/test does)",
        bin.display()
    );
    bin
}

impl GuardianUnderTest {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM and wait; the exit code.
    /// Waits for guardian to exit on its own: its exit code (`None` if a signal killed it,
    /// or if it still ran after `deadline`, when it is stopped).
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let mut code = None;
        if wait_for(deadline, || match self.child.try_wait() {
            Ok(Some(status)) => {
                code = status.code();
                true
            }
            _ => false,
        }) {
            return code;
        }
        self.stop();
        None
    }

    pub fn stop(&mut self) -> Option<i32> {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for GuardianUnderTest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("");
        state != "Z" && state != "X"
    })
}

pub fn kill(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` consecutive ports that are free now, below the kernel's ephemeral range, so the
/// `free_port()` of a test running alongside never lands in the range.
pub fn free_port_range(n: u16) -> u16 {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let span = low.saturating_sub(10_000 + n).max(1);
    for _ in 0..200 {
        let first = 10_000 + (rand::random::<u16>() % span);
        if (first..first + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return first;
        }
    }
    panic!("no {n} free consecutive ports below {low}");
}

/// Where an HTTP request goes: guardian's Unix socket, or a TCP address.
pub enum Target<'a> {
    Unix(&'a Path),
    Tcp(&'a str),
}

/// One raw HTTP/1.0 request (the connection closes after the answer): status and body.
pub fn http(
    target: Target,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let (code, _, body) = http_with_head(target, method, path, headers, body);
    (code, body)
}

/// Like `http`, with the response's head (status line and headers) as well.
pub fn http_with_head(
    target: Target,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nhost: guardian\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = Vec::new();
    let mut exchange = |s: &mut dyn ReadWrite| {
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        s.read_to_end(&mut raw)
    };
    let r = match target {
        Target::Unix(p) => {
            std::os::unix::net::UnixStream::connect(p).and_then(|mut s| exchange(&mut s))
        }
        Target::Tcp(a) => std::net::TcpStream::connect(a).and_then(|mut s| exchange(&mut s)),
    };
    if r.is_err() && raw.is_empty() {
        return (0, String::new(), String::new());
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_owned(), b.to_owned()))
        .unwrap_or_default();
    (code, head, body)
}

pub trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

impl Sandbox {
    /// GET over the Unix socket, the body parsed as JSON.
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let sock = self.state_dir().join("guardian.sock");
        let (code, body) = http(Target::Unix(&sock), "GET", path, &[], b"");
        (
            code,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// Reads sd_notify datagrams until one contains `want` (a read timeout must be set on the
/// socket); every datagram read, in order. Panics with what arrived when `want` never does.
pub fn recv_until(sock: &std::os::unix::net::UnixDatagram, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = msg.contains(want);
                seen.push(msg);
                if done {
                    return seen;
                }
            }
            Err(e) => panic!("no {want} ({e}); got {seen:?}"),
        }
    }
}

/// The PIDs of a process's children, whichever of its threads spawned them.
pub fn children(pid: i32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}
