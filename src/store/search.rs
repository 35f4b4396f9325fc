//! Full-text search in SQLite: an FTS5 index of the server-readable messages (`#general`
//! and rooms), kept in step with `events` by triggers, so every writer — a send, an erase,
//! a room closing, an edit — updates it in the same transaction without knowing it exists.
//!
//! The index is *contentless* (`content=''`): it holds the words, never a copy of the text.
//! A row leaves it by FTS5's `delete` command with the text it was indexed with, which the
//! triggers have (`old.body`); with the index's `secure-delete` option that rewrites the
//! index pages that held the words instead of adding a "deleted" marker that would leave
//! them on disk until the next merge (which is also why `contentless_delete=1`, which only
//! records deleted ids, is not used: it cannot know the words to remove). With the
//! database's `secure_delete` pragma the freed space is zeroed, and the erase's
//! checkpoint scrubs the WAL (see the module docs of `crate::store`). Private
//! conversations (`dm:…`) are ciphertext and never indexed; neither are file messages.
//!
//! Words follow `crate::app::search`: FTS5's `unicode61` tokenizer splits on what is not
//! a letter or digit and folds case; diacritics are kept (`remove_diacritics 0`), as the
//! reference does.

use rusqlite::{Connection, params};

use super::{SqliteStore, err};
use crate::app::ids::ConvId;
use crate::app::search::{SearchQuery, SearchScope};
use crate::app::store::{StoreResult, StoredEvent};

/// The migration that creates the index and its triggers and indexes the stored messages.
pub(super) const MIGRATION: &str = "
    CREATE VIRTUAL TABLE events_fts USING fts5(
        text, content = '', tokenize = 'unicode61 remove_diacritics 0'
    );
    INSERT INTO events_fts (events_fts, rank) VALUES ('secure-delete', 1);
    CREATE TRIGGER events_fts_insert AFTER INSERT ON events
    WHEN new.kind IN (0, 3) AND substr(new.conv, 1, 1) = '#' AND substr(new.body, 1, 8) != x'016c7766696c6531'
    BEGIN
        INSERT INTO events_fts (rowid, text) VALUES (new.id, CAST(new.body AS TEXT));
    END;
    CREATE TRIGGER events_fts_update AFTER UPDATE OF kind, body ON events
    BEGIN
        INSERT INTO events_fts (events_fts, rowid, text)
            SELECT 'delete', old.id, CAST(old.body AS TEXT)
            WHERE old.kind IN (0, 3) AND substr(old.conv, 1, 1) = '#'
              AND substr(old.body, 1, 8) != x'016c7766696c6531';
        INSERT INTO events_fts (rowid, text)
            SELECT new.id, CAST(new.body AS TEXT)
            WHERE new.kind IN (0, 3) AND substr(new.conv, 1, 1) = '#'
              AND substr(new.body, 1, 8) != x'016c7766696c6531';
    END;
    CREATE TRIGGER events_fts_delete AFTER DELETE ON events
    WHEN old.kind IN (0, 3) AND substr(old.conv, 1, 1) = '#' AND substr(old.body, 1, 8) != x'016c7766696c6531'
    BEGIN
        INSERT INTO events_fts (events_fts, rowid, text)
            VALUES ('delete', old.id, CAST(old.body AS TEXT));
    END;
    INSERT INTO events_fts (rowid, text)
        SELECT id, CAST(body AS TEXT) FROM events
        WHERE kind IN (0, 3) AND substr(conv, 1, 1) = '#' AND substr(body, 1, 8) != x'016c7766696c6531';
";

/// The FTS5 query for `query`: every word quoted (they are letters and digits only, so
/// nothing needs escaping), implicitly AND-ed, the last one a prefix if the query says so.
/// (The client's local index, `crate::client_index`, uses it too.)
pub fn fts5_match(query: &SearchQuery) -> String {
    let mut out: Vec<String> = query.words().iter().map(|w| format!("\"{w}\"")).collect();
    if query.last_is_prefix()
        && let Some(last) = out.last_mut()
    {
        last.push('*');
    }
    out.join(" ")
}

/// The scopes as a JSON object `{storage key: first readable seq}`, for `json_each`.
fn scopes_json(scopes: &[SearchScope]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = scopes
        .iter()
        .filter(|s| s.conv.server_readable())
        .map(|s| (s.conv.storage_key(), s.from.min(i64::MAX as u64).into()))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Matching messages of `scopes`, newest first (see `Store::search`).
pub(super) fn search(
    db: &Connection,
    query: &SearchQuery,
    scopes: &[SearchScope],
    viewer: &str,
    limit: usize,
) -> StoreResult<Vec<StoredEvent>> {
    let mut stmt = db
        .prepare_cached(
            "SELECT e.* FROM events e
             WHERE e.id IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?1)
               AND e.kind IN (0, 3)
               AND e.seq >= (SELECT s.value FROM json_each(?2) s WHERE s.key = e.conv)
               AND e.id NOT IN (SELECT msg_id FROM hidden WHERE user_key = ?3)
             ORDER BY e.ts DESC, e.id DESC LIMIT ?4",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map(
            params![
                fts5_match(query),
                scopes_json(scopes),
                viewer,
                limit.min(i64::MAX as usize) as i64
            ],
            SqliteStore::row_event,
        )
        .map_err(err)?;
    let mut out = Vec::new();
    for r in rows {
        let (conv, event) = r.map_err(err)?;
        if let Some(conv) = ConvId::from_storage_key(&conv) {
            out.push(StoredEvent { conv, event });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ids::ClientMsgId;
    use crate::app::store::Store;

    use crate::store::erasure_tests::files_containing;

    /// One word (FTS5 stores words, so a canary of several words would never be found
    /// whole in the index even if it were left there).
    const CANARY: &str = "zqxcanaryfts7f3a9c";

    #[test]
    fn an_erased_message_leaves_no_word_in_the_index_or_any_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(dir.path()).unwrap();
        let scope = [SearchScope {
            conv: ConvId::General,
            from: 1,
        }];
        let q = SearchQuery::parse(CANARY).unwrap();
        s.begin().unwrap();
        let text = format!("the {CANARY} sings");
        let (m, _) = s
            .insert_message(
                &ConvId::General,
                "alice",
                ClientMsgId([1; 16]),
                text.as_bytes(),
                1,
            )
            .unwrap();
        s.commit().unwrap();
        for i in 0..30u8 {
            s.begin().unwrap();
            let filler = format!("filler message {i}");
            s.insert_message(
                &ConvId::General,
                "bob",
                ClientMsgId([i + 2; 16]),
                filler.as_bytes(),
                2,
            )
            .unwrap();
            s.commit().unwrap();
        }
        assert_eq!(s.search(&q, &scope, "bob", 10).unwrap().len(), 1);
        // The word is in the index's own pages, not only in the message's row.
        let in_index: bool =
            s.db.prepare("SELECT block FROM events_fts_data")
                .unwrap()
                .query_map([], |r| r.get::<_, Vec<u8>>(0))
                .unwrap()
                .any(|b| {
                    b.unwrap()
                        .windows(CANARY.len())
                        .any(|w| w == CANARY.as_bytes())
                });
        assert!(in_index, "the test must see the word in the index first");
        s.begin().unwrap();
        s.erase(m.id, ClientMsgId([99; 16]), 3).unwrap();
        s.commit().unwrap();
        assert!(s.search(&q, &scope, "bob", 10).unwrap().is_empty());
        assert_eq!(
            files_containing(dir.path(), CANARY.as_bytes()),
            Vec::<String>::new()
        );
        drop(s);
        assert_eq!(
            files_containing(dir.path(), CANARY.as_bytes()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_changed_body_is_indexed_anew() {
        // What an edit does to a stored message: the triggers follow it.
        let mut s = SqliteStore::in_memory().unwrap();
        let (m, _) = s
            .insert_message(
                &ConvId::General,
                "alice",
                ClientMsgId([1; 16]),
                b"first draft",
                1,
            )
            .unwrap();
        s.db.execute(
            "UPDATE events SET body = CAST('second thoughts' AS BLOB) WHERE id = ?1",
            [m.id as i64],
        )
        .unwrap();
        let scope = [SearchScope {
            conv: ConvId::General,
            from: 1,
        }];
        let find = |s: &mut SqliteStore, q: &str| {
            let q = SearchQuery::parse(q).unwrap();
            s.search(&q, &scope, "bob", 10).unwrap().len()
        };
        assert_eq!(find(&mut s, "draft"), 0);
        assert_eq!(find(&mut s, "second thoughts"), 1);
        s.db.execute_batch("INSERT INTO events_fts (events_fts) VALUES ('integrity-check')")
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn the_migration_indexes_messages_stored_before_it_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Connection::open(dir.path().join("livewire.db")).unwrap();
            // The schema as it was just before the search migration (later ones come
            // after it in the list and run at open too).
            let before = super::super::MIGRATIONS
                .iter()
                .position(|m| *m == super::MIGRATION)
                .expect("the search migration is in the list");
            for sql in &super::super::MIGRATIONS[..before] {
                db.execute_batch(sql).unwrap();
            }
            db.pragma_update(None, "user_version", before as i64)
                .unwrap();
            for (id, conv, body) in [
                (1, "#general", &b"old words here"[..]),
                (2, "dm:alice:bob", b"old words in ciphertext"),
                (3, "#general", b"\x01lwfile1 {\"name\":\"words.txt\"}"),
            ] {
                db.execute(
                    "INSERT INTO events (id, conv, seq, kind, sender, sender_key, cmid, body, ts)
                     VALUES (?1, ?2, ?1, 0, 'alice', 'alice', ?3, ?4, ?1)",
                    params![id, conv, vec![id as u8; 16], body],
                )
                .unwrap();
            }
        }
        let q = SearchQuery::parse("old words").unwrap();
        let scopes = [
            SearchScope {
                conv: ConvId::General,
                from: 1,
            },
            SearchScope {
                conv: ConvId::Direct("alice".into(), "bob".into()),
                from: 1,
            },
        ];
        for _ in 0..2 {
            let mut s = SqliteStore::open(dir.path()).unwrap();
            let found = s.search(&q, &scopes, "alice", 10).unwrap();
            let ids: Vec<u64> = found.iter().map(|e| e.event.id).collect();
            assert_eq!(ids, [1], "only #general's text message");
        }
    }
}
