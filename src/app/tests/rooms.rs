//! The server's room core, driven in memory: membership on every path, what an outsider
//! can learn, history visibility, removal mid-burst, moderation and the room's life.

use super::{World, errors, texts};
use crate::app::client::{Command, Event, RoomItem};
use crate::app::ids::{ConnId, ConvId, MsgId};
use crate::app::limits::Limits;
use crate::app::protocol::{
    ControlDown, ControlUp, ConvDown, ConvUp, DeleteScope, ErrorCode, EventKind, MemberChange,
    RoomUp, Visibility,
};
use crate::app::server::{Input, Output};

fn room(name: &str) -> ConvId {
    ConvId::Room(name.to_ascii_lowercase())
}

fn create(w: &mut World, owner: ConnId, name: &str, visibility: Visibility) {
    w.cmd(
        owner,
        Command::CreateRoom {
            room: name.into(),
            topic: format!("about {name}"),
            visibility,
        },
    );
}

fn join(w: &mut World, conn: ConnId, name: &str) {
    w.cmd(conn, Command::Join { room: name.into() });
}

fn invite(w: &mut World, conn: ConnId, name: &str, user: &str) {
    let (room, user) = (name.into(), user.into());
    w.cmd(conn, Command::Invite { room, user });
}

fn kick(w: &mut World, conn: ConnId, name: &str, user: &str) {
    let (room, user) = (name.into(), user.into());
    w.cmd(conn, Command::Kick { room, user });
}

fn promote(w: &mut World, conn: ConnId, name: &str, user: &str) {
    let (room, user) = (name.into(), user.into());
    w.cmd(conn, Command::Promote { room, user });
}

fn demote(w: &mut World, conn: ConnId, name: &str, user: &str) {
    let (room, user) = (name.into(), user.into());
    w.cmd(conn, Command::Demote { room, user });
}

fn leave(w: &mut World, conn: ConnId, name: &str) {
    w.cmd(conn, Command::Leave { room: name.into() });
}

/// A user who exists (registered) and is offline now.
fn registered(w: &mut World, user: &str) {
    let c = w.login(user);
    w.quit(c);
}

/// The server's outputs since trace position `from`, for `conn`.
fn outputs_for(w: &World, from: usize, conn: ConnId) -> Vec<Output> {
    w.trace[from..]
        .iter()
        .filter(|o| match o {
            Output::Control { conn: c, .. }
            | Output::Conv { conn: c, .. }
            | Output::Close { conn: c, .. }
            | Output::Revoke { conn: c, .. } => *c == conn,
            _ => false,
        })
        .cloned()
        .collect()
}

/// The error answers among `outs` (control and conversation streams).
fn refusals(outs: &[Output]) -> Vec<(ErrorCode, String)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Control {
                down: ControlDown::Error { code, message },
                ..
            }
            | Output::Conv {
                down: ConvDown::Error { code, message, .. },
                ..
            } => Some((*code, message.clone())),
            _ => None,
        })
        .collect()
}

/// Whether any of `outs` carries an event of `conv` (live, backlog or history) or news of it.
fn reveals(outs: &[Output], conv: &ConvId) -> bool {
    outs.iter().any(|o| match o {
        Output::Conv { conv: c, down, .. } if c == conv => matches!(
            down,
            ConvDown::Event(_)
                | ConvDown::Backlog(_)
                | ConvDown::CaughtUp { .. }
                | ConvDown::History { .. }
        ),
        Output::Control {
            down: ControlDown::ConvActivity { conv: c },
            ..
        } => c == conv,
        _ => false,
    })
}

/// The id of the last message `conn` sent (from its `sent` events).
fn last_sent(events: &[Event]) -> MsgId {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Sent { id, .. } => Some(*id),
            _ => None,
        })
        .expect("a sent event")
}

/// Raw frames a modified client could send about `conv` (bypassing the client core), and
/// the server's answers to them.
fn probe(w: &mut World, conn: ConnId, conv: &ConvId, id: MsgId) -> Vec<Output> {
    let from = w.trace.len();
    let frames = [
        ConvUp::Open {
            conv: conv.clone(),
            after: None,
        },
        ConvUp::Open {
            conv: conv.clone(),
            after: Some(0),
        },
        ConvUp::Catchup { after: 0 },
        ConvUp::History {
            before: None,
            limit: 0,
        },
        ConvUp::Send {
            cmid: crate::app::ids::ClientMsgId([9; 16]),
            body: b"let me in".to_vec(),
        },
    ];
    for up in frames {
        let conv = conv.clone();
        w.server_in(Input::Conv { conn, conv, up });
    }
    for scope in [DeleteScope::Everyone, DeleteScope::Me] {
        let up = ControlUp::Delete { id, scope };
        w.server_in(Input::Control { conn, up });
    }
    outputs_for(w, from, conn)
}

#[test]
fn a_non_member_cannot_open_send_read_catch_up_or_delete_in_a_room() {
    let mut w = World::new(Limits::default());
    let (alice, mallory) = (w.login("alice"), w.login("mallory"));
    create(&mut w, alice, "#design", Visibility::Public);
    w.send(alice, "#design", "members only");
    let id = last_sent(&w.take(alice));
    w.take(mallory);

    let outs = probe(&mut w, mallory, &room("#design"), id);
    assert!(!reveals(&outs, &room("#design")), "{outs:?}");
    w.take(mallory);
    let codes: Vec<ErrorCode> = refusals(&outs).into_iter().map(|(c, _)| c).collect();
    // Every request is answered, with a refusal.
    assert_eq!(codes.len(), 7, "{outs:?}");
    assert!(
        codes[..5].iter().all(|c| *c == ErrorCode::NotMember),
        "{codes:?}"
    );
    assert!(
        codes[5..].iter().all(|c| *c == ErrorCode::NotFound),
        "{codes:?}"
    );

    // Through the client core too, and the message is still there for its members.
    w.send(mallory, "#design", "hello?");
    w.cmd(
        mallory,
        Command::History {
            conv: "#design".into(),
            before: None,
            limit: None,
        },
    );
    let events = w.take(mallory);
    assert_eq!(errors(&events), ["not_member", "not_member"], "{events:?}");
    w.cmd(
        alice,
        Command::History {
            conv: "#design".into(),
            before: None,
            limit: None,
        },
    );
    let h = w.take(alice);
    assert!(
        matches!(&h[..], [Event::History { messages, .. }] if messages.len() == 1),
        "{h:?}"
    );
}

#[test]
fn an_outsider_cannot_learn_that_a_private_room_exists() {
    let mut w = World::new(Limits::default());
    let (alice, mallory) = (w.login("alice"), w.login("mallory"));
    create(&mut w, alice, "#secret", Visibility::Private);
    w.send(alice, "#secret", "the plan");
    let id = last_sent(&w.take(alice));
    w.take(mallory);
    let from = w.trace.len();

    // The same requests about a room that exists and one that does not get the same
    // answers, but for the name.
    let secret = probe(&mut w, mallory, &room("#secret"), id);
    let nothing = probe(&mut w, mallory, &room("#nothing"), 999_999);
    let norm = |outs: &[Output], name: &str, id: MsgId| -> Vec<(ErrorCode, String)> {
        refusals(outs)
            .into_iter()
            .map(|(c, m)| (c, m.replace(name, "X").replace(&id.to_string(), "N")))
            .collect()
    };
    let a = norm(&secret, "secret", id);
    assert_eq!(a, norm(&nothing, "nothing", 999_999));
    assert!(
        a[..5].iter().all(|(c, _)| *c == ErrorCode::NoSuchRoom),
        "{a:?}"
    );

    w.take(mallory);

    // Room commands: no_such_room, like for a room that does not exist.
    for name in ["#secret", "#Secret"] {
        join(&mut w, mallory, name);
        w.cmd(mallory, Command::Members { room: name.into() });
        w.cmd(mallory, Command::Accept { room: name.into() });
        leave(&mut w, mallory, name);
        invite(&mut w, mallory, name, "alice");
        kick(&mut w, mallory, name, "alice");
        w.cmd(
            mallory,
            Command::Topic {
                room: name.into(),
                topic: "mine".into(),
            },
        );
    }
    let events = w.take(mallory);
    let errs = errors(&events);
    assert_eq!(errs.len(), 14, "{events:?}");
    assert!(errs.iter().all(|c| c == "no_such_room"), "{errs:?}");

    // Not in the directory, whatever the filter.
    for filter in ["", "sec", "plan", "about"] {
        w.cmd(
            mallory,
            Command::Rooms {
                filter: filter.into(),
            },
        );
    }
    for e in w.take(mallory) {
        let Event::Rooms { rooms } = e else {
            panic!("{e:?}")
        };
        assert!(rooms.iter().all(|r| r.room != "#secret"), "{rooms:?}");
    }

    // Activity in it reaches no outsider, live or at their next login.
    w.send(alice, "#secret", "more plans");
    w.quit(mallory);
    let mallory = w.login("mallory");
    w.cmd(mallory, Command::Sync);
    let outs = outputs_for(&w, from, mallory);
    assert!(!reveals(&outs, &room("#secret")), "{outs:?}");
    let events = w.take(mallory);
    assert!(
        events.iter().all(|e| !format!("{e:?}").contains("ecret")),
        "{events:?}"
    );
}

#[test]
fn private_history_starts_at_the_join() {
    let mut w = World::new(Limits::default());
    let (alice, bob) = (w.login("alice"), w.login("bob"));
    create(&mut w, alice, "#priv", Visibility::Private);
    w.send(alice, "#priv", "before 1");
    w.send(alice, "#priv", "before 2");
    invite(&mut w, alice, "#priv", "bob");
    w.send(alice, "#priv", "invited, not joined");
    w.cmd(
        bob,
        Command::Accept {
            room: "#priv".into(),
        },
    );
    w.send(alice, "#priv", "after 1");
    w.cmd(bob, Command::Sync);
    // The open's catch-up and the live event: only what came after the join.
    assert_eq!(texts(&w.take(bob)), ["after 1"]);
    // History.
    w.cmd(
        bob,
        Command::History {
            conv: "#priv".into(),
            before: None,
            limit: Some(1000),
        },
    );
    let h = w.take(bob);
    let [Event::History { messages, more, .. }] = &h[..] else {
        panic!("{h:?}")
    };
    let shown: Vec<_> = messages.iter().filter_map(|m| m.text.clone()).collect();
    assert_eq!(shown, ["after 1"]);
    assert!(!more);
    // A raw catch-up from the start: from the join on.
    let from = w.trace.len();
    let (conn, conv) = (bob, room("#priv"));
    w.server_in(Input::Conv {
        conn,
        conv,
        up: ConvUp::Catchup { after: 0 },
    });
    let backlog: Vec<_> = outputs_for(&w, from, bob)
        .into_iter()
        .filter_map(|o| match o {
            Output::Conv {
                down: ConvDown::Backlog(e),
                ..
            } => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(backlog.len(), 1, "{backlog:?}");
    assert!(matches!(&backlog[0].kind, EventKind::Message { body } if body == b"after 1"));

    // Offline: the backlog at the next login, once; still nothing from before the join.
    let saved = w.quit(bob);
    w.send(alice, "#priv", "while away");
    let bob = w.login_from("bob", "password123", saved, 1);
    w.cmd(bob, Command::Sync);
    assert_eq!(texts(&w.take(bob)), ["while away"]);
    // A new device: the same.
    let bob2 = w.login("bob");
    w.cmd(
        bob2,
        Command::History {
            conv: "#priv".into(),
            before: None,
            limit: None,
        },
    );
    w.cmd(bob2, Command::Sync);
    let events = w.take(bob2);
    let history: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::History { messages, .. } => Some(messages.iter().filter_map(|m| m.text.clone())),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(history, ["after 1", "while away"]);

    // A public room's late joiner reads from the beginning.
    create(&mut w, alice, "#open", Visibility::Public);
    w.send(alice, "#open", "old news");
    join(&mut w, bob, "#open");
    w.cmd(bob, Command::Sync);
    assert_eq!(texts(&w.take(bob)), ["old news"]);
}

#[test]
fn a_kick_mid_burst_revokes_before_any_further_event_and_closes_the_stream() {
    let mut w = World::new(Limits {
        msg_burst: 100,
        ..Limits::default()
    });
    let (alice, bob) = (w.login("alice"), w.login("bob"));
    // Bob on two devices: both lose the room at once.
    let bob2 = w.login("bob");
    create(&mut w, alice, "#design", Visibility::Public);
    join(&mut w, bob, "#design");
    w.send(alice, "#design", "welcome");
    for c in [bob, bob2] {
        w.cmd(c, Command::Sync);
        assert!(w.streams(c).contains(&"#design".to_owned()));
    }
    w.take(bob);
    w.take(bob2);

    // Bob's stream of the room is slow: what the server sends him on it stays queued.
    w.hold = Some((bob, room("#design")));
    for i in 0..5 {
        w.send(alice, "#design", &format!("burst {i}"));
    }
    let kick_at = w.trace.len();
    kick(&mut w, alice, "#design", "bob");
    for i in 5..10 {
        w.send(alice, "#design", &format!("burst {i}"));
    }
    w.release();

    for (c, before_kick) in [(bob, 0), (bob2, 5)] {
        let outs = outputs_for(&w, kick_at, c);
        let revoke = outs
            .iter()
            .position(|o| matches!(o, Output::Revoke { conv, .. } if *conv == room("#design")))
            .expect("a revoke");
        // Nothing of the room after the revoke but the end of the stream the client closed.
        let after: Vec<_> = outs[revoke..]
            .iter()
            .filter(|o| matches!(o, Output::Conv { conv, .. } if *conv == room("#design")))
            .collect();
        assert!(
            after.iter().all(|o| matches!(
                o,
                Output::Conv {
                    down: ConvDown::Closed,
                    ..
                }
            )),
            "{after:?}"
        );
        assert_eq!(
            after.len(),
            1,
            "the client closed the room's stream: {after:?}"
        );
        // And nothing of the room before it, since the kick, either.
        assert!(!reveals(&outs[..revoke], &room("#design")), "{outs:?}");
        w.cmd(c, Command::Sync);
        let events = w.take(c);
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Left { reason: MemberChange::Kicked, by: Some(by), .. } if by == "alice"
            )),
            "{events:?}"
        );
        assert_eq!(events.last(), Some(&Event::Sync));
        // On the slow stream the queued part of the burst was dropped; on the other, what
        // came before the kick stayed shown. Nothing later came on either.
        let want: Vec<String> = (0..before_kick).map(|i| format!("burst {i}")).collect();
        assert_eq!(texts(&events), want, "{events:?}");
        assert!(!w.streams(c).contains(&"#design".to_owned()));
    }

    // A public room: he may come back, and catches up on what he missed, once.
    join(&mut w, bob, "#design");
    w.send(alice, "#design", "welcome back");
    w.cmd(bob, Command::Sync);
    let got = texts(&w.take(bob));
    let want: Vec<String> = (0..10)
        .map(|i| format!("burst {i}"))
        .chain(["welcome back".to_owned()])
        .collect();
    assert_eq!(
        got, want,
        "'welcome' was shown before the kick and is not again"
    );
    assert!(w.streams(bob).contains(&"#design".to_owned()));
}

#[test]
fn a_ban_keeps_out_until_unbanned() {
    let mut w = World::new(Limits::default());
    let (alice, bob) = (w.login("alice"), w.login("bob"));
    create(&mut w, alice, "#design", Visibility::Public);
    join(&mut w, bob, "#design");
    w.cmd(
        alice,
        Command::Ban {
            room: "#design".into(),
            user: "bob".into(),
        },
    );
    let events = w.take(bob);
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Left {
                reason: MemberChange::Banned,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(!w.streams(bob).contains(&"#design".to_owned()));
    join(&mut w, bob, "#design");
    w.send(bob, "#design", "let me back");
    let events = w.take(bob);
    assert_eq!(errors(&events), ["banned", "not_member"], "{events:?}");
    // An invitation does not lift it.
    invite(&mut w, alice, "#design", "bob");
    join(&mut w, bob, "#design");
    assert!(errors(&w.take(bob)).contains(&"banned".to_owned()));
    w.take(alice);

    w.cmd(
        alice,
        Command::Unban {
            room: "#design".into(),
            user: "bob".into(),
        },
    );
    join(&mut w, bob, "#design");
    w.send(bob, "#design", "thanks");
    w.cmd(bob, Command::Sync);
    let events = w.take(bob);
    assert!(errors(&events).is_empty(), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, Event::Joined { .. })));
    assert!(events.iter().any(|e| matches!(e, Event::Sent { .. })));
}

#[test]
fn invitations_made_while_offline_arrive_at_login() {
    let mut w = World::new(Limits::default());
    registered(&mut w, "bob");
    let alice = w.login("alice");
    create(&mut w, alice, "#priv", Visibility::Private);
    invite(&mut w, alice, "#priv", "bob");
    assert!(errors(&w.take(alice)).is_empty());

    let bob = w.login("bob");
    let events = w.take(bob);
    let state = events
        .iter()
        .find_map(|e| match e {
            Event::RoomState { invitations, .. } => Some(invitations.clone()),
            _ => None,
        })
        .expect("room state after login");
    assert_eq!(state.len(), 1, "{state:?}");
    assert_eq!(
        (state[0].room.as_str(), state[0].by.as_str()),
        ("#priv", "alice")
    );

    // Live ones too; and accepting joins.
    let carol = w.login("carol");
    invite(&mut w, alice, "#priv", "carol");
    let events = w.take(carol);
    assert!(
        events.iter().any(
            |e| matches!(e, Event::Invited { room, by, .. } if room == "#priv" && by == "alice")
        ),
        "{events:?}"
    );
    w.cmd(
        bob,
        Command::Accept {
            room: "#priv".into(),
        },
    );
    w.cmd(
        carol,
        Command::Decline {
            room: "#priv".into(),
        },
    );
    let events = w.take(bob);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Joined { room: RoomItem { room, .. } } if room == "#priv")),
        "{events:?}"
    );
    // Declined: no way in without a new invitation.
    join(&mut w, carol, "#priv");
    assert_eq!(errors(&w.take(carol)), ["no_such_room"]);
}

#[test]
fn moderators_delete_anyones_message_members_cannot() {
    let mut w = World::new(Limits::default());
    let (alice, bob, carol) = (w.login("alice"), w.login("bob"), w.login("carol"));
    create(&mut w, alice, "#design", Visibility::Public);
    join(&mut w, bob, "#design");
    join(&mut w, carol, "#design");
    promote(&mut w, alice, "#design", "carol");
    w.send(alice, "#design", "from the owner");
    let owners = last_sent(&w.take(alice));
    w.send(bob, "#design", "spam");
    let spam = last_sent(&w.take(bob));
    w.take(carol);

    // A member cannot delete someone else's message for everyone.
    w.cmd(
        bob,
        Command::Delete {
            id: owners,
            scope: DeleteScope::Everyone,
        },
    );
    assert_eq!(errors(&w.take(bob)), ["not_author"]);
    // A moderator can, long after the author's window.
    w.now += 48 * 3600 * 1000;
    w.cmd(
        carol,
        Command::Delete {
            id: spam,
            scope: DeleteScope::Everyone,
        },
    );
    for c in [alice, bob, carol] {
        w.cmd(c, Command::Sync);
        let events = w.take(c);
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Deleted { id, scope: DeleteScope::Everyone, .. } if *id == spam
            )),
            "{events:?}"
        );
    }
    // Demoted, she cannot any more.
    demote(&mut w, alice, "#design", "carol");
    w.cmd(
        carol,
        Command::Delete {
            id: owners,
            scope: DeleteScope::Everyone,
        },
    );
    assert_eq!(errors(&w.take(carol)), ["not_author"]);
}

#[test]
fn the_owner_leaving_hands_over_and_the_last_member_leaving_closes_the_room() {
    let mut w = World::new(Limits::default());
    let (alice, bob, carol) = (w.login("alice"), w.login("bob"), w.login("carol"));
    create(&mut w, alice, "#design", Visibility::Public);
    join(&mut w, bob, "#design");
    join(&mut w, carol, "#design");
    promote(&mut w, alice, "#design", "carol");
    leave(&mut w, alice, "#design");
    let events = w.take(carol);
    // The moderator, not the longer-serving member, becomes owner.
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Member { user, change: MemberChange::Owner, .. } if user == "carol"
        )),
        "{events:?}"
    );
    assert_eq!(
        w.clients[&carol].rooms()["#design"].role,
        Some(crate::app::rooms::Role::Owner)
    );
    // The new owner's rights are checked like any owner's.
    promote(&mut w, carol, "#design", "bob");
    assert!(errors(&w.take(carol)).is_empty());
    assert!(!w.streams(alice).contains(&"#design".to_owned()));

    leave(&mut w, bob, "#design");
    let closing = w.trace.len();
    leave(&mut w, carol, "#design");
    assert!(
        w.trace[closing..]
            .iter()
            .any(|o| matches!(o, Output::Log(super::super::server::ServerLog::RoomClosed { room }) if room == "#design")),
    );
    for c in [alice, bob, carol] {
        w.cmd(
            c,
            Command::Rooms {
                filter: String::new(),
            },
        );
        w.cmd(c, Command::Sync);
        let events = w.take(c);
        assert!(
            events
                .iter()
                .all(|e| !matches!(e, Event::Rooms { rooms } if !rooms.is_empty())),
            "{events:?}"
        );
        assert!(!w.streams(c).contains(&"#design".to_owned()));
    }
    // The name is free again; the new room starts its own history.
    create(&mut w, bob, "#design", Visibility::Public);
    w.send(bob, "#design", "fresh start");
    join(&mut w, carol, "#design");
    w.cmd(carol, Command::Sync);
    assert_eq!(texts(&w.take(carol)), ["fresh start"]);
}

#[test]
fn the_operator_closes_a_room_and_announces_only_to_its_members() {
    let mut w = World::new(Limits::default());
    let (alice, bob, eve) = (w.login("alice"), w.login("bob"), w.login("eve"));
    create(&mut w, alice, "#design", Visibility::Private);
    invite(&mut w, alice, "#design", "bob");
    w.cmd(
        bob,
        Command::Accept {
            room: "#design".into(),
        },
    );
    w.take(eve);
    w.server_in(Input::Announce {
        room: Some("#design".into()),
        text: "maintenance tonight".into(),
        cmid: crate::app::ids::ClientMsgId([7; 16]),
    });
    for c in [alice, bob] {
        w.cmd(c, Command::Sync);
        assert_eq!(texts(&w.take(c)), ["maintenance tonight"]);
    }
    w.cmd(eve, Command::Sync);
    assert_eq!(w.take(eve), [Event::Sync]);

    w.server_in(Input::CloseRoom {
        room: "#design".into(),
    });
    for c in [alice, bob] {
        w.cmd(c, Command::Sync);
        let events = w.take(c);
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Left {
                    reason: MemberChange::Left,
                    ..
                }
            )),
            "{events:?}"
        );
        assert!(!w.streams(c).contains(&"#design".to_owned()));
        assert!(w.clients[&c].rooms().is_empty());
    }
    w.send(alice, "#design", "anyone?");
    assert_eq!(errors(&w.take(alice)), ["no_such_room"]);
}

#[test]
fn leaving_while_the_room_stream_opens_or_waits_for_a_slot_ends_cleanly() {
    let mut w = World::new(Limits::default());
    let (alice, bob) = (w.login("alice"), w.login("bob"));
    create(&mut w, alice, "#design", Visibility::Public);
    // Bob's open of the room is slow: he leaves before its catch-up arrives.
    w.hold = Some((bob, room("#design")));
    join(&mut w, bob, "#design");
    w.cmd(bob, Command::Sync);
    leave(&mut w, bob, "#design");
    w.release();
    w.cmd(bob, Command::Sync);
    let events = w.take(bob);
    assert_eq!(
        events.iter().filter(|e| **e == Event::Sync).count(),
        2,
        "both barriers complete: {events:?}"
    );
    assert!(errors(&events).is_empty(), "{events:?}");
    assert!(!w.streams(bob).contains(&"#design".to_owned()));
    // And comes back.
    w.send(alice, "#design", "hello");
    join(&mut w, bob, "#design");
    w.cmd(bob, Command::Sync);
    assert_eq!(texts(&w.take(bob)), ["hello"]);

    // Every slot taken: the room waits for one, then is left before it opens.
    let mut w = World::new(Limits::default());
    let (alice, bob) = (w.login("alice"), w.login("bob"));
    w.clients.get_mut(&bob).unwrap().set_max_streams(1);
    create(&mut w, alice, "#design", Visibility::Public);
    w.send(bob, "@alice", "busy");
    join(&mut w, bob, "#design");
    leave(&mut w, bob, "#design");
    w.cmd(bob, Command::Sync);
    let events = w.take(bob);
    assert_eq!(events.last(), Some(&Event::Sync), "{events:?}");
    assert!(errors(&events).is_empty(), "{events:?}");
}

#[test]
fn room_commands_need_rights_checked_on_the_server() {
    let mut w = World::new(Limits::default());
    let (alice, bob, carol) = (w.login("alice"), w.login("bob"), w.login("carol"));
    create(&mut w, alice, "#design", Visibility::Public);
    join(&mut w, bob, "#design");
    join(&mut w, carol, "#design");
    w.take(bob);
    // Raw requests, as a modified client would send them.
    for up in [
        RoomUp::Topic {
            room: "#design".into(),
            topic: "mine".into(),
        },
        RoomUp::Moderate {
            room: "#design".into(),
            user: "carol".into(),
            action: crate::app::protocol::Moderation::Kick,
        },
        RoomUp::Moderate {
            room: "#design".into(),
            user: "alice".into(),
            action: crate::app::protocol::Moderation::Ban,
        },
        RoomUp::Moderate {
            room: "#design".into(),
            user: "bob".into(),
            action: crate::app::protocol::Moderation::Promote,
        },
    ] {
        let up = ControlUp::Room(up);
        w.server_in(Input::Control { conn: bob, up });
    }
    let events = w.take(bob);
    assert_eq!(errors(&events), ["not_allowed"; 4], "{events:?}");
    w.cmd(
        carol,
        Command::Members {
            room: "#design".into(),
        },
    );
    let events = w.take(carol);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Members { members, .. } if members.len() == 3)),
        "{events:?}"
    );
}

#[test]
fn an_idle_close_crossing_a_kick_still_ends_and_barriers_complete() {
    let mut w = World::new(Limits::default());
    let (alice, bob) = (w.login("alice"), w.login("bob"));
    w.clients
        .get_mut(&bob)
        .unwrap()
        .set_stream_idle(std::time::Duration::from_secs(1));
    create(&mut w, alice, "#design", Visibility::Public);
    join(&mut w, bob, "#design");
    w.cmd(bob, Command::Sync);
    assert!(w.streams(bob).contains(&"#design".to_owned()));
    w.take(bob);
    // Bob's client closes the quiet stream; the server's `Closed` is still queued when the
    // kick revokes the room's frames: it is written all the same.
    w.hold = Some((bob, room("#design")));
    w.tick(bob, 10_000);
    w.send(alice, "#design", "queued");
    kick(&mut w, alice, "#design", "bob");
    w.cmd(bob, Command::Sync);
    w.release();
    w.cmd(bob, Command::Sync);
    let events = w.take(bob);
    assert_eq!(
        events.iter().filter(|e| **e == Event::Sync).count(),
        2,
        "{events:?}"
    );
    assert!(texts(&events).is_empty(), "{events:?}");
    assert!(!w.streams(bob).contains(&"#design".to_owned()));
    // And he may come back.
    join(&mut w, bob, "#design");
    w.cmd(bob, Command::Sync);
    assert_eq!(texts(&w.take(bob)), ["queued"]);
}
