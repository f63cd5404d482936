//! `guardian run`: takes the guardian lock, wires the supervisor, the API and the signal
//! handlers, and owns the ordered shutdown: API → children → PID files → guardian lock.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing_subscriber::layer::{Layer, Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload as live};

use crate::api::{self, ApiState};
use crate::config::{Config, GuardianSpec, LoadOptions, LogFormat};
use crate::error::{FatalError, exit};
use crate::events::EventLog;
use crate::pidfile::{self, GuardianLock};
use crate::process::output::DroppedBytes;
use crate::process::unix::{UnixSpawner, become_subreaper};
use crate::reload;
use crate::supervisor::{Reply, Supervisor, SupervisorHandle};

pub fn socket_path(state_dir: &std::path::Path) -> std::path::PathBuf {
    state_dir.join("guardian.sock")
}

/// `guardian run`: `opts` are the command line's files, flags and environment.
pub fn run(opts: LoadOptions) -> Result<u8, FatalError> {
    crate::process::unix::limit_malloc_arenas();
    crate::process::unix::keep_inherited_descriptors_from_services();
    let loaded = crate::config::load(&opts)?;
    raise_fd_limit(
        loaded.config.instances().count(),
        loaded.config.guardian.echo,
    )?;
    let logs = init_tracing(&loaded.config);
    let state_dir = loaded.config.guardian.state_dir.clone();
    pidfile::ensure_state_dir(&state_dir)?;
    let lock = GuardianLock::acquire(&state_dir, &loaded.files).map_err(|e| match e {
        pidfile::AcquireError::Conflict(c) => FatalError::Conflict(c),
        pidfile::AcquireError::PidFile(p) => FatalError::PidFile(p),
    })?;
    if let Some(old) = &lock.replaced {
        tracing::warn!(pid = old.pid, started = %old.start_time, "replaced the record of a guardian that ended without cleaning up");
    }
    crate::process::unix::release_free_memory();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| FatalError::Io {
            action: "start the async runtime for",
            path: state_dir.clone(),
            source,
        })?;
    // A reload reads the same files (as found now) and the same flags, and the environment anew.
    let reload_opts = LoadOptions {
        files: loaded.files.clone(),
        ..opts
    };
    let result = runtime.block_on(serve(loaded.config, reload_opts, logs));
    drop(lock);
    result
}

/// Descriptors guardian holds per running service: its output pipe (a second one when echoed
/// stderr goes to a stream of its own), its PID file's lock, and one more for an exec check
/// or a client at a time. Open log files are capped (`output::MAX_OPEN_LOGS`) and counted
/// in the base.
fn fds_per_service(echo: bool) -> u64 {
    if echo && crate::process::unix::stderr_apart() {
        4
    } else {
        3
    }
}
const FDS_BASE: u64 = 64 + crate::process::output::MAX_OPEN_LOGS as u64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as systemd and the Go runtime do), and
/// refuses to start a stack that the hard limit cannot hold: never a half-started stack.
fn raise_fd_limit(services: usize, echo: bool) -> Result<(), FatalError> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let per = fds_per_service(echo);
    let needed = FDS_BASE + per * services as u64;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return Ok(());
    };
    if soft < hard {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    if hard < needed {
        return Err(FatalError::Message(format!(
            "{services} services need about {needed} open files ({per} each, plus {FDS_BASE}), but the hard limit is {hard}; nothing was started\n  1. raise it for this shell: ulimit -Hn {needed} (as root), or LimitNOFILE={needed} in guardian's unit\n  2. or run fewer services (replicas)"
        )));
    }
    Ok(())
}

type Inner = Layered<live::Layer<EnvFilter, Registry>, Registry>;
type FmtLayer = Box<dyn Layer<Inner> + Send + Sync>;

/// The log level and format, changeable while guardian runs (a reload applies them).
pub struct LogControl {
    filter: live::Handle<EnvFilter, Registry>,
    format: live::Handle<FmtLayer, Inner>,
    /// `GUARDIAN_LOG` wins over the config's level.
    pinned: bool,
}

fn fmt_layer(format: LogFormat) -> FmtLayer {
    match format {
        LogFormat::Json => fmt::layer().json().with_writer(std::io::stderr).boxed(),
        LogFormat::Text => fmt::layer()
            // On a terminal, unless NO_COLOR (or forced by CLICOLOR_FORCE), like the echo.
            .with_ansi(
                anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never,
            )
            .with_writer(std::io::stderr)
            .boxed(),
    }
}

fn init_tracing(config: &Config) -> Option<LogControl> {
    let env = EnvFilter::try_from_env("GUARDIAN_LOG").ok();
    let pinned = env.is_some();
    let filter = env.unwrap_or_else(|| EnvFilter::new(config.guardian.log_level.as_str()));
    let (filter, filter_handle) = live::Layer::new(filter);
    let (format, format_handle) = live::Layer::new(fmt_layer(config.guardian.log_format));
    tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .try_init()
        .ok()?;
    Some(LogControl {
        filter: filter_handle,
        format: format_handle,
        pinned,
    })
}

impl LogControl {
    fn apply(&self, g: &crate::config::GuardianSpec) {
        if !self.pinned {
            let _ = self.filter.reload(EnvFilter::new(g.log_level.as_str()));
        }
        let _ = self.format.reload(fmt_layer(g.log_format));
    }
}

async fn serve(
    config: Config,
    reload_opts: LoadOptions,
    logs: Option<LogControl>,
) -> Result<u8, FatalError> {
    let config_files: Vec<String> = reload_opts
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut current = config.guardian.clone();
    become_subreaper();
    let state_dir = config.guardian.state_dir.clone();
    let keep_services = !config.guardian.stop_services_on_exit;
    let g = &config.guardian;
    let events = Arc::new(EventLog::new(
        g.events_file.clone(),
        g.events_max_bytes(),
        g.events_backup_count,
    ));
    let dropped = Arc::new(DroppedBytes::default());
    let followers = Arc::new(crate::process::output::Followers::default());
    let spawner = Arc::new(
        UnixSpawner::new(
            dropped.clone(),
            followers.clone(),
            crate::process::output::color_wanted(),
        )
        .map_err(|e| FatalError::Message(format!("cannot start the output thread: {e}")))?,
    );
    // Every held socket is bound before any service starts (SPEC §13); one that cannot be is
    // a config error (exit 2) and nothing starts.
    let mut sockets = HeldSockets {
        spawner: spawner.clone(),
        held: BTreeMap::new(),
    };
    sockets.bind_new(&config).map_err(FatalError::Sockets)?;
    let seed = u64::from(std::process::id()) ^ (pidfile::unix_now() * 1e6) as u64;
    let api_listen = config.guardian.api.clone();
    let alert_sinks = config.alerts.clone();
    let services_count = config.services.len();
    let (sup, handle) = Supervisor::new(config, spawner.clone(), events.clone(), seed);
    // Alerts (SPEC §15): every recorded event is offered to the sinks, off the engine.
    let alerts = crate::alerts::Hub::new(state_dir.clone(), Some(handle.watch()));
    for e in alerts.configure(&alert_sinks) {
        tracing::error!(error = %e, "an alert sink cannot send");
    }
    {
        let hub = alerts.clone();
        events.observe(move |e| hub.observe(e));
    }

    let root = CancellationToken::new();
    let tracker = TaskTracker::new();
    let shutdown_requested = CancellationToken::new();
    let sup_token = root.child_token();
    // Signals are watched before the first service starts: a SIGTERM that arrives while
    // they start is a graceful stop, never the default action that would orphan them.
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| FatalError::Message(format!("cannot watch SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| FatalError::Message(format!("cannot watch SIGINT: {e}")))?;
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| FatalError::Message(format!("cannot watch SIGHUP: {e}")))?;
    let mut chld = signal(SignalKind::child())
        .map_err(|e| FatalError::Message(format!("cannot watch SIGCHLD: {e}")))?;
    // Its own task, never behind the main loop: a reload or a stop waits for exits.
    let reaper = spawner.clone();
    tokio::spawn(async move {
        loop {
            if !reaper.reap_children() {
                let s = reaper.clone();
                let _ = tokio::task::spawn_blocking(move || s.reap_orphans()).await;
            }
            if chld.recv().await.is_none() {
                break;
            }
        }
    });
    let sup_done = tracker.spawn(sup.run(sup_token));
    // Test builds: the rest of start-up (sockets, API, watches) made slow, so a test can
    // send a signal while the first services start and the rest is not ready yet.
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("_GUARDIAN_TEST_STARTUP_STALL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    // Once the first start has settled, what starting thousands of services allocated and
    // freed goes back to the system.
    let mut settling = handle.watch();
    tokio::spawn(async move {
        while !crate::systemd::settled(&settling.borrow_and_update()) {
            if settling.changed().await.is_err() {
                return;
            }
        }
        let _ = tokio::task::spawn_blocking(crate::process::unix::release_free_memory).await;
    });

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
    let (reload_tx, mut reload_rx) = mpsc::channel::<reload::Request>(4);
    let lockout = Arc::new(api::lockout::Lockout::default());
    let facts = Arc::new(api::facts::FactsCache::default());
    let streams = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let history = Arc::new(api::history::History::default());
    tracker.spawn(api::history::run(
        history.clone(),
        facts.clone(),
        handle.watch(),
        root.child_token(),
    ));
    let state = |tcp: bool, token: Option<String>, reads_need_token: bool| {
        Arc::new(ApiState {
            reads_need_token,
            lockout: lockout.clone(),
            facts: facts.clone(),
            handle: handle.clone(),
            started: pidfile::unix_now(),
            config_files: config_files.clone(),
            events: events.clone(),
            token,
            tcp,
            on_shutdown: shutdown_requested.clone(),
            reload: reload_tx.clone(),
            dropped: dropped.clone(),
            alerts: alerts.clone(),
            followers: followers.clone(),
            streams: streams.clone(),
            history: history.clone(),
        })
    };
    // sd_notify (SPEC §14): one datagram socket for every service with ready = "notify".
    let notify_path = crate::supervisor::notify_socket(&state_dir);
    match bind_notify(&notify_path) {
        Ok(sock) => {
            tracker.spawn(read_notify(sock, handle.clone(), root.child_token()));
        }
        Err(e) => {
            tracing::error!(path = %notify_path.display(), error = %e, "cannot listen for sd_notify messages; services with ready = \"notify\" will time out")
        }
    }
    let app = api::router(state(false, None, false));
    let t = api_token.clone();
    tracker.spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(t.cancelled_owned())
            .await;
    });
    let mut tcp_token = api_token.child_token();
    let mut tls = bind_tcp(api_listen.as_ref(), &tracker, &tcp_token, &state).await?;
    let mut watcher = watch_files(&current, &reload_opts.files, &reload_tx);
    tracker.spawn(crate::metrics_files::run(
        handle.watch(),
        root.child_token(),
        pidfile::unix_now(),
    ));
    crate::systemd::spawn(&handle, &tracker, &root);
    tracing::info!(state_dir = %state_dir.display(), pid = std::process::id(), "guardian running");
    alerts.guardian(
        crate::config::alerts::AlertEvent::GuardianStarted,
        format!(
            "guardian started (pid {}, {services_count} services)",
            std::process::id()
        ),
    );

    let mut stopping = false;
    let mut sup_done = std::pin::pin!(sup_done);
    // An essential service's end decides guardian's exit code (SPEC §14).
    let mut essential_code = None;
    loop {
        tokio::select! {
            _ = term.recv() => if begin(&mut stopping, &handle, keep_services, &spawner) { break },
            _ = int.recv() => if begin(&mut stopping, &handle, keep_services, &spawner) { break },
            _ = shutdown_requested.cancelled(), if !stopping => { begin(&mut stopping, &handle, keep_services, &spawner); },
            _ = hup.recv() => {
                let _ = reload_tx.try_send(reload::Request { trigger: "sighup", reply: None });
            }
            Some(req) = reload_rx.recv() => {
                crate::systemd::reloading();
                let (reply, applied) =
                    reload_once(&reload_opts, &handle, &mut sockets, &alerts, req.trigger).await;
                crate::systemd::reloaded();
                if let Some(new) = applied {
                    if let Some(l) = &logs {
                        l.apply(&new);
                    }
                    if new.api != current.api {
                        tcp_token.cancel();
                        tcp_token = api_token.child_token();
                        match bind_tcp(new.api.as_ref(), &tracker, &tcp_token, &state).await {
                            Ok(t) => tls = t,
                            Err(e) => tracing::error!(error = %e, "the new guardian.api.listen could not be bound; the TCP API is off until the next reload"),
                        }
                    } else if let (Some(live), Some(api)) = (&tls, &new.api)
                        && let (Some(cert), Some(key)) = (&api.tls_cert, &api.tls_key)
                    {
                        // TLS files are read again on every reload: a renewed certificate at
                        // the same path applies to new connections without a restart.
                        match crate::config::host::tls_config(cert, key) {
                            Ok(c) => *live.write().expect("UNWRAP: never poisoned") = tokio_rustls::TlsAcceptor::from(Arc::new(c)),
                            Err(e) => tracing::error!(error = %e, "the TLS files could not be read again; the old certificate stays"),
                        }
                    }
                    if new.watch_config != current.watch_config {
                        watcher = watch_files(&new, &reload_opts.files, &reload_tx);
                    }
                    current = new;
                }
                if let Some(r) = req.reply {
                    let _ = r.send(reply);
                }
            }
            code = &mut sup_done => {
                essential_code = code.ok().flatten();
                break;
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    // The services are stopped: this alert is the last thing guardian says.
    alerts.guardian(
        crate::config::alerts::AlertEvent::GuardianStopping,
        match essential_code {
            Some(code) => format!("guardian stopped: an essential service ended (exit {code})"),
            None => "guardian stopped".to_owned(),
        },
    );
    alerts.flush(std::time::Duration::from_secs(10)).await;
    api_token.cancel();
    root.cancel();
    tracker.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tracker.wait()).await;
    drop(watcher);
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&notify_path);
    match essential_code {
        Some(code) => {
            tracing::info!(code, "guardian stopped: an essential service ended");
            // Exit statuses are 0–255; a shell's 128 + signal fits.
            Ok(u8::try_from(code.rem_euclid(256)).unwrap_or(1))
        }
        None => {
            tracing::info!("guardian stopped");
            Ok(exit::OK)
        }
    }
}

/// Loads every layer again (the environment included) and hands the result to the
/// supervisor. Returns its reply, and the guardian settings when the reload was applied.
async fn reload_once(
    opts: &LoadOptions,
    handle: &SupervisorHandle,
    sockets: &mut HeldSockets,
    alerts: &crate::alerts::Hub,
    trigger: &str,
) -> (Reply, Option<GuardianSpec>) {
    let opts = opts.clone();
    let loaded = tokio::task::spawn_blocking(move || load_again(&opts))
        .await
        .map_err(|e| format!("the reload task failed: {e}"))
        .and_then(|r| r);
    let guardian = loaded.as_ref().ok().map(|c| c.guardian.clone());
    // A new socket is bound before the supervisor sees the config, so the services that
    // restart onto it find it; one that cannot be bound refuses the whole reload.
    let (loaded, bound) = match loaded {
        Ok(c) => match sockets.bind_new(&c) {
            Ok(bound) => (Ok(c), bound),
            Err(e) => (Err(e), Vec::new()),
        },
        Err(e) => (Err(e), Vec::new()),
    };
    let new_config = loaded.as_ref().ok().cloned();
    let reply = handle.reload(loaded).await;
    match (&reply, new_config) {
        (Reply::Done(_), Some(c)) => {
            sockets.keep_only(&c);
            for e in alerts.configure(&c.alerts) {
                tracing::error!(error = %e, "an alert sink cannot send");
            }
        }
        _ => {
            sockets.release(&bound);
            // Why stays in guardian's log and the reload's answer: a config error can quote
            // the file's text, and an alert never carries a secret.
            alerts.guardian(
                crate::config::alerts::AlertEvent::ReloadRefused,
                format!("config reload ({trigger}) refused; the running config stays (why: guardian's log, or `guardian validate`)"),
            );
        }
    }
    // Loading and diffing a big config leaves freed memory resident.
    let _ = tokio::task::spawn_blocking(crate::process::unix::release_free_memory).await;
    match &reply {
        Reply::Done(text) => {
            tracing::info!(trigger, changes = %text.trim_end(), "config reloaded");
            (reply, guardian)
        }
        other => {
            tracing::error!(trigger, reply = ?other, "config reload refused; the running config stays");
            (reply, None)
        }
    }
}

/// The sd_notify socket: a datagram socket that passes each sender's credentials.
fn bind_notify(path: &std::path::Path) -> std::io::Result<tokio::net::UnixDatagram> {
    let _ = std::fs::remove_file(path);
    let sock = std::os::unix::net::UnixDatagram::bind(path)?;
    rustix::net::sockopt::set_socket_passcred(&sock, true)?;
    sock.set_nonblocking(true)?;
    // Services may run as other users (`user`): any of them may send.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
    tokio::net::UnixDatagram::from_std(sock)
}

/// Reads sd_notify datagrams until `token`: each one's sender (from its credentials) and
/// that sender's ancestry go to the supervisor, which takes it only from a service's tree.
/// A message over 4 KiB, or without credentials, is dropped and counted; so is one the
/// supervisor's queue has no room for. Work per message is bounded; nothing accumulates.
async fn read_notify(
    sock: tokio::net::UnixDatagram,
    handle: SupervisorHandle,
    token: CancellationToken,
) {
    use crate::policy::notify::{MAX_MESSAGE, parse};
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        tokio::select! {
            r = sock.readable() => if r.is_err() { return },
            _ = token.cancelled() => return,
        }
        let got = sock.try_io(tokio::io::Interest::READABLE, || {
            let mut space =
                [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let msg = rustix::net::recvmsg(
                &sock,
                &mut [std::io::IoSliceMut::new(&mut buf)],
                &mut control,
                RecvFlags::TRUNC,
            )?;
            let pid = control.drain().find_map(|m| match m {
                RecvAncillaryMessage::ScmCredentials(c) => Some(c.pid.as_raw_nonzero().get()),
                _ => None,
            });
            Ok((msg.bytes, pid))
        });
        let (len, pid) = match got {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => {
                handle.count_notify_dropped();
                continue;
            }
        };
        let Some(pid) = pid.filter(|_| len <= MAX_MESSAGE) else {
            handle.count_notify_dropped();
            continue;
        };
        let notice = parse(&String::from_utf8_lossy(&buf[..len]));
        handle.notify(crate::procinfo::ancestors(pid), notice);
        // The engine was just woken on this thread: let it take the message before the
        // next one (under a flood it would otherwise wait for this loop's budget to run out,
        // and the queue would overflow meanwhile).
        tokio::task::yield_now().await;
    }
}

/// The listening sockets held for the services (SPEC §13), by address; the spawning thread
/// keeps the descriptors.
struct HeldSockets {
    spawner: Arc<UnixSpawner>,
    /// Address → the service and socket name it was bound for (for errors).
    held: BTreeMap<String, String>,
}

impl HeldSockets {
    /// Binds and holds every socket of `config` that is not held yet. On an error, none of
    /// them stays held, and the error names the key and the address. Returns the addresses
    /// it bound.
    fn bind_new(&mut self, config: &Config) -> Result<Vec<String>, String> {
        let mut bound = Vec::new();
        for spec in config.services.values() {
            for (sname, listen) in &spec.sockets {
                let address = listen.to_string();
                if self.held.contains_key(&address) {
                    continue;
                }
                let key = format!("services.{}.sockets.{sname}", spec.name);
                let held = crate::process::sockets::bind(listen, Some((spec.uid, spec.gid)))
                    .and_then(|fd| {
                        self.spawner
                            .hold(&address, &fd)
                            .map_err(|e| format!("cannot hold {address}: {e}"))
                    });
                if let Err(e) = held {
                    self.release(&bound);
                    return Err(format!("`{key}`: {e}"));
                }
                self.held.insert(address.clone(), key);
                bound.push(address);
            }
        }
        Ok(bound)
    }

    /// Closes the held sockets that `config` no longer has.
    fn keep_only(&mut self, config: &Config) {
        let wanted: std::collections::BTreeSet<String> = config
            .services
            .values()
            .flat_map(|s| s.sockets.values().map(ToString::to_string))
            .collect();
        let gone: Vec<String> = self
            .held
            .keys()
            .filter(|a| !wanted.contains(*a))
            .cloned()
            .collect();
        self.release(&gone);
    }

    fn release(&mut self, addresses: &[String]) {
        for a in addresses {
            self.held.remove(a);
            self.spawner.release(a);
            if let Some(path) = a.strip_prefix("unix://") {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Every layer again: the files, the flags, and the environment as it is now.
pub fn load_again(opts: &LoadOptions) -> Result<Config, String> {
    crate::config::load(&opts.clone().with_process_env())
        .map(|l| l.config)
        .map_err(|e| e.to_string())
}

/// Watches the config files when `watch_config` is on; a failure to watch is logged.
fn watch_files(
    g: &GuardianSpec,
    files: &[std::path::PathBuf],
    tx: &mpsc::Sender<reload::Request>,
) -> Option<reload::FileWatcher> {
    if !g.watch_config || files.is_empty() {
        return None;
    }
    match reload::watch(files, tx.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "config files are not watched; reload with: guardian reload");
            None
        }
    }
}

/// The TLS acceptor of the TCP API, replaced in place when a reload reads new certificates.
type TlsHandle = Arc<std::sync::RwLock<tokio_rustls::TlsAcceptor>>;

/// Serves the API on `guardian.api.listen`, if set, until `token` is cancelled.
async fn bind_tcp(
    api: Option<&crate::config::ApiSpec>,
    tracker: &TaskTracker,
    token: &CancellationToken,
    state: &impl Fn(bool, Option<String>, bool) -> Arc<ApiState>,
) -> Result<Option<TlsHandle>, FatalError> {
    let Some(api) = api else { return Ok(None) };
    let Some(addr) = api.listen else {
        return Ok(None);
    };
    let secret = match &api.token_file {
        Some(p) => Some(crate::config::host::read_token_file(p).map_err(FatalError::Message)?),
        None => None,
    };
    let tls = match (&api.tls_cert, &api.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(std::sync::RwLock::new(
            tokio_rustls::TlsAcceptor::from(Arc::new(
                crate::config::host::tls_config(cert, key).map_err(FatalError::Message)?,
            )),
        ))),
        _ => None,
    };
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the API listens off loopback without TLS (allow_plaintext = true): the token crosses the network in clear");
    }
    let tcp = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        FatalError::Message(format!("cannot listen on {addr} (guardian.api.listen): {e}\n  1. look: ss -ltnp 'sport = :{}'\n  2. choose another address, or remove [guardian.api]", addr.port()))
    })?;
    let app = api::router(state(true, secret, !addr.ip().is_loopback()));
    let t = token.clone();
    tracker.spawn(api::serve_tcp(tcp, app, t, tls.clone()));
    Ok(tls)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diff::diff;

    #[test]
    fn the_environment_is_read_again_on_every_reload() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "g.toml",
                "[services.web]\ncommand = [\"x\"]\nenv_prefix = \"WEB\"\n",
            )?;
            jail.set_env("WEB_MAX_RETRIES", "3");
            let opts = LoadOptions {
                files: vec!["g.toml".into()],
                state_dir: Some("/tmp/guardian-jail".into()),
                log_level: None,
                log_format: None,
                env: Default::default(),
                not_utf8: Vec::new(),
            };
            let first = load_again(&opts).expect("valid");
            jail.set_env("WEB_MAX_RETRIES", "7");
            let second = load_again(&opts).expect("valid");
            let d = diff(&first, &second);
            assert_eq!(d.updated.len(), 1);
            assert_eq!(d.updated[0].1, vec!["backoff"]);
            assert!(d.restarted.is_empty());
            jail.set_env("WEB_MAX_RETRIES", "ten");
            let err = load_again(&opts).unwrap_err();
            assert!(err.contains("WEB_MAX_RETRIES"), "{err}");
            Ok(())
        });
    }
}
