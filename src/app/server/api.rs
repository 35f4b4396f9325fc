//! What goes into the server core ([`Input`]) and what comes out ([`Output`], with the
//! operator's log lines, [`ServerLog`]).

use std::net::SocketAddr;
use std::sync::Arc;

use super::ClusterMsg;
use crate::app::ids::{ClientMsgId, ConnId, ConvId, MsgId};
use crate::app::protocol::{ControlDown, ControlUp, ConvDown, ConvEvent, ConvUp};

/// Everything that can happen to the server.
#[derive(Debug, Clone)]
pub enum Input {
    /// A QUIC connection finished its handshake.
    Connected {
        /// Connection.
        conn: ConnId,
        /// Remote address.
        addr: SocketAddr,
    },
    /// The remote address of a connection changed (NAT rebinding, network switch).
    Migrated {
        /// Connection.
        conn: ConnId,
        /// New address.
        addr: SocketAddr,
    },
    /// The connection is gone.
    Disconnected {
        /// Connection.
        conn: ConnId,
    },
    /// A control-stream frame.
    Control {
        /// Connection.
        conn: ConnId,
        /// Frame.
        up: ControlUp,
    },
    /// The connection's first control frame (a login or a resume), with 32 fresh bytes from
    /// the OS RNG: the resumption token this login issues if it succeeds. (A login that
    /// comes as [`Input::Control`] works the same and gets no token.)
    Login {
        /// Connection.
        conn: ConnId,
        /// Frame: [`ControlUp::Login`] or [`ControlUp::Resume`].
        up: ControlUp,
        /// The next resumption token.
        token: [u8; 32],
    },
    /// A conversation-stream frame; `conv` is the one the stream was opened for.
    Conv {
        /// Connection.
        conn: ConnId,
        /// Conversation of the stream.
        conv: ConvId,
        /// Frame.
        up: ConvUp,
    },
    /// Result of an [`Output::VerifyPassword`].
    PasswordChecked {
        /// Connection.
        conn: ConnId,
        /// Whether the password matched (always true for a registration).
        ok: bool,
        /// For a registration, the new Argon2id hash.
        new_phc: Option<String>,
    },
    /// The operator posts to `#general` (`room: None`) or into any room, as `server`.
    Announce {
        /// The room's name or key; `None` for `#general`.
        room: Option<String>,
        /// Text.
        text: String,
        /// A fresh random id for it.
        cmid: ClientMsgId,
    },
    /// The operator deletes a message of `#general` or of a room for everyone (private
    /// conversations are end-to-end: the operator cannot read or delete them).
    OperatorDelete {
        /// Server id of the message.
        id: MsgId,
    },
    /// The operator closes a room: every member is removed ("closed by the operator") and
    /// the room, its history and its name are gone.
    CloseRoom {
        /// The room's name or key.
        room: String,
    },
    /// The operator disconnects a client.
    Kick {
        /// Connection.
        conn: ConnId,
    },
    /// The server is stopping: tell everyone.
    Shutdown {
        /// For the users.
        reason: String,
    },
    /// Cluster mode: a message from another node (`from`: its instance id).
    Cluster {
        /// The sending node's instance id.
        from: u64,
        /// What it says.
        msg: ClusterMsg,
    },
    /// Cluster mode: every [`super::ROSTER_EVERY_MS`], send this node's roster and forget
    /// nodes that went silent.
    ClusterTick,
    /// Cluster mode: the link to the other nodes was down and is back (what they sent
    /// meanwhile is lost): nudge every open conversation to catch up from the store.
    ClusterResync,
}

/// What the core asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send on the control stream.
    Control {
        /// Connection.
        conn: ConnId,
        /// Frame.
        down: ControlDown,
    },
    /// Send on a conversation stream.
    Conv {
        /// Connection.
        conn: ConnId,
        /// Conversation.
        conv: ConvId,
        /// Frame.
        down: ConvDown,
    },
    /// Check `password` against `phc`, or hash it when `phc` is `None` (registration);
    /// answer with [`Input::PasswordChecked`].
    VerifyPassword {
        /// Connection.
        conn: ConnId,
        /// Password.
        password: String,
        /// Stored hash.
        phc: Option<String>,
    },
    /// Close the connection after flushing what was queued.
    Close {
        /// Connection.
        conn: ConnId,
        /// For the user.
        reason: String,
    },
    /// Something for the operator's view.
    Log(ServerLog),
    /// `conn` is no longer in the room `conv`: the transport must not write any frame of
    /// that conversation still queued for it (nor any later one) and finishes its stream.
    /// Applied by the driver at once, in order with the outputs before it, so what was
    /// queued before the removal never reaches the removed user.
    Revoke {
        /// Connection.
        conn: ConnId,
        /// The room's conversation.
        conv: ConvId,
    },
    /// Room membership changed: `user` (key) is now (`member: true`) or no longer a member
    /// of the room `room` (key). The transport keeps a copy for file transfers.
    Membership {
        /// Room key.
        room: String,
        /// User key.
        user: String,
        /// Member now?
        member: bool,
        /// Whether the room is private (its files may be end-to-end sealed).
        private: bool,
    },
    /// Cluster mode: tell the other nodes, after the batch's commit (a durable message of
    /// a batch whose commit failed is dropped with it, see [`ClusterMsg::is_durable`]).
    Publish(ClusterMsg),
    /// A new live event on `conv`'s stream of `conn`: [`Output::Conv`] with
    /// [`ConvDown::Event`], but one event shared by every recipient of a fan-out, so the
    /// driver seals its body for each session without copying the event per recipient.
    Event {
        /// Connection.
        conn: ConnId,
        /// Conversation.
        conv: ConvId,
        /// The event, as every recipient gets it (body in clear).
        event: Arc<ConvEvent>,
    },
}

impl Output {
    /// The same output with a shared event written out as an [`Output::Conv`] (for a
    /// driver or a test that does not share bodies).
    pub fn unshared(self) -> Output {
        match self {
            Output::Event { conn, conv, event } => Output::Conv {
                conn,
                conv,
                down: ConvDown::Event(Arc::unwrap_or_clone(event)),
            },
            other => other,
        }
    }
}

/// Events for the operator (headless JSON lines, the server window, tracing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLog {
    /// A user logged in.
    ClientConnected {
        /// Connection.
        conn: ConnId,
        /// User.
        user: String,
        /// Address.
        addr: SocketAddr,
        /// With a resumption token (no password check).
        resumed: bool,
    },
    /// A logged-in user left.
    ClientDisconnected {
        /// Connection.
        conn: ConnId,
        /// User.
        user: String,
        /// Address.
        addr: SocketAddr,
    },
    /// A logged-in user's address changed.
    ClientMigrated {
        /// Connection.
        conn: ConnId,
        /// User.
        user: String,
        /// Old address.
        from: SocketAddr,
        /// New address.
        addr: SocketAddr,
    },
    /// A message was stored; `text` only for `#general` (private ones are not shown).
    Message {
        /// Connection of the sender (`None` for announcements).
        conn: Option<ConnId>,
        /// Server id of the message (what the operator deletes by).
        id: MsgId,
        /// Author.
        from: String,
        /// `#general` or the other member's name.
        to: String,
        /// Room text.
        text: Option<String>,
    },
    /// A message was deleted for everyone.
    Deleted {
        /// Who deleted it.
        by: String,
        /// Message id.
        id: u64,
        /// Its conversation.
        conv: ConvId,
        /// Its author.
        sender: String,
        /// Its client message id (a file message's file id).
        cmid: ClientMsgId,
    },
    /// A login was refused.
    LoginRefused {
        /// Address.
        addr: SocketAddr,
        /// Name tried.
        user: String,
        /// Why.
        reason: String,
    },
    /// A user created a room.
    RoomCreated {
        /// Room name.
        room: String,
        /// Its creator.
        by: String,
        /// Public or private.
        visibility: crate::app::rooms::Visibility,
    },
    /// A room's figures for the operator's list: at start for every stored room, and
    /// after every change of its membership.
    RoomUpdated {
        /// Room name.
        room: String,
        /// Public or private.
        visibility: crate::app::rooms::Visibility,
        /// How many members.
        members: u32,
        /// Unix ms of its newest message (0: none yet).
        last_activity: u64,
    },
    /// A room was closed (its last member left, or the operator closed it).
    RoomClosed {
        /// Room name.
        room: String,
    },
    /// A storage failure.
    StoreFailed {
        /// What failed.
        error: String,
        /// Because the disk is full (logged at `warn` with what to do).
        full: bool,
    },
}
