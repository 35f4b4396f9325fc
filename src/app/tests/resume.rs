//! Login resumption tokens in the server core: issued after a password login, single use,
//! bound to the account and the device's identity key, expiring, revoked by logout, and
//! refusals throttled like wrong passwords. Time and token bytes are chosen by hand.

use std::net::SocketAddr;

use crate::app::client::{ClientCore, SavedState};
use crate::app::ids::ConnId;
use crate::app::limits::Limits;
use crate::app::protocol::{ControlDown, ControlUp, ErrorCode, PROTOCOL_VERSION};
use crate::app::server::{Input, Output, RESUME_TOKEN_LIFETIME_MS, ServerCore, ServerLog};
use crate::app::store::MemStore;

const T0: u64 = 1_000_000;
const PHONE: [u8; 32] = [7; 32];
const LAPTOP: [u8; 32] = [8; 32];

struct Server {
    core: ServerCore<MemStore>,
    next: u64,
}

/// What one login attempt produced.
#[derive(Debug, Default)]
struct Outcome {
    ok: bool,
    refused: Option<ErrorCode>,
    /// The token handed out, with its expiry.
    token: Option<([u8; 32], u64)>,
    /// Whether Argon2 was asked for.
    password_checked: bool,
    /// The `resumed` flag of the operator's `ClientConnected`.
    resumed: Option<bool>,
}

impl Server {
    fn new() -> Self {
        Self {
            core: ServerCore::new(MemStore::default(), Limits::default()),
            next: 1,
        }
    }

    fn connect(&mut self, ip: u8, now: u64) -> ConnId {
        let conn = ConnId(self.next);
        self.next += 1;
        let addr = SocketAddr::from(([10, 0, 0, ip], 4000));
        self.core.handle(Input::Connected { conn, addr }, now);
        conn
    }

    /// Runs `input` and answers password checks as the transport would (`h:` + password
    /// is the "hash").
    fn run(&mut self, conn: ConnId, input: Input, now: u64) -> Outcome {
        let mut outcome = Outcome::default();
        let mut queue = self.core.handle(input, now);
        while !queue.is_empty() {
            for out in std::mem::take(&mut queue) {
                match out {
                    Output::VerifyPassword { password, phc, .. } => {
                        outcome.password_checked = true;
                        let input = Input::PasswordChecked {
                            conn,
                            ok: phc.as_ref().is_none_or(|p| *p == format!("h:{password}")),
                            new_phc: phc.is_none().then(|| format!("h:{password}")),
                        };
                        queue.extend(self.core.handle(input, now));
                    }
                    Output::Control { down, .. } => match down {
                        ControlDown::LoginOk { .. } => outcome.ok = true,
                        ControlDown::LoginRefused { code, .. } => outcome.refused = Some(code),
                        ControlDown::ResumeToken { token, expires_ms } => {
                            outcome.token = Some((token, expires_ms))
                        }
                        _ => {}
                    },
                    Output::Log(ServerLog::ClientConnected { resumed, .. }) => {
                        outcome.resumed = Some(resumed)
                    }
                    _ => {}
                }
            }
        }
        outcome
    }

    /// Connects from `10.0.0.{ip}` and sends `up`, offering `next` as the token to issue.
    fn attempt(&mut self, ip: u8, up: ControlUp, next: [u8; 32], now: u64) -> (ConnId, Outcome) {
        let conn = self.connect(ip, now);
        let input = Input::Login {
            conn,
            up,
            token: next,
        };
        (conn, self.run(conn, input, now))
    }

    fn login(&mut self, user: &str, device: [u8; 32], next: [u8; 32], now: u64) -> Outcome {
        let up = ControlUp::Login {
            version: PROTOCOL_VERSION,
            user: user.into(),
            password: "password123".into(),
            session_pub: [0; 32],
            identity_pub: device,
            hide_cursor: 0,
        };
        let (conn, outcome) = self.attempt(1, up, next, now);
        self.core.handle(Input::Disconnected { conn }, now);
        outcome
    }

    fn resume_from(
        &mut self,
        ip: u8,
        user: &str,
        token: [u8; 32],
        device: [u8; 32],
        next: [u8; 32],
        now: u64,
    ) -> (ConnId, Outcome) {
        let up = ControlUp::Resume {
            version: PROTOCOL_VERSION,
            user: user.into(),
            token,
            session_pub: [0; 32],
            identity_pub: device,
            hide_cursor: 0,
        };
        self.attempt(ip, up, next, now)
    }

    fn resume(&mut self, user: &str, token: [u8; 32], device: [u8; 32], now: u64) -> Outcome {
        let next = [self.next as u8; 32];
        let (conn, outcome) = self.resume_from(1, user, token, device, next, now);
        self.core.handle(Input::Disconnected { conn }, now);
        outcome
    }
}

#[test]
fn a_password_login_issues_a_token_that_logs_in_once_without_the_password() {
    let mut s = Server::new();
    let first = s.login("alice", PHONE, [1; 32], T0);
    assert!(first.ok && first.password_checked);
    assert_eq!(first.token, Some(([1; 32], T0 + RESUME_TOKEN_LIFETIME_MS)));
    assert_eq!(first.resumed, Some(false));

    let (conn, again) = s.resume_from(1, "Alice", [1; 32], PHONE, [2; 32], T0 + 5);
    assert!(again.ok, "{again:?}");
    assert!(!again.password_checked, "no Argon2 on a resume");
    assert_eq!(again.resumed, Some(true));
    assert_eq!(
        again.token,
        Some(([2; 32], T0 + 5 + RESUME_TOKEN_LIFETIME_MS))
    );
    s.core.handle(Input::Disconnected { conn }, T0 + 5);

    // Rotated: the old token is spent, the new one works.
    let spent = s.resume("alice", [1; 32], PHONE, T0 + 6);
    assert_eq!(spent.refused, Some(ErrorCode::LoginRefused));
    assert!(s.resume("alice", [2; 32], PHONE, T0 + 7).ok);
}

#[test]
fn a_token_works_only_for_its_account_and_device() {
    let mut s = Server::new();
    s.login("alice", PHONE, [1; 32], T0);
    s.login("bob", LAPTOP, [2; 32], T0);
    // Stolen and replayed from another device: refused, and burnt for the owner too.
    let stolen = s.resume("alice", [1; 32], LAPTOP, T0 + 1);
    assert_eq!(stolen.refused, Some(ErrorCode::LoginRefused));
    assert!(!stolen.password_checked);
    assert_eq!(
        s.resume("alice", [1; 32], PHONE, T0 + 2).refused,
        Some(ErrorCode::LoginRefused)
    );
    // Bob's token does not open Alice's account, even from Bob's device.
    assert!(s.resume("alice", [2; 32], LAPTOP, T0 + 3).refused.is_some());
    // Unknown bytes.
    assert!(s.resume("bob", [9; 32], LAPTOP, T0 + 4).refused.is_some());
}

#[test]
fn a_token_expires_after_thirty_days() {
    let mut s = Server::new();
    s.login("alice", PHONE, [1; 32], T0);
    s.login("alice", PHONE, [2; 32], T0);
    let end = T0 + RESUME_TOKEN_LIFETIME_MS;
    assert!(s.resume("alice", [1; 32], PHONE, end - 1).ok);
    assert_eq!(
        s.resume("alice", [2; 32], PHONE, end).refused,
        Some(ErrorCode::LoginRefused)
    );
}

#[test]
fn logout_revokes_the_sessions_token() {
    let mut s = Server::new();
    let conn = s.connect(1, T0);
    let up = ControlUp::Login {
        version: PROTOCOL_VERSION,
        user: "alice".into(),
        password: "password123".into(),
        session_pub: [0; 32],
        identity_pub: PHONE,
        hide_cursor: 0,
    };
    assert!(
        s.run(
            conn,
            Input::Login {
                conn,
                up,
                token: [1; 32]
            },
            T0
        )
        .ok
    );
    let up = ControlUp::Logout;
    s.run(conn, Input::Control { conn, up }, T0 + 1);
    s.core.handle(Input::Disconnected { conn }, T0 + 1);
    assert_eq!(
        s.resume("alice", [1; 32], PHONE, T0 + 2).refused,
        Some(ErrorCode::LoginRefused)
    );
}

#[test]
fn refused_tokens_count_against_the_login_throttles() {
    let mut s = Server::new();
    s.login("alice", PHONE, [1; 32], T0);
    for n in 0..Limits::default().login_fail_per_account {
        let (_, o) = s.resume_from(2 + n as u8, "alice", [9; 32], PHONE, [0; 32], T0 + 1);
        assert_eq!(o.refused, Some(ErrorCode::LoginRefused));
    }
    // Even the right token waits now, and is not spent by the refusal.
    let (_, o) = s.resume_from(9, "alice", [1; 32], PHONE, [3; 32], T0 + 2);
    assert_eq!(o.refused, Some(ErrorCode::LoginThrottled));
    let later = T0 + 3_600_000;
    assert!(s.resume("alice", [1; 32], PHONE, later).ok);
}

#[test]
fn a_login_without_entropy_issues_no_token() {
    let mut s = Server::new();
    let conn = s.connect(1, T0);
    let up = ControlUp::Login {
        version: PROTOCOL_VERSION,
        user: "alice".into(),
        password: "password123".into(),
        session_pub: [0; 32],
        identity_pub: PHONE,
        hide_cursor: 0,
    };
    let o = s.run(conn, Input::Control { conn, up }, T0);
    assert!(o.ok && o.token.is_none());
}

#[test]
fn the_client_keeps_the_token_in_its_saved_state_until_logout() {
    let mut c = ClientCore::new("alice", SavedState::default(), [0; 8]);
    assert_eq!(c.resume_token(T0), None);
    c.control(ControlDown::ResumeToken {
        token: [1; 32],
        expires_ms: T0 + 10,
    });
    let saved = c.take_saved_state().expect("changed");
    let mut c = ClientCore::new("alice", saved, [0; 8]);
    assert_eq!(c.resume_token(T0), Some([1; 32]));
    assert_eq!(c.resume_token(T0 + 10), None, "expired: use the password");
    c.forget_resume_token();
    assert_eq!(c.take_saved_state().expect("changed").resume, None);
}
