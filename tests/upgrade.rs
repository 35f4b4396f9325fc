//! Upgrade: a data dir written by an older release opens with this server, keeps every
//! account and message, and gains rooms.
//!
//! The fixture `tests/fixtures/a98d1eb/livewire.db` was written by release a98d1eb (schema
//! version 2): users bob, alice and ali.ce (a look-alike pair from before the skeleton rule;
//! password `correct-horse-9` for all three); `#general` seq 1 alice "hello from the old
//! days", seq 2 alice "to be deleted", seq 3 bob "bob was here"; one end-to-end private
//! message alice -> bob (id 3), which bob hid for himself.

mod common;

use common::*;
use serde_json::{Value, json};

const OLD_PASSWORD: &str = "correct-horse-9";

fn login(server: &ServerProc, user: &str, home: &std::path::Path) -> ChatProc {
    let mut o = ClientOpts::new(home);
    o.password = OLD_PASSWORD.into();
    ChatProc::login_under(&[], &server.addr, user, o)
}

fn history(c: &mut ChatProc, conv: &str) -> Value {
    c.cmd(json!({"cmd": "history", "conv": conv}));
    c.expect("history", |v| v["event"] == "history")
}

#[test]
fn an_old_data_dir_keeps_everything_and_gains_rooms() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    std::fs::create_dir_all(&data).unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/a98d1eb/livewire.db"
    );
    std::fs::copy(fixture, data.join("livewire.db")).unwrap();
    let home = dir.path();
    let server = ServerProc::start(&data, "127.0.0.1:0", &[]);

    let mut alice = login(&server, "alice", home);
    let h = history(&mut alice, "#general");
    let general: Vec<(u64, &str, &str)> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["from"].as_str().unwrap(),
                m["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        general,
        [
            (1, "alice", "hello from the old days"),
            (2, "alice", "to be deleted"),
            (3, "bob", "bob was here"),
        ],
        "{h}"
    );
    let mut bob = login(&server, "bob", home);
    // Bob hid the private message: it never comes back.
    let dm = history(&mut bob, "@alice");
    assert!(
        dm["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["id"] != 3),
        "{dm}"
    );
    // Messages stored before search existed are found (the migration indexed them).
    alice.cmd(json!({"cmd": "search", "query": "old days"}));
    let found = alice.expect("search", |v| v["event"] == "search");
    assert_eq!(
        found["results"][0]["text"], "hello from the old days",
        "{found}"
    );
    // Both look-alike accounts from before the skeleton rule still log in.
    login(&server, "ali.ce", home).finish_ok();

    // Rooms work on the upgraded data.
    alice.cmd(json!({"cmd": "create_room", "room": "#after", "visibility": "private"}));
    alice.expect("joined", |v| {
        v["event"] == "joined" && v["room"] == "#after"
    });
    alice.cmd(json!({"cmd": "invite", "room": "#after", "user": "bob"}));
    bob.expect("invited", |v| v["event"] == "invited");
    bob.cmd(json!({"cmd": "accept", "room": "#after"}));
    bob.expect("joined", |v| v["event"] == "joined");
    alice.send("#after", "rooms on an old data dir");
    let m = bob.expect("message", |v| {
        v["event"] == "message" && v["conv"] == "#after"
    });
    assert_eq!(m["text"], "rooms on an old data dir");
    alice.send("#general", "and #general goes on");
    let g = bob.expect("message", |v| {
        v["event"] == "message" && v["conv"] == "#general"
    });
    assert_eq!(g["seq"], 4);
    let logs = [alice.finish_ok(), bob.finish_ok()];
    server.stop();

    // On disk: the newest schema, and the private message still there, sealed.
    let db = rusqlite::Connection::open(data.join("livewire.db")).unwrap();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    // Every later migration applied too (edits 6, read markers 7, search 8, ...): not
    // pinned.
    assert!(version >= 8, "schema version {version}");
    let (conv, body): (String, Vec<u8>) = db
        .query_row("SELECT conv, body FROM events WHERE id = 3", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(conv, "dm:alice:bob");
    assert!(!body.windows(7).any(|w| w == b"private"), "sealed");
    let rooms: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM room_members WHERE room = '#after'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rooms, 2);
    let records: Vec<Record> = logs
        .iter()
        .map(|(u, l)| Record { user: u, log: l })
        .collect();
    check_properties(&records, &["alice", "bob"]);
}
