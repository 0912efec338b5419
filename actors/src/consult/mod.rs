//! Agents that consult each other: the fixed consult protocol.
//!
//! One agent leads the work in a project and asks the other for a second opinion at the moments
//! that matter. Requests and responses carry markers and named sections ([`kind`]); replies are
//! read tolerantly but never credited with a section they do not have ([`sections`], [`issues`]);
//! and a reply that misses the format is followed up a bounded number of times ([`exchange`]).
//! Everything here is pure: the daemon feeds in what the consultant printed (its runs are
//! `executor::attempt`).

pub mod exchange;
pub mod issues;
pub mod kind;
pub mod sections;
pub mod transcript;

pub use exchange::{Exchange, Failure, Next, Outcome, Reply, Status};
pub use kind::Kind;
