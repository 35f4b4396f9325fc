//! A throw-away `nats-server` for the cluster tests: started on a free loopback port,
//! stopped (and restarted on the same port) by its pid.
//!
//! Debian's `nats-server` package puts the program in `/usr/sbin`; `LIVEWIRE_NATS_SERVER`
//! names another one. Without it, [`NatsServer::start`] prints a `SKIPPED: …` line and
//! gives `None`. Included by path (`#[path = "common/nats.rs"]`) by the tests that need it.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server`, killed on drop.
pub struct NatsServer {
    bin: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

fn find_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LIVEWIRE_NATS_SERVER") {
        let p = PathBuf::from(p);
        return p.exists().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("nats-server"))
        .find(|p| p.exists())
}

impl NatsServer {
    /// Starts a server on a free port, or prints `SKIPPED: {test}: …` and gives `None`
    /// when `nats-server` is not installed.
    pub fn start(test: &str) -> Option<Self> {
        let Some(bin) = find_bin() else {
            println!(
                "SKIPPED: {test}: nats-server is not installed (apt-get install nats-server, or set LIVEWIRE_NATS_SERVER)"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut s = Self {
            bin,
            port,
            child: None,
        };
        s.run();
        Some(s)
    }

    /// Its URL for `--nats`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on its port and waits until it accepts connections.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        let child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (SIGKILL by pid: every connection drops at once, nothing is flushed).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
