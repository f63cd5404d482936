//! The HTTP API (SPEC §6): always on `{state_dir}/guardian.sock` (0600), and on
//! `guardian.api.listen` when set. Reads the supervisor's snapshot; POSTs become commands.
//! GET is open; POST over TCP needs `Authorization: Bearer <token>`.

pub mod facts;
pub mod history;
pub mod lockout;
pub mod metrics;
mod stall;
pub mod stream;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::policy::health::Status;
use crate::process::pidfile::unix_now;
use crate::supervisor::{Reply, State as SvcState, SupervisorHandle};

/// What every route may read.
pub struct ApiState {
    pub handle: SupervisorHandle,
    pub started: f64,
    pub config_files: Vec<String>,
    /// The recent events, kept in memory by the event log.
    pub events: Arc<crate::events::EventLog>,
    /// `Some` on the TCP listener: POST needs this bearer token.
    pub token: Option<String>,
    pub tcp: bool,
    pub on_shutdown: tokio_util::sync::CancellationToken,
    pub reload: tokio::sync::mpsc::Sender<crate::supervisor::ReloadRequest>,
    /// Output bytes dropped per service, for `guardian_log_dropped_bytes_total`.
    pub dropped: Arc<crate::process::output::DroppedBytes>,
    /// Off loopback every request but the page itself needs the token (SPEC §12).
    pub reads_need_token: bool,
    pub lockout: Arc<lockout::Lockout>,
    /// Process facts of services without resource checks, read at most once a second.
    pub facts: Arc<facts::FactsCache>,
    /// The alert sinks and their last deliveries (SPEC §15).
    pub alerts: Arc<crate::alerts::Hub>,
    /// Live followers of the services' output.
    pub followers: Arc<crate::process::output::Followers>,
    /// Followers connected now (logs and events), at most `stream::MAX_STREAMS`.
    pub streams: Arc<std::sync::atomic::AtomicUsize>,
    /// The last hour of each service, for the page's charts.
    pub history: Arc<history::History>,
}

/// The TCP peer of a request, put in by `serve_tcp`.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

pub fn router(state: Arc<ApiState>) -> Router {
    let app = Router::new();
    // Test builds only: `POST /debug/stall?ms=N` wedges the engine for N ms.
    #[cfg(debug_assertions)]
    let app = app.route("/debug/stall", post(stall));
    app.route("/", get(page))
        .route("/events", get(stream::events))
        .route("/services/{name}/logs", get(stream::service_logs))
        .route("/services/{name}/history", get(service_history))
        .route("/alerts", get(alerts_route))
        .route("/status", get(status))
        .route("/health", get(health))
        .route("/diagnostics", get(diagnostics))
        .route("/metrics", get(metrics_route))
        .route("/services/{name}/events", get(service_events))
        .route("/services/{name}/{action}", post(service_action))
        .route("/shutdown", post(shutdown))
        .route("/reload", post(reload))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(refuse_large_bodies))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// TCP connections served at once; more wait in the kernel's backlog (SPEC §11).
pub const MAX_CONNECTIONS: usize = 256;
/// A request head must arrive within this long; the same bound closes idle keep-alive
/// connections (hyper arms it whenever a connection waits for a head).
pub const HEAD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `app` on a TCP listener until `stop`, within the bounds above. The Unix socket has
/// its own server, so nothing on TCP can starve it.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: tokio_util::sync::CancellationToken,
    tls: Option<Arc<std::sync::RwLock<tokio_rustls::TlsAcceptor>>>,
) {
    use hyper_util::rt::TokioIo;
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("UNWRAP: the semaphore is never closed"),
            _ = stop.cancelled() => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, most likely: let connections end before the next try.
                    tracing::warn!(error = %e, "cannot accept an API connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let (stream, peer) = stream;
        let service = hyper_util::service::TowerToHyperService::new(
            app.clone().layer(axum::Extension(Peer(peer))),
        );
        let stop = stop.clone();
        let tls = tls
            .as_ref()
            .map(|t| t.read().expect("UNWRAP: never poisoned").clone());
        conns.spawn(async move {
            let _permit = permit;
            match tls {
                // The handshake has the same deadline as a request head.
                Some(acceptor) => {
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(HEAD_DEADLINE, acceptor.accept(stream)).await
                    {
                        serve_connection(stall::Stall::new(TokioIo::new(stream)), service, stop)
                            .await;
                    }
                }
                None => {
                    serve_connection(stall::Stall::new(TokioIo::new(stream)), service, stop).await
                }
            }
        });
        while conns.try_join_next().is_some() {}
    }
}

/// One HTTP/1 connection, plain or TLS, until it ends or `stop`.
async fn serve_connection<I, S>(io: I, service: S, stop: tokio_util::sync::CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send,
    S::Future: Send,
    S::ResBody: 'static,
    <S::ResBody as axum::body::HttpBody>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD_DEADLINE)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(HEAD_DEADLINE, conn).await;
        }
    }
}

/// No route takes a body; anything above this is refused before it is read.
pub const BODY_LIMIT: usize = 64 * 1024;

async fn refuse_large_bodies(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request bodies are limited to {BODY_LIMIT} bytes"),
        );
    }
    next.run(req).await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {method} {uri}; see GET /, /status, /health, /diagnostics, /metrics, /events, /alerts, /services/NAME/events, /services/NAME/logs"
        ),
    )
}

/// Every request on TCP passes here: POST always needs the token, GET too off loopback (all
/// but the page, which asks for it); an address that sent 5 wrong tokens within a minute gets
/// 429 for a minute. The Unix socket is guarded by its file mode and is not checked.
async fn guard(
    State(state): State<Arc<ApiState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !state.tcp {
        return next.run(req).await;
    }
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    if read && (req.uri().path() == "/" || !state.reads_need_token) {
        return next.run(req).await;
    }
    let ip = req.extensions().get::<Peer>().map(|p| p.0.ip());
    let now = tokio::time::Instant::now();
    if let Some(ip) = ip
        && state.lockout.locked(ip, now)
    {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many wrong tokens from {ip}; try again in a minute"),
        );
    }
    match authorize(&state, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(r) => {
            // Only a wrong token counts: a request without one (the status page before its
            // token is typed) is told 401 and never locks anyone out.
            if state.token.is_some()
                && r.status() == StatusCode::FORBIDDEN
                && let Some(ip) = ip
                && state.lockout.failed(ip, now)
            {
                tracing::warn!(%ip, "API: {} wrong tokens within a minute; this address is locked out for a minute", lockout::MAX_FAILURES);
            }
            r
        }
    }
}

/// 401 without a token, 403 with a wrong one. Compared in constant time.
fn authorize(state: &ApiState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = &state.token else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "this needs the token over TCP: set guardian.api.token_file, or use the Unix socket (the guardian CLI does)",
        ));
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => Err(error(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>`",
        )),
        Some(g) if constant_time_eq(g.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(error(StatusCode::FORBIDDEN, "wrong token")),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// `GET /status`, written straight from the snapshot (no intermediate JSON tree).
#[derive(serde::Serialize)]
struct StatusDoc<'a> {
    guardian: GuardianFacts<'a>,
    services: Vec<&'a crate::supervisor::ServiceSnapshot>,
}

#[derive(serde::Serialize)]
struct GuardianFacts<'a> {
    pid: u32,
    version: &'static str,
    uptime_seconds: f64,
    config_files: &'a [String],
    config_generation: u64,
    /// Bumped whenever what this document shows changes (`?since=`, `ETag`).
    revision: u64,
}

/// `GET /status?service=NAME&state=STATE&since=REVISION`: only the services asked for (a
/// name matches the instance or every replica of a declared service), and with `since` only
/// those that changed after that revision. A service removed by a reload is not listed by
/// `since`: a changed `config_generation` means "fetch everything again".
#[derive(serde::Deserialize)]
struct StatusFilter {
    service: Option<String>,
    state: Option<String>,
    since: Option<u64>,
}

const STATES: &[&str] = &[
    "starting",
    "running",
    "backoff",
    "stopping",
    "stopped",
    "failed",
    "waiting",
    "blocked",
    "completed",
];

/// `ETag` of a revision: weak, since uptimes in the body move on while nothing changes.
fn etag(revision: u64) -> String {
    format!("W/\"{}-{revision}\"", std::process::id())
}

/// Whether `If-None-Match` names this tag (weak comparison, as RFC 9110 asks for GET).
fn not_modified(headers: &HeaderMap, tag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    headers
        .get_all(axum::http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || bare(t) == bare(tag))
}

async fn status(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<StatusFilter>,
    headers: HeaderMap,
) -> Response {
    if let Some(st) = q.state.as_deref()
        && !STATES.contains(&st)
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown state `{st}`; the states are {}", STATES.join(", ")),
        );
    }
    // Nothing changed: answered before the snapshot is copied.
    let tag = etag(state.handle.revision());
    if not_modified(&headers, &tag) {
        return (StatusCode::NOT_MODIFIED, [(axum::http::header::ETAG, tag)]).into_response();
    }
    let snap = state.handle.snapshot();
    let tag = etag(snap.revision);
    let tag_header = [(axum::http::header::ETAG, tag)];
    let services = snap
        .services
        .iter()
        .filter(|s| {
            q.service
                .as_deref()
                .is_none_or(|n| s.name == n || s.replica_of.as_deref() == Some(n))
                && q.state.as_deref().is_none_or(|st| s.state.as_str() == st)
                && q.since.is_none_or(|r| s.revision > r)
        })
        .collect();
    let doc = StatusDoc {
        guardian: GuardianFacts {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: uptime(&state),
            config_files: &state.config_files,
            config_generation: snap.config_generation,
            revision: snap.revision,
        },
        services,
    };
    (tag_header, json_body(&doc)).into_response()
}

/// `GET /health`, written straight from the snapshot.
#[derive(serde::Serialize)]
struct HealthDoc<'a> {
    status: &'static str,
    timestamp: f64,
    uptime_seconds: f64,
    version: &'static str,
    pid: u32,
    #[serde(serialize_with = "by_name")]
    services: Vec<(&'a str, ServiceHealth<'a>)>,
}

#[derive(serde::Serialize)]
struct ServiceHealth<'a> {
    status: &'static str,
    state: SvcState,
    checks: &'a [crate::health::CheckResult],
    metrics: HealthMetrics<'a>,
}

#[derive(serde::Serialize)]
struct HealthMetrics<'a> {
    restarts: u64,
    uptime_seconds: Option<f64>,
    process: &'a Option<crate::health::resources::ProcessInfo>,
    checks_performed: u64,
    checks_failed: u64,
    window: &'a crate::policy::health::Aggregate,
}

/// A JSON object keyed by service name, in the snapshot's order.
fn by_name<S: serde::Serializer, T: serde::Serialize>(
    entries: &[(&str, T)],
    ser: S,
) -> Result<S::Ok, S::Error> {
    ser.collect_map(entries.iter().map(|(k, v)| (k, v)))
}

async fn health(State(state): State<Arc<ApiState>>) -> Response {
    let snap = with_process_facts(&state.facts, state.handle.snapshot()).await;
    let mut all_ok = true;
    let services = snap
        .services
        .iter()
        .map(|s| {
            let up = s.state == SvcState::Running;
            // A task that ran to completion did its job.
            if s.autostart && s.state != SvcState::Completed && !(up && s.health == Status::Healthy)
            {
                all_ok = false;
            }
            let d = &s.detail;
            let entry = ServiceHealth {
                status: if up { s.health.as_str() } else { "down" },
                state: s.state,
                checks: &d.checks,
                metrics: HealthMetrics {
                    restarts: s.restarts,
                    uptime_seconds: s.uptime_seconds,
                    process: &d.process,
                    checks_performed: d.checks_performed,
                    checks_failed: d.checks_failed,
                    window: &d.summary,
                },
            };
            (s.name.as_str(), entry)
        })
        .collect();
    let doc = HealthDoc {
        status: if all_ok { "healthy" } else { "unhealthy" },
        timestamp: unix_now(),
        uptime_seconds: uptime(&state),
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        services,
    };
    let code = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, json_body(&doc)).into_response()
}

/// A JSON response written straight from `doc`.
fn json_body(doc: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(doc).expect("UNWRAP: snapshots always serialize");
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Services without checks are not polled; their process facts are read now, on request.
async fn with_process_facts(
    cache: &Arc<facts::FactsCache>,
    mut snap: crate::supervisor::Snapshot,
) -> crate::supervisor::Snapshot {
    let wanted: Vec<(usize, i32)> = snap
        .services
        .iter()
        .enumerate()
        .filter(|(_, s)| s.detail.process.is_none() && s.state == SvcState::Running)
        .filter_map(|(i, s)| Some((i, s.pid?)))
        .collect();
    if wanted.is_empty() {
        return snap;
    }
    let pids: Vec<i32> = wanted.iter().map(|(_, p)| *p).collect();
    let read = cache.get(&pids).await;
    for ((i, _), info) in wanted.into_iter().zip(read) {
        snap.services[i].detail.process = info;
    }
    snap
}

fn uptime(state: &ApiState) -> f64 {
    (unix_now() - state.started).max(0.0)
}

async fn metrics_route(State(state): State<Arc<ApiState>>) -> Response {
    let body = metrics::render(
        with_process_facts(&state.facts, state.handle.snapshot()).await,
        uptime(&state),
        state.dropped.totals(),
        state.lockout.failures_total(),
        state.handle.notify_dropped(),
        state.alerts.counts(),
    );
    (
        [(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        body,
    )
        .into_response()
}

/// `GET /diagnostics`, written straight from the snapshot.
#[derive(serde::Serialize)]
struct DiagnosticsDoc<'a> {
    guardian: DiagGuardian<'a>,
    #[serde(serialize_with = "by_name")]
    services: Vec<(&'a str, ServiceDiag<'a>)>,
}

#[derive(serde::Serialize)]
struct DiagGuardian<'a> {
    pid: u32,
    version: &'static str,
    uptime_seconds: f64,
    config_generation: u64,
    reloads_ok: u64,
    reloads_failed: u64,
    last_reload_error: &'a Option<String>,
}

#[derive(serde::Serialize)]
struct ServiceDiag<'a> {
    server_info: ServerInfo<'a>,
    health_monitor: HealthMonitor<'a>,
    recovery_manager: RecoveryManager<'a>,
    process_info: Option<ProcessFacts>,
}

#[derive(serde::Serialize)]
struct ServerInfo<'a> {
    state: SvcState,
    pid: Option<i32>,
    port: Option<u16>,
    adopted: bool,
    uptime_seconds: Option<f64>,
    start_time: Option<f64>,
    restarts: u64,
    total_failures: u64,
    last_failure: Option<f64>,
    last_exit: &'a Option<String>,
    last_error: &'a Option<String>,
}

#[derive(serde::Serialize)]
struct HealthMonitor<'a> {
    status: Status,
    checks_performed: u64,
    checks_failed: u64,
    last_check: Option<f64>,
    checks: &'a [crate::health::CheckResult],
    window: &'a crate::policy::health::Aggregate,
}

#[derive(serde::Serialize)]
struct RecoveryManager<'a> {
    circuit_breaker: crate::policy::breaker::BreakerState,
    breaker_reopens_in: Option<f64>,
    pending_action: Option<crate::policy::recovery::Action>,
    recoveries_total: u64,
    recoveries_successful: u64,
    recoveries_failed: u64,
    by_action: &'a [crate::supervisor::RecoveryCount],
}

#[derive(serde::Serialize)]
struct ProcessFacts {
    cpu_percent: Option<f64>,
    memory_mb: f64,
    file_descriptors: u64,
    thread_count: u64,
    processes: u32,
}

async fn diagnostics(State(state): State<Arc<ApiState>>) -> Response {
    let snap = with_process_facts(&state.facts, state.handle.snapshot()).await;
    let services = snap
        .services
        .iter()
        .map(|s| {
            let d = &s.detail;
            let count = |ok: Option<bool>| -> u64 {
                d.recoveries
                    .iter()
                    .filter(|r| ok.is_none_or(|ok| r.success == ok))
                    .map(|r| r.count)
                    .sum()
            };
            let entry = ServiceDiag {
                server_info: ServerInfo {
                    state: s.state,
                    pid: s.pid,
                    port: s.port,
                    adopted: s.adopted,
                    uptime_seconds: s.uptime_seconds,
                    start_time: d.start_time,
                    restarts: s.restarts,
                    total_failures: d.total_failures,
                    last_failure: d.last_failure,
                    last_exit: &s.last_exit,
                    last_error: &s.last_error,
                },
                health_monitor: HealthMonitor {
                    status: s.health,
                    checks_performed: d.checks_performed,
                    checks_failed: d.checks_failed,
                    last_check: d.last_check,
                    checks: &d.checks,
                    window: &d.summary,
                },
                recovery_manager: RecoveryManager {
                    circuit_breaker: s.circuit_breaker,
                    breaker_reopens_in: d.breaker_reopens_in,
                    pending_action: d.pending_recovery,
                    recoveries_total: count(None),
                    recoveries_successful: count(Some(true)),
                    recoveries_failed: count(Some(false)),
                    by_action: &d.recoveries,
                },
                process_info: d.process.as_ref().map(|p| ProcessFacts {
                    cpu_percent: p.cpu_percent,
                    memory_mb: p.memory_mb,
                    file_descriptors: p.file_descriptors,
                    thread_count: p.thread_count,
                    processes: p.processes,
                }),
            };
            (s.name.as_str(), entry)
        })
        .collect();
    json_body(&DiagnosticsDoc {
        guardian: DiagGuardian {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: uptime(&state),
            config_generation: snap.config_generation,
            reloads_ok: snap.reloads_ok,
            reloads_failed: snap.reloads_failed,
            last_reload_error: &snap.last_reload_error,
        },
        services,
    })
}

#[derive(serde::Deserialize)]
struct Tail {
    n: Option<usize>,
}

/// The status page: one self-contained document, compiled into the binary.
async fn page() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        include_str!("page.html"),
    )
        .into_response()
}

/// The last alert deliveries, oldest first, with their result (SPEC §15).
/// `GET /services/NAME/history`: the last hour, minute by minute (the page's charts).
async fn service_history(State(state): State<Arc<ApiState>>, Path(name): Path<String>) -> Response {
    let snap = state.handle.snapshot();
    let measured = history::measure(&state.facts, history::to_measure(&snap)).await;
    let now = unix_now() as u64;
    state.history.fold(&snap, &measured, now);
    match state.history.of(&name, now) {
        Some(minutes) => Json(json!({
            "service": name,
            "minutes": minutes,
            "samples_resources": snap.services.iter().any(|s| s.name == name
                && (s.detail.process.is_some() || s.detail.metrics_file.is_some())),
        }))
        .into_response(),
        None => unknown_service(&snap, &name),
    }
}

/// 404 naming the services there are.
fn unknown_service(snap: &crate::supervisor::Snapshot, name: &str) -> Response {
    let names: Vec<&str> = snap.services.iter().map(|s| s.name.as_str()).collect();
    error(
        StatusCode::NOT_FOUND,
        format!("no service named `{name}`; services: {}", names.join(", ")),
    )
}

async fn alerts_route(State(state): State<Arc<ApiState>>) -> Response {
    Json(json!(state.alerts.recent())).into_response()
}

/// The recent events of one service, newest last.
async fn service_events(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(q): Query<Tail>,
) -> Response {
    if !state
        .handle
        .snapshot()
        .services
        .iter()
        .any(|s| s.name == name)
    {
        return error(StatusCode::NOT_FOUND, format!("no service named `{name}`"));
    }
    let n = q.n.unwrap_or(50);
    Json(json!(state.events.recent(Some(&name), n))).into_response()
}

async fn service_action(
    State(state): State<Arc<ApiState>>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let reply = match action.as_str() {
        "start" => state.handle.start(&name).await,
        "stop" => state.handle.stop(&name).await,
        "restart" => state.handle.restart(&name).await,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("unknown action `{other}`; use start, stop or restart"),
            );
        }
    };
    reply_response(reply)
}

fn reply_response(reply: Reply) -> Response {
    match reply {
        Reply::Done(msg) => Json(json!({"ok": true, "message": msg})).into_response(),
        Reply::NoSuchService(name) => {
            error(StatusCode::NOT_FOUND, format!("no service named `{name}`"))
        }
        Reply::Refused(msg) => error(StatusCode::CONFLICT, msg),
    }
}

/// Reloads and answers with the diff (200), or the error that kept the old config (422).
async fn reload(State(state): State<Arc<ApiState>>) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let req = crate::supervisor::ReloadRequest {
        trigger: "command",
        reply: Some(tx),
    };
    if state.reload.send(req).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "guardian is stopping");
    }
    match rx.await {
        Ok(Reply::Done(text)) => Json(json!({"ok": true, "message": text})).into_response(),
        Ok(Reply::Refused(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Ok(other) => reply_response(other),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "guardian is stopping"),
    }
}

#[cfg(debug_assertions)]
async fn stall(
    State(state): State<Arc<ApiState>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, u64>>,
) -> Response {
    let ms = q.get("ms").copied().unwrap_or(1000).min(60_000);
    state
        .handle
        .stall(std::time::Duration::from_millis(ms))
        .await;
    Json(json!({"ok": true, "message": format!("the engine stalls for {ms} ms")})).into_response()
}

async fn shutdown(State(state): State<Arc<ApiState>>) -> Response {
    state.on_shutdown.cancel();
    Json(json!({"ok": true, "message": "guardian is stopping"})).into_response()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
