//! The `Store` contract (`livewire::app::store::contract`) against every implementation of
//! the app's storage trait: one `#[test]` per promise and backend. A new backend is one
//! module here.

mod sqlite_in_memory {
    livewire::store_contract_tests!(livewire::store::SqliteStore::in_memory().unwrap());
}

/// The database file as the server opens it (WAL, `synchronous=FULL`).
mod sqlite_on_disk {
    livewire::store_contract_tests!(guarded {
        let dir = tempfile::tempdir().unwrap();
        let store = livewire::store::SqliteStore::open(dir.path()).unwrap();
        (dir, store)
    });
}

mod memory {
    livewire::store_contract_tests!(livewire::app::store::MemStore::default());
}
