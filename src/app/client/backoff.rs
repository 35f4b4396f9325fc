//! Reconnect delays.

use std::time::Duration;

/// Reconnect delays: 1 s × 1.6 per attempt, capped at 60 s, ±20 % jitter; reset after a
/// successful login.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// Starting value for the first delay.
    pub const BASE: f64 = 1.0;
    /// Growth per attempt.
    pub const FACTOR: f64 = 1.6;
    /// Cap in seconds.
    pub const CAP: f64 = 60.0;

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay; `jitter` in [-1, 1] (from a random source) spreads it by ±20 %.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let base = (Self::BASE * Self::FACTOR.powi(self.attempt.min(64) as i32)).min(Self::CAP);
        self.attempt = self.attempt.saturating_add(1);
        let j = if jitter.is_finite() {
            jitter.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        Duration::from_secs_f64(base * (1.0 + 0.2 * j))
    }
}
