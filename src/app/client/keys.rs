//! Peers' identity keys as this client pinned them (trust on first use; a change is
//! always reported), and their hex form in the saved state.

use super::{ClientCore, Event, Output};

impl ClientCore {
    /// The pinned identity key of a peer.
    pub fn peer_key(&self, user: &str) -> Option<[u8; 32]> {
        self.peer_keys
            .get(&user.to_ascii_lowercase())?
            .last()
            .copied()
    }

    /// Whether `key` is a key this peer has used (now or before a change).
    pub fn is_known_peer_key(&self, user: &str, key: &[u8; 32]) -> bool {
        self.peer_keys
            .get(&user.to_ascii_lowercase())
            .is_some_and(|ks| ks.contains(key))
    }

    /// A peer's key as the server or a message presents it: pinned on first use; a
    /// different key is pinned too but always reported with [`Event::KeyChanged`].
    pub fn peer_key_seen(&mut self, user: &str, key: [u8; 32]) -> Vec<Output> {
        self.pin_peer_key(user, key);
        std::mem::take(&mut self.out)
    }

    pub(super) fn pin_peer_key(&mut self, user: &str, key: [u8; 32]) {
        let keys = self.peer_keys.entry(user.to_ascii_lowercase()).or_default();
        if keys.last() == Some(&key) {
            return;
        }
        let old = keys.last().copied();
        keys.retain(|k| *k != key);
        keys.push(key);
        self.dirty = true;
        if let Some(old) = old {
            self.event(Event::KeyChanged {
                user: user.to_owned(),
                old: to_hex(&old),
                new: to_hex(&key),
            });
        }
    }
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits into 32 bytes.
pub fn from_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
