//! A scripted spawner for actor tests: each spawn follows the next script, on tokio's clock.
//! Records every spawn (with its instant) and every signal.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::FutureExt;
use nix::sys::signal::Signal;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{ExitInfo, SpawnError, SpawnRequest, Spawned, Spawner};

#[derive(Clone, Debug)]
pub enum Script {
    /// Exits with this code after running this long.
    ExitAfter(Duration, i32),
    /// Runs until SIGTERM or SIGKILL.
    Run,
    /// Ignores SIGTERM; only SIGKILL ends it.
    IgnoreTerm,
    /// The program cannot be started.
    FailToSpawn,
}

#[derive(Default)]
struct Inner {
    next_pid: i32,
    scripts: VecDeque<Script>,
    spawns: Vec<(Instant, SpawnRequest)>,
    signals: Vec<(Instant, i32, Signal)>,
    switches: HashMap<i32, (bool, oneshot::Sender<ExitInfo>)>,
}

#[derive(Default)]
pub struct FakeSpawner {
    /// std Mutex: never held across .await.
    inner: Mutex<Inner>,
}

impl FakeSpawner {
    pub fn new(scripts: impl IntoIterator<Item = Script>) -> Self {
        let inner = Inner {
            next_pid: 1000,
            scripts: scripts.into_iter().collect(),
            ..Inner::default()
        };
        FakeSpawner {
            inner: Mutex::new(inner),
        }
    }

    pub fn spawn_times(&self) -> Vec<Instant> {
        self.inner
            .lock()
            .unwrap()
            .spawns
            .iter()
            .map(|(t, _)| *t)
            .collect()
    }

    pub fn signals(&self) -> Vec<(Instant, i32, Signal)> {
        self.inner.lock().unwrap().signals.clone()
    }
}

impl Spawner for FakeSpawner {
    fn spawn(&self, req: &SpawnRequest) -> Result<Spawned, SpawnError> {
        let mut inner = self.inner.lock().unwrap();
        inner.spawns.push((Instant::now(), req.clone()));
        let script = inner.scripts.pop_front().unwrap_or(Script::Run);
        if let Script::FailToSpawn = script {
            return Err(SpawnError {
                program: req.command[0].clone(),
                reason: "no such program".into(),
            });
        }
        inner.next_pid += 1;
        let pid = inner.next_pid;
        let (tx, rx) = oneshot::channel();
        inner
            .switches
            .insert(pid, (matches!(script, Script::IgnoreTerm), tx));
        let exited = async move {
            match script {
                Script::ExitAfter(d, code) => tokio::select! {
                    _ = tokio::time::sleep(d) => ExitInfo { code: Some(code), signal: None },
                    r = rx => r.unwrap_or(ExitInfo { code: None, signal: None }),
                },
                _ => rx.await.unwrap_or(ExitInfo {
                    code: None,
                    signal: None,
                }),
            }
        }
        .boxed();
        Ok(Spawned {
            pid,
            start_ticks: None,
            exited,
            ready_line: None,
        })
    }

    fn adopt(&self, _pid: i32, _start_ticks: u64) -> std::io::Result<Spawned> {
        Err(std::io::Error::other("the fake spawner adopts nothing"))
    }

    fn signal(&self, pid: i32, sig: Signal) -> std::io::Result<()> {
        let mut inner = self.inner.lock().unwrap();
        inner.signals.push((Instant::now(), pid, sig));
        Ok(())
    }

    fn signal_group(&self, _service: &str, pid: i32, sig: Signal) {
        let mut inner = self.inner.lock().unwrap();
        inner.signals.push((Instant::now(), pid, sig));
        let ends = match inner.switches.get(&pid) {
            Some((ignores_term, _)) => {
                sig == Signal::SIGKILL || (sig == Signal::SIGTERM && !ignores_term)
            }
            None => false,
        };
        if ends && let Some((_, tx)) = inner.switches.remove(&pid) {
            let _ = tx.send(ExitInfo {
                code: None,
                signal: Some(sig as i32),
            });
        }
    }
}
