#!/usr/bin/env bash
# Webhook benchmark: the release server pinned to one core, the load generator (`wxoa bench`)
# pinned to the other, 32 keep-alive connections over loopback, every message encrypted (safe
# mode) and durably logged to a fresh SQLite database. Prints one line per run; quote the median.
#
#   scripts/bench.sh [RUNS=3] [REQUESTS=200000]
#   WXOA_BIN=/path/to/wxoa scripts/bench.sh …   (another build, e.g. to compare two commits;
#   WXOA_CONFIG=old.toml gives it the config file of its own commit)
#   WXOA_BENCH_REPLIES=200 scripts/bench.sh …   (first stores that many console-edited keyword
#   replies through /api/v1/replies, none matching the benchmark's "hello N": every message is
#   tried against all of them before the file's rules answer it — the worst case)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
requests=${2:-200000}
if [ -z "${WXOA_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${WXOA_BIN:-target/release/wxoa}
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for run in $(seq "$runs"); do
  rm -f "$work"/bench.db* "$work"/.bench.db.created
  # Flush what earlier runs (or a build) left dirty, so their write-back does not land in this run.
  sync
  WXOA_SERVER__LISTEN=127.0.0.1:$port WXOA_SERVER__WORKERS=1 WXOA_DATABASE__URL="sqlite://$work/bench.db" RUST_LOG=${WXOA_BENCH_RUST_LOG:-warn} \
    taskset -c 0 "$bin" serve --config "${WXOA_CONFIG:-config/default.toml}" &
  server=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  for r in $(seq "${WXOA_BENCH_REPLIES:-0}"); do
    curl -fs -o /dev/null -H 'Authorization: Bearer wxoa-dev-marketing-token' -H 'content-type: application/json' \
      -d "{\"name\":\"bench-$r\",\"priority\":200,\"match\":{\"keyword\":[\"promo$r\",\"优惠$r\"]},\"reply\":{\"text\":\"Promo $r for {{ openid }}\"}}" \
      "http://127.0.0.1:$port/api/v1/replies"
  done
  # The WAL's size every 100 ms: its peak is printed after the run.
  ( peak=0; while kill -0 $server 2>/dev/null; do
      n=$(stat -c %s "$work/bench.db-wal" 2>/dev/null || echo 0); [ "$n" -gt "$peak" ] && peak=$n && echo $peak > "$work/wal-peak"
      sleep 0.1; done ) &
  sampler=$!
  taskset -p -c 1 $sampler >/dev/null
  echo -n "run $run: "
  # A warm-up of ~2 s at 50,000/s, as scripts/bench-wrk.sh's: the first second of a fresh server
  # is slower (every follower new to the directory, the WAL file still growing to its first
  # restart), and 20,000 messages (0.4 s) left part of it in the measured run.
  taskset -c 1 "$bin" bench --config "${WXOA_CONFIG:-config/default.toml}" --addr "127.0.0.1:$port" --connections 32 --requests "$requests" --warmup "${WXOA_BENCH_WARMUP:-100000}"
  rows=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from inbound_messages where outcome is not null').fetchone()[0])" "$work/bench.db")
  kill -TERM $server; wait $server || true
  wait $sampler 2>/dev/null || true
  # After the server's last checkpoint: the database holds everything.
  db_bytes=$(( $(stat -c %s "$work/bench.db") + $(stat -c %s "$work/bench.db-wal" 2>/dev/null || echo 0) ))
  echo "        durable rows with replies: $rows  database $((db_bytes / 1048576)) MB ($((db_bytes / (rows > 0 ? rows : 1))) bytes a message)  WAL peak $(( $(cat "$work/wal-peak" 2>/dev/null || echo 0) / 1048576 )) MB"
  # What a message costs once retention has stripped its XML (raw_xml_days): a copy stripped as
  # `wxoa messages purge` strips it, then vacuumed.
  python3 - "$work/bench.db" "$rows" <<'PY'
import os, shutil, sqlite3, sys
src, rows = sys.argv[1], max(int(sys.argv[2]), 1)
dst = src + ".stripped"
shutil.copy(src, dst)
db = sqlite3.connect(dst)
widths = db.execute("select avg(length(raw_xml)), avg(length(reply_xml)), avg(length(dedup_key)), avg(length(claimed_by)) from inbound_messages").fetchone()
db.execute("update inbound_messages set raw_xml = '', reply_xml = null")
db.commit()
db.execute("vacuum")
db.close()
print("        after retention strips the XML: %d bytes a message (the XML was %d + %d bytes; dedup key %d, claimed_by %d)"
      % (os.path.getsize(dst) // rows, *(int(w or 0) for w in widths)))
os.remove(dst)
PY
  rm -f "$work/wal-peak"
done
