//! `sync` barriers: answered once every earlier command was handled by the server and
//! every event it sent before answering, on any stream, has been shown.

use super::streams::Stream;
use super::{ClientCore, Ending, Event, Output};
use crate::app::ids::ConvId;
use crate::app::protocol::{ControlUp, ConvUp};

#[derive(Debug)]
pub(super) struct Barrier {
    pub(super) token: u64,
    pub(super) sent: bool,
    pub(super) waiting: usize,
    /// 1: waiting for every stream to answer (every earlier command handled, its effects
    /// queued); 2: asked every stream again, so whatever those commands queued on *other*
    /// streams has arrived too.
    pub(super) round: u8,
}

impl ClientCore {
    /// Queues a barrier (sent now if online, else after the next login).
    pub(super) fn push_barrier(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.barriers.push_back(Barrier {
            token,
            sent: false,
            waiting: 0,
            round: 1,
        });
        if self.online {
            self.send_barriers();
        }
        token
    }

    pub(super) fn send_barriers(&mut self) {
        let open = self.open_streams();
        for i in 0..self.barriers.len() {
            if self.barriers[i].sent {
                continue;
            }
            let token = self.barriers[i].token;
            self.sync_frames(token, &open);
            self.barriers[i].sent = true;
            self.barriers[i].round = 1;
            self.barriers[i].waiting = 1 + open.len();
        }
    }

    pub(super) fn sync_frames(&mut self, token: u64, open: &[ConvId]) {
        self.out.push(Output::Control(ControlUp::Sync { token }));
        for c in open {
            self.conv_out(c, ConvUp::Sync { token });
        }
    }

    pub(super) fn barrier_ack(&mut self, token: u64) {
        if let Some(b) = self
            .barriers
            .iter_mut()
            .find(|b| b.token == token && b.sent)
        {
            b.waiting = b.waiting.saturating_sub(1);
        }
        self.complete_barriers();
    }

    pub(super) fn complete_barriers(&mut self) {
        // A stream catching up, closing (its last events still coming) or waiting to open
        // (news reported on the control stream) holds every barrier.
        if self.convs.values().any(|s| {
            matches!(s.stream, Stream::CatchingUp | Stream::Closing)
                || (s.stream == Stream::Closed && s.want)
        }) {
            return;
        }
        while let Some(b) = self.barriers.front_mut() {
            if !b.sent || b.waiting > 0 {
                break;
            }
            if b.round == 1 {
                let token = b.token;
                let open = self.open_streams();
                if let Some(b) = self.barriers.front_mut() {
                    b.round = 2;
                    b.waiting = 1 + open.len();
                }
                self.sync_frames(token, &open);
                break;
            }
            let done = self.barriers.pop_front().map(|b| b.token);
            match self.ending {
                // The drain barrier: everything before it is handled. Log out, or drain
                // again if a file message was queued meanwhile.
                Ending::Draining { token } if done == Some(token) => {
                    if self.outbox.is_empty() {
                        self.log_out();
                    } else {
                        self.start_drain();
                    }
                    return;
                }
                _ => self.event(Event::Sync),
            }
        }
    }
}
