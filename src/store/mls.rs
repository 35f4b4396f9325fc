//! MLS delivery-service state in SQLite (`crate::app::mls`): each user's devices with
//! their signature keys, the key packages devices published (each handed out once), and
//! the epoch of each private conversation's group (the server refuses a commit for any
//! other epoch). Key packages and keys are public material: no message text is here.

use rusqlite::{Connection, OptionalExtension, params};

use super::err;
use crate::app::ids::{ClientMsgId, ConvId};
use crate::app::store::{MAX_KEY_PACKAGES, StoreResult};

/// Migration 9.
pub(super) const MIGRATION: &str = "CREATE TABLE mls_devices (
        user_key TEXT NOT NULL,
        device TEXT NOT NULL,
        sig_key BLOB NOT NULL,
        PRIMARY KEY (user_key, device)
     );
     CREATE TABLE mls_key_packages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_key TEXT NOT NULL,
        device TEXT NOT NULL,
        package BLOB NOT NULL
     );
     CREATE INDEX mls_key_packages_device ON mls_key_packages (user_key, device, id);
     CREATE TABLE mls_epochs (
        conv TEXT PRIMARY KEY,
        epoch INTEGER NOT NULL,
        cmid BLOB NOT NULL
     );";

/// Migration 10: each device's last-resort key package (RFC 9420 §16.8, never deleted by
/// a claim) and the one-time packages each user took of each other user's devices, by
/// time (the per-claimer limit, `crate::app::server` `key_packages.rs`).
pub(super) const MIGRATION_LAST_RESORT: &str = "CREATE TABLE mls_last_resort (
        user_key TEXT NOT NULL,
        device TEXT NOT NULL,
        package BLOB NOT NULL,
        PRIMARY KEY (user_key, device)
     );
     CREATE TABLE mls_claims (
        claimer TEXT NOT NULL,
        owner TEXT NOT NULL,
        at INTEGER NOT NULL
     );
     CREATE INDEX mls_claims_pair ON mls_claims (claimer, owner, at);";

/// Migration 11: devices removed from their account (`Store::remove_device`), which can
/// never announce themselves again.
pub(super) const MIGRATION_REMOVED: &str = "CREATE TABLE mls_removed_devices (
        user_key TEXT NOT NULL,
        device TEXT NOT NULL,
        PRIMARY KEY (user_key, device)
     );";

pub(super) fn put_device(
    db: &Connection,
    user: &str,
    device: &str,
    key: &[u8],
) -> StoreResult<bool> {
    let n = db
        .prepare_cached(
            "INSERT INTO mls_devices (user_key, device, sig_key) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_key, device) DO UPDATE SET sig_key = excluded.sig_key
             WHERE excluded.sig_key != mls_devices.sig_key",
        )
        .map_err(err)?
        .execute(params![user, device, key])
        .map_err(err)?;
    Ok(n > 0)
}

pub(super) fn remove_device(db: &Connection, user: &str, device: &str) -> StoreResult<bool> {
    db.prepare_cached("DELETE FROM mls_key_packages WHERE user_key = ?1 AND device = ?2")
        .map_err(err)?
        .execute(params![user, device])
        .map_err(err)?;
    db.prepare_cached("DELETE FROM mls_last_resort WHERE user_key = ?1 AND device = ?2")
        .map_err(err)?
        .execute(params![user, device])
        .map_err(err)?;
    let n = db
        .prepare_cached("DELETE FROM mls_devices WHERE user_key = ?1 AND device = ?2")
        .map_err(err)?
        .execute(params![user, device])
        .map_err(err)?;
    if n > 0 {
        db.prepare_cached(
            "INSERT INTO mls_removed_devices (user_key, device) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING",
        )
        .map_err(err)?
        .execute(params![user, device])
        .map_err(err)?;
    }
    Ok(n > 0)
}

pub(super) fn device_removed(db: &Connection, user: &str, device: &str) -> StoreResult<bool> {
    db.prepare_cached("SELECT 1 FROM mls_removed_devices WHERE user_key = ?1 AND device = ?2")
        .map_err(err)?
        .query_row(params![user, device], |_| Ok(()))
        .optional()
        .map_err(err)
        .map(|r| r.is_some())
}

pub(super) fn devices(db: &Connection, user: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
    let mut stmt = db
        .prepare_cached(
            "SELECT device, sig_key FROM mls_devices WHERE user_key = ?1 ORDER BY device",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(err)?;
    rows.map(|r| r.map_err(err)).collect()
}

pub(super) fn add_key_packages(
    db: &Connection,
    user: &str,
    device: &str,
    packages: &[Vec<u8>],
) -> StoreResult<()> {
    for p in packages {
        db.prepare_cached(
            "INSERT INTO mls_key_packages (user_key, device, package) VALUES (?1, ?2, ?3)",
        )
        .map_err(err)?
        .execute(params![user, device, p])
        .map_err(err)?;
    }
    db.prepare_cached(
        "DELETE FROM mls_key_packages WHERE user_key = ?1 AND device = ?2 AND id NOT IN
         (SELECT id FROM mls_key_packages WHERE user_key = ?1 AND device = ?2
          ORDER BY id DESC LIMIT ?3)",
    )
    .map_err(err)?
    .execute(params![user, device, MAX_KEY_PACKAGES as i64])
    .map_err(err)?;
    Ok(())
}

pub(super) fn claim_key_package(
    db: &Connection,
    user: &str,
    device: &str,
) -> StoreResult<Option<Vec<u8>>> {
    db.prepare_cached(
        "DELETE FROM mls_key_packages WHERE id =
         (SELECT id FROM mls_key_packages WHERE user_key = ?1 AND device = ?2 ORDER BY id LIMIT 1)
         RETURNING package",
    )
    .map_err(err)?
    .query_row(params![user, device], |r| r.get(0))
    .optional()
    .map_err(err)
}

pub(super) fn epoch(db: &Connection, conv: &ConvId) -> StoreResult<(u64, Option<ClientMsgId>)> {
    let row: Option<(i64, Vec<u8>)> = db
        .prepare_cached("SELECT epoch, cmid FROM mls_epochs WHERE conv = ?1")
        .map_err(err)?
        .query_row([conv.storage_key()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(err)?;
    Ok(match row {
        Some((e, c)) => (e as u64, c.try_into().ok().map(ClientMsgId)),
        None => (0, None),
    })
}

pub(super) fn set_epoch(
    db: &Connection,
    conv: &ConvId,
    epoch: u64,
    cmid: ClientMsgId,
) -> StoreResult<()> {
    db.prepare_cached(
        "INSERT INTO mls_epochs (conv, epoch, cmid) VALUES (?1, ?2, ?3)
         ON CONFLICT (conv) DO UPDATE SET epoch = excluded.epoch, cmid = excluded.cmid",
    )
    .map_err(err)?
    .execute(params![
        conv.storage_key(),
        epoch.min(i64::MAX as u64) as i64,
        &cmid.0[..]
    ])
    .map_err(err)?;
    Ok(())
}

pub(super) fn put_last_resort(
    db: &Connection,
    user: &str,
    device: &str,
    package: &[u8],
) -> StoreResult<()> {
    db.prepare_cached(
        "INSERT INTO mls_last_resort (user_key, device, package) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_key, device) DO UPDATE SET package = excluded.package",
    )
    .map_err(err)?
    .execute(params![user, device, package])
    .map_err(err)?;
    Ok(())
}

pub(super) fn last_resort(
    db: &Connection,
    user: &str,
    device: &str,
) -> StoreResult<Option<Vec<u8>>> {
    db.prepare_cached("SELECT package FROM mls_last_resort WHERE user_key = ?1 AND device = ?2")
        .map_err(err)?
        .query_row(params![user, device], |r| r.get(0))
        .optional()
        .map_err(err)
}

fn ms(t: u64) -> i64 {
    t.min(i64::MAX as u64) as i64
}

pub(super) fn claims(db: &Connection, claimer: &str, owner: &str, since: u64) -> StoreResult<u64> {
    let n: i64 = db
        .prepare_cached(
            "SELECT COUNT(*) FROM mls_claims WHERE claimer = ?1 AND owner = ?2 AND at >= ?3",
        )
        .map_err(err)?
        .query_row(params![claimer, owner, ms(since)], |r| r.get(0))
        .map_err(err)?;
    Ok(n.max(0) as u64)
}

pub(super) fn note_claim(
    db: &Connection,
    claimer: &str,
    owner: &str,
    at: u64,
    forget_before: u64,
) -> StoreResult<()> {
    db.prepare_cached("DELETE FROM mls_claims WHERE claimer = ?1 AND owner = ?2 AND at < ?3")
        .map_err(err)?
        .execute(params![claimer, owner, ms(forget_before)])
        .map_err(err)?;
    db.prepare_cached("INSERT INTO mls_claims (claimer, owner, at) VALUES (?1, ?2, ?3)")
        .map_err(err)?
        .execute(params![claimer, owner, ms(at)])
        .map_err(err)?;
    Ok(())
}
