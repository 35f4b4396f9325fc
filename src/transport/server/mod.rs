//! The server's async shell: the QUIC endpoint, one task per connection, and the hub thread
//! that owns the [`ServerCore`] and the store.
//!
//! Connection tasks read frames, open envelopes and send [`Input`]s to the hub over one
//! bounded channel. The hub handles a batch of inputs inside one store transaction,
//! commits, and hands the batch to a committer thread that makes it durable (one sync for
//! every batch queued) and only then routes its outputs (acks included) to each
//! connection's bounded queue, while the hub handles the next batch. A connection whose queue is full is cut off: a client that stops reading cannot
//! grow the server's memory or slow anyone else.
//!
//! The store is the caller's: anything that implements the app's [`Store`] (SQLite today)
//! plugs in through [`Server::start`]; the transport never names a backend.
//!
//! - `hub`: the hub thread and the router of its outputs.
//! - `connection`: accept (with the per-address limit), login, one connection's life.
//! - `context`: what one connection's tasks share.
//! - `streams`: the control and conversation stream readers, protocol errors.
//! - `queue`: a connection's outgoing queue, capped in bytes.
//! - `writer`: the task that writes a connection's queue.
//! - `operator`: the operator's bounded view of the server's log.
//! - `cluster`, `cluster_wire` (feature `cluster`): the NATS link to the other nodes of a
//!   cluster and its payloads (docs/SCALING.md).

#[cfg(feature = "cluster")]
mod cluster;
#[cfg(feature = "cluster")]
mod cluster_wire;
mod connection;
mod context;
mod hub;
mod operator;
mod queue;
mod streams;
mod writer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tracing::info;

use self::connection::Shared;
use self::hub::{HubMsg, Router};
use self::operator::OperatorLog;
pub use self::operator::{ServerEvent, ServerEvents};
use super::files::{DirBlobs, FileStore};
use super::quic::{self, Endpoint, Timers, close};
use super::tls::{Identity, TlsError};
use crate::app::blobs::FileBlobs;
use crate::app::ids::{ClientMsgId, ConnId};
use crate::app::limits::Limits;
use crate::app::server::{Input, ServerCore};
use crate::app::store::Store;

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to bind (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Where the generated certificate and uploaded files live (and, for the SQLite store
    /// its caller opens, the database).
    pub data_dir: PathBuf,
    /// Operator-supplied certificate and key (PEM) instead of the generated one.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Limits.
    pub limits: Limits,
    /// QUIC timers ([`Timers::SERVER`] by default).
    pub timers: Timers,
    /// This node's id in a cluster: logged, named in its NATS connection, and carried in
    /// its connection IDs. Any value on a single node.
    pub node_id: u8,
    /// Cluster mode: the NATS server the nodes fan out through (`nats://host:port`);
    /// `None` runs a single node. Needs the feature `cluster`.
    pub nats: Option<String>,
}

/// The link to the other nodes of a cluster (none without the feature `cluster`).
#[cfg(feature = "cluster")]
type Link = cluster::ClusterLink;
#[cfg(not(feature = "cluster"))]
type Link = std::convert::Infallible;

/// Holds the store until the hub thread takes it; a store dropped before that (the server
/// failed to start) is dropped on a thread of its own, never on an async worker, where a
/// blocking client such as PostgreSQL's would panic.
struct OffThreadDrop<S: Send + 'static>(Option<S>);

impl<S: Send + 'static> Drop for OffThreadDrop<S> {
    fn drop(&mut self) {
        if let Some(store) = self.0.take() {
            let _ = std::thread::spawn(move || drop(store));
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Certificate problem.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The hub thread could not be started.
    #[error("cannot start the hub thread: {0}")]
    Thread(std::io::Error),
    /// The rooms could not be loaded from the store.
    #[error("cannot load the rooms: {0}")]
    Store(#[from] crate::app::store::StoreError),
    /// Cluster mode could not start.
    #[error("cluster: {0}")]
    Cluster(String),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// A cheap handle for the operator's actions.
#[derive(Clone)]
pub struct ServerHandle {
    hub: mpsc::Sender<HubMsg>,
}

impl ServerHandle {
    /// Posts an announcement to `#general` as `server`.
    pub async fn announce(&self, text: String) {
        self.announce_to(None, text).await;
    }

    /// Posts an announcement as `server` into a room (`None`: `#general`). The operator
    /// may announce into any room, member or not; an unknown room is ignored.
    pub async fn announce_to(&self, room: Option<String>, text: String) {
        let mut id = [0u8; 16];
        let _ = getrandom::fill(&mut id);
        let cmid = ClientMsgId(id);
        let input = Input::Announce { room, text, cmid };
        let _ = self.hub.send(HubMsg::Input(input)).await;
    }

    /// Deletes message `id` of `#general` or of a room for everyone (the operator moderates
    /// them); messages of private conversations are not the operator's to delete.
    pub async fn delete_message(&self, id: u64) {
        let _ = self
            .hub
            .send(HubMsg::Input(Input::OperatorDelete { id }))
            .await;
    }

    /// Closes a room (name or key): every member gets `Left` (change `left`, by `server`:
    /// closed by the operator), and the room, its history and its name are gone.
    pub async fn close_room(&self, room: String) {
        let _ = self
            .hub
            .send(HubMsg::Input(Input::CloseRoom { room }))
            .await;
    }

    /// Disconnects one client.
    pub async fn kick(&self, conn: ConnId) {
        let _ = self.hub.send(HubMsg::Input(Input::Kick { conn })).await;
    }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    fingerprint: String,
    endpoint: Endpoint,
    handle: ServerHandle,
    events: Option<ServerEvents>,
    hub_thread: Option<std::thread::JoinHandle<()>>,
    accept: tokio::task::JoinHandle<()>,
    link: Option<Link>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Server {
    /// Loads or creates the certificate, binds, starts the hub on `store` and starts
    /// accepting. Stored files live in the data dir.
    pub async fn start<S>(opts: ServerOptions, store: S) -> Result<Server, StartError>
    where
        S: Store + Send + 'static,
    {
        let blobs = Arc::new(DirBlobs::new(opts.data_dir.join("files")));
        Self::start_with_blobs(opts, store, blobs).await
    }

    /// [`Server::start`] with stored files in `blobs` (a cluster's nodes share theirs).
    pub async fn start_with_blobs<S>(
        opts: ServerOptions,
        store: S,
        blobs: Arc<dyn FileBlobs>,
    ) -> Result<Server, StartError>
    where
        S: Store + Send + 'static,
    {
        let mut store = OffThreadDrop(Some(store));
        let identity = match &opts.cert {
            Some((c, k)) => Identity::from_pem_files(c, k)?,
            None => Identity::load_or_create(&opts.data_dir)?,
        };
        let fingerprint = identity.fingerprint();
        let endpoint_config = quic::node_endpoint_config(&identity, opts.node_id);
        let streams = opts.limits.streams_per_conn;
        let config = quic::server_config_with(identity, streams, &opts.timers)?;
        let bind_err = |source| StartError::Bind {
            addr: opts.listen,
            source,
        };
        let endpoint =
            quic::server_endpoint(endpoint_config, config, opts.listen).map_err(bind_err)?;
        let addr = endpoint.local_addr().map_err(bind_err)?;
        let (hub_tx, hub_rx) = mpsc::channel(16 * 1024);
        let (operator, events) = OperatorLog::channel();
        let files = Arc::new(FileStore::with_blobs(
            blobs,
            opts.limits.max_file_size,
            opts.limits.quota_per_user,
        ));
        tokio::spawn(files.clone().sweep_parts_forever());
        let (link, cluster) = start_link(&opts, &hub_tx).await?;
        let clustered = cluster.is_some();
        let router = Router {
            files: files.clone(),
            outboxes: HashMap::new(),
            hub: hub_tx.downgrade(),
            operator,
            rt: tokio::runtime::Handle::current(),
            hashers: Arc::new(Semaphore::new(2)),
            queue_bytes: opts.limits.conn_queue_bytes,
            cluster,
        };
        // The store is used only on the hub thread: a blocking client (PostgreSQL's) must
        // never run, or be dropped, on an async worker.
        let store = store.0.take().expect("taken once");
        let limits = opts.limits.clone();
        let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
        let hub_thread = std::thread::Builder::new()
            .name("livewire-hub".into())
            .spawn(move || {
                let mut core = ServerCore::new(store, limits);
                let hello = if clustered {
                    core.enable_cluster()
                } else {
                    Vec::new()
                };
                match core.load_rooms() {
                    Ok(()) => {
                        let _ = loaded_tx.send(Ok(core.room_memberships()));
                    }
                    Err(e) => {
                        let _ = loaded_tx.send(Err(e));
                        return;
                    }
                }
                let run = std::panic::AssertUnwindSafe(move || {
                    let mut router = router;
                    for out in hello {
                        router.route(out);
                    }
                    hub::run(core, hub_rx, router)
                });
                if std::panic::catch_unwind(run).is_err() {
                    // Half a server is worse than none: nothing unacknowledged is lost
                    // (acks follow commits), and a supervisor restarts us.
                    eprintln!("livewire: internal error in the server hub; exiting");
                    std::process::abort();
                }
            })
            .map_err(StartError::Thread)?;
        let memberships = loaded_rx.await.map_err(|_| {
            crate::app::store::StoreError::other("the server hub ended while loading rooms")
        })??;
        for (room, user, private) in memberships {
            files.set_room_member(&room, &user, true, private);
        }
        let shared = Arc::new(Shared {
            hub: hub_tx.clone(),
            files,
            limits: opts.limits,
            per_ip: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            links: Mutex::new(HashMap::new()),
        });
        let accept = tokio::spawn(connection::accept_loop(endpoint.clone(), shared));
        info!(%addr, %fingerprint, "listening");
        Ok(Server {
            addr,
            fingerprint,
            endpoint,
            handle: ServerHandle { hub: hub_tx },
            events: Some(events),
            hub_thread: Some(hub_thread),
            accept,
            link,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The certificate fingerprint (`SHA256:…`).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Operator actions.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// The operator's event stream (take it once). Bounded: an operator that falls behind
    /// loses entries (counted, see [`ServerEvent::Dropped`]), never slows the server.
    pub fn take_events(&mut self) -> Option<ServerEvents> {
        self.events.take()
    }

    /// Graceful stop: refuse new connections, tell every client, flush their queues, close
    /// the connections, then close the database.
    pub async fn shutdown(mut self, reason: &str) {
        self.endpoint.set_server_config(None);
        self.accept.abort();
        let _ = self
            .handle
            .hub
            .send(HubMsg::Input(Input::Shutdown {
                reason: reason.to_owned(),
            }))
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle()).await;
        self.endpoint
            .close(quic::code(close::SHUTDOWN), reason.as_bytes());
        #[cfg(feature = "cluster")]
        if let Some(link) = self.link.take() {
            link.stop().await;
        }
        #[cfg(not(feature = "cluster"))]
        let _: Option<Link> = self.link.take();
        let _ = self.handle.hub.send(HubMsg::Stop).await;
        if let Some(t) = self.hub_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        info!("server stopped");
    }
}

/// Starts the link to the other nodes when the options name a NATS server: the link, and
/// the sender the hub publishes through.
#[cfg(feature = "cluster")]
async fn start_link(
    opts: &ServerOptions,
    hub: &mpsc::Sender<HubMsg>,
) -> Result<
    (
        Option<Link>,
        Option<mpsc::Sender<crate::app::server::ClusterMsg>>,
    ),
    StartError,
> {
    let Some(url) = &opts.nats else {
        return Ok((None, None));
    };
    let (link, tx) = cluster::ClusterLink::start(url, opts.node_id, hub.clone())
        .await
        .map_err(StartError::Cluster)?;
    Ok((Some(link), Some(tx)))
}

/// Without the feature `cluster`, a NATS server in the options is an error.
#[cfg(not(feature = "cluster"))]
async fn start_link(
    opts: &ServerOptions,
    _hub: &mpsc::Sender<HubMsg>,
) -> Result<
    (
        Option<Link>,
        Option<mpsc::Sender<crate::app::server::ClusterMsg>>,
    ),
    StartError,
> {
    match opts.nats {
        Some(_) => Err(StartError::Cluster(
            "this livewire was built without cluster mode (feature `cluster`)".into(),
        )),
        None => Ok((None, None)),
    }
}
