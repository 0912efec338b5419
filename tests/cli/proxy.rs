//! A TCP proxy between the command-line client and the daemon, for the tests that break the
//! network on purpose: it can cut every connection after a while, drop the connection at the
//! moment a given reply passes (so the reply is lost), refuse connections for a time, and point
//! at a new daemon port after a restart.

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
    let (mut ci, mut co) = client.into_split();
    let (mut ui, mut uo) = upstream.into_split();
    let up = tokio::io::copy(&mut ci, &mut uo);
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut tail = Vec::new();
        loop {
            let n = match ui.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // The chunk with the end of the previous one: a needle split across reads is seen.
            tail.extend_from_slice(&buf[..n]);
            if swallow_hit(&s, &tail) {
                return;
            }
            let keep = tail.len().saturating_sub(256);
            tail.drain(..keep);
            if co.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let ms = s.cut_after_ms.load(Ordering::SeqCst);
    let cut = async {
        if ms == 0 {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
    };
    tokio::select! {
        _ = up => {}
        () = down => {}
        () = cut => { s.cuts.fetch_add(1, Ordering::SeqCst); }
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
