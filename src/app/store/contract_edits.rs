//! The [`Store`] contract for edits and reactions (part of [`contract`](super::contract),
//! run by the same macro against every backend).

use super::{Reacted, ReactionChange, Store};
use crate::app::ids::{ClientMsgId, ConvId};
use crate::app::protocol::{ConvEvent, EventKind};

fn cmid(n: u8) -> ClientMsgId {
    ClientMsgId([n; 16])
}

fn post<S: Store>(s: &mut S, conv: &ConvId, sender: &str, n: u8, body: &[u8]) -> ConvEvent {
    s.insert_message(conv, sender, cmid(n), body, 1_000)
        .unwrap()
        .0
}

/// An edit replaces the stored text, keeps no earlier version (its older edit events are
/// emptied), is sequenced, is applied once per client id, and a delete erases it all.
pub fn edits_replace_the_text_once_and_keep_no_history<S: Store>(s: &mut S) {
    let general = ConvId::General;
    let m = post(s, &general, "alice", 1, b"first");
    let (e1, dup) = s
        .edit_message(m.id, "alice", cmid(2), b"second", 2_000)
        .unwrap();
    assert!(!dup);
    assert_eq!(e1.seq, m.seq + 1);
    assert_eq!(
        e1.kind,
        EventKind::Edit {
            target: m.id,
            body: b"second".to_vec()
        }
    );
    // A resend: the same event, nothing new.
    let (again, dup) = s
        .edit_message(m.id, "ALICE", cmid(2), b"second", 2_500)
        .unwrap();
    assert!(dup);
    assert_eq!(again, e1);
    assert_eq!(s.last_seq(&general).unwrap(), e1.seq);
    let (e2, _) = s
        .edit_message(m.id, "alice", cmid(3), b"third", 3_000)
        .unwrap();
    let stored = s.event(m.id).unwrap().unwrap();
    assert_eq!(
        stored.event.kind,
        EventKind::Edited {
            body: b"third".to_vec()
        }
    );
    assert_eq!(stored.event.cmid, m.cmid, "the message keeps its own id");
    let all = s.events_after(&general, 0, 100, "bob").unwrap();
    let bodies: Vec<&EventKind> = all.iter().map(|e| &e.kind).collect();
    assert_eq!(
        bodies,
        vec![
            &EventKind::Edited {
                body: b"third".to_vec()
            },
            &EventKind::Edit {
                target: m.id,
                body: Vec::new()
            },
            &EventKind::Edit {
                target: m.id,
                body: b"third".to_vec()
            },
        ]
    );
    assert_eq!(all[2].id, e2.id);
    // A delete for everyone erases the message and, with `erase_edits`, every copy.
    s.erase(m.id, cmid(9), 4_000).unwrap();
    s.erase_edits(m.id).unwrap();
    for e in s.events_after(&general, 0, 100, "bob").unwrap() {
        let mut kind = e.kind.clone();
        assert!(kind.body_mut().is_none_or(|b| b.is_empty()), "{e:?}");
    }
}

/// Reactions: one per user, message and key; sequenced; a resend returns the stored event;
/// a change that changes nothing stores nothing; the ones in force are listed per message.
pub fn reactions_are_one_per_key_and_listed_in_force<S: Store>(s: &mut S) {
    let conv = ConvId::Direct("alice".into(), "bob".into());
    let m = post(s, &conv, "alice", 1, b"sealed");
    let other = post(s, &conv, "bob", 2, b"sealed too");
    let react = |s: &mut S, user: &str, n: u8, key: &[u8], on: bool| {
        s.react(&ReactionChange {
            conv: &conv,
            target: m.id,
            user,
            cmid: cmid(n),
            key,
            on,
            body: b"sealed emoji",
            ts: 5_000,
        })
        .unwrap()
    };
    let Reacted::Applied(a) = react(s, "alice", 10, b"k1", true) else {
        panic!("a new reaction is stored");
    };
    assert_eq!(a.seq, other.seq + 1);
    assert_eq!(
        react(s, "alice", 10, b"k1", true),
        Reacted::Resent(a.clone())
    );
    assert_eq!(react(s, "alice", 11, b"k1", true), Reacted::Unchanged);
    assert_eq!(react(s, "alice", 12, b"k2", false), Reacted::Unchanged);
    let Reacted::Applied(b) = react(s, "bob", 13, b"k1", true) else {
        panic!("another user's reaction with the same key is stored");
    };
    let Reacted::Applied(c) = react(s, "alice", 14, b"k2", true) else {
        panic!("another key is stored");
    };
    assert_eq!(
        s.reactions(&conv, &[m.id, other.id]).unwrap(),
        vec![a.clone(), b.clone(), c.clone()]
    );
    let Reacted::Applied(off) = react(s, "alice", 15, b"k1", false) else {
        panic!("a removal is stored");
    };
    assert_eq!(
        off.kind,
        EventKind::Reaction {
            target: m.id,
            on: false,
            body: b"sealed emoji".to_vec()
        }
    );
    assert_eq!(s.reactions(&conv, &[m.id]).unwrap(), vec![b, c]);
    assert!(s.reactions(&conv, &[other.id]).unwrap().is_empty());
    assert!(s.reactions(&ConvId::General, &[m.id]).unwrap().is_empty());
    assert_eq!(s.last_seq(&conv).unwrap(), off.seq);
}
