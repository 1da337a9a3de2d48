//! The H5 membership pages end to end over HTTP, with the fake WeChat's OAuth: sign-in, bind
//! (good, wrong phone, locked out, already bound), enrol, the card page, unbind; tampered cookies,
//! replayed states and cross-site posts — on SQLite and PostgreSQL.

mod common;

use common::h5_browser::H5Browser as Browser;
use common::*;
use wxoa::wechat::envelope::Mode;

/// A server whose OAuth goes to a fake WeChat, with `tweak` applied to its config.
async fn h5_server(
    backend: Backend,
    tweak: impl FnOnce(&mut wxoa::config::Config),
) -> (Db, TestServer, wxoa::fake::FakeWeChat, wxoa::config::Config) {
    let db = Db::new(backend).await;
    let mut config = test_config(&db, Mode::Safe);
    let fake = start_fake(&mut config).await;
    config.h5.oauth_base = config.wechat.api_base.clone();
    tweak(&mut config);
    let server = TestServer::start(config.clone()).await;
    (db, server, fake, config)
}

fn token(page: &str) -> String {
    let at = page.find("name=\"token\" value=\"").expect("a form token") + 20;
    page[at..at + 64].to_owned()
}

#[tokio::test]
async fn sign_in_bind_enrol_and_the_card_page() {
    for backend in backends() {
        let (db, server, fake, _) = h5_server(backend, |_| {}).await;
        let crm = "card,name,phone,points\nC1001,Li Lei,13812345678,1200\nC2002,Han Meimei,13900000000,10\n";
        wxoa::members::import::import(&server.state.store, crm).await.unwrap();

        // Not signed in: the card sends the browser through OAuth.
        let mut a = Browser::new(&server);
        let page = a.get("/h5/card").await;
        assert_eq!((page.status, page.location.as_deref()), (303, Some("/h5/start?to=card")));
        assert_eq!(a.get("/h5/start?to=https://evil.example").await.status, 400, "no open redirects");

        assert_eq!(a.sign_in("card", "oMemberA").await, "/h5/card");
        let page = a.get("/h5/card").await;
        assert_eq!((page.status, page.location.as_deref()), (303, Some("/h5/bind")), "not bound yet");
        let form = a.get("/h5/bind").await;
        assert_eq!(form.status, 200);
        let t = token(&form.body);

        // Wrong phone: refused, nothing bound.
        let wrong = a.post("/h5/bind", &[("token", &t), ("card_no", "C1001"), ("phone", "13800000000")]).await;
        assert_eq!(wrong.status, 400);
        assert!(wrong.body.contains("does not match"), "{}", wrong.body);
        // A form posted without the session's token (cross-site) changes nothing.
        let forged = a.post("/h5/bind", &[("token", "0"), ("card_no", "C1001"), ("phone", "13812345678")]).await;
        assert_eq!(forged.status, 403);
        // The right card and phone, typed messily: bound, and the card page shows the balance.
        let ok = a.post("/h5/bind", &[("token", &t), ("card_no", " c-1001 "), ("phone", "+86 138 1234 5678")]).await;
        assert_eq!((ok.status, ok.location.as_deref()), (303, Some("/h5/card")), "{}", ok.body);
        let card = a.get("/h5/card").await;
        assert_eq!(card.status, 200);
        assert!(
            card.body.contains("id=\"points\">1200<") && card.body.contains("C1001") && card.body.contains("Li Lei"),
            "{}",
            card.body
        );
        let qr = card.body.split("id=\"card-qr\">").nth(1).unwrap_or_default();
        assert!(qr.trim_start().starts_with("<svg"), "the card number as a QR code: {}", card.body);

        // Another follower cannot take the same card.
        let mut b = Browser::new(&server);
        b.sign_in("bind", "oMemberB").await;
        let tb = token(&b.get("/h5/bind").await.body);
        let taken = b.post("/h5/bind", &[("token", &tb), ("card_no", "C1001"), ("phone", "13812345678")]).await;
        assert_eq!(taken.status, 409, "{}", taken.body);
        // Five wrong tries lock the follower out, even with the right details afterwards.
        for _ in 0..5 {
            b.post("/h5/bind", &[("token", &tb), ("card_no", "C2002"), ("phone", "13911111111")]).await;
        }
        let locked = b.post("/h5/bind", &[("token", &tb), ("card_no", "C2002"), ("phone", "13900000000")]).await;
        assert_eq!(locked.status, 429, "{}", locked.body);
        assert!(locked.body.contains("Too many attempts"));

        // A new follower enrols instantly and gets a card number.
        let mut c = Browser::new(&server);
        c.sign_in("bind", "oMemberC").await;
        let tc = token(&c.get("/h5/bind").await.body);
        let bad = c.post("/h5/enrol", &[("token", &tc), ("name", "  "), ("phone", "13700000000")]).await;
        assert_eq!(bad.status, 400);
        let dup = c.post("/h5/enrol", &[("token", &tc), ("name", "Copycat"), ("phone", "13812345678")]).await;
        assert!(dup.body.contains("already has a card"), "{}", dup.body);
        let joined = c
            .post(
                "/h5/enrol",
                &[("token", &tc), ("name", "Zhao Liu"), ("phone", "137 0000 0000"), ("birthday", "1990-02-03")],
            )
            .await;
        assert_eq!(joined.status, 303, "{}", joined.body);
        let card = c.get("/h5/card").await;
        assert!(card.body.contains("id=\"card-no\">WX") && card.body.contains("Zhao Liu"), "{}", card.body);

        // With the profile granted (snsapi_userinfo), the WeChat nickname prefills the form.
        let mut p = Browser::new(&server);
        assert_eq!(p.sign_in("bind&profile=1", "oProfile42").await, "/h5/bind");
        let form = p.get("/h5/bind").await;
        assert!(
            form.body.contains("id=\"name\" name=\"name\" maxlength=\"64\" value=\"Follower le42\""),
            "{}",
            form.body
        );
        assert!(!fake.calls_to("/sns/userinfo").is_empty());

        // Unbind frees the card.
        let ta = token(&a.get("/h5/card").await.body);
        let gone = a.post("/h5/unbind", &[("token", &ta)]).await;
        assert_eq!(gone.location.as_deref(), Some("/h5/bind"));
        assert!(wxoa::members::by_openid(&server.state.store, "oMemberA").await.unwrap().is_none());

        // Replayed or foreign OAuth states, bad codes and tampered cookies are refused.
        let mut d = Browser::new(&server);
        let start = d.get("/h5/start?to=card").await;
        let state = start.location.unwrap().split("state=").nth(1).unwrap().split('#').next().unwrap().to_owned();
        let code = fake.oauth_code("oMemberD");
        let mut other = Browser::new(&server);
        other.get("/h5/start?to=card").await;
        assert_eq!(
            other.get(&format!("/h5/oauth/callback?code={code}&state={state}")).await.status,
            400,
            "another browser's state"
        );
        assert_eq!(
            d.get(&format!("/h5/oauth/callback?code=bogus&state={state}")).await.status,
            400,
            "a code WeChat refuses"
        );
        assert_eq!(
            d.get(&format!("/h5/oauth/callback?code={code}&state={state}")).await.status,
            400,
            "states are single use"
        );
        d.cookie = Some(format!("{}0", d.cookie.clone().unwrap()));
        assert_eq!(
            d.get("/h5/card").await.location.as_deref(),
            Some("/h5/start?to=card"),
            "a tampered cookie is no session"
        );
        assert!(
            fake.calls_to("/sns/oauth2/access_token").iter().all(|c| !c.query.contains_key("secret")),
            "the secret is not recorded"
        );

        server.stop().await;
        db.drop_db().await;
    }
}

/// Concurrent redemptions through the pages: the last item goes to exactly one member, and one
/// member's points pay for exactly one of two items they cannot both afford.
#[tokio::test]
async fn concurrent_redemptions_neither_oversell_nor_overdraw() {
    for backend in backends() {
        let (db, server, _, _) = h5_server(backend, |_| {}).await;
        let store = server.state.store.clone();
        let crm = "card,name,phone,points\nC9001,A,13800000001,1000\nC9002,B,13800000002,1000\nC9003,C,13800000003,1000\nC9004,D,13800000004,1000\n";
        wxoa::members::import::import(&store, crm).await.unwrap();
        use wxoa::members::redeem::{Item, put_item};
        put_item(&store, &Item { id: 1, name: "Limited scarf".into(), points_cost: 100, stock: 1 }).await.unwrap();
        put_item(&store, &Item { id: 2, name: "Perfume".into(), points_cost: 600, stock: 10 }).await.unwrap();
        put_item(&store, &Item { id: 3, name: "Bag".into(), points_cost: 600, stock: 10 }).await.unwrap();

        let mut browsers = Vec::new();
        for (i, card) in ["C9001", "C9002", "C9003", "C9004"].iter().enumerate() {
            let mut b = Browser::new(&server);
            b.sign_in("bind", &format!("oRedeem{i}")).await;
            let t = token(&b.get("/h5/bind").await.body);
            let phone = format!("1380000000{}", i + 1);
            assert_eq!(b.post("/h5/bind", &[("token", &t), ("card_no", card), ("phone", &phone)]).await.status, 303);
            let t = token(&b.get("/h5/catalogue").await.body);
            browsers.push((b, t));
        }

        // Four members, one scarf.
        let mut tasks = Vec::new();
        for (mut b, t) in browsers.drain(..) {
            tasks.push(tokio::spawn(async move {
                let page = b.post("/h5/redeem", &[("token", &t), ("item", "1")]).await;
                (page.status, page.body, b, t)
            }));
        }
        let mut wins = 0;
        for task in tasks {
            let (status, body, b, t) = task.await.unwrap();
            match status {
                200 => {
                    assert!(body.contains("Redeemed Limited scarf"), "{body}");
                    wins += 1;
                }
                409 => assert!(body.contains("sold out"), "{body}"),
                other => panic!("{backend:?}: {other}: {body}"),
            }
            browsers.push((b, t));
        }
        assert_eq!(wins, 1, "{backend:?}: exactly one member gets the last scarf");

        // One member, 1000 points or 900, two items of 600 at once: exactly one goes through.
        let (b, t) = browsers.pop().unwrap();
        // A second browser holding the same session.
        let (mut b1, mut b2) = (b, Browser::new(&server));
        b2.cookie = b1.cookie.clone();
        let (t1, t2) = (t.clone(), t);
        let (r1, r2) =
            tokio::join!(async { b1.post("/h5/redeem", &[("token", &t1), ("item", "2")]).await.status }, async {
                b2.post("/h5/redeem", &[("token", &t2), ("item", "3")]).await.status
            });
        let mut statuses = [r1, r2];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "{backend:?}");
        let negative: i64 = wxoa::with_pool!(&store, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT member_id, SUM(points) AS total FROM points_ledger GROUP BY member_id) t WHERE total < 0")
            .fetch_one(pool).await).unwrap();
        assert_eq!(negative, 0);
        let stock: i64 = wxoa::with_pool!(&store, pool => sqlx::query_scalar("SELECT stock FROM catalogue WHERE id = 1").fetch_one(pool).await).unwrap();
        assert_eq!(stock, 0);
        // Each redemption queued its confirmation with it, and only those.
        let notices = wxoa::jobs::outbox::list(&store, None, 100).await.unwrap();
        assert_eq!(notices.iter().filter(|j| j.dedupe_key.starts_with("redemption:")).count(), 2, "{notices:?}");
        assert!(notices.iter().all(|j| j.payload.contains("TPL_REDEMPTION")));
        // Unknown items and forged forms change nothing.
        let (mut b, t) = browsers.pop().unwrap();
        assert_eq!(b.post("/h5/redeem", &[("token", &t), ("item", "99")]).await.status, 404);
        assert_eq!(b.post("/h5/redeem", &[("token", "x"), ("item", "2")]).await.status, 403);
        server.stop().await;
        db.drop_db().await;
    }
}

/// Two members race for one advisor's slot: exactly one gets it, with a confirmation and a
/// reminder queued; a cancelled booking's reminder is skipped when due, a kept one's is sent.
#[tokio::test]
async fn advisor_bookings_cannot_double_book_and_reminders_respect_cancellations() {
    for backend in backends() {
        // The reminders are run by hand below.
        let (db, server, fake, config) = h5_server(backend, |c| c.outbox.enabled = false).await;
        let store = server.state.store.clone();
        wxoa::stores::import(&store, &std::fs::read_to_string(repo().join("tests/fixtures/stores.csv")).unwrap())
            .await
            .unwrap();
        use wxoa::bookings::{Advisor, put_advisor};
        put_advisor(&store, &Advisor { id: 7, store_id: 22, name: "Amy".into() }).await.unwrap();
        wxoa::members::import::import(&store, "card,phone\nC7001,13800000071\nC7002,13800000072\n").await.unwrap();

        let mut people = Vec::new();
        for (i, card) in ["C7001", "C7002"].iter().enumerate() {
            let mut b = Browser::new(&server);
            b.sign_in("bind", &format!("oBook{i}")).await;
            let t = token(&b.get("/h5/bind").await.body);
            let phone = format!("138000000{}", 71 + i);
            assert_eq!(b.post("/h5/bind", &[("token", &t), ("card_no", card), ("phone", &phone)]).await.status, 303);
            let page = b.get("/h5/book?store=22&advisor=7").await;
            assert!(page.body.contains("Amy") && page.body.contains("id=\"slots\""), "{}", page.body);
            people.push((b, token(&page.body)));
        }
        let slots = wxoa::bookings::free_slots(&store, 7, wxoa::store::now_ms()).await.unwrap();
        let (slot, later) = (slots[slots.len() - 2].to_string(), slots[slots.len() - 1].to_string());

        let (mut a, ta) = people.remove(0);
        let (mut b, tb) = people.remove(0);
        let form_a = [("token", ta.as_str()), ("advisor", "7"), ("slot", slot.as_str())];
        let form_b = [("token", tb.as_str()), ("advisor", "7"), ("slot", slot.as_str())];
        let (ra, rb) = tokio::join!(a.post("/h5/book", &form_a), b.post("/h5/book", &form_b));
        let mut statuses = [ra.status, rb.status];
        statuses.sort();
        assert_eq!(statuses, [303, 409], "{backend:?}: {} / {}", ra.body, rb.body);
        let (winner, wt, loser, lt) = if ra.status == 303 { (a, ta, b, tb) } else { (b, tb, a, ta) };
        let (mut winner, mut loser) = (winner, loser);
        assert!(
            !wxoa::bookings::free_slots(&store, 7, wxoa::store::now_ms())
                .await
                .unwrap()
                .contains(&slot.parse().unwrap())
        );
        // The loser books the next slot instead; then the winner cancels.
        assert_eq!(loser.post("/h5/book", &[("token", &lt), ("advisor", "7"), ("slot", &later)]).await.status, 303);
        let mine = winner.get("/h5/book").await;
        assert!(mine.body.contains("id=\"upcoming\""), "{}", mine.body);
        let booking_id = |body: &str| {
            let at = body.find("name=\"booking\" value=\"").unwrap() + 22;
            body[at..].split('"').next().unwrap().to_owned()
        };
        let winners_booking = booking_id(&mine.body);
        let losers_booking = booking_id(&loser.get("/h5/book").await.body);
        assert_eq!(
            loser.post("/h5/booking/cancel", &[("token", &lt), ("booking", &winners_booking)]).await.status,
            404,
            "not yours"
        );
        assert_eq!(
            winner.post("/h5/booking/cancel", &[("token", &wt), ("booking", &winners_booking)]).await.status,
            303
        );
        assert!(
            wxoa::bookings::free_slots(&store, 7, wxoa::store::now_ms())
                .await
                .unwrap()
                .contains(&slot.parse().unwrap()),
            "the slot is free again"
        );

        // Both confirmations and both reminders were queued; make the reminders due and send.
        let jobs = wxoa::jobs::outbox::list(&store, None, 100).await.unwrap();
        let keys: Vec<&str> = jobs.iter().map(|j| j.dedupe_key.as_str()).collect();
        for k in [
            format!("booking:{winners_booking}:confirmed"),
            format!("booking:{winners_booking}:reminder"),
            format!("booking:{losers_booking}:reminder"),
        ] {
            assert!(keys.contains(&k.as_str()), "{backend:?}: {k} in {keys:?}");
        }
        assert!(
            jobs.iter().find(|j| j.dedupe_key.ends_with(":reminder")).unwrap().run_at
                > wxoa::store::now_ms() + 3_600_000
        );
        wxoa::with_pool!(&store, pool => sqlx::query("UPDATE jobs SET run_at = 0").execute(pool).await.map(|_| ()))
            .unwrap();
        let client = wxoa::wechat::client::Client::new(&config.wechat, &config.rate_limits, store.clone());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker = wxoa::jobs::worker::Worker::new(
            store.clone(),
            client,
            config.outbox.clone(),
            std::sync::Arc::new(tokio::sync::Notify::new()),
        );
        let task = tokio::spawn(worker.run(stopped));
        assert!(eventually(10, || fake.calls_to("/cgi-bin/message/template/send").len() >= 3).await);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let _ = stop.send(true);
        task.await.unwrap();
        let sent = fake.calls_to("/cgi-bin/message/template/send");
        let reminders = sent.iter().filter(|c| c.body["template_id"] == "TPL_BOOKING_REMINDER").count();
        assert_eq!(reminders, 1, "only the kept booking's reminder goes out");
        assert_eq!(sent.len(), 3, "two confirmations and one reminder");
        let skipped = wxoa::jobs::outbox::list(&store, Some("done"), 100).await.unwrap();
        let cancelled = skipped.iter().find(|j| j.dedupe_key == format!("booking:{winners_booking}:reminder")).unwrap();
        assert_eq!(cancelled.result.as_deref(), Some("skipped: booking cancelled"));
        server.stop().await;
        db.drop_db().await;
    }
}

/// Account details and the paged history: valid edits saved, invalid ones refused with nothing
/// changed.
#[tokio::test]
async fn account_details_and_paged_history() {
    for backend in backends() {
        let (db, server, _, _) = h5_server(backend, |_| {}).await;
        let store = server.state.store.clone();
        wxoa::stores::import(&store, &std::fs::read_to_string(repo().join("tests/fixtures/stores.csv")).unwrap())
            .await
            .unwrap();
        wxoa::members::import::import(&store, "card,name,phone,points\nC8001,Old Name,13800000081,5\n").await.unwrap();
        for i in 0..12 {
            wxoa::with_pool!(&store, pool => sqlx::query(
                "INSERT INTO points_ledger (member_id, kind, points, valid_until, reference, note, created_at) \
                 SELECT id, 'earn', $1, NULL, $2, $3, $4 FROM members WHERE card_no = 'C8001'")
                .bind(10 + i).bind(format!("order:{i}")).bind(format!("order {i}")).bind(1_000_000 + i)
                .execute(pool).await.map(|_| ()))
            .unwrap();
        }
        let mut b = Browser::new(&server);
        b.sign_in("bind", "oAccount").await;
        let t = token(&b.get("/h5/bind").await.body);
        assert_eq!(
            b.post("/h5/bind", &[("token", &t), ("card_no", "C8001"), ("phone", "13800000081")]).await.status,
            303
        );

        let page = b.get("/h5/history").await;
        assert_eq!(page.body.matches("<tr>").count(), 10, "{}", page.body);
        assert!(page.body.contains("id=\"next\"") && !page.body.contains("id=\"prev\""));
        let page2 = b.get("/h5/history?page=2").await;
        assert_eq!(page2.body.matches("<tr>").count(), 3, "13 entries: 10 + 3");
        assert!(page2.body.contains("id=\"prev\"") && !page2.body.contains("id=\"next\""));

        // The chat's history reply (menu key `history`) links to this whole history, not the card.
        let click = format!(
            "<xml><ToUserName><![CDATA[gh_3f2a1b0c9d8e]]></ToUserName><FromUserName><![CDATA[oAccount]]></FromUserName>\
             <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event>\
             <EventKey><![CDATA[history]]></EventKey></xml>",
            wxoa::store::now_ms() / 1000
        );
        let (status, reply) = server.send(&click).await;
        assert_eq!(status, 200);
        let content = field(&reply.unwrap(), "Content").unwrap();
        assert!(content.starts_with("最近积分记录 / Recent transactions:"), "{content}");
        let link = content.split("<a href=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(link, "http://127.0.0.1:8080/h5/start?to=history", "{content}");
        let mut chat = Browser::new(&server);
        let path = link.trim_start_matches("http://127.0.0.1:8080");
        assert_eq!(chat.sign_in_from(path, "oAccount").await, "/h5/history");
        assert_eq!(chat.get("/h5/history").await.body.matches("<tr>").count(), 10);

        let t = token(&b.get("/h5/account").await.body);
        for (form, why) in [
            (vec![("name", "  "), ("birthday", ""), ("store", "")], "Please enter your name"),
            (vec![("name", "New Name"), ("birthday", "31/31/1990"), ("store", "")], "YYYY-MM-DD"),
            (vec![("name", "New Name"), ("birthday", ""), ("store", "999")], "choose a store"),
        ] {
            let mut form = form;
            form.push(("token", &t));
            let page = b.post("/h5/account", &form).await;
            assert_eq!(page.status, 400);
            assert!(page.body.contains(why), "{}", page.body);
        }
        let unchanged = wxoa::members::by_openid(&store, "oAccount").await.unwrap().unwrap();
        assert_eq!(unchanged.name.as_deref(), Some("Old Name"));
        let saved = b
            .post("/h5/account", &[("token", &t), ("name", " New　Name "), ("birthday", "1991-03-04"), ("store", "24")])
            .await;
        assert!(saved.status == 200 && saved.body.contains("id=\"saved\""), "{}", saved.body);
        let m = wxoa::members::by_openid(&store, "oAccount").await.unwrap().unwrap();
        assert_eq!(
            (m.name.as_deref(), m.birthday.as_deref(), m.store_id),
            (Some("New Name"), Some("1991-03-04"), Some(24))
        );
        server.stop().await;
        db.drop_db().await;
    }
}
