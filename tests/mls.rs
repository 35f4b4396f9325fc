//! End-to-end encryption with MLS through a real server and real scripted clients: a
//! device is a state dir, so each user here runs with two homes. Direct messages are MLS
//! groups of every device of both users; a new device is added and reads from then on;
//! peers are told of devices; safety codes match on both sides, `verify` checks them and a
//! device change breaks the verification; a removed device leaves every group and cannot
//! come back; the text never reaches the server's disk or log.

mod common;

use common::{ChatProc, ServerProc, any_contains, files_under, stderr_path};
use serde_json::{Value, json};

fn message_with(text: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == "message" && v["text"] == text
}

#[test]
fn direct_messages_are_mls_across_devices_and_never_reach_the_server_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let server = ServerProc::start_traced(&data, "127.0.0.1:0");
    let addr = server.addr.clone();
    let home_a = dir.path().join("a");
    let home_b1 = dir.path().join("b1");
    let home_b2 = dir.path().join("b2");
    let mut alice = ChatProc::login(&addr, "alice", &home_a);
    let mut bob = ChatProc::login(&addr, "bob", &home_b1);
    // Bob's device is announced right after his login; a send that finds none falls back to
    // the first scheme (see the last test), so wait until the server lists it.
    alice.wait_listed("bob", 1);

    alice.send("@bob", "canary-mls-7f3a91 first");
    let m = bob.expect("alice's message", message_with("canary-mls-7f3a91 first"));
    assert_eq!(m["e2e"], true, "{m}");
    assert_eq!(m["from"], "alice");
    bob.send("@alice", "canary-mls-7f3a91 reply");
    let m = alice.expect("bob's reply", message_with("canary-mls-7f3a91 reply"));
    assert_eq!(m["e2e"], true, "{m}");
    alice.sync();
    bob.sync();

    // A second device of bob's: alice is told, and it reads what comes after it joined.
    let mut bob2 = ChatProc::login(&addr, "bob", &home_b2);
    let added = alice.expect("device_added", |v| v["event"] == "device_added");
    assert_eq!(added["user"], "bob");
    bob.expect("device_added on bob's other device", |v| {
        v["event"] == "device_added" && v["user"] == "bob"
    });
    alice.cmd(json!({"cmd": "devices", "user": "bob"}));
    let devices = alice.expect("devices", |v| v["event"] == "devices");
    assert_eq!(devices["devices"].as_array().unwrap().len(), 2, "{devices}");

    alice.send("@bob", "canary-mls-7f3a91 to both devices");
    let m = bob2.expect(
        "on the new device",
        message_with("canary-mls-7f3a91 to both devices"),
    );
    assert_eq!(m["e2e"], true);
    bob.expect(
        "on the first device",
        message_with("canary-mls-7f3a91 to both devices"),
    );
    // The new device's own messages reach alice and bob's other device.
    bob2.send("@alice", "canary-mls-7f3a91 from the second device");
    alice.expect(
        "from bob2",
        message_with("canary-mls-7f3a91 from the second device"),
    );
    bob.expect(
        "bob's other device sees it",
        message_with("canary-mls-7f3a91 from the second device"),
    );
    let seen_b2 = bob2.sync();
    alice.sync();
    bob.sync();
    // History from before the device joined is not for it (and is not shown as noise).
    assert!(
        !bob2
            .log
            .iter()
            .any(|v| v["text"] == "canary-mls-7f3a91 first"),
        "bob2 read a message from before it joined: {seen_b2:?}"
    );
    assert!(
        !bob2.log.iter().any(|v| v["event"] == "error"),
        "bob2: {:#?}",
        bob2.log
    );

    // Both devices' restarts keep their MLS state: the conversation goes on.
    let (_, _) = bob.finish_ok();
    let mut bob = ChatProc::login(&addr, "bob", &home_b1);
    alice.send("@bob", "canary-mls-7f3a91 after restart");
    let m = bob.expect(
        "after restart",
        message_with("canary-mls-7f3a91 after restart"),
    );
    assert_eq!(m["e2e"], true);
    bob2.expect("bob2 too", message_with("canary-mls-7f3a91 after restart"));
    for c in [&mut alice, &mut bob, &mut bob2] {
        let errors: Vec<&Value> = c.log.iter().filter(|v| v["event"] == "error").collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", c.user);
    }
    drop(bob2);
    drop(bob);
    drop(alice);
    server.stop();
    let mut files = files_under(&data);
    files.push(stderr_path(&data));
    assert!(
        !any_contains(&files, b"canary-mls-7f3a91"),
        "private text reached the server's disk or logs"
    );
}

#[test]
fn safety_codes_match_verify_checks_them_and_a_new_device_breaks_verification() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let server = ServerProc::start(&data, "127.0.0.1:0", &[]);
    let addr = server.addr.clone();
    let mut alice = ChatProc::login(&addr, "alice", &dir.path().join("a"));
    let mut bob = ChatProc::login(&addr, "bob", &dir.path().join("b1"));
    alice.wait_listed("bob", 1);
    bob.wait_listed("alice", 1);
    alice.send("@bob", "hello");
    bob.expect("hello", message_with("hello"));

    alice.cmd(json!({"cmd": "safety_code", "user": "bob"}));
    let a = alice.expect("safety_code", |v| v["event"] == "safety_code");
    bob.cmd(json!({"cmd": "safety_code", "user": "@alice"}));
    let b = bob.expect("safety_code", |v| v["event"] == "safety_code");
    assert_eq!(a["code"], b["code"], "both sides compute the same code");
    let code = a["code"].as_str().unwrap().to_owned();
    assert_eq!(code.split(' ').count(), 12, "{code}");

    let mut wrong: Vec<u8> = code.clone().into_bytes();
    wrong[0] = if wrong[0] == b'1' { b'2' } else { b'1' };
    alice.cmd(json!({"cmd": "verify", "user": "bob", "code": String::from_utf8(wrong).unwrap()}));
    let e = alice.expect("mismatch", |v| {
        v["event"] == "error" || v["event"] == "verified"
    });
    assert_eq!(e["event"], "error", "{e}");
    alice.cmd(json!({"cmd": "verify", "user": "bob", "code": code}));
    let v = alice.expect("verified", |v| {
        v["event"] == "verified" || v["event"] == "error"
    });
    assert_eq!(v["event"], "verified", "{v}");
    assert_eq!(v["user"], "bob");

    // A new device of bob's (or one a server invents): alice's verification breaks.
    let _bob2 = ChatProc::login(&addr, "bob", &dir.path().join("b2"));
    let broken = alice.expect("verification_broken", |v| {
        v["event"] == "verification_broken"
    });
    assert_eq!(broken["user"], "bob");
    alice.cmd(json!({"cmd": "safety_code", "user": "bob"}));
    let again = alice.expect("safety_code", |v| v["event"] == "safety_code");
    assert_ne!(again["code"], code, "a new device changes the code");
}

#[test]
fn a_peer_without_an_mls_device_gets_the_first_scheme_and_it_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let server = ServerProc::start(&data, "127.0.0.1:0", &[]);
    let (home_a, home_b) = (dir.path().join("a"), dir.path().join("b"));
    // Both have an account and an identity key; then bob's MLS device is gone, as for a
    // user whose only client is of the first release.
    let alice = ChatProc::login(&server.addr, "alice", &home_a);
    let bob = ChatProc::login(&server.addr, "bob", &home_b);
    alice.finish_ok();
    bob.finish_ok();
    // The same address again: a client's state (and first-scheme identity key) is kept
    // per server address.
    let listen = format!("127.0.0.1:{}", server.port());
    server.stop();
    let db = rusqlite::Connection::open(data.join("livewire.db")).unwrap();
    let n = db
        .execute("DELETE FROM mls_devices WHERE user_key = 'bob'", [])
        .unwrap();
    assert_eq!(n, 1, "bob had one device");
    drop(db);

    let server = ServerProc::start(&data, &listen, &[]);
    let mut alice = ChatProc::login(&server.addr, "alice", &home_a);
    alice.send("@bob", "first scheme, for an old client");
    alice.expect("sent", |v| v["event"] == "sent");
    alice.sync();
    let mut bob = ChatProc::login(&server.addr, "bob", &home_b);
    let m = bob.expect(
        "the message",
        message_with("first scheme, for an old client"),
    );
    assert_eq!(m.get("e2e"), None, "not MLS: {m}");
    let errors: Vec<&Value> = bob.log.iter().filter(|v| v["event"] == "error").collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn a_removed_device_leaves_every_group_peers_are_told_and_it_cannot_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let server = ServerProc::start_traced(&data, "127.0.0.1:0");
    let addr = server.addr.clone();
    let (home_a1, home_a2) = (dir.path().join("a1"), dir.path().join("a2"));
    let mut a1 = ChatProc::login(&addr, "alice", &home_a1);
    let mut bob = ChatProc::login(&addr, "bob", &dir.path().join("b"));
    a1.wait_listed("bob", 1);
    bob.wait_listed("alice", 1);
    a1.cmd(json!({"cmd": "devices", "user": "alice"}));
    let listed = a1.expect("devices", |v| v["event"] == "devices");
    let a1_id = listed["devices"][0].as_str().unwrap().to_owned();
    a1.send("@bob", "canary-rm-5c1e before the second device");
    bob.expect(
        "first",
        message_with("canary-rm-5c1e before the second device"),
    );

    // A second device of alice's joins and reads the conversation.
    let mut a2 = ChatProc::login(&addr, "alice", &home_a2);
    let added = bob.expect("device_added", |v| v["event"] == "device_added");
    assert_eq!(added["user"], "alice");
    let a2_id = added["device"].as_str().unwrap().to_owned();
    assert_ne!(a2_id, a1_id);
    bob.send("@alice", "canary-rm-5c1e to both");
    assert_eq!(
        a1.expect("a1", message_with("canary-rm-5c1e to both"))["e2e"],
        true
    );
    assert_eq!(
        a2.expect("a2", message_with("canary-rm-5c1e to both"))["e2e"],
        true
    );

    // Refused: the device one is on, an empty id, a device that is not one's own.
    a1.cmd(json!({"cmd": "remove_device", "device": a1_id}));
    let e = a1.expect("error", |v| v["event"] == "error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("the one you are on"),
        "{e}"
    );
    a1.cmd(json!({"cmd": "remove_device", "device": "no-such-device"}));
    let e = a1.expect("error", |v| v["event"] == "error");
    assert_eq!(e["code"], "not_found", "{e}");
    bob.cmd(json!({"cmd": "remove_device", "device": a2_id}));
    let e = bob.expect("error", |v| v["event"] == "error");
    assert_eq!(
        e["code"], "not_found",
        "bob cannot remove alice's device: {e}"
    );

    // A1 removes A2: bob and A1 are told; A2 is told why, and its session is closed.
    a1.cmd(json!({"cmd": "remove_device", "device": a2_id}));
    for c in [&mut bob, &mut a1] {
        let r = c.expect("device_removed", |v| v["event"] == "device_removed");
        assert_eq!(r["user"], "alice", "{r}");
        assert_eq!(r["device"], a2_id.as_str(), "{r}");
    }
    let e = a2.expect("removed", |v| v["event"] == "error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("was removed from this account"),
        "{e}"
    );
    a2.expect("disconnected", |v| v["event"] == "disconnected");
    bob.wait_listed("alice", 1);

    // Bob's next message commits the removal first: A1 reads it, A2 does not.
    bob.send("@alice", "canary-rm-5c1e after the removal");
    let m = a1.expect("a1 reads", message_with("canary-rm-5c1e after the removal"));
    assert_eq!(m["e2e"], true, "{m}");
    a1.send("@bob", "canary-rm-5c1e a1 still writes");
    bob.expect("a1 writes", message_with("canary-rm-5c1e a1 still writes"));
    bob.sync();
    a1.sync();
    let refused = a2.expect("the reconnect is refused", |v| {
        v["event"] == "error"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("device {a2_id} was removed")))
    });
    assert_eq!(refused["code"], "removed_device", "{refused}");
    a2.sync();
    let log = a2.kill();
    // A2 was disconnected, came back refused, and shows nothing of what followed its
    // removal: the commit that removed it (read on reconnecting) ends its group, and
    // what comes later is of a group it no longer has, hidden like history from before
    // a device joined.
    let after = log
        .iter()
        .position(|v| v["event"] == "device_removed")
        .expect("A2 was told");
    assert!(
        !log[after..].iter().any(|v| v["event"] == "message"),
        "the removed device got a message: {log:#?}"
    );

    // A2 started again with its state dir: the clear error, and it is not added back.
    let bob_mark = bob.log.len();
    let mut a2 = ChatProc::login(&addr, "alice", &home_a2);
    let e = a2.expect("refused", |v| v["event"] == "error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("removed from this account; start a new device"),
        "{e}"
    );
    a2.sync();
    bob.send("@alice", "canary-rm-5c1e once more");
    a1.expect("a1 reads", message_with("canary-rm-5c1e once more"));
    bob.sync();
    assert!(
        !bob.log[bob_mark..]
            .iter()
            .any(|v| v["event"] == "device_added"),
        "{:#?}",
        &bob.log[bob_mark..]
    );
    bob.cmd(json!({"cmd": "devices", "user": "alice"}));
    let d = bob.expect("devices", |v| v["event"] == "devices");
    assert_eq!(d["devices"], json!([a1_id]), "{d}");
    a2.sync();
    assert!(
        !a2.log.iter().any(|v| v["event"] == "message"),
        "a removed device started again reads nothing: {:#?}",
        a2.log
    );
    // What it writes in the private conversation is refused (no text leaves it), with a
    // clear error, and nothing waits: the sync barrier completes.
    a2.send("@bob", "canary-rm-5c1e from the removed device");
    let e = a2.expect("refused send", |v| v["event"] == "error");
    assert_eq!(e["code"], "removed_device", "{e}");
    a2.sync();
    bob.sync();
    assert!(
        !bob.log
            .iter()
            .any(|v| v["text"] == "canary-rm-5c1e from the removed device"),
        "{:#?}",
        bob.log
    );
    for c in [&mut a1, &mut bob] {
        let errors: Vec<&Value> = c
            .log
            .iter()
            .filter(|v| v["event"] == "error")
            .filter(|v| !v["message"].as_str().unwrap_or("").contains("remove"))
            .filter(|v| v["code"] != "not_found")
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", c.user);
    }
    drop((a1, a2, bob));
    server.stop();
    let mut files = files_under(&data);
    files.push(stderr_path(&data));
    assert!(!any_contains(&files, b"canary-rm-5c1e"));
}
