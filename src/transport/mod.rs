//! Bytes on the wire: QUIC configuration, TLS and certificate pinning, the frame codec,
//! AES-256-GCM-SIV envelopes and the session key schedule, password hashing, and the async
//! drivers that feed the app cores from QUIC streams. `quic` configures quinn and
//! re-exports the quinn types the rest of the crate names; only `faulty`, a test socket,
//! implements quinn's socket traits itself. The server's driver takes its store from the
//! caller: the transport knows the app's `Store` trait, never a backend.

pub mod auth;
pub mod cid;
pub mod client;
pub mod codec;
pub mod envelope;
pub mod failover;
#[cfg(any(test, feature = "test-util"))]
pub mod faulty;
pub mod files;
pub mod identity;
pub mod mls_state;
pub mod portmap;
pub mod quic;
pub mod save;
pub mod sealing;
pub mod server;
pub mod tls;
