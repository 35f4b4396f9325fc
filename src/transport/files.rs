//! File transfer on the wire: one bidirectional QUIC stream per upload or download, so a
//! file never blocks a conversation's messages. See "Files" in docs/PROTOCOL.md.
//!
//! The stream starts with a `ConvUp::File` frame; then the server answers with
//! [`FileDown`] frames and the chunks travel as raw frames, `u32` big-endian length ‖
//! sealed bytes. A chunk holds [`CHUNK`] plaintext bytes (the last one fewer) sealed with
//! AES-256-GCM-SIV whose AAD binds conversation, uploader, file id and chunk index:
//! under the session keys for `#general` (the server keeps the plaintext, as it does for
//! room messages), end to end under the private conversation's key otherwise (the server
//! keeps and relays the ciphertext only). Files are streamed through a fixed buffer, never
//! read whole into memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::client::ClientEvent;
use super::codec::{self, MAX_DOWN_FRAME};
use super::e2e::IdentityKey;
use super::envelope::{Aad, Direction, SessionKeys};
use super::quic::{Connection, RecvStream, SendStream};
use crate::app::client::{ClientCore, Command, Event, Output, to_hex};
use crate::app::files::{
    CHUNK, FileInfo, SESSION_OVERHEAD, chunk_aad_id, chunk_count, chunk_len, clean_name,
    guess_mime, human_size, stored_len, stored_name, stored_overhead,
};
use crate::app::ids::{ClientMsgId, ConvId, MsgId};
use crate::app::protocol::{ConvUp, E2E_OVERHEAD, ErrorCode, FileDown, FileReq};

/// Largest raw chunk frame either side accepts.
const MAX_CHUNK_FRAME: usize = CHUNK + E2E_OVERHEAD + SESSION_OVERHEAD;
/// Control frames on a file stream are small.
const MAX_FILE_FRAME: usize = 16 * 1024;
/// Progress events at most every this many bytes (and at the end).
const PROGRESS_STEP: u64 = 1024 * 1024;

async fn write_chunk(s: &mut SendStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(bytes);
    s.write_all(&frame).await.map_err(std::io::Error::other)
}

async fn read_chunk(r: &mut RecvStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)
        .await
        .map_err(std::io::Error::other)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_CHUNK_FRAME {
        return Err(std::io::Error::other(format!(
            "chunk frame of {len} bytes is over the limit"
        )));
    }
    buf.resize(len, 0);
    r.read_exact(buf).await.map_err(std::io::Error::other)?;
    Ok(())
}

fn chunk_aad<'a>(dir: Direction, conv: &'a str, sender: &'a str, id: ClientMsgId) -> Aad<'a> {
    Aad {
        dir,
        conv,
        sender,
        cmid: id,
    }
}

// ---------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------

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
                serve_upload(&mut send, &mut recv, &user, &keys, &store, conv, file, size).await
            }
            FileReq::Download {
                conv,
                uploader,
                file,
                from_chunk,
            } => {
                serve_download(
                    &mut send, &user, &keys, &store, conv, &uploader, file, from_chunk,
                )
                .await
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

type Refusal = (ErrorCode, String);

fn io_refusal(what: &str, e: impl std::fmt::Display) -> Refusal {
    warn!("file store: {what}: {e}");
    (ErrorCode::Internal, format!("the server could not {what}"))
}

#[allow(clippy::too_many_arguments)]
async fn serve_upload(
    send: &mut SendStream,
    recv: &mut RecvStream,
    user: &str,
    keys: &SessionKeys,
    store: &FileStore,
    conv: ConvId,
    file: ClientMsgId,
    size: u64,
) -> Result<(), Refusal> {
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

#[allow(clippy::too_many_arguments)]
async fn serve_download(
    send: &mut SendStream,
    user: &str,
    keys: &SessionKeys,
    store: &FileStore,
    conv: ConvId,
    uploader: &str,
    file: ClientMsgId,
    from_chunk: u64,
) -> Result<(), Refusal> {
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
// Client side
// ---------------------------------------------------------------------------------------

/// The live connection file tasks use (`None` while offline).
#[derive(Clone)]
pub struct Link {
    conn: Connection,
    keys: Arc<SessionKeys>,
}

/// A file message the client has shown: what a download needs.
#[derive(Debug, Clone)]
pub struct FileRef {
    conv: ConvId,
    uploader: String,
    info: FileInfo,
}

/// An upload not yet posted, kept on disk so a restarted client resumes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct PendingUpload {
    conv: ConvId,
    path: PathBuf,
    /// File id (hex).
    file: String,
}

/// File messages seen and uploads not yet posted.
#[derive(Debug, Default)]
pub struct Book {
    files: HashMap<MsgId, FileRef>,
    pending: Vec<PendingUpload>,
    /// Where `pending` is kept (next to the client state), if anywhere.
    pending_path: Option<PathBuf>,
}

impl Book {
    fn save_pending(&self) {
        let Some(p) = &self.pending_path else { return };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = p.with_extension("uploads.tmp");
            std::fs::write(
                &tmp,
                serde_json::to_vec(&self.pending).map_err(std::io::Error::other)?,
            )?;
            std::fs::rename(tmp, p)
        };
        if let Err(e) = write() {
            warn!("cannot save pending uploads to {}: {e}", p.display());
        }
    }

    fn forget_upload(&mut self, file: &str) {
        let before = self.pending.len();
        self.pending.retain(|u| u.file != file);
        if self.pending.len() != before {
            self.save_pending();
        }
    }
}

/// Shared between the client loop and the session's writer.
pub type FileBook = Arc<Mutex<Book>>;

/// Records the file messages among events, so `download {id}` finds them.
pub fn note_event(book: &FileBook, core: &ClientCore, e: &Event) {
    let add = |id: MsgId, label: &str, from: &str, file: &Option<FileInfo>| {
        if let (Some(info), Ok(conv)) = (file, core.parse_conv(label))
            && let Ok(mut b) = book.lock()
        {
            b.files.insert(
                id,
                FileRef {
                    conv,
                    uploader: from.to_ascii_lowercase(),
                    info: info.clone(),
                },
            );
        }
    };
    match e {
        Event::Message {
            conv,
            id,
            from,
            file,
            ..
        } => add(*id, conv, from, file),
        Event::Sent { conv, id, file, .. } => {
            add(*id, conv, core.user(), file);
            // Posted and stored: the upload is no longer pending.
            if let (Some(f), Ok(mut b)) = (file, book.lock()) {
                b.forget_upload(&f.id);
            }
        }
        Event::History { conv, messages, .. } => {
            for m in messages {
                add(m.id, conv, &m.from, &m.file);
            }
        }
        Event::Deleted { id, .. } => {
            if let Ok(mut b) = book.lock() {
                b.files.remove(id);
            }
        }
        _ => {}
    }
}

/// What file tasks tell the client loop.
pub enum FileMsg {
    /// An upload completed: post its file message.
    Uploaded(ConvId, FileInfo),
    /// A task needs a peer's identity key (`None` if not known yet).
    PeerKey(String, oneshot::Sender<Option<[u8; 32]>>),
    /// A transfer task ended (`true`: it succeeded).
    Ended(String, bool),
}

/// The client's file transfers.
pub struct ClientFiles {
    link: watch::Sender<Option<Link>>,
    tx: mpsc::UnboundedSender<FileMsg>,
    rx: Option<mpsc::UnboundedReceiver<FileMsg>>,
    /// File messages seen.
    pub book: FileBook,
    tasks: HashMap<String, tokio::task::AbortHandle>,
    events: async_channel::Sender<ClientEvent>,
    identity: Arc<IdentityKey>,
    me_key: String,
}

impl ClientFiles {
    /// Ready for transfers as `me`. With `state_file`, uploads not yet posted are kept
    /// beside it (`.uploads`) and the ones a previous run left are resumed now.
    pub fn new(
        me: &str,
        events: async_channel::Sender<ClientEvent>,
        identity: Arc<IdentityKey>,
        state_file: Option<&Path>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending_path = state_file.map(|p| p.with_extension("uploads"));
        let pending: Vec<PendingUpload> = pending_path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut this = Self {
            link: watch::channel(None).0,
            tx,
            rx: Some(rx),
            book: Arc::new(Mutex::new(Book {
                files: HashMap::new(),
                pending: pending.clone(),
                pending_path,
            })),
            tasks: HashMap::new(),
            events,
            identity,
            me_key: me.to_ascii_lowercase(),
        };
        for u in pending {
            if let Some(id) = crate::app::files::file_id_from_hex(&u.file) {
                info!("resuming the upload of {}", u.path.display());
                this.spawn_upload(u.conv, u.path, ClientMsgId(id));
            }
        }
        this
    }

    fn spawn_upload(&mut self, conv: ConvId, path: PathBuf, file: ClientMsgId) {
        let job = Upload {
            conv,
            path,
            file,
            me_key: self.me_key.clone(),
            identity: self.identity.clone(),
            link: self.link.subscribe(),
            tx: self.tx.clone(),
            events: self.events.clone(),
        };
        let task = tokio::spawn(job.run());
        self.tasks.insert(to_hex(&file.0), task.abort_handle());
    }

    /// The task messages the client loop drains (take it once).
    pub fn take_rx(&mut self) -> mpsc::UnboundedReceiver<FileMsg> {
        self.rx
            .take()
            .expect("the file message receiver is taken once")
    }

    /// A session started: tasks (re)start their transfers on it.
    pub fn connected(&self, conn: &Connection, keys: &Arc<SessionKeys>) {
        self.link.send_replace(Some(Link {
            conn: conn.clone(),
            keys: keys.clone(),
        }));
    }

    /// The session ended: tasks wait for the next.
    pub fn disconnected(&self) {
        self.link.send_replace(None);
    }

    /// Transfers in progress.
    pub fn active(&self) -> usize {
        self.tasks.len()
    }

    async fn emit(&self, e: Event) {
        let _ = self.events.send(ClientEvent::App(e)).await;
    }

    /// Handles a file command; gives back any other command.
    pub async fn command(
        &mut self,
        cmd: Command,
        core: &mut ClientCore,
    ) -> Result<Vec<Output>, Command> {
        match cmd {
            Command::SendFile { to, path } => {
                let conv = match core.parse_conv(&to) {
                    Ok(c) => c,
                    Err(e) => {
                        self.emit(e).await;
                        return Ok(Vec::new());
                    }
                };
                let mut id = [0u8; 16];
                if let Err(e) = getrandom::fill(&mut id) {
                    self.emit(Event::error(ErrorCode::Internal, e.to_string()))
                        .await;
                    return Ok(Vec::new());
                }
                let file = ClientMsgId(id);
                // An absolute path, so a restarted client finds the file again.
                let path = std::path::absolute(&path).unwrap_or_else(|_| PathBuf::from(&path));
                if let Ok(mut b) = self.book.lock() {
                    b.pending.push(PendingUpload {
                        conv: conv.clone(),
                        path: path.clone(),
                        file: to_hex(&id),
                    });
                    b.save_pending();
                }
                self.spawn_upload(conv.clone(), path, file);
                // A private conversation must be open for the peer's key to arrive.
                Ok(core.open_conv(&conv))
            }
            Command::Download { id, path } => {
                let found = self
                    .book
                    .lock()
                    .ok()
                    .and_then(|b| b.files.get(&id).cloned());
                let Some(fref) = found else {
                    let msg = format!("message {id} is not a file message this client has shown");
                    self.emit(Event::error(ErrorCode::NotFound, msg)).await;
                    return Ok(Vec::new());
                };
                let fid = fref.info.id.clone();
                let job = Download {
                    id,
                    fref,
                    path: PathBuf::from(path),
                    identity: self.identity.clone(),
                    link: self.link.subscribe(),
                    tx: self.tx.clone(),
                    events: self.events.clone(),
                };
                let task = tokio::spawn(job.run());
                self.tasks.insert(fid, task.abort_handle());
                Ok(Vec::new())
            }
            Command::Cancel { file } => {
                match self.tasks.remove(&file) {
                    Some(t) => {
                        t.abort();
                        if let Ok(mut b) = self.book.lock() {
                            b.forget_upload(&file);
                        }
                        self.emit(Event::Cancelled { file }).await;
                    }
                    None => {
                        let msg = format!("no transfer of file {file} is running");
                        self.emit(Event::error(ErrorCode::NotFound, msg)).await;
                    }
                }
                Ok(Vec::new())
            }
            other => Err(other),
        }
    }

    /// Handles a message from a task.
    pub fn on_msg(&mut self, msg: FileMsg, core: &mut ClientCore) -> Vec<Output> {
        match msg {
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

/// Waits for a connection.
async fn next_link(rx: &mut watch::Receiver<Option<Link>>) -> Option<Link> {
    let v = rx.wait_for(|l| l.is_some()).await.ok()?;
    v.clone()
}

/// Why one attempt failed.
enum Failure {
    /// For good: tell the user.
    Final(String, String),
    /// The connection went away: try again on the next one.
    Retry(String),
}

fn retry(e: impl std::fmt::Display) -> Failure {
    Failure::Retry(e.to_string())
}

fn final_err(code: ErrorCode, msg: impl Into<String>) -> Failure {
    Failure::Final(code.as_str().to_owned(), msg.into())
}

async fn read_down(recv: &mut RecvStream) -> Result<FileDown, Failure> {
    match codec::read_frame::<_, FileDown>(recv, MAX_DOWN_FRAME).await {
        Ok(Some(FileDown::Error { code, message })) => {
            Err(Failure::Final(code.as_str().to_owned(), message))
        }
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
    events: &async_channel::Sender<ClientEvent>,
    same_conn_failures: &mut u32,
) -> bool {
    match f {
        Failure::Final(code, message) => {
            let _ = events
                .send(ClientEvent::App(Event::Error { code, message }))
                .await;
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
                        let _ = events
                            .send(ClientEvent::App(Event::error(ErrorCode::Internal, msg)))
                            .await;
                        return false;
                    }
                    true
                }
            }
        }
    }
}

struct Progress {
    direction: &'static str,
    file: String,
    id: Option<MsgId>,
    total: u64,
    last: Option<u64>,
}

impl Progress {
    /// Reports progress if a step passed (or `force`: the start of an attempt).
    async fn report(
        &mut self,
        bytes: u64,
        force: bool,
        events: &async_channel::Sender<ClientEvent>,
    ) {
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
            let _ = events.send(ClientEvent::App(e)).await;
        }
    }
}

async fn sha256_of(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, to_hex(&h.finalize())))
}

struct Upload {
    conv: ConvId,
    path: PathBuf,
    file: ClientMsgId,
    me_key: String,
    identity: Arc<IdentityKey>,
    link: watch::Receiver<Option<Link>>,
    tx: mpsc::UnboundedSender<FileMsg>,
    events: async_channel::Sender<ClientEvent>,
}

impl Upload {
    async fn run(mut self) {
        let fid = to_hex(&self.file.0);
        if let Some(info) = self.prepare().await {
            let mut link_rx = self.link.clone();
            let mut progress = Progress {
                direction: "up",
                file: fid.clone(),
                id: None,
                total: info.size,
                last: None,
            };
            let mut same = 0;
            let ok = loop {
                let Some(link) = next_link(&mut link_rx).await else {
                    break false;
                };
                let conn = link.conn.clone();
                match self.attempt(link, &info, &mut progress).await {
                    Ok(()) => break true,
                    Err(f) => {
                        if !after_failure(f, &conn, &self.events, &mut same).await {
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
        let fail = |m: String| Event::Error {
            code: "file".to_owned(),
            message: m,
        };
        let meta = match tokio::fs::metadata(&self.path).await {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                let m = format!("{} is not a regular file", self.path.display());
                let _ = self.events.send(ClientEvent::App(fail(m))).await;
                return None;
            }
            Err(e) => {
                let m = format!("cannot read {}: {e}", self.path.display());
                let _ = self.events.send(ClientEvent::App(fail(m))).await;
                return None;
            }
        };
        let _ = meta;
        let (size, sha256) = match sha256_of(&self.path).await {
            Ok(x) => x,
            Err(e) => {
                let m = format!("cannot read {}: {e}", self.path.display());
                let _ = self.events.send(ClientEvent::App(fail(m))).await;
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
        })
    }

    async fn peer_key(&self) -> Result<Option<[u8; 32]>, Failure> {
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
        link: Link,
        info: &FileInfo,
        progress: &mut Progress,
    ) -> Result<(), Failure> {
        let peer_key = self.peer_key().await?;
        let (mut send, mut recv) = link.conn.open_bi().await.map_err(retry)?;
        let req = ConvUp::File(FileReq::Upload {
            conv: self.conv.clone(),
            file: self.file,
            size: info.size,
        });
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
        progress.report(start, true, &self.events).await;
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
            let sealed = match &peer_key {
                Some(k) => self
                    .identity
                    .seal(k, &conv_key, &self.me_key, aad_id, &buf[..n]),
                None => link.keys.up.seal(
                    &chunk_aad(Direction::Up, &conv_key, &self.me_key, aad_id),
                    &buf[..n],
                ),
            }
            .map_err(|e| final_err(ErrorCode::Internal, e.to_string()))?;
            write_chunk(&mut send, &sealed).await.map_err(retry)?;
            done += n as u64;
            progress.report(done, false, &self.events).await;
        }
        match read_down(&mut recv).await? {
            FileDown::Done => {
                progress.report(info.size, false, &self.events).await;
                let _ = send.finish();
                Ok(())
            }
            other => Err(retry(format!("unexpected answer {other:?}"))),
        }
    }
}

struct Download {
    id: MsgId,
    fref: FileRef,
    path: PathBuf,
    identity: Arc<IdentityKey>,
    link: watch::Receiver<Option<Link>>,
    tx: mpsc::UnboundedSender<FileMsg>,
    events: async_channel::Sender<ClientEvent>,
}

impl Download {
    fn part(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".part");
        PathBuf::from(p)
    }

    async fn run(self) {
        let fid = self.fref.info.id.clone();
        let mut progress = Progress {
            direction: "down",
            file: fid.clone(),
            id: Some(self.id),
            total: self.fref.info.size,
            last: None,
        };
        let mut link_rx = self.link.clone();
        let mut same = 0;
        let ok = loop {
            let Some(link) = next_link(&mut link_rx).await else {
                break None;
            };
            let conn = link.conn.clone();
            match self.attempt(link, &mut progress).await {
                Ok(sha) => break Some(sha),
                Err(f) => {
                    if !after_failure(f, &conn, &self.events, &mut same).await {
                        break None;
                    }
                }
            }
        };
        if let Some(sha) = ok {
            self.finish(sha).await;
        }
        let _ = self.tx.send(FileMsg::Ended(fid, true));
    }

    /// Checks the SHA-256 (`sha`: computed while writing, when this attempt wrote the whole
    /// file; else the part file is read again) and reports the download.
    async fn finish(&self, sha: Option<String>) {
        let part = self.part();
        let error = |m: String| ClientEvent::App(Event::error(ErrorCode::BadRequest, m));
        let hashed = match sha {
            Some(h) => Ok((0, h)),
            None => sha256_of(&part).await,
        };
        match hashed {
            Ok((_, sha)) if sha == self.fref.info.sha256 => {
                if let Err(e) = tokio::fs::rename(&part, &self.path).await {
                    let m = format!("cannot write {}: {e}", self.path.display());
                    let _ = self.events.send(error(m)).await;
                    return;
                }
                let e = Event::Downloaded {
                    id: self.id,
                    path: self.path.display().to_string(),
                    sha256: sha,
                };
                let _ = self.events.send(ClientEvent::App(e)).await;
            }
            Ok((_, sha)) => {
                let _ = tokio::fs::remove_file(&part).await;
                let m = format!(
                    "the downloaded file's SHA-256 {sha} is not the announced {}; it was discarded",
                    self.fref.info.sha256
                );
                let _ = self.events.send(error(m)).await;
            }
            Err(e) => {
                let m = format!("cannot read {}: {e}", part.display());
                let _ = self.events.send(error(m)).await;
            }
        }
    }

    /// One try; on success, the SHA-256 if this try wrote the whole file.
    async fn attempt(
        &self,
        link: Link,
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
        let (mut send, mut recv) = link.conn.open_bi().await.map_err(retry)?;
        let req = ConvUp::File(FileReq::Download {
            conv: self.fref.conv.clone(),
            uploader: self.fref.uploader.clone(),
            file,
            from_chunk: have,
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
        progress.report(start, true, &self.events).await;
        let conv_key = self.fref.conv.storage_key();
        let mut buf = Vec::with_capacity(MAX_CHUNK_FRAME);
        let mut done = start;
        let mut hasher = (start == 0).then(Sha256::new);
        for i in have..count {
            read_chunk(&mut recv, &mut buf).await.map_err(retry)?;
            let aad_id = chunk_aad_id(&file, i);
            let plain = match self.fref.conv {
                ConvId::General => link.keys.down.open(
                    &chunk_aad(Direction::Down, &conv_key, &self.fref.uploader, aad_id),
                    &buf,
                ),
                ConvId::Direct(..) => self
                    .identity
                    .open(&conv_key, &self.fref.uploader, aad_id, &buf)
                    .map(|(p, _)| p)
                    .map_err(|_| super::envelope::EnvelopeError::Auth),
            }
            .map_err(|e| final_err(ErrorCode::BadRequest, format!("chunk {i}: {e}")))?;
            if plain.len() != chunk_len(size, i) {
                return Err(final_err(
                    ErrorCode::BadRequest,
                    format!("chunk {i} has the wrong size"),
                ));
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&plain);
            }
            out.write_all(&plain).await.map_err(local)?;
            done += plain.len() as u64;
            progress.report(done, false, &self.events).await;
        }
        out.flush().await.map_err(local)?;
        out.sync_all().await.map_err(local)?;
        progress.report(info.size, false, &self.events).await;
        Ok(hasher.map(|h| to_hex(&h.finalize())))
    }
}
