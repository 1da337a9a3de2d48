//! The follower directory end to end, on SQLite and PostgreSQL: follows, unfollows and messages
//! through the webhook keep it true (read from the log behind the webhook); the admin API lists
//! it with filters and keyset paging, openids masked for marketing; a sync pages through the
//! fake WeChat's list (`user/get`, `user/info/batchget`) as outbox jobs, and `wxoa followers
//! sync` killed with -9 mid-way resumes without fetching a finished page again.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;
use wxoa::wechat::envelope::Mode;

const BIN: &str = env!("CARGO_BIN_EXE_wxoa");

async fn api(server: &TestServer, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    api_call(&server.addr.to_string(), method, path, token, None).await
}

fn event(openid: &str, event: &str, key: &str, at: i64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>\
         <EventKey><![CDATA[{key}]]></EventKey></xml>"
    )
}

fn by_openid(list: &Value) -> HashMap<String, Value> {
    list["followers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["openid"].as_str().unwrap().to_owned(), f.clone()))
        .collect()
}

/// Every follower the directory holds, following the cursor page by page.
async fn all(server: &TestServer, query: &str, page: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/api/v1/followers?limit={page}&cursor={cursor}{query}");
        let (status, body) = api(server, "GET", &path, Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        out.extend(body["followers"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => return out,
        }
    }
}

#[tokio::test]
async fn follows_unfollows_and_messages_keep_the_directory_true() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        config.followers.catch_up_ms = 50;
        let _fake = start_fake(&mut config).await;
        let server = TestServer::start(config).await;
        let stores = std::fs::read_to_string(repo().join("tests/fixtures/stores.csv")).unwrap();
        wxoa::stores::import(&server.state.store, &stores).await.unwrap();
        let t = server.state.clock.now_ms() / 1000;

        // A store's QR follow, a plain follow then unfollow, a follower we only hear writing,
        // and a QR scene naming no store.
        let (qr, left, writer, nowhere) = (
            "oQRfollower0000000000000001",
            "oLeaver000000000000000000001",
            "oWriter00000000000000000001",
            "oNowhere0000000000000000001",
        );
        assert_eq!(server.send(&event(qr, "subscribe", "qrscene_store_21", t)).await.0, 200);
        assert_eq!(server.send(&event(left, "subscribe", "", t)).await.0, 200);
        assert_eq!(server.send(&event(left, "unsubscribe", "", t + 1)).await.0, 200);
        assert_eq!(server.send(&text_message(writer, 9_100_001, "你好")).await.0, 200);
        assert_eq!(server.send(&event(nowhere, "subscribe", "qrscene_store_999", t)).await.0, 200);

        wait_counts(&server.state.store, (3, 1)).await;
        let list = all(&server, "", 100).await;
        let got: HashMap<String, Value> =
            list.iter().map(|f| (f["openid"].as_str().unwrap().to_owned(), f.clone())).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[qr]["subscribed"], true);
        assert_eq!(got[qr]["store_id"], 21);
        assert_eq!(got[qr]["scene"], "store_21");
        assert!(got[qr]["first_subscribed_at"].as_i64().is_some());
        assert_eq!(got[left]["subscribed"], false);
        assert!(got[left]["unsubscribed_at"].as_i64().is_some());
        assert!(got[left]["last_subscribed_at"].as_i64().is_some());
        assert_eq!(got[writer]["subscribed"], true);
        assert!(got[writer]["last_interaction_at"].as_i64().is_some());
        assert_eq!(got[writer]["first_subscribed_at"], Value::Null);
        assert_eq!(got[nowhere]["store_id"], Value::Null, "no dangling store");
        assert_eq!(got[nowhere]["scene"], "store_999");

        // Filters, and the marketing role sees openids masked.
        let only = by_openid(&api(&server, "GET", "/api/v1/followers?subscribed=false", Some(ADMIN_TOKEN)).await.1);
        assert_eq!(only.keys().collect::<Vec<_>>(), vec![left]);
        let only = by_openid(&api(&server, "GET", "/api/v1/followers?store=21", Some(ADMIN_TOKEN)).await.1);
        assert_eq!(only.keys().collect::<Vec<_>>(), vec![qr]);
        let (status, body) = api(&server, "GET", "/api/v1/followers", Some(MARKETING_TOKEN)).await;
        assert_eq!(status, 200);
        let shown: Vec<&str> =
            body["followers"].as_array().unwrap().iter().map(|f| f["openid"].as_str().unwrap()).collect();
        assert!(shown.iter().all(|o| o.contains('…') && o.chars().count() == 7), "{shown:?}");
        assert!(!body.to_string().contains(qr), "no full openid for marketing");
        // Keyset paging gives each follower once.
        let paged = all(&server, "", 1).await;
        assert_eq!(
            paged.iter().map(|f| f["id"].as_i64().unwrap()).collect::<Vec<_>>(),
            list.iter().map(|f| f["id"].as_i64().unwrap()).collect::<Vec<_>>()
        );

        // A re-follow after the unfollow: following again, the unfollow's time kept.
        assert_eq!(server.send(&event(left, "subscribe", "", t + 5)).await.0, 200);
        wait_counts(&server.state.store, (4, 0)).await;

        // WeChat's own reports — a mass send's, from its system sender, and a template
        // message's, "from" its recipient — are no one's activity: no follower is made, and the
        // recipient's last interaction does not move. (A later follow shows the directory has
        // read past them.)
        let report = |from: &str, event: &str, extra: &str, at: i64| {
            format!(
                "<xml><ToUserName><![CDATA[gh_3f2a1b0c9d8e]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
                 <CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>\
                 <MsgID>{at}</MsgID>{extra}</xml>"
            )
        };
        let sender = "oFAKEMASSSENDER0000000000000";
        let mass = report(
            sender,
            "MASSSENDJOBFINISH",
            "<Status><![CDATA[send success]]></Status><TotalCount>4</TotalCount>\
            <FilterCount>4</FilterCount><SentCount>4</SentCount><ErrorCount>0</ErrorCount>",
            t + 20,
        );
        assert_eq!(server.send(&mass).await.0, 200);
        let notice = report(writer, "TEMPLATESENDJOBFINISH", "<Status><![CDATA[success]]></Status>", t + 21);
        assert_eq!(server.send(&notice).await.0, 200);
        let marker = "oMarker00000000000000000001";
        assert_eq!(server.send(&event(marker, "subscribe", "", t + 22)).await.0, 200);
        wait_counts(&server.state.store, (5, 0)).await;
        let now_seen: HashMap<String, Value> =
            all(&server, "", 100).await.into_iter().map(|f| (f["openid"].as_str().unwrap().to_owned(), f)).collect();
        assert!(!now_seen.contains_key(sender), "{backend:?}: no phantom follower for the mass-send report");
        assert_eq!(now_seen.len(), 5, "{backend:?}");
        assert_eq!(
            now_seen[writer]["last_interaction_at"], got[writer]["last_interaction_at"],
            "{backend:?}: receiving a notice is no interaction"
        );

        // Bad requests: the status and the reason.
        let cases: &[(&str, Option<&str>, u16, &str)] = &[
            ("/api/v1/followers", None, 401, "Bearer"),
            ("/api/v1/followers?cursor=abc", Some(ADMIN_TOKEN), 400, "cursor: pass the next_cursor"),
            ("/api/v1/followers?cursor=-1", Some(ADMIN_TOKEN), 400, "cursor: pass the next_cursor"),
            ("/api/v1/followers?limit=0", Some(ADMIN_TOKEN), 400, "limit: 1 to 500"),
            ("/api/v1/followers?limit=501", Some(ADMIN_TOKEN), 400, "limit: 1 to 500"),
            ("/api/v1/followers?tag=x", Some(ADMIN_TOKEN), 400, "tag"),
            ("/api/v1/followers?subscribed=maybe", Some(ADMIN_TOKEN), 400, "subscribed"),
            ("/api/v1/followers?stor=21", Some(ADMIN_TOKEN), 400, "unknown field `stor`"),
            ("/api/v1/followers/999999", Some(ADMIN_TOKEN), 404, "no follower 999999"),
            ("/api/v1/followers/sync/999999", Some(ADMIN_TOKEN), 404, "no follower sync 999999"),
        ];
        for (path, token, status, reason) in cases {
            let (got, body) = api(&server, "GET", path, *token).await;
            assert_eq!(got, *status, "{path}: {body}");
            assert!(body.to_string().contains(reason), "{path}: {body}");
        }
        let (status, body) = api(&server, "POST", "/api/v1/followers/sync", Some(MARKETING_TOKEN)).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.to_string().contains("needs admin"), "{body}");
        assert_eq!(wxoa::followers::sync::latest(&server.state.store).await.unwrap(), None, "nothing started");
        server.stop().await;
        db.drop_db().await;
    }
}

/// Waits (up to 10 s) until the directory counts (following, left).
async fn wait_counts(store: &wxoa::store::Store, want: (i64, i64)) {
    let mut got = (0, 0);
    for _ in 0..500 {
        got = wxoa::followers::counts(store).await.unwrap();
        if got == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the directory counts {got:?}, not {want:?}");
}

#[tokio::test]
async fn a_sync_pages_through_wechats_list_as_outbox_jobs() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        config.followers.catch_up_ms = 50;
        let fake = start_fake(&mut config).await;
        // 25,003 followers: three list pages and an empty one.
        fake.add_synthetic_followers(25_000);
        for o in ["oTagged000000000000000000001", "oTagged000000000000000000002", "oRemarked0000000000000000001"] {
            fake.follow(o);
        }
        let tag = fake.ensure_tag("VIP");
        fake.tag_follower("oTagged000000000000000000001", tag);
        fake.tag_follower("oTagged000000000000000000002", tag);
        fake.set_remark("oRemarked0000000000000000001", "front row");
        let server = TestServer::start(config).await;
        // Known to us as a follower, but WeChat no longer lists them.
        let gone = "oGone0000000000000000000001";
        assert_eq!(server.send(&text_message(gone, 9_200_001, "hi")).await.0, 200);
        wait_counts(&server.state.store, (1, 0)).await;

        let (status, body) = api(&server, "POST", "/api/v1/followers/sync", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["resumed"], false);
        let id = body["sync"]["id"].as_i64().unwrap();
        // A second request while it runs answers the same sync.
        let (status, again) = api(&server, "POST", "/api/v1/followers/sync", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 202);
        assert_eq!(again["sync"]["id"], id);
        assert_eq!(again["resumed"], true);

        let mut sync = Value::Null;
        for _ in 0..600 {
            sync = api(&server, "GET", &format!("/api/v1/followers/sync/{id}"), Some(MARKETING_TOKEN)).await.1["sync"]
                .clone();
            if sync["state"] == "done" || sync["state"] == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(sync["state"], "done", "{sync}");
        assert_eq!(sync["total"], 25_003);
        assert_eq!(sync["listed"], 25_003);
        assert_eq!(sync["detailed"], 25_003);
        assert_eq!(sync["unfollowed"], 1);
        // Each page once, each follower's details once.
        let pages: Vec<String> = fake
            .calls_to("/cgi-bin/user/get")
            .iter()
            .map(|c| c.query.get("next_openid").cloned().unwrap_or_default())
            .collect();
        assert_eq!(pages.len(), 4, "{pages:?}");
        let unique: std::collections::HashSet<&String> = pages.iter().collect();
        assert_eq!(unique.len(), 4, "no page fetched twice");
        assert_eq!(fake.calls_to("/cgi-bin/user/info/batchget").len(), 251);

        let (following, left) = wxoa::followers::counts(&server.state.store).await.unwrap();
        assert_eq!((following, left), (25_003, 1));
        let tagged = all(&server, &format!("&tag={tag}"), 500).await;
        let mut names: Vec<&str> = tagged.iter().map(|f| f["openid"].as_str().unwrap()).collect();
        names.sort();
        assert_eq!(names, vec!["oTagged000000000000000000001", "oTagged000000000000000000002"]);
        assert_eq!(tagged[0]["tag_ids"], serde_json::json!([tag]));
        let remarked = all(&server, "&subscribed=true", 500).await;
        let r = remarked.iter().find(|f| f["openid"] == "oRemarked0000000000000000001").unwrap();
        assert_eq!(r["remark"], "front row");
        assert!(r["last_subscribed_at"].as_i64().unwrap() > 0);
        let gone_row = all(&server, "&subscribed=false", 500).await;
        assert_eq!(gone_row.len(), 1);
        assert_eq!(gone_row[0]["openid"], gone);
        // Finished: a new request starts a new sync.
        let (status, next) = api(&server, "POST", "/api/v1/followers/sync", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 202);
        assert_eq!(next["resumed"], false);
        assert_ne!(next["sync"]["id"], id);
        server.stop().await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn the_cli_sync_killed_mid_way_resumes_without_refetching() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let dir = temp_dir("followers-cli");
        let mut config = test_config(&db, Mode::Safe);
        let fake = start_fake(&mut config).await;
        fake.add_synthetic_followers(60_000);
        // Slow enough to be killed mid-way.
        fake.tweak(|k| k.latency_ms = 30);
        // The database exists and is migrated before the CLI opens it.
        let store = wxoa::store::Store::open_migrated(&db.url, 2, wxoa::store::Create::Always).await.unwrap();
        let file = dir.join("wxoa.toml");
        std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
        let run = || {
            Command::new(BIN)
                .args(["followers", "sync", "--config", file.to_str().unwrap()])
                .current_dir(repo())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let mut child = KillOnDrop(run());
        // Killed once part of the details are in.
        let mut detailed_before = 0;
        for _ in 0..600 {
            if let Some(s) = wxoa::followers::sync::current(&store).await.unwrap()
                && s.detailed >= 5_000
            {
                detailed_before = s.detailed;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.0.kill().unwrap();
        if detailed_before < 5_000 {
            let mut err = String::new();
            std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut err).unwrap();
            let mut out = String::new();
            std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
            panic!("the sync did not get going: {out}\n{err}");
        }
        child.0.wait().unwrap();
        let calls_before = fake.calls_to("/cgi-bin/user/info/batchget").len();
        fake.tweak(|k| k.latency_ms = 0);

        // Waited for off the runtime: the fake answers on this test's runtime.
        let second = run();
        let out = tokio::task::spawn_blocking(move || second.wait_with_output()).await.unwrap().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("resuming follower sync 1"), "{stdout}");
        assert!(stdout.contains("sync 1: done — WeChat total 60000, listed 60000, detailed 60000"), "{stdout}");
        // Pages: seven list calls (six pages and the empty one), none repeated; details: at most
        // the one step in flight at the kill (ten calls) repeated.
        let pages: Vec<String> = fake
            .calls_to("/cgi-bin/user/get")
            .iter()
            .map(|c| c.query.get("next_openid").cloned().unwrap_or_default())
            .collect();
        assert_eq!(pages.len(), 7, "{pages:?}");
        let total_batchget = fake.calls_to("/cgi-bin/user/info/batchget").len();
        assert!(
            (600..=610).contains(&total_batchget),
            "{total_batchget} batchget calls ({calls_before} before the kill)"
        );
        assert_eq!(wxoa::followers::counts(&store).await.unwrap(), (60_000, 0));
        store.close().await;
        db.drop_db().await;
    }
}
