//! A connection's way out: the bounded queue every output goes through (counted in bytes,
//! so a client that stops reading is cut off instead of growing the server's memory), and
//! the writer task that seals message bodies for this session and writes frames in batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::connection::ConnCtx;
use crate::app::ids::ConvId;
use crate::app::protocol::{ControlDown, ConvDown, ConvEvent, EventKind};
use crate::transport::codec;
use crate::transport::envelope::{Aad, Direction, SessionKeys};
use crate::transport::quic::{self, SendStream};

/// One output for one connection.
pub(super) enum ConnOut {
    /// On the control stream.
    Control(ControlDown),
    /// On a conversation's stream.
    Conv(ConvId, ConvDown),
    /// Close with this code after flushing what is queued.
    Close(u32, String),
}

impl ConnOut {
    /// Approximate memory a queued output holds (for the per-connection cap).
    fn cost(&self) -> usize {
        const FRAME: usize = 64;
        let body = |e: &ConvEvent| match &e.kind {
            EventKind::Message { body } => body.len(),
            _ => 0,
        } + FRAME;
        match self {
            ConnOut::Conv(_, ConvDown::Event(e) | ConvDown::Backlog(e)) => body(e),
            ConnOut::Conv(_, ConvDown::History { events, .. }) => {
                events.iter().map(body).sum::<usize>() + FRAME
            }
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
        (Self { tx, queued }, rx)
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

    /// The writer wrote outputs worth `cost`.
    fn written(&self, cost: usize) {
        self.queued.fetch_sub(cost, Ordering::Relaxed);
    }
}

/// Frames encoded since the last flush are written together once this many bytes are
/// buffered (or nothing more is queued).
const BATCH_BYTES: usize = 256 * 1024;

/// The task that owns a connection's send streams.
pub(super) struct Writer {
    /// The connection.
    pub ctx: Arc<ConnCtx>,
    /// The control stream's send half.
    pub control: SendStream,
    /// What to send.
    pub rx: mpsc::Receiver<ConnOut>,
    /// Conversation streams, registered by their readers before the hub can answer on them.
    pub streams_rx: mpsc::UnboundedReceiver<(ConvId, SendStream)>,
    /// This session's ephemeral public key, filled into the `LoginOk` the core produces.
    pub server_pub: [u8; 32],
}

impl Writer {
    /// Writes until the queue ends, a write fails, or a `Close` has been flushed.
    pub async fn run(mut self) {
        let mut streams: HashMap<ConvId, SendStream> = HashMap::new();
        // Frames encoded since the last flush, per stream (`None`: the control stream). Under
        // load many frames go out in one write, so quinn packs them into few packets; when
        // idle a batch is one frame and nothing waits.
        let mut bufs: HashMap<Option<ConvId>, Vec<u8>> = HashMap::new();
        loop {
            let first = tokio::select! {
                biased;
                Some((conv, s)) = self.streams_rx.recv() => {
                    streams.insert(conv, s);
                    continue;
                }
                out = self.rx.recv() => match out {
                    Some(o) => o,
                    None => return,
                },
            };
            let (mut cost, mut buffered, mut close) = (0, 0, None);
            let mut next = Some(first);
            while let Some(out) = next.take() {
                // Streams registered before this output was produced are already queued.
                while let Ok((conv, s)) = self.streams_rx.try_recv() {
                    streams.insert(conv, s);
                }
                cost += out.cost();
                let frame = match out {
                    ConnOut::Control(down) => Some((None, self.control_frame(down))),
                    ConnOut::Conv(conv, mut down) => (self.seal(&conv, &mut down)
                        && streams.contains_key(&conv))
                    .then(|| (Some(conv), codec::encode(&down, codec::MAX_DOWN_FRAME))),
                    ConnOut::Close(code, reason) => {
                        close = Some((code, reason));
                        break;
                    }
                };
                match frame {
                    Some((dest, Ok(bytes))) => {
                        buffered += bytes.len();
                        bufs.entry(dest).or_default().extend_from_slice(&bytes);
                    }
                    Some((_, Err(e))) => warn!("frame not sent: {e}"),
                    None => {}
                }
                if buffered < BATCH_BYTES {
                    next = self.rx.try_recv().ok();
                }
            }
            for (dest, buf) in bufs.drain() {
                let stream = match &dest {
                    None => Some(&mut self.control),
                    Some(conv) => streams.get_mut(conv),
                };
                if let Some(stream) = stream
                    && let Err(e) = stream.write_all(&buf).await
                {
                    debug!("write failed: {e}");
                    return;
                }
            }
            self.ctx.queue.written(cost);
            if let Some((code, reason)) = close {
                return self.close(streams, code, &reason).await;
            }
        }
    }

    /// A control frame; a `LoginOk` gets this session's key, and marks the login accepted.
    fn control_frame(&self, mut down: ControlDown) -> Result<Vec<u8>, codec::FrameError> {
        if let ControlDown::LoginOk {
            session_pub, user, ..
        } = &mut down
        {
            *session_pub = self.server_pub;
            let _ = self.ctx.logged_in.set(user.to_ascii_lowercase());
        }
        codec::encode(&down, codec::MAX_DOWN_FRAME)
    }

    /// Seals the message bodies of `down` for this session; `false` if one cannot be.
    fn seal(&self, conv: &ConvId, down: &mut ConvDown) -> bool {
        let conv_key = conv.storage_key();
        let keys = &self.ctx.keys;
        match down {
            ConvDown::Event(e) | ConvDown::Backlog(e) => seal_event_body(keys, &conv_key, e),
            ConvDown::History { events, .. } => events
                .iter_mut()
                .all(|e| seal_event_body(keys, &conv_key, e)),
            _ => true,
        }
    }

    /// Graceful: finish every stream, give the peer a moment to receive what was queued,
    /// then close.
    async fn close(mut self, mut streams: HashMap<ConvId, SendStream>, code: u32, reason: &str) {
        let _ = self.control.finish();
        for s in streams.values_mut() {
            let _ = s.finish();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let _ = tokio::time::timeout_at(deadline, self.control.stopped()).await;
        for s in streams.values_mut() {
            let _ = tokio::time::timeout_at(deadline, s.stopped()).await;
        }
        self.ctx.conn.close(quic::code(code), reason.as_bytes());
    }
}

fn seal_event_body(keys: &SessionKeys, conv_key: &str, e: &mut ConvEvent) -> bool {
    if let EventKind::Message { body } = &mut e.kind {
        let aad = Aad {
            dir: Direction::Down,
            conv: conv_key,
            sender: &e.sender,
            cmid: e.cmid,
        };
        match keys.down.seal(&aad, body) {
            Ok(sealed) => *body = sealed,
            Err(err) => {
                warn!("cannot seal: {err}");
                return false;
            }
        }
    }
    true
}
