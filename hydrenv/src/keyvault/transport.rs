//! The HTTP client hydrenv talks to Azure (Key Vault and the identity endpoint) with: reqwest
//! over rustls with the `ring` provider (the workspace's, not aws-lc-rs), HTTP/1.1, no redirects,
//! no proxy discovery, certificates always verified.
//!
//! Production trusts the Mozilla roots (`webpki-roots`, so the image needs no CA bundle). Tests
//! against the mock vault trust *only* the mock's test CA and resolve the vault host to loopback
//! ([`http_client_for_test_ca`]): TLS is verified exactly as against Azure, nothing is weakened,
//! and no environment variable or flag can switch this on in production.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Bound on establishing a TCP + TLS connection; a whole fetch is bounded by
/// [`FetchOptions::timeout`](super::FetchOptions::timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn builder(roots: RootCertStore) -> Result<reqwest::ClientBuilder, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy())
}

fn build(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, String> {
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The production client: Mozilla roots.
pub fn default_http_client() -> Result<reqwest::Client, String> {
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    build(builder(roots)?)
}

/// A client that trusts only the CA in `ca_pem` and sends each `(host, address)` pair's host to
/// that address: for tests against a local vault serving a certificate from a test CA.
pub fn http_client_for_test_ca(
    ca_pem: &str,
    resolve: &[(&str, SocketAddr)],
) -> Result<reqwest::Client, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("test CA: {e}"))?;
        roots.add(cert).map_err(|e| format!("test CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err("test CA: no certificate in the PEM text".to_owned());
    }
    let mut builder = builder(roots)?;
    for (host, addr) in resolve {
        builder = builder.resolve(host, *addr);
    }
    build(builder)
}
