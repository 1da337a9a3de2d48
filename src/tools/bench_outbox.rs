//! `wxoa bench-outbox`: outbox throughput against a fake WeChat. Enqueues N template-message
//! jobs (one run id, numbered), runs the outbox worker until every one is done, and checks the
//! fake's record of calls: each job sent exactly once (none lost, none doubled). With
//! `--enqueue-only` / `--verify-only` the same pieces drive a crash test: enqueue, let `wxoa
//! serve` send them, `kill -9` it halfway, restart, then verify (none lost; doubles bounded by the
//! jobs in flight at the kill).

use crate::config::Config;
use crate::jobs::Kind;
use crate::jobs::outbox::{self, NewJob};
use crate::jobs::worker::Worker;
use crate::store::Store;
use crate::text::Failure;
use crate::wechat::client::template::TemplateMessage;
use crate::with_pool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Enqueues `n` template jobs for run `run`, in transactions of 1,000.
pub async fn enqueue(store: &Store, run: &str, n: usize) -> Result<(), Failure> {
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut tx = store.begin().await.map_err(|e| e.to_string())?;
        for i in chunk {
            let message = TemplateMessage::new(
                &format!("oBench{:022}", i % 10_000),
                "TPL_BENCH",
                &[("first", &format!("{run} {i}"))],
            );
            outbox::enqueue_tx(&mut tx, &NewJob::new(Kind::Template, message, format!("bench:{run}:{i}")))
                .await
                .map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
    }
    eprintln!("enqueued {n} jobs in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn done_count(store: &Store, run: &str) -> Result<i64, Failure> {
    let pattern = format!("bench:{run}:%");
    Ok(with_pool!(store, pool => sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'done' AND dedupe_key LIKE $1")
        .bind(pattern).fetch_one(pool).await)
    .map_err(|e| e.to_string())?)
}

/// Runs a worker until the run's `n` jobs are done; returns the elapsed time.
pub async fn drain(config: &Config, store: &Store, run: &str, n: usize) -> Result<Duration, Failure> {
    let client = crate::wechat::client::Client::new(&config.wechat.account(), &config.rate_limits, store.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = Worker::new(
        store.clone(),
        client,
        crate::jobs::worker::Executors::messages(),
        config.outbox.clone(),
        Arc::new(tokio::sync::Notify::new()),
    );
    let started = Instant::now();
    let task = tokio::spawn(worker.run(stopped));
    wait_done(store, run, n, Duration::from_secs(600)).await?;
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    let _ = task.await;
    Ok(elapsed)
}

/// Whether any of the run's jobs is still queued or running. Reads only unfinished jobs (through
/// the `state` index), so polling costs little however many finished jobs the table holds.
async fn unfinished(store: &Store, run: &str) -> Result<bool, Failure> {
    let pattern = format!("bench:{run}:%");
    let row: Option<i64> = with_pool!(store, pool => sqlx::query_scalar(
        "SELECT id FROM jobs WHERE state IN ('queued', 'running') AND dedupe_key LIKE $1 LIMIT 1")
        .bind(pattern).fetch_optional(pool).await)
    .map_err(|e| e.to_string())?;
    Ok(row.is_some())
}

/// Waits until the run's `n` jobs are done.
pub async fn wait_done(store: &Store, run: &str, n: usize, timeout: Duration) -> Result<(), Failure> {
    let started = Instant::now();
    loop {
        if !unfinished(store, run).await? && done_count(store, run).await? >= n as i64 {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(Failure(format!("only {} of {n} jobs done after {timeout:?}", done_count(store, run).await?)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the fake saw: (jobs sent at least once, extra sends).
pub async fn verify(fake_url: &str, run: &str, n: usize) -> Result<(usize, usize), Failure> {
    let calls: Vec<serde_json::Value> = reqwest::get(format!("{fake_url}/_fake/calls"))
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let prefix = format!("{run} ");
    for c in calls {
        if c["path"] != "/cgi-bin/message/template/send" || c["errcode"] != 0 {
            continue;
        }
        if let Some(i) = c["body"]["data"]["first"]["value"]
            .as_str()
            .and_then(|v| v.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
        {
            *seen.entry(i).or_default() += 1;
        }
    }
    let delivered = (0..n).filter(|i| seen.contains_key(i)).count();
    let extra = seen.values().map(|c| c - 1).sum();
    Ok((delivered, extra))
}

/// A run id nobody used before.
pub fn new_run_id() -> String {
    format!("r{}", crate::clock::Clock::system().now_ms())
}
