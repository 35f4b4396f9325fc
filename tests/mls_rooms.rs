//! Private (invite-only) rooms are end-to-end encrypted with MLS, through a real server and
//! real scripted clients: one group holding every device of every member. Messages go both
//! ways with a second device of the owner; a kicked member gets nothing after the kick; a
//! member invited later does not read what came before; the text never reaches the
//! server's disk or log. A public room stays server-readable and searchable.
//! (That a copy of a removed member's state cannot open later ciphertext is shown with
//! real openmls state in `src/app/mls/tests.rs`.)

mod common;

use common::{ChatProc, ServerProc, any_contains, files_under, stderr_path};
use serde_json::{Value, json};

const CANARY: &str = "canary-room-5be1c0";

fn message_with(text: String) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == "message" && v["text"] == text.as_str()
}

/// Sends `text` (prefixed with the canary) in `room` and checks it arrives end to end at
/// each of `to`.
fn says(from: &mut ChatProc, room: &str, text: &str, to: &mut [&mut ChatProc]) {
    let text = format!("{CANARY} {text}");
    from.send(room, &text);
    for c in to.iter_mut() {
        let what = format!("{text:?} on {}", c.user);
        let m = c.expect(&what, message_with(text.clone()));
        assert_eq!(m["e2e"], true, "{}: {m}", c.user);
        assert_eq!(m["conv"], room, "{m}");
    }
}

fn invite_and_accept(
    owner: &mut ChatProc,
    room: &str,
    who: &mut ChatProc,
    others: &mut [&mut ChatProc],
) {
    owner.cmd(json!({"cmd": "invite", "room": room, "user": who.user}));
    who.expect("invited", |v| v["event"] == "invited");
    who.cmd(json!({"cmd": "accept", "room": room}));
    let r = room.to_owned();
    who.expect("joined", |v| {
        v["event"] == "joined" && v["room"] == r.as_str()
    });
    let name = who.user.clone();
    for c in others.iter_mut() {
        c.expect("member joined", |v| {
            v["event"] == "member" && v["user"] == name.as_str() && v["change"] == "joined"
        });
    }
}

fn no_errors(c: &ChatProc) {
    let errors: Vec<&Value> = c.log.iter().filter(|v| v["event"] == "error").collect();
    assert!(errors.is_empty(), "{}: {errors:#?}", c.user);
}

#[test]
fn private_rooms_are_mls_groups_that_follow_membership_and_public_rooms_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let server = ServerProc::start_traced(&data, "127.0.0.1:0");
    let addr = server.addr.clone();
    let mut alice = ChatProc::login(&addr, "alice", &dir.path().join("a1"));
    let mut alice2 = ChatProc::login(&addr, "alice", &dir.path().join("a2"));
    let mut bob = ChatProc::login(&addr, "bob", &dir.path().join("b"));
    let mut carol = ChatProc::login(&addr, "carol", &dir.path().join("c"));
    alice.wait_listed("alice", 2);
    alice.wait_listed("bob", 1);
    alice.wait_listed("carol", 1);

    alice.cmd(json!({"cmd": "create_room", "room": "#secret", "visibility": "private"}));
    alice.expect("joined", |v| {
        v["event"] == "joined" && v["room"] == "#secret"
    });
    alice2.expect("joined on the other device", |v| {
        v["event"] == "joined" && v["room"] == "#secret"
    });
    invite_and_accept(&mut alice, "#secret", &mut bob, &mut [&mut alice2]);
    invite_and_accept(
        &mut alice,
        "#secret",
        &mut carol,
        &mut [&mut alice2, &mut bob],
    );

    // The first sender makes the group with every device of every member.
    says(
        &mut alice,
        "#secret",
        "hello room",
        &mut [&mut alice2, &mut bob, &mut carol],
    );
    says(
        &mut bob,
        "#secret",
        "hello from bob",
        &mut [&mut alice, &mut alice2, &mut carol],
    );
    says(
        &mut alice2,
        "#secret",
        "from alice's second device",
        &mut [&mut alice, &mut bob, &mut carol],
    );
    says(
        &mut carol,
        "#secret",
        "carol speaks",
        &mut [&mut alice, &mut alice2, &mut bob],
    );

    // Carol is kicked: the next sender removes her devices first; she gets nothing more.
    alice.cmd(json!({"cmd": "kick", "room": "#secret", "user": "carol"}));
    carol.expect("kicked", |v| {
        v["event"] == "left" && v["reason"] == "kicked"
    });
    for c in [&mut alice, &mut alice2, &mut bob] {
        c.expect("carol kicked", |v| {
            v["event"] == "member" && v["user"] == "carol" && v["change"] == "kicked"
        });
    }
    says(
        &mut bob,
        "#secret",
        "after carol left",
        &mut [&mut alice, &mut alice2],
    );
    says(
        &mut alice,
        "#secret",
        "still without carol",
        &mut [&mut alice2, &mut bob],
    );

    // Dave, invited later, reads from his join on, not before.
    let mut dave = ChatProc::login(&addr, "dave", &dir.path().join("d"));
    alice.wait_listed("dave", 1);
    invite_and_accept(
        &mut alice,
        "#secret",
        &mut dave,
        &mut [&mut alice2, &mut bob],
    );
    says(
        &mut alice,
        "#secret",
        "welcome dave",
        &mut [&mut alice2, &mut bob, &mut dave],
    );
    says(
        &mut dave,
        "#secret",
        "dave answers",
        &mut [&mut alice, &mut alice2, &mut bob],
    );
    for c in [&mut alice, &mut alice2, &mut bob, &mut dave] {
        c.sync();
    }
    carol.sync();
    let later = format!("{CANARY} after carol left");
    let carol_saw: Vec<&Value> = carol
        .log
        .iter()
        .filter(|v| v["event"] == "message")
        .collect();
    assert!(
        !carol_saw.iter().any(|v| v["text"] == later.as_str()
            || v["text"].as_str().is_some_and(|t| t.contains("dave"))),
        "carol read after her kick: {carol_saw:#?}"
    );
    let early = format!("{CANARY} hello room");
    assert!(
        !dave.log.iter().any(|v| v["text"] == early.as_str()),
        "dave read a message from before he joined"
    );

    // A public room stays server-readable: not `e2e`, and the server finds its words.
    alice.cmd(json!({"cmd": "create_room", "room": "#open", "visibility": "public"}));
    alice.expect("joined", |v| v["event"] == "joined" && v["room"] == "#open");
    bob.cmd(json!({"cmd": "join", "room": "#open"}));
    bob.expect("joined", |v| v["event"] == "joined" && v["room"] == "#open");
    alice.send("#open", "readable zebrafinch words");
    let m = bob.expect("public message", |v| {
        v["event"] == "message" && v["text"] == "readable zebrafinch words"
    });
    assert_ne!(m["e2e"], true, "{m}");
    bob.cmd(json!({"cmd": "search", "query": "zebrafinch"}));
    let s = bob.expect("search", |v| {
        v["event"] == "search" || v["event"] == "error"
    });
    let hits = s["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(hits.len(), 1, "{s}");
    assert_eq!(hits[0]["conv"], "#open", "{s}");
    // A private room is searched on the device (the server holds only ciphertext): bob
    // finds what his device decrypted there.
    bob.cmd(json!({"cmd": "search", "query": "welcome dave", "conv": "#secret"}));
    let s = bob.expect("search", |v| {
        v["event"] == "search" || v["event"] == "error"
    });
    assert_eq!(s["event"], "search", "{s}");
    let hits = s["results"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{s}");
    assert_eq!(hits[0]["text"], format!("{CANARY} welcome dave"), "{s}");

    for c in [&alice, &alice2, &bob, &carol, &dave] {
        no_errors(c);
    }
    drop(dave);
    drop(carol);
    drop(bob);
    drop(alice2);
    drop(alice);
    server.stop();
    let mut files = files_under(&data);
    files.push(stderr_path(&data));
    assert!(
        !any_contains(&files, CANARY.as_bytes()),
        "a private room's text reached the server's disk or logs"
    );
    // The public room's text is on the server's disk, as it should be: the check above
    // can fail.
    assert!(any_contains(&files, b"zebrafinch"));
}
