//! The web console: the page at `/` and its files under `/console/`, compiled into the binary
//! from `console/` (hand-written modules and CSS, no build step), so the daemon serves it with
//! nothing to install or fetch.
//!
//! Every response carries a Content-Security-Policy that allows scripts, styles and connections
//! from the daemon's own origin only (no inline script, no other host), and an ETag of the file's
//! content: browsers revalidate (`no-cache`) and get a 304 while the binary is the same.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::http::AppState;

/// The policy for every console response: same-origin scripts, styles, images and connections
/// (WebSocket included), nothing inline, no framing, no forms posting elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One file of the console.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../console/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("js/main.js", JS),
    asset!("js/conn.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/markdown.js", JS),
    asset!("js/render.js", JS),
    asset!("js/approvals.js", JS),
    asset!("js/conversation.js", JS),
    asset!("js/projects.js", JS),
    asset!("js/health.js", JS),
];

/// Each asset's ETag, computed once.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                a.body.hash(&mut h);
                format!("\"{:016x}\"", h.finish())
            })
            .collect()
    })
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/console/config.json", web::get().to(config))
        .route("/console/{path:.*}", web::get().to(file));
}

async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, "index.html")
}

async fn file(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    serve(&req, &path)
}

/// What the page must know before it connects: whether to ask for a token. (Whether a token is
/// required is no secret: any WebSocket client finds out.)
async fn config(state: web::Data<AppState>) -> HttpResponse {
    let token = state.engine.config.token.is_some();
    with_headers(HttpResponse::Ok())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "auth": if token { "token" } else { "none" },
            "version": env!("CARGO_PKG_VERSION"),
        }))
}

fn serve(req: &HttpRequest, path: &str) -> HttpResponse {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return with_headers(HttpResponse::NotFound())
            .content_type("text/plain; charset=utf-8")
            .body("not found");
    };
    let (asset, etag) = (&ASSETS[i], &etags()[i]);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = with_headers(if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    });
    r.insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if fresh {
        r.finish()
    } else {
        r.content_type(asset.content_type).body(asset.body)
    }
}

/// The security headers of every console response.
fn with_headers(mut r: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    r.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_small_enough_for_a_fast_first_load() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(total < 150 * 1024, "the console is {total} bytes");
    }

    #[test]
    fn the_page_has_no_inline_script_or_other_host() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        for bad in [
            "<script>", "onclick=", "onload=", "http://", "https://", "style=",
        ] {
            assert!(!html.contains(bad), "index.html holds {bad}");
        }
    }
}
