//! Read state on the client: this user's read markers (shared with their other sessions
//! through the server), the unread and mention counts that follow from them (kept apart),
//! seen receipts from the other members and the receipts setting.
//!
//! The counts cover the messages this client has shown: a message from someone else
//! after the marker is unread until a marker at or past it arrives (from this session's
//! `read` or from another session's), and is also a mention when it names this user.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ClientCore, Command, Event, Output};
use crate::app::ids::{ConvId, MsgId, Seq};
use crate::app::protocol::{ControlDown, ControlUp, ErrorCode};

/// Unread messages in one conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unread {
    /// Messages from others after the read marker.
    pub messages: usize,
    /// Those of them that mention this user.
    pub mentions: usize,
}

/// One member's read position, as listed in a `seen_by` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenItem {
    /// The member.
    pub user: String,
    /// The newest sequence number they have read.
    pub upto: Seq,
}

/// What the client core keeps of read state.
#[derive(Debug)]
pub(super) struct ReadState {
    /// This user's markers.
    markers: BTreeMap<ConvId, Seq>,
    /// Shown messages from others after the marker: seq -> (id, mentions this user).
    unread: BTreeMap<ConvId, BTreeMap<Seq, (MsgId, bool)>>,
    /// Whether seen receipts are on (as the server last said; on until told otherwise).
    receipts: bool,
}

impl Default for ReadState {
    fn default() -> Self {
        Self {
            markers: BTreeMap::new(),
            unread: BTreeMap::new(),
            receipts: true,
        }
    }
}

impl ReadState {
    /// Moves the marker forward; whether it moved.
    fn advance(&mut self, conv: &ConvId, upto: Seq) -> bool {
        let marker = self.markers.entry(conv.clone()).or_default();
        if upto <= *marker {
            return false;
        }
        *marker = upto;
        if let Some(u) = self.unread.get_mut(conv) {
            *u = u.split_off(&(upto + 1));
        }
        true
    }
}

impl ClientCore {
    /// This user's read marker of `conv` (0: nothing read).
    pub fn read_marker(&self, conv: &ConvId) -> Seq {
        self.reads.markers.get(conv).copied().unwrap_or(0)
    }

    /// Unread messages and mentions of `conv` among those this client has shown.
    pub fn unread(&self, conv: &ConvId) -> Unread {
        let Some(u) = self.reads.unread.get(conv) else {
            return Unread::default();
        };
        Unread {
            messages: u.len(),
            mentions: u.values().filter(|(_, m)| *m).count(),
        }
    }

    /// Whether this user's seen receipts are on.
    pub fn receipts_on(&self) -> bool {
        self.reads.receipts
    }

    /// The newest sequence number this client has of `conv`.
    pub fn last_seq(&self, conv: &ConvId) -> Option<Seq> {
        self.convs.get(conv).and_then(|s| s.last_seq)
    }

    /// A message from someone else was shown: unread if after the marker.
    pub(super) fn note_unread(&mut self, conv: &ConvId, seq: Seq, id: MsgId, mentions_me: bool) {
        if seq > self.read_marker(conv) {
            self.reads
                .unread
                .entry(conv.clone())
                .or_default()
                .insert(seq, (id, mentions_me));
        }
    }

    /// A message is gone (deleted for everyone, or for this user): no longer unread.
    pub(super) fn forget_unread(&mut self, conv: &ConvId, id: MsgId) {
        if let Some(u) = self.reads.unread.get_mut(conv) {
            u.retain(|_, (i, _)| *i != id);
        }
    }

    /// `read`, `receipts`, `seen_by` and `typing` commands.
    pub(super) fn read_state_command(&mut self, cmd: Command) {
        let up = match cmd {
            Command::Read { conv, upto } => {
                let c = match self.parse_conv(&conv) {
                    Ok(c) => c,
                    Err(e) => return self.event(e),
                };
                let last = self.last_seq(&c);
                let Some(upto) = upto.or(last) else {
                    return;
                };
                // Counted as read here at once (never past what this client has); the
                // server keeps the larger marker, so a read that never reached it
                // (offline) is simply made again later.
                self.reads.advance(&c, last.map_or(upto, |l| upto.min(l)));
                ControlUp::Read { conv: c, upto }
            }
            Command::Receipts { on } => ControlUp::Receipts { on },
            Command::SeenBy { conv } => match self.parse_conv(&conv) {
                Ok(c) => ControlUp::SeenBy { conv: c },
                Err(e) => return self.event(e),
            },
            Command::Typing { conv } => match self.parse_conv(&conv) {
                Ok(c) => ControlUp::Typing { conv: c },
                Err(e) => return self.event(e),
            },
            _ => return,
        };
        match up {
            up if self.online => self.out.push(Output::Control(up)),
            // Offline: a read counts here and goes with the next one; typing is best effort.
            ControlUp::Read { .. } | ControlUp::Typing { .. } => {}
            _ => self.event(Event::error(
                ErrorCode::BadRequest,
                "not connected: try again once reconnected",
            )),
        }
    }

    /// Read-state and typing news from the server.
    pub(super) fn read_state_control(&mut self, down: ControlDown) {
        match down {
            ControlDown::ReadState { markers, receipts } => {
                self.reads.receipts = receipts;
                for (conv, upto) in markers {
                    self.reads.advance(&conv, upto);
                    let conv = self.label(&conv);
                    self.event(Event::Read { conv, upto });
                }
                self.event(Event::Receipts { on: receipts });
            }
            ControlDown::Read { conv, upto } if self.reads.advance(&conv, upto) => {
                let conv = self.label(&conv);
                self.event(Event::Read { conv, upto });
            }
            ControlDown::Seen { conv, user, upto } => {
                let conv = self.label(&conv);
                self.event(Event::Seen { conv, user, upto });
            }
            ControlDown::SeenBy { conv, members } => {
                let conv = self.label(&conv);
                let members = members
                    .into_iter()
                    .map(|(user, upto)| SeenItem { user, upto })
                    .collect();
                self.event(Event::SeenBy { conv, members });
            }
            ControlDown::Receipts { on } => {
                self.reads.receipts = on;
                self.event(Event::Receipts { on });
            }
            ControlDown::Typing { conv, user } => {
                self.typing_seen(&conv, &user);
                let conv = self.label(&conv);
                self.event(Event::Typing { conv, user });
            }
            _ => {}
        }
    }
}
