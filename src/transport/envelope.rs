//! Application-level sealing: AES-256-GCM-SIV envelopes and the session key schedule.
//!
//! An envelope is `nonce (12 bytes) || ciphertext || tag (16 bytes)`. A session key's
//! nonces are a random 32-bit prefix drawn when the key is derived followed by a 64-bit
//! counter (each session key is used by one side in one direction only, so no nonce
//! repeats under a key, and no system call is made per message); any other key (the
//! long-lived end-to-end keys, which both peers seal with) takes 96 random bits from the OS
//! per envelope. AES-GCM-SIV would survive a repeated nonce anyway (it would only show
//! that two envelopes hold the same text under the same AAD). The AAD binds
//! the protocol version, the direction, the conversation, the author and the author's
//! message id, so a ciphertext moved to another conversation, author or message fails to
//! open. Session keys come from an ephemeral X25519 exchange in the login, run through
//! HKDF-SHA256 salted with the QUIC TLS exporter: they are bound to that one connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm_siv::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

use crate::app::ids::ClientMsgId;
use crate::app::protocol::{ConvEvent, EventKind, PROTOCOL_VERSION};

/// Nonce length.
pub const NONCE_LEN: usize = 12;
/// Tag length.
pub const TAG_LEN: usize = 16;
/// TLS exporter label for the session key salt.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-livewire/1 session";

/// Why an envelope did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Shorter than a nonce and a tag.
    #[error("envelope too short")]
    Short,
    /// Wrong key, tampered bytes or different AAD.
    #[error("envelope failed authentication")]
    Auth,
    /// The OS random generator failed.
    #[error("no randomness: {0}")]
    Rng(String),
    /// A session key sealed 2^64 envelopes: it is never used again.
    #[error("this session key is used up")]
    Exhausted,
}

/// Which way a sealed body travels (part of the AAD, so a reflected envelope fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Up = 1,
    /// Server to client.
    Down = 2,
    /// End to end between two users.
    Peer = 3,
}

/// What an envelope is bound to.
#[derive(Debug, Clone, Copy)]
pub struct Aad<'a> {
    /// Direction.
    pub dir: Direction,
    /// Conversation storage key.
    pub conv: &'a str,
    /// Author (case-folded).
    pub sender: &'a str,
    /// Author's message id.
    pub cmid: ClientMsgId,
}

impl<'a> Aad<'a> {
    /// The AAD of a message body in conversation `conv` by `sender`.
    pub fn event(dir: Direction, conv: &'a str, sender: &'a str, cmid: ClientMsgId) -> Self {
        Self {
            dir,
            conv,
            sender,
            cmid,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(40 + self.conv.len() + self.sender.len());
        v.extend_from_slice(b"livewire");
        v.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        v.push(self.dir as u8);
        v.extend_from_slice(&(self.conv.len() as u32).to_be_bytes());
        v.extend_from_slice(self.conv.as_bytes());
        v.extend_from_slice(&(self.sender.len() as u32).to_be_bytes());
        v.extend(self.sender.bytes().map(|b| b.to_ascii_lowercase()));
        v.extend_from_slice(&self.cmid.0);
        v
    }
}

/// How a key picks its nonces.
enum Nonces {
    /// 96 random bits from the OS per envelope.
    Random,
    /// `prefix || counter` (big-endian), the counter shared by every clone of the key.
    Counter { prefix: [u8; 4], next: AtomicU64 },
}

impl Nonces {
    fn next(&self) -> Result<[u8; NONCE_LEN], EnvelopeError> {
        let mut nonce = [0u8; NONCE_LEN];
        match self {
            Nonces::Random => {
                getrandom::fill(&mut nonce).map_err(|e| EnvelopeError::Rng(e.to_string()))?
            }
            Nonces::Counter { prefix, next } => {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n == u64::MAX {
                    // Stays exhausted: the counter never wraps back to a used value.
                    next.store(u64::MAX, Ordering::Relaxed);
                    return Err(EnvelopeError::Exhausted);
                }
                nonce[..4].copy_from_slice(prefix);
                nonce[4..].copy_from_slice(&n.to_be_bytes());
            }
        }
        Ok(nonce)
    }
}

/// One AES-256-GCM-SIV key.
#[derive(Clone)]
pub struct SealingKey(Aes256GcmSiv, Arc<Nonces>);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

/// Where the ciphertext lies in an envelope of `len` bytes (nonce ‖ ciphertext ‖ tag), if
/// it has room for the nonce and the tag.
pub(crate) fn body_range(len: usize) -> Option<std::ops::Range<usize>> {
    len.checked_sub(TAG_LEN)
        .filter(|&end| end >= NONCE_LEN)
        .map(|end| NONCE_LEN..end)
}

/// An envelope's nonce, its ciphertext (to open in place) and its tag, if it is long
/// enough to hold them.
pub(crate) fn split_envelope(
    envelope: &mut [u8],
) -> Option<([u8; NONCE_LEN], &mut [u8], aes_gcm_siv::Tag)> {
    let end = body_range(envelope.len())?.end;
    let (head, tag) = envelope.split_at_mut(end);
    let (nonce, body) = head.split_at_mut(NONCE_LEN);
    let nonce = (&*nonce).try_into().ok()?;
    let tag = aes_gcm_siv::Tag::try_from(&*tag).ok()?;
    Some((nonce, body, tag))
}

impl SealingKey {
    /// From 32 key bytes, with a random nonce per envelope (for a key that more than one
    /// sealer uses, or that outlives a process).
    pub fn new(key: &[u8; 32]) -> Self {
        Self(Aes256GcmSiv::new(key.into()), Arc::new(Nonces::Random))
    }

    /// From 32 key bytes that only this process seals with, in one direction, for one
    /// session: counter nonces after a random prefix (random nonces if the OS has no
    /// randomness to give now; sealing then says so).
    pub fn session(key: &[u8; 32]) -> Self {
        let mut prefix = [0u8; 4];
        let nonces = match getrandom::fill(&mut prefix) {
            Ok(()) => Nonces::Counter {
                prefix,
                next: AtomicU64::new(0),
            },
            Err(_) => Nonces::Random,
        };
        Self(Aes256GcmSiv::new(key.into()), Arc::new(nonces))
    }

    /// Seals with the key's next nonce.
    pub fn seal(&self, aad: &Aad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let nonce = self.1.next()?;
        Ok(self.seal_with_nonce(aad, plaintext, nonce))
    }

    /// One allocation: the nonce, the plaintext encrypted in place, the tag.
    fn seal_with_nonce(&self, aad: &Aad<'_>, plaintext: &[u8], nonce: [u8; NONCE_LEN]) -> Vec<u8> {
        let aad = aad.encode();
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .encrypt_inout_detached(&Nonce::from(nonce), &aad, (&mut out[NONCE_LEN..]).into())
            .expect("AES-GCM-SIV encryption of an in-memory buffer cannot fail");
        out.extend_from_slice(&tag);
        out
    }

    /// Seals `plain` where it lies with the key's next nonce and returns that nonce and
    /// the tag: the envelope is `nonce ‖ plain (now the ciphertext) ‖ tag`, for a caller
    /// that lays the three parts out itself (a file chunk, encrypted in the buffer it was
    /// read into, copies nothing).
    pub fn seal_detached(
        &self,
        aad: &Aad<'_>,
        plain: &mut [u8],
    ) -> Result<([u8; NONCE_LEN], [u8; TAG_LEN]), EnvelopeError> {
        let nonce = self.1.next()?;
        let aad = aad.encode();
        let tag = self
            .0
            .encrypt_inout_detached(&Nonce::from(nonce), &aad, plain.into())
            .expect("AES-GCM-SIV encryption of an in-memory buffer cannot fail");
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&tag);
        Ok((nonce, t))
    }

    /// Seals in place an envelope laid out as room for the nonce ‖ the plaintext ‖ room
    /// for the tag (`envelope` is the plaintext's length plus [`NONCE_LEN`] and
    /// [`TAG_LEN`]).
    pub fn seal_in_place(&self, aad: &Aad<'_>, envelope: &mut [u8]) -> Result<(), EnvelopeError> {
        let body = body_range(envelope.len()).ok_or(EnvelopeError::Short)?;
        let end = body.end;
        let (nonce, tag) = self.seal_detached(aad, &mut envelope[body])?;
        envelope[..NONCE_LEN].copy_from_slice(&nonce);
        envelope[end..].copy_from_slice(&tag);
        Ok(())
    }

    /// Opens an envelope where it lies (no copy): on success the plaintext is the middle
    /// of `envelope`, returned; on an error `envelope`'s bytes are not to be used.
    pub fn open_in_place<'b>(
        &self,
        aad: &Aad<'_>,
        envelope: &'b mut [u8],
    ) -> Result<&'b mut [u8], EnvelopeError> {
        let (nonce, body, tag) = split_envelope(envelope).ok_or(EnvelopeError::Short)?;
        let aad = aad.encode();
        self.0
            .decrypt_inout_detached(&Nonce::from(nonce), &aad, (&mut *body).into(), &tag)
            .map_err(|_| EnvelopeError::Auth)?;
        Ok(body)
    }

    /// Opens an envelope sealed under the same key and AAD.
    pub fn open(&self, aad: &Aad<'_>, envelope: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        if envelope.len() < NONCE_LEN + TAG_LEN {
            return Err(EnvelopeError::Short);
        }
        let (nonce, ct) = envelope.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| EnvelopeError::Short)?;
        let aad = aad.encode();
        self.0
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| EnvelopeError::Auth)
    }
}

/// The two keys of a session.
#[derive(Debug, Clone)]
pub struct SessionKeys {
    /// Client to server.
    pub up: SealingKey,
    /// Server to client.
    pub down: SealingKey,
}

impl SessionKeys {
    /// HKDF-SHA256(salt = TLS exporter, ikm = X25519 shared secret,
    /// info = label || client public || server public) → 64 bytes → up key, down key.
    pub fn derive(
        shared: &[u8; 32],
        exporter: &[u8; 32],
        client_pub: &[u8; 32],
        server_pub: &[u8; 32],
    ) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(exporter), shared);
        let mut info = Vec::with_capacity(96);
        info.extend_from_slice(b"livewire/1 session keys");
        info.extend_from_slice(client_pub);
        info.extend_from_slice(server_pub);
        let mut okm = [0u8; 64];
        hk.expand(&info, &mut okm)
            .expect("64 bytes is a valid HKDF-SHA256 output length");
        let up: [u8; 32] = okm[..32].try_into().expect("32 bytes");
        let down: [u8; 32] = okm[32..].try_into().expect("32 bytes");
        Self {
            up: SealingKey::session(&up),
            down: SealingKey::session(&down),
        }
    }
}

/// The sealing of message bodies on a conversation stream, one definition for both ends:
/// the client seals what it sends and opens what it receives; the server does the
/// opposite, with the same AAD (conversation storage key, author, author's message id).
impl SessionKeys {
    /// Seals, in place, the body of a message event going to the client (the server's
    /// side). An event without a body (a tombstone) is left as it is.
    pub fn seal_event_body(&self, conv_key: &str, e: &mut ConvEvent) -> Result<(), EnvelopeError> {
        if let Some(body) = e.kind.body_mut() {
            *body = self.down.seal(
                &Aad::event(Direction::Down, conv_key, &e.sender, e.cmid),
                body,
            )?;
        }
        Ok(())
    }

    /// A copy of `e` with its body sealed, for a message event shared by many recipients
    /// (the server's side): the clear body is only read, the event only copied without it.
    pub fn sealed_event(&self, conv_key: &str, e: &ConvEvent) -> Result<ConvEvent, EnvelopeError> {
        let aad = Aad::event(Direction::Down, conv_key, &e.sender, e.cmid);
        let seal = |body: &[u8]| self.down.seal(&aad, body);
        let kind = match &e.kind {
            EventKind::Message { body } => EventKind::Message { body: seal(body)? },
            EventKind::Edited { body } => EventKind::Edited { body: seal(body)? },
            EventKind::Edit { target, body } => EventKind::Edit {
                target: *target,
                body: seal(body)?,
            },
            EventKind::Reaction { target, on, body } => EventKind::Reaction {
                target: *target,
                on: *on,
                body: seal(body)?,
            },
            EventKind::Erased => EventKind::Erased,
            EventKind::Handshake => EventKind::Handshake,
            EventKind::Tombstone { target } => EventKind::Tombstone { target: *target },
        };
        Ok(ConvEvent {
            seq: e.seq,
            id: e.id,
            ts: e.ts,
            sender: e.sender.clone(),
            cmid: e.cmid,
            kind,
            mentions: e.mentions.clone(),
        })
    }

    /// Opens, in place, the body of a message event from the server (the client's side).
    /// On an error the event is unchanged.
    pub fn open_event_body(&self, conv_key: &str, e: &mut ConvEvent) -> Result<(), EnvelopeError> {
        if let Some(body) = e.kind.body_mut() {
            *body = self.down.open(
                &Aad::event(Direction::Down, conv_key, &e.sender, e.cmid),
                body,
            )?;
        }
        Ok(())
    }

    /// Seals the body of a message the client sends as `sender` (the client's side).
    pub fn seal_sent_body(
        &self,
        conv_key: &str,
        sender: &str,
        cmid: ClientMsgId,
        body: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        self.up
            .seal(&Aad::event(Direction::Up, conv_key, sender, cmid), body)
    }

    /// Opens the body of a message a client sent as `sender` (the server's side).
    pub fn open_sent_body(
        &self,
        conv_key: &str,
        sender: &str,
        cmid: ClientMsgId,
        body: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        self.up
            .open(&Aad::event(Direction::Up, conv_key, sender, cmid), body)
    }
}

/// An ephemeral X25519 key pair for one login.
pub struct Ephemeral {
    secret: x25519_dalek::EphemeralSecret,
    /// Public half.
    pub public: [u8; 32],
}

impl Ephemeral {
    /// A fresh key pair from the OS RNG.
    pub fn new() -> Self {
        let secret = x25519_dalek::EphemeralSecret::random();
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        Self { secret, public }
    }

    /// The shared secret with the peer's public key (consumes the secret).
    pub fn agree(self, peer: &[u8; 32]) -> Result<[u8; 32], EnvelopeError> {
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(*peer));
        if !shared.was_contributory() {
            return Err(EnvelopeError::Auth);
        }
        Ok(*shared.as_bytes())
    }
}

impl Default for Ephemeral {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::protocol::EventKind;
    use proptest::prelude::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 8452, Appendix C.2 (AEAD_AES_256_GCM_SIV), raw cipher without our AAD framing.
    #[test]
    fn rfc8452_vectors() {
        let key = unhex("0100000000000000000000000000000000000000000000000000000000000000");
        let cipher = Aes256GcmSiv::new_from_slice(&key).unwrap();
        let nonce: [u8; 12] = unhex("030000000000000000000000").try_into().unwrap();
        let cases = [
            ("", "", "07f5f4169bbf55a8400cd47ea6fd400f"),
            (
                "0100000000000000",
                "",
                "c2ef328e5c71c83b843122130f7364b761e0b97427e3df28",
            ),
            (
                "0200000000000000",
                "01",
                "1de22967237a813291213f267e3b452f02d01ae33e4ec854",
            ),
        ];
        for (pt, aad, ct) in cases {
            let payload = Payload {
                msg: &unhex(pt),
                aad: &unhex(aad),
            };
            let got = cipher.encrypt(&Nonce::from(nonce), payload).unwrap();
            assert_eq!(got, unhex(ct), "plaintext {pt}");
            let payload = Payload {
                msg: &got,
                aad: &unhex(aad),
            };
            assert_eq!(
                cipher.decrypt(&Nonce::from(nonce), payload).unwrap(),
                unhex(pt)
            );
        }
    }

    fn key(b: u8) -> SealingKey {
        SealingKey::new(&[b; 32])
    }

    fn aad(conv: &str) -> Aad<'_> {
        Aad {
            dir: Direction::Up,
            conv,
            sender: "alice",
            cmid: ClientMsgId([1; 16]),
        }
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let k = key(9);
        let a = k.seal(&aad("#general"), b"hello").unwrap();
        let b = k.seal(&aad("#general"), b"hello").unwrap();
        assert_ne!(a, b, "nonces must differ");
        assert_eq!(k.open(&aad("#general"), &a).unwrap(), b"hello");
    }

    #[test]
    fn session_keys_count_their_nonces_and_clones_share_the_count() {
        let k = SealingKey::session(&[9; 32]);
        let clone = k.clone();
        let a = k.seal(&aad("#general"), b"hello").unwrap();
        let b = clone.seal(&aad("#general"), b"hello").unwrap();
        assert_eq!(a[..4], b[..4], "one prefix per key");
        assert_eq!(a[4..NONCE_LEN], 0u64.to_be_bytes());
        assert_eq!(b[4..NONCE_LEN], 1u64.to_be_bytes());
        assert_ne!(a, b);
        assert_eq!(k.open(&aad("#general"), &b).unwrap(), b"hello");
        // A second key (another session) draws another prefix.
        let other = SealingKey::session(&[9; 32]).seal(&aad("#general"), b"x");
        let mut prefixes = std::collections::HashSet::new();
        prefixes.insert(a[..4].to_vec());
        for _ in 0..8 {
            let o = SealingKey::session(&[9; 32]).seal(&aad("#general"), b"x");
            prefixes.insert(o.unwrap()[..4].to_vec());
        }
        assert!(other.is_ok() && prefixes.len() > 1, "prefixes are random");
    }

    #[test]
    fn an_exhausted_counter_refuses_to_seal() {
        let k = SealingKey::session(&[9; 32]);
        if let Nonces::Counter { next, .. } = &*k.1 {
            next.store(u64::MAX - 1, Ordering::Relaxed);
        }
        let last = k.seal(&aad("#general"), b"x").unwrap();
        assert_eq!(last[4..NONCE_LEN], (u64::MAX - 1).to_be_bytes());
        assert_eq!(
            k.seal(&aad("#general"), b"x"),
            Err(EnvelopeError::Exhausted)
        );
        assert_eq!(
            k.seal(&aad("#general"), b"x"),
            Err(EnvelopeError::Exhausted)
        );
    }

    #[test]
    fn tamper_and_transplant_fail() {
        let k = key(9);
        let env = k.seal(&aad("#general"), b"hello").unwrap();
        for i in 0..env.len() {
            let mut t = env.clone();
            t[i] ^= 0x01;
            assert_eq!(
                k.open(&aad("#general"), &t),
                Err(EnvelopeError::Auth),
                "byte {i}"
            );
        }
        assert_eq!(k.open(&aad("dm:alice:bob"), &env), Err(EnvelopeError::Auth));
        let other_sender = Aad {
            sender: "mallory",
            ..aad("#general")
        };
        assert_eq!(k.open(&other_sender, &env), Err(EnvelopeError::Auth));
        let other_msg = Aad {
            cmid: ClientMsgId([2; 16]),
            ..aad("#general")
        };
        assert_eq!(k.open(&other_msg, &env), Err(EnvelopeError::Auth));
        let reflected = Aad {
            dir: Direction::Down,
            ..aad("#general")
        };
        assert_eq!(k.open(&reflected, &env), Err(EnvelopeError::Auth));
        assert_eq!(
            key(8).open(&aad("#general"), &env),
            Err(EnvelopeError::Auth)
        );
        assert_eq!(
            k.open(&aad("#general"), &env[..20]),
            Err(EnvelopeError::Short)
        );
    }

    #[test]
    fn in_place_envelopes_are_the_same_envelopes() {
        let k = SealingKey::session(&[9; 32]);
        // Sealed in place: opens with `open`, and is what `seal` makes with that nonce.
        let mut env = vec![0u8; NONCE_LEN + 5 + TAG_LEN];
        env[NONCE_LEN..NONCE_LEN + 5].copy_from_slice(b"hello");
        k.seal_in_place(&aad("#general"), &mut env).unwrap();
        assert_eq!(k.open(&aad("#general"), &env).unwrap(), b"hello");
        let nonce: [u8; NONCE_LEN] = env[..NONCE_LEN].try_into().unwrap();
        assert_eq!(k.seal_with_nonce(&aad("#general"), b"hello", nonce), env);
        // `seal` opens in place; tampered, transplanted, too short: refused.
        let mut sealed = k.seal(&aad("#general"), b"chunk").unwrap();
        let plain = k.open_in_place(&aad("#general"), &mut sealed).unwrap();
        assert_eq!(plain, b"chunk");
        let mut t = k.seal(&aad("#general"), b"chunk").unwrap();
        t[NONCE_LEN] ^= 1;
        assert_eq!(
            k.open_in_place(&aad("#general"), &mut t),
            Err(EnvelopeError::Auth)
        );
        let mut moved = k.seal(&aad("#general"), b"chunk").unwrap();
        assert_eq!(
            k.open_in_place(&aad("dm:alice:bob"), &mut moved),
            Err(EnvelopeError::Auth)
        );
        let mut short = [0u8; NONCE_LEN + TAG_LEN - 1];
        assert_eq!(
            k.open_in_place(&aad("#general"), &mut short),
            Err(EnvelopeError::Short)
        );
        assert_eq!(
            k.seal_in_place(&aad("#general"), &mut short),
            Err(EnvelopeError::Short)
        );
        // Detached: nonce ‖ ciphertext ‖ tag is an envelope; the empty plaintext too.
        let mut body = *b"detached";
        let (nonce, tag) = k.seal_detached(&aad("#general"), &mut body).unwrap();
        let env = [&nonce[..], &body[..], &tag[..]].concat();
        assert_eq!(k.open(&aad("#general"), &env).unwrap(), b"detached");
        let mut empty = [0u8; NONCE_LEN + TAG_LEN];
        k.seal_in_place(&aad("#general"), &mut empty).unwrap();
        assert_eq!(k.open(&aad("#general"), &empty).unwrap(), b"");
    }

    #[test]
    fn session_keys_agree_and_depend_on_exporter() {
        let (c, s) = (Ephemeral::new(), Ephemeral::new());
        let (cp, sp) = (c.public, s.public);
        let shared_c = c.agree(&sp).unwrap();
        let shared_s = s.agree(&cp).unwrap();
        assert_eq!(shared_c, shared_s);
        let k1 = SessionKeys::derive(&shared_c, &[1; 32], &cp, &sp);
        let k2 = SessionKeys::derive(&shared_s, &[1; 32], &cp, &sp);
        let k3 = SessionKeys::derive(&shared_s, &[2; 32], &cp, &sp);
        let env = k1.up.seal(&aad("#general"), b"x").unwrap();
        assert_eq!(k2.up.open(&aad("#general"), &env).unwrap(), b"x");
        assert!(k3.up.open(&aad("#general"), &env).is_err());
        assert!(k2.down.open(&aad("#general"), &env).is_err());
    }

    #[test]
    fn event_bodies_open_at_the_other_end_only_in_their_conversation() {
        let keys = SessionKeys::derive(&[7; 32], &[1; 32], &[2; 32], &[3; 32]);
        let event = ConvEvent {
            seq: 1,
            id: 1,
            ts: 0,
            sender: "Alice".into(),
            cmid: ClientMsgId([4; 16]),
            kind: EventKind::Message {
                body: b"hello".to_vec(),
            },
            mentions: Vec::new(),
        };
        let mut shared = keys.sealed_event("general", &event).unwrap();
        assert_ne!(shared, event);
        keys.open_event_body("general", &mut shared).unwrap();
        assert_eq!(
            shared, event,
            "a shared event seals like one sealed in place"
        );
        let mut e = event.clone();
        keys.seal_event_body("general", &mut e).unwrap();
        assert_ne!(e, event);
        let mut moved = e.clone();
        assert!(keys.open_event_body("dm:alice:bob", &mut moved).is_err());
        keys.open_event_body("general", &mut e).unwrap();
        assert_eq!(e, event);
        let sent = keys
            .seal_sent_body("general", "alice", ClientMsgId([4; 16]), b"up")
            .unwrap();
        let plain = keys.open_sent_body("general", "ALICE", ClientMsgId([4; 16]), &sent);
        assert_eq!(plain.unwrap(), b"up");
        assert!(
            keys.open_sent_body("general", "bob", ClientMsgId([4; 16]), &sent)
                .is_err()
        );
    }

    #[test]
    fn low_order_peer_key_is_refused() {
        assert!(Ephemeral::new().agree(&[0; 32]).is_err());
    }

    proptest! {
        #[test]
        fn open_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = key(1).open(&aad("#general"), &bytes);
            let mut bytes = bytes;
            let _ = key(1).open_in_place(&aad("#general"), &mut bytes);
        }
    }
}
