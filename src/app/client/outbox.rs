//! The outbox: messages sent and not yet acknowledged, written once their conversation can
//! take them and resent with the same client message id after a reconnect.

use super::streams::Stream;
use super::{ClientCore, Event, MAX_TEXT, Output};
use crate::app::files::FileInfo;
use crate::app::ids::{ClientMsgId, ConvId, MsgId};
use crate::app::protocol::{ConvUp, ErrorCode};

#[derive(Debug)]
pub(super) struct Pending {
    pub(super) cmid: ClientMsgId,
    pub(super) conv: ConvId,
    pub(super) text: String,
    /// Written on the current connection.
    pub(super) sent: bool,
    /// What it is (`text` is a message's text, an edit's new text or a reaction's emoji).
    pub(super) op: Op,
}

/// What an outbox entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// Post a message.
    Send,
    /// Replace the text of message `target`.
    Edit {
        /// The message.
        target: MsgId,
    },
    /// Add or remove a reaction to `target`.
    React {
        /// The message.
        target: MsgId,
        /// Add or remove.
        on: bool,
    },
}

impl ClientCore {
    /// Posts a file message (after its upload completed) with the file id as its client
    /// message id, through the outbox like any message.
    pub fn send_file_message(&mut self, conv: ConvId, info: &FileInfo) -> Vec<Output> {
        if let Some(cmid) = info.file_id() {
            self.outbox.push(Pending {
                cmid,
                conv: conv.clone(),
                text: info.to_text(),
                sent: false,
                op: Op::Send,
            });
            if self.online {
                self.ensure_open(&conv);
                self.flush_outbox(&conv);
            }
        }
        std::mem::take(&mut self.out)
    }

    pub(super) fn send(&mut self, to: &str, text: String, reply_to: Option<MsgId>) {
        let conv = match self.parse_conv(to) {
            Ok(c) => c,
            Err(e) => return self.event(e),
        };
        if self.reply_target(&conv, reply_to).is_err() {
            return;
        }
        let text = match text.is_empty() {
            true => text,
            false => crate::app::edits::wrap_reply(reply_to, &text),
        };
        if text.is_empty() {
            return self.event(Event::error(ErrorCode::BadRequest, "empty message"));
        }
        if text.len() > MAX_TEXT {
            let msg = format!("message is {} bytes; the limit is {MAX_TEXT}", text.len());
            return self.event(Event::error(ErrorCode::TooLarge, msg));
        }
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.id_prefix);
        id[8..].copy_from_slice(&self.next_cmid.to_be_bytes());
        self.next_cmid += 1;
        let cmid = ClientMsgId(id);
        self.outbox.push(Pending {
            cmid,
            conv: conv.clone(),
            text,
            sent: false,
            op: Op::Send,
        });
        if self.online {
            self.ensure_open(&conv);
            self.flush_outbox(&conv);
        }
    }

    /// Writes the conversation's unsent messages, in order, once it can take them: the room
    /// at once, a private conversation after its catch-up (which brings the peer's key).
    pub(super) fn flush_outbox(&mut self, conv: &ConvId) -> bool {
        let ready = self.convs.get(conv).is_some_and(|s| {
            s.stream == Stream::Open || (*conv == ConvId::General && s.stream == Stream::CatchingUp)
        });
        if !ready || !self.online {
            return false;
        }
        let mut any = false;
        for p in self
            .outbox
            .iter_mut()
            .filter(|p| p.conv == *conv && !p.sent)
        {
            p.sent = true;
            any = true;
            let body = p.text.clone().into_bytes();
            let up = match p.op {
                Op::Send => ConvUp::Send { cmid: p.cmid, body },
                Op::Edit { target } => ConvUp::Edit {
                    cmid: p.cmid,
                    target,
                    body,
                },
                // The key is the emoji; the transport replaces it with a keyed hash in a
                // private conversation.
                Op::React { target, on } => ConvUp::React {
                    cmid: p.cmid,
                    target,
                    on,
                    key: body.clone(),
                    body,
                },
            };
            self.out.push(Output::Conv(conv.clone(), up));
        }
        if any && let Some(s) = self.convs.get_mut(conv) {
            s.used = self.now;
        }
        any
    }
}
