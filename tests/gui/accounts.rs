//! Several accounts in one window, against two real servers: carol signs in to the first
//! server, adds an account on the second through *Add Account…* (the connect page and the
//! trust card), a message for her first account raises its unread count in the switcher
//! and sends a notification; clicking it switches accounts and opens the conversation;
//! switching back and forth with Ctrl+Alt+2 / Ctrl+Alt+1 (real key presses) reconnects
//! nothing; logging one account out keeps the other;
//! the remembered logins hold both and no password.

use gtk::prelude::*;
use gtk4 as gtk;

use livewire::gui::{LwClientWindow, LwServerWindow};
use livewire::transport::client::Trust;

use super::keyboard::{focus_window, key};
use super::notifications::{click, wait_notified};
use super::{find, messages, password, sync, wait_frames, wait_until};

/// carol's connection id on `server` (one per QUIC connection: a reconnect changes it).
fn conn_of(server: &LwServerWindow, user: &str) -> Option<u64> {
    let clients = server.clients();
    (0..clients.n_items())
        .filter_map(|i| {
            clients
                .item(i)
                .and_downcast::<livewire::gui::models::LwClientEntry>()
        })
        .map(|e| e.data())
        .find(|d| d.user == user)
        .map(|d| d.conn)
}

/// `bob` is signed in on `server1`; `server2` is a second server (its window started).
pub fn run(
    app: &gtk::Application,
    config: &std::path::Path,
    (server1, fp1): (&LwServerWindow, &str),
    server2: &LwServerWindow,
    bob: &LwClientWindow,
) {
    let port1 = server1.running().expect("server 1 runs").0.port();
    let (addr2, fp2) = server2.running().expect("server 2 runs");
    let carol = LwClientWindow::new(app, config.to_path_buf());
    carol.present();
    carol.connect_to(
        "127.0.0.1",
        port1,
        "carol",
        &password(),
        Trust::Fingerprint(fp1.to_owned()),
    );
    wait_until("carol on server 1", || carol.is_logged_in());
    let key1 = livewire::gui::client_window::account_key("carol", &format!("127.0.0.1:{port1}"));
    let key2 = livewire::gui::client_window::account_key("carol", &addr2.to_string());
    assert_eq!(carol.accounts().len(), 1);
    wait_until("carol in server 1's table", || {
        conn_of(server1, "carol").is_some()
    });
    let conn1 = conn_of(server1, "carol").unwrap();

    // Add Account… (the main menu's and the switcher's action): the connect page, with
    // the way back; the first account stays signed in.
    WidgetExt::activate_action(&carol, "win.add-account", None).expect("the action exists");
    assert!(!carol.is_logged_in(), "the connect page is shown");
    assert!(carol.can_cancel_add(), "Back to Your Accounts is offered");
    carol.set_form("127.0.0.1", addr2.port(), "carol", &password());
    carol.connect_button().emit_clicked();
    wait_until("the trust card of server 2", || {
        carol.trust_prompt().is_some()
    });
    assert_eq!(carol.trust_prompt().as_deref(), Some(fp2.as_str()));
    carol.accept_trust();
    wait_until("carol on server 2", || carol.is_logged_in());
    let accounts = carol.accounts();
    assert_eq!(
        accounts
            .iter()
            .map(|a| (a.key.as_str(), a.active))
            .collect::<Vec<_>>(),
        [(key1.as_str(), false), (key2.as_str(), true)]
    );
    wait_until("carol in server 2's table", || {
        conn_of(server2, "carol").is_some()
    });
    println!("ok: one window signed in to two servers (Add Account…, trust card)");

    // A private message for the account in the background: its unread total rises in the
    // switcher, and it notifies.
    bob.open_conversation("@carol");
    bob.compose_and_send("carol, on server one");
    sync(bob);
    wait_until("the unread count of carol's first account", || {
        carol.accounts()[0].unread == 1
    });
    assert_eq!(carol.switcher_badge(), 1, "the switcher shows it");
    assert!(
        carol
            .announcement()
            .starts_with(&format!("New message for {key1} from bob"))
            && carol.announcement().ends_with("carol, on server one"),
        "screen readers hear of it: {}",
        carol.announcement()
    );
    assert!(
        carol.conversation("@bob").is_none(),
        "server 1's conversations are not shown while server 2's account is"
    );
    let bus = gtk::gio::bus_get_sync(gtk::gio::BusType::Session, None::<&gtk::gio::Cancellable>)
        .expect("the session bus");
    let n = wait_notified(&bus, "carol, on server one");
    println!("ok: a message on the account in the background counts 1 unread and notifies");

    // Clicking the notification switches to that account and opens the conversation.
    click(&bus, n.id);
    wait_until("server 1's account shown with @bob", || {
        carol.accounts()[0].active && carol.current().is_some_and(|c| c.name() == "@bob")
    });
    wait_until("bob's message on screen", || {
        carol
            .rendered_messages()
            .iter()
            .any(|t| t == "carol, on server one")
    });
    assert!(find(&messages(&carol, "@bob"), "carol, on server one").is_some());
    assert_eq!(carol.switcher_badge(), 0);
    println!("ok: clicking the notification showed server 1's account and the conversation");

    // Ctrl+Alt+2 / Ctrl+Alt+1, pressed for real (win.switch-account): nothing reconnects.
    focus_window("LiveWire — carol");
    wait_until("carol's window active", || carol.is_active());
    key(&carol, &["ctrl+alt+2"]);
    wait_until("Ctrl+Alt+2 to show server 2's account", || {
        carol.accounts()[1].active
    });
    assert!(carol.conversation("@bob").is_none());
    carol.open_conversation("#general");
    carol.compose_and_send("hello server two");
    wait_until("carol's message on server 2", || {
        find(&messages(&carol, "#general"), "hello server two").is_some_and(|m| m.own)
    });
    key(&carol, &["ctrl+alt+1"]);
    wait_until("Ctrl+Alt+1 to show server 1's account", || {
        carol.accounts()[0].active
    });
    assert!(find(&messages(&carol, "@bob"), "carol, on server one").is_some());
    assert!(find(&messages(&carol, "#general"), "hello server two").is_none());
    sync(&carol);
    assert_eq!(
        conn_of(server1, "carol"),
        Some(conn1),
        "switching accounts reconnects nothing"
    );
    println!(
        "ok: Ctrl+Alt+2 / Ctrl+Alt+1 show each account's own conversations; nothing reconnects"
    );
    // `LIVEWIRE_GUI_SHOT_ACCOUNTS=path.png` captures the window with the switcher open.
    if let Ok(path) = std::env::var("LIVEWIRE_GUI_SHOT_ACCOUNTS") {
        bob.compose_and_send("and a second one");
        carol.switch_account(1);
        // Popovers need their window focused (a window manager would give it the focus).
        focus_window("LiveWire — carol");
        wait_until("carol's window active", || carol.is_active());
        wait_until("the unread count in the switcher", || {
            carol.switcher_badge() == 1
        });
        carol.switcher_button().popup();
        // Past the page's crossfade and the popover's transition.
        let start = std::time::Instant::now();
        wait_until("the switcher to open", || {
            start.elapsed() > std::time::Duration::from_millis(800)
        });
        wait_frames(&carol, 4);
        // The popover is a window of its own: capture the screen where carol's window is.
        let shot = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "eval \"$(xdotool search --name 'LiveWire — carol' | head -1 | xargs xdotool getwindowgeometry --shell)\" \
                 && import -window root -crop \"${{WIDTH}}x${{HEIGHT}}+${{X}}+${{Y}}\" +repage '{path}'"
            ))
            .status();
        println!(
            "screenshot {path}: {shot:?} (switcher open: {})",
            carol
                .switcher_button()
                .popover()
                .is_some_and(|p| p.is_visible())
        );
        carol.switcher_button().popdown();
        carol.switch_account(0);
    }

    // Log Out logs out the account shown; the other stays signed in and is shown.
    WidgetExt::activate_action(&carol, "win.logout", None).expect("the action exists");
    wait_until("server 1 to see carol go", || {
        conn_of(server1, "carol").is_none()
    });
    assert!(carol.is_logged_in(), "the other account is shown");
    let accounts = carol.accounts();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].key, key2);
    assert!(accounts[0].active);
    assert!(find(&messages(&carol, "#general"), "hello server two").is_some());
    sync(&carol);
    assert!(conn_of(server2, "carol").is_some());
    println!("ok: logging one account out keeps the other signed in");

    // Both logins are remembered, never a password.
    let remembered = livewire::gui::settings::RememberedLogin::load_all(config);
    let ports: Vec<u16> = remembered.iter().map(|r| r.port).collect();
    assert!(
        ports.contains(&port1) && ports.contains(&addr2.port()),
        "{remembered:?}"
    );
    let file = std::fs::read_to_string(config.join("client-window.json")).unwrap();
    assert!(!file.contains("password"));
    carol.close();
    println!("ok: both logins remembered, no password");
}
