//! Time comes from the app's clock: a push scheduled for 00:13 on the first of a month fires
//! when the clock crosses the day and the month's end (and not a second before), and points
//! lapse when the clock passes their last day — the clock is moved, nobody sleeps until then.

mod common;

use common::*;
use serde_json::{Value, json};
use wxoa::wechat::envelope::Mode;

const SENDALL: &str = "/cgi-bin/message/mass/sendall";

#[tokio::test]
async fn the_scheduler_and_the_housekeeping_follow_the_clock_across_a_day_a_month_and_an_expiry() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        config.campaigns.poll_ms = 100;
        config.loyalty.points_valid_days = 1;
        // The evening of the last day of January.
        config.clock.set(china_ms("2026-01-31 23:50"));
        let clock = config.clock.clone();
        let fake = start_fake(&mut config).await;
        fake.follow("oClockFan1");
        let server = TestServer::start(config).await;
        let base = server.addr.to_string();

        // A campaign, and its launch tomorrow — next month — at 00:13.
        let campaign = json!({
            "name": "February launch",
            "articles": [{ "title": "Tonight", "content": "<p>At 00:13.</p>", "cover_media_id": "THUMB_1" }]
        });
        let (status, c) = api_call(&base, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(campaign)).await;
        assert_eq!(status, 201, "{backend:?}: {c}");
        let push =
            json!({ "name": "launch", "msg_type": "mpnews", "audience": { "type": "all" }, "at": "2026-02-01 00:13" });
        let path = format!("/api/v1/campaigns/{}/pushes", c["id"]);
        let (status, p) = api_call(&base, "POST", &path, Some(MARKETING_TOKEN), Some(push)).await;
        assert_eq!(status, 201, "{backend:?}: {p}");
        assert_eq!(p["at"].as_i64(), Some(china_ms("2026-02-01 00:13")), "{p}");

        // Points earned tonight, valid one day: until the end of 1 February.
        let store = &server.state.store;
        wxoa::members::import::import_with(
            store,
            "card,phone,points\nC7001,13800000071,100\n",
            &server.state.config.loyalty,
        )
        .await
        .unwrap();
        let member = async || api_call(&base, "GET", "/api/v1/members/C7001", Some(ADMIN_TOKEN), None).await.1;
        let m = member().await;
        assert_eq!(m["points"], 100, "{m}");
        assert_eq!(m["expiring"], json!([{ "points": 100, "expires_at": china_ms("2026-02-02 00:00") }]), "{m}");

        // Past midnight, a minute before the push: nothing sent.
        clock.set(china_ms("2026-02-01 00:12"));
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert!(fake.calls_to(SENDALL).is_empty(), "{backend:?}: sent before its time");
        let p: Value = api_call(&base, "GET", &format!("/api/v1/pushes/{}", p["id"]), Some(ADMIN_TOKEN), None).await.1;
        assert_eq!(p["status"], "scheduled", "{p}");

        // The clock reaches 00:13: the scheduler, woken by the move, sends it once.
        clock.set(china_ms("2026-02-01 00:13"));
        assert!(eventually(10, || fake.calls_to(SENDALL).len() == 1).await, "{backend:?}: sent at 00:13");
        assert_eq!(fake.calls_to(SENDALL)[0].body["filter"]["is_to_all"], true);

        // Still 1 February: the points are alive; the housekeeping lapses nothing.
        clock.set(china_ms("2026-02-01 23:59"));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(member().await["points"], 100);
        let lapsed = || async {
            wxoa::with_pool!(store, pool => sqlx::query_scalar::<_, i64>(
                "SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT) FROM points_ledger WHERE kind = 'expire'").fetch_one(pool).await)
            .unwrap()
        };
        assert_eq!(lapsed().await, 0);

        // 2 February, past the next hourly run (due an hour after the one at 23:59): the
        // balance is 0, and the housekeeping — run by the clock's move, nobody waiting an hour —
        // records the lapse in the ledger, once.
        clock.set(china_ms("2026-02-02 01:00"));
        assert_eq!(member().await["points"], 0, "{backend:?}: lapsed at the end of 1 February");
        let mut recorded = false;
        for _ in 0..100 {
            if lapsed().await == -100 {
                recorded = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(recorded, "{backend:?}: the lapse is recorded");
        clock.advance(3 * 3_600_000);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(lapsed().await, -100, "{backend:?}: recorded once");
        assert_eq!(fake.calls_to(SENDALL).len(), 1, "{backend:?}: the push was sent once");

        server.stop().await;
        db.drop_db().await;
    }
}
