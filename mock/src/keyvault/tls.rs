//! A throw-away certificate authority made at start-up (rcgen) and a server certificate it signs
//! for `*.vault.azure.net`, `localhost` and `127.0.0.1`, so a client that trusts only this CA and
//! resolves a vault host to loopback talks real, fully verified TLS to the mock vault.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Host names the server certificate covers.
const SERVER_NAMES: &[&str] = &["*.vault.azure.net", "localhost"];

/// The CA (what a test trusts) and the server side of TLS.
pub(crate) struct TestTls {
    pub(crate) ca_pem: String,
    pub(crate) ca_der: Vec<u8>,
    pub(crate) server: Arc<rustls::ServerConfig>,
}

fn tls_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("mock Key Vault TLS: {error}"))
}

/// Makes a fresh CA and a server certificate signed by it.
pub(crate) fn generate() -> io::Result<TestTls> {
    let mut ca_params = CertificateParams::default();
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, "mock Key Vault test CA");
    ca_params.distinguished_name = ca_name;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(tls_error)?)
        .map_err(tls_error)?;

    let names: Vec<String> = SERVER_NAMES.iter().map(|name| (*name).to_owned()).collect();
    let mut server_params = CertificateParams::new(names).map_err(tls_error)?;
    server_params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let mut server_name = DistinguishedName::new();
    server_name.push(DnType::CommonName, "mock.vault.azure.net");
    server_params.distinguished_name = server_name;
    server_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().map_err(tls_error)?;
    let server_cert = server_params
        .signed_by(&server_key, &ca)
        .map_err(tls_error)?;

    let chain = vec![
        CertificateDer::from(server_cert.der().to_vec()),
        CertificateDer::from(ca.der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TestTls {
        ca_pem: ca.pem(),
        ca_der: ca.der().to_vec(),
        server: Arc::new(server),
    })
}
