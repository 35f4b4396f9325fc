//! The chat rules tested without a network or a clock: server and client cores wired
//! together in memory, time passed in by hand.

mod cluster;
mod edits;
mod key_packages;
mod receipts;
mod resume;
mod rooms;

use std::collections::HashMap;
use std::net::SocketAddr;

use super::client::{self, ClientCore, Command, Ending, Event, SavedState};
use super::files::FileInfo;
use super::ids::{ConnId, ConvId};
use super::limits::Limits;
use super::protocol::{ControlDown, ControlUp, ConvDown, ConvUp, DeleteScope, PROTOCOL_VERSION};
use super::server::{Input, Output, ServerCore};
use super::store::MemStore;

/// A server and its clients, wired in memory. Passwords are "hashed" as `h:` + password:
/// the hashing itself is the transport's job; here only the rules matter.
struct World {
    server: ServerCore<MemStore>,
    clients: HashMap<ConnId, ClientCore>,
    events: HashMap<ConnId, Vec<Event>>,
    /// Outputs for a connection the test decided to lose (not delivered).
    drop_to: Option<ConnId>,
    /// Server frames on this connection's stream of this conversation are held back (a
    /// slow stream) until [`World::release`].
    hold: Option<(ConnId, ConvId)>,
    held: Vec<Output>,
    /// Every server output, in order (for tests of what the server did, not only of what
    /// the clients showed).
    trace: Vec<Output>,
    next: u64,
    now: u64,
}

impl World {
    fn new(limits: Limits) -> Self {
        Self {
            server: ServerCore::new(MemStore::default(), limits),
            clients: HashMap::new(),
            events: HashMap::new(),
            drop_to: None,
            hold: None,
            held: Vec::new(),
            trace: Vec::new(),
            next: 1,
            now: 1_000_000,
        }
    }

    fn addr(ip: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, ip], 4000))
    }

    /// Connects and logs in; returns the connection (logged in or refused).
    fn login_from(&mut self, user: &str, password: &str, saved: SavedState, ip: u8) -> ConnId {
        let conn = ConnId(self.next);
        self.next += 1;
        let client = ClientCore::new(user, saved, [conn.0 as u8; 8]);
        let hide_cursor = client.hide_cursor();
        self.clients.insert(conn, client);
        let addr = Self::addr(ip);
        self.server_in(Input::Connected { conn, addr });
        let login = ControlUp::Login {
            version: PROTOCOL_VERSION,
            user: user.into(),
            password: password.into(),
            session_pub: [0; 32],
            identity_pub: [conn.0 as u8; 32],
            hide_cursor,
        };
        self.server_in(Input::Control { conn, up: login });
        conn
    }

    fn login(&mut self, user: &str) -> ConnId {
        self.login_from(user, "password123", SavedState::default(), 1)
    }

    fn server_in(&mut self, input: Input) {
        // As the transport sees them, with every shared event written out.
        let outs: Vec<Output> = (self.server.handle(input, self.now).into_iter())
            .map(Output::unshared)
            .collect();
        self.trace.extend(outs.iter().cloned());
        for o in outs {
            self.route(o);
        }
    }

    fn route(&mut self, o: Output) {
        match o {
            Output::VerifyPassword {
                conn,
                password,
                phc,
            } => {
                let input = match phc {
                    Some(phc) => Input::PasswordChecked {
                        conn,
                        ok: phc == format!("h:{password}"),
                        new_phc: None,
                    },
                    None => Input::PasswordChecked {
                        conn,
                        ok: true,
                        new_phc: Some(format!("h:{password}")),
                    },
                };
                self.server_in(input);
            }
            Output::Control { conn, down } => {
                if self.drop_to == Some(conn) {
                    return;
                }
                let Some(c) = self.clients.get_mut(&conn) else {
                    return;
                };
                let outs = match down {
                    ControlDown::LoginOk {
                        user,
                        convs,
                        online,
                        hidden,
                        delete_window_secs,
                        ..
                    } => c.logged_in(user, convs, online, hidden, delete_window_secs),
                    ControlDown::LoginRefused { code, message } => {
                        vec![client::Output::Event(Event::error(code, message))]
                    }
                    down => c.control(down),
                };
                self.client_out(conn, outs);
            }
            Output::Conv { conn, conv, down } => {
                if self.drop_to == Some(conn) {
                    return;
                }
                if self.hold.as_ref() == Some(&(conn, conv.clone())) {
                    self.held.push(Output::Conv { conn, conv, down });
                    return;
                }
                if let Some(c) = self.clients.get_mut(&conn) {
                    let outs = c.conv(conv, down);
                    self.client_out(conn, outs);
                }
            }
            Output::Close { conn, .. } => self.disconnect(conn),
            // What the transport does: frames of the room still queued for this connection
            // (here: held back) are never written, but for the end of a stream the client
            // closed; later ones are.
            Output::Revoke { conn, conv } => {
                self.held.retain(|o| match o {
                    Output::Conv {
                        conn: c,
                        conv: v,
                        down,
                    } if *c == conn && *v == conv => *down == ConvDown::Closed,
                    _ => true,
                });
                if self.hold.as_ref() == Some(&(conn, conv)) {
                    self.hold = None;
                }
            }
            o @ Output::Event { .. } => self.route(o.unshared()),
            Output::Log(_) | Output::Membership { .. } | Output::Publish(_) => {}
        }
    }

    fn client_out(&mut self, conn: ConnId, outs: Vec<client::Output>) {
        for o in outs {
            match o {
                client::Output::Event(e) => self.events.entry(conn).or_default().push(e),
                client::Output::Control(up) => self.server_in(Input::Control { conn, up }),
                client::Output::Conv(conv, up) => self.server_in(Input::Conv { conn, conv, up }),
            }
        }
    }

    fn cmd(&mut self, conn: ConnId, cmd: Command) {
        let outs = self.clients.get_mut(&conn).expect("client").command(cmd);
        self.client_out(conn, outs);
    }

    fn send(&mut self, conn: ConnId, to: &str, text: &str) {
        self.cmd(
            conn,
            Command::Send {
                to: to.into(),
                text: text.into(),
                reply_to: None,
            },
        );
    }

    fn disconnect(&mut self, conn: ConnId) {
        if self.clients.contains_key(&conn) {
            self.server_in(Input::Disconnected { conn });
            let outs = self
                .clients
                .get_mut(&conn)
                .unwrap()
                .disconnected("gone".into());
            self.client_out(conn, outs);
        }
    }

    /// Ends a client for good and returns its saved state.
    fn quit(&mut self, conn: ConnId) -> SavedState {
        self.disconnect(conn);
        let mut c = self.clients.remove(&conn).unwrap();
        c.take_saved_state().unwrap_or_default()
    }

    /// Logs the client of `conn` (disconnected) in again on a new connection, as its
    /// transport does after a drop.
    fn relogin(&mut self, conn: ConnId, user: &str) -> ConnId {
        let core = self.clients.remove(&conn).expect("client");
        let hide_cursor = core.hide_cursor();
        let new = ConnId(self.next + 100);
        self.next += 1;
        self.clients.insert(new, core);
        self.server_in(Input::Connected {
            conn: new,
            addr: Self::addr(1),
        });
        let login = ControlUp::Login {
            version: PROTOCOL_VERSION,
            user: user.into(),
            password: "password123".into(),
            session_pub: [0; 32],
            identity_pub: [conn.0 as u8; 32],
            hide_cursor,
        };
        self.server_in(Input::Control {
            conn: new,
            up: login,
        });
        new
    }

    /// The client's commands ended with `transfers` file transfers running.
    fn end_commands(&mut self, conn: ConnId, transfers: usize) {
        let outs = self
            .clients
            .get_mut(&conn)
            .expect("client")
            .commands_ended(transfers);
        self.client_out(conn, outs);
    }

    /// The client's clock reads `ms`: idle streams close.
    fn tick(&mut self, conn: ConnId, ms: u64) {
        let outs = self
            .clients
            .get_mut(&conn)
            .expect("client")
            .tick(std::time::Duration::from_millis(ms));
        self.client_out(conn, outs);
    }

    /// Delivers what [`World::hold`] held back, in order, and stops holding.
    fn release(&mut self) {
        self.hold = None;
        for o in std::mem::take(&mut self.held) {
            self.route(o);
        }
    }

    fn streams(&self, conn: ConnId) -> Vec<String> {
        self.clients[&conn].open_stream_labels()
    }

    fn take(&mut self, conn: ConnId) -> Vec<Event> {
        self.events.remove(&conn).unwrap_or_default()
    }

    fn messages(&mut self, conn: ConnId) -> Vec<(String, String, Option<String>)> {
        self.take(conn)
            .into_iter()
            .filter_map(|e| match e {
                Event::Message {
                    conv, from, text, ..
                } => Some((conv, from, text)),
                _ => None,
            })
            .collect()
    }
}

fn errors(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Error { code, .. } => Some(code.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

fn msg(conv: &str, from: &str, text: &str) -> (String, String, Option<String>) {
    (conv.into(), from.into(), Some(text.into()))
}

#[test]
fn broadcast_reaches_every_other_member_once() {
    let mut w = World::new(Limits::default());
    let (a, b, c) = (w.login("alice"), w.login("bob"), w.login("carol"));
    for conn in [a, b, c] {
        w.take(conn);
    }
    w.send(a, "#general", "hello");
    let sent = w.take(a);
    assert!(
        matches!(&sent[..], [Event::Sent { conv, seq: 1, .. }] if conv == "#general"),
        "{sent:?}"
    );
    assert_eq!(w.messages(b), vec![msg("#general", "alice", "hello")]);
    assert_eq!(w.messages(c), vec![msg("#general", "alice", "hello")]);
}

#[test]
fn private_messages_reach_only_the_two() {
    let mut w = World::new(Limits::default());
    let (a, b, c) = (w.login("alice"), w.login("bob"), w.login("carol"));
    for conn in [a, b, c] {
        w.take(conn);
    }
    w.send(a, "@Bob", "secret");
    assert!(matches!(&w.take(a)[..], [Event::Sent { conv, .. }] if conv == "@bob"));
    assert_eq!(w.messages(b), vec![msg("@alice", "alice", "secret")]);
    assert!(w.take(c).is_empty());
    w.send(a, "@nobody", "x");
    let ev = w.take(a);
    assert_eq!(errors(&ev), vec!["unknown_user"], "{ev:?}");
}

#[test]
fn login_rules() {
    let mut w = World::new(Limits::default());
    let a = w.login("Alice");
    assert!(matches!(&w.take(a)[0], Event::Ready { user, .. } if user == "Alice"));
    // Same name, other case: the same account (and its registered spelling).
    let a2 = w.login_from("ALICE", "password123", SavedState::default(), 2);
    assert!(matches!(&w.take(a2)[0], Event::Ready { user, .. } if user == "Alice"));
    let wrong = w.login_from("alice", "nope-nope-nope", SavedState::default(), 3);
    assert_eq!(errors(&w.take(wrong)), vec!["login_refused"]);
    let lookalike = w.login_from("AIice", "password123", SavedState::default(), 3);
    assert_eq!(errors(&w.take(lookalike)), vec!["bad_username"]);
    let reserved = w.login_from("admin", "password123", SavedState::default(), 3);
    assert_eq!(errors(&w.take(reserved)), vec!["bad_username"]);
    let short = w.login_from("dave", "short", SavedState::default(), 3);
    assert_eq!(errors(&w.take(short)), vec!["login_refused"]);
}

#[test]
fn failed_logins_are_throttled_per_account() {
    let mut w = World::new(Limits::default());
    let a = w.login("alice");
    w.take(a);
    for ip in 2..5 {
        let c = w.login_from("alice", "wrong-password", SavedState::default(), ip);
        assert_eq!(errors(&w.take(c)), vec!["login_refused"]);
    }
    // Even the right password is refused while throttled, without checking it.
    let c = w.login_from("alice", "password123", SavedState::default(), 9);
    assert_eq!(errors(&w.take(c)), vec!["login_throttled"]);
    w.now += 61_000;
    let c = w.login_from("alice", "password123", SavedState::default(), 9);
    assert!(matches!(w.take(c)[0], Event::Ready { .. }));
}

#[test]
fn commands_before_login_are_refused() {
    let mut w = World::new(Limits::default());
    let conn = ConnId(99);
    w.server_in(Input::Connected {
        conn,
        addr: World::addr(1),
    });
    let outs = w.server.handle(
        Input::Control {
            conn,
            up: ControlUp::Who,
        },
        0,
    );
    assert!(matches!(
        &outs[..],
        [Output::Control {
            down: ControlDown::Error { .. },
            ..
        }]
    ));
    let up = ConvUp::Open {
        conv: ConvId::General,
        after: None,
    };
    let outs = w.server.handle(
        Input::Conv {
            conn,
            conv: ConvId::General,
            up,
        },
        0,
    );
    assert!(matches!(
        &outs[..],
        [Output::Conv {
            down: ConvDown::Error { .. },
            ..
        }]
    ));
}

#[test]
fn offline_user_gets_missed_messages_once_in_order() {
    let mut w = World::new(Limits {
        msg_burst: 1000,
        ..Limits::default()
    });
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.send(a, "#general", "before");
    w.take(a);
    assert_eq!(w.messages(b).len(), 1);
    let saved = w.quit(b);
    for i in 0..100 {
        w.send(
            a,
            if i % 2 == 0 { "#general" } else { "@bob" },
            &format!("m{i}"),
        );
    }
    let b = w.login_from("bob", "password123", saved, 1);
    w.cmd(b, Command::Sync);
    let events = w.take(b);
    assert!(matches!(events[0], Event::Ready { .. }));
    assert!(matches!(events.last(), Some(Event::Sync)));
    let texts: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message { text, .. } => text.clone(),
            _ => None,
        })
        .collect();
    let general: Vec<_> = texts
        .iter()
        .filter(|t| t[1..].parse::<u32>().unwrap() % 2 == 0)
        .collect();
    assert_eq!(texts.len(), 100, "{texts:?}");
    assert!(
        general
            .windows(2)
            .all(|p| p[0][1..].parse::<u32>().unwrap() < p[1][1..].parse::<u32>().unwrap())
    );
}

#[test]
fn a_resend_after_a_lost_ack_is_stored_and_shown_once() {
    let mut w = World::new(Limits::default());
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.take(a);
    w.take(b);
    w.take(b);
    // The ack to alice is lost with her connection.
    w.drop_to = Some(a);
    w.send(a, "#general", "once");
    w.drop_to = None;
    assert!(w.take(a).is_empty());
    assert_eq!(w.clients[&a].outbox_len(), 1);
    w.disconnect(a);
    // Same client, new connection id: the outbox is resent with the same message id.
    let a2 = w.relogin(a, "alice");
    w.cmd(a2, Command::Sync);
    let ev = w.take(a2);
    let sent = ev
        .iter()
        .filter(|e| matches!(e, Event::Sent { .. }))
        .count();
    let shown = ev
        .iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .count();
    assert_eq!((sent, shown), (1, 0), "{ev:?}");
    assert_eq!(w.clients[&a2].outbox_len(), 0);
    assert_eq!(w.messages(b), vec![msg("#general", "alice", "once")]);
}

#[test]
fn delete_for_everyone_rules() {
    let mut w = World::new(Limits::default());
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.take(a);
    w.take(b);
    w.send(a, "#general", "oops");
    let Event::Sent { id, .. } = w.take(a).remove(0) else {
        panic!("no ack")
    };
    w.take(b);
    // Not the author: refused, nothing changes.
    w.cmd(
        b,
        Command::Delete {
            id,
            scope: DeleteScope::Everyone,
        },
    );
    assert_eq!(errors(&w.take(b)), vec!["not_author"]);
    assert!(w.take(a).is_empty());
    // The author: a tombstone for every member.
    w.cmd(
        a,
        Command::Delete {
            id,
            scope: DeleteScope::Everyone,
        },
    );
    for conn in [a, b] {
        let ev = w.take(conn);
        assert!(
            matches!(&ev[..], [Event::Deleted { id: d, scope: DeleteScope::Everyone, .. }] if *d == id),
            "{ev:?}"
        );
    }
    // Twice: harmless.
    w.cmd(
        a,
        Command::Delete {
            id,
            scope: DeleteScope::Everyone,
        },
    );
    assert_eq!(errors(&w.take(a)), vec!["not_found"]);
    // A late joiner sees the placeholder, never the body.
    let c = w.login("carol");
    assert_eq!(
        w.messages(c),
        vec![("#general".into(), "alice".into(), None)]
    );
    // Past the window: refused.
    w.take(a);
    w.send(a, "#general", "later");
    let Event::Sent { id, .. } = w.take(a).remove(0) else {
        panic!("no ack")
    };
    w.now += 24 * 3600 * 1000 + 1;
    w.cmd(
        a,
        Command::Delete {
            id,
            scope: DeleteScope::Everyone,
        },
    );
    assert_eq!(errors(&w.take(a)), vec!["delete_window_expired"]);
}

#[test]
fn delete_for_me_is_private_and_sticks() {
    let mut w = World::new(Limits::default());
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.take(a);
    w.take(b);
    w.send(a, "#general", "hide me");
    let Event::Sent { id, .. } = w.take(a).remove(0) else {
        panic!("no ack")
    };
    w.take(b);
    let b2 = w.login_from("bob", "password123", SavedState::default(), 2);
    w.take(b2);
    w.cmd(
        b,
        Command::Delete {
            id,
            scope: DeleteScope::Me,
        },
    );
    // Both of bob's sessions hear of it, alice does not.
    for conn in [b, b2] {
        assert!(matches!(
            &w.take(conn)[..],
            [Event::Deleted {
                scope: DeleteScope::Me,
                ..
            }]
        ));
    }
    assert!(w.take(a).is_empty());
    // A fresh device of bob's never sees it again; alice still does.
    let saved = w.quit(b);
    assert_eq!(saved.hide_cursor, 1);
    let b3 = w.login("bob");
    assert!(w.messages(b3).is_empty());
    let a2 = w.login("alice");
    assert_eq!(w.messages(a2), vec![msg("#general", "alice", "hide me")]);
}

#[test]
fn flood_is_rate_limited_per_user() {
    let mut w = World::new(Limits::default());
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.take(a);
    w.take(b);
    for i in 0..12 {
        w.send(a, "#general", &format!("{i}"));
    }
    let ev = w.take(a);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::Sent { .. }))
            .count(),
        10
    );
    assert_eq!(errors(&ev), vec!["rate_limited", "rate_limited"]);
    // bob is not slowed by alice's flood.
    w.send(b, "#general", "me too");
    assert!(w.take(b).iter().any(|e| matches!(e, Event::Sent { .. })));
    w.now += 500;
    w.send(a, "#general", "again");
    assert!(w.take(a).iter().any(|e| matches!(e, Event::Sent { .. })));
}

#[test]
fn a_sequence_gap_is_noticed_and_filled() {
    let mut w = World::new(Limits::default());
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.take(b);
    // Lose bob's copy of the first message.
    w.drop_to = Some(b);
    w.send(a, "#general", "one");
    w.drop_to = None;
    w.send(a, "#general", "two");
    w.send(a, "#general", "three");
    assert_eq!(
        w.messages(b),
        vec![
            msg("#general", "alice", "one"),
            msg("#general", "alice", "two"),
            msg("#general", "alice", "three")
        ]
    );
}

#[test]
fn sync_waits_for_conversations_being_opened() {
    let mut w = World::new(Limits::default());
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.take(b);
    w.send(a, "@bob", "hi");
    w.cmd(b, Command::Sync);
    let ev = w.take(b);
    assert!(
        matches!(&ev[..], [Event::Message { .. }, Event::Sync]),
        "{ev:?}"
    );
}

#[test]
fn bad_commands_get_clear_errors() {
    let mut w = World::new(Limits::default());
    let a = w.login("alice");
    w.take(a);
    w.send(a, "general", "x");
    w.send(a, "#general", "");
    w.send(a, "#general", &"x".repeat(client::MAX_TEXT + 1));
    w.send(a, "@bad name", "x");
    assert_eq!(
        errors(&w.take(a)),
        vec!["bad_request", "bad_request", "too_large", "unknown_user"]
    );
}

#[test]
fn backoff_grows_with_jitter_and_caps() {
    let mut b = client::Backoff::default();
    let d: Vec<f64> = (0..12).map(|_| b.next_delay(0.0).as_secs_f64()).collect();
    assert_eq!(d[0], 1.0);
    assert!((d[1] - 1.6).abs() < 1e-9);
    assert_eq!(d[11], 60.0);
    assert!((b.next_delay(1.0).as_secs_f64() - 72.0).abs() < 1e-9);
    assert!((b.next_delay(-1.0).as_secs_f64() - 48.0).abs() < 1e-9);
    b.reset();
    assert_eq!(b.next_delay(0.0).as_secs_f64(), 1.0);
}

#[test]
fn a_changed_identity_key_is_announced_and_never_silent() {
    let mut w = World::new(Limits::default());
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.send(a, "@bob", "hi");
    w.take(a);
    w.take(b);
    assert_eq!(w.clients[&a].peer_key("bob"), Some([b.0 as u8; 32]));
    // Bob logs in from a device with another identity key.
    let b2 = w.login_from("bob", "password123", SavedState::default(), 2);
    w.take(b2);
    let ev = w.take(a);
    assert!(
        matches!(&ev[..], [Event::KeyChanged { user, .. }] if user == "bob"),
        "{ev:?}"
    );
    assert_eq!(w.clients[&a].peer_key("bob"), Some([b2.0 as u8; 32]));
    // The pins survive a restart of alice's client.
    let saved = w.quit(a);
    assert_eq!(saved.peer_keys["bob"].len(), 2);
}

#[test]
fn private_sends_wait_for_the_peer_key_and_sync_still_covers_them() {
    let mut w = World::new(Limits::default());
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.take(a);
    w.take(b);
    // Hold back the server's answers to alice while she opens the conversation, sends and
    // asks for a barrier; then let everything through in order.
    let conn = a;
    let outs = w.clients.get_mut(&conn).unwrap().command(Command::Send {
        to: "@bob".into(),
        text: "queued".into(),
        reply_to: None,
    });
    // Only the Open goes out: the send waits for the catch-up that carries bob's key.
    assert!(
        matches!(&outs[..], [client::Output::Conv(_, ConvUp::Open { .. })]),
        "{outs:?}"
    );
    let mut outs2 = w.clients.get_mut(&conn).unwrap().command(Command::Sync);
    let mut all = outs;
    all.append(&mut outs2);
    w.client_out(conn, all);
    let ev = w.take(a);
    let kinds: Vec<&str> = ev
        .iter()
        .map(|e| match e {
            Event::Sent { .. } => "sent",
            Event::Sync => "sync",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, vec!["sent", "sync"]);
}

#[test]
fn catch_up_comes_in_rounds_within_a_byte_budget() {
    let mut w = World::new(Limits {
        msg_burst: 1000,
        catchup_bytes: 50_000,
        ..Limits::default()
    });
    let (a, b) = (w.login("alice"), w.login("bob"));
    let saved = w.quit(b);
    let text = "y".repeat(10_000);
    for i in 0..60 {
        w.send(a, "#general", &format!("{i:02}{text}"));
    }
    let b = w.login_from("bob", "password123", saved, 1);
    w.cmd(b, Command::Sync);
    let got: Vec<String> = w
        .messages(b)
        .into_iter()
        .map(|(_, _, t)| t.unwrap()[..2].to_owned())
        .collect();
    let want: Vec<String> = (0..60).map(|i| format!("{i:02}")).collect();
    assert_eq!(got, want);
    // A new device gets only the newest events that fit in one round.
    let fresh = w.login_from("carol", "password123", SavedState::default(), 3);
    let n = w.messages(fresh).len();
    assert!((1..=5).contains(&n), "{n}");
}

#[test]
fn a_conversation_that_cannot_open_reports_once() {
    let mut w = World::new(Limits::default());
    let a = w.login("alice");
    w.take(a);
    w.cmd(
        a,
        Command::History {
            conv: "@nobody".into(),
            before: None,
            limit: None,
        },
    );
    assert_eq!(errors(&w.take(a)), vec!["unknown_user"]);
}

#[test]
fn the_end_of_commands_flushes_the_outbox_then_logs_out() {
    let mut w = World::new(Limits::default());
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.take(a);
    w.take(b);
    // The last message's ack is lost with the connection, then the commands end offline.
    w.drop_to = Some(a);
    w.send(a, "#general", "last words");
    w.drop_to = None;
    w.disconnect(a);
    w.take(a);
    w.end_commands(a, 0);
    let core = &w.clients[&a];
    assert!(matches!(core.ending(), Ending::Draining { .. }));
    assert!(!core.drained(), "a message is still to be acknowledged");
    assert!(!core.is_logging_out());
    // Back online: the outbox goes out first, then the drain barrier, then the logout.
    let a2 = w.relogin(a, "alice");
    let ev = w.take(a2);
    assert!(w.clients[&a2].is_logging_out());
    assert_eq!(w.clients[&a2].outbox_len(), 0);
    let sent = ev.iter().position(|e| matches!(e, Event::Sent { .. }));
    let gone = ev
        .iter()
        .position(|e| matches!(e, Event::Disconnected { .. }));
    assert!(
        sent.is_some() && sent < gone,
        "sent, then logged out: {ev:?}"
    );
    assert!(
        !ev.iter().any(|e| matches!(e, Event::Sync)),
        "the drain barrier is not shown: {ev:?}"
    );
    // Stored once, shown to bob once (the resend was answered with the original ack).
    assert_eq!(w.messages(b), vec![msg("#general", "alice", "last words")]);
}

#[test]
fn the_drain_waits_behind_the_users_own_sync() {
    let mut w = World::new(Limits::default());
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.take(a);
    w.take(b);
    w.drop_to = Some(a);
    w.send(a, "#general", "one");
    w.cmd(a, Command::Sync);
    w.drop_to = None;
    assert_eq!(w.clients[&a].ending(), Ending::Running);
    // stdin ends while online. The answers to the send and to the user's sync were lost:
    // the drain barrier waits behind that sync and the client does not log out.
    w.end_commands(a, 0);
    assert!(!w.clients[&a].is_logging_out());
    // A reconnect resends the message (acknowledged once) and both barriers, in order.
    w.disconnect(a);
    let a2 = w.relogin(a, "alice");
    let ev = w.take(a2);
    let syncs = ev.iter().filter(|e| matches!(e, Event::Sync)).count();
    assert_eq!(
        syncs, 1,
        "the user's own sync is answered, the drain's is not: {ev:?}"
    );
    assert!(w.clients[&a2].is_logging_out());
    assert_eq!(w.messages(b), vec![msg("#general", "alice", "one")]);
}

#[test]
fn the_end_of_commands_waits_for_the_file_transfers() {
    let mut w = World::new(Limits::default());
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.take(a);
    w.take(b);
    w.end_commands(a, 1);
    assert_eq!(w.clients[&a].ending(), Ending::AfterTransfers);
    assert!(!w.clients[&a].drained());
    assert!(
        w.take(a).is_empty(),
        "nothing happens while the upload runs"
    );
    // The upload completes: its file message is posted, then the drain runs.
    let info = FileInfo {
        id: "00112233445566778899aabbccddeeff".into(),
        name: "a.txt".into(),
        mime: "text/plain".into(),
        size: 1,
        sha256: "00".repeat(32),
        key: None,
    };
    let outs = w
        .clients
        .get_mut(&a)
        .unwrap()
        .send_file_message(ConvId::General, &info);
    w.client_out(a, outs);
    let outs = w.clients.get_mut(&a).unwrap().transfers_idle();
    w.client_out(a, outs);
    let ev = w.take(a);
    assert!(
        matches!(&ev[0], Event::Sent { file: Some(f), .. } if f.name == "a.txt"),
        "{ev:?}"
    );
    assert!(!ev.iter().any(|e| matches!(e, Event::Sync)), "{ev:?}");
    assert!(w.clients[&a].is_logging_out());
    assert_eq!(w.messages(b).len(), 1);
}

#[test]
fn a_logout_command_ends_the_run_at_once() {
    let mut w = World::new(Limits::default());
    let a = w.login("alice");
    w.take(a);
    w.cmd(a, Command::Logout);
    assert!(w.clients[&a].is_logging_out());
    assert!(
        w.take(a)
            .iter()
            .any(|e| matches!(e, Event::Disconnected { .. })),
        "the server closed the connection"
    );
}

/// Logs in `user` with streams closing after 1 s of quiet.
fn login_idle(w: &mut World, user: &str) -> ConnId {
    let c = w.login(user);
    w.clients
        .get_mut(&c)
        .unwrap()
        .set_stream_idle(std::time::Duration::from_secs(1));
    c
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { text, .. } => text.clone(),
            _ => None,
        })
        .collect()
}

#[test]
fn idle_streams_close_and_news_reopens_them_with_catch_up() {
    let mut w = World::new(Limits::default());
    let (a, b) = (login_idle(&mut w, "alice"), w.login("bob"));
    w.send(a, "@bob", "hi");
    w.send(b, "@alice", "hello");
    assert_eq!(w.streams(a), ["#general", "@bob"]);
    w.tick(a, 999);
    assert_eq!(w.streams(a), ["#general", "@bob"], "not idle long enough");
    w.tick(a, 1000);
    assert!(w.streams(a).is_empty(), "{:?}", w.streams(a));
    // The server forgot the streams: news comes as ConvActivity and the client catches up.
    w.take(a);
    w.send(b, "@alice", "after");
    w.send(b, "#general", "room");
    assert_eq!(w.streams(a), ["#general", "@bob"]);
    let ev = w.take(a);
    assert_eq!(texts(&ev), ["after", "room"], "{ev:?}");
    // Quiet again, closed again; only the streams that went quiet.
    w.tick(a, 1500);
    assert_eq!(w.streams(a), ["#general", "@bob"]);
    w.tick(a, 2500);
    assert!(w.streams(a).is_empty());
}

#[test]
fn a_send_reopens_a_closed_stream_and_is_stored_once() {
    let mut w = World::new(Limits::default());
    let (a, b) = (login_idle(&mut w, "alice"), w.login("bob"));
    w.send(a, "@bob", "one");
    w.tick(a, 1000);
    assert!(w.streams(a).is_empty());
    w.take(a);
    w.take(b);
    w.send(a, "@bob", "two");
    let ev = w.take(a);
    let sent: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Sent { text, seq, .. } => Some((text.clone(), *seq)),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [("two".to_owned(), 2)], "{ev:?}");
    assert_eq!(texts(&w.take(b)), ["two"]);
    assert_eq!(w.clients[&a].outbox_len(), 0);
}

#[test]
fn events_sent_while_a_stream_closes_arrive_once_and_in_order() {
    let mut w = World::new(Limits::default());
    let (a, b) = (login_idle(&mut w, "alice"), w.login("bob"));
    w.send(a, "@bob", "open");
    let dm = w.clients[&a].parse_conv("@bob").unwrap();
    w.take(a);
    // alice's Close and the server's answer cross bob's messages: some go on the closing
    // stream before the server handles the Close, the rest come as ConvActivity.
    w.hold = Some((a, dm.clone()));
    w.send(b, "@alice", "m1");
    w.tick(a, 1000);
    w.send(b, "@alice", "m2");
    w.send(b, "@alice", "m3");
    assert!(w.take(a).is_empty(), "m1 is held on the stream");
    // ConvActivity came on the control stream while the stream was still closing: the
    // barrier waits for the stream's last frames and the reopen's catch-up.
    w.cmd(a, Command::Sync);
    assert!(
        w.take(a).is_empty(),
        "the barrier waits for the closing stream"
    );
    w.release();
    let ev = w.take(a);
    assert_eq!(texts(&ev), ["m1", "m2", "m3"], "{ev:?}");
    assert!(matches!(ev.last(), Some(Event::Sync)), "{ev:?}");
    assert_eq!(
        w.streams(a),
        ["@bob"],
        "#general went quiet too and stays closed"
    );
    // And nothing more or twice after another close and reopen.
    w.tick(a, 3000);
    w.send(b, "@alice", "m4");
    w.cmd(a, Command::Sync);
    let ev = w.take(a);
    assert_eq!(texts(&ev), ["m4"], "{ev:?}");
}

#[test]
fn a_stream_with_something_in_flight_never_closes() {
    let mut w = World::new(Limits::default());
    let (a, _b) = (login_idle(&mut w, "alice"), w.login("bob"));
    w.send(a, "@bob", "open");
    let dm = w.clients[&a].parse_conv("@bob").unwrap();
    // An unacknowledged send.
    w.hold = Some((a, dm.clone()));
    w.send(a, "@bob", "pending");
    w.tick(a, 5000);
    assert_eq!(w.streams(a), ["@bob"], "only #general closed");
    w.release();
    // A pending history request.
    w.hold = Some((a, dm.clone()));
    w.cmd(
        a,
        Command::History {
            conv: "@bob".into(),
            before: None,
            limit: None,
        },
    );
    w.tick(a, 10_000);
    assert_eq!(w.streams(a), ["@bob"]);
    // A barrier in flight on it.
    w.release();
    w.take(a);
    w.hold = Some((a, dm.clone()));
    w.cmd(a, Command::Sync);
    w.tick(a, 15_000);
    assert_eq!(w.streams(a), ["@bob"]);
    w.release();
    assert!(matches!(w.take(a).last(), Some(Event::Sync)));
    w.tick(a, 20_000);
    assert!(w.streams(a).is_empty());
}

#[test]
fn a_history_request_on_a_closing_stream_goes_after_the_reopen() {
    let mut w = World::new(Limits::default());
    let (a, b) = (login_idle(&mut w, "alice"), w.login("bob"));
    w.send(b, "@alice", "old");
    let dm = w.clients[&a].parse_conv("@bob").unwrap();
    w.take(a);
    w.hold = Some((a, dm));
    w.tick(a, 1000);
    w.cmd(
        a,
        Command::History {
            conv: "@bob".into(),
            before: None,
            limit: None,
        },
    );
    w.release();
    let ev = w.take(a);
    assert!(errors(&ev).is_empty(), "{ev:?}");
    let history: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::History { messages, .. } => Some(messages.len()),
            _ => None,
        })
        .collect();
    assert_eq!(history, [1], "{ev:?}");
}

#[test]
fn at_most_max_streams_are_open_and_every_conversation_still_arrives() {
    let mut w = World::new(Limits::default());
    let a = login_idle(&mut w, "alice");
    w.clients.get_mut(&a).unwrap().set_max_streams(3);
    let peers: Vec<ConnId> = (0..6).map(|i| w.login(&format!("peer{i}"))).collect();
    w.take(a);
    for (i, p) in peers.iter().enumerate() {
        w.send(*p, "@alice", &format!("from {i}"));
        assert!(w.streams(a).len() <= 3, "{:?}", w.streams(a));
    }
    w.cmd(a, Command::Sync);
    let ev = w.take(a);
    let mut got = texts(&ev);
    got.sort();
    let want: Vec<String> = (0..6).map(|i| format!("from {i}")).collect();
    assert_eq!(got, want, "{ev:?}");
    assert!(matches!(ev.last(), Some(Event::Sync)), "{ev:?}");
}
