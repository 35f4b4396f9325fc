//! Files in a cluster: two real nodes share one PostgreSQL database (started by the test)
//! and one identity, and keep uploaded files in it (`store::PgBlobs`), so a file uploaded
//! through node A downloads from node B, and an upload cut by node A's death resumes on
//! node B from the chunks A stored. A delete for everyone leaves no row behind. Without
//! PostgreSQL the tests print `SKIPPED: …` and pass (CI installs it).

#[cfg(feature = "postgres")]
mod common;
#[cfg(feature = "postgres")]
#[path = "common/postgres.rs"]
mod postgres;

#[cfg(not(feature = "postgres"))]
#[test]
fn files_are_shared_by_the_nodes_of_a_cluster() {
    eprintln!("SKIPPED: files_postgres: built without the postgres feature");
}

#[cfg(feature = "postgres")]
mod cluster {
    use std::io::Write;
    use std::path::{Path, PathBuf};

    use serde_json::{Value, json};
    use sha2::{Digest, Sha256};

    use super::common::*;
    use super::postgres;

    const FAST: &[&str] = &["--msg-burst", "10000", "--msg-rate", "10000"];

    /// Two nodes on `url` sharing node A's certificate.
    fn two_nodes(dir: &Path, url: &str) -> (ServerProc, ServerProc) {
        let mut args: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
        args.extend(TIMERS.server_args());
        args.extend(["--database".to_owned(), url.to_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let data_a = dir.join("node-a");
        let data_b = dir.join("node-b");
        let a = ServerProc::start(&data_a, "127.0.0.1:0", &args);
        std::fs::create_dir_all(&data_b).unwrap();
        for f in ["cert.pem", "key.pem"] {
            std::fs::copy(data_a.join(f), data_b.join(f)).unwrap();
        }
        let b = ServerProc::start(&data_b, "127.0.0.1:0", &args);
        assert_eq!(a.fingerprint, b.fingerprint);
        (a, b)
    }

    fn opts(home: &Path) -> ClientOpts {
        let mut o = ClientOpts::new(home);
        o.extra = TIMERS.client_args();
        o
    }

    /// `size` pseudo-random bytes (xorshift from `seed`): no two chunks alike.
    fn random_file(path: &Path, size: usize, seed: u64) {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        let mut x = seed | 1;
        for _ in 0..size.div_ceil(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f.write_all(&x.to_le_bytes()).unwrap();
        }
        f.flush().unwrap();
        drop(f);
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(size as u64).unwrap();
    }

    fn sha_file(path: &Path) -> String {
        let bytes = std::fs::read(path).unwrap();
        Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn sent_file(c: &mut ChatProc, name: &str) -> Value {
        let name = name.to_owned();
        c.expect("sent file", move |v| {
            (v["event"] == "sent" && v["file"]["name"] == name.as_str()) || v["event"] == "error"
        })
    }

    /// Looks the file message up in `conv`'s history (the nodes do not forward live
    /// events to each other without NATS) and downloads it.
    fn fetch(c: &mut ChatProc, conv: &str, name: &str, out: &Path) -> Value {
        c.cmd(json!({"cmd": "history", "conv": conv, "limit": 100}));
        let h = c.expect("history", |v| v["event"] == "history");
        let m = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["file"]["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in the history: {h}"));
        c.cmd(json!({"cmd": "download", "id": m["id"], "path": out}));
        let id = m["id"].clone();
        c.expect("downloaded", move |v| {
            (v["event"] == "downloaded" && v["id"] == id) || v["event"] == "error"
        })
    }

    fn rows(url: &str, table: &str) -> i64 {
        let mut c = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
        c.query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .unwrap()
            .get(0)
    }

    #[test]
    fn pg_blobs_keep_the_file_rules() {
        use livewire::app::blobs::{FileBlobs, Holding};
        use livewire::store::{PgBlobs, PgStore};
        use std::time::Duration;

        let Some(db) = postgres::fresh_database("pg_blobs_rules") else {
            return;
        };
        let url = db.url();
        // The store's migrations make the tables.
        drop(PgStore::connect(&url).unwrap());
        let b = PgBlobs::connect(&url).unwrap();
        assert_eq!(b.complete_len("alice", "f").unwrap(), None);
        assert_eq!(b.open_part("alice", "f").unwrap(), 0);
        for (i, chunk) in [b"0123".as_slice(), b"4567", b"89"].iter().enumerate() {
            b.write_part("alice", "f", 4 * i as u64, chunk).unwrap();
        }
        // A chunk written again (a resend) is the same bytes in the same place.
        b.write_part("alice", "f", 4, b"4567").unwrap();
        assert_eq!(b.open_part("alice", "f").unwrap(), 10);
        // Not complete yet: nothing to read, and finishing checks the length.
        assert_eq!(b.complete_len("alice", "f").unwrap(), None);
        assert!(b.finish_part("alice", "f", 12).is_err());
        // Resume from the last whole chunk.
        b.truncate_part("alice", "f", 8).unwrap();
        assert_eq!(b.open_part("alice", "f").unwrap(), 8);
        b.write_part("alice", "f", 8, b"89").unwrap();
        b.finish_part("alice", "f", 10).unwrap();
        assert_eq!(b.complete_len("alice", "f").unwrap(), Some(10));
        // Reads across chunk boundaries, and past the end is an error.
        assert_eq!(b.read("alice", "f", 0, 10).unwrap(), b"0123456789");
        assert_eq!(b.read("alice", "f", 3, 6).unwrap(), b"345678");
        assert!(b.read("alice", "f", 8, 5).is_err());
        // Holdings for quotas; another upload in progress.
        b.open_part("alice", "g").unwrap();
        b.write_part("alice", "g", 0, b"xy").unwrap();
        let mut held = b.holdings("alice").unwrap();
        held.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(
            held,
            vec![
                Holding {
                    name: "f".into(),
                    partial: false,
                    bytes: 10
                },
                Holding {
                    name: "g".into(),
                    partial: true,
                    bytes: 2
                },
            ]
        );
        // The sweep takes abandoned partial uploads only, never a running one.
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(b.sweep_parts(Duration::ZERO, &|_, n| n == "g"), 0);
        assert_eq!(b.sweep_parts(Duration::ZERO, &|_, _| false), 1);
        assert_eq!(b.holdings("alice").unwrap().len(), 1);
        // A refused upload leaves nothing; discarding never touches a complete file.
        b.discard_part("alice", "f").unwrap();
        assert_eq!(b.complete_len("alice", "f").unwrap(), Some(10));
        assert!(b.erase("alice", "f").unwrap());
        assert!(!b.erase("alice", "f").unwrap());
        assert_eq!(rows(&url, "file_chunks"), 0);
    }

    #[test]
    fn a_file_uploaded_on_one_node_downloads_from_the_other() {
        let Some(db) = postgres::fresh_database("files_on_two_nodes") else {
            return;
        };
        let url = db.url();
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let (a, b) = two_nodes(dir.path(), &url);
        let mut alice = ChatProc::login_under(&[], &a.addr, "alice", opts(home));
        let mut bob = ChatProc::login_under(&[], &b.addr, "bob", opts(home));
        let room_file = dir.path().join("room.dat");
        random_file(&room_file, 3 * 1024 * 1024 + 17, 7);
        let private_file = dir.path().join("private.dat");
        random_file(&private_file, 200 * 1024, 9);
        alice.cmd(json!({"cmd": "send_file", "to": "#general", "path": room_file}));
        let s = sent_file(&mut alice, "room.dat");
        assert_eq!(s["file"]["sha256"], sha_file(&room_file), "{s}");
        alice.cmd(json!({"cmd": "send_file", "to": "@bob", "path": private_file}));
        let p = sent_file(&mut alice, "private.dat");
        assert_eq!(p["event"], "sent", "{p}");

        // Nothing of it is in either node's data dir: it is in the database.
        for node in [&a, &b] {
            let files: Vec<PathBuf> = files_under(&node.data_dir.join("files"));
            assert!(files.is_empty(), "{files:?}");
        }
        let out = dir.path().join("room.copy");
        let d = fetch(&mut bob, "#general", "room.dat", &out);
        assert_eq!(d["event"], "downloaded", "{d}");
        assert_eq!(sha_file(&out), sha_file(&room_file));
        let out = dir.path().join("private.copy");
        let d = fetch(&mut bob, "@alice", "private.dat", &out);
        assert_eq!(d["event"], "downloaded", "{d}");
        assert_eq!(sha_file(&out), sha_file(&private_file));

        // Deleted for everyone through node A: no row of the file is left.
        assert_eq!(rows(&url, "file_blobs"), 2);
        alice.cmd(json!({"cmd": "delete", "id": s["id"], "for": "everyone"}));
        alice.cmd(json!({"cmd": "delete", "id": p["id"], "for": "everyone"}));
        alice.sync();
        assert_eq!(rows(&url, "file_blobs"), 0);
        assert_eq!(rows(&url, "file_chunks"), 0);
        let (_, alice_log) = alice.finish_ok();
        let (_, bob_log) = bob.finish_ok();
        assert_eq!(events(&alice_log, "error"), Vec::<&Value>::new());
        assert_eq!(events(&bob_log, "error"), Vec::<&Value>::new());
    }

    #[test]
    fn an_upload_cut_by_a_node_s_death_resumes_on_the_next_node() {
        let Some(db) = postgres::fresh_database("files_resume_on_failover") else {
            return;
        };
        let url = db.url();
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let (a, b) = two_nodes(dir.path(), &url);
        let list = format!("{},{}", a.addr, b.addr);
        let mut alice = ChatProc::login_under(&[], &list, "alice", opts(home));
        alice.expect("on node A", |v| {
            v["event"] == "server" && v["addr"] == a.addr.as_str()
        });
        let size = 24 * 1024 * 1024;
        let src = dir.path().join("big.dat");
        random_file(&src, size, 42);
        alice.cmd(json!({"cmd": "send_file", "to": "#general", "path": src}));
        alice.expect("progress past 4 MiB", |v| {
            v["event"] == "transfer" && v["bytes"].as_u64().unwrap() >= 4 * 1024 * 1024
        });
        a.kill();
        let before = events(&alice.log, "transfer").len();
        let patience = TIMERS.back_within() + std::time::Duration::from_secs(10);
        alice.expect_within("on node B", patience, |v| {
            v["event"] == "server" && v["addr"] == b.addr.as_str()
        });
        let sent = sent_file(&mut alice, "big.dat");
        assert_eq!(sent["file"]["sha256"], sha_file(&src), "{sent}");
        // The attempt on node B started from the chunks node A had stored.
        let resumed: Vec<u64> = events(&alice.log, "transfer")[before..]
            .iter()
            .map(|v| v["bytes"].as_u64().unwrap())
            .collect();
        assert!(
            resumed[0] >= 1024 * 1024 && resumed[0] < size as u64,
            "resumed from {resumed:?}"
        );
        let mut bob = ChatProc::login_under(&[], &b.addr, "bob", opts(home));
        let out = dir.path().join("big.copy");
        let d = fetch(&mut bob, "#general", "big.dat", &out);
        assert_eq!(d["event"], "downloaded", "{d}");
        assert_eq!(sha_file(&out), sha_file(&src));
        eprintln!(
            "figures: upload of {} MiB resumed on node B from {:.1} MiB stored through node A",
            size >> 20,
            resumed[0] as f64 / (1024.0 * 1024.0)
        );
        alice.finish_ok();
        bob.finish_ok();
    }
}
