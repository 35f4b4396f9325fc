//! Frames on a stream: a 4-byte big-endian length, then a postcard-encoded message.
//!
//! This is the only place that knows the encoding. Every read is bounded by a size limit
//! checked before allocating.

use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Limit for server-to-client frames as the client reads them: history pages carry up to
/// 1000 bodies, and the server is authenticated. Client-to-server frames use the server's
/// configured limit (64 KiB by default).
pub const MAX_DOWN_FRAME: usize = 32 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced length is over the limit.
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The bytes are not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The stream failed.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes one frame (length prefix included).
pub fn encode<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    let mut buf = postcard::to_extend(msg, std::mem::take(&mut buf))?;
    let len = buf.len() - 4;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Decodes a frame body (without the length prefix).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    Ok(postcard::from_bytes(body)?)
}

/// Splits a length-prefixed buffer: the announced length (if within `max`) and the bytes
/// after the prefix. `None` when the prefix is incomplete or over the limit.
pub fn split_prefix(buf: &[u8], max: usize) -> Option<(usize, &[u8])> {
    let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let len = u32::from_be_bytes(prefix) as usize;
    let rest = &buf[4..];
    (len <= max && rest.len() >= len).then_some((len, rest))
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
    max: usize,
) -> Result<(), FrameError> {
    let buf = encode(msg, max)?;
    w.write_all(&buf).await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` when the stream ended cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    max: usize,
) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    decode(&body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ids::{ClientMsgId, ConvId};
    use crate::app::protocol::{ControlUp, ConvUp};
    use proptest::prelude::*;

    #[tokio::test]
    async fn round_trip_and_clean_end() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let msg = ConvUp::Send {
            cmid: ClientMsgId([7; 16]),
            body: vec![1, 2, 3],
        };
        write_frame(&mut a, &msg, 1024).await.unwrap();
        write_frame(&mut a, &ControlUp::Who, 1024).await.unwrap();
        drop(a);
        assert_eq!(
            read_frame::<_, ConvUp>(&mut b, 1024).await.unwrap(),
            Some(msg)
        );
        assert_eq!(
            read_frame::<_, ControlUp>(&mut b, 1024).await.unwrap(),
            Some(ControlUp::Who)
        );
        assert!(
            read_frame::<_, ControlUp>(&mut b, 1024)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn oversize_is_refused_before_reading() {
        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::spawn(async move {
            a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        });
        let err = read_frame::<_, ControlUp>(&mut b, 1024).await.unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len, max: 1024 } if len == u32::MAX as usize));
    }

    #[tokio::test]
    async fn truncated_and_garbage_are_errors() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 9, 1, 2]).await.unwrap();
        drop(a);
        assert!(matches!(
            read_frame::<_, ControlUp>(&mut b, 1024).await,
            Err(FrameError::Truncated)
        ));
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 2, 0xff, 0xff]).await.unwrap();
        assert!(matches!(
            read_frame::<_, ControlUp>(&mut b, 1024).await,
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn encode_refuses_oversize() {
        let msg = ConvUp::Send {
            cmid: ClientMsgId([0; 16]),
            body: vec![0; 2000],
        };
        assert!(matches!(
            encode(&msg, 1000),
            Err(FrameError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<ConvUp>(&bytes);
            let _ = decode::<ControlUp>(&bytes);
        }

        #[test]
        fn open_frames_round_trip(after in proptest::option::of(any::<u64>()), a in "[a-z]{1,8}", b in "[a-z]{1,8}") {
            let msg = ConvUp::Open { conv: ConvId::Direct(a, b), after };
            let buf = encode(&msg, 1 << 16).unwrap();
            prop_assert_eq!(decode::<ConvUp>(&buf[4..]).unwrap(), msg);
        }
    }
}
