//! The few quinn settings LiveWire depends on, in one place.
//!
//! Keep-alive 15 s from the client keeps a UDP NAT mapping warm (most home routers expire
//! idle UDP mappings after 30–120 s); the idle timeout of 40 s on both sides ends a dead
//! connection so the client reconnects. Server-side migration stays on (quinn's default),
//! so a client whose NAT rebinds keeps its connection and its login.

use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};

pub use quinn::{
    ClientConfig, Connection, Endpoint, EndpointConfig, Incoming, RecvStream, SendStream,
    ServerConfig,
};

use super::tls::{self, Identity, PinningVerifier, TlsError};

/// Client keep-alive interval.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Idle timeout (both sides).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(40);

/// Application close codes.
pub mod close {
    /// Normal end (logout, shutdown, kick: the reason says which).
    pub const NORMAL: u32 = 0;
    /// Login refused.
    pub const LOGIN_REFUSED: u32 = 1;
    /// Protocol violation.
    pub const PROTOCOL: u32 = 2;
    /// The client did not read fast enough.
    pub const TOO_SLOW: u32 = 3;
    /// Too many connections from one address.
    pub const TOO_MANY: u32 = 4;
    /// Login took too long.
    pub const LOGIN_TIMEOUT: u32 = 5;
    /// The server is shutting down.
    pub const SHUTDOWN: u32 = 6;
}

fn transport(keep_alive: bool, bidi_streams: u32) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Some(
        IdleTimeout::try_from(IDLE_TIMEOUT).expect("40 s fits a QUIC idle timeout"),
    ));
    t.keep_alive_interval(keep_alive.then_some(KEEP_ALIVE));
    t.max_concurrent_bidi_streams(VarInt::from_u32(bidi_streams));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    Arc::new(t)
}

/// The server's endpoint configuration. The stateless-reset key is derived from the server's
/// (persistent) private key, so a restarted server can reset the connections of its previous
/// run at once and clients reconnect in about a second instead of waiting for the idle
/// timeout.
pub fn server_endpoint_config(id: &Identity) -> EndpointConfig {
    use hkdf::Hkdf;
    use sha2::Sha256;
    let hk = Hkdf::<Sha256>::new(Some(b"livewire/1 stateless reset"), id.key.secret_der());
    let mut okm = [0u8; 32];
    hk.expand(b"reset key", &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &okm);
    EndpointConfig::new(Arc::new(key))
}

/// Binds the server's endpoint.
pub fn server_endpoint(
    endpoint_config: EndpointConfig,
    config: ServerConfig,
    listen: std::net::SocketAddr,
) -> std::io::Result<Endpoint> {
    let socket = std::net::UdpSocket::bind(listen)?;
    Endpoint::new(
        endpoint_config,
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// The server's quinn configuration.
pub fn server_config(id: Identity, streams_per_conn: u32) -> Result<ServerConfig, TlsError> {
    let crypto = tls::server_config(id)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
    let mut cfg = ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport(false, streams_per_conn));
    cfg.migration(true);
    Ok(cfg)
}

/// The client's quinn configuration around a pinning verifier.
pub fn client_config(verifier: Arc<PinningVerifier>) -> Result<ClientConfig, TlsError> {
    let crypto = tls::client_config(verifier)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
    let mut cfg = ClientConfig::new(Arc::new(crypto));
    // The server never opens streams towards the client.
    cfg.transport_config(transport(true, 0));
    Ok(cfg)
}

/// A close code as quinn wants it.
pub fn code(c: u32) -> VarInt {
    VarInt::from_u32(c)
}
