//! The client window's desktop notifications: what it sends (one per conversation, with
//! `app.open-conversation` as the default action), the Mute toggle, and what clicking a
//! notification does. The rules are in [`crate::gui::notifications`].

use gtk::gio;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use super::LwClientWindow;
use super::accounts::account_key;
use crate::app::ids::GENERAL;
use crate::gui::i18n::gettext;
use crate::gui::models::MessageData;
use crate::gui::notifications::{default_action, should_notify};
use crate::gui::preferences::mute_key;

impl LwClientWindow {
    /// The [`mute_key`] of conversation `conv` for the account signed in, if any.
    fn mute_key_of(&self, conv: &str) -> Option<String> {
        let session = self.imp().session.borrow();
        let s = session.as_ref()?;
        Some(mute_key(s.user.as_deref()?, &s.form.server(), conv))
    }

    /// Whether `conv` is muted for the account signed in.
    pub fn is_muted(&self, conv: &str) -> bool {
        self.mute_key_of(conv)
            .is_some_and(|k| self.imp().prefs.borrow().is_muted(&k))
    }

    /// Mutes or unmutes `conv` for the account signed in (saved at once).
    pub fn set_muted(&self, conv: &str, muted: bool) {
        let Some(key) = self.mute_key_of(conv) else {
            return;
        };
        self.update_preferences(|p| {
            if muted {
                p.muted.insert(key);
            } else {
                p.muted.remove(&key);
            }
        });
        self.sync_mute_action();
    }

    /// The `win.mute` toggle shows the state of the conversation shown.
    pub(super) fn sync_mute_action(&self) {
        let muted = self.current().is_some_and(|c| self.is_muted(&c.name()));
        if let Some(action) = self
            .lookup_action("mute")
            .and_downcast::<gio::SimpleAction>()
        {
            action.set_enabled(self.current().is_some());
            action.set_state(&muted.to_variant());
        }
    }

    /// The `win.mute` action (the conversation menu's *Mute*).
    pub(super) fn mute_action() -> gio::ActionEntry<Self> {
        gio::ActionEntry::builder("mute")
            .state(false.to_variant())
            .activate(|win: &Self, action, _| {
                let muted = !action
                    .state()
                    .and_then(|s| s.get::<bool>())
                    .unwrap_or(false);
                if let Some(c) = win.current() {
                    win.set_muted(&c.name(), muted);
                }
            })
            .build()
    }

    /// New messages from others arrived in `conv` while the window is in the background:
    /// one notification for the conversation if the rules say so (the newest mention, else
    /// the newest message).
    pub(super) fn notify_messages(&self, conv: &str, incoming: &[MessageData]) {
        let texts = || {
            incoming
                .iter()
                .rev()
                .filter_map(|m| Some((m, m.text.as_deref()?)))
        };
        // The core's word on mentions (`crate::app::mentions`: look-alike names too).
        let mention = texts().find(|(m, _)| m.mention);
        let private = conv.starts_with('@');
        let prefs = self.imp().prefs.borrow().clone();
        if !should_notify(&prefs, private, self.is_muted(conv), mention.is_some()) {
            return;
        }
        if let Some((m, text)) = mention.or_else(|| texts().next()) {
            self.notify(conv, &m.from, text);
        }
    }

    /// The [`account_key`] of the account shown ("" when none is signed in).
    fn shown_account_key(&self) -> String {
        self.imp()
            .session
            .borrow()
            .as_ref()
            .and_then(|s| Some(account_key(s.user.as_deref()?, &s.form.server())))
            .unwrap_or_default()
    }

    /// Sends a desktop notification about `conv` of the account shown (replacing the
    /// previous one of that conversation); clicking it opens the conversation here.
    pub(super) fn notify(&self, conv: &str, from: &str, text: &str) {
        self.notify_account(&self.shown_account_key(), conv, from, text);
    }

    /// Sends a desktop notification about `conv` of `account` ([`account_key`]), replacing
    /// the previous one of that conversation; clicking it shows the account and opens the
    /// conversation in this window.
    pub(super) fn notify_account(&self, account: &str, conv: &str, from: &str, text: &str) {
        let Some(app) = self.application() else {
            return;
        };
        if app.dbus_connection().is_none() {
            // No session bus: no notification service to talk to.
            return;
        }
        let title = if conv.starts_with('#') {
            // Translators: a notification's title, e.g. "bob in #general".
            gettext("{from} in {conv}")
                .replace("{from}", from)
                .replace("{conv}", conv)
        } else {
            from.to_owned()
        };
        let n = gio::Notification::new(&title);
        let body: String = text.chars().take(200).collect();
        n.set_body(Some(&body));
        let target = if conv.is_empty() { GENERAL } else { conv };
        let (action, target) = default_action(self.id(), account, target);
        n.set_default_action_and_target_value(&action, Some(&target));
        app.send_notification(Some(&self.notification_id(account, conv)), &n);
    }

    /// One notification per window, account and conversation.
    fn notification_id(&self, account: &str, conv: &str) -> String {
        format!("livewire-{}-{account}-{}", self.id(), conv.to_lowercase())
    }

    /// Puts the newest of `incoming` on the live status line, for screen readers (see
    /// [`crate::gui::a11y`]); the focus stays where it is.
    pub(super) fn announce_messages(&self, conv: &str, incoming: &[MessageData]) {
        let Some(m) = incoming.iter().rev().find(|m| m.text.is_some()) else {
            return;
        };
        let text = gettext("New message from {from} in {conv}: {text}")
            .replace("{from}", &m.from)
            .replace("{conv}", conv)
            .replace("{text}", m.text.as_deref().unwrap_or_default());
        self.imp().announcer.set_text(&text);
    }

    /// The live status line's text (the last announcement).
    pub fn announcement(&self) -> String {
        self.imp().announcer.text().to_string()
    }

    /// What clicking a notification does: the window comes to the front showing `conv`
    /// of `account` ([`account_key`]; switched to first if it is in the background, the
    /// account shown if empty).
    pub fn open_from_notification(&self, account: &str, conv: &str) {
        self.present();
        if !account.is_empty() && account != self.shown_account_key() {
            self.switch_to_account(account);
        }
        if self.is_logged_in() && !conv.is_empty() {
            let c = self.open_conversation(conv);
            self.show_content_page();
            if let Some(app) = self.application() {
                app.withdraw_notification(
                    &self.notification_id(&self.shown_account_key(), &c.name()),
                );
            }
        }
    }
}
