//! Connections and sessions: login (with its throttling and password check), presence,
//! migration and disconnection, and the control stream's commands.

use std::net::SocketAddr;

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use super::{ConnState, Output, ServerCore, ServerLog, Session};
use super::{LOGIN_REFUSED_REASON, MIN_PASSWORD, RESUME_TOKEN_LIFETIME_MS};
use crate::app::ids::{ConnId, ConvId, UserName};
use crate::app::protocol::{
    ControlDown, ControlUp, ConvDown, ConvSummary, ErrorCode, PROTOCOL_VERSION,
};
use crate::app::store::{ResumeRecord, Store, StoreError};

/// The fields of a [`ControlUp::Resume`] the core uses.
#[derive(Debug)]
pub(super) struct ResumeRequest {
    pub(super) version: u16,
    pub(super) user: String,
    pub(super) token: [u8; 32],
    pub(super) hide_cursor: u64,
    pub(super) identity_pub: [u8; 32],
}

#[derive(Debug)]
pub(super) struct LoginRequest {
    pub(super) version: u16,
    pub(super) user: String,
    pub(super) password: String,
    pub(super) hide_cursor: u64,
    pub(super) identity_pub: [u8; 32],
}

impl<S: Store> ServerCore<S> {
    pub(super) fn migrated(&mut self, conn: ConnId, addr: SocketAddr) {
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

    pub(super) fn disconnected(&mut self, conn: ConnId) {
        self.mls_devices.remove(&conn);
        self.mls_refused.remove(&conn);
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

    /// `name`'s first session came or last session went: every other user hears it
    /// (in cluster mode, unless the user has sessions on another node).
    pub(super) fn presence(&mut self, name: &UserName, online: bool) {
        if self.presence_is_news(&name.key(), name.as_str(), online) {
            self.tell_presence(&name.key(), name.as_str(), online);
        }
    }

    pub(super) fn online_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .online
            .values()
            .filter_map(|set| set.iter().next())
            .filter_map(|c| self.session(*c).map(|s| s.name.to_string()))
            .collect();
        self.add_remote_names(&mut names);
        names
    }

    pub(super) fn refuse_login(
        &mut self,
        conn: ConnId,
        user: &str,
        code: ErrorCode,
        message: String,
    ) {
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

    /// A control-stream frame. `token` is the resumption token a login or resume issues if
    /// it succeeds (none when the frame came without one, as [`Input::Control`]).
    ///
    /// [`Input::Control`]: super::Input::Control
    pub(super) fn control(
        &mut self,
        conn: ConnId,
        up: ControlUp,
        token: Option<[u8; 32]>,
        now: u64,
    ) -> Result<(), StoreError> {
        let Some(c) = self.conns.get(&conn) else {
            return Ok(());
        };
        if matches!(up, ControlUp::Login { .. } | ControlUp::Resume { .. })
            && !matches!(c.state, ConnState::Connected)
        {
            self.control_error(conn, ErrorCode::BadRequest, "already logged in");
            return Ok(());
        }
        match up {
            ControlUp::Login {
                version,
                user,
                password,
                hide_cursor,
                identity_pub,
                ..
            } => {
                let login = LoginRequest {
                    version,
                    user,
                    password,
                    hide_cursor,
                    identity_pub,
                };
                self.login(conn, login, token, now)
            }
            ControlUp::Resume {
                version,
                user,
                token: presented,
                hide_cursor,
                identity_pub,
                ..
            } => {
                let resume = ResumeRequest {
                    version,
                    user,
                    token: presented,
                    hide_cursor,
                    identity_pub,
                };
                self.resume(conn, resume, token, now)
            }
            up => self.logged_in_control(conn, up, now),
        }
    }

    /// A control command after login.
    fn logged_in_control(
        &mut self,
        conn: ConnId,
        up: ControlUp,
        now: u64,
    ) -> Result<(), StoreError> {
        let Some(session) = self.session(conn) else {
            self.control_error(conn, ErrorCode::NotLoggedIn, "log in first");
            return Ok(());
        };
        match up {
            ControlUp::Login { .. } | ControlUp::Resume { .. } => {
                unreachable!("handled by `control`")
            }
            ControlUp::Who => {
                let users = self.online_names();
                self.control_out(conn, ControlDown::Who { users });
            }
            ControlUp::Sync { token } => self.control_out(conn, ControlDown::SyncAck { token }),
            ControlUp::Room(up) => {
                let name = session.name.clone();
                self.room_command(conn, &name, up)?;
            }
            ControlUp::Logout => {
                // Logging out also ends this device's way back in without the password.
                if let Some(hash) = session.resume_hash {
                    self.store.take_resume_token(&hash)?;
                }
                self.out.push(Output::Close {
                    conn,
                    reason: "logged out".into(),
                })
            }
            ControlUp::Delete { id, scope } => {
                let (name, key) = (session.name.clone(), session.key.clone());
                self.delete(conn, &name, &key, id, scope, now)?;
            }
            up @ (ControlUp::Read { .. }
            | ControlUp::Receipts { .. }
            | ControlUp::Typing { .. }
            | ControlUp::SeenBy { .. }) => {
                let name = session.name.clone();
                self.read_state_command(conn, &name, up, now)?;
            }
            ControlUp::Search {
                token,
                query,
                conv,
                limit,
            } => {
                let key = session.key.clone();
                let req = super::search::SearchRequest {
                    token,
                    query,
                    conv,
                    limit,
                };
                self.search(conn, &key, req, now)?;
            }
            up @ (ControlUp::MlsDevice { .. }
            | ControlUp::Devices { .. }
            | ControlUp::ClaimKeyPackages { .. }
            | ControlUp::RemoveDevice { .. }
            | ControlUp::ClaimRoomKeyPackages { .. }) => {
                let key = session.key.clone();
                self.mls_command(conn, &key, up)?;
            }
        }
        Ok(())
    }

    /// The checks every login starts with: protocol version, a well-formed name, and the
    /// failed-login throttles (per account and per address). `None` when refused.
    fn login_gate(&mut self, conn: ConnId, version: u16, user: &str, now: u64) -> Option<UserName> {
        if version != PROTOCOL_VERSION {
            let msg =
                format!("this server speaks protocol {PROTOCOL_VERSION}, the client {version}");
            self.refuse_login(conn, user, ErrorCode::BadRequest, msg);
            return None;
        }
        let name = match UserName::parse(user) {
            Ok(n) => n,
            Err(e) => {
                self.refuse_login(conn, user, ErrorCode::BadUsername, e.to_string());
                return None;
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
            self.refuse_login(conn, user, ErrorCode::LoginThrottled, msg);
            return None;
        }
        Some(name)
    }

    pub(super) fn login(
        &mut self,
        conn: ConnId,
        login: LoginRequest,
        token: Option<[u8; 32]>,
        now: u64,
    ) -> Result<(), StoreError> {
        let LoginRequest {
            version,
            user,
            password,
            hide_cursor,
            identity_pub,
        } = login;
        let Some(name) = self.login_gate(conn, version, &user, now) else {
            return Ok(());
        };
        let key = name.key();
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
                token,
            };
        }
        self.out.push(Output::VerifyPassword {
            conn,
            password,
            phc,
        });
        Ok(())
    }

    /// A login with a resumption token: no Argon2. The token is taken from the store
    /// whatever the outcome (single use: a thief's try burns it too), then must belong to
    /// this account and this identity key and not have expired. A refusal counts against
    /// the same throttles as a wrong password.
    pub(super) fn resume(
        &mut self,
        conn: ConnId,
        resume: ResumeRequest,
        next: Option<[u8; 32]>,
        now: u64,
    ) -> Result<(), StoreError> {
        let ResumeRequest {
            version,
            user,
            token,
            hide_cursor,
            identity_pub,
        } = resume;
        let Some(name) = self.login_gate(conn, version, &user, now) else {
            return Ok(());
        };
        let key = name.key();
        let hash: [u8; 32] = Sha256::digest(token).into();
        let found = self.store.take_resume_token(&hash)?;
        let valid = found.as_ref().is_some_and(|r| {
            r.user_key == key && r.identity_pub == identity_pub && now < r.expires_ms
        });
        let account = if valid { self.store.user(&key)? } else { None };
        let Some(account) = account else {
            let addr = self.conns[&conn].addr;
            self.publish_failed_login(&key, addr.ip());
            self.fail_account.record(key, now);
            self.fail_ip.record(addr.ip(), now);
            let msg = "resumption token refused; log in with the password".to_owned();
            self.refuse_login(conn, &user, ErrorCode::LoginRefused, msg);
            return Ok(());
        };
        let name = UserName::parse(&account.name).unwrap_or(name);
        self.logged_in(conn, name, hide_cursor, identity_pub, next, true, now)
    }

    pub(super) fn password_checked(
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
            token,
        } = &c.state
        else {
            return Ok(());
        };
        let (name, hide_cursor, identity_pub, token, addr) =
            (name.clone(), *hide_cursor, *identity_pub, *token, c.addr);
        let key = name.key();
        if !ok {
            self.publish_failed_login(&key, addr.ip());
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
        self.logged_in(conn, name, hide_cursor, identity_pub, token, false, now)
    }

    /// The account is proven (password or token): open the session, answer `LoginOk` and
    /// hand out the next resumption token.
    #[allow(clippy::too_many_arguments)]
    fn logged_in(
        &mut self,
        conn: ConnId,
        name: UserName,
        hide_cursor: u64,
        identity_pub: [u8; 32],
        token: Option<[u8; 32]>,
        resumed: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        let key = name.key();
        let Some(addr) = self.conns.get(&conn).map(|c| c.addr) else {
            return Ok(());
        };
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
                resume_hash: None,
            });
        }
        let first = !self.online.contains_key(&key);
        self.online.entry(key.clone()).or_default().insert(conn);
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
        if let Some(token) = token {
            self.issue_token(conn, key, identity_pub, token, now);
        }
        self.room_state(conn, &name.key())?;
        self.read_state(conn, &name.key())?;
        self.log(ServerLog::ClientConnected {
            conn,
            user: name.to_string(),
            addr,
            resumed,
        });
        Ok(())
    }

    /// Stores a resumption token's hash and sends the token. If the store refuses (a full
    /// disk), the login still stands, only without a token: the next one uses the password.
    fn issue_token(
        &mut self,
        conn: ConnId,
        user_key: String,
        identity_pub: [u8; 32],
        token: [u8; 32],
        now: u64,
    ) {
        let hash: [u8; 32] = Sha256::digest(token).into();
        let expires_ms = now.saturating_add(RESUME_TOKEN_LIFETIME_MS);
        let record = ResumeRecord {
            user_key,
            identity_pub,
            expires_ms,
        };
        if let Err(e) = self.store.put_resume_token(&hash, &record, now) {
            let full = e.is_full();
            self.log(ServerLog::StoreFailed {
                error: e.message,
                full,
            });
            return;
        }
        if let Some(s) = self.session_mut(conn) {
            s.resume_hash = Some(hash);
        }
        self.control_out(conn, ControlDown::ResumeToken { token, expires_ms });
    }

    /// Tells every session with an open private conversation with `name` its new key.
    pub(super) fn announce_key(&mut self, name: &UserName, key: [u8; 32]) {
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
}
