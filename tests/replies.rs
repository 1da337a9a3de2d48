//! Replies edited in the console, end to end on SQLite and PostgreSQL through HTTP and the
//! webhook: bad input refused with its reason and nothing stored; a keyword reply answering the
//! next message; its priority against `config/routes.toml`'s rules; an edit applied by a second
//! instance within two seconds without a restart; a broken edit refused and never half-applied;
//! a stale edit refused; disabling; the audit trail; the preview.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wxoa::store::{Pool, Store};
use wxoa::wechat::envelope::Mode;

async fn count(store: &Store, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    match &store.pool {
        Pool::Sqlite(pool, ..) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await.unwrap(),
        Pool::Postgres(pool) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await.unwrap(),
    }
}

/// The text a server answers `said` with (`None` for `success` or a non-text reply).
async fn answer(server: &TestServer, msg_id: u64, said: &str) -> Option<String> {
    let (status, reply) = server.send(&text_message("oREPLY0000000000000000000001", msg_id, said)).await;
    assert_eq!(status, 200, "{reply:?}");
    reply.and_then(|x| field(&x, "Content"))
}

fn hours(text: &str, priority: i64) -> Value {
    json!({ "name": "opening hours", "priority": priority, "match": {"keyword": ["hours", "营业时间"]},
            "reply": {"text": text} })
}

#[tokio::test]
async fn a_reply_edited_in_the_console_answers_on_every_instance_without_a_restart() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let config = test_config(&db, Mode::Safe);
        let a = TestServer::start(config.clone()).await;
        let b = TestServer::start(config).await;
        let (base_a, base_b) = (a.addr.to_string(), b.addr.to_string());
        let store = a.state.store.clone();

        // Bad input: status, reason, nothing stored, nothing applied.
        let long_key = "K".repeat(129);
        let nine: Vec<Value> =
            (0..9).map(|i| json!({"title": format!("t{i}"), "url": "https://example.com/"})).collect();
        let cases: Vec<(Value, u16, &str)> = vec![
            (
                json!({"name": "", "match": {"exact": "x"}, "reply": {"text": "x"}}),
                400,
                "name must be 1 to 64 characters",
            ),
            (json!({"name": " x", "match": {"exact": "x"}, "reply": {"text": "x"}}), 400, "without surrounding spaces"),
            (json!({"name": "x", "match": {"regex": "(unclosed"}, "reply": {"text": "x"}}), 400, "bad regex"),
            (
                json!({"name": "x", "match": {"keyword": ["hi"]}, "reply": {"text": "   "}}),
                400,
                "reply.text: must not be empty",
            ),
            (json!({"name": "x", "match": {"keyword": []}, "reply": {"text": "x"}}), 400, "1 to 50 keywords"),
            (
                json!({"name": "x", "match": {"keyword": ["hi"]}, "reply": {"text": "Hi {{ openid "}}),
                400,
                "content: syntax error",
            ),
            (
                json!({"name": "x", "match": {"contains": "hi"}, "reply": {"text": "x"}}),
                400,
                "unknown variant `contains`",
            ),
            (
                json!({"name": "x", "match": {"click": long_key}, "reply": {"text": "x"}}),
                400,
                "match.click: a menu key of 1 to 128 bytes",
            ),
            (
                json!({"name": "x", "match": {"click": "K"}, "reply": {"news": nine}}),
                400,
                "reply.news: 1 to 8 articles",
            ),
            (
                json!({"name": "x", "match": {"click": "K"}, "reply": {"news": [{"title": "t", "url": "ftp://x"}]}}),
                400,
                "reply.news[0].url",
            ),
            (
                json!({"name": "x", "priority": 5000, "match": {"exact": "x"}, "reply": {"text": "x"}}),
                400,
                "priority: -1000 to 1000",
            ),
            (
                json!({"name": "x", "match": {"exact": "x"}, "reply": {"text": "x"}, "version": 3}),
                400,
                "only an edit names the version",
            ),
            (json!({"name": "x", "match": {"exact": "x"}}), 400, "missing field `reply`"),
        ];
        for (body, status, reason) in &cases {
            let (got, answer) =
                api_call(&base_a, "POST", "/api/v1/replies", Some(MARKETING_TOKEN), Some(body.clone())).await;
            assert_eq!(got, *status, "{body}: {answer}");
            assert!(answer["error"].as_str().unwrap_or("").contains(reason), "{body}: {answer}");
        }
        let (got, _) = api_call(&base_a, "POST", "/api/v1/replies", None, Some(hours("x", 0))).await;
        assert_eq!(got, 401);
        assert_eq!(count(&store, "replies").await, 0, "nothing stored");
        assert_eq!(count(&store, "reply_versions").await, 0);
        assert_eq!(wxoa::replies::generation(&store).await.unwrap(), 0, "nothing to apply");

        // Before: the file's fallback answers. After creating the reply, the next message gets it
        // on this instance and, within two seconds, on the other.
        let fallback = answer(&a, 1, "what are your hours?").await.unwrap();
        let (status, created) = api_call(
            &base_a,
            "POST",
            "/api/v1/replies",
            Some(MARKETING_TOKEN),
            Some(hours("We open 10:00–22:00 · {{ Content }}", 0)),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        let id = created["reply"]["id"].as_i64().unwrap();
        assert_eq!(created["reply"]["version"], 1);
        assert_eq!(created["reply"]["rule"], "console:opening hours");
        let started = Instant::now();
        let want = "We open 10:00–22:00 · what are your hours?";
        let mut n = 10;
        loop {
            n += 1;
            let (x, y) =
                (answer(&a, n, "what are your hours?").await, answer(&b, n + 1000, "what are your hours?").await);
            if x.as_deref() == Some(want) && y.as_deref() == Some(want) {
                break;
            }
            assert_ne!(x.as_deref(), None);
            assert!(started.elapsed() < Duration::from_secs(2), "applied within 2 s: {x:?} {y:?} (before: {fallback})");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, again) =
            api_call(&base_a, "POST", "/api/v1/replies", Some(MARKETING_TOKEN), Some(hours("x", 0))).await;
        assert_eq!(status, 409, "{again}");
        assert!(again["error"].as_str().unwrap().contains("exists"));

        // An edit on the second instance reaches the first within two seconds.
        let edit = json!({ "name": "opening hours", "priority": 0, "match": {"keyword": ["hours", "营业时间"]},
                           "reply": {"text": "New hours from tonight: 10:00–24:00"}, "version": 1 });
        let (status, edited) =
            api_call(&base_b, "PUT", &format!("/api/v1/replies/{id}"), Some(MARKETING_TOKEN), Some(edit.clone())).await;
        assert_eq!(status, 200, "{edited}");
        assert_eq!(edited["reply"]["version"], 2);
        let started = Instant::now();
        loop {
            n += 1;
            if answer(&a, n, "营业时间?").await.as_deref() == Some("New hours from tonight: 10:00–24:00") {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(2), "the edit reached the other instance within 2 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // A stale edit (from version 1) and a broken one: refused, nothing changed or applied.
        let generation = wxoa::replies::generation(&store).await.unwrap();
        let (status, stale) =
            api_call(&base_a, "PUT", &format!("/api/v1/replies/{id}"), Some(MARKETING_TOKEN), Some(edit)).await;
        assert_eq!(status, 409, "{stale}");
        assert!(
            stale["error"].as_str().unwrap().contains("is at version 2 (changed by test-marketing), not 1"),
            "{stale}"
        );
        let broken =
            json!({ "name": "opening hours", "match": {"regex": "[a-"}, "reply": {"text": "x"}, "version": 2 });
        let (status, refused) =
            api_call(&base_a, "PUT", &format!("/api/v1/replies/{id}"), Some(MARKETING_TOKEN), Some(broken)).await;
        assert_eq!(status, 400, "{refused}");
        assert!(refused["error"].as_str().unwrap().contains("bad regex"), "{refused}");
        let (status, missing) =
            api_call(&base_a, "PUT", "/api/v1/replies/999", Some(MARKETING_TOKEN), Some(hours("x", 0))).await;
        assert_eq!(status, 404, "{missing}");
        assert_eq!(wxoa::replies::generation(&store).await.unwrap(), generation, "nothing to apply");
        let (_, shown) = api_call(&base_a, "GET", &format!("/api/v1/replies/{id}"), Some(MARKETING_TOKEN), None).await;
        assert_eq!(shown["reply"]["version"], 2);
        assert_eq!(shown["reply"]["reply"]["text"], "New hours from tonight: 10:00–24:00");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        n += 1;
        assert_eq!(answer(&b, n, "hours").await.as_deref(), Some("New hours from tonight: 10:00–24:00"));

        // Priority against routes.toml: "help" (priority 50) wins at equal priority; above it,
        // the console's reply does. The merged order says so.
        let help_file = answer(&a, 500, "help").await.unwrap();
        assert!(help_file.contains("I can help with"), "{help_file}");
        let help = |priority: i64, version: Option<i64>| {
            let mut v = json!({ "name": "help desk", "priority": priority, "match": {"keyword": ["help"]},
                                "reply": {"text": "Our help desk: 400-000-0000"} });
            if let Some(ver) = version {
                v["version"] = json!(ver);
            }
            v
        };
        let (status, h) =
            api_call(&base_a, "POST", "/api/v1/replies", Some(MARKETING_TOKEN), Some(help(50, None))).await;
        assert_eq!(status, 201, "{h}");
        let hid = h["reply"]["id"].as_i64().unwrap();
        let (_, listed) = api_call(&base_a, "GET", "/api/v1/replies", Some(MARKETING_TOKEN), None).await;
        let order: Vec<String> =
            listed["order"].as_array().unwrap().iter().map(|r| r["rule"].as_str().unwrap().to_owned()).collect();
        let at = |name: &str| order.iter().position(|r| r == name).unwrap();
        assert!(at("help") < at("console:help desk"), "the file's rule first at equal priority: {order:?}");
        assert!(at("console:opening hours") < at("fallback"), "{order:?}");
        assert_eq!(answer(&a, 501, "help").await.unwrap(), help_file);
        let (status, _) =
            api_call(&base_a, "PUT", &format!("/api/v1/replies/{hid}"), Some(MARKETING_TOKEN), Some(help(51, Some(1))))
                .await;
        assert_eq!(status, 200);
        assert_eq!(answer(&a, 502, "help").await.as_deref(), Some("Our help desk: 400-000-0000"));

        // Disabled: the file's rule answers again, on both instances.
        let mut off = help(51, Some(2));
        off["enabled"] = json!(false);
        let (status, disabled) =
            api_call(&base_a, "PUT", &format!("/api/v1/replies/{hid}"), Some(MARKETING_TOKEN), Some(off)).await;
        assert_eq!(status, 200, "{disabled}");
        assert_eq!(answer(&a, 503, "help").await.unwrap(), help_file);
        let started = Instant::now();
        while answer(&b, 600 + started.elapsed().as_millis() as u64, "help").await.unwrap() != help_file {
            assert!(started.elapsed() < Duration::from_secs(2));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // The audit trail: who, what, when, and so the previous version.
        let (_, shown) = api_call(&base_a, "GET", &format!("/api/v1/replies/{hid}"), Some(MARKETING_TOKEN), None).await;
        let history = shown["history"].as_array().unwrap();
        let actions: Vec<&str> = history.iter().map(|v| v["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["disabled", "updated", "created"]);
        assert_eq!(history[1]["priority"], 51);
        assert_eq!(history[2]["priority"], 50);
        assert!(history.iter().all(|v| v["changed_by"] == "test-marketing" && v["changed_at"].as_i64().unwrap() > 0));

        // The preview: the draft rendered for a message, and who would answer it.
        let (status, p) = api_call(
            &base_a,
            "POST",
            "/api/v1/replies/preview",
            Some(MARKETING_TOKEN),
            Some(json!({ "reply": {"name": "menu", "priority": 10, "match": {"click": "MENU_HOURS"},
                                   "reply": {"news": [{"title": "Hours for {{ openid }}", "url": "https://example.com/h"}]}} })),
        )
        .await;
        assert_eq!(status, 200, "{p}");
        assert_eq!(p["matches"], true);
        assert_eq!(p["answered_by"], "console:menu");
        assert_eq!(p["reply"]["msg_type"], "news");
        assert_eq!(p["reply"]["articles"][0]["title"], "Hours for oPREVIEW0000000000000000000");
        let (_, p) = api_call(
            &base_a,
            "POST",
            "/api/v1/replies/preview",
            Some(MARKETING_TOKEN),
            Some(json!({ "reply": help(10, None), "sample": "help me" })),
        )
        .await;
        assert_eq!(p["matches"], true);
        assert_eq!(p["answered_by"], "help", "the file's help rule outranks priority 10: {p}");
        assert_eq!(p["reply"]["content"], "Our help desk: 400-000-0000");
        assert_eq!(count(&store, "replies").await, 2, "a preview stores nothing");

        a.stop().await;
        b.stop().await;
        db.drop_db().await;
    }
}
