//! What the client window remembers between runs: the logins it signed in with (server,
//! port and username, most recent first). Never a password.

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

/// How many logins `client-window.json` keeps.
pub const MAX_REMEMBERED: usize = 9;

/// `client-window.json`: the logins, most recent first.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Remembered {
    logins: Vec<RememberedLogin>,
}

impl RememberedLogin {
    /// The most recent remembered login (absent or unreadable: nothing remembered).
    pub fn load(config_dir: &Path) -> Option<Self> {
        Self::load_all(config_dir).into_iter().next()
    }

    /// Every remembered login, most recent first. A file of an older version, which held
    /// one login, reads as a list of one.
    pub fn load_all(config_dir: &Path) -> Vec<Self> {
        let Ok(bytes) = std::fs::read(path(config_dir)) else {
            return Vec::new();
        };
        if let Ok(r) = serde_json::from_slice::<Remembered>(&bytes) {
            return r.logins;
        }
        serde_json::from_slice::<Self>(&bytes)
            .map(|one| vec![one])
            .unwrap_or_default()
    }

    /// Whether this is the login of `user` on `host:port` (names compare as the server
    /// does, without case).
    pub fn same_account(&self, other: &Self) -> bool {
        self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
            && self.user.eq_ignore_ascii_case(&other.user)
    }

    /// Remembers this login first, before the others (at most [`MAX_REMEMBERED`]); failures
    /// are only logged (remembering is a convenience).
    pub fn save(&self, config_dir: &Path) {
        let mut logins = vec![self.clone()];
        logins.extend(
            Self::load_all(config_dir)
                .into_iter()
                .filter(|l| !l.same_account(self)),
        );
        logins.truncate(MAX_REMEMBERED);
        if let Err(e) = save_json(&path(config_dir), &Remembered { logins }) {
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

    #[test]
    fn several_logins_most_recent_first() {
        let dir = std::env::temp_dir().join(format!("lw-settings-many-{}", std::process::id()));
        let login = |host: &str, user: &str| RememberedLogin {
            host: host.into(),
            port: 7447,
            user: user.into(),
        };
        // An older version's file: one login.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            path(&dir),
            serde_json::to_vec(&login("a.example", "alice")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            RememberedLogin::load_all(&dir),
            [login("a.example", "alice")]
        );
        login("b.example", "bob").save(&dir);
        login("A.example", "Alice").save(&dir);
        let all = RememberedLogin::load_all(&dir);
        assert_eq!(all.len(), 2, "the same account is kept once: {all:?}");
        assert_eq!(all[0].host, "A.example");
        assert_eq!(all[1], login("b.example", "bob"));
        for i in 0..20 {
            login("c.example", &format!("u{i}")).save(&dir);
        }
        assert_eq!(RememberedLogin::load_all(&dir).len(), MAX_REMEMBERED);
        let _ = std::fs::remove_dir_all(dir);
    }
}
