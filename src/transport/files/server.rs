//! The server's side of file transfer: the rules of the store of uploaded files (the bytes
//! are behind [`FileBlobs`]) and the serving of one upload or download stream.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tracing::{debug, info, warn};

use super::chunk::{
    MAX_CHUNK_FRAME, MAX_FILE_FRAME, chunk_aad, frame_len, read_chunk, write_frame_parts,
};
use super::dir_blobs::DirBlobs;
use crate::app::blobs::{FileBlobs, Holding};
use crate::app::files::{
    CHUNK, Layout, chunk_aad_id, chunk_count, chunk_len, human_size, stored_len, stored_name,
};
use crate::app::ids::{ClientMsgId, ConvId};
use crate::app::protocol::{ErrorCode, FileDown, FileReq};
use crate::app::store::{StoreError, StoreResult};
use crate::transport::codec;
use crate::transport::envelope::{Direction, NONCE_LEN, SessionKeys, TAG_LEN};
use crate::transport::quic::{Bytes, RecvStream, SendStream};

/// Partial uploads untouched for this long are abandoned and removed.
pub const PART_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// What the server's file streams need: the rules (who may use which conversation's
/// files, quotas, one upload of a file at a time) around the bytes, which live behind the
/// app's [`FileBlobs`] trait: the data dir on a single node ([`DirBlobs`]), PostgreSQL in
/// a cluster.
pub struct FileStore {
    /// Upload limit in bytes.
    pub max_size: u64,
    /// Bytes of stored files one user may hold.
    pub quota: u64,
    /// Where the bytes live.
    blobs: Arc<dyn FileBlobs>,
    /// Per stored file, the generation of its newest upload: an upload that resumes
    /// supersedes one still running (a client that came back before the server noticed its
    /// old connection died), which then stops writing.
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<u64>>>>,
    /// Uploads in progress on this node, by (uploader key, stored name): the size they will
    /// have when complete, so that two uploads at once cannot both fit in what is left of
    /// a quota.
    reserved: Mutex<HashMap<(String, String), u64>>,
    /// Quota checks one at a time (each lists one user's files).
    quota_check: tokio::sync::Mutex<()>,
    /// Room members (room key -> user keys), a copy the hub keeps current: a room's files
    /// are for its members only, and only the core knows who they are.
    room_members: RwLock<HashMap<String, HashSet<String>>>,
    /// The private rooms (keys) among them: their files may be sealed end to end.
    private_rooms: RwLock<HashSet<String>>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("max_size", &self.max_size)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// Files under `dir`, uploads up to `max_size` bytes, `quota` bytes per user.
    pub fn new(dir: PathBuf, max_size: u64, quota: u64) -> Self {
        Self::with_blobs(Arc::new(DirBlobs::new(dir)), max_size, quota)
    }

    /// Files in `blobs`, uploads up to `max_size` bytes, `quota` bytes per user.
    pub fn with_blobs(blobs: Arc<dyn FileBlobs>, max_size: u64, quota: u64) -> Self {
        Self {
            max_size,
            quota,
            blobs,
            uploads: Mutex::new(HashMap::new()),
            reserved: Mutex::new(HashMap::new()),
            quota_check: tokio::sync::Mutex::new(()),
            room_members: RwLock::default(),
            private_rooms: RwLock::default(),
        }
    }

    /// Records that `user` (key) is now, or no longer, a member of room `room` (key), and
    /// whether the room is private (a room's visibility never changes).
    pub fn set_room_member(&self, room: &str, user: &str, member: bool, private: bool) {
        if private {
            self.private_rooms
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(room.to_owned());
        }
        let mut m = self.room_members.write().unwrap_or_else(|e| e.into_inner());
        if member {
            m.entry(room.to_owned())
                .or_default()
                .insert(user.to_owned());
        } else if let Some(set) = m.get_mut(room) {
            set.remove(user);
            if set.is_empty() {
                m.remove(room);
            }
        }
    }

    /// Whether `user` (key) may store or fetch files of `conv`.
    fn may_use(&self, conv: &ConvId, user: &str) -> bool {
        match conv {
            ConvId::Room(room) => self
                .room_members
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(room)
                .is_some_and(|s| s.contains(user)),
            _ => conv.has_member(user),
        }
    }

    /// Whether files of `conv` may be sealed with their own key (end to end): direct
    /// messages and private rooms; `#general` and public rooms keep their files readable
    /// by the server, as their messages.
    fn may_seal(&self, conv: &ConvId) -> bool {
        match conv {
            ConvId::Direct(..) => true,
            ConvId::Room(room) => self
                .private_rooms
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(room),
            ConvId::General => false,
        }
    }

    fn upload_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<u64>> {
        let mut m = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, l| Arc::strong_count(l) > 1);
        m.entry(name.to_owned()).or_default().clone()
    }

    /// Runs a blocking call on the bytes off the async workers.
    async fn blobs<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn FileBlobs) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || f(&*blobs))
            .await
            .map_err(|e| StoreError::other(format!("file store task: {e}")))?
    }

    /// Erases a stored file (complete or partial), e.g. when its message is deleted for
    /// everyone. Returns whether anything was removed. Blocks: the hub calls it on its
    /// own thread.
    pub fn erase(&self, conv: &ConvId, uploader: &str, file: &ClientMsgId) -> bool {
        let name = stored_name(conv, uploader, file);
        match self.blobs.erase(&uploader.to_ascii_lowercase(), &name) {
            Ok(removed) => removed,
            Err(e) => {
                warn!("file store: cannot erase a deleted message's file: {e}");
                false
            }
        }
    }

    /// Bytes `uploader` (key) holds, not counting the file `except` (complete or
    /// partial): complete files by their size, uploads in progress by the size they will
    /// have.
    fn usage(&self, uploader: &str, except: &str, holdings: &[Holding]) -> u64 {
        let reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0;
        for h in holdings.iter().filter(|h| h.name != except) {
            let want = if h.partial {
                reserved
                    .get(&(uploader.to_owned(), h.name.clone()))
                    .copied()
            } else {
                None
            };
            total += want.unwrap_or(0).max(h.bytes);
        }
        // Uploads reserved whose bytes are not written yet.
        for ((u, name), need) in reserved.iter() {
            if u == uploader
                && name != except
                && !holdings.iter().any(|h| h.partial && h.name == *name)
            {
                total += need;
            }
        }
        total
    }

    /// Removes partial uploads untouched for [`PART_MAX_AGE`] (a client that never came
    /// back to finish), except the ones running here. Returns how many were removed.
    pub fn sweep_parts(&self, max_age: Duration) -> usize {
        // A snapshot, not the lock: the sweep does I/O (a database, maybe a slow one) and
        // async tasks take this lock. An upload that resumes, during the sweep, a partial
        // file untouched for a day may lose it and start again from its first chunk.
        let running: HashSet<(String, String)> = self
            .reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        let busy = |u: &str, n: &str| running.contains(&(u.to_owned(), n.to_owned()));
        self.blobs.sweep_parts(max_age, &busy)
    }

    /// Sweeps abandoned partial uploads now and every hour, for as long as the store
    /// exists (the task ends once the server dropped it).
    pub async fn sweep_parts_forever(self: Arc<Self>) {
        let store = Arc::downgrade(&self);
        drop(self);
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let Some(store) = store.upgrade() else { return };
            let removed = tokio::task::spawn_blocking(move || store.sweep_parts(PART_MAX_AGE))
                .await
                .unwrap_or(0);
            if removed > 0 {
                info!(removed, "removed abandoned partial uploads");
            }
        }
    }
}

/// An upload in progress counted against its uploader's quota until it ends.
struct Reservation<'a> {
    store: &'a FileStore,
    key: (String, String),
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut reserved = self
            .store
            .reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        reserved.remove(&self.key);
    }
}

/// Serves one file stream whose first frame was `req`. `user` is the logged-in user
/// (`None` before the login completed).
pub async fn serve(
    req: FileReq,
    mut send: SendStream,
    mut recv: RecvStream,
    user: Option<String>,
    keys: Arc<SessionKeys>,
    store: Arc<FileStore>,
) {
    let result = match user {
        None => Err((
            ErrorCode::NotLoggedIn,
            "log in before transferring files".to_owned(),
        )),
        Some(user) => match req {
            FileReq::Upload { conv, file, size } => {
                let t = Transfer::new(&mut send, &user, &keys, &store, conv, false);
                serve_upload(t, &mut recv, file, size).await
            }
            FileReq::UploadKeyed { conv, file, size } => {
                let t = Transfer::new(&mut send, &user, &keys, &store, conv, true);
                serve_upload(t, &mut recv, file, size).await
            }
            FileReq::Download {
                conv,
                uploader,
                file,
                from_chunk,
            } => {
                let t = Transfer::new(&mut send, &user, &keys, &store, conv, false);
                serve_download(t, &uploader, file, from_chunk).await
            }
            FileReq::DownloadKeyed {
                conv,
                uploader,
                file,
                from_chunk,
            } => {
                let t = Transfer::new(&mut send, &user, &keys, &store, conv, true);
                serve_download(t, &uploader, file, from_chunk).await
            }
        },
    };
    match result {
        Ok(()) => {
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
        }
        Err((code, message)) => {
            info!("file transfer refused: {message}");
            let down = FileDown::Error { code, message };
            let _ = codec::write_frame(&mut send, &down, MAX_FILE_FRAME).await;
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
        }
    }
}

/// Why a transfer was refused: the code and text the client gets in `FileDown::Error`.
type Refusal = (ErrorCode, String);

/// One transfer being served: the stream back to the client and what it may touch.
struct Transfer<'a> {
    send: &'a mut SendStream,
    /// The logged-in user.
    user: &'a str,
    keys: &'a SessionKeys,
    store: &'a Arc<FileStore>,
    /// The conversation the file belongs to.
    conv: ConvId,
    /// How the file's chunks are stored.
    layout: Layout,
}

impl<'a> Transfer<'a> {
    fn new(
        send: &'a mut SendStream,
        user: &'a str,
        keys: &'a SessionKeys,
        store: &'a Arc<FileStore>,
        conv: ConvId,
        keyed: bool,
    ) -> Self {
        let layout = Layout::of(&conv, keyed);
        Self {
            send,
            user,
            keys,
            store,
            conv,
            layout,
        }
    }
}

fn io_refusal(what: &str, e: impl std::fmt::Display) -> Refusal {
    warn!("file store: {what}: {e}");
    (ErrorCode::Internal, format!("the server could not {what}"))
}

/// A failed write of an upload: a full disk is `server_full` (logged at `warn` with what to
/// do), anything else `internal`.
fn write_refusal(e: StoreError) -> Refusal {
    if e.is_full() {
        warn!(
            "file store: out of storage space ({e}); uploads are refused with server_full until there is room"
        );
        (
            ErrorCode::ServerFull,
            "the server is out of storage space; try again later".to_owned(),
        )
    } else {
        io_refusal("write the file", e)
    }
}

/// Receives an upload into its partial file, resuming from the whole chunks already held,
/// and makes it the complete file once every chunk is there.
async fn serve_upload(
    t: Transfer<'_>,
    recv: &mut RecvStream,
    file: ClientMsgId,
    size: u64,
) -> Result<(), Refusal> {
    let Transfer {
        send,
        user,
        keys,
        store,
        conv,
        layout,
    } = t;
    if !store.may_use(&conv, user) {
        return Err((
            ErrorCode::NotFound,
            "no such conversation of yours".to_owned(),
        ));
    }
    if layout == Layout::Keyed && !store.may_seal(&conv) {
        return Err((
            ErrorCode::BadRequest,
            "files in #general and public rooms are kept readable by the server, like their messages: upload them without a file key".to_owned(),
        ));
    }
    if size > store.max_size {
        return Err((
            ErrorCode::TooLarge,
            format!(
                "the file is {} ({size} bytes); this server accepts files up to {} ({} bytes)",
                human_size(size),
                human_size(store.max_size),
                store.max_size
            ),
        ));
    }
    let ukey = user.to_ascii_lowercase();
    let name = stored_name(&conv, user, &file);
    let slot = store.upload_lock(&name);
    let mut current = slot.lock().await;
    *current += 1;
    let generation = *current;
    let count = chunk_count(size);
    let (u, n) = (ukey.clone(), name.clone());
    let complete = store
        .blobs(move |b| b.complete_len(&u, &n))
        .await
        .map_err(|e| io_refusal("look for the file", e))?;
    if complete.is_some() {
        let ready = FileDown::Ready { size, have: count };
        codec::write_frame(send, &ready, MAX_FILE_FRAME)
            .await
            .map_err(|e| io_refusal("answer", e))?;
        return codec::write_frame(send, &FileDown::Done, MAX_FILE_FRAME)
            .await
            .map_err(|e| io_refusal("answer", e));
    }
    let len = stored_len(layout, size, count);
    let _reservation = reserve(store, &ukey, &name, len).await?;
    let result = receive(
        send,
        recv,
        Receive {
            user,
            ukey: &ukey,
            name: &name,
            keys,
            store,
            conv: &conv,
            layout,
            file,
            size,
            slot: &slot,
            generation,
        },
        current,
    )
    .await;
    match result {
        Ok(Received::Complete) => {}
        Ok(Received::Interrupted) => return Ok(()),
        Err(refusal) => {
            // A failed upload leaves nothing behind (a full disk gets its space back).
            let (u, n) = (ukey.clone(), name.clone());
            let _ = store.blobs(move |b| b.discard_part(&u, &n)).await;
            return Err(refusal);
        }
    }
    let current = slot.lock().await;
    if *current != generation {
        return Ok(());
    }
    let (u, n) = (ukey.clone(), name.clone());
    store
        .blobs(move |b| b.finish_part(&u, &n, len))
        .await
        .map_err(write_refusal)?;
    drop(current);
    info!(size, "file stored");
    codec::write_frame(send, &FileDown::Done, MAX_FILE_FRAME)
        .await
        .map_err(|e| io_refusal("answer", e))
}

/// Checks `ukey`'s quota for a file that will take `need` bytes, and counts it as theirs
/// while the upload runs.
async fn reserve<'a>(
    store: &'a Arc<FileStore>,
    ukey: &str,
    name: &str,
    need: u64,
) -> Result<Reservation<'a>, Refusal> {
    let _one_at_a_time = store.quota_check.lock().await;
    let u = ukey.to_owned();
    let holdings = store
        .blobs(move |b| b.holdings(&u))
        .await
        .map_err(|e| io_refusal("count your files", e))?;
    let used = store.usage(ukey, name, &holdings);
    if used.saturating_add(need) > store.quota {
        return Err((
            ErrorCode::QuotaExceeded,
            format!(
                "this file needs {} and you keep {} of your {} on this server; delete some files first",
                human_size(need),
                human_size(used),
                human_size(store.quota)
            ),
        ));
    }
    let key = (ukey.to_owned(), name.to_owned());
    store
        .reserved
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.clone(), need);
    Ok(Reservation { store, key })
}

/// What one upload writes, past the checks.
struct Receive<'a> {
    user: &'a str,
    /// The uploader's key and the stored name: the file in the store.
    ukey: &'a str,
    name: &'a str,
    keys: &'a SessionKeys,
    store: &'a Arc<FileStore>,
    conv: &'a ConvId,
    layout: Layout,
    file: ClientMsgId,
    size: u64,
    slot: &'a tokio::sync::Mutex<u64>,
    generation: u64,
}

/// How a [`receive`] ended without an error.
enum Received {
    /// Every chunk is in the partial file.
    Complete,
    /// The client went away (or a newer upload took over): the partial file stays for a
    /// resume.
    Interrupted,
}

/// Receives an upload into its partial file, resuming from the whole chunks already held.
/// `current` is the upload slot, held until the resume point is settled.
async fn receive(
    send: &mut SendStream,
    recv: &mut RecvStream,
    r: Receive<'_>,
    current: tokio::sync::MutexGuard<'_, u64>,
) -> Result<Received, Refusal> {
    let Receive {
        user,
        ukey,
        name,
        keys,
        store,
        conv,
        layout,
        file,
        size,
        slot,
        generation,
    } = r;
    let count = chunk_count(size);
    let (u, n) = (ukey.to_owned(), name.to_owned());
    let held = store
        .blobs(move |b| b.open_part(&u, &n))
        .await
        .map_err(write_refusal)?;
    let full = (CHUNK + layout.overhead()) as u64;
    let have = (held / full).min(count.saturating_sub(1));
    let keep = stored_len(layout, size, have);
    let (u, n) = (ukey.to_owned(), name.to_owned());
    store
        .blobs(move |b| b.truncate_part(&u, &n, keep))
        .await
        .map_err(write_refusal)?;
    drop(current);
    let ready = FileDown::Ready { size, have };
    if let Err(e) = codec::write_frame(send, &ready, MAX_FILE_FRAME).await {
        debug!("upload client gone before it started: {e}");
        return Ok(Received::Interrupted);
    }
    debug!(have, count, "upload starts");
    // The stream is read (and a `#general` chunk opened, where it lies) while the chunks
    // before it are written: verified chunks go through a channel to the writer, which
    // takes all that waits in one write (one call on the store, one `writev` in the data
    // dir, not one per chunk, and no copy into one buffer).
    let (chunks_tx, mut chunks) = tokio::sync::mpsc::channel::<Verified>(UPLOAD_PIPELINE);
    let conv_key = conv.storage_key();
    let reader = async move {
        for i in have..count {
            let mut buf = Vec::with_capacity(MAX_CHUNK_FRAME);
            let got = tokio::select! {
                r = read_chunk(recv, &mut buf) => r,
                // The writer stopped (superseded, or a failed write): its result says why.
                _ = chunks_tx.closed() => return Ok(true),
            };
            if let Err(e) = got {
                debug!("upload interrupted at chunk {i}: {e}");
                return Ok(false);
            }
            let plain_len = chunk_len(size, i);
            let wrong_size = || {
                (
                    ErrorCode::BadRequest,
                    format!("chunk {i} has the wrong size"),
                )
            };
            let stored = match layout {
                Layout::Plain => {
                    let aad = chunk_aad(Direction::Up, &conv_key, user, chunk_aad_id(&file, i));
                    let plain = keys
                        .up
                        .open_in_place(&aad, &mut buf)
                        .map_err(|e| (ErrorCode::BadRequest, format!("chunk {i} refused: {e}")))?;
                    if plain.len() != plain_len {
                        return Err(wrong_size());
                    }
                    NONCE_LEN..NONCE_LEN + plain_len
                }
                Layout::Identity | Layout::Keyed => {
                    // Sealed end to end: only its size can be checked here.
                    if buf.len() != plain_len + layout.overhead() {
                        return Err(wrong_size());
                    }
                    0..buf.len()
                }
            };
            let chunk = Verified { buf, keep: stored };
            if chunks_tx.send(chunk).await.is_err() {
                return Ok(true);
            }
        }
        Ok::<bool, Refusal>(true)
    };
    let writer = async move {
        let mut at = keep;
        while let Some(first) = chunks.recv().await {
            let mut written = first.keep.len();
            let mut batch = vec![first];
            while written < WRITE_BATCH {
                match chunks.try_recv() {
                    Ok(more) => {
                        written += more.keep.len();
                        batch.push(more);
                    }
                    Err(_) => break,
                }
            }
            // Written under the slot, so a newer upload never races this write.
            let current = slot.lock().await;
            if *current != generation {
                debug!("upload superseded by a newer one");
                return Ok(false);
            }
            let (u, n) = (ukey.to_owned(), name.to_owned());
            store
                .blobs(move |b| {
                    let parts: Vec<&[u8]> = batch.iter().map(Verified::bytes).collect();
                    b.write_parts(&u, &n, at, &parts)
                })
                .await
                .map_err(write_refusal)?;
            at += written as u64;
            drop(current);
        }
        Ok::<bool, Refusal>(true)
    };
    let (read, wrote) = tokio::join!(reader, writer);
    if !wrote? {
        return Ok(Received::Interrupted);
    }
    if !read? {
        // Keep what arrived (all of it is written now): the client resumes from it.
        let (u, n) = (ukey.to_owned(), name.to_owned());
        let _ = store.blobs(move |b| b.sync_part(&u, &n)).await;
        return Ok(Received::Interrupted);
    }
    let current = slot.lock().await;
    if *current != generation {
        return Ok(Received::Interrupted);
    }
    drop(current);
    Ok(Received::Complete)
}

/// Chunks of an upload received ahead of its writer.
const UPLOAD_PIPELINE: usize = 16;
/// Bytes of an upload written in one call on the store at most.
const WRITE_BATCH: usize = 1024 * 1024;

/// A chunk of an upload checked by the reader: what is stored is `buf[keep]` (a
/// `#general` chunk's plaintext, opened where it arrived, or an end-to-end chunk whole).
struct Verified {
    buf: Vec<u8>,
    keep: std::ops::Range<usize>,
}

impl Verified {
    fn bytes(&self) -> &[u8] {
        &self.buf[self.keep.clone()]
    }
}

/// How many chunks a download reads from the store at once.
const READ_BATCH: u64 = 16;

/// Sends a stored file from chunk `from_chunk` on.
async fn serve_download(
    t: Transfer<'_>,
    uploader: &str,
    file: ClientMsgId,
    from_chunk: u64,
) -> Result<(), Refusal> {
    let Transfer {
        send,
        user,
        keys,
        store,
        conv,
        layout,
    } = t;
    let not_found = || {
        (
            ErrorCode::NotFound,
            "no such file: it was deleted, or its upload never finished".to_owned(),
        )
    };
    if !store.may_use(&conv, user) {
        return Err(not_found());
    }
    let uploader = uploader.to_ascii_lowercase();
    let name = stored_name(&conv, &uploader, &file);
    let (u, n) = (uploader.clone(), name.clone());
    let stored = store
        .blobs(move |b| b.complete_len(&u, &n))
        .await
        .map_err(|e| io_refusal("read the file", e))?
        .ok_or_else(not_found)?;
    let overhead = layout.overhead() as u64;
    let count = stored.div_ceil(CHUNK as u64 + overhead);
    // The layout comes from the request (a file key in the message or not): a request that
    // does not match how the file was stored is refused, never sliced wrongly.
    let size = stored
        .checked_sub(count * overhead)
        .filter(|&size| count == chunk_count(size) && stored_len(layout, size, count) == stored)
        .ok_or_else(|| {
            (
                ErrorCode::BadRequest,
                "this file is not stored the way the request says (with or without a file key)"
                    .to_owned(),
            )
        })?;
    let from = from_chunk.min(count);
    codec::write_frame(send, &FileDown::Ready { size, have: from }, MAX_FILE_FRAME)
        .await
        .map_err(|e| io_refusal("answer", e))?;
    let conv_key = conv.storage_key();
    // The next batch is read from the store while this one is sent.
    let read = |start: u64| {
        let end = (start + READ_BATCH).min(count);
        let at = stored_len(layout, size, start);
        let len = (stored_len(layout, size, end) - at) as usize;
        let (store, u, n) = (store.clone(), uploader.clone(), name.clone());
        let bytes =
            tokio::spawn(async move { store.blobs(move |b| b.read(&u, &n, at, len)).await });
        (start, end, bytes)
    };
    let mut next = (from < count).then(|| read(from));
    while let Some((batch_start, batch_end, bytes)) = next.take() {
        let mut bytes = bytes
            .await
            .map_err(|e| io_refusal("read the file", e))?
            .map_err(|e| io_refusal("read the file", e))?;
        if batch_end < count {
            next = Some(read(batch_end));
        }
        // The batch is sealed where it was read and handed to quinn in slices: per chunk
        // a small head (length, and nonce for a `#general` chunk), the chunk as stored,
        // and its tag; the file's bytes are not copied again.
        let mut frames = Vec::with_capacity((batch_end - batch_start) as usize);
        let mut at = 0;
        for i in batch_start..batch_end {
            let n = chunk_len(size, i) + overhead as usize;
            let Some(chunk) = bytes.get_mut(at..at + n) else {
                return Err(io_refusal("read the file", "it is shorter than stored"));
            };
            let (head, tail) = match layout {
                Layout::Plain => {
                    let aad = chunk_aad(
                        Direction::Down,
                        &conv_key,
                        &uploader,
                        chunk_aad_id(&file, i),
                    );
                    let (nonce, tag) = keys
                        .down
                        .seal_detached(&aad, chunk)
                        .map_err(|e| io_refusal("seal", e))?;
                    let mut head = Vec::with_capacity(4 + NONCE_LEN);
                    head.extend_from_slice(&frame_len(NONCE_LEN + n + TAG_LEN));
                    head.extend_from_slice(&nonce);
                    (head, Some(tag))
                }
                Layout::Identity | Layout::Keyed => (frame_len(n).to_vec(), None),
            };
            frames.push((head, at..at + n, tail));
            at += n;
        }
        let bytes = Bytes::from(bytes);
        for ((head, range, tail), i) in frames.into_iter().zip(batch_start..) {
            let (head, chunk) = (Bytes::from(head), bytes.slice(range));
            let sent = match tail {
                Some(tag) => {
                    let tag = Bytes::copy_from_slice(&tag);
                    write_frame_parts(send, &mut [head, chunk, tag]).await
                }
                None => write_frame_parts(send, &mut [head, chunk]).await,
            };
            if let Err(e) = sent {
                debug!("download interrupted at chunk {i}: {e}");
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_uploads_in_progress_at_their_full_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().to_owned(), 1 << 20, 1 << 30);
        let blobs = DirBlobs::new(dir.path().to_owned());
        blobs.open_part("alice", "done").unwrap();
        blobs.write_part("alice", "done", 0, &[0; 1000]).unwrap();
        blobs.finish_part("alice", "done", 1000).unwrap();
        blobs.open_part("alice", "half").unwrap();
        blobs.write_part("alice", "half", 0, &[0; 10]).unwrap();
        let mut reserved = store.reserved.lock().unwrap();
        reserved.insert(("alice".into(), "half".into()), 500);
        // Reserved, nothing written yet.
        reserved.insert(("alice".into(), "next".into()), 70);
        drop(reserved);
        let held = blobs.holdings("alice").unwrap();
        assert_eq!(store.usage("alice", "other", &held), 1570);
        // The file being uploaded itself is not counted twice.
        assert_eq!(store.usage("alice", "half", &held), 1070);
        assert_eq!(store.usage("bob", "x", &blobs.holdings("bob").unwrap()), 0);
    }
}
