//! Rooms end to end: a real headless server and real scripted clients (the `livewire`
//! binary). Membership is enforced on every path, invitations survive being offline and a
//! restart, kick and ban take effect at once mid-burst, moderation rights are the server's
//! to check, and P1–P7 hold per room. The big cases (a room of 500 members, 20 rooms per
//! user) seed the accounts straight into the data dir's store, so they run in seconds in a
//! debug build; everything after that goes through the whole server.

mod common;

use common::*;
use serde_json::{Value, json};

fn setup(extra: &[&str]) -> (tempfile::TempDir, ServerProc) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("server"), "127.0.0.1:0", extra);
    (dir, server)
}

fn error(c: &mut ChatProc, code: &str) -> Value {
    let code = code.to_owned();
    let v = c.expect("error", |v| v["event"] == "error");
    assert_eq!(v["code"], code.as_str(), "{}: {v}", c.user);
    v
}

fn create(c: &mut ChatProc, room: &str, topic: &str, visibility: &str) {
    c.cmd(json!({"cmd": "create_room", "room": room, "topic": topic, "visibility": visibility}));
    let room = room.to_owned();
    let v = c.expect("joined", |v| {
        v["event"] == "joined" || v["event"] == "error"
    });
    assert_eq!(v["event"], "joined", "{v}");
    assert_eq!(v["room"], room.as_str());
    assert_eq!(v["role"], "owner");
}

fn join(c: &mut ChatProc, room: &str) -> Value {
    c.cmd(json!({"cmd": "join", "room": room}));
    c.expect("joined or error", |v| {
        v["event"] == "joined" || v["event"] == "error"
    })
}

fn room_messages<'a>(log: &'a [Value], room: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|v| v["event"] == "message" && v["conv"] == room)
        .collect()
}

#[test]
fn directory_join_invite_roles_and_topic() {
    let (dir, mut server) = setup(&[]);
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let mut carol = ChatProc::login(&server.addr, "carol", home);
    create(&mut alice, "#Design", "Design reviews", "public");
    create(&mut alice, "#secret", "", "private");
    server.expect("room_created", |v| {
        v["event"] == "room_created" && v["room"] == "#Design" && v["by"] == "alice"
    });
    // Look-alikes and #general are taken.
    for taken in ["#de.sign", "#DESIGN", "#genera1"] {
        bob.cmd(json!({"cmd": "create_room", "room": taken}));
        error(&mut bob, "room_exists");
    }
    // The directory: public rooms, filtered by name or topic; never someone else's
    // private room.
    bob.cmd(json!({"cmd": "rooms", "filter": "REVIEW"}));
    let list = bob.expect("rooms", |v| v["event"] == "rooms");
    assert_eq!(list["rooms"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["rooms"][0]["room"], "#Design");
    assert_eq!(list["rooms"][0]["members"], 1);
    bob.cmd(json!({"cmd": "rooms"}));
    let all = bob.expect("rooms", |v| v["event"] == "rooms");
    assert!(!all.to_string().contains("secret"), "{all}");
    // A private room does not exist for outsiders, on any path.
    for cmd in [
        json!({"cmd": "join", "room": "#secret"}),
        json!({"cmd": "members", "room": "#secret"}),
        json!({"cmd": "leave", "room": "#secret"}),
        json!({"cmd": "send", "to": "#secret", "text": "hi?"}),
        json!({"cmd": "history", "conv": "#secret"}),
    ] {
        carol.cmd(cmd);
        error(&mut carol, "no_such_room");
    }
    // A public room: not a member yet.
    carol.cmd(json!({"cmd": "send", "to": "#design", "text": "knock"}));
    error(&mut carol, "not_member");
    carol.cmd(json!({"cmd": "history", "conv": "#design"}));
    error(&mut carol, "not_member");

    // Joining a public room; the members hear it.
    let j = join(&mut bob, "#design");
    assert_eq!(j["event"], "joined", "{j}");
    assert_eq!(j["members"], 2);
    assert_eq!(j["role"], "member");
    alice.expect("member joined", |v| {
        v["event"] == "member" && v["user"] == "bob" && v["change"] == "joined"
    });
    assert_eq!(join(&mut bob, "#design")["code"], "already_member");

    // Private: history starts when one joins.
    alice.send("#secret", "before carol");
    alice.expect("sent", |v| v["event"] == "sent");
    alice.cmd(json!({"cmd": "invite", "room": "#secret", "user": "carol"}));
    let inv = carol.expect("invited", |v| v["event"] == "invited");
    assert_eq!(inv["room"], "#secret");
    assert_eq!(inv["by"], "alice");
    alice.expect("member invited", |v| {
        v["event"] == "member" && v["change"] == "invited" && v["user"] == "carol"
    });
    carol.cmd(json!({"cmd": "accept", "room": "#secret"}));
    carol.expect("joined", |v| {
        v["event"] == "joined" && v["room"] == "#secret"
    });
    alice.send("#secret", "after carol");
    carol.expect("message", |v| {
        v["event"] == "message" && v["text"] == "after carol"
    });
    carol.cmd(json!({"cmd": "history", "conv": "#secret"}));
    let h = carol.expect("history", |v| v["event"] == "history");
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["after carol"], "{h}");
    assert!(room_messages(&carol.log, "#secret").len() == 1);

    // Members with roles and presence.
    carol.cmd(json!({"cmd": "members", "room": "#secret"}));
    let m = carol.expect("members", |v| v["event"] == "members");
    let members = m["members"].as_array().unwrap();
    assert!(members.contains(&json!({"user": "alice", "role": "owner", "online": true})));
    assert!(members.contains(&json!({"user": "carol", "role": "member", "online": true})));

    // Topic: moderators only; promote/demote: the owner only.
    bob.cmd(json!({"cmd": "topic", "room": "#design", "topic": "mine now"}));
    error(&mut bob, "not_allowed");
    carol.cmd(json!({"cmd": "join", "room": "#design"}));
    carol.expect("joined", |v| v["event"] == "joined");
    bob.cmd(json!({"cmd": "promote", "room": "#design", "user": "carol"}));
    error(&mut bob, "not_allowed");
    alice.cmd(json!({"cmd": "promote", "room": "#design", "user": "bob"}));
    bob.expect("promoted", |v| {
        v["event"] == "member" && v["user"] == "bob" && v["change"] == "promoted"
    });
    bob.cmd(json!({"cmd": "topic", "room": "#design", "topic": "Reviews on Fridays"}));
    let t = carol.expect("topic", |v| v["event"] == "topic");
    assert_eq!(t["topic"], "Reviews on Fridays");
    assert_eq!(t["by"], "bob");
    // A moderator cannot act on the owner, nor promote.
    bob.cmd(json!({"cmd": "kick", "room": "#design", "user": "alice"}));
    error(&mut bob, "not_allowed");
    bob.cmd(json!({"cmd": "promote", "room": "#design", "user": "carol"}));
    error(&mut bob, "not_allowed");
    alice.cmd(json!({"cmd": "demote", "room": "#design", "user": "bob"}));
    bob.expect("demoted", |v| {
        v["event"] == "member" && v["change"] == "demoted"
    });
    bob.cmd(json!({"cmd": "topic", "room": "#design", "topic": "again"}));
    error(&mut bob, "not_allowed");

    // The owner leaves: the longest-serving member takes over; the last one closes it.
    alice.cmd(json!({"cmd": "leave", "room": "#secret"}));
    alice.expect("left", |v| v["event"] == "left" && v["reason"] == "left");
    carol.expect("owner", |v| {
        v["event"] == "member" && v["user"] == "carol" && v["change"] == "owner"
    });
    carol.cmd(json!({"cmd": "leave", "room": "#secret"}));
    carol.expect("left", |v| v["event"] == "left" && v["room"] == "#secret");
    server.expect("room_closed", |v| {
        v["event"] == "room_closed" && v["room"] == "#secret"
    });
    let mut records = Vec::new();
    let logs: Vec<(String, Vec<Value>)> = [alice, bob, carol]
        .into_iter()
        .map(ChatProc::finish_ok)
        .collect();
    for (user, log) in &logs {
        records.push(Record { user, log });
    }
    check_properties(&records, &[]);
}

#[test]
fn invitations_reach_offline_users_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let home = dir.path();
    let server = ServerProc::start(&data, "127.0.0.1:0", &[]);
    let bob = ChatProc::login(&server.addr, "bob", home);
    bob.finish_ok();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    create(&mut alice, "#ops", "On call", "private");
    alice.cmd(json!({"cmd": "invite", "room": "#ops", "user": "bob"}));
    alice.expect("member invited", |v| {
        v["event"] == "member" && v["change"] == "invited"
    });
    alice.send("#ops", "first");
    alice.expect("sent", |v| v["event"] == "sent");
    alice.finish_ok();
    server.stop();

    let server = ServerProc::start(&data, "127.0.0.1:0", &[]);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let state = bob.expect("room_state", |v| v["event"] == "room_state");
    assert_eq!(
        state["invitations"],
        json!([{"room": "#ops", "by": "alice", "topic": "On call"}]),
        "{state}"
    );
    bob.cmd(json!({"cmd": "decline", "room": "#ops"}));
    bob.expect("declined", |v| {
        v["event"] == "member" && v["change"] == "declined"
    });
    bob.cmd(json!({"cmd": "join", "room": "#ops"}));
    error(&mut bob, "no_such_room");
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let state = alice.expect("room_state", |v| v["event"] == "room_state");
    assert_eq!(state["rooms"][0]["room"], "#ops");
    assert_eq!(state["rooms"][0]["role"], "owner");
    alice.cmd(json!({"cmd": "invite", "room": "#ops", "user": "bob"}));
    bob.expect("invited", |v| v["event"] == "invited");
    assert_eq!(join(&mut bob, "#ops")["event"], "joined");
    alice.send("#ops", "welcome");
    let m = bob.expect("message", |v| v["event"] == "message");
    assert_eq!(m["text"], "welcome");
    assert_eq!(m["conv"], "#ops");
    // Reconnect and offline delivery in a room: bob away, alice writes, bob catches up.
    bob.finish_ok();
    for i in 0..5 {
        alice.send("#ops", &format!("while away {i}"));
    }
    alice.sync();
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    bob.sync();
    let (_, blog) = bob.finish_ok();
    let got: Vec<&str> = room_messages(&blog, "#ops")
        .iter()
        .filter_map(|v| v["text"].as_str())
        .collect();
    assert_eq!(
        got,
        (0..5)
            .map(|i| format!("while away {i}"))
            .collect::<Vec<_>>(),
        "bob's catch-up: nothing missed, nothing twice"
    );
    alice.finish_ok();
}

#[test]
fn kick_and_ban_take_effect_at_once_mid_burst() {
    let (dir, _server) = setup(&["--msg-burst", "10000", "--msg-rate", "10000"]);
    let home = dir.path();
    let addr = _server.addr.clone();
    let mut alice = ChatProc::login(&addr, "alice", home);
    let mut bob = ChatProc::login(&addr, "bob", home);
    let mut carol = ChatProc::login(&addr, "carol", home);
    create(&mut alice, "#burst", "", "public");
    assert_eq!(join(&mut bob, "#burst")["event"], "joined");
    assert_eq!(join(&mut carol, "#burst")["event"], "joined");
    alice.cmd(json!({"cmd": "promote", "room": "#burst", "user": "carol"}));
    alice.sync();
    // Carol (a moderator) kicks bob while alice's burst is in flight.
    for i in 0..400 {
        alice.send("#burst", &format!("burst {i} {}", "x".repeat(200)));
    }
    carol.cmd(json!({"cmd": "kick", "room": "#burst", "user": "bob"}));
    for i in 0..50 {
        alice.send("#burst", &format!("after {i}"));
    }
    let left = bob.expect("left", |v| v["event"] == "left");
    assert_eq!(left["reason"], "kicked");
    assert_eq!(left["by"], "carol");
    alice.sync();
    bob.sync();
    let at = bob.log.iter().position(|v| v["event"] == "left").unwrap();
    let late: Vec<&Value> = bob.log[at..]
        .iter()
        .filter(|v| v["event"] == "message" && v["conv"] == "#burst")
        .collect();
    assert!(
        late.is_empty(),
        "bob got room messages after his removal: {late:?}"
    );
    bob.send("#burst", "still here?");
    error(&mut bob, "not_member");
    carol.expect("kicked", |v| {
        v["event"] == "member" && v["change"] == "kicked"
    });
    // Kicked from a public room: may rejoin. Banned: kept out until unbanned.
    assert_eq!(join(&mut bob, "#burst")["event"], "joined");
    carol.cmd(json!({"cmd": "ban", "room": "#burst", "user": "bob"}));
    let left = bob.expect("left", |v| v["event"] == "left");
    assert_eq!(left["reason"], "banned");
    assert_eq!(join(&mut bob, "#burst")["code"], "banned");
    bob.cmd(json!({"cmd": "history", "conv": "#burst"}));
    error(&mut bob, "not_member");
    carol.cmd(json!({"cmd": "unban", "room": "#burst", "user": "bob"}));
    carol.expect("unbanned", |v| {
        v["event"] == "member" && v["change"] == "unbanned"
    });
    assert_eq!(join(&mut bob, "#burst")["event"], "joined");

    // A moderator deletes anyone's message for everyone.
    alice.send("#burst", "delete me");
    let sent = alice.expect("sent", |v| v["event"] == "sent" && v["text"] == "delete me");
    carol.expect("message", |v| v["text"] == "delete me");
    carol.cmd(json!({"cmd": "delete", "id": sent["id"], "for": "everyone"}));
    for c in [&mut alice, &mut bob, &mut carol] {
        let id = sent["id"].clone();
        c.expect("deleted", move |v| {
            v["event"] == "deleted" && v["id"] == id && v["for"] == "everyone"
        });
    }
    // A plain member cannot.
    carol.send("#burst", "carol's");
    let c_sent = carol.expect("sent", |v| v["event"] == "sent" && v["text"] == "carol's");
    bob.expect("message", |v| v["text"] == "carol's");
    bob.cmd(json!({"cmd": "delete", "id": c_sent["id"], "for": "everyone"}));
    error(&mut bob, "not_author");

    let logs: Vec<(String, Vec<Value>)> = [alice, carol]
        .into_iter()
        .map(ChatProc::finish_ok)
        .collect();
    let records: Vec<Record> = logs
        .iter()
        .map(|(u, l)| Record { user: u, log: l })
        .collect();
    check_properties(&records, &["alice", "carol"]);
    drop(bob);
}

#[test]
fn properties_hold_per_room_with_files_and_a_kicked_member_cannot_download() {
    let (dir, _server) = setup(&["--msg-burst", "1000", "--msg-rate", "1000"]);
    let home = dir.path();
    let addr = _server.addr.clone();
    let names = ["alice", "bob", "carol", "dave"];
    let mut c: Vec<ChatProc> = names
        .iter()
        .map(|n| ChatProc::login(&addr, n, home))
        .collect();
    create(&mut c[0], "#team", "", "private");
    create(&mut c[3], "#other", "", "public");
    for u in ["bob", "carol"] {
        c[0].cmd(json!({"cmd": "invite", "room": "#team", "user": u}));
    }
    for p in &mut c[1..3] {
        p.expect("invited", |v| v["event"] == "invited");
        assert_eq!(join(p, "#team")["event"], "joined");
    }
    for round in 0..20 {
        for i in 0..3 {
            c[i].send("#team", &format!("{} says {round}", names[i]));
        }
        c[3].send("#other", &format!("elsewhere {round}"));
    }
    // A file in the room.
    let src = dir.path().join("plan.txt");
    std::fs::write(&src, b"the plan: ship rooms").unwrap();
    c[0].cmd(json!({"cmd": "send_file", "to": "#team", "path": src}));
    c[0].expect("sent file", |v| {
        v["event"] == "sent" && v["file"]["name"] == "plan.txt"
    });
    let m = c[2].expect("file", |v| {
        v["event"] == "message" && v["file"]["name"] == "plan.txt"
    });
    let out = dir.path().join("plan.copy");
    c[2].cmd(json!({"cmd": "download", "id": m["id"], "path": out}));
    let d = c[2].expect("downloaded", |v| {
        v["event"] == "downloaded" || v["event"] == "error"
    });
    assert_eq!(d["event"], "downloaded", "{d}");
    assert_eq!(std::fs::read(&out).unwrap(), b"the plan: ship rooms");
    for p in c.iter_mut() {
        p.sync();
    }
    // Removed, the file is out of reach too.
    c[0].cmd(json!({"cmd": "kick", "room": "#team", "user": "carol"}));
    c[2].expect("left", |v| v["event"] == "left");
    let out2 = dir.path().join("plan.again");
    c[2].cmd(json!({"cmd": "download", "id": m["id"], "path": out2}));
    let d = c[2].expect("error", |v| {
        v["event"] == "downloaded" || v["event"] == "error"
    });
    assert_eq!(d["event"], "error", "{d}");
    assert!(!out2.exists());
    // Dave (not in #team) saw none of it.
    let logs: Vec<(String, Vec<Value>)> = c.into_iter().map(ChatProc::finish_ok).collect();
    assert!(room_messages(&logs[3].1, "#team").is_empty());
    for (user, log) in &logs[..3] {
        let n = room_messages(log, "#team").len();
        assert!(n >= 40, "{user} saw {n} of the 41 others' #team messages");
        assert!(room_messages(log, "#other").is_empty(), "{user} saw #other");
    }
    let records: Vec<Record> = logs[..3]
        .iter()
        .map(|(u, l)| Record { user: u, log: l })
        .collect();
    check_properties(&records, &["alice", "bob", "carol"]);
}

/// A room of 500 members and a user in 20 rooms, through the whole server: 499 accounts
/// and their membership are written into the data dir's store before the server starts
/// (500 Argon2 registrations would take minutes in a debug build); the 500th member joins
/// live, and three members online exchange messages while the rest are offline.
#[test]
fn five_hundred_members_and_twenty_rooms_per_user() {
    use livewire::app::rooms::{Change, Room, RoomName, Visibility};
    use livewire::app::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let phc = livewire::transport::auth::hash_password(PASSWORD).unwrap();
    {
        let mut store = livewire::store::SqliteStore::open(&data).unwrap();
        store.begin().unwrap();
        let mut big = Room::new(
            RoomName::parse_new("#big").unwrap(),
            "everyone".into(),
            Visibility::Public,
            "u000",
        );
        store.create_room(&big).unwrap();
        for i in 0..499 {
            let u = format!("u{i:03}");
            assert!(store.create_user(&u, &u, &format!("~{u}"), &phc).unwrap());
            if i > 0 {
                let fx = big.apply(Change::Join { user: u.clone() }, 0).unwrap();
                store.room_changed(&big, &fx, &u).unwrap();
            }
        }
        store.commit().unwrap();
    }
    let server = ServerProc::start(
        &data,
        "127.0.0.1:0",
        &["--msg-burst", "100", "--msg-rate", "100"],
    );
    let home = dir.path();
    let t = std::time::Instant::now();
    let mut a = ChatProc::login(&server.addr, "u000", home);
    let mut b = ChatProc::login(&server.addr, "u498", home);
    let mut z = ChatProc::login(&server.addr, "zed", home);
    let j = join(&mut z, "#big");
    assert_eq!(j["members"], 500, "{j}");
    a.expect("zed joined", |v| {
        v["event"] == "member" && v["user"] == "zed"
    });
    a.cmd(json!({"cmd": "members", "room": "#big"}));
    let m = a.expect("members", |v| v["event"] == "members");
    assert_eq!(m["members"].as_array().unwrap().len(), 500);
    for i in 0..20 {
        a.send("#big", &format!("to all {i}"));
        b.send("#big", &format!("back {i}"));
    }
    // Twenty rooms for zed.
    for i in 0..20 {
        create(&mut b, &format!("#r{i:02}"), "", "public");
        assert_eq!(join(&mut z, &format!("#r{i:02}"))["event"], "joined");
        b.send(&format!("#r{i:02}"), &format!("in r{i:02}"));
    }
    for p in [&mut a, &mut b, &mut z] {
        p.sync();
    }
    let (_, zlog) = z.finish_ok();
    for i in 0..20 {
        assert_eq!(
            room_messages(&zlog, &format!("#r{i:02}")).len(),
            1,
            "#r{i:02}"
        );
    }
    assert_eq!(room_messages(&zlog, "#big").len(), 40);
    let mut z = ChatProc::login(&server.addr, "zed", home);
    let state = z.expect("room_state", |v| v["event"] == "room_state");
    assert_eq!(state["rooms"].as_array().unwrap().len(), 21, "{state}");
    z.sync();
    let (_, zlog2) = z.finish_ok();
    assert!(
        room_messages(&zlog2, "#big").is_empty(),
        "caught up, nothing twice"
    );
    // P1–P7 over #big (u000 is in none of the twenty rooms).
    let big_only = |(u, l): (String, Vec<Value>)| {
        let l: Vec<Value> = l.into_iter().filter(|v| v["conv"] == "#big").collect();
        (u, l)
    };
    let logs = [big_only(a.finish_ok()), big_only(b.finish_ok())];
    let records: Vec<Record> = logs
        .iter()
        .map(|(u, l)| Record { user: u, log: l })
        .collect();
    check_properties(&records, &["u000", "u498"]);
    eprintln!("500 members, 20 rooms: {:?}", t.elapsed());
}

/// The `streams` figure of a client, once its closing streams have finished: the labels of
/// the conversation streams it holds open.
fn open_streams(c: &mut ChatProc) -> Vec<String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        c.cmd(json!({"cmd": "streams"}));
        let s = c.expect("streams", |v| v["event"] == "streams");
        let open: Vec<String> = s["open"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        // `reading` counts the streams the server has not finished yet: closing ones too.
        if s["reading"] == open.len() {
            return open;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: closing streams never finished: {s}",
            c.user
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn count_texts(log: &[Value], room: &str, text: &str) -> usize {
    room_messages(log, room)
        .iter()
        .filter(|v| v["text"] == text)
        .count()
}

#[test]
fn a_removed_member_s_room_stream_closes_and_a_rejoin_reopens_it_exactly_once() {
    let (dir, _server) = setup(&[]);
    let home = dir.path();
    let addr = _server.addr.clone();
    let mut alice = ChatProc::login(&addr, "alice", home);
    let mut bob = ChatProc::login(&addr, "bob", home);

    // Public: kicked, the stream goes; rejoined, a new one catches up on what he missed.
    create(&mut alice, "#design", "", "public");
    assert_eq!(join(&mut bob, "#design")["event"], "joined");
    alice.send("#design", "before");
    bob.expect("before", |v| v["text"] == "before");
    assert!(open_streams(&mut bob).contains(&"#design".to_owned()));
    alice.cmd(json!({"cmd": "kick", "room": "#design", "user": "bob"}));
    bob.expect("left", |v| v["event"] == "left" && v["reason"] == "kicked");
    bob.sync();
    let open = open_streams(&mut bob);
    assert!(!open.contains(&"#design".to_owned()), "{open:?}");
    alice.send("#design", "while out");
    alice.sync();
    assert_eq!(join(&mut bob, "#design")["event"], "joined");
    bob.expect("while out", |v| v["text"] == "while out");
    alice.send("#design", "back");
    bob.expect("back", |v| v["text"] == "back");
    assert!(open_streams(&mut bob).contains(&"#design".to_owned()));

    // Private: the same, and the history starts again at the new join.
    create(&mut alice, "#priv", "", "private");
    alice.cmd(json!({"cmd": "invite", "room": "#priv", "user": "bob"}));
    bob.expect("invited", |v| v["event"] == "invited");
    bob.cmd(json!({"cmd": "accept", "room": "#priv"}));
    bob.expect("joined", |v| v["event"] == "joined" && v["room"] == "#priv");
    alice.send("#priv", "p1");
    bob.expect("p1", |v| v["text"] == "p1");
    alice.cmd(json!({"cmd": "leave", "room": "#priv"}));
    bob.expect("owner", |v| {
        v["event"] == "member" && v["change"] == "owner" && v["user"] == "bob"
    });
    // Bob (now the owner) leaves; alice is out already: the room closes. Make another.
    bob.cmd(json!({"cmd": "leave", "room": "#priv"}));
    bob.expect("left", |v| v["event"] == "left" && v["room"] == "#priv");
    bob.sync();
    let open = open_streams(&mut bob);
    assert!(!open.contains(&"#priv".to_owned()), "{open:?}");
    create(&mut alice, "#priv", "", "private");
    alice.send("#priv", "new room, before bob");
    // Stored before the invitation: the message goes on the room's stream and the
    // invitation on the control stream, which the server may read in either order.
    alice.expect("sent", |v| {
        v["event"] == "sent" && v["text"] == "new room, before bob"
    });
    alice.cmd(json!({"cmd": "invite", "room": "#priv", "user": "bob"}));
    bob.expect("invited", |v| v["event"] == "invited");
    bob.cmd(json!({"cmd": "accept", "room": "#priv"}));
    bob.expect("joined", |v| v["event"] == "joined" && v["room"] == "#priv");
    alice.send("#priv", "p2");
    bob.expect("p2", |v| v["text"] == "p2");
    alice.cmd(json!({"cmd": "kick", "room": "#priv", "user": "bob"}));
    bob.expect("left", |v| v["event"] == "left" && v["reason"] == "kicked");
    alice.send("#priv", "p3 while out");
    alice.expect("sent", |v| {
        v["event"] == "sent" && v["text"] == "p3 while out"
    });
    alice.cmd(json!({"cmd": "invite", "room": "#priv", "user": "bob"}));
    bob.expect("invited", |v| v["event"] == "invited");
    bob.cmd(json!({"cmd": "accept", "room": "#priv"}));
    bob.expect("joined", |v| v["event"] == "joined" && v["room"] == "#priv");
    alice.send("#priv", "p4");
    bob.expect("p4", |v| v["text"] == "p4");
    bob.sync();
    assert!(open_streams(&mut bob).contains(&"#priv".to_owned()));

    let (_, log) = bob.finish_ok();
    for (room, text, n) in [
        ("#design", "before", 1),
        ("#design", "while out", 1),
        ("#design", "back", 1),
        ("#priv", "p1", 1),
        ("#priv", "new room, before bob", 0),
        ("#priv", "p2", 1),
        ("#priv", "p3 while out", 0),
        ("#priv", "p4", 1),
    ] {
        assert_eq!(count_texts(&log, room, text), n, "{room} {text:?}: {log:?}");
    }
    alice.finish_ok();
}

/// A file download asked for straight on the wire, as a modified client would (the
/// scripted client may refuse on its own): the server's first answer on the file stream.
async fn raw_download(
    addr: &str,
    fingerprint: &str,
    user: &str,
    conv: &str,
    uploader: &str,
    file_hex: &str,
) -> livewire::app::protocol::FileDown {
    use livewire::app::ids::{ClientMsgId, ConvId};
    use livewire::app::protocol::{ConvUp, FileReq};
    use livewire::transport::codec;
    const MAX: usize = RAW_MAX_FRAME;

    // The control stream stays open while the transfer runs (the session lasts).
    let (conn, _control, _control_recv) = raw_login(addr, fingerprint, user).await;
    let file = livewire::app::files::file_id_from_hex(file_hex).expect("file id");
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    // A private room's file is sealed with its own key (see docs/PROTOCOL.md, "Files").
    let req = ConvUp::File(FileReq::DownloadKeyed {
        conv: ConvId::Room(conv.into()),
        uploader: uploader.into(),
        file: ClientMsgId(file),
        from_chunk: 0,
    });
    codec::write_frame(&mut send, &req, MAX).await.unwrap();
    let _ = send.finish();
    let down = codec::read_frame(&mut recv, codec::MAX_DOWN_FRAME)
        .await
        .unwrap()
        .expect("an answer on the file stream");
    conn.close(0u32.into(), b"done");
    down
}

/// The operator's side, through the library: a server started in-process, whose handle
/// announces into a room (its members only hear it) and closes it (everyone is out).
/// And a member removed from a room cannot fetch its files: the server refuses, whatever
/// the client knows.
#[test]
fn operator_announces_to_a_room_closes_it_and_files_stay_with_members() {
    use livewire::app::limits::Limits;
    use livewire::app::protocol::{ErrorCode, FileDown};

    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (server, _events) = rt.block_on(in_process_server(
        &dir.path().join("srv"),
        Limits::default(),
    ));
    let addr = server.local_addr().to_string();
    let fp = server.fingerprint().to_owned();
    let handle = server.handle();
    let home = dir.path();
    let [mut alice, mut bob, mut carol, mut eve] =
        ["alice", "bob", "carol", "eve"].map(|u| ChatProc::login(&addr, u, home));

    create(&mut alice, "#team", "", "private");
    for (u, p) in [("bob", &mut bob), ("carol", &mut carol)] {
        alice.cmd(json!({"cmd": "invite", "room": "#team", "user": u}));
        p.expect("invited", |v| v["event"] == "invited");
        p.cmd(json!({"cmd": "accept", "room": "#team"}));
        p.expect("joined", |v| v["event"] == "joined");
    }
    let src = dir.path().join("plan.txt");
    std::fs::write(&src, b"the plan").unwrap();
    alice.cmd(json!({"cmd": "send_file", "to": "#team", "path": src}));
    alice.expect("sent file", |v| {
        v["event"] == "sent" && v["file"].is_object()
    });
    let m = carol.expect("file", |v| {
        v["event"] == "message" && v["file"]["name"] == "plan.txt"
    });
    let file_hex = m["file"]["id"].as_str().unwrap().to_owned();
    let get = |user: &str| rt.block_on(raw_download(&addr, &fp, user, "#team", "alice", &file_hex));

    // A member may; carol, once kicked, and eve, never in, may not: the server says so.
    assert!(matches!(get("bob"), FileDown::Ready { size: 8, .. }));
    alice.cmd(json!({"cmd": "kick", "room": "#team", "user": "carol"}));
    carol.expect("left", |v| v["event"] == "left" && v["reason"] == "kicked");
    for user in ["carol", "eve"] {
        match get(user) {
            FileDown::Error { code, .. } => assert_eq!(code, ErrorCode::NotFound, "{user}"),
            other => panic!("{user} was not refused: {other:?}"),
        }
    }
    // Through the scripted client too (with the message id she kept).
    let out = dir.path().join("plan.copy");
    carol.cmd(json!({"cmd": "download", "id": m["id"], "path": out}));
    let d = carol.expect("error", |v| {
        v["event"] == "downloaded" || v["event"] == "error"
    });
    assert_eq!(d["event"], "error", "{d}");
    assert!(!out.exists());

    // The operator announces into the room: its members hear it, nobody else.
    rt.block_on(handle.announce_to(Some("#team".into()), "maintenance at noon".into()));
    for p in [&mut alice, &mut bob] {
        let a = p.expect("announcement", |v| v["text"] == "maintenance at noon");
        assert_eq!(a["conv"], "#team");
        assert_eq!(a["from"], "server");
    }
    for p in [&mut carol, &mut eve] {
        p.sync();
        assert_eq!(
            p.log
                .iter()
                .filter(|v| v["text"] == "maintenance at noon")
                .count(),
            0,
            "{}",
            p.user
        );
    }

    // The operator closes it: everyone is out, their streams close, the name is gone.
    rt.block_on(handle.close_room("#team".into()));
    for p in [&mut alice, &mut bob] {
        let left = p.expect("left", |v| v["event"] == "left" && v["room"] == "#team");
        assert_eq!(left["reason"], "left", "{left}");
        assert_eq!(left["by"], "server", "{left}");
        p.sync();
        let open = open_streams(p);
        assert!(!open.contains(&"#team".to_owned()), "{open:?}");
        p.send("#team", "anyone?");
        error(p, "no_such_room");
    }
    assert!(matches!(get("bob"), FileDown::Error { .. }));
    for p in [alice, bob, carol, eve] {
        p.finish_ok();
    }
    rt.block_on(server.shutdown("test over"));
}

#[test]
fn the_operator_deletes_general_and_room_messages_but_not_private_ones() {
    use livewire::app::limits::Limits;

    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (server, _events) = rt.block_on(in_process_server(
        &dir.path().join("srv"),
        Limits::default(),
    ));
    let addr = server.local_addr().to_string();
    let handle = server.handle();
    let home = dir.path();
    let [mut alice, mut bob] = ["alice", "bob"].map(|u| ChatProc::login(&addr, u, home));
    create(&mut alice, "#team", "", "public");
    bob.cmd(json!({"cmd": "join", "room": "#team"}));
    bob.expect("joined", |v| v["event"] == "joined");
    alice.send("#general", "spam in general");
    alice.send("#team", "spam in team");
    alice.send("@bob", "private words");
    let sent = alice.sync();
    let id_of = |text: &str| {
        sent.iter()
            .find(|v| v["event"] == "sent" && v["text"] == text)
            .map(|v| v["id"].as_u64().unwrap())
            .unwrap()
    };
    for text in ["spam in general", "spam in team", "private words"] {
        rt.block_on(handle.delete_message(id_of(text)));
    }
    let evs = bob.sync();
    let mut deleted: Vec<u64> = evs
        .iter()
        .filter(|v| v["event"] == "deleted" && v["for"] == "everyone")
        .map(|v| v["id"].as_u64().unwrap())
        .collect();
    deleted.sort();
    let mut want = vec![id_of("spam in general"), id_of("spam in team")];
    want.sort();
    assert_eq!(deleted, want, "{evs:?}");
    // The private message is untouched: bob reads it in its history.
    bob.cmd(json!({"cmd": "history", "conv": "@alice"}));
    let hist = bob.expect("history", |v| v["event"] == "history");
    assert!(hist.to_string().contains("private words"), "{hist}");
    for p in [alice, bob] {
        p.finish_ok();
    }
    rt.block_on(server.shutdown("test over"));
}
