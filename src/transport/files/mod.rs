//! File transfer on the wire: one bidirectional QUIC stream per upload or download, so a
//! file never blocks a conversation's messages. See "Files" in docs/PROTOCOL.md.
//!
//! The stream starts with a `ConvUp::File` frame; then the server answers with
//! `FileDown` frames and the chunks travel as raw frames (`chunk`). A chunk holds
//! `CHUNK` plaintext bytes (the last one fewer) sealed with AES-256-GCM-SIV whose AAD
//! binds conversation, uploader, file id and chunk index: under the session keys for
//! `#general` (the server keeps the plaintext, as it does for room messages), end to end
//! under the private conversation's key otherwise (the server keeps and relays the
//! ciphertext only). Files are streamed through a fixed buffer, never read whole into
//! memory.
//!
//! - `chunk`: the chunk framing and AAD both sides share;
//! - `server`: the server's file store and the serving of one stream;
//! - `dir_blobs`: where a single node keeps the bytes (its data dir), behind the app's
//!   `FileBlobs` trait (a cluster keeps them in PostgreSQL: `store::PgBlobs`);
//! - `client`: the client's transfers (the book of file messages, uploads, downloads),
//!   which report to the client loop through their own [`FileMsg`], so this module never
//!   depends on the client driver.

mod chunk;
pub mod client;
pub mod dir_blobs;
pub mod server;

pub use client::{ClientFiles, FileBook, FileMsg, note_event};
pub use dir_blobs::DirBlobs;
pub use server::{FileStore, serve};
