//! `livewire chat`: the scripted client as a child process.

use std::io::Write;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::transcript::{Transcript, json_lines};
use super::{PASSWORD, bin, wait_child};

/// Options for a scripted client.
#[derive(Clone)]
pub struct ClientOpts {
    /// The password (given as `LIVEWIRE_PASSWORD`).
    pub password: String,
    /// How the first contact is trusted (`--accept-new`, `--fingerprint …`, or nothing).
    pub trust: Vec<String>,
    /// Each user's pins, state and stderr live under `home/<user>`.
    pub home: PathBuf,
    /// More arguments for `livewire chat`.
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

/// A command for the `livewire` binary, run through `prefix` when it is not empty.
pub(super) fn command(prefix: &[String]) -> Command {
    match prefix.split_first() {
        None => Command::new(bin()),
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin());
            c
        }
    }
}

/// A `livewire chat` process and everything it printed.
///
/// It dereferences to its [`Transcript`], so `send`, `sync`, `expect` and `log` are the kit's
/// one implementation for every client.
pub struct ChatProc {
    /// The user it logs in as.
    pub user: String,
    /// The process.
    pub child: Child,
    transcript: Transcript,
}

impl Deref for ChatProc {
    type Target = Transcript;
    fn deref(&self) -> &Transcript {
        &self.transcript
    }
}

impl DerefMut for ChatProc {
    fn deref_mut(&mut self) -> &mut Transcript {
        &mut self.transcript
    }
}

impl ChatProc {
    /// Asks for `user`'s MLS devices until the server lists `n` (a device announces itself
    /// right after its login, on its own connection, so there is no event of this client's
    /// to wait on: a bounded poll).
    pub fn wait_listed(&mut self, user: &str, n: usize) {
        for _ in 0..100 {
            self.cmd(serde_json::json!({"cmd": "devices", "user": user}));
            let d = self.expect("devices", |v| v["event"] == "devices");
            if d["devices"].as_array().map_or(0, Vec::len) == n {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{user} never had {n} devices");
    }

    /// Starts a client for `user` whose pins and state live under `home/user`.
    pub fn start(server: &str, user: &str, home: &Path) -> Self {
        Self::start_with(server, user, ClientOpts::new(home))
    }

    /// Starts a client with options (it may not be logged in yet: see [`ChatProc::login`]).
    pub fn start_with(server: &str, user: &str, o: ClientOpts) -> Self {
        Self::start_under(&[], server, user, o)
    }

    /// [`ChatProc::start_with`] under a command prefix (e.g. `ip netns exec NS`).
    pub fn start_under(prefix: &[String], server: &str, user: &str, o: ClientOpts) -> Self {
        let dir = o.home.join(user.to_ascii_lowercase());
        std::fs::create_dir_all(&dir).expect("client dir");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("client stderr");
        let mut child = command(prefix)
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
            .stderr(stderr)
            .spawn()
            .expect("spawn chat");
        let events = json_lines(child.stdout.take().expect("stdout"));
        let mut stdin = child.stdin.take().expect("stdin");
        let input = Box::new(move |line: &str| {
            writeln!(stdin, "{line}").expect("write command");
            stdin.flush().expect("flush command");
        });
        Self {
            user: user.to_owned(),
            child,
            transcript: Transcript::new(user, events, Some(input)),
        }
    }

    /// Starts a client and waits for `ready`.
    pub fn login(server: &str, user: &str, home: &Path) -> Self {
        Self::login_under(&[], server, user, ClientOpts::new(home))
    }

    /// [`ChatProc::start_under`] and wait for `ready`.
    pub fn login_under(prefix: &[String], server: &str, user: &str, o: ClientOpts) -> Self {
        let mut c = Self::start_under(prefix, server, user, o);
        c.expect("ready", |v| v["event"] == "ready");
        c
    }

    /// Closes stdin (the client flushes its outbox and logs out) and returns the exit code
    /// and everything printed.
    pub fn finish(mut self) -> (i32, Vec<Value>) {
        self.close_input();
        self.exit_code()
    }

    /// Waits for exit without closing stdin first (for clients that end by themselves).
    pub fn exit_code(mut self) -> (i32, Vec<Value>) {
        let status = wait_child(&mut self.child);
        self.drain(Duration::from_millis(100));
        (status.code().unwrap_or(-1), std::mem::take(&mut self.log))
    }

    /// [`ChatProc::finish`], asserting a clean exit; returns the user and the log.
    pub fn finish_ok(self) -> (String, Vec<Value>) {
        let user = self.user.clone();
        let (code, log) = self.finish();
        assert_eq!(code, 0, "{user} exit code; log: {log:#?}");
        (user, log)
    }

    /// SIGKILL: no chance to flush or log out.
    pub fn kill(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.drain(Duration::from_millis(50));
        std::mem::take(&mut self.log)
    }
}

impl Drop for ChatProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
