//! The shop integration end to end over HTTP, on SQLite and PostgreSQL, with the fake WeChat:
//! checkout links from the chat and from the article link (through the fake's OAuth), their
//! tokens and tampering; stock switching both to "sold out" and back; order notifications
//! (one template message each, duplicates, going backwards, unknown buyers); every refusal of a
//! badly signed or malformed shop call; the switch-off; and the README's snippets.

mod common;

use common::h5_browser::{H5Browser as Browser, through_the_link, token_in};
use common::*;
use std::sync::atomic::{AtomicU64, Ordering};
use wxoa::http::signed::{SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
use wxoa::shop::checkout::{self, TokenError};

const TEMPLATE_SEND: &str = "/cgi-bin/message/template/send";

/// A server with a fake WeChat (API and OAuth), `tweak` applied to its config.
async fn shop_server(
    backend: Backend,
    tweak: impl FnOnce(&mut wxoa::config::Config),
) -> (Db, TestServer, wxoa::fake::FakeWeChat) {
    let (db, server, fake, _) = oauth_server(backend, tweak).await;
    (db, server, fake)
}

/// A campaign row, as the campaigns module would write it.
async fn campaign(server: &TestServer, name: &str, sku: Option<&str>, created_at: i64) -> i64 {
    wxoa::with_pool!(&server.state.store, pool => sqlx::query_scalar(
        "INSERT INTO campaigns (name, product_sku, articles, created_at, updated_at) VALUES ($1, $2, '[]', $3, $3) RETURNING id")
        .bind(name).bind(sku).bind(created_at).fetch_one(pool).await)
    .unwrap()
}

/// Now, unix seconds: the tests here leave the server's clock unset, so it reads as this.
fn now() -> i64 {
    wxoa::clock::Clock::system().now_secs()
}

static SEQ: AtomicU64 = AtomicU64::new(1);

/// A menu tap: a fresh CreateTime each, so taps are not deduplicated as retries.
fn click(openid: &str, key: &str) -> String {
    let at = now() + SEQ.fetch_add(1, Ordering::Relaxed) as i64;
    format!(
        "<xml><ToUserName><![CDATA[gh_3f2a1b0c9d8e]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event>\
         <EventKey><![CDATA[{key}]]></EventKey></xml>"
    )
}

/// What the bot answers `xml` with (the text reply's content).
async fn chat(server: &TestServer, xml: &str) -> String {
    let (status, reply) = server.send(xml).await;
    assert_eq!(status, 200);
    let reply = reply.expect("a reply");
    field(&reply, "Content").unwrap_or_else(|| panic!("a text reply: {reply}"))
}

async fn say(server: &TestServer, openid: &str, text: &str) -> String {
    chat(server, &text_message(openid, SEQ.fetch_add(1, Ordering::Relaxed) + 9_000_000, text)).await
}

#[tokio::test]
async fn checkout_links_from_the_chat_and_the_article_link_follow_the_stock() {
    for backend in backends() {
        let (db, server, _fake) = shop_server(backend, |_| {}).await;
        let t0 = server.state.clock.now_ms();
        let older = campaign(&server, "Autumn", Some("AUT-1"), t0 - 10_000).await;
        let launch = campaign(&server, "Launch", Some("LE-2026"), t0).await;
        let empty = campaign(&server, "Teaser", None, t0 + 1).await;
        let (status, answer) = shop(
            &server,
            "/api/v1/stock",
            serde_json::json!({"products": [{"sku": "LE-2026", "name": "No. 5 Limited", "stock": 2}, {"sku": "AUT-1", "stock": 9}]}),
        )
        .await;
        assert_eq!((status, &answer["updated"]), (200, &serde_json::json!(2)), "{answer}");
        let p = wxoa::shop::product(&server.state.store, "LE-2026").await.unwrap().unwrap();
        assert_eq!((p.name.as_str(), p.stock), ("No. 5 Limited", 2));

        // The keyword: a link for the latest campaign that sells something (not the teaser).
        for word in ["buy", "我要购买"] {
            let reply = say(&server, "oChatBuyer", word).await;
            assert!(reply.contains("No. 5 Limited") && reply.contains("30"), "{reply}");
            let claims = checkout::verify(CHECKOUT_SECRET, &token_in(&reply), now()).unwrap();
            assert_eq!(
                (claims.campaign_id, claims.sku.as_str(), claims.openid.as_str()),
                (launch, "LE-2026", "oChatBuyer")
            );
            assert!((now() + 1795..=now() + 1800).contains(&claims.exp), "expires after checkout.token_ttl_secs");
        }
        // The menu: BUY is the same; BUY_<id> names a campaign.
        let reply = chat(&server, &click("oChatBuyer", "BUY")).await;
        assert_eq!(checkout::verify(CHECKOUT_SECRET, &token_in(&reply), now()).unwrap().campaign_id, launch);
        let reply = chat(&server, &click("oChatBuyer", &format!("BUY_{older}"))).await;
        let claims = checkout::verify(CHECKOUT_SECRET, &token_in(&reply), now()).unwrap();
        assert_eq!((claims.campaign_id, claims.sku.as_str()), (older, "AUT-1"));
        for key in [format!("BUY_{empty}"), "BUY_99999".to_owned()] {
            let reply = chat(&server, &click("oChatBuyer", &key)).await;
            assert!(reply.contains("nothing on sale"), "{key}: {reply}");
        }

        // Tampering with the link's token: any change is a bad signature; a late use expired.
        let token = token_in(&say(&server, "oChatBuyer", "buy").await);
        let (payload, sig) = token.split_once('.').unwrap();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
        claims["o"] = "oSomebodyElse".into();
        let forged = format!("{}.{sig}", b64.encode(claims.to_string()));
        let flipped = format!("{payload}.{}{}", if sig.starts_with('A') { 'B' } else { 'A' }, &sig[1..]);
        for bad in [&forged, &flipped] {
            assert_eq!(checkout::verify(CHECKOUT_SECRET, bad, now()), Err(TokenError::BadSignature));
        }
        assert_eq!(checkout::verify(CHECKOUT_SECRET, &token, now() + 1801), Err(TokenError::Expired));
        assert_eq!(checkout::verify(CHECKOUT_SECRET, "garbage", now()), Err(TokenError::Malformed));

        // The article link: /buy/{id} → /h5/buy/{id} → sign-in → back → the checkout.
        assert_eq!(
            wxoa::shop::article_link("http://127.0.0.1:8080/", launch),
            format!("http://127.0.0.1:8080/buy/{launch}")
        );
        let mut browser = Browser::new(&server);
        let article = browser.get(&format!("/buy/{launch}")).await;
        assert_eq!((article.status, article.location.clone()), (302, Some(format!("/h5/buy/{launch}"))));
        let landing = browser.get(&article.location.unwrap()).await;
        assert_eq!((landing.status, landing.location.clone()), (303, Some(format!("/h5/start?to=buy/{launch}"))));
        assert_eq!(
            browser.sign_in_from(&landing.location.unwrap(), "oArticleReader").await,
            format!("/h5/buy/{launch}")
        );
        let landing = browser.get(&format!("/h5/buy/{launch}")).await;
        assert_eq!(landing.status, 302, "{}", landing.body);
        let claims = checkout::verify(CHECKOUT_SECRET, &token_in(&landing.location.unwrap()), now()).unwrap();
        assert_eq!((claims.campaign_id, claims.openid.as_str()), (launch, "oArticleReader"));
        // Unknown campaigns, campaigns without a product, ids that are not ids.
        assert_eq!(browser.get("/h5/buy/99999").await.status, 404);
        assert_eq!(browser.get("/buy/abc").await.status, 404);
        let teaser = browser.get(&format!("/h5/buy/{empty}")).await;
        assert!(teaser.status == 200 && teaser.body.contains("nothing to buy"), "{}", teaser.body);

        // Sold out: the chat answers from sold_out.j2, the landing shows the sold-out page…
        assert_eq!(shop(&server, "/api/v1/stock", serde_json::json!({"sku": "LE-2026", "stock": 0})).await.0, 200);
        for reply in [say(&server, "oChatBuyer", "buy").await, chat(&server, &click("oChatBuyer", "BUY")).await] {
            assert!(
                reply.contains("已售罄") && reply.contains("sold out") && reply.contains("No. 5 Limited"),
                "{reply}"
            );
            assert!(!reply.contains("token="), "{reply}");
        }
        let page = browser.get(&format!("/h5/buy/{launch}")).await;
        assert!(page.status == 200 && page.body.contains("id=\"sold-out\"") && page.body.contains("No. 5 Limited"));
        let stranger = Browser::new(&server).get(&format!("/h5/buy/{launch}")).await;
        assert_eq!(stranger.status, 200, "sold out needs no sign-in");
        // …and restocking brings the links back.
        assert_eq!(shop(&server, "/api/v1/stock", serde_json::json!({"sku": "LE-2026", "stock": 5})).await.0, 200);
        let reply = say(&server, "oChatBuyer", "buy").await;
        assert_eq!(checkout::verify(CHECKOUT_SECRET, &token_in(&reply), now()).unwrap().campaign_id, launch);
        assert_eq!(browser.get(&format!("/h5/buy/{launch}")).await.status, 302);
        let p = wxoa::shop::product(&server.state.store, "LE-2026").await.unwrap().unwrap();
        assert_eq!((p.name.as_str(), p.stock), ("No. 5 Limited", 5), "a stock update without a name keeps it");
        // A report older than the one applied (a late retry, a replay) changes nothing.
        let (status, answer) =
            shop_call(&server, "/api/v1/stock", r#"{"sku":"LE-2026","stock":0}"#, SHOP_SECRET, now() - 60).await;
        assert_eq!((status, answer.as_str()), (200, r#"{"stale":1,"updated":0}"#));
        let p = wxoa::shop::product(&server.state.store, "LE-2026").await.unwrap().unwrap();
        assert_eq!(p.stock, 5, "the newer figure stands");

        server.stop().await;
        db.drop_db().await;
    }
}

/// The template messages the fake has received so far.
fn sent(fake: &wxoa::fake::FakeWeChat) -> Vec<serde_json::Value> {
    fake.calls_to(TEMPLATE_SEND).into_iter().map(|c| c.body).collect()
}

/// Waits until the fake has `n` template messages, then a little longer to see no more come.
async fn expect_sent(fake: &wxoa::fake::FakeWeChat, n: usize) -> Vec<serde_json::Value> {
    assert!(eventually(10, || sent(fake).len() >= n).await, "{} sent, expected {n}", sent(fake).len());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let all = sent(fake);
    assert_eq!(all.len(), n, "{all:#?}");
    all
}

fn order(order_id: &str, status: &str, openid: &str) -> serde_json::Value {
    serde_json::json!({"order_id": order_id, "status": status, "openid": openid, "sku": "LE-2026",
        "product_name": "No. 5 Limited", "amount_fen": 129900})
}

#[tokio::test]
async fn order_notifications_tell_the_buyer_once_and_only_forwards() {
    for backend in backends() {
        let (db, server, fake) = shop_server(backend, |_| {}).await;
        campaign(&server, "Launch", Some("LE-2026"), server.state.clock.now_ms()).await;
        // oBuyer got a checkout link in the chat, which makes them a follower we know.
        say(&server, "oBuyer", "buy").await;

        let (status, answer) = shop(&server, "/api/v1/orders", order("SO-1", "created", "oBuyer")).await;
        assert_eq!((status, &answer["queued"]), (202, &serde_json::json!(true)), "{answer}");
        let first = expect_sent(&fake, 1).await;
        let m = &first[0];
        assert_eq!((m["touser"].as_str(), m["template_id"].as_str()), (Some("oBuyer"), Some("TPL_ORDER_CREATED")));
        assert_eq!(m["data"]["keyword1"]["value"], "SO-1");
        assert_eq!(m["data"]["keyword2"]["value"], "No. 5 Limited");
        assert_eq!(m["data"]["keyword3"]["value"], "¥1,299.00");

        // The same notification again: 200, a duplicate, nothing sent.
        let (status, answer) = shop(&server, "/api/v1/orders", order("SO-1", "created", "oBuyer")).await;
        assert_eq!((status, &answer["duplicate"]), (200, &serde_json::json!(true)), "{answer}");
        expect_sent(&fake, 1).await;

        // Forwards, skipping nothing or something; then backwards is refused.
        let mut shipped = order("SO-1", "shipped", "oBuyer");
        shipped["tracking_no"] = "SF1234567890".into();
        shipped["at"] = (now() - 60).into();
        assert_eq!(shop(&server, "/api/v1/orders", shipped).await.0, 202);
        let all = expect_sent(&fake, 2).await;
        assert_eq!(all[1]["template_id"], "TPL_ORDER_SHIPPED");
        assert_eq!(all[1]["data"]["keyword3"]["value"], "SF1234567890");
        let (status, answer) = shop(&server, "/api/v1/orders", order("SO-1", "paid", "oBuyer")).await;
        assert_eq!(status, 409, "paid after shipped: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("already shipped"), "{answer}");
        assert_eq!(shop(&server, "/api/v1/orders", order("SO-1", "refunded", "oBuyer")).await.0, 202);
        // After the refund: a status it never had is refused; one it had is still a repeat.
        assert_eq!(shop(&server, "/api/v1/orders", order("SO-1", "paid", "oBuyer")).await.0, 409);
        assert_eq!(shop(&server, "/api/v1/orders", order("SO-1", "created", "oBuyer")).await.0, 200);
        // Another buyer for the same order; a buyer we have never seen.
        assert_eq!(shop(&server, "/api/v1/orders", order("SO-2", "paid", "oBuyer")).await.0, 202);
        assert_eq!(shop(&server, "/api/v1/orders", order("SO-2", "shipped", "oOther")).await.0, 409);
        let (status, answer) = shop(&server, "/api/v1/orders", order("SO-3", "paid", "oStranger")).await;
        assert_eq!(status, 422, "{answer}");
        // A member with a bound card is known too.
        wxoa::members::import::import(&server.state.store, "card,phone,points\nC5001,13800000051,100\n").await.unwrap();
        let bound = wxoa::with_pool!(&server.state.store, pool => sqlx::query("UPDATE members SET openid = 'oMember' WHERE card_no = 'C5001'")
            .execute(pool).await.map(|r| r.rows_affected())).unwrap();
        assert_eq!(bound, 1);
        assert_eq!(shop(&server, "/api/v1/orders", order("SO-4", "paid", "oMember")).await.0, 202);

        // The member's paid order earned points too (¥1,299.00 at a point a yuan), and said so.
        let all = expect_sent(&fake, 6).await;
        let mut summary: Vec<(&str, &str)> =
            all.iter().map(|m| (m["touser"].as_str().unwrap(), m["template_id"].as_str().unwrap())).collect();
        summary.sort();
        assert_eq!(
            summary,
            [
                ("oBuyer", "TPL_ORDER_CREATED"),
                ("oBuyer", "TPL_ORDER_PAID"),
                ("oBuyer", "TPL_ORDER_REFUNDED"),
                ("oBuyer", "TPL_ORDER_SHIPPED"),
                ("oMember", "TPL_ORDER_PAID"),
                ("oMember", "TPL_POINTS_CHANGED")
            ]
        );
        let points = all.iter().find(|m| m["template_id"] == "TPL_POINTS_CHANGED").unwrap();
        assert_eq!(points["data"]["keyword1"]["value"], "+1299");
        let rows: Vec<(String, String)> = wxoa::with_pool!(&server.state.store, pool => sqlx::query_as(
            "SELECT order_id, status FROM orders ORDER BY received_at, order_id").fetch_all(pool).await)
        .unwrap();
        assert_eq!(rows.len(), 5, "{rows:?}");
        let jobs = wxoa::jobs::outbox::list(&server.state.store, None, 20).await.unwrap();
        let mut keys: Vec<&str> = jobs.iter().map(|j| j.dedupe_key.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "order:SO-1:created",
                "order:SO-1:refunded",
                "order:SO-1:shipped",
                "order:SO-2:paid",
                "order:SO-4:paid",
                "points:order:SO-4"
            ]
        );

        server.stop().await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn bad_shop_calls_are_refused_and_change_nothing() {
    for backend in backends() {
        // The server would take a megabyte: the shop's own 64 KiB limit is what refuses.
        let (db, server, fake) = shop_server(backend, |c| c.server.max_body_bytes = 1 << 20).await;
        let good = order("SO-9", "paid", "oBuyer").to_string();
        let big = format!(r#"{{"sku":"A","stock":1,"name":"{}"}}"#, "x".repeat(64 * 1024));
        let t = now();
        // The future case keeps a margin: the clock may tick on while the cases run (the exact
        // ±300 s bounds are `http::signed`'s unit test).
        #[rustfmt::skip]
        let cases: Vec<(&str, &str, String, &str, i64, u16)> = vec![
            ("another secret",     "/api/v1/orders", good.clone(), "another-secret-another-secret-0000", t, 401),
            ("stale timestamp",    "/api/v1/orders", good.clone(), SHOP_SECRET, t - 301, 401),
            ("future timestamp",   "/api/v1/orders", good.clone(), SHOP_SECRET, t + 330, 401),
            ("malformed JSON",     "/api/v1/orders", "{\"order_id\":".into(), SHOP_SECRET, t, 400),
            ("not an object",      "/api/v1/orders", "[]".into(), SHOP_SECRET, t, 400),
            ("unknown status",     "/api/v1/orders", good.replace("\"paid\"", "\"lost\""), SHOP_SECRET, t, 400),
            ("unknown field",      "/api/v1/orders", good.replace("\"amount_fen\"", "\"amount\""), SHOP_SECRET, t, 400),
            ("missing field",      "/api/v1/orders", good.replace("\"sku\"", "\"skew\""), SHOP_SECRET, t, 400),
            ("negative amount",    "/api/v1/orders", good.replace("129900", "-1"), SHOP_SECRET, t, 400),
            ("bad openid",         "/api/v1/orders", good.replace("oBuyer", "o Buyer"), SHOP_SECRET, t, 400),
            ("oversize",           "/api/v1/orders", big.clone(), SHOP_SECRET, t, 413),
            ("stock oversize",     "/api/v1/stock", big.clone(), SHOP_SECRET, t, 413),
            ("stock bad signature","/api/v1/stock", r#"{"sku":"A","stock":1}"#.into(), "another-secret-another-secret-0000", t, 401),
            ("negative stock",     "/api/v1/stock", r#"{"sku":"A","stock":-1}"#.into(), SHOP_SECRET, t, 400),
            ("long sku",           "/api/v1/stock", format!(r#"{{"sku":"{}","stock":1}}"#, "s".repeat(65)), SHOP_SECRET, t, 400),
            ("sku and products",   "/api/v1/stock", r#"{"sku":"A","stock":1,"products":[]}"#.into(), SHOP_SECRET, t, 400),
        ];
        for (name, path, body, secret, ts, want) in cases {
            let (status, text) = shop_call(&server, path, &body, secret, ts).await;
            assert_eq!(status, want, "{name}: {text}");
            let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{name}: {text}"));
            assert!(json["error"].is_string(), "{name}: {text}");
        }
        // No headers at all; a signature that is not hex.
        let url = format!("http://{}/api/v1/orders", server.addr);
        let bare = server.client.post(&url).body(good.clone()).send().await.unwrap();
        assert_eq!(bare.status().as_u16(), 401);
        let ts = t.to_string();
        let not_hex =
            server.client.post(&url).header(TIMESTAMP_HEADER, &ts).header(SIGNATURE_HEADER, "zz").body(good).send();
        assert_eq!(not_hex.await.unwrap().status().as_u16(), 401);

        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(sent(&fake).is_empty());
        let counts: (i64, i64) = wxoa::with_pool!(&server.state.store, pool => sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM products)").fetch_one(pool).await)
        .unwrap();
        assert_eq!(counts, (0, 0));
        server.stop().await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn empty_secrets_switch_the_integration_off() {
    for backend in backends() {
        let (db, server, fake) = shop_server(backend, |c| {
            c.shop.secret = Default::default();
            c.checkout.secret = Default::default();
        })
        .await;
        let launch = campaign(&server, "Launch", Some("LE-2026"), server.state.clock.now_ms()).await;
        for (path, body) in [
            ("/api/v1/stock", r#"{"sku":"LE-2026","stock":1}"#.to_owned()),
            ("/api/v1/orders", order("SO-1", "paid", "oBuyer").to_string()),
        ] {
            // Signed with the empty secret and with the usual one alike.
            for secret in ["", SHOP_SECRET] {
                assert_eq!(shop_call(&server, path, &body, secret, now()).await.0, 503, "{path}");
            }
        }
        let reply = say(&server, "oBuyer", "buy").await;
        assert!(reply.contains("not available") && !reply.contains("token="), "{reply}");
        assert_eq!(Browser::new(&server).get(&format!("/h5/buy/{launch}")).await.status, 503);
        assert!(sent(&fake).is_empty());
        server.stop().await;
        db.drop_db().await;
    }
}

/// The README's scheme, recomputed here from its recipe alone (HMAC over the encoded payload,
/// base64url without padding, the four documented claims); and, where Python is installed, the
/// README's own snippets run against a real token and a real server.
#[tokio::test]
async fn the_readme_describes_the_token_and_the_signing_as_built() {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let (db, server, _fake) = shop_server(Backend::Sqlite, |_| {}).await;
    campaign(&server, "Launch", Some("LE-2026"), server.state.clock.now_ms()).await;
    let token = token_in(&say(&server, "oReader", "buy").await);

    let (payload, sig) = token.split_once('.').unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(CHECKOUT_SECRET.as_bytes()).unwrap();
    mac.update(payload.as_bytes());
    assert_eq!(b64.encode(mac.finalize().into_bytes()), sig);
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    let mut keys: Vec<&str> = claims.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["c", "exp", "o", "p"]);
    assert_eq!((claims["o"].as_str(), claims["p"].as_str()), (Some("oReader"), Some("LE-2026")));

    let python = std::process::Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !python {
        eprintln!("note: no python3; the README's snippets were not run");
    } else {
        let script = format!(
            "{}\n{}\nimport sys\n\
             token, url, secret_c, secret_s = sys.argv[1:5]\n\
             print(verify_checkout_token(secret_c.encode(), token)['o'])\n\
             for bad in (token[:-2] + ('AA' if token[-2:] != 'AA' else 'BB'), token, 'x.y'):\n\
             \x20   try:\n\
             \x20       verify_checkout_token((secret_c + 'x').encode() if bad == token else secret_c.encode(), bad)\n\
             \x20       print('accepted')\n\
             \x20   except ValueError:\n\
             \x20       print('refused')\n\
             print(shop_call(url, secret_s.encode(), {{'sku': 'PY-1', 'name': 'From Python', 'stock': 3}}).status)\n",
            readme_snippet("verify-token"),
            readme_snippet("sign-call")
        );
        let args = [script, token.clone(), format!("http://{}/api/v1/stock", server.addr)];
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("python3")
                .arg("-c")
                .args(&args)
                .arg(CHECKOUT_SECRET)
                .arg(SHOP_SECRET)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout.lines().collect::<Vec<_>>(), ["oReader", "refused", "refused", "refused", "200"]);
        let p = wxoa::shop::product(&server.state.store, "PY-1").await.unwrap().unwrap();
        assert_eq!((p.name.as_str(), p.stock), ("From Python", 3));
    }
    server.stop().await;
    db.drop_db().await;
}

/// Statuses of one order racing each other: whichever arrive, the accepted ones were accepted
/// in forward order (the outbox's job ids, assigned inside each notification's transaction,
/// say in which order), and each accepted one queued exactly one message.
#[tokio::test]
async fn racing_statuses_of_one_order_are_serialised() {
    for backend in backends() {
        let (db, server, _fake) = shop_server(backend, |c| c.outbox.enabled = false).await;
        campaign(&server, "Launch", Some("LE-2026"), server.state.clock.now_ms()).await;
        say(&server, "oRacer", "buy").await;
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..8 {
            for status in ["created", "paid", "shipped", "refunded"] {
                let (http, url) = (server.client.clone(), format!("http://{}/api/v1/orders", server.addr));
                let body = order(&format!("RACE-{n}"), status, "oRacer").to_string();
                tasks.spawn(async move {
                    let ts = now().to_string();
                    let resp = http
                        .post(url)
                        .header(TIMESTAMP_HEADER, &ts)
                        .header(SIGNATURE_HEADER, signature(SHOP_SECRET, &ts, body.as_bytes()))
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    (n, status, resp.status().as_u16())
                });
            }
        }
        let mut accepted = 0;
        while let Some(r) = tasks.join_next().await {
            let (n, status, code) = r.unwrap();
            assert!(code == 202 || code == 409, "RACE-{n} {status}: {code}");
            accepted += usize::from(code == 202);
        }
        let rank = |s: &str| ["created", "paid", "shipped", "refunded"].iter().position(|x| *x == s).unwrap();
        let mut jobs = wxoa::jobs::outbox::list(&server.state.store, None, 100).await.unwrap();
        jobs.sort_by_key(|j| j.id);
        assert_eq!(jobs.len(), accepted);
        for n in 0..8 {
            let prefix = format!("order:RACE-{n}:");
            let ranks: Vec<usize> = jobs.iter().filter_map(|j| j.dedupe_key.strip_prefix(&prefix)).map(rank).collect();
            assert!(!ranks.is_empty() && ranks.windows(2).all(|w| w[0] < w[1]), "RACE-{n}: {ranks:?}");
        }
        server.stop().await;
        db.drop_db().await;
    }
}

/// A call to the admin API as marketing.
async fn marketing(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    api_call(&server.addr.to_string(), method, path, Some(MARKETING_TOKEN), body).await
}

#[tokio::test]
async fn the_funnel_counts_opens_checkouts_and_orders_credited_by_their_token() {
    for backend in backends() {
        let (db, server, _fake) = shop_server(backend, |_| {}).await;
        let body = serde_json::json!({
            "name": "Launch",
            "product": { "sku": "LE-2026", "name": "Limited Edition No. 5", "stock": 3 },
            "articles": [{ "title": "Tonight", "digest": "300 pieces", "content": "<p>00:13</p>",
                           "cover_media_id": "THUMB_1", "cover_url": "https://example.com/c.jpg" }]
        });
        let (status, created) = marketing(&server, "POST", "/api/v1/campaigns", Some(body)).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_i64().unwrap();
        let at = chrono::Utc::now() + chrono::Duration::days(2);
        let push = serde_json::json!({ "name": "launch", "msg_type": "mpnews", "audience": { "type": "all" }, "at": at.to_rfc3339() });
        let (status, scheduled) =
            marketing(&server, "POST", &format!("/api/v1/campaigns/{id}/pushes"), Some(push)).await;
        assert_eq!(status, 201, "{scheduled}");
        let push = scheduled["id"].as_i64().unwrap();
        assert_eq!(shop(&server, "/api/v1/stock", serde_json::json!({"sku": "LE-2026", "stock": 3})).await.0, 200);

        // Two opens from the push's article by one follower, one from a link naming no push.
        let from_push = format!("/buy/{id}?p={push}");
        let a1 = through_the_link(&server, &from_push, "oFunnelBuyerA").await;
        let _a2 = through_the_link(&server, &from_push, "oFunnelBuyerA").await;
        let b = through_the_link(&server, &format!("/buy/{id}"), "oFunnelBuyerB").await;
        // Not a campaign: no open counted, still a 404 further on.
        assert_eq!(Browser::new(&server).get("/buy/99999").await.status, 302);

        // A's order names A's token: created and paid are credited to the push (paid without the
        // token again: the order's credit stands). B's orders: a forged token, A's token, none.
        let order = |order_id: &str, status: &str, openid: &str, token: Option<&str>| {
            let mut o = serde_json::json!({"order_id": order_id, "status": status, "openid": openid,
                                           "sku": "LE-2026", "amount_fen": 129900});
            if let Some(t) = token {
                o["checkout_token"] = t.into();
            }
            o
        };
        let (sig_at, sig) = b.rsplit_once('.').map(|(p, s)| (p.to_owned(), s.to_owned())).unwrap();
        let forged = format!("{sig_at}.{}{}", if sig.starts_with('A') { 'B' } else { 'A' }, &sig[1..]);
        for (o, want) in [
            (order("SO-A", "created", "oFunnelBuyerA", Some(&a1)), 202),
            (order("SO-A", "paid", "oFunnelBuyerA", None), 202),
            (order("SO-B1", "paid", "oFunnelBuyerB", Some(&forged)), 202),
            (order("SO-B2", "paid", "oFunnelBuyerB", Some(&a1)), 202),
            (order("SO-B3", "paid", "oFunnelBuyerB", None), 202),
        ] {
            let (status, answer) = shop(&server, "/api/v1/orders", o.clone()).await;
            assert_eq!(status, want, "{o}: {answer}");
        }
        // A token longer than any we issue is refused, and nothing is recorded.
        let (status, answer) =
            shop(&server, "/api/v1/orders", order("SO-C", "paid", "oFunnelBuyerB", Some(&"x".repeat(1025)))).await;
        assert_eq!(status, 400);
        assert!(answer["error"].as_str().unwrap().contains("checkout_token must be 1 to 1024 characters"), "{answer}");
        // Sold out: the moment is kept.
        assert_eq!(shop(&server, "/api/v1/stock", serde_json::json!({"sku": "LE-2026", "stock": 0})).await.0, 200);

        let (status, f) = marketing(&server, "GET", &format!("/api/v1/campaigns/{id}/funnel"), None).await;
        assert_eq!(status, 200, "{f}");
        let total = &f["funnel"];
        assert_eq!(
            (total["opens"].as_i64(), total["openers"].as_i64(), total["checkouts"].as_i64()),
            (Some(3), Some(2), Some(3)),
            "{f}"
        );
        assert_eq!(
            (total["orders"].as_i64(), total["paid"].as_i64(), total["revenue_fen"].as_i64()),
            (Some(1), Some(1), Some(129900))
        );
        let by_push = &f["pushes"][0];
        assert_eq!(by_push["push"], push);
        assert_eq!(
            (
                by_push["funnel"]["opens"].as_i64(),
                by_push["funnel"]["openers"].as_i64(),
                by_push["funnel"]["paid"].as_i64()
            ),
            (Some(2), Some(1), Some(1))
        );
        assert_eq!(f["unattributed_to_a_push"]["opens"], 1);
        assert_eq!(f["unattributed_to_a_push"]["paid"], 0, "B's orders are credited to nothing");
        assert!(f["sold_out_at"].as_str().is_some(), "{f}");
        let minutes = f["series"]["minutes"].as_array().unwrap();
        let sum = |k: &str| minutes.iter().map(|m| m[k].as_i64().unwrap()).sum::<i64>();
        assert_eq!((sum("opens"), sum("checkouts"), sum("paid")), (3, 3, 1));

        // Bad windows and callers.
        let cases = [
            (
                format!(
                    "/api/v1/campaigns/{id}/funnel?from=2026-12-02T10:00:00%2B08:00&to=2026-12-01T10:00:00%2B08:00"
                ),
                400,
                "from must be before to",
            ),
            (
                format!(
                    "/api/v1/campaigns/{id}/funnel?from=2026-11-01T00:00:00%2B08:00&to=2026-11-09T00:00:00%2B08:00"
                ),
                400,
                "at most 7 days",
            ),
            (format!("/api/v1/campaigns/{id}/funnel?from=yesterday"), 400, "is not a time like"),
            (format!("/api/v1/campaigns/{id}/funnel?form=2026-12-01"), 400, "unknown field `form`"),
            ("/api/v1/campaigns/99999/funnel".to_owned(), 404, "no campaign 99999"),
        ];
        for (path, want, why) in cases {
            let (status, answer) = marketing(&server, "GET", &path, None).await;
            assert_eq!(status, want, "{path}: {answer}");
            assert!(answer.to_string().contains(why), "{path}: {answer}");
        }
        let anonymous =
            server.client.get(format!("http://{}/api/v1/campaigns/{id}/funnel", server.addr)).send().await.unwrap();
        assert_eq!(anonymous.status().as_u16(), 401);
        server.stop().await;
        db.drop_db().await;
    }
}
