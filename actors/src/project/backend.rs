//! The project's side of the agent backends' circuit breakers: refuse early, admit a run,
//! record how it ended, and end queued runs when the breaker opens.

use actix::prelude::*;

use super::ProjectActor;
use crate::api::project::BackendUnavailable;
use crate::backends::announce;
use crate::breaker::{classify, Admission, RunEnd};
use crate::error::ApiError;
use crate::events::RunStatus;
use crate::storage::metadata::AgentKind;

impl ProjectActor {
    /// Refuses a request at once while this project's agent is unavailable.
    pub(super) fn check_backend(&self) -> Result<(), ApiError> {
        self.check_backend_of(self.meta.agent)
    }

    /// Refuses a request at once while `agent` is unavailable.
    pub(super) fn check_backend_of(&self, agent: AgentKind) -> Result<(), ApiError> {
        let (verdict, change) = self.engine.breakers.check(agent);
        announce(&self.engine, change);
        verdict
    }

    /// Lets a run start now (it may be the half-open breaker's trial), or says why not.
    pub(super) fn admit_backend(&self) -> Result<Admission, ApiError> {
        let (verdict, change) = self.engine.breakers.admit(self.meta.agent);
        announce(&self.engine, change);
        verdict
    }

    /// Counts a finished run for or against its backend.
    pub(super) fn record_backend(&self, admission: Admission, end: &RunEnd<'_>) {
        let change = self
            .engine
            .breakers
            .record(self.meta.agent, admission, classify(end));
        announce(&self.engine, change);
    }
}

impl Handler<BackendUnavailable> for ProjectActor {
    type Result = ();

    fn handle(&mut self, msg: BackendUnavailable, _: &mut Self::Context) {
        if msg.agent == self.meta.agent && self.end_queued(RunStatus::Failed, &msg.error) > 0 {
            self.emit_state();
        }
    }
}
