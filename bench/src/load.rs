//! The open-loop driver shared by every target: a fleet of connected clients, a schedule of
//! sends at a fixed total rate, and the measurement of one step of that schedule.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::proc::ServerProc;
use crate::rooms::RoomLayout;
use crate::stats::{Latency, Recorder, payload};

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// The shared room (`#general`, MQTT topic `general`, IRC `#general`).
    Room,
    /// Client number `n` (a private message; for the echo references, the sender itself).
    User(usize),
    /// Room number `r` of the many-rooms scenario (`#room-r`, MQTT topic `room/r`).
    Channel(usize),
}

/// What the clients of a fleet do once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everyone is in the room.
    Room,
    /// Clients 2k and 2k+1 talk privately.
    Pairs,
    /// Connected, logged in, nothing else.
    Idle,
    /// Each client in its rooms of the layout (rooms created and joined before the fleet is
    /// handed over; that setup is not measured).
    Rooms(RoomLayout),
}

/// Sends one body; `false` when it could not even be queued.
pub type SendFn = Box<dyn Fn(Dest, String) -> bool + Send + Sync>;

/// Connected clients of one target.
pub struct Fleet {
    /// One sender per client, by index.
    pub peers: Vec<SendFn>,
    /// Tasks to stop when the fleet goes.
    pub tasks: Vec<JoinHandle<()>>,
    /// Seconds it took to connect (and join) them all.
    pub connect_secs: f64,
    /// Run when the fleet goes (e.g. close shared QUIC endpoints so clients end at once).
    pub cleanup: Vec<Box<dyn FnOnce() + Send>>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in self.cleanup.drain(..) {
            c();
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Which client sends message `i`, to whom, and how many deliveries it should make.
#[derive(Debug, Clone, Copy)]
pub enum Pattern {
    /// Round-robin senders into the room; each message reaches the other `n - 1`.
    Room(usize),
    /// `n / 2` pairs taking turns; each message reaches one peer.
    Pairs(usize),
    /// Each of `n` clients to itself (echo references).
    Echo(usize),
    /// Message `i` into room `i mod rooms`, from its members in turn; each message reaches
    /// the room's other `members - 1`. Every room gets the same share of the traffic.
    Rooms(RoomLayout),
}

impl Pattern {
    fn pick(self, i: u64) -> (usize, Dest) {
        match self {
            Pattern::Room(n) => ((i % n as u64) as usize, Dest::Room),
            Pattern::Pairs(n) => {
                let pairs = (n / 2).max(1) as u64;
                let p = (i % pairs) as usize;
                let flip = (i / pairs) % 2 == 1;
                let (a, b) = (2 * p, 2 * p + 1);
                if flip {
                    (b, Dest::User(a))
                } else {
                    (a, Dest::User(b))
                }
            }
            Pattern::Echo(n) => {
                let s = (i % n as u64) as usize;
                (s, Dest::User(s))
            }
            Pattern::Rooms(l) => {
                let r = (i % l.rooms as u64) as usize;
                let k = ((i / l.rooms as u64) % l.members as u64) as usize;
                (l.member(r, k), Dest::Channel(r))
            }
        }
    }

    fn fan(self) -> u64 {
        match self {
            Pattern::Room(n) => n.saturating_sub(1) as u64,
            Pattern::Rooms(l) => l.members.saturating_sub(1) as u64,
            Pattern::Pairs(_) | Pattern::Echo(_) => 1,
        }
    }
}

/// One measured step.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// Target name.
    pub target: String,
    /// Scenario name.
    pub scenario: String,
    /// Connected clients.
    pub clients: usize,
    /// Offered messages per second (sends).
    pub offered_msgs_per_s: f64,
    /// Messages sent in the measured window.
    pub sent: u64,
    /// Deliveries that arrived during the window, per second.
    pub delivered_per_s: f64,
    /// Deliveries expected for the messages sent in the window.
    pub expected: u64,
    /// Of those, how many never arrived (before the drain ended).
    pub lost: u64,
    /// End-to-end latency of the messages sent in the window (from the moment the generator
    /// handed the message to the client library to the moment a receiving client had it).
    pub latency: Latency,
    /// How late the generator sent, against the open-loop schedule (1 ms timer ticks give
    /// up to 1 ms; much more means the generator could not keep up).
    pub send_lag: Latency,
    /// Server CPU seconds in the window.
    pub server_cpu_s: f64,
    /// Server CPU, percent of one core.
    pub server_cpu_pct: f64,
    /// Server CPU microseconds per delivered message.
    pub server_cpu_us_per_delivery: f64,
    /// Generator CPU, percent of one core.
    pub generator_cpu_pct: f64,
    /// Server RSS at the end of the window, KiB.
    pub server_rss_kb: u64,
    /// Server RSS before any client connected, KiB.
    pub server_rss_base_kb: u64,
    /// (RSS - base) / clients, KiB.
    pub rss_per_conn_kb: f64,
    /// Errors counted during the step.
    pub errors: u64,
    /// The first error texts of the scenario, if any.
    pub first_errors: Vec<String>,
    /// The machine's 1-minute load average at the end of the window (this process, the
    /// server and whatever else runs on the machine).
    pub loadavg_1m: f64,
}

/// Timing of a step.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Not measured (connections warm, queues settle).
    pub warmup: Duration,
    /// Measured.
    pub measure: Duration,
    /// Longest wait for stragglers after the last send.
    pub drain: Duration,
}

/// Sends messages `next..` on the schedule `start + i / rate` until `until`, recording how
/// late each left.
#[allow(clippy::too_many_arguments)]
async fn drive(
    fleet: &Fleet,
    rec: &Recorder,
    pattern: Pattern,
    rate: f64,
    start: Instant,
    mut next: u64,
    until: Instant,
    lags: &mut Vec<u64>,
    window: (u64, u64),
    in_window: &mut u64,
) -> u64 {
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start_ns = rec.ns_of(start);
    loop {
        let now = Instant::now();
        let horizon = now.min(until);
        // Message i is due at start + i / rate: those due before `horizon` number
        // ceil(elapsed * rate).
        let due = (horizon.saturating_duration_since(start).as_secs_f64() * rate).ceil() as u64;
        while next < due {
            let intended = start_ns + (next as f64 / rate * 1e9) as u64;
            let (sender, dest) = pattern.pick(next);
            let actual = rec.now_ns();
            lags.push(actual.saturating_sub(intended));
            if actual >= window.0 && actual < window.1 {
                *in_window += 1;
            }
            if !(fleet.peers[sender])(dest, payload(actual, sender)) {
                rec.error("a send could not be queued");
            }
            next += 1;
        }
        if now >= until {
            return next;
        }
        tick.tick().await;
    }
}

/// Runs one step at `rate` messages/s and measures it.
#[allow(clippy::too_many_arguments)]
pub async fn step(
    target: &str,
    scenario: &str,
    fleet: &Fleet,
    server: Option<&ServerProc>,
    rss_base_kb: u64,
    rec: &Arc<Recorder>,
    pattern: Pattern,
    rate: f64,
    t: Timing,
) -> StepResult {
    rec.take();
    let errors0 = rec.errors();
    let start = Instant::now();
    let w0 = start + t.warmup;
    let w1 = w0 + t.measure;
    let mut lags = Vec::new();
    // A message counts in the window by the time it really left (its body's stamp), the
    // same way its deliveries are counted.
    let window = (rec.ns_of(w0), rec.ns_of(w1));
    let mut sent = 0u64;
    let next = drive(
        fleet, rec, pattern, rate, start, 0, w0, &mut lags, window, &mut sent,
    )
    .await;
    lags.clear();
    let cpu0 = server.map_or(0.0, |s| s.cpu_secs());
    let gen0 = crate::proc::self_cpu_secs();
    drive(
        fleet, rec, pattern, rate, start, next, w1, &mut lags, window, &mut sent,
    )
    .await;
    let cpu1 = server.map_or(0.0, |s| s.cpu_secs());
    let gen1 = crate::proc::self_cpu_secs();
    let rss = server.map_or(0, |s| s.rss_kb());
    // Sends late for the window's end land just after it: let them be stamped first.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let expected = sent * pattern.fan();
    // Drain: wait until the window's deliveries are in, or nothing arrives for 300 ms.
    let drain_end = Instant::now() + t.drain;
    let (w0_ns, w1_ns) = window;
    let mut last = rec.len();
    let mut quiet_since = Instant::now();
    while Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = rec.len();
        if n != last {
            last = n;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_millis(300) {
            break;
        }
    }
    let samples = rec.take();
    let secs = t.measure.as_secs_f64();
    let in_window: Vec<u64> = samples
        .iter()
        .filter(|(s, _)| *s >= w0_ns && *s < w1_ns)
        .map(|(s, r)| r.saturating_sub(*s))
        .collect();
    let arrived = samples
        .iter()
        .filter(|(_, r)| *r >= w0_ns && *r < w1_ns)
        .count() as u64;
    let got = in_window.len() as u64;
    let cpu = cpu1 - cpu0;
    let clients = fleet.peers.len();
    StepResult {
        target: target.to_owned(),
        scenario: scenario.to_owned(),
        clients,
        offered_msgs_per_s: rate,
        sent,
        delivered_per_s: arrived as f64 / secs,
        expected,
        lost: expected.saturating_sub(got),
        latency: Latency::of(in_window),
        send_lag: Latency::of(lags),
        server_cpu_s: cpu,
        server_cpu_pct: cpu / secs * 100.0,
        server_cpu_us_per_delivery: if arrived > 0 {
            cpu * 1e6 / arrived as f64
        } else {
            0.0
        },
        generator_cpu_pct: (gen1 - gen0) / secs * 100.0,
        server_rss_kb: rss,
        server_rss_base_kb: rss_base_kb,
        rss_per_conn_kb: if clients > 0 {
            rss.saturating_sub(rss_base_kb) as f64 / clients as f64
        } else {
            0.0
        },
        errors: rec.errors() - errors0,
        first_errors: rec.first_errors(),
        loadavg_1m: crate::proc::loadavg_1m(),
    }
}

/// Connects `n` clients with at most `parallel` connecting at once. `connect(i)` returns the
/// client's sender and its tasks once it is ready for `mode`.
pub async fn connect_all<F, Fut>(n: usize, parallel: usize, connect: F) -> anyhow::Result<Fleet>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(SendFn, Vec<JoinHandle<()>>)>>
        + Send
        + 'static,
{
    let t0 = Instant::now();
    let mut peers: Vec<Option<SendFn>> = (0..n).map(|_| None).collect();
    let mut tasks = Vec::new();
    let mut set = tokio::task::JoinSet::new();
    let mut i = 0;
    let mut first_err: Option<anyhow::Error> = None;
    let mut failed = 0usize;
    while i < n || !set.is_empty() {
        while i < n && set.len() < parallel && first_err.is_none() {
            let fut = connect(i);
            let idx = i;
            set.spawn(async move { (idx, fut.await) });
            i += 1;
        }
        if first_err.is_some() && i < n {
            i = n;
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        match done {
            Ok((idx, Ok((send, t)))) => {
                peers[idx] = Some(send);
                tasks.extend(t);
            }
            Ok((idx, Err(e))) => {
                failed += 1;
                first_err.get_or_insert(e.context(format!("client {idx}")));
            }
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e.into());
            }
        }
    }
    if let Some(e) = first_err {
        for t in &tasks {
            t.abort();
        }
        return Err(e.context(format!("{failed} of {n} clients failed to connect")));
    }
    Ok(Fleet {
        peers: peers
            .into_iter()
            .map(|p| p.expect("every client connected"))
            .collect(),
        tasks,
        connect_secs: t0.elapsed().as_secs_f64(),
        cleanup: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_take_turns_and_stay_in_their_pair() {
        let p = Pattern::Pairs(4);
        let picks: Vec<_> = (0..4).map(|i| p.pick(i)).collect();
        assert_eq!(
            picks,
            vec![
                (0, Dest::User(1)),
                (2, Dest::User(3)),
                (1, Dest::User(0)),
                (3, Dest::User(2)),
            ]
        );
        assert_eq!(Pattern::Room(100).fan(), 99);
    }

    #[test]
    fn rooms_spread_over_every_room_and_rotate_senders() {
        let l = RoomLayout::new(4, 3, 6).unwrap();
        let p = Pattern::Rooms(l);
        let rooms: Vec<_> = (0..8).map(|i| p.pick(i).1).collect();
        assert_eq!(rooms, [0, 1, 2, 3, 0, 1, 2, 3].map(Dest::Channel).to_vec());
        assert_eq!(p.pick(0).0, l.member(0, 0));
        assert_eq!(p.pick(4).0, l.member(0, 1));
        assert_eq!(p.pick(8).0, l.member(0, 2));
        assert_eq!(p.fan(), 2);
    }
}
