//! Process facts (CPU, memory, descriptors, threads) of services without resource checks, for
//! `/health`, `/diagnostics` and `/metrics`. Reading /proc for every service on every request
//! grows with the fleet (about 0.09 ms a service), so answers come from a cache: a fact younger
//! than `FRESH` is served as is; an older one is served too (up to `STALE`) while one
//! background read renews every aging fact; only a service seen for the first time, or one
//! whose fact is older than `STALE`, is read before the answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::health::resources::ProcessInfo;

pub const FRESH: Duration = Duration::from_secs(1);
pub const STALE: Duration = Duration::from_secs(60);

type Entry = (Instant, Option<ProcessInfo>);

#[derive(Debug, Default)]
pub struct FactsCache {
    by_pid: Mutex<HashMap<i32, Entry>>,
    renewing: AtomicBool,
}

impl FactsCache {
    /// The facts of `pids`, in order.
    pub async fn get(self: &std::sync::Arc<Self>, pids: &[i32]) -> Vec<Option<ProcessInfo>> {
        let now = Instant::now();
        let (mut missing, mut aging) = (Vec::new(), Vec::new());
        {
            let map = self
                .by_pid
                .lock()
                .expect("UNWRAP: never poisoned: no panic while held");
            for &pid in pids {
                match map.get(&pid) {
                    Some((t, _)) if now.saturating_duration_since(*t) < FRESH => {}
                    Some((t, _)) if now.saturating_duration_since(*t) < STALE => aging.push(pid),
                    _ => missing.push(pid),
                }
            }
        }
        if !missing.is_empty() {
            let read = read_all(missing).await;
            self.store(read);
        }
        if !aging.is_empty() && !self.renewing.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            tokio::spawn(async move {
                let read = read_all(aging).await;
                me.store(read);
                me.renewing.store(false, Ordering::Release);
            });
        }
        let mut map = self
            .by_pid
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held");
        // Forget processes nobody asks about any more (they ended, or were replaced).
        map.retain(|_, (t, _)| now.saturating_duration_since(*t) < STALE);
        pids.iter()
            .map(|p| map.get(p).and_then(|(_, f)| f.clone()))
            .collect()
    }

    fn store(&self, read: Vec<(i32, Option<ProcessInfo>)>) {
        let now = Instant::now();
        let mut map = self
            .by_pid
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held");
        for (pid, info) in read {
            map.insert(pid, (now, info));
        }
    }
}

async fn read_all(pids: Vec<i32>) -> Vec<(i32, Option<ProcessInfo>)> {
    tokio::task::spawn_blocking(move || {
        pids.into_iter()
            .map(|pid| (pid, crate::health::resources::info_now(pid)))
            .collect()
    })
    .await
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn facts_are_read_once_then_served_from_the_cache() {
        let cache = std::sync::Arc::new(FactsCache::default());
        let me = std::process::id() as i32;
        let first = cache.get(&[me, i32::MAX]).await;
        assert!(first[0].as_ref().is_some_and(|f| f.thread_count >= 1));
        assert!(first[1].is_none(), "no such process");
        let stamp = cache.by_pid.lock().unwrap()[&me].0;
        let again = cache.get(&[me]).await;
        assert!(again[0].is_some());
        assert_eq!(
            cache.by_pid.lock().unwrap()[&me].0,
            stamp,
            "a fresh fact is not read again"
        );
    }
}
