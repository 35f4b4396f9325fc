//! Search in the client window: the header's button and Ctrl+F open the search bar, a
//! query lists matches from `#general` (the server's) and from a private conversation
//! (the device's own index) with conversation, author and text, and picking one shows
//! its conversation.

use gtk::prelude::*;
use gtk4 as gtk;

use livewire::app::client::Command;
use livewire::gui::LwClientWindow;

use super::{sync, wait_frames, wait_until};

pub fn search_scenario(alice: &LwClientWindow, bob: &LwClientWindow) {
    alice.send_command(Command::Send {
        to: "#general".into(),
        text: "the heron is back at the pond".into(),
        reply_to: None,
    });
    // Stored before bob's, so it is the older of the two.
    sync(alice);
    bob.send_command(Command::Send {
        to: "@alice".into(),
        text: "saw a heron this morning".into(),
        reply_to: None,
    });
    sync(bob);
    sync(alice);

    let panel = alice.search_panel();
    let button = alice.search_button();
    assert!(
        button.is_visible(),
        "the search button shows while chatting"
    );
    assert!(!panel.is_open());
    button.set_active(true);
    wait_until("the search bar to open from the button", || panel.is_open());
    button.set_active(false);
    wait_until("the search bar to close", || !panel.is_open());
    // Ctrl+F is the window's `search` action.
    gtk::prelude::WidgetExt::activate_action(alice, "win.search", None).unwrap();
    wait_until("Ctrl+F's action to open the bar", || {
        panel.is_open() && button.is_active()
    });

    panel.search_for("Heron");
    wait_until("two results", || panel.results().len() == 2);
    let got: Vec<(String, String, String)> = panel
        .results()
        .into_iter()
        .map(|r| (r.conv, r.from, r.text))
        .collect();
    assert_eq!(
        got,
        [
            (
                "@bob".into(),
                "bob".into(),
                "saw a heron this morning".into()
            ),
            (
                "#general".into(),
                "alice".into(),
                "the heron is back at the pond".into()
            ),
        ],
        "newest first, the private one from this device's index"
    );
    assert_eq!(panel.status().as_deref(), Some("2 messages"));
    wait_frames(alice, 3);
    // `LIVEWIRE_GUI_SHOT_SEARCH=path.png` captures alice's window with the results
    // (docs/screenshots/search.png).
    if let Ok(path) = std::env::var("LIVEWIRE_GUI_SHOT_SEARCH") {
        // The bar slides in: let the animation end.
        let start = std::time::Instant::now();
        wait_until("the bar's animation", || {
            start.elapsed() > std::time::Duration::from_secs(1)
        });
        wait_frames(alice, 3);
        let shot = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "import -window \"$(xdotool search --name 'LiveWire — alice' | head -1)\" '{path}'"
            ))
            .status();
        println!("screenshot {path}: {shot:?}");
    }

    panel.search_for("nosuchwordanywhere");
    wait_until("no results", || {
        panel.results().is_empty() && panel.status().as_deref() == Some("No messages found")
    });
    panel.search_for("heron pond");
    wait_until("one result", || panel.results().len() == 1);
    panel.activate_result(0);
    wait_until("the result's conversation shown and the bar closed", || {
        alice.current().is_some_and(|c| c.name() == "#general") && !panel.is_open()
    });
    // Bob searches too; the main scenario later checks that logging out forgets it.
    bob.search_panel().search_for("heron");
    wait_until("bob's results", || bob.search_panel().results().len() == 2);
    println!(
        "ok: search from the header and Ctrl+F lists #general and private matches; a result opens its conversation"
    );
}
