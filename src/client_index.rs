//! The client's own search index of its private conversations.
//!
//! The server keeps only ciphertext of private conversations, so it cannot search them;
//! the client indexes what it decrypted, as it shows it (live messages, catch-up,
//! history pages, its own sends), and searches that when asked. A message deleted for
//! me or for everyone leaves the index. The query of a search of one private
//! conversation never leaves the device (see `crate::app::client::SearchPlan`).
//!
//! It is an SQLite file next to the client's state, `<user>.search.db`, created with mode
//! 0600 like the identity key (SQLite gives its WAL the database file's mode), because it
//! holds the text of private messages in clear. It is built like the server's index
//! (src/store/search.rs): a table of the messages and a contentless FTS5 index with
//! `secure-delete` (a row leaves it with the text it was indexed with, taken from the
//! table), the `secure_delete` pragma, and a truncating WAL checkpoint after a
//! batch that removed a message, so a deleted text does not linger in the file's free
//! space or in the WAL.
//!
//! Writes are small and run on the driver's task. Changes gather and go in one transaction
//! at the client's save tick (every 250 ms, before its state is saved, so the index is never
//! behind a saved sync position), before any search, when a few hundred are waiting, and
//! when the index is dropped: a transaction per message was a sixth of a client's CPU per
//! private message (issue 14). A failure makes the index unavailable (logged once), never
//! the client: search then finds only what the server finds.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::app::client::{Event, LocalScope, Output, SearchItem, SearchPlan};
use crate::store::fts5_match;

/// The index's schema (`PRAGMA user_version` 1).
const SCHEMA: &str = "
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conv TEXT NOT NULL,
        sender TEXT NOT NULL,
        ts INTEGER NOT NULL,
        text TEXT NOT NULL
    );
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        text, content = '', tokenize = 'unicode61 remove_diacritics 0'
    );
    INSERT INTO messages_fts (messages_fts, rank) VALUES ('secure-delete', 1);
    PRAGMA user_version = 1;
";

/// One change to the index.
enum Change {
    /// Index this message, or re-index it when its text changed (an edit seen on catch-up).
    Put(SearchItem),
    /// An edit of a message already indexed: its words are replaced.
    Replace(u64, String),
    Remove(u64),
}

/// The local index (or nothing, when it could not be opened).
pub struct ClientIndex {
    db: Option<Connection>,
    /// Texts that are the client's own notices in place of a message (one that could
    /// not be decrypted), not words someone wrote: never indexed.
    notices: Vec<&'static str>,
    /// The private rooms (by label, `#key`) whose messages are end-to-end encrypted: the
    /// server cannot search them, so they are indexed here like private conversations.
    e2e_rooms: std::collections::HashSet<String>,
    /// Changes noted and not yet written, in order.
    pending: Vec<Change>,
}

/// Changes written at once when this many wait.
const FLUSH_AT: usize = 512;

/// Where the index of a client whose state file is `state_file` lives.
pub fn index_path(state_file: &Path) -> PathBuf {
    state_file.with_extension("search.db")
}

fn sql_err(e: rusqlite::Error) -> String {
    e.to_string()
}

/// Creates `path` with mode 0600, or narrows an existing file (and its WAL) to it.
fn make_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    drop(options.open(path)?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let p = PathBuf::from(p);
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

impl ClientIndex {
    /// Opens (or creates) the index at `path`. On failure the client runs without one.
    pub fn open(path: &Path) -> Self {
        match Self::try_open(path) {
            Ok(db) => Self {
                db: Some(db),
                notices: Vec::new(),
                e2e_rooms: Default::default(),
                pending: Vec::new(),
            },
            Err(e) => {
                tracing::warn!(
                    "the local search index {} is unavailable: {e}; private conversations will not be searched",
                    path.display()
                );
                Self {
                    db: None,
                    notices: Vec::new(),
                    e2e_rooms: Default::default(),
                    pending: Vec::new(),
                }
            }
        }
    }

    /// An index in memory (a client without a state file).
    pub fn in_memory() -> Self {
        let db = Connection::open_in_memory()
            .map_err(sql_err)
            .and_then(Self::setup);
        Self {
            db: db.ok(),
            notices: Vec::new(),
            e2e_rooms: Default::default(),
            pending: Vec::new(),
        }
    }

    /// Never indexes a message whose text is `notice` (the client's own words shown in
    /// place of a message).
    pub fn ignoring(mut self, notice: &'static str) -> Self {
        self.notices.push(notice);
        self
    }

    fn try_open(path: &Path) -> Result<Connection, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        make_private(path).map_err(|e| e.to_string())?;
        let db = Connection::open(path).map_err(sql_err)?;
        db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(sql_err)?;
        Self::setup(db)
    }

    fn setup(db: Connection) -> Result<Connection, String> {
        db.execute_batch("PRAGMA secure_delete = ON; PRAGMA temp_store = MEMORY;")
            .map_err(sql_err)?;
        let version: i64 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql_err)?;
        if version == 0 {
            db.execute_batch(&format!("BEGIN; {SCHEMA} COMMIT;"))
                .map_err(sql_err)?;
        }
        Ok(db)
    }

    /// Whether the index is working.
    pub fn is_available(&self) -> bool {
        self.db.is_some()
    }

    /// Sets which rooms are private (end-to-end encrypted), by label.
    pub fn set_e2e_rooms(&mut self, rooms: impl IntoIterator<Item = String>) {
        self.e2e_rooms = rooms.into_iter().collect();
    }

    /// Indexes the private messages among `outputs` (shown to `me`) and removes the
    /// deleted ones.
    pub fn note(&mut self, me: &str, outputs: &[Output]) {
        if self.db.is_none() {
            return;
        }
        let changes = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .flat_map(|e| changes(me, e, &self.notices, &self.e2e_rooms));
        self.pending.extend(changes);
        if self.pending.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Writes the changes noted so far, in one transaction.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let changes = std::mem::take(&mut self.pending);
        let Some(db) = &mut self.db else { return };
        if let Err(e) = apply(db, &changes) {
            tracing::warn!("the local search index could not be updated: {e}; it is turned off");
            self.db = None;
        }
    }

    /// The local half of a search: the private messages matching `plan`, newest first.
    pub fn search(&mut self, plan: &SearchPlan) -> Vec<SearchItem> {
        self.flush();
        let conv = match &plan.local {
            LocalScope::Nowhere => return Vec::new(),
            LocalScope::AllPrivate => None,
            LocalScope::One(label) => Some(label.as_str()),
        };
        let Some(db) = &self.db else {
            return Vec::new();
        };
        let found = db
            .prepare_cached(
                "SELECT id, conv, sender, text, ts FROM messages
                 WHERE id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1)
                   AND (?2 IS NULL OR conv = ?2)
                 ORDER BY ts DESC, id DESC LIMIT ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_map(
                    params![fts5_match(&plan.query), conv, plan.limit as i64],
                    |r| {
                        Ok(SearchItem {
                            id: r.get::<_, i64>(0)? as u64,
                            conv: r.get(1)?,
                            from: r.get(2)?,
                            text: r.get(3)?,
                            ts: r.get::<_, i64>(4)? as u64,
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()
            });
        found.unwrap_or_else(|e| {
            tracing::warn!("the local search failed: {e}");
            Vec::new()
        })
    }
}

/// What one event changes in the index: only private conversations (`@peer`) are kept;
/// deletes are by id (ids are unique across conversations).
fn changes(
    me: &str,
    e: &Event,
    notices: &[&str],
    e2e_rooms: &std::collections::HashSet<String>,
) -> Vec<Change> {
    let private = |conv: &str| conv.starts_with('@') || e2e_rooms.contains(conv);
    let put = |conv: &str, id: u64, from: &str, text: &str, ts: u64| {
        if notices.contains(&text) {
            return Change::Remove(id);
        }
        Change::Put(SearchItem {
            conv: conv.to_owned(),
            id,
            from: from.to_owned(),
            text: text.to_owned(),
            ts,
        })
    };
    match e {
        Event::Message {
            conv,
            id,
            from,
            text,
            ts,
            file,
            ..
        } if private(conv) => match (text, file) {
            (Some(t), None) => vec![put(conv, *id, from, t, *ts)],
            _ => vec![Change::Remove(*id)],
        },
        Event::Sent {
            conv,
            id,
            ts,
            text,
            file: None,
            ..
        } if private(conv) => vec![put(conv, *id, me, text, *ts)],
        Event::History { conv, messages, .. } if private(conv) => messages
            .iter()
            .map(|m| match (&m.text, &m.file) {
                (Some(t), None) => put(conv, m.id, &m.from, t, m.ts),
                _ => Change::Remove(m.id),
            })
            .collect(),
        Event::Edited { conv, id, text } if private(conv) => {
            vec![Change::Replace(*id, text.clone())]
        }
        Event::Deleted { id, .. } => vec![Change::Remove(*id)],
        _ => Vec::new(),
    }
}

/// Replaces the indexed text of message `id` (if indexed, and if it changed): the old
/// words leave the index as a delete does. Whether old words were removed.
fn replace_text(tx: &rusqlite::Transaction<'_>, id: u64, text: &str) -> Result<bool, String> {
    let old: Option<String> = tx
        .prepare_cached("SELECT text FROM messages WHERE id = ?1")
        .and_then(|mut s| s.query_row([id as i64], |r| r.get(0)).optional())
        .map_err(sql_err)?;
    let Some(old) = old.filter(|old| old != text) else {
        return Ok(false);
    };
    tx.prepare_cached(
        "INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', ?1, ?2)",
    )
    .and_then(|mut s| s.execute(params![id as i64, old]))
    .map_err(sql_err)?;
    tx.prepare_cached("UPDATE messages SET text = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id as i64, text]))
        .map_err(sql_err)?;
    tx.prepare_cached("INSERT INTO messages_fts (rowid, text) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![id as i64, text]))
        .map_err(sql_err)?;
    Ok(true)
}

/// Applies `changes` in one transaction; after a removal, scrubs the WAL.
fn apply(db: &mut Connection, changes: &[Change]) -> Result<(), String> {
    let tx = db.transaction().map_err(sql_err)?;
    let mut removed = false;
    for c in changes {
        match c {
            Change::Put(m) => {
                let new = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO messages (id, conv, sender, ts, text)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![m.id as i64, m.conv, m.from, m.ts as i64, m.text])
                    })
                    .map_err(sql_err)?;
                if new == 1 {
                    tx.prepare_cached("INSERT INTO messages_fts (rowid, text) VALUES (?1, ?2)")
                        .and_then(|mut s| s.execute(params![m.id as i64, m.text]))
                        .map_err(sql_err)?;
                } else {
                    removed |= replace_text(&tx, m.id, &m.text)?;
                }
            }
            Change::Replace(id, text) => removed |= replace_text(&tx, *id, text)?,
            Change::Remove(id) => {
                // FTS5 removes a row's words given the text it indexed (secure-delete).
                let text: Option<String> = tx
                    .prepare_cached("DELETE FROM messages WHERE id = ?1 RETURNING text")
                    .and_then(|mut s| s.query_row([*id as i64], |r| r.get(0)).optional())
                    .map_err(sql_err)?;
                if let Some(text) = text {
                    tx.prepare_cached(
                        "INSERT INTO messages_fts (messages_fts, rowid, text)
                         VALUES ('delete', ?1, ?2)",
                    )
                    .and_then(|mut s| s.execute(params![*id as i64, text]))
                    .map_err(sql_err)?;
                    removed = true;
                }
            }
        }
    }
    tx.commit().map_err(sql_err)?;
    if removed {
        // The WAL holds the old pages until a checkpoint: the deleted text goes with it.
        db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .map_err(sql_err)?;
    }
    Ok(())
}

impl Drop for ClientIndex {
    /// What is still waiting is written when the client ends.
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::client::{ClientCore, SavedState};
    use crate::app::protocol::DeleteScope;

    fn message(conv: &str, id: u64, text: &str) -> Output {
        Output::Event(Event::Message {
            conv: conv.into(),
            id,
            seq: id,
            from: "bob".into(),
            text: Some(text.into()),
            ts: 1_000 + id,
            file: None,
            reply_to: None,
            edited: false,
            mentions: Vec::new(),
            mentions_me: false,
            e2e: false,
        })
    }

    fn found(index: &mut ClientIndex, query: &str, conv: Option<&str>) -> Vec<u64> {
        let core = ClientCore::new("alice", SavedState::default(), [0; 8]);
        let plan = core.search_plan(query, conv, None).unwrap();
        index.search(&plan).iter().map(|i| i.id).collect()
    }

    const CANARY: &str = "zqxlocalcanary51e2";

    #[test]
    fn private_messages_are_indexed_and_deletes_leave_no_trace_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = index_path(&dir.path().join("alice.json"));
        let mut index = ClientIndex::open(&path).ignoring("could not be decrypted here");
        assert!(index.is_available());
        index.note(
            "alice",
            &[
                message("@bob", 1, &format!("the {CANARY} is here")),
                message("@carol", 2, "lunch at noon"),
                message("#general", 3, "lunch in the open"),
                message("@bob", 5, "could not be decrypted here"),
                Output::Event(Event::Sent {
                    conv: "@bob".into(),
                    id: 4,
                    seq: 2,
                    ts: 2_000,
                    text: "Lunch tomorrow?".into(),
                    file: None,
                    reply_to: None,
                }),
            ],
        );
        for i in 0..20 {
            index.note("alice", &[message("@bob", 10 + i, "filler words")]);
        }
        assert_eq!(
            found(&mut index, "lunch", None),
            [4, 2],
            "#general is the server's"
        );
        assert_eq!(found(&mut index, "lunch", Some("@carol")), [2]);
        assert_eq!(found(&mut index, CANARY, None), [1]);
        assert!(
            found(&mut index, "decrypted", None).is_empty(),
            "a notice is not a message"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for suffix in ["", "-wal"] {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{p:?}");
            }
        }
        let on_disk = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    let bytes = std::fs::read(p).unwrap_or_default();
                    bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes())
                })
                .collect::<Vec<_>>()
        };
        assert!(!on_disk().is_empty(), "the test must see the text first");
        index.note(
            "alice",
            &[Output::Event(Event::Deleted {
                conv: "@bob".into(),
                id: 1,
                scope: DeleteScope::Everyone,
            })],
        );
        assert!(found(&mut index, CANARY, None).is_empty());
        assert_eq!(on_disk(), Vec::<PathBuf>::new());
        drop(index);
        let mut index = ClientIndex::open(&path);
        assert_eq!(found(&mut index, "lunch", None), [4, 2], "kept across runs");
        assert_eq!(on_disk(), Vec::<PathBuf>::new());
    }
}
