//! A connection's way out: the task that takes its queue, seals message bodies for this
//! session and writes frames in batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::context::ConnCtx;
use super::queue::ConnOut;
use crate::app::ids::ConvId;
use crate::app::protocol::{ControlDown, ConvDown, ConvEvent};
use crate::transport::codec;
use crate::transport::envelope::SessionKeys;
use crate::transport::quic::{self, SendStream};

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
            let Some(first) = self.rx.recv().await else {
                return;
            };
            let (mut cost, mut buffered, mut close) = (0, 0, None);
            // Streams whose last frame (`Closed`) is in this batch: it is written after the
            // rest of the batch, then the stream is finished.
            let mut finished = Vec::new();
            let mut next = Some(first);
            while let Some(out) = next.take() {
                cost += out.cost();
                let frame = match out {
                    // A conversation stream the client opened, before anything on it.
                    ConnOut::Stream(conv, s) => {
                        streams.insert(conv, *s);
                        None
                    }
                    ConnOut::Control(down) => Some((None, self.control_frame(*down))),
                    // The end of a stream the client closed. Never skipped, not even for a
                    // room the user was just removed from (a `Close` for idleness can cross
                    // the removal): it carries nothing of the room, and the client reads
                    // the stream until it comes. Kept apart from the batch's buffers, which
                    // a revoke marker empties.
                    ConnOut::Conv(conv, down) if matches!(*down, ConvDown::Closed) => {
                        if streams.contains_key(&conv) {
                            finished.push(conv);
                        }
                        None
                    }
                    // A room the user was removed from: what was queued is never written.
                    ConnOut::Conv(conv, _) | ConnOut::Event(conv, _)
                        if self.ctx.queue.is_revoked(&conv) =>
                    {
                        None
                    }
                    // A shared event: sealed into this session's own copy (the clear body
                    // is read, never copied).
                    ConnOut::Event(conv, event) => streams
                        .contains_key(&conv)
                        .then(|| self.sealed(&conv, &event))
                        .flatten()
                        .map(|down| (Some(conv), codec::encode(&down, codec::MAX_DOWN_FRAME))),
                    // Sealed only when there is a stream to write it on.
                    ConnOut::Conv(conv, mut down) => (streams.contains_key(&conv)
                        && self.seal(&conv, &mut down))
                    .then(|| (Some(conv), codec::encode(&down, codec::MAX_DOWN_FRAME))),
                    // Everything of the room queued before the removal was skipped. The
                    // stream stays until the client closes it (its `Closed` is written
                    // after this marker); a rejoin opens a new one.
                    ConnOut::Revoked(conv) => {
                        self.ctx.queue.passed_revoke(&conv);
                        bufs.remove(&Some(conv));
                        None
                    }
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
            for conv in finished {
                if let Some(mut s) = streams.remove(&conv) {
                    let closed = codec::encode(&ConvDown::Closed, codec::MAX_DOWN_FRAME);
                    if let Ok(bytes) = closed
                        && let Err(e) = s.write_all(&bytes).await
                    {
                        debug!("write failed: {e}");
                        return;
                    }
                    let _ = s.finish();
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
    /// The conversation's key is built only for downs that carry events (acks and the like
    /// are most of the traffic and need none).
    fn seal(&self, conv: &ConvId, down: &mut ConvDown) -> bool {
        let keys = &self.ctx.keys;
        match down {
            ConvDown::Event(e) | ConvDown::Backlog(e) => {
                seal_event_body(keys, &conv.storage_key(), e)
            }
            ConvDown::History { events, .. } => {
                let conv_key = conv.storage_key();
                events
                    .iter_mut()
                    .all(|e| seal_event_body(keys, &conv_key, e))
            }
            _ => true,
        }
    }

    /// A shared event as this session's [`ConvDown::Event`], its body sealed; `None` if it
    /// cannot be.
    fn sealed(&self, conv: &ConvId, event: &ConvEvent) -> Option<ConvDown> {
        self.ctx
            .keys
            .sealed_event(&conv.storage_key(), event)
            .inspect_err(|err| warn!("cannot seal: {err}"))
            .ok()
            .map(ConvDown::Event)
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
    keys.seal_event_body(conv_key, e)
        .inspect_err(|err| warn!("cannot seal: {err}"))
        .is_ok()
}
