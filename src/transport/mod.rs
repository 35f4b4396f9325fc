//! Bytes on the wire: QUIC configuration, TLS and certificate pinning, the frame codec,
//! AES-256-GCM-SIV envelopes and the session key schedule, password hashing, and the async
//! drivers that feed the app cores from QUIC streams. `quic` is the one module that names
//! quinn's types for the rest of the crate.

pub mod auth;
pub mod client;
pub mod codec;
pub mod e2e;
pub mod envelope;
#[cfg(any(test, feature = "test-util"))]
pub mod faulty;
pub mod files;
pub mod portmap;
pub mod quic;
pub mod server;
pub mod tls;
