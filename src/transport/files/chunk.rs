//! The chunk format both sides of a file stream share: after the control frames, each
//! chunk travels as a raw frame, `u32` big-endian length ‖ sealed bytes, and is sealed
//! under an AAD that binds conversation, uploader, file id and chunk index.

use aes_gcm_siv::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};

use crate::app::files::{CHUNK, KEYED_OVERHEAD, SESSION_OVERHEAD, keyed_chunk_aad};
use crate::app::ids::ClientMsgId;
use crate::app::protocol::E2E_OVERHEAD;
use crate::transport::envelope::{Aad, Direction};
use crate::transport::quic::{RecvStream, SendStream};

/// Largest raw chunk frame either side accepts.
pub(super) const MAX_CHUNK_FRAME: usize = CHUNK + E2E_OVERHEAD + SESSION_OVERHEAD;
/// Control frames on a file stream are small.
pub(super) const MAX_FILE_FRAME: usize = 16 * 1024;

/// Writes one chunk frame.
pub(super) async fn write_chunk(s: &mut SendStream, bytes: &[u8]) -> std::io::Result<()> {
    // Two writes into quinn's send buffer rather than a copy of the chunk into a frame.
    s.write_all(&(bytes.len() as u32).to_be_bytes())
        .await
        .map_err(std::io::Error::other)?;
    s.write_all(bytes).await.map_err(std::io::Error::other)
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
    pub(super) fn seal(
        &self,
        file: &ClientMsgId,
        index: u64,
        plain: &[u8],
    ) -> std::io::Result<Vec<u8>> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(std::io::Error::other)?;
        let aad = keyed_chunk_aad(file, index);
        let mut out = Vec::with_capacity(KEYED_OVERHEAD + plain.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .0
            .encrypt_inout_detached(&Nonce::from(nonce), &aad, (&mut out[12..]).into())
            .map_err(|_| std::io::Error::other("a chunk could not be sealed"))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// The plaintext of chunk `index` of `file`.
    pub(super) fn open(
        &self,
        file: &ClientMsgId,
        index: u64,
        sealed: &[u8],
    ) -> Result<Vec<u8>, KeyedChunkError> {
        if sealed.len() < KEYED_OVERHEAD {
            return Err(KeyedChunkError::Short(index));
        }
        let (nonce, ct) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce
            .try_into()
            .map_err(|_| KeyedChunkError::Short(index))?;
        let aad = keyed_chunk_aad(file, index);
        self.0
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| KeyedChunkError::Auth(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // A fresh nonce per seal.
        assert_ne!(key.seal(&file, 3, b"hello chunk").unwrap(), sealed);
        assert_ne!(FileKey::random_bytes().unwrap(), [0; 32]);
    }
}
