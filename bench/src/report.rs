//! The run's results as JSON and as the Markdown tables of docs/BENCHMARKS.md, with every
//! LiveWire figure also given as a ratio to the peers of the same run.

use std::fmt::Write as _;

use serde::Serialize;

use crate::load::StepResult;
use crate::refs::UdpResult;

/// The issue's fan-out latency bound for counting a sweep step as "served".
pub const FANOUT_P99_MS: f64 = 50.0;
/// The issue's bound on pairs p50 as a multiple of the raw quinn echo p50.
pub const PAIRS_VS_ECHO: f64 = 1.5;
/// The issue's bound on server memory per idle connection: 40 KB (decimal).
pub const IDLE_KB_PER_CONN: f64 = 40.0 * 1000.0 / 1024.0;

/// The idle-scaling result of one target.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    /// Target.
    pub target: String,
    /// Connected (and logged-in / registered / subscribed) clients.
    pub clients: usize,
    /// Seconds to connect them all.
    pub connect_secs: f64,
    /// Server CPU spent per connection while connecting, ms.
    pub connect_server_cpu_ms_per_conn: f64,
    /// Seconds watched.
    pub hold_secs: f64,
    /// Server CPU while idle, percent of one core.
    pub server_cpu_pct: f64,
    /// RSS before any client, KiB.
    pub server_rss_base_kb: u64,
    /// RSS with every client connected, KiB.
    pub server_rss_kb: u64,
    /// Peak RSS, KiB.
    pub server_hwm_kb: u64,
    /// (RSS - base) / clients, KiB.
    pub rss_per_conn_kb: f64,
    /// Errors while idle.
    pub errors: u64,
    /// Connection attempts tried again while connecting.
    pub connect_retries: u64,
    /// First error texts.
    pub first_errors: Vec<String>,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Settings of the run.
    pub settings: serde_json::Value,
    /// The machine.
    pub machine: serde_json::Value,
    /// Every measured step, in order.
    pub steps: Vec<StepResult>,
    /// Raw UDP.
    pub udp: Option<UdpResult>,
    /// Idle scaling.
    pub idle: Vec<IdleResult>,
    /// Reconnect storms.
    pub storm: Vec<crate::storm::StormResult>,
    /// Scenarios that could not run.
    pub failures: Vec<String>,
    /// Wall time of the run.
    pub total_secs: f64,
}

fn machine(server_cpu: Option<usize>) -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    serde_json::json!({
        "cpu": cpu,
        "cores": crate::proc::online_cores(),
        "mem_gib": mem_kb as f64 / 1024.0 / 1024.0,
        "kernel": kernel,
        "server_core": server_cpu,
    })
}

/// One progress line for a step.
pub fn line(r: &StepResult) -> String {
    format!(
        "  {} {} {:.0} msg/s: {:.0} deliveries/s, p50 {:.2} p99 {:.2} p99.9 {:.2} ms, server {:.0} % CPU {:.1} us/delivery, gen {:.0} % lag p99 {:.2} ms, lost {}/{}, errors {}, load {:.2}",
        r.target,
        r.scenario,
        r.offered_msgs_per_s,
        r.delivered_per_s,
        r.latency.p50_ms,
        r.latency.p99_ms,
        r.latency.p999_ms,
        r.server_cpu_pct,
        r.server_cpu_us_per_delivery,
        r.generator_cpu_pct,
        r.send_lag.p99_ms,
        r.lost,
        r.expected,
        r.errors,
        r.loadavg_1m
    )
}

/// LiveWire itself (`livewire`, `livewire-tmpfs`), as opposed to a peer or a reference.
fn is_livewire(target: &str) -> bool {
    target.starts_with("livewire")
}

/// A real server a user might pick instead (not LiveWire, not a physical reference).
fn is_peer(target: &str) -> bool {
    !is_livewire(target) && target != "quinn-echo"
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

impl Report {
    /// An empty report.
    pub fn new(settings: &serde_json::Value, server_cpu: Option<usize>) -> Self {
        Self {
            settings: settings.clone(),
            machine: machine(server_cpu),
            steps: Vec::new(),
            udp: None,
            idle: Vec::new(),
            storm: Vec::new(),
            failures: Vec::new(),
            total_secs: 0.0,
        }
    }

    fn steps_of<'a>(&'a self, scenario: &'a str) -> impl Iterator<Item = &'a StepResult> + 'a {
        self.steps.iter().filter(move |s| s.scenario == scenario)
    }

    fn targets(&self) -> Vec<String> {
        let mut t: Vec<String> = Vec::new();
        for s in &self.steps {
            if s.scenario != "echo" && !t.contains(&s.target) {
                t.push(s.target.clone());
            }
        }
        t
    }

    /// Highest deliveries/s of a sweep step with p99 ≤ 50 ms and nothing lost, and its rate.
    pub fn capacity(&self, target: &str) -> Option<(f64, f64)> {
        self.steps_of("sweep")
            .filter(|s| {
                s.target == target
                    && s.latency.n > 0
                    && s.latency.p99_ms <= FANOUT_P99_MS
                    && s.lost * 1000 <= s.expected
            })
            .map(|s| (s.delivered_per_s, s.offered_msgs_per_s))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    fn step_table(&self, out: &mut String, scenario: &str, with_rate: bool) {
        let _ = writeln!(
            out,
            "| target |{} deliveries/s | p50 ms | p99 ms | p99.9 ms | server CPU % | server µs/delivery | RSS/conn KiB | generator CPU % | send lag p99 ms | lost | errors |",
            if with_rate { " offered msg/s |" } else { "" }
        );
        let _ = writeln!(
            out,
            "|---|{}---|---|---|---|---|---|---|---|---|---|---|",
            if with_rate { "---|" } else { "" }
        );
        for s in self.steps_of(scenario) {
            let _ = writeln!(
                out,
                "| {} |{} {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.1} | {:.1} | {:.0} | {:.2} | {}/{} | {} |",
                s.target,
                if with_rate {
                    format!(" {:.0} |", s.offered_msgs_per_s)
                } else {
                    String::new()
                },
                s.delivered_per_s,
                s.latency.p50_ms,
                s.latency.p99_ms,
                s.latency.p999_ms,
                s.server_cpu_pct,
                s.server_cpu_us_per_delivery,
                s.rss_per_conn_kb,
                s.generator_cpu_pct,
                s.send_lag.p99_ms,
                s.lost,
                s.expected,
                s.errors
            );
        }
    }

    fn ratio_table(&self, out: &mut String, scenario: &str) {
        let lws: Vec<&StepResult> = self
            .steps_of(scenario)
            .filter(|s| is_livewire(&s.target))
            .collect();
        let peers: Vec<&StepResult> = self
            .steps_of(scenario)
            .filter(|s| !is_livewire(&s.target))
            .chain(self.steps_of("echo").filter(|_| scenario == "pairs"))
            .collect();
        if lws.is_empty() || peers.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\nLiveWire as a ratio to each peer (< 1 is better for latency, CPU and memory; > 1 is better for deliveries/s):\n"
        );
        let _ = writeln!(
            out,
            "| ratio | deliveries/s | p50 | p99 | p99.9 | server µs/delivery | RSS/conn |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for lw in &lws {
            for p in &peers {
                let _ = writeln!(
                    out,
                    "| {} ÷ {} | {} | {} | {} | {} | {} | {} |",
                    lw.target,
                    p.target,
                    ratio(lw.delivered_per_s, p.delivered_per_s),
                    ratio(lw.latency.p50_ms, p.latency.p50_ms),
                    ratio(lw.latency.p99_ms, p.latency.p99_ms),
                    ratio(lw.latency.p999_ms, p.latency.p999_ms),
                    ratio(lw.server_cpu_us_per_delivery, p.server_cpu_us_per_delivery),
                    ratio(lw.rss_per_conn_kb, p.rss_per_conn_kb),
                );
            }
        }
    }

    /// The Markdown tables.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let s = &self.settings;
        let _ = writeln!(
            out,
            "Machine: {} ({} cores, {:.0} GiB, Linux {}); servers pinned to core {}, generator on the other. Bodies {} bytes. Run took {:.0} s.\n",
            m["cpu"].as_str().unwrap_or("?"),
            m["cores"],
            m["mem_gib"].as_f64().unwrap_or(0.0),
            m["kernel"].as_str().unwrap_or("?"),
            m["server_core"],
            s["body_bytes"],
            self.total_secs
        );
        let targets = self.targets();

        if self.steps_of("fanout").next().is_some() {
            let _ = writeln!(
                out,
                "### Room fan-out: {} members, {} msg/s into the room\n",
                s["members"], s["fanout_rate"]
            );
            self.step_table(&mut out, "fanout", false);
            self.ratio_table(&mut out, "fanout");
            out.push('\n');
        }

        if self.steps_of("sweep").next().is_some() {
            let _ = writeln!(
                out,
                "### Saturation sweep of the fan-out ({} members; stops when p99 > {} ms)\n",
                s["members"], s["sweep_stop_ms"]
            );
            let _ = writeln!(
                out,
                "| target | most deliveries/s with p99 ≤ {FANOUT_P99_MS} ms | at msg/s | livewire ÷ target |"
            );
            let _ = writeln!(out, "|---|---|---|---|");
            let lw = self.capacity("livewire").map(|c| c.0);
            for t in &targets {
                let c = self.capacity(t);
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    t,
                    c.map_or("none".into(), |c| format!("{:.0}", c.0)),
                    c.map_or("–".into(), |c| format!("{:.0}", c.1)),
                    match (lw, c) {
                        (Some(l), Some(c)) => ratio(l, c.0),
                        _ => "–".into(),
                    }
                );
            }
            out.push_str("\nEvery step:\n\n");
            self.step_table(&mut out, "sweep", true);
            out.push('\n');
        }

        if self.steps_of("pairs").next().is_some() {
            let _ = writeln!(
                out,
                "### Private pairs: {} clients ({} pairs), {} msg/s in total; quinn-echo is a raw quinn stream echo at the same clients and rate (its latency is the round trip)\n",
                s["pair_clients"],
                s["pair_clients"].as_u64().unwrap_or(0) / 2,
                s["pairs_rate"]
            );
            self.step_table(&mut out, "pairs", false);
            for e in self.steps_of("echo") {
                let _ = writeln!(
                    out,
                    "| quinn-echo (RTT) | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.1} | {:.1} | {:.0} | {:.2} | {}/{} | {} |",
                    e.delivered_per_s,
                    e.latency.p50_ms,
                    e.latency.p99_ms,
                    e.latency.p999_ms,
                    e.server_cpu_pct,
                    e.server_cpu_us_per_delivery,
                    e.rss_per_conn_kb,
                    e.generator_cpu_pct,
                    e.send_lag.p99_ms,
                    e.lost,
                    e.expected,
                    e.errors
                );
            }
            self.ratio_table(&mut out, "pairs");
            out.push('\n');
        }

        if self.steps_of("rooms").next().is_some() {
            let _ = writeln!(
                out,
                "### Many rooms: {} rooms of {} members over {} clients, {} msg/s spread over the rooms\n",
                s["rooms"], s["room_members"], s["room_clients"], s["rooms_rate"]
            );
            self.step_table(&mut out, "rooms", false);
            let loads: Vec<String> = self
                .steps_of("rooms")
                .map(|s| format!("{} {:.2}", s.target, s.loadavg_1m))
                .collect();
            let _ = writeln!(
                out,
                "\nMachine load average (1 min) at the end of each window: {}.",
                loads.join(", ")
            );
            self.ratio_table(&mut out, "rooms");
            out.push('\n');
        }

        if !self.idle.is_empty() {
            let _ = writeln!(
                out,
                "### Idle scaling: {} clients requested, watched for {} s\n",
                s["idle"], s["idle_hold_s"]
            );
            let _ = writeln!(
                out,
                "| target | connected | connect s | server CPU ms per connect | idle server CPU % | RSS base MiB | RSS MiB | RSS/conn KiB | livewire ÷ target (RSS/conn) | connect retries | errors |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
            let lw = self.idle.iter().find(|i| i.target == "livewire");
            for i in &self.idle {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
                    i.target,
                    i.clients,
                    i.connect_secs,
                    i.connect_server_cpu_ms_per_conn,
                    i.server_cpu_pct,
                    i.server_rss_base_kb as f64 / 1024.0,
                    i.server_rss_kb as f64 / 1024.0,
                    i.rss_per_conn_kb,
                    lw.map_or("–".into(), |l| ratio(
                        l.rss_per_conn_kb,
                        i.rss_per_conn_kb
                    )),
                    i.connect_retries,
                    i.errors
                );
            }
            out.push('\n');
        }

        if !self.storm.is_empty() {
            let _ = writeln!(
                out,
                "### Reconnect storm: the server restarted (SIGTERM, same port and data) under its logged-in clients\n"
            );
            let _ = writeln!(
                out,
                "| target | clients | first logins s | their server CPU s | stop s | back | back s | new server CPU s |\n|---|---|---|---|---|---|---|---|"
            );
            for r in &self.storm {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} |",
                    r.target,
                    r.clients,
                    r.first_login_secs,
                    r.first_login_cpu_secs,
                    r.stop_secs,
                    r.back,
                    r.back_secs,
                    r.back_cpu_secs
                );
            }
            out.push('\n');
        }

        if let Some(u) = &self.udp {
            let _ = writeln!(out, "### Physical references\n");
            let _ = writeln!(
                out,
                "| reference | rate | p50 ms | p99 ms |\n|---|---|---|---|\n| raw UDP, 128-byte datagrams, one sender thread | {:.0} sent/s, {:.0} received/s | – | – |\n| raw UDP ping-pong RTT | – | {:.3} | {:.3} |",
                u.sent_per_s, u.received_per_s, u.rtt.p50_ms, u.rtt.p99_ms
            );
            for e in self.steps_of("echo") {
                let _ = writeln!(
                    out,
                    "| raw quinn stream echo RTT, {} clients | {:.0} echoes/s | {:.3} | {:.3} |",
                    e.clients, e.delivered_per_s, e.latency.p50_ms, e.latency.p99_ms
                );
            }
            out.push('\n');
        }

        let issue7 = ["sweep", "pairs"]
            .iter()
            .any(|s| self.steps_of(s).next().is_some())
            || !self.idle.is_empty();
        if issue7 {
            let _ = writeln!(out, "### Targets of issue 7\n");
            let _ = writeln!(out, "| target | measured | verdict |\n|---|---|---|");
        }
        if self.steps_of("sweep").next().is_some() {
            let best = targets
                .iter()
                .filter(|t| is_peer(t))
                .filter_map(|t| self.capacity(t).map(|c| (t.clone(), c.0)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            for name in targets.iter().filter(|t| is_livewire(t)) {
                let lw = self.capacity(name);
                let (measured, ok) = match (lw, &best) {
                    (Some(l), Some((peer, b))) => (
                        format!(
                            "{name} {:.0} vs best peer {peer} {:.0} deliveries/s at p99 ≤ {FANOUT_P99_MS} ms (×{})",
                            l.0,
                            b,
                            ratio(l.0, *b)
                        ),
                        l.0 >= *b,
                    ),
                    (None, Some((peer, b))) => (
                        format!(
                            "{name} never met p99 ≤ {FANOUT_P99_MS} ms; best peer {peer} {b:.0}"
                        ),
                        false,
                    ),
                    (l, None) => (
                        format!("{name} {:.0}; no peer measured", l.map_or(0.0, |l| l.0)),
                        false,
                    ),
                };
                let _ = writeln!(
                    out,
                    "| fan-out, {} members: deliveries/s ≥ best TLS peer at p99 ≤ {FANOUT_P99_MS} ms ({name}) | {measured} | {} |",
                    s["members"],
                    if ok { "met" } else { "MISSED" }
                );
            }
        }
        let echo = self.steps_of("echo").next();
        for l in self.steps_of("pairs").filter(|s| is_livewire(&s.target)) {
            let Some(e) = echo else { break };
            let r = l.latency.p50_ms / e.latency.p50_ms;
            let _ = writeln!(
                out,
                "| private pairs p50 ≤ {PAIRS_VS_ECHO}× raw quinn echo p50 ({}) | {:.3} ms vs {:.3} ms (×{:.2}) | {} |",
                l.target,
                l.latency.p50_ms,
                e.latency.p50_ms,
                r,
                if r <= PAIRS_VS_ECHO { "met" } else { "MISSED" }
            );
        }
        for i in self.idle.iter().filter(|i| is_livewire(&i.target)) {
            let want = s["idle"].as_u64().unwrap_or(0) as usize;
            let ok = i.clients >= want && i.rss_per_conn_kb < IDLE_KB_PER_CONN && i.errors == 0;
            let _ = writeln!(
                out,
                "| {want} idle clients, < 40 KB server memory each ({}) | {} clients, {:.1} KiB ({:.1} KB) each | {} |",
                i.target,
                i.clients,
                i.rss_per_conn_kb,
                i.rss_per_conn_kb * 1.024,
                if ok { "met" } else { "MISSED" }
            );
        }
        if !self.failures.is_empty() {
            let _ = writeln!(out, "\nFailures:\n");
            for f in &self.failures {
                let _ = writeln!(out, "- {f}");
            }
        }
        out
    }
}
