//! The adaptive layout and the toasts.
//!
//! The chat is an `AdwLeaflet`: wide, the sidebar and the conversation side by side;
//! narrower than both fit (the sidebar's 240 px plus the conversation's 340 px, so about
//! 600 px), two pages, the conversation with a back button in the header bar (or
//! Alt+Left, or a swipe back). Down to 360 px wide, as GNOME's mobile guidelines ask.

use adw::prelude::*;
use gtk::subclass::prelude::*;
use gtk4 as gtk;
use gtk4::glib;

use super::LwClientWindow;

impl LwClientWindow {
    /// Shows `text` in a toast over the window for a few seconds (replacing the last one).
    ///
    /// A toast still shown gets the new text instead of being dismissed for a new one:
    /// libadwaita 1.2 crashes when a toast is dismissed and another added before the first
    /// one's hide animation ran (`adw_animation_skip` → `g_object_unref` on a finalized
    /// object, seen under Xvfb with a backtrace when several e2e notices came at once).
    pub(super) fn show_toast(&self, text: &str) {
        let imp = self.imp();
        imp.last_error.replace(Some(text.to_owned()));
        if let Some(shown) = imp.toast.borrow().as_ref() {
            shown.set_title(text);
            return;
        }
        let toast = adw::Toast::builder().title(text).timeout(6).build();
        toast.connect_dismissed(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |t| {
                let mut shown = win.imp().toast.borrow_mut();
                if shown.as_ref() == Some(t) {
                    *shown = None;
                }
            }
        ));
        imp.toast_overlay.add_toast(toast.clone());
        imp.toast.replace(Some(toast));
    }

    /// Takes the toast shown away, if any.
    pub(super) fn dismiss_toast(&self) {
        if let Some(t) = self.imp().toast.take() {
            t.dismiss();
        }
    }

    /// The title of the toast shown, if one is (tests read it).
    pub fn toast_text(&self) -> Option<String> {
        self.imp()
            .toast
            .borrow()
            .as_ref()
            .and_then(|t| t.title())
            .map(|t| t.to_string())
    }

    /// The sidebar and the conversation are two pages (the window is narrow).
    pub fn is_folded(&self) -> bool {
        self.imp().leaflet.is_folded()
    }

    /// The page shown while folded: `true` for the conversation, `false` for the sidebar.
    pub fn shows_content_page(&self) -> bool {
        let imp = self.imp();
        imp.leaflet.visible_child().as_ref() == Some(imp.content.upcast_ref())
    }

    /// The header bar's back button is shown (narrow, on the conversation page).
    pub fn back_button_visible(&self) -> bool {
        self.imp().back_button.is_visible()
    }

    /// Goes to the sidebar page (the back button).
    pub fn show_sidebar_page(&self) {
        let imp = self.imp();
        imp.leaflet.set_visible_child(&*imp.sidebar);
        self.sync_fold();
    }

    /// Goes to the conversation page (a conversation was picked).
    pub(super) fn show_content_page(&self) {
        let imp = self.imp();
        imp.leaflet.set_visible_child(&*imp.content);
        self.sync_fold();
    }

    /// Shows the back button and the conversation menu where they make sense.
    pub(super) fn sync_fold(&self) {
        let imp = self.imp();
        let chat = imp.stack.visible_child_name().as_deref() == Some("chat");
        let folded = imp.leaflet.is_folded();
        let on_content = self.shows_content_page();
        imp.back_button.set_visible(chat && folded && on_content);
        // Narrow: the header bar keeps what the page needs. Log Out is in the main menu
        // (Ctrl+Shift+L), as in GNOME's apps: a text button would keep the window wide.
        imp.new_chat_button
            .set_visible(chat && !(folded && on_content));
        imp.search_button.set_visible(chat);
        imp.conversation_menu_button
            .set_visible(chat && self.current().is_some() && (!folded || on_content));
        // Side by side again: the sidebar shows which conversation is open.
        if chat
            && !folded
            && let Some(c) = self.current()
        {
            self.select_conversation(&c);
        }
        // While folded on the sidebar page (by the back button, Alt+Left or a swipe), the
        // conversation's name is not on screen, and nothing is selected, so that picking
        // the same conversation again opens it.
        if chat && folded && !on_content {
            imp.sidebar.unselect();
            imp.title_label.set_text("LiveWire");
        } else if chat && let Some(c) = self.current() {
            imp.title_label.set_text(&c.name());
        }
    }
}
