//! Replays the fuzz corpus (fuzz/corpus/<target>/*) through the fuzz entry points on
//! stable Rust, so every change runs the seeds and every crash input ever found.

use std::path::{Path, PathBuf};

use livewire::app::ids::{ClientMsgId, ConvId};
use livewire::app::protocol::{
    ControlUp, ConvDown, ConvEvent, ConvUp, EventKind, PROTOCOL_VERSION,
};
use livewire::transport::codec;
use livewire::transport::envelope::{Aad, Direction, SealingKey};
use livewire::transport::identity::IdentityKey;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn files(target: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus(target))
        .unwrap_or_else(|e| panic!("{}: {e}", corpus(target).display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    v
}

fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let cmid = ClientMsgId([5; 16]);
    let login = ControlUp::Login {
        version: PROTOCOL_VERSION,
        user: "alice".into(),
        password: "correct horse".into(),
        session_pub: [1; 32],
        identity_pub: [2; 32],
        hide_cursor: 3,
    };
    let open = ConvUp::Open {
        conv: ConvId::Direct("alice".into(), "bob".into()),
        after: Some(7),
    };
    let event = ConvDown::Event(ConvEvent {
        seq: 1,
        id: 2,
        ts: 3,
        sender: "bob".into(),
        cmid,
        kind: EventKind::Message {
            body: b"hi".to_vec(),
        },
        mentions: Vec::new(),
    });
    let mut out = vec![
        (
            "frame_decoder",
            "login".into(),
            codec::encode(&login, 1 << 16).unwrap(),
        ),
        (
            "frame_decoder",
            "open".into(),
            codec::encode(&open, 1 << 16).unwrap(),
        ),
        (
            "frame_decoder",
            "event".into(),
            codec::encode(&event, 1 << 16).unwrap(),
        ),
        (
            "frame_decoder",
            "who".into(),
            codec::encode(&ControlUp::Who, 1 << 16).unwrap(),
        ),
        (
            "frame_decoder",
            "huge-length".into(),
            vec![0xff, 0xff, 0xff, 0xff, 0],
        ),
        ("frame_decoder", "empty".into(), vec![]),
    ];
    let key = [9u8; 32];
    let aad = Aad {
        dir: Direction::Up,
        conv: "#general",
        sender: "alice",
        cmid: ClientMsgId([0; 16]),
    };
    let mut with_key = key.to_vec();
    with_key.extend(SealingKey::new(&key).seal(&aad, b"hello").unwrap());
    out.push(("envelope_open", "session-envelope".into(), with_key));
    let bob = IdentityKey::generate();
    let me = IdentityKey::from_secret_bytes([7; 32]);
    out.push((
        "envelope_open",
        "e2e-envelope".into(),
        bob.seal(
            &me.public,
            "dm:alice:bob",
            "alice",
            ClientMsgId([0; 16]),
            b"hi",
        )
        .unwrap(),
    ));
    out.push(("envelope_open", "short".into(), vec![1, 2, 3]));
    out
}

#[test]
fn corpus_replays_without_panics() {
    if std::env::var_os("LIVEWIRE_WRITE_SEEDS").is_some() {
        for (target, name, bytes) in seeds() {
            std::fs::create_dir_all(corpus(target)).unwrap();
            std::fs::write(corpus(target).join(format!("seed-{name}")), bytes).unwrap();
        }
    }
    for (target, run) in [
        ("frame_decoder", livewire::fuzzing::decode_all as fn(&[u8])),
        ("envelope_open", livewire::fuzzing::open_all),
    ] {
        let inputs = files(target);
        assert!(
            inputs.len() >= 3,
            "{target}: the corpus is missing ({} files)",
            inputs.len()
        );
        for path in inputs {
            run(&std::fs::read(&path).unwrap());
        }
    }
}

#[test]
fn seeds_still_decode() {
    // The seeds are valid inputs: they must keep decoding, or the corpus is stale.
    for (target, name, bytes) in seeds() {
        if target == "frame_decoder" && bytes.len() > 4 && name != "huge-length" {
            let (len, body) = codec::split_prefix(&bytes, 1 << 16).expect("prefix");
            let ok = codec::decode::<ControlUp>(&body[..len]).is_ok()
                || codec::decode::<ConvUp>(&body[..len]).is_ok()
                || codec::decode::<ConvDown>(&body[..len]).is_ok();
            assert!(ok, "{name}");
        }
    }
}
