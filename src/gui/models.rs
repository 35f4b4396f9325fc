//! Model objects (GObjects without widgets) that the views bind to.
//!
//! - [`LwMessage`]: one message in a conversation (its data can change: a delete for
//!   everyone turns it into a placeholder).
//! - [`LwConversation`]: `#general` or `@peer`, with its messages (a `gio::ListStore`
//!   kept in sequence order), unread count and the peer's presence.
//! - [`LwClientEntry`]: one connected client in the server window's table.
//!
//! Views re-read an item when the store emits `items-changed` for its position, so a
//! change to a message is a data update plus one signal; no per-row bindings to manage.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use gtk::gio;
use gtk::glib;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use crate::app::ids::{GENERAL, MsgId, Seq};
use crate::app::rooms::Role;

/// The data of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageData {
    /// Server id.
    pub id: MsgId,
    /// Sequence number in its conversation.
    pub seq: Seq,
    /// Author.
    pub from: String,
    /// Text; `None` once deleted for everyone.
    pub text: Option<String>,
    /// Server time, Unix milliseconds.
    pub ts: u64,
    /// Written by the logged-in user.
    pub own: bool,
    /// A notice from LiveWire itself (e.g. a changed safety number), not a message.
    pub notice: bool,
    /// For a file message, its file.
    pub file: Option<crate::app::files::FileInfo>,
    /// The text was edited.
    pub edited: bool,
    /// The message this one replies to.
    pub reply_to: Option<MsgId>,
    /// Reactions by emoji, with who reacted.
    pub reactions: Vec<crate::app::client::ReactionCount>,
    /// It names the signed-in user (`@name`): highlighted, counted apart.
    pub mention: bool,
}

/// Ids of local notices start here, far above any server id.
const NOTICE_ID_BASE: u64 = 1 << 62;
static NEXT_NOTICE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct LwMessage {
        pub data: RefCell<MessageData>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for LwMessage {
        const NAME: &'static str = "LwMessage";
        type Type = super::LwMessage;
    }

    impl ObjectImpl for LwMessage {}

    #[derive(Default, glib::Properties)]
    #[properties(wrapper_type = super::LwConversation)]
    pub struct LwConversation {
        /// `#general` or `@peer`.
        #[property(get, construct_only)]
        pub name: RefCell<String>,
        /// Messages not seen yet.
        #[property(get, set)]
        pub unread: Cell<u32>,
        /// The peer is online (always true for rooms).
        #[property(get, set)]
        pub online: Cell<bool>,
        /// A room's topic.
        #[property(get, set)]
        pub topic: RefCell<String>,
        /// A room's member count (0: not known).
        #[property(get, set)]
        pub members: Cell<u32>,
        /// An invite-only room: end-to-end encrypted with MLS, like direct messages.
        #[property(get, set)]
        pub invite_only: Cell<bool>,
        /// Why the user can no longer write here (removed from the room), or "".
        #[property(get, set)]
        pub removed: RefCell<String>,
        /// The user's role in the room, if a member.
        pub role: Cell<Option<Role>>,
        pub messages: RefCell<Option<gio::ListStore>>,
        pub by_id: RefCell<HashMap<MsgId, super::LwMessage>>,
        pub history_requested: Cell<bool>,
        pub more_history: Cell<bool>,
        /// Unread messages that mention the user (counted apart from `unread`).
        #[property(get, set)]
        pub mentions: Cell<u32>,
        /// Read state, typing and seen receipts (`crate::gui::read_models`).
        pub read: RefCell<super::ReadModel>,
        /// A private conversation's peer: [`super::VERIFY_UNKNOWN`], [`super::VERIFIED`]
        /// or [`super::VERIFICATION_BROKEN`] (from the `verified` and
        /// `verification_broken` events of this session).
        #[property(get, set)]
        pub verification: Cell<u32>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for LwConversation {
        const NAME: &'static str = "LwConversation";
        type Type = super::LwConversation;
    }

    #[glib::derived_properties]
    impl ObjectImpl for LwConversation {
        fn constructed(&self) {
            self.parent_constructed();
            self.messages
                .replace(Some(gio::ListStore::new::<super::LwMessage>()));
            self.more_history.set(true);
        }
    }

    #[derive(Default)]
    pub struct LwClientEntry {
        pub data: RefCell<super::ClientEntryData>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for LwClientEntry {
        const NAME: &'static str = "LwClientEntry";
        type Type = super::LwClientEntry;
    }

    impl ObjectImpl for LwClientEntry {}
}

/// [`LwConversation::verification`]: nothing known about the peer's verification.
pub const VERIFY_UNKNOWN: u32 = 0;
/// [`LwConversation::verification`]: the user verified the peer's safety code.
pub const VERIFIED: u32 = 1;
/// [`LwConversation::verification`]: the peer was verified, then their devices changed
/// (the alert stays until the user verifies again or dismisses it).
pub const VERIFICATION_BROKEN: u32 = 2;

glib::wrapper! {
    /// One message (see [`MessageData`]).
    pub struct LwMessage(ObjectSubclass<imp::LwMessage>);
}

impl LwMessage {
    /// A message object.
    pub fn new(data: MessageData) -> Self {
        let m: Self = glib::Object::new();
        m.imp().data.replace(data);
        m
    }

    /// A copy of its data.
    pub fn data(&self) -> MessageData {
        self.imp().data.borrow().clone()
    }

    /// Server id.
    pub fn id(&self) -> MsgId {
        self.imp().data.borrow().id
    }

    /// Sequence number.
    pub fn seq(&self) -> Seq {
        self.imp().data.borrow().seq
    }

    /// Text, `None` when deleted for everyone.
    pub fn text(&self) -> Option<String> {
        self.imp().data.borrow().text.clone()
    }

    /// Author.
    pub fn from(&self) -> String {
        self.imp().data.borrow().from.clone()
    }
}

glib::wrapper! {
    /// A conversation in the sidebar, with its messages.
    pub struct LwConversation(ObjectSubclass<imp::LwConversation>);
}

/// What adding a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// It is new.
    New,
    /// It was shown already (same id): nothing changed.
    Duplicate,
}

impl LwConversation {
    /// A conversation named `#general`, `#room` or `@peer`.
    pub fn new(name: &str) -> Self {
        glib::Object::builder()
            .property("name", name)
            .property("online", !name.starts_with('@'))
            .build()
    }

    /// Is this a private conversation?
    pub fn is_private(&self) -> bool {
        self.name().starts_with('@')
    }

    /// Is this a room (`#general` included)?
    pub fn is_room(&self) -> bool {
        self.name().starts_with('#')
    }

    /// Is this the server's room, `#general`?
    pub fn is_general(&self) -> bool {
        self.name().eq_ignore_ascii_case(GENERAL)
    }

    /// The user's role in this room, if a member (`#general`: none, the operator
    /// moderates it).
    pub fn role(&self) -> Option<Role> {
        self.imp().role.get()
    }

    /// Records the user's role in this room.
    pub fn set_role(&self, role: Option<Role>) {
        self.imp().role.set(role);
    }

    /// The user was removed from this room (or it closed): it stays readable, not
    /// writable.
    pub fn is_read_only(&self) -> bool {
        !self.removed().is_empty()
    }

    /// The peer of a private conversation.
    pub fn peer(&self) -> Option<String> {
        self.name().strip_prefix('@').map(str::to_owned)
    }

    /// The messages, oldest first (a `gio::ListStore` of [`LwMessage`]).
    pub fn messages(&self) -> gio::ListStore {
        self.imp()
            .messages
            .borrow()
            .clone()
            .expect("created in constructed()")
    }

    /// Number of messages shown.
    pub fn len(&self) -> u32 {
        self.messages().n_items()
    }

    /// No messages shown?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message with this id, if shown.
    pub fn message(&self, id: MsgId) -> Option<LwMessage> {
        self.imp().by_id.borrow().get(&id).cloned()
    }

    /// All messages' data, oldest first (for tests and debugging).
    pub fn snapshot(&self) -> Vec<MessageData> {
        let store = self.messages();
        (0..store.n_items())
            .filter_map(|i| store.item(i).and_downcast::<LwMessage>())
            .map(|m| m.data())
            .collect()
    }

    /// The lowest sequence number shown (where "load older" continues from).
    pub fn first_seq(&self) -> Option<Seq> {
        self.messages()
            .item(0)
            .and_downcast::<LwMessage>()
            .map(|m| m.seq())
    }

    /// Adds a message in sequence order, ignoring one already shown.
    pub fn add(&self, data: MessageData) -> Added {
        if self.imp().by_id.borrow().contains_key(&data.id) {
            return Added::Duplicate;
        }
        let store = self.messages();
        let msg = LwMessage::new(data);
        self.imp().by_id.borrow_mut().insert(msg.id(), msg.clone());
        let n = store.n_items();
        let last_seq = store
            .item(n.saturating_sub(1))
            .and_downcast::<LwMessage>()
            .map(|m| m.seq());
        match last_seq {
            Some(last) if msg.seq() < last => {
                store.insert_sorted(&msg, |a, b| {
                    let a = a.downcast_ref::<LwMessage>().map(LwMessage::seq);
                    let b = b.downcast_ref::<LwMessage>().map(LwMessage::seq);
                    a.cmp(&b)
                });
            }
            _ => store.append(&msg),
        }
        Added::New
    }

    /// Adds a page of older messages (from `History`) in one splice when they all come
    /// before what is shown; otherwise one by one in order.
    pub fn add_history(&self, page: Vec<MessageData>) -> usize {
        let fresh: Vec<MessageData> = {
            let by_id = self.imp().by_id.borrow();
            page.into_iter()
                .filter(|m| !by_id.contains_key(&m.id))
                .collect()
        };
        let count = fresh.len();
        if count == 0 {
            return 0;
        }
        let store = self.messages();
        let n = store.n_items();
        let first = self.first_seq();
        let last = store
            .item(n.saturating_sub(1))
            .and_downcast::<LwMessage>()
            .map(|m| m.seq());
        let mut sorted = fresh;
        sorted.sort_by_key(|m| m.seq);
        let objs: Vec<LwMessage> = sorted.into_iter().map(LwMessage::new).collect();
        {
            let mut by_id = self.imp().by_id.borrow_mut();
            for m in &objs {
                by_id.insert(m.id(), m.clone());
            }
        }
        // One `items-changed` per page, whatever its size: the list view stays responsive.
        if first.is_none_or(|f| objs.iter().all(|m| m.seq() < f)) {
            store.splice(0, 0, &objs);
        } else if last.is_some_and(|l| objs.iter().all(|m| m.seq() >= l)) {
            store.splice(n, 0, &objs);
        } else {
            let mut all: Vec<LwMessage> = (0..n)
                .filter_map(|i| store.item(i).and_downcast::<LwMessage>())
                .chain(objs)
                .collect();
            all.sort_by_key(LwMessage::seq);
            store.splice(0, n, &all);
        }
        count
    }

    /// Adds a local notice after the newest message (not sent anywhere).
    pub fn add_notice(&self, text: &str, ts: u64) {
        let n = NEXT_NOTICE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seq = self
            .messages()
            .item(self.len().saturating_sub(1))
            .and_downcast::<LwMessage>()
            .map_or(0, |m| m.seq());
        self.add(MessageData {
            file: None,
            mention: false,
            id: NOTICE_ID_BASE + n,
            seq,
            text: Some(text.to_owned()),
            ts,
            notice: true,
            ..MessageData::default()
        });
    }

    /// Turns a message into the "deleted" placeholder. Returns whether it was shown.
    pub fn erase(&self, id: MsgId) -> bool {
        let Some(msg) = self.message(id) else {
            return false;
        };
        msg.imp().data.borrow_mut().text = None;
        let store = self.messages();
        if let Some(pos) = store.find(&msg) {
            store.items_changed(pos, 1, 1);
        }
        true
    }

    /// Removes a message from the list (deleted for me). Returns whether it was shown.
    pub fn remove(&self, id: MsgId) -> bool {
        let Some(msg) = self.imp().by_id.borrow_mut().remove(&id) else {
            return false;
        };
        let store = self.messages();
        if let Some(pos) = store.find(&msg) {
            store.remove(pos);
        }
        true
    }

    /// Whether older history may exist on the server.
    pub fn more_history(&self) -> bool {
        self.imp().more_history.get()
    }

    /// Records whether older history exists.
    pub fn set_more_history(&self, more: bool) {
        self.imp().more_history.set(more);
    }

    /// Marks that a history page was asked for; returns false if one is already pending.
    pub fn begin_history_request(&self) -> bool {
        !self.imp().history_requested.replace(true)
    }

    /// A history page arrived.
    pub fn end_history_request(&self) {
        self.imp().history_requested.set(false);
    }
}

/// One row of the server window's client table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientEntryData {
    /// Connection id.
    pub conn: u64,
    /// Username.
    pub user: String,
    /// Current `IP:port`.
    pub addr: String,
    /// Login time, Unix seconds.
    pub since: i64,
    /// Messages sent on this connection.
    pub messages: u64,
}

glib::wrapper! {
    /// A connected client in the server window.
    pub struct LwClientEntry(ObjectSubclass<imp::LwClientEntry>);
}

impl LwClientEntry {
    /// A client entry.
    pub fn new(data: ClientEntryData) -> Self {
        let e: Self = glib::Object::new();
        e.imp().data.replace(data);
        e
    }

    /// A copy of its data.
    pub fn data(&self) -> ClientEntryData {
        self.imp().data.borrow().clone()
    }

    /// Changes its data (the caller emits `items-changed` on the store).
    pub fn update(&self, f: impl FnOnce(&mut ClientEntryData)) {
        f(&mut self.imp().data.borrow_mut());
    }
}

/// Finds the position of the first item of `store` that satisfies `pred`.
pub fn position<T: IsA<glib::Object>>(
    store: &gio::ListStore,
    pred: impl Fn(&T) -> bool,
) -> Option<u32> {
    (0..store.n_items()).find(|&i| store.item(i).and_downcast::<T>().is_some_and(|o| pred(&o)))
}

/// What a conversation keeps of read state (its methods: `crate::gui::read_models`).
#[derive(Debug, Default)]
pub struct ReadModel {
    /// The user's read marker, once the server told it or the user read here.
    pub(crate) upto: Option<crate::app::ids::Seq>,
    /// Who types: user key -> (name, when the last notice came).
    pub(crate) typists: std::collections::BTreeMap<String, (String, std::time::Instant)>,
    /// How far the other members have read: user key -> (name, marker).
    pub(crate) seen: std::collections::BTreeMap<String, (String, crate::app::ids::Seq)>,
    /// A `read` went out less than `READ_EVERY` ago (`client_window::read_state`).
    pub(crate) read_throttled: bool,
    /// The marker moved while throttled: a `read` is owed when the throttle ends.
    pub(crate) read_owed: bool,
}
