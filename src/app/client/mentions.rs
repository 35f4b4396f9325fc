//! Mentions on the client: the server names them for `#general` and rooms; for private
//! conversations (end-to-end, the server never reads the words) the client finds them in
//! the decrypted text, among the two members. A message that names this user is marked
//! `mentions_me`.

use super::ClientCore;
use crate::app::ids::ConvId;
use crate::app::mentions;

impl ClientCore {
    /// The mentions of a message in `conv` from `sender` with `text`, given what the server
    /// said (`from_server`), and whether they include this user.
    pub(super) fn mentions_of(
        &self,
        conv: &ConvId,
        sender: &str,
        text: Option<&str>,
        from_server: Vec<String>,
    ) -> (Vec<String>, bool) {
        let found = match (conv, text) {
            (ConvId::Direct(..), Some(text)) => {
                let peer = conv.peer_of(&self.me_key).unwrap_or_default();
                // The peer's name as they spell it, when the message is theirs.
                let peer = if sender.eq_ignore_ascii_case(peer) {
                    sender
                } else {
                    peer
                };
                mentions::resolve_among(text, [self.me.as_str(), peer])
            }
            (ConvId::Direct(..), None) => Vec::new(),
            _ => from_server,
        };
        let me = found.iter().any(|n| n.eq_ignore_ascii_case(&self.me));
        (found, me)
    }
}
