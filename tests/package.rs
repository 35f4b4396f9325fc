//! LiveWire as an installed desktop application: the files in `data/` pass the checks the
//! distributions run (desktop-file-validate, appstreamcli, systemd-analyze), and
//! `scripts/package.sh` builds a Debian package that unpacks into a scratch root with
//! everything in place and a binary that runs.
//!
//! The package test packages the debug binary cargo has already built for this suite
//! (`--binary`), not a release build: it checks the packaging (file list, metadata,
//! maintainer scripts, man pages, that the installed program starts), which does not depend
//! on the optimiser, and a release build would add minutes to every `cargo test` on a small
//! machine. `scripts/package.sh` without `--binary` makes the release package.
//!
//! The tools come from scripts/deps.sh (desktop-file-utils, appstream, systemd, dpkg-dev);
//! when one is missing, its check prints a `SKIPPED:` line and passes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The application ID; every file in `data/` is named after it.
const APP_ID: &str = "io.github.livewire.LiveWire";
const SERVER_APP_ID: &str = "io.github.livewire.LiveWire.Server";

/// How long the installed server may take to print `listening`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn data(name: &str) -> PathBuf {
    repo().join("data").join(name)
}

/// Whether `tool` is on the PATH; prints the SKIPPED line when it is not.
fn have(tool: &str, check: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        println!("SKIPPED: {check}: {tool} is not installed (scripts/deps.sh installs it)");
    }
    found
}

/// Runs a command to completion, capturing its output.
fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Asserts that a validator succeeded and said nothing (warnings count as failures: a
/// validator that only warns today fails a distribution's stricter check tomorrow).
fn assert_clean(what: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The value of `key=` in a desktop entry.
fn desktop_key<'a>(entry: &'a str, key: &str) -> Option<&'a str> {
    entry
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn desktop_entries_validate_and_name_their_icons() {
    for id in [APP_ID, SERVER_APP_ID] {
        let path = data(&format!("{id}.desktop"));
        let entry = read(&path);
        // The desktop entry's name is the application ID (how a shell matches windows on
        // Wayland); the X11 window class is set to it too.
        assert_eq!(desktop_key(&entry, "Icon"), Some(id), "{}", path.display());
        assert_eq!(desktop_key(&entry, "StartupWMClass"), Some(id));
        assert!(
            data(&format!("icons/hicolor/scalable/apps/{id}.svg")).is_file(),
            "no scalable icon for {id}"
        );
        let exec = desktop_key(&entry, "Exec").expect("Exec=");
        assert!(exec.starts_with("livewire "), "{exec}");
    }
    assert!(
        data(&format!(
            "icons/hicolor/symbolic/apps/{APP_ID}-symbolic.svg"
        ))
        .is_file()
    );
    if have("desktop-file-validate", "desktop entries") {
        let out = run(Command::new("desktop-file-validate")
            .arg(data(&format!("{APP_ID}.desktop")))
            .arg(data(&format!("{SERVER_APP_ID}.desktop"))));
        assert_clean("desktop-file-validate", &out);
    }
}

#[test]
fn metainfo_validates_and_matches_the_crate() {
    let path = data(&format!("{APP_ID}.metainfo.xml"));
    let xml = read(&path);
    assert!(xml.contains(&format!("<id>{APP_ID}</id>")));
    for id in [APP_ID, SERVER_APP_ID] {
        assert!(xml.contains(&format!(
            r#"<launchable type="desktop-id">{id}.desktop</launchable>"#
        )));
    }
    // The newest release is the crate's version (a release bumps both).
    let newest = xml
        .split("<release ")
        .nth(1)
        .and_then(|r| r.split("version=\"").nth(1))
        .and_then(|v| v.split('"').next());
    assert_eq!(
        newest,
        Some(env!("CARGO_PKG_VERSION")),
        "metainfo <releases>"
    );
    // Every screenshot points at a file in docs/screenshots/.
    let shots: Vec<&str> = xml
        .split("/docs/screenshots/")
        .skip(1)
        .filter_map(|s| s.split('<').next())
        .collect();
    assert!(!shots.is_empty(), "no screenshot in the metainfo");
    for shot in shots {
        let file = repo().join("docs/screenshots").join(shot);
        assert!(
            file.is_file(),
            "metainfo screenshot {} is missing",
            file.display()
        );
    }
    if have("appstreamcli", "metainfo") {
        // `--no-net`: no URL is fetched (CI may be offline).
        let out = run(Command::new("appstreamcli")
            .args(["validate", "--no-net"])
            .arg(&path));
        assert_appstream_clean("appstreamcli validate", &out);
    }
}

/// appstreamcli succeeds with warnings; a warning (`W:`) fails here, as an error (`E:`) does.
fn assert_appstream_clean(what: &str, out: &Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = text
        .lines()
        .any(|l| l.starts_with("E:") || l.starts_with("W:"));
    assert!(out.status.success() && !bad, "{what}:\n{text}");
}

/// The code and `data/` agree on the application IDs.
#[cfg(feature = "gui")]
#[test]
fn gui_uses_the_packaged_application_ids() {
    assert_eq!(livewire::gui::APP_ID, APP_ID);
    assert_eq!(livewire::gui::SERVER_APP_ID, SERVER_APP_ID);
}

/// A scratch directory under the system temp dir, removed on drop.
fn scratch(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

#[test]
fn debian_package_installs_and_runs() {
    if !have("dpkg-deb", "Debian package") || !have("strip", "Debian package") {
        return;
    }
    let tmp = scratch("livewire-package-");
    let out = run(Command::new(repo().join("scripts/package.sh"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_livewire"))
        .arg("--out")
        .arg(tmp.path().join("debian"))
        .arg("--fast"));
    assert!(
        out.status.success(),
        "scripts/package.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("package.sh prints the .deb")
            .trim(),
    );
    assert!(deb.is_file(), "{}", deb.display());

    // The control file: name, version, and the libraries it needs.
    let info = run(Command::new("dpkg-deb").args(["--field"]).arg(&deb));
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Package: livewire\n"), "{info}");
    assert!(
        info.contains(&format!("Version: {}\n", env!("CARGO_PKG_VERSION"))),
        "{info}"
    );
    assert!(
        info.contains("Depends: ") && info.contains("libc6"),
        "{info}"
    );
    #[cfg(feature = "gui")]
    assert!(info.contains("libgtk-4-1"), "{info}");

    // Unpack into a scratch root (what `dpkg -i` would put on the machine).
    let root = tmp.path().join("root");
    let out = run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root));
    assert!(out.status.success(), "dpkg -x: {out:?}");
    let expected = [
        "usr/bin/livewire".to_owned(),
        format!("usr/share/applications/{APP_ID}.desktop"),
        format!("usr/share/applications/{SERVER_APP_ID}.desktop"),
        format!("usr/share/metainfo/{APP_ID}.metainfo.xml"),
        format!("usr/share/icons/hicolor/scalable/apps/{APP_ID}.svg"),
        format!("usr/share/icons/hicolor/scalable/apps/{SERVER_APP_ID}.svg"),
        format!("usr/share/icons/hicolor/symbolic/apps/{APP_ID}-symbolic.svg"),
        "usr/share/man/man1/livewire.1.gz".to_owned(),
        "usr/share/man/man1/livewire-server.1.gz".to_owned(),
        "usr/share/man/man1/livewire-chat.1.gz".to_owned(),
        "usr/share/man/man1/livewire-client.1.gz".to_owned(),
        "lib/systemd/system/livewire-server.service".to_owned(),
        "usr/share/doc/livewire/copyright".to_owned(),
    ];
    for file in &expected {
        assert!(root.join(file).is_file(), "{file} is not in the package");
    }
    // The hidden `man` command documents itself nowhere.
    assert!(!root.join("usr/share/man/man1/livewire-man.1.gz").exists());
    // The maintainer scripts are there and are shell scripts.
    for script in ["postinst", "prerm", "postrm"] {
        let out = run(Command::new("dpkg-deb").arg("--info").arg(&deb).arg(script));
        assert!(
            out.status.success() && out.stdout.starts_with(b"#!/bin/sh"),
            "{script}: {out:?}"
        );
    }

    // The installed binary runs.
    let bin = root.join("usr/bin/livewire");
    let out = run(Command::new(&bin).arg("--version"));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("livewire {}", env!("CARGO_PKG_VERSION"))
    );
    installed_server_listens(&bin, &tmp.path().join("server"));

    // The installed tree as a software centre reads it: metainfo, desktop entries and icons.
    if have("appstreamcli", "installed tree") {
        let out = run(Command::new("appstreamcli")
            .args(["validate-tree", "--no-net"])
            .arg(&root));
        assert_appstream_clean("appstreamcli validate-tree", &out);
    }
    verify_unit(&root, tmp.path());
}

/// `systemd-analyze verify` on the installed unit. It checks the directives, that the
/// command exists and is executable, and that the `man:` page it points to exists. The unit
/// is copied with its command pointed into the scratch root (`--root` would want a whole
/// system's units beside it); `MANPATH` points at the packaged man pages.
fn verify_unit(root: &Path, tmp: &Path) {
    if !have("systemd-analyze", "systemd unit") {
        return;
    }
    let unit = read(&root.join("lib/systemd/system/livewire-server.service"));
    assert!(unit.contains("ExecStart=/usr/bin/livewire server --headless"));
    assert!(unit.contains("StateDirectory=livewire"));
    let dir = tmp.join("units");
    std::fs::create_dir_all(&dir).expect("units dir");
    let copy = dir.join("livewire-server.service");
    let bin = root.join("usr/bin/livewire");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/livewire", &bin.display().to_string()),
    )
    .expect("write unit");
    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .env("MANPATH", root.join("usr/share/man"))
        .env("SYSTEMD_LOG_LEVEL", "warning"));
    assert_clean("systemd-analyze verify", &out);
}

/// Starts the installed `livewire server --headless` and waits for its `listening` line.
fn installed_server_listens(bin: &Path, data_dir: &Path) {
    let mut child = Command::new(bin)
        .args([
            "server",
            "--headless",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the installed server");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let first = BufReader::new(stdout).lines().next();
        let _ = tx.send(first);
    });
    let first = rx.recv_timeout(START_TIMEOUT);
    let _ = child.kill();
    let _ = child.wait();
    let line = match first {
        Ok(Some(Ok(line))) => line,
        other => panic!("the installed server printed no first line: {other:?}"),
    };
    let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(event["event"], "listening", "{line}");
    assert!(
        event["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{line}"
    );
}
