//! [`MemStore`]: the [`Store`] in memory, for the server core's unit tests (behind the
//! `test-util` feature; it passes the same [`contract`](super::contract) as SQLite).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{
    Reacted, ReactionChange, ResumeRecord, Store, StoreError, StoreResult, StoredEvent, StoredRoom,
    UserRecord,
};
use crate::app::files::is_file_body;
use crate::app::ids::{ClientMsgId, ConvId, MsgId, Seq};
use crate::app::protocol::{ConvEvent, EventKind, Hidden};
use crate::app::rooms::{Effect, Room};
use crate::app::search::{SearchQuery, SearchScope};

/// A [`Store`] in memory, for tests.
#[derive(Default, Debug)]
pub struct MemStore {
    users: HashMap<String, (UserRecord, String)>,
    events: BTreeMap<MsgId, StoredEvent>,
    by_cmid: HashMap<(String, ClientMsgId), MsgId>,
    seqs: HashMap<ConvId, Seq>,
    hidden: HashMap<String, Vec<Hidden>>,
    hidden_set: HashSet<(String, MsgId)>,
    identity: HashMap<String, [u8; 32]>,
    resume: HashMap<[u8; 32], ResumeRecord>,
    /// The newest message id handed out (ids are never reused, even after a room closed).
    last_id: MsgId,
    /// Rooms by key, with their inviters.
    rooms: BTreeMap<String, (Room, BTreeMap<String, String>)>,
    /// Reactions in force: (message, user key, reaction key) -> the event that added it.
    reactions: BTreeMap<(MsgId, String, Vec<u8>), MsgId>,
    /// Read markers by (user key, conversation).
    reads: BTreeMap<(String, ConvId), Seq>,
    /// Users who turned seen receipts off.
    receipts_off: HashSet<String>,
    /// MLS devices by user: device id → signature key.
    devices: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Key packages by (user, device), oldest first.
    key_packages: BTreeMap<(String, String), Vec<Vec<u8>>>,
    /// MLS epochs of private conversations.
    mls_epochs: BTreeMap<String, (u64, ClientMsgId)>,
    /// Last-resort key packages by (user, device).
    last_resort: BTreeMap<(String, String), Vec<u8>>,
    /// When each claimer took one-time key packages of each owner: (claimer, owner) → times.
    claims: BTreeMap<(String, String), Vec<u64>>,
    /// Removed MLS devices (user, device): never announced again.
    removed_devices: HashSet<(String, String)>,
}

impl MemStore {
    fn push(
        &mut self,
        conv: &ConvId,
        sender: &str,
        cmid: ClientMsgId,
        ts: u64,
        kind: EventKind,
    ) -> ConvEvent {
        let seq = self.seqs.entry(conv.clone()).or_default();
        *seq += 1;
        self.last_id += 1;
        let event = ConvEvent {
            seq: *seq,
            id: self.last_id,
            ts,
            sender: sender.to_owned(),
            cmid,
            kind,
            mentions: Vec::new(),
        };
        self.events.insert(
            event.id,
            StoredEvent {
                conv: conv.clone(),
                event: event.clone(),
            },
        );
        event
    }

    fn visible<'a>(
        &'a self,
        conv: &'a ConvId,
        viewer: &'a str,
    ) -> impl Iterator<Item = &'a ConvEvent> + 'a {
        self.events
            .values()
            .filter(move |e| {
                &e.conv == conv && !self.hidden_set.contains(&(viewer.to_owned(), e.event.id))
            })
            .map(|e| &e.event)
    }
}

impl Store for MemStore {
    fn begin(&mut self) -> StoreResult<()> {
        Ok(())
    }

    fn commit(&mut self) -> StoreResult<()> {
        Ok(())
    }

    fn put_resume_token(
        &mut self,
        hash: &[u8; 32],
        record: &ResumeRecord,
        now_ms: u64,
    ) -> StoreResult<()> {
        self.resume.retain(|_, r| r.expires_ms > now_ms);
        self.resume.insert(*hash, record.clone());
        Ok(())
    }

    fn take_resume_token(&mut self, hash: &[u8; 32]) -> StoreResult<Option<ResumeRecord>> {
        Ok(self.resume.remove(hash))
    }

    fn user(&mut self, key: &str) -> StoreResult<Option<UserRecord>> {
        Ok(self.users.get(key).map(|(u, _)| u.clone()))
    }

    fn skeleton_taken(&mut self, skeleton: &str, key: &str) -> StoreResult<bool> {
        Ok(self
            .users
            .iter()
            .any(|(k, (_, s))| s == skeleton && k != key))
    }

    fn create_user(
        &mut self,
        name: &str,
        key: &str,
        skeleton: &str,
        phc: &str,
    ) -> StoreResult<bool> {
        if self.users.contains_key(key) || self.skeleton_taken(skeleton, key)? {
            return Ok(false);
        }
        let rec = UserRecord {
            name: name.to_owned(),
            phc: phc.to_owned(),
        };
        self.users
            .insert(key.to_owned(), (rec, skeleton.to_owned()));
        Ok(true)
    }

    fn set_identity_key(&mut self, key: &str, public: [u8; 32]) -> StoreResult<Option<[u8; 32]>> {
        Ok(self.identity.insert(key.to_owned(), public))
    }

    fn identity_key(&mut self, key: &str) -> StoreResult<Option<[u8; 32]>> {
        Ok(self.identity.get(key).copied())
    }

    fn insert_message(
        &mut self,
        conv: &ConvId,
        sender: &str,
        cmid: ClientMsgId,
        body: &[u8],
        ts: u64,
    ) -> StoreResult<(ConvEvent, bool)> {
        let key = (sender.to_ascii_lowercase(), cmid);
        if let Some(id) = self.by_cmid.get(&key) {
            return Ok((self.events[id].event.clone(), true));
        }
        let e = self.push(
            conv,
            sender,
            cmid,
            ts,
            EventKind::Message {
                body: body.to_vec(),
            },
        );
        self.by_cmid.insert(key, e.id);
        Ok((e, false))
    }

    fn event(&mut self, id: MsgId) -> StoreResult<Option<StoredEvent>> {
        Ok(self.events.get(&id).cloned())
    }

    fn erase(&mut self, id: MsgId, cmid: ClientMsgId, ts: u64) -> StoreResult<ConvEvent> {
        let stored = self
            .events
            .get_mut(&id)
            .ok_or_else(|| StoreError::other("no such message"))?;
        stored.event.kind = EventKind::Erased;
        let (conv, sender) = (stored.conv.clone(), stored.event.sender.clone());
        Ok(self.push(
            &conv,
            &sender,
            cmid,
            ts,
            EventKind::Tombstone { target: id },
        ))
    }

    fn events_after(
        &mut self,
        conv: &ConvId,
        after: Seq,
        limit: usize,
        viewer: &str,
    ) -> StoreResult<Vec<ConvEvent>> {
        Ok(self
            .visible(conv, viewer)
            .filter(|e| e.seq > after)
            .take(limit)
            .cloned()
            .collect())
    }

    fn events_before(
        &mut self,
        conv: &ConvId,
        before: Seq,
        limit: usize,
        viewer: &str,
    ) -> StoreResult<Vec<ConvEvent>> {
        let mut v: Vec<_> = self
            .visible(conv, viewer)
            .filter(|e| e.seq < before)
            .cloned()
            .collect();
        let skip = v.len().saturating_sub(limit);
        Ok(v.split_off(skip))
    }

    fn last_seq(&mut self, conv: &ConvId) -> StoreResult<Seq> {
        Ok(self.seqs.get(conv).copied().unwrap_or(0))
    }

    fn conversations(&mut self, key: &str) -> StoreResult<Vec<(ConvId, Seq)>> {
        let mut v = vec![(ConvId::General, self.last_seq(&ConvId::General)?)];
        v.extend(
            self.seqs
                .iter()
                .filter(|(c, _)| **c != ConvId::General && c.has_member(key))
                .map(|(c, s)| (c.clone(), *s)),
        );
        for (k, (room, _)) in &self.rooms {
            if room.is_member(key) {
                let conv = ConvId::Room(k.clone());
                let seq = self.seqs.get(&conv).copied().unwrap_or(0);
                v.push((conv, seq));
            }
        }
        Ok(v)
    }

    fn load_rooms(&mut self) -> StoreResult<Vec<StoredRoom>> {
        Ok(self
            .rooms
            .iter()
            .map(|(k, (room, inviters))| {
                let conv = ConvId::Room(k.clone());
                let last_activity = self
                    .events
                    .values()
                    .filter(|e| e.conv == conv)
                    .map(|e| e.event.ts)
                    .max()
                    .unwrap_or(0);
                StoredRoom {
                    room: room.clone(),
                    inviters: inviters.clone(),
                    last_activity,
                }
            })
            .collect())
    }

    fn create_room(&mut self, room: &Room) -> StoreResult<bool> {
        let skeleton = room.name.skeleton();
        if self.rooms.contains_key(&room.name.key())
            || self
                .rooms
                .values()
                .any(|(r, _)| r.name.skeleton() == skeleton)
        {
            return Ok(false);
        }
        self.rooms
            .insert(room.name.key(), (room.clone(), BTreeMap::new()));
        Ok(true)
    }

    fn room_changed(&mut self, room: &Room, effects: &[Effect], by: &str) -> StoreResult<()> {
        let key = room.name.key();
        if effects.contains(&Effect::Closed) {
            self.rooms.remove(&key);
            let conv = ConvId::Room(key);
            self.events.retain(|_, e| e.conv != conv);
            self.seqs.remove(&conv);
            self.reads.retain(|(_, c), _| *c != conv);
            self.mls_epochs.remove(&conv.storage_key());
            return Ok(());
        }
        let Some((stored, inviters)) = self.rooms.get_mut(&key) else {
            return Err(StoreError::other(format!("no room {key}")));
        };
        *stored = room.clone();
        for e in effects {
            if let Effect::Invited { user } = e {
                inviters.insert(user.clone(), by.to_owned());
            }
        }
        inviters.retain(|u, _| room.invited.contains(u));
        Ok(())
    }

    fn hide(&mut self, key: &str, conv: &ConvId, id: MsgId) -> StoreResult<Option<u64>> {
        if !self.hidden_set.insert((key.to_owned(), id)) {
            return Ok(None);
        }
        let list = self.hidden.entry(key.to_owned()).or_default();
        let hseq = list.len() as u64 + 1;
        list.push(Hidden {
            conv: conv.clone(),
            id,
            hseq,
        });
        Ok(Some(hseq))
    }

    fn search(
        &mut self,
        query: &SearchQuery,
        scopes: &[SearchScope],
        viewer: &str,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let mut found: Vec<StoredEvent> = self
            .events
            .values()
            .filter(|e| {
                scopes
                    .iter()
                    .any(|s| s.conv == e.conv && s.conv.server_readable() && e.event.seq >= s.from)
                    && !self.hidden_set.contains(&(viewer.to_owned(), e.event.id))
            })
            .filter(|e| match &e.event.kind {
                EventKind::Message { body } | EventKind::Edited { body } => {
                    !is_file_body(body) && std::str::from_utf8(body).is_ok_and(|t| query.matches(t))
                }
                _ => false,
            })
            .cloned()
            .collect();
        found.sort_by_key(|e| std::cmp::Reverse((e.event.ts, e.event.id)));
        found.truncate(limit);
        Ok(found)
    }

    fn hidden_after(&mut self, key: &str, after: u64) -> StoreResult<Vec<Hidden>> {
        Ok(self
            .hidden
            .get(key)
            .map(|l| l.iter().filter(|h| h.hseq > after).cloned().collect())
            .unwrap_or_default())
    }

    fn edit_message(
        &mut self,
        target: MsgId,
        editor: &str,
        cmid: ClientMsgId,
        body: &[u8],
        ts: u64,
    ) -> StoreResult<(ConvEvent, bool)> {
        let key = (editor.to_ascii_lowercase(), cmid);
        if let Some(id) = self.by_cmid.get(&key) {
            return Ok((self.events[id].event.clone(), true));
        }
        let stored = self
            .events
            .get_mut(&target)
            .ok_or_else(|| StoreError::other("no such message"))?;
        stored.event.kind = EventKind::Edited {
            body: body.to_vec(),
        };
        let conv = stored.conv.clone();
        self.erase_edits(target)?;
        let kind = EventKind::Edit {
            target,
            body: body.to_vec(),
        };
        let e = self.push(&conv, editor, cmid, ts, kind);
        self.by_cmid.insert(key, e.id);
        Ok((e, false))
    }

    fn erase_edits(&mut self, target: MsgId) -> StoreResult<()> {
        for s in self.events.values_mut() {
            if let EventKind::Edit { target: t, body } = &mut s.event.kind
                && *t == target
            {
                body.clear();
            }
        }
        Ok(())
    }

    fn advance_read(&mut self, key: &str, conv: &ConvId, upto: Seq) -> StoreResult<Option<Seq>> {
        let marker = self
            .reads
            .entry((key.to_owned(), conv.clone()))
            .or_default();
        if upto <= *marker {
            return Ok(None);
        }
        *marker = upto;
        Ok(Some(upto))
    }

    fn read_markers(&mut self, key: &str) -> StoreResult<Vec<(ConvId, Seq)>> {
        Ok(self
            .reads
            .iter()
            .filter(|((k, _), _)| k == key)
            .map(|((_, c), s)| (c.clone(), *s))
            .collect())
    }

    fn conv_read_markers(&mut self, conv: &ConvId) -> StoreResult<Vec<(String, Seq)>> {
        Ok(self
            .reads
            .iter()
            .filter(|((_, c), _)| c == conv)
            .map(|((k, _), s)| (k.clone(), *s))
            .collect())
    }

    fn set_receipts(&mut self, key: &str, on: bool) -> StoreResult<()> {
        if on {
            self.receipts_off.remove(key);
        } else {
            self.receipts_off.insert(key.to_owned());
        }
        Ok(())
    }

    fn react(&mut self, change: &ReactionChange<'_>) -> StoreResult<Reacted> {
        let ReactionChange {
            conv,
            target,
            user,
            cmid,
            key,
            on,
            body,
            ts,
        } = *change;
        let by = (user.to_ascii_lowercase(), cmid);
        if let Some(id) = self.by_cmid.get(&by) {
            return Ok(Reacted::Resent(self.events[id].event.clone()));
        }
        let slot = (target, user.to_ascii_lowercase(), key.to_vec());
        if self.reactions.contains_key(&slot) == on {
            return Ok(Reacted::Unchanged);
        }
        let kind = EventKind::Reaction {
            target,
            on,
            body: body.to_vec(),
        };
        let e = self.push(conv, user, cmid, ts, kind);
        self.by_cmid.insert(by, e.id);
        if on {
            self.reactions.insert(slot, e.id);
        } else {
            self.reactions.remove(&slot);
        }
        Ok(Reacted::Applied(e))
    }

    fn reactions(&mut self, conv: &ConvId, targets: &[MsgId]) -> StoreResult<Vec<ConvEvent>> {
        let mut ids: Vec<MsgId> = self
            .reactions
            .iter()
            .filter(|((t, _, _), _)| targets.contains(t))
            .map(|(_, id)| *id)
            .collect();
        ids.sort_unstable();
        Ok(ids
            .iter()
            .filter_map(|id| self.events.get(id))
            .filter(|s| &s.conv == conv)
            .map(|s| s.event.clone())
            .collect())
    }

    fn receipts(&mut self, key: &str) -> StoreResult<bool> {
        Ok(!self.receipts_off.contains(key))
    }

    fn put_device(&mut self, user: &str, device: &str, key: &[u8]) -> StoreResult<bool> {
        let old = self
            .devices
            .entry(user.to_owned())
            .or_default()
            .insert(device.to_owned(), key.to_vec());
        Ok(old.as_deref() != Some(key))
    }

    fn remove_device(&mut self, user: &str, device: &str) -> StoreResult<bool> {
        self.key_packages
            .remove(&(user.to_owned(), device.to_owned()));
        self.last_resort
            .remove(&(user.to_owned(), device.to_owned()));
        let there = self
            .devices
            .get_mut(user)
            .and_then(|d| d.remove(device))
            .is_some();
        if there {
            self.removed_devices
                .insert((user.to_owned(), device.to_owned()));
        }
        Ok(there)
    }

    fn device_removed(&mut self, user: &str, device: &str) -> StoreResult<bool> {
        Ok(self
            .removed_devices
            .contains(&(user.to_owned(), device.to_owned())))
    }

    fn devices(&mut self, user: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
        Ok(self
            .devices
            .get(user)
            .map(|d| d.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    fn add_key_packages(
        &mut self,
        user: &str,
        device: &str,
        packages: &[Vec<u8>],
    ) -> StoreResult<()> {
        let kps = self
            .key_packages
            .entry((user.to_owned(), device.to_owned()))
            .or_default();
        kps.extend(packages.iter().cloned());
        let extra = kps.len().saturating_sub(super::MAX_KEY_PACKAGES);
        kps.drain(..extra);
        Ok(())
    }

    fn claim_key_package(&mut self, user: &str, device: &str) -> StoreResult<Option<Vec<u8>>> {
        let kps = self
            .key_packages
            .get_mut(&(user.to_owned(), device.to_owned()));
        Ok(kps.and_then(|k| (!k.is_empty()).then(|| k.remove(0))))
    }

    fn put_last_resort_key_package(
        &mut self,
        user: &str,
        device: &str,
        package: &[u8],
    ) -> StoreResult<()> {
        self.last_resort
            .insert((user.to_owned(), device.to_owned()), package.to_vec());
        Ok(())
    }

    fn last_resort_key_package(
        &mut self,
        user: &str,
        device: &str,
    ) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .last_resort
            .get(&(user.to_owned(), device.to_owned()))
            .cloned())
    }

    fn key_package_claims(&mut self, claimer: &str, owner: &str, since: u64) -> StoreResult<u64> {
        Ok(self
            .claims
            .get(&(claimer.to_owned(), owner.to_owned()))
            .map_or(0, |t| t.iter().filter(|&&at| at >= since).count() as u64))
    }

    fn note_key_package_claim(
        &mut self,
        claimer: &str,
        owner: &str,
        at: u64,
        forget_before: u64,
    ) -> StoreResult<()> {
        let times = self
            .claims
            .entry((claimer.to_owned(), owner.to_owned()))
            .or_default();
        times.retain(|&t| t >= forget_before);
        times.push(at);
        Ok(())
    }

    fn mls_epoch(&mut self, conv: &ConvId) -> StoreResult<(u64, Option<ClientMsgId>)> {
        Ok(match self.mls_epochs.get(&conv.storage_key()) {
            Some((e, c)) => (*e, Some(*c)),
            None => (0, None),
        })
    }

    fn set_mls_epoch(&mut self, conv: &ConvId, epoch: u64, cmid: ClientMsgId) -> StoreResult<()> {
        self.mls_epochs.insert(conv.storage_key(), (epoch, cmid));
        Ok(())
    }
}
