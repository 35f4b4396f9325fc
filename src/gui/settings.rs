//! What the client window remembers between runs: server, port and username. Never the
//! password.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The remembered login form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RememberedLogin {
    /// Server host name or address.
    pub host: String,
    /// UDP port.
    pub port: u16,
    /// Username.
    pub user: String,
}

fn path(config_dir: &Path) -> PathBuf {
    config_dir.join("client-window.json")
}

impl RememberedLogin {
    /// Reads the remembered form (absent or unreadable: nothing remembered).
    pub fn load(config_dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(path(config_dir)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Saves the form; failures are only logged (remembering is a convenience).
    pub fn save(&self, config_dir: &Path) {
        if let Err(e) = save_json(&path(config_dir), self) {
            tracing::warn!("cannot remember the login form: {e}");
        }
    }
}

/// Writes `value` as JSON to `path` whole or not at all (a temporary file, then renamed),
/// creating its directory.
pub(crate) fn save_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_without_password() {
        let dir = std::env::temp_dir().join(format!("lw-settings-{}", std::process::id()));
        let r = RememberedLogin {
            host: "example.org".into(),
            port: 7447,
            user: "alice".into(),
        };
        r.save(&dir);
        assert_eq!(RememberedLogin::load(&dir), Some(r));
        let text = std::fs::read_to_string(path(&dir)).unwrap();
        assert!(!text.contains("password"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
