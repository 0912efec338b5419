//! The single error type of the mock.
//!
//! A CLI can only report failure through stderr text and an exit status, so
//! that is all a [`Failure`] carries: every fallible step returns one and
//! `main` prints it and exits, the way the real `claude` and `codex` do.

/// A message for stderr plus the process exit status to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Exit status; 1 for runtime errors, 2 for usage errors (clap's code).
    pub code: i32,
    /// Printed verbatim to stderr, so it carries the real CLI's wording.
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}
