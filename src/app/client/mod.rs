//! The client's chat rules as a state machine, shared by the scripted client and the GUI.
//!
//! It keeps the outbox (sent but not acknowledged, resent after a reconnect with the same
//! client message id), the sequence position of each conversation (catch-up from there,
//! gaps noticed and filled), the set of shown messages (nothing shown twice) and the `sync`
//! barriers. The driver feeds it commands and server frames; it answers with frames to send
//! and [`Event`]s for the user.
//!
//! Layout: `command` is the scripted contract (commands, events); this file holds the
//! core and its dispatch; `streams` the stream lifecycle; `incoming` the frames arriving on
//! conversation streams; `outbox` unacknowledged sends; `barrier` the `sync` barriers;
//! `rooms` room news; `keys` peers' identity keys; `backoff` reconnect delays; `receipts`
//! read markers, unread counts and seen receipts; `typing` who is typing; `mentions` the
//! `@name` mentions of private messages.

mod backoff;
mod barrier;
mod command;
mod edits;
mod incoming;
mod keys;
mod mentions;
mod outbox;
mod receipts;
mod rooms;
mod search;
mod streams;
mod typing;

pub use backoff::Backoff;
pub use command::{Command, Event, HistoryItem, InvitationItem, ReactionCount, RoomItem};
pub use keys::{from_hex, to_hex};
pub use receipts::{SeenItem, Unread};
pub use search::{LocalScope, SearchItem, SearchPlan};
pub use streams::{MAX_CONV_STREAMS, STREAM_IDLE};
pub use typing::TYPING_SHOWN;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::ids::{ConvId, GENERAL, MsgId, Seq, UserName};
use crate::app::protocol::{
    ControlDown, ControlUp, ConvSummary, ConvUp, DeleteScope, ErrorCode, Hidden,
};
use crate::app::rooms::RoomName;
use barrier::Barrier;
use command::room_up;
use outbox::Pending;
use streams::ConvState;

/// Largest message text the client sends (the server's default limit).
pub const MAX_TEXT: usize = 16 * 1024;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send on the control stream.
    Control(ControlUp),
    /// Send on the stream of this conversation, opening it first if there is none.
    Conv(ConvId, ConvUp),
    /// Tell the user.
    Event(Event),
}

/// What the client remembers between runs (per server and user).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    /// Last sequence number seen per conversation (storage keys).
    pub convs: BTreeMap<String, Seq>,
    /// Highest delete-for-me counter seen.
    pub hide_cursor: u64,
    /// Identity keys seen per peer (hex, oldest first; the last is the pinned one).
    #[serde(default)]
    pub peer_keys: BTreeMap<String, Vec<String>>,
    /// The resumption token for the next login (hex), with its expiry (Unix ms): a secret
    /// like a password, which is why the state file is private (0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<(String, u64)>,
}

/// How far the client is in ending its run. The driver reports the end of the commands and
/// of the file transfers; the core decides when everything is flushed and logs out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ending {
    /// Commands may still come.
    #[default]
    Running,
    /// The commands ended while file transfers were running: drain once they are done
    /// (an upload still posts its file message).
    AfterTransfers,
    /// The commands ended: barrier `token` flushes the outbox and every answer; once it
    /// completes, the core logs out instead of reporting `sync`.
    Draining {
        /// The drain barrier.
        token: u64,
    },
    /// Logout sent: the connection closing is the normal end.
    LoggingOut,
}

/// The client state machine.
#[derive(Debug)]
pub struct ClientCore {
    ending: Ending,
    me: String,
    me_key: String,
    online: bool,
    ever_ready: bool,
    convs: BTreeMap<ConvId, ConvState>,
    outbox: Vec<Pending>,
    shown: HashSet<MsgId>,
    hide_cursor: u64,
    barriers: VecDeque<Barrier>,
    next_token: u64,
    id_prefix: [u8; 8],
    next_cmid: u64,
    dirty: bool,
    peer_keys: BTreeMap<String, Vec<[u8; 32]>>,
    /// The resumption token for the next login and its expiry (Unix ms).
    resume: Option<([u8; 32], u64)>,
    /// The rooms this user is in, by key, as the server last told.
    rooms: BTreeMap<String, RoomItem>,
    /// The clock as of the last [`ClientCore::tick`], ms.
    now: u64,
    /// Idle time after which a conversation stream closes, ms.
    stream_idle: u64,
    /// Conversation streams open at once, at most.
    max_streams: usize,
    /// Messages seen and their reactions (for edits, replies and reactions).
    known: edits::Known,
    /// Searches waiting for the server.
    searches: search::Searches,
    out: Vec<Output>,
    /// Read markers, unread counts, the receipts setting.
    reads: receipts::ReadState,
    /// Who is typing where.
    typing: typing::Typing,
}

impl ClientCore {
    /// A client for `user` (as typed), with state from an earlier run and 8 random bytes
    /// that make its message ids unique.
    pub fn new(user: &str, saved: SavedState, random: [u8; 8]) -> Self {
        let convs = saved
            .convs
            .iter()
            .filter_map(|(k, s)| ConvId::from_storage_key(k).map(|c| (c, *s)))
            .map(|(c, s)| (c, ConvState::new(Some(s))))
            .collect();
        Self {
            ending: Ending::Running,
            me: user.to_owned(),
            me_key: user.to_ascii_lowercase(),
            online: false,
            ever_ready: false,
            convs,
            outbox: Vec::new(),
            shown: HashSet::new(),
            hide_cursor: saved.hide_cursor,
            barriers: VecDeque::new(),
            next_token: 1,
            id_prefix: random,
            next_cmid: 0,
            dirty: false,
            peer_keys: saved
                .peer_keys
                .iter()
                .map(|(u, ks)| (u.clone(), ks.iter().filter_map(|k| from_hex(k)).collect()))
                .collect(),
            resume: saved
                .resume
                .as_ref()
                .and_then(|(t, exp)| Some((from_hex(t)?, *exp))),
            rooms: BTreeMap::new(),
            now: 0,
            stream_idle: STREAM_IDLE.as_millis() as u64,
            max_streams: MAX_CONV_STREAMS,
            known: edits::Known::default(),
            searches: search::Searches::default(),
            out: Vec::new(),
            reads: receipts::ReadState::default(),
            typing: typing::Typing::default(),
        }
    }

    /// Sets how long a conversation stream may stay quiet before it closes
    /// ([`STREAM_IDLE`] by default).
    pub fn set_stream_idle(&mut self, idle: Duration) {
        self.stream_idle = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    }

    /// Sets how many conversation streams may be open at once ([`MAX_CONV_STREAMS`] by
    /// default; at least one).
    pub fn set_max_streams(&mut self, max: usize) {
        self.max_streams = max.max(1);
    }

    /// The user's name (as registered once logged in).
    pub fn user(&self) -> &str {
        &self.me
    }

    /// Whether a session is up.
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Messages sent and not yet acknowledged.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// `sync` barriers not yet answered.
    pub fn pending_barriers(&self) -> usize {
        self.barriers.len()
    }

    /// How far the client is in ending its run.
    pub fn ending(&self) -> Ending {
        self.ending
    }

    /// Whether the client logged out (by command, or after draining): the connection's
    /// end is then the normal end, and no more commands are read.
    pub fn is_logging_out(&self) -> bool {
        self.ending == Ending::LoggingOut
    }

    /// The commands ended (stdin closed, every handle dropped) with `transfers` file
    /// transfers still running: the client drains (outbox flushed, every answer shown)
    /// and then logs out, after the transfers if any are running. While offline, the
    /// drain barrier waits for the next login.
    pub fn commands_ended(&mut self, transfers: usize) -> Vec<Output> {
        if self.ending == Ending::Running {
            if transfers > 0 {
                self.ending = Ending::AfterTransfers;
            } else {
                self.start_drain();
            }
        }
        std::mem::take(&mut self.out)
    }

    /// No file transfer is running any more: a drain that waited for them starts.
    pub fn transfers_idle(&mut self) -> Vec<Output> {
        if self.ending == Ending::AfterTransfers {
            self.start_drain();
        }
        std::mem::take(&mut self.out)
    }

    fn start_drain(&mut self) {
        let token = self.push_barrier();
        self.ending = Ending::Draining { token };
    }

    /// Whether the client has nothing left to do once its commands ended: the run can
    /// end without reconnecting (an offline client with nothing to send).
    pub fn drained(&self) -> bool {
        !matches!(self.ending, Ending::Running | Ending::AfterTransfers) && self.outbox.is_empty()
    }

    /// Highest delete-for-me counter seen (goes into the login frame).
    pub fn hide_cursor(&self) -> u64 {
        self.hide_cursor
    }

    /// The state to save, if it changed since the last call.
    pub fn take_saved_state(&mut self) -> Option<SavedState> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(SavedState {
            convs: self
                .convs
                .iter()
                .filter_map(|(c, s)| s.last_seq.map(|q| (c.storage_key(), q)))
                .collect(),
            hide_cursor: self.hide_cursor,
            resume: self.resume.map(|(t, exp)| (to_hex(&t), exp)),
            peer_keys: self
                .peer_keys
                .iter()
                .map(|(u, ks)| (u.clone(), ks.iter().map(|k| to_hex(k)).collect()))
                .collect(),
        })
    }

    fn label(&self, conv: &ConvId) -> String {
        conv.label_for(&self.me_key)
    }

    fn event(&mut self, e: Event) {
        self.out.push(Output::Event(e));
    }

    /// Parses `#general` / `@user` into a conversation.
    #[allow(clippy::result_large_err)] // the error is the event the user sees
    pub fn parse_conv(&self, to: &str) -> Result<ConvId, Event> {
        if to.eq_ignore_ascii_case(GENERAL) {
            return Ok(ConvId::General);
        }
        if to.starts_with('#') {
            // Whether this user may write there is the server's to say (`not_member`):
            // a client that is offline or just joined may not know its rooms yet.
            return RoomName::parse(to)
                .map(|r| ConvId::Room(r.key()))
                .map_err(|e| {
                    Event::error(ErrorCode::NoSuchRoom, format!("no room named {to:?}: {e}"))
                });
        }
        let Some(name) = to.strip_prefix('@') else {
            return Err(Event::error(
                ErrorCode::BadRequest,
                format!("unknown conversation {to:?}: use #general, #room or @user"),
            ));
        };
        let peer = UserName::parse(name).map_err(|e| {
            Event::error(
                ErrorCode::UnknownUser,
                format!("no user named {name:?}: {e}"),
            )
        })?;
        let me = UserName::parse(&self.me)
            .map_err(|e| Event::error(ErrorCode::BadUsername, e.to_string()))?;
        Ok(ConvId::direct(&me, &peer))
    }

    /// Handles a user command.
    pub fn command(&mut self, cmd: Command) -> Vec<Output> {
        match cmd {
            Command::Send { to, text, reply_to } => self.send(&to, text, reply_to),
            Command::Edit { id, text } => self.edit(id, text),
            Command::React { id, emoji } => self.react(id, emoji, true),
            Command::Unreact { id, emoji } => self.react(id, emoji, false),
            Command::Delete { id, scope } => {
                if self.online {
                    self.out
                        .push(Output::Control(ControlUp::Delete { id, scope }));
                } else {
                    self.event(Event::error(
                        ErrorCode::BadRequest,
                        "not connected: try again once reconnected",
                    ));
                }
            }
            Command::Who => {
                if self.online {
                    self.out.push(Output::Control(ControlUp::Who));
                } else {
                    self.event(Event::error(ErrorCode::BadRequest, "not connected"));
                }
            }
            Command::History {
                conv,
                before,
                limit,
            } => match self.parse_conv(&conv) {
                Ok(c) if self.online => {
                    self.ensure_open(&c);
                    let up = ConvUp::History {
                        before,
                        limit: limit.unwrap_or(0),
                    };
                    self.conv_out(&c, up);
                }
                Ok(_) => self.event(Event::error(ErrorCode::BadRequest, "not connected")),
                Err(e) => self.event(e),
            },
            Command::Sync => {
                self.push_barrier();
            }
            Command::Streams => {
                let open = self.open_stream_labels();
                let reading = open.len();
                self.event(Event::Streams { open, reading });
            }
            Command::Logout => self.log_out(),
            cmd @ (Command::Read { .. }
            | Command::Receipts { .. }
            | Command::SeenBy { .. }
            | Command::Typing { .. }) => self.read_state_command(cmd),
            Command::Search { query, conv, limit } => {
                // Without the driver's local index: the server's half only.
                match self.search_plan(&query, conv.as_deref(), limit) {
                    Ok(plan) => return self.search(plan, Vec::new()),
                    Err(e) => self.event(e),
                }
            }
            Command::SendFile { .. } | Command::Download { .. } | Command::Cancel { .. } => self
                .event(Event::error(
                    ErrorCode::BadRequest,
                    "file transfers are handled by the transport",
                )),
            Command::Devices { .. }
            | Command::SafetyCode { .. }
            | Command::Verify { .. }
            | Command::RemoveDevice { .. } => self.event(Event::error(
                ErrorCode::BadRequest,
                "devices and safety codes need a connection to the server",
            )),
            room => {
                if let Some(up) = room_up(room) {
                    if self.online {
                        self.out.push(Output::Control(ControlUp::Room(up)));
                    } else {
                        self.event(Event::error(
                            ErrorCode::BadRequest,
                            "not connected: try again once reconnected",
                        ));
                    }
                }
            }
        }
        std::mem::take(&mut self.out)
    }

    /// The resumption token to log in with, unless it has expired by `now_ms`.
    pub fn resume_token(&self, now_ms: u64) -> Option<[u8; 32]> {
        self.resume
            .filter(|(_, expires)| now_ms < *expires)
            .map(|(t, _)| t)
    }

    /// The server refused the resumption token (or it was used): forget it, so the next
    /// login uses the password.
    pub fn forget_resume_token(&mut self) {
        if self.resume.take().is_some() {
            self.dirty = true;
        }
    }

    fn log_out(&mut self) {
        // The server revokes the token on logout; keeping it would only cost a refusal.
        self.forget_resume_token();
        self.ending = Ending::LoggingOut;
        self.out.push(Output::Control(ControlUp::Logout));
    }

    /// The session is up: `LoginOk` arrived. Opens conversations, resends the outbox and
    /// pending barriers.
    pub fn logged_in(
        &mut self,
        user: String,
        convs: Vec<ConvSummary>,
        online: Vec<String>,
        hidden: Vec<Hidden>,
        delete_window_secs: u64,
    ) -> Vec<Output> {
        self.me_key = user.to_ascii_lowercase();
        self.me = user.clone();
        self.online = true;
        let ready = if std::mem::replace(&mut self.ever_ready, true) {
            Event::Reconnected { online }
        } else {
            Event::Ready {
                user,
                online,
                delete_window_secs,
            }
        };
        self.event(ready);
        self.ensure_open(&ConvId::General);
        for s in convs {
            let local = self.convs.get(&s.conv).and_then(|c| c.last_seq);
            if local.is_none_or(|l| l < s.last_seq) && s.last_seq > 0 {
                self.ensure_open(&s.conv);
            }
        }
        for h in hidden {
            self.hidden(h);
        }
        let mut convs: Vec<ConvId> = self.outbox.iter().map(|p| p.conv.clone()).collect();
        convs.dedup();
        for conv in convs {
            self.ensure_open(&conv);
            self.flush_outbox(&conv);
        }
        self.send_barriers();
        std::mem::take(&mut self.out)
    }

    /// The session ended; everything unacknowledged will be resent after the next login.
    pub fn disconnected(&mut self, reason: String) -> Vec<Output> {
        if self.online {
            self.event(Event::Disconnected { reason });
        }
        self.online = false;
        for s in self.convs.values_mut() {
            // What was asked is lost with the connection; the next login opens what has
            // news or unsent messages.
            *s = ConvState::new(s.last_seq);
        }
        for p in &mut self.outbox {
            p.sent = false;
        }
        for b in &mut self.barriers {
            b.sent = false;
            b.waiting = 0;
            b.round = 1;
        }
        self.searches_lost();
        std::mem::take(&mut self.out)
    }

    fn hidden(&mut self, h: Hidden) {
        if h.hseq > self.hide_cursor {
            self.hide_cursor = h.hseq;
            self.dirty = true;
        }
        self.forget_unread(&h.conv, h.id);
        let conv = self.label(&h.conv);
        self.event(Event::Deleted {
            conv,
            id: h.id,
            scope: DeleteScope::Me,
        });
    }

    /// A control-stream frame (after login).
    pub fn control(&mut self, down: ControlDown) -> Vec<Output> {
        match down {
            ControlDown::Presence { user, online } => self.event(Event::Presence { user, online }),
            ControlDown::Who { users } => self.event(Event::Who { users }),
            ControlDown::ConvActivity { conv } => self.ensure_open(&conv),
            ControlDown::Hidden(h) => self.hidden(h),
            ControlDown::SyncAck { token } => self.barrier_ack(token),
            ControlDown::Error { code, message } => self.event(Event::error(code, message)),
            ControlDown::Room(down) => self.room(down),
            ControlDown::ResumeToken { token, expires_ms } => {
                self.resume = Some((token, expires_ms));
                self.dirty = true;
            }
            ControlDown::Search { token, results } => self.search_answered(token, results),
            ControlDown::LoginOk { .. }
            | ControlDown::LoginRefused { .. }
            | ControlDown::Closing { .. } => {}
            // MLS: the transport's MLS layer (`crate::app::mls::MlsClient`) handles these.
            ControlDown::Devices { .. }
            | ControlDown::KeyPackages { .. }
            | ControlDown::DeviceAdded { .. }
            | ControlDown::DeviceRemoved { .. }
            | ControlDown::RoomKeyPackages { .. } => {}
            down @ (ControlDown::ReadState { .. }
            | ControlDown::Read { .. }
            | ControlDown::Seen { .. }
            | ControlDown::SeenBy { .. }
            | ControlDown::Typing { .. }
            | ControlDown::Receipts { .. }) => self.read_state_control(down),
        }
        std::mem::take(&mut self.out)
    }
}
