//! TLS for QUIC: the server certificate (made once with rcgen, or the operator's PEM files),
//! its SHA-256 fingerprint, and the client's trust-on-first-use pinning.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// ALPN protocol id.
pub const ALPN: &[u8] = b"livewire/1";
/// Name in the self-signed certificate and the SNI the client sends.
pub const SERVER_NAME: &str = "livewire";

/// TLS and certificate failures, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A PEM file held nothing usable.
    #[error("{path}: {what}")]
    Pem {
        /// Path.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// rcgen failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The pin file is damaged.
    #[error("{path}:{line}: {what}")]
    PinFile {
        /// Path.
        path: PathBuf,
        /// Line number.
        line: usize,
        /// Problem.
        what: String,
    },
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::File {
        path: path.to_owned(),
        source,
    }
}

/// The ring crypto provider (the one provider this crate compiles in).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `SHA256:` and the lowercase hex SHA-256 of the DER certificate.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(cert.as_ref());
    let mut s = String::with_capacity(7 + 64);
    s.push_str("SHA256:");
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A server's certificate chain and key.
pub struct Identity {
    /// Chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// Private key.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Fingerprint of the leaf.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.certs[0])
    }

    /// 32 bytes derived from the private key with HKDF-SHA256 under `label`: the same for
    /// every run of a server that keeps its key, and revealing nothing about the key. Each
    /// use takes its own label, so no two derived secrets are related.
    pub fn derive_secret(&self, label: &[u8]) -> [u8; 32] {
        use hkdf::Hkdf;
        let hk = Hkdf::<Sha256>::new(Some(b"livewire/1 key derivation"), self.key.secret_der());
        let mut okm = [0u8; 32];
        hk.expand(label, &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        okm
    }

    /// Loads operator-supplied PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_file_iter(cert)
            .map_err(|e| TlsError::Pem {
                path: cert.to_owned(),
                what: e.to_string(),
            })?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem {
                path: cert.to_owned(),
                what: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::Pem {
                path: cert.to_owned(),
                what: "no CERTIFICATE block".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
            path: key.to_owned(),
            what: format!("no usable private key: {e}"),
        })?;
        Ok(Self { certs, key })
    }

    /// Loads `cert.pem`/`key.pem` from the data dir, creating them on first start (the key
    /// file with mode 0600).
    pub fn load_or_create(data_dir: &Path) -> Result<Self, TlsError> {
        let cert_path = data_dir.join("cert.pem");
        let key_path = data_dir.join("key.pem");
        if cert_path.exists() || key_path.exists() {
            return Self::from_pem_files(&cert_path, &key_path);
        }
        fs::create_dir_all(data_dir).map_err(file_err(data_dir))?;
        let ck = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])?;
        write_private(&key_path, ck.signing_key.serialize_pem().as_bytes())?;
        fs::write(&cert_path, ck.cert.pem()).map_err(file_err(&cert_path))?;
        Self::from_pem_files(&cert_path, &key_path)
    }
}

/// Writes a file readable only by its owner, atomically (temp file + rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(file_err(&tmp))?;
    f.write_all(bytes).map_err(file_err(&tmp))?;
    f.sync_all().map_err(file_err(&tmp))?;
    fs::rename(&tmp, path).map_err(file_err(path))
}

/// The server's rustls configuration: TLS 1.3 only, ALPN `livewire/1`, no 0-RTT.
pub fn server_config(id: Identity) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(id.certs, id.key)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    // 0-RTT data could be replayed; LiveWire never accepts it.
    cfg.max_early_data_size = 0;
    cfg.key_log = Arc::new(rustls::KeyLogFile::new());
    Ok(cfg)
}

/// Known server fingerprints per `host:port` (like SSH's `known_hosts`).
#[derive(Debug, Clone)]
pub struct PinStore {
    path: PathBuf,
}

impl PinStore {
    /// The pin file at `path` (created on first pin).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All pins. A missing file is "no pins"; an unreadable or damaged one is an error,
    /// never silently "no pin".
    pub fn load(&self) -> Result<BTreeMap<String, String>, TlsError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(file_err(&self.path)(e)),
        };
        let mut pins = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(host), Some(fp), None) if fp.starts_with("SHA256:") => {
                    pins.insert(host.to_owned(), fp.to_owned());
                }
                _ => {
                    return Err(TlsError::PinFile {
                        path: self.path.clone(),
                        line: i + 1,
                        what: "expected `host:port SHA256:…`".into(),
                    });
                }
            }
        }
        Ok(pins)
    }

    /// The pin for one server.
    pub fn get(&self, host_port: &str) -> Result<Option<String>, TlsError> {
        Ok(self.load()?.remove(host_port))
    }

    /// Records (or replaces) a pin.
    pub fn set(&self, host_port: &str, fp: &str) -> Result<(), TlsError> {
        self.set_all(&[host_port], fp)
    }

    /// Records (or replaces) one pin for several `host:port`s at once: the addresses of
    /// one cluster, which presents one certificate.
    pub fn set_all(&self, host_ports: &[&str], fp: &str) -> Result<(), TlsError> {
        let mut pins = self.load()?;
        for h in host_ports {
            pins.insert((*h).to_owned(), fp.to_owned());
        }
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(file_err(dir))?;
        }
        let mut text = String::from("# LiveWire known servers: host:port SHA256:fingerprint\n");
        for (h, f) in pins {
            text.push_str(&format!("{h} {f}\n"));
        }
        write_private(&self.path, text.as_bytes())
    }
}

/// Accepts exactly one certificate fingerprint (or, with `expected = None`, any, for a
/// first contact the user agreed to), and still checks the TLS 1.3 handshake signature so a
/// server must hold the certificate's private key. Records what it saw for error messages.
#[derive(Debug)]
pub struct PinningVerifier {
    expected: Option<String>,
    seen: Mutex<Option<String>>,
    provider: Arc<CryptoProvider>,
}

impl PinningVerifier {
    /// A verifier that wants `expected` (`None`: accept and record any).
    pub fn new(expected: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            expected,
            seen: Mutex::new(None),
            provider: provider(),
        })
    }

    /// The fingerprint the server presented, if the handshake got that far.
    pub fn seen(&self) -> Option<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or(None)
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fp.clone());
        }
        match &self.expected {
            Some(want) if *want != fp => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The client's rustls configuration around a verifier.
pub fn client_config(verifier: Arc<PinningVerifier>) -> Result<rustls::ClientConfig, TlsError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.enable_early_data = false;
    cfg.key_log = Arc::new(rustls::KeyLogFile::new());
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert!(a.fingerprint().starts_with("SHA256:"));
        assert_eq!(a.fingerprint().len(), 7 + 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            Identity::load_or_create(other.path())
                .unwrap()
                .fingerprint(),
            a.fingerprint()
        );
    }

    #[test]
    fn early_data_is_off_on_both_sides() {
        // The protection itself (tests/security.rs checks the effect on a live server).
        let dir = tempfile::tempdir().unwrap();
        let server = server_config(Identity::load_or_create(dir.path()).unwrap()).unwrap();
        assert_eq!(server.max_early_data_size, 0);
        let client = client_config(PinningVerifier::new(None)).unwrap();
        assert!(!client.enable_early_data);
        assert_eq!(server.alpn_protocols, vec![ALPN.to_vec()]);
    }

    #[test]
    fn pins_round_trip_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = PinStore::new(dir.path().join("known_servers"));
        assert_eq!(store.get("h:1").unwrap(), None);
        store.set("h:1", "SHA256:aa").unwrap();
        store.set("h:2", "SHA256:bb").unwrap();
        assert_eq!(store.get("h:1").unwrap().as_deref(), Some("SHA256:aa"));
        store.set_all(&["h:3", "h:4"], "SHA256:cc").unwrap();
        assert_eq!(store.get("h:4").unwrap().as_deref(), Some("SHA256:cc"));
        assert_eq!(store.get("h:2").unwrap().as_deref(), Some("SHA256:bb"));
        fs::write(store.path(), "garbage line here\n").unwrap();
        assert!(store.get("h:1").is_err());
    }

    #[test]
    fn bad_pem_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("c.pem");
        fs::write(&c, "not pem").unwrap();
        let err = Identity::from_pem_files(&c, &c).err().unwrap().to_string();
        assert!(err.contains("c.pem"), "{err}");
        let missing = Identity::from_pem_files(&dir.path().join("nope"), &c)
            .err()
            .unwrap();
        assert!(missing.to_string().contains("nope"));
    }
}
