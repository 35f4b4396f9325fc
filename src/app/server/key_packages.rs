//! Key packages that cannot be drained (docs/SECURITY.md, "Key packages"): what a device
//! uploads is split into one-time packages and its last-resort one (RFC 9420 §16.8), and
//! a claim hands out a one-time package only while the claimer has taken fewer than
//! [`CLAIM_LIMIT`] of the owner's one-time packages in the last [`CLAIM_WINDOW_MS`];
//! beyond that, or once they are gone, it hands out the last-resort package, which stays.
//! A conversation therefore always gets a package for every device that has uploaded
//! one, and no member can use up another user's one-time packages faster than the limit.

use super::ServerCore;
use crate::app::mls::is_last_resort;
use crate::app::store::{Store, StoreError};

/// One-time key packages of another user's devices one user may take per window.
pub const CLAIM_LIMIT: u64 = 50;

/// The window of [`CLAIM_LIMIT`]: one hour.
pub const CLAIM_WINDOW_MS: u64 = 3_600_000;

impl<S: Store> ServerCore<S> {
    /// Stores a device's uploaded (already checked) key packages: one marked last resort
    /// replaces the device's previous one (the last such if several), the others are
    /// one-time.
    pub(super) fn store_key_packages(
        &mut self,
        user: &str,
        device: &str,
        packages: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let (last, once): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) =
            packages.iter().partition(|p| is_last_resort(p));
        if let Some(p) = last.last() {
            self.store.put_last_resort_key_package(user, device, p)?;
        }
        let once: Vec<Vec<u8>> = once.into_iter().cloned().collect();
        if once.is_empty() {
            return Ok(());
        }
        self.store.add_key_packages(user, device, &once)
    }

    /// A key package of `owner`'s `device` for `claimer`: a one-time one (deleted) while
    /// the claimer is under its limit for `owner` and one is left, else the device's
    /// last-resort one (kept). A user's claims of their own devices are not limited.
    pub(super) fn hand_out_key_package(
        &mut self,
        claimer: &str,
        owner: &str,
        device: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let now = self.now;
        let since = now.saturating_sub(CLAIM_WINDOW_MS);
        let limited = claimer != owner;
        if (!limited || self.store.key_package_claims(claimer, owner, since)? < CLAIM_LIMIT)
            && let Some(p) = self.store.claim_key_package(owner, device)?
        {
            if limited {
                self.store
                    .note_key_package_claim(claimer, owner, now, since)?;
            }
            return Ok(Some(p));
        }
        self.store.last_resort_key_package(owner, device)
    }
}
