//! `wxoa bench-crm`: a load generator for `POST /api/v1/crm/transactions`.
//!
//! It pre-builds `--batches` signed batches of `--batch-size` earns (fresh references, cards
//! `B00000000`… taken in turn from `--members`, as `scripts/bench-points.sh` imports them), posts
//! them from `--connections` keep-alive connections, and reports transactions per second and
//! each batch's latency. A batch that is not `200` with every item applied is an error, so a
//! figure is never made of duplicates or refusals.

use super::bench::read_response;
use crate::text::Failure;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
pub struct CrmBenchOptions {
    pub addr: String,
    pub secret: String,
    pub batches: usize,
    pub batch_size: usize,
    pub members: usize,
    pub connections: usize,
}

/// The card number of bench member `i` (what the import of `scripts/bench-points.sh` gives).
pub fn card(i: usize) -> String {
    format!("B{i:08}")
}

fn prepare(opts: &CrmBenchOptions, run: u64) -> Vec<Vec<u8>> {
    let ts = (crate::clock::Clock::system().now_ms() / 1000).to_string();
    (0..opts.batches)
        .map(|b| {
            let items: Vec<serde_json::Value> = (0..opts.batch_size)
                .map(|i| {
                    let n = b * opts.batch_size + i;
                    serde_json::json!({
                        "reference": format!("BENCH-{run}-{n}"), "card_no": card(n % opts.members.max(1)),
                        "kind": "earn", "points": 1 + n % 300, "store_code": "SH01", "amount_fen": 10_000 + n % 90_000,
                    })
                })
                .collect();
            let body = serde_json::json!({ "transactions": items }).to_string();
            let signature = crate::secret::signature(&opts.secret, &ts, body.as_bytes());
            let head = format!(
                "POST /api/v1/crm/transactions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                 X-Wxoa-Timestamp: {ts}\r\nX-Wxoa-Signature: {signature}\r\nContent-Length: {}\r\n\r\n",
                opts.addr,
                body.len()
            );
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(body.as_bytes());
            bytes
        })
        .collect()
}

/// Runs it; one line of figures.
pub async fn run(opts: &CrmBenchOptions) -> Result<String, Failure> {
    let run = crate::clock::Clock::system().now_ms() as u64;
    let batches = Arc::new(prepare(opts, run));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..opts.connections.max(1) {
        let (batches, next, addr, size) = (batches.clone(), next.clone(), opts.addr.clone(), opts.batch_size);
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
            stream.set_nodelay(true).ok();
            let mut buf = Vec::new();
            let (mut latencies, mut errors) = (Vec::new(), Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= batches.len() {
                    break;
                }
                let start = Instant::now();
                stream.write_all(&batches[i]).await.map_err(|e| e.to_string())?;
                let (status, body) = read_response(&mut stream, &mut buf).await.map_err(|e| e.to_string())?;
                latencies.push(start.elapsed());
                let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                if status != 200 || answer["applied"].as_u64() != Some(size as u64) {
                    errors.push(format!(
                        "{status} {}",
                        String::from_utf8_lossy(&body).chars().take(200).collect::<String>()
                    ));
                }
            }
            Ok::<_, String>((latencies, errors))
        }));
    }
    let (mut all, mut errors) = (Vec::new(), Vec::new());
    for t in tasks {
        let (l, e) = t.await.map_err(|e| e.to_string())??;
        all.extend(l);
        errors.extend(e);
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let pct = |p: f64| {
        let idx = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len().max(1)) - 1;
        all.get(idx).copied().unwrap_or(Duration::ZERO).as_secs_f64() * 1000.0
    };
    if let Some(first) = errors.first() {
        return Err(Failure(format!("{} of {} batches failed, e.g. {first}", errors.len(), opts.batches)));
    }
    let tx = opts.batches * opts.batch_size;
    Ok(format!(
        "batches {}  transactions {tx}  elapsed {:.2}s  {:.0} transactions/s  batch p50 {:.1} ms  p99 {:.1} ms",
        opts.batches,
        elapsed.as_secs_f64(),
        tx as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    ))
}
