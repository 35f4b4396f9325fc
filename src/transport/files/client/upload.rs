//! One upload: hash the file, then send its chunks (resuming from what the server holds),
//! and hand the finished file to the client loop to post its file message.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt};
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
use crate::transport::envelope::Direction;
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
        let file_key = self.key.as_ref().map(FileKey::new);
        codec::write_frame(&mut send, &req, MAX_FILE_FRAME)
            .await
            .map_err(retry)?;
        let have = match read_down(&mut recv).await? {
            FileDown::Ready { have, .. } => have,
            other => return Err(retry(format!("unexpected answer {other:?}"))),
        };
        let count = chunk_count(info.size);
        let mut input = tokio::fs::File::open(&self.path).await.map_err(|e| {
            final_err(
                ErrorCode::BadRequest,
                format!("cannot read {}: {e}", self.path.display()),
            )
        })?;
        let start = (have.min(count) * CHUNK as u64).min(info.size);
        input
            .seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| final_err(ErrorCode::BadRequest, e.to_string()))?;
        if have > 0 {
            debug!(have, "upload resumes");
        }
        progress.report(start, true, &self.tx);
        let conv_key = self.conv.storage_key();
        let mut buf = vec![0u8; CHUNK];
        let mut done = start;
        for i in have..count {
            let n = chunk_len(info.size, i);
            input.read_exact(&mut buf[..n]).await.map_err(|e| {
                final_err(
                    ErrorCode::BadRequest,
                    format!("{} changed while sending: {e}", self.path.display()),
                )
            })?;
            let aad_id = chunk_aad_id(&self.file, i);
            let sealed = match (&file_key, &peer_key) {
                (Some(fk), _) => fk
                    .seal(&self.file, i, &buf[..n])
                    .map_err(|e| final_err(ErrorCode::Internal, e.to_string()))?,
                (None, Some(k)) => self
                    .identity
                    .seal(k, &conv_key, &self.me_key, aad_id, &buf[..n])
                    .map_err(|e| final_err(ErrorCode::Internal, e.to_string()))?,
                (None, None) => session
                    .keys
                    .up
                    .seal(
                        &chunk_aad(Direction::Up, &conv_key, &self.me_key, aad_id),
                        &buf[..n],
                    )
                    .map_err(|e| final_err(ErrorCode::Internal, e.to_string()))?,
            };
            if let Err(e) = write_chunk(&mut send, &sealed).await {
                // The server may have stopped the upload with a reason (a full disk):
                // that reason, if it sent one, says more than the broken stream.
                let answer = tokio::time::timeout(Duration::from_secs(2), read_down(&mut recv));
                return match answer.await {
                    Ok(Err(refused @ Failure::Final(..))) => Err(refused),
                    _ => Err(retry(e)),
                };
            }
            done += n as u64;
            progress.report(done, false, &self.tx);
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
