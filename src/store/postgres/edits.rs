//! Edits and reactions in PostgreSQL: the same rows and rules as SQLite's
//! (src/store/edits.rs). A reaction first locks its conversation's counter row, so two
//! nodes adding the same reaction at once agree on which one stored it.

use super::{Conn, Fail, Res, append, big, by_cmid, event, row_event};
use crate::app::ids::{ClientMsgId, ConvId, MsgId};
use crate::app::protocol::{ConvEvent, EventKind};
use crate::app::store::{Reacted, ReactionChange, StoreError};

pub(super) fn edit_message(
    c: &mut Conn,
    target: MsgId,
    editor: &str,
    cmid: ClientMsgId,
    body: &[u8],
    ts: u64,
) -> Res<(ConvEvent, bool)> {
    let editor_key = editor.to_ascii_lowercase();
    if let Some(e) = by_cmid(c, &editor_key, &cmid.0)? {
        return Ok((e, true));
    }
    let stored =
        event(c, target)?.ok_or_else(|| Fail::Store(StoreError::other("no such message")))?;
    c.execute(
        "UPDATE events SET kind = 3, body = $2 WHERE id = $1",
        &[&big(target), &body],
    )?;
    erase_edits(c, target)?;
    let kind = EventKind::Edit {
        target,
        body: body.to_vec(),
    };
    match append(c, &stored.conv, editor, cmid, ts, &kind)? {
        Some(e) => Ok((e, false)),
        // Another node stored this edit meanwhile.
        None => by_cmid(c, &editor_key, &cmid.0)?
            .map(|e| (e, true))
            .ok_or_else(|| Fail::Store(StoreError::other("a resent edit vanished"))),
    }
}

pub(super) fn erase_edits(c: &mut Conn, target: MsgId) -> Res<()> {
    c.execute(
        "UPDATE events SET body = NULL WHERE kind = 4 AND target = $1",
        &[&big(target)],
    )?;
    Ok(())
}

pub(super) fn react(c: &mut Conn, change: &ReactionChange<'_>) -> Res<Reacted> {
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
    let user_key = user.to_ascii_lowercase();
    if let Some(e) = by_cmid(c, &user_key, &cmid.0)? {
        return Ok(Reacted::Resent(e));
    }
    let conv_key = conv.storage_key();
    c.query_opt(
        "SELECT last_seq FROM conv_seqs WHERE conv = $1 FOR UPDATE",
        &[&conv_key],
    )?;
    let present = c
        .query_opt(
            "SELECT 1 FROM reactions WHERE target = $1 AND user_key = $2 AND rkey = $3",
            &[&big(target), &user_key, &key],
        )?
        .is_some();
    if present == on {
        return Ok(Reacted::Unchanged);
    }
    let kind = EventKind::Reaction {
        target,
        on,
        body: body.to_vec(),
    };
    let Some(e) = append(c, conv, user, cmid, ts, &kind)? else {
        return by_cmid(c, &user_key, &cmid.0)?
            .map(Reacted::Resent)
            .ok_or_else(|| Fail::Store(StoreError::other("a resent reaction vanished")));
    };
    if on {
        c.execute(
            "INSERT INTO reactions (target, user_key, rkey, event_id, conv)
             VALUES ($1, $2, $3, $4, $5)",
            &[&big(target), &user_key, &key, &big(e.id), &conv_key],
        )?;
    } else {
        c.execute(
            "DELETE FROM reactions WHERE target = $1 AND user_key = $2 AND rkey = $3",
            &[&big(target), &user_key, &key],
        )?;
    }
    Ok(Reacted::Applied(e))
}

pub(super) fn reactions(c: &mut Conn, conv: &ConvId, targets: &[MsgId]) -> Res<Vec<ConvEvent>> {
    let ids: Vec<i64> = targets.iter().map(|t| big(*t)).collect();
    let rows = c.query(
        "SELECT e.id, e.conv, e.seq, e.kind, e.sender, e.cmid, e.body, e.target, e.ts
         FROM reactions r JOIN events e ON e.id = r.event_id
         WHERE r.target = ANY($1) AND e.conv = $2 ORDER BY e.seq",
        &[&ids, &conv.storage_key()],
    )?;
    Ok(rows.iter().map(|r| row_event(r).1).collect())
}
