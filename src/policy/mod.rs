//! Pure decisions: no IO, no clock reads. Callers pass `now` and what they observed.

pub mod backoff;
pub mod stale_pid;
