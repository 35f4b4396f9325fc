//! Rooms in the client window: what each room event does to the models, and the room
//! commands the user gives (create, browse and join, accept or decline an invitation,
//! invite, set the topic, moderate, leave).
//!
//! The room list lives in the same `gio::ListStore` of [`LwConversation`] as the private
//! chats (rooms first, see `conversations.rs`); invitations in a `gio::ListStore` of
//! [`LwInvitation`]. A room the user was kicked or banned from stays in the sidebar,
//! read-only, with the reason in its header, a notice in its messages and the composer
//! off; a room the user left (here or in another session) goes from the sidebar
//! (docs/GUI.md, "Rooms").

use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gio, glib};
use gtk4 as gtk;

use super::LwClientWindow;
use super::new_room_dialog::LwNewRoomDialog;
use super::room_directory::LwRoomDirectory;
use super::user_facing::user_facing;
use crate::app::client::{Command, Event, InvitationItem, RoomItem};
use crate::app::ids::GENERAL;
use crate::app::protocol::{ErrorCode, MemberChange};
use crate::app::rooms::{Role, Visibility};
use crate::gui::i18n::{gettext, gettext_with};
use crate::gui::models::LwConversation;
use crate::gui::room_models::{LwInvitation, replace_all};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a moderator's action is called in the window's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moderation {
    /// Remove now.
    Kick,
    /// Remove and keep out.
    Ban,
    /// Make a moderator.
    Promote,
    /// Make a member again.
    Demote,
}

impl LwClientWindow {
    /// The pending invitations (a `gio::ListStore` of [`LwInvitation`]).
    pub fn invitations(&self) -> gio::ListStore {
        self.imp()
            .invitations
            .borrow()
            .clone()
            .expect("created in setup()")
    }

    /// Applies a client event as if the client had sent it: tests feed room events to the
    /// widgets this way (the models and widgets follow exactly as for a live session).
    pub fn feed_event(&self, e: Event) {
        self.handle_app_event(e);
    }

    /// Shows the chat page without a session, so events fed with [`Self::feed_event`]
    /// are seen as a signed-in user would see them (tests and screenshots).
    pub fn show_chat_offline(&self, title: &str) {
        self.set_chat_visible(true);
        self.set_title(Some(title));
        self.imp().sidebar.set_me(title);
    }

    /// Applies one room event (`RoomState`, `Rooms`, `Joined`, `Left`, `Invited`,
    /// `Member`, `Topic`, `Members`); others are ignored here.
    pub(super) fn handle_room_event(&self, e: Event) {
        match e {
            Event::RoomState { rooms, invitations } => self.set_room_state(rooms, invitations),
            Event::Rooms { rooms } => {
                if let Some(d) = self.imp().directory.borrow().as_ref() {
                    d.set_rooms(rooms);
                }
            }
            Event::Joined { room } => self.joined(room),
            Event::Left { room, reason, by } => self.left(&room, reason, by.as_deref()),
            Event::Invited { room, by, topic } => {
                self.add_invitation(InvitationItem { room, by, topic });
            }
            Event::Member {
                room,
                user,
                change,
                by,
            } => self.member_changed(&room, &user, change, by.as_deref()),
            Event::Topic { room, topic, by } => {
                if let Some(c) = self.conversation(&room) {
                    c.set_topic(topic.as_str());
                    c.add_notice(
                        &gettext_with(
                            "{by} set the topic: {topic}",
                            &[("by", &by), ("topic", &topic)],
                        ),
                        now_ms(),
                    );
                }
            }
            Event::Members { room, members } => {
                if let Some(c) = self
                    .current()
                    .filter(|c| c.name().eq_ignore_ascii_case(&room))
                {
                    let me = self.me().unwrap_or_default();
                    c.set_members(members.len() as u32);
                    self.imp().room_header.set_members(members, &me, c.role());
                }
            }
            _ => {}
        }
    }

    /// After login and every reconnect: the rooms the user is in and the invitations.
    fn set_room_state(&self, rooms: Vec<RoomItem>, invitations: Vec<InvitationItem>) {
        let keys: Vec<String> = rooms.iter().map(|r| r.room.to_ascii_lowercase()).collect();
        for r in rooms {
            self.update_room(&r);
        }
        // Rooms left while away (not kicked ones, which stay read-only): out of the list.
        let convs = self.conversations();
        let gone: Vec<LwConversation> = (0..convs.n_items())
            .filter_map(|i| convs.item(i).and_downcast::<LwConversation>())
            .filter(|c| c.is_room() && !c.is_general() && !c.is_read_only())
            .filter(|c| !keys.contains(&c.name().to_ascii_lowercase()))
            .collect();
        for c in gone {
            self.remove_conversation(&c);
        }
        let items: Vec<LwInvitation> = invitations.into_iter().map(LwInvitation::new).collect();
        replace_all(&self.invitations(), &items);
    }

    /// The sidebar's entry for `r`, created if new, with its topic, count and role.
    fn update_room(&self, r: &RoomItem) -> LwConversation {
        let c = self.conversation_for(&r.room);
        c.set_role(r.role);
        c.set_topic(r.topic.as_str());
        c.set_members(r.members);
        c.set_invite_only(r.visibility == Visibility::Private);
        c.set_removed("");
        if self.current().as_ref() == Some(&c) {
            self.imp().room_header.update(&c);
            self.imp().composer.set_read_only(None);
            self.show_privacy(Some(&c));
        }
        c
    }

    fn joined(&self, room: RoomItem) {
        let imp = self.imp();
        let c = self.update_room(&room);
        self.remove_invitation(&room.room);
        let key = room.room.to_ascii_lowercase();
        let asked = imp
            .pending_room
            .borrow()
            .as_ref()
            .is_some_and(|p| p.to_ascii_lowercase() == key);
        if asked {
            imp.pending_room.replace(None);
            if let Some(d) = imp.new_room_dialog.borrow().as_ref() {
                d.set_visible(false);
            }
            if let Some(d) = imp.directory.borrow().as_ref() {
                d.set_visible(false);
            }
            self.select_conversation(&c);
        }
    }

    fn left(&self, room: &str, reason: MemberChange, by: Option<&str>) {
        let Some(c) = self.conversation(room) else {
            return;
        };
        let by = by.unwrap_or("a moderator");
        let why = match reason {
            // The user's own choice (here or in another session): the room goes.
            MemberChange::Left => {
                self.remove_conversation(&c);
                return;
            }
            MemberChange::Kicked => gettext_with(
                "{by} removed you from {room}.",
                &[("by", &by), ("room", &room)],
            ),
            MemberChange::Banned => gettext_with(
                "{by} banned you from {room}.",
                &[("by", &by), ("room", &room)],
            ),
            _ => gettext_with("You are no longer in {room}.", &[("room", &room)]),
        };
        let text = gettext_with(
            "{why} You can still read what was said; you can no longer write here.",
            &[("why", &why)],
        );
        c.set_role(None);
        c.set_removed(text.as_str());
        c.add_notice(&text, now_ms());
        self.show_toast(&why);
        if self.current().as_ref() == Some(&c) {
            self.imp().room_header.update(&c);
            self.imp().composer.set_read_only(Some(&text));
        }
    }

    fn member_changed(&self, room: &str, user: &str, change: MemberChange, by: Option<&str>) {
        let Some(c) = self.conversation(room) else {
            return;
        };
        let me = self.me().unwrap_or_default();
        let is_me = user.eq_ignore_ascii_case(&me);
        match change {
            MemberChange::Joined => c.set_members(c.members() + 1),
            MemberChange::Left | MemberChange::Kicked | MemberChange::Banned => {
                c.set_members(c.members().saturating_sub(1))
            }
            MemberChange::Owner if is_me => c.set_role(Some(Role::Owner)),
            MemberChange::Promoted if is_me => c.set_role(Some(Role::Moderator)),
            MemberChange::Demoted if is_me => c.set_role(Some(Role::Member)),
            _ => {}
        }
        let by = by.map_or_else(|| gettext("a moderator"), str::to_owned);
        let args: &[(&str, &dyn std::fmt::Display)] = &[("user", &user), ("by", &by)];
        let notice = match change {
            MemberChange::Joined => Some(gettext_with("{user} joined", args)),
            MemberChange::Left => Some(gettext_with("{user} left", args)),
            MemberChange::Kicked => Some(gettext_with("{by} removed {user}", args)),
            MemberChange::Banned => Some(gettext_with("{by} banned {user}", args)),
            MemberChange::Promoted => Some(gettext_with("{user} is now a moderator", args)),
            MemberChange::Owner => Some(gettext_with("{user} is now the owner", args)),
            _ => None,
        };
        if let Some(n) = notice {
            c.add_notice(&n, now_ms());
        }
        if self.current().as_ref() == Some(&c) {
            self.imp().room_header.update(&c);
            // The member list follows: ask for the new one.
            self.send_command(Command::Members { room: c.name() });
        }
    }

    fn add_invitation(&self, inv: InvitationItem) {
        self.remove_invitation(&inv.room);
        let text = gettext_with(
            "{by} invited you to {room}",
            &[("by", &inv.by), ("room", &inv.room)],
        );
        self.invitations().append(&LwInvitation::new(inv));
        if !self.is_active() {
            self.notify("", "LiveWire", &text);
        }
    }

    fn remove_invitation(&self, room: &str) {
        let store = self.invitations();
        let pos = (0..store.n_items()).find(|&i| {
            store
                .item(i)
                .and_downcast::<LwInvitation>()
                .is_some_and(|inv| inv.data().room.eq_ignore_ascii_case(room))
        });
        if let Some(pos) = pos {
            store.remove(pos);
        }
    }

    /// Takes a conversation out of the sidebar; if it was shown, `#general` is.
    pub(super) fn remove_conversation(&self, c: &LwConversation) {
        let convs = self.conversations();
        if let Some(pos) = convs.find(c) {
            convs.remove(pos);
        }
        if self.current().as_ref() == Some(c)
            && let Some(general) = self.conversation(GENERAL)
        {
            self.select_conversation(&general);
        }
    }

    /// A room error while the New Room dialog waits: shown in the dialog, not as a toast.
    /// Returns whether it was.
    pub(super) fn room_error_in_dialog(&self, code: ErrorCode, message: &str) -> bool {
        let imp = self.imp();
        let pending = imp.pending_room.borrow().is_some();
        let dialog = imp.new_room_dialog.borrow().clone();
        imp.pending_room.replace(None);
        let Some(dialog) = dialog.filter(|d| pending && d.is_visible() && d.is_busy()) else {
            return false;
        };
        let text = user_facing(code, message);
        imp.last_error.replace(Some(text.clone()));
        dialog.show_error(&text);
        true
    }

    // ----- what the user does -----

    /// Opens the New Room dialog (the sidebar's New Room button).
    pub fn open_new_room_dialog(&self) -> LwNewRoomDialog {
        let imp = self.imp();
        let existing = imp.new_room_dialog.borrow().clone();
        let dialog = existing.unwrap_or_else(|| {
            let d = LwNewRoomDialog::new(self);
            d.connect_closure(
                "create",
                false,
                glib::closure_local!(
                    #[weak(rename_to = win)]
                    self,
                    move |_: LwNewRoomDialog, name: String, topic: String, private: bool| {
                        win.create_room(&name, &topic, private);
                    }
                ),
            );
            imp.new_room_dialog.replace(Some(d.clone()));
            d
        });
        dialog.open();
        dialog
    }

    /// Asks the server for a room (the dialog's Create button).
    pub fn create_room(&self, name: &str, topic: &str, private: bool) {
        self.imp().pending_room.replace(Some(name.to_owned()));
        self.send_command(Command::CreateRoom {
            room: name.to_owned(),
            topic: topic.to_owned(),
            visibility: if private {
                Visibility::Private
            } else {
                Visibility::Public
            },
        });
    }

    /// Opens the room directory and lists every public room (the Browse button).
    pub fn open_directory(&self) -> LwRoomDirectory {
        let imp = self.imp();
        let existing = imp.directory.borrow().clone();
        let dir = existing.unwrap_or_else(|| {
            let d = LwRoomDirectory::new(self);
            d.connect_closure(
                "search",
                false,
                glib::closure_local!(
                    #[weak(rename_to = win)]
                    self,
                    move |_: LwRoomDirectory, filter: String| {
                        win.send_command(Command::Rooms { filter });
                    }
                ),
            );
            d.connect_closure(
                "join",
                false,
                glib::closure_local!(
                    #[weak(rename_to = win)]
                    self,
                    move |_: LwRoomDirectory, room: String| win.join_room(&room)
                ),
            );
            imp.directory.replace(Some(d.clone()));
            d
        });
        dir.open();
        self.send_command(Command::Rooms {
            filter: String::new(),
        });
        dir
    }

    /// Joins a room, or opens it if the user is in it already.
    pub fn join_room(&self, room: &str) {
        if let Some(c) = self.conversation(room).filter(|c| !c.is_read_only()) {
            if let Some(d) = self.imp().directory.borrow().as_ref() {
                d.set_visible(false);
            }
            self.select_conversation(&c);
            return;
        }
        self.imp().pending_room.replace(Some(room.to_owned()));
        self.send_command(Command::Join {
            room: room.to_owned(),
        });
    }

    /// Accepts (joins) or declines the invitation to `room`.
    pub fn answer_invitation(&self, room: &str, accept: bool) {
        if accept {
            self.imp().pending_room.replace(Some(room.to_owned()));
            self.send_command(Command::Accept {
                room: room.to_owned(),
            });
        } else {
            self.remove_invitation(room);
            self.send_command(Command::Decline {
                room: room.to_owned(),
            });
        }
    }

    /// The room shown, if the user is in it.
    fn current_room(&self) -> Option<String> {
        self.current()
            .filter(|c| c.is_room() && !c.is_read_only())
            .map(|c| c.name())
    }

    /// Invites `user` to the room shown.
    pub fn invite(&self, user: &str) {
        if let Some(room) = self.current_room() {
            self.send_command(Command::Invite {
                room,
                user: user.to_owned(),
            });
        }
    }

    /// Sets the topic of the room shown.
    pub fn set_room_topic(&self, topic: &str) {
        if let Some(room) = self.current_room() {
            self.send_command(Command::Topic {
                room,
                topic: topic.to_owned(),
            });
        }
    }

    /// Asks for the member list of the room shown (the members panel opened).
    pub fn request_members(&self) {
        if let Some(room) = self.current_room() {
            self.send_command(Command::Members { room });
        }
    }

    /// A moderator's action on `user` in the room shown.
    pub fn moderate(&self, action: Moderation, user: &str) {
        let Some(room) = self.current_room() else {
            return;
        };
        let user = user.to_owned();
        self.send_command(match action {
            Moderation::Kick => Command::Kick { room, user },
            Moderation::Ban => Command::Ban { room, user },
            Moderation::Promote => Command::Promote { room, user },
            Moderation::Demote => Command::Demote { room, user },
        });
    }

    /// Leaves `room` (the header's Leave, once confirmed). A room one was removed from
    /// just goes from the sidebar.
    pub fn leave_room(&self, room: &str) {
        let Some(c) = self
            .conversation(room)
            .filter(|c| c.is_room() && !c.is_general())
        else {
            return;
        };
        if c.is_read_only() {
            self.remove_conversation(&c);
        } else {
            self.send_command(Command::Leave { room: c.name() });
        }
    }

    /// The header of the room shown.
    pub fn room_header(&self) -> super::room_header::LwRoomHeader {
        self.imp().room_header.get()
    }

    /// The sidebar.
    pub fn sidebar(&self) -> super::sidebar::LwSidebar {
        self.imp().sidebar.get()
    }
}

/// The window's moderation actions (`win.room-kick` …), with the member's name as their
/// parameter (the members panel's menus use them).
pub(super) fn moderation_actions() -> Vec<gio::ActionEntry<LwClientWindow>> {
    [
        ("room-kick", Moderation::Kick),
        ("room-ban", Moderation::Ban),
        ("room-promote", Moderation::Promote),
        ("room-demote", Moderation::Demote),
    ]
    .into_iter()
    .map(|(name, action)| {
        gio::ActionEntry::builder(name)
            .parameter_type(Some(glib::VariantTy::STRING))
            .activate(move |win: &LwClientWindow, _, p| {
                if let Some(user) = p.and_then(|p| p.get::<String>()) {
                    win.moderate(action, &user);
                }
            })
            .build()
    })
    .collect()
}
