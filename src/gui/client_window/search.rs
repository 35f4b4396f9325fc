//! Message search in the client window (placeholder until the search bar lands).

use crate::app::client::SearchItem;

use super::LwClientWindow;

impl LwClientWindow {
    /// Shows the answer to a search.
    pub(super) fn show_search_results(&self, results: Vec<SearchItem>) {
        tracing::debug!(results = results.len(), "search results");
    }
}
