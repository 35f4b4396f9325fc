//! Safety codes: 60 digits two users compare to be sure that the devices their clients
//! encrypt for are really each other's (Signal's safety numbers, over all devices).
//!
//! Each user's half is 30 digits from 5200 rounds of SHA-512 over a version, the user's
//! name and the sorted signature keys of all their devices; the code is the two halves in
//! the order of the names, so both users compute the same code. Any device added, removed
//! or replaced changes it.

use sha2::{Digest, Sha512};

const ROUNDS: usize = 5200;
const VERSION: &[u8] = b"livewire-safety-code-v1";

/// The half of a code for one user.
fn half(user: &str, keys: &[Vec<u8>]) -> String {
    let mut keys = keys.to_vec();
    keys.sort();
    keys.dedup();
    let user = user.to_ascii_lowercase();
    let mut seed = Vec::new();
    seed.extend(VERSION);
    seed.extend((user.len() as u32).to_be_bytes());
    seed.extend(user.as_bytes());
    for k in &keys {
        seed.extend((k.len() as u32).to_be_bytes());
        seed.extend(k);
    }
    let mut hash = Sha512::digest(&seed).to_vec();
    for _ in 1..ROUNDS {
        let mut h = Sha512::new();
        h.update(&hash);
        h.update(&seed);
        hash = h.finalize().to_vec();
    }
    hash[..30]
        .chunks(5)
        .map(|c| {
            let n = c.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect()
}

/// The safety code of users `a` and `b` with their devices' signature keys: 12 groups of
/// 5 digits separated by spaces, the same whichever side computes it.
pub fn safety_code(a: &str, a_keys: &[Vec<u8>], b: &str, b_keys: &[Vec<u8>]) -> String {
    let (ha, hb) = (half(a, a_keys), half(b, b_keys));
    let digits = if a.to_ascii_lowercase() <= b.to_ascii_lowercase() {
        ha + &hb
    } else {
        hb + &ha
    };
    digits
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
