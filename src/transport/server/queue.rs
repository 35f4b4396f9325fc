//! A connection's outgoing queue: bounded in frames and counted in bytes, so a client that
//! stops reading is cut off instead of growing the server's memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::app::ids::ConvId;
use crate::app::protocol::{ControlDown, ConvDown, ConvEvent};
use crate::transport::quic::SendStream;

/// One output for one connection. Small (see the test below): a connection's queue
/// allocates its first block of slots when it is made, idle or not, so the large frames
/// are boxed and only the hot one (a shared event) is stored inline.
pub(super) enum ConnOut {
    /// On the control stream.
    Control(Box<ControlDown>),
    /// On a conversation's stream.
    Conv(ConvId, Box<ConvDown>),
    /// A live event on a conversation's stream, shared with its other recipients (written
    /// as [`ConvDown::Event`], its body sealed for this session).
    Event(ConvId, Arc<ConvEvent>),
    /// Close with this code after flushing what is queued.
    Close(u32, String),
    /// The user left (or was removed from) this room: every frame of it queued before this
    /// marker is skipped; the writer writes the room's frames again after it (a rejoin).
    Revoked(ConvId),
    /// A conversation stream the client opened: its send half, for the writer. Queued by
    /// the stream's reader before it hands the `Open` to the hub, so the writer has it
    /// before any answer on it (one queue, in order).
    Stream(ConvId, Box<SendStream>),
}

impl ConnOut {
    /// Approximate memory a queued output holds (for the per-connection cap).
    pub fn cost(&self) -> usize {
        const FRAME: usize = 64;
        let body = |e: &ConvEvent| e.kind.body_len() + FRAME;
        match self {
            ConnOut::Conv(_, down) => match &**down {
                ConvDown::Event(e) | ConvDown::Backlog(e) => body(e),
                ConvDown::History { events, .. } => events.iter().map(body).sum::<usize>() + FRAME,
                _ => FRAME,
            },
            ConnOut::Event(_, e) => body(e),
            _ => FRAME,
        }
    }
}

/// A connection's outgoing queue. Every output is counted in `queued` (the writer subtracts
/// it once written), whoever sends it: the hub, or the connection's own readers.
#[derive(Clone)]
pub(super) struct ConnQueue {
    tx: mpsc::Sender<ConnOut>,
    queued: Arc<AtomicUsize>,
    /// Rooms revoked and not yet passed by the writer ([`ConnOut::Revoked`] markers still
    /// queued, counted): their frames are not written. Set by the hub at once, so frames
    /// already queued for a removed member never reach them.
    revoked: Arc<Mutex<HashMap<ConvId, u32>>>,
}

/// The queue was over its byte cap or full: the client does not read.
pub(super) struct QueueFull {
    /// Bytes that would have been queued.
    pub bytes: usize,
    /// Frames queued.
    pub frames: usize,
}

impl ConnQueue {
    /// A queue of at most `frames` outputs, and the receiving end for the writer.
    pub fn new(frames: usize) -> (Self, mpsc::Receiver<ConnOut>) {
        let (tx, rx) = mpsc::channel(frames);
        let queued = Arc::new(AtomicUsize::new(0));
        let revoked = Arc::default();
        (
            Self {
                tx,
                queued,
                revoked,
            },
            rx,
        )
    }

    /// Queues from a connection task, waiting for room.
    pub async fn send(&self, out: ConnOut) {
        let cost = out.cost();
        self.queued.fetch_add(cost, Ordering::Relaxed);
        if self.tx.send(out).await.is_err() {
            self.queued.fetch_sub(cost, Ordering::Relaxed);
        }
    }

    /// Queues from the hub, which never waits: over `max_bytes`, or with no room, the
    /// output is refused and the caller cuts the connection off.
    pub fn try_send(&self, out: ConnOut, max_bytes: usize) -> Result<(), QueueFull> {
        let cost = out.cost();
        let before = self.queued.fetch_add(cost, Ordering::Relaxed);
        let bytes = before.saturating_add(cost);
        if bytes > max_bytes || self.tx.try_send(out).is_err() {
            let frames = self.tx.max_capacity() - self.tx.capacity();
            return Err(QueueFull { bytes, frames });
        }
        Ok(())
    }

    /// The hub removed this connection's user from a room: from now until the writer
    /// reaches the [`ConnOut::Revoked`] marker queued next, frames of `conv` are skipped.
    pub fn revoke(&self, conv: &ConvId) {
        let mut r = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        *r.entry(conv.clone()).or_default() += 1;
    }

    /// The writer reached a [`ConnOut::Revoked`] marker.
    pub fn passed_revoke(&self, conv: &ConvId) {
        let mut r = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = r.get_mut(conv) {
            *n -= 1;
            if *n == 0 {
                r.remove(conv);
            }
        }
    }

    /// Whether frames of `conv` are to be skipped now.
    pub fn is_revoked(&self, conv: &ConvId) -> bool {
        let r = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        r.contains_key(conv)
    }

    /// The writer wrote outputs worth `cost`.
    pub fn written(&self, cost: usize) {
        self.queued.fetch_sub(cost, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue's first block holds 32 slots from the start (tokio's `mpsc`): at 64 bytes a
    /// slot that is 2 KiB per idle connection; unboxed frames made it ~6 KiB.
    #[test]
    fn an_output_is_small() {
        assert!(
            std::mem::size_of::<ConnOut>() <= 64,
            "{} bytes",
            std::mem::size_of::<ConnOut>()
        );
    }
}
