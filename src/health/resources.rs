//! The resources of a service's process tree (the service and every descendant), read from
//! /proc through procfs. Walks only that tree (`procinfo::tree`), never a scan
//! of all of /proc. Blocking: callers run it under `spawn_blocking`.

use procfs::process::Process;
use procfs::{Current, WithCurrentSystemInfo};
use serde::Serialize;

/// What one sample of the tree measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProcessInfo {
    /// `None` when it cannot be measured yet.
    pub cpu_percent: Option<f64>,
    pub memory_mb: f64,
    pub memory_bytes: u64,
    pub file_descriptors: u64,
    pub thread_count: u64,
    pub processes: u32,
}

/// A raw sample: CPU time is turned into a percentage by comparing two of them.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub cpu_ticks: u64,
    /// When the root started, in clock ticks after boot.
    pub root_started: u64,
    pub info: ProcessInfo,
}

/// Reads the tree under `root` (walked by `procinfo::tree`); `None` when `root` is gone.
pub fn sample(root: i32) -> Option<Sample> {
    let mut s = Sample::default();
    for pid in crate::process::procinfo::tree(root) {
        let Some((p, stat)) = Process::new(pid)
            .ok()
            .and_then(|p| Some((p.stat().ok()?, p)))
            .map(|(stat, p)| (p, stat))
        else {
            if pid == root {
                return None;
            }
            continue;
        };
        if pid == root {
            if stat.state == 'Z' {
                return None;
            }
            s.root_started = stat.starttime;
        }
        s.cpu_ticks += stat.utime + stat.stime;
        s.info.memory_bytes += stat.rss_bytes().get();
        s.info.thread_count += stat.num_threads.max(0) as u64;
        s.info.file_descriptors += p.fd_count().unwrap_or(0) as u64;
        s.info.processes += 1;
    }
    s.info.memory_mb = s.info.memory_bytes as f64 / (1024.0 * 1024.0);
    Some(s)
}

/// One sample, with CPU as the average over the root's life (what `ps` shows): for readers
/// that keep no previous sample, such as the API for services without resource thresholds.
pub fn info_now(root: i32) -> Option<ProcessInfo> {
    let s = sample(root)?;
    Some(ProcessInfo {
        cpu_percent: life_cpu_percent(&s),
        ..s.info
    })
}

/// CPU percent of one core over the root's life so far: the figure of a first sample.
pub fn life_cpu_percent(s: &Sample) -> Option<f64> {
    let tps = procfs::ticks_per_second().max(1) as f64;
    let up = procfs::Uptime::current().ok()?.uptime;
    let age = up - s.root_started as f64 / tps;
    (age > 0.0).then(|| s.cpu_ticks as f64 / tps / age * 100.0)
}

/// CPU percent of one core between two samples taken `secs` apart. A process that left the
/// tree between them takes its ticks along; the difference never goes below zero.
pub fn cpu_percent(prev: &Sample, now: &Sample, secs: f64) -> Option<f64> {
    let tps = procfs::ticks_per_second().max(1) as f64;
    let ticks = now.cpu_ticks.saturating_sub(prev.cpu_ticks);
    (secs > 0.0).then(|| ticks as f64 / tps / secs * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process_and_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let s = sample(me).expect("this process exists");
        assert!(s.info.processes >= 2, "{:?}", s.info);
        assert!(s.info.memory_bytes > 0);
        assert!(s.info.file_descriptors >= 3);
        assert!(s.info.thread_count >= 1);
        let later = sample(me).unwrap();
        let pct = cpu_percent(&s, &later, 0.5).unwrap();
        assert!((0.0..=100.0 * 64.0).contains(&pct), "{pct}");
        assert_eq!(cpu_percent(&s, &later, 0.0), None);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(sample(-1).is_none());
    }
}
