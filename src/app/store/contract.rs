//! The [`Store`] contract: what every storage backend must do, written once.
//!
//! Each `pub fn` here takes a fresh, empty store and checks one promise of the trait
//! (sequence numbers, exactly-once, history pages, erasing, hiding, accounts, identity
//! keys). [`store_contract_tests!`](crate::store_contract_tests) turns them into one
//! `#[test]` per promise for a backend's constructor; `tests/store_contract.rs` runs it
//! against every implementation, so a new backend is one line there. Behind the
//! `test-util` feature.

pub use super::contract_edits::{
    edits_replace_the_text_once_and_keep_no_history, reactions_are_one_per_key_and_listed_in_force,
};
mod mls;
pub use mls::{mls_devices_key_packages_and_epochs, mls_last_resort_key_packages_and_claim_counts};
mod search;
pub use search::{
    search_matches_whole_words_newest_first, search_stays_in_scopes_and_skips_what_is_gone,
};

use super::{Store, StoredEvent, UserRecord};
use crate::app::ids::{ClientMsgId, ConvId};
use crate::app::protocol::{ConvEvent, EventKind};
use crate::app::rooms::{Change, Effect, Role, Room, RoomName, Visibility};

/// The private conversation of `alice` and `bob`.
fn alice_bob() -> ConvId {
    ConvId::Direct("alice".into(), "bob".into())
}

fn cmid(n: u8) -> ClientMsgId {
    ClientMsgId([n; 16])
}

/// Stores a new message (it must not be a resend) and returns it.
fn post<S: Store>(s: &mut S, conv: &ConvId, sender: &str, n: u8, body: &[u8]) -> ConvEvent {
    let (e, existed) = s
        .insert_message(conv, sender, cmid(n), body, 1_000 + u64::from(n))
        .unwrap();
    assert!(!existed, "a new client message id was taken for a resend");
    e
}

fn seqs(events: &[ConvEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// Accounts: unique by key and by look-alike skeleton; looked up by key.
pub fn accounts_are_unique_by_key_and_skeleton<S: Store>(s: &mut S) {
    assert_eq!(s.user("alice").unwrap(), None);
    assert!(s.create_user("Alice", "alice", "a1ice", "phc-1").unwrap());
    assert_eq!(
        s.user("alice").unwrap(),
        Some(UserRecord {
            name: "Alice".into(),
            phc: "phc-1".into()
        })
    );
    // Same key, or another key with the same skeleton: refused, the first one stays.
    assert!(!s.create_user("ALICE", "alice", "other", "phc-2").unwrap());
    assert!(!s.create_user("A1ice", "a1ice", "a1ice", "phc-3").unwrap());
    assert_eq!(s.user("alice").unwrap().unwrap().phc, "phc-1");
    assert_eq!(s.user("a1ice").unwrap(), None);
    // A skeleton is "taken" only by someone else.
    assert!(s.skeleton_taken("a1ice", "a1ice").unwrap());
    assert!(!s.skeleton_taken("a1ice", "alice").unwrap());
    assert!(!s.skeleton_taken("b0b", "bob").unwrap());
    assert!(s.create_user("bob", "bob", "b0b", "phc-4").unwrap());
}

/// Identity keys: none at first; setting returns the previous one.
pub fn identity_keys_are_replaced_and_the_old_one_returned<S: Store>(s: &mut S) {
    assert!(s.create_user("alice", "alice", "a1ice", "phc").unwrap());
    assert!(s.create_user("bob", "bob", "b0b", "phc").unwrap());
    assert_eq!(s.identity_key("alice").unwrap(), None);
    assert_eq!(s.set_identity_key("alice", [1; 32]).unwrap(), None);
    assert_eq!(s.identity_key("alice").unwrap(), Some([1; 32]));
    assert_eq!(s.set_identity_key("alice", [2; 32]).unwrap(), Some([1; 32]));
    assert_eq!(s.identity_key("alice").unwrap(), Some([2; 32]));
    assert_eq!(s.identity_key("bob").unwrap(), None);
}

/// Resumption tokens: found by hash once (a take removes it), bound to what was stored;
/// storing one drops the expired ones.
pub fn resume_tokens_work_once_and_expire<S: Store>(s: &mut S) {
    use crate::app::store::ResumeRecord;
    let rec = |user: &str, id: u8, expires_ms| ResumeRecord {
        user_key: user.to_owned(),
        identity_pub: [id; 32],
        expires_ms,
    };
    assert!(s.create_user("alice", "alice", "a1ice", "phc").unwrap());
    assert_eq!(s.take_resume_token(&[9; 32]).unwrap(), None);
    s.put_resume_token(&[1; 32], &rec("alice", 7, 1_000), 0)
        .unwrap();
    s.put_resume_token(&[2; 32], &rec("alice", 8, 5_000), 0)
        .unwrap();
    assert_eq!(
        s.take_resume_token(&[1; 32]).unwrap(),
        Some(rec("alice", 7, 1_000))
    );
    assert_eq!(s.take_resume_token(&[1; 32]).unwrap(), None, "single use");
    s.put_resume_token(&[3; 32], &rec("alice", 7, 9_000), 0)
        .unwrap();
    // At 6 s, token 2 (until 5 s) is expired and goes with the next store.
    s.put_resume_token(&[4; 32], &rec("alice", 9, 9_000), 6_000)
        .unwrap();
    assert_eq!(
        s.take_resume_token(&[2; 32]).unwrap(),
        None,
        "expired, dropped"
    );
    assert_eq!(
        s.take_resume_token(&[3; 32]).unwrap(),
        Some(rec("alice", 7, 9_000))
    );
    assert_eq!(
        s.take_resume_token(&[4; 32]).unwrap(),
        Some(rec("alice", 9, 9_000))
    );
}

/// Sequence numbers start at 1 and count up by one per conversation, independently;
/// message ids are unique across conversations.
pub fn sequences_are_per_conversation<S: Store>(s: &mut S) {
    let (g, d) = (ConvId::General, alice_bob());
    assert_eq!(s.last_seq(&g).unwrap(), 0);
    assert_eq!(s.last_seq(&d).unwrap(), 0);
    let g1 = post(s, &g, "alice", 1, b"g1");
    let d1 = post(s, &d, "alice", 2, b"d1");
    let g2 = post(s, &g, "bob", 3, b"g2");
    let d2 = post(s, &d, "bob", 4, b"d2");
    let g3 = post(s, &g, "carol", 5, b"g3");
    assert_eq!(seqs(&[g1.clone(), g2.clone(), g3.clone()]), [1, 2, 3]);
    assert_eq!(seqs(&[d1.clone(), d2.clone()]), [1, 2]);
    assert_eq!(s.last_seq(&g).unwrap(), 3);
    assert_eq!(s.last_seq(&d).unwrap(), 2);
    let mut ids: Vec<u64> = [&g1, &d1, &g2, &d2, &g3].iter().map(|e| e.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5, "message ids must be unique");
    // What was stored is what comes back, with its conversation.
    assert_eq!(g2.sender, "bob");
    assert_eq!(g2.cmid, cmid(3));
    assert_eq!(g2.ts, 1_003);
    assert_eq!(
        g2.kind,
        EventKind::Message {
            body: b"g2".to_vec()
        }
    );
    assert_eq!(
        s.event(d2.id).unwrap(),
        Some(StoredEvent {
            conv: d.clone(),
            event: d2
        })
    );
    assert_eq!(s.event(9_999).unwrap(), None);
}

/// Exactly-once: a resend with the same (sender, client message id) — the sender compared
/// case-insensitively — returns the original event and stores nothing; another sender may
/// use the same client message id.
pub fn a_resend_returns_the_original<S: Store>(s: &mut S) {
    let g = ConvId::General;
    let first = post(s, &g, "Alice", 1, b"hi");
    assert_eq!(first.sender, "Alice");
    for (sender, body, ts) in [("Alice", &b"hi"[..], 1_001), ("alice", b"changed", 99)] {
        let (again, existed) = s.insert_message(&g, sender, cmid(1), body, ts).unwrap();
        assert!(existed);
        assert_eq!(again, first);
    }
    assert_eq!(s.last_seq(&g).unwrap(), 1);
    let bobs = post(s, &g, "bob", 1, b"yo");
    assert_eq!(bobs.seq, 2);
    assert_eq!(s.events_after(&g, 0, 10, "carol").unwrap().len(), 2);
}

/// History pages: `events_after` gives the oldest `limit` above a sequence number,
/// `events_before` the newest `limit` below one, both oldest first.
pub fn history_pages_in_both_directions<S: Store>(s: &mut S) {
    let g = ConvId::General;
    for n in 1..=7 {
        post(s, &g, "alice", n, format!("m{n}").as_bytes());
    }
    post(s, &alice_bob(), "alice", 50, b"elsewhere");
    let after = |s: &mut S, after, limit| seqs(&s.events_after(&g, after, limit, "bob").unwrap());
    let before =
        |s: &mut S, before, limit| seqs(&s.events_before(&g, before, limit, "bob").unwrap());
    assert_eq!(after(s, 0, 100), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(after(s, 0, 3), [1, 2, 3]);
    assert_eq!(after(s, 3, 3), [4, 5, 6]);
    assert_eq!(after(s, 6, 3), [7]);
    assert!(after(s, 7, 3).is_empty());
    assert!(after(s, u64::MAX, 3).is_empty());
    assert_eq!(before(s, u64::MAX, 3), [5, 6, 7]);
    assert_eq!(before(s, 5, 3), [2, 3, 4]);
    assert_eq!(before(s, 3, 3), [1, 2]);
    assert!(before(s, 1, 3).is_empty());
    assert!(
        s.events_after(&ConvId::Direct("bob".into(), "carol".into()), 0, 10, "bob")
            .unwrap()
            .is_empty()
    );
}

/// Delete for everyone: the body is gone for every reader and a tombstone by the
/// message's author takes the next sequence number; a resend of the erased message does
/// not bring the body back; erasing an unknown message is an error.
pub fn erase_leaves_a_tombstone_and_no_body<S: Store>(s: &mut S) {
    let d = alice_bob();
    let m = post(s, &d, "alice", 1, b"secret");
    post(s, &d, "bob", 2, b"reply");
    let t = s.erase(m.id, cmid(9), 5_000).unwrap();
    assert_eq!(t.kind, EventKind::Tombstone { target: m.id });
    assert_eq!(
        (t.seq, t.sender.as_str(), t.cmid, t.ts),
        (3, "alice", cmid(9), 5_000)
    );
    assert_eq!(s.last_seq(&d).unwrap(), 3);
    for viewer in ["alice", "bob"] {
        let events = s.events_after(&d, 0, 10, viewer).unwrap();
        assert_eq!(seqs(&events), [1, 2, 3]);
        assert_eq!(
            events[0].kind,
            EventKind::Erased,
            "{viewer} still reads the body"
        );
        assert_eq!(events[2], t);
    }
    assert_eq!(
        s.event(m.id).unwrap().unwrap().event.kind,
        EventKind::Erased
    );
    let (again, existed) = s
        .insert_message(&d, "alice", cmid(1), b"secret", 1)
        .unwrap();
    assert!(existed);
    assert_eq!(again.kind, EventKind::Erased);
    assert_eq!(s.last_seq(&d).unwrap(), 3);
    assert!(s.erase(9_999, cmid(10), 1).is_err());
}

/// Delete for me: hidden for that user only, numbered per user, once.
pub fn hides_are_per_user_and_numbered<S: Store>(s: &mut S) {
    let (g, d) = (ConvId::General, alice_bob());
    let m1 = post(s, &g, "alice", 1, b"one");
    let m2 = post(s, &g, "alice", 2, b"two");
    let m3 = post(s, &d, "alice", 3, b"three");
    assert_eq!(s.hide("bob", &g, m1.id).unwrap(), Some(1));
    assert_eq!(s.hide("bob", &g, m1.id).unwrap(), None, "hidden twice");
    assert_eq!(
        s.hide("carol", &g, m2.id).unwrap(),
        Some(1),
        "counters are per user"
    );
    assert_eq!(s.hide("bob", &d, m3.id).unwrap(), Some(2));
    assert_eq!(seqs(&s.events_after(&g, 0, 10, "bob").unwrap()), [2]);
    assert_eq!(
        seqs(&s.events_before(&g, u64::MAX, 10, "bob").unwrap()),
        [2]
    );
    assert_eq!(seqs(&s.events_after(&g, 0, 10, "carol").unwrap()), [1]);
    assert_eq!(seqs(&s.events_after(&g, 0, 10, "alice").unwrap()), [1, 2]);
    assert!(s.events_after(&d, 0, 10, "bob").unwrap().is_empty());
    let hidden = s.hidden_after("bob", 0).unwrap();
    let got: Vec<_> = hidden
        .iter()
        .map(|h| (h.conv.clone(), h.id, h.hseq))
        .collect();
    assert_eq!(got, [(g.clone(), m1.id, 1), (d.clone(), m3.id, 2)]);
    assert_eq!(s.hidden_after("bob", 1).unwrap().len(), 1);
    assert!(s.hidden_after("bob", 2).unwrap().is_empty());
    assert!(s.hidden_after("alice", 0).unwrap().is_empty());
}

/// A user's conversations: `#general` always (first), and each private conversation the
/// user is in once it has an event, with its newest sequence number.
pub fn conversations_list_general_and_own_private_ones<S: Store>(s: &mut S) {
    assert_eq!(s.conversations("alice").unwrap(), [(ConvId::General, 0)]);
    let ab = alice_bob();
    let ac = ConvId::Direct("alice".into(), "carol".into());
    post(s, &ConvId::General, "bob", 1, b"g");
    post(s, &ab, "alice", 2, b"ab1");
    post(s, &ab, "bob", 3, b"ab2");
    post(s, &ac, "carol", 4, b"ac");
    let mut alice = s.conversations("alice").unwrap();
    assert_eq!(alice[0], (ConvId::General, 1));
    alice.sort_by_key(|(c, _)| c.storage_key());
    assert_eq!(alice[1..], [(ab.clone(), 2), (ac.clone(), 1)]);
    let bob = s.conversations("bob").unwrap();
    assert_eq!(bob, [(ConvId::General, 1), (ab, 2)]);
    assert_eq!(s.conversations("dave").unwrap(), [(ConvId::General, 1)]);
}

fn new_room(name: &str, vis: Visibility, owner: &str) -> Room {
    Room::new(
        RoomName::parse_new(name).unwrap(),
        String::new(),
        vis,
        owner,
    )
}

/// Applies a change to `room` and persists it, as the server core does.
fn change<S: Store>(s: &mut S, room: &mut Room, c: Change, by: &str) -> Vec<Effect> {
    let effects = room.apply(c, 0).unwrap();
    s.room_changed(room, &effects, by).unwrap();
    effects
}

/// Loads the one stored room named `key`.
fn loaded<S: Store>(s: &mut S, key: &str) -> Option<crate::app::store::StoredRoom> {
    s.load_rooms()
        .unwrap()
        .into_iter()
        .find(|r| r.room.name.key() == key)
}

/// Rooms: unique by key and look-alike skeleton; every effect (join, invite with its
/// inviter, decline, roles, kick, ban, unban, topic) survives a reload; a member's rooms
/// are among their conversations; closing removes the room, its history and its name.
pub fn rooms_persist_every_change_and_close<S: Store>(s: &mut S) {
    assert!(s.load_rooms().unwrap().is_empty());
    let mut design = new_room("#Design", Visibility::Private, "olga");
    assert!(s.create_room(&design).unwrap());
    for taken in ["#design", "#de.sign", "#DESIGN"] {
        let other = new_room(taken, Visibility::Public, "bob");
        assert!(!s.create_room(&other).unwrap(), "{taken} was allowed");
    }
    let invite = |user: &str| Change::Invite {
        by: "olga".into(),
        user: user.into(),
    };
    change(s, &mut design, invite("bob"), "olga");
    change(s, &mut design, invite("carol"), "olga");
    change(s, &mut design, invite("dave"), "olga");
    let got = loaded(s, "#design").unwrap();
    assert_eq!(got.inviters.get("bob").map(String::as_str), Some("olga"));
    assert_eq!(got.room.invited.len(), 3);
    change(s, &mut design, Change::Join { user: "bob".into() }, "bob");
    change(
        s,
        &mut design,
        Change::Decline {
            user: "dave".into(),
        },
        "dave",
    );
    let promote = Change::Promote {
        by: "olga".into(),
        user: "bob".into(),
    };
    change(s, &mut design, promote, "olga");
    let topic = Change::Topic {
        by: "bob".into(),
        topic: "Reviews".into(),
    };
    change(s, &mut design, topic, "bob");
    let ban = Change::Ban {
        by: "bob".into(),
        user: "carol".into(),
    };
    change(s, &mut design, ban, "bob");
    let got = loaded(s, "#design").unwrap();
    assert_eq!(got.room.name.as_str(), "#Design");
    assert_eq!(got.room.topic, "Reviews");
    assert_eq!(got.room.visibility, Visibility::Private);
    assert_eq!(got.room.members, design.members);
    assert_eq!(got.room.role("bob"), Some(Role::Moderator));
    assert!(got.room.invited.is_empty() && got.inviters.is_empty());
    assert!(got.room.banned.contains("carol"));
    let unban = Change::Unban {
        by: "olga".into(),
        user: "carol".into(),
    };
    change(s, &mut design, unban, "olga");
    assert!(loaded(s, "#design").unwrap().room.banned.is_empty());
    // A member's conversations include the room, with its newest sequence number.
    let conv = ConvId::Room("#design".into());
    post(s, &conv, "bob", 1, b"hello");
    assert!(s.conversations("bob").unwrap().contains(&(conv.clone(), 1)));
    assert!(
        !s.conversations("carol")
            .unwrap()
            .iter()
            .any(|(c, _)| *c == conv)
    );
    assert_eq!(loaded(s, "#design").unwrap().last_activity, 1_001);
    // A restored room numbers new members after the old ones (ownership hand-over order).
    let mut back = loaded(s, "#design").unwrap().room;
    back.invited.insert("erin".into());
    back.apply(
        Change::Join {
            user: "erin".into(),
        },
        1,
    )
    .unwrap();
    assert!(back.members["erin"].since > back.members["bob"].since);
    // Kick, then the last ones leave: the room, its history and its name are gone.
    let kick = Change::Kick {
        by: "olga".into(),
        user: "bob".into(),
    };
    change(s, &mut design, kick, "olga");
    assert!(!loaded(s, "#design").unwrap().room.is_member("bob"));
    // A private room's MLS epoch (here on a public one: the store does not tell them
    // apart) goes with the room.
    s.set_mls_epoch(&conv, 3, crate::app::ids::ClientMsgId([3; 16]))
        .unwrap();
    let effects = change(
        s,
        &mut design,
        Change::Leave {
            user: "olga".into(),
        },
        "olga",
    );
    assert_eq!(effects.last(), Some(&Effect::Closed));
    assert!(loaded(s, "#design").is_none());
    assert_eq!(s.last_seq(&conv).unwrap(), 0);
    assert_eq!(
        s.mls_epoch(&conv).unwrap(),
        (0, None),
        "a new group may start"
    );
    assert!(
        s.create_room(&new_room("#design", Visibility::Public, "bob"))
            .unwrap()
    );
}

/// Read markers: per user and conversation, only ever moving forward (a lower or equal
/// `upto` is a no-op), listed per user and per conversation, gone with a closed room;
/// seen receipts are on until turned off.
pub fn read_markers_only_move_forward<S: Store>(s: &mut S) {
    let dm = alice_bob();
    assert!(s.read_markers("alice").unwrap().is_empty());
    assert_eq!(s.advance_read("alice", &dm, 0).unwrap(), None);
    assert_eq!(s.advance_read("alice", &dm, 5).unwrap(), Some(5));
    assert_eq!(s.advance_read("alice", &dm, 5).unwrap(), None);
    assert_eq!(s.advance_read("alice", &dm, 3).unwrap(), None);
    assert_eq!(
        s.advance_read("alice", &ConvId::General, 2).unwrap(),
        Some(2)
    );
    assert_eq!(s.advance_read("bob", &dm, 1).unwrap(), Some(1));
    assert_eq!(s.advance_read("alice", &dm, 7).unwrap(), Some(7));
    let mut mine = s.read_markers("alice").unwrap();
    mine.sort();
    assert_eq!(mine, vec![(ConvId::General, 2), (dm.clone(), 7)]);
    let mut both = s.conv_read_markers(&dm).unwrap();
    both.sort();
    assert_eq!(both, vec![("alice".to_owned(), 7), ("bob".to_owned(), 1)]);

    let mut room = new_room("#reads", Visibility::Public, "olga");
    assert!(s.create_room(&room).unwrap());
    let conv = ConvId::Room("#reads".into());
    assert_eq!(s.advance_read("olga", &conv, 4).unwrap(), Some(4));
    let leave = Change::Leave {
        user: "olga".into(),
    };
    assert_eq!(
        change(s, &mut room, leave, "olga").last(),
        Some(&Effect::Closed)
    );
    assert!(s.conv_read_markers(&conv).unwrap().is_empty());
    assert_eq!(s.read_markers("olga").unwrap(), vec![]);

    assert!(s.receipts("alice").unwrap());
    s.set_receipts("alice", false).unwrap();
    assert!(!s.receipts("alice").unwrap());
    assert!(s.receipts("bob").unwrap());
    s.set_receipts("alice", true).unwrap();
    assert!(s.receipts("alice").unwrap());
}

/// One `#[test]` per promise of the [`Store`](crate::app::store::Store) contract, each on
/// a fresh store from `$make` (an expression, evaluated once per test). With `guarded`,
/// `$make` gives `(guard, store)` and the guard (a temporary directory, a server) lives
/// until the test ends.
///
/// ```ignore
/// mod sqlite {
///     livewire::store_contract_tests!(livewire::store::SqliteStore::in_memory().unwrap());
/// }
/// ```
#[macro_export]
macro_rules! store_contract_tests {
    (guarded $make:expr) => {
        $crate::store_contract_tests!(@cases $make;
            accounts_are_unique_by_key_and_skeleton,
            identity_keys_are_replaced_and_the_old_one_returned,
            resume_tokens_work_once_and_expire,
            sequences_are_per_conversation,
            a_resend_returns_the_original,
            history_pages_in_both_directions,
            erase_leaves_a_tombstone_and_no_body,
            hides_are_per_user_and_numbered,
            conversations_list_general_and_own_private_ones,
            rooms_persist_every_change_and_close,
            edits_replace_the_text_once_and_keep_no_history,
            reactions_are_one_per_key_and_listed_in_force,
            read_markers_only_move_forward,
            search_matches_whole_words_newest_first,
            search_stays_in_scopes_and_skips_what_is_gone,
            mls_devices_key_packages_and_epochs,
            mls_last_resort_key_packages_and_claim_counts,
        );
    };
    ($make:expr) => {
        $crate::store_contract_tests!(guarded ((), $make));
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let (_guard, mut store) = $make;
                $crate::app::store::contract::$case(&mut store);
            }
        )*
    };
}
