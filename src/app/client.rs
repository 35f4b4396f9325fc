//! The client's chat rules as a state machine, shared by the scripted client and the GUI.
//!
//! It keeps the outbox (sent but not acknowledged, resent after a reconnect with the same
//! client message id), the sequence position of each conversation (catch-up from there,
//! gaps noticed and filled), the set of shown messages (nothing shown twice) and the `sync`
//! barriers. The driver feeds it commands and server frames; it answers with frames to send
//! and [`Event`]s for the user.

use super::files::{FileInfo, split_text};
use super::ids::{ClientMsgId, ConvId, GENERAL, MsgId, Seq, UserName};
use super::protocol::{
    ControlDown, ControlUp, ConvDown, ConvEvent, ConvSummary, ConvUp, DeleteScope, ErrorCode,
    EventKind, Hidden, MemberChange, MemberInfo, Moderation, Role, RoomDown, RoomInfo, RoomUp,
    Visibility,
};
use super::rooms::RoomName;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

/// Largest message text the client sends (the server's default limit).
pub const MAX_TEXT: usize = 16 * 1024;

/// A user command (one JSON line in scripted mode, a click in the GUI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Post `text` to `#general` or `@user`.
    Send {
        /// `#general` or `@user`.
        to: String,
        /// Message text.
        text: String,
    },
    /// Delete a message for me or for everyone.
    Delete {
        /// Server message id.
        id: MsgId,
        /// `me` or `everyone`.
        #[serde(rename = "for")]
        scope: DeleteScope,
    },
    /// List online users.
    Who,
    /// Fetch a page of a conversation's history.
    History {
        /// `#general` or `@user`.
        conv: String,
        /// Only events before this sequence number.
        #[serde(default)]
        before: Option<Seq>,
        /// Page size (server default when absent).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Barrier: answered by a `sync` event once everything before it was handled.
    Sync,
    /// Debugging: which conversation streams are open now (answered by `streams`).
    Streams,
    /// Log out and end.
    Logout,
    /// Upload the file at `path` to `#general` or `@user`, then post it as a file message.
    SendFile {
        /// `#general` or `@user`.
        to: String,
        /// Local file.
        path: String,
    },
    /// Download the file of file message `id` to `path`.
    Download {
        /// Server id of the file message.
        id: MsgId,
        /// Where to write it.
        path: String,
        /// Replace an existing regular file at `path` (never anything else).
        #[serde(default)]
        overwrite: bool,
    },
    /// Cancel the transfer of file `file` (hex id, as in `transfer` events).
    Cancel {
        /// File id.
        file: String,
    },
    /// Create a room (you become its owner).
    CreateRoom {
        /// `#name`.
        room: String,
        /// Topic.
        #[serde(default)]
        topic: String,
        /// `public` (default: listed, anyone may join) or `private` (invite-only).
        #[serde(default = "public")]
        visibility: Visibility,
    },
    /// The room directory: public rooms (and private ones you are in) whose name or topic
    /// contains `filter`.
    Rooms {
        /// Case-insensitive filter ("" or absent: all).
        #[serde(default)]
        filter: String,
    },
    /// Join a public room (or a private one you are invited to).
    Join {
        /// `#name`.
        room: String,
    },
    /// Invite a user to a room.
    Invite {
        /// `#name`.
        room: String,
        /// Who.
        user: String,
    },
    /// Accept an invitation (joins).
    Accept {
        /// `#name`.
        room: String,
    },
    /// Decline an invitation.
    Decline {
        /// `#name`.
        room: String,
    },
    /// Leave a room (every session of yours).
    Leave {
        /// `#name`.
        room: String,
    },
    /// A room's member list.
    Members {
        /// `#name`.
        room: String,
    },
    /// Set a room's topic (moderators).
    Topic {
        /// `#name`.
        room: String,
        /// New topic.
        topic: String,
    },
    /// Remove a member now (moderators; they may rejoin a public room).
    Kick {
        /// `#name`.
        room: String,
        /// Who.
        user: String,
    },
    /// Remove a member and keep them out (moderators).
    Ban {
        /// `#name`.
        room: String,
        /// Who.
        user: String,
    },
    /// Let a banned user back in (moderators).
    Unban {
        /// `#name`.
        room: String,
        /// Who.
        user: String,
    },
    /// Make a member a moderator (owner).
    Promote {
        /// `#name`.
        room: String,
        /// Who.
        user: String,
    },
    /// Make a moderator a member again (owner).
    Demote {
        /// `#name`.
        room: String,
        /// Who.
        user: String,
    },
}

fn public() -> Visibility {
    Visibility::Public
}

/// The room request for a room command (`None` for other commands).
fn room_up(cmd: Command) -> Option<RoomUp> {
    let moderate = |room, user, action| RoomUp::Moderate { room, user, action };
    Some(match cmd {
        Command::CreateRoom {
            room,
            topic,
            visibility,
        } => RoomUp::Create {
            name: room,
            topic,
            visibility,
        },
        Command::Rooms { filter } => RoomUp::List { filter },
        Command::Join { room } | Command::Accept { room } => RoomUp::Join { room },
        Command::Invite { room, user } => RoomUp::Invite { room, user },
        Command::Decline { room } => RoomUp::Decline { room },
        Command::Leave { room } => RoomUp::Leave { room },
        Command::Members { room } => RoomUp::Members { room },
        Command::Topic { room, topic } => RoomUp::Topic { room, topic },
        Command::Kick { room, user } => moderate(room, user, Moderation::Kick),
        Command::Ban { room, user } => moderate(room, user, Moderation::Ban),
        Command::Unban { room, user } => moderate(room, user, Moderation::Unban),
        Command::Promote { room, user } => moderate(room, user, Moderation::Promote),
        Command::Demote { room, user } => moderate(room, user, Moderation::Demote),
        _ => return None,
    })
}

/// A room as listed in `rooms`, `room_state` and `joined` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomItem {
    /// `#name` as its creator spelled it.
    pub room: String,
    /// Topic.
    pub topic: String,
    /// `public` or `private`.
    pub visibility: Visibility,
    /// Member count.
    pub members: u32,
    /// Newest activity, Unix ms (0: none).
    pub last_activity: u64,
    /// Your role, if you are a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

impl From<RoomInfo> for RoomItem {
    fn from(r: RoomInfo) -> Self {
        Self {
            room: r.name,
            topic: r.topic,
            visibility: r.visibility,
            members: r.members,
            last_activity: r.last_activity,
            role: r.role,
        }
    }
}

/// A pending invitation, as listed in `room_state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationItem {
    /// `#name`.
    pub room: String,
    /// Who invited you.
    pub by: String,
    /// The room's topic.
    pub topic: String,
}

/// One message as shown in a `history` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem {
    /// Server id.
    pub id: MsgId,
    /// Sequence number.
    pub seq: Seq,
    /// Author.
    pub from: String,
    /// Text; `None` when deleted for everyone.
    pub text: Option<String>,
    /// Server time, Unix ms.
    pub ts: u64,
    /// For a file message, its file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
}

/// Something for the user (one JSON line in scripted mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Logged in for the first time in this run.
    Ready {
        /// Name as registered.
        user: String,
        /// Users online.
        online: Vec<String>,
        /// How long after sending an author may delete for everyone, seconds.
        delete_window_secs: u64,
    },
    /// Connection lost; commands are kept and sent after the reconnect.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// Logged in again after a disconnect.
    Reconnected {
        /// Users online.
        online: Vec<String>,
    },
    /// Own message stored by the server.
    Sent {
        /// `#general` or `@peer`.
        conv: String,
        /// Server id.
        id: MsgId,
        /// Sequence number.
        seq: Seq,
        /// Server time, Unix ms.
        ts: u64,
        /// The text sent.
        text: String,
        /// For a file message, its file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<FileInfo>,
    },
    /// A message (text `None`: deleted for everyone).
    Message {
        /// `#general` or `@peer`.
        conv: String,
        /// Server id.
        id: MsgId,
        /// Sequence number.
        seq: Seq,
        /// Author.
        from: String,
        /// Text.
        text: Option<String>,
        /// Server time, Unix ms.
        ts: u64,
        /// For a file message, its file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<FileInfo>,
    },
    /// Progress of a file transfer (throttled: about every MiB, and at the end).
    Transfer {
        /// `up` or `down`.
        direction: String,
        /// File id (hex).
        file: String,
        /// Server id of the file message (downloads).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<MsgId>,
        /// Bytes done.
        bytes: u64,
        /// Size.
        total: u64,
    },
    /// A transfer was cancelled.
    Cancelled {
        /// File id (hex).
        file: String,
    },
    /// A download finished and its SHA-256 matched.
    Downloaded {
        /// Server id of the file message.
        id: MsgId,
        /// Where it was written.
        path: String,
        /// Hex SHA-256.
        sha256: String,
    },
    /// A peer's identity key is not the one pinned: their safety number changed (a new
    /// device, a reinstall — or someone in the middle). New messages use the new key.
    KeyChanged {
        /// The peer.
        user: String,
        /// Hex of the key pinned until now.
        old: String,
        /// Hex of the new key.
        new: String,
    },
    /// A message was deleted.
    Deleted {
        /// Conversation.
        conv: String,
        /// Message id.
        id: MsgId,
        /// `me` or `everyone`.
        #[serde(rename = "for")]
        scope: DeleteScope,
    },
    /// Someone came or went.
    Presence {
        /// User.
        user: String,
        /// Online?
        online: bool,
    },
    /// Answer to `who`.
    Who {
        /// Online users.
        users: Vec<String>,
    },
    /// Answer to `history`.
    History {
        /// Conversation.
        conv: String,
        /// Oldest first.
        messages: Vec<HistoryItem>,
        /// Older messages exist.
        more: bool,
    },
    /// Answer to `sync`.
    Sync,
    /// Answer to `streams`: the conversation streams open now (the control stream and file
    /// transfers aside). Idle streams close, so this is a debugging figure, not a roster.
    Streams {
        /// The conversations whose stream is open, by label.
        open: Vec<String>,
        /// Conversation streams the server has not finished yet (closing ones included).
        reading: usize,
    },
    /// After `ready` / `reconnected`: the rooms you are in and your pending invitations.
    RoomState {
        /// Your rooms.
        rooms: Vec<RoomItem>,
        /// Pending invitations.
        invitations: Vec<InvitationItem>,
    },
    /// Answer to `rooms`.
    Rooms {
        /// Matching rooms.
        rooms: Vec<RoomItem>,
    },
    /// You joined (or created) a room, in this session or another of yours.
    Joined {
        /// The room.
        #[serde(flatten)]
        room: RoomItem,
    },
    /// You are no longer in a room: `reason` is `left`, `kicked`, `banned` or `closed`.
    Left {
        /// `#name`.
        room: String,
        /// Why.
        reason: MemberChange,
        /// The moderator, for a kick or ban.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// You were invited to a room.
    Invited {
        /// `#name`.
        room: String,
        /// Who invited you.
        by: String,
        /// The room's topic.
        topic: String,
    },
    /// Someone's membership of a room you are in changed.
    Member {
        /// `#name`.
        room: String,
        /// Whose.
        user: String,
        /// `joined`, `left`, `kicked`, `banned`, `unbanned`, `promoted`, `demoted`,
        /// `owner`, `invited` or `declined`.
        change: MemberChange,
        /// Who did it, if not the user.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A room's topic changed.
    Topic {
        /// `#name`.
        room: String,
        /// New topic.
        topic: String,
        /// Who set it.
        by: String,
    },
    /// Answer to `members`.
    Members {
        /// `#name`.
        room: String,
        /// Members.
        members: Vec<MemberInfo>,
    },
    /// A command failed.
    Error {
        /// Machine-readable code (its snake_case name in JSON).
        code: ErrorCode,
        /// For a person.
        message: String,
    },
}

impl Event {
    /// An error event.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Event::Error {
            code,
            message: message.into(),
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send on the control stream.
    Control(ControlUp),
    /// Send on the stream of this conversation, opening it first if there is none.
    Conv(ConvId, ConvUp),
    /// Tell the user.
    Event(Event),
}

/// What the client remembers between runs (per server and user).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    /// Last sequence number seen per conversation (storage keys).
    pub convs: BTreeMap<String, Seq>,
    /// Highest delete-for-me counter seen.
    pub hide_cursor: u64,
    /// Identity keys seen per peer (hex, oldest first; the last is the pinned one).
    #[serde(default)]
    pub peer_keys: BTreeMap<String, Vec<String>>,
}

/// How long a conversation stream may go without a frame either way before the client
/// closes it (it reopens on the next use, or when the server reports activity).
pub const STREAM_IDLE: Duration = Duration::from_secs(60);

/// Conversation streams the client keeps open at once. The server grants 32 streams per
/// connection (`Limits::streams_per_conn`); the rest is for the control stream and file
/// transfers. Beyond this, the least recently used quiet stream is closed to make room.
pub const MAX_CONV_STREAMS: usize = 24;

/// A conversation stream's life: `Closed` → `CatchingUp` (sent `Open`) → `Open` (caught
/// up) → `Closing` (sent `Close`, reading until the server's `Closed`) → `Closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Closed,
    CatchingUp,
    Open,
    Closing,
}

#[derive(Debug)]
struct ConvState {
    last_seq: Option<Seq>,
    stream: Stream,
    /// To be opened as soon as it can be: asked for while closing, or while every stream
    /// slot was taken.
    want: bool,
    /// Requests made while the stream was closing, sent after the next `Open`.
    held: Vec<ConvUp>,
    /// History requests and barriers sent on this stream and not answered yet: a stream
    /// with either is never closed.
    history: u32,
    syncs: u32,
    /// When the last frame went either way (the core's clock, ms).
    used: u64,
}

impl ConvState {
    fn new(last_seq: Option<Seq>) -> Self {
        Self {
            last_seq,
            stream: Stream::Closed,
            want: false,
            held: Vec::new(),
            history: 0,
            syncs: 0,
            used: 0,
        }
    }
}

#[derive(Debug)]
struct Pending {
    cmid: ClientMsgId,
    conv: ConvId,
    text: String,
    /// Written on the current connection.
    sent: bool,
}

#[derive(Debug)]
struct Barrier {
    token: u64,
    sent: bool,
    waiting: usize,
    /// 1: waiting for every stream to answer (every earlier command handled, its effects
    /// queued); 2: asked every stream again, so whatever those commands queued on *other*
    /// streams has arrived too.
    round: u8,
}

/// How far the client is in ending its run. The driver reports the end of the commands and
/// of the file transfers; the core decides when everything is flushed and logs out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ending {
    /// Commands may still come.
    #[default]
    Running,
    /// The commands ended while file transfers were running: drain once they are done
    /// (an upload still posts its file message).
    AfterTransfers,
    /// The commands ended: barrier `token` flushes the outbox and every answer; once it
    /// completes, the core logs out instead of reporting `sync`.
    Draining {
        /// The drain barrier.
        token: u64,
    },
    /// Logout sent: the connection closing is the normal end.
    LoggingOut,
}

/// The client state machine.
#[derive(Debug)]
pub struct ClientCore {
    ending: Ending,
    me: String,
    me_key: String,
    online: bool,
    ever_ready: bool,
    convs: BTreeMap<ConvId, ConvState>,
    outbox: Vec<Pending>,
    shown: HashSet<MsgId>,
    hide_cursor: u64,
    barriers: VecDeque<Barrier>,
    next_token: u64,
    id_prefix: [u8; 8],
    next_cmid: u64,
    dirty: bool,
    peer_keys: BTreeMap<String, Vec<[u8; 32]>>,
    /// The rooms this user is in, by key, as the server last told.
    rooms: BTreeMap<String, RoomItem>,
    /// The clock as of the last [`ClientCore::tick`], ms.
    now: u64,
    /// Idle time after which a conversation stream closes, ms.
    stream_idle: u64,
    /// Conversation streams open at once, at most.
    max_streams: usize,
    out: Vec<Output>,
}

impl ClientCore {
    /// A client for `user` (as typed), with state from an earlier run and 8 random bytes
    /// that make its message ids unique.
    pub fn new(user: &str, saved: SavedState, random: [u8; 8]) -> Self {
        let convs = saved
            .convs
            .iter()
            .filter_map(|(k, s)| ConvId::from_storage_key(k).map(|c| (c, *s)))
            .map(|(c, s)| (c, ConvState::new(Some(s))))
            .collect();
        Self {
            ending: Ending::Running,
            me: user.to_owned(),
            me_key: user.to_ascii_lowercase(),
            online: false,
            ever_ready: false,
            convs,
            outbox: Vec::new(),
            shown: HashSet::new(),
            hide_cursor: saved.hide_cursor,
            barriers: VecDeque::new(),
            next_token: 1,
            id_prefix: random,
            next_cmid: 0,
            dirty: false,
            peer_keys: saved
                .peer_keys
                .iter()
                .map(|(u, ks)| (u.clone(), ks.iter().filter_map(|k| from_hex(k)).collect()))
                .collect(),
            rooms: BTreeMap::new(),
            now: 0,
            stream_idle: STREAM_IDLE.as_millis() as u64,
            max_streams: MAX_CONV_STREAMS,
            out: Vec::new(),
        }
    }

    /// Sets how long a conversation stream may stay quiet before it closes
    /// ([`STREAM_IDLE`] by default).
    pub fn set_stream_idle(&mut self, idle: Duration) {
        self.stream_idle = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    }

    /// Sets how many conversation streams may be open at once ([`MAX_CONV_STREAMS`] by
    /// default; at least one).
    pub fn set_max_streams(&mut self, max: usize) {
        self.max_streams = max.max(1);
    }

    /// Time passes (`now`: since any fixed start, never going back). Closes the streams
    /// that were quiet for the idle time and have nothing in flight, and opens those
    /// waiting for a free slot. The driver calls it every fraction of the idle time.
    pub fn tick(&mut self, now: Duration) -> Vec<Output> {
        self.now = self
            .now
            .max(u64::try_from(now.as_millis()).unwrap_or(u64::MAX));
        if self.online {
            let idle: Vec<ConvId> = self
                .convs
                .iter()
                .filter(|(c, s)| {
                    self.closable(c, s) && self.now.saturating_sub(s.used) >= self.stream_idle
                })
                .map(|(c, _)| c.clone())
                .collect();
            for conv in idle {
                self.close_stream(&conv);
            }
            self.open_wanted();
        }
        std::mem::take(&mut self.out)
    }

    /// The conversations whose stream is open (or opening or closing), by label.
    pub fn open_stream_labels(&self) -> Vec<String> {
        self.open_streams_where(|s| s != Stream::Closed)
            .iter()
            .map(|c| self.label(c))
            .collect()
    }

    /// The rooms this user is in (by key), as the server last told.
    pub fn rooms(&self) -> &BTreeMap<String, RoomItem> {
        &self.rooms
    }

    /// The user's name (as registered once logged in).
    pub fn user(&self) -> &str {
        &self.me
    }

    /// Whether a session is up.
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Messages sent and not yet acknowledged.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// `sync` barriers not yet answered.
    pub fn pending_barriers(&self) -> usize {
        self.barriers.len()
    }

    /// How far the client is in ending its run.
    pub fn ending(&self) -> Ending {
        self.ending
    }

    /// Whether the client logged out (by command, or after draining): the connection's
    /// end is then the normal end, and no more commands are read.
    pub fn is_logging_out(&self) -> bool {
        self.ending == Ending::LoggingOut
    }

    /// The commands ended (stdin closed, every handle dropped) with `transfers` file
    /// transfers still running: the client drains (outbox flushed, every answer shown)
    /// and then logs out, after the transfers if any are running. While offline, the
    /// drain barrier waits for the next login.
    pub fn commands_ended(&mut self, transfers: usize) -> Vec<Output> {
        if self.ending == Ending::Running {
            if transfers > 0 {
                self.ending = Ending::AfterTransfers;
            } else {
                self.start_drain();
            }
        }
        std::mem::take(&mut self.out)
    }

    /// No file transfer is running any more: a drain that waited for them starts.
    pub fn transfers_idle(&mut self) -> Vec<Output> {
        if self.ending == Ending::AfterTransfers {
            self.start_drain();
        }
        std::mem::take(&mut self.out)
    }

    fn start_drain(&mut self) {
        let token = self.push_barrier();
        self.ending = Ending::Draining { token };
    }

    /// Whether the client has nothing left to do once its commands ended: the run can
    /// end without reconnecting (an offline client with nothing to send).
    pub fn drained(&self) -> bool {
        !matches!(self.ending, Ending::Running | Ending::AfterTransfers) && self.outbox.is_empty()
    }

    /// Highest delete-for-me counter seen (goes into the login frame).
    pub fn hide_cursor(&self) -> u64 {
        self.hide_cursor
    }

    /// The state to save, if it changed since the last call.
    pub fn take_saved_state(&mut self) -> Option<SavedState> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(SavedState {
            convs: self
                .convs
                .iter()
                .filter_map(|(c, s)| s.last_seq.map(|q| (c.storage_key(), q)))
                .collect(),
            hide_cursor: self.hide_cursor,
            peer_keys: self
                .peer_keys
                .iter()
                .map(|(u, ks)| (u.clone(), ks.iter().map(|k| to_hex(k)).collect()))
                .collect(),
        })
    }

    /// The pinned identity key of a peer.
    pub fn peer_key(&self, user: &str) -> Option<[u8; 32]> {
        self.peer_keys
            .get(&user.to_ascii_lowercase())?
            .last()
            .copied()
    }

    /// Whether `key` is a key this peer has used (now or before a change).
    pub fn is_known_peer_key(&self, user: &str, key: &[u8; 32]) -> bool {
        self.peer_keys
            .get(&user.to_ascii_lowercase())
            .is_some_and(|ks| ks.contains(key))
    }

    /// A peer's key as the server or a message presents it: pinned on first use; a
    /// different key is pinned too but always reported with [`Event::KeyChanged`].
    pub fn peer_key_seen(&mut self, user: &str, key: [u8; 32]) -> Vec<Output> {
        self.pin_peer_key(user, key);
        std::mem::take(&mut self.out)
    }

    fn pin_peer_key(&mut self, user: &str, key: [u8; 32]) {
        let keys = self.peer_keys.entry(user.to_ascii_lowercase()).or_default();
        if keys.last() == Some(&key) {
            return;
        }
        let old = keys.last().copied();
        keys.retain(|k| *k != key);
        keys.push(key);
        self.dirty = true;
        if let Some(old) = old {
            self.event(Event::KeyChanged {
                user: user.to_owned(),
                old: to_hex(&old),
                new: to_hex(&key),
            });
        }
    }

    fn label(&self, conv: &ConvId) -> String {
        conv.label_for(&self.me_key)
    }

    fn event(&mut self, e: Event) {
        self.out.push(Output::Event(e));
    }

    /// Parses `#general` / `@user` into a conversation.
    #[allow(clippy::result_large_err)] // the error is the event the user sees
    pub fn parse_conv(&self, to: &str) -> Result<ConvId, Event> {
        if to.eq_ignore_ascii_case(GENERAL) {
            return Ok(ConvId::General);
        }
        if to.starts_with('#') {
            // Whether this user may write there is the server's to say (`not_member`):
            // a client that is offline or just joined may not know its rooms yet.
            return RoomName::parse(to)
                .map(|r| ConvId::Room(r.key()))
                .map_err(|e| {
                    Event::error(ErrorCode::NoSuchRoom, format!("no room named {to:?}: {e}"))
                });
        }
        let Some(name) = to.strip_prefix('@') else {
            return Err(Event::error(
                ErrorCode::BadRequest,
                format!("unknown conversation {to:?}: use #general, #room or @user"),
            ));
        };
        let peer = UserName::parse(name).map_err(|e| {
            Event::error(
                ErrorCode::UnknownUser,
                format!("no user named {name:?}: {e}"),
            )
        })?;
        let me = UserName::parse(&self.me)
            .map_err(|e| Event::error(ErrorCode::BadUsername, e.to_string()))?;
        Ok(ConvId::direct(&me, &peer))
    }

    /// Handles a user command.
    pub fn command(&mut self, cmd: Command) -> Vec<Output> {
        match cmd {
            Command::Send { to, text } => self.send(&to, text),
            Command::Delete { id, scope } => {
                if self.online {
                    self.out
                        .push(Output::Control(ControlUp::Delete { id, scope }));
                } else {
                    self.event(Event::error(
                        ErrorCode::BadRequest,
                        "not connected: try again once reconnected",
                    ));
                }
            }
            Command::Who => {
                if self.online {
                    self.out.push(Output::Control(ControlUp::Who));
                } else {
                    self.event(Event::error(ErrorCode::BadRequest, "not connected"));
                }
            }
            Command::History {
                conv,
                before,
                limit,
            } => match self.parse_conv(&conv) {
                Ok(c) if self.online => {
                    self.ensure_open(&c);
                    let up = ConvUp::History {
                        before,
                        limit: limit.unwrap_or(0),
                    };
                    self.conv_out(&c, up);
                }
                Ok(_) => self.event(Event::error(ErrorCode::BadRequest, "not connected")),
                Err(e) => self.event(e),
            },
            Command::Sync => {
                self.push_barrier();
            }
            Command::Streams => {
                let open = self.open_stream_labels();
                let reading = open.len();
                self.event(Event::Streams { open, reading });
            }
            Command::Logout => self.log_out(),
            Command::SendFile { .. } | Command::Download { .. } | Command::Cancel { .. } => self
                .event(Event::error(
                    ErrorCode::BadRequest,
                    "file transfers are handled by the transport",
                )),
            room => {
                if let Some(up) = room_up(room) {
                    if self.online {
                        self.out.push(Output::Control(ControlUp::Room(up)));
                    } else {
                        self.event(Event::error(
                            ErrorCode::BadRequest,
                            "not connected: try again once reconnected",
                        ));
                    }
                }
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Room news from the server: keeps the room list, closes what a removal ends, and
    /// tells the user.
    fn room(&mut self, down: RoomDown) {
        match down {
            RoomDown::State { rooms, invitations } => {
                self.rooms = rooms
                    .into_iter()
                    .map(|r| (r.key.clone(), RoomItem::from(r)))
                    .collect();
                // Rooms left while this client was away: forget their streams.
                let gone: Vec<ConvId> = self
                    .convs
                    .keys()
                    .filter(|c| matches!(c, ConvId::Room(k) if !self.rooms.contains_key(k)))
                    .cloned()
                    .collect();
                for conv in gone {
                    self.forget_conv(&conv);
                }
                let invitations = invitations
                    .into_iter()
                    .map(|(r, by)| InvitationItem {
                        room: r.name,
                        by,
                        topic: r.topic,
                    })
                    .collect();
                let rooms = self.rooms.values().cloned().collect();
                self.event(Event::RoomState { rooms, invitations });
            }
            RoomDown::Directory { rooms } => {
                let rooms = rooms.into_iter().map(RoomItem::from).collect();
                self.event(Event::Rooms { rooms });
            }
            RoomDown::Members { room, members } => {
                let room = self.room_name(&room);
                self.event(Event::Members { room, members });
            }
            RoomDown::Joined { room } => {
                let key = room.key.clone();
                let item = RoomItem::from(room);
                self.rooms.insert(key.clone(), item.clone());
                self.ensure_open(&ConvId::Room(key));
                self.event(Event::Joined { room: item });
            }
            RoomDown::Left { room, change, by } => {
                let name = self.room_name(&room);
                self.rooms.remove(&room);
                self.forget_conv(&ConvId::Room(room));
                self.event(Event::Left {
                    room: name,
                    reason: change,
                    by,
                });
            }
            RoomDown::Invited { room, by } => self.event(Event::Invited {
                room: room.name,
                by,
                topic: room.topic,
            }),
            RoomDown::Member {
                room,
                user,
                change,
                by,
            } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    match change {
                        MemberChange::Joined => r.members += 1,
                        MemberChange::Left | MemberChange::Kicked | MemberChange::Banned => {
                            r.members = r.members.saturating_sub(1)
                        }
                        MemberChange::Owner if user.eq_ignore_ascii_case(&self.me) => {
                            r.role = Some(Role::Owner)
                        }
                        MemberChange::Promoted if user.eq_ignore_ascii_case(&self.me) => {
                            r.role = Some(Role::Moderator)
                        }
                        MemberChange::Demoted if user.eq_ignore_ascii_case(&self.me) => {
                            r.role = Some(Role::Member)
                        }
                        _ => {}
                    }
                }
                let room = self.room_name(&room);
                self.event(Event::Member {
                    room,
                    user,
                    change,
                    by,
                });
            }
            RoomDown::Topic { room, topic, by } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.topic = topic.clone();
                }
                let room = self.room_name(&room);
                self.event(Event::Topic { room, topic, by });
            }
        }
    }

    /// A room's name as spelled, when known (else its key).
    fn room_name(&self, key: &str) -> String {
        self.rooms
            .get(key)
            .map(|r| r.room.clone())
            .unwrap_or_else(|| key.to_owned())
    }

    /// This user is no longer in a conversation: its stream state, position and unsent
    /// messages go (the server refuses them anyway).
    fn forget_conv(&mut self, conv: &ConvId) {
        if self.convs.remove(conv).is_some() {
            self.dirty = true;
        }
        let before = self.outbox.len();
        self.outbox.retain(|p| &p.conv != conv);
        if self.outbox.len() != before {
            self.event(Event::error(
                ErrorCode::NotMember,
                "messages not yet sent to a room you are no longer in were dropped",
            ));
        }
        self.complete_barriers();
    }

    /// Posts a file message (after its upload completed) with the file id as its client
    /// message id, through the outbox like any message.
    pub fn send_file_message(&mut self, conv: ConvId, info: &FileInfo) -> Vec<Output> {
        if let Some(cmid) = info.file_id() {
            self.outbox.push(Pending {
                cmid,
                conv: conv.clone(),
                text: info.to_text(),
                sent: false,
            });
            if self.online {
                self.ensure_open(&conv);
                self.flush_outbox(&conv);
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Opens a conversation's stream (if connected and not open yet), e.g. to learn a
    /// peer's key before sealing a file for them.
    pub fn open_conv(&mut self, conv: &ConvId) -> Vec<Output> {
        if self.online {
            self.ensure_open(conv);
        }
        std::mem::take(&mut self.out)
    }

    fn send(&mut self, to: &str, text: String) {
        let conv = match self.parse_conv(to) {
            Ok(c) => c,
            Err(e) => return self.event(e),
        };
        if text.is_empty() {
            return self.event(Event::error(ErrorCode::BadRequest, "empty message"));
        }
        if text.len() > MAX_TEXT {
            let msg = format!("message is {} bytes; the limit is {MAX_TEXT}", text.len());
            return self.event(Event::error(ErrorCode::TooLarge, msg));
        }
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.id_prefix);
        id[8..].copy_from_slice(&self.next_cmid.to_be_bytes());
        self.next_cmid += 1;
        let cmid = ClientMsgId(id);
        self.outbox.push(Pending {
            cmid,
            conv: conv.clone(),
            text,
            sent: false,
        });
        if self.online {
            self.ensure_open(&conv);
            self.flush_outbox(&conv);
        }
    }

    /// Writes the conversation's unsent messages, in order, once it can take them: the room
    /// at once, a private conversation after its catch-up (which brings the peer's key).
    fn flush_outbox(&mut self, conv: &ConvId) -> bool {
        let ready = self.convs.get(conv).is_some_and(|s| {
            s.stream == Stream::Open || (*conv == ConvId::General && s.stream == Stream::CatchingUp)
        });
        if !ready || !self.online {
            return false;
        }
        let mut any = false;
        for p in self
            .outbox
            .iter_mut()
            .filter(|p| p.conv == *conv && !p.sent)
        {
            p.sent = true;
            any = true;
            let body = p.text.clone().into_bytes();
            self.out.push(Output::Conv(
                conv.clone(),
                ConvUp::Send { cmid: p.cmid, body },
            ));
        }
        if any && let Some(s) = self.convs.get_mut(conv) {
            s.used = self.now;
        }
        any
    }

    /// Opens a conversation's stream if it is not open: now if a slot is free, else once
    /// one is (a quiet stream is closed to make room), or once its closing completes.
    fn ensure_open(&mut self, conv: &ConvId) {
        let state = self
            .convs
            .entry(conv.clone())
            .or_insert_with(|| ConvState::new(None));
        match state.stream {
            Stream::Closed => state.want = true,
            Stream::Closing => {
                state.want = true;
                return;
            }
            Stream::CatchingUp | Stream::Open => return,
        }
        self.open_wanted();
    }

    /// Opens the streams wanted open, as far as slots allow; if some still wait, closes as
    /// many quiet streams (least recently used first) to make room for them.
    fn open_wanted(&mut self) {
        let wanted: Vec<ConvId> = self
            .convs
            .iter()
            .filter(|(_, s)| s.stream == Stream::Closed && s.want)
            .map(|(c, _)| c.clone())
            .collect();
        let mut waiting = 0;
        for conv in wanted {
            if self.active_streams() < self.max_streams {
                self.open_now(&conv);
            } else {
                waiting += 1;
            }
        }
        if waiting == 0 {
            return;
        }
        let mut quiet: Vec<(u64, ConvId)> = self
            .convs
            .iter()
            .filter(|(c, s)| self.closable(c, s))
            .map(|(c, s)| (s.used, c.clone()))
            .collect();
        quiet.sort();
        for (_, conv) in quiet.into_iter().take(waiting) {
            self.close_stream(&conv);
        }
    }

    /// Sends `Open` (and what was held for the stream) now.
    fn open_now(&mut self, conv: &ConvId) {
        let Some(state) = self.convs.get_mut(conv) else {
            return;
        };
        state.stream = Stream::CatchingUp;
        state.want = false;
        let after = state.last_seq;
        let held = std::mem::take(&mut state.held);
        self.conv_out(
            conv,
            ConvUp::Open {
                conv: conv.clone(),
                after,
            },
        );
        for up in held {
            self.conv_out(conv, up);
        }
    }

    /// Whether a stream may close: open, caught up, and nothing of its own in flight (no
    /// unacknowledged or unsent message, history request or barrier). What the server sends
    /// meanwhile still arrives: the client reads the stream until the server's `Closed`.
    fn closable(&self, conv: &ConvId, s: &ConvState) -> bool {
        s.stream == Stream::Open
            && !s.want
            && s.history == 0
            && s.syncs == 0
            && s.held.is_empty()
            && !self.outbox.iter().any(|p| p.conv == *conv)
    }

    /// Sends `Close`: nothing more goes on this stream; it is read until `Closed`.
    fn close_stream(&mut self, conv: &ConvId) {
        if let Some(s) = self.convs.get_mut(conv) {
            s.stream = Stream::Closing;
            self.out.push(Output::Conv(conv.clone(), ConvUp::Close));
        }
    }

    /// A request on a conversation's stream (opened or opening), or held for its next
    /// opening while it closes or waits for a slot.
    fn conv_out(&mut self, conv: &ConvId, up: ConvUp) {
        let Some(s) = self.convs.get_mut(conv) else {
            return;
        };
        if matches!(s.stream, Stream::Closing | Stream::Closed)
            && !matches!(up, ConvUp::Open { .. })
        {
            s.held.push(up);
            return;
        }
        match up {
            ConvUp::History { .. } => s.history += 1,
            ConvUp::Sync { .. } => s.syncs += 1,
            _ => {}
        }
        s.used = self.now;
        self.out.push(Output::Conv(conv.clone(), up));
    }

    /// Queues a barrier (sent now if online, else after the next login).
    fn push_barrier(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.barriers.push_back(Barrier {
            token,
            sent: false,
            waiting: 0,
            round: 1,
        });
        if self.online {
            self.send_barriers();
        }
        token
    }

    fn log_out(&mut self) {
        self.ending = Ending::LoggingOut;
        self.out.push(Output::Control(ControlUp::Logout));
    }

    fn send_barriers(&mut self) {
        let open = self.open_streams();
        for i in 0..self.barriers.len() {
            if self.barriers[i].sent {
                continue;
            }
            let token = self.barriers[i].token;
            self.sync_frames(token, &open);
            self.barriers[i].sent = true;
            self.barriers[i].round = 1;
            self.barriers[i].waiting = 1 + open.len();
        }
    }

    /// The streams a barrier asks: opened or opening (a closing stream takes no more
    /// frames; barriers wait for its `Closed` instead).
    fn open_streams(&self) -> Vec<ConvId> {
        self.open_streams_where(|s| matches!(s, Stream::CatchingUp | Stream::Open))
    }

    /// The conversations whose stream state passes `f`.
    fn open_streams_where(&self, f: impl Fn(Stream) -> bool) -> Vec<ConvId> {
        self.convs
            .iter()
            .filter(|(_, s)| f(s.stream))
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Streams holding a slot (anything but closed).
    fn active_streams(&self) -> usize {
        self.convs
            .values()
            .filter(|s| s.stream != Stream::Closed)
            .count()
    }

    fn sync_frames(&mut self, token: u64, open: &[ConvId]) {
        self.out.push(Output::Control(ControlUp::Sync { token }));
        for c in open {
            self.conv_out(c, ConvUp::Sync { token });
        }
    }

    fn barrier_ack(&mut self, token: u64) {
        if let Some(b) = self
            .barriers
            .iter_mut()
            .find(|b| b.token == token && b.sent)
        {
            b.waiting = b.waiting.saturating_sub(1);
        }
        self.complete_barriers();
    }

    fn complete_barriers(&mut self) {
        // A stream catching up, closing (its last events still coming) or waiting to open
        // (news reported on the control stream) holds every barrier.
        if self.convs.values().any(|s| {
            matches!(s.stream, Stream::CatchingUp | Stream::Closing)
                || (s.stream == Stream::Closed && s.want)
        }) {
            return;
        }
        while let Some(b) = self.barriers.front_mut() {
            if !b.sent || b.waiting > 0 {
                break;
            }
            if b.round == 1 {
                let token = b.token;
                let open = self.open_streams();
                if let Some(b) = self.barriers.front_mut() {
                    b.round = 2;
                    b.waiting = 1 + open.len();
                }
                self.sync_frames(token, &open);
                break;
            }
            let done = self.barriers.pop_front().map(|b| b.token);
            match self.ending {
                // The drain barrier: everything before it is handled. Log out, or drain
                // again if a file message was queued meanwhile.
                Ending::Draining { token } if done == Some(token) => {
                    if self.outbox.is_empty() {
                        self.log_out();
                    } else {
                        self.start_drain();
                    }
                    return;
                }
                _ => self.event(Event::Sync),
            }
        }
    }

    /// The session is up: `LoginOk` arrived. Opens conversations, resends the outbox and
    /// pending barriers.
    pub fn logged_in(
        &mut self,
        user: String,
        convs: Vec<ConvSummary>,
        online: Vec<String>,
        hidden: Vec<Hidden>,
        delete_window_secs: u64,
    ) -> Vec<Output> {
        self.me_key = user.to_ascii_lowercase();
        self.me = user.clone();
        self.online = true;
        let ready = if std::mem::replace(&mut self.ever_ready, true) {
            Event::Reconnected { online }
        } else {
            Event::Ready {
                user,
                online,
                delete_window_secs,
            }
        };
        self.event(ready);
        self.ensure_open(&ConvId::General);
        for s in convs {
            let local = self.convs.get(&s.conv).and_then(|c| c.last_seq);
            if local.is_none_or(|l| l < s.last_seq) && s.last_seq > 0 {
                self.ensure_open(&s.conv);
            }
        }
        for h in hidden {
            self.hidden(h);
        }
        let mut convs: Vec<ConvId> = self.outbox.iter().map(|p| p.conv.clone()).collect();
        convs.dedup();
        for conv in convs {
            self.ensure_open(&conv);
            self.flush_outbox(&conv);
        }
        self.send_barriers();
        std::mem::take(&mut self.out)
    }

    /// The session ended; everything unacknowledged will be resent after the next login.
    pub fn disconnected(&mut self, reason: String) -> Vec<Output> {
        if self.online {
            self.event(Event::Disconnected { reason });
        }
        self.online = false;
        for s in self.convs.values_mut() {
            // What was asked is lost with the connection; the next login opens what has
            // news or unsent messages.
            *s = ConvState::new(s.last_seq);
        }
        for p in &mut self.outbox {
            p.sent = false;
        }
        for b in &mut self.barriers {
            b.sent = false;
            b.waiting = 0;
            b.round = 1;
        }
        std::mem::take(&mut self.out)
    }

    fn hidden(&mut self, h: Hidden) {
        if h.hseq > self.hide_cursor {
            self.hide_cursor = h.hseq;
            self.dirty = true;
        }
        let conv = self.label(&h.conv);
        self.event(Event::Deleted {
            conv,
            id: h.id,
            scope: DeleteScope::Me,
        });
    }

    /// A control-stream frame (after login).
    pub fn control(&mut self, down: ControlDown) -> Vec<Output> {
        match down {
            ControlDown::Presence { user, online } => self.event(Event::Presence { user, online }),
            ControlDown::Who { users } => self.event(Event::Who { users }),
            ControlDown::ConvActivity { conv } => self.ensure_open(&conv),
            ControlDown::Hidden(h) => self.hidden(h),
            ControlDown::SyncAck { token } => self.barrier_ack(token),
            ControlDown::Error { code, message } => self.event(Event::error(code, message)),
            ControlDown::Room(down) => self.room(down),
            ControlDown::LoginOk { .. }
            | ControlDown::LoginRefused { .. }
            | ControlDown::Closing { .. } => {}
        }
        std::mem::take(&mut self.out)
    }

    /// A conversation-stream frame.
    pub fn conv(&mut self, conv: ConvId, down: ConvDown) -> Vec<Output> {
        if let Some(s) = self.convs.get_mut(&conv) {
            s.used = self.now;
        }
        match down {
            ConvDown::Event(e) => self.conv_event(&conv, e, true),
            ConvDown::Backlog(e) => self.conv_event(&conv, e, false),
            ConvDown::CaughtUp { upto, more } => {
                if let Some(s) = self.convs.get_mut(&conv) {
                    s.last_seq = Some(s.last_seq.unwrap_or(0).max(upto));
                    self.dirty = true;
                    if more {
                        self.out
                            .push(Output::Conv(conv, ConvUp::Catchup { after: upto }));
                    } else {
                        s.stream = Stream::Open;
                        if self.flush_outbox(&conv) {
                            // Barriers already on this stream came before these sends:
                            // extend them past the sends.
                            let mut tokens = Vec::new();
                            for b in self.barriers.iter_mut().filter(|b| b.sent) {
                                b.waiting += 1;
                                tokens.push(b.token);
                            }
                            for token in tokens {
                                self.conv_out(&conv, ConvUp::Sync { token });
                            }
                        }
                        self.complete_barriers();
                    }
                }
            }
            ConvDown::Ack { cmid, id, seq, ts } => {
                if let Some(i) = self.outbox.iter().position(|p| p.cmid == cmid) {
                    let p = self.outbox.remove(i);
                    self.shown.insert(id);
                    if let Some(s) = self.convs.get_mut(&conv)
                        && s.stream == Stream::Open
                        && s.last_seq.is_none_or(|l| l + 1 == seq)
                    {
                        s.last_seq = Some(seq);
                        self.dirty = true;
                    }
                    let conv = self.label(&p.conv);
                    let (text, file) = split_text(p.text);
                    self.event(Event::Sent {
                        conv,
                        id,
                        seq,
                        ts,
                        text,
                        file,
                    });
                }
            }
            ConvDown::History { events, more } => {
                if let Some(s) = self.convs.get_mut(&conv) {
                    s.history = s.history.saturating_sub(1);
                }
                let messages = events
                    .into_iter()
                    .filter_map(|e| {
                        let text = match e.kind {
                            EventKind::Message { body } => {
                                Some(String::from_utf8_lossy(&body).into_owned())
                            }
                            EventKind::Erased => None,
                            EventKind::Tombstone { .. } => return None,
                        };
                        let (text, file) = match text {
                            Some(t) => {
                                let (t, f) = split_text(t);
                                (Some(t), f)
                            }
                            None => (None, None),
                        };
                        Some(HistoryItem {
                            id: e.id,
                            seq: e.seq,
                            from: e.sender,
                            text,
                            ts: e.ts,
                            file,
                        })
                    })
                    .collect();
                let conv = self.label(&conv);
                self.event(Event::History {
                    conv,
                    messages,
                    more,
                });
            }
            ConvDown::SyncAck { token } => {
                if let Some(s) = self.convs.get_mut(&conv) {
                    s.syncs = s.syncs.saturating_sub(1);
                }
                self.barrier_ack(token);
            }
            ConvDown::Closed => {
                if let Some(s) = self.convs.get_mut(&conv)
                    && s.stream == Stream::Closing
                {
                    s.stream = Stream::Closed;
                    self.open_wanted();
                    self.complete_barriers();
                }
            }
            ConvDown::PeerKey { user, key } => self.pin_peer_key(&user, key),
            ConvDown::Error {
                code,
                message,
                cmid,
            } => {
                match cmid {
                    // The server failed to store it: keep it, it goes again after the next
                    // reconnect.
                    Some(_) if code == ErrorCode::Internal => {}
                    Some(cmid) => {
                        let before = self.outbox.len();
                        self.outbox.retain(|p| p.cmid != cmid);
                        if self.outbox.len() == before {
                            // Already settled (e.g. its conversation failed to open).
                            return std::mem::take(&mut self.out);
                        }
                    }
                    None => {
                        // A refused request that was not a send is most likely a history
                        // request: it is answered.
                        if let Some(s) = self.convs.get_mut(&conv) {
                            s.history = s.history.saturating_sub(1);
                        }
                        // The conversation could not be opened (e.g. unknown user): forget
                        // it and what was queued for it. Requests queued behind the open
                        // fail too; the first error already said why.
                        match self.convs.get(&conv).map(|s| s.stream) {
                            Some(Stream::CatchingUp) => {
                                self.convs.remove(&conv);
                                self.outbox.retain(|p| p.conv != conv);
                                self.complete_barriers();
                            }
                            None => return std::mem::take(&mut self.out),
                            Some(_) => {}
                        }
                    }
                }
                self.event(Event::error(code, message));
            }
        }
        std::mem::take(&mut self.out)
    }

    fn conv_event(&mut self, conv: &ConvId, e: ConvEvent, live: bool) {
        let Some(state) = self.convs.get_mut(conv) else {
            return;
        };
        let last = state.last_seq.unwrap_or(0);
        if state.last_seq.is_some() && e.seq <= last {
            return;
        }
        if live && !matches!(state.stream, Stream::Open | Stream::Closing) {
            // A catch-up is under way and will include this event, in order.
            return;
        }
        if live && e.seq > last + 1 && state.stream == Stream::Closing {
            // A gap on a closing stream: the reopen catches up from where we are.
            state.want = true;
            return;
        }
        if live && e.seq > last + 1 {
            // A gap: ask again from where we are; this event comes back in order.
            state.stream = Stream::CatchingUp;
            self.out
                .push(Output::Conv(conv.clone(), ConvUp::Catchup { after: last }));
            return;
        }
        state.last_seq = Some(e.seq);
        self.dirty = true;
        let label = self.label(conv);
        match e.kind {
            EventKind::Tombstone { target } => {
                self.event(Event::Deleted {
                    conv: label,
                    id: target,
                    scope: DeleteScope::Everyone,
                });
            }
            kind => {
                if !self.shown.insert(e.id) {
                    return;
                }
                // Our own message, stored before a disconnect ate the ack.
                if let Some(i) = self
                    .outbox
                    .iter()
                    .position(|p| p.cmid == e.cmid && e.sender.eq_ignore_ascii_case(&self.me))
                {
                    let p = self.outbox.remove(i);
                    let (text, file) = split_text(p.text);
                    self.event(Event::Sent {
                        conv: label,
                        id: e.id,
                        seq: e.seq,
                        ts: e.ts,
                        text,
                        file,
                    });
                    return;
                }
                let (text, file) = match kind {
                    EventKind::Message { body } => {
                        let (t, f) = split_text(String::from_utf8_lossy(&body).into_owned());
                        (Some(t), f)
                    }
                    _ => (None, None),
                };
                self.event(Event::Message {
                    conv: label,
                    id: e.id,
                    seq: e.seq,
                    from: e.sender,
                    text,
                    ts: e.ts,
                    file,
                });
            }
        }
    }
}

/// Reconnect delays: 1 s × 1.6 per attempt, capped at 60 s, ±20 % jitter; reset after a
/// successful login.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// Starting value for the first delay.
    pub const BASE: f64 = 1.0;
    /// Growth per attempt.
    pub const FACTOR: f64 = 1.6;
    /// Cap in seconds.
    pub const CAP: f64 = 60.0;

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay; `jitter` in [-1, 1] (from a random source) spreads it by ±20 %.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let base = (Self::BASE * Self::FACTOR.powi(self.attempt.min(64) as i32)).min(Self::CAP);
        self.attempt = self.attempt.saturating_add(1);
        let j = if jitter.is_finite() {
            jitter.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        Duration::from_secs_f64(base * (1.0 + 0.2 * j))
    }
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits into 32 bytes.
pub fn from_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
