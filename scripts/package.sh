#!/usr/bin/env bash
# Builds the Debian package of LiveWire into target/debian/ with dpkg-deb.
#
#   scripts/package.sh                   # release build, then the package
#   scripts/package.sh --binary PATH     # package an existing binary (tests/package.rs
#                                        # passes the debug one cargo already built)
#   scripts/package.sh --fast            # gzip -1 instead of xz (tests)
#   scripts/package.sh --out DIR         # somewhere else than target/debian/
#
# The package holds the binary, the desktop entries, the AppStream metainfo, the icons, the
# manual pages (written by the binary itself: `livewire man DIR`) and the systemd unit of the
# headless server (data/). It prints the path of the .deb on its last line.
set -euo pipefail

binary=""
out=""
compress=(-Zxz)
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --fast) compress=(-Zgzip -z1); shift ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "package.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
# Paths given on the command line are relative to where it was run.
[ -n "$binary" ] && binary=$(realpath -m "$binary")
[ -n "$out" ] && out=$(realpath -m "$out")
cd "$(dirname "$0")/.."
out=${out:-target/debian}

for tool in dpkg-deb dpkg gzip strip; do
  command -v "$tool" >/dev/null || { echo "package.sh: $tool is missing (apt-get install dpkg binutils)" >&2; exit 1; }
done

if [ -z "$binary" ]; then
  echo "==> cargo build --release" >&2
  cargo build --release --locked --bin livewire >&2
  binary=target/release/livewire
fi
[ -x "$binary" ] || { echo "package.sh: $binary is not an executable" >&2; exit 1; }

app_id=io.github.livewire.LiveWire
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
root="$out/livewire_${version}_${arch}"
rm -rf "$root"
mkdir -p "$root/DEBIAN"

# install MODE SRC DEST: DEST is relative to the package root; parent dirs are created.
put() {
  install -D -m "$1" "$2" "$root/$3"
}

# The binary, without debug info (a debug build shrinks from ~200 MB to ~40 MB).
mkdir -p "$root/usr/bin"
strip --strip-debug -o "$root/usr/bin/livewire" "$binary"
chmod 0755 "$root/usr/bin/livewire"

# Desktop integration: one application ID names every file (see docs/DECISIONS.md).
put 0644 "data/$app_id.desktop" "usr/share/applications/$app_id.desktop"
put 0644 "data/$app_id.Server.desktop" "usr/share/applications/$app_id.Server.desktop"
put 0644 "data/$app_id.metainfo.xml" "usr/share/metainfo/$app_id.metainfo.xml"
for icon in data/icons/hicolor/*/apps/*.svg; do
  put 0644 "$icon" "usr/share/${icon#data/}"
done

# Debian 12 keeps units under /lib (files moving to /usr/lib trip dpkg's aliasing there).
put 0644 data/livewire-server.service lib/systemd/system/livewire-server.service

# Manual pages from the CLI definition of this very binary.
man_dir="$root/usr/share/man/man1"
"$binary" man "$man_dir"
gzip -9n "$man_dir"/*.1

# Documentation Debian asks for.
doc="$root/usr/share/doc/livewire"
put 0644 README.md usr/share/doc/livewire/README.md
gzip -9n "$doc/README.md"
cat >"$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: livewire
Source: https://github.com/livewire/livewire

Files: *
Copyright: The LiveWire contributors
License: MIT or Apache-2.0
 Licensed under either of the MIT license or the Apache License, Version 2.0, at your
 option. The full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$doc/copyright"

# Maintainer scripts. The unit uses DynamicUser=, so there is no account to create; it
# ships disabled (installing a desktop app must not open a port), and the server's data in
# /var/lib/livewire is kept on remove and purge (a chat history is not configuration).
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl --system daemon-reload >/dev/null || true
  # An upgrade restarts a server that is running, so it runs the new binary.
  if [ -n "$2" ]; then
    systemctl try-restart livewire-server.service >/dev/null || true
  fi
fi
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop livewire-server.service >/dev/null 2>&1 || true
fi
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl --system daemon-reload >/dev/null || true
fi
# An enabled unit leaves its link behind when the package goes.
if [ "$1" = purge ]; then
  rm -f /etc/systemd/system/multi-user.target.wants/livewire-server.service
fi
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

# Depends: the packages that hold the libraries the binary links to. dpkg-shlibdeps (from
# dpkg-dev) knows the minimum versions; without it, the package names alone.
depends=""
if command -v dpkg-shlibdeps >/dev/null; then
  work=$(mktemp -d)
  mkdir -p "$work/debian"
  printf 'Source: livewire\n\nPackage: livewire\nArchitecture: any\n' >"$work/debian/control"
  abs_bin=$(realpath "$root/usr/bin/livewire")
  depends=$(cd "$work" && dpkg-shlibdeps -O "$abs_bin" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
  rm -rf "$work"
fi
if [ -z "$depends" ]; then
  depends=$(
    readelf -d "$root/usr/bin/livewire" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' |
      while read -r lib; do
        path=$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')
        [ -n "$path" ] && dpkg -S "$(realpath "$path")" 2>/dev/null | cut -d: -f1
      done | sort -u | paste -sd, | sed 's/,/, /g'
  )
fi

installed_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: livewire
Version: $version
Architecture: $arch
Maintainer: The LiveWire contributors <livewire@users.noreply.github.com>
Installed-Size: $installed_kb
Depends: $depends
Section: net
Priority: optional
Homepage: https://github.com/livewire/livewire
Description: self-hosted real-time chat over QUIC
 LiveWire is a self-hosted chat for Linux: one server, many clients, a GTK 4
 window for each, and a scripted mode of both for scripts and servers without
 a display. Private messages are end-to-end encrypted; every message body is
 sealed with AES-256-GCM-SIV inside QUIC's TLS.
 .
 This package also holds a systemd unit for the headless server
 (livewire-server.service, not enabled on install).
EOF

(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

deb="$out/livewire_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >&2
echo "$deb"
