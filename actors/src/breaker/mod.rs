//! Circuit breakers, one per agent backend: stop spawning agents whose backend is down.
//!
//! [`state`] is the state machine, [`fault`] decides which failed runs are the backend's fault,
//! [`board`] holds both backends' breakers for the whole daemon.

pub mod board;
pub mod fault;
pub mod state;

pub use board::{Breakers, Change};
pub use fault::{classify, RunEnd};
pub use state::{Admission, Breaker, BreakerSettings, Refusal, State, Verdict};
