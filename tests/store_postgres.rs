//! The PostgreSQL store (feature `postgres`) against a real PostgreSQL started by the test
//! (tests/common/postgres.rs): the whole `Store` contract, then what only a shared
//! database must show — two nodes racing on one conversation, a failed batch, a lost
//! connection, migrations. Without PostgreSQL each test prints `SKIPPED: …` and passes.

#[path = "common/postgres.rs"]
mod pg;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};

use livewire::app::ids::{ClientMsgId, ConvId};
use livewire::app::store::Store;
use livewire::store::PgStore;

mod contract {
    livewire::store_contract_tests!(guarded {
        // `return` leaves the test: PostgreSQL is not installed (SKIPPED printed).
        let Some(db) = super::pg::fresh_database("store contract") else {
            return;
        };
        let store = livewire::store::PgStore::connect(&db.url()).unwrap();
        (db, store)
    });
}

fn cmid(node: u8, n: u16) -> ClientMsgId {
    let mut id = [node; 16];
    id[..2].copy_from_slice(&n.to_be_bytes());
    ClientMsgId(id)
}

/// Two nodes (two connections, two threads) append batches to `#general` at the same time,
/// and a client that failed over resends the same message through both: the conversation
/// has one gap-free sequence, every message once, and both nodes acknowledge a resend with
/// the same event.
#[test]
fn two_nodes_racing_on_one_conversation_agree() {
    const BATCHES: u16 = 25;
    const PER_BATCH: u16 = 8;
    let Some(db) = pg::fresh_database("two nodes racing") else {
        return;
    };
    let start = Arc::new(Barrier::new(2));
    let began = std::time::Instant::now();
    let nodes: Vec<_> = [1u8, 2]
        .into_iter()
        .map(|node| {
            let (url, start) = (db.url(), start.clone());
            std::thread::spawn(move || {
                let mut s = PgStore::connect(&url).unwrap();
                start.wait();
                // (sender, cmid) -> (seq, id, existed) as acknowledged after a commit.
                let mut acked = Vec::new();
                let mut retries = 0;
                for b in 0..BATCHES {
                    // The hub's loop: a batch whose commit fails acknowledges nothing and
                    // its clients send again.
                    loop {
                        s.begin().unwrap();
                        let mut batch = Vec::new();
                        let mut ok = true;
                        let own = (0..PER_BATCH)
                            .map(|i| (format!("user{node}"), cmid(node, b * 100 + i)));
                        // `carol`'s message number b reaches both nodes.
                        let shared = std::iter::once(("Carol".to_string(), cmid(0, b)));
                        for (sender, id) in own.chain(shared) {
                            let body = format!("{sender} {b}");
                            match s.insert_message(
                                &ConvId::General,
                                &sender,
                                id,
                                body.as_bytes(),
                                1,
                            ) {
                                Ok((e, existed)) => batch.push((sender, id, e.seq, e.id, existed)),
                                Err(_) => ok = false,
                            }
                        }
                        if s.commit().is_ok() && ok {
                            acked.extend(batch);
                            break;
                        }
                        retries += 1;
                        assert!(retries < 50, "node {node}: too many failed batches");
                    }
                }
                acked
            })
        })
        .collect();
    let acks: Vec<_> = nodes.into_iter().flat_map(|n| n.join().unwrap()).collect();
    let total = 2 * usize::from(BATCHES * PER_BATCH) + usize::from(BATCHES);
    eprintln!(
        "two nodes stored {total} messages in {} batches in {:?} (debug build, fsync off)",
        2 * BATCHES,
        began.elapsed()
    );

    let mut s = PgStore::connect(&db.url()).unwrap();
    let events = s
        .events_after(&ConvId::General, 0, 10_000, "nobody")
        .unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=total as u64).collect::<Vec<_>>(),
        "one gap-free sequence"
    );
    assert_eq!(s.last_seq(&ConvId::General).unwrap(), total as u64);
    let distinct: BTreeSet<_> = events
        .iter()
        .map(|e| (e.sender.to_ascii_lowercase(), e.cmid))
        .collect();
    assert_eq!(distinct.len(), total, "a message was stored twice");

    // Every acknowledgement names what is stored; a message acknowledged by both nodes was
    // stored by exactly one of them, and both name the same event.
    let stored: BTreeMap<_, _> = events.iter().map(|e| (e.id, e)).collect();
    // (sender, cmid) -> every acknowledgement of it: (seq, id, existed).
    type Acks = Vec<(u64, u64, bool)>;
    let mut by_message: BTreeMap<(String, ClientMsgId), Acks> = BTreeMap::new();
    for (sender, id, seq, msg_id, existed) in acks {
        let e = stored[&msg_id];
        assert_eq!((e.seq, e.cmid), (seq, id));
        by_message
            .entry((sender, id))
            .or_default()
            .push((seq, msg_id, existed));
    }
    assert_eq!(by_message.len(), total);
    for (message, acks) in by_message {
        assert_eq!(
            acks.iter().filter(|a| !a.2).count(),
            1,
            "{message:?}: {acks:?}"
        );
        assert!(acks.iter().all(|a| (a.0, a.1) == (acks[0].0, acks[0].1)));
    }
}

/// A statement PostgreSQL refuses inside a batch aborts its transaction: the store says so
/// for every later call and at commit, nothing of the batch is stored, and the next batch
/// works.
#[test]
fn a_failed_statement_fails_the_whole_batch() {
    let Some(db) = pg::fresh_database("failed batch") else {
        return;
    };
    let mut s = PgStore::connect(&db.url()).unwrap();
    let g = ConvId::General;
    s.begin().unwrap();
    s.insert_message(&g, "alice", cmid(1, 1), b"kept?", 1)
        .unwrap();
    // PostgreSQL's text cannot hold a NUL byte.
    assert!(
        s.insert_message(&g, "bad\0name", cmid(1, 2), b"x", 1)
            .is_err()
    );
    assert!(
        s.insert_message(&g, "alice", cmid(1, 3), b"later", 1)
            .is_err()
    );
    let e = s.commit().unwrap_err();
    assert!(e.message.contains("rolled back"), "{e}");
    assert_eq!(s.last_seq(&g).unwrap(), 0);
    s.begin().unwrap();
    let (again, existed) = s
        .insert_message(&g, "alice", cmid(1, 1), b"kept?", 1)
        .unwrap();
    s.commit().unwrap();
    assert!(!existed);
    assert_eq!(again.seq, 1);
}

/// A connection the server closed is opened again at the next batch.
#[test]
fn a_lost_connection_is_reopened() {
    let Some(db) = pg::fresh_database("lost connection") else {
        return;
    };
    let mut s = PgStore::connect(&db.url()).unwrap();
    let mut admin = postgres::Client::connect(&db.url(), postgres::NoTls).unwrap();
    let cut = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    assert_eq!(cut.len(), 1, "the store's connection was not found");
    // The server ends the session asynchronously: wait until it is gone, so what follows
    // is the idle connection that was lost, not a batch cut in the middle.
    for _ in 0..100 {
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    s.begin().unwrap();
    s.insert_message(&ConvId::General, "alice", cmid(1, 1), b"hi", 1)
        .unwrap();
    s.commit().unwrap();
    assert_eq!(s.last_seq(&ConvId::General).unwrap(), 1);
}

/// Nodes starting together migrate once; a database from a newer LiveWire is refused.
#[test]
fn migrations_run_once_and_newer_schemas_are_refused() {
    let Some(db) = pg::fresh_database("migrations") else {
        return;
    };
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let url = db.url();
            std::thread::spawn(move || PgStore::connect(&url).map(drop))
        })
        .collect();
    for s in starts {
        s.join().unwrap().unwrap();
    }
    let mut s = PgStore::connect(&db.url()).unwrap();
    let version = s.schema_version().unwrap();
    assert!(version >= 1);
    let mut admin = postgres::Client::connect(&db.url(), postgres::NoTls).unwrap();
    admin
        .execute("UPDATE livewire_schema SET version = version + 1", &[])
        .unwrap();
    let refused = PgStore::connect(&db.url())
        .err()
        .expect("a newer schema was accepted");
    assert!(refused.message.contains("upgrade LiveWire"), "{refused}");
}

/// The narrow race, step by step: node A has stored a message but not committed; node B
/// gets the client's resend, finds nothing yet, and waits on the conversation's counter.
/// Once A commits, B answers with A's event and gives its sequence number back.
#[test]
fn a_resend_racing_its_uncommitted_original_gets_the_original() {
    let Some(db) = pg::fresh_database("resend race") else {
        return;
    };
    let g = ConvId::General;
    let mut a = PgStore::connect(&db.url()).unwrap();
    a.begin().unwrap();
    let (original, existed) = a
        .insert_message(&g, "carol", cmid(7, 7), b"once", 1)
        .unwrap();
    assert!(!existed);
    let url = db.url();
    let b = std::thread::spawn(move || {
        let mut b = PgStore::connect(&url).unwrap();
        b.begin().unwrap();
        let got = b.insert_message(&ConvId::General, "Carol", cmid(7, 7), b"once", 2);
        b.commit().unwrap();
        got.unwrap()
    });
    // Wait until B waits for a lock (the counter row A holds), then let A commit.
    let mut admin = postgres::Client::connect(&db.url(), postgres::NoTls).unwrap();
    let waiting = (0..250).any(|_| {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get(0);
        n == 1 || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            false
        }
    });
    assert!(waiting, "node B never waited for node A's counter row");
    a.commit().unwrap();
    let (again, existed) = b.join().unwrap();
    assert!(existed, "the resend was stored a second time");
    assert_eq!(again, original);
    assert_eq!(
        a.last_seq(&g).unwrap(),
        1,
        "the resend's sequence number was not given back"
    );
    let (next, _) = a
        .insert_message(&g, "dave", cmid(8, 8), b"next", 3)
        .unwrap();
    assert_eq!(next.seq, 2);
}
