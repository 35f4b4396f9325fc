//! The server's async shell: the QUIC endpoint, one task per connection, and the hub thread
//! that owns the [`ServerCore`] and the SQLite store.
//!
//! Connection tasks read frames, open envelopes and send [`Input`]s to the hub over one
//! bounded channel. The hub handles a batch of inputs inside one SQLite transaction,
//! commits, and only then routes the outputs (acks included) to each connection's bounded
//! queue. A connection whose queue is full is cut off: a client that stops reading cannot
//! grow the server's memory or slow anyone else.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tracing::{Instrument, debug, info, info_span, warn};

use super::codec::{self, FrameError};
use super::envelope::{Aad, Direction, EXPORTER_LABEL, Ephemeral, SessionKeys};
use super::files::{FileStore, serve as serve_file};
use super::quic::{self, Connection, Endpoint, RecvStream, SendStream, close};
use super::tls::{Identity, TlsError};
use crate::app::ids::{ClientMsgId, ConnId, ConvId};
use crate::app::limits::Limits;
use crate::app::protocol::{ControlDown, ControlUp, ConvDown, ConvUp, ErrorCode, EventKind};
use crate::app::server::{Input, Output, ServerCore, ServerLog};
use crate::store::SqliteStore;

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to bind (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Where the database and the generated certificate live.
    pub data_dir: PathBuf,
    /// Operator-supplied certificate and key (PEM) instead of the generated one.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Limits.
    pub limits: Limits,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Certificate problem.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Database problem.
    #[error("{0}")]
    Store(String),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

enum HubMsg {
    Register(ConnId, Link),
    Input(Input),
    Stop,
}

struct Link {
    tx: mpsc::Sender<ConnOut>,
    conn: Connection,
    /// Bytes queued for this connection and not yet written.
    queued: Arc<AtomicUsize>,
}

/// A connection's outgoing queue as its own tasks use it: every output is counted in
/// `queued` (the writer subtracts it once written), whoever sends it.
#[derive(Clone)]
struct ConnQueue {
    tx: mpsc::Sender<ConnOut>,
    queued: Arc<AtomicUsize>,
}

impl ConnQueue {
    async fn send(&self, out: ConnOut) {
        let cost = out.cost();
        self.queued.fetch_add(cost, Ordering::Relaxed);
        if self.tx.send(out).await.is_err() {
            self.queued.fetch_sub(cost, Ordering::Relaxed);
        }
    }
}

/// Approximate memory a queued output holds (for the per-connection cap).
impl ConnOut {
    fn cost(&self) -> usize {
        const FRAME: usize = 64;
        let body = |e: &crate::app::protocol::ConvEvent| match &e.kind {
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

enum ConnOut {
    Control(ControlDown),
    Conv(ConvId, ConvDown),
    /// Close with this code after flushing what is queued.
    Close(u32, String),
}

/// A cheap handle for the operator's actions.
#[derive(Clone)]
pub struct ServerHandle {
    hub: mpsc::Sender<HubMsg>,
}

impl ServerHandle {
    /// Posts an announcement to `#general` as `server`.
    pub async fn announce(&self, text: String) {
        let mut id = [0u8; 16];
        let _ = getrandom::fill(&mut id);
        let cmid = ClientMsgId(id);
        let _ = self
            .hub
            .send(HubMsg::Input(Input::Announce { text, cmid }))
            .await;
    }

    /// Disconnects one client.
    pub async fn kick(&self, conn: ConnId) {
        let _ = self.hub.send(HubMsg::Input(Input::Kick { conn })).await;
    }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    fingerprint: String,
    endpoint: Endpoint,
    handle: ServerHandle,
    events: Option<mpsc::UnboundedReceiver<ServerLog>>,
    hub_thread: Option<std::thread::JoinHandle<()>>,
    accept: tokio::task::JoinHandle<()>,
}

struct Ctx {
    hub: mpsc::Sender<HubMsg>,
    files: Arc<FileStore>,
    limits: Limits,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    next_id: AtomicU64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Server {
    /// Opens the store, loads or creates the certificate, binds and starts accepting.
    pub async fn start(opts: ServerOptions) -> Result<Server, StartError> {
        let identity = match &opts.cert {
            Some((c, k)) => Identity::from_pem_files(c, k)?,
            None => Identity::load_or_create(&opts.data_dir)?,
        };
        let fingerprint = identity.fingerprint();
        let store = SqliteStore::open(&opts.data_dir).map_err(|e| StartError::Store(e.message))?;
        let endpoint_config = quic::server_endpoint_config(&identity);
        let config = quic::server_config(identity, opts.limits.streams_per_conn)?;
        let endpoint =
            quic::server_endpoint(endpoint_config, config, opts.listen).map_err(|source| {
                StartError::Bind {
                    addr: opts.listen,
                    source,
                }
            })?;
        let addr = endpoint.local_addr().map_err(|source| StartError::Bind {
            addr: opts.listen,
            source,
        })?;
        let (hub_tx, hub_rx) = mpsc::channel(16 * 1024);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let core = ServerCore::new(store, opts.limits.clone());
        let files = Arc::new(FileStore::new(
            opts.data_dir.join("files"),
            opts.limits.max_file_size,
        ));
        let files_for_hub = files.clone();
        let rt = tokio::runtime::Handle::current();
        let hub_for_thread = hub_tx.downgrade();
        let hub_thread = std::thread::Builder::new()
            .name("livewire-hub".into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| {
                    hub_loop(core, hub_rx, hub_for_thread, ev_tx, rt, files_for_hub)
                });
                if std::panic::catch_unwind(run).is_err() {
                    // Half a server is worse than none: nothing unacknowledged is lost
                    // (acks follow commits), and a supervisor restarts us.
                    eprintln!("livewire: internal error in the server hub; exiting");
                    std::process::abort();
                }
            })
            .map_err(|e| StartError::Store(format!("cannot start the hub thread: {e}")))?;
        let ctx = Arc::new(Ctx {
            hub: hub_tx.clone(),
            files,
            limits: opts.limits,
            per_ip: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        });
        let ep = endpoint.clone();
        let accept = tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let ctx = ctx.clone();
                tokio::spawn(serve_connection(incoming, ctx));
            }
        });
        info!(%addr, %fingerprint, "listening");
        Ok(Server {
            addr,
            fingerprint,
            endpoint,
            handle: ServerHandle { hub: hub_tx },
            events: Some(ev_rx),
            hub_thread: Some(hub_thread),
            accept,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The certificate fingerprint (`SHA256:…`).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Operator actions.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// The operator's event stream (take it once).
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<ServerLog>> {
        self.events.take()
    }

    /// Graceful stop: refuse new connections, tell every client, flush their queues, close
    /// the connections, then close the database.
    pub async fn shutdown(mut self, reason: &str) {
        self.endpoint.set_server_config(None);
        self.accept.abort();
        let _ = self
            .handle
            .hub
            .send(HubMsg::Input(Input::Shutdown {
                reason: reason.to_owned(),
            }))
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle()).await;
        self.endpoint
            .close(quic::code(close::SHUTDOWN), reason.as_bytes());
        let _ = self.handle.hub.send(HubMsg::Stop).await;
        if let Some(t) = self.hub_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        info!("server stopped");
    }
}

fn hub_loop(
    mut core: ServerCore<SqliteStore>,
    mut rx: mpsc::Receiver<HubMsg>,
    hub: mpsc::WeakSender<HubMsg>,
    events: mpsc::UnboundedSender<ServerLog>,
    rt: tokio::runtime::Handle,
    files: Arc<FileStore>,
) {
    let mut router = Router {
        files,
        links: HashMap::new(),
        hub,
        events,
        rt,
        hashers: Arc::new(Semaphore::new(2)),
        queue_bytes: core.limits().conn_queue_bytes,
    };
    let mut batch = Vec::with_capacity(256);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut outputs = Vec::new();
        let mut stop = false;
        if let Err(e) = core.store_mut().begin() {
            warn!("database: {e}");
        }
        let now = now_ms();
        for msg in batch.drain(..) {
            match msg {
                HubMsg::Register(id, link) => {
                    router.links.insert(id, link);
                }
                HubMsg::Input(input) => {
                    let gone = match &input {
                        Input::Disconnected { conn } => Some(*conn),
                        _ => None,
                    };
                    outputs.extend(core.handle(input, now));
                    if let Some(c) = gone {
                        router.links.remove(&c);
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
        for out in outputs {
            router.route(out);
        }
        if stop {
            if let Err(e) = core.store_mut().checkpoint() {
                warn!("checkpoint at shutdown: {e}");
            }
            break;
        }
    }
}

/// Nothing of a batch whose commit failed is durable: its new events go to nobody, and
/// each acknowledgement becomes an error for its sender — `server_full` on a full disk
/// (the client gives up on that message and says so), otherwise `internal` (the client
/// keeps it and sends it again after its next reconnect).
fn unsend_batch(outputs: &mut Vec<Output>, full: bool) {
    outputs.retain(|o| {
        !matches!(
            o,
            Output::Conv {
                down: ConvDown::Event(_),
                ..
            }
        )
    });
    for o in outputs.iter_mut() {
        if let Output::Conv {
            down: down @ ConvDown::Ack { .. },
            ..
        } = o
        {
            let cmid = match down {
                ConvDown::Ack { cmid, .. } => Some(*cmid),
                _ => None,
            };
            *down = if full {
                ConvDown::Error {
                    code: ErrorCode::ServerFull,
                    message: "the server is out of storage space; try again later".into(),
                    cmid,
                }
            } else {
                ConvDown::Error {
                    code: ErrorCode::Internal,
                    message: "the server could not store the message; it will be resent".into(),
                    cmid,
                }
            };
        }
    }
}

/// Where the hub's outputs go: connection queues, the password hashers, the operator.
struct Router {
    files: Arc<FileStore>,
    links: HashMap<ConnId, Link>,
    hub: mpsc::WeakSender<HubMsg>,
    events: mpsc::UnboundedSender<ServerLog>,
    rt: tokio::runtime::Handle,
    hashers: Arc<Semaphore>,
    queue_bytes: usize,
}

impl Router {
    fn route(&mut self, out: Output) {
        let (conn, msg) = match out {
            Output::Control { conn, down } => (conn, ConnOut::Control(down)),
            Output::Conv { conn, conv, down } => (conn, ConnOut::Conv(conv, down)),
            Output::Close { conn, reason } => {
                let code = if reason == crate::app::server::LOGIN_REFUSED_REASON {
                    close::LOGIN_REFUSED
                } else {
                    close::NORMAL
                };
                (conn, ConnOut::Close(code, reason))
            }
            Output::Log(l) => {
                if let ServerLog::Deleted {
                    conv, sender, cmid, ..
                } = &l
                    && self.files.erase(conv, sender, cmid)
                {
                    info!("stored file of a message deleted for everyone erased");
                }
                log_event(&l);
                let _ = self.events.send(l);
                return;
            }
            Output::VerifyPassword {
                conn,
                password,
                phc,
            } => return self.verify_password(conn, password, phc),
        };
        let Some(link) = self.links.get(&conn) else {
            return;
        };
        let cost = msg.cost();
        let before = link.queued.fetch_add(cost, Ordering::Relaxed);
        if before.saturating_add(cost) > self.queue_bytes || link.tx.try_send(msg).is_err() {
            let frames = link.tx.max_capacity() - link.tx.capacity();
            warn!(%conn, bytes = before.saturating_add(cost), frames, "outgoing queue full: disconnecting a client that does not read");
            link.conn.close(
                quic::code(close::TOO_SLOW),
                b"you were not reading fast enough",
            );
            self.links.remove(&conn);
        }
    }

    /// Argon2 runs on the blocking pool, at most two at a time, and answers the hub.
    fn verify_password(&self, conn: ConnId, password: String, phc: Option<String>) {
        let (hub, hashers) = (self.hub.clone(), self.hashers.clone());
        self.rt.spawn(async move {
            let Ok(_permit) = hashers.acquire_owned().await else {
                return;
            };
            let result = tokio::task::spawn_blocking(move || match phc {
                Some(phc) => (super::auth::verify_password(&password, &phc), None),
                None => match super::auth::hash_password(&password) {
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

fn log_event(l: &ServerLog) {
    match l {
        ServerLog::ClientConnected { user, addr, conn } => {
            info!(%conn, %user, %addr, "client connected")
        }
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
        ServerLog::StoreFailed { error, full: true } => {
            warn!(%error, "out of storage space: writes are refused with server_full until there is room")
        }
        ServerLog::StoreFailed { error, .. } => warn!(%error, "storage failure"),
    }
}

/// Counts a connection against its IP; released on drop.
struct IpSlot {
    ctx: Arc<Ctx>,
    ip: IpAddr,
}

impl IpSlot {
    fn take(ctx: &Arc<Ctx>, ip: IpAddr) -> Option<Self> {
        let mut map = ctx.per_ip.lock().ok()?;
        let n = map.entry(ip).or_default();
        if *n >= ctx.limits.conns_per_ip {
            return None;
        }
        *n += 1;
        Some(Self {
            ctx: ctx.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.ctx.per_ip.lock()
            && let Some(n) = map.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

async fn serve_connection(incoming: quic::Incoming, ctx: Arc<Ctx>) {
    let remote = incoming.remote_address();
    // Awaiting the handshake (instead of `into_0rtt`) means 0-RTT data is never accepted,
    // so a replayed packet can never run a command.
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            debug!(%remote, "handshake failed: {e}");
            return;
        }
    };
    // Counted after the handshake, i.e. after QUIC validated the address.
    let Some(_slot) = IpSlot::take(&ctx, remote.ip()) else {
        info!(%remote, "too many connections from this address");
        conn.close(
            quic::code(close::TOO_MANY),
            b"too many connections from your address",
        );
        return;
    };
    let id = ConnId(ctx.next_id.fetch_add(1, Ordering::Relaxed));
    let span = info_span!("conn", %id, %remote);
    run_connection(conn, id, ctx).instrument(span).await;
}

async fn run_connection(conn: Connection, id: ConnId, ctx: Arc<Ctx>) {
    let max = ctx.limits.max_frame;
    let (tx, rx) = mpsc::channel(ctx.limits.conn_queue);
    let hub = ctx.hub.clone();
    let queued = Arc::new(AtomicUsize::new(0));
    let link = Link {
        tx: tx.clone(),
        conn: conn.clone(),
        queued: queued.clone(),
    };
    let queue = ConnQueue {
        tx,
        queued: queued.clone(),
    };
    let addr = conn.remote_address();
    if hub.send(HubMsg::Register(id, link)).await.is_err()
        || hub
            .send(HubMsg::Input(Input::Connected { conn: id, addr }))
            .await
            .is_err()
    {
        return;
    }
    let deadline = Duration::from_secs(ctx.limits.login_deadline_secs);
    let login = tokio::time::timeout(deadline, async {
        let (send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        match codec::read_frame::<_, ControlUp>(&mut recv, max).await {
            Ok(Some(up @ ControlUp::Login { .. })) => Ok((send, recv, up)),
            Ok(Some(_)) => Err("the first frame must be a login".to_owned()),
            Ok(None) => Err("control stream closed before login".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let (mut control_send, control_recv, login) = match login {
        Ok(Ok(x)) => x,
        Ok(Err(why)) => {
            info!("no login: {why}");
            conn.close(quic::code(close::PROTOCOL), why.as_bytes());
            let _ = hub
                .send(HubMsg::Input(Input::Disconnected { conn: id }))
                .await;
            return;
        }
        Err(_) => {
            info!("login deadline passed");
            conn.close(quic::code(close::LOGIN_TIMEOUT), b"login took too long");
            let _ = hub
                .send(HubMsg::Input(Input::Disconnected { conn: id }))
                .await;
            return;
        }
    };
    let ControlUp::Login {
        session_pub: client_pub,
        ref user,
        ..
    } = login
    else {
        unreachable!("matched above")
    };
    let user_key = user.to_ascii_lowercase();
    let eph = Ephemeral::new();
    let server_pub = eph.public;
    let mut exporter = [0u8; 32];
    let keys = match (
        eph.agree(&client_pub),
        conn.export_keying_material(&mut exporter, EXPORTER_LABEL, b""),
    ) {
        (Ok(shared), Ok(())) => Arc::new(SessionKeys::derive(
            &shared,
            &exporter,
            &client_pub,
            &server_pub,
        )),
        _ => {
            let refused = ControlDown::LoginRefused {
                code: ErrorCode::BadRequest,
                message: "invalid session key".into(),
            };
            let _ = codec::write_frame(&mut control_send, &refused, max).await;
            let _ = control_send.finish();
            conn.close(quic::code(close::PROTOCOL), b"invalid session key");
            let _ = hub
                .send(HubMsg::Input(Input::Disconnected { conn: id }))
                .await;
            return;
        }
    };
    let (streams_tx, streams_rx) = mpsc::unbounded_channel();
    let down_max = codec::MAX_DOWN_FRAME;
    let logged_in: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let writer = tokio::spawn(
        writer(
            conn.clone(),
            control_send,
            rx,
            streams_rx,
            keys.clone(),
            server_pub,
            down_max,
            queued,
            logged_in.clone(),
        )
        .in_current_span(),
    );
    let _ = hub
        .send(HubMsg::Input(Input::Control {
            conn: id,
            up: login,
        }))
        .await;
    let reader = tokio::spawn(
        control_reader(control_recv, id, hub.clone(), queue.clone(), max).in_current_span(),
    );

    let mut last_addr = addr;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let closed = conn.closed();
    tokio::pin!(closed);
    loop {
        tokio::select! {
            _ = &mut closed => break,
            _ = tick.tick() => {
                let now = conn.remote_address();
                if now != last_addr {
                    last_addr = now;
                    let _ = hub.send(HubMsg::Input(Input::Migrated { conn: id, addr: now })).await;
                }
            }
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    let files = FileCtx { store: ctx.files.clone(), logged_in: logged_in.clone() };
                    let task = conv_reader(send, recv, id, hub.clone(), queue.clone(), streams_tx.clone(), keys.clone(), user_key.clone(), max, files);
                    tokio::spawn(task.in_current_span());
                }
                Err(_) => break,
            },
        }
    }
    reader.abort();
    writer.abort();
    debug!("connection closed: {:?}", conn.close_reason());
    let _ = hub
        .send(HubMsg::Input(Input::Disconnected { conn: id }))
        .await;
}

async fn control_reader(
    mut recv: RecvStream,
    id: ConnId,
    hub: mpsc::Sender<HubMsg>,
    tx: ConnQueue,
    max: usize,
) {
    loop {
        match codec::read_frame::<_, ControlUp>(&mut recv, max).await {
            Ok(Some(up)) => {
                if hub
                    .send(HubMsg::Input(Input::Control { conn: id, up }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                protocol_error(&tx, None, &e).await;
                return;
            }
        }
    }
}

/// A bad frame: tell the client why and close its connection. Other clients never notice.
async fn protocol_error(tx: &ConnQueue, conv: Option<ConvId>, e: &FrameError) {
    info!("bad frame: {e}");
    let code = match e {
        FrameError::TooLarge { .. } => ErrorCode::TooLarge,
        _ => ErrorCode::BadRequest,
    };
    let message = format!("bad frame: {e}");
    let out = match conv {
        Some(conv) => ConnOut::Conv(
            conv,
            ConvDown::Error {
                code,
                message,
                cmid: None,
            },
        ),
        None => ConnOut::Control(ControlDown::Error { code, message }),
    };
    let _ = tx.send(out).await;
    let _ = tx
        .send(ConnOut::Close(close::PROTOCOL, "protocol error".into()))
        .await;
}

/// What a stream needs to serve file transfers.
struct FileCtx {
    store: Arc<FileStore>,
    /// The user, once the login was accepted.
    logged_in: Arc<OnceLock<String>>,
}

#[allow(clippy::too_many_arguments)]
async fn conv_reader(
    send: SendStream,
    mut recv: RecvStream,
    id: ConnId,
    hub: mpsc::Sender<HubMsg>,
    tx: ConnQueue,
    streams: mpsc::UnboundedSender<(ConvId, SendStream)>,
    keys: Arc<SessionKeys>,
    user_key: String,
    max: usize,
    files: FileCtx,
) {
    let conv = match codec::read_frame::<_, ConvUp>(&mut recv, max).await {
        Ok(Some(ConvUp::File(req))) => {
            let user = files.logged_in.get().cloned();
            return serve_file(req, send, recv, user, keys, files.store).await;
        }
        Ok(Some(ConvUp::Open { conv, after })) => {
            // Register the stream with the writer before the hub can answer on it.
            let _ = streams.send((conv.clone(), send));
            let up = ConvUp::Open {
                conv: conv.clone(),
                after,
            };
            if hub
                .send(HubMsg::Input(Input::Conv {
                    conn: id,
                    conv: conv.clone(),
                    up,
                }))
                .await
                .is_err()
            {
                return;
            }
            conv
        }
        Ok(Some(_)) => {
            let e = FrameError::Io(std::io::Error::other(
                "a conversation stream must start with Open",
            ));
            return protocol_error(&tx, None, &e).await;
        }
        Ok(None) => return,
        Err(e) => return protocol_error(&tx, None, &e).await,
    };
    let conv_key = conv.storage_key();
    loop {
        let up = match codec::read_frame::<_, ConvUp>(&mut recv, max).await {
            Ok(Some(up)) => up,
            Ok(None) => return,
            Err(e) => return protocol_error(&tx, Some(conv), &e).await,
        };
        let up = match up {
            ConvUp::Send { cmid, body } => {
                let aad = Aad {
                    dir: Direction::Up,
                    conv: &conv_key,
                    sender: &user_key,
                    cmid,
                };
                match keys.up.open(&aad, &body) {
                    Ok(plain) => ConvUp::Send { cmid, body: plain },
                    Err(e) => {
                        info!("envelope refused: {e}");
                        let down = ConvDown::Error {
                            code: ErrorCode::BadRequest,
                            message: format!("message refused: {e}"),
                            cmid: Some(cmid),
                        };
                        let _ = tx.send(ConnOut::Conv(conv.clone(), down)).await;
                        continue;
                    }
                }
            }
            ConvUp::Open { conv: other, .. } if other != conv => {
                let e = FrameError::Io(std::io::Error::other("one conversation per stream"));
                return protocol_error(&tx, Some(conv), &e).await;
            }
            other => other,
        };
        if hub
            .send(HubMsg::Input(Input::Conv {
                conn: id,
                conv: conv.clone(),
                up,
            }))
            .await
            .is_err()
        {
            return;
        }
    }
}

fn seal_event_body(
    keys: &SessionKeys,
    conv_key: &str,
    e: &mut crate::app::protocol::ConvEvent,
) -> bool {
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

#[allow(clippy::too_many_arguments)]
async fn writer(
    conn: Connection,
    mut control: SendStream,
    mut rx: mpsc::Receiver<ConnOut>,
    mut streams_rx: mpsc::UnboundedReceiver<(ConvId, SendStream)>,
    keys: Arc<SessionKeys>,
    server_pub: [u8; 32],
    max: usize,
    queued: Arc<AtomicUsize>,
    logged_in: Arc<OnceLock<String>>,
) {
    let mut streams: HashMap<ConvId, SendStream> = HashMap::new();
    // Frames encoded since the last flush, per stream (`None`: the control stream). Under
    // load many frames go out in one write, so quinn packs them into few packets; when idle a
    // batch is one frame and nothing waits.
    let mut bufs: HashMap<Option<ConvId>, Vec<u8>> = HashMap::new();
    const BATCH_BYTES: usize = 256 * 1024;
    loop {
        let first = tokio::select! {
            biased;
            Some((conv, s)) = streams_rx.recv() => {
                streams.insert(conv, s);
                continue;
            }
            out = rx.recv() => match out {
                Some(o) => o,
                None => return,
            },
        };
        let (mut cost, mut buffered, mut close) = (0, 0, None);
        let mut next = Some(first);
        while let Some(out) = next.take() {
            // Streams registered before this output was produced are already queued.
            while let Ok((conv, s)) = streams_rx.try_recv() {
                streams.insert(conv, s);
            }
            cost += out.cost();
            let frame = match out {
                ConnOut::Control(mut down) => {
                    if let ControlDown::LoginOk {
                        session_pub, user, ..
                    } = &mut down
                    {
                        *session_pub = server_pub;
                        let _ = logged_in.set(user.to_ascii_lowercase());
                    }
                    Some((None, codec::encode(&down, max)))
                }
                ConnOut::Conv(conv, mut down) => {
                    let conv_key = conv.storage_key();
                    let ok = match &mut down {
                        ConvDown::Event(e) | ConvDown::Backlog(e) => {
                            seal_event_body(&keys, &conv_key, e)
                        }
                        ConvDown::History { events, .. } => events
                            .iter_mut()
                            .all(|e| seal_event_body(&keys, &conv_key, e)),
                        _ => true,
                    };
                    (ok && streams.contains_key(&conv))
                        .then(|| (Some(conv), codec::encode(&down, max)))
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
                next = rx.try_recv().ok();
            }
        }
        for (dest, buf) in bufs.drain() {
            let stream = match &dest {
                None => Some(&mut control),
                Some(conv) => streams.get_mut(conv),
            };
            if let Some(stream) = stream
                && let Err(e) = stream.write_all(&buf).await
            {
                debug!("write failed: {e}");
                return;
            }
        }
        queued.fetch_sub(cost, Ordering::Relaxed);
        if let Some((code, reason)) = close {
            // Graceful: finish every stream, give the peer a moment to receive what was
            // queued, then close.
            let _ = control.finish();
            for s in streams.values_mut() {
                let _ = s.finish();
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            let _ = tokio::time::timeout_at(deadline, control.stopped()).await;
            for s in streams.values_mut() {
                let _ = tokio::time::timeout_at(deadline, s.stopped()).await;
            }
            conn.close(quic::code(code), reason.as_bytes());
            return;
        }
    }
}
