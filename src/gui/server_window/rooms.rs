//! The server window's rooms: the list (room, visibility, creator, members, last activity, Close
//! with confirmation), the announce dropdown, and the operator's room actions.
//!
//! Everything that depends on the server side of rooms is here, in one place: the
//! `ServerLog::RoomCreated` / `RoomUpdated` / `RoomClosed` entries that feed the list (the
//! server sends `RoomUpdated` for every stored room at start, so rooms from before the
//! window are listed too, and after every membership change), and the
//! `ServerHandle::announce_to` / `close_room` calls. `#general` comes first (the server's
//! room, never closed).

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use super::{LwServerWindow, clock, now_secs};
use crate::app::ids::GENERAL;
use crate::app::rooms::Visibility;
use crate::app::server::{SERVER_AUTHOR, ServerLog};
use crate::gui::i18n::{gettext, gettext_with};
use crate::gui::models::position;
use crate::gui::room_models::{LwServerRoom, ServerRoomData};
use crate::gui::runtime;

impl LwServerWindow {
    /// The room list's columns and the announce dropdown.
    pub(super) fn setup_rooms(&self) {
        let imp = self.imp();
        let rooms = gio::ListStore::new::<LwServerRoom>();
        let names = gtk::StringList::new(&[]);
        imp.rooms.replace(Some(rooms.clone()));
        imp.room_names.replace(Some(names.clone()));
        imp.announce_room.set_model(Some(&names));
        self.add_room(ServerRoomData {
            room: GENERAL.to_owned(),
            by: SERVER_AUTHOR.to_owned(),
            visibility: Visibility::Public,
            last_activity: 0,
            members: 0,
        });
        let view = &imp.rooms_view;
        view.set_model(Some(&gtk::NoSelection::new(Some(rooms))));
        let text_column = |title: &str, expand: bool, f: fn(&ServerRoomData) -> String| {
            let factory = gtk::SignalListItemFactory::new();
            factory.connect_setup(|_, item| {
                if let Some(item) = item.downcast_ref::<gtk::ListItem>() {
                    item.set_child(Some(&gtk::Label::builder().xalign(0.0).build()));
                }
            });
            factory.connect_bind(move |_, item| {
                let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                    return;
                };
                if let (Some(label), Some(entry)) = (
                    item.child().and_downcast::<gtk::Label>(),
                    item.item().and_downcast::<LwServerRoom>(),
                ) {
                    label.set_text(&f(&entry.data()));
                }
            });
            let col = gtk::ColumnViewColumn::new(Some(title), Some(factory));
            col.set_expand(expand);
            col.set_resizable(true);
            col
        };
        view.append_column(&text_column(&gettext("Room"), true, |d| d.room.clone()));
        view.append_column(&text_column(&gettext("Visibility"), false, |d| {
            match d.visibility {
                Visibility::Public => gettext("Public"),
                Visibility::Private => gettext("Private"),
            }
        }));
        view.append_column(&text_column(&gettext("Created by"), true, |d| d.by.clone()));
        view.append_column(&text_column(&gettext("Members"), false, |d| {
            // `#general` has every user; its count is not tracked here.
            if d.room == GENERAL {
                "everyone".to_owned()
            } else {
                d.members.to_string()
            }
        }));
        view.append_column(&text_column(&gettext("Last activity"), false, |d| {
            if d.last_activity == 0 {
                "—".to_owned()
            } else {
                clock(d.last_activity)
            }
        }));
        let close = gtk::SignalListItemFactory::new();
        close.connect_setup(glib::clone!(
            #[weak(rename_to = win)]
            self,
            move |_, item| {
                let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                    return;
                };
                item.set_child(Some(&win.close_button(item)));
            }
        ));
        close.connect_bind(|_, item| {
            let Some(item) = item.downcast_ref::<gtk::ListItem>() else {
                return;
            };
            if let (Some(button), Some(entry)) =
                (item.child(), item.item().and_downcast::<LwServerRoom>())
            {
                // The server's own room cannot be closed.
                button.set_visible(entry.data().room != GENERAL);
            }
        });
        view.append_column(&gtk::ColumnViewColumn::new(None, Some(close)));
        self.update_rooms_heading();
    }

    /// A Close button whose popover asks for confirmation.
    fn close_button(&self, item: &gtk::ListItem) -> gtk::Widget {
        let confirm = gtk::Button::builder()
            .label(gettext("Close Room"))
            .css_classes(["destructive-action"])
            .build();
        let text = gtk::Label::builder()
            .label(gettext(
                "Close this room for everyone? Its members are removed and it leaves the directory.",
            ))
            .wrap(true)
            .max_width_chars(32)
            .xalign(0.0)
            .build();
        let body = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(8)
            .margin_top(6)
            .margin_bottom(6)
            .margin_start(6)
            .margin_end(6)
            .build();
        body.append(&text);
        body.append(&confirm);
        let popover = gtk::Popover::builder().child(&body).build();
        let weak_item = item.downgrade();
        confirm.connect_clicked(glib::clone!(
            #[weak(rename_to = win)]
            self,
            #[weak]
            popover,
            move |_| {
                popover.popdown();
                if let Some(entry) = weak_item
                    .upgrade()
                    .and_then(|i| i.item())
                    .and_downcast::<LwServerRoom>()
                {
                    win.close_room(&entry.data().room);
                }
            }
        ));
        gtk::MenuButton::builder()
            .label(gettext("Close…"))
            .popover(&popover)
            .css_classes(["flat"])
            .build()
            .upcast()
    }

    /// The rooms listed (a `gio::ListStore` of [`LwServerRoom`]).
    pub fn rooms(&self) -> gio::ListStore {
        self.imp()
            .rooms
            .borrow()
            .clone()
            .expect("created in setup()")
    }

    /// The room names listed, `#general` first (for tests).
    pub fn room_names(&self) -> Vec<String> {
        let rooms = self.rooms();
        (0..rooms.n_items())
            .filter_map(|i| rooms.item(i).and_downcast::<LwServerRoom>())
            .map(|r| r.data().room)
            .collect()
    }

    /// The member count listed for `room` (for tests).
    pub fn room_members(&self, room: &str) -> Option<u32> {
        let rooms = self.rooms();
        let pos = position::<LwServerRoom>(&rooms, |r| r.data().room.eq_ignore_ascii_case(room))?;
        rooms
            .item(pos)
            .and_downcast::<LwServerRoom>()
            .map(|r| r.data().members)
    }

    fn add_room(&self, data: ServerRoomData) {
        let name = data.room.clone();
        if position::<LwServerRoom>(&self.rooms(), |r| r.data().room.eq_ignore_ascii_case(&name))
            .is_some()
        {
            return;
        }
        self.rooms().append(&LwServerRoom::new(data));
        if let Some(names) = self.imp().room_names.borrow().as_ref() {
            names.append(&name);
        }
        self.update_rooms_heading();
    }

    fn remove_room(&self, room: &str) {
        let rooms = self.rooms();
        if let Some(pos) =
            position::<LwServerRoom>(&rooms, |r| r.data().room.eq_ignore_ascii_case(room))
        {
            rooms.remove(pos);
            if let Some(names) = self.imp().room_names.borrow().as_ref() {
                names.remove(pos);
            }
        }
        self.update_rooms_heading();
    }

    fn update_rooms_heading(&self) {
        let n = self.rooms().n_items();
        self.imp()
            .rooms_heading
            .set_text(&gettext_with("Rooms — {count}", &[("count", &n)]));
    }

    /// A message went to `to`: a room's activity column moves.
    pub(super) fn room_active(&self, to: &str) {
        if !to.starts_with('#') {
            return;
        }
        let rooms = self.rooms();
        if let Some(pos) =
            position::<LwServerRoom>(&rooms, |r| r.data().room.eq_ignore_ascii_case(to))
            && let Some(r) = rooms.item(pos).and_downcast::<LwServerRoom>()
        {
            r.update(|d| d.last_activity = now_secs());
            rooms.items_changed(pos, 1, 1);
        }
    }

    /// A room was created or closed.
    pub(super) fn handle_room_log(&self, ev: ServerLog) {
        match ev {
            ServerLog::RoomCreated {
                room,
                by,
                visibility,
            } => {
                self.log(&format!("{by} created {room}"));
                self.add_room(ServerRoomData {
                    room,
                    by,
                    visibility,
                    last_activity: 0,
                    members: 1,
                });
            }
            ServerLog::RoomUpdated {
                room,
                visibility,
                members,
                last_activity,
            } => {
                let last_activity = (last_activity / 1000) as i64;
                let rooms = self.rooms();
                match position::<LwServerRoom>(&rooms, |r| {
                    r.data().room.eq_ignore_ascii_case(&room)
                }) {
                    Some(pos) => {
                        if let Some(r) = rooms.item(pos).and_downcast::<LwServerRoom>() {
                            r.update(|d| {
                                d.members = members;
                                d.last_activity = d.last_activity.max(last_activity);
                            });
                            rooms.items_changed(pos, 1, 1);
                        }
                    }
                    // A room from before the window started (the creator is not known).
                    None => self.add_room(ServerRoomData {
                        room,
                        by: "—".to_owned(),
                        visibility,
                        last_activity,
                        members,
                    }),
                }
            }
            ServerLog::RoomClosed { room } => {
                self.log(&format!("{room} was closed"));
                self.remove_room(&room);
            }
            _ => {}
        }
    }

    /// The room picked in the announce dropdown, unless it is `#general`.
    pub(super) fn announce_target(&self) -> Option<String> {
        let imp = self.imp();
        let names = imp.room_names.borrow().clone()?;
        let room = names.string(imp.announce_room.selected())?.to_string();
        (room != GENERAL).then_some(room)
    }

    /// Picks the room the announce field posts to (`#general` by default).
    pub fn set_announce_room(&self, room: &str) -> bool {
        let Some(pos) =
            position::<LwServerRoom>(&self.rooms(), |r| r.data().room.eq_ignore_ascii_case(room))
        else {
            return false;
        };
        self.imp().announce_room.set_selected(pos);
        true
    }

    /// Posts an announcement into `room` as the server.
    pub fn announce_to(&self, room: &str, text: &str) {
        if let Some(h) = self.imp().handle.borrow().clone() {
            let (room, text) = (room.to_owned(), text.to_owned());
            runtime::spawn(async move { h.announce_to(Some(room), text).await });
        }
    }

    /// Closes `room` for everyone (the Close button, once confirmed).
    pub fn close_room(&self, room: &str) {
        if room.eq_ignore_ascii_case(GENERAL) {
            return;
        }
        if let Some(h) = self.imp().handle.borrow().clone() {
            let room = room.to_owned();
            runtime::spawn(async move { h.close_room(room).await });
        }
    }
}
