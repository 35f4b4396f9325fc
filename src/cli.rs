//! The command line: `livewire server|client|chat|demo|cert`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::app::limits::Limits;
use crate::paths::{client_state_dir, config_dir, pin_store, server_data_dir, state_file};
use crate::scripted::{self, exit};
use crate::transport::client::{ClientOptions, Trust};
use crate::transport::quic::{self, Timers};
use crate::transport::server::ServerOptions;
use crate::transport::tls::Identity;

/// LiveWire: self-hosted real-time chat over QUIC.
#[derive(Debug, Parser)]
#[command(name = "livewire", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a server (a window, or JSON lines on stdout with --headless).
    Server(ServerArgs),
    /// Scripted client: JSON commands on stdin, JSON events on stdout.
    Chat(ChatArgs),
    /// The desktop client window.
    Client(GuiClientArgs),
    /// A server and two client windows, logged in and ready to chat.
    Demo(DemoArgs),
    /// Create (or show) the server certificate in a directory.
    Cert {
        /// Directory for cert.pem and key.pem.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
    },
    /// Write the manual pages (livewire.1, livewire-server.1, …) into a directory; used by
    /// scripts/package.sh, so the pages always describe the binary they ship with.
    #[command(hide = true)]
    Man {
        /// Directory for the pages (created if missing).
        dir: PathBuf,
    },
}

/// Server options shared by the window and headless mode.
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// Run without a window, printing JSON lines.
    #[arg(long)]
    headless: bool,
    /// Address and UDP port to listen on.
    #[arg(long, default_value = "0.0.0.0:7447")]
    listen: SocketAddr,
    /// Where the database and certificate live [default: the XDG data dir].
    #[arg(long, env = "LIVEWIRE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the chat's data in PostgreSQL (`postgres://user@host:port/db`) instead of SQLite
    /// in the data dir (headless only; the certificate and files stay in the data dir).
    #[arg(long, env = "LIVEWIRE_DATABASE", value_name = "URL")]
    database: Option<String>,
    /// Operator certificate chain (PEM); needs --key.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Operator private key (PEM); needs --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Seconds during which an author may delete a message for everyone.
    #[arg(long, default_value_t = Limits::default().delete_window_secs)]
    delete_window: u64,
    /// Largest file a user may upload, in bytes (refused up front beyond).
    #[arg(long, default_value_t = Limits::default().max_file_size)]
    max_file_size: u64,
    /// Bytes of files one user may keep on the server (uploads beyond are refused up
    /// front with `quota_exceeded`).
    #[arg(long, default_value_t = Limits::default().quota_per_user)]
    quota_per_user: u64,
    /// Messages a user may send in a burst.
    #[arg(long, default_value_t = Limits::default().msg_burst)]
    msg_burst: u32,
    /// Sustained messages per second per user.
    #[arg(long, default_value_t = Limits::default().msg_per_sec)]
    msg_rate: u32,
    /// Largest message text in bytes.
    #[arg(long, default_value_t = Limits::default().max_body)]
    max_body: usize,
    /// Concurrent connections per IP address.
    #[arg(long, default_value_t = Limits::default().conns_per_ip)]
    conns_per_ip: usize,
    /// Seconds a client has to log in after the handshake.
    #[arg(long, default_value_t = Limits::default().login_deadline_secs)]
    login_deadline: u64,
    /// Seconds of silence after which a connection is given up (the shorter of the
    /// server's and the client's idle timeouts applies).
    #[arg(long, value_name = "SECS", default_value_t = quic::IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMER_SECS))]
    idle_timeout: u64,
    /// Ask the home router to forward the UDP port (PCP, NAT-PMP or UPnP IGD; `auto` tries
    /// them in that order), renew it, and remove it on shutdown.
    #[arg(long, value_name = "PROTOCOL", num_args = 0..=1, default_missing_value = "auto")]
    port_mapping: Option<crate::transport::portmap::MapProtocol>,
    /// Cluster mode: fan out to the other nodes through this NATS server
    /// (`nats://host:port`); needs --database postgres://… shared by every node.
    #[arg(long, env = "LIVEWIRE_NATS", value_name = "URL", requires = "database")]
    nats: Option<String>,
    /// This node's id in a cluster (0–255, unique per node; carried in connection IDs)
    /// [default: random, logged].
    #[arg(long, env = "LIVEWIRE_NODE_ID", value_name = "ID")]
    node_id: Option<u8>,
}

impl ServerArgs {
    /// The port-mapping request, if `--port-mapping` was given.
    pub fn port_mapping(&self) -> Option<crate::transport::portmap::PortMapOptions> {
        self.port_mapping
            .map(|protocol| crate::transport::portmap::PortMapOptions {
                protocol,
                ..Default::default()
            })
    }

    /// Resolves the options (default data dir, limits).
    pub fn options(&self) -> ServerOptions {
        let limits = Limits {
            delete_window_secs: self.delete_window,
            msg_burst: self.msg_burst,
            msg_per_sec: self.msg_rate,
            max_body: self.max_body,
            max_frame: Limits::default().max_frame.max(self.max_body + 1024),
            conns_per_ip: self.conns_per_ip,
            login_deadline_secs: self.login_deadline,
            max_file_size: self.max_file_size,
            quota_per_user: self.quota_per_user,
            ..Limits::default()
        };
        ServerOptions {
            listen: self.listen,
            data_dir: self.data_dir.clone().unwrap_or_else(server_data_dir),
            cert: self.cert.clone().zip(self.key.clone()),
            limits,
            timers: Timers {
                idle_timeout: Duration::from_secs(self.idle_timeout),
                ..Timers::SERVER
            },
            node_id: self.node_id.unwrap_or_else(|| {
                let mut b = [0u8; 1];
                let _ = getrandom::fill(&mut b);
                b[0]
            }),
            nats: self.nats.clone(),
        }
    }
}

#[derive(Debug, Args)]
struct ChatArgs {
    /// Server as HOST:PORT; the nodes of a cluster as HOST:PORT,HOST:PORT,… (the client
    /// uses the first that answers and fails over to the next).
    #[arg(long)]
    server: String,
    /// Username (registered on first login).
    #[arg(long)]
    user: String,
    /// File whose first line is the password (else $LIVEWIRE_PASSWORD).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Trust and pin an unknown server's certificate.
    #[arg(long, conflicts_with = "fingerprint")]
    accept_new: bool,
    /// Expect exactly this certificate fingerprint (SHA256:…), and pin it.
    #[arg(long)]
    fingerprint: Option<String>,
    /// Where known-server pins live [default: the XDG config dir].
    #[arg(long, env = "LIVEWIRE_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
    /// Where sync positions are remembered [default: the XDG data dir].
    #[arg(long, env = "LIVEWIRE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// End on the first disconnect instead of reconnecting.
    #[arg(long)]
    no_reconnect: bool,
    /// Seconds of silence after which the connection is given up and the client reconnects
    /// (the shorter of the server's and the client's idle timeouts applies).
    #[arg(long, value_name = "SECS", default_value_t = quic::IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMER_SECS))]
    idle_timeout: u64,
    /// Seconds between keep-alive packets while quiet, to keep NAT mappings open (0: none).
    #[arg(long, value_name = "SECS", default_value_t = quic::KEEP_ALIVE.as_secs(),
          value_parser = clap::value_parser!(u64).range(0..=MAX_TIMER_SECS))]
    keep_alive: u64,
    /// Seconds a conversation's stream stays open without traffic; it reopens (and catches
    /// up) on the next use or news.
    #[arg(long, value_name = "SECS", default_value_t = crate::transport::client::STREAM_IDLE.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMER_SECS))]
    stream_idle: u64,
}

impl ChatArgs {
    /// The client's QUIC timers; the keep-alive must come before the idle timeout fires.
    fn timers(&self) -> Result<Timers, String> {
        if self.keep_alive >= self.idle_timeout {
            return Err("--keep-alive must be shorter than --idle-timeout".into());
        }
        Ok(Timers {
            idle_timeout: Duration::from_secs(self.idle_timeout),
            keep_alive: (self.keep_alive > 0).then(|| Duration::from_secs(self.keep_alive)),
        })
    }
}

/// The longest timer the command line accepts (a day).
const MAX_TIMER_SECS: u64 = 24 * 3600;

#[derive(Debug, Args)]
struct GuiClientArgs {
    /// Where known-server pins and the remembered login live.
    #[arg(long, env = "LIVEWIRE_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Data directory of the demo server [default: a fresh temporary one].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn read_password(args: &ChatArgs) -> Result<String, String> {
    if let Some(path) = &args.password_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return Ok(text.lines().next().unwrap_or("").to_owned());
    }
    std::env::var("LIVEWIRE_PASSWORD")
        .map_err(|_| "a password is needed: --password-file FILE or LIVEWIRE_PASSWORD".to_owned())
}

/// One roff page per visible command, generated from the clap definition above.
fn write_man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("livewire: {msg}");
    ExitCode::from(exit::USAGE)
}

/// Runs a future on a fresh runtime. The runtime is shut down without waiting for
/// blocking tasks: a read of stdin that never returns must not keep the process alive.
fn block_on<F: std::future::Future<Output = ExitCode>>(f: F) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    let code = rt.block_on(f);
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Server(args) if args.headless => block_on(scripted::run_headless_server(
            args.options(),
            args.port_mapping(),
            args.database.clone(),
        )),
        Cmd::Server(args) if args.database.is_some() => {
            eprintln!(
                "livewire: --database works with --headless only (the server window keeps SQLite)"
            );
            ExitCode::from(scripted::exit::USAGE)
        }
        Cmd::Server(args) => gui_server(args),
        Cmd::Chat(args) => {
            let password = match read_password(&args) {
                Ok(p) => p,
                Err(e) => return usage(&e),
            };
            if let Some(fp) = &args.fingerprint
                && !fp.starts_with("SHA256:")
            {
                return usage("--fingerprint takes the form SHA256:<64 hex digits>");
            }
            if let Err(e) = crate::transport::failover::ServerList::parse(&args.server) {
                return usage(&e.to_string());
            }
            let timers = match args.timers() {
                Ok(t) => t,
                Err(e) => return usage(&e),
            };
            let trust = match (&args.fingerprint, args.accept_new) {
                (Some(fp), _) => Trust::Fingerprint(fp.clone()),
                (None, true) => Trust::AcceptNew,
                (None, false) => Trust::PinnedOnly,
            };
            let config = args.config_dir.clone().unwrap_or_else(config_dir);
            let state_dir = args.state_dir.clone().unwrap_or_else(client_state_dir);
            let opts = ClientOptions {
                state_file: Some(state_file(&state_dir, &args.server, &args.user)),
                server: args.server,
                user: args.user,
                password,
                trust,
                pins: pin_store(&config),
                reconnect: !args.no_reconnect,
                endpoint: None,
                timers,
                stream_idle: Duration::from_secs(args.stream_idle),
            };
            block_on(scripted::run_chat(opts))
        }
        Cmd::Client(args) => gui_client(args.config_dir.unwrap_or_else(config_dir)),
        Cmd::Demo(args) => gui_demo(args.data_dir),
        Cmd::Man { dir } => match write_man_pages(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "livewire: cannot write manual pages to {}: {e}",
                    dir.display()
                );
                ExitCode::from(exit::OTHER)
            }
        },
        Cmd::Cert { dir } => match Identity::load_or_create(&dir) {
            Ok(id) => {
                println!("{} {}", dir.join("cert.pem").display(), id.fingerprint());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("livewire: {e}");
                ExitCode::from(exit::OTHER)
            }
        },
    }
}

#[cfg(feature = "gui")]
fn gui_server(args: ServerArgs) -> ExitCode {
    crate::gui::run_server(args.options())
}

#[cfg(feature = "gui")]
fn gui_client(config: PathBuf) -> ExitCode {
    crate::gui::run_client(config)
}

#[cfg(feature = "gui")]
fn gui_demo(data_dir: Option<PathBuf>) -> ExitCode {
    crate::gui::run_demo(data_dir)
}

#[cfg(not(feature = "gui"))]
fn gui_server(_: ServerArgs) -> ExitCode {
    usage("this livewire was built without the GUI: use `livewire server --headless`")
}

#[cfg(not(feature = "gui"))]
fn gui_client(_: PathBuf) -> ExitCode {
    usage("this livewire was built without the GUI: use `livewire chat`")
}

#[cfg(not(feature = "gui"))]
fn gui_demo(_: Option<PathBuf>) -> ExitCode {
    usage("this livewire was built without the GUI (feature `gui`)")
}
