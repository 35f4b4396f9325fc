//! Model objects for rooms (GObjects without widgets), each a plain data struct in a
//! GObject so a `gio::ListStore` can hold it:
//!
//! - [`LwRoomEntry`]: a room in the client's directory or the server window's room list.
//! - [`LwMemberEntry`]: one member in a room's member list.
//! - [`LwInvitation`]: a pending invitation in the sidebar.
//!
//! Like [`LwClientEntry`](super::models::LwClientEntry), a change is a data update plus
//! one `items-changed` on the store; a whole list that arrives at once (a directory page,
//! a member list) replaces the store's items in one `splice`.

use std::cell::RefCell;

use gtk::gio;
use gtk::glib;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk4 as gtk;

use crate::app::client::{InvitationItem, RoomItem};
use crate::app::protocol::MemberInfo;

/// Declares a GObject `$name` that holds one `$data` (cloned out, updated in place).
macro_rules! data_object {
    ($(#[$doc:meta])* $name:ident, $imp:ident, $data:ty) => {
        mod $imp {
            use super::*;

            #[derive(Default)]
            pub struct $name {
                pub data: RefCell<Option<$data>>,
            }

            #[glib::object_subclass]
            impl ObjectSubclass for $name {
                const NAME: &'static str = stringify!($name);
                type Type = super::$name;
            }

            impl ObjectImpl for $name {}
        }

        glib::wrapper! {
            $(#[$doc])*
            pub struct $name(ObjectSubclass<$imp::$name>);
        }

        impl $name {
            /// An object holding `data`.
            pub fn new(data: $data) -> Self {
                let o: Self = glib::Object::new();
                o.imp().data.replace(Some(data));
                o
            }

            /// A copy of its data.
            pub fn data(&self) -> $data {
                self.imp().data.borrow().clone().expect("set in new()")
            }

            /// Changes its data (the caller emits `items-changed` on the store).
            pub fn update(&self, f: impl FnOnce(&mut $data)) {
                if let Some(d) = self.imp().data.borrow_mut().as_mut() {
                    f(d);
                }
            }
        }
    };
}

data_object!(
    /// A room as the directory or the server window lists it.
    LwRoomEntry,
    imp_room,
    RoomItem
);

data_object!(
    /// A member of a room, with role and presence.
    LwMemberEntry,
    imp_member,
    MemberInfo
);

data_object!(
    /// An invitation to a room, waiting for Accept or Decline.
    LwInvitation,
    imp_invitation,
    InvitationItem
);

/// Replaces every item of `store` with `items` in one `items-changed`.
pub fn replace_all<T: IsA<glib::Object>>(store: &gio::ListStore, items: &[T]) {
    store.splice(0, store.n_items(), items);
}

/// A room in the server window's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRoomData {
    /// `#name`.
    pub room: String,
    /// Its creator (`server` for `#general`).
    pub by: String,
    /// Public or private.
    pub visibility: crate::app::rooms::Visibility,
    /// Newest message, Unix seconds (0: none).
    pub last_activity: i64,
    /// How many members (0 until the server said).
    pub members: u32,
}

data_object!(
    /// A room in the server window.
    LwServerRoom,
    imp_server_room,
    ServerRoomData
);
