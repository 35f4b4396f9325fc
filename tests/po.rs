//! The translation template `po/livewire.pot` is current: regenerating it from the files in
//! `po/POTFILES` (`scripts/update-po.sh`, xgettext) gives the file that is kept in the repo,
//! and it holds the app's strings. Without xgettext (package `gettext`) it prints
//! "SKIPPED: …".

use std::path::Path;
use std::process::Command;

fn msgids(pot: &str) -> Vec<&str> {
    pot.lines().filter(|l| l.starts_with("msgid ")).collect()
}

#[test]
fn the_translation_template_is_current() {
    if Command::new("xgettext").arg("--version").output().is_err() {
        println!("SKIPPED: xgettext is not installed (scripts/deps.sh installs gettext)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let fresh = tmp.path().join("livewire.pot");
    let out = Command::new("bash")
        .arg(root.join("scripts/update-po.sh"))
        .arg(&fresh)
        .output()
        .expect("run scripts/update-po.sh");
    assert!(
        out.status.success(),
        "update-po.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = std::fs::read_to_string(fresh).expect("the fresh template");
    let kept = std::fs::read_to_string(root.join("po/livewire.pot")).expect("po/livewire.pot");
    assert!(
        msgids(&fresh).len() > 50,
        "the templates' and the code's strings are found"
    );
    for s in [
        "Trust and Connect",
        "Preferences",
        "Mute",
        "New message from {from} in {conv}: {text}",
    ] {
        assert!(fresh.contains(s), "“{s}” is translatable");
    }
    assert!(
        fresh == kept,
        "po/livewire.pot is out of date: run scripts/update-po.sh and commit it"
    );
}
