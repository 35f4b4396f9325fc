//! One upload: send the file's chunks (resuming from what the server holds), hashing them
//! as they are read, and hand the finished file, with its SHA-256, to the client loop to
//! post its file message.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

use super::{
    Failure, FileMsg, LiveSession, Progress, after_failure, final_err, next_session, read_down,
    retry,
};
use crate::app::client::{Event, to_hex};
use crate::app::files::{
    CHUNK, FileInfo, chunk_aad_id, chunk_count, chunk_len, clean_name, guess_mime,
};
use crate::app::ids::{ClientMsgId, ConvId};
use crate::app::protocol::{ConvUp, ErrorCode, FileDown, FileReq};
use crate::transport::codec;
use crate::transport::envelope::{Direction, SessionKeys};
use crate::transport::files::chunk::{
    FRAME_HEAD, FileKey, MAX_FILE_FRAME, chunk_aad, frame_len, sealable_frame, write_frame_parts,
};
use crate::transport::identity::IdentityKey;
use crate::transport::quic::Bytes;

/// An upload task.
pub(super) struct Upload {
    pub(super) conv: ConvId,
    pub(super) path: PathBuf,
    pub(super) file: ClientMsgId,
    /// The file's own key (end-to-end conversations); `None`: the first release's scheme.
    pub(super) key: Option<[u8; 32]>,
    pub(super) me_key: String,
    pub(super) identity: Arc<IdentityKey>,
    pub(super) session: watch::Receiver<Option<LiveSession>>,
    pub(super) tx: mpsc::UnboundedSender<FileMsg>,
}

impl Upload {
    pub(super) async fn run(mut self) {
        let fid = to_hex(&self.file.0);
        if let Some(mut info) = self.prepare().await {
            let mut session_rx = self.session.clone();
            let mut progress = Progress {
                direction: "up",
                file: fid.clone(),
                id: None,
                total: info.size,
                last: None,
            };
            let mut same = 0;
            let ok = loop {
                let Some(session) = next_session(&mut session_rx).await else {
                    break false;
                };
                let conn = session.conn.clone();
                match self.attempt(session, &info, &mut progress).await {
                    Ok(sha256) => {
                        info.sha256 = sha256;
                        break true;
                    }
                    Err(f) => {
                        if !after_failure(f, &conn, &self.tx, &mut same).await {
                            break false;
                        }
                    }
                }
            };
            if ok {
                let _ = self.tx.send(FileMsg::Uploaded(self.conv.clone(), info));
                let _ = self.tx.send(FileMsg::Ended(fid, true));
                return;
            }
        }
        let _ = self.tx.send(FileMsg::Ended(fid, false));
    }

    /// The file's metadata (its SHA-256 comes with the upload, from the bytes sent);
    /// reports a local problem as an error.
    async fn prepare(&mut self) -> Option<FileInfo> {
        let fail = |m: String| FileMsg::Event(Event::error(ErrorCode::LocalFile, m));
        let size = match tokio::fs::metadata(&self.path).await {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => {
                let m = format!("{} is not a regular file", self.path.display());
                let _ = self.tx.send(fail(m));
                return None;
            }
            Err(e) => {
                let m = format!("cannot read {}: {e}", self.path.display());
                let _ = self.tx.send(fail(m));
                return None;
            }
        };
        // Readable now (a problem later is the upload's): its bytes are hashed as they go.
        if let Err(e) = tokio::fs::File::open(&self.path).await {
            let m = format!("cannot read {}: {e}", self.path.display());
            let _ = self.tx.send(fail(m));
            return None;
        }
        let name = clean_name(
            &self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        Some(FileInfo {
            id: to_hex(&self.file.0),
            mime: guess_mime(&name).to_owned(),
            name,
            size,
            sha256: String::new(),
            key: self.key.map(|k| to_hex(&k)),
        })
    }

    async fn peer_key(&self) -> Result<Option<[u8; 32]>, Failure> {
        if self.key.is_some() {
            // Sealed with the file's own key: no peer (nor peer key) needed.
            return Ok(None);
        }
        let Some(peer) = self.conv.peer_of(&self.me_key) else {
            return Ok(None);
        };
        // The key arrives when the conversation opens; ask the client loop until it has it.
        for _ in 0..100 {
            let (tx, rx) = oneshot::channel();
            if self.tx.send(FileMsg::PeerKey(peer.to_owned(), tx)).is_err() {
                return Err(final_err(ErrorCode::Internal, "the client is ending"));
            }
            if let Ok(Some(k)) = rx.await {
                return Ok(Some(k));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(final_err(
            ErrorCode::Internal,
            format!("cannot encrypt for {peer}: their key is not known yet"),
        ))
    }

    /// One try; on success, the SHA-256 of the file sent (hex).
    async fn attempt(
        &self,
        session: LiveSession,
        info: &FileInfo,
        progress: &mut Progress,
    ) -> Result<String, Failure> {
        let peer_key = self.peer_key().await?;
        let (mut send, mut recv) = session.conn.open_bi().await.map_err(retry)?;
        let (conv, file, size) = (self.conv.clone(), self.file, info.size);
        let req = ConvUp::File(match self.key {
            Some(_) => FileReq::UploadKeyed { conv, file, size },
            None => FileReq::Upload { conv, file, size },
        });
        codec::write_frame(&mut send, &req, MAX_FILE_FRAME)
            .await
            .map_err(retry)?;
        let have = match read_down(&mut recv).await? {
            FileDown::Ready { have, .. } => have,
            other => return Err(retry(format!("unexpected answer {other:?}"))),
        };
        let count = chunk_count(info.size);
        let start = (have.min(count) * CHUNK as u64).min(info.size);
        if have > 0 {
            debug!(have, "upload resumes");
        }
        progress.report(start, true, &self.tx);
        let sealer = match (self.key.as_ref(), peer_key) {
            (Some(k), _) => Sealer::Key(Box::new(FileKey::new(k))),
            (None, Some(peer)) => Sealer::Identity {
                identity: self.identity.clone(),
                peer,
                conv_key: self.conv.storage_key(),
                me: self.me_key.clone(),
            },
            (None, None) => Sealer::Session {
                keys: session.keys.clone(),
                conv_key: self.conv.storage_key(),
                me: self.me_key.clone(),
            },
        };
        // A thread reads, hashes and seals the next chunks while this task writes the
        // previous ones to the stream: the file, the hash, the cipher and the network work
        // at once, and the file is read once.
        let (chunks_tx, mut chunks) = mpsc::channel(PIPELINE);
        let (path, file, size) = (self.path.clone(), self.file, info.size);
        let reader = tokio::task::spawn_blocking(move || {
            read_and_seal(&path, file, size, have..count, &sealer, &chunks_tx)
        });
        let mut done = start;
        let mut i = have;
        while let Some(frame) = chunks.recv().await {
            if let Err(e) = write_frame_parts(&mut send, &mut [frame?]).await {
                // The server may have stopped the upload with a reason (a full disk):
                // that reason, if it sent one, says more than the broken stream.
                let answer = tokio::time::timeout(Duration::from_secs(2), read_down(&mut recv));
                return match answer.await {
                    Ok(Err(refused @ Failure::Final(..))) => Err(refused),
                    _ => Err(retry(e)),
                };
            }
            done += chunk_len(size, i) as u64;
            i += 1;
            progress.report(done, false, &self.tx);
        }
        if i != count {
            return Err(final_err(
                ErrorCode::Internal,
                "the upload's reader stopped early",
            ));
        }
        let sha256 =
            reader.await.ok().flatten().ok_or_else(|| {
                final_err(ErrorCode::Internal, "the upload's reader stopped early")
            })?;
        match read_down(&mut recv).await? {
            FileDown::Done => {
                progress.report(info.size, false, &self.tx);
                let _ = send.finish();
                Ok(sha256)
            }
            other => Err(retry(format!("unexpected answer {other:?}"))),
        }
    }
}

/// Chunks read and sealed ahead of the stream.
const PIPELINE: usize = 8;

/// How an upload's chunks are sealed.
enum Sealer {
    /// With the file's own key (end-to-end conversations).
    Key(Box<FileKey>),
    /// The first scheme, for a peer's identity key.
    Identity {
        identity: Arc<IdentityKey>,
        peer: [u8; 32],
        conv_key: String,
        me: String,
    },
    /// With the session keys (`#general`, public rooms: the server keeps the plaintext).
    Session {
        keys: Arc<SessionKeys>,
        conv_key: String,
        me: String,
    },
}

/// Why a chunk could not be made.
enum ChunkError {
    /// Reading the file failed (it changed, or went away).
    Read(std::io::Error),
    /// Sealing failed.
    Seal(String),
}

impl Sealer {
    /// The whole frame of chunk `i` of `file`: its `n` bytes of plaintext filled in by
    /// `read` where they are sealed, so the file's bytes are copied once, from the page
    /// cache into the frame quinn sends (the first scheme, for a peer's identity key,
    /// seals into a copy).
    fn frame(
        &self,
        file: &ClientMsgId,
        i: u64,
        n: usize,
        read: impl FnOnce(&mut [u8]) -> std::io::Result<()>,
    ) -> Result<Vec<u8>, ChunkError> {
        let seal_err = |e: &dyn std::fmt::Display| ChunkError::Seal(e.to_string());
        let aad_id = chunk_aad_id(file, i);
        match self {
            Sealer::Identity {
                identity,
                peer,
                conv_key,
                me,
            } => {
                let mut plain = vec![0u8; n];
                read(&mut plain).map_err(ChunkError::Read)?;
                let sealed = identity
                    .seal(peer, conv_key, me, aad_id, &plain)
                    .map_err(|e| seal_err(&e))?;
                let mut frame = Vec::with_capacity(4 + sealed.len());
                frame.extend_from_slice(&frame_len(sealed.len()));
                frame.extend_from_slice(&sealed);
                Ok(frame)
            }
            Sealer::Key(k) => {
                let mut frame = sealable_frame(n);
                read(&mut frame[FRAME_HEAD..FRAME_HEAD + n]).map_err(ChunkError::Read)?;
                k.seal_in_place(file, i, &mut frame[4..])
                    .map_err(|e| seal_err(&e))?;
                Ok(frame)
            }
            Sealer::Session { keys, conv_key, me } => {
                let mut frame = sealable_frame(n);
                read(&mut frame[FRAME_HEAD..FRAME_HEAD + n]).map_err(ChunkError::Read)?;
                let aad = chunk_aad(Direction::Up, conv_key, me, aad_id);
                keys.up
                    .seal_in_place(&aad, &mut frame[4..])
                    .map_err(|e| seal_err(&e))?;
                Ok(frame)
            }
        }
    }
}

/// Reads chunks `range` of the file at `path` and hands on their frames, sealed, until the
/// range ends, an error (handed on too) or the receiver is gone; hashes the file's `size`
/// bytes on the way (the ones before the range, which the server holds, first). Returns
/// the SHA-256 (hex) once every frame was handed on. Blocking: runs on its own thread.
fn read_and_seal(
    path: &std::path::Path,
    file: ClientMsgId,
    size: u64,
    range: std::ops::Range<u64>,
    sealer: &Sealer,
    out: &mpsc::Sender<Result<Bytes, Failure>>,
) -> Option<String> {
    use std::io::Read;
    let changed = |e: std::io::Error| {
        final_err(
            ErrorCode::BadRequest,
            format!("{} changed while sending: {e}", path.display()),
        )
    };
    let mut input = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            let m = format!("cannot read {}: {e}", path.display());
            let _ = out.blocking_send(Err(final_err(ErrorCode::BadRequest, m)));
            return None;
        }
    };
    let mut hash = Sha256::new();
    let start = (range.start * CHUNK as u64).min(size);
    if let Err(e) = hash_prefix(&mut input, start, &mut hash) {
        let _ = out.blocking_send(Err(changed(e)));
        return None;
    }
    for i in range {
        let n = chunk_len(size, i);
        let read = |buf: &mut [u8]| {
            input.read_exact(buf)?;
            hash.update(&*buf);
            Ok(())
        };
        let frame = match sealer.frame(&file, i, n, read) {
            Ok(frame) => Ok(Bytes::from(frame)),
            Err(ChunkError::Read(e)) => Err(changed(e)),
            Err(ChunkError::Seal(e)) => Err(final_err(ErrorCode::Internal, e)),
        };
        let failed = frame.is_err();
        if out.blocking_send(frame).is_err() || failed {
            return None;
        }
    }
    Some(to_hex(&hash.finalize()))
}

/// Hashes the first `len` bytes of `input` (read from where it is).
fn hash_prefix(input: &mut std::fs::File, len: u64, hash: &mut Sha256) -> std::io::Result<()> {
    use std::io::Read;
    let mut buf = vec![0u8; (1024 * 1024).min(len as usize)];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        input.read_exact(&mut buf[..n])?;
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}
