//! File transfer semantics without I/O: the file message's metadata, chunk arithmetic and
//! the name a stored file gets. See "Files" in docs/PROTOCOL.md.
//!
//! A file is a message: its text is [`MARKER`] followed by the JSON of a [`FileInfo`], so it
//! is sealed, sequenced, acknowledged, caught up on and deleted like any other message (end
//! to end in private conversations). The bytes travel on their own QUIC stream per
//! transfer, in chunks of [`CHUNK`] plaintext bytes, and the file id is the file message's
//! client message id, which lets the server erase the stored bytes when the message is
//! deleted for everyone, even in a private conversation whose text it cannot read.
//!
//! In an end-to-end conversation (a direct message, a private room) the sender draws a
//! fresh 256-bit key per file and seals every chunk with it; the key travels in the
//! [`FileInfo`] (`key`), i.e. inside the file message, which the conversation's
//! end-to-end layer (MLS) encrypts. The server stores and relays the sealed chunks only.
//! A file message without a key is a file of the first release: `#general`'s and public
//! rooms' files are kept in plaintext by the server, a direct message's were sealed with
//! the two users' long-term identity keys ([`Layout`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ids::{ClientMsgId, ConvId};
use super::protocol::E2E_OVERHEAD;

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
/// What a chunk sealed with a session key adds (nonce and tag).
pub const SESSION_OVERHEAD: usize = 12 + 16;
/// Prefix of a file message's text.
pub const MARKER: &str = "\u{1}lwfile1 ";

/// Whether a stored body is a file message (search leaves these out: the text is a file
/// description).
pub fn is_file_body(body: &[u8]) -> bool {
    body.starts_with(MARKER.as_bytes())
}

/// Default server limit on a file's size.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 100 * 1024 * 1024;
/// Default storage quota per user: ten files of the largest size.
pub const DEFAULT_QUOTA_PER_USER: u64 = 1024 * 1024 * 1024;
/// Longest file name kept (longer ones are cut).
pub const MAX_NAME: usize = 255;

/// What a file message says about its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// File id: hex of the file message's client message id.
    pub id: String,
    /// File name (no directories).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type guessed from the name.
    pub mime: String,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Hex of the file's own 256-bit key, in end-to-end conversations: every chunk is
    /// sealed with it. Absent in `#general` and public rooms (the server keeps those files
    /// readable) and in file messages of the first release (sealed with identity keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl FileInfo {
    /// The message text that carries this metadata.
    pub fn to_text(&self) -> String {
        format!(
            "{MARKER}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// The metadata in a message text, if it is a file message.
    pub fn parse(text: &str) -> Option<FileInfo> {
        let info: FileInfo = serde_json::from_str(text.strip_prefix(MARKER)?).ok()?;
        let key_ok = info
            .key
            .as_deref()
            .is_none_or(|k| key_from_hex(k).is_some());
        (file_id_from_hex(&info.id).is_some() && info.sha256.len() == 64 && key_ok).then_some(info)
    }

    /// The file's own key, if it has one (see [`FileInfo::key`]).
    pub fn file_key(&self) -> Option<[u8; 32]> {
        self.key.as_deref().and_then(key_from_hex)
    }

    /// How the server stores this file's chunks.
    pub fn layout(&self, conv: &ConvId) -> Layout {
        Layout::of(conv, self.key.is_some())
    }

    /// What a person sees in place of the marker text.
    pub fn display(&self) -> String {
        format!("📎 {} ({})", self.name, human_size(self.size))
    }

    /// The file id as the client message id it is.
    pub fn file_id(&self) -> Option<ClientMsgId> {
        file_id_from_hex(&self.id).map(ClientMsgId)
    }
}

/// For an event's text: `(shown text, file metadata)`.
pub fn split_text(text: String) -> (String, Option<FileInfo>) {
    match FileInfo::parse(&text) {
        Some(info) => (info.display(), Some(info)),
        None => (text, None),
    }
}

/// Parses a 32-hex-digit file id.
pub fn file_id_from_hex(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Parses a 64-hex-digit file key.
pub fn key_from_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// `1.5 MiB`-style sizes.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Number of chunks of a file of `size` bytes.
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK as u64)
}

/// Plaintext length of chunk `index` of a file of `size` bytes.
pub fn chunk_len(size: u64, index: u64) -> usize {
    let start = index.saturating_mul(CHUNK as u64);
    size.saturating_sub(start).min(CHUNK as u64) as usize
}

/// What a chunk sealed with the file's own key adds: a random nonce and the tag.
pub const KEYED_OVERHEAD: usize = 12 + 16;

/// How a stored file's chunks look, which fixes the bytes the server keeps per chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `#general` and public rooms: the server opens the session envelope and keeps the
    /// plaintext, as it does for those conversations' messages.
    Plain,
    /// A direct message's file of the first release: the end-to-end envelope of the two
    /// users' identity keys.
    Identity,
    /// A file sealed with its own key (end-to-end conversations): nonce, ciphertext, tag.
    Keyed,
}

impl Layout {
    /// The layout of a file of `conv`, sealed with its own key or not.
    pub fn of(conv: &ConvId, keyed: bool) -> Self {
        match (keyed, conv) {
            (true, _) => Layout::Keyed,
            (false, ConvId::General | ConvId::Room(_)) => Layout::Plain,
            (false, ConvId::Direct(..)) => Layout::Identity,
        }
    }

    /// Bytes the server stores per chunk beyond the plaintext.
    pub fn overhead(self) -> usize {
        match self {
            Layout::Plain => 0,
            Layout::Identity => E2E_OVERHEAD,
            Layout::Keyed => KEYED_OVERHEAD,
        }
    }
}

/// Stored length of the first `chunks` chunks of a file of `size` bytes.
pub fn stored_len(layout: Layout, size: u64, chunks: u64) -> u64 {
    let full = chunks.min(chunk_count(size));
    let plain = (full * CHUNK as u64).min(size);
    plain + full * layout.overhead() as u64
}

/// The AAD of chunk `index` of `file` sealed with the file's own key: a label, the file
/// id and the index, so a chunk cannot be moved within its file or to another file.
pub fn keyed_chunk_aad(file: &ClientMsgId, index: u64) -> Vec<u8> {
    let mut aad = b"livewire/1 file key chunk\0".to_vec();
    aad.extend_from_slice(&file.0);
    aad.extend_from_slice(&index.to_be_bytes());
    aad
}

/// The stored file's name in the server's `files/` directory: a hash of conversation,
/// uploader and file id, so the path says nothing and a download names all three.
pub fn stored_name(conv: &ConvId, uploader: &str, file: &ClientMsgId) -> String {
    let mut h = Sha256::new();
    h.update(b"livewire/1 file\0");
    h.update(conv.storage_key().as_bytes());
    h.update([0]);
    h.update(uploader.to_ascii_lowercase().as_bytes());
    h.update([0]);
    h.update(file.0);
    let d = h.finalize();
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The message id that binds chunk `index` of `file` in an envelope's AAD (a hash with its
/// own label, so it can never equal a message's id).
pub fn chunk_aad_id(file: &ClientMsgId, index: u64) -> ClientMsgId {
    let mut h = Sha256::new();
    h.update(b"livewire/1 file chunk\0");
    h.update(file.0);
    h.update(index.to_be_bytes());
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    ClientMsgId(id)
}

/// A MIME type from the file name's extension.
pub fn guess_mime(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" | "md" => "text/plain",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp3" => "audio/mpeg",
        "ogg" | "opus" => "audio/ogg",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

/// A file name safe to show and store in metadata: the last path component, no control
/// characters, at most [`MAX_NAME`] bytes.
pub fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out: String = base.chars().filter(|c| !c.is_control()).collect();
    while out.len() > MAX_NAME {
        out.pop();
    }
    if out.is_empty() || out == "." || out == ".." {
        "file".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_display() {
        let info = FileInfo {
            id: "00112233445566778899aabbccddeeff".into(),
            name: "a.txt".into(),
            size: 1536,
            mime: "text/plain".into(),
            sha256: "0".repeat(64),
            key: None,
        };
        let text = info.to_text();
        assert_eq!(FileInfo::parse(&text), Some(info.clone()));
        assert_eq!(FileInfo::parse("hello"), None);
        assert_eq!(FileInfo::parse(&format!("{MARKER}{{}}")), None);
        assert_eq!(info.display(), "📎 a.txt (1.5 KiB)");
        assert_eq!(split_text(text).1, Some(info.clone()));
        assert!(
            !info.to_text().contains("key"),
            "no key field without a key"
        );
        // With a key: it round-trips; a malformed key makes it no file message.
        let keyed = FileInfo {
            key: Some("ab".repeat(32)),
            ..info.clone()
        };
        assert_eq!(FileInfo::parse(&keyed.to_text()), Some(keyed.clone()));
        assert_eq!(keyed.file_key(), Some([0xab; 32]));
        let bad = FileInfo {
            key: Some("zz".repeat(32)),
            ..info
        };
        assert_eq!(FileInfo::parse(&bad.to_text()), None);
    }

    #[test]
    fn chunk_arithmetic() {
        let c = CHUNK as u64;
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(c), 1);
        assert_eq!(chunk_count(c + 1), 2);
        assert_eq!(chunk_len(c + 1, 0), CHUNK);
        assert_eq!(chunk_len(c + 1, 1), 1);
        assert_eq!(chunk_len(c + 1, 2), 0);
        let dm = ConvId::Direct("a".into(), "b".into());
        let plain = Layout::of(&ConvId::General, false);
        let identity = Layout::of(&dm, false);
        assert_eq!(plain, Layout::Plain);
        assert_eq!(Layout::of(&ConvId::Room("r".into()), true), Layout::Keyed);
        assert_eq!(stored_len(plain, c + 1, 2), c + 1);
        assert_eq!(stored_len(identity, c + 1, 1), c + E2E_OVERHEAD as u64);
        assert_eq!(
            stored_len(identity, c + 1, 9),
            c + 1 + 2 * E2E_OVERHEAD as u64
        );
        let keyed = Layout::of(&dm, true);
        assert_eq!(
            stored_len(keyed, c + 1, 9),
            c + 1 + 2 * KEYED_OVERHEAD as u64
        );
    }

    #[test]
    fn names_and_ids() {
        assert_eq!(clean_name("/etc/passwd"), "passwd");
        assert_eq!(clean_name("..\\x\u{7}y"), "xy");
        assert_eq!(clean_name(""), "file");
        assert_eq!(guess_mime("A.PNG"), "image/png");
        let f = ClientMsgId([1; 16]);
        assert_ne!(chunk_aad_id(&f, 0), chunk_aad_id(&f, 1));
        assert_ne!(keyed_chunk_aad(&f, 0), keyed_chunk_aad(&f, 1));
        assert_ne!(
            keyed_chunk_aad(&f, 0),
            keyed_chunk_aad(&ClientMsgId([2; 16]), 0)
        );
        assert_ne!(
            stored_name(&ConvId::General, "a", &f),
            stored_name(&ConvId::General, "b", &f)
        );
    }
}
