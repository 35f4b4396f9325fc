//! What the client seals in a conversation frame before it leaves: a send's, an edit's or
//! a reaction's body under the session key, and in a private conversation first end to end
//! for the peer, with a reaction's key replaced by the keyed hash the server stores it
//! under. Also which client message id a private event's body opens with.

use super::envelope::SessionKeys;
use super::identity::IdentityKey;
use crate::app::edits::edit_seal_id;
use crate::app::ids::{ClientMsgId, ConvId};
use crate::app::protocol::{ConvEvent, ConvUp, EventKind};

/// Why a frame could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The peer's identity key has not arrived yet (the conversation is still opening).
    #[error("cannot encrypt for {0}: their key is not known yet")]
    NoPeerKey(String),
    /// The envelope failed.
    #[error("sealing failed: {0}")]
    Envelope(String),
}

/// Seals, in place, the body of a send, an edit or a reaction on `conv` by `me_key` (other
/// frames pass as they are). `peer_key` is the pinned key of the peer of a private
/// conversation.
pub fn seal_up(
    identity: &IdentityKey,
    keys: &SessionKeys,
    peer_key: Option<[u8; 32]>,
    conv: &ConvId,
    me_key: &str,
    up: &mut ConvUp,
) -> Result<(), SealError> {
    let Some(cmid) = up.cmid() else {
        return Ok(());
    };
    let conv_key = conv.storage_key();
    let env = |e: &dyn std::fmt::Display| SealError::Envelope(e.to_string());
    if let Some(peer) = conv.peer_of(me_key) {
        let peer_key = peer_key.ok_or_else(|| SealError::NoPeerKey(peer.to_owned()))?;
        let e2e_id = match up {
            ConvUp::Edit { target, .. } => edit_seal_id(*target),
            _ => cmid,
        };
        if let ConvUp::React {
            target, key, body, ..
        } = up
        {
            let tag = identity
                .reaction_tag(&peer_key, &conv_key, *target, body)
                .map_err(|e| env(&e))?;
            *key = tag.to_vec();
        }
        if let Some(body) = up.body_mut() {
            *body = identity
                .seal(&peer_key, &conv_key, me_key, e2e_id, body)
                .map_err(|e| env(&e))?;
        }
    }
    if let Some(body) = up.body_mut() {
        *body = keys
            .seal_sent_body(&conv_key, me_key, cmid, body)
            .map_err(|e| env(&e))?;
    }
    Ok(())
}

/// The client message id a private event's body was sealed under end to end: an edited
/// text's is fixed per message (see [`edit_seal_id`]), anything else's is the event's own.
pub fn e2e_open_id(e: &ConvEvent) -> ClientMsgId {
    match &e.kind {
        EventKind::Edited { .. } => edit_seal_id(e.id),
        EventKind::Edit { target, .. } => edit_seal_id(*target),
        _ => e.cmid,
    }
}

/// Seals, in place, only the session layer of a frame whose body the MLS layer sealed end
/// to end already (`crate::app::mls::MlsClient`).
pub fn seal_session(
    keys: &SessionKeys,
    conv: &ConvId,
    me_key: &str,
    up: &mut ConvUp,
) -> Result<(), SealError> {
    let Some(cmid) = up.cmid() else {
        return Ok(());
    };
    if let Some(body) = up.body_mut() {
        *body = keys
            .seal_sent_body(&conv.storage_key(), me_key, cmid, body)
            .map_err(|e| SealError::Envelope(e.to_string()))?;
    }
    Ok(())
}
