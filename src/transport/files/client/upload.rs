//! One upload: hash the file, then send its chunks (resuming from what the server holds),
//! and hand the finished file to the client loop to post its file message.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

use super::{
    Failure, FileMsg, LiveSession, Progress, after_failure, final_err, next_session, read_down,
    retry, sha256_of,
};
use crate::app::client::{Event, to_hex};
use crate::app::files::{
    CHUNK, FileInfo, chunk_aad_id, chunk_count, chunk_len, clean_name, guess_mime,
};
use crate::app::ids::{ClientMsgId, ConvId};
use crate::app::protocol::{ConvUp, ErrorCode, FileDown, FileReq};
use crate::transport::codec;
use crate::transport::envelope::{Direction, SessionKeys};
use crate::transport::files::chunk::{FileKey, MAX_FILE_FRAME, chunk_aad, write_chunk};
use crate::transport::identity::IdentityKey;

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
        if let Some(info) = self.prepare().await {
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
                    Ok(()) => break true,
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

    /// Hashes the file and makes its metadata; reports a local problem as an error.
    async fn prepare(&mut self) -> Option<FileInfo> {
        let fail = |m: String| FileMsg::Event(Event::error(ErrorCode::LocalFile, m));
        match tokio::fs::metadata(&self.path).await {
            Ok(m) if m.is_file() => {}
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
        }
        let (size, sha256) = match sha256_of(&self.path).await {
            Ok(x) => x,
            Err(e) => {
                let m = format!("cannot read {}: {e}", self.path.display());
                let _ = self.tx.send(fail(m));
                return None;
            }
        };
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
            sha256,
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

    async fn attempt(
        &self,
        session: LiveSession,
        info: &FileInfo,
        progress: &mut Progress,
    ) -> Result<(), Failure> {
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
        // A thread reads and seals the next chunks while this task writes the previous ones
        // to the stream: the file, the cipher and the network work at once.
        let (chunks_tx, mut chunks) = mpsc::channel(PIPELINE);
        let (path, file, size) = (self.path.clone(), self.file, info.size);
        tokio::task::spawn_blocking(move || {
            read_and_seal(&path, file, size, have..count, &sealer, &chunks_tx)
        });
        let mut done = start;
        let mut i = have;
        while let Some(sealed) = chunks.recv().await {
            let sealed = sealed?;
            if let Err(e) = write_chunk(&mut send, &sealed).await {
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
        match read_down(&mut recv).await? {
            FileDown::Done => {
                progress.report(info.size, false, &self.tx);
                let _ = send.finish();
                Ok(())
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

impl Sealer {
    fn seal(&self, file: &ClientMsgId, i: u64, plain: &[u8]) -> Result<Vec<u8>, String> {
        let aad_id = chunk_aad_id(file, i);
        match self {
            Sealer::Key(k) => k.seal(file, i, plain).map_err(|e| e.to_string()),
            Sealer::Identity {
                identity,
                peer,
                conv_key,
                me,
            } => identity
                .seal(peer, conv_key, me, aad_id, plain)
                .map_err(|e| e.to_string()),
            Sealer::Session { keys, conv_key, me } => keys
                .up
                .seal(&chunk_aad(Direction::Up, conv_key, me, aad_id), plain)
                .map_err(|e| e.to_string()),
        }
    }
}

/// Reads chunks `range` of the file at `path` and hands them on sealed, until the range
/// ends, an error (handed on too) or the receiver is gone. Blocking: runs on its own
/// thread.
fn read_and_seal(
    path: &std::path::Path,
    file: ClientMsgId,
    size: u64,
    range: std::ops::Range<u64>,
    sealer: &Sealer,
    out: &mpsc::Sender<Result<Vec<u8>, Failure>>,
) {
    use std::io::{Read, Seek};
    let unreadable = |e: std::io::Error| {
        final_err(
            ErrorCode::BadRequest,
            format!("cannot read {}: {e}", path.display()),
        )
    };
    let start = (range.start * CHUNK as u64).min(size);
    let opened = std::fs::File::open(path)
        .and_then(|mut f| f.seek(std::io::SeekFrom::Start(start)).map(|_| f));
    let mut input = match opened {
        Ok(f) => f,
        Err(e) => {
            let _ = out.blocking_send(Err(unreadable(e)));
            return;
        }
    };
    let mut buf = vec![0u8; CHUNK];
    for i in range {
        let n = chunk_len(size, i);
        let sealed = match input.read_exact(&mut buf[..n]) {
            Ok(()) => sealer
                .seal(&file, i, &buf[..n])
                .map_err(|e| final_err(ErrorCode::Internal, e)),
            Err(e) => Err(final_err(
                ErrorCode::BadRequest,
                format!("{} changed while sending: {e}", path.display()),
            )),
        };
        let failed = sealed.is_err();
        if out.blocking_send(sealed).is_err() || failed {
            return;
        }
    }
}
