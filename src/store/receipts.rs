//! Read markers and seen-receipt settings in SQLite (issue 18): one row per (user,
//! conversation) holding the newest sequence number read, which only ever moves forward,
//! and one row per user who changed the receipts setting (absent means on).

use rusqlite::{Connection, OptionalExtension, params};

use super::err;
use crate::app::ids::{ConvId, Seq};
use crate::app::store::StoreResult;

/// A sequence number as SQLite's INTEGER (saturating).
fn int(seq: Seq) -> i64 {
    seq.min(i64::MAX as u64) as i64
}

/// Moves the marker forward; `None` when it already was at or past `upto`.
pub(super) fn advance(
    db: &Connection,
    key: &str,
    conv: &ConvId,
    upto: Seq,
) -> StoreResult<Option<Seq>> {
    if upto == 0 {
        return Ok(None);
    }
    // One statement: the upsert only writes when the marker grows, so a resent or stale
    // read changes nothing.
    let n = db
        .prepare_cached(
            "INSERT INTO read_markers (user_key, conv, upto) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_key, conv) DO UPDATE SET upto = excluded.upto
             WHERE excluded.upto > read_markers.upto",
        )
        .map_err(err)?
        .execute(params![key, conv.storage_key(), int(upto)])
        .map_err(err)?;
    Ok((n > 0).then_some(upto))
}

/// A user's markers.
pub(super) fn of_user(db: &Connection, key: &str) -> StoreResult<Vec<(ConvId, Seq)>> {
    let mut stmt = db
        .prepare_cached("SELECT conv, upto FROM read_markers WHERE user_key = ?1 ORDER BY conv")
        .map_err(err)?;
    let rows = stmt
        .query_map([key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(err)?;
    let mut out = Vec::new();
    for r in rows {
        let (conv, upto) = r.map_err(err)?;
        if let Some(conv) = ConvId::from_storage_key(&conv) {
            out.push((conv, upto as Seq));
        }
    }
    Ok(out)
}

/// Every user's marker of a conversation.
pub(super) fn of_conv(db: &Connection, conv: &ConvId) -> StoreResult<Vec<(String, Seq)>> {
    let mut stmt = db
        .prepare_cached("SELECT user_key, upto FROM read_markers WHERE conv = ?1 ORDER BY user_key")
        .map_err(err)?;
    let rows = stmt
        .query_map([conv.storage_key()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as Seq))
        })
        .map_err(err)?;
    rows.map(|r| r.map_err(err)).collect()
}

/// Forgets a closed room's markers (its name may be taken again by a new room).
pub(super) fn forget_conv(db: &Connection, conv: &ConvId) -> StoreResult<()> {
    db.prepare_cached("DELETE FROM read_markers WHERE conv = ?1")
        .map_err(err)?
        .execute([conv.storage_key()])
        .map_err(err)?;
    Ok(())
}

/// Sets the receipts setting.
pub(super) fn set(db: &Connection, key: &str, on: bool) -> StoreResult<()> {
    db.prepare_cached(
        "INSERT INTO receipt_settings (user_key, receipts) VALUES (?1, ?2)
         ON CONFLICT (user_key) DO UPDATE SET receipts = excluded.receipts",
    )
    .map_err(err)?
    .execute(params![key, on])
    .map_err(err)?;
    Ok(())
}

/// The receipts setting (on when never set).
pub(super) fn get(db: &Connection, key: &str) -> StoreResult<bool> {
    let on = db
        .prepare_cached("SELECT receipts FROM receipt_settings WHERE user_key = ?1")
        .map_err(err)?
        .query_row([key], |r| r.get::<_, bool>(0))
        .optional()
        .map_err(err)?;
    Ok(on.unwrap_or(true))
}
