//! MLS delivery-service state in PostgreSQL: the same tables and rules as SQLite's
//! (src/store/mls.rs). Claiming a key package deletes it in one statement, so two nodes
//! never hand out the same one.

use super::{Conn, Res, big};
use crate::app::ids::ClientMsgId;
use crate::app::store::MAX_KEY_PACKAGES;

/// Migration 8.
pub(super) const MIGRATION: &str = "CREATE TABLE mls_devices (
        user_key TEXT NOT NULL,
        device TEXT NOT NULL,
        sig_key BYTEA NOT NULL,
        PRIMARY KEY (user_key, device)
     );
     CREATE TABLE mls_key_packages (
        id BIGSERIAL PRIMARY KEY,
        user_key TEXT NOT NULL,
        device TEXT NOT NULL,
        package BYTEA NOT NULL
     );
     CREATE INDEX mls_key_packages_device ON mls_key_packages (user_key, device, id);
     CREATE TABLE mls_epochs (
        conv TEXT PRIMARY KEY,
        epoch BIGINT NOT NULL,
        cmid BYTEA NOT NULL
     );";

/// Migration 9: last-resort key packages and claim counts (as SQLite's migration 10).
pub(super) const MIGRATION_LAST_RESORT: &str = "CREATE TABLE mls_last_resort (
        user_key TEXT NOT NULL,
        device TEXT NOT NULL,
        package BYTEA NOT NULL,
        PRIMARY KEY (user_key, device)
     );
     CREATE TABLE mls_claims (
        claimer TEXT NOT NULL,
        owner TEXT NOT NULL,
        at BIGINT NOT NULL
     );
     CREATE INDEX mls_claims_pair ON mls_claims (claimer, owner, at);";

/// Migration 10: removed devices (as SQLite's migration 11).
pub(super) const MIGRATION_REMOVED: &str = "CREATE TABLE mls_removed_devices (
        user_key TEXT NOT NULL,
        device TEXT NOT NULL,
        PRIMARY KEY (user_key, device)
     );";

pub(super) fn put_device(c: &mut Conn, user: &str, device: &str, key: &[u8]) -> Res<bool> {
    let n = c.execute(
        "INSERT INTO mls_devices (user_key, device, sig_key) VALUES ($1, $2, $3)
         ON CONFLICT (user_key, device) DO UPDATE SET sig_key = excluded.sig_key
         WHERE excluded.sig_key <> mls_devices.sig_key",
        &[&user, &device, &key],
    )?;
    Ok(n > 0)
}

pub(super) fn remove_device(c: &mut Conn, user: &str, device: &str) -> Res<bool> {
    c.execute(
        "DELETE FROM mls_key_packages WHERE user_key = $1 AND device = $2",
        &[&user, &device],
    )?;
    c.execute(
        "DELETE FROM mls_last_resort WHERE user_key = $1 AND device = $2",
        &[&user, &device],
    )?;
    let n = c.execute(
        "DELETE FROM mls_devices WHERE user_key = $1 AND device = $2",
        &[&user, &device],
    )?;
    if n > 0 {
        c.execute(
            "INSERT INTO mls_removed_devices (user_key, device) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            &[&user, &device],
        )?;
    }
    Ok(n > 0)
}

pub(super) fn device_removed(c: &mut Conn, user: &str, device: &str) -> Res<bool> {
    Ok(c.query_opt(
        "SELECT 1 FROM mls_removed_devices WHERE user_key = $1 AND device = $2",
        &[&user, &device],
    )?
    .is_some())
}

pub(super) fn devices(c: &mut Conn, user: &str) -> Res<Vec<(String, Vec<u8>)>> {
    let rows = c.query(
        "SELECT device, sig_key FROM mls_devices WHERE user_key = $1 ORDER BY device",
        &[&user],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(super) fn add_key_packages(
    c: &mut Conn,
    user: &str,
    device: &str,
    packages: &[Vec<u8>],
) -> Res<()> {
    for p in packages {
        c.execute(
            "INSERT INTO mls_key_packages (user_key, device, package) VALUES ($1, $2, $3)",
            &[&user, &device, p],
        )?;
    }
    c.execute(
        "DELETE FROM mls_key_packages WHERE user_key = $1 AND device = $2 AND id NOT IN
         (SELECT id FROM mls_key_packages WHERE user_key = $1 AND device = $2
          ORDER BY id DESC LIMIT $3)",
        &[&user, &device, &(MAX_KEY_PACKAGES as i64)],
    )?;
    Ok(())
}

pub(super) fn claim_key_package(c: &mut Conn, user: &str, device: &str) -> Res<Option<Vec<u8>>> {
    let row = c.query_opt(
        "DELETE FROM mls_key_packages WHERE id =
         (SELECT id FROM mls_key_packages WHERE user_key = $1 AND device = $2
          ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING package",
        &[&user, &device],
    )?;
    Ok(row.map(|r| r.get(0)))
}

pub(super) fn epoch(c: &mut Conn, conv: &str) -> Res<(u64, Option<ClientMsgId>)> {
    let row = c.query_opt(
        "SELECT epoch, cmid FROM mls_epochs WHERE conv = $1",
        &[&conv],
    )?;
    Ok(match row {
        Some(r) => (
            r.get::<_, i64>(0) as u64,
            r.get::<_, Vec<u8>>(1).try_into().ok().map(ClientMsgId),
        ),
        None => (0, None),
    })
}

pub(super) fn set_epoch(c: &mut Conn, conv: &str, epoch: u64, cmid: ClientMsgId) -> Res<()> {
    c.execute(
        "INSERT INTO mls_epochs (conv, epoch, cmid) VALUES ($1, $2, $3)
         ON CONFLICT (conv) DO UPDATE SET epoch = excluded.epoch, cmid = excluded.cmid",
        &[&conv, &big(epoch), &&cmid.0[..]],
    )?;
    Ok(())
}

pub(super) fn put_last_resort(c: &mut Conn, user: &str, device: &str, package: &[u8]) -> Res<()> {
    c.execute(
        "INSERT INTO mls_last_resort (user_key, device, package) VALUES ($1, $2, $3)
         ON CONFLICT (user_key, device) DO UPDATE SET package = excluded.package",
        &[&user, &device, &package],
    )?;
    Ok(())
}

pub(super) fn last_resort(c: &mut Conn, user: &str, device: &str) -> Res<Option<Vec<u8>>> {
    let row = c.query_opt(
        "SELECT package FROM mls_last_resort WHERE user_key = $1 AND device = $2",
        &[&user, &device],
    )?;
    Ok(row.map(|r| r.get(0)))
}

pub(super) fn claims(c: &mut Conn, claimer: &str, owner: &str, since: u64) -> Res<u64> {
    let row = c.query_one(
        "SELECT COUNT(*) FROM mls_claims WHERE claimer = $1 AND owner = $2 AND at >= $3",
        &[&claimer, &owner, &big(since)],
    )?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

pub(super) fn note_claim(
    c: &mut Conn,
    claimer: &str,
    owner: &str,
    at: u64,
    forget_before: u64,
) -> Res<()> {
    c.execute(
        "DELETE FROM mls_claims WHERE claimer = $1 AND owner = $2 AND at < $3",
        &[&claimer, &owner, &big(forget_before)],
    )?;
    c.execute(
        "INSERT INTO mls_claims (claimer, owner, at) VALUES ($1, $2, $3)",
        &[&claimer, &owner, &big(at)],
    )?;
    Ok(())
}
