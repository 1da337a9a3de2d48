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

/// A server on the fake WeChat with two followers and a campaign of two articles.
struct Launch {
    server: TestServer,
    fake: wxoa::fake::FakeWeChat,
    db: Db,
    base: String,
    /// The campaign's id.
    campaign: i64,
    clock: wxoa::clock::Clock,
    /// The server's config as a file, for the command line.
    file: std::path::PathBuf,
}

async fn launch(backend: Backend) -> Launch {
    let db = Db::new(backend).await;
    let mut config = test_config(&db, Mode::Safe);
    config.clock.set(china_ms("2026-06-01 09:00"));
    let clock = config.clock.clone();
    config.campaigns.poll_ms = 100;
    let fake = start_fake(&mut config).await;
    let file = temp_dir("recall").join("wxoa.toml");
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
    Launch { server, fake, db, base, campaign: c["id"].as_i64().unwrap(), clock, file }
}

#[tokio::test]
async fn a_sent_push_is_recalled_once_and_a_wrong_recall_changes_nothing() {
    for backend in backends() {
        let Launch { server, fake, db, base, campaign: c, clock, file } = launch(backend).await;
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

/// The console asks first, naming the articles that will stop opening, and recalls only when
/// the question's own button is pressed.
#[tokio::test]
async fn the_console_asks_before_a_recall_and_names_what_goes() {
    for backend in backends() {
        let Launch { server, fake, db, base, campaign, clock, .. } = launch(backend).await;
        let soon = (clock.china_now() + chrono::Duration::milliseconds(500)).to_rfc3339();
        let id = schedule(&base, campaign, "launch", "mpnews", soon).await;
        let msg_id = sent(&base, id).await["runs"][0]["msg_id"].as_i64().unwrap();
        let cookie = console_sign_in(server.addr, MARKETING_TOKEN).await;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let page = |path: String| http.get(format!("{base}{path}")).header("cookie", &cookie).send();

        let campaign_page = page(format!("/admin/campaigns/{campaign}")).await.unwrap().text().await.unwrap();
        assert!(campaign_page.contains(&format!("href=\"/admin/pushes/{id}/recall\"")), "{backend:?}: a recall button");
        let question = page(format!("/admin/pushes/{id}/recall")).await.unwrap();
        assert_eq!(question.status(), 200);
        let question = question.text().await.unwrap();
        for named in ["「Tonight」", "「How to buy」", "keep its card", "value=\"2\""] {
            assert!(question.contains(named), "{backend:?}: the question names {named}");
        }
        let token =
            question.split("name=\"form_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        let post = |form: Vec<(&'static str, String)>| {
            http.post(format!("{base}/admin/pushes/{id}/recall")).header("cookie", &cookie).form(&form).send()
        };
        // Not through the question: asked again, nothing recalled.
        let r = post(vec![("form_token", token.clone()), ("article_idx", "0".into())]).await.unwrap();
        assert_eq!(
            (r.status().as_u16(), r.headers()["location"].to_str().unwrap()),
            (303, format!("/admin/pushes/{id}/recall").as_str())
        );
        // Another session's form: refused.
        let r = post(vec![("form_token", "forged".into()), ("confirm", "yes".into())]).await.unwrap();
        assert_eq!(r.status().as_u16(), 403, "{backend:?}");
        assert_eq!(fake.calls_to("/cgi-bin/message/mass/delete").len(), 0, "{backend:?}");
        // The question's button: the first article goes.
        let r = post(vec![("form_token", token.clone()), ("confirm", "yes".into()), ("article_idx", "1".into())])
            .await
            .unwrap();
        assert_eq!(r.headers()["location"].to_str().unwrap(), format!("/admin/campaigns/{campaign}?done=recalled"));
        assert_eq!(fake.mass_deleted(msg_id), [1]);
        let shown = page(format!("/admin/campaigns/{campaign}?done=recalled")).await.unwrap().text().await.unwrap();
        assert!(
            shown.contains("推送已撤回 Push recalled")
                && shown.contains("已撤回 Recalled 第 1 篇 article 1 · test-marketing"),
            "{backend:?}"
        );
        // The same again: said so, WeChat not asked.
        let r =
            post(vec![("form_token", token), ("confirm", "yes".into()), ("article_idx", "1".into())]).await.unwrap();
        assert_eq!(
            r.headers()["location"].to_str().unwrap(),
            format!("/admin/campaigns/{campaign}?done=not-recallable")
        );
        assert_eq!(fake.calls_to("/cgi-bin/message/mass/delete").len(), 1, "{backend:?}");
        server.stop().await;
        db.drop_db().await;
    }
}
