//! Typing notices: forwarded to the conversation's other members who are online, never
//! stored or sequenced, and rate-limited per user and conversation ([`TYPING_INTERVAL_MS`]):
//! the excess is dropped without an error, since typing is best effort. In a cluster the
//! node a notice is typed on gates it and publishes it; the other nodes only deliver it
//! (the gate is per node, docs/SCALING.md part 5). In a private
//! conversation a notice reveals only that someone types, which the server knows anyway
//! from the traffic; the words stay end-to-end.

use std::collections::HashMap;

use super::ServerCore;
use crate::app::ids::{ConvId, UserName};
use crate::app::protocol::ControlDown;
use crate::app::store::Store;

/// At most one typing notice per user and conversation is forwarded per this many ms.
pub const TYPING_INTERVAL_MS: u64 = 3_000;

/// Past this many remembered notices, the stale ones are forgotten on the next notice.
const GATE_TIDY_AT: usize = 4_096;

/// When each (user key, conversation) last had a notice forwarded.
#[derive(Debug, Default)]
pub(super) struct TypingGate {
    last: HashMap<(String, ConvId), u64>,
}

impl TypingGate {
    /// Whether a notice from `key` in `conv` at `now` goes out (and records it if so).
    pub(super) fn allow(&mut self, key: &str, conv: &ConvId, now: u64) -> bool {
        if self.last.len() >= GATE_TIDY_AT {
            self.last
                .retain(|_, t| now.saturating_sub(*t) < TYPING_INTERVAL_MS);
        }
        let k = (key.to_owned(), conv.clone());
        match self.last.get(&k) {
            Some(t) if now.saturating_sub(*t) < TYPING_INTERVAL_MS => false,
            _ => {
                self.last.insert(k, now);
                true
            }
        }
    }
}

impl<S: Store> ServerCore<S> {
    /// `name` types in `conv` (membership already checked): told to the members here at
    /// once and published for the other nodes (not stored, so nothing waits for a commit).
    /// The rate limit is this node's: a user typing through sessions on two nodes passes
    /// two gates, and the receiving nodes do not gate again.
    pub(super) fn typing(&mut self, name: &UserName, conv: ConvId, now: u64) {
        let key = name.key();
        if !self.typing_gate.allow(&key, &conv, now) {
            return;
        }
        let user = name.to_string();
        self.tell_typing(&key, &user, &conv);
        self.publish(|| super::ClusterMsg::Typing {
            user: key,
            name: user,
            conv,
        });
    }

    /// Tells the members of `conv` with a session on this node, but `key` (display
    /// `name`) themself, that they type. Every node of a cluster runs this for its own.
    pub(super) fn tell_typing(&mut self, key: &str, name: &str, conv: &ConvId) {
        for member in self.members_of(conv) {
            if member == key {
                continue;
            }
            for c in self.sessions_of_key(&member) {
                let down = ControlDown::Typing {
                    conv: conv.clone(),
                    user: name.to_owned(),
                };
                self.control_out(c, down);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_notice_per_user_and_conversation_per_interval() {
        let mut g = TypingGate::default();
        let room = ConvId::Room("#r".into());
        assert!(g.allow("bob", &room, 1_000));
        assert!(!g.allow("bob", &room, 1_000 + TYPING_INTERVAL_MS - 1));
        assert!(g.allow("ann", &room, 1_500));
        assert!(g.allow("bob", &ConvId::General, 1_500));
        assert!(g.allow("bob", &room, 1_000 + TYPING_INTERVAL_MS));
    }
}
