//! Erased bodies leave no trace in any file, and the skeleton migration keeps old accounts.

use super::*;

const CANARY: &[u8] = b"canary-7f3a9c-erased-text";

/// The files directly in `dir` whose bytes contain `needle` (also used by the search
/// index's erasure tests).
pub(super) fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap_or_default();
            bytes
                .windows(needle.len())
                .any(|w| w == needle)
                .then(|| path.display().to_string())
        })
        .collect()
}

#[test]
fn an_erased_body_is_gone_from_every_file_once_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path()).unwrap();
    s.begin().unwrap();
    let (m, _) = s
        .insert_message(&ConvId::General, "alice", ClientMsgId([1; 16]), CANARY, 1)
        .unwrap();
    s.commit().unwrap();
    // Other traffic, so the page is written to the WAL more than once.
    for i in 0..30u8 {
        s.begin().unwrap();
        s.insert_message(&ConvId::General, "bob", ClientMsgId([i + 2; 16]), b"x", 2)
            .unwrap();
        s.commit().unwrap();
    }
    assert!(!files_containing(dir.path(), CANARY).is_empty());
    s.begin().unwrap();
    s.erase(m.id, ClientMsgId([99; 16]), 3).unwrap();
    s.commit().unwrap();
    assert_eq!(files_containing(dir.path(), CANARY), Vec::<String>::new());
    // Still readable as an erased message with its tombstone.
    let ev = s.events_after(&ConvId::General, 0, 100, "bob").unwrap();
    assert_eq!(ev[0].kind, EventKind::Erased);
}

#[test]
fn a_store_killed_after_an_erase_scrubs_the_wal_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path()).unwrap();
    let (m, _) = s
        .insert_message(&ConvId::General, "alice", ClientMsgId([1; 16]), CANARY, 1)
        .unwrap();
    // Simulate a kill between the erase's commit and its checkpoint: commit the erase
    // by hand, then drop the store without closing SQLite cleanly.
    s.db.execute(
        "UPDATE events SET kind = 1, body = NULL WHERE id = ?1",
        [m.id as i64],
    )
    .unwrap();
    assert!(!files_containing(dir.path(), CANARY).is_empty());
    std::mem::forget(s);
    let _reopened = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(files_containing(dir.path(), CANARY), Vec::<String>::new());
}

#[test]
fn skeleton_migration_keeps_old_lookalike_accounts_and_blocks_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Connection::open(dir.path().join("livewire.db")).unwrap();
        for sql in &MIGRATIONS[..2] {
            db.execute_batch(sql).unwrap();
        }
        db.pragma_update(None, "user_version", 2).unwrap();
        // Skeletons as the old rule made them (separators kept).
        for (key, skel, created) in [("alice", "allce", 1), ("ali.ce", "all.ce", 2)] {
            db.execute(
                "INSERT INTO users (key, name, skeleton, phc, created) VALUES (?1, ?1, ?2, 'x', ?3)",
                params![key, skel, created],
            )
            .unwrap();
        }
    }
    let mut s = SqliteStore::open(dir.path()).unwrap();
    assert!(s.user("alice").unwrap().is_some());
    assert!(s.user("ali.ce").unwrap().is_some());
    assert!(
        s.skeleton_taken(&skeleton_of("a-l-i-c-e"), "a-l-i-c-e")
            .unwrap()
    );
    assert!(!s.skeleton_taken(&skeleton_of("alice"), "alice").unwrap());
    assert!(
        !s.create_user("al_ice", "al_ice", &skeleton_of("al_ice"), "x")
            .unwrap()
    );
}
