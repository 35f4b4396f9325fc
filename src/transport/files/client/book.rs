//! What the client knows about files: the file messages it has shown (so `download {id}`
//! finds them) and the uploads not yet posted (kept on disk, so a restarted client
//! resumes them).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::warn;

use crate::app::client::{ClientCore, Event};
use crate::app::files::FileInfo;
use crate::app::ids::{ConvId, MsgId};
use crate::transport::save::write_atomic;

/// A file message the client has shown: what a download needs.
#[derive(Debug, Clone)]
pub(super) struct FileRef {
    pub(super) conv: ConvId,
    pub(super) uploader: String,
    pub(super) info: FileInfo,
}

/// An upload not yet posted, kept on disk so a restarted client resumes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct PendingUpload {
    pub(super) conv: ConvId,
    pub(super) path: PathBuf,
    /// File id (hex).
    pub(super) file: String,
    /// The file's own key (hex), if its chunks are sealed with one: kept so that a
    /// restarted client resumes with the same key (absent in lists of the first release,
    /// whose uploads resume as they started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) key: Option<String>,
}

/// File messages seen and uploads not yet posted.
#[derive(Debug, Default)]
pub struct Book {
    pub(super) files: HashMap<MsgId, FileRef>,
    pub(super) pending: Vec<PendingUpload>,
    /// Direct conversations whose last message went with the first scheme (the peer had no
    /// MLS device): their files are sealed with identity keys too, which a client of the
    /// first release can open. Set by the session's writer; for this run only.
    pub(super) legacy: HashSet<ConvId>,
    /// The saver of `pending`, if it is kept on disk.
    saver: Option<watch::Sender<Vec<PendingUpload>>>,
}

/// Shared between the client loop and the session's writer. Never held across IO: saving
/// `pending` only hands a copy to the saver task.
pub type FileBook = Arc<Mutex<Book>>;

impl Book {
    /// A book whose pending uploads start as `pending` and, with `saver`, are saved by it.
    pub(super) fn new(
        pending: Vec<PendingUpload>,
        saver: Option<watch::Sender<Vec<PendingUpload>>>,
    ) -> Self {
        Self {
            files: HashMap::new(),
            pending,
            legacy: HashSet::new(),
            saver,
        }
    }

    /// Adds an upload not yet posted.
    pub(super) fn add_upload(&mut self, u: PendingUpload) {
        self.pending.push(u);
        self.save_pending();
    }

    /// Drops an upload from the pending list (posted, failed or cancelled).
    pub(super) fn forget_upload(&mut self, file: &str) {
        let before = self.pending.len();
        self.pending.retain(|u| u.file != file);
        if self.pending.len() != before {
            self.save_pending();
        }
    }

    /// Records whether a direct conversation's newest message went with the first scheme
    /// (`legacy`) or with MLS.
    pub fn set_legacy(&mut self, conv: &ConvId, legacy: bool) {
        if legacy {
            self.legacy.insert(conv.clone());
        } else {
            self.legacy.remove(conv);
        }
    }

    /// Hands no more lists to the saver, which ends after writing the newest one.
    pub(super) fn stop_saving(&mut self) {
        self.saver = None;
    }

    fn save_pending(&self) {
        if let Some(s) = &self.saver {
            s.send_replace(self.pending.clone());
        }
    }
}

/// Writes the newest pending list each time it changes, one write at a time, so an older
/// list never lands after a newer one. Ends (after writing the last list) when the
/// sender is dropped.
pub(super) async fn save_pending_uploads(
    path: PathBuf,
    mut rx: watch::Receiver<Vec<PendingUpload>>,
) {
    while rx.changed().await.is_ok() {
        let list = rx.borrow_and_update().clone();
        let bytes = match serde_json::to_vec(&list) {
            Ok(b) => b,
            Err(e) => {
                warn!("cannot encode pending uploads: {e}");
                continue;
            }
        };
        if let Err(e) = write_atomic(path.clone(), "uploads.tmp", bytes).await {
            warn!("cannot save pending uploads to {}: {e}", path.display());
        }
    }
}

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
