#!/usr/bin/env bash
# The webhook under an independent load generator: wrk (Debian's, installed if missing), one
# thread and 32 keep-alive connections, replaying pre-generated signed and encrypted messages
# (scripts/wrk-webhook.lua), each a fresh MsgId. As scripts/bench.sh: the release server pinned
# to core 0 with one runtime worker, wrk pinned to core 1, safe mode, a fresh durable SQLite log
# per run; a 2 s warm-up, then SECONDS measured. Prints wrk's figures per run; quote the median.
#
#   scripts/bench-wrk.sh [RUNS=3] [SECONDS=15]
#   WXOA_WRK_SEGMENTS=10 scripts/bench-wrk.sh 1 60   (a sustained run: the SECONDS split into ten
#   consecutive wrk runs against one server, each segment's rate printed, last against first)
#   WXOA_WRK_MAX_RATE=45000 scripts/bench-wrk.sh …   (messages generated per second of run, 90,000 by
#   default: a long run on a slower machine needs fewer written beforehand)
#   WXOA_BIN=/path/to/wxoa WXOA_CONFIG=old.toml scripts/bench-wrk.sh …   (another build; one older
#   than `wxoa bench --write-requests` needs WXOA_GEN_BIN=target/release/wxoa to write the messages)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
secs=${2:-15}
segments=${WXOA_WRK_SEGMENTS:-1}
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; else sudo apt-get install -y -qq wrk >/dev/null; fi
fi
if [ -z "${WXOA_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${WXOA_BIN:-target/release/wxoa}
config=${WXOA_CONFIG:-config/default.toml}
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
warm=200000
# More messages than the run can send at MAX_RATE/s: none is sent twice (checked below).
max_rate=${WXOA_WRK_MAX_RATE:-90000}
measured=$((secs * max_rate + segments * 64))
for run in $(seq "$runs"); do
  rm -f "$work"/bench.db* "$work"/.bench.db.created
  "${WXOA_GEN_BIN:-$bin}" bench --config "$config" --requests "$measured" --warmup "$warm" --write-requests "$work/requests.tsv" 2>/dev/null
  sync
  WXOA_SERVER__LISTEN=127.0.0.1:$port WXOA_SERVER__WORKERS=1 WXOA_DATABASE__URL="sqlite://$work/bench.db" RUST_LOG=warn \
    taskset -c 0 "$bin" serve --config "$config" &
  server=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  ( peak=0; while kill -0 $server 2>/dev/null; do
      n=$(stat -c %s "$work/bench.db-wal" 2>/dev/null || echo 0); [ "$n" -gt "$peak" ] && peak=$n && echo $peak > "$work/wal-peak"
      sleep 0.1; done ) &
  sampler=$!
  taskset -p -c 1 $sampler >/dev/null
  taskset -c 1 wrk -t1 -c32 -d2s -s scripts/wrk-webhook.lua "http://127.0.0.1:$port" -- "$work/requests.tsv" 1 "$warm" >/dev/null
  # The measured part, in SEGMENTS consecutive wrk runs against the same server (each taking
  # up the messages after the last one's), so a long run shows whether it stays flat.
  first=$((warm + 1)); total=0; rates=(); seg_secs=$(( secs / segments > 0 ? secs / segments : 1 ))
  for seg in $(seq "$segments"); do
    out=$(taskset -c 1 wrk -t1 -c32 -d"${seg_secs}s" --latency -s scripts/wrk-webhook.lua "http://127.0.0.1:$port" \
      -- "$work/requests.tsv" "$first" $((first + seg_secs * max_rate - 1)))
    sent=$(echo "$out" | awk '/requests in/ {print $1}')
    rate=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p90=$(echo "$out" | awk '$1 == "90%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    bad=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    errors=$(echo "$out" | awk '/Socket errors/ {print}')
    if [ "$segments" -gt 1 ]; then
      echo "run $run segment $seg: wrk $sent requests in ${seg_secs}s  $rate req/s  p50 $p50  p90 $p90  p99 $p99  non-2xx ${bad:-0} ${errors}"
    fi
    rates+=("$rate")
    if [ "$sent" -ge "$((seg_secs * max_rate))" ]; then echo "        WARNING: wrk sent more than its range holds; MsgIds repeated"; fi
    # The requests in flight when wrk stopped were sent too: skip past them.
    first=$((first + sent + 64)); total=$((total + sent))
  done
  if [ "$segments" -gt 1 ]; then
    echo "run $run: $total requests in $((seg_secs * segments))s; first segment ${rates[0]} req/s, last ${rates[-1]} req/s (last/first $(python3 -c "import sys; print(round(float(sys.argv[2]) / float(sys.argv[1]) * 100, 1))" "${rates[0]}" "${rates[-1]}")%)"
    sent=$total
  fi
  rows=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from inbound_messages where outcome is not null').fetchone()[0])" "$work/bench.db")
  kill -TERM $server; wait $server || true
  wait $sampler 2>/dev/null || true
  [ "$segments" -gt 1 ] || echo "run $run: wrk $sent requests in ${secs}s  $rate req/s  p50 $p50  p90 $p90  p99 $p99  non-2xx ${bad:-0} ${errors}"
  echo "        durable rows with replies: $rows (warm-up included)  WAL peak $(( $(cat "$work/wal-peak" 2>/dev/null || echo 0) / 1048576 )) MB"
  rm -f "$work/wal-peak" "$work/requests.tsv"
done
