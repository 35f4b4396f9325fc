//! Where LiveWire keeps its files by default: the XDG directories, the client's pin file
//! and per-server state files.
//!
//! Both the command line and the GUI use these, so neither has to import the other.

use std::path::{Path, PathBuf};

use crate::transport::tls::PinStore;

fn dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("org", "LiveWire", "livewire")
}

/// The XDG data dir (`~/.local/share/livewire`).
pub fn data_dir() -> PathBuf {
    dirs().map_or_else(|| PathBuf::from(".livewire"), |d| d.data_dir().to_owned())
}

/// The XDG config dir (`~/.config/livewire`).
pub fn config_dir() -> PathBuf {
    dirs().map_or_else(|| PathBuf::from(".livewire"), |d| d.config_dir().to_owned())
}

/// The default state dir of a client (`~/.local/share/livewire/client`): sync positions,
/// pinned peer keys and the identity key.
pub fn client_state_dir() -> PathBuf {
    data_dir().join("client")
}

/// The default data dir of a server (`~/.local/share/livewire/server`).
pub fn server_data_dir() -> PathBuf {
    data_dir().join("server")
}

/// The pin file in a config dir.
pub fn pin_store(config_dir: &Path) -> PinStore {
    PinStore::new(config_dir.join("known_servers"))
}

/// Where a client remembers its position for one server and user. For a list of servers
/// (`a:7447, b:7447`, one cluster) it is the first one's, so the list can grow without
/// the client starting over.
pub fn state_file(state_dir: &Path, server: &str, user: &str) -> PathBuf {
    let server = server.split(',').next().unwrap_or(server).trim();
    let safe = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    state_dir
        .join(safe(server))
        .join(format!("{}.json", safe(&user.to_ascii_lowercase())))
}
