//! The few quinn settings LiveWire depends on, in one place, and the quinn types the rest
//! of the crate names (re-exported here, as iroh's `endpoint/quic.rs` does).
//!
//! Keep-alive 15 s from the client keeps a UDP NAT mapping warm (most home routers expire
//! idle UDP mappings after 30–120 s); the idle timeout of 40 s on both sides ends a dead
//! connection so the client reconnects. Both are [`Timers`], so tests can shorten them.
//! Server-side migration stays on (quinn's default), so a client whose NAT rebinds keeps
//! its connection and its login.
//!
//! A restarted server resets the connections of its previous run at once (a QUIC stateless
//! reset, RFC 9000 §10.3): its reset key *and* the key that makes its connection IDs
//! recognisable are derived from the server's persistent private key, so the new process
//! knows the old connection IDs as its own and answers them with a valid reset token.
//! The connection IDs also carry the node ID (see [`super::cid`]).

use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};

/// The buffers quinn takes without copying them (a file chunk handed to a stream).
pub use bytes::Bytes;
pub use quinn::{
    ClientConfig, Connection, ConnectionError, Endpoint, EndpointConfig, Incoming, RecvStream,
    SendStream, ServerConfig, TransportErrorCode,
};

use super::cid::NodeCidGenerator;
use super::tls::{self, Identity, PinningVerifier, TlsError};

/// Client keep-alive interval.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Idle timeout (both sides).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(40);

/// The QUIC timers of one side. A connection ends after the *shorter* of the two sides'
/// idle timeouts (QUIC negotiates the minimum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Silence after which the connection is given up.
    pub idle_timeout: Duration,
    /// Interval of PINGs sent in silence (`None`: none).
    pub keep_alive: Option<Duration>,
}

impl Timers {
    /// The client's defaults: keep-alive 15 s, idle timeout 40 s.
    pub const CLIENT: Timers = Timers {
        idle_timeout: IDLE_TIMEOUT,
        keep_alive: Some(KEEP_ALIVE),
    };
    /// The server's defaults: idle timeout 40 s, no keep-alive (the client's PINGs and
    /// their ACKs refresh NAT mappings in both directions).
    pub const SERVER: Timers = Timers {
        idle_timeout: IDLE_TIMEOUT,
        keep_alive: None,
    };
}

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
    /// Too many connections from one address (sent by servers that counted after the
    /// handshake; a server now refuses such a connection before it, see
    /// [`super::connect_failure`]).
    pub const TOO_MANY: u32 = 4;
    /// Login took too long.
    pub const LOGIN_TIMEOUT: u32 = 5;
    /// The server is shutting down.
    pub const SHUTDOWN: u32 = 6;
}

fn transport(timers: &Timers, bidi_streams: u32) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    // Beyond QUIC's largest idle timeout (2^62 ms) means "as long as possible".
    let idle = IdleTimeout::try_from(timers.idle_timeout).unwrap_or(VarInt::MAX.into());
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(timers.keep_alive);
    t.max_concurrent_bidi_streams(VarInt::from_u32(bidi_streams));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    // LiveWire sends no QUIC datagrams: advertise none, so a peer cannot make this side
    // buffer any (quinn's defaults accept 1.25 MB of them per connection).
    t.datagram_receive_buffer_size(None);
    t.datagram_send_buffer_size(0);
    Arc::new(t)
}

/// The server's endpoint configuration: stateless-reset key and connection-ID generator both
/// derived from the server's (persistent) private key, so a restarted server recognises the
/// connection IDs of its previous run and resets those connections at once; clients then
/// reconnect in about a second instead of waiting for the idle timeout. The connection IDs
/// carry `node_id` for a QUIC-LB style load balancer ([`NodeCidGenerator`]).
///
/// quinn's default generator validates incoming connection IDs with a random per-process
/// key: a restarted server would drop the old clients' packets as "invalid CID" and never
/// send the reset, whatever its reset key.
pub fn server_endpoint_config(id: &Identity) -> EndpointConfig {
    node_endpoint_config(id, 0)
}

/// [`server_endpoint_config`] for node `node_id` of a cluster.
pub fn node_endpoint_config(id: &Identity, node_id: u8) -> EndpointConfig {
    let reset = id.derive_secret(b"quic stateless reset key");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &reset);
    let mut config = EndpointConfig::new(Arc::new(key));
    let cid = id.derive_secret(b"quic connection id key");
    config.cid_generator(move || Box::new(NodeCidGenerator::new(node_id, &cid)));
    config
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

/// The server's quinn configuration with the default [`Timers::SERVER`].
pub fn server_config(id: Identity, streams_per_conn: u32) -> Result<ServerConfig, TlsError> {
    server_config_with(id, streams_per_conn, &Timers::SERVER)
}

/// The server's quinn configuration.
pub fn server_config_with(
    id: Identity,
    streams_per_conn: u32,
    timers: &Timers,
) -> Result<ServerConfig, TlsError> {
    let crypto = tls::server_config(id)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
    let mut cfg = ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport(timers, streams_per_conn));
    cfg.migration(true);
    Ok(cfg)
}

/// The client's quinn configuration around a pinning verifier, with [`Timers::CLIENT`].
pub fn client_config(verifier: Arc<PinningVerifier>) -> Result<ClientConfig, TlsError> {
    client_config_with(verifier, &Timers::CLIENT)
}

/// The client's quinn configuration around a pinning verifier.
pub fn client_config_with(
    verifier: Arc<PinningVerifier>,
    timers: &Timers,
) -> Result<ClientConfig, TlsError> {
    let crypto = tls::client_config(verifier)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
    let mut cfg = ClientConfig::new(Arc::new(crypto));
    // The server never opens streams towards the client.
    cfg.transport_config(transport(timers, 0));
    Ok(cfg)
}

/// Why a connection attempt failed, in words for the user. A LiveWire server refuses a
/// connection before the handshake (QUIC `CONNECTION_REFUSED`, which carries no reason)
/// when the address already has as many connections as it allows, or when it is too busy
/// or stopping.
pub fn connect_failure(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionClosed(c)
            if c.error_code == TransportErrorCode::CONNECTION_REFUSED =>
        {
            "the server refused the connection: too many connections from this address, or it is busy".into()
        }
        e => e.to_string(),
    }
}

/// A close code as quinn wants it.
pub fn code(c: u32) -> VarInt {
    VarInt::from_u32(c)
}
