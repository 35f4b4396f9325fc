//! Which conversations exist and which one is shown, who is online, and starting a
//! private chat.

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use super::LwClientWindow;
use crate::app::client::Command;
use crate::app::ids::{GENERAL, UserName};
use crate::gui::i18n::{gettext, gettext_with};
use crate::gui::models::LwConversation;

impl LwClientWindow {
    /// The sidebar's conversations (a `gio::ListStore` of [`LwConversation`]).
    pub fn conversations(&self) -> gio::ListStore {
        self.imp()
            .conversations
            .borrow()
            .clone()
            .expect("created in setup()")
    }

    /// The conversation named `#general` or `@peer` (case-insensitive), if listed.
    pub fn conversation(&self, name: &str) -> Option<LwConversation> {
        let convs = self.conversations();
        (0..convs.n_items())
            .filter_map(|i| convs.item(i).and_downcast::<LwConversation>())
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// The conversation shown.
    pub fn current(&self) -> Option<LwConversation> {
        self.imp().current.borrow().clone()
    }

    /// Replaces the set of online users (at login, on reconnect, on `who`).
    pub(super) fn set_online_users(&self, users: Vec<String>) {
        {
            let mut set = self.imp().online.borrow_mut();
            set.clear();
            for u in users {
                set.insert(u.to_ascii_lowercase(), u);
            }
        }
        self.refresh_presence();
    }

    /// Shows who is online: the sidebar's dots and the new-chat popover's list.
    pub(super) fn refresh_presence(&self) {
        let imp = self.imp();
        let online = imp.online.borrow().clone();
        let convs = self.conversations();
        for i in 0..convs.n_items() {
            if let Some(c) = convs.item(i).and_downcast::<LwConversation>()
                && let Some(peer) = c.peer()
            {
                c.set_online(online.contains_key(&peer.to_ascii_lowercase()));
            }
        }
        // The "online now" list in the new-chat popover.
        while let Some(child) = imp.online_list.first_child() {
            imp.online_list.remove(&child);
        }
        let me = self.me().unwrap_or_default().to_ascii_lowercase();
        let others: Vec<String> = online
            .iter()
            .filter(|(k, _)| **k != me)
            .map(|(_, v)| v.clone())
            .collect();
        imp.online_heading.set_visible(!others.is_empty());
        imp.online_list.set_visible(!others.is_empty());
        for name in others {
            let button = gtk::Button::builder()
                .label(name.as_str())
                .css_classes(["flat"])
                .build();
            button.connect_clicked(glib::clone!(
                #[weak(rename_to = win)]
                self,
                move |_| win.start_private_chat(&name)
            ));
            imp.online_list.append(&button);
        }
    }

    /// The conversation named `name`, created (and listed) if new. Rooms are kept first
    /// (`#general`, then by name) and private chats after them, in the order they came, so
    /// the sidebar's two groups are two runs of one list.
    pub(super) fn conversation_for(&self, name: &str) -> LwConversation {
        if let Some(c) = self.conversation(name) {
            return c;
        }
        let c = LwConversation::new(name);
        let convs = self.conversations();
        if let Some(peer) = c.peer() {
            c.set_online(
                self.imp()
                    .online
                    .borrow()
                    .contains_key(&peer.to_ascii_lowercase()),
            );
            convs.append(&c);
        } else {
            let sort_key = |c: &LwConversation| (!c.is_general(), c.name().to_ascii_lowercase());
            let key = sort_key(&c);
            let pos = (0..convs.n_items())
                .find(|&i| {
                    convs
                        .item(i)
                        .and_downcast::<LwConversation>()
                        .is_none_or(|o| o.is_private() || sort_key(&o) > key)
                })
                .unwrap_or(convs.n_items());
            convs.insert(pos, &c);
        }
        c
    }

    pub(super) fn select_conversation(&self, conv: &LwConversation) {
        self.imp().sidebar.select(conv);
    }

    /// Opens the conversation named `#general` or `@peer` (creating it if needed).
    pub fn open_conversation(&self, name: &str) -> LwConversation {
        let c = self.conversation_for(name);
        self.select_conversation(&c);
        c
    }

    /// Opens a private chat with `name` (the "+" popover does this).
    pub fn start_private_chat(&self, name: &str) {
        let name = name.trim().trim_start_matches('@');
        if name.is_empty() {
            return;
        }
        if let Err(e) = UserName::parse(name) {
            self.show_toast(&gettext_with(
                "“{name}” is not a valid username: {reason}.",
                &[("name", &name), ("reason", &e)],
            ));
            return;
        }
        if self.me().is_some_and(|me| me.eq_ignore_ascii_case(name)) {
            self.show_toast(&gettext("That is you. Pick someone else to chat with."));
            return;
        }
        self.imp().new_chat_popover.popdown();
        self.imp().new_chat_entry.set_text("");
        let conv = format!("@{name}");
        if self.conversation(&conv).is_none() {
            self.imp().new_chat.replace(Some(conv.clone()));
        }
        self.open_conversation(&conv);
    }

    /// The server said the user of a chat just started by name does not exist: take the
    /// empty conversation out of the sidebar again.
    pub(super) fn drop_unconfirmed_chat(&self) {
        let Some(name) = self.imp().new_chat.take() else {
            return;
        };
        let Some(conv) = self.conversation(&name).filter(|c| c.is_empty()) else {
            return;
        };
        let convs = self.conversations();
        if let Some(pos) = convs.find(&conv) {
            convs.remove(pos);
        }
        if let Some(general) = self.conversation(GENERAL) {
            self.select_conversation(&general);
        }
    }

    pub(super) fn show_conversation(&self, conv: &LwConversation) {
        let imp = self.imp();
        if imp.current.borrow().as_ref() != Some(conv) {
            // A reply or an edit belongs to the conversation it was started in.
            imp.composer.cancel_mode();
        }
        imp.current.replace(Some(conv.clone()));
        conv.set_unread(0);
        imp.message_list.set_conversation(Some(conv));
        imp.room_header.set_conversation(Some(conv));
        self.show_privacy(Some(conv));
        imp.composer
            .set_read_only(conv.is_read_only().then(|| conv.removed()).as_deref());
        imp.title_label.set_text(&conv.name());
        self.conversation_shown(conv);
        self.refresh_accounts();
        let own_history = conv.is_private() || (conv.is_room() && !conv.is_general());
        if own_history && !conv.is_read_only() && conv.is_empty() && conv.begin_history_request() {
            self.send_command(Command::History {
                conv: conv.name(),
                before: None,
                limit: None,
            });
        }
    }

    /// The texts of the message rows the list view has built right now (only those near
    /// the visible part exist): what a person sees, for tests.
    pub fn rendered_messages(&self) -> Vec<String> {
        self.imp().message_list.rendered_messages()
    }

    /// Scrolls the message list to a fraction of its height (0 top, 1 bottom).
    pub fn scroll_messages_to(&self, fraction: f64) {
        self.imp().message_list.scroll_to(fraction);
    }

    pub(super) fn load_older(&self) {
        let Some(conv) = self.current() else { return };
        if !conv.more_history() || conv.is_empty() || !self.is_online() {
            return;
        }
        if conv.begin_history_request() {
            self.send_command(Command::History {
                conv: conv.name(),
                before: conv.first_seq(),
                limit: Some(200),
            });
        }
    }

    // ----- composing -----

    /// Sends `text` to the conversation shown (the composer's `send`); whether it went.
    pub(super) fn send_text(&self, text: String) -> bool {
        if !self.is_online() {
            return false;
        }
        let Some(conv) = self.current() else {
            return false;
        };
        self.send_command(self.compose_command(&conv, text));
        true
    }

    /// Types `text` into the composer and sends it to the current conversation, as Enter
    /// would.
    pub fn compose_and_send(&self, text: &str) {
        self.imp().composer.type_and_send(text);
    }
}
