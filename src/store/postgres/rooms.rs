//! Rooms in PostgreSQL: the same tables and the same one-statement-per-[`Effect`] writes as
//! SQLite's (src/store/rooms.rs), so a join in a room of 500 members is one row.

use std::collections::{BTreeMap, BTreeSet};

use super::{Conn, Res, big, now_secs};
use crate::app::ids::ConvId;
use crate::app::rooms::{Effect, Member, Room, RoomName, Visibility};
use crate::app::store::StoredRoom;
use crate::store::rooms::{role_code, role_of, visibility_code};

/// Every room, or `only` the one with that key (a cluster node re-reads a room another
/// node changed).
pub(super) fn load(c: &mut Conn, only: Option<&str>) -> Res<Vec<StoredRoom>> {
    let heads = match only {
        None => c.query(
            "SELECT key, name, topic, visibility FROM rooms ORDER BY key",
            &[],
        )?,
        Some(key) => c.query(
            "SELECT key, name, topic, visibility FROM rooms WHERE key = $1",
            &[&key],
        )?,
    };
    let mut out = Vec::with_capacity(heads.len());
    for head in heads {
        let (key, name, topic, vis): (String, String, String, i64) =
            (head.get(0), head.get(1), head.get(2), head.get(3));
        let Ok(name) = RoomName::parse(&name) else {
            tracing::warn!(room = %key, "skipping a stored room with an invalid name");
            continue;
        };
        let members: BTreeMap<String, Member> = c
            .query(
                "SELECT user_key, role, joined_at, since FROM room_members WHERE room = $1",
                &[&key],
            )?
            .iter()
            .map(|r| {
                let member = Member {
                    role: role_of(r.get(1)),
                    joined_at: r.get::<_, i64>(2) as u64,
                    since: r.get::<_, i64>(3) as u64,
                };
                (r.get(0), member)
            })
            .collect();
        let inviters: BTreeMap<String, String> = c
            .query(
                "SELECT user_key, inviter FROM room_invites WHERE room = $1",
                &[&key],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let banned: BTreeSet<String> = c
            .query("SELECT user_key FROM room_bans WHERE room = $1", &[&key])?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let last_activity: i64 = c
            .query_one(
                "SELECT COALESCE(MAX(ts), 0) FROM events WHERE conv = $1",
                &[&key],
            )?
            .get(0);
        let visibility = if vis == 1 {
            Visibility::Private
        } else {
            Visibility::Public
        };
        let invited = inviters.keys().cloned().collect();
        let room = Room::restore(name, topic, visibility, members, invited, banned);
        out.push(StoredRoom {
            room,
            inviters,
            last_activity: last_activity as u64,
        });
    }
    Ok(out)
}

/// A new room and its members (the owner); `false` if the key or skeleton is taken (by
/// this node or another: the unique constraints decide).
pub(super) fn create(c: &mut Conn, room: &Room) -> Res<bool> {
    let n = c.execute(
        "INSERT INTO rooms (key, name, skeleton, topic, visibility, created)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        &[
            &room.name.key(),
            &room.name.as_str(),
            &room.name.skeleton(),
            &room.topic,
            &visibility_code(room.visibility),
            &now_secs(),
        ],
    )?;
    if n != 1 {
        return Ok(false);
    }
    for user in room.members.keys() {
        upsert_member(c, room, user)?;
    }
    Ok(true)
}

fn upsert_member(c: &mut Conn, room: &Room, user: &str) -> Res<()> {
    let Some(m) = room.members.get(user) else {
        return Ok(());
    };
    c.execute(
        "INSERT INTO room_members (room, user_key, role, joined_at, since)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (room, user_key) DO UPDATE
            SET role = EXCLUDED.role, joined_at = EXCLUDED.joined_at, since = EXCLUDED.since",
        &[
            &room.name.key(),
            &user,
            &role_code(m.role),
            &big(m.joined_at),
            &big(m.since),
        ],
    )?;
    Ok(())
}

/// Writes down `effects`.
pub(super) fn changed(c: &mut Conn, room: &Room, effects: &[Effect], by: &str) -> Res<()> {
    let key = room.name.key();
    let drop_invite = |c: &mut Conn, user: &String| {
        c.execute(
            "DELETE FROM room_invites WHERE room = $1 AND user_key = $2",
            &[&key, user],
        )
        .map(drop)
    };
    for e in effects {
        match e {
            Effect::Joined { user, .. } => {
                upsert_member(c, room, user)?;
                drop_invite(c, user)?;
            }
            Effect::RoleChanged { user, .. } => upsert_member(c, room, user)?,
            Effect::Invited { user } => {
                c.execute(
                    "INSERT INTO room_invites (room, user_key, inviter) VALUES ($1, $2, $3)
                     ON CONFLICT (room, user_key) DO UPDATE SET inviter = EXCLUDED.inviter",
                    &[&key, user, &by],
                )?;
            }
            Effect::InviteDropped { user } => drop_invite(c, user)?,
            Effect::Removed { user } => {
                c.execute(
                    "DELETE FROM room_members WHERE room = $1 AND user_key = $2",
                    &[&key, user],
                )?;
            }
            Effect::Banned { user } => {
                c.execute(
                    "INSERT INTO room_bans (room, user_key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&key, user],
                )?;
                drop_invite(c, user)?;
            }
            Effect::Unbanned { user } => {
                c.execute(
                    "DELETE FROM room_bans WHERE room = $1 AND user_key = $2",
                    &[&key, user],
                )?;
            }
            Effect::Topic { topic } => {
                c.execute("UPDATE rooms SET topic = $2 WHERE key = $1", &[&key, topic])?;
            }
            Effect::Closed => {
                // As in SQLite: the history goes with the room, and so does its counter,
                // so a new room of this name starts again at 1. Members, invitations and
                // bans go by `ON DELETE CASCADE`. Hides stay: their counters are per user
                // and must never be reused.
                let conv = ConvId::Room(key.clone()).storage_key();
                c.execute("DELETE FROM rooms WHERE key = $1", &[&key])?;
                c.execute("DELETE FROM events WHERE conv = $1", &[&conv])?;
                c.execute("DELETE FROM conv_seqs WHERE conv = $1", &[&conv])?;
                // A private room's MLS group ends with it (a new room starts at epoch 0).
                c.execute("DELETE FROM mls_epochs WHERE conv = $1", &[&conv])?;
            }
        }
    }
    Ok(())
}
