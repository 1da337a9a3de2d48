//! The outbox and its worker against the fake WeChat, on both databases: delivery, verdicts by
//! errcode, dedupe keys, transactions, lease expiry after a worker dies, two workers at once.

mod common;

use common::*;
use std::sync::Arc;
use std::time::Duration;
use wxoa::config::OutboxConfig;
use wxoa::fake::FakeWeChat;
use wxoa::jobs::Kind;
use wxoa::jobs::outbox::{self, NewJob, State};
use wxoa::jobs::worker::Worker;
use wxoa::store::Store;
use wxoa::wechat::client::template::TemplateMessage;
use wxoa::wechat::client::{Client, RateLimits, Retry};
use wxoa::wechat::envelope::Mode;

struct Setup {
    fake: FakeWeChat,
    store: Store,
    client: Client,
    db: Db,
    /// The account the client calls for (another instance builds its own client from it).
    account: wxoa::wechat::client::Account,
}

async fn setup(backend: Backend) -> Setup {
    let db = Db::new(backend).await;
    let mut config = test_config(&db, Mode::Safe);
    let fake = start_fake(&mut config).await;
    fake.tweak(|k| k.callbacks = false);
    let store = Store::connect(&db.url, 8).await.unwrap();
    store.migrate().await.unwrap();
    let retry = Retry { attempts: 1, first: Duration::from_millis(10), max: Duration::from_millis(10) };
    let client = Client::with_retry(&config.wechat.account(), &RateLimits::default(), store.clone(), retry);
    Setup { fake, store, client, db, account: config.wechat.account() }
}

fn outbox_config(lease_secs: u64) -> OutboxConfig {
    OutboxConfig { enabled: true, concurrency: 16, lease_secs, max_attempts: 3, poll_ms: 20 }
}

fn template(openid: &str, n: usize) -> NewJob {
    NewJob::new(
        Kind::Template,
        TemplateMessage::new(openid, "TPL_ORDER", &[("first", &format!("order {n}"))]),
        format!("order:{n}"),
    )
}

/// Starts a worker; returns its stop switch and task.
fn start_worker(s: &Setup, config: OutboxConfig) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    start_worker_with(s, s.client.clone(), config)
}

/// Starts a worker that calls WeChat through `client`.
fn start_worker_with(
    s: &Setup,
    client: Client,
    config: OutboxConfig,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = Worker::new(
        s.store.clone(),
        client,
        wxoa::jobs::worker::Executors::messages(),
        config,
        Arc::new(tokio::sync::Notify::new()),
    );
    (stop, tokio::spawn(worker.run(stopped)))
}

/// Waits up to 10 s until `n` jobs are done.
async fn all_done(store: &Store, n: usize) -> bool {
    for _ in 0..500 {
        if outbox::list(store, Some(State::Done), 100_000).await.unwrap().len() == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn states(store: &Store) -> Vec<(String, i64)> {
    outbox::counts(store).await.unwrap().into_iter().map(|(state, n)| (state.to_string(), n)).collect()
}

#[tokio::test]
async fn jobs_are_delivered_and_judged_by_errcode() {
    for backend in backends() {
        let s = setup(backend).await;
        for n in 0..20 {
            assert!(outbox::enqueue(&s.store, &template("oBuyer", n)).await.unwrap());
        }
        assert!(!outbox::enqueue(&s.store, &template("oBuyer", 0)).await.unwrap(), "dedupe key");
        s.fake.unsubscribe("oGone");
        outbox::enqueue(&s.store, &template("oGone", 100)).await.unwrap();
        // A kind this build does not know (written by a newer one, say) is dead, not retried.
        wxoa::with_pool!(&s.store, pool => sqlx::query(
            "INSERT INTO jobs (kind, payload, dedupe_key, state, attempts, run_at, lease_until, created_at, updated_at) \
             VALUES ('no_such_kind', '{}', 'odd:1', 'queued', 0, 0, 0, 0, 0)").execute(pool).await.map(|_| ()))
        .unwrap();
        // A job enqueued in a transaction that rolls back never exists.
        let mut tx = s.store.begin().await.unwrap();
        outbox::enqueue_tx(&mut tx, &template("oBuyer", 200)).await.unwrap();
        drop(tx);

        // The first template call is busy, the next one over quota.
        s.fake.tweak(|k| k.forced = [-1, 45009].into_iter().collect());
        let (stop, worker) = start_worker(&s, outbox_config(30));
        // Every job tried once; the busy one's backoff (at least a second) has not run out yet.
        let settled = eventually(10, || s.fake.calls_to("/cgi-bin/message/template/send").len() >= 21).await;
        assert!(settled, "{backend:?}: {:?}", states(&s.store).await);
        let _ = stop.send(true);
        worker.await.unwrap();

        let jobs = outbox::list(&s.store, None, 100).await.unwrap();
        assert_eq!(jobs.len(), 22, "{backend:?}");
        let by_key = |k: &str| jobs.iter().find(|j| j.dedupe_key == k).unwrap().clone();
        assert_eq!(by_key("order:100").state, State::Dead, "unsubscribed: not retried");
        assert!(by_key("order:100").last_error.unwrap().contains("43004"));
        assert_eq!(by_key("odd:1").state, State::Dead);
        let done = jobs.iter().filter(|j| j.state == State::Done).count();
        let queued: Vec<_> = jobs.iter().filter(|j| j.state == State::Queued).collect();
        // -1 is retried later (backoff), 45009 postponed without spending an attempt.
        assert_eq!(done + queued.len(), 20, "{jobs:?}");
        assert_eq!(queued.len(), 2, "{jobs:?}");
        assert!(
            queued.iter().any(|j| j.last_error.as_deref().unwrap_or("").contains("45009") && j.attempts == 0),
            "{queued:?}"
        );
        assert!(
            queued.iter().any(|j| j.last_error.as_deref().unwrap_or("").contains("-1") && j.attempts == 1),
            "{queued:?}"
        );
        assert!(
            jobs.iter()
                .filter(|j| j.state == State::Done)
                .all(|j| j.result.as_deref().is_some_and(|r| r.parse::<i64>().is_ok()))
        );
        // Every order went out exactly once, the two refused ones aside.
        let sent: Vec<String> = s
            .fake
            .calls_to("/cgi-bin/message/template/send")
            .iter()
            .filter(|c| c.errcode == 0)
            .map(|c| c.body["data"]["first"]["value"].as_str().unwrap().to_owned())
            .collect();
        let unique: std::collections::HashSet<_> = sent.iter().collect();
        assert_eq!(sent.len(), unique.len(), "no duplicates");
        assert_eq!(sent.len(), 18);

        // A dead job can be retried by hand.
        let dead = by_key("order:100");
        s.fake.subscribe("oGone");
        assert!(outbox::retry(&s.store, dead.id).await.unwrap());
        assert!(!outbox::retry(&s.store, dead.id).await.unwrap(), "already queued");
        s.store.close().await;
        s.db.drop_db().await;
    }
}

/// A worker killed mid-job: its claimed jobs stay leased, then the next worker takes them over.
/// Nothing is lost; what is sent twice is bounded by what it had in flight.
#[tokio::test]
async fn a_dead_workers_jobs_are_taken_over_when_the_lease_runs_out() {
    for backend in backends() {
        let s = setup(backend).await;
        for n in 0..40 {
            outbox::enqueue(&s.store, &template("oBuyer", n)).await.unwrap();
        }
        s.fake.tweak(|k| k.latency_ms = 300);
        let (_stop, worker) = start_worker(&s, outbox_config(1));
        tokio::time::sleep(Duration::from_millis(150)).await;
        worker.abort(); // kill -9, as far as the database can tell
        let _ = worker.await;
        let running = outbox::list(&s.store, Some(State::Running), 100).await.unwrap();
        assert!(!running.is_empty(), "{backend:?}: the dead worker left leased jobs");

        s.fake.tweak(|k| k.latency_ms = 0);
        let (stop, worker) = start_worker(&s, outbox_config(1));
        assert!(all_done(&s.store, 40).await, "{backend:?}: {:?}", states(&s.store).await);
        let _ = stop.send(true);
        worker.await.unwrap();
        let sent = s.fake.calls_to("/cgi-bin/message/template/send").len();
        assert!(
            sent >= 40 && sent <= 40 + running.len(),
            "{backend:?}: {sent} sends for 40 jobs, {} in flight",
            running.len()
        );
        s.store.close().await;
        s.db.drop_db().await;
    }
}

/// Two workers (two instances) on one database never send the same job twice.
#[tokio::test]
async fn two_workers_share_the_queue_without_doubling() {
    for backend in backends() {
        let s = setup(backend).await;
        for n in 0..300 {
            outbox::enqueue(&s.store, &template(&format!("o{n}"), n)).await.unwrap();
        }
        s.fake.tweak(|k| k.latency_ms = 2);
        let (stop_a, a) = start_worker(&s, outbox_config(30));
        let (stop_b, b) = start_worker(&s, outbox_config(30));
        assert!(all_done(&s.store, 300).await, "{backend:?}: {:?}", states(&s.store).await);
        let _ = (stop_a.send(true), stop_b.send(true));
        a.await.unwrap();
        b.await.unwrap();
        let sent = s.fake.calls_to("/cgi-bin/message/template/send");
        let unique: std::collections::HashSet<_> =
            sent.iter().map(|c| c.body["touser"].as_str().unwrap().to_owned()).collect();
        assert_eq!(sent.len(), 300, "{backend:?}");
        assert_eq!(unique.len(), 300);
        s.store.close().await;
        s.db.drop_db().await;
    }
}

/// `[rate_limits]` is the account's budget: three instances (each its own client and worker on
/// one database) together send no faster than one would.
#[tokio::test]
async fn instances_share_one_budget_of_calls() {
    for backend in backends() {
        let s = setup(backend).await;
        let rate = 20.0;
        for n in 0..120 {
            outbox::enqueue(&s.store, &template(&format!("o{n}"), n)).await.unwrap();
        }
        let limits = RateLimits { template: rate, ..RateLimits::default() };
        let retry = Retry { attempts: 1, first: Duration::from_millis(10), max: Duration::from_millis(10) };
        let mut running = Vec::new();
        for _ in 0..3 {
            // Its own connections, as another process would have.
            let own = Store::connect(&s.db.url, 4).await.unwrap();
            let client = Client::with_retry(&s.account, &limits, own, retry);
            running.push(start_worker_with(&s, client, outbox_config(30)));
        }
        assert!(all_done(&s.store, 120).await, "{backend:?}: {:?}", states(&s.store).await);
        for (stop, task) in running {
            let _ = stop.send(true);
            task.await.unwrap();
        }
        let sent = s.fake.calls_to("/cgi-bin/message/template/send");
        let unique: std::collections::HashSet<_> = sent.iter().map(|c| c.body["touser"].as_str().unwrap()).collect();
        assert_eq!((sent.len(), unique.len()), (120, 120), "{backend:?}: each notice once");
        // One second's worth may go at once; after that, one call every 1/rate for all three.
        let first = sent[0].at_ms;
        let interval = 1000.0 / rate;
        for (i, call) in sent.iter().enumerate().skip(rate as usize) {
            let due = ((i as f64 - rate) * interval) as i64 - 100;
            assert!(
                call.at_ms - first >= due,
                "{backend:?}: call {i} after {} ms, due no sooner than {due}",
                call.at_ms - first
            );
        }
        let took = sent.last().unwrap().at_ms - first;
        assert!(took >= 4_700, "{backend:?}: 120 calls at {rate}/s took {took} ms");
        s.store.close().await;
        s.db.drop_db().await;
    }
}
