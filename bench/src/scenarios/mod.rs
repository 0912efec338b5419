//! The scenarios.

pub mod abuse;
pub mod cluster;
pub mod connections;
pub mod fanout;
pub mod history;
pub mod roundtrip;
pub mod runs;
