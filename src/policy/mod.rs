//! Pure decisions: no IO, no clock reads. Callers pass `now` and what they observed.

pub mod backoff;
pub mod breaker;
pub mod deps;
pub mod health;
pub mod notify;
pub mod recovery;
pub mod redact;
pub mod stale_pid;
