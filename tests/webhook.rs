//! The webhook end to end: real HTTP round trips into a server on a loopback socket, on SQLite
//! and PostgreSQL.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wxoa::bot::handlers::{HandlerCtx, Handlers};
use wxoa::wechat::crypto::MsgCrypt;
use wxoa::wechat::envelope::{Envelope, Mode};
use wxoa::wechat::reply::Reply;
use wxoa::wechat::signature;

async fn inbound_count(server: &TestServer) -> i64 {
    wxoa::with_pool!(&server.state.store, pool => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM inbound_messages").fetch_one(pool).await).unwrap()
}

/// Every recorded fixture through the real router, in each mode, against its golden reply;
/// then again, as WeChat's retry, which must get the same reply. `UPDATE_GOLDEN=1` rewrites
/// the golden files instead (review the diff).
#[tokio::test]
async fn fixtures_match_golden_replies_in_every_mode() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let fixtures = wxoa::tools::replay::fixture_paths(&[repo().join("tests/fixtures/inbound")]).unwrap();
    assert!(fixtures.len() >= 31, "one fixture per inbound type");
    for backend in backends() {
        for mode in [Mode::Plain, Mode::Compat, Mode::Safe] {
            let db = Db::new(backend).await;
            let server = TestServer::start(test_config(&db, mode)).await;
            let stores_csv = std::fs::read_to_string(repo().join("tests/fixtures/stores.csv")).unwrap();
            wxoa::stores::import(&server.state.store, &stores_csv).await.unwrap();
            for pass in ["first", "retry"] {
                for path in &fixtures {
                    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                    let xml = std::fs::read_to_string(path).unwrap();
                    let (status, reply) = server.send(&xml).await;
                    assert_eq!(status, 200, "{name} ({mode}, {backend:?}): {reply:?}");
                    let got = reply.unwrap_or_else(|| "success".into());
                    let golden_path = repo().join(format!("tests/fixtures/replies/{name}.xml"));
                    if update && mode == Mode::Plain && pass == "first" && backend == Backend::Sqlite {
                        std::fs::write(&golden_path, format!("{}\n", wxoa::tools::replay::normalize(&got))).unwrap();
                        continue;
                    }
                    let want = std::fs::read_to_string(&golden_path)
                        .unwrap_or_else(|_| panic!("no golden reply for {name}; run with UPDATE_GOLDEN=1"));
                    assert_eq!(
                        wxoa::tools::replay::normalize(&got),
                        wxoa::tools::replay::normalize(&want),
                        "{name} ({mode}, {backend:?}, {pass})"
                    );
                }
            }
            // Each fixture was stored once, however often it came.
            assert_eq!(inbound_count(&server).await, fixtures.len() as i64);
            server.stop().await;
            db.drop_db().await;
        }
    }
}

#[tokio::test]
async fn handshake_echoes_only_a_verified_echostr() {
    let db = Db::new(Backend::Sqlite).await;
    let server = TestServer::start(test_config(&db, Mode::Safe)).await;
    let now = server.state.clock.now_ms() / 1000;
    let sig = signature::sign(&[TOKEN, &now.to_string(), "42"]);
    let cases = [
        (format!("signature={sig}&timestamp={now}&nonce=42&echostr=7316952011"), 200, "7316952011"),
        (format!("signature={}&timestamp={now}&nonce=42&echostr=7316952011", "0".repeat(40)), 401, "bad signature"),
        (format!("timestamp={now}&nonce=42&echostr=7316952011"), 401, "missing signature"),
        (format!("signature={sig}&timestamp={now}&nonce=43&echostr=7316952011"), 401, "bad signature"),
        (format!("signature={sig}&timestamp={now}&nonce=42"), 400, "missing echostr"),
    ];
    for (query, status, body) in cases {
        let (got_status, got_body) = server.raw("GET", &query, String::new()).await;
        assert_eq!(got_status, status, "{query}");
        assert!(got_body.contains(body), "{query}: {got_body}");
    }
    server.stop().await;
}

/// Every kind of bad input gets its status, a short reason, and changes nothing.
#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let db = Db::new(Backend::Sqlite).await;
    let server = TestServer::start(test_config(&db, Mode::Safe)).await;
    let now = server.state.clock.now_ms() / 1000;
    let ts = now.to_string();
    let good = text_message("oBad", 1, "hi");

    // Signs an arbitrary Encrypt value correctly, so only its content is wrong.
    let signed_encrypt = |encrypt: &str| {
        let sig = signature::sign(&[TOKEN, &ts, "7"]);
        let msg_sig = signature::sign(&[TOKEN, &ts, "7", encrypt]);
        (
            format!("signature={sig}&timestamp={ts}&nonce=7&encrypt_type=aes&msg_signature={msg_sig}"),
            format!("<xml><ToUserName><![CDATA[gh_x]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"),
        )
    };
    let b64 = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let other_app = MsgCrypt::new(AES_KEY, "wx0000000000000000").unwrap();
    // A ciphertext whose plaintext ends in a pad byte of 0: encrypt 32 zero bytes in CBC by hand.
    let bad_pad = {
        use aes::cipher::{Array, BlockModeEncrypt, KeyIvInit};
        let key = base64::Engine::decode(
            &base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
            ),
            format!("{AES_KEY}="),
        )
        .unwrap();
        let mut buf = [0u8; 32];
        let mut enc = cbc::Encryptor::<aes::Aes256>::new_from_slices(&key, &key[..16]).unwrap();
        let (blocks, _) = Array::slice_as_chunks_mut(&mut buf);
        enc.encrypt_blocks(blocks);
        b64(&buf)
    };
    let envelope_for = |xml: &str| server.envelope.wrap(xml, now, "9");
    let stale = server.envelope.wrap(&good, now - 301, "9");
    let (good_q, good_body) = envelope_for(&good);
    let plain = Envelope::new(TOKEN, None, Mode::Plain, 300).wrap(&good, now, "9");

    let case = |name: &'static str, (query, body): (String, String), status: u16| (name, query, body, status);
    let cases: Vec<(&str, String, String, u16)> = vec![
        ("no signature", "timestamp=1&nonce=1".into(), good_body.clone(), 401),
        ("wrong signature", good_q.replace("signature=", "signature=0"), good_body.clone(), 401),
        case("stale timestamp", stale, 401),
        ("tampered msg_signature", good_q.replace("msg_signature=", "msg_signature=f"), good_body.clone(), 401),
        case("plaintext in safe mode", plain, 400),
        case("wrong appid", signed_encrypt(&other_app.encrypt(&good)), 400),
        case("bad padding", signed_encrypt(&bad_pad), 400),
        case("bad base64", signed_encrypt("%%%notbase64%%%"), 400),
        case("not a block multiple", signed_encrypt(&b64(&[1; 20])), 400),
        ("malformed outer XML", good_q.clone(), "<xml><Encrypt>".into(), 400),
        ("DOCTYPE outside", good_q.clone(), format!("<!DOCTYPE xml [<!ENTITY x \"y\">]>{good_body}"), 400),
        case("malformed inner XML", envelope_for("<xml><ToUserName>x</ToUser>"), 400),
        case("DOCTYPE inside", envelope_for(&format!("<!DOCTYPE xml SYSTEM \"http://evil/\">{good}")), 400),
        case(
            "missing FromUserName",
            envelope_for("<xml><ToUserName>g</ToUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>"),
            400,
        ),
        ("body over 64 KiB", good_q.clone(), format!("<xml><Encrypt>{}</Encrypt></xml>", "A".repeat(70 * 1024)), 413),
    ];
    for (name, query, body, status) in cases {
        let (got, text) = server.raw("POST", &query, body).await;
        assert_eq!(got, status, "{name}: {text}");
        assert!(!text.contains("panicked") && !text.contains(AES_KEY) && !text.contains(TOKEN), "{name}: {text}");
        assert!(!text.is_empty(), "{name}: a reason is given");
    }
    // A chunked body declares no length: it is cut off at the limit all the same.
    let chunked = |body: &str, chunk: usize| {
        let mut req = format!("POST /wechat?{good_q} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
        for part in body.as_bytes().chunks(chunk) {
            req.push_str(&format!("{:x}\r\n{}\r\n", part.len(), std::str::from_utf8(part).unwrap()));
        }
        req + "0\r\n\r\n"
    };
    let huge = format!("<xml><Encrypt>{}</Encrypt></xml>", "A".repeat(70 * 1024));
    assert_eq!(raw_http(server.addr, &chunked(&huge, 8192)).await, 413, "chunked body over 64 KiB");
    assert_eq!(inbound_count(&server).await, 0, "nothing was stored");
    assert_eq!(raw_http(server.addr, &chunked(&good_body, 100)).await, 200, "a good body in chunks");
    assert_eq!(inbound_count(&server).await, 1, "the chunked message was stored");
    // And the good one still works.
    let (status, reply) = server.send(&good).await;
    assert_eq!(status, 200);
    assert!(reply.is_some());
    server.stop().await;
}

/// A routes file with a slow handler in front of the shipped rules.
fn slow_routes(dir: &std::path::Path) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(repo().join("config/routes.toml")).unwrap();
    let path = dir.join("routes.toml");
    std::fs::write(&path, format!("[[rule]]\nname = \"slow\"\npriority = 1000\ntext = {{ prefix = \"slow\" }}\nhandler = \"slow\"\n\n{shipped}")).unwrap();
    path
}

/// A handler that takes `ms` and counts its runs.
fn slow_handlers(ms: u64, runs: Arc<AtomicUsize>) -> Handlers {
    let mut h = Handlers::builtin();
    h.add("slow", move |ctx: HandlerCtx| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(Some(
                Reply::text(format!("done with {}", ctx.msg.msg_id().map_or("?".into(), |id| id.to_string()))).unwrap(),
            ))
        }
    });
    h
}

/// WeChat's retries (sequential and concurrent, within one process and across two sharing a
/// database) get the first call's reply, and the handler runs once.
#[tokio::test]
async fn retries_get_the_first_reply_and_run_the_handler_once() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let dir = temp_dir("routes");
        let mut config = test_config(&db, Mode::Safe);
        config.bot.routes = slow_routes(&dir);
        let runs = Arc::new(AtomicUsize::new(0));
        let a = TestServer::start_with(config.clone(), slow_handlers(300, runs.clone())).await;
        let b = TestServer::start_with(config, slow_handlers(300, runs.clone())).await;

        // Concurrent copies on one instance and on the other.
        let msg = text_message("oRetry", 777, "slow one");
        let (r1, r2, r3) = tokio::join!(a.send(&msg), a.send(&msg), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            b.send(&msg).await
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{backend:?}: handler ran once");
        for r in [&r1, &r2, &r3] {
            assert_eq!(r.0, 200);
            assert_eq!(field(r.1.as_deref().unwrap(), "Content").as_deref(), Some("done with 777"), "{backend:?}");
        }
        // A later retry on either instance: same reply, no new run.
        let (_, later) = b.send(&msg).await;
        assert_eq!(field(later.as_deref().unwrap(), "Content").as_deref(), Some("done with 777"));
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        // One MsgId written three ways is one message: WeChat's id is an integer.
        let spelled = |id: &str| {
            format!(
                "<xml><ToUserName>gh_1</ToUserName><FromUserName>oRetry</FromUserName><CreateTime>1763780001</CreateTime><MsgType>text</MsgType><Content>slow one</Content><MsgId>{id}</MsgId></xml>"
            )
        };
        for id in ["888", " 888 ", "000888"] {
            let (status, reply) = a.send(&spelled(id)).await;
            assert_eq!(status, 200, "{backend:?}: MsgId {id:?}");
            assert_eq!(field(reply.as_deref().unwrap(), "Content").as_deref(), Some("done with 888"), "{id:?}");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2, "{backend:?}: the handler ran once for 888");
        let keys: Vec<String> = wxoa::with_pool!(&a.state.store, pool => sqlx::query_scalar(
            "SELECT dedup_key FROM inbound_messages WHERE msg_id = '888'").fetch_all(pool).await)
        .unwrap();
        assert_eq!(keys, ["m:888"], "{backend:?}");

        // Events deduplicate on FromUserName + CreateTime + Event + EventKey.
        let click = |key: &str| {
            format!(
                "<xml><ToUserName>gh_1</ToUserName><FromUserName>oEv</FromUserName><CreateTime>1763780000</CreateTime><MsgType>event</MsgType><Event>CLICK</Event><EventKey>{key}</EventKey></xml>"
            )
        };
        a.send(&click("about")).await;
        b.send(&click("about")).await;
        a.send(&click("other")).await;
        assert_eq!(wxoa::with_pool!(&a.state.store, pool => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM inbound_messages WHERE openid = 'oEv'").fetch_one(pool).await).unwrap(), 2);

        a.stop().await;
        b.stop().await;
        db.drop_db().await;
    }
}

/// A handler that misses the deadline: WeChat gets `success` in time, a retry neither waits nor
/// runs the handler again, and the reply arrives later as a customer-service message at the
/// (fake) WeChat API through the outbox.
#[tokio::test]
async fn a_slow_handler_is_answered_success_and_delivered_later() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let dir = temp_dir("routes");
        let mut config = test_config(&db, Mode::Safe);
        config.bot.routes = slow_routes(&dir);
        config.bot.reply_deadline_ms = 300;
        let fake = start_fake(&mut config).await;
        let runs = Arc::new(AtomicUsize::new(0));
        let server = TestServer::start_with(config, slow_handlers(900, runs.clone())).await;

        let msg = text_message("oSlow", 4242, "slow please");
        let start = Instant::now();
        let (status, reply) = server.send(&msg).await;
        let took = start.elapsed();
        assert_eq!((status, reply), (200, None), "success at the deadline");
        assert!(took >= Duration::from_millis(290) && took < Duration::from_millis(800), "{took:?}");

        let stored = wxoa::store::messages::find(&server.state.store, "m:4242").await.unwrap().unwrap();
        assert_eq!(stored.outcome.unwrap().outcome, wxoa::store::messages::Outcome::Deferred);

        // WeChat's retry comes while the handler still runs: same answer, no second run.
        let (status, reply) = server.send(&msg).await;
        assert_eq!((status, reply), (200, None));

        let delivered = eventually(5, || !fake.calls_to("/cgi-bin/message/custom/send").is_empty()).await;
        assert!(
            delivered,
            "{backend:?}: the late reply reached the API: calls {:?} jobs {:?}",
            fake.calls(),
            wxoa::jobs::outbox::list(&server.state.store, None, 10).await
        );
        let sent = fake.calls_to("/cgi-bin/message/custom/send");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].body["touser"], "oSlow");
        assert_eq!(sent[0].body["text"]["content"], "done with 4242");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let jobs = wxoa::jobs::outbox::list(&server.state.store, None, 10).await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].dedupe_key, format!("late:{}", stored.id));
        server.stop().await;
        db.drop_db().await;
    }
}

/// A message claimed by an instance that died before answering is taken over by the retry.
#[tokio::test]
async fn a_retry_takes_over_a_message_whose_owner_died() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        config.bot.reply_deadline_ms = 500;
        let server = TestServer::start(config).await;
        let msg = text_message("oOrphan", 9001, "help");
        // The dead instance's claim: 10 s old, no outcome.
        let old = server.state.clock.now_ms() - 10_000;
        wxoa::with_pool!(&server.state.store, pool => sqlx::query(
            "INSERT INTO inbound_messages (dedup_key, openid, msg_type, create_time, encrypted, raw_xml, received_at, claimed_by, claimed_at) \
             VALUES ('m:9001', 'oOrphan', 'text', 1, $1, $2, $3, 'dead-1', $3)")
            .bind(true).bind(msg.clone()).bind(old).execute(pool).await.map(|_| ())).unwrap();
        let (status, reply) = server.send(&msg).await;
        assert_eq!(status, 200);
        assert!(field(reply.as_deref().unwrap(), "Content").unwrap().contains("help"), "{reply:?}");
        let stored = wxoa::store::messages::find(&server.state.store, "m:9001").await.unwrap().unwrap();
        assert_eq!(stored.claimed_by, server.state.bot.instance());
        assert_eq!(stored.outcome.unwrap().rule.as_deref(), Some("help"));
        server.stop().await;
        db.drop_db().await;
    }
}

/// What is stored for a message: raw XML, parsed fields, dedup key, reply, timings.
#[tokio::test]
async fn accepted_messages_are_persisted_with_their_reply() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let server = TestServer::start(test_config(&db, Mode::Safe)).await;
        let msg = text_message("oPersist", 31337, "人工");
        let (_, reply) = server.send(&msg).await;
        assert_eq!(field(reply.as_deref().unwrap(), "MsgType").as_deref(), Some("transfer_customer_service"));
        type Row = (String, String, String, Option<String>, String, i64, String, Option<String>, i64);
        let row: Row = wxoa::with_pool!(&server.state.store, pool => sqlx::query_as(
            "SELECT dedup_key, openid, msg_type, msg_id, raw_xml, received_at, outcome, rule, handled_us FROM inbound_messages")
            .fetch_one(pool).await).unwrap();
        assert_eq!(row.0, "m:31337");
        assert_eq!(row.1, "oPersist");
        assert_eq!(row.2, "text");
        assert_eq!(row.3.as_deref(), Some("31337"));
        assert_eq!(row.4, msg);
        assert!(row.5 > 0);
        assert_eq!(row.6, "replied");
        assert_eq!(row.7.as_deref(), Some("human"));
        assert!(row.8 >= 0);
        server.stop().await;
        db.drop_db().await;
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let db = Db::new(Backend::Sqlite).await;
    let server = TestServer::start(test_config(&db, Mode::Safe)).await;
    assert_eq!(server.get("/healthz").await, (200, "ok".into()));
    assert_eq!(server.get("/readyz").await, (200, "ready".into()));
    server.send(&text_message("oM", 5, "hello")).await;
    // Without server.metrics_token the public port has no /metrics (see tests/hardening.rs for
    // the token and server.metrics_listen); the handle still counts.
    assert_eq!(server.get("/metrics").await.0, 404);
    let metrics = server.state.metrics.render();
    assert!(metrics.contains("wxoa_webhook_answered_total"), "{metrics}");
    server.state.store.close().await;
    assert_eq!(server.get("/readyz").await.0, 503);
    server.stop().await;
}

/// A follow through a store's QR code names the store and attributes the follower to it, once.
#[tokio::test]
async fn a_store_qr_follow_is_attributed_to_the_store() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let server = TestServer::start(test_config(&db, Mode::Safe)).await;
        let stores_csv = std::fs::read_to_string(repo().join("tests/fixtures/stores.csv")).unwrap();
        assert_eq!(wxoa::stores::import(&server.state.store, &stores_csv).await.unwrap(), (5, vec![]));
        let follow = |openid: &str, key: &str, t: i64| {
            format!(
                "<xml><ToUserName>gh_1</ToUserName><FromUserName>{openid}</FromUserName><CreateTime>{t}</CreateTime><MsgType>event</MsgType><Event>subscribe</Event><EventKey>{key}</EventKey></xml>"
            )
        };
        let (_, reply) = server.send(&follow("oStoreFan", "qrscene_store_23", 1)).await;
        assert_eq!(
            field(reply.as_deref().unwrap(), "Content").unwrap(),
            "欢迎来到陆家嘴国金中心店！Welcome to Lujiazui IFC.\n上海市浦东新区世纪大道 8 号\nReply \"help\" (帮助) to see what I can do."
        );
        // Following again later without a scene keeps the first attribution.
        server.send(&follow("oStoreFan", "", 2)).await;
        let row: (Option<i64>, bool) = wxoa::with_pool!(&server.state.store, pool => sqlx::query_as(
            "SELECT store_id, subscribed FROM followers WHERE openid = 'oStoreFan'").fetch_one(pool).await)
        .unwrap();
        assert_eq!(row, (Some(23), true), "{backend:?}");
        // An unknown store still gets a welcome, and no attribution.
        let (_, reply) = server.send(&follow("oLost", "qrscene_store_404", 3)).await;
        assert!(field(reply.as_deref().unwrap(), "Content").unwrap().contains("Welcome"), "{reply:?}");
        let row: (Option<i64>,) = wxoa::with_pool!(&server.state.store, pool => sqlx::query_as(
            "SELECT store_id FROM followers WHERE openid = 'oLost'").fetch_one(pool).await)
        .unwrap();
        assert_eq!(row.0, None);
        // Bad rows in a stores file are reported, good ones kept; a file without name_zh still
        // imports (the store has one name).
        let long = "店".repeat(51);
        let (n, problems) = wxoa::stores::import(
            &server.state.store,
            &format!("id,name,latitude,longitude,name_zh\n40,Chengdu,30.6,104.1,\nx,Nowhere,0,0,\n41,Mars,200,0,\n42,Long,1,1,{long}\n"),
        )
        .await
        .unwrap();
        assert_eq!(
            (n, problems),
            (
                1,
                vec![
                    "line 3: needs a numeric id, latitude and longitude".to_owned(),
                    "line 4: needs a name and coordinates on Earth".to_owned(),
                    "line 5: name_zh must be at most 50 characters on one line".to_owned(),
                ]
            )
        );
        let chengdu = wxoa::stores::get(&server.state.store, 40).await.unwrap().unwrap();
        assert_eq!((chengdu.display_name(), chengdu.chinese_name()), ("Chengdu".to_owned(), "Chengdu"));
        assert_eq!(wxoa::stores::get(&server.state.store, 42).await.unwrap(), None);
        server.stop().await;
        db.drop_db().await;
    }
}

/// "Nearby" means within `stores.nearby_km`: a location far from every store is told how far the
/// nearest one is, a near one gets only the stores within the limit.
#[tokio::test]
async fn nearby_stores_are_those_within_the_limit() {
    let location = |openid: &str, msg_id: u64, lat: f64, lon: f64| {
        format!(
            "<xml><ToUserName>gh_1</ToUserName><FromUserName>{openid}</FromUserName><CreateTime>1</CreateTime><MsgType>location</MsgType><Location_X>{lat}</Location_X><Location_Y>{lon}</Location_Y><Scale>15</Scale><Label>x</Label><MsgId>{msg_id}</MsgId></xml>"
        )
    };
    let content = |reply: Option<String>| field(reply.as_deref().unwrap(), "Content").unwrap();
    for backend in backends() {
        let db = Db::new(backend).await;
        let server = TestServer::start(test_config(&db, Mode::Safe)).await;
        // No stores yet: said so.
        let (_, reply) = server.send(&location("oNear", 1, 31.23, 121.47)).await;
        assert_eq!(content(reply), "暂无门店信息。No stores to show yet.");
        let stores_csv = std::fs::read_to_string(repo().join("tests/fixtures/stores.csv")).unwrap();
        assert_eq!(wxoa::stores::import(&server.state.store, &stores_csv).await.unwrap(), (5, vec![]));
        // Tian'anmen, Beijing: Sanlitun is 5.6 km away; the Shanghai stores, over 1,000 km, are
        // not "nearby" (the default limit is 50 km).
        let (_, reply) = server.send(&location("oNear", 2, 39.9087, 116.3975)).await;
        assert_eq!(
            content(reply),
            "离您最近的门店 / Nearest stores:\n1. 三里屯店 Sanlitun — 5.6 km\n   北京市朝阳区三里屯路 19 号 · 10:00-22:00 · 010-6000-0031"
        );
        // "门店" / "stores" typed: every store by city and name, and how to get the nearest.
        let text = |msg_id: u64, said: &str| text_message("oList", msg_id, said);
        let (_, reply) = server.send(&text(10, "门店")).await;
        let list = content(reply);
        assert!(
            list.starts_with("我们的门店 / Our stores:\n1. 三里屯店 Sanlitun\n   北京市朝阳区三里屯路 19 号"),
            "{list}"
        );
        assert!(list.contains("\n5. ") && !list.contains("\n6. ") && !list.contains("more"), "all five: {list}");
        assert!(list.ends_with("Send your location to see the nearest."), "{list}");
        let (_, reply) = server.send(&text(11, "Stores")).await;
        assert_eq!(content(reply), list, "the English keyword too");
        // Guangzhou: nothing within 50 km; the nearest store and how far it is.
        let (_, reply) = server.send(&location("oFar", 3, 23.1291, 113.2644)).await;
        assert_eq!(
            content(reply),
            "您附近 50 公里内暂无门店。离您最近的是静安嘉里中心店，约 1210 km。\n\
             There is no store within 50 km of you; the nearest is Jing'an Kerry, 1210 km away.\n   \
             上海市静安区南京西路 1515 号 · 10:00-22:00 · 021-6000-0024"
        );
        server.stop().await;

        // stores.nearby_km = 1: from People's Square only the flagship (960 m) is listed, not
        // Xintiandi (1.2 km).
        let mut config = test_config(&db, Mode::Safe);
        config.stores.nearby_km = 1;
        let server = TestServer::start(config).await;
        let (_, reply) = server.send(&location("oNear", 4, 31.230416, 121.473701)).await;
        assert_eq!(
            content(reply),
            "离您最近的门店 / Nearest stores:\n1. 南京路旗舰店 Nanjing Road Flagship — 960 m\n   上海市黄浦区南京东路 100 号 · 10:00-22:00 · 021-6000-0021"
        );
        // Sixty more stores: the list stops within one text reply and says how many it left out.
        let mut many = String::from("id,name,city,address,latitude,longitude,opening_hours,phone,code,name_zh\n");
        for i in 100..160 {
            many.push_str(&format!("{i},Mall {i},Xi'an,西安市雁塔区长安南路 {i} 号,34.2,108.9,10:00-22:00,029-6000-0{i},XA{i},商场 {i} 店\n"));
        }
        wxoa::stores::import(&server.state.store, &many).await.unwrap();
        let (_, reply) = server.send(&text_message("oList", 12, "门店")).await;
        let list = content(reply);
        assert!(list.len() <= 2048, "{} bytes", list.len());
        assert!(list.contains(" more\n发送位置可查看离您最近的门店。"), "{list}");
        server.stop().await;
        db.drop_db().await;
    }
}

/// The balance card and history in the chat, for a bound member.
#[tokio::test]
async fn a_bound_member_gets_a_balance_card_and_history() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let server = TestServer::start(test_config(&db, Mode::Safe)).await;
        let store = &server.state.store;
        wxoa::members::import::import(store, "card,name,phone,points,tier\nC1001,Li Lei,13812345678,1200,gold\n")
            .await
            .unwrap();
        let soon = server.state.clock.now_ms() + 10 * 86_400_000;
        wxoa::with_pool!(store, pool => sqlx::query("UPDATE members SET openid = 'oBound' WHERE card_no = 'C1001'").execute(pool).await.map(|_| ())).unwrap();
        use wxoa::members::points::{self, Change, Kind, Who};
        let mut earn = Change::new("order:9", Who::Card("C1001".into()), Kind::Earn, 300, server.state.clock.now_ms());
        earn.valid_until = Some(soon);
        earn.note = Some("order 9".into());
        let mut tx = store.begin().await.unwrap();
        points::post(&mut tx, &server.state.points_rules(), &[earn]).await.unwrap();
        tx.commit().await.unwrap();
        let click = |key: &str, t: i64| {
            format!(
                "<xml><ToUserName>gh_1</ToUserName><FromUserName>oBound</FromUserName><CreateTime>{t}</CreateTime><MsgType>event</MsgType><Event>CLICK</Event><EventKey>{key}</EventKey></xml>"
            )
        };
        let (_, reply) = server.send(&click("balance", 1)).await;
        let reply = reply.unwrap();
        assert_eq!(field(&reply, "MsgType").as_deref(), Some("news"), "{reply}");
        assert_eq!(field(&reply, "Articles/item/Title").as_deref(), Some("积分 1500 points · gold"));
        let description = field(&reply, "Articles/item/Description").unwrap();
        let day = wxoa::members::ledger::last_day(soon);
        assert!(
            description.contains(&format!("300 points valid until {day}")) && description.contains("C1001"),
            "{description}"
        );
        assert!(field(&reply, "Articles/item/Url").unwrap().ends_with("/h5/start?to=card"));
        // The cover is the shipped image, served by wxoa at h5.public_url + its path.
        let cover = field(&reply, "Articles/item/PicUrl").unwrap();
        assert_eq!(cover, "http://127.0.0.1:8080/h5/static/balance-cover.png");
        let path = cover.strip_prefix("http://127.0.0.1:8080").unwrap();
        let resp = server.client.get(format!("http://{}{path}", server.addr)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "image/png");
        assert_eq!(resp.headers()["cache-control"], "public, max-age=2592000");
        let png = resp.bytes().await.unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() < 50_000, "{} bytes", png.len());
        assert_eq!(png.as_ref(), std::fs::read(repo().join("src/h5/static/balance-cover.png")).unwrap());
        // "积分" typed in the chat is the same question.
        let (_, typed) = server.send(&text_message("oBound", 5150, "我的积分")).await;
        assert_eq!(field(typed.as_deref().unwrap(), "MsgType").as_deref(), Some("news"));

        let (_, history) = server.send(&click("history", 2)).await;
        let content = field(history.as_deref().unwrap(), "Content").unwrap();
        assert!(content.contains("+300 order 9") && content.contains("+1200 导入积分 Imported balance"), "{content}");
        // An entry without a note reads as what its kind means, in both languages.
        let mut tx = store.begin().await.unwrap();
        let till = Change::new("till:1", Who::Card("C1001".into()), Kind::Earn, 40, server.state.clock.now_ms());
        points::post(&mut tx, &server.state.points_rules(), &[till]).await.unwrap();
        tx.commit().await.unwrap();
        let (_, history) = server.send(&click("history", 4)).await;
        let content = field(history.as_deref().unwrap(), "Content").unwrap();
        assert!(content.contains("+40 消费积分 Points earned"), "{content}");
        let (_, bound) = server.send(&click("bind", 3)).await;
        assert!(field(bound.as_deref().unwrap(), "Content").unwrap().contains("Your card C1001 is bound"));
        server.stop().await;

        // bot.balance_cover_url sets another cover.
        let mut config = test_config(&db, Mode::Safe);
        config.bot.balance_cover_url = "https://cdn.example.com/brand/cover.jpg".into();
        let server = TestServer::start(config).await;
        let (_, reply) = server.send(&click("balance", 5)).await;
        assert_eq!(
            field(reply.as_deref().unwrap(), "Articles/item/PicUrl").as_deref(),
            Some("https://cdn.example.com/brand/cover.jpg")
        );
        server.stop().await;
        db.drop_db().await;
    }
}

/// Sends one raw HTTP/1.1 request and returns the response's status.
async fn raw_http(addr: std::net::SocketAddr, request: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}
