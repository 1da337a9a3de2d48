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
    assert_eq!(browser.text("#error").await, "Unknown token.");
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
    assert_eq!(browser.text("#notice").await, "Campaign created");

    // A preview to the test follower.
    browser.click_through("#send-preview").await;
    assert_eq!(browser.text("#notice").await, "Preview sent to 1 of 1 test follower(s)");
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
    assert_eq!(browser.text("#notice").await, "Push scheduled");
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
    assert!(pushes.contains("fired") && pushes.contains("finished") && pushes.contains("sent 1 of 1"), "{pushes}");
    assert_eq!(fake.calls_to("/cgi-bin/message/mass/sendall").len(), 1);
    browser.shot("push-fired").await;
    browser.click_through("header a[href='/admin']").await;
    let timeline = browser.text("#timeline").await;
    assert!(timeline.contains("Limited Edition launch") && timeline.contains("sent 1 of 1"), "{timeline}");
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
    browser.type_into("#reply-name", "opening-hours").await;
    browser.script("document.getElementById('priority').value = '200'").await;
    browser.type_into("#match_value", "opening hours\n营业时间").await;
    browser.type_into("#reply-text", "We open 10:00-22:00 every day.").await;
    browser.type_into("#sample", "what are your opening hours?").await;
    browser.click_through("#preview-reply").await;
    assert_eq!(browser.text("#preview-text").await, "We open 10:00-22:00 every day.");
    assert_eq!(browser.text("#preview-verdict").await, "Answered by console:opening-hours.");
    assert_eq!(browser.script("return document.getElementById('reply-name').value").await, "opening-hours");
    assert!(wxoa::replies::list(&server.state.store).await.unwrap().is_empty(), "a preview stores nothing");
    browser.shot("reply-previewed").await;

    browser.click_through("#save-reply").await;
    assert_eq!(browser.text("#notice").await, "Reply created: it answers from now on");
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
    assert_eq!(browser.text("#notice").await, "Saved: the new version answers from now on");
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
    let t = wxoa::store::now_ms() / 1000;
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
    assert_eq!(browser.text("#error").await, "min_points: \"lots\" is not a whole number");
    browser.script("document.getElementById('min_points').value = ''").await;
    browser.click_through("#count-segment").await;
    assert_eq!(browser.text("#live-count").await, "These rules take 2 followers now (2 following).");
    assert!(wxoa::audiences::list(&server.state.store).await.unwrap().is_empty(), "counting stores nothing");
    browser.shot("segment-counted").await;
    browser.click_through("#create-segment").await;
    assert_eq!(browser.text("#notice").await, "Segment created");
    assert_eq!(browser.text("#segments .count").await, "2");
    assert_eq!(browser.text("#segments .sync").await, "never synced");

    browser.click_through("#segments .sync-now").await;
    assert_eq!(browser.text("#notice").await, "Syncing to its WeChat tag: the status below follows it");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = String::new();
    while Instant::now() < deadline {
        browser.go(&format!("{base}/admin/segments")).await;
        status = browser.text("#segments .sync").await;
        if status.starts_with("done") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(status.starts_with("done +2 −0"), "{status}");
    let tag = fake.tags().into_iter().find(|(_, name)| name == "Launch fans").expect("the tag was made").0;
    assert_eq!((fake.tags_of("oSegmentFanA"), fake.tags_of("oSegmentFanB")), (vec![tag], vec![tag]));
    browser.shot("segment-synced").await;

    // The directory: masked openids for marketing; one follower's page.
    browser.click_through("header a[href='/admin/followers']").await;
    let list = browser.text("#followers").await;
    assert!(list.contains("oSeg…nA") && !list.contains("oSegmentFanA"), "{list}");
    browser.click_through("#followers a").await;
    assert_eq!(browser.text("#follower-openid").await, "oSeg…nA");
    assert_eq!(browser.text("#follower-state").await, "following");
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
            assert!(resp.text().await.unwrap().contains("This form has expired; please sign in again."));
        }
        let cookie = console_sign_in(server.addr, MARKETING_TOKEN).await;
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
        assert_eq!(logout("forged".into()).await, (403, "invalid form; reload the page".to_owned()));
        assert_eq!(page(cookie.clone()).await.0, 200, "a foreign sign-out ends nothing");

        let (status, _) = logout(token).await;
        assert_eq!(status, 303);
        let (status, location, _) = page(cookie.clone()).await;
        assert_eq!((status, location.as_deref()), (303, Some("/admin/login")), "the old cookie no longer gets in");
        let recorded: i64 = wxoa::with_pool!(&server.state.store, pool =>
            sqlx::query_scalar("SELECT COUNT(*) FROM console_signouts").fetch_one(pool).await)
        .unwrap();
        assert_eq!(recorded, 1);

        // A fresh sign-in is a new session and gets in.
        let fresh = console_sign_in(server.addr, MARKETING_TOKEN).await;
        assert_ne!(fresh, cookie);
        assert_eq!(page(fresh).await.0, 200);

        // The hourly sweep forgets sign-outs only once their cookies have expired anyway.
        let now = wxoa::store::now_ms();
        assert_eq!(wxoa::admin::console::purge_signouts(&server.state.store, now, 1000).await.unwrap(), 0);
        let later = now + 13 * 3600 * 1000;
        assert_eq!(wxoa::admin::console::purge_signouts(&server.state.store, later, 1000).await.unwrap(), 1);
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
    assert_eq!(browser.text("#notice").await, "Campaign created");
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
