//! The event log: one JSON line per lifecycle or recovery event, appended to `events_file`
//! (SPEC §5) and rotated by size (SPEC §11), one structured tracing line, and the recent
//! events of each service in memory for the API. File IO.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::process::log::RotatingLog;
use crate::process::pidfile::{iso, unix_now};

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

/// Recent events kept in memory per service: what `/events` and `guardian events` answer
/// from, so their cost never depends on the size of the file.
pub const RECENT_PER_SERVICE: usize = 100;

/// A live follower of the events, each with its number.
pub type Live = tokio::sync::broadcast::Receiver<(u64, Event)>;

/// What is told of each recorded event.
type Observer = Box<dyn Fn(&Event) + Send + Sync>;

/// Appends events to a size-rotated file and keeps the recent ones in memory; a failure to
/// write is logged and never stops supervision.
pub struct EventLog {
    /// std Mutex: held only for one append or one read of the ring, never across .await.
    inner: Mutex<Sink>,
    /// The file as it was opened, and its length then: what `recall` reads back (never the
    /// lines this run appends).
    earlier: Mutex<Option<(std::fs::File, u64)>>,
    /// Told of every event once it is written (the alert hub); it must not wait.
    observer: std::sync::OnceLock<Observer>,
    /// Live followers (`GET /events?follow=1`): each event with its number.
    live: tokio::sync::broadcast::Sender<(u64, Event)>,
}

struct Sink {
    log: RotatingLog,
    max_bytes: u64,
    backups: u32,
    recent: Recent,
}

/// The recent events of each service, oldest first, each tagged with its order of arrival
/// across services.
#[derive(Default)]
struct Recent {
    by_service: HashMap<String, VecDeque<(u64, Event)>>,
    seq: u64,
}

impl Recent {
    fn remember(&mut self, event: Event) {
        self.seq += 1;
        let ring = self.by_service.entry(event.service.clone()).or_default();
        if ring.len() == RECENT_PER_SERVICE {
            ring.pop_front();
        }
        ring.push_back((self.seq, event));
    }

    /// The events in the first `len` bytes of `file` (one JSON line each; a line that is not
    /// an event is skipped): the newest `RECENT_PER_SERVICE` of each service, numbered in the
    /// file's order. Read newest first, so that only an event that is kept is parsed whole (a
    /// log at its size limit holds tens of thousands), a block at a time.
    fn read(file: std::fs::File, len: u64) -> Recent {
        #[derive(Deserialize)]
        struct Of<'a> {
            #[serde(borrow)]
            service: std::borrow::Cow<'a, str>,
        }
        let mut kept_of: HashMap<String, usize> = HashMap::new();
        let mut kept = Vec::new();
        for line in Backwards::new(file, len) {
            let service = service_of(&line)
                .map(std::borrow::Cow::Borrowed)
                .or_else(|| {
                    serde_json::from_slice::<Of>(&line)
                        .ok()
                        .map(|of| of.service)
                });
            if service.is_none_or(|s| kept_of.get(&*s) >= Some(&RECENT_PER_SERVICE)) {
                continue;
            }
            let Ok(e) = serde_json::from_slice::<Event>(&line) else {
                continue;
            };
            let n = kept_of.entry(e.service.clone()).or_default();
            if *n < RECENT_PER_SERVICE {
                *n += 1;
                kept.push(e);
            }
        }
        let mut recent = Recent::default();
        for e in kept.into_iter().rev() {
            recent.remember(e);
        }
        recent
    }
}

/// The service of an event line as guardian writes it (`"service":"NAME"`, NAME without an
/// escape), found without parsing the line: a log at its size limit holds tens of thousands
/// of lines, and only the newest of each service are parsed. `None` for any other shape,
/// which is then parsed. The key cannot match inside a string value, where every quote is
/// escaped; what is kept is counted by the parsed event's own service.
fn service_of(line: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"service\":\"";
    let rest = &line[memchr::memmem::find(line, KEY)? + KEY.len()..];
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    if rest[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

/// The lines of a file's first `len` bytes, last first, read from the end a block at a time:
/// memory holds one block and one line, whatever the file's size. A read error ends it.
struct Backwards {
    file: std::fs::File,
    /// Where in the file `rest` begins.
    at: u64,
    /// Read and not yet handed out: a block's lines, the first of them maybe cut.
    rest: Vec<u8>,
}

impl Backwards {
    const BLOCK: u64 = 256 * 1024;

    fn new(file: std::fs::File, len: u64) -> Self {
        Backwards {
            file,
            at: len,
            rest: Vec::new(),
        }
    }
}

impl Iterator for Backwards {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = memchr::memrchr(b'\n', &self.rest) {
                let line = self.rest.split_off(end + 1);
                self.rest.truncate(end);
                return Some(line);
            }
            if self.at == 0 {
                return (!self.rest.is_empty()).then(|| std::mem::take(&mut self.rest));
            }
            let n = Self::BLOCK.min(self.at);
            let mut block = vec![0; n as usize];
            std::os::unix::fs::FileExt::read_exact_at(&self.file, &mut block, self.at - n).ok()?;
            self.at -= n;
            block.append(&mut self.rest);
            self.rest = block;
        }
    }
}

impl EventLog {
    /// Opens the log at `path`. What the file already holds is read back by `recall`, which
    /// `guardian run` calls once the first services are on their way: a log at its size limit
    /// takes tens of milliseconds to parse, and no service waits for that.
    pub fn new(path: PathBuf, max_bytes: u64, backups: u32) -> Self {
        let earlier = std::fs::File::open(&path)
            .and_then(|f| {
                let len = f.metadata()?.len();
                Ok((f, len))
            })
            .ok()
            .filter(|(_, len)| *len > 0);
        EventLog {
            inner: Mutex::new(Sink {
                log: RotatingLog::new(path, max_bytes, backups),
                max_bytes,
                backups,
                recent: Recent::default(),
            }),
            earlier: Mutex::new(earlier),
            observer: std::sync::OnceLock::new(),
            live: tokio::sync::broadcast::channel(256).0,
        }
    }

    /// Whether the file held events when the log was opened, for `recall` to read back.
    pub fn has_earlier(&self) -> bool {
        self.earlier().is_some()
    }

    /// Fills the memory of recent events with what the file held when the log was opened
    /// (the newest file only: older events are in the rotated ones), ahead of the events
    /// recorded since, which are numbered again after them. Call it once, before anything
    /// follows the log: the numbers of the events recorded until then change. Blocking IO.
    pub fn recall(&self) {
        let Some((file, len)) = self.earlier().take() else {
            return;
        };
        let mut recent = Recent::read(file, len);
        let mut sink = self.sink();
        let mut since: Vec<(u64, Event)> = std::mem::take(&mut sink.recent.by_service)
            .into_values()
            .flatten()
            .collect();
        since.sort_unstable_by_key(|(seq, _)| *seq);
        for (_, e) in since {
            recent.remember(e);
        }
        sink.recent = recent;
    }

    fn earlier(&self) -> std::sync::MutexGuard<'_, Option<(std::fs::File, u64)>> {
        self.earlier
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held")
    }

    fn sink(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.inner
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held")
    }

    /// A reload changed the events settings: later events go to the new file and rotate by
    /// the new size.
    pub fn configure(&self, path: &Path, max_bytes: u64, backups: u32) {
        let mut sink = self.sink();
        if sink.log.path() != path || sink.max_bytes != max_bytes || sink.backups != backups {
            sink.log = RotatingLog::new(path.to_owned(), max_bytes, backups);
            sink.max_bytes = max_bytes;
            sink.backups = backups;
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
        {
            let mut sink = self.sink();
            sink.log.write(&line);
            sink.recent.remember(event.clone());
            if self.live.receiver_count() > 0 {
                let _ = self.live.send((sink.recent.seq, event.clone()));
            }
        }
        if let Some(f) = self.observer.get() {
            f(event);
        }
    }

    /// Sets what is told of every recorded event (once; later calls are ignored).
    pub fn observe(&self, f: impl Fn(&Event) + Send + Sync + 'static) {
        let _ = self.observer.set(Box::new(f));
    }

    /// A live follower of every event from now on, and what it missed: the events still in
    /// memory numbered above `after` (a follower back with `Last-Event-ID`), else the last
    /// `n`; oldest first, each with its number.
    pub fn follow(&self, after: Option<u64>, n: usize) -> (Live, Vec<(u64, Event)>) {
        let sink = self.sink();
        let rx = self.live.subscribe();
        let after = after.unwrap_or(sink.recent.seq.saturating_sub(n as u64));
        let mut missed: Vec<(u64, Event)> = sink
            .recent
            .by_service
            .values()
            .flatten()
            .filter(|(seq, _)| *seq > after)
            .cloned()
            .collect();
        missed.sort_unstable_by_key(|(seq, _)| *seq);
        (rx, missed)
    }

    /// The last `n` events (of one service, or of all), oldest first, from memory.
    pub fn recent(&self, service: Option<&str>, n: usize) -> Vec<Event> {
        let sink = self.sink();
        let mut picked: Vec<&(u64, Event)> = match service {
            Some(name) => sink
                .recent
                .by_service
                .get(name)
                .into_iter()
                .flatten()
                .collect(),
            None => sink.recent.by_service.values().flatten().collect(),
        };
        picked.sort_unstable_by_key(|(seq, _)| *seq);
        let skip = picked.len().saturating_sub(n);
        picked[skip..].iter().map(|(_, e)| e.clone()).collect()
    }
}

/// The last `n` events in the file (of one service, or of all), oldest first, for readers
/// without a running guardian (`doctor`). Reads at most the file's last MiB.
pub fn tail(path: &Path, service: Option<&str>, n: usize) -> Vec<Event> {
    const WINDOW: usize = 1024 * 1024;
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let mut read = 0;
    let mut out: Vec<Event> = Backwards::new(f, len)
        .take_while(|line| {
            read += line.len() + 1;
            read <= WINDOW
        })
        .filter_map(|line| serde_json::from_slice::<Event>(&line).ok())
        .filter(|e| service.is_none_or(|s| e.service == s))
        .take(n)
        .collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_answers_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let log = EventLog::new(path.clone(), 2_000, 2);
        for i in 0..60 {
            let svc = if i % 2 == 0 { "a" } else { "b" };
            log.record(&Event::new(svc, "start", "lifecycle", true).detail(format!("{i}")));
        }
        assert!(dir.path().join("events.jsonl.1").exists());
        assert!(dir.path().join("events.jsonl.2").exists());
        assert!(!dir.path().join("events.jsonl.3").exists());
        assert!(std::fs::metadata(&path).unwrap().len() <= 2_000);

        let a = log.recent(Some("a"), 3);
        let details: Vec<_> = a.iter().map(|e| e.detail.clone().unwrap()).collect();
        assert_eq!(details, ["54", "56", "58"]);
        let all = log.recent(None, 4);
        let details: Vec<_> = all.iter().map(|e| e.detail.clone().unwrap()).collect();
        assert_eq!(details, ["56", "57", "58", "59"]);
        assert!(log.recent(Some("nobody"), 3).is_empty());

        // A new log over the same file remembers what that file holds.
        let again = EventLog::new(path.clone(), 2_000, 2);
        again.recall();
        let last = again.recent(Some("b"), 1);
        assert_eq!(last[0].detail.as_deref(), Some("59"));
        assert_eq!(tail(&path, Some("b"), 1)[0].detail.as_deref(), Some("59"));
    }

    #[test]
    fn recalled_events_come_before_those_recorded_since_and_are_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let before = EventLog::new(path.clone(), 1 << 30, 1);
        for i in 0..RECENT_PER_SERVICE + 5 {
            before.record(&Event::new("a", "exit", "crash", false).detail(format!("old {i}")));
        }
        before.record(&Event::new("b", "start", "lifecycle", true).detail("old b"));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"not an event\n"))
            .unwrap();

        let log = EventLog::new(path.clone(), 1 << 30, 1);
        assert!(log.has_earlier());
        // Recorded (and appended to the same file) while the earlier ones are not read yet.
        log.record(&Event::new("a", "start", "lifecycle", true).detail("new a"));
        log.record(&Event::new("c", "start", "lifecycle", true).detail("new c"));
        assert_eq!(log.recent(None, usize::MAX).len(), 2);
        log.recall();
        assert!(!log.has_earlier());

        let details =
            |v: Vec<Event>| -> Vec<String> { v.into_iter().map(|e| e.detail.unwrap()).collect() };
        let a = details(log.recent(Some("a"), usize::MAX));
        assert_eq!(a.len(), RECENT_PER_SERVICE);
        assert_eq!(a[0], "old 6");
        assert_eq!(a[RECENT_PER_SERVICE - 2..], ["old 104", "new a"]);
        assert_eq!(
            details(log.recent(None, 4)),
            ["old 104", "old b", "new a", "new c"]
        );
        // Numbered in that order: a follower back after "old b" missed the two new ones.
        let (_, all) = log.follow(Some(0), 0);
        let old_b = all
            .iter()
            .find(|(_, e)| e.detail.as_deref() == Some("old b"));
        let (_, missed) = log.follow(old_b.map(|(n, _)| *n), 0);
        assert_eq!(
            details(missed.into_iter().map(|(_, e)| e).collect()),
            ["new a", "new c"]
        );
        // A second call reads nothing again.
        log.recall();
        assert_eq!(log.recent(Some("c"), usize::MAX).len(), 1);
    }

    #[test]
    fn lines_are_read_back_last_first_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines");
        let mut lines: Vec<Vec<u8>> = (0..3000)
            .map(|i| format!("line {i} {}", "x".repeat(i % 300)).into_bytes())
            .collect();
        // Longer than a block, and an empty line.
        lines.insert(1500, vec![b'y'; Backwards::BLOCK as usize + 10]);
        lines.insert(10, Vec::new());
        let mut text = lines.join(&b'\n');
        text.extend_from_slice(b"\ncut and not noted");
        let noted = text.len() - b"cut and not noted".len();
        std::fs::write(&path, &text).unwrap();
        let back: Vec<Vec<u8>> =
            Backwards::new(std::fs::File::open(&path).unwrap(), noted as u64).collect();
        // The file ends with a newline: the first line read back is the empty one after it.
        assert_eq!(back[0], b"");
        let mut back = back[1..].to_vec();
        back.reverse();
        assert!(
            back == lines,
            "{} lines back of {}",
            back.len(),
            lines.len()
        );
    }

    #[test]
    fn a_line_s_service_is_found_without_parsing_only_in_the_shape_guardian_writes() {
        let written = serde_json::to_string(
            &Event::new("web", "exit", "crash", false).detail(r#"said "service":"evil""#),
        )
        .unwrap();
        let cases: [(&str, Option<&str>); 7] = [
            (&written, Some("web")),
            (r#"{"service":"api","action":"start"}"#, Some("api")),
            // A value that reads like the key, before it.
            (
                r#"{"detail":"said \"service\":\"evil\"","service":"api"}"#,
                Some("api"),
            ),
            // Any other shape is left to the parser.
            (r#"{"service": "api"}"#, None),
            (r#"{"service":"a\"pi"}"#, None),
            (r#"{"service":"api"#, None),
            ("not an event", None),
        ];
        for (line, want) in cases {
            assert_eq!(service_of(line.as_bytes()), want, "{line}");
        }
    }

    #[test]
    fn lines_of_another_shape_are_read_back_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut text = String::new();
        for i in 0..RECENT_PER_SERVICE + 3 {
            let e = Event::new("a", "exit", "crash", false).detail(format!("{i}"));
            text.push_str(&serde_json::to_string(&e).unwrap());
            text.push('\n');
        }
        // Written by hand: spaces after the colons, and an escape in a name.
        let spaced = serde_json::to_string_pretty(
            &Event::new("b", "start", "lifecycle", true).detail("spaced"),
        )
        .unwrap()
        .replace('\n', "");
        text.push_str(&spaced);
        text.push('\n');
        let escaped =
            serde_json::to_string(&Event::new("c\"d", "start", "lifecycle", true)).unwrap();
        text.push_str(&escaped);
        text.push_str("\nnot an event\n");
        std::fs::write(&path, &text).unwrap();
        let log = EventLog::new(path, 1 << 30, 1);
        log.recall();
        let a = log.recent(Some("a"), usize::MAX);
        assert_eq!(a.len(), RECENT_PER_SERVICE);
        assert_eq!(a.last().unwrap().detail.as_deref(), Some("102"));
        assert_eq!(a[0].detail.as_deref(), Some("3"));
        let b = log.recent(Some("b"), usize::MAX);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].detail.as_deref(), Some("spaced"));
        assert_eq!(log.recent(Some("c\"d"), usize::MAX).len(), 1);
    }

    #[test]
    fn memory_per_service_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path().join("e.jsonl"), 1 << 30, 1);
        for _ in 0..RECENT_PER_SERVICE * 3 {
            log.record(&Event::new("a", "exit", "crash", false));
        }
        assert_eq!(log.recent(Some("a"), usize::MAX).len(), RECENT_PER_SERVICE);
    }
}
