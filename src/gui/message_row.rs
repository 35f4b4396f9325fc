//! `LwMessageRow`: one message bubble in the message list, with its context menu
//! ("Reply", "React", "Copy Text", "Delete for me", and "Edit" / "Delete for everyone" on
//! your own recent messages), the quote of the message it replies to, an "edited" marker
//! and its reactions.

use std::cell::{Cell, RefCell};

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gdk, gio, glib};
use gtk4 as gtk;

use super::i18n::{gettext, gettext_with, n_};
use super::models::LwMessage;
use crate::app::server::SERVER_AUTHOR;

/// Shown instead of the text of a message deleted for everyone.
pub const DELETED_TEXT: &str = n_("This message was deleted");

mod imp {
    use super::*;

    #[derive(Default, gtk::CompositeTemplate)]
    #[template(file = "../../ui/message_row.ui")]
    pub struct LwMessageRow {
        #[template_child]
        pub(super) bubble: TemplateChild<gtk::Box>,
        #[template_child]
        pub(super) sender: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) body: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) time: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) download: TemplateChild<gtk::Button>,
        #[template_child]
        pub(super) quote: TemplateChild<gtk::Button>,
        #[template_child]
        pub(super) quote_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) reactions: TemplateChild<gtk::Box>,
        pub(super) message: RefCell<Option<LwMessage>>,
        /// How long an author may delete for everyone, ms.
        pub(super) delete_window_ms: Cell<u64>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for LwMessageRow {
        const NAME: &'static str = "LwMessageRow";
        type Type = super::LwMessageRow;
        type ParentType = gtk::Box;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
            klass.bind_template_callbacks();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    #[gtk::template_callbacks]
    impl LwMessageRow {
        #[template_callback]
        fn on_right_click(&self, _n_press: i32, x: f64, y: f64, gesture: &gtk::GestureClick) {
            gesture.set_state(gtk::EventSequenceState::Claimed);
            self.obj().popup_menu(x, y);
        }

        #[template_callback]
        fn on_long_press(&self, x: f64, y: f64, gesture: &gtk::GestureLongPress) {
            gesture.set_state(gtk::EventSequenceState::Claimed);
            self.obj().popup_menu(x, y);
        }
    }

    impl ObjectImpl for LwMessageRow {}

    impl WidgetImpl for LwMessageRow {}
    impl BoxImpl for LwMessageRow {}
}

glib::wrapper! {
    /// A message bubble.
    pub struct LwMessageRow(ObjectSubclass<imp::LwMessageRow>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

impl Default for LwMessageRow {
    fn default() -> Self {
        Self::new()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// "14:05" today, "Mar 3 14:05" on other days.
pub fn format_time(ts_ms: u64) -> String {
    let secs = i64::try_from(ts_ms / 1000).unwrap_or(0);
    let (Ok(t), Ok(now)) = (
        glib::DateTime::from_unix_local(secs),
        glib::DateTime::now_local(),
    ) else {
        return String::new();
    };
    let same_day = t.ymd() == now.ymd();
    let fmt = if same_day { "%H:%M" } else { "%b %e, %H:%M" };
    t.format(fmt).map(|s| s.to_string()).unwrap_or_default()
}

impl LwMessageRow {
    /// An empty row (the list's factory binds messages to it).
    pub fn new() -> Self {
        glib::Object::new()
    }

    /// Shows `msg`. `show_sender` is off in private conversations.
    pub fn bind(&self, msg: &LwMessage, show_sender: bool, delete_window_secs: u64) {
        let imp = self.imp();
        let d = msg.data();
        imp.message.replace(Some(msg.clone()));
        imp.delete_window_ms
            .set(delete_window_secs.saturating_mul(1000));
        let bubble = &imp.bubble;
        for c in ["own", "deleted", "server", "notice", "mention"] {
            bubble.remove_css_class(c);
        }
        if d.mention && d.text.is_some() {
            bubble.add_css_class("mention");
        }
        bubble.set_halign(if d.notice {
            gtk::Align::Center
        } else if d.own {
            gtk::Align::End
        } else {
            gtk::Align::Start
        });
        if d.notice {
            bubble.add_css_class("notice");
        }
        if d.own {
            bubble.add_css_class("own");
        }
        if d.from == SERVER_AUTHOR {
            bubble.add_css_class("server");
        }
        imp.sender.set_visible(show_sender && !d.own && !d.notice);
        imp.sender.set_text(&d.from);
        match &d.text {
            Some(t) => imp.body.set_text(t),
            None => {
                bubble.add_css_class("deleted");
                imp.body.set_text(&gettext(DELETED_TEXT));
            }
        }
        imp.time.set_text(&format_time(d.ts));
        // A file message (not deleted) gets a download button. Only then is the button
        // bound to `win.download-file`, target first: an action that takes a message id
        // with no target would make GTK warn on every row it checks.
        let file = d.file.as_ref().filter(|_| d.text.is_some());
        imp.download.set_visible(file.is_some());
        match file {
            Some(f) => {
                imp.download
                    .set_action_target_value(Some(&d.id.to_variant()));
                imp.download.set_action_name(Some("win.download-file"));
                imp.download
                    .set_tooltip_text(Some(&gettext_with("Download {name}", &[("name", &f.name)])));
            }
            None => {
                imp.download.set_action_name(None);
                imp.download.set_action_target_value(None);
            }
        }
    }

    /// Forgets the message (the row is being recycled).
    pub fn unbind(&self) {
        self.imp().message.replace(None);
    }

    /// The text on screen (the placeholder for a deleted message), if bound.
    pub fn shown_text(&self) -> Option<String> {
        self.message()?;
        Some(self.imp().body.text().to_string())
    }

    /// The message shown.
    pub fn message(&self) -> Option<LwMessage> {
        self.imp().message.borrow().clone()
    }

    /// Whether "Delete for everyone" is offered now.
    pub fn can_delete_for_everyone(&self) -> bool {
        let Some(m) = self.message() else {
            return false;
        };
        let d = m.data();
        d.own
            && d.text.is_some()
            && now_ms().saturating_sub(d.ts) < self.imp().delete_window_ms.get()
    }

    /// Opens the context menu from the keyboard (Menu, Shift+F10), pointing at the bubble.
    pub fn open_menu(&self) {
        let b = self.imp().bubble.allocation();
        let (x, y) = self
            .imp()
            .bubble
            .translate_coordinates(self, f64::from(b.width()) / 2.0, 0.0)
            .unwrap_or((0.0, 0.0));
        self.popup_menu(x, y);
    }

    fn popup_menu(&self, x: f64, y: f64) {
        let Some(msg) = self.message() else { return };
        if msg.data().notice {
            return;
        }
        let id = msg.id();
        let menu = gio::Menu::new();
        let me = gio::MenuItem::new(Some(&gettext("Delete for Me")), None);
        me.set_action_and_target_value(Some("win.delete-for-me"), Some(&id.to_variant()));
        menu.append_item(&me);
        if self.can_delete_for_everyone() {
            let all = gio::MenuItem::new(Some(&gettext("Delete for Everyone")), None);
            all.set_action_and_target_value(
                Some("win.delete-for-everyone"),
                Some(&id.to_variant()),
            );
            menu.append_item(&all);
        }
        if let Some(text) = msg.text() {
            let copy = gio::MenuItem::new(Some(&gettext("Copy Text")), None);
            copy.set_action_and_target_value(Some("win.copy-text"), Some(&text.to_variant()));
            menu.prepend_item(&copy);
        }
        self.add_edit_entries(&menu, &msg);
        let popover = gtk::PopoverMenu::from_model(Some(&menu));
        popover.set_parent(&*self.imp().bubble);
        popover.set_has_arrow(true);
        let (bx, by) = self
            .translate_coordinates(&*self.imp().bubble, x, y)
            .unwrap_or((x, y));
        popover.set_pointing_to(Some(&gdk::Rectangle::new(bx as i32, by as i32, 1, 1)));
        popover.connect_closed(|p| {
            // Unparent after the action ran (it is dispatched from the popover).
            let p = p.clone();
            glib::idle_add_local_once(move || p.unparent());
        });
        popover.popup();
    }
}

/// The emoji the "React" menu offers.
pub const QUICK_REACTIONS: &[&str] = &["👍", "❤️", "😂", "🎉", "😮", "😢"];

/// Shown as the quote of a reply whose original was deleted.
pub const DELETED_QUOTE: &str = "deleted message";

/// What a reply's quote shows: `from: first line of the text`, "deleted message", or a
/// hint that the original is further back in the history.
pub fn quote_text(original: Option<&LwMessage>) -> String {
    match original.map(|m| m.data()) {
        Some(d) => match d.text {
            Some(t) => {
                let line = t.lines().next().unwrap_or_default();
                format!("↩ {}: {line}", d.from)
            }
            None => format!("↩ {DELETED_QUOTE}"),
        },
        None => "↩ an earlier message".to_owned(),
    }
}

impl LwMessageRow {
    /// Shows what edits, replies and reactions add to the message: the quote of the
    /// original (from `conv`, where it may be loaded), the "edited" marker and the
    /// reaction buttons. Called after [`LwMessageRow::bind`].
    pub fn bind_extras(&self, conv: Option<&crate::gui::models::LwConversation>) {
        let imp = self.imp();
        let Some(msg) = self.message() else { return };
        let d = msg.data();
        let alive = d.text.is_some();
        if d.edited && alive {
            imp.time
                .set_text(&format!("{} · edited", format_time(d.ts)));
        }
        match (d.reply_to.filter(|_| alive), conv) {
            (Some(target), Some(conv)) => {
                let original = conv.message(target);
                imp.quote_label.set_text(&quote_text(original.as_ref()));
                imp.quote
                    .set_action_target_value(Some(&(conv.name(), target as i64).to_variant()));
                imp.quote.set_action_name(Some("win.jump-to-message"));
                imp.quote
                    .set_tooltip_text(Some(&gettext("Show the original message")));
                imp.quote.set_visible(true);
            }
            _ => {
                imp.quote.set_action_name(None);
                imp.quote.set_action_target_value(None);
                imp.quote.set_visible(false);
            }
        }
        while let Some(child) = imp.reactions.first_child() {
            imp.reactions.remove(&child);
        }
        let reactions = if alive { d.reactions } else { Vec::new() };
        imp.reactions.set_visible(!reactions.is_empty());
        for r in reactions {
            let button = gtk::Button::with_label(&format!("{} {}", r.emoji, r.count));
            button.add_css_class("reaction");
            button.set_tooltip_text(Some(&r.users.join(", ")));
            button.set_action_target_value(Some(&(d.id, r.emoji).to_variant()));
            button.set_action_name(Some("win.toggle-reaction"));
            imp.reactions.append(&button);
        }
    }

    /// The quote shown above the text, if the message is a reply.
    pub fn shown_quote(&self) -> Option<String> {
        let q = &self.imp().quote;
        q.is_visible()
            .then(|| self.imp().quote_label.text().to_string())
    }

    /// The reaction buttons' labels ("👍 2"), in order.
    pub fn shown_reactions(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut child = self.imp().reactions.first_child();
        while let Some(c) = child {
            if let Some(b) = c.downcast_ref::<gtk::Button>() {
                out.push(b.label().map(|l| l.to_string()).unwrap_or_default());
            }
            child = c.next_sibling();
        }
        out
    }

    /// Whether "Edit" is offered now: your own text message, within the window.
    pub fn can_edit(&self) -> bool {
        self.can_delete_for_everyone() && self.message().is_some_and(|m| m.data().file.is_none())
    }

    /// "Reply", "React" (a few common emoji) and, on your own recent text messages, "Edit".
    fn add_edit_entries(&self, menu: &gio::Menu, msg: &LwMessage) {
        if msg.text().is_none() {
            return;
        }
        let id = msg.id().to_variant();
        let reply = gio::MenuItem::new(Some(&gettext("Reply")), None);
        reply.set_action_and_target_value(Some("win.reply-to"), Some(&id));
        menu.prepend_item(&reply);
        if self.can_edit() {
            let edit = gio::MenuItem::new(Some(&gettext("Edit")), None);
            edit.set_action_and_target_value(Some("win.edit-message"), Some(&id));
            menu.append_item(&edit);
        }
        let react = gio::Menu::new();
        for emoji in QUICK_REACTIONS {
            let item = gio::MenuItem::new(Some(emoji), None);
            let target = (msg.id(), emoji.to_string()).to_variant();
            item.set_action_and_target_value(Some("win.toggle-reaction"), Some(&target));
            react.append_item(&item);
        }
        menu.append_submenu(Some(&gettext("React")), &react);
    }
}
