//! Read state in the window: marking a conversation read when it is shown (the other
//! devices follow), unread and mention counts, the "bob is typing…" / "Seen by bob" line
//! under the messages, the typing notices the user's own typing sends, the names `@`
//! completes in the composer, and the "Send Read Receipts" toggle of the window's menu.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use super::LwClientWindow;
use crate::app::client::Event;
use crate::app::client::{Command, TYPING_SHOWN};
use crate::app::server::{MAX_RECEIPT_MEMBERS, TYPING_INTERVAL_MS};
use crate::gui::models::{LwConversation, MessageData};
use crate::gui::room_models::LwMemberEntry;

/// At most one `read` per conversation this often (the first at once, the newest at the
/// end of the interval).
const READ_EVERY: Duration = Duration::from_secs(1);

/// The widgets and timers of the window's read state.
#[derive(Debug)]
pub(super) struct ReadUi {
    /// "bob is typing…" or "Seen by bob", under the messages.
    status: gtk::Label,
    /// The "Send Read Receipts" toggle (`win.send-receipts`).
    receipts: gio::SimpleAction,
    /// When the user's typing was last told, per conversation (one notice per interval).
    typing_sent: RefCell<HashMap<String, Instant>>,
    /// A refresh of the status line is scheduled (a typing notice expires).
    refresh_pending: Cell<bool>,
}

impl LwClientWindow {
    /// Builds the status line, the receipts toggle of the main menu, and the typing
    /// notices sent from the composer.
    pub(super) fn setup_read_state(&self) {
        let imp = self.imp();
        let status = gtk::Label::builder()
            .xalign(0.0)
            .visible(false)
            .ellipsize(gtk::pango::EllipsizeMode::End)
            .css_classes(["typing-label", "dim-label", "caption"])
            .build();
        let composer = imp.composer.get();
        if let Some(parent) = composer.parent() {
            status.insert_before(&parent, Some(&composer));
        }

        let receipts = gio::SimpleAction::new_stateful("send-receipts", None, &true.to_variant());
        receipts.connect_activate(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |a, _| {
                let on = !a.state().and_then(|s| s.get::<bool>()).unwrap_or(true);
                // Shown at once; the server's `receipts` answer confirms it.
                a.set_state(&on.to_variant());
                win.send_command(Command::Receipts { on });
            }
        ));
        self.add_action(&receipts);
        // The toggle is an item of the main menu (ui/client_window.ui).

        composer.set_mention_source(glib::clone!(
            #[weak(rename_to = win)]
            self,
            #[upgrade_or_default]
            move || win.mention_candidates()
        ));
        composer.text_buffer().connect_changed(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |b| {
                if b.char_count() > 0 {
                    win.user_typed();
                }
            }
        ));
        imp.read_ui.replace(Some(ReadUi {
            status,
            receipts,
            typing_sent: RefCell::new(HashMap::new()),
            refresh_pending: Cell::new(false),
        }));
    }

    /// What a read-state or typing event does to the window.
    pub(super) fn handle_read_event(&self, e: Event) {
        match e {
            Event::Read { conv, upto } => {
                if let Some(c) = self.conversation(&conv) {
                    c.advance_read(upto);
                    if self.is_shown_and_active(&c) {
                        self.mark_read(&c);
                    } else {
                        c.recount_unread();
                    }
                }
            }
            Event::Seen { conv, user, upto } => {
                if let Some(c) = self.conversation(&conv) {
                    c.set_seen(&user, upto);
                }
                self.refresh_status();
            }
            Event::SeenBy { conv, members } => {
                if let Some(c) = self.conversation(&conv) {
                    for m in members {
                        c.set_seen(&m.user, m.upto);
                    }
                }
                self.refresh_status();
            }
            Event::Typing { conv, user } => {
                self.conversation_for(&conv).typing_started(&user);
                self.refresh_status();
            }
            Event::Receipts { on } => {
                if let Some(ui) = self.imp().read_ui.borrow().as_ref() {
                    ui.receipts.set_state(&on.to_variant());
                }
                if !on {
                    // Off: no one's receipts are shown either.
                    for c in self.conversation_list() {
                        c.clear_seen();
                    }
                }
                self.refresh_status();
            }
            _ => {}
        }
    }

    /// The conversation just shown: mark it read, ask where the others have read (for
    /// "Seen by") and, in a room, who its members are (for `@` completion).
    pub(super) fn conversation_shown(&self, c: &LwConversation) {
        self.mark_read(c);
        if self.is_online() && self.receipts_on() && has_receipts(c) {
            self.send_command(Command::SeenBy { conv: c.name() });
        }
        if c.is_room() && !c.is_general() && !c.is_read_only() {
            self.send_command(Command::Members { room: c.name() });
        }
        self.refresh_status();
    }

    /// Messages from others arrived in `c`: they are done typing; shown, `c` is read at
    /// once, otherwise its mentions count up (beside the unread count).
    pub(super) fn messages_arrived(
        &self,
        c: &LwConversation,
        incoming: &[MessageData],
        visible: bool,
    ) {
        for m in incoming {
            c.typing_done(&m.from);
        }
        if visible {
            self.mark_read(c);
        } else {
            let mentions = incoming.iter().filter(|m| m.mention).count() as u32;
            c.set_mentions(c.mentions() + mentions);
        }
        self.refresh_status();
    }

    /// Clears the counts of `c` and moves the read marker to the newest message shown,
    /// telling the server (and so the user's other devices) when it moved.
    pub(super) fn mark_read(&self, c: &LwConversation) {
        c.set_unread(0);
        c.set_mentions(0);
        let Some(last) = c.last_message_seq() else {
            return;
        };
        if self.is_online() && c.advance_read(last) && c.read_send_now() {
            self.send_read(c);
        }
    }

    /// Tells the server `c`'s read marker, then holds further ones for [`READ_EVERY`]:
    /// a busy room open on every member's screen would otherwise send one `read` (a store
    /// write and a fan-out) per message per member. The newest marker goes out at the end.
    fn send_read(&self, c: &LwConversation) {
        if let Some(upto) = c.read_upto()
            && self.is_online()
        {
            self.send_command(Command::Read {
                conv: c.name(),
                upto: Some(upto),
            });
        }
        glib::timeout_add_local_once(
            READ_EVERY,
            glib::clone!(
                #[weak(rename_to = win)]
                self,
                #[weak]
                c,
                move || {
                    if c.read_throttle_ended() {
                        win.send_read(&c);
                    }
                }
            ),
        );
    }

    /// The user typed in the composer: tell the conversation shown, at most once per
    /// interval (the server would drop the rest anyway).
    fn user_typed(&self) {
        let Some(c) = self.current() else { return };
        if !self.is_online() || c.is_read_only() {
            return;
        }
        let name = c.name();
        let now = Instant::now();
        let due = {
            let ui = self.imp().read_ui.borrow();
            let Some(ui) = ui.as_ref() else { return };
            let mut sent = ui.typing_sent.borrow_mut();
            let interval = Duration::from_millis(TYPING_INTERVAL_MS);
            let due = sent
                .get(&name)
                .is_none_or(|at| now.duration_since(*at) >= interval);
            if due {
                sent.insert(name.clone(), now);
            }
            due
        };
        if due {
            self.send_command(Command::Typing { conv: name });
        }
    }

    /// Shows who is typing in the conversation shown, else who has seen the user's newest
    /// message there; looks again when the oldest typing notice expires.
    pub(super) fn refresh_status(&self) {
        let imp = self.imp();
        let ui = imp.read_ui.borrow();
        let Some(ui) = ui.as_ref() else { return };
        let Some(c) = self.current() else {
            ui.status.set_visible(false);
            return;
        };
        let mut text = c.typing_text();
        if text.is_empty() && self.receipts_on() {
            text = c.seen_text();
        }
        ui.status.set_text(&text);
        ui.status.set_visible(!text.is_empty());
        if let Some(wait) = c.typing_expires_in()
            && !ui.refresh_pending.replace(true)
        {
            let wait = wait.min(TYPING_SHOWN) + Duration::from_millis(50);
            glib::timeout_add_local_once(
                wait,
                glib::clone!(
                    #[weak(rename_to = win)]
                    self,
                    move || {
                        if let Some(ui) = win.imp().read_ui.borrow().as_ref() {
                            ui.refresh_pending.set(false);
                        }
                        win.refresh_status();
                    }
                ),
            );
        }
    }

    /// The text of the line under the messages ("bob is typing…", "Seen by bob"), or ""
    /// when hidden (for tests).
    pub fn status_text(&self) -> String {
        self.imp()
            .read_ui
            .borrow()
            .as_ref()
            .filter(|ui| ui.status.is_visible())
            .map(|ui| ui.status.text().to_string())
            .unwrap_or_default()
    }

    /// The composer (tests type into it and complete `@` names).
    pub fn composer(&self) -> super::composer::LwComposer {
        self.imp().composer.get()
    }

    /// Whether "Send Read Receipts" is on.
    pub fn receipts_on(&self) -> bool {
        self.imp()
            .read_ui
            .borrow()
            .as_ref()
            .and_then(|ui| ui.receipts.state())
            .and_then(|s| s.get::<bool>())
            .unwrap_or(true)
    }

    /// Sets the "Send Read Receipts" toggle without telling the server (an account shown
    /// again: the server has its setting already).
    pub(super) fn set_receipts_state(&self, on: bool) {
        if let Some(ui) = self.imp().read_ui.borrow().as_ref() {
            ui.receipts.set_state(&on.to_variant());
        }
    }

    /// The names `@` completes in the conversation shown: the peer of a private
    /// conversation, a room's members (as its header last listed them), or everyone online
    /// in `#general`; the user's own name left out.
    pub(super) fn mention_candidates(&self) -> Vec<String> {
        let me = self.me().unwrap_or_default();
        let Some(c) = self.current() else {
            return Vec::new();
        };
        let names: Vec<String> = if let Some(peer) = c.peer() {
            vec![peer]
        } else if c.is_general() {
            self.online_users()
        } else {
            let members = self.imp().room_header.members();
            (0..members.n_items())
                .filter_map(|i| members.item(i).and_downcast::<LwMemberEntry>())
                .map(|m| m.data().user)
                .collect()
        };
        names
            .into_iter()
            .filter(|n| !n.eq_ignore_ascii_case(&me))
            .collect()
    }

    fn is_shown_and_active(&self, c: &LwConversation) -> bool {
        self.current().as_ref() == Some(c) && self.is_active()
    }

    fn conversation_list(&self) -> Vec<LwConversation> {
        let store = self.conversations();
        (0..store.n_items())
            .filter_map(|i| store.item(i).and_downcast::<LwConversation>())
            .collect()
    }
}

/// Whether `c` has seen receipts: private conversations and rooms of at most
/// [`MAX_RECEIPT_MEMBERS`] (0 members: not known yet, asked anyway; the server decides).
fn has_receipts(c: &LwConversation) -> bool {
    c.is_private()
        || (c.is_room() && !c.is_general() && c.members() as usize <= MAX_RECEIPT_MEMBERS)
}
