//! The console's charts, from a follower's taps to the figures drawn: follows, unfollows,
//! messages and menu taps sent through the webhook, a launch push fired through the fake
//! WeChat, link opens, checkouts and an order through the H5 pages and the shop API, the stock
//! running out — then the dashboard's and the campaign page's SVG must carry exactly those
//! figures, on SQLite and PostgreSQL (read from the served HTML), and draw them in headless
//! Chromium (bars as tall or long as their figures; screenshots in
//! target/test-artifacts/charts/).

mod common;

use common::browser::Browser;
use common::h5_browser::through_the_link;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wxoa::wechat::envelope::Mode;

/// Every mark of chart `id` in `html`: (series, label, value).
fn marks(html: &str, id: &str) -> Vec<(String, String, i64)> {
    let start = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no chart {id}"));
    let chart = &html[start..start + html[start..].find("</figure>").unwrap()];
    let attr = |s: &str, name: &str| -> String {
        let at = s.find(&format!("{name}=\"")).map(|i| i + name.len() + 2);
        at.map(|i| s[i..i + s[i..].find('"').unwrap()].to_owned()).unwrap_or_default()
    };
    chart
        .match_indices("data-series=\"")
        .map(|(i, _)| {
            let tag = &chart[i..i + chart[i..].find('>').unwrap()];
            (attr(tag, "data-series"), attr(tag, "data-label"), attr(tag, "data-value").parse().unwrap())
        })
        .collect()
}

fn sum(marks: &[(String, String, i64)], series: &str) -> i64 {
    marks.iter().filter(|m| m.0 == series).map(|m| m.2).sum()
}

fn value(marks: &[(String, String, i64)], label: &str) -> Option<i64> {
    marks.iter().find(|m| m.1 == label).map(|m| m.2)
}

/// A console page as the signed-in marketing staff get it.
async fn page(server: &TestServer, cookie: &str, path: &str) -> String {
    let resp =
        server.client.get(format!("http://{}{path}", server.addr)).header("cookie", cookie).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    resp.text().await.unwrap()
}

#[tokio::test]
async fn the_charts_draw_what_happened() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        config.campaigns.poll_ms = 100;
        config.followers.catch_up_ms = 100;
        let fake = start_fake(&mut config).await;
        config.h5.oauth_base = config.wechat.api_base.clone();
        let server = TestServer::start(config).await;
        fake.set_webhook(Some(server.url.clone()));
        let public_url = server.state.config.h5.public_url.trim_end_matches('/').to_owned();

        // Three follow, one leaves; five messages; four taps of History, two of My card (a VIEW).
        let t = server.state.clock.now_ms() / 1000;
        let mut xml = Vec::new();
        for (i, who) in ["oChartA", "oChartB", "oChartC"].iter().enumerate() {
            xml.push(event_message(who, "subscribe", "", t + i as i64));
        }
        xml.push(event_message("oChartC", "unsubscribe", "", t + 10));
        for i in 0..5 {
            xml.push(text_message("oChartA", 7_100_000 + i, "hello"));
        }
        for i in 0..4 {
            xml.push(event_message("oChartB", "CLICK", "history", t + 20 + i));
        }
        for i in 0..2 {
            xml.push(event_message("oChartA", "VIEW", &format!("{public_url}/h5/start?to=card"), t + 30 + i));
        }
        for x in &xml {
            assert_eq!(server.send(x).await.0, 200, "{x}");
        }
        // WeChat's side of it: who follows now.
        fake.follow("oChartA");
        fake.follow("oChartB");

        // A launch with two in stock, pushed to everyone now.
        let body = json!({
            "name": "Launch",
            "product": { "sku": "LE-CHART", "name": "Limited Edition No. 7", "stock": 2 },
            "articles": [{ "title": "Tonight", "digest": "2 pieces", "content": "<p>00:13</p>",
                           "cover_media_id": "THUMB_1", "cover_url": "https://example.com/c.jpg" }]
        });
        let base = server.addr.to_string();
        let (status, created) = api_call(&base, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(body)).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_i64().unwrap();
        let at = chrono::Utc::now() + chrono::Duration::seconds(1);
        let push =
            json!({ "name": "launch", "msg_type": "mpnews", "audience": { "type": "all" }, "at": at.to_rfc3339() });
        let path = format!("/api/v1/campaigns/{id}/pushes");
        let (status, scheduled) = api_call(&base, "POST", &path, Some(MARKETING_TOKEN), Some(push)).await;
        assert_eq!(status, 201, "{scheduled}");
        let push = scheduled["id"].as_i64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let sent = loop {
            let (_, f) =
                api_call(&base, "GET", &format!("/api/v1/campaigns/{id}/funnel"), Some(MARKETING_TOKEN), None).await;
            if f["sent"].as_i64().unwrap_or(0) > 0 {
                break f["sent"].as_i64().unwrap();
            }
            assert!(Instant::now() < deadline, "the push fired and WeChat reported it: {f}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };

        // Two open the article (A twice), each gets a checkout; A pays; the stock runs out.
        let link = format!("/buy/{id}?p={push}");
        let token = through_the_link(&server, &link, "oChartA").await;
        through_the_link(&server, &link, "oChartA").await;
        through_the_link(&server, &link, "oChartB").await;
        for status in ["created", "paid"] {
            let order = json!({"order_id": "SO-CHART", "status": status, "openid": "oChartA", "sku": "LE-CHART",
                               "amount_fen": 99900, "checkout_token": token});
            assert_eq!(shop(&server, "/api/v1/orders", order).await.0, 202);
        }
        assert_eq!(shop(&server, "/api/v1/stock", json!({"sku": "LE-CHART", "stock": 0})).await.0, 200);

        // Signed in as marketing, the pages carry the figures (the activity reader runs behind
        // the log: on PostgreSQL it leaves the last two seconds for the next read).
        let cookie = console_sign_in(server.addr, MARKETING_TOKEN).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        let dashboard = loop {
            let html = page(&server, &cookie, "/admin").await;
            let taps = marks(&html, "chart-taps");
            if value(&taps, "会员 Member / 我的会员卡 My card") == Some(2) || Instant::now() > deadline {
                break html;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let follows = marks(&dashboard, "chart-follows");
        assert_eq!((sum(&follows, "关注 follows"), sum(&follows, "取关 unfollows")), (3, 1), "{follows:?}");
        let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).format("%m-%d").to_string();
        assert_eq!(
            follows.iter().filter(|m| m.1 == today).map(|m| (m.0.as_str(), m.2)).collect::<Vec<_>>(),
            [("关注 follows", 3), ("取关 unfollows", 1)],
            "all today"
        );
        assert_eq!(follows.iter().filter(|m| m.0 == "关注 follows").count(), 14, "a column a day for 14 days");
        let messages = marks(&dashboard, "chart-messages");
        assert_eq!((sum(&messages, "消息 messages"), messages.len()), (5, 48), "{messages:?}");
        let taps = marks(&dashboard, "chart-taps");
        assert_eq!(
            taps.iter().map(|m| (m.1.as_str(), m.2)).collect::<Vec<_>>(),
            [("会员 Member / 消费记录 History", 4), ("会员 Member / 我的会员卡 My card", 2)],
            "named as the menu names them, most tapped first"
        );

        let campaign = page(&server, &cookie, &format!("/admin/campaigns/{id}")).await;
        let funnel = marks(&campaign, "chart-funnel");
        assert_eq!(
            funnel.iter().map(|m| (m.1.as_str(), m.2)).collect::<Vec<_>>(),
            [
                ("送达 sent", sent),
                ("链接打开 link opens", 3),
                ("打开粉丝 followers who opened", 2),
                ("结账 checkouts", 3),
                ("订单 orders", 1),
                ("付款 paid", 1)
            ],
            "the funnel as bars"
        );
        let delivery = marks(&campaign, "chart-delivery");
        assert_eq!(
            delivery.iter().map(|m| (m.0.as_str(), m.1.as_str(), m.2)).collect::<Vec<_>>(),
            [
                ("目标 aimed at", "launch", 2),
                ("过滤后 after WeChat filters", "launch", 2),
                ("送达 sent", "launch", sent),
                ("错误 errors", "launch", 0)
            ],
            "WeChat's report on the push"
        );
        let night = marks(&campaign, "chart-night");
        assert_eq!(
            night.iter().map(|m| (m.0.as_str(), m.2)).collect::<Vec<_>>(),
            [("打开 opens", 3), ("结账 checkouts", 3), ("付款 paid", 1)],
            "the night's per-minute lanes"
        );
        assert!(campaign.contains("class=\"mark\" data-label=\"售罄 sold out "), "the sold-out moment is marked");
        assert!(campaign.contains("id=\"sold-out\">售罄 Sold out</span>"), "the sold-out badge on the campaign page");
        let dashboard = page(&server, &cookie, "/admin").await;
        assert!(dashboard.contains("<span class=\"badge soldout\">售罄 Sold out</span>"), "and on the campaign list");

        if backend == Backend::Sqlite
            && let Some(mut browser) = Browser::start("charts").await
        {
            drawn_in_chromium(&mut browser, &server, id).await;
        }
        server.stop().await;
        db.drop_db().await;
    }
}

/// The same pages in Chromium: each mark is drawn with a size that follows its figure.
async fn drawn_in_chromium(browser: &mut Browser, server: &TestServer, id: i64) {
    let base = format!("http://{}", server.addr);
    browser.go(&format!("{base}/admin/login")).await;
    browser.type_into("#token", MARKETING_TOKEN).await;
    browser.click_through("#sign-in").await;
    let sizes = |chart: &str, dim: &str| {
        format!(
            "return [...document.querySelectorAll('#{chart} rect[data-value]')].map(e => [e.dataset.label, +e.dataset.value, Math.round(e.getBBox().{dim})])"
        )
    };
    let taps = browser.script(&sizes("chart-taps", "width")).await;
    assert_eq!(taps[0][1], 4, "{taps}");
    assert_eq!(taps[0][2], 320, "the longest bar spans the plot: {taps}");
    assert_eq!(taps[1][2], 160, "half the taps, half the length: {taps}");
    let follows = browser.script(&sizes("chart-follows", "height")).await;
    let drawn: Vec<&Value> = follows.as_array().unwrap().iter().filter(|m| m[2].as_i64() > Some(0)).collect();
    assert_eq!(drawn.len(), 2, "today's two columns are drawn, the empty days are not: {follows}");
    assert_eq!((drawn[0][2].as_i64(), drawn[1][2].as_i64()), (Some(162), Some(54)), "3 : 1");
    browser.shot("dashboard").await;

    browser.go(&format!("{base}/admin/campaigns/{id}")).await;
    let funnel = browser.script(&sizes("chart-funnel", "width")).await;
    let width = |label: &str| funnel.as_array().unwrap().iter().find(|m| m[0] == label).unwrap()[2].as_i64().unwrap();
    assert_eq!(width("链接打开 link opens"), width("结账 checkouts"));
    // One scale for every bar: 3 opens, 2 followers, 1 paid.
    let third = width("链接打开 link opens") as f64 / 3.0;
    for (label, n) in [("打开粉丝 followers who opened", 2.0), ("付款 paid", 1.0)] {
        assert!((width(label) as f64 - third * n).abs() <= 1.0, "{label}: {funnel}");
    }
    assert_eq!(width("订单 orders"), width("付款 paid"));
    let lanes = browser
        .script(
            "return [...document.querySelectorAll('#chart-night g[data-series]')].map(g => [g.dataset.series, +g.dataset.value, Math.round(g.querySelector('path').getBBox().height)])",
        )
        .await;
    assert_eq!(
        lanes,
        json!([["打开 opens", 3, 54], ["结账 checkouts", 3, 54], ["付款 paid", 1, 54]]),
        "each lane to its own peak"
    );
    let mark = browser.script("return document.querySelector('#chart-night .mark text').textContent").await;
    assert!(mark.as_str().unwrap().starts_with("售罄 sold out "), "{mark}");
    browser.script("document.getElementById('results').scrollIntoView()").await;
    browser.shot("campaign-results").await;
    browser.call("DELETE", "", Value::Null).await;
}
