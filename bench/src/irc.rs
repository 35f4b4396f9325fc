//! IRC peer: ngIRCd (or any RFC 1459 server) over TLS, driven by a minimal line writer on
//! tokio-rustls. The room is `#general` (the many-rooms scenario's room `r` is `#room-r`);
//! a private message is `PRIVMSG bench<n>`. The
//! client answers the server's PINGs (IRC's keep-alive).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use crate::load::{Dest, Fleet, Mode, SendFn, connect_all};
use crate::rooms::RoomLayout;
use crate::stats::Recorder;

/// Channels per `JOIN` line (a line must stay under IRC's 512 bytes).
const JOIN_BATCH: usize = 20;

/// How to reach the IRC server.
pub struct Irc {
    /// The command that starts it (e.g. `ngircd -n -f /tmp/x/ngircd.conf`).
    pub argv: Vec<String>,
    /// Its TLS port on 127.0.0.1.
    pub port: u16,
    /// The CA that signed its certificate.
    pub ca: PathBuf,
}

/// Connects `n` clients.
pub async fn connect(irc: &Irc, n: usize, mode: Mode, rec: Arc<Recorder>) -> Result<Fleet> {
    let tls = TlsConnector::from(crate::tlsconf::tcp_client(&irc.ca)?);
    let port = irc.port;
    let channels: Arc<Vec<Vec<String>>> = Arc::new(match mode {
        Mode::Room => vec![vec!["#general".to_owned()]; n],
        Mode::Rooms(layout) => layout
            .rooms_by_client()
            .into_iter()
            .map(|rooms| rooms.into_iter().map(RoomLayout::channel).collect())
            .collect(),
        Mode::Pairs | Mode::Idle => vec![Vec::new(); n],
    });
    connect_all(n, 16, move |i| {
        let tls = tls.clone();
        let rec = rec.clone();
        let channels = channels.clone();
        async move { client(i, port, tls, &channels[i], rec).await }
    })
    .await
}

/// The text of a `PRIVMSG`, if `line` is one.
fn privmsg_text(line: &str) -> Option<&str> {
    let rest = line.strip_prefix(':')?;
    let (_prefix, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("PRIVMSG ")?;
    let (_target, text) = rest.split_once(" :")?;
    Some(text)
}

/// The numeric reply code of `line` (`:server 001 nick ...`).
fn numeric(line: &str) -> Option<&str> {
    let mut it = line.split(' ');
    let first = it.next()?;
    if !first.starts_with(':') {
        return None;
    }
    it.next()
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
}

/// Connects client `i`, registers it and joins `channels` (the server creates a channel on
/// its first `JOIN`).
async fn client(
    i: usize,
    port: u16,
    tls: TlsConnector,
    channels: &[String],
    rec: Arc<Recorder>,
) -> Result<(SendFn, Vec<tokio::task::JoinHandle<()>>)> {
    // Under a burst of handshakes ngIRCd now and then drops one ("tls handshake eof"): try
    // again, as a real client would, and count it.
    let mut attempt = 0;
    let stream = loop {
        attempt += 1;
        let result = async {
            let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from("127.0.0.1")?.to_owned();
            anyhow::Ok(tls.connect(name, tcp).await?)
        }
        .await;
        match result {
            Ok(s) => break s,
            Err(e) if attempt < 4 => {
                rec.retried(format!("irc connect: {e}"));
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let (r, mut w) = tokio::io::split(stream);
    let mut lines = BufReader::new(r).lines();
    let nick = format!("bench{i}");
    w.write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :bench\r\n").as_bytes())
        .await?;
    w.flush().await?;
    // Registration (001), then for each channel the end of its NAMES list (366).
    let mut joined = 0;
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let line = lines.next_line().await?.context("closed during login")?;
            if let Some(token) = line.strip_prefix("PING ") {
                w.write_all(format!("PONG {token}\r\n").as_bytes()).await?;
                w.flush().await?;
                continue;
            }
            match numeric(&line) {
                Some("001") => {
                    if channels.is_empty() {
                        return Ok(());
                    }
                    for batch in channels.chunks(JOIN_BATCH) {
                        w.write_all(format!("JOIN {}\r\n", batch.join(",")).as_bytes())
                            .await?;
                    }
                    w.flush().await?;
                }
                Some("366") => {
                    joined += 1;
                    if joined == channels.len() {
                        return Ok(());
                    }
                }
                Some(code) if code.starts_with('4') || code.starts_with('5') => {
                    bail!("irc refused: {line}")
                }
                _ => {}
            }
            if line.starts_with("ERROR") {
                bail!("irc: {line}");
            }
        }
    })
    .await
    .context("no registration within 60 s")??;
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    // The writer batches whatever is queued into one TLS write.
    let writer = tokio::spawn({
        let rec = rec.clone();
        async move {
            let mut buf = String::new();
            while let Some(line) = rx.recv().await {
                buf.clear();
                buf.push_str(&line);
                while let Ok(more) = rx.try_recv() {
                    buf.push_str(&more);
                }
                if let Err(e) = w.write_all(buf.as_bytes()).await {
                    rec.error(format!("irc write: {e}"));
                    return;
                }
                if let Err(e) = w.flush().await {
                    rec.error(format!("irc write: {e}"));
                    return;
                }
            }
        }
    });
    let reader = tokio::spawn({
        let tx = tx.clone();
        async move {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) => {
                        if let Some(text) = privmsg_text(&line) {
                            rec.deliver(i, text.as_bytes());
                        } else if let Some(token) = line.strip_prefix("PING ") {
                            let _ = tx.send(format!("PONG {token}\r\n"));
                        } else if line.starts_with("ERROR") {
                            rec.error(format!("irc: {line}"));
                            return;
                        }
                    }
                    Ok(None) => {
                        rec.error("irc: connection closed");
                        return;
                    }
                    Err(e) => {
                        rec.error(format!("irc read: {e}"));
                        return;
                    }
                }
            }
        }
    });
    let send: SendFn = Box::new(move |dest, text| {
        let line = match dest {
            Dest::Room => format!("PRIVMSG #general :{text}\r\n"),
            Dest::User(j) => format!("PRIVMSG bench{j} :{text}\r\n"),
            Dest::Channel(r) => format!("PRIVMSG {} :{text}\r\n", RoomLayout::channel(r)),
        };
        tx.send(line).is_ok()
    });
    Ok((send, vec![writer, reader]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_privmsg_and_numerics() {
        assert_eq!(
            privmsg_text(":bench1!~bench1@localhost PRIVMSG #general :hello there"),
            Some("hello there")
        );
        assert_eq!(privmsg_text(":srv NOTICE x :hi"), None);
        assert_eq!(numeric(":irc.bench 001 bench1 :Welcome"), Some("001"));
        assert_eq!(numeric("PING :irc.bench"), None);
    }
}
