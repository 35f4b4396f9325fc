//! Where a device's MLS state lives: `<state file>.mls` beside the identity key (mode
//! 0600, written atomically after every change), loaded or made at start. A damaged file
//! is an error, never silently replaced: that would make this a new device.

use std::path::{Path, PathBuf};

use crate::app::mls::MlsClient;

/// The MLS state file of a client state file.
pub fn mls_path(state_file: &Path) -> PathBuf {
    state_file.with_extension("mls")
}

/// Loads the device's MLS state, or makes a new device (no state file: in memory only).
pub async fn load(
    state_file: Option<&Path>,
    user: &str,
    seed: [u8; 16],
) -> Result<MlsClient, String> {
    let Some(state) = state_file else {
        return MlsClient::new(user, seed).map_err(|e| e.to_string());
    };
    let path = mls_path(state);
    match tokio::fs::read(&path).await {
        Ok(bytes) => MlsClient::load(&bytes, seed).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let client = MlsClient::new(user, seed).map_err(|e| e.to_string())?;
            super::save::write_atomic(path.clone(), "mls-tmp", client.save())
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(client)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes the state if it changed.
pub async fn save(state_file: Option<&Path>, client: &mut MlsClient) {
    // No state file: nothing to write, and no snapshot to make (it is the whole state).
    let Some(state) = state_file else { return };
    let Some(bytes) = client.take_dirty() else {
        return;
    };
    let path = mls_path(state);
    if let Err(e) = super::save::write_atomic(path.clone(), "mls-tmp", bytes).await {
        tracing::warn!("cannot save the MLS state to {}: {e}", path.display());
    }
}
