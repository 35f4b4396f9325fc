//! The test kit: the real `livewire` binary as a headless server ([`ServerProc`]) and as
//! scripted clients ([`ChatProc`]) on 127.0.0.1 in temporary directories, optionally under a
//! command prefix (the NAT lab runs them with `ip netns exec`). Every harness, including the
//! in-process client of `faulty_net`, records its JSON events in a [`Transcript`], the one
//! implementation of expect / send / sync, and every suite ends with the same P1–P7 checks
//! ([`check_properties`], docs/TESTING.md). Waiting is done on events (the `sync` barrier
//! or an expected line), with a generous deadline that only fires when something is broken.

#![allow(dead_code)]

mod chat;
mod disk;
mod props;
mod raw;
mod server;
mod timers;
mod transcript;

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

// Each suite uses its own part of the kit.
#[allow(unused_imports)]
pub use chat::{ChatProc, ClientOpts};
#[allow(unused_imports)]
pub use disk::{any_contains, files_containing, files_under, parts_under};
#[allow(unused_imports)]
pub use props::{Record, Tally, check_conversation, check_properties};
#[allow(unused_imports)]
pub use raw::{RAW_MAX_FRAME, raw_login};
#[allow(unused_imports)]
pub use server::{ServerProc, in_process_server, stderr_path};
#[allow(unused_imports)]
pub use timers::{TIMERS, Timers};
#[allow(unused_imports)]
pub use transcript::{CommandSink, Transcript, event_channel, json_lines};

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(40);
/// The password every test user registers with.
pub const PASSWORD: &str = "correct horse battery";

/// The `livewire` binary cargo built for this test run, or the one `LIVEWIRE_TEST_BIN`
/// names (an A/B of two builds runs one test binary against each of them in turn).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("LIVEWIRE_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_livewire").to_owned())
    })
}

/// CPU seconds (user + system, every thread) process `pid` has used so far, from
/// `/proc/PID/stat` (in clock ticks of 1/100 s, Linux's fixed `USER_HZ`); `None` where
/// there is no procfs.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) and its closing parenthesis:
    // state is field 3, utime field 14, stime field 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Waits up to [`WAIT`] for a child to exit (killing it and failing the test after that).
pub fn wait_child(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The events of one kind in a log.
pub fn events<'a>(log: &'a [Value], kind: &str) -> Vec<&'a Value> {
    log.iter().filter(|v| v["event"] == kind).collect()
}
