//! `LwClientWindow`: the connect screen and the chat.
//!
//! The window is split by concern, each part with its template mirrored under
//! `ui/client_window/`:
//!
//! - [`connect_page`]: `LwConnectPage`, the login form and the trust card.
//! - [`sidebar`]: `LwSidebar`, the conversation list (rooms, direct messages,
//!   invitations).
//! - [`room_header`]: `LwRoomHeader`, the room's name, topic, members panel and actions.
//! - [`new_room_dialog`]: `LwNewRoomDialog`, the New Room dialog.
//! - [`room_directory`]: `LwRoomDirectory`, browse and join public rooms.
//! - [`message_list`]: `LwMessageList`, the messages of the conversation shown.
//! - [`composer`]: `LwComposer`, the text field, attach button, transfer progress and the
//!   reply / edit bar.
//! - `session`: one login, from connect to logout, and the loop that applies the client's
//!   events to the models.
//! - `conversations`: which conversations exist, which one is shown, presence.
//! - `files`: sending and saving files (the dialogs).
//! - `edits`: edit, reply and react (the message actions, the composer's modes, the
//!   `edited` and `reaction` events).
//! - `jump`: `win.jump-to-message (s conv, x id)`, a message shown in context.
//! - [`rooms`]: what room events do, and the room commands the user gives.
//! - [`search_panel`]: `LwSearchPanel`, the search bar and its results; `search` sends
//!   searches, shows answers and jumps to a picked message.
//! - [`user_facing`]: the words a user reads for each error.
//! - `layout`: the adaptive layout (an `AdwLeaflet`: sidebar and conversation side by
//!   side, or as two pages below ~600 px) and the toasts.
//! - `notify`: desktop notifications, Mute, and opening a conversation from a notification.
//! - `preferences`: the Preferences window (style, notifications).
//! - [`keyboard`]: the window's actions and their keyboard shortcuts.
//! - `accounts`: several accounts in one window (the switcher, Add Account…, the
//!   accounts in the background).
//!
//! The window owns a [`ClientHandle`](crate::transport::client::ClientHandle) while logged
//! in and drains the client's events in one `glib::spawn_future_local` loop. Everything
//! the user sees is kept in [`LwConversation`] models; the widgets only show them. The
//! child widgets never talk to the client: they emit signals that the window's template
//! routes to its handlers.

mod accounts;
pub mod composer;
pub mod connect_page;
mod conversations;
mod e2e;
mod edits;
mod files;
mod imp;
mod jump;
pub mod keyboard;
mod layout;
pub mod message_list;
pub mod new_room_dialog;
mod notify;
mod preferences;
mod read_state;
pub mod room_directory;
pub mod room_header;
pub mod rooms;
mod search;
pub mod search_panel;
mod session;
pub mod sidebar;
pub mod user_facing;

use std::path::PathBuf;

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use crate::app::client::Command;
use crate::app::protocol::DeleteScope;
use crate::gui::models::LwConversation;
use crate::gui::preferences::Preferences;
use crate::gui::settings::RememberedLogin;
use crate::paths;
use crate::transport::client::Trust;

use connect_page::LoginForm;

pub use accounts::{AccountSummary, account_key};

glib::wrapper! {
    /// The chat client window.
    pub struct LwClientWindow(ObjectSubclass<imp::LwClientWindow>)
        @extends adw::ApplicationWindow, gtk::ApplicationWindow, gtk::Window, gtk::Widget,
        @implements gio::ActionGroup, gio::ActionMap, gtk::Buildable,
                    gtk::ConstraintTarget, gtk::Native, gtk::Root, gtk::ShortcutManager;
}

impl LwClientWindow {
    /// A client window; pins and the remembered login live in `config_dir`. With the
    /// default config dir, the sync state and identity key live where `livewire chat`
    /// keeps them (`~/.local/share/livewire/client`); with any other, in its `state`
    /// subdirectory, so a custom config dir is a self-contained profile.
    pub fn new(app: &impl IsA<gtk::Application>, config_dir: PathBuf) -> Self {
        let state_dir = if config_dir == paths::config_dir() {
            paths::client_state_dir()
        } else {
            config_dir.join("state")
        };
        Self::with_state_dir(app, config_dir, state_dir)
    }

    /// A client window with explicit config and state directories.
    pub fn with_state_dir(
        app: &impl IsA<gtk::Application>,
        config_dir: PathBuf,
        state_dir: PathBuf,
    ) -> Self {
        let win: Self = glib::Object::builder().property("application", app).build();
        let prefs = Preferences::load(&config_dir);
        prefs.style.apply();
        win.imp().prefs.replace(prefs);
        win.imp().config_dir.replace(config_dir.clone());
        win.imp().state_dir.replace(state_dir);
        if let Some(r) = RememberedLogin::load(&config_dir) {
            win.imp()
                .connect_page
                .set_remembered(&r.host, r.port, &r.user);
        }
        win.imp().connect_page.focus_form();
        win
    }

    fn setup(&self) {
        let convs = gio::ListStore::new::<LwConversation>();
        self.imp().conversations.replace(Some(convs.clone()));
        self.imp().sidebar.bind_model(&convs);
        let invitations = gio::ListStore::new::<crate::gui::room_models::LwInvitation>();
        self.imp().invitations.replace(Some(invitations.clone()));
        self.imp().sidebar.bind_invitations(&invitations);
        self.add_action_entries(rooms::moderation_actions());
        self.add_action_entries(edits::edit_actions());
        self.add_action_entries([jump::jump_action()]);
        self.setup_search();
        self.add_action_entries(keyboard::window_actions());
        self.add_action_entries([Self::mute_action()]);
        self.add_action_entries([Self::verify_action()]);
        self.add_message_menu_keys();
        self.add_shortcuts_window();

        // Actions used by the message rows (context menu, download button).
        self.add_action_entries([
            message_action("delete-for-me", |win, id| {
                win.delete_message(id, DeleteScope::Me)
            }),
            message_action("delete-for-everyone", |win, id| {
                win.delete_message(id, DeleteScope::Everyone)
            }),
            message_action("download-file", |win, id| win.choose_download(id)),
            gio::ActionEntry::builder("copy-text")
                .parameter_type(Some(glib::VariantTy::STRING))
                .activate(|win: &Self, _, p| {
                    if let Some(text) = p.and_then(|p| p.get::<String>()) {
                        win.clipboard().set_text(&text);
                    }
                })
                .build(),
        ]);
        self.connect_is_active_notify(|win| {
            if win.is_active()
                && let Some(c) = win.current()
            {
                c.set_unread(0);
                win.mark_read(&c);
            }
        });
        self.setup_read_state();
        self.setup_accounts();
        self.set_chat_visible(false);
    }

    // ----- state accessors (also used by tests) -----

    /// Logged in (the chat is shown), connected or reconnecting.
    pub fn is_logged_in(&self) -> bool {
        self.imp()
            .session
            .borrow()
            .as_ref()
            .is_some_and(|s| s.user.is_some())
    }

    /// Connected right now.
    pub fn is_online(&self) -> bool {
        self.imp()
            .session
            .borrow()
            .as_ref()
            .is_some_and(|s| s.online)
    }

    /// The reconnect banner is shown.
    pub fn banner_visible(&self) -> bool {
        self.imp().banner.reveals_child()
    }

    /// The text of the reconnect banner.
    pub fn banner_text(&self) -> String {
        self.imp().banner_label.text().to_string()
    }

    /// The composer accepts input.
    pub fn composer_enabled(&self) -> bool {
        self.imp().composer.is_enabled()
    }

    /// The last error shown to the user, in words.
    pub fn last_error(&self) -> Option<String> {
        self.imp().last_error.borrow().clone()
    }

    /// How many `sync` barriers were answered.
    pub fn syncs(&self) -> u64 {
        self.imp().syncs.get()
    }

    /// Online users (display names).
    pub fn online_users(&self) -> Vec<String> {
        self.imp().online.borrow().values().cloned().collect()
    }

    /// The signed-in user's name, once the server said it.
    fn me(&self) -> Option<String> {
        self.imp()
            .session
            .borrow()
            .as_ref()
            .and_then(|s| s.user.clone())
    }

    /// Sends a command to the client driver (no-op when not logged in).
    pub fn send_command(&self, cmd: Command) {
        if let Some(s) = self.imp().session.borrow().as_ref() {
            s.handle.send(cmd);
        }
    }

    /// Asks for a `sync` barrier; [`Self::syncs`] goes up when it is answered.
    pub fn request_sync(&self) {
        self.send_command(Command::Sync);
    }

    // ----- connect screen -----

    /// Fills the form and connects (the demo and tests use this).
    /// With an account shown, the new one is added beside it (as *Add Account…* does).
    pub fn connect_to(&self, host: &str, port: u16, user: &str, password: &str, trust: Trust) {
        self.add_account();
        self.set_form(host, port, user, password);
        let form = LoginForm {
            host: host.to_owned(),
            port,
            user: user.to_owned(),
            password: password.to_owned(),
        };
        if self.show_if_signed_in(&form.user, &form.server()) {
            return;
        }
        self.start_session(form, trust);
    }

    /// Connects with the form as typed (the Connect button, Enter in the form).
    fn connect_from_form(&self) {
        if self.imp().session.borrow().is_some() {
            return;
        }
        match self.imp().connect_page.read_form() {
            Ok(form) if self.show_if_signed_in(&form.user, &form.server()) => {}
            Ok(form) => self.start_session(form, Trust::PinnedOnly),
            Err(e) => self.show_connect_error(&e, false),
        }
    }

    fn show_connect_error(&self, text: &str, severe: bool) {
        self.imp().last_error.replace(Some(text.to_owned()));
        self.imp().connect_page.show_error(text, severe);
    }

    /// Fills the connect form (the password too) without connecting.
    pub fn set_form(&self, host: &str, port: u16, user: &str, password: &str) {
        self.imp().connect_page.set_form(host, port, user, password);
    }

    /// The Connect button.
    pub fn connect_button(&self) -> gtk::Button {
        self.imp().connect_page.connect_button()
    }

    /// The fingerprint the "trust this server?" card shows, if it is shown.
    pub fn trust_prompt(&self) -> Option<String> {
        self.imp().connect_page.trust_prompt()
    }

    /// Trusts the server the card shows and connects (its "Trust and Connect" button).
    pub fn accept_trust(&self) {
        let Some((form, fp)) = self.imp().pending_trust.take() else {
            return;
        };
        self.imp().connect_page.hide_trust();
        self.start_session(form, Trust::Fingerprint(fp));
    }

    // ----- the window's chrome -----

    /// Shows the chat (signed in) or the connect screen.
    fn set_chat_visible(&self, chat: bool) {
        let imp = self.imp();
        imp.stack
            .set_visible_child_name(if chat { "chat" } else { "connect" });
        if !chat {
            imp.search_panel.reset();
        }
        imp.subtitle_label.set_visible(chat);
        if let Some(a) = self
            .lookup_action("logout")
            .and_downcast::<gio::SimpleAction>()
        {
            a.set_enabled(chat);
        }
        self.sync_fold();
        if !chat {
            imp.title_label.set_text("LiveWire");
            self.set_title(Some("LiveWire"));
        }
    }

    /// Deletes a message (the context menu's actions).
    pub fn delete_message(&self, id: u64, scope: DeleteScope) {
        self.send_command(Command::Delete { id, scope });
    }
}

/// A window action whose parameter is a message id.
fn message_action(name: &str, run: fn(&LwClientWindow, u64)) -> gio::ActionEntry<LwClientWindow> {
    gio::ActionEntry::builder(name)
        .parameter_type(Some(glib::VariantTy::UINT64))
        .activate(move |win: &LwClientWindow, _, p| {
            if let Some(id) = p.and_then(|p| p.get::<u64>()) {
                run(win, id);
            }
        })
        .build()
}
