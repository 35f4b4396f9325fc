//! The server as MLS's delivery service (`crate::app::mls`, docs/SECURITY.md): it keeps
//! each user's device list and the key packages devices publish, hands out one package
//! per device per claim, tells users about devices of the people they talk to privately,
//! and orders a private conversation's commits: a commit or message made in an epoch
//! other than the conversation's current one is refused (`stale_epoch`), so of two
//! concurrent commits the first stored wins. It never sees a key that opens a message.

use super::ServerCore;
use crate::app::ids::{ClientMsgId, ConnId, ConvId};
use crate::app::mls::{DeviceInfo, MLS_TAG, frame_info};
use crate::app::protocol::{ControlDown, ControlUp, DeviceKey, ErrorCode, MAX_KEY_PACKAGES_UP};
use crate::app::store::{Store, StoreError};

/// What [`ServerCore::mls_gate`] decided about a private body.
pub(super) enum Gate {
    /// Not an MLS body (the first scheme's, or a room's): no epoch to check.
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
            ControlUp::RemoveDevice { device } => {
                if self.store.remove_device(key, &device)? {
                    self.tell_device(
                        key,
                        ControlDown::DeviceRemoved {
                            user: key.to_owned(),
                            device,
                        },
                    )?;
                } else {
                    self.control_error(conn, ErrorCode::NotFound, "no such device");
                }
                Ok(())
            }
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

    /// Tells `user`'s sessions and those of everyone `user` has a private conversation
    /// with.
    fn tell_device(&mut self, user: &str, down: ControlDown) -> Result<(), StoreError> {
        let mut users = vec![user.to_owned()];
        for (conv, _) in self.store.conversations(user)? {
            if let Some(peer) = conv.peer_of(user) {
                users.push(peer.to_owned());
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

    /// Checks a private body's MLS epoch against the conversation's. A resend of the
    /// commit that made the current epoch passes (the store answers it as a resend).
    pub(super) fn mls_gate(
        &mut self,
        conn: ConnId,
        conv: &ConvId,
        cmid: ClientMsgId,
        body: &[u8],
    ) -> Result<Gate, StoreError> {
        if !matches!(conv, ConvId::Direct(..)) || body.first() != Some(&MLS_TAG) {
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
