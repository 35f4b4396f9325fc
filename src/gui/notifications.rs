//! Desktop notifications: which messages notify, and what clicking one does.
//!
//! - **Who notifies** ([`should_notify`]): private messages and mentions of the user's
//!   name; other room messages only with Preferences' *Every Room Message*. A muted
//!   conversation stays quiet except for a mention (as in Element and Fractal: muting a
//!   busy room must not hide someone calling you by name).
//! - **A mention** ([`mentions`]) is `@name` as a whole token of the text (case-insensitive,
//!   punctuation around it ignored): `@alice,` and `(@Alice)` mention alice, `bob@alice.org`
//!   and `@alicette` do not.
//! - **Clicking** a notification activates its default action, `app.open-conversation`,
//!   with the target `(window id, conversation)`: the window (an app can hold several
//!   client windows, as `livewire demo` does) comes to the front showing that conversation.
//!   The window id is the `GtkApplicationWindow` id, unique in the process.

use gtk::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use crate::gui::LwClientWindow;
use crate::gui::preferences::Preferences;

/// The name of the application action a notification's default action activates.
pub const OPEN_CONVERSATION: &str = "open-conversation";

/// Whether `text` mentions `me` (`@me` as a token).
pub fn mentions(text: &str, me: &str) -> bool {
    if me.is_empty() {
        return false;
    }
    text.split_whitespace().any(|token| {
        let token = token.trim_matches(|c: char| !(c.is_alphanumeric() || "@_-".contains(c)));
        token
            .strip_prefix('@')
            .is_some_and(|name| name.eq_ignore_ascii_case(me))
    })
}

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

/// The notification's default action: `app.open-conversation((window id, conversation))`.
pub fn default_action(window_id: u32, conv: &str) -> (String, glib::Variant) {
    (
        format!("app.{OPEN_CONVERSATION}"),
        (window_id, conv.to_owned()).to_variant(),
    )
}

/// Adds `app.open-conversation` to the application.
pub fn add_open_conversation_action(app: &impl IsA<gtk::Application>) {
    let action = gio::SimpleAction::new(
        OPEN_CONVERSATION,
        Some(&<(u32, String)>::static_variant_type()),
    );
    let weak = app.as_ref().downgrade();
    action.connect_activate(move |_, param| {
        let (Some(app), Some((id, conv))) =
            (weak.upgrade(), param.and_then(|p| p.get::<(u32, String)>()))
        else {
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
            win.open_from_notification(&conv);
        }
    });
    app.as_ref().add_action(&action);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mention_is_a_whole_token() {
        assert!(mentions("hey @alice, look", "alice"));
        assert!(mentions("(@Alice)", "alice"));
        assert!(mentions("@ALICE", "alice"));
        assert!(mentions("line one\n@alice: two", "alice"));
        assert!(!mentions("hey alice", "alice"));
        assert!(!mentions("mail bob@alice.org", "alice"));
        assert!(!mentions("@alicette", "alice"));
        assert!(!mentions("@al", "alice"));
        assert!(!mentions("@", ""));
        assert!(mentions("@x-y_z!", "x-y_z"));
    }

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
