//! One device as an MLS member: its signature key and credential, its key packages, and
//! its groups (one per private conversation, keyed by the conversation's storage key).

use std::collections::{BTreeMap, HashMap};

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::OpenMlsProvider;
use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::storage::StorageProvider as _;
use serde::{Deserialize, Serialize};

use super::provider::Provider;
use super::wire::MlsBody;

/// The one cipher suite LiveWire uses: X25519, AES-128-GCM, SHA-256, Ed25519.
const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Why an MLS operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MlsError {
    /// No group for this conversation on this device (not added yet).
    #[error("this device is not in the conversation's encrypted group yet")]
    NoGroup,
    /// Bytes that are not what they claim to be.
    #[error("malformed MLS data: {0}")]
    Malformed(String),
    /// A key package of another cipher suite or with a bad signature or credential.
    #[error("invalid key package: {0}")]
    BadKeyPackage(String),
    /// openmls refused (a message for another epoch, a bad signature, ...).
    #[error("{0}")]
    Mls(String),
    /// A saved state that does not load.
    #[error("damaged MLS state: {0}")]
    Damaged(String),
}

fn mls(e: impl std::fmt::Debug) -> MlsError {
    MlsError::Mls(format!("{e:?}"))
}

/// A member of a group as a user sees it: which user, which of their devices, and the
/// device's signature key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The user (lowercase).
    pub user: String,
    /// The device id (unique per user).
    pub device: String,
    /// The device's Ed25519 signature public key.
    pub key: Vec<u8>,
}

impl DeviceInfo {
    /// Reads a credential `user/device` with its signature key.
    fn from_credential(credential: &Credential, key: &[u8]) -> Option<Self> {
        let basic = BasicCredential::try_from(credential.clone()).ok()?;
        let text = std::str::from_utf8(basic.identity()).ok()?;
        let (user, device) = text.split_once('/')?;
        Some(Self {
            user: user.to_owned(),
            device: device.to_owned(),
            key: key.to_vec(),
        })
    }

    /// The device a key package (TLS-encoded) is for, after checking its signature and
    /// suite: what the server checks before it stores one.
    pub fn of_key_package(bytes: &[u8]) -> Result<Self, MlsError> {
        let kp = validate_key_package(&Provider::default(), bytes)?;
        let leaf = kp.leaf_node();
        Self::from_credential(leaf.credential(), leaf.signature_key().as_slice())
            .ok_or_else(|| MlsError::BadKeyPackage("credential is not user/device".into()))
    }
}

/// Whether a key package (TLS-encoded, valid) is marked last resort.
pub fn is_last_resort(bytes: &[u8]) -> bool {
    validate_key_package(&Provider::default(), bytes).is_ok_and(|kp| kp.last_resort())
}

fn validate_key_package(provider: &Provider, bytes: &[u8]) -> Result<KeyPackage, MlsError> {
    let kp = KeyPackageIn::tls_deserialize_exact(bytes)
        .map_err(|e| MlsError::BadKeyPackage(e.to_string()))?;
    let kp = kp
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .map_err(|e| MlsError::BadKeyPackage(format!("{e:?}")))?;
    if kp.ciphersuite() != SUITE {
        return Err(MlsError::BadKeyPackage("another cipher suite".into()));
    }
    Ok(kp)
}

/// What a received body did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// An application message from a member device.
    App {
        /// The sending device.
        from: DeviceInfo,
        /// The plaintext.
        data: Vec<u8>,
    },
    /// A commit was applied (this device's own on the server's order, or a peer's):
    /// devices added and removed; `joined` when it was the welcome that added this device.
    Commit {
        /// Devices that joined.
        added: Vec<DeviceInfo>,
        /// Devices that left.
        removed: Vec<DeviceInfo>,
        /// This device joined the group with it.
        joined: bool,
    },
    /// Nothing for this device (a welcome for others, a commit of a group it is not in).
    Ignored,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    user: String,
    device: String,
    signer: SignatureKeyPair,
    groups: BTreeMap<String, Vec<u8>>,
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The device's Ed25519 key, expanded once. `SignatureKeyPair::sign` rebuilds the signing
/// key from its bytes at every signature (a scalar multiplication: a fifth of the CPU of
/// sending a message, issue 14); this signs with the same key, so with the same
/// (deterministic) signatures.
pub(super) enum DeviceSigner {
    Expanded(ed25519_dalek::SigningKey),
    /// The key pair as openmls keeps it, should its bytes not read as an Ed25519 key whose
    /// public half is the pair's (not expected: the slow path, not a failure).
    Pair(SignatureKeyPair),
}

impl DeviceSigner {
    pub(super) fn of(pair: &SignatureKeyPair) -> Self {
        /// The first fields of `SignatureKeyPair` as serde writes them (`private` as a bare
        /// `Vec<u8>`, kept so by openmls for stored key pairs).
        /// Borrowed from the encoding, which is wiped after.
        #[derive(Deserialize)]
        struct KeyBytes<'a> {
            private: &'a [u8],
            public: &'a [u8],
        }
        let encoded = postcard::to_allocvec(pair).map(zeroize::Zeroizing::new);
        let expanded = encoded.ok().and_then(|b| {
            let k = postcard::from_bytes::<KeyBytes>(&b).ok()?;
            let key = ed25519_dalek::SigningKey::try_from(k.private).ok()?;
            (key.verifying_key().as_bytes().as_slice() == k.public).then_some(key)
        });
        match expanded {
            Some(key) if pair.signature_scheme() == SignatureScheme::ED25519 => Self::Expanded(key),
            _ => Self::Pair(pair.clone()),
        }
    }
}

impl Signer for DeviceSigner {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        match self {
            Self::Expanded(key) => Ok(ed25519_dalek::Signer::sign(key, payload)
                .to_bytes()
                .to_vec()),
            Self::Pair(pair) => pair.sign(payload),
        }
    }

    fn signature_scheme(&self) -> SignatureScheme {
        match self {
            Self::Expanded(_) => SignatureScheme::ED25519,
            Self::Pair(pair) => pair.signature_scheme(),
        }
    }
}

/// One device's MLS state.
pub struct Device {
    user: String,
    device: String,
    signer: SignatureKeyPair,
    /// `signer`, expanded, for signing.
    signing: DeviceSigner,
    provider: Provider,
    /// Conversation storage key → MLS group id.
    groups: BTreeMap<String, Vec<u8>>,
    /// The groups of `groups`, loaded. openmls writes every change of a group through to
    /// the storage (the truth, and what [`Device::snapshot`] saves), so a group is read
    /// from it once instead of at every message: reading one back is most of the CPU of a
    /// message (its ratchet tree is stored as JSON), and it grows with the group. A call
    /// that fails reads its group again from the storage ([`Device::settle`]), so a change
    /// half made in memory is never used.
    loaded: HashMap<String, MlsGroup>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({}/{})", self.user, self.device)
    }
}

impl Device {
    /// A new device of `user` named `device` (a fresh signature key from the OS RNG).
    pub fn new(user: &str, device: &str) -> Result<Self, MlsError> {
        if device.contains('/') || device.is_empty() {
            return Err(MlsError::Malformed("a device id has no '/'".into()));
        }
        let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).map_err(mls)?;
        let provider = Provider::default();
        signer.store(provider.storage()).map_err(mls)?;
        Ok(Self {
            user: user.to_ascii_lowercase(),
            device: device.to_owned(),
            signing: DeviceSigner::of(&signer),
            signer,
            provider,
            groups: BTreeMap::new(),
            loaded: HashMap::new(),
        })
    }

    /// The user this device belongs to.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// This device's id.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// This device as peers see it.
    pub fn info(&self) -> DeviceInfo {
        DeviceInfo {
            user: self.user.clone(),
            device: self.device.clone(),
            key: self.signer.to_public_vec(),
        }
    }

    fn credential(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(format!("{}/{}", self.user, self.device).into())
                .into(),
            signature_key: self.signer.to_public_vec().into(),
        }
    }

    /// A fresh key package (TLS-encoded) for the server to hand to a device that adds
    /// this one to a group; its private part stays here until a welcome uses it.
    pub fn key_package(&mut self) -> Result<Vec<u8>, MlsError> {
        let bundle = KeyPackage::builder()
            .build(SUITE, &self.provider, &self.signing, self.credential())
            .map_err(mls)?;
        bundle
            .key_package()
            .tls_serialize_detached()
            .map_err(|e| MlsError::Malformed(e.to_string()))
    }

    /// A last-resort key package (RFC 9420 §16.8): the server hands it out when this
    /// device's one-time packages are gone (or the claimer is over its limit) and never
    /// deletes it; joining with it keeps its private part, so it can be used again. The
    /// client makes a new one at each login, which replaces the previous one on the server.
    pub fn last_resort_key_package(&mut self) -> Result<Vec<u8>, MlsError> {
        // Its leaf must list the extension it carries (RFC 9420 §7.2).
        let capabilities = Capabilities::builder()
            .extensions(vec![ExtensionType::LastResort])
            .build();
        let bundle = KeyPackage::builder()
            .leaf_node_capabilities(capabilities)
            .mark_as_last_resort()
            .build(SUITE, &self.provider, &self.signing, self.credential())
            .map_err(mls)?;
        bundle
            .key_package()
            .tls_serialize_detached()
            .map_err(|e| MlsError::Malformed(e.to_string()))
    }

    fn group(&self, conv: &str) -> Result<&MlsGroup, MlsError> {
        self.loaded.get(conv).ok_or(MlsError::NoGroup)
    }

    /// Reads `conv`'s group from the storage (again), or forgets it here if it is not
    /// there or does not load.
    fn load(&mut self, conv: &str) {
        let loaded = self.groups.get(conv).and_then(|id| {
            MlsGroup::load(self.provider.storage(), &GroupId::from_slice(id))
                .ok()
                .flatten()
        });
        match loaded {
            Some(group) => self.loaded.insert(conv.to_owned(), group),
            None => self.loaded.remove(conv),
        };
    }

    /// `result` of a call on `conv`'s loaded group; after a failure the group is read
    /// again from the storage, which holds only what openmls completed.
    fn settle<T>(&mut self, conv: &str, result: Result<T, MlsError>) -> Result<T, MlsError> {
        if result.is_err() {
            self.load(conv);
        }
        result
    }

    /// Makes `group` the group of `conv`.
    fn adopt(&mut self, conv: &str, group: MlsGroup) {
        self.groups
            .insert(conv.to_owned(), group.group_id().as_slice().to_vec());
        self.loaded.insert(conv.to_owned(), group);
    }

    /// Whether this device is in the group of `conv`.
    pub fn has_group(&self, conv: &str) -> bool {
        self.group(conv).is_ok_and(|g| g.is_active())
    }

    /// The group's epoch (`None`: no group).
    pub fn epoch(&self, conv: &str) -> Option<u64> {
        self.group(conv).ok().map(|g| g.epoch().as_u64())
    }

    /// The member devices of `conv`'s group, sorted.
    pub fn members(&self, conv: &str) -> Vec<DeviceInfo> {
        self.group(conv).map(members_of).unwrap_or_default()
    }

    /// Starts the group of `conv` with this device alone (epoch 0). Any previous group of
    /// the conversation on this device is forgotten.
    pub fn create_group(&mut self, conv: &str) -> Result<(), MlsError> {
        self.forget(conv);
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(SUITE)
            .use_ratchet_tree_extension(true)
            .build();
        let group = MlsGroup::new(&self.provider, &self.signing, &config, self.credential())
            .map_err(mls)?;
        self.adopt(conv, group);
        Ok(())
    }

    /// Forgets the group of `conv` (its secrets are deleted from the storage).
    pub fn forget(&mut self, conv: &str) {
        if let Some(mut g) = self.loaded.remove(conv) {
            let _ = g.delete(self.provider.storage());
        }
        self.groups.remove(conv);
    }

    /// A commit adding the devices of `key_packages` (TLS-encoded), kept pending until the
    /// server orders it ([`Device::commit_accepted`] / [`Device::commit_refused`]).
    pub fn add(&mut self, conv: &str, key_packages: &[Vec<u8>]) -> Result<MlsBody, MlsError> {
        let kps = key_packages
            .iter()
            .map(|b| validate_key_package(&self.provider, b))
            .collect::<Result<Vec<_>, _>>()?;
        let group = self.loaded.get_mut(conv).ok_or(MlsError::NoGroup)?;
        let made = group
            .add_members(&self.provider, &self.signing, &kps)
            .map_err(mls);
        let (commit, welcome, _) = self.settle(conv, made)?;
        Ok(MlsBody::Commit {
            device: self.device.clone(),
            commit: encode(&commit)?,
            welcome: Some(encode(&welcome)?),
        })
    }

    /// A commit removing `devices` from `conv`'s group (pending like [`Device::add`]).
    pub fn remove(&mut self, conv: &str, devices: &[DeviceInfo]) -> Result<MlsBody, MlsError> {
        let group = self.loaded.get_mut(conv).ok_or(MlsError::NoGroup)?;
        let leaves: Vec<LeafNodeIndex> = group
            .members()
            .filter(|m| {
                DeviceInfo::from_credential(&m.credential, &m.signature_key).is_some_and(|d| {
                    devices
                        .iter()
                        .any(|x| x.user == d.user && x.device == d.device)
                })
            })
            .map(|m| m.index)
            .collect();
        if leaves.is_empty() {
            return Err(MlsError::Mls("none of these devices is a member".into()));
        }
        let made = group
            .remove_members(&self.provider, &self.signing, &leaves)
            .map_err(mls);
        let (commit, welcome, _) = self.settle(conv, made)?;
        Ok(MlsBody::Commit {
            device: self.device.clone(),
            commit: encode(&commit)?,
            welcome: welcome.map(|w| encode(&w)).transpose()?,
        })
    }

    /// A commit that replaces this device's leaf key (a new HPKE key and path secrets):
    /// after it, a copy of the state taken before cannot follow the group (post-compromise
    /// security). Pending like [`Device::add`].
    pub fn self_update(&mut self, conv: &str) -> Result<MlsBody, MlsError> {
        let group = self.loaded.get_mut(conv).ok_or(MlsError::NoGroup)?;
        let made = group
            .self_update(&self.provider, &self.signing, LeafNodeParameters::default())
            .map_err(mls);
        let bundle = self.settle(conv, made)?;
        let (commit, welcome, _) = bundle.into_contents();
        Ok(MlsBody::Commit {
            device: self.device.clone(),
            commit: encode(&commit)?,
            welcome: welcome
                .map(|w| encode(&MlsMessageOut::from_welcome(w, ProtocolVersion::Mls10)))
                .transpose()?,
        })
    }

    /// Whether this device has a commit of its own waiting for the server's order.
    pub fn has_pending_commit(&self, conv: &str) -> bool {
        self.group(conv).is_ok_and(|g| g.pending_commit().is_some())
    }

    /// The server stored this device's pending commit: it takes effect (the previous
    /// epoch's secrets are deleted).
    pub fn commit_accepted(&mut self, conv: &str) -> Result<Received, MlsError> {
        let group = self.loaded.get_mut(conv).ok_or(MlsError::NoGroup)?;
        if group.pending_commit().is_none() {
            return Ok(Received::Ignored);
        }
        let before = members_of(group);
        let after = group
            .merge_pending_commit(&self.provider)
            .map_err(mls)
            .map(|()| members_of(group));
        let after = self.settle(conv, after)?;
        Ok(diff(before, after, false))
    }

    /// The server refused this device's pending commit (another commit came first): it is
    /// dropped.
    pub fn commit_refused(&mut self, conv: &str) -> Result<(), MlsError> {
        let group = self.loaded.get_mut(conv).ok_or(MlsError::NoGroup)?;
        let cleared = group
            .clear_pending_commit(self.provider.storage())
            .map_err(mls);
        self.settle(conv, cleared)
    }

    /// Encrypts `data` for every member device of `conv`.
    pub fn encrypt(&mut self, conv: &str, data: &[u8]) -> Result<MlsBody, MlsError> {
        let group = self.loaded.get_mut(conv).ok_or(MlsError::NoGroup)?;
        let msg = group
            .create_message(&self.provider, &self.signing, data)
            .map_err(mls);
        let msg = self.settle(conv, msg)?;
        Ok(MlsBody::App(encode(&msg)?))
    }

    /// A key for `conv` in the current epoch, derived with the MLS exporter under
    /// `label` (e.g. the keyed hash of reactions); every member gets the same one.
    pub fn exporter(&self, conv: &str, label: &str, len: usize) -> Result<Vec<u8>, MlsError> {
        let group = self.group(conv)?;
        group
            .export_secret(self.provider.crypto(), label, &[], len)
            .map_err(mls)
    }

    /// Handles a body the server ordered in `conv`: joins on a welcome for this device,
    /// applies a commit, decrypts an application message.
    pub fn receive(&mut self, conv: &str, body: &MlsBody) -> Result<Received, MlsError> {
        match body {
            MlsBody::App(bytes) => {
                let group = self.loaded.get_mut(conv).ok_or(MlsError::NoGroup)?;
                let msg = decode(bytes)?
                    .try_into_protocol_message()
                    .map_err(|e| MlsError::Malformed(format!("{e:?}")))?;
                let opened = group
                    .process_message(&self.provider, msg)
                    .map_err(mls)
                    .and_then(|processed| {
                        let from = sender_of(group, &processed);
                        match processed.into_content() {
                            ProcessedMessageContent::ApplicationMessage(app) => Ok(Received::App {
                                from: from.ok_or_else(|| MlsError::Mls("unknown sender".into()))?,
                                data: app.into_bytes(),
                            }),
                            _ => Err(MlsError::Malformed("not an application message".into())),
                        }
                    });
                self.settle(conv, opened)
            }
            MlsBody::Commit {
                device,
                commit,
                welcome,
            } => {
                if *device == self.device {
                    // Our own commit, in the server's order: it takes effect now.
                    return self.commit_accepted(conv);
                }
                match self.loaded.get_mut(conv) {
                    Some(group) if group.is_active() => {
                        let msg = decode(commit)?
                            .try_into_protocol_message()
                            .map_err(|e| MlsError::Malformed(format!("{e:?}")))?;
                        if msg.group_id() != group.group_id() {
                            // A commit of another group of this conversation (one this
                            // device never joined, or an older one).
                            return self.try_welcome(conv, welcome.as_deref());
                        }
                        if msg.epoch() != group.epoch() {
                            return Ok(Received::Ignored);
                        }
                        let before = members_of(group);
                        let applied = group
                            .process_message(&self.provider, msg)
                            .map_err(mls)
                            .and_then(|processed| match processed.into_content() {
                                ProcessedMessageContent::StagedCommitMessage(staged) => group
                                    .merge_staged_commit(&self.provider, *staged)
                                    .map_err(mls),
                                _ => Err(MlsError::Malformed("not a commit".into())),
                            })
                            .map(|()| (group.is_active(), members_of(group)));
                        let (active, after) = self.settle(conv, applied)?;
                        if !active {
                            // This device was removed.
                            self.forget(conv);
                            return Ok(Received::Commit {
                                added: Vec::new(),
                                removed: vec![self.info()],
                                joined: false,
                            });
                        }
                        Ok(diff(before, after, false))
                    }
                    _ => self.try_welcome(conv, welcome.as_deref()),
                }
            }
        }
    }

    /// Joins `conv`'s group if `welcome` is for one of this device's key packages.
    fn try_welcome(&mut self, conv: &str, welcome: Option<&[u8]>) -> Result<Received, MlsError> {
        let Some(welcome) = welcome else {
            return Ok(Received::Ignored);
        };
        let MlsMessageBodyIn::Welcome(welcome) = decode(welcome)?.extract() else {
            return Err(MlsError::Malformed("not a welcome".into()));
        };
        let mine = welcome.secrets().iter().any(|s| {
            let r = s.new_member();
            self.provider
                .storage()
                .key_package::<_, KeyPackageBundle>(&r)
                .ok()
                .flatten()
                .is_some()
        });
        if !mine {
            return Ok(Received::Ignored);
        }
        let config = MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .build();
        let group = StagedWelcome::new_from_welcome(&self.provider, &config, welcome, None)
            .and_then(|s| s.into_group(&self.provider))
            .map_err(mls)?;
        self.forget(conv);
        let added = members_of(&group);
        self.adopt(conv, group);
        Ok(Received::Commit {
            added,
            removed: Vec::new(),
            joined: true,
        })
    }

    /// The whole state as bytes (secret: the client writes it with mode 0600).
    pub fn snapshot(&self) -> Vec<u8> {
        let saved = Saved {
            user: self.user.clone(),
            device: self.device.clone(),
            signer: self.signer.clone(),
            groups: self.groups.clone(),
            records: self.provider.records(),
        };
        postcard::to_allocvec(&saved).unwrap_or_default()
    }

    /// A device from [`Device::snapshot`]'s bytes.
    pub fn restore(bytes: &[u8]) -> Result<Self, MlsError> {
        let saved: Saved =
            postcard::from_bytes(bytes).map_err(|e| MlsError::Damaged(e.to_string()))?;
        let mut device = Self {
            user: saved.user,
            device: saved.device,
            signing: DeviceSigner::of(&saved.signer),
            signer: saved.signer,
            provider: Provider::from_records(saved.records),
            groups: saved.groups,
            loaded: HashMap::new(),
        };
        let convs: Vec<String> = device.groups.keys().cloned().collect();
        for conv in convs {
            device.load(&conv);
        }
        Ok(device)
    }
}

fn encode(msg: &MlsMessageOut) -> Result<Vec<u8>, MlsError> {
    msg.tls_serialize_detached()
        .map_err(|e| MlsError::Malformed(e.to_string()))
}

fn decode(bytes: &[u8]) -> Result<MlsMessageIn, MlsError> {
    MlsMessageIn::tls_deserialize_exact(bytes).map_err(|e| MlsError::Malformed(e.to_string()))
}

fn members_of(group: &MlsGroup) -> Vec<DeviceInfo> {
    let mut out: Vec<DeviceInfo> = group
        .members()
        .filter_map(|m| DeviceInfo::from_credential(&m.credential, &m.signature_key))
        .collect();
    out.sort();
    out
}

fn sender_of(group: &MlsGroup, processed: &ProcessedMessage) -> Option<DeviceInfo> {
    match processed.sender() {
        Sender::Member(leaf) => {
            let m = group.member_at(*leaf)?;
            DeviceInfo::from_credential(&m.credential, &m.signature_key)
        }
        _ => None,
    }
}

fn diff(before: Vec<DeviceInfo>, after: Vec<DeviceInfo>, joined: bool) -> Received {
    let added = after
        .iter()
        .filter(|d| !before.contains(d))
        .cloned()
        .collect();
    let removed = before
        .iter()
        .filter(|d| !after.contains(d))
        .cloned()
        .collect();
    Received::Commit {
        added,
        removed,
        joined,
    }
}
