#!/usr/bin/env bash
# Audience benchmarks (README, Performance): WeChat's follower list pulled into the directory,
# and a segment of everyone synced to a WeChat tag, on a fresh SQLite database.
#
# `wxoa fake-wechat --followers N` (pinned to core 1) plays WeChat with N synthetic followers;
# `wxoa followers sync` then `wxoa segments sync` (pinned to core 0) run the same steps `serve`
# runs as outbox jobs, at the configured pace (rate_limits.user, rate_limits.tag: unpaced by
# default). Each prints its wall time and peak resident memory; the directory's and the tag's
# counts are checked against N.
#
#   scripts/bench-audiences.sh [FOLLOWERS=1000000]
#   WXOA_BIN=/path/to/wxoa scripts/bench-audiences.sh …   (another build)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
if [ -z "${WXOA_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${WXOA_BIN:-target/release/wxoa}
work=$(mktemp -d)
fake=
trap 'if [ -n "$fake" ]; then kill $fake 2>/dev/null || true; fi; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export WXOA_DATABASE__URL="sqlite://$work/bench.db" WXOA_WECHAT__API_BASE="http://127.0.0.1:$port" RUST_LOG=warn

# Wall time and peak RSS of a command (the children's, from getrusage).
measure() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
r = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True)
elapsed = time.monotonic() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "")
print("elapsed %.1f s  peak memory %.0f MB" % (elapsed, rss))
sys.exit(r.returncode)
PY
}

taskset -c 1 "$bin" --config config/default.toml fake-wechat --listen "127.0.0.1:$port" --followers "$n" >/dev/null &
fake=$!
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$port/cgi-bin/stable_token" -o /dev/null -X POST -d '{}' 2>/dev/null && break; (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
"$bin" --config config/default.toml migrate >/dev/null

echo "== wxoa followers sync: $n followers"
measure taskset -c 0 "$bin" --config config/default.toml followers sync
"$bin" --config config/default.toml followers status

echo "== wxoa segments sync: a segment of all $n to a new tag"
"$bin" --config config/default.toml segments create "bench everyone"
measure taskset -c 0 "$bin" --config config/default.toml segments sync 1
