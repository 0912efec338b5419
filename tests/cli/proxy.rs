//! A TCP proxy between the command-line client and the daemon, for the tests that break the
//! network on purpose: it can cut every connection after a while, drop the connection at the
//! moment a given reply passes (so the reply is lost), freeze connections (open, but nothing
//! passes: a dead network path), refuse connections for a time, and point at a new daemon port
//! after a restart.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Default)]
struct Shared {
    upstream: AtomicU16,
    cut_after_ms: AtomicUsize,
    cuts: AtomicUsize,
    hold: AtomicBool,
    /// Text whose passing from the daemon drops the connection (once), and whether the proxy
    /// then holds new connections off.
    swallow: Mutex<Option<(String, bool)>>,
    swallowed: Notify,
    /// Connections opened so far, and how many of the first ones are frozen.
    opened: AtomicUsize,
    frozen_below: AtomicUsize,
}

pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        shared.upstream.store(upstream, Ordering::SeqCst);
        let s = shared.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if s.hold.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close at once
                }
                tokio::spawn(relay(client, s.clone()));
            }
        });
        Proxy { port, shared }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// Every connection is cut this long after it was opened (`None`: never).
    pub fn cut_every(&self, after: Option<Duration>) {
        let ms = after.map_or(0, |d| d.as_millis() as usize);
        self.shared.cut_after_ms.store(ms, Ordering::SeqCst);
    }

    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    pub fn retarget(&self, upstream: u16) {
        self.shared.upstream.store(upstream, Ordering::SeqCst);
    }

    /// Refuses (closes at once) new connections while on.
    pub fn hold(&self, on: bool) {
        self.shared.hold.store(on, Ordering::SeqCst);
    }

    /// The next time the daemon sends `needle`, that data is not forwarded and the connection is
    /// dropped; with `then_hold`, new connections are refused from that instant on.
    pub fn swallow_once(&self, needle: &str, then_hold: bool) {
        *self.shared.swallow.lock().unwrap() = Some((needle.to_string(), then_hold));
    }

    /// The connections open now pass nothing any more, either way, but stay open (a network
    /// path that died without a reset); later connections work.
    pub fn freeze_open_connections(&self) {
        let opened = self.shared.opened.load(Ordering::SeqCst);
        self.shared.frozen_below.store(opened, Ordering::SeqCst);
    }

    /// Waits until a swallow has happened.
    pub async fn swallowed(&self) {
        self.shared.swallowed.notified().await;
    }
}

async fn relay(client: TcpStream, s: Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", s.upstream.load(Ordering::SeqCst))).await
    else {
        return;
    };
    let number = s.opened.fetch_add(1, Ordering::SeqCst);
    let (ci, co) = client.into_split();
    let (ui, uo) = upstream.into_split();
    let up = pump(ci, uo, &s, number, false);
    let down = pump(ui, co, &s, number, true);
    let ms = s.cut_after_ms.load(Ordering::SeqCst);
    let cut = async {
        if ms == 0 {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
    };
    tokio::select! {
        () = up => {}
        () = down => {}
        () = cut => { s.cuts.fetch_add(1, Ordering::SeqCst); }
    }
}

/// Copies one direction until either side closes. Frozen, it reads and drops. Downstream
/// (`from_daemon`), it watches for the swallow needle, also across chunk boundaries.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    s: &Shared,
    number: usize,
    from_daemon: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if number < s.frozen_below.load(Ordering::SeqCst) {
            continue;
        }
        if from_daemon {
            tail.extend_from_slice(&buf[..n]);
            if swallow_hit(s, &tail) {
                return;
            }
            let keep = tail.len().saturating_sub(256);
            tail.drain(..keep);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn swallow_hit(s: &Shared, seen: &[u8]) -> bool {
    let mut swallow = s.swallow.lock().unwrap();
    let Some((needle, then_hold)) = swallow.as_ref() else {
        return false;
    };
    let hit = seen.windows(needle.len()).any(|w| w == needle.as_bytes());
    if hit {
        if *then_hold {
            s.hold.store(true, Ordering::SeqCst);
        }
        *swallow = None;
        s.swallowed.notify_one();
    }
    hit
}
