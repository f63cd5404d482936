//! The cloneable handle: commands go in through an mpsc channel with a oneshot reply slot;
//! state comes out as a `watch` snapshot.

use tokio::sync::{mpsc, oneshot, watch};

use super::snapshot::Snapshot;
use crate::config::Config;

/// What a command answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Done(String),
    NoSuchService(String),
    Refused(String),
}

/// A request to reload the config (SIGHUP, a file change, POST /reload); `reply` is set when someone waits for the outcome.
#[derive(Debug)]
pub struct ReloadRequest {
    pub trigger: &'static str,
    pub reply: Option<oneshot::Sender<Reply>>,
}

#[derive(Debug)]
pub enum Command {
    Start(String, oneshot::Sender<Reply>),
    Stop(String, oneshot::Sender<Reply>),
    Restart(String, oneshot::Sender<Reply>),
    /// Apply a reloaded config (or count a refused one): `Done` carries the diff.
    Reload(Result<Box<Config>, String>, oneshot::Sender<Reply>),
    /// Stop (or, with `keep_services`, release) every service, then end the actor.
    Shutdown {
        keep_services: bool,
        reply: oneshot::Sender<Reply>,
    },
    /// Answered at once: proves the actor's loop turns (the systemd watchdog).
    Ping(oneshot::Sender<Reply>),
    /// Take an sd_notify message (SPEC §14) from the process whose ancestry is `from`
    /// (the sender first): it counts only for the service whose process is among them.
    Notify {
        from: Vec<i32>,
        notice: crate::policy::notify::Notice,
    },
    /// Test builds only: the actor's loop stops turning this long, as a wedged engine's
    /// would (proves that the systemd watchdog stops pinging).
    #[cfg(debug_assertions)]
    Stall(std::time::Duration),
}

#[derive(Clone)]
pub struct SupervisorHandle {
    pub(super) tx: mpsc::Sender<Command>,
    pub(super) snapshot: watch::Receiver<Snapshot>,
    pub(super) notify_dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl SupervisorHandle {
    /// The current state, uptimes as of now.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot
            .borrow()
            .clone()
            .at(tokio::time::Instant::now())
    }

    /// Waits for the actor's first snapshot (every service, as its first start left it), or
    /// for the actor's end.
    pub async fn first_published(&self) {
        let _ = self.watch().wait_for(|s| s.revision > 0).await;
    }

    /// The snapshot's revision, read without copying the snapshot.
    pub fn revision(&self) -> u64 {
        self.snapshot.borrow().revision
    }

    /// Hands over an sd_notify message without waiting: false when the actor's queue is
    /// full (the caller counts it as dropped; a flood never blocks the reader).
    pub fn notify(&self, from: Vec<i32>, notice: crate::policy::notify::Notice) -> bool {
        let sent = self.tx.try_send(Command::Notify { from, notice }).is_ok();
        if !sent {
            self.count_notify_dropped();
        }
        sent
    }

    /// One sd_notify message dropped before it reached the actor (too long, unreadable).
    pub fn count_notify_dropped(&self) {
        self.notify_dropped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// sd_notify messages dropped so far (`guardian_notify_dropped_total`).
    pub fn notify_dropped(&self) -> u64 {
        self.notify_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn watch(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }

    async fn ask(&self, make: impl FnOnce(oneshot::Sender<Reply>) -> Command) -> Reply {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(make(tx)).await.is_err() {
            return Reply::Refused("the supervisor has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Reply::Refused("the supervisor has stopped".into()))
    }

    pub async fn start(&self, name: &str) -> Reply {
        self.ask(|r| Command::Start(name.to_owned(), r)).await
    }

    pub async fn stop(&self, name: &str) -> Reply {
        self.ask(|r| Command::Stop(name.to_owned(), r)).await
    }

    pub async fn restart(&self, name: &str) -> Reply {
        self.ask(|r| Command::Restart(name.to_owned(), r)).await
    }

    pub async fn reload(&self, loaded: Result<Config, String>) -> Reply {
        self.ask(|r| Command::Reload(loaded.map(Box::new), r)).await
    }

    /// True when the actor answered.
    /// Test builds only: wedges the actor for `d` (see `Command::Stall`).
    #[cfg(debug_assertions)]
    pub async fn stall(&self, d: std::time::Duration) {
        let _ = self.tx.send(Command::Stall(d)).await;
    }

    pub async fn ping(&self) -> bool {
        matches!(self.ask(Command::Ping).await, Reply::Done(_))
    }

    pub async fn shutdown(&self, keep_services: bool) -> Reply {
        self.ask(|reply| Command::Shutdown {
            keep_services,
            reply,
        })
        .await
    }
}
