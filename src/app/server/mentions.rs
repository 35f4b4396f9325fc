//! Mentions in server-readable conversations: the server fills in [`ConvEvent::mentions`]
//! as it sends a message (live, in a catch-up or a history page). They are computed, not
//! stored: a pure function of the text and the conversation's members at delivery time
//! (a room's members by look-alike skeleton; in `#general`, where everyone is a member,
//! any registered user by name, case-insensitively). Private conversations get none from
//! the server: their clients resolve mentions after decryption.

use super::ServerCore;
use crate::app::ids::{ConvId, UserName};
use crate::app::mentions;
use crate::app::protocol::{ConvEvent, EventKind};
use crate::app::store::{Store, StoreError};

impl<S: Store> ServerCore<S> {
    /// `event` with its mentions filled in (unchanged for anything but a message with an
    /// `@` in a server-readable conversation).
    pub(super) fn with_mentions(&mut self, conv: &ConvId, event: ConvEvent) -> ConvEvent {
        self.mentions_for(conv, &event).unwrap_or(event)
    }

    /// A copy of `event` with its mentions, only when it mentions someone (so the fan-out
    /// of an ordinary message copies nothing more).
    pub(super) fn mentions_for(&mut self, conv: &ConvId, event: &ConvEvent) -> Option<ConvEvent> {
        let (EventKind::Message { body } | EventKind::Edited { body }) = &event.kind else {
            return None;
        };
        if self.is_e2e(conv) || !body.contains(&b'@') {
            return None;
        }
        let text = String::from_utf8_lossy(body).into_owned();
        match self.mentions_in(conv, &text) {
            Ok(m) if !m.is_empty() => Some(ConvEvent {
                mentions: m,
                ..event.clone()
            }),
            Ok(_) => None,
            Err(e) => {
                // Mentions are a courtesy: a store failure costs the highlight, not the
                // message.
                tracing::warn!(error = %e, "mentions not resolved");
                None
            }
        }
    }

    fn mentions_in(&mut self, conv: &ConvId, text: &str) -> Result<Vec<String>, StoreError> {
        match conv {
            ConvId::Room(room) => {
                let keys: Vec<String> = self
                    .rooms
                    .get(room)
                    .map(|e| e.room.members.keys().cloned().collect())
                    .unwrap_or_default();
                let found = mentions::resolve_among(text, keys.iter().map(String::as_str));
                found.iter().map(|k| self.display(k)).collect()
            }
            ConvId::General => {
                let mut failed = None;
                let found = mentions::resolve(text, |token| {
                    let key = UserName::parse(token).ok()?.key();
                    match self.store.user(&key) {
                        Ok(rec) => rec.map(|r| r.name),
                        Err(e) => {
                            failed = Some(e);
                            None
                        }
                    }
                });
                match failed {
                    Some(e) => Err(e),
                    None => Ok(found),
                }
            }
            ConvId::Direct(..) => Ok(Vec::new()),
        }
    }
}
