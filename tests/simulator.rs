//! `wxoa dev` as a newcomer uses it: the binary starts the server, the fake WeChat and the
//! simulator; a real headless Chromium plays followers. Type "help"; tap the membership menu,
//! enrol in the H5 frame, ask for the balance and see the card; ring up a purchase at the store
//! till and see the points arrive and the CRM hear of it; scan a store's QR code and get
//! its welcome; schedule a push to a tag seconds ahead in the console and see it arrive in the
//! two tagged followers' chats but not in the third's; open the mass-sent article, go on to
//! the stand-in checkout and simulate the payment (the order statuses the shop would post,
//! credited to the push); see each follower's own last exchange; restart `dev` and find the
//! chats still there. Screenshots of each step go to target/test-artifacts/simulator/.

mod common;

use common::browser::Browser;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wxoa");

#[tokio::test]
async fn a_follower_tries_the_account_in_the_simulator() {
    let Some(mut browser) = Browser::start("simulator").await else { return };
    let dir = temp_dir("dev");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let database = format!("sqlite://{}/dev.db", dir.display());
    let fixtures = dir.join("fixtures");
    let dev = start_dev(&dir, port, &database, &fixtures, "dev").await;

    // The banner names the database and how other commands reach it; a command pointed there
    // that way finds the demo member (a command finding no database refuses: tests/cli.rs).
    let banner = std::fs::read_to_string(dir.join("dev.stdout.log")).unwrap();
    assert!(banner.contains(&format!("the database is {database}")), "{banner}");
    assert!(banner.contains(&format!("WXOA_DATABASE__URL={database}")), "{banner}");
    let cli = Command::new(BIN)
        .args(["members", "adjust", "8800123456", "10", "--reason", "goodwill"])
        .env("WXOA_DATABASE__URL", &database)
        .current_dir(repo())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(cli.status.success(), "{out}{}", String::from_utf8_lossy(&cli.stderr));
    assert_eq!(out.trim(), "8800123456: +10 points (goodwill); balance 1210");
    // The log in a file carries no colour codes.
    let log = std::fs::read_to_string(dir.join("dev.stderr.log")).unwrap();
    assert!(log.contains("wxoa dev") && !log.contains('\x1b'), "{log:?}");

    browser.go(&format!("{base}/simulator")).await;
    browser.find("body[data-ready='1']").await;
    assert!(browser.text("#title").await.contains("Amy"));

    // "help" gets the help reply.
    browser.type_into("#text", "help").await;
    browser.click("#send").await;
    let chat = browser.wait_for_text("#chat", "I can help", 10).await;
    assert!(chat.contains("I can help"), "{chat}");
    browser.shot("help").await;

    // The raw exchange, and saving it as a fixture.
    assert!(browser.text("#raw-request").await.contains("<Content><![CDATA[help]]></Content>"));
    browser.type_into("#fixture-name", "text_help_from_simulator").await;
    browser.click("#save-fixture").await;
    browser.wait_for_text("#fixture-result", "saved", 5).await;
    let saved = std::fs::read_to_string(fixtures.join("text_help_from_simulator.xml")).unwrap();
    assert!(saved.contains("<MsgType><![CDATA[text]]></MsgType>"), "{saved}");

    // The membership menu: bind → the link → enrol in the H5 frame (the fake's OAuth signs
    // Amy in).
    browser.click("#menu button[data-menu='0']").await;
    browser.click(".submenu button[data-sub='1']").await;
    let chat = browser.wait_for_text("#chat", "bind your card or join", 10).await;
    assert!(chat.contains("bind your card or join"), "{chat}");
    browser.shot("bind-menu").await;
    browser.click("#chat .row.from-account:last-child a").await;
    browser.enter_frame("#frame").await;
    browser.type_into("#name", "Amy Li").await;
    browser.type_into("#enrol_phone", "13900139000").await;
    browser.click_through("form[action='/h5/enrol'] button").await;
    let page = browser.wait_for_text("body", "WX", 10).await;
    assert!(page.contains("Amy Li") || page.contains("WX"), "{page}");
    browser.leave_frame().await;
    browser.shot("enrolled-card-page").await;
    browser.click("#close-frame").await;

    // Back in the chat: the balance card.
    browser.type_into("#text", "积分").await;
    browser.click("#send").await;
    let chat = browser.wait_for_text("#chat", "points", 10).await;
    assert!(chat.contains("积分 0 points"), "{chat}");
    browser.shot("balance-card").await;

    // The store till: scan Amy's card, ring up ¥128.50 — the signed call a POS makes. Amy is
    // told in the chat, her balance moves, and the CRM panel shows what the CRM heard.
    browser.script("document.getElementById('till-store').value = 'SH21'").await;
    browser.click("#till-scan").await;
    let mut card = serde_json::Value::Null;
    for _ in 0..100 {
        card = browser.script("return document.getElementById('till-card').value").await;
        if card.as_str().is_some_and(|c| !c.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(card.as_str().is_some_and(|c| c.starts_with("WX")), "the follower's card scanned: {card}");
    browser.type_into("#till-amount", "128.50").await;
    browser.click("#till-ring").await;
    let rung = browser.wait_for_text("#till-result", "rung up", 10).await;
    assert!(rung.contains("rung up: 128 points (POS-SH21-"), "{rung}");
    let chat = browser.wait_for_text("#chat", "+128", 10).await;
    assert!(chat.contains("积分变动提醒") && chat.contains("门店消费 Purchase at SH21"), "{chat}");
    // The template message as WeChat shows it: the labels of config/notices.toml, not the
    // field names; first on top, remark at the bottom.
    let card = browser.text("#chat .template:last-of-type").await;
    assert!(card.contains("变动积分 Change：+128") && card.contains("当前积分 Balance：128"), "{card}");
    assert!(!card.contains("keyword") && !card.contains("first") && !card.contains("remark"), "{card}");
    assert!(card.find("积分变动提醒").unwrap() < card.find("变动积分").unwrap(), "first on top: {card}");
    assert!(card.find("当前积分").unwrap() < card.find("Tap to open your card").unwrap(), "remark last: {card}");
    let events = browser.wait_for_text("#crm-events", "points.changed", 10).await;
    assert!(events.contains("member.enrolled") && events.contains("+128 · balance 128"), "{events}");
    browser.shot("till-purchase-and-crm-events").await;
    browser.type_into("#text", "积分").await;
    browser.click("#send").await;
    let chat = browser.wait_for_text("#chat", "积分 128 points", 10).await;
    assert!(chat.contains("积分 128 points"), "{chat}");

    // Scanning a store's QR code: the store's welcome.
    browser.click("#more").await;
    browser.script("document.getElementById('store').value = '21'").await;
    browser.click("#scan").await;
    let chat = browser.wait_for_text("#chat", "Nanjing Road Flagship", 10).await;
    assert!(chat.contains("Welcome to Nanjing Road Flagship"), "{chat}");
    browser.shot("store-welcome").await;

    // Marketing schedules a push to the VIP tag (Amy and Ben, not Chen) in the console.
    let tag = browser.text("#followers").await;
    let vip = tag.split("VIP #").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().to_owned();
    browser.go(&format!("{base}/admin/login")).await;
    browser.type_into("#token", "wxoa-dev-marketing-token").await;
    browser.click_through("#sign-in").await;
    browser.go(&format!("{base}/admin/campaigns/1")).await;
    let at = (chrono::Utc::now() + chrono::Duration::seconds(4))
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    // The simulated followers are the preview's test followers, by name.
    let testers = browser.text("#testers").await;
    assert!(["Amy (oSim…01)", "Ben (oSim…02)", "Chen (oSim…03)"].iter().all(|t| testers.contains(t)), "{testers}");
    let checked = browser.script("return document.querySelectorAll('#testers input:checked').length").await;
    assert_eq!(checked, 3, "all three by default");
    browser.type_into("#push-name", "launch").await;
    let audience = "var a = document.getElementById('audience'); a.value = 'tag'; a.dispatchEvent(new Event('change', {bubbles: true}))";
    browser.script(audience).await;
    // The tag by its name, from WeChat's tag list.
    let picked = browser
        .script("var t = document.getElementById('tag_id'); t.value = [...t.options].find(o => o.text.startsWith('VIP')).value; return t.value")
        .await;
    assert_eq!(picked, vip.as_str());
    browser.script(&format!("document.getElementById('at').value = '{at}'")).await;
    browser.click_through("#schedule").await;
    assert_eq!(browser.text("#notice").await, "推送已排期 Push scheduled");
    browser.shot("console-push-scheduled").await;

    browser.go(&format!("{base}/simulator")).await;
    browser.find("body[data-ready='1']").await;
    let chat = browser.wait_for_text("#chat", "The Limited Edition, tonight", 20).await;
    assert!(chat.contains("The Limited Edition, tonight") && chat.contains("mass send"), "Amy: {chat}");
    // The card shows the campaign's cover (its cover_media_id's image), not a grey box.
    let cover =
        browser.script("return [...document.querySelectorAll('#chat .news .cover')].pop().style.backgroundImage").await;
    assert_eq!(cover.as_str().unwrap(), format!("url(\"{base}/simulator/cover.svg\")"));
    browser.shot("push-in-amy-chat").await;
    for (who, expect) in [("oSim000000000000000000000002", true), ("oSim000000000000000000000003", false)] {
        browser.click(&format!("[data-openid='{who}']")).await;
        let chat = browser.wait_for_text("#chat", "The Limited Edition, tonight", if expect { 10 } else { 2 }).await;
        assert_eq!(chat.contains("The Limited Edition, tonight"), expect, "{who}: {chat}");
        browser.shot(if expect { "push-in-ben-chat" } else { "no-push-in-chen-chat" }).await;
    }

    // The last-exchange panel is the current follower's: Chen has exchanged nothing yet; what
    // Chen sends is not what Amy's panel shows.
    assert_eq!(browser.text("#raw-request").await, "—", "Chen's panel shows no one else's exchange");
    browser.type_into("#text", "hello from Chen").await;
    browser.click("#send").await;
    let raw = browser.wait_for_text("#raw-request", "hello from Chen", 10).await;
    assert!(raw.contains("oSim000000000000000000000003"), "{raw}");
    browser.shot("last-exchange-chen").await;
    browser.click("[data-openid='oSim000000000000000000000001']").await;
    let raw = browser.wait_for_text("#raw-request", "oSim000000000000000000000001", 10).await;
    assert!(raw.contains("store_21") && !raw.contains("hello from Chen"), "Amy's own exchange: {raw}");
    browser.shot("last-exchange-amy").await;

    // The mass-sent article opens as the article; its link goes on to the checkout, where the
    // payment is simulated: created → paid, signed as the shop signs them.
    browser.wait_for_text("#chat", "The Limited Edition, tonight", 10).await;
    browser.click("#chat .news [data-href^='/simulator/article']").await;
    browser.enter_frame("#frame").await;
    let article = browser.wait_for_text("body", "Three hundred numbered pieces", 10).await;
    assert!(
        article.contains("The Limited Edition, tonight at 00:13") && article.contains("阅读原文 Read more"),
        "{article}"
    );
    assert!(!article.contains("Token verified"), "the article, not the checkout: {article}");
    browser.leave_frame().await;
    browser.shot("mass-sent-article").await;
    browser.enter_frame("#frame").await;
    browser.click("#read-more").await;
    let checkout = browser.wait_for_text("body", "Token verified", 15).await;
    assert!(checkout.contains("Limited Edition No. 5") && checkout.contains("模拟支付 Simulate payment"), "{checkout}");
    browser.leave_frame().await;
    browser.shot("stand-in-checkout").await;
    browser.enter_frame("#frame").await;
    browser.click_through("#simulate-payment").await;
    let result = browser.text("#result").await;
    assert!(result.starts_with("支付成功 Paid · 订单 order SIM-"), "{result}");
    browser.leave_frame().await;
    browser.shot("simulated-payment").await;
    browser.click("#close-frame").await;
    let chat = browser.wait_for_text("#chat", "支付成功 / Payment received", 10).await;
    assert!(chat.contains("您的订单已创建 / Your order is placed"), "{chat}");
    assert!(chat.contains("订单号 Order：SIM-") && chat.contains("金额 Amount：¥1,299.00"), "{chat}");
    browser.shot("order-paid-message").await;
    // Credited to the push the article came from.
    let funnel: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/campaigns/1/funnel"))
        .bearer_auth("wxoa-dev-marketing-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(funnel["funnel"]["paid"], 1, "{funnel}");
    assert_eq!(funnel["funnel"]["revenue_fen"], 129_900, "{funnel}");
    assert_eq!(funnel["pushes"][0]["funnel"]["paid"], 1, "credited to the push: {funnel}");

    // Ctrl-C (SIGINT) stops everything cleanly.
    stop(dev).await;

    // A restart on the same database keeps the chats (as it keeps the memberships).
    let dev = start_dev(&dir, port, &database, &fixtures, "restarted").await;
    browser.go(&format!("{base}/simulator")).await;
    browser.find("body[data-ready='1']").await;
    let chat = browser.wait_for_text("#chat", "支付成功 / Payment received", 10).await;
    assert!(chat.contains("I can help") && chat.contains("The Limited Edition, tonight"), "Amy's chat kept: {chat}");
    assert!(chat.contains("订单号 Order：SIM-"), "{chat}");
    browser.shot("chat-after-restart").await;
    // The article still opens, though the fake that kept its draft is a new one.
    browser.click("#chat .news [data-href^='/simulator/article']").await;
    browser.enter_frame("#frame").await;
    let article = browser.wait_for_text("body", "Three hundred numbered pieces", 10).await;
    assert!(article.contains("阅读原文 Read more"), "{article}");
    browser.leave_frame().await;
    browser.click("#close-frame").await;
    browser.click("[data-openid='oSim000000000000000000000003']").await;
    let chat = browser.wait_for_text("#chat", "hello from Chen", 10).await;
    assert!(chat.contains("hello from Chen") && !chat.contains("I can help"), "Chen's chat kept: {chat}");
    browser.call("DELETE", "", serde_json::Value::Null).await;
    stop(dev).await;
}

/// An image uploaded in the console's editor under `dev` shows as the follower will see it: the
/// fake keeps what `media/uploadimg` took and `dev` serves it where `wechat.image_base` points,
/// so the editor, the live preview and a GET of the article's URL all have the very file.
#[tokio::test]
async fn an_editor_image_shows_in_dev() {
    let Some(mut browser) = Browser::start("dev-editor-image").await else { return };
    let dir = temp_dir("dev-image");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let database = format!("sqlite://{}/dev.db", dir.display());
    let dev = start_dev(&dir, port, &database, &dir.join("fixtures"), "dev").await;

    browser.go(&format!("{base}/admin/login")).await;
    browser.type_into("#token", "wxoa-dev-marketing-token").await;
    browser.click_through("#sign-in").await;
    browser.go(&format!("{base}/admin/campaigns/new")).await;
    // A real 1×1 PNG, chosen as a person would in the file dialog.
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
    )
    .unwrap();
    let file = dir.join("dot.png");
    std::fs::write(&file, &png).unwrap();
    let input = browser.find("#image-file").await;
    browser
        .call("POST", &format!("/element/{input}/value"), serde_json::json!({ "text": file.to_str().unwrap() }))
        .await;
    assert_eq!(browser.wait_for_text("#editor-status", "图片已上传", 10).await, "图片已上传 · Image uploaded");
    let src =
        browser.script("return document.querySelector('#content-editor .ql-editor img').getAttribute('src')").await;
    let src = src.as_str().unwrap().to_owned();
    assert!(src.starts_with(&format!("{base}/simulator/mmbiz/mmbiz_png/fake")), "{src}");

    // The editor shows it (the browser decoded the file: 1 pixel wide) …
    let loaded = "const img = document.querySelector('#content-editor .ql-editor img'); \
                  return img.complete ? img.naturalWidth : -1";
    let deadline = Instant::now() + Duration::from_secs(5);
    while browser.script(loaded).await != 1 {
        assert!(Instant::now() < deadline, "the editor's image did not load: {src}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // … the server gives the very bytes back, as WeChat's image host would …
    let got = reqwest::get(&src).await.unwrap();
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.bytes().await.unwrap().as_ref(), png.as_slice());
    let missing = reqwest::get(format!("{base}/simulator/mmbiz/mmbiz_png/fake0/0")).await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    // … and the phone-sized preview shows it too.
    browser.type_into("#title", "Image").await;
    browser.enter_frame("#preview-body").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while browser.script("const i = document.querySelector('img'); return i && i.complete ? i.naturalWidth : -1").await
        != 1
    {
        assert!(Instant::now() < deadline, "the preview's image did not load");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.leave_frame().await;
    browser.shot("editor-image-in-dev").await;
    browser.call("DELETE", "", serde_json::Value::Null).await;
    stop(dev).await;
}

/// The simulator's followers and chats outlive a restart of `dev`, on either database: a
/// follower added and a conversation had before the restart are there after it, with the same
/// bubbles (ids and all), and the page's next bubble follows on from them.
#[tokio::test]
async fn followers_and_chats_outlive_a_restart_on_both_databases() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let dir = temp_dir("dev-restart");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let get = |path: &str| {
            let (http, url) = (http.clone(), format!("{base}{path}"));
            async move { http.get(url).send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
        };
        let post = |path: &str, body: serde_json::Value| {
            let (http, url) = (http.clone(), format!("{base}{path}"));
            async move {
                let r = http.post(url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200, "{backend:?}: {}", r.text().await.unwrap());
            }
        };

        let dev = start_dev(&dir, port, &db.url, &dir.join("fixtures"), "first").await;
        post("/simulator/api/followers", serde_json::json!({ "name": "Dana", "tags": "VIP" })).await;
        let dana = "oSim000000000000000000000004";
        post("/simulator/api/act", serde_json::json!({ "openid": dana, "type": "text", "content": "help" })).await;
        let before = get("/simulator/api/messages?after=0").await["bubbles"].clone();
        let texts: Vec<&str> = before.as_array().unwrap().iter().filter_map(|b| b["body"]["text"].as_str()).collect();
        assert!(texts.len() == 2 && texts[0] == "help" && texts[1].contains("I can help"), "{backend:?}: {before}");
        stop(dev).await;

        let dev = start_dev(&dir, port, &db.url, &dir.join("fixtures"), "second").await;
        let state = get(&format!("/simulator/api/state?openid={dana}")).await;
        let names: Vec<&str> =
            state["followers"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Amy", "Ben", "Chen", "Dana"], "{backend:?}");
        assert!(state["followers"][3]["tags"][0].as_str().unwrap().starts_with("VIP #"), "{backend:?}: {state}");
        assert_eq!(state["last"], serde_json::Value::Null, "{backend:?}: the last exchange is not kept");
        assert_eq!(get("/simulator/api/messages?after=0").await["bubbles"], before, "{backend:?}: the same chat");
        post("/simulator/api/act", serde_json::json!({ "openid": dana, "type": "text", "content": "积分" })).await;
        let after = get("/simulator/api/messages?after=0").await["bubbles"].clone();
        let ids: Vec<u64> = after.as_array().unwrap().iter().map(|b| b["id"].as_u64().unwrap()).collect();
        assert!(ids.len() == 4 && ids.windows(2).all(|w| w[0] < w[1]), "{backend:?}: new bubbles follow on: {ids:?}");
        stop(dev).await;
        db.drop_db().await;
    }
}

/// The stand-in shop's stock screen sets stock as the shop does (a signed `POST /api/v1/stock`):
/// at 0 a follower asking to buy hears "sold out", restocked they get their checkout link; a
/// stock that is not a number, or one the API refuses, is said on the screen and changes nothing.
#[tokio::test]
async fn the_stand_in_shop_sets_stock_and_sold_out_follows() {
    let db = Db::new(Backend::Sqlite).await;
    let dir = temp_dir("dev-shop");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let dev = start_dev(&dir, port, &db.url, &dir.join("fixtures"), "shop").await;
    let screen = async |query: &str| {
        let r = http.get(format!("{base}/simulator/shop{query}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    let set = async |stock: &str| {
        let r = http.post(format!("{base}/simulator/shop")).form(&[("sku", "LE-2026"), ("stock", stock)]);
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 303, "POST, redirect, GET");
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with("/simulator/shop?said="), "{location}");
        screen(location.trim_start_matches("/simulator/shop")).await
    };
    let stock = async || wxoa::shop::product(&wxoa::store::Store::connect(&db.url, 1).await.unwrap(), "LE-2026").await;
    let amy = "oSim000000000000000000000001";
    let buy = async || {
        let r = http
            .post(format!("{base}/simulator/api/act"))
            .json(&serde_json::json!({ "openid": amy, "type": "text", "content": "buy" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let all: serde_json::Value =
            http.get(format!("{base}/simulator/api/messages?after=0")).send().await.unwrap().json().await.unwrap();
        let texts: Vec<String> = all["bubbles"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["openid"] == amy && b["from"] != "follower")
            .filter_map(|b| b["body"]["text"].as_str().map(str::to_owned))
            .collect();
        texts.last().cloned().unwrap_or_default()
    };

    let shown = screen("").await;
    assert!(shown.contains("LE-2026") && shown.contains("库存 stock 300"), "the seeded launch's product: {shown}");
    let shown = set("0").await;
    assert!(shown.contains("已设置 Set: LE-2026 → 0") && shown.contains("售罄 Sold out"), "{shown}");
    assert_eq!(stock().await.unwrap().unwrap().stock, 0);
    let said = buy().await;
    assert!(said.contains("已售罄") && said.contains("is sold out"), "{said}");

    let shown = set("lots").await;
    assert!(shown.contains("库存须为 0 或正整数 Stock is a whole number, 0 or more"), "{shown}");
    let shown = set("-3").await;
    assert!(shown.contains("400 "), "the API's refusal is shown: {shown}");
    assert_eq!(stock().await.unwrap().unwrap().stock, 0, "refused reports change nothing");

    let shown = set("5").await;
    assert!(shown.contains("库存 stock 5"), "{shown}");
    let said = buy().await;
    assert!(said.contains("/simulator/checkout?token="), "restocked, the checkout link: {said}");
    // Each payment at the stand-in checkout sells one: the shop reports the stock one lower.
    // The token is base64url and dots: it stands in the link as it is.
    let token: String = said
        .split("/simulator/checkout?token=")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    let pay = async || {
        let r =
            http.post(format!("{base}/simulator/checkout")).form(&[("token", token.as_str()), ("amount", "1299.00")]);
        r.send().await.unwrap().text().await.unwrap()
    };
    let shown = set("2").await;
    assert!(shown.contains("库存 stock 2"), "{shown}");
    let paid = pay().await;
    assert!(paid.contains("支付成功 Paid") && paid.contains("stock: 200"), "{paid}");
    assert_eq!(stock().await.unwrap().unwrap().stock, 1);
    assert!(pay().await.contains("支付成功 Paid"));
    assert_eq!(stock().await.unwrap().unwrap().stock, 0, "sold out by selling");
    let refused = pay().await;
    assert!(refused.contains("已售罄，商城未接单 Sold out: the shop takes no order"), "{refused}");
    assert_eq!(stock().await.unwrap().unwrap().stock, 0);
    let said = buy().await;
    assert!(said.contains("已售罄") && said.contains("is sold out"), "{said}");
    stop(dev).await;
    db.drop_db().await;
}

/// `wxoa dev` on `port` and `database`, logging to `<dir>/<name>.{stdout,stderr}.log`, once it
/// answers.
async fn start_dev(
    dir: &std::path::Path,
    port: u16,
    database: &str,
    fixtures: &std::path::Path,
    name: &str,
) -> KillOnDrop {
    let base = format!("http://127.0.0.1:{port}");
    let dev = KillOnDrop(
        Command::new(BIN)
            .args(["dev", "--listen", &format!("127.0.0.1:{port}"), "--database", database])
            .arg("--fixtures")
            .arg(fixtures)
            .current_dir(repo())
            .stdout(std::fs::File::create(dir.join(format!("{name}.stdout.log"))).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("{name}.stderr.log"))).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/simulator")).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "wxoa dev did not start; see {}",
            dir.join(format!("{name}.stderr.log")).display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dev
}

/// Ctrl-C (SIGINT): everything stops cleanly, exit 0.
async fn stop(mut dev: KillOnDrop) {
    Command::new("kill").args(["-INT", &dev.0.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = dev.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "wxoa dev did not stop on Ctrl-C");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "wxoa dev exited with {status}");
}
