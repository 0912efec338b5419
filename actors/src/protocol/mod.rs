//! The wire protocol, version 1: what clients send ([`request`]) and what the server writes
//! ([`frame`]). Nothing else in the daemon parses or builds protocol JSON.

pub mod frame;
pub mod key;
pub use crate::options;
pub mod request;

pub use frame::{Direction, Frame, FrameBuilder};
pub use options::RunOptions;
pub use request::{decode, DecodeError, HistoryQuery, Inbound, Request};
