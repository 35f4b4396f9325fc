//! Edits, replies and reactions on the client: the commands (through the outbox, so they
//! are resent after a reconnect with the same client id and applied once), the events
//! they produce, and what the client remembers to make them work: which conversation a
//! message id is in, what it replies to, and the reactions in force on each message.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::command::{HistoryItem, ReactionCount};
use super::outbox::{Op, Pending};
use super::{ClientCore, Event, MAX_TEXT};
use crate::app::edits::{check_emoji, split_reply, wrap_reply};
use crate::app::files::split_text;
use crate::app::ids::{ClientMsgId, ConvId, MsgId};
use crate::app::protocol::{ConvEvent, ErrorCode, EventKind};

/// What the client knows about the messages it has seen this run.
#[derive(Debug, Default)]
pub(super) struct Known {
    /// Conversation and reply target of each message seen.
    msgs: HashMap<MsgId, (ConvId, Option<MsgId>)>,
    /// File messages seen (their text is the file's metadata: not for editing).
    files: std::collections::HashSet<MsgId>,
    /// Reactions in force: message -> emoji -> users.
    reactions: HashMap<MsgId, BTreeMap<String, BTreeSet<String>>>,
}

impl Known {
    /// Notes a message.
    pub(super) fn message(
        &mut self,
        conv: &ConvId,
        id: MsgId,
        reply_to: Option<MsgId>,
        file: bool,
    ) {
        self.msgs.insert(id, (conv.clone(), reply_to));
        if file {
            self.files.insert(id);
        }
    }

    /// Applies a reaction; whether it changed anything.
    fn react(&mut self, target: MsgId, user: &str, emoji: &str, on: bool) -> bool {
        let by_emoji = self.reactions.entry(target).or_default();
        let users = by_emoji.entry(emoji.to_owned()).or_default();
        let changed = if on {
            users.insert(user.to_owned())
        } else {
            users.remove(user)
        };
        if users.is_empty() {
            by_emoji.remove(emoji);
        }
        changed
    }

    /// The counts of one message, by emoji.
    pub(super) fn counts(&self, target: MsgId) -> Vec<ReactionCount> {
        self.reactions
            .get(&target)
            .map(|m| {
                m.iter()
                    .map(|(emoji, users)| ReactionCount {
                        emoji: emoji.clone(),
                        count: users.len(),
                        users: users.iter().cloned().collect(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A message text as shown: `(reply_to, text, file)`.
pub(super) fn shown_text(
    body: &[u8],
) -> (Option<MsgId>, String, Option<crate::app::files::FileInfo>) {
    let full = String::from_utf8_lossy(body);
    let (reply_to, text) = split_reply(&full);
    let (text, file) = split_text(text.to_owned());
    (reply_to, text, file)
}

impl ClientCore {
    fn next_client_id(&mut self) -> ClientMsgId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.id_prefix);
        id[8..].copy_from_slice(&self.next_cmid.to_be_bytes());
        self.next_cmid += 1;
        ClientMsgId(id)
    }

    /// Queues an edit or a reaction like a message: written once the conversation can
    /// take it, resent with the same id after a reconnect.
    fn queue_op(&mut self, conv: ConvId, op: Op, text: String) {
        let cmid = self.next_client_id();
        self.outbox.push(Pending {
            cmid,
            conv: conv.clone(),
            text,
            sent: false,
            op,
        });
        if self.online {
            self.ensure_open(&conv);
            self.flush_outbox(&conv);
        }
    }

    /// The conversation of a message seen this run, or the error to show.
    fn conv_of(&mut self, id: MsgId) -> Option<(ConvId, Option<MsgId>)> {
        let found = self.known.msgs.get(&id).cloned();
        if found.is_none() {
            let msg = format!("no message {id} seen in this session");
            self.event(Event::error(ErrorCode::NotFound, msg));
        }
        found
    }

    /// `edit {id, text}`: the reply a message was stays a reply.
    pub(super) fn edit(&mut self, id: MsgId, text: String) {
        if text.is_empty() {
            return self.event(Event::error(ErrorCode::BadCommand, "empty text"));
        }
        if text.len() > MAX_TEXT {
            let msg = format!("text is {} bytes; the limit is {MAX_TEXT}", text.len());
            return self.event(Event::error(ErrorCode::TooLarge, msg));
        }
        let Some((conv, reply_to)) = self.conv_of(id) else {
            return;
        };
        if self.known.files.contains(&id) {
            let msg = "a file message cannot be edited";
            return self.event(Event::error(ErrorCode::BadCommand, msg));
        }
        if text.starts_with(crate::app::files::MARKER) {
            let msg = "an edit cannot turn a message into a file";
            return self.event(Event::error(ErrorCode::BadCommand, msg));
        }
        self.queue_op(conv, Op::Edit { target: id }, wrap_reply(reply_to, &text));
    }

    /// `react` / `unreact {id, emoji}`.
    pub(super) fn react(&mut self, id: MsgId, emoji: String, on: bool) {
        if let Err(e) = check_emoji(&emoji) {
            return self.event(Event::error(ErrorCode::BadCommand, e.to_string()));
        }
        let Some((conv, _)) = self.conv_of(id) else {
            return;
        };
        self.queue_op(conv, Op::React { target: id, on }, emoji);
    }

    /// The checked reply target of a `send` (`Err`: the error was shown).
    pub(super) fn reply_target(
        &mut self,
        conv: &ConvId,
        reply_to: Option<MsgId>,
    ) -> Result<(), ()> {
        let Some(id) = reply_to else {
            return Ok(());
        };
        match self.known.msgs.get(&id) {
            Some((c, _)) if c == conv => Ok(()),
            Some(_) => {
                let msg = format!("message {id} is in another conversation");
                self.event(Event::error(ErrorCode::BadCommand, msg));
                Err(())
            }
            None => {
                let msg = format!("no message {id} seen in this session");
                self.event(Event::error(ErrorCode::NotFound, msg));
                Err(())
            }
        }
    }

    /// An acknowledged outbox entry (or one found stored on catch-up): the event the user
    /// sees for it, as the other members see theirs.
    pub(super) fn settled(&mut self, p: Pending, id: MsgId, seq: u64, ts: u64) {
        let label = self.label(&p.conv);
        match p.op {
            Op::Send => {
                let (reply_to, text, file) = shown_text(p.text.as_bytes());
                self.known.message(&p.conv, id, reply_to, file.is_some());
                self.event(Event::Sent {
                    conv: label,
                    id,
                    seq,
                    ts,
                    text,
                    file,
                    reply_to,
                });
            }
            Op::Edit { target } => {
                let (_, text, _) = shown_text(p.text.as_bytes());
                self.event(Event::Edited {
                    conv: label,
                    id: target,
                    text,
                });
            }
            Op::React { target, on } => {
                let me = self.me.clone();
                if self.known.react(target, &me, &p.text, on) {
                    self.event(Event::Reaction {
                        conv: label,
                        id: target,
                        user: me,
                        emoji: p.text,
                        on,
                    });
                }
            }
        }
    }

    /// A sequenced edit or reaction from the server (not one of ours still in the outbox).
    pub(super) fn op_event(&mut self, conv: &ConvId, e: ConvEvent) {
        let label = self.label(conv);
        match e.kind {
            EventKind::Edit { target, body } => {
                // An empty body is an edit superseded by a later one (or erased by a
                // delete): the later event, or the tombstone, says what stands.
                if body.is_empty() {
                    return;
                }
                let (_, text, _) = shown_text(&body);
                self.event(Event::Edited {
                    conv: label,
                    id: target,
                    text,
                });
            }
            EventKind::Reaction { target, on, body } => {
                let emoji = String::from_utf8_lossy(&body).into_owned();
                if self.known.react(target, &e.sender, &emoji, on) {
                    self.event(Event::Reaction {
                        conv: label,
                        id: target,
                        user: e.sender,
                        emoji,
                        on,
                    });
                }
            }
            _ => {}
        }
    }

    /// The items of a history page: its messages with their current text, reply target and
    /// the reactions in force (the server appends those to the page).
    pub(super) fn history_items(
        &mut self,
        conv: &ConvId,
        events: Vec<ConvEvent>,
    ) -> Vec<HistoryItem> {
        let mut in_force: HashMap<MsgId, BTreeMap<String, BTreeSet<String>>> = HashMap::new();
        for e in &events {
            if let EventKind::Reaction {
                target,
                on: true,
                body,
            } = &e.kind
            {
                let emoji = String::from_utf8_lossy(body).into_owned();
                in_force
                    .entry(*target)
                    .or_default()
                    .entry(emoji)
                    .or_default()
                    .insert(e.sender.clone());
            }
        }
        let mut items = Vec::new();
        for e in events {
            let (text, edited) = match e.kind {
                EventKind::Message { body } => (Some(body), false),
                EventKind::Edited { body } => (Some(body), true),
                EventKind::Erased => (None, false),
                _ => continue,
            };
            let (reply_to, text, file) = match text {
                Some(b) => {
                    let (r, t, f) = shown_text(&b);
                    (r, Some(t), f)
                }
                None => (None, None, None),
            };
            if text.is_some() {
                self.known.message(conv, e.id, reply_to, file.is_some());
            }
            // The page is the server's word on this message's reactions now.
            let state = in_force.remove(&e.id).unwrap_or_default();
            self.known.reactions.insert(e.id, state);
            let (_, mentions_me) = self.mentions_of(conv, &e.sender, text.as_deref(), e.mentions);
            items.push(HistoryItem {
                id: e.id,
                seq: e.seq,
                from: e.sender,
                text,
                ts: e.ts,
                file,
                edited,
                reply_to,
                reactions: self.known.counts(e.id),
                mentions_me,
            });
        }
        items
    }
}
