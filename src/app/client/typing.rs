//! Typing notices on the client: who is typing where, shown for [`TYPING_SHOWN`] after
//! their last notice or until their next message arrives, whichever comes first.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ClientCore;
use crate::app::ids::ConvId;

/// How long "bob is typing…" stays after bob's last notice.
pub const TYPING_SHOWN: Duration = Duration::from_secs(5);

/// When each (conversation, user key) last had a notice, by the core's clock (ms), with
/// the name to show.
#[derive(Debug, Default)]
pub(super) struct Typing {
    seen: BTreeMap<(ConvId, String), (u64, String)>,
}

impl ClientCore {
    /// Who is typing in `conv` now, by name, in alphabetical order of their keys.
    pub fn typing_in(&self, conv: &ConvId) -> Vec<String> {
        let shown = TYPING_SHOWN.as_millis() as u64;
        self.typing
            .seen
            .iter()
            .filter(|((c, _), (at, _))| c == conv && self.now.saturating_sub(*at) < shown)
            .map(|(_, (_, name))| name.clone())
            .collect()
    }

    /// A notice arrived.
    pub(super) fn typing_seen(&mut self, conv: &ConvId, user: &str) {
        let shown = TYPING_SHOWN.as_millis() as u64;
        let now = self.now;
        // Forget the stale ones so the map stays as small as the current typists.
        self.typing
            .seen
            .retain(|_, (at, _)| now.saturating_sub(*at) < shown);
        let k = (conv.clone(), user.to_ascii_lowercase());
        self.typing.seen.insert(k, (now, user.to_owned()));
    }

    /// `user`'s message arrived: they are done typing it.
    pub(super) fn typing_done(&mut self, conv: &ConvId, user: &str) {
        let k = (conv.clone(), user.to_ascii_lowercase());
        self.typing.seen.remove(&k);
    }
}
