//! Reconnect storm (issue 14, "Logins"): `n` idle clients log in (sharing a few accounts, as
//! in the idle scenario, each with its own resumption token), the server is stopped with
//! SIGTERM (it closes every connection, so the clients notice at once) and started again on
//! the same port with the same data directory; measured is the time until every client is
//! logged in again, and the new server's CPU until then.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::load::Mode;
use crate::lw::{self, Livewire};
use crate::proc::Pinning;
use crate::stats::Recorder;

/// The longest a storm waits for the clients to come back.
const BACK_WITHIN: Duration = Duration::from_secs(300);

/// The result of one storm.
#[derive(Debug, Clone, Serialize)]
pub struct StormResult {
    /// Target name.
    pub target: String,
    /// Clients logged in before the restart.
    pub clients: usize,
    /// Seconds to log them in the first time (passwords, Argon2id).
    pub first_login_secs: f64,
    /// Server CPU seconds for the first logins.
    pub first_login_cpu_secs: f64,
    /// Seconds from the SIGTERM until the old server had exited.
    pub stop_secs: f64,
    /// Seconds from the new server's start until every client was logged in again (or the
    /// wait gave up).
    pub back_secs: f64,
    /// Clients logged in again within the wait.
    pub back: usize,
    /// The new server's CPU seconds until then.
    pub back_cpu_secs: f64,
}

/// Runs one storm against a single-node LiveWire target.
pub async fn run(l: &Livewire, n: usize, pin: &Pinning) -> Result<StormResult> {
    let (proc, running) = l.start(pin, "storm").await?;
    // Logins are CPU-bound: the server may use every core, as in the idle scenario.
    pin.widen(proc.pid, true);
    let rec = Arc::new(Recorder::new());
    let t0 = Instant::now();
    let per_endpoint = if n > 1000 { 100 } else { 1 };
    let fleet = lw::connect_with(&running, n, Mode::Idle, rec, per_endpoint, true).await?;
    let first_login_secs = t0.elapsed().as_secs_f64();
    let first_login_cpu_secs = proc.cpu_secs();
    crate::log(format!(
        "  {n} logged in in {first_login_secs:.1} s, server CPU {first_login_cpu_secs:.1} s"
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ready0 = lw::READY.load(Ordering::Relaxed);
    let t = Instant::now();
    proc.terminate().await;
    let stop_secs = t.elapsed().as_secs_f64();
    let (proc, _) = l.restart(pin, "storm", &running.addr).await?;
    pin.widen(proc.pid, true);
    let t = Instant::now();
    let back = loop {
        let back = lw::READY.load(Ordering::Relaxed).saturating_sub(ready0);
        if back >= n || t.elapsed() > BACK_WITHIN {
            break back;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let r = StormResult {
        target: l.name.clone(),
        clients: n,
        first_login_secs,
        first_login_cpu_secs,
        stop_secs,
        back_secs: t.elapsed().as_secs_f64(),
        back,
        back_cpu_secs: proc.cpu_secs(),
    };
    crate::log(format!(
        "  back after the restart: {}/{n} in {:.1} s (stop {:.1} s), new server CPU {:.1} s",
        r.back, r.back_secs, r.stop_secs, r.back_cpu_secs
    ));
    drop(fleet);
    proc.stop().await;
    Ok(r)
}
