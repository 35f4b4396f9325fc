//! Chat semantics without I/O: identifiers, protocol messages, the server and client state
//! machines, limits, and the storage trait. Nothing here knows about tokio, quinn, GTK or
//! SQLite; time and randomness come in as arguments.

pub mod blobs;
pub mod client;
pub mod edits;
pub mod files;
pub mod ids;
pub mod limits;
pub mod mentions;
pub mod mls;
pub mod protocol;
pub mod rooms;
pub mod search;
pub mod server;
pub mod store;

#[cfg(test)]
mod tests;
