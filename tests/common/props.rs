//! The properties every end-to-end and fault test checks at the end (docs/TESTING.md,
//! P1–P7), and the delivery tally the fault suites print, over what each client printed.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::events;

/// One client's record for the P1–P7 checks.
pub struct Record<'a> {
    pub user: &'a str,
    pub log: &'a [Value],
}

/// Checks the properties P1–P7 of docs/TESTING.md over what every client printed.
/// P1's members: a `#general` message must reach everyone in `general_members` (besides its
/// author); a private message (`@x` as its sender saw it) must reach x.
pub fn check_properties(records: &[Record<'_>], general_members: &[&str]) {
    // id -> (author, conv key, text) from acks.
    let mut acked: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
    let mut deleted_everyone: HashSet<u64> = HashSet::new();
    // Texts a message was edited to (any client's `edited` events): a catch-up shows one.
    let mut edited: HashMap<u64, HashSet<String>> = HashMap::new();
    for r in records {
        let mut last_seq_by_conv: HashMap<String, u64> = HashMap::new();
        for v in r.log {
            match v["event"].as_str() {
                Some("sent") => {
                    let id = v["id"].as_u64().unwrap();
                    let conv = v["conv"].as_str().unwrap().to_owned();
                    acked.insert(
                        id,
                        (
                            r.user.to_owned(),
                            conv.clone(),
                            v["text"].as_str().unwrap().to_owned(),
                        ),
                    );
                    // P5: a sender's own messages keep their order.
                    let seq = v["seq"].as_u64().unwrap();
                    if let Some(prev) = last_seq_by_conv.insert(conv.clone(), seq) {
                        assert!(
                            seq > prev,
                            "P5: {} saw its {conv} acks out of order",
                            r.user
                        );
                    }
                }
                Some("deleted") if v["for"] == "everyone" => {
                    deleted_everyone.insert(v["id"].as_u64().unwrap());
                }
                Some("edited") => {
                    let text = v["text"].as_str().unwrap_or_default().to_owned();
                    edited
                        .entry(v["id"].as_u64().unwrap())
                        .or_default()
                        .insert(text);
                }
                _ => {}
            }
        }
    }
    for r in records {
        let mut ids = HashSet::new();
        let mut seqs: HashMap<String, Vec<u64>> = HashMap::new();
        let mut shown: HashMap<u64, Option<String>> = HashMap::new();
        for v in r.log {
            match v["event"].as_str() {
                Some("message") => {
                    let id = v["id"].as_u64().unwrap();
                    let conv = v["conv"].as_str().unwrap().to_owned();
                    // P2: never twice, by id or by sequence.
                    assert!(ids.insert(id), "P2: {} shows message {id} twice", r.user);
                    let list = seqs.entry(conv.clone()).or_default();
                    let seq = v["seq"].as_u64().unwrap();
                    // P4: one order per conversation (strictly increasing sequence).
                    assert!(
                        list.last().is_none_or(|l| *l < seq),
                        "P4/P2: {} shows {conv} seq {seq} after {:?}",
                        r.user,
                        list.last()
                    );
                    list.push(seq);
                    let from = v["from"].as_str().unwrap();
                    if let Some((author, sconv, text)) = acked.get(&id) {
                        // P6: the author is the sender that was acknowledged.
                        assert_eq!(
                            from, author,
                            "P6: message {id} claims {from}, sent by {author}"
                        );
                        // P3: a private message reaches only its two participants.
                        if let Some(peer) = sconv.strip_prefix('@') {
                            assert!(
                                r.user.eq_ignore_ascii_case(peer),
                                "P3: {} saw {author}'s private message {id} to {peer}",
                                r.user
                            );
                            assert_eq!(v["conv"], format!("@{}", author.to_ascii_lowercase()));
                        }
                        if let Some(t) = v["text"].as_str()
                            && !edited.get(&id).is_some_and(|e| e.contains(t))
                        {
                            assert_eq!(t, text, "message {id} text changed");
                        }
                    }
                    shown.insert(id, v["text"].as_str().map(str::to_owned));
                }
                Some("deleted") if v["for"] == "everyone" => {
                    shown.insert(v["id"].as_u64().unwrap(), None);
                }
                Some("sent") => {
                    ids.insert(v["id"].as_u64().unwrap());
                }
                _ => {}
            }
        }
        // P7: after delete-for-everyone nobody still shows the body.
        for id in &deleted_everyone {
            if let Some(Some(text)) = shown.get(id) {
                panic!("P7: {} still shows deleted message {id}: {text}", r.user);
            }
        }
        // P1: everything acknowledged reached every member.
        for (id, (author, conv, _)) in &acked {
            if author.eq_ignore_ascii_case(r.user) {
                continue;
            }
            let member = match conv.strip_prefix('@') {
                Some(peer) => peer.eq_ignore_ascii_case(r.user),
                None => general_members
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(r.user)),
            };
            if member {
                assert!(
                    ids.contains(id) || deleted_everyone.contains(id),
                    "P1: {} never got message {id} from {author} in {conv}",
                    r.user
                );
            }
        }
    }
}

/// What a conversation's clients sent and saw, counted over their logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Acknowledged sends (`sent` events).
    pub acked: usize,
    /// Deliveries the acks call for: a `#general` message reaches every other member of
    /// `general_members`, a private one its peer.
    pub expected: usize,
    /// Distinct messages shown, summed over clients.
    pub delivered: usize,
    /// Messages shown more than once, summed over clients (P2 makes this 0).
    pub shown_twice: usize,
}

/// The end of every fault case: no client printed an `error`, no ack arrived twice, P1–P7
/// hold, and every expected delivery happened. Returns the counts for the figures line.
pub fn check_conversation(records: &[Record<'_>], general_members: &[&str]) -> Tally {
    for r in records {
        let errors = events(r.log, "error");
        assert!(errors.is_empty(), "{}: {errors:?}", r.user);
        let acks: Vec<u64> = events(r.log, "sent")
            .iter()
            .map(|v| v["id"].as_u64().unwrap())
            .collect();
        let unique: HashSet<u64> = acks.iter().copied().collect();
        assert_eq!(acks.len(), unique.len(), "{}: an ack arrived twice", r.user);
    }
    check_properties(records, general_members);
    let others = general_members.len().saturating_sub(1);
    let mut t = Tally {
        acked: 0,
        expected: 0,
        delivered: 0,
        shown_twice: 0,
    };
    for r in records {
        for v in events(r.log, "sent") {
            t.acked += 1;
            t.expected += if v["conv"] == "#general" { others } else { 1 };
        }
        let ids: Vec<u64> = events(r.log, "message")
            .iter()
            .map(|v| v["id"].as_u64().unwrap())
            .collect();
        let unique: HashSet<u64> = ids.iter().copied().collect();
        t.shown_twice += ids.len() - unique.len();
        t.delivered += unique.len();
    }
    assert_eq!(t.delivered, t.expected, "deliveries: {t:?}");
    t
}
