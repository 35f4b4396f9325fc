//! Desktop notifications: which messages notify, and what clicking one does.
//!
//! - **Who notifies** ([`should_notify`]): private messages and mentions of the user's
//!   name; other room messages only with Preferences' *Every Room Message*. A muted
//!   conversation stays quiet except for a mention (as in Element and Fractal: muting a
//!   busy room must not hide someone calling you by name).
//! - **A mention** is the core's `mentions_me` (`crate::app::mentions`): `@name` as a whole
//!   token, matched by the look-alike skeleton of account names (`@B0B` reaches bob),
//!   never an e-mail address.
//! - **Clicking** a notification activates its default action, `app.open-conversation`,
//!   with the target `(window id, account, conversation)`: the window (an app can hold
//!   several client windows, as `livewire demo` does) comes to the front, shows the
//!   account (a window can hold several: `user@host:port`) and opens that conversation.
//!   The window id is the `GtkApplicationWindow` id, unique in the process.

use gtk::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use crate::gui::LwClientWindow;
use crate::gui::preferences::Preferences;

/// The name of the application action a notification's default action activates.
pub const OPEN_CONVERSATION: &str = "open-conversation";

/// Whether a message that arrived while the window is in the background notifies.
pub fn should_notify(prefs: &Preferences, private: bool, muted: bool, mention: bool) -> bool {
    if !prefs.notifications {
        return false;
    }
    if mention {
        return true;
    }
    !muted && (private || prefs.notify_all_room_messages)
}

/// The notification's default action:
/// `app.open-conversation((window id, account, conversation))`.
pub fn default_action(window_id: u32, account: &str, conv: &str) -> (String, glib::Variant) {
    (
        format!("app.{OPEN_CONVERSATION}"),
        (window_id, account.to_owned(), conv.to_owned()).to_variant(),
    )
}

/// Adds `app.open-conversation` to the application.
pub fn add_open_conversation_action(app: &impl IsA<gtk::Application>) {
    let action = gio::SimpleAction::new(
        OPEN_CONVERSATION,
        Some(&<(u32, String, String)>::static_variant_type()),
    );
    let weak = app.as_ref().downgrade();
    action.connect_activate(move |_, param| {
        let (Some(app), Some((id, account, conv))) = (
            weak.upgrade(),
            param.and_then(|p| p.get::<(u32, String, String)>()),
        ) else {
            return;
        };
        // The window that sent it; if it was closed since, the first client window.
        let win = app
            .window_by_id(id)
            .and_downcast::<LwClientWindow>()
            .or_else(|| {
                app.windows()
                    .into_iter()
                    .find_map(|w| w.downcast::<LwClientWindow>().ok())
            });
        if let Some(win) = win {
            win.open_from_notification(&account, &conv);
        }
    });
    app.as_ref().add_action(&action);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_notifies() {
        let on = Preferences::default();
        // private messages notify, plain room messages do not by default
        assert!(should_notify(&on, true, false, false));
        assert!(!should_notify(&on, false, false, false));
        // muted: quiet, except for a mention
        assert!(!should_notify(&on, true, true, false));
        assert!(should_notify(&on, false, true, true));
        let all = Preferences {
            notify_all_room_messages: true,
            ..Preferences::default()
        };
        assert!(should_notify(&all, false, false, false));
        assert!(!should_notify(&all, false, true, false));
        let off = Preferences {
            notifications: false,
            ..Preferences::default()
        };
        assert!(!should_notify(&off, true, false, true));
    }
}
