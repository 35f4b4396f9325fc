//! Key packages that cannot be drained, through the server core with real MLS key
//! packages: a claimer gets at most `CLAIM_LIMIT` one-time packages of another user's
//! devices per window and the last-resort package beyond it or once they are gone; the
//! limit is per claimer and ends with its window.

use super::World;
use crate::app::ids::{ConnId, ConvId};
use crate::app::limits::Limits;
use crate::app::mls::{Device, is_last_resort};
use crate::app::protocol::{ControlDown, ControlUp, MAX_KEY_PACKAGES_UP};
use crate::app::server::{CLAIM_LIMIT, CLAIM_WINDOW_MS, Input, Output};
use crate::app::store::MAX_KEY_PACKAGES;

fn upload(w: &mut World, conn: ConnId, d: &mut Device, one_time: usize) -> Vec<u8> {
    let last = d.last_resort_key_package().unwrap();
    let mut left = one_time;
    let mut first = true;
    while left > 0 || first {
        let n = left.min(MAX_KEY_PACKAGES_UP - 1);
        let mut packages: Vec<Vec<u8>> = (0..n).map(|_| d.key_package().unwrap()).collect();
        packages.push(last.clone());
        w.server_in(Input::Control {
            conn,
            up: ControlUp::MlsDevice {
                device: d.device().to_owned(),
                key_packages: packages,
            },
        });
        left -= n;
        first = false;
    }
    last
}

/// Claims `user`'s packages on `conv` as `conn`: (device, package) pairs handed out.
fn claim(w: &mut World, conn: ConnId, conv: &ConvId, user: &str) -> Vec<Vec<u8>> {
    w.trace.clear();
    w.server_in(Input::Control {
        conn,
        up: ControlUp::ClaimKeyPackages {
            conv: conv.clone(),
            user: user.into(),
        },
    });
    w.trace
        .iter()
        .find_map(|o| match o {
            Output::Control {
                conn: c,
                down: ControlDown::KeyPackages { packages, .. },
            } if *c == conn => Some(packages.clone()),
            _ => None,
        })
        .expect("an answer with key packages")
}

#[test]
fn a_claimer_over_its_limit_gets_the_last_resort_package_and_never_drains_the_others() {
    assert!(
        CLAIM_LIMIT < 3 * MAX_KEY_PACKAGES as u64,
        "the test needs more packages than the limit"
    );
    let mut w = World::new(Limits::default());
    let (a, b, c) = (w.login("alice"), w.login("bob"), w.login("carol"));
    let mut lasts = Vec::new();
    for name in ["a1", "a2", "a3"] {
        let mut d = Device::new("alice", name).unwrap();
        lasts.push(upload(&mut w, a, &mut d, MAX_KEY_PACKAGES));
    }
    let bob_dm = ConvId::Direct("alice".into(), "bob".into());
    let mut one_time = 0;
    let mut last_resort = 0;
    for _ in 0..(CLAIM_LIMIT as usize / 3 + 5) {
        let got = claim(&mut w, b, &bob_dm, "alice");
        assert_eq!(got.len(), 3, "a package for each device, every time");
        for p in &got {
            if is_last_resort(p) {
                assert!(lasts.contains(p), "the device's own last-resort package");
                last_resort += 1;
            } else {
                one_time += 1;
            }
        }
    }
    assert_eq!(
        one_time, CLAIM_LIMIT,
        "no more one-time packages than the limit"
    );
    assert!(last_resort > 0);

    // Another claimer is not held back by bob's claims: alice's remaining one-time
    // packages (60 - 50 = 10) go to carol, then the last-resort ones.
    let carol_dm = ConvId::Direct("alice".into(), "carol".into());
    let mut carol_one_time = 0;
    for _ in 0..5 {
        for p in claim(&mut w, c, &carol_dm, "alice") {
            if !is_last_resort(&p) {
                carol_one_time += 1;
            }
        }
    }
    assert_eq!(carol_one_time, 3 * MAX_KEY_PACKAGES as u64 - CLAIM_LIMIT);

    // An hour later bob is under his limit again: fresh one-time packages reach him.
    w.now += CLAIM_WINDOW_MS + 1;
    let mut d1 = Device::new("alice", "a4").unwrap();
    upload(&mut w, a, &mut d1, 3);
    let got = claim(&mut w, b, &bob_dm, "alice");
    assert_eq!(got.len(), 4);
    assert_eq!(got.iter().filter(|p| !is_last_resort(p)).count(), 1);
}

/// The last-resort package is a real MLS key package that the same device can join two
/// groups with: its private part stays after the first welcome.
#[test]
fn a_last_resort_package_joins_more_than_one_group() {
    let mut alice = Device::new("alice", "a1").unwrap();
    let mut carol = Device::new("carol", "c1").unwrap();
    let mut bob = Device::new("bob", "b1").unwrap();
    let last = bob.last_resort_key_package().unwrap();
    assert!(is_last_resort(&last));
    assert!(!is_last_resort(&bob.key_package().unwrap()));
    for (d, conv) in [(&mut alice, "dm:alice:bob"), (&mut carol, "dm:bob:carol")] {
        d.create_group(conv).unwrap();
        let commit = d.add(conv, std::slice::from_ref(&last)).unwrap();
        d.commit_accepted(conv).unwrap();
        let joined = bob.receive(conv, &commit).unwrap();
        assert!(
            matches!(
                joined,
                crate::app::mls::Received::Commit { joined: true, .. }
            ),
            "{joined:?}"
        );
        let msg = d.encrypt(conv, b"hello").unwrap();
        assert!(matches!(
            bob.receive(conv, &msg).unwrap(),
            crate::app::mls::Received::App { data, .. } if data == b"hello"
        ));
    }
}

/// The control messages the server sent to `conn` since the trace was cleared.
fn downs(w: &World, conn: ConnId) -> Vec<ControlDown> {
    w.trace
        .iter()
        .filter_map(|o| match o {
            Output::Control { conn: c, down } if *c == conn => Some(down.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_removed_device_is_closed_refused_for_good_and_gets_no_key_packages() {
    use crate::app::protocol::ErrorCode;
    let mut w = World::new(Limits::default());
    let (a1, a2, b) = (w.login("alice"), w.login("alice"), w.login("bob"));
    let mut d1 = Device::new("alice", "a1").unwrap();
    let mut d2 = Device::new("alice", "a2").unwrap();
    upload(&mut w, a1, &mut d1, 3);
    upload(&mut w, a2, &mut d2, 3);
    let dm = ConvId::Direct("alice".into(), "bob".into());
    assert_eq!(claim(&mut w, b, &dm, "alice").len(), 2, "both devices");

    w.trace.clear();
    w.server_in(Input::Control {
        conn: a1,
        up: ControlUp::RemoveDevice {
            device: "a2".into(),
        },
    });
    let removed = |d: &ControlDown| matches!(d, ControlDown::DeviceRemoved { user, device } if user == "alice" && device == "a2");
    assert!(downs(&w, a1).iter().any(removed));
    assert!(
        downs(&w, a2).iter().any(removed),
        "the removed device is told"
    );
    assert!(
        w.trace
            .iter()
            .any(|o| matches!(o, Output::Close { conn, reason }
            if *conn == a2 && reason.contains("was removed"))),
        "and its session is closed: {:?}",
        w.trace
    );
    assert!(
        !w.trace
            .iter()
            .any(|o| matches!(o, Output::Close { conn, .. } if *conn == a1)),
        "the other device stays"
    );
    w.server_in(Input::Disconnected { conn: a2 });

    // It logs in again and announces itself: refused, stored nowhere, nobody told.
    let again = w.login("alice");
    w.trace.clear();
    upload(&mut w, again, &mut d2, 3);
    let got = downs(&w, again);
    assert!(
        got.iter().any(
            |d| matches!(d, ControlDown::Error { code: ErrorCode::RemovedDevice, message }
            if message.contains("device a2 was removed from this account; start a new device"))
        ),
        "{got:?}"
    );
    assert!(
        !w.trace.iter().any(|o| matches!(
            o,
            Output::Control {
                down: ControlDown::DeviceAdded { .. },
                ..
            }
        )),
        "no device_added: {:?}",
        w.trace
    );
    let packages = claim(&mut w, b, &dm, "alice");
    assert_eq!(packages.len(), 1, "only a1's");
    w.trace.clear();
    w.server_in(Input::Control {
        conn: again,
        up: ControlUp::ClaimKeyPackages {
            conv: dm.clone(),
            user: "bob".into(),
        },
    });
    let got = downs(&w, again);
    assert!(
        !got.iter()
            .any(|d| matches!(d, ControlDown::KeyPackages { .. })),
        "a removed device's session gets no key packages: {got:?}"
    );
    assert!(got.iter().any(|d| matches!(
        d,
        ControlDown::Error {
            code: ErrorCode::RemovedDevice,
            ..
        }
    )));
}
