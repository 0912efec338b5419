//! The breakers of the agent backends, one per agent, shared by every project.
//!
//! Each operation returns the [`Change`] it caused, if any, so that the caller can tell every
//! client: the board itself knows nothing of connections or projects.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::state::{Admission, Breaker, BreakerSettings, Refusal, State, Verdict};
use crate::error::{ApiError, Code};
use crate::storage::metadata::AgentKind;

/// A breaker changed state.
#[derive(Debug, Clone)]
pub struct Change {
    pub agent: AgentKind,
    /// The `breaker_state` event's data.
    pub view: Value,
    /// Set when the breaker has just opened: how long until it half-opens.
    pub opened_for: Option<Duration>,
}

/// One breaker per agent, in the registry's order.
pub struct Breakers(Vec<Mutex<Breaker>>);

impl Breakers {
    pub fn new(settings: BreakerSettings) -> Self {
        Breakers(
            AgentKind::all()
                .map(|_| Mutex::new(Breaker::new(settings)))
                .collect(),
        )
    }

    /// Whether a request for `agent` may be accepted now (it does not take the trial).
    pub fn check(&self, agent: AgentKind) -> (Result<(), ApiError>, Option<Change>) {
        self.with(agent, |b, now| {
            b.check(now).map_err(|r| unavailable(agent, r, now))
        })
    }

    /// Lets a run of `agent` start now, or says why not.
    pub fn admit(&self, agent: AgentKind) -> (Result<Admission, ApiError>, Option<Change>) {
        self.with(agent, |b, now| {
            b.admit(now).map_err(|r| unavailable(agent, r, now))
        })
    }

    /// Records how an admitted run ended.
    pub fn record(&self, agent: AgentKind, a: Admission, v: Verdict) -> Option<Change> {
        self.with(agent, |b, now| b.record(a, v, now)).1
    }

    /// Closes the breaker (an operator's `breaker_reset`).
    pub fn reset(&self, agent: AgentKind) -> Option<Change> {
        self.with(agent, |b, _| b.reset()).1
    }

    /// Notices a cool-down that has ended.
    pub fn poll(&self, agent: AgentKind) -> Option<Change> {
        self.with(agent, |_, _| ()).1
    }

    /// One breaker as `/health`, `breaker_state` and `breaker_reset` show it.
    pub fn view(&self, agent: AgentKind) -> Value {
        self.read(agent, |b, now| view(agent, b, now))
    }

    /// Every breaker, by agent.
    pub fn views(&self) -> Value {
        AgentKind::all()
            .map(|a| (a.as_str().to_string(), self.view(a)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// Whether any breaker is not closed (health is then degraded).
    pub fn any_tripped(&self) -> bool {
        AgentKind::all().any(|a| self.read(a, |b, now| b.state(now) != State::Closed))
    }

    /// The state as a number for metrics: 0 closed, 1 half-open, 2 open.
    pub fn level(&self, agent: AgentKind) -> i64 {
        self.read(agent, |b, now| match b.state(now) {
            State::Closed => 0,
            State::HalfOpen { .. } => 1,
            State::Open { .. } => 2,
        })
    }

    /// Reads `agent`'s breaker without changing it.
    fn read<R>(&self, agent: AgentKind, f: impl FnOnce(&Breaker, Instant) -> R) -> R {
        f(&crate::sync::lock(self.lock(agent)), Instant::now())
    }

    fn lock(&self, agent: AgentKind) -> &Mutex<Breaker> {
        &self.0[agent.index()]
    }

    /// Runs `f` on `agent`'s breaker and reports a change of state (counting a cool-down that
    /// has ended since the last change), which is then recorded: each change is reported once.
    fn with<R>(
        &self,
        agent: AgentKind,
        f: impl FnOnce(&mut Breaker, Instant) -> R,
    ) -> (R, Option<Change>) {
        let mut b = crate::sync::lock(self.lock(agent));
        let now = Instant::now();
        let before = b.recorded();
        let out = f(&mut b, now);
        b.settle(now);
        let after = b.recorded();
        let change = (before.name() != after.name()).then(|| Change {
            agent,
            view: view(agent, &b, now),
            opened_for: match after {
                State::Open { until } => Some(until.saturating_duration_since(now)),
                _ => None,
            },
        });
        (out, change)
    }
}

fn view(agent: AgentKind, b: &Breaker, now: Instant) -> Value {
    let state = b.state(now);
    let retry_at = match state {
        State::Open { until } => Some(wall_clock(until, now)),
        _ => None,
    };
    json!({
        "agent": agent.as_str(),
        "state": state.name(),
        "consecutive_failures": b.failures(),
        "retry_at": retry_at,
    })
}

/// `until` as an RFC 3339 time.
fn wall_clock(until: Instant, now: Instant) -> String {
    let left = chrono::Duration::from_std(until.saturating_duration_since(now)).unwrap_or_default();
    crate::time::format_ts(chrono::Utc::now() + left)
}

/// The error of a request the breaker refuses: when the agent will be tried again.
fn unavailable(agent: AgentKind, refusal: Refusal, now: Instant) -> ApiError {
    let name = agent.as_str();
    let error = match refusal {
        Refusal::OpenUntil(until) => format!(
            "the {name} agent is unavailable: its recent runs failed because its backend could not be reached, was overloaded or refused the credentials; the server will try it again at {} (in {} s)",
            wall_clock(until, now),
            until.saturating_duration_since(now).as_millis().div_ceil(1000).max(1)
        ),
        Refusal::TrialRunning => format!(
            "the {name} agent is unavailable: a trial run is checking whether its backend has recovered; try again in a moment"
        ),
    };
    ApiError::new(Code::AgentUnavailable, error).with_details(json!({ "agent": name }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::testing::{claude, codex};

    #[test]
    fn the_end_of_a_cool_down_is_a_change() {
        let board = Breakers::new(BreakerSettings {
            threshold: 1,
            cooldown: Duration::from_millis(1),
            cooldown_max: Duration::from_millis(1),
        });
        let (a, _) = board.admit(claude());
        assert!(board
            .record(claude(), a.unwrap(), Verdict::BackendFault)
            .is_some());
        std::thread::sleep(Duration::from_millis(5));
        // Health checks and scrapes read the half-open state without taking its announcement.
        assert!(board.any_tripped());
        assert_eq!(board.level(claude()), 1);
        assert_eq!(board.view(claude())["state"], "half_open");
        let change = board.poll(claude()).expect("half-open");
        assert_eq!(change.view["state"], "half_open");
        assert!(board.poll(claude()).is_none());
    }

    #[test]
    fn refusals_say_when_and_changes_are_reported_once() {
        let board = Breakers::new(BreakerSettings {
            threshold: 1,
            cooldown: Duration::from_secs(30),
            cooldown_max: Duration::from_secs(60),
        });
        let (a, change) = board.admit(codex());
        assert!(change.is_none());
        let change = board
            .record(codex(), a.unwrap(), Verdict::BackendFault)
            .expect("opened");
        assert_eq!(change.view["state"], "open");
        assert_eq!(change.opened_for, Some(Duration::from_secs(30)));
        let (refused, change) = board.check(codex());
        assert!(change.is_none());
        let e = refused.unwrap_err();
        assert_eq!(e.code, Code::AgentUnavailable);
        assert!(e.error.contains("try it again at") && e.error.contains("(in 30 s)"));
        assert!(board.check(claude()).0.is_ok());
        assert_eq!(board.level(codex()), 2);
        assert!(board.any_tripped());
        assert_eq!(board.reset(codex()).unwrap().view["state"], "closed");
        assert!(board.reset(codex()).is_none());
    }
}
