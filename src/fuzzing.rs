//! Entry points shared by the fuzz targets (`fuzz/`) and the corpus replay test
//! (`tests/fuzz_corpus.rs`): every decoder of untrusted bytes, called on arbitrary input.
//! They must return (an error or a value) and never panic.

use crate::app::ids::ClientMsgId;
use crate::app::protocol::{ControlDown, ControlUp, ConvDown, ConvUp};
use crate::transport::codec;
use crate::transport::envelope::{Aad, Direction, SealingKey};
use crate::transport::identity::IdentityKey;

/// Runs every frame decoder over `data` (as a frame body, and as a length-prefixed frame).
pub fn decode_all(data: &[u8]) {
    let _ = codec::decode::<ControlUp>(data);
    let _ = codec::decode::<ControlDown>(data);
    let _ = codec::decode::<ConvUp>(data);
    let _ = codec::decode::<ConvDown>(data);
    if let Some((len, body)) = codec::split_prefix(data, 64 * 1024) {
        assert!(body.len() >= len);
        let _ = codec::decode::<ConvUp>(&body[..len]);
    }
}

/// Runs the envelope openers over `data`. With a fixed key, arbitrary bytes must never
/// open (that would be a forgery); with a key taken from the input they may.
pub fn open_all(data: &[u8]) {
    let aad = Aad {
        dir: Direction::Up,
        conv: "#general",
        sender: "alice",
        cmid: ClientMsgId([0; 16]),
    };
    assert!(
        SealingKey::new(&[9; 32]).open(&aad, data).is_err(),
        "arbitrary bytes opened under a key they never saw"
    );
    if data.len() >= 32 {
        let key: [u8; 32] = data[..32].try_into().expect("32 bytes");
        let _ = SealingKey::new(&key).open(&aad, &data[32..]);
    }
    let me = IdentityKey::from_secret_bytes([7; 32]);
    let _ = me.open("dm:alice:bob", "alice", ClientMsgId([0; 16]), data);
}
