//! LiveWire: a self-hosted, real-time chat system over QUIC.
//!
//! # Layout
//!
//! ```text
//! src/
//! ├── app/                 the chat rules, sans-IO: `handle(input, now) -> outputs`
//! │   ├── ids.rs           user names and their look-alike skeleton, ConvId, message ids
//! │   ├── protocol.rs      every frame on the wire (control, conversation, rooms, files)
//! │   ├── rooms.rs         the room model: names, roles, visibility, moderation rules
//! │   ├── server/          ServerCore: mod (state, dispatch), api (inputs, outputs, the
//! │   │                    operator's log), session (login, presence, control stream),
//! │   │                    convs (open, catch-up, history, send, fan-out), delete, rooms,
//! │   │                    edits (edits, reactions, history's reaction state),
//! │   │                    receipts (read markers, seen), typing, mentions
//! │   ├── client/          ClientCore: mod (state, dispatch), command (commands and
//! │   │                    events: the scripted contract), streams (open on use, close
//! │   │                    when idle), incoming, outbox, barrier, rooms, keys, backoff,
//! │   │                    edits (edit, reply and react commands, reaction state),
//! │   │                    receipts (markers, unread counts), typing, mentions
//! │   ├── edits.rs         what edits, replies and reactions mean on the wire
//! │   ├── mentions.rs      `@name` tokens and their members, for both cores
//! │   ├── mls/             end-to-end encryption with MLS (openmls): a device's state
//! │   │                    (device), the client's layer between core and wire (client),
//! │   │                    body format (wire), safety codes (safety)
//! │   ├── files.rs         file messages and chunk arithmetic
//! │   ├── blobs.rs         the `FileBlobs` trait: where stored files' bytes live
//! │   ├── limits.rs        configurable limits, token buckets, backoff
//! │   ├── search.rs        what a search query means (words, prefix, limits)
//! │   ├── store.rs         the `Store` trait (+ store/mem.rs and store/contract.rs with
//! │   │                    the `test-util` feature: the in-memory store and the suite
//! │   │                    every store passes)
//! │   └── tests/           in-memory tests of both cores with a hand-driven clock
//! ├── transport/           bytes on the wire and the async drivers
//! │   ├── quic.rs          quinn configuration, timers, the quinn types the rest names
//! │   ├── cid.rs           server connection IDs carrying the node ID (QUIC-LB layout)
//! │   ├── tls.rs           certificates, pinning (TOFU), the custom verifier
//! │   ├── codec.rs         length-prefixed postcard frames with a size limit
//! │   ├── envelope.rs      AES-256-GCM-SIV session envelopes, seal/open of event bodies
//! │   ├── identity.rs      end-to-end keys of the first scheme (before MLS)
//! │   ├── mls_state.rs     where a device's MLS state file lives (0600)
//! │   ├── sealing.rs       what the client seals in a send, an edit or a reaction
//! │   ├── auth.rs          Argon2id password hashing
//! │   ├── save.rs          atomic file writes off the async threads
//! │   ├── server/          the server driver: mod (Server, ServerHandle), connection
//! │   │                    (accept, per-IP limit, login), context (ConnCtx), streams
//! │   │                    (readers), queue + writer (per-connection output), hub (the
//! │   │                    thread that owns ServerCore and the store), operator (log)
//! │   ├── client.rs        the client driver: connect, login, streams, reconnect
//! │   ├── failover.rs      several server addresses: parse, resolve, rotate, race
//! │   ├── files/           chunk.rs (format), server.rs (stored files, quota, serving),
//! │   │                    dir_blobs.rs (bytes in the data dir), client/ (book, upload,
//! │   │                    download)
//! │   ├── portmap.rs       PCP / NAT-PMP / UPnP port mapping
//! │   └── faulty.rs        a seeded faulty UDP socket (feature `test-util`)
//! ├── store/               backends of the `Store` trait: SQLite (mod.rs, rooms.rs,
//! │                        edits.rs, receipts.rs, search.rs), the default; PostgreSQL
//! │                        (postgres.rs, feature `postgres`, with postgres/edits.rs,
//! │                        receipts.rs, search.rs and
//! │                        postgres/blobs.rs: stored files shared by a cluster's nodes)
//! ├── client_index.rs      the client's local search index of its private conversations
//! ├── cluster.rs           starting a cluster node: the shared identity (feature `cluster`)
//! ├── scripted.rs          the JSON-lines contract of `server --headless` and `chat`
//! ├── paths.rs             default directories and file locations
//! ├── cli.rs               the command line
//! └── gui/                 GTK4 windows (feature `gui`): see [`gui`]'s own layout
//! ```
//!
//! Dependencies point one way: `gui -> transport -> app`, `store -> app`; `cli` starts the
//! `gui`, and both take their default locations from `paths`. The client's driver keeps its
//! local search index through `client_index`, which shares the FTS5 query syntax with the
//! SQLite store (`store::fts5_match`). `app` imports no tokio,
//! quinn, GTK or SQLite; the transport knows the `Store` trait, never a backend.

pub mod app;
pub mod cli;
pub mod client_index;
#[cfg(feature = "cluster")]
pub mod cluster;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "gui")]
pub mod gui;
pub mod paths;
pub mod scripted;
pub mod store;
pub mod transport;
