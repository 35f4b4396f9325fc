//! Clients that know several server addresses (issue 15): the nodes of a cluster given as a
//! list (`--server a:7447,b:7447`), and a name with several addresses.
//!
//! - Two real single-node servers share one PostgreSQL database (started by the test) and
//!   one identity (the second node's data dir gets a copy of the first's `cert.pem` and
//!   `key.pem`, which is how a node loads its certificate). A client given both addresses
//!   is on the first when it is SIGKILLed mid-burst: the client continues on the second
//!   within seconds, with the usual resume (outbox resent, catch-up by sequence), and
//!   nothing acknowledged is lost or doubled, order kept (P1–P7). Without NATS the nodes do
//!   not forward live events to each other: what crosses between them goes through the
//!   shared database (exactly-once on resend, catch-up, offline delivery).
//! - A name that resolves to two addresses, the first of which never answers: the client
//!   is on the second within a fraction of the handshake timeout. The name comes from a
//!   hosts file bind-mounted over `/etc/hosts` in a private mount namespace of the client
//!   alone (`unshare --mount`, root), so the machine's resolver is never touched; without
//!   that the case prints `SKIPPED: …`.

mod common;
#[cfg(feature = "postgres")]
#[path = "common/postgres.rs"]
mod postgres;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const FAST: &[&str] = &["--msg-burst", "10000", "--msg-rate", "10000"];

/// Server arguments: fast rate limits, the short test timers, and `extra`.
fn server_args(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
    args.extend(TIMERS.server_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn start_server(data: &Path, listen: &str, args: &[String]) -> ServerProc {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServerProc::start(data, listen, &args)
}

/// Client options with the short test timers; `trust` replaces `--accept-new`.
fn client_opts(home: &Path, trust: &[&str]) -> ClientOpts {
    let mut o = ClientOpts::new(home);
    o.trust = trust.iter().map(|s| s.to_string()).collect();
    o.extra = TIMERS.client_args();
    o
}

fn texts<'a>(log: &'a [Value], kind: &str, conv: &str) -> Vec<&'a str> {
    events(log, kind)
        .into_iter()
        .filter(|v| v["conv"] == conv)
        .map(|v| v["text"].as_str().unwrap_or(""))
        .collect()
}

#[cfg(not(feature = "postgres"))]
#[test]
fn a_client_fails_over_to_the_next_node_when_its_node_is_killed_mid_burst() {
    eprintln!(
        "SKIPPED: a_client_fails_over_to_the_next_node_when_its_node_is_killed_mid_burst: \
         built without the postgres feature (two nodes need a shared database)"
    );
}

#[cfg(feature = "postgres")]
#[test]
fn a_client_fails_over_to_the_next_node_when_its_node_is_killed_mid_burst() {
    let Some(db) = postgres::fresh_database("failover_mid_burst") else {
        return;
    };
    let url = db.url();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let args = server_args(&["--database", &url]);
    let data_a = dir.path().join("node-a");
    let data_b = dir.path().join("node-b");
    let node_a = start_server(&data_a, "127.0.0.1:0", &args);
    // One identity for the cluster: node B loads the certificate node A made.
    std::fs::create_dir_all(&data_b).unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(data_a.join(f), data_b.join(f)).unwrap();
    }
    let mut node_b = start_server(&data_b, "127.0.0.1:0", &args);
    assert_eq!(node_a.fingerprint, node_b.fingerprint, "one certificate");
    let list = format!("{},{}", node_a.addr, node_b.addr);

    // Alice pins node A alone first (trust on first use), as a user of a single server
    // would have; then she is given the whole list without --accept-new: node B is not a
    // "new server", whichever node she ends up on.
    let first = ChatProc::login_under(
        &[],
        &node_a.addr,
        "alice",
        client_opts(home, &["--accept-new"]),
    );
    first.finish_ok();
    let mut alice = ChatProc::login_under(&[], &list, "alice", client_opts(home, &[]));
    let via = alice.expect("server", |v| v["event"] == "server");
    assert_eq!(
        via["addr"],
        node_a.addr.as_str(),
        "the first address answers: {via}"
    );
    assert_eq!(via["server"], node_a.addr.as_str());
    // Bob is on node B only and stays there.
    let mut bob = ChatProc::login_under(
        &[],
        &node_b.addr,
        "bob",
        client_opts(home, &["--accept-new"]),
    );
    alice.sync();

    // A burst on node A; node A is SIGKILLed in its middle (some sends acknowledged, some
    // in flight, some still queued), and the burst goes on while the client is cut off.
    let mut n = 0;
    for _ in 0..30 {
        alice.send("#general", &format!("g{n}"));
        alice.send("@bob", &format!("p{n}"));
        n += 1;
    }
    alice.wait_for(0, WAIT, "some acks before the kill", |l| {
        l.iter().filter(|v| v["event"] == "sent").count() >= 10
    });
    let acked_before_kill = alice.count("sent");
    let killed = Instant::now();
    node_a.kill();
    for _ in 0..10 {
        alice.send("#general", &format!("g{n}"));
        alice.send("@bob", &format!("p{n}"));
        n += 1;
    }
    let patience = TIMERS.back_within() + Duration::from_secs(10);
    alice.expect_within("disconnected", patience, |v| v["event"] == "disconnected");
    alice.expect_within("reconnected", patience, |v| v["event"] == "reconnected");
    let via = alice.expect("server", |v| v["event"] == "server");
    let failover = killed.elapsed();
    assert_eq!(
        via["addr"],
        node_b.addr.as_str(),
        "on the second node: {via}"
    );
    assert!(
        failover < TIMERS.idle_timeout + Duration::from_secs(10),
        "failover took {failover:?}"
    );
    // Flush: every outbox acknowledged (resends answered from the shared database), then
    // every fan-out printed; bob's side catches up by sequence.
    alice.sync();
    alice.sync();
    bob.sync();

    // A late reader on node B: the room's history holds every message once, in order.
    let fresh = tempfile::tempdir().unwrap();
    let mut carol = ChatProc::login_under(
        &[],
        &node_b.addr,
        "carol",
        client_opts(fresh.path(), &["--accept-new"]),
    );
    carol.cmd(serde_json::json!({"cmd": "history", "conv": "#general", "limit": 1000}));
    let h = carol.expect("history", |v| v["event"] == "history");
    let history: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap_or(""))
        .collect();
    let want_general: Vec<String> = (0..n).map(|i| format!("g{i}")).collect();
    assert_eq!(history, want_general, "the room's history on node B");
    carol.finish_ok();

    let (_, alice_log) = alice.finish_ok();
    // Bob logs in again (on node B): the private messages he missed while alice was on
    // node A come from the shared database, once each, in order.
    let (_, bob_log1) = bob.finish_ok();
    let mut bob = ChatProc::login_under(&[], &node_b.addr, "bob", client_opts(home, &[]));
    bob.sync();
    let (_, bob_log2) = bob.finish_ok();
    let mut bob_log = bob_log1;
    bob_log.extend(bob_log2);

    let want_private: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    assert_eq!(
        texts(&alice_log, "sent", "#general"),
        want_general,
        "acked once each, in order"
    );
    assert_eq!(
        texts(&alice_log, "sent", "@bob"),
        want_private,
        "acked once each, in order"
    );
    assert_eq!(
        texts(&bob_log, "message", "@alice"),
        want_private,
        "bob got every private message once, in order"
    );
    assert_eq!(events(&alice_log, "error"), Vec::<&Value>::new());
    assert_eq!(events(&bob_log, "error"), Vec::<&Value>::new());
    check_properties(
        &[
            Record {
                user: "alice",
                log: &alice_log,
            },
            Record {
                user: "bob",
                log: &bob_log,
            },
        ],
        &["alice"],
    );
    // Nobody was asked to trust a new server, and the pin covers both nodes now.
    let pins = std::fs::read_to_string(home.join("alice/config/known_servers")).unwrap();
    for addr in [&node_a_addr(&list), &node_b.addr] {
        assert!(
            pins.contains(&format!("{addr} {}", node_b.fingerprint)),
            "{addr} pinned: {pins}"
        );
    }
    eprintln!(
        "figures: failover {failover:?} after SIGKILL (idle timeout {:?}); {} of {} messages acked before the kill, all {} acked once",
        TIMERS.idle_timeout,
        acked_before_kill,
        2 * n,
        2 * n
    );
    node_b.expect("alice on node B", |v| {
        v["event"] == "client_connected" && v["user"] == "alice"
    });
}

/// The first entry of `a,b`.
#[cfg(feature = "postgres")]
fn node_a_addr(list: &str) -> String {
    list.split(',').next().unwrap().to_owned()
}

/// The command prefix that runs a process with `hosts` over `/etc/hosts`, in a mount
/// namespace of its own; `None` (with a reason) when this machine cannot do that.
fn with_hosts_file(hosts: &Path) -> Result<Vec<String>, String> {
    let prefix: Vec<String> = [
        "unshare",
        "--mount",
        "--",
        "sh",
        "-c",
        &format!(
            "mount --bind '{}' /etc/hosts && exec \"$@\"",
            hosts.display()
        ),
        "sh",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = std::process::Command::new(&prefix[0])
        .args(&prefix[1..])
        .args(["getent", "ahosts", "lw-cluster.test"])
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "unshare --mount + mount --bind failed (needs root): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(prefix)
}

#[test]
fn a_name_with_several_addresses_skips_the_one_that_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    // IPv6 first: glibc keeps this order for loopback (checked below).
    std::fs::write(&hosts, "::1 lw-cluster.test\n127.0.0.1 lw-cluster.test\n").unwrap();
    let prefix = match with_hosts_file(&hosts) {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED: a_name_with_several_addresses_skips_the_one_that_is_down: {why}");
            return;
        }
    };
    let order = std::process::Command::new(&prefix[0])
        .args(&prefix[1..])
        .args(["getent", "ahosts", "lw-cluster.test"])
        .output()
        .unwrap();
    let order = String::from_utf8_lossy(&order.stdout).into_owned();
    let first_v6 = order.lines().next().unwrap_or("").starts_with("::1");
    let (down_ip, up_ip) = if first_v6 {
        ("[::1]", "127.0.0.1")
    } else {
        ("127.0.0.1", "[::1]")
    };
    let server = start_server(
        &dir.path().join("srv"),
        &format!("{up_ip}:0"),
        &server_args(&[]),
    );
    let port = server.port();
    // The first address: a socket that swallows everything, like a dead node's host.
    let _black_hole = std::net::UdpSocket::bind(format!("{down_ip}:{port}")).unwrap();

    let name = format!("lw-cluster.test:{port}");
    let started = Instant::now();
    let mut alice = ChatProc::login_under(
        &prefix,
        &name,
        "alice",
        client_opts(dir.path(), &["--accept-new"]),
    );
    let via = alice.expect("server", |v| v["event"] == "server");
    let took = started.elapsed();
    assert_eq!(via["addr"], server.addr.as_str(), "{via}");
    assert_eq!(via["server"], name.as_str());
    // Tried beside the silent one after a quarter second, not after its 10 s timeout.
    assert!(took < Duration::from_secs(8), "connecting took {took:?}");
    alice.send("#general", "through the second address");
    alice.sync();
    let (_, log) = alice.finish_ok();
    assert_eq!(
        texts(&log, "sent", "#general"),
        ["through the second address"]
    );
    // Pinned under the name, not an address.
    let pins = std::fs::read_to_string(dir.path().join("alice/config/known_servers")).unwrap();
    assert!(
        pins.contains(&format!("{name} {}", server.fingerprint)),
        "{pins}"
    );
    eprintln!(
        "figures: connected via the second address in {took:?} (resolver order: {down_ip} first)"
    );
}

/// A UDP relay between one client and a server that records the destination connection
/// IDs of the client's short-header (1-RTT) packets: the server's connection IDs, as a
/// load balancer in front of the server would see them.
struct Relay {
    addr: std::net::SocketAddr,
    dcids: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl Relay {
    fn start(server: std::net::SocketAddr, cid_len: usize) -> Self {
        use std::net::UdpSocket;
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(server).unwrap();
        let addr = front.local_addr().unwrap();
        let dcids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let client = std::sync::Arc::new(std::sync::Mutex::new(None));
        let (f, b, seen, c) = (
            front.try_clone().unwrap(),
            back.try_clone().unwrap(),
            dcids.clone(),
            client.clone(),
        );
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok((n, from)) = f.recv_from(&mut buf) {
                *c.lock().unwrap() = Some(from);
                // Short header: the top bit clear; the DCID follows the first octet.
                if n > cid_len && buf[0] & 0x80 == 0 {
                    seen.lock().unwrap().push(buf[1..1 + cid_len].to_vec());
                }
                let _ = b.send(&buf[..n]);
            }
        });
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = back.recv(&mut buf) {
                if let Some(to) = *client.lock().unwrap() {
                    let _ = front.send_to(&buf[..n], to);
                }
            }
        });
        Self { addr, dcids }
    }
}

#[test]
fn connection_ids_on_the_wire_carry_the_node_id() {
    use livewire::app::limits::Limits;
    use livewire::store::SqliteStore;
    use livewire::transport::cid::{CID_LEN, node_id_of};
    use livewire::transport::quic;
    use livewire::transport::server::{Server, ServerOptions};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(async {
        let opts = ServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.clone(),
            cert: None,
            limits: Limits::default(),
            timers: quic::Timers::SERVER,
            node_id: 7,
            nats: None,
        };
        Server::start(opts, SqliteStore::open(&data).unwrap())
            .await
            .unwrap()
    });
    let relay = Relay::start(server.local_addr(), CID_LEN);
    let mut alice = ChatProc::login(&relay.addr.to_string(), "alice", dir.path());
    alice.send("#general", "routed by connection ID");
    alice.sync();
    let (_, log) = alice.finish_ok();
    assert_eq!(events(&log, "sent").len(), 1);
    let dcids = relay.dcids.lock().unwrap().clone();
    assert!(
        dcids.len() >= 3,
        "short-header packets seen: {}",
        dcids.len()
    );
    for d in &dcids {
        assert_eq!(node_id_of(d), Some(7), "a server connection ID: {d:02x?}");
    }
    let distinct: std::collections::HashSet<&Vec<u8>> = dcids.iter().collect();
    eprintln!(
        "figures: {} short-header packets, {} distinct server connection IDs, all with node id 7",
        dcids.len(),
        distinct.len()
    );
    rt.block_on(server.shutdown("test over"));
}
