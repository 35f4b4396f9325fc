//! The server's side of file transfer: the store of uploaded files under the data dir and
//! the serving of one upload or download stream.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
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

/// What the server's file streams need.
#[derive(Debug)]
pub struct FileStore {
    /// `<data dir>/files`.
    pub dir: PathBuf,
    /// Upload limit in bytes.
    pub max_size: u64,
    /// Per stored file, the generation of its newest upload: an upload that resumes
    /// supersedes one still running (a client that came back before the server noticed its
    /// old connection died), which then stops writing.
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<u64>>>>,
}

impl FileStore {
    /// Files under `dir`, uploads up to `max_size` bytes.
    pub fn new(dir: PathBuf, max_size: u64) -> Self {
        Self {
            dir,
            max_size,
            uploads: Mutex::new(HashMap::new()),
        }
    }

    fn upload_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<u64>> {
        let mut m = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, l| Arc::strong_count(l) > 1);
        m.entry(name.to_owned()).or_default().clone()
    }

    fn path(&self, conv: &ConvId, uploader: &str, file: &ClientMsgId) -> PathBuf {
        self.dir.join(stored_name(conv, uploader, file))
    }

    /// Erases a stored file (complete or partial), e.g. when its message is deleted for
    /// everyone. Returns whether anything was removed.
    pub fn erase(&self, conv: &ConvId, uploader: &str, file: &ClientMsgId) -> bool {
        let path = self.path(conv, uploader, file);
        let a = std::fs::remove_file(&path).is_ok();
        let b = std::fs::remove_file(path.with_extension("part")).is_ok();
        a || b
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
    store: &'a FileStore,
    /// The conversation the file belongs to.
    conv: ConvId,
}

fn io_refusal(what: &str, e: impl std::fmt::Display) -> Refusal {
    warn!("file store: {what}: {e}");
    (ErrorCode::Internal, format!("the server could not {what}"))
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
    if !conv.has_member(user) {
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
    tokio::fs::create_dir_all(&store.dir)
        .await
        .map_err(|e| io_refusal("create its files directory", e))?;
    let path = store.path(&conv, user, &file);
    let slot = store.upload_lock(&stored_name(&conv, user, &file));
    let mut current = slot.lock().await;
    *current += 1;
    let generation = *current;
    let part = path.with_extension("part");
    let count = chunk_count(size);
    let write_err = |e: std::io::Error| io_refusal("write the file", e);
    if tokio::fs::try_exists(&path).await.unwrap_or(false) {
        let ready = FileDown::Ready { size, have: count };
        codec::write_frame(send, &ready, MAX_FILE_FRAME)
            .await
            .map_err(|e| io_refusal("answer", e))?;
        return codec::write_frame(send, &FileDown::Done, MAX_FILE_FRAME)
            .await
            .map_err(|e| io_refusal("answer", e));
    }
    let mut out = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&part)
        .await
        .map_err(write_err)?;
    let held = out.metadata().await.map_err(write_err)?.len();
    let full = (CHUNK + stored_overhead(&conv)) as u64;
    let have = (held / full).min(count.saturating_sub(1));
    let keep = stored_len(&conv, size, have);
    out.set_len(keep).await.map_err(write_err)?;
    out.seek(std::io::SeekFrom::Start(keep))
        .await
        .map_err(write_err)?;
    drop(current);
    codec::write_frame(send, &FileDown::Ready { size, have }, MAX_FILE_FRAME)
        .await
        .map_err(|e| io_refusal("answer", e))?;
    debug!(have, count, "upload starts");
    let conv_key = conv.storage_key();
    let mut buf = Vec::with_capacity(MAX_CHUNK_FRAME);
    for i in have..count {
        if let Err(e) = read_chunk(recv, &mut buf).await {
            // Keep what arrived: the client resumes from it.
            let _ = out.sync_data().await;
            debug!("upload interrupted at chunk {i}: {e}");
            return Ok(());
        }
        let plain_len = chunk_len(size, i);
        match conv {
            ConvId::General => {
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
            return Ok(());
        }
        out.write_all(&buf).await.map_err(write_err)?;
        out.flush().await.map_err(write_err)?;
        drop(current);
    }
    let current = slot.lock().await;
    if *current != generation {
        return Ok(());
    }
    out.sync_all().await.map_err(write_err)?;
    drop(out);
    tokio::fs::rename(&part, &path).await.map_err(write_err)?;
    drop(current);
    info!(size, "file stored");
    codec::write_frame(send, &FileDown::Done, MAX_FILE_FRAME)
        .await
        .map_err(|e| io_refusal("answer", e))
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
    if !conv.has_member(user) {
        return Err(not_found());
    }
    let uploader = uploader.to_ascii_lowercase();
    let path = store.path(&conv, &uploader, &file);
    let Ok(mut input) = tokio::fs::File::open(&path).await else {
        return Err(not_found());
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
            ConvId::General => {
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

// ---------------------------------------------------------------------------------------
