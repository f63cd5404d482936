//! Restart delays: initial_delay × factor^n, capped at max_delay, ± jitter; give up after
//! `max_retries` consecutive failed starts. Pure: no IO, no clock.

use std::time::Duration;

use rand::RngExt;

use crate::config::BackoffSpec;

/// What to do after the service exited.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// Restart after this delay; `attempt` is the 1-based number of this consecutive retry.
    RestartAfter { delay: Duration, attempt: u32 },
    /// `max_retries` consecutive failed starts: mark the service failed.
    GiveUp { failures: u32 },
}

/// The delay before retry `attempt` (1-based), before jitter.
pub fn delay_for(spec: &BackoffSpec, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(1024) as i32;
    let secs = spec.initial_delay.as_secs_f64() * spec.factor.powi(exp);
    let cap = spec.max_delay.as_secs_f64();
    Duration::from_secs_f64(if secs.is_finite() { secs.min(cap) } else { cap })
}

/// The lowest and highest delay jitter can give for retry `attempt`.
pub fn jitter_range(spec: &BackoffSpec, attempt: u32) -> (Duration, Duration) {
    let d = delay_for(spec, attempt).as_secs_f64();
    (
        Duration::from_secs_f64(d * (1.0 - spec.jitter)),
        Duration::from_secs_f64(d * (1.0 + spec.jitter)),
    )
}

/// Counts a run that ended: `ran` is how long it was up. A run of at least `reset_after`
/// was a success, so the count starts again from this failure.
pub fn count_failure(spec: &BackoffSpec, failures_before: u32, ran: Duration) -> u32 {
    if ran >= spec.reset_after {
        1
    } else {
        failures_before.saturating_add(1)
    }
}

/// What to do after the `failures`-th consecutive failed start.
pub fn decide<R: rand::Rng + ?Sized>(spec: &BackoffSpec, failures: u32, rng: &mut R) -> Decision {
    if failures > spec.max_retries {
        return Decision::GiveUp { failures };
    }
    let (lo, hi) = jitter_range(spec, failures);
    let delay = if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    };
    Decision::RestartAfter {
        delay,
        attempt: failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn spec(jitter: f64) -> BackoffSpec {
        BackoffSpec {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            factor: 2.0,
            jitter,
            max_retries: 10,
            reset_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn delays_grow_by_factor_and_cap() {
        let table = [
            (1, 1),
            (2, 2),
            (3, 4),
            (4, 8),
            (5, 16),
            (6, 32),
            (7, 60),
            (10, 60),
            (u32::MAX, 60),
        ];
        for (attempt, secs) in table {
            assert_eq!(
                delay_for(&spec(0.0), attempt),
                Duration::from_secs(secs),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn jitter_stays_in_its_band_and_is_seeded() {
        let s = spec(0.1);
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..=10 {
            let (lo, hi) = jitter_range(&s, attempt);
            match decide(&s, attempt, &mut rng) {
                Decision::RestartAfter { delay, attempt: a } => {
                    assert_eq!(a, attempt);
                    assert!(
                        delay >= lo && delay <= hi,
                        "{delay:?} outside {lo:?}..{hi:?}"
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let again = |seed| decide(&s, 3, &mut StdRng::seed_from_u64(seed));
        assert_eq!(again(1), again(1));
    }

    #[test]
    fn gives_up_after_max_retries_consecutive_failures() {
        let s = BackoffSpec {
            max_retries: 2,
            ..spec(0.0)
        };
        let mut rng = StdRng::seed_from_u64(0);
        let table = [
            (
                1,
                Decision::RestartAfter {
                    delay: Duration::from_secs(1),
                    attempt: 1,
                },
            ),
            (
                2,
                Decision::RestartAfter {
                    delay: Duration::from_secs(2),
                    attempt: 2,
                },
            ),
            (3, Decision::GiveUp { failures: 3 }),
        ];
        for (failures, want) in table {
            assert_eq!(decide(&s, failures, &mut rng), want);
        }
    }

    #[test]
    fn a_long_run_resets_the_count() {
        let s = spec(0.0);
        let table = [
            (0, Duration::from_secs(1), 1),
            (5, Duration::from_secs(59), 6),
            (5, Duration::from_secs(60), 1),
            (u32::MAX, Duration::ZERO, u32::MAX),
        ];
        for (before, ran, want) in table {
            assert_eq!(count_failure(&s, before, ran), want, "{before} {ran:?}");
        }
    }

    #[test]
    fn zero_initial_delay_restarts_at_once() {
        let s = BackoffSpec {
            initial_delay: Duration::ZERO,
            ..spec(0.1)
        };
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(
            decide(&s, 4, &mut rng),
            Decision::RestartAfter {
                delay: Duration::ZERO,
                attempt: 4
            }
        );
    }
}
