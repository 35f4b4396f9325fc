//! Read markers and seen-receipt settings in PostgreSQL: the same tables and rules as
//! SQLite's (src/store/receipts.rs). A marker's upsert only writes when it grows, so two
//! nodes racing on one user's marker keep the larger.

use super::{Conn, Res, big};
use crate::app::ids::{ConvId, Seq};

pub(super) fn advance(c: &mut Conn, key: &str, conv: &str, upto: Seq) -> Res<Option<Seq>> {
    if upto == 0 {
        return Ok(None);
    }
    let n = c.execute(
        "INSERT INTO read_markers (user_key, conv, upto) VALUES ($1, $2, $3)
         ON CONFLICT (user_key, conv) DO UPDATE SET upto = excluded.upto
         WHERE excluded.upto > read_markers.upto",
        &[&key, &conv, &big(upto)],
    )?;
    Ok((n > 0).then_some(upto))
}

pub(super) fn of_user(c: &mut Conn, key: &str) -> Res<Vec<(ConvId, Seq)>> {
    let rows = c.query(
        "SELECT conv, upto FROM read_markers WHERE user_key = $1 ORDER BY conv",
        &[&key],
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some((
                ConvId::from_storage_key(r.get(0))?,
                r.get::<_, i64>(1) as Seq,
            ))
        })
        .collect())
}

pub(super) fn of_conv(c: &mut Conn, conv: &str) -> Res<Vec<(String, Seq)>> {
    let rows = c.query(
        "SELECT user_key, upto FROM read_markers WHERE conv = $1 ORDER BY user_key",
        &[&conv],
    )?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as Seq))
        .collect())
}

pub(super) fn forget_conv(c: &mut Conn, conv: &str) -> Res<()> {
    c.execute("DELETE FROM read_markers WHERE conv = $1", &[&conv])?;
    Ok(())
}

pub(super) fn set(c: &mut Conn, key: &str, on: bool) -> Res<()> {
    c.execute(
        "INSERT INTO receipt_settings (user_key, receipts) VALUES ($1, $2)
         ON CONFLICT (user_key) DO UPDATE SET receipts = excluded.receipts",
        &[&key, &on],
    )?;
    Ok(())
}

pub(super) fn get(c: &mut Conn, key: &str) -> Res<bool> {
    let row = c.query_opt(
        "SELECT receipts FROM receipt_settings WHERE user_key = $1",
        &[&key],
    )?;
    Ok(row.is_none_or(|r| r.get::<_, bool>(0)))
}
