//! The envelope openers (session AES-256-GCM-SIV and the end-to-end layer) on arbitrary
//! bytes: they must refuse, never panic, and never open without the key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    livewire::fuzzing::open_all(data);
});
