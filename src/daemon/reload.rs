//! Reload triggers: SIGHUP, `guardian reload` (POST /reload) and a change to a config file.
//! Files are watched through their folders (an editor's save replaces the file), access
//! events are ignored, bursts are debounced, and a change whose content hash is unchanged is
//! skipped (CRATES.md pitfall 12). The notify callback only `try_send`s on a bounded channel.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::EventKind;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::supervisor::ReloadRequest;

/// How long a burst of file events must be quiet before it counts as one change.
pub const DEBOUNCE: Duration = Duration::from_millis(75);

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
    _watcher: notify::RecommendedWatcher,
    debounce: tokio::task::JoinHandle<()>,
}

impl Drop for FileWatcher {
    fn drop(&mut self) {
        self.debounce.abort();
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// inotify on each file's folder (an editor's save replaces the file, which a watch on the
/// file itself would lose). The debounce is a task that sleeps until an event comes: an idle
/// guardian has no timer running (notify-debouncer-full's thread wakes every few ms).
pub fn watch(files: &[PathBuf], tx: mpsc::Sender<ReloadRequest>) -> Result<FileWatcher, String> {
    let ours: Vec<PathBuf> = files.iter().map(|f| absolute(f)).collect();
    let (ev_tx, mut ev_rx) = mpsc::channel::<()>(16);
    let filter = ours.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(e) = res
            && !matches!(e.kind, EventKind::Access(_))
            && e.paths.iter().any(|p| filter.contains(&absolute(p)))
        {
            // Full means a change is already waiting to be handled: this one rides along.
            let _ = ev_tx.try_send(());
        }
    })
    .map_err(|e| format!("cannot watch config files: {e}"))?;
    let mut dirs: Vec<PathBuf> = ours
        .iter()
        .filter_map(|f| f.parent().map(Path::to_owned))
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        watcher
            .watch(&d, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", d.display()))?;
    }
    let hash = |files: Vec<PathBuf>| async move {
        tokio::task::spawn_blocking(move || content_hash(&files))
            .await
            .unwrap_or(0)
    };
    let debounce = tokio::spawn(async move {
        let mut last = hash(ours.clone()).await;
        while ev_rx.recv().await.is_some() {
            // Wait until the burst has been quiet for DEBOUNCE.
            loop {
                match tokio::time::timeout(DEBOUNCE, ev_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let now = hash(ours.clone()).await;
            if now == last {
                continue;
            }
            last = now;
            let req = ReloadRequest {
                trigger: "file_change",
                reply: None,
            };
            if tx.try_send(req).is_err() {
                tracing::debug!("a reload is already queued; this change rides along with it");
            }
        }
    });
    Ok(FileWatcher {
        _watcher: watcher,
        debounce,
    })
}
