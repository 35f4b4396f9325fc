//! Network faults inside plain `cargo test`: a real headless server (the `livewire` binary on
//! 127.0.0.1) and in-process clients whose QUIC endpoints sit on a seeded
//! [`FaultySocket`] (drop, duplicate, reorder, blackout, NAT rebinding). Every case waits on
//! barriers (`sync`, or an expected event with a timeout) and ends with the P1–P7 checks of
//! docs/TESTING.md, through the shared test kit (`tests/common`). Each case prints one
//! `figures:` line (run with `--nocapture` to see them; they are the numbers in
//! docs/NETWORK.md).

mod common;

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    PASSWORD, Record, ServerProc, TIMERS, Tally, Transcript, WAIT, check_conversation,
    event_channel,
};
use livewire::app::client::Command;
use livewire::scripted::{event_json, parse_command};
use livewire::transport::client::{self, ClientEvent, ClientOptions, Trust};
use livewire::transport::faulty::{FaultConfig, FaultControl, FaultStats, Faults, FaultySocket};
use livewire::transport::quic::Endpoint;
use livewire::transport::tls::PinStore;
use serde_json::{Value, json};

/// Rate limits out of the way: these tests are about the network.
const SERVER_ARGS: &[&str] = &["--msg-burst", "10000", "--msg-rate", "10000"];

/// An in-process client on a chosen endpoint (the faulty socket has to live in this
/// process). Its events become the JSON lines `livewire chat` prints and its commands are
/// parsed as `livewire chat` parses them, so it records, waits and syncs through the kit's
/// [`Transcript`] like every other client.
struct Lib {
    transcript: Transcript,
    /// `send` commands given, shared with the command sink (each must get one ack).
    sends: Arc<AtomicUsize>,
}

impl Deref for Lib {
    type Target = Transcript;
    fn deref(&self) -> &Transcript {
        &self.transcript
    }
}

impl DerefMut for Lib {
    fn deref_mut(&mut self) -> &mut Transcript {
        &mut self.transcript
    }
}

impl Lib {
    fn start(
        rt: &tokio::runtime::Runtime,
        server: &str,
        user: &str,
        home: &Path,
        ep: Endpoint,
        timers: livewire::transport::quic::Timers,
    ) -> Self {
        let dir = home.join(user);
        let opts = ClientOptions {
            server: server.to_owned(),
            user: user.to_owned(),
            password: PASSWORD.to_owned(),
            trust: Trust::AcceptNew,
            pins: PinStore::new(dir.join("known_servers")),
            state_file: Some(dir.join("state.json")),
            reconnect: true,
            endpoint: Some(ep),
            timers,
            stream_idle: livewire::transport::client::STREAM_IDLE,
        };
        let (handle, events) = client::start_on(opts, rt.handle());
        // The client's end: `_ended` (clean) or `_fatal`, then the channel closes.
        let (tx, rx) = event_channel();
        rt.spawn(async move {
            while let Ok(e) = events.recv().await {
                let (v, last) = match e {
                    ClientEvent::App(e) => (event_json(&e), false),
                    ClientEvent::Fatal(f) => {
                        (json!({"event": "_fatal", "error": f.to_string()}), true)
                    }
                    ClientEvent::Ended => (json!({"event": "_ended"}), true),
                };
                if tx.send(v).is_err() || last {
                    break;
                }
            }
        });
        let sends = Arc::new(AtomicUsize::new(0));
        let counted = sends.clone();
        let input = Box::new(move |line: &str| {
            let cmd = parse_command(line).unwrap_or_else(|e| panic!("bad command {line}: {e}"));
            if matches!(cmd, Command::Send { .. }) {
                counted.fetch_add(1, Ordering::Relaxed);
            }
            handle.send(cmd);
        });
        let mut c = Self {
            transcript: Transcript::new(user, rx, Some(input)),
            sends,
        };
        c.expect("ready", |v| v["event"] == "ready");
        c
    }

    /// Closes the command channel, waits until the client has flushed and logged out, and
    /// returns the user and everything it reported; every `send` got exactly one ack.
    fn finish(mut self) -> (String, Vec<Value>) {
        self.close_input();
        self.read_to_end(WAIT);
        let fatal = common::events(&self.log, "_fatal");
        assert!(
            fatal.is_empty(),
            "{}: fatal at the end: {fatal:?}",
            self.who
        );
        let sends = self.sends.load(Ordering::Relaxed);
        assert_eq!(self.count("sent"), sends, "{}: acks vs sends", self.who);
        (self.who.clone(), std::mem::take(&mut self.log))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn faulty(rt: &tokio::runtime::Runtime, cfg: FaultConfig) -> (Endpoint, FaultControl) {
    let _g = rt.enter();
    FaultySocket::client_endpoint("127.0.0.1:0".parse().unwrap(), cfg).unwrap()
}

fn plain(rt: &tokio::runtime::Runtime) -> Endpoint {
    let _g = rt.enter();
    Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
}

/// What a case measured, printed as one line.
struct Figures {
    name: &'static str,
    tally: Tally,
    disconnects: usize,
    migrations: usize,
    elapsed: Duration,
    faults: Vec<(String, FaultStats)>,
    note: String,
}

impl Figures {
    fn print(&self) {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(u, s)| {
                format!(
                    "{u}: up {}/{} dropped, {} dup, {} delayed; down {}/{} dropped, {} dup, {} delayed; {} rebinds",
                    s.up.dropped,
                    s.up.datagrams,
                    s.up.duplicated,
                    s.up.delayed,
                    s.down.dropped,
                    s.down.datagrams,
                    s.down.duplicated,
                    s.down.delayed,
                    s.rebinds
                )
            })
            .collect();
        println!(
            "figures: {}: sent {} acked {} delivered {}/{} shown-twice {} disconnects {} migrations {} in {:.1}s {}[{}]",
            self.name,
            self.tally.acked,
            self.tally.acked,
            self.tally.delivered,
            self.tally.expected,
            self.tally.shown_twice,
            self.disconnects,
            self.migrations,
            self.elapsed.as_secs_f64(),
            self.note,
            faults.join(" | ")
        );
    }
}

/// What a case's `between` hook may touch.
struct Ctx<'a> {
    rt: &'a tokio::runtime::Runtime,
    a: &'a FaultControl,
    b: Option<&'a FaultControl>,
    b_ep: &'a Endpoint,
    server: &'a mut ServerProc,
    alice: &'a mut Lib,
    bob: &'a mut Lib,
    /// A note for the figures line (e.g. a measured recovery time).
    note: &'a mut String,
}

/// Runs after each round of a case.
type Hook = Box<dyn FnMut(usize, &mut Ctx<'_>)>;

/// The conversation every case runs: alice and bob talk in `#general` (carol listens) and
/// privately; `between` runs after each round (rebinds, blackouts, pacing).
struct Case {
    name: &'static str,
    rounds: usize,
    alice: FaultConfig,
    bob: Option<FaultConfig>,
    /// Called after round `i`.
    between: Hook,
    /// Whether a reconnect (new login) is acceptable in this case.
    allow_disconnect: bool,
    /// Whether the case runs with the kit's short [`TIMERS`] (the blackout case) instead
    /// of the built-in ones.
    short_timers: bool,
}

fn run(mut case: Case) -> Figures {
    let started = Instant::now();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut args = SERVER_ARGS.to_vec();
    let (server_timers, timers) = if case.short_timers {
        (TIMERS.server_args(), TIMERS.client_timers())
    } else {
        (vec![], livewire::transport::quic::Timers::CLIENT)
    };
    args.extend(server_timers.iter().map(String::as_str));
    let mut server = ServerProc::start(&dir.path().join("server"), "127.0.0.1:0", &args);
    let home = dir.path();
    let (a_ep, a_ctl) = faulty(&rt, case.alice);
    let (b_ep, b_ctl) = match case.bob {
        Some(cfg) => {
            let (e, c) = faulty(&rt, cfg);
            (e, Some(c))
        }
        None => (plain(&rt), None),
    };
    let mut alice = Lib::start(&rt, &server.addr, "alice", home, a_ep, timers);
    let mut bob = Lib::start(&rt, &server.addr, "bob", home, b_ep.clone(), timers);
    let mut carol = Lib::start(&rt, &server.addr, "carol", home, plain(&rt), timers);
    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync();
    }
    let mut note = String::new();
    for i in 0..case.rounds {
        alice.send("#general", &format!("alice #{i}"));
        bob.send("#general", &format!("bob #{i}"));
        alice.send("@bob", &format!("alice to bob #{i}"));
        bob.send("@alice", &format!("bob to alice #{i}"));
        let mut ctx = Ctx {
            rt: &rt,
            a: &a_ctl,
            b: b_ctl.as_ref(),
            b_ep: &b_ep,
            server: &mut server,
            alice: &mut alice,
            bob: &mut bob,
            note: &mut note,
        };
        (case.between)(i, &mut ctx);
    }
    // Barriers: first every sender's outbox is acknowledged, then every fan-out printed.
    for _ in 0..2 {
        for c in [&mut alice, &mut bob, &mut carol] {
            c.sync();
        }
    }
    let elapsed = started.elapsed();
    let disconnects = alice.count("disconnected") + bob.count("disconnected");
    if !case.allow_disconnect {
        assert_eq!(
            disconnects,
            0,
            "{}: a client lost its connection: alice {:?} bob {:?}",
            case.name,
            common::events(&alice.log, "disconnected"),
            common::events(&bob.log, "disconnected"),
        );
    }
    let faults = vec![("alice".to_owned(), a_ctl.stats())]
        .into_iter()
        .chain(b_ctl.as_ref().map(|c| ("bob".to_owned(), c.stats())))
        .collect();
    let logs: Vec<(String, Vec<Value>)> =
        [alice, bob, carol].into_iter().map(Lib::finish).collect();
    let server_log = server.stop();
    let migrations = common::events(&server_log, "client_migrated").len();
    let records: Vec<Record> = logs
        .iter()
        .map(|(u, l)| Record { user: u, log: l })
        .collect();
    let tally = check_conversation(&records, &["alice", "bob", "carol"]);
    let f = Figures {
        name: case.name,
        tally,
        disconnects,
        migrations,
        elapsed,
        faults,
        note,
    };
    f.print();
    f
}

/// Pacing between rounds so faults overlap a live conversation.
fn pace(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn loss_20_percent_each_way() {
    let f = run(Case {
        name: "loss 20%",
        rounds: 15,
        alice: FaultConfig::both(11, Faults::loss(0.2)),
        bob: Some(FaultConfig::both(12, Faults::loss(0.2))),
        between: Box::new(|_, _| pace(50)),
        allow_disconnect: false,
        short_timers: false,
    });
    assert!(
        f.faults
            .iter()
            .all(|(_, s)| s.up.dropped > 0 && s.down.dropped > 0)
    );
}

#[test]
fn duplication_and_reordering() {
    let faults = Faults {
        duplicate: 0.3,
        delay: 0.3,
        delay_min: Duration::from_millis(1),
        delay_max: Duration::from_millis(60),
        ..Faults::NONE
    };
    let f = run(Case {
        name: "duplicate 30% + reorder 30% (1-60 ms)",
        rounds: 15,
        alice: FaultConfig::both(21, faults),
        bob: Some(FaultConfig::both(22, faults)),
        between: Box::new(|_, _| pace(50)),
        allow_disconnect: false,
        short_timers: false,
    });
    assert!(
        f.faults
            .iter()
            .all(|(_, s)| s.up.duplicated > 0 && s.down.delayed > 0)
    );
}

/// Waits until the server reports `user` at `addr` (a migration it noticed).
fn expect_migration(server: &mut ServerProc, user: &str, addr: SocketAddr) -> Duration {
    let t = Instant::now();
    let want = addr.to_string();
    server.expect(&format!("client_migrated {user} -> {want}"), |v| {
        v["event"] == "client_migrated" && v["user"] == user && v["addr"] == want.as_str()
    });
    t.elapsed()
}

#[test]
fn nat_rebinding_every_two_seconds() {
    // alice's NAT gives her a new port every ~2 s without her knowing; bob's endpoint moves
    // by itself once (Wi-Fi to wired: quinn's active migration with Endpoint::rebind).
    let f = run(Case {
        name: "NAT rebinding every 2 s",
        rounds: 24,
        alice: FaultConfig::both(31, Faults::NONE),
        bob: None,
        between: Box::new(|i, cx| {
            pace(250);
            if i % 8 == 7 {
                let addr = cx.a.rebind().unwrap();
                // The server learns the new port from alice's next datagram: a message now
                // (in a quiet conversation it would be the 15 s keep-alive).
                cx.alice
                    .send("#general", &format!("alice after rebinding at round {i}"));
                let t = expect_migration(cx.server, "alice", addr);
                cx.note.push_str(&format!(
                    "alice seen at new port after {}ms; ",
                    t.as_millis()
                ));
            }
            if i == 12 {
                let _g = cx.rt.enter();
                let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let addr = sock.local_addr().unwrap();
                cx.b_ep.rebind(sock).unwrap();
                // Active migration only shows once bob sends from the new socket.
                cx.bob.send("#general", "bob after moving");
                let t = expect_migration(cx.server, "bob", addr);
                cx.note
                    .push_str(&format!("bob seen at new port after {}ms; ", t.as_millis()));
            }
        }),
        allow_disconnect: false,
        short_timers: false,
    });
    assert!(f.migrations >= 4, "{}", f.migrations);
}

#[test]
fn short_blackout_below_idle_timeout() {
    // 4 s with nothing getting through (well under the 40 s idle timeout): messages sent
    // meanwhile wait in quinn, retransmissions resume after it, no new login.
    let f = run(Case {
        name: "blackout 4 s",
        rounds: 8,
        alice: FaultConfig::both(41, Faults::NONE),
        bob: None,
        between: Box::new(|i, cx| {
            match i {
                2 => cx.a.blackout(true),
                5 => {
                    cx.a.blackout(false);
                    let t = Instant::now();
                    cx.bob.expect("alice #5 after the blackout", |v| {
                        v["event"] == "message" && v["text"] == "alice #5"
                    });
                    cx.note.push_str(&format!(
                        "message sent during the blackout arrived {}ms after it; ",
                        t.elapsed().as_millis()
                    ));
                }
                _ => {}
            }
            pace(if (2..5).contains(&i) { 1300 } else { 100 });
        }),
        allow_disconnect: false,
        short_timers: false,
    });
    assert_eq!(f.disconnects, 0);
}

#[test]
fn everything_at_once() {
    let faults = Faults {
        drop: 0.1,
        duplicate: 0.1,
        delay: 0.2,
        delay_min: Duration::from_millis(1),
        delay_max: Duration::from_millis(40),
    };
    run(Case {
        name: "loss 10% + dup 10% + reorder 20% + rebinding",
        rounds: 16,
        alice: FaultConfig::both(51, faults),
        bob: Some(FaultConfig::both(52, faults)),
        between: Box::new(|i, cx| {
            pace(150);
            if i % 5 == 4 {
                cx.a.rebind().unwrap();
                cx.b.unwrap().rebind().unwrap();
            }
        }),
        allow_disconnect: false,
        short_timers: false,
    });
}

#[test]
fn blackout_longer_than_idle_timeout() {
    // Silence past both sides' idle timers ends the connection; the client reconnects by
    // itself, logs in again, catches up and resends its outbox once. Every duration comes
    // from the kit's `TIMERS` (4.5 s of blackout against a 4 s idle timeout).
    let f = run(Case {
        name: "blackout longer than the idle timeout",
        short_timers: true,
        rounds: 6,
        alice: FaultConfig::both(61, Faults::NONE),
        bob: None,
        between: Box::new(|i, cx| {
            if i == 2 {
                cx.a.blackout(true);
                let start = Instant::now();
                // Messages written during the outage wait in the outbox.
                cx.alice.send("#general", "alice during the blackout");
                cx.bob.send("@alice", "bob to alice during the blackout");
                let lost = cx
                    .alice
                    .expect_within("disconnected", TIMERS.lost_within(), |v| {
                        v["event"] == "disconnected"
                    });
                cx.note.push_str(&format!(
                    "connection declared lost after {:.1}s ({}); ",
                    start.elapsed().as_secs_f64(),
                    lost["reason"]
                ));
                std::thread::sleep(TIMERS.blackout().saturating_sub(start.elapsed()));
                cx.a.blackout(false);
                let t = Instant::now();
                cx.alice
                    .expect_within("reconnected", TIMERS.back_within(), |v| {
                        v["event"] == "reconnected"
                    });
                cx.bob.expect("alice's outage message", |v| {
                    v["event"] == "message" && v["text"] == "alice during the blackout"
                });
                cx.note.push_str(&format!(
                    "reconnected and outbox delivered {:.1}s after the outage; ",
                    t.elapsed().as_secs_f64()
                ));
            }
        }),
        allow_disconnect: true,
    });
    assert_eq!(f.disconnects, 1);
}
