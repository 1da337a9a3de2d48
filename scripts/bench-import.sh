#!/usr/bin/env bash
# Bulk work beside the webhook: `wxoa members import` of ROWS generated members into the live
# SQLite database of a running `serve`, while a second process sends the webhook a steady RATE
# text messages a second (plain mode, Python's http.client, latency counted from when each was
# due, so a stalled server cannot hide behind a waiting sender). Prints the import's time and
# peak memory, then the webhook's answers while it ran: how many, how many not 200, p50/p99/max.
#
#   scripts/bench-import.sh [ROWS=100000] [RATE=50]
#   WXOA_BIN=/path/to/wxoa scripts/bench-import.sh …   (another build)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-100000}
rate=${2:-50}
if [ -z "${WXOA_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${WXOA_BIN:-target/release/wxoa}
work=$(mktemp -d)
trap 'kill $server $load 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

python3 - "$rows" "$work/members.csv" <<'PY'
import sys
rows, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("card_no,name,phone,birthday,points\n")
    for i in range(rows):
        f.write(f"C{i:08d},Member {i},1{3 + i % 7}{i:09d},1990-{1 + i % 12:02d}-{1 + i % 28:02d},{i % 1000}\n")
PY

export WXOA_SERVER__LISTEN=127.0.0.1:$port WXOA_DATABASE__URL="sqlite://$work/wxoa.db" WXOA_WECHAT__MODE=plain
RUST_LOG=warn "$bin" serve --config config/default.toml 2>"$work/serve.log" &
server=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

python3 - "$port" "$rate" "$work/stop" "$work/load.txt" <<'PY' &
import hashlib, http.client, os, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
port, rate, stop, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
token = "wxoadevtoken"
local = threading.local()
results, lock = [], threading.Lock()

def send(n, due):
    conn = getattr(local, "conn", None)
    if conn is None:
        conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    ts, nonce, openid = str(int(time.time())), f"n{n}", f"oBenchImport{n % 1000:04d}"
    sig = hashlib.sha1("".join(sorted([token, ts, nonce])).encode()).hexdigest()
    body = (f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello {n}]]></Content>"
            f"<MsgId>{9_000_000_000 + n}</MsgId></xml>")
    try:
        conn.request("POST", f"/wechat?signature={sig}&timestamp={ts}&nonce={nonce}&openid={openid}", body,
                     {"Content-Type": "text/xml"})
        r = conn.getresponse(); r.read(); status = r.status
    except Exception:
        local.conn = None; status = 0
    with lock:
        results.append((status, time.monotonic() - due))

with ThreadPoolExecutor(64) as pool:
    start, n = time.monotonic(), 0
    while not os.path.exists(stop):
        due = start + n / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        pool.submit(send, n, due)
        n += 1
lat = sorted(l for _, l in results)
bad = sum(1 for s, _ in results if s != 200)
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else 0
with open(out, "w") as f:
    f.write(f"webhook beside it: {len(results)} messages at {rate:.0f}/s, {bad} not 200, "
            f"p50 {pick(0.5):.1f} ms  p99 {pick(0.99):.1f} ms  max {lat[-1] * 1000 if lat else 0:.1f} ms\n")
PY
load=$!
sleep 2
/usr/bin/time -f "%e %M" -o "$work/time" "$bin" members import --config config/default.toml "$work/members.csv" >"$work/import.log"
sleep 1
touch "$work/stop"
wait $load
read -r secs kb <"$work/time"
echo "import of $rows rows: ${secs} s, peak memory $((kb / 1024)) MB; $(tail -1 "$work/import.log")"
cat "$work/load.txt"
