//! Retention end to end on both databases: messages sent through the webhook and aged, then
//! `wxoa messages purge --dry-run` (counts, changes nothing), `wxoa messages purge` (the XML of
//! messages past `raw_xml_days` dropped with their metadata kept, messages past `messages_days`
//! and finished jobs past `jobs_days` deleted, everything younger untouched, a retry of a
//! fresh message still answered from the log), a second purge finding nothing, and `serve`
//! applying it by itself at start.

mod common;

use common::*;
use wxoa::store::{Pool, Store};
use wxoa::wechat::envelope::Mode;

const BIN: &str = env!("CARGO_BIN_EXE_wxoa");
const DAY: i64 = 86_400_000;

async fn scalar(store: &Store, sql: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    wxoa::with_pool!(store, pool => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await).unwrap()
}

async fn exec(store: &Store, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match &store.pool {
        Pool::Sqlite(pool, ..) => drop(sqlx::query(sql).execute(pool).await.unwrap()),
        Pool::Postgres(pool) => drop(sqlx::query(sql).execute(pool).await.unwrap()),
    }
}

/// `wxoa messages purge [--dry-run]` with `config`: its exit code and output.
async fn purge(dir: &std::path::Path, config: &wxoa::config::Config, dry_run: bool) -> (i32, String) {
    let file = dir.join("purge.toml");
    std::fs::write(&file, toml::to_string(config).unwrap()).unwrap();
    let mut args = vec!["messages".to_owned(), "purge".into(), "--config".into(), file.display().to_string()];
    if dry_run {
        args.push("--dry-run".into());
    }
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN).args(&args).current_dir(repo()).output().unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn old_messages_lose_their_xml_then_go_and_the_young_stay() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let dir = temp_dir("retention");
        let mut config = test_config(&db, Mode::Safe);
        // The jobs below are for the purge to judge, not for a worker to run.
        config.outbox.enabled = false;
        let server = TestServer::start(config.clone()).await;
        // 1,300 messages: more than two purge batches of each kind.
        for i in 0..1300u64 {
            let (status, reply) = server.send(&text_message("oRetention0001", 70_000 + i, "hello")).await;
            assert_eq!(status, 200);
            assert!(reply.is_some());
        }
        let store = server.state.store.clone();
        // Age them: the first 600 received 200 days ago, the next 600 40 days ago, 100 today.
        let first: i64 = scalar(&store, "SELECT MIN(id) FROM inbound_messages").await;
        let now = server.state.clock.now_ms();
        exec(
            &store,
            &format!("UPDATE inbound_messages SET received_at = {} WHERE id < {}", now - 200 * DAY, first + 600),
        )
        .await;
        exec(
            &store,
            &format!(
                "UPDATE inbound_messages SET received_at = {} WHERE id >= {} AND id < {}",
                now - 40 * DAY,
                first + 600,
                first + 1200
            ),
        )
        .await;
        // Finished outbox jobs: one past jobs_days (90), one younger, and a queued one as old.
        for (key, state, age) in [("old-done", "done", 100), ("young-done", "done", 10), ("old-queued", "queued", 100)]
        {
            let t = now - age * DAY;
            exec(
                &store,
                &format!(
                    "INSERT INTO jobs (kind, payload, dedupe_key, state, attempts, run_at, lease_until, created_at, updated_at) \
                     VALUES ('cs_text', '{{}}', '{key}', '{state}', 0, {t}, 0, {t}, {t})"
                ),
            )
            .await;
        }
        let total = "SELECT COUNT(*) FROM inbound_messages";
        let with_xml = "SELECT COUNT(*) FROM inbound_messages WHERE raw_xml <> '' AND reply_xml IS NOT NULL";

        let (code, out) = purge(&dir, &config, true).await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            out.trim(),
            "would strip the XML of 600 messages older than 30 days; would delete 600 messages older than 180 days; \
             would delete 1 finished jobs older than 90 days"
        );
        assert_eq!(
            (scalar(&store, total).await, scalar(&store, with_xml).await),
            (1300, 1300),
            "a dry run changes nothing"
        );

        let (code, out) = purge(&dir, &config, false).await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            out.trim(),
            "stripped the XML of 600 messages older than 30 days; deleted 600 messages older than 180 days; \
             deleted 1 finished jobs older than 90 days"
        );
        assert_eq!(scalar(&store, total).await, 700);
        assert_eq!(scalar(&store, with_xml).await, 100, "only today's keep their XML");
        let kept = "SELECT COUNT(*) FROM inbound_messages WHERE raw_xml = '' AND reply_xml IS NULL \
                    AND openid = 'oRetention0001' AND msg_type = 'text' AND outcome = 'replied' AND rule IS NOT NULL";
        assert_eq!(scalar(&store, kept).await, 600, "a stripped row keeps its metadata");
        let jobs: i64 =
            scalar(&store, "SELECT COUNT(*) FROM jobs WHERE dedupe_key IN ('young-done', 'old-queued')").await;
        assert_eq!((jobs, scalar(&store, "SELECT COUNT(*) FROM jobs WHERE dedupe_key = 'old-done'").await), (2, 0));

        // A retry of today's last message is still answered from the log, with the same reply.
        let last = text_message("oRetention0001", 70_000 + 1299, "hello");
        let logged: String =
            wxoa::with_pool!(&store, pool => sqlx::query_scalar("SELECT reply_xml FROM inbound_messages WHERE msg_id = '71299'")
                .fetch_one(pool).await)
            .unwrap();
        let (status, reply) = server.send(&last).await;
        assert_eq!((status, reply.as_deref()), (200, Some(logged.as_str())));
        assert_eq!(scalar(&store, total).await, 700, "the retry added nothing");

        let (code, out) = purge(&dir, &config, false).await;
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("stripped the XML of 0 messages"), "{out}");
        assert!(out.contains("deleted 0 messages") && out.contains("deleted 0 finished jobs"), "{out}");

        // `serve` applies retention by itself, at start and hourly: the oldest of today's ages.
        exec(&store, &format!("UPDATE inbound_messages SET received_at = {} WHERE msg_id = '71200'", now - 31 * DAY))
            .await;
        server.stop().await;
        let server = TestServer::start(config.clone()).await;
        let store = server.state.store.clone();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while scalar(&store, with_xml).await != 99 {
            assert!(std::time::Instant::now() < deadline, "serve did not strip the newly old message");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        server.stop().await;
        db.drop_db().await;
    }
}
