//! guardian's own API listeners (SPEC §10): always its Unix socket, and `guardian.api.listen`
//! (TCP; a token, and TLS off loopback) when set. A reload that changes `guardian.api` binds
//! the TCP side again; any other reload reads its certificate files again.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiState};
use crate::config::ApiSpec;
use crate::error::FatalError;

/// What every listener's routes share; `state` gives each listener its own view of it.
pub(super) struct Shared {
    pub handle: crate::supervisor::SupervisorHandle,
    pub started: f64,
    pub config_files: Vec<String>,
    pub events: Arc<crate::events::EventLog>,
    pub on_shutdown: CancellationToken,
    pub reload: tokio::sync::mpsc::Sender<crate::supervisor::ReloadRequest>,
    pub dropped: Arc<crate::process::output::DroppedBytes>,
    pub alerts: Arc<crate::alerts::Hub>,
    pub followers: Arc<crate::process::output::Followers>,
    pub lockout: Arc<api::lockout::Lockout>,
    pub facts: Arc<api::facts::FactsCache>,
    pub streams: Arc<std::sync::atomic::AtomicUsize>,
    pub history: Arc<api::history::History>,
}

impl Shared {
    fn state(&self, tcp: bool, token: Option<String>, reads_need_token: bool) -> Arc<ApiState> {
        Arc::new(ApiState {
            reads_need_token,
            lockout: self.lockout.clone(),
            facts: self.facts.clone(),
            handle: self.handle.clone(),
            started: self.started,
            config_files: self.config_files.clone(),
            events: self.events.clone(),
            token,
            tcp,
            on_shutdown: self.on_shutdown.clone(),
            reload: self.reload.clone(),
            dropped: self.dropped.clone(),
            alerts: self.alerts.clone(),
            followers: self.followers.clone(),
            streams: self.streams.clone(),
            history: self.history.clone(),
        })
    }
}

/// The TLS acceptor of the TCP API, replaced in place when a reload reads new certificates.
type TlsHandle = Arc<std::sync::RwLock<tokio_rustls::TlsAcceptor>>;

/// The listeners while guardian runs.
pub(super) struct Listeners {
    shared: Shared,
    /// Stops every listener.
    token: CancellationToken,
    /// Stops the TCP listener alone (a reload that moves it).
    tcp_token: CancellationToken,
    tls: Option<TlsHandle>,
    socket: PathBuf,
}

impl Listeners {
    /// Serves on the Unix socket `socket` (we hold the guardian lock, so a file there is
    /// stale), and on `api.listen` when set.
    pub(super) async fn serve(
        shared: Shared,
        socket: PathBuf,
        api: Option<&ApiSpec>,
        tracker: &TaskTracker,
    ) -> Result<Listeners, FatalError> {
        let _ = std::fs::remove_file(&socket);
        let listener =
            tokio::net::UnixListener::bind(&socket).map_err(|source| FatalError::Io {
                action: "listen on",
                path: socket.clone(),
                source,
            })?;
        let _ = std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600));
        let token = CancellationToken::new();
        let app = api::router(shared.state(false, None, false));
        let t = token.clone();
        tracker.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(t.cancelled_owned())
                .await;
        });
        let tcp_token = token.child_token();
        let tls = bind_tcp(api, tracker, &tcp_token, &shared).await?;
        Ok(Listeners {
            shared,
            token,
            tcp_token,
            tls,
            socket,
        })
    }

    /// After an applied reload: a changed `guardian.api` is bound again (on failure the TCP
    /// API is off until the next reload); an unchanged one reads its TLS files again, so a
    /// renewed certificate at the same path applies to new connections without a restart.
    pub(super) async fn reloaded(
        &mut self,
        old: Option<&ApiSpec>,
        new: Option<&ApiSpec>,
        tracker: &TaskTracker,
    ) {
        if new != old {
            self.tcp_token.cancel();
            self.tcp_token = self.token.child_token();
            match bind_tcp(new, tracker, &self.tcp_token, &self.shared).await {
                Ok(t) => self.tls = t,
                Err(e) => {
                    tracing::error!(error = %e, "the new guardian.api.listen could not be bound; the TCP API is off until the next reload")
                }
            }
        } else if let (Some(live), Some(api)) = (&self.tls, new)
            && let (Some(cert), Some(key)) = (&api.tls_cert, &api.tls_key)
        {
            match crate::config::host::tls_config(cert, key) {
                Ok(c) => {
                    *live.write().expect("UNWRAP: never poisoned") =
                        tokio_rustls::TlsAcceptor::from(Arc::new(c))
                }
                Err(e) => {
                    tracing::error!(error = %e, "the TLS files could not be read again; the old certificate stays")
                }
            }
        }
    }

    /// Stops accepting, on every listener.
    pub(super) fn stop(&self) {
        self.token.cancel();
    }

    /// Removes the Unix socket's file, once its server has stopped.
    pub(super) fn remove_socket(&self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Serves the API on `guardian.api.listen`, if set, until `token` is cancelled.
async fn bind_tcp(
    api: Option<&ApiSpec>,
    tracker: &TaskTracker,
    token: &CancellationToken,
    shared: &Shared,
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
    let app = api::router(shared.state(true, secret, !addr.ip().is_loopback()));
    tracker.spawn(api::serve_tcp(tcp, app, token.clone(), tls.clone()));
    Ok(tls)
}
