//! Service output, bounded whatever a service writes (SPEC §11). The engine's async workers
//! only do non-blocking pipe reads into a buffer of at most one line piece and hand the bytes
//! to one writer thread through a bounded queue; that thread does every blocking write (log
//! files, rotation, echo). A full queue never stalls a reader: the bytes are dropped and
//! counted per service (`guardian_log_dropped_bytes_total`), so the pipe is always drained and
//! guardian's memory stays bounded by `QUEUE_DEPTH × LINE_MAX`.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::unix::RotatingLog;

/// A line longer than this is cut into pieces of this size, each written as its own line.
pub const LINE_MAX: usize = 64 * 1024;
/// Chunks waiting for the writer thread; each holds at most `LINE_MAX` bytes.
const QUEUE_DEPTH: usize = 64;

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

/// Where one instance's output goes: its log, and guardian's stdout/stderr when echoing.
pub struct Sink {
    /// std Mutex: only the writer thread locks it, so it is never contended.
    log: Mutex<RotatingLog>,
    echo: Option<String>,
    dropped: Arc<AtomicU64>,
}

impl Sink {
    pub fn new(log: RotatingLog, echo: Option<String>, dropped: Arc<AtomicU64>) -> Arc<Self> {
        Arc::new(Sink {
            log: Mutex::new(log),
            echo,
            dropped,
        })
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
    tx: SyncSender<Chunk>,
}

impl Writer {
    /// Starts the writer thread; it ends when every `Writer` clone is gone.
    pub fn start() -> std::io::Result<Writer> {
        let (tx, rx) = sync_channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("guardian-output".into())
            .spawn(move || write_all(rx))?;
        Ok(Writer { tx })
    }

    fn send(&self, chunk: Chunk) {
        match self.tx.try_send(chunk) {
            Ok(()) => {}
            Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => {
                c.sink.drop_bytes(c.bytes.len());
            }
        }
    }

    /// Reads `stream` to its end, cutting lines at `LINE_MAX`, and queues whole lines.
    pub async fn pump(&self, mut stream: impl AsyncRead + Unpin, sink: Arc<Sink>, stderr: bool) {
        let mut buf: Vec<u8> = Vec::with_capacity(LINE_MAX);
        loop {
            if buf.len() == LINE_MAX {
                // A line piece at the cap: cut it here.
                let mut piece = Vec::with_capacity(LINE_MAX + 1);
                piece.extend_from_slice(&buf);
                piece.push(b'\n');
                buf.clear();
                self.send(Chunk {
                    sink: sink.clone(),
                    bytes: piece,
                    stderr,
                });
            }
            let room = LINE_MAX - buf.len();
            let n = match (&mut stream).take(room as u64).read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Everything up to the last newline leaves now; the rest waits for its end.
            let fresh = buf.len() - n;
            if let Some(last) = buf[fresh..].iter().rposition(|b| *b == b'\n') {
                let cut = fresh + last + 1;
                let whole = buf[..cut].to_vec();
                buf.drain(..cut);
                self.send(Chunk {
                    sink: sink.clone(),
                    bytes: whole,
                    stderr,
                });
            }
        }
        if !buf.is_empty() {
            buf.push(b'\n');
            self.send(Chunk {
                sink,
                bytes: buf,
                stderr,
            });
        }
    }
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

fn write_all(rx: Receiver<Chunk>) {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    while let Ok(chunk) = rx.recv() {
        let Chunk {
            sink,
            bytes,
            stderr,
        } = chunk;
        if let Some(prefix) = &sink.echo {
            let to: &mut dyn Write = if stderr { &mut err } else { &mut out };
            let mut framed = Vec::with_capacity(bytes.len() + 16 * prefix.len());
            for line in bytes.split_inclusive(|b| *b == b'\n') {
                framed.extend_from_slice(prefix.as_bytes());
                framed.extend_from_slice(line);
            }
            let _ = to.write_all(&framed);
        }
        let written = sink
            .log
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held")
            .write(&bytes);
        if !written {
            sink.drop_bytes(bytes.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        writer.pump(&input[..], sink.clone(), false).await;
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
}
