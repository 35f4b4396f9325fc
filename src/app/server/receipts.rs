//! Read state on the server: per-user read markers (shared by all of a user's sessions),
//! "seen" receipts to the other members of private conversations and small rooms, and the
//! receipts setting that turns both directions off. See "Read state, typing, mentions" in
//! docs/PROTOCOL.md.
//!
//! A marker only moves forward (the store keeps the larger), so a resent `read` is
//! harmless by construction: exactly-once needs no ids here. Receipts are not messages:
//! nothing is sequenced or stored but the marker itself, which is what "seen by" shows.
//! In a cluster a moved marker is published after its commit, and every node tells its
//! own sessions with the same rules ([`ServerCore::tell_read`]).

use super::ServerCore;
use crate::app::ids::{ConnId, ConvId, Seq, UserName};
use crate::app::protocol::{ControlDown, ControlUp, ErrorCode};
use crate::app::store::{Store, StoreError};

/// Rooms with more members than this get no seen receipts (a read in a big room is not
/// news for everyone in it); private conversations always do, `#general` never.
pub const MAX_RECEIPT_MEMBERS: usize = 20;

impl<S: Store> ServerCore<S> {
    /// A read-state or typing command from a logged-in session.
    pub(super) fn read_state_command(
        &mut self,
        conn: ConnId,
        name: &UserName,
        up: ControlUp,
        now: u64,
    ) -> Result<(), StoreError> {
        let key = name.key();
        match up {
            ControlUp::Read { conv, upto } => {
                if let Some(conv) = self.own_conv(conn, &key, &conv)? {
                    self.read(conn, name, conv, upto)?;
                }
            }
            ControlUp::Receipts { on } => {
                self.store.set_receipts(&key, on)?;
                for c in self.sessions_of_key(&key) {
                    self.control_out(c, ControlDown::Receipts { on });
                }
                self.publish(|| super::ClusterMsg::Receipts { user: key, on });
            }
            ControlUp::SeenBy { conv } => {
                if let Some(conv) = self.own_conv(conn, &key, &conv)? {
                    let members = self.seen_by(&key, &conv)?;
                    self.control_out(conn, ControlDown::SeenBy { conv, members });
                }
            }
            ControlUp::Typing { conv } => {
                if let Some(conv) = self.own_conv(conn, &key, &conv)? {
                    self.typing(name, conv, now);
                }
            }
            other => {
                tracing::warn!(?other, "not a read-state command");
            }
        }
        Ok(())
    }

    /// Right after `LoginOk`: the user's markers (of conversations they are still in) and
    /// receipts setting.
    pub(super) fn read_state(&mut self, conn: ConnId, key: &str) -> Result<(), StoreError> {
        let markers = self
            .store
            .read_markers(key)?
            .into_iter()
            .filter(|(conv, _)| match conv {
                ConvId::Room(room) => self.room_conv(key, room).is_ok(),
                other => other.has_member(key),
            })
            .collect();
        let receipts = self.store.receipts(key)?;
        self.control_out(conn, ControlDown::ReadState { markers, receipts });
        Ok(())
    }

    /// `conv` in canonical form if `key` is in it; otherwise an error to `conn` and `None`.
    fn own_conv(
        &mut self,
        conn: ConnId,
        key: &str,
        conv: &ConvId,
    ) -> Result<Option<ConvId>, StoreError> {
        match self.canonical_conv(key, conv)? {
            Ok(c) if c == *conv => Ok(Some(c)),
            Ok(_) => {
                self.control_error(conn, ErrorCode::BadRequest, "malformed conversation id");
                Ok(None)
            }
            Err((code, msg)) => {
                self.control_error(conn, code, msg);
                Ok(None)
            }
        }
    }

    fn read(
        &mut self,
        conn: ConnId,
        name: &UserName,
        conv: ConvId,
        upto: Seq,
    ) -> Result<(), StoreError> {
        let key = name.key();
        // Nobody has read what does not exist yet: a marker past the end would hide the
        // next messages from the unread count.
        let upto = upto.min(self.store.last_seq(&conv)?);
        let Some(upto) = self.store.advance_read(&key, &conv, upto)? else {
            return Ok(());
        };
        let user = name.to_string();
        self.tell_read(Some(conn), &key, &user, &conv, upto)?;
        self.publish(|| super::ClusterMsg::Read {
            user: key,
            name: user,
            conv,
            upto,
        });
        Ok(())
    }

    /// `key` (display `name`) moved their marker in `conv` to `upto` (stored already):
    /// `read` to their sessions on this node but `except` (the one that read, if here),
    /// `seen` to the other members here if the conversation has receipts and both sides
    /// have them on. Every node of a cluster runs this for its own sessions.
    pub(super) fn tell_read(
        &mut self,
        except: Option<ConnId>,
        key: &str,
        name: &str,
        conv: &ConvId,
        upto: Seq,
    ) -> Result<(), StoreError> {
        for c in self.sessions_of_key(key) {
            if Some(c) != except {
                let down = ControlDown::Read {
                    conv: conv.clone(),
                    upto,
                };
                self.control_out(c, down);
            }
        }
        if !self.has_receipts(conv) {
            return Ok(());
        }
        // Only members with a session here; none (the usual case on the other nodes of a
        // cluster): no store look-up at all.
        let here: Vec<String> = self
            .members_of(conv)
            .into_iter()
            .filter(|m| m != key && self.online.contains_key(m))
            .collect();
        if here.is_empty() || !self.store.receipts(key)? {
            return Ok(());
        }
        for member in here {
            if !self.store.receipts(&member)? {
                continue;
            }
            for c in self.sessions_of_key(&member) {
                let down = ControlDown::Seen {
                    conv: conv.clone(),
                    user: name.to_owned(),
                    upto,
                };
                self.control_out(c, down);
            }
        }
        Ok(())
    }

    /// The other members' markers, for "seen by": none for a user with receipts off or a
    /// conversation without receipts, and only members who have them on.
    fn seen_by(&mut self, key: &str, conv: &ConvId) -> Result<Vec<(String, Seq)>, StoreError> {
        if !self.has_receipts(conv) || !self.store.receipts(key)? {
            return Ok(Vec::new());
        }
        let members = self.members_of(conv);
        let mut out = Vec::new();
        for (user, upto) in self.store.conv_read_markers(conv)? {
            if user == key || !members.contains(&user) || !self.store.receipts(&user)? {
                continue;
            }
            out.push((self.display(&user)?, upto));
        }
        Ok(out)
    }

    /// Whether reads in `conv` are told to its other members.
    pub(super) fn has_receipts(&self, conv: &ConvId) -> bool {
        match conv {
            ConvId::Direct(..) => true,
            ConvId::Room(room) => self
                .rooms
                .get(room)
                .is_some_and(|e| e.room.members.len() <= MAX_RECEIPT_MEMBERS),
            ConvId::General => false,
        }
    }

    /// The member keys of a private conversation or room (`#general`: everyone online).
    pub(super) fn members_of(&self, conv: &ConvId) -> Vec<String> {
        match conv {
            ConvId::Direct(a, b) => {
                let mut v = vec![a.clone()];
                if a != b {
                    v.push(b.clone());
                }
                v
            }
            ConvId::Room(room) => self
                .rooms
                .get(room)
                .map(|e| e.room.members.keys().cloned().collect())
                .unwrap_or_default(),
            ConvId::General => self.online.keys().cloned().collect(),
        }
    }

    /// Every session of a user.
    pub(super) fn sessions_of_key(&self, key: &str) -> Vec<ConnId> {
        self.online
            .get(key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}
