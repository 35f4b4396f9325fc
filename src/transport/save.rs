//! Small files the client keeps between runs (sync positions, uploads not yet posted),
//! written atomically and off the async worker threads.

use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temporary file beside it (`path` with the
/// extension `tmp_ext`), flushed to disk, then renamed over `path`, so a crash leaves the
/// old file or the new one, never half of one. Runs on the blocking pool: a slow disk
/// never stalls a tokio worker.
pub async fn write_atomic(
    path: PathBuf,
    tmp_ext: &'static str,
    bytes: Vec<u8>,
) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || write_atomic_blocking(&path, tmp_ext, &bytes))
        .await
        .map_err(std::io::Error::other)?
}

fn write_atomic_blocking(path: &Path, tmp_ext: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(tmp_ext);
    // Private to the user: the state file holds the login resumption token. (A leftover
    // temporary file would keep its old mode, so it goes first.)
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Reads a whole file on the blocking pool (`None` if it is missing or unreadable).
pub async fn read_file(path: &Path) -> Option<Vec<u8>> {
    tokio::fs::read(path).await.ok()
}
