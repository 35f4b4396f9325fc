//! Physical references on this machine: a raw quinn stream echo (the floor for anything on
//! QUIC) and raw UDP on loopback (packet rate and round trip). Their servers run as a
//! separate process of this binary, pinned like the chat servers.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::load::{Fleet, SendFn, connect_all};
use crate::stats::{BODY_LEN, Latency, Recorder};

const ALPN: &[u8] = b"bench-echo";

/// Serves the quinn echo: every byte read on a bidirectional stream is written back.
/// Prints `{"addr":..,"cert":"<hex DER>"}` first.
pub async fn quic_echo_server() -> Result<()> {
    let (crypto, der) = crate::tlsconf::quic_server(ALPN)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)?;
    let cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let ep = quinn::Endpoint::server(cfg, "127.0.0.1:0".parse()?)?;
    let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "{}",
        serde_json::json!({"addr": ep.local_addr()?.to_string(), "cert": hex})
    );
    while let Some(inc) = ep.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = inc.await else { return };
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
                        if send.write_all(&chunk.bytes).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }
    Ok(())
}

/// Connects `n` echo clients (`per_endpoint` share a UDP socket); a message to
/// `Dest::User(i)` from client `i` comes back on its own stream.
pub async fn quic_echo_clients(
    addr: SocketAddr,
    cert_hex: &str,
    n: usize,
    per_endpoint: usize,
    rec: Arc<Recorder>,
) -> Result<Fleet> {
    let der: Vec<u8> = (0..cert_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cert_hex[i..i + 2], 16))
        .collect::<Result<_, _>>()?;
    let crypto = crate::tlsconf::quic_client(der, ALPN)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)?;
    let cfg = quinn::ClientConfig::new(Arc::new(crypto));
    let per_endpoint = per_endpoint.max(1);
    let mut endpoints = Vec::new();
    for _ in 0..n.div_ceil(per_endpoint) {
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        ep.set_default_client_config(cfg.clone());
        endpoints.push(ep);
    }
    let endpoints = Arc::new(endpoints);
    let eps = endpoints.clone();
    let mut fleet = connect_all(n, 32, move |i| {
        let ep = endpoints[i / per_endpoint].clone();
        let rec = rec.clone();
        async move {
            let conn = ep.connect(addr, "localhost")?.await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            let (tx, mut rx) = mpsc::unbounded_channel::<String>();
            let writer = tokio::spawn({
                let rec = rec.clone();
                async move {
                    let _keep = (ep, conn);
                    while let Some(body) = rx.recv().await {
                        if let Err(e) = send.write_all(body.as_bytes()).await {
                            rec.error(format!("echo write: {e}"));
                            return;
                        }
                    }
                }
            });
            let reader = tokio::spawn(async move {
                let mut buf = [0u8; BODY_LEN];
                while recv.read_exact(&mut buf).await.is_ok() {
                    rec.deliver(usize::MAX, &buf);
                }
            });
            let send: SendFn = Box::new(move |_dest, body| tx.send(body).is_ok());
            Ok((send, vec![writer, reader]))
        }
    })
    .await?;
    fleet.cleanup.push(Box::new(move || {
        for ep in eps.iter() {
            ep.close(0u32.into(), b"bench over");
        }
    }));
    Ok(fleet)
}

/// Raw UDP server: counts packets; answers `E…` packets with themselves (echo) and `S`
/// with the count so far. Prints `{"addr":..}` first.
pub fn udp_server() -> Result<()> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    println!(
        "{}",
        serde_json::json!({"addr": sock.local_addr()?.to_string()})
    );
    let mut buf = [0u8; 2048];
    let mut count: u64 = 0;
    loop {
        let (len, from) = sock.recv_from(&mut buf)?;
        match buf[0] {
            b'E' => {
                sock.send_to(&buf[..len], from)?;
            }
            b'S' => {
                sock.send_to(count.to_string().as_bytes(), from)?;
            }
            b'R' => count = 0,
            _ => count += 1,
        }
    }
}

/// What raw UDP does on loopback.
#[derive(Debug, Clone, Serialize)]
pub struct UdpResult {
    /// 128-byte datagrams the generator sent per second (one thread, blocking sends).
    pub sent_per_s: f64,
    /// Of those, received per second by the server process.
    pub received_per_s: f64,
    /// Ping-pong round trip of one 128-byte datagram at a time.
    pub rtt: Latency,
}

/// Blasts 128-byte datagrams for `secs`, then measures a ping-pong round trip.
pub fn udp_client(addr: SocketAddr, secs: f64) -> Result<UdpResult> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    sock.send(b"R")?;
    std::thread::sleep(Duration::from_millis(50));
    let body = [b'x'; BODY_LEN];
    let t0 = Instant::now();
    let mut sent: u64 = 0;
    while t0.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            if sock.send(&body).is_ok() {
                sent += 1;
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(100));
    let mut buf = [0u8; 2048];
    let mut received = None;
    for _ in 0..5 {
        sock.send(b"S")?;
        if let Ok(n) = sock.recv(&mut buf) {
            received = std::str::from_utf8(&buf[..n])
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            if received.is_some() {
                break;
            }
        }
    }
    let received = received.context("the UDP server did not report its count")?;
    let mut ping = [b'E'; BODY_LEN];
    ping[1] = b'0';
    let mut rtts = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let t = Instant::now();
        sock.send(&ping)?;
        match sock.recv(&mut buf) {
            Ok(_) => rtts.push(t.elapsed().as_nanos() as u64),
            Err(_) => continue,
        }
    }
    if rtts.is_empty() {
        bail!("no UDP echo came back");
    }
    Ok(UdpResult {
        sent_per_s: sent as f64 / elapsed,
        received_per_s: received as f64 / elapsed,
        rtt: Latency::of(rtts),
    })
}
