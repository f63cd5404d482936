//! Wrong tokens from one address: 5 within a minute lock that address out for a minute
//! (429). The table is bounded: an attacker with many addresses evicts its own oldest entries,
//! never grows guardian's memory. Decisions take `now`; the caller reads the clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub const MAX_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
pub const LOCKED_FOR: Duration = Duration::from_secs(60);
/// Addresses remembered at once.
pub const MAX_ENTRIES: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Lockout {
    table: Mutex<HashMap<IpAddr, Failures>>,
    total: AtomicU64,
}

impl Lockout {
    /// Failed attempts ever, for `guardian_api_auth_failures_total`.
    pub fn failures_total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Whether this address is locked out now.
    pub fn locked(&self, ip: IpAddr, now: Instant) -> bool {
        let table = self
            .table
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held");
        table
            .get(&ip)
            .and_then(|f| f.locked_until)
            .is_some_and(|until| now < until)
    }

    /// Counts a wrong or missing token; true when this attempt locked the address out (the
    /// one moment worth a log line).
    pub fn failed(&self, ip: IpAddr, now: Instant) -> bool {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut table = self
            .table
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held");
        if table.len() >= MAX_ENTRIES && !table.contains_key(&ip) {
            table.retain(|_, f| {
                now.saturating_duration_since(f.first) < WINDOW
                    || f.locked_until.is_some_and(|u| now < u)
            });
            if table.len() >= MAX_ENTRIES
                && let Some(oldest) = table.iter().min_by_key(|(_, f)| f.first).map(|(ip, _)| *ip)
            {
                table.remove(&oldest);
            }
        }
        let f = table.entry(ip).or_insert(Failures {
            count: 0,
            first: now,
            locked_until: None,
        });
        if now.saturating_duration_since(f.first) >= WINDOW
            || f.locked_until.is_some_and(|u| now >= u)
        {
            *f = Failures {
                count: 0,
                first: now,
                locked_until: None,
            };
        }
        f.count += 1;
        if f.count >= MAX_FAILURES && f.locked_until.is_none() {
            f.locked_until = Some(now + LOCKED_FOR);
            return true;
        }
        false
    }

    /// Addresses remembered now (for tests of the bound).
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .expect("UNWRAP: never poisoned: no panic while held")
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn five_failures_in_a_minute_lock_out_for_a_minute() {
        let l = Lockout::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        // (seconds after t0, locks now, locked afterwards)
        let table = [
            (0, false, false),
            (10, false, false),
            (20, false, false),
            (30, false, false),
            (40, true, true),
        ];
        for (s, locks, locked) in table {
            let now = t0 + Duration::from_secs(s);
            assert_eq!(l.failed(ip, now), locks, "at {s}s");
            assert_eq!(l.locked(ip, now), locked, "at {s}s");
        }
        assert!(!l.locked(other, t0 + Duration::from_secs(40)));
        assert!(l.locked(ip, t0 + Duration::from_secs(99)));
        assert!(!l.locked(ip, t0 + Duration::from_secs(100)));
        assert_eq!(l.failures_total(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_spread_over_more_than_a_minute_do_not_lock() {
        let l = Lockout::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for k in 0..10 {
            assert!(!l.failed(ip, t0 + Duration::from_secs(k * 20)));
        }
        assert!(!l.locked(ip, t0 + Duration::from_secs(200)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_stays_bounded_whatever_the_number_of_addresses() {
        let l = Lockout::default();
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.failed(ip, now);
        }
        assert!(l.len() <= MAX_ENTRIES);
    }
}
