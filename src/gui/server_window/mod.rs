//! `LwServerWindow`: runs a [`Server`] on the shared runtime and shows its clients and
//! activity.
//!
//! The server's operator events arrive on a tokio channel; a tokio task forwards them into
//! an `async_channel` that one `glib::spawn_future_local` loop drains into the models.

mod imp;
mod rooms;

use std::net::{IpAddr, SocketAddr};

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use crate::app::ids::ConnId;
use crate::app::server::ServerLog;
use crate::gui::i18n::{gettext, gettext_with};
use crate::gui::models::{ClientEntryData, LwClientEntry, position};
use crate::gui::runtime;
use crate::store::SqliteStore;
use crate::transport::server::{Server, ServerEvent, ServerOptions};

glib::wrapper! {
    /// The server window.
    pub struct LwServerWindow(ObjectSubclass<imp::LwServerWindow>)
        @extends adw::ApplicationWindow, gtk::ApplicationWindow, gtk::Window, gtk::Widget,
        @implements gio::ActionGroup, gio::ActionMap, gtk::Buildable,
                    gtk::ConstraintTarget, gtk::Native, gtk::Root, gtk::ShortcutManager;
}

/// Longest log kept in the window.
const MAX_LOG_LINES: usize = 5000;

fn now_secs() -> i64 {
    glib::DateTime::now_local()
        .map(|t| t.to_unix())
        .unwrap_or_default()
}

fn clock(secs: i64) -> String {
    glib::DateTime::from_unix_local(secs)
        .and_then(|t| t.format("%H:%M:%S"))
        .map(|s| s.to_string())
        .unwrap_or_default()
}

impl LwServerWindow {
    /// A server window; `opts` gives the initial listen address, data dir and limits.
    pub fn new(app: &impl IsA<gtk::Application>, opts: ServerOptions) -> Self {
        let win: Self = glib::Object::builder().property("application", app).build();
        let imp = win.imp();
        imp.address_entry.set_text(&opts.listen.ip().to_string());
        imp.port_entry.set_text(&opts.listen.port().to_string());
        imp.options.replace(Some(opts));
        win
    }

    fn setup(&self) {
        self.add_action_entries([gio::ActionEntry::builder("about")
            .activate(|win: &Self, _, _| {
                crate::gui::about::show_about(win);
            })
            .build()]);
        let imp = self.imp();
        let clients = gio::ListStore::new::<LwClientEntry>();
        imp.clients.replace(Some(clients.clone()));
        let view = &imp.clients_view;
        view.set_model(Some(&gtk::NoSelection::new(Some(clients.clone()))));
        let text_column = |title: &str, expand: bool, f: fn(&ClientEntryData) -> String| {
            let factory = gtk::SignalListItemFactory::new();
            factory.connect_setup(|_, item| {
                if let Some(item) = item.downcast_ref::<gtk::ListItem>() {
                    let label = gtk::Label::builder().xalign(0.0).build();
                    item.set_child(Some(&label));
                }
            });
            factory.connect_bind(move |_, item| {
                let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                    return;
                };
                if let (Some(label), Some(entry)) = (
                    item.child().and_downcast::<gtk::Label>(),
                    item.item().and_downcast::<LwClientEntry>(),
                ) {
                    label.set_text(&f(&entry.data()));
                }
            });
            let col = gtk::ColumnViewColumn::new(Some(title), Some(factory));
            col.set_expand(expand);
            col.set_resizable(true);
            col
        };
        view.append_column(&text_column(&gettext("User"), true, |d| d.user.clone()));
        view.append_column(&text_column(&gettext("Address"), true, |d| d.addr.clone()));
        view.append_column(&text_column(&gettext("Connected since"), false, |d| {
            clock(d.since)
        }));
        view.append_column(&text_column(&gettext("Messages"), false, |d| {
            d.messages.to_string()
        }));
        let kick = gtk::SignalListItemFactory::new();
        kick.connect_setup(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |_, item| {
                let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                    return;
                };
                let button = gtk::Button::builder()
                    .label(gettext("Disconnect"))
                    .css_classes(["flat", "destructive-action"])
                    .build();
                let weak_item = item.downgrade();
                button.connect_clicked(glib::clone!(
                    #[weak]
                    win,
                    move |_| {
                        if let Some(entry) = weak_item
                            .upgrade()
                            .and_then(|i| i.item())
                            .and_downcast::<LwClientEntry>()
                        {
                            win.kick(entry.data().conn);
                        }
                    }
                ));
                item.set_child(Some(&button));
            }
        ));
        view.append_column(&gtk::ColumnViewColumn::new(None, Some(kick)));

        self.update_clients_heading();
        self.setup_rooms();
    }

    /// Runs `f` each time the server has started listening.
    pub fn connect_started(&self, f: impl Fn(&Self, SocketAddr, &str) + 'static) {
        self.imp().on_started.borrow_mut().push(Box::new(f));
    }

    /// The start button (tests click it).
    pub fn start_button(&self) -> gtk::Button {
        self.imp().start_button.get()
    }

    /// Sets the listen address fields.
    pub fn set_listen(&self, addr: SocketAddr) {
        self.imp().address_entry.set_text(&addr.ip().to_string());
        self.imp().port_entry.set_text(&addr.port().to_string());
    }

    /// The running server's address and fingerprint.
    pub fn running(&self) -> Option<(SocketAddr, String)> {
        self.imp()
            .server
            .borrow()
            .as_ref()
            .map(|s| (s.local_addr(), s.fingerprint().to_owned()))
    }

    /// Connected clients (a `gio::ListStore` of [`LwClientEntry`]).
    pub fn clients(&self) -> gio::ListStore {
        self.imp()
            .clients
            .borrow()
            .clone()
            .expect("created in setup()")
    }

    /// The log lines shown.
    pub fn log_lines(&self) -> Vec<String> {
        self.imp().log.borrow().clone()
    }

    /// The status line.
    pub fn status_text(&self) -> String {
        self.imp().status_label.text().to_string()
    }

    fn set_status(&self, text: &str, running: bool) {
        let imp = self.imp();
        imp.status_label.set_text(text);
        imp.subtitle_label.set_text(text);
        if running {
            imp.status_label.add_css_class("status-running");
            imp.status_label.remove_css_class("status-stopped");
        } else {
            imp.status_label.remove_css_class("status-running");
            imp.status_label.add_css_class("status-stopped");
        }
    }

    fn set_running_ui(&self, running: bool) {
        let imp = self.imp();
        let busy = imp.busy.get();
        imp.start_button.set_sensitive(!running && !busy);
        imp.stop_button.set_sensitive(running && !busy);
        imp.address_entry.set_sensitive(!running && !busy);
        imp.port_entry.set_sensitive(!running && !busy);
        imp.announce_entry.set_sensitive(running);
        imp.announce_button.set_sensitive(running);
        imp.announce_room.set_sensitive(running);
        imp.delete_entry.set_sensitive(running);
        imp.delete_button.set_sensitive(running);
        imp.copy_button.set_sensitive(running);
    }

    fn listen_address(&self) -> Result<SocketAddr, String> {
        let imp = self.imp();
        let ip: IpAddr = imp.address_entry.text().trim().parse().map_err(|_| {
            gettext("The listen address must be an IP address, like 0.0.0.0 or 127.0.0.1.")
        })?;
        let port: u16 = imp
            .port_entry
            .text()
            .trim()
            .parse()
            .map_err(|_| gettext("The port is a number between 0 and 65535."))?;
        Ok(SocketAddr::new(ip, port))
    }

    /// Starts the server with the address in the fields.
    pub fn start(&self) {
        let imp = self.imp();
        if imp.busy.get() || imp.server.borrow().is_some() {
            return;
        }
        let listen = match self.listen_address() {
            Ok(a) => a,
            Err(e) => return self.set_status(&e, false),
        };
        let Some(mut opts) = imp.options.borrow().clone() else {
            return;
        };
        opts.listen = listen;
        imp.busy.set(true);
        self.set_running_ui(false);
        self.set_status(
            &gettext_with("Starting on {address}…", &[("address", &listen)]),
            false,
        );
        let generation = imp.generation.get() + 1;
        imp.generation.set(generation);
        let weak = self.downgrade();
        glib::spawn_future_local(async move {
            let start = async move {
                let store = SqliteStore::open(&opts.data_dir).map_err(|e| e.to_string())?;
                Server::start(opts, store).await.map_err(|e| e.to_string())
            };
            let result = runtime::spawn(start).await;
            let Some(win) = weak.upgrade() else { return };
            win.imp().busy.set(false);
            match result {
                Ok(Ok(server)) => win.started(server, generation),
                Ok(Err(e)) => {
                    win.set_status(
                        &gettext_with("Could not start: {error}", &[("error", &e)]),
                        false,
                    );
                    win.set_running_ui(false);
                }
                Err(e) => {
                    win.set_status(
                        &gettext_with("Could not start: {error}", &[("error", &e)]),
                        false,
                    );
                    win.set_running_ui(false);
                }
            }
        });
    }

    fn started(&self, mut server: Server, generation: u64) {
        let imp = self.imp();
        let addr = server.local_addr();
        let fp = server.fingerprint().to_owned();
        imp.fingerprint_label.set_text(&fp);
        // Show the port really bound (port 0 picks one), so Start after Stop reuses it and
        // clients find the server again.
        self.set_listen(addr);
        self.set_status(
            &gettext_with("Running on {address}", &[("address", &addr)]),
            true,
        );
        self.log(&format!("Server started on {addr}"));
        if let Some(mut events) = server.take_events() {
            // Bounded: a busy window holds the server's own bounded log back, which then
            // sheds traffic entries instead of growing.
            let (tx, rx) = async_channel::bounded(256);
            runtime::spawn(async move {
                while let Some(ev) = events.recv().await {
                    if tx.send(ev).await.is_err() {
                        break;
                    }
                }
            });
            let weak = self.downgrade();
            glib::spawn_future_local(async move {
                while let Ok(ev) = rx.recv().await {
                    let Some(win) = weak.upgrade() else { break };
                    if win.imp().generation.get() != generation {
                        break;
                    }
                    match ev {
                        ServerEvent::Log(l) => win.handle_log(l),
                        ServerEvent::Dropped(n) => {
                            win.log(&format!("{n} log entries skipped: the window fell behind"))
                        }
                    }
                }
            });
        }
        imp.handle.replace(Some(server.handle()));
        imp.server.replace(Some(server));
        self.set_running_ui(true);
        let callbacks = imp.on_started.take();
        for cb in &callbacks {
            cb(self, addr, &fp);
        }
        let mut cbs = imp.on_started.borrow_mut();
        let added = std::mem::take(&mut *cbs);
        *cbs = callbacks;
        cbs.extend(added);
    }

    /// Stops the server gracefully (clients are told); it can be started again.
    pub fn stop(&self) {
        let imp = self.imp();
        let Some(server) = imp.server.take() else {
            return;
        };
        imp.handle.replace(None);
        imp.generation.set(imp.generation.get() + 1);
        imp.busy.set(true);
        self.set_running_ui(false);
        self.set_status(&gettext("Stopping…"), false);
        let weak = self.downgrade();
        glib::spawn_future_local(async move {
            let _ = runtime::spawn(server.shutdown("the server was stopped by its operator")).await;
            let Some(win) = weak.upgrade() else { return };
            win.imp().busy.set(false);
            win.clients().remove_all();
            win.update_clients_heading();
            win.set_status(&gettext("Stopped"), false);
            win.log("Server stopped");
            win.set_running_ui(false);
        });
    }

    /// Stops the server and waits (used when the window closes).
    fn stop_blocking(&self) {
        let imp = self.imp();
        imp.generation.set(imp.generation.get() + 1);
        if let Some(server) = imp.server.take() {
            let rt = runtime::handle();
            let _ = rt.block_on(rt.spawn(server.shutdown("the server is shutting down")));
        }
    }

    fn kick(&self, conn: u64) {
        if let Some(h) = self.imp().handle.borrow().clone() {
            runtime::spawn(async move { h.kick(ConnId(conn)).await });
        }
    }

    /// Disconnects every connection of `user` (tests use this like the row's button).
    pub fn disconnect_user(&self, user: &str) -> bool {
        let clients = self.clients();
        let conns: Vec<u64> = (0..clients.n_items())
            .filter_map(|i| clients.item(i).and_downcast::<LwClientEntry>())
            .map(|e| e.data())
            .filter(|d| d.user.eq_ignore_ascii_case(user))
            .map(|d| d.conn)
            .collect();
        for c in &conns {
            self.kick(*c);
        }
        !conns.is_empty()
    }

    /// Deletes message `id` of `#general` or a room for everyone, as the operator.
    pub fn delete_message(&self, id: u64) {
        if let Some(h) = self.imp().handle.borrow().clone() {
            runtime::spawn(async move { h.delete_message(id).await });
        }
    }

    /// Adds a line to the activity log (for the window's own notices).
    pub(super) fn log_line(&self, line: &str) {
        self.log(line);
    }

    /// Posts an announcement to `#general` as the server.
    pub fn announce(&self, text: &str) {
        if let Some(h) = self.imp().handle.borrow().clone() {
            let text = text.to_owned();
            runtime::spawn(async move { h.announce(text).await });
        }
    }

    fn update_clients_heading(&self) {
        let n = self.clients().n_items();
        self.imp().clients_heading.set_text(&match n {
            0 => gettext("Connected clients — none"),
            n => gettext_with("Connected clients — {count}", &[("count", &n)]),
        });
    }

    fn log(&self, line: &str) {
        let imp = self.imp();
        let line = format!("{}  {line}", clock(now_secs()));
        let buffer = imp.log_view.buffer();
        let mut end = buffer.end_iter();
        if buffer.char_count() > 0 {
            buffer.insert(&mut end, "\n");
        }
        buffer.insert(&mut end, &line);
        let mut log = imp.log.borrow_mut();
        log.push(line);
        if log.len() > MAX_LOG_LINES {
            let extra = log.len() - MAX_LOG_LINES;
            log.drain(..extra);
            let mut start = buffer.start_iter();
            let mut cut = buffer
                .iter_at_line(extra as i32)
                .unwrap_or(buffer.start_iter());
            buffer.delete(&mut start, &mut cut);
        }
        drop(log);
        let mark = buffer.create_mark(None, &buffer.end_iter(), false);
        imp.log_view.scroll_mark_onscreen(&mark);
        buffer.delete_mark(&mark);
    }

    fn handle_log(&self, ev: ServerLog) {
        let clients = self.clients();
        let find = |conn: ConnId| position::<LwClientEntry>(&clients, |e| e.data().conn == conn.0);
        match ev {
            ServerLog::ClientConnected {
                conn, user, addr, ..
            } => {
                clients.append(&LwClientEntry::new(ClientEntryData {
                    conn: conn.0,
                    user: user.clone(),
                    addr: addr.to_string(),
                    since: now_secs(),
                    messages: 0,
                }));
                self.update_clients_heading();
                self.log(&format!("{user} joined from {addr}"));
            }
            ServerLog::ClientDisconnected { conn, user, addr } => {
                if let Some(pos) = find(conn) {
                    clients.remove(pos);
                }
                self.update_clients_heading();
                self.log(&format!("{user} left ({addr})"));
            }
            ServerLog::ClientMigrated {
                conn,
                user,
                from,
                addr,
            } => {
                if let Some(pos) = find(conn)
                    && let Some(e) = clients.item(pos).and_downcast::<LwClientEntry>()
                {
                    e.update(|d| d.addr = addr.to_string());
                    clients.items_changed(pos, 1, 1);
                }
                self.log(&format!("{user} moved from {from} to {addr}"));
            }
            ServerLog::Message {
                conn,
                id,
                from,
                to,
                text,
            } => {
                if let Some(conn) = conn
                    && let Some(pos) = find(conn)
                    && let Some(e) = clients.item(pos).and_downcast::<LwClientEntry>()
                {
                    e.update(|d| d.messages += 1);
                    clients.items_changed(pos, 1, 1);
                }
                self.room_active(&to);
                match text {
                    Some(t) => self.log(&format!("{from} → {to} [{id}]: {t}")),
                    None => self.log(&format!("{from} → {to}, encrypted")),
                }
            }
            ServerLog::Deleted { by, id, .. } => {
                self.log(&format!("{by} deleted message {id} for everyone"));
            }
            ServerLog::LoginRefused { addr, user, reason } => {
                self.log(&format!("refused login as {user} from {addr}: {reason}"));
            }
            ServerLog::StoreFailed { error, .. } => {
                self.log(&format!("storage error: {error}"));
            }
            e @ (ServerLog::RoomCreated { .. }
            | ServerLog::RoomUpdated { .. }
            | ServerLog::RoomClosed { .. }) => self.handle_room_log(e),
        }
    }
}
