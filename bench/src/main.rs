//! `livewire-bench`: an open-loop load generator that drives real clients of LiveWire,
//! mosquitto (MQTT over TLS) and an IRC server (over TLS) through the same scenarios on
//! loopback, beside raw quinn and raw UDP references, and reports every result as a ratio
//! to the peers measured in the same run.
//!
//! Layout: `load` (fleet, open-loop schedule, one measured step), `stats` (bodies with
//! embedded send times, percentiles), `rooms` (who is in which room in the many-rooms
//! scenario), `proc` (server processes, /proc CPU and RSS), one module per target (`lw`, `mqtt`, `irc`), `refs` (quinn echo, UDP), `report` (JSON and
//! the Markdown table). `scripts/bench.sh` installs the peers and runs all of it. `mls`
//! (the `mls` subcommand) measures a private MLS room beside a public one in process.

mod irc;
mod load;
mod lw;
mod mls;
mod mqtt;
mod proc;
mod refs;
mod report;
mod rooms;
mod stats;
mod storm;
mod tlsconf;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::load::{Fleet, Mode, Pattern, StepResult, Timing};
use crate::proc::{Pinning, ServerProc};
use crate::report::{IdleResult, Report};
use crate::rooms::RoomLayout;
use crate::stats::Recorder;

#[derive(Parser)]
#[command(
    name = "livewire-bench",
    about = "LiveWire side by side with real chat servers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the scenarios and write the results.
    Run(Box<RunArgs>),
    /// The cost of a private (MLS) room beside a public one, in this process (issue 16):
    /// `mls --members 500`.
    Mls(mls::MlsArgs),
    /// (internal) serve the raw quinn echo reference.
    QuicEchoServer,
    /// (internal) serve the raw UDP reference.
    UdpServer,
}

#[derive(Parser, Clone)]
struct RunArgs {
    /// The `livewire` binary (release, --no-default-features).
    #[arg(long)]
    livewire_bin: Option<PathBuf>,
    /// Also run LiveWire with its data directory here (a tmpfs such as /dev/shm: fsync costs
    /// nothing), to tell disk waits from the rest.
    #[arg(long)]
    livewire_tmpfs: Option<PathBuf>,
    /// Also run LiveWire on this PostgreSQL (emptied before each start): `livewire-pg`, one
    /// node, and with --livewire-nats `livewire-2nodes`, two nodes fanning out over NATS
    /// with the clients spread over them (docs/SCALING.md).
    #[arg(long)]
    livewire_database: Option<String>,
    /// The NATS server of the two-node target (`nats://…`).
    #[arg(long, requires = "livewire_database")]
    livewire_nats: Option<String>,
    /// Command line that starts mosquitto (split on spaces).
    #[arg(long)]
    mosquitto: Option<String>,
    /// mosquitto's TLS port.
    #[arg(long, default_value_t = 18883)]
    mqtt_port: u16,
    /// CA certificate (PEM) of the TCP peers.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Command line that starts the IRC server (split on spaces).
    #[arg(long)]
    irc: Option<String>,
    /// Name of the IRC server for the report.
    #[arg(long, default_value = "ngircd")]
    irc_name: String,
    /// The IRC server's TLS port.
    #[arg(long, default_value_t = 16697)]
    irc_port: u16,
    /// Targets to run, comma-separated (of livewire, mosquitto and the IRC name); empty: all
    /// that are configured.
    #[arg(long, default_value = "")]
    targets: String,
    /// Scenarios to run, comma-separated: refs,fanout,sweep,pairs,rooms,idle (and storm,
    /// the reconnect storm, only when named).
    #[arg(long, default_value = "refs,fanout,sweep,pairs,rooms,idle")]
    scenarios: String,
    /// Room members for fan-out and the sweep.
    #[arg(long, default_value_t = 100)]
    members: usize,
    /// Fixed total send rate of the fan-out scenario (messages/s).
    #[arg(long, default_value_t = 50.0)]
    fanout_rate: f64,
    /// Clients in the private-pairs scenario (N/2 pairs).
    #[arg(long, default_value_t = 100)]
    pair_clients: usize,
    /// Total send rate of the private-pairs scenario (messages/s).
    #[arg(long, default_value_t = 500.0)]
    pairs_rate: f64,
    /// Rooms in the many-rooms scenario.
    #[arg(long, default_value_t = 1000)]
    rooms: usize,
    /// Members of each room in the many-rooms scenario.
    #[arg(long, default_value_t = 10)]
    room_members: usize,
    /// Clients in the many-rooms scenario (each in about rooms × room-members / clients rooms).
    #[arg(long, default_value_t = 1000)]
    room_clients: usize,
    /// Total send rate of the many-rooms scenario, spread evenly over the rooms (messages/s).
    #[arg(long, default_value_t = 1000.0)]
    rooms_rate: f64,
    /// Idle clients.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Clients of the reconnect storm (scenario `storm`, not in the default list: LiveWire
    /// targets only, logged in once, then the server is restarted and they come back).
    #[arg(long, default_value_t = 10_000)]
    storm: usize,
    /// Seconds the idle clients are watched once all are connected (> the 15 s keep-alive).
    #[arg(long, default_value_t = 16)]
    idle_hold: u64,
    /// Seconds of warm-up before each measured window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured per fixed-rate scenario.
    #[arg(long, default_value_t = 10.0)]
    measure: f64,
    /// First rate of the saturation sweep (messages/s into the room).
    #[arg(long, default_value_t = 100.0)]
    sweep_start: f64,
    /// Rate multiplier between sweep steps.
    #[arg(long, default_value_t = 1.5)]
    sweep_factor: f64,
    /// Most sweep steps per target.
    #[arg(long, default_value_t = 12)]
    sweep_steps: usize,
    /// Seconds measured per sweep step.
    #[arg(long, default_value_t = 5.0)]
    sweep_secs: f64,
    /// The sweep stops once p99 exceeds this (ms).
    #[arg(long, default_value_t = 100.0)]
    sweep_stop_ms: f64,
    /// Core for the server processes (the generator should be pinned elsewhere).
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// Scratch directory (a temporary one when absent).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results.json")]
    out: PathBuf,
    /// Where to write the Markdown table.
    #[arg(long, default_value = "bench-results.md")]
    table: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    proc::clk_tck();
    // One thread: the generator is pinned to one core, the servers to another.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::QuicEchoServer => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(refs::quic_echo_server())
        }
        Cmd::UdpServer => refs::udp_server(),
        Cmd::Run(args) => rt.block_on(run(*args)),
        Cmd::Mls(args) => mls::run(args),
    }
}

fn split(cmd: &str) -> Vec<String> {
    cmd.split_whitespace().map(str::to_owned).collect()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[bench] {}", msg.as_ref());
}

/// A target the chat scenarios run against.
enum Target {
    Livewire(lw::Livewire),
    Mqtt(mqtt::Mqtt),
    Irc(irc::Irc, String),
    /// The raw quinn echo (idle scaling only: what a bare quinn connection costs).
    QuinnEcho(PathBuf),
}

/// A started server of a target.
struct Started {
    proc: ServerProc,
    lw: Option<lw::Running>,
    echo: Option<(std::net::SocketAddr, String)>,
}

async fn start_echo(pin: &Pinning, me: &std::path::Path) -> Result<Started> {
    let proc = ServerProc::spawn(
        pin,
        &[me.display().to_string(), "quic-echo-server".into()],
        true,
    )
    .await?;
    let v: serde_json::Value = serde_json::from_str(proc.first_line.as_deref().unwrap_or(""))?;
    let addr = v["addr"].as_str().context("echo addr")?.parse()?;
    let cert = v["cert"].as_str().context("echo cert")?.to_owned();
    Ok(Started {
        proc,
        lw: None,
        echo: Some((addr, cert)),
    })
}

impl Target {
    fn name(&self) -> &str {
        match self {
            Target::Livewire(l) => &l.name,
            Target::Mqtt(_) => "mosquitto",
            Target::Irc(_, name) => name,
            Target::QuinnEcho(_) => "quinn-echo",
        }
    }

    async fn start(&self, pin: &Pinning, tag: &str) -> Result<Started> {
        match self {
            Target::Livewire(l) => {
                let (proc, running) = l.start(pin, tag).await?;
                Ok(Started {
                    proc,
                    lw: Some(running),
                    echo: None,
                })
            }
            Target::Mqtt(m) => {
                let mut proc = ServerProc::spawn(pin, &m.argv, false).await?;
                proc.wait_port(m.port).await?;
                Ok(Started {
                    proc,
                    lw: None,
                    echo: None,
                })
            }
            Target::Irc(i, _) => {
                let mut proc = ServerProc::spawn(pin, &i.argv, false).await?;
                proc.wait_port(i.port).await?;
                Ok(Started {
                    proc,
                    lw: None,
                    echo: None,
                })
            }
            Target::QuinnEcho(me) => start_echo(pin, me).await,
        }
    }

    async fn connect(
        &self,
        started: &Started,
        n: usize,
        mode: Mode,
        rec: Arc<Recorder>,
    ) -> Result<Fleet> {
        match self {
            Target::Livewire(_) => {
                let per_endpoint = if n > 1000 { 100 } else { 1 };
                let running = started.lw.as_ref().context("not started")?;
                lw::connect(running, n, mode, rec, per_endpoint).await
            }
            Target::Mqtt(m) => mqtt::connect(m, n, mode, rec).await,
            Target::Irc(i, _) => irc::connect(i, n, mode, rec).await,
            Target::QuinnEcho(_) => {
                let (addr, cert) = started.echo.as_ref().context("not started")?;
                let per_endpoint = if n > 1000 { 100 } else { 1 };
                refs::quic_echo_clients(*addr, cert, n, per_endpoint, rec).await
            }
        }
    }
}

async fn stop(started: Started) {
    started.proc.stop().await;
}

/// Waits for the server to settle after connecting and reads its RSS.
async fn settle(proc: &ServerProc) -> u64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    proc.rss_kb()
}

async fn run(args: RunArgs) -> Result<()> {
    let scenarios: Vec<&str> = args.scenarios.split(',').map(str::trim).collect();
    let want = |s: &str| scenarios.contains(&s);
    let tmp = tempfile::tempdir()?;
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&work)?;
    let pin = Pinning::detect(args.server_cpu);
    log(format!("server pinned to core {:?}", pin.server_cpu));
    let mut targets = Vec::new();
    if let Some(bin) = &args.livewire_bin {
        targets.push(Target::Livewire(lw::Livewire {
            name: "livewire".into(),
            bin: bin.clone(),
            dir: work.clone(),
            cluster: None,
        }));
        if let Some(database) = &args.livewire_database {
            let cluster = |nodes| {
                Some(lw::Cluster {
                    database: database.clone(),
                    nats: args.livewire_nats.clone().unwrap_or_default(),
                    nodes,
                })
            };
            targets.push(Target::Livewire(lw::Livewire {
                name: "livewire-pg".into(),
                bin: bin.clone(),
                dir: work.clone(),
                cluster: cluster(1),
            }));
            if args.livewire_nats.is_some() {
                targets.push(Target::Livewire(lw::Livewire {
                    name: "livewire-2nodes".into(),
                    bin: bin.clone(),
                    dir: work.clone(),
                    cluster: cluster(2),
                }));
            }
        }
        if let Some(dir) = &args.livewire_tmpfs {
            targets.push(Target::Livewire(lw::Livewire {
                name: "livewire-tmpfs".into(),
                bin: bin.clone(),
                dir: dir.clone(),
                cluster: None,
            }));
        }
    }
    if let Some(cmd) = &args.mosquitto {
        targets.push(Target::Mqtt(mqtt::Mqtt {
            argv: split(cmd),
            port: args.mqtt_port,
            ca: args.ca.clone().context("--ca is needed with --mosquitto")?,
        }));
    }
    if let Some(cmd) = &args.irc {
        targets.push(Target::Irc(
            irc::Irc {
                argv: split(cmd),
                port: args.irc_port,
                ca: args.ca.clone().context("--ca is needed with --irc")?,
            },
            args.irc_name.clone(),
        ));
    }
    if !args.targets.is_empty() {
        let keep: Vec<&str> = args.targets.split(',').map(str::trim).collect();
        targets.retain(|t| keep.contains(&t.name()));
    }
    let me = std::env::current_exe()?;
    let mut report = Report::new(&args_summary(&args), pin.server_cpu);
    let t_all = Instant::now();

    if want("refs") {
        log("reference: raw UDP");
        let mut udp =
            ServerProc::spawn(&pin, &[me.display().to_string(), "udp-server".into()], true).await?;
        let v: serde_json::Value = serde_json::from_str(udp.first_line.as_deref().unwrap_or(""))?;
        let addr = v["addr"].as_str().context("udp addr")?.parse()?;
        let r = tokio::task::spawn_blocking(move || refs::udp_client(addr, 3.0)).await??;
        log(format!(
            "  udp: {:.0} sent/s, {:.0} received/s, rtt p50 {:.3} ms",
            r.sent_per_s, r.received_per_s, r.rtt.p50_ms
        ));
        report.udp = Some(r);
        let _ = udp.alive();
        udp.stop().await;

        log("reference: raw quinn echo (pairs clients and rate)");
        let started = start_echo(&pin, &me).await?;
        let (addr, cert) = started.echo.clone().context("echo")?;
        let echo = started.proc;
        let rec = Arc::new(Recorder::new());
        let base = settle(&echo).await;
        let fleet = refs::quic_echo_clients(addr, &cert, args.pair_clients, 1, rec.clone()).await?;
        let t = Timing {
            warmup: secs(args.warmup),
            measure: secs(args.measure),
            drain: secs(3.0),
        };
        let r = load::step(
            "quinn-echo",
            "echo",
            &fleet,
            Some(&echo),
            base,
            &rec,
            Pattern::Echo(args.pair_clients),
            args.pairs_rate,
            t,
        )
        .await;
        log(report::line(&r));
        report.steps.push(r);
        drop(fleet);
        echo.stop().await;
    }

    if want("fanout") || want("sweep") {
        for target in &targets {
            if let Err(e) = fanout(&args, &pin, target, &mut report, &want).await {
                log(format!("{}: fan-out failed: {e:#}", target.name()));
                report
                    .failures
                    .push(format!("{} fan-out: {e:#}", target.name()));
            }
        }
    }
    if want("pairs") {
        for target in &targets {
            if let Err(e) = pairs(&args, &pin, target, &mut report).await {
                log(format!("{}: pairs failed: {e:#}", target.name()));
                report
                    .failures
                    .push(format!("{} pairs: {e:#}", target.name()));
            }
        }
    }
    if want("rooms") {
        let layout = RoomLayout::new(args.rooms, args.room_members, args.room_clients)?;
        for target in &targets {
            if let Err(e) = many_rooms(&args, &pin, target, layout, &mut report).await {
                log(format!("{}: many rooms failed: {e:#}", target.name()));
                report
                    .failures
                    .push(format!("{} rooms: {e:#}", target.name()));
            }
        }
    }
    if want("idle") {
        if want("refs") {
            targets.push(Target::QuinnEcho(me.clone()));
        }
        // Idle clients write nothing: the tmpfs variant would only repeat the disk one.
        for target in targets.iter().filter(|t| t.name() != "livewire-tmpfs") {
            match idle(&args, &pin, target).await {
                Ok(r) => report.idle.push(r),
                Err(e) => {
                    log(format!("{}: idle failed: {e:#}", target.name()));
                    report
                        .failures
                        .push(format!("{} idle: {e:#}", target.name()));
                }
            }
        }
    }
    if want("storm") {
        for target in &targets {
            let Target::Livewire(l) = target else {
                continue;
            };
            if l.name == "livewire-tmpfs" {
                continue;
            }
            log(format!(
                "{}: reconnect storm, {} clients",
                l.name, args.storm
            ));
            match storm::run(l, args.storm, &pin).await {
                Ok(r) => report.storm.push(r),
                Err(e) => {
                    log(format!("{}: storm failed: {e:#}", l.name));
                    report.failures.push(format!("{} storm: {e:#}", l.name));
                }
            }
        }
    }
    report.total_secs = t_all.elapsed().as_secs_f64();
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    let table = report.markdown();
    std::fs::write(&args.table, &table)?;
    println!("{table}");
    log(format!(
        "wrote {} and {} in {:.0} s",
        args.out.display(),
        args.table.display(),
        report.total_secs
    ));
    Ok(())
}

fn args_summary(a: &RunArgs) -> serde_json::Value {
    serde_json::json!({
        "members": a.members,
        "fanout_rate": a.fanout_rate,
        "pair_clients": a.pair_clients,
        "pairs_rate": a.pairs_rate,
        "rooms": a.rooms,
        "room_members": a.room_members,
        "room_clients": a.room_clients,
        "rooms_rate": a.rooms_rate,
        "idle": a.idle,
        "idle_hold_s": a.idle_hold,
        "storm": a.storm,
        "warmup_s": a.warmup,
        "measure_s": a.measure,
        "sweep_start": a.sweep_start,
        "sweep_factor": a.sweep_factor,
        "sweep_steps": a.sweep_steps,
        "sweep_secs": a.sweep_secs,
        "sweep_stop_ms": a.sweep_stop_ms,
        "body_bytes": stats::BODY_LEN,
    })
}

async fn fanout(
    args: &RunArgs,
    pin: &Pinning,
    target: &Target,
    report: &mut Report,
    want: &impl Fn(&str) -> bool,
) -> Result<()> {
    let name = target.name().to_owned();
    log(format!("{name}: fan-out, {} members", args.members));
    let started = target.start(pin, "fanout").await?;
    let base = settle(&started.proc).await;
    let rec = Arc::new(Recorder::new());
    let fleet = target
        .connect(&started, args.members, Mode::Room, rec.clone())
        .await?;
    log(format!("  connected in {:.1} s", fleet.connect_secs));
    let pattern = Pattern::Room(args.members);
    if want("fanout") {
        let t = Timing {
            warmup: secs(args.warmup),
            measure: secs(args.measure),
            drain: secs(3.0),
        };
        let r = load::step(
            &name,
            "fanout",
            &fleet,
            Some(&started.proc),
            base,
            &rec,
            pattern,
            args.fanout_rate,
            t,
        )
        .await;
        log(report::line(&r));
        report.steps.push(r);
    }
    if want("sweep") {
        let mut rate = args.sweep_start;
        for _ in 0..args.sweep_steps {
            let t = Timing {
                warmup: secs(1.0),
                measure: secs(args.sweep_secs),
                drain: secs(2.0),
            };
            let r = load::step(
                &name,
                "sweep",
                &fleet,
                Some(&started.proc),
                base,
                &rec,
                pattern,
                rate,
                t,
            )
            .await;
            log(report::line(&r));
            let stop = r.latency.p99_ms > args.sweep_stop_ms
                || r.lost * 100 > r.expected.max(1)
                || r.latency.n == 0;
            report.steps.push(r);
            if stop {
                break;
            }
            // Let queues empty before the next rate.
            tokio::time::sleep(Duration::from_millis(500)).await;
            rate *= args.sweep_factor;
        }
    }
    drop(fleet);
    stop(started).await;
    Ok(())
}

async fn pairs(args: &RunArgs, pin: &Pinning, target: &Target, report: &mut Report) -> Result<()> {
    let name = target.name().to_owned();
    log(format!(
        "{name}: private pairs, {} clients",
        args.pair_clients
    ));
    let started = target.start(pin, "pairs").await?;
    let base = settle(&started.proc).await;
    let rec = Arc::new(Recorder::new());
    let fleet = target
        .connect(&started, args.pair_clients, Mode::Pairs, rec.clone())
        .await?;
    log(format!("  connected in {:.1} s", fleet.connect_secs));
    let t = Timing {
        warmup: secs(args.warmup),
        measure: secs(args.measure),
        drain: secs(3.0),
    };
    let r: StepResult = load::step(
        &name,
        "pairs",
        &fleet,
        Some(&started.proc),
        base,
        &rec,
        Pattern::Pairs(args.pair_clients),
        args.pairs_rate,
        t,
    )
    .await;
    log(report::line(&r));
    report.steps.push(r);
    drop(fleet);
    stop(started).await;
    Ok(())
}

/// The many-rooms scenario: `layout`'s clients connect and create or join their rooms (not
/// measured; the server may use every core meanwhile, as logins are CPU-bound), then
/// `--rooms-rate` messages/s spread evenly over the rooms.
async fn many_rooms(
    args: &RunArgs,
    pin: &Pinning,
    target: &Target,
    layout: RoomLayout,
    report: &mut Report,
) -> Result<()> {
    let name = target.name().to_owned();
    log(format!(
        "{name}: many rooms, {} rooms of {} members over {} clients",
        layout.rooms, layout.members, layout.clients
    ));
    let started = target.start(pin, "rooms").await?;
    let base = settle(&started.proc).await;
    let rec = Arc::new(Recorder::new());
    pin.widen(started.proc.pid, true);
    let fleet = target
        .connect(&started, layout.clients, Mode::Rooms(layout), rec.clone())
        .await;
    pin.widen(started.proc.pid, false);
    let fleet = fleet?;
    log(format!(
        "  connected and joined in {:.1} s",
        fleet.connect_secs
    ));
    // Every room should have seen a couple of messages before the window opens (LiveWire
    // opens a conversation's stream on its first use).
    let warmup = args.warmup.max(2.0 * layout.rooms as f64 / args.rooms_rate);
    let t = Timing {
        warmup: secs(warmup),
        measure: secs(args.measure),
        drain: secs(3.0),
    };
    let r = load::step(
        &name,
        "rooms",
        &fleet,
        Some(&started.proc),
        base,
        &rec,
        Pattern::Rooms(layout),
        args.rooms_rate,
        t,
    )
    .await;
    log(report::line(&r));
    report.steps.push(r);
    drop(fleet);
    stop(started).await;
    Ok(())
}

async fn idle(args: &RunArgs, pin: &Pinning, target: &Target) -> Result<IdleResult> {
    let name = target.name().to_owned();
    log(format!("{name}: idle, {} clients", args.idle));
    let started = target.start(pin, "idle").await?;
    let base = settle(&started.proc).await;
    let cpu_connect0 = started.proc.cpu_secs();
    let rec = Arc::new(Recorder::new());
    // Logins can be CPU-bound (LiveWire hashes every password with Argon2id): the server may
    // use every core while the clients connect, and goes back to its own core to be watched.
    pin.widen(started.proc.pid, true);
    let fleet = target
        .connect(&started, args.idle, Mode::Idle, rec.clone())
        .await;
    pin.widen(started.proc.pid, false);
    let fleet = fleet?;
    let cpu_connect = started.proc.cpu_secs() - cpu_connect0;
    log(format!(
        "  connected in {:.1} s ({:.0}/s), server CPU {:.1} s",
        fleet.connect_secs,
        args.idle as f64 / fleet.connect_secs,
        cpu_connect
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let errors0 = rec.errors();
    let cpu0 = started.proc.cpu_secs();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle_hold)).await;
    let held = t0.elapsed().as_secs_f64();
    let cpu = started.proc.cpu_secs() - cpu0;
    let rss = started.proc.rss_kb();
    let hwm = crate::proc::status_kb(started.proc.pid, "VmHWM:").unwrap_or(0);
    let r = IdleResult {
        target: name,
        clients: fleet.peers.len(),
        connect_secs: fleet.connect_secs,
        connect_server_cpu_ms_per_conn: cpu_connect * 1e3 / args.idle as f64,
        hold_secs: held,
        server_cpu_pct: cpu / held * 100.0,
        server_rss_base_kb: base,
        server_rss_kb: rss,
        server_hwm_kb: hwm,
        rss_per_conn_kb: rss.saturating_sub(base) as f64 / fleet.peers.len().max(1) as f64,
        errors: rec.errors() - errors0,
        connect_retries: rec.retries(),
        first_errors: rec.first_errors(),
    };
    log(format!(
        "  {} idle: RSS {} KiB (base {}), {:.1} KiB/conn, CPU {:.2} %, errors {}",
        r.target, r.server_rss_kb, base, r.rss_per_conn_kb, r.server_cpu_pct, r.errors
    ));
    drop(fleet);
    stop(started).await;
    Ok(r)
}
