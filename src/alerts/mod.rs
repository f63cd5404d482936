//! Alerts (SPEC §15): the events that page a human, sent to each `[alerts.NAME]` sink off
//! the engine. Recording an event only offers it here: a bounded queue per sink takes it or
//! drops it (counted), and one task per sink delivers, with `repeat_after` and 3 retries. A
//! dead, slow or hanging sink never delays supervision.

mod deliver;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::alerts::{AlertEvent, AlertSpec};
use crate::events::Event;
use crate::supervisor::Snapshot;
pub use deliver::{Body, Sender};

/// Alerts waiting for one sink; beyond this they are dropped and counted.
const QUEUE: usize = 64;
/// Deliveries kept for `/alerts`, the page and `top`.
const RECENT: usize = 20;
/// The waits before the 3 retries of a failed delivery.
const RETRIES: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// One delivery's outcome, as `/alerts` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub sink: String,
    pub event: AlertEvent,
    pub service: Option<String>,
    pub time: String,
    /// sent | failed | dropped | suppressed
    pub result: &'static str,
    pub detail: String,
}

struct Sink {
    spec: AlertSpec,
    tx: mpsc::Sender<Body>,
}

/// Every sink, the state that turns events into alerts, and the counters.
pub struct Hub {
    state_dir: PathBuf,
    host: String,
    /// std Mutex: held to offer one alert or to swap the sinks, never across .await.
    sinks: Mutex<BTreeMap<String, Sink>>,
    /// Per service, the problems alerted and not yet recovered from.
    open: Mutex<HashMap<String, BTreeSet<AlertEvent>>>,
    shared: Arc<Shared>,
    snapshot: Option<tokio::sync::watch::Receiver<Snapshot>>,
}

/// What the sink tasks report into.
#[derive(Default)]
struct Shared {
    /// (sink, result) → count, for `guardian_alerts_total`.
    counts: Mutex<BTreeMap<(String, &'static str), u64>>,
    recent: Mutex<VecDeque<Delivery>>,
    /// Alerts queued and not yet sent, failed or suppressed (`flush` waits for them).
    pending: std::sync::atomic::AtomicUsize,
}

impl Shared {
    fn note(&self, sink: &str, body: &Body, result: &'static str, detail: String) {
        *self
            .counts
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held")
            .entry((sink.to_owned(), result))
            .or_default() += 1;
        if result != "sent" {
            tracing::warn!(sink, event = body.event.as_str(), service = ?body.service, result, detail, "alert");
        }
        let mut recent = self
            .recent
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held");
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(Delivery {
            sink: sink.to_owned(),
            event: body.event,
            service: body.service.clone(),
            time: body.time.clone(),
            result,
            detail,
        });
    }
}

impl Hub {
    /// A hub with no sink yet (`configure` adds them). `snapshot` fills in each alert's state
    /// and exit code when it is sent.
    pub fn new(
        state_dir: PathBuf,
        snapshot: Option<tokio::sync::watch::Receiver<Snapshot>>,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            state_dir,
            host: hostname(),
            sinks: Mutex::default(),
            open: Mutex::default(),
            shared: Arc::default(),
            snapshot,
        })
    }

    /// Applies the config's sinks (at start and on every reload): an unchanged sink keeps
    /// its queue and task; a changed or new one starts afresh; a removed one ends once its
    /// queue is sent. Errors name the sink (its key file or CA file could not be read).
    pub fn configure(&self, alerts: &BTreeMap<String, AlertSpec>) -> Vec<String> {
        let mut errors = Vec::new();
        let mut sinks = self
            .sinks
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held");
        sinks.retain(|name, s| alerts.get(name) == Some(&s.spec));
        for (name, spec) in alerts {
            if sinks.contains_key(name) {
                continue;
            }
            match Sender::new(spec.clone(), &self.state_dir) {
                Ok(sender) => {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    // Alert sinks are set up before the first starts, which may come before
                    // the runtime: their tasks then start with it.
                    crate::process::tasks::spawn(run_sink(
                        name.clone(),
                        sender,
                        rx,
                        self.shared.clone(),
                        self.snapshot.clone(),
                    ));
                    sinks.insert(
                        name.clone(),
                        Sink {
                            spec: spec.clone(),
                            tx,
                        },
                    );
                }
                Err(e) => errors.push(format!("alerts.{name}: {e}")),
            }
        }
        errors
    }

    /// An event just recorded: if it is one that alerts, it is offered to every sink that
    /// wants it. Never waits.
    pub fn observe(&self, e: &Event) {
        let Some(event) = alert_of(e) else {
            return;
        };
        let mut resolves = Vec::new();
        {
            let mut open = self
                .open
                .lock()
                .expect("UNWRAP: never poisoned: no panic while held");
            if event.is_problem() {
                open.entry(e.service.clone()).or_default().insert(event);
            }
            // `recovered` only after a problem: a ready after a plain restart is no news.
            let recovering = match e.action.as_str() {
                "ready" => true,
                "health_changed" => e.health_status.as_deref() == Some("healthy"),
                _ => false,
            };
            if recovering {
                match open.remove(&e.service) {
                    Some(set) => resolves = set.into_iter().collect(),
                    None => return,
                }
            }
        }
        let message = e
            .error_message
            .clone()
            .or_else(|| e.detail.clone())
            .unwrap_or_else(|| format!("{} {}", e.service, event.as_str()));
        let message = message.lines().next().unwrap_or("").to_owned();
        self.offer(Body {
            event,
            service: Some(e.service.clone()),
            state: None,
            message,
            exit_code: None,
            time: e.timestamp_iso.clone(),
            host: self.host.clone(),
            guardian_pid: std::process::id(),
            suppressed: 0,
            resolves,
        });
    }

    /// An alert about guardian itself (started, stopping, a refused reload).
    pub fn guardian(&self, event: AlertEvent, message: String) {
        self.offer(Body {
            event,
            service: None,
            state: None,
            message,
            exit_code: None,
            time: crate::process::pidfile::iso(crate::process::pidfile::unix_now()),
            host: self.host.clone(),
            guardian_pid: std::process::id(),
            suppressed: 0,
            resolves: Vec::new(),
        });
    }

    fn offer(&self, body: Body) {
        let sinks = self
            .sinks
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held");
        for (name, s) in sinks.iter() {
            if !s.spec.wants(body.event, body.service.as_deref()) {
                continue;
            }
            self.shared.pending.fetch_add(1, Ordering::Relaxed);
            if s.tx.try_send(body.clone()).is_err() {
                self.shared.pending.fetch_sub(1, Ordering::Relaxed);
                self.shared
                    .note(name, &body, "dropped", "the sink's queue is full".into());
            }
        }
    }

    /// Waits until every queued alert is sent, failed or suppressed, at most `limit` (at
    /// shutdown: `guardian_stopping` leaves before guardian does).
    pub async fn flush(&self, limit: Duration) {
        let end = Instant::now() + limit;
        while self.shared.pending.load(Ordering::Relaxed) > 0 && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `guardian_alerts_total{sink,result}`.
    pub fn counts(&self) -> Vec<(String, &'static str, u64)> {
        self.shared
            .counts
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held")
            .iter()
            .map(|((s, r), n)| (s.clone(), *r, *n))
            .collect()
    }

    /// The last deliveries, oldest first.
    pub fn recent(&self) -> Vec<Delivery> {
        self.shared
            .recent
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held")
            .iter()
            .cloned()
            .collect()
    }
}

/// Which alert a recorded event is, if any.
fn alert_of(e: &Event) -> Option<AlertEvent> {
    Some(match e.action.as_str() {
        "failed" => AlertEvent::Failed,
        "watchdog" => AlertEvent::Watchdog,
        "circuit_breaker" if !e.success => AlertEvent::BreakerOpen,
        "circuit_breaker" if e.detail.as_deref().is_some_and(|d| d.starts_with("closed")) => {
            AlertEvent::BreakerClosed
        }
        "health_changed" if e.health_status.as_deref() == Some("critical") => AlertEvent::Unhealthy,
        "health_changed" if e.health_status.as_deref() == Some("healthy") => AlertEvent::Recovered,
        "ready" => AlertEvent::Recovered,
        "restart_scheduled" if e.trigger == "crash" => AlertEvent::Restarted,
        _ => return None,
    })
}

/// One sink's task: `repeat_after`, then delivery with 3 retries, until its queue closes.
async fn run_sink(
    name: String,
    sender: Sender,
    mut rx: mpsc::Receiver<Body>,
    shared: Arc<Shared>,
    snapshot: Option<tokio::sync::watch::Receiver<Snapshot>>,
) {
    // (service, event) → when last sent, and how many were held back since.
    let mut last: HashMap<(Option<String>, AlertEvent), (Instant, u64)> = HashMap::new();
    let mut seq = 0u64;
    while let Some(mut body) = rx.recv().await {
        let key = (body.service.clone(), body.event);
        let now = Instant::now();
        if body.event != AlertEvent::Test
            && let Some((at, held)) = last.get_mut(&key)
            && now.duration_since(*at) < sender.spec.repeat_after
        {
            *held += 1;
            shared.note(&name, &body, "suppressed", "repeat_after".into());
            shared.pending.fetch_sub(1, Ordering::Relaxed);
            continue;
        }
        body.suppressed = last.get(&key).map_or(0, |(_, n)| *n);
        last.insert(key, (now, 0));
        if let (Some(s), Some(snap)) = (&body.service, &snapshot) {
            let snap = snap.borrow();
            if let Some(svc) = snap.services.iter().find(|x| &x.name == s) {
                body.state = Some(svc.state.as_str().to_owned());
                body.exit_code = svc.exit_code;
            }
        }
        seq += 1;
        match send_with_retries(&sender, &body, seq).await {
            Ok(said) => shared.note(&name, &body, "sent", said),
            Err(why) => shared.note(&name, &body, "failed", format!("{why} (after 3 retries)")),
        }
        shared.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// This machine's name, for the alert's `host`.
fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_str()
        .map_or_else(|_| "localhost".into(), str::to_owned)
}

/// `guardian alert test NAME`: one test alert through the sink, from this process, with the
/// same retries; the receiver's answer, or why it failed.
pub async fn test(
    name: &str,
    spec: &AlertSpec,
    state_dir: &std::path::Path,
) -> Result<String, String> {
    let sender = Sender::new(spec.clone(), state_dir)?;
    let body = Body {
        event: AlertEvent::Test,
        service: None,
        state: None,
        message: format!("a test alert from `guardian alert test {name}`"),
        exit_code: None,
        time: crate::process::pidfile::iso(crate::process::pidfile::unix_now()),
        host: hostname(),
        guardian_pid: std::process::id(),
        suppressed: 0,
        resolves: Vec::new(),
    };
    send_with_retries(&sender, &body, 0).await
}

/// One attempt, then up to 3 retries after `RETRIES`' waits, until one is delivered.
async fn send_with_retries(sender: &Sender, body: &Body, seq: u64) -> Result<String, String> {
    let mut result = sender.send(body, seq).await;
    for wait in RETRIES {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(wait).await;
        result = sender.send(body, seq).await;
    }
    result
}
