#!/usr/bin/env bash
# Issue 14, "GUI first frame": the time from sign-in (the window asked to connect, as
# Connect does) to the first frame that shows the newest message of #general, with
# 100,000 messages stored there, and with 1,000 as the baseline. Each figure is RUNS
# separate processes (a new window each time), alternating the sizes within one session.
#
#   scripts/bench-gui-first-frame.sh                 # release build, 5 runs each
#   RUNS=3 SIZES="1000 100000" MODES="fresh returning" scripts/bench-gui-first-frame.sh
#   PROFILE=debug scripts/bench-gui-first-frame.sh   # without the release build
#
# Modes: `fresh` is a new device (empty state: the server sends the newest page);
# `returning` is a device that signed in before all the messages were written (it catches
# up on all of them). The server runs as a child process of the measuring one; the data is
# written once per size with the server's store API (see examples/gui_first_frame.rs).
# Output: one JSON line per run in $OUT/first-frame.jsonl and a summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${BENCH_OUT:-bench-out}
RUNS=${RUNS:-5}
SIZES=${SIZES:-"1000 100000"}
MODES=${MODES:-"fresh returning"}
PROFILE=${PROFILE:-release}
mkdir -p "$OUT"
if [ "$PROFILE" = release ]; then
  cargo build --release --example gui_first_frame
  BIN=target/release/examples/gui_first_frame
else
  cargo build --example gui_first_frame
  BIN=target/debug/examples/gui_first_frame
fi
DATA=${BENCH_DATA:-$(mktemp -d)}
for n in $SIZES; do
  [ -f "$DATA/$n/messages" ] || "$BIN" setup "$DATA/$n" "$n"
done
: > "$OUT/first-frame.jsonl"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$RUNS"); do
  for mode in $MODES; do
    for n in $SIZES; do
      line=$(GDK_BACKEND=x11 dbus-run-session -- xvfb-run -a -s "-screen 0 1600x1000x24" \
        "$BIN" measure "$DATA/$n" "$mode" 2>/dev/null | grep "^{" | tail -1) || true
      echo "run $run: $line"
      echo "$line" >> "$OUT/first-frame.jsonl"
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$OUT/first-frame.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
groups = {}
for r in rows:
    groups.setdefault((r["mode"], r["messages"]), []).append(r)
print("| mode | messages | runs | first frame median (ms) | min–max (ms) | signed in median (ms) | rows in the model |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for (mode, n), rs in sorted(groups.items()):
    ff = [r["first_frame_ms"] for r in rs if r["first_frame_ms"] is not None]
    si = [r["signed_in_ms"] for r in rs if r["signed_in_ms"] is not None]
    missed = len(rs) - len(ff)
    med = f"{statistics.median(ff):.0f}" if ff else "—"
    spread = f"{min(ff):.0f}–{max(ff):.0f}" if ff else "—"
    sim = f"{statistics.median(si):.0f}" if si else "—"
    rows_m = statistics.median([r["rows_in_model"] for r in rs])
    extra = f" ({missed} never showed it)" if missed else ""
    print(f"| {mode} | {n:,} | {len(rs)} | {med}{extra} | {spread} | {sim} | {rows_m:,.0f} |")
PY
