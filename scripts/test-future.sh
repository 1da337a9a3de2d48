#!/usr/bin/env bash
# The suite with the system clock moved ahead (libfaketime), SQLite only: no test may depend on
# the day it runs. `scripts/test-future.sh` moves it 18 months; `scripts/test-future.sh
# "2030-01-01 00:00:00"` to a day of your choice. Extra arguments go to every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
at=${1:-$(date -u -d '+18 months' '+%Y-%m-%d %H:%M:%S')}
shift || true
if ! command -v faketime >/dev/null; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq faketime >/dev/null
fi
# Build once with the real clock (cargo's freshness checks read file times).
bins=$(cargo test --locked --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] != ["bin"]:
        print(m["executable"])')
# An offset, not an absolute start ("@…"): every process — the tests and the `wxoa serve`
# processes they start later — then reads the same moved clock.
offset=$(( $(date -u -d "$at" +%s) - $(date -u +%s) ))
echo "system clock at $at UTC (offset ${offset} s)"
failed=0
for bin in $bins; do
  name=$(basename "$bin")
  if WXOA_TEST_POSTGRES_URL= CI= faketime -f "+$offset" "$bin" "$@" >"/tmp/future-$name.log" 2>&1; then
    echo "ok     $name ($(grep -E '^test result' "/tmp/future-$name.log" | tail -1))"
  else
    echo "FAILED $name (log: /tmp/future-$name.log)"
    failed=1
  fi
done
exit $failed
