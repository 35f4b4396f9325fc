//! Conversation streams: opening (membership checked), catch-up within a byte budget,
//! history pages, sending (rate-limited, exactly once) and the fan-out to members.

use super::{Output, ServerCore, ServerLog};
use crate::app::ids::{ClientMsgId, ConnId, ConvId, UserName};
use crate::app::limits::TokenBucket;
use crate::app::protocol::{
    ControlDown, ConvDown, ConvEvent, ConvUp, E2E_OVERHEAD, ErrorCode, MLS_OVERHEAD,
};
use crate::app::store::{Store, StoreError};

impl<S: Store> ServerCore<S> {
    /// Rebuilds a client-supplied conversation id in canonical form, checking membership
    /// and that the peer exists.
    pub(super) fn canonical_conv(
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

    pub(super) fn conv(
        &mut self,
        conn: ConnId,
        conv: ConvId,
        up: ConvUp,
        now: u64,
    ) -> Result<(), StoreError> {
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
            let cmid = up.cmid();
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
                let events = events
                    .into_iter()
                    .map(|e| self.with_mentions(&conv, e))
                    .collect();
                self.history_page(conn, &conv, events, more)?;
            }
            ConvUp::Send { cmid, body } => self.send(conn, &name, &conv, cmid, body, now)?,
            ConvUp::Edit { cmid, target, body } => {
                let req = super::edits::EditReq { cmid, target, body };
                self.edit(conn, &name, &conv, req, now)?;
            }
            ConvUp::React {
                cmid,
                target,
                on,
                key,
                body,
            } => {
                let req = super::edits::ReactReq {
                    cmid,
                    target,
                    on,
                    key,
                    body,
                };
                self.react(conn, &name, &conv, req, now)?;
            }
            ConvUp::File(_) => {
                let msg = "a file request must be the first frame of its own stream";
                self.conv_error(conn, &conv, ErrorCode::BadRequest, msg, None);
            }
        }
        Ok(())
    }

    pub(super) fn catch_up(
        &mut self,
        conn: ConnId,
        key: &str,
        conv: &ConvId,
        after: Option<u64>,
    ) -> Result<(), StoreError> {
        let from = self.visible_from(conv, key);
        // Read before the events: on a database shared by several nodes, others commit
        // between our statements. An event numbered above `newest` is left out here and
        // reaches this session live, after `CaughtUp` (the client drops live events while
        // it catches up, trusting the catch-up to hold them).
        let newest = self.store.last_seq(conv)?;
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
        if events.last().is_some_and(|e| e.seq > newest) {
            events.retain(|e| e.seq <= newest);
            more = false;
        }
        // A round stays within a byte budget, so a client catching up on big messages never
        // looks like one that stopped reading; it asks for the next round when this one is in.
        let budget = self.limits.catchup_bytes;
        let size = |e: &ConvEvent| 64 + e.kind.body_len();
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
            _ => newest,
        };
        for e in events {
            let e = self.with_mentions(conv, e);
            self.conv_out(conn, conv, ConvDown::Backlog(e));
        }
        self.conv_out(conn, conv, ConvDown::CaughtUp { upto, more });
        Ok(())
    }

    pub(super) fn send(
        &mut self,
        conn: ConnId,
        name: &UserName,
        conv: &ConvId,
        cmid: ClientMsgId,
        body: Vec<u8>,
        now: u64,
    ) -> Result<(), StoreError> {
        let e2e = self.is_e2e(conv);
        let limit = match e2e {
            false => self.limits.max_body,
            true => self.limits.max_body + E2E_OVERHEAD.max(MLS_OVERHEAD),
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
        let text = match (e2e, std::str::from_utf8(&body)) {
            (false, Ok(t)) => Some(t.to_owned()),
            (false, Err(_)) => {
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
        if let Some(t) = &text
            && let Err(msg) = self.check_reply(conv, &name.key(), t)?
        {
            self.conv_error(conn, conv, ErrorCode::BadRequest, msg, Some(cmid));
            return Ok(());
        }
        let next_epoch = match self.mls_gate(conn, conv, cmid, &body)? {
            super::mls::Gate::Refused => return Ok(()),
            super::mls::Gate::Mls(next) => next,
            super::mls::Gate::Plain => None,
        };
        // An MLS commit (a group change the client makes on its own: adding a member's
        // devices, removing, updating its keys) draws on a budget of its own, so it
        // does not eat the user's message allowance; a flood of them is still limited.
        let bucket = match next_epoch {
            Some(_) => format!("{}/mls", name.key()),
            None => name.key(),
        };
        if !self.take_token_from(conn, conv, &bucket, cmid, now) {
            return Ok(());
        }
        let (event, dup) = self
            .store
            .insert_message(conv, name.as_str(), cmid, &body, now)?;
        if let (Some(epoch), false) = (next_epoch, dup) {
            self.store.set_mls_epoch(conv, epoch, cmid)?;
            if let ConvId::Room(room) = conv {
                self.mls_rekey.remove(room);
            }
        }
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
                id: event.id,
                from: name.to_string(),
                to,
                text,
            });
        }
        Ok(())
    }

    /// Takes one token of the user's message budget (messages, edits and reactions share it); `false` (and the error sent) if none.
    pub(super) fn take_token(
        &mut self,
        conn: ConnId,
        conv: &ConvId,
        name: &UserName,
        cmid: ClientMsgId,
        now: u64,
    ) -> bool {
        self.take_token_from(conn, conv, &name.key(), cmid, now)
    }

    /// [`Self::take_token`] from the bucket named `bucket` (a user key, or a user key
    /// with `/mls` for MLS commits; keys have no `/`).
    pub(super) fn take_token_from(
        &mut self,
        conn: ConnId,
        conv: &ConvId,
        bucket: &str,
        cmid: ClientMsgId,
        now: u64,
    ) -> bool {
        let (burst, rate) = (self.limits.msg_burst, self.limits.msg_per_sec);
        let bucket = self
            .buckets
            .entry(bucket.to_owned())
            .or_insert_with(|| TokenBucket::new(burst, now));
        if let Err(ms) = bucket.take(burst, rate, now) {
            let msg = format!("sending too fast; retry in {ms} ms");
            self.conv_error(conn, conv, ErrorCode::RateLimited, msg, Some(cmid));
            return false;
        }
        true
    }

    /// Delivers a new event to every member session except `skip`, on this node and (in
    /// cluster mode, once the batch commits) on the others.
    pub(super) fn fan_out(&mut self, conv: &ConvId, event: &ConvEvent, skip: Option<ConnId>) {
        self.publish(|| super::ClusterMsg::Event {
            conv: conv.clone(),
            event: event.clone(),
        });
        self.fan_out_local(conv, event, skip);
    }

    /// Delivers an event to every member session of this node except `skip`: on its stream
    /// if open, else a one-time [`ControlDown::ConvActivity`].
    pub(super) fn fan_out_local(&mut self, conv: &ConvId, event: &ConvEvent, skip: Option<ConnId>) {
        let annotated = self.mentions_for(conv, event);
        let event = annotated.as_ref().unwrap_or(event);
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
            // The two of them (sorted, as `online` iterates), not a walk over everyone.
            ConvId::Direct(a, b) => std::iter::once(a)
                .chain((a != b).then_some(b))
                .filter_map(|k| self.online.get(k))
                .flat_map(|s| s.iter().copied())
                .filter(|c| Some(*c) != skip)
                .collect(),
            ConvId::General => self
                .online
                .values()
                .flat_map(|s| s.iter().copied())
                .filter(|c| Some(*c) != skip)
                .collect(),
        };
        // One copy of the event for every recipient: the transport seals the body per
        // session from it.
        let mut shared: Option<std::sync::Arc<ConvEvent>> = None;
        for conn in targets {
            let Some(s) = self.session_mut(conn) else {
                continue;
            };
            if s.open.contains(conv) {
                let event = shared.get_or_insert_with(|| std::sync::Arc::new(event.clone()));
                self.out.push(Output::Event {
                    conn,
                    conv: conv.clone(),
                    event: event.clone(),
                });
            } else if s.notified.insert(conv.clone()) {
                self.control_out(conn, ControlDown::ConvActivity { conv: conv.clone() });
            }
        }
    }
}
