//! The reference service (SPEC §7): a Socket.IO server on socketioxide + axum, with fault
//! switches for demos and tests.
//!
//! On namespace `/` it answers `ping` with `pong` and acknowledges every event.
//! `GET /health`, `GET /status`, `POST /admin/disconnect-all`; SIGUSR1 disconnects every client;
//! SIGTERM closes clients and exits 0. Under guardian or systemd (`NOTIFY_SOCKET`) it says
//! READY=1 once it accepts, `STATUS=N clients connected` as that changes, and WATCHDOG=1
//! from its event loop at half of WATCHDOG_USEC.
//!
//! Run: `cargo run --example socketio_server -- --port 8765`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use clap::Parser;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser, Debug)]
#[command(about = "The reference Socket.IO server guardian guards")]
struct Args {
    #[arg(long, env = "SOCKETIO_HOST", default_value = "127.0.0.1")]
    host: String,
    #[arg(long, env = "SOCKETIO_PORT", default_value_t = 8765)]
    port: u16,
    /// Exit with code 1 after this long (`0s`: at once).
    #[arg(long, value_parser = humantime::parse_duration)]
    crash_after: Option<Duration>,
    /// After this long, GET /health answers 500.
    #[arg(long, value_parser = humantime::parse_duration)]
    unhealthy_after: Option<Duration>,
    /// After this long, HTTP requests are accepted but never answered.
    #[arg(long, value_parser = humantime::parse_duration)]
    hang_after: Option<Duration>,
    /// Grow the resident memory by this many MiB every second.
    #[arg(long, default_value_t = 0.0)]
    leak_mb_per_sec: f64,
    /// After this long, the event loop blocks for good (every worker thread sleeps): the
    /// port still accepts in the kernel, but nothing is answered and no WATCHDOG=1 is sent.
    #[arg(long, value_parser = humantime::parse_duration)]
    block_loop_after: Option<Duration>,
}

#[derive(Default)]
struct Stats {
    /// Connections since start.
    connects: AtomicU64,
    events: AtomicU64,
    errors: AtomicU64,
    /// Unix milliseconds of the last event.
    last_activity_ms: AtomicU64,
    unhealthy: AtomicBool,
    hung: AtomicBool,
    disconnects: AtomicU64,
}

impl Stats {
    fn touch(&self) {
        self.last_activity_ms.store(now_ms(), Ordering::Relaxed);
    }
}

#[allow(clippy::disallowed_methods)] // the one wall-clock read: activity timestamps
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Clone)]
struct App {
    stats: Arc<Stats>,
    io: SocketIo,
    started_ms: u64,
    port: u16,
}

fn after(d: Option<Duration>, f: impl FnOnce() + Send + 'static) {
    if let Some(d) = d {
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            f();
        });
    }
}

/// A listener that stops accepting (and closes its copy of the socket) once told: the
/// connections still queued stay for the next instance on a socket guardian holds, and every
/// connection it did accept is read and answered before the graceful shutdown.
struct Closing {
    addr: Option<std::net::SocketAddr>,
    inner: Option<tokio::net::TcpListener>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl axum::serve::Listener for Closing {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some(l) = &self.inner else {
                return std::future::pending().await;
            };
            tokio::select! {
                r = l.accept() => match r {
                    Ok(accepted) => return accepted,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
                _ = self.stop.changed() => self.inner = None,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.addr
            .ok_or_else(|| std::io::Error::other("no local address"))
    }
}

/// The first TCP socket passed with the systemd protocol (the one named `http` if there is
/// one), when LISTEN_PID names this process.
fn inherited_listener() -> Option<tokio::net::TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let mut fds: Vec<(i32, String)> = sd_notify::listen_fds_with_names().ok()?.collect();
    fds.sort_by_key(|(_, name)| name != "http");
    fds.into_iter().find_map(|(fd, _)| {
        // SAFETY: LISTEN_PID is this process, so the fd was passed to it for this use and
        // nothing else in this process owns it.
        let std = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        // A unix socket has no IP address: leave it alone.
        if !std.local_addr().is_ok_and(|a| a.port() != 0) {
            let _ = std.into_raw_fd();
            return None;
        }
        std.set_nonblocking(true).ok()?;
        tokio::net::TcpListener::from_std(std).ok()
    })
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.crash_after == Some(Duration::ZERO) {
        eprintln!("socketio_server: --crash-after 0s: exiting at once");
        std::process::exit(1);
    }
    let stats = Arc::new(Stats::default());
    let (layer, io) = SocketIo::new_layer();
    {
        let stats = stats.clone();
        io.ns("/", async move |s: SocketRef| {
            stats.connects.fetch_add(1, Ordering::Relaxed);
            stats.touch();
            let st = stats.clone();
            s.on(
                "ping",
                async move |s: SocketRef, Data::<Value>(d), ack: AckSender| {
                    st.events.fetch_add(1, Ordering::Relaxed);
                    st.touch();
                    if s.emit("pong", &d).is_err() {
                        st.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = ack.send(&json!({"ok": true, "event": "ping"}));
                },
            );
            let st = stats.clone();
            s.on_fallback(async move |Data::<Value>(_d), ack: AckSender| {
                st.events.fetch_add(1, Ordering::Relaxed);
                st.touch();
                let _ = ack.send(&json!({"ok": true}));
            });
        });
    }
    let app = App {
        stats: stats.clone(),
        io: io.clone(),
        started_ms: now_ms(),
        port: args.port,
    };
    let router = axum::Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/admin/disconnect-all", post(disconnect_all))
        .layer(axum::middleware::from_fn_with_state(app.clone(), hang))
        .layer(layer)
        .with_state(app.clone());

    // A listener held by guardian (or systemd) comes as fd 3 with LISTEN_FDS/LISTEN_PID:
    // taken as is, so a restart refuses no connection. Else the server binds its own.
    let listener = match inherited_listener() {
        Some(l) => {
            let at = l
                .local_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string());
            eprintln!("socketio_server: listening on {at} (socket passed by LISTEN_FDS)");
            l
        }
        None => match tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await {
            Ok(l) => {
                eprintln!("socketio_server: listening on {}:{}", args.host, args.port);
                l
            }
            Err(e) => {
                eprintln!(
                    "socketio_server: cannot listen on {}:{}: {e}\n  look: ss -ltnp 'sport = :{}'",
                    args.host, args.port, args.port
                );
                std::process::exit(2);
            }
        },
    };

    // sd_notify (SPEC §14): READY=1 once the listener is ours (a no-op without NOTIFY_SOCKET).
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    after(args.crash_after, || {
        eprintln!("socketio_server: --crash-after reached: exiting with code 1");
        std::process::exit(1);
    });
    let st = stats.clone();
    after(args.unhealthy_after, move || {
        eprintln!("socketio_server: --unhealthy-after reached: /health answers 500");
        st.unhealthy.store(true, Ordering::Relaxed);
    });
    // The fault is to block: the one place a thread sleeps in an async task, on purpose.
    #[allow(clippy::disallowed_methods)]
    if let Some(d) = args.block_loop_after {
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            eprintln!("socketio_server: --block-loop-after reached: the event loop blocks");
            let workers = tokio::runtime::Handle::current().metrics().num_workers();
            for _ in 0..workers {
                tokio::spawn(async {
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                });
            }
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        });
    }
    // From the event loop itself: a loop that stops turning stops the pings.
    let watchdog = sd_notify::watchdog_enabled();
    let io_status = io.clone();
    tokio::spawn(async move {
        let every = watchdog.map_or(Duration::from_secs(1), |w| {
            (w / 2).min(Duration::from_secs(1))
        });
        let mut ticks = tokio::time::interval(every);
        let mut said = None;
        loop {
            ticks.tick().await;
            let clients = io_status.sockets().len();
            let mut states = Vec::new();
            let status = format!("{clients} clients connected");
            if said != Some(clients) {
                said = Some(clients);
                states.push(sd_notify::NotifyState::Status(&status));
            }
            if watchdog.is_some() {
                states.push(sd_notify::NotifyState::Watchdog);
            }
            if !states.is_empty() {
                let _ = sd_notify::notify(&states);
            }
        }
    });
    let st = stats.clone();
    after(args.hang_after, move || {
        eprintln!("socketio_server: --hang-after reached: HTTP stops answering");
        st.hung.store(true, Ordering::Relaxed);
    });
    if args.leak_mb_per_sec > 0.0 {
        let per_tick = (args.leak_mb_per_sec * 1024.0 * 1024.0 / 10.0) as usize;
        tokio::spawn(async move {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                // Filled with non-zero bytes, so the pages are really resident.
                hoard.push(vec![0x5a; per_tick]);
            }
        });
    }
    let io_usr1 = io.clone();
    let st = stats.clone();
    tokio::spawn(async move {
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            return;
        };
        while usr1.recv().await.is_some() {
            eprintln!("socketio_server: SIGUSR1: disconnecting every client");
            st.disconnects.fetch_add(1, Ordering::Relaxed);
            let _ = io_usr1.disconnect().await;
        }
    });
    let (stop_accepting, stopped) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        // First no new connection (a held socket's queue goes whole to the next instance),
        // then a moment for what was accepted to be read and answered, then the rest.
        let _ = stop_accepting.send(true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        eprintln!("socketio_server: stopping: closing every client");
        io.close().await;
    };
    let listener = Closing {
        addr: listener.local_addr().ok(),
        inner: Some(listener),
        stop: stopped,
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("socketio_server: {e}");
        std::process::exit(1);
    }
}

/// After --hang-after, every HTTP request (Socket.IO polling included) waits forever.
async fn hang(
    State(app): State<App>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if app.stats.hung.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
    next.run(req).await
}

fn snapshot(app: &App) -> Value {
    let s = &app.stats;
    let last = s.last_activity_ms.load(Ordering::Relaxed);
    json!({
        "status": if s.unhealthy.load(Ordering::Relaxed) { "unhealthy" } else { "healthy" },
        "clients_connected": app.io.sockets().len(),
        "events_processed": s.events.load(Ordering::Relaxed),
        "errors": s.errors.load(Ordering::Relaxed),
        "last_activity": (last > 0).then(|| last as f64 / 1000.0),
    })
}

async fn health(State(app): State<App>) -> impl IntoResponse {
    let code = if app.stats.unhealthy.load(Ordering::Relaxed) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    (code, Json(snapshot(&app)))
}

async fn status(State(app): State<App>) -> Json<Value> {
    let mut v = snapshot(&app);
    v["pid"] = json!(std::process::id());
    v["port"] = json!(app.port);
    v["uptime_seconds"] = json!((now_ms().saturating_sub(app.started_ms)) as f64 / 1000.0);
    v["disconnect_all_count"] = json!(app.stats.disconnects.load(Ordering::Relaxed));
    v["connects_total"] = json!(app.stats.connects.load(Ordering::Relaxed));
    Json(v)
}

async fn disconnect_all(State(app): State<App>) -> Json<Value> {
    let n = app.io.sockets().len();
    app.stats.disconnects.fetch_add(1, Ordering::Relaxed);
    let _ = app.io.disconnect().await;
    eprintln!("socketio_server: POST /admin/disconnect-all: {n} clients disconnected");
    Json(json!({"disconnected": n}))
}
