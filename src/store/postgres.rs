//! Persistence in PostgreSQL, for cluster mode (feature `postgres`; docs/SCALING.md).
//!
//! [`PgStore`] implements the same [`Store`] contract as [`SqliteStore`](super::SqliteStore),
//! but several nodes may share one database, so whatever must be unique across nodes is
//! decided by the database inside the batch's transaction, never by a node's memory:
//!
//! - **Sequence numbers**: one counter row per conversation (`conv_seqs`), bumped with
//!   `INSERT … ON CONFLICT DO UPDATE … RETURNING`. The update takes the row's lock until
//!   the transaction ends, so a second node appending to the same conversation waits for
//!   the first one's commit and then continues from its number: no two nodes hand out the
//!   same sequence number, and a rolled-back batch gives its numbers back (no gaps).
//! - **Exactly-once**: a unique index on `(sender_key, cmid)` for messages. A resend that
//!   races the original on another node meets it in `INSERT … ON CONFLICT DO NOTHING`
//!   (which waits for the other transaction), returns the stored original, and gives back
//!   the sequence number it had taken.
//! - **Hide counters**: the same counter-row scheme per user (`hide_seqs`).
//!
//! The isolation level stays READ COMMITTED: the counter rows serialise exactly the writers
//! that must be serialised (appends to one conversation, hides of one user) and nothing
//! else; SERIALIZABLE would abort and retry unrelated batches that merely read the same
//! pages. Two batches that lock the same two counter rows in opposite orders deadlock;
//! PostgreSQL aborts one of them after `deadlock_timeout`, its commit fails, and the hub
//! turns its acknowledgements into `internal` errors that clients resend (exactly-once
//! makes that safe).
//!
//! The hub calls the store synchronously from its own thread (begin → many calls →
//! commit), so the synchronous `postgres` client fits; it runs a small tokio runtime of its
//! own. A statement that fails inside a batch aborts PostgreSQL's transaction, so the whole
//! batch is rolled back at [`Store::commit`], which then reports the failure: nothing of it
//! was acknowledged. A lost connection is re-opened at the next [`Store::begin`].

mod blobs;
mod edits;
mod identity;
mod mls;
mod receipts;
mod rooms;
mod search;

pub use blobs::PgBlobs;

use std::collections::HashMap;

use ::postgres::error::SqlState;
use ::postgres::types::ToSql;
use ::postgres::{Client, Config, NoTls, Row, Statement};

use crate::app::ids::{ClientMsgId, ConvId, MsgId, Seq};
use crate::app::protocol::{ConvEvent, EventKind, Hidden};
use crate::app::rooms::{Effect, Room};
use crate::app::store::{
    Reacted, ReactionChange, ResumeRecord, Store, StoreError, StoreResult, StoredEvent, StoredRoom,
    UserRecord,
};

/// Schema migrations, applied in order; the one row of `livewire_schema` counts those
/// applied. The layout follows SQLite's (src/store/mod.rs) with counter tables added.
const MIGRATIONS: &[&str] = &[
    // 1: everything SQLite reached in its migration 4, in one step.
    "CREATE TABLE users (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        skeleton TEXT NOT NULL UNIQUE,
        phc TEXT NOT NULL,
        created BIGINT NOT NULL,
        identity_key BYTEA
     );
     -- The newest sequence number of each conversation; its row lock serialises appends.
     CREATE TABLE conv_seqs (
        conv TEXT PRIMARY KEY,
        last_seq BIGINT NOT NULL
     );
     CREATE TABLE events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        conv TEXT NOT NULL,
        seq BIGINT NOT NULL,
        kind BIGINT NOT NULL,           -- 0 message, 1 erased message, 2 tombstone
        sender TEXT NOT NULL,
        sender_key TEXT NOT NULL,
        cmid BYTEA NOT NULL,
        body BYTEA,
        target BIGINT,
        ts BIGINT NOT NULL,
        UNIQUE (conv, seq)
     );
     CREATE UNIQUE INDEX events_cmid ON events (sender_key, cmid) WHERE kind <> 2;
     CREATE TABLE members (
        conv TEXT NOT NULL,
        user_key TEXT NOT NULL,
        PRIMARY KEY (user_key, conv)
     );
     -- The newest hide counter of each user (never reset, even when a room closes).
     CREATE TABLE hide_seqs (
        user_key TEXT PRIMARY KEY,
        last_hseq BIGINT NOT NULL
     );
     CREATE TABLE hidden (
        user_key TEXT NOT NULL,
        hseq BIGINT NOT NULL,
        msg_id BIGINT NOT NULL,
        conv TEXT NOT NULL,
        PRIMARY KEY (user_key, hseq),
        UNIQUE (user_key, msg_id)
     );
     CREATE TABLE rooms (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        skeleton TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        visibility BIGINT NOT NULL,     -- 0 public, 1 private
        created BIGINT NOT NULL
     );
     CREATE TABLE room_members (
        room TEXT NOT NULL REFERENCES rooms (key) ON DELETE CASCADE,
        user_key TEXT NOT NULL,
        role BIGINT NOT NULL,           -- 0 member, 1 moderator, 2 owner
        joined_at BIGINT NOT NULL,      -- the room's last seq when they joined
        since BIGINT NOT NULL,          -- joining order, for handing over ownership
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
    // 2: login resumption tokens, by their SHA-256 (SQLite's migration 5).
    "CREATE TABLE resume_tokens (
        hash BYTEA PRIMARY KEY,
        user_key TEXT NOT NULL,
        identity_key BYTEA NOT NULL,
        expires BIGINT NOT NULL
     );
     CREATE INDEX resume_tokens_expires ON resume_tokens (expires);",
    // 3: stored files, shared by every node (src/store/postgres/blobs.rs).
    "CREATE TABLE file_blobs (
        uploader TEXT NOT NULL,
        name TEXT NOT NULL,
        complete BOOLEAN NOT NULL DEFAULT FALSE,
        len BIGINT NOT NULL DEFAULT 0,      -- stored bytes, once complete
        updated_ms BIGINT NOT NULL,         -- the last write, for the sweep of abandoned uploads
        PRIMARY KEY (uploader, name)
     );
     CREATE TABLE file_chunks (
        uploader TEXT NOT NULL,
        name TEXT NOT NULL,
        off BIGINT NOT NULL,                -- byte offset of this stored chunk
        data BYTEA NOT NULL,
        PRIMARY KEY (uploader, name, off),
        FOREIGN KEY (uploader, name) REFERENCES file_blobs (uploader, name) ON DELETE CASCADE
     );",
    // 4: edits and reactions (src/store/postgres/edits.rs; SQLite's migration 6).
    "CREATE TABLE reactions (
        target BIGINT NOT NULL,
        user_key TEXT NOT NULL,
        rkey BYTEA NOT NULL,
        event_id BIGINT NOT NULL,
        conv TEXT NOT NULL,
        PRIMARY KEY (target, user_key, rkey)
     );
     CREATE INDEX events_target ON events (target) WHERE target IS NOT NULL;",
    // 5: read markers and seen-receipt settings (SQLite's migration 7).
    "CREATE TABLE read_markers (
        user_key TEXT NOT NULL,
        conv TEXT NOT NULL,
        upto BIGINT NOT NULL,
        PRIMARY KEY (user_key, conv)
     );
     CREATE INDEX read_markers_conv ON read_markers (conv);
     CREATE TABLE receipt_settings (
        user_key TEXT PRIMARY KEY,
        receipts BOOLEAN NOT NULL
     );",
    // 6: full-text search over #general and rooms (postgres/search.rs).
    search::MIGRATION,
    // 7: the one certificate and key every node of a cluster presents (postgres/identity.rs).
    "CREATE TABLE server_identity (
        id SMALLINT PRIMARY KEY CHECK (id = 1),
        cert_pem TEXT NOT NULL,
        key_pem TEXT NOT NULL
     );",
    // 8: MLS devices, key packages and group epochs (postgres/mls.rs).
    mls::MIGRATION,
    // 9: last-resort key packages and claim counts (postgres/mls.rs).
    mls::MIGRATION_LAST_RESORT,
    // 10: removed MLS devices, never announced again (postgres/mls.rs; SQLite's 11).
    mls::MIGRATION_REMOVED,
];

/// The advisory lock key that serialises migrations of nodes starting together
/// (`LiveWire` in ASCII, read as a number).
const MIGRATION_LOCK: i64 = 0x4c69_7665_5769_7265;

/// A store error from a PostgreSQL error. `53100 disk_full` becomes [`StoreError::full`],
/// so the core answers `server_full` rather than `internal`.
fn err(e: ::postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::DISK_FULL) {
        StoreError::full(e.to_string())
    } else {
        // The driver's Display says only "db error"; the server's message is the cause.
        match e.as_db_error() {
            Some(db) => StoreError::other(format!("postgres: {db}")),
            None => StoreError::other(format!("postgres: {e}")),
        }
    }
}

/// Whether `e` means the connection is gone: closed under the driver, or a `FATAL` from a
/// server that is shutting down or ended this session (SQLSTATE class 57P, "operator
/// intervention": `pg_terminate_backend`, a restart) or lost the link (class 08).
fn connection_lost(e: &::postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            let c = c.code();
            c.starts_with("57P") || c.starts_with("08")
        })
}

/// Why a call failed: the database refused a statement (which aborts PostgreSQL's
/// transaction, so the batch can no longer commit), or the store itself refused (an
/// unknown message: the transaction is still good).
enum Fail {
    Db(::postgres::Error),
    Store(StoreError),
}

impl From<::postgres::Error> for Fail {
    fn from(e: ::postgres::Error) -> Self {
        Fail::Db(e)
    }
}

type Res<T> = Result<T, Fail>;

/// A connection with its prepared statements: every statement on the message path is
/// parsed once per connection, not once per call.
struct Conn {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
}

impl Conn {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, ::postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }

    fn query(&mut self, sql: &'static str, p: &[&(dyn ToSql + Sync)]) -> Res<Vec<Row>> {
        let s = self.statement(sql)?;
        Ok(self.client.query(&s, p)?)
    }

    fn query_opt(&mut self, sql: &'static str, p: &[&(dyn ToSql + Sync)]) -> Res<Option<Row>> {
        let s = self.statement(sql)?;
        Ok(self.client.query_opt(&s, p)?)
    }

    fn query_one(&mut self, sql: &'static str, p: &[&(dyn ToSql + Sync)]) -> Res<Row> {
        let s = self.statement(sql)?;
        Ok(self.client.query_one(&s, p)?)
    }

    fn execute(&mut self, sql: &'static str, p: &[&(dyn ToSql + Sync)]) -> Res<u64> {
        let s = self.statement(sql)?;
        Ok(self.client.execute(&s, p)?)
    }
}

/// A LiveWire database in PostgreSQL, shared by any number of nodes.
pub struct PgStore {
    config: Config,
    conn: Conn,
    /// Inside a batch ([`Store::begin`] was called).
    in_tx: bool,
    /// A statement of the current batch failed: PostgreSQL has aborted the transaction,
    /// and a `COMMIT` would silently roll back, so [`Store::commit`] must report it.
    poisoned: Option<String>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db` or `host=… dbname=…`) without TLS
    /// (a local socket or a private network) and applies migrations.
    pub fn connect(url: &str) -> StoreResult<Self> {
        let config: Config = url
            .parse()
            .map_err(|e| StoreError::other(format!("database address {url:?}: {e}")))?;
        let conn = Self::open(&config)?;
        let mut store = Self {
            config,
            conn,
            in_tx: false,
            poisoned: None,
        };
        store.migrate()?;
        Ok(store)
    }

    fn open(config: &Config) -> StoreResult<Conn> {
        let client = config.connect(NoTls).map_err(err)?;
        Ok(Conn {
            client,
            prepared: HashMap::new(),
        })
    }

    /// The schema version this database has (the number of migrations applied).
    pub fn schema_version(&mut self) -> StoreResult<usize> {
        self.run(|c| {
            let row = c.query_one("SELECT version FROM livewire_schema", &[])?;
            Ok(row.get::<_, i64>(0) as usize)
        })
    }

    /// Applies the missing migrations in one transaction, under an advisory lock so that
    /// nodes starting together migrate once.
    fn migrate(&mut self) -> StoreResult<()> {
        let client = &mut self.conn.client;
        let mut tx = client.transaction().map_err(err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS livewire_schema (version BIGINT NOT NULL);
             INSERT INTO livewire_schema (version)
                SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM livewire_schema);",
        )
        .map_err(err)?;
        let version = tx
            .query_one("SELECT version FROM livewire_schema", &[])
            .map_err(err)?
            .get::<_, i64>(0) as usize;
        if version > MIGRATIONS.len() {
            return Err(StoreError::other(format!(
                "the database has schema version {version}, newer than this LiveWire ({}); upgrade LiveWire",
                MIGRATIONS.len()
            )));
        }
        for sql in &MIGRATIONS[version..] {
            tx.batch_execute(sql).map_err(err)?;
        }
        tx.execute(
            "UPDATE livewire_schema SET version = $1",
            &[&(MIGRATIONS.len() as i64)],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Starts a transaction. A connection the server or the network closed is re-opened
    /// (the driver may notice the loss only when this `BEGIN` fails), so the store
    /// recovers by itself once PostgreSQL is back.
    fn start_transaction(&mut self) -> StoreResult<()> {
        if !self.conn.client.is_closed() {
            match self.conn.client.batch_execute("BEGIN") {
                Ok(()) => return Ok(()),
                Err(e) if !self.conn.client.is_closed() && !connection_lost(&e) => {
                    return Err(err(e));
                }
                Err(_) => {}
            }
        }
        tracing::warn!("the database connection was closed; reconnecting");
        self.conn = Self::open(&self.config)?;
        self.conn.client.batch_execute("BEGIN").map_err(err)
    }

    /// Runs `f` inside the current batch, or, outside one, in a transaction of its own.
    fn run<T>(&mut self, f: impl FnOnce(&mut Conn) -> Res<T>) -> StoreResult<T> {
        if self.in_tx {
            if let Some(why) = &self.poisoned {
                return Err(StoreError::other(format!(
                    "an earlier statement of this batch failed: {why}"
                )));
            }
            return match f(&mut self.conn) {
                Ok(v) => Ok(v),
                Err(Fail::Store(e)) => Err(e),
                Err(Fail::Db(e)) => {
                    let e = err(e);
                    self.poisoned = Some(e.message.clone());
                    Err(e)
                }
            };
        }
        self.start_transaction()?;
        match f(&mut self.conn) {
            Ok(v) => {
                self.conn.client.batch_execute("COMMIT").map_err(err)?;
                Ok(v)
            }
            Err(e) => {
                // Best effort: if the connection is gone, so is the transaction.
                let _ = self.conn.client.batch_execute("ROLLBACK");
                Err(match e {
                    Fail::Db(e) => err(e),
                    Fail::Store(e) => e,
                })
            }
        }
    }
}

/// An event from a row of `id, conv, seq, kind, sender, cmid, body, target, ts` (every
/// event query selects these), with its conversation's storage key.
fn row_event(r: &Row) -> (String, ConvEvent) {
    let cmid: Vec<u8> = r.get("cmid");
    let mut id = [0u8; 16];
    if cmid.len() == 16 {
        id.copy_from_slice(&cmid);
    }
    let kind = crate::store::edits::kind_of(r.get("kind"), r.get("body"), r.get("target"));
    (
        r.get("conv"),
        ConvEvent {
            seq: r.get::<_, i64>("seq") as u64,
            id: r.get::<_, i64>("id") as u64,
            ts: r.get::<_, i64>("ts") as u64,
            sender: r.get("sender"),
            cmid: ClientMsgId(id),
            kind,
            mentions: Vec::new(),
        },
    )
}

/// A sequence number or counter as PostgreSQL's BIGINT (saturating: `u64::MAX` means
/// "no bound").
fn big(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Takes the next sequence number of `conv`; the counter row stays locked until the
/// transaction ends, which is what serialises appends across nodes.
fn next_seq(c: &mut Conn, conv: &str) -> Res<i64> {
    let row = c.query_one(
        "INSERT INTO conv_seqs (conv, last_seq) VALUES ($1, 1)
         ON CONFLICT (conv) DO UPDATE SET last_seq = conv_seqs.last_seq + 1
         RETURNING last_seq",
        &[&conv],
    )?;
    Ok(row.get(0))
}

/// Gives back the number [`next_seq`] just took (still under its row lock, so nobody else
/// took one since).
fn give_back_seq(c: &mut Conn, conv: &str) -> Res<()> {
    c.execute(
        "UPDATE conv_seqs SET last_seq = last_seq - 1 WHERE conv = $1",
        &[&conv],
    )?;
    Ok(())
}

/// The stored message `(sender_key, cmid)`, if any.
fn by_cmid(c: &mut Conn, sender_key: &str, cmid: &[u8]) -> Res<Option<ConvEvent>> {
    let row = c.query_opt(
        "SELECT id, conv, seq, kind, sender, cmid, body, target, ts FROM events
         WHERE sender_key = $1 AND cmid = $2 AND kind <> 2",
        &[&sender_key, &cmid],
    )?;
    Ok(row.map(|r| row_event(&r).1))
}

/// Appends an event with the conversation's next sequence number. For a message,
/// `None` if `(sender, cmid)` was stored meanwhile by another node (the number is given
/// back).
fn append(
    c: &mut Conn,
    conv: &ConvId,
    sender: &str,
    cmid: ClientMsgId,
    ts: u64,
    kind: &EventKind,
) -> Res<Option<ConvEvent>> {
    let key = conv.storage_key();
    let seq = next_seq(c, &key)?;
    let (k, body, target) = crate::store::edits::kind_columns(kind);
    let row = c.query_opt(
        "INSERT INTO events (conv, seq, kind, sender, sender_key, cmid, body, target, ts)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (sender_key, cmid) WHERE kind <> 2 DO NOTHING
         RETURNING id",
        &[
            &key,
            &seq,
            &k,
            &sender,
            &sender.to_ascii_lowercase(),
            &&cmid.0[..],
            &body,
            &target,
            &big(ts),
        ],
    )?;
    let Some(row) = row else {
        give_back_seq(c, &key)?;
        return Ok(None);
    };
    if let ConvId::Direct(a, b) = conv {
        for m in [a, b] {
            c.execute(
                "INSERT INTO members (conv, user_key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&key, m],
            )?;
        }
    }
    Ok(Some(ConvEvent {
        seq: seq as u64,
        id: row.get::<_, i64>(0) as u64,
        ts,
        sender: sender.to_owned(),
        cmid,
        kind: kind.clone(),
        mentions: Vec::new(),
    }))
}

fn last_seq(c: &mut Conn, conv: &str) -> Res<Seq> {
    let row = c.query_opt("SELECT last_seq FROM conv_seqs WHERE conv = $1", &[&conv])?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
}

/// The identity key `key` published, if any.
fn identity_key(c: &mut Conn, key: &str) -> Res<Option<[u8; 32]>> {
    Ok(
        c.query_opt("SELECT identity_key FROM users WHERE key = $1", &[&key])?
            .and_then(|r| r.get::<_, Option<Vec<u8>>>(0))
            .and_then(|b| b.try_into().ok()),
    )
}

fn event(c: &mut Conn, id: MsgId) -> Res<Option<StoredEvent>> {
    let row = c.query_opt(
        "SELECT id, conv, seq, kind, sender, cmid, body, target, ts FROM events WHERE id = $1",
        &[&big(id)],
    )?;
    Ok(row.and_then(|r| {
        let (conv, event) = row_event(&r);
        ConvId::from_storage_key(&conv).map(|conv| StoredEvent { conv, event })
    }))
}

impl Store for PgStore {
    fn begin(&mut self) -> StoreResult<()> {
        if !self.in_tx {
            self.start_transaction()?;
            self.in_tx = true;
            self.poisoned = None;
        }
        Ok(())
    }

    fn commit(&mut self) -> StoreResult<()> {
        if !self.in_tx {
            return Ok(());
        }
        self.in_tx = false;
        if let Some(why) = self.poisoned.take() {
            let _ = self.conn.client.batch_execute("ROLLBACK");
            return Err(StoreError::other(format!(
                "the batch was rolled back: {why}"
            )));
        }
        if let Err(e) = self.conn.client.batch_execute("COMMIT") {
            let _ = self.conn.client.batch_execute("ROLLBACK");
            return Err(err(e));
        }
        Ok(())
    }

    fn user(&mut self, key: &str) -> StoreResult<Option<UserRecord>> {
        self.run(|c| {
            let row = c.query_opt("SELECT name, phc FROM users WHERE key = $1", &[&key])?;
            Ok(row.map(|r| UserRecord {
                name: r.get(0),
                phc: r.get(1),
            }))
        })
    }

    fn skeleton_taken(&mut self, skeleton: &str, key: &str) -> StoreResult<bool> {
        self.run(|c| {
            let row = c.query_opt(
                "SELECT 1 FROM users WHERE skeleton = $1 AND key <> $2",
                &[&skeleton, &key],
            )?;
            Ok(row.is_some())
        })
    }

    fn create_user(
        &mut self,
        name: &str,
        key: &str,
        skeleton: &str,
        phc: &str,
    ) -> StoreResult<bool> {
        self.run(|c| {
            // Without a conflict target, DO NOTHING covers both the key and the skeleton.
            let n = c.execute(
                "INSERT INTO users (key, name, skeleton, phc, created)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&key, &name, &skeleton, &phc, &now_secs()],
            )?;
            Ok(n == 1)
        })
    }

    fn set_identity_key(&mut self, key: &str, public: [u8; 32]) -> StoreResult<Option<[u8; 32]>> {
        self.run(|c| {
            let old = identity_key(c, key)?;
            if old != Some(public) {
                // As in SQLite: no write on an ordinary login.
                c.execute(
                    "UPDATE users SET identity_key = $1 WHERE key = $2",
                    &[&&public[..], &key],
                )?;
            }
            Ok(old)
        })
    }

    fn put_resume_token(
        &mut self,
        hash: &[u8; 32],
        record: &ResumeRecord,
        now_ms: u64,
    ) -> StoreResult<()> {
        let (now, expires) = (now_ms as i64, record.expires_ms as i64);
        self.run(|c| {
            c.execute("DELETE FROM resume_tokens WHERE expires <= $1", &[&now])?;
            c.execute(
                "INSERT INTO resume_tokens (hash, user_key, identity_key, expires)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (hash) DO UPDATE SET user_key = EXCLUDED.user_key,
                    identity_key = EXCLUDED.identity_key, expires = EXCLUDED.expires",
                &[
                    &&hash[..],
                    &record.user_key,
                    &&record.identity_pub[..],
                    &expires,
                ],
            )?;
            Ok(())
        })
    }

    fn take_resume_token(&mut self, hash: &[u8; 32]) -> StoreResult<Option<ResumeRecord>> {
        self.run(|c| {
            let row = c.query_opt(
                "DELETE FROM resume_tokens WHERE hash = $1
                 RETURNING user_key, identity_key, expires",
                &[&&hash[..]],
            )?;
            Ok(row.and_then(|r| {
                Some(ResumeRecord {
                    user_key: r.get(0),
                    identity_pub: r.get::<_, Vec<u8>>(1).try_into().ok()?,
                    expires_ms: r.get::<_, i64>(2) as u64,
                })
            }))
        })
    }

    fn identity_key(&mut self, key: &str) -> StoreResult<Option<[u8; 32]>> {
        self.run(|c| identity_key(c, key))
    }

    fn insert_message(
        &mut self,
        conv: &ConvId,
        sender: &str,
        cmid: ClientMsgId,
        body: &[u8],
        ts: u64,
    ) -> StoreResult<(ConvEvent, bool)> {
        let sender_key = sender.to_ascii_lowercase();
        self.run(|c| {
            // The common resend is answered without taking the counter's lock.
            if let Some(e) = by_cmid(c, &sender_key, &cmid.0)? {
                return Ok((e, true));
            }
            let kind = EventKind::Message {
                body: body.to_vec(),
            };
            match append(c, conv, sender, cmid, ts, &kind)? {
                Some(e) => Ok((e, false)),
                // Another node stored it between our look-up and our insert.
                None => by_cmid(c, &sender_key, &cmid.0)?
                    .map(|e| (e, true))
                    .ok_or_else(|| Fail::Store(StoreError::other("a resend vanished"))),
            }
        })
    }

    fn event(&mut self, id: MsgId) -> StoreResult<Option<StoredEvent>> {
        self.run(|c| event(c, id))
    }

    fn erase(&mut self, id: MsgId, cmid: ClientMsgId, ts: u64) -> StoreResult<ConvEvent> {
        self.run(|c| {
            let stored =
                event(c, id)?.ok_or_else(|| Fail::Store(StoreError::other("no such message")))?;
            c.execute(
                "UPDATE events SET kind = 1, body = NULL WHERE id = $1",
                &[&big(id)],
            )?;
            let kind = EventKind::Tombstone { target: id };
            append(c, &stored.conv, &stored.event.sender, cmid, ts, &kind)?
                .ok_or_else(|| Fail::Store(StoreError::other("a tombstone was refused")))
        })
    }

    fn events_after(
        &mut self,
        conv: &ConvId,
        after: Seq,
        limit: usize,
        viewer: &str,
    ) -> StoreResult<Vec<ConvEvent>> {
        let key = conv.storage_key();
        self.run(|c| {
            let rows = c.query(
                "SELECT id, conv, seq, kind, sender, cmid, body, target, ts FROM events e
                 WHERE conv = $1 AND seq > $2
                   AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_key = $4 AND h.msg_id = e.id)
                 ORDER BY seq LIMIT $3",
                &[&key, &big(after), &big(limit as u64), &viewer],
            )?;
            Ok(rows.iter().map(|r| row_event(r).1).collect())
        })
    }

    fn events_before(
        &mut self,
        conv: &ConvId,
        before: Seq,
        limit: usize,
        viewer: &str,
    ) -> StoreResult<Vec<ConvEvent>> {
        let key = conv.storage_key();
        self.run(|c| {
            let rows = c.query(
                "SELECT id, conv, seq, kind, sender, cmid, body, target, ts FROM events e
                 WHERE conv = $1 AND seq < $2
                   AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_key = $4 AND h.msg_id = e.id)
                 ORDER BY seq DESC LIMIT $3",
                &[&key, &big(before), &big(limit as u64), &viewer],
            )?;
            Ok(rows.iter().rev().map(|r| row_event(r).1).collect())
        })
    }

    fn last_seq(&mut self, conv: &ConvId) -> StoreResult<Seq> {
        let key = conv.storage_key();
        self.run(|c| last_seq(c, &key))
    }

    fn conversations(&mut self, key: &str) -> StoreResult<Vec<(ConvId, Seq)>> {
        self.run(|c| {
            let general = last_seq(c, &ConvId::General.storage_key())?;
            let rows = c.query(
                "SELECT m.conv, COALESCE(s.last_seq, 0) FROM
                    (SELECT conv FROM members WHERE user_key = $1
                     UNION ALL SELECT room FROM room_members WHERE user_key = $1) m
                 LEFT JOIN conv_seqs s ON s.conv = m.conv",
                &[&key],
            )?;
            let mut out = vec![(ConvId::General, general)];
            out.extend(rows.iter().filter_map(|r| {
                let conv = ConvId::from_storage_key(r.get(0))?;
                Some((conv, r.get::<_, i64>(1) as u64))
            }));
            Ok(out)
        })
    }

    fn hide(&mut self, key: &str, conv: &ConvId, id: MsgId) -> StoreResult<Option<u64>> {
        let conv = conv.storage_key();
        self.run(|c| {
            let seen = c.query_opt(
                "SELECT 1 FROM hidden WHERE user_key = $1 AND msg_id = $2",
                &[&key, &big(id)],
            )?;
            if seen.is_some() {
                return Ok(None);
            }
            // The user's counter row, locked until commit: the same scheme as `next_seq`.
            let hseq: i64 = c
                .query_one(
                    "INSERT INTO hide_seqs (user_key, last_hseq) VALUES ($1, 1)
                     ON CONFLICT (user_key) DO UPDATE SET last_hseq = hide_seqs.last_hseq + 1
                     RETURNING last_hseq",
                    &[&key],
                )?
                .get(0);
            let n = c.execute(
                "INSERT INTO hidden (user_key, hseq, msg_id, conv) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_key, msg_id) DO NOTHING",
                &[&key, &hseq, &big(id), &conv],
            )?;
            if n == 0 {
                // Hidden meanwhile from another node: give the number back.
                c.execute(
                    "UPDATE hide_seqs SET last_hseq = last_hseq - 1 WHERE user_key = $1",
                    &[&key],
                )?;
                return Ok(None);
            }
            Ok(Some(hseq as u64))
        })
    }

    fn hidden_after(&mut self, key: &str, after: u64) -> StoreResult<Vec<Hidden>> {
        self.run(|c| {
            let rows = c.query(
                "SELECT conv, msg_id, hseq FROM hidden WHERE user_key = $1 AND hseq > $2
                 ORDER BY hseq",
                &[&key, &big(after)],
            )?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    Some(Hidden {
                        conv: ConvId::from_storage_key(r.get(0))?,
                        id: r.get::<_, i64>(1) as u64,
                        hseq: r.get::<_, i64>(2) as u64,
                    })
                })
                .collect())
        })
    }

    fn search(
        &mut self,
        query: &crate::app::search::SearchQuery,
        scopes: &[crate::app::search::SearchScope],
        viewer: &str,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        self.run(|c| search::search(c, query, scopes, viewer, limit))
    }

    fn load_rooms(&mut self) -> StoreResult<Vec<StoredRoom>> {
        self.run(|c| rooms::load(c, None))
    }

    fn load_room(&mut self, key: &str) -> StoreResult<Option<StoredRoom>> {
        self.run(|c| Ok(rooms::load(c, Some(key))?.pop()))
    }

    fn create_room(&mut self, room: &Room) -> StoreResult<bool> {
        self.run(|c| rooms::create(c, room))
    }

    fn room_changed(&mut self, room: &Room, effects: &[Effect], by: &str) -> StoreResult<()> {
        if effects.contains(&Effect::Closed) {
            let conv = ConvId::Room(room.name.key()).storage_key();
            self.run(|c| receipts::forget_conv(c, &conv))?;
        }
        self.run(|c| rooms::changed(c, room, effects, by))
    }

    fn edit_message(
        &mut self,
        target: MsgId,
        editor: &str,
        cmid: ClientMsgId,
        body: &[u8],
        ts: u64,
    ) -> StoreResult<(ConvEvent, bool)> {
        self.run(|c| edits::edit_message(c, target, editor, cmid, body, ts))
    }

    fn erase_edits(&mut self, target: MsgId) -> StoreResult<()> {
        self.run(|c| edits::erase_edits(c, target))
    }

    fn react(&mut self, change: &ReactionChange<'_>) -> StoreResult<Reacted> {
        self.run(|c| edits::react(c, change))
    }

    fn reactions(&mut self, conv: &ConvId, targets: &[MsgId]) -> StoreResult<Vec<ConvEvent>> {
        self.run(|c| edits::reactions(c, conv, targets))
    }

    fn advance_read(&mut self, key: &str, conv: &ConvId, upto: Seq) -> StoreResult<Option<Seq>> {
        let conv = conv.storage_key();
        self.run(|c| receipts::advance(c, key, &conv, upto))
    }

    fn read_markers(&mut self, key: &str) -> StoreResult<Vec<(ConvId, Seq)>> {
        self.run(|c| receipts::of_user(c, key))
    }

    fn conv_read_markers(&mut self, conv: &ConvId) -> StoreResult<Vec<(String, Seq)>> {
        let conv = conv.storage_key();
        self.run(|c| receipts::of_conv(c, &conv))
    }

    fn set_receipts(&mut self, key: &str, on: bool) -> StoreResult<()> {
        self.run(|c| receipts::set(c, key, on))
    }

    fn receipts(&mut self, key: &str) -> StoreResult<bool> {
        self.run(|c| receipts::get(c, key))
    }

    fn put_device(&mut self, user: &str, device: &str, key: &[u8]) -> StoreResult<bool> {
        self.run(|c| mls::put_device(c, user, device, key))
    }

    fn remove_device(&mut self, user: &str, device: &str) -> StoreResult<bool> {
        self.run(|c| mls::remove_device(c, user, device))
    }

    fn device_removed(&mut self, user: &str, device: &str) -> StoreResult<bool> {
        self.run(|c| mls::device_removed(c, user, device))
    }

    fn devices(&mut self, user: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.run(|c| mls::devices(c, user))
    }

    fn add_key_packages(
        &mut self,
        user: &str,
        device: &str,
        packages: &[Vec<u8>],
    ) -> StoreResult<()> {
        self.run(|c| mls::add_key_packages(c, user, device, packages))
    }

    fn claim_key_package(&mut self, user: &str, device: &str) -> StoreResult<Option<Vec<u8>>> {
        self.run(|c| mls::claim_key_package(c, user, device))
    }

    fn put_last_resort_key_package(
        &mut self,
        user: &str,
        device: &str,
        package: &[u8],
    ) -> StoreResult<()> {
        self.run(|c| mls::put_last_resort(c, user, device, package))
    }

    fn last_resort_key_package(
        &mut self,
        user: &str,
        device: &str,
    ) -> StoreResult<Option<Vec<u8>>> {
        self.run(|c| mls::last_resort(c, user, device))
    }

    fn key_package_claims(&mut self, claimer: &str, owner: &str, since: u64) -> StoreResult<u64> {
        self.run(|c| mls::claims(c, claimer, owner, since))
    }

    fn note_key_package_claim(
        &mut self,
        claimer: &str,
        owner: &str,
        at: u64,
        forget_before: u64,
    ) -> StoreResult<()> {
        self.run(|c| mls::note_claim(c, claimer, owner, at, forget_before))
    }

    fn mls_epoch(&mut self, conv: &ConvId) -> StoreResult<(u64, Option<ClientMsgId>)> {
        let conv = conv.storage_key();
        self.run(|c| mls::epoch(c, &conv))
    }

    fn set_mls_epoch(&mut self, conv: &ConvId, epoch: u64, cmid: ClientMsgId) -> StoreResult<()> {
        let conv = conv.storage_key();
        self.run(|c| mls::set_epoch(c, &conv, epoch, cmid))
    }
}
