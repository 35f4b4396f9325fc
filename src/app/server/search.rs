//! Search: the server looks only where the user may read — `#general`, the rooms they are
//! a member of (a private room from the moment they joined, as history does) — and never
//! in private conversations, whose bodies it cannot read. The query is neither logged nor
//! stored (the operator's log says that a search ran, not what it looked for).

use super::ServerCore;
use crate::app::ids::{ConnId, ConvId};
use crate::app::limits::TokenBucket;
use crate::app::protocol::{ControlDown, ErrorCode, EventKind};
use crate::app::search::{
    DEFAULT_LIMIT, MAX_LIMIT, SEARCH_BURST, SEARCH_PER_SEC, SearchHit, SearchQuery, SearchScope,
};
use crate::app::store::{Store, StoreError};

/// The fields of a [`crate::app::protocol::ControlUp::Search`].
pub(super) struct SearchRequest {
    /// Echoed in the answer.
    pub token: u64,
    /// The words.
    pub query: String,
    /// One conversation, or all.
    pub conv: Option<ConvId>,
    /// Results wanted (0: the default).
    pub limit: u32,
}

impl<S: Store> ServerCore<S> {
    /// Answers [`crate::app::protocol::ControlUp::Search`].
    pub(super) fn search(
        &mut self,
        conn: ConnId,
        key: &str,
        req: SearchRequest,
        now: u64,
    ) -> Result<(), StoreError> {
        let SearchRequest {
            token,
            query,
            conv,
            limit,
        } = req;
        // Per user (all sessions), in the table of message buckets under a key no user
        // name can have (`:` is not allowed in names).
        let bucket = self
            .buckets
            .entry(format!("search:{key}"))
            .or_insert_with(|| TokenBucket::new(SEARCH_BURST, now));
        if let Err(ms) = bucket.take(SEARCH_BURST, SEARCH_PER_SEC, now) {
            let msg = format!("searching too fast; retry in {ms} ms");
            self.search_refused(conn, token, ErrorCode::RateLimited, msg);
            return Ok(());
        }
        let query = match SearchQuery::parse(&query) {
            Ok(q) => q,
            Err(e) => {
                self.search_refused(conn, token, ErrorCode::BadRequest, e.to_string());
                return Ok(());
            }
        };
        let limit = match limit as usize {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let scopes = match conv {
            None => self.search_scopes(key),
            Some(ConvId::General) => vec![SearchScope {
                conv: ConvId::General,
                from: 1,
            }],
            Some(ConvId::Room(room)) => match self.room_conv(key, &room) {
                Ok(conv) => {
                    let from = self.visible_from(&conv, key);
                    vec![SearchScope { conv, from }]
                }
                Err((code, msg)) => {
                    self.search_refused(conn, token, code, msg);
                    return Ok(());
                }
            },
            Some(ConvId::Direct(..)) => {
                let msg = "private conversations are end-to-end encrypted: only your device can search them";
                self.search_refused(conn, token, ErrorCode::BadRequest, msg.into());
                return Ok(());
            }
        };
        let found = self.store.search(&query, &scopes, key, limit)?;
        let results: Vec<SearchHit> = found
            .into_iter()
            .filter_map(|s| {
                let (EventKind::Message { body } | EventKind::Edited { body }) = s.event.kind
                else {
                    return None;
                };
                if body.first() == Some(&crate::app::mls::MLS_TAG) {
                    // A private room's MLS ciphertext: the index may hold noise from
                    // it, never a word of the text; not a result.
                    return None;
                }
                Some(SearchHit {
                    conv: s.conv,
                    id: s.event.id,
                    seq: s.event.seq,
                    from: s.event.sender,
                    // A reply's marker line is the client's business, not the result's.
                    text: crate::app::edits::split_reply(std::str::from_utf8(&body).ok()?)
                        .1
                        .to_owned(),
                    ts: s.event.ts,
                })
            })
            .collect();
        tracing::debug!(user = key, results = results.len(), "search");
        let results = Ok(results);
        self.control_out(conn, ControlDown::Search { token, results });
        Ok(())
    }

    fn search_refused(&mut self, conn: ConnId, token: u64, code: ErrorCode, message: String) {
        let results = Err((code, message));
        self.control_out(conn, ControlDown::Search { token, results });
    }

    /// Everywhere `key` may search: `#general`, and each room they are a member of from
    /// the first message they may read.
    fn search_scopes(&self, key: &str) -> Vec<SearchScope> {
        let mut scopes = vec![SearchScope {
            conv: ConvId::General,
            from: 1,
        }];
        for (room, entry) in &self.rooms {
            if entry.room.is_member(key) {
                let conv = ConvId::Room(room.clone());
                let from = self.visible_from(&conv, key);
                scopes.push(SearchScope { conv, from });
            }
        }
        scopes
    }
}
