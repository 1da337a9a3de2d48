#!/usr/bin/env bash
# Points benchmarks (README, Performance): the release server pinned to one core, each load
# generator pinned to the other, a fresh SQLite database per run.
#
# 1. POST /api/v1/crm/transactions, 1,000-item batches of earns for 20,000 members (half of them
#    bound, so half the items also queue a points_changed message; every item queues its CRM
#    event): transactions per second, from `wxoa bench-crm` and from scripts/bench_crm.py.
# 2. A member with 10,000 ledger entries spread over a year: the balance card (the webhook, from
#    `wxoa bench`) and the card page (`wxoa bench --get`, bench_crm.py, and wrk if installed):
#    latency percentiles over one connection (a reply's own cost) and four (the core saturated).
#
#   scripts/bench-points.sh [RUNS=3] [BATCHES=40]
#   WXOA_BIN=/path/to/wxoa scripts/bench-points.sh …   (another build)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
batches=${2:-40}
members=20000
if [ -z "${WXOA_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${WXOA_BIN:-target/release/wxoa}
work=$(mktemp -d)
server=
trap 'if [ -n "$server" ]; then kill $server 2>/dev/null || true; fi; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
secret=bench-crm-secret-0123456789abcdef0123456789
session_secret=bench-session-secret-0123456789abcdef0123
export WXOA_DATABASE__URL="sqlite://$work/bench.db" WXOA_CRM__SECRET=$secret WXOA_H5__SESSION_SECRET=$session_secret
# Events are recorded for a CRM, and nothing is sent: the outbox worker is off, so the figures
# are the API's alone.
export WXOA_CRM__WEBHOOK_URL=http://127.0.0.1:9/events WXOA_OUTBOX__ENABLED=false WXOA_CAMPAIGNS__ENABLED=false
export RUST_LOG=warn

fresh() {
  rm -f "$work"/bench.db* "$work"/.bench.db.created
  "$bin" --config config/default.toml migrate >/dev/null
}

start() {
  sync
  WXOA_SERVER__LISTEN=$addr WXOA_SERVER__WORKERS=1 taskset -c 0 "$bin" serve --config config/default.toml &
  server=$!
  for _ in $(seq 100); do curl -fs "http://$addr/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
}

stop() {
  kill -TERM "$server"; wait "$server" || true; server=
}

members_csv() {
  python3 - "$1" "$2" <<'EOF'
import sys
n, prefix = int(sys.argv[1]), sys.argv[2]
print("card_no,name,phone")
for i in range(n):
    print("%s%08d,Bench %d,139%08d" % (prefix, i, i, i))
EOF
}

echo "== POST /api/v1/crm/transactions: $batches batches of 1000, $members members"
for run in $(seq "$runs"); do
  fresh
  members_csv $members B > "$work/members.csv"
  "$bin" --config config/default.toml members import "$work/members.csv" | tail -1
  python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE members SET openid = 'oBench' || id WHERE id % 2 = 0\"); c.commit()" "$work/bench.db"
  start
  echo -n "run $run, wxoa bench-crm:   "
  taskset -c 1 "$bin" --config config/default.toml bench-crm --addr "$addr" --batches "$batches" --members $members
  echo -n "run $run, bench_crm.py:     "
  taskset -c 1 python3 scripts/bench_crm.py batches --addr "$addr" --secret $secret --batches "$batches" --members $members
  stop
done

echo "== a member with 10,000 ledger entries: the balance card and the card page"
fresh
printf 'card_no,name,phone,points\nH0000001,Heavy Buyer,13900000001,0\n' > "$work/heavy.csv"
"$bin" --config config/default.toml members import "$work/heavy.csv" | tail -1
python3 - "$work/bench.db" "$session_secret" > "$work/cookie" <<'EOF'
import hashlib, hmac, sqlite3, sys, time
db, secret = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db)
c.execute("UPDATE members SET openid = 'oHeavy' WHERE card_no = 'H0000001'")
sid = "0123456789abcdef0123456789abcdef"
now = int(time.time() * 1000)
c.execute("INSERT INTO h5_sessions (id, openid, created_at, expires_at) VALUES (?, 'oHeavy', ?, ?)", (sid, now, now + 86400000))
c.commit()
print("wxoa_session=%s.%s" % (sid, hmac.new(secret.encode(), ("session:" + sid).encode(), hashlib.sha256).hexdigest()))
EOF
cookie=$(cat "$work/cookie")
start
python3 scripts/bench_crm.py batches --addr "$addr" --secret $secret --batches 10 --card H0000001 --spread-days 360 >/dev/null
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print('ledger entries:', c.execute(\"SELECT COUNT(*) FROM points_ledger l JOIN members m ON m.id = l.member_id WHERE m.card_no = 'H0000001'\").fetchone()[0], ' live lots:', c.execute('SELECT COUNT(*) FROM points_lots WHERE remaining > 0').fetchone()[0])" "$work/bench.db"
for run in $(seq "$runs"); do
  # One connection: what one reply costs, no queueing behind others on the server's one core.
  echo -n "run $run, balance card, 1 connection:   "
  taskset -c 1 "$bin" --config config/default.toml bench --addr "$addr" --connections 1 --requests 5000 --warmup 500 --content 积分 --openid oHeavy 2>/dev/null
  echo -n "run $run, card page, 1 connection:      "
  taskset -c 1 "$bin" --config config/default.toml bench --addr "$addr" --connections 1 --requests 5000 --warmup 500 --get /h5/card --header "Cookie: $cookie"
  echo -n "run $run, card page, bench_crm.py 1 c.: "
  taskset -c 1 python3 scripts/bench_crm.py get --addr "$addr" --path /h5/card --cookie "$cookie" --requests 5000 --connections 1
  # Four connections: the server's core saturated.
  echo -n "run $run, balance card, wxoa bench:     "
  taskset -c 1 "$bin" --config config/default.toml bench --addr "$addr" --connections 4 --requests 20000 --warmup 2000 --content 积分 --openid oHeavy 2>/dev/null
  echo -n "run $run, card page, wxoa bench --get:  "
  taskset -c 1 "$bin" --config config/default.toml bench --addr "$addr" --connections 4 --requests 20000 --warmup 2000 --get /h5/card --header "Cookie: $cookie"
  echo -n "run $run, card page, bench_crm.py get:  "
  taskset -c 1 python3 scripts/bench_crm.py get --addr "$addr" --path /h5/card --cookie "$cookie" --requests 10000 --connections 4
  if command -v wrk >/dev/null; then
    echo "run $run, card page, wrk:"
    taskset -c 1 wrk -t1 -c4 -d10s --latency -H "Cookie: $cookie" "http://$addr/h5/card" | grep -E "Requests/sec|50%|90%|99%"
  fi
done
stop
