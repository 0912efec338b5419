//! Where each request goes.

use std::sync::Arc;

use actix::prelude::*;

use super::ConnectionActor;
use crate::api::connection::ReplyTo;
use crate::api::idempotency::Admission;
use crate::api::project::{self as project, ProjectHandle};
use crate::api::registry::CreateProject;
use crate::api::Sends;
use crate::directory::ProjectRoute;
use crate::error::{ApiError, Code};
use crate::protocol::{Inbound, Request};

impl ConnectionActor {
    fn reply_to(&self, id: Option<String>, ctx: &mut Context<Self>) -> ReplyTo {
        ReplyTo::new(self.id, ctx.address().recipient(), id)
    }

    /// Before authentication only `auth` is accepted.
    pub(super) fn authenticate(&mut self, inbound: Inbound, ctx: &mut Context<Self>) {
        let expected = self.engine.config.token.clone().unwrap_or_default();
        match inbound.request {
            Request::Auth { token } if crate::auth::token_matches(&token, &expected) => {
                self.authenticated = true;
                self.pending_auth = None;
                log::info!(conn = self.id; "client authenticated");
                let reply = self.reply_to(inbound.id, ctx);
                reply.ok("authenticated", None, &serde_json::json!({}));
            }
            Request::Auth { token }
                if self
                    .engine
                    .capabilities
                    .valid(&token, &self.engine.directory)
                    .is_some() =>
            {
                self.authenticated = true;
                self.capability = Some(token);
                log::info!(conn = self.id; "client authenticated with a run's consult capability");
                let reply = self.reply_to(inbound.id, ctx);
                reply.ok("authenticated", None, &serde_json::json!({}));
            }
            _ => {
                self.engine.auth_throttle.record_failure(self.peer);
                self.close(1008, "authentication required", ctx);
            }
        }
    }

    /// `text` is the request as the client sent it: what goes to another node of the cluster.
    pub(super) fn route(&mut self, inbound: Inbound, text: &str, ctx: &mut Context<Self>) {
        // Only the type is logged: payloads may hold tokens or long prompts.
        log::debug!(conn = self.id; "request {}", inbound.request.kind());
        let mut reply = self.reply_to(inbound.id, ctx);
        let engine = self.engine.clone();
        if let Some(token) = &self.capability {
            if let Err(e) = engine
                .capabilities
                .allows(token, &engine.directory, &inbound.request)
            {
                reply.err(None, &e);
                return;
            }
        }
        // Another node's project is that node's to answer, idempotency included.
        if let Some(cluster) = engine.cluster() {
            match cluster.route(&inbound.request, text, reply) {
                Some(r) => reply = r,
                None => return,
            }
        }
        if let Some(key) = inbound.idempotency {
            match engine.idempotency.admit(key, reply) {
                Admission::Proceed(r) => reply = r,
                Admission::Handled => return,
            }
        }

        match inbound.request {
            Request::Ping => reply.ok("pong", None, &serde_json::json!({})),
            Request::HealthCheck => reply.ok("health", None, &engine.health_report()),
            Request::Auth { .. } => reply.ok("authenticated", None, &serde_json::json!({})),
            Request::ProjectList => reply.ok(
                "project_list",
                None,
                &serde_json::json!({ "projects": engine.directory.project_views() }),
            ),
            Request::ProjectCreate {
                path,
                name,
                agent,
                approvals,
                node: _,
            } => match engine.directory.registry() {
                Some(r) => r.do_send(CreateProject {
                    reply,
                    path,
                    name,
                    agent,
                    approvals,
                }),
                None => reply.err(
                    None,
                    &ApiError::retryable("the project registry is restarting; try again shortly"),
                ),
            },
            Request::ProjectDelete { project_id } => {
                self.send_to_project(project_id, reply, |reply| project::Delete { reply })
            }
            Request::ProjectJoin {
                project_id,
                since_seq,
            } => self.send_to_project(project_id, reply, |reply| project::Join {
                reply,
                since_seq,
            }),
            Request::ProjectLeave { project_id } => {
                self.send_to_project(project_id, reply, |reply| project::Leave { reply })
            }
            Request::Execute {
                project_id,
                prompt,
                options,
            } => self.send_to_project(project_id, reply, |reply| project::Execute {
                reply,
                prompt,
                options,
            }),
            Request::Consult {
                project_id,
                consult,
            } => self.send_to_project(project_id, reply, |reply| project::Consult {
                reply,
                consult,
            }),
            Request::AgentNewSession { project_id } => {
                self.send_to_project(project_id, reply, |reply| project::NewSession { reply })
            }
            Request::AgentKill {
                project_id,
                clear_queue,
            } => self.send_to_project(project_id, reply, |reply| project::Kill {
                reply,
                clear_queue,
            }),
            Request::GetMessages { project_id, query } => {
                self.send_to_project(project_id, reply, |reply| project::GetMessages {
                    reply,
                    query,
                })
            }
            Request::RunDiff {
                project_id,
                run_id,
                path,
            } => self.send_to_project(project_id, reply, |reply| project::RunDiff {
                reply,
                run_id,
                path,
            }),
            Request::PermissionRespond {
                project_id,
                request_id,
                allow,
                message,
                remember,
            } => self.send_to_project(project_id, reply, |reply| project::PermissionRespond {
                reply,
                request_id,
                allow,
                message,
                remember,
            }),
            Request::ActorReset { actor } => match &self.supervisor {
                Some(s) => s.do_send(crate::api::supervisor::ResetActor { name: actor, reply }),
                None => reply.err(None, &ApiError::internal("no supervisor is running")),
            },
            Request::BreakerReset { agent } => {
                log::warn!(conn = self.id, agent = agent.as_str(); "circuit breaker reset requested");
                crate::backends::announce(&engine, engine.breakers.reset(agent));
                reply.ok("breaker_reset", None, &engine.breakers.view(agent));
            }
            Request::FaultInject { actor, project_id } => {
                self.inject(&actor, project_id, reply, ctx)
            }
        }
    }

    /// Sends the project named `project_id` the request `request` builds around `reply`, or
    /// answers for it when the project is missing, down or restarting.
    fn send_to_project<M>(
        &mut self,
        project_id: String,
        reply: ReplyTo,
        request: impl FnOnce(ReplyTo) -> M,
    ) where
        ProjectHandle: Sends<M>,
        M: Message<Result = ()> + Send + 'static,
    {
        match self.engine.directory.route(&project_id) {
            ProjectRoute::Up(addr) => addr.do_send(request(reply)),
            ProjectRoute::Missing => {
                let p: Arc<str> = Arc::from(crate::logfmt::sanitize(&project_id, 128));
                reply.err(Some(&p), &ApiError::project_not_found(&project_id))
            }
            ProjectRoute::Down(why) => {
                let p: Arc<str> = Arc::from(project_id.as_str());
                reply.err(Some(&p), &ApiError::internal(why))
            }
            ProjectRoute::Restarting => {
                let p: Arc<str> = Arc::from(project_id.as_str());
                let e = ApiError::retryable(format!(
                    "project {p} is restarting after a crash; try again shortly"
                ));
                reply.err(Some(&p), &e)
            }
        }
    }

    /// Joins a project again from `since` (after the broadcast actor restarted).
    pub(super) fn rejoin(&mut self, project: Arc<str>, since: u64, ctx: &mut Context<Self>) {
        let reply = self.reply_to(None, ctx);
        self.send_to_project(project.to_string(), reply, |reply| project::Join {
            reply,
            since_seq: Some(since),
        });
    }

    /// `fault_inject`: makes the named actor panic in a message handler (tests only; the
    /// request type does not exist unless the daemon was started with fault injection on).
    fn inject(
        &mut self,
        actor: &str,
        project_id: Option<String>,
        reply: ReplyTo,
        ctx: &mut Context<Self>,
    ) {
        log::warn!(conn = self.id; "fault injection requested for the {} actor", crate::logfmt::sanitize(actor, 64));
        let dir = &self.engine.directory;
        let injected = |reply: &ReplyTo| {
            reply.ok(
                "fault_injected",
                None,
                &serde_json::json!({ "actor": actor }),
            )
        };
        match actor {
            "connection" => {
                injected(&reply);
                ctx.notify(InjectedPanic);
            }
            "broadcast" | "health" | "registry" => {
                let sent = match actor {
                    "broadcast" => dir.broadcast().map(|a| a.do_send(crate::api::broadcast::Panic)),
                    "health" => dir.health().map(|a| a.do_send(crate::api::health::Panic)),
                    _ => dir.registry().map(|a| a.do_send(crate::api::registry::Panic)),
                };
                match sent {
                    Some(()) => injected(&reply),
                    None => reply.err(None, &ApiError::internal(format!("the {actor} actor is not running"))),
                }
            }
            "project" | "executor" => match project_id {
                Some(id) if actor == "project" => {
                    self.send_to_project(id, reply, |reply| project::Panic { reply })
                }
                Some(id) => {
                    self.send_to_project(id, reply, |reply| project::PanicExecutor { reply })
                }
                None => reply.err(None, &ApiError::validation(format!("fault_inject for '{actor}' needs a project_id"))),
            },
            _ => reply.err(
                None,
                &ApiError::new(
                    Code::ValidationFailed,
                    "'actor' must be one of project, executor, broadcast, health, registry, connection",
                ),
            ),
        }
    }
}

/// Fault injection into the connection actor itself.
#[derive(Message)]
#[rtype(result = "()")]
struct InjectedPanic;

impl Handler<InjectedPanic> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, _: InjectedPanic, _: &mut Context<Self>) {
        panic!("fault injected into connection actor {}", self.id);
    }
}
