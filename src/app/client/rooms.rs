//! Rooms as the client sees them: the list of rooms this user is in, and room news from
//! the server turned into events. A removal closes the room's stream.

use std::collections::BTreeMap;

use super::command::{InvitationItem, RoomItem};
use super::streams::Stream;
use super::{ClientCore, Event};
use crate::app::ids::ConvId;
use crate::app::protocol::{ErrorCode, MemberChange, Role, RoomDown};

impl ClientCore {
    /// The rooms this user is in (by key), as the server last told.
    pub fn rooms(&self) -> &BTreeMap<String, RoomItem> {
        &self.rooms
    }

    /// Room news from the server: keeps the room list, closes what a removal ends, and
    /// tells the user.
    pub(super) fn room(&mut self, down: RoomDown) {
        match down {
            RoomDown::State { rooms, invitations } => {
                self.rooms = rooms
                    .into_iter()
                    .map(|r| (r.key.clone(), RoomItem::from(r)))
                    .collect();
                // Rooms left while this client was away: forget their streams.
                let gone: Vec<ConvId> = self
                    .convs
                    .keys()
                    .filter(|c| matches!(c, ConvId::Room(k) if !self.rooms.contains_key(k)))
                    .cloned()
                    .collect();
                for conv in gone {
                    self.leave_conv(&conv);
                }
                let invitations = invitations
                    .into_iter()
                    .map(|(r, by)| InvitationItem {
                        room: r.name,
                        by,
                        topic: r.topic,
                    })
                    .collect();
                let rooms = self.rooms.values().cloned().collect();
                self.event(Event::RoomState { rooms, invitations });
            }
            RoomDown::Directory { rooms } => {
                let rooms = rooms.into_iter().map(RoomItem::from).collect();
                self.event(Event::Rooms { rooms });
            }
            RoomDown::Members { room, members } => {
                let room = self.room_name(&room);
                self.event(Event::Members { room, members });
            }
            RoomDown::Joined { room } => {
                let key = room.key.clone();
                let item = RoomItem::from(room);
                self.rooms.insert(key.clone(), item.clone());
                self.ensure_open(&ConvId::Room(key));
                self.event(Event::Joined { room: item });
            }
            RoomDown::Left { room, change, by } => {
                let name = self.room_name(&room);
                self.rooms.remove(&room);
                self.leave_conv(&ConvId::Room(room));
                self.event(Event::Left {
                    room: name,
                    reason: change,
                    by,
                });
            }
            RoomDown::Invited { room, by } => self.event(Event::Invited {
                room: room.name,
                by,
                topic: room.topic,
            }),
            RoomDown::Member {
                room,
                user,
                change,
                by,
            } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    match change {
                        MemberChange::Joined => r.members += 1,
                        MemberChange::Left | MemberChange::Kicked | MemberChange::Banned => {
                            r.members = r.members.saturating_sub(1)
                        }
                        MemberChange::Owner if user.eq_ignore_ascii_case(&self.me) => {
                            r.role = Some(Role::Owner)
                        }
                        MemberChange::Promoted if user.eq_ignore_ascii_case(&self.me) => {
                            r.role = Some(Role::Moderator)
                        }
                        MemberChange::Demoted if user.eq_ignore_ascii_case(&self.me) => {
                            r.role = Some(Role::Member)
                        }
                        _ => {}
                    }
                }
                let room = self.room_name(&room);
                self.event(Event::Member {
                    room,
                    user,
                    change,
                    by,
                });
            }
            RoomDown::Topic { room, topic, by } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.topic = topic.clone();
                }
                let room = self.room_name(&room);
                self.event(Event::Topic { room, topic, by });
            }
        }
    }

    /// A room's name as spelled, when known (else its key).
    pub(super) fn room_name(&self, key: &str) -> String {
        self.rooms
            .get(key)
            .map(|r| r.room.clone())
            .unwrap_or_else(|| key.to_owned())
    }

    /// This user is no longer in a room (left, kicked, banned, closed): its position, held
    /// requests and unsent messages go (the server refuses them anyway), and its stream
    /// closes the way an idle one does (`Close`, read until the server's `Closed`), so it
    /// stops holding one of the connection's streams. A rejoin opens a new stream and
    /// catches up as far as the server lets this user read (a room closed and created
    /// again starts its numbering anew, so no position is kept).
    pub(super) fn leave_conv(&mut self, conv: &ConvId) {
        if let Some(s) = self.convs.get_mut(conv) {
            self.dirty |= s.last_seq.is_some();
            s.last_seq = None;
            s.want = false;
            s.held.clear();
            s.history = 0;
            // The answers to barriers on this stream may have been revoked with the rest:
            // count them as answered (nothing more of this room reaches this user).
            let syncs = std::mem::take(&mut s.syncs);
            match s.stream {
                Stream::Closed => {
                    self.convs.remove(conv);
                }
                Stream::Closing => s.gone = true,
                Stream::CatchingUp | Stream::Open => {
                    s.gone = true;
                    self.close_stream(conv);
                }
            }
            for token in syncs {
                if let Some(b) = self.barriers.iter_mut().find(|b| b.token == token) {
                    b.waiting = b.waiting.saturating_sub(1);
                }
            }
        }
        let before = self.outbox.len();
        self.outbox.retain(|p| &p.conv != conv);
        if self.outbox.len() != before {
            self.event(Event::error(
                ErrorCode::NotMember,
                "messages not yet sent to a room you are no longer in were dropped",
            ));
        }
        self.complete_barriers();
    }
}
