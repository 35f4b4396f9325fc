//! `win.jump-to-message (s conv, x id)`: shows a message in context. Switches to the
//! conversation, pages back through its history until the message is loaded, scrolls to it
//! and highlights it for a moment. A reply's quote uses it; so may anything else that
//! points at a message (search results).

use std::time::Duration;

use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use super::LwClientWindow;
use crate::app::client::Command;

/// Give up after this many checks (100 ms apart): the history never brought it.
const MAX_TRIES: u32 = 300;

/// The `jump-to-message` window action; its parameter is `(s conv, x id)`.
pub(super) fn jump_action() -> gio::ActionEntry<LwClientWindow> {
    gio::ActionEntry::builder("jump-to-message")
        .parameter_type(Some(&glib::VariantType::new("(sx)").expect("a valid type")))
        .activate(|win: &LwClientWindow, _, p| {
            if let Some((conv, id)) = p.and_then(|p| p.get::<(String, i64)>()) {
                win.jump_to_message(&conv, id as u64);
            }
        })
        .build()
}

impl LwClientWindow {
    /// Shows message `id` of conversation `conv` (`#general`, `#room` or `@peer`) in context,
    /// loading older history as needed.
    pub fn jump_to_message(&self, conv: &str, id: u64) {
        let Some(c) = self.conversation(conv) else {
            self.show_toast(&crate::gui::i18n::gettext_with(
                "{conv} is not one of your conversations.",
                &[("conv", &conv)],
            ));
            return;
        };
        if self.current().as_ref() != Some(&c) {
            self.select_conversation(&c);
            self.show_conversation(&c);
        }
        let mut tries = 0;
        glib::timeout_add_local(
            Duration::from_millis(100),
            glib::clone!(
                #[weak(rename_to = win)]
                self,
                #[upgrade_or]
                glib::ControlFlow::Break,
                move || {
                    tries += 1;
                    if win.current().as_ref() != Some(&c) || tries > MAX_TRIES {
                        // The user moved on (or it never came): stop quietly.
                        return glib::ControlFlow::Break;
                    }
                    if win.imp().message_list.reveal_message(id) {
                        return glib::ControlFlow::Break;
                    }
                    if c.message(id).is_some() {
                        // Loaded, its row not built yet: the scroll moved towards it.
                        return glib::ControlFlow::Continue;
                    }
                    if !c.more_history() || !win.is_online() {
                        win.show_toast(&crate::gui::i18n::gettext(
                            "That message is not available any more.",
                        ));
                        return glib::ControlFlow::Break;
                    }
                    if c.begin_history_request() {
                        win.send_command(Command::History {
                            conv: c.name(),
                            before: c.first_seq(),
                            limit: Some(200),
                        });
                    }
                    glib::ControlFlow::Continue
                }
            ),
        );
    }
}
