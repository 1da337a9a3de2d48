//! Nothing acknowledged that is not durable: the SQLite files deleted or made unwritable under
//! a running server, the write lock held by another process past WeChat's 5 s, and a restart
//! onto a lost database. Each case checks what WeChat was answered, how fast, what `/readyz`
//! said, and what the database holds afterwards.

mod common;

use common::*;
use std::time::{Duration, Instant};
use wxoa::wechat::envelope::Mode;

fn sqlite_path(db: &Db) -> std::path::PathBuf {
    std::path::PathBuf::from(db.url.trim_start_matches("sqlite://"))
}

async fn ready(server: &TestServer) -> (u16, String) {
    server.get("/readyz").await
}

const CRM_SECRET: &str = "durability-crm-secret-0123456789abcdef";

/// A signed CRM batch of one earn for a card nobody has (a write transaction all the same).
async fn crm_batch(server: &TestServer, reference: &str) -> (u16, String) {
    let body = format!(
        r#"{{"transactions": [{{"reference": "{reference}", "card_no": "C404", "kind": "earn", "points": 1}}]}}"#
    );
    shop_call(server, "/api/v1/crm/transactions", &body, CRM_SECRET, server.state.clock.now_secs()).await
}

async fn logged(store: &wxoa::store::Store, msg_id: u64) -> i64 {
    wxoa::with_pool!(store, pool => sqlx::query_scalar("SELECT COUNT(*) FROM inbound_messages WHERE msg_id = $1")
        .bind(msg_id.to_string()).fetch_one(pool).await)
    .unwrap()
}

#[tokio::test]
async fn a_deleted_database_is_never_acknowledged_and_not_silently_recreated() {
    let db = Db::new(Backend::Sqlite).await;
    let mut config = test_config(&db, Mode::Safe);
    config.database.create = false;
    config.crm.secret = CRM_SECRET.into();
    let server = TestServer::start(config.clone()).await;
    assert_eq!(server.send(&text_message("oDur1", 1, "hello")).await.0, 200);
    assert_eq!(ready(&server).await, (200, "ready".into()));

    let path = sqlite_path(&db);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    // Twenty messages after the deletion: none is acknowledged.
    for i in 0..20u64 {
        let (status, body) = server.send(&text_message("oDur1", 100 + i, "after")).await;
        assert_eq!(status, 503, "message {i}: {body:?}");
    }
    let (status, why) = ready(&server).await;
    assert_eq!(status, 503);
    assert!(why.contains("database lost") && why.contains("wxoa.db"), "{why}");
    // The brand's systems are told the same: unavailable, try again — not an internal error.
    let (status, body) = crm_batch(&server, "LOST-1").await;
    assert_eq!((status, body.as_str()), (503, r#"{"error":"the database is unavailable; try again"}"#));
    server.stop().await;

    // A restart does not start over on an empty database…
    let again = wxoa::app::App::build(config.clone(), wxoa::bot::handlers::Handlers::builtin()).await;
    let err = again.err().expect("refused").to_string();
    assert!(err.contains("although one was created there") && err.contains("--create-database"), "{err}");
    assert!(!path.exists(), "nothing was created");
    // …unless asked to.
    config.database.create = true;
    let fresh = TestServer::start(config).await;
    assert_eq!(fresh.send(&text_message("oDur1", 200, "anew")).await.0, 200);
    fresh.stop().await;
}

#[tokio::test]
async fn an_unwritable_database_file_is_not_acknowledged() {
    use std::os::unix::fs::PermissionsExt;
    let db = Db::new(Backend::Sqlite).await;
    let server = TestServer::start(test_config(&db, Mode::Safe)).await;
    let path = sqlite_path(&db);
    assert_eq!(server.send(&text_message("oDur2", 1, "hello")).await.0, 200);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    let (status, _) = server.send(&text_message("oDur2", 2, "unwritable")).await;
    assert_eq!(status, 503);
    let (status, why) = ready(&server).await;
    assert_eq!(status, 503);
    assert!(why.contains("mode 0"), "{why}");
    // Mended: ready again, and WeChat's retry of the refused message is taken.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(ready(&server).await.0, 200);
    assert_eq!(server.send(&text_message("oDur2", 2, "unwritable")).await.0, 200);
    assert_eq!(logged(&server.state.store, 2).await, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_locked_database_gets_a_prompt_503_not_a_late_answer() {
    let db = Db::new(Backend::Sqlite).await;
    let mut config = test_config(&db, Mode::Safe);
    config.bot.reply_deadline_ms = 1000;
    config.crm.secret = CRM_SECRET.into();
    let server = TestServer::start(config).await;
    assert_eq!(server.send(&text_message("oDur3", 1, "hello")).await.0, 200);

    // Another process takes the write lock and keeps it for 6 s. The test waits for it without
    // blocking its runtime: the server runs on that runtime, and a write transaction of its own
    // that is open at that moment must be able to commit, or the holder never gets the lock.
    let path = sqlite_path(&db);
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let holder = tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE; UPDATE wxoa_probe SET at = 1;").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(6));
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.await.unwrap();

    let msg = text_message("oDur3", 2, "while locked");
    let started = Instant::now();
    let (status, _) = server.send(&msg).await;
    let took = started.elapsed();
    assert_eq!(status, 503, "a message that cannot be logged is not acknowledged");
    assert!(took < Duration::from_millis(1900), "answered within the deadline plus its margin: {took:?}");
    let started = Instant::now();
    let (status, why) = ready(&server).await;
    assert_eq!(status, 503, "{why}");
    assert!(started.elapsed() < Duration::from_millis(1500), "readiness answers promptly: {:?}", started.elapsed());
    // A CRM batch waits no longer than the webhook would, and says to send it again.
    let started = Instant::now();
    let (status, body) = crm_batch(&server, "LOCKED-1").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("did not take the batch within 1000 ms; send it again"), "{body}");
    assert!(started.elapsed() < Duration::from_millis(1900), "{:?}", started.elapsed());

    holder.await.unwrap();
    // The lock is gone: ready again, and WeChat's retry gets an answer, logged once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&server).await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready again after the lock was released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, reply) = server.send(&msg).await;
    assert_eq!(status, 200, "{reply:?}");
    assert_eq!(logged(&server.state.store, 2).await, 1);
    let (status, body) = crm_batch(&server, "LOCKED-1").await;
    assert_eq!(status, 200, "the batch sent again is judged: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (answer["applied"].as_i64(), answer["rejected"][0]["reference"].as_str()),
        (Some(0), Some("LOCKED-1")),
        "{body}"
    );
    server.stop().await;
}
