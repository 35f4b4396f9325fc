//! Persistence behind the app's `Store` trait: SQLite (rusqlite, bundled), the embedded
//! default, and with the `postgres` feature PostgreSQL. Users, conversation events, hides,
//! identity keys and rooms.
//!
//! SQLite: WAL with `synchronous=FULL`, so a committed transaction survives a crash or power loss;
//! `secure_delete=ON`, so an erased body is overwritten rather than left in a free page,
//! and a commit that erased a body is followed by a truncating checkpoint, so the old
//! page images in the WAL are gone from disk too (the WAL keeps every version of a page
//! until it is checkpointed and truncated; a server killed before that truncates it on
//! its next start). Temporary tables and sorts stay in memory (`temp_store=MEMORY`).
//! The hub wraps each batch of core calls in [`SqliteStore::begin`] / [`SqliteStore::commit`]
//! (group commit) and acknowledges only after the commit is durable: the server moves the
//! WAL's sync to its committer thread ([`SqliteStore::split_durability`], pipelined group
//! commit) so the hub handles the next batch meanwhile.
//!
//! With the `postgres` feature, [`PgStore`] keeps the same data in PostgreSQL for cluster
//! mode, where several nodes share one database (docs/SCALING.md).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::app::ids::{ClientMsgId, ConvId, MsgId, Seq, skeleton_of};
use crate::app::protocol::{ConvEvent, EventKind, Hidden};
use crate::app::store::{
    Durability, Reacted, ReactionChange, ResumeRecord, Store, StoreError, StoreResult, StoredEvent,
    StoredRoom, UserRecord,
};

mod edits;
mod mls;
#[cfg(feature = "postgres")]
mod postgres;
mod receipts;
mod rooms;
mod search;
mod wal_sync;

pub use search::fts5_match;

#[cfg(feature = "postgres")]
pub use postgres::PgBlobs;
#[cfg(feature = "postgres")]
pub use postgres::PgStore;

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE users (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        skeleton TEXT NOT NULL UNIQUE,
        phc TEXT NOT NULL,
        created INTEGER NOT NULL
     );
     CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conv TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind INTEGER NOT NULL,           -- 0 message, 1 erased message, 2 tombstone
        sender TEXT NOT NULL,
        sender_key TEXT NOT NULL,
        cmid BLOB NOT NULL,
        body BLOB,
        target INTEGER,
        ts INTEGER NOT NULL,
        UNIQUE (conv, seq)
     );
     CREATE UNIQUE INDEX events_cmid ON events (sender_key, cmid) WHERE kind != 2;
     CREATE TABLE members (
        conv TEXT NOT NULL,
        user_key TEXT NOT NULL,
        PRIMARY KEY (user_key, conv)
     );
     CREATE TABLE hidden (
        user_key TEXT NOT NULL,
        hseq INTEGER NOT NULL,
        msg_id INTEGER NOT NULL,
        conv TEXT NOT NULL,
        PRIMARY KEY (user_key, hseq),
        UNIQUE (user_key, msg_id)
     );",
    // 2: identity keys for end-to-end private messages.
    "ALTER TABLE users ADD COLUMN identity_key BLOB;",
    // 3: look-alike skeletons ignore separators (`ali.ce` ~ `alice`); recomputed in Rust
    // by `recompute_skeletons`.
    "",
    // 4: rooms users create (`crate::app::rooms`). A room's messages live in `events`
    // under its key (`#design`), like `#general`'s; closing a room deletes its rows and
    // its history, which frees the name.
    "CREATE TABLE rooms (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        skeleton TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        visibility INTEGER NOT NULL,     -- 0 public, 1 private
        created INTEGER NOT NULL
     );
     CREATE TABLE room_members (
        room TEXT NOT NULL REFERENCES rooms (key) ON DELETE CASCADE,
        user_key TEXT NOT NULL,
        role INTEGER NOT NULL,           -- 0 member, 1 moderator, 2 owner
        joined_at INTEGER NOT NULL,      -- the room's last seq when they joined
        since INTEGER NOT NULL,          -- joining order, for handing over ownership
        PRIMARY KEY (room, user_key)
     );
     CREATE INDEX room_members_user ON room_members (user_key);
     CREATE TABLE room_invites (
        room TEXT NOT NULL REFERENCES rooms (key) ON DELETE CASCADE,
        user_key TEXT NOT NULL,
        inviter TEXT NOT NULL,
        PRIMARY KEY (room, user_key)
     );
     CREATE TABLE room_bans (
        room TEXT NOT NULL REFERENCES rooms (key) ON DELETE CASCADE,
        user_key TEXT NOT NULL,
        PRIMARY KEY (room, user_key)
     );",
    // 5: login resumption tokens, by their SHA-256 (the token itself is never stored).
    "CREATE TABLE resume_tokens (
        hash BLOB PRIMARY KEY,
        user_key TEXT NOT NULL,
        identity_key BLOB NOT NULL,
        expires INTEGER NOT NULL
     );
     CREATE INDEX resume_tokens_expires ON resume_tokens (expires);",
    // 6: edits and reactions (src/store/edits.rs): events of kind 3 (edited message), 4 (edit),
    // 5/6 (reaction added/removed); the reactions in force, one per user, message and key.
    "CREATE TABLE reactions (
        target INTEGER NOT NULL,
        user_key TEXT NOT NULL,
        rkey BLOB NOT NULL,
        event_id INTEGER NOT NULL,
        conv TEXT NOT NULL,
        PRIMARY KEY (target, user_key, rkey)
     );
     CREATE INDEX events_target ON events (target) WHERE target IS NOT NULL;",
    // 7: read markers (never move back) and seen-receipt settings (absent: on).
    "CREATE TABLE read_markers (
        user_key TEXT NOT NULL,
        conv TEXT NOT NULL,
        upto INTEGER NOT NULL,
        PRIMARY KEY (user_key, conv)
     );
     CREATE INDEX read_markers_conv ON read_markers (conv);
     CREATE TABLE receipt_settings (
        user_key TEXT PRIMARY KEY,
        receipts INTEGER NOT NULL
     );",
    // 8: full-text search over #general and rooms (src/store/search.rs).
    search::MIGRATION,
    // 9: MLS devices, key packages and group epochs (src/store/mls.rs).
    mls::MIGRATION,
    // 10: last-resort key packages and claim counts (src/store/mls.rs).
    mls::MIGRATION_LAST_RESORT,
    // 11: removed MLS devices, never announced again (src/store/mls.rs).
    mls::MIGRATION_REMOVED,
];

/// The migration after which every stored skeleton is [`skeleton_of`] its name.
const SKELETONS_WITHOUT_SEPARATORS: usize = 3;

/// Recomputes every user's skeleton with today's [`skeleton_of`]. Accounts registered
/// under an older rule may now share a skeleton: the oldest keeps it, the others get a
/// unique variant (`skeleton~key`) so they can still log in while no new look-alike of
/// any of them can register.
fn recompute_skeletons(tx: &rusqlite::Transaction<'_>) -> StoreResult<()> {
    let users: Vec<(String, String)> = tx
        .prepare("SELECT key, name FROM users ORDER BY created, rowid")
        .map_err(err)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    tx.execute("UPDATE users SET skeleton = '~' || key", [])
        .map_err(err)?;
    let mut taken = std::collections::HashSet::new();
    for (key, name) in users {
        let mut skeleton = skeleton_of(&name);
        if !taken.insert(skeleton.clone()) {
            skeleton = format!("{skeleton}~{key}");
        }
        tx.execute(
            "UPDATE users SET skeleton = ?1 WHERE key = ?2",
            params![skeleton, key],
        )
        .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod erasure_tests;

/// A store error from a SQLite error. SQLite's `SQLITE_FULL` (the
/// disk or the database's size limit is full) becomes [`StoreError::full`], so the core can
/// answer `server_full` instead of `internal`.
fn err(e: rusqlite::Error) -> StoreError {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        StoreError::full(e.to_string())
    } else {
        StoreError::other(e.to_string())
    }
}

/// The server's SQLite database.
pub struct SqliteStore {
    db: Connection,
    in_tx: bool,
    /// A body was erased since the last truncating checkpoint.
    erased: bool,
}

impl SqliteStore {
    /// Opens (or creates) `livewire.db` in `data_dir` and applies migrations.
    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::other(format!("{}: {e}", data_dir.display())))?;
        let path = data_dir.join("livewire.db");
        let db = Connection::open(&path)
            .map_err(|e| StoreError::other(format!("{}: {e}", path.display())))?;
        Self::setup(db)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> StoreResult<Self> {
        Self::setup(Connection::open_in_memory().map_err(err)?)
    }

    fn setup(db: Connection) -> StoreResult<Self> {
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        // Every statement on the message path is prepared once and reused.
        db.set_prepared_statement_cache_capacity(64);
        // ... and stays prepared: without the query planner stability guarantee SQLite
        // (built with STAT4) re-prepared `SELECT MAX(seq) FROM events WHERE conv = ?1` at
        // every step whose `conv` differed from the last, a fifth of the hub's CPU per
        // private message (issue 14).
        db.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(err)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA secure_delete = ON;
             PRAGMA temp_store = MEMORY;
             PRAGMA foreign_keys = ON;",
        )
        .map_err(err)?;
        let mut store = Self {
            db,
            in_tx: false,
            erased: false,
        };
        store.migrate()?;
        // A server killed right after erasing a body left its old text in the WAL. On a
        // full disk the checkpoint may fail: the server still starts (it serves reads),
        // and the next erase's commit tries again.
        if let Err(e) = store.checkpoint() {
            tracing::warn!("could not checkpoint the database at start: {e}");
            store.erased = true;
        }
        Ok(store)
    }

    fn migrate(&mut self) -> StoreResult<()> {
        let version: usize = self
            .db
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map_err(err)? as usize;
        if version > MIGRATIONS.len() {
            return Err(StoreError::other(format!(
                "the database has schema version {version}, newer than this LiveWire ({}); upgrade LiveWire",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.db.transaction().map_err(err)?;
            tx.execute_batch(sql).map_err(err)?;
            if i + 1 == SKELETONS_WITHOUT_SEPARATORS {
                recompute_skeletons(&tx)?;
            }
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(())
    }

    /// Starts a batch transaction.
    pub fn begin(&mut self) -> StoreResult<()> {
        if !self.in_tx {
            self.db
                .prepare_cached("BEGIN IMMEDIATE")
                .map_err(err)?
                .execute([])
                .map_err(err)?;
            self.in_tx = true;
        }
        Ok(())
    }

    /// Switches to pipelined group commit (see [`Store::split_durability`]): commits
    /// stop waiting for the disk (`synchronous = NORMAL`) and the returned [`WalSync`]
    /// syncs the WAL on the caller's committer thread. `None` for an in-memory database.
    pub fn split_durability(&mut self) -> StoreResult<Option<Box<dyn Durability>>> {
        let Some(path) = self.db.path().filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let path = std::path::PathBuf::from(path);
        self.db
            .execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(err)?;
        Ok(Some(Box::new(wal_sync::WalSync::new(path))))
    }

    /// Commits the batch (durable once this returns, unless [`Self::split_durability`]
    /// moved that to its [`Durability`]).
    pub fn commit(&mut self) -> StoreResult<()> {
        if self.in_tx {
            self.in_tx = false;
            if let Err(e) = self
                .db
                .prepare_cached("COMMIT")
                .and_then(|mut c| c.execute([]))
            {
                let _ = self.db.execute_batch("ROLLBACK");
                return Err(err(e));
            }
            self.scrub_erased();
        }
        Ok(())
    }

    /// After a committed erase, removes the erased text's old page images from the WAL.
    /// The erase itself is durable either way; a failure here is retried after the next
    /// erase and at the next start.
    fn scrub_erased(&mut self) {
        if self.erased {
            match self.checkpoint() {
                Ok(()) => self.erased = false,
                Err(e) => tracing::warn!("could not truncate the WAL after an erase: {e}"),
            }
        }
    }

    /// Copies the WAL into the main file and truncates it (used before reading the file
    /// in tests, and at shutdown).
    pub fn checkpoint(&mut self) -> StoreResult<()> {
        self.db
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .map_err(err)
    }

    fn row_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, ConvEvent)> {
        let kind: i64 = r.get("kind")?;
        let cmid: Vec<u8> = r.get("cmid")?;
        let mut id = [0u8; 16];
        if cmid.len() == 16 {
            id.copy_from_slice(&cmid);
        }
        let kind = edits::kind_of(kind, r.get("body")?, r.get("target")?);
        Ok((
            r.get("conv")?,
            ConvEvent {
                seq: r.get::<_, i64>("seq")? as u64,
                id: r.get::<_, i64>("id")? as u64,
                ts: r.get::<_, i64>("ts")? as u64,
                sender: r.get("sender")?,
                cmid: ClientMsgId(id),
                kind,
                mentions: Vec::new(),
            },
        ))
    }

    fn append(
        &mut self,
        conv: &ConvId,
        sender: &str,
        cmid: ClientMsgId,
        ts: u64,
        kind: &EventKind,
    ) -> StoreResult<ConvEvent> {
        let key = conv.storage_key();
        let seq = self.last_seq(conv)? + 1;
        let (k, body, target) = edits::kind_columns(kind);
        self.db
            .prepare_cached(
                "INSERT INTO events (conv, seq, kind, sender, sender_key, cmid, body, target, ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .map_err(err)?
            .execute(params![
                key,
                seq as i64,
                k,
                sender,
                sender.to_ascii_lowercase(),
                &cmid.0[..],
                body,
                target,
                ts as i64
            ])
            .map_err(err)?;
        let id = self.db.last_insert_rowid() as u64;
        if let ConvId::Direct(a, b) = conv {
            for m in [a, b] {
                self.db
                    .prepare_cached(
                        "INSERT OR IGNORE INTO members (conv, user_key) VALUES (?1, ?2)",
                    )
                    .map_err(err)?
                    .execute(params![key, m])
                    .map_err(err)?;
            }
        }
        Ok(ConvEvent {
            seq,
            id,
            ts,
            sender: sender.to_owned(),
            cmid,
            kind: kind.clone(),
            mentions: Vec::new(),
        })
    }

    fn query_events(
        &mut self,
        sql: &str,
        conv: &ConvId,
        bound: Seq,
        limit: usize,
        viewer: &str,
    ) -> StoreResult<Vec<ConvEvent>> {
        let mut stmt = self.db.prepare_cached(sql).map_err(err)?;
        let rows = stmt
            .query_map(
                params![
                    conv.storage_key(),
                    bound.min(i64::MAX as u64) as i64,
                    limit as i64,
                    viewer
                ],
                Self::row_event,
            )
            .map_err(err)?;
        rows.map(|r| r.map(|(_, e)| e).map_err(err)).collect()
    }
}

impl Store for SqliteStore {
    fn begin(&mut self) -> StoreResult<()> {
        SqliteStore::begin(self)
    }

    fn commit(&mut self) -> StoreResult<()> {
        SqliteStore::commit(self)
    }

    fn checkpoint(&mut self) -> StoreResult<()> {
        SqliteStore::checkpoint(self)
    }

    fn split_durability(&mut self) -> StoreResult<Option<Box<dyn Durability>>> {
        SqliteStore::split_durability(self)
    }

    fn user(&mut self, key: &str) -> StoreResult<Option<UserRecord>> {
        self.db
            .prepare_cached("SELECT name, phc FROM users WHERE key = ?1")
            .map_err(err)?
            .query_row([key], |r| {
                Ok(UserRecord {
                    name: r.get(0)?,
                    phc: r.get(1)?,
                })
            })
            .optional()
            .map_err(err)
    }

    fn skeleton_taken(&mut self, skeleton: &str, key: &str) -> StoreResult<bool> {
        self.db
            .prepare_cached("SELECT 1 FROM users WHERE skeleton = ?1 AND key != ?2")
            .map_err(err)?
            .query_row([skeleton, key], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
            .map_err(err)
    }

    fn create_user(
        &mut self,
        name: &str,
        key: &str,
        skeleton: &str,
        phc: &str,
    ) -> StoreResult<bool> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let n = self
            .db.prepare_cached("INSERT OR IGNORE INTO users (key, name, skeleton, phc, created) VALUES (?1, ?2, ?3, ?4, ?5)").map_err(err)?.execute(params![key, name, skeleton, phc, now],
            )
            .map_err(err)?;
        Ok(n == 1)
    }

    fn set_identity_key(&mut self, key: &str, public: [u8; 32]) -> StoreResult<Option<[u8; 32]>> {
        let old = self.identity_key(key)?;
        if old == Some(public) {
            // No write on an ordinary login: a server whose disk is full still lets
            // people in to read.
            return Ok(old);
        }
        self.db
            .prepare_cached("UPDATE users SET identity_key = ?1 WHERE key = ?2")
            .map_err(err)?
            .execute(params![&public[..], key])
            .map_err(err)?;
        Ok(old)
    }

    fn put_resume_token(
        &mut self,
        hash: &[u8; 32],
        record: &ResumeRecord,
        now_ms: u64,
    ) -> StoreResult<()> {
        self.db
            .prepare_cached("DELETE FROM resume_tokens WHERE expires <= ?1")
            .map_err(err)?
            .execute([now_ms as i64])
            .map_err(err)?;
        self.db
            .prepare_cached(
                "INSERT OR REPLACE INTO resume_tokens (hash, user_key, identity_key, expires)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(err)?
            .execute(params![
                &hash[..],
                record.user_key,
                &record.identity_pub[..],
                record.expires_ms as i64
            ])
            .map_err(err)?;
        Ok(())
    }

    fn take_resume_token(&mut self, hash: &[u8; 32]) -> StoreResult<Option<ResumeRecord>> {
        let row: Option<(String, Vec<u8>, i64)> = self
            .db
            .prepare_cached(
                "DELETE FROM resume_tokens WHERE hash = ?1
                 RETURNING user_key, identity_key, expires",
            )
            .map_err(err)?
            .query_row([&hash[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .map_err(err)?;
        Ok(row.and_then(|(user_key, id, expires)| {
            Some(ResumeRecord {
                user_key,
                identity_pub: id.try_into().ok()?,
                expires_ms: expires as u64,
            })
        }))
    }

    fn identity_key(&mut self, key: &str) -> StoreResult<Option<[u8; 32]>> {
        let blob: Option<Option<Vec<u8>>> = self
            .db
            .prepare_cached("SELECT identity_key FROM users WHERE key = ?1")
            .map_err(err)?
            .query_row([key], |r| r.get(0))
            .optional()
            .map_err(err)?;
        Ok(blob.flatten().and_then(|b| b.try_into().ok()))
    }

    fn insert_message(
        &mut self,
        conv: &ConvId,
        sender: &str,
        cmid: ClientMsgId,
        body: &[u8],
        ts: u64,
    ) -> StoreResult<(ConvEvent, bool)> {
        if let Some(e) = self.by_cmid(sender, cmid)? {
            return Ok((e, true));
        }
        let e = self.append(
            conv,
            sender,
            cmid,
            ts,
            &EventKind::Message {
                body: body.to_vec(),
            },
        )?;
        Ok((e, false))
    }

    fn event(&mut self, id: MsgId) -> StoreResult<Option<StoredEvent>> {
        let row = self
            .db
            .prepare_cached("SELECT * FROM events WHERE id = ?1")
            .map_err(err)?
            .query_row([id as i64], Self::row_event)
            .optional()
            .map_err(err)?;
        Ok(row.and_then(|(conv, event)| {
            ConvId::from_storage_key(&conv).map(|conv| StoredEvent { conv, event })
        }))
    }

    fn erase(&mut self, id: MsgId, cmid: ClientMsgId, ts: u64) -> StoreResult<ConvEvent> {
        let stored = self
            .event(id)?
            .ok_or_else(|| StoreError::other("no such message"))?;
        self.db
            .prepare_cached("UPDATE events SET kind = 1, body = NULL WHERE id = ?1")
            .map_err(err)?
            .execute([id as i64])
            .map_err(err)?;
        self.erased = true;
        let tombstone = self.append(
            &stored.conv,
            &stored.event.sender,
            cmid,
            ts,
            &EventKind::Tombstone { target: id },
        )?;
        if !self.in_tx {
            self.scrub_erased();
        }
        Ok(tombstone)
    }

    fn events_after(
        &mut self,
        conv: &ConvId,
        after: Seq,
        limit: usize,
        viewer: &str,
    ) -> StoreResult<Vec<ConvEvent>> {
        self.query_events(
            "SELECT * FROM events WHERE conv = ?1 AND seq > ?2
               AND id NOT IN (SELECT msg_id FROM hidden WHERE user_key = ?4)
             ORDER BY seq LIMIT ?3",
            conv,
            after,
            limit,
            viewer,
        )
    }

    fn events_before(
        &mut self,
        conv: &ConvId,
        before: Seq,
        limit: usize,
        viewer: &str,
    ) -> StoreResult<Vec<ConvEvent>> {
        let mut v = self.query_events(
            "SELECT * FROM events WHERE conv = ?1 AND seq < ?2
               AND id NOT IN (SELECT msg_id FROM hidden WHERE user_key = ?4)
             ORDER BY seq DESC LIMIT ?3",
            conv,
            before,
            limit,
            viewer,
        )?;
        v.reverse();
        Ok(v)
    }

    fn last_seq(&mut self, conv: &ConvId) -> StoreResult<Seq> {
        self.db
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events WHERE conv = ?1")
            .map_err(err)?
            .query_row([conv.storage_key()], |r| r.get::<_, i64>(0))
            .map(|s| s as u64)
            .map_err(err)
    }

    fn conversations(&mut self, key: &str) -> StoreResult<Vec<(ConvId, Seq)>> {
        let mut convs = vec![ConvId::General];
        let mut stmt = self
            .db
            .prepare_cached(
                "SELECT conv FROM members WHERE user_key = ?1
                 UNION ALL SELECT room FROM room_members WHERE user_key = ?1",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([key], |r| r.get::<_, String>(0))
            .map_err(err)?;
        for r in rows {
            if let Some(c) = ConvId::from_storage_key(&r.map_err(err)?) {
                convs.push(c);
            }
        }
        drop(stmt);
        convs
            .into_iter()
            .map(|c| self.last_seq(&c).map(|s| (c, s)))
            .collect()
    }

    fn load_rooms(&mut self) -> StoreResult<Vec<StoredRoom>> {
        rooms::load(&self.db)
    }

    fn create_room(&mut self, room: &crate::app::rooms::Room) -> StoreResult<bool> {
        rooms::create(&self.db, room)
    }

    fn room_changed(
        &mut self,
        room: &crate::app::rooms::Room,
        effects: &[crate::app::rooms::Effect],
        by: &str,
    ) -> StoreResult<()> {
        if effects.contains(&crate::app::rooms::Effect::Closed) {
            receipts::forget_conv(&self.db, &ConvId::Room(room.name.key()))?;
        }
        if rooms::changed(&self.db, room, effects, by)? {
            // The closed room's history was deleted: scrub it from the WAL too.
            self.erased = true;
            if !self.in_tx {
                self.scrub_erased();
            }
        }
        Ok(())
    }

    fn hide(&mut self, key: &str, conv: &ConvId, id: MsgId) -> StoreResult<Option<u64>> {
        let exists = self
            .db
            .prepare_cached("SELECT 1 FROM hidden WHERE user_key = ?1 AND msg_id = ?2")
            .map_err(err)?
            .query_row(params![key, id as i64], |_| Ok(()))
            .optional()
            .map_err(err)?;
        if exists.is_some() {
            return Ok(None);
        }
        let hseq: i64 = self
            .db
            .prepare_cached("SELECT COALESCE(MAX(hseq), 0) + 1 FROM hidden WHERE user_key = ?1")
            .map_err(err)?
            .query_row([key], |r| r.get(0))
            .map_err(err)?;
        self.db
            .prepare_cached(
                "INSERT INTO hidden (user_key, hseq, msg_id, conv) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(err)?
            .execute(params![key, hseq, id as i64, conv.storage_key()])
            .map_err(err)?;
        Ok(Some(hseq as u64))
    }

    fn search(
        &mut self,
        query: &crate::app::search::SearchQuery,
        scopes: &[crate::app::search::SearchScope],
        viewer: &str,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        search::search(&self.db, query, scopes, viewer, limit)
    }

    fn hidden_after(&mut self, key: &str, after: u64) -> StoreResult<Vec<Hidden>> {
        let mut stmt = self
            .db
            .prepare_cached("SELECT conv, msg_id, hseq FROM hidden WHERE user_key = ?1 AND hseq > ?2 ORDER BY hseq")
            .map_err(err)?;
        let rows = stmt
            .query_map(params![key, after.min(i64::MAX as u64) as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(err)?;
        let mut out = Vec::new();
        for r in rows {
            let (conv, id, hseq) = r.map_err(err)?;
            if let Some(conv) = ConvId::from_storage_key(&conv) {
                out.push(Hidden {
                    conv,
                    id: id as u64,
                    hseq: hseq as u64,
                });
            }
        }
        Ok(out)
    }

    fn edit_message(
        &mut self,
        target: MsgId,
        editor: &str,
        cmid: ClientMsgId,
        body: &[u8],
        ts: u64,
    ) -> StoreResult<(ConvEvent, bool)> {
        self.edit_message_impl(target, editor, cmid, body, ts)
    }

    fn erase_edits(&mut self, target: MsgId) -> StoreResult<()> {
        self.erase_edits_impl(target)
    }

    fn react(&mut self, change: &ReactionChange<'_>) -> StoreResult<Reacted> {
        self.react_impl(change)
    }

    fn reactions(&mut self, conv: &ConvId, targets: &[MsgId]) -> StoreResult<Vec<ConvEvent>> {
        self.reactions_impl(conv, targets)
    }

    fn advance_read(&mut self, key: &str, conv: &ConvId, upto: Seq) -> StoreResult<Option<Seq>> {
        receipts::advance(&self.db, key, conv, upto)
    }

    fn read_markers(&mut self, key: &str) -> StoreResult<Vec<(ConvId, Seq)>> {
        receipts::of_user(&self.db, key)
    }

    fn conv_read_markers(&mut self, conv: &ConvId) -> StoreResult<Vec<(String, Seq)>> {
        receipts::of_conv(&self.db, conv)
    }

    fn set_receipts(&mut self, key: &str, on: bool) -> StoreResult<()> {
        receipts::set(&self.db, key, on)
    }

    fn receipts(&mut self, key: &str) -> StoreResult<bool> {
        receipts::get(&self.db, key)
    }

    fn put_device(&mut self, user: &str, device: &str, key: &[u8]) -> StoreResult<bool> {
        mls::put_device(&self.db, user, device, key)
    }

    fn remove_device(&mut self, user: &str, device: &str) -> StoreResult<bool> {
        mls::remove_device(&self.db, user, device)
    }

    fn device_removed(&mut self, user: &str, device: &str) -> StoreResult<bool> {
        mls::device_removed(&self.db, user, device)
    }

    fn devices(&mut self, user: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
        mls::devices(&self.db, user)
    }

    fn add_key_packages(
        &mut self,
        user: &str,
        device: &str,
        packages: &[Vec<u8>],
    ) -> StoreResult<()> {
        mls::add_key_packages(&self.db, user, device, packages)
    }

    fn claim_key_package(&mut self, user: &str, device: &str) -> StoreResult<Option<Vec<u8>>> {
        mls::claim_key_package(&self.db, user, device)
    }

    fn put_last_resort_key_package(
        &mut self,
        user: &str,
        device: &str,
        package: &[u8],
    ) -> StoreResult<()> {
        mls::put_last_resort(&self.db, user, device, package)
    }

    fn last_resort_key_package(
        &mut self,
        user: &str,
        device: &str,
    ) -> StoreResult<Option<Vec<u8>>> {
        mls::last_resort(&self.db, user, device)
    }

    fn key_package_claims(&mut self, claimer: &str, owner: &str, since: u64) -> StoreResult<u64> {
        mls::claims(&self.db, claimer, owner, since)
    }

    fn note_key_package_claim(
        &mut self,
        claimer: &str,
        owner: &str,
        at: u64,
        forget_before: u64,
    ) -> StoreResult<()> {
        mls::note_claim(&self.db, claimer, owner, at, forget_before)
    }

    fn mls_epoch(&mut self, conv: &ConvId) -> StoreResult<(u64, Option<ClientMsgId>)> {
        mls::epoch(&self.db, conv)
    }

    fn set_mls_epoch(&mut self, conv: &ConvId, epoch: u64, cmid: ClientMsgId) -> StoreResult<()> {
        mls::set_epoch(&self.db, conv, epoch, cmid)
    }
}

// The `Store` contract (sequences, exactly-once, pages, erase, hides, accounts) runs against
// this store from tests/store_contract.rs; what is checked here is SQLite's own.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_keeps_data_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = SqliteStore::open(dir.path()).unwrap();
            s.begin().unwrap();
            s.insert_message(&ConvId::General, "a", ClientMsgId([1; 16]), b"x", 1)
                .unwrap();
            s.commit().unwrap();
        }
        let mut s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.last_seq(&ConvId::General).unwrap(), 1);
    }

    #[test]
    fn a_removed_mls_device_stays_removed_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = SqliteStore::open(dir.path()).unwrap();
            s.put_device("alice", "d2", b"key").unwrap();
            assert!(s.remove_device("alice", "d2").unwrap());
        }
        let mut s = SqliteStore::open(dir.path()).unwrap();
        assert!(s.device_removed("alice", "d2").unwrap());
        assert!(!s.device_removed("alice", "d1").unwrap());
    }
}
