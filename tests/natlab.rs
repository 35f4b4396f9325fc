//! The NAT lab: real kernels, real NAT. Each test builds its own three network namespaces
//! with `scripts/natlab.sh` (a client LAN behind a router doing nftables masquerade, and a
//! WAN side with the server), runs the real `livewire` binary inside them, breaks the path
//! (rebinding, random drop, blackout, NAT mapping expiry) and ends with TESTING.md's P1–P7.
//! Needs root, `ip`, `nft` and `conntrack` (and `miniupnpd` for the port-mapping case);
//! without them each test prints `SKIPPED: …` and returns. Namespaces are removed even when
//! a test fails (a guard's Drop runs `natlab.sh down`). Run with `--nocapture` to see each
//! case's `figures:` line (docs/NETWORK.md quotes them).

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::{PASSWORD, Record, WAIT, bin, check_properties, wait_child};
use serde_json::{Value, json};

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

    /// A command that runs `livewire` inside namespace `ns` (`lan`, `rtr`, `wan`).
    fn livewire(&self, ns: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}_{ns}", self.prefix), bin()]);
        c
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

/// A `livewire` process printing JSON lines (server or scripted client).
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    log: Vec<Value>,
    seen: usize,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, stderr_to: &Path) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr_to).unwrap())
            .spawn()
            .expect("spawn livewire");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"event": "_unparsed", "line": line}));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            events: rx,
            log: Vec::new(),
            seen: 0,
        }
    }

    fn server(lab: &Lab, ns: &str, listen: &str, extra: &[&str]) -> Self {
        let data = lab
            .home()
            .join(format!("server-{ns}-{}", listen.replace(':', "_")));
        let mut cmd = lab.livewire(ns);
        cmd.args(["server", "--headless", "--listen", listen, "--data-dir"])
            .arg(&data)
            .args(SERVER_LIMITS)
            .args(extra)
            .env("RUST_LOG", "livewire=info");
        let mut p = Self::spawn("server", cmd, &server_stderr(lab, ns, listen));
        p.expect("listening", |v| v["event"] == "listening");
        p
    }

    fn chat(lab: &Lab, ns: &str, server: &str, user: &str) -> Self {
        let dir = lab.home().join(user);
        let mut cmd = lab.livewire(ns);
        cmd.args(["chat", "--server", server, "--user", user, "--accept-new"])
            .arg("--config-dir")
            .arg(dir.join("config"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env("LIVEWIRE_PASSWORD", PASSWORD)
            .env("RUST_LOG", "warn");
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = Self::spawn(user, cmd, &dir.join("stderr.log"));
        p.expect("ready", |v| v["event"] == "ready");
        p
    }

    fn expect_within(
        &mut self,
        wait: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + wait;
        loop {
            while self.seen < self.log.len() {
                self.seen += 1;
                if pred(&self.log[self.seen - 1]) {
                    return self.log[self.seen - 1].clone();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => self.log.push(v),
                Err(e) => panic!("{}: no {what} ({e:?}); log: {:#?}", self.name, self.log),
            }
        }
    }

    fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.expect_within(WAIT, what, pred)
    }

    /// Waits until `pred` holds for everything printed since index `from` (the cursor of
    /// `expect` is left alone).
    fn wait_for(
        &mut self,
        from: usize,
        wait: Duration,
        what: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) {
        let deadline = Instant::now() + wait;
        while !pred(&self.log[from.min(self.log.len())..]) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => self.log.push(v),
                Err(e) => panic!("{}: no {what} ({e:?}); log: {:#?}", self.name, self.log),
            }
        }
    }

    /// The first event (printed or to come) matching `pred`, leaving the cursor alone.
    fn find_any(&mut self, wait: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(0, wait, what, |l| l.iter().any(&pred));
        self.log
            .iter()
            .find(|v| pred(v))
            .cloned()
            .expect("just seen")
    }

    fn cmd(&mut self, v: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{v}").unwrap();
        stdin.flush().unwrap();
    }

    fn send(&mut self, to: &str, text: &str) {
        self.cmd(json!({"cmd": "send", "to": to, "text": text}));
    }

    fn sync_within(&mut self, wait: Duration) {
        self.cmd(json!({"cmd": "sync"}));
        self.expect_within(wait, "sync", |v| v["event"] == "sync");
    }

    fn count(&self, kind: &str) -> usize {
        self.log.iter().filter(|v| v["event"] == kind).count()
    }

    /// Closes stdin (flush, log out) and collects everything printed.
    fn finish(mut self) -> (String, Vec<Value>) {
        self.stdin.take();
        let status = wait_child(&mut self.child);
        while let Ok(v) = self.events.recv_timeout(Duration::from_millis(100)) {
            self.log.push(v);
        }
        assert!(status.success(), "{} exit {status:?}", self.name);
        (self.name.clone(), std::mem::take(&mut self.log))
    }

    /// SIGTERM (graceful) and everything printed.
    fn stop(mut self) -> Vec<Value> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = wait_child(&mut self.child);
        while let Ok(v) = self.events.recv_timeout(Duration::from_millis(200)) {
            self.log.push(v);
        }
        assert!(status.success(), "{} exit {status:?}", self.name);
        std::mem::take(&mut self.log)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a server's log (stderr) goes.
fn server_stderr(lab: &Lab, ns: &str, listen: &str) -> PathBuf {
    lab.home().join(format!(
        "server-{ns}-{}.stderr.log",
        listen.replace(':', "_")
    ))
}

/// Alice and bob behind the NAT, carol on the server's side.
struct Chat {
    server: Proc,
    alice: Proc,
    bob: Proc,
    carol: Proc,
}

fn chat_setup(lab: &Lab) -> Chat {
    let mut server = Proc::server(lab, "wan", &format!("{}:0", lab.wan_ip(2)), &[]);
    let addr = server.log[0]["addr"].as_str().unwrap().to_owned();
    let mut alice = Proc::chat(lab, "lan", &addr, "alice");
    let mut bob = Proc::chat(lab, "lan", &addr, "bob");
    let mut carol = Proc::chat(lab, "wan", &addr, "carol");
    for c in [&mut alice, &mut bob, &mut carol] {
        c.sync_within(WAIT);
    }
    // The server sees alice through the NAT: at the router's WAN address.
    let seen = server.find_any(WAIT, "alice connected", |v| {
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

struct Outcome {
    sent: usize,
    delivered: usize,
    expected: usize,
    shown_twice: usize,
    disconnects: usize,
    migrations: usize,
}

/// Final barriers, logout, P1–P7, and the counts for the figures line.
fn finish(c: Chat, wait: Duration) -> Outcome {
    let Chat {
        server,
        mut alice,
        mut bob,
        mut carol,
        ..
    } = c;
    for _ in 0..2 {
        for p in [&mut alice, &mut bob, &mut carol] {
            p.sync_within(wait);
        }
    }
    let disconnects = alice.count("disconnected") + bob.count("disconnected");
    let logs: Vec<(String, Vec<Value>)> =
        [alice, bob, carol].into_iter().map(Proc::finish).collect();
    let server_log = server.stop();
    let migrations = server_log
        .iter()
        .filter(|v| v["event"] == "client_migrated")
        .count();
    for (user, log) in &logs {
        let errors: Vec<&Value> = log.iter().filter(|v| v["event"] == "error").collect();
        assert!(errors.is_empty(), "{user}: {errors:?}");
        let acks: Vec<u64> = log
            .iter()
            .filter(|v| v["event"] == "sent")
            .map(|v| v["id"].as_u64().unwrap())
            .collect();
        let unique: HashSet<u64> = acks.iter().copied().collect();
        assert_eq!(acks.len(), unique.len(), "{user}: an ack shown twice");
    }
    let records: Vec<Record> = logs
        .iter()
        .map(|(u, l)| Record { user: u, log: l })
        .collect();
    check_properties(&records, &["alice", "bob", "carol"]);
    let sent = logs
        .iter()
        .flat_map(|(_, l)| l.iter().filter(|v| v["event"] == "sent"))
        .count();
    let expected = logs
        .iter()
        .flat_map(|(_, l)| l.iter().filter(|v| v["event"] == "sent"))
        .map(|v| if v["conv"] == "#general" { 2 } else { 1 })
        .sum();
    let mut delivered = 0;
    let mut shown_twice = 0;
    for (_, log) in &logs {
        let ids: Vec<u64> = log
            .iter()
            .filter(|v| v["event"] == "message")
            .map(|v| v["id"].as_u64().unwrap())
            .collect();
        let unique: HashSet<u64> = ids.iter().copied().collect();
        shown_twice += ids.len() - unique.len();
        delivered += unique.len();
    }
    assert_eq!(delivered, expected);
    Outcome {
        sent,
        delivered,
        expected,
        shown_twice,
        disconnects,
        migrations,
    }
}

fn figures(name: &str, o: &Outcome, elapsed: Duration, note: &str) {
    println!(
        "figures: {name}: sent {} delivered {}/{} shown-twice {} disconnects {} migrations {} in {:.1}s {note}",
        o.sent,
        o.delivered,
        o.expected,
        o.shown_twice,
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
    let Some(lab) = Lab::up("b", "192.0.2", &[]) else {
        return;
    };
    let t0 = Instant::now();
    let mut c = chat_setup(&lab);
    for i in 0..3 {
        round(&mut c, i);
    }
    c.alice.sync_within(WAIT);
    lab.sh(&["blackout", "on"]);
    let start = Instant::now();
    c.alice.send("#general", "alice during the blackout");
    c.carol.send("@alice", "carol to alice during the blackout");
    let lost = c
        .alice
        .expect_within(Duration::from_secs(70), "disconnected", |v| {
            v["event"] == "disconnected"
        });
    let lost_after = start.elapsed();
    std::thread::sleep(Duration::from_secs(45).saturating_sub(start.elapsed()));
    lab.sh(&["blackout", "off"]);
    let lifted = Instant::now();
    c.alice
        .expect_within(Duration::from_secs(90), "reconnected", |v| {
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
        "blackout 45 s",
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
    c.alice.sync_within(WAIT);
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
    c.alice.sync_within(WAIT);
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
    let lonely = Proc::server(&lab, "lan", "0.0.0.0:7450", &["--port-mapping"]);
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
        let s = Proc::server(
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
    let mut server = Proc::server(&lab, "lan", "0.0.0.0:7447", &["--port-mapping"]);
    let public = server.log[0]["public_addr"]
        .as_str()
        .unwrap_or_else(|| panic!("no mapping: {}", server.log[0]))
        .to_owned();
    assert_eq!(public, format!("{}:7447", lab.wan_ip(1)));
    assert!(lab.sh(&["upnp-rules"]).contains("dport 7447 "));
    let mut carol = Proc::chat(&lab, "wan", &public, "carol");
    let mut alice = Proc::chat(&lab, "lan", "10.0.0.2:7447", "alice");
    server.find_any(WAIT, "carol from the internet side", |v| {
        v["event"] == "client_connected" && v["user"] == "carol"
    });
    for i in 0..5 {
        carol.send("#general", &format!("carol #{i}"));
        alice.send("#general", &format!("alice #{i}"));
    }
    for _ in 0..2 {
        carol.sync_within(WAIT);
        alice.sync_within(WAIT);
    }
    let logs = vec![alice.finish(), carol.finish()];
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
    let stderr = server_stderr(&lab, "lan", "0.0.0.0:7447");
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
