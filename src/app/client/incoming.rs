//! Frames arriving on conversation streams: catch-up, live events, acknowledgements,
//! history pages, barrier answers and the end of a closing stream.

use super::edits::shown_text;
use super::streams::Stream;
use super::{ClientCore, Event, Output};
use crate::app::ids::ConvId;
use crate::app::protocol::{ConvDown, ConvEvent, ConvUp, DeleteScope, ErrorCode, EventKind};

impl ClientCore {
    /// A conversation-stream frame.
    pub fn conv(&mut self, conv: ConvId, down: ConvDown) -> Vec<Output> {
        if let Some(s) = self.convs.get_mut(&conv) {
            if s.gone && down != ConvDown::Closed {
                // A room this user is no longer in: what still comes on its closing stream
                // was sent before the removal, and the `left` event already said why.
                return std::mem::take(&mut self.out);
            }
            s.used = self.now;
        }
        match down {
            ConvDown::Event(e) => self.conv_event(&conv, e, true),
            ConvDown::Backlog(e) => self.conv_event(&conv, e, false),
            ConvDown::CaughtUp { upto, more } => {
                if let Some(s) = self.convs.get_mut(&conv) {
                    s.last_seq = Some(s.last_seq.unwrap_or(0).max(upto));
                    self.dirty = true;
                    if more {
                        self.out
                            .push(Output::Conv(conv, ConvUp::Catchup { after: upto }));
                    } else {
                        s.stream = Stream::Open;
                        if self.flush_outbox(&conv) {
                            // Barriers already on this stream came before these sends:
                            // extend them past the sends.
                            let mut tokens = Vec::new();
                            for b in self.barriers.iter_mut().filter(|b| b.sent) {
                                b.waiting += 1;
                                tokens.push(b.token);
                            }
                            for token in tokens {
                                self.conv_out(&conv, ConvUp::Sync { token });
                            }
                        }
                        self.complete_barriers();
                    }
                }
            }
            ConvDown::Ack { cmid, id, seq, ts } => {
                let ours = self.outbox.iter().any(|p| p.cmid == cmid);
                if !ours
                    && let Some(s) = self.convs.get_mut(&conv)
                    && s.stream == Stream::Open
                    && s.last_seq.is_some_and(|l| l + 1 == seq)
                {
                    // A frame the transport sent itself (an MLS commit): its number is
                    // ours, no event of it will come on this stream.
                    s.last_seq = Some(seq);
                    self.dirty = true;
                }
                if let Some(i) = self.outbox.iter().position(|p| p.cmid == cmid) {
                    let p = self.outbox.remove(i);
                    self.shown.insert(id);
                    if let Some(s) = self.convs.get_mut(&conv)
                        && s.stream == Stream::Open
                        && s.last_seq.is_none_or(|l| l + 1 == seq)
                    {
                        s.last_seq = Some(seq);
                        self.dirty = true;
                    }
                    self.settled(p, id, seq, ts);
                }
            }
            ConvDown::History { events, more } => {
                if let Some(s) = self.convs.get_mut(&conv) {
                    s.history = s.history.saturating_sub(1);
                }
                let messages = self.history_items(&conv, events);
                let conv = self.label(&conv);
                self.event(Event::History {
                    conv,
                    messages,
                    more,
                });
            }
            ConvDown::SyncAck { token } => {
                if let Some(s) = self.convs.get_mut(&conv)
                    && let Some(i) = s.syncs.iter().position(|t| *t == token)
                {
                    s.syncs.remove(i);
                }
                self.barrier_ack(token);
            }
            ConvDown::Closed => {
                if let Some(s) = self.convs.get_mut(&conv)
                    && s.stream == Stream::Closing
                {
                    s.stream = Stream::Closed;
                    if std::mem::take(&mut s.gone) && !s.want {
                        // Left for good (no rejoin meanwhile): nothing to remember.
                        self.convs.remove(&conv);
                    }
                    self.open_wanted();
                    self.complete_barriers();
                }
            }
            ConvDown::PeerKey { user, key } => self.pin_peer_key(&user, key),
            ConvDown::Error {
                code,
                message,
                cmid,
            } => {
                match cmid {
                    // The server failed to store it: keep it, it goes again after the next
                    // reconnect.
                    Some(_) if code == ErrorCode::Internal => {}
                    Some(cmid) => {
                        let before = self.outbox.len();
                        self.outbox.retain(|p| p.cmid != cmid);
                        if self.outbox.len() == before {
                            // Already settled (e.g. its conversation failed to open).
                            return std::mem::take(&mut self.out);
                        }
                    }
                    None => {
                        // A refused request that was not a send is most likely a history
                        // request: it is answered.
                        if let Some(s) = self.convs.get_mut(&conv) {
                            s.history = s.history.saturating_sub(1);
                        }
                        // The conversation could not be opened (e.g. unknown user): forget
                        // it and what was queued for it. Requests queued behind the open
                        // fail too; the first error already said why.
                        match self.convs.get(&conv).map(|s| s.stream) {
                            Some(Stream::CatchingUp) => {
                                self.convs.remove(&conv);
                                self.outbox.retain(|p| p.conv != conv);
                                self.complete_barriers();
                            }
                            None => return std::mem::take(&mut self.out),
                            Some(_) => {}
                        }
                    }
                }
                self.event(Event::error(code, message));
            }
        }
        std::mem::take(&mut self.out)
    }

    pub(super) fn conv_event(&mut self, conv: &ConvId, e: ConvEvent, live: bool) {
        let Some(state) = self.convs.get_mut(conv) else {
            return;
        };
        let last = state.last_seq.unwrap_or(0);
        if state.last_seq.is_some() && e.seq <= last {
            return;
        }
        if live && !matches!(state.stream, Stream::Open | Stream::Closing) {
            // A catch-up is under way and will include this event, in order.
            return;
        }
        if live && e.seq > last + 1 && state.stream == Stream::Closing {
            // A gap on a closing stream: the reopen catches up from where we are.
            state.want = true;
            return;
        }
        if live && e.seq > last + 1 {
            // A gap: ask again from where we are; this event comes back in order.
            state.stream = Stream::CatchingUp;
            self.out
                .push(Output::Conv(conv.clone(), ConvUp::Catchup { after: last }));
            return;
        }
        state.last_seq = Some(e.seq);
        self.dirty = true;
        let label = self.label(conv);
        match e.kind {
            // An MLS commit, or a message not for this device: only its number counts.
            EventKind::Handshake => {}
            EventKind::Tombstone { target } => {
                self.forget_unread(conv, target);
                self.event(Event::Deleted {
                    conv: label,
                    id: target,
                    scope: DeleteScope::Everyone,
                });
            }
            kind => {
                if !self.shown.insert(e.id) {
                    return;
                }
                // Our own message, stored before a disconnect ate the ack.
                if let Some(i) = self
                    .outbox
                    .iter()
                    .position(|p| p.cmid == e.cmid && e.sender.eq_ignore_ascii_case(&self.me))
                {
                    let p = self.outbox.remove(i);
                    self.settled(p, e.id, e.seq, e.ts);
                    return;
                }
                if matches!(kind, EventKind::Edit { .. } | EventKind::Reaction { .. }) {
                    let e = ConvEvent { kind, ..e };
                    return self.op_event(conv, e);
                }
                let (reply_to, text, file, edited) = match kind {
                    EventKind::Message { body } => {
                        let (r, t, f) = shown_text(&body);
                        (r, Some(t), f, false)
                    }
                    EventKind::Edited { body } => {
                        let (r, t, f) = shown_text(&body);
                        (r, Some(t), f, true)
                    }
                    _ => (None, None, None, false),
                };
                if text.is_some() {
                    self.known.message(conv, e.id, reply_to, file.is_some());
                }
                let (mentions, mentions_me) =
                    self.mentions_of(conv, &e.sender, text.as_deref(), e.mentions);
                if text.is_some() && !e.sender.eq_ignore_ascii_case(&self.me) {
                    self.note_unread(conv, e.seq, e.id, mentions_me);
                }
                self.typing_done(conv, &e.sender);
                self.event(Event::Message {
                    conv: label,
                    id: e.id,
                    seq: e.seq,
                    from: e.sender,
                    text,
                    ts: e.ts,
                    file,
                    reply_to,
                    edited,
                    mentions,
                    mentions_me,
                    e2e: false,
                });
            }
        }
    }
}
