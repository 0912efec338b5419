//! The agentvisor engine: the wire protocol, the supervised actors that serve it, and the
//! storage they keep projects in.
//!
//! The daemon binary (`src/` at the workspace root) is a thin shell around this crate: it parses
//! configuration, serves HTTP, and wires an [`engine::Engine`] to the actor tree that
//! [`supervisor::Supervisor`] starts. Everything here can be exercised without a socket.

pub mod agent;
pub mod api;
pub mod auth;
pub mod backends;
pub mod breaker;
pub mod broadcast;
pub mod capability;
pub mod config;
pub mod connection;
pub mod consult;
pub mod directory;
pub mod engine;
pub mod error;
pub mod events;
pub mod executor;
pub mod gitsnap;
pub mod health;
pub mod limits;
pub mod lines;
pub mod logfmt;
pub mod metrics;
pub mod options;
pub mod paths;
pub mod procfs;
pub mod project;
pub mod protocol;
pub mod registry;
pub mod storage;
pub mod supervisor;
pub mod sync;
pub mod time;
