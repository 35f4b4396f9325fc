//! Pipelined group commit for SQLite: the hub's `COMMIT` writes the batch to the WAL
//! without waiting for the disk (`synchronous = NORMAL`), and [`WalSync`], on the hub's
//! committer thread, makes it durable with one `fdatasync` of the WAL file.
//!
//! This is what `synchronous = FULL` does at each commit in WAL mode (append the frames,
//! then sync the WAL; Linux file systems are power-safe-overwrite, so SQLite pads nothing),
//! split in two so the hub handles the next batch while the disk works. One sync covers
//! every commit that returned before it began: `fsync` is per file, not per descriptor,
//! and SQLite's own checkpoints still sync the WAL before copying it into the main file and
//! sync the main file after (a checkpointed batch is durable before the WAL restarts over
//! its frames). A power loss before a sync loses only batches nobody was told about: the
//! WAL's checksums make SQLite drop a torn tail, as with `NORMAL`.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::app::store::{Durability, StoreError, StoreResult};

/// Syncs the WAL file (and its directory once, so a WAL created since is reachable).
pub(super) struct WalSync {
    /// `<database>-wal`.
    wal: PathBuf,
    /// The database file, synced instead when there is no WAL file.
    db: PathBuf,
    /// The WAL file as opened, with its device and inode: reopened if the path now names
    /// another file.
    file: Option<(File, (u64, u64))>,
    /// The directory entry of the WAL file opened last is durable.
    dir_synced: bool,
}

impl WalSync {
    /// For the database at `db`.
    pub(super) fn new(db: PathBuf) -> Self {
        let mut wal = db.clone().into_os_string();
        wal.push("-wal");
        Self {
            wal: wal.into(),
            db,
            file: None,
            dir_synced: false,
        }
    }

    fn io(what: &str, path: &std::path::Path, e: std::io::Error) -> StoreError {
        StoreError::other(format!("{what} {}: {e}", path.display()))
    }
}

impl Durability for WalSync {
    fn sync(&mut self) -> StoreResult<()> {
        let now = match std::fs::metadata(&self.wal) {
            Ok(m) => Some((m.dev(), m.ino())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Self::io("stat", &self.wal, e)),
        };
        let Some(id) = now else {
            // No WAL (SQLite folded it into the main file and removed it): what was
            // committed is in the main file, which SQLite synced as it checkpointed.
            self.file = None;
            return File::open(&self.db)
                .and_then(|f| f.sync_data())
                .map_err(|e| Self::io("sync", &self.db, e));
        };
        if self.file.as_ref().is_none_or(|(_, seen)| *seen != id) {
            let f = File::open(&self.wal).map_err(|e| Self::io("open", &self.wal, e))?;
            self.file = Some((f, id));
            self.dir_synced = false;
        }
        let (f, _) = self.file.as_ref().expect("opened above");
        f.sync_data().map_err(|e| Self::io("sync", &self.wal, e))?;
        if !self.dir_synced {
            if let Some(dir) = self.wal.parent() {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| Self::io("sync", dir, e))?;
            }
            self.dir_synced = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_the_wal_and_follows_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        std::fs::write(&db, b"db").unwrap();
        let mut s = WalSync::new(db.clone());
        // No WAL yet: the main file is synced.
        s.sync().unwrap();
        assert!(s.file.is_none());
        std::fs::write(dir.path().join("x.db-wal"), b"one").unwrap();
        s.sync().unwrap();
        let first = s.file.as_ref().unwrap().1;
        // Replaced while the old one is still open (so its inode cannot be reused).
        std::fs::write(dir.path().join("x.db-wal.tmp"), b"two").unwrap();
        std::fs::rename(dir.path().join("x.db-wal.tmp"), dir.path().join("x.db-wal")).unwrap();
        s.sync().unwrap();
        assert_ne!(s.file.as_ref().unwrap().1, first, "reopened the new file");
        drop(dir);
        assert!(s.sync().is_err(), "a database that is gone is an error");
    }
}
