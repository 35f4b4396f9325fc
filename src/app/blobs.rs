//! Where the bytes of uploaded files live: the storage trait of the files layer.
//!
//! A stored file is named by its uploader's key and its stored name
//! ([`stored_name`](super::files::stored_name)); it is either *partial* (an upload in
//! progress or interrupted, which a client resumes from its whole chunks) or *complete*.
//! The file server (transport/files/server.rs) keeps the rules — who may upload or fetch,
//! quotas, resuming, a newer upload superseding an older one — and calls this trait for the
//! bytes. A single node keeps them in its data dir (`store::DirBlobs`, the default); the
//! nodes of a cluster share them in PostgreSQL (`store::PgBlobs`), so any node serves any
//! file and an upload cut by a node's death resumes on another (docs/SCALING.md).
//!
//! Calls block (a file system or a database round trip): the async file streams make them
//! through `spawn_blocking`.

use std::time::Duration;

use super::store::StoreResult;

/// What a user holds, for quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// Stored name.
    pub name: String,
    /// Whether it is an upload in progress (or interrupted).
    pub partial: bool,
    /// Bytes stored so far.
    pub bytes: u64,
}

/// The bytes of stored files.
pub trait FileBlobs: Send + Sync + 'static {
    /// The size of the complete file, or `None` when there is none (absent or partial).
    fn complete_len(&self, uploader: &str, name: &str) -> StoreResult<Option<u64>>;

    /// Opens the partial upload, creating it empty when there is none; returns the bytes
    /// it holds.
    fn open_part(&self, uploader: &str, name: &str) -> StoreResult<u64>;

    /// Cuts the partial upload to `len` bytes (the last whole chunk).
    fn truncate_part(&self, uploader: &str, name: &str, len: u64) -> StoreResult<()>;

    /// Writes `bytes` at offset `at` of the partial upload (the offset of one whole stored
    /// chunk, so a chunk written twice is the same bytes in the same place).
    fn write_part(&self, uploader: &str, name: &str, at: u64, bytes: &[u8]) -> StoreResult<()>;

    /// Writes `parts`, one after the other, at offset `at` of the partial upload (whole
    /// stored chunks, as [`FileBlobs::write_part`]): a batch of chunks that arrived apart,
    /// which a store able to write them as they lie (the data dir: one `writev`) does not
    /// copy together first.
    fn write_parts(&self, uploader: &str, name: &str, at: u64, parts: &[&[u8]]) -> StoreResult<()> {
        self.write_part(uploader, name, at, &parts.concat())
    }

    /// Makes what the partial upload holds durable, e.g. before giving up on an
    /// interrupted upload that a client will resume.
    fn sync_part(&self, uploader: &str, name: &str) -> StoreResult<()>;

    /// Turns the partial upload, `len` bytes, into the complete file, durably and at
    /// once: a reader sees the whole file or none.
    fn finish_part(&self, uploader: &str, name: &str, len: u64) -> StoreResult<()>;

    /// `len` bytes at offset `at` of the complete file.
    fn read(&self, uploader: &str, name: &str, at: u64, len: usize) -> StoreResult<Vec<u8>>;

    /// Erases the file, complete or partial; whether there was anything.
    fn erase(&self, uploader: &str, name: &str) -> StoreResult<bool>;

    /// Removes the partial upload only (a refused upload leaves nothing behind).
    fn discard_part(&self, uploader: &str, name: &str) -> StoreResult<()>;

    /// Everything `uploader` holds.
    fn holdings(&self, uploader: &str) -> StoreResult<Vec<Holding>>;

    /// Removes partial uploads untouched for `max_age`, except those for which `busy`
    /// (uploader, name) holds; returns how many were removed.
    fn sweep_parts(&self, max_age: Duration, busy: &dyn Fn(&str, &str) -> bool) -> usize;
}
