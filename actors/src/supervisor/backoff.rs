//! The restart policy, PM2-style: exponential backoff with a cap, a reset once a child has stayed
//! up for a while, and an intensity limit that turns a crash loop into a visible `errored` state.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::BackoffPolicy;

/// What to do about a crash.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Restart after this delay.
    Restart(Duration),
    /// Too many restarts within the window: stay down.
    GiveUp,
}

/// The restart history of one child.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    consecutive: u32,
    window: VecDeque<Instant>,
    started_at: Instant,
    pub restarts: u32,
    pub backoff: Duration,
}

impl RestartTracker {
    pub fn new(now: Instant) -> Self {
        RestartTracker {
            consecutive: 0,
            window: VecDeque::new(),
            started_at: now,
            restarts: 0,
            backoff: Duration::ZERO,
        }
    }

    /// The child is running again from `now`.
    pub fn started(&mut self, now: Instant) {
        self.started_at = now;
    }

    /// The child crashed at `now`.
    pub fn crashed(&mut self, now: Instant, policy: &BackoffPolicy) -> Decision {
        if now.duration_since(self.started_at) >= policy.reset_after {
            self.consecutive = 0;
        }
        while self
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.restart_window)
        {
            self.window.pop_front();
        }
        if self.window.len() as u32 >= policy.restart_limit {
            self.backoff = Duration::ZERO;
            return Decision::GiveUp;
        }
        self.window.push_back(now);
        let factor = policy.multiplier.powi(self.consecutive.min(64) as i32);
        let delay = policy.initial.mul_f64(factor).min(policy.max);
        self.consecutive += 1;
        self.restarts += 1;
        self.backoff = delay;
        Decision::Restart(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            multiplier: 1.5,
            reset_after: Duration::from_secs(30),
            restart_limit: 10,
            restart_window: Duration::from_secs(60),
        }
    }

    #[test]
    fn grows_by_half_each_crash_up_to_the_cap() {
        let p = policy();
        let t0 = Instant::now();
        let mut t = RestartTracker::new(t0);
        let delays: Vec<_> = (0..6)
            .map(|i| match t.crashed(t0 + Duration::from_millis(i), &p) {
                Decision::Restart(d) => d.as_millis(),
                Decision::GiveUp => 0,
            })
            .collect();
        assert_eq!(delays, vec![100, 150, 225, 337, 500, 500]);
    }

    #[test]
    fn resets_after_a_stable_window() {
        let p = policy();
        let t0 = Instant::now();
        let mut t = RestartTracker::new(t0);
        t.crashed(t0, &p);
        t.crashed(t0, &p);
        t.started(t0);
        let later = t0 + Duration::from_secs(31);
        assert_eq!(
            t.crashed(later, &p),
            Decision::Restart(Duration::from_millis(100))
        );
    }

    #[test]
    fn gives_up_past_the_limit_within_the_window() {
        let mut p = policy();
        p.restart_limit = 3;
        let t0 = Instant::now();
        let mut t = RestartTracker::new(t0);
        for _ in 0..3 {
            assert!(matches!(t.crashed(t0, &p), Decision::Restart(_)));
        }
        assert_eq!(t.crashed(t0, &p), Decision::GiveUp);
        // Once the window has passed, restarts are allowed again.
        let mut t = RestartTracker::new(t0);
        for i in 0..3 {
            t.crashed(t0 + Duration::from_secs(i * 40), &p);
        }
        assert!(matches!(
            t.crashed(t0 + Duration::from_secs(130), &p),
            Decision::Restart(_)
        ));
    }
}
