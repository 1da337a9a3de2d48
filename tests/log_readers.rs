//! The readers behind the webhook (the follower directory and the hourly activity counts), on
//! SQLite and PostgreSQL: what a serving instance wrote while messages arrived — on SQLite from
//! the rows its log writer hands over, with a row written by another process in between — is
//! exactly what reading the whole log again from the start gives.
//!
//! Alone in its test binary: it reads the process's metrics to see which way the rows came.

mod common;

use common::*;
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::BTreeMap;
use std::time::Duration;
use wxoa::store::Store;
use wxoa::wechat::envelope::Mode;
use wxoa::with_pool;

type FollowerRow = (String, bool, Option<i64>, Option<String>, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
type HourRow = (i64, String, String, i64);

/// The directory and the counts, in a fixed order.
async fn snapshot(store: &Store) -> (Vec<FollowerRow>, Vec<HourRow>) {
    let followers: Vec<FollowerRow> = with_pool!(store, pool => sqlx::query_as(
        "SELECT openid, subscribed, store_id, scene, first_subscribed_at, last_subscribed_at, unsubscribed_at, \
         last_interaction_at FROM followers ORDER BY openid").fetch_all(pool).await)
    .unwrap();
    let hours: Vec<HourRow> = with_pool!(store, pool => sqlx::query_as(
        "SELECT hour, kind, event_key, count FROM activity_hours ORDER BY hour, kind, event_key").fetch_all(pool).await)
    .unwrap();
    (followers, hours)
}

/// Waits until both readers have read the whole log.
async fn caught_up(store: &Store) {
    for _ in 0..500 {
        let newest: Option<i64> = with_pool!(store, pool => sqlx::query_scalar("SELECT MAX(id) FROM inbound_messages")
            .fetch_one(pool).await)
        .unwrap();
        let positions: Vec<i64> = with_pool!(store, pool => sqlx::query_scalar(
            "SELECT position FROM log_cursors WHERE name IN ('followers', 'activity')").fetch_all(pool).await)
        .unwrap();
        if positions.len() == 2 && positions.iter().all(|p| Some(*p) == newest) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the log readers did not catch up");
}

/// The rows `reader` took from the writer (`memory`) or from the log, per the process's metrics.
fn rows_read(metrics: &PrometheusHandle, reader: &str, from: &str) -> i64 {
    let (reader, from) = (format!("reader=\"{reader}\""), format!("from=\"{from}\""));
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("wxoa_log_reader_rows_total{") && l.contains(&from))
        .find(|l| l.contains(&reader))
        .and_then(|l| l.rsplit_once(' '))
        .map_or(0, |(_, v)| v.trim().parse().unwrap())
}

/// One round of traffic from followers named `tag…`: each sends one message that counts as an
/// interaction (so a directory kept a pass at a time and one read at once agree to the ms).
async fn round(server: &TestServer, tag: &str, t: i64) {
    for i in 0..6 {
        let scene = if i % 2 == 0 { format!("qrscene_store_{}", 20 + i) } else { String::new() };
        assert_eq!(server.send(&event_message(&format!("o{tag}Fan{i:020}"), "subscribe", &scene, t)).await.0, 200);
    }
    for i in 0..4 {
        let openid = format!("o{tag}Left{i:019}");
        assert_eq!(server.send(&event_message(&openid, "subscribe", "", t)).await.0, 200);
        assert_eq!(server.send(&event_message(&openid, "unsubscribe", "", t + 1)).await.0, 200);
    }
    for i in 0..12 {
        let msg_id = 7_000_000 + (tag.len() as u64) * 1000 + i;
        assert_eq!(server.send(&text_message(&format!("o{tag}Text{i:019}"), msg_id, "你好")).await.0, 200);
    }
    for i in 0..6 {
        let (event, key) =
            if i % 3 == 2 { ("VIEW", "https://shop.example.com/新品") } else { ("CLICK", "MEMBER_CARD") };
        assert_eq!(server.send(&event_message(&format!("o{tag}Tap{i:020}"), event, key, t)).await.0, 200);
    }
}

#[tokio::test]
async fn what_a_server_kept_equals_the_log_read_again() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        config.followers.catch_up_ms = 50;
        let _fake = start_fake(&mut config).await;
        let server = TestServer::start(config).await;
        let store = server.state.store.clone();
        let t = server.state.clock.now_ms() / 1000;
        let (from_memory, from_log) = (
            rows_read(&server.state.metrics, "followers", "memory"),
            rows_read(&server.state.metrics, "followers", "log"),
        );

        round(&server, "A", t).await;
        caught_up(&store).await;
        // Another process writes a row to the log between two of this server's.
        let now = server.state.clock.now_ms();
        with_pool!(&store, pool => sqlx::query(
            "INSERT INTO inbound_messages (dedup_key, openid, msg_type, create_time, encrypted, raw_xml, received_at, \
             claimed_by, claimed_at) VALUES ('m:other', 'oOtherProcess00000000000001', 'text', $1, FALSE, '<xml/>', $2, 'other', $2)")
            .bind(t).bind(now).execute(pool).await.map(|_| ()))
        .unwrap();
        round(&server, "BB", t + 2).await;
        caught_up(&store).await;
        let kept = snapshot(&store).await;
        assert_eq!(kept.0.len(), 2 * (6 + 4 + 12 + 6) + 1, "{:?}", kept.0);
        let mut kinds: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for (_, kind, key, n) in &kept.1 {
            *kinds.entry((kind, key)).or_default() += n;
        }
        let want: BTreeMap<(&str, &str), i64> = [
            (("click", "MEMBER_CARD"), 8),
            (("message", ""), 2 * 12 + 1),
            (("subscribe", ""), 2 * (6 + 4)),
            (("unsubscribe", ""), 2 * 4),
            (("view", "https://shop.example.com/新品"), 4),
        ]
        .into();
        assert_eq!(kinds, want);
        if backend == Backend::Sqlite {
            assert!(
                rows_read(&server.state.metrics, "followers", "memory") - from_memory >= 32,
                "the server took its rows from the writer"
            );
            assert!(
                rows_read(&server.state.metrics, "followers", "log") - from_log >= 1,
                "and the other process's row from the log"
            );
        }
        server.stop().await;

        // The same log, read again from the start.
        let again = Store::connect(&db.url, 2).await.unwrap();
        for table in ["follower_tags", "followers", "activity_hours", "log_cursors"] {
            with_pool!(&again, pool => sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}"))).execute(pool).await.map(|_| ()))
                .unwrap();
        }
        if backend == Backend::Postgres {
            // Rows younger than the settling time are left for the next read there.
            tokio::time::sleep(Duration::from_millis(2100)).await;
        }
        wxoa::followers::catch_up(&again, &mut Default::default()).await.unwrap();
        wxoa::followers::activity::catch_up(&again).await.unwrap();
        assert_eq!(snapshot(&again).await, kept);
        again.close().await;
        db.drop_db().await;
    }
}

/// The rows read for a reader that an erasure removed from the log meanwhile: the erased
/// follower does not come back into the directory (on SQLite they were in memory, already taken
/// from the writer, when the erasure committed).
#[tokio::test]
async fn an_erasure_between_the_writers_commit_and_the_readers_write_is_not_undone() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        // One read at start, the next only at shutdown.
        config.followers.catch_up_ms = 600_000;
        let _fake = start_fake(&mut config).await;
        let server = TestServer::start(config).await;
        let store = server.state.store.clone();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let metrics = server.state.metrics.clone();
        let counted = rows_read(&metrics, "activity", "memory");

        let (gone, stays) = ("oErasedFollower000000000001", "oStaysFollower0000000000001");
        let t = server.state.clock.now_ms() / 1000;
        for openid in [gone, stays] {
            assert_eq!(server.send(&event_message(openid, "subscribe", "", t)).await.0, 200);
        }
        assert_eq!(server.send(&text_message(gone, 4_400_001, "删除我的数据")).await.0, 200);
        let person = wxoa::privacy::find(&store, gone).await.unwrap();
        assert!(person.is_none(), "the directory has not read them yet");
        let person =
            wxoa::privacy::Person { member_id: None, card_no: None, openid: Some(gone.into()), follower_id: None };
        let removed = wxoa::privacy::erase(&store, &person, "test-admin", wxoa::crm::Events::new("")).await.unwrap();
        assert_eq!(removed.get("inbound_messages"), Some(&2));
        if backend == Backend::Postgres {
            tokio::time::sleep(Duration::from_millis(2100)).await;
        }
        // The shutdown's last read.
        server.stop().await;
        if backend == Backend::Sqlite {
            let counted = rows_read(&metrics, "activity", "memory") - counted;
            assert!(counted >= 3, "the rows were in memory when the erasure committed ({counted})");
        }
        let again = Store::connect(&db.url, 2).await.unwrap();
        wxoa::followers::catch_up(&again, &mut Default::default()).await.unwrap();
        let openids: Vec<String> =
            with_pool!(&again, pool => sqlx::query_scalar("SELECT openid FROM followers ORDER BY openid")
            .fetch_all(pool).await)
            .unwrap();
        assert_eq!(openids, vec![stays.to_owned()]);
        again.close().await;
        db.drop_db().await;
    }
}
