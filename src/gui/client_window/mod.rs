//! `LwClientWindow`: the connect screen and the chat.
//!
//! The window owns a [`ClientHandle`] while logged in and drains the client's events in
//! one `glib::spawn_future_local` loop ([`LwClientWindow::start_session`]). Everything
//! the user sees is kept in [`LwConversation`] models; the widgets only show them.

mod imp;

use std::path::PathBuf;

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gdk, gio, glib};
use gtk4 as gtk;

use crate::app::client::{Command, Event, SavedState};
use crate::app::ids::{ConvId, GENERAL, UserName};
use crate::app::protocol::{DeleteScope, ErrorCode};
use crate::cli;
use crate::gui::message_row::LwMessageRow;
use crate::gui::models::{LwConversation, LwMessage, MessageData};
use crate::gui::runtime;
use crate::gui::settings::RememberedLogin;
use crate::transport::client::{self, ClientEvent, ClientOptions, Fatal, Trust};

use imp::{LoginForm, Session};

/// Consecutive messages of one sender closer than this share one name label.
const GROUP_GAP_MS: u64 = 5 * 60 * 1000;

glib::wrapper! {
    /// The chat client window.
    pub struct LwClientWindow(ObjectSubclass<imp::LwClientWindow>)
        @extends gtk::ApplicationWindow, gtk::Window, gtk::Widget,
        @implements gio::ActionGroup, gio::ActionMap, gtk::Buildable,
                    gtk::ConstraintTarget, gtk::Native, gtk::Root, gtk::ShortcutManager;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Turns a server error into words for a person.
pub fn friendly_error(code: &str, message: &str) -> String {
    match code {
        "rate_limited" => "You are sending messages too fast. Wait a moment and try again.".into(),
        "too_large" => format!("That message is too long ({message})."),
        "unknown_user" => format!("There is no such user. ({message})"),
        "not_author" => "Only the author of a message can delete it for everyone.".into(),
        "delete_window_expired" => {
            "That message is too old to be deleted for everyone; you can still delete it for yourself."
                .into()
        }
        "not_found" => "That message no longer exists.".into(),
        "internal" => format!("The server had a problem and changed nothing: {message}"),
        _ => {
            let mut m = message.to_owned();
            if let Some(first) = m.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            m
        }
    }
}

/// Turns a fatal client error into words (and whether it is a security warning).
pub fn friendly_fatal(f: &Fatal) -> (String, bool) {
    match f {
        Fatal::LoginRefused(msg) => (
            format!(
                "The server refused to sign you in: {msg}. Check your username and password; a new username is registered with the password you give on its first sign-in."
            ),
            false,
        ),
        Fatal::UnknownServer {
            server,
            fingerprint,
        } => (
            format!("{server} is not a known server (certificate {fingerprint})."),
            false,
        ),
        Fatal::CertMismatch {
            server,
            expected,
            got,
            pin_file,
        } => (
            format!(
                "⚠ The identity of {server} has changed!\n\nSomeone may be intercepting your connection, so LiveWire did not connect.\n\nKnown fingerprint:\n{expected}\n\nPresented now:\n{got}\n\nIf the server's operator confirms the certificate really changed, remove the line for {server} from {pin_file} and connect again."
            ),
            true,
        ),
        Fatal::Connection(msg) => (
            format!(
                "Could not connect: {msg}.\nCheck the server address and port, and that the server is running."
            ),
            false,
        ),
        Fatal::Config(msg) => (format!("A local settings problem: {msg}."), false),
    }
}

impl LwClientWindow {
    /// A client window; pins and the remembered login live in `config_dir`. With the
    /// default config dir, the sync state and identity key live where `livewire chat`
    /// keeps them (`~/.local/share/livewire/client`); with any other, in its `state`
    /// subdirectory, so a custom config dir is a self-contained profile.
    pub fn new(app: &gtk::Application, config_dir: PathBuf) -> Self {
        let state_dir = if config_dir == cli::config_dir() {
            cli::data_dir().join("client")
        } else {
            config_dir.join("state")
        };
        Self::with_state_dir(app, config_dir, state_dir)
    }

    /// A client window with explicit config and state directories.
    pub fn with_state_dir(app: &gtk::Application, config_dir: PathBuf, state_dir: PathBuf) -> Self {
        let win: Self = glib::Object::builder().property("application", app).build();
        win.imp().config_dir.replace(config_dir.clone());
        win.imp().state_dir.replace(state_dir);
        if let Some(r) = RememberedLogin::load(&config_dir) {
            let imp = win.imp();
            imp.host_entry.set_text(&r.host);
            imp.port_entry.set_text(&r.port.to_string());
            imp.user_entry.set_text(&r.user);
            imp.password_entry.grab_focus();
        }
        win
    }

    fn setup(&self) {
        let imp = self.imp();
        let convs = gio::ListStore::new::<LwConversation>();
        imp.conversations.replace(Some(convs.clone()));
        imp.sidebar.bind_model(Some(&convs), |obj| {
            let conv = obj
                .downcast_ref::<LwConversation>()
                .expect("the sidebar holds conversations");
            sidebar_row(conv).upcast()
        });
        imp.sidebar.connect_row_selected(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |_, row| {
                if let Some(row) = row
                    && let Some(conv) = win
                        .conversations()
                        .item(row.index() as u32)
                        .and_downcast::<LwConversation>()
                {
                    win.show_conversation(&conv);
                }
            }
        ));

        // The message list: a virtualised ListView over the current conversation.
        let selection = gtk::NoSelection::new(None::<gio::ListModel>);
        imp.selection.replace(Some(selection.clone()));
        let factory = gtk::SignalListItemFactory::new();
        factory.connect_setup(|_, item| {
            if let Some(item) = item.downcast_ref::<gtk::ListItem>() {
                item.set_activatable(false);
                item.set_selectable(false);
                item.set_child(Some(&LwMessageRow::new()));
            }
        });
        factory.connect_bind(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |_, item| {
                let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                    return;
                };
                let (Some(row), Some(msg)) = (
                    item.child().and_downcast::<LwMessageRow>(),
                    item.item().and_downcast::<LwMessage>(),
                ) else {
                    return;
                };
                // The sender's name heads a run of their messages in a room.
                let current = win.current();
                let private = current.as_ref().is_some_and(|c| c.is_private());
                let prev = item
                    .position()
                    .checked_sub(1)
                    .and_then(|p| current.as_ref().and_then(|c| c.messages().item(p)))
                    .and_downcast::<LwMessage>();
                let d = msg.data();
                let continues = prev.is_some_and(|p| {
                    let p = p.data();
                    p.from == d.from && d.ts.saturating_sub(p.ts) < GROUP_GAP_MS
                });
                row.bind(&msg, !private && !continues, win.delete_window_secs());
            }
        ));
        factory.connect_unbind(|_, item| {
            if let Some(row) = item
                .downcast_ref::<gtk::ListItem>()
                .and_then(|i| i.child())
                .and_downcast::<LwMessageRow>()
            {
                row.unbind();
            }
        });
        selection.connect_items_changed(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |sel, _, _, _| win.imp().empty_state.set_visible(sel.n_items() == 0)
        ));
        imp.message_list.set_model(Some(&selection));
        imp.message_list.set_factory(Some(&factory));

        let adj = imp.message_scroller.vadjustment();
        adj.connect_value_changed(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |adj| {
                let at_bottom = adj.value() >= adj.upper() - adj.page_size() - 48.0;
                win.imp().stick_to_bottom.set(at_bottom);
            }
        ));
        adj.connect_upper_notify(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |adj| {
                if win.imp().stick_to_bottom.get() {
                    adj.set_value(adj.upper() - adj.page_size());
                }
            }
        ));
        imp.message_scroller.connect_edge_reached(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |_, pos| {
                if pos == gtk::PositionType::Top {
                    win.load_older();
                }
            }
        ));

        // The composer: Enter sends, Shift+Enter is a new line.
        let keys = gtk::EventControllerKey::new();
        keys.set_propagation_phase(gtk::PropagationPhase::Capture);
        keys.connect_key_pressed(glib::clone!(
            #[weak(rename_to = win)]
            self,
            #[upgrade_or]
            glib::Propagation::Proceed,
            move |_, key, _, state| {
                let enter = matches!(key, gdk::Key::Return | gdk::Key::KP_Enter);
                if enter && !state.contains(gdk::ModifierType::SHIFT_MASK) {
                    win.send_composer();
                    return glib::Propagation::Stop;
                }
                glib::Propagation::Proceed
            }
        ));
        imp.composer.add_controller(keys);
        imp.send_button.connect_clicked(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |_| win.send_composer()
        ));
        imp.attach_button.connect_clicked(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |_| win.choose_attachment()
        ));
        // Dropping a file on the conversation sends it there.
        let drop = gtk::DropTarget::new(gio::File::static_type(), gdk::DragAction::COPY);
        drop.connect_drop(glib::clone!(
            #[weak(rename_to = win)]
            self,
            #[upgrade_or]
            false,
            move |_, value, _, _| {
                match value.get::<gio::File>().ok().and_then(|f| f.path()) {
                    Some(path) if win.is_online() => {
                        win.attach_file(&path);
                        true
                    }
                    _ => false,
                }
            }
        ));
        imp.message_scroller.add_controller(drop);

        // Connect screen.
        let connect = glib::clone!(
            #[weak(rename_to = win)]
            self,
            move || win.connect_from_form()
        );
        imp.connect_button.connect_clicked({
            let c = connect.clone();
            move |_| c()
        });
        imp.password_entry.connect_activate({
            let c = connect.clone();
            move |_| c()
        });
        imp.user_entry.connect_activate(move |_| connect());
        imp.trust_accept.connect_clicked(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |_| win.accept_trust()
        ));
        imp.trust_cancel.connect_clicked(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |_| {
                win.imp().pending_trust.replace(None);
                win.imp().trust_box.set_visible(false);
                win.set_connecting(false, "");
            }
        ));

        // Header bar and popover.
        imp.logout_button.connect_clicked(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |_| win.logout()
        ));
        let open_new = glib::clone!(
            #[weak(rename_to = win)]
            self,
            move || {
                let name = win.imp().new_chat_entry.text().trim().to_owned();
                win.start_private_chat(&name);
            }
        );
        imp.new_chat_go.connect_clicked({
            let o = open_new.clone();
            move |_| o()
        });
        imp.new_chat_entry.connect_activate(move |_| open_new());
        imp.toast_close.connect_clicked(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |_| win.imp().toast.set_reveal_child(false)
        ));

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
            }
        });
        self.set_chat_visible(false);
    }

    // ----- state accessors (also used by tests) -----

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
        self.imp().composer.is_sensitive()
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

    fn delete_window_secs(&self) -> u64 {
        self.imp()
            .session
            .borrow()
            .as_ref()
            .map_or(0, |s| s.delete_window_secs)
    }

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
    pub fn connect_to(&self, host: &str, port: u16, user: &str, password: &str, trust: Trust) {
        self.set_form(host, port, user, password);
        let form = LoginForm {
            host: host.to_owned(),
            port,
            user: user.to_owned(),
            password: password.to_owned(),
        };
        self.start_session(form, trust);
    }

    fn read_form(&self) -> Result<LoginForm, String> {
        let imp = self.imp();
        let host = imp.host_entry.text().trim().to_owned();
        if host.is_empty() {
            return Err("Enter the server's address.".into());
        }
        let port: u16 = imp
            .port_entry
            .text()
            .trim()
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or("The port is a number between 1 and 65535.")?;
        let user = imp.user_entry.text().trim().to_owned();
        if let Err(e) = UserName::parse(&user) {
            return Err(format!("That username cannot be used: {e}."));
        }
        let password = imp.password_entry.text().to_string();
        if password.is_empty() {
            return Err("Enter your password.".into());
        }
        Ok(LoginForm {
            host,
            port,
            user,
            password,
        })
    }

    fn connect_from_form(&self) {
        if self.imp().session.borrow().is_some() {
            return;
        }
        match self.read_form() {
            Ok(form) => self.start_session(form, Trust::PinnedOnly),
            Err(e) => self.show_connect_error(&e, false),
        }
    }

    fn set_connecting(&self, busy: bool, status: &str) {
        let imp = self.imp();
        imp.connect_spinner.set_spinning(busy);
        imp.connect_spinner.set_visible(busy);
        imp.connect_status.set_text(status);
        imp.connect_status.set_visible(!status.is_empty());
        imp.connect_button.set_sensitive(!busy);
    }

    fn show_connect_error(&self, text: &str, severe: bool) {
        let imp = self.imp();
        imp.last_error.replace(Some(text.to_owned()));
        imp.connect_error.set_text(text);
        imp.connect_error.set_visible(!text.is_empty());
        if severe {
            imp.connect_error.add_css_class("severe");
        } else {
            imp.connect_error.remove_css_class("severe");
        }
    }

    /// Fills the connect form (the password too) without connecting.
    pub fn set_form(&self, host: &str, port: u16, user: &str, password: &str) {
        let imp = self.imp();
        imp.host_entry.set_text(host);
        imp.port_entry.set_text(&port.to_string());
        imp.user_entry.set_text(user);
        imp.password_entry.set_text(password);
    }

    /// The Connect button.
    pub fn connect_button(&self) -> gtk::Button {
        self.imp().connect_button.get()
    }

    /// The fingerprint the "trust this server?" card shows, if it is shown.
    pub fn trust_prompt(&self) -> Option<String> {
        let imp = self.imp();
        imp.trust_box
            .is_visible()
            .then(|| imp.trust_fingerprint.text().to_string())
    }

    /// Trusts the server the card shows and connects (its "Trust and Connect" button).
    pub fn accept_trust(&self) {
        let Some((form, fp)) = self.imp().pending_trust.take() else {
            return;
        };
        self.imp().trust_box.set_visible(false);
        self.start_session(form, Trust::Fingerprint(fp));
    }

    /// Starts the client driver and the loop that applies its events to this window.
    fn start_session(&self, form: LoginForm, trust: Trust) {
        self.end_session();
        let imp = self.imp();
        let generation = imp.generation.get() + 1;
        imp.generation.set(generation);
        imp.trust_box.set_visible(false);
        self.show_connect_error("", false);
        imp.last_error.replace(None);
        self.set_connecting(true, &format!("Connecting to {}…", form.server()));
        let config_dir = imp.config_dir.borrow().clone();
        let state_file = cli::state_file(&imp.state_dir.borrow(), &form.server(), &form.user);
        let opts = ClientOptions {
            server: form.server(),
            user: form.user.clone(),
            password: form.password.clone(),
            trust,
            pins: cli::pin_store(&config_dir),
            // The sync position, pinned peer keys and this device's identity key (which
            // opens private messages) persist; the view is refilled with History on login.
            state_file: Some(state_file),
            reconnect: true,
            endpoint: None,
        };
        let (handle, events) = client::start_on(opts, &runtime::handle());
        imp.session.replace(Some(Session {
            handle,
            form,
            user: None,
            delete_window_secs: 0,
            online: false,
            catching_up: true,
        }));
        let weak = self.downgrade();
        glib::spawn_future_local(async move {
            while let Ok(first) = events.recv().await {
                // Take what else is queued (a catch-up can bring thousands of messages)
                // and apply runs of messages to a conversation in one model update.
                let mut batch = vec![first];
                while batch.len() < 5000 {
                    match events.try_recv() {
                        Ok(ev) => batch.push(ev),
                        Err(_) => break,
                    }
                }
                let Some(win) = weak.upgrade() else { break };
                if win.imp().generation.get() != generation {
                    break;
                }
                win.handle_events(batch, generation);
            }
        });
    }

    fn handle_events(&self, batch: Vec<ClientEvent>, generation: u64) {
        let mut run: Vec<(String, Vec<MessageData>)> = Vec::new();
        for ev in batch {
            if self.imp().generation.get() != generation {
                return;
            }
            match ev {
                ClientEvent::App(Event::Message {
                    conv,
                    id,
                    seq,
                    from,
                    text,
                    ts,
                    file,
                }) => {
                    let mut m = self.received(id, seq, from, text, ts);
                    m.file = file;
                    match run.last_mut() {
                        Some((c, msgs)) if *c == conv => msgs.push(m),
                        _ => run.push((conv, vec![m])),
                    }
                }
                other => {
                    self.flush_messages(std::mem::take(&mut run));
                    self.handle_event(other);
                }
            }
        }
        self.flush_messages(run);
    }

    fn received(
        &self,
        id: u64,
        seq: u64,
        from: String,
        text: Option<String>,
        ts: u64,
    ) -> MessageData {
        let me = self.me().unwrap_or_default();
        MessageData {
            own: from.eq_ignore_ascii_case(&me),
            id,
            seq,
            from,
            text,
            ts,
            notice: false,
            file: None,
        }
    }

    /// Adds received messages, conversation by conversation, counting unread ones and
    /// notifying when the window is in the background.
    fn flush_messages(&self, runs: Vec<(String, Vec<MessageData>)>) {
        let imp = self.imp();
        for (conv, msgs) in runs {
            let c = self.conversation_for(&conv);
            let fresh: Vec<MessageData> = msgs
                .into_iter()
                .filter(|m| c.message(m.id).is_none())
                .collect();
            let incoming: Vec<MessageData> = fresh.iter().filter(|m| !m.own).cloned().collect();
            if fresh.len() == 1 {
                c.add(fresh.into_iter().next().expect("one message"));
            } else {
                c.add_history(fresh);
            }
            let catching_up = imp.session.borrow().as_ref().is_some_and(|s| s.catching_up);
            if incoming.is_empty() || catching_up {
                continue;
            }
            let visible = self.current().as_ref() == Some(&c) && self.is_active();
            if !visible {
                c.set_unread(c.unread() + incoming.len() as u32);
            }
            if !self.is_active()
                && let Some(last) = incoming.last()
                && let Some(text) = &last.text
            {
                self.notify(&conv, &last.from, text);
            }
        }
    }

    /// Logs out (if logged in) and forgets the session; events still queued are dropped.
    fn end_session(&self) {
        let imp = self.imp();
        imp.generation.set(imp.generation.get() + 1);
        if let Some(s) = imp.session.take() {
            s.handle.send(Command::Logout);
            s.handle.close();
        }
    }

    /// Logs out and returns to the connect screen.
    pub fn logout(&self) {
        self.end_session();
        let imp = self.imp();
        self.conversations().remove_all();
        imp.current.replace(None);
        if let Some(sel) = imp.selection.borrow().as_ref() {
            sel.set_model(None::<&gio::ListModel>);
        }
        imp.online.borrow_mut().clear();
        imp.password_entry.set_text("");
        imp.banner.set_reveal_child(false);
        imp.toast.set_reveal_child(false);
        self.set_connecting(false, "");
        self.set_chat_visible(false);
        imp.password_entry.grab_focus();
    }

    fn set_chat_visible(&self, chat: bool) {
        let imp = self.imp();
        imp.stack
            .set_visible_child_name(if chat { "chat" } else { "connect" });
        imp.logout_button.set_visible(chat);
        imp.new_chat_button.set_visible(chat);
        imp.subtitle_label.set_visible(chat);
        if !chat {
            imp.title_label.set_text("LiveWire");
            self.set_title(Some("LiveWire"));
        }
    }

    // ----- events from the client driver -----

    fn handle_event(&self, ev: ClientEvent) {
        match ev {
            ClientEvent::App(e) => self.handle_app_event(e),
            ClientEvent::Fatal(f) => self.handle_fatal(f),
            ClientEvent::Ended => {
                if self.imp().session.borrow().is_some() {
                    self.logout();
                }
            }
        }
    }

    fn handle_fatal(&self, f: Fatal) {
        let imp = self.imp();
        let form = imp.session.take().map(|s| s.form);
        let was_chat = imp.stack.visible_child_name().as_deref() == Some("chat");
        if was_chat {
            self.logout();
        }
        self.set_connecting(false, "");
        if let (
            Fatal::UnknownServer {
                server,
                fingerprint,
            },
            Some(form),
        ) = (&f, form)
        {
            imp.trust_title
                .set_text(&format!("First connection to {server}"));
            imp.trust_fingerprint.set_text(fingerprint);
            imp.trust_box.set_visible(true);
            imp.pending_trust.replace(Some((form, fingerprint.clone())));
            imp.trust_accept.grab_focus();
            return;
        }
        let (text, severe) = friendly_fatal(&f);
        self.show_connect_error(&text, severe);
    }

    fn handle_app_event(&self, e: Event) {
        let imp = self.imp();
        match e {
            Event::Ready {
                user,
                online,
                delete_window_secs,
            } => {
                let server = {
                    let mut s = imp.session.borrow_mut();
                    let Some(s) = s.as_mut() else { return };
                    s.user = Some(user.clone());
                    s.delete_window_secs = delete_window_secs;
                    s.online = true;
                    s.catching_up = true;
                    s.form.password.clear();
                    RememberedLogin {
                        host: s.form.host.clone(),
                        port: s.form.port,
                        user: s.form.user.clone(),
                    }
                    .save(&imp.config_dir.borrow());
                    s.form.server()
                };
                imp.password_entry.set_text("");
                self.set_online_users(online);
                self.set_connecting(false, "");
                let general = self.conversation_for(GENERAL);
                self.set_chat_visible(true);
                imp.title_label.set_text("LiveWire");
                imp.subtitle_label.set_text(&format!("{user} on {server}"));
                imp.me_label
                    .set_text(&format!("Signed in as {user} · {server}"));
                self.set_title(Some(&format!("LiveWire — {user}")));
                self.set_connection_state(true, "");
                self.select_conversation(&general);
                self.show_conversation(&general);
                self.refill_from_history(&user);
                self.request_sync();
                imp.composer.grab_focus();
            }
            Event::Disconnected { reason } => self.set_connection_state(false, &reason),
            Event::Reconnected { online } => {
                self.set_online_users(online);
                self.set_connection_state(true, "");
            }
            Event::Sent {
                conv,
                id,
                seq,
                ts,
                text,
                file,
            } => {
                let me = self.me().unwrap_or_default();
                let c = self.conversation_for(&conv);
                c.add(MessageData {
                    id,
                    seq,
                    from: me,
                    text: Some(text),
                    ts,
                    own: true,
                    notice: false,
                    file,
                });
                imp.stick_to_bottom.set(true);
            }
            Event::Message {
                conv,
                id,
                seq,
                from,
                text,
                ts,
                ..
            } => {
                let m = self.received(id, seq, from, text, ts);
                self.flush_messages(vec![(conv, vec![m])]);
            }
            Event::KeyChanged { user, new, .. } => {
                let short: String = new.chars().take(16).collect();
                let text = format!(
                    "{user}'s safety key changed (now {short}…). This happens when {user} reinstalls LiveWire or signs in on a new device — but it can also mean someone is intercepting. If in doubt, check with {user} in person."
                );
                let c = self.conversation_for(&format!("@{user}"));
                c.add_notice(&text, now_ms());
                self.show_toast(&format!(
                    "{user}'s safety key changed: see your conversation with {user}."
                ));
            }
            Event::Deleted { conv, id, scope } => {
                if let Some(c) = self.conversation(&conv) {
                    match scope {
                        DeleteScope::Me => c.remove(id),
                        DeleteScope::Everyone => c.erase(id),
                    };
                }
            }
            Event::Presence { user, online } => {
                {
                    let mut set = imp.online.borrow_mut();
                    if online {
                        set.insert(user.to_ascii_lowercase(), user.clone());
                    } else {
                        set.remove(&user.to_ascii_lowercase());
                    }
                }
                self.refresh_presence();
            }
            Event::Who { users } => self.set_online_users(users),
            Event::History {
                conv,
                messages,
                more,
            } => {
                let me = self.me().unwrap_or_default();
                let c = self.conversation_for(&conv);
                let page = messages
                    .into_iter()
                    .map(|m| MessageData {
                        own: m.from.eq_ignore_ascii_case(&me),
                        id: m.id,
                        seq: m.seq,
                        from: m.from,
                        text: m.text,
                        ts: m.ts,
                        notice: false,
                        file: m.file,
                    })
                    .collect();
                if imp
                    .new_chat
                    .borrow()
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&conv))
                {
                    imp.new_chat.replace(None);
                }
                // Each request asks for what is older than the oldest shown, so a page of
                // duplicates (the catch-up got there first) still makes progress.
                c.add_history(page);
                c.set_more_history(more);
                c.end_history_request();
            }
            Event::Sync => {
                imp.syncs.set(imp.syncs.get() + 1);
                if let Some(s) = imp.session.borrow_mut().as_mut() {
                    s.catching_up = false;
                }
            }
            Event::Error { code, message } => {
                if code == ErrorCode::UnknownUser {
                    self.drop_unconfirmed_chat();
                }
                if code == ErrorCode::BadRequest && message.contains("open the conversation first")
                {
                    // The echo of a conversation that failed to open (reported already):
                    // a history request queued behind the open.
                    return;
                }
                self.show_toast(&friendly_error(code.as_str(), &message));
            }
            // File transfers are started from scripted mode only so far.
            Event::Transfer {
                direction,
                bytes,
                total,
                ..
            } => self.show_transfer(&direction, bytes, total),
            Event::Downloaded { path, .. } => {
                imp.transfer_bar.set_visible(false);
                self.show_toast(&format!("Downloaded {path}"));
                // Open it with the desktop's default application, where there is one.
                let uri = gio::File::for_path(&path).uri();
                let _ = gio::AppInfo::launch_default_for_uri(&uri, None::<&gio::AppLaunchContext>);
            }
            Event::Cancelled { .. } => self.show_toast("Transfer cancelled"),
        }
    }

    /// After login: the newest page of every conversation this device knows (the
    /// catch-up only brings what is newer than the saved position).
    fn refill_from_history(&self, user: &str) {
        let me_key = user.to_ascii_lowercase();
        let imp = self.imp();
        let file = imp
            .session
            .borrow()
            .as_ref()
            .map(|s| cli::state_file(&imp.state_dir.borrow(), &s.form.server(), &s.form.user));
        let saved: SavedState = file
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut names = vec![GENERAL.to_owned()];
        names.extend(
            saved
                .convs
                .keys()
                .filter_map(|k| ConvId::from_storage_key(k))
                .map(|c| c.label_for(&me_key))
                .filter(|n| n != GENERAL),
        );
        for name in names {
            let c = self.conversation_for(&name);
            if c.begin_history_request() {
                self.send_command(Command::History {
                    conv: name,
                    before: None,
                    limit: None,
                });
            }
        }
    }

    fn set_connection_state(&self, online: bool, reason: &str) {
        let imp = self.imp();
        if let Some(s) = imp.session.borrow_mut().as_mut() {
            s.online = online;
        }
        imp.banner.set_reveal_child(!online);
        imp.banner_spinner.set_spinning(!online);
        if !online {
            imp.banner_label.set_text(&format!(
                "Connection lost ({reason}). Reconnecting… Messages you sent are kept and delivered once the connection is back."
            ));
            imp.offline_label
                .set_text(&format!("You can't send while offline: {reason}"));
        }
        imp.offline_label.set_visible(!online);
        imp.composer.set_sensitive(online);
        imp.send_button.set_sensitive(online);
        imp.attach_button.set_sensitive(online);
    }

    fn set_online_users(&self, users: Vec<String>) {
        {
            let mut set = self.imp().online.borrow_mut();
            set.clear();
            for u in users {
                set.insert(u.to_ascii_lowercase(), u);
            }
        }
        self.refresh_presence();
    }

    fn refresh_presence(&self) {
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

    fn notify(&self, conv: &str, from: &str, text: &str) {
        let Some(app) = self.application() else {
            return;
        };
        if app.dbus_connection().is_none() {
            // No session bus (e.g. under Xvfb): no notification service to talk to.
            return;
        }
        let title = if conv == GENERAL {
            format!("{from} in {GENERAL}")
        } else {
            from.to_owned()
        };
        let n = gio::Notification::new(&title);
        let body: String = text.chars().take(200).collect();
        n.set_body(Some(&body));
        app.send_notification(Some("livewire-message"), &n);
    }

    fn show_toast(&self, text: &str) {
        let imp = self.imp();
        imp.last_error.replace(Some(text.to_owned()));
        imp.toast_label.set_text(text);
        imp.toast.set_reveal_child(true);
        if let Some(id) = imp.toast_timeout.take() {
            id.remove();
        }
        let id = glib::timeout_add_seconds_local_once(
            6,
            glib::clone!(
                #[weak(rename_to = win)]
                self,
                move || {
                    win.imp().toast_timeout.replace(None);
                    win.imp().toast.set_reveal_child(false);
                }
            ),
        );
        imp.toast_timeout.replace(Some(id));
    }

    // ----- conversations -----

    /// The conversation named `name`, created (and listed) if new.
    fn conversation_for(&self, name: &str) -> LwConversation {
        if let Some(c) = self.conversation(name) {
            return c;
        }
        let c = LwConversation::new(name);
        if let Some(peer) = c.peer() {
            c.set_online(
                self.imp()
                    .online
                    .borrow()
                    .contains_key(&peer.to_ascii_lowercase()),
            );
        }
        self.conversations().append(&c);
        c
    }

    fn select_conversation(&self, conv: &LwConversation) {
        let convs = self.conversations();
        if let Some(pos) = (0..convs.n_items()).find(|&i| {
            convs
                .item(i)
                .and_downcast::<LwConversation>()
                .is_some_and(|c| &c == conv)
        }) && let Some(row) = self.imp().sidebar.row_at_index(pos as i32)
        {
            self.imp().sidebar.select_row(Some(&row));
        }
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
            self.show_toast(&format!("“{name}” is not a valid username: {e}."));
            return;
        }
        if self.me().is_some_and(|me| me.eq_ignore_ascii_case(name)) {
            self.show_toast("That is you. Pick someone else to chat with.");
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
    fn drop_unconfirmed_chat(&self) {
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

    fn show_conversation(&self, conv: &LwConversation) {
        let imp = self.imp();
        imp.current.replace(Some(conv.clone()));
        conv.set_unread(0);
        if let Some(sel) = imp.selection.borrow().as_ref() {
            sel.set_model(Some(&conv.messages()));
        }
        imp.title_label.set_text(&conv.name());
        imp.stick_to_bottom.set(true);
        let adj = imp.message_scroller.vadjustment();
        adj.set_value(adj.upper() - adj.page_size());
        if conv.is_private() && conv.is_empty() && conv.begin_history_request() {
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
        fn walk(w: &gtk::Widget, out: &mut Vec<String>) {
            if let Some(row) = w.downcast_ref::<LwMessageRow>() {
                if row.is_mapped()
                    && let Some(text) = row.shown_text()
                {
                    out.push(text);
                }
                return;
            }
            let mut child = w.first_child();
            while let Some(c) = child {
                walk(&c, out);
                child = c.next_sibling();
            }
        }
        let mut out = Vec::new();
        walk(self.imp().message_list.upcast_ref(), &mut out);
        out
    }

    /// Scrolls the message list to a fraction of its height (0 top, 1 bottom).
    pub fn scroll_messages_to(&self, fraction: f64) {
        let adj = self.imp().message_scroller.vadjustment();
        let range = (adj.upper() - adj.page_size()).max(0.0);
        adj.set_value(range * fraction.clamp(0.0, 1.0));
    }

    fn load_older(&self) {
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

    // ----- composing and deleting -----

    fn send_composer(&self) {
        let imp = self.imp();
        if !self.is_online() {
            return;
        }
        let buffer = imp.composer.buffer();
        let text = buffer
            .text(&buffer.start_iter(), &buffer.end_iter(), false)
            .to_string();
        let text = text.trim_end_matches(['\n', '\r', ' ', '\t']).to_owned();
        if text.trim().is_empty() {
            return;
        }
        let Some(conv) = self.current() else { return };
        self.send_command(Command::Send {
            to: conv.name(),
            text,
        });
        buffer.set_text("");
    }

    /// Types `text` into the composer and sends it to the current conversation, as Enter
    /// would.
    pub fn compose_and_send(&self, text: &str) {
        self.imp().composer.buffer().set_text(text);
        self.send_composer();
    }

    /// Sends the file at `path` to the current conversation (the attach button, a drop).
    pub fn attach_file(&self, path: &std::path::Path) {
        let Some(conv) = self.current() else { return };
        self.send_command(Command::SendFile {
            to: conv.name(),
            path: path.to_string_lossy().into_owned(),
        });
    }

    fn choose_attachment(&self) {
        let chooser = gtk::FileChooserNative::new(
            Some("Send a File"),
            Some(self),
            gtk::FileChooserAction::Open,
            Some("Send"),
            Some("Cancel"),
        );
        chooser.connect_response(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |chooser, response| {
                if response == gtk::ResponseType::Accept
                    && let Some(path) = chooser.file().and_then(|f| f.path())
                {
                    win.attach_file(&path);
                }
                chooser.destroy();
            }
        ));
        chooser.show();
    }

    /// Downloads the file of message `id` to `path` (the download button, after the dialog).
    pub fn download_to(&self, id: u64, path: &std::path::Path) {
        self.send_command(Command::Download {
            id,
            path: path.to_string_lossy().into_owned(),
            overwrite: true,
        });
    }

    fn choose_download(&self, id: u64) {
        let name = self
            .current()
            .and_then(|c| c.message(id))
            .and_then(|m| m.data().file)
            .map(|f| f.name)
            .unwrap_or_else(|| "download".into());
        let chooser = gtk::FileChooserNative::new(
            Some("Save File"),
            Some(self),
            gtk::FileChooserAction::Save,
            Some("Save"),
            Some("Cancel"),
        );
        chooser.set_current_name(&name);
        chooser.connect_response(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |chooser, response| {
                if response == gtk::ResponseType::Accept
                    && let Some(path) = chooser.file().and_then(|f| f.path())
                {
                    win.download_to(id, &path);
                }
                chooser.destroy();
            }
        ));
        chooser.show();
    }

    fn show_transfer(&self, direction: &str, bytes: u64, total: u64) {
        let bar = &self.imp().transfer_bar;
        let fraction = if total == 0 {
            1.0
        } else {
            bytes as f64 / total as f64
        };
        let verb = if direction == "up" {
            "Sending"
        } else {
            "Downloading"
        };
        bar.set_fraction(fraction.clamp(0.0, 1.0));
        bar.set_text(Some(&format!("{verb}… {:.0} %", fraction * 100.0)));
        bar.set_visible(bytes < total);
    }

    /// The transfer progress bar: (visible, fraction).
    pub fn transfer_progress(&self) -> (bool, f64) {
        let bar = &self.imp().transfer_bar;
        (bar.is_visible(), bar.fraction())
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

/// One sidebar row: presence dot, name, unread badge.
fn sidebar_row(conv: &LwConversation) -> gtk::Widget {
    let row = gtk::Box::new(gtk::Orientation::Horizontal, 10);
    let dot = gtk::Box::builder()
        .valign(gtk::Align::Center)
        .css_classes(["dot"])
        .build();
    let icon = gtk::Label::builder()
        .label(if conv.is_private() { "@" } else { "#" })
        .css_classes(["dim-label"])
        .build();
    let name = conv.name();
    let label = gtk::Label::builder()
        .label(name.trim_start_matches(['#', '@']))
        .xalign(0.0)
        .hexpand(true)
        .ellipsize(gtk::pango::EllipsizeMode::End)
        .css_classes(["conv-name"])
        .build();
    let badge = gtk::Label::builder()
        .valign(gtk::Align::Center)
        .css_classes(["badge"])
        .build();
    row.append(&icon);
    row.append(&label);
    row.append(&badge);
    if conv.is_private() {
        row.append(&dot);
    }
    let update = {
        let dot = dot.clone();
        let badge = badge.clone();
        move |c: &LwConversation| {
            if c.online() {
                dot.add_css_class("online");
            } else {
                dot.remove_css_class("online");
            }
            dot.set_tooltip_text(Some(if c.online() { "Online" } else { "Offline" }));
            badge.set_text(&c.unread().to_string());
            badge.set_visible(c.unread() > 0);
        }
    };
    update(conv);
    let u = update.clone();
    conv.connect_unread_notify(move |c| u(c));
    conv.connect_online_notify(move |c| update(c));
    row.upcast()
}
