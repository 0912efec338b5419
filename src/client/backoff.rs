//! Reconnect delays: exponential with full jitter.
//!
//! Full jitter (a uniformly random delay between zero and the exponential ceiling) spreads the
//! clients a daemon restart disconnected all at once, so they do not come back in one wave.

use std::time::Duration;

/// The first ceiling, its growth and its cap.
const BASE: Duration = Duration::from_millis(500);
const CAP: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// The ceiling of the next delay: 0.5 s, 1 s, 2 s, … up to 30 s.
    pub fn ceiling(&self) -> Duration {
        BASE.saturating_mul(1u32 << self.attempt.min(16)).min(CAP)
    }

    /// The next delay, uniformly random below the ceiling, and one step up.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(fastrand::f64())
    }

    /// A connection worked: the next failure starts from the first ceiling again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap_and_delays_stay_below_them() {
        let mut b = Backoff::default();
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            let c = b.ceiling();
            ceilings.push(c.as_millis());
            assert!(b.next_delay() <= c);
        }
        assert_eq!(ceilings[..7], [500, 1000, 2000, 4000, 8000, 16000, 30000]);
        assert_eq!(ceilings[9], 30000);
        b.reset();
        assert_eq!(b.ceiling(), BASE);
    }
}
