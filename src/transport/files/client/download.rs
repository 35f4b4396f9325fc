//! One download: fetch the chunks into `<target>.part` (resuming after a drop), check the
//! SHA-256, and move the file into place. The target is never anything but a regular
//! file, replaced only when the command said `overwrite`; a failed download leaves no
//! part file behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::io::AsyncSeekExt;
use tokio::sync::{mpsc, watch};

use super::book::FileRef;
use super::{
    Failure, FileMsg, LiveSession, Progress, after_failure, final_err, next_session, read_down,
    retry, sha256_of,
};
use crate::app::client::{Event, to_hex};
use crate::app::files::{CHUNK, chunk_aad_id, chunk_count, chunk_len};
use crate::app::ids::{ClientMsgId, ConvId, MsgId};
use crate::app::protocol::{ConvUp, ErrorCode, FileDown, FileReq};
use crate::transport::codec;
use crate::transport::envelope::{Direction, EnvelopeError, SessionKeys};
use crate::transport::files::chunk::{
    FileKey, MAX_CHUNK_FRAME, MAX_FILE_FRAME, chunk_aad, read_chunk,
};
use crate::transport::identity::IdentityKey;

/// Whether `path` may become the downloaded file: absent, or a regular file and
/// `overwrite`. Anything else (a directory, a device, a FIFO, a symbolic link) is never
/// replaced.
async fn check_target(path: &Path, overwrite: bool) -> Result<(), Failure> {
    match tokio::fs::symlink_metadata(path).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(final_err(
            ErrorCode::BadRequest,
            format!("cannot check {}: {e}", path.display()),
        )),
        Ok(m) if m.is_file() && overwrite => Ok(()),
        Ok(m) if m.is_file() => Err(final_err(
            ErrorCode::Exists,
            format!(
                "{} already exists; add \"overwrite\":true to replace it",
                path.display()
            ),
        )),
        Ok(m) => {
            let kind = if m.is_dir() {
                "a directory"
            } else if m.is_symlink() {
                "a symbolic link"
            } else {
                "not a regular file"
            };
            Err(final_err(
                ErrorCode::Exists,
                format!(
                    "{} is {kind}: it is never replaced by a download",
                    path.display()
                ),
            ))
        }
    }
}

/// Whether the part file may be (re)used: absent or a regular file.
async fn check_part(part: &Path) -> Result<(), Failure> {
    match tokio::fs::symlink_metadata(part).await {
        Ok(m) if !m.is_file() => Err(final_err(
            ErrorCode::Exists,
            format!("{} is in the way and is not a regular file", part.display()),
        )),
        _ => Ok(()),
    }
}

/// A download task.
pub(super) struct Download {
    /// The file message.
    pub(super) id: MsgId,
    pub(super) fref: FileRef,
    /// The target.
    pub(super) path: PathBuf,
    /// Whether an existing regular file at `path` may be replaced.
    pub(super) overwrite: bool,
    pub(super) identity: Arc<IdentityKey>,
    pub(super) session: watch::Receiver<Option<LiveSession>>,
    pub(super) tx: mpsc::UnboundedSender<FileMsg>,
}

impl Download {
    /// `<target>.part`, where the bytes go until the file is complete and checked.
    pub(super) fn part(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".part");
        PathBuf::from(p)
    }

    pub(super) async fn run(self) {
        let fid = self.fref.info.id.clone();
        let mut progress = Progress {
            direction: "down",
            file: fid.clone(),
            id: Some(self.id),
            total: self.fref.info.size,
            last: None,
        };
        let checked = match check_target(&self.path, self.overwrite).await {
            Ok(()) => check_part(&self.part()).await,
            Err(f) => Err(f),
        };
        if let Err(Failure::Final(code, message)) = checked {
            let _ = self.tx.send(FileMsg::Event(Event::error(code, message)));
            let _ = self.tx.send(FileMsg::Ended(fid, false));
            return;
        }
        let mut session_rx = self.session.clone();
        let mut same = 0;
        let ok = loop {
            let Some(session) = next_session(&mut session_rx).await else {
                break None;
            };
            let conn = session.conn.clone();
            match self.attempt(session, &mut progress).await {
                Ok(sha) => break Some(sha),
                Err(f) => {
                    if !after_failure(f, &conn, &self.tx, &mut same).await {
                        break None;
                    }
                }
            }
        };
        let done = match ok {
            Some(sha) => self.finish(sha).await,
            None => false,
        };
        if !done {
            // Nothing half-written stays behind.
            let _ = tokio::fs::remove_file(self.part()).await;
        }
        let _ = self.tx.send(FileMsg::Ended(fid, done));
    }

    /// Checks the SHA-256 (`sha`: computed while writing, when this attempt wrote the whole
    /// file; else the part file is read again), moves the file into place and reports
    /// the download. Returns whether the file is in place.
    async fn finish(&self, sha: Option<String>) -> bool {
        let part = self.part();
        let error = |m: String| FileMsg::Event(Event::error(ErrorCode::BadRequest, m));
        let hashed = match sha {
            Some(h) => Ok((0, h)),
            None => sha256_of(&part).await,
        };
        match hashed {
            Ok((_, sha)) if sha == self.fref.info.sha256 => {
                // Checked again: something may have appeared there during the download.
                if let Err(Failure::Final(code, m)) = check_target(&self.path, self.overwrite).await
                {
                    let _ = self.tx.send(FileMsg::Event(Event::error(code, m)));
                    return false;
                }
                if let Err(e) = tokio::fs::rename(&part, &self.path).await {
                    let m = format!("cannot write {}: {e}", self.path.display());
                    let _ = self.tx.send(error(m));
                    return false;
                }
                let e = Event::Downloaded {
                    id: self.id,
                    path: self.path.display().to_string(),
                    sha256: sha,
                };
                let _ = self.tx.send(FileMsg::Event(e));
                true
            }
            Ok((_, sha)) => {
                let m = format!(
                    "the downloaded file's SHA-256 {sha} is not the announced {}; it was discarded",
                    self.fref.info.sha256
                );
                let _ = self.tx.send(error(m));
                false
            }
            Err(e) => {
                let m = format!("cannot read {}: {e}", part.display());
                let _ = self.tx.send(error(m));
                false
            }
        }
    }

    /// One try; on success, the SHA-256 if this try wrote the whole file.
    async fn attempt(
        &self,
        session: LiveSession,
        progress: &mut Progress,
    ) -> Result<Option<String>, Failure> {
        let info = &self.fref.info;
        let part = self.part();
        let local = |e: std::io::Error| {
            final_err(
                ErrorCode::BadRequest,
                format!("cannot write {}: {e}", part.display()),
            )
        };
        let mut out = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&part)
            .await
            .map_err(local)?;
        let count = chunk_count(info.size);
        let held = out.metadata().await.map_err(local)?.len();
        let have = (held / CHUNK as u64).min(count.saturating_sub(1));
        let start = have * CHUNK as u64;
        out.set_len(start).await.map_err(local)?;
        out.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(local)?;
        let Some(file) = info.file_id() else {
            return Err(final_err(ErrorCode::BadRequest, "malformed file id"));
        };
        let (mut send, mut recv) = session.conn.open_bi().await.map_err(retry)?;
        let (conv, uploader) = (self.fref.conv.clone(), self.fref.uploader.clone());
        let file_key = info.file_key().map(|k| FileKey::new(&k));
        let req = ConvUp::File(match file_key {
            Some(_) => FileReq::DownloadKeyed {
                conv,
                uploader,
                file,
                from_chunk: have,
            },
            None => FileReq::Download {
                conv,
                uploader,
                file,
                from_chunk: have,
            },
        });
        codec::write_frame(&mut send, &req, MAX_FILE_FRAME)
            .await
            .map_err(retry)?;
        let _ = send.finish();
        let (size, from) = match read_down(&mut recv).await? {
            FileDown::Ready { size, have } => (size, have),
            other => return Err(retry(format!("unexpected answer {other:?}"))),
        };
        if size != info.size || from != have {
            return Err(final_err(
                ErrorCode::BadRequest,
                format!(
                    "the server holds {size} bytes from chunk {from}; the message announced {} bytes",
                    info.size
                ),
            ));
        }
        progress.report(start, true, &self.tx);
        let conv_key = self.fref.conv.storage_key();
        let uploader = self.fref.uploader.clone();
        let opener = match (file_key, &self.fref.conv) {
            (Some(k), _) => Opener::Key(Box::new(k)),
            (None, ConvId::Direct(..)) => Opener::Identity {
                identity: self.identity.clone(),
                conv_key,
                uploader,
            },
            (None, ConvId::General | ConvId::Room(_)) => Opener::Session {
                keys: session.keys.clone(),
                conv_key,
                uploader,
            },
        };
        // A thread opens, hashes and writes the chunks while this task reads the next ones
        // from the stream.
        let out = out.into_std().await;
        let (chunks_tx, chunks) = mpsc::channel(PIPELINE);
        let sink = Sink {
            out,
            part: part.clone(),
            opener,
            file,
            size,
            hasher: (start == 0).then(Sha256::new),
        };
        let writer = tokio::task::spawn_blocking(move || sink.run(have..count, chunks));
        let mut received = Ok(());
        let mut done = start;
        for i in have..count {
            let mut buf = Vec::with_capacity(MAX_CHUNK_FRAME);
            if let Err(e) = read_chunk(&mut recv, &mut buf).await {
                received = Err(retry(e));
                break;
            }
            if chunks_tx.send(buf).await.is_err() {
                // The writer stopped: its result says why.
                break;
            }
            done += chunk_len(size, i) as u64;
            progress.report(done, false, &self.tx);
        }
        drop(chunks_tx);
        let written = writer
            .await
            .map_err(|e| final_err(ErrorCode::Internal, format!("download writer: {e}")))?;
        let hash = written?;
        received?;
        progress.report(info.size, false, &self.tx);
        Ok(hash)
    }
}

/// Chunks received ahead of the writer.
const PIPELINE: usize = 8;

/// How a download's chunks are opened.
enum Opener {
    /// With the file's own key (from the file message).
    Key(Box<FileKey>),
    /// The first scheme: this device's identity key.
    Identity {
        identity: Arc<IdentityKey>,
        conv_key: String,
        uploader: String,
    },
    /// The session keys (`#general`, public rooms).
    Session {
        keys: Arc<SessionKeys>,
        conv_key: String,
        uploader: String,
    },
}

impl Opener {
    /// Opens chunk `i` of `file` where it lies (the first scheme, for this device's
    /// identity key, into a new buffer): its plaintext.
    fn open<'b>(
        &self,
        file: &ClientMsgId,
        i: u64,
        sealed: &'b mut Vec<u8>,
    ) -> Result<&'b [u8], Failure> {
        let aad_id = chunk_aad_id(file, i);
        match self {
            Opener::Key(k) => k
                .open_in_place(file, i, sealed)
                .map(|p| &*p)
                .map_err(|e| final_err(ErrorCode::BadRequest, e.to_string())),
            Opener::Identity {
                identity,
                conv_key,
                uploader,
            } => {
                let (plain, _) =
                    identity
                        .open(conv_key, uploader, aad_id, sealed)
                        .map_err(|_| {
                            final_err(
                                ErrorCode::BadRequest,
                                format!("chunk {i}: {}", EnvelopeError::Auth),
                            )
                        })?;
                *sealed = plain;
                Ok(sealed)
            }
            Opener::Session {
                keys,
                conv_key,
                uploader,
            } => keys
                .down
                .open_in_place(
                    &chunk_aad(Direction::Down, conv_key, uploader, aad_id),
                    sealed,
                )
                .map(|p| &*p)
                .map_err(|e| final_err(ErrorCode::BadRequest, format!("chunk {i}: {e}"))),
        }
    }
}

/// The writing end of a download: the part file (positioned where the chunks go).
struct Sink {
    out: std::fs::File,
    part: PathBuf,
    opener: Opener,
    file: ClientMsgId,
    size: u64,
    /// When the download starts from the first chunk: the SHA-256 so far.
    hasher: Option<Sha256>,
}

impl Sink {
    /// Opens and writes chunks `range` as they come; blocking (its own thread). Returns
    /// the SHA-256 when it hashed and wrote the whole file; `Ok(None)` also when the
    /// chunks stopped early (the reader says why).
    fn run(
        mut self,
        range: std::ops::Range<u64>,
        mut chunks: mpsc::Receiver<Vec<u8>>,
    ) -> Result<Option<String>, Failure> {
        use std::io::Write;
        let part = self.part.clone();
        let local = |e: std::io::Error| {
            final_err(
                ErrorCode::BadRequest,
                format!("cannot write {}: {e}", part.display()),
            )
        };
        for i in range {
            let Some(mut sealed) = chunks.blocking_recv() else {
                return Ok(None);
            };
            let plain = self.opener.open(&self.file, i, &mut sealed)?;
            if plain.len() != chunk_len(self.size, i) {
                return Err(final_err(
                    ErrorCode::BadRequest,
                    format!("chunk {i} has the wrong size"),
                ));
            }
            if let Some(h) = self.hasher.as_mut() {
                h.update(plain);
            }
            self.out.write_all(plain).map_err(local)?;
        }
        self.out.sync_all().map_err(local)?;
        Ok(self.hasher.map(|h| to_hex(&h.finalize())))
    }
}
