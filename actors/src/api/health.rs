//! What the health actor accepts: it samples on its own, so only fault injection.

use actix::prelude::*;

/// Fault injection: panic inside a handler.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Panic;

super::handle!(
    /// The health actor as connections reach it.
    HealthHandle { panic: Panic }
);
