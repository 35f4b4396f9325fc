//! Full-text search in PostgreSQL: a stored generated `tsvector` column of `events` with a
//! GIN index, so every writer (a send, an erase, an edit) keeps it in step without knowing
//! it exists, and the migration indexes the rows already stored.
//!
//! Words follow `crate::app::search`, like SQLite's FTS5 index: the text is split on
//! everything that is not a letter or digit (`[^[:alnum:]]`, which follows the database's
//! ctype locale for non-ASCII letters) before the `simple` configuration lowercases each
//! word; splitting first keeps PostgreSQL's parser from reading `host.name`, `a/b` or
//! `me@x.org` as single tokens. (`convert_from` gives its text the `C` collation, whose
//! classes know only ASCII letters: hence `COLLATE "default"`; a database created with
//! the `C` locale still splits words at non-ASCII letters.) Only `#general` and rooms are indexed (private
//! conversations are ciphertext), never file messages; an erased body indexes as nothing.
//! (`convert_from` is only stable, so the wrapper function that the generated column needs
//! is declared immutable: the server's encoding, UTF-8, never changes under it.)

use super::{Conn, Res, big, row_event};
use crate::app::ids::ConvId;
use crate::app::search::{SearchQuery, SearchScope};
use crate::app::store::StoredEvent;

/// The migration: the function, the generated column and its index.
pub(super) const MIGRATION: &str = r#"
    CREATE FUNCTION livewire_search_vector(conv TEXT, kind BIGINT, body BYTEA)
    RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE
            WHEN kind IN (0, 3) AND left(conv, 1) = '#' AND body IS NOT NULL
                 AND substring(body FROM 1 FOR 8) <> '\x016c7766696c6531'::bytea
            THEN to_tsvector('simple'::regconfig,
                 regexp_replace(convert_from(body, 'UTF8') COLLATE "default",
                                '[^[:alnum:]]+', ' ', 'g'))
        END
    $$;
    ALTER TABLE events ADD COLUMN search tsvector
        GENERATED ALWAYS AS (livewire_search_vector(conv, kind, body)) STORED;
    CREATE INDEX events_search ON events USING GIN (search);
"#;

/// The `tsquery` for `query`: every word quoted (letters and digits only, nothing to
/// escape), AND-ed, the last one a prefix if the query says so.
fn tsquery(query: &SearchQuery) -> String {
    let mut out: Vec<String> = query.words().iter().map(|w| format!("'{w}'")).collect();
    if query.last_is_prefix()
        && let Some(last) = out.last_mut()
    {
        last.push_str(":*");
    }
    out.join(" & ")
}

/// Matching messages of `scopes`, newest first (see `Store::search`).
pub(super) fn search(
    c: &mut Conn,
    query: &SearchQuery,
    scopes: &[SearchScope],
    viewer: &str,
    limit: usize,
) -> Res<Vec<StoredEvent>> {
    let (convs, froms): (Vec<String>, Vec<i64>) = scopes
        .iter()
        .filter(|s| s.conv.server_readable())
        .map(|s| (s.conv.storage_key(), big(s.from)))
        .unzip();
    let rows = c.query(
        "SELECT e.id, e.conv, e.seq, e.kind, e.sender, e.cmid, e.body, e.target, e.ts
         FROM events e
         JOIN unnest($2::text[], $3::bigint[]) AS s (conv, from_seq)
           ON s.conv = e.conv AND e.seq >= s.from_seq
         WHERE e.search @@ to_tsquery('simple', $1) AND e.kind IN (0, 3)
           AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_key = $4 AND h.msg_id = e.id)
         ORDER BY e.ts DESC, e.id DESC LIMIT $5",
        &[&tsquery(query), &convs, &froms, &viewer, &big(limit as u64)],
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let (conv, event) = row_event(r);
            Some(StoredEvent {
                conv: ConvId::from_storage_key(&conv)?,
                event,
            })
        })
        .collect())
}
