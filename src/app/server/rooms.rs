//! The server core's rooms: commands ([`RoomUp`]) checked by [`Room::apply`], persisted
//! through the store, and announced to whoever they concern.
//!
//! Who hears what (docs/PROTOCOL.md, "Rooms"):
//! - the acting or affected user's own sessions: `Joined`, `Left` (with why and by whom),
//!   `Invited`;
//! - the room's other members: `Member` (joined, left, kicked, banned, invited, declined,
//!   unbanned) and, to every member including the one concerned, role changes and `Topic`.
//!
//! A removal takes effect at once: the user's sessions lose the room's stream in the core
//! (nothing more is sent on it) and an [`Output::Revoke`] tells the transport to drop what
//! it still holds queued for it.

use std::collections::BTreeMap;

use super::{ConnState, Output, ServerCore, ServerLog};
use crate::app::ids::{ConnId, ConvId, GENERAL, NameError, Seq, skeleton_of};
use crate::app::protocol::{
    ControlDown, ErrorCode, MemberChange, MemberInfo, Moderation, RoomDown, RoomInfo, RoomUp,
};
use crate::app::rooms::{Change, Effect, MAX_TOPIC, Role, Room, RoomError, RoomName, Visibility};
use crate::app::store::{Store, StoreError, StoredRoom};

/// A room in the core's memory.
#[derive(Debug)]
pub(super) struct RoomEntry {
    /// Membership, roles, invitations, bans.
    pub room: Room,
    /// Pending invitations: invitee key -> inviter key.
    pub inviters: BTreeMap<String, String>,
    /// Unix ms of the newest message (0: none yet).
    pub last_activity: u64,
}

/// A refused room command: the code and the text for a person.
type Refusal = (ErrorCode, String);

fn refusal(e: RoomError) -> Refusal {
    let code = match e {
        RoomError::NotMember => ErrorCode::NotMember,
        RoomError::NotAllowed => ErrorCode::NotAllowed,
        RoomError::Banned => ErrorCode::Banned,
        RoomError::NotInvited => ErrorCode::NotInvited,
        RoomError::AlreadyMember => ErrorCode::AlreadyMember,
        RoomError::TopicTooLong => ErrorCode::TooLarge,
    };
    (code, e.to_string())
}

fn no_such_room(room: &str) -> Refusal {
    (ErrorCode::NoSuchRoom, format!("no room named {room}"))
}

impl<S: Store> ServerCore<S> {
    /// Loads the rooms from the store (at start, before the first input).
    pub fn load_rooms(&mut self) -> Result<(), StoreError> {
        for StoredRoom {
            room,
            inviters,
            last_activity,
        } in self.store.load_rooms()?
        {
            let entry = RoomEntry {
                room,
                inviters,
                last_activity,
            };
            let key = entry.room.name.key();
            self.rooms.insert(key.clone(), entry);
            self.room_updated(&key);
        }
        Ok(())
    }

    /// Tells the operator a room's member count and activity.
    pub(super) fn room_updated(&mut self, key: &str) {
        if let Some(e) = self.rooms.get(key) {
            let l = ServerLog::RoomUpdated {
                room: e.room.name.as_str().to_owned(),
                visibility: e.room.visibility,
                members: e.room.members.len() as u32,
                last_activity: e.last_activity,
            };
            self.log(l);
        }
    }

    /// Every (room key, member key, private room) triple, for the transport's copy of
    /// room membership.
    pub fn room_memberships(&self) -> Vec<(String, String, bool)> {
        self.rooms
            .iter()
            .flat_map(|(k, e)| {
                let private = e.room.visibility == Visibility::Private;
                e.room
                    .members
                    .keys()
                    .map(move |u| (k.clone(), u.clone(), private))
            })
            .collect()
    }

    /// The key of an existing room named `name` (as spelled, or its key).
    pub(super) fn room_key(&self, name: &str) -> Option<String> {
        let key = name.to_ascii_lowercase();
        self.rooms.contains_key(&key).then_some(key)
    }

    /// A room conversation for `user`: theirs if a member; `not_member` if they may know
    /// the room; `no_such_room` for a private room they are not in or invited to.
    pub(super) fn room_conv(&self, user: &str, room: &str) -> Result<ConvId, Refusal> {
        match self.rooms.get(room) {
            Some(e) if e.room.is_member(user) => Ok(ConvId::Room(room.to_owned())),
            Some(e) if e.room.visible_to(user) => Err((
                ErrorCode::NotMember,
                format!("you are not a member of {}", e.room.name.as_str()),
            )),
            _ => Err(no_such_room(room)),
        }
    }

    /// The first sequence number `user` may read in `conv` (1 outside private rooms).
    pub(super) fn visible_from(&self, conv: &ConvId, user: &str) -> Seq {
        match conv {
            ConvId::Room(room) => self
                .rooms
                .get(room)
                .and_then(|e| e.room.visible_from(user))
                .unwrap_or(Seq::MAX),
            _ => 1,
        }
    }

    /// Whether `user` may read the event at `seq` of `conv`.
    pub(super) fn can_read(&self, conv: &ConvId, user: &str, seq: Seq) -> bool {
        match conv {
            ConvId::Room(_) => seq >= self.visible_from(conv, user),
            _ => conv.has_member(user),
        }
    }

    /// Whether `user` moderates `conv` (a room's moderators and owner).
    pub(super) fn moderates(&self, conv: &ConvId, user: &str) -> bool {
        match conv {
            ConvId::Room(room) => self
                .rooms
                .get(room)
                .is_some_and(|e| e.room.can_moderate(user)),
            _ => false,
        }
    }

    /// A room had a message at `now`.
    pub(super) fn touch(&mut self, conv: &ConvId, now: u64) {
        if let ConvId::Room(room) = conv
            && let Some(e) = self.rooms.get_mut(room)
        {
            e.last_activity = now;
        }
    }

    /// A user's name as registered (looked up once).
    pub(super) fn display(&mut self, key: &str) -> Result<String, StoreError> {
        if let Some(n) = self.names.get(key) {
            return Ok(n.clone());
        }
        let name = match self.store.user(key)? {
            Some(rec) => rec.name,
            None => key.to_owned(),
        };
        self.names.insert(key.to_owned(), name.clone());
        Ok(name)
    }

    fn info(entry: &RoomEntry, user: &str) -> RoomInfo {
        let room = &entry.room;
        RoomInfo {
            key: room.name.key(),
            name: room.name.as_str().to_owned(),
            topic: room.topic.clone(),
            visibility: room.visibility,
            members: room.members.len() as u32,
            last_activity: entry.last_activity,
            role: room.role(user),
        }
    }

    fn sessions_of(&self, user: &str) -> Vec<ConnId> {
        self.online
            .get(user)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    fn tell_user(&mut self, user: &str, down: RoomDown) {
        for conn in self.sessions_of(user) {
            self.control_out(conn, ControlDown::Room(down.clone()));
        }
    }

    /// To every online member's sessions, except `skip`'s (a user key).
    fn tell_members(&mut self, room: &str, skip: Option<&str>, down: RoomDown) {
        let Some(e) = self.rooms.get(room) else {
            return;
        };
        let users: Vec<String> = e
            .room
            .members
            .keys()
            .filter(|k| Some(k.as_str()) != skip && self.online.contains_key(*k))
            .cloned()
            .collect();
        for u in users {
            self.tell_user(&u, down.clone());
        }
    }

    /// Right after `LoginOk`: the user's rooms and pending invitations.
    pub(super) fn room_state(&mut self, conn: ConnId, user: &str) -> Result<(), StoreError> {
        let rooms = self
            .rooms
            .values()
            .filter(|e| e.room.is_member(user))
            .map(|e| Self::info(e, user))
            .collect();
        let pending: Vec<(RoomInfo, String)> = self
            .rooms
            .values()
            .filter(|e| e.room.invited.contains(user))
            .map(|e| {
                let by = e.inviters.get(user).cloned().unwrap_or_default();
                (Self::info(e, user), by)
            })
            .collect();
        let mut invitations = Vec::with_capacity(pending.len());
        for (info, by) in pending {
            let by = self.display(&by)?;
            invitations.push((info, by));
        }
        let down = RoomDown::State { rooms, invitations };
        self.control_out(conn, ControlDown::Room(down));
        Ok(())
    }

    /// Handles one room command of `name` on connection `conn`.
    pub(super) fn room_command(
        &mut self,
        conn: ConnId,
        name: &crate::app::ids::UserName,
        up: RoomUp,
    ) -> Result<(), StoreError> {
        let me = name.key();
        self.room_command_target(&up)?;
        let result = match up {
            RoomUp::Create {
                name: room,
                topic,
                visibility,
            } => self.create(&me, &room, topic, visibility),
            RoomUp::List { filter } => {
                self.directory(conn, &me, &filter);
                Ok(())
            }
            RoomUp::Members { room } => self.members(conn, &me, &room),
            RoomUp::Join { room } => self.lookup(&me, &room).and_then(|key| {
                let change = Change::Join { user: me.clone() };
                self.change(&key, &me, change)
            }),
            RoomUp::Invite { room, user } => self.invite(&me, &room, &user),
            RoomUp::Decline { room } => self.lookup(&me, &room).and_then(|key| {
                let change = Change::Decline { user: me.clone() };
                self.change(&key, &me, change)
            }),
            RoomUp::Leave { room } => self.lookup(&me, &room).and_then(|key| {
                let change = Change::Leave { user: me.clone() };
                self.change(&key, &me, change)
            }),
            RoomUp::Topic { room, topic } => self.lookup(&me, &room).and_then(|key| {
                let change = Change::Topic {
                    by: me.clone(),
                    topic,
                };
                self.change(&key, &me, change)
            }),
            RoomUp::Moderate { room, user, action } => {
                let user = user.trim_start_matches('@').to_ascii_lowercase();
                self.lookup(&me, &room).and_then(|key| {
                    let (by, user) = (me.clone(), user);
                    let change = match action {
                        Moderation::Kick => Change::Kick { by, user },
                        Moderation::Ban => Change::Ban { by, user },
                        Moderation::Unban => Change::Unban { by, user },
                        Moderation::Promote => Change::Promote { by, user },
                        Moderation::Demote => Change::Demote { by, user },
                    };
                    self.change(&key, &me, change)
                })
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(Outcome::Refused((code, message))) => {
                self.control_error(conn, code, message);
                Ok(())
            }
            Err(Outcome::Store(e)) => Err(e),
        }
    }

    /// The key of a room `user` may know of.
    fn lookup(&self, user: &str, room: &str) -> Result<String, Outcome> {
        if skeleton_of(room) == skeleton_of(GENERAL) {
            return Err(Outcome::Refused((
                ErrorCode::BadRequest,
                "#general is the server's room: everyone is in it".into(),
            )));
        }
        let key = room.to_ascii_lowercase();
        match self.rooms.get(&key) {
            Some(e) if e.room.visible_to(user) => Ok(key),
            _ => Err(Outcome::Refused(no_such_room(room))),
        }
    }

    fn create(
        &mut self,
        me: &str,
        room: &str,
        topic: String,
        visibility: crate::app::rooms::Visibility,
    ) -> Result<(), Outcome> {
        let name = RoomName::parse_new(room).map_err(|e| {
            Outcome::Refused(match e {
                NameError::Reserved => (ErrorCode::RoomExists, format!("{room} is reserved")),
                e => (ErrorCode::BadRequest, format!("{room:?}: {e}")),
            })
        })?;
        if topic.chars().count() > MAX_TOPIC {
            return Err(Outcome::Refused(refusal(RoomError::TopicTooLong)));
        }
        let skeleton = name.skeleton();
        // A private room's name is not revealed by the refusal: `room_exists` says only
        // that the name (or a look-alike) is taken.
        let taken = || {
            Outcome::Refused((
                ErrorCode::RoomExists,
                format!("a room named {room} or one that looks like it exists"),
            ))
        };
        if self
            .rooms
            .values()
            .any(|e| e.room.name.skeleton() == skeleton)
        {
            return Err(taken());
        }
        let created = Room::new(name, topic, visibility, me);
        if !self.store.create_room(&created)? {
            return Err(taken());
        }
        let key = created.name.key();
        let by = self.display(me)?;
        self.log(ServerLog::RoomCreated {
            room: created.name.as_str().to_owned(),
            by,
            visibility,
        });
        // A new room of an old name: its group starts afresh.
        self.mls_rekey.remove(&key);
        self.rooms.insert(
            key.clone(),
            RoomEntry {
                room: created,
                inviters: BTreeMap::new(),
                last_activity: 0,
            },
        );
        self.out.push(Output::Membership {
            room: key.clone(),
            user: me.to_owned(),
            member: true,
            private: visibility == Visibility::Private,
        });
        self.room_updated(&key);
        let info = Self::info(&self.rooms[&key], me);
        self.tell_user(me, RoomDown::Joined { room: info });
        let joined = Effect::Joined {
            user: me.to_owned(),
            role: Role::Owner,
        };
        self.publish_room(&key, me, Kind::Other, &[joined]);
        Ok(())
    }

    fn directory(&mut self, conn: ConnId, me: &str, filter: &str) {
        let filter = filter.to_lowercase();
        let rooms = self
            .rooms
            .values()
            .filter(|e| {
                e.room.visibility == crate::app::rooms::Visibility::Public || e.room.is_member(me)
            })
            .filter(|e| {
                filter.is_empty()
                    || e.room.name.as_str().to_lowercase().contains(&filter)
                    || e.room.topic.to_lowercase().contains(&filter)
            })
            .map(|e| Self::info(e, me))
            .collect();
        self.control_out(conn, ControlDown::Room(RoomDown::Directory { rooms }));
    }

    fn members(&mut self, conn: ConnId, me: &str, room: &str) -> Result<(), Outcome> {
        let key = self.lookup(me, room)?;
        let entry = &self.rooms[&key];
        if !entry.room.is_member(me) {
            return Err(Outcome::Refused(refusal(RoomError::NotMember)));
        }
        let list: Vec<(String, Role)> = entry
            .room
            .members
            .iter()
            .map(|(k, m)| (k.clone(), m.role))
            .collect();
        let mut members = Vec::with_capacity(list.len());
        for (k, role) in list {
            members.push(MemberInfo {
                user: self.display(&k)?,
                role,
                online: self.online.contains_key(&k),
            });
        }
        let down = RoomDown::Members { room: key, members };
        self.control_out(conn, ControlDown::Room(down));
        Ok(())
    }

    fn invite(&mut self, me: &str, room: &str, user: &str) -> Result<(), Outcome> {
        let key = self.lookup(me, room)?;
        let user = user.trim_start_matches('@').to_ascii_lowercase();
        if self.store.user(&user)?.is_none() {
            return Err(Outcome::Refused((
                ErrorCode::UnknownUser,
                format!("no user named {user}"),
            )));
        }
        let change = Change::Invite {
            by: me.to_owned(),
            user,
        };
        self.change(&key, me, change)
    }

    /// Applies a change to a room, persists it and tells whoever it concerns.
    fn change(&mut self, key: &str, actor: &str, change: Change) -> Result<(), Outcome> {
        let conv = ConvId::Room(key.to_owned());
        let last_seq = self.store.last_seq(&conv)?;
        let entry = self.rooms.get_mut(key).expect("looked up");
        let kind = change_kind(&change);
        // Kept to undo the change in memory should the store refuse it.
        let before = (entry.room.clone(), entry.inviters.clone());
        let effects = entry
            .room
            .apply(change, last_seq)
            .map_err(|e| Outcome::Refused(refusal(e)))?;
        if effects.is_empty() {
            // Nothing changed (a ban of the banned, a demotion of a member): say so.
            let msg = "nothing to change";
            return Err(Outcome::Refused((ErrorCode::BadRequest, msg.into())));
        }
        for e in &effects {
            if let Effect::Invited { user } = e {
                entry.inviters.insert(user.clone(), actor.to_owned());
            }
        }
        let invited = entry.room.invited.clone();
        entry.inviters.retain(|u, _| invited.contains(u));
        if let Err(e) = self.store.room_changed(&entry.room, &effects, actor) {
            (entry.room, entry.inviters) = before;
            return Err(e.into());
        }
        self.announce_effects(key, actor, kind, &effects)?;
        self.publish_room(key, actor, kind, &effects);
        if effects
            .iter()
            .any(|e| matches!(e, Effect::Joined { .. } | Effect::Removed { .. }))
        {
            self.room_updated(key);
            // A private room's group must follow before anyone writes in it again.
            if self.is_e2e(&ConvId::Room(key.to_owned())) {
                self.mls_rekey.insert(key.to_owned());
            }
        }
        Ok(())
    }

    /// Tells users what a change did, in order.
    pub(super) fn announce_effects(
        &mut self,
        key: &str,
        actor: &str,
        kind: Kind,
        effects: &[Effect],
    ) -> Result<(), StoreError> {
        let by_name = self.display(actor)?;
        for effect in effects {
            match effect {
                Effect::Joined { user, .. } => {
                    self.membership(key, user, true);
                    let info = Self::info(&self.rooms[key], user);
                    self.tell_user(user, RoomDown::Joined { room: info });
                    let who = self.display(user)?;
                    self.tell_members(
                        key,
                        Some(user),
                        member(key, who, MemberChange::Joined, None),
                    );
                }
                Effect::Invited { user } => {
                    let info = Self::info(&self.rooms[key], user);
                    self.tell_user(
                        user,
                        RoomDown::Invited {
                            room: info,
                            by: by_name.clone(),
                        },
                    );
                    let who = self.display(user)?;
                    let by = Some(by_name.clone());
                    self.tell_members(key, None, member(key, who, MemberChange::Invited, by));
                }
                Effect::InviteDropped { user } => {
                    let who = self.display(user)?;
                    let down = member(key, who, MemberChange::Declined, None);
                    self.tell_members(key, Some(user), down.clone());
                    // The decliner hears it too: the answer to their command.
                    self.tell_user(user, down);
                }
                Effect::Removed { user } => {
                    let (change, by) = match kind {
                        Kind::Kick => (MemberChange::Kicked, Some(by_name.clone())),
                        Kind::Ban => (MemberChange::Banned, Some(by_name.clone())),
                        Kind::Other => (MemberChange::Left, None),
                    };
                    self.remove(key, user, change, by.clone());
                    let who = self.display(user)?;
                    self.tell_members(key, None, member(key, who, change, by));
                }
                Effect::Banned { .. } => {
                    // Announced with the removal; a ban of a non-member is news too.
                    if !effects.iter().any(|e| matches!(e, Effect::Removed { .. }))
                        && let Effect::Banned { user } = effect
                    {
                        let who = self.display(user)?;
                        let by = Some(by_name.clone());
                        self.tell_members(key, None, member(key, who, MemberChange::Banned, by));
                    }
                }
                Effect::Unbanned { user } => {
                    let who = self.display(user)?;
                    let by = Some(by_name.clone());
                    self.tell_members(key, None, member(key, who, MemberChange::Unbanned, by));
                }
                Effect::RoleChanged { user, role } => {
                    let (change, by) = match role {
                        Role::Owner => (MemberChange::Owner, None),
                        Role::Moderator => (MemberChange::Promoted, Some(by_name.clone())),
                        Role::Member => (MemberChange::Demoted, Some(by_name.clone())),
                    };
                    let who = self.display(user)?;
                    self.tell_members(key, None, member(key, who, change, by));
                }
                Effect::Topic { topic } => {
                    let down = RoomDown::Topic {
                        room: key.to_owned(),
                        topic: topic.clone(),
                        by: by_name.clone(),
                    };
                    self.tell_members(key, None, down);
                }
                Effect::Closed => {
                    if let Some(e) = self.rooms.remove(key) {
                        self.log(ServerLog::RoomClosed {
                            room: e.room.name.as_str().to_owned(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// `user` is no longer a member: their sessions hear it, lose the room's stream in the
    /// core, and the transport drops what it still holds queued for it.
    fn remove(&mut self, key: &str, user: &str, change: MemberChange, by: Option<String>) {
        self.membership(key, user, false);
        let conv = ConvId::Room(key.to_owned());
        for conn in self.sessions_of(user) {
            if let Some(c) = self.conns.get_mut(&conn)
                && let ConnState::LoggedIn(s) = &mut c.state
            {
                s.open.remove(&conv);
                s.notified.remove(&conv);
            }
            self.out.push(Output::Revoke {
                conn,
                conv: conv.clone(),
            });
            let down = RoomDown::Left {
                room: key.to_owned(),
                change,
                by: by.clone(),
            };
            self.control_out(conn, ControlDown::Room(down));
        }
    }

    fn membership(&mut self, room: &str, user: &str, member: bool) {
        let private = self
            .rooms
            .get(room)
            .is_some_and(|e| e.room.visibility == Visibility::Private);
        self.out.push(Output::Membership {
            room: room.to_owned(),
            user: user.to_owned(),
            member,
            private,
        });
    }

    /// The operator closes a room: every member leaves ("closed by the operator"), then
    /// the room and its history are gone.
    pub(super) fn close_room(&mut self, room: &str) -> Result<(), StoreError> {
        let Some(key) = self.room_key(room) else {
            tracing::info!(%room, "close of no such room ignored");
            return Ok(());
        };
        let entry = self.rooms.get_mut(&key).expect("just found");
        let users: Vec<String> = entry.room.members.keys().cloned().collect();
        let mut effects: Vec<Effect> = users
            .iter()
            .map(|u| Effect::Removed { user: u.clone() })
            .collect();
        effects.push(Effect::Closed);
        entry.room.members.clear();
        entry.room.invited.clear();
        self.store
            .room_changed(&entry.room, &effects, super::SERVER_AUTHOR)?;
        self.publish_room(&key, super::SERVER_AUTHOR, Kind::Other, &effects);
        for u in users {
            let by = Some(super::SERVER_AUTHOR.to_owned());
            self.remove(&key, &u, MemberChange::Left, by);
        }
        if let Some(e) = self.rooms.remove(&key) {
            self.log(ServerLog::RoomClosed {
                room: e.room.name.as_str().to_owned(),
            });
        }
        Ok(())
    }
}

/// Why a room command did not go through.
enum Outcome {
    /// Refused: the user gets this error.
    Refused(Refusal),
    /// The store failed (answered by the core's usual store-failure path).
    Store(StoreError),
}

impl From<StoreError> for Outcome {
    fn from(e: StoreError) -> Self {
        Outcome::Store(e)
    }
}

/// What kind of change removed someone, for the `Left` / `Member` change.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Kick,
    Ban,
    Other,
}

fn change_kind(c: &Change) -> Kind {
    match c {
        Change::Kick { .. } => Kind::Kick,
        Change::Ban { .. } => Kind::Ban,
        _ => Kind::Other,
    }
}

fn member(room: &str, user: String, change: MemberChange, by: Option<String>) -> RoomDown {
    RoomDown::Member {
        room: room.to_owned(),
        user,
        change,
        by,
    }
}
