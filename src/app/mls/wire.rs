//! The end-to-end body of a private conversation's frame when it is MLS: a tag byte
//! ([`MLS_TAG`]; the first scheme's envelopes start with 1) and a postcard-encoded
//! [`MlsBody`]. The server reads only the MLS framing's public part ([`frame_info`]).

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{ContentType, MlsMessageBodyIn, MlsMessageIn};
use serde::{Deserialize, Serialize};

/// First byte of an MLS body (the first scheme's bodies start with its version, 1).
pub const MLS_TAG: u8 = 2;

/// What an MLS body carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MlsBody {
    /// An application message: a TLS-encoded MLS `PrivateMessage`.
    App(Vec<u8>),
    /// A commit (TLS-encoded MLS message) by `device`, with the `Welcome` for the devices
    /// it adds, if any.
    Commit {
        /// The committing device's id (its own commits are merged on the server's ack).
        device: String,
        /// The commit.
        commit: Vec<u8>,
        /// The welcome for added devices.
        welcome: Option<Vec<u8>>,
    },
}

impl MlsBody {
    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![MLS_TAG];
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    /// Parses the bytes on the wire (`None`: not an MLS body).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&tag, rest) = bytes.split_first()?;
        if tag != MLS_TAG {
            return None;
        }
        postcard::from_bytes(rest).ok()
    }

    /// The MLS message this body's epoch is read from.
    fn framed(&self) -> &[u8] {
        match self {
            MlsBody::App(m) => m,
            MlsBody::Commit { commit, .. } => commit,
        }
    }
}

/// What the server may know of an MLS body: its epoch and whether it is a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// The epoch the message was made in.
    pub epoch: u64,
    /// A commit (it moves the conversation to `epoch + 1`).
    pub commit: bool,
}

/// The public framing of an MLS body (`None`: not an MLS body, or malformed).
pub fn frame_info(bytes: &[u8]) -> Option<FrameInfo> {
    let body = MlsBody::decode(bytes)?;
    let msg = MlsMessageIn::tls_deserialize_exact(body.framed()).ok()?;
    let proto = match msg.extract() {
        MlsMessageBodyIn::PrivateMessage(m) => openmls::prelude::ProtocolMessage::from(m),
        MlsMessageBodyIn::PublicMessage(m) => openmls::prelude::ProtocolMessage::from(m),
        _ => return None,
    };
    let commit = proto.content_type() == ContentType::Commit;
    if commit != matches!(body, MlsBody::Commit { .. }) {
        return None;
    }
    Some(FrameInfo {
        epoch: proto.epoch().as_u64(),
        commit,
    })
}
