//! Deleting messages: for me (hidden in every session of the user) and for everyone (a
//! sequenced tombstone; the author within the window, a room's moderators at any time).

use super::{ServerCore, ServerLog};
use crate::app::ids::{ClientMsgId, ConnId, UserName};
use crate::app::protocol::{ControlDown, DeleteScope, ErrorCode, EventKind, Hidden};
use crate::app::store::{Store, StoreError};

impl<S: Store> ServerCore<S> {
    pub(super) fn delete(
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
            (
                EventKind::Tombstone { .. }
                | EventKind::Edit { .. }
                | EventKind::Reaction { .. }
                | EventKind::Handshake,
                _,
            ) => {
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
                if hseq.is_some() {
                    let user = key.to_owned();
                    self.publish(|| super::ClusterMsg::Hidden { user, hidden });
                }
            }
            (EventKind::Erased, DeleteScope::Everyone) => {
                self.control_error(
                    conn,
                    ErrorCode::NotFound,
                    format!("message {id} was already deleted"),
                );
            }
            (EventKind::Message { .. } | EventKind::Edited { .. }, DeleteScope::Everyone) => {
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
                self.store.erase_edits(id)?;
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

impl<S: Store> ServerCore<S> {
    /// The operator deletes a message of `#general` or of a room for everyone, at any time
    /// (the operator moderates `#general` and may moderate any room). Private
    /// conversations are end-to-end: their messages are not the operator's to delete.
    pub(super) fn operator_delete(&mut self, id: u64, now: u64) -> Result<(), StoreError> {
        let Some(stored) = self.store.event(id)? else {
            tracing::info!(id, "operator delete of no such message ignored");
            return Ok(());
        };
        if !stored.conv.server_readable()
            || !matches!(
                stored.event.kind,
                EventKind::Message { .. } | EventKind::Edited { .. }
            )
        {
            tracing::info!(
                id,
                "operator delete refused: not a message of #general or a room"
            );
            return Ok(());
        }
        let mut cmid = [0u8; 16];
        cmid[..4].copy_from_slice(b"tomb");
        cmid[8..].copy_from_slice(&id.to_be_bytes());
        let tomb = self.store.erase(id, ClientMsgId(cmid), now)?;
        self.store.erase_edits(id)?;
        self.fan_out(&stored.conv, &tomb, None);
        self.log(ServerLog::Deleted {
            by: super::SERVER_AUTHOR.to_owned(),
            id,
            conv: stored.conv,
            sender: stored.event.sender,
            cmid: stored.event.cmid,
        });
        Ok(())
    }
}

pub(super) fn human_secs(s: u64) -> String {
    match s {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}
