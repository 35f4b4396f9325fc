//! Words for a person from the errors the client reports, like Fractal's
//! `user_facing_error.rs`: one place decides what a user reads for each error.

use crate::app::ids::NameError;
use crate::app::protocol::ErrorCode;
use crate::gui::i18n::{gettext, gettext_with};
use crate::transport::client::Fatal;

/// What to tell the user about a server or client error with this code. The words come
/// from the code; `message` only fills in details (the server's limit, the name it did not
/// find), and is shown as it is for codes without words of their own.
pub fn user_facing(code: ErrorCode, message: &str) -> String {
    match code {
        ErrorCode::RateLimited => {
            gettext("You are sending messages too fast. Wait a moment and try again.")
        }
        ErrorCode::TooLarge => gettext_with(
            "That message is too long ({message}).",
            &[("message", &message)],
        ),
        ErrorCode::UnknownUser => gettext_with(
            "There is no such user. ({message})",
            &[("message", &message)],
        ),
        ErrorCode::NotAuthor => gettext("Only the author of a message can delete it for everyone."),
        ErrorCode::DeleteWindowExpired => gettext(
            "That message is too old to be deleted for everyone; you can still delete it for yourself.",
        ),
        ErrorCode::NotFound => gettext("That message no longer exists."),
        ErrorCode::Internal => gettext_with(
            "The server had a problem and changed nothing: {message}",
            &[("message", &message)],
        ),
        ErrorCode::ServerFull => gettext(
            "The server is out of storage space, so that was not sent. Reading still works; try again later.",
        ),
        ErrorCode::QuotaExceeded => gettext_with(
            "You have no storage space left on this server: {message}",
            &[("message", &message)],
        ),
        ErrorCode::Exists => gettext_with(
            "That file already exists: {message}",
            &[("message", &message)],
        ),
        ErrorCode::NotMember => gettext_with(
            "You are not a member of that room. ({message})",
            &[("message", &message)],
        ),
        ErrorCode::NotAllowed => gettext_with(
            "Your role in that room does not allow that. ({message})",
            &[("message", &message)],
        ),
        ErrorCode::Banned => gettext("You are banned from that room."),
        ErrorCode::RoomExists => gettext(
            "A room with that name (or one that looks the same) already exists. Pick another name, or find it with Browse.",
        ),
        ErrorCode::NoSuchRoom => gettext_with(
            "There is no such room. ({message})",
            &[("message", &message)],
        ),
        ErrorCode::NotInvited => {
            gettext("That room is invite-only: ask one of its members for an invitation.")
        }
        ErrorCode::AlreadyMember => gettext("You are already in that room."),
        // The rest (and codes a newer server may add) explain themselves in `message`.
        _ => sentence(message),
    }
}

/// Why a name cannot be a room's name, in words (the name rules are the user names').
pub fn room_name_problem(e: &NameError) -> String {
    match e {
        NameError::Length => gettext("a room name has 1 to 32 characters after the “#”"),
        NameError::Charset => gettext("use only letters, digits, “_”, “-” and “.” after the “#”"),
        NameError::NoLetter => gettext("a room name needs at least one letter or digit"),
        NameError::Reserved => gettext("that name belongs to the server's own room"),
    }
}

/// `message` with a capital first letter.
fn sentence(message: &str) -> String {
    let mut m = message.to_owned();
    if let Some(first) = m.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    m
}

/// What to tell the user when a session ends for good, and whether it is a security
/// warning (shown in red).
pub fn user_facing_fatal(f: &Fatal) -> (String, bool) {
    match f {
        Fatal::LoginRefused(msg) => (
            gettext_with(
                "The server refused to sign you in: {msg}. Check your username and password; a new username is registered with the password you give on its first sign-in.",
                &[("msg", &msg)],
            ),
            false,
        ),
        Fatal::UnknownServer {
            server,
            fingerprint,
        } => (
            gettext_with(
                "{server} is not a known server (certificate {fingerprint}).",
                &[("server", &server), ("fingerprint", &fingerprint)],
            ),
            false,
        ),
        Fatal::CertMismatch {
            server,
            expected,
            got,
            pin_file,
        } => (
            gettext_with(
                "⚠ The identity of {server} has changed!\n\nSomeone may be intercepting your connection, so LiveWire did not connect.\n\nKnown fingerprint:\n{expected}\n\nPresented now:\n{got}\n\nIf the server's operator confirms the certificate really changed, remove the line for {server} from {pin_file} and connect again.",
                &[
                    ("server", &server),
                    ("expected", &expected),
                    ("got", &got),
                    ("pin_file", &pin_file),
                ],
            ),
            true,
        ),
        Fatal::Connection(msg) => (
            gettext_with(
                "Could not connect: {msg}.\nCheck the server address and port, and that the server is running.",
                &[("msg", &msg)],
            ),
            false,
        ),
        Fatal::Config(msg) => (
            gettext_with("A local settings problem: {msg}.", &[("msg", &msg)]),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_come_from_the_code() {
        assert!(user_facing(ErrorCode::RateLimited, "slow down").contains("too fast"));
        assert!(user_facing(ErrorCode::UnknownUser, "no user named x").contains("no such user"));
        assert_eq!(
            user_facing(ErrorCode::BadRequest, "empty message"),
            "Empty message"
        );
        assert!(user_facing(ErrorCode::RoomExists, "#design").contains("already exists"));
        assert!(room_name_problem(&NameError::Reserved).contains("server's own room"));
    }
}
