//! The broadcast actor: who is subscribed to which project, and fan-out of project events.
//!
//! Each event arrives already encoded (a [`Frame`]); fan-out hands the same reference-counted
//! bytes to every subscriber, so an event is serialised once however many clients watch.
//! Messages from a project arrive here in the order the project sent them, which is what makes
//! "replay, then live" gap-free: a join carries its replay, and every event after it is queued
//! behind it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;

pub use crate::api::broadcast::{Disconnect, Panic, ProjectGone, Publish, Subscribe, Unsubscribe};

use crate::api::connection::{Deliver, Mark};
use crate::api::supervisor::{ChildGuard, ChildId, SupervisorHandle};
use crate::engine::Engine;

type Subscriber = (u64, Recipient<Deliver>);

pub struct BroadcastActor {
    engine: Arc<Engine>,
    subs: HashMap<Arc<str>, Vec<Subscriber>>,
    by_conn: HashMap<u64, HashSet<Arc<str>>>,
    _guard: ChildGuard,
}

impl BroadcastActor {
    pub fn new(engine: Arc<Engine>, sup: Option<SupervisorHandle>) -> Self {
        BroadcastActor {
            engine,
            subs: HashMap::new(),
            by_conn: HashMap::new(),
            _guard: ChildGuard::new(ChildId::Broadcast, sup),
        }
    }

    fn add(&mut self, project: &Arc<str>, conn: u64, r: Recipient<Deliver>) {
        let list = self.subs.entry(project.clone()).or_default();
        if !list.iter().any(|(c, _)| *c == conn) {
            list.push((conn, r));
            self.by_conn
                .entry(conn)
                .or_default()
                .insert(project.clone());
        }
        self.engine
            .directory
            .set_subscriber_count(project, list.len());
    }

    fn remove(&mut self, project: &Arc<str>, conn: u64) {
        if let Some(list) = self.subs.get_mut(project) {
            list.retain(|(c, _)| *c != conn);
            let n = list.len();
            if n == 0 {
                self.subs.remove(project);
            }
            self.engine.directory.set_subscriber_count(project, n);
        }
        if let Some(set) = self.by_conn.get_mut(&conn) {
            set.remove(project);
            if set.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
    }
}

impl Actor for BroadcastActor {
    type Context = Context<Self>;
}

impl Handler<Publish> for BroadcastActor {
    type Result = ();

    fn handle(&mut self, msg: Publish, _: &mut Self::Context) {
        let Some(project) = msg.0.first().and_then(|f| f.project.clone()) else {
            return;
        };
        if let Some(list) = self.subs.get(&project) {
            let started = std::time::Instant::now();
            // One message per subscriber for the whole batch; the frames are shared, not copied.
            for (_, r) in list {
                r.do_send(Deliver::batch(msg.0.clone()));
            }
            let m = &crate::metrics::METRICS;
            m.deliveries.inc_by((list.len() * msg.0.len()) as u64);
            m.fanout.observe(list.len() as f64);
            m.fanout_seconds.observe(started.elapsed().as_secs_f64());
        }
    }
}

impl Handler<Subscribe> for BroadcastActor {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) {
        // Counted before the join reply goes out, so a client that reads `project_joined` and
        // then lists projects sees itself among the subscribers.
        self.add(&msg.project, msg.conn, msg.recipient.clone());
        for d in msg.lead {
            msg.recipient.do_send(d);
        }
    }
}

impl Handler<Unsubscribe> for BroadcastActor {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Self::Context) {
        self.remove(&msg.project, msg.conn);
        if let Some((r, d)) = msg.reply {
            r.do_send(d);
        }
    }
}

impl Handler<Disconnect> for BroadcastActor {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Self::Context) {
        if let Some(projects) = self.by_conn.remove(&msg.0) {
            for p in projects {
                self.remove(&p, msg.0);
            }
        }
    }
}

impl Handler<ProjectGone> for BroadcastActor {
    type Result = ();

    fn handle(&mut self, msg: ProjectGone, _: &mut Self::Context) {
        if let Some(list) = self.subs.remove(&msg.project) {
            for (conn, r) in list {
                r.do_send(Deliver::marked(
                    msg.notice.clone(),
                    Mark::Left(msg.project.clone()),
                ));
                if let Some(set) = self.by_conn.get_mut(&conn) {
                    set.remove(&msg.project);
                }
            }
        }
        self.engine.directory.set_subscriber_count(&msg.project, 0);
    }
}

impl Handler<Panic> for BroadcastActor {
    type Result = ();

    fn handle(&mut self, _: Panic, _: &mut Self::Context) {
        panic!("fault injected into the broadcast actor");
    }
}
