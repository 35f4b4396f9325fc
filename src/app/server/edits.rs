//! Edits and reactions on a conversation stream, and the reaction state a history page
//! carries (see `crate::app::edits` for what they mean on the wire).
//!
//! An edit follows the rules of a delete for everyone: the author only, within the same
//! window; a message already deleted cannot be edited, and since the core handles one
//! input at a time, an edit racing a delete ends deleted whichever comes first (a delete
//! after an edit erases the edited text and the edit events' copies of it). Both edits and
//! reactions are exactly-once by the client's id, like sends, and count against the same
//! rate limit.

use super::ServerCore;
use crate::app::edits::{MAX_EMOJI, REACTION_TAG, check_emoji, split_reply};
use crate::app::files::is_file_body;
use crate::app::ids::{ClientMsgId, ConnId, ConvId, MsgId, UserName};
use crate::app::protocol::{ConvDown, ConvEvent, E2E_OVERHEAD, ErrorCode, EventKind, MLS_OVERHEAD};
use crate::app::store::{Reacted, ReactionChange, Store, StoreError, StoredEvent};

/// An edit request as it came off the stream.
pub(super) struct EditReq {
    pub(super) cmid: ClientMsgId,
    pub(super) target: MsgId,
    pub(super) body: Vec<u8>,
}

/// A reaction request as it came off the stream.
pub(super) struct ReactReq {
    pub(super) cmid: ClientMsgId,
    pub(super) target: MsgId,
    pub(super) on: bool,
    pub(super) key: Vec<u8>,
    pub(super) body: Vec<u8>,
}

impl<S: Store> ServerCore<S> {
    /// The message `target` of `conv` as `key` may see it, or the error to answer.
    fn target_in(
        &mut self,
        conv: &ConvId,
        key: &str,
        target: MsgId,
    ) -> Result<Result<StoredEvent, String>, StoreError> {
        let found = self
            .store
            .event(target)?
            .filter(|s| &s.conv == conv && self.can_read(&s.conv, key, s.event.seq));
        Ok(found.ok_or_else(|| format!("no message {target} in this conversation")))
    }

    fn ack(&mut self, conn: ConnId, conv: &ConvId, cmid: ClientMsgId, e: &ConvEvent) {
        let down = ConvDown::Ack {
            cmid,
            id: e.id,
            seq: e.seq,
            ts: e.ts,
        };
        self.conv_out(conn, conv, down);
    }

    pub(super) fn edit(
        &mut self,
        conn: ConnId,
        name: &UserName,
        conv: &ConvId,
        req: EditReq,
        now: u64,
    ) -> Result<(), StoreError> {
        let EditReq { cmid, target, body } = req;
        let key = name.key();
        let fail = |core: &mut Self, code, msg: String| {
            core.conv_error(conn, conv, code, msg, Some(cmid));
            Ok(())
        };
        let e2e = self.is_e2e(conv);
        let limit = match e2e {
            false => self.limits.max_body,
            true => self.limits.max_body + E2E_OVERHEAD.max(MLS_OVERHEAD),
        };
        if body.len() > limit {
            let msg = format!("the new text is {} bytes; the limit is {limit}", body.len());
            return fail(self, ErrorCode::TooLarge, msg);
        }
        if body.is_empty() {
            return fail(self, ErrorCode::BadRequest, "empty text".into());
        }
        if self.plaintext_refused(conn, conv, Some(cmid), &body)? {
            return Ok(());
        }
        if !e2e {
            match std::str::from_utf8(&body) {
                Ok(t) if is_file_body(t.as_bytes()) => {
                    let msg = "an edit cannot turn a message into a file".to_owned();
                    return fail(self, ErrorCode::BadRequest, msg);
                }
                Ok(_) => {}
                Err(_) => return fail(self, ErrorCode::BadRequest, "text is not UTF-8".into()),
            }
        }
        let stored = match self.target_in(conv, &key, target)? {
            Ok(s) => s,
            Err(msg) => return fail(self, ErrorCode::NotFound, msg),
        };
        match &stored.event.kind {
            EventKind::Message { body } | EventKind::Edited { body } => {
                if !e2e && is_file_body(body) {
                    let msg = "a file message cannot be edited".to_owned();
                    return fail(self, ErrorCode::BadRequest, msg);
                }
            }
            EventKind::Erased => {
                let msg = format!("message {target} was deleted");
                return fail(self, ErrorCode::NotFound, msg);
            }
            _ => {
                return fail(
                    self,
                    ErrorCode::NotFound,
                    format!("{target} is not a message"),
                );
            }
        }
        if stored.event.sender.to_ascii_lowercase() != key {
            let msg = "only the author can edit a message".to_owned();
            return fail(self, ErrorCode::NotAuthor, msg);
        }
        let window = self.limits.delete_window_secs;
        if now.saturating_sub(stored.event.ts) > window.saturating_mul(1000) {
            let msg = format!(
                "messages can be edited only within {} of sending (like delete for everyone)",
                super::delete::human_secs(window)
            );
            return fail(self, ErrorCode::DeleteWindowExpired, msg);
        }
        // In an MLS conversation the new text must be made in the current epoch, like a
        // send (else members cannot open it once a concurrent commit ended that epoch);
        // the client encrypts it again on `stale_epoch`.
        if crate::app::mls::frame_info(&body).is_some_and(|f| f.commit) {
            let msg = "an edit cannot carry an MLS commit".to_owned();
            return fail(self, ErrorCode::BadRequest, msg);
        }
        if let super::mls::Gate::Refused = self.mls_gate(conn, conv, cmid, &body)? {
            return Ok(());
        }
        if !self.take_token(conn, conv, name, cmid, now) {
            return Ok(());
        }
        let (event, dup) = self
            .store
            .edit_message(target, name.as_str(), cmid, &body, now)?;
        self.ack(conn, conv, cmid, &event);
        if !dup {
            self.touch(conv, now);
            self.fan_out(conv, &event, Some(conn));
            tracing::info!(id = event.id, target, by = %name, "message edited");
        }
        Ok(())
    }

    pub(super) fn react(
        &mut self,
        conn: ConnId,
        name: &UserName,
        conv: &ConvId,
        req: ReactReq,
        now: u64,
    ) -> Result<(), StoreError> {
        let ReactReq {
            cmid,
            target,
            on,
            key: rkey,
            body,
        } = req;
        let key = name.key();
        let fail = |core: &mut Self, code, msg: String| {
            core.conv_error(conn, conv, code, msg, Some(cmid));
            Ok(())
        };
        if self.removed_write_refused(conn, conv, cmid) {
            return Ok(());
        }
        // Where the server reads the conversation it checks the emoji and keys on it;
        // in a private one it sees a sealed emoji and a keyed hash, and checks their sizes.
        let shape =
            if !self.is_e2e(conv) {
                match std::str::from_utf8(&body) {
                    Ok(emoji) => check_emoji(emoji)
                        .map_err(|e| e.to_string())
                        .and_then(|()| match rkey == body {
                            true => Ok(()),
                            false => Err("the reaction key must be the emoji".into()),
                        }),
                    Err(_) => Err("an emoji is UTF-8 text".into()),
                }
            } else if rkey.len() != REACTION_TAG {
                Err(format!("a private reaction key has {REACTION_TAG} bytes"))
            } else if body.is_empty() || body.len() > MAX_EMOJI + E2E_OVERHEAD.max(MLS_OVERHEAD) {
                Err("a sealed emoji has the wrong size".into())
            } else {
                Ok(())
            };
        if let Err(msg) = shape {
            return fail(self, ErrorCode::BadRequest, msg);
        }
        let stored = match self.target_in(conv, &key, target)? {
            Ok(s) => s,
            Err(msg) => return fail(self, ErrorCode::NotFound, msg),
        };
        match (&stored.event.kind, on) {
            (EventKind::Message { .. } | EventKind::Edited { .. }, _) => {}
            // Taking back a reaction to a deleted message is still allowed.
            (EventKind::Erased, false) => {}
            (EventKind::Erased, true) => {
                let msg = format!("message {target} was deleted");
                return fail(self, ErrorCode::NotFound, msg);
            }
            _ => {
                return fail(
                    self,
                    ErrorCode::NotFound,
                    format!("{target} is not a message"),
                );
            }
        }
        if !self.take_token(conn, conv, name, cmid, now) {
            return Ok(());
        }
        let reacted = self.store.react(&ReactionChange {
            conv,
            target,
            user: name.as_str(),
            cmid,
            key: &rkey,
            on,
            body: &body,
            ts: now,
        })?;
        match reacted {
            Reacted::Applied(event) => {
                self.ack(conn, conv, cmid, &event);
                self.fan_out(conv, &event, Some(conn));
            }
            Reacted::Resent(event) => self.ack(conn, conv, cmid, &event),
            Reacted::Unchanged if on => {
                let msg = "you already reacted to that message with that emoji".to_owned();
                return fail(self, ErrorCode::BadRequest, msg);
            }
            Reacted::Unchanged => {
                let msg = "you have no such reaction on that message".to_owned();
                return fail(self, ErrorCode::NotFound, msg);
            }
        }
        Ok(())
    }

    /// Where the server reads the text: a reply names a message of the same conversation
    /// the sender may read (in a private conversation the reference is sealed, and only
    /// the clients check it).
    pub(super) fn check_reply(
        &mut self,
        conv: &ConvId,
        key: &str,
        text: &str,
    ) -> Result<Result<(), String>, StoreError> {
        match split_reply(text) {
            (Some(id), _) => Ok(self.target_in(conv, key, id)?.map(|_| ())),
            (None, _) => Ok(Ok(())),
        }
    }

    /// Sends a history page with, instead of its own reaction events, the reaction events
    /// still in force for its messages appended (they may be newer than the page): a
    /// client that never saw them live still shows the same counts.
    pub(super) fn history_page(
        &mut self,
        conn: ConnId,
        conv: &ConvId,
        mut events: Vec<ConvEvent>,
        more: bool,
    ) -> Result<(), StoreError> {
        // The page's own reaction events are history, not state: a reaction added in the
        // page may have been taken back since. The state is what follows.
        events.retain(|e| !matches!(e.kind, EventKind::Reaction { .. }));
        let ids: Vec<MsgId> = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Message { .. } | EventKind::Edited { .. }))
            .map(|e| e.id)
            .collect();
        if !ids.is_empty() {
            let have: std::collections::HashSet<MsgId> = events.iter().map(|e| e.id).collect();
            let extra = self.store.reactions(conv, &ids)?;
            events.extend(extra.into_iter().filter(|e| !have.contains(&e.id)));
        }
        self.conv_out(conn, conv, ConvDown::History { events, more });
        Ok(())
    }
}
