//! The headless server on PostgreSQL (`--database`): a real PostgreSQL started by the test,
//! the real binary, scripted clients. Conversations, rooms and history behave as on SQLite
//! and survive a restart of the server; the data lives in the database, not the data dir.
//! Without PostgreSQL installed the test says SKIPPED and passes (CI installs it).

mod common;
#[path = "common/postgres.rs"]
mod postgres;

use common::*;
use serde_json::json;

const FAST: &[&str] = &["--msg-burst", "10000", "--msg-rate", "10000"];

#[test]
fn a_server_on_postgres_keeps_conversations_and_rooms_across_a_restart() {
    let Some(db) = postgres::fresh_database("server_on_postgres") else {
        return;
    };
    let url = db.url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let mut args = FAST.to_vec();
    args.extend(["--database", url.as_str()]);
    let server = ServerProc::start(&data, "127.0.0.1:0", &args);
    let port = server.port();
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    alice.send("#general", "hello from postgres");
    alice.send("@bob", "private on postgres");
    alice.cmd(json!({"cmd": "create_room", "room": "#pg", "topic": "on PostgreSQL"}));
    alice.expect("joined", |v| v["event"] == "joined" && v["room"] == "#pg");
    alice.cmd(json!({"cmd": "invite", "room": "#pg", "user": "bob"}));
    bob.expect("invited", |v| v["event"] == "invited" && v["room"] == "#pg");
    bob.cmd(json!({"cmd": "accept", "room": "#pg"}));
    bob.expect("joined", |v| v["event"] == "joined" && v["room"] == "#pg");
    bob.send("#pg", "room message on postgres");
    bob.sync();
    let evs = alice.sync();
    assert_eq!(events(&evs, "error"), Vec::<&serde_json::Value>::new());
    assert!(
        evs.iter()
            .any(|v| v["event"] == "message" && v["text"] == "room message on postgres"),
        "{evs:?}"
    );
    // Nothing of the conversation is in the data dir: it is in PostgreSQL.
    assert!(!data.join("livewire.db").exists());
    let (_, alice_log) = alice.finish();
    let (_, bob_log) = bob.finish();
    server.stop();

    // Restarted on the same database: history, the room and bob's membership are there.
    let server = ServerProc::start(&data, &format!("127.0.0.1:{port}"), &args);
    let mut carol = ChatProc::login(&server.addr, "carol", home);
    carol.cmd(json!({"cmd": "history", "conv": "#general"}));
    let hist = carol.expect("history", |v| v["event"] == "history");
    assert!(hist.to_string().contains("hello from postgres"), "{hist}");
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let state = bob.expect("room_state", |v| v["event"] == "room_state");
    assert_eq!(state["rooms"][0]["room"], "#pg", "{state}");
    bob.cmd(json!({"cmd": "members", "room": "#pg"}));
    let members = bob.expect("members", |v| v["event"] == "members");
    assert_eq!(members["members"].as_array().unwrap().len(), 2, "{members}");
    bob.sync();
    let (_, bob_log2) = bob.finish();
    carol.finish();
    let mut bob_all = bob_log;
    bob_all.extend(bob_log2);
    check_properties(
        &[
            Record {
                user: "alice",
                log: &alice_log,
            },
            Record {
                user: "bob",
                log: &bob_all,
            },
        ],
        &["alice", "bob"],
    );
}
