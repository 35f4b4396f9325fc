//! Edits and reactions in SQLite (the last migration's `reactions` table), and how every
//! event kind is stored in an `events` row (both backends).
//!
//! An edit rewrites the message's row in place (kind 3, the new body), empties the bodies
//! of the message's earlier edit events (kind 4), and appends a new edit event: the store
//! never holds two versions of a text. Like an erase, it marks the store so that the commit
//! truncates the WAL, where the old text's page images would otherwise linger. A reaction
//! is an event (kind 5 added, 6 removed) plus, while in force, a `reactions` row naming the
//! event that added it, which is what keeps "one of each emoji per user" and what a history
//! page's counts are rebuilt from.

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, err};
use crate::app::ids::{ClientMsgId, ConvId, MsgId};
use crate::app::protocol::{ConvEvent, EventKind};
use crate::app::store::{Reacted, ReactionChange, StoreError, StoreResult};

/// The `kind`, `body` and `target` columns of an event.
pub(super) fn kind_columns(kind: &EventKind) -> (i64, Option<&[u8]>, Option<i64>) {
    let id = |t: &MsgId| Some(*t.min(&(i64::MAX as u64)) as i64);
    match kind {
        EventKind::Message { body } => (0, Some(body.as_slice()), None),
        // Never stored (a client-side kind): as an erased message if it ever were.
        EventKind::Erased | EventKind::Handshake => (1, None, None),
        EventKind::Tombstone { target } => (2, None, id(target)),
        EventKind::Edited { body } => (3, Some(body.as_slice()), None),
        EventKind::Edit { target, body } => (4, Some(body.as_slice()), id(target)),
        EventKind::Reaction { target, on, body } => {
            (if *on { 5 } else { 6 }, Some(body.as_slice()), id(target))
        }
    }
}

/// The event kind of stored columns (an unknown code reads as a tombstone, as before).
pub(super) fn kind_of(kind: i64, body: Option<Vec<u8>>, target: Option<i64>) -> EventKind {
    let body = body.unwrap_or_default();
    let target = target.unwrap_or(0) as u64;
    match kind {
        0 => EventKind::Message { body },
        1 => EventKind::Erased,
        3 => EventKind::Edited { body },
        4 => EventKind::Edit { target, body },
        5 | 6 => EventKind::Reaction {
            target,
            on: kind == 5,
            body,
        },
        _ => EventKind::Tombstone { target },
    }
}

impl SqliteStore {
    /// The stored event `(sender, cmid)` (a message, edit or reaction), if any.
    pub(super) fn by_cmid(
        &mut self,
        sender: &str,
        cmid: ClientMsgId,
    ) -> StoreResult<Option<ConvEvent>> {
        Ok(self
            .db
            .prepare_cached(
                "SELECT * FROM events WHERE sender_key = ?1 AND cmid = ?2 AND kind != 2",
            )
            .map_err(err)?
            .query_row(
                params![sender.to_ascii_lowercase(), &cmid.0[..]],
                Self::row_event,
            )
            .optional()
            .map_err(err)?
            .map(|(_, e)| e))
    }

    pub(super) fn edit_message_impl(
        &mut self,
        target: MsgId,
        editor: &str,
        cmid: ClientMsgId,
        body: &[u8],
        ts: u64,
    ) -> StoreResult<(ConvEvent, bool)> {
        if let Some(e) = self.by_cmid(editor, cmid)? {
            return Ok((e, true));
        }
        let conv = self
            .event_conv(target)?
            .ok_or_else(|| StoreError::other("no such message"))?;
        self.db
            .prepare_cached("UPDATE events SET kind = 3, body = ?2 WHERE id = ?1")
            .map_err(err)?
            .execute(params![target as i64, body])
            .map_err(err)?;
        self.erase_edits_impl(target)?;
        let kind = EventKind::Edit {
            target,
            body: body.to_vec(),
        };
        let e = self.append(&conv, editor, cmid, ts, &kind)?;
        Ok((e, false))
    }

    pub(super) fn erase_edits_impl(&mut self, target: MsgId) -> StoreResult<()> {
        self.db
            .prepare_cached("UPDATE events SET body = NULL WHERE kind = 4 AND target = ?1")
            .map_err(err)?
            .execute([target as i64])
            .map_err(err)?;
        // The replaced texts' page images leave the WAL at the commit, as an erase's do.
        self.erased = true;
        if !self.in_tx {
            self.scrub_erased();
        }
        Ok(())
    }

    pub(super) fn react_impl(&mut self, change: &ReactionChange<'_>) -> StoreResult<Reacted> {
        let ReactionChange {
            conv,
            target,
            user,
            cmid,
            key,
            on,
            body,
            ts,
        } = *change;
        if let Some(e) = self.by_cmid(user, cmid)? {
            return Ok(Reacted::Resent(e));
        }
        let user_key = user.to_ascii_lowercase();
        let present = self
            .db
            .prepare_cached(
                "SELECT 1 FROM reactions WHERE target = ?1 AND user_key = ?2 AND rkey = ?3",
            )
            .map_err(err)?
            .exists(params![target as i64, user_key, key])
            .map_err(err)?;
        if present == on {
            return Ok(Reacted::Unchanged);
        }
        let kind = EventKind::Reaction {
            target,
            on,
            body: body.to_vec(),
        };
        let e = self.append(conv, user, cmid, ts, &kind)?;
        if on {
            self.db
                .prepare_cached(
                    "INSERT INTO reactions (target, user_key, rkey, event_id, conv)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err)?
                .execute(params![
                    target as i64,
                    user_key,
                    key,
                    e.id as i64,
                    conv.storage_key()
                ])
                .map_err(err)?;
        } else {
            self.db
                .prepare_cached(
                    "DELETE FROM reactions WHERE target = ?1 AND user_key = ?2 AND rkey = ?3",
                )
                .map_err(err)?
                .execute(params![target as i64, user_key, key])
                .map_err(err)?;
        }
        Ok(Reacted::Applied(e))
    }

    pub(super) fn reactions_impl(
        &mut self,
        conv: &ConvId,
        targets: &[MsgId],
    ) -> StoreResult<Vec<ConvEvent>> {
        let mut out = Vec::new();
        let mut stmt = self
            .db
            .prepare_cached(
                "SELECT e.* FROM reactions r JOIN events e ON e.id = r.event_id
                 WHERE r.target = ?1 AND e.conv = ?2 ORDER BY e.seq",
            )
            .map_err(err)?;
        for t in targets {
            let rows = stmt
                .query_map(params![*t as i64, conv.storage_key()], Self::row_event)
                .map_err(err)?;
            for r in rows {
                out.push(r.map_err(err)?.1);
            }
        }
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }

    fn event_conv(&mut self, id: MsgId) -> StoreResult<Option<ConvId>> {
        let conv: Option<String> = self
            .db
            .prepare_cached("SELECT conv FROM events WHERE id = ?1")
            .map_err(err)?
            .query_row([id as i64], |r| r.get(0))
            .optional()
            .map_err(err)?;
        Ok(conv.and_then(|c| ConvId::from_storage_key(&c)))
    }
}
