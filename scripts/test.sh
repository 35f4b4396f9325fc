#!/usr/bin/env bash
# The whole test suite: formatting, lints (with and without the GUI), the headless build,
# and every test (unit, end-to-end, GUI under Xvfb, and the NAT lab when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_deps

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> clippy (headless)"
cargo clippy --all-targets --no-default-features -- -D warnings
echo "==> clippy (gui)"
cargo clippy --all-targets -- -D warnings
echo "==> headless build"
cargo build --no-default-features
echo "==> tests"
export GDK_BACKEND=x11 GSK_RENDERER=cairo NO_AT_BRIDGE=1
# A session bus of its own, as a desktop has: the windows own their D-Bus names and use it
# for notifications; without one GTK warns, and the GUI test fails on any warning.
dbus-run-session -- xvfb-run -a -s "-screen 0 1600x1000x24" cargo test --no-fail-fast 2>&1 | tee target/test-output.log
