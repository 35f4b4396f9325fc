//! One task per connection: the accept loop with its per-address limit, the login within
//! the deadline and the session key agreement, then the connection's life (its writer, its
//! control stream and the streams it opens) until it closes. Everything a connection's
//! tasks share is in one [`ConnCtx`], as mini-redis's `Handler`.
//!
//! Address changes (a NAT rebinding, a client switching networks) are found by one sweep
//! over every connection each [`SWEEP`], not by a timer per connection: an idle server with
//! 10 000 clients used to wake 20 000 times a second for it (docs/BENCHMARKS.md, finding 3).

use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span};

use super::context::ConnCtx;
use super::hub::{HubMsg, Outbox};
use super::queue::ConnQueue;
use super::streams;
use super::writer::Writer;
use crate::app::ids::ConnId;
use crate::app::limits::Limits;
use crate::app::protocol::{ControlDown, ControlUp, ErrorCode};
use crate::app::server::Input;
use crate::transport::codec;
use crate::transport::envelope::{EXPORTER_LABEL, Ephemeral, SessionKeys};
use crate::transport::files::FileStore;
use crate::transport::quic::{self, Connection, Endpoint, Incoming, RecvStream, SendStream, close};

/// What every connection task of a server shares.
pub(super) struct Shared {
    /// The hub's inbox.
    pub hub: mpsc::Sender<HubMsg>,
    /// Uploaded files.
    pub files: Arc<FileStore>,
    /// Limits.
    pub limits: Limits,
    /// Open (or opening) connections per address.
    pub per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// The next connection id.
    pub next_id: AtomicU64,
    /// Every connection between `Connected` and its end, with the address last reported to
    /// the hub: what the migration sweep looks at.
    pub links: Mutex<HashMap<ConnId, Link>>,
}

/// A connection as the migration sweep sees it.
pub(super) struct Link {
    conn: Connection,
    /// The remote address last reported to the hub.
    addr: SocketAddr,
}

/// How often the migration sweep compares every connection's remote address with the one
/// last reported. quinn follows a migrated client by itself; this only tells the core (the
/// operator's log and the address it shows), so a second's delay is fine.
pub(super) const SWEEP: Duration = Duration::from_secs(1);

/// Accepts connections until the endpoint closes. An address already at its limit is
/// refused here, before any handshake work, and the count is taken here too: however many
/// connections arrive at once, no more than `conns_per_ip` from one address are ever open.
pub(super) async fn accept_loop(endpoint: Endpoint, shared: Arc<Shared>) {
    // Ends with this loop, also when the loop is aborted (the server stops).
    let _sweep = AbortOnDrop(tokio::spawn(migration_sweep(shared.clone())));
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        let Some(slot) = IpSlot::take(&shared, remote.ip()) else {
            info!(%remote, "too many connections from this address: refused");
            incoming.refuse();
            continue;
        };
        tokio::spawn(serve(incoming, slot, shared.clone()));
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reports every connection whose remote address changed since the last report, each
/// [`SWEEP`], until the hub is gone. One task and one timer for all connections.
async fn migration_sweep(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut moved = Vec::new();
    loop {
        tick.tick().await;
        if let Ok(mut links) = shared.links.lock() {
            for (id, link) in links.iter_mut() {
                let now = link.conn.remote_address();
                if now != link.addr {
                    link.addr = now;
                    moved.push((*id, now));
                }
            }
        }
        for (conn, addr) in moved.drain(..) {
            let input = HubMsg::Input(Input::Migrated { conn, addr });
            if shared.hub.send(input).await.is_err() {
                return;
            }
        }
    }
}

/// A connection's entry in [`Shared::links`]; removed on drop.
struct LinkSlot {
    shared: Arc<Shared>,
    id: ConnId,
}

impl LinkSlot {
    fn add(shared: &Arc<Shared>, id: ConnId, conn: &Connection, addr: SocketAddr) -> Self {
        if let Ok(mut links) = shared.links.lock() {
            let conn = conn.clone();
            links.insert(id, Link { conn, addr });
        }
        Self {
            shared: shared.clone(),
            id,
        }
    }
}

impl Drop for LinkSlot {
    fn drop(&mut self) {
        if let Ok(mut links) = self.shared.links.lock() {
            links.remove(&self.id);
        }
    }
}

/// Counts a connection against its IP; released on drop.
struct IpSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl IpSlot {
    fn take(shared: &Arc<Shared>, ip: IpAddr) -> Option<Self> {
        let mut map = shared.per_ip.lock().ok()?;
        let n = map.entry(ip).or_default();
        if *n >= shared.limits.conns_per_ip {
            return None;
        }
        *n += 1;
        Some(Self {
            shared: shared.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.shared.per_ip.lock()
            && let Some(n) = map.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Completes the handshake and runs the connection; the slot is held until it ends.
async fn serve(incoming: Incoming, _slot: IpSlot, shared: Arc<Shared>) {
    let remote = incoming.remote_address();
    // Awaiting the handshake (instead of `into_0rtt`) means 0-RTT data is never accepted,
    // so a replayed packet can never run a command. Boxed, as the login below: the task
    // keeps its future's largest state for the connection's whole life, and these two are
    // only needed at its start (docs/BENCHMARKS.md, "Issue 14 — idle").
    let conn = match Box::pin(incoming.into_future()).await {
        Ok(c) => c,
        Err(e) => {
            debug!(%remote, "handshake failed: {e}");
            return;
        }
    };
    let id = ConnId(shared.next_id.fetch_add(1, Ordering::Relaxed));
    let span = info_span!("conn", %id, %remote);
    run(conn, id, shared).instrument(span).await;
}

/// A client that did not log in properly: its connection is closed with this code and
/// reason.
struct Refused(u32, String);

/// A connection once its login frame arrived and its session keys are agreed.
struct Session {
    ctx: Arc<ConnCtx>,
    /// The login frame, for the hub.
    login: ControlUp,
    control_send: SendStream,
    control_recv: RecvStream,
    /// This session's ephemeral public key.
    server_pub: [u8; 32],
}

async fn run(conn: Connection, id: ConnId, shared: Arc<Shared>) {
    let (queue, rx) = ConnQueue::new(shared.limits.conn_queue);
    let outbox = Outbox {
        queue: queue.clone(),
        conn: conn.clone(),
    };
    let addr = conn.remote_address();
    let hub = &shared.hub;
    if hub.send(HubMsg::Register(id, outbox)).await.is_err()
        || hub
            .send(HubMsg::Input(Input::Connected { conn: id, addr }))
            .await
            .is_err()
    {
        return;
    }
    // From here on the sweep reports this connection's moves (after `Connected`, so the
    // core knows it; a report racing `Disconnected` is ignored by the core).
    let _link = LinkSlot::add(&shared, id, &conn, addr);
    let session = match Box::pin(start_session(&conn, id, &shared, queue)).await {
        Ok(s) => s,
        Err(Refused(code, why)) => {
            info!("no session: {why}");
            conn.close(quic::code(code), why.as_bytes());
            let _ = hub
                .send(HubMsg::Input(Input::Disconnected { conn: id }))
                .await;
            return;
        }
    };
    let ctx = session.ctx;
    let writer = Writer {
        ctx: ctx.clone(),
        control: session.control_send,
        rx,
        server_pub: session.server_pub,
    };
    let writer = tokio::spawn(writer.run().in_current_span());
    let up = session.login;
    // The token this login hands out if it succeeds, from the OS RNG (the core takes
    // randomness as input). Without an RNG the login still works, only without a token.
    let mut token = [0u8; 32];
    let input = match getrandom::fill(&mut token) {
        Ok(()) => Input::Login {
            conn: id,
            up,
            token,
        },
        Err(_) => Input::Control { conn: id, up },
    };
    let _ = ctx.to_hub(input).await;
    serve_streams(&ctx, session.control_recv).await;
    writer.abort();
    debug!("connection closed: {:?}", conn.close_reason());
    let _ = ctx.to_hub(Input::Disconnected { conn: id }).await;
}

/// Reads the control stream and accepts the client's other streams until the connection
/// closes. The control stream is read here rather than in a task of its own: one task less
/// per connection. Its reader future lives across the loop (reading a frame is not
/// cancel-safe); once it ends (the client finished the stream, or a bad frame queued the
/// close) only the accepting goes on.
async fn serve_streams(ctx: &Arc<ConnCtx>, control: RecvStream) {
    let closed = ctx.conn.closed();
    tokio::pin!(closed);
    let control = streams::control_reader(ctx.clone(), control);
    tokio::pin!(control);
    let mut reading = true;
    loop {
        tokio::select! {
            _ = &mut closed => return,
            () = &mut control, if reading => reading = false,
            stream = ctx.conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    let task = streams::conv_stream(ctx.clone(), send, recv);
                    tokio::spawn(task.in_current_span());
                }
                Err(_) => return,
            },
        }
    }
}

/// Waits for the login frame (within the deadline) and agrees the session keys.
async fn start_session(
    conn: &Connection,
    id: ConnId,
    shared: &Shared,
    queue: ConnQueue,
) -> Result<Session, Refused> {
    let max_frame = shared.limits.max_frame;
    let deadline = Duration::from_secs(shared.limits.login_deadline_secs);
    let (mut control_send, control_recv, login) =
        tokio::time::timeout(deadline, read_login(conn, max_frame))
            .await
            .map_err(|_| Refused(close::LOGIN_TIMEOUT, "login took too long".into()))?
            .map_err(|why| Refused(close::PROTOCOL, why))?;
    let (ControlUp::Login {
        session_pub: client_pub,
        ref user,
        ..
    }
    | ControlUp::Resume {
        session_pub: client_pub,
        ref user,
        ..
    }) = login
    else {
        unreachable!("read_login returns a login or a resume")
    };
    let user_key = user.to_ascii_lowercase();
    let eph = Ephemeral::new();
    let server_pub = eph.public;
    let mut exporter = [0u8; 32];
    let keys = match (
        eph.agree(&client_pub),
        conn.export_keying_material(&mut exporter, EXPORTER_LABEL, b""),
    ) {
        (Ok(secret), Ok(())) => Arc::new(SessionKeys::derive(
            &secret,
            &exporter,
            &client_pub,
            &server_pub,
        )),
        _ => {
            let refused = ControlDown::LoginRefused {
                code: ErrorCode::BadRequest,
                message: "invalid session key".into(),
            };
            let _ = codec::write_frame(&mut control_send, &refused, max_frame).await;
            let _ = control_send.finish();
            return Err(Refused(close::PROTOCOL, "invalid session key".into()));
        }
    };
    let ctx = Arc::new(ConnCtx {
        id,
        conn: conn.clone(),
        hub: shared.hub.clone(),
        queue,
        keys,
        user_key,
        logged_in: OnceLock::new(),
        max_frame,
        files: shared.files.clone(),
    });
    Ok(Session {
        ctx,
        login,
        control_send,
        control_recv,
        server_pub,
    })
}

/// The client's first stream and its first frame, which must be a login.
async fn read_login(
    conn: &Connection,
    max_frame: usize,
) -> Result<(SendStream, RecvStream, ControlUp), String> {
    let (send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
    match codec::read_frame::<_, ControlUp>(&mut recv, max_frame).await {
        Ok(Some(up @ (ControlUp::Login { .. } | ControlUp::Resume { .. }))) => Ok((send, recv, up)),
        Ok(Some(_)) => Err("the first frame must be a login".to_owned()),
        Ok(None) => Err("control stream closed before login".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}
