//! The server's chat rules as a state machine: `handle(input, now) -> outputs`.
//!
//! One owner (the hub thread in `transport::server`) feeds it every event of every
//! connection in order; it answers with frames to send, password checks to run, connections
//! to close and log lines. It never touches a socket or a clock.

use super::ids::{ClientMsgId, ConnId, ConvId, UserName};
use super::limits::{FailureWindow, Limits, TokenBucket};
use super::protocol::{
    ControlDown, ControlUp, ConvDown, ConvEvent, ConvSummary, ConvUp, DeleteScope, E2E_OVERHEAD,
    ErrorCode, EventKind, Hidden, PROTOCOL_VERSION,
};
use super::store::{Store, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

mod rooms;

use rooms::RoomEntry;
use std::net::{IpAddr, SocketAddr};

/// The author name of announcements.
pub const SERVER_AUTHOR: &str = "server";
/// The reason given with [`Output::Close`] after a refused login.
pub const LOGIN_REFUSED_REASON: &str = "login refused";

/// Shortest password accepted for a new account.
pub const MIN_PASSWORD: usize = 8;

/// Everything that can happen to the server.
#[derive(Debug, Clone)]
pub enum Input {
    /// A QUIC connection finished its handshake.
    Connected {
        /// Connection.
        conn: ConnId,
        /// Remote address.
        addr: SocketAddr,
    },
    /// The remote address of a connection changed (NAT rebinding, network switch).
    Migrated {
        /// Connection.
        conn: ConnId,
        /// New address.
        addr: SocketAddr,
    },
    /// The connection is gone.
    Disconnected {
        /// Connection.
        conn: ConnId,
    },
    /// A control-stream frame.
    Control {
        /// Connection.
        conn: ConnId,
        /// Frame.
        up: ControlUp,
    },
    /// A conversation-stream frame; `conv` is the one the stream was opened for.
    Conv {
        /// Connection.
        conn: ConnId,
        /// Conversation of the stream.
        conv: ConvId,
        /// Frame.
        up: ConvUp,
    },
    /// Result of an [`Output::VerifyPassword`].
    PasswordChecked {
        /// Connection.
        conn: ConnId,
        /// Whether the password matched (always true for a registration).
        ok: bool,
        /// For a registration, the new Argon2id hash.
        new_phc: Option<String>,
    },
    /// The operator posts to `#general` (`room: None`) or into any room, as `server`.
    Announce {
        /// The room's name or key; `None` for `#general`.
        room: Option<String>,
        /// Text.
        text: String,
        /// A fresh random id for it.
        cmid: ClientMsgId,
    },
    /// The operator closes a room: every member is removed ("closed by the operator") and
    /// the room, its history and its name are gone.
    CloseRoom {
        /// The room's name or key.
        room: String,
    },
    /// The operator disconnects a client.
    Kick {
        /// Connection.
        conn: ConnId,
    },
    /// The server is stopping: tell everyone.
    Shutdown {
        /// For the users.
        reason: String,
    },
}

/// What the core asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send on the control stream.
    Control {
        /// Connection.
        conn: ConnId,
        /// Frame.
        down: ControlDown,
    },
    /// Send on a conversation stream.
    Conv {
        /// Connection.
        conn: ConnId,
        /// Conversation.
        conv: ConvId,
        /// Frame.
        down: ConvDown,
    },
    /// Check `password` against `phc`, or hash it when `phc` is `None` (registration);
    /// answer with [`Input::PasswordChecked`].
    VerifyPassword {
        /// Connection.
        conn: ConnId,
        /// Password.
        password: String,
        /// Stored hash.
        phc: Option<String>,
    },
    /// Close the connection after flushing what was queued.
    Close {
        /// Connection.
        conn: ConnId,
        /// For the user.
        reason: String,
    },
    /// Something for the operator's view.
    Log(ServerLog),
    /// `conn` is no longer in the room `conv`: the transport must not write any frame of
    /// that conversation still queued for it (nor any later one) and finishes its stream.
    /// Applied by the driver at once, in order with the outputs before it, so what was
    /// queued before the removal never reaches the removed user.
    Revoke {
        /// Connection.
        conn: ConnId,
        /// The room's conversation.
        conv: ConvId,
    },
    /// Room membership changed: `user` (key) is now (`member: true`) or no longer a member
    /// of the room `room` (key). The transport keeps a copy for file transfers.
    Membership {
        /// Room key.
        room: String,
        /// User key.
        user: String,
        /// Member now?
        member: bool,
    },
}

/// Events for the operator (headless JSON lines, the server window, tracing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLog {
    /// A user logged in.
    ClientConnected {
        /// Connection.
        conn: ConnId,
        /// User.
        user: String,
        /// Address.
        addr: SocketAddr,
    },
    /// A logged-in user left.
    ClientDisconnected {
        /// Connection.
        conn: ConnId,
        /// User.
        user: String,
        /// Address.
        addr: SocketAddr,
    },
    /// A logged-in user's address changed.
    ClientMigrated {
        /// Connection.
        conn: ConnId,
        /// User.
        user: String,
        /// Old address.
        from: SocketAddr,
        /// New address.
        addr: SocketAddr,
    },
    /// A message was stored; `text` only for `#general` (private ones are not shown).
    Message {
        /// Connection of the sender (`None` for announcements).
        conn: Option<ConnId>,
        /// Author.
        from: String,
        /// `#general` or the other member's name.
        to: String,
        /// Room text.
        text: Option<String>,
    },
    /// A message was deleted for everyone.
    Deleted {
        /// Who deleted it.
        by: String,
        /// Message id.
        id: u64,
        /// Its conversation.
        conv: ConvId,
        /// Its author.
        sender: String,
        /// Its client message id (a file message's file id).
        cmid: ClientMsgId,
    },
    /// A login was refused.
    LoginRefused {
        /// Address.
        addr: SocketAddr,
        /// Name tried.
        user: String,
        /// Why.
        reason: String,
    },
    /// A user created a room.
    RoomCreated {
        /// Room name.
        room: String,
        /// Its creator.
        by: String,
        /// Public or private.
        visibility: super::rooms::Visibility,
    },
    /// A room's figures for the operator's list: at start for every stored room, and
    /// after every change of its membership.
    RoomUpdated {
        /// Room name.
        room: String,
        /// Public or private.
        visibility: super::rooms::Visibility,
        /// How many members.
        members: u32,
        /// Unix ms of its newest message (0: none yet).
        last_activity: u64,
    },
    /// A room was closed (its last member left, or the operator closed it).
    RoomClosed {
        /// Room name.
        room: String,
    },
    /// A storage failure.
    StoreFailed {
        /// What failed.
        error: String,
        /// Because the disk is full (logged at `warn` with what to do).
        full: bool,
    },
}

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
                up: ControlUp::Login { .. },
            }
            | Input::PasswordChecked { conn, .. } => Some(Asker::Login(*conn)),
            Input::Control { conn, .. } => Some(Asker::Control(*conn)),
            Input::Conv { conn, conv, up } => {
                let cmid = match up {
                    ConvUp::Send { cmid, .. } => Some(*cmid),
                    _ => None,
                };
                Some(Asker::Conv(*conn, conv.clone(), cmid))
            }
            _ => None,
        }
    }
}

#[derive(Debug)]
struct LoginRequest {
    version: u16,
    user: String,
    password: String,
    hide_cursor: u64,
    identity_pub: [u8; 32],
}

#[derive(Debug)]
enum ConnState {
    Connected,
    Verifying {
        name: UserName,
        hide_cursor: u64,
        identity_pub: [u8; 32],
    },
    LoggedIn(Session),
}

#[derive(Debug)]
struct Session {
    name: UserName,
    key: String,
    open: HashSet<ConvId>,
    notified: HashSet<ConvId>,
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
            Input::Control { conn, up } => self.control(conn, up, now)?,
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
                        from: SERVER_AUTHOR.into(),
                        to: conv.label_for(""),
                        text: Some(text),
                    });
                }
            }
            Input::CloseRoom { room } => self.close_room(&room)?,
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

    fn migrated(&mut self, conn: ConnId, addr: SocketAddr) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let from = std::mem::replace(&mut c.addr, addr);
        if let ConnState::LoggedIn(s) = &c.state {
            let user = s.name.to_string();
            self.log(ServerLog::ClientMigrated {
                conn,
                user,
                from,
                addr,
            });
        }
    }

    fn disconnected(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let ConnState::LoggedIn(s) = c.state else {
            return;
        };
        let last = match self.online.get_mut(&s.key) {
            Some(set) => {
                set.remove(&conn);
                set.is_empty()
            }
            None => false,
        };
        if last {
            self.online.remove(&s.key);
            self.presence(&s.name, false);
        }
        self.log(ServerLog::ClientDisconnected {
            conn,
            user: s.name.to_string(),
            addr: c.addr,
        });
    }

    fn presence(&mut self, name: &UserName, online: bool) {
        let targets: Vec<ConnId> = self
            .online
            .iter()
            .filter(|(k, _)| **k != name.key())
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        for conn in targets {
            self.control_out(
                conn,
                ControlDown::Presence {
                    user: name.to_string(),
                    online,
                },
            );
        }
    }

    fn online_names(&self) -> Vec<String> {
        self.online
            .values()
            .filter_map(|set| set.iter().next())
            .filter_map(|c| self.session(*c).map(|s| s.name.to_string()))
            .collect()
    }

    fn refuse_login(&mut self, conn: ConnId, user: &str, code: ErrorCode, message: String) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::Connected;
            let addr = c.addr;
            self.log(ServerLog::LoginRefused {
                addr,
                user: user.to_owned(),
                reason: message.clone(),
            });
        }
        self.control_out(conn, ControlDown::LoginRefused { code, message });
        self.out.push(Output::Close {
            conn,
            reason: LOGIN_REFUSED_REASON.into(),
        });
    }

    fn control(&mut self, conn: ConnId, up: ControlUp, now: u64) -> Result<(), StoreError> {
        let Some(c) = self.conns.get(&conn) else {
            return Ok(());
        };
        if let ControlUp::Login {
            version,
            user,
            password,
            hide_cursor,
            identity_pub,
            ..
        } = up
        {
            if !matches!(c.state, ConnState::Connected) {
                self.control_error(conn, ErrorCode::BadRequest, "already logged in");
                return Ok(());
            }
            let login = LoginRequest {
                version,
                user,
                password,
                hide_cursor,
                identity_pub,
            };
            return self.login(conn, login, now);
        }
        let Some(session) = self.session(conn) else {
            self.control_error(conn, ErrorCode::NotLoggedIn, "log in first");
            return Ok(());
        };
        match up {
            ControlUp::Login { .. } => unreachable!("handled above"),
            ControlUp::Who => {
                let users = self.online_names();
                self.control_out(conn, ControlDown::Who { users });
            }
            ControlUp::Sync { token } => self.control_out(conn, ControlDown::SyncAck { token }),
            ControlUp::Room(up) => {
                let name = session.name.clone();
                self.room_command(conn, &name, up)?;
            }
            ControlUp::Logout => self.out.push(Output::Close {
                conn,
                reason: "logged out".into(),
            }),
            ControlUp::Delete { id, scope } => {
                let (name, key) = (session.name.clone(), session.key.clone());
                self.delete(conn, &name, &key, id, scope, now)?;
            }
        }
        Ok(())
    }

    fn login(&mut self, conn: ConnId, login: LoginRequest, now: u64) -> Result<(), StoreError> {
        let LoginRequest {
            version,
            user,
            password,
            hide_cursor,
            identity_pub,
        } = login;
        if version != PROTOCOL_VERSION {
            let msg =
                format!("this server speaks protocol {PROTOCOL_VERSION}, the client {version}");
            self.refuse_login(conn, &user, ErrorCode::BadRequest, msg);
            return Ok(());
        }
        let name = match UserName::parse(&user) {
            Ok(n) => n,
            Err(e) => {
                self.refuse_login(conn, &user, ErrorCode::BadUsername, e.to_string());
                return Ok(());
            }
        };
        let key = name.key();
        let ip = self.conns[&conn].addr.ip();
        let throttled = self
            .fail_account
            .check(&key, self.limits.login_fail_per_account, now)
            .and(self.fail_ip.check(&ip, self.limits.login_fail_per_ip, now));
        if let Err(ms) = throttled {
            let msg = format!(
                "too many failed logins; try again in {} s",
                ms.div_ceil(1000)
            );
            self.refuse_login(conn, &user, ErrorCode::LoginThrottled, msg);
            return Ok(());
        }
        let (name, phc) = match self.store.user(&key)? {
            Some(rec) => (UserName::parse(&rec.name).unwrap_or(name), Some(rec.phc)),
            None => {
                let name = match UserName::parse_new(&user) {
                    Ok(n) => n,
                    Err(e) => {
                        self.refuse_login(conn, &user, ErrorCode::BadUsername, e.to_string());
                        return Ok(());
                    }
                };
                if self.store.skeleton_taken(&name.skeleton(), &key)? {
                    let msg = "that username is too similar to an existing one".to_owned();
                    self.refuse_login(conn, &user, ErrorCode::BadUsername, msg);
                    return Ok(());
                }
                if password.chars().count() < MIN_PASSWORD {
                    let msg = format!(
                        "a new account needs a password of at least {MIN_PASSWORD} characters"
                    );
                    self.refuse_login(conn, &user, ErrorCode::LoginRefused, msg);
                    return Ok(());
                }
                (name, None)
            }
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::Verifying {
                name,
                hide_cursor,
                identity_pub,
            };
        }
        self.out.push(Output::VerifyPassword {
            conn,
            password,
            phc,
        });
        Ok(())
    }

    fn password_checked(
        &mut self,
        conn: ConnId,
        ok: bool,
        new_phc: Option<String>,
        now: u64,
    ) -> Result<(), StoreError> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        let ConnState::Verifying {
            name,
            hide_cursor,
            identity_pub,
        } = &c.state
        else {
            return Ok(());
        };
        let (name, hide_cursor, identity_pub, addr) =
            (name.clone(), *hide_cursor, *identity_pub, c.addr);
        let key = name.key();
        if !ok {
            self.fail_account.record(key, now);
            self.fail_ip.record(addr.ip(), now);
            let msg = "wrong username or password".to_owned();
            self.refuse_login(conn, name.as_str(), ErrorCode::LoginRefused, msg);
            return Ok(());
        }
        if let Some(phc) = new_phc
            && !self
                .store
                .create_user(name.as_str(), &key, &name.skeleton(), &phc)?
        {
            let msg = "that username was just taken".to_owned();
            self.refuse_login(conn, name.as_str(), ErrorCode::BadUsername, msg);
            return Ok(());
        }
        let old_key = self.store.set_identity_key(&key, identity_pub)?;
        if old_key.is_some_and(|k| k != identity_pub) {
            self.announce_key(&name, identity_pub);
        }
        let convs = self
            .store
            .conversations(&key)?
            .into_iter()
            .map(|(conv, last_seq)| ConvSummary { conv, last_seq })
            .collect();
        let hidden = self.store.hidden_after(&key, hide_cursor)?;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::LoggedIn(Session {
                name: name.clone(),
                key: key.clone(),
                open: HashSet::new(),
                notified: HashSet::new(),
            });
        }
        let first = !self.online.contains_key(&key);
        self.online.entry(key).or_default().insert(conn);
        if first {
            self.presence(&name, true);
        }
        let online = self.online_names();
        self.control_out(
            conn,
            ControlDown::LoginOk {
                user: name.to_string(),
                session_pub: [0; 32],
                convs,
                online,
                hidden,
                delete_window_secs: self.limits.delete_window_secs,
            },
        );
        self.room_state(conn, &name.key())?;
        self.log(ServerLog::ClientConnected {
            conn,
            user: name.to_string(),
            addr,
        });
        Ok(())
    }

    /// Tells every session with an open private conversation with `name` its new key.
    fn announce_key(&mut self, name: &UserName, key: [u8; 32]) {
        let targets: Vec<(ConnId, ConvId)> = self
            .conns
            .iter()
            .filter_map(|(c, conn)| match &conn.state {
                ConnState::LoggedIn(s) => Some((*c, s)),
                _ => None,
            })
            .flat_map(|(c, s)| {
                s.open
                    .iter()
                    .filter(|conv| conv.peer_of(&s.key) == Some(name.key().as_str()))
                    .map(move |conv| (c, conv.clone()))
            })
            .collect();
        for (conn, conv) in targets {
            let user = name.to_string();
            self.conv_out(conn, &conv, ConvDown::PeerKey { user, key });
        }
    }

    /// Rebuilds a client-supplied conversation id in canonical form, checking membership
    /// and that the peer exists.
    fn canonical_conv(
        &mut self,
        key: &str,
        conv: &ConvId,
    ) -> Result<Result<ConvId, (ErrorCode, String)>, StoreError> {
        let (a, b) = match conv {
            ConvId::General => return Ok(Ok(ConvId::General)),
            // Rooms: membership is the room state's (see `crate::app::rooms`).
            ConvId::Room(room) => return Ok(self.room_conv(key, room)),
            ConvId::Direct(a, b) => (a, b),
        };
        if a != key && b != key {
            return Ok(Err((
                ErrorCode::NotFound,
                "not a conversation of yours".into(),
            )));
        }
        let peer = if a == key { b } else { a };
        let Ok(peer_name) = UserName::parse(peer) else {
            return Ok(Err((
                ErrorCode::UnknownUser,
                format!("no user named {peer}"),
            )));
        };
        let Some(rec) = self.store.user(&peer_name.key())? else {
            return Ok(Err((
                ErrorCode::UnknownUser,
                format!("no user named {peer}"),
            )));
        };
        let me = UserName::parse(key).map_err(|e| StoreError::other(e.to_string()))?;
        let peer = UserName::parse(&rec.name).unwrap_or(peer_name);
        Ok(Ok(ConvId::direct(&me, &peer)))
    }

    fn conv(&mut self, conn: ConnId, conv: ConvId, up: ConvUp, now: u64) -> Result<(), StoreError> {
        let Some(session) = self.session(conn) else {
            if self.conns.contains_key(&conn) {
                self.conv_error(conn, &conv, ErrorCode::NotLoggedIn, "log in first", None);
            }
            return Ok(());
        };
        let (name, key) = (session.name.clone(), session.key.clone());
        let is_open = session.open.contains(&conv);
        if let ConvUp::Open { after, .. } = up {
            match self.canonical_conv(&key, &conv)? {
                Ok(c) if c == conv => {
                    if let Some(s) = self.session_mut(conn) {
                        s.open.insert(conv.clone());
                        s.notified.remove(&conv);
                    }
                    if let Some(peer) = conv.peer_of(&key) {
                        let peer = peer.to_owned();
                        if let (Some(rec), Some(pk)) =
                            (self.store.user(&peer)?, self.store.identity_key(&peer)?)
                        {
                            self.conv_out(
                                conn,
                                &conv,
                                ConvDown::PeerKey {
                                    user: rec.name,
                                    key: pk,
                                },
                            );
                        }
                    }
                    return self.catch_up(conn, &key, &conv, after);
                }
                Ok(_) => self.conv_error(
                    conn,
                    &conv,
                    ErrorCode::BadRequest,
                    "malformed conversation id",
                    None,
                ),
                Err((code, msg)) => self.conv_error(conn, &conv, code, msg, None),
            }
            return Ok(());
        }
        if let ConvUp::Sync { token } = up {
            // A barrier is answered even on a stream whose open failed.
            self.conv_out(conn, &conv, ConvDown::SyncAck { token });
            return Ok(());
        }
        if let ConvUp::Close = up {
            // The client closes an idle stream: later news goes out as `ConvActivity`.
            if let Some(s) = self.session_mut(conn) {
                s.open.remove(&conv);
                s.notified.remove(&conv);
            }
            self.conv_out(conn, &conv, ConvDown::Closed);
            return Ok(());
        }
        if !is_open {
            let cmid = match &up {
                ConvUp::Send { cmid, .. } => Some(*cmid),
                _ => None,
            };
            // A room left (or never joined) says so; anything else was never opened.
            if let ConvId::Room(room) = &conv
                && let Err((code, msg)) = self.room_conv(&key, room)
            {
                self.conv_error(conn, &conv, code, msg, cmid);
                return Ok(());
            }
            let msg = "open the conversation first";
            self.conv_error(conn, &conv, ErrorCode::NotOpen, msg, cmid);
            return Ok(());
        }
        match up {
            ConvUp::Open { .. } | ConvUp::Sync { .. } | ConvUp::Close => {
                unreachable!("handled above")
            }
            ConvUp::Catchup { after } => self.catch_up(conn, &key, &conv, Some(after))?,
            ConvUp::History { before, limit } => {
                let limit = match limit as usize {
                    0 => self.limits.history_page,
                    n => n.min(self.limits.history_max),
                };
                let mut events =
                    self.store
                        .events_before(&conv, before.unwrap_or(u64::MAX), limit, &key)?;
                // A private room's member reads from the moment they joined.
                let from = self.visible_from(&conv, &key);
                events.retain(|e| e.seq >= from);
                let more = events.first().is_some_and(|e| e.seq > from);
                self.conv_out(conn, &conv, ConvDown::History { events, more });
            }
            ConvUp::Send { cmid, body } => self.send(conn, &name, &conv, cmid, body, now)?,
            ConvUp::File(_) => {
                let msg = "a file request must be the first frame of its own stream";
                self.conv_error(conn, &conv, ErrorCode::BadRequest, msg, None);
            }
        }
        Ok(())
    }

    fn catch_up(
        &mut self,
        conn: ConnId,
        key: &str,
        conv: &ConvId,
        after: Option<u64>,
    ) -> Result<(), StoreError> {
        let from = self.visible_from(conv, key);
        let (mut events, mut more) = match after {
            Some(after) => {
                let after = after.max(from - 1);
                let max = self.limits.history_max;
                let events = self.store.events_after(conv, after, max, key)?;
                let more = events.len() == max;
                (events, more)
            }
            None => {
                let page = self.limits.history_page;
                let mut events = self.store.events_before(conv, u64::MAX, page, key)?;
                events.retain(|e| e.seq >= from);
                (events, false)
            }
        };
        // A round stays within a byte budget, so a client catching up on big messages never
        // looks like one that stopped reading; it asks for the next round when this one is in.
        let budget = self.limits.catchup_bytes;
        let size = |e: &ConvEvent| {
            64 + match &e.kind {
                EventKind::Message { body } => body.len(),
                _ => 0,
            }
        };
        let mut bytes = 0;
        if after.is_some() {
            // Oldest first: stop at the budget, the client continues from there.
            if let Some(cut) = events.iter().position(|e| {
                bytes += size(e);
                bytes > budget
            }) {
                events.truncate(cut.max(1));
                more = true;
            }
        } else if let Some(cut) = events.iter().rposition(|e| {
            // A new device: the newest events that fit (older ones stay in history).
            bytes += size(e);
            bytes > budget
        }) {
            let keep_from = (cut + 1).min(events.len() - 1);
            events.drain(..keep_from);
        }
        // Events hidden for this user leave holes in the numbering, so `upto` (not the
        // last event sent) tells the client where it stands.
        let upto = match (more, events.last()) {
            (true, Some(e)) => e.seq,
            _ => self.store.last_seq(conv)?,
        };
        for e in events {
            self.conv_out(conn, conv, ConvDown::Backlog(e));
        }
        self.conv_out(conn, conv, ConvDown::CaughtUp { upto, more });
        Ok(())
    }

    fn send(
        &mut self,
        conn: ConnId,
        name: &UserName,
        conv: &ConvId,
        cmid: ClientMsgId,
        body: Vec<u8>,
        now: u64,
    ) -> Result<(), StoreError> {
        let limit = match conv {
            ConvId::General | ConvId::Room(_) => self.limits.max_body,
            ConvId::Direct(..) => self.limits.max_body + E2E_OVERHEAD,
        };
        if body.len() > limit {
            let msg = format!("message is {} bytes; the limit is {limit}", body.len());
            self.conv_error(conn, conv, ErrorCode::TooLarge, msg, Some(cmid));
            return Ok(());
        }
        if body.is_empty() {
            self.conv_error(
                conn,
                conv,
                ErrorCode::BadRequest,
                "empty message",
                Some(cmid),
            );
            return Ok(());
        }
        let text = match (conv, std::str::from_utf8(&body)) {
            (ConvId::General | ConvId::Room(_), Ok(t)) => Some(t.to_owned()),
            (ConvId::General | ConvId::Room(_), Err(_)) => {
                self.conv_error(
                    conn,
                    conv,
                    ErrorCode::BadRequest,
                    "message is not UTF-8 text",
                    Some(cmid),
                );
                return Ok(());
            }
            _ => None,
        };
        let (burst, rate) = (self.limits.msg_burst, self.limits.msg_per_sec);
        let bucket = self
            .buckets
            .entry(name.key())
            .or_insert_with(|| TokenBucket::new(burst, now));
        if let Err(ms) = bucket.take(burst, rate, now) {
            let msg = format!("sending too fast; retry in {ms} ms");
            self.conv_error(conn, conv, ErrorCode::RateLimited, msg, Some(cmid));
            return Ok(());
        }
        let (event, dup) = self
            .store
            .insert_message(conv, name.as_str(), cmid, &body, now)?;
        self.conv_out(
            conn,
            conv,
            ConvDown::Ack {
                cmid,
                id: event.id,
                seq: event.seq,
                ts: event.ts,
            },
        );
        if !dup {
            self.touch(conv, now);
            self.fan_out(conv, &event, Some(conn));
            let to = match conv.peer_of(&name.key()) {
                Some(peer) => peer.to_owned(),
                None => conv.label_for(""),
            };
            self.log(ServerLog::Message {
                conn: Some(conn),
                from: name.to_string(),
                to,
                text,
            });
        }
        Ok(())
    }

    /// Delivers an event to every member session except `skip`: on its stream if open,
    /// else a one-time [`ControlDown::ConvActivity`].
    fn fan_out(&mut self, conv: &ConvId, event: &ConvEvent, skip: Option<ConnId>) {
        let targets: Vec<ConnId> = match conv {
            // Online members only: a room of 500 is not a walk over everyone online.
            ConvId::Room(room) => match self.rooms.get(room) {
                Some(entry) => entry
                    .room
                    .members
                    .keys()
                    .filter_map(|k| self.online.get(k))
                    .flat_map(|s| s.iter().copied())
                    .filter(|c| Some(*c) != skip)
                    .collect(),
                None => Vec::new(),
            },
            _ => self
                .online
                .iter()
                .filter(|(k, _)| conv.has_member(k))
                .flat_map(|(_, s)| s.iter().copied())
                .filter(|c| Some(*c) != skip)
                .collect(),
        };
        for conn in targets {
            let Some(s) = self.session_mut(conn) else {
                continue;
            };
            if s.open.contains(conv) {
                self.conv_out(conn, conv, ConvDown::Event(event.clone()));
            } else if s.notified.insert(conv.clone()) {
                self.control_out(conn, ControlDown::ConvActivity { conv: conv.clone() });
            }
        }
    }

    fn delete(
        &mut self,
        conn: ConnId,
        name: &UserName,
        key: &str,
        id: u64,
        scope: DeleteScope,
        now: u64,
    ) -> Result<(), StoreError> {
        let found = self
            .store
            .event(id)?
            .filter(|s| self.can_read(&s.conv, key, s.event.seq));
        let Some(stored) = found else {
            self.control_error(
                conn,
                ErrorCode::NotFound,
                format!("no message {id} in your conversations"),
            );
            return Ok(());
        };
        let conv = stored.conv;
        match (&stored.event.kind, scope) {
            (EventKind::Tombstone { .. }, _) => {
                self.control_error(conn, ErrorCode::NotFound, format!("{id} is not a message"));
            }
            (_, DeleteScope::Me) => {
                let hseq = self.store.hide(key, &conv, id)?;
                let hidden = Hidden {
                    conv,
                    id,
                    hseq: hseq.unwrap_or(0),
                };
                let targets: Vec<ConnId> = match hseq {
                    Some(_) => self
                        .online
                        .get(key)
                        .map(|s| s.iter().copied().collect())
                        .unwrap_or_default(),
                    None => vec![conn],
                };
                for c in targets {
                    self.control_out(c, ControlDown::Hidden(hidden.clone()));
                }
            }
            (EventKind::Erased, DeleteScope::Everyone) => {
                self.control_error(
                    conn,
                    ErrorCode::NotFound,
                    format!("message {id} was already deleted"),
                );
            }
            (EventKind::Message { .. }, DeleteScope::Everyone) => {
                // A room's moderators delete anyone's message, at any time; the tombstone
                // is the usual one (clients show the message as removed).
                let moderator = self.moderates(&conv, key);
                if stored.event.sender.to_ascii_lowercase() != key && !moderator {
                    self.control_error(
                        conn,
                        ErrorCode::NotAuthor,
                        "only the author can delete a message for everyone",
                    );
                    return Ok(());
                }
                let window_ms = self.limits.delete_window_secs.saturating_mul(1000);
                if !moderator && now.saturating_sub(stored.event.ts) > window_ms {
                    let msg = format!(
                        "messages can be deleted for everyone only within {} of sending",
                        human_secs(self.limits.delete_window_secs)
                    );
                    self.control_error(conn, ErrorCode::DeleteWindowExpired, msg);
                    return Ok(());
                }
                let mut cmid = [0u8; 16];
                cmid[..4].copy_from_slice(b"tomb");
                cmid[8..].copy_from_slice(&id.to_be_bytes());
                let tomb = self.store.erase(id, ClientMsgId(cmid), now)?;
                self.fan_out(&conv, &tomb, None);
                self.log(ServerLog::Deleted {
                    by: name.to_string(),
                    id,
                    conv: conv.clone(),
                    sender: stored.event.sender.clone(),
                    cmid: stored.event.cmid,
                });
            }
        }
        Ok(())
    }
}

fn human_secs(s: u64) -> String {
    match s {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}
