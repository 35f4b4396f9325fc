//! `livewire-bench mls`: what a private (MLS) room of N members costs beside a public room
//! of the same size (issue 16, "Numbers"). Everything runs in this process on the sans-IO
//! MLS [`Device`] API, one device per member: the sender's CPU to encrypt a 100-byte text,
//! one recipient's CPU to open it, the committer's CPU to add or remove one member, the
//! CPU of each other member to process that commit, the new member's CPU to join from the
//! welcome, and the bytes of each (the MLS body as it goes into a conversation frame).
//! The public room's cost is the session sealing of the same text: the sender seals once,
//! the server opens it and seals it once per recipient (AES-256-GCM-SIV,
//! `transport::envelope`), each recipient opens once. The server seals an MLS body the
//! same way (a private room's body is sealed again under each session), so the server's
//! crypto per send is also measured for a body of the MLS message's size.
//!
//! CPU is the process's CPU clock (all threads; openmls may use a rayon pool), in
//! nanoseconds, medians over repetitions. The machine is
//! shared: these are CPU times, not instruction counts (no hardware counters here).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use livewire::app::ids::ClientMsgId;
use livewire::app::mls::{Device, DeviceInfo, MlsBody, Received};
use livewire::transport::envelope::{Aad, Direction, SealingKey};

/// Options of the `mls` subcommand.
#[derive(clap::Parser, Clone)]
pub struct MlsArgs {
    /// Members of the room (devices, one per user).
    #[arg(long, default_value_t = 500)]
    members: usize,
    /// Messages sent (sender and recipient medians are over these).
    #[arg(long, default_value_t = 30)]
    messages: usize,
    /// Recipients that open every message (the recipient median is over messages × these).
    #[arg(long, default_value_t = 5)]
    recipients: usize,
    /// Add-then-remove rounds of one member (every member processes each commit).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Bytes of the text sent.
    #[arg(long, default_value_t = 100)]
    text: usize,
    /// Also grow a second group one member per commit up to --members (the way a private
    /// room grows as people are invited). Only the committer, the new member and
    /// `--observers` early members process every commit; the others' cost is estimated
    /// from the observers.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    buildup: bool,
    /// Members that process every commit of the one-at-a-time build-up.
    #[arg(long, default_value_t = 3)]
    observers: usize,
    /// Where to write the Markdown table (stdout too).
    #[arg(long)]
    table: Option<std::path::PathBuf>,
}

/// CPU nanoseconds used so far by all threads of this process (openmls may use a rayon
/// pool): `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`.
fn cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    (t.tv_sec.max(0) as u64) * 1_000_000_000 + t.tv_nsec.max(0) as u64
}

/// Runs `f`, returning its result and the CPU microseconds it took.
fn cpu<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let a = cpu_ns();
    let out = f();
    let b = cpu_ns();
    (out, b.saturating_sub(a) as f64 / 1000.0)
}

/// Median, min and max of a sample.
#[derive(Clone, Copy, Default)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn stat(v: &[f64]) -> Stat {
    if v.is_empty() {
        return Stat::default();
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    let median = if s.len().is_multiple_of(2) {
        (s[mid - 1] + s[mid]) / 2.0
    } else {
        s[mid]
    };
    Stat {
        median,
        min: s[0],
        max: s[s.len() - 1],
        n: s.len(),
    }
}

fn us(x: f64) -> String {
    if x >= 100_000.0 {
        format!("{:.0} ms", x / 1000.0)
    } else if x >= 1000.0 {
        format!("{:.2} ms", x / 1000.0)
    } else {
        format!("{x:.1} µs")
    }
}

fn row(out: &mut String, what: &str, s: Stat, bytes: &str) {
    out.push_str(&format!(
        "| {what} | {} | {} – {} | {} | {bytes} |\n",
        us(s.median),
        us(s.min),
        us(s.max),
        s.n
    ));
}

fn commit_parts(body: &MlsBody) -> (usize, usize) {
    match body {
        MlsBody::Commit {
            commit, welcome, ..
        } => (commit.len(), welcome.as_ref().map_or(0, Vec::len)),
        MlsBody::App(m) => (m.len(), 0),
    }
}

/// Hands `body` (ordered by the server) to every device in `who`; CPU µs of each.
fn deliver(devices: &mut [Device], who: &[usize], conv: &str, body: &MlsBody) -> Result<Vec<f64>> {
    let mut costs = Vec::with_capacity(who.len());
    for &i in who {
        let (r, c) = cpu(|| devices[i].receive(conv, body));
        r.with_context(|| format!("member {i} processing a commit"))?;
        costs.push(c);
    }
    Ok(costs)
}

const ROOM: &str = "room:bench";
const GROWN: &str = "room:grown";

/// The `mls` subcommand.
pub fn run(args: MlsArgs) -> Result<()> {
    let n = args.members;
    if n < 3 {
        bail!("--members must be at least 3");
    }
    let started = Instant::now();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("[mls] {n} members, load {}", load.trim());

    // One device per member, plus one that joins and leaves in the add/remove rounds.
    let mut devices = Vec::with_capacity(n + 1);
    for i in 0..=n {
        // Device ids differ: a commit names its device by id alone (real clients' ids are
        // random).
        devices.push(Device::new(&format!("user{i:04}"), &format!("dev{i:04}"))?);
    }
    let joiner = n;
    let mut kp_cost = Vec::new();
    let mut kp_len = 0;
    let mut kps = Vec::with_capacity(n);
    for d in devices.iter_mut().take(n).skip(1) {
        let (kp, c) = cpu(|| d.key_package());
        let kp = kp?;
        kp_len = kp.len();
        kp_cost.push(c);
        kps.push(kp);
    }

    // The room in one commit: member 0 creates it and adds everyone else.
    devices[0].create_group(ROOM)?;
    let (commit, add_all_cpu) = cpu(|| devices[0].add(ROOM, &kps));
    let commit = commit?;
    let (add_all_commit, add_all_welcome) = commit_parts(&commit);
    let add_all_body = commit.encode().len();
    devices[0].commit_accepted(ROOM)?;
    let others: Vec<usize> = (1..n).collect();
    let welcome_costs = deliver(&mut devices, &others, ROOM, &commit)?;
    for d in &devices[1..n] {
        if d.epoch(ROOM) != Some(1) {
            bail!("{d:?} did not join the room");
        }
    }
    eprintln!(
        "[mls] group of {n} built in one commit ({:.1} s so far)",
        started.elapsed().as_secs_f64()
    );

    // Sends: member 1 sends, `recipients` members open every message.
    let text = vec![b'x'; args.text];
    let sender = 1;
    let readers: Vec<usize> = (2..n)
        .step_by(((n - 2) / args.recipients.max(1)).max(1))
        .take(args.recipients)
        .collect();
    let mut enc = Vec::new();
    let mut dec = Vec::new();
    let mut app_len = 0;
    let mut app_body = Vec::new();
    for _ in 0..args.messages {
        let (body, c) = cpu(|| devices[sender].encrypt(ROOM, &text));
        let body = body?;
        enc.push(c);
        app_body = body.encode();
        app_len = app_body.len();
        for &r in &readers {
            let (got, c) = cpu(|| devices[r].receive(ROOM, &body));
            match got? {
                Received::App { data, .. } if data == text => {}
                _ => bail!("member {r} did not read the message"),
            }
            dec.push(c);
        }
    }

    // Add one member and remove it again, `rounds` times; everyone processes each commit.
    let mut add_c = Vec::new();
    let mut add_members = Vec::new();
    let mut join_c = Vec::new();
    let mut rm_c = Vec::new();
    let mut rm_members = Vec::new();
    let mut add_sizes = (0, 0, 0);
    let mut rm_sizes = (0, 0, 0);
    let mut add_body = Vec::new();
    let mut rm_body = Vec::new();
    let committer = 0;
    let peers: Vec<usize> = (1..n).collect();
    for round in 0..args.rounds {
        let kp = devices[joiner].key_package()?;
        let (commit, c) = cpu(|| devices[committer].add(ROOM, std::slice::from_ref(&kp)));
        let commit = commit?;
        let (cl, wl) = commit_parts(&commit);
        add_sizes = (cl, wl, commit.encode().len());
        add_body = commit.encode();
        devices[committer].commit_accepted(ROOM)?;
        add_c.push(c);
        add_members.extend(deliver(&mut devices, &peers, ROOM, &commit)?);
        let (j, c) = cpu(|| devices[joiner].receive(ROOM, &commit));
        match j? {
            Received::Commit { joined: true, .. } => {}
            _ => bail!("the new member did not join"),
        }
        join_c.push(c);

        let gone: Vec<DeviceInfo> = vec![devices[joiner].info()];
        let (commit, c) = cpu(|| devices[committer].remove(ROOM, &gone));
        let commit = commit?;
        let (cl, wl) = commit_parts(&commit);
        rm_sizes = (cl, wl, commit.encode().len());
        rm_body = commit.encode();
        devices[committer].commit_accepted(ROOM)?;
        rm_c.push(c);
        rm_members.extend(deliver(&mut devices, &peers, ROOM, &commit)?);
        devices[joiner].receive(ROOM, &commit)?;
        devices[joiner].forget(ROOM);
        eprintln!(
            "[mls] add/remove round {} done ({:.1} s so far)",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }

    // A member's key update (the client does one every few messages and on membership
    // changes), processed by everyone.
    let (commit, upd_cpu) = cpu(|| devices[sender].self_update(ROOM));
    let commit = commit?;
    let upd_len = commit.encode().len();
    devices[sender].commit_accepted(ROOM)?;
    let upd_peers: Vec<usize> = (0..n).filter(|&i| i != sender).collect();
    let upd_members = deliver(&mut devices, &upd_peers, ROOM, &commit)?;
    let epoch = devices[0].epoch(ROOM);
    if let Some(i) = (0..n).find(|&i| devices[i].epoch(ROOM) != epoch) {
        bail!("member {i} is at another epoch than member 0");
    }

    // Public room of the same size: the session sealing of the same text (and, for the
    // server's share of a private room, of the MLS body).
    let key = SealingKey::session(&[7; 32]);
    let cmid = ClientMsgId([1; 16]);
    let aad = Aad::event(Direction::Down, "room:bench", "user0001", cmid);
    let seal_all = |body: &[u8]| -> Result<(f64, usize)> {
        let mut len = 0;
        let a = cpu_ns();
        for _ in 1..n {
            len = key.seal(&aad, body)?.len();
        }
        Ok(((cpu_ns() - a) as f64 / 1000.0, len))
    };
    let mut pub_fan = Vec::new();
    let mut mls_fan = Vec::new();
    let mut pub_one = Vec::new();
    let mut pub_len = 0;
    let mut mls_sealed_len = 0;
    for _ in 0..args.messages.max(5) {
        let (c, l) = seal_all(&text)?;
        pub_fan.push(c);
        pub_len = l;
        let (c, l) = seal_all(&app_body)?;
        mls_fan.push(c);
        mls_sealed_len = l;
        let (sealed, c) = cpu(|| key.seal(&aad, &text));
        let sealed = sealed?;
        pub_one.push(c);
        key.open(&aad, &sealed)?;
    }

    // The server's sealing of an add's and a remove's body for every member (the body
    // goes to all of them, the new member included for an add).
    let mut add_fan = Vec::new();
    let mut rm_fan = Vec::new();
    for _ in 0..3 {
        add_fan.push(seal_all(&add_body)?.0 * n as f64 / (n - 1) as f64);
        rm_fan.push(seal_all(&rm_body)?.0);
    }

    // Growing a second group one member per commit.
    let mut grown = String::new();
    if args.buildup {
        grown = buildup(&mut devices[..n], args.observers)?;
    }

    let e = stat(&enc);
    let d = stat(&dec);
    let pf = stat(&pub_fan);
    let mf = stat(&mls_fan);
    let recips = n - 1;
    let mut t = String::new();
    t.push_str(&format!(
        "MLS private room of {n} members (one device each) beside a public room of {n}; \
         {} messages of {} bytes, {} recipients opening each, {} add+remove rounds; \
         load average at start {}; run took {:.0} s.\n\n",
        args.messages,
        args.text,
        readers.len(),
        args.rounds,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        started.elapsed().as_secs_f64()
    ));
    t.push_str("| operation | CPU median | min – max | samples | bytes |\n|---|---|---|---|---|\n");
    row(
        &mut t,
        "MLS send: sender encrypts",
        e,
        &format!("{app_len} B body for a {} B text", args.text),
    );
    row(&mut t, "MLS send: one recipient opens", d, "");
    row(
        &mut t,
        &format!("MLS send: server seals the body for {recips} sessions (measured)"),
        mf,
        &format!(
            "{mls_sealed_len} B per recipient, {} B in all",
            mls_sealed_len * recips
        ),
    );
    row(
        &mut t,
        &format!("public send: server seals the text for {recips} sessions (measured)"),
        pf,
        &format!("{pub_len} B per recipient, {} B in all", pub_len * recips),
    );
    row(
        &mut t,
        "public send: sender seals / recipient opens (one session seal)",
        stat(&pub_one),
        "",
    );
    row(
        &mut t,
        "MLS add 1 member: committer",
        stat(&add_c),
        &format!(
            "commit {} B + welcome {} B = body {} B, to every member ({} B in all)",
            add_sizes.0,
            add_sizes.1,
            add_sizes.2,
            add_sizes.2 * n
        ),
    );
    row(
        &mut t,
        "MLS add 1 member: each other member processes the commit",
        stat(&add_members),
        "",
    );
    row(
        &mut t,
        "MLS add 1 member: the new member joins from the welcome",
        stat(&join_c),
        "",
    );
    row(
        &mut t,
        &format!("MLS add 1 member: server seals the body for {n} sessions (measured)"),
        stat(&add_fan),
        "",
    );
    row(
        &mut t,
        "MLS remove 1 member: committer",
        stat(&rm_c),
        &format!(
            "body {} B to every member ({} B in all)",
            rm_sizes.2,
            rm_sizes.2 * n
        ),
    );
    row(
        &mut t,
        "MLS remove 1 member: each other member processes the commit",
        stat(&rm_members),
        "",
    );
    row(
        &mut t,
        &format!("MLS remove 1 member: server seals the body for {recips} sessions (measured)"),
        stat(&rm_fan),
        "",
    );
    row(
        &mut t,
        "MLS key update: the updating member",
        stat(&[upd_cpu]),
        &format!("body {upd_len} B to every member"),
    );
    row(
        &mut t,
        "MLS key update: each other member processes it",
        stat(&upd_members),
        "",
    );
    row(
        &mut t,
        &format!("MLS room built in one commit: committer adds {}", n - 1),
        stat(&[add_all_cpu]),
        &format!("commit {add_all_commit} B + welcome {add_all_welcome} B = body {add_all_body} B"),
    );
    row(
        &mut t,
        "MLS room built in one commit: each member joins from the welcome",
        stat(&welcome_costs),
        "",
    );
    row(
        &mut t,
        "key package made by a device",
        stat(&kp_cost),
        &format!("{kp_len} B"),
    );
    t.push_str(&format!(
        "\nPer send into the room: MLS client CPU {} (encrypt) + {} per recipient (open) vs \
         public {} + {}; server sealing {} vs {} (×{:.2}); bytes per recipient {} vs {} \
         (×{:.2}).\n",
        us(e.median),
        us(d.median),
        us(stat(&pub_one).median),
        us(stat(&pub_one).median),
        us(mf.median),
        us(pf.median),
        mf.median / pf.median.max(0.001),
        mls_sealed_len,
        pub_len,
        mls_sealed_len as f64 / pub_len.max(1) as f64
    ));
    t.push_str(&grown);
    println!("{t}");
    if let Some(p) = &args.table {
        std::fs::write(p, &t)?;
    }
    Ok(())
}

/// Grows a group from 1 to `devices.len()` members, one add per commit. Returns the
/// table's rows.
fn buildup(devices: &mut [Device], observers: usize) -> Result<String> {
    let n = devices.len();
    let started = Instant::now();
    devices[0].create_group(GROWN)?;
    let mut committer_total = 0.0;
    let mut joiner_total = 0.0;
    let mut estimated_members_total = 0.0;
    let mut observer_totals = vec![0.0; observers];
    let mut bytes_total: usize = 0;
    let mut last = (0.0, 0.0, 0.0, 0usize);
    for k in 1..n {
        let kp = devices[k].key_package()?;
        let (commit, c) = cpu(|| devices[0].add(GROWN, std::slice::from_ref(&kp)));
        let commit = commit?;
        devices[0].commit_accepted(GROWN)?;
        committer_total += c;
        let len = commit.encode().len();
        // The body goes to every member but the committer, the new one included.
        bytes_total += len * k;
        let watching: Vec<usize> = (1..k.min(observers + 1)).collect();
        let costs = deliver(devices, &watching, GROWN, &commit)?;
        for (i, c) in costs.iter().enumerate() {
            observer_totals[i] += c;
        }
        let per_member = stat(&costs).median;
        // Members 1..k-1 process this commit: (k - 1) of them.
        estimated_members_total += per_member * (k - 1) as f64;
        let (j, jc) = cpu(|| devices[k].receive(GROWN, &commit));
        match j? {
            Received::Commit { joined: true, .. } => {}
            _ => bail!("member {k} did not join the grown group"),
        }
        joiner_total += jc;
        last = (c, per_member, jc, len);
        if k % 100 == 0 {
            eprintln!(
                "[mls] build-up at {} members ({:.1} s)",
                k + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let obs = stat(&observer_totals);
    let mut t = String::new();
    t.push_str(&format!(
        "\nBuilding the room one member per commit (1 → {n}, {} commits):\n\n\
         | part | CPU |\n|---|---|\n\
         | committer, all commits | {} |\n\
         | each new member joining from its welcome, all {} together | {} |\n\
         | one early member processing every later commit ({} observers, median) | {} |\n\
         | all members processing commits (estimated: per commit, observers' median × members then) | {} |\n\
         | the last commit ({} → {}): committer / a member / the new member | {} / {} / {} |\n\
         | bytes the server fans out, all commits (body × members then) | {:.1} MB |\n\
         | the last commit's body | {} B |\n",
        n - 1,
        us(committer_total),
        n - 1,
        us(joiner_total),
        obs.n,
        us(obs.median),
        us(estimated_members_total),
        n - 1,
        n,
        us(last.0),
        us(last.1),
        us(last.2),
        bytes_total as f64 / 1e6,
        last.3,
    ));
    Ok(t)
}
