//! LiveWire: the real `livewire` server binary and the library's real client
//! (`livewire::transport::client`), one client task per simulated user.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use livewire::app::client::{Command, Event};
use livewire::transport::client::{ClientEvent, ClientOptions, Trust, start};
use livewire::transport::quic::Endpoint;
use livewire::transport::tls::PinStore;

use crate::load::{Dest, Fleet, Mode, connect_all};
use crate::proc::{Pinning, ServerProc};
use crate::stats::Recorder;

/// Accounts the idle clients share (multi-session).
const IDLE_ACCOUNTS: usize = 8;

/// Password shared by every bench account.
const PASSWORD: &str = "bench-password";

/// How to start the LiveWire server.
pub struct Livewire {
    /// Name in the report (`livewire`, or `livewire-tmpfs` with its data on tmpfs).
    pub name: String,
    /// The `livewire` binary (built `--release --no-default-features`).
    pub bin: PathBuf,
    /// Scratch directory.
    pub dir: PathBuf,
}

/// How to reach a started LiveWire server.
pub struct Running {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `SHA256:…`.
    pub fingerprint: String,
    pins: PathBuf,
}

impl Livewire {
    /// Starts a server with a fresh data directory and limits raised for load.
    pub async fn start(&self, pin: &Pinning, tag: &str) -> Result<(ServerProc, Running)> {
        let data = self.dir.join(format!("{}-{tag}", self.name));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data)?;
        let argv: Vec<String> = [
            self.bin.to_str().context("binary path is not UTF-8")?,
            "server",
            "--headless",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().context("path is not UTF-8")?,
            "--msg-burst",
            "1000000",
            "--msg-rate",
            "1000000",
            "--conns-per-ip",
            "1000000",
            "--login-deadline",
            "120",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let proc = ServerProc::spawn(pin, &argv, true).await?;
        let line = proc.first_line.clone().unwrap_or_default();
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("bad first line {line:?}"))?;
        if v["event"] != "listening" {
            bail!("unexpected first line {line}");
        }
        let addr = v["addr"].as_str().context("no addr")?.to_owned();
        let fingerprint = v["fingerprint"]
            .as_str()
            .context("no fingerprint")?
            .to_owned();
        let running = Running {
            addr,
            fingerprint,
            pins: data.join("known-servers"),
        };
        Ok((proc, running))
    }
}

/// Connects `n` clients. In `Room` and `Pairs` mode client `i` is user `bench{i}`; idle
/// clients share a few accounts (multi-session) and `per_endpoint` clients share one UDP
/// socket.
pub async fn connect(
    srv: &Running,
    n: usize,
    mode: Mode,
    rec: Arc<Recorder>,
    per_endpoint: usize,
) -> Result<Fleet> {
    let pins = PinStore::new(srv.pins.clone());
    let mut endpoints = Vec::new();
    for _ in 0..n.div_ceil(per_endpoint.max(1)) {
        endpoints.push(Endpoint::client("127.0.0.1:0".parse()?)?);
    }
    let endpoints = Arc::new(endpoints);
    let base = ClientOptions {
        server: srv.addr.clone(),
        user: String::new(),
        password: PASSWORD.into(),
        trust: Trust::Fingerprint(srv.fingerprint.clone()),
        pins,
        state_file: None,
        reconnect: false,
        endpoint: None,
        timers: livewire::transport::quic::Timers::CLIENT,
        stream_idle: livewire::transport::client::STREAM_IDLE,
    };
    if mode == Mode::Idle {
        // Register the shared accounts one at a time first: two first logins of the same
        // new name at once are refused ("that username was just taken").
        for a in 0..IDLE_ACCOUNTS.min(n) {
            let mut opts = base.clone();
            opts.user = format!("idle{a}");
            opts.endpoint = Some(endpoints[0].clone());
            let (handle, events) = start(opts);
            wait_ready(&events).await?;
            handle.close();
            while events.recv().await.is_ok() {}
        }
    }
    let base = Arc::new(base);
    let eps = endpoints.clone();
    let mut fleet = connect_all(n, 32, move |i| {
        let mut opts = (*base).clone();
        opts.user = match mode {
            Mode::Idle => format!("idle{}", i % IDLE_ACCOUNTS),
            _ => format!("bench{i}"),
        };
        opts.endpoint = Some(endpoints[i / per_endpoint.max(1)].clone());
        let rec = rec.clone();
        async move { client(i, opts, rec).await }
    })
    .await?;
    fleet.cleanup.push(Box::new(move || {
        for ep in eps.iter() {
            ep.close(0u32.into(), b"bench over");
        }
    }));
    Ok(fleet)
}

async fn client(
    i: usize,
    opts: ClientOptions,
    rec: Arc<Recorder>,
) -> Result<(crate::load::SendFn, Vec<tokio::task::JoinHandle<()>>)> {
    let (handle, events) = start(opts);
    wait_ready(&events).await?;
    let task = tokio::spawn(async move {
        while let Ok(ev) = events.recv().await {
            match ev {
                ClientEvent::App(Event::Message {
                    text: Some(text), ..
                }) => rec.deliver(i, text.as_bytes()),
                ClientEvent::App(Event::Error { code, message }) => {
                    rec.error(format!("livewire {code}: {message}"))
                }
                ClientEvent::App(Event::Disconnected { reason }) => {
                    rec.error(format!("livewire disconnected: {reason}"))
                }
                ClientEvent::Fatal(f) => rec.error(format!("livewire fatal: {f}")),
                _ => {}
            }
        }
    });
    let send: crate::load::SendFn = Box::new(move |dest, text| {
        let to = match dest {
            Dest::Room => "#general".to_owned(),
            Dest::User(j) => format!("@bench{j}"),
        };
        handle.send(Command::Send { to, text });
        true
    });
    Ok((send, vec![task]))
}

/// Waits for the login.
async fn wait_ready(events: &async_channel::Receiver<ClientEvent>) -> Result<()> {
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            match events.recv().await {
                Ok(ClientEvent::App(Event::Ready { .. })) => return Ok(()),
                Ok(ClientEvent::Fatal(f)) => bail!("{f}"),
                Ok(ClientEvent::Ended) | Err(_) => bail!("ended before login"),
                Ok(_) => {}
            }
        }
    })
    .await
    .context("no login within 120 s")?
}
