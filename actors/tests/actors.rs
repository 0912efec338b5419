//! In-process tests of the broadcast and project actors' logic: each actor is started on a test
//! arbiter with a real engine and a temporary data directory, and a collector stands in for a
//! client connection, receiving exactly what a connection would.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use agentvisor_actors::api::broadcast::{
    BroadcastHandle, Disconnect, ProjectGone, Publish, Subscribe,
};
use agentvisor_actors::api::connection::{Deliver, ReplyTo};
use agentvisor_actors::api::project::{Join, Kill, NewSession, ProjectHandle};
use agentvisor_actors::broadcast::BroadcastActor;
use agentvisor_actors::config::EngineConfig;
use agentvisor_actors::engine::Engine;
use agentvisor_actors::project::spawn_project;
use agentvisor_actors::protocol::{Frame, FrameBuilder};
use agentvisor_actors::storage::metadata::{AgentKind, ProjectMeta, ProjectState};
use agentvisor_actors::storage::project_dir;
use serde_json::Value;
use tokio::sync::mpsc;

/// Stands in for a connection: every frame it is delivered goes to a channel.
struct Collector(mpsc::UnboundedSender<Frame>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Deliver> for Collector {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        for f in msg.frames() {
            let _ = self.0.send(f.clone());
        }
    }
}

fn collector() -> (Recipient<Deliver>, mpsc::UnboundedReceiver<Frame>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Collector(tx).start().recipient(), rx)
}

/// The next frame as JSON, failing after a generous wait.
async fn next(rx: &mut mpsc::UnboundedReceiver<Frame>) -> Value {
    let f = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a frame within 10 s")
        .expect("the channel stays open");
    serde_json::from_str(&f.text).expect("frames are JSON")
}

/// No frame arrives within a short wait (the collector may also have stopped: a dropped
/// subscription was its last address).
async fn nothing_more(rx: &mut mpsc::UnboundedReceiver<Frame>) {
    let got = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
    assert!(!matches!(got, Ok(Some(_))), "unexpected frame: {got:?}");
}

fn engine(dir: &tempfile::TempDir) -> Arc<Engine> {
    let data = dir.path().join("data");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    Engine::new(EngineConfig::for_tests(data, root))
}

fn event(project: &Arc<str>, seq: u64) -> Frame {
    FrameBuilder::new("agent_message")
        .project(project)
        .encode(&serde_json::json!({"n": seq}))
}

fn start_broadcast(engine: &Arc<Engine>) -> BroadcastHandle {
    let b = BroadcastHandle::of(&BroadcastActor::new(engine.clone(), None).start());
    engine.directory.set_broadcast(Some(b.clone()));
    b
}

#[actix_rt::test]
async fn broadcast_sends_the_lead_then_events_only_to_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir);
    let b = start_broadcast(&engine);
    let p: Arc<str> = Arc::from("p1");
    let other: Arc<str> = Arc::from("p2");
    let (r1, mut rx1) = collector();
    let (r2, mut rx2) = collector();
    let lead = Deliver::plain(FrameBuilder::new("project_joined").encode(&serde_json::json!({})));
    b.do_send(Subscribe {
        project: p.clone(),
        conn: 1,
        recipient: r1,
        lead: vec![lead],
    });
    b.do_send(Subscribe {
        project: other.clone(),
        conn: 2,
        recipient: r2,
        lead: Vec::new(),
    });
    b.do_send(Publish(vec![event(&p, 1), event(&p, 2)].into()));

    assert_eq!(next(&mut rx1).await["type"], "project_joined");
    assert_eq!(next(&mut rx1).await["data"]["n"], 1);
    assert_eq!(next(&mut rx1).await["data"]["n"], 2);
    nothing_more(&mut rx2).await;
    assert_eq!(engine.directory.subscriber_count("p1"), 1);
}

#[actix_rt::test]
async fn broadcast_forgets_a_disconnected_client_and_a_deleted_project() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir);
    let b = start_broadcast(&engine);
    let p: Arc<str> = Arc::from("p1");
    let (r1, mut rx1) = collector();
    let (r2, mut rx2) = collector();
    b.do_send(Subscribe {
        project: p.clone(),
        conn: 1,
        recipient: r1,
        lead: Vec::new(),
    });
    b.do_send(Subscribe {
        project: p.clone(),
        conn: 2,
        recipient: r2,
        lead: Vec::new(),
    });
    b.do_send(Disconnect(1));
    b.do_send(Publish(vec![event(&p, 1)].into()));
    assert_eq!(next(&mut rx2).await["data"]["n"], 1);
    nothing_more(&mut rx1).await;
    assert_eq!(engine.directory.subscriber_count("p1"), 1);

    let notice = FrameBuilder::new("project_deleted")
        .project(&p)
        .encode(&serde_json::json!({}));
    b.do_send(ProjectGone {
        project: p.clone(),
        notice,
    });
    b.do_send(Publish(vec![event(&p, 2)].into()));
    assert_eq!(next(&mut rx2).await["type"], "project_deleted");
    nothing_more(&mut rx2).await;
    assert_eq!(engine.directory.subscriber_count("p1"), 0);
}

fn project(engine: &Arc<Engine>, dir: &tempfile::TempDir) -> ProjectHandle {
    let path = dir.path().join("root").join("work");
    std::fs::create_dir_all(&path).unwrap();
    let meta = ProjectMeta {
        id: "proj".into(),
        path,
        name: "work".into(),
        agent: AgentKind::parse("claude").unwrap(),
        session_id: Some("old-session".into()),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        last_active: "2026-01-01T00:00:00.000Z".into(),
        state: ProjectState::Idle,
        active_run: None,
        approvals: false,
    };
    std::fs::create_dir_all(project_dir(&engine.config.data_dir, "proj")).unwrap();
    meta.save(&engine.config.data_dir).unwrap();
    ProjectHandle::of(&spawn_project(engine, meta, None).unwrap())
}

/// Where a test request's answer goes: request `r1` of connection 7.
fn reply(recipient: &Recipient<Deliver>) -> ReplyTo {
    ReplyTo::new(7, recipient.clone(), Some("r1".into()))
}

#[actix_rt::test]
async fn project_join_replies_then_streams_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir);
    start_broadcast(&engine);
    let p = project(&engine, &dir);
    let (r, mut rx) = collector();

    p.do_send(Join {
        reply: reply(&r),
        since_seq: None,
    });
    let joined = next(&mut rx).await;
    assert_eq!(joined["type"], "project_joined");
    assert_eq!(joined["id"], "r1");

    p.do_send(NewSession { reply: reply(&r) });
    // The subscriber sees the stored event, and the requester its reply.
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let f = next(&mut rx).await;
        assert_eq!(f["data"]["old_session_id"], "old-session");
        kinds.push((f["type"].clone(), f.get("seq").is_some()));
    }
    assert!(kinds.contains(&("session_reset".into(), true)), "{kinds:?}");
    let meta = ProjectMeta::load(&engine.config.data_dir, "proj").unwrap();
    assert_eq!(meta.session_id, None);
}

#[actix_rt::test]
async fn project_refuses_to_kill_when_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&dir);
    start_broadcast(&engine);
    let p = project(&engine, &dir);
    let (r, mut rx) = collector();

    p.do_send(Kill {
        reply: reply(&r),
        clear_queue: false,
    });
    let reply = next(&mut rx).await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["id"], "r1");
    assert_eq!(reply["data"]["code"], "NO_ACTIVE_RUN", "{reply}");
}
