//! The registry actor: creates projects, one at a time, so that the limit, uniqueness and
//! nesting checks cannot race each other.

use std::sync::Arc;

use actix::prelude::*;

pub use crate::api::registry::{CreateProject, Panic};

use crate::api::supervisor::{Adopt, ChildGuard, ChildId, SupervisorHandle};
use crate::engine::Engine;
use crate::error::{ApiError, Code};
use crate::paths::check_project_dir;
use crate::project::spawn_project;
use crate::storage::metadata::{AgentKind, ProjectMeta, ProjectState};
use crate::storage::project_dir;

pub struct RegistryActor {
    engine: Arc<Engine>,
    supervisor: Option<SupervisorHandle>,
    _guard: ChildGuard,
}

impl RegistryActor {
    pub fn new(engine: Arc<Engine>, supervisor: Option<SupervisorHandle>) -> Self {
        RegistryActor {
            engine,
            _guard: ChildGuard::new(ChildId::Registry, supervisor.clone()),
            supervisor,
        }
    }

    fn create(&mut self, msg: &CreateProject) -> Result<serde_json::Value, ApiError> {
        let cfg = &self.engine.config;
        let agent = match msg.agent.as_deref() {
            None => AgentKind::default(),
            Some(a) => AgentKind::parse(a).ok_or_else(|| {
                ApiError::validation(format!("'agent' must be {}", AgentKind::choices('\'')))
            })?,
        };
        if let Some(refused) = agent.agent().approvals_refused().filter(|_| msg.approvals) {
            return Err(refused);
        }
        if let Some(name) = &msg.name {
            if name.len() > 256 || name.chars().any(char::is_control) {
                return Err(ApiError::validation(
                    "'name' must be at most 256 bytes without control characters",
                ));
            }
        }
        let existing = self.engine.directory.project_paths();
        let path = check_project_dir(
            &msg.path,
            &cfg.project_roots,
            &cfg.data_dir,
            existing.iter().map(|(id, p)| (id.as_str(), p.as_path())),
        )?;
        if existing.len() >= cfg.max_projects {
            return Err(ApiError::new(
                Code::ProjectLimit,
                format!(
                    "the server's limit of {} projects is reached; delete one first",
                    cfg.max_projects
                ),
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let now = self.creation_time();
        let name = msg.name.clone().unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "/".into())
        });
        let meta = ProjectMeta {
            id: id.clone(),
            path,
            name,
            agent,
            session_id: None,
            created_at: now.clone(),
            last_active: now,
            state: ProjectState::Idle,
            active_run: None,
            approvals: msg.approvals,
        };
        let dir = project_dir(&cfg.data_dir, &id);
        // The projects/ directory is synced too, so the new project's entry survives a crash.
        let stored = std::fs::create_dir_all(&dir)
            .and_then(|()| meta.save(&cfg.data_dir))
            .and_then(|()| {
                crate::storage::atomic::sync_dir(&crate::storage::projects_dir(&cfg.data_dir))
            });
        if let Err(e) = stored {
            log::error!(project = id.as_str(); "could not store a new project: {e}");
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ApiError::storage("create the project"));
        }
        if let Err(e) = spawn_project(&self.engine, meta, self.supervisor.clone()) {
            log::error!(project = id.as_str(); "could not open a new project's history: {e}");
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ApiError::storage("create the project"));
        }
        if let Some(s) = &self.supervisor {
            s.do_send(Adopt(ChildId::Project(id.clone())));
        }
        log::info!(project = id.as_str(); "project created");
        let shared = self
            .engine
            .directory
            .project_shared(&id)
            .ok_or_else(|| ApiError::internal("the new project vanished"))?;
        Ok(self.engine.directory.view_of(&id, &shared))
    }
}

impl RegistryActor {
    /// Now, or just after the newest project when that is not earlier (several projects created
    /// within one millisecond, or a clock stepped back): `project_list` sorts on `created_at`,
    /// kept with millisecond precision, so unique increasing times keep "oldest first" the order
    /// of creation, across restarts too.
    fn creation_time(&self) -> String {
        use chrono::SubsecRound;
        let now = chrono::Utc::now().trunc_subsecs(3);
        let latest = self
            .engine
            .directory
            .latest_created_at()
            .and_then(|t| crate::time::parse_ts(&t));
        let t = match latest {
            Some(latest) if latest >= now => latest + chrono::Duration::milliseconds(1),
            _ => now,
        };
        crate::time::format_ts(t)
    }
}

impl Actor for RegistryActor {
    type Context = Context<Self>;
}

impl Handler<CreateProject> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: CreateProject, _: &mut Self::Context) {
        match self.create(&msg) {
            Ok(project) => {
                let id: Arc<str> = Arc::from(project["id"].as_str().unwrap_or_default());
                msg.reply.ok(
                    "project_created",
                    Some(&id),
                    &serde_json::json!({ "project": project }),
                )
            }
            Err(e) => msg.reply.err(None, &e),
        }
    }
}

/// Fault injection: panic inside a handler.
impl Handler<Panic> for RegistryActor {
    type Result = ();

    fn handle(&mut self, _: Panic, _: &mut Self::Context) {
        panic!("fault injected into the registry actor");
    }
}
