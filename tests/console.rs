//! The marketing console clicked through in a real headless Chromium (Debian's chromium and
//! chromedriver, which `.ci/run` installs), spoken to over the W3C WebDriver protocol: sign in,
//! create a campaign watching the live preview, send a preview to a test follower, schedule a
//! push seconds ahead and see it fire with its delivery figures on the timeline. Screenshots of
//! each step go to target/test-artifacts/console/.

mod common;

use common::browser::Browser;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};
use wxoa::wechat::envelope::Mode;

/// The article body's editor (Quill, over the `content` textarea).
const EDITOR: &str = "#content-editor .ql-editor";
/// Ctrl+B, then the modifier released (WebDriver's key codes for Control and "release all").
const BOLD: &str = "\u{E009}b\u{E000}";
const ENTER: &str = "\u{E007}";

/// Types `text` into `css` where its caret is (without clearing it first).
async fn send_keys(browser: &Browser, css: &str, text: &str) {
    let e = browser.find(css).await;
    browser.call("POST", &format!("/element/{e}/value"), serde_json::json!({ "text": text })).await;
}

#[tokio::test]
async fn console_main_path_in_a_real_browser() {
    let Some(mut browser) = Browser::start("console").await else { return };
    let db = Db::new(Backend::Sqlite).await;
    let mut config = test_config(&db, Mode::Safe);
    config.campaigns.poll_ms = 100;
    config.campaigns.test_openids = vec!["oTester1".into()];
    let fake = start_fake(&mut config).await;
    let server = TestServer::start(config).await;
    fake.set_webhook(Some(server.url.clone()));
    let base = format!("http://{}", server.addr);

    // Signed out: the login page. A wrong token is refused, the right one signs in.
    browser.go(&format!("{base}/admin")).await;
    assert!(browser.script("return location.pathname").await == "/admin/login");
    browser.type_into("#token", "wrong-token").await;
    browser.click_through("#sign-in").await;
    assert_eq!(browser.text("#error").await, "令牌无效 Unknown token.");
    browser.shot("login-refused").await;
    browser.type_into("#token", MARKETING_TOKEN).await;
    browser.click_through("#sign-in").await;
    assert!(browser.text("header").await.contains("test-marketing"));
    browser.shot("dashboard-empty").await;

    // A campaign, its article previewed live as it is typed.
    browser.click_through("header a[href='/admin/campaigns/new']").await;
    browser.type_into("#name", "Limited Edition launch").await;
    browser.type_into("#sku", "LE-2026").await;
    browser.type_into("#stock", "300").await;
    browser.type_into("#title", "The Limited Edition, tonight").await;
    browser.type_into("#digest", "300 pieces, numbered.").await;
    browser.type_into("#cover_media_id", "THUMB_1").await;
    // The body in the editor: typed, "00:13" made bold with Ctrl+B.
    send_keys(&browser, EDITOR, &format!("Launching at {BOLD}00:13{BOLD}.")).await;
    assert_eq!(browser.text("#preview-title").await, "The Limited Edition, tonight");
    assert_eq!(browser.text("#preview-digest").await, "300 pieces, numbered.");
    let body = browser.script("return document.getElementById('preview-body').srcdoc").await;
    assert!(body.as_str().unwrap().contains("<p>Launching at <strong>00:13</strong>.</p>"), "{body}");
    browser.shot("article-live-preview").await;
    browser.click_through("#create").await;
    assert_eq!(browser.text("#notice").await, "活动已创建 Campaign created");

    // A preview to the test follower.
    browser.click_through("#send-preview").await;
    assert_eq!(browser.text("#notice").await, "预览已发送给 1/1 位测试粉丝 Preview sent to 1 of 1 test follower(s)");
    assert_eq!(fake.calls_to("/cgi-bin/message/mass/preview")[0].body["touser"], "oTester1");
    browser.shot("preview-sent").await;

    // A push a few seconds ahead (local time in the page's zone, Asia/Shanghai).
    let at = (chrono::Utc::now() + chrono::Duration::seconds(4))
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    browser.type_into("#push-name", "launch").await;
    browser.script(&format!("document.getElementById('at').value = '{at}'")).await;
    browser.click_through("#schedule").await;
    assert_eq!(browser.text("#notice").await, "推送已排期 Push scheduled");
    assert!(browser.text("#pushes").await.contains("scheduled"));
    browser.shot("push-scheduled").await;

    // It fires; WeChat's figures show on the campaign page and the dashboard's timeline.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pushes = String::new();
    while Instant::now() < deadline {
        browser.script("window.__before_click = true").await;
        browser.script("location.reload()").await;
        while browser.script("return !window.__before_click && document.readyState === 'complete'").await != true {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pushes = browser.text("#pushes").await;
        if pushes.contains("finished") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(pushes.contains("fired") && pushes.contains("finished") && pushes.contains("sent 1 / 1"), "{pushes}");
    assert_eq!(fake.calls_to("/cgi-bin/message/mass/sendall").len(), 1);
    browser.shot("push-fired").await;
    browser.click_through("header a[href='/admin']").await;
    let timeline = browser.text("#timeline").await;
    assert!(timeline.contains("Limited Edition launch") && timeline.contains("sent 1 / 1"), "{timeline}");
    browser.shot("timeline").await;

    // Forms from elsewhere: without the sign-in cookie they go to the login page; with the
    // cookie (a browser sends it along) but without this session's form token, 403.
    let cookie = browser.call("GET", "/cookie/wxoa_admin", Value::Null).await;
    let cookie = format!("wxoa_admin={}", cookie["value"].as_str().unwrap());
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = [("name", "x"), ("title", "t"), ("form_token", "forged")];
    let url = format!("{base}/admin/campaigns");
    let resp = http.post(&url).form(&form).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 303, "no cookie: sent to sign in");
    let resp = http.post(&url).header("cookie", &cookie).form(&form).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403, "a cookie but a forged form token");
    // The follower simulator belongs to `wxoa dev` only.
    assert_eq!(server.get("/simulator").await.0, 404);
    assert_eq!(server.get("/simulator/api/state").await.0, 404);
    let campaigns = wxoa::campaigns::list(&server.state.store, 10).await.unwrap();
    assert_eq!(campaigns.len(), 1, "nothing created by the forged forms");

    // Signing out ends the session on the server: the copied cookie no longer gets in.
    browser.click_through("#sign-out").await;
    assert!(browser.script("return location.pathname").await == "/admin/login");
    let resp = http.get(format!("{base}/admin")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 303, "signed out: a copy of the cookie is sent to sign in");

    browser.call("DELETE", "", Value::Null).await;
    server.stop().await;
    db.drop_db().await;
}

/// A reply written in the console: previewed in the phone frame (nothing stored), created,
/// answering the next message without a restart, a broken edit refused with its reason (the
/// old reply still answers), a good edit saved with its history.
#[tokio::test]
async fn a_reply_written_previewed_and_edited_in_the_console() {
    let Some(mut browser) = Browser::start("console-replies").await else { return };
    let db = Db::new(Backend::Sqlite).await;
    let config = test_config(&db, Mode::Safe);
    let server = TestServer::start(config).await;
    let base = format!("http://{}", server.addr);
    let ask = |n: u64, text: &str| text_message("oHoursFan", 8_200_000 + n, text);
    let (_, before) = server.send(&ask(1, "what are your opening hours?")).await;
    let before = field(&before.unwrap(), "Content").unwrap();

    browser.go(&format!("{base}/admin/login")).await;
    browser.type_into("#token", MARKETING_TOKEN).await;
    browser.click_through("#sign-in").await;
    browser.click_through("header a[href='/admin/replies']").await;
    assert!(browser.text("#no-replies").await.contains("config/routes.toml"));
    assert_eq!(browser.script("return document.documentElement.lang").await, "zh-CN");
    browser.type_into("#reply-name", "opening-hours").await;
    browser.script("document.getElementById('priority').value = '200'").await;
    browser.type_into("#match_value", "opening hours\n营业时间").await;
    browser.type_into("#reply-text", "We open 10:00-22:00 every day.").await;
    browser.type_into("#sample", "what are your opening hours?").await;
    browser.click_through("#preview-reply").await;
    assert_eq!(browser.text("#preview-text").await, "We open 10:00-22:00 every day.");
    assert_eq!(browser.text("#preview-verdict").await, "回复规则 Answered by console:opening-hours.");
    assert_eq!(browser.script("return document.getElementById('reply-name').value").await, "opening-hours");
    assert!(wxoa::replies::list(&server.state.store).await.unwrap().is_empty(), "a preview stores nothing");
    browser.shot("reply-previewed").await;

    browser.click_through("#save-reply").await;
    assert_eq!(browser.text("#notice").await, "回复已创建，即刻生效 Reply created: it answers from now on");
    let (_, after) = server.send(&ask(2, "what are your opening hours?")).await;
    assert_eq!(field(&after.unwrap(), "Content").unwrap(), "We open 10:00-22:00 every day.");
    assert_ne!(before, "We open 10:00-22:00 every day.", "it answered otherwise before");
    browser.shot("reply-created").await;

    // A broken pattern: refused with the reason, the form kept, the stored reply unchanged.
    browser.script("document.getElementById('match_kind').value = 'regex'").await;
    browser.script("document.getElementById('match_value').value = 'hours ('").await;
    browser.click_through("#save-reply").await;
    assert!(browser.text("#error").await.contains("bad regex"), "{}", browser.text("#error").await);
    assert_eq!(browser.script("return document.getElementById('match_value').value").await, "hours (");
    let stored = wxoa::replies::list(&server.state.store).await.unwrap();
    assert_eq!((stored.len(), stored[0].version), (1, 1), "nothing changed");
    let (_, still) = server.send(&ask(3, "opening hours?")).await;
    assert_eq!(field(&still.unwrap(), "Content").unwrap(), "We open 10:00-22:00 every day.");
    browser.shot("reply-refused").await;

    // A good edit: saved as version 2, with the history below.
    browser.go(&format!("{base}/admin/replies/{}", stored[0].id)).await;
    browser.script("document.getElementById('reply-text').value = 'Open 10:00-23:00 tonight.'").await;
    browser.click_through("#save-reply").await;
    assert_eq!(browser.text("#notice").await, "已保存，新版本即刻生效 Saved: the new version answers from now on");
    let history = browser.text("#history").await;
    assert!(history.contains("v2 updated") && history.contains("v1 created"), "{history}");
    assert!(history.contains("test-marketing"), "{history}");
    let (_, edited) = server.send(&ask(4, "营业时间")).await;
    assert_eq!(field(&edited.unwrap(), "Content").unwrap(), "Open 10:00-23:00 tonight.");
    browser.shot("reply-history").await;

    browser.call("DELETE", "", Value::Null).await;
    server.stop().await;
    db.drop_db().await;
}

/// The segment builder (a live count before anything is stored, a bad rule refused with its
/// reason, the segment synced to a WeChat tag in the fake with its status shown) and the
/// follower directory (openids masked for marketing, one follower's history and card).
#[tokio::test]
async fn segments_and_followers_in_the_console() {
    let Some(mut browser) = Browser::start("console-audiences").await else { return };
    let db = Db::new(Backend::Sqlite).await;
    let mut config = test_config(&db, Mode::Safe);
    config.followers.catch_up_ms = 100;
    let fake = start_fake(&mut config).await;
    let server = TestServer::start(config).await;
    let base = format!("http://{}", server.addr);
    let t = server.state.clock.now_ms() / 1000;
    for (i, who) in ["oSegmentFanA", "oSegmentFanB"].iter().enumerate() {
        fake.follow(who);
        assert_eq!(server.send(&event_message(who, "subscribe", "", t + i as i64)).await.0, 200);
    }
    assert_eq!(server.send(&text_message("oSegmentFanA", 8_300_001, "hello")).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while wxoa::followers::counts(&server.state.store).await.unwrap().0 < 2 {
        assert!(Instant::now() < deadline, "the directory read the follows");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    browser.go(&format!("{base}/admin/login")).await;
    browser.type_into("#token", MARKETING_TOKEN).await;
    browser.click_through("#sign-in").await;
    browser.click_through("header a[href='/admin/segments']").await;
    browser.type_into("#segment-name", "Launch fans").await;
    browser.type_into("#min_points", "lots").await;
    browser.click_through("#count-segment").await;
    assert_eq!(browser.text("#error").await, "min_points: \"lots\" 不是整数 is not a whole number");
    browser.script("document.getElementById('min_points').value = ''").await;
    browser.click_through("#count-segment").await;
    assert_eq!(
        browser.text("#live-count").await,
        "这些规则当前包含 2 位粉丝（2 位关注中）These rules take 2 followers now (2 following)."
    );
    assert!(wxoa::audiences::list(&server.state.store).await.unwrap().is_empty(), "counting stores nothing");
    browser.shot("segment-counted").await;
    browser.click_through("#create-segment").await;
    assert_eq!(browser.text("#notice").await, "分组已创建 Segment created");
    assert_eq!(browser.text("#segments .count").await, "2");
    assert_eq!(browser.text("#segments .sync").await, "从未同步 never synced");

    browser.click_through("#segments .sync-now").await;
    assert_eq!(
        browser.text("#notice").await,
        "正在同步到微信标签，状态见下方 Syncing to its WeChat tag: the status below follows it"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = String::new();
    while Instant::now() < deadline {
        browser.go(&format!("{base}/admin/segments")).await;
        status = browser.text("#segments .sync").await;
        if status.starts_with("完成 done") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(status.starts_with("完成 done +2 −0"), "{status}");
    let tag = fake.tags().into_iter().find(|(_, name)| name == "Launch fans").expect("the tag was made").0;
    assert_eq!((fake.tags_of("oSegmentFanA"), fake.tags_of("oSegmentFanB")), (vec![tag], vec![tag]));
    browser.shot("segment-synced").await;

    // The directory: masked openids for marketing; one follower's page.
    browser.click_through("header a[href='/admin/followers']").await;
    let list = browser.text("#followers").await;
    assert!(list.contains("oSeg…nA") && !list.contains("oSegmentFanA"), "{list}");
    browser.click_through("#followers a").await;
    assert_eq!(browser.text("#follower-openid").await, "oSeg…nA");
    assert_eq!(browser.text("#follower-state").await, "关注中 following");
    let interactions = browser.text("#interactions").await;
    assert!(interactions.contains("subscribe") && interactions.contains("text"), "{interactions}");
    browser.shot("follower").await;

    browser.call("DELETE", "", Value::Null).await;
    server.stop().await;
    db.drop_db().await;
}

/// Signing in takes a form this browser loaded; signing out ends the session on the server: the
/// same cookie (a copy left in another browser, or one taken from this one) is sent to the login
/// page afterwards. A sign-out posted from elsewhere (without the session's form token) is
/// refused and ends nothing. Both databases.
#[tokio::test]
async fn console_sign_in_and_out_cannot_be_forged_and_sign_out_revokes() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let server = TestServer::start(test_config(&db, Mode::Safe)).await;
        let base = format!("http://{}", server.addr);
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

        // A sign-in form posted from elsewhere (no login cookie, or a token not made for it) signs
        // nobody in: login CSRF would put a victim's browser in the attacker's session.
        for (cookie, login_token) in [(None, ""), (Some("wxoa_admin_login=0123"), "forged")] {
            let mut post = http.post(format!("{base}/admin/login"));
            if let Some(c) = cookie {
                post = post.header("cookie", c);
            }
            let resp = post.form(&[("token", MARKETING_TOKEN), ("login_token", login_token)]).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 403);
            assert!(
                resp.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("wxoa_admin="))
            );
            assert!(
                resp.text()
                    .await
                    .unwrap()
                    .contains("表单已过期，请重新登录 This form has expired; please sign in again.")
            );
        }
        let cookie = console_sign_in(server.addr, MARKETING_TOKEN).await;
        // The cookie is an opaque id: nothing of the token, the role or the expiry; the database
        // holds its SHA-256, not the id.
        let id = cookie.strip_prefix("wxoa_admin=").unwrap().to_owned();
        assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{cookie}");
        assert!(!cookie.contains(&wxoa::admin::hash_token(MARKETING_TOKEN)));
        let sessions = || async {
            wxoa::with_pool!(&server.state.store, pool => sqlx::query_scalar::<_, String>(
                "SELECT id_hash FROM console_sessions").fetch_all(pool).await)
            .unwrap()
        };
        assert_eq!(sessions().await, [wxoa::admin::hash_token(&id)]);
        let page = |cookie: String| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let resp = http.get(format!("{base}/admin")).header("cookie", cookie).send().await.unwrap();
                let status = resp.status().as_u16();
                let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
                (status, location, resp.text().await.unwrap())
            }
        };
        let (status, _, html) = page(cookie.clone()).await;
        assert_eq!(status, 200, "signed in");
        let token = html.split("name=\"form_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

        let logout = |form_token: String| {
            let (http, base, cookie) = (http.clone(), base.clone(), cookie.clone());
            async move {
                let resp = http
                    .post(format!("{base}/admin/logout"))
                    .header("cookie", cookie)
                    .form(&[("form_token", form_token)])
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            }
        };
        let (status, html) = logout("forged".into()).await;
        assert_eq!(
            (status, message_of(&html)),
            (403, "<h1>表单无效 Invalid form</h1><p>表单无效，请刷新页面 invalid form; reload the page</p>"),
            "{html}"
        );
        assert_eq!(page(cookie.clone()).await.0, 200, "a foreign sign-out ends nothing");

        // The cookie twice (a copy planted beside the real one): neither is trusted.
        let (status, location, _) = page(format!("{cookie}; {cookie}")).await;
        assert_eq!((status, location.as_deref()), (303, Some("/admin/login")), "two session cookies");
        // An id that was never issued, and one of the wrong shape.
        for forged in ["wxoa_admin=".to_owned() + &"a".repeat(64), "wxoa_admin=x'--".to_owned()] {
            assert_eq!(page(forged.clone()).await.1.as_deref(), Some("/admin/login"), "{forged}");
        }

        let (status, _) = logout(token).await;
        assert_eq!(status, 303);
        let (status, location, _) = page(cookie.clone()).await;
        assert_eq!((status, location.as_deref()), (303, Some("/admin/login")), "the old cookie no longer gets in");
        assert_eq!(sessions().await, Vec::<String>::new(), "signing out deletes the session");

        // A fresh sign-in is a new session and gets in.
        let fresh = console_sign_in(server.addr, MARKETING_TOKEN).await;
        assert_ne!(fresh, cookie);
        assert_eq!(page(fresh.clone()).await.0, 200);

        // A session ends at admin.session_ttl_secs (12 h); the hourly housekeeping, woken by
        // the clock's move, then deletes it.
        let now = server.state.clock.now_ms();
        assert_eq!(wxoa::admin::console::purge_sessions(&server.state.store, now, 1000).await.unwrap(), 0);
        assert_eq!(sessions().await.len(), 1);
        server.state.clock.advance(12 * 3600 * 1000);
        assert_eq!(page(fresh).await.1.as_deref(), Some("/admin/login"), "ended at its TTL");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sessions().await.is_empty() {
            assert!(Instant::now() < deadline, "{backend:?}: the housekeeping deletes the ended session");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.stop().await;
        db.drop_db().await;
    }
}

/// The message of a console page that is one (`message.html`: a title and a sentence), with the
/// console's layout checked around it.
fn message_of(html: &str) -> &str {
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(
        html.contains("<a href=\"/admin\"><strong>wxoa</strong> 控制台 console</a>"),
        "the console's layout: {html}"
    );
    html.split("<section>").nth(1).and_then(|rest| rest.split("</section>").next()).unwrap_or_else(|| panic!("{html}"))
}

/// What the console answers instead of a page is a page of its own in the console's layout:
/// an unknown campaign, article, push, reply, segment or follower is a 404 saying which; a form
/// from elsewhere a 403; and a database that stops answering a 503 "try again" page — to a
/// signed-in member of staff and at sign-in alike — never the login form. Both databases.
#[tokio::test]
async fn console_errors_are_pages_in_its_layout() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let server = TestServer::start(test_config(&db, Mode::Safe)).await;
        let base = format!("http://{}", server.addr);
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let cookie = console_sign_in(server.addr, MARKETING_TOKEN).await;
        let answer = |resp: reqwest::Response| async move {
            let status = resp.status().as_u16();
            let kind = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
            let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
            (status, kind, location, resp.text().await.unwrap())
        };
        let get = |path: &str| {
            let request = http.get(format!("{base}{path}")).header("cookie", &cookie);
            async move { answer(request.send().await.unwrap()).await }
        };
        let post = |path: &str, form: &[(&str, &str)]| {
            let request = http.post(format!("{base}{path}")).header("cookie", &cookie).form(form);
            async move { answer(request.send().await.unwrap()).await }
        };
        let html = Some("text/html; charset=utf-8".to_owned());

        let (status, _, _, dashboard) = get("/admin").await;
        assert_eq!(status, 200, "{dashboard}");
        let token =
            dashboard.split("name=\"form_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        let input: wxoa::campaigns::CampaignInput = serde_json::from_value(serde_json::json!({
            "name": "One article", "articles": [{ "title": "The first", "cover_media_id": "THUMB_1" }]
        }))
        .unwrap();
        let created = wxoa::campaigns::create(&server.state.store, &input).await.unwrap();
        let article_2 = format!("/admin/campaigns/{}/articles/2", created.id);

        for (path, what) in [
            ("/admin/campaigns/999999", "没有这个活动 No such campaign"),
            ("/admin/campaigns/999999/articles", "没有这个活动 No such campaign"),
            (&article_2, "没有这篇文章 No such article"),
            ("/admin/pushes/999999", "没有这个推送 No such push"),
            ("/admin/pushes/999999/cancel", "没有这个推送 No such push"),
            ("/admin/replies/999999", "没有这条回复 No such reply"),
            ("/admin/followers/999999", "没有这位粉丝 No such follower"),
        ] {
            let (status, kind, _, page) = get(path).await;
            assert_eq!((status, &kind), (404, &html), "{path}: {page}");
            assert_eq!(message_of(&page), format!("<h1>未找到 Not found</h1><p>{what}</p>"), "{path}");
            assert!(page.contains("<title>未找到 Not found</title>"), "{path}: {page}");
        }
        // Forms too: a push for a campaign that is not there, a segment's sync.
        let push = [("form_token", token.as_str()), ("name", "x"), ("msg_type", "mpnews"), ("audience", "all")];
        let (status, _, _, page) = post("/admin/campaigns/999999/pushes", &push).await;
        assert_eq!((status, message_of(&page)), (404, "<h1>未找到 Not found</h1><p>没有这个活动 No such campaign</p>"));
        let (status, _, _, page) = post("/admin/segments/999999/sync", &[("form_token", &token)]).await;
        assert_eq!((status, message_of(&page)), (404, "<h1>未找到 Not found</h1><p>没有这个分组 No such segment</p>"));
        // A form from elsewhere, and one that is not a form of the page's.
        let forged = [("form_token", "forged"), ("name", "x"), ("msg_type", "mpnews"), ("audience", "all")];
        let (status, kind, _, page) = post(&format!("/admin/campaigns/{}/pushes", created.id), &forged).await;
        assert_eq!((status, &kind), (403, &html), "{page}");
        assert_eq!(
            message_of(&page),
            "<h1>表单无效 Invalid form</h1><p>表单无效，请刷新页面 invalid form; reload the page</p>"
        );
        let (status, kind, _, page) =
            post("/admin/campaigns/999999/preview", &[("form_token", "a"), ("form_token", "b")]).await;
        assert_eq!((status, &kind), (400, &html), "{page}");
        assert_eq!(
            message_of(&page),
            "<h1>表单无效 Invalid form</h1><p>表单无效 invalid form: duplicate field `form_token`</p>"
        );

        // The database stops answering: a signed-in member of staff is told to try again, on a
        // page of the console's — not sent to sign in, not shown the login form.
        server.state.store.close().await;
        const TRY_AGAIN: &str = "<h1>系统出错 Something went wrong</h1>\
            <p>系统出错，请稍后再试 Something went wrong on our side; please try again.</p>";
        for path in ["/admin", &format!("/admin/campaigns/{}", created.id), "/admin/replies", "/admin/followers"] {
            let (status, kind, location, page) = get(path).await;
            assert_eq!((status, &kind, location), (503, &html, None), "{path}: {page}");
            assert_eq!(message_of(&page), TRY_AGAIN, "{path}");
            assert!(!page.contains("login_token") && !page.contains("id=\"token\""), "not the login form: {page}");
        }
        let saved = [("form_token", token.as_str()), ("name", "One article"), ("title", "The first")];
        let (status, _, _, page) = post(&format!("/admin/campaigns/{}", created.id), &saved).await;
        assert_eq!((status, message_of(&page)), (503, TRY_AGAIN));
        let (status, _, _, page) = post("/admin/logout", &[("form_token", &token)]).await;
        assert_eq!((status, message_of(&page)), (503, TRY_AGAIN));
        // Signing in needs the database too: the same page, and no session cookie.
        let form = http.get(format!("{base}/admin/login")).send().await.unwrap();
        assert_eq!(form.status().as_u16(), 200, "the login form needs no database");
        let login_cookie = form.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let form = form.text().await.unwrap();
        let login_token = form.split("name=\"login_token\" value=\"").nth(1).unwrap().split('"').next().unwrap();
        let resp = http
            .post(format!("{base}/admin/login"))
            .header("cookie", login_cookie)
            .form(&[("token", MARKETING_TOKEN), ("login_token", login_token)])
            .send()
            .await
            .unwrap();
        assert!(resp.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("wxoa_admin=")));
        let (status, kind, _, page) = answer(resp).await;
        assert_eq!((status, &kind, message_of(&page)), (503, &html, TRY_AGAIN));
        server.stop().await;
        db.drop_db().await;
    }
}

/// Behind an https `h5.public_url` the console's cookies are `__Host-` ones (Secure, `Path=/`):
/// a cookie of the plain name — which a subdomain or a plain-http page could set — signs no one
/// in, even with a real session id in it. Both databases.
#[tokio::test]
async fn console_cookies_are_host_prefixed_behind_https() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        config.h5.public_url = "https://shop.example.com".into();
        let server = TestServer::start(config).await;
        let base = format!("http://{}", server.addr);
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let set_cookies = |resp: &reqwest::Response| -> Vec<String> {
            resp.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).collect()
        };

        let form = http.get(format!("{base}/admin/login")).send().await.unwrap();
        let login_cookie = set_cookies(&form).remove(0);
        assert!(login_cookie.starts_with("__Host-wxoa_admin_login="), "{login_cookie}");
        assert!(login_cookie.contains("; Path=/;") && login_cookie.ends_with("; Secure"), "{login_cookie}");
        let html = form.text().await.unwrap();
        let login_token = html.split("name=\"login_token\" value=\"").nth(1).unwrap().split('"').next().unwrap();
        let resp = http
            .post(format!("{base}/admin/login"))
            .header("cookie", login_cookie.split(';').next().unwrap())
            .form(&[("token", MARKETING_TOKEN), ("login_token", login_token)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303);
        let session = set_cookies(&resp).into_iter().find(|c| c.starts_with("__Host-wxoa_admin=")).unwrap();
        assert!(session.contains("; Path=/;") && session.contains("HttpOnly") && session.ends_with("; Secure"));
        let id = session.split(';').next().unwrap().strip_prefix("__Host-wxoa_admin=").unwrap().to_owned();

        let admin = |cookie: String| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let resp = http.get(format!("{base}/admin")).header("cookie", cookie).send().await.unwrap();
                (resp.status().as_u16(), resp.headers().get("location").map(|l| l.to_str().unwrap().to_owned()))
            }
        };
        assert_eq!(admin(format!("__Host-wxoa_admin={id}")).await, (200, None));
        assert_eq!(admin(format!("wxoa_admin={id}")).await, (303, Some("/admin/login".into())), "the plain name");
        server.stop().await;
        db.drop_db().await;
    }
}

/// The article editor as marketing uses it: a heading and a bold word from the toolbar and the
/// keyboard, the text centred, an image uploaded with the image button (to the fake WeChat's
/// `media/uploadimg`, through the console's `/admin/images`), saved: the campaign holds the
/// editor's HTML as the allow-list cleaned it (the alignment's style normalised, Quill's link
/// target dropped), and the edit page opens it in the editor again.
#[tokio::test]
async fn the_article_editor_formats_uploads_and_saves_clean_html() {
    let Some(mut browser) = Browser::start("console-editor").await else { return };
    let db = Db::new(Backend::Sqlite).await;
    let mut config = test_config(&db, Mode::Safe);
    let fake = start_fake(&mut config).await;
    let server = TestServer::start(config).await;
    let base = format!("http://{}", server.addr);
    browser.go(&format!("{base}/admin/login")).await;
    browser.type_into("#token", MARKETING_TOKEN).await;
    browser.click_through("#sign-in").await;
    browser.go(&format!("{base}/admin/campaigns/new")).await;
    assert_eq!(
        browser.script("return document.getElementById('content').hidden").await,
        true,
        "the editor replaces it"
    );
    browser.type_into("#name", "编辑器 Editor").await;
    browser.type_into("#title", "限量版 Limited Edition").await;

    send_keys(&browser, EDITOR, "限量版今晚发售").await;
    browser.click(".ql-header .ql-picker-label").await;
    browser.click(".ql-header .ql-picker-item[data-value='2']").await;
    send_keys(&browser, EDITOR, &format!("{ENTER}Launching at {BOLD}00:13{BOLD}.")).await;
    browser.click(".ql-align .ql-picker-label").await;
    browser.click(".ql-align .ql-picker-item[data-value='center']").await;
    send_keys(&browser, EDITOR, ENTER).await;
    browser.click(".ql-align .ql-picker-label").await;
    browser.click(".ql-align .ql-picker-item:not([data-value])").await;

    // The image button's file, chosen as a person would in the file dialog.
    let file = temp_dir("editor-image").join("cover.png");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.resize(3000, 0);
    std::fs::write(&file, &png).unwrap();
    send_keys(&browser, "#image-file", file.to_str().unwrap()).await;
    let said = browser.wait_for_text("#editor-status", "图片已上传", 10).await;
    assert_eq!(said, "图片已上传 · Image uploaded");
    assert_eq!(fake.calls_to("/cgi-bin/media/uploadimg").len(), 1);
    let src =
        browser.script("return document.querySelector('#content-editor .ql-editor img').getAttribute('src')").await;
    let src = src.as_str().unwrap().to_owned();
    assert!(src.starts_with("https://mmbiz.qpic.cn/mmbiz_png/fake"), "{src}");
    // The fake keeps the file and serves it at that path, as WeChat's image host does.
    let path = src.strip_prefix("https://mmbiz.qpic.cn/").unwrap().split('?').next().unwrap();
    let kept = reqwest::get(format!("{}/{path}", server.state.config.wechat.api_base)).await.unwrap();
    assert_eq!(kept.headers()["content-type"], "image/png");
    assert_eq!(kept.bytes().await.unwrap().as_ref(), png.as_slice());
    // A file the editor refuses says so and uploads nothing.
    let gif = temp_dir("editor-gif").join("x.gif");
    std::fs::write(&gif, b"GIF89a\x01\x00\x01\x00").unwrap();
    send_keys(&browser, "#image-file", gif.to_str().unwrap()).await;
    let said = browser.wait_for_text("#editor-status", "JPEG", 5).await;
    assert_eq!(said, "只能上传 JPEG 或 PNG 图片 · An article image must be a JPEG or PNG");
    assert_eq!(fake.calls_to("/cgi-bin/media/uploadimg").len(), 1);
    assert_eq!(
        browser.script("return document.querySelector('.ql-toolbar .ql-image').title").await,
        "上传图片 Upload an image (JPEG/PNG, ≤ 1 MB)"
    );
    browser.script("document.getElementById('content-editor').scrollIntoView()").await;
    browser.shot("editor-before-save").await;

    let posted = browser.script("return document.getElementById('content').value").await;
    browser.click_through("#create").await;
    assert_eq!(browser.text("#notice").await, "活动已创建 Campaign created");
    let stored = wxoa::campaigns::list(&server.state.store, 1).await.unwrap()[0].articles[0].content.clone();
    let want = format!(
        "<h2>限量版今晚发售</h2><p style=\"text-align:center\">Launching at <strong>00:13</strong>.</p><p><img src=\"{src}\"></p>"
    );
    assert_eq!(stored, want, "the editor posted {posted}");
    let shown = browser.script("return document.querySelector('#content-editor .ql-editor').innerHTML").await;
    assert!(
        shown.as_str().unwrap().contains("<strong>00:13</strong>"),
        "the saved body is in the editor again: {shown}"
    );
    browser.script("document.getElementById('content-editor').scrollIntoView()").await;
    browser.shot("editor-saved").await;

    browser.call("DELETE", "", Value::Null).await;
    server.stop().await;
    db.drop_db().await;
}

/// The push form in a real browser: only the fields that apply show (text or articles, one
/// audience picker, a time or a cron); the articles a push sends, its tag and the preview's test
/// followers are picked by name (a segment's tag and WeChat's tag list; the directory's remark,
/// masked openids otherwise, never a raw openid in the page); a push moved to a new time on its
/// page; cancelling asks first (keeping it changes nothing); a sold-out product has its badge.
/// The same form without the script (a plain form post with every field) works as well.
#[tokio::test]
async fn push_form_pickers_reschedule_and_cancel_in_the_console() {
    let Some(mut browser) = Browser::start("console-pushes").await else { return };
    let db = Db::new(Backend::Sqlite).await;
    let mut config = test_config(&db, Mode::Safe);
    config.campaigns.test_openids = vec!["oTesterConfigured1".into()];
    let fake = start_fake(&mut config).await;
    let server = TestServer::start(config).await;
    let base = format!("http://{}", server.addr);
    let addr = server.addr.to_string();

    // WeChat's side: a tag, and two followers, one with a remark; the directory syncs them.
    let vip = server.state.client.tag_create("VIP 贵宾").await.unwrap().id;
    fake.follow("oTesterAmy0000000000000001");
    fake.set_remark("oTesterAmy0000000000000001", "Amy 测试");
    fake.follow("oTesterNoName000000000002");
    let (status, sync) = api_call(&addr, "POST", "/api/v1/followers/sync", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 202, "{sync}");
    let sync_path = format!("/api/v1/followers/sync/{}", sync["sync"]["id"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while api_call(&addr, "GET", &sync_path, Some(ADMIN_TOKEN), None).await.1["sync"]["state"] != "done" {
        assert!(Instant::now() < deadline, "the follower sync finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A campaign of three articles, its product sold out.
    let input: wxoa::campaigns::CampaignInput = serde_json::from_value(serde_json::json!({
        "name": "Three pieces", "product": { "sku": "LE-3", "name": "Three", "stock": 5 },
        "articles": [{ "title": "Teaser", "cover_media_id": "T1" }, { "title": "Collection", "cover_media_id": "T2" },
                     { "title": "How to buy", "cover_media_id": "T3" }]
    }))
    .unwrap();
    let campaign = wxoa::campaigns::create(&server.state.store, &input).await.unwrap();
    assert_eq!(shop(&server, "/api/v1/stock", serde_json::json!({ "sku": "LE-3", "stock": 0 })).await.0, 200);

    browser.go(&format!("{base}/admin/login")).await;
    browser.type_into("#token", MARKETING_TOKEN).await;
    browser.click_through("#sign-in").await;
    assert!(browser.text("#campaign-1").await.contains("售罄 Sold out"));
    browser.shot("dashboard-sold-out").await;
    browser.go(&format!("{base}/admin/campaigns/{}", campaign.id)).await;
    assert_eq!(browser.text("#sold-out").await, "售罄 Sold out");
    assert_eq!(browser.script("return document.documentElement.lang").await, "zh-CN");

    // Only what applies shows: mpnews to all, once — the articles and the time.
    assert!(is_shown(&browser, "push-articles").await && is_shown(&browser, "at").await);
    for hidden in ["push-text", "segment", "tag_id", "openids", "cron"] {
        assert!(!is_shown(&browser, hidden).await, "{hidden} shows for an mpnews push to all, once");
    }
    choose_in(&browser, "msg_type", "text").await;
    assert!(is_shown(&browser, "push-text").await && !is_shown(&browser, "push-articles").await);
    choose_in(&browser, "msg_type", "mpnews").await;
    choose_in(&browser, "audience", "tag").await;
    assert!(
        is_shown(&browser, "tag_id").await
            && !is_shown(&browser, "segment").await
            && !is_shown(&browser, "openids").await
    );
    choose_in(&browser, "when", "cron").await;
    assert!(is_shown(&browser, "cron").await && !is_shown(&browser, "at").await);
    choose_in(&browser, "when", "at").await;
    browser.script("document.getElementById('push-form').scrollIntoView()").await;
    browser.shot("push-form-tag").await;

    // The tag by name, two of the three articles; a time tomorrow.
    let options = browser.text("#tag_id").await;
    assert!(options.contains("VIP 贵宾"), "{options}");
    choose_in(&browser, "tag_id", &vip.to_string()).await;
    browser.click("#push-articles input[name='articles'][value='1']").await;
    browser.type_into("#push-name", "teaser").await;
    let local = |days: i64| {
        (chrono::Utc::now() + chrono::Duration::days(days))
            .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
            .format("%Y-%m-%dT%H:%M:00")
            .to_string()
    };
    browser.script(&format!("document.getElementById('at').value = '{}'", local(1))).await;
    browser.click_through("#schedule").await;
    assert_eq!(browser.text("#notice").await, "推送已排期 Push scheduled");
    let pushes = wxoa::campaigns::schedule::list(&server.state.store, Some(campaign.id), 10).await.unwrap();
    assert_eq!(pushes.len(), 1);
    let push = &pushes[0];
    assert_eq!(push.audience, wxoa::campaigns::schedule::Audience::Tag { tag_id: vip });
    assert_eq!(push.articles, Some(vec![0, 2]));
    let listed = browser.text("#pushes").await;
    assert!(
        listed.contains("文章 articles 1, 3") && listed.contains(&format!("标签 tag VIP 贵宾 ({vip})")),
        "{listed}"
    );

    // Test followers by name: the configured one checked, the directory's by remark or masked.
    let testers = browser.text("#testers").await;
    assert!(testers.contains("Amy 测试") && testers.contains("oTes…02") && testers.contains("oTes…d1"), "{testers}");
    let html = browser.script("return document.documentElement.outerHTML").await;
    assert!(!html.as_str().unwrap().contains("oTesterAmy"), "no raw openid in the page");
    browser.script("document.querySelector('#testers input[value=\"t0\"]').checked = false").await;
    browser.click_through("#send-preview").await;
    assert_eq!(browser.text("#error").await, "请至少选择一位测试粉丝 Pick at least one test follower");
    let amy = browser.script("return [].find.call(document.querySelectorAll('#testers label'), l => l.textContent.includes('Amy')).querySelector('input').value").await;
    browser.script(&format!("document.querySelector('#testers input[value=\"t0\"]').checked = false; document.querySelector('#testers input[value=\"{}\"]').checked = true", amy.as_str().unwrap())).await;
    browser.click("#preview-articles input[name='articles'][value='0']").await;
    browser.click_through("#send-preview").await;
    assert_eq!(browser.text("#notice").await, "预览已发送给 1/1 位测试粉丝 Preview sent to 1 of 1 test follower(s)");
    let previews = fake.calls_to("/cgi-bin/message/mass/preview");
    assert_eq!(previews.last().unwrap().body["touser"], "oTesterAmy0000000000000001");
    let draft = fake.calls_to("/cgi-bin/draft/add").last().unwrap().body.clone();
    assert_eq!(draft["articles"].as_array().unwrap().len(), 2, "the preview's two articles: {draft}");
    browser.script("document.getElementById('preview-form').scrollIntoView()").await;
    browser.shot("preview-to-amy").await;

    // Rescheduled on its page: a time in the past is refused, the day after is taken.
    browser.click_through(&format!("#push-{} a.reschedule", push.id)).await;
    browser.script("document.getElementById('at').value = '2020-01-01T10:00:00'").await;
    browser.click_through("#reschedule").await;
    assert!(browser.text("#error").await.starts_with("未能改期 Not rescheduled: "), "{}", browser.text("#error").await);
    assert!(browser.text("#error").await.contains("in the past"));
    browser.script(&format!("document.getElementById('at').value = '{}'", local(2))).await;
    browser.click_through("#reschedule").await;
    assert_eq!(browser.text("#notice").await, "推送已改期 Push rescheduled");
    let moved = wxoa::campaigns::schedule::get(&server.state.store, push.id).await.unwrap().unwrap();
    assert_eq!(moved.next_at.unwrap() - push.next_at.unwrap(), 24 * 3600 * 1000);
    browser.shot("push-rescheduled").await;

    // Cancelling asks first: keeping it changes nothing; confirming cancels.
    browser.click_through("#pushes a.cancel").await;
    assert!(browser.text("#confirm-cancel").await.contains("取消这条推送？ Cancel this push?"));
    browser.shot("cancel-confirm").await;
    browser.click_through("#keep-push").await;
    let kept = wxoa::campaigns::schedule::get(&server.state.store, push.id).await.unwrap().unwrap();
    assert_eq!(kept.status, wxoa::campaigns::schedule::PushStatus::Scheduled);
    browser.click_through("#pushes a.cancel").await;
    browser.click_through("#confirm-cancel-button").await;
    assert_eq!(browser.text("#notice").await, "推送已取消 Push cancelled");
    let gone = wxoa::campaigns::schedule::get(&server.state.store, push.id).await.unwrap().unwrap();
    assert_eq!(gone.status, wxoa::campaigns::schedule::PushStatus::Cancelled);
    browser.go(&format!("{base}/admin/pushes/{}", push.id)).await;
    assert!(browser.text("#not-reschedulable").await.contains("cancelled"));

    // Without the script: a plain post of the whole form (every field, as a browser without
    // JavaScript sends it) schedules what the choices say; a cancel without the confirmation
    // cancels nothing.
    let cookie = console_sign_in(server.addr, MARKETING_TOKEN).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(format!("{base}/admin/campaigns/{}", campaign.id)).header("cookie", &cookie).send().await;
    let page = page.unwrap().text().await.unwrap();
    let form_token = page.split("name=\"form_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let at = local(3);
    let form = [
        ("form_token", form_token.as_str()),
        ("name", "no-script"),
        ("msg_type", "mpnews"),
        ("articles_shown", "1"),
        ("articles", "0"),
        ("articles", "1"),
        ("articles", "2"),
        ("text", "typed, then mpnews chosen"),
        ("audience", "all"),
        ("segment", ""),
        ("tag_id", ""),
        ("openids", ""),
        ("when", "at"),
        ("at", &at),
        ("cron", ""),
        ("time_zone", "Asia/Shanghai"),
    ];
    let resp = http
        .post(format!("{base}/admin/campaigns/{}/pushes", campaign.id))
        .header("cookie", &cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "{}", resp.text().await.unwrap());
    let pushes = wxoa::campaigns::schedule::list(&server.state.store, Some(campaign.id), 10).await.unwrap();
    let plain = pushes.iter().find(|p| p.name == "no-script").unwrap();
    assert_eq!((plain.text.as_deref(), plain.articles.as_ref()), (None, None), "all three: all; no text");
    // A text push sends no article: its article boxes, all unticked, are not read.
    let mut text_form: Vec<(&str, &str)> = form.iter().filter(|(k, _)| *k != "articles").copied().collect();
    for (k, v) in text_form.iter_mut() {
        match *k {
            "name" => *v = "no-script text",
            "msg_type" => *v = "text",
            _ => {}
        }
    }
    let resp = http
        .post(format!("{base}/admin/campaigns/{}/pushes", campaign.id))
        .header("cookie", &cookie)
        .form(&text_form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "{}", resp.text().await.unwrap());
    let pushes = wxoa::campaigns::schedule::list(&server.state.store, Some(campaign.id), 10).await.unwrap();
    let text_push = pushes.iter().find(|p| p.name == "no-script text").unwrap();
    assert_eq!((text_push.text.as_deref(), text_push.articles.as_ref()), (Some("typed, then mpnews chosen"), None));
    let resp = http
        .post(format!("{base}/admin/pushes/{}/cancel", plain.id))
        .header("cookie", &cookie)
        .form(&[("form_token", form_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["location"], format!("/admin/pushes/{}/cancel", plain.id).as_str(), "asked first");
    let plain = wxoa::campaigns::schedule::get(&server.state.store, plain.id).await.unwrap().unwrap();
    assert_eq!(plain.status, wxoa::campaigns::schedule::PushStatus::Scheduled);

    browser.call("DELETE", "", Value::Null).await;
    server.stop().await;
    db.drop_db().await;
}

/// Whether the element `id` shows (neither it nor a part around it is hidden by the script).
async fn is_shown(browser: &Browser, id: &str) -> bool {
    browser.script(&format!("return !document.getElementById('{id}').closest('[hidden]')")).await == true
}

/// Chooses `value` in the select `id` as a person does (its form hears the change).
async fn choose_in(browser: &Browser, id: &str, value: &str) {
    let js = format!(
        "var e = document.getElementById('{id}'); e.value = '{value}'; e.dispatchEvent(new Event('change', {{bubbles: true}}))"
    );
    browser.script(&js).await;
}
