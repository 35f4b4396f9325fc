//! MQTT peer: mosquitto over TLS, driven by `rumqttc` (MQTT 5, rustls with ring).
//!
//! The room is topic `general`, subscribed with No Local so a sender does not get its own
//! message back (like LiveWire and IRC); a private message goes to topic `u/<n>`, which
//! only client `n` subscribes to. In the many-rooms scenario room `r` is topic `room/<r>`,
//! each client subscribing to its rooms in one SUBSCRIBE. QoS 1 both ways: the broker acknowledges each publish and
//! each subscriber acknowledges each delivery, the closest MQTT gets to LiveWire's acked
//! messages (mosquitto keeps them in memory; LiveWire writes them to SQLite first).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};

use crate::load::{Dest, Fleet, Mode, SendFn, connect_all};
use crate::rooms::RoomLayout;
use crate::stats::Recorder;

/// How to reach the broker.
pub struct Mqtt {
    /// The command that starts it (e.g. `mosquitto -c /tmp/x/mosquitto.conf`).
    pub argv: Vec<String>,
    /// Its TLS port on 127.0.0.1.
    pub port: u16,
    /// The CA that signed its certificate.
    pub ca: PathBuf,
}

/// Connects `n` clients.
pub async fn connect(m: &Mqtt, n: usize, mode: Mode, rec: Arc<Recorder>) -> Result<Fleet> {
    let tls = crate::tlsconf::tcp_client(&m.ca)?;
    let port = m.port;
    let rooms: Arc<Vec<Vec<usize>>> = Arc::new(match mode {
        Mode::Rooms(layout) => layout.rooms_by_client(),
        _ => Vec::new(),
    });
    connect_all(n, 64, move |i| {
        let tls = tls.clone();
        let rec = rec.clone();
        let filters = filters(i, mode, rooms.get(i).map_or(&[][..], Vec::as_slice));
        async move { client(i, port, tls, filters, rec).await }
    })
    .await
}

/// What client `i` subscribes to: the room (or its rooms) with No Local, else its own topic.
fn filters(i: usize, mode: Mode, rooms: &[usize]) -> Vec<Filter> {
    let room = |topic: String| {
        let mut f = Filter::new(topic, QoS::AtLeastOnce);
        f.nolocal = true;
        f
    };
    match mode {
        Mode::Room => vec![room("general".to_owned())],
        Mode::Rooms(_) => rooms.iter().map(|&r| room(RoomLayout::topic(r))).collect(),
        Mode::Pairs | Mode::Idle => vec![Filter::new(format!("u/{i}"), QoS::AtLeastOnce)],
    }
}

async fn client(
    i: usize,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    filters: Vec<Filter>,
    rec: Arc<Recorder>,
) -> Result<(SendFn, Vec<tokio::task::JoinHandle<()>>)> {
    let mut opts = MqttOptions::new(format!("bench{i}"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(15));
    opts.set_clean_start(true);
    // rumqttc sizes a table per client by this (65 535 entries, ~13 MB, by default).
    opts.set_outgoing_inflight_upper_limit(256);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    opts.set_network_options(net);
    let (client, mut eventloop) = AsyncClient::new(opts, 4096);
    client.subscribe_many(filters).await?;
    // Poll until subscribed.
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => bail!("mqtt: {e}"),
            }
        }
    })
    .await
    .context("not subscribed within 60 s")??;
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => rec.deliver(i, &p.payload),
                Ok(_) => {}
                Err(e) => {
                    rec.error(format!("mqtt: {e}"));
                    return;
                }
            }
        }
    });
    let send: SendFn = Box::new(move |dest, text| {
        let topic = match dest {
            Dest::Room => "general".to_owned(),
            Dest::User(j) => format!("u/{j}"),
            Dest::Channel(r) => RoomLayout::topic(r),
        };
        client
            .try_publish(topic, QoS::AtLeastOnce, false, text.into_bytes())
            .is_ok()
    });
    Ok((send, vec![task]))
}
