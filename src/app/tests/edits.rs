//! Edits, replies and reactions through both cores, in memory: who may edit and when,
//! exactly-once across a lost acknowledgement, an edit racing a delete, reply targets,
//! reaction counts, and history showing the same state to a member who joins later.

use super::{World, errors};
use crate::app::client::{Command, Event, HistoryItem, ReactionCount};
use crate::app::ids::{ConnId, MsgId};
use crate::app::limits::Limits;
use crate::app::protocol::{DeleteScope, EventKind};
use crate::app::store::Store;

fn edit(w: &mut World, conn: ConnId, id: MsgId, text: &str) {
    w.cmd(
        conn,
        Command::Edit {
            id,
            text: text.into(),
        },
    );
}

fn react(w: &mut World, conn: ConnId, id: MsgId, emoji: &str, on: bool) {
    let emoji = emoji.to_owned();
    let cmd = match on {
        true => Command::React { id, emoji },
        false => Command::Unreact { id, emoji },
    };
    w.cmd(conn, cmd);
}

/// Sends and returns the new message's id.
fn sent(w: &mut World, conn: ConnId, to: &str, text: &str, reply_to: Option<MsgId>) -> MsgId {
    let cmd = Command::Send {
        to: to.into(),
        text: text.into(),
        reply_to,
    };
    w.cmd(conn, cmd);
    let ev = w.take(conn);
    ev.iter()
        .find_map(|e| match e {
            Event::Sent { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap_or_else(|| panic!("not sent: {ev:?}"))
}

fn history(w: &mut World, conn: ConnId, conv: &str) -> Vec<HistoryItem> {
    let cmd = Command::History {
        conv: conv.into(),
        before: None,
        limit: None,
    };
    w.cmd(conn, cmd);
    let ev = w.take(conn);
    ev.into_iter()
        .find_map(|e| match e {
            Event::History { messages, .. } => Some(messages),
            _ => None,
        })
        .expect("a history page")
}

fn edited(events: &[Event]) -> Vec<(MsgId, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Edited { id, text, .. } => Some((*id, text.clone())),
            _ => None,
        })
        .collect()
}

fn reactions(events: &[Event]) -> Vec<(String, String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Reaction {
                user, emoji, on, ..
            } => Some((user.clone(), emoji.clone(), *on)),
            _ => None,
        })
        .collect()
}

fn setup() -> (World, ConnId, ConnId) {
    let mut w = World::new(Limits::default());
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.take(a);
    w.take(b);
    (w, a, b)
}

#[test]
fn an_edit_reaches_every_member_and_history_shows_the_current_text() {
    let (mut w, a, b) = setup();
    let id = sent(&mut w, a, "#general", "helo", None);
    w.take(b);
    edit(&mut w, a, id, "hello");
    assert_eq!(edited(&w.take(a)), vec![(id, "hello".to_owned())]);
    assert_eq!(edited(&w.take(b)), vec![(id, "hello".to_owned())]);
    // A second edit: the store keeps the newest text only.
    edit(&mut w, a, id, "hello!");
    assert_eq!(edited(&w.take(b)), vec![(id, "hello!".to_owned())]);
    let stored = w.server.store_mut().event(id).unwrap().unwrap();
    assert_eq!(
        stored.event.kind,
        EventKind::Edited {
            body: b"hello!".to_vec()
        }
    );
    // Someone who comes later sees the same message, marked edited.
    let c = w.login("carol");
    w.take(c);
    let page = history(&mut w, c, "#general");
    assert_eq!(page.len(), 1, "{page:?}");
    assert_eq!(page[0].text.as_deref(), Some("hello!"));
    assert!(page[0].edited);
}

#[test]
fn an_offline_member_gets_the_edit_on_catch_up() {
    let (mut w, a, b) = setup();
    let id = sent(&mut w, a, "#general", "draft", None);
    w.take(b);
    let saved = w.quit(b);
    edit(&mut w, a, id, "final");
    w.take(a);
    let b2 = w.login_from("bob", "password123", saved, 1);
    w.cmd(b2, Command::Sync);
    let ev = w.take(b2);
    assert_eq!(edited(&ev), vec![(id, "final".to_owned())], "{ev:?}");
    assert!(
        !ev.iter().any(|e| matches!(e, Event::Message { .. })),
        "{ev:?}"
    );
}

#[test]
fn only_the_author_edits_within_the_window_and_never_a_deleted_message() {
    let (mut w, a, b) = setup();
    let id = sent(&mut w, a, "#general", "mine", None);
    w.take(b);
    edit(&mut w, b, id, "yours now");
    assert_eq!(errors(&w.take(b)), vec!["not_author"]);
    edit(&mut w, a, id, "");
    assert_eq!(errors(&w.take(a)), vec!["bad_command"]);
    edit(&mut w, a, 999, "no such");
    assert_eq!(errors(&w.take(a)), vec!["not_found"]);
    w.now += Limits::default().delete_window_secs * 1000 + 1;
    edit(&mut w, a, id, "too late");
    assert_eq!(errors(&w.take(a)), vec!["delete_window_expired"]);
    let id2 = sent(&mut w, a, "#general", "gone soon", None);
    w.cmd(
        a,
        Command::Delete {
            id: id2,
            scope: DeleteScope::Everyone,
        },
    );
    w.take(a);
    edit(&mut w, a, id2, "back?");
    assert_eq!(errors(&w.take(a)), vec!["not_found"]);
    // Nothing changed for bob.
    assert!(edited(&w.take(b)).is_empty());
    let page = history(&mut w, b, "#general");
    assert_eq!(page[0].text.as_deref(), Some("mine"));
    assert!(!page[0].edited);
    assert_eq!(page[1].text, None);
}

#[test]
fn a_resent_edit_and_reaction_apply_once() {
    let (mut w, a, b) = setup();
    let id = sent(&mut w, a, "#general", "v1", None);
    w.take(b);
    // The acks are lost with alice's connection; her outbox resends with the same ids.
    w.drop_to = Some(a);
    edit(&mut w, a, id, "v2");
    react(&mut w, a, id, "👍", true);
    w.drop_to = None;
    assert_eq!(w.clients[&a].outbox_len(), 2);
    w.disconnect(a);
    let a2 = w.relogin(a, "alice");
    w.cmd(a2, Command::Sync);
    let ev = w.take(a2);
    assert_eq!(edited(&ev), vec![(id, "v2".to_owned())], "{ev:?}");
    assert_eq!(reactions(&ev), vec![("alice".into(), "👍".into(), true)]);
    assert_eq!(w.clients[&a2].outbox_len(), 0);
    let ev = w.take(b);
    assert_eq!(edited(&ev), vec![(id, "v2".to_owned())], "{ev:?}");
    assert_eq!(reactions(&ev), vec![("alice".into(), "👍".into(), true)]);
    // One edit event and one reaction event in the conversation.
    let page = history(&mut w, b, "#general");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].reactions.len(), 1);
    assert_eq!(page[0].reactions[0].count, 1);
}

#[test]
fn an_edit_racing_a_delete_ends_deleted() {
    let (mut w, a, b) = setup();
    let id = sent(&mut w, a, "#general", "secret draft", None);
    w.take(b);
    // Edit first, then delete: the delete erases the edited text and the edit's copy.
    edit(&mut w, a, id, "secret edit");
    w.cmd(
        a,
        Command::Delete {
            id,
            scope: DeleteScope::Everyone,
        },
    );
    let ev = w.take(b);
    let last = ev.last().expect("events");
    assert!(
        matches!(last, Event::Deleted { id: d, .. } if *d == id),
        "{ev:?}"
    );
    let c = w.login("carol");
    w.take(c);
    let page = history(&mut w, c, "#general");
    assert_eq!(page[0].text, None);
    // No body left anywhere in the store.
    let store = w.server.store_mut();
    for eid in 1..=10 {
        if let Some(s) = store.event(eid).unwrap() {
            let mut kind = s.event.kind.clone();
            let body = kind.body_mut().map(|b| b.clone()).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&body).contains("secret"),
                "{:?}",
                s.event
            );
        }
    }
}

#[test]
fn replies_carry_their_target_and_stay_replies_when_edited() {
    let (mut w, a, b) = setup();
    let id = sent(&mut w, a, "#general", "question?", None);
    w.take(b);
    let reply = sent(&mut w, b, "#general", "answer", Some(id));
    let ev = w.take(a);
    let got = ev.iter().find_map(|e| match e {
        Event::Message {
            id, reply_to, text, ..
        } => Some((*id, *reply_to, text.clone())),
        _ => None,
    });
    assert_eq!(got, Some((reply, Some(id), Some("answer".to_owned()))));
    edit(&mut w, b, reply, "better answer");
    assert_eq!(edited(&w.take(a)), vec![(reply, "better answer".into())]);
    let page = history(&mut w, a, "#general");
    assert_eq!(page[1].reply_to, Some(id));
    assert_eq!(page[1].text.as_deref(), Some("better answer"));
    // A reply to an unknown message or to another conversation's is refused at once.
    let cmd = |reply_to| Command::Send {
        to: "#general".into(),
        text: "x".into(),
        reply_to: Some(reply_to),
    };
    w.cmd(a, cmd(4242));
    assert_eq!(errors(&w.take(a)), vec!["not_found"]);
    let dm = sent(&mut w, a, "@bob", "psst", None);
    w.cmd(a, cmd(dm));
    assert_eq!(errors(&w.take(a)), vec!["bad_command"]);
}

#[test]
fn reactions_one_of_each_per_user_with_counts_in_history() {
    let (mut w, a, b) = setup();
    let id = sent(&mut w, a, "#general", "party", None);
    w.take(b);
    react(&mut w, a, id, "👍", true);
    react(&mut w, b, id, "👍", true);
    react(&mut w, a, id, "🎉", true);
    assert_eq!(
        reactions(&w.take(b)),
        vec![
            ("alice".into(), "👍".into(), true),
            ("bob".into(), "👍".into(), true),
            ("alice".into(), "🎉".into(), true)
        ]
    );
    w.take(a);
    // The same emoji twice is refused; taking back one never given too.
    react(&mut w, a, id, "👍", true);
    assert_eq!(errors(&w.take(a)), vec!["bad_request"]);
    react(&mut w, b, id, "🎉", false);
    assert_eq!(errors(&w.take(b)), vec!["not_found"]);
    // Bad emoji never leave the client.
    for bad in ["", "two words", "\u{7}", &"x".repeat(40)] {
        react(&mut w, a, id, bad, true);
        assert_eq!(errors(&w.take(a)), vec!["bad_command"], "{bad:?}");
    }
    react(&mut w, a, id, "👍", false);
    assert_eq!(
        reactions(&w.take(b)),
        vec![("alice".into(), "👍".into(), false)]
    );
    let c = w.login("carol");
    w.take(c);
    let page = history(&mut w, c, "#general");
    let count = |emoji: &str, users: &[&str]| ReactionCount {
        emoji: emoji.into(),
        count: users.len(),
        users: users.iter().map(|u| u.to_string()).collect(),
    };
    assert_eq!(
        page[0].reactions,
        vec![count("🎉", &["alice"]), count("👍", &["bob"])]
    );
    // Reacting again after taking it back works.
    react(&mut w, a, id, "👍", true);
    assert!(errors(&w.take(a)).is_empty());
    let page = history(&mut w, c, "#general");
    assert_eq!(page[0].reactions[1], count("👍", &["alice", "bob"]));
}

#[test]
fn a_file_message_is_not_edited_and_no_text_becomes_one() {
    let (mut w, a, b) = setup();
    let info = crate::app::files::FileInfo {
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
        .send_file_message(crate::app::ids::ConvId::General, &info);
    w.client_out(a, outs);
    let file = w
        .take(a)
        .iter()
        .find_map(|e| match e {
            Event::Sent { id, .. } => Some(*id),
            _ => None,
        })
        .expect("the file message is stored");
    edit(&mut w, a, file, "not a file");
    assert_eq!(errors(&w.take(a)), vec!["bad_command"]);
    let id = sent(&mut w, a, "#general", "plain", None);
    let marker = format!("{}{{}}", crate::app::files::MARKER);
    edit(&mut w, a, id, &marker);
    assert_eq!(errors(&w.take(a)), vec!["bad_command"]);
    assert!(edited(&w.take(b)).is_empty());
}

#[test]
fn the_server_refuses_a_reply_to_a_message_of_another_conversation() {
    use crate::app::edits::wrap_reply;
    use crate::app::ids::{ClientMsgId, ConvId};
    use crate::app::protocol::{ConvDown, ConvUp, ErrorCode};
    use crate::app::server::{Input, Output};
    let (mut w, a, b) = setup();
    let private = sent(&mut w, b, "@alice", "psst", None);
    w.take(a);
    // A client that skips its own check: the server reads #general and checks the target.
    let body = wrap_reply(Some(private), "x").into_bytes();
    let cmid = ClientMsgId([9; 16]);
    let up = ConvUp::Send { cmid, body };
    let outs = w.server.handle(
        Input::Conv {
            conn: a,
            conv: ConvId::General,
            up,
        },
        w.now,
    );
    assert!(
        outs.iter().any(|o| matches!(
            o,
            Output::Conv {
                down: ConvDown::Error {
                    code: ErrorCode::BadRequest,
                    cmid: Some(c),
                    ..
                },
                ..
            } if *c == cmid
        )),
        "{outs:?}"
    );
    assert!(!outs.iter().any(|o| matches!(
        o,
        Output::Conv {
            down: ConvDown::Ack { .. },
            ..
        }
    )));
}

/// In an MLS conversation an edit is checked for its epoch like a send: one made in an
/// epoch that a commit ended is refused with `stale_epoch` (the client encrypts it again),
/// one of the current epoch is stored, and an edit cannot carry a commit.
#[test]
fn an_mls_edit_of_an_ended_epoch_is_refused_like_a_send() {
    use crate::app::ids::{ClientMsgId, ConvId};
    use crate::app::mls::Device;
    use crate::app::protocol::{ConvDown, ConvUp, ErrorCode};
    use crate::app::server::{Input, Output};

    let mut w = World::new(Limits::default());
    let (a, b) = (w.login("alice"), w.login("bob"));
    w.take(b);
    let id = sent(&mut w, a, "@bob", "plain first", None);
    let dm = ConvId::Direct("alice".into(), "bob".into());

    let mut alice = Device::new("alice", "a1").unwrap();
    let mut bob = Device::new("bob", "b1").unwrap();
    alice.create_group(&dm.storage_key()).unwrap();
    // Made in epoch 0, before the commit below ends it.
    let stale = alice.encrypt(&dm.storage_key(), b"old epoch").unwrap();
    let kp = bob.key_package().unwrap();
    let commit = alice.add(&dm.storage_key(), &[kp]).unwrap();
    let up = |w: &mut World, up: ConvUp| -> Option<ConvDown> {
        let cmid = up.cmid();
        w.trace.clear();
        w.server_in(Input::Conv {
            conn: a,
            conv: dm.clone(),
            up,
        });
        w.trace.iter().find_map(|o| match o {
            Output::Conv { conn, down, .. } if *conn == a => match down {
                ConvDown::Ack { cmid: c, .. } | ConvDown::Error { cmid: Some(c), .. }
                    if Some(*c) == cmid =>
                {
                    Some(down.clone())
                }
                _ => None,
            },
            _ => None,
        })
    };
    let sent_commit = up(
        &mut w,
        ConvUp::Send {
            cmid: ClientMsgId([1; 16]),
            body: commit.encode(),
        },
    );
    assert!(
        matches!(sent_commit, Some(ConvDown::Ack { .. })),
        "{sent_commit:?}"
    );
    alice.commit_accepted(&dm.storage_key()).unwrap();

    let refused = up(
        &mut w,
        ConvUp::Edit {
            cmid: ClientMsgId([2; 16]),
            target: id,
            body: stale.encode(),
        },
    );
    assert!(
        matches!(
            refused,
            Some(ConvDown::Error {
                code: ErrorCode::StaleEpoch,
                ..
            })
        ),
        "{refused:?}"
    );

    let as_commit = alice.self_update(&dm.storage_key()).unwrap();
    let refused = up(
        &mut w,
        ConvUp::Edit {
            cmid: ClientMsgId([3; 16]),
            target: id,
            body: as_commit.encode(),
        },
    );
    assert!(
        matches!(
            refused,
            Some(ConvDown::Error {
                code: ErrorCode::BadRequest,
                ..
            })
        ),
        "{refused:?}"
    );
    alice.commit_refused(&dm.storage_key()).unwrap();

    let fresh = alice.encrypt(&dm.storage_key(), b"new epoch").unwrap();
    let stored = up(
        &mut w,
        ConvUp::Edit {
            cmid: ClientMsgId([2; 16]),
            target: id,
            body: fresh.encode(),
        },
    );
    assert!(matches!(stored, Some(ConvDown::Ack { .. })), "{stored:?}");
}
