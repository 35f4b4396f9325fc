//! Conversation streams open on use and close when idle, with the real binary: one client
//! in 30 conversations (`#general` and 29 private ones) with a 1 s `--stream-idle`. After a
//! quiet second only its control stream is open (the scripted `streams` figure, read from
//! the client's QUIC streams); news in every conversation reopens the streams (at most 24
//! at once) and arrives exactly once (P1–P7).

mod common;

use std::time::{Duration, Instant};

use common::{ChatProc, ClientOpts, Record, ServerProc, WAIT, check_conversation};
use serde_json::{Value, json};

const PEERS: usize = 29;

/// Asks the client for its open conversation streams until `done` holds (or fails after
/// [`WAIT`]); returns the last answer.
fn streams_until(c: &mut ChatProc, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        c.cmd(json!({"cmd": "streams"}));
        let v = c.expect("streams", |v| v["event"] == "streams");
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: still {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn idle(v: &Value) -> bool {
    v["open"].as_array().is_some_and(|a| a.is_empty()) && v["reading"] == 0
}

#[test]
fn a_client_in_30_conversations_keeps_only_active_streams_open_and_misses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = ServerProc::start(
        &tmp.path().join("srv"),
        "127.0.0.1:0",
        &["--conns-per-ip", "64", "--msg-burst", "100"],
    );
    let mut opts = ClientOpts::new(tmp.path());
    opts.extra = vec!["--stream-idle".into(), "1".into()];
    let mut hub = ChatProc::start_with(&server.addr, "hub", opts);
    hub.expect("ready", |v| v["event"] == "ready");
    let mut peers: Vec<ChatProc> = (0..PEERS)
        .map(|i| ChatProc::start(&server.addr, &format!("peer{i}"), tmp.path()))
        .collect();
    for p in &mut peers {
        p.expect("ready", |v| v["event"] == "ready");
    }

    // Round 1: the hub writes in every conversation (reopening on send), then goes quiet.
    hub.send("#general", "hello all");
    for i in 0..PEERS {
        hub.send(&format!("@peer{i}"), &format!("hello {i}"));
    }
    hub.sync();
    assert_eq!(hub.count("sent"), PEERS + 1);
    let busy = streams_until(&mut hub, "streams open", |_| true);
    let open = busy["open"].as_array().unwrap().len();
    assert!(
        open <= 24,
        "at most 24 conversation streams at once: {busy}"
    );
    let quiet = streams_until(&mut hub, "idle streams closed", idle);
    eprintln!("hub streams: {open} open after its sends, {quiet} after a quiet second");

    // Round 2: news in every conversation while the hub's streams are closed: it arrives
    // as ConvActivity, the hub reopens and catches up; its barrier holds across all that.
    peers[0].send("#general", "news in general");
    for (i, p) in peers.iter_mut().enumerate() {
        p.send("@hub", &format!("reply {i}"));
    }
    for p in &mut peers {
        p.expect("sent", |v| v["event"] == "sent");
    }
    let got = hub.sync();
    let texts: Vec<&str> = got
        .iter()
        .filter(|v| v["event"] == "message")
        .filter_map(|v| v["text"].as_str())
        .collect();
    assert_eq!(
        texts.len(),
        PEERS + 1,
        "everything before the barrier: {texts:?}"
    );
    streams_until(&mut hub, "idle again", idle);

    // Round 3: the hub writes again in every conversation after the close.
    for i in 0..PEERS {
        hub.send(&format!("@peer{i}"), &format!("again {i}"));
    }
    hub.sync();
    for p in &mut peers {
        p.sync();
    }

    let mut logs = vec![hub.finish_ok()];
    logs.extend(peers.into_iter().map(ChatProc::finish_ok));
    let records: Vec<Record<'_>> = logs
        .iter()
        .map(|(user, log)| Record { user, log })
        .collect();
    let members: Vec<&str> = logs.iter().map(|(u, _)| u.as_str()).collect();
    let tally = check_conversation(&records, &members);
    eprintln!("streams: {tally:?}");
    assert_eq!(tally.shown_twice, 0);
    server.stop();
}
