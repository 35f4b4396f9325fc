//! Limits and the small rate-limiting state machines behind them. Time is passed in (ms).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Every configurable limit of the server, with the defaults of DESIGN.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame on the wire, bytes.
    pub max_frame: usize,
    /// Largest message text, bytes.
    pub max_body: usize,
    /// Messages a user may send at once.
    pub msg_burst: u32,
    /// Sustained messages per second per user.
    pub msg_per_sec: u32,
    /// Failed logins per account per minute before throttling.
    pub login_fail_per_account: u32,
    /// Failed logins per IP per minute before throttling.
    pub login_fail_per_ip: u32,
    /// Seconds from handshake to login.
    pub login_deadline_secs: u64,
    /// Concurrent connections per IP address.
    pub conns_per_ip: usize,
    /// Default history page.
    pub history_page: usize,
    /// Largest history page.
    pub history_max: usize,
    /// Delete-for-everyone window, seconds.
    pub delete_window_secs: u64,
    /// Frames queued for one connection before it is cut off as too slow.
    pub conn_queue: usize,
    /// Bytes queued for one connection before it is cut off as too slow.
    pub conn_queue_bytes: usize,
    /// Bytes of message bodies sent in one catch-up round (the client asks for the next).
    pub catchup_bytes: usize,
    /// Concurrent bidirectional streams per connection.
    pub streams_per_conn: u32,
    /// Largest file accepted for upload, bytes.
    pub max_file_size: u64,
    /// Bytes of stored files (as stored, encryption included) one user may hold.
    pub quota_per_user: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: 64 * 1024,
            max_body: 16 * 1024,
            msg_burst: 10,
            msg_per_sec: 2,
            login_fail_per_account: 3,
            login_fail_per_ip: 10,
            login_deadline_secs: 10,
            conns_per_ip: 16,
            history_page: 100,
            history_max: 1000,
            delete_window_secs: 24 * 3600,
            conn_queue: 4096,
            conn_queue_bytes: 8 * 1024 * 1024,
            catchup_bytes: 1024 * 1024,
            streams_per_conn: 32,
            max_file_size: super::files::DEFAULT_MAX_FILE_SIZE,
            quota_per_user: super::files::DEFAULT_QUOTA_PER_USER,
        }
    }
}

/// A token bucket: `burst` tokens, refilled at `per_sec`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: u32, now_ms: u64) -> Self {
        Self {
            tokens: f64::from(burst),
            last_ms: now_ms,
        }
    }

    /// Takes a token, or says how many ms until one is available.
    pub fn take(&mut self, burst: u32, per_sec: u32, now_ms: u64) -> Result<(), u64> {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = now_ms.max(self.last_ms);
        self.tokens = (self.tokens + elapsed * f64::from(per_sec)).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if per_sec == 0 {
            Err(60_000)
        } else {
            Err((((1.0 - self.tokens) / f64::from(per_sec)) * 1000.0).ceil() as u64)
        }
    }
}

/// Counts failures per key in a sliding one-minute window.
#[derive(Debug)]
pub struct FailureWindow<K> {
    fails: HashMap<K, VecDeque<u64>>,
}

impl<K> Default for FailureWindow<K> {
    fn default() -> Self {
        Self {
            fails: HashMap::new(),
        }
    }
}

const WINDOW_MS: u64 = 60_000;

impl<K: Hash + Eq + Clone> FailureWindow<K> {
    fn prune(&mut self, key: &K, now_ms: u64) -> usize {
        let Some(q) = self.fails.get_mut(key) else {
            return 0;
        };
        while q
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= WINDOW_MS)
        {
            q.pop_front();
        }
        let n = q.len();
        if n == 0 {
            self.fails.remove(key);
        }
        n
    }

    /// `Err(ms)` when `max` failures are already in the window: retry after `ms`.
    pub fn check(&mut self, key: &K, max: u32, now_ms: u64) -> Result<(), u64> {
        if self.prune(key, now_ms) < max as usize {
            return Ok(());
        }
        let oldest = self.fails[key].front().copied().unwrap_or(now_ms);
        Err((oldest + WINDOW_MS).saturating_sub(now_ms).max(1))
    }

    /// Records a failure.
    pub fn record(&mut self, key: K, now_ms: u64) {
        self.fails.entry(key).or_default().push_back(now_ms);
    }

    /// Forgets every key whose window is empty (bounded memory).
    pub fn gc(&mut self, now_ms: u64) {
        self.fails.retain(|_, q| {
            q.back()
                .is_some_and(|t| now_ms.saturating_sub(*t) < WINDOW_MS)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let mut b = TokenBucket::new(10, 0);
        for _ in 0..10 {
            assert!(b.take(10, 2, 0).is_ok());
        }
        assert_eq!(b.take(10, 2, 0), Err(500));
        assert!(b.take(10, 2, 500).is_ok());
        assert!(b.take(10, 2, 500).is_err());
        assert!(b.take(10, 2, 10_000).is_ok());
    }

    #[test]
    fn failures_expire_after_a_minute() {
        let mut w = FailureWindow::default();
        for t in 0..3 {
            assert!(w.check(&"a", 3, t).is_ok());
            w.record("a", t);
        }
        assert_eq!(w.check(&"a", 3, 10), Err(59_990));
        assert!(w.check(&"b", 3, 10).is_ok());
        assert!(w.check(&"a", 3, 60_001).is_ok());
        w.gc(120_000);
        assert!(w.fails.is_empty());
    }
}
