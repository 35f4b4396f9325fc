//! The chunk format both sides of a file stream share: after the control frames, each
//! chunk travels as a raw frame, `u32` big-endian length ‖ sealed bytes, and is sealed
//! under an AAD that binds conversation, uploader, file id and chunk index.

use crate::app::files::{CHUNK, SESSION_OVERHEAD};
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
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(bytes);
    s.write_all(&frame).await.map_err(std::io::Error::other)
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
