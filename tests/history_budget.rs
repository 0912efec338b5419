//! No history request makes the daemon do unbounded work or hold the thread the actors share
//! (`docs/security.md`, "Bounded work per request"): a page stops at its scan budget or its byte
//! budget with `has_more` and where to go on, paging that way yields every record exactly once,
//! and a client looping heavy queries beside a live run on another project does not hold that
//! run up.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {v}"))
}

/// One `get_messages` reply's data, checked for its shape.
async fn page(c: &mut Client, project: &str, mut query: Value) -> Value {
    query["project_id"] = json!(project);
    let r = c.call("get_messages", query.clone()).await;
    assert_eq!(r["type"], "messages", "{query}: {r}");
    let d = r["data"].clone();
    assert!(d["has_more"].is_boolean() && d["next_seq"].is_u64(), "{d}");
    d
}

fn seqs(d: &Value) -> Vec<u64> {
    d["messages"].as_array().unwrap().iter().map(seq).collect()
}

/// Pages forward from `since_seq: 0` with each page's `next_seq`; returns every record's seq
/// and how many pages it took (asserting that each page moves on).
async fn walk_forward(c: &mut Client, project: &str, extra: Value) -> (Vec<u64>, usize) {
    let (mut got, mut since, mut pages) = (Vec::new(), 0, 0);
    loop {
        let mut q = extra.clone();
        q["since_seq"] = json!(since);
        let d = page(c, project, q).await;
        pages += 1;
        got.extend(seqs(&d));
        if d["has_more"] != true {
            return (got, pages);
        }
        let next = d["next_seq"].as_u64().unwrap();
        assert!(next > since, "a page with more after it must move on: {d}");
        since = next;
    }
}

/// Pages backward from the latest records with each page's `before_seq`; every record's seq.
async fn walk_backward(c: &mut Client, project: &str, query: Value) -> Vec<u64> {
    c.messages_all(project, query)
        .await
        .iter()
        .map(seq)
        .collect()
}

/// Runs `prompt` to its end on `project`; returns the run's `run_finished`.
async fn run(c: &mut Client, project: &str, prompt: &str) -> Value {
    let r = c.run(project, prompt).await;
    assert_eq!(r["data"]["status"], "completed", "{r}");
    r
}

#[tokio::test]
async fn a_page_of_large_records_stops_at_the_byte_budget_and_pages_on() {
    let d = Daemon::builder()
        .env("AGENTVISOR_HISTORY_PAGE_BYTES", "65536")
        .start();
    let mut c = d.client().await;
    let p = c.create_project(&d.project_dir("big")).await;
    c.join(&p).await;
    run(&mut c, &p, "mock:lines count=300 bytes=4000").await;
    let last = c.project(&p).await["last_seq"].as_u64().unwrap();
    assert!(last > 300);

    let first = page(&mut c, &p, json!({"since_seq": 0, "limit": 1000})).await;
    let bytes: usize = first["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.to_string().len())
        .sum();
    let n = seqs(&first).len();
    assert!(n > 1 && n < 20, "{n} records of about 4 kB in a 64 kB page");
    assert!(bytes <= 65536, "{bytes} bytes in a 64 kB page");
    assert_eq!(first["has_more"], true);
    assert_eq!(first["next_seq"].as_u64(), seqs(&first).last().copied());

    let all: Vec<u64> = (1..=last).collect();
    let (forward, pages) = walk_forward(&mut c, &p, json!({"limit": 1000})).await;
    assert_eq!(forward, all, "forward paging: every record exactly once");
    assert!(pages > 15, "{pages} pages");
    let backward = walk_backward(&mut c, &p, json!({"limit": 1000})).await;
    assert_eq!(backward, all, "backward paging: every record exactly once");
}

#[tokio::test]
async fn a_filter_over_mostly_other_records_stops_at_the_scan_budget_and_continues() {
    let d = Daemon::builder()
        .env("AGENTVISOR_HISTORY_SCAN_RECORDS", "500")
        .start();
    let mut c = d.client().await;
    let p = c.create_project(&d.project_dir("sparse")).await;
    c.join(&p).await;
    for _ in 0..3 {
        run(&mut c, &p, "mock:lines count=2000").await;
    }
    // The prompts as they were broadcast (a latest-first query is itself cut before them).
    let prompts: Vec<u64> = c
        .pending()
        .iter()
        .filter(|m| m["type"] == "prompt")
        .map(seq)
        .collect();
    assert_eq!(prompts.len(), 3);

    // Forward from the first prompt: thousands of agent lines before the next one. The page is
    // cut at the budget before any match, and says where to go on.
    let cut = page(
        &mut c,
        &p,
        json!({"direction": "client", "since_seq": prompts[0]}),
    )
    .await;
    assert!(seqs(&cut).is_empty(), "{cut}");
    assert_eq!(cut["has_more"], true);
    let next = cut["next_seq"].as_u64().unwrap();
    assert!(next > prompts[0] + 400 && next < prompts[1], "{cut}");

    let (forward, pages) = walk_forward(&mut c, &p, json!({"direction": "client"})).await;
    assert_eq!(
        forward, prompts,
        "forward paging: every prompt exactly once"
    );
    assert!(pages >= 6000 / 700, "{pages} pages");
    let backward = walk_backward(&mut c, &p, json!({"direction": "client"})).await;
    assert_eq!(
        backward, prompts,
        "backward paging: every prompt exactly once"
    );
    // `since` far back, the same way.
    let since = json!({"direction": "client", "since": "2000-01-01T00:00:00Z"});
    let d0 = page(&mut c, &p, since).await;
    let mut got = seqs(&d0);
    let mut more = (d0["has_more"] == true).then(|| d0["next_seq"].as_u64().unwrap());
    while let Some(after) = more {
        let d = page(
            &mut c,
            &p,
            json!({"direction": "client", "since_seq": after}),
        )
        .await;
        got.extend(seqs(&d));
        more = (d["has_more"] == true).then(|| d["next_seq"].as_u64().unwrap());
    }
    assert_eq!(
        got, prompts,
        "paging from `since`: every prompt exactly once"
    );
}

#[tokio::test]
async fn a_run_asked_for_during_a_replay_follows_it_without_gap_or_duplicate() {
    let d = Daemon::start();
    let mut c = d.client().await;
    let p = c.create_project(&d.project_dir("order")).await;
    c.join(&p).await;
    run(&mut c, &p, "mock:lines count=2500 bytes=2500").await;
    let last = c.project(&p).await["last_seq"].as_u64().unwrap();

    let mut o = d.client().await;
    // A replay read off the actors' thread, and a run asked for before it is done.
    let join = o
        .request("project_join", json!({"project_id": p, "since_seq": 0}))
        .await;
    let exec = o
        .request(
            "execute",
            json!({"project_id": p, "prompt": "mock:lines count=50"}),
        )
        .await;
    let mut seen: Vec<u64> = Vec::new();
    let (mut order, mut run) = (Vec::new(), Value::Null);
    loop {
        let m = o.recv().await;
        if m["id"] == join.as_str() {
            assert_eq!(m["type"], "project_joined", "{m}");
            assert_eq!(m["data"]["recovered"], true, "{m}");
            order.push("joined");
        } else if m["id"] == exec.as_str() {
            assert_eq!(m["type"], "execute_accepted", "{m}");
            order.push("accepted");
            run = m["data"]["run_id"].clone();
        } else if let Some(s) = m["seq"].as_u64() {
            seen.push(s);
        }
        if m["type"] == "run_finished" && m["data"]["run_id"] == run {
            break;
        }
    }
    // Both answered (in either order: the join's answer travels with its replay through the
    // broadcast actor, the run's goes straight to the connection).
    order.sort();
    assert_eq!(order, ["accepted", "joined"]);
    let end = *seen.last().unwrap();
    assert!(end > last + 50);
    assert_eq!(
        seen,
        (1..=end).collect::<Vec<_>>(),
        "replay then live: no gap, no duplicate"
    );
}

/// Reads until the answer to `id`, dropping everything else (replayed and live events).
async fn answer(c: &mut Client, id: &str) -> Value {
    loop {
        let m = c.recv().await;
        if m["id"] == id {
            return m;
        }
    }
}

/// What one abusing client saw.
#[derive(Default)]
struct Abuse {
    answered: usize,
    cut_empty: usize,
    cut_by_size: usize,
    replays: usize,
}

/// Loops the heaviest history requests there are against `project` until `stop` is set (and at
/// least once through them all).
async fn abuse(port: u16, project: String, stop: Arc<AtomicBool>) -> Abuse {
    let mut c = Client::connect(port).await;
    let mut seen = Abuse::default();
    let queries = [
        json!({"direction": "client", "since_seq": 1, "limit": 1000}),
        json!({"limit": 1000}),
        json!({"direction": "system", "since": "2000-01-01T00:00:00Z", "limit": 1000}),
        json!({"direction": "client", "before_seq": 999_999, "limit": 1000}),
    ];
    let mut i = 0;
    // At least one full round of every kind of request, however slow the machine.
    while i < 5 || !stop.load(Ordering::Relaxed) {
        if i % 5 == 4 {
            let id = c
                .request(
                    "project_join",
                    json!({"project_id": project, "since_seq": 0}),
                )
                .await;
            let r = answer(&mut c, &id).await;
            assert_eq!(r["type"], "project_joined", "{r}");
            seen.replays += 1;
            let id = c
                .request("project_leave", json!({"project_id": project}))
                .await;
            answer(&mut c, &id).await;
        } else {
            let mut q = queries[i % 5].clone();
            q["project_id"] = json!(project);
            let id = c.request("get_messages", q).await;
            let r = answer(&mut c, &id).await;
            if r["type"] == "messages" {
                let d = &r["data"];
                let n = d["messages"].as_array().unwrap().len();
                seen.cut_empty += usize::from(n == 0 && d["has_more"] == true);
                seen.cut_by_size += usize::from(n > 0 && n < 1000 && d["has_more"] == true);
            }
        }
        seen.answered += 1;
        i += 1;
    }
    seen
}

/// Times `rounds` runs on `project`: from `execute` to `execute_accepted`, and to the run's
/// first output line.
async fn time_runs(c: &mut Client, project: &str, rounds: usize) -> (Vec<Duration>, Vec<Duration>) {
    let (mut accepted, mut output) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let run = c.execute(project, "mock:lines count=3").await;
        accepted.push(t.elapsed());
        c.recv_where(|m| m["type"] == "agent_message" && m["data"]["run_id"] == run.as_str())
            .await;
        output.push(t.elapsed());
        c.finished(&run).await;
    }
    (accepted, output)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_history_queries_do_not_hold_up_another_projects_run() {
    let d = Daemon::start();
    let mut c = d.client().await;
    let heavy = c.create_project(&d.project_dir("heavy")).await;
    let live = c.create_project(&d.project_dir("live")).await;
    c.join(&heavy).await;
    c.join(&live).await;
    // About 32 MB of agent lines around a prompt: more than a page may read or send.
    run(&mut c, &heavy, "mock:lines count=8000 bytes=4000").await;

    let (base_accepted, base_output) = time_runs(&mut c, &live, 10).await;
    let stop = Arc::new(AtomicBool::new(false));
    let abusers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(abuse(d.port, heavy.clone(), stop.clone())))
        .collect();
    // Let the abuse get going first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (accepted, output) = time_runs(&mut c, &live, 10).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Abuse::default();
    for a in abusers {
        let one = a.await.unwrap();
        seen.answered += one.answered;
        seen.cut_empty += one.cut_empty;
        seen.cut_by_size += one.cut_by_size;
        seen.replays += one.replays;
    }
    assert!(seen.answered >= 10 && seen.replays >= 2);
    assert!(
        seen.cut_empty > 0,
        "a filtered page was never cut at the scan budget"
    );
    assert!(
        seen.cut_by_size > 0,
        "a page of large records was never cut at the byte budget"
    );

    // Generous against the baseline: the machine is shared, and the abusers' own decoding takes
    // CPU; what must not happen is runs waiting behind reads on the actors' thread.
    let (ba, bo) = (median(base_accepted), median(base_output));
    let (a, o) = (median(accepted), median(output));
    eprintln!(
        "execute_accepted {ba:?} -> {a:?}, first output {bo:?} -> {o:?}, abuse answered {} \
         ({} empty cut pages, {} cut by size, {} replays)",
        seen.answered, seen.cut_empty, seen.cut_by_size, seen.replays
    );
    let allowed = |base: Duration| base * 5 + Duration::from_millis(100);
    assert!(
        a <= allowed(ba),
        "execute_accepted: median {a:?} under abuse, {ba:?} before"
    );
    assert!(
        o <= allowed(bo),
        "first output: median {o:?} under abuse, {bo:?} before"
    );
}
