//! One login, from Connect to Log Out: the client driver's session, the loop that drains
//! its events on the GTK thread, and what each event does to the models and the window.

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use super::LwClientWindow;
use super::connect_page::LoginForm;
use super::user_facing::{user_facing, user_facing_fatal};
use crate::app::client::{Command, Event, SavedState};
use crate::app::ids::{ConvId, GENERAL};
use crate::app::protocol::{DeleteScope, ErrorCode};
use crate::gui::i18n::{gettext, gettext_with};
use crate::gui::models::MessageData;
use crate::gui::runtime;
use crate::gui::settings::RememberedLogin;
use crate::paths;
use crate::transport::client::{self, ClientEvent, ClientHandle, ClientOptions, Fatal, Trust};

/// A running client session.
pub(super) struct Session {
    pub(super) handle: ClientHandle,
    pub(super) form: LoginForm,
    /// Name as registered (set by `Ready`).
    pub(super) user: Option<String>,
    /// Connected right now.
    pub(super) online: bool,
    /// The first catch-up after login is running (no unread counts or notifications).
    pub(super) catching_up: bool,
    /// How long the server lets its users delete their messages (from `Ready`).
    pub(super) delete_window_secs: u64,
    /// Why the connection was lost, while reconnecting (the banner's words).
    pub(super) offline_reason: String,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl LwClientWindow {
    /// Starts the client driver and the loop that applies its events to this window.
    pub(super) fn start_session(&self, form: LoginForm, trust: Trust) {
        self.end_session();
        let imp = self.imp();
        let generation = self.new_generation();
        imp.generation.set(generation);
        imp.connect_page.hide_trust();
        self.show_connect_error("", false);
        imp.last_error.replace(None);
        imp.connect_page.set_connecting(
            true,
            &gettext_with("Connecting to {server}…", &[("server", &form.server())]),
        );
        let config_dir = imp.config_dir.borrow().clone();
        let state_file = paths::state_file(&imp.state_dir.borrow(), &form.server(), &form.user);
        let opts = ClientOptions {
            server: form.server(),
            user: form.user.clone(),
            password: form.password.clone(),
            trust,
            pins: paths::pin_store(&config_dir),
            // The sync position, pinned peer keys and this device's identity key (which
            // opens private messages) persist; the view is refilled with History on login.
            state_file: Some(state_file),
            reconnect: true,
            endpoint: None,
            timers: crate::transport::quic::Timers::CLIENT,
            stream_idle: crate::transport::client::STREAM_IDLE,
        };
        let (handle, events) = client::start_on(opts, &runtime::handle());
        imp.session.replace(Some(Session {
            handle,
            form,
            user: None,
            online: false,
            catching_up: true,
            delete_window_secs: 0,
            offline_reason: String::new(),
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
                // The account shown handles them; one in the background keeps them
                // (`accounts.rs`); a session logged out drops them.
                if !win.route_events(batch, generation) {
                    break;
                }
            }
        });
    }

    /// Applies a batch of events; runs of messages go to their conversation in one update.
    pub(super) fn handle_events(&self, batch: Vec<ClientEvent>, generation: u64) {
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
                    reply_to,
                    edited,
                    mentions_me,
                    ..
                }) => {
                    let mut m = self.received(id, seq, from, text, ts);
                    m.mention = mentions_me;
                    m.file = file;
                    (m.reply_to, m.edited) = (reply_to, edited);
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

    /// A received message as the models keep it.
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
            ..MessageData::default()
        }
    }

    /// Adds received messages, conversation by conversation, counting unread ones and
    /// notifying when the window is in the background.
    pub(super) fn flush_messages(&self, runs: Vec<(String, Vec<MessageData>)>) {
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
            // Events kept while the account was in the background were announced and
            // notified when they came.
            let replaying = imp.replaying.get();
            if !replaying {
                self.announce_messages(&conv, &incoming);
            }
            let visible = self.current().as_ref() == Some(&c) && self.is_active();
            if !visible {
                c.set_unread(c.unread() + incoming.len() as u32);
            }
            self.messages_arrived(&c, &incoming, visible);
            if !self.is_active() && !replaying {
                self.notify_messages(&conv, &incoming);
            }
        }
    }

    /// Logs out (if logged in) and forgets the session; events still queued are dropped.
    pub(super) fn end_session(&self) {
        let imp = self.imp();
        imp.generation.set(self.new_generation());
        if let Some(s) = imp.session.take() {
            s.handle.send(Command::Logout);
            s.handle.close();
        }
    }

    /// Logs the account shown out: another account of the window is shown if there is
    /// one, else the connect screen.
    pub fn logout(&self) {
        let gone = self.imp().generation.get();
        self.end_session();
        self.clear_account_view();
        self.forget_account(gone);
        if !self.show_parked_account() {
            self.show_connect_page();
        }
    }

    /// The connect screen, empty but for the remembered login.
    pub(super) fn show_connect_page(&self) {
        let imp = self.imp();
        imp.connect_page.set_connecting(false, "");
        imp.connect_page
            .set_can_cancel(!imp.parked.borrow().is_empty());
        self.set_chat_visible(false);
        imp.connect_page.clear_password(true);
        self.refresh_accounts();
    }

    /// Empties what the window shows of an account (sidebar, conversation, dialogs,
    /// banner, toast); the account's models are not touched.
    pub(super) fn clear_account_view(&self) {
        let imp = self.imp();
        self.conversations().remove_all();
        self.invitations().remove_all();
        imp.pending_room.replace(None);
        for dialog in [
            imp.new_room_dialog
                .borrow()
                .clone()
                .map(|d| d.upcast::<gtk::Window>()),
            imp.directory
                .borrow()
                .clone()
                .map(|d| d.upcast::<gtk::Window>()),
        ]
        .into_iter()
        .flatten()
        {
            dialog.set_visible(false);
        }
        imp.current.replace(None);
        imp.message_list.set_conversation(None);
        imp.room_header.set_conversation(None);
        self.show_privacy(None);
        imp.composer.set_read_only(None);
        imp.online.borrow_mut().clear();
        imp.new_chat.replace(None);
        imp.banner.set_reveal_child(false);
        imp.search_panel.reset();
        self.dismiss_toast();
    }

    /// One event of the client driver other than a message.
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

    /// The session ended for good: back to the connect screen, with the trust card for an
    /// unknown server or the error in words.
    fn handle_fatal(&self, f: Fatal) {
        let imp = self.imp();
        let form = imp.session.take().map(|s| s.form);
        let was_chat = imp.stack.visible_child_name().as_deref() == Some("chat");
        if was_chat {
            self.logout();
            if self.is_logged_in() {
                // Another account of the window is shown now: say why this one went.
                let (text, _) = user_facing_fatal(&f);
                self.show_toast(&text);
                return;
            }
        }
        imp.connect_page.set_connecting(false, "");
        if let (
            Fatal::UnknownServer {
                server,
                fingerprint,
            },
            Some(form),
        ) = (&f, form)
        {
            imp.pending_trust.replace(Some((form, fingerprint.clone())));
            imp.connect_page.show_trust(server, fingerprint);
            return;
        }
        let (text, severe) = user_facing_fatal(&f);
        self.show_connect_error(&text, severe);
    }

    /// What one chat event does to the models and the window.
    pub(super) fn handle_app_event(&self, e: Event) {
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
                    s.online = true;
                    s.catching_up = true;
                    s.delete_window_secs = delete_window_secs;
                    s.form.password.clear();
                    RememberedLogin {
                        host: s.form.host.clone(),
                        port: s.form.port,
                        user: s.form.user.clone(),
                    }
                    .save(&imp.config_dir.borrow());
                    s.form.server()
                };
                imp.connect_page.clear_password(false);
                imp.message_list.set_delete_window_secs(delete_window_secs);
                self.set_online_users(online);
                imp.connect_page.set_connecting(false, "");
                let general = self.conversation_for(GENERAL);
                self.show_account_chrome(&user, &server);
                self.set_connection_state(true, "");
                self.account_signed_in();
                self.select_conversation(&general);
                self.show_conversation(&general);
                self.refill_from_history(&user);
                self.request_sync();
                imp.composer.focus();
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
                reply_to,
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
                    reply_to,
                    ..MessageData::default()
                });
                imp.message_list.stick_to_bottom();
            }
            Event::Message {
                conv,
                id,
                seq,
                from,
                text,
                ts,
                reply_to,
                edited,
                mentions_me,
                ..
            } => {
                let mut m = self.received(id, seq, from, text, ts);
                (m.reply_to, m.edited) = (reply_to, edited);
                m.mention = mentions_me;
                self.flush_messages(vec![(conv, vec![m])]);
            }
            e @ (Event::Devices { .. }
            | Event::DeviceAdded { .. }
            | Event::DeviceRemoved { .. }
            | Event::SafetyCode { .. }
            | Event::Verified { .. }
            | Event::VerificationBroken { .. }) => self.handle_e2e_event(e),
            Event::KeyChanged { user, new, .. } => {
                let short: String = new.chars().take(16).collect();
                let text = gettext_with(
                    "{user}'s safety key changed (now {key}…). This happens when {user} reinstalls LiveWire or signs in on a new device — but it can also mean someone is intercepting. If in doubt, check with {user} in person.",
                    &[("user", &user), ("key", &short)],
                );
                let c = self.conversation_for(&format!("@{user}"));
                c.add_notice(&text, now_ms());
                self.show_toast(&gettext_with(
                    "{user}'s safety key changed: see your conversation with {user}.",
                    &[("user", &user)],
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
                        edited: m.edited,
                        reply_to: m.reply_to,
                        reactions: m.reactions,
                        mention: m.mentions_me,
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
            // Rooms: `rooms.rs`.
            e @ (Event::RoomState { .. }
            | Event::Rooms { .. }
            | Event::Joined { .. }
            | Event::Left { .. }
            | Event::Invited { .. }
            | Event::Member { .. }
            | Event::Topic { .. }
            | Event::Members { .. }) => self.handle_room_event(e),
            // Read state, typing: `read_state.rs`.
            e @ (Event::Read { .. }
            | Event::Seen { .. }
            | Event::SeenBy { .. }
            | Event::Typing { .. }
            | Event::Receipts { .. }) => self.handle_read_event(e),
            // A figure for scripts and tests; the window has nothing to show for it.
            Event::Streams { .. } => {}
            // Which node of a cluster: the subtitle names the server as typed.
            Event::Server { .. } => {}
            // Edits and reactions: `edits.rs`.
            e @ (Event::Edited { .. } | Event::Reaction { .. }) => self.handle_edit_event(e),
            Event::Search { results } => self.show_search_results(results),
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
                if code == ErrorCode::NotOpen {
                    // The echo of a conversation that failed to open (reported already):
                    // a history request queued behind the open.
                    return;
                }
                if self.room_error_in_dialog(code, &message) {
                    return;
                }
                self.show_toast(&user_facing(code, &message));
            }
            // File transfers are started from scripted mode only so far.
            Event::Transfer {
                direction,
                bytes,
                total,
                ..
            } => imp.composer.show_transfer(&direction, bytes, total),
            Event::Downloaded { path, .. } => {
                imp.composer.hide_transfer();
                self.show_toast(&gettext_with("Downloaded {path}", &[("path", &path)]));
                // Open it with the desktop's default application, where there is one.
                let uri = gio::File::for_path(&path).uri();
                let _ = gio::AppInfo::launch_default_for_uri(&uri, None::<&gio::AppLaunchContext>);
            }
            Event::Cancelled { .. } => self.show_toast(&gettext("Transfer cancelled")),
        }
    }

    /// After login: the newest page of every conversation this device knows (the
    /// catch-up only brings what is newer than the saved position).
    fn refill_from_history(&self, user: &str) {
        let me_key = user.to_ascii_lowercase();
        let imp = self.imp();
        let file =
            imp.session.borrow().as_ref().map(|s| {
                paths::state_file(&imp.state_dir.borrow(), &s.form.server(), &s.form.user)
            });
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

    /// The chat with the window's title, subtitle and sidebar line of `user` on `server`.
    pub(super) fn show_account_chrome(&self, user: &str, server: &str) {
        let imp = self.imp();
        self.set_chat_visible(true);
        imp.title_label.set_text("LiveWire");
        imp.subtitle_label.set_text(&gettext_with(
            "{user} on {server}",
            &[("user", &user), ("server", &server)],
        ));
        imp.sidebar.set_me(&gettext_with(
            "Signed in as {user} · {server}",
            &[("user", &user), ("server", &server)],
        ));
        self.set_title(Some(&gettext_with("LiveWire — {user}", &[("user", &user)])));
    }

    /// Online or reconnecting: the banner and the composer follow.
    pub(super) fn set_connection_state(&self, online: bool, reason: &str) {
        let imp = self.imp();
        if let Some(s) = imp.session.borrow_mut().as_mut() {
            s.online = online;
            s.offline_reason = reason.to_owned();
        }
        imp.banner.set_reveal_child(!online);
        imp.banner_spinner.set_spinning(!online);
        if !online {
            imp.banner_label.set_text(&gettext_with(
                "Connection lost ({reason}). Reconnecting… Messages you sent are kept and delivered once the connection is back.",
                &[("reason", &reason)],
            ));
        }
        imp.composer.set_online(online, reason);
    }
}
