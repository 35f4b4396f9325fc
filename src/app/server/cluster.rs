//! Cluster mode, the core's side: what a node tells the other nodes ([`ClusterMsg`],
//! emitted as [`Output::Publish`] after its batch commits) and what it does with theirs
//! ([`Input::Cluster`]). The transport carries the messages (NATS in `transport::server`);
//! the core never knows how.
//!
//! The store is the record: every node writes to the same database, and a message from
//! another node only tells this one what to deliver to *its* connections. Each node runs
//! the same announcing code as the node where a change happened, on its own sessions:
//! events fan out with [`ServerCore::fan_out_local`], room changes re-read the room from
//! the store and announce the same effects, presence is merged from every node's roster.
//! Messages may be lost (the transport is at-most-once): clients notice sequence gaps and
//! catch up from the store, [`Input::ClusterResync`] nudges every open conversation after
//! the link was down, and rosters are resent every few seconds.
//!
//! [`Input::Cluster`]: super::Input::Cluster
//! [`Input::ClusterResync`]: super::Input::ClusterResync

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::rooms::{Kind, RoomEntry};
use super::{ConnState, Output, ServerCore};
use crate::app::ids::{ConnId, ConvId, Seq};
use crate::app::protocol::{ControlDown, ConvDown, ConvEvent, Hidden, RoomUp};
use crate::app::rooms::{Effect, Role};
use crate::app::store::{Store, StoreError};

/// A node that has not been heard from for this long (no roster) is gone: its users are
/// offline. Rosters come every [`ROSTER_EVERY_MS`].
pub const NODE_EXPIRY_MS: u64 = 15_000;
/// How often the transport should send [`super::Input::ClusterTick`].
pub const ROSTER_EVERY_MS: u64 = 5_000;

/// What one node tells the others.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClusterMsg {
    /// A committed event of a conversation (a private body stays ciphertext).
    Event {
        /// Its conversation.
        conv: ConvId,
        /// The event as stored.
        event: ConvEvent,
    },
    /// A user's first session on the sending node opened, or its last one closed.
    Presence {
        /// User key.
        user: String,
        /// Display name.
        name: String,
        /// Online on the sender now?
        online: bool,
    },
    /// Every user online on the sending node (key, display name): the heartbeat that also
    /// repairs lost presence messages.
    Roster {
        /// Key and display name of each.
        users: Vec<(String, String)>,
    },
    /// A node started: every node answers with its roster at once.
    Hello,
    /// The sending node stops: its users are offline now.
    Bye,
    /// A delete for me: the user's sessions on every node hide the message.
    Hidden {
        /// User key.
        user: String,
        /// What to hide.
        hidden: Hidden,
    },
    /// A room changed (stored already): re-read it and announce the effects.
    Room {
        /// Room key.
        room: String,
        /// Who made the change.
        actor: String,
        /// Kicked, banned, or anything else.
        kind: WireKind,
        /// What the change did.
        effects: Vec<WireEffect>,
    },
    /// A failed login, counted by every node's throttles.
    LoginFailed {
        /// The account tried.
        account: String,
        /// From where.
        ip: IpAddr,
    },
    /// A read marker moved (stored already): the reader's sessions on every node get
    /// `read`, the other members there `seen` (receipts rules applied by each node).
    Read {
        /// The reader's key.
        user: String,
        /// The reader's display name (what `seen` shows).
        name: String,
        /// The conversation read.
        conv: ConvId,
        /// The marker as stored.
        upto: Seq,
    },
    /// Someone types (never stored; rate-limited by the sender's node only).
    Typing {
        /// The typist's key.
        user: String,
        /// The typist's display name.
        name: String,
        /// Where.
        conv: ConvId,
    },
    /// A user turned receipts on or off (stored already): their sessions everywhere hear.
    Receipts {
        /// User key.
        user: String,
        /// The new setting.
        on: bool,
    },
}

impl ClusterMsg {
    /// Whether this message reports something the batch's commit made durable (dropped
    /// with the batch when the commit fails), rather than a node's live state.
    pub fn is_durable(&self) -> bool {
        matches!(
            self,
            ClusterMsg::Event { .. }
                | ClusterMsg::Hidden { .. }
                | ClusterMsg::Room { .. }
                | ClusterMsg::Read { .. }
                | ClusterMsg::Receipts { .. }
        )
    }
}

/// [`Kind`] on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireKind {
    /// A kick.
    Kick,
    /// A ban.
    Ban,
    /// Anything else.
    Other,
}

/// [`Effect`] on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireEffect {
    /// [`Effect::Joined`].
    Joined(String, Role),
    /// [`Effect::Invited`].
    Invited(String),
    /// [`Effect::InviteDropped`].
    InviteDropped(String),
    /// [`Effect::Removed`].
    Removed(String),
    /// [`Effect::Banned`].
    Banned(String),
    /// [`Effect::Unbanned`].
    Unbanned(String),
    /// [`Effect::RoleChanged`].
    RoleChanged(String, Role),
    /// [`Effect::Topic`].
    Topic(String),
    /// [`Effect::Closed`].
    Closed,
}

impl From<&Effect> for WireEffect {
    fn from(e: &Effect) -> Self {
        match e.clone() {
            Effect::Joined { user, role } => WireEffect::Joined(user, role),
            Effect::Invited { user } => WireEffect::Invited(user),
            Effect::InviteDropped { user } => WireEffect::InviteDropped(user),
            Effect::Removed { user } => WireEffect::Removed(user),
            Effect::Banned { user } => WireEffect::Banned(user),
            Effect::Unbanned { user } => WireEffect::Unbanned(user),
            Effect::RoleChanged { user, role } => WireEffect::RoleChanged(user, role),
            Effect::Topic { topic } => WireEffect::Topic(topic),
            Effect::Closed => WireEffect::Closed,
        }
    }
}

impl From<WireEffect> for Effect {
    fn from(e: WireEffect) -> Self {
        match e {
            WireEffect::Joined(user, role) => Effect::Joined { user, role },
            WireEffect::Invited(user) => Effect::Invited { user },
            WireEffect::InviteDropped(user) => Effect::InviteDropped { user },
            WireEffect::Removed(user) => Effect::Removed { user },
            WireEffect::Banned(user) => Effect::Banned { user },
            WireEffect::Unbanned(user) => Effect::Unbanned { user },
            WireEffect::RoleChanged(user, role) => Effect::RoleChanged { user, role },
            WireEffect::Topic(topic) => Effect::Topic { topic },
            WireEffect::Closed => Effect::Closed,
        }
    }
}

/// What the core knows of the other nodes.
#[derive(Debug, Default)]
pub(super) struct ClusterState {
    /// Other nodes by instance id: who is online there, and when we last heard from them.
    nodes: HashMap<u64, RemoteNode>,
}

#[derive(Debug, Default)]
struct RemoteNode {
    /// Key -> display name.
    users: BTreeMap<String, String>,
    /// Unix ms of its last message.
    seen: u64,
}

impl<S: Store> ServerCore<S> {
    /// Turns cluster mode on: from now on the core emits [`Output::Publish`] for the other
    /// nodes and merges their presence. Call once, before the first input.
    pub fn enable_cluster(&mut self) -> Vec<Output> {
        self.cluster = Some(ClusterState::default());
        vec![Output::Publish(ClusterMsg::Hello)]
    }

    /// Emits `msg` for the other nodes (nothing outside cluster mode).
    pub(super) fn publish(&mut self, msg: impl FnOnce() -> ClusterMsg) {
        if self.cluster.is_some() {
            self.out.push(Output::Publish(msg()));
        }
    }

    /// Emits a room change for the other nodes.
    pub(super) fn publish_room(&mut self, room: &str, actor: &str, kind: Kind, effects: &[Effect]) {
        self.publish(|| ClusterMsg::Room {
            room: room.to_owned(),
            actor: actor.to_owned(),
            kind: match kind {
                Kind::Kick => WireKind::Kick,
                Kind::Ban => WireKind::Ban,
                Kind::Other => WireKind::Other,
            },
            effects: effects.iter().map(WireEffect::from).collect(),
        });
    }

    /// Whether `key` has a session on another node.
    pub(super) fn online_elsewhere(&self, key: &str) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.nodes.values().any(|n| n.users.contains_key(key)))
    }

    /// Whether `key` has a session on any node, this one included.
    fn online_anywhere(&self, key: &str) -> bool {
        self.online.contains_key(key) || self.online_elsewhere(key)
    }

    /// Adds the users online on other nodes (and not here) to `names`.
    pub(super) fn add_remote_names(&self, names: &mut Vec<String>) {
        let Some(c) = &self.cluster else {
            return;
        };
        let remote: BTreeMap<&String, &String> = c
            .nodes
            .values()
            .flat_map(|n| n.users.iter())
            .filter(|(k, _)| !self.online.contains_key(*k))
            .collect();
        names.extend(remote.into_values().cloned());
    }

    /// A local presence change (`name`'s first session here opened, or the last one
    /// closed): tells the other nodes, and says whether this node's users should hear it
    /// (not when the user is still, or already, online on another node).
    pub(super) fn presence_is_news(&mut self, key: &str, name: &str, online: bool) -> bool {
        self.publish(|| ClusterMsg::Presence {
            user: key.to_owned(),
            name: name.to_owned(),
            online,
        });
        !self.online_elsewhere(key)
    }

    /// Tells every session of this node but the user's own that `name` came or went.
    pub(super) fn tell_presence(&mut self, key: &str, name: &str, online: bool) {
        let targets: Vec<ConnId> = self
            .online
            .iter()
            .filter(|(k, _)| k.as_str() != key)
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        for conn in targets {
            self.control_out(
                conn,
                ControlDown::Presence {
                    user: name.to_owned(),
                    online,
                },
            );
        }
    }

    /// A failed login here: the other nodes count it too.
    pub(super) fn publish_failed_login(&mut self, account: &str, ip: IpAddr) {
        self.publish(|| ClusterMsg::LoginFailed {
            account: account.to_owned(),
            ip,
        });
    }

    /// A message from another node (`from`: its instance id).
    pub(super) fn cluster_input(
        &mut self,
        from: u64,
        msg: ClusterMsg,
        now: u64,
    ) -> Result<(), StoreError> {
        if self.cluster.is_none() {
            return Ok(());
        }
        match msg {
            ClusterMsg::Event { conv, event } => {
                self.touch(&conv, now);
                self.fan_out_local(&conv, &event, None);
            }
            ClusterMsg::Presence { user, name, online } => {
                let mut users = self.node_users(from, now).clone();
                if online {
                    users.insert(user, name);
                } else {
                    users.remove(&user);
                }
                self.set_node_users(from, Some(users), now);
            }
            ClusterMsg::Roster { users } => {
                self.set_node_users(from, Some(users.into_iter().collect()), now);
            }
            ClusterMsg::Hello => {
                self.node_users(from, now);
                self.publish_roster();
            }
            ClusterMsg::Bye => self.set_node_users(from, None, now),
            ClusterMsg::Hidden { user, hidden } => {
                for conn in self.online.get(&user).cloned().unwrap_or_default() {
                    self.control_out(conn, ControlDown::Hidden(hidden.clone()));
                }
            }
            ClusterMsg::Room {
                room,
                actor,
                kind,
                effects,
            } => self.remote_room_change(&room, &actor, kind, effects)?,
            ClusterMsg::LoginFailed { account, ip } => {
                self.fail_account.record(account, now);
                self.fail_ip.record(ip, now);
            }
            ClusterMsg::Read {
                user,
                name,
                conv,
                upto,
            } => self.tell_read(None, &user, &name, &conv, upto)?,
            ClusterMsg::Typing { user, name, conv } => self.tell_typing(&user, &name, &conv),
            ClusterMsg::Receipts { user, on } => {
                for c in self.sessions_of_key(&user) {
                    self.control_out(c, ControlDown::Receipts { on });
                }
            }
        }
        Ok(())
    }

    /// The cluster timer: sends this node's roster and forgets nodes not heard from for
    /// [`NODE_EXPIRY_MS`] (a node killed without a `Bye`), whose users go offline.
    pub(super) fn cluster_tick(&mut self, now: u64) {
        let Some(c) = &self.cluster else {
            return;
        };
        let stale: Vec<u64> = c
            .nodes
            .iter()
            .filter(|(_, n)| now.saturating_sub(n.seen) > NODE_EXPIRY_MS)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.set_node_users(id, None, now);
        }
        self.publish_roster();
    }

    /// The link to the other nodes was down and is back: whatever they published meanwhile
    /// was lost. Every open conversation of every session here gets its newest event as a
    /// live one; a client that is behind sees the gap and catches up from the store (one
    /// that is not ignores it: it has that sequence number).
    pub(super) fn cluster_resync(&mut self) -> Result<(), StoreError> {
        if self.cluster.is_none() {
            return Ok(());
        }
        let open: Vec<(ConnId, String, ConvId)> = self
            .conns
            .iter()
            .filter_map(|(c, conn)| match &conn.state {
                ConnState::LoggedIn(s) => Some((*c, s)),
                _ => None,
            })
            .flat_map(|(c, s)| s.open.iter().map(move |v| (c, s.key.clone(), v.clone())))
            .collect();
        let mut newest: HashMap<(ConvId, String), Option<ConvEvent>> = HashMap::new();
        for (conn, key, conv) in open {
            let event = match newest.get(&(conv.clone(), key.clone())) {
                Some(e) => e.clone(),
                None => {
                    let e = self.store.events_before(&conv, u64::MAX, 1, &key)?.pop();
                    newest.insert((conv.clone(), key.clone()), e.clone());
                    e
                }
            };
            if let Some(e) = event.filter(|e| self.can_read(&conv, &key, e.seq)) {
                self.conv_out(conn, &conv, ConvDown::Event(e));
            }
        }
        self.publish(|| ClusterMsg::Hello);
        Ok(())
    }

    fn publish_roster(&mut self) {
        let users: Vec<(String, String)> = self
            .online
            .iter()
            .filter_map(|(k, s)| {
                let conn = s.iter().next()?;
                Some((k.clone(), self.session(*conn)?.name.to_string()))
            })
            .collect();
        self.publish(|| ClusterMsg::Roster { users });
    }

    /// Node `id`'s users (the node is created, and marked seen, if new).
    fn node_users(&mut self, id: u64, now: u64) -> &BTreeMap<String, String> {
        let c = self.cluster.as_mut().expect("cluster mode");
        let node = c.nodes.entry(id).or_default();
        node.seen = now;
        &node.users
    }

    /// Replaces node `id`'s users (`None`: the node is gone), and tells this node's
    /// sessions about every user who came online, or went offline, cluster-wide.
    fn set_node_users(&mut self, id: u64, users: Option<BTreeMap<String, String>>, now: u64) {
        let before: BTreeSet<(String, String)> = self.remote_users();
        let c = self.cluster.as_mut().expect("cluster mode");
        match users {
            Some(users) => {
                let node = c.nodes.entry(id).or_default();
                node.users = users;
                node.seen = now;
            }
            None => {
                c.nodes.remove(&id);
            }
        }
        let after = self.remote_users();
        let keys = |s: &BTreeSet<(String, String)>| -> BTreeSet<String> {
            s.iter().map(|(k, _)| k.clone()).collect()
        };
        let (was, is) = (keys(&before), keys(&after));
        for (key, name) in &after {
            if !was.contains(key) && !self.online.contains_key(key) {
                self.tell_presence(key, name, true);
            }
        }
        for (key, name) in &before {
            if !is.contains(key) && !self.online_anywhere(key) {
                self.tell_presence(key, name, false);
            }
        }
    }

    /// (key, name) of every user online on another node.
    fn remote_users(&self) -> BTreeSet<(String, String)> {
        self.cluster
            .iter()
            .flat_map(|c| c.nodes.values())
            .flat_map(|n| n.users.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect()
    }

    /// Before a room command in cluster mode: a room this node does not know may have been
    /// created on another node a moment ago (its announcement still on the way), so it is
    /// looked up in the store before the command is refused.
    pub(super) fn room_command_target(&mut self, up: &RoomUp) -> Result<(), StoreError> {
        let room = match up {
            RoomUp::Join { room }
            | RoomUp::Invite { room, .. }
            | RoomUp::Decline { room }
            | RoomUp::Leave { room }
            | RoomUp::Members { room }
            | RoomUp::Topic { room, .. }
            | RoomUp::Moderate { room, .. } => room,
            RoomUp::Create { .. } | RoomUp::List { .. } => return Ok(()),
        };
        let key = room.to_ascii_lowercase();
        if self.cluster.is_none() || self.rooms.contains_key(&key) {
            return Ok(());
        }
        if let Some(s) = self.store.load_room(&key)? {
            let entry = RoomEntry {
                room: s.room,
                inviters: s.inviters,
                last_activity: s.last_activity,
            };
            self.rooms.insert(key.clone(), entry);
            self.room_updated(&key);
        }
        Ok(())
    }

    /// Another node changed a room: re-read it from the store (the record), then announce
    /// the change to this node's sessions as that node did to its own. A room the store no
    /// longer has was closed: only the removals are announced.
    fn remote_room_change(
        &mut self,
        room: &str,
        actor: &str,
        kind: WireKind,
        effects: Vec<WireEffect>,
    ) -> Result<(), StoreError> {
        let stored = self.store.load_room(room)?;
        let mut effects: Vec<Effect> = effects.into_iter().map(Effect::from).collect();
        match stored {
            Some(s) => {
                let entry = RoomEntry {
                    room: s.room,
                    inviters: s.inviters,
                    last_activity: s.last_activity,
                };
                self.rooms.insert(room.to_owned(), entry);
            }
            None => {
                // Gone: no one is told they joined or were invited.
                effects.retain(|e| matches!(e, Effect::Removed { .. } | Effect::Closed));
                if !effects.contains(&Effect::Closed) {
                    effects.push(Effect::Closed);
                }
            }
        }
        let kind = match kind {
            WireKind::Kick => Kind::Kick,
            WireKind::Ban => Kind::Ban,
            WireKind::Other => Kind::Other,
        };
        self.announce_effects(room, actor, kind, &effects)?;
        if self.rooms.contains_key(room) {
            self.room_updated(room);
        }
        Ok(())
    }
}
