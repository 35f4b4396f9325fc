//! Rooms in SQLite (schema migration 4): one row per room, its members with their role and
//! where their history starts, pending invitations with the inviter, and bans.
//!
//! The core decides every change with [`Room::apply`]; this module only writes down the
//! [`Effect`]s it returned, one small statement each, so a join in a room of 500 members
//! is one row, not 500.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, params};

use super::err;
use crate::app::ids::ConvId;
use crate::app::rooms::{Effect, Member, Role, Room, RoomName, Visibility};
use crate::app::store::{StoreResult, StoredRoom};

/// How a role is stored (both backends).
pub(super) fn role_code(r: Role) -> i64 {
    match r {
        Role::Member => 0,
        Role::Moderator => 1,
        Role::Owner => 2,
    }
}

/// A stored role.
pub(super) fn role_of(code: i64) -> Role {
    match code {
        2 => Role::Owner,
        1 => Role::Moderator,
        _ => Role::Member,
    }
}

/// How a visibility is stored (both backends).
pub(super) fn visibility_code(v: Visibility) -> i64 {
    match v {
        Visibility::Public => 0,
        Visibility::Private => 1,
    }
}

/// Every room with its members, invitations, bans and newest activity.
pub(super) fn load(db: &Connection) -> StoreResult<Vec<StoredRoom>> {
    let heads: Vec<(String, String, String, i64)> = db
        .prepare("SELECT key, name, topic, visibility FROM rooms ORDER BY key")
        .map_err(err)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let mut out = Vec::with_capacity(heads.len());
    for (key, name, topic, vis) in heads {
        let Ok(name) = RoomName::parse(&name) else {
            tracing::warn!(room = %key, "skipping a stored room with an invalid name");
            continue;
        };
        let members: BTreeMap<String, Member> = db
            .prepare_cached(
                "SELECT user_key, role, joined_at, since FROM room_members WHERE room = ?1",
            )
            .map_err(err)?
            .query_map([&key], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Member {
                        role: role_of(r.get(1)?),
                        joined_at: r.get::<_, i64>(2)? as u64,
                        since: r.get::<_, i64>(3)? as u64,
                    },
                ))
            })
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let inviters: BTreeMap<String, String> = db
            .prepare_cached("SELECT user_key, inviter FROM room_invites WHERE room = ?1")
            .map_err(err)?
            .query_map([&key], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let banned: BTreeSet<String> = db
            .prepare_cached("SELECT user_key FROM room_bans WHERE room = ?1")
            .map_err(err)?
            .query_map([&key], |r| r.get(0))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let last_activity: i64 = db
            .prepare_cached("SELECT COALESCE(MAX(ts), 0) FROM events WHERE conv = ?1")
            .map_err(err)?
            .query_row([&key], |r| r.get(0))
            .map_err(err)?;
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

/// A new room and its members (the owner); `false` if the key or skeleton is taken.
pub(super) fn create(db: &Connection, room: &Room) -> StoreResult<bool> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let n = db
        .prepare_cached(
            "INSERT OR IGNORE INTO rooms (key, name, skeleton, topic, visibility, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(err)?
        .execute(params![
            room.name.key(),
            room.name.as_str(),
            room.name.skeleton(),
            room.topic,
            visibility_code(room.visibility),
            now
        ])
        .map_err(err)?;
    if n != 1 {
        return Ok(false);
    }
    for user in room.members.keys() {
        upsert_member(db, room, user)?;
    }
    Ok(true)
}

fn upsert_member(db: &Connection, room: &Room, user: &str) -> StoreResult<()> {
    let Some(m) = room.members.get(user) else {
        return Ok(());
    };
    db.prepare_cached(
        "INSERT OR REPLACE INTO room_members (room, user_key, role, joined_at, since)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .map_err(err)?
    .execute(params![
        room.name.key(),
        user,
        role_code(m.role),
        m.joined_at as i64,
        m.since as i64
    ])
    .map_err(err)?;
    Ok(())
}

fn exec(db: &Connection, sql: &str, p: impl rusqlite::Params) -> StoreResult<()> {
    db.prepare_cached(sql)
        .map_err(err)?
        .execute(p)
        .map_err(err)
        .map(drop)
}

/// Writes down `effects`; `true` if the room was closed (its history deleted).
pub(super) fn changed(
    db: &Connection,
    room: &Room,
    effects: &[Effect],
    by: &str,
) -> StoreResult<bool> {
    let key = room.name.key();
    let mut closed = false;
    for e in effects {
        match e {
            Effect::Joined { user, .. } => {
                upsert_member(db, room, user)?;
                exec(
                    db,
                    "DELETE FROM room_invites WHERE room = ?1 AND user_key = ?2",
                    params![key, user],
                )?;
            }
            Effect::RoleChanged { user, .. } => upsert_member(db, room, user)?,
            Effect::Invited { user } => exec(
                db,
                "INSERT OR REPLACE INTO room_invites (room, user_key, inviter) VALUES (?1, ?2, ?3)",
                params![key, user, by],
            )?,
            Effect::InviteDropped { user } => exec(
                db,
                "DELETE FROM room_invites WHERE room = ?1 AND user_key = ?2",
                params![key, user],
            )?,
            Effect::Removed { user } => exec(
                db,
                "DELETE FROM room_members WHERE room = ?1 AND user_key = ?2",
                params![key, user],
            )?,
            Effect::Banned { user } => {
                exec(
                    db,
                    "INSERT OR IGNORE INTO room_bans (room, user_key) VALUES (?1, ?2)",
                    params![key, user],
                )?;
                exec(
                    db,
                    "DELETE FROM room_invites WHERE room = ?1 AND user_key = ?2",
                    params![key, user],
                )?;
            }
            Effect::Unbanned { user } => exec(
                db,
                "DELETE FROM room_bans WHERE room = ?1 AND user_key = ?2",
                params![key, user],
            )?,
            Effect::Topic { topic } => exec(
                db,
                "UPDATE rooms SET topic = ?2 WHERE key = ?1",
                params![key, topic],
            )?,
            Effect::Closed => {
                // Nobody is left to read it, and a new room of this name must not inherit
                // it: the history goes with the room (bodies overwritten: secure_delete).
                let conv = ConvId::Room(key.clone()).storage_key();
                for sql in [
                    "DELETE FROM room_members WHERE room = ?1",
                    "DELETE FROM room_invites WHERE room = ?1",
                    "DELETE FROM room_bans WHERE room = ?1",
                    "DELETE FROM rooms WHERE key = ?1",
                ] {
                    exec(db, sql, params![key])?;
                }
                // Hides stay: their counters must never be reused.
                exec(db, "DELETE FROM events WHERE conv = ?1", params![conv])?;
                // A private room's MLS group ends with it: a new room of this name
                // starts a new group at epoch 0.
                exec(db, "DELETE FROM mls_epochs WHERE conv = ?1", params![conv])?;
                closed = true;
            }
        }
    }
    Ok(closed)
}
