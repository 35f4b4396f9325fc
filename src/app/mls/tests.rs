//! The MLS engine with real openmls state: groups of several devices per user, joins,
//! removals, forward secrecy and post-compromise security with copies of saved state.

use super::*;

const CONV: &str = "@alice:bob";

fn dev(user: &str, device: &str) -> Device {
    Device::new(user, device).expect("device")
}

/// `from` commits `body`; the server orders it; every other device applies it.
fn deliver(from: &mut Device, body: &MlsBody, others: &mut [&mut Device]) -> Vec<Received> {
    from.commit_accepted(CONV).expect("merge own commit");
    others
        .iter_mut()
        .map(|d| d.receive(CONV, body).expect("receive"))
        .collect()
}

fn text(r: Received) -> Vec<u8> {
    match r {
        Received::App { data, .. } => data,
        other => panic!("not an application message: {other:?}"),
    }
}

#[test]
fn a_dm_of_three_devices_carries_messages_both_ways_and_names_the_sending_device() {
    let mut a1 = dev("alice", "a1");
    let mut a2 = dev("alice", "a2");
    let mut b1 = dev("bob", "b1");
    a1.create_group(CONV).unwrap();
    let kps = vec![a2.key_package().unwrap(), b1.key_package().unwrap()];
    let add = a1.add(CONV, &kps).unwrap();
    let got = deliver(&mut a1, &add, &mut [&mut a2, &mut b1]);
    assert!(
        got.iter()
            .all(|r| matches!(r, Received::Commit { joined: true, .. }))
    );
    assert_eq!(a1.members(CONV), b1.members(CONV));
    assert_eq!(a1.members(CONV).len(), 3);

    let m = b1.encrypt(CONV, b"hello alice").unwrap();
    for d in [&mut a1, &mut a2] {
        match d.receive(CONV, &m).unwrap() {
            Received::App { from, data } => {
                assert_eq!((from.user.as_str(), from.device.as_str()), ("bob", "b1"));
                assert_eq!(data, b"hello alice");
            }
            other => panic!("{other:?}"),
        }
    }
    // The body on the wire does not contain the text.
    let wire = m.encode();
    assert!(!wire.windows(5).any(|w| w == b"hello"));
    let info = frame_info(&wire).unwrap();
    assert_eq!(
        info,
        FrameInfo {
            epoch: 1,
            commit: false
        }
    );
    // Replaying the same ciphertext is refused (its key was deleted after use).
    assert!(a1.receive(CONV, &m).is_err());
}

#[test]
fn a_device_added_later_reads_from_then_on_and_a_removed_device_reads_nothing_more() {
    let mut a1 = dev("alice", "a1");
    let mut b1 = dev("bob", "b1");
    a1.create_group(CONV).unwrap();
    let add = a1.add(CONV, &[b1.key_package().unwrap()]).unwrap();
    deliver(&mut a1, &add, &mut [&mut b1]);
    let early = a1.encrypt(CONV, b"before b2").unwrap();
    assert_eq!(text(b1.receive(CONV, &early).unwrap()), b"before b2");

    let mut b2 = dev("bob", "b2");
    // Bob's own device adds his new one.
    let add = b1.add(CONV, &[b2.key_package().unwrap()]).unwrap();
    assert!(frame_info(&add.encode()).unwrap().commit);
    let got = deliver(&mut b1, &add, &mut [&mut a1, &mut b2]);
    match &got[0] {
        Received::Commit { added, joined, .. } => {
            assert!(!joined);
            assert_eq!(added.len(), 1);
            assert_eq!(added[0].device, "b2");
        }
        other => panic!("{other:?}"),
    }
    assert!(b2.receive(CONV, &early).is_err(), "history before the join");
    let later = a1.encrypt(CONV, b"after b2").unwrap();
    assert_eq!(text(b2.receive(CONV, &later).unwrap()), b"after b2");
    assert_eq!(text(b1.receive(CONV, &later).unwrap()), b"after b2");

    // Remove b2: it can no longer read.
    let rm = a1.remove(CONV, &[b2.info()]).unwrap();
    let got = deliver(&mut a1, &rm, &mut [&mut b1, &mut b2]);
    assert!(matches!(&got[1], Received::Commit { removed, .. } if removed[0].device == "b2"));
    assert!(!b2.has_group(CONV));
    let after = a1.encrypt(CONV, b"without b2").unwrap();
    assert_eq!(text(b1.receive(CONV, &after).unwrap()), b"without b2");
    assert!(b2.receive(CONV, &after).is_err());
}

#[test]
fn forward_secrecy_a_copy_taken_now_cannot_read_messages_from_before_the_last_update() {
    let mut a1 = dev("alice", "a1");
    let mut b1 = dev("bob", "b1");
    a1.create_group(CONV).unwrap();
    let add = a1.add(CONV, &[b1.key_package().unwrap()]).unwrap();
    deliver(&mut a1, &add, &mut [&mut b1]);
    // A message bob received and one still in flight when he updates.
    let old = a1.encrypt(CONV, b"old secret").unwrap();
    let in_flight = a1.encrypt(CONV, b"in flight").unwrap();
    assert_eq!(text(b1.receive(CONV, &old).unwrap()), b"old secret");
    let upd = b1.self_update(CONV).unwrap();
    deliver(&mut b1, &upd, &mut [&mut a1]);
    // The attacker copies bob's saved state now.
    let stolen = Device::restore(&b1.snapshot()).unwrap();
    for m in [&old, &in_flight] {
        let mut copy = Device::restore(&stolen.snapshot()).unwrap();
        assert!(
            copy.receive(CONV, m).is_err(),
            "an old epoch's message opened"
        );
    }
    // ...while the copy does read the current epoch (so the failure above is the
    // deleted secrets, not a broken restore).
    let now = a1.encrypt(CONV, b"current").unwrap();
    let mut copy = Device::restore(&stolen.snapshot()).unwrap();
    assert_eq!(text(copy.receive(CONV, &now).unwrap()), b"current");
}

#[test]
fn post_compromise_a_copy_taken_before_an_update_cannot_read_after_it() {
    let mut a1 = dev("alice", "a1");
    let mut b1 = dev("bob", "b1");
    a1.create_group(CONV).unwrap();
    let add = a1.add(CONV, &[b1.key_package().unwrap()]).unwrap();
    deliver(&mut a1, &add, &mut [&mut b1]);
    // The attacker copies bob's state, and sees every later frame.
    let mut stolen = Device::restore(&b1.snapshot()).unwrap();
    let before = a1.encrypt(CONV, b"before the update").unwrap();
    // Bob updates his leaf with fresh randomness; the copy gets the same commit.
    let upd = b1.self_update(CONV).unwrap();
    deliver(&mut b1, &upd, &mut [&mut a1]);
    let after = a1.encrypt(CONV, b"after the update").unwrap();
    assert_eq!(text(b1.receive(CONV, &after).unwrap()), b"after the update");
    assert_eq!(
        text(stolen.receive(CONV, &before).unwrap()),
        b"before the update",
        "the copy was a working state"
    );
    // The copy cannot apply the update (it is bob's own commit, made from randomness the
    // copy never had): it stays in the old epoch and reads nothing after.
    let _ = stolen.receive(CONV, &upd);
    assert!(stolen.receive(CONV, &after).is_err());
}

#[test]
fn saved_state_restores_and_goes_on() {
    let mut a1 = dev("alice", "a1");
    let mut b1 = dev("bob", "b1");
    a1.create_group(CONV).unwrap();
    let add = a1.add(CONV, &[b1.key_package().unwrap()]).unwrap();
    deliver(&mut a1, &add, &mut [&mut b1]);
    let mut b1 = Device::restore(&b1.snapshot()).unwrap();
    let mut a1 = Device::restore(&a1.snapshot()).unwrap();
    let m = a1.encrypt(CONV, b"after restart").unwrap();
    assert_eq!(text(b1.receive(CONV, &m).unwrap()), b"after restart");
    assert_eq!(b1.epoch(CONV), Some(1));
    assert!(Device::restore(b"garbage").is_err());
}

#[test]
fn the_expanded_signing_key_signs_as_the_key_pair_does() {
    use openmls_traits::signatures::Signer as _;
    let pair =
        openmls_basic_credential::SignatureKeyPair::new(openmls::prelude::SignatureScheme::ED25519)
            .unwrap();
    let signer = device::DeviceSigner::of(&pair);
    assert!(
        matches!(signer, device::DeviceSigner::Expanded(_)),
        "the fast path is taken"
    );
    for payload in [&b""[..], b"hello", &[7u8; 1000][..]] {
        assert_eq!(signer.sign(payload).unwrap(), pair.sign(payload).unwrap());
    }
    assert_eq!(signer.signature_scheme(), pair.signature_scheme());
}

/// A device reads each group from its storage once and keeps it loaded; what it keeps
/// and what it would save must not part, also after refused messages.
#[test]
fn the_loaded_group_and_the_saved_state_stay_one_through_refused_messages() {
    let mut a1 = dev("alice", "a1");
    let mut b1 = dev("bob", "b1");
    a1.create_group(CONV).unwrap();
    let add = a1.add(CONV, &[b1.key_package().unwrap()]).unwrap();
    deliver(&mut a1, &add, &mut [&mut b1]);
    for i in 0..5 {
        let m = a1.encrypt(CONV, format!("m{i}").as_bytes()).unwrap();
        assert_eq!(
            text(b1.receive(CONV, &m).unwrap()),
            format!("m{i}").as_bytes()
        );
    }
    // A tampered message and a replay are refused, and the group goes on.
    let m = a1.encrypt(CONV, b"tampered").unwrap();
    let MlsBody::App(mut bytes) = m.clone() else {
        panic!("not an application message")
    };
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(b1.receive(CONV, &MlsBody::App(bytes)).is_err());
    assert_eq!(text(b1.receive(CONV, &m).unwrap()), b"tampered");
    assert!(b1.receive(CONV, &m).is_err(), "a replay is refused");
    // A copy made from what each device would save now follows exactly as the device
    // itself: the sender's copy does not reuse a key of the device (the peer opens its
    // message), the receiver's copy opens the next message as the receiver does.
    let mut b_copy = Device::restore(&b1.snapshot()).unwrap();
    let next = a1.encrypt(CONV, b"next").unwrap();
    assert_eq!(text(b1.receive(CONV, &next).unwrap()), b"next");
    assert_eq!(text(b_copy.receive(CONV, &next).unwrap()), b"next");
    let mut a_copy = Device::restore(&a1.snapshot()).unwrap();
    let from_copy = a_copy.encrypt(CONV, b"from the copy").unwrap();
    assert_eq!(
        text(b1.receive(CONV, &from_copy).unwrap()),
        b"from the copy"
    );
    assert!(
        b1.receive(CONV, &from_copy).is_err(),
        "the copy's message is as used as any"
    );
}

#[test]
fn a_refused_commit_is_dropped_and_the_winner_s_welcome_is_joined() {
    // Alice and bob both start the conversation's group; the server orders alice's first.
    let mut a1 = dev("alice", "a1");
    let mut b1 = dev("bob", "b1");
    a1.create_group(CONV).unwrap();
    b1.create_group(CONV).unwrap();
    let a_add = a1.add(CONV, &[b1.key_package().unwrap()]).unwrap();
    let b_add = b1.add(CONV, &[a1.key_package().unwrap()]).unwrap();
    assert_eq!(frame_info(&a_add.encode()).unwrap().epoch, 0);
    assert_eq!(frame_info(&b_add.encode()).unwrap().epoch, 0);
    a1.commit_accepted(CONV).unwrap();
    b1.commit_refused(CONV).unwrap();
    assert!(matches!(
        b1.receive(CONV, &a_add).unwrap(),
        Received::Commit { joined: true, .. }
    ));
    let m = b1.encrypt(CONV, b"one group").unwrap();
    assert_eq!(text(a1.receive(CONV, &m).unwrap()), b"one group");
    // The same exporter secret on both sides.
    assert_eq!(
        a1.exporter(CONV, "reactions", 32).unwrap(),
        b1.exporter(CONV, "reactions", 32).unwrap()
    );
}

#[test]
fn key_packages_name_their_device_and_bad_ones_are_refused() {
    let mut b2 = dev("bob", "b2");
    let kp = b2.key_package().unwrap();
    let info = DeviceInfo::of_key_package(&kp).unwrap();
    assert_eq!((info.user.as_str(), info.device.as_str()), ("bob", "b2"));
    assert_eq!(info.key, b2.info().key);
    let mut bad = kp.clone();
    let n = bad.len();
    bad[n - 3] ^= 1;
    assert!(DeviceInfo::of_key_package(&bad).is_err());
    assert!(DeviceInfo::of_key_package(b"\x00\x01").is_err());
    assert!(Device::new("bob", "a/b").is_err());
    assert_eq!(frame_info(b"\x01abc"), None);
    assert_eq!(frame_info(&[MLS_TAG, 0, 1]), None);
}

#[test]
fn safety_codes_match_on_both_sides_and_change_with_any_device() {
    let a = vec![vec![1u8; 32], vec![2u8; 32]];
    let b = vec![vec![3u8; 32]];
    let code = safety_code("alice", &a, "Bob", &b);
    assert_eq!(
        code,
        safety_code("bob", &b, "alice", &[a[1].clone(), a[0].clone()])
    );
    assert_eq!(code.len(), 60 + 11);
    assert!(
        code.split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit()))
    );
    assert_ne!(code, safety_code("alice", &a[..1], "bob", &b));
    assert_ne!(code, safety_code("alice", &a, "bob", &[vec![4u8; 32]]));
}

mod layer {
    //! The client's MLS layer between core and wire, with the server played by hand.

    use super::super::{MlsClient, MlsOut};
    use crate::app::client::Command;
    use crate::app::ids::{ClientMsgId, ConvId};
    use crate::app::protocol::{
        ControlDown, ControlUp, ConvDown, ConvEvent, ConvUp, DeviceKey, ErrorCode, EventKind,
    };

    fn dm() -> ConvId {
        ConvId::Direct("alice".into(), "bob".into())
    }

    fn key_packages(c: &mut MlsClient) -> Vec<Vec<u8>> {
        match c.logged_in().remove(0) {
            MlsOut::Control(ControlUp::MlsDevice { key_packages, .. }) => key_packages,
            other => panic!("{other:?}"),
        }
    }

    fn listed(c: &MlsClient) -> DeviceKey {
        DeviceKey {
            device: c.device_id().to_owned(),
            key: c.device().info().key,
        }
    }

    fn sent(out: &[MlsOut]) -> (ClientMsgId, Vec<u8>) {
        match out {
            [MlsOut::Conv(_, ConvUp::Send { cmid, body })] => (*cmid, body.clone()),
            other => panic!("expected one send: {other:?}"),
        }
    }

    fn event(seq: u64, sender: &str, cmid: ClientMsgId, body: Vec<u8>) -> ConvDown {
        ConvDown::Event(ConvEvent {
            seq,
            id: seq,
            ts: 0,
            sender: sender.into(),
            cmid,
            kind: EventKind::Message { body },
            mentions: vec![],
        })
    }

    fn ack(cmid: ClientMsgId, seq: u64) -> ConvDown {
        ConvDown::Ack {
            cmid,
            id: seq,
            seq,
            ts: 0,
        }
    }

    #[test]
    fn a_first_send_waits_for_the_group_then_goes_encrypted_and_the_peer_joins_and_reads() {
        let mut alice = MlsClient::new("alice", [1; 16]).unwrap();
        let mut bob = MlsClient::new("bob", [2; 16]).unwrap();
        key_packages(&mut alice);
        let bob_kps = key_packages(&mut bob);
        let msg = ConvUp::Send {
            cmid: ClientMsgId([9; 16]),
            body: b"hi bob".to_vec(),
        };
        let out = alice.outgoing(dm(), msg);
        assert_eq!(out.len(), 2, "claims for both users: {out:?}");
        assert!(
            out.iter()
                .all(|o| matches!(o, MlsOut::Control(ControlUp::ClaimKeyPackages { .. })))
        );
        // A barrier behind the held send waits too (order is kept).
        assert!(alice.outgoing(dm(), ConvUp::Sync { token: 1 }).is_empty());
        let answer = |user: &str, devices, packages| ControlDown::KeyPackages {
            conv: dm(),
            user: user.into(),
            devices,
            packages,
        };
        assert!(
            alice
                .control(&answer("alice", vec![], vec![]))
                .unwrap()
                .is_empty()
        );
        let out = alice
            .control(&answer("bob", vec![listed(&bob)], vec![bob_kps[0].clone()]))
            .unwrap();
        let (commit_id, commit) = sent(&out);
        let (out, pass) = alice.answer(&dm(), &ack(commit_id, 1));
        assert!(pass);
        assert_eq!(out.len(), 2, "the send, then the barrier: {out:?}");
        let MlsOut::Conv(_, ConvUp::Send { cmid, body }) = &out[0] else {
            panic!("{out:?}")
        };
        assert!(!body.windows(6).any(|w| w == b"hi bob"));
        assert!(matches!(out[1], MlsOut::Conv(_, ConvUp::Sync { token: 1 })));

        let mut down = event(1, "alice", commit_id, commit);
        let (_, handled) = bob.open(&dm(), &mut down);
        assert_eq!(handled.len(), 1);
        assert!(matches!(&down, ConvDown::Event(e) if e.kind == EventKind::Handshake));
        let mut down = event(2, "alice", *cmid, body.clone());
        bob.open(&dm(), &mut down);
        let ConvDown::Event(e) = &down else { panic!() };
        assert_eq!(
            e.kind,
            EventKind::Message {
                body: b"hi bob".to_vec()
            }
        );
        // A page of history later: the key is gone, the kept text shows.
        let mut again = event(2, "alice", *cmid, body.clone());
        bob.open(&dm(), &mut again);
        assert_eq!(again, down);

        // Saved and loaded, bob answers in the same group.
        let mut bob = MlsClient::load(&bob.save(), [3; 16]).unwrap();
        let reply = ConvUp::Send {
            cmid: ClientMsgId([8; 16]),
            body: b"hi alice".to_vec(),
        };
        let out = bob.outgoing(dm(), reply);
        assert!(
            matches!(&out[..], [MlsOut::Control(_), MlsOut::Control(_)]),
            "{out:?}"
        );
        bob.control(&ControlDown::KeyPackages {
            conv: dm(),
            user: "bob".into(),
            devices: vec![],
            packages: vec![],
        });
        let out = bob
            .control(&ControlDown::KeyPackages {
                conv: dm(),
                user: "alice".into(),
                devices: vec![listed(&alice)],
                packages: vec![],
            })
            .unwrap();
        let (cmid, body) = sent(&out);
        let mut down = event(3, "bob", cmid, body);
        alice.open(&dm(), &mut down);
        let ConvDown::Event(e) = &down else { panic!() };
        assert_eq!(
            e.kind,
            EventKind::Message {
                body: b"hi alice".to_vec()
            }
        );
    }

    #[test]
    fn a_message_refused_for_a_stale_epoch_is_encrypted_again() {
        let mut alice = MlsClient::new("alice", [4; 16]).unwrap();
        let mut bob = MlsClient::new("bob", [5; 16]).unwrap();
        key_packages(&mut alice);
        let kps = key_packages(&mut bob);
        let first = ConvUp::Send {
            cmid: ClientMsgId([7; 16]),
            body: b"one".to_vec(),
        };
        alice.outgoing(dm(), first);
        alice.control(&ControlDown::KeyPackages {
            conv: dm(),
            user: "alice".into(),
            devices: vec![],
            packages: vec![],
        });
        let out = alice
            .control(&ControlDown::KeyPackages {
                conv: dm(),
                user: "bob".into(),
                devices: vec![listed(&bob)],
                packages: vec![kps[0].clone()],
            })
            .unwrap();
        let (commit_id, _) = sent(&out);
        let (out, _) = alice.answer(&dm(), &ack(commit_id, 1));
        let (cmid, body) = sent(&out);
        let refused = ConvDown::Error {
            code: ErrorCode::StaleEpoch,
            message: "stale".into(),
            cmid: Some(cmid),
        };
        let (out, pass) = alice.answer(&dm(), &refused);
        assert!(!pass, "the core never sees the refusal");
        let (again, body2) = sent(&out);
        assert_eq!(again, cmid);
        assert_ne!(body2, body, "encrypted again");

        // An edit is in flight like a send: refused for its epoch, it is encrypted again
        // (the server checks edits' epochs too, src/app/server/edits.rs).
        let edit_id = ClientMsgId([6; 16]);
        let edit = ConvUp::Edit {
            cmid: edit_id,
            target: 2,
            body: b"one, edited".to_vec(),
        };
        let out = alice.outgoing(dm(), edit);
        let [MlsOut::Conv(_, ConvUp::Edit { body: first, .. })] = &out[..] else {
            panic!("one edit: {out:?}")
        };
        assert!(!first.windows(6).any(|w| w == b"edited"));
        let refused = ConvDown::Error {
            code: ErrorCode::StaleEpoch,
            message: "stale".into(),
            cmid: Some(edit_id),
        };
        let (out, pass) = alice.answer(&dm(), &refused);
        assert!(!pass, "the core never sees the refusal");
        let [MlsOut::Conv(_, ConvUp::Edit { cmid, body, target })] = &out[..] else {
            panic!("the edit again: {out:?}")
        };
        assert_eq!((*cmid, *target), (edit_id, 2));
        assert_ne!(body, first, "encrypted again");
    }

    #[test]
    fn verify_accepts_only_the_code_and_a_device_change_breaks_it() {
        let mut alice = MlsClient::new("alice", [6; 16]).unwrap();
        let bob = MlsClient::new("bob", [7; 16]).unwrap();
        let lists = |c: &mut MlsClient, who: &MlsClient| {
            let mut out = Vec::new();
            for (user, d) in [("alice", listed(who)), ("bob", listed(&bob))] {
                let d = if user == "alice" { listed(c) } else { d };
                out.extend(
                    c.control(&ControlDown::Devices {
                        user: user.into(),
                        devices: vec![d],
                    })
                    .unwrap(),
                );
            }
            out
        };
        alice
            .command(Command::SafetyCode { user: "bob".into() })
            .unwrap();
        let bob_ref = MlsClient::load(&bob.save(), [0; 16]).unwrap();
        let out = lists(&mut alice, &bob_ref);
        let code = out
            .iter()
            .find_map(|o| match o {
                MlsOut::Event(crate::app::client::Event::SafetyCode { code, .. }) => {
                    Some(code.clone())
                }
                _ => None,
            })
            .expect("a code");
        alice
            .command(Command::Verify {
                user: "bob".into(),
                code: "00000 ".repeat(12),
            })
            .unwrap();
        let out = lists(&mut alice, &bob_ref);
        assert!(
            out.iter()
                .any(|o| matches!(o, MlsOut::Event(crate::app::client::Event::Error { .. })))
        );
        assert!(!alice.is_verified("bob"));
        alice
            .command(Command::Verify {
                user: "@Bob".into(),
                code: code.replace(' ', ""),
            })
            .unwrap();
        lists(&mut alice, &bob_ref);
        assert!(alice.is_verified("bob"));
        let out = alice
            .control(&ControlDown::DeviceAdded {
                user: "bob".into(),
                device: DeviceKey {
                    device: "evil".into(),
                    key: vec![1; 32],
                },
            })
            .unwrap();
        assert!(out.iter().any(|o| matches!(
            o,
            MlsOut::Event(crate::app::client::Event::VerificationBroken { user }) if user == "bob"
        )));
        assert!(!alice.is_verified("bob"));
    }

    fn room() -> ConvId {
        ConvId::Room("#secret".into())
    }

    /// What the server tells each member about the private room.
    fn in_private_room(c: &mut MlsClient) {
        let info = crate::app::protocol::RoomInfo {
            key: "#secret".into(),
            name: "#secret".into(),
            topic: String::new(),
            visibility: crate::app::protocol::Visibility::Private,
            members: 1,
            last_activity: 0,
            role: None,
        };
        let down = ControlDown::Room(crate::app::protocol::RoomDown::Joined { room: info });
        assert!(c.control(&down).is_none(), "the core sees room news too");
        assert!(c.is_e2e(&room()));
    }

    fn member_news(c: &mut MlsClient, user: &str, change: crate::app::protocol::MemberChange) {
        let down = ControlDown::Room(crate::app::protocol::RoomDown::Member {
            room: "#secret".into(),
            user: user.into(),
            change,
            by: None,
        });
        assert!(c.control(&down).is_none());
    }

    fn send(text: &str, n: u8) -> ConvUp {
        ConvUp::Send {
            cmid: ClientMsgId([n; 16]),
            body: text.as_bytes().to_vec(),
        }
    }

    /// Opens one event; returns its kind afterwards.
    fn open_one(
        c: &mut MlsClient,
        seq: u64,
        from: &str,
        cmid: ClientMsgId,
        body: &[u8],
    ) -> EventKind {
        let mut down = event(seq, from, cmid, body.to_vec());
        c.open(&room(), &mut down);
        let ConvDown::Event(e) = down else { panic!() };
        e.kind
    }

    fn claim_have(out: &[MlsOut]) -> Vec<(String, String)> {
        match out {
            [MlsOut::Control(ControlUp::ClaimRoomKeyPackages { conv, have })] => {
                assert_eq!(*conv, room());
                have.clone()
            }
            other => panic!("expected one room claim: {other:?}"),
        }
    }

    fn text_of(kind: &EventKind) -> &[u8] {
        match kind {
            EventKind::Message { body } => body,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_private_room_is_one_group_that_follows_joins_and_kicks() {
        let mut alice = MlsClient::new("alice", [11; 16]).unwrap();
        let mut alice2 = MlsClient::new("alice", [12; 16]).unwrap();
        let mut bob = MlsClient::new("bob", [13; 16]).unwrap();
        let mut carol = MlsClient::new("carol", [14; 16]).unwrap();
        let mut dave = MlsClient::new("dave", [15; 16]).unwrap();
        key_packages(&mut alice);
        let a2_kps = key_packages(&mut alice2);
        let bob_kps = key_packages(&mut bob);
        let carol_kps = key_packages(&mut carol);
        let dave_kps = key_packages(&mut dave);
        for c in [&mut alice, &mut alice2, &mut bob, &mut carol, &mut dave] {
            in_private_room(c);
        }
        let answer =
            |epoch, members: Vec<(&str, Vec<DeviceKey>)>, packages| ControlDown::RoomKeyPackages {
                conv: room(),
                epoch,
                members: members
                    .into_iter()
                    .map(|(u, d)| (u.to_owned(), d))
                    .collect(),
                packages,
            };

        // The first sender asks once for the whole room and creates the group.
        let out = alice.outgoing(room(), send("canary hello room", 1));
        assert!(claim_have(&out).is_empty(), "no group yet");
        let members = vec![
            ("alice", vec![listed(&alice), listed(&alice2)]),
            ("bob", vec![listed(&bob)]),
            ("carol", vec![listed(&carol)]),
        ];
        let out = alice
            .control(&answer(
                0,
                members.clone(),
                vec![a2_kps[0].clone(), bob_kps[0].clone(), carol_kps[0].clone()],
            ))
            .unwrap();
        let (add_id, add) = sent(&out);
        let (out, _) = alice.answer(&room(), &ack(add_id, 1));
        let (m1_id, m1) = sent(&out);
        assert!(!m1.windows(5).any(|w| w == b"canar"), "ciphertext only");
        for c in [&mut alice2, &mut bob, &mut carol] {
            assert_eq!(open_one(c, 1, "alice", add_id, &add), EventKind::Handshake);
            assert_eq!(
                text_of(&open_one(c, 2, "alice", m1_id, &m1)),
                b"canary hello room"
            );
        }
        // Alice's second device answers; everyone reads it.
        // (A welcome is a check: the group it joined is the room's.)
        let out = alice2.outgoing(room(), send("from a2", 2));
        let (m2_id, m2) = sent(&out);
        for c in [&mut alice, &mut bob, &mut carol] {
            assert_eq!(text_of(&open_one(c, 3, "alice", m2_id, &m2)), b"from a2");
        }

        // Carol is kicked: an attacker keeps a copy of her state. Bob sends next: he
        // removes her first.
        let carol_copy = carol.save();
        for c in [&mut alice, &mut alice2, &mut bob] {
            member_news(c, "carol", crate::app::protocol::MemberChange::Kicked);
        }
        let out = bob.outgoing(room(), send("canary after carol", 3));
        claim_have(&out);
        let members = vec![
            ("alice", vec![listed(&alice), listed(&alice2)]),
            ("bob", vec![listed(&bob)]),
        ];
        let out = bob.control(&answer(1, members.clone(), vec![])).unwrap();
        let (rm_id, rm) = sent(&out);
        let (out, _) = bob.answer(&room(), &ack(rm_id, 4));
        let (m3_id, m3) = sent(&out);
        for c in [&mut alice, &mut alice2] {
            assert_eq!(open_one(c, 4, "bob", rm_id, &rm), EventKind::Handshake);
            assert_eq!(
                text_of(&open_one(c, 5, "bob", m3_id, &m3)),
                b"canary after carol"
            );
        }
        let mut stolen = MlsClient::load(&carol_copy, [16; 16]).unwrap();
        in_private_room(&mut stolen);
        assert_eq!(
            open_one(&mut stolen, 4, "bob", rm_id, &rm),
            EventKind::Handshake
        );
        let after = open_one(&mut stolen, 5, "bob", m3_id, &m3);
        assert!(
            !matches!(&after, EventKind::Message { body } if body == b"canary after carol"),
            "a removed member's state reads nothing after the commit: {after:?}"
        );
        assert!(!stolen.device().has_group(&room().storage_key()));

        // Dave joins later. His own first send waits: the group exists (epoch 2) and he
        // is not in it; he gets no packages and commits nothing.
        let out = dave.outgoing(room(), send("dave here", 4));
        assert!(claim_have(&out).is_empty());
        let mut with_dave = members.clone();
        with_dave.push(("dave", vec![listed(&dave)]));
        assert!(
            dave.control(&answer(2, with_dave.clone(), vec![]))
                .unwrap()
                .is_empty()
        );
        for c in [&mut alice, &mut alice2, &mut bob] {
            member_news(c, "dave", crate::app::protocol::MemberChange::Joined);
        }
        // Alice's next send adds him, then goes; dave reads it, not what came before.
        let out = alice.outgoing(room(), send("welcome dave", 5));
        claim_have(&out);
        let out = alice
            .control(&answer(2, with_dave, vec![dave_kps[0].clone()]))
            .unwrap();
        let (add_id, add) = sent(&out);
        let (out, _) = alice.answer(&room(), &ack(add_id, 6));
        let (m4_id, m4) = sent(&out);
        assert_eq!(
            open_one(&mut dave, 5, "bob", m3_id, &m3),
            EventKind::Handshake
        );
        // The welcome sends what dave held.
        let mut down = event(6, "alice", add_id, add.clone());
        let (out, _) = dave.open(&room(), &mut down);
        let (held_id, held) = sent(&out);
        assert_eq!(held_id, ClientMsgId([4; 16]));
        assert_eq!(
            text_of(&open_one(&mut dave, 7, "alice", m4_id, &m4)),
            b"welcome dave"
        );
        for c in [&mut bob, &mut alice2] {
            assert_eq!(open_one(c, 6, "alice", add_id, &add), EventKind::Handshake);
            assert_eq!(
                text_of(&open_one(c, 7, "alice", m4_id, &m4)),
                b"welcome dave"
            );
            assert_eq!(
                text_of(&open_one(c, 8, "dave", held_id, &held)),
                b"dave here"
            );
        }

        // Leaving forgets the room's group on that device.
        let left = ControlDown::Room(crate::app::protocol::RoomDown::Left {
            room: "#secret".into(),
            change: crate::app::protocol::MemberChange::Left,
            by: None,
        });
        assert!(dave.control(&left).is_none());
        assert!(!dave.is_e2e(&room()));
        assert!(!dave.device().has_group(&room().storage_key()));
    }

    #[test]
    fn the_update_after_twenty_sends_goes_before_the_next_message() {
        let mut alice = MlsClient::new("alice", [31; 16]).unwrap();
        let mut bob = MlsClient::new("bob", [32; 16]).unwrap();
        key_packages(&mut alice);
        let bob_kps = key_packages(&mut bob);
        in_private_room(&mut alice);
        in_private_room(&mut bob);
        alice.outgoing(room(), send("m0", 100));
        let members = vec![
            ("alice".to_owned(), vec![listed(&alice)]),
            ("bob".to_owned(), vec![listed(&bob)]),
        ];
        let out = alice
            .control(&ControlDown::RoomKeyPackages {
                conv: room(),
                epoch: 0,
                members,
                packages: vec![bob_kps[0].clone()],
            })
            .unwrap();
        let (add_id, _) = sent(&out);
        let (out, _) = alice.answer(&room(), &ack(add_id, 1));
        let (id, _) = sent(&out);
        alice.answer(&room(), &ack(id, 2));
        for n in 1..crate::app::mls::UPDATE_EVERY as u8 {
            let (id, _) = sent(&alice.outgoing(room(), send("m", n)));
            alice.answer(&room(), &ack(id, 2 + n as u64));
        }
        let out = alice.outgoing(room(), send("file", 99));
        let (upd_id, upd) = sent(&out);
        assert!(crate::app::mls::frame_info(&upd).unwrap().commit);
        let (out, _) = alice.answer(&room(), &ack(upd_id, 30));
        let (_, body) = sent(&out);
        let info = crate::app::mls::frame_info(&body).unwrap();
        assert_eq!((info.epoch, info.commit), (2, false));
    }

    #[test]
    fn the_refusal_of_an_old_commit_does_not_drop_the_pending_one() {
        let mut alice = MlsClient::new("alice", [41; 16]).unwrap();
        let mut bob = MlsClient::new("bob", [42; 16]).unwrap();
        let mut carol = MlsClient::new("carol", [43; 16]).unwrap();
        let alice_kps = key_packages(&mut alice);
        let bob_kps = key_packages(&mut bob);
        let carol_kps = key_packages(&mut carol);
        for c in [&mut alice, &mut bob, &mut carol] {
            in_private_room(c);
        }
        let two = |alice: &MlsClient, carol: &MlsClient| {
            vec![
                ("alice".to_owned(), vec![listed(alice)]),
                ("carol".to_owned(), vec![listed(carol)]),
            ]
        };
        // Both first senders make a group and commit at epoch 0; the server stores
        // carol's first.
        alice.outgoing(room(), send("from alice", 1));
        let out = alice
            .control(&ControlDown::RoomKeyPackages {
                conv: room(),
                epoch: 0,
                members: two(&alice, &carol),
                packages: vec![carol_kps[0].clone()],
            })
            .unwrap();
        let (old_id, _) = sent(&out);
        carol.outgoing(room(), send("from carol", 2));
        let out = carol
            .control(&ControlDown::RoomKeyPackages {
                conv: room(),
                epoch: 0,
                members: two(&alice, &carol),
                packages: vec![alice_kps[0].clone()],
            })
            .unwrap();
        let (c_id, c_add) = sent(&out);
        carol.answer(&room(), &ack(c_id, 1));
        // Alice joins by carol's welcome (her held message goes in carol's group) ...
        let (out, _) = alice.open(&room(), &mut event(1, "carol", c_id, c_add));
        let (m_id, _) = sent(&out);
        alice.answer(&room(), &ack(m_id, 2));
        assert_eq!(alice.device().epoch(&room().storage_key()), Some(1));
        // ... and bob joins the room: alice's next send adds him (a new pending commit)
        // before the refusal of her first commit reaches her.
        member_news(
            &mut alice,
            "bob",
            crate::app::protocol::MemberChange::Joined,
        );
        alice.outgoing(room(), send("hi bob", 3));
        let mut three = two(&alice, &carol);
        three.push(("bob".to_owned(), vec![listed(&bob)]));
        let out = alice
            .control(&ControlDown::RoomKeyPackages {
                conv: room(),
                epoch: 1,
                members: three,
                packages: vec![bob_kps[0].clone()],
            })
            .unwrap();
        let (new_id, _) = sent(&out);
        let refused = ConvDown::Error {
            code: ErrorCode::StaleEpoch,
            message: "made in epoch 0, the conversation is at 1".into(),
            cmid: Some(old_id),
        };
        let (out, pass) = alice.answer(&room(), &refused);
        assert!(!pass);
        claim_have(&out);
        alice.answer(&room(), &ack(new_id, 3));
        assert_eq!(
            alice.device().epoch(&room().storage_key()),
            Some(2),
            "the add merged on its ack"
        );
    }

    #[test]
    fn a_public_room_is_not_this_layer_s() {
        let mut alice = MlsClient::new("alice", [21; 16]).unwrap();
        let info = crate::app::protocol::RoomInfo {
            key: "#open".into(),
            name: "#open".into(),
            topic: String::new(),
            visibility: crate::app::protocol::Visibility::Public,
            members: 1,
            last_activity: 0,
            role: None,
        };
        let state = ControlDown::Room(crate::app::protocol::RoomDown::State {
            rooms: vec![info],
            invitations: vec![],
        });
        assert!(alice.control(&state).is_none());
        assert!(!alice.is_e2e(&ConvId::Room("#open".into())));
        assert!(!alice.is_e2e(&ConvId::General));
        assert!(alice.is_e2e(&dm()));
    }
}

#[test]
fn a_peer_s_commit_applies_over_a_pending_one_of_ours() {
    let mut a1 = dev("alice", "a1");
    let mut b1 = dev("bob", "b1");
    let mut c1 = dev("carol", "c1");
    c1.create_group(CONV).unwrap();
    let kps = vec![a1.key_package().unwrap(), b1.key_package().unwrap()];
    let add = c1.add(CONV, &kps).unwrap();
    deliver(&mut c1, &add, &mut [&mut a1, &mut b1]);
    // Both update at once; the server orders bob's first; alice sees it before the
    // refusal of hers.
    let _mine = a1.self_update(CONV).unwrap();
    let theirs = b1.self_update(CONV).unwrap();
    b1.commit_accepted(CONV).unwrap();
    let got = a1.receive(CONV, &theirs);
    assert!(matches!(got, Ok(Received::Commit { .. })), "{got:?}");
    a1.commit_refused(CONV).unwrap();
    c1.receive(CONV, &theirs).unwrap();
    let m = b1.encrypt(CONV, b"after").unwrap();
    assert_eq!(text(a1.receive(CONV, &m).unwrap()), b"after");
}
