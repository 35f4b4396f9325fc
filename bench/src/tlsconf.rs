//! rustls client configurations (ring provider only; see FACTS.md) trusting the bench's own
//! certificate authority.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem)
        .with_context(|| format!("cannot read {}", ca_pem.display()))?
    {
        roots.add(cert?)?;
    }
    Ok(roots)
}

/// TLS over TCP (TLS 1.2 or 1.3, whatever the peer prefers) trusting `ca_pem`.
pub fn tcp_client(ca_pem: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// TLS 1.3 for QUIC trusting one certificate (DER), with `alpn`.
pub fn quic_client(cert_der: Vec<u8>, alpn: &[u8]) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(cert_der))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

/// A self-signed certificate for `localhost` and TLS 1.3 server config for QUIC.
pub fn quic_server(alpn: &[u8]) -> Result<(rustls::ServerConfig, Vec<u8>)> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let der = ck.cert.der().to_vec();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(der.clone())], key.into())?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok((cfg, der))
}
