//! Starting a cluster node (feature `cluster`, docs/SCALING.md part 2): what a node does
//! beyond a single server before it listens. Today that is the one identity: every node
//! presents the certificate stored in the cluster's PostgreSQL, so one trust-on-first-use
//! pin covers the cluster.

use std::path::Path;

use crate::store::PgStore;
use crate::transport::server::ServerOptions;
use crate::transport::tls::{Identity, write_private};

/// Makes `opts` present the cluster's certificate. The first node ever started offers its
/// own (operator PEM files, or the one in its data dir, created if missing) and the
/// database keeps it; every node then writes the stored pair to
/// `cluster-cert.pem` / `cluster-key.pem` in its data dir (the key mode 0600) and presents
/// that. Operator files that differ from the stored pair are refused: the cluster would
/// show clients two certificates.
pub fn use_shared_identity(store: &mut PgStore, opts: &mut ServerOptions) -> Result<(), String> {
    let (cert_path, key_path) = match &opts.cert {
        Some((c, k)) => (c.clone(), k.clone()),
        None => {
            Identity::load_or_create(&opts.data_dir).map_err(|e| e.to_string())?;
            (
                opts.data_dir.join("cert.pem"),
                opts.data_dir.join("key.pem"),
            )
        }
    };
    let (cert, key) = (read(&cert_path)?, read(&key_path)?);
    let (shared_cert, shared_key) = store
        .cluster_identity(&cert, &key)
        .map_err(|e| format!("PostgreSQL: the cluster identity: {e}"))?;
    if shared_cert == cert && shared_key == key {
        return Ok(());
    }
    if opts.cert.is_some() {
        return Err(format!(
            "{} is not the certificate this cluster presents (the first node stored another \
             one in the database): give every node the same --cert and --key",
            cert_path.display()
        ));
    }
    let cert_path = opts.data_dir.join("cluster-cert.pem");
    let key_path = opts.data_dir.join("cluster-key.pem");
    write_private(&key_path, shared_key.as_bytes()).map_err(|e| e.to_string())?;
    std::fs::write(&cert_path, shared_cert.as_bytes())
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    opts.cert = Some((cert_path, key_path));
    Ok(())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}
