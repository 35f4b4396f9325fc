//! Connection IDs that carry the node ID, so a QUIC-LB style load balancer in front of a
//! cluster can route a connection's packets to its node by connection ID alone, also
//! after the client's address changed (a NAT rebinding, a move to another network).
//!
//! Layout of the 12 bytes (after draft-ietf-quic-load-balancers, plaintext algorithm with
//! a one-octet server ID):
//!
//! ```text
//!  octet 0        octet 1    octets 2..8          octets 8..12
//! +-----+-------+----------+--------------------+-------------------------------+
//! | CR  | LEN   | node id  | nonce (random)     | tag = HMAC-SHA256(key, 0..8)  |
//! | 000 | 01011 |          | 6 bytes            | first 4 bytes                 |
//! +-----+-------+----------+--------------------+-------------------------------+
//! ```
//!
//! - **CR** (3 bits): config rotation 0. A load balancer treats `111` as "not routable";
//!   LiveWire never uses it.
//! - **LEN** (5 bits): the length self-description, the CID's length minus one (11).
//! - **node id**: the node's `--node-id` (0 on a single node), in plain text, as
//!   QUIC-LB's plaintext algorithm has it: a load balancer needs no key to route.
//! - **nonce**: fresh random bytes per CID, so two CIDs of one connection cannot be linked
//!   by an observer (beyond "same node", which the server address already tells).
//! - **tag**: keyed with a secret derived from the server's private key, which every
//!   node of a cluster shares with its certificate. [`NodeCidGenerator::validate`] checks
//!   it, so quinn answers a packet for a connection it does not know with a stateless
//!   reset only when the CID is really one of the cluster's: a restarted node (or,
//!   behind a load balancer, another node that receives a dead node's packets) resets
//!   the old connections at once and their clients reconnect, instead of waiting for
//!   the idle timeout. Random traffic is dropped silently, as with quinn's
//!   `HashedConnectionIdGenerator`, which this replaces.

use std::time::Duration;

use quinn_proto::{ConnectionId, ConnectionIdGenerator, InvalidCid};
use ring::hmac;

/// Length of a LiveWire server's connection IDs.
pub const CID_LEN: usize = 12;
/// Config rotation bits of the first octet (the top 3 bits).
pub const CONFIG_ROTATION: u8 = 0;
/// Bytes of random nonce.
const NONCE_LEN: usize = 6;
/// Bytes of tag.
const TAG_LEN: usize = 4;
/// Where the node ID sits.
const NODE_ID_OCTET: usize = 1;

/// The first octet: config rotation in the top 3 bits, the CID length minus one below.
pub const fn first_octet() -> u8 {
    (CONFIG_ROTATION << 5) | (CID_LEN as u8 - 1)
}

/// The node ID a LiveWire connection ID carries (what a load balancer reads), or `None`
/// when `cid` does not have LiveWire's layout. It does not check the tag: a load balancer
/// has no key.
pub fn node_id_of(cid: &[u8]) -> Option<u8> {
    (cid.len() == CID_LEN && cid[0] == first_octet()).then(|| cid[NODE_ID_OCTET])
}

/// Makes and recognises the connection IDs of one node; see the module docs for the layout.
pub struct NodeCidGenerator {
    node_id: u8,
    key: hmac::Key,
}

impl NodeCidGenerator {
    /// A generator for `node_id` whose tags are keyed with `secret` (the same on every
    /// node of a cluster and across restarts: derived from the server's private key).
    pub fn new(node_id: u8, secret: &[u8; 32]) -> Self {
        Self {
            node_id,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    fn tag(&self, head: &[u8]) -> [u8; TAG_LEN] {
        let full = hmac::sign(&self.key, head);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full.as_ref()[..TAG_LEN]);
        tag
    }

    /// The connection ID for this node with the given nonce (generation draws the nonce
    /// from the OS RNG; tests pass their own).
    pub fn cid_with_nonce(&self, nonce: [u8; NONCE_LEN]) -> [u8; CID_LEN] {
        let mut cid = [0u8; CID_LEN];
        cid[0] = first_octet();
        cid[NODE_ID_OCTET] = self.node_id;
        cid[2..2 + NONCE_LEN].copy_from_slice(&nonce);
        let tag = self.tag(&cid[..CID_LEN - TAG_LEN]);
        cid[CID_LEN - TAG_LEN..].copy_from_slice(&tag);
        cid
    }
}

impl ConnectionIdGenerator for NodeCidGenerator {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut nonce = [0u8; NONCE_LEN];
        // A CID must not be guessable; without the OS RNG there is nothing safe to use,
        // and a server that cannot draw randomness cannot run TLS either.
        getrandom::fill(&mut nonce).expect("the OS random number generator failed");
        ConnectionId::new(&self.cid_with_nonce(nonce))
    }

    /// Any node's CID of this cluster is valid (the tag covers the node ID, so a forged
    /// node ID fails): see the module docs for why another node's counts too.
    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        let bytes: &[u8] = cid;
        if node_id_of(bytes).is_none() {
            return Err(InvalidCid);
        }
        let (head, tag) = bytes.split_at(CID_LEN - TAG_LEN);
        let want = self.tag(head);
        // Not secret-dependent timing worth guarding: a wrong guess only gets a packet
        // dropped instead of reset.
        if tag == want { Ok(()) } else { Err(InvalidCid) }
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    #[test]
    fn the_layout_is_first_octet_node_id_nonce_tag() {
        let g = NodeCidGenerator::new(0x2a, &SECRET);
        let cid = g.cid_with_nonce([1, 2, 3, 4, 5, 6]);
        assert_eq!(cid.len(), 12);
        // Config rotation 0 in the top 3 bits, length minus one (11) below.
        assert_eq!(cid[0], 0b000_01011);
        assert_eq!(cid[1], 0x2a);
        assert_eq!(&cid[2..8], &[1, 2, 3, 4, 5, 6]);
        let full = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &SECRET), &cid[..8]);
        assert_eq!(&cid[8..], &full.as_ref()[..4]);
        assert_eq!(node_id_of(&cid), Some(0x2a));
    }

    #[test]
    fn generated_cids_carry_the_node_id_and_differ() {
        let mut g = NodeCidGenerator::new(3, &SECRET);
        assert_eq!(g.cid_len(), CID_LEN);
        let a = g.generate_cid();
        let b = g.generate_cid();
        assert_ne!(a, b, "fresh nonce per CID");
        assert_eq!(node_id_of(&a), Some(3));
        assert_eq!(node_id_of(&b), Some(3));
        assert!(g.validate(&a).is_ok());
    }

    #[test]
    fn a_restarted_node_and_the_other_nodes_recognise_the_cids() {
        let mut before = NodeCidGenerator::new(1, &SECRET);
        let cid = before.generate_cid();
        // Same secret (derived from the shared key): a restart, or another node.
        assert!(NodeCidGenerator::new(1, &SECRET).validate(&cid).is_ok());
        assert!(NodeCidGenerator::new(2, &SECRET).validate(&cid).is_ok());
        // Another cluster's key does not.
        assert!(NodeCidGenerator::new(1, &[8; 32]).validate(&cid).is_err());
    }

    #[test]
    fn forged_or_foreign_cids_are_invalid() {
        let g = NodeCidGenerator::new(1, &SECRET);
        let mut cid = g.cid_with_nonce([9; 6]);
        cid[1] = 2; // another node ID without the key
        assert!(g.validate(&ConnectionId::new(&cid)).is_err());
        let mut cid = g.cid_with_nonce([9; 6]);
        cid[11] ^= 1; // a damaged tag
        assert!(g.validate(&ConnectionId::new(&cid)).is_err());
        let mut cid = g.cid_with_nonce([9; 6]);
        cid[0] = 0b111_01011; // "unroutable" config rotation
        assert!(g.validate(&ConnectionId::new(&cid)).is_err());
        assert!(g.validate(&ConnectionId::new(&[0; 8])).is_err());
        assert_eq!(node_id_of(&[0; 8]), None);
    }
}
