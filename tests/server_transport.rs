//! The server's transport under stress of its own making: a restart after SIGKILL on the
//! same port and key (old connections must be reset at once, not left to time out), and a
//! burst of connections from one address (the per-address limit holds at accept time).

mod common;

use std::time::{Duration, Instant};

use common::*;
use livewire::app::limits::Limits;
use livewire::transport::quic::{self, ConnectionError, Endpoint};
use livewire::transport::tls::{PinningVerifier, SERVER_NAME};

/// How long a client may take to notice the restart and get a message through: the
/// reconnect backoff (1 s ± 20 %) plus a login, with room for a slow machine, and far below
/// the 40 s idle timeout a client waits when nobody resets its connection.
const BACK_WITHIN: Duration = Duration::from_secs(10);

#[test]
fn a_server_restarted_after_sigkill_resets_its_old_connections_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let server = ServerProc::start(&data, "127.0.0.1:0", &[]);
    let addr = server.addr.clone();
    let mut alice = ChatProc::login(&addr, "alice", dir.path());
    alice.send("#general", "before the crash");
    alice.expect("the first ack", |v| v["event"] == "sent");

    server.kill();
    // Same port, same data dir (so the same key): the new process must recognise the old
    // connection's IDs and answer with a stateless reset.
    let _server = ServerProc::start(&data, &addr, &[]);
    let restarted = Instant::now();
    alice.send("#general", "after the restart");
    let sent = alice.expect_within("the ack after the restart", BACK_WITHIN, |v| {
        v["event"] == "sent" && v["text"] == "after the restart"
    });
    let took = restarted.elapsed();
    let lost = alice
        .log
        .iter()
        .find(|v| v["event"] == "disconnected")
        .unwrap_or_else(|| panic!("no disconnected event: {:#?}", alice.log));
    let reason = lost["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("reset"),
        "the old connection should end by a stateless reset, not {reason:?}"
    );
    assert!(
        alice.log.iter().any(|v| v["event"] == "reconnected"),
        "{:#?}",
        alice.log
    );
    println!("ok: reset ({reason}), reconnected and acked {sent} {took:?} after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_address_limit_are_refused_before_the_handshake() {
    const LIMIT: usize = 4;
    const TRIES: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        conns_per_ip: LIMIT,
        ..Limits::default()
    };
    let (server, _events) = in_process_server(&dir.path().join("srv"), limits).await;
    let addr = server.local_addr();
    let fp = server.fingerprint().to_owned();
    let config = quic::client_config(PinningVerifier::new(Some(fp))).unwrap();
    let connect = move || {
        let config = config.clone();
        async move {
            // One endpoint (one UDP port) each: the same address, as many clients behind
            // one NAT or one attacker would be.
            let ep = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            let attempt = ep.connect_with(config, addr, SERVER_NAME).unwrap();
            let result = tokio::time::timeout(Duration::from_secs(5), attempt).await;
            (ep, result)
        }
    };

    // All at once, as in a flood: the count must be taken before any handshake finishes.
    let started = Instant::now();
    let attempts: Vec<_> = (0..TRIES).map(|_| tokio::spawn(connect())).collect();
    let (mut open, mut refused) = (Vec::new(), 0);
    for attempt in attempts {
        match attempt.await.unwrap() {
            (ep, Ok(Ok(conn))) => open.push((ep, conn)),
            (_, Ok(Err(e))) => {
                assert!(
                    matches!(&e, ConnectionError::ConnectionClosed(c)
                        if c.error_code == quic::TransportErrorCode::CONNECTION_REFUSED),
                    "refused with CONNECTION_REFUSED, not {e}"
                );
                assert!(quic::connect_failure(&e).contains("too many connections"));
                refused += 1;
            }
            (_, Err(_)) => panic!("an attempt was neither accepted nor refused within 5 s"),
        }
    }
    let took = started.elapsed();
    assert!(
        open.len() <= LIMIT,
        "{} handshakes completed from one address with a limit of {LIMIT}",
        open.len()
    );
    assert_eq!(open.len(), LIMIT, "free slots must be used");
    assert_eq!(refused, TRIES - LIMIT);
    println!("ok: {LIMIT} of {TRIES} accepted, {refused} refused, all within {took:?}");

    // A closed connection gives its slot back.
    let (_ep, first) = open.pop().unwrap();
    first.close(0u32.into(), b"bye");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match connect().await {
            (ep, Ok(Ok(conn))) => {
                open.push((ep, conn));
                break;
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => panic!("the slot of a closed connection was not given back"),
        }
    }
    println!("ok: a closed connection's slot was reused");
    drop(open);
    server.shutdown("test over").await;
}
