//! Scripted mode: the headless server's JSON-lines output and the `chat` client that reads
//! JSON commands on stdin and writes JSON events on stdout. This is a stable contract that
//! tests and users' scripts rely on (see the README).

use std::io::Write;
use std::process::ExitCode;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::app::client::{Command, Event};
use crate::app::protocol::ErrorCode;
use crate::app::server::ServerLog;
use crate::store::SqliteStore;
use crate::transport::client::{self, ClientEvent, ClientHandle, ClientOptions, Fatal};
use crate::transport::portmap::{PortMapOptions, PortMapping};
use crate::transport::server::{Server, ServerEvent, ServerOptions};

/// Exit codes of `livewire chat`.
pub mod exit {
    /// Normal end.
    pub const OK: u8 = 0;
    /// Anything else.
    pub const OTHER: u8 = 1;
    /// Bad command line.
    pub const USAGE: u8 = 2;
    /// Login refused.
    pub const LOGIN_REFUSED: u8 = 3;
    /// Unknown server or changed certificate.
    pub const CERTIFICATE: u8 = 4;
}

/// Writes one JSON line to stdout and flushes (one writer, so lines never interleave).
pub fn print_line(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// The JSON line for an operator event, if it is part of the headless contract.
pub fn server_log_json(l: &ServerLog) -> Option<Value> {
    Some(match l {
        ServerLog::ClientConnected {
            user,
            addr,
            resumed,
            ..
        } => json!({
            "event": "client_connected", "user": user, "addr": addr.to_string(), "resumed": resumed
        }),
        ServerLog::ClientDisconnected { user, addr, .. } => {
            json!({"event": "client_disconnected", "user": user, "addr": addr.to_string()})
        }
        ServerLog::ClientMigrated {
            user, addr, from, ..
        } => json!({
            "event": "client_migrated", "user": user, "addr": addr.to_string(), "from": from.to_string()
        }),
        ServerLog::RoomCreated {
            room,
            by,
            visibility,
        } => json!({"event": "room_created", "room": room, "by": by, "visibility": visibility}),
        ServerLog::RoomClosed { room } => json!({"event": "room_closed", "room": room}),
        _ => return None,
    })
}

/// Opens the store (PostgreSQL at `database`, else SQLite in the data dir) and starts the
/// server on it.
async fn start_server(opts: ServerOptions, database: Option<String>) -> Result<Server, String> {
    match database {
        None => {
            let store = SqliteStore::open(&opts.data_dir).map_err(|e| e.to_string())?;
            Server::start(opts, store).await.map_err(|e| e.to_string())
        }
        #[cfg(feature = "postgres")]
        Some(url) => {
            let (store, blobs) = tokio::task::spawn_blocking(move || {
                let store = crate::store::PgStore::connect(&url)?;
                // Files too: every node serves every file (after the store's migrations).
                Ok::<_, crate::app::store::StoreError>((
                    store,
                    crate::store::PgBlobs::connect(&url)?,
                ))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("PostgreSQL: {e}"))?;
            #[cfg(feature = "cluster")]
            let (store, opts) = cluster_node(store, opts).await?;
            Server::start_with_blobs(opts, store, std::sync::Arc::new(blobs))
                .await
                .map_err(|e| e.to_string())
        }
        #[cfg(not(feature = "postgres"))]
        Some(_) => {
            Err("this livewire was built without PostgreSQL support (feature `postgres`)".into())
        }
    }
}

/// A node of a cluster (`--nats`) presents the cluster's one certificate, kept in its
/// PostgreSQL (see [`crate::cluster`]); a single node on PostgreSQL keeps its own.
#[cfg(feature = "cluster")]
async fn cluster_node(
    mut store: crate::store::PgStore,
    mut opts: ServerOptions,
) -> Result<(crate::store::PgStore, ServerOptions), String> {
    if opts.nats.is_none() {
        return Ok((store, opts));
    }
    tokio::task::spawn_blocking(move || {
        crate::cluster::use_shared_identity(&mut store, &mut opts).map(|()| (store, opts))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// `livewire server --headless`: runs until SIGINT or SIGTERM, then stops gracefully.
/// With `port_mapping`, the router is asked to forward the port first; the `listening` event
/// then carries `public_addr` (or `port_mapping_error`), and the mapping is removed on the
/// way out (`port_mapping_removed`).
pub async fn run_headless_server(
    opts: ServerOptions,
    port_mapping: Option<PortMapOptions>,
    database: Option<String>,
) -> ExitCode {
    // Listen for signals before announcing the address: a supervisor may stop us at once.
    let stop = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("livewire: cannot install signal handlers: {e}");
            return ExitCode::from(exit::OTHER);
        }
    };
    let mut server = match start_server(opts, database).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("livewire: cannot start the server: {e}");
            return ExitCode::from(exit::OTHER);
        }
    };
    let mut listening = json!({
        "event": "listening",
        "addr": server.local_addr().to_string(),
        "fingerprint": server.fingerprint(),
    });
    let mapping = match port_mapping {
        Some(o) => match PortMapping::map(server.local_addr(), o).await {
            Ok(m) => {
                listening["public_addr"] = json!(m.public_addr().to_string());
                listening["port_mapping"] = json!(m.protocol().name());
                Some(m)
            }
            Err(e) => {
                eprintln!(
                    "livewire: {e}; clients outside this network cannot reach the server unless the port is forwarded by hand"
                );
                listening["port_mapping_error"] = json!(e.to_string());
                None
            }
        },
        None => None,
    };
    print_line(&listening);
    let mut events = server.take_events().expect("events are taken once");
    // Writes to stdout block when its reader is slow: they get a thread of their own, so
    // no tokio worker ever waits on the pipe (and the server's bounded log sheds instead).
    let printer = std::thread::Builder::new()
        .name("livewire-stdout".into())
        .spawn(move || {
            while let Some(ev) = events.blocking_recv() {
                if let ServerEvent::Log(l) = ev
                    && let Some(v) = server_log_json(&l)
                {
                    print_line(&v);
                }
            }
        });
    stop.wait().await;
    server.shutdown("the server is shutting down").await;
    if let Ok(printer) = printer {
        let _ = tokio::task::spawn_blocking(move || printer.join()).await;
    }
    if let Some(m) = mapping {
        let public = m.public_addr().to_string();
        match m.remove().await {
            Ok(()) => print_line(&json!({"event": "port_mapping_removed", "public_addr": public})),
            Err(e) => {
                eprintln!("livewire: {e}");
                print_line(&json!({"event": "port_mapping_error", "message": e.to_string()}));
            }
        }
    }
    print_line(&json!({"event": "stopped"}));
    ExitCode::SUCCESS
}

/// SIGINT and SIGTERM, registered up front.
pub struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the handlers now.
    pub fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the first SIGINT or SIGTERM.
    pub async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The JSON line for a chat event.
pub fn event_json(e: &Event) -> Value {
    serde_json::to_value(e).unwrap_or_else(
        |err| json!({"event": "error", "code": "internal", "message": err.to_string()}),
    )
}

/// Parses one stdin line into a command, or the `error` event that explains why not.
pub fn parse_command(line: &str) -> Result<Command, Value> {
    serde_json::from_str::<Command>(line).map_err(|e| {
        event_json(&Event::error(
            ErrorCode::BadCommand,
            format!("cannot read command {line:?}: {e}. Commands look like {{\"cmd\":\"send\",\"to\":\"#general\",\"text\":\"hi\"}}"),
        ))
    })
}

/// Parses one raw stdin line (without its newline): a line that is not UTF-8 is a bad
/// command like any other, never the end of the input.
pub fn parse_line(line: &[u8]) -> Result<Command, Value> {
    match std::str::from_utf8(line) {
        Ok(text) => parse_command(text),
        Err(e) => Err(event_json(&Event::error(
            ErrorCode::BadCommand,
            format!(
                "cannot read command {:?}: it is not UTF-8 ({e})",
                String::from_utf8_lossy(line)
            ),
        ))),
    }
}

/// Reads stdin line by line into the client until it ends (or fails).
async fn read_commands(handle: ClientHandle) {
    let mut input = tokio::io::BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.trim_ascii().is_empty() {
            continue;
        }
        match parse_line(text) {
            Ok(cmd) => handle.send(cmd),
            Err(v) => print_line(&v),
        }
    }
    handle.close();
}

/// `livewire chat`: JSON commands on stdin, JSON events on stdout.
pub async fn run_chat(opts: ClientOptions) -> ExitCode {
    let (handle, events) = client::start(opts);
    tokio::spawn(read_commands(handle));
    while let Ok(ev) = events.recv().await {
        match ev {
            ClientEvent::App(e) => print_line(&event_json(&e)),
            ClientEvent::Ended => return ExitCode::SUCCESS,
            ClientEvent::Fatal(f) => {
                let (code, exit_code) = match &f {
                    Fatal::LoginRefused(_) => ("login_refused", exit::LOGIN_REFUSED),
                    Fatal::UnknownServer { .. } => ("unknown_server", exit::CERTIFICATE),
                    Fatal::CertMismatch { .. } => ("certificate_changed", exit::CERTIFICATE),
                    Fatal::Connection(_) => ("connection", exit::OTHER),
                    Fatal::Config(_) => ("config", exit::OTHER),
                };
                let mut v = json!({"event": "error", "code": code, "message": f.to_string()});
                match &f {
                    Fatal::UnknownServer { fingerprint, .. } => {
                        v["fingerprint"] = json!(fingerprint)
                    }
                    Fatal::CertMismatch { expected, got, .. } => {
                        v["expected"] = json!(expected);
                        v["fingerprint"] = json!(got);
                    }
                    _ => {}
                }
                print_line(&v);
                eprintln!("livewire: {f}");
                return ExitCode::from(exit_code);
            }
        }
    }
    ExitCode::from(exit::OTHER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::protocol::DeleteScope;

    #[test]
    fn commands_parse_as_documented() {
        assert_eq!(
            parse_command(r##"{"cmd":"send","to":"#general","text":"hi"}"##).unwrap(),
            Command::Send {
                to: "#general".into(),
                text: "hi".into(),
                reply_to: None,
            }
        );
        assert_eq!(
            parse_command(r#"{"cmd":"delete","id":4,"for":"everyone"}"#).unwrap(),
            Command::Delete {
                id: 4,
                scope: DeleteScope::Everyone
            }
        );
        assert_eq!(parse_command(r#"{"cmd":"sync"}"#).unwrap(), Command::Sync);
        assert_eq!(
            parse_command(r#"{"cmd":"remove_device","device":"0911781e"}"#).unwrap(),
            Command::RemoveDevice {
                device: "0911781e".into()
            }
        );
        assert!(parse_command(r#"{"cmd":"remove_device"}"#).is_err());
        let err = parse_command("{nope").unwrap_err();
        assert_eq!(err["code"], "bad_command");
        assert!(parse_command(r##"{"cmd":"send","to":"#general"}"##).is_err());
        assert!(parse_command(r#"{"cmd":"fly"}"#).is_err());
        let err = parse_line(b"\xff\xfe").unwrap_err();
        assert_eq!(err["event"], "error");
        assert_eq!(err["code"], "bad_command");
        assert_eq!(parse_line(br#"{"cmd":"sync"}"#).unwrap(), Command::Sync);
    }

    #[test]
    fn events_serialize_as_documented() {
        let v = event_json(&Event::Message {
            conv: "#general".into(),
            id: 3,
            seq: 2,
            from: "alice".into(),
            text: Some("hi".into()),
            ts: 5,
            file: None,
            reply_to: None,
            edited: false,
            mentions: vec![],
            mentions_me: false,
            e2e: false,
        });
        assert_eq!(
            v,
            json!({"event":"message","conv":"#general","id":3,"seq":2,"from":"alice","text":"hi","ts":5})
        );
        let v = event_json(&Event::Deleted {
            conv: "@bob".into(),
            id: 3,
            scope: DeleteScope::Me,
        });
        assert_eq!(
            v,
            json!({"event":"deleted","conv":"@bob","id":3,"for":"me"})
        );
        assert_eq!(event_json(&Event::Sync), json!({"event":"sync"}));
    }

    #[test]
    fn search_reads_and_prints_as_documented() {
        let cmd =
            parse_command(r#"{"cmd":"search","query":"lunch plans","conv":"@bob","limit":5}"#);
        assert_eq!(
            cmd.unwrap(),
            Command::Search {
                query: "lunch plans".into(),
                conv: Some("@bob".into()),
                limit: Some(5)
            }
        );
        let bare = parse_command(r#"{"cmd":"search","query":"lunch"}"#).unwrap();
        assert!(matches!(
            bare,
            Command::Search {
                conv: None,
                limit: None,
                ..
            }
        ));
        let v = event_json(&Event::Search {
            results: vec![crate::app::client::SearchItem {
                conv: "#general".into(),
                id: 3,
                from: "alice".into(),
                text: "lunch?".into(),
                ts: 5,
            }],
        });
        assert_eq!(
            v,
            json!({"event":"search","results":[{"conv":"#general","id":3,"from":"alice","text":"lunch?","ts":5}]})
        );
    }
}
