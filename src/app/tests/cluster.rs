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
