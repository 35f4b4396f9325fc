//! Durable conversations with the real binary: offline delivery, deletes that stick,
//! acknowledgements that survive SIGKILL, reconnects through server restarts, P1–P7.

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

const FAST: &[&str] = &["--msg-burst", "10000", "--msg-rate", "10000"];

fn texts(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|v| v["event"] == "message")
        .map(|v| v["text"].as_str().unwrap_or("<deleted>").to_owned())
        .collect()
}

fn restart(data: &Path, port: u16) -> ServerProc {
    ServerProc::start(data, &format!("127.0.0.1:{port}"), FAST)
}

fn file_contains(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        std::fs::read(e.path()).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
    })
}

#[test]
fn offline_user_gets_100_missed_messages_in_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("srv"), "127.0.0.1:0", FAST);
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let bob = ChatProc::login(&server.addr, "bob", home);
    assert_eq!(bob.finish().0, 0);
    for i in 0..100 {
        let to = if i % 3 == 0 { "@bob" } else { "#general" };
        alice.send(to, &format!("m{i:03}"));
    }
    let acks = alice.sync();
    assert_eq!(events(&acks, "sent").len(), 100);
    // Bob comes back with his saved position: all 100 before the first sync, in order.
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let before = bob.sync();
    let got = texts(&before);
    let mut want: Vec<String> = (0..100)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("m{i:03}"))
        .collect();
    want.extend((0..100).filter(|i| i % 3 == 0).map(|i| format!("m{i:03}")));
    let mut sorted = got.clone();
    sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(sorted, want_sorted, "every missed message exactly once");
    for conv in ["#general", "@alice"] {
        let seqs: Vec<u64> = before
            .iter()
            .filter(|v| v["event"] == "message" && v["conv"] == conv)
            .map(|v| v["seq"].as_u64().unwrap())
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{conv} in order: {seqs:?}"
        );
    }
    // Nothing more arrives later, and a restart of bob brings nothing twice.
    assert!(texts(&bob.sync()).is_empty());
    let (_, bob_log) = bob.finish();
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    assert!(
        texts(&bob.sync()).is_empty(),
        "nothing twice after a restart"
    );
    let (_, bob_log2) = bob.finish();
    let (_, alice_log) = alice.finish();
    let mut all_bob = bob_log;
    all_bob.extend(bob_log2);
    check_properties(
        &[
            Record {
                user: "alice",
                log: &alice_log,
            },
            Record {
                user: "bob",
                log: &all_bob,
            },
        ],
        &["bob"],
    );
}

#[test]
fn delete_for_everyone_reaches_offline_members_and_erases_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let server = ServerProc::start(&data, "127.0.0.1:0", FAST);
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let carol = ChatProc::login(&server.addr, "carol", home);
    assert_eq!(carol.finish().0, 0);

    alice.send("#general", "canary-erase-91b2");
    alice.send("#general", "canary-keep-5c4d");
    alice.send("@bob", "canary-dm-erase-e7f0");
    let acks = alice.sync();
    // Acks of two conversations come on two streams, in either order; within one
    // conversation they keep the send order.
    let sent = events(&acks, "sent");
    let acked_in = |conv: &str| -> Vec<u64> {
        sent.iter()
            .filter(|v| v["conv"] == conv)
            .map(|v| v["id"].as_u64().unwrap())
            .collect()
    };
    let ids: Vec<u64> = [acked_in("#general"), acked_in("@bob")].concat();
    assert_eq!(ids.len(), 3, "{acks:?}");
    bob.sync();
    // Not the author: refused, nothing changes.
    bob.cmd(json!({"cmd": "delete", "id": ids[0], "for": "everyone"}));
    let evs = bob.sync();
    assert_eq!(events(&evs, "error")[0]["code"], "not_author");
    assert!(events(&evs, "deleted").is_empty());
    // The author, in the room and privately.
    alice.cmd(json!({"cmd": "delete", "id": ids[0], "for": "everyone"}));
    alice.cmd(json!({"cmd": "delete", "id": ids[2], "for": "everyone"}));
    let evs = alice.sync();
    assert_eq!(events(&evs, "deleted").len(), 2, "{evs:?}");
    let evs = bob.sync();
    let mut deleted: Vec<u64> = events(&evs, "deleted")
        .iter()
        .map(|v| v["id"].as_u64().unwrap())
        .collect();
    deleted.sort();
    assert_eq!(deleted, vec![ids[0], ids[2]]);
    // A message id from another conversation (or none) is refused.
    bob.cmd(json!({"cmd": "delete", "id": 9999, "for": "me"}));
    assert_eq!(events(&bob.sync(), "error")[0]["code"], "not_found");

    // Carol was offline: she gets the placeholder and the tombstone, never the body.
    let mut carol = ChatProc::login(&server.addr, "carol", home);
    let evs = carol.sync();
    let shown: Vec<(u64, Value)> = events(&evs, "message")
        .iter()
        .map(|v| (v["id"].as_u64().unwrap(), v["text"].clone()))
        .collect();
    assert_eq!(
        shown,
        vec![(ids[0], Value::Null), (ids[1], json!("canary-keep-5c4d"))]
    );
    assert_eq!(events(&evs, "deleted").len(), 1);

    let logs: Vec<(String, Vec<Value>)> = [alice, bob, carol]
        .into_iter()
        .map(|c| (c.user.clone(), c.finish().1))
        .collect();
    let records: Vec<Record> = logs
        .iter()
        .map(|(u, l)| Record { user: u, log: l })
        .collect();
    check_properties(&records, &["bob"]);

    // The erased bodies are gone from the database and its WAL; the kept one is there
    // (so the search itself works).
    server.stop();
    assert!(file_contains(&data, b"canary-keep-5c4d"));
    assert!(
        !file_contains(&data, b"canary-erase-91b2"),
        "erased room message still on disk"
    );
    assert!(
        !file_contains(&data, b"canary-dm-erase-e7f0"),
        "erased private message still on disk"
    );
}

#[test]
fn delete_for_me_sticks_across_sessions_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("srv"), "127.0.0.1:0", FAST);
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    alice.send("#general", "hide me");
    alice.send("#general", "keep me");
    let ids: Vec<u64> = events(&alice.sync(), "sent")
        .iter()
        .map(|v| v["id"].as_u64().unwrap())
        .collect();
    bob.sync();
    bob.cmd(json!({"cmd": "delete", "id": ids[0], "for": "me"}));
    let evs = bob.sync();
    assert_eq!(events(&evs, "deleted")[0]["for"], "me");
    assert!(
        events(&alice.sync(), "deleted").is_empty(),
        "alice is not affected"
    );
    let (_, _) = bob.finish();
    // Same device again: nothing comes back.
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    assert!(texts(&bob.sync()).is_empty());
    let mut history = bob.clone_history("#general");
    history.retain(|t| t == "hide me");
    assert!(history.is_empty(), "hidden message in history");
    bob.finish();
    // A brand-new device of bob's: gets recent history without the hidden message.
    let fresh = tempfile::tempdir().unwrap();
    let mut bob2 = ChatProc::login(&server.addr, "bob", fresh.path());
    assert_eq!(texts(&bob2.sync()), vec!["keep me"]);
    // Alice still sees both.
    let mut alice2 = ChatProc::login(&server.addr, "alice", fresh.path());
    assert_eq!(texts(&alice2.sync()), vec!["hide me", "keep me"]);
}

trait HistoryExt {
    fn clone_history(&mut self, conv: &str) -> Vec<String>;
}

impl HistoryExt for ChatProc {
    fn clone_history(&mut self, conv: &str) -> Vec<String> {
        self.cmd(json!({"cmd": "history", "conv": conv}));
        let h = self.expect("history", |v| v["event"] == "history");
        h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap_or("<deleted>").to_owned())
            .collect()
    }
}

#[test]
fn an_ack_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let server = ServerProc::start(&data, "127.0.0.1:0", FAST);
    let port = server.port();
    let mut alice = ChatProc::start_with(
        &server.addr,
        "alice",
        ClientOpts {
            extra: vec!["--no-reconnect".into()],
            ..ClientOpts::new(dir.path())
        },
    );
    alice.expect("ready", |v| v["event"] == "ready");
    alice.send("#general", "durable-1");
    let ack = alice.expect("sent", |v| v["event"] == "sent");
    server.kill();
    alice.kill();
    let server = restart(&data, port);
    let mut bob = ChatProc::login(&server.addr, "bob", dir.path());
    let evs = bob.sync();
    let got = events(&evs, "message");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], ack["id"]);
    assert_eq!(got[0]["text"], "durable-1");
}

#[test]
fn clients_ride_out_server_restarts_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let home = dir.path();
    let mut server = ServerProc::start(&data, "127.0.0.1:0", FAST);
    let port = server.port();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let mut n = 0;
    for round in 0..3 {
        for _ in 0..20 {
            alice.send("#general", &format!("a{n}"));
            bob.send("@alice", &format!("b{n}"));
            n += 1;
        }
        // Kill the server in the middle of the burst (some sends are in flight, some queued).
        if round % 2 == 0 {
            server.kill();
        } else {
            server.stop();
        }
        for _ in 0..5 {
            alice.send("#general", &format!("a{n}"));
            bob.send("@alice", &format!("b{n}"));
            n += 1;
        }
        // Restarted (as by systemd): the new process resets the old connections as soon as a
        // client's retransmission reaches it; at worst a client notices at the idle timeout.
        server = restart(&data, port);
        let patience = std::time::Duration::from_secs(75);
        alice.expect_within("disconnected", patience, |v| v["event"] == "disconnected");
        alice.expect_within("reconnected", patience, |v| v["event"] == "reconnected");
        bob.expect_within("reconnected", patience, |v| v["event"] == "reconnected");
    }
    alice.sync();
    bob.sync();
    alice.sync();
    let (_, alice_log) = alice.finish();
    let (_, bob_log) = bob.finish();
    let sent_a = events(&alice_log, "sent").len();
    let sent_b = events(&bob_log, "sent").len();
    assert_eq!(
        sent_a, 75,
        "every message alice wrote was acknowledged once"
    );
    assert_eq!(sent_b, 75, "every message bob wrote was acknowledged once");
    check_properties(
        &[
            Record {
                user: "alice",
                log: &alice_log,
            },
            Record {
                user: "bob",
                log: &bob_log,
            },
        ],
        &["alice", "bob"],
    );
    // The server stored each exactly once: a fresh client sees 75 room messages.
    let fresh = tempfile::tempdir().unwrap();
    let mut carol = ChatProc::login(&server.addr, "carol", fresh.path());
    carol.cmd(json!({"cmd": "history", "conv": "#general", "limit": 1000}));
    let h = carol.expect("history", |v| v["event"] == "history");
    assert_eq!(h["messages"].as_array().unwrap().len(), 75);
}
