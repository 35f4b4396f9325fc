//! Everything from the keyboard alone: real key presses (XTEST, through `xdotool`) into a
//! client window under Xvfb, never a click or a call into the window's methods to act.
//! Sign in (the form, Enter, the trust card), switch conversations, send, open a message's
//! menu (Menu key) and delete, attach a file (Ctrl+U, the file chooser's location field),
//! log out (Ctrl+Shift+L); the focus is visible throughout. The test only reads state
//! (and gives the X focus to the window, which a window manager would do).

use std::process::Command;

use gtk::prelude::*;
use gtk4 as gtk;

use livewire::gui::LwClientWindow;

use super::{find, messages, password, sync, wait_frames, wait_until};

/// Runs `xdotool` with `args` (key presses and typing go to the window with the X focus).
fn xdotool(args: &[&str]) -> String {
    let out = Command::new("xdotool")
        .args(args)
        .output()
        .expect("xdotool (scripts/deps.sh installs it)");
    assert!(
        out.status.success(),
        "xdotool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Presses keys, e.g. `key(&["ctrl+Next"])`, then lets the window handle them.
pub fn key(win: &LwClientWindow, keys: &[&str]) {
    let mut args = vec!["key", "--clearmodifiers", "--delay", "40"];
    args.extend_from_slice(keys);
    xdotool(&args);
    wait_frames(win, 2);
}

/// Types `text` as key presses.
fn type_text(win: &LwClientWindow, text: &str) {
    xdotool(&["type", "--delay", "20", text]);
    wait_frames(win, 2);
}

/// Gives the X input focus to the window titled `title` (without a window manager nothing
/// else would).
pub fn focus_window(title: &str) {
    let mut id = String::new();
    wait_until(&format!("the X window “{title}”"), || {
        id = Command::new("xdotool")
            .args(["search", "--name", title])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .unwrap_or_default();
        !id.is_empty()
    });
    xdotool(&["windowfocus", "--sync", &id]);
}

/// `alice` is signed in on the server at `port` with `fingerprint`.
pub fn run(
    app: &gtk::Application,
    config: &std::path::Path,
    port: u16,
    fingerprint: &str,
    alice: &LwClientWindow,
) {
    if Command::new("xdotool").arg("version").output().is_err() {
        panic!("the keyboard test needs xdotool (scripts/deps.sh installs it)");
    }
    // Someone to talk to: alice writes first, so erin has two conversations.
    let erin_password = password();
    let win = LwClientWindow::new(app, config.to_path_buf());
    win.set_title(Some("LiveWire keyboard"));
    win.present();
    wait_frames(&win, 2);
    focus_window("LiveWire keyboard");
    wait_until("the window to be active", || win.is_active());

    // Sign in: the cursor starts in the server field; Tab, type, Enter.
    type_text(&win, "127.0.0.1");
    key(&win, &["Tab"]);
    type_text(&win, &port.to_string());
    key(&win, &["Tab"]);
    type_text(&win, "erin");
    key(&win, &["Tab"]);
    type_text(&win, &erin_password);
    key(&win, &["Return"]);
    wait_until("the trust card", || win.trust_prompt().is_some());
    assert_eq!(win.trust_prompt().as_deref(), Some(fingerprint));
    // The card's "Trust and Connect" has the focus: Enter.
    key(&win, &["Return"]);
    wait_until("erin to sign in", || win.is_logged_in());
    assert!(win.gets_focus_visible(), "the keyboard focus is shown");
    println!("ok: keyboard: signed in with Tab, typing and Enter (trust card included)");

    // alice writes; Ctrl+Page Down moves to the next conversation.
    wait_until("alice online", || alice.is_online());
    sync(alice);
    alice.open_conversation("@erin");
    alice.compose_and_send("erin, can you read this?");
    wait_until("alice's message for erin", || {
        find(&messages(&win, "@alice"), "erin, can you read this?").is_some()
    });
    assert!(win.current().is_some_and(|c| c.name() == "#general"));
    key(&win, &["ctrl+Next"]);
    wait_until("@alice shown", || {
        win.current().is_some_and(|c| c.name() == "@alice")
    });
    key(&win, &["ctrl+Prior"]);
    wait_until("#general shown", || {
        win.current().is_some_and(|c| c.name() == "#general")
    });
    key(&win, &["alt+Down"]);
    wait_until("@alice shown again", || {
        win.current().is_some_and(|c| c.name() == "@alice")
    });
    println!("ok: keyboard: Ctrl+Page Down / Page Up and Alt+Down switch conversations");

    // Typing goes to the composer; Enter sends.
    type_text(&win, "yes, typed with keys");
    key(&win, &["Return"]);
    wait_until("alice to get erin's reply", || {
        find(&messages(alice, "@erin"), "yes, typed with keys").is_some()
    });
    println!("ok: keyboard: typed and sent with Enter");

    // Shift+Tab into the message list, End to the newest message (erin's), Menu opens its
    // menu; the arrows pick "Delete for Me" and Enter deletes it.
    let mine = find(&messages(&win, "@alice"), "yes, typed with keys")
        .expect("erin's own copy")
        .id;
    for _ in 0..6 {
        if win.focus_in_messages() {
            break;
        }
        key(&win, &["shift+Tab"]);
    }
    assert!(
        win.focus_in_messages(),
        "Shift+Tab reaches the message list (focus on {})",
        win.focus_description()
    );
    key(&win, &["End"]);
    // `LIVEWIRE_GUI_SHOT_KEYBOARD=path.png` captures the focused message (its focus ring).
    if let Ok(path) = std::env::var("LIVEWIRE_GUI_SHOT_KEYBOARD") {
        wait_frames(&win, 4);
        let shot = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "import -window \"$(xdotool search --name 'LiveWire — erin' | head -1)\" '{path}'"
            ))
            .status();
        println!("screenshot {path}: {shot:?}");
    }
    key(&win, &["Menu"]);
    // The menu opens with its first item focused: Reply, Copy Text, Delete for Me, …
    wait_until("the message menu to take the focus", || {
        win.focus_description().starts_with("GtkModelButton")
    });
    key(&win, &["Down", "Down", "Return"]);
    wait_until("erin's message deleted for her", || {
        messages(&win, "@alice").iter().all(|m| m.id != mine)
    });
    sync(alice);
    assert!(
        find(&messages(alice, "@erin"), "yes, typed with keys").is_some(),
        "deleted for erin only"
    );
    println!("ok: keyboard: Shift+Tab, End, Menu, arrows and Enter deleted the message for erin");

    // Ctrl+U: the file chooser; Ctrl+L and a path, Enter sends the file.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("keyboard.txt");
    std::fs::write(&file, b"sent without a mouse\n").unwrap();
    wait_until("the menu to close", || {
        !win.focus_description().starts_with("GtkModelButton")
    });
    key(&win, &["ctrl+u"]);
    focus_window("Send a File");
    key(&win, &["ctrl+l"]);
    type_text(&win, &file.to_string_lossy());
    key(&win, &["Return"]);
    wait_until("alice to get the file", || {
        messages(alice, "@erin")
            .iter()
            .any(|m| m.file.as_ref().is_some_and(|f| f.name == "keyboard.txt"))
    });
    focus_window("LiveWire — erin");
    println!("ok: keyboard: Ctrl+U, the chooser's location field and Enter sent a file");

    // Ctrl+Shift+L logs out.
    key(&win, &["ctrl+shift+l"]);
    wait_until("erin logged out", || !win.is_logged_in());
    assert!(win.gets_focus_visible());
    println!("ok: keyboard: Ctrl+Shift+L logged out; the focus stayed visible");
    win.close();
}
