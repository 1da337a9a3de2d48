//! `wxoa bench`: a load generator for the webhook.
//!
//! It pre-generates N distinct encrypted text messages (signed and encrypted exactly as WeChat
//! does, so the server does all the real work: verify, decrypt, parse, claim, route, record,
//! encrypt), then drives a running server over loopback from `--connections` keep-alive
//! connections on one thread, and reports requests per second and latency percentiles. It speaks
//! raw HTTP/1.1 so the generator costs far less than the server it measures.

use crate::text::Failure;
use crate::wechat::envelope::{Envelope, random_nonce};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// `host:port` of the server.
    pub addr: String,
    pub path: String,
    pub connections: usize,
    pub requests: usize,
    /// Requests sent first and left out of the figures.
    pub warmup: usize,
    /// Decrypt and check every k-th reply (0: none).
    pub verify_every: usize,
    /// What every message says (default `hello <n>`), e.g. `积分` for the balance card.
    pub content: Option<String>,
    /// Who sends every message (default: 5,000 followers in turn).
    pub openid: Option<String>,
    /// Instead of messages: `GET` this path (a page), with `headers` (`Cookie: …`).
    pub get: Option<String>,
    pub headers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub requests: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub per_sec: f64,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Throughput over the first and the last tenth of the measured requests (by completion),
    /// to see whether a long run stays flat.
    pub first_tenth_per_sec: f64,
    pub last_tenth_per_sec: f64,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "requests {}  errors {}  elapsed {:.2}s  {:.0} req/s  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  \
             first 10% {:.0} req/s  last 10% {:.0} req/s",
            self.requests,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.per_sec,
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            self.first_tenth_per_sec,
            self.last_tenth_per_sec
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One pre-built request.
struct Prepared {
    bytes: Vec<u8>,
}

fn prepare(envelope: &Envelope, opts: &BenchOptions, count: usize, run_id: u64) -> Vec<Prepared> {
    let now = crate::clock::Clock::system().now_ms() / 1000;
    if let Some(path) = &opts.get {
        let headers: String = opts.headers.iter().map(|h| format!("{h}\r\n")).collect();
        let bytes = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n{headers}\r\n", opts.addr).into_bytes();
        return (0..count).map(|_| Prepared { bytes: bytes.clone() }).collect();
    }
    (0..count)
        .map(|i| {
            let (query, body) = message(envelope, opts, i, run_id, now);
            let head = format!(
                "POST {}?{query} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
                opts.path,
                opts.addr,
                body.len()
            );
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(body.as_bytes());
            Prepared { bytes }
        })
        .collect()
}

/// The `i`-th message of run `run_id`, signed and encrypted: its query string and body.
fn message(envelope: &Envelope, opts: &BenchOptions, i: usize, run_id: u64, now: i64) -> (String, String) {
    let msg_id = run_id * 10_000_000 + i as u64;
    let from = opts.openid.clone().unwrap_or_else(|| format!("oBench{:022}", i % 5000));
    let content = opts.content.clone().unwrap_or_else(|| format!("hello {i}"));
    let xml = format!(
        "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
         <CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{msg_id}</MsgId></xml>"
    );
    envelope.wrap(&xml, now, &random_nonce())
}

/// Writes `warmup + requests` messages, as [`run`] would send them, to `path` for another load
/// generator (`scripts/bench-wrk.sh` replays them with wrk): one line each, the query string
/// and the body separated by a tab. Returns how many.
pub fn write_requests(envelope: &Envelope, opts: &BenchOptions, path: &std::path::Path) -> Result<usize, Failure> {
    use std::io::Write;
    let total = opts.warmup + opts.requests;
    let run_id = (crate::clock::Clock::system().now_ms() as u64 / 1000) % 1_000_000_000;
    let now = crate::clock::Clock::system().now_ms() / 1000;
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for i in 0..total {
        let (query, body) = message(envelope, opts, i, run_id, now);
        debug_assert!(!body.contains(['\n', '\t']));
        writeln!(out, "{query}\t{body}").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    out.flush().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(total)
}

/// Reads one HTTP/1.1 response; returns (status, body).
pub(crate) async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, Vec<u8>)> {
    buf.clear();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..header_end]).map_err(|_| std::io::Error::other("bad header"))?;
    let status: u16 =
        head.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other("bad status"))?;
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
        })
        .ok_or_else(|| std::io::Error::other("no content-length"))?;
    while buf.len() < header_end + len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, buf[header_end..header_end + len].to_vec()))
}

/// Runs the benchmark. Call it on a current-thread runtime to keep the generator on one core.
pub async fn run(envelope: &Envelope, opts: &BenchOptions) -> Result<BenchReport, Failure> {
    let total = opts.warmup + opts.requests;
    let run_id = (crate::clock::Clock::system().now_ms() as u64 / 1000) % 1_000_000_000;
    if opts.get.is_none() {
        eprintln!("preparing {total} signed, encrypted messages…");
    }
    let requests = Arc::new(prepare(envelope, opts, total, run_id));
    let next = Arc::new(AtomicUsize::new(0));
    let measured_from = Arc::new(std::sync::Mutex::new(None::<Instant>));
    // When each tenth of the measured requests had completed.
    let tenth = (opts.requests / 10).max(1);
    let completed = Arc::new(AtomicUsize::new(0));
    let tenths = Arc::new(std::sync::Mutex::new([None::<Instant>; 10]));
    let envelope = Arc::new(envelope.clone());
    let mut tasks = Vec::new();
    for _ in 0..opts.connections.max(1) {
        let requests = requests.clone();
        let next = next.clone();
        let measured_from = measured_from.clone();
        let completed = completed.clone();
        let tenths = tenths.clone();
        let envelope = envelope.clone();
        let addr = opts.addr.clone();
        let warmup = opts.warmup;
        let verify_every = opts.verify_every;
        let is_get = opts.get.is_some();
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
            let mut errors = 0usize;
            let mut stream = TcpStream::connect(&addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
            stream.set_nodelay(true).ok();
            let mut buf = Vec::with_capacity(4096);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests.len() {
                    break;
                }
                if i == warmup {
                    *measured_from.lock().unwrap() = Some(Instant::now());
                }
                let start = Instant::now();
                let result = async {
                    stream.write_all(&requests[i].bytes).await?;
                    read_response(&mut stream, &mut buf).await
                }
                .await;
                let took = start.elapsed();
                match result {
                    Ok((200, body)) => {
                        if verify_every > 0 && i.is_multiple_of(verify_every) && !is_get {
                            let ok = std::str::from_utf8(&body)
                                .ok()
                                .and_then(|b| envelope.unwrap_reply(b).ok())
                                .flatten()
                                .is_some();
                            if !ok {
                                errors += 1;
                            }
                        }
                    }
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        stream = TcpStream::connect(&addr).await.map_err(|e| format!("reconnect {addr}: {e}"))?;
                        stream.set_nodelay(true).ok();
                    }
                }
                if i >= warmup {
                    latencies.push(took.as_micros().min(u32::MAX as u128) as u32);
                    let n = completed.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_multiple_of(tenth) && n / tenth <= 10 {
                        tenths.lock().unwrap()[n / tenth - 1] = Some(Instant::now());
                    }
                }
            }
            Ok::<_, String>((latencies, errors))
        }));
    }
    let mut all = Vec::with_capacity(opts.requests);
    let mut errors = 0;
    for t in tasks {
        let (lat, err) = t.await.map_err(|e| e.to_string())??;
        all.extend(lat);
        errors += err;
    }
    let started = measured_from.lock().unwrap().unwrap_or_else(Instant::now);
    let elapsed = started.elapsed();
    all.sort_unstable();
    let pct = |p: f64| -> Duration {
        if all.is_empty() {
            return Duration::ZERO;
        }
        let idx = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        Duration::from_micros(all[idx] as u64)
    };
    let tenths = *tenths.lock().unwrap();
    let rate = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
        (Some(a), Some(b)) if b > a => tenth as f64 / (b - a).as_secs_f64(),
        _ => 0.0,
    };
    Ok(BenchReport {
        first_tenth_per_sec: rate(Some(started), tenths[0]),
        last_tenth_per_sec: rate(tenths[8], tenths[9]),
        requests: all.len(),
        errors,
        elapsed,
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: pct(1.0),
    })
}
