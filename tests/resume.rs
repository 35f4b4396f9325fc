//! Login resumption tokens end to end, with the real binary: a client back after a server
//! restart logs in with its token (no Argon2: the server's `client_connected` says
//! `resumed`), a token copied to another device is refused (and without the password the
//! thief stays out), and a token used after logout is refused; both fall back to the
//! password when the client has it.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// The one state file (`<state>/<server>/<user>.json`) under a client's home.
fn state_file(home: &Path, user: &str) -> PathBuf {
    let state = home.join(user).join("state");
    let server_dir = std::fs::read_dir(&state)
        .expect("state dir")
        .next()
        .expect("a server dir")
        .expect("entry")
        .path();
    server_dir.join(format!("{user}.json"))
}

/// The saved resumption token, once the client saved one (it saves every 250 ms or so).
fn saved_token(path: &Path) -> Value {
    for _ in 0..200 {
        if let Some(v) = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .filter(|v| !v["resume"].is_null())
        {
            return v["resume"].clone();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no resumption token saved in {}", path.display());
}

/// The `resumed` flags of the server's `client_connected` events for `user`, in order.
fn connections(server: &ServerProc, user: &str) -> Vec<bool> {
    server
        .log
        .iter()
        .filter(|v| v["event"] == "client_connected" && v["user"] == user)
        .map(|v| v["resumed"].as_bool().expect("resumed flag"))
        .collect()
}

#[test]
fn a_client_back_after_a_server_restart_resumes_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let mut server = ServerProc::start(&data, "127.0.0.1:0", &[]);
    let addr = server.addr.clone();
    let mut alice = ChatProc::login(&addr, "alice", dir.path());
    server.expect("alice's login", |v| v["event"] == "client_connected");
    assert_eq!(connections(&server, "alice"), vec![false]);
    let path = state_file(dir.path(), "alice");
    saved_token(&path);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the state file holds a secret");
    }

    server.stop();
    let mut server = ServerProc::start(&data, &addr, &[]);
    alice.send("#general", "after the restart");
    alice.expect("the ack after the restart", |v| {
        v["event"] == "sent" && v["text"] == "after the restart"
    });
    server.expect("alice back", |v| v["event"] == "client_connected");
    assert_eq!(connections(&server, "alice"), vec![true]);
    alice.finish_ok();
    let log = std::fs::read_to_string(stderr_path(&data)).unwrap_or_default();
    assert!(!log.contains("login refused"), "{log}");
}

#[test]
fn a_token_copied_to_another_device_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, thief) = (dir.path().join("phone"), dir.path().join("thief"));
    let mut server = ServerProc::start(&dir.path().join("srv"), "127.0.0.1:0", &[]);
    let addr = server.addr.clone();
    let alice = ChatProc::login(&addr, "alice", &phone);
    let path = state_file(&phone, "alice");
    saved_token(&path);
    // Killed: no logout, so the token on disk stays valid.
    alice.kill();
    let stolen = std::fs::read(&path).unwrap();

    // The thief has the state file but their own identity key, and no password.
    let mut o = ClientOpts::new(&thief);
    o.password = "not the password".into();
    let stolen_path = thief
        .join("alice/state")
        .join(path.parent().unwrap().file_name().unwrap());
    std::fs::create_dir_all(&stolen_path).unwrap();
    std::fs::write(stolen_path.join("alice.json"), &stolen).unwrap();
    let mut intruder = ChatProc::start_with(&addr, "alice", o);
    intruder.expect("refused", |v| v["event"] == "error");
    let (code, _) = intruder.exit_code();
    assert_ne!(code, 0);
    server.drain(std::time::Duration::from_millis(200));
    assert_eq!(
        connections(&server, "alice"),
        vec![false],
        "the thief never got in"
    );
    // (That the refusal burnt the token for its owner too is a unit test: here the
    // owner would now meet the per-account throttle the two failures above count toward.)
}

#[test]
fn a_token_is_revoked_by_logout() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProc::start(&dir.path().join("srv"), "127.0.0.1:0", &[]);
    let addr = server.addr.clone();
    let alice = ChatProc::login(&addr, "alice", dir.path());
    let path = state_file(dir.path(), "alice");
    saved_token(&path);
    let before = std::fs::read(&path).unwrap();
    alice.finish_ok();
    let after: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(
        after["resume"].is_null(),
        "logout forgets the token: {after}"
    );

    // Put the logged-out token back: the server refuses it, the password gets in.
    std::fs::write(&path, &before).unwrap();
    let again = ChatProc::login(&addr, "alice", dir.path());
    again.finish_ok();
    server.drain(std::time::Duration::from_millis(300));
    assert_eq!(connections(&server, "alice"), vec![false, false]);
    let log = std::fs::read_to_string(stderr_path(&dir.path().join("srv"))).unwrap();
    assert!(log.contains("resumption token refused"), "{log}");
}
