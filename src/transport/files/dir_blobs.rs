//! Stored files in a directory: the single node's [`FileBlobs`], under `<data dir>/files`.
//!
//! Layout: `<dir>/u-<uploader key>/<stored name>`, and `<stored name>.part` while an upload
//! comes in, so one user's files are one directory and the name still says nothing about
//! the conversation. Files stored before this layout (`<dir>/<stored name>`) are still
//! read and erased, and belong to nobody's quota.

use std::fs;
use std::io::{IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::app::blobs::{FileBlobs, Holding};
use crate::app::store::{StoreError, StoreResult};

/// Stored files under one directory.
#[derive(Debug, Clone)]
pub struct DirBlobs {
    dir: PathBuf,
}

/// A file-system error as a store error: a full disk is [`StoreError::full`] (so the
/// client hears `server_full`), anything else names the path.
fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| {
        let text = format!("{}: {e}", path.display());
        if e.kind() == std::io::ErrorKind::StorageFull {
            StoreError::full(text)
        } else {
            StoreError::other(text)
        }
    }
}

impl DirBlobs {
    /// Files under `dir` (created on the first upload).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// One user's directory. The `u-` prefix keeps any user key (even an old account
    /// named `..`) a plain directory name.
    pub fn user_dir(&self, uploader: &str) -> PathBuf {
        self.dir
            .join(format!("u-{}", uploader.to_ascii_lowercase()))
    }

    fn path(&self, uploader: &str, name: &str) -> PathBuf {
        self.user_dir(uploader).join(name)
    }

    fn part(&self, uploader: &str, name: &str) -> PathBuf {
        self.path(uploader, name).with_extension("part")
    }

    /// Where a file stored before per-user directories would be.
    fn legacy(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The complete file, in the per-user layout or the old flat one.
    fn open_complete(&self, uploader: &str, name: &str) -> std::io::Result<fs::File> {
        fs::File::open(self.path(uploader, name)).or_else(|_| fs::File::open(self.legacy(name)))
    }
}

impl FileBlobs for DirBlobs {
    fn complete_len(&self, uploader: &str, name: &str) -> StoreResult<Option<u64>> {
        for path in [self.path(uploader, name), self.legacy(name)] {
            match fs::metadata(&path) {
                Ok(m) => return Ok(Some(m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(None)
    }

    fn open_part(&self, uploader: &str, name: &str) -> StoreResult<u64> {
        let dir = self.user_dir(uploader);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let part = self.part(uploader, name);
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&part)
            .map_err(io_err(&part))?;
        Ok(f.metadata().map_err(io_err(&part))?.len())
    }

    fn truncate_part(&self, uploader: &str, name: &str, len: u64) -> StoreResult<()> {
        let part = self.part(uploader, name);
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&part)
            .map_err(io_err(&part))?;
        f.set_len(len).map_err(io_err(&part))
    }

    fn write_part(&self, uploader: &str, name: &str, at: u64, bytes: &[u8]) -> StoreResult<()> {
        self.write_parts(uploader, name, at, &[bytes])
    }

    fn write_parts(&self, uploader: &str, name: &str, at: u64, parts: &[&[u8]]) -> StoreResult<()> {
        let part = self.part(uploader, name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&part)
            .map_err(io_err(&part))?;
        f.seek(SeekFrom::Start(at)).map_err(io_err(&part))?;
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut left = &mut slices[..];
        IoSlice::advance_slices(&mut left, 0);
        while !left.is_empty() {
            match f.write_vectored(left) {
                Ok(0) => {
                    let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                    return Err(io_err(&part)(e));
                }
                Ok(n) => IoSlice::advance_slices(&mut left, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(&part)(e)),
            }
        }
        Ok(())
    }

    fn sync_part(&self, uploader: &str, name: &str) -> StoreResult<()> {
        let part = self.part(uploader, name);
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&part)
            .map_err(io_err(&part))?;
        f.sync_data().map_err(io_err(&part))
    }

    fn finish_part(&self, uploader: &str, name: &str, len: u64) -> StoreResult<()> {
        let part = self.part(uploader, name);
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&part)
            .map_err(io_err(&part))?;
        let held = f.metadata().map_err(io_err(&part))?.len();
        if held != len {
            return Err(StoreError::other(format!(
                "{}: holds {held} bytes, expected {len}",
                part.display()
            )));
        }
        f.sync_all().map_err(io_err(&part))?;
        let path = self.path(uploader, name);
        fs::rename(&part, &path).map_err(io_err(&path))
    }

    fn read(&self, uploader: &str, name: &str, at: u64, len: usize) -> StoreResult<Vec<u8>> {
        let path = self.path(uploader, name);
        let mut f = self.open_complete(uploader, name).map_err(io_err(&path))?;
        f.seek(SeekFrom::Start(at)).map_err(io_err(&path))?;
        let mut buf = vec![0u8; len];
        f.read_exact(&mut buf).map_err(io_err(&path))?;
        Ok(buf)
    }

    fn erase(&self, uploader: &str, name: &str) -> StoreResult<bool> {
        let mut removed = false;
        for path in [self.path(uploader, name), self.legacy(name)] {
            removed |= fs::remove_file(&path).is_ok();
            removed |= fs::remove_file(path.with_extension("part")).is_ok();
        }
        Ok(removed)
    }

    fn discard_part(&self, uploader: &str, name: &str) -> StoreResult<()> {
        let part = self.part(uploader, name);
        match fs::remove_file(&part) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&part)(e)),
            _ => Ok(()),
        }
    }

    fn holdings(&self, uploader: &str) -> StoreResult<Vec<Holding>> {
        let dir = self.user_dir(uploader);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let bytes = entry.metadata().map_err(io_err(&path))?.len();
            let partial = path.extension().is_some_and(|e| e == "part");
            let name = if partial {
                path.file_stem()
            } else {
                path.file_name()
            };
            out.push(Holding {
                name: name.unwrap_or_default().to_string_lossy().into_owned(),
                partial,
                bytes,
            });
        }
        Ok(out)
    }

    fn sweep_parts(&self, max_age: Duration, busy: &dyn Fn(&str, &str) -> bool) -> usize {
        let mut dirs = vec![(self.dir.clone(), None)];
        let mut removed = 0;
        while let Some((dir, uploader)) = dirs.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if let (None, Some(user)) = (&uploader, name.strip_prefix("u-")) {
                        dirs.push((path, Some(user.to_owned())));
                    }
                    continue;
                }
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age >= max_age);
                let is_part = path.extension().is_some_and(|e| e == "part");
                let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                let running = uploader.as_deref().is_some_and(|u| busy(u, &stem));
                if is_part && old && !running && fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn touch(path: &Path, age: Duration) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = fs::File::create(path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn the_sweep_removes_only_abandoned_partial_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = DirBlobs::new(dir.path().to_owned());
        let day = Duration::from_secs(24 * 3600);
        let user = blobs.user_dir("alice");
        let old_part = user.join("a.part");
        let fresh_part = user.join("b.part");
        let running = user.join("c.part");
        let old_complete = user.join("d");
        let legacy_part = dir.path().join("e.part");
        touch(&old_part, day * 2);
        touch(&fresh_part, Duration::from_secs(60));
        touch(&running, day * 3);
        touch(&old_complete, day * 30);
        touch(&legacy_part, day * 2);
        let busy = |u: &str, n: &str| u == "alice" && n == "c";
        assert_eq!(blobs.sweep_parts(day, &busy), 2);
        assert!(!old_part.exists() && !legacy_part.exists());
        assert!(fresh_part.exists() && running.exists() && old_complete.exists());
    }

    #[test]
    fn a_part_becomes_the_file_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = DirBlobs::new(dir.path().to_owned());
        assert_eq!(blobs.complete_len("Alice", "f").unwrap(), None);
        assert_eq!(blobs.open_part("Alice", "f").unwrap(), 0);
        blobs.write_part("alice", "f", 0, b"hello ").unwrap();
        blobs.write_part("alice", "f", 6, b"world").unwrap();
        assert_eq!(blobs.open_part("alice", "f").unwrap(), 11);
        blobs.truncate_part("alice", "f", 6).unwrap();
        blobs
            .write_parts("alice", "f", 6, &[b"th", b"", b"ere"])
            .unwrap();
        assert!(blobs.finish_part("alice", "f", 99).is_err(), "wrong length");
        blobs.finish_part("alice", "f", 11).unwrap();
        assert_eq!(blobs.complete_len("alice", "f").unwrap(), Some(11));
        assert_eq!(blobs.read("alice", "f", 6, 5).unwrap(), b"there");
        let held = blobs.holdings("alice").unwrap();
        assert_eq!(
            held,
            vec![Holding {
                name: "f".into(),
                partial: false,
                bytes: 11
            }]
        );
        assert!(blobs.erase("alice", "f").unwrap());
        assert!(!blobs.erase("alice", "f").unwrap());
        // The old flat layout is still read.
        fs::write(dir.path().join("old"), b"legacy").unwrap();
        assert_eq!(blobs.complete_len("bob", "old").unwrap(), Some(6));
        assert_eq!(blobs.read("bob", "old", 0, 6).unwrap(), b"legacy");
    }
}
