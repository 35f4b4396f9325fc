//! The openmls provider of one device: RustCrypto primitives and openmls's in-memory
//! storage, which the device turns into one snapshot that the transport writes to its
//! state dir (so this module does no I/O).

use openmls_memory_storage::MemoryStorage;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::OpenMlsProvider;

/// Crypto, randomness (the OS RNG, inside openmls) and storage for one device.
#[derive(Default, Debug)]
pub struct Provider {
    crypto: RustCrypto,
    storage: MemoryStorage,
}

impl OpenMlsProvider for Provider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = MemoryStorage;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        &self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        &self.crypto
    }
}

impl Provider {
    /// Every stored record, sorted (a deterministic snapshot).
    pub fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let values = self
            .storage
            .values
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<_> = values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort();
        out
    }

    /// A provider holding `records` (from [`Provider::records`]).
    pub fn from_records(records: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        let storage = MemoryStorage::default();
        *storage
            .values
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = records.into_iter().collect();
        Self {
            crypto: RustCrypto::default(),
            storage,
        }
    }
}
