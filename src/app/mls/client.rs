//! The client's MLS layer, sans-IO: between the chat core and the wire for private
//! conversations. It holds what the core sends to a private conversation until the
//! conversation's group holds every device of both users (asking the server for key
//! packages and committing adds), encrypts bodies for the group, opens what arrives in
//! the server's order (applying commits, joining on a welcome), and answers the
//! `devices`, `safety_code` and `verify` commands.
//!
//! Who adds a new device: any member device that learns of it (a `device_added` from the
//! server, or a send that finds the group short of a device the server lists) commits the
//! add; the server's order picks one when several try. So a new device is added by the
//! user's other device or by the peer, whichever is first, and reads from then on.
//! A conversation whose peer has no MLS device (a client of the first release) keeps the
//! first scheme ([`MlsOut::Legacy`]).
//!
//! Private (invite-only) rooms work the same way with every device of every member: the
//! layer learns which rooms are private from the server's room news, and a membership
//! change (a member joined, left, was kicked or banned; a device came or went) marks the
//! room unchecked, so the next send first asks the server once for the room's members
//! and devices ([`ControlUp::ClaimRoomKeyPackages`], packages only for the devices the
//! group lacks) and commits the removals, then the additions. The room's first sender
//! creates the group; a member who finds the server already ordering a group for the room
//! (its epoch is past 0) waits to be added by a member who sends.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Device, DeviceInfo, MlsBody, MlsError, Received, safety_code};
use crate::app::client::Event;
use crate::app::ids::{ClientMsgId, ConvId, MsgId};
use crate::app::protocol::{
    ControlDown, ControlUp, ConvDown, ConvEvent, ConvUp, DeviceKey, ErrorCode, EventKind,
    MemberChange, RoomDown, Visibility,
};

/// Key packages a device uploads at each login.
const KEY_PACKAGES_PER_LOGIN: usize = 5;
/// A device updates its own leaf after sending this many messages in a conversation.
pub const UPDATE_EVERY: u32 = 20;
/// A message refused for a stale epoch is encrypted again at most this often.
const MAX_RETRIES: u8 = 3;
/// The text shown in place of a private message that does not open.
pub const UNREADABLE: &str = "🔒 This message could not be decrypted on this device.";

/// What the MLS layer wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MlsOut {
    /// Write on the conversation's stream: the body is end-to-end sealed already (or the
    /// frame has none); only the session envelope is left.
    Conv(ConvId, ConvUp),
    /// Write with the first scheme's end-to-end sealing (the peer has no MLS device).
    Legacy(ConvId, ConvUp),
    /// Write on the control stream.
    Control(ControlUp),
    /// Tell the user.
    Event(Event),
}

#[derive(Default, Debug)]
struct ConvState {
    /// Frames held until the group is complete, in order.
    waiting: VecDeque<ConvUp>,
    /// Key-package answers still expected.
    claiming: usize,
    /// Answers received.
    answers: Vec<(String, Vec<DeviceKey>, Vec<Vec<u8>>)>,
    /// The group's devices were checked against the server's lists this session.
    checked: bool,
    /// Messages sent since this device's last update.
    sent: u32,
    /// A commit of this device whose answer a lost connection took: sent again before
    /// the conversation's next frame.
    resend: Option<ConvUp>,
    /// A private room: the server's epoch for it in the last answer (a group exists on
    /// the server's side when it is past 0).
    room_epoch: u64,
    /// The last commit did one part of the membership change (removals before
    /// additions): check again once it took effect.
    again: bool,
    /// A private room's server asked for a commit before the next message (its members
    /// changed): the next check commits even when it finds nothing to change (an update).
    rekey: bool,
    /// The commit of this device that is pending in the group now (an older one, made in
    /// a group this device has left for the winner's since, may still be answered).
    pending: Option<ClientMsgId>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    device: Vec<u8>,
    verified: BTreeMap<String, String>,
    #[serde(default)]
    texts: BTreeMap<MsgId, Vec<u8>>,
}

/// Private texts this device keeps (what it sent or decrypted), newest by server id: MLS
/// deletes a message's key once used, so history and catch-up pages from the server are
/// shown from here.
const MAX_KEPT_TEXTS: usize = 10_000;

/// A pending `safety_code` or `verify`.
#[derive(Debug)]
struct CodeRequest {
    user: String,
    verify: Option<String>,
    waiting: usize,
}

/// The MLS state of one device with what it is waiting for.
pub struct MlsClient {
    device: Device,
    verified: BTreeMap<String, String>,
    convs: HashMap<ConvId, ConvState>,
    /// This device's commits waiting for the server's answer (resent on reconnect).
    commits: HashMap<ClientMsgId, (ConvId, ConvUp)>,
    /// Sends not yet acknowledged, as the core gave them (encrypted again on `stale_epoch`).
    inflight: HashMap<ClientMsgId, (ConvId, ConvUp, u8)>,
    lists: HashMap<String, Vec<DeviceKey>>,
    codes: Vec<CodeRequest>,
    seed: [u8; 16],
    counter: u64,
    dirty: bool,
    e2e: HashSet<MsgId>,
    /// See [`MAX_KEPT_TEXTS`].
    texts: BTreeMap<MsgId, Vec<u8>>,
    /// The private rooms this user is in (by key), from the server's room news.
    private_rooms: HashSet<String>,
    /// The server said this device was removed from its account (this run): frames of
    /// end-to-end conversations go out without their text, to be refused.
    removed: bool,
}

impl std::fmt::Debug for MlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MlsClient({:?})", self.device)
    }
}

/// A frame of a removed device: sent without its text (the server refuses it with
/// `removed_device`, which takes it out of the core's outbox with an error).
fn removed_frame(conv: ConvId, mut up: ConvUp) -> MlsOut {
    if let Some(body) = up.body_mut() {
        *body = vec![super::MLS_TAG];
    }
    MlsOut::Conv(conv, up)
}

fn mls_err(e: MlsError) -> MlsOut {
    MlsOut::Event(Event::error(ErrorCode::Internal, e.to_string()))
}

impl MlsClient {
    /// A new device of `user` (its id from `seed`, which also seeds commit ids).
    pub fn new(user: &str, seed: [u8; 16]) -> Result<Self, MlsError> {
        let id: String = seed[..4].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self::with(Device::new(user, &id)?, BTreeMap::new(), seed))
    }

    /// The state saved by [`MlsClient::save`]; `seed` must be fresh randomness.
    pub fn load(bytes: &[u8], seed: [u8; 16]) -> Result<Self, MlsError> {
        let saved: Saved =
            postcard::from_bytes(bytes).map_err(|e| MlsError::Damaged(e.to_string()))?;
        let mut client = Self::with(Device::restore(&saved.device)?, saved.verified, seed);
        client.texts = saved.texts;
        Ok(client)
    }

    fn with(device: Device, verified: BTreeMap<String, String>, seed: [u8; 16]) -> Self {
        Self {
            device,
            verified,
            convs: HashMap::new(),
            commits: HashMap::new(),
            inflight: HashMap::new(),
            lists: HashMap::new(),
            codes: Vec::new(),
            seed,
            counter: 0,
            dirty: true,
            e2e: HashSet::new(),
            texts: BTreeMap::new(),
            private_rooms: HashSet::new(),
            removed: false,
        }
    }

    /// The whole state (secret: written with mode 0600).
    pub fn save(&self) -> Vec<u8> {
        let saved = Saved {
            device: self.device.snapshot(),
            verified: self.verified.clone(),
            texts: self.texts.clone(),
        };
        postcard::to_allocvec(&saved).unwrap_or_default()
    }

    /// The state to write if it changed since the last call.
    pub fn take_dirty(&mut self) -> Option<Vec<u8>> {
        std::mem::take(&mut self.dirty).then(|| self.save())
    }

    /// This device's id.
    pub fn device_id(&self) -> &str {
        self.device.device()
    }

    /// The MLS device (tests).
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn me(&self) -> String {
        self.device.user().to_owned()
    }

    /// Whether `conv` is end-to-end encrypted by this layer: a private conversation of
    /// this user, or a private room this user is in.
    pub fn is_e2e(&self, conv: &ConvId) -> bool {
        match conv {
            ConvId::Direct(..) => conv.peer_of(self.device.user()).is_some(),
            ConvId::Room(room) => self.private_rooms.contains(room),
            ConvId::General => false,
        }
    }

    /// Room news from the server (the core sees it too): which rooms are private, and
    /// membership changes that the group must follow. Leaving a room forgets its group
    /// (its secrets are deleted); a later invitation adds this device anew.
    pub fn room(&mut self, down: &RoomDown) {
        let mut unchecked = Vec::new();
        match down {
            RoomDown::State { rooms, .. } => {
                self.private_rooms = rooms
                    .iter()
                    .filter(|r| r.visibility == Visibility::Private)
                    .map(|r| r.key.clone())
                    .collect();
            }
            RoomDown::Joined { room } if room.visibility == Visibility::Private => {
                self.private_rooms.insert(room.key.clone());
                unchecked.push(room.key.clone());
            }
            RoomDown::Left { room, .. } if self.private_rooms.remove(room) => {
                let conv = ConvId::Room(room.clone());
                self.device.forget(&conv.storage_key());
                self.convs.remove(&conv);
                self.commits.retain(|_, (c, _)| *c != conv);
                self.inflight.retain(|_, (c, ..)| *c != conv);
                self.dirty = true;
            }
            RoomDown::Member {
                room,
                change:
                    MemberChange::Joined
                    | MemberChange::Left
                    | MemberChange::Kicked
                    | MemberChange::Banned,
                ..
            } => {
                unchecked.push(room.clone());
            }
            _ => {}
        }
        for room in unchecked {
            if let Some(st) = self.convs.get_mut(&ConvId::Room(room)) {
                st.checked = false;
            }
        }
    }

    fn fresh_cmid(&mut self) -> ClientMsgId {
        self.counter += 1;
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(self.counter.to_be_bytes());
        let d = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        ClientMsgId(id)
    }

    /// A new session: announce this device with fresh key packages, forget what the core
    /// will resend itself; commits whose answer was lost go again before their
    /// conversation's next frame (after the core opened its stream).
    pub fn logged_in(&mut self) -> Vec<MlsOut> {
        let mut out = Vec::new();
        let mut packages = Vec::new();
        for _ in 0..KEY_PACKAGES_PER_LOGIN {
            match self.device.key_package() {
                Ok(p) => packages.push(p),
                Err(e) => out.push(mls_err(e)),
            }
        }
        // And a last-resort one (replacing the previous one on the server), handed out
        // when the one-time ones run out (docs/SECURITY.md, "Key packages").
        match self.device.last_resort_key_package() {
            Ok(p) => packages.push(p),
            Err(e) => out.push(mls_err(e)),
        }
        self.dirty = true;
        out.push(MlsOut::Control(ControlUp::MlsDevice {
            device: self.device.device().to_owned(),
            key_packages: packages,
        }));
        for st in self.convs.values_mut() {
            st.waiting.clear();
            st.claiming = 0;
            st.answers.clear();
            st.checked = false;
        }
        self.inflight.clear();
        for (conv, up) in self.commits.values() {
            self.convs.entry(conv.clone()).or_default().resend = Some(up.clone());
        }
        out
    }

    /// A frame the core sends on a private conversation.
    pub fn outgoing(&mut self, conv: ConvId, up: ConvUp) -> Vec<MlsOut> {
        if matches!(
            up,
            ConvUp::Open { .. } | ConvUp::Catchup { .. } | ConvUp::File(_)
        ) {
            return vec![MlsOut::Conv(conv, up)];
        }
        if self.removed {
            return vec![removed_frame(conv, up)];
        }
        let ready = self.ready(&conv);
        let st = self.convs.entry(conv.clone()).or_default();
        if let Some(commit) = st.resend.take() {
            st.waiting.push_back(up);
            return vec![MlsOut::Conv(conv, commit)];
        }
        if st.waiting.is_empty() && (ready || up.cmid().is_none()) {
            return self.seal(conv, up);
        }
        st.waiting.push_back(up);
        self.check(&conv)
    }

    fn ready(&self, conv: &ConvId) -> bool {
        self.convs.get(conv).is_some_and(|s| s.checked)
            && self.device.has_group(&conv.storage_key())
            && !self.device.has_pending_commit(&conv.storage_key())
    }

    /// Asks for the key packages of both users' devices (once at a time).
    fn check(&mut self, conv: &ConvId) -> Vec<MlsOut> {
        let me = self.me();
        let have: Vec<(String, String)> = self
            .device
            .members(&conv.storage_key())
            .into_iter()
            .map(|d| (d.user, d.device))
            .collect();
        let st = self.convs.entry(conv.clone()).or_default();
        if st.claiming > 0 {
            return Vec::new();
        }
        if matches!(conv, ConvId::Room(_)) {
            st.claiming = 1;
            st.answers.clear();
            return vec![MlsOut::Control(ControlUp::ClaimRoomKeyPackages {
                conv: conv.clone(),
                have,
            })];
        }
        let peer = conv.peer_of(&me).unwrap_or(&me).to_owned();
        let mut users = vec![peer];
        if users[0] != me {
            users.push(me);
        }
        st.claiming = users.len();
        st.answers.clear();
        users
            .into_iter()
            .map(|user| {
                MlsOut::Control(ControlUp::ClaimKeyPackages {
                    conv: conv.clone(),
                    user,
                })
            })
            .collect()
    }

    /// Encrypts one frame's body for the group (and updates this device's leaf first
    /// when it is due).
    fn seal(&mut self, conv: ConvId, up: ConvUp) -> Vec<MlsOut> {
        let Some(cmid) = up.cmid() else {
            return vec![MlsOut::Conv(conv, up)];
        };
        let key = conv.storage_key();
        let due = self
            .convs
            .get(&conv)
            .is_some_and(|s| s.sent >= UPDATE_EVERY);
        if due {
            if let Some(st) = self.convs.get_mut(&conv) {
                st.sent = 0;
                st.waiting.push_front(up);
            }
            return match self.device.self_update(&key) {
                Ok(body) => self.commit_frame(conv, body),
                Err(e) => vec![mls_err(e)],
            };
        }
        let original = up.clone();
        let mut up = up;
        if let ConvUp::React {
            target,
            key: rkey,
            body,
            ..
        } = &mut up
        {
            match self.reaction_key(&key, *target, body) {
                Ok(k) => *rkey = k,
                Err(e) => return vec![mls_err(e)],
            }
        }
        if let Some(body) = up.body_mut() {
            match self.device.encrypt(&key, body) {
                Ok(sealed) => *body = sealed.encode(),
                Err(e) => return vec![mls_err(e)],
            }
        }
        self.dirty = true;
        if let Some(st) = self.convs.get_mut(&conv) {
            st.sent += 1;
        }
        let tries = self.inflight.get(&cmid).map_or(0, |t| t.2);
        self.inflight.insert(cmid, (conv.clone(), original, tries));
        vec![MlsOut::Conv(conv, up)]
    }

    /// What the server keys "one of each emoji per user" on: HMAC-SHA256 (HKDF) under the
    /// group's exporter secret, so the server cannot tell which emoji it is.
    fn reaction_key(&self, conv: &str, target: MsgId, emoji: &[u8]) -> Result<Vec<u8>, MlsError> {
        let secret = self.device.exporter(conv, "livewire reactions", 32)?;
        let hk = Hkdf::<Sha256>::new(Some(&target.to_be_bytes()), &secret);
        let mut out = [0u8; crate::app::edits::REACTION_TAG];
        hk.expand(emoji, &mut out)
            .map_err(|e| MlsError::Mls(e.to_string()))?;
        Ok(out.to_vec())
    }

    fn commit_frame(&mut self, conv: ConvId, body: MlsBody) -> Vec<MlsOut> {
        let cmid = self.fresh_cmid();
        let up = ConvUp::Send {
            cmid,
            body: body.encode(),
        };
        self.dirty = true;
        self.convs.entry(conv.clone()).or_default().pending = Some(cmid);
        self.commits.insert(cmid, (conv.clone(), up.clone()));
        vec![MlsOut::Conv(conv, up)]
    }

    /// After a commit of ours took effect: sends what waited if the group is ready, else
    /// (a device list changed meanwhile, or a check was put off while the commit was
    /// pending) checks the membership again, so nothing waits for a next send.
    fn pump(&mut self, conv: &ConvId) -> Vec<MlsOut> {
        let again = match self.convs.get_mut(conv) {
            Some(st) if st.again => {
                st.again = false;
                st.checked = false;
                true
            }
            _ => false,
        };
        if self.ready(conv) {
            return self.flush(conv);
        }
        let waiting = self.convs.get(conv).is_some_and(|s| !s.waiting.is_empty());
        if (waiting || again) && !self.device.has_pending_commit(&conv.storage_key()) {
            return self.check(conv);
        }
        Vec::new()
    }

    /// Sends what waited, while the group is ready.
    fn flush(&mut self, conv: &ConvId) -> Vec<MlsOut> {
        let mut out = Vec::new();
        loop {
            if !self.ready(conv) {
                break;
            }
            let Some(up) = self.convs.get_mut(conv).and_then(|s| s.waiting.pop_front()) else {
                break;
            };
            out.extend(self.seal(conv.clone(), up));
        }
        out
    }

    /// Both users' devices are known: create the group if needed, commit the missing
    /// devices (or the removed ones), else send what waited.
    fn membership(&mut self, conv: &ConvId) -> Vec<MlsOut> {
        let me = self.me();
        let key = conv.storage_key();
        let Some(st) = self.convs.get_mut(conv) else {
            return Vec::new();
        };
        let answers = std::mem::take(&mut st.answers);
        let room_epoch = st.room_epoch;
        if self.device.has_pending_commit(&key) {
            // A commit of ours (resent after a reconnect) is still waiting for the
            // server's order: MLS allows one at a time. Its ack or refusal checks again.
            return Vec::new();
        }
        let room = matches!(conv, ConvId::Room(_));
        if room && !self.device.has_group(&key) && room_epoch > 0 {
            // The room's group exists: a member adds this device (the next one to send
            // after it learns of it); what waits goes once the welcome arrives.
            return Vec::new();
        }
        let peer = conv.peer_of(&me).unwrap_or(&me).to_owned();
        let peer_devices = answers
            .iter()
            .filter(|(u, ..)| *u == peer)
            .map(|(_, d, _)| d.len())
            .sum::<usize>();
        if !room && peer != me && peer_devices == 0 && !self.device.has_group(&key) {
            // A peer of the first release (or one whose device the server has not heard
            // of yet): the first scheme for what waited; the next send asks again.
            let waiting: Vec<ConvUp> = st.waiting.drain(..).collect();
            return waiting
                .into_iter()
                .map(|up| MlsOut::Legacy(conv.clone(), up))
                .collect();
        }
        if !self.device.has_group(&key)
            && let Err(e) = self.device.create_group(&key)
        {
            return vec![mls_err(e)];
        }
        let members = self.device.members(&key);
        let mut expected: Vec<DeviceInfo> = vec![self.device.info()];
        let mut add = Vec::new();
        for (user, devices, packages) in &answers {
            for d in devices {
                expected.push(DeviceInfo {
                    user: user.clone(),
                    device: d.device.clone(),
                    key: d.key.clone(),
                });
            }
            for p in packages {
                let Ok(info) = DeviceInfo::of_key_package(p) else {
                    continue;
                };
                let listed = devices
                    .iter()
                    .any(|d| d.device == info.device && d.key == info.key);
                if &info.user == user && listed && !members.contains(&info) {
                    add.push(p.clone());
                }
            }
        }
        let remove: Vec<DeviceInfo> = members
            .iter()
            .filter(|m| !expected.contains(m))
            .cloned()
            .collect();
        let body = if room && !remove.is_empty() {
            // In a room, whoever left goes first (they must not read what follows);
            // the additions are the next commit.
            if let Some(st) = self.convs.get_mut(conv) {
                st.again = !add.is_empty();
            }
            self.device.remove(&key, &remove)
        } else if !add.is_empty() {
            self.device.add(&key, &add)
        } else if !remove.is_empty() {
            self.device.remove(&key, &remove)
        } else if room && self.convs.get(conv).is_some_and(|s| s.rekey) {
            self.device.self_update(&key)
        } else {
            if let Some(st) = self.convs.get_mut(conv) {
                st.checked = true;
            }
            return self.flush(conv);
        };
        self.dirty = true;
        match body {
            Ok(body) => {
                if let Some(st) = self.convs.get_mut(conv) {
                    st.checked = true;
                    st.rekey = false;
                }
                self.commit_frame(conv.clone(), body)
            }
            Err(e) => vec![mls_err(e)],
        }
    }

    /// A control frame; `None` when it is not one of MLS's.
    pub fn control(&mut self, down: &ControlDown) -> Option<Vec<MlsOut>> {
        let me = self.me();
        Some(match down {
            ControlDown::KeyPackages {
                conv,
                user,
                devices,
                packages,
            } => {
                let Some(st) = self.convs.get_mut(conv) else {
                    return Some(Vec::new());
                };
                st.answers
                    .push((user.clone(), devices.clone(), packages.clone()));
                st.claiming = st.claiming.saturating_sub(1);
                if st.claiming == 0 {
                    self.membership(conv)
                } else {
                    Vec::new()
                }
            }
            ControlDown::RoomKeyPackages {
                conv,
                epoch,
                members,
                packages,
            } => {
                let Some(st) = self.convs.get_mut(conv) else {
                    return Some(Vec::new());
                };
                // Each package goes with its user's devices (checked again there).
                let mut by_user: HashMap<&str, Vec<Vec<u8>>> = HashMap::new();
                for p in packages {
                    if let Ok(info) = DeviceInfo::of_key_package(p)
                        && let Some((u, _)) = members.iter().find(|(u, _)| *u == info.user)
                    {
                        by_user.entry(u.as_str()).or_default().push(p.clone());
                    }
                }
                st.answers = members
                    .iter()
                    .map(|(u, devices)| {
                        let packages = by_user.remove(u.as_str()).unwrap_or_default();
                        (u.clone(), devices.clone(), packages)
                    })
                    .collect();
                st.room_epoch = *epoch;
                st.claiming = 0;
                self.membership(conv)
            }
            ControlDown::Room(down) => {
                self.room(down);
                return None;
            }
            ControlDown::Devices { user, devices } => {
                self.lists.insert(user.clone(), devices.clone());
                let mut out = vec![MlsOut::Event(Event::Devices {
                    user: user.clone(),
                    devices: devices.iter().map(|d| d.device.clone()).collect(),
                })];
                out.extend(self.codes_answered(user));
                out
            }
            ControlDown::DeviceAdded { user, device } => {
                let list = self.lists.entry(user.clone()).or_default();
                list.retain(|d| d.device != device.device);
                list.push(device.clone());
                if *user == me && device.device == self.device.device() {
                    return Some(Vec::new());
                }
                let mut out = vec![MlsOut::Event(Event::DeviceAdded {
                    user: user.clone(),
                    device: device.device.clone(),
                })];
                out.extend(self.devices_changed(user));
                out
            }
            ControlDown::Error {
                code: ErrorCode::RemovedDevice,
                ..
            } => {
                // The server refused this device (removed from the account): what waits
                // for a group goes out without its text, to be refused and leave the
                // core's outbox; the core shows the error.
                self.removed = true;
                let mut out = Vec::new();
                for (conv, st) in &mut self.convs {
                    st.claiming = 0;
                    st.answers.clear();
                    for up in st.waiting.drain(..) {
                        out.push(removed_frame(conv.clone(), up));
                    }
                }
                if out.is_empty() {
                    return None;
                }
                out
            }
            ControlDown::DeviceRemoved { user, device } => {
                if let Some(list) = self.lists.get_mut(user) {
                    list.retain(|d| d.device != *device);
                }
                let mut out = vec![MlsOut::Event(Event::DeviceRemoved {
                    user: user.clone(),
                    device: device.clone(),
                })];
                if *user == me && device == self.device.device() {
                    self.removed = true;
                    // This device: the server closes this session and refuses it from
                    // now on; say why before the connection goes.
                    out.push(MlsOut::Event(Event::error(
                        ErrorCode::RemovedDevice,
                        format!(
                            "this device ({device}) was removed from this account; start a new device (a new state dir)"
                        ),
                    )));
                    return Some(out);
                }
                out.extend(self.devices_changed(user));
                out
            }
            _ => return None,
        })
    }

    /// `user`'s devices changed: verifications that covered them break, and the groups
    /// shared with them are brought up to date.
    fn devices_changed(&mut self, user: &str) -> Vec<MlsOut> {
        let me = self.me();
        let mut out = Vec::new();
        let broken: Vec<String> = self
            .verified
            .keys()
            .filter(|u| user == me || u.as_str() == user)
            .cloned()
            .collect();
        for u in broken {
            self.verified.remove(&u);
            self.dirty = true;
            out.push(MlsOut::Event(Event::VerificationBroken { user: u }));
        }
        // The next frame in each conversation with them brings the group up to date (it
        // goes on the conversation's stream, which the core opens when it is used).
        for (conv, st) in &mut self.convs {
            // A room's members are the server's to list: any device change may be one.
            if user == me || conv.peer_of(&me) == Some(user) || matches!(conv, ConvId::Room(_)) {
                st.checked = false;
            }
        }
        out
    }

    /// A user command this layer answers; `Err` gives it back.
    pub fn command(
        &mut self,
        cmd: crate::app::client::Command,
    ) -> Result<Vec<MlsOut>, crate::app::client::Command> {
        use crate::app::client::Command;
        let me = self.me();
        let (user, verify) = match cmd {
            Command::Devices { user } => {
                return Ok(vec![MlsOut::Control(ControlUp::Devices {
                    user: user.trim_start_matches('@').to_ascii_lowercase(),
                })]);
            }
            Command::SafetyCode { user } => (user, None),
            Command::Verify { user, code } => (user, Some(code)),
            Command::RemoveDevice { device } => {
                let device = device.trim().to_owned();
                if device.is_empty() {
                    return Ok(vec![MlsOut::Event(Event::error(
                        ErrorCode::BadRequest,
                        "remove_device needs a device id (see the devices command)",
                    ))]);
                }
                if device == self.device.device() {
                    return Ok(vec![MlsOut::Event(Event::error(
                        ErrorCode::BadRequest,
                        format!(
                            "device {device} is the one you are on: remove it from another of your devices"
                        ),
                    ))]);
                }
                return Ok(vec![MlsOut::Control(ControlUp::RemoveDevice { device })]);
            }
            other => return Err(other),
        };
        let user = user.trim_start_matches('@').to_ascii_lowercase();
        let mut users = vec![user.clone()];
        if user != me {
            users.push(me);
        }
        self.codes.push(CodeRequest {
            user,
            verify,
            waiting: users.len(),
        });
        Ok(users
            .into_iter()
            .map(|user| MlsOut::Control(ControlUp::Devices { user }))
            .collect())
    }

    fn codes_answered(&mut self, user: &str) -> Vec<MlsOut> {
        let me = self.me();
        let mut out = Vec::new();
        for r in &mut self.codes {
            if r.user == user || user == me {
                r.waiting = r.waiting.saturating_sub(1);
            }
        }
        let done: Vec<CodeRequest> = {
            let (done, rest) = std::mem::take(&mut self.codes)
                .into_iter()
                .partition(|r| r.waiting == 0);
            self.codes = rest;
            done
        };
        for r in done {
            let keys = |u: &str| -> Vec<Vec<u8>> {
                self.lists
                    .get(u)
                    .map(|l| l.iter().map(|d| d.key.clone()).collect())
                    .unwrap_or_default()
            };
            let code = safety_code(&me, &keys(&me), &r.user, &keys(&r.user));
            match r.verify {
                None => out.push(MlsOut::Event(Event::SafetyCode { user: r.user, code })),
                Some(given) => {
                    let digits =
                        |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
                    if digits(&given) == digits(&code) && !keys(&r.user).is_empty() {
                        self.verified.insert(r.user.clone(), code);
                        self.dirty = true;
                        out.push(MlsOut::Event(Event::Verified { user: r.user }));
                    } else {
                        out.push(MlsOut::Event(Event::error(
                            ErrorCode::BadRequest,
                            format!("the safety code of {} does not match", r.user),
                        )));
                    }
                }
            }
        }
        out
    }

    /// Whether `user` is verified (their code has not changed since).
    pub fn is_verified(&self, user: &str) -> bool {
        self.verified.contains_key(&user.to_ascii_lowercase())
    }

    /// Acknowledgements and refusals of this layer's frames. Returns what to do and
    /// whether the core should see the frame too.
    pub fn answer(&mut self, conv: &ConvId, down: &ConvDown) -> (Vec<MlsOut>, bool) {
        let key = conv.storage_key();
        match down {
            ConvDown::Ack { cmid, .. } => {
                if self.commits.remove(cmid).is_some() {
                    self.dirty = true;
                    let mut out = match self.device.commit_accepted(&key) {
                        Ok(_) => Vec::new(),
                        Err(e) => vec![mls_err(e)],
                    };
                    out.extend(self.pump(conv));
                    return (out, true);
                }
                if let (Some((_, up, _)), ConvDown::Ack { id, .. }) =
                    (self.inflight.remove(cmid), down)
                {
                    match up {
                        ConvUp::Send { body, .. } | ConvUp::React { body, .. } => {
                            self.keep(*id, body)
                        }
                        ConvUp::Edit { target, body, .. } => {
                            self.keep(target, body.clone());
                            self.keep(*id, body);
                        }
                        _ => {}
                    }
                }
                (Vec::new(), true)
            }
            ConvDown::Error {
                code,
                cmid: Some(cmid),
                ..
            } => {
                if self.commits.remove(cmid).is_some() {
                    self.dirty = true;
                    let current = self.convs.get_mut(conv).and_then(|st| {
                        st.checked = false;
                        (st.pending == Some(*cmid)).then(|| st.pending.take())
                    });
                    // Only the commit pending now is dropped: the refusal of an older one
                    // (made in a group this device left for another's welcome) must not
                    // clear a newer commit the server may be storing.
                    if current.is_some() {
                        let _ = self.device.commit_refused(&key);
                        if self.device.epoch(&key) == Some(0) {
                            // Our new group lost to another one: wait for its welcome.
                            self.device.forget(&key);
                        }
                    }
                    let mut out = Vec::new();
                    if *code != ErrorCode::StaleEpoch {
                        out.push(MlsOut::Event(Event::error(
                            *code,
                            format!("an encryption change was refused: {down:?}"),
                        )));
                    }
                    out.extend(self.check(conv));
                    return (out, false);
                }
                if *code == ErrorCode::StaleEpoch
                    && let Some((c, up, tries)) = self.inflight.remove(cmid)
                    && tries < MAX_RETRIES
                {
                    self.inflight
                        .insert(*cmid, (c.clone(), up.clone(), tries + 1));
                    if matches!(c, ConvId::Room(_))
                        && let Some(st) = self.convs.get_mut(&c)
                    {
                        // Maybe the members changed and this device has not heard yet:
                        // check (and commit, an update at least) before sending again.
                        st.checked = false;
                        st.rekey = true;
                    }
                    // The commit that made it stale came first on this stream.
                    return (self.outgoing(c, up), false);
                }
                self.inflight.remove(cmid);
                (Vec::new(), true)
            }
            _ => (Vec::new(), true),
        }
    }

    /// Opens the MLS bodies of a frame from the server in place: application messages
    /// become their text, commits and what this device cannot read by design (before it
    /// joined, its own) become [`EventKind::Handshake`]. Returns what to do and the ids of
    /// the events it handled (the first scheme opens the others).
    pub fn open(&mut self, conv: &ConvId, down: &mut ConvDown) -> (Vec<MlsOut>, HashSet<MsgId>) {
        let mut handled = HashSet::new();
        let mut out = Vec::new();
        self.e2e.clear();
        if !self.is_e2e(conv) {
            return (out, handled);
        }
        let events: Vec<&mut ConvEvent> = match down {
            ConvDown::Event(e) | ConvDown::Backlog(e) => vec![e],
            ConvDown::History { events, .. } => events.iter_mut().collect(),
            _ => Vec::new(),
        };
        let mut joined = false;
        for e in events {
            if let EventKind::Tombstone { target } = e.kind {
                // Deleted for everyone: gone from this device's copy too.
                self.dirty |= self.texts.remove(&target).is_some();
            }
            let Some(body) = e.kind.body_mut() else {
                continue;
            };
            let Some(mls) = MlsBody::decode(body) else {
                continue;
            };
            handled.insert(e.id);
            let mut opened = self.open_one(conv, e, &mls);
            if !matches!(opened, Opened::Text(_) | Opened::Joined(_))
                && let Some(text) = self.texts.get(&e.id)
            {
                opened = Opened::Text(text.clone());
            }
            match opened {
                Opened::Text(text) => {
                    self.keep(e.id, text.clone());
                    if let EventKind::Edit { target, .. } = e.kind {
                        self.keep(target, text.clone());
                    }
                    if let Some(b) = e.kind.body_mut() {
                        *b = text;
                    }
                    self.e2e.insert(e.id);
                }
                Opened::Hide => e.kind = EventKind::Handshake,
                Opened::Joined(events) => {
                    e.kind = EventKind::Handshake;
                    joined = true;
                    out.extend(events);
                }
                Opened::Unreadable(why) => {
                    if let Some(b) = e.kind.body_mut() {
                        *b = UNREADABLE.as_bytes().to_vec();
                    }
                    out.push(MlsOut::Event(Event::error(
                        ErrorCode::BadRequest,
                        format!(
                            "a private message from {} could not be decrypted: {why}",
                            e.sender
                        ),
                    )));
                }
            }
        }
        self.dirty |= !handled.is_empty();
        if joined {
            self.convs.entry(conv.clone()).or_default().checked = true;
        }
        out.extend(self.flush(conv));
        (out, handled)
    }

    fn open_one(&mut self, conv: &ConvId, e: &ConvEvent, body: &MlsBody) -> Opened {
        let key = conv.storage_key();
        let mine = e.sender.eq_ignore_ascii_case(self.device.user());
        let epoch_before = self.device.epoch(&key);
        match self.device.receive(&key, body) {
            Ok(Received::App { from, data }) => {
                if !from.user.eq_ignore_ascii_case(&e.sender) {
                    return Opened::Unreadable(format!(
                        "sent by a device of {}, not of {}",
                        from.user, e.sender
                    ));
                }
                Opened::Text(data)
            }
            Ok(Received::Commit { joined: true, .. }) => Opened::Joined(Vec::new()),
            Ok(_) => Opened::Hide,
            Err(err) => {
                let before_join = match (epoch_before, super::frame_info(&body.encode())) {
                    (None, _) => true,
                    (Some(now), Some(info)) => info.epoch < now,
                    _ => false,
                };
                if matches!(body, MlsBody::Commit { .. }) && !before_join {
                    tracing::warn!(?conv, id = e.id, "a commit did not apply: {err}");
                }
                if matches!(body, MlsBody::Commit { .. }) || mine || before_join {
                    // Its own messages, and those from before this device joined, are not
                    // for this device to read.
                    Opened::Hide
                } else {
                    Opened::Unreadable(err.to_string())
                }
            }
        }
    }

    fn keep(&mut self, id: MsgId, text: Vec<u8>) {
        self.texts.insert(id, text);
        while self.texts.len() > MAX_KEPT_TEXTS {
            self.texts.pop_first();
        }
        self.dirty = true;
    }

    /// Marks `message` events this layer decrypted as end-to-end.
    pub fn mark_e2e(&self, outputs: &mut [crate::app::client::Output]) {
        for o in outputs {
            if let crate::app::client::Output::Event(Event::Message { id, e2e, .. }) = o
                && self.e2e.contains(id)
            {
                *e2e = true;
            }
        }
    }
}

enum Opened {
    Text(Vec<u8>),
    Hide,
    Joined(Vec<MlsOut>),
    Unreadable(String),
}
