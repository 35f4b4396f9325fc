//! Read state, seen receipts, typing and mentions end to end: a real headless server and
//! real scripted clients (the `livewire` binary). A read marker reaches the user's other
//! session, never moves back and survives a restart of the client and of the server; seen
//! receipts reach the other members of a private conversation and of a room of at most 20
//! members, never a bigger room, and never to or from a user who turned them off; typing
//! is forwarded once per interval and never stored; mentions name members and mark the
//! mentioned user only.

mod common;

use common::*;
use serde_json::{Value, json};

fn setup() -> (tempfile::TempDir, ServerProc) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("server"), "127.0.0.1:0", &[]);
    (dir, server)
}

/// Events of `kind` among `events`.
fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|v| v["event"] == kind).collect()
}

fn read(c: &mut ChatProc, conv: &str, upto: Option<u64>) {
    match upto {
        Some(upto) => c.cmd(json!({"cmd": "read", "conv": conv, "upto": upto})),
        None => c.cmd(json!({"cmd": "read", "conv": conv})),
    }
}

/// Sends and waits for the acknowledgement; returns the sequence number.
fn post(c: &mut ChatProc, to: &str, text: &str) -> u64 {
    c.send(to, text);
    let text = text.to_owned();
    let v = c.expect("sent", |v| {
        (v["event"] == "sent" && v["text"] == text.as_str()) || v["event"] == "error"
    });
    assert_eq!(v["event"], "sent", "{v}");
    v["seq"].as_u64().unwrap()
}

fn got(c: &mut ChatProc, text: &str) -> Value {
    let text = text.to_owned();
    c.expect("message", |v| {
        v["event"] == "message" && v["text"] == text.as_str()
    })
}

/// A second session of `user` with its own state (another device).
fn second_device(server: &ServerProc, user: &str, home: &std::path::Path) -> ChatProc {
    ChatProc::login_under(
        &[],
        &server.addr,
        user,
        ClientOpts::new(&home.join("phone")),
    )
}

#[test]
fn a_read_marker_reaches_the_other_session_never_moves_back_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = ServerProc::start(&data, "127.0.0.1:0", &[]);
    let home = dir.path();
    let mut laptop = ChatProc::login(&server.addr, "alice", home);
    let mut phone = second_device(&server, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    for i in 1..=3 {
        post(&mut bob, "#general", &format!("m{i}"));
    }
    got(&mut laptop, "m3");
    got(&mut phone, "m3");

    read(&mut laptop, "#general", Some(2));
    laptop.sync();
    let r = phone.expect("read", |v| v["event"] == "read");
    assert_eq!(r, json!({"event": "read", "conv": "#general", "upto": 2}));
    assert!(
        of(&bob.sync(), "seen").is_empty(),
        "#general has no receipts"
    );

    // Never back: a lower marker is a no-op, not an error, and nobody hears of it.
    read(&mut laptop, "#general", Some(1));
    read(&mut phone, "#general", Some(2));
    let quiet = [laptop.sync(), phone.sync()].concat();
    assert!(of(&quiet, "read").is_empty(), "{quiet:?}");
    assert!(of(&quiet, "error").is_empty(), "{quiet:?}");

    // The phone reads the rest (no `upto`: the newest it has).
    read(&mut phone, "#general", None);
    phone.sync();
    let r = laptop.expect("read", |v| v["event"] == "read");
    assert_eq!(r["upto"], 3);

    // A restart of the client and of the server: the marker is learnt at login.
    let (_, _) = phone.finish_ok();
    let (_, _) = laptop.finish_ok();
    server.stop();
    let server = ServerProc::start(&data, "127.0.0.1:0", &[]);
    let mut phone = second_device(&server, "alice", home);
    let r = phone.expect("read", |v| v["event"] == "read");
    assert_eq!(r, json!({"event": "read", "conv": "#general", "upto": 3}));
    phone.expect("receipts", |v| v["event"] == "receipts" && v["on"] == true);
    // Unknown conversations are refused with a clear error.
    read(&mut phone, "#nowhere", Some(1));
    let e = phone.expect("error", |v| v["event"] == "error");
    assert_eq!(e["code"], "no_such_room");
    phone.finish_ok();
}

/// Seeds alice, bob and `u01`…`u19` into the data dir's store, with a room of 20
/// members (`#small`: alice, bob, u01…u18) and one of 21 (`#big`: everyone), so the
/// case needs two Argon2 logins, not 21.
fn seed(data: &std::path::Path) {
    use livewire::app::rooms::{Change, Room, RoomName, Visibility};
    use livewire::app::store::Store;
    let phc = livewire::transport::auth::hash_password(PASSWORD).unwrap();
    let mut store = livewire::store::SqliteStore::open(data).unwrap();
    store.begin().unwrap();
    let mut users = vec!["alice".to_owned(), "bob".to_owned()];
    users.extend((1..=19).map(|i| format!("u{i:02}")));
    for u in &users {
        assert!(store.create_user(u, u, &format!("~{u}"), &phc).unwrap());
    }
    for (name, n) in [("#small", 20), ("#big", 21)] {
        let mut room = Room::new(
            RoomName::parse_new(name).unwrap(),
            String::new(),
            Visibility::Public,
            "alice",
        );
        store.create_room(&room).unwrap();
        for u in &users[1..n] {
            let fx = room.apply(Change::Join { user: u.clone() }, 0).unwrap();
            store.room_changed(&room, &fx, u).unwrap();
        }
    }
    store.commit().unwrap();
}

#[test]
fn seen_receipts_in_a_private_conversation_and_a_small_room_never_in_a_big_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    seed(&data);
    let server = ServerProc::start(&data, "127.0.0.1:0", &[]);
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);

    // A private conversation (end to end: the server sees only the marker).
    // (Its first sequence number is the MLS commit that made the group: the message's
    // own number is what is read.)
    let first = post(&mut alice, "@bob", "are you there?");
    got(&mut bob, "are you there?");
    read(&mut bob, "@alice", None);
    bob.sync();
    let s = alice.expect("seen", |v| v["event"] == "seen");
    assert_eq!(
        s,
        json!({"event": "seen", "conv": "@bob", "user": "bob", "upto": first})
    );
    // "Seen by" on request, for a session that came late.
    alice.cmd(json!({"cmd": "seen_by", "conv": "@bob"}));
    let sb = alice.expect("seen_by", |v| v["event"] == "seen_by");
    assert_eq!(sb["members"], json!([{"user": "bob", "upto": first}]));

    // 20 members: receipts; 21: none.
    let small = post(&mut alice, "#small", "twenty of us");
    let big = post(&mut alice, "#big", "twenty-one of us");
    got(&mut bob, "twenty of us");
    got(&mut bob, "twenty-one of us");
    read(&mut bob, "#small", Some(small));
    read(&mut bob, "#big", Some(big));
    bob.sync();
    let seen = of(&alice.sync(), "seen")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(
        seen,
        [json!({"event": "seen", "conv": "#small", "user": "bob", "upto": small})]
    );
    alice.cmd(json!({"cmd": "seen_by", "conv": "#big"}));
    let sb = alice.expect("seen_by", |v| v["event"] == "seen_by");
    assert_eq!(sb["members"], json!([]));
    alice.finish_ok();
    bob.finish_ok();
}

#[test]
fn receipts_off_means_none_sent_and_none_received() {
    let (dir, server) = setup();
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    alice.cmd(json!({"cmd": "receipts", "on": false}));
    alice.expect("receipts", |v| v["event"] == "receipts" && v["on"] == false);
    post(&mut bob, "@alice", "from bob");
    got(&mut alice, "from bob");
    post(&mut alice, "@bob", "from alice");
    got(&mut bob, "from alice");

    read(&mut alice, "@bob", None);
    alice.sync();
    assert!(of(&bob.sync(), "seen").is_empty(), "alice sent a receipt");
    read(&mut bob, "@alice", None);
    bob.sync();
    assert!(of(&alice.sync(), "seen").is_empty(), "alice got a receipt");
    bob.cmd(json!({"cmd": "seen_by", "conv": "@alice"}));
    let sb = bob.expect("seen_by", |v| v["event"] == "seen_by");
    assert_eq!(sb["members"], json!([]));
    alice.cmd(json!({"cmd": "seen_by", "conv": "@bob"}));
    let sb = alice.expect("seen_by", |v| v["event"] == "seen_by");
    assert_eq!(sb["members"], json!([]));

    // The setting is the server's: another device learns it at login.
    let mut phone = second_device(&server, "alice", home);
    phone.expect("receipts", |v| v["event"] == "receipts");
    assert_eq!(of(&phone.log, "receipts")[0]["on"], false);
    // On again (from the phone): both ways again.
    phone.cmd(json!({"cmd": "receipts", "on": true}));
    alice.expect("receipts on", |v| {
        v["event"] == "receipts" && v["on"] == true
    });
    // (The phone is a new MLS device of alice's: bob's send adds it, then it reads.)
    let again = post(&mut bob, "@alice", "again");
    got(&mut phone, "again");
    read(&mut phone, "@bob", None);
    phone.sync();
    let s = bob.expect("seen", |v| v["event"] == "seen");
    assert_eq!(s["user"], "alice");
    assert_eq!(s["upto"], again);
    for c in [alice, bob, phone] {
        c.finish_ok();
    }
}

#[test]
fn typing_is_forwarded_rate_limited_and_never_stored() {
    let (dir, server) = setup();
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let mut carol = ChatProc::login(&server.addr, "carol", home);
    // Five notices at once: one goes out (the next would be 3 s later).
    for _ in 0..5 {
        alice.cmd(json!({"cmd": "typing", "conv": "@bob"}));
    }
    alice.sync();
    let t = of(&bob.sync(), "typing")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(
        t,
        [json!({"event": "typing", "conv": "@alice", "user": "alice"})]
    );
    assert!(
        of(&carol.sync(), "typing").is_empty(),
        "carol saw a private notice"
    );
    assert!(
        of(&alice.sync(), "typing").is_empty(),
        "alice saw her own notice"
    );
    // In #general everyone else hears it.
    bob.cmd(json!({"cmd": "typing", "conv": "#general"}));
    bob.sync();
    let t = carol.expect("typing", |v| v["event"] == "typing");
    assert_eq!(t["conv"], "#general");
    assert_eq!(t["user"], "bob");
    // Not a message: nothing in history.
    bob.cmd(json!({"cmd": "history", "conv": "@alice"}));
    let h = bob.expect("history", |v| v["event"] == "history");
    assert_eq!(h["messages"], json!([]), "{h}");
    // Outsiders cannot type into a conversation that is not theirs.
    carol.cmd(json!({"cmd": "typing", "conv": "#nowhere"}));
    let e = carol.expect("error", |v| v["event"] == "error");
    assert_eq!(e["code"], "no_such_room");
    for c in [alice, bob, carol] {
        c.finish_ok();
    }
}

#[test]
fn mentions_are_listed_and_mark_only_the_mentioned_user() {
    let (dir, server) = setup();
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "Bob", home);
    let mut carol = ChatProc::login(&server.addr, "carol", home);
    alice.cmd(json!({"cmd": "create_room", "room": "#team"}));
    alice.expect("joined", |v| v["event"] == "joined");
    bob.cmd(json!({"cmd": "join", "room": "#team"}));
    bob.expect("joined", |v| v["event"] == "joined");

    // A room: members only (carol is not in #team), any case, each once.
    post(&mut alice, "#team", "@BOB and @carol: ask @bob.");
    let m = got(&mut bob, "@BOB and @carol: ask @bob.");
    assert_eq!(m["mentions"], json!(["Bob"]));
    assert_eq!(m["mentions_me"], true);
    post(&mut alice, "#team", "nobody named");
    let m = got(&mut bob, "nobody named");
    assert!(
        m.get("mentions").is_none() && m.get("mentions_me").is_none(),
        "{m}"
    );

    // #general: every user is a member; only the mentioned one is marked.
    post(&mut alice, "#general", "hi @Carol, mail bob@example.org");
    let c = got(&mut carol, "hi @Carol, mail bob@example.org");
    assert_eq!(c["mentions"], json!(["carol"]));
    assert_eq!(c["mentions_me"], true);
    let b = got(&mut bob, "hi @Carol, mail bob@example.org");
    assert_eq!(b["mentions"], json!(["carol"]));
    assert!(b.get("mentions_me").is_none(), "{b}");

    // Private: found by the clients after decryption.
    post(&mut carol, "@bob", "@bob, @alice said hi");
    let m = got(&mut bob, "@bob, @alice said hi");
    assert_eq!(m["mentions"], json!(["Bob"]));
    assert_eq!(m["mentions_me"], true);

    // History pages carry the mark.
    bob.cmd(json!({"cmd": "history", "conv": "#team"}));
    let h = bob.expect("history", |v| v["event"] == "history");
    let marks: Vec<bool> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mentions_me"] == true)
        .collect();
    assert_eq!(marks, [true, false], "{h}");
    for c in [alice, bob, carol] {
        c.finish_ok();
    }
}
