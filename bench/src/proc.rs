//! Servers under test run as separate processes, pinned with `taskset` to their own core, so
//! their CPU time and memory can be read from `/proc/PID/stat` and `/proc/PID/status`
//! without counting the load generator.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where to pin servers and whether `taskset` is there.
#[derive(Debug, Clone)]
pub struct Pinning {
    /// Core for server processes (`None`: not pinned).
    pub server_cpu: Option<usize>,
}

impl Pinning {
    /// Pins servers to `cpu` when the machine has more than one core and `taskset` exists.
    pub fn detect(cpu: usize) -> Self {
        let cores = online_cores();
        let taskset = std::process::Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let server_cpu = (cores > 1 && taskset).then_some(cpu);
        Self { server_cpu }
    }

    /// Lets every thread of `pid` run on all cores (`wide`), or pins them back.
    pub fn widen(&self, pid: u32, wide: bool) {
        let Some(cpu) = self.server_cpu else { return };
        let cpus = if wide {
            format!("0-{}", online_cores() - 1)
        } else {
            cpu.to_string()
        };
        let _ = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &cpus, &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn command(&self, argv: &[String]) -> Command {
        let mut c = match self.server_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).args(argv);
                c
            }
            None => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        c.kill_on_drop(true).stdin(Stdio::null());
        c
    }
}

/// A running server process.
pub struct ServerProc {
    child: Child,
    /// Its pid (taskset execs the server, so this is the server's own).
    pub pid: u32,
    /// The first stdout line, for servers that announce themselves.
    pub first_line: Option<String>,
    /// The other nodes of a cluster target: counted in CPU and memory, stopped with it.
    pub also: Vec<ServerProc>,
}

impl ServerProc {
    /// Starts `argv`; when `announce` the first stdout line is read (the rest is drained).
    pub async fn spawn(pin: &Pinning, argv: &[String], announce: bool) -> Result<Self> {
        let mut cmd = pin.command(argv);
        cmd.stdout(if announce {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", argv.join(" ")))?;
        let pid = child.id().context("the server exited at once")?;
        let mut first_line = None;
        if announce {
            let out = child.stdout.take().context("no stdout")?;
            let mut lines = BufReader::new(out).lines();
            let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .context("the server did not announce itself within 20 s")??
                .context("the server exited before announcing itself")?;
            first_line = Some(line);
            // Keep reading so a full pipe never blocks the server.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        }
        Ok(Self {
            child,
            pid,
            first_line,
            also: Vec::new(),
        })
    }

    /// Waits until a TCP port accepts connections (servers that do not announce).
    pub async fn wait_port(&mut self, port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited with {status} before listening on {port}");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nothing listens on 127.0.0.1:{port} after 15 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// User + system CPU seconds so far (all threads).
    /// (With its other nodes.)
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(self.pid).unwrap_or(0.0) + self.also.iter().map(|p| p.cpu_secs()).sum::<f64>()
    }

    /// Resident set size in KiB (with its other nodes).
    pub fn rss_kb(&self) -> u64 {
        status_kb(self.pid, "VmRSS:").unwrap_or(0)
            + self.also.iter().map(|p| p.rss_kb()).sum::<u64>()
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops it (SIGKILL: every server here keeps its state in a temporary directory).
    /// Stops it gracefully (SIGTERM; SIGKILL after 20 s) and waits until it exited.
    pub async fn terminate(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            self.stop().await;
        }
    }

    /// Kills it (and its other nodes) and waits a moment for it to exit.
    pub async fn stop(mut self) {
        for other in std::mem::take(&mut self.also) {
            Box::pin(other.stop()).await;
        }
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// Clock ticks per second of /proc's CPU times (asked once, at start, not mid-measurement).
pub fn clk_tck() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime of a process, seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Field 3 (state) is f[0], so utime (14) is f[11] and stime (15) f[12].
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clk_tck())
}

/// A `kB` line of `/proc/PID/status`.
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// This process's own CPU seconds (the generator).
pub fn self_cpu_secs() -> f64 {
    cpu_secs(std::process::id()).unwrap_or(0.0)
}

/// The machine's 1-minute load average (the machine is shared: other people's builds show
/// here), 0 if unreadable.
pub fn loadavg_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Cores of the machine (not of this process's affinity mask, which taskset narrows).
pub fn online_cores() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(1)
}
