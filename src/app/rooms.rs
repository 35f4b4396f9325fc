//! Rooms: names, roles, membership and the moderation rules, without I/O.
//!
//! A room is a conversation with members. [`Room`] holds one room's membership state and
//! decides every change to it ([`Room::apply`]), so the server core only has to persist and
//! announce what this module allowed. The rules (also in docs/DECISIONS.md):
//!
//! - **Roles**: the creator is the [`Role::Owner`]; owners make members
//!   [`Role::Moderator`]s and back. Moderators set the topic, kick, ban and unban, and
//!   delete anyone's message for everyone. Nobody acts on someone of their own rank or
//!   higher (a moderator cannot kick another moderator or the owner).
//! - **Visibility**: a [`Visibility::Public`] room is listed in the directory and anyone who
//!   is not banned may join; a [`Visibility::Private`] room is unlisted and joined only by
//!   invitation. Any member may invite (as in Matrix's and Signal's defaults).
//! - **History**: members of a public room read it from the beginning; members of a
//!   private room from the moment they joined ([`Room::visible_from`]).
//! - **Leaving**: an owner who leaves hands the room to the longest-serving moderator, or
//!   else the longest-serving member; the last member leaving closes the room.
//! - **Kick** removes a member now (they may rejoin a public room or a private one they are
//!   invited to again); **ban** removes and keeps out until **unban**, and cancels any
//!   invitation.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::ids::{GENERAL, NameError, Seq, check_has_letter, check_name, skeleton_of};

/// A room's name as its creator spelled it, `#` included: `#design`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoomName(String);

impl RoomName {
    /// Validates a name: `#` then 1–32 ASCII letters, digits, `_ - .`, at least one letter
    /// or digit (the same rules as user names).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let Some(rest) = s.strip_prefix('#') else {
            return Err(NameError::Charset);
        };
        check_name(rest)?;
        check_has_letter(rest)?;
        Ok(Self(s.to_owned()))
    }

    /// Like [`RoomName::parse`], for a new room: refuses `#general` and its look-alikes.
    pub fn parse_new(s: &str) -> Result<Self, NameError> {
        let name = Self::parse(s)?;
        if name.skeleton() == skeleton_of(GENERAL) {
            return Err(NameError::Reserved);
        }
        Ok(name)
    }

    /// The name as spelled, `#` included.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive key that identifies the room (`#design`).
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// The look-alike skeleton: no two rooms share one (`#de.sign` next to `#design`).
    pub fn skeleton(&self) -> String {
        skeleton_of(&self.0)
    }
}

/// Who may see and join a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Listed in the directory; anyone not banned may join; history readable from the start.
    Public,
    /// Unlisted; joined by invitation; history readable from the moment one joined.
    Private,
}

/// A member's rank, lowest first (so `>=` compares rights).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads and writes, invites.
    Member,
    /// Also sets the topic, kicks, bans, and deletes anyone's message for everyone.
    Moderator,
    /// Also promotes and demotes; one per room.
    Owner,
}

/// One member: their rank, and where their history starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Rank.
    pub role: Role,
    /// The room's last sequence number when they joined.
    pub joined_at: Seq,
    /// Order of joining (smaller joined earlier), for handing over ownership.
    pub since: u64,
}

/// A change someone asks for. Users are named by their key (lowercase name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `user` joins (a public room, or a private one they were invited to).
    Join {
        /// Who.
        user: String,
    },
    /// `by` invites `user`.
    Invite {
        /// The inviter.
        by: String,
        /// The invitee.
        user: String,
    },
    /// `user` declines an invitation.
    Decline {
        /// Who.
        user: String,
    },
    /// `user` leaves.
    Leave {
        /// Who.
        user: String,
    },
    /// `by` removes `user` now.
    Kick {
        /// The moderator.
        by: String,
        /// Who is removed.
        user: String,
    },
    /// `by` removes `user` and keeps them out.
    Ban {
        /// The moderator.
        by: String,
        /// Who is banned.
        user: String,
    },
    /// `by` lets `user` back in.
    Unban {
        /// The moderator.
        by: String,
        /// Who is unbanned.
        user: String,
    },
    /// The owner `by` makes `user` a moderator.
    Promote {
        /// The owner.
        by: String,
        /// The new moderator.
        user: String,
    },
    /// The owner `by` makes moderator `user` a member again.
    Demote {
        /// The owner.
        by: String,
        /// The former moderator.
        user: String,
    },
    /// A moderator sets the topic.
    Topic {
        /// The moderator.
        by: String,
        /// The new topic.
        topic: String,
    },
}

/// What an applied change did, for the store and for the announcement to members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// `user` is now a member with `role`.
    Joined {
        /// Who.
        user: String,
        /// Their rank.
        role: Role,
    },
    /// `user` is invited.
    Invited {
        /// Who.
        user: String,
    },
    /// The invitation of `user` is gone (declined).
    InviteDropped {
        /// Who.
        user: String,
    },
    /// `user` is no longer a member (left, kicked or banned: the change says which).
    Removed {
        /// Who.
        user: String,
    },
    /// `user` is banned.
    Banned {
        /// Who.
        user: String,
    },
    /// `user` is no longer banned.
    Unbanned {
        /// Who.
        user: String,
    },
    /// `user` has a new rank (promotion, demotion, or ownership handed over).
    RoleChanged {
        /// Who.
        user: String,
        /// The new rank.
        role: Role,
    },
    /// The topic changed.
    Topic {
        /// The new topic.
        topic: String,
    },
    /// The last member left: the room is closed.
    Closed,
}

/// Why a change was refused. Codes for scripted mode come from [`RoomError::code`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    /// The actor (or the target) is not a member.
    #[error("not a member of this room")]
    NotMember,
    /// The actor's rank does not allow it.
    #[error("you are not allowed to do that in this room")]
    NotAllowed,
    /// Banned from the room.
    #[error("banned from this room")]
    Banned,
    /// A private room needs an invitation.
    #[error("this room is invite-only")]
    NotInvited,
    /// Already a member.
    #[error("already a member of this room")]
    AlreadyMember,
    /// The topic is too long.
    #[error("a topic has at most {MAX_TOPIC} characters")]
    TopicTooLong,
}

impl RoomError {
    /// The snake_case code used in scripted-mode `error` events.
    pub fn code(&self) -> &'static str {
        match self {
            RoomError::NotMember => "not_member",
            RoomError::NotAllowed => "not_allowed",
            RoomError::Banned => "banned",
            RoomError::NotInvited => "not_invited",
            RoomError::AlreadyMember => "already_member",
            RoomError::TopicTooLong => "too_large",
        }
    }
}

/// Longest topic, in characters.
pub const MAX_TOPIC: usize = 300;

/// One room's membership state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// Name.
    pub name: RoomName,
    /// Topic ("" for none).
    pub topic: String,
    /// Public or private.
    pub visibility: Visibility,
    /// Members by user key.
    pub members: BTreeMap<String, Member>,
    /// Pending invitations by user key.
    pub invited: BTreeSet<String>,
    /// Banned user keys.
    pub banned: BTreeSet<String>,
    /// Counter for [`Member::since`].
    next_since: u64,
}

impl Room {
    /// A new room with its creator as owner.
    pub fn new(name: RoomName, topic: String, visibility: Visibility, owner: &str) -> Self {
        let mut room = Self {
            name,
            topic,
            visibility,
            members: BTreeMap::new(),
            invited: BTreeSet::new(),
            banned: BTreeSet::new(),
            next_since: 0,
        };
        room.add(owner, Role::Owner, 0);
        room
    }

    /// A room as loaded from storage. The joining order ([`Member::since`]) is kept; new
    /// members are numbered after the newest one.
    pub fn restore(
        name: RoomName,
        topic: String,
        visibility: Visibility,
        members: BTreeMap<String, Member>,
        invited: BTreeSet<String>,
        banned: BTreeSet<String>,
    ) -> Self {
        let next_since = members.values().map(|m| m.since + 1).max().unwrap_or(0);
        Self {
            name,
            topic,
            visibility,
            members,
            invited,
            banned,
            next_since,
        }
    }

    fn add(&mut self, user: &str, role: Role, joined_at: Seq) {
        let since = self.next_since;
        self.next_since += 1;
        self.members.insert(
            user.to_owned(),
            Member {
                role,
                joined_at,
                since,
            },
        );
    }

    /// The rank of `user`, if a member.
    pub fn role(&self, user: &str) -> Option<Role> {
        self.members.get(user).map(|m| m.role)
    }

    /// Whether `user` is a member.
    pub fn is_member(&self, user: &str) -> bool {
        self.members.contains_key(user)
    }

    /// Whether `user` may learn that this room exists: members and invitees of a private
    /// room, everyone for a public one.
    pub fn visible_to(&self, user: &str) -> bool {
        self.visibility == Visibility::Public || self.is_member(user) || self.invited.contains(user)
    }

    /// The first sequence number `user` may read: 1 in a public room, the first message
    /// after joining in a private one. `None` for a non-member.
    pub fn visible_from(&self, user: &str) -> Option<Seq> {
        let m = self.members.get(user)?;
        Some(match self.visibility {
            Visibility::Public => 1,
            Visibility::Private => m.joined_at + 1,
        })
    }

    /// Whether `user` may delete anyone's message for everyone.
    pub fn can_moderate(&self, user: &str) -> bool {
        self.role(user).is_some_and(|r| r >= Role::Moderator)
    }

    /// Checks that `by` (a moderator or owner) outranks `user`.
    fn outranks(&self, by: &str, user: &str) -> Result<(), RoomError> {
        let actor = self.role(by).ok_or(RoomError::NotMember)?;
        if actor < Role::Moderator {
            return Err(RoomError::NotAllowed);
        }
        match self.role(user) {
            Some(target) if target >= actor => Err(RoomError::NotAllowed),
            _ => Ok(()),
        }
    }

    /// Checks and applies a change; `last_seq` is the room's newest sequence number (where
    /// a private room's new member starts reading). Returns what happened, in order.
    pub fn apply(&mut self, change: Change, last_seq: Seq) -> Result<Vec<Effect>, RoomError> {
        match change {
            Change::Join { user } => {
                if self.is_member(&user) {
                    return Err(RoomError::AlreadyMember);
                }
                if self.banned.contains(&user) {
                    return Err(RoomError::Banned);
                }
                if self.visibility == Visibility::Private && !self.invited.contains(&user) {
                    return Err(RoomError::NotInvited);
                }
                self.invited.remove(&user);
                self.add(&user, Role::Member, last_seq);
                Ok(vec![Effect::Joined {
                    user,
                    role: Role::Member,
                }])
            }
            Change::Invite { by, user } => {
                if !self.is_member(&by) {
                    return Err(RoomError::NotMember);
                }
                if self.is_member(&user) {
                    return Err(RoomError::AlreadyMember);
                }
                if self.banned.contains(&user) {
                    return Err(RoomError::Banned);
                }
                self.invited.insert(user.clone());
                Ok(vec![Effect::Invited { user }])
            }
            Change::Decline { user } => {
                if !self.invited.remove(&user) {
                    return Err(RoomError::NotInvited);
                }
                Ok(vec![Effect::InviteDropped { user }])
            }
            Change::Leave { user } => {
                let gone = self.members.remove(&user).ok_or(RoomError::NotMember)?;
                let mut effects = vec![Effect::Removed { user }];
                if self.members.is_empty() {
                    effects.push(Effect::Closed);
                } else if gone.role == Role::Owner {
                    effects.push(self.hand_over());
                }
                Ok(effects)
            }
            Change::Kick { by, user } => {
                if !self.is_member(&user) {
                    return Err(RoomError::NotMember);
                }
                self.outranks(&by, &user)?;
                self.members.remove(&user);
                Ok(vec![Effect::Removed { user }])
            }
            Change::Ban { by, user } => {
                self.outranks(&by, &user)?;
                if self.banned.contains(&user) {
                    return Ok(Vec::new());
                }
                let mut effects = Vec::new();
                if self.members.remove(&user).is_some() {
                    effects.push(Effect::Removed { user: user.clone() });
                }
                self.invited.remove(&user);
                self.banned.insert(user.clone());
                effects.push(Effect::Banned { user });
                Ok(effects)
            }
            Change::Unban { by, user } => {
                if !self.can_moderate(&by) {
                    return Err(if self.is_member(&by) {
                        RoomError::NotAllowed
                    } else {
                        RoomError::NotMember
                    });
                }
                if !self.banned.remove(&user) {
                    return Ok(Vec::new());
                }
                Ok(vec![Effect::Unbanned { user }])
            }
            Change::Promote { by, user } => {
                self.owner_only(&by)?;
                self.set_role(&user, Role::Moderator)
            }
            Change::Demote { by, user } => {
                self.owner_only(&by)?;
                self.set_role(&user, Role::Member)
            }
            Change::Topic { by, topic } => {
                if !self.is_member(&by) {
                    return Err(RoomError::NotMember);
                }
                if !self.can_moderate(&by) {
                    return Err(RoomError::NotAllowed);
                }
                if topic.chars().count() > MAX_TOPIC {
                    return Err(RoomError::TopicTooLong);
                }
                self.topic = topic.clone();
                Ok(vec![Effect::Topic { topic }])
            }
        }
    }

    fn owner_only(&self, by: &str) -> Result<(), RoomError> {
        match self.role(by) {
            Some(Role::Owner) => Ok(()),
            Some(_) => Err(RoomError::NotAllowed),
            None => Err(RoomError::NotMember),
        }
    }

    fn set_role(&mut self, user: &str, role: Role) -> Result<Vec<Effect>, RoomError> {
        let m = self.members.get_mut(user).ok_or(RoomError::NotMember)?;
        if m.role == Role::Owner {
            return Err(RoomError::NotAllowed);
        }
        if m.role == role {
            return Ok(Vec::new());
        }
        m.role = role;
        Ok(vec![Effect::RoleChanged {
            user: user.to_owned(),
            role,
        }])
    }

    /// The owner left: the longest-serving moderator, else member, becomes owner.
    fn hand_over(&mut self) -> Effect {
        let (user, m) = self
            .members
            .iter_mut()
            .max_by_key(|(_, m)| (m.role, std::cmp::Reverse(m.since)))
            .expect("called with members left");
        m.role = Role::Owner;
        Effect::RoleChanged {
            user: user.clone(),
            role: Role::Owner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(vis: Visibility) -> Room {
        Room::new(
            RoomName::parse_new("#design").unwrap(),
            String::new(),
            vis,
            "olga",
        )
    }

    fn join(r: &mut Room, user: &str) {
        r.apply(Change::Join { user: user.into() }, 0).unwrap();
    }

    #[test]
    fn names_follow_user_name_rules_and_general_is_reserved() {
        assert!(RoomName::parse("#design").is_ok());
        assert_eq!(RoomName::parse("design"), Err(NameError::Charset));
        assert_eq!(RoomName::parse("#"), Err(NameError::Length));
        assert_eq!(RoomName::parse("#a b"), Err(NameError::Charset));
        assert_eq!(RoomName::parse("#-."), Err(NameError::NoLetter));
        for n in ["#general", "#General", "#gen.eral", "#genera1"] {
            assert_eq!(RoomName::parse_new(n), Err(NameError::Reserved), "{n}");
        }
        let a = RoomName::parse("#Design").unwrap();
        assert_eq!(a.key(), "#design");
        assert_eq!(
            a.skeleton(),
            RoomName::parse("#de-sign").unwrap().skeleton()
        );
    }

    #[test]
    fn public_rooms_are_open_private_ones_need_an_invitation() {
        let mut public = room(Visibility::Public);
        join(&mut public, "bob");
        assert_eq!(public.role("bob"), Some(Role::Member));
        assert!(public.visible_to("carol"));

        let mut private = room(Visibility::Private);
        assert!(!private.visible_to("bob"));
        let join_bob = Change::Join { user: "bob".into() };
        assert_eq!(
            private.apply(join_bob.clone(), 0),
            Err(RoomError::NotInvited)
        );
        let invite = Change::Invite {
            by: "olga".into(),
            user: "bob".into(),
        };
        assert_eq!(
            private.apply(invite, 0),
            Ok(vec![Effect::Invited { user: "bob".into() }])
        );
        assert!(private.visible_to("bob"));
        private.apply(join_bob.clone(), 7).unwrap();
        assert_eq!(private.apply(join_bob, 7), Err(RoomError::AlreadyMember));
        assert!(private.invited.is_empty());
        // Private history starts after joining; public history at the start.
        assert_eq!(private.visible_from("bob"), Some(8));
        assert_eq!(public.visible_from("bob"), Some(1));
        assert_eq!(public.visible_from("carol"), None);
        // A non-member cannot invite; a declined invitation is gone.
        let by_stranger = Change::Invite {
            by: "eve".into(),
            user: "mallory".into(),
        };
        assert_eq!(private.apply(by_stranger, 7), Err(RoomError::NotMember));
        private
            .apply(
                Change::Invite {
                    by: "bob".into(),
                    user: "carol".into(),
                },
                7,
            )
            .unwrap();
        private
            .apply(
                Change::Decline {
                    user: "carol".into(),
                },
                7,
            )
            .unwrap();
        assert!(!private.visible_to("carol"));
    }

    #[test]
    fn moderators_act_only_below_their_rank() {
        let mut r = room(Visibility::Public);
        for u in ["mod", "bob", "carol"] {
            join(&mut r, u);
        }
        let promote = |by: &str, user: &str| Change::Promote {
            by: by.into(),
            user: user.into(),
        };
        assert_eq!(
            r.apply(promote("bob", "carol"), 0),
            Err(RoomError::NotAllowed)
        );
        r.apply(promote("olga", "mod"), 0).unwrap();
        assert!(r.can_moderate("mod"));
        let kick = |by: &str, user: &str| Change::Kick {
            by: by.into(),
            user: user.into(),
        };
        assert_eq!(r.apply(kick("bob", "carol"), 0), Err(RoomError::NotAllowed));
        assert_eq!(r.apply(kick("mod", "olga"), 0), Err(RoomError::NotAllowed));
        r.apply(promote("olga", "bob"), 0).unwrap();
        assert_eq!(r.apply(kick("mod", "bob"), 0), Err(RoomError::NotAllowed));
        assert_eq!(
            r.apply(kick("olga", "bob"), 0),
            Ok(vec![Effect::Removed { user: "bob".into() }])
        );
        // Kicked from a public room: may rejoin.
        join(&mut r, "bob");
        // Topic: moderators only, bounded.
        let topic = |by: &str, t: &str| Change::Topic {
            by: by.into(),
            topic: t.into(),
        };
        assert_eq!(r.apply(topic("carol", "x"), 0), Err(RoomError::NotAllowed));
        r.apply(topic("mod", "Design reviews"), 0).unwrap();
        assert_eq!(r.topic, "Design reviews");
        let long = "x".repeat(MAX_TOPIC + 1);
        assert_eq!(
            r.apply(topic("mod", &long), 0),
            Err(RoomError::TopicTooLong)
        );
        // The owner cannot be demoted or promoted.
        assert_eq!(
            r.apply(
                Change::Demote {
                    by: "olga".into(),
                    user: "olga".into()
                },
                0
            ),
            Err(RoomError::NotAllowed)
        );
    }

    #[test]
    fn a_ban_removes_keeps_out_and_cancels_invitations_until_unbanned() {
        let mut r = room(Visibility::Private);
        let invite = |user: &str| Change::Invite {
            by: "olga".into(),
            user: user.into(),
        };
        r.apply(invite("bob"), 0).unwrap();
        r.apply(Change::Join { user: "bob".into() }, 0).unwrap();
        r.apply(invite("carol"), 0).unwrap();
        let ban = |user: &str| Change::Ban {
            by: "olga".into(),
            user: user.into(),
        };
        assert_eq!(
            r.apply(ban("bob"), 3),
            Ok(vec![
                Effect::Removed { user: "bob".into() },
                Effect::Banned { user: "bob".into() }
            ])
        );
        assert_eq!(
            r.apply(ban("carol"), 3),
            Ok(vec![Effect::Banned {
                user: "carol".into()
            }])
        );
        assert!(r.invited.is_empty());
        assert_eq!(r.apply(invite("bob"), 3), Err(RoomError::Banned));
        assert_eq!(
            r.apply(Change::Join { user: "bob".into() }, 3),
            Err(RoomError::Banned)
        );
        r.apply(
            Change::Unban {
                by: "olga".into(),
                user: "bob".into(),
            },
            3,
        )
        .unwrap();
        r.apply(invite("bob"), 3).unwrap();
        r.apply(Change::Join { user: "bob".into() }, 3).unwrap();
        assert_eq!(r.visible_from("bob"), Some(4));
    }

    #[test]
    fn the_owner_leaving_hands_over_and_the_last_one_closes() {
        let mut r = room(Visibility::Public);
        for u in ["bob", "carol", "dave"] {
            join(&mut r, u);
        }
        r.apply(
            Change::Promote {
                by: "olga".into(),
                user: "dave".into(),
            },
            0,
        )
        .unwrap();
        let leave = |u: &str| Change::Leave { user: u.into() };
        // The moderator takes over before longer-serving members.
        assert_eq!(
            r.apply(leave("olga"), 0),
            Ok(vec![
                Effect::Removed {
                    user: "olga".into()
                },
                Effect::RoleChanged {
                    user: "dave".into(),
                    role: Role::Owner
                }
            ])
        );
        r.apply(leave("dave"), 0).unwrap();
        // No moderator left: the longest-serving member.
        assert_eq!(r.role("bob"), Some(Role::Owner));
        r.apply(leave("bob"), 0).unwrap();
        assert_eq!(
            r.apply(leave("carol"), 0),
            Ok(vec![
                Effect::Removed {
                    user: "carol".into()
                },
                Effect::Closed
            ])
        );
        assert_eq!(r.apply(leave("carol"), 0), Err(RoomError::NotMember));
    }
}
