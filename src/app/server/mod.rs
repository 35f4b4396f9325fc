//! The server's chat rules as a state machine: `handle(input, now) -> outputs`.
//!
//! One owner (the hub thread in `transport::server`) feeds it every event of every
//! connection in order; it answers with frames to send, password checks to run, connections
//! to close and log lines. It never touches a socket or a clock.
//!
//! Layout: `api` holds the inputs and outputs; this file the core, its dispatch and the
//! helpers every part uses; `session` logins, presence and the control stream; `convs`
//! conversation streams (open, catch-up, history, send, fan-out); `delete` deletions;
//! `rooms` rooms and their moderation; `receipts` read markers and seen receipts; `typing`
//! typing notices; `mentions` the `@name` mentions of server-readable messages; `search`
//! message search.

mod api;
mod cluster;
mod convs;
mod delete;
mod edits;
mod key_packages;
mod mentions;
mod mls;
mod receipts;
mod rooms;
mod search;
mod session;
mod typing;

pub use api::{Input, Output, ServerLog};
pub use cluster::{ClusterMsg, NODE_EXPIRY_MS, ROSTER_EVERY_MS, WireEffect, WireKind};
pub use key_packages::{CLAIM_LIMIT, CLAIM_WINDOW_MS};
pub use receipts::MAX_RECEIPT_MEMBERS;
pub use typing::TYPING_INTERVAL_MS;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use super::ids::{ClientMsgId, ConnId, ConvId, UserName};
use super::limits::{FailureWindow, Limits, TokenBucket};
use super::protocol::{ControlDown, ControlUp, ConvDown, ErrorCode};
use super::store::{Store, StoreError};
use rooms::RoomEntry;

/// The author name of announcements.
pub const SERVER_AUTHOR: &str = "server";
/// The reason given with [`Output::Close`] after a refused login.
pub const LOGIN_REFUSED_REASON: &str = "login refused";

/// How long a resumption token works (30 days); every use replaces it with a new one.
pub const RESUME_TOKEN_LIFETIME_MS: u64 = 30 * 24 * 3600 * 1000;

/// Shortest password accepted for a new account.
pub const MIN_PASSWORD: usize = 8;

#[derive(Debug)]
/// Who is waiting for the answer to an input, should the store fail while handling it.
enum Asker {
    /// A login (or the password check that completes it).
    Login(ConnId),
    /// A control-stream command.
    Control(ConnId),
    /// A conversation-stream command, with the message it concerns.
    Conv(ConnId, ConvId, Option<ClientMsgId>),
}

impl Asker {
    fn of(input: &Input) -> Option<Self> {
        match input {
            Input::Control {
                conn,
                up: ControlUp::Login { .. } | ControlUp::Resume { .. },
            }
            | Input::Login { conn, .. }
            | Input::PasswordChecked { conn, .. } => Some(Asker::Login(*conn)),
            Input::Control { conn, .. } => Some(Asker::Control(*conn)),
            Input::Conv { conn, conv, up } => Some(Asker::Conv(*conn, conv.clone(), up.cmid())),
            _ => None,
        }
    }
}

#[derive(Debug)]
enum ConnState {
    Connected,
    Verifying {
        name: UserName,
        hide_cursor: u64,
        identity_pub: [u8; 32],
        /// The resumption token to issue once the password checks out.
        token: Option<[u8; 32]>,
    },
    LoggedIn(Session),
}

#[derive(Debug)]
struct Session {
    name: UserName,
    key: String,
    open: HashSet<ConvId>,
    notified: HashSet<ConvId>,
    /// SHA-256 of the resumption token issued to this session, revoked by `Logout`.
    resume_hash: Option<[u8; 32]>,
}

#[derive(Debug)]
struct Conn {
    addr: SocketAddr,
    state: ConnState,
}

/// The server's chat state.
pub struct ServerCore<S> {
    store: S,
    limits: Limits,
    conns: HashMap<ConnId, Conn>,
    /// Logged-in sessions by user key.
    online: BTreeMap<String, BTreeSet<ConnId>>,
    buckets: HashMap<String, TokenBucket>,
    fail_account: FailureWindow<String>,
    fail_ip: FailureWindow<IpAddr>,
    last_gc: u64,
    /// Rooms users created, by key (`#general` is not one of them).
    rooms: BTreeMap<String, RoomEntry>,
    /// Display names by user key, looked up once.
    names: HashMap<String, String>,
    out: Vec<Output>,
    /// When typing notices were last forwarded, for their rate limit.
    typing_gate: typing::TypingGate,
    /// The other nodes, in cluster mode (`None`: a single node).
    cluster: Option<cluster::ClusterState>,
    /// The MLS device of each session that announced one (`mls.rs`).
    mls_devices: HashMap<ConnId, String>,
    /// Sessions whose device announcement was refused because the device was removed
    /// (`mls.rs`): they get no key packages.
    mls_refused: HashSet<ConnId>,
    /// The time of the input being handled (Unix ms), for rules that count per window.
    now: u64,
    /// Private rooms whose members changed since their last commit: an application
    /// message waits for a commit (`mls.rs`, `Gate`).
    mls_rekey: std::collections::HashSet<String>,
}

impl<S: Store> ServerCore<S> {
    /// A server with no connections.
    pub fn new(store: S, limits: Limits) -> Self {
        Self {
            store,
            limits,
            conns: HashMap::new(),
            online: BTreeMap::new(),
            buckets: HashMap::new(),
            fail_account: FailureWindow::default(),
            fail_ip: FailureWindow::default(),
            last_gc: 0,
            rooms: BTreeMap::new(),
            names: HashMap::new(),
            out: Vec::new(),
            typing_gate: typing::TypingGate::default(),
            cluster: None,
            mls_devices: HashMap::new(),
            mls_refused: HashSet::new(),
            now: 0,
            mls_rekey: std::collections::HashSet::new(),
        }
    }

    /// The store (the driver commits its transactions).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Handles one input at `now_ms` (Unix ms) and returns what to do.
    pub fn handle(&mut self, input: Input, now_ms: u64) -> Vec<Output> {
        self.now = now_ms;
        if now_ms.saturating_sub(self.last_gc) > 60_000 {
            self.fail_account.gc(now_ms);
            self.fail_ip.gc(now_ms);
            self.last_gc = now_ms;
        }
        let asker = Asker::of(&input);
        if let Err(e) = self.dispatch(input, now_ms) {
            self.store_failed(asker, e);
        }
        std::mem::take(&mut self.out)
    }

    /// A command failed in the store: the operator's log says why, and whoever asked gets
    /// an answer at once (`server_full` on a full disk, otherwise `internal`) instead of
    /// waiting for one that never comes.
    fn store_failed(&mut self, asker: Option<Asker>, e: StoreError) {
        let (code, text) = if e.is_full() {
            (
                ErrorCode::ServerFull,
                "the server is out of storage space; try again later",
            )
        } else {
            (ErrorCode::Internal, "the server could not store that")
        };
        let full = e.is_full();
        self.out.push(Output::Log(ServerLog::StoreFailed {
            error: e.message,
            full,
        }));
        match asker {
            None => {}
            Some(Asker::Login(conn)) => {
                let user = match self.conns.get(&conn).map(|c| &c.state) {
                    Some(ConnState::Verifying { name, .. }) => name.to_string(),
                    _ => String::new(),
                };
                self.refuse_login(conn, &user, code, text.into());
            }
            Some(Asker::Control(conn)) => self.control_error(conn, code, text),
            Some(Asker::Conv(conn, conv, cmid)) => self.conv_error(conn, &conv, code, text, cmid),
        }
    }

    fn dispatch(&mut self, input: Input, now: u64) -> Result<(), StoreError> {
        match input {
            Input::Connected { conn, addr } => {
                self.conns.insert(
                    conn,
                    Conn {
                        addr,
                        state: ConnState::Connected,
                    },
                );
            }
            Input::Migrated { conn, addr } => self.migrated(conn, addr),
            Input::Disconnected { conn } => self.disconnected(conn),
            Input::Control { conn, up } => self.control(conn, up, None, now)?,
            Input::Login { conn, up, token } => self.control(conn, up, Some(token), now)?,
            Input::Conv { conn, conv, up } => self.conv(conn, conv, up, now)?,
            Input::PasswordChecked { conn, ok, new_phc } => {
                self.password_checked(conn, ok, new_phc, now)?
            }
            Input::Announce { room, text, cmid } => {
                let conv = match room {
                    None => ConvId::General,
                    Some(r) => match self.room_key(&r) {
                        Some(key) => ConvId::Room(key),
                        None => {
                            tracing::info!(room = %r, "announcement into no such room dropped");
                            return Ok(());
                        }
                    },
                };
                let (event, dup) =
                    self.store
                        .insert_message(&conv, SERVER_AUTHOR, cmid, text.as_bytes(), now)?;
                if !dup {
                    self.touch(&conv, now);
                    self.fan_out(&conv, &event, None);
                    self.log(ServerLog::Message {
                        conn: None,
                        id: event.id,
                        from: SERVER_AUTHOR.into(),
                        to: conv.label_for(""),
                        text: Some(text),
                    });
                }
            }
            Input::CloseRoom { room } => self.close_room(&room)?,
            Input::Cluster { from, msg } => self.cluster_input(from, msg, now)?,
            Input::ClusterTick => self.cluster_tick(now),
            Input::ClusterResync => self.cluster_resync()?,
            Input::OperatorDelete { id } => self.operator_delete(id, now)?,
            Input::Kick { conn } => {
                if self.conns.contains_key(&conn) {
                    self.out.push(Output::Close {
                        conn,
                        reason: "disconnected by the server operator".into(),
                    });
                }
            }
            Input::Shutdown { reason } => {
                for conn in self.conns.keys().copied().collect::<Vec<_>>() {
                    self.control_out(
                        conn,
                        ControlDown::Closing {
                            reason: reason.clone(),
                        },
                    );
                    self.out.push(Output::Close {
                        conn,
                        reason: reason.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    fn log(&mut self, l: ServerLog) {
        self.out.push(Output::Log(l));
    }

    fn control_out(&mut self, conn: ConnId, down: ControlDown) {
        self.out.push(Output::Control { conn, down });
    }

    fn conv_out(&mut self, conn: ConnId, conv: &ConvId, down: ConvDown) {
        self.out.push(Output::Conv {
            conn,
            conv: conv.clone(),
            down,
        });
    }

    fn control_error(&mut self, conn: ConnId, code: ErrorCode, message: impl Into<String>) {
        self.control_out(
            conn,
            ControlDown::Error {
                code,
                message: message.into(),
            },
        );
    }

    fn conv_error(
        &mut self,
        conn: ConnId,
        conv: &ConvId,
        code: ErrorCode,
        message: impl Into<String>,
        cmid: Option<ClientMsgId>,
    ) {
        self.conv_out(
            conn,
            conv,
            ConvDown::Error {
                code,
                message: message.into(),
                cmid,
            },
        );
    }

    fn session(&self, conn: ConnId) -> Option<&Session> {
        match &self.conns.get(&conn)?.state {
            ConnState::LoggedIn(s) => Some(s),
            _ => None,
        }
    }

    fn session_mut(&mut self, conn: ConnId) -> Option<&mut Session> {
        match &mut self.conns.get_mut(&conn)?.state {
            ConnState::LoggedIn(s) => Some(s),
            _ => None,
        }
    }
}
