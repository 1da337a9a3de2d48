#!/usr/bin/env bash
# Funnel and dashboard benchmark (README, Performance): the campaign funnel API, the console's
# dashboard and a campaign page with its charts, with 1,000,000 link opens counted.
#
# A release `wxoa serve` (pinned to core 0, a fresh SQLite database) gets a campaign through
# the admin API; then the tables the opens are counted in are filled as a launch night of
# 1,000,000 opens by 1,000,000 followers would leave them (`link_openers`: a row a follower;
# `funnel_minutes`: a row a minute over the last 24 hours; `activity_hours`: 30 days of
# messages, follows and taps on 10 menu buttons). Each page is then fetched N times in a row
# over one keep-alive connection by two load generators on core 1 — a Python http.client loop
# and curl (one process, the URL repeated) — and each prints the median and p99.
#
#   scripts/bench-console.sh [REQUESTS=1000]
#   WXOA_BIN=/path/to/wxoa scripts/bench-console.sh …   (another build)
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-1000}
if [ -z "${WXOA_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${WXOA_BIN:-target/release/wxoa}
work=$(mktemp -d)
server=
trap 'if [ -n "$server" ]; then kill $server 2>/dev/null || true; fi; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
db="$work/bench.db"
export WXOA_DATABASE__URL="sqlite://$db" WXOA_SERVER__LISTEN="127.0.0.1:$port" WXOA_SERVER__WORKERS=1 RUST_LOG=warn
token=wxoa-dev-marketing-token   # config/default.toml's sample marketing token
base="http://127.0.0.1:$port"

"$bin" --config config/default.toml migrate >/dev/null
taskset -c 0 "$bin" serve --config config/default.toml &
server=$!
for _ in $(seq 100); do curl -fs "$base/healthz" -o /dev/null && break; sleep 0.1; done

curl -fs -H "Authorization: Bearer $token" -H 'content-type: application/json' -o /dev/null \
  -d '{"name":"Launch","product":{"sku":"LE-BENCH","name":"Limited Edition","stock":300},
       "articles":[{"title":"Tonight","digest":"300 pieces","content":"<p>00:13</p>","cover_media_id":"M","cover_url":"https://example.com/c.jpg"}]}' \
  "$base/api/v1/campaigns"

python3 - "$db" <<'PY'
import random, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30)
now = int(time.time() * 1000)
start_min = now // 60000 - 24 * 60 + 1
opens = 1_000_000
t = time.monotonic()
with db:
    db.executemany(
        "INSERT INTO link_openers (campaign_id, openid, push_id, first_at) VALUES (1, ?, 0, ?)",
        ((f"oBenchOpener{i:07d}", (start_min + i * 1440 // opens) * 60000) for i in range(opens)))
    per = opens // 1440
    db.executemany(
        "INSERT INTO funnel_minutes (campaign_id, push_id, minute, opens, openers, checkouts, orders, paid, revenue_fen) "
        "VALUES (1, 0, ?, ?, ?, ?, ?, ?, ?)",
        ((start_min + m, per + (1 if m < opens % 1440 else 0), per, per // 3, per // 5, per // 6, per // 6 * 129900)
         for m in range(1440)))
    hour0 = now // 3600000 - 30 * 24
    rows = []
    for h in range(hour0, hour0 + 30 * 24 + 1):
        rows += [(h, "message", "", random.randint(500, 5000)), (h, "subscribe", "", random.randint(10, 200)),
                 (h, "unsubscribe", "", random.randint(0, 30))]
        rows += [(h, "click", f"KEY_{k}", random.randint(0, 300)) for k in range(10)]
    db.executemany("INSERT INTO activity_hours (hour, kind, event_key, count) VALUES (?, ?, ?, ?)", rows)
print(f"seeded {opens:,} link opens, 1,440 funnel minutes, {len(rows):,} activity hours in {time.monotonic() - t:.1f} s")
PY

# As a browser signs in: the login page (its cookie and the form's login_token), then the form.
login=$(curl -s -D - "$base/admin/login")
login_cookie=$(printf '%s' "$login" | sed -n 's/^[Ss]et-[Cc]ookie: \(wxoa_admin_login=[^;]*\).*/\1/p')
login_token=$(printf '%s' "$login" | sed -n 's/.*name="login_token" value="\([0-9a-f]*\)".*/\1/p')
cookie=$(curl -s -o /dev/null -D - -H "Cookie: $login_cookie" -d "token=$token&login_token=$login_token" "$base/admin/login" \
  | sed -n 's/^[Ss]et-[Cc]ookie: \(wxoa_admin=[^;]*\).*/\1/p')
[ -n "$cookie" ] || { echo "console sign-in failed" >&2; exit 1; }

for path in /api/v1/campaigns/1/funnel /admin /admin/campaigns/1; do
  taskset -c 1 python3 - "$port" "$path" "$requests" "$token" "$cookie" <<'PY'
import http.client, statistics, sys, time
port, path, n, token, cookie = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
c = http.client.HTTPConnection("127.0.0.1", port)
headers = {"Authorization": f"Bearer {token}"} if path.startswith("/api/") else {"Cookie": cookie}
times = []
for i in range(n + 20):
    t = time.perf_counter()
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"{path}: {r.status} {body[:200]!r}")
    if i >= 20:
        times.append((time.perf_counter() - t) * 1000)
times.sort()
print(f"{path:28} python  median {statistics.median(times):6.2f} ms  p99 {times[int(len(times) * 0.99) - 1]:6.2f} ms  ({len(body):,} bytes)")
PY
  if [[ $path == /api/* ]]; then auth="Authorization: Bearer $token"; else auth="Cookie: $cookie"; fi
  for _ in $(seq "$requests"); do echo "url = \"$base$path\""; echo 'output = "/dev/null"'; done >"$work/urls"
  taskset -c 1 curl -s -H "$auth" -w '%{http_code} %{time_total}\n' -K "$work/urls" | python3 -c '
import statistics, sys
path = sys.argv[1]
rows = [l.split() for l in sys.stdin if l.strip()]
bad = [r for r in rows if r[0] != "200"]
if bad:
    sys.exit(f"{path}: {len(bad)} answers not 200: {bad[:3]}")
t = sorted(float(r[1]) * 1000 for r in rows)
print(f"{path:28} curl    median {statistics.median(t):6.2f} ms  p99 {t[int(len(t) * 0.99) - 1]:6.2f} ms")
' "$path"
done
