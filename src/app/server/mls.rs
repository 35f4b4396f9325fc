//! The server as MLS's delivery service (`crate::app::mls`, docs/SECURITY.md): it keeps
//! each user's device list and the key packages devices publish, hands out one package
//! per device per claim, tells users about devices of the people they talk to privately,
//! and orders a private conversation's commits: a commit or message made in an epoch
//! other than the conversation's current one is refused (`stale_epoch`), so of two
//! concurrent commits the first stored wins. It never sees a key that opens a message.
//!
//! Private (invite-only) rooms are MLS groups too: a member asks once per membership
//! check for the room's members with their devices and gets key packages only for the
//! devices its group lacks ([`ControlUp::ClaimRoomKeyPackages`]); only members of the
//! private room get them. Their epochs are ordered like a private conversation's, and a
//! plaintext body is refused in a private room from a device that announced MLS, and
//! from anyone once the room's group has a commit (docs/SECURITY.md).

use super::ServerCore;
use crate::app::ids::{ClientMsgId, ConnId, ConvId};
use crate::app::mls::{DeviceInfo, MLS_TAG, frame_info};
use crate::app::protocol::{ControlDown, ControlUp, DeviceKey, ErrorCode, MAX_KEY_PACKAGES_UP};
use crate::app::rooms::Visibility;
use crate::app::store::{Store, StoreError};

/// What a removed device is told, when it announces itself again and when its session
/// is closed.
fn removed_message(device: &str) -> String {
    format!("device {device} was removed from this account; start a new device (a new state dir)")
}

/// What [`ServerCore::mls_gate`] decided about a private body.
pub(super) enum Gate {
    /// Not an MLS body (the first scheme's, or a server-readable room's): no epoch to
    /// check.
    Plain,
    /// An MLS message of the current epoch; `Some(epoch)` is a commit that moves the
    /// conversation to that epoch once stored.
    Mls(Option<u64>),
    /// Refused (the error was sent).
    Refused,
}

impl<S: Store> ServerCore<S> {
    /// An MLS command from a logged-in session of `key`.
    pub(super) fn mls_command(
        &mut self,
        conn: ConnId,
        key: &str,
        up: ControlUp,
    ) -> Result<(), StoreError> {
        match up {
            ControlUp::MlsDevice {
                device,
                key_packages,
            } => self.mls_device(conn, key, device, key_packages),
            ControlUp::Devices { user } => {
                let user = user.to_ascii_lowercase();
                let devices = self.device_keys(&user)?;
                self.control_out(conn, ControlDown::Devices { user, devices });
                Ok(())
            }
            ControlUp::ClaimKeyPackages { conv, user } => self.claim(conn, key, conv, user),
            ControlUp::ClaimRoomKeyPackages { conv, have } => {
                self.claim_room(conn, key, conv, have)
            }
            ControlUp::RemoveDevice { device } => self.remove_device(conn, key, device),
            _ => Ok(()),
        }
    }

    fn device_keys(&mut self, user: &str) -> Result<Vec<DeviceKey>, StoreError> {
        Ok(self
            .store
            .devices(user)?
            .into_iter()
            .map(|(device, key)| DeviceKey { device, key })
            .collect())
    }

    /// Removes one of `key`'s devices for good: its packages go, the removal is stored
    /// (the device can never announce itself again), everyone concerned is told (peers'
    /// clients then commit its removal from every group they share with it), and the
    /// sessions logged in as that device are closed after that notice.
    fn remove_device(&mut self, conn: ConnId, key: &str, device: String) -> Result<(), StoreError> {
        if !self.store.remove_device(key, &device)? {
            let msg = format!("{key} has no device {device}");
            self.control_error(conn, ErrorCode::NotFound, msg);
            return Ok(());
        }
        self.tell_device(
            key,
            ControlDown::DeviceRemoved {
                user: key.to_owned(),
                device: device.clone(),
            },
        )?;
        let on_it: Vec<ConnId> = self
            .online
            .get(key)
            .into_iter()
            .flat_map(|s| s.iter().copied())
            .filter(|c| self.mls_devices.get(c) == Some(&device))
            .collect();
        for c in on_it {
            self.mls_devices.remove(&c);
            self.mls_refused.insert(c);
            self.out.push(super::Output::Close {
                conn: c,
                reason: removed_message(&device),
            });
        }
        Ok(())
    }

    fn mls_device(
        &mut self,
        conn: ConnId,
        key: &str,
        device: String,
        packages: Vec<Vec<u8>>,
    ) -> Result<(), StoreError> {
        if packages.is_empty() || packages.len() > MAX_KEY_PACKAGES_UP {
            let msg = format!("send 1 to {MAX_KEY_PACKAGES_UP} key packages");
            self.control_error(conn, ErrorCode::BadRequest, msg);
            return Ok(());
        }
        let mut sig_key: Option<Vec<u8>> = None;
        for p in &packages {
            let ok = match DeviceInfo::of_key_package(p) {
                Ok(info) => {
                    info.user == key
                        && info.device == device
                        && sig_key.get_or_insert_with(|| info.key.clone()) == &info.key
                }
                Err(_) => false,
            };
            if !ok {
                let msg = "a key package that is not this user's device, or not valid";
                self.control_error(conn, ErrorCode::BadRequest, msg);
                return Ok(());
            }
        }
        if self.store.device_removed(key, &device)? {
            self.mls_refused.insert(conn);
            self.control_error(conn, ErrorCode::RemovedDevice, removed_message(&device));
            return Ok(());
        }
        let sig_key = sig_key.unwrap_or_default();
        self.mls_devices.insert(conn, device.clone());
        if self.store.put_device(key, &device, &sig_key)? {
            self.tell_device(
                key,
                ControlDown::DeviceAdded {
                    user: key.to_owned(),
                    device: DeviceKey {
                        device: device.clone(),
                        key: sig_key,
                    },
                },
            )?;
        }
        self.store_key_packages(key, &device, &packages)
    }

    /// A session of a removed device gets no key packages (it could only add itself
    /// back); `true` (with an error sent) when `conn` is one.
    fn refused_device(&mut self, conn: ConnId) -> bool {
        if self.mls_refused.contains(&conn) {
            let msg = "this device was removed from this account: it gets no key packages";
            self.control_error(conn, ErrorCode::RemovedDevice, msg);
            return true;
        }
        false
    }

    /// A session of a removed device cannot write in an end-to-end conversation (its
    /// client sends such frames without their text so that they are refused here and
    /// leave its outbox); `true` (with the error sent) when refused.
    pub(super) fn removed_write_refused(
        &mut self,
        conn: ConnId,
        conv: &ConvId,
        cmid: ClientMsgId,
    ) -> bool {
        if self.mls_refused.contains(&conn) && self.is_e2e(conv) {
            let msg = "this device was removed from this account: it cannot write in \
                       end-to-end conversations; start a new device (a new state dir)";
            self.conv_error(conn, conv, ErrorCode::RemovedDevice, msg, Some(cmid));
            return true;
        }
        false
    }

    /// Whether the server relays `conv`'s bodies as end-to-end ciphertext: private
    /// conversations and private (invite-only) rooms. `#general` and public rooms are
    /// server-readable (the server moderates and searches them).
    pub(super) fn is_e2e(&self, conv: &ConvId) -> bool {
        match conv {
            ConvId::Direct(..) => true,
            ConvId::Room(room) => self
                .rooms
                .get(room)
                .is_some_and(|e| e.room.visibility == Visibility::Private),
            ConvId::General => false,
        }
    }

    /// The members of `conv` when it is a private room `user` is a member of.
    fn private_room_members(&self, conv: &ConvId, user: &str) -> Option<Vec<String>> {
        let ConvId::Room(room) = conv else {
            return None;
        };
        let e = self.rooms.get(room)?;
        (e.room.visibility == Visibility::Private && e.room.is_member(user))
            .then(|| e.room.members.keys().cloned().collect())
    }

    /// Refuses (with an error to `conn`) a body that is not MLS in a private room, from
    /// a session that announced an MLS device (it would be a client bug or a downgrade),
    /// or from anyone once the room's group has a commit. Before that, a client of the
    /// release without MLS may still write in clear (docs/SECURITY.md).
    pub(super) fn plaintext_refused(
        &mut self,
        conn: ConnId,
        conv: &ConvId,
        cmid: Option<ClientMsgId>,
        body: &[u8],
    ) -> Result<bool, StoreError> {
        if !matches!(conv, ConvId::Room(_)) || !self.is_e2e(conv) || body.first() == Some(&MLS_TAG)
        {
            return Ok(false);
        }
        let (epoch, last) = if self.mls_devices.contains_key(&conn) {
            (1, None)
        } else {
            self.store.mls_epoch(conv)?
        };
        if epoch == 0 && last.is_none() {
            return Ok(false);
        }
        self.conv_error(
            conn,
            conv,
            ErrorCode::BadRequest,
            "this private room is end-to-end encrypted: a message in clear is refused",
            cmid,
        );
        Ok(true)
    }

    /// Tells `user`'s sessions and those of everyone `user` has a private conversation
    /// or a private room with.
    fn tell_device(&mut self, user: &str, down: ControlDown) -> Result<(), StoreError> {
        let mut users = vec![user.to_owned()];
        for (conv, _) in self.store.conversations(user)? {
            if let Some(peer) = conv.peer_of(user) {
                users.push(peer.to_owned());
            }
        }
        for e in self.rooms.values() {
            if e.room.visibility == Visibility::Private && e.room.is_member(user) {
                users.extend(e.room.members.keys().cloned());
            }
        }
        users.sort();
        users.dedup();
        let conns: Vec<ConnId> = users
            .iter()
            .filter_map(|u| self.online.get(u))
            .flat_map(|s| s.iter().copied())
            .collect();
        for c in conns {
            self.control_out(c, down.clone());
        }
        Ok(())
    }

    fn claim(
        &mut self,
        conn: ConnId,
        key: &str,
        conv: ConvId,
        user: String,
    ) -> Result<(), StoreError> {
        if self.refused_device(conn) {
            return Ok(());
        }
        let user = user.to_ascii_lowercase();
        let member = |u: &str| match &conv {
            ConvId::Direct(a, b) => a == u || b == u,
            _ => false,
        };
        if !member(key) || !member(&user) {
            self.control_error(
                conn,
                ErrorCode::NotMember,
                "key packages are for members of a private conversation",
            );
            return Ok(());
        }
        let asking = self.mls_devices.get(&conn).cloned();
        let devices: Vec<DeviceKey> = self
            .device_keys(&user)?
            .into_iter()
            .filter(|d| !(user == key && asking.as_deref() == Some(d.device.as_str())))
            .collect();
        let mut packages = Vec::new();
        for d in &devices {
            if let Some(p) = self.hand_out_key_package(key, &user, &d.device)? {
                packages.push(p);
            }
        }
        self.control_out(
            conn,
            ControlDown::KeyPackages {
                conv,
                user,
                devices,
                packages,
            },
        );
        Ok(())
    }

    /// A private room's members and devices, with key packages for the devices the
    /// asking device's group lacks (`have`): one answer for the whole room.
    fn claim_room(
        &mut self,
        conn: ConnId,
        key: &str,
        conv: ConvId,
        have: Vec<(String, String)>,
    ) -> Result<(), StoreError> {
        if self.refused_device(conn) {
            return Ok(());
        }
        let Some(users) = self.private_room_members(&conv, key) else {
            self.control_error(
                conn,
                ErrorCode::NotMember,
                "key packages of a room are for members of that private room",
            );
            return Ok(());
        };
        let asking = self.mls_devices.get(&conn).cloned();
        // Once the room's group has a commit, only a device in it can add others: one
        // that is not (it waits for its own welcome) gets the lists and no packages, so
        // its checks do not drain everyone's packages.
        let (epoch, _) = self.store.mls_epoch(&conv)?;
        let in_group = have
            .iter()
            .any(|(u, d)| u == key && asking.as_deref() == Some(d.as_str()));
        let give = epoch == 0 || in_group;
        let mut members = Vec::with_capacity(users.len());
        let mut packages = Vec::new();
        for user in users {
            let devices = self.device_keys(&user)?;
            for d in &devices {
                let asker = user == key && asking.as_deref() == Some(d.device.as_str());
                let had = have.iter().any(|(u, dev)| *u == user && *dev == d.device);
                if give
                    && !asker
                    && !had
                    && let Some(p) = self.store.claim_key_package(&user, &d.device)?
                {
                    packages.push(p);
                }
            }
            members.push((user, devices));
        }
        self.control_out(
            conn,
            ControlDown::RoomKeyPackages {
                conv,
                epoch,
                members,
                packages,
            },
        );
        Ok(())
    }

    /// Checks a private body's MLS epoch against the conversation's. A resend of the
    /// commit that made the current epoch passes (the store answers it as a resend).
    pub(super) fn mls_gate(
        &mut self,
        conn: ConnId,
        conv: &ConvId,
        cmid: ClientMsgId,
        body: &[u8],
    ) -> Result<Gate, StoreError> {
        if self.removed_write_refused(conn, conv, cmid)
            || self.plaintext_refused(conn, conv, Some(cmid), body)?
        {
            return Ok(Gate::Refused);
        }
        if !self.is_e2e(conv) || body.first() != Some(&MLS_TAG) {
            return Ok(Gate::Plain);
        }
        let Some(info) = frame_info(body) else {
            self.conv_error(
                conn,
                conv,
                ErrorCode::BadRequest,
                "malformed MLS message",
                Some(cmid),
            );
            return Ok(Gate::Refused);
        };
        let (current, last) = self.store.mls_epoch(conv)?;
        if info.commit && info.epoch + 1 == current && last == Some(cmid) {
            return Ok(Gate::Mls(None));
        }
        if let ConvId::Room(room) = conv
            && !info.commit
            && info.epoch == current
            && self.mls_rekey.contains(room)
        {
            // The members changed since the last commit: one that follows them (or an
            // update) comes first, so a member who left reads nothing more and one who
            // joined reads what follows. The sender commits, then sends again.
            let msg = "the room's members changed: a commit comes first";
            self.conv_error(conn, conv, ErrorCode::StaleEpoch, msg, Some(cmid));
            return Ok(Gate::Refused);
        }
        if info.epoch != current {
            let msg = format!(
                "made in epoch {}, the conversation is at {current}",
                info.epoch
            );
            self.conv_error(conn, conv, ErrorCode::StaleEpoch, msg, Some(cmid));
            return Ok(Gate::Refused);
        }
        Ok(Gate::Mls(info.commit.then_some(current + 1)))
    }
}
