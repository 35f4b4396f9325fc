//! Search end to end: a real headless server and real scripted clients. The server finds
//! words in `#general` and the rooms the user is in — never in a room they are not in, a
//! message deleted for everyone or one they deleted for themselves; private conversations
//! are found by the client's own index, whose words the server never sees; both indexes
//! survive restarts, and a deleted text leaves no trace in either one's files.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

fn setup() -> (tempfile::TempDir, ServerProc) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("server"), "127.0.0.1:0", &[]);
    (dir, server)
}

/// Runs a search and returns its results (failing on an error event).
fn search(c: &mut ChatProc, cmd: Value) -> Vec<Value> {
    let mut cmd = cmd;
    cmd["cmd"] = json!("search");
    c.cmd(cmd.clone());
    let v = c.expect("search", |v| {
        v["event"] == "search" || v["event"] == "error"
    });
    assert_eq!(v["event"], "search", "{} searching {cmd}: {v}", c.user);
    v["results"].as_array().unwrap().clone()
}

/// `(conv, from, text)` of each result, in order.
fn found(results: &[Value]) -> Vec<(String, String, String)> {
    results
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (s("conv"), s("from"), s("text"))
        })
        .collect()
}

fn error(c: &mut ChatProc, cmd: Value) -> Value {
    c.cmd(cmd);
    let v = c.expect("error", |v| v["event"] == "search" || v["event"] == "error");
    assert_eq!(v["event"], "error", "{v}");
    v
}

fn sent_id(c: &mut ChatProc, to: &str, text: &str) -> u64 {
    c.send(to, text);
    let text = text.to_owned();
    let v = c.expect("sent", |v| {
        v["event"] == "sent" && v["text"] == text.as_str()
    });
    v["id"].as_u64().unwrap()
}

fn create(c: &mut ChatProc, room: &str, visibility: &str) {
    c.cmd(json!({"cmd": "create_room", "room": room, "visibility": visibility}));
    let v = c.expect("joined", |v| {
        v["event"] == "joined" || v["event"] == "error"
    });
    assert_eq!(v["event"], "joined", "{v}");
}

#[test]
fn finds_what_the_user_can_read_and_nothing_else() {
    let (dir, server) = setup();
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let mut carol = ChatProc::login(&server.addr, "carol", home);
    create(&mut alice, "#design", "public");
    bob.cmd(json!({"cmd": "join", "room": "#design"}));
    bob.expect("joined", |v| v["event"] == "joined");
    create(&mut carol, "#secret", "private");

    sent_id(
        &mut alice,
        "#general",
        "Zebra crossing at the general meeting",
    );
    sent_id(&mut bob, "#design", "the zebra crossings need colour");
    sent_id(
        &mut carol,
        "#secret",
        "zebra crossing plans nobody else reads",
    );
    let gone = sent_id(
        &mut alice,
        "#general",
        "zebra crossing deleted for everyone",
    );
    let mine = sent_id(&mut bob, "#general", "zebra crossing alice hides");
    alice.cmd(json!({"cmd": "delete", "id": gone, "for": "everyone"}));
    alice.cmd(json!({"cmd": "delete", "id": mine, "for": "me"}));
    alice.sync();
    bob.sync();

    // Every word must match; the last one may be the start of a word.
    let all = found(&search(&mut alice, json!({"query": "ZEBRA cross"})));
    assert_eq!(
        all,
        [
            (
                "#design".into(),
                "bob".into(),
                "the zebra crossings need colour".into()
            ),
            (
                "#general".into(),
                "alice".into(),
                "Zebra crossing at the general meeting".into()
            ),
        ]
    );
    // A whole word only when the query ends with a separator.
    let whole = found(&search(&mut alice, json!({"query": "zebra crossing "})));
    assert_eq!(whole.len(), 1, "{whole:?}");
    assert_eq!(whole[0].0, "#general");
    // What alice deleted for herself is still bob's.
    let bobs = found(&search(&mut bob, json!({"query": "zebra crossing alice"})));
    assert_eq!(bobs.len(), 1, "{bobs:?}");
    // One conversation; a limit; a room one is not in; an empty query.
    let design = found(&search(
        &mut alice,
        json!({"query": "zebra", "conv": "#design"}),
    ));
    assert_eq!(design.len(), 1);
    assert_eq!(design[0].0, "#design");
    let one = search(&mut alice, json!({"query": "zebra", "limit": 1}));
    assert_eq!(found(&one)[0].0, "#design", "newest first");
    assert_eq!(one.len(), 1);
    assert!(one[0]["id"].as_u64().is_some() && one[0]["ts"].as_u64().is_some());
    let secret = found(&search(&mut carol, json!({"query": "zebra plans"})));
    assert_eq!(secret.len(), 1, "carol reads her own room: {secret:?}");
    let e = error(
        &mut alice,
        json!({"cmd": "search", "query": "zebra", "conv": "#secret"}),
    );
    assert_eq!(e["code"], "no_such_room", "{e}");
    let e = error(&mut alice, json!({"cmd": "search", "query": "  "}));
    assert_eq!(e["code"], "bad_command", "{e}");
    let e = error(
        &mut alice,
        json!({"cmd": "search", "query": "x", "limit": 500}),
    );
    assert_eq!(e["code"], "bad_command", "{e}");

    // A private room is searched from the moment one joined, as its history is read.
    carol.cmd(json!({"cmd": "invite", "room": "#secret", "user": "alice"}));
    alice.expect("invited", |v| v["event"] == "invited");
    alice.cmd(json!({"cmd": "accept", "room": "#secret"}));
    alice.expect("joined", |v| {
        v["event"] == "joined" && v["room"] == "#secret"
    });
    sent_id(&mut carol, "#secret", "zebra plans once alice is in");
    alice.sync();
    let secret = found(&search(&mut alice, json!({"query": "zebra plans"})));
    assert_eq!(
        secret,
        [(
            "#secret".into(),
            "carol".into(),
            "zebra plans once alice is in".into()
        )],
        "what was said before alice joined stays hidden from her"
    );

    // A flood of searches is rate-limited (per user), without a disconnect.
    for _ in 0..60 {
        alice.cmd(json!({"cmd": "search", "query": "z"}));
    }
    let flood = alice.sync();
    let limited = flood
        .iter()
        .filter(|v| v["event"] == "error" && v["code"] == "rate_limited")
        .count();
    assert!(limited > 0, "60 searches at once were all run: {flood:?}");
    assert_eq!(limited + events(&flood, "search").len(), 60);

    // Leaving a room takes it out of the search.
    bob.cmd(json!({"cmd": "leave", "room": "#design"}));
    bob.expect("left", |v| v["event"] == "left");
    let after = found(&search(&mut bob, json!({"query": "zebra"})));
    assert!(after.iter().all(|r| r.0 == "#general"), "{after:?}");
    for c in [alice, bob, carol] {
        c.finish_ok();
    }
}

/// The one word a deleted text leaves in an index (several words would never be found
/// whole in one).
const FTS_CANARY: &str = "zqxftserase4c1d";

#[test]
fn the_server_index_survives_a_restart_and_forgets_erased_words() {
    let (dir, server) = setup();
    let data = dir.path().join("server");
    let port = server.port();
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    sent_id(&mut alice, "#general", "persistent kestrel sighting");
    let id = sent_id(&mut alice, "#general", &format!("the {FTS_CANARY} word"));
    for i in 0..20 {
        alice.send("#general", &format!("filler {i}"));
    }
    alice.sync();
    assert_eq!(search(&mut alice, json!({"query": FTS_CANARY})).len(), 1);
    alice.cmd(json!({"cmd": "delete", "id": id, "for": "everyone"}));
    alice.sync();
    assert!(search(&mut alice, json!({"query": FTS_CANARY})).is_empty());
    assert_eq!(
        files_containing(&data, FTS_CANARY.as_bytes()),
        Vec::<PathBuf>::new(),
        "an erased word stays in the server's files"
    );
    alice.finish_ok();
    server.stop();

    let server = ServerProc::start(&data, &format!("127.0.0.1:{port}"), &[]);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let hits = found(&search(&mut bob, json!({"query": "kestrel"})));
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].2, "persistent kestrel sighting");
    assert!(search(&mut bob, json!({"query": FTS_CANARY})).is_empty());
    bob.finish_ok();
    assert_eq!(
        files_containing(&data, FTS_CANARY.as_bytes()),
        Vec::<PathBuf>::new()
    );
}

/// A word only alice's and bob's devices ever see in clear.
const PRIVATE: &str = "zqxprivcanary8d3";

/// The client's local index file under a user's home.
fn index_file(home: &Path, user: &str) -> PathBuf {
    files_under(&home.join(user))
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".search.db"))
        .unwrap_or_else(|| panic!("no local index under {}", home.join(user).display()))
}

#[test]
fn private_conversations_are_searched_on_the_device_and_never_by_the_server() {
    let (dir, server) = setup();
    let data = dir.path().join("server");
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    sent_id(&mut alice, "@bob", &format!("first {PRIVATE} from alice"));
    bob.expect("message", |v| {
        v["event"] == "message" && v["conv"] == "@alice"
    });
    let bobs = sent_id(&mut bob, "@alice", &format!("{PRIVATE} back from bob"));
    let doomed = sent_id(&mut bob, "@alice", "ephemeral heron note");
    sent_id(&mut bob, "#general", "public heron sighting");
    alice.sync();

    // Everything: the private messages from the local index, merged with the server's.
    let all = found(&search(&mut alice, json!({"query": "heron"})));
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].0, "#general");
    assert_eq!(
        all[1],
        ("@bob".into(), "bob".into(), "ephemeral heron note".into())
    );
    // One private conversation: the local index only.
    let mine = found(&search(
        &mut alice,
        json!({"query": PRIVATE, "conv": "@bob"}),
    ));
    assert_eq!(
        mine,
        [
            (
                "@bob".into(),
                "bob".into(),
                format!("{PRIVATE} back from bob")
            ),
            (
                "@bob".into(),
                "alice".into(),
                format!("first {PRIVATE} from alice")
            ),
        ]
    );
    let everywhere = found(&search(&mut alice, json!({"query": PRIVATE})));
    assert_eq!(everywhere.len(), 2, "{everywhere:?}");

    // Deleted for me, deleted for everyone: gone from the index.
    alice.cmd(json!({"cmd": "delete", "id": bobs, "for": "me"}));
    bob.cmd(json!({"cmd": "delete", "id": doomed, "for": "everyone"}));
    bob.sync();
    alice.sync();
    let left = found(&search(
        &mut alice,
        json!({"query": PRIVATE, "conv": "@bob"}),
    ));
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].1, "alice");
    assert!(search(&mut alice, json!({"query": "ephemeral", "conv": "@bob"})).is_empty());
    assert!(search(&mut alice, json!({"query": "ephemeral"})).is_empty());

    // The server never had the private words in clear, though alice searched for them
    // everywhere: not in its log, its output or any of its files.
    alice.finish_ok();
    bob.finish_ok();
    let log = server.stop();
    assert_eq!(
        files_containing(&data, PRIVATE.as_bytes()),
        Vec::<PathBuf>::new()
    );
    let server_log = std::fs::read_to_string(stderr_path(&data)).unwrap();
    assert!(
        !server_log.is_empty(),
        "the server's log must be there to be checked"
    );
    assert!(!server_log.contains(PRIVATE), "{server_log}");
    let lines: Vec<&Value> = log
        .iter()
        .filter(|v| v.to_string().contains(PRIVATE))
        .collect();
    assert!(lines.is_empty(), "{lines:?}");

    // The index is as private as the identity key, and the deleted texts left its files.
    let index = index_file(home, "alice");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&index).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", index.display());
    }
    assert_eq!(
        files_containing(&home.join("alice"), b"ephemeral"),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn the_local_index_survives_a_client_restart() {
    let (dir, server) = setup();
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    sent_id(&mut bob, "@alice", "remember the osprey");
    alice.expect("message", |v| {
        v["event"] == "message" && v["conv"] == "@bob"
    });
    alice.finish_ok();
    bob.finish_ok();
    // The next run catches up from where it was: the message is not fetched again, so
    // only the index on disk can find it.
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let hits = found(&search(
        &mut alice,
        json!({"query": "osprey", "conv": "@bob"}),
    ));
    assert_eq!(
        hits,
        [("@bob".into(), "bob".into(), "remember the osprey".into())]
    );
    let (_, log) = alice.finish_ok();
    assert!(
        !log.iter()
            .any(|v| v["event"] == "message" && v["conv"] == "@bob"),
        "the message was fetched again: {log:?}"
    );
}

/// Edits and replies (issue 18 part A) meet the indexes: an edited message is found by its
/// new words and no longer by the old ones, on the server (#general) and in the device's
/// own index (a private conversation); a reply is found by its text like any message.
#[test]
fn edits_and_replies_are_searched_by_their_current_text() {
    let (dir, server) = setup();
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);

    let public = sent_id(&mut alice, "#general", "meet at the kestrel gate");
    let private = sent_id(&mut alice, "@bob", "bring the osprey map");
    alice.cmd(
        json!({"cmd": "send", "to": "#general", "text": "the plover answer", "reply_to": public}),
    );
    alice.sync();
    bob.sync();
    alice.cmd(json!({"cmd": "edit", "id": public, "text": "meet at the falcon gate"}));
    alice.cmd(json!({"cmd": "edit", "id": private, "text": "bring the harrier map"}));
    alice.sync();
    bob.sync();

    for c in [&mut alice, &mut bob] {
        let hits = |c: &mut ChatProc, q: &str| found(&search(c, json!({"query": q})));
        assert!(hits(c, "kestrel").is_empty(), "{}: old words gone", c.user);
        assert_eq!(hits(c, "falcon").len(), 1, "{}: new words found", c.user);
        assert!(
            hits(c, "osprey").is_empty(),
            "{}: old private words gone",
            c.user
        );
        assert_eq!(
            hits(c, "harrier"),
            vec![(
                if c.user == "alice" { "@bob" } else { "@alice" }.to_owned(),
                "alice".to_owned(),
                "bring the harrier map".to_owned()
            )],
            "{}: the private edit is in the device's index",
            c.user
        );
        assert_eq!(
            hits(c, "plover"),
            vec![(
                "#general".to_owned(),
                "alice".to_owned(),
                "the plover answer".to_owned()
            )],
            "{}: a reply is found, shown without its marker",
            c.user
        );
    }
    alice.finish_ok();
    bob.finish_ok();
}
