#!/usr/bin/env bash
# LiveWire side by side with real chat servers (issue 7): installs mosquitto and ngIRCd from
# Debian's packages, gives them TLS certificates from a throw-away CA, builds the release
# `livewire` server (headless) and `livewire-bench`, then runs every scenario with the
# servers pinned to core 0 and the generator to core 1. All traffic stays on 127.0.0.1.
#
#   scripts/bench.sh                 # everything (~10 min), results in bench-out/
#   BENCH_ARGS="--scenarios refs,pairs --targets livewire" scripts/bench.sh   # a subset
#   BENCH_CLUSTER=1 BENCH_ARGS="--scenarios fanout --targets livewire,livewire-pg,livewire-2nodes" \
#     scripts/bench.sh   # cluster mode: one node on PostgreSQL, two nodes over NATS
#
# Output: bench-out/results.json (every step) and bench-out/results.md (the tables in
# docs/BENCHMARKS.md). Needs root for apt-get (skipped when the daemons are already there).
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=${BENCH_OUT:-bench-out}
MQTT_PORT=${MQTT_PORT:-18883}
IRC_PORT=${IRC_PORT:-16697}
mkdir -p "$OUT"

need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v ngircd >/dev/null || [ -x /usr/sbin/ngircd ] || need+=(ngircd)
command -v openssl >/dev/null || need+=(openssl)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "[bench.sh] installing ${need[*]}"
  apt-get -o DPkg::Lock::Timeout=300 update -q
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q \
    --no-install-recommends "${need[@]}"
fi
# Debian starts the daemons on install where an init system runs; ours must own the ports.
for svc in mosquitto ngircd; do
  if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
PATH=$PATH:/usr/sbin

# BENCH_TMP keeps the certificates, configs and server data for a look afterwards.
# A second LiveWire run keeps its database on tmpfs (/dev/shm), where fsync is free: the
# difference to the first is what waiting for the disk costs.
SHM=$(mktemp -d /dev/shm/livewire-bench.XXXXXX 2>/dev/null || true)
if [ -n "${BENCH_TMP:-}" ]; then
  TMP=$BENCH_TMP; mkdir -p "$TMP"
  trap '[ -z "$SHM" ] || rm -rf "$SHM"' EXIT
else
  TMP=$(mktemp -d /tmp/livewire-bench.XXXXXX)
  trap 'rm -rf "$TMP"; [ -z "$SHM" ] || rm -rf "$SHM"' EXIT
fi
TMPFS_ARGS=()
if [ -n "$SHM" ]; then TMPFS_ARGS=(--livewire-tmpfs "$SHM"); fi

# A throw-away CA and one leaf certificate (ECDSA P-256) for 127.0.0.1 / localhost.
openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/ca.key" 2>/dev/null
openssl req -x509 -new -key "$TMP/ca.key" -subj "/CN=livewire bench CA" -days 2 \
  -out "$TMP/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/leaf.ec" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$TMP/leaf.ec" -out "$TMP/server.key"
openssl req -new -key "$TMP/server.key" -subj "/CN=localhost" -out "$TMP/server.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' \
  >"$TMP/leaf.ext"
openssl x509 -req -in "$TMP/server.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" \
  -CAcreateserial -days 2 -extfile "$TMP/leaf.ext" -out "$TMP/server.pem" 2>/dev/null
chmod 644 "$TMP"/*.pem "$TMP/server.key"

# mosquitto: TLS only, on loopback, in-memory (its default), no client limits, Nagle off
# (like the clients; with it on, every delivery waits for a delayed ACK).
cat >"$TMP/mosquitto.conf" <<EOF
user root
per_listener_settings false
allow_anonymous true
persistence false
log_dest none
max_connections -1
set_tcp_nodelay true
max_inflight_messages 1000
max_queued_messages 100000
listener $MQTT_PORT 127.0.0.1
certfile $TMP/server.pem
keyfile $TMP/server.key
EOF

# ngIRCd: TLS port on loopback (its plain port too, on loopback, unused), penalties off so
# the load is not throttled, no DNS/ident look-ups, limits raised for 10 000 clients.
cat >"$TMP/ngircd.motd" <<EOF
bench
EOF
cat >"$TMP/ngircd.conf" <<EOF
[Global]
	Name = irc.bench
	Info = livewire bench
	Listen = 127.0.0.1
	Ports = $((IRC_PORT + 1))
	MotdFile = $TMP/ngircd.motd
	PidFile = $TMP/ngircd.pid
[Limits]
	MaxConnections = 0
	MaxConnectionsIP = 0
	MaxJoins = 0
	MaxNickLength = 30
	MaxPenaltyTime = 0
	PingTimeout = 15
	PongTimeout = 20
[Options]
	DNS = no
	Ident = no
	PAM = no
[SSL]
	CertFile = $TMP/server.pem
	KeyFile = $TMP/server.key
	Ports = $IRC_PORT
EOF

echo "[bench.sh] building (release)"
# `cluster` (PostgreSQL + NATS) is only used by the cluster targets; a plain node never
# touches it.
cargo build --release --no-default-features --features livewire/cluster -p livewire -p livewire-bench

# BENCH_CLUSTER=1: a throw-away PostgreSQL (Debian's package; as root its programs run as
# the `postgres` user) and a nats-server on loopback, for the `livewire-pg` and
# `livewire-2nodes` targets. PostgreSQL keeps its default durability (fsync on), like the
# SQLite node's `synchronous=FULL`.
CLUSTER_ARGS=()
cluster_down() { :; }
if [ -n "${BENCH_CLUSTER:-}" ]; then
  PG_PORT=${PG_PORT:-15432}
  NATS_PORT=${NATS_PORT:-14222}
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PGDIR=$(mktemp -d /tmp/livewire-bench-pg.XXXXXX)
  chown postgres: "$PGDIR"
  su postgres -s /bin/sh -c "$PGBIN/initdb -D $PGDIR/data -A trust -U postgres" >/dev/null
  su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDIR/data -l $PGDIR/log -o '-p $PG_PORT -k $PGDIR -c listen_addresses=127.0.0.1' -w start" >/dev/null
  nats-server -a 127.0.0.1 -p "$NATS_PORT" >/dev/null 2>&1 &
  NATS_PID=$!
  cluster_down() {
    kill "$NATS_PID" 2>/dev/null || true
    su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDIR/data -m immediate -w stop" >/dev/null || true
    rm -rf "$PGDIR"
  }
  CLUSTER_ARGS=(--livewire-database "postgres://postgres@127.0.0.1:$PG_PORT/postgres"
                --livewire-nats "nats://127.0.0.1:$NATS_PORT")
fi

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# The generator on core 1 (the servers it starts go to core 0). The machine is shared with
# builds: as root, run the bench (and so the servers it starts) at nice -10 so a compiler
# does not take the core in the middle of a measurement. Bounded: the run ends by itself.
GEN_PIN=()
if [ "$(nproc --all)" -gt 1 ] && command -v taskset >/dev/null; then GEN_PIN=(taskset -c 1); fi
if [ "$(id -u)" = 0 ]; then GEN_PIN=(nice -n -10 "${GEN_PIN[@]}"); fi

# shellcheck disable=SC2086
"${GEN_PIN[@]}" target/release/livewire-bench run \
  --livewire-bin target/release/livewire "${TMPFS_ARGS[@]}" "${CLUSTER_ARGS[@]}" \
  --mosquitto "mosquitto -c $TMP/mosquitto.conf" --mqtt-port "$MQTT_PORT" \
  --irc "ngircd -n -f $TMP/ngircd.conf" --irc-name ngircd --irc-port "$IRC_PORT" \
  --ca "$TMP/ca.pem" --server-cpu 0 --work-dir "$TMP/work" \
  --out "$OUT/results.json" --table "$OUT/results.md" ${BENCH_ARGS:-} || status=$?
cluster_down
exit "${status:-0}"
