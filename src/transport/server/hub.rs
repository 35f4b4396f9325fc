//! The hub: one thread that owns the [`ServerCore`] and its store. It handles a batch of
//! inputs inside one store transaction, commits, and routes the outputs (acks included)
//! only once the batch is durable: an acknowledged message is durable. The [`Router`]
//! delivers each output to a connection's bounded queue without waiting; a connection
//! whose queue is full is cut off, so a client that stops reading cannot slow anyone else.
//!
//! Pipelined group commit: where the store can leave the wait for the disk to another
//! thread ([`Store::split_durability`], SQLite), the hub hands each committed batch to a
//! committer thread and handles the next one at once. The committer takes every batch
//! queued for it, makes them durable with one sync (each of their commits returned before
//! it began), then routes them in order — so batches leave in the order they were handled
//! (the order per conversation is kept) and never before they are durable. Other stores
//! (PostgreSQL) commit durably on the hub thread, which then routes, as before.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use tokio::sync::{Semaphore, mpsc};
use tracing::{info, warn};

use super::operator::OperatorLog;
use super::queue::{ConnOut, ConnQueue, QueueFull};
use crate::app::ids::ConnId;
use crate::app::protocol::{ConvDown, ErrorCode};
use crate::app::server::{ClusterMsg, Input, LOGIN_REFUSED_REASON, Output, ServerCore, ServerLog};
use crate::app::store::{Durability, Store};
use crate::transport::auth;
use crate::transport::files::FileStore;
use crate::transport::quic::{self, Connection, close};

/// Inputs handled per store transaction at most.
const BATCH: usize = 256;

/// Committed batches waiting for the committer at most; the hub waits beyond (the disk is
/// that far behind).
const PIPELINE: usize = 64;

/// What the hub receives.
pub(super) enum HubMsg {
    /// A new connection, before its first input.
    Register(ConnId, Outbox),
    /// An input for the core.
    Input(Input),
    /// Checkpoint the store and end the thread.
    Stop,
}

/// A connection as the hub sees it: where its outputs go, and the connection itself, to
/// cut it off when it does not read.
pub(super) struct Outbox {
    /// Its outgoing queue.
    pub queue: ConnQueue,
    /// The QUIC connection.
    pub conn: Connection,
}

/// A connection appearing or gone, in the order the hub saw it.
enum ConnChange {
    /// Registered.
    Register(ConnId, Outbox),
    /// Disconnected: nothing more is routed to it.
    Gone(ConnId),
}

/// One handled and committed batch: its connection changes (applied first, in order, as
/// the hub handled them), then its outputs.
struct Batch {
    conns: Vec<ConnChange>,
    outputs: Vec<Output>,
}

/// Where committed batches go: routed on the hub thread (after a sync there, if the store
/// split it off and no committer thread could be started), or handed to the committer
/// thread that makes them durable first.
enum Release {
    Inline(Router, Option<Box<dyn Durability>>),
    Committer {
        tx: std_mpsc::SyncSender<Batch>,
        thread: std::thread::JoinHandle<()>,
    },
}

impl Release {
    fn new(router: Router, durability: Option<Box<dyn Durability>>) -> Self {
        let Some(durability) = durability else {
            return Release::Inline(router, None);
        };
        let (tx, rx) = std_mpsc::sync_channel(PIPELINE);
        // The router and the syncer come back if the thread cannot start.
        let parts = Arc::new(std::sync::Mutex::new(Some((router, durability))));
        let theirs = parts.clone();
        let spawned = std::thread::Builder::new()
            .name("livewire-commit".into())
            .spawn(move || {
                let taken = theirs.lock().unwrap_or_else(|e| e.into_inner()).take();
                let Some((router, durability)) = taken else {
                    return;
                };
                let run = std::panic::AssertUnwindSafe(move || committer(rx, router, durability));
                if std::panic::catch_unwind(run).is_err() {
                    eprintln!("livewire: internal error in the server's committer; exiting");
                    std::process::abort();
                }
            });
        match spawned {
            Ok(thread) => Release::Committer { tx, thread },
            Err(e) => {
                warn!("cannot start the committer thread ({e}): the hub waits for the disk");
                let taken = parts.lock().unwrap_or_else(|e| e.into_inner()).take();
                let (router, durability) = taken.expect("the thread never started");
                Release::Inline(router, Some(durability))
            }
        }
    }

    fn send(&mut self, batch: Batch) {
        match self {
            Release::Inline(router, durability) => {
                if let Some(d) = durability {
                    sync_or_abort(d.as_mut());
                }
                router.release(batch);
            }
            Release::Committer { tx, .. } => {
                if tx.send(batch).is_err() {
                    // The committer only ends by aborting the process.
                    warn!("the committer thread is gone");
                }
            }
        }
    }

    /// Waits until every batch sent is routed.
    fn finish(self) {
        if let Release::Committer { tx, thread } = self {
            drop(tx);
            let _ = thread.join();
        }
    }
}

/// Committed but perhaps never on disk, and after a failed fsync the kernel may have
/// dropped the pages: no later sync can vouch for them. Acknowledging anything now could
/// lie; a restart reads the truth from the disk (and the clients resend what was not
/// acknowledged). PostgreSQL does the same.
fn sync_or_abort(durability: &mut dyn Durability) {
    if let Err(e) = durability.sync() {
        eprintln!("livewire: the database could not be synced to disk: {e}; exiting");
        std::process::abort();
    }
}

/// The committer thread: one sync for everything queued, then the routing, in order.
fn committer(
    rx: std_mpsc::Receiver<Batch>,
    mut router: Router,
    mut durability: Box<dyn Durability>,
) {
    let mut group = Vec::new();
    while let Ok(first) = rx.recv() {
        group.push(first);
        while let Ok(b) = rx.try_recv() {
            group.push(b);
        }
        sync_or_abort(durability.as_mut());
        for batch in group.drain(..) {
            router.release(batch);
        }
    }
}

/// Runs the hub on the current thread until [`HubMsg::Stop`] or until every sender is gone.
pub(super) fn run<S: Store>(
    mut core: ServerCore<S>,
    mut rx: mpsc::Receiver<HubMsg>,
    router: Router,
) {
    let durability = core.store_mut().split_durability().unwrap_or_else(|e| {
        warn!("database: commits wait for the disk on the hub thread: {e}");
        None
    });
    let mut release = Release::new(router, durability);
    let mut stopped = false;
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut outputs = Vec::new();
        let mut conns = Vec::new();
        let mut stop = false;
        if let Err(e) = core.store_mut().begin() {
            warn!("database: {e}");
        }
        let now = super::now_ms();
        for msg in batch.drain(..) {
            match msg {
                HubMsg::Register(id, outbox) => conns.push(ConnChange::Register(id, outbox)),
                HubMsg::Input(input) => {
                    let gone = match &input {
                        Input::Disconnected { conn } => Some(*conn),
                        _ => None,
                    };
                    outputs.extend(core.handle(input, now));
                    if let Some(c) = gone {
                        conns.push(ConnChange::Gone(c));
                    }
                }
                HubMsg::Stop => stop = true,
            }
        }
        if let Err(e) = core.store_mut().commit() {
            if e.is_full() {
                warn!(
                    "out of storage space: {e}; writes are refused with server_full until there is room"
                );
            } else {
                warn!("database commit failed: {e}");
            }
            unsend_batch(&mut outputs, e.is_full());
        }
        release.send(Batch { conns, outputs });
        if stop {
            stopped = true;
            break;
        }
    }
    release.finish();
    if stopped && let Err(e) = core.store_mut().checkpoint() {
        warn!("checkpoint at shutdown: {e}");
    }
}

/// Nothing of a batch whose commit failed is durable: its new events go to nobody, and
/// each acknowledgement becomes an error for its sender — `server_full` on a full disk
/// (the client gives up on that message and says so), otherwise `internal` (the client
/// keeps it and sends it again after its next reconnect).
fn unsend_batch(outputs: &mut Vec<Output>, full: bool) {
    outputs.retain(|o| match o {
        Output::Conv {
            down: ConvDown::Event(_),
            ..
        }
        | Output::Event { .. } => false,
        Output::Publish(m) => !m.is_durable(),
        _ => true,
    });
    for o in outputs.iter_mut() {
        if let Output::Conv { down, .. } = o
            && let ConvDown::Ack { cmid, .. } = down
        {
            let (code, message) = if full {
                (
                    ErrorCode::ServerFull,
                    "the server is out of storage space; try again later",
                )
            } else {
                (
                    ErrorCode::Internal,
                    "the server could not store the message; it will be resent",
                )
            };
            *down = ConvDown::Error {
                code,
                message: message.into(),
                cmid: Some(*cmid),
            };
        }
    }
}

/// Where the hub's outputs go: connection queues, the password hashers, the operator.
pub(super) struct Router {
    /// Stored files (erased with their message).
    pub files: Arc<FileStore>,
    /// Registered connections.
    pub outboxes: HashMap<ConnId, Outbox>,
    /// The hub itself, for the hashers' answers.
    pub hub: mpsc::WeakSender<HubMsg>,
    /// The operator's view.
    pub operator: OperatorLog,
    /// The runtime the hashers run on.
    pub rt: tokio::runtime::Handle,
    /// Argon2 runs at most this many at once.
    pub hashers: Arc<Semaphore>,
    /// A connection's queue cap in bytes.
    pub queue_bytes: usize,
    /// Cluster mode: the link to the other nodes (`None`: a single node).
    pub cluster: Option<mpsc::Sender<ClusterMsg>>,
}

impl Router {
    /// Delivers a durable batch: its connection changes, then its outputs.
    fn release(&mut self, batch: Batch) {
        for change in batch.conns {
            match change {
                ConnChange::Register(id, outbox) => {
                    self.outboxes.insert(id, outbox);
                }
                ConnChange::Gone(id) => {
                    self.outboxes.remove(&id);
                }
            }
        }
        for out in batch.outputs {
            self.route(out);
        }
    }

    /// Delivers one output of a committed batch.
    pub(super) fn route(&mut self, out: Output) {
        let (conn, msg) = match out {
            Output::Control { conn, down } => (conn, ConnOut::Control(Box::new(down))),
            Output::Conv { conn, conv, down } => (conn, ConnOut::Conv(conv, Box::new(down))),
            Output::Event { conn, conv, event } => (conn, ConnOut::Event(conv, event)),
            Output::Close { conn, reason } => {
                let code = if reason == LOGIN_REFUSED_REASON {
                    close::LOGIN_REFUSED
                } else {
                    close::NORMAL
                };
                (conn, ConnOut::Close(code, reason))
            }
            Output::Log(l) => return self.log(l),
            Output::VerifyPassword {
                conn,
                password,
                phc,
            } => return self.verify_password(conn, password, phc),
            Output::Membership {
                room,
                user,
                member,
                private,
            } => {
                return self.files.set_room_member(&room, &user, member, private);
            }
            Output::Publish(msg) => {
                // Never waits: a link far behind loses messages, which clients repair
                // from the store like any lost publish.
                if let Some(link) = &self.cluster
                    && link.try_send(msg).is_err()
                {
                    warn!(
                        "cluster: the link to the other nodes is behind; a message for them was dropped"
                    );
                }
                return;
            }
            Output::Revoke { conn, conv } => {
                // At once, before any later output: what is queued for that room is
                // skipped by the writer from now on, up to this marker.
                if let Some(outbox) = self.outboxes.get(&conn) {
                    outbox.queue.revoke(&conv);
                }
                (conn, ConnOut::Revoked(conv))
            }
        };
        let Some(outbox) = self.outboxes.get(&conn) else {
            return;
        };
        if let Err(QueueFull { bytes, frames }) = outbox.queue.try_send(msg, self.queue_bytes) {
            warn!(%conn, bytes, frames, "outgoing queue full: disconnecting a client that does not read");
            outbox.conn.close(
                quic::code(close::TOO_SLOW),
                b"you were not reading fast enough",
            );
            self.outboxes.remove(&conn);
        }
    }

    fn log(&self, l: ServerLog) {
        if let ServerLog::Deleted {
            conv, sender, cmid, ..
        } = &l
            && self.files.erase(conv, sender, cmid)
        {
            info!("stored file of a message deleted for everyone erased");
        }
        self.operator.post(l);
    }

    /// Argon2 runs on the blocking pool, at most two at a time, and answers the hub.
    fn verify_password(&self, conn: ConnId, password: String, phc: Option<String>) {
        let (hub, hashers) = (self.hub.clone(), self.hashers.clone());
        self.rt.spawn(async move {
            let Ok(_permit) = hashers.acquire_owned().await else {
                return;
            };
            let result = tokio::task::spawn_blocking(move || match phc {
                Some(phc) => (auth::verify_password(&password, &phc), None),
                None => match auth::hash_password(&password) {
                    Ok(h) => (true, Some(h)),
                    Err(_) => (false, None),
                },
            })
            .await;
            let (ok, new_phc) = result.unwrap_or((false, None));
            if let Some(hub) = hub.upgrade() {
                let input = Input::PasswordChecked { conn, ok, new_phc };
                let _ = hub.send(HubMsg::Input(input)).await;
            }
        });
    }
}
