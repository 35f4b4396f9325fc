//! Message search: what a query means, in one place for every place that searches.
//!
//! A query is a list of words. A word is a maximal run of letters and digits
//! ([`char::is_alphanumeric`]), compared case-insensitively (lowercased); everything else
//! separates words. A message matches when every word of the query is a whole word of its
//! text, except the last one, which may also be the start of a word ("search as you
//! type") unless the query ends with a separator (`"cat "` is the whole word only).
//!
//! The server's stores (SQLite FTS5, PostgreSQL `tsvector`, the in-memory store) and the
//! client's local index of private conversations all implement this meaning; the store
//! contract (`crate::app::store::contract`) holds them to the same results. Only messages
//! of conversations the server reads (`#general`, rooms) are searched by the server;
//! private ones only by the client, over what it decrypted. File messages are not indexed.

use serde::{Deserialize, Serialize};

use super::ids::{ConvId, MsgId, Seq};

/// Results of one search when the command gives no `limit`.
pub const DEFAULT_LIMIT: usize = 50;
/// The most results one search returns.
pub const MAX_LIMIT: usize = 200;
/// The most words a query may have.
pub const MAX_WORDS: usize = 16;
/// The longest query, in bytes.
pub const MAX_QUERY: usize = 512;
/// Searches a user may run at once on the server (then [`SEARCH_PER_SEC`]): a GUI
/// searches as the user types, a flood of prefix searches would keep the server busy.
pub const SEARCH_BURST: u32 = 20;
/// Searches per second a user may run on the server after [`SEARCH_BURST`].
pub const SEARCH_PER_SEC: u32 = 5;

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No word to look for (empty, or only punctuation).
    #[error("the search has no words to look for")]
    Empty,
    /// Over [`MAX_QUERY`] bytes or [`MAX_WORDS`] words.
    #[error("the search is too long (at most {MAX_WORDS} words, {MAX_QUERY} bytes)")]
    TooLong,
}

/// The words of `text`, lowercased, in order.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// A parsed search query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    words: Vec<String>,
    prefix: bool,
}

impl SearchQuery {
    /// Parses what the user typed.
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        if query.len() > MAX_QUERY {
            return Err(QueryError::TooLong);
        }
        let words: Vec<String> = words(query).collect();
        if words.is_empty() {
            return Err(QueryError::Empty);
        }
        if words.len() > MAX_WORDS {
            return Err(QueryError::TooLong);
        }
        let prefix = query.chars().last().is_some_and(char::is_alphanumeric);
        Ok(Self { words, prefix })
    }

    /// The words, lowercased (letters and digits only).
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Whether the last word also matches the start of a longer word.
    pub fn last_is_prefix(&self) -> bool {
        self.prefix
    }

    /// Whether `text` matches: the reference every index must agree with.
    pub fn matches(&self, text: &str) -> bool {
        let have: Vec<String> = words(text).collect();
        let last = self.words.len() - 1;
        self.words.iter().enumerate().all(|(i, w)| {
            have.iter()
                .any(|h| h == w || (i == last && self.prefix && h.starts_with(w.as_str())))
        })
    }
}

/// Where a server search may look: one conversation from a sequence number on (a private
/// room's member reads from the moment they joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchScope {
    /// A server-readable conversation.
    pub conv: ConvId,
    /// The first sequence number the searching user may read.
    pub from: Seq,
}

/// One search result on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Conversation.
    pub conv: ConvId,
    /// Server id.
    pub id: MsgId,
    /// Sequence number.
    pub seq: Seq,
    /// Author.
    pub from: String,
    /// Text.
    pub text: String,
    /// Server time, Unix ms.
    pub ts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_alphanumeric_runs_lowercased() {
        let w: Vec<String> = words("Hello, wörld! re-use 2026_x").collect();
        assert_eq!(w, ["hello", "wörld", "re", "use", "2026", "x"]);
    }

    #[test]
    fn every_word_must_match_whole_and_the_last_may_be_a_prefix() {
        let q = SearchQuery::parse("Quick fo").unwrap();
        assert!(q.matches("the quick brown fox"));
        assert!(
            !q.matches("the quickest brown fox"),
            "only the last is a prefix"
        );
        assert!(!q.matches("quick"), "all words must match");
        let whole = SearchQuery::parse("quick fo ").unwrap();
        assert!(!whole.last_is_prefix());
        assert!(!whole.matches("the quick brown fox"));
        assert!(whole.matches("QUICK, fo!"));
    }

    #[test]
    fn empty_and_overlong_queries_are_refused() {
        assert_eq!(SearchQuery::parse(""), Err(QueryError::Empty));
        assert_eq!(SearchQuery::parse(" ,;- "), Err(QueryError::Empty));
        let many = "a ".repeat(MAX_WORDS + 1);
        assert_eq!(SearchQuery::parse(&many), Err(QueryError::TooLong));
        let long = "x".repeat(MAX_QUERY + 1);
        assert_eq!(SearchQuery::parse(&long), Err(QueryError::TooLong));
    }
}
