//! Reload triggers: SIGHUP, `guardian reload` (POST /reload) and a change to a config file.
//! Files are watched through their folders (an editor's save replaces the file), access
//! events are ignored, bursts are debounced, and a change whose content hash is unchanged is
//! skipped (CRATES.md pitfall 12). The callback only `try_send`s on a bounded channel.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use notify::event::EventKind;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::{mpsc, oneshot};

use crate::supervisor::Reply;

/// How long a burst of file events must be quiet before it counts as one change.
pub const DEBOUNCE: Duration = Duration::from_millis(75);

/// A request to reload; `reply` is set when someone waits for the outcome.
#[derive(Debug)]
pub struct Request {
    pub trigger: &'static str,
    pub reply: Option<oneshot::Sender<Reply>>,
}

/// A hash of the files' contents (a missing file hashes as missing).
pub fn content_hash(files: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        std::fs::read(f).ok().hash(&mut h);
    }
    h.finish()
}

/// Watches the folders of `files`; stops when dropped.
pub struct FileWatcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

pub fn watch(files: &[PathBuf], tx: mpsc::Sender<Request>) -> Result<FileWatcher, String> {
    let files: Vec<PathBuf> = files.iter().map(|f| absolute(f)).collect();
    let mut last = content_hash(&files);
    let ours = files.clone();
    let handler = move |result: DebounceEventResult| {
        let Ok(events) = result else { return };
        let touched = events.iter().any(|e| {
            !matches!(e.kind, EventKind::Access(_))
                && e.paths.iter().any(|p| ours.contains(&absolute(p)))
        });
        if !touched {
            return;
        }
        let now = content_hash(&ours);
        if now == last {
            return;
        }
        last = now;
        if tx
            .try_send(Request {
                trigger: "file_change",
                reply: None,
            })
            .is_err()
        {
            tracing::debug!("a reload is already queued; this change rides along with it");
        }
    };
    let mut debouncer = new_debouncer(DEBOUNCE, None, handler)
        .map_err(|e| format!("cannot watch config files: {e}"))?;
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_owned))
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        debouncer
            .watch(&d, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", d.display()))?;
    }
    Ok(FileWatcher {
        _debouncer: debouncer,
    })
}
