//! Cluster mode in the core: what a node publishes, and what it does with what the other
//! nodes publish. The other node is played by hand: its writes go straight into the
//! (shared) store, its messages in as [`Input::Cluster`].

use super::*;
use crate::app::ids::ClientMsgId;
use crate::app::server::ClusterMsg;
use crate::app::store::Store;

/// The other node's instance id.
const OTHER: u64 = 0xbeef;

fn clustered() -> World {
    let mut w = World::new(Limits::default());
    let hello = w.server.enable_cluster();
    assert_eq!(hello, vec![Output::Publish(ClusterMsg::Hello)]);
    w
}

fn published(w: &World) -> Vec<ClusterMsg> {
    w.trace
        .iter()
        .filter_map(|o| match o {
            Output::Publish(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// The other node stores a message in `#general` (as its hub would, in the shared store)
/// and returns the event it would publish.
fn remote_message(w: &mut World, from: &str, text: &str, n: u8) -> ClusterMsg {
    let (event, _) = w
        .server
        .store_mut()
        .insert_message(
            &ConvId::General,
            from,
            ClientMsgId([n; 16]),
            text.as_bytes(),
            1,
        )
        .unwrap();
    ClusterMsg::Event {
        conv: ConvId::General,
        event,
    }
}

#[test]
fn a_single_node_publishes_nothing() {
    let mut w = World::new(Limits::default());
    let (a, _b) = (w.login("alice"), w.login("bob"));
    w.send(a, "#general", "hello");
    assert!(published(&w).is_empty());
}

#[test]
fn committed_events_presence_and_failed_logins_are_published() {
    let mut w = clustered();
    let a = w.login("alice");
    w.send(a, "#general", "hello");
    w.login_from("alice", "wrong password", SavedState::default(), 7);
    let p = published(&w);
    assert!(p.contains(&ClusterMsg::Presence {
        user: "alice".into(),
        name: "alice".into(),
        online: true,
    }));
    assert!(
        p.iter().any(
            |m| matches!(m, ClusterMsg::Event { conv: ConvId::General, event }
            if event.seq == 1 && event.sender == "alice")
        ),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| matches!(m, ClusterMsg::LoginFailed { account, .. } if account == "alice"))
    );
}

#[test]
fn another_nodes_events_reach_this_nodes_members_once() {
    let mut w = clustered();
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.send(a, "#general", "local");
    w.take(a);
    w.take(b);
    let m = remote_message(&mut w, "zed", "from node 2", 2);
    w.server_in(Input::Cluster {
        from: OTHER,
        msg: m.clone(),
    });
    assert_eq!(w.messages(a), vec![msg("#general", "zed", "from node 2")]);
    assert_eq!(w.messages(b), vec![msg("#general", "zed", "from node 2")]);
    // A duplicate (NATS may redeliver after a reconnect) is shown once.
    w.server_in(Input::Cluster {
        from: OTHER,
        msg: m,
    });
    assert!(w.messages(a).is_empty());
    // Relayed, not published again.
    let events = published(&w)
        .into_iter()
        .filter(|m| matches!(m, ClusterMsg::Event { .. }))
        .count();
    assert_eq!(events, 1, "only the local message is published");
}

#[test]
fn after_the_link_was_down_every_open_conversation_catches_up() {
    let mut w = clustered();
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.send(a, "#general", "before");
    w.take(a);
    assert_eq!(w.messages(b), vec![msg("#general", "alice", "before")]);
    // Two messages of the other node whose publishes were lost.
    remote_message(&mut w, "zed", "lost 1", 2);
    remote_message(&mut w, "zed", "lost 2", 3);
    assert!(w.messages(b).is_empty());
    w.server_in(Input::ClusterResync);
    assert_eq!(
        w.messages(b),
        vec![
            msg("#general", "zed", "lost 1"),
            msg("#general", "zed", "lost 2")
        ]
    );
    assert_eq!(
        w.messages(a),
        vec![
            msg("#general", "zed", "lost 1"),
            msg("#general", "zed", "lost 2")
        ]
    );
}

#[test]
fn presence_is_merged_across_nodes_and_a_silent_node_expires() {
    let mut w = clustered();
    let a = w.login("alice");
    w.take(a);
    let zed = |online| ClusterMsg::Presence {
        user: "zed".into(),
        name: "Zed".into(),
        online,
    };
    w.server_in(Input::Cluster {
        from: OTHER,
        msg: zed(true),
    });
    let presence = |evs: Vec<Event>| -> Vec<(String, bool)> {
        evs.into_iter()
            .filter_map(|e| match e {
                Event::Presence { user, online } => Some((user, online)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(presence(w.take(a)), vec![("Zed".into(), true)]);
    w.cmd(a, Command::Who);
    let who = w.take(a);
    assert!(
        who.iter()
            .any(|e| matches!(e, Event::Who { users } if users.contains(&"Zed".to_owned()))),
        "{who:?}"
    );
    // Zed also logs in here, then leaves here: still online on the other node, so alice
    // hears nothing.
    let z = w.login("zed");
    w.quit(z);
    assert!(presence(w.take(a)).is_empty());
    // The other node goes silent: after the expiry Zed is offline.
    w.now += crate::app::server::NODE_EXPIRY_MS + 1;
    w.server_in(Input::ClusterTick);
    assert_eq!(presence(w.take(a)), vec![("Zed".into(), false)]);
}

#[test]
fn a_delete_for_me_on_another_node_reaches_this_nodes_sessions() {
    let mut w = clustered();
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.take(b);
    w.send(b, "#general", "hide me");
    w.take(a);
    let id = match &w.take(b)[..] {
        [Event::Sent { id, .. }] => *id,
        other => panic!("{other:?}"),
    };
    // The other node stored the hide and says so.
    let conv = ConvId::General;
    let hseq = w
        .server
        .store_mut()
        .hide("alice", &conv, id)
        .unwrap()
        .unwrap();
    let hidden = crate::app::protocol::Hidden { conv, id, hseq };
    w.server_in(Input::Cluster {
        from: OTHER,
        msg: ClusterMsg::Hidden {
            user: "alice".into(),
            hidden,
        },
    });
    let evs = w.take(a);
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::Deleted { id: i, .. } if *i == id)),
        "{evs:?}"
    );
    assert!(w.take(b).is_empty());
}

#[test]
fn a_room_just_created_on_another_node_can_be_joined_before_its_announcement() {
    use crate::app::rooms::{Room, RoomName, Visibility};
    let mut w = clustered();
    let a = w.login("alice");
    w.take(a);
    // The other node created #fresh; its announcement has not arrived.
    let room = Room::new(
        RoomName::parse_new("#fresh").unwrap(),
        String::new(),
        Visibility::Public,
        "zed",
    );
    assert!(w.server.store_mut().create_room(&room).unwrap());
    w.cmd(
        a,
        Command::Join {
            room: "#fresh".into(),
        },
    );
    let evs = w.take(a);
    assert!(errors(&evs).is_empty(), "{evs:?}");
    assert!(
        evs.iter().any(|e| matches!(e, Event::Joined { .. })),
        "{evs:?}"
    );
    assert!(
        published(&w)
            .iter()
            .any(|m| matches!(m, ClusterMsg::Room { room, .. } if room == "#fresh"))
    );
}

/// What a session was told of read state: (conv, upto) of each `read`, (conv, user,
/// upto) of each `seen`, (conv, user) of each `typing`.
type ReadState = (
    Vec<(String, u64)>,
    Vec<(String, String, u64)>,
    Vec<(String, String)>,
);

/// The read state among `events`.
fn read_state(events: &[Event]) -> ReadState {
    let (mut reads, mut seens, mut typings) = (Vec::new(), Vec::new(), Vec::new());
    for e in events {
        match e {
            Event::Read { conv, upto } => reads.push((conv.clone(), *upto)),
            Event::Seen { conv, user, upto } => seens.push((conv.clone(), user.clone(), *upto)),
            Event::Typing { conv, user } => typings.push((conv.clone(), user.clone())),
            _ => {}
        }
    }
    (reads, seens, typings)
}

/// The other node moved `user`'s marker in `conv` in the shared store; its message.
fn remote_read(w: &mut World, user: &str, conv: &ConvId, upto: u64) -> ClusterMsg {
    let upto = w
        .server
        .store_mut()
        .advance_read(user, conv, upto)
        .unwrap()
        .expect("the marker moves");
    ClusterMsg::Read {
        user: user.into(),
        name: user.into(),
        conv: conv.clone(),
        upto,
    }
}

#[test]
fn a_local_read_and_receipts_change_are_published_as_durable() {
    let mut w = clustered();
    let (alice, bob) = (w.login("alice"), w.login("bob"));
    w.send(bob, "@alice", "hi");
    w.take(alice);
    w.cmd(
        alice,
        Command::Read {
            conv: "@bob".into(),
            upto: None,
        },
    );
    let dm = ConvId::Direct("alice".into(), "bob".into());
    let read = ClusterMsg::Read {
        user: "alice".into(),
        name: "alice".into(),
        conv: dm.clone(),
        upto: 1,
    };
    assert!(published(&w).contains(&read), "{:?}", published(&w));
    assert!(
        read.is_durable(),
        "dropped with a batch whose commit failed"
    );
    // A read that moves nothing is not news anywhere.
    let before = published(&w).len();
    w.cmd(
        alice,
        Command::Read {
            conv: "@bob".into(),
            upto: Some(1),
        },
    );
    assert_eq!(published(&w).len(), before);
    w.cmd(alice, Command::Receipts { on: false });
    let off = ClusterMsg::Receipts {
        user: "alice".into(),
        on: false,
    };
    assert!(published(&w).contains(&off));
    assert!(off.is_durable());
}

#[test]
fn a_read_on_another_node_gives_read_and_seen_here_by_the_same_rules() {
    let mut w = clustered();
    // alice reads on the other node; here she has a session, and so do bob and carol.
    let (alice, bob, carol) = (w.login("alice"), w.login("bob"), w.login("carol"));
    w.send(bob, "@alice", "one");
    for c in [alice, bob, carol] {
        w.take(c);
    }
    let dm = ConvId::Direct("alice".into(), "bob".into());
    let m = remote_read(&mut w, "alice", &dm, 1);
    w.server_in(Input::Cluster {
        from: OTHER,
        msg: m,
    });
    let (reads, seens, _) = read_state(&w.take(alice));
    assert_eq!(reads, [("@bob".to_owned(), 1)], "her session here follows");
    assert!(seens.is_empty());
    let (reads, seens, _) = read_state(&w.take(bob));
    assert!(reads.is_empty());
    assert_eq!(seens, [("@alice".to_owned(), "alice".to_owned(), 1)]);
    assert!(w.take(carol).is_empty(), "not a member");
    assert!(
        !published(&w)
            .iter()
            .any(|m| matches!(m, ClusterMsg::Read { .. })),
        "relayed, not published again"
    );

    // bob turns receipts off: he gets no seen (and the other way round, none is sent).
    w.cmd(bob, Command::Receipts { on: false });
    w.take(bob);
    w.send(bob, "@alice", "two");
    w.take(alice);
    w.take(bob);
    let m = remote_read(&mut w, "alice", &dm, 2);
    w.server_in(Input::Cluster {
        from: OTHER,
        msg: m,
    });
    assert_eq!(read_state(&w.take(alice)).0, [("@bob".to_owned(), 2)]);
    assert!(w.take(bob).is_empty(), "receipts off: no seen");

    // A room of more than MAX_RECEIPT_MEMBERS members: no seen receipts at all.
    let others: Vec<ConnId> = (0..crate::app::server::MAX_RECEIPT_MEMBERS)
        .map(|i| w.login(&format!("user{i}")))
        .collect();
    w.cmd(
        carol,
        Command::CreateRoom {
            room: "#big".into(),
            topic: String::new(),
            visibility: crate::app::protocol::Visibility::Public,
        },
    );
    for c in &others {
        w.cmd(
            *c,
            Command::Join {
                room: "#big".into(),
            },
        );
    }
    w.send(others[0], "#big", "hello all");
    for c in others.iter().chain([&alice, &bob, &carol]) {
        w.take(*c);
    }
    let big = ConvId::Room("#big".into());
    let m = remote_read(&mut w, "user1", &big, 1);
    w.server_in(Input::Cluster {
        from: OTHER,
        msg: m,
    });
    assert_eq!(read_state(&w.take(others[1])).0, [("#big".to_owned(), 1)]);
    for c in [others[0], carol] {
        assert!(read_state(&w.take(c)).1.is_empty(), "no seen in a big room");
    }
}

#[test]
fn typing_and_the_receipts_setting_cross_nodes() {
    let mut w = clustered();
    let (a1, a2, bob, carol) = (
        w.login("alice"),
        w.login("alice"),
        w.login("bob"),
        w.login("carol"),
    );
    for c in [a1, a2, bob, carol] {
        w.take(c);
    }
    // Typed here: told here at once and published, not durable (nothing is stored).
    w.cmd(
        bob,
        Command::Typing {
            conv: "@alice".into(),
        },
    );
    let dm = ConvId::Direct("alice".into(), "bob".into());
    let typing = ClusterMsg::Typing {
        user: "bob".into(),
        name: "bob".into(),
        conv: dm.clone(),
    };
    assert_eq!(
        published(&w).iter().filter(|m| **m == typing).count(),
        1,
        "{:?}",
        published(&w)
    );
    assert!(!typing.is_durable());
    for a in [a1, a2] {
        assert_eq!(
            read_state(&w.take(a)).2,
            [("@bob".to_owned(), "bob".to_owned())]
        );
    }
    // The gate of this node holds the next notice back: not published either.
    w.now += 1;
    w.cmd(
        bob,
        Command::Typing {
            conv: "@alice".into(),
        },
    );
    assert_eq!(published(&w).iter().filter(|m| **m == typing).count(), 1);
    assert!(w.take(a1).is_empty());

    // Typed on the other node: both of alice's sessions here hear it, carol does not,
    // and this node does not gate it again (the sending node did).
    w.take(bob);
    for _ in 0..2 {
        w.server_in(Input::Cluster {
            from: OTHER,
            msg: typing.clone(),
        });
    }
    for a in [a1, a2] {
        assert_eq!(read_state(&w.take(a)).2.len(), 2);
    }
    assert!(w.take(bob).is_empty(), "not told of their own typing");
    assert!(w.take(carol).is_empty());

    // alice turns receipts off on the other node: her sessions here hear it.
    w.server.store_mut().set_receipts("alice", false).unwrap();
    w.server_in(Input::Cluster {
        from: OTHER,
        msg: ClusterMsg::Receipts {
            user: "alice".into(),
            on: false,
        },
    });
    for a in [a1, a2] {
        assert_eq!(w.take(a), [Event::Receipts { on: false }]);
    }
    assert!(w.take(bob).is_empty());
}
