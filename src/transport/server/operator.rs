//! The operator's view of a running server: the core's [`ServerLog`] entries on a bounded
//! channel the hub never waits on.
//!
//! One entry per message means a window or a stdout pipe that falls behind would either
//! grow the server's memory (an unbounded channel) or stall every chat (a blocking send).
//! Instead traffic entries (`Message`, `Deleted`) may fill three quarters of the channel
//! and are dropped beyond; connection entries (connected, disconnected, migrated, refused,
//! storage failures), which the headless contract and the window's client list rely on,
//! have the last quarter to themselves and are dropped only when the whole channel is full.
//! Every drop is counted, and the count reaches the operator as one [`ServerEvent::Dropped`]
//! ahead of the next entry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::app::server::ServerLog;

/// Entries the operator's channel holds.
const CAPACITY: usize = 4096;
/// Room kept free of traffic entries, for connection entries.
const RESERVED: usize = CAPACITY / 4;

/// What the operator receives.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    /// An entry of the server core's log.
    Log(ServerLog),
    /// This many entries were dropped since the last report because the operator's view
    /// fell behind (traffic first; see the module docs).
    Dropped(u64),
}

/// The hub's end: posts entries without ever waiting.
pub(super) struct OperatorLog {
    tx: mpsc::Sender<ServerLog>,
    dropped: Arc<AtomicU64>,
}

impl OperatorLog {
    /// A new channel: the hub's end and the operator's.
    pub fn channel() -> (Self, ServerEvents) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let events = ServerEvents {
            rx,
            dropped: dropped.clone(),
        };
        (Self { tx, dropped }, events)
    }

    /// Logs an entry through `tracing` and offers it to the operator.
    pub fn post(&self, entry: ServerLog) {
        trace_entry(&entry);
        let traffic = matches!(entry, ServerLog::Message { .. } | ServerLog::Deleted { .. });
        if traffic && self.tx.capacity() <= RESERVED {
            return self.drop_one();
        }
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.drop_one(),
            // Nobody took the events, or they were dropped: nothing to report to.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn drop_one(&self) {
        if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            warn!("the operator's view is falling behind: dropping log entries");
        }
    }
}

/// The operator's end of the log (see [`crate::transport::server::Server::take_events`]).
pub struct ServerEvents {
    rx: mpsc::Receiver<ServerLog>,
    dropped: Arc<AtomicU64>,
}

impl ServerEvents {
    /// The next event; `None` once the server has stopped.
    pub async fn recv(&mut self) -> Option<ServerEvent> {
        if let Some(n) = self.take_dropped() {
            return Some(ServerEvent::Dropped(n));
        }
        self.rx.recv().await.map(ServerEvent::Log)
    }

    /// [`ServerEvents::recv`] for a thread outside the runtime (e.g. one writing stdout).
    pub fn blocking_recv(&mut self) -> Option<ServerEvent> {
        if let Some(n) = self.take_dropped() {
            return Some(ServerEvent::Dropped(n));
        }
        self.rx.blocking_recv().map(ServerEvent::Log)
    }

    fn take_dropped(&self) -> Option<u64> {
        match self.dropped.swap(0, Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }
}

/// The server's own log line for an entry (`RUST_LOG`), independent of the operator's view.
fn trace_entry(l: &ServerLog) {
    match l {
        ServerLog::ClientConnected {
            user,
            addr,
            conn,
            resumed,
        } => info!(%conn, %user, %addr, resumed, "client connected"),
        ServerLog::ClientDisconnected { user, addr, conn } => {
            info!(%conn, %user, %addr, "client disconnected")
        }
        ServerLog::ClientMigrated {
            user,
            addr,
            from,
            conn,
        } => info!(%conn, %user, %from, %addr, "client migrated"),
        ServerLog::Message { from, to, .. } => debug!(%from, %to, "message"),
        ServerLog::Deleted { by, id, .. } => debug!(%by, id, "deleted for everyone"),
        ServerLog::LoginRefused { addr, user, reason } => {
            info!(%addr, %user, %reason, "login refused")
        }
        ServerLog::RoomCreated {
            room,
            by,
            visibility,
        } => info!(%room, %by, ?visibility, "room created"),
        ServerLog::RoomUpdated { room, members, .. } => debug!(%room, members, "room updated"),
        ServerLog::RoomClosed { room } => info!(%room, "room closed"),
        ServerLog::StoreFailed { error, full: true } => {
            warn!(%error, "out of storage space: writes are refused with server_full until there is room")
        }
        ServerLog::StoreFailed { error, .. } => warn!(%error, "storage failure"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ids::ConnId;

    fn message() -> ServerLog {
        ServerLog::Message {
            conn: None,
            id: 1,
            from: "alice".into(),
            to: "#general".into(),
            text: None,
        }
    }

    fn connected(n: u64) -> ServerLog {
        ServerLog::ClientConnected {
            conn: ConnId(n),
            user: format!("user{n}"),
            addr: "127.0.0.1:1".parse().unwrap(),
            resumed: false,
        }
    }

    #[test]
    fn traffic_is_shed_first_counted_and_never_waits() {
        let (log, mut events) = OperatorLog::channel();
        // Nobody reads: posting must neither block nor grow without bound.
        for _ in 0..CAPACITY * 2 {
            log.post(message());
        }
        let traffic_dropped = (CAPACITY * 2 - (CAPACITY - RESERVED)) as u64;
        // Connection entries still have the reserved room.
        for n in 0..RESERVED as u64 {
            log.post(connected(n));
        }
        log.post(connected(u64::MAX));
        let first = events.blocking_recv();
        assert!(
            matches!(first, Some(ServerEvent::Dropped(n)) if n == traffic_dropped + 1),
            "{first:?}"
        );
        let mut messages = 0;
        let mut connections = 0;
        drop(log);
        while let Some(ev) = events.blocking_recv() {
            match ev {
                ServerEvent::Log(ServerLog::Message { .. }) => messages += 1,
                ServerEvent::Log(ServerLog::ClientConnected { .. }) => connections += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(messages, CAPACITY - RESERVED);
        assert_eq!(connections, RESERVED);
    }
}
