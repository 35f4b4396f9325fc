//! The client's side of file transfer: one task per upload or download, which waits for
//! a connection, transfers (resuming after a drop), and reports to the client loop
//! through [`FileMsg`]. The loop owns the [`ClientCore`] and forwards the events, so
//! these tasks never touch the core or the client's event channel themselves.

mod book;
mod download;
mod upload;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::app::client::{ClientCore, Command, Event, Output, to_hex};
use crate::app::files::{FileInfo, file_id_from_hex, key_from_hex};
use crate::app::ids::{ClientMsgId, ConvId, MsgId};
use crate::app::protocol::{ErrorCode, FileDown};
use crate::app::rooms::Visibility;
use crate::transport::codec::{self, MAX_DOWN_FRAME};
use crate::transport::envelope::SessionKeys;
use crate::transport::identity::IdentityKey;
use crate::transport::quic::{Connection, RecvStream};
use crate::transport::save::read_file;

use super::chunk::FileKey;
pub use book::{Book, FileBook, note_event};
use book::{PendingUpload, save_pending_uploads};
use download::Download;
use upload::Upload;

/// Progress events at most every this many bytes (and at the end).
const PROGRESS_STEP: u64 = 1024 * 1024;

/// The session file tasks transfer on: its connection and session keys (`None` in the
/// watch channel while offline).
#[derive(Clone)]
struct LiveSession {
    conn: Connection,
    keys: Arc<SessionKeys>,
}

/// What file tasks tell the client loop.
#[derive(Debug)]
pub enum FileMsg {
    /// An event for the user (progress, a finished download, an error).
    Event(Event),
    /// An upload completed: post its file message.
    Uploaded(ConvId, FileInfo),
    /// A task needs a peer's identity key (`None` if not known yet).
    PeerKey(String, oneshot::Sender<Option<[u8; 32]>>),
    /// A transfer task ended (`true`: it succeeded).
    Ended(String, bool),
}

/// A running transfer.
struct Task {
    abort: tokio::task::AbortHandle,
    /// A download's part file, removed when the download is cancelled.
    part: Option<PathBuf>,
}

/// The client's file transfers.
pub struct ClientFiles {
    session: watch::Sender<Option<LiveSession>>,
    tx: mpsc::UnboundedSender<FileMsg>,
    rx: Option<mpsc::UnboundedReceiver<FileMsg>>,
    /// File messages seen.
    pub book: FileBook,
    tasks: HashMap<String, Task>,
    identity: Arc<IdentityKey>,
    me_key: String,
    /// Writes the pending-upload list (if kept on disk); awaited by [`ClientFiles::close`].
    saver: Option<tokio::task::JoinHandle<()>>,
}

impl ClientFiles {
    /// Ready for transfers as `me`. With `state_file`, uploads not yet posted are kept
    /// beside it (`.uploads`) and the ones a previous run left are resumed now.
    pub async fn new(me: &str, identity: Arc<IdentityKey>, state_file: Option<&Path>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending_path = state_file.map(|p| p.with_extension("uploads"));
        let pending: Vec<PendingUpload> = match &pending_path {
            Some(p) => read_file(p)
                .await
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let (saver_tx, saver) = match pending_path {
            Some(p) => {
                let (stx, srx) = watch::channel(pending.clone());
                (Some(stx), Some(tokio::spawn(save_pending_uploads(p, srx))))
            }
            None => (None, None),
        };
        let mut this = Self {
            session: watch::channel(None).0,
            tx,
            rx: Some(rx),
            book: Arc::new(Mutex::new(Book::new(pending.clone(), saver_tx))),
            tasks: HashMap::new(),
            identity,
            me_key: me.to_ascii_lowercase(),
            saver,
        };
        for u in pending {
            let key = u.key.as_deref().map(key_from_hex);
            match (file_id_from_hex(&u.file), key) {
                (Some(id), None) => {
                    info!("resuming the upload of {}", u.path.display());
                    this.spawn_upload(u.conv, u.path, ClientMsgId(id), None);
                }
                (Some(id), Some(Some(key))) => {
                    info!("resuming the upload of {}", u.path.display());
                    this.spawn_upload(u.conv, u.path, ClientMsgId(id), Some(key));
                }
                _ => warn!("a pending upload's saved state is malformed; it is dropped"),
            }
        }
        this
    }

    fn spawn_upload(
        &mut self,
        conv: ConvId,
        path: PathBuf,
        file: ClientMsgId,
        key: Option<[u8; 32]>,
    ) {
        let job = Upload {
            conv,
            path,
            file,
            key,
            me_key: self.me_key.clone(),
            identity: self.identity.clone(),
            session: self.session.subscribe(),
            tx: self.tx.clone(),
        };
        let abort = tokio::spawn(job.run()).abort_handle();
        let task = Task { abort, part: None };
        self.tasks.insert(to_hex(&file.0), task);
    }

    /// The task messages the client loop drains (take it once).
    pub fn take_rx(&mut self) -> mpsc::UnboundedReceiver<FileMsg> {
        self.rx
            .take()
            .expect("the file message receiver is taken once")
    }

    /// A session started: tasks (re)start their transfers on it.
    pub fn connected(&self, conn: &Connection, keys: &Arc<SessionKeys>) {
        self.session.send_replace(Some(LiveSession {
            conn: conn.clone(),
            keys: keys.clone(),
        }));
    }

    /// The session ended: tasks wait for the next.
    pub fn disconnected(&self) {
        self.session.send_replace(None);
    }

    /// Transfers in progress.
    pub fn active(&self) -> usize {
        self.tasks.len()
    }

    /// The client is ending: stops the transfers and waits until the list of pending
    /// uploads is on disk.
    pub async fn close(mut self) {
        for (_, t) in self.tasks.drain() {
            t.abort.abort();
        }
        if let Ok(mut b) = self.book.lock() {
            // Ends the saver once it wrote the newest list.
            b.stop_saving();
        }
        if let Some(s) = self.saver.take() {
            let _ = s.await;
        }
    }

    /// Handles a file command; gives back any other command.
    pub fn command(&mut self, cmd: Command, core: &mut ClientCore) -> Result<Vec<Output>, Command> {
        let error = |code, msg: String| Ok(vec![Output::Event(Event::error(code, msg))]);
        match cmd {
            Command::SendFile { to, path } => {
                let conv = match core.parse_conv(&to) {
                    Ok(c) => c,
                    Err(e) => return Ok(vec![Output::Event(e)]),
                };
                let mut id = [0u8; 16];
                if let Err(e) = getrandom::fill(&mut id) {
                    return error(ErrorCode::Internal, e.to_string());
                }
                let file = ClientMsgId(id);
                let key = match self.wants_key(&conv, core) {
                    true => match FileKey::random_bytes() {
                        Ok(k) => Some(k),
                        Err(e) => return error(ErrorCode::Internal, e.to_string()),
                    },
                    false => None,
                };
                // An absolute path, so a restarted client finds the file again.
                let path = std::path::absolute(&path).unwrap_or_else(|_| PathBuf::from(&path));
                if let Ok(mut b) = self.book.lock() {
                    b.add_upload(PendingUpload {
                        conv: conv.clone(),
                        path: path.clone(),
                        file: to_hex(&id),
                        key: key.map(|k| to_hex(&k)),
                    });
                }
                self.spawn_upload(conv.clone(), path, file, key);
                // A private conversation must be open for the peer's key to arrive.
                Ok(core.open_conv(&conv))
            }
            Command::Download {
                id,
                path,
                overwrite,
            } => {
                let found = self
                    .book
                    .lock()
                    .ok()
                    .and_then(|b| b.files.get(&id).cloned());
                let Some(fref) = found else {
                    let msg = format!("message {id} is not a file message this client has shown");
                    return error(ErrorCode::NotFound, msg);
                };
                let fid = fref.info.id.clone();
                let job = Download {
                    id,
                    fref,
                    path: PathBuf::from(path),
                    overwrite,
                    identity: self.identity.clone(),
                    session: self.session.subscribe(),
                    tx: self.tx.clone(),
                };
                let part = Some(job.part());
                let abort = tokio::spawn(job.run()).abort_handle();
                self.tasks.insert(fid, Task { abort, part });
                Ok(Vec::new())
            }
            Command::Cancel { file } => match self.tasks.remove(&file) {
                Some(t) => {
                    t.abort.abort();
                    if let Some(part) = t.part {
                        // What a cancelled download wrote is of no use: leave nothing.
                        tokio::spawn(async move {
                            let _ = tokio::fs::remove_file(part).await;
                        });
                    }
                    if let Ok(mut b) = self.book.lock() {
                        b.forget_upload(&file);
                    }
                    Ok(vec![Output::Event(Event::Cancelled { file })])
                }
                None => error(
                    ErrorCode::NotFound,
                    format!("no transfer of file {file} is running"),
                ),
            },
            other => Err(other),
        }
    }

    /// Whether a new file for `conv` gets its own key (sealed end to end, the key in the
    /// file message): in a direct conversation unless its newest message went with the
    /// first scheme (a peer without an MLS device, whose client of the first release knows
    /// only identity keys), and in a private room. `#general` and public rooms keep their
    /// files readable by the server.
    fn wants_key(&self, conv: &ConvId, core: &ClientCore) -> bool {
        match conv {
            ConvId::General => false,
            ConvId::Direct(..) => !self.book.lock().is_ok_and(|b| b.legacy.contains(conv)),
            ConvId::Room(key) => core
                .rooms()
                .get(key)
                .is_some_and(|r| r.visibility == Visibility::Private),
        }
    }

    /// Handles a message from a task.
    pub fn on_msg(&mut self, msg: FileMsg, core: &mut ClientCore) -> Vec<Output> {
        match msg {
            FileMsg::Event(e) => vec![Output::Event(e)],
            FileMsg::Uploaded(conv, info) => core.send_file_message(conv, &info),
            FileMsg::PeerKey(peer, reply) => {
                let key = core.peer_key(&peer);
                let _ = reply.send(key);
                match (key, core.parse_conv(&format!("@{peer}"))) {
                    // The key comes with the conversation's stream: open it.
                    (None, Ok(conv)) => core.open_conv(&conv),
                    _ => Vec::new(),
                }
            }
            FileMsg::Ended(fid, ok) => {
                self.tasks.remove(&fid);
                if !ok && let Ok(mut b) = self.book.lock() {
                    b.forget_upload(&fid);
                }
                Vec::new()
            }
        }
    }
}

/// Waits for a session (`None`: the client is ending).
async fn next_session(rx: &mut watch::Receiver<Option<LiveSession>>) -> Option<LiveSession> {
    let v = rx.wait_for(|l| l.is_some()).await.ok()?;
    v.clone()
}

/// Why one attempt failed.
enum Failure {
    /// For good: tell the user.
    Final(ErrorCode, String),
    /// The connection went away: try again on the next one.
    Retry(String),
}

fn retry(e: impl std::fmt::Display) -> Failure {
    Failure::Retry(e.to_string())
}

fn final_err(code: ErrorCode, msg: impl Into<String>) -> Failure {
    Failure::Final(code, msg.into())
}

/// Reads the server's next control frame on a file stream; its `Error` is final.
async fn read_down(recv: &mut RecvStream) -> Result<FileDown, Failure> {
    match codec::read_frame::<_, FileDown>(recv, MAX_DOWN_FRAME).await {
        Ok(Some(FileDown::Error { code, message })) => Err(Failure::Final(code, message)),
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(retry("the server ended the file stream")),
        Err(e) => Err(retry(e)),
    }
}

/// After a failed attempt: reports a final failure, or waits until a retry makes sense
/// (a lost connection waits for the next one; the server kept what it received, so the
/// transfer resumes). Returns whether to retry.
async fn after_failure(
    f: Failure,
    conn: &Connection,
    tx: &mpsc::UnboundedSender<FileMsg>,
    same_conn_failures: &mut u32,
) -> bool {
    match f {
        Failure::Final(code, message) => {
            let _ = tx.send(FileMsg::Event(Event::error(code, message)));
            false
        }
        Failure::Retry(why) => {
            debug!("file transfer interrupted: {why}");
            tokio::select! {
                _ = conn.closed() => {
                    *same_conn_failures = 0;
                    true
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    *same_conn_failures += 1;
                    if *same_conn_failures >= 5 {
                        let msg = format!("file transfer failed: {why}");
                        let _ = tx.send(FileMsg::Event(Event::error(ErrorCode::Internal, msg)));
                        return false;
                    }
                    true
                }
            }
        }
    }
}

/// Throttled `transfer` events of one transfer.
struct Progress {
    direction: &'static str,
    file: String,
    id: Option<MsgId>,
    total: u64,
    last: Option<u64>,
}

impl Progress {
    /// Reports progress if a step passed (or `force`: the start of an attempt).
    fn report(&mut self, bytes: u64, force: bool, tx: &mpsc::UnboundedSender<FileMsg>) {
        let due = force
            || match self.last {
                None => true,
                Some(l) => bytes >= l + PROGRESS_STEP || (bytes == self.total && l != bytes),
            };
        if due {
            self.last = Some(bytes);
            let e = Event::Transfer {
                direction: self.direction.to_owned(),
                file: self.file.clone(),
                id: self.id,
                bytes,
                total: self.total,
            };
            let _ = tx.send(FileMsg::Event(e));
        }
    }
}

/// Size and hex SHA-256 of a file, read through a fixed buffer.
async fn sha256_of(path: &Path) -> std::io::Result<(u64, String)> {
    // One blocking loop on its own thread: a tokio read per 64 KiB was a thread hop each.
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(&path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1024 * 1024];
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            total += n as u64;
        }
        Ok((total, to_hex(&h.finalize())))
    })
    .await
    .map_err(std::io::Error::other)?
}
