//! `LwRoomHeader`: the top of a room: its name, topic and member count; the members panel
//! (a popover listing members with role and presence, moderator actions where the user's
//! role allows, and an invite field); Set Topic for moderators; Leave, confirmed in a
//! popover.
//!
//! It follows the [`LwConversation`] shown (its `topic`, `members` and `removed`
//! properties) and shows a `gio::ListStore` of [`LwMemberEntry`] that the window fills
//! from `Event::Members`. It emits `members-shown` (the window asks for a fresh list),
//! `invite`, `set-topic` and `leave`. Moderator actions are the window's `win.room-kick`,
//! `win.room-ban`, `win.room-promote` and `win.room-demote` actions, with the member's
//! name as their parameter.

use std::cell::{Cell, RefCell};
use std::sync::OnceLock;

use gtk::glib::subclass::Signal;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use crate::app::protocol::MemberInfo;
use crate::app::rooms::Role;
use crate::gui::i18n::{gettext, gettext_with, n_, ngettext_with};
use crate::gui::models::LwConversation;
use crate::gui::room_models::{LwMemberEntry, replace_all};

mod imp {
    use super::*;

    #[derive(Default, gtk::CompositeTemplate)]
    #[template(file = "../../../ui/client_window/room_header.ui")]
    pub struct LwRoomHeader {
        #[template_child]
        pub(super) name_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) topic_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) members_button: TemplateChild<gtk::MenuButton>,
        #[template_child]
        pub(super) members_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) members_list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub(super) invite_box: TemplateChild<gtk::Box>,
        #[template_child]
        pub(super) invite_entry: TemplateChild<gtk::Entry>,
        #[template_child]
        pub(super) topic_button: TemplateChild<gtk::MenuButton>,
        #[template_child]
        pub(super) topic_popover: TemplateChild<gtk::Popover>,
        #[template_child]
        pub(super) topic_entry: TemplateChild<gtk::Entry>,
        #[template_child]
        pub(super) leave_button: TemplateChild<gtk::MenuButton>,
        #[template_child]
        pub(super) leave_popover: TemplateChild<gtk::Popover>,
        #[template_child]
        pub(super) leave_label: TemplateChild<gtk::Label>,
        /// The room shown and the handlers that follow it.
        pub(super) conversation: RefCell<Option<(LwConversation, Vec<glib::SignalHandlerId>)>>,
        /// Its members.
        pub(super) members: RefCell<Option<gio::ListStore>>,
        /// The signed-in user (no actions on oneself) and their role in the room shown.
        pub(super) me: RefCell<String>,
        pub(super) my_role: Cell<Option<Role>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for LwRoomHeader {
        const NAME: &'static str = "LwRoomHeader";
        type Type = super::LwRoomHeader;
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
    impl LwRoomHeader {
        #[template_callback]
        fn on_members_shown(&self) {
            self.obj().emit_by_name::<()>("members-shown", &[]);
        }

        #[template_callback]
        fn on_invite(&self) {
            let user = self
                .invite_entry
                .text()
                .trim()
                .trim_start_matches('@')
                .to_owned();
            if !user.is_empty() {
                self.invite_entry.set_text("");
                self.obj().emit_by_name::<()>("invite", &[&user]);
            }
        }

        #[template_callback]
        fn on_set_topic(&self) {
            let topic = self.topic_entry.text().trim().to_owned();
            self.topic_popover.popdown();
            self.obj().emit_by_name::<()>("set-topic", &[&topic]);
        }

        #[template_callback]
        fn on_leave_confirmed(&self) {
            self.leave_popover.popdown();
            self.obj().emit_by_name::<()>("leave", &[]);
        }
    }

    impl ObjectImpl for LwRoomHeader {
        fn constructed(&self) {
            self.parent_constructed();
            self.obj().setup();
        }

        fn signals() -> &'static [Signal] {
            static SIGNALS: OnceLock<Vec<Signal>> = OnceLock::new();
            SIGNALS.get_or_init(|| {
                vec![
                    // The members panel opened: time for a fresh member list.
                    Signal::builder("members-shown").build(),
                    // Invite this user.
                    Signal::builder("invite")
                        .param_types([String::static_type()])
                        .build(),
                    // Set the topic to this.
                    Signal::builder("set-topic")
                        .param_types([String::static_type()])
                        .build(),
                    // Leave the room (confirmed).
                    Signal::builder("leave").build(),
                ]
            })
        }
    }

    impl WidgetImpl for LwRoomHeader {}
    impl BoxImpl for LwRoomHeader {}
}

glib::wrapper! {
    /// The header of the room shown.
    pub struct LwRoomHeader(ObjectSubclass<imp::LwRoomHeader>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

/// What `me` (with `mine`) may do to a member with role `theirs`: the server checks the
/// same rules (nobody acts on their own rank or above; only the owner promotes/demotes).
pub fn allowed_actions(mine: Option<Role>, theirs: Role) -> Vec<(&'static str, &'static str)> {
    let Some(mine) = mine else { return Vec::new() };
    let mut actions = Vec::new();
    if mine == Role::Owner && theirs == Role::Member {
        actions.push((n_("Make Moderator"), "win.room-promote"));
    }
    if mine == Role::Owner && theirs == Role::Moderator {
        actions.push((n_("Make Member"), "win.room-demote"));
    }
    if mine >= Role::Moderator && mine > theirs {
        actions.push((n_("Remove from Room"), "win.room-kick"));
        actions.push((n_("Ban"), "win.room-ban"));
    }
    actions
}

/// A role in words.
pub fn role_name(role: Role) -> String {
    gettext(match role {
        Role::Owner => n_("Owner"),
        Role::Moderator => n_("Moderator"),
        Role::Member => n_("Member"),
    })
}

impl LwRoomHeader {
    fn setup(&self) {
        let members = gio::ListStore::new::<LwMemberEntry>();
        self.imp().members.replace(Some(members.clone()));
        self.imp().members_list.bind_model(
            Some(&members),
            glib::clone!(
                #[weak(rename_to = header)]
                self,
                #[upgrade_or_else]
                || gtk::Label::new(None).upcast(),
                move |obj| {
                    let m = obj
                        .downcast_ref::<LwMemberEntry>()
                        .expect("the list holds members");
                    header.member_row(&m.data())
                }
            ),
        );
    }

    /// Shows `conv` (a room), following its topic, member count and removal.
    pub fn set_conversation(&self, conv: Option<&LwConversation>) {
        let imp = self.imp();
        if let Some((old, ids)) = imp.conversation.take() {
            for id in ids {
                old.disconnect(id);
            }
        }
        replace_all::<LwMemberEntry>(&self.members(), &[]);
        let Some(conv) = conv.filter(|c| c.is_room()) else {
            self.set_visible(false);
            return;
        };
        self.set_visible(true);
        let update = glib::clone!(
            #[weak(rename_to = header)]
            self,
            move |c: &LwConversation| header.update(c)
        );
        let u = update.clone();
        let ids = vec![
            conv.connect_topic_notify(move |c| u(c)),
            conv.connect_members_notify({
                let u = update.clone();
                move |c| u(c)
            }),
            conv.connect_removed_notify({
                let u = update.clone();
                move |c| u(c)
            }),
        ];
        update(conv);
        imp.conversation.replace(Some((conv.clone(), ids)));
    }

    /// Refreshes the labels and which buttons show (role or removal changed).
    pub fn update(&self, conv: &LwConversation) {
        let imp = self.imp();
        let name = conv.name();
        imp.name_label.set_text(&name);
        let topic = if conv.is_read_only() {
            conv.removed()
        } else if conv.is_general() && conv.topic().is_empty() {
            gettext("Everyone on this server")
        } else {
            conv.topic()
        };
        imp.topic_label.set_text(&topic);
        imp.topic_label.set_visible(!topic.is_empty());
        imp.members_label.set_text(&match conv.members() {
            0 => String::new(),
            n => ngettext_with("{count} member", "{count} members", n, &[("count", &n)]),
        });
        let member = !conv.is_read_only() && !conv.is_general();
        imp.members_button.set_visible(!conv.is_read_only());
        imp.invite_box.set_visible(member);
        imp.topic_button
            .set_visible(member && conv.role().is_some_and(|r| r >= Role::Moderator));
        imp.topic_entry.set_text(&conv.topic());
        imp.leave_button.set_visible(member);
        imp.leave_label.set_text(&if conv.role() == Some(Role::Owner) {
            gettext_with(
                "Leave {name}? You stop receiving its messages, in every session. You own it: a moderator (or the longest member) becomes its owner.",
                &[("name", &name)],
            )
        } else {
            gettext_with(
                "Leave {name}? You stop receiving its messages, in every session.",
                &[("name", &name)],
            )
        });
        imp.my_role.set(conv.role());
    }

    /// The member list of the room shown, as the user `me` sees it.
    pub fn set_members(&self, members: Vec<MemberInfo>, me: &str, my_role: Option<Role>) {
        let imp = self.imp();
        imp.me.replace(me.to_owned());
        imp.my_role.set(my_role);
        let mut members = members;
        // Owner, moderators, then members; by name within each.
        members.sort_by(|a, b| {
            b.role.cmp(&a.role).then_with(|| {
                a.user
                    .to_ascii_lowercase()
                    .cmp(&b.user.to_ascii_lowercase())
            })
        });
        let items: Vec<LwMemberEntry> = members.into_iter().map(LwMemberEntry::new).collect();
        replace_all(&self.members(), &items);
    }

    /// The members listed (a `gio::ListStore` of [`LwMemberEntry`]).
    pub fn members(&self) -> gio::ListStore {
        self.imp()
            .members
            .borrow()
            .clone()
            .expect("created in setup()")
    }

    /// The moderator actions offered on `user`'s row, by label (for tests).
    pub fn actions_for(&self, user: &str) -> Vec<String> {
        let store = self.members();
        (0..store.n_items())
            .filter_map(|i| store.item(i).and_downcast::<LwMemberEntry>())
            .map(|m| m.data())
            .find(|m| m.user.eq_ignore_ascii_case(user))
            .map(|m| self.actions_on(&m))
            .unwrap_or_default()
            .into_iter()
            .map(|(label, _)| label.to_owned())
            .collect()
    }

    /// Opens the members panel (as a click on the member count does).
    pub fn open_members(&self) {
        self.imp().members_button.popup();
    }

    /// Closes the members panel.
    pub fn close_members(&self) {
        self.imp().members_button.popdown();
    }

    /// The topic shown under the name.
    pub fn topic_text(&self) -> String {
        self.imp().topic_label.text().to_string()
    }

    /// The member count shown.
    pub fn members_text(&self) -> String {
        self.imp().members_label.text().to_string()
    }

    /// The header's Leave button shows.
    pub fn can_leave(&self) -> bool {
        self.imp().leave_button.is_visible()
    }

    fn actions_on(&self, m: &MemberInfo) -> Vec<(&'static str, &'static str)> {
        if m.user.eq_ignore_ascii_case(&self.imp().me.borrow()) {
            return Vec::new();
        }
        allowed_actions(self.imp().my_role.get(), m.role)
    }

    /// One member: presence dot, name, role, and a menu of the actions allowed.
    fn member_row(&self, m: &MemberInfo) -> gtk::Widget {
        let row = gtk::Box::builder()
            .spacing(8)
            .css_classes(["member-row"])
            .build();
        let dot = gtk::Box::builder()
            .valign(gtk::Align::Center)
            .css_classes(["dot"])
            .tooltip_text(if m.online {
                gettext("Online")
            } else {
                gettext("Offline")
            })
            .build();
        if m.online {
            dot.add_css_class("online");
        }
        let name = gtk::Label::builder()
            .label(m.user.as_str())
            .xalign(0.0)
            .hexpand(true)
            .ellipsize(gtk::pango::EllipsizeMode::End)
            .build();
        row.append(&dot);
        row.append(&name);
        if m.role != Role::Member {
            row.append(
                &gtk::Label::builder()
                    .label(role_name(m.role).as_str())
                    .css_classes(["dim-label", "caption"])
                    .build(),
            );
        }
        let actions = self.actions_on(m);
        if !actions.is_empty() {
            let menu = gio::Menu::new();
            for (label, action) in actions {
                let item = gio::MenuItem::new(Some(&gettext(label)), None);
                item.set_action_and_target_value(Some(action), Some(&m.user.to_variant()));
                menu.append_item(&item);
            }
            let button = crate::gui::a11y::icon_menu_button(
                "view-more-symbolic",
                &gettext_with("Moderate {user}", &[("user", &m.user)]),
            );
            button.set_menu_model(Some(&menu));
            row.append(&button);
        }
        row.upcast()
    }
}
