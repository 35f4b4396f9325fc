//! Desktop notifications through the real notification daemon on the session bus
//! (python3-dbusmock's, started by `NotificationDaemon`): what notifies, what a muted
//! conversation does, and that clicking a notification opens its conversation.
//!
//! The daemon records every call; `GetCalls` on its `org.freedesktop.DBus.Mock` interface
//! reads them and `EmitSignal` sends `ActionInvoked` as a desktop does on a click.

use gtk::gio;
use gtk::glib;
use gtk::prelude::*;
use gtk4 as gtk;

use livewire::gui::LwClientWindow;
use livewire::gui::preferences::{Preferences, mute_key};

use super::{sync, wait_until};

const NAME: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";
const MOCK: &str = "org.freedesktop.DBus.Mock";

/// One `Notify` call the daemon received, with the id it answered.
#[derive(Debug, Clone)]
pub struct Notified {
    pub id: u32,
    summary: String,
    body: String,
    actions: Vec<String>,
}

fn mock_call(
    bus: &gio::DBusConnection,
    method: &str,
    args: Option<&glib::Variant>,
) -> glib::Variant {
    bus.call_sync(
        Some(NAME),
        PATH,
        MOCK,
        method,
        args,
        None,
        gio::DBusCallFlags::NONE,
        5000,
        None::<&gio::Cancellable>,
    )
    .unwrap_or_else(|e| panic!("{MOCK}.{method}: {e}"))
}

/// Every `Notify` call so far, in order. The daemon answers a new notification with the
/// next id from 1 and a replacement (`replaces_id` > 0) with that id.
fn notified(bus: &gio::DBusConnection) -> Vec<Notified> {
    let calls = mock_call(bus, "GetCalls", None)
        .get::<(Vec<(u64, String, Vec<glib::Variant>)>,)>()
        .expect("GetCalls returns a(tsav)")
        .0;
    let mut next_id = 1;
    let mut out = Vec::new();
    for (_, method, args) in calls {
        if method != "Notify" {
            continue;
        }
        let arg = |i: usize| args.get(i).cloned().expect("Notify has 8 arguments");
        let replaces = arg(1).get::<u32>().expect("replaces_id: u");
        let id = if replaces > 0 {
            replaces
        } else {
            next_id += 1;
            next_id - 1
        };
        out.push(Notified {
            id,
            summary: arg(3).get::<String>().expect("summary: s"),
            body: arg(4).get::<String>().expect("body: s"),
            actions: arg(5).get::<Vec<String>>().expect("actions: as"),
        });
    }
    out
}

/// Clicks notification `id` as a desktop does (the daemon's `ActionInvoked`, "default").
pub fn click(bus: &gio::DBusConnection, id: u32) {
    let args = (
        "org.freedesktop.Notifications",
        "ActionInvoked",
        "us",
        vec![id.to_variant(), "default".to_variant()],
    )
        .to_variant();
    mock_call(bus, "EmitSignal", Some(&args));
}

/// Waits for a notification whose body is `body`.
pub fn wait_notified(bus: &gio::DBusConnection, body: &str) -> Notified {
    let mut found = None;
    wait_until(&format!("a notification “{body}”"), || {
        found = notified(bus).into_iter().rev().find(|n| n.body == body);
        found.is_some()
    });
    found.expect("found")
}

/// Sends and waits until the server has it and `to` has applied everything before it.
fn send_from(from: &LwClientWindow, to: &LwClientWindow, conv: &str, text: &str) {
    from.open_conversation(conv);
    from.compose_and_send(text);
    sync(from);
    sync(to);
}

/// The scenario: `alice` is in the background (never focused under Xvfb); `bob` writes.
pub fn run(alice: &LwClientWindow, bob: &LwClientWindow, alice_config: &std::path::Path) {
    assert!(
        !alice.is_active(),
        "alice's window must be in the background for notifications to be sent"
    );
    let bus = gio::bus_get_sync(gio::BusType::Session, None::<&gio::Cancellable>)
        .expect("the session bus");
    alice.open_conversation("#general");

    // A private message notifies, titled with the sender, with a default action.
    send_from(bob, alice, "@alice", "are you there?");
    let n = wait_notified(&bus, "are you there?");
    assert_eq!(n.summary, "bob");
    assert!(
        n.actions.iter().any(|a| a == "default"),
        "clicking the notification does something: {:?}",
        n.actions
    );
    println!(
        "ok: a private message notifies (Notify #{} “{}”)",
        n.id, n.summary
    );

    // Clicking it (the daemon's ActionInvoked) opens that conversation.
    assert!(alice.current().is_some_and(|c| c.name() == "#general"));
    click(&bus, n.id);
    wait_until("the click to bring alice's window up showing @bob", || {
        alice.current().is_some_and(|c| c.name() == "@bob") && alice.is_active()
    });
    println!("ok: clicking the notification brought alice's window up, showing @bob");
    // Back to the background: a window in front does not notify.
    bob.present();
    wait_until("alice's window in the background again", || {
        !alice.is_active()
    });

    // Mute @bob from the conversation menu (win.mute toggles the conversation shown),
    // and #general too; it is saved per account and conversation.
    WidgetExt::activate_action(alice, "win.mute", None).expect("win.mute");
    assert!(alice.is_muted("@bob"));
    alice.open_conversation("#general");
    WidgetExt::activate_action(alice, "win.mute", None).expect("win.mute");
    assert!(alice.is_muted("#general") && alice.is_muted("@bob"));
    let saved = Preferences::load(alice_config);
    let server = saved
        .muted
        .iter()
        .find_map(|k| k.strip_prefix("alice@")?.strip_suffix(" @bob"))
        .expect("the mute is saved")
        .to_owned();
    assert!(saved.is_muted(&mute_key("alice", &server, "#general")));

    // Muted private message, plain room message: quiet. A mention in a muted room: loud.
    let before = notified(&bus).len();
    send_from(bob, alice, "@alice", "a muted private message");
    send_from(bob, alice, "#general", "a plain room message");
    send_from(bob, alice, "#general", "lunch, @alice?");
    let n = wait_notified(&bus, "lunch, @alice?");
    assert_eq!(n.summary, "bob in #general");
    let since: Vec<String> = notified(&bus)[before..]
        .iter()
        .map(|n| n.body.clone())
        .collect();
    assert_eq!(
        since,
        ["lunch, @alice?"],
        "only the mention notifies: muted and plain room messages do not"
    );
    println!(
        "ok: muted conversation quiet, plain room message quiet, mention in a muted room notifies"
    );

    // Clean up: unmute, back to #general.
    alice.set_muted("#general", false);
    alice.set_muted("@bob", false);
    assert!(!alice.is_muted("#general") && !alice.is_muted("@bob"));
    alice.open_conversation("#general");
}
