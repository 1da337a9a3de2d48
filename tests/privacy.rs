//! Personal-data rights (PIPL) on both databases, through the real stack: a member imported,
//! bound in the H5 page, messaging the account and buying in the shop; then
//! `GET /api/v1/members/{key}/export` holds all of it (by card number and by openid), and
//! `DELETE /api/v1/members/{key}` erases it in one transaction — the ledger kept as anonymous
//! sums (programme totals unchanged), `member.erased` queued for the CRM, the erasure recorded
//! without the erased data — after which every text column of every table is searched for the
//! person's openid, phone and name. `wxoa members export|erase` do the same from the shell.

mod common;

use common::h5_browser::H5Browser as Browser;
use common::*;
use serde_json::{Value, json};
use wxoa::store::{Pool, Store};
use wxoa::wechat::envelope::Mode;

const OPENID: &str = "oEraseMe00000000000000000001";
const PHONE: &str = "13811112222";
const NAME: &str = "Zhao Erasable";

async fn scalar(store: &Store, sql: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    wxoa::with_pool!(store, pool => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await).unwrap()
}

/// Every (table, column) holding text, from the database's own catalogue.
async fn text_columns(store: &Store) -> Vec<(String, String)> {
    match &store.pool {
        Pool::Sqlite(pool, ..) => {
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                    .fetch_all(pool)
                    .await
                    .unwrap();
            let mut out = Vec::new();
            for t in tables {
                let sql = sqlx::AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{t}')"));
                let cols: Vec<String> = sqlx::query_scalar(sql).fetch_all(pool).await.unwrap();
                out.extend(cols.into_iter().map(|c| (t.clone(), c)));
            }
            out
        }
        Pool::Postgres(pool) => sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND data_type IN ('text', 'character varying', 'json', 'jsonb')",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
    }
}

/// Where `needle` still is: `table.column (rows)` for each column that holds it.
async fn find_everywhere(store: &Store, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (table, column) in text_columns(store).await {
        let n = scalar(store, &format!("SELECT COUNT(*) FROM {table} WHERE CAST({column} AS TEXT) LIKE '%{needle}%'"))
            .await;
        if n > 0 {
            found.push(format!("{table}.{column} ({n})"));
        }
    }
    found
}

#[tokio::test]
async fn a_member_gets_a_copy_of_everything_and_erasure_leaves_nothing_but_sums() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        let _fake = start_fake(&mut config).await;
        config.h5.oauth_base = config.wechat.api_base.clone();
        // Events and notices stay queued where the test can see them.
        config.crm.webhook_url = "http://127.0.0.1:9/events".into();
        config.crm.secret = "test-crm-secret-0123456789abcdef0123".into();
        config.outbox.enabled = false;
        let server = TestServer::start(config.clone()).await;
        let store = server.state.store.clone();
        let base = server.addr.to_string();
        let crm = format!("card,name,phone,points\nC7001,{NAME},{PHONE},800\nC7002,Qian Stays,13833334444,100\n");
        wxoa::members::import::import(&store, &crm).await.unwrap();

        // Bound in the H5 page (a session with the openid), messages, a shop order.
        let mut b = Browser::new(&server);
        b.sign_in("bind", OPENID).await;
        let form = b.get("/h5/bind").await.body;
        let bound = b.submit(&form, "/h5/bind", &[("card_no", "C7001"), ("phone", PHONE)]).await;
        assert_eq!(bound.status, 303, "{}", bound.body);
        let now = server.state.clock.now_ms() / 1000;
        assert_eq!(server.send(&event_message(OPENID, "subscribe", "", now)).await.0, 200);
        assert_eq!(server.send(&text_message(OPENID, 880_001, "hello")).await.0, 200);
        assert_eq!(server.send(&text_message(OPENID, 880_002, "积分")).await.0, 200);
        let order = json!({"order_id": "SO-ERASE-1", "status": "created", "openid": OPENID, "sku": "LE-2026",
            "product_name": "No. 5 Limited", "amount_fen": 129900});
        assert_eq!(shop(&server, "/api/v1/orders", order).await.0, 202);
        let follower = "SELECT COUNT(*) FROM followers WHERE openid = 'oEraseMe00000000000000000001'";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while scalar(&store, follower).await == 0 {
            assert!(std::time::Instant::now() < deadline, "the follower directory never caught up");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }

        // The copy: by card number and by openid, admin only.
        let path = "/api/v1/members/C7001/export";
        assert_eq!(api_call(&base, "GET", path, Some(MARKETING_TOKEN), None).await.0, 403);
        let (status, doc) = api_call(&base, "GET", path, Some(ADMIN_TOKEN), None).await;
        assert_eq!(status, 200, "{doc}");
        assert_eq!((doc["member"]["phone"].as_str(), doc["member"]["name"].as_str()), (Some(PHONE), Some(NAME)));
        assert_eq!(doc["member"]["openid"], OPENID);
        assert_eq!(doc["follower"]["openid"], OPENID);
        let ledger: i64 = doc["points_ledger"].as_array().unwrap().iter().map(|e| e["points"].as_i64().unwrap()).sum();
        assert_eq!(ledger, 800);
        let messages = doc["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3, "{doc}");
        assert!(messages.iter().all(|m| m["raw_xml"].as_str().unwrap().contains(OPENID)));
        assert_eq!(doc["orders"][0]["order_id"], "SO-ERASE-1");
        assert!(!doc["h5_sessions"].as_array().unwrap().is_empty());
        assert!(!doc["queued_messages"].as_array().unwrap().is_empty(), "the bind and order notices: {doc}");
        let (status, by_openid) =
            api_call(&base, "GET", &format!("/api/v1/members/{OPENID}/export"), Some(ADMIN_TOKEN), None).await;
        assert_eq!((status, &by_openid["member"]["id"]), (200, &doc["member"]["id"]));
        let (status, answer) =
            api_call(&base, "GET", "/api/v1/members/oNobodyAtAll/export", Some(ADMIN_TOKEN), None).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (404, Some("no member or follower with that openid or card number"))
        );

        // Erasure.
        let totals = "SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT) FROM points_ledger WHERE kind <> 'adjust'";
        let before = scalar(&store, totals).await;
        let erase = format!("/api/v1/members/{OPENID}");
        assert_eq!(api_call(&base, "DELETE", &erase, Some(MARKETING_TOKEN), None).await.0, 403);
        assert_eq!(find_everywhere(&store, PHONE).await, ["members.phone (1)"], "a refused erasure changed nothing");
        let (status, answer) = api_call(&base, "DELETE", &erase, Some(ADMIN_TOKEN), None).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["erased"], true);
        assert_eq!(answer["member_id"], doc["member"]["id"]);
        assert_eq!(answer["removed"]["inbound_messages"], 3, "{answer}");
        assert_eq!(answer["removed"]["followers"], 1);
        assert_eq!(api_call(&base, "DELETE", &erase, Some(ADMIN_TOKEN), None).await.0, 404, "gone");

        for needle in [OPENID, PHONE, NAME] {
            assert_eq!(find_everywhere(&store, needle).await, Vec::<String>::new(), "{needle} is still stored");
        }
        assert_eq!(scalar(&store, totals).await, before, "the programme's totals stay");
        let id = doc["member"]["id"].as_i64().unwrap();
        let kept = format!("SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT) FROM points_ledger WHERE member_id = {id}");
        assert_eq!(scalar(&store, &kept).await, 0, "the balance is forfeited");
        assert_eq!(scalar(&store, "SELECT COUNT(*) FROM members WHERE phone = '13833334444'").await, 1, "others stay");
        let audit: (Option<i64>, String, String) = wxoa::with_pool!(&store, pool => sqlx::query_as(
            "SELECT member_id, erased_by, removed FROM erasures").fetch_one(pool).await)
        .unwrap();
        assert_eq!((audit.0, audit.1.as_str()), (Some(id), "test-admin"));
        assert!(audit.2.contains("\"inbound_messages\":3"), "{}", audit.2);
        let events: Vec<String> = wxoa::with_pool!(&store, pool => sqlx::query_scalar(
            "SELECT payload FROM jobs WHERE kind = 'crm_event' ORDER BY id").fetch_all(pool).await)
        .unwrap();
        assert_eq!(events.len(), 1, "the member's undelivered events went: {events:?}");
        let event: Value = serde_json::from_str(&events[0]).unwrap();
        assert_eq!(
            (event["type"].as_str(), event["member"]["card_no"].as_str()),
            (Some("member.erased"), Some("C7001"))
        );

        // From the shell: the other member, by card number.
        let file = temp_dir("privacy").join("wxoa.toml");
        std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
        let run = |args: &[&str]| {
            let args: Vec<String> =
                args.iter().map(|a| a.to_string()).chain(["--config".into(), file.display().to_string()]).collect();
            tokio::task::spawn_blocking(move || {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_wxoa"))
                    .args(&args)
                    .current_dir(repo())
                    .output()
                    .unwrap();
                (
                    out.status.code(),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
        };
        let (code, out, err) = run(&["members", "export", "C7002"]).await.unwrap();
        assert_eq!(code, Some(0), "{err}");
        let copy: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(copy["member"]["phone"], "13833334444");
        let (code, out, err) = run(&["members", "erase", "C7002"]).await.unwrap();
        assert_eq!(code, Some(0), "{err}");
        assert!(out.starts_with("erased; rows removed or anonymised: ") && out.contains("members 1"), "{out}");
        assert!(find_everywhere(&store, "13833334444").await.is_empty());
        assert_eq!(scalar(&store, "SELECT COUNT(*) FROM erasures").await, 2);
        server.stop().await;
        db.drop_db().await;
    }
}
