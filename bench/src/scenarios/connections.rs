//! `connections`: open N idle WebSockets, hold them through heartbeats, and measure the daemon's
//! resident memory per connection and the connect rate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{connect, request};
use crate::daemon::{Daemon, Opts};
use crate::report::{r2, r3, Outcome};
use crate::stats::{us, Summary};
use crate::{err, Paths, Res};

/// The most connections this scenario opens.
pub const MAX_N: usize = 10_000;

#[derive(clap::Args, Debug, Clone)]
pub struct Params {
    /// Connections to open (1 to 10 000).
    #[arg(long, default_value_t = 10_000)]
    pub n: usize,
    /// Seconds to hold them once all are open.
    #[arg(long, default_value_t = 15)]
    pub hold: u64,
    /// The daemon's ping interval, in seconds (so pings happen during the hold).
    #[arg(long, default_value_t = 5)]
    pub ping_interval: u64,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
}

struct Held {
    connect_us: u32,
    pings: u32,
    alive: bool,
}

pub async fn run(paths: &Paths, p: &Params) -> Res<Outcome> {
    if p.n == 0 || p.n > MAX_N {
        return Err(err(format!("--n must be between 1 and {MAX_N}")));
    }
    let nofile = crate::NOFILE.load(std::sync::atomic::Ordering::Relaxed);
    let mut opts = Opts::new(p.n + 64)
        .env(
            "AGENTVISOR_PING_INTERVAL",
            format!("{}s", p.ping_interval.max(1)),
        )
        .env("AGENTVISOR_PONG_TIMEOUT", "30s");
    opts.nofile = Some(nofile);
    let mut d = Daemon::start(paths, opts).await?;
    let port = d.port;

    // Warm up: one connection and request, so the baseline includes what the first one allocates.
    {
        let mut ws = connect(port, "/ws").await?;
        request(
            &mut ws,
            &json!({"type": "ping", "id": "warm"}),
            Instant::now() + Duration::from_secs(10),
        )
        .await?;
        let _ = ws.close(None).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base_kib = d.rss_kib()?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let connected = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let sem = Arc::new(Semaphore::new(p.concurrency.max(1)));
    let connect_deadline = Instant::now() + Duration::from_secs(120);
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(p.n);
    for _ in 0..p.n {
        let sem = sem.clone();
        let connected = connected.clone();
        let failed = failed.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.map_err(|e| err(e.to_string()))?;
            let c0 = Instant::now();
            let ws = tokio::time::timeout_at(connect_deadline.into(), connect(port, "/ws")).await;
            drop(permit);
            let mut ws = match ws {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => {
                    failed.fetch_add(1, Ordering::AcqRel);
                    return Err(e);
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::AcqRel);
                    return Err(err("connect timed out"));
                }
            };
            let connect_us = us(c0.elapsed());
            connected.fetch_add(1, Ordering::AcqRel);
            let mut pings = 0u32;
            // Hold: read (which answers pings) until told to stop.
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    m = ws.next() => match m {
                        Some(Ok(Message::Ping(_))) => pings += 1,
                        Some(Ok(Message::Close(c))) => {
                            return Err(err(format!("closed by the server during the hold: {c:?}")))
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(e.into()),
                        None => return Err(err("connection lost during the hold")),
                    },
                }
            }
            // Still served? A request must be answered.
            let alive = request(
                &mut ws,
                &json!({"type": "ping", "id": "alive"}),
                Instant::now() + Duration::from_secs(60),
            )
            .await
            .is_ok();
            let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(None)).await;
            Ok(Held {
                connect_us,
                pings,
                alive,
            })
        }));
    }
    while connected.load(Ordering::Acquire) + failed.load(Ordering::Acquire) < p.n {
        d.check_alive()?;
        if Instant::now() > connect_deadline + Duration::from_secs(5) {
            return Err(err("connections did not complete in time"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let connect_s = t0.elapsed().as_secs_f64();
    let opened = connected.load(Ordering::Acquire);

    // Hold, sampling memory once a second.
    let hold_end = Instant::now() + Duration::from_secs(p.hold);
    let mut max_kib = d.rss_kib()?;
    let mut last_kib = max_kib;
    while Instant::now() < hold_end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        d.check_alive()?;
        last_kib = d.rss_kib()?;
        max_kib = max_kib.max(last_kib);
    }
    let _ = stop_tx.send(true);
    let mut connect_lat = Vec::with_capacity(p.n);
    let (mut alive, mut pings_min, mut pings_total, mut lost) = (0usize, u32::MAX, 0u64, 0usize);
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(h)) => {
                connect_lat.push(h.connect_us);
                alive += usize::from(h.alive);
                pings_min = pings_min.min(h.pings);
                pings_total += u64::from(h.pings);
            }
            Ok(Err(e)) => {
                lost += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(e) => {
                lost += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    d.check_alive()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_close_kib = d.rss_kib()?;
    d.stop().await?;

    let lat = Summary::from_us(&mut connect_lat);
    let per_conn = |kib: u64| (kib.saturating_sub(base_kib) as f64 * 1024.0) / opened.max(1) as f64;
    let per_conn_bytes = per_conn(last_kib);
    let rate = opened as f64 / connect_s;
    let pings_min = if pings_min == u32::MAX { 0 } else { pings_min };
    let summary = vec![
        format!(
            "{opened}/{} connected in {connect_s:.2}s ({rate:.0} connections/s); connect {}",
            p.n,
            lat.line()
        ),
        format!(
            "daemon RSS: baseline {base_kib} KiB, held {last_kib} KiB (max {max_kib}), after close {after_close_kib} KiB"
        ),
        format!(
            "=> {:.0} bytes ({:.1} KiB) resident per idle connection (max sample {:.1} KiB)",
            per_conn_bytes,
            per_conn_bytes / 1024.0,
            per_conn(max_kib) / 1024.0
        ),
        format!(
            "held {}s: {alive} answered a request afterwards, {lost} lost; pings per connection: min {pings_min}, mean {:.1}{}",
            p.hold,
            pings_total as f64 / (p.n - lost).max(1) as f64,
            first_error.as_deref().map(|e| format!("; first error: {e}")).unwrap_or_default()
        ),
    ];
    Ok(Outcome {
        params: json!({"n": p.n, "hold_s": p.hold, "ping_interval_s": p.ping_interval,
            "concurrency": p.concurrency, "nofile": nofile}),
        results: json!({
            "opened": opened,
            "failed": p.n - opened,
            "lost_during_hold": lost,
            "alive_after_hold": alive,
            "connect_s": r3(connect_s),
            "connects_per_s": r2(rate),
            "connect_latency": lat.json(),
            "rss_baseline_kib": base_kib,
            "rss_held_kib": last_kib,
            "rss_held_max_kib": max_kib,
            "rss_after_close_kib": after_close_kib,
            "rss_per_connection_bytes": r2(per_conn_bytes),
            "rss_per_connection_max_bytes": r2(per_conn(max_kib)),
            "pings_per_connection_min": pings_min,
            "first_error": first_error,
        }),
        summary,
    })
}
