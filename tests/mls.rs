//! End-to-end encryption with MLS through a real server and real scripted clients: a
//! device is a state dir, so each user here runs with two homes. Direct messages are MLS
//! groups of every device of both users; a new device is added and reads from then on;
//! peers are told of devices; safety codes match on both sides, `verify` checks them and a
//! device change breaks the verification; the text never reaches the server's disk or log.

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
