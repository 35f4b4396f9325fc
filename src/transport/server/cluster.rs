//! The node's link to the other nodes: one NATS connection (async-nats, on the node's
//! tokio runtime) that publishes what the hub emits and feeds the hub what the others
//! publish.
//!
//! - The hub hands messages to [`ClusterLink::sender`]'s bounded channel after its batch
//!   commits and never waits: when the channel is full (NATS far behind) a message is
//!   dropped and counted, which the clients' gap detection repairs like any lost publish.
//! - One subscription, `livewire.>`, with `no_echo`: a node never hears itself (the origin
//!   in the payload is checked too).
//! - After a reconnect the hub gets [`Input::ClusterResync`]: what was published meanwhile
//!   is lost (NATS core is at-most-once), so every open conversation is nudged.
//! - Every [`ROSTER_EVERY_MS`] the hub gets [`Input::ClusterTick`] (rosters, node expiry).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::cluster_wire::{self, SUBSCRIBE_ALL};
use super::hub::HubMsg;
use crate::app::server::{ClusterMsg, Input, ROSTER_EVERY_MS};

/// Messages waiting for NATS at most; beyond, they are dropped (see the module docs).
const OUT_QUEUE: usize = 64 * 1024;

/// A running link.
pub(super) struct ClusterLink {
    client: async_nats::Client,
    origin: u64,
    node_id: u8,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ClusterLink {
    /// Connects to NATS at `url` (in the background: a node starts, and serves its own
    /// clients, while NATS is down) and starts the publisher, subscriber and timer tasks.
    /// Returns the link and the sender the hub publishes through.
    pub(super) async fn start(
        url: &str,
        node_id: u8,
        hub: mpsc::Sender<HubMsg>,
    ) -> Result<(Self, mpsc::Sender<ClusterMsg>), String> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| format!("no randomness for the instance id: {e}"))?;
        let origin = u64::from_le_bytes(id);
        let was_down = Arc::new(AtomicBool::new(false));
        let events_hub = hub.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("livewire-node-{node_id}"))
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            // Quick to come back: every second without the link is a second of fan-out
            // that clients must repair from the store.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100 * attempts as u64).clamp(100, 2_000))
            })
            .event_callback(move |event| {
                let (hub, was_down) = (events_hub.clone(), was_down.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            info!("cluster: connected to NATS");
                            if was_down.swap(false, Ordering::SeqCst) {
                                info!("cluster: NATS is back; nudging every open conversation to catch up");
                                let _ = hub.send(HubMsg::Input(Input::ClusterResync)).await;
                            }
                        }
                        async_nats::Event::Disconnected => {
                            warn!("cluster: lost NATS; fan-out to other nodes paused");
                            was_down.store(true, Ordering::SeqCst);
                        }
                        other => info!("cluster: NATS {other}"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| format!("NATS at {url}: {e}"))?;
        let subscriber = client
            .subscribe(SUBSCRIBE_ALL)
            .await
            .map_err(|e| format!("NATS subscribe: {e}"))?;
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        let tasks = vec![
            tokio::spawn(publish(client.clone(), rx, origin, node_id)),
            tokio::spawn(receive(subscriber, hub.clone(), origin)),
            tokio::spawn(tick(hub)),
        ];
        info!(node_id, origin = format!("{origin:016x}"), %url, "cluster: node started");
        let link = Self {
            client,
            origin,
            node_id,
            tasks,
        };
        Ok((link, tx))
    }

    /// Tells the other nodes this one is going (its users are offline at once, not after
    /// the expiry), then stops the tasks.
    pub(super) async fn stop(self) {
        let bye = cluster_wire::encode(self.origin, self.node_id, &ClusterMsg::Bye);
        let subject = cluster_wire::subject(&ClusterMsg::Bye);
        let _ = self.client.publish(subject, bye.into()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.flush()).await;
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Dropped messages so far (logged every time the count passes a power of two).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Counts a message the link could not take.
pub(super) fn dropped(what: &str) {
    let n = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        warn!(
            dropped = n,
            "cluster: {what}; other nodes' clients repair it from the store"
        );
    }
}

async fn publish(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<ClusterMsg>,
    origin: u64,
    node_id: u8,
) {
    while let Some(msg) = rx.recv().await {
        let payload = cluster_wire::encode(origin, node_id, &msg);
        if let Err(e) = client
            .publish(cluster_wire::subject(&msg), payload.into())
            .await
        {
            dropped(&format!("publish failed: {e}"));
        }
    }
}

async fn receive(mut sub: async_nats::Subscriber, hub: mpsc::Sender<HubMsg>, origin: u64) {
    while let Some(m) = sub.next().await {
        match cluster_wire::decode(&m.payload) {
            Ok(env) if env.origin == origin => {}
            Ok(env) => {
                let input = Input::Cluster {
                    from: env.origin,
                    msg: env.msg,
                };
                if hub.send(HubMsg::Input(input)).await.is_err() {
                    return;
                }
            }
            Err(e) => warn!(subject = %m.subject, "cluster: {e}"),
        }
    }
}

async fn tick(hub: mpsc::Sender<HubMsg>) {
    let mut every = tokio::time::interval(Duration::from_millis(ROSTER_EVERY_MS));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if hub.send(HubMsg::Input(Input::ClusterTick)).await.is_err() {
            return;
        }
    }
}
