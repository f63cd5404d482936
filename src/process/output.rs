//! Service output, bounded whatever a service writes (SPEC §11). The engine's async workers
//! only do non-blocking pipe reads into a buffer of at most one line piece and hand the bytes
//! to one writer thread through a bounded queue; that thread does every blocking write (log
//! files, rotation, echo). A full queue never stalls a reader: the bytes are dropped and
//! counted per service (`guardian_log_dropped_bytes_total`), so the pipe is always drained and
//! guardian's memory stays bounded by `QUEUE_BYTES` (and `QUEUE_CHUNKS` chunks).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, Weak};

use tokio::net::unix::pipe;

use super::log::RotatingLog;

/// A line longer than this is cut into pieces of this size, each written as its own line.
pub const LINE_MAX: usize = 64 * 1024;
/// Bytes waiting for the writer thread, at most: 64 lines of the longest kind. Bounded in
/// bytes, not in chunks, so that many services' first lines at once (a stack's start: each
/// pump finds its service's first lines waiting, and sends them as one chunk) all fit.
const QUEUE_BYTES: usize = 64 * LINE_MAX;
/// Chunks waiting, at most (each a few dozen bytes besides its lines).
const QUEUE_CHUNKS: usize = 4096;
/// Log files kept open at once: the writer closes the one opened longest ago beyond this, so
/// a thousand services that all write cost this many descriptors, not a thousand.
pub const MAX_OPEN_LOGS: usize = 64;

/// Bytes dropped per service: the queue was full, or the log could not be written.
#[derive(Default)]
pub struct DroppedBytes {
    /// std Mutex: held only to find or insert a counter, never across .await.
    by_service: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

impl DroppedBytes {
    pub fn counter(&self, service: &str) -> Arc<AtomicU64> {
        self.by_service
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held")
            .entry(service.to_owned())
            .or_default()
            .clone()
    }

    /// Every service that has an output counter, with its total.
    pub fn totals(&self) -> Vec<(String, u64)> {
        self.by_service
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held")
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Batches of lines a followed service's channel holds; a follower further behind is told
/// how many lines it lost.
const FOLLOW_DEPTH: usize = 256;
/// Recent lines kept per followed service, so a follower that reconnects with the number of
/// the last line it saw (`Last-Event-ID`) gets what it missed; older ones are counted as lost.
pub const REPLAY_BYTES: usize = 64 * 1024;

/// Live followers of services' output (`GET /services/NAME/logs?follow=1`): per service a
/// broadcast channel and a replay ring, made when the first follower subscribes and kept while
/// guardian runs (so a follower can come back). A service nobody ever followed costs one
/// atomic load per batch; a followed one at most `REPLAY_BYTES` more.
#[derive(Default)]
pub struct Followers {
    /// std Mutex: held to find or insert a service's point, never across .await.
    by_service: Mutex<BTreeMap<String, Arc<Follow>>>,
}

/// One service's follow point, shared by every instance's sink.
#[derive(Default)]
pub struct Follow {
    /// std Mutex: held for one offer or one subscribe, never across .await.
    live: Mutex<Option<Live>>,
    active: std::sync::atomic::AtomicBool,
}

struct Live {
    tx: tokio::sync::broadcast::Sender<Lines>,
    /// The number of the next line (counted since the first follower came).
    next: u64,
    ring: VecDeque<Lines>,
    ring_bytes: usize,
}

/// Whole lines as the pump read them, the first one numbered `first`.
#[derive(Clone, Debug)]
pub struct Lines {
    pub first: u64,
    pub bytes: Arc<[u8]>,
}

impl Lines {
    pub fn count(&self) -> u64 {
        self.bytes.iter().filter(|b| **b == b'\n').count() as u64
    }

    /// Each line (without its `\n`, nor a `\r` before it) with its number.
    pub fn numbered(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let whole = self.bytes.strip_suffix(b"\n").unwrap_or(&self.bytes);
        whole
            .split(|b| *b == b'\n')
            .enumerate()
            .map(|(i, l)| (self.first + i as u64, l.strip_suffix(b"\r").unwrap_or(l)))
    }
}

/// A new follower: its receiver, the number the next line gets, and, when it resumes, the
/// lines it missed that are still kept and how many it missed that are not.
pub struct Subscription {
    pub rx: tokio::sync::broadcast::Receiver<Lines>,
    pub next: u64,
    pub replay: Vec<Lines>,
    pub lost: u64,
}

impl Followers {
    /// The service's point (made on first use).
    pub fn point(&self, service: &str) -> Arc<Follow> {
        self.by_service
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held")
            .entry(service.to_owned())
            .or_default()
            .clone()
    }

    /// A new follower of `service`'s lines; `after` is the last line a returning follower saw.
    pub fn subscribe(&self, service: &str, after: Option<u64>) -> Subscription {
        let point = self.point(service);
        let mut live = point
            .live
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held");
        let live = live.get_or_insert_with(|| Live {
            tx: tokio::sync::broadcast::channel(FOLLOW_DEPTH).0,
            next: 0,
            ring: VecDeque::new(),
            ring_bytes: 0,
        });
        point.active.store(true, Ordering::Relaxed);
        let mut sub = Subscription {
            rx: live.tx.subscribe(),
            next: live.next,
            replay: Vec::new(),
            lost: 0,
        };
        // A number from before this guardian's count (or from another guardian) resumes
        // nothing: the follower gets the tail like a new one.
        if let Some(after) = after.filter(|a| *a < live.next) {
            let kept_from = live.ring.front().map_or(live.next, |l| l.first);
            sub.lost = kept_from.saturating_sub(after + 1);
            sub.replay = live
                .ring
                .iter()
                .filter(|l| l.first + l.count() > after + 1)
                .cloned()
                .collect();
        }
        sub
    }
}

impl Follow {
    /// Whole lines just read: to the followers and the replay ring, once anyone followed.
    fn offer(&self, whole: &[u8]) {
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        let mut live = self
            .live
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held");
        let Some(live) = live.as_mut() else { return };
        let lines = Lines {
            first: live.next,
            bytes: Arc::from(whole),
        };
        live.next += lines.count();
        live.ring_bytes += whole.len();
        live.ring.push_back(lines.clone());
        while live.ring_bytes > REPLAY_BYTES && live.ring.len() > 1 {
            if let Some(old) = live.ring.pop_front() {
                live.ring_bytes -= old.bytes.len();
            }
        }
        // No receiver now is fine: the ring keeps the lines for one that comes back.
        let _ = live.tx.send(lines);
    }
}

/// Where one instance's output goes: its log, and guardian's stdout/stderr when echoing.
pub struct Sink {
    /// std Mutex: only the writer thread locks it, so it is never contended.
    log: Mutex<RotatingLog>,
    echo: Option<String>,
    dropped: Arc<AtomicU64>,
    /// `ready = "log:…"`: the pattern, and what fires at its first match.
    ready_line: Option<ReadyLine>,
    /// The service's live followers.
    follow: Option<Arc<Follow>>,
}

struct ReadyLine {
    pattern: super::LinePattern,
    /// std Mutex: taken once, at the match (both pumps of the instance share it).
    fire: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Sink {
    pub fn new(log: RotatingLog, echo: Option<String>, dropped: Arc<AtomicU64>) -> Arc<Self> {
        Self::watching(log, echo, dropped, None, None).0
    }

    /// A sink that also watches its lines for `pattern` (`ready = "log:…"`): the receiver
    /// fires at the first match.
    pub fn watching(
        log: RotatingLog,
        echo: Option<String>,
        dropped: Arc<AtomicU64>,
        pattern: Option<super::LinePattern>,
        follow: Option<Arc<Follow>>,
    ) -> (Arc<Self>, Option<tokio::sync::oneshot::Receiver<()>>) {
        let (ready_line, rx) = match pattern {
            Some(pattern) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let fire = Mutex::new(Some(tx));
                (Some(ReadyLine { pattern, fire }), Some(rx))
            }
            None => (None, None),
        };
        let sink = Arc::new(Sink {
            log: Mutex::new(log),
            echo,
            dropped,
            ready_line,
            follow,
        });
        (sink, rx)
    }

    /// Looks for the readiness pattern in these whole lines, until it has matched once.
    fn watch_lines(&self, lines: &[u8]) {
        let Some(r) = &self.ready_line else { return };
        let mut fire = r
            .fire
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held");
        if fire.is_none() {
            return;
        }
        let matched = lines
            .split(|b| *b == b'\n')
            .any(|l| r.pattern.0.is_match(&String::from_utf8_lossy(l)));
        if matched && let Some(tx) = fire.take() {
            let _ = tx.send(());
        }
    }

    fn drop_bytes(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }
}

struct Chunk {
    sink: Arc<Sink>,
    /// Whole lines, each ending in `\n`.
    bytes: Vec<u8>,
    stderr: bool,
}

/// The queue to the writer thread; cloned into every pump.
#[derive(Clone)]
pub struct Writer {
    tx: Sender<Chunk>,
    queued: Arc<Queued>,
    /// The queue's other end until the thread takes it (`start_thread`).
    rx: Arc<Mutex<Option<Receiver<Chunk>>>>,
}

/// What waits in the queue: chunks and their bytes.
#[derive(Default)]
struct Queued {
    chunks: AtomicUsize,
    bytes: AtomicUsize,
}

impl Queued {
    /// Counts `len` bytes in if the bounds allow them.
    fn admit(&self, len: usize) -> bool {
        let chunks = self.chunks.fetch_add(1, Ordering::AcqRel);
        let bytes = self.bytes.fetch_add(len, Ordering::AcqRel);
        if chunks < QUEUE_CHUNKS && bytes + len <= QUEUE_BYTES {
            return true;
        }
        self.out(len);
        false
    }

    fn out(&self, len: usize) {
        self.chunks.fetch_sub(1, Ordering::AcqRel);
        self.bytes.fetch_sub(len, Ordering::AcqRel);
    }
}

impl Default for Writer {
    /// The queue; what is sent waits (within its bounds) until `start_thread`.
    fn default() -> Writer {
        let (tx, rx) = channel();
        Writer {
            tx,
            queued: Arc::default(),
            rx: Arc::new(Mutex::new(Some(rx))),
        }
    }
}

impl Writer {
    /// The queue, and its writer thread started.
    pub fn start() -> std::io::Result<Writer> {
        let writer = Writer::default();
        writer.start_thread()?;
        Ok(writer)
    }

    /// Starts the writer thread, once; it ends when every `Writer` clone is gone.
    pub fn start_thread(&self) -> std::io::Result<()> {
        let Some(rx) = self
            .rx
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held")
            .take()
        else {
            return Ok(());
        };
        let queued = self.queued.clone();
        std::thread::Builder::new()
            .name("guardian-output".into())
            .spawn(move || write_all(rx, &queued))?;
        Ok(())
    }

    fn send(&self, chunk: Chunk) {
        let len = chunk.bytes.len();
        if !self.queued.admit(len) {
            return chunk.sink.drop_bytes(len);
        }
        if let Err(e) = self.tx.send(chunk) {
            self.queued.out(len);
            e.0.sink.drop_bytes(len);
        }
    }

    /// Reads the pipe to its end, cutting lines at `LINE_MAX`, and queues whole lines.
    /// Waits for readiness holding no buffer: bytes are read into the worker thread's one
    /// scratch buffer, and only an unfinished line is kept per pump (usually nothing), so a
    /// thousand quiet services hold no read buffers at all.
    pub async fn pump(&self, stream: pipe::Receiver, sink: Arc<Sink>, stderr: bool) {
        let mut partial = Vec::new();
        loop {
            if stream.readable().await.is_err() {
                break;
            }
            let ended = SCRATCH.with_borrow_mut(|scratch| {
                // A few reads per wake-up, then back to the scheduler: a flood on one pipe
                // never starves the other services' pumps.
                for _ in 0..16 {
                    match stream.try_read(scratch) {
                        Ok(0) => return true,
                        Ok(n) => self.feed(&mut partial, &scratch[..n], &sink, stderr),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => return true,
                    }
                }
                false
            });
            if ended {
                break;
            }
        }
        if !partial.is_empty() {
            partial.push(b'\n');
            self.send(Chunk {
                sink,
                bytes: partial,
                stderr,
            });
        }
    }

    /// Queues the whole lines of `partial` + `data`, keeping the unfinished end in `partial`;
    /// a line piece that reaches `LINE_MAX` is cut there and leaves as its own line.
    fn feed(&self, partial: &mut Vec<u8>, mut data: &[u8], sink: &Arc<Sink>, stderr: bool) {
        let send = |bytes: Vec<u8>| {
            self.send(Chunk {
                sink: sink.clone(),
                bytes,
                stderr,
            })
        };
        while !data.is_empty() {
            let room = LINE_MAX - partial.len();
            let (now, later) = data.split_at(room.min(data.len()));
            data = later;
            match now.iter().rposition(|b| *b == b'\n') {
                Some(last) => {
                    let mut whole = Vec::with_capacity(partial.len() + last + 1);
                    whole.extend_from_slice(partial);
                    whole.extend_from_slice(&now[..=last]);
                    sink.watch_lines(&whole);
                    if let Some(f) = &sink.follow {
                        f.offer(&whole);
                    }
                    send(whole);
                    // A partial line is rare; its buffer is not kept once it is out.
                    *partial = now[last + 1..].to_vec();
                }
                None => partial.extend_from_slice(now),
            }
            if partial.len() == LINE_MAX {
                let mut piece = std::mem::take(partial);
                piece.push(b'\n');
                send(piece);
            }
        }
    }
}

thread_local! {
    /// Each worker thread's one read buffer, shared by every pump that runs on it.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; LINE_MAX]);
}

/// The prefix of each echoed line: `NAME | `, in one of six colours picked by the name when
/// `color` is on.
pub fn prefix(service: &str, color: bool) -> String {
    if !color {
        return format!("{service} | ");
    }
    let hue = service
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 6;
    use anstyle::AnsiColor::*;
    let style = [Red, Green, Yellow, Blue, Magenta, Cyan][hue as usize].on_default();
    format!("{style}{service} |{style:#} ")
}

/// Colour on stdout, decided as anstream decides it for every clap tool: never with
/// `NO_COLOR`, always with `CLICOLOR_FORCE`, else only on a terminal.
pub fn color_wanted() -> bool {
    anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
}

/// The last `n` lines of a log, from its rotated file too when the current one has fewer.
/// Reads backwards in blocks: the cost is the lines asked for, not the file's size.
pub fn tail(path: &std::path::Path, n: usize) -> Vec<Vec<u8>> {
    let mut out = tail_of(path, n);
    if out.len() < n {
        let mut older = tail_of(&rotated(path), n - out.len());
        older.append(&mut out);
        out = older;
    }
    out
}

fn rotated(path: &std::path::Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    p.into()
}

fn tail_of(path: &std::path::Path, n: usize) -> Vec<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    if n == 0 {
        return Vec::new();
    }
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let Ok(len) = f.seek(SeekFrom::End(0)) else {
        return Vec::new();
    };
    const BLOCK: u64 = 64 * 1024;
    let mut at = len;
    let mut buf: Vec<u8> = Vec::new();
    // One more newline than lines wanted (the last line ends with one).
    while at > 0 && buf.iter().filter(|b| **b == b'\n').count() <= n {
        let start = at.saturating_sub(BLOCK);
        let mut block = vec![0u8; (at - start) as usize];
        if f.seek(SeekFrom::Start(start)).is_err() || f.read_exact(&mut block).is_err() {
            break;
        }
        block.extend_from_slice(&buf);
        buf = block;
        at = start;
    }
    let mut lines: Vec<Vec<u8>> = buf.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    if lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    // The first piece may be the end of a line cut by the block boundary.
    if at > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    lines.split_off(skip)
}

fn write_all(rx: Receiver<Chunk>, queued: &Queued) {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    // Sinks whose log file is open, oldest opening first (a sink gone with its service has
    // closed its file already).
    let mut open: VecDeque<Weak<Sink>> = VecDeque::new();
    while let Ok(chunk) = rx.recv() {
        let Chunk {
            sink,
            bytes,
            stderr,
        } = chunk;
        queued.out(bytes.len());
        if let Some(prefix) = &sink.echo {
            let to: &mut dyn Write = if stderr { &mut err } else { &mut out };
            let mut framed = Vec::with_capacity(bytes.len() + 16 * prefix.len());
            for line in bytes.split_inclusive(|b| *b == b'\n') {
                framed.extend_from_slice(prefix.as_bytes());
                framed.extend_from_slice(line);
            }
            let _ = to.write_all(&framed);
        }
        let (written, opened) = {
            let mut log = sink
                .log
                .lock()
                .expect("UNWRAP: never poisoned: no panic while held");
            let was_open = log.is_open();
            (log.write(&bytes), !was_open && log.is_open())
        };
        if !written {
            sink.drop_bytes(bytes.len());
        }
        if opened {
            open.push_back(Arc::downgrade(&sink));
            while open.len() > MAX_OPEN_LOGS {
                if let Some(oldest) = open.pop_front().and_then(|w| w.upgrade()) {
                    oldest
                        .log
                        .lock()
                        .expect("UNWRAP: never poisoned: no panic while held")
                        .close();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_reads_the_last_lines_across_blocks_and_the_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let long: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, &long).unwrap();
        let t = tail(&log, 3);
        assert_eq!(
            t,
            vec![
                b"line 19997".to_vec(),
                b"line 19998".to_vec(),
                b"line 19999".to_vec()
            ]
        );
        assert_eq!(tail(&log, 10_000).len(), 10_000);
        assert_eq!(tail(&log, 10_000)[0], b"line 10000".to_vec());
        std::fs::write(&log, "new 1\nnew 2\n").unwrap();
        std::fs::write(rotated(&log), "old 1\nold 2\n").unwrap();
        let t = tail(&log, 3);
        assert_eq!(
            t,
            vec![b"old 2".to_vec(), b"new 1".to_vec(), b"new 2".to_vec()]
        );
        assert!(tail(&dir.path().join("none.log"), 5).is_empty());
        assert!(tail(&log, 0).is_empty());
    }

    async fn pumped(input: Vec<u8>) -> (Vec<u8>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let dropped = Arc::new(AtomicU64::new(0));
        let sink = Sink::new(
            RotatingLog::new(path.clone(), u64::MAX, 0),
            None,
            dropped.clone(),
        );
        let writer = Writer::start().unwrap();
        let (mut tx, rx) = tokio::net::unix::pipe::pipe().unwrap();
        let feeder = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // Small writes, so that lines and long pieces span reads.
            for piece in input.chunks(7000) {
                tx.write_all(piece).await.unwrap();
            }
        });
        writer.pump(rx, sink.clone(), false).await;
        feeder.await.unwrap();
        drop(writer);
        // The writer thread drops its hold on the sink once it has written the last chunk.
        while Arc::strong_count(&sink) > 1 {
            std::thread::yield_now();
        }
        (
            std::fs::read(&path).unwrap_or_default(),
            dropped.load(Ordering::Relaxed),
        )
    }

    #[tokio::test]
    async fn lines_pass_whole_and_long_lines_are_cut_at_64_kib() {
        let (log, dropped) = pumped(b"one\ntwo\nthree".to_vec()).await;
        assert_eq!(log, b"one\ntwo\nthree\n");
        assert_eq!(dropped, 0);

        let long = vec![b'x'; LINE_MAX * 2 + 10];
        let (log, _) = pumped(long).await;
        let lines: Vec<&[u8]> = log.split(|b| *b == b'\n').collect();
        assert_eq!(
            lines.iter().map(|l| l.len()).collect::<Vec<_>>(),
            vec![LINE_MAX, LINE_MAX, 10, 0]
        );
    }

    /// `n` sinks logging to DIR/0.log, DIR/1.log, …, their drops counted in `dropped`.
    fn sinks_in(dir: &std::path::Path, n: usize, dropped: &Arc<AtomicU64>) -> Vec<Arc<Sink>> {
        (0..n)
            .map(|i| {
                Sink::new(
                    RotatingLog::new(dir.join(format!("{i}.log")), u64::MAX, 0),
                    None,
                    dropped.clone(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_thousand_services_first_lines_at_once_are_all_written() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::start().unwrap();
        let dropped = Arc::new(AtomicU64::new(0));
        let sinks = sinks_in(dir.path(), 1000, &dropped);
        // All at once, as the pumps of a stack that started before the runtime send them.
        for (i, sink) in sinks.iter().enumerate() {
            writer.feed(
                &mut Vec::new(),
                format!("first {i}\n").as_bytes(),
                sink,
                false,
            );
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        for i in 0..1000 {
            let path = dir.path().join(format!("{i}.log"));
            while std::fs::read_to_string(&path).unwrap_or_default() != format!("first {i}\n") {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} never held its line ({} bytes dropped)",
                    path.display(),
                    dropped.load(Ordering::Relaxed)
                );
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_queue_admits_up_to_its_bytes_and_chunks_then_drops_until_drained() {
        let q = Queued::default();
        assert!(q.admit(QUEUE_BYTES - 10));
        assert!(q.admit(10), "exactly at the bound");
        assert!(!q.admit(1), "one byte over");
        q.out(10);
        assert!(q.admit(10), "room again once the writer took a chunk");
        q.out(10);
        q.out(QUEUE_BYTES - 10);
        for _ in 0..QUEUE_CHUNKS {
            assert!(q.admit(1));
        }
        assert!(!q.admit(1), "one chunk over");
        assert_eq!(q.chunks.load(Ordering::Relaxed), QUEUE_CHUNKS);
        assert_eq!(q.bytes.load(Ordering::Relaxed), QUEUE_CHUNKS);
    }

    #[tokio::test]
    async fn no_more_than_max_open_logs_stay_open_and_a_closed_log_is_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::start().unwrap();
        let sinks = sinks_in(dir.path(), MAX_OPEN_LOGS + 10, &Arc::default());
        for round in 0..2 {
            for (i, sink) in sinks.iter().enumerate() {
                writer.feed(
                    &mut Vec::new(),
                    format!("line {round}\n").as_bytes(),
                    sink,
                    false,
                );
                // One at a time: each log's file is opened and closed in turn.
                let path = dir.path().join(format!("{i}.log"));
                let want = (0..=round)
                    .map(|r| format!("line {r}\n"))
                    .collect::<String>();
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
                while std::fs::read_to_string(&path).unwrap_or_default() != want {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{} never held {want:?}",
                        path.display()
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
        }
        let open = || {
            sinks
                .iter()
                .filter(|s| s.log.lock().unwrap().is_open())
                .count()
        };
        // The writer closes the oldest just after its last write; give it that moment.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while open() > MAX_OPEN_LOGS && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(
            (1..=MAX_OPEN_LOGS).contains(&open()),
            "{} logs open",
            open()
        );
    }
}
