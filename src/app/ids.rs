//! Names and identifiers: usernames, conversations, message ids.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The one broadcast room every user is in.
pub const GENERAL: &str = "#general";

/// Server-assigned message id, unique across the server.
pub type MsgId = u64;
/// Per-conversation sequence number (1, 2, 3, … with no gaps).
pub type Seq = u64;

/// Names nobody may register: they would let a user pass for the operator.
pub const RESERVED_NAMES: &[&str] = &["server", "admin", "root", "livewire", "system"];

/// Why a username was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty or longer than 32 characters.
    #[error("a username has 1 to 32 characters")]
    Length,
    /// A character outside letters, digits, `_`, `-` and `.`.
    #[error("a username may only contain letters, digits, '_', '-' and '.'")]
    Charset,
    /// Only separators (`_`, `-`, `.`): nothing a person could tell apart.
    #[error("a username needs at least one letter or digit")]
    NoLetter,
    /// One of [`RESERVED_NAMES`], or a look-alike of one.
    #[error("that username is reserved")]
    Reserved,
}

/// A valid username as its owner spelled it at registration.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserName(String);

impl UserName {
    /// Validates a name: 1–32 ASCII letters, digits, `_ - .`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_name(s)?;
        Ok(Self(s.to_owned()))
    }

    /// Like [`UserName::parse`], and also refuses reserved names and their look-alikes
    /// (`Admin.`, `r00t`) for registration: the same [`skeleton`] decides both.
    ///
    /// [`skeleton`]: UserName::skeleton
    pub fn parse_new(s: &str) -> Result<Self, NameError> {
        let name = Self::parse(s)?;
        check_has_letter(s)?;
        let skeleton = name.skeleton();
        if RESERVED_NAMES.iter().any(|r| skeleton_of(r) == skeleton) {
            return Err(NameError::Reserved);
        }
        Ok(name)
    }

    /// The name as spelled.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive key that makes a name unique.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// The look-alike "skeleton" that makes a name unique among registrations: see
    /// [`skeleton_of`].
    pub fn skeleton(&self) -> String {
        skeleton_of(&self.0)
    }
}

/// The rules every name follows (users, and rooms after their `#`): 1–32 ASCII letters,
/// digits, `_ - .`.
pub fn check_name(s: &str) -> Result<(), NameError> {
    if s.is_empty() || s.chars().count() > 32 {
        return Err(NameError::Length);
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(NameError::Charset);
    }
    Ok(())
}

/// A new name needs at least one letter or digit (`...` tells nobody apart).
pub fn check_has_letter(s: &str) -> Result<(), NameError> {
    if s.chars().any(|c| c.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(NameError::NoLetter)
    }
}

/// Folds a name to the form two look-alike names share, in the spirit of Unicode's
/// confusable skeletons (UTS #39) for the ASCII names LiveWire allows: case is ignored,
/// separators (`.` `-` `_`) are dropped, and characters that read alike are mapped
/// together (`0`/`o`, `1`/`l`/`i`/`I`, `5`/`s`, `rn`/`m`, `vv`/`w`). So `AIice`, `ali.ce`
/// and `a1ice` cannot be registered next to `alice`, nor `Admin.` next to the reserved
/// `admin`.
pub fn skeleton_of(name: &str) -> String {
    let folded: String = name
        .chars()
        .filter(|c| !matches!(c, '.' | '-' | '_'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    folded
        .replace("rn", "m")
        .replace("vv", "w")
        .chars()
        .map(|c| match c {
            '0' => 'o',
            '1' | 'i' => 'l',
            '5' => 's',
            c => c,
        })
        .collect()
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A conversation: the shared room, a private conversation between two users, or a room
/// users created.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConvId {
    /// `#general`, which every user is in.
    General,
    /// A private conversation, by the two users' keys in sorted order.
    Direct(String, String),
    /// A room created by a user, by its key (`#design`: `#` and the lowercase name; see
    /// [`crate::app::rooms`]). Who is a member is the server's room state, not the id.
    Room(String),
}

impl ConvId {
    /// The private conversation between two users (order does not matter).
    pub fn direct(a: &UserName, b: &UserName) -> Self {
        let (a, b) = (a.key(), b.key());
        if a <= b {
            ConvId::Direct(a, b)
        } else {
            ConvId::Direct(b, a)
        }
    }

    /// Whether the user (by key) is a member, as far as the id tells: always for
    /// `#general`, the two users of a private conversation, and never for a room (whose
    /// members only the server's room state knows).
    pub fn has_member(&self, key: &str) -> bool {
        match self {
            ConvId::General => true,
            ConvId::Direct(a, b) => a == key || b == key,
            ConvId::Room(_) => false,
        }
    }

    /// Whether the server reads this conversation's bodies (`#general` and rooms) rather
    /// than relaying end-to-end ciphertext (private conversations).
    pub fn server_readable(&self) -> bool {
        !matches!(self, ConvId::Direct(..))
    }

    /// For a private conversation, the member who is not `me_key`.
    pub fn peer_of(&self, me_key: &str) -> Option<&str> {
        match self {
            ConvId::General | ConvId::Room(_) => None,
            ConvId::Direct(a, b) if a == me_key => Some(b),
            ConvId::Direct(a, _) => Some(a),
        }
    }

    /// A stable string form, used as a storage key and in the AAD of envelopes.
    pub fn storage_key(&self) -> String {
        match self {
            ConvId::General => GENERAL.to_owned(),
            ConvId::Direct(a, b) => format!("dm:{a}:{b}"),
            ConvId::Room(key) => key.clone(),
        }
    }

    /// Parses [`ConvId::storage_key`] output.
    pub fn from_storage_key(s: &str) -> Option<Self> {
        if s == GENERAL {
            return Some(ConvId::General);
        }
        if s.starts_with('#') {
            return Some(ConvId::Room(s.to_owned()));
        }
        let rest = s.strip_prefix("dm:")?;
        let (a, b) = rest.split_once(':')?;
        Some(ConvId::Direct(a.to_owned(), b.to_owned()))
    }

    /// How a user sees this conversation: `#general`, `#room` or `@peer`.
    pub fn label_for(&self, me_key: &str) -> String {
        match self {
            ConvId::General => GENERAL.to_owned(),
            ConvId::Room(key) => key.clone(),
            ConvId::Direct(..) => format!("@{}", self.peer_of(me_key).unwrap_or_default()),
        }
    }
}

/// The sending client's own id for a message: random, 128 bits, so a resend is recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientMsgId(pub [u8; 16]);

impl fmt::Display for ClientMsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Identifies one connection inside the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(UserName::parse("alice_1.x-y").is_ok());
        assert_eq!(UserName::parse(""), Err(NameError::Length));
        assert_eq!(UserName::parse(&"a".repeat(33)), Err(NameError::Length));
        assert_eq!(UserName::parse("al ice"), Err(NameError::Charset));
        assert_eq!(UserName::parse("élan"), Err(NameError::Charset));
        assert_eq!(UserName::parse_new("Admin"), Err(NameError::Reserved));
        assert!(UserName::parse("Admin").is_ok());
        assert_eq!(UserName::parse_new("._-"), Err(NameError::NoLetter));
    }

    #[test]
    fn reserved_lookalikes_are_refused() {
        for n in [
            "Admin.", "ad-min", "_root_", "r00t", "SERVER", "sys.tem", "Iivewire",
        ] {
            assert_eq!(UserName::parse_new(n), Err(NameError::Reserved), "{n}");
        }
        assert!(UserName::parse_new("administrator").is_ok());
    }

    #[test]
    fn case_and_lookalikes_fold_together() {
        let a = UserName::parse("alice").unwrap();
        assert_eq!(UserName::parse("ALICE").unwrap().key(), a.key());
        assert_eq!(UserName::parse("AIice").unwrap().skeleton(), a.skeleton());
        assert_eq!(UserName::parse("a1ice").unwrap().skeleton(), a.skeleton());
        for n in ["ali.ce", "ali-ce", "_alice_", "A.L.I.C.E"] {
            assert_eq!(UserName::parse(n).unwrap().skeleton(), a.skeleton(), "{n}");
        }
        assert_eq!(skeleton_of("vvendy"), skeleton_of("wendy"));
        assert_ne!(UserName::parse("bob").unwrap().skeleton(), a.skeleton());
    }

    #[test]
    fn direct_conversations_are_symmetric() {
        let a = UserName::parse("Alice").unwrap();
        let b = UserName::parse("bob").unwrap();
        let c = ConvId::direct(&a, &b);
        assert_eq!(c, ConvId::direct(&b, &a));
        assert_eq!(c.label_for("alice"), "@bob");
        assert_eq!(c.label_for("bob"), "@alice");
        assert!(!c.has_member("carol"));
        assert_eq!(ConvId::from_storage_key(&c.storage_key()), Some(c));
        assert_eq!(ConvId::from_storage_key(GENERAL), Some(ConvId::General));
        let room = ConvId::Room("#design".into());
        assert_eq!(ConvId::from_storage_key("#design"), Some(room.clone()));
        assert_eq!(room.label_for("bob"), "#design");
        assert!(!room.has_member("bob") && room.server_readable());
    }
}
