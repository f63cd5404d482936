//! `guardian run`: takes the guardian lock, wires the supervisor, the API and the signal
//! handlers, and owns the ordered shutdown: API → children → PID files → guardian lock.

use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiState};
use crate::cli::Global;
use crate::config::{Config, LogFormat};
use crate::error::{FatalError, exit};
use crate::events::EventLog;
use crate::pidfile::{self, GuardianLock};
use crate::process::unix::{UnixSpawner, become_subreaper};
use crate::supervisor::Supervisor;

pub fn socket_path(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join("guardian.sock")
}

pub fn run(g: &Global) -> Result<u8, FatalError> {
    let loaded = crate::commands::load(g)?;
    init_tracing(&loaded.config);
    let state_dir = loaded.config.guardian.state_dir.clone();
    pidfile::ensure_state_dir(&state_dir)?;
    let lock = GuardianLock::acquire(&state_dir, &loaded.files).map_err(|e| match e {
        pidfile::AcquireError::Conflict(c) => FatalError::Conflict(c),
        pidfile::AcquireError::PidFile(p) => FatalError::PidFile(p),
    })?;
    if let Some(old) = &lock.replaced {
        tracing::warn!(pid = old.pid, started = %old.start_time, "replaced the record of a guardian that ended without cleaning up");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| FatalError::Io {
            action: "start the async runtime for",
            path: state_dir.clone(),
            source,
        })?;
    let files = loaded
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let result = runtime.block_on(serve(loaded.config, files));
    drop(lock);
    result
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GUARDIAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.guardian.log_level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.guardian.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

async fn serve(config: Config, config_files: Vec<String>) -> Result<u8, FatalError> {
    become_subreaper();
    let state_dir = config.guardian.state_dir.clone();
    let keep_services = !config.guardian.stop_services_on_exit;
    let events = Arc::new(EventLog::new(config.guardian.events_file.clone()));
    let spawner = Arc::new(UnixSpawner::new());
    let echo = std::io::stdout().is_terminal();
    let seed = u64::from(std::process::id()) ^ (pidfile::unix_now() * 1e6) as u64;
    let api_listen = config.guardian.api.clone();
    let events_file = config.guardian.events_file.clone();
    let (sup, handle) = Supervisor::new(config, spawner.clone(), events, echo, seed);

    let root = CancellationToken::new();
    let tracker = TaskTracker::new();
    let shutdown_requested = CancellationToken::new();
    let sup_token = root.child_token();
    let sup_done = tracker.spawn(sup.run(sup_token));

    // The Unix socket: always. We hold the guardian lock, so any file there is stale.
    let sock = socket_path(&state_dir);
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock).map_err(|source| FatalError::Io {
        action: "listen on",
        path: sock.clone(),
        source,
    })?;
    let _ = std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600));
    let api_token = root.child_token();
    let state = |tcp: bool, token: Option<String>| {
        Arc::new(ApiState {
            handle: handle.clone(),
            started: pidfile::unix_now(),
            config_files: config_files.clone(),
            events_file: events_file.clone(),
            token,
            tcp,
            on_shutdown: shutdown_requested.clone(),
        })
    };
    let app = api::router(state(false, None));
    let t = api_token.clone();
    tracker.spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(t.cancelled_owned())
            .await;
    });
    if let Some(api) = api_listen
        && let Some(addr) = api.listen
    {
        let token = match &api.token_file {
            Some(p) => Some(read_token(p)?),
            None => None,
        };
        let tcp = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            FatalError::Message(format!("cannot listen on {addr} (guardian.api.listen): {e}\n  1. look: ss -ltnp 'sport = :{}'\n  2. choose another address, or remove [guardian.api]", addr.port()))
        })?;
        let app = api::router(state(true, token));
        let t = api_token.clone();
        tracker.spawn(async move {
            let _ = axum::serve(tcp, app)
                .with_graceful_shutdown(t.cancelled_owned())
                .await;
        });
    }
    tracker.spawn(crate::metrics_files::run(
        handle.watch(),
        root.child_token(),
        pidfile::unix_now(),
    ));
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(state_dir = %state_dir.display(), pid = std::process::id(), "guardian running");

    let mut term = signal(SignalKind::terminate())
        .map_err(|e| FatalError::Message(format!("cannot watch SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| FatalError::Message(format!("cannot watch SIGINT: {e}")))?;
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| FatalError::Message(format!("cannot watch SIGHUP: {e}")))?;
    let mut chld = signal(SignalKind::child())
        .map_err(|e| FatalError::Message(format!("cannot watch SIGCHLD: {e}")))?;
    let mut stopping = false;
    let mut sup_done = std::pin::pin!(sup_done);
    loop {
        tokio::select! {
            _ = term.recv() => if begin(&mut stopping, &handle, keep_services, &spawner) { break },
            _ = int.recv() => if begin(&mut stopping, &handle, keep_services, &spawner) { break },
            _ = shutdown_requested.cancelled(), if !stopping => { begin(&mut stopping, &handle, keep_services, &spawner); },
            _ = hup.recv() => tracing::warn!("SIGHUP: config reload is not built yet; restart guardian to apply changes"),
            _ = chld.recv() => {
                let s = spawner.clone();
                let _ = tokio::task::spawn_blocking(move || s.reap_orphans()).await;
            }
            _ = &mut sup_done => break,
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    api_token.cancel();
    root.cancel();
    tracker.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tracker.wait()).await;
    let _ = std::fs::remove_file(&sock);
    tracing::info!("guardian stopped");
    Ok(exit::OK)
}

/// First signal: a graceful shutdown. Second: SIGKILL every service now. True to exit.
fn begin(
    stopping: &mut bool,
    handle: &crate::supervisor::SupervisorHandle,
    keep: bool,
    spawner: &UnixSpawner,
) -> bool {
    use crate::process::Spawner;
    if *stopping {
        tracing::warn!("second signal: killing every service now");
        for s in handle.snapshot().services {
            if let Some(pid) = s.pid {
                spawner.signal_group(&s.name, pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        return false;
    }
    *stopping = true;
    tracing::info!(keep_services = keep, "stopping");
    let h = handle.clone();
    tokio::spawn(async move { h.shutdown(keep).await });
    false
}

fn read_token(path: &std::path::Path) -> Result<String, FatalError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|source| FatalError::Io {
        action: "read guardian.api.token_file",
        path: path.to_owned(),
        source,
    })?;
    if meta.mode() & 0o077 != 0 {
        return Err(FatalError::Message(format!(
            "token file {} is readable by group or others (mode {:o})\n  1. fix it: chmod 600 {}",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        )));
    }
    let token = std::fs::read_to_string(path).map_err(|source| FatalError::Io {
        action: "read guardian.api.token_file",
        path: path.to_owned(),
        source,
    })?;
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(FatalError::Message(format!(
            "token file {} is empty; write a long random token into it",
            path.display()
        )));
    }
    Ok(token)
}
