//! The circuit breaker of one agent backend, as a pure state machine.
//!
//! When the backend behind an agent CLI is down (its API unreachable, overloaded, refusing the
//! key), every run fails after spawning a process that costs hundreds of MB and tells the user
//! nothing new. After `threshold` such failures in a row the breaker opens: runs are refused at
//! once with a date to try again. After the cool-down one trial run goes through (half-open);
//! its success closes the breaker, its failure opens it again for twice as long, up to a cap.
//! Time is passed in, so that every transition can be tested without waiting.

use std::time::{Duration, Instant};

pub use crate::config::BreakerSettings;

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Runs go through; backend failures are counted.
    Closed,
    /// Runs are refused until `until`.
    Open { until: Instant },
    /// The cool-down is over: one trial run may go; `trial` says whether it is under way.
    HalfOpen { trial: bool },
}

impl State {
    /// The name used on the wire and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }
}

/// How a finished run bears on the backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The backend answered (the run completed, or failed for a reason of its own).
    Healthy,
    /// The run failed because of the backend.
    BackendFault,
    /// The run says nothing about the backend (the user or shutdown stopped it).
    Neutral,
}

/// Permission to start a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// An ordinary run.
    Normal,
    /// The one trial run of a half-open breaker: its verdict decides.
    Trial,
}

/// Why a run may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The breaker is open until this instant.
    OpenUntil(Instant),
    /// The trial run is under way; its end decides.
    TrialRunning,
}

/// One backend's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    state: State,
    failures: u32,
    /// The cool-down the next opening uses.
    cooldown: Duration,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Breaker {
            settings,
            state: State::Closed,
            failures: 0,
            cooldown: settings.cooldown,
        }
    }

    /// The state at `now` (an open breaker whose cool-down is over is half-open). Reading it
    /// changes nothing, so that a health check or a metrics scrape cannot take the change
    /// from whoever announces it.
    pub fn state(&self, now: Instant) -> State {
        match self.state {
            State::Open { until } if now >= until => State::HalfOpen { trial: false },
            s => s,
        }
    }

    /// The state as last changed, not yet counting a cool-down that has ended since: comparing
    /// it with [`Breaker::state`] tells whether the breaker has just become half-open.
    pub fn recorded(&self) -> State {
        self.state
    }

    /// Makes the state at `now` the recorded one.
    pub fn settle(&mut self, now: Instant) {
        self.state = self.state(now);
    }

    /// Consecutive backend failures counted so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether a run may start, without taking the trial: for refusing a request early.
    pub fn check(&mut self, now: Instant) -> Result<(), Refusal> {
        self.settle(now);
        match self.state {
            State::Closed | State::HalfOpen { trial: false } => Ok(()),
            State::HalfOpen { trial: true } => Err(Refusal::TrialRunning),
            State::Open { until } => Err(Refusal::OpenUntil(until)),
        }
    }

    /// Lets a run start now; in half-open the first one becomes the trial.
    pub fn admit(&mut self, now: Instant) -> Result<Admission, Refusal> {
        self.check(now)?;
        match self.state {
            State::HalfOpen { .. } => {
                self.state = State::HalfOpen { trial: true };
                Ok(Admission::Trial)
            }
            _ => Ok(Admission::Normal),
        }
    }

    /// Records how an admitted run ended. Returns true when the state changed.
    pub fn record(&mut self, admission: Admission, verdict: Verdict, now: Instant) -> bool {
        self.settle(now);
        let before = self.state;
        match (admission, verdict) {
            (Admission::Trial, Verdict::Healthy) => self.close(),
            (Admission::Trial, Verdict::BackendFault) => {
                self.open(now);
                self.cooldown = (self.cooldown * 2).min(self.settings.cooldown_max);
            }
            // The trial proved nothing: the next run is the trial.
            (Admission::Trial, Verdict::Neutral) => self.state = State::HalfOpen { trial: false },
            (Admission::Normal, Verdict::Healthy) => self.failures = 0,
            (Admission::Normal, Verdict::BackendFault) => {
                self.failures = self.failures.saturating_add(1);
                if self.state == State::Closed && self.failures >= self.settings.threshold {
                    self.open(now);
                    self.cooldown = (self.cooldown * 2).min(self.settings.cooldown_max);
                }
            }
            (Admission::Normal, Verdict::Neutral) => {}
        }
        self.state != before
    }

    /// An operator closed the breaker by hand: everything starts over.
    pub fn reset(&mut self) -> bool {
        let changed = self.state != State::Closed;
        self.close();
        changed
    }

    fn open(&mut self, now: Instant) {
        let cooldown = self.cooldown.min(self.settings.cooldown_max);
        self.state = State::Open {
            until: now + cooldown,
        };
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.failures = 0;
        self.cooldown = self.settings.cooldown;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            threshold: 3,
            cooldown: Duration::from_secs(30),
            cooldown_max: Duration::from_secs(100),
        }
    }

    fn fail(b: &mut Breaker, now: Instant) -> bool {
        let a = b.admit(now).expect("admitted");
        b.record(a, Verdict::BackendFault, now)
    }

    #[test]
    fn opens_after_threshold_consecutive_backend_failures() {
        let mut b = Breaker::new(settings());
        let t = Instant::now();
        assert!(!fail(&mut b, t));
        assert!(!fail(&mut b, t));
        assert_eq!(b.state(t), State::Closed);
        assert!(fail(&mut b, t));
        assert_eq!(
            b.state(t),
            State::Open {
                until: t + Duration::from_secs(30)
            }
        );
        assert_eq!(
            b.admit(t),
            Err(Refusal::OpenUntil(t + Duration::from_secs(30)))
        );
    }

    #[test]
    fn a_healthy_run_resets_the_count_and_neutral_runs_do_not() {
        let mut b = Breaker::new(settings());
        let t = Instant::now();
        fail(&mut b, t);
        fail(&mut b, t);
        let a = b.admit(t).unwrap();
        b.record(a, Verdict::Neutral, t);
        assert_eq!(b.failures(), 2);
        let a = b.admit(t).unwrap();
        b.record(a, Verdict::Healthy, t);
        assert_eq!(b.failures(), 0);
        fail(&mut b, t);
        assert_eq!(b.state(t), State::Closed);
    }

    #[test]
    fn half_open_lets_one_trial_through_and_its_success_closes() {
        let mut b = Breaker::new(settings());
        let t = Instant::now();
        for _ in 0..3 {
            fail(&mut b, t);
        }
        let later = t + Duration::from_secs(30);
        assert_eq!(b.state(later), State::HalfOpen { trial: false });
        assert_eq!(b.check(later), Ok(()));
        assert_eq!(b.admit(later), Ok(Admission::Trial));
        assert_eq!(b.admit(later), Err(Refusal::TrialRunning));
        assert!(b.record(Admission::Trial, Verdict::Healthy, later));
        assert_eq!(b.state(later), State::Closed);
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn failed_trials_double_the_cooldown_up_to_the_cap() {
        let mut b = Breaker::new(settings());
        let mut t = Instant::now();
        for _ in 0..3 {
            fail(&mut b, t);
        }
        let mut cooldowns = Vec::new();
        for _ in 0..4 {
            let State::Open { until } = b.state(t) else {
                panic!("not open")
            };
            cooldowns.push((until - t).as_secs());
            t = until;
            assert_eq!(b.admit(t), Ok(Admission::Trial));
            assert!(b.record(Admission::Trial, Verdict::BackendFault, t));
        }
        assert_eq!(cooldowns, [30, 60, 100, 100]);
        // Success resets the cool-down to its first value.
        let State::Open { until } = b.state(t) else {
            panic!("not open")
        };
        b.admit(until).unwrap();
        b.record(Admission::Trial, Verdict::Healthy, until);
        for _ in 0..3 {
            fail(&mut b, until);
        }
        assert_eq!(
            b.state(until),
            State::Open {
                until: until + Duration::from_secs(30)
            }
        );
    }

    #[test]
    fn a_neutral_trial_frees_the_trial_slot() {
        let mut b = Breaker::new(settings());
        let t = Instant::now();
        for _ in 0..3 {
            fail(&mut b, t);
        }
        let later = t + Duration::from_secs(31);
        assert_eq!(b.admit(later), Ok(Admission::Trial));
        assert!(b.record(Admission::Trial, Verdict::Neutral, later));
        assert_eq!(b.admit(later), Ok(Admission::Trial));
    }

    #[test]
    fn reset_closes_from_any_state() {
        let mut b = Breaker::new(settings());
        let t = Instant::now();
        assert!(!b.reset());
        for _ in 0..3 {
            fail(&mut b, t);
        }
        assert!(b.reset());
        assert_eq!(b.state(t), State::Closed);
        for _ in 0..3 {
            fail(&mut b, t);
        }
        let later = t + Duration::from_secs(30);
        assert_eq!(b.state(later), State::HalfOpen { trial: false });
        assert!(matches!(b.recorded(), State::Open { .. }));
        b.settle(later);
        assert_eq!(b.recorded(), State::HalfOpen { trial: false });
        b.reset();
        assert_eq!(b.admit(t), Ok(Admission::Normal));
    }
}
