//! Several accounts in one window: another server, or another user of the same one.
//!
//! Each account is one login ([`Session`]: its own client driver, event loop, sync
//! position, identity key and state file, as separate windows have). The window *shows*
//! one of them: its conversations are in the sidebar's list, its current conversation in
//! the message list. The others are *parked* here ([`Account`]) with their conversation
//! models, invitations, who is online and the conversation they showed; their sessions
//! keep running (nothing reconnects on a switch) and the events they bring wait in the
//! account, in order, until it is shown again and they are applied as if they had just
//! come. Meanwhile a parked account counts the messages from others that arrive
//! (the switcher's unread total per account), puts them on the live status line for
//! screen readers ("New message for carol@host:port from bob in @bob: …") and sends their
//! desktop notifications,
//! whose target names the account, so clicking one switches to it first.
//!
//! The switcher is the menu button at the top of the sidebar: one radio item per account
//! with its unread total (`win.switch-account`, u32 index; Ctrl+Alt+1…9), and *Add
//! Account…* (`win.add-account`), which opens the connect page with *Back to Your
//! Accounts*. *Log Out* logs the account shown out and shows the next one.

use std::collections::BTreeMap;

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use super::LwClientWindow;
use super::session::Session;
use crate::app::client::Event;
use crate::app::ids::GENERAL;
use crate::gui::i18n::{gettext, gettext_with};
use crate::gui::models::LwConversation;
use crate::gui::notifications::should_notify;
use crate::gui::preferences::mute_key;
use crate::gui::settings::RememberedLogin;
use crate::transport::client::ClientEvent;

/// How many accounts Ctrl+Alt+1…9 reach (the switcher lists them all).
pub const SWITCH_KEYS: u32 = 9;

/// A signed-in account that is not shown.
pub(super) struct Account {
    /// Its generation: the id its event loop carries.
    id: u64,
    session: Session,
    conversations: Vec<LwConversation>,
    invitations: Vec<glib::Object>,
    current: Option<LwConversation>,
    online: BTreeMap<String, String>,
    new_chat: Option<String>,
    pending_room: Option<String>,
    /// Its "Send Read Receipts" setting.
    receipts: bool,
    /// Events that came while parked, in order.
    queued: Vec<ClientEvent>,
    /// Unread messages: its conversations' counts when parked, plus messages from others
    /// since.
    unread: u32,
}

/// The key naming an account in notifications and tests: `user@host:port`, lowercase.
pub fn account_key(user: &str, server: &str) -> String {
    format!("{user}@{server}").to_lowercase()
}

fn session_key(s: &Session) -> String {
    account_key(s.user.as_deref().unwrap_or(&s.form.user), &s.form.server())
}

/// One account as the switcher shows it (also for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    /// [`account_key`].
    pub key: String,
    /// Username as registered.
    pub user: String,
    /// `host:port`.
    pub server: String,
    /// Unread messages in all its conversations.
    pub unread: u32,
    /// It is the account shown.
    pub active: bool,
}

impl LwClientWindow {
    /// A generation never handed out before.
    pub(super) fn new_generation(&self) -> u64 {
        let imp = self.imp();
        let g = imp.last_generation.get() + 1;
        imp.last_generation.set(g);
        g
    }

    /// The accounts of this window, in the order they signed in.
    pub fn accounts(&self) -> Vec<AccountSummary> {
        let imp = self.imp();
        let active = imp.generation.get();
        let parked = imp.parked.borrow();
        let session = imp.session.borrow();
        imp.account_order
            .borrow()
            .iter()
            .filter_map(|&id| {
                let (s, unread) = if id == active {
                    let s = session.as_ref()?;
                    (s, self.unread_total())
                } else {
                    let a = parked.iter().find(|a| a.id == id)?;
                    (&a.session, a.unread)
                };
                Some(AccountSummary {
                    key: session_key(s),
                    user: s.user.clone().unwrap_or_else(|| s.form.user.clone()),
                    server: s.form.server(),
                    unread,
                    active: id == active,
                })
            })
            .collect()
    }

    /// Unread messages in the conversations shown.
    fn unread_total(&self) -> u32 {
        let convs = self.conversations();
        (0..convs.n_items())
            .filter_map(|i| convs.item(i).and_downcast::<LwConversation>())
            .map(|c| c.unread())
            .sum()
    }

    /// The actions of the switcher and their keys; the unread totals follow the models.
    pub(super) fn setup_accounts(&self) {
        self.add_action_entries([
            gio::ActionEntry::builder("switch-account")
                .parameter_type(Some(glib::VariantTy::UINT32))
                .state(0u32.to_variant())
                .activate(|win: &Self, _, p| {
                    if let Some(i) = p.and_then(|p| p.get::<u32>()) {
                        win.switch_account(i as usize);
                    }
                })
                .build(),
            gio::ActionEntry::builder("add-account")
                .activate(|win: &Self, _, _| win.add_account())
                .build(),
        ]);
        let menu = gio::Menu::new();
        let list = gio::Menu::new();
        menu.append_section(None, &list);
        let more = gio::Menu::new();
        more.append(Some(&gettext("_Add Account…")), Some("win.add-account"));
        menu.append_section(None, &more);
        self.imp().sidebar.set_accounts_menu(menu.upcast_ref());
        self.imp().account_menu.replace(Some(list));
        self.refresh_accounts();
    }

    /// The switcher's label, badge and menu, and the actions' states, from the accounts.
    pub(super) fn refresh_accounts(&self) {
        let accounts = self.accounts();
        let logged_in = self.is_logged_in();
        {
            // Unchanged: nothing to redo (an event batch calls this).
            let mut last = self.imp().shown_accounts.borrow_mut();
            if last.as_ref() == Some(&(accounts.clone(), logged_in)) {
                return;
            }
            last.replace((accounts.clone(), logged_in));
        }
        // One menu for the window's life, changed in place: an open switcher follows.
        let Some(list) = self.imp().account_menu.borrow().clone() else {
            return;
        };
        list.remove_all();
        let mut active_index = 0u32;
        for (i, a) in accounts.iter().enumerate() {
            let label = if a.unread > 0 {
                gettext_with(
                    "{user} on {server} ({count} unread)",
                    &[
                        ("user", &a.user),
                        ("server", &a.server),
                        ("count", &a.unread),
                    ],
                )
            } else {
                gettext_with(
                    "{user} on {server}",
                    &[("user", &a.user), ("server", &a.server)],
                )
            };
            let item = gio::MenuItem::new(Some(&label), None);
            item.set_action_and_target_value(
                Some("win.switch-account"),
                Some(&(i as u32).to_variant()),
            );
            if (i as u32) < SWITCH_KEYS {
                item.set_attribute_value(
                    "accel",
                    Some(&format!("<Control><Alt>{}", i + 1).to_variant()),
                );
            }
            list.append_item(&item);
            if a.active {
                active_index = i as u32;
            }
        }
        let shown = accounts.iter().find(|a| a.active);
        let label = shown.map_or_else(
            || gettext("Adding an account"),
            |a| {
                gettext_with(
                    "{user} on {server}",
                    &[("user", &a.user), ("server", &a.server)],
                )
            },
        );
        let others: u32 = accounts
            .iter()
            .filter(|a| !a.active)
            .map(|a| a.unread)
            .sum();
        self.imp().sidebar.set_accounts(&label, others);
        if let Some(action) = self
            .lookup_action("switch-account")
            .and_downcast::<gio::SimpleAction>()
        {
            action.set_state(&active_index.to_variant());
            action.set_enabled(!accounts.is_empty());
        }
        if let Some(action) = self
            .lookup_action("add-account")
            .and_downcast::<gio::SimpleAction>()
        {
            action.set_enabled(logged_in);
        }
    }

    /// The account shown signed in (`Ready`): it joins the switcher.
    pub(super) fn account_signed_in(&self) {
        let imp = self.imp();
        let id = imp.generation.get();
        {
            let mut order = imp.account_order.borrow_mut();
            if !order.contains(&id) {
                order.push(id);
            }
        }
        imp.connect_page.set_can_cancel(false);
        self.refresh_accounts();
    }

    /// An account is gone (logged out or its session ended): out of the switcher.
    pub(super) fn forget_account(&self, id: u64) {
        self.imp().account_order.borrow_mut().retain(|&i| i != id);
        self.refresh_accounts();
    }

    /// The events of the account whose generation is `id`: the account shown applies
    /// them, a parked one keeps them. False when no account has that id any more (its
    /// loop then ends).
    pub(super) fn route_events(&self, batch: Vec<ClientEvent>, id: u64) -> bool {
        let imp = self.imp();
        if imp.generation.get() == id && imp.session.borrow().is_some() {
            self.handle_events(batch, id);
            self.refresh_accounts();
            return true;
        }
        if !imp.parked.borrow().iter().any(|a| a.id == id) {
            return false;
        }
        for ev in batch {
            if !self.park_event(id, ev) {
                return false;
            }
        }
        self.refresh_accounts();
        true
    }

    /// One event of a parked account: kept, counted and notified; the account is dropped
    /// when its session ends. False once the account is gone.
    fn park_event(&self, id: u64, ev: ClientEvent) -> bool {
        let imp = self.imp();
        if matches!(ev, ClientEvent::Fatal(_) | ClientEvent::Ended) {
            let gone = {
                let mut parked = imp.parked.borrow_mut();
                let pos = parked.iter().position(|a| a.id == id);
                pos.map(|p| parked.remove(p))
            };
            if let Some(a) = gone {
                a.session.handle.close();
                self.forget_account(id);
                let why = match &ev {
                    ClientEvent::Fatal(f) => super::user_facing::user_facing_fatal(f).0,
                    _ => gettext("the session ended"),
                };
                self.show_toast(&gettext_with(
                    "{account} was signed out: {reason}",
                    &[("account", &session_key(&a.session)), ("reason", &why)],
                ));
            }
            return false;
        }
        let mut notify = None;
        let mut announce = None;
        let mut broken = None;
        {
            let mut parked = imp.parked.borrow_mut();
            let Some(a) = parked.iter_mut().find(|a| a.id == id) else {
                return false;
            };
            match &ev {
                ClientEvent::App(Event::Message {
                    conv,
                    from,
                    text,
                    mentions_me,
                    ..
                }) if !a.session.catching_up => {
                    let me = a.session.user.clone().unwrap_or_default();
                    if !from.eq_ignore_ascii_case(&me) {
                        a.unread += 1;
                        if let Some(text) = text {
                            announce = Some(gettext_with(
                                "New message for {account} from {from} in {conv}: {text}",
                                &[
                                    ("account", &session_key(&a.session)),
                                    ("from", from),
                                    ("conv", conv),
                                    ("text", text),
                                ],
                            ));
                            let muted = imp.prefs.borrow().is_muted(&mute_key(
                                &me,
                                &a.session.form.server(),
                                conv,
                            ));
                            let private = conv.starts_with('@');
                            if should_notify(&imp.prefs.borrow(), private, muted, *mentions_me) {
                                notify = Some((
                                    session_key(&a.session),
                                    conv.clone(),
                                    from.clone(),
                                    text.clone(),
                                ));
                            }
                        }
                    }
                }
                // A broken verification cannot wait until the account is shown again (its
                // bar and sidebar mark come then, when the queue is applied).
                ClientEvent::App(Event::VerificationBroken { user }) => {
                    broken = Some(gettext_with(
                        "⚠ {account}: {user}'s devices changed since you verified them",
                        &[("account", &session_key(&a.session)), ("user", user)],
                    ));
                }
                ClientEvent::App(Event::Sync) => a.session.catching_up = false,
                ClientEvent::App(Event::Disconnected { .. }) => a.session.online = false,
                ClientEvent::App(Event::Reconnected { .. }) => a.session.online = true,
                _ => {}
            }
            a.queued.push(ev);
        }
        if let Some(text) = broken {
            self.show_toast(&text);
            imp.announcer.set_text(&text);
        }
        // Screen readers hear of it on the live status line, as of the account shown.
        if let Some(text) = announce {
            imp.announcer.set_text(&text);
        }
        if let Some((account, conv, from, text)) = notify {
            self.notify_account(&account, &conv, &from, &text);
        }
        true
    }

    /// Puts the account shown away (its session keeps running) and empties the view.
    /// False when no account was signed in.
    fn park_active(&self) -> bool {
        let imp = self.imp();
        if !self.is_logged_in() {
            return false;
        }
        let Some(session) = imp.session.take() else {
            return false;
        };
        let id = imp.generation.get();
        let convs = self.conversations();
        let conversations: Vec<LwConversation> = (0..convs.n_items())
            .filter_map(|i| convs.item(i).and_downcast::<LwConversation>())
            .collect();
        let unread = conversations.iter().map(|c| c.unread()).sum();
        let invs = self.invitations();
        let invitations: Vec<glib::Object> =
            (0..invs.n_items()).filter_map(|i| invs.item(i)).collect();
        let receipts = self.receipts_on();
        let account = Account {
            id,
            session,
            conversations,
            invitations,
            current: imp.current.borrow().clone(),
            online: imp.online.borrow().clone(),
            new_chat: imp.new_chat.borrow().clone(),
            pending_room: imp.pending_room.borrow().clone(),
            receipts,
            queued: Vec::new(),
            unread,
        };
        imp.generation.set(self.new_generation());
        imp.composer.cancel_mode();
        self.clear_account_view();
        imp.parked.borrow_mut().push(account);
        true
    }

    /// Shows a parked account: its models back in the sidebar, its conversation, its
    /// connection state; then the events it kept are applied.
    fn show_account(&self, a: Account) {
        let imp = self.imp();
        let Account {
            id,
            session,
            conversations,
            invitations,
            current,
            online,
            new_chat,
            pending_room,
            receipts,
            queued,
            ..
        } = a;
        let user = session.user.clone().unwrap_or_default();
        let server = session.form.server();
        let (is_online, reason) = (session.online, session.offline_reason.clone());
        imp.message_list
            .set_delete_window_secs(session.delete_window_secs);
        imp.session.replace(Some(session));
        imp.generation.set(id);
        imp.online.replace(online);
        imp.new_chat.replace(new_chat);
        imp.pending_room.replace(pending_room);
        self.conversations().splice(0, 0, &conversations);
        self.invitations().splice(0, 0, &invitations);
        self.set_receipts_state(receipts);
        imp.connect_page.set_can_cancel(false);
        imp.connect_page.hide_trust();
        self.show_account_chrome(&user, &server);
        self.set_connection_state(is_online, &reason);
        self.refresh_presence();
        let shown = current
            .filter(|c| self.conversations().find(c).is_some())
            .or_else(|| self.conversation(GENERAL));
        if let Some(c) = shown {
            self.select_conversation(&c);
            self.show_conversation(&c);
        }
        imp.replaying.set(true);
        self.handle_events(queued, id);
        imp.replaying.set(false);
        self.refresh_accounts();
        imp.composer.focus();
    }

    /// Shows the most recently shown parked account. False when there is none.
    pub(super) fn show_parked_account(&self) -> bool {
        let last = self.imp().parked.borrow_mut().pop();
        match last {
            Some(a) => {
                self.show_account(a);
                true
            }
            None => false,
        }
    }

    /// Shows the account at `index` of the switcher (Ctrl+Alt+1 is 0). Nothing reconnects.
    pub fn switch_account(&self, index: usize) {
        let imp = self.imp();
        let Some(id) = imp.account_order.borrow().get(index).copied() else {
            return;
        };
        if id == imp.generation.get() && self.is_logged_in() {
            return;
        }
        if !self.park_active() {
            // Adding an account: a sign-in under way is given up.
            self.end_session();
            imp.pending_trust.replace(None);
            imp.connect_page.set_connecting(false, "");
        }
        let account = {
            let mut parked = imp.parked.borrow_mut();
            let pos = parked.iter().position(|a| a.id == id);
            pos.map(|p| parked.remove(p))
        };
        if let Some(a) = account {
            self.show_account(a);
        }
    }

    /// Ends the sessions of the accounts in the background (the window closes).
    pub(super) fn end_parked_sessions(&self) {
        for a in self.imp().parked.take() {
            a.session.handle.send(crate::app::client::Command::Logout);
            a.session.handle.close();
        }
    }

    /// Shows the account named `key` ([`account_key`]); false if it is not signed in here.
    pub fn switch_to_account(&self, key: &str) -> bool {
        match self.accounts().iter().position(|a| a.key == key) {
            Some(i) => {
                self.switch_account(i);
                true
            }
            None => false,
        }
    }

    /// *Add Account…*: the account shown goes to the background (still signed in) and the
    /// connect page opens, filled with a remembered login not signed in here.
    pub fn add_account(&self) {
        if !self.park_active() {
            return;
        }
        let imp = self.imp();
        let signed_in = self.accounts();
        let config_dir = imp.config_dir.borrow().clone();
        let next = RememberedLogin::load_all(&config_dir)
            .into_iter()
            .find(|r| {
                let key = account_key(
                    &r.user,
                    &crate::transport::failover::with_default_port(&r.host, r.port),
                );
                !signed_in.iter().any(|a| a.key == key)
            });
        match next {
            Some(r) => imp.connect_page.set_remembered(&r.host, r.port, &r.user),
            None => imp.connect_page.clear_form(),
        }
        self.show_connect_page();
    }

    /// *Back to Your Accounts*: a sign-in under way is given up and the account shown last
    /// comes back.
    pub(super) fn cancel_add_account(&self) {
        let imp = self.imp();
        if imp.parked.borrow().is_empty() {
            return;
        }
        self.end_session();
        imp.pending_trust.replace(None);
        imp.connect_page.hide_trust();
        imp.connect_page.set_connecting(false, "");
        self.show_connect_error("", false);
        self.show_parked_account();
    }

    /// A login for `user` on `server` that is already signed in here: shows it instead of
    /// signing in twice. True if it did.
    pub(super) fn show_if_signed_in(&self, user: &str, server: &str) -> bool {
        let key = account_key(user, server);
        if !self.accounts().iter().any(|a| a.key == key) {
            return false;
        }
        self.switch_to_account(&key);
        self.show_toast(&gettext_with(
            "{user} on {server} is signed in already.",
            &[("user", &user), ("server", &server)],
        ));
        true
    }

    /// *Back to Your Accounts* is offered on the connect page.
    pub fn can_cancel_add(&self) -> bool {
        self.imp().connect_page.can_cancel()
    }

    /// The unread messages of the other accounts, as the switcher's badge shows them.
    pub fn switcher_badge(&self) -> u32 {
        self.imp().sidebar.account_badge()
    }

    /// The account switcher (a menu button at the top of the sidebar).
    pub fn switcher_button(&self) -> gtk::MenuButton {
        self.imp().sidebar.account_button()
    }
}
