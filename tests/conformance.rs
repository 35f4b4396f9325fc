//! End-to-end conformance: a real headless server on 127.0.0.1:0 and real scripted clients
//! (the `livewire` binary), checked with the `sync` barrier and the P1–P7 of docs/TESTING.md.

mod common;

use common::*;
use serde_json::json;

fn setup() -> (tempfile::TempDir, ServerProc) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("server"), "127.0.0.1:0", &[]);
    (dir, server)
}

#[test]
fn login_and_wrong_password() {
    let (dir, mut server) = setup();
    let home = dir.path();
    let alice = ChatProc::login(&server.addr, "alice", home);
    server.expect("client_connected", |v| {
        v["event"] == "client_connected" && v["user"] == "alice"
    });
    assert_eq!(alice.log[0]["user"], "alice");
    let (code, _) = alice.finish();
    assert_eq!(code, 0);
    server.expect("client_disconnected", |v| {
        v["event"] == "client_disconnected" && v["user"] == "alice"
    });

    let wrong = ChatProc::start_with(
        &server.addr,
        "alice",
        ClientOpts {
            password: "not the password".into(),
            trust: vec!["--accept-new".into()],
            home: home.to_owned(),
            extra: vec![],
        },
    );
    let (code, log) = wrong.exit_code();
    assert_eq!(code, 3, "{log:?}");
    assert_eq!(log[0]["code"], "login_refused");
    assert!(
        log[0]["message"]
            .as_str()
            .unwrap()
            .contains("wrong username or password")
    );

    // Case-variant of an existing name logs into the same account; it cannot register twice.
    let mut upper = ChatProc::start(&server.addr, "ALICE", home);
    let ready = upper.expect("ready", |v| v["event"] == "ready");
    assert_eq!(ready["user"], "alice");
    // Logout then login again.
    upper.cmd(json!({"cmd": "logout"}));
    let (code, _) = upper.exit_code();
    assert_eq!(code, 0);
    let again = ChatProc::login(&server.addr, "alice", home);
    assert_eq!(again.finish().0, 0);
}

#[test]
fn broadcast_reaches_each_other_member_exactly_once() {
    let (dir, server) = setup();
    let home = dir.path();
    let mut clients: Vec<ChatProc> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| ChatProc::login(&server.addr, u, home))
        .collect();
    for c in &mut clients {
        c.sync();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        for n in 0..5 {
            c.send("#general", &format!("from {i} #{n}"));
        }
    }
    for c in &mut clients {
        c.sync();
    }
    // A second round of barriers: by now every fan-out has been printed.
    for c in &mut clients {
        c.sync();
    }
    for c in &clients {
        let own = events(&c.log, "sent").len();
        let others = c.messages().len();
        assert_eq!((own, others), (5, 10), "{}: {:?}", c.user, c.log);
    }
    let logs: Vec<(String, Vec<serde_json::Value>)> = clients
        .into_iter()
        .map(|c| (c.user.clone(), c.finish().1))
        .collect();
    let records: Vec<Record> = logs
        .iter()
        .map(|(u, l)| Record { user: u, log: l })
        .collect();
    check_properties(&records, &["alice", "bob", "carol"]);
}

#[test]
fn private_messages_stay_private() {
    let (dir, server) = setup();
    let home = dir.path();
    let mut alice = ChatProc::login(&server.addr, "alice", home);
    let mut bob = ChatProc::login(&server.addr, "bob", home);
    let mut carol = ChatProc::login(&server.addr, "carol", home);
    alice.send("@bob", "canary-private-7f3a");
    alice.send("@nobody", "hello?");
    let before = alice.sync();
    assert!(
        before
            .iter()
            .any(|v| v["event"] == "sent" && v["conv"] == "@bob"),
        "{before:?}"
    );
    let err = before
        .iter()
        .find(|v| v["event"] == "error")
        .expect("unknown user error");
    assert_eq!(err["code"], "unknown_user");
    assert!(err["message"].as_str().unwrap().contains("nobody"));
    let evs = bob.sync();
    let got = evs
        .iter()
        .find(|v| v["event"] == "message")
        .expect("bob got the private message");
    assert_eq!(
        (
            got["conv"].as_str(),
            got["from"].as_str(),
            got["text"].as_str()
        ),
        (Some("@alice"), Some("alice"), Some("canary-private-7f3a"))
    );
    bob.send("@alice", "reply");
    bob.sync();
    alice.sync();
    carol.sync();
    assert!(
        carol.messages().is_empty(),
        "carol saw {:?}",
        carol.messages()
    );
    let logs: Vec<(String, Vec<serde_json::Value>)> = [alice, bob, carol]
        .into_iter()
        .map(|c| (c.user.clone(), c.finish().1))
        .collect();
    let records: Vec<Record> = logs
        .iter()
        .map(|(u, l)| Record { user: u, log: l })
        .collect();
    check_properties(&records, &["alice", "bob", "carol"]);
}

#[test]
fn bad_commands_get_error_events_and_the_client_carries_on() {
    let (dir, server) = setup();
    let mut alice = ChatProc::login(&server.addr, "alice", dir.path());
    alice.raw("this is not json");
    alice.cmd(json!({"cmd": "fly"}));
    alice.send("general", "no hash");
    alice.send("#general", &"x".repeat(20_000));
    let evs = alice.sync();
    let codes: Vec<&str> = evs
        .iter()
        .filter(|v| v["event"] == "error")
        .map(|v| v["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["bad_command", "bad_command", "bad_request", "too_large"],
        "{evs:?}"
    );
    alice.send("#general", "still here");
    assert!(alice.sync().iter().any(|v| v["event"] == "sent"));
}

#[test]
fn usage_errors_exit_2() {
    let out = std::process::Command::new(bin())
        .args(["chat", "--server", "127.0.0.1:1", "--user", "x"])
        .env_remove("LIVEWIRE_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
    let out = std::process::Command::new(bin())
        .args(["chat", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // Bind a UDP port nobody answers on, so the connection attempt times out or is refused.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    drop(sock);
    let c = ChatProc::start(&addr, "alice", dir.path());
    let (code, log) = c.exit_code();
    assert_eq!(code, 1, "{log:?}");
    assert_eq!(log[0]["code"], "connection");
}

#[test]
fn trust_on_first_use_and_changed_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let server = ServerProc::start(&home.join("a"), "127.0.0.1:0", &[]);
    let opts = |trust: Vec<String>| ClientOpts {
        password: PASSWORD.into(),
        trust,
        home: home.to_owned(),
        extra: vec![],
    };
    // Unknown server: refused, its fingerprint shown, nothing pinned.
    let c = ChatProc::start_with(&server.addr, "alice", opts(vec![]));
    let (code, log) = c.exit_code();
    assert_eq!(code, 4, "{log:?}");
    assert_eq!(log[0]["code"], "unknown_server");
    assert_eq!(log[0]["fingerprint"], server.fingerprint.as_str());
    // A wrong --fingerprint: refused.
    let bogus = format!("SHA256:{}", "0".repeat(64));
    let c = ChatProc::start_with(
        &server.addr,
        "alice",
        opts(vec!["--fingerprint".into(), bogus.clone()]),
    );
    let (code, log) = c.exit_code();
    assert_eq!(code, 4, "{log:?}");
    assert_eq!(log[0]["code"], "certificate_changed");
    // The right --fingerprint: accepted and pinned; later runs need no flag.
    let c = ChatProc::start_with(
        &server.addr,
        "alice",
        opts(vec!["--fingerprint".into(), server.fingerprint.clone()]),
    );
    let mut c = c;
    c.expect("ready", |v| v["event"] == "ready");
    assert_eq!(c.finish().0, 0);
    let mut c = ChatProc::start_with(&server.addr, "alice", opts(vec![]));
    c.expect("ready", |v| v["event"] == "ready");
    assert_eq!(c.finish().0, 0);

    // Same host:port, another certificate: refused, both fingerprints shown.
    let port = server.port();
    let old_fp = server.fingerprint.clone();
    server.stop();
    let impostor = ServerProc::start(&home.join("b"), &format!("127.0.0.1:{port}"), &[]);
    assert_ne!(impostor.fingerprint, old_fp);
    for trust in [vec![], vec!["--accept-new".to_owned()]] {
        let c = ChatProc::start_with(&impostor.addr, "alice", opts(trust));
        let (code, log) = c.exit_code();
        assert_eq!(code, 4, "{log:?}");
        assert_eq!(log[0]["code"], "certificate_changed");
        assert_eq!(log[0]["expected"], old_fp.as_str());
        assert_eq!(log[0]["fingerprint"], impostor.fingerprint.as_str());
        let msg = log[0]["message"].as_str().unwrap();
        assert!(
            msg.contains(&old_fp) && msg.contains(&impostor.fingerprint),
            "{msg}"
        );
    }
    // An unreadable pin file is an error, never "no pin".
    let pins = home.join("alice").join("config").join("known_servers");
    std::fs::write(&pins, "this is : not a pin file\n").unwrap();
    let c = ChatProc::start_with(&impostor.addr, "alice", opts(vec!["--accept-new".into()]));
    let (code, log) = c.exit_code();
    assert_eq!(code, 1, "{log:?}");
    assert_eq!(log[0]["code"], "config");
}

#[test]
fn certificate_is_kept_across_restarts_and_operator_pem_works() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let a = ServerProc::start(&data, "127.0.0.1:0", &[]);
    let fp = a.fingerprint.clone();
    a.stop();
    let b = ServerProc::start(&data, "127.0.0.1:0", &[]);
    assert_eq!(b.fingerprint, fp);
    b.stop();
    // Operator-supplied PEM files.
    let cert = data.join("cert.pem");
    let key = data.join("key.pem");
    let c = ServerProc::start(
        &dir.path().join("other"),
        "127.0.0.1:0",
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(c.fingerprint, fp);
    c.stop();
    // A bad PEM file: a clear error, exit 1.
    std::fs::write(dir.path().join("bad.pem"), "nope").unwrap();
    let out = std::process::Command::new(bin())
        .args([
            "server",
            "--headless",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("x"))
        .arg("--cert")
        .arg(dir.path().join("bad.pem"))
        .arg("--key")
        .arg(dir.path().join("bad.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.pem"));
}

#[test]
fn graceful_shutdown_tells_clients() {
    let (dir, server) = setup();
    let mut alice = ChatProc::start_with(
        &server.addr,
        "alice",
        ClientOpts {
            extra: vec!["--no-reconnect".into()],
            ..ClientOpts::new(dir.path())
        },
    );
    alice.expect("ready", |v| v["event"] == "ready");
    alice.send("#general", "last words");
    alice.sync();
    let log = server.stop();
    assert_eq!(log.last().unwrap()["event"], "stopped");
    let (code, log) = alice.exit_code();
    assert_eq!(code, 1);
    let err = log.iter().rev().find(|v| v["event"] == "error").unwrap();
    assert!(
        err["message"].as_str().unwrap().contains("shutting down"),
        "{err}"
    );
}
