//! Benchmark (issue 14): time from sign-in to the first frame of the client window that
//! shows the newest message of `#general`, with N messages stored there.
//! Run by `scripts/bench-gui-first-frame.sh`; it is a benchmark, not a test.
//!
//! ```text
//! gui_first_frame setup DIR N      a server data dir with users reader and writer, and N
//!                                  messages from writer in #general (written with the
//!                                  server's own store API, SqliteStore::insert_message, in
//!                                  one transaction: the server's send path has a per-user
//!                                  rate limit, and what is measured here is the read side);
//!                                  reader signed in once before the messages were written,
//!                                  so a copy of its state is a returning device N behind
//! gui_first_frame serve DIR        the server on DIR (prints "PORT FINGERPRINT", runs until
//!                                  stdin closes)
//! gui_first_frame measure DIR MODE starts `serve` as a child process, a client window under
//!                                  the display given, and signs reader in; MODE `fresh` is a
//!                                  new device (empty state dir), `returning` a copy of the
//!                                  state saved at setup. Prints one JSON line.
//! ```
//!
//! The clock starts when the window is asked to connect (what Connect does) and stops in the
//! frame clock's `after-paint` of the first frame in which the row of the newest message
//! is mapped (`LwClientWindow::rendered_messages`, which lists mapped rows only).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use gtk::glib;
use gtk::prelude::*;
use gtk4 as gtk;

use livewire::app::client::Event;
use livewire::app::ids::{ClientMsgId, ConvId};
use livewire::app::limits::Limits;
use livewire::app::store::Store;
use livewire::gui::LwClientWindow;
use livewire::store::SqliteStore;
use livewire::transport::client::{self, ClientEvent, ClientOptions, Trust};
use livewire::transport::server::{Server, ServerOptions};

const PASSWORD: &str = "first frame bench";

fn newest_text(n: u64) -> String {
    format!("message {n} of {n}: the newest")
}

fn message_text(i: u64, n: u64) -> String {
    if i == n {
        newest_text(n)
    } else {
        format!("message {i} of {n}: some words so that the row is an ordinary chat line")
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn server_opts(dir: &Path, port: u16) -> ServerOptions {
    ServerOptions {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        data_dir: dir.join("server"),
        cert: None,
        limits: Limits::default(),
        timers: livewire::transport::quic::Timers::SERVER,
        node_id: 0,
        nats: None,
    }
}

fn start_server(rt: &tokio::runtime::Runtime, dir: &Path, port: u16) -> Server {
    let opts = server_opts(dir, port);
    rt.block_on(async {
        let store = SqliteStore::open(&opts.data_dir).expect("open the store");
        Server::start(opts, store).await.expect("start the server")
    })
}

/// Signs `user` in headless (registering on first use) and waits for `ready`; the state is
/// saved under `state_dir` as the window keeps it.
fn sign_in(
    rt: &tokio::runtime::Runtime,
    port: u16,
    fingerprint: &str,
    user: &str,
    config_dir: &Path,
) {
    let server = format!("127.0.0.1:{port}");
    let opts = ClientOptions {
        server: server.clone(),
        user: user.into(),
        password: PASSWORD.into(),
        trust: Trust::Fingerprint(fingerprint.into()),
        pins: livewire::paths::pin_store(config_dir),
        state_file: Some(livewire::paths::state_file(
            &config_dir.join("state"),
            &server,
            user,
        )),
        reconnect: false,
        endpoint: None,
        timers: livewire::transport::quic::Timers::CLIENT,
        stream_idle: livewire::transport::client::STREAM_IDLE,
    };
    let (handle, events) = client::start_on(opts, rt.handle());
    rt.block_on(async {
        loop {
            match events.recv().await {
                Ok(ClientEvent::App(Event::Ready { .. })) => break,
                Ok(ClientEvent::Fatal(f)) => panic!("{user} could not sign in: {f:?}"),
                Ok(_) => {}
                Err(_) => panic!("{user}'s client ended"),
            }
        }
        handle.send(livewire::app::client::Command::Logout);
        while let Ok(ev) = events.recv().await {
            if matches!(ev, ClientEvent::Ended | ClientEvent::Fatal(_)) {
                break;
            }
        }
    });
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

fn setup(dir: &Path, n: u64) {
    std::fs::create_dir_all(dir).expect("bench dir");
    let port = free_port();
    std::fs::write(dir.join("port"), port.to_string()).expect("write port");
    let rt = runtime();
    let server = start_server(&rt, dir, port);
    let fp = server.fingerprint().to_owned();
    sign_in(&rt, port, &fp, "writer", &dir.join("writer"));
    sign_in(&rt, port, &fp, "reader", &dir.join("reader-returning"));
    rt.block_on(server.shutdown("setup done"));
    let started = Instant::now();
    let mut store = SqliteStore::open(&dir.join("server")).expect("open the store");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    store.begin().expect("begin");
    for i in 1..=n {
        let mut cmid = [0u8; 16];
        cmid[..8].copy_from_slice(&i.to_le_bytes());
        cmid[8] = 0xbe;
        store
            .insert_message(
                &ConvId::General,
                "writer",
                ClientMsgId(cmid),
                message_text(i, n).as_bytes(),
                now - (n - i) * 1000,
            )
            .expect("insert");
    }
    store.commit().expect("commit");
    drop(store);
    std::fs::write(dir.join("messages"), n.to_string()).expect("write count");
    eprintln!(
        "setup: {n} messages written with the store API in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn serve(dir: &Path) {
    let port: u16 = std::fs::read_to_string(dir.join("port"))
        .expect("run setup first")
        .trim()
        .parse()
        .expect("port");
    let rt = runtime();
    let server = start_server(&rt, dir, port);
    println!("{port} {}", server.fingerprint());
    std::io::stdout().flush().ok();
    // Until the parent closes stdin.
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
        line.clear();
    }
    rt.block_on(server.shutdown("bench done"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

fn measure(dir: &Path, mode: &str) {
    let n: u64 = std::fs::read_to_string(dir.join("messages"))
        .expect("run setup first")
        .trim()
        .parse()
        .expect("count");
    let newest = newest_text(n);
    // The server: a child process, stopped by closing its stdin (and killed by pid if
    // it does not stop).
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .arg("serve")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    eprintln!("server process {}", child.id());
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("server line");
    let mut parts = first.split_whitespace();
    let port: u16 = parts.next().and_then(|p| p.parse().ok()).expect("port");
    let fingerprint = parts.next().expect("fingerprint").to_owned();

    let work = tempfile::tempdir().expect("temp dir");
    let config = work.path().join("reader");
    if mode == "returning" {
        copy_dir(&dir.join("reader-returning"), &config);
    } else {
        assert_eq!(mode, "fresh", "MODE is fresh or returning");
    }
    gtk::init().expect("a display (run under xvfb-run)");
    let app = livewire::gui::application("org.livewire.BenchFirstFrame");
    app.register(None::<&gtk::gio::Cancellable>)
        .expect("register");
    livewire::gui::load_css();
    let win = LwClientWindow::new(&app, config);
    win.set_default_size(1000, 700);
    win.present();
    let ctx = glib::MainContext::default();
    let deadline = Instant::now()
        + Duration::from_secs(if std::env::var_os("BENCH_SHOT").is_some() {
            20
        } else {
            120
        });
    while !win.is_mapped() && Instant::now() < deadline {
        if !ctx.iteration(false) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    eprintln!("window mapped");
    // A few frames of the empty window first (its first layout is not sign-in work).
    for _ in 0..20 {
        ctx.iteration(false);
    }
    let clock = win.frame_clock().expect("a frame clock");
    let done: Rc<std::cell::Cell<Option<Duration>>> = Rc::default();
    let signed_in: Rc<std::cell::Cell<Option<Duration>>> = Rc::default();
    let frames = Rc::new(std::cell::Cell::new(0u32));
    let start = Instant::now();
    {
        let (done, signed_in, frames, w, newest) = (
            done.clone(),
            signed_in.clone(),
            frames.clone(),
            win.clone(),
            newest.clone(),
        );
        clock.connect_after_paint(move |_| {
            frames.set(frames.get() + 1);
            if signed_in.get().is_none() && w.is_logged_in() {
                signed_in.set(Some(start.elapsed()));
            }
            if done.get().is_none() && w.rendered_messages().contains(&newest) {
                done.set(Some(start.elapsed()));
            }
        });
    }
    win.connect_to(
        "127.0.0.1",
        port,
        "reader",
        PASSWORD,
        Trust::Fingerprint(fingerprint),
    );
    // Not `iteration(true)`: the network works on tokio threads and wakes the loop
    // through the event channel, but a deadline must be checked when nothing comes.
    while done.get().is_none() && Instant::now() < deadline {
        if !ctx.iteration(false) {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    if done.get().is_none() {
        eprintln!(
            "never shown; signed in: {}; rows mapped: {:?}",
            win.is_logged_in(),
            win.rendered_messages()
                .iter()
                .map(|t| t.split(':').next().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        );
        if let Ok(path) = std::env::var("BENCH_SHOT") {
            let paintable = gtk::WidgetPaintable::new(Some(&win));
            let snapshot = gtk::Snapshot::new();
            paintable.snapshot(&snapshot, win.width() as f64, win.height() as f64);
            if let (Some(node), Some(r)) = (snapshot.to_node(), win.renderer()) {
                let _ = r.render_texture(node, None).save_to_png(&path);
            }
        }
    }
    let shown = win
        .conversation("#general")
        .map(|c| c.len())
        .unwrap_or_default();
    let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e4).round() / 10.0);
    println!(
        "{}",
        serde_json::json!({
            "messages": n,
            "mode": mode,
            "first_frame_ms": ms(done.get()),
            "signed_in_ms": ms(signed_in.get()),
            "frames": frames.get(),
            "rows_in_model": shown,
        })
    );
    win.close();
    for _ in 0..50 {
        ctx.iteration(false);
    }
    drop(child.stdin.take());
    let stop = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < stop {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    if done.get().is_none() {
        std::process::exit(1);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = |i: usize| PathBuf::from(args.get(i).expect("DIR"));
    match args.get(1).map(String::as_str) {
        Some("setup") => setup(
            &dir(2),
            args.get(3).and_then(|n| n.parse().ok()).expect("N"),
        ),
        Some("serve") => serve(&dir(2)),
        Some("measure") => measure(&dir(2), args.get(3).map_or("fresh", String::as_str)),
        _ => {
            eprintln!(
                "usage: gui_first_frame setup DIR N | serve DIR | measure DIR fresh|returning"
            );
            std::process::exit(2);
        }
    }
}
