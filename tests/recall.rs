//! Taking a wrong push back (`POST /api/v1/pushes/{id}/recall`, `wxoa push recall`) against the
//! fake WeChat's `message/mass/delete`, on both databases: one article or all, each firing once
//! however many ask at once, and every wrong recall a clear refusal that calls WeChat for nothing.

mod common;

use common::api_call as api;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wxoa::wechat::envelope::Mode;

const BIN: &str = env!("CARGO_BIN_EXE_wxoa");

/// A push of campaign `campaign` (`msg_type`, to everyone) at `at`; its id.
async fn schedule(base: &str, campaign: i64, name: &str, msg_type: &str, at: String) -> i64 {
    let mut body = json!({ "name": name, "msg_type": msg_type, "audience": { "type": "all" }, "at": at });
    if msg_type == "text" {
        body["text"] = json!("Tonight at 00:13.");
    }
    let (status, push) =
        api(base, "POST", &format!("/api/v1/campaigns/{campaign}/pushes"), Some(MARKETING_TOKEN), Some(body)).await;
    assert_eq!(status, 201, "{push}");
    push["id"].as_i64().unwrap()
}

/// Push `id` once its firing has gone out to WeChat.
async fn sent(base: &str, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, push) = api(base, "GET", &format!("/api/v1/pushes/{id}"), Some(MARKETING_TOKEN), None).await;
        if push["runs"].as_array().is_some_and(|r| r.iter().any(|r| r["msg_id"].is_i64())) {
            return push;
        }
        assert!(Instant::now() < deadline, "push {id} never went out: {push}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A wrong recall: what, path, token, body, status, reason.
type Case = (&'static str, String, Option<&'static str>, Option<Value>, u16, &'static str);

#[tokio::test]
async fn a_sent_push_is_recalled_once_and_a_wrong_recall_changes_nothing() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        config.clock.set(china_ms("2026-06-01 09:00"));
        let clock = config.clock.clone();
        config.campaigns.poll_ms = 100;
        let fake = start_fake(&mut config).await;
        let dir = temp_dir("recall");
        let file = dir.join("wxoa.toml");
        std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
        let server = TestServer::start(config).await;
        fake.set_webhook(Some(server.url.clone()));
        let base = format!("http://{}", server.addr);
        fake.follow("oFan1");
        fake.follow("oFan2");

        let campaign = json!({
            "name": "Two articles",
            "articles": [{ "title": "Tonight", "cover_media_id": "THUMB_1" }, { "title": "How to buy", "cover_media_id": "THUMB_2" }]
        });
        let (status, c) = api(&base, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(campaign)).await;
        assert_eq!(status, 201, "{c}");
        let c = c["id"].as_i64().unwrap();
        let soon = || (clock.china_now() + chrono::Duration::milliseconds(800)).to_rfc3339();
        let launch = schedule(&base, c, "launch", "mpnews", soon()).await;
        let text = schedule(&base, c, "reminder", "text", soon()).await;
        let later =
            schedule(&base, c, "next week", "mpnews", (clock.china_now() + chrono::Duration::days(7)).to_rfc3339())
                .await;
        let pushed = sent(&base, launch).await;
        sent(&base, text).await;
        let msg_id = pushed["runs"][0]["msg_id"].as_i64().unwrap();
        let deletes = || fake.calls_to("/cgi-bin/message/mass/delete").len();

        // Wrong recalls: each its status and reason; WeChat is not called, nothing is recorded.
        let recall = |id: i64| format!("/api/v1/pushes/{id}/recall");
        let bad: Vec<Case> = vec![
            ("no token", recall(launch), None, None, 401, ""),
            ("no such push", recall(999), Some(MARKETING_TOKEN), None, 404, "no push 999"),
            (
                "never sent",
                recall(later),
                Some(MARKETING_TOKEN),
                None,
                409,
                "was never sent: there is nothing to recall",
            ),
            ("a text push", recall(text), Some(MARKETING_TOKEN), None, 409, "WeChat takes back only articles (mpnews)"),
            (
                "no third article",
                recall(launch),
                Some(MARKETING_TOKEN),
                Some(json!({ "article_idx": 3 })),
                400,
                "article_idx must be 1 to 2 (push",
            ),
            (
                "negative article",
                recall(launch),
                Some(MARKETING_TOKEN),
                Some(json!({ "article_idx": -1 })),
                400,
                "article_idx must be 1 to 2",
            ),
            (
                "unknown field",
                recall(launch),
                Some(MARKETING_TOKEN),
                Some(json!({ "article": 1 })),
                400,
                "unknown field",
            ),
        ];
        for (what, path, token, body, want, reason) in bad {
            let (status, answer) = api(&base, "POST", &path, token, body).await;
            assert_eq!(status, want, "{backend:?} {what}: {answer}");
            assert!(answer["error"].as_str().unwrap_or_default().contains(reason), "{backend:?} {what}: {answer}");
        }
        assert_eq!(deletes(), 0, "{backend:?}: WeChat was asked nothing");
        let (_, p) = api(&base, "GET", &format!("/api/v1/pushes/{launch}"), Some(MARKETING_TOKEN), None).await;
        assert_eq!(p["recalled"], json!([]), "{backend:?}");

        // WeChat refuses: 502 with its words, and the claim is undone.
        fake.tweak(|k| k.forced.push_back(40059));
        let (status, answer) = api(&base, "POST", &recall(launch), Some(MARKETING_TOKEN), None).await;
        assert_eq!(status, 502, "{backend:?}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("WeChat error 40059"), "{answer}");
        let (_, p) = api(&base, "GET", &format!("/api/v1/pushes/{launch}"), Some(MARKETING_TOKEN), None).await;
        assert_eq!(p["recalled"], json!([]), "{backend:?}: nothing recorded");

        // The second article, then all of it — twice at once: WeChat hears each once.
        let (status, p) =
            api(&base, "POST", &recall(launch), Some(MARKETING_TOKEN), Some(json!({ "article_idx": 2 }))).await;
        assert_eq!(status, 200, "{backend:?}: {p}");
        assert_eq!(
            (p["recalled"][0]["article_idx"].as_i64(), p["recalled"][0]["by"].as_str()),
            (Some(2), Some("test-marketing"))
        );
        assert_eq!(fake.mass_deleted(msg_id), [2]);
        let (status, answer) =
            api(&base, "POST", &recall(launch), Some(MARKETING_TOKEN), Some(json!({ "article_idx": 2 }))).await;
        assert_eq!(status, 409, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains(&format!("article 2 of push {launch} was already recalled by test-marketing")),
            "{answer}"
        );
        let all = recall(launch);
        let (a, b) = tokio::join!(
            api(&base, "POST", &all, Some(MARKETING_TOKEN), None),
            api(&base, "POST", &all, Some(ADMIN_TOKEN), None)
        );
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "{backend:?}: {} / {}", a.1, b.1);
        assert_eq!(deletes(), 3, "{backend:?}: the refused call, article 2, then all");
        assert_eq!(fake.mass_deleted(msg_id), [1, 2]);
        let (_, p) = api(&base, "GET", &format!("/api/v1/pushes/{launch}"), Some(MARKETING_TOKEN), None).await;
        let recalled: Vec<i64> =
            p["recalled"].as_array().unwrap().iter().map(|r| r["article_idx"].as_i64().unwrap()).collect();
        assert_eq!(recalled, [2, 0], "{backend:?}: {p}");

        // The command line says the same.
        let cfg = file.to_str().unwrap();
        let out = std::process::Command::new(BIN)
            .args(["push", "--config", cfg, "recall", &launch.to_string()])
            .current_dir(repo())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(&format!("push {launch} was already recalled by")), "{err}");
        let out = std::process::Command::new(BIN)
            .args(["push", "--config", cfg, "recall", &later.to_string()])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("was never sent"), "{out:?}");
        assert_eq!(deletes(), 3);

        server.stop().await;
        db.drop_db().await;
    }
}
