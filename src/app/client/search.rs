//! Search on the client: one `search` command, one `search` event that merges what the
//! server found (in `#general` and rooms) with what the device's own index of decrypted
//! private messages found. The index lives outside the core (`crate::client_index`); the
//! driver asks the core for a [`SearchPlan`], runs the local half, and hands its results
//! back with [`ClientCore::search`]. A search of one private conversation never reaches
//! the server.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ClientCore, Event, Output};
use crate::app::ids::{ConvId, MsgId};
use crate::app::protocol::{ControlUp, ErrorCode};
use crate::app::search::{DEFAULT_LIMIT, MAX_LIMIT, SearchHit, SearchQuery};

/// One result in a `search` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchItem {
    /// `#general`, `#room` or `@peer`.
    pub conv: String,
    /// Server id (what `delete` and the GUI's jump to a message take).
    pub id: MsgId,
    /// Author.
    pub from: String,
    /// The message's text.
    pub text: String,
    /// Server time, Unix ms.
    pub ts: u64,
}

/// Where the local index must look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalScope {
    /// Not at all (the search is of `#general` or a room).
    Nowhere,
    /// Every private conversation.
    AllPrivate,
    /// One private conversation, by its label (`@bob`).
    One(String),
}

/// A checked search, for the driver to run the local half of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPlan {
    /// What the user typed.
    pub text: String,
    /// The parsed query.
    pub query: SearchQuery,
    /// What the server searches (`None`: nothing; `Some(None)`: everything the user can
    /// read there).
    server: Option<Option<ConvId>>,
    /// What the local index searches.
    pub local: LocalScope,
    /// At most this many results.
    pub limit: usize,
}

/// Searches waiting for the server's answer: token -> (local results, limit).
#[derive(Debug, Default)]
pub(super) struct Searches(BTreeMap<u64, (Vec<SearchItem>, usize)>);

/// Merges result lists: each message once, newest first, at most `limit`.
fn merge(mut items: Vec<SearchItem>, limit: usize) -> Vec<SearchItem> {
    items.sort_by_key(|i| std::cmp::Reverse((i.ts, i.id)));
    items.dedup_by_key(|i| i.id);
    items.truncate(limit);
    items
}

impl ClientCore {
    /// Checks a `search` command: the query (an empty one is `bad_command`), the limit
    /// (default 50, at most 200) and the conversation.
    #[allow(clippy::result_large_err)] // the error is the event the user sees
    pub fn search_plan(
        &self,
        query: &str,
        conv: Option<&str>,
        limit: Option<u32>,
    ) -> Result<SearchPlan, Event> {
        let parsed = SearchQuery::parse(query)
            .map_err(|e| Event::error(ErrorCode::BadCommand, e.to_string()))?;
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT as u32).contains(&n) => n as usize,
            Some(n) => {
                let msg = format!("limit {n} is out of range: 1 to {MAX_LIMIT}");
                return Err(Event::error(ErrorCode::BadCommand, msg));
            }
        };
        let (server, local) = match conv {
            None => (Some(None), LocalScope::AllPrivate),
            Some(label) => {
                let conv = self.parse_conv(label)?;
                let e2e_room = matches!(&conv, ConvId::Room(k) if self
                    .rooms
                    .get(k)
                    .is_some_and(|r| r.visibility == crate::app::protocol::Visibility::Private));
                if e2e_room {
                    // A private room: its MLS messages are in this device's index, its
                    // history from before MLS on the server.
                    let local = LocalScope::One(self.label(&conv));
                    (Some(Some(conv)), local)
                } else if conv.server_readable() {
                    (Some(Some(conv)), LocalScope::Nowhere)
                } else {
                    (None, LocalScope::One(self.label(&conv)))
                }
            }
        };
        Ok(SearchPlan {
            text: query.to_owned(),
            query: parsed,
            server,
            local,
            limit,
        })
    }

    /// Runs `plan` with the local index's results: asks the server when the plan needs
    /// it (the `search` event follows its answer), or answers at once. Offline, a search
    /// of everything gives the local results; one of `#general` or a room is refused.
    pub fn search(&mut self, plan: SearchPlan, local: Vec<SearchItem>) -> Vec<Output> {
        match plan.server {
            Some(conv) if self.online => {
                let token = self.next_token;
                self.next_token += 1;
                self.searches.0.insert(token, (local, plan.limit));
                self.out.push(Output::Control(ControlUp::Search {
                    token,
                    query: plan.text,
                    conv,
                    limit: plan.limit as u32,
                }));
            }
            Some(Some(_)) => self.event(Event::error(
                ErrorCode::BadRequest,
                "not connected: try again once reconnected",
            )),
            Some(None) | None => {
                let results = merge(local, plan.limit);
                self.event(Event::Search { results });
            }
        }
        std::mem::take(&mut self.out)
    }

    /// The server's answer: merged with the local results it waited for, or its refusal.
    pub(super) fn search_answered(
        &mut self,
        token: u64,
        answer: Result<Vec<SearchHit>, (ErrorCode, String)>,
    ) {
        let Some((mut items, limit)) = self.searches.0.remove(&token) else {
            return;
        };
        let hits = match answer {
            Ok(hits) => hits,
            Err((code, message)) => return self.event(Event::error(code, message)),
        };
        items.extend(hits.into_iter().map(|h| SearchItem {
            conv: self.label(&h.conv),
            id: h.id,
            from: h.from,
            text: h.text,
            ts: h.ts,
        }));
        let results = merge(items, limit);
        self.event(Event::Search { results });
    }

    /// The connection dropped: the server will not answer the searches in flight.
    pub(super) fn searches_lost(&mut self) {
        for _ in std::mem::take(&mut self.searches.0) {
            self.event(Event::error(
                ErrorCode::BadRequest,
                "the connection was lost before the server answered the search; search again",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::client::SavedState;
    use crate::app::protocol::ControlDown;

    fn item(id: MsgId, ts: u64) -> SearchItem {
        SearchItem {
            conv: "@bob".into(),
            id,
            from: "bob".into(),
            text: "x".into(),
            ts,
        }
    }

    #[test]
    fn plans_check_the_query_and_keep_private_searches_local() {
        let core = ClientCore::new("alice", SavedState::default(), [0; 8]);
        let e = core.search_plan("  ", None, None).unwrap_err();
        assert!(
            matches!(
                e,
                Event::Error {
                    code: ErrorCode::BadCommand,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(core.search_plan("x", None, Some(201)).is_err());
        let p = core.search_plan("x", Some("@Bob"), None).unwrap();
        assert_eq!((p.server, p.local), (None, LocalScope::One("@bob".into())));
        let p = core.search_plan("x", Some("#general"), Some(5)).unwrap();
        assert_eq!(p.server, Some(Some(ConvId::General)));
        assert_eq!((p.local, p.limit), (LocalScope::Nowhere, 5));
    }

    #[test]
    fn local_and_server_results_merge_newest_first_within_the_limit() {
        let mut core = ClientCore::new("alice", SavedState::default(), [0; 8]);
        core.logged_in("alice".into(), vec![], vec![], vec![], 60);
        let plan = core.search_plan("x", None, Some(3)).unwrap();
        let out = core.search(plan, vec![item(5, 50), item(2, 20)]);
        let Some(Output::Control(ControlUp::Search { token, .. })) = out.last().cloned() else {
            panic!("no server search in {out:?}");
        };
        let hit = |id, ts| SearchHit {
            conv: ConvId::General,
            id,
            seq: id,
            from: "carol".into(),
            text: "x".into(),
            ts,
        };
        let out = core.control(ControlDown::Search {
            token,
            results: Ok(vec![hit(7, 70), hit(3, 30), hit(1, 10)]),
        });
        let [Output::Event(Event::Search { results })] = &out[..] else {
            panic!("{out:?}");
        };
        let got: Vec<(MsgId, &str)> = results.iter().map(|r| (r.id, r.conv.as_str())).collect();
        assert_eq!(got, [(7, "#general"), (5, "@bob"), (3, "#general")]);
        // A refusal ends its search with an error, and nothing waits for it any more.
        let plan = core.search_plan("x", None, None).unwrap();
        let out = core.search(plan, vec![]);
        let Some(Output::Control(ControlUp::Search { token, .. })) = out.last().cloned() else {
            panic!("no server search in {out:?}");
        };
        let out = core.control(ControlDown::Search {
            token,
            results: Err((ErrorCode::RateLimited, "slow down".into())),
        });
        assert!(
            matches!(
                &out[..],
                [Output::Event(Event::Error {
                    code: ErrorCode::RateLimited,
                    ..
                })]
            ),
            "{out:?}"
        );
        assert!(
            core.disconnected("gone".into())
                .iter()
                .all(|o| !matches!(o, Output::Event(Event::Error { .. })))
        );
        core.logged_in("alice".into(), vec![], vec![], vec![], 60);
        // A private conversation's search is answered at once, without the server.
        let plan = core.search_plan("x", Some("@bob"), None).unwrap();
        let out = core.search(plan, vec![item(2, 20)]);
        assert!(
            matches!(&out[..], [Output::Event(Event::Search { results })] if results.len() == 1)
        );
    }
}
