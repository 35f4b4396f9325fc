//! Edits, replies and reactions end to end: a real headless server on 127.0.0.1:0 and real
//! scripted clients, in `#general`, a room and a private conversation; then the private
//! canaries (an edited text, an emoji) looked for on the server's disk and in its log.

mod common;

use common::*;
use livewire::scripted::{event_json, parse_command};
use livewire::transport::client::{self, ClientEvent, ClientOptions, Trust};
use livewire::transport::faulty::{FaultConfig, FaultControl, Faults, FaultySocket};
use livewire::transport::tls::PinStore;
use serde_json::{Value, json};

fn setup() -> (tempfile::TempDir, ServerProc) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("server"), "127.0.0.1:0", &[]);
    (dir, server)
}

/// Sends and waits for the `sent` event; returns the message id.
fn post(c: &mut Transcript, to: &str, text: &str, reply_to: Option<u64>) -> u64 {
    let mut cmd = json!({"cmd": "send", "to": to, "text": text});
    if let Some(r) = reply_to {
        cmd["reply_to"] = json!(r);
    }
    c.cmd(cmd);
    let sent = c.expect("sent", |v| v["event"] == "sent" && v["text"] == text);
    assert_eq!(sent["reply_to"].as_u64(), reply_to, "{sent}");
    sent["id"].as_u64().unwrap()
}

fn edit(c: &mut Transcript, id: u64, text: &str) {
    c.cmd(json!({"cmd": "edit", "id": id, "text": text}));
}

fn react(c: &mut Transcript, id: u64, emoji: &str, on: bool) {
    let cmd = if on { "react" } else { "unreact" };
    c.cmd(json!({"cmd": cmd, "id": id, "emoji": emoji}));
}

fn of_kind<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|v| v["event"] == kind).collect()
}

/// The `edited` events as `(conv, id, text)`, sorted: conversations are separate streams,
/// with no order between them.
fn edits_in(evs: &[Value]) -> Vec<(String, u64, String)> {
    let mut v: Vec<(String, u64, String)> = of_kind(evs, "edited")
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap().to_owned();
            (s("conv"), v["id"].as_u64().unwrap(), s("text"))
        })
        .collect();
    v.sort_by_key(|e| e.1);
    v
}

fn history(c: &mut Transcript, conv: &str) -> Vec<Value> {
    c.cmd(json!({"cmd": "history", "conv": conv}));
    let h = c.expect("history", |v| v["event"] == "history" && v["conv"] == conv);
    h["messages"].as_array().unwrap().clone()
}

fn error_code(c: &mut Transcript) -> String {
    let e = c.expect("error", |v| v["event"] == "error");
    e["code"].as_str().unwrap().to_owned()
}

#[test]
fn an_edit_reaches_online_and_offline_members_in_every_kind_of_conversation() {
    let (dir, server) = setup();
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let mut carol = ChatProc::login(&server.addr, "carol", home);
    alice.cmd(json!({"cmd": "create_room", "room": "#team"}));
    alice.expect("joined", |v| v["event"] == "joined");
    carol.cmd(json!({"cmd": "join", "room": "#team"}));
    carol.expect("joined", |v| v["event"] == "joined");
    let general = post(&mut alice, "#general", "helo all", None);
    let room = post(&mut alice, "#team", "helo team", None);
    let private = post(&mut alice, "@bob", "helo bob", None);
    for c in [&mut bob, &mut carol] {
        c.sync();
    }
    // Bob goes offline; the edits happen without him.
    let (_, bob_log) = bob.finish_ok();
    assert_eq!(of_kind(&bob_log, "message").len(), 2, "{bob_log:#?}");
    edit(&mut alice, general, "hello all");
    edit(&mut alice, room, "hello team");
    edit(&mut alice, private, "hello bob");
    let mine = alice.sync();
    let own: Vec<(u64, String)> = edits_in(&mine)
        .into_iter()
        .map(|(_, id, t)| (id, t))
        .collect();
    assert_eq!(
        own,
        vec![
            (general, "hello all".to_owned()),
            (room, "hello team".to_owned()),
            (private, "hello bob".to_owned())
        ]
    );
    let seen = carol.sync();
    let got = edits_in(&seen);
    assert_eq!(
        got,
        vec![
            ("#general".to_owned(), general, "hello all".to_owned()),
            ("#team".to_owned(), room, "hello team".to_owned())
        ]
    );
    // Bob catches up from where he was: each edit once, no message twice.
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let caught = bob.sync();
    let got = edits_in(&caught);
    assert_eq!(
        got,
        vec![
            ("#general".to_owned(), general, "hello all".to_owned()),
            ("@alice".to_owned(), private, "hello bob".to_owned())
        ],
        "{caught:#?}"
    );
    assert!(of_kind(&caught, "message").is_empty(), "{caught:#?}");
    // Someone new reads the current text, marked edited.
    let mut dave = ChatProc::login(&server.addr, "dave", home);
    let page = history(&mut dave, "#general");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["text"], "hello all");
    assert_eq!(page[0]["edited"], true);
    let page = history(&mut bob, "@alice");
    assert_eq!(page[0]["text"], "hello bob");
    assert_eq!(page[0]["edited"], true);
    let mut records = Vec::new();
    let mut logs: Vec<(String, Vec<Value>)> = [alice, bob, carol, dave]
        .into_iter()
        .map(|c| c.finish_ok())
        .collect();
    // Bob's two runs are one user's record.
    let mut whole_bob = bob_log;
    whole_bob.append(&mut logs[1].1);
    logs[1].1 = whole_bob;
    for (user, log) in &logs {
        records.push(Record { user, log });
    }
    // carol is in both #general and #team (the kit counts every room as #general).
    check_properties(&records, &["carol"]);
}

#[test]
fn edits_are_refused_to_others_and_after_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &["--delete-window", "1"],
    );
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let id = post(&mut alice, "#general", "original", None);
    bob.sync();
    edit(&mut bob, id, "hijacked");
    assert_eq!(error_code(&mut bob), "not_author");
    // The window is one second: wait it out (the rule is about time, nothing to sync on).
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    edit(&mut alice, id, "too late");
    assert_eq!(error_code(&mut alice), "delete_window_expired");
    let evs = bob.sync();
    assert!(of_kind(&evs, "edited").is_empty(), "{evs:#?}");
    let page = history(&mut bob, "#general");
    assert_eq!(page[0]["text"], "original");
    assert!(page[0].get("edited").is_none());
    alice.finish_ok();
    bob.finish_ok();
}

#[test]
fn an_edit_racing_a_delete_ends_deleted_everywhere() {
    let (dir, server) = setup();
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(post(&mut alice, "#general", &format!("draft {n}"), None));
    }
    bob.sync();
    // Edit and delete on two streams with no barrier between: whichever the server takes
    // first, the message ends deleted.
    for id in &ids {
        edit(&mut alice, *id, "edited-then-deleted");
        alice.cmd(json!({"cmd": "delete", "id": id, "for": "everyone"}));
    }
    alice.sync();
    let evs = bob.sync();
    for id in &ids {
        let deleted = evs
            .iter()
            .position(|v| v["event"] == "deleted" && v["id"] == *id)
            .unwrap_or_else(|| panic!("{id} deleted: {evs:#?}"));
        assert!(
            !evs[deleted..]
                .iter()
                .any(|v| v["event"] == "edited" && v["id"] == *id),
            "an edit after the delete: {evs:#?}"
        );
    }
    let page = history(&mut bob, "#general");
    assert!(page.iter().all(|m| m["text"].is_null()), "{page:#?}");
    let logs = [alice.finish_ok(), bob.finish_ok()];
    let records: Vec<Record> = logs
        .iter()
        .map(|(user, log)| Record { user, log })
        .collect();
    check_properties(&records, &["alice", "bob"]);
}

#[test]
fn replies_round_trip_in_public_and_private() {
    let (dir, server) = setup();
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let q = post(&mut alice, "#general", "lunch?", None);
    let pq = post(&mut alice, "@bob", "secret lunch?", None);
    bob.sync();
    let a = post(&mut bob, "#general", "yes", Some(q));
    let pa = post(&mut bob, "@alice", "secret yes", Some(pq));
    let evs = alice.sync();
    let replies: Vec<(u64, u64, &str)> = of_kind(&evs, "message")
        .iter()
        .map(|v| {
            (
                v["id"].as_u64().unwrap(),
                v["reply_to"].as_u64().unwrap(),
                v["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(replies, vec![(a, q, "yes"), (pa, pq, "secret yes")]);
    // A reply to a message of another conversation is refused before it leaves.
    bob.cmd(json!({"cmd": "send", "to": "#general", "text": "x", "reply_to": pq}));
    assert_eq!(error_code(&mut bob), "bad_command");
    let mut carol = ChatProc::login(&server.addr, "carol", home);
    let page = history(&mut carol, "#general");
    assert_eq!(page[1]["reply_to"], q);
    assert_eq!(page[1]["text"], "yes");
    let page = history(&mut alice, "@bob");
    assert_eq!(page[1]["reply_to"], pq);
    carol.finish_ok();
    alice.finish_ok();
    bob.finish_ok();
}

#[test]
fn reactions_add_remove_once_each_with_counts_in_history() {
    let (dir, server) = setup();
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let id = post(&mut alice, "#general", "ship it", None);
    let pid = post(&mut alice, "@bob", "ship it quietly", None);
    bob.sync();
    react(&mut bob, id, "👍", true);
    react(&mut bob, pid, "🤫", true);
    bob.sync();
    react(&mut alice, id, "👍", true);
    react(&mut alice, pid, "🤫", true);
    alice.sync();
    // One of each per user: a second 👍 from bob is refused, in private too.
    react(&mut bob, id, "👍", true);
    assert_eq!(error_code(&mut bob), "bad_request");
    react(&mut bob, pid, "🤫", true);
    assert_eq!(error_code(&mut bob), "bad_request");
    react(&mut bob, id, "not an emoji", true);
    assert_eq!(error_code(&mut bob), "bad_command");
    alice.sync();
    // Two conversations, two streams: sorted, as there is no order between them.
    let mut got: Vec<(&str, &str, &str, bool)> = of_kind(&alice.log, "reaction")
        .iter()
        .map(|v| {
            (
                v["conv"].as_str().unwrap(),
                v["user"].as_str().unwrap(),
                v["emoji"].as_str().unwrap(),
                v["on"].as_bool().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("#general", "alice", "👍", true),
            ("#general", "bob", "👍", true),
            ("@bob", "alice", "🤫", true),
            ("@bob", "bob", "🤫", true),
        ]
    );
    react(&mut bob, pid, "🤫", false);
    bob.sync();
    let evs = alice.sync();
    assert_eq!(of_kind(&evs, "reaction")[0]["on"], false);
    // History rebuilds the counts, for a newcomer and after a restart alike.
    let mut carol = ChatProc::login(&server.addr, "carol", home);
    let page = history(&mut carol, "#general");
    assert_eq!(
        page[0]["reactions"],
        json!([{"emoji": "👍", "count": 2, "users": ["alice", "bob"]}])
    );
    let page = history(&mut alice, "@bob");
    assert_eq!(
        page[0]["reactions"],
        json!([{"emoji": "🤫", "count": 1, "users": ["alice"]}])
    );
    carol.finish_ok();
    alice.finish_ok();
    bob.finish_ok();
}

#[test]
fn private_edits_and_emoji_never_reach_the_servers_disk_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let server = ServerProc::start_traced(&data, "127.0.0.1:0");
    let addr = server.addr.clone();
    let mut alice = ChatProc::login(&addr, "alice", dir.path());
    let mut bob = ChatProc::login(&addr, "bob", dir.path());
    let id = post(&mut alice, "@bob", "before the edit", None);
    let public = post(&mut alice, "#general", "public before", None);
    bob.sync();
    edit(&mut alice, id, "canary-edit-5be1c0de");
    edit(&mut alice, public, "canary-public-edit-77aa");
    react(&mut bob, id, "canary-emoji-9f3a", true);
    alice.sync();
    let evs = bob.sync();
    assert!(
        evs.iter().any(|v| v["text"] == "canary-edit-5be1c0de"),
        "bob reads the edit: {evs:#?}"
    );
    alice.sync();
    assert!(
        alice.log.iter().any(|v| v["emoji"] == "canary-emoji-9f3a"),
        "alice sees the reaction: {:#?}",
        alice.log
    );
    alice.finish_ok();
    bob.finish_ok();
    server.stop();
    let mut files = files_under(&data);
    files.push(stderr_path(&data));
    let contains = |needle: &[u8]| any_contains(&files, needle);
    assert!(
        contains(b"canary-public-edit-77aa"),
        "the search finds an edited room text (the server reads #general)"
    );
    // (The log has the message as sent; the database keeps only the current text.)
    assert!(
        files_containing(&data, b"public before").is_empty(),
        "an edited room text is replaced in the database, not kept"
    );
    assert!(
        !contains(b"canary-edit-5be1c0de"),
        "an edited private text reached the server's disk or logs"
    );
    assert!(
        !contains(b"canary-emoji-9f3a"),
        "a private reaction reached the server's disk or logs"
    );
}

/// A client in this process on a faulty socket (the socket has to live here), recording
/// the JSON lines `livewire chat` would print.
fn in_process(
    rt: &tokio::runtime::Runtime,
    server: &str,
    user: &str,
    home: &std::path::Path,
) -> (Transcript, FaultControl) {
    let (ep, ctl) = {
        let _g = rt.enter();
        let cfg = FaultConfig::both(7, Faults::NONE);
        FaultySocket::client_endpoint("127.0.0.1:0".parse().unwrap(), cfg).unwrap()
    };
    let dir = home.join(user);
    let opts = ClientOptions {
        server: server.to_owned(),
        user: user.to_owned(),
        password: PASSWORD.to_owned(),
        trust: Trust::AcceptNew,
        pins: PinStore::new(dir.join("known_servers")),
        state_file: Some(dir.join("state.json")),
        reconnect: true,
        endpoint: Some(ep),
        timers: TIMERS.client_timers(),
        stream_idle: client::STREAM_IDLE,
    };
    let (handle, events) = client::start_on(opts, rt.handle());
    let (tx, rx) = event_channel();
    rt.spawn(async move {
        while let Ok(ClientEvent::App(e)) = events.recv().await {
            if tx.send(event_json(&e)).is_err() {
                break;
            }
        }
    });
    let input = Box::new(move |line: &str| {
        handle.send(parse_command(line).expect("a valid command"));
    });
    let mut t = Transcript::new(user, rx, Some(input));
    t.expect("ready", |v| v["event"] == "ready");
    (t, ctl)
}

#[test]
fn an_edit_and_a_reaction_whose_acks_were_lost_are_resent_and_applied_once() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = TIMERS.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProc::start(&dir.path().join("server"), "127.0.0.1:0", &args);
    let home = dir.path();
    let (mut alice, net) = in_process(&rt, &server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let id = post(&mut alice, "#general", "v1", None);
    bob.sync();
    // Everything to alice is lost from now on: the server gets, stores and fans out her
    // edit and reaction, but their acks never arrive, so both stay in her outbox.
    net.set(Faults::NONE, Faults::loss(1.0));
    edit(&mut alice, id, "v2");
    react(&mut alice, id, "👍", true);
    bob.expect("the edit", |v| v["event"] == "edited" && v["text"] == "v2");
    bob.expect("the reaction", |v| v["event"] == "reaction");
    alice.expect_within("disconnected", TIMERS.lost_within(), |v| {
        v["event"] == "disconnected"
    });
    net.set(Faults::NONE, Faults::NONE);
    alice.expect_within("reconnected", TIMERS.back_within(), |v| {
        v["event"] == "reconnected"
    });
    // The outbox went again with the same client ids: acknowledged, not applied again.
    alice.sync();
    bob.sync();
    for (who, log) in [("alice", &alice.log), ("bob", &bob.log)] {
        assert_eq!(of_kind(log, "edited").len(), 1, "{who}: {log:#?}");
        assert_eq!(of_kind(log, "reaction").len(), 1, "{who}: {log:#?}");
    }
    let page = history(&mut bob, "#general");
    assert_eq!(
        page.len(),
        1,
        "one message, its edit and reaction not repeated"
    );
    assert_eq!(page[0]["text"], "v2");
    assert_eq!(
        page[0]["reactions"],
        json!([{"emoji": "👍", "count": 1, "users": ["alice"]}])
    );
    bob.finish_ok();
    drop(alice);
}
