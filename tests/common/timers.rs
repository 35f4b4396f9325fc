//! The QUIC timers the blackout cases are built around, in one place.
//!
//! A blackout longer than the idle timeout must end the connection and make the client
//! reconnect by itself; how long the cases black out and how long they wait for "lost" and
//! "back" follows from the timers below. Today they are the built-in defaults (keep-alive
//! 15 s, idle timeout 40 s), so those cases take about a minute. Once the server and client
//! take `--idle-timeout` / `--keep-alive`, set [`TIMERS`] to short values with `flags: true`
//! (one line) and the same cases run in seconds.

use std::time::Duration;

/// The timers every blackout case uses.
pub const TIMERS: Timers = Timers::BUILT_IN;

/// QUIC keep-alive and idle timeout, and whether to pass them as command-line options.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// Keep-alive interval of the client.
    pub keep_alive: Duration,
    /// Idle timeout of both sides.
    pub idle_timeout: Duration,
    /// Pass `--keep-alive` / `--idle-timeout` to the processes (false: the defaults apply).
    pub flags: bool,
}

impl Timers {
    /// What `livewire` uses without options.
    pub const BUILT_IN: Timers = Timers {
        keep_alive: Duration::from_secs(15),
        idle_timeout: Duration::from_secs(40),
        flags: false,
    };

    /// How long a "long" blackout lasts: safely past the idle timeout.
    pub fn blackout(&self) -> Duration {
        self.idle_timeout + self.idle_timeout / 8
    }

    /// How long a client may take to declare a blacked-out connection lost.
    pub fn lost_within(&self) -> Duration {
        self.idle_timeout + self.idle_timeout * 3 / 4
    }

    /// How long a client may take to be logged in again once the path is back (its
    /// reconnect backoff grew during the blackout).
    pub fn back_within(&self) -> Duration {
        self.idle_timeout * 2 + self.idle_timeout / 4
    }

    /// Arguments for `livewire server` and `livewire chat` that set these timers.
    pub fn args(&self) -> Vec<String> {
        if !self.flags {
            return vec![];
        }
        vec![
            "--keep-alive".into(),
            format!("{}ms", self.keep_alive.as_millis()),
            "--idle-timeout".into(),
            format!("{}ms", self.idle_timeout.as_millis()),
        ]
    }
}
