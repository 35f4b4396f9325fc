//! Accessibility, the way assistive technology sees the app: two real client windows
//! (`livewire client`) against a real headless server, driven only through the AT-SPI
//! accessibility tree by `tests/a11y/drive.py` (python3-pyatspi): the fields are found by
//! their accessible names, alice signs in (trust card included), sends a message, and it is
//! read back from bob's message list and his live status line. A third window, started in
//! German with a test catalogue, shows the translated words (gettext, templates included).
//!
//! Needs a display and a session bus (the AT-SPI bus is started through it):
//! `dbus-run-session -- xvfb-run -a cargo test --test a11y`. Without them it prints
//! "SKIPPED: …" (never a silent pass).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Why this machine cannot run the test, if it cannot.
fn missing() -> Option<String> {
    if std::env::var_os("DISPLAY").is_none() {
        return Some("no display (run under xvfb-run)".into());
    }
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        return Some("no session bus (run under dbus-run-session)".into());
    }
    let pyatspi = Command::new("/usr/bin/python3")
        .args(["-c", "import pyatspi"])
        .stderr(Stdio::null())
        .status();
    if !pyatspi.is_ok_and(|s| s.success()) {
        return Some("python3-pyatspi is not installed (scripts/deps.sh installs it)".into());
    }
    None
}

#[test]
fn a_screen_reader_user_signs_in_and_chats() {
    if let Some(why) = missing() {
        println!("SKIPPED: {why}");
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let bin = env!("CARGO_BIN_EXE_livewire");
    let mut server = Command::new(bin)
        .args([
            "server",
            "--headless",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(tmp.path().join("server"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server");
    let mut first = String::new();
    BufReader::new(server.stdout.as_mut().expect("stdout"))
        .read_line(&mut first)
        .expect("the server's first line");
    let listening: serde_json::Value = serde_json::from_str(&first).expect("a JSON line");
    let addr: std::net::SocketAddr = listening["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("the address it listens on");
    let fingerprint = listening["fingerprint"].as_str().expect("its fingerprint");

    // A tiny German catalogue, to see gettext at work (needs msgfmt, package `gettext`).
    let localedir = tmp.path().join("locale");
    let mo_dir = localedir.join("de/LC_MESSAGES");
    std::fs::create_dir_all(&mo_dir).expect("locale dir");
    let po = tmp.path().join("de.po");
    std::fs::write(
        &po,
        "msgid \"\"\nmsgstr \"Content-Type: text/plain; charset=UTF-8\\n\"\n\n\
         msgid \"Connect\"\nmsgstr \"Verbinden\"\n\n\
         msgid \"_Server\"\nmsgstr \"_Server (de)\"\n",
    )
    .expect("write de.po");
    let msgfmt = Command::new("msgfmt")
        .arg("-o")
        .arg(mo_dir.join("livewire.mo"))
        .arg(&po)
        .status()
        .is_ok_and(|s| s.success());
    if !msgfmt {
        println!("note: no msgfmt (package gettext): the translated window is not checked");
    }

    let out = Command::new("/usr/bin/python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/a11y/drive.py"))
        .arg(bin)
        .arg(addr.port().to_string())
        .arg(fingerprint)
        .arg(tmp.path())
        .envs(msgfmt.then(|| ("LIVEWIRE_TEST_LOCALEDIR", localedir.as_os_str())))
        .output()
        .expect("run the AT-SPI driver");
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the AT-SPI driver failed");
    assert!(stdout.contains("a11y: all passed"));
}
