//! Password hashing (Argon2id, PHC strings). CPU-heavy: callers run it off the hub and
//! limit how many run at once (two).
//!
//! Argon2id's working memory (19 MiB with the default parameters) is taken from a small
//! pool and reused instead of being allocated per login: with glibc, a freed 19 MiB block
//! raises the mmap threshold and later blocks stay in per-thread arenas, so a server that
//! hashed on whichever blocking thread grew to hundreds of MiB (see docs/BENCHMARKS.md).
//! With the pool, hashing memory is fixed at two blocks.

use std::sync::Mutex;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, PasswordHash, Version};

/// Memory blocks kept for reuse (as many as hashes may run at once).
const POOLED: usize = 2;

static MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

fn with_memory<R>(blocks: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
    let mut mem = MEMORY
        .lock()
        .ok()
        .and_then(|mut pool| pool.pop())
        .unwrap_or_default();
    if mem.len() < blocks {
        mem.resize(blocks, Block::default());
    }
    let result = f(&mut mem[..blocks]);
    if let Ok(mut pool) = MEMORY.lock()
        && pool.len() < POOLED
    {
        pool.push(mem);
    }
    result
}

fn compute(
    ctx: &Argon2<'_>,
    params: &Params,
    password: &str,
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), String> {
    with_memory(params.block_count(), |blocks| {
        ctx.hash_password_into_with_memory(password.as_bytes(), salt, out, blocks)
    })
    .map_err(|e| e.to_string())
}

/// Hashes a new password with a random 16-byte salt and the default Argon2id parameters.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let params = Params::default();
    let ctx = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(&ctx, &params, password, &salt, &mut out)?;
    let phc = PasswordHash {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string (compared in constant time).
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let ctx = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    if compute(&ctx, &params, password, salt.as_ref(), &mut out).is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&out).is_ok_and(|o| o == *expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHasher;

    #[test]
    fn hash_then_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salts differ");
    }

    #[test]
    fn hashes_made_by_the_argon2_crate_verify() {
        // Stored hashes from before the memory pool stay valid.
        let h = Argon2::default()
            .hash_password(b"old password")
            .unwrap()
            .to_string();
        assert!(verify_password("old password", &h));
        assert!(!verify_password("old passwore", &h));
    }
}
