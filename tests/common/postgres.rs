//! A throw-away PostgreSQL for tests: `initdb` in a temporary directory, `pg_ctl start` on a
//! free loopback port, `pg_ctl stop` when the last user lets go.
//!
//! Debian's `postgresql` package puts the programs in `/usr/lib/postgresql/VERSION/bin`
//! (not on `PATH`), and `initdb` refuses to run as root: as root, the directory is handed
//! to the `postgres` user and the programs run as that user through `su`. One server is
//! shared by the tests of a process that run at the same time (each gets a database of its
//! own from [`fresh_database`]); it stops when the last of them drops its [`PgDatabase`].
//! Without PostgreSQL, [`fresh_database`] prints a `SKIPPED: …` line and gives `None`.
//! Included by path (`#[path = "common/postgres.rs"]`) by the tests that need it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// A running PostgreSQL server, stopped on drop.
pub struct PgServer {
    bin: PathBuf,
    /// The temporary directory: `data/` (the cluster), `log`, and the Unix socket.
    dir: tempfile::TempDir,
    /// Run the programs as `postgres` (we are root).
    as_postgres: bool,
    port: u16,
}

/// A database of its own on a shared [`PgServer`], for one test.
pub struct PgDatabase {
    server: Arc<PgServer>,
    name: String,
}

impl PgDatabase {
    /// Its connection string.
    pub fn url(&self) -> String {
        self.server.url(&self.name)
    }
}

/// The directory of `initdb` and `pg_ctl`: `LIVEWIRE_PG_BIN` if set (a directory without
/// them counts as "not installed", which also shows the SKIPPED path), else the newest
/// `/usr/lib/postgresql/*/bin`, else `PATH`.
fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LIVEWIRE_PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").exists().then_some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `(uid, gid)` of the `postgres` user.
fn postgres_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| "no `postgres` user to run PostgreSQL as (we are root)".to_string())
    };
    Ok((id("-u")?, id("-g")?))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Quotes for `sh -c` (the paths are ours; this only guards against surprises).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl PgServer {
    /// Initialises and starts a server; `Ok(None)` if PostgreSQL is not installed.
    pub fn start() -> Result<Option<Self>, String> {
        let Some(bin) = find_bin() else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("livewire-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let as_postgres = is_root();
        if as_postgres {
            let (uid, gid) = postgres_ids()?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        }
        let server = Self {
            bin,
            dir,
            as_postgres,
            port: free_port(),
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            server.port,
            server.dir.path().display()
        );
        let log = server.dir.path().join("log");
        server.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-o",
                &options,
                "-w",
                "start",
            ],
        )?;
        Ok(Some(server))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of PostgreSQL's programs (as `postgres` when we are root).
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(program);
        let out = if self.as_postgres {
            let line = std::iter::once(path_str(&exe))
                .chain(args.iter().copied())
                .map(sh_quote)
                .collect::<Vec<_>>()
                .join(" ");
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &line])
                .output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            Err(format!(
                "{program} failed ({}): {}{}\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Stops the server (`-m fast`: sessions are cut) and keeps its data, for
    /// [`PgServer::restart`]. For tests that take PostgreSQL away from a running server.
    #[allow(dead_code)] // only tests/cluster.rs takes PostgreSQL away
    pub fn stop(&self) -> Result<(), String> {
        let data = self.data();
        self.run(
            "pg_ctl",
            &["-D", path_str(&data), "-m", "fast", "-w", "stop"],
        )
    }

    /// Starts a server stopped by [`PgServer::stop`] again, on the same port.
    #[allow(dead_code)]
    pub fn restart(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            self.port,
            self.dir.path().display()
        );
        let (data, log) = (self.data(), self.dir.path().join("log"));
        let args = [
            "-D",
            path_str(&data),
            "-l",
            path_str(&log),
            "-o",
            &options,
            "-w",
            "start",
        ];
        self.run("pg_ctl", &args)
    }

    /// The connection string of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database and returns its name.
    pub fn create_database(&self) -> Result<String, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .map_err(|e| e.to_string())?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| e.to_string())?;
        Ok(name)
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // `immediate`: the data is thrown away anyway.
        if let Err(e) = self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&self.data()),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        ) {
            eprintln!("stopping the test PostgreSQL: {e}");
        }
    }
}

/// The server the tests running now share; started by the first, stopped after the last.
static SHARED: Mutex<Weak<PgServer>> = Mutex::new(Weak::new());

/// An empty database on the shared test server, or `None` (after printing `SKIPPED: …`)
/// when PostgreSQL is not installed. Panics if it is installed but does not start.
pub fn fresh_database(test: &str) -> Option<PgDatabase> {
    let server = {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        match shared.upgrade() {
            Some(s) => s,
            None => match PgServer::start() {
                Ok(Some(s)) => {
                    let s = Arc::new(s);
                    *shared = Arc::downgrade(&s);
                    s
                }
                Ok(None) => {
                    println!(
                        "SKIPPED: {test}: PostgreSQL is not installed (apt-get install postgresql, or set LIVEWIRE_PG_BIN)"
                    );
                    return None;
                }
                Err(e) => panic!("could not start PostgreSQL: {e}"),
            },
        }
    };
    let name = server
        .create_database()
        .unwrap_or_else(|e| panic!("could not create a test database: {e}"));
    Some(PgDatabase { server, name })
}
