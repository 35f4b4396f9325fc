//! The per-user storage quota for files (issue 11 #3): counted on the server, refused up
//! front with `quota_exceeded` and nothing left on disk, freed again by a delete for
//! everyone, and one user's files never eat another's quota.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

const LIMITS: &[&str] = &[
    "--msg-burst",
    "10000",
    "--msg-rate",
    "10000",
    "--quota-per-user",
    "250000",
];

fn file_of(dir: &Path, name: &str, len: usize) -> PathBuf {
    let path = dir.join(name);
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Sends a file and waits for its `sent` or an `error`.
fn send_file(c: &mut ChatProc, path: &Path) -> Value {
    c.cmd(json!({"cmd": "send_file", "to": "#general", "path": path}));
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    c.expect("sent file or error", move |v| {
        (v["event"] == "sent" && v["file"]["name"] == name.as_str()) || v["event"] == "error"
    })
}

#[test]
fn uploads_beyond_the_quota_are_refused_up_front_and_deletes_free_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let server = ServerProc::start(&data, "127.0.0.1:0", LIMITS);
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);

    let first = send_file(&mut alice, &file_of(home, "one.bin", 150_000));
    assert_eq!(first["event"], "sent", "{first}");
    let second = send_file(&mut alice, &file_of(home, "two.bin", 150_000));
    assert_eq!(second["event"], "error", "{second}");
    assert_eq!(second["code"], "quota_exceeded", "{second}");
    assert!(
        second["message"]
            .as_str()
            .unwrap()
            .contains("delete some files"),
        "{second}"
    );
    assert_eq!(
        parts_under(&data.join("files")),
        Vec::<PathBuf>::new(),
        "refused before any byte"
    );
    // Bob's quota is his own.
    let bobs = send_file(&mut bob, &file_of(home, "bobs.bin", 150_000));
    assert_eq!(bobs["event"], "sent", "{bobs}");

    // Deleting the first file for everyone gives its space back.
    alice.cmd(json!({"cmd": "delete", "id": first["id"], "for": "everyone"}));
    alice.expect("deleted", |v| v["event"] == "deleted");
    let third = send_file(&mut alice, &file_of(home, "three.bin", 150_000));
    assert_eq!(third["event"], "sent", "{third}");
    assert_eq!(alice.finish().0, 0);
    assert_eq!(bob.finish().0, 0);
}
