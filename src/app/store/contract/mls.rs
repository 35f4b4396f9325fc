//! The MLS delivery-service part of the contract: devices, key packages, group epochs.

use crate::app::ids::{ClientMsgId, ConvId};
use crate::app::store::{MAX_KEY_PACKAGES, Store};

/// Devices are per user, a changed key is reported, key packages are handed out once,
/// oldest first, at most [`MAX_KEY_PACKAGES`] kept; removing a device drops its packages;
/// a conversation's epoch starts at 0 and remembers the commit that set it.
pub fn mls_devices_key_packages_and_epochs<S: Store>(s: &mut S) {
    assert!(s.devices("alice").unwrap().is_empty());
    assert!(s.put_device("alice", "d1", b"key-1").unwrap());
    assert!(!s.put_device("alice", "d1", b"key-1").unwrap());
    assert!(s.put_device("alice", "d2", b"key-2").unwrap());
    assert!(s.put_device("alice", "d1", b"key-1b").unwrap());
    assert!(s.put_device("bob", "d1", b"bob-key").unwrap());
    assert_eq!(
        s.devices("alice").unwrap(),
        vec![
            ("d1".to_owned(), b"key-1b".to_vec()),
            ("d2".to_owned(), b"key-2".to_vec())
        ]
    );

    assert_eq!(s.claim_key_package("alice", "d1").unwrap(), None);
    s.add_key_packages("alice", "d1", &[b"kp1".to_vec(), b"kp2".to_vec()])
        .unwrap();
    s.add_key_packages("bob", "d1", &[b"bob-kp".to_vec()])
        .unwrap();
    assert_eq!(
        s.claim_key_package("alice", "d1").unwrap(),
        Some(b"kp1".to_vec())
    );
    assert_eq!(
        s.claim_key_package("alice", "d1").unwrap(),
        Some(b"kp2".to_vec())
    );
    assert_eq!(s.claim_key_package("alice", "d1").unwrap(), None);
    assert_eq!(s.claim_key_package("alice", "d2").unwrap(), None);

    let many: Vec<Vec<u8>> = (0..MAX_KEY_PACKAGES + 5)
        .map(|i| format!("kp-{i:03}").into_bytes())
        .collect();
    s.add_key_packages("alice", "d2", &many).unwrap();
    assert_eq!(
        s.claim_key_package("alice", "d2").unwrap(),
        Some(b"kp-005".to_vec()),
        "the oldest beyond the limit were dropped"
    );

    assert!(!s.device_removed("alice", "d2").unwrap());
    assert!(s.remove_device("alice", "d2").unwrap());
    assert!(!s.remove_device("alice", "d2").unwrap());
    assert!(
        s.device_removed("alice", "d2").unwrap(),
        "a removal is remembered"
    );
    assert!(!s.device_removed("alice", "d1").unwrap());
    assert!(!s.device_removed("bob", "d2").unwrap(), "per user");
    assert!(!s.remove_device("bob", "nothing").unwrap());
    assert!(
        !s.device_removed("bob", "nothing").unwrap(),
        "removing a device that never was leaves no mark"
    );
    assert_eq!(s.claim_key_package("alice", "d2").unwrap(), None);
    assert_eq!(s.devices("alice").unwrap().len(), 1);
    assert_eq!(
        s.claim_key_package("bob", "d1").unwrap(),
        Some(b"bob-kp".to_vec())
    );

    let dm = ConvId::Direct("alice".into(), "bob".into());
    assert_eq!(s.mls_epoch(&dm).unwrap(), (0, None));
    s.set_mls_epoch(&dm, 1, ClientMsgId([7; 16])).unwrap();
    s.set_mls_epoch(&dm, 2, ClientMsgId([8; 16])).unwrap();
    assert_eq!(s.mls_epoch(&dm).unwrap(), (2, Some(ClientMsgId([8; 16]))));
    let other = ConvId::Direct("alice".into(), "carol".into());
    assert_eq!(s.mls_epoch(&other).unwrap(), (0, None));
}

/// A device's last-resort key package is read, never taken, replaced by the next one and
/// dropped with the device; claims are counted per (claimer, owner) from a time on, and
/// older ones are forgotten when a new one is noted.
pub fn mls_last_resort_key_packages_and_claim_counts<S: Store>(s: &mut S) {
    assert_eq!(s.last_resort_key_package("alice", "d1").unwrap(), None);
    s.put_device("alice", "d1", b"key-1").unwrap();
    s.put_last_resort_key_package("alice", "d1", b"lr-1")
        .unwrap();
    s.add_key_packages("alice", "d1", &[b"kp1".to_vec()])
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            s.last_resort_key_package("alice", "d1").unwrap(),
            Some(b"lr-1".to_vec())
        );
    }
    assert_eq!(
        s.claim_key_package("alice", "d1").unwrap(),
        Some(b"kp1".to_vec()),
        "a one-time package is not the last-resort one"
    );
    assert_eq!(s.claim_key_package("alice", "d1").unwrap(), None);
    assert_eq!(
        s.last_resort_key_package("alice", "d1").unwrap(),
        Some(b"lr-1".to_vec()),
        "claims leave it"
    );
    s.put_last_resort_key_package("alice", "d1", b"lr-2")
        .unwrap();
    assert_eq!(
        s.last_resort_key_package("alice", "d1").unwrap(),
        Some(b"lr-2".to_vec())
    );
    assert_eq!(s.last_resort_key_package("alice", "d2").unwrap(), None);
    assert_eq!(s.last_resort_key_package("bob", "d1").unwrap(), None);
    assert!(s.remove_device("alice", "d1").unwrap());
    assert_eq!(s.last_resort_key_package("alice", "d1").unwrap(), None);

    assert_eq!(s.key_package_claims("bob", "alice", 0).unwrap(), 0);
    s.note_key_package_claim("bob", "alice", 1_000, 0).unwrap();
    s.note_key_package_claim("bob", "alice", 2_000, 0).unwrap();
    s.note_key_package_claim("bob", "alice", 3_000, 0).unwrap();
    s.note_key_package_claim("carol", "alice", 3_000, 0)
        .unwrap();
    s.note_key_package_claim("bob", "dave", 3_000, 0).unwrap();
    assert_eq!(s.key_package_claims("bob", "alice", 0).unwrap(), 3);
    assert_eq!(s.key_package_claims("bob", "alice", 2_000).unwrap(), 2);
    assert_eq!(s.key_package_claims("bob", "alice", 3_001).unwrap(), 0);
    assert_eq!(s.key_package_claims("carol", "alice", 0).unwrap(), 1);
    assert_eq!(s.key_package_claims("alice", "bob", 0).unwrap(), 0);
    // Noting a claim forgets that pair's claims before the given time, no other pair's.
    s.note_key_package_claim("bob", "alice", 9_000, 2_500)
        .unwrap();
    assert_eq!(s.key_package_claims("bob", "alice", 0).unwrap(), 2);
    assert_eq!(s.key_package_claims("bob", "dave", 0).unwrap(), 1);
    assert_eq!(s.key_package_claims("carol", "alice", 0).unwrap(), 1);
}
