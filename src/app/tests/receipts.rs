//! Read state, seen receipts, typing and mentions, driven in memory: markers shared by a
//! user's sessions and never moving back, receipts only where they belong and never for
//! a user who turned them off, typing forwarded and rate-limited, mentions resolved by
//! the server for rooms and by the clients for private conversations.

use super::{World, errors};
use crate::app::client::{Command, Event, SeenItem, Unread};
use crate::app::ids::{ConnId, ConvId};
use crate::app::limits::Limits;
use crate::app::protocol::{ConvDown, Visibility};
use crate::app::server::{MAX_RECEIPT_MEMBERS, Output, TYPING_INTERVAL_MS};
use crate::app::store::Store;

fn read(w: &mut World, conn: ConnId, conv: &str, upto: Option<u64>) {
    let conv = conv.into();
    w.cmd(conn, Command::Read { conv, upto });
}

fn typing(w: &mut World, conn: ConnId, conv: &str) {
    w.cmd(conn, Command::Typing { conv: conv.into() });
}

fn reads(events: &[Event]) -> Vec<(String, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Read { conv, upto } => Some((conv.clone(), *upto)),
            _ => None,
        })
        .collect()
}

fn seens(events: &[Event]) -> Vec<(String, String, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Seen { conv, user, upto } => Some((conv.clone(), user.clone(), *upto)),
            _ => None,
        })
        .collect()
}

fn typings(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Typing { conv, user } => Some((conv.clone(), user.clone())),
            _ => None,
        })
        .collect()
}

/// (text, mentions, mentions_me) of each message event.
fn mentions(events: &[Event]) -> Vec<(String, Vec<String>, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message {
                text: Some(t),
                mentions,
                mentions_me,
                ..
            } => Some((t.clone(), mentions.clone(), *mentions_me)),
            _ => None,
        })
        .collect()
}

fn room_with(w: &mut World, owner: ConnId, name: &str, members: &[ConnId]) {
    w.cmd(
        owner,
        Command::CreateRoom {
            room: name.into(),
            topic: String::new(),
            visibility: Visibility::Public,
        },
    );
    for m in members {
        w.cmd(*m, Command::Join { room: name.into() });
    }
}

#[test]
fn a_read_marker_reaches_the_other_sessions_never_moves_back_and_survives_a_relogin() {
    let mut w = World::new(Limits::default());
    let (a1, a2, bob) = (w.login("alice"), w.login("alice"), w.login("bob"));
    for i in 0..3 {
        w.send(bob, "#general", &format!("m{i}"));
    }
    for c in [a1, a2, bob] {
        w.take(c);
    }
    let general = ConvId::General;
    let unread = |w: &World, c: ConnId| w.clients[&c].unread(&general);
    assert_eq!(unread(&w, a2).messages, 3);

    read(&mut w, a1, "#general", Some(2));
    assert_eq!(reads(&w.take(a2)), [("#general".to_owned(), 2)]);
    assert!(w.take(a1).is_empty(), "the reading session is not told");
    assert!(w.take(bob).is_empty(), "#general has no seen receipts");
    assert_eq!(unread(&w, a2).messages, 1);
    assert_eq!(unread(&w, a1).messages, 1);

    // Lower or equal: a no-op, not an error, and nobody hears of it.
    read(&mut w, a1, "#general", Some(1));
    read(&mut w, a2, "#general", Some(2));
    assert!(w.take(a1).is_empty() && w.take(a2).is_empty());
    // Past the end: clamped to what exists.
    read(&mut w, a2, "#general", Some(99));
    assert_eq!(reads(&w.take(a1)), [("#general".to_owned(), 3)]);
    assert_eq!(unread(&w, a1), Unread::default());
    assert_eq!(w.clients[&a1].read_marker(&general), 3);

    // A new session (a restart of the device) learns the marker at login.
    let saved = w.quit(a2);
    let a3 = w.login_from("alice", "password123", saved, 1);
    let ev = w.take(a3);
    assert_eq!(reads(&ev), [("#general".to_owned(), 3)]);
    assert!(ev.contains(&Event::Receipts { on: true }));
    assert_eq!(w.clients[&a3].read_marker(&general), 3);

    // A read of a conversation that is not yours is refused.
    read(&mut w, a3, "#nowhere", Some(1));
    assert_eq!(errors(&w.take(a3)), ["no_such_room"]);
}

#[test]
fn seen_receipts_in_private_conversations_and_small_rooms_only() {
    let mut w = World::new(Limits::default());
    let (alice, bob) = (w.login("alice"), w.login("bob"));
    w.send(bob, "@alice", "hi");
    w.take(alice);
    w.take(bob);
    read(&mut w, alice, "@bob", None);
    assert_eq!(
        seens(&w.take(bob)),
        [("@alice".to_owned(), "alice".to_owned(), 1)]
    );
    assert!(w.take(alice).is_empty());
    w.cmd(
        bob,
        Command::SeenBy {
            conv: "@alice".into(),
        },
    );
    let members = vec![SeenItem {
        user: "alice".into(),
        upto: 1,
    }];
    assert_eq!(
        w.take(bob),
        [Event::SeenBy {
            conv: "@alice".into(),
            members
        }]
    );

    // A room at the limit has receipts; one member more has none.
    let others: Vec<ConnId> = (1..MAX_RECEIPT_MEMBERS)
        .map(|i| w.login(&format!("user{i}")))
        .collect();
    assert_eq!(others.len() + 1, MAX_RECEIPT_MEMBERS);
    room_with(&mut w, alice, "#small", &others);
    w.send(alice, "#small", "read me");
    for c in others.iter().chain([&alice, &bob]) {
        w.take(*c);
    }
    read(&mut w, others[0], "#small", None);
    assert_eq!(
        seens(&w.take(alice)),
        [("#small".to_owned(), "user1".to_owned(), 1)]
    );
    assert_eq!(seens(&w.take(others[1])).len(), 1);
    w.cmd(
        bob,
        Command::Join {
            room: "#small".into(),
        },
    );
    w.send(alice, "#small", "now big");
    for c in others.iter().chain([&alice, &bob]) {
        w.take(*c);
    }
    read(&mut w, others[0], "#small", None);
    for c in others.iter().chain([&alice, &bob]) {
        assert!(seens(&w.take(*c)).is_empty(), "a receipt in a room of 21");
    }
    w.cmd(
        alice,
        Command::SeenBy {
            conv: "#small".into(),
        },
    );
    assert!(matches!(&w.take(alice)[..], [Event::SeenBy { members, .. }] if members.is_empty()));
}

#[test]
fn receipts_off_means_none_sent_and_none_received() {
    let mut w = World::new(Limits::default());
    let (a1, a2, bob) = (w.login("alice"), w.login("alice"), w.login("bob"));
    for c in [a1, a2, bob] {
        w.take(c);
    }
    w.cmd(a1, Command::Receipts { on: false });
    assert_eq!(w.take(a1), [Event::Receipts { on: false }]);
    assert_eq!(w.take(a2), [Event::Receipts { on: false }]);
    assert!(!w.clients[&a2].receipts_on());

    w.send(bob, "@alice", "one");
    w.send(a1, "@bob", "two");
    for c in [a1, a2, bob] {
        w.take(c);
    }
    read(&mut w, a1, "@bob", None);
    assert!(seens(&w.take(bob)).is_empty(), "alice sends none");
    assert_eq!(reads(&w.take(a2)), [("@bob".to_owned(), 2)]);
    read(&mut w, bob, "@alice", None);
    assert!(seens(&w.take(a1)).is_empty(), "alice receives none");
    assert!(seens(&w.take(a2)).is_empty());
    w.cmd(
        bob,
        Command::SeenBy {
            conv: "@alice".into(),
        },
    );
    assert!(matches!(&w.take(bob)[..], [Event::SeenBy { members, .. }] if members.is_empty()));
    w.cmd(
        a1,
        Command::SeenBy {
            conv: "@bob".into(),
        },
    );
    assert!(matches!(&w.take(a1)[..], [Event::SeenBy { members, .. }] if members.is_empty()));

    // Back on: both ways again, and the setting was stored.
    w.cmd(a2, Command::Receipts { on: true });
    w.send(bob, "@alice", "three");
    for c in [a1, a2, bob] {
        w.take(c);
    }
    read(&mut w, a1, "@bob", None);
    assert_eq!(
        seens(&w.take(bob)),
        [("@alice".to_owned(), "alice".to_owned(), 3)]
    );
    w.send(a1, "@bob", "four");
    w.take(bob);
    read(&mut w, bob, "@alice", None);
    assert_eq!(
        seens(&w.take(a2)),
        [("@bob".to_owned(), "bob".to_owned(), 4)]
    );
}

#[test]
fn typing_is_forwarded_rate_limited_and_never_stored() {
    let mut w = World::new(Limits::default());
    let (a1, a2, bob, carol) = (
        w.login("alice"),
        w.login("alice"),
        w.login("bob"),
        w.login("carol"),
    );
    for c in [a1, a2, bob, carol] {
        w.take(c);
    }
    let mark = w.trace.len();
    typing(&mut w, a1, "@bob");
    assert_eq!(
        typings(&w.take(bob)),
        [("@alice".to_owned(), "alice".to_owned())]
    );
    assert!(w.take(a2).is_empty() && w.take(carol).is_empty() && w.take(a1).is_empty());
    let dm = ConvId::Direct("alice".into(), "bob".into());
    w.tick(bob, 10_000);
    assert_eq!(w.clients[&bob].typing_in(&dm), Vec::<String>::new());

    // Within the interval: dropped silently (typing is best effort).
    w.now += TYPING_INTERVAL_MS - 1;
    typing(&mut w, a2, "@bob");
    assert!(w.take(bob).is_empty() && w.take(a2).is_empty());
    w.now += 1;
    typing(&mut w, a2, "@bob");
    assert_eq!(typings(&w.take(bob)).len(), 1);
    assert_eq!(w.clients[&bob].typing_in(&dm), ["alice"]);
    // Gone when the message arrives...
    w.send(a1, "@bob", "done typing");
    w.take(bob);
    assert!(w.clients[&bob].typing_in(&dm).is_empty());
    // ...or five seconds after the last notice.
    w.now += TYPING_INTERVAL_MS;
    typing(&mut w, a1, "@bob");
    w.take(bob);
    w.tick(bob, 14_999);
    assert_eq!(w.clients[&bob].typing_in(&dm), ["alice"]);
    w.tick(bob, 15_000);
    assert!(w.clients[&bob].typing_in(&dm).is_empty());

    // Nothing of it was ever stored or sent on a conversation stream: only the message.
    assert_eq!(w.server.store_mut().last_seq(&dm).unwrap(), 1);
    let on_streams = w.trace[mark..]
        .iter()
        .filter(|o| {
            matches!(o, Output::Conv { conn, down: ConvDown::Event(_) | ConvDown::Backlog(_), .. } if *conn == bob)
        })
        .count();
    assert_eq!(on_streams, 1, "only the message, to bob");
    // Outsiders cannot type into a conversation.
    typing(&mut w, carol, "#secret");
    assert_eq!(errors(&w.take(carol)), ["no_such_room"]);
}

#[test]
fn mentions_name_members_and_mark_the_mentioned_user() {
    let mut w = World::new(Limits::default());
    let (alice, bob, carol) = (w.login("alice"), w.login("Bob"), w.login("carol"));
    room_with(&mut w, alice, "#team", &[bob]);
    for c in [alice, bob, carol] {
        w.take(c);
    }
    // carol is not a member of #team: not a mention there. `@B0B.` is bob by skeleton.
    w.send(alice, "#team", "@B0B. and @carol, see @alice");
    let got = mentions(&w.take(bob));
    assert_eq!(
        got,
        [(
            "@B0B. and @carol, see @alice".to_owned(),
            vec!["Bob".to_owned(), "alice".to_owned()],
            true
        )]
    );
    let team = ConvId::Room("#team".into());
    assert_eq!(
        w.clients[&bob].unread(&team),
        Unread {
            messages: 1,
            mentions: 1
        }
    );
    w.send(alice, "#team", "no mention");
    w.take(bob);
    assert_eq!(
        w.clients[&bob].unread(&team),
        Unread {
            messages: 2,
            mentions: 1
        }
    );

    // #general: any registered user, case-insensitively; bob@example.org is no mention.
    w.send(bob, "#general", "hey @CAROL, mail bob@example.org");
    let got = mentions(&w.take(carol));
    assert_eq!(got[0].1, ["carol"]);
    assert!(got[0].2);
    assert!(!mentions(&w.take(alice))[0].2, "alice is not mentioned");

    // Private: the server names nobody (it cannot read the text); the clients do.
    let mark = w.trace.len();
    w.send(carol, "@alice", "@Alice look, @bob is not here");
    let dm_events: Vec<&Output> = w.trace[mark..]
        .iter()
        .filter(|o| matches!(o, Output::Conv { down: ConvDown::Event(e), .. } if !e.mentions.is_empty()))
        .collect();
    assert!(dm_events.is_empty(), "{dm_events:?}");
    let got = mentions(&w.take(alice));
    assert_eq!(got[0].1, ["alice"]);
    assert!(got[0].2);

    // A history page carries the mark too.
    w.cmd(
        bob,
        Command::History {
            conv: "#team".into(),
            before: None,
            limit: None,
        },
    );
    let page = w.take(bob);
    let Some(Event::History { messages, .. }) = page.last() else {
        panic!("{page:?}");
    };
    let marks: Vec<bool> = messages.iter().map(|m| m.mentions_me).collect();
    assert_eq!(marks, [true, false]);
}
