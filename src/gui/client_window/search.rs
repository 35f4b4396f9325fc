//! Message search in the client window: the search button and Ctrl+F open the
//! [`LwSearchPanel`](super::search_panel::LwSearchPanel); its queries go to the client as
//! `search` commands (every conversation: the server's matches in `#general` and rooms,
//! this device's in private conversations), and its answer fills the list. Picking a
//! result activates `win.jump-to-message` with `(conversation, id)`, which scrolls to
//! the message and highlights it; where that action is missing, the conversation is
//! shown.

use gtk::gio;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use super::LwClientWindow;
use super::search_panel::LwSearchPanel;
use crate::app::client::{Command, SearchItem};

/// The action that shows a message in its conversation: parameter `(s conv, x id)`.
const JUMP_TO_MESSAGE: &str = "jump-to-message";

impl LwClientWindow {
    /// The `win.search` action and its Ctrl+F shortcut.
    pub(super) fn setup_search(&self) {
        self.add_action_entries([gio::ActionEntry::builder("search")
            .activate(|win: &Self, _, _| win.open_search())
            .build()]);
        let shortcuts = gtk::ShortcutController::new();
        shortcuts.set_scope(gtk::ShortcutScope::Global);
        shortcuts.add_shortcut(gtk::Shortcut::new(
            gtk::ShortcutTrigger::parse_string("<Control>f"),
            Some(gtk::NamedAction::new("win.search")),
        ));
        self.add_controller(shortcuts);
        let imp = self.imp();
        imp.search_button
            .bind_property("active", &imp.search_panel.bar(), "search-mode-enabled")
            .bidirectional()
            .sync_create()
            .build();
    }

    /// The search panel.
    pub fn search_panel(&self) -> LwSearchPanel {
        self.imp().search_panel.clone()
    }

    /// The header's search button.
    pub fn search_button(&self) -> gtk::ToggleButton {
        self.imp().search_button.clone()
    }

    /// Opens the search bar with its field focused (only while the chat is shown).
    pub fn open_search(&self) {
        if self.is_logged_in() {
            self.imp().search_panel.set_open(true);
        }
    }

    /// Sends a search of every conversation for `query`.
    pub(super) fn run_search(&self, query: &str) {
        if !self.is_online() {
            self.imp().search_panel.set_results(Vec::new());
            return;
        }
        self.send_command(Command::Search {
            query: query.to_owned(),
            conv: None,
            limit: None,
        });
    }

    /// Shows the answer to a search.
    pub(super) fn show_search_results(&self, results: Vec<SearchItem>) {
        self.imp().search_panel.set_results(results);
    }

    /// The user picked a result: jump to it, and close the bar.
    pub(super) fn open_search_result(&self, conv: &str, id: i64) {
        self.imp().search_panel.set_open(false);
        if self.lookup_action(JUMP_TO_MESSAGE).is_some() {
            let target = (conv, id).to_variant();
            ActionGroupExt::activate_action(self, JUMP_TO_MESSAGE, Some(&target));
            return;
        }
        // Without the jump action, at least the right conversation.
        let shown = self
            .conversation(conv)
            .unwrap_or_else(|| self.open_conversation(conv));
        self.select_conversation(&shown);
    }
}
