#!/usr/bin/env python3
"""A second load generator for the points benchmarks (scripts/bench-points.sh), independent of
`wxoa bench` / `wxoa bench-crm`: the standard library only, one keep-alive connection per thread.

  bench_crm.py batches --addr HOST:PORT --secret S [--batches 40] [--size 1000] [--members 20000]
                       [--connections 2] [--card CARD] [--spread-days 0]
  bench_crm.py get --addr HOST:PORT --path /h5/card --cookie 'wxoa_session=…' [--requests 20000]
                   [--connections 4]

`batches` posts signed batches of earns (fresh references; with --card all for one member, every
tenth a small negative adjust, and occurred_at spread over --spread-days) and fails unless every
item is applied. `get` measures a page. Each prints one line of figures.
"""
import argparse
import datetime
import hashlib
import hmac
import http.client
import json
import socket
import sys
import threading
import time


def percentile(sorted_ms, p):
    if not sorted_ms:
        return 0.0
    i = min(len(sorted_ms), max(1, int(-(-len(sorted_ms) * p // 1)))) - 1
    return sorted_ms[i]


def connect(host, port, timeout):
    """A keep-alive connection with Nagle off: http.client sends the head and the body in two
    writes, and Nagle holding the second for the server's delayed ACK would add ~40 ms a call."""
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def run_threads(n, work):
    """Runs work(thread_index) on n threads; returns their results and the elapsed seconds."""
    results = [None] * n
    def target(i):
        results[i] = work(i)
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - started


def batches(a):
    run = int(time.time() * 1000)
    china = datetime.timezone(datetime.timedelta(hours=8))
    now = datetime.datetime.now(china)
    bodies = []
    for b in range(a.batches):
        items = []
        for i in range(a.size):
            n = b * a.size + i
            card = a.card or "B%08d" % (n % a.members)
            if a.card and n % 10 == 9:
                item = {"reference": "PY-%d-%d" % (run, n), "card_no": card, "kind": "adjust", "points": -5}
            else:
                item = {"reference": "PY-%d-%d" % (run, n), "card_no": card, "kind": "earn",
                        "points": 1 + n % 300, "store_code": "SH01", "amount_fen": 10000 + n % 90000}
            if a.spread_days:
                at = now - datetime.timedelta(days=(a.batches * a.size - n) * a.spread_days / (a.batches * a.size))
                item["occurred_at"] = at.isoformat()
            items.append(item)
        bodies.append(json.dumps({"transactions": items}).encode())
    ts = str(int(time.time()))
    signed = [(body, hmac.new(a.secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest())
              for body in bodies]
    host, port = a.addr.rsplit(":", 1)
    lock = threading.Lock()
    queue = list(range(len(signed)))

    def work(_):
        conn = connect(host, port, 60)
        latencies, errors = [], []
        while True:
            with lock:
                if not queue:
                    break
                i = queue.pop(0)
            body, sig = signed[i]
            start = time.perf_counter()
            conn.request("POST", "/api/v1/crm/transactions", body,
                         {"Content-Type": "application/json", "X-Wxoa-Timestamp": ts, "X-Wxoa-Signature": sig})
            resp = conn.getresponse()
            answer = resp.read()
            latencies.append((time.perf_counter() - start) * 1000)
            applied = json.loads(answer).get("applied") if resp.status == 200 else None
            if applied != a.size:
                errors.append("%d %s" % (resp.status, answer[:200]))
        return latencies, errors

    results, elapsed = run_threads(a.connections, work)
    latencies = sorted(l for r in results for l in r[0])
    errors = [e for r in results for e in r[1]]
    if errors:
        sys.exit("%d of %d batches failed, e.g. %s" % (len(errors), a.batches, errors[0]))
    tx = a.batches * a.size
    print("batches %d  transactions %d  elapsed %.2fs  %.0f transactions/s  batch p50 %.1f ms  p99 %.1f ms"
          % (a.batches, tx, elapsed, tx / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99)))


def get(a):
    host, port = a.addr.rsplit(":", 1)
    per_thread = a.requests // a.connections

    def work(_):
        conn = connect(host, port, 30)
        latencies, errors = [], 0
        for _ in range(per_thread):
            start = time.perf_counter()
            conn.request("GET", a.path, headers={"Cookie": a.cookie})
            resp = conn.getresponse()
            resp.read()
            latencies.append((time.perf_counter() - start) * 1000)
            errors += resp.status != 200
        return latencies, errors

    results, elapsed = run_threads(a.connections, work)
    latencies = sorted(l for r in results for l in r[0])
    errors = sum(r[1] for r in results)
    print("requests %d  errors %d  elapsed %.2fs  %.0f req/s  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms"
          % (len(latencies), errors, elapsed, len(latencies) / elapsed, percentile(latencies, 0.5),
             percentile(latencies, 0.9), percentile(latencies, 0.99), latencies[-1]))
    if errors:
        sys.exit(1)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("batches")
    b.add_argument("--addr", required=True)
    b.add_argument("--secret", required=True)
    b.add_argument("--batches", type=int, default=40)
    b.add_argument("--size", type=int, default=1000)
    b.add_argument("--members", type=int, default=20000)
    b.add_argument("--connections", type=int, default=2)
    b.add_argument("--card")
    b.add_argument("--spread-days", type=float, default=0)
    g = sub.add_parser("get")
    g.add_argument("--addr", required=True)
    g.add_argument("--path", required=True)
    g.add_argument("--cookie", required=True)
    g.add_argument("--requests", type=int, default=20000)
    g.add_argument("--connections", type=int, default=4)
    a = p.parse_args()
    batches(a) if a.mode == "batches" else get(a)


if __name__ == "__main__":
    main()
