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

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("read the source dir")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// No user-visible words are built in Rust without gettext: a string literal (or a
/// `format!`) handed straight to a label, button, tooltip, menu item, toast, notice or
/// status line is a string translators never see. The app's name is the one exception.
#[test]
fn rust_built_strings_go_through_gettext() {
    const SINKS: &[&str] = &[
        "show_toast(\"",
        "show_toast(&format!(",
        "MenuItem::new(Some(\"",
        ".label(\"",
        ".set_label(\"",
        ".set_text(\"",
        "tooltip_text(\"",
        "tooltip_text(Some(\"",
        "add_notice(&format!(",
        "add_notice(\"",
        "text_column(\"",
        "set_status(\"",
        "set_status(&format!(",
        "show_error(\"",
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/gui"), &mut files);
    assert!(files.len() > 20, "the GUI's sources are found");
    let mut bare = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") || code.starts_with("///") {
                continue;
            }
            for sink in SINKS {
                let Some(at) = line.find(sink) else { continue };
                let rest = &line[at + sink.len()..];
                // A literal that starts with a letter is words; "LiveWire" is a name.
                let words = rest.starts_with(|c: char| c.is_alphabetic() || c == '{')
                    && !rest.starts_with("LiveWire\"");
                if words || sink.ends_with("format!(") {
                    bare.push(format!(
                        "{}:{}: {}",
                        file.strip_prefix(root).unwrap_or(&file).display(),
                        n + 1,
                        code
                    ));
                }
            }
        }
    }
    assert!(
        bare.is_empty(),
        "user-visible strings without gettext (wrap them in i18n::gettext / gettext_with):\n{}",
        bare.join("\n")
    );
}
