//! `LwRoomDirectory`: the server's public rooms (name, topic, member count), searchable,
//! each with a Join button (or Open, for a room the user is in).
//!
//! It shows a `gio::ListStore` of [`LwRoomEntry`] in a virtualised `GtkListView`; the
//! window fills it from `Event::Rooms` in one splice. Typing in the search field emits
//! `search` (the window sends `Rooms { filter }`; the server filters by name and topic);
//! the buttons emit `join`.

use std::cell::RefCell;
use std::sync::OnceLock;

use gtk::glib::subclass::Signal;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use crate::app::client::RoomItem;
use crate::gui::i18n::{gettext, ngettext_with};
use crate::gui::room_models::{LwRoomEntry, replace_all};

mod imp {
    use super::*;

    #[derive(Default, gtk::CompositeTemplate)]
    #[template(file = "../../../ui/client_window/room_directory.ui")]
    pub struct LwRoomDirectory {
        #[template_child]
        pub(super) search_entry: TemplateChild<gtk::SearchEntry>,
        #[template_child]
        pub(super) empty_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) list_view: TemplateChild<gtk::ListView>,
        /// The rooms listed.
        pub(super) rooms: RefCell<Option<gio::ListStore>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for LwRoomDirectory {
        const NAME: &'static str = "LwRoomDirectory";
        type Type = super::LwRoomDirectory;
        type ParentType = gtk::Window;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
            klass.bind_template_callbacks();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    #[gtk::template_callbacks]
    impl LwRoomDirectory {
        #[template_callback]
        fn on_search_changed(&self) {
            let filter = self.search_entry.text().trim().to_owned();
            self.obj().emit_by_name::<()>("search", &[&filter]);
        }
    }

    impl ObjectImpl for LwRoomDirectory {
        fn constructed(&self) {
            self.parent_constructed();
            self.obj().setup();
        }

        fn signals() -> &'static [Signal] {
            static SIGNALS: OnceLock<Vec<Signal>> = OnceLock::new();
            SIGNALS.get_or_init(|| {
                vec![
                    // The search text changed: list the rooms matching it.
                    Signal::builder("search")
                        .param_types([String::static_type()])
                        .build(),
                    // Join (or open) this room.
                    Signal::builder("join")
                        .param_types([String::static_type()])
                        .build(),
                ]
            })
        }
    }

    impl WidgetImpl for LwRoomDirectory {}
    impl WindowImpl for LwRoomDirectory {}
}

glib::wrapper! {
    /// The room directory dialog.
    pub struct LwRoomDirectory(ObjectSubclass<imp::LwRoomDirectory>)
        @extends gtk::Window, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Native,
                    gtk::Root, gtk::ShortcutManager;
}

impl Default for LwRoomDirectory {
    fn default() -> Self {
        glib::Object::new()
    }
}

/// The widgets of one row (built in `LwRoomDirectory::row`), so `bind` only sets texts.
struct RowParts {
    name: gtk::Label,
    topic: gtk::Label,
    members: gtk::Label,
    button: gtk::Button,
}

impl RowParts {
    /// Finds the parts in a row: `[text: [name, topic], members, button]`.
    fn of(row: &gtk::Widget) -> Option<Self> {
        let text = row.first_child()?;
        let members = text.next_sibling()?;
        let button = members.next_sibling()?;
        let name = text.first_child()?;
        let topic = name.next_sibling()?;
        Some(Self {
            name: name.downcast().ok()?,
            topic: topic.downcast().ok()?,
            members: members.downcast().ok()?,
            button: button.downcast().ok()?,
        })
    }
}

impl LwRoomDirectory {
    /// An empty directory on top of `parent`.
    pub fn new(parent: &impl IsA<gtk::Window>) -> Self {
        let d = Self::default();
        d.set_transient_for(Some(parent));
        d
    }

    fn setup(&self) {
        let rooms = gio::ListStore::new::<LwRoomEntry>();
        self.imp().rooms.replace(Some(rooms.clone()));
        let empty = self.imp().empty_label.get();
        rooms.connect_items_changed(move |s, _, _, _| empty.set_visible(s.n_items() == 0));
        let factory = gtk::SignalListItemFactory::new();
        factory.connect_setup(glib::clone!(
            #[weak(rename_to = dir)]
            self,
            move |_, item| {
                let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                    return;
                };
                item.set_child(Some(&dir.row(item)));
            }
        ));
        factory.connect_bind(|_, item| {
            let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                return;
            };
            let (Some(child), Some(entry)) =
                (item.child(), item.item().and_downcast::<LwRoomEntry>())
            else {
                return;
            };
            let Some(parts) = RowParts::of(&child) else {
                return;
            };
            let r = entry.data();
            parts.name.set_text(&r.room);
            parts.topic.set_text(&r.topic);
            parts.topic.set_visible(!r.topic.is_empty());
            parts.members.set_text(&ngettext_with(
                "{count} member",
                "{count} members",
                r.members,
                &[("count", &r.members)],
            ));
            parts.button.set_label(&if r.role.is_some() {
                gettext("Open")
            } else {
                gettext("Join")
            });
        });
        let view = &self.imp().list_view;
        view.set_factory(Some(&factory));
        view.set_model(Some(&gtk::NoSelection::new(Some(rooms))));
    }

    /// One row's widgets; the button joins the room of whatever item the row shows.
    fn row(&self, item: &gtk::ListItem) -> gtk::Widget {
        let name = gtk::Label::builder()
            .xalign(0.0)
            .css_classes(["heading"])
            .build();
        let topic = gtk::Label::builder()
            .xalign(0.0)
            .ellipsize(gtk::pango::EllipsizeMode::End)
            .css_classes(["dim-label"])
            .build();
        let members = gtk::Label::builder()
            .css_classes(["dim-label", "caption"])
            .build();
        let button = gtk::Button::builder()
            .label(gettext("Join"))
            .valign(gtk::Align::Center)
            .css_classes(["suggested-action"])
            .build();
        let weak_item = item.downgrade();
        button.connect_clicked(glib::clone!(
            #[weak(rename_to = dir)]
            self,
            move |_| {
                if let Some(entry) = weak_item
                    .upgrade()
                    .and_then(|i| i.item())
                    .and_downcast::<LwRoomEntry>()
                {
                    dir.emit_by_name::<()>("join", &[&entry.data().room]);
                }
            }
        ));
        let text = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .hexpand(true)
            .build();
        text.append(&name);
        text.append(&topic);
        let row = gtk::Box::builder()
            .spacing(12)
            .css_classes(["directory-row"])
            .build();
        row.append(&text);
        row.append(&members);
        row.append(&button);
        row.upcast()
    }

    /// Clears the search and shows the dialog.
    pub fn open(&self) {
        self.imp().search_entry.set_text("");
        self.present();
        self.imp().search_entry.grab_focus();
    }

    /// Types a search (tests): the `search` signal follows as for a person.
    pub fn search(&self, text: &str) {
        self.imp().search_entry.set_text(text);
    }

    /// Lists `rooms` (the answer to a search), replacing what was listed.
    pub fn set_rooms(&self, rooms: Vec<RoomItem>) {
        let Some(store) = self.imp().rooms.borrow().clone() else {
            return;
        };
        let items: Vec<LwRoomEntry> = rooms.into_iter().map(LwRoomEntry::new).collect();
        replace_all(&store, &items);
    }

    /// The rooms listed (for tests).
    pub fn rooms(&self) -> Vec<RoomItem> {
        let Some(store) = self.imp().rooms.borrow().clone() else {
            return Vec::new();
        };
        (0..store.n_items())
            .filter_map(|i| store.item(i).and_downcast::<LwRoomEntry>())
            .map(|e| e.data())
            .collect()
    }
}
