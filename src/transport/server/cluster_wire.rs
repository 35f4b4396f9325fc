//! How a [`ClusterMsg`] travels between nodes: its NATS subject, and its payload — one
//! version byte, the sending node's instance id and node id, then the message in postcard.
//!
//! Subjects: `livewire.conv.<conv>` for events, `livewire.room.<room>` for room changes,
//! `livewire.user.<user>` for a user's deletes-for-me and receipts setting,
//! `livewire.read.<conv>` for read markers, `livewire.typing.<conv>` for typing notices,
//! `livewire.login` for failed logins,
//! `livewire.presence` for presence, rosters, hellos and byes. Every node subscribes to
//! `livewire.>` once (docs/SCALING.md says why not per conversation).

use crate::app::ids::ConvId;
use crate::app::server::ClusterMsg;

/// The payload's first byte. A node refuses other versions (a mixed-version cluster is
/// an upgrade in progress: its nodes ignore each other's fan-out, and their clients still
/// catch up from the store). New kinds of message are appended to [`ClusterMsg`], so the
/// old ones keep their bytes without a new version: a node older than a kind logs it as
/// undecodable and carries on (read markers and typing then stay on their node, as before).
pub const VERSION: u8 = 1;

/// The subject every node subscribes to.
pub const SUBSCRIBE_ALL: &str = "livewire.>";

/// A decoded payload.
#[derive(Debug, PartialEq)]
pub struct Envelope {
    /// The sender's instance id (random per process: a restarted node is a new one).
    pub origin: u64,
    /// The sender's node id (for logs; two nodes may share one by mistake).
    pub node_id: u8,
    /// The message.
    pub msg: ClusterMsg,
}

/// Why a payload was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    /// Not even the header.
    #[error("cluster payload of {0} bytes is too short")]
    Short(usize),
    /// Another version.
    #[error("cluster payload version {0}, this node speaks {VERSION}")]
    Version(u8),
    /// The body does not decode.
    #[error("cluster payload does not decode: {0}")]
    Body(String),
}

const HEADER: usize = 1 + 8 + 1;

/// Encodes a message of node (`origin`, `node_id`).
pub fn encode(origin: u64, node_id: u8, msg: &ClusterMsg) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    out.extend_from_slice(&origin.to_le_bytes());
    out.push(node_id);
    // Every field of `ClusterMsg` is serialisable into a Vec: this cannot fail.
    postcard::to_extend(msg, out).expect("postcard encodes into a Vec")
}

/// Decodes a payload from another node.
pub fn decode(bytes: &[u8]) -> Result<Envelope, WireError> {
    if bytes.len() < HEADER {
        return Err(WireError::Short(bytes.len()));
    }
    if bytes[0] != VERSION {
        return Err(WireError::Version(bytes[0]));
    }
    let origin = u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes"));
    let node_id = bytes[9];
    let msg = postcard::from_bytes(&bytes[HEADER..]).map_err(|e| WireError::Body(e.to_string()))?;
    Ok(Envelope {
        origin,
        node_id,
        msg,
    })
}

/// The subject a message is published on.
pub fn subject(msg: &ClusterMsg) -> String {
    match msg {
        ClusterMsg::Event { conv, .. } => format!("livewire.conv.{}", conv_token(conv)),
        ClusterMsg::Room { room, .. } => format!("livewire.room.{}", token(room)),
        ClusterMsg::Hidden { user, .. } => format!("livewire.user.{}", token(user)),
        ClusterMsg::LoginFailed { .. } => "livewire.login".into(),
        ClusterMsg::Read { conv, .. } => format!("livewire.read.{}", conv_token(conv)),
        ClusterMsg::Typing { conv, .. } => format!("livewire.typing.{}", conv_token(conv)),
        ClusterMsg::Receipts { user, .. } => format!("livewire.user.{}", token(user)),
        ClusterMsg::Presence { .. }
        | ClusterMsg::Roster { .. }
        | ClusterMsg::Hello
        | ClusterMsg::Bye => "livewire.presence".into(),
    }
}

fn conv_token(conv: &ConvId) -> String {
    match conv {
        ConvId::General => "general".into(),
        ConvId::Room(key) => format!("room-{}", token(key)),
        ConvId::Direct(a, b) => format!("dm-{}-{}", token(a), token(b)),
    }
}

/// One subject token: letters, digits and `_` as they are, any other byte as `~XX` (a
/// name may hold `.`, `*`, `>` or spaces, which NATS gives a meaning or refuses).
fn token(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("~{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ids::ClientMsgId;
    use crate::app::protocol::{ConvEvent, EventKind};

    fn event() -> ClusterMsg {
        ClusterMsg::Event {
            conv: ConvId::Room("#a.b c".into()),
            event: ConvEvent {
                seq: 7,
                id: 42,
                ts: 1,
                sender: "alice".into(),
                cmid: ClientMsgId([3; 16]),
                kind: EventKind::Message {
                    body: b"hi".to_vec(),
                },
                mentions: Vec::new(),
            },
        }
    }

    #[test]
    fn a_message_round_trips_with_its_origin() {
        let bytes = encode(0xfeed, 3, &event());
        let env = decode(&bytes).unwrap();
        assert_eq!(env.origin, 0xfeed);
        assert_eq!(env.node_id, 3);
        assert_eq!(env.msg, event());
    }

    #[test]
    fn garbage_other_versions_and_truncation_are_refused() {
        let bytes = encode(1, 1, &event());
        assert_eq!(decode(&bytes[..5]), Err(WireError::Short(5)));
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(decode(&v2), Err(WireError::Version(2)));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 1]),
            Err(WireError::Body(_))
        ));
        assert!(decode(&[VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]).is_err());
    }

    #[test]
    fn subjects_are_single_safe_tokens() {
        assert_eq!(subject(&event()), "livewire.conv.room-~23a~2eb~20c");
        let dm = ClusterMsg::Event {
            conv: ConvId::Direct("a*".into(), "b>".into()),
            event: match event() {
                ClusterMsg::Event { event, .. } => event,
                _ => unreachable!(),
            },
        };
        assert_eq!(subject(&dm), "livewire.conv.dm-a~2a-b~3e");
        assert_eq!(subject(&ClusterMsg::Hello), "livewire.presence");
    }

    #[test]
    fn read_state_variants_are_appended_and_old_encodings_stay() {
        // Variant indexes 0..=7 are what nodes of this version already exchange: the
        // read-state variants come after them, so those bytes never change.
        let body = |m: &ClusterMsg| encode(9, 9, m)[HEADER..].to_vec();
        assert_eq!(body(&ClusterMsg::Hello), [3]);
        assert_eq!(body(&ClusterMsg::Bye), [4]);
        let dm = ConvId::Direct("alice".into(), "bob".into());
        let read = ClusterMsg::Read {
            user: "alice".into(),
            name: "Alice".into(),
            conv: dm.clone(),
            upto: 300,
        };
        let typing = ClusterMsg::Typing {
            user: "bob".into(),
            name: "Bob".into(),
            conv: ConvId::Room("#r.s".into()),
        };
        let receipts = ClusterMsg::Receipts {
            user: "alice".into(),
            on: false,
        };
        assert_eq!(body(&read)[0], 8);
        assert_eq!(body(&typing)[0], 9);
        assert_eq!(body(&receipts)[0], 10);
        for m in [&read, &typing, &receipts] {
            assert_eq!(&decode(&encode(1, 2, m)).unwrap().msg, m);
        }
        assert_eq!(subject(&read), "livewire.read.dm-alice-bob");
        assert_eq!(subject(&typing), "livewire.typing.room-~23r~2es");
        assert_eq!(subject(&receipts), "livewire.user.alice");
    }
}
