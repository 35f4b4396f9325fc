//! The Preferences window (`AdwPreferencesWindow`): style (system, light, dark) and
//! notifications. Every change is applied and saved at once, as GNOME apps do.

use adw::prelude::*;
use gtk::glib;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use super::LwClientWindow;
use crate::gui::preferences::{Preferences, Style};

impl LwClientWindow {
    /// The settings in force for this window.
    pub fn preferences(&self) -> Preferences {
        self.imp().prefs.borrow().clone()
    }

    /// Changes the settings, applies the style and saves them.
    pub fn update_preferences(&self, change: impl FnOnce(&mut Preferences)) {
        let imp = self.imp();
        let prefs = {
            let mut p = imp.prefs.borrow_mut();
            change(&mut p);
            p.clone()
        };
        prefs.style.apply();
        prefs.save(&imp.config_dir.borrow());
    }

    /// Opens the Preferences window (the primary menu's *Preferences*, Ctrl+,).
    pub fn open_preferences(&self) -> adw::PreferencesWindow {
        let prefs = self.preferences();
        let b = gtk::Builder::from_string(PREFERENCES_UI);
        let object = |id: &str| b.object::<glib::Object>(id).expect("in the template");
        let window = object("window")
            .downcast::<adw::PreferencesWindow>()
            .expect("a window");
        window.set_transient_for(Some(self));
        let style_row = object("style_row")
            .downcast::<adw::ComboRow>()
            .expect("a combo row");
        let enabled = object("notifications_switch")
            .downcast::<gtk::Switch>()
            .expect("a switch");
        let all_rooms = object("all_rooms_switch")
            .downcast::<gtk::Switch>()
            .expect("a switch");
        let all_rooms_row = object("all_rooms_row")
            .downcast::<gtk::Widget>()
            .expect("a row");

        style_row.set_selected(
            Style::ALL
                .iter()
                .position(|s| *s == prefs.style)
                .unwrap_or(0) as u32,
        );
        enabled.set_active(prefs.notifications);
        all_rooms.set_active(prefs.notify_all_room_messages);
        all_rooms_row.set_sensitive(prefs.notifications);

        style_row.connect_selected_notify(weak_handler(self, |win, row: &adw::ComboRow| {
            let style = Style::ALL
                .get(row.selected() as usize)
                .copied()
                .unwrap_or_default();
            win.update_preferences(|p| p.style = style);
        }));
        enabled.connect_active_notify(weak_handler(self, move |win, s: &gtk::Switch| {
            let on = s.is_active();
            all_rooms_row.set_sensitive(on);
            win.update_preferences(|p| p.notifications = on);
        }));
        all_rooms.connect_active_notify(weak_handler(self, |win, s: &gtk::Switch| {
            let on = s.is_active();
            win.update_preferences(|p| p.notify_all_room_messages = on);
        }));
        window.present();
        window
    }
}

/// The Preferences window's widgets.
const PREFERENCES_UI: &str = include_str!("../../../ui/client_window/preferences.ui");

/// A signal handler that holds the window weakly (the Preferences window may outlive a
/// closed client window for a moment).
fn weak_handler<W: IsA<gtk::Widget>>(
    win: &LwClientWindow,
    f: impl Fn(&LwClientWindow, &W) + 'static,
) -> impl Fn(&W) + 'static {
    let weak = win.downgrade();
    move |w| {
        if let Some(win) = weak.upgrade() {
            f(&win, w);
        }
    }
}
