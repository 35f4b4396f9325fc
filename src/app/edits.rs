//! What edits, replies and reactions mean on the wire, shared by the server and the client
//! cores (see "Edits, replies and reactions" in docs/PROTOCOL.md).
//!
//! - An **edit** replaces a message's stored text ([`EventKind::Edited`]) and appends a
//!   sequenced [`EventKind::Edit`] carrying the new text, so members who were offline get
//!   it on catch-up like a tombstone. In a private conversation the new text is sealed end
//!   to end by the author under [`edit_seal_id`] of the message, so the stored message and
//!   its edit events open with the same associated data.
//! - A **reply** travels inside the message text as a [`REPLY_MARKER`] line naming the
//!   message replied to, so in a private conversation it is sealed with the text and the
//!   server never learns it (the same trick as file messages' marker).
//! - A **reaction** is a sequenced [`EventKind::Reaction`]; the server keeps one per user,
//!   message and *key*: the emoji itself where it reads the conversation, a keyed hash the
//!   two members compute (and the server cannot invert) in a private one.
//!
//! [`EventKind::Edited`]: super::protocol::EventKind::Edited
//! [`EventKind::Edit`]: super::protocol::EventKind::Edit
//! [`EventKind::Reaction`]: super::protocol::EventKind::Reaction

use super::ids::{ClientMsgId, MsgId};

/// Prefix of a reply's text: the marker, the id replied to, a newline, then the text.
pub const REPLY_MARKER: &str = "\u{1}lwreply1 ";

/// Longest emoji (bytes of UTF-8) a reaction may carry.
pub const MAX_EMOJI: usize = 32;

/// Bytes of the keyed hash a private conversation's reaction is keyed on.
pub const REACTION_TAG: usize = 16;

/// The client message id an edited text of message `target` is sealed under end to end
/// (its author seals, both members open): fixed per message, so the stored message and the
/// edit events carrying its text open alike.
pub fn edit_seal_id(target: MsgId) -> ClientMsgId {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(b"edit");
    id[8..].copy_from_slice(&target.to_be_bytes());
    ClientMsgId(id)
}

/// The text of a reply to `reply_to` (`None`: the text as it is).
pub fn wrap_reply(reply_to: Option<MsgId>, text: &str) -> String {
    match reply_to {
        Some(id) => format!("{REPLY_MARKER}{id}\n{text}"),
        None => text.to_owned(),
    }
}

/// Splits a message text into the message it replies to (if any) and the text shown. A
/// malformed marker is left in the text (nothing is silently dropped).
pub fn split_reply(text: &str) -> (Option<MsgId>, &str) {
    let Some(rest) = text.strip_prefix(REPLY_MARKER) else {
        return (None, text);
    };
    let Some((id, shown)) = rest.split_once('\n') else {
        return (None, text);
    };
    match id.parse::<MsgId>() {
        Ok(id) => (Some(id), shown),
        Err(_) => (None, text),
    }
}

/// Why an emoji is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmojiError {
    /// Nothing to react with.
    #[error("an emoji is needed")]
    Empty,
    /// Over [`MAX_EMOJI`] bytes.
    #[error("an emoji has at most {MAX_EMOJI} bytes")]
    TooLong,
    /// Spaces or control characters.
    #[error("an emoji has no spaces or control characters")]
    Charset,
}

/// Checks a reaction's emoji: 1 to [`MAX_EMOJI`] bytes, no whitespace or control
/// characters (a zero-width joiner is neither, so family and flag emoji pass).
pub fn check_emoji(emoji: &str) -> Result<(), EmojiError> {
    if emoji.is_empty() {
        return Err(EmojiError::Empty);
    }
    if emoji.len() > MAX_EMOJI {
        return Err(EmojiError::TooLong);
    }
    if emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EmojiError::Charset);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_round_trips_and_plain_text_is_untouched() {
        let t = wrap_reply(Some(42), "yes\nand more");
        assert_eq!(split_reply(&t), (Some(42), "yes\nand more"));
        assert_eq!(split_reply("plain"), (None, "plain"));
        assert_eq!(wrap_reply(None, "plain"), "plain");
        let bad = format!("{REPLY_MARKER}x\nhi");
        assert_eq!(split_reply(&bad), (None, bad.as_str()));
    }

    #[test]
    fn emoji_rules() {
        assert_eq!(check_emoji("👍"), Ok(()));
        assert_eq!(check_emoji("👨‍👩‍👧"), Ok(()));
        assert_eq!(check_emoji(""), Err(EmojiError::Empty));
        assert_eq!(check_emoji("a b"), Err(EmojiError::Charset));
        assert_eq!(check_emoji("\u{7}"), Err(EmojiError::Charset));
        assert_eq!(check_emoji(&"x".repeat(33)), Err(EmojiError::TooLong));
    }

    #[test]
    fn edit_seal_ids_differ_per_message() {
        assert_ne!(edit_seal_id(1), edit_seal_id(2));
    }
}
