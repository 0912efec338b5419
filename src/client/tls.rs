//! TLS for a `wss://` daemon: rustls (the ring provider the daemon uses too), trusting the
//! certificate authorities of `AGENTVISOR_CA_FILE` when it is set (a daemon with its own,
//! self-signed certificate), otherwise the system's bundle (`SSL_CERT_FILE`, or the usual
//! places Debian, Fedora and Alpine keep it).

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use super::Failure;

/// Where systems keep their CA bundle.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The TLS settings for `url`: `None` for `ws://`.
pub fn for_url(url: &str) -> Result<Option<Arc<ClientConfig>>, Failure> {
    if !url.starts_with("wss://") {
        return Ok(None);
    }
    let file = std::env::var_os("AGENTVISOR_CA_FILE")
        .or_else(|| std::env::var_os("SSL_CERT_FILE"))
        .map(std::path::PathBuf::from)
        .or_else(|| {
            SYSTEM_BUNDLES
                .iter()
                .map(Path::new)
                .find(|p| p.exists())
                .map(Path::to_path_buf)
        })
        .ok_or_else(|| {
            Failure::Usage(
                "no CA certificates found for wss://: set AGENTVISOR_CA_FILE to a PEM file".into(),
            )
        })?;
    let roots = load_roots(&file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::Usage(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

fn load_roots(file: &Path) -> Result<RootCertStore, Failure> {
    let bad = |why: String| {
        Failure::Usage(format!(
            "cannot use {} as CA certificates: {why}",
            file.display()
        ))
    };
    let pem = std::fs::read(file).map_err(|e| bad(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        // A bundle may hold certificates rustls cannot use; the others still count.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(bad("it holds no usable certificate".into()));
    }
    Ok(roots)
}
