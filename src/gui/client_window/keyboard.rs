//! The client window's actions and their keyboard shortcuts: everything can be done from
//! the keyboard, and every shortcut is listed here.
//!
//! | keys | action |
//! | --- | --- |
//! | Enter, Ctrl+Enter | send (`win.send`; Shift+Enter adds a line) |
//! | Ctrl+Page Down, Alt+Down | next conversation (`win.next-conversation`) |
//! | Ctrl+Page Up, Alt+Up | previous conversation (`win.previous-conversation`) |
//! | Menu, Shift+F10 | the focused message's menu (on the message list) |
//! | Ctrl+U | send a file (`win.attach`) |
//! | Ctrl+Shift+L | log out the account shown (`win.logout`) |
//! | Ctrl+Alt+1 … 9 | show the first … ninth account (`win.switch-account`) |
//! | Ctrl+, | Preferences (`win.preferences`) |
//! | Ctrl+? | this list (`win.show-help-overlay`, `ui/client_window/shortcuts.ui`) |
//! | F10 | the main menu (libadwaita's primary menu) |
//! | Alt+Left | back to the conversation list when the window is narrow |
//! | Ctrl+W | close the window |

use gtk::gio;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use super::LwClientWindow;
use crate::gui::LwMessageRow;
use crate::gui::models::LwConversation;

/// The accelerators of the window actions, set once on the application.
const ACCELS: &[(&str, &[&str])] = &[
    ("win.send", &["<Control>Return"]),
    (
        "win.next-conversation",
        &["<Control>Page_Down", "<Alt>Down"],
    ),
    (
        "win.previous-conversation",
        &["<Control>Page_Up", "<Alt>Up"],
    ),
    ("win.attach", &["<Control>u"]),
    ("win.logout", &["<Control><Shift>l"]),
    ("win.preferences", &["<Control>comma"]),
    ("win.show-help-overlay", &["<Control>question"]),
    ("window.close", &["<Control>w"]),
];

/// Sets the accelerators on `app`.
pub fn set_accels(app: &impl IsA<gtk::Application>) {
    for (action, keys) in ACCELS {
        app.set_accels_for_action(action, keys);
    }
    for i in 0..super::accounts::SWITCH_KEYS {
        app.set_accels_for_action(
            &format!("win.switch-account(uint32 {i})"),
            &[&format!("<Control><Alt>{}", i + 1)],
        );
    }
}

fn action(name: &str, run: fn(&LwClientWindow)) -> gio::ActionEntry<LwClientWindow> {
    gio::ActionEntry::builder(name)
        .activate(move |win: &LwClientWindow, _, _| run(win))
        .build()
}

/// The window's own actions (the message rows' are in `mod.rs`, Mute in `notify`).
pub(super) fn window_actions() -> Vec<gio::ActionEntry<LwClientWindow>> {
    vec![
        action("send", |win| win.imp().composer.send()),
        action("next-conversation", |win| win.step_conversation(1)),
        action("previous-conversation", |win| win.step_conversation(-1)),
        action("attach", |win| {
            if win.is_online() {
                win.choose_attachment();
            }
        }),
        action("logout", |win| win.logout()),
        action("preferences", |win| {
            win.open_preferences();
        }),
        action("about", |win| {
            crate::gui::about::show_about(win);
        }),
    ]
}

/// The Keyboard Shortcuts window's template.
const SHORTCUTS_UI: &str = include_str!("../../../ui/client_window/shortcuts.ui");

impl LwClientWindow {
    /// Sets the Keyboard Shortcuts window (`win.show-help-overlay`, Ctrl+?).
    pub(super) fn add_shortcuts_window(&self) {
        let overlay = gtk::Builder::from_string(SHORTCUTS_UI)
            .object::<gtk::ShortcutsWindow>("help_overlay")
            .expect("the template makes the shortcuts window");
        self.set_help_overlay(Some(&overlay));
    }

    /// Shows the next (`step` 1) or previous (-1) conversation of the sidebar, wrapping.
    pub fn step_conversation(&self, step: i32) {
        if !self.is_logged_in() {
            return;
        }
        let convs = self.conversations();
        let n = convs.n_items() as i32;
        if n == 0 {
            return;
        }
        let at = self
            .current()
            .and_then(|c| convs.find(&c))
            .map_or(-1, |p| p as i32);
        let next = (at + step).rem_euclid(n) as u32;
        if let Some(c) = convs.item(next).and_downcast::<LwConversation>() {
            self.select_conversation(&c);
        }
    }

    /// Whether the keyboard focus is in the message list (a message row).
    pub fn focus_in_messages(&self) -> bool {
        gtk::prelude::GtkWindowExt::focus(self)
            .is_some_and(|f| f.is_ancestor(&*self.imp().message_list))
    }

    /// The type and accessible role of the widget with the keyboard focus, e.g.
    /// `GtkText (text-box)` (tests print it when a step goes wrong).
    pub fn focus_description(&self) -> String {
        gtk::prelude::GtkWindowExt::focus(self).map_or_else(
            || "nothing".to_owned(),
            |f| {
                format!(
                    "{} ({:?})",
                    f.type_().name(),
                    f.property::<gtk::AccessibleRole>("accessible-role")
                )
            },
        )
    }

    /// Opens the menu of the message that has the keyboard focus (Menu, Shift+F10).
    /// Returns whether there was one.
    pub fn open_focused_message_menu(&self) -> bool {
        let Some(focus) = gtk::prelude::GtkWindowExt::focus(self) else {
            return false;
        };
        // The focus is on the list item (whose child is the row) or inside the row.
        let row = focus
            .first_child()
            .and_downcast::<LwMessageRow>()
            .or_else(|| {
                std::iter::successors(Some(focus.clone()), |w| w.parent())
                    .find_map(|w| w.downcast::<LwMessageRow>().ok())
            });
        match row {
            Some(row) => {
                row.open_menu();
                true
            }
            None => false,
        }
    }

    /// Menu and Shift+F10 on the message list open the focused message's menu (only there:
    /// elsewhere they keep opening the text fields' own menus).
    pub(super) fn add_message_menu_keys(&self) {
        let controller = gtk::ShortcutController::new();
        let weak = self.downgrade();
        let callback = gtk::CallbackAction::new(move |_, _| {
            weak.upgrade()
                .map(|w| w.open_focused_message_menu())
                .unwrap_or(false)
                .into()
        });
        controller.add_shortcut(gtk::Shortcut::new(
            gtk::ShortcutTrigger::parse_string("Menu|<Shift>F10"),
            Some(callback),
        ));
        self.imp().message_list.add_controller(controller);
    }
}
