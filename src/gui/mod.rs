//! GTK4 windows (feature `gui`): the server window, the client window and `livewire demo`.
//!
//! # Layout
//!
//! - [`runtime`]: the one tokio runtime beside the GLib main loop.
//! - [`models`]: GObject models without widgets (messages, conversations, server clients).
//! - [`room_models`]: the same for rooms (directory entries, members, invitations).
//! - [`read_models`]: read markers, unread and mention counts, typing and "seen by" on a
//!   conversation model.
//! - [`message_row`]: `LwMessageRow`, one message bubble and its context menu.
//! - [`client_window`]: `LwClientWindow`, the connect screen and the chat, split by concern
//!   into child widgets (`LwConnectPage`, `LwSidebar`, `LwMessageList`, `LwComposer`) and
//!   the session, conversations, files and user-facing error parts.
//! - [`server_window`]: `LwServerWindow`, start/stop, clients, activity and announcements.
//! - [`settings`]: what the client window remembers (never the password).
//! - [`preferences`]: the GUI settings (style, notifications, muted conversations).
//! - [`notifications`]: which messages notify, and `app.open-conversation`.
//! - [`about`]: the About window. [`a11y`]: accessibility helpers. [`i18n`]: gettext.
//!
//! Widgets never do network I/O: they send commands through a `ClientHandle` or
//! `ServerHandle` and drain events from an `async_channel` in one
//! `glib::spawn_future_local` loop per window.
//!
//! Templates and CSS live in `ui/` and are compiled in. One rule places every template:
//! the widget defined in `src/gui/<path>.rs` (or `<path>/mod.rs`) has its template at
//! `ui/<path>.ui`, so `ui/` mirrors the widget tree. Signal handlers are declared in the
//! templates (`<signal handler="…">`) and implemented with `#[gtk::template_callbacks]`;
//! child widgets tell their window what the user did through their own signals.
//!
//! ```text
//! LwClientWindow (AdwApplicationWindow) > AdwToastOverlay
//! ├── AdwHeaderBar (back, new chat ▾, title, Log Out, conversation ⋮, main menu ☰)
//! └── GtkStack
//!     ├── "connect": LwConnectPage (server, port, username, password, trust card, errors)
//!     └── "chat": AdwLeaflet (side by side, or two pages below ~600 px)
//!         ├── LwSidebar: GtkListBox of LwConversation (#general, @peers; dots, badges)
//!         └── banner, status line, LwMessageList (GtkListView of LwMessageRow), LwComposer
//! ```

pub mod a11y;
pub mod about;
pub mod client_window;
pub mod i18n;
pub mod message_row;
pub mod models;
pub mod notifications;
pub mod preferences;
pub mod read_models;
pub mod room_models;
pub mod runtime;
pub mod server_window;
pub mod settings;

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

use gtk::prelude::*;
use gtk::{gdk, gio, glib};
use gtk4 as gtk;

pub use client_window::LwClientWindow;
pub use message_row::LwMessageRow;
pub use server_window::LwServerWindow;

use crate::app::limits::Limits;
use crate::transport::client::Trust;
use crate::transport::server::ServerOptions;

/// The style sheet, compiled in.
pub const STYLE_CSS: &str = include_str!("../../ui/style.css");

/// The client's application ID: the GApplication ID, its D-Bus name, the name of the desktop
/// entry, the metainfo and the icons in `data/` (tests/package.rs checks they agree).
pub const APP_ID: &str = "io.github.livewire.LiveWire";

/// The server window's application ID (its own desktop entry in `data/`).
pub const SERVER_APP_ID: &str = "io.github.livewire.LiveWire.Server";

/// The demo's application ID (no desktop entry: `livewire demo` is for trying it out).
pub const DEMO_APP_ID: &str = "io.github.livewire.LiveWire.Demo";

/// An `adw::Application` (it initialises libadwaita on start-up) that never hands over to
/// another process (with a session bus, a second process with the same application ID would
/// hand its window to the first and exit).
pub fn application(id: &str) -> adw::Application {
    let app = adw::Application::builder()
        .application_id(id)
        .flags(gio::ApplicationFlags::NON_UNIQUE)
        .build();
    setup_application(&app);
    app
}

/// What every LiveWire application has: translations, the notification action
/// (`app.open-conversation`, see [`notifications`]) and the keyboard shortcuts.
fn setup_application(app: &adw::Application) {
    i18n::init();
    // The name GTK gives the files it adds to "recently used" (the file chooser does).
    glib::set_application_name("LiveWire");
    notifications::add_open_conversation_action(app);
    client_window::keyboard::set_accels(app);
}

/// The client application. Launched with the default config dir (as the desktop entry
/// does) it is unique and owns [`APP_ID`] on the session bus, so launching it again opens
/// the new window in the running process; with another config dir (`--config-dir`,
/// `LIVEWIRE_CONFIG_DIR`: another set of pins and logins) it runs on its own, as before.
fn client_application(config_dir: &Path) -> adw::Application {
    if config_dir == crate::paths::config_dir() {
        let app = adw::Application::builder().application_id(APP_ID).build();
        setup_application(&app);
        app
    } else {
        application(APP_ID)
    }
}

/// Names the program after its application ID, so that the X11 window class matches the
/// desktop entry (`StartupWMClass`) as the Wayland app ID does.
fn set_program_name(id: &str) {
    glib::set_prgname(Some(id));
}

/// Initialises libadwaita and the translations (idempotent; GTK must be initialised, on
/// the main thread). The windows' `class_init` calls it, so a window works whether its
/// application is an `adw::Application` or, as in tests, a plain `gtk::Application`.
pub fn init_adw() {
    i18n::init();
    if let Err(e) = adw::init() {
        tracing::warn!("libadwaita: {e}");
    }
}

/// Loads `ui/style.css` for the default display (call after GTK is initialised).
pub fn load_css() {
    let Some(display) = gdk::Display::default() else {
        return;
    };
    let provider = gtk::CssProvider::new();
    provider.load_from_data(STYLE_CSS);
    gtk::style_context_add_provider_for_display(
        &display,
        &provider,
        gtk::STYLE_PROVIDER_PRIORITY_APPLICATION,
    );
}

fn run(app: &adw::Application) -> ExitCode {
    // clap has parsed the command line already; GTK gets none of it.
    let code = app.run_with_args::<&str>(&[]);
    ExitCode::from(code.get())
}

/// The server window (`livewire server`); the server starts right away.
pub fn run_server(opts: ServerOptions) -> ExitCode {
    // Several servers (ports, data dirs) may run on one desktop: never unique.
    set_program_name(SERVER_APP_ID);
    let app = application(SERVER_APP_ID);
    app.connect_activate(move |app| {
        load_css();
        let win = LwServerWindow::new(app, opts.clone());
        win.present();
        win.start();
    });
    run(&app)
}

/// The client window (`livewire client`).
pub fn run_client(config_dir: PathBuf) -> ExitCode {
    set_program_name(APP_ID);
    let app = client_application(&config_dir);
    app.connect_activate(move |app| {
        load_css();
        LwClientWindow::new(app, config_dir.clone()).present();
    });
    run(&app)
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    if getrandom::fill(&mut b).is_err() {
        // Never a fixed secret: fall back to the clock and the process id.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(std::process::id());
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8;
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A fresh private directory under the system temp dir.
fn temp_dir(prefix: &str) -> std::io::Result<PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), random_hex(4)));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The demo users' passwords: random per run, or (with a kept data dir) random once and
/// stored beside the demo database, readable by the owner only.
fn demo_logins(data_dir: &Path, keep: bool) -> Vec<(String, String)> {
    let users = ["alice", "bob"];
    let file = data_dir.join("demo-logins.json");
    if keep
        && let Ok(bytes) = std::fs::read(&file)
        && let Ok(saved) = serde_json::from_slice::<Vec<(String, String)>>(&bytes)
        && saved.len() == users.len()
    {
        return saved;
    }
    let logins: Vec<(String, String)> = users
        .iter()
        .map(|u| ((*u).to_owned(), random_hex(12)))
        .collect();
    if keep
        && let Ok(bytes) = serde_json::to_vec(&logins)
        && let Err(e) = crate::transport::tls::write_private(&file, &bytes)
    {
        tracing::warn!("cannot keep the demo logins: {e}");
    }
    logins
}

/// `livewire demo`: a server window and two client windows (alice and bob), logged in.
pub fn run_demo(data_dir: Option<PathBuf>) -> ExitCode {
    let (data, keep) = match data_dir {
        Some(d) => (d, true),
        None => match temp_dir("livewire-demo") {
            Ok(d) => (d, false),
            Err(e) => {
                eprintln!("livewire: cannot create a temporary directory: {e}");
                return ExitCode::from(1);
            }
        },
    };
    if let Err(e) = std::fs::create_dir_all(&data) {
        eprintln!("livewire: cannot create {}: {e}", data.display());
        return ExitCode::from(1);
    }
    // The clients' pins, sync state and identity keys: kept beside a kept data dir (so
    // private history stays readable next time), else temporary.
    let config = if keep {
        data.join("clients")
    } else {
        match temp_dir("livewire-demo-config") {
            Ok(d) => d,
            Err(e) => {
                eprintln!("livewire: cannot create a temporary directory: {e}");
                return ExitCode::from(1);
            }
        }
    };
    let logins = demo_logins(&data, keep);
    let app = application(DEMO_APP_ID);
    let opts = ServerOptions {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        data_dir: data.clone(),
        cert: None,
        limits: Limits::default(),
        timers: crate::transport::quic::Timers::SERVER,
        node_id: 0,
        nats: None,
    };
    {
        let config = config.clone();
        app.connect_activate(move |app| {
            load_css();
            let server = LwServerWindow::new(app, opts.clone());
            server.present();
            let launched = Rc::new(Cell::new(false));
            let logins = logins.clone();
            let config = config.clone();
            let app = app.clone();
            server.connect_started(move |_, addr, fp| {
                if launched.replace(true) {
                    return;
                }
                for (user, password) in &logins {
                    let win = LwClientWindow::new(&app, config.join(user));
                    win.present();
                    win.connect_to(
                        "127.0.0.1",
                        addr.port(),
                        user,
                        password,
                        Trust::Fingerprint(fp.to_owned()),
                    );
                }
            });
            server.start();
        });
    }
    let code = run(&app);
    if !keep {
        let _ = std::fs::remove_dir_all(&config);
        let _ = std::fs::remove_dir_all(&data);
    }
    glib::MainContext::default().iteration(false);
    code
}
