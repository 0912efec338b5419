//! What the daemon does when an agent backend's breaker changes state: every client hears
//! of it (`breaker_state`), runs queued for that agent end at once with the breaker's error,
//! and an open breaker wakes itself when its cool-down ends so that the half-open state is
//! announced when it begins, not when the next request happens to look.

use std::sync::Arc;

use crate::api::project::BackendUnavailable;
use crate::breaker::Change;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::storage::metadata::AgentKind;

/// Tells everyone about a change of a breaker's state (nothing when there was none).
pub fn announce(engine: &Arc<Engine>, change: Option<Change>) {
    let Some(change) = change else { return };
    let agent = change.agent;
    log::warn!(agent = agent.as_str(), state = change.view["state"].as_str().unwrap_or(""); "agent circuit breaker changed state");
    let frame = crate::protocol::FrameBuilder::new("breaker_state").encode(&change.view);
    engine
        .directory
        .signal_connections(|| crate::api::connection::ConnectionSignal::Push(frame.clone()));
    let Some(cooldown) = change.opened_for else {
        return;
    };
    crate::metrics::METRICS.breaker_opened(agent.as_str());
    if let (Err(e), _) = engine.breakers.check(agent) {
        end_queued_runs(engine, agent, &e);
    }
    let engine = engine.clone();
    actix_rt::spawn(async move {
        // A little past the instant, so that the breaker is surely due.
        tokio::time::sleep(cooldown + std::time::Duration::from_millis(10)).await;
        let change = engine.breakers.poll(agent);
        announce(&engine, change);
    });
}

fn end_queued_runs(engine: &Engine, agent: AgentKind, e: &ApiError) {
    let msg = BackendUnavailable {
        agent,
        error: e.error.clone(),
    };
    for project in engine.directory.project_addrs() {
        project.do_send(msg.clone());
    }
}
