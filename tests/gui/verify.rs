//! Verification in the window (issue 16): alice opens "Verify bob…" in her private
//! conversation with bob, reads the safety code, checks it equals the one bob's own window
//! computes, marks bob verified and sees the mark; then bob signs in on a second device (a
//! scripted `livewire chat` with another state dir) and alice gets the red bar that stays,
//! re-verifies with the new code (which bob's new device answers to `safety_code`), and the
//! bar goes.
//!
//! `LIVEWIRE_GUI_SHOT_VERIFY=path.png` and `LIVEWIRE_GUI_SHOT_VERIFY_BROKEN=path.png` capture
//! the screen with the dialog open and with the bar shown.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use adw::prelude::*;
use gtk4 as gtk;

use livewire::gui::LwClientWindow;
use livewire::gui::models::{VERIFICATION_BROKEN, VERIFIED};

use super::{wait_frames, wait_until};

/// Saves what `widget` (a window) shows to `$var`, when set, through GTK's own renderer
/// (no screen-grabbing tool needed).
fn shot(widget: &impl IsA<gtk::Widget>, var: &str) {
    let Ok(path) = std::env::var(var) else { return };
    wait_frames(widget, 6);
    let widget = widget.as_ref();
    let paintable = gtk::WidgetPaintable::new(Some(widget));
    let snapshot = gtk::Snapshot::new();
    let (w, h) = (widget.width() as f64, widget.height() as f64);
    paintable.snapshot(&snapshot, w, h);
    let saved = snapshot
        .to_node()
        .zip(widget.native().and_then(|n| n.renderer()))
        .map(|(node, renderer)| renderer.render_texture(node, None).save_to_png(&path));
    println!("screenshot {path}: {saved:?}");
}

/// Opens the Verify dialog in alice's conversation with bob (the action the button and the
/// menu item use) and waits for the code and the device list; returns both.
fn open_dialog(alice: &LwClientWindow) -> (String, String) {
    alice.open_conversation("@bob");
    gtk::prelude::ActionGroupExt::activate_action(alice, "verify-peer", None);
    wait_until("the safety code in alice's dialog", || {
        alice.verify_dialog_code().is_some_and(|c| !c.is_empty())
    });
    wait_until("bob's devices in alice's dialog", || {
        alice
            .verify_dialog_devices()
            .is_some_and(|d| !d.contains('…'))
    });
    (
        alice.verify_dialog_code().unwrap(),
        alice.verify_dialog_devices().unwrap(),
    )
}

pub fn run(
    alice: &LwClientWindow,
    bob: &LwClientWindow,
    server: &str,
    fingerprint: &str,
    bob_password: &str,
    dir: &std::path::Path,
) {
    // The conversation offers it: a button on the privacy line and a menu item.
    alice.open_conversation("@bob");
    assert!(
        alice.verify_button_label().as_deref() == Some("Verify bob…"),
        "the privacy line offers Verify bob…: {:?}",
        alice.verify_button_label()
    );
    let (code, devices) = open_dialog(alice);
    let groups: Vec<&str> = code.split_whitespace().collect();
    assert!(
        groups.len() == 12 && groups.iter().all(|g| g.len() == 5),
        "12 groups of 5 digits: {code:?}"
    );
    assert_eq!(
        devices.lines().count(),
        1,
        "bob has one device: {devices:?}"
    );

    // bob's window computes the same code on his side.
    bob.open_conversation("@alice");
    bob.open_verify_dialog("alice");
    wait_until("the safety code in bob's dialog", || {
        bob.verify_dialog_code().is_some_and(|c| !c.is_empty())
    });
    assert_eq!(
        bob.verify_dialog_code().unwrap(),
        code,
        "both sides compute one code"
    );
    bob.answer_verify_dialog(false);
    wait_until("bob's dialog to close", || bob.verify_dialog().is_none());
    println!("ok: the Verify dialog shows bob's device and the code bob's side computes");

    shot(&alice.verify_dialog().unwrap(), "LIVEWIRE_GUI_SHOT_VERIFY");
    alice.answer_verify_dialog(true);
    let conv = alice.conversation("@bob").unwrap();
    wait_until("bob verified", || conv.verification() == VERIFIED);
    wait_until("the dialog to close", || alice.verify_dialog().is_none());
    assert!(
        alice
            .privacy_text()
            .starts_with("End-to-end encrypted · verified"),
        "the privacy line says verified: {:?}",
        alice.privacy_text()
    );
    assert!(alice.verification_warning().is_none());
    println!("ok: Mark as Verified sends verify; the privacy line and the sidebar mark say so");

    // bob signs in on a second device.
    let state = dir.join("bob-device-2");
    std::fs::create_dir_all(&state).expect("state dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_livewire"))
        .args(["chat", "--server", server, "--user", "bob", "--fingerprint"])
        .arg(fingerprint)
        .arg("--config-dir")
        .arg(state.join("config"))
        .arg("--state-dir")
        .arg(state.join("state"))
        .env("LIVEWIRE_PASSWORD", bob_password)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("livewire chat");
    let lines = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    {
        let lines = lines.clone();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    lines.lock().unwrap().push(v);
                }
            }
        });
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let seen = |event: &str| {
        lines
            .lock()
            .unwrap()
            .iter()
            .find(|v| v["event"] == event)
            .cloned()
    };
    wait_until("bob's second device to sign in", || seen("ready").is_some());

    // alice gets the bar, in the conversation with bob, and the warning mark.
    wait_until("the broken verification", || {
        conv.verification() == VERIFICATION_BROKEN
    });
    alice.open_conversation("#general");
    assert!(
        alice.verification_warning().is_none(),
        "the bar belongs to the conversation with bob"
    );
    alice.open_conversation("@bob");
    let warning = alice.verification_warning().expect("the bar shows");
    assert!(warning.contains("bob"), "{warning}");
    assert!(
        messages_contain(alice, "@bob", "devices changed since you verified them"),
        "the notice is in the conversation too"
    );
    shot(alice, "LIVEWIRE_GUI_SHOT_VERIFY_BROKEN");
    println!("ok: bob's new device breaks the verification: a bar that stays ({warning})");

    // It stays (until re-verified or dismissed): a sync later it is still there.
    super::sync(alice);
    assert!(alice.verification_warning().is_some());

    // Re-verify: the code changed, and bob's new device computes the same new one.
    let (new_code, devices) = open_dialog(alice);
    assert_ne!(new_code, code, "a new device changes the code");
    assert_eq!(
        devices.lines().count(),
        2,
        "both of bob's devices: {devices:?}"
    );
    writeln!(stdin, r#"{{"cmd":"safety_code","user":"alice"}}"#).expect("command");
    stdin.flush().expect("flush");
    wait_until("bob's new device to answer safety_code", || {
        seen("safety_code").is_some()
    });
    assert_eq!(
        seen("safety_code").unwrap()["code"].as_str(),
        Some(new_code.as_str()),
        "bob's new device computes the code alice's dialog shows"
    );
    alice.answer_verify_dialog(true);
    wait_until("bob verified again", || conv.verification() == VERIFIED);
    assert!(
        alice.verification_warning().is_none(),
        "verifying again removes the bar"
    );
    println!("ok: verifying again with the new code removes the bar");

    drop(stdin);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn messages_contain(win: &LwClientWindow, conv: &str, text: &str) -> bool {
    win.conversation(conv).is_some_and(|c| {
        c.snapshot()
            .iter()
            .any(|m| m.text.as_deref().is_some_and(|t| t.contains(text)))
    })
}
