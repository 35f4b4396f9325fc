//! Stored files in PostgreSQL, for cluster mode: every node serves every file, and an
//! upload cut by a node's death resumes on another (docs/SCALING.md, "Files on shared
//! storage").
//!
//! A file is a row of `file_blobs` (complete or not, its length once complete, when it was
//! last written) and its bytes are rows of `file_chunks`, one per stored chunk keyed by its
//! byte offset. One row per chunk keeps rows small, makes a resend of a chunk idempotent
//! (`ON CONFLICT … DO UPDATE`), and makes finishing a check of the total in the same
//! statement that flips `complete`. Deleting the file row deletes its chunks (`ON DELETE
//! CASCADE`). Large objects were set aside: their data outlives the row that names them
//! unless `lo_unlink`ed, and they need a transaction around every call.
//!
//! [`PgBlobs`] has its own connection (never the hub's: file streams run beside the hub),
//! used one call at a time, reopened when it was lost. The blocking client must not be
//! dropped on an async worker, so it is dropped on a thread of its own.

use std::sync::Mutex;
use std::time::Duration;

use ::postgres::{Client, Config, NoTls};

use super::err;
use crate::app::blobs::{FileBlobs, Holding};
use crate::app::store::{StoreError, StoreResult};

/// Stored files in a PostgreSQL database (whose schema `PgStore::connect` migrated).
pub struct PgBlobs {
    config: Config,
    client: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PgBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBlobs").finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl PgBlobs {
    /// Connects to `url` (as [`super::PgStore::connect`]); the tables come with the
    /// store's migrations, so connect the store first.
    pub fn connect(url: &str) -> StoreResult<Self> {
        let config: Config = url
            .parse()
            .map_err(|e| StoreError::other(format!("database address {url:?}: {e}")))?;
        let client = config.connect(NoTls).map_err(err)?;
        Ok(Self {
            config,
            client: Mutex::new(Some(client)),
        })
    }

    /// Runs `f` on the connection, reopening it first when it was lost.
    fn run<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, ::postgres::Error>,
    ) -> StoreResult<T> {
        let mut guard = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.config.connect(NoTls).map_err(err)?);
        }
        let client = guard.as_mut().expect("connected above");
        let result = f(client).map_err(err);
        if client.is_closed() {
            *guard = None;
        }
        result
    }
}

impl Drop for PgBlobs {
    fn drop(&mut self) {
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(client) = client {
            // Its runtime must not be dropped on an async worker.
            let _ = std::thread::spawn(move || drop(client));
        }
    }
}

impl FileBlobs for PgBlobs {
    fn complete_len(&self, uploader: &str, name: &str) -> StoreResult<Option<u64>> {
        self.run(|c| {
            let row = c.query_opt(
                "SELECT len FROM file_blobs WHERE uploader = $1 AND name = $2 AND complete",
                &[&uploader, &name],
            )?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    fn open_part(&self, uploader: &str, name: &str) -> StoreResult<u64> {
        self.run(|c| {
            c.execute(
                "INSERT INTO file_blobs (uploader, name, complete, len, updated_ms)
                 VALUES ($1, $2, FALSE, 0, $3)
                 ON CONFLICT (uploader, name) DO UPDATE SET updated_ms = EXCLUDED.updated_ms",
                &[&uploader, &name, &now_ms()],
            )?;
            // Chunks are written in order from a resume point at or below what is held,
            // so what is held has no holes: its end is the highest chunk's end.
            let row = c.query_one(
                "SELECT COALESCE(MAX(off + octet_length(data)), 0)::BIGINT FROM file_chunks
                 WHERE uploader = $1 AND name = $2",
                &[&uploader, &name],
            )?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn truncate_part(&self, uploader: &str, name: &str, len: u64) -> StoreResult<()> {
        // `len` is the end of a whole chunk, so no chunk straddles it.
        self.run(|c| {
            c.execute(
                "DELETE FROM file_chunks WHERE uploader = $1 AND name = $2 AND off >= $3",
                &[&uploader, &name, &(len as i64)],
            )?;
            Ok(())
        })
    }

    fn write_part(&self, uploader: &str, name: &str, at: u64, bytes: &[u8]) -> StoreResult<()> {
        self.run(|c| {
            c.execute(
                "WITH touched AS (
                    UPDATE file_blobs SET updated_ms = $5 WHERE uploader = $1 AND name = $2)
                 INSERT INTO file_chunks (uploader, name, off, data) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (uploader, name, off) DO UPDATE SET data = EXCLUDED.data",
                &[&uploader, &name, &(at as i64), &bytes, &now_ms()],
            )?;
            Ok(())
        })
    }

    fn sync_part(&self, _uploader: &str, _name: &str) -> StoreResult<()> {
        // Every write was its own committed transaction.
        Ok(())
    }

    fn finish_part(&self, uploader: &str, name: &str, len: u64) -> StoreResult<()> {
        let done = self.run(|c| {
            c.execute(
                "UPDATE file_blobs SET complete = TRUE, len = $3, updated_ms = $4
                 WHERE uploader = $1 AND name = $2
                   AND (SELECT COALESCE(SUM(octet_length(data)), 0) FROM file_chunks
                        WHERE uploader = $1 AND name = $2) = $3",
                &[&uploader, &name, &(len as i64), &now_ms()],
            )
        })?;
        if done == 1 {
            Ok(())
        } else {
            Err(StoreError::other(format!(
                "file {uploader}/{name}: the upload does not hold {len} bytes"
            )))
        }
    }

    fn read(&self, uploader: &str, name: &str, at: u64, len: usize) -> StoreResult<Vec<u8>> {
        let end = at + len as u64;
        let rows = self.run(|c| {
            c.query(
                "SELECT off, data FROM file_chunks
                 WHERE uploader = $1 AND name = $2 AND off < $4 AND off + octet_length(data) > $3
                 ORDER BY off",
                &[&uploader, &name, &(at as i64), &(end as i64)],
            )
        })?;
        let mut out = Vec::with_capacity(len);
        for row in rows {
            let off = row.get::<_, i64>(0) as u64;
            let data: &[u8] = row.get(1);
            let pos = at + out.len() as u64;
            if off > pos {
                break; // a hole: reported below
            }
            let from = (pos - off) as usize;
            let to = data.len().min((end - off) as usize);
            out.extend_from_slice(&data[from.min(to)..to]);
        }
        if out.len() != len {
            return Err(StoreError::other(format!(
                "file {uploader}/{name}: {} of {len} bytes at {at}",
                out.len()
            )));
        }
        Ok(out)
    }

    fn erase(&self, uploader: &str, name: &str) -> StoreResult<bool> {
        self.run(|c| {
            c.execute(
                "DELETE FROM file_blobs WHERE uploader = $1 AND name = $2",
                &[&uploader, &name],
            )
        })
        .map(|n| n > 0)
    }

    fn discard_part(&self, uploader: &str, name: &str) -> StoreResult<()> {
        self.run(|c| {
            c.execute(
                "DELETE FROM file_blobs WHERE uploader = $1 AND name = $2 AND NOT complete",
                &[&uploader, &name],
            )?;
            Ok(())
        })
    }

    fn holdings(&self, uploader: &str) -> StoreResult<Vec<Holding>> {
        let rows = self.run(|c| {
            c.query(
                "SELECT b.name, b.complete,
                        COALESCE(SUM(octet_length(ch.data)), 0)::BIGINT
                 FROM file_blobs b
                 LEFT JOIN file_chunks ch ON ch.uploader = b.uploader AND ch.name = b.name
                 WHERE b.uploader = $1
                 GROUP BY b.name, b.complete",
                &[&uploader],
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|r| Holding {
                name: r.get(0),
                partial: !r.get::<_, bool>(1),
                bytes: r.get::<_, i64>(2) as u64,
            })
            .collect())
    }

    fn sweep_parts(&self, max_age: Duration, busy: &dyn Fn(&str, &str) -> bool) -> usize {
        let cutoff = now_ms() - max_age.as_millis() as i64;
        let old = match self.run(|c| {
            c.query(
                "SELECT uploader, name FROM file_blobs WHERE NOT complete AND updated_ms < $1",
                &[&cutoff],
            )
        }) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!("file store: cannot sweep abandoned uploads: {e}");
                return 0;
            }
        };
        let mut removed = 0;
        for row in old {
            let (uploader, name): (String, String) = (row.get(0), row.get(1));
            if busy(&uploader, &name) {
                continue;
            }
            // Another node may have written to it since the look-up: check again.
            let gone = self.run(|c| {
                c.execute(
                    "DELETE FROM file_blobs
                     WHERE uploader = $1 AND name = $2 AND NOT complete AND updated_ms < $3",
                    &[&uploader, &name, &cutoff],
                )
            });
            removed += gone.unwrap_or(0) as usize;
        }
        removed
    }
}
