#!/usr/bin/env bash
# Installs the system packages LiveWire's build and tests need (Debian/Ubuntu).
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run again.
set -euo pipefail

LIVEWIRE_PACKAGES=(
  pkg-config libgtk-4-dev          # the GUI (feature `gui`)
  libadwaita-1-dev                 # the GUI's GNOME widgets (libadwaita 1.2 on Debian 12)
  gettext                          # scripts/update-po.sh (xgettext); the app uses glibc's gettext
  at-spi2-core python3-pyatspi     # tests/a11y.rs: the accessibility bus and its Python client
  xvfb xauth                       # GUI tests under a virtual display
  dbus python3-dbusmock            # the GUI tests' session bus and notification daemon
  xdotool                          # tests/gui.rs's keyboard-only scenario: real key presses (XTEST)
  procps                           # `kill` (tests stop the servers they started by pid)
  iproute2 nftables conntrack      # the NAT lab (tests/natlab.rs)
  miniupnpd                        # port-mapping test in the NAT lab
  desktop-file-utils appstream     # tests/package.rs: desktop entries and metainfo
  systemd                          # tests/package.rs: systemd-analyze verify (the unit)
  dpkg-dev binutils                # scripts/package.sh: Depends (dpkg-shlibdeps), strip
  postgresql                       # the PostgreSQL store's tests (tests/store_postgres.rs)
  nats-server                      # cluster mode's fan-out between nodes (tests/cluster.rs)
)

lw_sudo() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_deps() {
  local missing=()
  for p in "${LIVEWIRE_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    lw_sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
    # miniupnpd asks questions through debconf; the defaults are fine for tests.
    lw_sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! command -v cargo >/dev/null; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      echo "==> installing Rust with rustup (https://rustup.rs)"
      lw_sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends curl ca-certificates build-essential >/dev/null
      curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
      export PATH="$HOME/.cargo/bin:$PATH"
    fi
  fi
}
