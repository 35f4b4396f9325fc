//! The scripted client against careless or hostile input (issue 11): a download never
//! replaces anything but a regular file, and that only with `"overwrite":true`, and leaves
//! no `.part` file behind when it fails; a line of invalid UTF-8 on stdin is one
//! `bad_command` error, not the end of the input.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

/// Files in `dir` whose name ends in `.part`.
fn part_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect()
}

/// Posts a small file to `#general` and returns its message id.
fn post_file(alice: &mut ChatProc, dir: &Path) -> Value {
    let src = dir.join("note.txt");
    std::fs::write(&src, b"the downloaded text").unwrap();
    alice.cmd(json!({"cmd": "send_file", "to": "#general", "path": src}));
    let sent = alice.expect("sent file", |v| {
        v["event"] == "sent" && v["file"]["name"] == "note.txt"
    });
    sent["id"].clone()
}

/// Asks for a download and returns its `downloaded` or `error` event.
fn download(c: &mut ChatProc, id: &Value, path: &Path, overwrite: Option<bool>) -> Value {
    let mut cmd = json!({"cmd": "download", "id": id, "path": path});
    if let Some(o) = overwrite {
        cmd["overwrite"] = json!(o);
    }
    c.cmd(cmd);
    let id = id.clone();
    c.expect("downloaded or error", move |v| {
        (v["event"] == "downloaded" && v["id"] == id) || v["event"] == "error"
    })
}

#[test]
fn a_download_replaces_only_a_regular_file_and_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("srv"), "127.0.0.1:0", &[]);
    let mut alice = ChatProc::login(&server.addr, "alice", dir.path());
    let id = post_file(&mut alice, dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    // An existing regular file: refused without overwrite, untouched.
    let existing = out.join("existing.txt");
    std::fs::write(&existing, b"keep me").unwrap();
    let e = download(&mut alice, &id, &existing, None);
    assert_eq!(e["event"], "error", "{e}");
    assert_eq!(e["code"], "exists", "{e}");
    let e = download(&mut alice, &id, &existing, Some(false));
    assert_eq!(e["code"], "exists", "{e}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    assert!(part_files(&out).is_empty(), "{:?}", part_files(&out));

    // ... and replaced with it.
    let e = download(&mut alice, &id, &existing, Some(true));
    assert_eq!(e["event"], "downloaded", "{e}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"the downloaded text");

    // A new path needs no overwrite.
    let fresh = out.join("fresh.txt");
    let e = download(&mut alice, &id, &fresh, None);
    assert_eq!(e["event"], "downloaded", "{e}");
    assert_eq!(std::fs::read(&fresh).unwrap(), b"the downloaded text");

    // Never a directory, a FIFO or a symbolic link (here to /dev/null), even with
    // overwrite; nothing half-written stays behind.
    let subdir = out.join("a-directory");
    std::fs::create_dir(&subdir).unwrap();
    let fifo = out.join("a-fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    let link = out.join("a-link");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    for target in [&subdir, &fifo, &link] {
        for overwrite in [None, Some(true)] {
            let e = download(&mut alice, &id, target, overwrite);
            assert_eq!(e["event"], "error", "{}: {e}", target.display());
            assert_eq!(e["code"], "exists", "{}: {e}", target.display());
        }
    }
    assert!(subdir.is_dir());
    let fifo_kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo_kind));
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());

    // A missing parent directory is an error too, and leaves nothing.
    let e = download(&mut alice, &id, &out.join("missing").join("x.txt"), None);
    assert_eq!(e["event"], "error", "{e}");
    assert!(!out.join("missing").exists());
    assert!(part_files(&out).is_empty(), "{:?}", part_files(&out));

    // The client carries on.
    alice.send("#general", "still here");
    alice.expect("sent", |v| {
        v["event"] == "sent" && v["text"] == "still here"
    });
    let (code, _) = alice.finish();
    assert_eq!(code, 0);
}

#[test]
fn a_line_of_invalid_utf8_is_a_bad_command_and_the_client_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("srv"), "127.0.0.1:0", &[]);
    let home = dir.path().join("alice");
    let mut child = Command::new(bin())
        .args([
            "chat",
            "--server",
            &server.addr,
            "--user",
            "alice",
            "--accept-new",
        ])
        .arg("--config-dir")
        .arg(home.join("config"))
        .arg("--state-dir")
        .arg(home.join("state"))
        .env("LIVEWIRE_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chat");
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"\xff\xfe\n").unwrap();
        let send = json!({"cmd": "send", "to": "#general", "text": "after the bad line"});
        writeln!(stdin, "{send}").unwrap();
        // Closing stdin: the client flushes, logs out and exits.
    }
    let log: Vec<Value> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let status = wait_child(&mut child);
    let errors = events(&log, "error");
    assert_eq!(errors.len(), 1, "{log:#?}");
    assert_eq!(errors[0]["code"], "bad_command");
    let sent = events(&log, "sent");
    assert_eq!(sent.len(), 1, "{log:#?}");
    assert_eq!(sent[0]["text"], "after the bad line");
    assert_eq!(status.code(), Some(0));
}
