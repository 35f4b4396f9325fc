//! End-to-end encryption of private messages under each user's identity key.
//!
//! Each user has a long-term X25519 identity key made on their client and kept in its data
//! dir (mode 0600); the server only publishes the public half. The key of a private
//! conversation is HKDF-SHA256 over the X25519 shared secret of the two identity keys,
//! bound to the conversation. A private body on the wire is
//! `version (1) ‖ sender public (32) ‖ recipient public (32) ‖ AES-256-GCM-SIV envelope`,
//! with the AAD binding direction "peer", conversation, author and client message id. The
//! server stores and relays these bytes as they are: it can read neither the text nor
//! forge a message.

use std::path::Path;

use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use super::envelope::{Aad, Direction, EnvelopeError, SealingKey};
use super::tls::write_private;
use crate::app::ids::ClientMsgId;

const VERSION: u8 = 1;
const HEADER: usize = 1 + 32 + 32;

/// Why a private body could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E2eError {
    /// Not an end-to-end envelope.
    #[error("not an end-to-end envelope")]
    Malformed,
    /// Sealed for an identity key that is not ours (another device, or before a reset).
    #[error("sealed for another identity key of yours")]
    NotForMe,
    /// Authentication failed.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// A user's identity key pair.
pub struct IdentityKey {
    secret: StaticSecret,
    /// Public half (published through the server).
    pub public: [u8; 32],
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "IdentityKey({})",
            crate::app::client::to_hex(&self.public)
        )
    }
}

impl IdentityKey {
    /// A fresh key from the OS RNG.
    pub fn generate() -> Self {
        Self::from_secret(StaticSecret::random())
    }

    /// A key from its 32 secret bytes (tests and fuzzing).
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        Self::from_secret(StaticSecret::from(bytes))
    }

    fn from_secret(secret: StaticSecret) -> Self {
        let public = PublicKey::from(&secret).to_bytes();
        Self { secret, public }
    }

    /// Loads the key from `path`, creating it (mode 0600) on first use. A damaged file is
    /// an error, never silently replaced: that would change the user's safety number.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = crate::app::client::from_hex(text.trim())
                    .ok_or_else(|| format!("{}: not an identity key", path.display()))?;
                Ok(Self::from_secret(StaticSecret::from(bytes)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                let hex = crate::app::client::to_hex(key.secret.as_bytes());
                write_private(path, format!("{hex}\n").as_bytes()).map_err(|e| e.to_string())?;
                Ok(key)
            }
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    fn conversation_key(&self, peer: &[u8; 32], conv: &str) -> Result<SealingKey, EnvelopeError> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*peer));
        if !shared.was_contributory() {
            return Err(EnvelopeError::Auth);
        }
        let (lo, hi) = if self.public <= *peer {
            (&self.public, peer)
        } else {
            (peer, &self.public)
        };
        let mut info = Vec::with_capacity(96 + conv.len());
        info.extend_from_slice(b"livewire/1 private conversation");
        info.extend_from_slice(lo);
        info.extend_from_slice(hi);
        info.extend_from_slice(conv.as_bytes());
        let mut okm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"livewire/1 e2e"), shared.as_bytes())
            .expand(&info, &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Ok(SealingKey::new(&okm))
    }

    /// Seals `text` for `peer` in conversation `conv` (storage key) as `sender`.
    pub fn seal(
        &self,
        peer: &[u8; 32],
        conv: &str,
        sender: &str,
        cmid: ClientMsgId,
        text: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        let key = self.conversation_key(peer, conv)?;
        let aad = Aad {
            dir: Direction::Peer,
            conv,
            sender,
            cmid,
        };
        let sealed = key.seal(&aad, text)?;
        let mut out = Vec::with_capacity(HEADER + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&self.public);
        out.extend_from_slice(peer);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The key a reaction with `emoji` to message `target` of private conversation `conv`
    /// is stored under: HKDF-SHA256 (an HMAC) keyed by the two identity keys' shared secret,
    /// so both members compute the same value (one of each emoji per user holds) while the
    /// server, without the secret, can neither invert it nor test guesses against it.
    pub fn reaction_tag(
        &self,
        peer: &[u8; 32],
        conv: &str,
        target: u64,
        emoji: &[u8],
    ) -> Result<[u8; crate::app::edits::REACTION_TAG], EnvelopeError> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*peer));
        if !shared.was_contributory() {
            return Err(EnvelopeError::Auth);
        }
        let mut info = Vec::with_capacity(64 + conv.len() + emoji.len());
        info.extend_from_slice(b"livewire/1 reaction key");
        info.extend_from_slice(&(conv.len() as u64).to_be_bytes());
        info.extend_from_slice(conv.as_bytes());
        info.extend_from_slice(&target.to_be_bytes());
        info.extend_from_slice(emoji);
        let mut tag = [0u8; crate::app::edits::REACTION_TAG];
        Hkdf::<Sha256>::new(Some(b"livewire/1 reactions"), shared.as_bytes())
            .expand(&info, &mut tag)
            .expect("16 bytes is a valid HKDF-SHA256 output length");
        Ok(tag)
    }

    /// Opens a private body; returns the text and the sender's public key as sealed.
    pub fn open(
        &self,
        conv: &str,
        sender: &str,
        cmid: ClientMsgId,
        body: &[u8],
    ) -> Result<(Vec<u8>, [u8; 32]), E2eError> {
        if body.len() < HEADER || body[0] != VERSION {
            return Err(E2eError::Malformed);
        }
        let sender_pub: [u8; 32] = body[1..33].try_into().map_err(|_| E2eError::Malformed)?;
        let recipient_pub: [u8; 32] = body[33..65].try_into().map_err(|_| E2eError::Malformed)?;
        let other = if sender_pub == self.public {
            recipient_pub
        } else if recipient_pub == self.public {
            sender_pub
        } else {
            return Err(E2eError::NotForMe);
        };
        let key = self.conversation_key(&other, conv)?;
        let aad = Aad {
            dir: Direction::Peer,
            conv,
            sender,
            cmid,
        };
        Ok((key.open(&aad, &body[HEADER..])?, sender_pub))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONV: &str = "dm:alice:bob";

    #[test]
    fn both_members_open_and_others_cannot() {
        let (alice, bob, eve) = (
            IdentityKey::generate(),
            IdentityKey::generate(),
            IdentityKey::generate(),
        );
        let cmid = ClientMsgId([3; 16]);
        let body = alice
            .seal(&bob.public, CONV, "alice", cmid, b"secret")
            .unwrap();
        assert!(!body.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            bob.open(CONV, "alice", cmid, &body).unwrap(),
            (b"secret".to_vec(), alice.public)
        );
        // The author can read her own message (other sessions, history).
        assert_eq!(alice.open(CONV, "alice", cmid, &body).unwrap().0, b"secret");
        assert_eq!(
            eve.open(CONV, "alice", cmid, &body),
            Err(E2eError::NotForMe)
        );
    }

    #[test]
    fn transplant_and_tamper_fail() {
        let (alice, bob) = (IdentityKey::generate(), IdentityKey::generate());
        let cmid = ClientMsgId([3; 16]);
        let body = alice
            .seal(&bob.public, CONV, "alice", cmid, b"secret")
            .unwrap();
        assert!(bob.open("dm:alice:carol", "alice", cmid, &body).is_err());
        assert!(bob.open(CONV, "bob", cmid, &body).is_err());
        assert!(
            bob.open(CONV, "alice", ClientMsgId([4; 16]), &body)
                .is_err()
        );
        let mut t = body.clone();
        *t.last_mut().unwrap() ^= 1;
        assert!(bob.open(CONV, "alice", cmid, &t).is_err());
        assert_eq!(
            bob.open(CONV, "alice", cmid, &body[..10]),
            Err(E2eError::Malformed)
        );
    }

    #[test]
    fn keys_persist_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k").join("alice.identity");
        let a = IdentityKey::load_or_create(&path).unwrap();
        let b = IdentityKey::load_or_create(&path).unwrap();
        assert_eq!(a.public, b.public);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::write(&path, "garbage").unwrap();
        assert!(IdentityKey::load_or_create(&path).is_err());
    }
}
