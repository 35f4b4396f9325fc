//! `livewire server --headless` as a child process.

use std::io::{BufRead, BufReader, Write};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use livewire::app::limits::Limits;
use livewire::store::SqliteStore;
use livewire::transport::quic;
use livewire::transport::server::{Server, ServerEvents, ServerOptions};
use serde_json::Value;

use super::chat::command;
use super::transcript::{Transcript, json_lines};
use super::{WAIT, wait_child};

/// A headless server process: its address and fingerprint from the `listening` line, and
/// everything it printed (it dereferences to its [`Transcript`]).
pub struct ServerProc {
    /// The process.
    pub child: Child,
    /// `HOST:PORT` it listens on.
    pub addr: String,
    /// `SHA256:…` of its certificate.
    pub fingerprint: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    transcript: Transcript,
}

impl Deref for ServerProc {
    type Target = Transcript;
    fn deref(&self) -> &Transcript {
        &self.transcript
    }
}

impl DerefMut for ServerProc {
    fn deref_mut(&mut self) -> &mut Transcript {
        &mut self.transcript
    }
}

/// Where a server with data directory `data_dir` writes its log (stderr).
pub fn stderr_path(data_dir: &Path) -> PathBuf {
    data_dir.with_extension("stderr.log")
}

impl ServerProc {
    /// Starts a server on `listen` with data in `data_dir` and waits for `listening`.
    pub fn start(data_dir: &Path, listen: &str, extra: &[&str]) -> Self {
        Self::start_under(&[], data_dir, listen, extra)
    }

    /// [`ServerProc::start`] logging everything (`RUST_LOG=trace`, to [`stderr_path`]): for
    /// the canary tests, which look for private text in the server's files and logs.
    pub fn start_traced(data_dir: &Path, listen: &str) -> Self {
        Self::spawn(&[], data_dir, listen, &[], "trace")
    }

    /// [`ServerProc::start`] under a command prefix (e.g. `ip netns exec NS`).
    pub fn start_under(prefix: &[String], data_dir: &Path, listen: &str, extra: &[&str]) -> Self {
        Self::spawn(prefix, data_dir, listen, extra, "livewire=info")
    }

    fn spawn(
        prefix: &[String],
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        rust_log: &str,
    ) -> Self {
        let mut child = command(prefix)
            .args(["server", "--headless", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let events = json_lines(child.stdout.take().expect("stdout"));
        // The log goes to a file line by line, so a test can read it while the server runs.
        let stderr = child.stderr.take().expect("stderr");
        let log_path = stderr_path(data_dir);
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(log_path).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = f.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        let mut transcript = Transcript::new("server", events, None);
        let first = transcript.expect("listening", |_| true);
        assert_eq!(first["event"], "listening", "{first}");
        Self {
            child,
            addr: first["addr"].as_str().expect("addr").to_owned(),
            fingerprint: first["fingerprint"]
                .as_str()
                .expect("fingerprint")
                .to_owned(),
            data_dir: data_dir.to_owned(),
            transcript,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The first server event, printed so far or to come, matching `pred` (server events
    /// are looked up anywhere in the log, not after a cursor).
    pub fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.transcript.find_any(WAIT, what, pred)
    }

    /// SIGTERM, wait for a clean exit, and return everything printed.
    pub fn stop(mut self) -> Vec<Value> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = wait_child(&mut self.child);
        assert!(status.success(), "server exit status {status:?}");
        self.drain(Duration::from_millis(200));
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

/// A server in this process (for tests that drive its [`livewire::transport::server::ServerHandle`]
/// or its queues) on a free port of 127.0.0.1, with a SQLite store and its files in
/// `data_dir`. Its operator events are taken out and returned, for the caller to keep.
pub async fn in_process_server(data_dir: &Path, limits: Limits) -> (Server, Option<ServerEvents>) {
    let store = SqliteStore::open(data_dir).unwrap();
    let opts = ServerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        cert: None,
        limits,
        timers: quic::Timers::SERVER,
        node_id: 0,
        nats: None,
    };
    let mut server = Server::start(opts, store).await.unwrap();
    let events = server.take_events();
    (server, events)
}
