//! The scripted contract: the commands a user gives ([`Command`]) and the events they get
//! ([`Event`]), one JSON line each in scripted mode, and the items those carry.

use serde::{Deserialize, Serialize};

use super::receipts::SeenItem;
use crate::app::files::FileInfo;
use crate::app::ids::{MsgId, Seq};
use crate::app::protocol::{
    DeleteScope, ErrorCode, MemberChange, MemberInfo, Moderation, Role, RoomInfo, RoomUp,
    Visibility,
};

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
        /// The message this one replies to (same conversation).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<MsgId>,
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
    /// Replace the text of your message `id` (within the delete-for-everyone window).
    Edit {
        /// Server id of the message.
        id: MsgId,
        /// The new text.
        text: String,
    },
    /// React to message `id` with `emoji` (one of each emoji per user and message).
    React {
        /// Server id of the message.
        id: MsgId,
        /// The emoji.
        emoji: String,
    },
    /// Take back your reaction `emoji` to message `id`.
    Unreact {
        /// Server id of the message.
        id: MsgId,
        /// The emoji.
        emoji: String,
    },
    /// Mark a conversation read up to `upto` (default: the newest message this client has);
    /// your other sessions follow, and (receipts on) the other members see it.
    Read {
        /// `#general`, `#room` or `@user`.
        conv: String,
        /// Sequence number read up to.
        #[serde(default)]
        upto: Option<Seq>,
    },
    /// Turn seen receipts on or off, for all your sessions (off: none sent, none shown).
    Receipts {
        /// On?
        on: bool,
    },
    /// Where the other members of a private conversation or small room have read up to
    /// (answered by `seen_by`).
    SeenBy {
        /// `@user` or `#room`.
        conv: String,
    },
    /// Tell the conversation you are typing (best effort: the server forwards one notice
    /// per 3 s).
    Typing {
        /// `#general`, `#room` or `@user`.
        conv: String,
    },
    /// Find messages by words (`crate::app::search`), answered by a `search` event.
    Search {
        /// The words.
        query: String,
        /// One conversation only (`#general`, `#room`, `@user`); all when absent.
        #[serde(default)]
        conv: Option<String>,
        /// At most this many results (default 50, at most 200).
        #[serde(default)]
        limit: Option<u32>,
    },
    /// A user's devices (answered by `devices`).
    Devices {
        /// The user (`bob` or `@bob`).
        user: String,
    },
    /// The safety code you and `user` compare (answered by `safety_code`).
    SafetyCode {
        /// The user.
        user: String,
    },
    /// Mark `user` verified if `code` is your safety code with them (answered by
    /// `verified`, or an error when it does not match).
    Verify {
        /// The user.
        user: String,
        /// The code they read to you (spaces ignored).
        code: String,
    },
    /// Remove one of your own devices from your account (answered by `device_removed`
    /// once the server did it): peers remove it from every group they share with it, and
    /// it can never announce itself again. The device you are on cannot remove itself.
    RemoveDevice {
        /// The device id (as listed by `devices`).
        device: String,
    },
}

fn public() -> Visibility {
    Visibility::Public
}

/// The room request for a room command (`None` for other commands).
pub(super) fn room_up(cmd: Command) -> Option<RoomUp> {
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
    /// The text was edited.
    #[serde(default, skip_serializing_if = "is_false")]
    pub edited: bool,
    /// The message this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MsgId>,
    /// Its reactions, by emoji.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionCount>,
    /// Whether it names you with `@name` (omitted when not).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mentions_me: bool,
}

/// One emoji's reactions to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionCount {
    /// The emoji.
    pub emoji: String,
    /// How many users reacted with it.
    pub count: usize,
    /// Who, sorted.
    pub users: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
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
        /// The message this one replies to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<MsgId>,
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
        /// The message this one replies to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<MsgId>,
        /// The text shown is an edit (a catch-up brings the current text).
        #[serde(default, skip_serializing_if = "is_false")]
        edited: bool,
        /// Members it names with `@name` (omitted when none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<String>,
        /// Whether it names you (omitted when not).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        mentions_me: bool,
        /// End-to-end encrypted with MLS (omitted when not).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        e2e: bool,
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
    /// You are no longer in a room: `reason` is `left`, `kicked` or `banned` (`left` by
    /// `server`: the operator closed the room). The room's stream closes.
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
    /// Which server address this (re)connection uses, right after `ready` or
    /// `reconnected`: with several (`--server a:7447,b:7447`, or a name with several
    /// addresses), the one that answered first.
    Server {
        /// The socket address connected to.
        addr: String,
        /// The `--server` entry it came from, as given.
        server: String,
    },
    /// A message's text was edited by its author (in this session or another).
    Edited {
        /// Conversation.
        conv: String,
        /// The message.
        id: MsgId,
        /// Its new text.
        text: String,
    },
    /// Someone added (`on`) or removed a reaction (you too, in any of your sessions).
    Reaction {
        /// Conversation.
        conv: String,
        /// The message.
        id: MsgId,
        /// Who.
        user: String,
        /// The emoji.
        emoji: String,
        /// Added or removed.
        on: bool,
    },
    /// Your read marker of a conversation: after `ready` / `reconnected` for each
    /// conversation with one, and whenever another session of yours reads further.
    Read {
        /// Conversation.
        conv: String,
        /// Read up to this sequence number.
        upto: Seq,
    },
    /// Another member (receipts on, like you) has read up to `upto`.
    Seen {
        /// Conversation.
        conv: String,
        /// Who.
        user: String,
        /// Their read marker.
        upto: Seq,
    },
    /// Answer to `seen_by`: the other members' read markers (empty with receipts off).
    SeenBy {
        /// Conversation.
        conv: String,
        /// Members with receipts on and a marker.
        members: Vec<SeenItem>,
    },
    /// Someone is typing (show it for 5 s, or until their next message).
    Typing {
        /// Conversation.
        conv: String,
        /// Who.
        user: String,
    },
    /// Your seen-receipts setting: after `ready` / `reconnected`, and when it changes.
    Receipts {
        /// On?
        on: bool,
    },
    /// Answer to `search`: matches in every conversation searched, newest first.
    Search {
        /// The matches.
        results: Vec<super::SearchItem>,
    },
    /// Answer to `devices`: a user's devices (MLS members), by id.
    Devices {
        /// The user.
        user: String,
        /// Device ids.
        devices: Vec<String>,
    },
    /// A user you talk to privately (or you) has a new device: it is added to your private
    /// conversations with them and reads from then on.
    DeviceAdded {
        /// The user.
        user: String,
        /// The device id.
        device: String,
    },
    /// A device was removed: it reads nothing more.
    DeviceRemoved {
        /// The user.
        user: String,
        /// The device id.
        device: String,
    },
    /// Answer to `safety_code`: the code to compare with the user (the same on both
    /// sides; it changes when either user's devices change).
    SafetyCode {
        /// The user.
        user: String,
        /// 12 groups of 5 digits.
        code: String,
    },
    /// Answer to `verify`: the code matched, the user is verified.
    Verified {
        /// The user.
        user: String,
    },
    /// A verified user's devices (or yours) changed: compare the safety code again.
    VerificationBroken {
        /// The user.
        user: String,
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
