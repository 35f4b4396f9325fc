//! What the server core needs from persistence.
//!
//! The SQLite implementation lives in `crate::store`. The driver wraps each batch of core
//! calls in one transaction and only sends acknowledgements after it commits. With the
//! `test-util` feature (and in the crate's own tests) there is also an in-memory
//! `MemStore` and the `contract` every implementation must pass.

#[cfg(any(test, feature = "test-util"))]
pub mod contract;
#[cfg(any(test, feature = "test-util"))]
mod contract_edits;
#[cfg(any(test, feature = "test-util"))]
mod mem;

#[cfg(any(test, feature = "test-util"))]
pub use mem::MemStore;

use std::collections::BTreeMap;

use super::ids::{ClientMsgId, ConvId, MsgId, Seq};
use super::protocol::{ConvEvent, Hidden};
use super::rooms::{Effect, Room};
use super::search::{SearchQuery, SearchScope};

/// What kind of storage failure: the core answers a full disk with `server_full` (the
/// sender may try again once the operator made room) and anything else with `internal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The disk (or the database's size limit) is full: writes fail, reads still work.
    Full,
    /// Any other failure.
    Other,
}

/// A storage failure (the message is for the operator's log).
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage: {message}")]
pub struct StoreError {
    /// What kind of failure.
    pub kind: StoreErrorKind,
    /// For the operator's log.
    pub message: String,
}

impl StoreError {
    /// A failure other than a full disk.
    pub fn other(message: impl Into<String>) -> Self {
        Self {
            kind: StoreErrorKind::Other,
            message: message.into(),
        }
    }

    /// The disk is full.
    pub fn full(message: impl Into<String>) -> Self {
        Self {
            kind: StoreErrorKind::Full,
            message: message.into(),
        }
    }

    /// Whether the disk is full.
    pub fn is_full(&self) -> bool {
        self.kind == StoreErrorKind::Full
    }
}

/// Result of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// A registered account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Name as registered.
    pub name: String,
    /// Argon2id PHC string.
    pub phc: String,
}

/// A stored resumption token (the token itself is never stored: its SHA-256 is the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRecord {
    /// The account's case-folded key.
    pub user_key: String,
    /// The identity key of the device it was issued to.
    pub identity_pub: [u8; 32],
    /// When it stops working (Unix ms).
    pub expires_ms: u64,
}

/// A stored message or tombstone, with where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Conversation.
    pub conv: ConvId,
    /// The event.
    pub event: ConvEvent,
}

/// A room as stored: its state, who invited each pending invitee, and its newest activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoom {
    /// Name, topic, visibility, members, invitations and bans.
    pub room: Room,
    /// Pending invitations: invitee key -> inviter key.
    pub inviters: BTreeMap<String, String>,
    /// Unix ms of the room's newest event (0: none yet).
    pub last_activity: u64,
}

/// Persistence used by [`crate::app::server::ServerCore`].
pub trait Store {
    /// Looks a user up by case-folded key.
    fn user(&mut self, key: &str) -> StoreResult<Option<UserRecord>>;
    /// Whether some user other than `key` has this look-alike skeleton.
    fn skeleton_taken(&mut self, skeleton: &str, key: &str) -> StoreResult<bool>;
    /// Registers a user; `false` if the key or skeleton was taken meanwhile.
    fn create_user(
        &mut self,
        name: &str,
        key: &str,
        skeleton: &str,
        phc: &str,
    ) -> StoreResult<bool>;
    /// Sets a user's identity key; returns the previous one.
    fn set_identity_key(&mut self, key: &str, public: [u8; 32]) -> StoreResult<Option<[u8; 32]>>;
    /// A user's identity key.
    fn identity_key(&mut self, key: &str) -> StoreResult<Option<[u8; 32]>>;
    /// Stores a resumption token by its SHA-256, and drops every token expired at `now_ms`.
    fn put_resume_token(
        &mut self,
        hash: &[u8; 32],
        record: &ResumeRecord,
        now_ms: u64,
    ) -> StoreResult<()>;
    /// Removes the token with this SHA-256 and returns what it was bound to: a token works
    /// once, and a lookup that fails its checks has burnt it too.
    fn take_resume_token(&mut self, hash: &[u8; 32]) -> StoreResult<Option<ResumeRecord>>;
    /// Stores a message unless `(sender_key, cmid)` exists; returns the stored event and
    /// whether it already existed.
    fn insert_message(
        &mut self,
        conv: &ConvId,
        sender: &str,
        cmid: ClientMsgId,
        body: &[u8],
        ts: u64,
    ) -> StoreResult<(ConvEvent, bool)>;
    /// A message by id.
    fn event(&mut self, id: MsgId) -> StoreResult<Option<StoredEvent>>;
    /// Erases a message's body and appends a tombstone; returns the tombstone.
    fn erase(&mut self, id: MsgId, cmid: ClientMsgId, ts: u64) -> StoreResult<ConvEvent>;
    /// Events with `after < seq`, oldest first, at most `limit`, without those hidden for
    /// `viewer_key`.
    fn events_after(
        &mut self,
        conv: &ConvId,
        after: Seq,
        limit: usize,
        viewer_key: &str,
    ) -> StoreResult<Vec<ConvEvent>>;
    /// Events with `seq < before`, newest `limit`, returned oldest first.
    fn events_before(
        &mut self,
        conv: &ConvId,
        before: Seq,
        limit: usize,
        viewer_key: &str,
    ) -> StoreResult<Vec<ConvEvent>>;
    /// Newest sequence number of a conversation (0 if empty).
    fn last_seq(&mut self, conv: &ConvId) -> StoreResult<Seq>;
    /// The user's conversations (`#general`, every private one with a message, and every
    /// room they are a member of).
    fn conversations(&mut self, key: &str) -> StoreResult<Vec<(ConvId, Seq)>>;
    /// Hides a message for a user; returns the new hide counter (`None` if already hidden).
    fn hide(&mut self, key: &str, conv: &ConvId, id: MsgId) -> StoreResult<Option<u64>>;
    /// Hides with a counter above `after`.
    fn hidden_after(&mut self, key: &str, after: u64) -> StoreResult<Vec<Hidden>>;
    /// Every open room, at the server's start.
    fn load_rooms(&mut self) -> StoreResult<Vec<StoredRoom>>;
    /// The room with key `key` (`None`: there is none, e.g. it was closed). A cluster node
    /// re-reads a room another node changed; the default loads every room.
    fn load_room(&mut self, key: &str) -> StoreResult<Option<StoredRoom>> {
        Ok(self
            .load_rooms()?
            .into_iter()
            .find(|r| r.room.name.key() == key))
    }
    /// Stores a new room (its owner included); `false` if a room with its key or
    /// look-alike skeleton exists.
    fn create_room(&mut self, room: &Room) -> StoreResult<bool>;
    /// Persists what [`Room::apply`] did: `room` is the state after the change, `by` the
    /// user who asked (the inviter of an [`Effect::Invited`]). [`Effect::Closed`] removes
    /// the room with its history, which frees its name.
    fn room_changed(&mut self, room: &Room, effects: &[Effect], by: &str) -> StoreResult<()>;
    /// Starts a batch: every call until [`Store::commit`] becomes durable together.
    fn begin(&mut self) -> StoreResult<()>;
    /// Makes the batch durable; the server acknowledges nothing of it before this returns.
    fn commit(&mut self) -> StoreResult<()>;
    /// Flushes what a graceful stop should leave tidy on disk (nothing by default).
    fn checkpoint(&mut self) -> StoreResult<()> {
        Ok(())
    }
    /// Edits message `target` (the caller checked it is an editable message of `editor`):
    /// unless `(editor, cmid)` exists (then returns that event and `true`), replaces the
    /// stored text with `body` ([`EventKind::Edited`]), empties the bodies of earlier
    /// [`EventKind::Edit`] events of `target` (no history of edits is kept) and appends a
    /// new one. Returns the edit event.
    ///
    /// [`EventKind::Edited`]: super::protocol::EventKind::Edited
    /// [`EventKind::Edit`]: super::protocol::EventKind::Edit
    fn edit_message(
        &mut self,
        target: MsgId,
        editor: &str,
        cmid: ClientMsgId,
        body: &[u8],
        ts: u64,
    ) -> StoreResult<(ConvEvent, bool)>;
    /// Empties the bodies of `target`'s edit events (its delete for everyone erases them
    /// with the message).
    fn erase_edits(&mut self, target: MsgId) -> StoreResult<()>;
    /// Adds (`on`) or removes `user`'s reaction keyed `key` to message `target` of `conv`
    /// and appends the [`EventKind::Reaction`] event carrying `body`. A resend (same
    /// `(user, cmid)`) returns the stored event; a change that changes nothing (adding a
    /// reaction already there, removing one that is not) stores nothing.
    ///
    /// [`EventKind::Reaction`]: super::protocol::EventKind::Reaction
    fn react(&mut self, change: &ReactionChange<'_>) -> StoreResult<Reacted>;
    /// The reaction events in force (added and not removed since) for these messages of
    /// `conv`, oldest first: what a history page needs to show counts.
    fn reactions(&mut self, conv: &ConvId, targets: &[MsgId]) -> StoreResult<Vec<ConvEvent>>;
    /// Moves `key`'s read marker of `conv` up to `upto`: returns the new marker, or `None`
    /// when it already was at or past `upto` (a marker never moves back). A closed room's
    /// markers go with it ([`Store::room_changed`] with [`Effect::Closed`]).
    fn advance_read(&mut self, key: &str, conv: &ConvId, upto: Seq) -> StoreResult<Option<Seq>>;
    /// `key`'s read markers: every conversation where they set one.
    fn read_markers(&mut self, key: &str) -> StoreResult<Vec<(ConvId, Seq)>>;
    /// Every user's read marker of `conv`, by user key.
    fn conv_read_markers(&mut self, conv: &ConvId) -> StoreResult<Vec<(String, Seq)>>;
    /// Sets whether `key` sends and receives seen receipts.
    fn set_receipts(&mut self, key: &str, on: bool) -> StoreResult<()>;
    /// Whether `key` has seen receipts on (on unless they turned them off).
    fn receipts(&mut self, key: &str) -> StoreResult<bool>;
    /// Messages of `scopes` (server-readable conversations only; private ones are never
    /// indexed) that match `query` (`crate::app::search`), from each scope's `from` on,
    /// without erased, file and hidden-for-`viewer_key` messages: newest first (time, then
    /// id), at most `limit`.
    fn search(
        &mut self,
        query: &SearchQuery,
        scopes: &[SearchScope],
        viewer_key: &str,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>>;
    /// MLS devices (`crate::app::mls`): records `user`'s device `device` with its signature
    /// key; `true` when it is new or its key changed.
    fn put_device(&mut self, user: &str, device: &str, key: &[u8]) -> StoreResult<bool>;
    /// Forgets a device and its key packages (the last-resort one too) and remembers that
    /// it was removed ([`Store::device_removed`]); `true` if it was there.
    fn remove_device(&mut self, user: &str, device: &str) -> StoreResult<bool>;
    /// Whether `user`'s device `device` was removed: such a device never announces itself
    /// again (it must start as a new device).
    fn device_removed(&mut self, user: &str, device: &str) -> StoreResult<bool>;
    /// A user's devices with their signature keys, by device id.
    fn devices(&mut self, user: &str) -> StoreResult<Vec<(String, Vec<u8>)>>;
    /// Adds key packages of a device (each handed out once), keeping its newest
    /// [`MAX_KEY_PACKAGES`].
    fn add_key_packages(
        &mut self,
        user: &str,
        device: &str,
        packages: &[Vec<u8>],
    ) -> StoreResult<()>;
    /// Takes (and deletes) a device's oldest key package.
    fn claim_key_package(&mut self, user: &str, device: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Sets a device's last-resort key package (RFC 9420 §16.8), replacing the previous
    /// one: handed out when its one-time packages are gone or the claimer is over its
    /// limit, and never deleted by a claim (only by the next one or [`Store::remove_device`]).
    fn put_last_resort_key_package(
        &mut self,
        user: &str,
        device: &str,
        package: &[u8],
    ) -> StoreResult<()>;
    /// A device's last-resort key package (left in place).
    fn last_resort_key_package(&mut self, user: &str, device: &str)
    -> StoreResult<Option<Vec<u8>>>;
    /// How many one-time key packages of `owner`'s devices `claimer` took at or after
    /// `since` (Unix ms).
    fn key_package_claims(&mut self, claimer: &str, owner: &str, since: u64) -> StoreResult<u64>;
    /// Records that `claimer` took one of `owner`'s one-time key packages at `at` (Unix
    /// ms), forgetting that pair's claims before `forget_before`.
    fn note_key_package_claim(
        &mut self,
        claimer: &str,
        owner: &str,
        at: u64,
        forget_before: u64,
    ) -> StoreResult<()>;
    /// A private conversation's MLS epoch (0 before its first commit) and the client id of
    /// the commit that made it.
    fn mls_epoch(&mut self, conv: &ConvId) -> StoreResult<(u64, Option<ClientMsgId>)>;
    /// Records the epoch a commit (`cmid`) moved the conversation to.
    fn set_mls_epoch(&mut self, conv: &ConvId, epoch: u64, cmid: ClientMsgId) -> StoreResult<()>;
    /// Moves the wait for the disk off the committing thread (pipelined group commit): from
    /// now on [`Store::commit`] makes a batch visible to later batches but not yet durable,
    /// and the returned [`Durability`] makes every batch committed before a
    /// [`Durability::sync`] call durable when that call returns. The hub calls this once,
    /// before its first batch, and releases a batch's acknowledgements only after a sync
    /// that began after the batch's commit. `None` (the default): each commit is durable
    /// by itself.
    fn split_durability(&mut self) -> StoreResult<Option<Box<dyn Durability>>> {
        Ok(None)
    }
}

/// Makes committed batches durable on a thread of its own (see [`Store::split_durability`]).
pub trait Durability: Send {
    /// Returns once every batch committed before this call is durable. An error means
    /// nothing committed since the last successful sync may be assumed durable.
    fn sync(&mut self) -> StoreResult<()>;
}

/// Key packages kept per device (older ones are dropped as new ones arrive).
pub const MAX_KEY_PACKAGES: usize = 20;

/// A reaction added or taken back, for [`Store::react`].
#[derive(Debug, Clone, Copy)]
pub struct ReactionChange<'a> {
    /// The conversation of the message.
    pub conv: &'a ConvId,
    /// The message reacted to.
    pub target: MsgId,
    /// Who reacts (as registered).
    pub user: &'a str,
    /// The reacting client's id for this change (exactly-once).
    pub cmid: ClientMsgId,
    /// What "one of each emoji" is decided on: the emoji, or in a private conversation a
    /// keyed hash of it the server cannot invert.
    pub key: &'a [u8],
    /// Added (`true`) or taken back.
    pub on: bool,
    /// The event's body: the emoji (sealed in a private conversation).
    pub body: &'a [u8],
    /// Server time, Unix ms.
    pub ts: u64,
}

/// What [`Store::react`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reacted {
    /// Stored this new event.
    Applied(ConvEvent),
    /// A resend: this event was stored before.
    Resent(ConvEvent),
    /// Nothing to change (already reacted so, or no such reaction to remove).
    Unchanged,
}
