//! What one connection's tasks share, as mini-redis's `Handler`: one value instead of a
//! long parameter list for every reader and the writer.

use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

use super::hub::HubMsg;
use super::queue::ConnQueue;
use crate::app::ids::ConnId;
use crate::app::server::Input;
use crate::transport::envelope::SessionKeys;
use crate::transport::files::FileStore;
use crate::transport::quic::Connection;

/// What one connection's tasks share once its login frame arrived.
pub(super) struct ConnCtx {
    /// Its id.
    pub id: ConnId,
    /// The QUIC connection.
    pub conn: Connection,
    /// The hub's inbox.
    pub hub: mpsc::Sender<HubMsg>,
    /// Its outgoing queue.
    pub queue: ConnQueue,
    /// Session keys agreed in the login exchange.
    pub keys: Arc<SessionKeys>,
    /// The user named in the login frame, case-folded (the sender in envelopes' AAD).
    pub user_key: String,
    /// The user, once the hub accepted the login (file transfers need it).
    pub logged_in: OnceLock<String>,
    /// Largest frame a client may send.
    pub max_frame: usize,
    /// Uploaded files.
    pub files: Arc<FileStore>,
}

impl ConnCtx {
    /// Sends an input to the hub; `false` once the hub is gone (the server is stopping).
    pub async fn to_hub(&self, input: Input) -> bool {
        self.hub.send(HubMsg::Input(input)).await.is_ok()
    }
}
