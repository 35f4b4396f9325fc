//! The cluster's one server identity, kept in PostgreSQL: the first node to start stores
//! its certificate and key, every node (that one included) presents the stored pair. One
//! trust-on-first-use pin then covers every node, and everything derived from the key
//! (the stateless-reset and connection-ID keys) is the same on all of them.

use super::{Fail, PgStore};
use crate::app::store::{StoreError, StoreResult};

impl PgStore {
    /// Offers this node's certificate and key (PEM) as the cluster's and returns the pair
    /// every node must present: the first one ever offered.
    pub fn cluster_identity(
        &mut self,
        cert_pem: &str,
        key_pem: &str,
    ) -> StoreResult<(String, String)> {
        self.run(|c| {
            c.query(
                "INSERT INTO server_identity (id, cert_pem, key_pem) VALUES (1, $1, $2)
                 ON CONFLICT (id) DO NOTHING",
                &[&cert_pem, &key_pem],
            )?;
            let rows = c.query(
                "SELECT cert_pem, key_pem FROM server_identity WHERE id = 1",
                &[],
            )?;
            match rows.first() {
                Some(row) => Ok((row.get(0), row.get(1))),
                None => Err(Fail::Store(StoreError::other(
                    "the cluster identity vanished from server_identity",
                ))),
            }
        })
    }
}
