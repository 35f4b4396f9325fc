//! The security cases of docs/TESTING.md against a real server: hostile raw QUIC clients
//! (garbage, oversize, spoofed authors, 0-RTT, slow readers, no login), an impostor server
//! with the pinned certificate but not its key, throttling, flooding, connection limits,
//! identity key changes, and the private-message canary.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use livewire::app::ids::{ClientMsgId, ConvId};
use livewire::app::limits::Limits;
use livewire::app::protocol::{ControlDown, ControlUp, ConvDown, ConvUp, PROTOCOL_VERSION};
use livewire::transport::codec;
use livewire::transport::envelope::{Aad, Direction, EXPORTER_LABEL, Ephemeral, SessionKeys};
use livewire::transport::quic::{self, Connection, Endpoint, RecvStream, SendStream};
use livewire::transport::tls::{self, Identity, PinningVerifier, SERVER_NAME};
use rustls::pki_types::ServerName;

const MAX: usize = 64 * 1024;

async fn raw_connect(addr: &str, fingerprint: &str) -> Connection {
    let ep = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let cfg = quic::client_config(PinningVerifier::new(Some(fingerprint.to_owned()))).unwrap();
    ep.connect_with(cfg, addr.parse().unwrap(), SERVER_NAME)
        .unwrap()
        .await
        .unwrap()
}

struct RawSession {
    conn: Connection,
    control: SendStream,
    control_recv: RecvStream,
    keys: SessionKeys,
}

async fn raw_login(addr: &str, fingerprint: &str, user: &str) -> RawSession {
    let conn = raw_connect(addr, fingerprint).await;
    let (mut control, mut control_recv) = conn.open_bi().await.unwrap();
    let eph = Ephemeral::new();
    let client_pub = eph.public;
    let login = ControlUp::Login {
        version: PROTOCOL_VERSION,
        user: user.into(),
        password: PASSWORD.into(),
        session_pub: client_pub,
        identity_pub: [7; 32],
        hide_cursor: 0,
    };
    codec::write_frame(&mut control, &login, MAX).await.unwrap();
    let answer: ControlDown = codec::read_frame(&mut control_recv, codec::MAX_DOWN_FRAME)
        .await
        .unwrap()
        .unwrap();
    let ControlDown::LoginOk { session_pub, .. } = answer else {
        panic!("login refused: {answer:?}")
    };
    let mut exporter = [0u8; 32];
    conn.export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
        .unwrap();
    let shared = eph.agree(&session_pub).unwrap();
    let keys = SessionKeys::derive(&shared, &exporter, &client_pub, &session_pub);
    RawSession {
        conn,
        control,
        control_recv,
        keys,
    }
}

async fn open_general(s: &RawSession) -> (SendStream, RecvStream) {
    let (mut send, mut recv) = s.conn.open_bi().await.unwrap();
    let open = ConvUp::Open {
        conv: ConvId::General,
        after: Some(u64::MAX),
    };
    codec::write_frame(&mut send, &open, MAX).await.unwrap();
    loop {
        let d: ConvDown = codec::read_frame(&mut recv, codec::MAX_DOWN_FRAME)
            .await
            .unwrap()
            .unwrap();
        if matches!(d, ConvDown::CaughtUp { .. }) {
            return (send, recv);
        }
    }
}

/// Reads until the connection is closed by the server; returns the application close
/// code and reason.
async fn closed_by_server(conn: &Connection) -> (u64, String) {
    match tokio::time::timeout(WAIT, conn.closed())
        .await
        .expect("server never closed the connection")
    {
        quinn::ConnectionError::ApplicationClosed(c) => (
            c.error_code.into_inner(),
            String::from_utf8_lossy(&c.reason).into_owned(),
        ),
        other => panic!("unexpected close: {other}"),
    }
}

fn two_chatting(server: &ServerProc, home: &std::path::Path) -> (ChatProc, ChatProc) {
    let alice = ChatProc::login(&server.addr, "alice", home);
    let bob = ChatProc::login(&server.addr, "bob", home);
    (alice, bob)
}

fn still_chatting(alice: &mut ChatProc, bob: &mut ChatProc, text: &str) {
    alice.send("#general", text);
    alice.sync();
    let evs = bob.sync();
    assert!(
        evs.iter()
            .any(|v| v["event"] == "message" && v["text"] == text),
        "bob missed {text:?}: {evs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversize_and_unknown_frames_never_disturb_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("srv"), "127.0.0.1:0", &[]);
    let (mut alice, mut bob) = tokio::task::block_in_place(|| two_chatting(&server, dir.path()));
    let cases: [&[u8]; 4] = [
        // Garbage before any login.
        &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3],
        // A frame announcing 1 GiB.
        &[0x40, 0, 0, 0],
        // A well-framed unknown variant.
        &[0, 0, 0, 2, 200, 0],
        // A truncated frame, then the stream ends.
        &[0, 0, 0, 50, 1],
    ];
    for bytes in cases {
        let conn = raw_connect(&server.addr, &server.fingerprint).await;
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        send.finish().unwrap();
        let (code, reason) = closed_by_server(&conn).await;
        assert_eq!(
            code,
            u64::from(quic::close::PROTOCOL),
            "{bytes:?}: {reason}"
        );
        tokio::task::block_in_place(|| {
            still_chatting(&mut alice, &mut bob, &format!("after {bytes:?}"))
        });
    }
    // After login: a bad frame on a conversation stream gets an error frame, then the
    // connection is closed.
    let s = raw_login(&server.addr, &server.fingerprint, "mallory").await;
    let (mut send, mut recv) = open_general(&s).await;
    send.write_all(&[0x00, 0x10, 0x00, 0x00]).await.unwrap();
    let d: ConvDown = codec::read_frame(&mut recv, codec::MAX_DOWN_FRAME)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            d,
            ConvDown::Error {
                code: livewire::app::protocol::ErrorCode::TooLarge,
                ..
            }
        ),
        "{d:?}"
    );
    let (code, _) = closed_by_server(&s.conn).await;
    assert_eq!(code, u64::from(quic::close::PROTOCOL));
    tokio::task::block_in_place(|| still_chatting(&mut alice, &mut bob, "after mallory"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_cannot_choose_its_author() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("srv"), "127.0.0.1:0", &[]);
    let mut bob = tokio::task::block_in_place(|| ChatProc::login(&server.addr, "bob", dir.path()));
    tokio::task::block_in_place(|| ChatProc::login(&server.addr, "alice", dir.path()).finish());
    let s = raw_login(&server.addr, &server.fingerprint, "mallory").await;
    let (mut send, mut recv) = open_general(&s).await;
    // Sealed as if alice wrote it: the AAD names the author, so the server refuses it.
    let cmid = ClientMsgId([9; 16]);
    let spoof = Aad {
        dir: Direction::Up,
        conv: "#general",
        sender: "alice",
        cmid,
    };
    let body = s.keys.up.seal(&spoof, b"I am alice").unwrap();
    codec::write_frame(&mut send, &ConvUp::Send { cmid, body }, MAX)
        .await
        .unwrap();
    let d: ConvDown = codec::read_frame(&mut recv, codec::MAX_DOWN_FRAME)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(d, ConvDown::Error { cmid: Some(c), .. } if c == cmid),
        "{d:?}"
    );
    // Sealed honestly: it goes through, under mallory's name whatever the text says.
    let cmid = ClientMsgId([10; 16]);
    let honest = Aad {
        dir: Direction::Up,
        conv: "#general",
        sender: "mallory",
        cmid,
    };
    let body = s.keys.up.seal(&honest, b"from: alice").unwrap();
    codec::write_frame(&mut send, &ConvUp::Send { cmid, body }, MAX)
        .await
        .unwrap();
    let d: ConvDown = codec::read_frame(&mut recv, codec::MAX_DOWN_FRAME)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(d, ConvDown::Ack { .. }), "{d:?}");
    let evs = tokio::task::block_in_place(|| bob.sync());
    let msgs = events(&evs, "message");
    assert_eq!(msgs.len(), 1, "{evs:?}");
    assert_eq!(msgs[0]["from"], "mallory");
    drop(s.control);
    drop(s.control_recv);
}

/// A client session store that counts the TLS 1.3 tickets it is given and hands out, so the
/// 0-RTT test knows a resumption was really possible.
#[derive(Debug)]
struct CountingTickets {
    inner: rustls::client::ClientSessionMemoryCache,
    received: AtomicUsize,
    taken: AtomicUsize,
}

impl CountingTickets {
    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    fn taken(&self) -> usize {
        self.taken.load(Ordering::SeqCst)
    }
}

impl rustls::client::ClientSessionStore for CountingTickets {
    fn set_kx_hint(&self, name: ServerName<'static>, g: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, g)
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, v)
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        v: rustls::client::Tls13ClientSessionValue,
    ) {
        self.received.fetch_add(1, Ordering::SeqCst);
        self.inner.insert_tls13_ticket(name, v)
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        let t = self.inner.take_tls13_ticket(name);
        if t.is_some() {
            self.taken.fetch_add(1, Ordering::SeqCst);
        }
        t
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_rtt_is_never_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("srv"), "127.0.0.1:0", &[]);
    let ep = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let tickets = Arc::new(CountingTickets {
        inner: rustls::client::ClientSessionMemoryCache::new(8),
        received: 0.into(),
        taken: 0.into(),
    });
    let mut crypto =
        tls::client_config(PinningVerifier::new(Some(server.fingerprint.clone()))).unwrap();
    // A client that would send early data if the server let it.
    crypto.enable_early_data = true;
    crypto.resumption = rustls::client::Resumption::store(tickets.clone());
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let cfg = quinn::ClientConfig::new(Arc::new(crypto));
    let addr = server.addr.parse().unwrap();
    // A first full connection gets a session ticket; the test waits for it (the server
    // sends it after the handshake) and fails if none comes, since without a ticket the
    // second attempt could not try 0-RTT and the test would prove nothing.
    let first = ep
        .connect_with(cfg.clone(), addr, SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (mut s, _r) = first.open_bi().await.unwrap();
    s.write_all(b"x").await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while tickets.received() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no session ticket from the server within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.close(0u32.into(), b"");
    // The second attempt resumes with that ticket, but the ticket allows no early data, so
    // quinn cannot send 0-RTT.
    let connecting = ep.connect_with(cfg, addr, SERVER_NAME).unwrap();
    assert_eq!(
        tickets.taken(),
        1,
        "the second attempt did not offer the ticket"
    );
    assert!(
        connecting.into_0rtt().is_err(),
        "0-RTT must not be possible"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pinned_certificate_without_its_key_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    // The real server's certificate, an impostor's key.
    let real = Identity::load_or_create(&dir.path().join("real")).unwrap();
    let fake = Identity::load_or_create(&dir.path().join("fake")).unwrap();
    let fp = real.fingerprint();
    let signer = rustls::crypto::ring::sign::any_supported_type(&fake.key).unwrap();
    let certified = Arc::new(rustls::sign::CertifiedKey::new(real.certs.clone(), signer));
    #[derive(Debug)]
    struct Resolver(Arc<rustls::sign::CertifiedKey>);
    impl rustls::server::ResolvesServerCert for Resolver {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }
    let mut crypto = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(certified)));
    crypto.alpn_protocols = vec![tls::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).unwrap();
    let impostor = Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(crypto)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let addr = impostor.local_addr().unwrap().to_string();
    let accept = tokio::spawn(async move {
        while let Some(i) = impostor.accept().await {
            let _ = i.await;
        }
    });
    let home = dir.path().to_owned();
    let (code, log) = tokio::task::block_in_place(|| {
        ChatProc::start_with(
            &addr,
            "alice",
            ClientOpts {
                password: PASSWORD.into(),
                trust: vec!["--fingerprint".into(), fp.clone()],
                home,
                extra: vec![],
            },
        )
        .exit_code()
    });
    accept.abort();
    assert_eq!(code, 1, "{log:?}");
    assert!(!log.iter().any(|v| v["event"] == "ready"));
    assert_eq!(log[0]["code"], "connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_and_nobody_else_suffers() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        conn_queue_bytes: 256 * 1024,
        msg_burst: 100_000,
        msg_per_sec: 100_000,
        ..Limits::default()
    };
    let (server, _events) = in_process_server(&dir.path().join("srv"), limits).await;
    let addr = server.local_addr().to_string();
    let fp = server.fingerprint().to_owned();
    let slow = raw_login(&addr, &fp, "sloth").await;
    let (_send, _recv_never_read) = open_general(&slow).await;
    let home = dir.path().to_owned();
    let a2 = addr.clone();
    let flood = tokio::task::spawn_blocking(move || {
        let mut alice = ChatProc::start_with(
            &a2,
            "alice",
            ClientOpts {
                password: PASSWORD.into(),
                trust: vec!["--accept-new".into()],
                home,
                extra: vec![],
            },
        );
        alice.expect("ready", |v| v["event"] == "ready");
        let text = "x".repeat(16_000);
        for _ in 0..300 {
            alice.send("#general", &text);
        }
        let evs = alice.sync();
        events(&evs, "sent").len()
    });
    // The server closes with TOO_SLOW. On a loaded machine the close packet can be lost
    // with the flood (the sloth's socket buffer overflows while its endpoint task waits
    // for a core); the server then forgets the connection after its drain period and
    // answers the sloth's next packet with a stateless reset. Either way the server cut
    // it off: a reset only comes from a server that no longer has the connection.
    match tokio::time::timeout(WAIT, slow.conn.closed())
        .await
        .expect("server never closed the connection")
    {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code.into_inner(), u64::from(quic::close::TOO_SLOW))
        }
        quinn::ConnectionError::Reset => {}
        other => panic!("unexpected close: {other}"),
    }
    assert_eq!(
        flood.await.unwrap(),
        300,
        "the sender was not slowed or refused"
    );
    server.shutdown("test over").await;
}

#[test]
fn a_connection_that_never_logs_in_is_closed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(
        &dir.path().join("srv"),
        "127.0.0.1:0",
        &["--login-deadline", "1"],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let conn = raw_connect(&server.addr, &server.fingerprint).await;
        let (code, reason) = closed_by_server(&conn).await;
        assert_eq!(code, u64::from(quic::close::LOGIN_TIMEOUT), "{reason}");
    });
}

#[test]
fn brute_force_logins_are_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("srv"), "127.0.0.1:0", &[]);
    ChatProc::login(&server.addr, "alice", dir.path()).finish();
    let attempt = |password: &str| {
        ChatProc::start_with(
            &server.addr,
            "alice",
            ClientOpts {
                password: password.into(),
                trust: vec!["--accept-new".into()],
                home: dir.path().to_owned(),
                extra: vec![],
            },
        )
        .exit_code()
    };
    for _ in 0..3 {
        let (code, log) = attempt("guess-guess-guess");
        assert_eq!(code, 3, "{log:?}");
        assert!(
            log[0]["message"]
                .as_str()
                .unwrap()
                .contains("wrong username or password")
        );
    }
    // Now even the right password is refused for a while, without being checked.
    let (code, log) = attempt(PASSWORD);
    assert_eq!(code, 3, "{log:?}");
    assert!(
        log[0]["message"]
            .as_str()
            .unwrap()
            .contains("too many failed logins"),
        "{log:?}"
    );
}

#[test]
fn a_flood_is_rate_limited_without_slowing_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("srv"), "127.0.0.1:0", &[]);
    let (mut alice, mut bob) = two_chatting(&server, dir.path());
    for i in 0..40 {
        alice.send("#general", &format!("flood {i}"));
    }
    bob.send("#general", "still me");
    let evs = alice.sync();
    let sent = events(&evs, "sent").len();
    let limited: Vec<_> = events(&evs, "error")
        .into_iter()
        .filter(|v| v["code"] == "rate_limited")
        .collect();
    assert_eq!(sent + limited.len(), 40);
    assert!(
        (10..=30).contains(&sent),
        "a burst of 10 plus what refilled while sending: {sent}"
    );
    assert!(limited[0]["message"].as_str().unwrap().contains("retry in"));
    assert_eq!(
        events(&bob.sync(), "sent").len(),
        1,
        "bob is not limited by alice"
    );
}

#[test]
fn connections_per_address_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(
        &dir.path().join("srv"),
        "127.0.0.1:0",
        &["--conns-per-ip", "2"],
    );
    let _a = ChatProc::login(&server.addr, "alice", dir.path());
    let _b = ChatProc::login(&server.addr, "bob", dir.path());
    let (code, log) = ChatProc::start(&server.addr, "carol", dir.path()).exit_code();
    assert_eq!(code, 1, "{log:?}");
    assert!(
        log[0]["message"]
            .as_str()
            .unwrap()
            .contains("too many connections"),
        "{log:?}"
    );
}

#[test]
fn private_canary_never_reaches_the_servers_disk_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let server = ServerProc::start_traced(&data, "127.0.0.1:0");
    let addr = server.addr.clone();
    let mut alice = ChatProc::login(&addr, "alice", dir.path());
    let mut bob = ChatProc::login(&addr, "bob", dir.path());
    alice.send("@bob", "canary-private-d41d8cd9");
    alice.send("#general", "canary-public-00e4c3");
    alice.sync();
    let evs = bob.sync();
    assert!(
        evs.iter().any(|v| v["text"] == "canary-private-d41d8cd9"),
        "bob reads it: {evs:?}"
    );
    // A second device of bob's has another identity key: alice is told.
    alice.send("@bob", "keep the conversation open");
    alice.sync();
    let other = tempfile::tempdir().unwrap();
    let bob2 = ChatProc::login(&addr, "bob", other.path());
    let changed = alice.expect("key_changed", |v| v["event"] == "key_changed");
    assert_eq!(changed["user"], "bob");
    assert_ne!(changed["old"], changed["new"]);
    drop(bob2);
    drop(alice);
    drop(bob);
    server.stop();
    let mut files = files_under(&data);
    files.push(stderr_path(&data));
    let contains = |needle: &[u8]| any_contains(&files, needle);
    assert!(
        contains(b"canary-public-00e4c3"),
        "the search finds room text (server reads #general)"
    );
    assert!(
        !contains(b"canary-private-d41d8cd9"),
        "private text reached the server's disk or logs"
    );
}
