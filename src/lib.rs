//! LiveWire: a self-hosted, real-time chat system over QUIC.
//!
//! # Layout
//!
//! - [`app`]: the chat rules without I/O. Identifiers, protocol messages, the server and
//!   client state machines (`handle(input, now) -> outputs`), limits, and the storage trait.
//!   It imports no tokio, quinn, GTK or SQLite.
//! - [`transport`]: bytes on the wire. quinn endpoint configuration, TLS with certificate
//!   pinning, the length-prefixed frame codec, AES-256-GCM-SIV envelopes and the session key
//!   schedule, and the async drivers that feed the app cores from QUIC streams.
//! - [`store`]: SQLite persistence (rusqlite, bundled) behind the app's storage trait.
//! - [`scripted`]: the JSON-lines contract of `livewire server --headless` and
//!   `livewire chat`.
//! - `gui` (feature `gui`, default): GTK4 windows, talking to the async core only through
//!   channels.
//! - [`paths`]: default directories and file locations, shared by `cli` and `gui`.
//! - [`cli`]: the command line.
//!
//! Dependencies point one way: `gui -> transport -> app`, `store -> app`; `cli` starts the
//! `gui`, and both take their default locations from `paths`.

pub mod app;
pub mod cli;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "gui")]
pub mod gui;
pub mod paths;
pub mod scripted;
pub mod store;
pub mod transport;
