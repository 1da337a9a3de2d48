//! Points that move, end to end over HTTP on SQLite and PostgreSQL: a till's purchase through
//! the signed CRM API reaches the card page, the balance card and the follower's chat; replays
//! and voids; every bad call and bad item refused with its reason and nothing changed; shop
//! orders earning and refunds taking back; tiers up at once and down when the window passes;
//! the CRM's events received signed and in order through an outage, and after a `kill -9`.

mod common;

use common::h5_browser::H5Browser as Browser;
use common::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wxoa::http::signed::{SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
use wxoa::wechat::envelope::Mode;

const CRM_SECRET: &str = "test-crm-secret-0123456789abcdef0123456";
const TEMPLATE_SEND: &str = "/cgi-bin/message/template/send";

/// Now, unix seconds: these tests leave the server's clock unset, so it reads as this.
fn now_secs() -> i64 {
    wxoa::clock::Clock::system().now_secs()
}

/// A server with a fake WeChat (its OAuth too), the CRM's secret set, `tweak` applied.
async fn crm_server(
    backend: Backend,
    tweak: impl FnOnce(&mut wxoa::config::Config),
) -> (Db, TestServer, wxoa::fake::FakeWeChat) {
    let (db, server, fake, _) = oauth_server(backend, |config| {
        config.crm.secret = CRM_SECRET.into();
        tweak(config);
        config.validate().unwrap();
    })
    .await;
    (db, server, fake)
}

/// Posts `body` to the transactions API, signed with `secret` at `timestamp`.
async fn post_signed(addr: &str, body: &str, secret: &str, timestamp: i64) -> (u16, Value) {
    let url = format!("http://{addr}/api/v1/crm/transactions");
    let (status, text) = signed_call(&reqwest::Client::new(), url, body, secret, timestamp).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON answer ({status}): {text}")))
}

/// A correctly signed batch of `items`, now.
async fn batch(server: &TestServer, items: Value) -> (u16, Value) {
    let body = json!({ "transactions": items }).to_string();
    post_signed(&server.addr.to_string(), &body, CRM_SECRET, now_secs()).await
}

/// `GET /api/v1/crm/members/{card}`, signed over the path.
async fn member(server: &TestServer, card: &str) -> (u16, Value) {
    let path = format!("/api/v1/crm/members/{card}");
    let ts = now_secs().to_string();
    let resp = reqwest::Client::new()
        .get(format!("http://{}{path}", server.addr))
        .header(TIMESTAMP_HEADER, &ts)
        .header(SIGNATURE_HEADER, signature(CRM_SECRET, &ts, path.as_bytes()))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

fn earn(reference: &str, card: &str, points: i64) -> Value {
    json!({"reference": reference, "card_no": card, "kind": "earn", "points": points})
}

async fn count(store: &wxoa::store::Store, sql: &'static str) -> i64 {
    wxoa::with_pool!(store, pool => sqlx::query_scalar(sql).fetch_one(pool).await).unwrap()
}

/// Imports `csv` and binds `card` to `openid`.
async fn member_bound(store: &wxoa::store::Store, csv: &str, card: &str, openid: &str) {
    wxoa::members::import::import(store, csv).await.unwrap();
    let n = wxoa::with_pool!(store, pool => sqlx::query("UPDATE members SET openid = $1 WHERE card_no = $2")
        .bind(openid).bind(card).execute(pool).await.map(|r| r.rows_affected()))
    .unwrap();
    assert_eq!(n, 1);
}

/// The points a card page shows.
async fn card_points(server: &TestServer, openid: &str) -> String {
    let mut b = Browser::new(server);
    assert_eq!(b.sign_in("card", openid).await, "/h5/card");
    let page = b.get("/h5/card").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let at = page.body.find("id=\"points\">").expect("the points on the card") + 12;
    page.body[at..].split('<').next().unwrap().to_owned()
}

/// The balance card's title in the chat.
async fn balance_card(server: &TestServer, openid: &str, at: i64) -> String {
    let tap = format!(
        "<xml><ToUserName>gh_1</ToUserName><FromUserName>{openid}</FromUserName><CreateTime>{at}</CreateTime>\
         <MsgType>event</MsgType><Event>CLICK</Event><EventKey>balance</EventKey></xml>"
    );
    let (_, reply) = server.send(&tap).await;
    field(&reply.unwrap(), "Articles/item/Title").unwrap()
}

fn template_values(fake: &wxoa::fake::FakeWeChat, template_id: &str) -> Vec<Value> {
    fake.calls_to(TEMPLATE_SEND).into_iter().filter(|c| c.body["template_id"] == template_id).map(|c| c.body).collect()
}

#[tokio::test]
async fn a_till_purchase_reaches_the_card_and_a_replay_changes_nothing() {
    for backend in backends() {
        let (db, server, fake) = crm_server(backend, |_| {}).await;
        let store = server.state.store.clone();
        member_bound(&store, "card,name,phone,points\n8800123456,Li Lei,13812345678,100\n", "8800123456", "oTill")
            .await;
        let occurred = chrono::Utc::now() - chrono::Duration::hours(1);
        let until = (chrono::Utc::now() + chrono::Duration::days(730)).format("%Y-%m-%d").to_string();
        let purchase = json!([{
            "reference": "POS-SH01-000123", "card_no": "8800123456", "kind": "earn", "points": 120,
            "valid_until": until, "store_code": "SH01", "amount_fen": 280000,
            "occurred_at": occurred.to_rfc3339(), "note": "门店消费 SH01"
        }]);
        let (status, answer) = batch(&server, purchase.clone()).await;
        assert_eq!((status, answer), (200, json!({"applied": 1, "duplicate": 0, "rejected": []})));
        assert_eq!(card_points(&server, "oTill").await, "220");
        assert_eq!(balance_card(&server, "oTill", 1).await, "积分 220 points · standard");
        assert!(eventually(10, || !template_values(&fake, "TPL_POINTS_CHANGED").is_empty()).await);
        let told = template_values(&fake, "TPL_POINTS_CHANGED");
        assert_eq!(
            (told[0]["touser"].as_str(), told[0]["data"]["keyword1"]["value"].as_str()),
            (Some("oTill"), Some("+120"))
        );
        assert_eq!(told[0]["data"]["keyword2"]["value"], "门店消费 SH01");
        assert_eq!(told[0]["data"]["keyword3"]["value"], "220");

        // The same batch again: a duplicate, and nothing moves or is sent.
        let (status, answer) = batch(&server, purchase).await;
        assert_eq!((status, answer), (200, json!({"applied": 0, "duplicate": 1, "rejected": []})));
        assert_eq!(card_points(&server, "oTill").await, "220");

        // The till shows the card: balance, schedule, entries.
        let (status, shown) = member(&server, "8800123456").await;
        assert_eq!(status, 200, "{shown}");
        assert_eq!((shown["balance"].as_i64(), shown["tier"].as_str()), (Some(220), Some("standard")));
        assert_eq!(shown["entries"][0]["reference"], "POS-SH01-000123");
        assert_eq!(shown["entries"][0]["store_code"], "SH01");
        assert_eq!(shown["entries"][0]["points"], 120);
        assert_eq!(shown["earned_in_window"], 120);
        let schedule = shown["expiring"].as_array().unwrap();
        assert!(schedule.iter().any(|e| e == &json!({"points": 120, "valid_until": until})), "{shown}");
        assert!(!shown.to_string().contains("oTill"), "no openid for the till: {shown}");
        assert_eq!(member(&server, "0000000000").await.0, 404);

        // Void once: reversed; twice: refused; the void itself again: a duplicate.
        let void = json!([{"reference": "POS-SH01-000124", "kind": "void", "voids": "POS-SH01-000123"}]);
        let (status, answer) = batch(&server, void.clone()).await;
        assert_eq!((status, answer), (200, json!({"applied": 1, "duplicate": 0, "rejected": []})));
        assert_eq!(card_points(&server, "oTill").await, "100");
        let again = json!([{"reference": "POS-SH01-000125", "card_no": "8800123456", "kind": "void", "voids": "POS-SH01-000123"}]);
        let (_, answer) = batch(&server, again).await;
        assert_eq!(answer["applied"], 0);
        assert_eq!(answer["rejected"][0]["error"], "voids: \"POS-SH01-000123\" is voided already", "{answer}");
        assert_eq!(batch(&server, void).await.1["duplicate"], 1);
        assert_eq!(member(&server, "8800123456").await.1["earned_in_window"], 0, "the void takes the tier credit back");
        assert_eq!(balance_card(&server, "oTill", 2).await, "积分 100 points · standard");
        server.stop().await;
        db.drop_db().await;
    }
}

/// Calls refused as a whole (status, reason) change nothing.
#[tokio::test]
async fn bad_calls_are_refused_whole_and_bad_items_one_by_one() {
    for backend in backends() {
        let (db, server, _fake) = crm_server(backend, |_| {}).await;
        let store = server.state.store.clone();
        member_bound(&store, "card,phone,points\n8800000001,13800000001,500\n", "8800000001", "oBad").await;
        let addr = server.addr.to_string();
        let snapshot = async || {
            (
                count(&store, "SELECT COUNT(*) FROM points_ledger").await,
                count(&store, "SELECT COUNT(*) FROM jobs").await,
                count(&store, "SELECT CAST(SUM(remaining) AS BIGINT) FROM points_lots").await,
            )
        };
        let before = snapshot().await;
        let good = json!({"transactions": [earn("OK-1", "8800000001", 10)]}).to_string();
        let many: Vec<Value> = (0..1001).map(|i| earn(&format!("M-{i}"), "8800000001", 1)).collect();
        let many = json!({ "transactions": many }).to_string();
        let huge = json!({"transactions": [{"reference": "H-1", "note": "x".repeat(300 * 1024)}]}).to_string();
        let now = now_secs();
        let cases: Vec<(&str, String, &str, i64, u16, &str)> = vec![
            ("wrong secret", good.clone(), "another-secret-another-secret-0123", now, 401, "bad signature"),
            ("stale", good.clone(), CRM_SECRET, now - 301, 401, "window"),
            // A margin: the clock ticks on while the cases run (now + 301 can fall inside it).
            ("from the future", good.clone(), CRM_SECRET, now + 330, 401, "window"),
            ("not JSON", "{\"transactions\": [".into(), CRM_SECRET, now, 400, "the body must be"),
            ("no list", "{\"items\": []}".into(), CRM_SECRET, now, 400, "unknown field"),
            ("empty", "{\"transactions\": []}".into(), CRM_SECRET, now, 400, "1 to 1000 transactions (got 0)"),
            ("1001 items", many, CRM_SECRET, now, 400, "1 to 1000 transactions (got 1001)"),
            ("over 256 KiB", huge, CRM_SECRET, now, 413, "larger than 262144 bytes"),
        ];
        for (name, body, secret, ts, status, why) in cases {
            let (got, answer) = post_signed(&addr, &body, secret, ts).await;
            assert_eq!(got, status, "{name}: {answer}");
            assert!(answer["error"].as_str().unwrap().contains(why), "{name}: {answer}");
            assert_eq!(snapshot().await, before, "{name}: nothing changed");
        }
        // Unsigned, and a GET signed over another path.
        let unsigned = reqwest::Client::new()
            .post(format!("http://{addr}/api/v1/crm/transactions"))
            .body(good.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(unsigned.status().as_u16(), 401);
        let ts = now.to_string();
        let wrong_path = reqwest::Client::new()
            .get(format!("http://{addr}/api/v1/crm/members/8800000001"))
            .header(TIMESTAMP_HEADER, &ts)
            .header(SIGNATURE_HEADER, signature(CRM_SECRET, &ts, b"/api/v1/crm/members/8800000002"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong_path.status().as_u16(), 401);

        // Items: each rejected with its reason, alone in its batch, and nothing changes.
        let day = |days: i64| (chrono::Utc::now() + chrono::Duration::days(days)).format("%Y-%m-%d").to_string();
        let items: Vec<(Value, &str)> = vec![
            (earn("I-1", "8899999999", 10), "no member has this card number"),
            (
                json!({"reference": "I-2", "phone": "13800000099", "kind": "earn", "points": 10}),
                "no member has this phone",
            ),
            (
                json!({"reference": "I-3", "card_no": "8800000001", "phone": "13800000099", "kind": "earn", "points": 1}),
                "belong to different members",
            ),
            (json!({"reference": "I-4", "kind": "earn", "points": 1}), "card_no or phone is required"),
            (earn("I-5", "8800000001", 0), "points must be 1 to 1000000 for an earn"),
            (earn("I-6", "8800000001", 1_000_001), "points must be 1 to 1000000"),
            (
                json!({"reference": "I-7", "card_no": "8800000001", "kind": "adjust", "points": -1_000_001}),
                "points must be -1000000 to 1000000",
            ),
            (
                json!({"reference": "I-8", "card_no": "8800000001", "kind": "adjust", "points": -501}),
                "the balance is 500: taking 501 would take it below zero",
            ),
            (
                json!({"reference": "I-9", "card_no": "8800000001", "kind": "void", "voids": "NOPE"}),
                "there is no earlier transaction \"NOPE\"",
            ),
            (json!({"reference": "I-10", "card_no": "8800000001", "kind": "void"}), "voids is required"),
            (
                json!({"reference": "I-11", "card_no": "8800000001", "kind": "earn", "points": 5, "voids": "X"}),
                "voids belongs to a void only",
            ),
            (
                json!({"reference": "I-12", "card_no": "8800000001", "kind": "earn", "points": 5, "valid_until": "31/12/2027"}),
                "valid_until must be a date",
            ),
            (
                json!({"reference": "I-13", "card_no": "8800000001", "kind": "earn", "points": 5, "valid_until": day(-2)}),
                "valid_until has passed",
            ),
            (
                json!({"reference": "I-14", "card_no": "8800000001", "kind": "earn", "points": 5, "occurred_at": "yesterday"}),
                "occurred_at must be RFC 3339",
            ),
            (
                json!({"reference": "I-15", "card_no": "8800000001", "kind": "earn", "points": 5, "occurred_at": "2099-01-01T00:00:00+08:00"}),
                "occurred_at is in the future",
            ),
            (
                json!({"reference": "I-16", "card_no": "8800000001", "kind": "earn", "points": 5, "occurred_at": "2020-01-01T00:00:00+08:00"}),
                "lapsed already",
            ),
            (
                json!({"reference": "order:1", "card_no": "8800000001", "kind": "earn", "points": 5}),
                "reference must be 1 to 64",
            ),
            (
                json!({"reference": "I-18", "card_no": "8800000001", "kind": "gift", "points": 5}),
                "kind must be earn, adjust or void",
            ),
            (json!({"reference": "I-19", "card_no": "8800000001", "kind": "earn", "points": "5"}), "invalid type"),
            (
                json!({"reference": "I-20", "card_no": "8800000001", "kind": "earn", "points": 5, "colour": "red"}),
                "unknown field `colour`",
            ),
            (
                json!({"reference": "I-21", "card_no": "8800000001", "kind": "earn", "points": 5, "store_code": "上海"}),
                "store_code must be",
            ),
            (
                json!({"reference": "I-22", "card_no": "8800000001", "kind": "earn", "points": 5, "amount_fen": -1}),
                "amount_fen must be 0 to",
            ),
            (
                json!({"reference": "I-23", "card_no": "8800000001", "kind": "earn", "points": 5, "note": "a\nb"}),
                "control characters",
            ),
            (
                json!({"reference": "I-24", "card_no": "!!", "kind": "earn", "points": 5}),
                "card_no is not a card number",
            ),
        ];
        for (item, why) in items {
            let (status, answer) = batch(&server, json!([item.clone()])).await;
            assert_eq!((status, &answer["applied"]), (200, &json!(0)), "{item}: {answer}");
            let rejected = &answer["rejected"][0];
            assert_eq!(rejected["index"], 0, "{item}: {answer}");
            assert!(rejected["error"].as_str().unwrap().contains(why), "{item}: {answer}");
            assert_eq!(rejected["reference"], item["reference"]);
            assert_eq!(snapshot().await, before, "{item}: nothing changed");
        }
        // A mixed batch: the bad item is named by its index, the good ones are applied.
        let (_, answer) = batch(
            &server,
            json!([earn("MIX-1", "8800000001", 5), earn("MIX-2", "8899999999", 5), earn("MIX-3", "8800000001", 7)]),
        )
        .await;
        assert_eq!(answer["applied"], 2, "{answer}");
        assert_eq!(
            answer["rejected"],
            json!([{"index": 1, "reference": "MIX-2", "error": "no member has this card number"}])
        );
        assert_eq!(member(&server, "8800000001").await.1["balance"], 512);
        server.stop().await;
        db.drop_db().await;
    }
}

/// The switch: no `crm.secret`, no API.
#[tokio::test]
async fn without_a_secret_the_api_is_off() {
    let (db, server, _fake) = crm_server(Backend::Sqlite, |c| c.crm.secret = "".into()).await;
    let body = json!({"transactions": [earn("X-1", "1", 1)]}).to_string();
    let (status, answer) = post_signed(&server.addr.to_string(), &body, "", now_secs()).await;
    assert_eq!((status, answer["error"].as_str()), (503, Some("the CRM integration is switched off")));
    server.stop().await;
    db.drop_db().await;
}

/// The shop's orders earn `floor(amount_fen / 100 × points_per_yuan)` for the bound buyer, and a
/// refund takes them back; a buyer without a card earns nothing and the order flow goes on.
#[tokio::test]
async fn paid_orders_earn_and_refunds_take_back() {
    for backend in backends() {
        let (db, server, fake) = crm_server(backend, |c| c.loyalty.points_per_yuan = 1.5).await;
        let store = server.state.store.clone();
        member_bound(&store, "card,phone\nC9001,13800000091\n", "C9001", "oShopper").await;
        wxoa::stores::record_follower(&store, "oGuest", true, None, None).await.unwrap();
        let order = |id: &str, status: &str, openid: &str, amount: Option<i64>| {
            let mut o = json!({"order_id": id, "status": status, "openid": openid, "sku": "LE-2026"});
            if let Some(a) = amount {
                o["amount_fen"] = a.into();
            }
            o.to_string()
        };
        let shop = async |body: String| {
            let ts = now_secs().to_string();
            let resp = reqwest::Client::new()
                .post(format!("http://{}/api/v1/orders", server.addr))
                .header(TIMESTAMP_HEADER, &ts)
                .header(SIGNATURE_HEADER, signature(SHOP_SECRET, &ts, body.as_bytes()))
                .body(body)
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        };
        // ¥1,299.99 at 1.5 points a yuan: 1949 points.
        assert_eq!(shop(order("SO-1", "paid", "oShopper", Some(129_999))).await, 202);
        assert_eq!(card_points(&server, "oShopper").await, "1949");
        assert_eq!(shop(order("SO-1", "paid", "oShopper", Some(129_999))).await, 200, "a repeat");
        assert_eq!(card_points(&server, "oShopper").await, "1949");
        assert_eq!(shop(order("SO-2", "paid", "oShopper", None)).await, 202, "no amount, no points");
        assert_eq!(shop(order("SO-3", "paid", "oGuest", Some(50_000))).await, 202, "no card, the order goes on");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM points_ledger WHERE reference LIKE 'order:%'").await, 1);
        assert_eq!(shop(order("SO-1", "refunded", "oShopper", Some(129_999))).await, 202);
        assert_eq!(card_points(&server, "oShopper").await, "0");
        let shown = member(&server, "C9001").await.1;
        assert_eq!(shown["entries"][0]["reference"], "order:SO-1:refund");
        assert_eq!(shown["entries"][0]["points"], -1949);
        // The buyer heard of the order and of the points, both ways.
        assert!(eventually(10, || template_values(&fake, "TPL_POINTS_CHANGED").len() == 2).await);
        let told: Vec<String> = template_values(&fake, "TPL_POINTS_CHANGED")
            .iter()
            .map(|m| m["data"]["keyword1"]["value"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(told, ["+1949", "-1949"]);
        assert_eq!(template_values(&fake, "TPL_ORDER_PAID").len(), 3);
        server.stop().await;
        db.drop_db().await;
    }
}

fn tiers() -> Vec<wxoa::config::TierConfig> {
    [("standard", 0, "普通会员 Standard"), ("silver", 2000, "银卡会员 Silver"), ("gold", 8000, "金卡会员 Gold")]
        .into_iter()
        .map(|(name, min_points, label)| wxoa::config::TierConfig {
            name: name.into(),
            min_points,
            label: Some(label.into()),
        })
        .collect()
}

/// A tier goes up with the purchase that reaches it, and down when the hourly review finds the
/// points earned in the window below it (the clock moved on a year); both are told and shown.
/// An imported tier holds for a window.
#[tokio::test]
async fn tiers_go_up_at_once_and_down_when_the_window_passes() {
    for backend in backends() {
        let (db, server, fake) = crm_server(backend, |c| c.loyalty.tiers = tiers()).await;
        let store = server.state.store.clone();
        member_bound(&store, "card,phone\nC7001,13800000071\n", "C7001", "oTier").await;
        wxoa::members::import::import_with(
            &store,
            "card,phone,tier\nC7002,13800000072,gold\n",
            &server.state.config.loyalty,
        )
        .await
        .unwrap();
        let (_, answer) = batch(&server, json!([earn("T-1", "C7001", 1500), earn("T-2", "C7001", 600)])).await;
        assert_eq!(answer["applied"], 2);
        assert_eq!(member(&server, "C7001").await.1["tier"], "silver", "2100 earned: silver at once");
        // Followers read the tier's label; the CRM's API keeps its name.
        assert_eq!(balance_card(&server, "oTier", 1).await, "积分 2100 points · 银卡会员 Silver");
        assert!(eventually(10, || template_values(&fake, "TPL_TIER_CHANGED").len() == 1).await);
        assert_eq!(template_values(&fake, "TPL_TIER_CHANGED")[0]["data"]["keyword1"]["value"], "银卡会员 Silver");
        let mut b = Browser::new(&server);
        b.sign_in("history", "oTier").await;
        let history = b.get("/h5/history").await.body;
        assert!(history.contains("会员等级 Tier: 普通会员 Standard → 银卡会员 Silver"), "{history}");
        let card = b.get("/h5/card").await.body;
        assert!(card.contains("· 银卡会员 Silver</div>"), "{card}");

        // An hour later nothing has left the window; a year and a day later it all has.
        let rules = |now: i64| wxoa::members::points::Rules { now, ..server.state.points_rules() };
        let review = async |now: i64| wxoa::members::points::review_tiers(&store, &rules(now)).await.unwrap();
        let now = store.now_ms();
        assert_eq!(review(now + 3_600_000).await, 0);
        assert_eq!(member(&server, "C7002").await.1["tier"], "gold", "an imported tier holds");
        assert_eq!(review(now + 366 * 86_400_000).await, 2, "C7001 down, and C7002's hold is over");
        let (_, shown) = member(&server, "C7001").await;
        assert_eq!(shown["tier"], "standard", "{shown}");
        assert_eq!(member(&server, "C7002").await.1["tier"], "standard");
        assert!(eventually(10, || template_values(&fake, "TPL_TIER_CHANGED").len() == 2).await);
        assert_eq!(template_values(&fake, "TPL_TIER_CHANGED")[1]["data"]["keyword1"]["value"], "普通会员 Standard");
        assert_eq!(review(now + 367 * 86_400_000).await, 0, "once");
        server.stop().await;
        db.drop_db().await;
    }
}

/// What a test receiver got: each request's headers and body.
type Received = Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>;

/// A CRM on `listener` that answers 500 to the first `fail` requests, then 200.
fn receiver(listener: tokio::net::TcpListener, fail: usize) -> Received {
    let got: Received = Arc::default();
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(fail));
    let state = (got.clone(), failures);
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(
            |axum::extract::State((got, failures)): axum::extract::State<(
                Received,
                Arc<std::sync::atomic::AtomicUsize>,
            )>,
             headers: axum::http::HeaderMap,
             body: String| async move {
                got.lock().unwrap().push((headers, body));
                let left = failures.load(std::sync::atomic::Ordering::SeqCst);
                if left > 0 {
                    failures.store(left - 1, std::sync::atomic::Ordering::SeqCst);
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                axum::http::StatusCode::OK
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app.with_state(state)).await.unwrap() });
    got
}

/// The distinct events received (a repeat of an id counted once), each checked for its
/// signature, with the answer each got.
fn events(got: &Received) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (headers, body) in got.lock().unwrap().iter() {
        let ts = headers[TIMESTAMP_HEADER].to_str().unwrap();
        assert_eq!(headers[SIGNATURE_HEADER].to_str().unwrap(), signature(CRM_SECRET, ts, body.as_bytes()), "signed");
        assert!(now_secs().abs_diff(ts.parse::<i64>().unwrap()) < 60);
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(headers["x-wxoa-event-id"], event["id"].as_str().unwrap());
        if seen.insert(event["id"].as_str().unwrap().to_owned()) {
            out.push(event);
        }
    }
    out
}

/// Each member's events in the order received: (card, type, reference or "").
fn by_member(events: &[Value]) -> std::collections::BTreeMap<String, Vec<(String, String)>> {
    let mut out: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
    for e in events {
        let reference = e["data"]["reference"].as_str().unwrap_or("").to_owned();
        out.entry(e["member"]["card_no"].as_str().unwrap().to_owned())
            .or_default()
            .push((e["type"].as_str().unwrap().to_owned(), reference));
    }
    out
}

/// Every member change reaches the CRM signed, in order per member, through an outage: the
/// first delivery is answered 500 and the member's later events wait for its retry.
#[tokio::test]
async fn the_crm_hears_every_change_in_order_through_an_outage() {
    for backend in backends() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let got = receiver(listener, 1);
        let (db, server, _fake) = crm_server(backend, |c| {
            c.crm.webhook_url = url.clone();
            c.crm.timeout_ms = 2000;
        })
        .await;
        let store = server.state.store.clone();
        wxoa::members::import::import(&store, "card,name,phone\nC8001,Amy,13800000081\nC8002,Bo,13800000082\n")
            .await
            .unwrap();
        // Bound in the H5 page; then the till; then the details page.
        let mut b = Browser::new(&server);
        b.sign_in("bind", "oEvents").await;
        let form = b.get("/h5/bind").await.body;
        let bound = b.submit(&form, "/h5/bind", &[("card_no", "C8001"), ("phone", "13800000081")]).await;
        assert_eq!(bound.status, 303, "{}", bound.body);
        let (_, answer) = batch(
            &server,
            json!([
                earn("E-1", "C8001", 100),
                earn("E-2", "C8002", 30),
                earn("E-3", "C8001", 50),
                {"reference": "E-4", "kind": "void", "voids": "E-1"},
            ]),
        )
        .await;
        assert_eq!(answer["applied"], 4, "{answer}");
        let page = b.get("/h5/account").await.body;
        let saved = b.submit(&page, "/h5/account", &[("name", "Amy Li"), ("birthday", ""), ("store", "")]).await;
        assert_eq!(saved.status, 303, "{}", saved.body);

        assert!(eventually(30, || events(&got).len() == 6).await, "{:?}", events(&got));
        let requests = got.lock().unwrap().len();
        assert!(requests >= 7, "the 500 was retried: {requests} requests");
        let all = events(&got);
        let ordered = by_member(&all);
        let s = |t: &str, r: &str| (t.to_owned(), r.to_owned());
        assert_eq!(
            ordered["C8001"],
            [
                s("member.bound", ""),
                s("points.changed", "E-1"),
                s("points.changed", "E-3"),
                s("points.changed", "E-4"),
                s("member.profile_updated", "")
            ]
        );
        assert_eq!(ordered["C8002"], [s("points.changed", "E-2")]);
        let void = all.iter().find(|e| e["data"]["reference"] == "E-4").unwrap();
        assert_eq!(void["data"]["points"], -100);
        assert_eq!(void["data"]["balance"], 50);
        assert_eq!(void["data"]["voids"], "E-1");
        assert!(void["id"].as_str().unwrap().starts_with("evt_"));
        assert!(chrono::DateTime::parse_from_rfc3339(void["occurred_at"].as_str().unwrap()).is_ok());
        let profile = all.iter().find(|e| e["type"] == "member.profile_updated").unwrap();
        assert_eq!(profile["data"]["name"], "Amy Li");
        for e in &all {
            assert!(!e.to_string().contains("oEvents"), "no openid leaves for the CRM: {e}");
        }
        // Every event job done, none dead.
        let mut left = -1;
        for _ in 0..200 {
            left = count(&store, "SELECT COUNT(*) FROM jobs WHERE kind = 'crm_event' AND state <> 'done'").await;
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(left, 0);
        server.stop().await;
        db.drop_db().await;
    }
}

/// `kill -9` after the change and before its delivery (the CRM is down): the restarted server
/// delivers every event, once each and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_a_change_and_its_delivery_loses_no_event() {
    use common::serve::{Serve, wait_answering};
    for backend in backends() {
        let db = Db::new(backend).await;
        let dir = temp_dir("crm-kill");
        let mut config = test_config(&db, Mode::Safe);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        config.server.listen = format!("127.0.0.1:{port}");
        config.campaigns.enabled = false;
        config.outbox.lease_secs = 15;
        config.crm.secret = CRM_SECRET.into();
        // Nobody listens there yet: every delivery fails and is retried.
        let crm_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        config.crm.webhook_url = format!("http://127.0.0.1:{crm_port}/events");
        let store = wxoa::store::Store::open_migrated(&db.url, 2, wxoa::store::Create::Always).await.unwrap();
        wxoa::members::import::import(&store, "card,phone\nC6001,13800000061\nC6002,13800000062\n").await.unwrap();
        let mut first = Serve::with_config(&dir, &config);
        let addr = first.addr.clone();
        wait_answering(&addr, &first).await;
        let items: Vec<Value> =
            (1..=6).map(|i| earn(&format!("K-{i}"), if i % 2 == 0 { "C6002" } else { "C6001" }, i * 10)).collect();
        let (status, answer) =
            post_signed(&addr, &json!({ "transactions": items }).to_string(), CRM_SECRET, now_secs()).await;
        assert_eq!((status, &answer["applied"]), (200, &json!(6)), "{answer}");
        // Give the worker time to try (and fail) at least once, then kill it mid-retry.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut child = first.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let queued = count(&store, "SELECT COUNT(*) FROM jobs WHERE kind = 'crm_event' AND state <> 'done'").await;
        assert_eq!(queued, 6, "nothing was delivered before the kill");

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", crm_port)).await.unwrap();
        let got = receiver(listener, 0);
        let second = Serve::with_config(&dir, &config);
        wait_answering(&addr, &second).await;
        assert!(eventually(40, || events(&got).len() == 6).await, "{}", second.log());
        let ordered = by_member(&events(&got));
        let refs = |card: &str| ordered[card].iter().map(|(_, r)| r.clone()).collect::<Vec<_>>();
        assert_eq!(refs("C6001"), ["K-1", "K-3", "K-5"]);
        assert_eq!(refs("C6002"), ["K-2", "K-4", "K-6"]);
        drop(second);
        store.close().await;
        db.drop_db().await;
    }
}

/// The README's Python, run as written: a till's batch and its read of the card, and a
/// receiver's check of an event signed as wxoa signs them.
#[tokio::test]
async fn the_readmes_python_signs_and_checks_as_built() {
    let python = std::process::Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !python {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI has python3");
        eprintln!("note: no python3; the README's snippets were not run");
        return;
    }
    let (db, server, _fake) = crm_server(Backend::Sqlite, |_| {}).await;
    wxoa::members::import::import(&server.state.store, "card,phone\n8800123456,13812345678\n").await.unwrap();
    let body = r#"{"id":"evt_1","type":"member.bound","data":{}}"#;
    let ts = now_secs().to_string();
    let sig = signature(CRM_SECRET, &ts, body.as_bytes());
    let script = format!(
        "{}\n{}\nimport sys\n\
         base, secret, ts, sig, body = sys.argv[1:6]\n\
         item = {{'reference': 'PY-README-1', 'card_no': '8800123456', 'kind': 'earn', 'points': 42}}\n\
         print(crm_request(base, secret.encode(), '/api/v1/crm/transactions', {{'transactions': [item]}}))\n\
         print(crm_request(base, secret.encode(), '/api/v1/crm/members/8800123456')['balance'])\n\
         h = {{'X-Wxoa-Timestamp': ts, 'X-Wxoa-Signature': sig}}\n\
         print(verify_event(secret.encode(), h, body.encode()), verify_event(secret.encode(), h, body.encode() + b' '))\n",
        readme_snippet("crm-call"),
        readme_snippet("crm-receiver")
    );
    let args = [script, format!("http://{}", server.addr), CRM_SECRET.to_owned(), ts, sig, body.to_owned()];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").arg("-c").args(&args).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["{'applied': 1, 'duplicate': 0, 'rejected': []}", "42", "True False"]
    );
    server.stop().await;
    db.drop_db().await;
}
