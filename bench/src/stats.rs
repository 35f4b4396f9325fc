//! What a run records: every delivery as (intended send time, arrival time), errors, and the
//! summaries computed from them.
//!
//! Each message body is 128 bytes of text: 16 hex digits of the send time (ns since the
//! recorder's epoch), 8 hex digits of the sender's index, then padding. The send time is
//! when the generator handed the message to the client library; how late that was against
//! the open-loop schedule is recorded separately (`send_lag`), so a generator that falls
//! behind shows up instead of silently lowering the load.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

/// Bytes in every message body, as the issue asks.
pub const BODY_LEN: usize = 128;

/// Shared by every client task of one scenario.
pub struct Recorder {
    epoch: Instant,
    samples: Mutex<Vec<(u64, u64)>>,
    errors: AtomicU64,
    retries: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Recorder {
    /// A recorder whose epoch is now.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            samples: Mutex::new(Vec::with_capacity(1 << 20)),
            errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            first_errors: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// `t` in nanoseconds since the epoch.
    pub fn ns_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// A message body reached client `receiver` (`usize::MAX`: an echo, always counted).
    pub fn deliver(&self, receiver: usize, body: &[u8]) {
        let now = self.now_ns();
        match parse(body) {
            Some((_, sender)) if sender == receiver => {}
            Some((sent, _)) => self.samples.lock().expect("poisoned").push((sent, now)),
            None => self.error("a delivered body did not parse"),
        }
    }

    /// Counts an error and keeps the first few texts.
    pub fn error(&self, what: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().expect("poisoned");
        if first.len() < 5 {
            first.push(what.to_string());
        }
    }

    /// A connection attempt failed and was tried again (kept apart from errors).
    pub fn retried(&self, what: impl std::fmt::Display) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().expect("poisoned");
        if first.len() < 5 {
            first.push(format!("retried: {what}"));
        }
    }

    /// Connection retries so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Errors so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The first few error texts.
    pub fn first_errors(&self) -> Vec<String> {
        self.first_errors.lock().expect("poisoned").clone()
    }

    /// Takes every sample recorded so far.
    pub fn take(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut *self.samples.lock().expect("poisoned"))
    }

    /// Samples recorded so far (without taking them).
    pub fn len(&self) -> usize {
        self.samples.lock().expect("poisoned").len()
    }
}

/// The 128-byte body for a message meant to leave at `sent_ns`, from client `sender`.
pub fn payload(sent_ns: u64, sender: usize) -> String {
    let mut s = format!("{sent_ns:016x}{:08x}", sender as u32);
    while s.len() < BODY_LEN {
        s.push('.');
    }
    s
}

/// (intended send time, sender) from a body.
pub fn parse(body: &[u8]) -> Option<(u64, usize)> {
    let head = std::str::from_utf8(body.get(..24)?).ok()?;
    let sent = u64::from_str_radix(&head[..16], 16).ok()?;
    let sender = u32::from_str_radix(&head[16..24], 16).ok()?;
    Some((sent, sender as usize))
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// From latencies in nanoseconds (sorted here).
    pub fn of(mut ns: Vec<u64>) -> Self {
        if ns.is_empty() {
            return Self::default();
        }
        ns.sort_unstable();
        let at = |q: f64| {
            let i = ((ns.len() as f64 * q).ceil() as usize).clamp(1, ns.len()) - 1;
            ns[i] as f64 / 1e6
        };
        Self {
            n: ns.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_is_128_bytes() {
        let p = payload(0x1234_5678_9abc, 42);
        assert_eq!(p.len(), BODY_LEN);
        assert_eq!(parse(p.as_bytes()), Some((0x1234_5678_9abc, 42)));
        assert_eq!(parse(b"short"), None);
    }

    #[test]
    fn percentiles() {
        let l = Latency::of((1..=1000).map(|i| i * 1_000_000).collect());
        assert_eq!(l.p50_ms, 500.0);
        assert_eq!(l.p99_ms, 990.0);
        assert_eq!(l.p999_ms, 999.0);
        assert_eq!(l.max_ms, 1000.0);
    }
}
