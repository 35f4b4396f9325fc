//! Delete for everyone erases the text from every file the server writes (database, WAL,
//! journal, temporary files) by the time the delete is acknowledged — also when the server
//! is killed right after (issue 11 #4: the text used to stay in `livewire.db-wal` until a
//! graceful stop).

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::json;

const FAST: &[&str] = &["--msg-burst", "10000", "--msg-rate", "10000"];

#[test]
fn deleted_text_leaves_every_file_while_running_after_a_kill_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let server = ServerProc::start(&data, "127.0.0.1:0", FAST);
    let port = server.port();
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let canary = "canary-wal-erase-4d61b0";
    alice.send("#general", canary);
    for i in 0..30 {
        alice.send("#general", &format!("filler {i}"));
    }
    let acks = alice.sync();
    let id = events(&acks, "sent")[0]["id"].as_u64().unwrap();
    assert!(
        !files_containing(&data, canary.as_bytes()).is_empty(),
        "the test must see the text on disk before the delete"
    );

    alice.cmd(json!({"cmd": "delete", "id": id, "for": "everyone"}));
    let evs = alice.sync();
    assert_eq!(events(&evs, "deleted").len(), 1, "{evs:?}");
    // Acknowledged: gone from every file while the server runs…
    assert_eq!(
        files_containing(&data, canary.as_bytes()),
        Vec::<PathBuf>::new()
    );
    // …and after 30 more messages.
    for i in 0..30 {
        alice.send("#general", &format!("more {i}"));
    }
    alice.sync();
    assert_eq!(
        files_containing(&data, canary.as_bytes()),
        Vec::<PathBuf>::new()
    );

    // Killed right after a second acknowledged delete: nothing on disk either.
    let second = "canary-wal-erase-kill-9e27";
    alice.send("#general", second);
    let id2 = events(&alice.sync(), "sent")[0]["id"].as_u64().unwrap();
    alice.cmd(json!({"cmd": "delete", "id": id2, "for": "everyone"}));
    assert_eq!(events(&alice.sync(), "deleted").len(), 1);
    server.kill();
    assert_eq!(
        files_containing(&data, second.as_bytes()),
        Vec::<PathBuf>::new()
    );
    alice.kill();

    // After a restart the messages are still there, deleted.
    let server = ServerProc::start(&data, &format!("127.0.0.1:{port}"), FAST);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    bob.cmd(json!({"cmd": "history", "conv": "#general"}));
    let hist = bob.expect("history", |v| v["event"] == "history");
    let text = hist.to_string();
    assert!(!text.contains(canary) && !text.contains(second), "{text}");
    assert!(text.contains("filler 29"), "{text}");
    for c in [canary, second] {
        assert_eq!(files_containing(&data, c.as_bytes()), Vec::<PathBuf>::new());
    }
    bob.finish();
}
