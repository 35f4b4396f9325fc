//! Edits, replies and reactions in the window: the message actions (`win.reply-to`,
//! `win.edit-message`, `win.toggle-reaction`), the command the composer's text becomes
//! in each mode, and the `edited` / `reaction` events applied to the models.

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use super::LwClientWindow;
use super::composer::ComposeMode;
use crate::app::client::{Command, Event, ReactionCount};
use crate::gui::message_row::quote_text;
use crate::gui::models::{LwConversation, MessageData};

/// The window actions of edits, replies and reactions (the message rows use them).
pub(super) fn edit_actions() -> Vec<gio::ActionEntry<LwClientWindow>> {
    vec![
        gio::ActionEntry::builder("reply-to")
            .parameter_type(Some(glib::VariantTy::UINT64))
            .activate(|win: &LwClientWindow, _, p| {
                if let Some(id) = p.and_then(|p| p.get::<u64>()) {
                    win.start_reply(id);
                }
            })
            .build(),
        gio::ActionEntry::builder("edit-message")
            .parameter_type(Some(glib::VariantTy::UINT64))
            .activate(|win: &LwClientWindow, _, p| {
                if let Some(id) = p.and_then(|p| p.get::<u64>()) {
                    win.start_edit(id);
                }
            })
            .build(),
        gio::ActionEntry::builder("toggle-reaction")
            .parameter_type(Some(&glib::VariantType::new("(ts)").expect("a valid type")))
            .activate(|win: &LwClientWindow, _, p| {
                if let Some((id, emoji)) = p.and_then(|p| p.get::<(u64, String)>()) {
                    win.toggle_reaction(id, &emoji);
                }
            })
            .build(),
    ]
}

impl LwClientWindow {
    /// "Reply": the composer quotes message `id` of the conversation shown.
    pub fn start_reply(&self, id: u64) {
        let Some(conv) = self.current() else { return };
        let original = conv.message(id);
        if original.is_none() {
            return;
        }
        let quote = quote_text(original.as_ref());
        let quote = quote.trim_start_matches("↩ ");
        self.imp().composer.start_reply(id, quote);
    }

    /// "Edit": your message's text goes into the composer; Enter saves, Escape cancels.
    pub fn start_edit(&self, id: u64) {
        let Some(text) = self
            .current()
            .and_then(|c| c.message(id))
            .and_then(|m| m.text())
        else {
            return;
        };
        self.imp().composer.start_edit(id, &text);
    }

    /// Clicking a reaction (or picking one in "React"): takes yours back if you gave it,
    /// adds it otherwise.
    pub fn toggle_reaction(&self, id: u64, emoji: &str) {
        let me = self.me().unwrap_or_default();
        let mine = self.current().and_then(|c| c.message(id)).is_some_and(|m| {
            m.data()
                .reactions
                .iter()
                .any(|r| r.emoji == emoji && r.users.iter().any(|u| u.eq_ignore_ascii_case(&me)))
        });
        let (id, emoji) = (id, emoji.to_owned());
        self.send_command(match mine {
            true => Command::Unreact { id, emoji },
            false => Command::React { id, emoji },
        });
    }

    /// The command the composer's text becomes in its current mode.
    pub(super) fn compose_command(&self, conv: &LwConversation, text: String) -> Command {
        match self.imp().composer.mode() {
            ComposeMode::Edit { id } => Command::Edit { id, text },
            ComposeMode::Reply { id } => Command::Send {
                to: conv.name(),
                text,
                reply_to: Some(id),
            },
            ComposeMode::Message => Command::Send {
                to: conv.name(),
                text,
                reply_to: None,
            },
        }
    }

    /// The message rows on screen as `(text, quote, reactions)` (for tests).
    pub fn rendered_rows(&self) -> Vec<(String, Option<String>, Vec<String>)> {
        self.imp().message_list.rendered_rows()
    }

    /// An `edited` or `reaction` event.
    pub(super) fn handle_edit_event(&self, e: Event) {
        match e {
            Event::Edited { conv, id, text } => {
                if let Some(c) = self.conversation(&conv) {
                    c.update_message(id, |m| {
                        // A deleted message stays deleted (the delete came after the edit).
                        if m.text.is_some() {
                            m.text = Some(text);
                            m.edited = true;
                        }
                    });
                    c.refresh_replies_to(id);
                }
            }
            Event::Reaction {
                conv,
                id,
                user,
                emoji,
                on,
            } => {
                if let Some(c) = self.conversation(&conv) {
                    c.update_message(id, |m| apply_reaction(&mut m.reactions, &user, &emoji, on));
                }
            }
            _ => {}
        }
    }
}

/// Adds or removes `user`'s `emoji` in a message's reaction list (kept sorted by emoji).
fn apply_reaction(list: &mut Vec<ReactionCount>, user: &str, emoji: &str, on: bool) {
    let pos = list.iter().position(|r| r.emoji == emoji);
    match (pos, on) {
        (Some(i), true) => {
            let r = &mut list[i];
            if !r.users.iter().any(|u| u == user) {
                r.users.push(user.to_owned());
                r.users.sort();
                r.count = r.users.len();
            }
        }
        (None, true) => {
            list.push(ReactionCount {
                emoji: emoji.to_owned(),
                count: 1,
                users: vec![user.to_owned()],
            });
            list.sort_by(|a, b| a.emoji.cmp(&b.emoji));
        }
        (Some(i), false) => {
            list[i].users.retain(|u| u != user);
            list[i].count = list[i].users.len();
            if list[i].count == 0 {
                list.remove(i);
            }
        }
        (None, false) => {}
    }
}

impl LwConversation {
    /// Changes a shown message's data and tells the views; whether it was shown.
    pub fn update_message(&self, id: u64, f: impl FnOnce(&mut MessageData)) -> bool {
        let Some(msg) = self.message(id) else {
            return false;
        };
        f(&mut msg.imp().data.borrow_mut());
        let store = self.messages();
        if let Some(pos) = store.find(&msg) {
            store.items_changed(pos, 1, 1);
        }
        true
    }

    /// Rebinds the replies to message `id`, so their quotes show its current text.
    pub fn refresh_replies_to(&self, id: u64) {
        let store = self.messages();
        for pos in 0..store.n_items() {
            let is_reply = store
                .item(pos)
                .and_downcast::<crate::gui::models::LwMessage>()
                .is_some_and(|m| m.data().reply_to == Some(id));
            if is_reply {
                store.items_changed(pos, 1, 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_add_and_remove_per_user() {
        let mut list = Vec::new();
        apply_reaction(&mut list, "bob", "👍", true);
        apply_reaction(&mut list, "alice", "👍", true);
        apply_reaction(&mut list, "alice", "👍", true);
        apply_reaction(&mut list, "alice", "🎉", true);
        let thumbs = list.iter().find(|r| r.emoji == "👍").unwrap();
        assert_eq!(thumbs.users, vec!["alice", "bob"]);
        assert_eq!(thumbs.count, 2);
        assert_eq!(list.len(), 2);
        apply_reaction(&mut list, "bob", "👍", false);
        apply_reaction(&mut list, "alice", "🎉", false);
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].emoji.as_str(), list[0].count), ("👍", 1));
    }
}
