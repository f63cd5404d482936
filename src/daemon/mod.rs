//! `guardian run`: takes the guardian lock, wires the supervisor, the API and the signal
//! handlers, and owns the ordered shutdown: API → children → PID files → guardian lock.
//! - `reload`: SIGHUP and file changes → debounce → load → the supervisor.
//! - `signals`: SIGTERM, SIGINT and SIGHUP, caught from before the first start.
//! - `systemd`: guardian's own READY, STATUS, RELOADING and WATCHDOG to its manager.
//! - `metrics_files`: the metrics JSON files, rewritten at most once a second.

mod held;
mod listen;
pub mod metrics_files;
mod notify;
pub mod reload;
mod signals;
pub mod systemd;

use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing_subscriber::layer::{Layer, Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload as live};

use crate::api;
use crate::config::alerts::AlertEvent;
use crate::config::{Config, GuardianSpec, LoadOptions, LogFormat};
use crate::error::{FatalError, exit};
use crate::events::EventLog;
use crate::process::output::{DroppedBytes, Followers};
use crate::process::pidfile::{self, GuardianLock};
use crate::process::unix::{Descriptor, UnixSpawner, become_subreaper};
use crate::supervisor::{ReloadRequest, Reply, Supervisor, SupervisorHandle};
use held::HeldSockets;
use listen::Listeners;
use signals::{Caught, Signals};

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
    let caught = Caught::catch()?;
    become_subreaper();
    // A reload reads the same files (as found now) and the same flags, and the environment anew.
    let reload_opts = LoadOptions {
        files: loaded.files.clone(),
        ..opts
    };
    let start = Start::new(loaded.config, reload_opts, logs)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| {
            if let Start::Begun(daemon, ..) = &start {
                daemon.spawner.kill_children();
            }
            FatalError::Io {
                action: "start the async runtime for",
                path: state_dir.clone(),
                source,
            }
        })?;
    let result = runtime.block_on(serve(start, caught));
    drop(lock);
    result
}

/// How far `guardian run` got before its async runtime existed. One value, moved once.
#[allow(clippy::large_enum_variant)]
enum Start {
    /// Bound, and the first turn taken: the first services are starting; what their starts
    /// opened.
    Begun(Daemon, Supervisor<UnixSpawner>, Vec<Descriptor>),
    /// Nothing started: held sockets are bound, and services started, inside the runtime.
    Config(Config, LoadOptions, Option<LogControl>),
}

impl Start {
    /// Before the runtime: the first turn, when the stack allows it (`starts_before_runtime`).
    fn new(
        config: Config,
        reload_opts: LoadOptions,
        logs: Option<LogControl>,
    ) -> Result<Start, FatalError> {
        if !starts_before_runtime(&config) {
            return Ok(Start::Config(config, reload_opts, logs));
        }
        let (daemon, mut supervisor) = Daemon::bind(config, reload_opts, logs, true)?;
        let before = Descriptor::all_open();
        supervisor.first_turn();
        let opened: Vec<Descriptor> = Descriptor::all_open()
            .into_iter()
            .filter(|d| !before.contains(d))
            .collect();
        // Test builds: the runtime made late, so a test can signal guardian before it exists.
        #[cfg(debug_assertions)]
        if let Some(ms) = std::env::var("_GUARDIAN_TEST_EARLY_STALL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            // No runtime to sleep on yet: this thread is all there is.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        Ok(Start::Begun(daemon, supervisor, opened))
    }

    /// Inside the runtime: the daemon bound, and the tasks its first turn asked for running.
    fn bind(self) -> Result<(Daemon, Supervisor<UnixSpawner>), FatalError> {
        let bound = match self {
            Start::Begun(daemon, supervisor, opened) => {
                if let Err(e) = daemon.spawner.start_threads(opened) {
                    tracing::error!(error = %e, "cannot start guardian's output and spawning threads; services are spawned from the runtime's threads, and their output may not be written");
                }
                (daemon, supervisor)
            }
            Start::Config(config, reload_opts, logs) => {
                Daemon::bind(config, reload_opts, logs, false)?
            }
        };
        crate::process::tasks::spawn_queued();
        Ok(bound)
    }
}

/// Whether the first services start before the async runtime is built, which brings their
/// start about a millisecond earlier. Not when the stack holds sockets: they are bound and
/// handed to the spawning thread first, and that thread starts after the runtime (its
/// descriptor table is a copy, and must hold the runtime's).
fn starts_before_runtime(config: &Config) -> bool {
    // Test builds: a test that makes the engine's first turn late needs it in the runtime.
    #[cfg(debug_assertions)]
    if std::env::var_os("_GUARDIAN_TEST_ENGINE_STALL_MS").is_some() {
        return false;
    }
    config.services.values().all(|s| s.sockets.is_empty())
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

/// `guardian run` once the lock is held (and maybe the first services started), step by step.
async fn serve(start: Start, caught: Caught) -> Result<u8, FatalError> {
    let (mut daemon, supervisor) = start.bind()?;
    let mut signals = caught.listen()?;
    let child = signal(SignalKind::child())
        .map_err(|e| FatalError::Message(format!("cannot watch SIGCHLD: {e}")))?;
    let supervised = daemon.supervise(supervisor, child);
    // Test builds: the rest of start-up (sockets, API, watches) made slow, so a test can send
    // a signal while the first services start and the rest is not ready yet.
    #[cfg(debug_assertions)]
    crate::supervisor::stall_for_tests("_GUARDIAN_TEST_STARTUP_STALL_MS").await;
    daemon.listen_for_notify();
    // The API answers with every service from its first request on.
    daemon.handle.first_published().await;
    // ... and with the events the file already held, read once the first starts are on
    // their way (on two cores, reading beside them slowed them).
    daemon.recall_events().await;
    let mut listeners = daemon.serve_api().await?;
    daemon.watch_config();
    daemon.announce();
    let essential = daemon
        .until_stopped(&mut signals, &mut listeners, supervised)
        .await;
    Ok(daemon.stop(listeners, essential).await)
}

/// What `guardian run` holds while it runs.
struct Daemon {
    /// guardian's own settings as last applied.
    current: GuardianSpec,
    /// `stop_services_on_exit` as guardian started.
    keep_services: bool,
    reload_opts: LoadOptions,
    logs: Option<LogControl>,
    events: Arc<EventLog>,
    dropped: Arc<DroppedBytes>,
    followers: Arc<Followers>,
    spawner: Arc<UnixSpawner>,
    sockets: HeldSockets,
    handle: SupervisorHandle,
    alerts: Arc<crate::alerts::Hub>,
    services: usize,
    /// Cancels every task but the API's listeners.
    root: CancellationToken,
    tracker: TaskTracker,
    /// `POST /shutdown`.
    shutdown_requested: CancellationToken,
    reload_tx: mpsc::Sender<ReloadRequest>,
    reload_rx: mpsc::Receiver<ReloadRequest>,
    watcher: Option<reload::FileWatcher>,
    /// The sd_notify socket, bound; read once the runtime runs (`listen_for_notify`).
    notify: Option<std::os::unix::net::UnixDatagram>,
}

impl Daemon {
    /// The event log, the spawner with its output thread, the sd_notify socket, the held
    /// sockets (every one bound before any service starts; one that cannot be is exit 2 and
    /// nothing starts), the supervisor and the alert sinks. `early`: before the runtime, so
    /// without the spawning thread (and the stack holds no sockets).
    fn bind(
        config: Config,
        reload_opts: LoadOptions,
        logs: Option<LogControl>,
        early: bool,
    ) -> Result<(Daemon, Supervisor<UnixSpawner>), FatalError> {
        let g = &config.guardian;
        let events = Arc::new(EventLog::new(
            g.events_file.clone(),
            g.events_max_bytes(),
            g.events_backup_count,
        ));
        let dropped = Arc::new(DroppedBytes::default());
        let followers = Arc::new(Followers::default());
        let spawner = Arc::new(UnixSpawner::new(
            dropped.clone(),
            followers.clone(),
            crate::process::output::color_wanted(),
        ));
        // Bound before any service starts: a READY=1 sent at once is not lost.
        let notify_path = crate::supervisor::notify_socket(&g.state_dir);
        let notify = notify::bind(&notify_path)
            .inspect_err(|e| tracing::error!(path = %notify_path.display(), error = %e, "cannot listen for sd_notify messages; services with ready = \"notify\" will time out"))
            .ok();
        let mut sockets = HeldSockets::new(spawner.clone());
        if !early {
            spawner.start_threads(Vec::new()).map_err(|e| {
                FatalError::Message(format!(
                    "cannot start guardian's output and spawning threads: {e}"
                ))
            })?;
            sockets.bind_new(&config).map_err(FatalError::Sockets)?;
        }
        let seed = u64::from(std::process::id()) ^ (pidfile::unix_now() * 1e6) as u64;
        let current = config.guardian.clone();
        let alert_sinks = config.alerts.clone();
        let services = config.services.len();
        let (supervisor, handle) = Supervisor::new(config, spawner.clone(), events.clone(), seed);
        // Alerts (SPEC §15): every recorded event is offered to the sinks, off the engine.
        let alerts = crate::alerts::Hub::new(current.state_dir.clone(), Some(handle.watch()));
        for e in alerts.configure(&alert_sinks) {
            tracing::error!(error = %e, "an alert sink cannot send");
        }
        let hub = alerts.clone();
        events.observe(move |e| hub.observe(e));
        let (reload_tx, reload_rx) = mpsc::channel(4);
        let daemon = Daemon {
            keep_services: !current.stop_services_on_exit,
            current,
            reload_opts,
            logs,
            events,
            dropped,
            followers,
            spawner,
            sockets,
            handle,
            alerts,
            services,
            root: CancellationToken::new(),
            tracker: TaskTracker::new(),
            shutdown_requested: CancellationToken::new(),
            reload_tx,
            reload_rx,
            watcher: None,
            notify,
        };
        Ok((daemon, supervisor))
    }

    /// Runs the actor, and beside it the reaper (its own task, never behind the main loop:
    /// a reload or a stop waits for exits) and one trim once the first start has settled,
    /// so what starting thousands of services allocated and freed, and the code only starting
    /// ran, stop counting as guardian's memory.
    fn supervise(
        &self,
        supervisor: Supervisor<UnixSpawner>,
        mut child: Signal,
    ) -> tokio::task::JoinHandle<Option<i32>> {
        let reaper = self.spawner.clone();
        tokio::spawn(async move {
            loop {
                if !reaper.reap_children() {
                    let s = reaper.clone();
                    let _ = tokio::task::spawn_blocking(move || s.reap_orphans()).await;
                }
                if child.recv().await.is_none() {
                    break;
                }
            }
        });
        let done = self.tracker.spawn(supervisor.run(self.root.child_token()));
        let mut settling = self.handle.watch();
        tokio::spawn(async move {
            while !systemd::settled(&settling.borrow_and_update()) {
                if settling.changed().await.is_err() {
                    return;
                }
            }
            let _ = tokio::task::spawn_blocking(release_memory).await;
        });
        done
    }

    /// The events the file held before this run, read back off the runtime's threads (a log
    /// at its size limit takes tens of milliseconds to parse).
    async fn recall_events(&self) {
        let events = self.events.clone();
        if events.has_earlier() {
            let _ = tokio::task::spawn_blocking(move || events.recall()).await;
        }
    }

    /// sd_notify (SPEC §14): one datagram socket for every service, bound with the daemon.
    fn listen_for_notify(&mut self) {
        let Some(sock) = self.notify.take() else {
            return;
        };
        match tokio::net::UnixDatagram::from_std(sock) {
            Ok(sock) => {
                self.tracker.spawn(notify::read(
                    sock,
                    self.handle.clone(),
                    self.root.child_token(),
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read sd_notify messages; services with ready = \"notify\" will time out")
            }
        }
    }

    /// The API on its Unix socket and `guardian.api.listen`, with the history it charts.
    async fn serve_api(&self) -> Result<Listeners, FatalError> {
        let shared = listen::Shared {
            handle: self.handle.clone(),
            started: pidfile::unix_now(),
            config_files: (self.reload_opts.files.iter())
                .map(|p| p.display().to_string())
                .collect(),
            events: self.events.clone(),
            on_shutdown: self.shutdown_requested.clone(),
            reload: self.reload_tx.clone(),
            dropped: self.dropped.clone(),
            alerts: self.alerts.clone(),
            followers: self.followers.clone(),
            lockout: Default::default(),
            facts: Default::default(),
            streams: Default::default(),
            history: Default::default(),
        };
        self.tracker.spawn(api::history::run(
            shared.history.clone(),
            shared.facts.clone(),
            self.handle.watch(),
            self.root.child_token(),
        ));
        let socket = socket_path(&self.current.state_dir);
        let api = self.current.api.as_ref();
        Listeners::serve(shared, socket, api, &self.tracker).await
    }

    /// Watches the config files, when `watch_config` is on.
    fn watch_config(&mut self) {
        self.watcher = watch_files(&self.current, &self.reload_opts.files, &self.reload_tx);
    }

    /// Says guardian is up: the metrics files, READY to guardian's own manager, the log and
    /// the `guardian_started` alert.
    fn announce(&self) {
        self.tracker.spawn(metrics_files::run(
            self.handle.watch(),
            self.root.child_token(),
            pidfile::unix_now(),
        ));
        systemd::spawn(&self.handle, &self.tracker, &self.root);
        let pid = std::process::id();
        tracing::info!(state_dir = %self.current.state_dir.display(), pid, "guardian running");
        self.alerts.guardian(
            AlertEvent::GuardianStarted,
            format!("guardian started (pid {pid}, {} services)", self.services),
        );
    }

    /// Answers signals, `POST /shutdown` and reloads until the supervisor has stopped every
    /// service; returns the code of the essential service whose end stopped it (SPEC §14).
    async fn until_stopped(
        &mut self,
        signals: &mut Signals,
        listeners: &mut Listeners,
        supervised: tokio::task::JoinHandle<Option<i32>>,
    ) -> Option<i32> {
        let mut stopping = false;
        let mut supervised = std::pin::pin!(supervised);
        loop {
            tokio::select! {
                _ = signals.term.recv() => self.begin_stop(&mut stopping),
                _ = signals.int.recv() => self.begin_stop(&mut stopping),
                _ = self.shutdown_requested.cancelled(), if !stopping => self.begin_stop(&mut stopping),
                _ = signals.hup.recv() => {
                    let _ = self.reload_tx.try_send(ReloadRequest { trigger: "sighup", reply: None });
                }
                Some(req) = self.reload_rx.recv() => self.reload(req, listeners).await,
                code = &mut supervised => return code.ok().flatten(),
            }
        }
    }

    /// First signal: a graceful shutdown. Second: SIGKILL every service now.
    fn begin_stop(&self, stopping: &mut bool) {
        use crate::process::Spawner;
        if *stopping {
            tracing::warn!("second signal: killing every service now");
            for s in self.handle.snapshot().services {
                if let Some(pid) = s.pid {
                    self.spawner
                        .signal_group(&s.name, pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
            return;
        }
        *stopping = true;
        let keep = self.keep_services;
        tracing::info!(keep_services = keep, "stopping");
        let h = self.handle.clone();
        tokio::spawn(async move { h.shutdown(keep).await });
    }

    /// Loads every layer again and hands it to the supervisor; once applied, guardian's own
    /// settings follow: log level and format, the API listeners, the file watches.
    async fn reload(&mut self, req: ReloadRequest, listeners: &mut Listeners) {
        systemd::reloading();
        let (reply, applied) = reload_once(
            &self.reload_opts,
            &self.handle,
            &mut self.sockets,
            &self.alerts,
            req.trigger,
        )
        .await;
        systemd::reloaded();
        if let Some(new) = applied {
            if let Some(l) = &self.logs {
                l.apply(&new);
            }
            listeners
                .reloaded(self.current.api.as_ref(), new.api.as_ref(), &self.tracker)
                .await;
            if new.watch_config != self.current.watch_config {
                self.watcher = watch_files(&new, &self.reload_opts.files, &self.reload_tx);
            }
            self.current = new;
        }
        if let Some(r) = req.reply {
            let _ = r.send(reply);
        }
    }

    /// The services are stopped: the last alert, then the listeners, the tasks, the watches
    /// and the socket files. The exit code is the essential service's, else 0.
    async fn stop(self, listeners: Listeners, essential: Option<i32>) -> u8 {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        self.alerts.guardian(
            AlertEvent::GuardianStopping,
            match essential {
                Some(code) => {
                    format!("guardian stopped: an essential service ended (exit {code})")
                }
                None => "guardian stopped".to_owned(),
            },
        );
        self.alerts.flush(std::time::Duration::from_secs(10)).await;
        listeners.stop();
        self.root.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.tracker.wait()).await;
        drop(self.watcher);
        listeners.remove_socket();
        let _ = std::fs::remove_file(crate::supervisor::notify_socket(&self.current.state_dir));
        match essential {
            Some(code) => {
                tracing::info!(code, "guardian stopped: an essential service ended");
                // Exit statuses are 0–255; a shell's 128 + signal fits.
                u8::try_from(code.rem_euclid(256)).unwrap_or(1)
            }
            None => {
                tracing::info!("guardian stopped");
                exit::OK
            }
        }
    }
}

/// Gives back what starting or reloading left resident: the heap's free pages, and the pages
/// of guardian's own code (mapped again when used).
fn release_memory() {
    crate::process::unix::release_free_memory();
    crate::process::unix::release_startup_code();
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
    // Loading and diffing a big config leaves freed memory and its code's pages resident.
    let _ = tokio::task::spawn_blocking(release_memory).await;
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
    tx: &mpsc::Sender<ReloadRequest>,
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
