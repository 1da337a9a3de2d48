#!/usr/bin/env bash
# Outbox benchmark: `wxoa fake-wechat` pinned to core 1, one wxoa instance pinned to core 0 on a
# fresh SQLite database, rate limits off. Part 1 sends JOBS template messages and checks the
# fake's record (zero lost, zero duplicated). Part 2 enqueues JOBS more, runs `wxoa serve`,
# kill -9s it halfway, restarts it, and checks again (zero lost; duplicates at most the jobs
# that were in flight).
#
#   scripts/bench-outbox.sh [JOBS=100000] [RUNS=3]   (part 1 runs RUNS times; quote the median)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-100000}
runs=${2:-3}
cargo build --release --quiet
bin=$PWD/target/release/wxoa
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fake_port=$(free_port)
serve_port=$(free_port)
export WXOA_WECHAT__API_BASE=http://127.0.0.1:$fake_port
export WXOA_DATABASE__URL=sqlite://$work/outbox.db
export WXOA_SERVER__LISTEN=127.0.0.1:$serve_port
export WXOA_OUTBOX__CONCURRENCY=128
export RUST_LOG=warn

taskset -c 1 "$bin" fake-wechat --config config/default.toml --listen "127.0.0.1:$fake_port" >/dev/null &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$fake_port") 2>/dev/null && break; sleep 0.1; done
# Both parts send more than WeChat's 100,000 template messages a day: lift the fake's quota.
curl -fsS -X POST -H 'content-type: application/json' -d '{"template_quota": 100000000}' "http://127.0.0.1:$fake_port/_fake/knobs"

for r in $(seq "$runs"); do
  echo "== part 1, run $r: $jobs template messages, one instance, SQLite"
  WXOA_SERVER__WORKERS=1 taskset -c 0 "$bin" bench-outbox --config config/default.toml --jobs "$jobs"
done

echo "== part 2: the same with kill -9 halfway and a restart"
run=crash$(date +%s)
"$bin" bench-outbox --config config/default.toml --jobs "$jobs" --run "$run" --enqueue-only
done_jobs() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from jobs where state='done' and dedupe_key like 'bench:$run:%'\").fetchone()[0])" "$work/outbox.db"; }
WXOA_SERVER__WORKERS=1 taskset -c 0 "$bin" serve --config config/default.toml &
server=$!
pids+=($server)
while [ "$(done_jobs)" -lt $((jobs / 2)) ]; do sleep 0.2; done
kill -9 "$server"; wait "$server" 2>/dev/null || true
echo "killed -9 with $(done_jobs) of $jobs done; restarting"
WXOA_SERVER__WORKERS=1 taskset -c 0 "$bin" serve --config config/default.toml &
pids+=($!)
"$bin" bench-outbox --config config/default.toml --jobs "$jobs" --run "$run" --verify-only
