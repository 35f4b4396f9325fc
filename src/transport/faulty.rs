//! A seeded faulty UDP socket under quinn, for network-fault tests without root.
//!
//! Test code: compiled only with the `test-util` feature (which only test builds turn on)
//! and for the crate's own unit tests; `tests/faulty_net.rs` uses it.
//!
//! [`FaultySocket`] wraps a real UDP socket (quinn's tokio socket) and implements quinn's
//! [`AsyncUdpSocket`], so an [`Endpoint`] built on it sees a bad network:
//!
//! - **drop**: a datagram is silently lost;
//! - **duplicate**: a datagram is delivered twice;
//! - **delay**: a datagram is held back for a random time in `[delay_min, delay_max]`, so
//!   later datagrams overtake it (reordering);
//! - **blackout**: every datagram in both directions is lost until it is lifted;
//! - **rebind**: the wrapper moves to a fresh UDP socket on a new port without telling
//!   quinn, so the peer suddenly sees the same connection coming from another address —
//!   exactly what a NAT rebinding looks like from the server.
//!
//! Faults are set per direction: `up` applies to what this endpoint sends, `down` to what
//! it receives. Each direction draws from its own pseudo-random stream seeded from
//! [`FaultConfig::seed`], so the fate of the n-th datagram in a direction is a function of
//! the seed alone (how many datagrams quinn sends still depends on timing: the network is
//! real, the dice are not). [`FaultControl`] changes the faults at run time and reads
//! counters for reports.
//!
//! The wrapper reports one datagram per transmit and per receive to quinn (no GSO/GRO), so
//! every fault applies to exactly one datagram; coalesced receives from the kernel are
//! split before the dice are rolled.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, EndpointConfig, Runtime, TokioRuntime, UdpPoller};
use tokio::time::{Instant, Sleep};

use super::quic::{Endpoint, ServerConfig};

/// Largest datagram (or GRO batch) the kernel hands over in one receive.
const SCRATCH: usize = 64 * 1024;

/// Faults applied to one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability that a datagram is lost (0.0–1.0).
    pub drop: f64,
    /// Probability that a (not lost) datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a (not lost) datagram is held back and overtaken by later ones.
    pub delay: f64,
    /// Shortest hold-back.
    pub delay_min: Duration,
    /// Longest hold-back.
    pub delay_max: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Self::NONE
    }
}

impl Faults {
    /// A perfect link.
    pub const NONE: Faults = Faults {
        drop: 0.0,
        duplicate: 0.0,
        delay: 0.0,
        delay_min: Duration::ZERO,
        delay_max: Duration::ZERO,
    };

    /// Only random loss.
    pub fn loss(p: f64) -> Self {
        Self {
            drop: p,
            ..Self::NONE
        }
    }

    /// Only duplication.
    pub fn duplication(p: f64) -> Self {
        Self {
            duplicate: p,
            ..Self::NONE
        }
    }

    /// Only reordering: a share `p` of datagrams is held back between `min` and `max`.
    pub fn reorder(p: f64, min: Duration, max: Duration) -> Self {
        Self {
            delay: p,
            delay_min: min,
            delay_max: max.max(min),
            ..Self::NONE
        }
    }
}

/// How a [`FaultySocket`] misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultConfig {
    /// Seed of both directions' dice.
    pub seed: u64,
    /// Faults on datagrams this socket sends.
    pub up: Faults,
    /// Faults on datagrams this socket receives.
    pub down: Faults,
}

impl FaultConfig {
    /// The same faults in both directions.
    pub fn both(seed: u64, faults: Faults) -> Self {
        Self {
            seed,
            up: faults,
            down: faults,
        }
    }
}

/// Counters for one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Datagrams that reached the wrapper.
    pub datagrams: u64,
    /// Lost on purpose (including during a blackout).
    pub dropped: u64,
    /// Delivered twice.
    pub duplicated: u64,
    /// Held back (reordered).
    pub delayed: u64,
}

/// Counters of a [`FaultySocket`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// What this socket sent.
    pub up: DirStats,
    /// What this socket received.
    pub down: DirStats,
    /// Forced rebinds so far.
    pub rebinds: u64,
}

/// SplitMix64: tiny, seedable, good enough for dice.
#[derive(Debug, Clone)]
struct Dice(u64);

impl Dice {
    fn new(seed: u64, stream: u64) -> Self {
        let mut d = Dice(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        d.next_u64();
        d
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Always draws three numbers, so one datagram's fate never shifts the next one's.
    fn fate(&mut self, f: &Faults) -> Fate {
        let (a, b, c) = (self.unit(), self.unit(), self.unit());
        if a < f.drop {
            return Fate::Drop;
        }
        let copies = if b < f.duplicate { 2 } else { 1 };
        let delay = (c < f.delay).then(|| {
            let span = f.delay_max.saturating_sub(f.delay_min);
            f.delay_min + span.mul_f64(self.unit())
        });
        Fate::Deliver { copies, delay }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Drop,
    Deliver { copies: u8, delay: Option<Duration> },
}

#[derive(Default)]
struct Counters {
    datagrams: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
}

impl Counters {
    fn count(&self, fate: Fate) {
        self.datagrams.fetch_add(1, Ordering::Relaxed);
        match fate {
            Fate::Drop => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Fate::Deliver { copies, delay } => {
                if copies > 1 {
                    self.duplicated.fetch_add(1, Ordering::Relaxed);
                }
                if delay.is_some() {
                    self.delayed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn snapshot(&self) -> DirStats {
        DirStats {
            datagrams: self.datagrams.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            duplicated: self.duplicated.load(Ordering::Relaxed),
            delayed: self.delayed.load(Ordering::Relaxed),
        }
    }
}

/// One received datagram waiting to be handed to quinn.
struct Held {
    due: Instant,
    data: Vec<u8>,
    addr: SocketAddr,
    ecn: Option<quinn::udp::EcnCodepoint>,
    dst_ip: Option<IpAddr>,
}

struct RecvState {
    dice: Dice,
    /// Datagrams to hand over, in due order (held-back ones are inserted by due time).
    queue: VecDeque<Held>,
    timer: Option<Pin<Box<Sleep>>>,
    scratch: Vec<u8>,
}

struct Current {
    socket: Arc<dyn AsyncUdpSocket>,
    generation: u64,
}

struct Shared {
    runtime: Arc<TokioRuntime>,
    /// The tokio runtime the socket was made in (rebinds and delayed sends run there).
    tokio: tokio::runtime::Handle,
    bind_ip: IpAddr,
    current: Mutex<Current>,
    config: Mutex<FaultConfig>,
    send_dice: Mutex<Dice>,
    recv: Mutex<RecvState>,
    recv_waker: Mutex<Option<Waker>>,
    blackout: AtomicBool,
    up: Counters,
    down: Counters,
    rebinds: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn socket(&self) -> (Arc<dyn AsyncUdpSocket>, u64) {
        let c = lock(&self.current);
        (c.socket.clone(), c.generation)
    }
}

/// The quinn socket. Cheap to clone; every clone is the same socket.
#[derive(Clone)]
pub struct FaultySocket {
    shared: Arc<Shared>,
}

/// Changes the faults of a running [`FaultySocket`] and reads its counters.
#[derive(Clone)]
pub struct FaultControl {
    shared: Arc<Shared>,
}

impl fmt::Debug for FaultySocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultySocket")
            .field("local_addr", &self.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for FaultControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultControl")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl FaultySocket {
    /// Binds a UDP socket on `bind` and wraps it. Must be called inside a tokio runtime,
    /// which later rebinds and delayed sends use.
    pub fn bind(bind: SocketAddr, config: FaultConfig) -> io::Result<(Self, FaultControl)> {
        let runtime = Arc::new(TokioRuntime);
        let socket = runtime.wrap_udp_socket(std::net::UdpSocket::bind(bind)?)?;
        let shared = Arc::new(Shared {
            runtime,
            tokio: tokio::runtime::Handle::try_current().map_err(io::Error::other)?,
            bind_ip: bind.ip(),
            current: Mutex::new(Current {
                socket,
                generation: 0,
            }),
            config: Mutex::new(config),
            send_dice: Mutex::new(Dice::new(config.seed, 1)),
            recv: Mutex::new(RecvState {
                dice: Dice::new(config.seed, 2),
                queue: VecDeque::new(),
                timer: None,
                scratch: vec![0; SCRATCH],
            }),
            recv_waker: Mutex::new(None),
            blackout: AtomicBool::new(false),
            up: Counters::default(),
            down: Counters::default(),
            rebinds: AtomicU64::new(0),
        });
        Ok((
            Self {
                shared: shared.clone(),
            },
            FaultControl { shared },
        ))
    }

    /// A client endpoint on a faulty socket bound to `bind` (e.g. `127.0.0.1:0`).
    pub fn client_endpoint(
        bind: SocketAddr,
        config: FaultConfig,
    ) -> io::Result<(Endpoint, FaultControl)> {
        Self::endpoint(bind, config, None)
    }

    /// An endpoint on a faulty socket; with a server configuration it also accepts
    /// connections.
    pub fn endpoint(
        bind: SocketAddr,
        config: FaultConfig,
        server: Option<ServerConfig>,
    ) -> io::Result<(Endpoint, FaultControl)> {
        let (socket, control) = Self::bind(bind, config)?;
        let ep = Endpoint::new_with_abstract_socket(
            EndpointConfig::default(),
            server,
            Arc::new(socket),
            Arc::new(TokioRuntime),
        )?;
        Ok((ep, control))
    }

    fn send_one(
        &self,
        socket: &dyn AsyncUdpSocket,
        t: &Transmit<'_>,
        data: &[u8],
    ) -> io::Result<()> {
        let fate = if self.shared.blackout.load(Ordering::Relaxed) {
            Fate::Drop
        } else {
            let faults = lock(&self.shared.config).up;
            lock(&self.shared.send_dice).fate(&faults)
        };
        self.shared.up.count(fate);
        let Fate::Deliver { copies, delay } = fate else {
            return Ok(());
        };
        let one = Transmit {
            destination: t.destination,
            ecn: t.ecn,
            contents: data,
            segment_size: None,
            src_ip: t.src_ip,
        };
        match delay {
            Some(d) => {
                let shared = self.shared.clone();
                let (dest, ecn, src_ip, bytes) = (t.destination, t.ecn, t.src_ip, data.to_vec());
                self.shared.tokio.spawn(async move {
                    tokio::time::sleep(d).await;
                    // Sent from whatever socket is current then (a rebinding may have
                    // happened meanwhile, as on a real path).
                    let (socket, _) = shared.socket();
                    let t = Transmit {
                        destination: dest,
                        ecn,
                        contents: &bytes,
                        segment_size: None,
                        src_ip,
                    };
                    for _ in 0..copies {
                        let _ = socket.try_send(&t);
                    }
                });
                Ok(())
            }
            None => {
                socket.try_send(&one)?;
                if copies > 1 {
                    let _ = socket.try_send(&one);
                }
                Ok(())
            }
        }
    }
}

impl FaultControl {
    /// Replaces the faults of both directions (the dice keep rolling from where they are).
    pub fn set(&self, up: Faults, down: Faults) {
        let mut c = lock(&self.shared.config);
        c.up = up;
        c.down = down;
    }

    /// Starts or ends a total outage in both directions.
    pub fn blackout(&self, on: bool) {
        self.shared.blackout.store(on, Ordering::Relaxed);
    }

    /// Moves to a fresh UDP socket on a new port, without telling quinn: the peer sees the
    /// connection come from a new address (a NAT rebinding). Datagrams still in flight to
    /// the old port are lost, as with a real NAT. Returns the new local address.
    pub fn rebind(&self) -> io::Result<SocketAddr> {
        let std_socket = std::net::UdpSocket::bind(SocketAddr::new(self.shared.bind_ip, 0))?;
        let _rt = self.shared.tokio.enter();
        let socket = self.shared.runtime.wrap_udp_socket(std_socket)?;
        let addr = socket.local_addr()?;
        {
            let mut c = lock(&self.shared.current);
            c.socket = socket;
            c.generation += 1;
        }
        self.shared.rebinds.fetch_add(1, Ordering::Relaxed);
        // The endpoint's receive task waits on the old socket: wake it to poll the new one.
        if let Some(w) = lock(&self.shared.recv_waker).take() {
            w.wake();
        }
        Ok(addr)
    }

    /// The local address in use now.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket().0.local_addr()
    }

    /// Counters so far.
    pub fn stats(&self) -> FaultStats {
        FaultStats {
            up: self.shared.up.snapshot(),
            down: self.shared.down.snapshot(),
            rebinds: self.shared.rebinds.load(Ordering::Relaxed),
        }
    }
}

struct Poller {
    shared: Arc<Shared>,
    generation: u64,
    inner: Pin<Box<dyn UdpPoller>>,
}

impl fmt::Debug for Poller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poller")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl UdpPoller for Poller {
    fn poll_writable(mut self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        let (socket, generation) = self.shared.socket();
        if generation != self.generation {
            self.generation = generation;
            self.inner = socket.create_io_poller();
        }
        self.inner.as_mut().poll_writable(cx)
    }
}

impl AsyncUdpSocket for FaultySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        let (socket, generation) = self.shared.socket();
        Box::pin(Poller {
            shared: self.shared.clone(),
            generation,
            inner: socket.create_io_poller(),
        })
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let (socket, _) = self.shared.socket();
        let seg = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        let mut first = true;
        for chunk in transmit.contents.chunks(seg) {
            let r = self.send_one(socket.as_ref(), transmit, chunk);
            match r {
                // Only the first datagram may report "try again": quinn resends the whole
                // transmit, so a later failure is treated as a loss.
                Err(e) if first => return Err(e),
                _ => {}
            }
            first = false;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        *lock(&self.shared.recv_waker) = Some(cx.waker().clone());
        let mut st = lock(&self.shared.recv);
        let st = &mut *st;
        loop {
            // 1. Hand over whatever is due.
            let now = Instant::now();
            let mut n = 0;
            while n < bufs.len().min(meta.len()) {
                match st.queue.front() {
                    Some(h) if h.due <= now => {}
                    _ => break,
                }
                let h = st.queue.pop_front().expect("front checked");
                let len = h.data.len().min(bufs[n].len());
                bufs[n][..len].copy_from_slice(&h.data[..len]);
                meta[n] = RecvMeta {
                    addr: h.addr,
                    len,
                    stride: len,
                    ecn: h.ecn,
                    dst_ip: h.dst_ip,
                };
                n += 1;
            }
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            // 2. Read from the real socket, roll the dice for each datagram.
            let (socket, _) = self.shared.socket();
            let mut m = [RecvMeta::default()];
            let got = {
                let mut one = [IoSliceMut::new(&mut st.scratch)];
                socket.poll_recv(cx, &mut one, &mut m)
            };
            match got {
                Poll::Ready(Ok(k)) if k > 0 => {
                    let m = m[0];
                    let stride = if m.stride == 0 { m.len } else { m.stride };
                    let blackout = self.shared.blackout.load(Ordering::Relaxed);
                    let faults = lock(&self.shared.config).down;
                    let now = Instant::now();
                    for chunk in st.scratch[..m.len].chunks(stride.max(1)) {
                        let fate = if blackout {
                            Fate::Drop
                        } else {
                            st.dice.fate(&faults)
                        };
                        self.shared.down.count(fate);
                        let Fate::Deliver { copies, delay } = fate else {
                            continue;
                        };
                        let due = now + delay.unwrap_or(Duration::ZERO);
                        for _ in 0..copies {
                            let held = Held {
                                due,
                                data: chunk.to_vec(),
                                addr: m.addr,
                                ecn: m.ecn,
                                dst_ip: m.dst_ip,
                            };
                            // Keep the queue sorted by due time (stable for equal times).
                            let at = st.queue.partition_point(|h| h.due <= due);
                            st.queue.insert(at, held);
                        }
                    }
                    continue;
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
            // 3. Nothing on the wire: sleep until the next held datagram is due.
            let Some(next) = st.queue.front().map(|h| h.due) else {
                st.timer = None;
                return Poll::Pending;
            };
            let timer = st
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next)));
            if timer.deadline() != next {
                timer.as_mut().reset(next);
            }
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.socket().0.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        1
    }

    fn may_fragment(&self) -> bool {
        self.shared.socket().0.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_are_deterministic_and_roughly_fair() {
        let f = Faults {
            drop: 0.1,
            duplicate: 0.2,
            delay: 0.3,
            delay_min: Duration::from_millis(1),
            delay_max: Duration::from_millis(9),
        };
        let run = |seed| {
            let mut d = Dice::new(seed, 1);
            (0..10_000).map(|_| d.fate(&f)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let fates = run(7);
        let drops = fates.iter().filter(|f| **f == Fate::Drop).count();
        let dups = fates
            .iter()
            .filter(|f| matches!(f, Fate::Deliver { copies: 2, .. }))
            .count();
        let delayed: Vec<Duration> = fates
            .iter()
            .filter_map(|f| match f {
                Fate::Deliver { delay: Some(d), .. } => Some(*d),
                _ => None,
            })
            .collect();
        assert!((800..1200).contains(&drops), "{drops}");
        assert!((1600..2000).contains(&dups), "{dups}");
        assert!((2400..3000).contains(&delayed.len()), "{}", delayed.len());
        assert!(
            delayed
                .iter()
                .all(|d| *d >= f.delay_min && *d <= f.delay_max)
        );
    }

    #[test]
    fn directions_have_independent_streams() {
        let mut up = Dice::new(1, 1);
        let mut down = Dice::new(1, 2);
        let a: Vec<u64> = (0..8).map(|_| up.next_u64()).collect();
        let b: Vec<u64> = (0..8).map(|_| down.next_u64()).collect();
        assert_ne!(a, b);
    }

    async fn send(sock: &Arc<FaultySocket>, t: &Transmit<'_>) {
        let mut poller = sock.clone().create_io_poller();
        loop {
            match sock.try_send(t) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx))
                        .await
                        .unwrap();
                }
                r => return r.unwrap(),
            }
        }
    }

    #[tokio::test]
    async fn drops_duplicates_and_rebinds_real_datagrams() {
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer_addr = peer.local_addr().unwrap();
        let cfg = FaultConfig {
            seed: 3,
            up: Faults::duplication(1.0),
            down: Faults::loss(0.5),
        };
        let (sock, ctl) = FaultySocket::bind("127.0.0.1:0".parse().unwrap(), cfg).unwrap();
        let sock = Arc::new(sock);
        let first = ctl.local_addr().unwrap();
        let t = Transmit {
            destination: peer_addr,
            ecn: None,
            contents: b"x",
            segment_size: None,
            src_ip: None,
        };
        send(&sock, &t).await;
        let mut buf = [0u8; 16];
        for _ in 0..2 {
            let (n, from) = peer.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"x"[..], first));
        }
        // About half of 200 datagrams from the peer get through.
        for i in 0..200u8 {
            peer.send_to(&[i], first).await.unwrap();
        }
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while ctl.stats().down.datagrams < 200 && Instant::now() < deadline {
            let mut b = [0u8; 2048];
            let mut m = [RecvMeta::default()];
            let n = std::future::poll_fn(|cx| {
                let mut bufs = [IoSliceMut::new(&mut b)];
                match sock.poll_recv(cx, &mut bufs, &mut m) {
                    Poll::Pending => Poll::Ready(Ok(0)),
                    r => r,
                }
            })
            .await
            .unwrap();
            got += n;
            if n == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let s = ctl.stats();
        assert_eq!(s.down.datagrams, 200);
        assert_eq!(got as u64, 200 - s.down.dropped);
        assert!((60..140).contains(&s.down.dropped), "{s:?}");
        // A rebind changes the source address the peer sees.
        let second = ctl.rebind().unwrap();
        assert_ne!(first.port(), second.port());
        send(&sock, &t).await;
        let (_, from) = peer.recv_from(&mut buf).await.unwrap();
        assert_eq!(from, second);
        assert_eq!(ctl.stats().rebinds, 1);
    }
}
