//! The QUIC timers the blackout cases are built around, in one place.
//!
//! A blackout longer than the idle timeout must end the connection and make the client
//! reconnect by itself; how long the cases black out and how long they wait for "lost" and
//! "back" follows from the timers below. They are short (keep-alive 1 s, idle timeout 4 s,
//! passed as `--keep-alive` / `--idle-timeout`), so the cases run in seconds; with
//! [`Timers::BUILT_IN`] the same cases check the defaults (keep-alive 15 s, idle timeout
//! 40 s) in about a minute.

use std::time::Duration;

/// The timers every blackout case uses.
pub const TIMERS: Timers = Timers {
    keep_alive: Duration::from_secs(1),
    idle_timeout: Duration::from_secs(4),
    flags: true,
};

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
    #[allow(dead_code)]
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

    /// Arguments for `livewire server` that set these timers.
    pub fn server_args(&self) -> Vec<String> {
        if !self.flags {
            return vec![];
        }
        vec![
            "--idle-timeout".into(),
            self.idle_timeout.as_secs().to_string(),
        ]
    }

    /// Arguments for `livewire chat` that set these timers.
    pub fn client_args(&self) -> Vec<String> {
        if !self.flags {
            return vec![];
        }
        let mut args = vec!["--keep-alive".into(), self.keep_alive.as_secs().to_string()];
        args.extend(self.server_args());
        args
    }

    /// The same timers for a client started in the test's own process.
    #[allow(dead_code)]
    pub fn client_timers(&self) -> livewire::transport::quic::Timers {
        if !self.flags {
            return livewire::transport::quic::Timers::CLIENT;
        }
        livewire::transport::quic::Timers {
            idle_timeout: self.idle_timeout,
            keep_alive: Some(self.keep_alive),
        }
    }
}
