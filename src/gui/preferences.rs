//! What the user chose in Preferences, and the conversations they muted, kept in
//! `gui-settings.json` in the config dir (beside `client-window.json`).
//!
//! A plain JSON file rather than GSettings: a GSettings schema must be compiled and
//! installed before the program starts, which `cargo run` and the tests do not do, and a
//! custom `--config-dir` must stay a self-contained profile.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Light or dark style.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// Follow the desktop's preference (the default).
    #[default]
    System,
    /// Always light.
    Light,
    /// Always dark.
    Dark,
}

impl Style {
    /// All styles, in the order Preferences lists them.
    pub const ALL: [Style; 3] = [Style::System, Style::Light, Style::Dark];

    /// The libadwaita color scheme for this style.
    pub fn color_scheme(self) -> adw::ColorScheme {
        match self {
            // `Default` follows the system and is light when it has no preference.
            Style::System => adw::ColorScheme::Default,
            Style::Light => adw::ColorScheme::ForceLight,
            Style::Dark => adw::ColorScheme::ForceDark,
        }
    }

    /// Applies the style to the whole application.
    pub fn apply(self) {
        adw::StyleManager::default().set_color_scheme(self.color_scheme());
    }
}

/// Whether the application is dark right now (forced, or following a dark system).
pub fn is_dark() -> bool {
    adw::StyleManager::default().is_dark()
}

/// The GUI settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Preferences {
    /// Light, dark or the system's.
    pub style: Style,
    /// Desktop notifications at all.
    pub notifications: bool,
    /// Notify for every message in a room, not only for mentions (private messages and
    /// mentions always notify while notifications are on).
    pub notify_all_room_messages: bool,
    /// Muted conversations, as [`mute_key`]s: `user@host:port conversation`.
    pub muted: BTreeSet<String>,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            style: Style::System,
            notifications: true,
            notify_all_room_messages: false,
            muted: BTreeSet::new(),
        }
    }
}

/// The key of a muted conversation: per account (user on a server) and conversation, so
/// muting `#general` on one server leaves it loud on another.
pub fn mute_key(user: &str, server: &str, conv: &str) -> String {
    format!(
        "{}@{} {}",
        user.to_lowercase(),
        server.to_lowercase(),
        conv.to_lowercase()
    )
}

fn path(config_dir: &Path) -> PathBuf {
    config_dir.join("gui-settings.json")
}

impl Preferences {
    /// Reads the settings (absent or unreadable: the defaults, and a warning for the
    /// latter: a broken file must not silently unmute everything without a trace).
    pub fn load(config_dir: &Path) -> Self {
        match std::fs::read(path(config_dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("ignoring unreadable GUI settings: {e}");
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    /// Saves the settings (written to a temporary file, then renamed); failures are logged.
    pub fn save(&self, config_dir: &Path) {
        if let Err(e) = super::settings::save_json(&path(config_dir), self) {
            tracing::warn!("cannot save the GUI settings: {e}");
        }
    }

    /// Whether the conversation under `key` ([`mute_key`]) is muted.
    pub fn is_muted(&self, key: &str) -> bool {
        self.muted.contains(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Preferences::load(dir.path()), Preferences::default());
        assert_eq!(Preferences::default().style, Style::System);
        let mut p = Preferences {
            style: Style::Dark,
            ..Preferences::default()
        };
        p.muted
            .insert(mute_key("Alice", "Example.org:7447", "#General"));
        p.save(dir.path());
        let back = Preferences::load(dir.path());
        assert_eq!(back, p);
        assert!(back.is_muted("alice@example.org:7447 #general"));
        assert!(!back.is_muted("alice@other.org:7447 #general"));
    }

    #[test]
    fn a_broken_file_gives_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), b"{not json").unwrap();
        assert_eq!(Preferences::load(dir.path()), Preferences::default());
    }
}
