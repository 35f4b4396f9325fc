//! The server's side of file transfer: the store of uploaded files under the data dir and
//! the serving of one upload or download stream.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use super::chunk::{MAX_CHUNK_FRAME, MAX_FILE_FRAME, chunk_aad, read_chunk, write_chunk};
use crate::app::files::{
    CHUNK, chunk_aad_id, chunk_count, chunk_len, human_size, stored_len, stored_name,
    stored_overhead,
};
use crate::app::ids::{ClientMsgId, ConvId};
use crate::app::protocol::{E2E_OVERHEAD, ErrorCode, FileDown, FileReq};
use crate::transport::codec;
use crate::transport::envelope::{Direction, SessionKeys};
use crate::transport::quic::{RecvStream, SendStream};

/// Partial uploads untouched for this long are abandoned and removed.
pub const PART_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// What the server's file streams need.
///
/// Layout: `<dir>/u-<uploader key>/<stored name>`, so one user's files are one directory
/// (their quota is that directory's size) and the name still says nothing about the
/// conversation. Files stored before this layout (`<dir>/<stored name>`) are still served
/// and erased, and do not count against any quota.
#[derive(Debug)]
pub struct FileStore {
    /// `<data dir>/files`.
    pub dir: PathBuf,
    /// Upload limit in bytes.
    pub max_size: u64,
    /// Bytes of stored files one user may hold.
    pub quota: u64,
    /// Per stored file, the generation of its newest upload: an upload that resumes
    /// supersedes one still running (a client that came back before the server noticed its
    /// old connection died), which then stops writing.
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<u64>>>>,
    /// Uploads in progress: their `.part` path and the size they will have when complete,
    /// so that two uploads at once cannot both fit in what is left of a quota.
    reserved: Mutex<HashMap<PathBuf, u64>>,
    /// Quota checks one at a time (each lists one user's directory).
    quota_check: tokio::sync::Mutex<()>,
    /// Room members (room key -> user keys), a copy the hub keeps current: a room's files
    /// are for its members only, and only the core knows who they are.
    room_members: RwLock<HashMap<String, HashSet<String>>>,
}

impl FileStore {
    /// Files under `dir`, uploads up to `max_size` bytes, `quota` bytes per user.
    pub fn new(dir: PathBuf, max_size: u64, quota: u64) -> Self {
        Self {
            dir,
            max_size,
            quota,
            uploads: Mutex::new(HashMap::new()),
            reserved: Mutex::new(HashMap::new()),
            quota_check: tokio::sync::Mutex::new(()),
            room_members: RwLock::default(),
        }
    }

    /// Records that `user` (key) is now, or no longer, a member of room `room` (key).
    pub fn set_room_member(&self, room: &str, user: &str, member: bool) {
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

    fn upload_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<u64>> {
        let mut m = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, l| Arc::strong_count(l) > 1);
        m.entry(name.to_owned()).or_default().clone()
    }

    /// One user's directory. The `u-` prefix keeps any user key (even an old account
    /// named `..`) a plain directory name.
    fn user_dir(&self, uploader: &str) -> PathBuf {
        self.dir
            .join(format!("u-{}", uploader.to_ascii_lowercase()))
    }

    fn path(&self, conv: &ConvId, uploader: &str, file: &ClientMsgId) -> PathBuf {
        self.user_dir(uploader)
            .join(stored_name(conv, uploader, file))
    }

    /// Where a file stored before per-user directories would be.
    fn legacy_path(&self, conv: &ConvId, uploader: &str, file: &ClientMsgId) -> PathBuf {
        self.dir.join(stored_name(conv, uploader, file))
    }

    /// Erases a stored file (complete or partial), e.g. when its message is deleted for
    /// everyone. Returns whether anything was removed.
    pub fn erase(&self, conv: &ConvId, uploader: &str, file: &ClientMsgId) -> bool {
        let mut removed = false;
        for path in [
            self.path(conv, uploader, file),
            self.legacy_path(conv, uploader, file),
        ] {
            removed |= std::fs::remove_file(&path).is_ok();
            removed |= std::fs::remove_file(path.with_extension("part")).is_ok();
        }
        removed
    }

    /// Bytes `uploader` holds, not counting the file at `except` (complete or partial):
    /// complete files by their size, uploads in progress by the size they will have.
    fn usage(&self, uploader: &str, except: &std::path::Path) -> std::io::Result<u64> {
        let part_of_except = except.with_extension("part");
        let reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let entries = match std::fs::read_dir(self.user_dir(uploader)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut total = 0;
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            if path == except || path == part_of_except {
                continue;
            }
            let len = entry.metadata()?.len();
            total += reserved.get(&path).copied().unwrap_or(0).max(len);
        }
        Ok(total)
    }

    /// Removes partial uploads untouched for [`PART_MAX_AGE`] (a client that never came
    /// back to finish), in every user's directory and the old flat layout. Returns how
    /// many were removed.
    pub fn sweep_parts(&self, max_age: Duration) -> usize {
        let reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let mut dirs = vec![self.dir.clone()];
        let mut removed = 0;
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    if dir == self.dir {
                        dirs.push(path);
                    }
                    continue;
                }
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age >= max_age);
                let is_part = path.extension().is_some_and(|e| e == "part");
                if is_part
                    && old
                    && !reserved.contains_key(&path)
                    && std::fs::remove_file(&path).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
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
    part: PathBuf,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut reserved = self
            .store
            .reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        reserved.remove(&self.part);
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
                let t = Transfer {
                    send: &mut send,
                    user: &user,
                    keys: &keys,
                    store: &store,
                    conv,
                };
                serve_upload(t, &mut recv, file, size).await
            }
            FileReq::Download {
                conv,
                uploader,
                file,
                from_chunk,
            } => {
                let t = Transfer {
                    send: &mut send,
                    user: &user,
                    keys: &keys,
                    store: &store,
                    conv,
                };
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
}

fn io_refusal(what: &str, e: impl std::fmt::Display) -> Refusal {
    warn!("file store: {what}: {e}");
    (ErrorCode::Internal, format!("the server could not {what}"))
}

/// A failed write of an upload: a full disk is `server_full` (logged at `warn` with what to
/// do), anything else `internal`.
fn write_refusal(e: std::io::Error) -> Refusal {
    if e.kind() == std::io::ErrorKind::StorageFull {
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

/// Receives an upload into `<file>.part`, resuming from the whole chunks already held,
/// and renames it into place once complete.
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
    } = t;
    if !store.may_use(&conv, user) {
        return Err((
            ErrorCode::NotFound,
            "no such conversation of yours".to_owned(),
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
    let user_dir = store.user_dir(user);
    tokio::fs::create_dir_all(&user_dir)
        .await
        .map_err(write_refusal)?;
    let path = store.path(&conv, user, &file);
    let slot = store.upload_lock(&stored_name(&conv, user, &file));
    let mut current = slot.lock().await;
    *current += 1;
    let generation = *current;
    let part = path.with_extension("part");
    let count = chunk_count(size);
    let legacy = store.legacy_path(&conv, user, &file);
    let stored = |p: PathBuf| async move { tokio::fs::try_exists(p).await.unwrap_or(false) };
    if stored(path.clone()).await || stored(legacy).await {
        let ready = FileDown::Ready { size, have: count };
        codec::write_frame(send, &ready, MAX_FILE_FRAME)
            .await
            .map_err(|e| io_refusal("answer", e))?;
        return codec::write_frame(send, &FileDown::Done, MAX_FILE_FRAME)
            .await
            .map_err(|e| io_refusal("answer", e));
    }
    let _reservation = reserve(store, user, &path, stored_len(&conv, size, count)).await?;
    let result = receive(
        send,
        recv,
        Receive {
            user,
            keys,
            conv: &conv,
            file,
            size,
            part: &part,
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
            let _ = tokio::fs::remove_file(&part).await;
            return Err(refusal);
        }
    }
    let current = slot.lock().await;
    if *current != generation {
        return Ok(());
    }
    tokio::fs::rename(&part, &path)
        .await
        .map_err(write_refusal)?;
    drop(current);
    info!(size, "file stored");
    codec::write_frame(send, &FileDown::Done, MAX_FILE_FRAME)
        .await
        .map_err(|e| io_refusal("answer", e))
}

/// Checks `user`'s quota for a file that will take `need` bytes at `path`, and counts it
/// as theirs while the upload runs.
async fn reserve<'a>(
    store: &'a Arc<FileStore>,
    user: &str,
    path: &std::path::Path,
    need: u64,
) -> Result<Reservation<'a>, Refusal> {
    let _one_at_a_time = store.quota_check.lock().await;
    let (s, u, p) = (store.clone(), user.to_owned(), path.to_owned());
    let used = tokio::task::spawn_blocking(move || s.usage(&u, &p))
        .await
        .map_err(|e| io_refusal("count your files", e))?
        .map_err(|e| io_refusal("count your files", e))?;
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
    let part = path.with_extension("part");
    store
        .reserved
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(part.clone(), need);
    Ok(Reservation { store, part })
}

/// What one upload writes, past the checks.
struct Receive<'a> {
    user: &'a str,
    keys: &'a SessionKeys,
    conv: &'a ConvId,
    file: ClientMsgId,
    size: u64,
    part: &'a std::path::Path,
    slot: &'a tokio::sync::Mutex<u64>,
    generation: u64,
}

/// How a [`receive`] ended without an error.
enum Received {
    /// Every chunk is in the `.part` file, synced.
    Complete,
    /// The client went away (or a newer upload took over): the `.part` stays for a resume.
    Interrupted,
}

/// Receives an upload into its `.part` file, resuming from the whole chunks already held.
/// `current` is the upload slot, held until the resume point is settled.
async fn receive(
    send: &mut SendStream,
    recv: &mut RecvStream,
    r: Receive<'_>,
    current: tokio::sync::MutexGuard<'_, u64>,
) -> Result<Received, Refusal> {
    let Receive {
        user,
        keys,
        conv,
        file,
        size,
        part,
        slot,
        generation,
    } = r;
    let count = chunk_count(size);
    let mut out = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(part)
        .await
        .map_err(write_refusal)?;
    let held = out.metadata().await.map_err(write_refusal)?.len();
    let full = (CHUNK + stored_overhead(conv)) as u64;
    let have = (held / full).min(count.saturating_sub(1));
    let keep = stored_len(conv, size, have);
    out.set_len(keep).await.map_err(write_refusal)?;
    out.seek(std::io::SeekFrom::Start(keep))
        .await
        .map_err(write_refusal)?;
    drop(current);
    let ready = FileDown::Ready { size, have };
    if let Err(e) = codec::write_frame(send, &ready, MAX_FILE_FRAME).await {
        debug!("upload client gone before it started: {e}");
        return Ok(Received::Interrupted);
    }
    debug!(have, count, "upload starts");
    let conv_key = conv.storage_key();
    let mut buf = Vec::with_capacity(MAX_CHUNK_FRAME);
    for i in have..count {
        if let Err(e) = read_chunk(recv, &mut buf).await {
            // Keep what arrived: the client resumes from it.
            let _ = out.sync_data().await;
            debug!("upload interrupted at chunk {i}: {e}");
            return Ok(Received::Interrupted);
        }
        let plain_len = chunk_len(size, i);
        match conv {
            ConvId::General | ConvId::Room(_) => {
                let aad = chunk_aad(Direction::Up, &conv_key, user, chunk_aad_id(&file, i));
                let plain = keys
                    .up
                    .open(&aad, &buf)
                    .map_err(|e| (ErrorCode::BadRequest, format!("chunk {i} refused: {e}")))?;
                if plain.len() != plain_len {
                    return Err((
                        ErrorCode::BadRequest,
                        format!("chunk {i} has the wrong size"),
                    ));
                }
                buf = plain;
            }
            ConvId::Direct(..) => {
                if buf.len() != plain_len + E2E_OVERHEAD {
                    return Err((
                        ErrorCode::BadRequest,
                        format!("chunk {i} has the wrong size"),
                    ));
                }
            }
        }
        // Written and flushed under the slot, so a newer upload never races this write.
        let current = slot.lock().await;
        if *current != generation {
            debug!("upload superseded by a newer one at chunk {i}");
            return Ok(Received::Interrupted);
        }
        out.write_all(&buf).await.map_err(write_refusal)?;
        out.flush().await.map_err(write_refusal)?;
        drop(current);
    }
    let current = slot.lock().await;
    if *current != generation {
        return Ok(Received::Interrupted);
    }
    out.sync_all().await.map_err(write_refusal)?;
    drop(current);
    Ok(Received::Complete)
}

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
    let mut input = match tokio::fs::File::open(store.path(&conv, &uploader, &file)).await {
        Ok(f) => f,
        Err(_) => tokio::fs::File::open(store.legacy_path(&conv, &uploader, &file))
            .await
            .map_err(|_| not_found())?,
    };
    let stored = input
        .metadata()
        .await
        .map_err(|e| io_refusal("read the file", e))?
        .len();
    let overhead = stored_overhead(&conv) as u64;
    let count = stored.div_ceil(CHUNK as u64 + overhead);
    let size = stored - count * overhead;
    let from = from_chunk.min(count);
    input
        .seek(std::io::SeekFrom::Start(stored_len(&conv, size, from)))
        .await
        .map_err(|e| io_refusal("read the file", e))?;
    codec::write_frame(send, &FileDown::Ready { size, have: from }, MAX_FILE_FRAME)
        .await
        .map_err(|e| io_refusal("answer", e))?;
    let conv_key = conv.storage_key();
    let mut buf = vec![0u8; CHUNK + overhead as usize];
    for i in from..count {
        let n = chunk_len(size, i) + overhead as usize;
        input
            .read_exact(&mut buf[..n])
            .await
            .map_err(|e| io_refusal("read the file", e))?;
        let sent = match conv {
            ConvId::General | ConvId::Room(_) => {
                let aad = chunk_aad(
                    Direction::Down,
                    &conv_key,
                    &uploader,
                    chunk_aad_id(&file, i),
                );
                let sealed = keys
                    .down
                    .seal(&aad, &buf[..n])
                    .map_err(|e| io_refusal("seal", e))?;
                write_chunk(send, &sealed).await
            }
            ConvId::Direct(..) => write_chunk(send, &buf[..n]).await,
        };
        if let Err(e) = sent {
            debug!("download interrupted at chunk {i}: {e}");
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn touch(path: &std::path::Path, age: Duration) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = std::fs::File::create(path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn the_sweep_removes_only_abandoned_partial_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().to_owned(), 1 << 20, 1 << 30);
        let day = Duration::from_secs(24 * 3600);
        let user = store.user_dir("alice");
        let old_part = user.join("a.part");
        let fresh_part = user.join("b.part");
        let running = user.join("c.part");
        let old_complete = user.join("d");
        let legacy_part = dir.path().join("e.part");
        touch(&old_part, day * 2);
        touch(&fresh_part, Duration::from_secs(60));
        touch(&running, day * 3);
        touch(&old_complete, day * 30);
        touch(&legacy_part, day * 2);
        store.reserved.lock().unwrap().insert(running.clone(), 10);
        assert_eq!(store.sweep_parts(PART_MAX_AGE), 2);
        assert!(!old_part.exists() && !legacy_part.exists());
        assert!(fresh_part.exists() && running.exists() && old_complete.exists());
    }

    #[test]
    fn usage_counts_uploads_in_progress_at_their_full_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().to_owned(), 1 << 20, 1 << 30);
        let user = store.user_dir("alice");
        std::fs::create_dir_all(&user).unwrap();
        std::fs::write(user.join("done"), vec![0; 1000]).unwrap();
        std::fs::write(user.join("half.part"), vec![0; 10]).unwrap();
        store
            .reserved
            .lock()
            .unwrap()
            .insert(user.join("half.part"), 500);
        assert_eq!(store.usage("alice", &user.join("other")).unwrap(), 1500);
        // The file being uploaded itself is not counted twice.
        assert_eq!(store.usage("Alice", &user.join("half")).unwrap(), 1000);
        assert_eq!(store.usage("bob", &user.join("x")).unwrap(), 0);
    }
}
