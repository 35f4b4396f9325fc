//! The messages client and server exchange, independent of how they are framed.
//!
//! Two kinds of stream (see docs/PROTOCOL.md): the *control* stream, the client's first
//! bidirectional stream, carries login, presence, roster, deletes and barriers; one
//! *conversation* stream per conversation carries that conversation's messages in order.
//! The client opens every stream. `body` fields hold the bytes the sender sealed; inside
//! the app cores they are the opened bytes, the transport seals and opens them.

use super::ids::{ClientMsgId, ConvId, MsgId, Seq};
use serde::{Deserialize, Serialize};

pub use super::rooms::{Role, Visibility};

/// Version in the login frame and in every envelope's AAD.
pub const PROTOCOL_VERSION: u16 = 1;

/// Bytes an end-to-end envelope adds to a private message's text (version, two public
/// keys, nonce, tag); the server allows this much above the text limit in private
/// conversations.
pub const E2E_OVERHEAD: usize = 1 + 32 + 32 + 12 + 16;

/// Who a delete applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteScope {
    /// Hidden for the deleting user in all their sessions.
    Me,
    /// Erased for every member (author only, within the delete window).
    Everyone,
}

/// Machine-readable error codes, shared by the protocol and the scripted client.
///
/// On the wire (postcard) a code travels as its index, so new codes are only ever added
/// at the end; in scripted mode's JSON it is the snake_case name ([`ErrorCode::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Username/password refused (same answer for an unknown user).
    LoginRefused,
    /// Too many failed logins: try later.
    LoginThrottled,
    /// The username is malformed, reserved or too close to an existing one.
    BadUsername,
    /// A command that needs a login came before it.
    NotLoggedIn,
    /// No such user.
    UnknownUser,
    /// No such message (or not in a conversation of yours).
    NotFound,
    /// Only the author may delete for everyone.
    NotAuthor,
    /// The delete-for-everyone window has passed.
    DeleteWindowExpired,
    /// Sending too fast; retry later.
    RateLimited,
    /// Body or frame over the limit.
    TooLarge,
    /// Malformed or unexpected frame or command.
    BadRequest,
    /// The server failed; nothing was changed.
    Internal,
    /// The server is out of storage space: nothing was stored; reads still work.
    ServerFull,
    /// The user's storage quota for files would be exceeded.
    QuotaExceeded,
    /// The download target exists: a regular file is replaced only with `overwrite`,
    /// anything else never (client-side).
    Exists,
    /// A scripted-mode command line that is not a command (client-side).
    BadCommand,
    /// A local file cannot be read for an upload (client-side; `file` in JSON).
    #[serde(rename = "file")]
    LocalFile,
    /// Not a member of that room.
    NotMember,
    /// Your role in that room does not allow it.
    NotAllowed,
    /// Banned from that room.
    Banned,
    /// A room of that name (or a look-alike) exists.
    RoomExists,
    /// No such room (or a private room you are not in or invited to).
    NoSuchRoom,
    /// That private room needs an invitation (or there is no invitation to accept).
    NotInvited,
    /// Already a member of that room.
    AlreadyMember,
    /// A request on a conversation stream that was never opened (or whose opening failed,
    /// which was reported already).
    NotOpen,
    /// An MLS message made in an epoch that is not the conversation's current one (another
    /// commit came first): the client catches up and tries again.
    StaleEpoch,
    /// This device was removed from its account (`RemoveDevice`): it cannot announce
    /// itself, claim key packages or write in end-to-end conversations; the user starts a
    /// new device (a new state dir).
    RemovedDevice,
    /// A code this build does not know, from a newer peer. Kept so that a newer server's
    /// new code still reaches an older client as an error (its message says what went
    /// wrong) instead of making the whole frame undecodable. Never sent.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The snake_case name used in scripted-mode `error` events.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::LoginRefused => "login_refused",
            ErrorCode::LoginThrottled => "login_throttled",
            ErrorCode::BadUsername => "bad_username",
            ErrorCode::NotLoggedIn => "not_logged_in",
            ErrorCode::UnknownUser => "unknown_user",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotAuthor => "not_author",
            ErrorCode::DeleteWindowExpired => "delete_window_expired",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Internal => "internal",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::Exists => "exists",
            ErrorCode::BadCommand => "bad_command",
            ErrorCode::LocalFile => "file",
            ErrorCode::NotMember => "not_member",
            ErrorCode::NotAllowed => "not_allowed",
            ErrorCode::Banned => "banned",
            ErrorCode::RoomExists => "room_exists",
            ErrorCode::NoSuchRoom => "no_such_room",
            ErrorCode::NotInvited => "not_invited",
            ErrorCode::AlreadyMember => "already_member",
            ErrorCode::NotOpen => "not_open",
            ErrorCode::StaleEpoch => "stale_epoch",
            ErrorCode::RemovedDevice => "removed_device",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A conversation's last sequence number, as listed at login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvSummary {
    /// The conversation.
    pub conv: ConvId,
    /// Its newest sequence number (0 when empty).
    pub last_seq: Seq,
}

/// A delete-for-me, numbered per user so that other sessions catch up on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hidden {
    /// Conversation of the hidden message.
    pub conv: ConvId,
    /// The hidden message.
    pub id: MsgId,
    /// The user's hide counter after this hide.
    pub hseq: u64,
}

/// Client to server, on the control stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlUp {
    /// First frame: log in (or register on first use of a name).
    Login {
        /// [`PROTOCOL_VERSION`] of the client.
        version: u16,
        /// Username as typed.
        user: String,
        /// Password (inside QUIC's TLS; hashed with Argon2id by the server).
        password: String,
        /// Ephemeral X25519 public key for the session key.
        session_pub: [u8; 32],
        /// The user's long-term X25519 identity key for private messages (made on the
        /// client; the server only publishes it).
        identity_pub: [u8; 32],
        /// Highest hide counter this client has seen.
        hide_cursor: u64,
    },
    /// List online users.
    Who,
    /// Delete a message.
    Delete {
        /// Message id.
        id: MsgId,
        /// For me or for everyone.
        scope: DeleteScope,
    },
    /// Barrier: answered with [`ControlDown::SyncAck`] after everything before it.
    Sync {
        /// Echoed back.
        token: u64,
    },
    /// End the session.
    Logout,
    /// A room command (answered on the control stream).
    Room(RoomUp),
    /// First frame instead of [`ControlUp::Login`]: log in with the resumption token a
    /// previous login on this device got ([`ControlDown::ResumeToken`]), without the
    /// password. The server answers as for a login, plus the next token (this one stops
    /// working on use). A refused token gets `LoginRefused` with [`ErrorCode::LoginRefused`]:
    /// the client then logs in with the password.
    Resume {
        /// [`PROTOCOL_VERSION`] of the client.
        version: u16,
        /// Username as typed.
        user: String,
        /// The token, as received.
        token: [u8; 32],
        /// Ephemeral X25519 public key for the session key.
        session_pub: [u8; 32],
        /// The user's identity key: the token only works with the one it was issued to.
        identity_pub: [u8; 32],
        /// Highest hide counter this client has seen.
        hide_cursor: u64,
    },
    /// Move this user's read marker of `conv` up to `upto` (never back: a lower one is a
    /// no-op). See "Read state, typing, mentions" in docs/PROTOCOL.md.
    Read {
        /// Conversation.
        conv: ConvId,
        /// The newest sequence number read.
        upto: Seq,
    },
    /// Turn this user's seen receipts on or off (stored; off: none sent, none received).
    Receipts {
        /// On?
        on: bool,
    },
    /// The user is typing in `conv` (best effort: rate-limited, never stored).
    Typing {
        /// Conversation.
        conv: ConvId,
    },
    /// Where each member of `conv` has read up to, for "seen by" (answered by
    /// [`ControlDown::SeenBy`]).
    SeenBy {
        /// Conversation.
        conv: ConvId,
    },
    /// Search the server-readable conversations the user can read (`#general`, rooms; see
    /// `crate::app::search`). Answered by [`ControlDown::Search`] with the same token.
    Search {
        /// Echoed in the answer.
        token: u64,
        /// The words to look for.
        query: String,
        /// One conversation only (`None`: all of them).
        conv: Option<ConvId>,
        /// At most this many results (capped by the server).
        limit: u32,
    },
    /// MLS (`crate::app::mls`): this device and fresh key packages of it, sent after every
    /// login. The server checks that each package's credential is this user and device;
    /// a new device (or a new key for it) is announced with [`ControlDown::DeviceAdded`].
    MlsDevice {
        /// The device id.
        device: String,
        /// TLS-encoded MLS key packages (at most [`MAX_KEY_PACKAGES_UP`]).
        key_packages: Vec<Vec<u8>>,
    },
    /// A user's devices (answered by [`ControlDown::Devices`]).
    Devices {
        /// The user.
        user: String,
    },
    /// One key package of each device of `user` but the asking one, to add them to the
    /// group of `conv` (answered by [`ControlDown::KeyPackages`]).
    ClaimKeyPackages {
        /// The private conversation (the asking user and `user` must be in it).
        conv: ConvId,
        /// Whose devices.
        user: String,
    },
    /// Forget one of this user's own devices (peers see [`ControlDown::DeviceRemoved`]).
    RemoveDevice {
        /// The device id.
        device: String,
    },
    /// A private room's members and their devices, with one key package for each device
    /// that is not in the asking device's group yet (answered by
    /// [`ControlDown::RoomKeyPackages`]): one request per membership check of a room,
    /// whatever its size, and packages only for the devices missing.
    ClaimRoomKeyPackages {
        /// The private room (`ConvId::Room`; the asking user must be a member).
        conv: ConvId,
        /// The devices already in the asking device's group, as (user, device).
        have: Vec<(String, String)>,
    },
}

/// At most this many key packages in one [`ControlUp::MlsDevice`].
pub const MAX_KEY_PACKAGES_UP: usize = 10;

/// Room for the MLS framing of a private body (signature, headers, padding) and for the
/// welcome a commit carries.
pub const MLS_OVERHEAD: usize = 8 * 1024;

/// A device of a user as the server lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKey {
    /// The device id.
    pub device: String,
    /// Its MLS signature public key.
    pub key: Vec<u8>,
}

/// Server to client, on the control stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlDown {
    /// Login accepted.
    LoginOk {
        /// The name as registered.
        user: String,
        /// Server's ephemeral X25519 public key for the session key.
        session_pub: [u8; 32],
        /// The user's conversations and their newest sequence numbers.
        convs: Vec<ConvSummary>,
        /// Users online now.
        online: Vec<String>,
        /// Deletes-for-me newer than the client's hide cursor.
        hidden: Vec<Hidden>,
        /// The delete-for-everyone window in seconds.
        delete_window_secs: u64,
    },
    /// Login refused; the connection closes after this.
    LoginRefused {
        /// Why.
        code: ErrorCode,
        /// For a person.
        message: String,
    },
    /// Someone came online or left.
    Presence {
        /// Who.
        user: String,
        /// Online now?
        online: bool,
    },
    /// Answer to [`ControlUp::Who`].
    Who {
        /// Online users.
        users: Vec<String>,
    },
    /// A conversation with no stream open yet has news: the client should open it.
    ConvActivity {
        /// Which.
        conv: ConvId,
    },
    /// A delete-for-me made in any session of this user.
    Hidden(Hidden),
    /// Answer to [`ControlUp::Sync`].
    SyncAck {
        /// Echoed.
        token: u64,
    },
    /// A command failed.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// For a person.
        message: String,
    },
    /// The server is shutting down or closing this session.
    Closing {
        /// For a person.
        reason: String,
    },
    /// Room news and answers to room commands.
    Room(RoomDown),
    /// Right after `LoginOk`: a resumption token for the next login of this device, so it
    /// skips the password hash. Random, kept by the server only as its SHA-256, bound to
    /// the account and the identity key, single use.
    ResumeToken {
        /// The token.
        token: [u8; 32],
        /// When it stops working (Unix ms).
        expires_ms: u64,
    },
    /// Right after `LoginOk`: this user's read markers and receipts setting.
    ReadState {
        /// Read marker per conversation (only those ever set).
        markers: Vec<(ConvId, Seq)>,
        /// Whether seen receipts are on.
        receipts: bool,
    },
    /// This user's read marker moved (in another session of theirs).
    Read {
        /// Conversation.
        conv: ConvId,
        /// The new marker.
        upto: Seq,
    },
    /// A member of a private conversation or small room has read up to `upto`.
    Seen {
        /// Conversation.
        conv: ConvId,
        /// Who (as registered).
        user: String,
        /// Their read marker.
        upto: Seq,
    },
    /// Answer to [`ControlUp::SeenBy`]: the other members' read markers (empty when
    /// receipts are off for the asker or the conversation is too big for receipts).
    SeenBy {
        /// Conversation.
        conv: ConvId,
        /// (member as registered, marker), members with receipts on only.
        members: Vec<(String, Seq)>,
    },
    /// Someone is typing in `conv`.
    Typing {
        /// Conversation.
        conv: ConvId,
        /// Who (as registered).
        user: String,
    },
    /// This user's receipts setting changed (in any session of theirs).
    Receipts {
        /// On?
        on: bool,
    },
    /// Answer to [`ControlUp::Search`]: matching messages, newest first, or why the
    /// search was refused (so the client knows which search an error ends).
    Search {
        /// Echoed.
        token: u64,
        /// The matches, or the refusal: code and words for a person.
        results: Result<Vec<crate::app::search::SearchHit>, (ErrorCode, String)>,
    },
    /// Answer to [`ControlUp::Devices`].
    Devices {
        /// The user.
        user: String,
        /// Their devices, by id.
        devices: Vec<DeviceKey>,
    },
    /// Answer to [`ControlUp::ClaimKeyPackages`]: every device of `user` (but the asking
    /// one) and one key package for each device that had one left.
    KeyPackages {
        /// The conversation it was asked for.
        conv: ConvId,
        /// The user.
        user: String,
        /// Their devices (without the asking one).
        devices: Vec<DeviceKey>,
        /// Key packages (TLS-encoded), each handed out once.
        packages: Vec<Vec<u8>>,
    },
    /// A user this user shares a private conversation with (or this user) has a new device,
    /// or a new key for one.
    DeviceAdded {
        /// The user.
        user: String,
        /// The device.
        device: DeviceKey,
    },
    /// A device was removed.
    DeviceRemoved {
        /// The user.
        user: String,
        /// The device id.
        device: String,
    },
    /// Answer to [`ControlUp::ClaimRoomKeyPackages`].
    RoomKeyPackages {
        /// The room it was asked for.
        conv: ConvId,
        /// The room's MLS epoch as the server orders it (0: no commit stored yet).
        epoch: u64,
        /// Every member and their devices (the asking device included).
        members: Vec<(String, Vec<DeviceKey>)>,
        /// Key packages (TLS-encoded), each handed out once, for the listed devices that
        /// were not in `have` and had one left.
        packages: Vec<Vec<u8>>,
    },
}

/// Room commands, client to server (see `crate::app::rooms` for the rules).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomUp {
    /// Create a room; the creator becomes its owner.
    Create {
        /// `#name` as spelled.
        name: String,
        /// Topic ("" for none).
        topic: String,
        /// Public (listed, open) or private (invite-only).
        visibility: Visibility,
    },
    /// The directory of public rooms (and the private ones you are in), filtered by a
    /// case-insensitive substring of name or topic ("" for all).
    List {
        /// Filter.
        filter: String,
    },
    /// Join a public room, or a private one you are invited to (accepts the invitation).
    Join {
        /// Room key or name.
        room: String,
    },
    /// Invite a user.
    Invite {
        /// Room.
        room: String,
        /// Who.
        user: String,
    },
    /// Decline an invitation.
    Decline {
        /// Room.
        room: String,
    },
    /// Leave (every session of yours).
    Leave {
        /// Room.
        room: String,
    },
    /// The member list.
    Members {
        /// Room.
        room: String,
    },
    /// Set the topic (moderators).
    Topic {
        /// Room.
        room: String,
        /// New topic.
        topic: String,
    },
    /// A moderation action on a user.
    Moderate {
        /// Room.
        room: String,
        /// Who.
        user: String,
        /// What.
        action: Moderation,
    },
}

/// What a moderator (or the owner) does to a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Moderation {
    /// Remove now (may rejoin a public room).
    Kick,
    /// Remove and keep out.
    Ban,
    /// Let back in.
    Unban,
    /// Make a moderator (owner only).
    Promote,
    /// Make a member again (owner only).
    Demote,
}

/// A room as listed in the directory or in your room list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// Key (`#design`), the conversation's id is `ConvId::Room(key)`.
    pub key: String,
    /// Name as spelled by its creator.
    pub name: String,
    /// Topic.
    pub topic: String,
    /// Public or private.
    pub visibility: Visibility,
    /// How many members.
    pub members: u32,
    /// Newest activity, Unix ms (0: none yet).
    pub last_activity: u64,
    /// Your role, if you are a member.
    pub role: Option<Role>,
}

/// One member in a member list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// User name as registered.
    pub user: String,
    /// Role.
    pub role: Role,
    /// Online now?
    pub online: bool,
}

/// How someone's membership changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberChange {
    /// Joined.
    Joined,
    /// Left.
    Left,
    /// Kicked by a moderator.
    Kicked,
    /// Banned by a moderator.
    Banned,
    /// Unbanned.
    Unbanned,
    /// Made a moderator.
    Promoted,
    /// Made a member again.
    Demoted,
    /// Became the owner (the previous owner left).
    Owner,
    /// Invited.
    Invited,
    /// Declined an invitation.
    Declined,
}

/// Room news and answers, server to client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomDown {
    /// Right after `LoginOk`: the rooms you are in and your pending invitations.
    State {
        /// Your rooms.
        rooms: Vec<RoomInfo>,
        /// Rooms you are invited to: (room, inviter).
        invitations: Vec<(RoomInfo, String)>,
    },
    /// Answer to [`RoomUp::List`].
    Directory {
        /// Matching rooms.
        rooms: Vec<RoomInfo>,
    },
    /// Answer to [`RoomUp::Members`].
    Members {
        /// Room key.
        room: String,
        /// Members.
        members: Vec<MemberInfo>,
    },
    /// You are now a member (you created or joined it, in this session or another).
    Joined {
        /// The room.
        room: RoomInfo,
    },
    /// You are no longer a member; nothing more of the room reaches you.
    Left {
        /// Room key.
        room: String,
        /// Left, Kicked or Banned (or Left when the room was closed).
        change: MemberChange,
        /// The moderator, for a kick or ban.
        by: Option<String>,
    },
    /// You were invited.
    Invited {
        /// The room.
        room: RoomInfo,
        /// Who invited you.
        by: String,
    },
    /// Someone else's membership changed (to the room's members).
    Member {
        /// Room key.
        room: String,
        /// Whose.
        user: String,
        /// What happened.
        change: MemberChange,
        /// Who did it (a moderator, an inviter), if not the user.
        by: Option<String>,
    },
    /// The topic changed.
    Topic {
        /// Room key.
        room: String,
        /// New topic.
        topic: String,
        /// Who set it.
        by: String,
    },
}

/// What a sequenced conversation event is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A message with its (sealed) body.
    Message {
        /// Body bytes.
        body: Vec<u8>,
    },
    /// A message whose body was erased by a delete for everyone.
    Erased,
    /// The record of a delete for everyone.
    Tombstone {
        /// The erased message.
        target: MsgId,
    },
    /// A message whose text an edit replaced: `body` is the current text (the stored
    /// message, as history and catch-up show it; see `crate::app::edits`).
    Edited {
        /// Body bytes.
        body: Vec<u8>,
    },
    /// The record of an edit: `target`'s new text. `body` is empty once a later edit or a
    /// delete for everyone superseded it (no history of edits is kept).
    Edit {
        /// The edited message.
        target: MsgId,
        /// The new text (sealed like a message body).
        body: Vec<u8>,
    },
    /// A reaction added (`on`) or removed by the event's sender.
    Reaction {
        /// The message reacted to.
        target: MsgId,
        /// Added or removed.
        on: bool,
        /// The emoji (sealed like a message body).
        body: Vec<u8>,
    },
    /// Never sent by the server: what a client's MLS layer makes of an event with nothing
    /// to show — a commit, or a message from before this device joined (see
    /// `crate::app::mls`). Its sequence number still counts.
    Handshake,
}

impl EventKind {
    /// The body this event carries, if any (what the envelopes seal and open).
    pub fn body_mut(&mut self) -> Option<&mut Vec<u8>> {
        match self {
            EventKind::Message { body }
            | EventKind::Edited { body }
            | EventKind::Edit { body, .. }
            | EventKind::Reaction { body, .. } => Some(body),
            EventKind::Erased | EventKind::Tombstone { .. } | EventKind::Handshake => None,
        }
    }

    /// The body's length (0 for none), for byte budgets.
    pub fn body_len(&self) -> usize {
        match self {
            EventKind::Message { body }
            | EventKind::Edited { body }
            | EventKind::Edit { body, .. }
            | EventKind::Reaction { body, .. } => body.len(),
            EventKind::Erased | EventKind::Tombstone { .. } | EventKind::Handshake => 0,
        }
    }
}

/// One entry of a conversation's sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvEvent {
    /// Position in the conversation.
    pub seq: Seq,
    /// Server id.
    pub id: MsgId,
    /// Unix milliseconds at the server.
    pub ts: u64,
    /// Author as registered (`server` for announcements and tombstones' author).
    pub sender: String,
    /// The author's client message id.
    pub cmid: ClientMsgId,
    /// Message, erased message or tombstone.
    pub kind: EventKind,
    /// Members named by `@name` in a server-readable message, filled in by the server as it
    /// sends the event (never stored, never for private conversations: their clients
    /// find mentions after decryption).
    #[serde(default)]
    pub mentions: Vec<String>,
}

/// Client to server, on a conversation stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConvUp {
    /// First frame on the stream: which conversation, and where the client is.
    /// `after: None` asks for the newest page only (a device with no local state).
    Open {
        /// Conversation.
        conv: ConvId,
        /// The client's newest sequence number.
        after: Option<Seq>,
    },
    /// Ask for everything after `after` again (a gap, or the next page).
    Catchup {
        /// Sequence number to continue after.
        after: Seq,
    },
    /// Post a message.
    Send {
        /// The client's id for it (a resend reuses it).
        cmid: ClientMsgId,
        /// Sealed body.
        body: Vec<u8>,
    },
    /// A page of history ending before `before` (newest page when `None`).
    History {
        /// Exclusive upper bound.
        before: Option<Seq>,
        /// Page size (capped by the server).
        limit: u32,
    },
    /// Barrier, answered on this stream.
    Sync {
        /// Echoed.
        token: u64,
    },
    /// First frame of a file stream (one per transfer); see "Files" in docs/PROTOCOL.md.
    File(FileReq),
    /// The client is done with this stream (it was idle): the last frame it sends on it
    /// before finishing its side. The server answers [`ConvDown::Closed`].
    Close,
    /// Replace the text of one of your messages (see "Edits" in docs/PROTOCOL.md);
    /// answered with an [`ConvDown::Ack`] of the edit event, exactly once per `cmid`.
    Edit {
        /// The client's id for the edit (a resend reuses it).
        cmid: ClientMsgId,
        /// The message edited.
        target: MsgId,
        /// The new text, sealed like a message body.
        body: Vec<u8>,
    },
    /// Add (`on`) or remove a reaction; answered with an [`ConvDown::Ack`] of the reaction
    /// event, exactly once per `cmid`.
    React {
        /// The client's id for it (a resend reuses it).
        cmid: ClientMsgId,
        /// The message reacted to.
        target: MsgId,
        /// Add or remove.
        on: bool,
        /// What the server keys "one of each emoji per user" on: the emoji itself where the
        /// server reads the conversation, a keyed hash of it in a private one.
        key: Vec<u8>,
        /// The emoji, sealed like a message body.
        body: Vec<u8>,
    },
}

impl ConvUp {
    /// The client's id of a request that stores something (a send, an edit, a reaction):
    /// errors about it carry it back.
    pub fn cmid(&self) -> Option<ClientMsgId> {
        match self {
            ConvUp::Send { cmid, .. } | ConvUp::Edit { cmid, .. } | ConvUp::React { cmid, .. } => {
                Some(*cmid)
            }
            _ => None,
        }
    }

    /// The sealed body of a send, an edit or a reaction.
    pub fn body_mut(&mut self) -> Option<&mut Vec<u8>> {
        match self {
            ConvUp::Send { body, .. } | ConvUp::Edit { body, .. } | ConvUp::React { body, .. } => {
                Some(body)
            }
            _ => None,
        }
    }
}

/// What a file stream is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileReq {
    /// Store a file for a conversation; the server answers [`FileDown::Ready`] with the
    /// whole chunks it already has, the client sends the rest as chunk frames, the server
    /// answers [`FileDown::Done`] once the file is complete on disk.
    Upload {
        /// Conversation the file is for (the uploader must be a member).
        conv: ConvId,
        /// File id (the file message's client message id).
        file: ClientMsgId,
        /// Size in bytes (refused up front over the server's limit).
        size: u64,
    },
    /// Fetch a stored file from chunk `from_chunk` on; the server answers
    /// [`FileDown::Ready`] and then sends the chunk frames.
    Download {
        /// Conversation of the file message (the requester must be a member).
        conv: ConvId,
        /// Author of the file message.
        uploader: String,
        /// File id.
        file: ClientMsgId,
        /// First chunk wanted (resume).
        from_chunk: u64,
    },
    /// [`FileReq::Upload`] of a file sealed with its own key (the key travels in the file
    /// message, end to end): the server stores each chunk as it comes (nonce, ciphertext,
    /// tag) and never opens it. Only in end-to-end conversations (direct messages, private
    /// rooms); refused in `#general` and public rooms, whose files the server keeps
    /// readable. A variant of its own (not a flag) so the frames of earlier clients keep
    /// their meaning.
    UploadKeyed {
        /// Conversation the file is for (the uploader must be a member).
        conv: ConvId,
        /// File id (the file message's client message id).
        file: ClientMsgId,
        /// Size in bytes of the plaintext.
        size: u64,
    },
    /// [`FileReq::Download`] of a file uploaded with [`FileReq::UploadKeyed`]: the chunks
    /// come as stored.
    DownloadKeyed {
        /// Conversation of the file message (the requester must be a member).
        conv: ConvId,
        /// Author of the file message.
        uploader: String,
        /// File id.
        file: ClientMsgId,
        /// First chunk wanted (resume).
        from_chunk: u64,
    },
}

/// Server to client on a file stream (between raw chunk frames).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileDown {
    /// Go ahead: the file's size and the number of whole chunks the server holds (upload)
    /// or the chunk it starts sending from (download).
    Ready {
        /// Size in bytes.
        size: u64,
        /// Chunk count already held / first chunk sent.
        have: u64,
    },
    /// The upload is complete and durable.
    Done,
    /// Refused or failed.
    Error {
        /// What kind.
        code: ErrorCode,
        /// For a person.
        message: String,
    },
}

/// Server to client, on a conversation stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConvDown {
    /// A live sequenced event.
    Event(ConvEvent),
    /// A sequenced event sent in answer to an `Open` or `Catchup` (ends with `CaughtUp`).
    Backlog(ConvEvent),
    /// End of a catch-up: the client is current up to `upto`; `more` asks it to continue.
    CaughtUp {
        /// Last sequence number sent.
        upto: Seq,
        /// Whether another page waits.
        more: bool,
    },
    /// The message was stored (durably) under this id.
    Ack {
        /// The client's id.
        cmid: ClientMsgId,
        /// Server id.
        id: MsgId,
        /// Sequence number.
        seq: Seq,
        /// Server time, Unix ms.
        ts: u64,
    },
    /// Answer to [`ConvUp::History`].
    History {
        /// Events, oldest first.
        events: Vec<ConvEvent>,
        /// Whether older events exist.
        more: bool,
    },
    /// Answer to [`ConvUp::Sync`].
    SyncAck {
        /// Echoed.
        token: u64,
    },
    /// The identity key of the other member of a private conversation: sent before the
    /// backlog when the stream opens, and again whenever it changes.
    PeerKey {
        /// The peer.
        user: String,
        /// Their X25519 identity public key.
        key: [u8; 32],
    },
    /// A request failed; with `cmid` when it was a send.
    Error {
        /// What kind.
        code: ErrorCode,
        /// For a person.
        message: String,
        /// The send it refers to.
        cmid: Option<ClientMsgId>,
    },
    /// Answer to [`ConvUp::Close`], the last frame on the stream: the server forgot the
    /// conversation for this session (news comes as [`ControlDown::ConvActivity`] again)
    /// and finishes its side.
    Closed,
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn error_codes_read_as_their_snake_case_names_in_json() {
        for code in [
            ErrorCode::LoginRefused,
            ErrorCode::DeleteWindowExpired,
            ErrorCode::Internal,
            ErrorCode::ServerFull,
            ErrorCode::QuotaExceeded,
            ErrorCode::Exists,
            ErrorCode::BadCommand,
            ErrorCode::LocalFile,
            ErrorCode::Unknown,
        ] {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::json!(code.as_str()));
            assert_eq!(serde_json::from_value::<ErrorCode>(json).unwrap(), code);
        }
        let newer: ErrorCode = serde_json::from_str(r#""some_future_code""#).unwrap();
        assert_eq!(newer, ErrorCode::Unknown);
    }

    #[test]
    fn a_code_from_a_newer_peer_decodes_as_unknown_on_the_wire() {
        // On the wire a code is its index: one past the last known is a newer code.
        let known = postcard::to_allocvec(&ErrorCode::Unknown).unwrap();
        let newer = postcard::to_allocvec(&(known[0] as u32 + 1)).unwrap();
        assert_eq!(
            postcard::from_bytes::<ErrorCode>(&newer).unwrap(),
            ErrorCode::Unknown
        );
        let bytes = postcard::to_allocvec(&ErrorCode::NotFound).unwrap();
        assert_eq!(
            postcard::from_bytes::<ErrorCode>(&bytes).unwrap(),
            ErrorCode::NotFound
        );
    }
}
