//! Black-box tests of how the daemon serves the web console: the page and its files, the
//! Content-Security-Policy and other security headers, ETag revalidation, and the page's
//! configuration document. (The console's behaviour in a browser is tested by
//! scripts/test-console.sh.)

mod common;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A response: status, lower-cased head, body.
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(str::trim)
        })
    }
}

/// A GET with extra headers, read to the end (the connection is closed by the request).
async fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    Response {
        status: head[9..12].parse().unwrap(),
        head,
        body: buf[end + 4..].to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_files_come_with_a_strict_policy_and_revalidate() {
    let d = Daemon::start();
    let page = get(d.port, "/", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("content-security-policy"), Some(CSP));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("x-frame-options"), Some("deny"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(html.contains(r#"<script type="module" src="/console/js/main.js">"#));

    // Every file the page names is served, with its type; the whole first load stays small.
    let mut total = page.body.len();
    for (path, kind) in [
        ("/console/style.css", "text/css"),
        ("/console/icon.svg", "image/svg+xml"),
        ("/console/js/main.js", "text/javascript"),
        ("/console/js/render.js", "text/javascript"),
    ] {
        let r = get(d.port, path, &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
        assert_eq!(r.header("content-security-policy"), Some(CSP), "{path}");
        total += r.body.len();
    }
    assert!(total < 150 * 1024, "{total} bytes");

    // Same content, same tag: 304 without a body.
    let tag = page.header("etag").unwrap().to_string();
    let again = get(d.port, "/", &[("If-None-Match", &tag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(
        get(d.port, "/", &[("If-None-Match", "\"other\"")])
            .await
            .status,
        200
    );

    for missing in ["/console/nope.js", "/console/../Cargo.toml", "/console/"] {
        assert_eq!(get(d.port, missing, &[]).await.status, 404, "{missing}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_learns_whether_to_ask_for_a_token() {
    let open = Daemon::start();
    let r = get(open.port, "/console/config.json", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["auth"], "none");

    let guarded = Daemon::builder()
        .env("AGENTVISOR_TOKEN", "web-test-token-0123456789")
        .start();
    let r = get(guarded.port, "/console/config.json", &[]).await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["auth"], "token");
    // The page itself needs no token: it is what asks for one.
    assert_eq!(get(guarded.port, "/", &[]).await.status, 200);
}
