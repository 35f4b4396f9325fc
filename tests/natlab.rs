//! The NAT lab: real kernels, real NAT. Each test builds its own three network namespaces
//! with `scripts/natlab.sh` (a client LAN behind a router doing nftables masquerade, and a
//! WAN side with the server), runs the real `livewire` binary inside them, breaks the path
//! (rebinding, random drop, blackout, NAT mapping expiry) and ends with the P1–P7 checks of
//! docs/TESTING.md, through the shared test kit (`tests/common`) under `ip netns exec`.
//! Needs root, `ip`, `nft` and `conntrack` (and `miniupnpd` for the port-mapping case);
//! without them each test prints `SKIPPED: …` and returns. Namespaces are removed even when
//! a test fails (a guard's Drop runs `natlab.sh down`). Run with `--nocapture` to see each
//! case's `figures:` line (docs/NETWORK.md quotes them).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{
    ChatProc, ClientOpts, Record, ServerProc, TIMERS, Tally, WAIT, check_conversation,
    check_properties, stderr_path,
};

const SERVER_LIMITS: &[&str] = &["--msg-burst", "10000", "--msg-rate", "10000"];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/natlab.sh")
}

/// One lab (three namespaces). Dropping it tears the lab down.
struct Lab {
    prefix: String,
    wan_net: String,
    dir: tempfile::TempDir,
    /// Extra environment for natlab.sh (e.g. miniupnpd's lifetimes).
    env: Vec<(&'static str, &'static str)>,
}

impl Lab {
    /// Builds a lab, or prints why it cannot and returns `None`.
    fn up(tag: &str, wan_net: &str, needs: &[&str]) -> Option<Lab> {
        Self::up_with(tag, wan_net, needs, vec![])
    }

    fn up_with(
        tag: &str,
        wan_net: &str,
        needs: &[&str],
        env: Vec<(&'static str, &'static str)>,
    ) -> Option<Lab> {
        let prefix = format!("lw{}{tag}", std::process::id() % 100_000);
        let check = Command::new("bash")
            .arg(script())
            .arg("check")
            .env("NATLAB_PREFIX", &prefix)
            .output();
        let reason = match check {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
            Err(e) => Some(format!("cannot run bash: {e}")),
        };
        let missing: Vec<&str> = needs
            .iter()
            .copied()
            .filter(|t| {
                !Command::new("sh")
                    .args(["-c", &format!("command -v {t}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .collect();
        let reason = reason.or_else(|| {
            (!missing.is_empty()).then(|| format!("missing tool: {}", missing.join(", ")))
        });
        if let Some(r) = reason {
            // Straight to stderr, past the test harness's capture: a skip is never silent.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: needs root and ip netns / nft / conntrack{} ({r})",
                if needs.is_empty() { "" } else { " / miniupnpd" }
            );
            return None;
        }
        let lab = Lab {
            prefix,
            wan_net: wan_net.to_owned(),
            dir: tempfile::tempdir().unwrap(),
            env,
        };
        lab.sh(&["up"]);
        Some(lab)
    }

    fn sh(&self, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(script())
            .args(args)
            .env("NATLAB_PREFIX", &self.prefix)
            .env("NATLAB_WAN_NET", &self.wan_net)
            .env("NATLAB_STATE_DIR", self.dir.path().join("state"))
            .envs(self.env.iter().copied())
            .output()
            .expect("run natlab.sh");
        assert!(
            out.status.success(),
            "natlab.sh {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The command prefix that runs a process inside namespace `ns` (`lan`, `rtr`, `wan`).
    fn netns(&self, ns: &str) -> Vec<String> {
        ["ip", "netns", "exec", &format!("{}_{ns}", self.prefix)]
            .map(str::to_owned)
            .to_vec()
    }

    fn wan_ip(&self, host: u8) -> String {
        format!("{}.{host}", self.wan_net)
    }

    /// Packets the impairment rule dropped so far.
    fn dropped(&self) -> u64 {
        self.sh(&["counters"])
            .split_whitespace()
            .filter_map(|w| w.parse::<u64>().ok())
            .sum()
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("down")
            .env("NATLAB_PREFIX", &self.prefix)
            .env("NATLAB_STATE_DIR", self.dir.path().join("state"))
            .stdout(Stdio::null())
            .status();
    }
}

/// A headless server in namespace `ns` listening on `listen` (data and log under the lab's
/// home), with the rate limits out of the way.
fn start_server(lab: &Lab, ns: &str, listen: &str, extra: &[&str]) -> ServerProc {
    let mut args = SERVER_LIMITS.to_vec();
    args.extend_from_slice(extra);
    ServerProc::start_under(&lab.netns(ns), &server_dir(lab, ns, listen), listen, &args)
}

/// Where the server of `ns` on `listen` keeps its data (its log is beside it).
fn server_dir(lab: &Lab, ns: &str, listen: &str) -> PathBuf {
    lab.home()
        .join(format!("server-{ns}-{}", listen.replace(':', "_")))
}

/// A logged-in scripted client in namespace `ns`, with `extra` arguments.
fn start_chat(lab: &Lab, ns: &str, server: &str, user: &str, extra: &[&str]) -> ChatProc {
    let mut o = ClientOpts::new(lab.home());
    o.extra = extra.iter().map(|a| a.to_string()).collect();
    ChatProc::login_under(&lab.netns(ns), server, user, o)
}

/// Alice and bob behind the NAT, carol on the server's side.
struct Chat {
    server: ServerProc,
    alice: ChatProc,
    bob: ChatProc,
    carol: ChatProc,
}

fn chat_setup(lab: &Lab) -> Chat {
    chat_setup_with(lab, &[], &[])
}

/// [`chat_setup`] with more arguments for the server and the clients (timers).
fn chat_setup_with(lab: &Lab, server_args: &[String], client_args: &[String]) -> Chat {
    let server_args: Vec<&str> = server_args.iter().map(String::as_str).collect();
    let args: Vec<&str> = client_args.iter().map(String::as_str).collect();
    let listen = format!("{}:0", lab.wan_ip(2));
    let mut server = start_server(lab, "wan", &listen, &server_args);
    let addr = server.addr.clone();
    let mut alice = start_chat(lab, "lan", &addr, "alice", &args);
    let mut bob = start_chat(lab, "lan", &addr, "bob", &args);
    let mut carol = start_chat(lab, "wan", &addr, "carol", &args);
    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync();
    }
    // The server sees alice through the NAT: at the router's WAN address.
    let seen = server.expect("alice connected", |v| {
        v["event"] == "client_connected" && v["user"] == "alice"
    });
    let router = format!("{}:", lab.wan_ip(1));
    assert!(
        seen["addr"].as_str().unwrap().starts_with(&router),
        "alice should come from the router {router}: {seen}"
    );
    Chat {
        server,
        alice,
        bob,
        carol,
    }
}

fn round(c: &mut Chat, i: usize) {
    c.alice.send("#general", &format!("alice #{i}"));
    c.bob.send("#general", &format!("bob #{i}"));
    c.carol.send("#general", &format!("carol #{i}"));
    c.alice.send("@bob", &format!("alice to bob #{i}"));
    c.carol.send("@alice", &format!("carol to alice #{i}"));
}

/// What a case measured.
struct Outcome {
    tally: Tally,
    disconnects: usize,
    migrations: usize,
}

/// Final barriers, logout, P1–P7 and the delivery checks, and the counts for the figures
/// line.
fn finish(c: Chat, wait: Duration) -> Outcome {
    let Chat {
        server,
        mut alice,
        mut bob,
        mut carol,
    } = c;
    for _ in 0..2 {
        for p in [&mut alice, &mut bob, &mut carol] {
            p.sync_within(wait);
        }
    }
    let disconnects = alice.count("disconnected") + bob.count("disconnected");
    let logs: Vec<(String, Vec<Value>)> = [alice, bob, carol]
        .into_iter()
        .map(ChatProc::finish_ok)
        .collect();
    let server_log = server.stop();
    let migrations = common::events(&server_log, "client_migrated").len();
    let records: Vec<Record> = logs
        .iter()
        .map(|(u, l)| Record { user: u, log: l })
        .collect();
    Outcome {
        tally: check_conversation(&records, &["alice", "bob", "carol"]),
        disconnects,
        migrations,
    }
}

fn figures(name: &str, o: &Outcome, elapsed: Duration, note: &str) {
    println!(
        "figures: {name}: sent {} delivered {}/{} shown-twice {} disconnects {} migrations {} in {:.1}s {note}",
        o.tally.acked,
        o.tally.delivered,
        o.tally.expected,
        o.tally.shown_twice,
        o.disconnects,
        o.migrations,
        elapsed.as_secs_f64()
    );
}

#[test]
fn chat_through_nat() {
    let Some(lab) = Lab::up("c", "192.0.2", &[]) else {
        return;
    };
    let t = Instant::now();
    let mut c = chat_setup(&lab);
    for i in 0..10 {
        round(&mut c, i);
    }
    let o = finish(c, WAIT);
    assert_eq!(o.disconnects, 0);
    figures("chat through NAT", &o, t.elapsed(), "");
}

#[test]
fn rebinding_every_three_seconds() {
    let Some(lab) = Lab::up("r", "192.0.2", &[]) else {
        return;
    };
    let t = Instant::now();
    let mut c = chat_setup(&lab);
    let mut note = String::new();
    for k in 0..4 {
        for i in 0..6 {
            round(&mut c, k * 6 + i);
            std::thread::sleep(Duration::from_millis(500));
        }
        let from = c.server.log.len();
        lab.sh(&["rebind"]);
        let at = Instant::now();
        // Both LAN clients get new public ports; the server notices on their next packets.
        c.alice
            .send("#general", &format!("alice after rebinding {k}"));
        c.bob.send("#general", &format!("bob after rebinding {k}"));
        c.server
            .wait_for(from, WAIT, &format!("both migrated (rebind {k})"), |l| {
                ["alice", "bob"].iter().all(|u| {
                    l.iter().any(|v| {
                        v["event"] == "client_migrated" && v["user"] == *u && v["addr"] != v["from"]
                    })
                })
            });
        note.push_str(&format!(
            "rebind {k}: both migrated in {}ms; ",
            at.elapsed().as_millis()
        ));
    }
    let o = finish(c, WAIT);
    assert_eq!(o.disconnects, 0, "a rebinding must not cost a new login");
    assert!(o.migrations >= 8, "{}", o.migrations);
    figures("rebinding every 3 s", &o, t.elapsed(), &note);
}

fn lossy(tag: &str, pct: u32) {
    let Some(lab) = Lab::up(tag, "192.0.2", &[]) else {
        return;
    };
    let mut c = chat_setup(&lab);
    lab.sh(&["loss", &pct.to_string()]);
    let t = Instant::now();
    for i in 0..12 {
        round(&mut c, i);
        std::thread::sleep(Duration::from_millis(200));
    }
    // Under loss the barriers take longer: retransmissions, not a broken client.
    for p in [&mut c.alice, &mut c.bob, &mut c.carol] {
        p.sync_within(Duration::from_secs(90));
    }
    let converged = t.elapsed();
    let dropped = lab.dropped();
    lab.sh(&["loss", "off"]);
    let o = finish(c, WAIT);
    figures(
        &format!("random drop {pct}%"),
        &o,
        converged,
        &format!("({dropped} datagrams dropped by the router)"),
    );
    assert!(dropped > 0);
}

#[test]
fn random_drop_10_percent() {
    lossy("l10", 10);
}

#[test]
fn random_drop_30_percent() {
    lossy("l30", 30);
}

#[test]
fn blackout_longer_than_idle_timeout() {
    // The timers (and so every duration below) come from the test kit's `TIMERS`.
    let Some(lab) = Lab::up("b", "192.0.2", &[]) else {
        return;
    };
    let t0 = Instant::now();
    let mut c = chat_setup_with(&lab, &TIMERS.server_args(), &TIMERS.client_args());
    for i in 0..3 {
        round(&mut c, i);
    }
    c.alice.sync();
    lab.sh(&["blackout", "on"]);
    let start = Instant::now();
    c.alice.send("#general", "alice during the blackout");
    c.carol.send("@alice", "carol to alice during the blackout");
    let lost = c
        .alice
        .expect_within("disconnected", TIMERS.lost_within(), |v| {
            v["event"] == "disconnected"
        });
    let lost_after = start.elapsed();
    std::thread::sleep(TIMERS.blackout().saturating_sub(start.elapsed()));
    lab.sh(&["blackout", "off"]);
    let lifted = Instant::now();
    c.alice
        .expect_within("reconnected", TIMERS.back_within(), |v| {
            v["event"] == "reconnected"
        });
    let back = lifted.elapsed();
    c.carol.expect("alice's message from the outage", |v| {
        v["event"] == "message" && v["text"] == "alice during the blackout"
    });
    c.alice.expect("carol's message from the outage", |v| {
        v["event"] == "message" && v["text"] == "carol to alice during the blackout"
    });
    let delivered = lifted.elapsed();
    for i in 3..6 {
        round(&mut c, i);
    }
    let o = finish(c, WAIT);
    assert!(o.disconnects >= 1);
    figures(
        &format!("blackout {} s", TIMERS.blackout().as_secs()),
        &o,
        t0.elapsed(),
        &format!(
            "(declared lost after {:.1}s: {}; logged in again {:.1}s and both outage messages delivered {:.1}s after the outage)",
            lost_after.as_secs_f64(),
            lost["reason"],
            back.as_secs_f64(),
            delivered.as_secs_f64()
        ),
    );
}

#[test]
fn nat_mapping_expiry_in_quiet_periods() {
    let Some(lab) = Lab::up("q", "192.0.2", &[]) else {
        return;
    };
    let t0 = Instant::now();
    let mut c = chat_setup(&lab);
    let mut note = String::new();

    // A: the router forgets idle UDP mappings after 20 s; the 15 s keep-alive refreshes
    // them, so 30 quiet seconds change nothing.
    lab.sh(&["udp-timeout", "20"]);
    std::thread::sleep(Duration::from_secs(30));
    let migrated_before = c.server.log.len();
    let sent = Instant::now();
    c.carol.send("@alice", "after 30 quiet seconds");
    c.alice.expect("message after the quiet period", |v| {
        v["event"] == "message" && v["text"] == "after 30 quiet seconds"
    });
    note.push_str(&format!(
        "timeout 20s, quiet 30s: delivered in {}ms; ",
        sent.elapsed().as_millis()
    ));
    c.alice.sync();
    assert!(
        !c.server.log[migrated_before..]
            .iter()
            .any(|v| v["event"] == "client_migrated" && v["user"] == "alice"),
        "no mapping should have expired"
    );
    let from = c.server.log.len();

    // B: the router forgets after 5 s, shorter than the keep-alive: a message for alice in
    // the quiet period hits a dead mapping and waits for her next keep-alive, which makes
    // a new mapping (a new public port): the server sees a migration, nothing is lost.
    lab.sh(&["udp-timeout", "5"]);
    c.alice.sync();
    std::thread::sleep(Duration::from_secs(8));
    let sent = Instant::now();
    c.carol.send("@alice", "while alice's mapping is gone");
    c.alice.expect("message after the mapping expired", |v| {
        v["event"] == "message" && v["text"] == "while alice's mapping is gone"
    });
    let waited = sent.elapsed();
    c.server
        .wait_for(from, WAIT, "alice migrated to a new mapping", |l| {
            l.iter()
                .any(|v| v["event"] == "client_migrated" && v["user"] == "alice")
        });
    note.push_str(&format!(
        "timeout 5s: message into the dead mapping delivered after {:.1}s (next keep-alive), via a migration; ",
        waited.as_secs_f64()
    ));
    lab.sh(&["udp-timeout", "120"]);
    for i in 0..3 {
        round(&mut c, i);
    }
    let o = finish(c, WAIT);
    assert_eq!(o.disconnects, 0);
    figures("NAT mapping expiry", &o, t0.elapsed(), &note);
}

#[test]
fn port_mapping_with_miniupnpd() {
    // miniupnpd refuses to map when the router's WAN address is private or reserved, so
    // this lab's WAN /24 looks public. It exists only on the lab's own veths.
    // The router grants at most 12 s, so the server has to renew (every 6 s) to keep it.
    let Some(lab) = Lab::up_with(
        "p",
        "11.0.0",
        &["miniupnpd"],
        vec![
            ("NATLAB_UPNP_MIN_LIFETIME", "5"),
            ("NATLAB_UPNP_MAX_LIFETIME", "12"),
        ],
    ) else {
        return;
    };
    let t0 = Instant::now();
    // Without a router daemon: a clear error, and the server runs anyway.
    let lonely = start_server(&lab, "lan", "0.0.0.0:7450", &["--port-mapping"]);
    let err = lonely.log[0]["port_mapping_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(err.contains("port mapping failed"), "{:?}", lonely.log[0]);
    assert!(lonely.log[0].get("public_addr").is_none());
    lonely.stop();

    lab.sh(&["upnp", "start"]);
    let mut note = format!("without a daemon: {err:?}; ");
    // Each protocol on its own port: mapped, visible on the router, removed on SIGTERM.
    for (proto, port) in [("upnp", 7451), ("natpmp", 7452), ("pcp", 7453)] {
        let s = start_server(
            &lab,
            "lan",
            &format!("0.0.0.0:{port}"),
            &["--port-mapping", proto],
        );
        let l = &s.log[0];
        assert_eq!(l["public_addr"], format!("{}:{port}", lab.wan_ip(1)), "{l}");
        assert_eq!(l["port_mapping"], proto, "{l}");
        assert!(lab.sh(&["upnp-rules"]).contains(&format!("dport {port} ")));
        let log = s.stop();
        assert!(
            log.iter().any(|v| v["event"] == "port_mapping_removed"),
            "{log:?}"
        );
        assert!(!lab.sh(&["upnp-rules"]).contains(&format!("dport {port} ")));
    }
    note.push_str("upnp, natpmp and pcp each mapped and removed; ");

    // The full case: a server on the LAN maps its port; carol on the internet side uses the
    // public address, alice on the LAN the local one; then the mapping goes on shutdown.
    let mut server = start_server(&lab, "lan", "0.0.0.0:7447", &["--port-mapping"]);
    let public = server.log[0]["public_addr"]
        .as_str()
        .unwrap_or_else(|| panic!("no mapping: {}", server.log[0]))
        .to_owned();
    assert_eq!(public, format!("{}:7447", lab.wan_ip(1)));
    assert!(lab.sh(&["upnp-rules"]).contains("dport 7447 "));
    let mut carol = start_chat(&lab, "wan", &public, "carol", &[]);
    let mut alice = start_chat(&lab, "lan", "10.0.0.2:7447", "alice", &[]);
    server.expect("carol from the internet side", |v| {
        v["event"] == "client_connected" && v["user"] == "carol"
    });
    for i in 0..5 {
        carol.send("#general", &format!("carol #{i}"));
        alice.send("#general", &format!("alice #{i}"));
    }
    for _ in 0..2 {
        carol.sync();
        alice.sync();
    }
    let logs = vec![alice.finish_ok(), carol.finish_ok()];
    let records: Vec<Record> = logs
        .iter()
        .map(|(u, l)| Record { user: u, log: l })
        .collect();
    check_properties(&records, &["alice", "carol"]);
    for (u, l) in &logs {
        assert_eq!(
            l.iter().filter(|v| v["event"] == "message").count(),
            5,
            "{u}: {l:?}"
        );
    }
    // Renewal: wait (barrier on the server's log) for three renewals, i.e. well past the
    // 12 s the router granted; the forwarding rule must still be there.
    let stderr = stderr_path(&server_dir(&lab, "lan", "0.0.0.0:7447"));
    let deadline = Instant::now() + Duration::from_secs(40);
    let renewals = loop {
        let n = std::fs::read_to_string(&stderr)
            .unwrap_or_default()
            .matches("port mapping renewed")
            .count();
        if n >= 3 {
            break n;
        }
        assert!(Instant::now() < deadline, "no renewals: {stderr:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(lab.sh(&["upnp-rules"]).contains("dport 7447 "));
    note.push_str(&format!(
        "{renewals} renewals of a 12 s lease kept it alive; "
    ));
    let log = server.stop();
    assert!(log.iter().any(|v| v["event"] == "port_mapping_removed"));
    assert!(!lab.sh(&["upnp-rules"]).contains("dport 7447 "));
    lab.sh(&["upnp", "stop"]);
    note.push_str(&format!(
        "chat via {public} ok, mapping gone after shutdown"
    ));
    println!(
        "figures: port mapping: {note} in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}
