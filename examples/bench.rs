//! The benchmark harness (issue: restart latency, footprint, scale, reload latency).
//!
//! `cargo build --release --examples --bins && target/release/examples/bench all`
//! (or one of: restart handoff memory idle checks scale startup reload bounds). Every figure is printed next
//! to a reference taken in the same run, because shared machines are noisy: only ratios hold.
//! Bounded in time; every process it starts is ended by PID.
//!
//! The same binary is also the service under test: `bench stamp FILE` appends the
//! CLOCK_REALTIME nanoseconds of its first instruction to FILE and sleeps; `bench listen PORT`
//! accepts TCP connections.
#![allow(clippy::disallowed_methods)] // a harness measures wall-clock time and sleeps

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("all");
    match what {
        "stamp" => stamp(&args[2]),
        "launch" => launch(&args[2]),
        "listen" => listen(args[2].parse().expect("port")),
        "pinger" => pinger(),
        "notify-flood" => notify_flood(args[2].parse().expect("count"), &args[3]),
        "lines" => lines(args[2].parse().expect("lines a second")),
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    let mut table = Table::default();
    let all = what == "all";
    println!(
        "guardian bench on {} ({} cores){}",
        machine(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if quick { ", --quick" } else { "" }
    );
    let root = runtime_root();
    println!(
        "guardian state dirs (PID files, socket, events) and the scale rows' stamps in {} ({}); other stamps in {} ({})",
        root.display(),
        fs_type(&root),
        std::env::temp_dir().display(),
        fs_type(&std::env::temp_dir())
    );
    if all || what == "restart" {
        restart(
            &mut table,
            if quick { 40 } else { 200 },
            if quick { 200 } else { 1000 },
        );
    }
    if all || what == "handoff" {
        handoff(&mut table, if quick { 20 } else { 50 });
        reconnect(&mut table, 200, if quick { 3 } else { 5 });
    }
    if all || what == "startup" {
        startup(&mut table);
    }
    if all || what == "alerts" {
        alerts(&mut table, if quick { 40 } else { 200 });
    }
    if all || what == "followers" {
        followers(&mut table, 100, if quick { 5 } else { 10 });
    }
    if all || what == "notify" {
        notify(&mut table, if quick { 10 } else { 30 });
    }
    if all || what == "scale" {
        scale(&mut table, 100, 0.1, 1);
        scale(&mut table, 100, 0.2, 10);
        if !quick {
            scale(&mut table, 1000, 1.0, 1);
        }
    }
    if all || what == "memory" {
        for n in if quick {
            vec![1, 100]
        } else {
            vec![1, 100, 1000]
        } {
            memory(&mut table, n);
        }
    }
    if all || what == "idle" {
        idle(&mut table, if quick { 10 } else { 60 });
    }
    if all || what == "growth" {
        growth(
            &mut table,
            if quick {
                &[10, 100, 1000][..]
            } else {
                &[10, 100, 1000, 10_000][..]
            },
        );
    }
    if all || what == "top" {
        top(&mut table, if quick { 10 } else { 60 });
    }
    if all || what == "checks" {
        checks(&mut table, if quick { 10 } else { 30 });
    }
    if all || what == "reload" {
        reload(&mut table, if quick { 10 } else { 30 });
    }
    if all || what == "bounds" {
        flood(&mut table, if quick { 100 } else { 400 });
        events_query(&mut table, if quick { 100_000 } else { 1_000_000 });
        leaks(&mut table, if quick { 2_000 } else { 10_000 });
    }
    table.print();
}

fn stamp(file: &str) -> ! {
    let t = now_ns();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
    {
        let _ = writeln!(f, "{t}");
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The least a supervisor can do: start `bench stamp FILE` (fork/exec) and wait for it.
fn launch(file: &str) -> ! {
    let code = Command::new(bench_exe())
        .arg("stamp")
        .arg(file)
        .status()
        .map_or(1, |s| s.code().unwrap_or(1));
    std::process::exit(code)
}

fn listen(port: u16) -> ! {
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    loop {
        let _ = l.accept();
    }
}

/// A service that says WATCHDOG=1 to $NOTIFY_SOCKET every second, forever.
fn pinger() -> ! {
    let to = std::env::var("NOTIFY_SOCKET").expect("NOTIFY_SOCKET");
    let sock = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    loop {
        let _ = sock.send_to(b"WATCHDOG=1", &to);
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A service that sends `count` WATCHDOG=1 datagrams as fast as guardian takes them (a
/// datagram send waits while the receiver's queue is full), then writes the seconds it took
/// to `file` and sleeps.
fn notify_flood(count: u64, file: &str) -> ! {
    let to = std::env::var("NOTIFY_SOCKET").expect("NOTIFY_SOCKET");
    let sock = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    let t0 = Instant::now();
    for _ in 0..count {
        let _ = sock.send_to(b"WATCHDOG=1", &to);
    }
    let _ = std::fs::write(file, format!("{}", t0.elapsed().as_secs_f64()));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A service that writes `rate` numbered lines a second, in batches every 10 ms.
fn lines(rate: u64) -> ! {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let (batch, mut n) = (rate / 100, 0u64);
    let t0 = Instant::now();
    for tick in 1u64.. {
        let mut chunk = String::new();
        for _ in 0..batch {
            n += 1;
            chunk.push_str(&format!(
                "line {n} of a service writing {rate} lines a second\n"
            ));
        }
        let _ = out.write_all(chunk.as_bytes());
        let _ = out.flush();
        let next = t0 + Duration::from_millis(tick * 10);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    unreachable!()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown cpu".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, Linux {}", kernel.trim())
}

#[derive(Default)]
struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    fn row(&mut self, figure: &str, value: String, reference: String, goal: &str) {
        println!("  {figure}: {value}   [{reference}]   goal {goal}");
        self.rows
            .push([figure.into(), value, reference, goal.into()]);
    }

    fn print(&self) {
        println!("\n| figure | guardian | reference (same run) | goal |");
        println!("| --- | --- | --- | --- |");
        for r in &self.rows {
            println!("| {} | {} | {} | {} |", r[0], r[1], r[2], r[3]);
        }
    }
}

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_owned()
}

/// Where guardian keeps its state by default: `$XDG_RUNTIME_DIR` (tmpfs on a systemd machine,
/// as `/run` is for `RuntimeDirectory=`). Without one, `/dev/shm`, the same kind of file
/// system; else the temporary folder. PID files are created there, one inode per start, so
/// the file system under it is part of every launch figure: the header says which it is.
fn runtime_root() -> PathBuf {
    let usable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_dir())
            && nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok()
    };
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/dev/shm")])
        .find(|p| usable(p))
        .unwrap_or_else(std::env::temp_dir)
}

/// A temporary folder under `runtime_root()`.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(runtime_root()).expect("tempdir")
}

/// The file system type of `path`, from /proc/self/mounts (the longest mount point above it).
fn fs_type(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(at).then(|| (at.len(), kind.to_owned()))
        })
        .max()
        .map_or_else(|| "unknown".into(), |(_, kind)| kind)
}

/// A guardian under test: its config in a temporary folder, its state in a temporary folder
/// under `runtime_root()`; ended (by PID) when dropped.
struct Guardian {
    child: Child,
    _config_dir: tempfile::TempDir,
    state: tempfile::TempDir,
    cfg: PathBuf,
    launched_ns: u128,
}

impl Guardian {
    fn start(services: &str) -> Guardian {
        Guardian::start_on(services, |_| {})
    }

    /// As `start`, with the state dir prepared by `seed` before guardian is launched.
    fn start_on(services: &str, seed: impl FnOnce(&Path)) -> Guardian {
        let dir = tempfile::Builder::new()
            .prefix("guardian-bench-")
            .tempdir()
            .expect("tempdir");
        let state = tempfile::Builder::new()
            .prefix("guardian-bench-state-")
            .tempdir_in(runtime_root())
            .expect("state dir");
        seed(state.path());
        let cfg = dir.path().join("g.toml");
        std::fs::write(&cfg, services).expect("config");
        let launched_ns = now_ns();
        let child = Command::new(bin_dir().join("guardian"))
            .args(["run", "-c"])
            .arg(&cfg)
            .arg("--state-dir")
            .arg(state.path())
            .env("GUARDIAN_LOG", "warn")
            // One stream for stdout and stderr, as under systemd (one journald stream) or on
            // a terminal; the null device, so that echoed output costs no disk.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run target/release/guardian (build it: cargo build --release --bins)");
        Guardian {
            child,
            _config_dir: dir,
            state,
            cfg,
            launched_ns,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// A file in guardian's state dir.
    fn state_file(&self, name: &str) -> PathBuf {
        self.state.path().join(name)
    }

    fn wait_socket(&self) {
        let sock = self.state_file("guardian.sock");
        wait(Duration::from_secs(30), || sock.exists());
    }
}

impl Guardian {
    /// SIGTERM, then the time until guardian has stopped every service and exited (killed
    /// after 60 s). Once it has been reaped its PID is never signalled again.
    fn stop(&mut self) -> Duration {
        let t0 = Instant::now();
        if let Ok(Some(_)) = self.child.try_wait() {
            return Duration::ZERO;
        }
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
        let end = t0 + Duration::from_secs(60);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return t0.elapsed();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        t0.elapsed()
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    false
}

fn stamps(file: &Path) -> Vec<u128> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn stamp_service(name: &str, file: &Path, extra: &str) -> String {
    format!(
        "[services.{name}]\ncommand = [\"{}\", \"stamp\", \"{}\"]\n{extra}",
        bin_dir().join("examples/bench").display(),
        file.display()
    )
}

/// The floor: the harness itself as the simplest possible supervisor (fork/exec, SIGKILL, wait).
fn floor_restarts(kills: usize, run: Duration) -> Vec<f64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("floor.stamps");
    let bench = bench_exe();
    let spawn = || {
        Command::new(&bench)
            .args(["stamp"])
            .arg(&file)
            .spawn()
            .expect("spawn")
    };
    let mut child = spawn();
    let mut out = Vec::new();
    for i in 0..kills {
        wait(Duration::from_secs(10), || stamps(&file).len() > i);
        std::thread::sleep(run);
        let t = now_ns();
        let _ = child.kill();
        let _ = child.wait();
        child = spawn();
        wait(Duration::from_secs(10), || stamps(&file).len() > i + 1);
        let s = stamps(&file);
        out.push((s[i + 1] as f64 - t as f64) / 1e6);
    }
    let _ = child.kill();
    let _ = child.wait();
    out
}

fn bench_exe() -> PathBuf {
    std::env::current_exe().expect("own path")
}

fn restart(t: &mut Table, kills: usize, run_ms: u64) {
    println!("restart: {kills} SIGKILLs, each after {run_ms} ms of running (floor first)");
    let run = Duration::from_millis(run_ms);
    let mut floor = floor_restarts(kills, run);
    let mut lat = restart_latencies(kills, run, "");
    let (fm, f99) = (percentile(&mut floor, 0.5), percentile(&mut floor, 0.99));
    let (m, p99) = (percentile(&mut lat, 0.5), percentile(&mut lat, 0.99));
    t.row(
        "crash→restart median",
        format!("{m:.2} ms ({:.2}× floor)", m / fm),
        format!("floor {fm:.2} ms"),
        "≤ 1.5× floor",
    );
    t.row(
        "crash→restart p99",
        format!("{p99:.2} ms"),
        format!("floor p99 {f99:.2} ms"),
        "≤ 10 ms",
    );
}

/// SIGKILLs a stamping service `kills` times after `run` of running each: the times from
/// each kill to the new instance's stamp, in ms. `extra` is added to the config.
fn restart_latencies(kills: usize, run: Duration, extra: &str) -> Vec<f64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("svc.stamps");
    let g = Guardian::start(&format!(
        "{}{extra}",
        stamp_service(
            "svc",
            &file,
            "[services.svc.backoff]\ninitial_delay = 0\njitter = 0\nmax_retries = 100000\nreset_after = \"100ms\"\n",
        )
    ));
    let mut lat = Vec::new();
    for i in 0..kills {
        if !wait(Duration::from_secs(10), || stamps(&file).len() > i) {
            println!(
                "  the service did not start; stopping. Its log:\n{}",
                std::fs::read_to_string(g.state_file("logs/svc.log")).unwrap_or_default()
            );
            break;
        }
        std::thread::sleep(run);
        let s = stamps(&file);
        let pid = service_pid(&g, "svc");
        let Some(pid) = pid else { break };
        let t0 = now_ns();
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        if !wait(Duration::from_secs(10), || stamps(&file).len() > s.len()) {
            println!("  no restart after kill {i}");
            break;
        }
        let s = stamps(&file);
        lat.push((s[s.len() - 1] as f64 - t0 as f64) / 1e6);
    }
    lat
}

/// Alerts (SPEC §15): crash→restart with a dead webhook sink that wants every restart
/// (nothing listens on its port), against the same without a sink, in one run.
fn alerts(t: &mut Table, kills: usize) {
    let run = Duration::from_millis(200);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = dead.local_addr().expect("its port").port();
    drop(dead);
    let sink = format!(
        "[alerts.dead]\nwebhook = \"http://127.0.0.1:{port}/hook\"\nevents = [\"restarted\", \"failed\", \"recovered\"]\nrepeat_after = \"1ms\"\ntimeout = \"1s\"\n"
    );
    let mut without = restart_latencies(kills, run, "");
    let mut with = restart_latencies(kills, run, &sink);
    let (a, b) = (percentile(&mut without, 0.5), percentile(&mut with, 0.5));
    t.row(
        "crash→restart median, a dead webhook sink alerting on every restart",
        format!("{b:.2} ms ({:.2}× without)", b / a),
        format!("no sink {a:.2} ms"),
        "= without",
    );
}

/// What a client that connects in a loop saw: refused connections, failed requests (no
/// `200` answer), answered requests.
#[derive(Default, Clone, Copy)]
struct Seen {
    refused: usize,
    failed: usize,
    ok: usize,
}

/// A client that connects to `port` in a loop (GET /health, HTTP/1.0) until `stop`.
fn connect_loop(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Seen> {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                seen.refused += 1;
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
            let mut answer = String::new();
            let done = c
                .write_all(b"GET /health HTTP/1.0\r\nhost: bench\r\n\r\n")
                .and_then(|()| c.read_to_string(&mut answer));
            if done.is_ok() && answer.starts_with("HTTP/1.0 200") {
                seen.ok += 1;
            } else {
                seen.failed += 1;
            }
        }
        seen
    })
}

/// The reference server under guardian, with its socket held by guardian or bound by itself,
/// SIGKILLed `kills` times (after 200 ms of serving each time), then `guardian restart`ed
/// `kills / 5` times, while a client connects in a loop.
fn handoff_run(kills: usize, restarts: usize, held: bool, start_first: bool) -> (Seen, Seen) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(18765, |a| a.port());
    let mut socket = if held {
        format!("sockets = {{ http = \"tcp://127.0.0.1:{port}\" }}\n")
    } else {
        format!("port = {port}\n")
    };
    if start_first {
        socket.push_str("restart_strategy = \"start-first\"\nready = \"notify\"\n");
    }
    let mut g = Guardian::start(&format!(
        "[services.web]\ncommand = [\"{}\", \"--port\", \"{{port}}\"]\n{socket}backoff = {{ initial_delay = \"100ms\", max_delay = \"100ms\", jitter = 0, max_retries = 100000, reset_after = \"100ms\" }}\n",
        bin_dir().join("examples/socketio_server").display()
    ));
    g.wait_socket();
    let serving = || {
        use std::io::{Read, Write};
        std::net::TcpStream::connect(("127.0.0.1", port))
            .and_then(|mut c| {
                c.write_all(b"GET /health HTTP/1.0\r\n\r\n")?;
                let mut a = String::new();
                c.read_to_string(&mut a)?;
                Ok(a.starts_with("HTTP/1.0 200"))
            })
            .unwrap_or(false)
    };
    wait(Duration::from_secs(30), serving);
    let run = |g: &Guardian, act: &dyn Fn(&Guardian, i32), n: usize| -> Seen {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = connect_loop(port, stop.clone());
        for _ in 0..n {
            let Some(pid) = service_pid(g, "web") else {
                break;
            };
            std::thread::sleep(Duration::from_millis(200));
            act(g, pid);
            wait(Duration::from_secs(30), || {
                service_pid(g, "web").is_some_and(|p| p != pid) && serving()
            });
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        client.join().unwrap_or_default()
    };
    let crashes = run(
        &g,
        &|_, pid| {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        },
        kills,
    );
    let restarts = run(
        &g,
        &|g, _| {
            let _ = Command::new(bin_dir().join("guardian"))
                .args(["restart", "web", "--state-dir"])
                .arg(g.state.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        },
        restarts,
    );
    g.stop();
    (crashes, restarts)
}

fn handoff(t: &mut Table, kills: usize) {
    println!(
        "handoff: the reference server SIGKILLed {kills} times, then restarted {} times, under a connect loop (held socket, then without)",
        (kills / 5).max(1)
    );
    let restarts = (kills / 5).max(1);
    let (held, held_restart) = handoff_run(kills, restarts, true, false);
    let (own, own_restart) = handoff_run(kills, restarts, false, false);
    let (_, start_first) = handoff_run(0, restarts, true, true);
    let shown = |s: Seen, how: &str| {
        format!(
            "{} / {} of {} ({how})",
            s.refused,
            s.failed,
            s.refused + s.failed + s.ok
        )
    };
    t.row(
        &format!("refused / failed requests over {kills} SIGKILLs"),
        shown(held, "socket held by guardian"),
        shown(own, "the server binds its own"),
        "0 refused",
    );
    t.row(
        "refused / failed over `guardian restart` (stop-first)",
        shown(held_restart, "socket held"),
        shown(own_restart, "own socket"),
        "0 refused",
    );
    t.row(
        "refused / failed over `guardian restart` (start-first, socket held)",
        shown(start_first, "start-first"),
        shown(held_restart, "stop-first, socket held"),
        "0 refused, 0 failed",
    );
}

/// One HTTP/1.0 GET on a new connection: the body of a 200 answer, or None.
fn http_get(port: u16, path: &str, timeout: Duration) -> Option<String> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(timeout)).ok()?;
    c.write_all(format!("GET {path} HTTP/1.0\r\nhost: bench\r\n\r\n").as_bytes())
        .ok()?;
    let mut answer = String::new();
    c.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200")).then(|| body.to_owned())
}

/// A Socket.IO client as far as reconnecting goes: the engine.io handshake over HTTP
/// long-polling, then a long poll held open; when it breaks, socket.io-client's default
/// reconnection (a delay of 1 s × 2^attempt, ± 50 %, at most 5 s, before each attempt;
/// reset once connected). Each reconnection's time (ns) goes to `reconnected`.
fn sio_client(
    port: u16,
    seed: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reconnected: std::sync::Arc<std::sync::Mutex<Vec<u128>>>,
) {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let handshake = || {
        let body = http_get(
            port,
            "/socket.io/?EIO=4&transport=polling",
            Duration::from_secs(10),
        )?;
        let sid = body
            .split("\"sid\":\"")
            .nth(1)?
            .split('"')
            .next()?
            .to_owned();
        Some(sid)
    };
    let mut sid = handshake();
    while sid.is_none() && !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        sid = handshake();
    }
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Some(s) = &sid else { break };
        // The long poll: answered at the next ping (25 s), or broken when the server dies.
        let poll = format!("/socket.io/?EIO=4&transport=polling&sid={s}");
        if http_get(port, &poll, Duration::from_secs(40)).is_some() {
            continue;
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let mut attempt = 0u32;
        loop {
            let ms = 1000f64 * 2f64.powi(attempt as i32);
            let r: f64 = rng.random();
            let deviation = (r * 0.5 * ms).floor();
            let ms = if (r * 10.0).floor() as u64 & 1 == 0 {
                ms - deviation
            } else {
                ms + deviation
            };
            std::thread::sleep(Duration::from_millis(ms.min(5000.0) as u64));
            attempt += 1;
            sid = handshake();
            if sid.is_some() {
                reconnected.lock().expect("not poisoned").push(now_ns());
                break;
            }
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
        }
    }
}

/// `clients` Socket.IO clients on the reference server (restart backoff 1 s, as in the quick
/// start), the server SIGKILLed `rounds` times: the median time until every client is
/// connected again, with the socket held by guardian and without.
fn reconnect(t: &mut Table, clients: usize, rounds: usize) {
    println!(
        "reconnect: {clients} Socket.IO clients (socket.io-client's default backoff), the server SIGKILLed {rounds} times"
    );
    let run = |held: bool| -> Vec<f64> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_or(18766, |a| a.port());
        let socket = if held {
            format!("sockets = {{ http = \"tcp://127.0.0.1:{port}\" }}\n")
        } else {
            format!("port = {port}\n")
        };
        let mut g = Guardian::start(&format!(
            "[services.web]\ncommand = [\"{}\", \"--port\", \"{{port}}\"]\n{socket}backoff = {{ initial_delay = \"1s\", max_delay = \"1s\", jitter = 0, max_retries = 100000, reset_after = \"1s\" }}\n",
            bin_dir().join("examples/socketio_server").display()
        ));
        g.wait_socket();
        wait(Duration::from_secs(30), || {
            http_get(port, "/health", Duration::from_secs(2)).is_some()
        });
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reconnected = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..clients)
            .map(|i| {
                let (stop, rec) = (stop.clone(), reconnected.clone());
                std::thread::spawn(move || sio_client(port, i as u64, stop, rec))
            })
            .collect();
        std::thread::sleep(Duration::from_secs(2));
        let mut times = Vec::new();
        for _ in 0..rounds {
            reconnected.lock().expect("not poisoned").clear();
            let Some(pid) = service_pid(&g, "web") else {
                break;
            };
            let t0 = now_ns();
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let all = wait(Duration::from_secs(60), || {
                reconnected.lock().expect("not poisoned").len() >= clients
            });
            let last = reconnected
                .lock()
                .expect("not poisoned")
                .iter()
                .copied()
                .max();
            match (all, last) {
                (true, Some(last)) => times.push((last - t0) as f64 / 1e9),
                _ => println!("  not every client came back within 60 s"),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        g.stop();
        for th in threads {
            let _ = th.join();
        }
        times
    };
    let (mut held, mut own) = (run(true), run(false));
    let (h, o) = (percentile(&mut held, 0.5), percentile(&mut own, 0.5));
    t.row(
        &format!(
            "all {clients} Socket.IO clients connected again after a SIGKILL (median of {rounds})"
        ),
        format!("{h:.2} s (socket held; {:.2}× without)", h / o),
        format!("{o:.2} s (the server binds its own)"),
        "≤ 1/3 of the time without",
    );
}

/// The service's PID from its PID file (guardian writes it before the service is ready).
fn service_pid(g: &Guardian, name: &str) -> Option<i32> {
    let p = g.state_file(&format!("{name}.pid"));
    let mut pid = None;
    wait(Duration::from_secs(10), || {
        pid = std::fs::read_to_string(&p)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["pid"].as_i64())
            .map(|p| p as i32);
        pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    });
    pid
}

/// sd_notify (SPEC §14): guardian's CPU while 1000 services each ping their watchdog every
/// second (against the same 1000 silent), and how many messages a second it takes from one
/// service that sends as fast as it can.
fn notify(t: &mut Table, secs: u64) {
    let n = 1000;
    let cpu = |mode: &str, extra: &str| {
        let services: String = (0..n)
            .map(|i| {
                format!(
                    "[services.p{i}]\ncommand = [\"{}\", {mode}]\n{extra}",
                    bench_exe().display()
                )
            })
            .collect();
        let g = Guardian::start(&services);
        g.wait_socket();
        wait(Duration::from_secs(120), || {
            get(&g, "/status").matches("\"state\":\"running\"").count() >= n
        });
        std::thread::sleep(Duration::from_secs(3));
        let (used_ms, _) = cpu_over(g.pid(), Duration::from_secs(secs));
        let missed = get(&g, "/events?n=100000")
            .matches("\"action\":\"watchdog\"")
            .count();
        (used_ms / 1000.0 / secs as f64 * 100.0, missed)
    };
    let (quiet, _) = cpu("\"stamp\", \"/dev/null\"", "");
    let (pinging, missed) = cpu("\"pinger\"", "watchdog = \"3s\"\n");
    t.row(
        "guardian CPU, 1000 services pinging their watchdog every second",
        format!("{pinging:.2} % of one core"),
        format!("same services silent: {quiet:.2} %; watchdog misses seen: {missed}"),
        "",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let done = dir.path().join("flood.secs");
    let count = 200_000;
    let g = Guardian::start(&format!(
        "[services.f]\ncommand = [\"{}\", \"notify-flood\", \"{count}\", \"{}\"]\n",
        bench_exe().display(),
        done.display()
    ));
    g.wait_socket();
    wait(Duration::from_secs(120), || done.exists());
    let took: f64 = std::fs::read_to_string(&done)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(f64::NAN);
    let dropped: f64 = get(&g, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix("guardian_notify_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    t.row(
        "sd_notify messages taken per second, one service sending WATCHDOG=1 flat out",
        format!("{:.0} /s", (count as f64 - dropped) / took),
        format!("{count} sent in {took:.2} s, {dropped} dropped (engine queue full)"),
        "",
    );
}

/// What one follower of a service's log saw: lines received, lines guardian said it lost,
/// and the numbers of the first and last line received.
#[derive(Default, Clone, Copy)]
struct Followed {
    received: u64,
    reported_lost: u64,
    first: Option<u64>,
    last: u64,
}

impl Followed {
    /// Lines between the first and the last received that neither came nor were reported.
    fn silent(&self) -> u64 {
        self.first.map_or(0, |f| {
            (self.last - f + 1).saturating_sub(self.received + self.reported_lost)
        })
    }
}

/// `n` followers of a service writing 10 000 lines a second (`GET /services/NAME/logs?follow=1`
/// over the Unix socket) for `secs`: guardian's CPU and PSS against the same service unfollowed,
/// and what each follower got.
fn followers(t: &mut Table, n: usize, secs: u64) {
    let rate = 10_000;
    let g = Guardian::start(&format!(
        "[guardian]\necho = false\n[services.w]\ncommand = [\"{}\", \"lines\", \"{rate}\"]\n",
        bench_exe().display()
    ));
    g.wait_socket();
    wait(Duration::from_secs(30), || {
        get(&g, "/status").contains("\"state\":\"running\"")
    });
    std::thread::sleep(Duration::from_secs(1));
    let span = Duration::from_secs(secs);
    let (alone_ms, _) = cpu_over(g.pid(), span);
    let pss_alone = pss_kb(g.pid());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sock = g.state_file("guardian.sock");
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (stop, sock) = (stop.clone(), sock.clone());
            std::thread::spawn(move || follow_log(&sock, "w", &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let (used_ms, _) = cpu_over(g.pid(), span);
    let pss = pss_kb(g.pid());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen: Vec<Followed> = threads.into_iter().filter_map(|h| h.join().ok()).collect();
    let pct = |ms: f64| ms / 1000.0 / secs as f64 * 100.0;
    let lines: Vec<u64> = seen.iter().map(|f| f.received).collect();
    let lost: u64 = seen.iter().map(|f| f.reported_lost).sum();
    let silent: u64 = seen.iter().map(Followed::silent).sum();
    t.row(
        &format!("{n} followers of a service writing {rate} lines/s: guardian CPU, PSS"),
        format!(
            "{:.1} % of one core, {:.1} MB",
            pct(used_ms),
            pss / 1024.0
        ),
        format!(
            "unfollowed {:.1} %, {:.1} MB; lines per follower {}–{}, lost and reported {lost}, lost silently {silent}",
            pct(alone_ms),
            pss_alone / 1024.0,
            lines.iter().min().unwrap_or(&0),
            lines.iter().max().unwrap_or(&0),
        ),
        "silent 0",
    );
}

/// Follows `service`'s log until `stop`, counting what came.
fn follow_log(sock: &Path, service: &str, stop: &std::sync::atomic::AtomicBool) -> Followed {
    use std::io::{BufRead, BufReader, Write};
    let mut seen = Followed::default();
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) else {
        return seen;
    };
    let _ = write!(
        s,
        "GET /services/{service}/logs?follow=1&n=0 HTTP/1.0\r\nhost: g\r\n\r\n"
    );
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let (mut lost_event, mut id, mut data) = (false, None::<u64>, 0u64);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => continue,
        }
        // An event is a batch of lines, numbered by its last.
        if line == "\n" {
            if let Some(last) = id.take() {
                seen.first.get_or_insert(last + 1 - data);
                seen.last = last;
                seen.received += data;
            }
            data = 0;
        } else if let Some(k) = line.strip_prefix("id: ") {
            id = k.trim().parse().ok();
        } else if id.is_some() && line.starts_with("data: ") {
            data += 1;
        } else if line.starts_with("event: lost") {
            lost_event = true;
        } else if let Some(data) = line.strip_prefix("data: ")
            && lost_event
        {
            // Only losses after the first line count: before it, nothing was expected yet.
            if seen.first.is_some() {
                seen.reported_lost += data
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            }
            lost_event = false;
        }
    }
    seen
}

fn many(n: usize, dir: &Path, extra: impl Fn(usize) -> String) -> String {
    (0..n)
        .map(|i| {
            stamp_service(
                &format!("s{i}"),
                &dir.join(format!("s{i}.stamp")),
                &extra(i),
            )
        })
        .collect()
}

fn startup(t: &mut Table) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g_lat = Vec::new();
    let mut floor = Vec::new();
    let mut launcher = Vec::new();
    for _ in 0..10 {
        let file = dir.path().join(format!("one-{}.stamp", g_lat.len()));
        let g = Guardian::start(&stamp_service("one", &file, ""));
        wait(Duration::from_secs(10), || !stamps(&file).is_empty());
        g_lat.push((stamps(&file)[0] as f64 - g.launched_ns as f64) / 1e6);
        drop(g);
        // The floor: the harness starts the service itself.
        let f2 = dir.path().join(format!("floor-{}.stamp", floor.len()));
        floor.push(stamped_after_launch("stamp", &f2));
        // A minimal supervisor: a second small program between the harness and the service.
        let f3 = dir
            .path()
            .join(format!("launcher-{}.stamp", launcher.len()));
        launcher.push(stamped_after_launch("launch", &f3));
    }
    let (m, f) = (percentile(&mut g_lat, 0.5), percentile(&mut floor, 0.5));
    let l = percentile(&mut launcher, 0.5);
    let runit = runit_startup(dir.path()).map_or_else(
        || "; runit not installed".to_owned(),
        |r| format!("; runit {r:.2} ms"),
    );
    t.row(
        "start-up: launch → first instruction of the service",
        format!("{m:.2} ms (median of 10; {:.1}× direct)", m / f),
        format!(
            "direct exec {f:.2} ms; a minimal launcher (fork/exec, wait) {l:.2} ms ({:.1}× direct){runit}",
            l / f
        ),
        "≤ 2× direct, ≤ runit",
    );
    startup_after_a_full_event_log(t, dir.path());
}

/// `bench WHAT FILE` started in a process group of its own: ms from launch to the first stamp
/// in FILE; then the group is killed (a launcher's child with it).
fn stamped_after_launch(what: &str, file: &Path) -> f64 {
    use std::os::unix::process::CommandExt;
    let t0 = now_ns();
    let mut c = Command::new(bench_exe())
        .arg(what)
        .arg(file)
        .process_group(0)
        .spawn()
        .expect("spawn");
    wait(Duration::from_secs(10), || !stamps(file).is_empty());
    let ms = (stamps(file)[0] as f64 - t0 as f64) / 1e6;
    let _ = nix::sys::signal::killpg(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
    let _ = c.wait();
    ms
}

/// A guardian started again on a state dir whose event log is at its default limit
/// (`events_max_size_mb = 10`), as after weeks of running: launch → the service's first
/// instruction, and launch → the API's first answer.
fn startup_after_a_full_event_log(t: &mut Table, dir: &Path) {
    let line = serde_json::json!({
        "timestamp": 1.7e9, "timestamp_iso": "2023-11-14T22:13:20Z", "service": "one",
        "action": "restart_scheduled", "trigger": "crash", "health_status": null,
        "success": true, "duration_ms": 1.25, "error_message": null, "pid": 4242,
        "detail": "exit code 1; next try in 1.00 s",
    })
    .to_string();
    let mut log = String::with_capacity(10 << 20);
    while log.len() + line.len() < 10 << 20 {
        log.push_str(&line);
        log.push('\n');
    }
    // Interleaved: an empty state dir, then one with the full log, ten times.
    let (mut first, mut api) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for i in 0..20 {
        let full = i % 2;
        let file = dir.join(format!("log-{i}.stamp"));
        let g = Guardian::start_on(&stamp_service("one", &file, ""), |state| {
            if full == 1 {
                std::fs::write(state.join("events.jsonl"), &log).expect("events file");
            }
        });
        let answered = wait(Duration::from_secs(30), || {
            !get_with(&g, "/services/one/events?n=1", "").is_empty()
        });
        let answered_ns = now_ns();
        wait(Duration::from_secs(10), || !stamps(&file).is_empty());
        if answered {
            api[full].push((answered_ns as f64 - g.launched_ns as f64) / 1e6);
        }
        first[full].push((stamps(&file)[0] as f64 - g.launched_ns as f64) / 1e6);
    }
    let [empty, full] = first.map(|mut v| percentile(&mut v, 0.5));
    t.row(
        "start-up with a full event log (10 MB): launch → first instruction of the service",
        format!("{full:.2} ms (median of 10)"),
        format!("with an empty state dir {empty:.2} ms (interleaved)"),
        "as with an empty state dir",
    );
    let [(empty, _), (full, n)] = api.map(|mut v| (percentile(&mut v, 0.5), v.len()));
    t.row(
        "start-up with a full event log (10 MB): launch → the API answers",
        format!("{full:.2} ms (median of {n})"),
        format!("with an empty state dir {empty:.2} ms (interleaved)"),
        "—",
    );
}

/// runit's `runsvdir` on a one-service directory, launch → the service's first instruction
/// (median of 10), when runit is installed: runsvdir starts `runsv`, which starts the service.
fn runit_startup(dir: &Path) -> Option<f64> {
    let runsvdir = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("runsvdir"))
                .collect::<Vec<_>>()
        })?
        .into_iter()
        .find(|p| p.is_file())?;
    let mut lat = Vec::new();
    let svdir = |i: usize| dir.join(format!("runit-{i}"));
    let file = |i: usize| dir.join(format!("runit-{i}.stamp"));
    for i in 0..10 {
        let run = svdir(i).join("one").join("run");
        std::fs::create_dir_all(run.parent()?).ok()?;
        let script = format!(
            "#!/bin/sh\nexec {} stamp {}\n",
            bench_exe().display(),
            file(i).display()
        );
        std::fs::write(&run, script).ok()?;
        std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o755)).ok()?;
    }
    // runsvdir skips a service directory changed within the current second (it may still be
    // being written): the directories are made a second before.
    std::thread::sleep(Duration::from_millis(1100));
    for i in 0..10 {
        let (svdir, file) = (svdir(i), file(i));
        let t0 = now_ns();
        let mut c = Command::new(&runsvdir).arg(&svdir).spawn().ok()?;
        wait(Duration::from_secs(10), || !stamps(&file).is_empty());
        lat.push((stamps(&file).first().copied()? as f64 - t0 as f64) / 1e6);
        // SIGHUP: runsvdir stops every runsv (each stops its service), then exits.
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGHUP);
        let _ = c.wait();
    }
    Some(percentile(&mut lat, 0.5))
}

/// `levels > 1`: the services form that many levels, each depending on every service of the
/// level before (condition `ready`), so that guardian's start gate is on the path.
fn scale(t: &mut Table, n: usize, goal_s: f64, levels: usize) {
    // Stamps on the same file system as the state: what is measured is spawning, not the
    // creation of a thousand stamp files on a disk (on this ext4 that grew with every run).
    let dir = scratch();
    let width = n / levels;
    let g = Guardian::start(&many(n, dir.path(), |i| {
        if i < width || levels < 2 {
            return String::new();
        }
        let prev = (i / width - 1) * width;
        let deps: Vec<String> = (prev..prev + width)
            .map(|j| format!("s{j} = \"ready\""))
            .collect();
        format!("depends_on = {{ {} }}\n", deps.join(", "))
    }));
    let all = || (0..n).all(|i| dir.path().join(format!("s{i}.stamp")).exists());
    let ok = wait(Duration::from_secs(120), all);
    let last = (0..n)
        .filter_map(|i| {
            stamps(&dir.path().join(format!("s{i}.stamp")))
                .first()
                .copied()
        })
        .max()
        .unwrap_or(0);
    let took = (last as f64 - g.launched_ns as f64) / 1e6;
    drop(g);
    // The floor: the harness spawns the same n processes itself.
    let fdir = scratch();
    let t0 = now_ns();
    let mut kids: Vec<Child> = (0..n)
        .map(|i| {
            Command::new(bench_exe())
                .arg("stamp")
                .arg(fdir.path().join(format!("f{i}")))
                .spawn()
                .expect("spawn")
        })
        .collect();
    wait(Duration::from_secs(120), || {
        (0..n).all(|i| fdir.path().join(format!("f{i}")).exists())
    });
    let flast = (0..n)
        .filter_map(|i| stamps(&fdir.path().join(format!("f{i}"))).first().copied())
        .max()
        .unwrap_or(0);
    for k in &mut kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    let what = if levels > 1 {
        format!("scale: launch → {n} services in a {levels}-deep dependency chain running")
    } else {
        format!("scale: launch → {n} services running")
    };
    t.row(
        &what,
        if ok {
            format!("{took:.0} ms")
        } else {
            "did not finish in 120 s".into()
        },
        format!(
            "{n} direct spawns {:.0} ms",
            (flast as f64 - t0 as f64) / 1e6
        ),
        &format!("≤ {} ms", goal_s * 1000.0),
    );
}

fn pss_kb(pid: i32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn memory(t: &mut Table, n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = Guardian::start(&many(n, dir.path(), |_| String::new()));
    wait(Duration::from_secs(120), || {
        (0..n).all(|i| dir.path().join(format!("s{i}.stamp")).exists())
    });
    std::thread::sleep(Duration::from_secs(2));
    let pss = pss_kb(g.pid()) / 1024.0;
    // The code an API answer runs is mapped again on its first use: shown beside.
    get(&g, "/status");
    get(&g, "/metrics");
    let used = pss_kb(g.pid()) / 1024.0;
    let floor = pss_kb(std::process::id() as i32) / 1024.0;
    let goal = match n {
        1 => "≤ 5 MB",
        100 => "≤ 8 MB",
        _ => "≤ 20 MB",
    };
    t.row(
        &format!(
            "memory (PSS of guardian) with {n} service{}",
            if n == 1 { "" } else { "s" }
        ),
        format!("{pss:.1} MB ({used:.1} MB after /status and /metrics)"),
        format!("this harness {floor:.1} MB"),
        goal,
    );
}

/// CPU time of each live thread of `pid`, in nanoseconds (schedstat: exact, not in ticks).
fn thread_cpu_ns(pid: i32) -> std::collections::HashMap<String, u64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Default::default();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let ns = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            let ns = ns.split_whitespace().next()?.parse::<u64>().ok()?;
            Some((t.file_name().to_string_lossy().into_owned(), ns))
        })
        .collect()
}

/// The process's user+system ticks (threads that ended included), in ms.
fn stat_cpu_ms(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    // After the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt
    // cmajflt utime stime …
    let f: Vec<&str> = after.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let (utime, stime) = (num(11), num(12));
    (utime + stime) as f64 * 10.0
}

/// CPU used by `pid` over `span`: exact for threads alive throughout, plus the tick count.
fn cpu_over(pid: i32, span: Duration) -> (f64, f64) {
    let (a, ta) = (thread_cpu_ns(pid), stat_cpu_ms(pid));
    std::thread::sleep(span);
    let (b, tb) = (thread_cpu_ns(pid), stat_cpu_ms(pid));
    let exact: u64 = b
        .iter()
        .filter_map(|(tid, ns)| Some(ns.saturating_sub(*a.get(tid)?)))
        .sum();
    (exact as f64 / 1e6, tb - ta)
}

fn idle(t: &mut Table, secs: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = Guardian::start(&many(100, dir.path(), |_| String::new()));
    g.wait_socket();
    wait(Duration::from_secs(60), || {
        (0..100).all(|i| dir.path().join(format!("s{i}.stamp")).exists())
    });
    std::thread::sleep(Duration::from_secs(2));
    let (used, ticks) = cpu_over(g.pid(), Duration::from_secs(secs));
    t.row(
        &format!("idle CPU, 100 sleeping services, {secs} s"),
        format!("{used:.2} ms"),
        format!("tick count {ticks:.0} ms (10 ms resolution)"),
        &format!("≤ {:.1} ms", 5.0 * secs as f64 / 60.0),
    );
}

/// `guardian top` left open on 100 services: its own CPU (it polls the API once a second).
fn top(t: &mut Table, secs: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = Guardian::start(&many(100, dir.path(), |_| String::new()));
    g.wait_socket();
    let inner = format!(
        "stty rows 40 cols 160; exec {} top --state-dir {}",
        bin_dir().join("guardian").display(),
        g.state.path().display()
    );
    let mut script = Command::new("script")
        .args(["-qefc", &inner, "/dev/null"])
        .env("TERM", "xterm-256color")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("script (util-linux) runs top in a pseudo-terminal");
    let mut top_pid = None;
    wait(Duration::from_secs(10), || {
        top_pid = std::fs::read_to_string(format!(
            "/proc/{}/task/{}/children",
            script.id(),
            script.id()
        ))
        .ok()
        .and_then(|c| {
            c.split_whitespace()
                .next()
                .and_then(|p| p.parse::<i32>().ok())
        });
        top_pid.is_some()
    });
    std::thread::sleep(Duration::from_secs(2));
    let row = match top_pid {
        Some(pid) => {
            let (used_ms, _) = cpu_over(pid, Duration::from_secs(secs));
            format!(
                "{:.2} % of one core",
                used_ms / 1000.0 / secs as f64 * 100.0
            )
        }
        None => "top did not start".to_owned(),
    };
    let (guardian_ms, _) = cpu_over(g.pid(), Duration::from_secs(1));
    let _ = script.kill();
    let _ = script.wait();
    t.row(
        "guardian top open on 100 services, idle",
        row,
        format!("guardian itself meanwhile {guardian_ms:.1} ms in 1 s"),
        "≤ 1 %",
    );
}

fn checks(t: &mut Table, secs: u64) {
    let _dir = tempfile::tempdir().expect("tempdir");
    let base = 20000 + (std::process::id() % 20000) as u16;
    let services: String = (0..100u16)
        .map(|i| {
            format!(
                "[services.l{i}]\ncommand = [\"{}\", \"listen\", \"{}\"]\nport = {}\n[services.l{i}.health]\ninterval = \"1s\"\ntimeout = \"500ms\"\nchecks = [{{ kind = \"tcp\" }}]\n",
                bench_exe().display(),
                base + i,
                base + i
            )
        })
        .collect();
    let g = Guardian::start(&services);
    g.wait_socket();
    std::thread::sleep(Duration::from_secs(5));
    let (used_ms, _) = cpu_over(g.pid(), Duration::from_secs(secs));
    let pct = used_ms / 1000.0 / secs as f64 * 100.0;
    t.row(
        "health-check cost, 100 tcp checks per second",
        format!("{pct:.2} % of one core"),
        format!("{:.0} checks", 100.0 * secs as f64),
        "≤ 1 %",
    );
}

fn reload(t: &mut Table, n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("svc.stamp");
    let g = Guardian::start(&stamp_service(
        "svc",
        &file,
        "[services.svc.backoff]\nmax_retries = 10\n",
    ));
    g.wait_socket();
    wait(Duration::from_secs(10), || file.exists());
    let events = g.state_file("events.jsonl");
    let reloads = || -> Vec<f64> {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| {
                e["service"] == "guardian" && e["action"] == "reload" && e["success"] == true
            })
            .filter_map(|e| e["timestamp"].as_f64())
            .collect()
    };
    let mut lat = Vec::new();
    for i in 0..n {
        std::thread::sleep(Duration::from_millis(300));
        let text = stamp_service(
            "svc",
            &file,
            &format!("[services.svc.backoff]\nmax_retries = {}\n", 11 + i),
        );
        let t0 = now_ns() as f64 / 1e9;
        std::fs::write(&g.cfg, text).expect("write config");
        if !wait(Duration::from_secs(10), || reloads().len() > i) {
            println!("  reload {i} was not applied");
            break;
        }
        lat.push((reloads()[i] - t0) * 1000.0);
    }
    let m = percentile(&mut lat, 0.5);
    t.row(
        "reload latency: file written → policy change applied",
        format!("{m:.0} ms (median of {})", lat.len()),
        format!(
            "debounce {} ms",
            guardian::daemon::reload::DEBOUNCE.as_millis()
        ),
        "≤ 150 ms",
    );
}

/// One GET over guardian's Unix socket; the body.
fn get(g: &Guardian, path: &str) -> String {
    get_with(g, path, "")
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

fn status_of(g: &Guardian, name: &str) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_str(&get(g, "/status")).unwrap_or_default();
    doc["services"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_default()
}

/// Cost growth (issue 21): per-service memory and descriptors, and the cost of each read
/// endpoint, at 10, 100, 1000 (and 10 000) services, so an O(n²) shows as a line.
fn growth(t: &mut Table, sizes: &[usize]) {
    let mut base: Option<(f64, usize)> = None;
    for &asked in sizes {
        // guardian refuses a stack its hard RLIMIT_NOFILE cannot hold (3 per service here,
        // plus 128): the harness raises the limit guardian inherits when it may (root with
        // CAP_SYS_RESOURCE, as LimitNOFILE= would), else runs the largest stack that fits.
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let needed = |n: usize| 3 * n as u64 + 128;
        let mut n = asked;
        if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
            && hard < needed(n)
            && setrlimit(Resource::RLIMIT_NOFILE, needed(n), needed(n)).is_err()
        {
            n = ((hard.saturating_sub(128) / 3) as usize / 1000) * 1000;
            println!(
                "  growth: {asked} services need {} open files and the hard limit is {hard} (it cannot be raised here): running {n} instead",
                needed(asked)
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let launched = Instant::now();
        let mut g = Guardian::start(&many(n, dir.path(), |_| String::new()));
        g.wait_socket();
        let all_up = wait(Duration::from_secs(600), || {
            (0..n).all(|i| dir.path().join(format!("s{i}.stamp")).exists())
        });
        let up_s = launched.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(1));
        let (pss, fd) = (pss_kb(g.pid()), fds(g.pid()));
        let (pss0, fd0) = *base.get_or_insert((pss, fd));
        let per = |v: f64| {
            if n > sizes[0] {
                v / (n - sizes[0]) as f64
            } else {
                0.0
            }
        };
        let median = |f: &mut dyn FnMut()| -> f64 {
            let mut times: Vec<f64> = (0..10)
                .map(|_| {
                    let t0 = Instant::now();
                    f();
                    t0.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        };
        let mut costs = Vec::new();
        for path in ["/status", "/metrics", "/health", "/diagnostics"] {
            let ms = median(&mut || {
                assert!(!get(&g, path).is_empty(), "{path} answered nothing");
            });
            costs.push(format!("{path} {ms:.1}"));
        }
        // The status page's poll when nothing changed: a 304 with no body.
        let tag = etag(&g);
        let ms = median(&mut || {
            let _ = get_with(&g, "/status?since=0", &format!("If-None-Match: {tag}"));
        });
        costs.push(format!("unchanged poll {ms:.2}"));
        // `guardian status` as a user types it: a process, a request, a table.
        let ms = median(&mut || {
            let out = Command::new(bin_dir().join("guardian"))
                .args(["status", "-c"])
                .arg(&g.cfg)
                .arg("--state-dir")
                .arg(g.state.path())
                .output()
                .expect("guardian status");
            assert!(!out.stdout.is_empty(), "guardian status printed nothing");
        });
        costs.push(format!("`guardian status` {ms:.0}"));
        let (idle_ms, _) = cpu_over(g.pid(), Duration::from_secs(5));
        // SIGTERM to exit: every service stopped, its PID file removed.
        let stop_s = g.stop().as_secs_f64();
        t.row(
            &format!("growth: {n} services"),
            format!(
                "up in {up_s:.1} s; PSS {:.1} MB, {fd} fds; idle CPU {idle_ms:.1} ms in 5 s; median ms: {}; stopped in {stop_s:.2} s{}",
                pss / 1024.0,
                costs.join(", "),
                if all_up { "" } else { " (not all up)" }
            ),
            format!(
                "per service above {}: {:.1} KB, {:.1} fds",
                sizes[0],
                per(pss - pss0),
                per((fd - fd0) as f64)
            ),
            "linear",
        );
    }
}

/// The ETag `/status` answers with now.
fn etag(g: &Guardian) -> String {
    let head = get_with(g, "/status", "");
    head.lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap_or_default()
        .to_owned()
}

/// A GET with one extra header line; the whole response, head included.
fn get_with(g: &Guardian, path: &str, header: &str) -> String {
    use std::io::Read;
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(g.state_file("guardian.sock")) else {
        return String::new();
    };
    let extra = if header.is_empty() {
        String::new()
    } else {
        format!("{header}\r\n")
    };
    let _ = write!(s, "GET {path} HTTP/1.0\r\nhost: g\r\n{extra}\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn status_kb(pid: i32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Peak RSS while a service writes `mib` MiB without one newline, against an idle guardian.
fn flood(t: &mut Table, mib: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let done = dir.path().join("done");
    let idle = Guardian::start("[services.svc]\ncommand = [\"sleep\", \"300\"]\n");
    idle.wait_socket();
    std::thread::sleep(Duration::from_secs(1));
    let idle_hwm = status_kb(idle.pid(), "VmHWM:") / 1024.0;
    drop(idle);
    let g = Guardian::start(&format!(
        "[services.flood]\ncommand = [\"sh\", \"-c\", \"head -c {} /dev/zero; touch {}; exec sleep 300\"]\nlog = {{ max_size_mb = 1, backup_count = 1 }}\n",
        mib << 20,
        done.display()
    ));
    let t0 = Instant::now();
    let finished = wait(Duration::from_secs(300), || done.exists());
    let secs = t0.elapsed().as_secs_f64();
    let hwm = status_kb(g.pid(), "VmHWM:") / 1024.0;
    let dropped = get(&g, "/metrics")
        .lines()
        .find(|l| l.starts_with("guardian_log_dropped_bytes_total{service=\"flood\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    t.row(
        &format!("flood: peak RSS while a service writes {mib} MiB with no newline"),
        if finished {
            format!(
                "{hwm:.1} MiB ({:.0} MiB/s drained, {:.0} MiB dropped)",
                mib as f64 / secs,
                dropped / 1048576.0
            )
        } else {
            "the writes did not finish in 300 s".into()
        },
        format!("idle guardian {idle_hwm:.1} MiB"),
        "< 64 MiB",
    );
}

/// `GET /services/NAME/events` with a 1 M-line events file, against a 10-line one.
fn events_query(t: &mut Table, lines: usize) {
    let median_query = |n: usize| -> f64 {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod");
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(state.join("events.jsonl")).expect("events file"),
        );
        for i in 0..n {
            let _ = writeln!(
                f,
                r#"{{"timestamp": {i}.0, "timestamp_iso": "x", "service": "svc", "action": "note", "trigger": "bench", "health_status": null, "success": true, "duration_ms": null, "error_message": null}}"#
            );
        }
        drop(f);
        let g = Guardian::start(&format!(
            "[guardian]\nstate_dir = \"{}\"\nevents_max_size_mb = 1000\n[services.svc]\ncommand = [\"sleep\", \"300\"]\n",
            state.display()
        ));
        g.wait_socket();
        wait(Duration::from_secs(60), || {
            status_of(&g, "svc")["state"] == "running"
        });
        let mut lat = Vec::new();
        for _ in 0..20 {
            let t0 = Instant::now();
            let body = get(&g, "/services/svc/events?n=50");
            lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            assert!(body.starts_with('['), "events answer: {body}");
        }
        percentile(&mut lat, 0.5)
    };
    let small = median_query(10);
    let big = median_query(lines);
    t.row(
        &format!("events query (50 of one service) with {lines} lines in events.jsonl"),
        format!("{big:.2} ms (median of 20)"),
        format!("10 lines: {small:.2} ms"),
        "independent of the file's size",
    );
}

/// RSS and open descriptors after 100 restarts and after `n`.
fn leaks(t: &mut Table, n: u64) {
    let g = Guardian::start(
        "[services.svc]\ncommand = [\"true\"]\n[services.svc.backoff]\ninitial_delay = 0\njitter = 0\nmax_retries = 100000000\n",
    );
    g.wait_socket();
    let restarts = || status_of(&g, "svc")["restarts"].as_u64().unwrap_or(0);
    let at = |count: u64| -> (f64, usize, f64) {
        let t0 = Instant::now();
        wait(Duration::from_secs(600), || restarts() >= count);
        let secs = t0.elapsed().as_secs_f64();
        (status_kb(g.pid(), "VmRSS:") / 1024.0, fds(g.pid()), secs)
    };
    let (rss100, fd100, _) = at(100);
    let (rss_n, fd_n, secs) = at(n);
    t.row(
        &format!("after {n} restarts: RSS, open fds"),
        format!(
            "{rss_n:.1} MiB, {fd_n} fds ({:.0} restarts/s)",
            (n - 100) as f64 / secs
        ),
        format!("after 100: {rss100:.1} MiB, {fd100} fds"),
        "equal within noise",
    );
}
