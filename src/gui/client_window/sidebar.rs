//! `LwSidebar`: the conversation list in two groups, "Rooms" (`#general` first, then the
//! rooms joined) and "Direct messages" (presence dots; unread badges on both), the pending
//! invitations above it (Accept / Decline), the New Room and Browse buttons, and the
//! "Signed in as …" line.
//!
//! It shows two `gio::ListStore`s the window owns (conversations, kept rooms first, and
//! invitations) through `GtkListBox::bind_model`: a row is made once per item and updates
//! itself from the item's properties, so 200 rooms cost nothing per event. The group
//! headings are list-box headers, not items. It emits `conversation-selected`,
//! `new-room`, `browse-rooms` and `invitation-answered`; the window does the rest.

use std::sync::OnceLock;

use gtk::glib::subclass::Signal;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use crate::gui::i18n::{gettext, gettext_with, ngettext_with};
use crate::gui::models::{LwConversation, VERIFICATION_BROKEN, VERIFIED};
use crate::gui::room_models::LwInvitation;

mod imp {
    use super::*;

    #[derive(Default, gtk::CompositeTemplate)]
    #[template(file = "../../../ui/client_window/sidebar.ui")]
    pub struct LwSidebar {
        #[template_child]
        pub(super) list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub(super) me_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) account_button: TemplateChild<gtk::MenuButton>,
        #[template_child]
        pub(super) account_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) account_badge: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) invitations_revealer: TemplateChild<gtk::Revealer>,
        #[template_child]
        pub(super) invitations_list: TemplateChild<gtk::ListBox>,
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

        #[template_callback]
        fn on_new_room(&self) {
            self.obj().emit_by_name::<()>("new-room", &[]);
        }

        #[template_callback]
        fn on_browse(&self) {
            self.obj().emit_by_name::<()>("browse-rooms", &[]);
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
                    // The New Room button.
                    Signal::builder("new-room").build(),
                    // The Browse button.
                    Signal::builder("browse-rooms").build(),
                    // Accept (true) or Decline (false) on the invitation to this room.
                    Signal::builder("invitation-answered")
                        .param_types([String::static_type(), bool::static_type()])
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
    /// Shows `convs` (rooms first, then private chats), one row per conversation, under
    /// the headings "Rooms" and "Direct messages".
    pub fn bind_model(&self, convs: &gio::ListStore) {
        self.imp().model.replace(Some(convs.clone()));
        self.imp().list.bind_model(Some(convs), |obj| {
            let conv = obj
                .downcast_ref::<LwConversation>()
                .expect("the sidebar holds conversations");
            row(conv).upcast()
        });
        let model = convs.clone();
        self.imp().list.set_header_func(move |row, before| {
            let at = |r: &gtk::ListBoxRow| {
                model
                    .item(r.index() as u32)
                    .and_downcast::<LwConversation>()
            };
            let Some(conv) = at(row) else { return };
            let prev_private = before.and_then(at).map(|c| c.is_private());
            let heading = match (conv.is_private(), prev_private) {
                (false, None) => Some(gettext("Rooms")),
                (true, None | Some(false)) => Some(gettext("Direct messages")),
                _ => None,
            };
            match heading {
                Some(text) => {
                    let same = row
                        .header()
                        .and_downcast::<gtk::Label>()
                        .is_some_and(|l| l.text() == text);
                    if !same {
                        let label = gtk::Label::builder()
                            .label(text)
                            .xalign(0.0)
                            .css_classes(["sidebar-heading"])
                            .build();
                        row.set_header(Some(&label));
                    }
                }
                None => row.set_header(None::<&gtk::Widget>),
            }
        });
    }

    /// Shows the pending invitations of `invitations` (a `gio::ListStore` of
    /// [`LwInvitation`]) above the conversations, while there are any.
    pub fn bind_invitations(&self, invitations: &gio::ListStore) {
        let imp = self.imp();
        imp.invitations_list.bind_model(
            Some(invitations),
            glib::clone!(
                #[weak(rename_to = sidebar)]
                self,
                #[upgrade_or_else]
                || gtk::Label::new(None).upcast(),
                move |obj| {
                    let inv = obj
                        .downcast_ref::<LwInvitation>()
                        .expect("the list holds invitations");
                    invitation_row(&sidebar, inv)
                }
            ),
        );
        let revealer = imp.invitations_revealer.get();
        revealer.set_reveal_child(invitations.n_items() > 0);
        invitations.connect_items_changed(move |store, _, _, _| {
            revealer.set_reveal_child(store.n_items() > 0);
        });
    }

    /// Whether the invitations are shown.
    pub fn invitations_visible(&self) -> bool {
        self.imp().invitations_revealer.reveals_child()
    }

    /// The group headings shown, top to bottom (for tests).
    pub fn headings(&self) -> Vec<String> {
        let list = &self.imp().list;
        (0..)
            .map_while(|i| list.row_at_index(i))
            .filter_map(|r| r.header().and_downcast::<gtk::Label>())
            .map(|l| l.text().to_string())
            .collect()
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

    /// Clears the selection (the narrow layout's conversation list, so that picking the
    /// same conversation again opens it).
    pub fn unselect(&self) {
        self.imp().list.unselect_all();
    }

    /// Sets the "Signed in as …" line.
    pub fn set_me(&self, text: &str) {
        self.imp().me_label.set_text(text);
    }

    /// The account switcher shows `label` (the account shown) and a badge with the unread
    /// messages of the other accounts (none: no badge).
    pub fn set_accounts(&self, label: &str, others_unread: u32) {
        let imp = self.imp();
        imp.account_label.set_text(label);
        imp.account_badge.set_text(&others_unread.to_string());
        imp.account_badge.set_visible(others_unread > 0);
    }

    /// The account switcher opens `menu`.
    pub fn set_accounts_menu(&self, menu: &gio::MenuModel) {
        self.imp().account_button.set_menu_model(Some(menu));
    }

    /// The account switcher's button (the keyboard and the tests open it).
    pub fn account_button(&self) -> gtk::MenuButton {
        self.imp().account_button.get()
    }

    /// The unread count the account switcher's badge shows (0 when hidden).
    pub fn account_badge(&self) -> u32 {
        let badge = &self.imp().account_badge;
        if badge.is_visible() {
            badge.text().parse().unwrap_or(0)
        } else {
            0
        }
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
    if conv.is_room() && !conv.is_general() {
        row.set_tooltip_text(Some(&conv.topic()));
    }
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
    // Unread mentions of the user, counted apart from the unread messages.
    let mention_badge = gtk::Label::builder()
        .valign(gtk::Align::Center)
        .css_classes(["badge", "mention-badge"])
        .build();
    let mentions = {
        let b = mention_badge.clone();
        move |c: &LwConversation| {
            b.set_text(&format!("@{}", c.mentions()));
            b.set_tooltip_text(Some(&ngettext_with(
                "{count} unread mention of you",
                "{count} unread mentions of you",
                c.mentions(),
                &[("count", &c.mentions())],
            )));
            b.set_visible(c.mentions() > 0);
        }
    };
    mentions(conv);
    conv.connect_mentions_notify(move |c| mentions(c));
    // A private conversation's verification: a green shield once verified, a red warning
    // once a verified peer's devices changed (until re-verified or dismissed).
    // (A label, not an icon: GTK 4.8 gives code-made widgets no accessible name, and a
    // label's is its text.)
    let mark = gtk::Label::builder()
        .valign(gtk::Align::Center)
        .visible(false)
        .build();
    let verification = {
        let mark = mark.clone();
        move |c: &LwConversation| {
            let peer = c.peer().unwrap_or_default();
            let (icon, class, tip) = match c.verification() {
                VERIFIED => (
                    "✔",
                    "verified-mark",
                    gettext_with("{user} is verified", &[("user", &peer)]),
                ),
                VERIFICATION_BROKEN => (
                    "⚠",
                    "broken-mark",
                    gettext_with(
                        "{user}'s devices changed since you verified them",
                        &[("user", &peer)],
                    ),
                ),
                _ => {
                    mark.set_visible(false);
                    return;
                }
            };
            mark.set_text(icon);
            mark.set_css_classes(&[class]);
            mark.set_tooltip_text(Some(&tip));
            mark.set_visible(true);
        }
    };
    verification(conv);
    conv.connect_verification_notify(move |c| verification(c));
    row.append(&icon);
    row.append(&label);
    row.append(&mark);
    row.append(&mention_badge);
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
            dot.set_tooltip_text(Some(&if c.online() {
                gettext("Online")
            } else {
                gettext("Offline")
            }));
            badge.set_text(&c.unread().to_string());
            badge.set_visible(c.unread() > 0);
        }
    };
    update(conv);
    let u = update.clone();
    conv.connect_unread_notify(move |c| u(c));
    conv.connect_online_notify(move |c| update(c));
    let removed = {
        let row = row.clone();
        move |c: &LwConversation| {
            if c.is_read_only() {
                row.add_css_class("removed");
                row.set_tooltip_text(Some(&c.removed()));
            } else {
                row.remove_css_class("removed");
            }
        }
    };
    removed(conv);
    conv.connect_removed_notify(move |c| removed(c));
    let r = row.clone();
    conv.connect_topic_notify(move |c| {
        if !c.is_read_only() {
            r.set_tooltip_text(Some(&c.topic()));
        }
    });
    row.upcast()
}

/// One invitation: the room, who invited, its topic, and Decline / Accept.
fn invitation_row(sidebar: &LwSidebar, inv: &LwInvitation) -> gtk::Widget {
    let data = inv.data();
    let text = gtk::Label::builder()
        .label(gettext_with(
            "{by} invited you to {room}",
            &[("by", &data.by), ("room", &data.room)],
        ))
        .xalign(0.0)
        .wrap(true)
        .css_classes(["heading"])
        .build();
    let topic = gtk::Label::builder()
        .label(data.topic.as_str())
        .xalign(0.0)
        .wrap(true)
        .visible(!data.topic.is_empty())
        .css_classes(["dim-label", "caption"])
        .build();
    let answer = |label: &str, accept: bool| {
        let button = gtk::Button::builder().label(label).hexpand(true).build();
        if accept {
            button.add_css_class("suggested-action");
        }
        let room = data.room.clone();
        button.connect_clicked(glib::clone!(
            #[weak]
            sidebar,
            move |_| sidebar.emit_by_name::<()>("invitation-answered", &[&room, &accept])
        ));
        button
    };
    let buttons = gtk::Box::new(gtk::Orientation::Horizontal, 6);
    buttons.append(&answer(&gettext("Decline"), false));
    buttons.append(&answer(&gettext("Accept"), true));
    let card = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(6)
        .css_classes(["invitation"])
        .build();
    card.append(&text);
    card.append(&topic);
    card.append(&buttons);
    card.upcast()
}
