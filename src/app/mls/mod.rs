//! End-to-end encryption of private conversations with MLS (RFC 9420) through `openmls`.
//!
//! A *device* (one client state dir) is one MLS member: it has its own Ed25519 signature
//! key and a basic credential naming `user/device`, publishes key packages through the
//! server (the delivery service), and is a leaf in the MLS group of every private
//! conversation of its user. The server orders commits and application messages per
//! conversation and stores only ciphertext; it refuses a commit for an epoch that is not
//! the conversation's current one, so concurrent commits resolve by its order
//! ([`frame_info`] reads the epoch from the public part of the MLS framing).
//!
//! Like the rest of `app`, this does no I/O: a device's whole state (keys, groups, the
//! openmls storage) is one snapshot ([`Device::snapshot`]) that the client writes to its
//! state dir (mode 0600) after every change. openmls draws its randomness from the OS RNG
//! itself.
//!
//! `client` is the layer between the chat core and the wire on a device; `wire` is the body format in conversation frames; `device` the member state machine;
//! `safety` the safety codes users compare to verify each other's devices.

mod client;
mod device;
mod provider;
mod safety;
mod wire;

pub use client::{MlsClient, MlsOut, UNREADABLE, UPDATE_EVERY};
pub use device::{Device, DeviceInfo, MlsError, Received, is_last_resort};
pub use safety::safety_code;
pub use wire::{FrameInfo, MLS_TAG, MlsBody, frame_info};

#[cfg(test)]
mod tests;
