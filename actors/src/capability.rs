//! Capabilities: what a running agent may ask of the daemon on its own.
//!
//! A lead agent consults the other agent by itself, as a shell command, while its run lives.
//! It must not hold the daemon's token for that (an agent's environment is readable by every
//! tool it runs): each run gets a token of its own that allows only `consult`, only on the
//! run's project, and only while that run is the project's active run. The token is checked
//! again at every request, so it dies with the run even when the run ends by a crash.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::directory::Directory;
use crate::error::{ApiError, Code};
use crate::protocol::Request;
use crate::sync::lock as lock_ignoring_poison;

/// The environment variables a run's agent receives.
pub const URL_ENV: &str = "AGENTVISOR_URL";
pub const TOKEN_ENV: &str = "AGENTVISOR_CONSULT_TOKEN";
pub const PROJECT_ENV: &str = "AGENTVISOR_PROJECT_ID";

/// What one capability token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub project_id: String,
    pub run_id: String,
}

#[derive(Default)]
pub struct Capabilities {
    grants: Mutex<HashMap<String, Grant>>,
}

impl Capabilities {
    /// A new token for `run_id` of `project_id`.
    pub fn issue(&self, project_id: &str, run_id: &str) -> String {
        let token = format!(
            "avc_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        lock_ignoring_poison(&self.grants).insert(
            token.clone(),
            Grant {
                project_id: project_id.to_string(),
                run_id: run_id.to_string(),
            },
        );
        token
    }

    /// The run has ended: its token is worth nothing from now on.
    pub fn revoke_run(&self, run_id: &str) {
        lock_ignoring_poison(&self.grants).retain(|_, g| g.run_id != run_id);
    }

    /// The grant of `token`, if its run is still its project's active run.
    pub fn valid(&self, token: &str, directory: &Directory) -> Option<Grant> {
        let grant = lock_ignoring_poison(&self.grants).get(token).cloned()?;
        let shared = directory.project_shared(&grant.project_id)?;
        let active = lock_ignoring_poison(&shared.meta).active_run.clone();
        (active.as_deref() == Some(grant.run_id.as_str())).then_some(grant)
    }

    /// Whether a connection authenticated with `token` may make `request`.
    pub fn allows(
        &self,
        token: &str,
        directory: &Directory,
        request: &Request,
    ) -> Result<(), ApiError> {
        if matches!(request, Request::Ping | Request::Auth { .. }) {
            return Ok(());
        }
        let Some(grant) = self.valid(token, directory) else {
            return Err(ApiError::new(
                Code::Unauthorized,
                "this capability has ended with the run it was given to",
            ));
        };
        match request {
            Request::Consult { project_id, .. } if *project_id == grant.project_id => Ok(()),
            Request::Consult { .. } => Err(ApiError::new(
                Code::Unauthorized,
                "a run's capability allows consult only on the run's own project",
            )),
            other => Err(ApiError::new(
                Code::Unauthorized,
                format!(
                    "a run's capability allows only consult, not {}",
                    other.kind()
                ),
            )),
        }
    }
}
