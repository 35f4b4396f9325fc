#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine and runs the LiveWire demo: a server and two
# client windows (alice and bob), logged in and ready to chat. Without a display it runs
# the same conversation headless: a server and two scripted clients.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_deps

if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ "${1:-}" != "--headless" ]; then
  cargo build --release
  exec ./target/release/livewire demo
fi

echo "==> no display: headless demo (server + alice + bob over QUIC on 127.0.0.1)"
cargo build --release --no-default-features
bin=./target/release/livewire
tmp=$(mktemp -d)
trap 'kill $srv 2>/dev/null || true; rm -rf "$tmp"' EXIT
"$bin" server --headless --listen 127.0.0.1:0 --data-dir "$tmp/server" > "$tmp/server.out" &
srv=$!
until [ -s "$tmp/server.out" ]; do sleep 0.1; done
addr=$(head -1 "$tmp/server.out" | sed 's/.*"addr":"\([^"]*\)".*/\1/')
echo "server: $(head -1 "$tmp/server.out")"
export LIVEWIRE_PASSWORD
LIVEWIRE_PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
chat() { "$bin" chat --server "$addr" --user "$1" --accept-new --config-dir "$tmp/$1" --state-dir "$tmp/$1"; }
{ echo '{"cmd":"sync"}'; sleep 1
  echo '{"cmd":"send","to":"#general","text":"hi everyone, bob here"}'
  echo '{"cmd":"send","to":"@alice","text":"psst alice, this one is private"}'
  sleep 1
  echo '{"cmd":"rooms","filter":"des"}'
  echo '{"cmd":"join","room":"#design"}'
  echo '{"cmd":"send","to":"#design","text":"count me in"}'
  sleep 2; } | chat bob | sed 's/^/bob   < /' &
bob=$!
sleep 0.5
{ echo '{"cmd":"send","to":"#general","text":"hello from alice"}'; echo '{"cmd":"who"}'
  echo '{"cmd":"create_room","room":"#design","topic":"Design reviews","visibility":"public"}'
  sleep 2.5; echo '{"cmd":"send","to":"#design","text":"welcome, bob"}'
  echo '{"cmd":"members","room":"#design"}'; echo '{"cmd":"sync"}'; } | chat alice | sed 's/^/alice < /'
wait $bob
kill -TERM $srv; wait $srv || true
sed 's/^/server: /' "$tmp/server.out" | tail -n +2
