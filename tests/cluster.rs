//! Cluster mode (issue 15): several real `livewire server --headless` nodes on one real
//! PostgreSQL and one real `nats-server`, real scripted clients spread over them. Every
//! case ends with the P1–P7 checks. Without PostgreSQL or nats-server installed each case
//! prints `SKIPPED: …` and passes (CI installs both).
//!
//! A client here knows one node, but in the case where a node dies: that client is given
//! both nodes (`--server a,b`) and fails over by itself.

mod common;
#[path = "common/nats.rs"]
mod nats;
#[path = "common/postgres.rs"]
mod postgres;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const FAST: &[&str] = &["--msg-burst", "10000", "--msg-rate", "10000"];

/// PostgreSQL and NATS for one case, and where its nodes and clients live.
struct Cluster {
    url: String,
    nats: nats::NatsServer,
    dir: tempfile::TempDir,
    /// Keeps the case's database (and the shared server) alive.
    _db: Option<postgres::PgDatabase>,
}

impl Cluster {
    /// On the shared test PostgreSQL, or `None` (SKIPPED) without PostgreSQL or NATS.
    fn start(test: &str) -> Option<Self> {
        let nats = nats::NatsServer::start(test)?;
        let db = postgres::fresh_database(test)?;
        Some(Self {
            url: db.url(),
            nats,
            dir: tempfile::tempdir().unwrap(),
            _db: Some(db),
        })
    }

    /// Node `i` (its own data dir, the shared database and NATS).
    fn node(&self, i: u8) -> ServerProc {
        self.node_on(i, "127.0.0.1:0")
    }

    fn node_on(&self, i: u8, listen: &str) -> ServerProc {
        let data = self.dir.path().join(format!("node{i}"));
        let (id, nats) = (i.to_string(), self.nats.url());
        let mut args = FAST.to_vec();
        args.extend(["--database", &self.url, "--nats", &nats, "--node-id", &id]);
        ServerProc::start(&data, listen, &args)
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }
}

fn no_errors(who: &str, log: &[Value]) {
    let errors = events(log, "error");
    assert!(errors.is_empty(), "{who}: {errors:?}");
}

/// Texts of the messages a log shows in `conv`.
fn texts<'a>(log: &'a [Value], conv: &str) -> Vec<&'a str> {
    log.iter()
        .filter(|v| v["event"] == "message" && v["conv"] == conv)
        .filter_map(|v| v["text"].as_str())
        .collect()
}

/// Waits until `pred` holds for an event already printed or to come.
fn wait_for(c: &mut ChatProc, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    c.find_any(WAIT, what, pred)
}

/// Waits until a node's log (stderr) has a line containing `needle`.
fn wait_log(data_dir: &Path, needle: &str) {
    let deadline = Instant::now() + WAIT;
    let path = stderr_path(data_dir);
    while !std::fs::read_to_string(&path).is_ok_and(|l| l.contains(needle)) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until a client knows `user` is online (in its `ready`, or a `presence` after).
fn wait_online(c: &mut ChatProc, user: &str) {
    c.find_any(WAIT, &format!("{user} online"), |v| {
        (v["event"] == "presence" && v["user"] == user && v["online"] == true)
            || (v["event"] == "ready"
                && v["online"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|u| u == user)))
    });
}

/// Waits until a client shows the message `text` in `conv` (fan-out across nodes is
/// asynchronous: a `sync` with one node says nothing of what another node still sends).
fn wait_text(c: &mut ChatProc, conv: &str, text: &str) {
    let what = format!("{text} in {conv}");
    c.find_any(WAIT, &what, |v| {
        v["event"] == "message" && v["conv"] == conv && v["text"] == text
    });
}

#[test]
fn three_nodes_deliver_every_message_once_to_every_member_on_every_node() {
    let Some(cl) = Cluster::start("three_nodes") else {
        return;
    };
    let t0 = Instant::now();
    let nodes = [cl.node(1), cl.node(2), cl.node(3)];
    // One identity: a single pin covers the cluster.
    assert!(
        nodes.iter().all(|n| n.fingerprint == nodes[0].fingerprint),
        "nodes present different certificates"
    );
    let home = cl.home();
    let mut alice = ChatProc::login(&nodes[0].addr, "alice", home);
    let mut bob = ChatProc::login(&nodes[1].addr, "bob", home);
    let mut carol = ChatProc::login(&nodes[2].addr, "carol", home);
    let mut dave = ChatProc::login(&nodes[0].addr, "dave", home);
    // Presence is cluster-wide: alice (node 1) sees carol (node 3) online.
    wait_online(&mut alice, "carol");
    alice.cmd(json!({"cmd": "who"}));
    let who = alice.expect("who", |v| v["event"] == "who");
    for u in ["alice", "bob", "carol", "dave"] {
        assert!(who["users"].to_string().contains(u), "{who}");
    }

    // A room created on node 1, joined from nodes 2 and 3.
    alice.cmd(json!({"cmd": "create_room", "room": "#team", "topic": "across nodes"}));
    alice.expect("joined", |v| v["event"] == "joined" && v["room"] == "#team");
    for (c, name) in [
        (&mut bob, "bob"),
        (&mut carol, "carol"),
        (&mut dave, "dave"),
    ] {
        alice.cmd(json!({"cmd": "invite", "room": "#team", "user": name}));
        c.expect("invited", |v| {
            v["event"] == "invited" && v["room"] == "#team"
        });
        c.cmd(json!({"cmd": "accept", "room": "#team"}));
        c.expect("joined", |v| v["event"] == "joined" && v["room"] == "#team");
    }
    // Members on other nodes hear of each join.
    wait_for(&mut alice, "dave joined", |v| {
        v["event"] == "member" && v["user"] == "dave" && v["change"] == "joined"
    });

    // A burst from every node into #general, the room and private conversations.
    const N: usize = 15;
    for i in 0..N {
        alice.send("#general", &format!("a-g{i}"));
        bob.send("#team", &format!("b-t{i}"));
        carol.send("@dave", &format!("c-d{i}"));
        dave.send("@bob", &format!("d-b{i}"));
        alice.send("#team", &format!("a-t{i}"));
        bob.send("@alice", &format!("b-a{i}"));
    }
    let mut clients = [alice, bob, carol, dave];
    for c in clients.iter_mut() {
        c.sync();
    }
    for c in clients.iter_mut() {
        c.sync();
    }
    let [mut alice, mut bob, mut carol, mut dave] = clients;
    let last = N - 1;
    for c in [&mut bob, &mut carol, &mut dave] {
        wait_text(c, "#general", &format!("a-g{last}"));
    }
    for c in [&mut alice, &mut carol, &mut dave] {
        wait_text(c, "#team", &format!("b-t{last}"));
    }
    for c in [&mut bob, &mut carol, &mut dave] {
        wait_text(c, "#team", &format!("a-t{last}"));
    }
    wait_text(&mut dave, "@carol", &format!("c-d{last}"));
    wait_text(&mut bob, "@dave", &format!("d-b{last}"));
    wait_text(&mut alice, "@bob", &format!("b-a{last}"));
    assert_eq!(texts(&carol.log, "#general").len(), N);
    assert_eq!(texts(&carol.log, "#team").len(), 2 * N);
    assert_eq!(texts(&dave.log, "@carol").len(), N);
    assert_eq!(texts(&bob.log, "@dave").len(), N);
    assert_eq!(texts(&alice.log, "@bob").len(), N);

    // Delete for me across a user's sessions on different nodes: alice also on node 3.
    let mut alice2 = ChatProc::start_with(&nodes[2].addr, "alice", {
        let mut o = ClientOpts::new(&home.join("second"));
        o.trust = vec!["--fingerprint".into(), nodes[0].fingerprint.clone()];
        o
    });
    alice2.expect("ready", |v| v["event"] == "ready");
    let victim = events(&alice.log, "message")
        .into_iter()
        .find(|v| v["conv"] == "@bob")
        .expect("a message from bob")["id"]
        .clone();
    alice.cmd(json!({"cmd": "delete", "id": victim, "for": "me"}));
    wait_for(&mut alice2, "hidden on the other node", |v| {
        v["event"] == "deleted" && v["id"] == victim && v["for"] == "me"
    });
    // Delete for everyone from node 2: the tombstone reaches every node.
    let bobs = events(&bob.log, "sent")
        .into_iter()
        .find(|v| v["conv"] == "#team")
        .expect("bob sent into #team")["id"]
        .clone();
    bob.cmd(json!({"cmd": "delete", "id": bobs, "for": "everyone"}));
    for c in [&mut alice, &mut carol, &mut dave] {
        wait_for(c, "tombstone", |v| {
            v["event"] == "deleted" && v["id"] == bobs && v["for"] == "everyone"
        });
    }

    // A kick on node 1 takes effect on node 3 at once: carol hears it, cannot send, and
    // gets nothing more of the room.
    alice.cmd(json!({"cmd": "kick", "room": "#team", "user": "carol"}));
    let left = wait_for(&mut carol, "kicked", |v| {
        v["event"] == "left" && v["room"] == "#team"
    });
    assert_eq!(left["reason"], "kicked", "{left}");
    carol.send("#team", "after the kick");
    let refused = wait_for(&mut carol, "refused", |v| v["event"] == "error");
    assert_eq!(refused["code"], "not_member", "{refused}");
    bob.send("#team", "carol must not see this");
    bob.sync();
    carol.sync();
    assert!(!texts(&carol.log, "#team").contains(&"carol must not see this"));

    // Dave leaves node 1: bob on node 2 sees him go.
    let (_, dave_log) = dave.finish();
    wait_for(&mut bob, "dave offline", |v| {
        v["event"] == "presence" && v["user"] == "dave" && v["online"] == false
    });

    let mut logs = Vec::new();
    for c in [alice, bob] {
        logs.push((c.user.clone(), c.finish().1));
    }
    // alice's second session only had to see her delete-for-me.
    alice2.finish();
    // carol's one refused send is the only error anywhere.
    let (_, mut carol_log) = carol.finish();
    carol_log.retain(|v| !(v["event"] == "error" && v["code"] == "not_member"));
    logs.push(("carol".into(), carol_log));
    logs.push(("dave".into(), dave_log));
    for (u, l) in &logs {
        no_errors(u, l);
    }
    // #team's last message went out after carol's kick and dave's exit: P1 does not
    // expect it of them (its ack is left out of the record).
    for (u, l) in logs.iter_mut() {
        if u == "bob" {
            l.retain(|v| !(v["event"] == "sent" && v["text"] == "carol must not see this"));
        }
    }
    let records: Vec<Record> = logs
        .iter()
        .map(|(u, l)| Record { user: u, log: l })
        .collect();
    check_properties(&records, &["alice", "bob", "carol", "dave"]);
    println!(
        "figures: 3 nodes, 4 users, {} messages, {:.1} s",
        6 * N + 1,
        t0.elapsed().as_secs_f64()
    );
    for n in nodes {
        n.stop();
    }
}

/// Checks P1–P7 over `logs` (user, log), every user a member of `#general` and the rooms.
fn check_all(logs: &[(String, Vec<Value>)]) {
    let users: Vec<&str> = logs.iter().map(|(u, _)| u.as_str()).collect();
    let records: Vec<Record> = logs
        .iter()
        .map(|(u, l)| Record { user: u, log: l })
        .collect();
    check_properties(&records, &users);
}

#[test]
fn read_markers_seen_receipts_and_typing_reach_sessions_on_other_nodes() {
    let Some(cl) = Cluster::start("read_state") else {
        return;
    };
    let t0 = Instant::now();
    let nodes = [cl.node(1), cl.node(2), cl.node(3)];
    let home = cl.home();
    // alice on node A and node B, bob (receipts on: the default) on node C, in a small
    // room (a private conversation would need alice's two devices to share one identity
    // key; the receipt rules are the same for both).
    let mut alice = ChatProc::login(&nodes[0].addr, "alice", home);
    alice.cmd(json!({"cmd": "create_room", "room": "#pair", "topic": ""}));
    alice.expect("joined", |v| v["event"] == "joined" && v["room"] == "#pair");
    let mut bob = ChatProc::login(&nodes[2].addr, "bob", home);
    bob.cmd(json!({"cmd": "join", "room": "#pair"}));
    bob.expect("joined", |v| v["event"] == "joined" && v["room"] == "#pair");
    let mut alice2 = ChatProc::start_with(&nodes[1].addr, "alice", {
        let mut o = ClientOpts::new(&home.join("second"));
        o.trust = vec!["--fingerprint".into(), nodes[0].fingerprint.clone()];
        o
    });
    alice2.expect("ready", |v| v["event"] == "ready");
    const N: usize = 3;
    for i in 0..N {
        bob.send("#pair", &format!("r{i}"));
    }
    bob.sync();
    let last = format!("r{}", N - 1);
    for c in [&mut alice, &mut alice2] {
        wait_text(c, "#pair", &last);
    }
    let seq = events(&bob.log, "sent")
        .iter()
        .filter_map(|v| v["seq"].as_u64())
        .max()
        .expect("bob's acks");

    // alice reads on node A: her session on node B follows, bob on node C sees it.
    alice.cmd(json!({"cmd": "read", "conv": "#pair"}));
    alice.sync();
    wait_for(&mut alice2, "read on the other node", |v| {
        v["event"] == "read" && v["conv"] == "#pair" && v["upto"] == seq
    });
    wait_for(&mut bob, "seen from another node", |v| {
        v["event"] == "seen" && v["conv"] == "#pair" && v["user"] == "alice" && v["upto"] == seq
    });
    // The reading session itself is not told; the marker is the store's, so `seen_by` on
    // node C agrees.
    assert!(events(&alice.log, "read").is_empty(), "{:?}", alice.log);
    bob.cmd(json!({"cmd": "seen_by", "conv": "#pair"}));
    let seen_by = bob.expect("seen_by", |v| v["event"] == "seen_by");
    assert_eq!(seen_by["members"], json!([{"user": "alice", "upto": seq}]));

    // bob types on node C: both of alice's sessions, on A and B, show it.
    bob.cmd(json!({"cmd": "typing", "conv": "#pair"}));
    for c in [&mut alice, &mut alice2] {
        wait_for(c, "typing from another node", |v| {
            v["event"] == "typing" && v["conv"] == "#pair" && v["user"] == "bob"
        });
    }
    let typed = t0.elapsed();
    assert!(events(&bob.log, "typing").is_empty(), "not told of his own");

    let logs = vec![
        ("alice".to_owned(), alice.finish().1),
        ("alice".to_owned(), alice2.finish().1),
        ("bob".to_owned(), bob.finish().1),
    ];
    for (u, l) in &logs {
        no_errors(u, l);
    }
    check_all(&logs);
    println!(
        "figures: 3 nodes, read -> read + seen, typing -> 2 sessions, {:.1} s",
        typed.as_secs_f64()
    );
    for n in nodes {
        n.stop();
    }
}

#[test]
fn nats_restarted_mid_burst_deliveries_resume_and_the_gap_is_repaired() {
    let Some(mut cl) = Cluster::start("nats_restart") else {
        return;
    };
    let (a, b) = (cl.node(1), cl.node(2));
    let home = cl.home().to_owned();
    let mut alice = ChatProc::login(&a.addr, "alice", &home);
    let mut bob = ChatProc::login(&b.addr, "bob", &home);
    wait_online(&mut bob, "alice");
    let send = |c: &mut ChatProc, from: usize, to: usize| {
        for i in from..to {
            c.send("#general", &format!("m{i}"));
        }
        c.sync();
    };
    send(&mut alice, 0, 10);
    wait_text(&mut bob, "#general", "m9");
    // NATS goes away mid-burst: the node keeps storing and acknowledging.
    cl.nats.kill();
    let down = Instant::now();
    send(&mut alice, 10, 20);
    bob.send("#general", "bob while NATS is down");
    bob.sync();
    cl.nats.run();
    // Back: the nodes reconnect by themselves; the nudge after the reconnect, or the next
    // live event, makes each client catch up on what it missed.
    wait_text(&mut bob, "#general", "m19");
    wait_text(&mut alice, "#general", "bob while NATS is down");
    let repaired = down.elapsed();
    // Both nodes noticed and nudged their clients (whether a publish was lost or only
    // held back by the NATS client is up to timing; P1 below holds either way).
    for n in [&a, &b] {
        wait_log(&n.data_dir, "NATS is back");
    }
    send(&mut alice, 20, 30);
    wait_text(&mut bob, "#general", "m29");
    let logs = vec![
        ("alice".to_owned(), alice.finish().1),
        ("bob".to_owned(), bob.finish().1),
    ];
    for (u, l) in &logs {
        no_errors(u, l);
    }
    assert_eq!(texts(&logs[1].1, "#general").len(), 30);
    check_all(&logs);
    println!(
        "figures: NATS down and back, 31 messages, gap repaired {:.1} s after the kill",
        repaired.as_secs_f64()
    );
    a.stop();
    b.stop();
}

#[test]
fn two_nodes_racing_on_one_room_give_one_sequence_without_duplicates() {
    let Some(cl) = Cluster::start("racing") else {
        return;
    };
    let nodes = [cl.node(1), cl.node(2), cl.node(3)];
    let home = cl.home();
    let mut alice = ChatProc::login(&nodes[0].addr, "alice", home);
    let mut bob = ChatProc::login(&nodes[1].addr, "bob", home);
    let mut carol = ChatProc::login(&nodes[2].addr, "carol", home);
    alice.cmd(json!({"cmd": "create_room", "room": "#race", "topic": ""}));
    alice.expect("joined", |v| v["event"] == "joined" && v["room"] == "#race");
    for c in [&mut bob, &mut carol] {
        c.cmd(json!({"cmd": "join", "room": "#race"}));
        c.expect("joined", |v| v["event"] == "joined" && v["room"] == "#race");
    }
    // Both write their whole burst before either waits: the nodes append at once.
    const N: usize = 40;
    for i in 0..N {
        alice.send("#race", &format!("a{i}"));
        bob.send("#race", &format!("b{i}"));
    }
    alice.sync();
    bob.sync();
    let last = N - 1;
    wait_text(&mut carol, "#race", &format!("a{last}"));
    wait_text(&mut carol, "#race", &format!("b{last}"));
    wait_text(&mut alice, "#race", &format!("b{last}"));
    wait_text(&mut bob, "#race", &format!("a{last}"));
    let logs = vec![
        ("alice".to_owned(), alice.finish().1),
        ("bob".to_owned(), bob.finish().1),
        ("carol".to_owned(), carol.finish().1),
    ];
    for (u, l) in &logs {
        no_errors(u, l);
    }
    // One sequence: the acks and deliveries of all three give the same (seq, id) pairs,
    // numbered without a gap.
    let mut by_seq = std::collections::BTreeMap::new();
    for (u, l) in &logs {
        for v in l
            .iter()
            .filter(|v| (v["event"] == "message" || v["event"] == "sent") && v["conv"] == "#race")
        {
            let (seq, id) = (v["seq"].as_u64().unwrap(), v["id"].as_u64().unwrap());
            let prev = by_seq.insert(seq, id);
            assert!(
                prev.is_none_or(|p| p == id),
                "{u}: seq {seq} is {id} and {prev:?}"
            );
        }
    }
    assert_eq!(by_seq.len(), 2 * N, "{by_seq:?}");
    let seqs: Vec<u64> = by_seq.keys().copied().collect();
    assert_eq!(
        seqs.last().unwrap() - seqs[0] + 1,
        2 * N as u64,
        "a gap: {seqs:?}"
    );
    assert_eq!(texts(&logs[2].1, "#race").len(), 2 * N);
    check_all(&logs);
    for n in nodes {
        n.stop();
    }
}

#[test]
fn a_node_killed_mid_burst_loses_nothing_acknowledged() {
    let Some(cl) = Cluster::start("node_killed") else {
        return;
    };
    let (a, b) = (cl.node(1), cl.node(2));
    let home = cl.home();
    // alice knows both nodes (`--server a,b`: one pin for the list) and is on the first;
    // short QUIC timers so that the dead node is noticed in seconds.
    let list = format!("{},{}", a.addr, b.addr);
    let mut o = ClientOpts::new(home);
    o.trust = vec!["--fingerprint".into(), a.fingerprint.clone()];
    o.extra = TIMERS.client_args();
    let mut alice = ChatProc::login_under(&[], &list, "alice", o);
    let via = alice.expect("server", |v| v["event"] == "server");
    assert_eq!(
        via["addr"],
        a.addr.as_str(),
        "the first address answers: {via}"
    );
    let mut bob = ChatProc::login(&b.addr, "bob", home);
    wait_online(&mut bob, "alice");
    // bob's `#general` stream is open before the burst: a client without a sync position
    // starts that stream at the present when it opens it, and under load that can be
    // after the first messages of the burst (they are history then, not live).
    alice.send("#general", "warmup");
    wait_text(&mut bob, "#general", "warmup");
    const BURST: usize = 300;
    for i in 0..BURST {
        alice.send("#general", &format!("k{i}"));
    }
    // SIGKILL as soon as some of the burst is acknowledged; the rest is in flight or
    // queued in alice's outbox.
    wait_for(&mut alice, "some acks", |v| {
        v["event"] == "sent" && v["text"] == "k12"
    });
    a.kill();
    let killed = Instant::now();
    let acked_before = alice.count("sent") - 1; // the warm-up is not part of the burst
    // Her client notices, fails over to node 2 by itself and resends its outbox.
    let patience = TIMERS.back_within() + Duration::from_secs(10);
    alice.expect_within("disconnected", patience, |v| v["event"] == "disconnected");
    alice.expect_within("reconnected", patience, |v| v["event"] == "reconnected");
    let via = alice.expect("server", |v| v["event"] == "server");
    let back = killed.elapsed();
    assert_eq!(via["addr"], b.addr.as_str(), "on the other node: {via}");
    for i in 0..5 {
        alice.send("#general", &format!("after{i}"));
    }
    alice.sync();
    alice.sync();
    wait_text(&mut bob, "#general", "after4");
    let (_, alice_log) = alice.finish_ok();
    let logs = vec![
        ("alice".to_owned(), alice_log),
        ("bob".to_owned(), bob.finish().1),
    ];
    for (u, l) in &logs {
        no_errors(u, l);
    }
    // Every message of the burst acknowledged once, in order (resends answered from the
    // shared database), and each reached bob.
    let want: Vec<String> = std::iter::once("warmup".to_owned())
        .chain((0..BURST).map(|i| format!("k{i}")))
        .chain((0..5).map(|i| format!("after{i}")))
        .collect();
    let acked: Vec<&str> = events(&logs[0].1, "sent")
        .iter()
        .map(|v| v["text"].as_str().unwrap())
        .collect();
    assert_eq!(acked, want, "acked once each, in order");
    assert_eq!(
        texts(&logs[1].1, "#general"),
        want,
        "bob: once each, in order"
    );
    check_all(&logs);
    println!(
        "figures: node killed after {acked_before} of {BURST} acks; alice's client on the other node by itself in {:.1} s",
        back.as_secs_f64()
    );
    b.stop();
}

#[test]
fn postgres_stopped_for_10_s_sends_fail_clearly_and_the_cluster_recovers() {
    let Some(nats) = nats::NatsServer::start("postgres_stopped") else {
        return;
    };
    // A PostgreSQL of its own: the other cases share one, and this one stops it.
    let pg = match postgres::PgServer::start() {
        Ok(Some(pg)) => pg,
        Ok(None) => {
            println!("SKIPPED: postgres_stopped: PostgreSQL is not installed");
            return;
        }
        Err(e) => panic!("could not start PostgreSQL: {e}"),
    };
    let db = pg.create_database().unwrap();
    let cl = Cluster {
        url: pg.url(&db),
        nats,
        dir: tempfile::tempdir().unwrap(),
        _db: None,
    };
    let (a, b) = (cl.node(1), cl.node(2));
    let home = cl.home();
    let mut alice = ChatProc::login(&a.addr, "alice", home);
    let mut bob = ChatProc::login(&b.addr, "bob", home);
    for i in 0..5 {
        alice.send("#general", &format!("before{i}"));
    }
    alice.sync();
    wait_text(&mut bob, "#general", "before4");

    pg.stop().unwrap();
    let stopped = Instant::now();
    alice.send("#general", "while the database is down");
    let err = wait_for(&mut alice, "a clear error", |v| v["event"] == "error");
    assert_eq!(err["code"], "internal", "{err}");
    // Presence does not need the database: bob's `who` still answers.
    bob.cmd(json!({"cmd": "who"}));
    let who = bob.expect("who", |v| v["event"] == "who");
    assert!(who["users"].to_string().contains("alice"), "{who}");
    std::thread::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed()));
    pg.restart().unwrap();

    // Back by itself: the next batch re-opens the connection.
    for i in 0..5 {
        alice.send("#general", &format!("after{i}"));
    }
    alice.sync();
    bob.send("#general", "bob after");
    bob.sync();
    wait_text(&mut bob, "#general", "after4");
    wait_text(&mut alice, "#general", "bob after");
    // alice's client keeps the refused message for its next connection: it is not
    // acknowledged, so a clean exit would wait for it; she is stopped instead.
    let mut logs = vec![
        ("alice".to_owned(), alice.kill()),
        ("bob".to_owned(), bob.finish().1),
    ];
    // The outage's one refused send is the only error.
    let errors: Vec<Value> = events(&logs[0].1, "error").into_iter().cloned().collect();
    assert!(errors.iter().all(|e| e["code"] == "internal"), "{errors:?}");
    logs[0].1.retain(|v| v["event"] != "error");
    no_errors("bob", &logs[1].1);
    check_all(&logs);
    a.stop();
    b.stop();
}
