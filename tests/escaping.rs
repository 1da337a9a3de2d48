//! Values from data never become markup in a chat reply: WeChat renders `<a href>` in text
//! messages, so a store, product or ledger note carrying a link, a script tag, a CDATA end or
//! quotes reaches the follower as text, through every handler that builds a text by hand — and
//! the links wxoa builds itself stay links.

mod common;

use common::*;
use serde_json::json;
use wxoa::wechat::envelope::Mode;

/// A link, a script, a CDATA end and both quotes, within a store name's 50 characters.
const EVIL: &str = r#"<a href="//e.x">X</a><script>]]>"q'</script>"#;

/// The reply's `Content`, checked to hold `EVIL` as text only.
fn assert_inert(what: &str, reply: Option<String>) -> String {
    let reply = reply.unwrap_or_else(|| panic!("{what}: a reply"));
    let content = field(&reply, "Content").unwrap_or_else(|| panic!("{what}: a text reply: {reply}"));
    assert!(!content.contains("<a href=\"//e.x") && !content.contains("<script"), "{what}: markup is live: {content}");
    assert!(
        content.contains(r#"＜a href="//e.x"＞X＜/a＞＜script＞]]＞"q'＜/script＞"#),
        "{what}: the value is shown as text, whole: {content}"
    );
    content
}

#[tokio::test]
async fn data_in_text_replies_is_text() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        config.checkout.base_url = "https://shop.example.com/checkout".into();
        let server = TestServer::start(config).await;
        let store = server.state.store.clone();
        let csv_field = EVIL.replace('"', "\"\"");
        let stores = format!(
            "id,name,city,address,latitude,longitude,opening_hours,phone,code,name_zh\n\
             31,\"{csv_field}\",Shanghai,\"{csv_field}\",31.2362,121.4812,10:00-22:00,021-6000-0031,SH31,\"{csv_field}\"\n"
        );
        let (imported, problems) = wxoa::stores::import(&store, &stores).await.unwrap();
        assert_eq!(imported, 1, "{problems:?}");

        // The store list, for a location next to it.
        let location = "<xml><ToUserName>gh_1</ToUserName><FromUserName>oEscape01</FromUserName><CreateTime>1</CreateTime>\
             <MsgType>location</MsgType><Location_X>31.2362</Location_X><Location_Y>121.4812</Location_Y><Scale>15</Scale>\
             <Label>x</Label><MsgId>7100001</MsgId></xml>";
        let (status, reply) = server.send(location).await;
        assert_eq!(status, 200);
        assert_inert("store list", reply);

        // The store QR code's welcome.
        let t = server.state.clock.now_secs();
        let (status, reply) = server.send(&event_message("oEscape02", "subscribe", "qrscene_store_31", t)).await;
        assert_eq!(status, 200);
        assert_inert("store welcome", reply);

        // The buy reply, for a product named by the campaign; wxoa's own link stays a link.
        let campaign = json!({
            "name": "Escapes",
            "product": { "sku": "ESC-1", "name": EVIL, "stock": 5 },
            "articles": [{ "title": "t", "content": "<p>x</p>", "cover_media_id": "THUMB_1" }]
        });
        let (status, c) =
            api_call(&server.addr.to_string(), "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(campaign))
                .await;
        assert_eq!(status, 201, "{c}");
        let (status, reply) = server.send(&text_message("oEscape03", 7100002, "buy")).await;
        assert_eq!(status, 200);
        let content = assert_inert("buy", reply);
        assert!(content.contains("<a href=\"https://shop.example.com/checkout?token="), "{content}");

        // The points history, with a ledger note from the CRM.
        wxoa::members::import::import(&store, "card,phone\nC8001,13800000081\n").await.unwrap();
        wxoa::with_pool!(&store, pool => sqlx::query("UPDATE members SET openid = 'oEscape04' WHERE card_no = 'C8001'")
            .execute(pool).await.map(|_| ()))
        .unwrap();
        {
            use wxoa::members::points::{self, Change, Kind, Rules, Who};
            let loyalty = server.state.config.loyalty.clone();
            let rules = Rules {
                loyalty: &loyalty,
                crm: wxoa::crm::Events::off(),
                notices: None,
                tiers: false,
                now: store.now_ms(),
            };
            let mut earn = Change::new("crm:escape", Who::Card("C8001".into()), Kind::Earn, 10, rules.now);
            earn.note = Some(EVIL.into());
            let mut tx = store.begin().await.unwrap();
            points::post(&mut tx, &rules, &[earn]).await.unwrap();
            tx.commit().await.unwrap();
        }
        let (status, reply) = server.send(&event_message("oEscape04", "CLICK", "history", t + 1)).await;
        assert_eq!(status, 200);
        let content = assert_inert("history", reply);
        assert!(content.contains("<a href=\"http"), "the page link stays a link: {content}");

        server.stop().await;
        db.drop_db().await;
    }
}
