//! LiveWire: the real `livewire` server binary and the library's real client
//! (`livewire::transport::client`), one client task per simulated user.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use livewire::app::client::{Command, Event};
use livewire::app::rooms::Visibility;
use livewire::transport::client::{ClientEvent, ClientHandle, ClientOptions, Trust, start};
use livewire::transport::quic::Endpoint;
use livewire::transport::tls::PinStore;

use crate::load::{Dest, Fleet, Mode, connect_all};
use crate::proc::{Pinning, ServerProc};
use crate::rooms::RoomLayout;
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
    /// Cluster mode: nodes on this PostgreSQL (emptied at each start), and NATS when
    /// there are several (docs/SCALING.md part 3).
    pub cluster: Option<Cluster>,
}

/// How a cluster target runs.
#[derive(Clone)]
pub struct Cluster {
    /// `postgres://…` of a database the bench may empty.
    pub database: String,
    /// `nats://…`.
    pub nats: String,
    /// How many nodes; clients are spread over them round-robin.
    pub nodes: usize,
}

/// Empties the database (as `psql` can: the bench has no PostgreSQL client of its own).
fn reset_database(url: &str) -> Result<()> {
    let out = std::process::Command::new("psql")
        .args([
            url,
            "-q",
            "-c",
            "DROP SCHEMA public CASCADE; CREATE SCHEMA public;",
        ])
        .output()
        .context("psql (postgresql-client) is needed for the cluster target")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// How to reach a started LiveWire server.
pub struct Running {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Every node's address (the one above first); clients are spread over them.
    pub addrs: Vec<String>,
    /// `SHA256:…`.
    pub fingerprint: String,
    pins: PathBuf,
}

impl Livewire {
    /// Starts a server with a fresh data directory and limits raised for load.
    pub async fn start(&self, pin: &Pinning, tag: &str) -> Result<(ServerProc, Running)> {
        let Some(cluster) = &self.cluster else {
            return self.start_node(pin, tag, &[]).await;
        };
        reset_database(&cluster.database)?;
        let mut extra = vec!["--database".to_owned(), cluster.database.clone()];
        if cluster.nodes > 1 {
            extra.extend(["--nats".to_owned(), cluster.nats.clone()]);
        }
        let mut first: Option<(ServerProc, Running)> = None;
        for i in 0..cluster.nodes.max(1) {
            let mut args = extra.clone();
            args.extend(["--node-id".to_owned(), i.to_string()]);
            let (proc, running) = self.start_node(pin, &format!("{tag}-{i}"), &args).await?;
            match &mut first {
                None => first = Some((proc, running)),
                Some((p, r)) => {
                    if running.fingerprint != r.fingerprint {
                        bail!("cluster nodes present different certificates");
                    }
                    r.addrs.push(running.addr);
                    p.also.push(proc);
                }
            }
        }
        first.context("no node")
    }

    async fn start_node(
        &self,
        pin: &Pinning,
        tag: &str,
        extra: &[String],
    ) -> Result<(ServerProc, Running)> {
        let data = self.dir.join(format!("{}-{tag}", self.name));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data)?;
        let mut argv: Vec<String> = [
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
        argv.extend(extra.iter().cloned());
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
            addrs: vec![addr.clone()],
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
    let addrs = srv.addrs.clone();
    let eps = endpoints.clone();
    let setup = Arc::new(Setup {
        joined: AtomicUsize::new(0),
        handles: Mutex::new(vec![None; n]),
    });
    let shared = setup.clone();
    let setup_rec = rec.clone();
    let connected = connect_all(n, 32, move |i| {
        let mut opts = (*base).clone();
        opts.user = match mode {
            Mode::Idle => format!("idle{}", i % IDLE_ACCOUNTS),
            _ => format!("bench{i}"),
        };
        opts.endpoint = Some(endpoints[i / per_endpoint.max(1)].clone());
        if let Some(addr) = addrs.get(i % addrs.len().max(1)) {
            opts.server = addr.clone();
        }
        let rec = rec.clone();
        let setup = shared.clone();
        async move { client(i, opts, rec, setup).await }
    })
    .await;
    let close = move || {
        for ep in eps.iter() {
            ep.close(0u32.into(), b"bench over");
        }
    };
    let mut fleet = match connected {
        Ok(fleet) => fleet,
        Err(e) => {
            close();
            return Err(e);
        }
    };
    fleet.cleanup.push(Box::new(close));
    // The senders keep their own handles; these are for the setup only.
    let handles: Vec<ClientHandle> = std::mem::take(&mut *setup.handles.lock().expect("poisoned"))
        .into_iter()
        .map(|h| h.expect("every client connected"))
        .collect();
    if let Mode::Rooms(layout) = mode {
        let t0 = Instant::now();
        join_rooms(layout, &handles, &setup.joined, &setup_rec).await?;
        fleet.connect_secs += t0.elapsed().as_secs_f64();
    }
    Ok(fleet)
}

/// What the client tasks report back while a fleet is set up.
struct Setup {
    /// `joined` events seen (rooms created or joined), over every client.
    joined: AtomicUsize,
    /// Each client's command handle, by index.
    handles: Mutex<Vec<Option<ClientHandle>>>,
}

/// Creates every room of `layout` from its member 0 (who becomes its owner), then has the
/// other members join: public rooms, so a `join` is enough. Waits for every `joined`.
async fn join_rooms(
    layout: RoomLayout,
    handles: &[ClientHandle],
    joined: &AtomicUsize,
    rec: &Recorder,
) -> Result<()> {
    let table = layout.table();
    for (r, members) in table.iter().enumerate() {
        handles[members[0]].send(Command::CreateRoom {
            room: RoomLayout::channel(r),
            topic: String::new(),
            visibility: Visibility::Public,
        });
    }
    wait_joined(joined, layout.rooms, rec).await?;
    for (r, members) in table.iter().enumerate() {
        for &c in &members[1..] {
            handles[c].send(Command::Join {
                room: RoomLayout::channel(r),
            });
        }
    }
    wait_joined(joined, layout.rooms * layout.members, rec).await
}

/// Waits until `joined` reaches `want`; fails at the first error or after 120 s.
async fn wait_joined(joined: &AtomicUsize, want: usize, rec: &Recorder) -> Result<()> {
    let errors0 = rec.errors();
    let t0 = Instant::now();
    loop {
        let got = joined.load(Ordering::Relaxed);
        if got >= want {
            return Ok(());
        }
        if rec.errors() > errors0 {
            bail!("setting rooms up: {:?}", rec.first_errors());
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("only {got} of {want} room joins within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn client(
    i: usize,
    opts: ClientOptions,
    rec: Arc<Recorder>,
    setup: Arc<Setup>,
) -> Result<(crate::load::SendFn, Vec<tokio::task::JoinHandle<()>>)> {
    let (handle, events) = start(opts);
    wait_ready(&events).await?;
    setup.handles.lock().expect("poisoned")[i] = Some(handle.clone());
    let task = tokio::spawn(async move {
        while let Ok(ev) = events.recv().await {
            match ev {
                ClientEvent::App(Event::Message {
                    text: Some(text), ..
                }) => rec.deliver(i, text.as_bytes()),
                ClientEvent::App(Event::Joined { .. }) => {
                    setup.joined.fetch_add(1, Ordering::Relaxed);
                }
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
            Dest::Channel(r) => RoomLayout::channel(r),
        };
        handle.send(Command::Send {
            to,
            text,
            reply_to: None,
        });
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
