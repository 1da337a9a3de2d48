//! Segments end to end, on SQLite and PostgreSQL, with the fake WeChat over a socket: rules
//! validated (status, reason, nothing stored), counted live, synced to a WeChat tag that gains
//! and loses exactly the difference, WeChat's tag limits checked before calling (20 tags a
//! follower, 100 an account), and a sync in `wxoa serve` killed with -9 resuming without
//! tagging a finished batch again.

mod common;

use common::api_call as api;
use common::serve::{Serve, wait_answering};
use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use wxoa::store::{Pool, Store};
use wxoa::wechat::envelope::Mode;

fn openid(i: usize) -> String {
    format!("oSEG{i:024}")
}

/// `n` followers in WeChat (the fake) and in the directory, ids in order; members bound to the
/// first `members` of them, each with `tier(i)` and `points(i)`.
async fn followers(
    store: &Store,
    fake: &wxoa::fake::FakeWeChat,
    n: usize,
    members: usize,
    tier: impl Fn(usize) -> &'static str,
    points: impl Fn(usize) -> i64,
) {
    let now = store.now_ms();
    for i in 0..n {
        fake.follow(&openid(i));
    }
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk.iter().map(|i| format!("('{}', TRUE, {now}, {now})", openid(*i))).collect();
        exec(
            store,
            &format!(
                "INSERT INTO followers (openid, subscribed, updated_at, first_subscribed_at) VALUES {}",
                values.join(", ")
            ),
        )
        .await;
    }
    let mut csv = String::from("card_no,name,phone,tier,points\n");
    for i in 0..members {
        csv.push_str(&format!("SEG{i:06},Member {i},139{i:08},{},{}\n", tier(i), points(i)));
    }
    if members > 0 {
        let reports = wxoa::members::import::import(store, &csv).await.unwrap();
        assert!(
            reports.iter().all(|r| !matches!(r.outcome, wxoa::members::import::Outcome::Rejected(_))),
            "{reports:?}"
        );
    }
    for i in 0..members {
        exec(store, &format!("UPDATE members SET openid = '{}' WHERE card_no = 'SEG{i:06}'", openid(i))).await;
    }
}

async fn exec(store: &Store, sql: &str) {
    match &store.pool {
        Pool::Sqlite(pool, ..) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(pool).await.map(|_| ()),
        Pool::Postgres(pool) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(pool).await.map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn segments_stored(store: &Store) -> i64 {
    wxoa::audiences::list(store).await.unwrap().len() as i64
}

/// Waits for the segment's latest sync to finish; returns it.
async fn synced(addr: &str, id: i64) -> Value {
    for _ in 0..3000 {
        let (_, body) = api(addr, "GET", &format!("/api/v1/segments/{id}"), Some(MARKETING_TOKEN), None).await;
        let state = body["sync"]["state"].as_str().unwrap_or("").to_owned();
        if state == "done" || state == "failed" {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("segment {id} did not finish syncing");
}

/// Who the fake says holds `tag`.
fn holders(fake: &wxoa::fake::FakeWeChat, tag: i64, n: usize) -> BTreeSet<String> {
    (0..n).map(openid).filter(|o| fake.tags_of(o).contains(&tag)).collect()
}

/// The openids each tagging (or untagging) call sent, in order.
fn batches(fake: &wxoa::fake::FakeWeChat, path: &str) -> Vec<Vec<String>> {
    fake.calls_to(path)
        .iter()
        .filter(|c| c.errcode == 0)
        .map(|c| c.body["openid_list"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_owned()).collect())
        .collect()
}

#[tokio::test]
async fn a_segment_becomes_a_tag_that_gains_and_loses_exactly_the_difference() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        let fake = start_fake(&mut config).await;
        let server = TestServer::start(config).await;
        let addr = server.addr.to_string();
        let store = server.state.store.clone();
        // 300 followers, 120 of them members: every third gold, points 0, 500, 1000, 1500… by i.
        followers(
            &store,
            &fake,
            300,
            120,
            |i| if i.is_multiple_of(3) { "Gold" } else { "Silver" },
            |i| (i as i64 % 4) * 500,
        )
        .await;
        let gold_rich: BTreeSet<String> =
            (0..120).filter(|i: &usize| i.is_multiple_of(3) && (*i as i64 % 4) * 500 >= 1000).map(openid).collect();

        // Bad input: status, reason, nothing stored.
        let long = "会员".repeat(6); // 36 bytes
        let cases: Vec<(Value, u16, &str)> = vec![
            (json!({"name": "", "rules": {}}), 400, "name: 1 to 30 bytes"),
            (json!({"name": long, "rules": {}}), 400, "name: 1 to 30 bytes"),
            (json!({"name": " padded", "rules": {}}), 400, "without surrounding spaces"),
            (json!({"name": "星标组", "rules": {}}), 400, "one of WeChat's own tags"),
            (json!({"name": "x", "rules": {"tiers": ["Gold"]}}), 400, "unknown field `tiers`"),
            (json!({"name": "x", "rules": {"tier": []}}), 400, "tier: 1 to 500 values"),
            (json!({"name": "x", "rules": {"tier": [""]}}), 400, "tier: a tier name is 1 to 64 bytes"),
            (json!({"name": "x", "rules": {"min_points": -1}}), 400, "min_points: 0 to 100,000,000"),
            (json!({"name": "x", "rules": {"active_within_days": 0}}), 400, "active_within_days: 1 to 3650"),
            (
                json!({"name": "x", "rules": {"followed_after": "2026-13-01"}}),
                400,
                "followed_after: a day as YYYY-MM-DD",
            ),
            (json!({"name": "x", "rules": {"store_ids": [-3]}}), 400, "never negative"),
            (json!({"rules": {}}), 400, "missing field `name`"),
        ];
        for (body, status, reason) in &cases {
            let (got, answer) = api(&addr, "POST", "/api/v1/segments", Some(MARKETING_TOKEN), Some(body.clone())).await;
            assert_eq!(got, *status, "{body}: {answer}");
            assert!(answer["error"].as_str().unwrap_or("").contains(reason), "{body}: {answer}");
        }
        let (got, _) = api(&addr, "POST", "/api/v1/segments", None, Some(json!({"name": "x"}))).await;
        assert_eq!(got, 401);
        assert_eq!(segments_stored(&store).await, 0, "nothing stored");

        let (status, created) = api(
            &addr,
            "POST",
            "/api/v1/segments",
            Some(MARKETING_TOKEN),
            Some(json!({"name": "金卡 1000+", "rules": {"tier": ["Gold"], "min_points": 1000, "bound": true}})),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["count"], gold_rich.len() as i64);
        let id = created["segment"]["id"].as_i64().unwrap();
        let (status, again) =
            api(&addr, "POST", "/api/v1/segments", Some(MARKETING_TOKEN), Some(json!({"name": "金卡 1000+"}))).await;
        assert_eq!(status, 409, "{again}");
        assert!(again["error"].as_str().unwrap().contains("exists"));

        let (status, started) =
            api(&addr, "POST", &format!("/api/v1/segments/{id}/sync"), Some(MARKETING_TOKEN), None).await;
        assert_eq!(status, 202, "{started}");
        let done = synced(&addr, id).await;
        assert_eq!(done["sync"]["state"], "done", "{done}");
        let tag = done["segment"]["tag_id"].as_i64().unwrap();
        assert_eq!(fake.tags().iter().find(|t| t.0 == tag).unwrap().1, "金卡 1000+");
        assert_eq!(holders(&fake, tag, 300), gold_rich);
        assert_eq!(done["sync"]["added"], gold_rich.len() as i64);
        let tagged = batches(&fake, "/cgi-bin/tags/members/batchtagging");
        assert!(tagged.iter().all(|b| b.len() <= 50));
        assert_eq!(tagged.len(), gold_rich.len().div_ceil(50));

        // Tiers move: some leave the segment, others join. The next sync sends exactly that.
        exec(&store, "UPDATE members SET tier = 'Silver' WHERE card_no IN ('SEG000003', 'SEG000006', 'SEG000015')")
            .await;
        exec(&store, "UPDATE members SET tier = 'Gold' WHERE card_no IN ('SEG000002', 'SEG000007')").await;
        fake.clear_calls();
        api(&addr, "POST", &format!("/api/v1/segments/{id}/sync"), Some(MARKETING_TOKEN), None).await;
        let done = synced(&addr, id).await;
        assert_eq!(done["sync"]["state"], "done", "{done}");
        let added: BTreeSet<String> =
            batches(&fake, "/cgi-bin/tags/members/batchtagging").concat().into_iter().collect();
        let removed: BTreeSet<String> =
            batches(&fake, "/cgi-bin/tags/members/batchuntagging").concat().into_iter().collect();
        let gold = |i: usize| (i.is_multiple_of(3) && ![3, 6, 15].contains(&i)) || [2, 7].contains(&i);
        let now: BTreeSet<String> =
            (0..120).filter(|i| gold(*i) && (*i as i64 % 4) * 500 >= 1000).map(openid).collect();
        let want_removed: BTreeSet<String> = gold_rich.difference(&now).cloned().collect();
        let want_added: BTreeSet<String> = now.difference(&gold_rich).cloned().collect();
        assert!(!want_removed.is_empty() && !want_added.is_empty(), "the change moves someone each way");
        assert_eq!(removed, want_removed);
        assert_eq!(added, want_added);
        assert!(fake.calls_to("/cgi-bin/tags/create").is_empty(), "the tag is reused");
        assert_eq!(holders(&fake, tag, 300), now);
        assert_eq!(done["count"], now.len() as i64);

        // A follower holding WeChat's 20 tags is left out, named in `skipped`; the rest go on.
        let full = openid(299);
        for k in 0..20 {
            let t = fake.ensure_tag(&format!("full {k}"));
            fake.tag_follower(&full, t);
        }
        let full_id: i64 = match &store.pool {
            Pool::Sqlite(pool, ..) => sqlx::query_scalar("SELECT id FROM followers WHERE openid = $1")
                .bind(&full)
                .fetch_one(pool)
                .await
                .unwrap(),
            Pool::Postgres(pool) => sqlx::query_scalar("SELECT id FROM followers WHERE openid = $1")
                .bind(&full)
                .fetch_one(pool)
                .await
                .unwrap(),
        };
        let tags: Vec<String> = fake.tags_of(&full).iter().map(|t| format!("({full_id}, {t})")).collect();
        exec(&store, &format!("INSERT INTO follower_tags (follower_id, tag_id) VALUES {}", tags.join(", "))).await;
        let (_, everyone) =
            api(&addr, "POST", "/api/v1/segments", Some(MARKETING_TOKEN), Some(json!({"name": "everyone"}))).await;
        let all_id = everyone["segment"]["id"].as_i64().unwrap();
        assert_eq!(everyone["count"], 300);
        fake.clear_calls();
        api(&addr, "POST", &format!("/api/v1/segments/{all_id}/sync"), Some(MARKETING_TOKEN), None).await;
        let done = synced(&addr, all_id).await;
        assert_eq!(done["sync"]["state"], "done", "{done}");
        assert_eq!(done["sync"]["added"], 299);
        assert_eq!(done["sync"]["skipped"], 1);
        assert!(
            batches(&fake, "/cgi-bin/tags/members/batchtagging").concat().iter().all(|o| *o != full),
            "not sent to WeChat"
        );

        // An account with WeChat's 100 tags: refused before calling tags/create, with the reason.
        let have = fake.tags().len();
        for k in have..100 {
            fake.ensure_tag(&format!("filler {k}"));
        }
        let (_, more) =
            api(&addr, "POST", "/api/v1/segments", Some(MARKETING_TOKEN), Some(json!({"name": "one too many"}))).await;
        let more_id = more["segment"]["id"].as_i64().unwrap();
        fake.clear_calls();
        api(&addr, "POST", &format!("/api/v1/segments/{more_id}/sync"), Some(MARKETING_TOKEN), None).await;
        let done = synced(&addr, more_id).await;
        assert_eq!(done["sync"]["state"], "failed");
        assert!(done["sync"]["error"].as_str().unwrap().contains("100 tags already (45056)"), "{done}");
        assert!(fake.calls_to("/cgi-bin/tags/create").is_empty());
        assert_eq!(done["segment"]["tag_id"], Value::Null);
        server.stop().await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_segment_sync_killed_mid_way_resumes_without_retagging() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let dir = temp_dir("segment-kill");
        let mut config = test_config(&db, Mode::Safe);
        let fake = start_fake(&mut config).await;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        config.server.listen = format!("127.0.0.1:{port}");
        config.campaigns.enabled = false;
        // The killed instance's job is taken over when its lease runs out.
        config.outbox.lease_secs = 15;
        let store = Store::open_migrated(&db.url, 2, wxoa::store::Create::Always).await.unwrap();
        let n = 2_000;
        followers(&store, &fake, n, 0, |_| "Gold", |_| 0).await;
        let segment = wxoa::audiences::create(&store, "launch", &Default::default(), "test").await.unwrap();
        // Slow tagging calls, so the kill lands mid-way.
        fake.tweak(|k| k.latency_ms = 40);
        let mut serve = Serve::with_config(&dir, &config);
        wait_answering(&config.server.listen, &serve).await;
        let (status, body) = api(
            &config.server.listen,
            "POST",
            &format!("/api/v1/segments/{}/sync", segment.id),
            Some(MARKETING_TOKEN),
            None,
        )
        .await;
        assert_eq!(status, 202, "{body}");
        let mut before = 0;
        for _ in 0..1500 {
            before = batches(&fake, "/cgi-bin/tags/members/batchtagging").len();
            if before >= 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(before >= 10, "tagging got going: {}", serve.log());
        let mut child = serve.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        fake.tweak(|k| k.latency_ms = 0);

        let serve = Serve::with_config(&dir, &config);
        wait_answering(&config.server.listen, &serve).await;
        let done = synced(&config.server.listen, segment.id).await;
        assert_eq!(done["sync"]["state"], "done", "{done}");
        let tag = done["segment"]["tag_id"].as_i64().unwrap();
        assert_eq!(holders(&fake, tag, n).len(), n);
        // Every follower tagged; a batch sent twice only if it was the one in flight at the kill.
        let sent = batches(&fake, "/cgi-bin/tags/members/batchtagging");
        let mut times: HashMap<String, usize> = HashMap::new();
        for o in sent.concat() {
            *times.entry(o).or_default() += 1;
        }
        assert_eq!(times.len(), n);
        let twice = times.values().filter(|t| **t > 1).count();
        assert!(twice <= 50, "{twice} followers tagged twice");
        assert!(sent.len() <= n / 50 + 1, "{} tagging calls", sent.len());
        assert_eq!(fake.calls_to("/cgi-bin/tags/create").len(), 1);
        drop(serve);
        store.close().await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn a_push_to_a_segment_syncs_it_first_and_reaches_its_followers_and_no_one_else() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        let fake = start_fake(&mut config).await;
        let server = TestServer::start(config).await;
        let addr = server.addr.to_string();
        let store = server.state.store.clone();
        // 60 followers, 30 members; Gold are every third member.
        followers(&store, &fake, 60, 30, |i| if i.is_multiple_of(3) { "Gold" } else { "Silver" }, |_| 0).await;
        let gold: BTreeSet<String> = (0..30).filter(|i: &usize| i.is_multiple_of(3)).map(openid).collect();
        let (status, created) = api(
            &addr,
            "POST",
            "/api/v1/segments",
            Some(MARKETING_TOKEN),
            Some(json!({"name": "gold", "rules": {"tier": ["gold"]}})),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        let segment = created["segment"]["id"].as_i64().unwrap();
        assert_eq!(created["segment"]["tag_id"], Value::Null, "never synced yet");
        let campaign = json!({
            "name": "Gold preview",
            "articles": [{"title": "For Gold members", "content": "<p>Tonight.</p>", "cover_media_id": "THUMB_1"}]
        });
        let (status, c) = api(&addr, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(campaign)).await;
        assert_eq!(status, 201, "{c}");
        let cid = c["id"].as_i64().unwrap();

        // Bad audiences: status and reason, nothing scheduled.
        let at = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
        let bad: Vec<(Value, &str)> = vec![
            (json!({"segment": 0}), "a segment id is 1 or more"),
            (json!({"segment": 999}), "there is no segment 999"),
            (json!({"segment": segment, "tag_id": 1}), "unknown field `tag_id`"),
        ];
        for (audience, reason) in &bad {
            let body = json!({"name": "x", "audience": audience, "at": at});
            let (status, answer) =
                api(&addr, "POST", &format!("/api/v1/campaigns/{cid}/pushes"), Some(MARKETING_TOKEN), Some(body)).await;
            assert_eq!(status, 400, "{audience}: {answer}");
            assert!(answer["error"].as_str().unwrap_or("").contains(reason), "{audience}: {answer}");
        }
        let (_, listed) = api(&addr, "GET", &format!("/api/v1/campaigns/{cid}"), Some(MARKETING_TOKEN), None).await;
        assert_eq!(listed["pushes"].as_array().map(Vec::len).unwrap_or(0), 0, "{listed}");

        // Members change tier after the segment was made: the push sends to who is Gold when it fires.
        exec(&store, "UPDATE members SET tier = 'Gold' WHERE card_no = 'SEG000001'").await;
        let gold: BTreeSet<String> = gold.into_iter().chain([openid(1)]).collect();
        let body = json!({"name": "to gold", "audience": {"segment": segment}, "at": at});
        let (status, p) =
            api(&addr, "POST", &format!("/api/v1/campaigns/{cid}/pushes"), Some(MARKETING_TOKEN), Some(body)).await;
        assert_eq!(status, 201, "{p}");
        assert_eq!(p["audience"], json!({"type": "segment", "segment": segment}));
        let pid = p["id"].as_i64().unwrap();
        let mut run = Value::Null;
        for _ in 0..750 {
            let (_, got) = api(&addr, "GET", &format!("/api/v1/pushes/{pid}"), Some(MARKETING_TOKEN), None).await;
            run = got["runs"][0].clone();
            if ["submitted", "finished", "failed"].contains(&run["status"].as_str().unwrap_or("")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(["submitted", "finished"].contains(&run["status"].as_str().unwrap_or("")), "{run}");

        // The segment was synced to a tag first, and the mass send went to that tag alone.
        let (_, seg) = api(&addr, "GET", &format!("/api/v1/segments/{segment}"), Some(MARKETING_TOKEN), None).await;
        let tag = seg["segment"]["tag_id"].as_i64().expect("synced to a tag");
        assert_eq!(seg["sync"]["state"], "done", "{seg}");
        assert_eq!(seg["sync"]["requested_by"], format!("push {pid}"));
        assert_eq!(holders(&fake, tag, 60), gold);
        let sends = fake.calls_to("/cgi-bin/message/mass/sendall");
        assert_eq!(sends.len(), 1, "{sends:?}");
        assert_eq!(sends[0].body["filter"], json!({"is_to_all": false, "tag_id": tag}));
        let reached: BTreeSet<String> = sends[0].reached.clone().unwrap().into_iter().collect();
        assert_eq!(reached, gold, "the segment's followers and no one else");
        let first_tagging = fake.calls_to("/cgi-bin/tags/members/batchtagging");
        let send_at = fake.calls().iter().position(|c| c.path == "/cgi-bin/message/mass/sendall").unwrap();
        let last_tag_at = fake.calls().iter().rposition(|c| c.path == "/cgi-bin/tags/members/batchtagging").unwrap();
        assert!(!first_tagging.is_empty() && last_tag_at < send_at, "tagged before the send");
        server.stop().await;
        db.drop_db().await;
    }
}
