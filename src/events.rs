//! The event log: one JSON line per lifecycle or recovery event, appended to `events_file`
//! (SPEC §5), and one structured tracing line. File IO.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::pidfile::{iso, unix_now};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub timestamp: f64,
    pub timestamp_iso: String,
    pub service: String,
    /// start, ready, exit, restart_scheduled, failed, adopted, stop, stopped, port_conflict, …
    pub action: String,
    /// lifecycle, crash, command, startup, shutdown, health_check, …
    pub trigger: String,
    pub health_status: Option<String>,
    pub success: bool,
    pub duration_ms: Option<f64>,
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Event {
    pub fn new(service: &str, action: &str, trigger: &str, success: bool) -> Self {
        let now = unix_now();
        Event {
            timestamp: (now * 1000.0).round() / 1000.0,
            timestamp_iso: iso(now),
            service: service.to_owned(),
            action: action.to_owned(),
            trigger: trigger.to_owned(),
            health_status: None,
            success,
            duration_ms: None,
            error_message: None,
            pid: None,
            detail: None,
        }
    }

    pub fn pid(mut self, pid: i32) -> Self {
        self.pid = Some(pid);
        self
    }

    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }

    pub fn error(mut self, e: impl Into<String>) -> Self {
        self.error_message = Some(e.into());
        self
    }
}

/// Appends events; a failure to write is logged and never stops supervision.
pub struct EventLog {
    /// std Mutex: held only for one append, never across .await.
    inner: Mutex<Sink>,
}

struct Sink {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl EventLog {
    pub fn new(path: PathBuf) -> Self {
        EventLog {
            inner: Mutex::new(Sink { path, file: None }),
        }
    }

    fn sink(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.inner
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held")
    }

    /// A reload changed `events_file`: later events go to the new file.
    pub fn set_path(&self, path: &Path) {
        let mut sink = self.sink();
        if sink.path != path {
            sink.path = path.to_owned();
            sink.file = None;
        }
    }

    pub fn record(&self, event: &Event) {
        if event.success {
            tracing::info!(service = %event.service, action = %event.action, trigger = %event.trigger, pid = ?event.pid, detail = ?event.detail, "event");
        } else {
            tracing::warn!(service = %event.service, action = %event.action, trigger = %event.trigger, pid = ?event.pid, error = ?event.error_message, detail = ?event.detail, "event");
        }
        let mut line = serde_json::to_vec(event).expect("UNWRAP: events always serialize");
        line.push(b'\n');
        let mut sink = self.sink();
        let Sink { path, file } = &mut *sink;
        if file.is_none() {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&*path)
            {
                Ok(f) => *file = Some(f),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot open the events file");
                    return;
                }
            }
        }
        if let Some(f) = file.as_mut()
            && let Err(e) = f.write_all(&line)
        {
            tracing::error!(path = %path.display(), error = %e, "cannot append to the events file");
        }
    }
}

/// The last `n` events in the file (of one service, or of all), oldest first.
pub fn tail(path: &Path, service: Option<&str>, n: usize) -> Vec<Event> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut out = std::collections::VecDeque::with_capacity(n + 1);
    for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
        if let Ok(e) = serde_json::from_str::<Event>(&line)
            && service.is_none_or(|s| e.service == s)
        {
            out.push_back(e);
            if out.len() > n {
                out.pop_front();
            }
        }
    }
    out.into()
}
