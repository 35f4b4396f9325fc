//! Words for a person from the errors the client reports, like Fractal's
//! `user_facing_error.rs`: one place decides what a user reads for each error.

use crate::app::ids::NameError;
use crate::app::protocol::ErrorCode;
use crate::transport::client::Fatal;

/// What to tell the user about a server or client error with this code. The words come
/// from the code; `message` only fills in details (the server's limit, the name it did not
/// find), and is shown as it is for codes without words of their own.
pub fn user_facing(code: ErrorCode, message: &str) -> String {
    match code {
        ErrorCode::RateLimited => {
            "You are sending messages too fast. Wait a moment and try again.".into()
        }
        ErrorCode::TooLarge => format!("That message is too long ({message})."),
        ErrorCode::UnknownUser => format!("There is no such user. ({message})"),
        ErrorCode::NotAuthor => "Only the author of a message can delete it for everyone.".into(),
        ErrorCode::DeleteWindowExpired => {
            "That message is too old to be deleted for everyone; you can still delete it for yourself."
                .into()
        }
        ErrorCode::NotFound => "That message no longer exists.".into(),
        ErrorCode::Internal => format!("The server had a problem and changed nothing: {message}"),
        ErrorCode::ServerFull => {
            "The server is out of storage space, so that was not sent. Reading still works; try again later."
                .into()
        }
        ErrorCode::QuotaExceeded => format!("You have no storage space left on this server: {message}"),
        ErrorCode::Exists => format!("That file already exists: {message}"),
        ErrorCode::NotMember => format!("You are not a member of that room. ({message})"),
        ErrorCode::NotAllowed => {
            format!("Your role in that room does not allow that. ({message})")
        }
        ErrorCode::Banned => "You are banned from that room.".into(),
        ErrorCode::RoomExists => {
            "A room with that name (or one that looks the same) already exists. Pick another name, or find it with Browse."
                .into()
        }
        ErrorCode::NoSuchRoom => format!("There is no such room. ({message})"),
        ErrorCode::NotInvited => {
            "That room is invite-only: ask one of its members for an invitation.".into()
        }
        ErrorCode::AlreadyMember => "You are already in that room.".into(),
        // The rest (and codes a newer server may add) explain themselves in `message`.
        _ => sentence(message),
    }
}

/// Why a name cannot be a room's name, in words (the name rules are the user names').
pub fn room_name_problem(e: &NameError) -> &'static str {
    match e {
        NameError::Length => "a room name has 1 to 32 characters after the “#”",
        NameError::Charset => "use only letters, digits, “_”, “-” and “.” after the “#”",
        NameError::NoLetter => "a room name needs at least one letter or digit",
        NameError::Reserved => "that name belongs to the server's own room",
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
            format!(
                "The server refused to sign you in: {msg}. Check your username and password; a new username is registered with the password you give on its first sign-in."
            ),
            false,
        ),
        Fatal::UnknownServer {
            server,
            fingerprint,
        } => (
            format!("{server} is not a known server (certificate {fingerprint})."),
            false,
        ),
        Fatal::CertMismatch {
            server,
            expected,
            got,
            pin_file,
        } => (
            format!(
                "⚠ The identity of {server} has changed!\n\nSomeone may be intercepting your connection, so LiveWire did not connect.\n\nKnown fingerprint:\n{expected}\n\nPresented now:\n{got}\n\nIf the server's operator confirms the certificate really changed, remove the line for {server} from {pin_file} and connect again."
            ),
            true,
        ),
        Fatal::Connection(msg) => (
            format!(
                "Could not connect: {msg}.\nCheck the server address and port, and that the server is running."
            ),
            false,
        ),
        Fatal::Config(msg) => (format!("A local settings problem: {msg}."), false),
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
