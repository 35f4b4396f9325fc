//! Conversation streams: opened on use, closed when idle or when the user leaves the room,
//! at most [`MAX_CONV_STREAMS`] at once.
//!
//! A stream's life is `Closed` → `CatchingUp` (sent `Open`) → `Open` (caught up) →
//! `Closing` (sent `Close`, read until the server's `Closed`) → `Closed`. Requests made
//! while a stream closes or waits for a slot are held and sent after its next `Open`.

use std::time::Duration;

use super::{ClientCore, Output};
use crate::app::ids::{ConvId, Seq};
use crate::app::protocol::ConvUp;

/// How long a conversation stream may go without a frame either way before the client
/// closes it (it reopens on the next use, or when the server reports activity).
pub const STREAM_IDLE: Duration = Duration::from_secs(60);

/// Conversation streams the client keeps open at once. The server grants 32 streams per
/// connection (`Limits::streams_per_conn`); the rest is for the control stream and file
/// transfers. Beyond this, the least recently used quiet stream is closed to make room.
pub const MAX_CONV_STREAMS: usize = 24;

/// A conversation stream's life: `Closed` → `CatchingUp` (sent `Open`) → `Open` (caught
/// up) → `Closing` (sent `Close`, reading until the server's `Closed`) → `Closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stream {
    Closed,
    CatchingUp,
    Open,
    Closing,
}

#[derive(Debug)]
pub(super) struct ConvState {
    pub(super) last_seq: Option<Seq>,
    pub(super) stream: Stream,
    /// To be opened as soon as it can be: asked for while closing, or while every stream
    /// slot was taken.
    pub(super) want: bool,
    /// Requests made while the stream was closing, sent after the next `Open`.
    pub(super) held: Vec<ConvUp>,
    /// History requests and barriers sent on this stream and not answered yet: a stream
    /// with either is never closed.
    pub(super) history: u32,
    /// The barrier tokens of those barriers.
    pub(super) syncs: Vec<u64>,
    /// The user is no longer in this room: the stream is closing for good and what still
    /// arrives on it is dropped (the server revoked it anyway). A rejoin opens a new stream
    /// once this one is closed.
    pub(super) gone: bool,
    /// When the last frame went either way (the core's clock, ms).
    pub(super) used: u64,
}

impl ConvState {
    pub(super) fn new(last_seq: Option<Seq>) -> Self {
        Self {
            last_seq,
            stream: Stream::Closed,
            want: false,
            held: Vec::new(),
            history: 0,
            syncs: Vec::new(),
            gone: false,
            used: 0,
        }
    }
}

impl ClientCore {
    /// Time passes (`now`: since any fixed start, never going back). Closes the streams
    /// that were quiet for the idle time and have nothing in flight, and opens those
    /// waiting for a free slot. The driver calls it every fraction of the idle time.
    pub fn tick(&mut self, now: Duration) -> Vec<Output> {
        self.now = self
            .now
            .max(u64::try_from(now.as_millis()).unwrap_or(u64::MAX));
        if self.online {
            let idle: Vec<ConvId> = self
                .convs
                .iter()
                .filter(|(c, s)| {
                    self.closable(c, s) && self.now.saturating_sub(s.used) >= self.stream_idle
                })
                .map(|(c, _)| c.clone())
                .collect();
            for conv in idle {
                self.close_stream(&conv);
            }
            self.open_wanted();
        }
        std::mem::take(&mut self.out)
    }

    /// The conversations whose stream is open (or opening or closing), by label.
    pub fn open_stream_labels(&self) -> Vec<String> {
        self.open_streams_where(|s| s != Stream::Closed)
            .iter()
            .map(|c| self.label(c))
            .collect()
    }

    /// Opens a conversation's stream (if connected and not open yet), e.g. to learn a
    /// peer's key before sealing a file for them.
    pub fn open_conv(&mut self, conv: &ConvId) -> Vec<Output> {
        if self.online {
            self.ensure_open(conv);
        }
        std::mem::take(&mut self.out)
    }

    /// Opens a conversation's stream if it is not open: now if a slot is free, else once
    /// one is (a quiet stream is closed to make room), or once its closing completes.
    pub(super) fn ensure_open(&mut self, conv: &ConvId) {
        let state = self
            .convs
            .entry(conv.clone())
            .or_insert_with(|| ConvState::new(None));
        match state.stream {
            Stream::Closed => state.want = true,
            Stream::Closing => {
                state.want = true;
                return;
            }
            Stream::CatchingUp | Stream::Open => return,
        }
        self.open_wanted();
    }

    /// Opens the streams wanted open, as far as slots allow; if some still wait, closes as
    /// many quiet streams (least recently used first) to make room for them.
    pub(super) fn open_wanted(&mut self) {
        let wanted: Vec<ConvId> = self
            .convs
            .iter()
            .filter(|(_, s)| s.stream == Stream::Closed && s.want)
            .map(|(c, _)| c.clone())
            .collect();
        let mut waiting = 0;
        for conv in wanted {
            if self.active_streams() < self.max_streams {
                self.open_now(&conv);
            } else {
                waiting += 1;
            }
        }
        if waiting == 0 {
            return;
        }
        let mut quiet: Vec<(u64, ConvId)> = self
            .convs
            .iter()
            .filter(|(c, s)| self.closable(c, s))
            .map(|(c, s)| (s.used, c.clone()))
            .collect();
        quiet.sort();
        for (_, conv) in quiet.into_iter().take(waiting) {
            self.close_stream(&conv);
        }
    }

    /// Sends `Open` (and what was held for the stream) now.
    pub(super) fn open_now(&mut self, conv: &ConvId) {
        let Some(state) = self.convs.get_mut(conv) else {
            return;
        };
        state.stream = Stream::CatchingUp;
        state.want = false;
        let after = state.last_seq;
        let held = std::mem::take(&mut state.held);
        self.conv_out(
            conv,
            ConvUp::Open {
                conv: conv.clone(),
                after,
            },
        );
        for up in held {
            self.conv_out(conv, up);
        }
    }

    /// Whether a stream may close: open, caught up, and nothing of its own in flight (no
    /// unacknowledged or unsent message, history request or barrier). What the server sends
    /// meanwhile still arrives: the client reads the stream until the server's `Closed`.
    pub(super) fn closable(&self, conv: &ConvId, s: &ConvState) -> bool {
        s.stream == Stream::Open
            && !s.want
            && s.history == 0
            && s.syncs.is_empty()
            && s.held.is_empty()
            && !self.outbox.iter().any(|p| p.conv == *conv)
    }

    /// Sends `Close`: nothing more goes on this stream; it is read until `Closed`.
    pub(super) fn close_stream(&mut self, conv: &ConvId) {
        if let Some(s) = self.convs.get_mut(conv) {
            s.stream = Stream::Closing;
            self.out.push(Output::Conv(conv.clone(), ConvUp::Close));
        }
    }

    /// A request on a conversation's stream (opened or opening), or held for its next
    /// opening while it closes or waits for a slot.
    pub(super) fn conv_out(&mut self, conv: &ConvId, up: ConvUp) {
        let Some(s) = self.convs.get_mut(conv) else {
            return;
        };
        if matches!(s.stream, Stream::Closing | Stream::Closed)
            && !matches!(up, ConvUp::Open { .. })
        {
            s.held.push(up);
            return;
        }
        match up {
            ConvUp::History { .. } => s.history += 1,
            ConvUp::Sync { token } => s.syncs.push(token),
            _ => {}
        }
        s.used = self.now;
        self.out.push(Output::Conv(conv.clone(), up));
    }

    /// The streams a barrier asks: opened or opening (a closing stream takes no more
    /// frames; barriers wait for its `Closed` instead).
    pub(super) fn open_streams(&self) -> Vec<ConvId> {
        self.open_streams_where(|s| matches!(s, Stream::CatchingUp | Stream::Open))
    }

    /// The conversations whose stream state passes `f`.
    pub(super) fn open_streams_where(&self, f: impl Fn(Stream) -> bool) -> Vec<ConvId> {
        self.convs
            .iter()
            .filter(|(_, s)| f(s.stream))
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Streams holding a slot (anything but closed).
    pub(super) fn active_streams(&self) -> usize {
        self.convs
            .values()
            .filter(|s| s.stream != Stream::Closed)
            .count()
    }
}
