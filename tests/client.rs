//! The WeChat API client against the fake WeChat over real HTTP: the shared token, the
//! compare-and-expire on token errors, backoff, no endless retries, and each endpoint's request.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use wxoa::fake::FakeWeChat;
use wxoa::store::Store;
use wxoa::wechat::client::mass::{Audience, MassContent};
use wxoa::wechat::client::menu::{Button, ConditionalMenu, MatchRule, Menu};
use wxoa::wechat::client::message::CustomMessage;
use wxoa::wechat::client::qrcode::Scene;
use wxoa::wechat::client::template::TemplateMessage;
use wxoa::wechat::client::{CallError, Client, RateLimits, Retry};
use wxoa::wechat::envelope::Mode;

const FAST_RETRY: Retry = Retry { attempts: 3, first: Duration::from_millis(20), max: Duration::from_millis(100) };

struct Setup {
    fake: FakeWeChat,
    store: Store,
    config: wxoa::config::Config,
    db: Db,
}

impl Setup {
    async fn new(backend: Backend) -> Setup {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        let fake = start_fake(&mut config).await;
        let store = Store::connect(&db.url, 8).await.unwrap();
        store.migrate().await.unwrap();
        Setup { fake, store, config, db }
    }

    fn client(&self) -> Client {
        Client::with_retry(&self.config.wechat.account(), &RateLimits::default(), self.store.clone(), FAST_RETRY)
    }

    async fn done(self) {
        self.store.close().await;
        self.db.drop_db().await;
    }
}

#[tokio::test]
async fn two_clients_on_one_database_share_one_token() {
    for backend in backends() {
        let s = Setup::new(backend).await;
        let (a, b) = (s.client(), s.client());
        let (ra, rb) = tokio::join!(a.user_info("o1"), b.user_info("o2"));
        assert_eq!(ra.unwrap().subscribe, 1);
        assert_eq!(rb.unwrap().openid, "o2");
        for _ in 0..5 {
            a.tag_list().await.unwrap();
            b.tag_list().await.unwrap();
        }
        assert_eq!(s.fake.tokens_issued(), 1, "{backend:?}: one token for both");
        let tokens: std::collections::HashSet<String> =
            s.fake.calls().iter().filter_map(|c| c.query.get("access_token").cloned()).collect();
        assert_eq!(tokens.len(), 1);
        s.done().await;
    }
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_for_fifty_callers() {
    for backend in backends() {
        let s = Setup::new(backend).await;
        let client = s.client();
        client.tag_list().await.unwrap();
        s.fake.revoke_tokens();
        let calls = (0..50).map(|i| {
            let c = client.clone();
            async move { c.user_info(&format!("o{i}")).await }
        });
        let results = futures_join_all(calls).await;
        assert!(results.iter().all(|r| r.is_ok()), "{backend:?}: {results:?}");
        assert_eq!(s.fake.tokens_issued(), 2, "{backend:?}: one refresh, not a storm");
        // The refresh after 40001 asks stable_token to force a new token.
        let stable = s.fake.calls_to("/cgi-bin/stable_token");
        assert_eq!(stable.last().unwrap().body["force_refresh"], true);
        s.done().await;
    }
}

/// The JS-SDK ticket is the account's: fetched once for two instances and forty pages, reused
/// until five minutes before it expires, then fetched once again.
#[tokio::test]
async fn two_clients_on_one_database_share_one_jsapi_ticket() {
    for backend in backends() {
        let s = Setup::new(backend).await;
        let clock = s.config.clock.clone();
        let store = || Store::clone(&s.store).with_clock(clock.clone());
        let account = s.config.wechat.account();
        let (a, b) = (
            Client::with_retry(&account, &RateLimits::default(), store(), FAST_RETRY),
            Client::with_retry(&account, &RateLimits::default(), store(), FAST_RETRY),
        );
        let pages = (0..40).map(|i| {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            async move { c.js_config(&format!("https://h5.example.com/card?n={i}")).await }
        });
        let configs = futures_join_all(pages).await;
        let tickets = || s.fake.calls_to("/cgi-bin/ticket/getticket").len();
        assert_eq!(tickets(), 1, "{backend:?}: one fetch for the deployment");
        let ticket = b.jsapi_ticket().await.unwrap();
        assert_eq!(a.jsapi_ticket().await.unwrap(), ticket);
        for (i, js) in configs.into_iter().enumerate() {
            let js = js.unwrap();
            let url = format!("https://h5.example.com/card?n={i}");
            assert_eq!(
                js.signature,
                wxoa::wechat::client::jssdk::js_signature(&ticket, &js.nonce_str, js.timestamp, &url)
            );
        }
        // 7,200 s less the five-minute margin: a new ticket, once.
        clock.advance((7200 - 302) * 1000);
        a.jsapi_ticket().await.unwrap();
        assert_eq!(tickets(), 1, "{backend:?}: still fresh");
        clock.advance(4000);
        let (ra, rb) = tokio::join!(a.jsapi_ticket(), b.jsapi_ticket());
        assert_eq!(tickets(), 2, "{backend:?}: one new ticket");
        assert_ne!(ra.unwrap(), ticket);
        assert_eq!(rb.unwrap(), a.jsapi_ticket().await.unwrap());
        s.done().await;
    }
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn token_errors_retry_once_and_busy_backs_off_a_bounded_number_of_times() {
    let s = Setup::new(Backend::Sqlite).await;
    let client = s.client();
    client.tag_list().await.unwrap();
    let count = |fake: &FakeWeChat| fake.calls_to("/cgi-bin/tags/get").len();
    let cases: &[(&[i64], Result<(), i64>, usize)] = &[
        // (forced errcodes, outcome, calls to the endpoint)
        (&[42001], Ok(()), 2),            // expired: refresh, retry, fine
        (&[40001, 40001], Err(40001), 2), // still refused after one refresh: give up, no loop
        (&[-1, -1], Ok(()), 3),           // busy twice: backoff, third try works
        (&[-1, -1, -1, -1], Err(-1), 3),  // busy beyond the attempts: give up
        (&[43004], Err(43004), 1),        // a refusal is final
    ];
    for (forced, want, calls) in cases {
        s.fake.tweak(|k| k.forced = forced.iter().copied().collect());
        let before = count(&s.fake);
        let started = Instant::now();
        let got = client.tag_list().await.map(|_| ()).map_err(|e| e.errcode().unwrap());
        assert_eq!(got, *want, "forced {forced:?}");
        assert_eq!(count(&s.fake) - before, *calls, "forced {forced:?}");
        if forced.starts_with(&[-1, -1]) {
            assert!(started.elapsed() >= Duration::from_millis(60), "backed off: {:?}", started.elapsed());
        }
        s.fake.tweak(|k| k.forced.clear());
    }
    // A dropped connection is retried too.
    s.fake.tweak(|k| k.drop_connections = 1);
    client.tag_list().await.unwrap();
    // Wrong credentials are reported as WeChat says them.
    let mut wrong = s.config.wechat.clone();
    wrong.app_secret = "nope".into();
    let other_db = Db::new(Backend::Sqlite).await;
    let other_store = Store::connect(&other_db.url, 2).await.unwrap();
    other_store.migrate().await.unwrap();
    let bad = Client::with_retry(&wrong.account(), &RateLimits::default(), other_store, FAST_RETRY);
    assert_eq!(
        bad.tag_list().await.unwrap_err(),
        CallError::WeChat { errcode: 40125, errmsg: "invalid appsecret".into() }
    );
    s.done().await;
}

#[tokio::test]
async fn classic_token_api_and_pacing() {
    let db = Db::new(Backend::Sqlite).await;
    let mut config = test_config(&db, Mode::Safe);
    config.wechat.token_api = wxoa::wechat::client::token::TokenApi::Classic;
    let fake = start_fake(&mut config).await;
    let store = Store::connect(&db.url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let limits = RateLimits { user: 20.0, ..RateLimits::default() };
    let client = Client::with_retry(&config.wechat.account(), &limits, store, FAST_RETRY);
    let started = Instant::now();
    for i in 0..40 {
        client.user_info(&format!("o{i}")).await.unwrap();
    }
    // 20 a second with a one-second burst: 40 calls take about a second.
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
    assert_eq!(fake.calls_to("/cgi-bin/token").len(), 1);
}

/// Each endpoint sends the request WeChat documents and reads its answer.
#[tokio::test]
async fn every_endpoint_sends_the_documented_request() {
    let s = Setup::new(Backend::Sqlite).await;
    let c = s.client();
    let button = |name: &str, key: &str| Button {
        kind: Some("click".into()),
        name: name.into(),
        key: Some(key.into()),
        ..Button::default()
    };
    let menu = Menu {
        button: vec![
            button("Members", "member"),
            Button { name: "More".into(), sub_button: vec![button("About", "about")], ..Button::default() },
        ],
    };
    c.menu_create(&menu).await.unwrap();
    assert_eq!(c.menu_get().await.unwrap().menu, menu);
    let tag = c.tag_create("VIP").await.unwrap();
    c.tag_members(tag.id, &["oVip1", "oVip2"], false).await.unwrap();
    assert_eq!(c.tags_of("oVip1").await.unwrap(), vec![tag.id]);
    assert_eq!(c.tag_followers(tag.id, "").await.unwrap().data.openid, vec!["oVip1", "oVip2"]);
    let cond = ConditionalMenu {
        button: vec![button("VIP", "vip")],
        matchrule: MatchRule { tag_id: Some(tag.id.to_string()), ..MatchRule::default() },
        menuid: None,
    };
    let menuid = c.menu_add_conditional(&cond).await.unwrap();
    assert_eq!(c.menu_try_match("oVip1").await.unwrap()[0].name, "VIP");
    assert_eq!(c.menu_try_match("oOther").await.unwrap()[0].name, "Members");
    c.menu_delete_conditional(menuid).await.unwrap();
    c.tag_members(tag.id, &["oVip2"], true).await.unwrap();
    assert_eq!(c.tags_of("oVip2").await.unwrap(), Vec::<i64>::new());
    c.custom_send("o1", &CustomMessage::Text { content: "hi".into() }).await.unwrap();
    c.custom_typing("o1", true).await.unwrap();
    let msgid = c.template_send(&TemplateMessage::new("o1", "TPL1", &[("first", "Order paid")])).await.unwrap();
    assert!(msgid > 0);
    assert_eq!(c.user_info_batch(&["o1", "o2"]).await.unwrap().len(), 2);
    let qr = c.qrcode_create(&Scene::Str("store_021".into()), Some(600)).await.unwrap();
    assert!(qr.image_url().contains(&qr.ticket[..6]));
    c.qrcode_create(&Scene::Id(7), None).await.unwrap();
    let url = c.media_upload_image("cover.jpg", vec![0xff, 0xd8, 0xff]).await.unwrap();
    let draft = c
        .draft_add(&[wxoa::wechat::client::media::DraftArticle {
            title: "Launch".into(),
            content: format!("<img src=\"{url}\">"),
            thumb_media_id: "T".into(),
            ..Default::default()
        }])
        .await
        .unwrap();
    let mpnews = MassContent::Mpnews { media_id: draft.clone() };
    let sent = c.mass_send_all(&Audience::Tag(tag.id), &mpnews, Some("launch-1")).await.unwrap();
    assert!(!sent.is_repeat());
    // The same clientmsgid: within a minute 45066; later 45065 with the first send's msg_id.
    assert_eq!(
        c.mass_send_all(&Audience::Tag(tag.id), &mpnews, Some("launch-1")).await.unwrap_err().errcode(),
        Some(45066)
    );
    s.fake.tweak(|k| k.clientmsgid_retry_ms = Some(0));
    let again = c.mass_send_all(&Audience::Tag(tag.id), &mpnews, Some("launch-1")).await.unwrap();
    assert!(again.is_repeat());
    assert_eq!(again.msg_id, sent.msg_id);
    c.mass_send(&["o1", "o2"], &MassContent::Text { content: "hello".into() }, None).await.unwrap();
    assert!(c.mass_send(&["o1"], &MassContent::Text { content: "x".into() }, None).await.is_err(), "at least two");
    c.mass_preview("o1", &mpnews).await.unwrap();
    assert_eq!(c.mass_status(sent.msg_id).await.unwrap(), "SEND_SUCCESS");
    let js = c.js_config("https://h5.example.com/card?x=1#top").await.unwrap();
    assert_eq!(js.signature.len(), 40);
    let code = s.fake.oauth_code("oOauth");
    let token = c.oauth_exchange(&code, &s.config.wechat.app_secret).await.unwrap();
    assert_eq!(token.openid, "oOauth");
    assert_eq!(
        c.oauth_exchange(&code, &s.config.wechat.app_secret).await.unwrap_err().errcode(),
        Some(40029),
        "codes are single use"
    );
    assert_eq!(c.oauth_userinfo(&token).await.unwrap().openid, "oOauth");
    let url = c
        .oauth_authorize_url(
            "https://open.weixin.qq.com",
            "https://h5.example.com/cb?a=1",
            wxoa::wechat::client::oauth::Scope::Base,
            "abc123",
        )
        .unwrap();
    assert!(url.ends_with("&response_type=code&scope=snsapi_base&state=abc123#wechat_redirect"), "{url}");
    assert!(
        c.oauth_authorize_url(
            "https://open.weixin.qq.com",
            "https://x",
            wxoa::wechat::client::oauth::Scope::Base,
            "bad state!"
        )
        .is_err()
    );
    c.menu_delete().await.unwrap();
    assert_eq!(c.menu_get().await.unwrap().menu.button.len(), 0);

    // The request bodies as WeChat documents them.
    let body = |path: &str| s.fake.calls_to(path).last().unwrap().body.clone();
    assert_eq!(
        body("/cgi-bin/message/custom/send"),
        json!({"touser": "o1", "msgtype": "text", "text": {"content": "hi"}})
    );
    assert_eq!(body("/cgi-bin/message/custom/typing"), json!({"touser": "o1", "command": "Typing"}));
    assert_eq!(body("/cgi-bin/message/template/send")["data"]["first"]["value"], "Order paid");
    assert_eq!(
        body("/cgi-bin/qrcode/create"),
        json!({"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 7}}})
    );
    let sendall = &s.fake.calls_to("/cgi-bin/message/mass/sendall")[0].body;
    assert_eq!(sendall["filter"], json!({"is_to_all": false, "tag_id": tag.id}));
    assert_eq!(sendall["msgtype"], "mpnews");
    assert_eq!(sendall["clientmsgid"], "launch-1");
    assert_eq!(body("/cgi-bin/message/mass/send")["touser"], json!(["o1", "o2"]));
    assert_eq!(body("/cgi-bin/tags/members/batchtagging"), json!({"openid_list": ["oVip1", "oVip2"], "tagid": tag.id}));

    // A follower who left: 43004.
    s.fake.unsubscribe("oGone");
    let err = c.custom_send("oGone", &CustomMessage::Text { content: "hi".into() }).await.unwrap_err();
    assert_eq!(err.errcode(), Some(43004));
    s.done().await;
}

/// The fake keeps followers and tags as WeChat does, with its limits: `user/get` pages of
/// 10,000 continued by `next_openid`, `batchget` of at most 100, tags unique, at most 30 bytes
/// and 100 an account, WeChat's own tags untouchable, at most 20 a follower and 50 a batch, and
/// nobody half-tagged by a refused batch.
#[tokio::test]
async fn the_fake_keeps_followers_and_tags_within_wechats_limits() {
    let s = Setup::new(Backend::Sqlite).await;
    let c = s.client();
    s.fake.add_synthetic_followers(25_000);
    s.fake.follow("oLeaving");
    s.fake.unsubscribe("oLeaving");

    // user/get: 10,000, 10,000, 5,000, then an empty page; leavers are not listed.
    let mut next = String::new();
    let mut counts = Vec::new();
    loop {
        let page = c.user_list(&next).await.unwrap();
        assert_eq!(page.total, 25_000);
        counts.push(page.count);
        if page.count == 0 {
            assert_eq!(page.next_openid, "");
            break;
        }
        next = page.next_openid.clone();
    }
    assert_eq!(counts, [10_000, 10_000, 5_000, 0]);

    // Raw calls for what the client checks before calling.
    let token = c.tokens().get().await.unwrap();
    let http = reqwest::Client::new();
    let raw = |path: &str, body: serde_json::Value| {
        let url = format!("{}{path}?access_token={token}", s.config.wechat.api_base);
        let req = http.post(url).json(&body);
        async move { req.send().await.unwrap().json::<serde_json::Value>().await.unwrap()["errcode"].as_i64().unwrap_or(0) }
    };
    let users = |n: usize| (0..n).map(|i| json!({ "openid": format!("oSYN{i:024}") })).collect::<Vec<_>>();
    assert_eq!(raw("/cgi-bin/user/info/batchget", json!({ "user_list": users(100) })).await, 0);
    assert_eq!(raw("/cgi-bin/user/info/batchget", json!({ "user_list": users(101) })).await, 40032);
    assert_eq!(raw("/cgi-bin/user/info/batchget", json!({ "user_list": [] })).await, 40032);

    // Tags: unique names of at most 30 bytes, at most 100, WeChat's own (0–2) untouchable.
    let vip = c.tag_create("VIP").await.unwrap();
    fn we<T>(r: Result<T, CallError>) -> Option<i64> {
        r.err().and_then(|e| e.errcode())
    }
    assert_eq!(we(c.tag_create("VIP").await), Some(45157));
    assert_eq!(
        raw("/cgi-bin/tags/create", json!({ "tag": { "name": "三十一个字节的标签名称超长了呀" } })).await,
        45158
    );
    assert!(matches!(c.tag_create(&"x".repeat(31)).await, Err(CallError::Invalid(_))), "checked before calling");
    assert_eq!(we(c.tag_rename(2, "mine").await), Some(45058));
    assert_eq!(we(c.tag_delete(1).await), Some(45058));
    assert_eq!(we(c.tag_rename(999, "x").await), Some(45159));
    for i in 1..100 {
        c.tag_create(&format!("t{i}")).await.unwrap();
    }
    assert_eq!(we(c.tag_create("the 101st").await), Some(45056));
    let listed = c.tag_list().await.unwrap();
    assert_eq!(listed.len(), 101, "100 of ours and the star group");
    assert!(listed.iter().any(|t| t.id == 2));

    // Tagging: 50 a batch; a follower of nobody, or one who left, refuses the whole batch.
    let fifty: Vec<String> = (0..50).map(|i| format!("oSYN{i:024}")).collect();
    let fifty: Vec<&str> = fifty.iter().map(String::as_str).collect();
    c.tag_members(vip.id, &fifty, false).await.unwrap();
    let fifty_one: Vec<String> = (0..51).map(|i| format!("oSYN{i:024}")).collect();
    assert_eq!(
        raw("/cgi-bin/tags/members/batchtagging", json!({ "tagid": vip.id, "openid_list": fifty_one })).await,
        40032
    );
    let other = c.tag_create("other").await;
    assert_eq!(we(other), Some(45056), "still at 100");
    let t1 = listed.iter().find(|t| t.name == "t1").unwrap().id;
    assert_eq!(we(c.tag_members(t1, &["oSYN000000000000000000000100", "oLeaving"], false).await), Some(40003));
    assert!(c.tags_of("oSYN000000000000000000000100").await.unwrap().is_empty(), "nobody half-tagged");
    assert_eq!(we(c.tag_members(9999, &["oSYN000000000000000000000100"], false).await), Some(45159));
    // At most 20 tags a follower.
    let one = ["oSYN000000000000000000000007"];
    let others: Vec<i64> = listed.iter().map(|t| t.id).filter(|id| *id >= 100 && *id != vip.id).collect();
    for t in &others[..19] {
        c.tag_members(*t, &one, false).await.unwrap();
    }
    assert_eq!(c.tags_of(one[0]).await.unwrap().len(), 20, "VIP and 19 more");
    let twentyfirst = others[19];
    assert_eq!(we(c.tag_members(twentyfirst, &one, false).await), Some(45059));
    // A tag's followers, paged like user/get; untagging; deleting a tag drops it from everyone.
    let page = c.tag_followers(vip.id, "").await.unwrap();
    assert_eq!(page.count, 50);
    c.tag_members(vip.id, &fifty[..10], true).await.unwrap();
    assert_eq!(c.tag_followers(vip.id, "").await.unwrap().count, 40);
    c.tag_delete(vip.id).await.unwrap();
    assert!(!c.tags_of(one[0]).await.unwrap().contains(&vip.id));
    assert_eq!(c.tag_list().await.unwrap().len(), 100);
    s.done().await;
}

/// `media/uploadimg` as WeChat judges a file: the client refuses before calling what WeChat
/// would refuse (not a JPEG or PNG by its bytes, over 1 MB), uploads the rest as multipart
/// `media` through the media family's pacing, and the fake answers a raw upload as WeChat does —
/// 40005 for another type, 40006 for a size out of bounds, 41005 without a `media` part.
#[tokio::test]
async fn article_images_are_judged_as_wechat_judges_them() {
    let s = Setup::new(Backend::Sqlite).await;
    let c = s.client();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.resize(4096, 7);
    let url = c.media_upload_image("商品 photo.png", png.clone()).await.unwrap();
    assert!(url.starts_with("http://mmbiz.qpic.cn/mmbiz_png/fake"), "{url}");
    let jpeg = c.media_upload_image("cover.png", vec![0xff, 0xd8, 0xff, 0xe0]).await.unwrap();
    assert!(jpeg.starts_with("http://mmbiz.qpic.cn/mmbiz_jpg/fake"), "the bytes say JPEG, whatever the name: {jpeg}");
    assert_eq!(
        c.media_upload_image("a.gif", b"GIF89a".to_vec()).await.unwrap_err(),
        CallError::Invalid("an article image must be a JPEG or PNG".into())
    );
    let mut large = png.clone();
    large.resize(1024 * 1024 + 1, 0);
    assert_eq!(
        c.media_upload_image("big.png", large.clone()).await.unwrap_err(),
        CallError::Invalid("an article image is 1 byte to 1 MB (got 1048577 bytes)".into())
    );
    assert_eq!(s.fake.calls_to("/cgi-bin/media/uploadimg").len(), 2, "the refused ones were not sent");

    // The fake on its own, as WeChat answers a client that does not check.
    let token = c.tokens().get().await.unwrap();
    let raw = async |name: &str, bytes: &[u8]| {
        let mut body = format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        let resp = reqwest::Client::new()
            .post(format!("{}/cgi-bin/media/uploadimg?access_token={token}", s.config.wechat.api_base))
            .header("content-type", "multipart/form-data; boundary=XyZ")
            .body(body)
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = resp.json().await.unwrap();
        (v["errcode"].as_i64().unwrap_or(0), v["errmsg"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(raw("media", b"GIF89a").await, (40005, "invalid file type".to_owned()));
    assert_eq!(raw("media", &large).await, (40006, "invalid meida size".to_owned()));
    assert_eq!(raw("media", b"").await, (40006, "invalid meida size".to_owned()));
    assert_eq!(raw("file", &png).await, (41005, "media data missing".to_owned()));
    assert_eq!(raw("media", &png).await.0, 0);
    s.db.drop_db().await;
}
