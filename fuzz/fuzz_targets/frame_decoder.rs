//! Every decoder of untrusted frames: whatever the bytes, an error or a value, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    livewire::fuzzing::decode_all(data);
});
