//! `LwSidebar`: the conversation list (`#general` and private chats, with presence dots
//! and unread badges) and the "Signed in as …" line.
//!
//! It shows a `gio::ListStore` of [`LwConversation`] that the window owns, and emits
//! `conversation-selected` when the user picks one.

use std::sync::OnceLock;

use gtk::glib::subclass::Signal;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use crate::gui::models::LwConversation;

mod imp {
    use super::*;

    #[derive(Default, gtk::CompositeTemplate)]
    #[template(file = "../../../ui/client_window/sidebar.ui")]
    pub struct LwSidebar {
        #[template_child]
        pub(super) list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub(super) me_label: TemplateChild<gtk::Label>,
        /// The conversations shown (bound in [`super::LwSidebar::bind_model`]).
        pub(super) model: std::cell::RefCell<Option<gio::ListStore>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for LwSidebar {
        const NAME: &'static str = "LwSidebar";
        type Type = super::LwSidebar;
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
    impl LwSidebar {
        #[template_callback]
        fn on_row_selected(&self, row: Option<&gtk::ListBoxRow>) {
            let Some(row) = row else { return };
            let conv = self
                .model
                .borrow()
                .as_ref()
                .and_then(|m| m.item(row.index() as u32))
                .and_downcast::<LwConversation>();
            if let Some(conv) = conv {
                self.obj()
                    .emit_by_name::<()>("conversation-selected", &[&conv]);
            }
        }
    }

    impl ObjectImpl for LwSidebar {
        fn signals() -> &'static [Signal] {
            static SIGNALS: OnceLock<Vec<Signal>> = OnceLock::new();
            SIGNALS.get_or_init(|| {
                // The user (or the window) selected this conversation.
                vec![
                    Signal::builder("conversation-selected")
                        .param_types([LwConversation::static_type()])
                        .build(),
                ]
            })
        }
    }

    impl WidgetImpl for LwSidebar {}
    impl BoxImpl for LwSidebar {}
}

glib::wrapper! {
    /// The conversation list of the client window.
    pub struct LwSidebar(ObjectSubclass<imp::LwSidebar>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

impl LwSidebar {
    /// Shows `convs`, one row per conversation.
    pub fn bind_model(&self, convs: &gio::ListStore) {
        self.imp().model.replace(Some(convs.clone()));
        self.imp().list.bind_model(Some(convs), |obj| {
            let conv = obj
                .downcast_ref::<LwConversation>()
                .expect("the sidebar holds conversations");
            row(conv).upcast()
        });
    }

    /// Selects the row of `conv` (which emits `conversation-selected`).
    pub fn select(&self, conv: &LwConversation) {
        let Some(model) = self.imp().model.borrow().clone() else {
            return;
        };
        if let Some(pos) = model.find(conv)
            && let Some(row) = self.imp().list.row_at_index(pos as i32)
        {
            self.imp().list.select_row(Some(&row));
        }
    }

    /// Sets the "Signed in as …" line.
    pub fn set_me(&self, text: &str) {
        self.imp().me_label.set_text(text);
    }
}

/// One row: `#` or `@`, the name, the unread badge and (private chats) the presence dot.
fn row(conv: &LwConversation) -> gtk::Widget {
    let row = gtk::Box::new(gtk::Orientation::Horizontal, 10);
    let dot = gtk::Box::builder()
        .valign(gtk::Align::Center)
        .css_classes(["dot"])
        .build();
    let icon = gtk::Label::builder()
        .label(if conv.is_private() { "@" } else { "#" })
        .css_classes(["dim-label"])
        .build();
    let name = conv.name();
    let label = gtk::Label::builder()
        .label(name.trim_start_matches(['#', '@']))
        .xalign(0.0)
        .hexpand(true)
        .ellipsize(gtk::pango::EllipsizeMode::End)
        .css_classes(["conv-name"])
        .build();
    let badge = gtk::Label::builder()
        .valign(gtk::Align::Center)
        .css_classes(["badge"])
        .build();
    row.append(&icon);
    row.append(&label);
    row.append(&badge);
    if conv.is_private() {
        row.append(&dot);
    }
    let update = {
        let dot = dot.clone();
        let badge = badge.clone();
        move |c: &LwConversation| {
            if c.online() {
                dot.add_css_class("online");
            } else {
                dot.remove_css_class("online");
            }
            dot.set_tooltip_text(Some(if c.online() { "Online" } else { "Offline" }));
            badge.set_text(&c.unread().to_string());
            badge.set_visible(c.unread() > 0);
        }
    };
    update(conv);
    let u = update.clone();
    conv.connect_unread_notify(move |c| u(c));
    conv.connect_online_notify(move |c| update(c));
    row.upcast()
}
