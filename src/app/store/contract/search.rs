//! The search promises of the [`Store`] contract (`crate::app::search` says what a query
//! means; every backend must give the same results).

use super::{alice_bob, change, cmid, new_room, post};
use crate::app::ids::{ConvId, MsgId};
use crate::app::rooms::{Change, Visibility};
use crate::app::search::{SearchQuery, SearchScope};
use crate::app::store::Store;

fn scope(conv: &ConvId, from: u64) -> SearchScope {
    SearchScope {
        conv: conv.clone(),
        from,
    }
}

fn ids<S: Store>(
    s: &mut S,
    q: &str,
    scopes: &[SearchScope],
    viewer: &str,
    limit: usize,
) -> Vec<MsgId> {
    let q = SearchQuery::parse(q).unwrap();
    s.search(&q, scopes, viewer, limit)
        .unwrap()
        .iter()
        .map(|e| e.event.id)
        .collect()
}

/// Words match whole and case-insensitively, every word must match, the last may be a
/// prefix (unless the query ends with a separator); punctuation of any kind separates
/// words; results come newest first, at most `limit`, with their conversation.
pub fn search_matches_whole_words_newest_first<S: Store>(s: &mut S) {
    let g = ConvId::General;
    let a = post(s, &g, "alice", 1, b"The Quick brown fox");
    let b = post(s, &g, "bob", 2, b"quickest foxes, really");
    let c = post(
        s,
        &g,
        "carol",
        3,
        b"see host.name/path or me@x.org (quick!)",
    );
    let d = post(s, &g, "dave", 4, "Zürich café QUICK".as_bytes());
    let all = [scope(&g, 1)];
    assert_eq!(ids(s, "quick", &all, "eve", 10), [d.id, c.id, b.id, a.id]);
    assert_eq!(ids(s, "quick ", &all, "eve", 10), [d.id, c.id, a.id]);
    assert_eq!(ids(s, "QUICK fox", &all, "eve", 10), [a.id]);
    assert_eq!(ids(s, "quickest fox", &all, "eve", 10), [b.id]);
    assert_eq!(ids(s, "fox brown", &all, "eve", 10), [a.id]);
    assert!(ids(s, "fox brown zebra", &all, "eve", 10).is_empty());
    assert_eq!(ids(s, "host name", &all, "eve", 10), [c.id]);
    assert_eq!(ids(s, "path me x org", &all, "eve", 10), [c.id]);
    assert_eq!(ids(s, "zürich CAFÉ", &all, "eve", 10), [d.id]);
    assert!(
        ids(s, "zurich", &all, "eve", 10).is_empty(),
        "accents are kept"
    );
    assert_eq!(ids(s, "quick", &all, "eve", 2), [d.id, c.id]);
    let found = s
        .search(&SearchQuery::parse("brown").unwrap(), &all, "eve", 10)
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!((&found[0].conv, &found[0].event), (&g, &a));
}

/// Only the scopes' conversations, each from its first readable sequence number; never
/// a private conversation (ciphertext), an erased message, a file message, a message the
/// viewer hid, or a closed room's history.
pub fn search_stays_in_scopes_and_skips_what_is_gone<S: Store>(s: &mut S) {
    let (g, d) = (ConvId::General, alice_bob());
    let mut design = new_room("#design", Visibility::Public, "olga");
    assert!(s.create_room(&design).unwrap());
    let r = ConvId::Room("#design".into());
    let g1 = post(s, &g, "alice", 1, b"plans for lunch");
    let r1 = post(s, &r, "olga", 2, b"early lunch plans");
    let r2 = post(s, &r, "olga", 3, b"late lunch plans");
    post(s, &d, "alice", 4, b"secret lunch plans");
    let file = format!(
        "{}{{\"name\":\"lunch plans.txt\"}}",
        crate::app::files::MARKER
    );
    post(s, &g, "alice", 5, file.as_bytes());
    let gone = post(s, &g, "alice", 6, b"lunch plans erased");
    s.erase(gone.id, cmid(60), 2_000).unwrap();
    let hidden = post(s, &g, "alice", 7, b"lunch plans hidden by bob");
    assert_eq!(s.hide("bob", &g, hidden.id).unwrap(), Some(1));
    let everywhere = [scope(&g, 1), scope(&r, 1), scope(&d, 1)];
    assert_eq!(
        ids(s, "lunch plans", &everywhere, "bob", 50),
        [r2.id, r1.id, g1.id]
    );
    assert_eq!(
        ids(s, "lunch plans", &everywhere, "carol", 50),
        [hidden.id, r2.id, r1.id, g1.id],
        "hidden for bob only"
    );
    assert_eq!(ids(s, "lunch", &[scope(&g, 1)], "bob", 50), [g1.id]);
    assert_eq!(ids(s, "lunch", &[scope(&r, r2.seq)], "bob", 50), [r2.id]);
    assert!(ids(s, "secret", &everywhere, "alice", 50).is_empty());
    assert!(ids(s, "erased", &everywhere, "alice", 50).is_empty());
    assert!(ids(s, "txt", &everywhere, "alice", 50).is_empty());
    assert!(ids(s, "lunch", &[], "bob", 50).is_empty());
    let effects = change(
        s,
        &mut design,
        Change::Leave {
            user: "olga".into(),
        },
        "olga",
    );
    assert!(effects.contains(&crate::app::rooms::Effect::Closed));
    assert_eq!(ids(s, "lunch plans", &everywhere, "bob", 50), [g1.id]);
}
