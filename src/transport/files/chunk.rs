//! The chunk format both sides of a file stream share: after the control frames, each
//! chunk travels as a raw frame, `u32` big-endian length ‖ sealed bytes, and is sealed
//! under an AAD that binds conversation, uploader, file id and chunk index.

use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};

use crate::app::files::{CHUNK, SESSION_OVERHEAD, keyed_chunk_aad};
use crate::app::ids::ClientMsgId;
use crate::app::protocol::E2E_OVERHEAD;
use crate::transport::envelope::{Aad, Direction, NONCE_LEN, TAG_LEN, body_range, split_envelope};
use crate::transport::quic::{Bytes, RecvStream, SendStream};

/// Largest raw chunk frame either side accepts.
pub(super) const MAX_CHUNK_FRAME: usize = CHUNK + E2E_OVERHEAD + SESSION_OVERHEAD;
/// Control frames on a file stream are small.
pub(super) const MAX_FILE_FRAME: usize = 16 * 1024;

/// Where the plaintext starts in a frame from [`sealable_frame`]: after the frame's length
/// and the nonce.
pub(super) const FRAME_HEAD: usize = 4 + NONCE_LEN;

/// A whole chunk frame for `plain_len` bytes of plaintext sealed in place (under the
/// session keys or a file's key: nonce ‖ ciphertext ‖ tag): the length written, zeros
/// for the rest. The plaintext goes at `FRAME_HEAD..FRAME_HEAD + plain_len`, then
/// `frame[4..]` is sealed in place, and the frame goes to quinn as it is (no copy).
pub(super) fn sealable_frame(plain_len: usize) -> Vec<u8> {
    let sealed = NONCE_LEN + plain_len + TAG_LEN;
    let mut frame = vec![0u8; 4 + sealed];
    frame[..4].copy_from_slice(&(sealed as u32).to_be_bytes());
    frame
}

/// Writes chunk frames whose parts are already laid out (a frame from [`sealable_frame`],
/// or a length, a stored chunk and its tag): quinn keeps the `Bytes`, it copies nothing.
pub(super) async fn write_frame_parts(
    s: &mut SendStream,
    parts: &mut [Bytes],
) -> std::io::Result<()> {
    s.write_all_chunks(parts)
        .await
        .map_err(std::io::Error::other)
}

/// The length prefix of a chunk frame of `len` bytes.
pub(super) fn frame_len(len: usize) -> [u8; 4] {
    (len as u32).to_be_bytes()
}

/// Reads one chunk frame into `buf` (refusing one over [`MAX_CHUNK_FRAME`]).
pub(super) async fn read_chunk(r: &mut RecvStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)
        .await
        .map_err(std::io::Error::other)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_CHUNK_FRAME {
        return Err(std::io::Error::other(format!(
            "chunk frame of {len} bytes is over the limit"
        )));
    }
    buf.resize(len, 0);
    r.read_exact(buf).await.map_err(std::io::Error::other)?;
    Ok(())
}

/// The AAD of a chunk sealed under the session keys (`id`: from `chunk_aad_id`).
pub(super) fn chunk_aad<'a>(
    dir: Direction,
    conv: &'a str,
    sender: &'a str,
    id: ClientMsgId,
) -> Aad<'a> {
    Aad::event(dir, conv, sender, id)
}

/// A file's own key (end-to-end conversations): seals and opens its chunks with
/// AES-256-GCM-SIV, a random nonce per chunk (a resumed upload may seal a chunk again, in
/// another process), and the AAD of `keyed_chunk_aad` (file id and chunk index).
pub(super) struct FileKey(Aes256GcmSiv);

/// Why a chunk sealed with a file's key does not open.
#[derive(Debug, thiserror::Error)]
pub(super) enum KeyedChunkError {
    /// Shorter than a nonce and a tag.
    #[error("chunk {0} is too short to be sealed")]
    Short(u64),
    /// The tag does not match: altered, moved, or another key.
    #[error(
        "chunk {0} does not open with the file's key: it was altered (or belongs elsewhere); the download was stopped"
    )]
    Auth(u64),
}

impl FileKey {
    /// The key of a file.
    pub(super) fn new(key: &[u8; 32]) -> Self {
        Self(Aes256GcmSiv::new(key.into()))
    }

    /// A fresh random key for a new file.
    pub(super) fn random_bytes() -> std::io::Result<[u8; 32]> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(std::io::Error::other)?;
        Ok(k)
    }

    /// Nonce ‖ ciphertext ‖ tag of chunk `index` of `file`.
    #[cfg(test)]
    pub(super) fn seal(
        &self,
        file: &ClientMsgId,
        index: u64,
        plain: &[u8],
    ) -> std::io::Result<Vec<u8>> {
        let mut out = vec![0u8; NONCE_LEN + plain.len() + TAG_LEN];
        out[NONCE_LEN..NONCE_LEN + plain.len()].copy_from_slice(plain);
        self.seal_in_place(file, index, &mut out)?;
        Ok(out)
    }

    /// Seals chunk `index` of `file` in place: `envelope` is room for the nonce ‖ the
    /// plaintext ‖ room for the tag, and becomes nonce ‖ ciphertext ‖ tag.
    pub(super) fn seal_in_place(
        &self,
        file: &ClientMsgId,
        index: u64,
        envelope: &mut [u8],
    ) -> std::io::Result<()> {
        let body = body_range(envelope.len())
            .ok_or_else(|| std::io::Error::other("a chunk's buffer has no room for its seal"))?;
        let end = body.end;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(std::io::Error::other)?;
        let aad = keyed_chunk_aad(file, index);
        let tag = self
            .0
            .encrypt_inout_detached(&Nonce::from(nonce), &aad, (&mut envelope[body]).into())
            .map_err(|_| std::io::Error::other("a chunk could not be sealed"))?;
        envelope[..NONCE_LEN].copy_from_slice(&nonce);
        envelope[end..].copy_from_slice(&tag);
        Ok(())
    }

    /// The plaintext of chunk `index` of `file`.
    #[cfg(test)]
    pub(super) fn open(
        &self,
        file: &ClientMsgId,
        index: u64,
        sealed: &[u8],
    ) -> Result<Vec<u8>, KeyedChunkError> {
        let mut copy = sealed.to_vec();
        Ok(self.open_in_place(file, index, &mut copy)?.to_vec())
    }

    /// Opens chunk `index` of `file` where it lies: its plaintext, the middle of `sealed`.
    pub(super) fn open_in_place<'b>(
        &self,
        file: &ClientMsgId,
        index: u64,
        sealed: &'b mut [u8],
    ) -> Result<&'b mut [u8], KeyedChunkError> {
        let (nonce, body, tag) = split_envelope(sealed).ok_or(KeyedChunkError::Short(index))?;
        let aad = keyed_chunk_aad(file, index);
        self.0
            .decrypt_inout_detached(&Nonce::from(nonce), &aad, (&mut *body).into(), &tag)
            .map_err(|_| KeyedChunkError::Auth(index))?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::files::KEYED_OVERHEAD;

    #[test]
    fn keyed_chunks_open_only_with_their_key_index_and_file() {
        let key = FileKey::new(&[7; 32]);
        let file = ClientMsgId([1; 16]);
        let sealed = key.seal(&file, 3, b"hello chunk").unwrap();
        assert_eq!(sealed.len(), 11 + KEYED_OVERHEAD);
        assert_eq!(key.open(&file, 3, &sealed).unwrap(), b"hello chunk");
        // Another index, another file, another key, one flipped bit: refused.
        assert!(matches!(
            key.open(&file, 4, &sealed),
            Err(KeyedChunkError::Auth(4))
        ));
        assert!(key.open(&ClientMsgId([2; 16]), 3, &sealed).is_err());
        assert!(FileKey::new(&[8; 32]).open(&file, 3, &sealed).is_err());
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        let e = key.open(&file, 3, &bad).unwrap_err().to_string();
        assert!(e.contains("altered"), "{e}");
        assert!(matches!(
            key.open(&file, 3, &sealed[..10]),
            Err(KeyedChunkError::Short(3))
        ));
        // In place: the same envelopes.
        let mut copy = sealed.clone();
        assert_eq!(
            key.open_in_place(&file, 3, &mut copy).unwrap(),
            b"hello chunk"
        );
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(matches!(
            key.open_in_place(&file, 3, &mut bad),
            Err(KeyedChunkError::Auth(3))
        ));
        assert!(matches!(
            key.open_in_place(&file, 3, &mut [0u8; 27]),
            Err(KeyedChunkError::Short(3))
        ));
        let mut frame = sealable_frame(11);
        frame[FRAME_HEAD..FRAME_HEAD + 11].copy_from_slice(b"hello chunk");
        key.seal_in_place(&file, 3, &mut frame[4..]).unwrap();
        assert_eq!(frame[..4], frame_len(11 + KEYED_OVERHEAD));
        assert_eq!(key.open(&file, 3, &frame[4..]).unwrap(), b"hello chunk");
        // A fresh nonce per seal.
        assert_ne!(key.seal(&file, 3, b"hello chunk").unwrap(), sealed);
        assert_ne!(FileKey::random_bytes().unwrap(), [0; 32]);
    }
}
