//! Test harness: the real `livewire` binary as a headless server and as scripted clients,
//! on 127.0.0.1 in temporary directories. Waiting is done on events (the `sync` barrier or
//! an expected line), with a generous timeout that only fires when something is broken.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(40);
/// The password every test user registers with.
pub const PASSWORD: &str = "correct horse battery";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_livewire")
}

fn reader(stream: impl std::io::Read + Send + 'static) -> Receiver<Value> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let v = serde_json::from_str(&line)
                .unwrap_or_else(|_| json!({"event": "_unparsed", "line": line}));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    rx
}

/// A headless server process.
pub struct ServerProc {
    pub child: Child,
    pub addr: String,
    pub fingerprint: String,
    pub data_dir: PathBuf,
    events: Receiver<Value>,
    pub log: Vec<Value>,
}

impl ServerProc {
    pub fn start(data_dir: &Path, listen: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(bin())
            .args(["server", "--headless", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "livewire=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let events = reader(child.stdout.take().unwrap());
        let stderr = child.stderr.take().unwrap();
        let log_path = data_dir.with_extension("stderr.log");
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(log_path).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = f.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        let first = events.recv_timeout(WAIT).expect("server printed nothing");
        assert_eq!(first["event"], "listening", "{first}");
        Self {
            child,
            addr: first["addr"].as_str().unwrap().to_owned(),
            fingerprint: first["fingerprint"].as_str().unwrap().to_owned(),
            data_dir: data_dir.to_owned(),
            events,
            log: vec![first],
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Waits for a server event matching `pred`.
    pub fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        if let Some(v) = self.log.iter().find(|v| pred(v)) {
            return v.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.log.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!("server: no {what} within {WAIT:?}; got {:?}", self.log),
            }
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> Vec<Value> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = wait_child(&mut self.child);
        assert!(status.success(), "server exit status {status:?}");
        while let Ok(v) = self.events.recv_timeout(Duration::from_millis(200)) {
            self.log.push(v);
        }
        std::mem::take(&mut self.log)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_child(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Options for a scripted client.
#[derive(Clone)]
pub struct ClientOpts {
    pub password: String,
    pub trust: Vec<String>,
    pub home: PathBuf,
    pub extra: Vec<String>,
}

impl ClientOpts {
    /// The usual client: the test password, trust on first use, pins and state under `home`.
    pub fn new(home: &Path) -> Self {
        Self {
            password: PASSWORD.into(),
            trust: vec!["--accept-new".into()],
            home: home.to_owned(),
            extra: vec![],
        }
    }
}

/// A `livewire chat` process and everything it printed.
pub struct ChatProc {
    pub user: String,
    pub child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    pub log: Vec<Value>,
    seen: usize,
}

impl ChatProc {
    /// Starts a client for `user` whose pins and state live under `home/user`.
    pub fn start(server: &str, user: &str, home: &Path) -> Self {
        Self::start_with(server, user, ClientOpts::new(home))
    }

    pub fn start_with(server: &str, user: &str, o: ClientOpts) -> Self {
        let dir = o.home.join(user.to_ascii_lowercase());
        let mut child = Command::new(bin())
            .args(["chat", "--server", server, "--user", user, "--config-dir"])
            .arg(dir.join("config"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(&o.trust)
            .args(&o.extra)
            .env("LIVEWIRE_PASSWORD", &o.password)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chat");
        let events = reader(child.stdout.take().unwrap());
        Self {
            user: user.to_owned(),
            stdin: child.stdin.take(),
            child,
            events,
            log: Vec::new(),
            seen: 0,
        }
    }

    /// Starts a client and waits for `ready`.
    pub fn login(server: &str, user: &str, home: &Path) -> Self {
        let mut c = Self::start(server, user, home);
        c.expect("ready", |v| v["event"] == "ready");
        c
    }

    pub fn cmd(&mut self, v: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{v}").expect("write command");
        stdin.flush().unwrap();
    }

    pub fn raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write line");
    }

    pub fn send(&mut self, to: &str, text: &str) {
        self.cmd(json!({"cmd": "send", "to": to, "text": text}));
    }

    fn pull(&mut self, deadline: Instant, what: &str) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(left) {
            Ok(v) => {
                self.log.push(v.clone());
                v
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "{}: no {what} within {WAIT:?}; log: {:#?}",
                self.user, self.log
            ),
            Err(RecvTimeoutError::Disconnected) => {
                panic!(
                    "{}: exited while waiting for {what}; log: {:#?}",
                    self.user, self.log
                )
            }
        }
    }

    /// Waits for the next event (after those already returned by `expect`) matching `pred`.
    pub fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.expect_within(what, WAIT, pred)
    }

    /// [`ChatProc::expect`] with its own time limit, for waits whose legitimate worst case is
    /// longer (noticing a dead server can take the 40 s idle timeout).
    pub fn expect_within(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            while self.seen < self.log.len() {
                self.seen += 1;
                if pred(&self.log[self.seen - 1]) {
                    return self.log[self.seen - 1].clone();
                }
            }
            self.pull(deadline, what);
        }
    }

    /// The `sync` barrier: returns every event printed before its answer.
    pub fn sync(&mut self) -> Vec<Value> {
        let start = self.seen;
        self.cmd(json!({"cmd": "sync"}));
        self.expect("sync", |v| v["event"] == "sync");
        self.log[start..self.seen - 1].to_vec()
    }

    /// Closes stdin (the client flushes its outbox and logs out) and returns the exit code.
    pub fn finish(mut self) -> (i32, Vec<Value>) {
        self.stdin.take();
        let status = wait_child(&mut self.child);
        while let Ok(v) = self.events.recv_timeout(Duration::from_millis(100)) {
            self.log.push(v);
        }
        (status.code().unwrap_or(-1), std::mem::take(&mut self.log))
    }

    /// Waits for exit without closing stdin first (for clients that end by themselves).
    pub fn exit_code(mut self) -> (i32, Vec<Value>) {
        let status = wait_child(&mut self.child);
        while let Ok(v) = self.events.recv_timeout(Duration::from_millis(100)) {
            self.log.push(v);
        }
        (status.code().unwrap_or(-1), std::mem::take(&mut self.log))
    }

    pub fn kill(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        while let Ok(v) = self.events.recv_timeout(Duration::from_millis(50)) {
            self.log.push(v);
        }
        std::mem::take(&mut self.log)
    }

    pub fn messages(&self) -> Vec<&Value> {
        self.log
            .iter()
            .filter(|v| v["event"] == "message")
            .collect()
    }
}

impl Drop for ChatProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn events<'a>(log: &'a [Value], kind: &str) -> Vec<&'a Value> {
    log.iter().filter(|v| v["event"] == kind).collect()
}

/// One client's record for the P1–P7 checks.
pub struct Record<'a> {
    pub user: &'a str,
    pub log: &'a [Value],
}

/// Checks TESTING.md's properties over what every client printed.
/// `members` lists, per conversation label as the *sender* saw it, who must have received
/// each acknowledged message (P1): `#general` → everyone given; `@x` → x.
pub fn check_properties(records: &[Record<'_>], general_members: &[&str]) {
    // id -> (author, conv key, text) from acks.
    let mut acked: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
    let mut deleted_everyone: HashSet<u64> = HashSet::new();
    for r in records {
        let mut last_seq_by_conv: HashMap<String, u64> = HashMap::new();
        for v in r.log {
            match v["event"].as_str() {
                Some("sent") => {
                    let id = v["id"].as_u64().unwrap();
                    let conv = v["conv"].as_str().unwrap().to_owned();
                    acked.insert(
                        id,
                        (
                            r.user.to_owned(),
                            conv.clone(),
                            v["text"].as_str().unwrap().to_owned(),
                        ),
                    );
                    // P5: a sender's own messages keep their order.
                    let seq = v["seq"].as_u64().unwrap();
                    if let Some(prev) = last_seq_by_conv.insert(conv.clone(), seq) {
                        assert!(
                            seq > prev,
                            "P5: {} saw its {conv} acks out of order",
                            r.user
                        );
                    }
                }
                Some("deleted") if v["for"] == "everyone" => {
                    deleted_everyone.insert(v["id"].as_u64().unwrap());
                }
                _ => {}
            }
        }
    }
    for r in records {
        let mut ids = HashSet::new();
        let mut seqs: HashMap<String, Vec<u64>> = HashMap::new();
        let mut shown: HashMap<u64, Option<String>> = HashMap::new();
        for v in r.log {
            match v["event"].as_str() {
                Some("message") => {
                    let id = v["id"].as_u64().unwrap();
                    let conv = v["conv"].as_str().unwrap().to_owned();
                    // P2: never twice, by id or by sequence.
                    assert!(ids.insert(id), "P2: {} shows message {id} twice", r.user);
                    let list = seqs.entry(conv.clone()).or_default();
                    let seq = v["seq"].as_u64().unwrap();
                    // P4: one order per conversation (strictly increasing sequence).
                    assert!(
                        list.last().is_none_or(|l| *l < seq),
                        "P4/P2: {} shows {conv} seq {seq} after {:?}",
                        r.user,
                        list.last()
                    );
                    list.push(seq);
                    let from = v["from"].as_str().unwrap();
                    if let Some((author, sconv, text)) = acked.get(&id) {
                        // P6: the author is the sender that was acknowledged.
                        assert_eq!(
                            from, author,
                            "P6: message {id} claims {from}, sent by {author}"
                        );
                        // P3: a private message reaches only its two participants.
                        if let Some(peer) = sconv.strip_prefix('@') {
                            assert!(
                                r.user.eq_ignore_ascii_case(peer),
                                "P3: {} saw {author}'s private message {id} to {peer}",
                                r.user
                            );
                            assert_eq!(v["conv"], format!("@{}", author.to_ascii_lowercase()));
                        }
                        if let Some(t) = v["text"].as_str() {
                            assert_eq!(t, text, "message {id} text changed");
                        }
                    }
                    shown.insert(id, v["text"].as_str().map(str::to_owned));
                }
                Some("deleted") if v["for"] == "everyone" => {
                    shown.insert(v["id"].as_u64().unwrap(), None);
                }
                Some("sent") => {
                    ids.insert(v["id"].as_u64().unwrap());
                }
                _ => {}
            }
        }
        // P7: after delete-for-everyone nobody still shows the body.
        for id in &deleted_everyone {
            if let Some(Some(text)) = shown.get(id) {
                panic!("P7: {} still shows deleted message {id}: {text}", r.user);
            }
        }
        // P1: everything acknowledged reached every member.
        for (id, (author, conv, _)) in &acked {
            if author.eq_ignore_ascii_case(r.user) {
                continue;
            }
            let member = match conv.strip_prefix('@') {
                Some(peer) => peer.eq_ignore_ascii_case(r.user),
                None => general_members
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(r.user)),
            };
            if member {
                assert!(
                    ids.contains(id) || deleted_everyone.contains(id),
                    "P1: {} never got message {id} from {author} in {conv}",
                    r.user
                );
            }
        }
    }
}
