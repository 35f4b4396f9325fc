//! The client's async shell: connect (with certificate pinning), log in, run the session
//! streams, and reconnect with backoff when the connection drops. It drives a
//! [`ClientCore`] and reports [`ClientEvent`]s on an `async_channel`, which the scripted
//! client prints and the GUI drains on the GLib main loop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::codec::{self, MAX_DOWN_FRAME};
use super::envelope::{EXPORTER_LABEL, Ephemeral, SessionKeys};
use super::failover::{self, ServerList};
use super::files::{ClientFiles, FileBook, FileMsg, note_event};
use super::identity::IdentityKey;
use super::quic::{self, Connection, Endpoint, RecvStream, SendStream};
use super::save::{read_file, write_atomic};
use super::sealing::{SealError, seal_session, seal_up};
use super::tls::{PinStore, PinningVerifier, SERVER_NAME};
pub use crate::app::client::STREAM_IDLE;
use crate::app::client::{Backoff, ClientCore, Command, Event, Output, SavedState};
use crate::app::ids::{ConvId, MsgId};
use crate::app::mls::{MlsClient, MlsOut};
use crate::app::protocol::{
    ControlDown, ControlUp, ConvDown, ConvEvent, ConvUp, ErrorCode, PROTOCOL_VERSION,
};
use crate::client_index::{ClientIndex, index_path};

/// Frames the client sends are small; this bounds them.
const MAX_UP_FRAME: usize = 64 * 1024;
/// How long the server may take to answer a login (Argon2 runs at most two at a time).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a QUIC handshake may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to treat a server we have no pin for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Only pinned servers: an unknown one is refused (its fingerprint is reported).
    PinnedOnly,
    /// Trust on first use: pin whatever the server presents.
    AcceptNew,
    /// Expect exactly this fingerprint (and pin it).
    Fingerprint(String),
}

/// How to run a client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `host:port`, or several, comma-separated (the nodes of one cluster): the client
    /// connects to the first that answers and fails over to the next when the connection
    /// is lost (see [`super::failover`]).
    pub server: String,
    /// Username.
    pub user: String,
    /// Password.
    pub password: String,
    /// First-contact policy.
    pub trust: Trust,
    /// Known-server pins.
    pub pins: PinStore,
    /// Where to remember sync positions (none: start fresh each run).
    pub state_file: Option<PathBuf>,
    /// Reconnect after a drop (off: a drop ends the client).
    pub reconnect: bool,
    /// A QUIC endpoint to use instead of opening a new UDP socket (many clients can share
    /// one; tests rebind it to simulate a NAT rebinding).
    pub endpoint: Option<Endpoint>,
    /// QUIC keep-alive and idle timeout ([`quic::Timers::CLIENT`] by default).
    pub timers: quic::Timers,
    /// How long a conversation stream stays open without a frame either way
    /// ([`STREAM_IDLE`] by default).
    pub stream_idle: Duration,
}

/// Ends the client; each maps to an exit code in scripted mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    /// Wrong username or password, or a refused name (exit 3).
    #[error("login refused: {0}")]
    LoginRefused(String),
    /// No pin for this server and no permission to trust it (exit 4).
    #[error(
        "unknown server {server} with certificate {fingerprint}; rerun with --accept-new or --fingerprint {fingerprint} if you trust it"
    )]
    UnknownServer {
        /// `host:port`, or the list of them (`a:7447, b:7447`).
        server: String,
        /// What it presented.
        fingerprint: String,
    },
    /// The server's certificate differs from the pinned one (exit 4).
    #[error(
        "the certificate of {server} changed: pinned {expected}, presented {got}. This can mean an attack; if the server's certificate really changed, remove its line from {pin_file} or pass --fingerprint {got}"
    )]
    CertMismatch {
        /// The `host:port` entry whose certificate changed.
        server: String,
        /// Pinned.
        expected: String,
        /// Presented.
        got: String,
        /// The pin file.
        pin_file: String,
    },
    /// Could not reach the server, or lost it with reconnects off (exit 1).
    #[error("{0}")]
    Connection(String),
    /// Local configuration problem, e.g. an unreadable pin file (exit 1).
    #[error("{0}")]
    Config(String),
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A chat event.
    App(Event),
    /// The client ended with this error.
    Fatal(Fatal),
    /// The client ended normally (logout, or commands ended and everything was sent).
    Ended,
}

/// Sends commands to a running client. Dropping every handle ends the client once its
/// outbox is flushed.
#[derive(Clone, Debug)]
pub struct ClientHandle {
    cmds: async_channel::Sender<Command>,
}

impl ClientHandle {
    /// Queues a command (never blocks).
    pub fn send(&self, cmd: Command) {
        let _ = self.cmds.try_send(cmd);
    }

    /// Closes the command channel: the client flushes its outbox, logs out and ends.
    pub fn close(&self) {
        self.cmds.close();
    }
}

/// Starts a client on the current tokio runtime.
pub fn start(opts: ClientOptions) -> (ClientHandle, async_channel::Receiver<ClientEvent>) {
    start_on(opts, &tokio::runtime::Handle::current())
}

/// Starts a client on the given tokio runtime (for callers outside it, like the GUI).
pub fn start_on(
    opts: ClientOptions,
    rt: &tokio::runtime::Handle,
) -> (ClientHandle, async_channel::Receiver<ClientEvent>) {
    let (cmd_tx, cmd_rx) = async_channel::unbounded();
    let (ev_tx, ev_rx) = async_channel::unbounded();
    rt.spawn(async move {
        let end = match run(opts, cmd_rx, &ev_tx).await {
            Ok(()) => ClientEvent::Ended,
            Err(f) => ClientEvent::Fatal(f),
        };
        let _ = ev_tx.send(end).await;
    });
    (ClientHandle { cmds: cmd_tx }, ev_rx)
}

struct Session {
    conn: Connection,
    control: SendStream,
    control_recv: RecvStream,
    keys: Arc<SessionKeys>,
    login: ControlDown,
    via: Via,
}

enum ConnectError {
    Fatal(Fatal),
    Transient(String),
    /// Too many failed logins: final on the first attempt, retried on a reconnect.
    Throttled(String),
    /// The resumption token was refused: log in with the password at once.
    ResumeRefused(String),
}

enum SessionEnd {
    Done,
    Lost(String),
}

async fn load_state(path: &Option<PathBuf>) -> SavedState {
    let Some(p) = path else {
        return SavedState::default();
    };
    read_file(p)
        .await
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Saves the client state atomically, off the async worker threads.
async fn save_state(path: &Option<PathBuf>, state: &SavedState) {
    let Some(p) = path else { return };
    let bytes = match serde_json::to_vec(state) {
        Ok(b) => b,
        Err(e) => {
            warn!("cannot encode the client state: {e}");
            return;
        }
    };
    if let Err(e) = write_atomic(p.clone(), "tmp", bytes).await {
        warn!("cannot save client state to {}: {e}", p.display());
    }
}

/// The wall clock in Unix ms (a resumption token's expiry is one).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::fill(&mut b).is_err() {
        // Only message-id uniqueness depends on this; fall back to the clock.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t[i % t.len()];
        }
    }
    b
}

async fn run(
    opts: ClientOptions,
    cmds: async_channel::Receiver<Command>,
    events: &async_channel::Sender<ClientEvent>,
) -> Result<(), Fatal> {
    let mut core = ClientCore::new(
        &opts.user,
        load_state(&opts.state_file).await,
        random_bytes(),
    );
    core.set_stream_idle(opts.stream_idle);
    let identity = Arc::new(match &opts.state_file {
        Some(p) => {
            let path = p.with_extension("identity");
            tokio::task::spawn_blocking(move || IdentityKey::load_or_create(&path))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
                .map_err(|e| Fatal::Config(format!("cannot load your identity key: {e}")))?
        }
        None => IdentityKey::generate(),
    });
    let mut mls = super::mls_state::load(opts.state_file.as_deref(), &opts.user, random_bytes())
        .await
        .map_err(|e| Fatal::Config(format!("cannot load this device's MLS state: {e}")))?;
    let mut files =
        ClientFiles::new(&opts.user, identity.clone(), opts.state_file.as_deref()).await;
    let state_file = opts.state_file.clone();
    let mut index = tokio::task::spawn_blocking(move || match state_file {
        Some(p) => ClientIndex::open(&index_path(&p)),
        None => ClientIndex::in_memory(),
    })
    .await
    .unwrap_or_else(|_| ClientIndex::in_memory())
    .ignoring(UNREADABLE);
    let result = drive(
        &opts,
        core,
        &identity,
        &mut files,
        Local {
            index: &mut index,
            mls: &mut mls,
        },
        cmds,
        events,
    )
    .await;
    super::mls_state::save(opts.state_file.as_deref(), &mut mls).await;
    files.close().await;
    result
}

/// What a device keeps for itself across sessions: the search index of what it
/// decrypted, and its MLS state.
struct Local<'a> {
    index: &'a mut ClientIndex,
    mls: &'a mut MlsClient,
}

/// Connects, runs sessions and reconnects until the run ends.
async fn drive(
    opts: &ClientOptions,
    mut core: ClientCore,
    identity: &Arc<IdentityKey>,
    files: &mut ClientFiles,
    local: Local<'_>,
    cmds: async_channel::Receiver<Command>,
    events: &async_channel::Sender<ClientEvent>,
) -> Result<(), Fatal> {
    let Local { index, mls } = local;
    let mut file_rx = files.take_rx();
    let mut backoff = Backoff::default();
    let mut ever_connected = false;
    let mut cmds_open = true;
    let list = ServerList::parse(&opts.server).map_err(|e| Fatal::Config(e.to_string()))?;
    let mut target = Target {
        list,
        last: None,
        endpoints: Endpoints::new(opts.endpoint.clone()),
    };
    let started = tokio::time::Instant::now();
    loop {
        let resume = core.resume_token(unix_ms());
        let result = connect(
            opts,
            &mut target,
            core.hide_cursor(),
            identity.public,
            resume,
        )
        .await;
        match result {
            Ok(session) => {
                if resume.is_some() {
                    // Used up: the server sends the next one right after `LoginOk`.
                    core.forget_resume_token();
                }
                ever_connected = true;
                backoff.reset();
                let ctx = SessionCtx {
                    cmds: &cmds,
                    events,
                    opts,
                    identity,
                    files,
                    index,
                    mls: &mut *mls,
                    file_rx: &mut file_rx,
                    started,
                };
                match run_session(session, &mut core, &mut cmds_open, ctx).await {
                    SessionEnd::Done => return Ok(()),
                    SessionEnd::Lost(reason) => {
                        info!("connection lost: {reason}");
                        emit(events, core.disconnected(reason.clone())).await;
                        if !opts.reconnect {
                            return Err(Fatal::Connection(format!("disconnected: {reason}")));
                        }
                    }
                }
            }
            Err(ConnectError::Fatal(f)) => return Err(f),
            Err(ConnectError::ResumeRefused(e)) => {
                debug!("resumption token refused ({e}); logging in with the password");
                core.forget_resume_token();
                continue;
            }
            Err(ConnectError::Throttled(e)) if !ever_connected => {
                return Err(Fatal::LoginRefused(e));
            }
            Err(ConnectError::Throttled(e)) => debug!("reconnect throttled: {e}"),
            Err(ConnectError::Transient(e)) => {
                if !ever_connected || !opts.reconnect {
                    return Err(Fatal::Connection(format!(
                        "cannot connect to {}: {e}",
                        target.list
                    )));
                }
                debug!("reconnect failed: {e}");
            }
        }
        if !cmds_open && files.active() == 0 && core.drained() {
            // Offline with nothing left to send: no reason to reconnect.
            return Ok(());
        }
        let jitter =
            f64::from(u16::from_le_bytes(random_bytes())) / f64::from(u16::MAX) * 2.0 - 1.0;
        let delay = backoff.next_delay(jitter);
        debug!("reconnecting in {delay:?}");
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                cmd = cmds.recv(), if cmds_open => match cmd {
                    Ok(Command::Logout) => return Ok(()),
                    Ok(Command::Search { query, conv, limit }) => {
                        let out = search(&mut core, index, &query, conv.as_deref(), limit);
                        emit(events, out).await;
                    }
                    Ok(cmd) => {
                        let out = match files.command(cmd, &mut core) {
                            Ok(out) => out,
                            Err(cmd) => core.command(cmd),
                        };
                        emit(events, out).await;
                    }
                    Err(_) => {
                        cmds_open = false;
                        let out = core.commands_ended(files.active());
                        emit(events, out).await;
                    }
                },
                Some(msg) = file_rx.recv() => {
                    let mut out = files.on_msg(msg, &mut core);
                    if files.active() == 0 {
                        out.extend(core.transfers_idle());
                    }
                    emit(events, out).await;
                }
            }
        }
    }
}

/// A `search` command: the local index's half, then the core's (which asks the server
/// for the rest when the search needs it).
fn search(
    core: &mut ClientCore,
    index: &mut ClientIndex,
    query: &str,
    conv: Option<&str>,
    limit: Option<u32>,
) -> Vec<Output> {
    match core.search_plan(query, conv, limit) {
        Ok(plan) => {
            let local = index.search(&plan);
            core.search(plan, local)
        }
        Err(e) => vec![Output::Event(e)],
    }
}

/// Sends the events among `outputs` (used while offline, when there is nothing to write).
async fn emit(events: &async_channel::Sender<ClientEvent>, outputs: Vec<Output>) {
    for o in outputs {
        if let Output::Event(e) = o {
            let _ = events.send(ClientEvent::App(e)).await;
        }
    }
}

/// The client's QUIC endpoints, one per address family, made on first use (a server list
/// may mix IPv4 and IPv6 addresses). A caller-supplied endpoint fills its family's slot.
#[derive(Default)]
struct Endpoints {
    v4: Option<Endpoint>,
    v6: Option<Endpoint>,
}

impl Endpoints {
    fn new(given: Option<Endpoint>) -> Self {
        let mut eps = Self::default();
        if let Some(ep) = given {
            match ep.local_addr() {
                Ok(a) if a.is_ipv6() => eps.v6 = Some(ep),
                _ => eps.v4 = Some(ep),
            }
        }
        eps
    }

    fn for_addr(&mut self, addr: SocketAddr) -> Result<Endpoint, String> {
        let (slot, bind) = if addr.is_ipv4() {
            (&mut self.v4, "0.0.0.0:0")
        } else {
            (&mut self.v6, "[::]:0")
        };
        if let Some(ep) = slot {
            return Ok(ep.clone());
        }
        let bind: SocketAddr = bind.parse().expect("valid wildcard address");
        let ep = Endpoint::client(bind).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        *slot = Some(ep.clone());
        Ok(ep)
    }
}

/// Where the client connects: the parsed `--server` list, and the address of the last
/// connection (the next round starts after it: see [`failover`]).
struct Target {
    list: ServerList,
    last: Option<SocketAddr>,
    endpoints: Endpoints,
}

/// Which address a session runs on (reported as the `server` event).
#[derive(Debug, Clone)]
struct Via {
    addr: SocketAddr,
    entry: String,
}

async fn connect(
    opts: &ClientOptions,
    target: &mut Target,
    hide_cursor: u64,
    identity_pub: [u8; 32],
    resume: Option<[u8; 32]>,
) -> Result<Session, ConnectError> {
    let candidates = failover::resolve(&target.list)
        .await
        .map_err(ConnectError::Transient)?;
    let candidates = failover::rotate(candidates, target.last);
    let config_err = |e: String| ConnectError::Fatal(Fatal::Config(e));
    let pins = opts
        .pins
        .load()
        .map_err(|e| config_err(format!("cannot read the known-servers file: {e}")))?;
    let pin = match &opts.trust {
        // An explicit fingerprint settles any disagreement between old pins.
        Trust::Fingerprint(_) => failover::list_pin(&pins, &target.list).unwrap_or(None),
        _ => failover::list_pin(&pins, &target.list).map_err(|e| {
            config_err(format!(
                "{e}: remove the wrong line from {}",
                opts.pins.path().display()
            ))
        })?,
    };
    let expected = match (&opts.trust, &pin) {
        (Trust::Fingerprint(f), _) => Some(f.clone()),
        (_, p) => p.clone(),
    };
    let entries = target.list.entries().to_vec();
    let pin_file = opts.pins.path().display().to_string();
    let timers = opts.timers;
    let endpoints = &mut target.endpoints;
    let attempt = |c: failover::Candidate| {
        let entry = entries[c.entry].clone();
        let verifier = PinningVerifier::new(expected.clone());
        let prepared = quic::client_config_with(verifier.clone(), &timers)
            .map_err(|e| ConnectError::Fatal(Fatal::Config(e.to_string())))
            .and_then(|config| {
                let ep = endpoints
                    .for_addr(c.addr)
                    .map_err(ConnectError::Transient)?;
                ep.connect_with(config, c.addr, SERVER_NAME)
                    .map_err(|e| ConnectError::Transient(format!("{}: {e}", c.addr)))
            });
        let (expected, pin_file) = (expected.clone(), pin_file.clone());
        async move {
            let connecting = prepared?;
            let handshake = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                .await
                .map_err(|_| {
                    ConnectError::Transient(format!(
                        "no answer from {} within {CONNECT_TIMEOUT:?}",
                        c.addr
                    ))
                })?;
            match handshake {
                Ok(conn) => Ok((conn, verifier.seen().unwrap_or_default())),
                Err(e) => Err(match (verifier.seen(), expected) {
                    (Some(got), Some(want)) if got != want => {
                        ConnectError::Fatal(Fatal::CertMismatch {
                            server: entry,
                            expected: want,
                            got,
                            pin_file,
                        })
                    }
                    _ => ConnectError::Transient(format!(
                        "{}: {}",
                        c.addr,
                        quic::connect_failure(&e)
                    )),
                }),
            }
        }
    };
    let is_final = |e: &ConnectError| matches!(e, ConnectError::Fatal(_));
    let (won, (conn, seen)) =
        match failover::race(&candidates, failover::STAGGER, attempt, is_final).await {
            Ok(w) => w,
            Err(mut errors) if errors.len() == 1 => return Err(errors.remove(0)),
            Err(errors) => {
                let text: Vec<String> = errors
                    .into_iter()
                    .map(|e| match e {
                        ConnectError::Transient(t) => t,
                        _ => "failed".into(),
                    })
                    .collect();
                return Err(ConnectError::Transient(if text.is_empty() {
                    "no address answered".into()
                } else {
                    text.join("; ")
                }));
            }
        };
    // One pin for the whole list: recorded under every entry that lacks it, so another
    // node of the cluster is never a "new server".
    let missing: Vec<&str> = entries
        .iter()
        .filter(|e| pins.get(*e) != Some(&seen))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        if pin.is_none() && opts.trust == Trust::PinnedOnly {
            conn.close(quic::code(quic::close::NORMAL), b"unknown server");
            return Err(ConnectError::Fatal(Fatal::UnknownServer {
                server: target.list.to_string(),
                fingerprint: seen,
            }));
        }
        opts.pins.set_all(&missing, &seen).map_err(|e| {
            ConnectError::Fatal(Fatal::Config(format!(
                "cannot save the server's fingerprint: {e}"
            )))
        })?;
    }
    target.last = Some(won.addr);
    let via = Via {
        addr: won.addr,
        entry: entries[won.entry].clone(),
    };
    login(conn, opts, hide_cursor, identity_pub, resume, via).await
}

async fn login(
    conn: Connection,
    opts: &ClientOptions,
    hide_cursor: u64,
    identity_pub: [u8; 32],
    resume: Option<[u8; 32]>,
    via: Via,
) -> Result<Session, ConnectError> {
    // When the server closed the connection, its reason says more than the stream error.
    let transient = |e: &dyn std::fmt::Display| {
        ConnectError::Transient(match conn.close_reason() {
            Some(_) => close_reason(&conn),
            None => e.to_string(),
        })
    };
    let (mut control, mut control_recv) = conn.open_bi().await.map_err(|e| transient(&e))?;
    let eph = Ephemeral::new();
    let client_pub = eph.public;
    let frame = match resume {
        Some(token) => ControlUp::Resume {
            version: PROTOCOL_VERSION,
            user: opts.user.clone(),
            token,
            session_pub: client_pub,
            identity_pub,
            hide_cursor,
        },
        None => ControlUp::Login {
            version: PROTOCOL_VERSION,
            user: opts.user.clone(),
            password: opts.password.clone(),
            session_pub: client_pub,
            identity_pub,
            hide_cursor,
        },
    };
    codec::write_frame(&mut control, &frame, MAX_UP_FRAME)
        .await
        .map_err(|e| transient(&e))?;
    let answer = tokio::time::timeout(
        LOGIN_TIMEOUT,
        codec::read_frame::<_, ControlDown>(&mut control_recv, MAX_DOWN_FRAME),
    )
    .await
    .map_err(|_| ConnectError::Transient("the server did not answer the login".into()))?;
    let login = match answer {
        Ok(Some(l @ ControlDown::LoginOk { .. })) => l,
        Ok(Some(ControlDown::LoginRefused { code, message })) => {
            return Err(if code == ErrorCode::LoginThrottled {
                ConnectError::Throttled(message)
            } else if resume.is_some() {
                // Whatever the reason (unknown, expired, another device's token, a full
                // disk), the password still works.
                ConnectError::ResumeRefused(message)
            } else {
                ConnectError::Fatal(Fatal::LoginRefused(message))
            });
        }
        // A server older than resumption closes on the unknown frame: use the password.
        Ok(_) if resume.is_some() => return Err(ConnectError::ResumeRefused(close_reason(&conn))),
        Ok(_) => return Err(ConnectError::Transient(close_reason(&conn))),
        Err(e) => return Err(transient(&e)),
    };
    let ControlDown::LoginOk {
        session_pub: server_pub,
        ..
    } = &login
    else {
        unreachable!("matched above")
    };
    let mut exporter = [0u8; 32];
    conn.export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
        .map_err(|_| ConnectError::Transient("no TLS exporter".into()))?;
    let shared = eph
        .agree(server_pub)
        .map_err(|_| ConnectError::Transient("the server sent an invalid session key".into()))?;
    let keys = Arc::new(SessionKeys::derive(
        &shared,
        &exporter,
        &client_pub,
        server_pub,
    ));
    Ok(Session {
        conn,
        control,
        control_recv,
        keys,
        login,
        via,
    })
}

fn close_reason(conn: &Connection) -> String {
    match conn.close_reason() {
        Some(quic::ConnectionError::ApplicationClosed(c)) => {
            let text = String::from_utf8_lossy(&c.reason).into_owned();
            if text.is_empty() {
                "the server closed the connection".into()
            } else {
                text
            }
        }
        Some(quic::ConnectionError::TimedOut) => "the connection timed out".into(),
        Some(e) => e.to_string(),
        None => "the connection ended".into(),
    }
}

enum Incoming {
    Control(ControlDown),
    Conv(ConvId, ConvDown),
    Warn(Event),
}

/// Opens a sealed body from the server; `false` (and a warning) if it does not open.
fn open_event(keys: &SessionKeys, conv_key: &str, e: &mut ConvEvent) -> bool {
    match keys.open_event_body(conv_key, e) {
        Ok(()) => true,
        Err(err) => {
            warn!("message {} from {} did not decrypt: {err}", e.id, e.sender);
            false
        }
    }
}

/// Counts a conversation stream's reader while it runs (for the `streams` figure).
struct Reading(Arc<AtomicUsize>);

impl Reading {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads a conversation stream until the server finishes it (after `Closed`, when the
/// client closed it) or the connection ends.
async fn conv_reader(
    conv: ConvId,
    mut recv: RecvStream,
    keys: Arc<SessionKeys>,
    tx: mpsc::Sender<Incoming>,
    reading: Reading,
) {
    let _reading = reading;
    let conv_key = conv.storage_key();
    loop {
        let mut down = match codec::read_frame::<_, ConvDown>(&mut recv, MAX_DOWN_FRAME).await {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                debug!("conversation stream {conv_key}: {e}");
                return;
            }
        };
        let ok = match &mut down {
            ConvDown::Event(e) | ConvDown::Backlog(e) => open_event(&keys, &conv_key, e)
                .then_some(())
                .ok_or_else(|| e.sender.clone()),
            ConvDown::History { events, .. } => {
                events.retain_mut(|e| open_event(&keys, &conv_key, e));
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(sender) = ok {
            let text = format!("a message from {sender} failed to decrypt and was dropped");
            let _ = tx
                .send(Incoming::Warn(Event::error(ErrorCode::BadRequest, text)))
                .await;
            continue;
        }
        if tx.send(Incoming::Conv(conv.clone(), down)).await.is_err() {
            return;
        }
    }
}

async fn control_reader(mut recv: RecvStream, tx: mpsc::Sender<Incoming>) {
    while let Ok(Some(down)) = codec::read_frame::<_, ControlDown>(&mut recv, MAX_DOWN_FRAME).await
    {
        if tx.send(Incoming::Control(down)).await.is_err() {
            return;
        }
    }
}

/// How a conversation frame's body is sealed end to end before the session envelope.
enum Seal {
    /// The first scheme (`identity`) in a private conversation; none elsewhere.
    Legacy,
    /// Already sealed by the MLS layer.
    Session,
}

struct Wire<'a> {
    conn: &'a Connection,
    control: &'a mut SendStream,
    streams: HashMap<ConvId, SendStream>,
    keys: Arc<SessionKeys>,
    identity: Arc<IdentityKey>,
    me_key: String,
    tx: mpsc::Sender<Incoming>,
    book: FileBook,
    /// Conversation streams still being read.
    reading: Arc<AtomicUsize>,
    /// The local search index, fed with the private messages shown.
    index: &'a mut ClientIndex,
    /// The MLS layer of private conversations.
    mls: &'a mut MlsClient,
}

/// What a session needs from the client around it.
struct SessionCtx<'a> {
    cmds: &'a async_channel::Receiver<Command>,
    events: &'a async_channel::Sender<ClientEvent>,
    opts: &'a ClientOptions,
    identity: &'a Arc<IdentityKey>,
    files: &'a mut ClientFiles,
    index: &'a mut ClientIndex,
    mls: &'a mut MlsClient,
    file_rx: &'a mut mpsc::UnboundedReceiver<FileMsg>,
    /// The start of the run: the core's clock counts from here.
    started: tokio::time::Instant,
}

/// The text shown in place of a private message that does not open.
const UNREADABLE: &str = crate::app::mls::UNREADABLE;

/// Opens the end-to-end layer of a private conversation's messages in place. A message
/// that does not open is replaced by a notice (so it is not lost from the sequence) and
/// reported; a sender key never seen for that peer is pinned and reported as a change.
fn open_private(
    core: &mut ClientCore,
    identity: &IdentityKey,
    conv: &ConvId,
    down: &mut ConvDown,
    handled: &std::collections::HashSet<MsgId>,
) -> Vec<Output> {
    let me = core.user().to_ascii_lowercase();
    let Some(peer) = conv.peer_of(&me).map(str::to_owned) else {
        return Vec::new();
    };
    let conv_key = conv.storage_key();
    let mut out = Vec::new();
    let mut open_one = |core: &mut ClientCore, e: &mut ConvEvent| {
        if handled.contains(&e.id) {
            // Opened by the MLS layer.
            return;
        }
        let e2e_id = super::sealing::e2e_open_id(e);
        let Some(body) = e.kind.body_mut() else {
            return;
        };
        if body.is_empty() {
            // An edit a later one superseded (or a delete erased): nothing to open.
            return;
        }
        match identity.open(&conv_key, &e.sender, e2e_id, body) {
            Ok((text, sender_pub)) => {
                if !e.sender.eq_ignore_ascii_case(&me)
                    && !core.is_known_peer_key(&peer, &sender_pub)
                {
                    out.extend(core.peer_key_seen(&e.sender, sender_pub));
                }
                *body = text;
            }
            Err(err) => {
                warn!(
                    "private message {} from {} did not open: {err}",
                    e.id, e.sender
                );
                *body = UNREADABLE.as_bytes().to_vec();
                let msg = format!(
                    "a private message from {} could not be decrypted: {err}",
                    e.sender
                );
                out.push(Output::Event(Event::error(ErrorCode::BadRequest, msg)));
            }
        }
    };
    match down {
        ConvDown::Event(e) | ConvDown::Backlog(e) => open_one(core, e),
        ConvDown::History { events, .. } => events.iter_mut().for_each(|e| open_one(core, e)),
        _ => {}
    }
    out
}

impl Wire<'_> {
    /// The `streams` answer from the wire itself: the conversation streams whose sending
    /// side is open, and how many the server has not finished yet.
    fn streams_event(&self, core: &ClientCore) -> Event {
        let me = core.user().to_ascii_lowercase();
        let mut open: Vec<String> = self.streams.keys().map(|c| c.label_for(&me)).collect();
        open.sort();
        Event::Streams {
            open,
            reading: self.reading.load(Ordering::Relaxed),
        }
    }

    /// Writes the core's frames, opening conversation streams on first use, and forwards
    /// its events. A write error means the connection is going away; `closed()` reports it.
    async fn apply(
        &mut self,
        outputs: Vec<Output>,
        events: &async_channel::Sender<ClientEvent>,
        core: &ClientCore,
    ) -> Result<(), String> {
        self.index.set_e2e_rooms(
            core.rooms()
                .iter()
                .filter(|(_, r)| r.visibility == crate::app::protocol::Visibility::Private)
                .map(|(k, _)| k.clone()),
        );
        self.index.note(core.user(), &outputs);
        for o in outputs {
            match o {
                Output::Event(e) => {
                    note_event(&self.book, core, &e);
                    let _ = events.send(ClientEvent::App(e)).await;
                }
                Output::Control(up) => {
                    codec::write_frame(self.control, &up, MAX_UP_FRAME)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Output::Conv(conv, up) if self.mls.is_e2e(&conv) => {
                    let outs = self.mls.outgoing(conv, up);
                    self.apply_mls(outs, events, core).await?;
                }
                Output::Conv(conv, up) => {
                    self.write_conv(conv, up, Seal::Legacy, events, core)
                        .await?
                }
            }
        }
        Ok(())
    }

    /// Tells the file transfers whether a direct conversation now goes with the first
    /// scheme (its files are then sealed with identity keys, for the peer's old client).
    fn note_scheme(&self, conv: &ConvId, legacy: bool) {
        if matches!(conv, ConvId::Direct(..))
            && let Ok(mut b) = self.book.lock()
        {
            b.set_legacy(conv, legacy);
        }
    }

    /// Carries out what the MLS layer asks for.
    async fn apply_mls(
        &mut self,
        outs: Vec<MlsOut>,
        events: &async_channel::Sender<ClientEvent>,
        core: &ClientCore,
    ) -> Result<(), String> {
        for o in outs {
            match o {
                MlsOut::Conv(conv, up) => {
                    self.note_scheme(&conv, false);
                    self.write_conv(conv, up, Seal::Session, events, core)
                        .await?
                }
                MlsOut::Legacy(conv, up) => {
                    self.note_scheme(&conv, true);
                    self.write_conv(conv, up, Seal::Legacy, events, core)
                        .await?
                }
                MlsOut::Control(up) => {
                    codec::write_frame(self.control, &up, MAX_UP_FRAME)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                MlsOut::Event(e) => {
                    let _ = events.send(ClientEvent::App(e)).await;
                }
            }
        }
        Ok(())
    }

    /// Seals a conversation frame and writes it, opening the stream on first use.
    async fn write_conv(
        &mut self,
        conv: ConvId,
        mut up: ConvUp,
        seal: Seal,
        events: &async_channel::Sender<ClientEvent>,
        core: &ClientCore,
    ) -> Result<(), String> {
        {
            {
                {
                    let peer_key = conv.peer_of(&self.me_key).and_then(|p| core.peer_key(p));
                    let sealed = match seal {
                        Seal::Legacy => seal_up(
                            &self.identity,
                            &self.keys,
                            peer_key,
                            &conv,
                            &self.me_key,
                            &mut up,
                        ),
                        Seal::Session => seal_session(&self.keys, &conv, &self.me_key, &mut up),
                    };
                    match sealed {
                        Ok(()) => {}
                        Err(e @ SealError::NoPeerKey(_)) => {
                            let msg = e.to_string();
                            let _ = events
                                .send(ClientEvent::App(Event::error(ErrorCode::Internal, msg)))
                                .await;
                            return Ok(());
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                    if !self.streams.contains_key(&conv) {
                        let (send, recv) = self.conn.open_bi().await.map_err(|e| e.to_string())?;
                        tokio::spawn(conv_reader(
                            conv.clone(),
                            recv,
                            self.keys.clone(),
                            self.tx.clone(),
                            Reading::start(&self.reading),
                        ));
                        self.streams.insert(conv.clone(), send);
                    }
                    let stream = self.streams.get_mut(&conv).expect("inserted above");
                    codec::write_frame(stream, &up, MAX_UP_FRAME)
                        .await
                        .map_err(|e| e.to_string())?;
                    if up == ConvUp::Close {
                        // Our side is done; the reader goes on until the server's `Closed`,
                        // and the next use opens a new stream.
                        if let Some(mut stream) = self.streams.remove(&conv) {
                            let _ = stream.finish();
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

async fn run_session(
    session: Session,
    core: &mut ClientCore,
    cmds_open: &mut bool,
    ctx: SessionCtx<'_>,
) -> SessionEnd {
    let SessionCtx {
        cmds,
        events,
        opts,
        identity,
        files,
        index,
        mls,
        file_rx,
        started,
    } = ctx;
    let Session {
        conn,
        mut control,
        control_recv,
        keys,
        login,
        via,
    } = session;
    let (tx, mut rx) = mpsc::channel(1024);
    let reader = tokio::spawn(control_reader(control_recv, tx.clone()));
    let ControlDown::LoginOk {
        user,
        convs,
        online,
        hidden,
        delete_window_secs,
        ..
    } = login
    else {
        unreachable!("login() returns LoginOk")
    };
    files.connected(&conn, &keys);
    let mut wire = Wire {
        book: files.book.clone(),
        conn: &conn,
        control: &mut control,
        streams: HashMap::new(),
        keys,
        identity: identity.clone(),
        me_key: user.to_ascii_lowercase(),
        tx,
        reading: Arc::new(AtomicUsize::new(0)),
        index,
        mls,
    };
    let mut closing_reason: Option<String> = None;
    let mut save_tick = tokio::time::interval(Duration::from_millis(250));
    // A drain that began before this session resumes here: its barrier is resent.
    let mut outputs = core.logged_in(user, convs, online, hidden, delete_window_secs);
    // Right after `ready` / `reconnected`: which address this session runs on.
    let at = outputs
        .iter()
        .position(|o| matches!(o, Output::Event(_)))
        .map_or(0, |i| i + 1);
    outputs.insert(
        at,
        Output::Event(Event::Server {
            addr: via.addr.to_string(),
            server: via.entry,
        }),
    );
    // This device and fresh key packages of it, before anything the user sees: a peer
    // told `ready` finds this device listed.
    let outs = wire.mls.logged_in();
    let mut result = wire.apply_mls(outs, events, core).await;
    if result.is_ok() {
        result = wire.apply(outputs, events, core).await;
    }
    let end = loop {
        if let Err(e) = std::mem::replace(&mut result, Ok(())) {
            debug!("write failed: {e}");
            // Let `closed()` below report the real reason.
        }
        tokio::select! {
            _ = conn.closed() => {
                if core.is_logging_out() {
                    break SessionEnd::Done;
                }
                break SessionEnd::Lost(closing_reason.take().unwrap_or_else(|| close_reason(&conn)));
            }
            cmd = cmds.recv(), if *cmds_open && !core.is_logging_out() => {
                let outputs = match cmd {
                    Ok(Command::Streams) => vec![Output::Event(wire.streams_event(core))],
                    Ok(Command::Search { query, conv, limit }) => {
                        search(core, wire.index, &query, conv.as_deref(), limit)
                    }
                    Ok(cmd @ (Command::Devices { .. }
                        | Command::SafetyCode { .. }
                        | Command::Verify { .. }
                        | Command::RemoveDevice { .. })) => {
                        let outs = wire.mls.command(cmd).unwrap_or_default();
                        result = wire.apply_mls(outs, events, core).await;
                        continue;
                    }
                    Ok(cmd) => match files.command(cmd, core) {
                        Ok(out) => out,
                        Err(cmd) => core.command(cmd),
                    },
                    Err(_) => {
                        // No more commands: the core flushes the outbox behind a barrier
                        // (after the file transfers), then logs out.
                        *cmds_open = false;
                        core.commands_ended(files.active())
                    }
                };
                result = wire.apply(outputs, events, core).await;
            }
            Some(msg) = file_rx.recv() => {
                let mut outputs = files.on_msg(msg, core);
                if files.active() == 0 {
                    outputs.extend(core.transfers_idle());
                }
                result = wire.apply(outputs, events, core).await;
            }
            Some(incoming) = rx.recv() => {
                let outputs = match incoming {
                    Incoming::Control(ControlDown::Closing { reason }) => {
                        closing_reason = Some(reason);
                        Vec::new()
                    }
                    Incoming::Control(down) => match wire.mls.control(&down) {
                        Some(outs) => {
                            result = wire.apply_mls(outs, events, core).await;
                            continue;
                        }
                        None => core.control(down),
                    },
                    Incoming::Conv(conv, mut down) => {
                        let (outs, pass) = wire.mls.answer(&conv, &down);
                        let (opened, handled) = if pass {
                            wire.mls.open(&conv, &mut down)
                        } else {
                            (Vec::new(), Default::default())
                        };
                        let mut mls_outs = outs;
                        mls_outs.extend(opened);
                        let mut out = Vec::new();
                        if pass {
                            out = open_private(core, identity, &conv, &mut down, &handled);
                            let mut from_core = core.conv(conv, down);
                            wire.mls.mark_e2e(&mut from_core);
                            out.extend(from_core);
                        }
                        // Frames in the order they were made: what the MLS layer sealed
                        // (or committed) while opening this frame goes before anything
                        // the core sends in answer, which is sealed later and may be an
                        // update commit that would make the first ones stale. Then the
                        // core's events, then the MLS layer's (a joined group's news after
                        // the message that brought it).
                        let (mls_events, mls_frames): (Vec<MlsOut>, Vec<MlsOut>) = mls_outs
                            .into_iter()
                            .partition(|o| matches!(o, MlsOut::Event(_)));
                        result = wire.apply_mls(mls_frames, events, core).await;
                        if result.is_ok() {
                            result = wire.apply(out, events, core).await;
                        }
                        if result.is_ok() {
                            result = wire.apply_mls(mls_events, events, core).await;
                        }
                        continue;
                    }
                    Incoming::Warn(e) => vec![Output::Event(e)],
                };
                result = wire.apply(outputs, events, core).await;
            }
            _ = save_tick.tick() => {
                // The index first: it is never behind a saved sync position.
                wire.index.flush();
                if let Some(state) = core.take_saved_state() {
                    save_state(&opts.state_file, &state).await;
                }
                super::mls_state::save(opts.state_file.as_deref(), wire.mls).await;
                // Idle streams close on this tick, so within a quarter second of their time.
                let outputs = core.tick(started.elapsed());
                result = wire.apply(outputs, events, core).await;
            }
        }
    };
    reader.abort();
    files.disconnected();
    wire.index.flush();
    if let Some(state) = core.take_saved_state() {
        save_state(&opts.state_file, &state).await;
    }
    end
}
