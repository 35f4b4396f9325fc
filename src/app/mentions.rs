//! `@name` mentions: finding the tokens in a message's text and resolving them to members.
//!
//! The same rules run on the server (for `#general` and rooms, whose text it reads) and on
//! the client (for private conversations, after decryption: the server never sees those
//! words). A token is `@` followed by name characters (letters, digits, `_`, `-`, `.`), at
//! the start of the text or after a character that cannot be part of a name, so an e-mail
//! address (`bob@example.org`) mentions no one. A token matches a member when their
//! look-alike skeletons agree ([`skeleton_of`]: case, separators and confusable digits
//! folded), the rule that keeps account names apart in the store; a trailing `.` or `-` (the
//! end of a sentence) is dropped when the whole token matches no one.

use crate::app::ids::skeleton_of;

/// Whether `c` can be part of a user name.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// The `@name` tokens of `text`, without the `@`, in order (duplicates kept).
pub fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        if c == '@' && !prev.is_some_and(|p| name_char(p) || p == '@') {
            let rest = &text[i + 1..];
            let end = rest.find(|c: char| !name_char(c)).unwrap_or(rest.len());
            if end > 0 {
                out.push(&rest[..end]);
            }
        }
        prev = Some(c);
    }
    out
}

/// The members `text` mentions, each once, in order of first mention: `member` answers a
/// candidate token with the member's name as registered, or `None` if no member matches.
pub fn resolve(text: &str, mut member: impl FnMut(&str) -> Option<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for token in tokens(text) {
        let trimmed = token.trim_end_matches(['.', '-']);
        let found = member(token).or_else(|| {
            (trimmed != token && !trimmed.is_empty())
                .then(|| member(trimmed))
                .flatten()
        });
        if let Some(name) = found
            && !out.iter().any(|n| n.eq_ignore_ascii_case(&name))
        {
            out.push(name);
        }
    }
    out
}

/// Resolves `text` against a known list of member names (a room's members, the two of a
/// private conversation), matching by look-alike skeleton.
pub fn resolve_among<'a>(text: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    if !text.contains('@') {
        return Vec::new();
    }
    let names: Vec<(String, &str)> = names.into_iter().map(|n| (skeleton_of(n), n)).collect();
    resolve(text, |token| {
        let skeleton = skeleton_of(token);
        names
            .iter()
            .find(|(s, _)| *s == skeleton)
            .map(|(_, n)| (*n).to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_start_at_a_word_boundary() {
        assert_eq!(
            tokens("@bob hi @Carol, and @dave."),
            ["bob", "Carol", "dave."]
        );
        assert_eq!(
            tokens("mail bob@example.org or @@x or @ alone"),
            Vec::<&str>::new()
        );
        assert_eq!(tokens("(@ann)x@bo"), ["ann"]);
        assert_eq!(tokens("ünï@x @é"), ["x"]);
    }

    #[test]
    fn names_resolve_by_skeleton_once_each_and_in_order() {
        let members = ["Bob", "carol", "d.ave"];
        assert_eq!(
            resolve_among("@BOB @carol. @b0b @dave @nobody", members),
            ["Bob", "carol", "d.ave"]
        );
        assert_eq!(
            resolve_among("no mention here", members),
            Vec::<String>::new()
        );
        assert_eq!(
            resolve_among("bob@example.org", members),
            Vec::<String>::new()
        );
    }
}
