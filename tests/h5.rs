//! The H5 membership pages end to end over HTTP, with the fake WeChat's OAuth: sign-in, bind
//! (good, wrong phone, locked out per follower and per card, already bound), enrol, the card
//! page, unbind; the session-fixation attack; anonymous starts that write nothing; one-time
//! forms posted twenty times at once; redemptions and bookings with their confirmation steps;
//! tampered cookies, replayed states and cross-site posts — on SQLite and PostgreSQL.

mod common;

use common::h5_browser::{H5Browser as Browser, hidden_fields};
use common::oauth_server as h5_server;
use common::*;

async fn count(store: &wxoa::store::Store, sql: &'static str) -> i64 {
    wxoa::with_pool!(store, pool => sqlx::query_scalar(sql).fetch_one(pool).await).unwrap()
}

/// A member bound to `openid` in a signed-in browser, from a CRM row `card,phone` imported first.
async fn bound_browser(server: &TestServer, openid: &str, card: &str, phone: &str) -> Browser {
    let mut b = Browser::new(server);
    b.sign_in("bind", openid).await;
    let form = b.get("/h5/bind").await.body;
    let bound = b.submit(&form, "/h5/bind", &[("card_no", card), ("phone", phone)]).await;
    assert_eq!((bound.status, bound.location.as_deref()), (303, Some("/h5/card?bound=1")), "{}", bound.body);
    b
}

#[tokio::test]
async fn sign_in_bind_enrol_and_the_card_page() {
    for backend in backends() {
        let (db, server, fake, _) = h5_server(backend, |_| {}).await;
        let store = server.state.store.clone();
        let crm = "card,name,phone,points\nC1001,Li Lei,13812345678,1200\nC2002,Han Meimei,13900000000,10\n";
        wxoa::members::import::import(&store, crm).await.unwrap();

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
        for header in ["content-security-policy", "x-frame-options", "x-content-type-options", "referrer-policy"] {
            assert!(form.headers.contains_key(header), "{header} on an H5 page");
        }
        assert_eq!(form.headers["cache-control"], "no-store");
        assert!(form.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));

        // Wrong phone: refused, nothing bound.
        let wrong = a.submit(&form.body, "/h5/bind", &[("card_no", "C1001"), ("phone", "13800000000")]).await;
        assert_eq!(wrong.status, 400);
        assert!(wrong.body.contains("does not match"), "{}", wrong.body);
        // A form posted without the session's token (cross-site) changes nothing.
        let once = hidden_fields(&form.body, "/h5/bind")[1].1.clone();
        let forged = a
            .post("/h5/bind", &[("token", "0"), ("once", &once), ("card_no", "C1001"), ("phone", "13812345678")])
            .await;
        assert_eq!(forged.status, 403);
        // The right card and phone, typed messily: bound, and the card page shows the balance.
        let ok = a.submit(&form.body, "/h5/bind", &[("card_no", " c-1001 "), ("phone", "+86 138 1234 5678")]).await;
        assert_eq!((ok.status, ok.location.as_deref()), (303, Some("/h5/card?bound=1")), "{}", ok.body);
        let card = a.get("/h5/card?bound=1").await;
        assert_eq!(card.status, 200);
        assert!(card.body.contains("id=\"done\">绑定成功"), "a success banner: {}", card.body);
        assert!(
            card.body.contains("id=\"points\">1200<") && card.body.contains("C1001") && card.body.contains("Li Lei"),
            "{}",
            card.body
        );
        let qr = card.body.split("id=\"card-qr\">").nth(1).unwrap_or_default();
        assert!(qr.trim_start().starts_with("<svg"), "the card number as a QR code: {}", card.body);
        // The chat hears of it: a customer-service text queued with the binding.
        let jobs = wxoa::jobs::outbox::list(&store, None, 100).await.unwrap();
        let told = jobs.iter().find(|j| j.dedupe_key.starts_with("bound:")).expect("a chat confirmation");
        assert_eq!(told.kind, wxoa::jobs::Kind::CustomMessage);
        assert!(told.payload.contains("oMemberA") && told.payload.contains("C1001"), "{}", told.payload);

        // Another follower cannot take the same card.
        let mut b = Browser::new(&server);
        b.sign_in("bind", "oMemberB").await;
        let fb = b.get("/h5/bind").await.body;
        let taken = b.submit(&fb, "/h5/bind", &[("card_no", "C1001"), ("phone", "13812345678")]).await;
        assert_eq!(taken.status, 409, "{}", taken.body);
        // Five wrong tries lock the follower out, even with the right details afterwards…
        for _ in 0..5 {
            b.submit(&fb, "/h5/bind", &[("card_no", "C2002"), ("phone", "13911111111")]).await;
        }
        let locked = b.submit(&fb, "/h5/bind", &[("card_no", "C2002"), ("phone", "13900000000")]).await;
        assert_eq!(locked.status, 429, "{}", locked.body);
        assert!(locked.body.contains("Too many attempts"));
        // …and lock the card: a second WeChat account gets no fresh tries on it.
        let mut e = Browser::new(&server);
        e.sign_in("bind", "oMemberE").await;
        let fe = e.get("/h5/bind").await.body;
        let also = e.submit(&fe, "/h5/bind", &[("card_no", "C2002"), ("phone", "13900000000")]).await;
        assert_eq!(also.status, 429, "the card is locked for everyone: {}", also.body);
        assert!(wxoa::members::by_openid(&store, "oMemberE").await.unwrap().is_none());

        // A new follower enrols instantly and gets a card number.
        let mut c = Browser::new(&server);
        c.sign_in("bind", "oMemberC").await;
        let fc = c.get("/h5/bind").await.body;
        let bad = c.submit(&fc, "/h5/enrol", &[("name", "  "), ("phone", "13700000000")]).await;
        assert_eq!(bad.status, 400);
        let dup = c.submit(&fc, "/h5/enrol", &[("name", "Copycat"), ("phone", "13812345678")]).await;
        assert!(dup.body.contains("already has a card"), "{}", dup.body);
        let future =
            c.submit(&fc, "/h5/enrol", &[("name", "Zhao"), ("phone", "13700000000"), ("birthday", "2999-02-03")]).await;
        assert_eq!(future.status, 400);
        assert!(future.body.contains("cannot be in the future"), "a future birthday says why: {}", future.body);
        let joined = c
            .submit(&fc, "/h5/enrol", &[("name", "Zhao Liu"), ("phone", "137 0000 0000"), ("birthday", "1990-02-03")])
            .await;
        assert_eq!((joined.status, joined.location.as_deref()), (303, Some("/h5/card?welcome=1")), "{}", joined.body);
        let card = c.get("/h5/card?welcome=1").await;
        assert!(card.body.contains("id=\"card-no\">WX") && card.body.contains("Zhao Liu"), "{}", card.body);
        assert!(card.body.contains("id=\"done\">入会成功"), "{}", card.body);
        let jobs = wxoa::jobs::outbox::list(&store, None, 100).await.unwrap();
        assert!(jobs.iter().any(|j| j.dedupe_key.starts_with("enrolled:") && j.payload.contains("Welcome, Zhao Liu")));

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
        let card = a.get("/h5/card").await.body;
        let gone = a.submit(&card, "/h5/unbind", &[]).await;
        assert_eq!(gone.location.as_deref(), Some("/h5/bind?unbound=1"));
        assert!(wxoa::members::by_openid(&store, "oMemberA").await.unwrap().is_none());

        // Replayed or foreign OAuth states, bad codes and tampered cookies are refused.
        let mut d = Browser::new(&server);
        let start = d.get("/h5/start?to=card").await;
        let state = start.location.unwrap().split("state=").nth(1).unwrap().split('&').next().unwrap().to_owned();
        let state = state.split('#').next().unwrap().to_owned();
        let code = fake.oauth_code("oMemberD");
        let mut other = Browser::new(&server);
        other.get("/h5/start?to=card").await;
        assert_eq!(
            other.get(&format!("/h5/oauth/callback?code={code}&state={state}")).await.status,
            400,
            "another browser's state"
        );
        let no_cookie = Browser::new(&server).get(&format!("/h5/oauth/callback?code={code}&state={state}")).await;
        assert_eq!(no_cookie.status, 400, "a state without its cookie");
        assert_eq!(
            d.get(&format!("/h5/oauth/callback?code=bogus&state={state}")).await.status,
            400,
            "a code WeChat refuses"
        );
        assert_eq!(
            d.get(&format!("/h5/oauth/callback?code={code}&state={state}")).await.status,
            400,
            "states are single use: the first callback spent it"
        );
        let mut signed = Browser::new(&server);
        signed.sign_in("card", "oMemberD").await;
        let session = signed.session().unwrap().clone();
        signed.cookies.insert("wxoa_session".into(), format!("{session}0"));
        assert_eq!(
            signed.get("/h5/card").await.location.as_deref(),
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

/// The fixation attack: an attacker plants their own session cookie in the victim's browser
/// before the victim signs in. The sign-in gives the victim a new session and ends the
/// planted one, so the attacker's browser can neither read the victim's card nor change their
/// details.
#[tokio::test]
async fn a_planted_session_cookie_does_not_become_the_victims_session() {
    for backend in backends() {
        let (db, server, _, _) = h5_server(backend, |_| {}).await;
        let store = server.state.store.clone();
        wxoa::members::import::import(&store, "card,name,phone,points\nC5001,Victim,13800000051,900\n").await.unwrap();

        let mut attacker = Browser::new(&server);
        attacker.sign_in("card", "oAttacker").await;
        let planted = attacker.session().unwrap().clone();

        // The victim's browser carries the attacker's cookie when it signs in, and binds.
        let mut victim = Browser::new(&server);
        victim.cookies.insert("wxoa_session".into(), planted.clone());
        assert_eq!(victim.sign_in("bind", "oVictim").await, "/h5/bind");
        assert_ne!(victim.session(), Some(&planted), "a new session id at sign-in");
        let form = victim.get("/h5/bind").await.body;
        let bound = victim.submit(&form, "/h5/bind", &[("card_no", "C5001"), ("phone", "13800000051")]).await;
        assert_eq!(bound.status, 303);
        assert!(victim.get("/h5/card").await.body.contains("id=\"points\">900<"));

        // The attacker's browser: signed out, no card, no edit.
        let card = attacker.get("/h5/card").await;
        assert_eq!((card.status, card.location.as_deref()), (303, Some("/h5/start?to=card")), "{}", card.body);
        assert!(!card.body.contains("Victim"));
        let edit = attacker.post("/h5/account", &[("token", "x"), ("name", "Pwned")]).await;
        assert_eq!(edit.location.as_deref(), Some("/h5/start?to=account"));
        let m = wxoa::members::by_openid(&store, "oVictim").await.unwrap().unwrap();
        assert_eq!(m.name.as_deref(), Some("Victim"));
        let planted_rows: i64 = wxoa::with_pool!(&store, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM h5_sessions WHERE id = $1").bind(planted.split('.').next().unwrap()).fetch_one(pool).await).unwrap();
        assert_eq!(planted_rows, 0, "the planted session is gone");
        server.stop().await;
        db.drop_db().await;
    }
}

/// 3,000 starts from browsers without cookies: no session or state is stored for any of them.
#[tokio::test]
async fn anonymous_starts_write_nothing() {
    for backend in backends() {
        let (db, server, _, _) = h5_server(backend, |_| {}).await;
        let store = server.state.store.clone();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let url = format!("http://{}/h5/start?to=card", server.addr);
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..16 {
            let (http, url) = (http.clone(), url.clone());
            tasks.spawn(async move {
                for _ in (worker..3000).step_by(16) {
                    let resp = http.get(&url).send().await.unwrap();
                    assert_eq!(resp.status().as_u16(), 302);
                    assert!(resp.headers()["set-cookie"].to_str().unwrap().starts_with("wxoa_oauth="));
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert_eq!(count(&store, "SELECT COUNT(*) FROM h5_sessions").await, 0, "{backend:?}");
        server.stop().await;
        db.drop_db().await;
    }
}

/// The same form posted 20 times at once (a double tap, a reload, a resend): one effect, and
/// every post lands on the same result page.
#[tokio::test]
async fn a_form_posted_twenty_times_at_once_takes_effect_once() {
    for backend in backends() {
        let (db, server, _, _) = h5_server(backend, |_| {}).await;
        let store = server.state.store.clone();
        wxoa::members::import::import(&store, "card,name,phone,points\nC6001,Twenty,13800000061,5000\n").await.unwrap();
        wxoa::members::redeem::put_item(
            &store,
            &wxoa::members::redeem::Item { id: 1, name: "Scarf".into(), points_cost: 500, stock: 50 },
        )
        .await
        .unwrap();
        wxoa::stores::import(&store, &std::fs::read_to_string(repo().join("tests/fixtures/stores.csv")).unwrap())
            .await
            .unwrap();
        wxoa::bookings::put_advisor(&store, &wxoa::bookings::Advisor { id: 7, store_id: 22, name: "Amy".into() })
            .await
            .unwrap();
        let b = bound_browser(&server, "oTwenty", "C6001", "13800000061").await;
        let cookie = b.cookie_header();

        // Redeem: the catalogue → the confirmation → 20 posts of its form.
        let mut one = Browser::new(&server);
        one.cookies = b.cookies.clone();
        let catalogue = one.get("/h5/catalogue").await.body;
        assert!(catalogue.contains("href=\"/h5/redeem?item=1\""), "{catalogue}");
        let confirm = one.get("/h5/redeem?item=1").await;
        assert!(confirm.body.contains("id=\"after\">4500<"), "the balance after: {}", confirm.body);
        let form = hidden_fields(&confirm.body, "/h5/redeem");
        let results = post_twenty(&server, &cookie, "/h5/redeem", &form).await;
        assert!(results.iter().all(|r| r == &results[0]), "{results:?}");
        assert!(results[0].starts_with("/h5/catalogue?redeemed="), "{results:?}");
        let redeemed: i64 = wxoa::with_pool!(&store, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM points_ledger WHERE kind = 'redeem'").fetch_one(pool).await)
        .unwrap();
        assert_eq!(redeemed, 1, "{backend:?}: one -500, not twenty");
        let done = one.get(&results[0]).await;
        assert!(
            done.body.contains("id=\"done\">兑换成功：Scarf") && done.body.contains("id=\"points\">4500<"),
            "{}",
            done.body
        );
        let notices = wxoa::jobs::outbox::list(&store, None, 100).await.unwrap();
        assert_eq!(notices.iter().filter(|j| j.dedupe_key.starts_with("redemption:")).count(), 1);

        // Book: a slot → the confirmation → 20 posts.
        let week = one.get("/h5/book?store=22&advisor=7").await.body;
        let link =
            week.split("href=\"/h5/book/confirm?").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
        let confirm = one.get(&format!("/h5/book/confirm?{link}")).await;
        assert!(confirm.body.contains("id=\"confirm-book\""), "{}", confirm.body);
        let form = hidden_fields(&confirm.body, "/h5/book");
        let results = post_twenty(&server, &cookie, "/h5/book", &form).await;
        assert!(results.iter().all(|r| r == &results[0]) && results[0].starts_with("/h5/book?booked="), "{results:?}");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM bookings").await, 1, "{backend:?}");
        let booked = one.get(&results[0]).await.body;
        assert!(booked.contains("id=\"done\">预约成功") && booked.contains("with Amy"), "{booked}");
        // The store reads Chinese first, as the stores file names it.
        assert!(booked.contains("新天地店 Xintiandi"), "{booked}");
        // The slot shows as taken now.
        let week = one.get("/h5/book?store=22&advisor=7").await.body;
        assert_eq!(week.matches("class=\"slot taken\"").count(), 1, "{week}");

        // Cancel: its confirmation → 20 posts.
        let booking = results[0].trim_start_matches("/h5/book?booked=");
        let confirm = one.get(&format!("/h5/booking/cancel?booking={booking}")).await.body;
        let form = hidden_fields(&confirm, "/h5/booking/cancel");
        let results = post_twenty(&server, &cookie, "/h5/booking/cancel", &form).await;
        assert!(results.iter().all(|r| r == &format!("/h5/book?cancelled={booking}")), "{results:?}");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM bookings WHERE status = 'cancelled'").await, 1);

        // Enrol, from a new follower: one member.
        let mut newcomer = Browser::new(&server);
        newcomer.sign_in("bind", "oNewcomer").await;
        let page = newcomer.get("/h5/bind").await.body;
        let mut form = hidden_fields(&page, "/h5/enrol");
        form.extend([("name".into(), "New One".into()), ("phone".into(), "13600000001".into())]);
        let results = post_twenty(&server, &newcomer.cookie_header(), "/h5/enrol", &form).await;
        assert!(results.iter().all(|r| r == "/h5/card?welcome=1"), "{results:?}");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM members WHERE phone = '13600000001'").await, 1);
        let jobs = wxoa::jobs::outbox::list(&store, None, 100).await.unwrap();
        assert_eq!(jobs.iter().filter(|j| j.dedupe_key.starts_with("enrolled:")).count(), 1, "one welcome");

        // A key from another sign-in is not this session's form.
        let mut stranger = Browser::new(&server);
        stranger.sign_in("card", "oStranger").await;
        let forged = stranger.post("/h5/enrol", &[("token", "x"), ("once", &form[1].1)]).await;
        assert_eq!(forged.status, 403);
        server.stop().await;
        db.drop_db().await;
    }
}

/// Posts `form` 20 times at once with `cookie`; the result URLs (each must be a 303).
async fn post_twenty(server: &TestServer, cookie: &str, action: &str, form: &[(String, String)]) -> Vec<String> {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = format!("http://{}{action}", server.addr);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let req = http.post(&url).header("cookie", cookie).form(form);
        tasks.push(tokio::spawn(async move { req.send().await.unwrap() }));
    }
    let mut out = Vec::new();
    for t in tasks {
        let resp = t.await.unwrap();
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        assert_eq!(status, 303, "{action}: {}", resp.text().await.unwrap());
        out.push(location.unwrap());
    }
    out
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
        put_item(&store, &Item { id: 4, name: "Trunk".into(), points_cost: 5000, stock: 1 }).await.unwrap();

        let mut browsers = Vec::new();
        for (i, card) in ["C9001", "C9002", "C9003", "C9004"].iter().enumerate() {
            let b = bound_browser(&server, &format!("oRedeem{i}"), card, &format!("1380000000{}", i + 1)).await;
            browsers.push(b);
        }
        // What a member cannot afford says how many points are missing, and has no button.
        let catalogue = browsers[0].get("/h5/catalogue").await.body;
        assert!(catalogue.contains("还差 4000 积分 · 4000 more points needed"), "{catalogue}");
        assert!(!catalogue.contains("/h5/redeem?item=4"), "{catalogue}");

        // Four members confirm the one scarf at once.
        let mut forms = Vec::new();
        for b in browsers.iter_mut() {
            let confirm = b.get("/h5/redeem?item=1").await.body;
            forms.push(hidden_fields(&confirm, "/h5/redeem"));
        }
        let mut tasks = Vec::new();
        for (mut b, form) in browsers.drain(..).zip(forms) {
            tasks.push(tokio::spawn(async move {
                let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let page = b.post("/h5/redeem", &form).await;
                (page.status, page.body, b)
            }));
        }
        let mut wins = 0;
        for task in tasks {
            let (status, body, b) = task.await.unwrap();
            match status {
                303 => wins += 1,
                409 => assert!(body.contains("sold out"), "{body}"),
                other => panic!("{backend:?}: {other}: {body}"),
            }
            browsers.push(b);
        }
        assert_eq!(wins, 1, "{backend:?}: exactly one member gets the last scarf");

        // One member, 1000 points or 900, two items of 600 at once from two tabs: exactly one.
        let mut b1 = browsers.pop().unwrap();
        let mut b2 = Browser::new(&server);
        b2.cookies = b1.cookies.clone();
        let f1 = hidden_fields(&b1.get("/h5/redeem?item=2").await.body, "/h5/redeem");
        let f2 = hidden_fields(&b2.get("/h5/redeem?item=3").await.body, "/h5/redeem");
        let pairs = |f: &[(String, String)]| f.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>();
        let (f1, f2) = (pairs(&f1), pairs(&f2));
        let (r1, r2) = tokio::join!(
            async {
                let f: Vec<(&str, &str)> = f1.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                b1.post("/h5/redeem", &f).await.status
            },
            async {
                let f: Vec<(&str, &str)> = f2.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                b2.post("/h5/redeem", &f).await.status
            }
        );
        let mut statuses = [r1, r2];
        statuses.sort();
        assert_eq!(statuses, [303, 409], "{backend:?}");
        let negative: i64 = wxoa::with_pool!(&store, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT member_id, SUM(points) AS total FROM points_ledger GROUP BY member_id) t WHERE total < 0")
            .fetch_one(pool).await).unwrap();
        assert_eq!(negative, 0);
        let stock: i64 = wxoa::with_pool!(&store, pool => sqlx::query_scalar("SELECT stock FROM catalogue WHERE id = 1").fetch_one(pool).await).unwrap();
        assert_eq!(stock, 0);
        // Each redemption queued its confirmation with it, and only those.
        let notices = wxoa::jobs::outbox::list(&store, None, 100).await.unwrap();
        assert_eq!(notices.iter().filter(|j| j.dedupe_key.starts_with("redemption:")).count(), 2, "{notices:?}");
        assert!(
            notices
                .iter()
                .filter(|j| j.kind == wxoa::jobs::Kind::Template)
                .all(|j| j.payload.contains("TPL_REDEMPTION"))
        );
        // Unknown items, a confirmation of what is unaffordable, and forged forms change nothing.
        let mut b = browsers.pop().unwrap();
        assert_eq!(b.get("/h5/redeem?item=99").await.status, 404);
        assert_eq!(b.get("/h5/redeem?item=4").await.status, 409);
        let good = hidden_fields(&b.get("/h5/redeem?item=2").await.body, "/h5/redeem");
        let once = &good[1].1;
        assert_eq!(b.post("/h5/redeem", &[("token", &good[0].1), ("once", once), ("item", "99")]).await.status, 404);
        assert_eq!(b.post("/h5/redeem", &[("token", "x"), ("once", once), ("item", "2")]).await.status, 403);
        assert_eq!(b.post("/h5/redeem", &[("token", &good[0].1), ("once", "short"), ("item", "2")]).await.status, 400);
        server.stop().await;
        db.drop_db().await;
    }
}

/// Two members race for one advisor's slot: exactly one gets it, with a confirmation and a
/// reminder queued; a cancelled booking's reminder is skipped when due, a kept one's is sent.
/// A member may hold `h5.max_open_bookings` upcoming bookings, no more.
#[tokio::test]
async fn advisor_bookings_cannot_double_book_and_reminders_respect_cancellations() {
    for backend in backends() {
        // The reminders are run by hand below.
        let (db, server, fake, config) = h5_server(backend, |c| {
            c.outbox.enabled = false;
            c.h5.max_open_bookings = 2;
        })
        .await;
        let store = server.state.store.clone();
        wxoa::stores::import(&store, &std::fs::read_to_string(repo().join("tests/fixtures/stores.csv")).unwrap())
            .await
            .unwrap();
        use wxoa::bookings::{Advisor, put_advisor};
        put_advisor(&store, &Advisor { id: 7, store_id: 22, name: "Amy".into() }).await.unwrap();
        wxoa::members::import::import(&store, "card,phone\nC7001,13800000071\nC7002,13800000072\n").await.unwrap();

        let mut people = Vec::new();
        for (i, card) in ["C7001", "C7002"].iter().enumerate() {
            let mut b = bound_browser(&server, &format!("oBook{i}"), card, &format!("138000000{}", 71 + i)).await;
            let page = b.get("/h5/book?store=22&advisor=7").await;
            assert!(page.body.contains("Amy") && page.body.contains("id=\"slots\""), "{}", page.body);
            assert!(page.body.contains("周") && page.body.contains("class=\"day\""), "slots by day: {}", page.body);
            people.push(b);
        }
        let slots = wxoa::bookings::free_slots(&store, 7, store.now_ms()).await.unwrap();
        let n = slots.len();
        let (slot, later) = (slots[n - 2].to_string(), slots[n - 1].to_string());

        let mut a = people.remove(0);
        let mut b = people.remove(0);
        let confirm = |slot: &str| format!("/h5/book/confirm?advisor=7&slot={slot}");
        let fa = hidden_fields(&a.get(&confirm(&slot)).await.body, "/h5/book");
        let fb = hidden_fields(&b.get(&confirm(&slot)).await.body, "/h5/book");
        let fa: Vec<(&str, &str)> = fa.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let fb: Vec<(&str, &str)> = fb.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (ra, rb) = tokio::join!(a.post("/h5/book", &fa), b.post("/h5/book", &fb));
        let mut statuses = [ra.status, rb.status];
        statuses.sort();
        assert_eq!(statuses, [303, 409], "{backend:?}: {} / {}", ra.body, rb.body);
        let (mut winner, mut loser) = if ra.status == 303 { (a, b) } else { (b, a) };
        assert!(!wxoa::bookings::free_slots(&store, 7, store.now_ms()).await.unwrap().contains(&slot.parse().unwrap()));
        // A taken slot has no confirmation to offer.
        assert_eq!(loser.get(&confirm(&slot)).await.status, 409);
        // The loser books the last slot instead; then the winner cancels.
        let fl = loser.get(&confirm(&later)).await.body;
        assert_eq!(loser.submit(&fl, "/h5/book", &[]).await.status, 303);
        let booking_id = |body: &str| {
            let at = body.find("/h5/booking/cancel?booking=").unwrap() + 27;
            body[at..].split('"').next().unwrap().to_owned()
        };
        let mine = winner.get("/h5/book").await;
        assert!(mine.body.contains("id=\"upcoming\""), "{}", mine.body);
        let winners_booking = booking_id(&mine.body);
        let losers_booking = booking_id(&loser.get("/h5/book").await.body);
        assert_eq!(loser.get(&format!("/h5/booking/cancel?booking={winners_booking}")).await.status, 404, "not yours");
        let theirs = hidden_fields(
            &winner.get(&format!("/h5/booking/cancel?booking={winners_booking}")).await.body,
            "/h5/booking/cancel",
        );
        let mut forged: Vec<(&str, &str)> = theirs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        forged[0].1 = "forged";
        assert_eq!(loser.post("/h5/booking/cancel", &forged).await.status, 403);
        let cancel = winner.get(&format!("/h5/booking/cancel?booking={winners_booking}")).await.body;
        assert_eq!(winner.submit(&cancel, "/h5/booking/cancel", &[]).await.status, 303);
        assert!(
            wxoa::bookings::free_slots(&store, 7, store.now_ms()).await.unwrap().contains(&slot.parse().unwrap()),
            "the slot is free again"
        );

        // The limit: two upcoming bookings, then a third is refused with the reason.
        for s in [&slots[0], &slots[1]] {
            let f = winner.get(&confirm(&s.to_string())).await.body;
            assert_eq!(winner.submit(&f, "/h5/book", &[]).await.status, 303);
        }
        let f = winner.get(&confirm(&slots[2].to_string())).await.body;
        let third = winner.submit(&f, "/h5/book", &[]).await;
        assert_eq!(third.status, 409, "{}", third.body);
        assert!(third.body.contains("You have 2 upcoming bookings already"), "{}", third.body);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM bookings WHERE status = 'confirmed'").await, 3);

        // Confirmations and reminders were queued; make the reminders due and send.
        let jobs = wxoa::jobs::outbox::list(&store, None, 100).await.unwrap();
        let keys: Vec<&str> = jobs.iter().map(|j| j.dedupe_key.as_str()).collect();
        for k in [
            format!("booking:{winners_booking}:confirmed"),
            format!("booking:{winners_booking}:reminder"),
            format!("booking:{losers_booking}:reminder"),
        ] {
            assert!(keys.contains(&k.as_str()), "{backend:?}: {k} in {keys:?}");
        }
        wxoa::with_pool!(&store, pool => sqlx::query("UPDATE jobs SET run_at = 0").execute(pool).await.map(|_| ()))
            .unwrap();
        let client = wxoa::wechat::client::Client::new(&config.wechat.account(), &config.rate_limits, store.clone());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker = wxoa::jobs::worker::Worker::new(
            store.clone(),
            client,
            wxoa::app::executors(&server.state.bot, &config),
            config.outbox.clone(),
            std::sync::Arc::new(tokio::sync::Notify::new()),
        );
        let task = tokio::spawn(worker.run(stopped));
        // 4 bookings made (one cancelled): 4 confirmations and 3 reminders.
        assert!(eventually(10, || fake.calls_to("/cgi-bin/message/template/send").len() >= 7).await);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let _ = stop.send(true);
        task.await.unwrap();
        let sent = fake.calls_to("/cgi-bin/message/template/send");
        let reminders = sent.iter().filter(|c| c.body["template_id"] == "TPL_BOOKING_REMINDER").count();
        assert_eq!(reminders, 3, "the cancelled booking's reminder does not go out");
        let skipped = wxoa::jobs::outbox::list(&store, Some(wxoa::jobs::outbox::State::Done), 100).await.unwrap();
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
                .bind(10 + i).bind(format!("order:{i}")).bind((i > 0).then(|| format!("order {i}"))).bind(1_000_000 + i)
                .execute(pool).await.map(|_| ()))
            .unwrap();
        }
        let mut b = bound_browser(&server, "oAccount", "C8001", "13800000081").await;

        let page = b.get("/h5/history").await;
        assert_eq!(page.body.matches("<tr>").count(), 10, "{}", page.body);
        assert!(page.body.contains("id=\"next\"") && !page.body.contains("id=\"prev\""));
        let page2 = b.get("/h5/history?page=2").await;
        assert_eq!(page2.body.matches("<tr>").count(), 3, "13 entries: 10 + 3");
        assert!(page2.body.contains("id=\"prev\"") && !page2.body.contains("id=\"next\""));
        // Every line is bilingual: the import's note, and an entry without a note read as its kind.
        assert!(page.body.contains("· 导入积分 Imported balance<"), "{}", page.body);
        assert!(page2.body.contains("· 消费积分 Points earned<"), "{}", page2.body);
        let account = b.get("/h5/account").await.body;
        assert!(account.contains(">新天地店 Xintiandi</option>"), "{account}");

        // The chat's history reply (menu key `history`) links to this whole history, not the card.
        let click = format!(
            "<xml><ToUserName><![CDATA[gh_3f2a1b0c9d8e]]></ToUserName><FromUserName><![CDATA[oAccount]]></FromUserName>\
             <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event>\
             <EventKey><![CDATA[history]]></EventKey></xml>",
            store.now_ms() / 1000
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

        let form = b.get("/h5/account").await.body;
        for (fields, why) in [
            (vec![("name", "  "), ("birthday", ""), ("store", "")], "Please enter your name"),
            (vec![("name", "New Name"), ("birthday", "31/31/1990"), ("store", "")], "YYYY-MM-DD"),
            (vec![("name", "New Name"), ("birthday", "2999-01-01"), ("store", "")], "cannot be in the future"),
            (vec![("name", "New Name"), ("birthday", ""), ("store", "999")], "choose a store"),
        ] {
            let page = b.submit(&form, "/h5/account", &fields).await;
            assert_eq!(page.status, 400);
            assert!(page.body.contains(why), "{}", page.body);
        }
        let unchanged = wxoa::members::by_openid(&store, "oAccount").await.unwrap().unwrap();
        assert_eq!(unchanged.name.as_deref(), Some("Old Name"));
        let saved = b
            .submit(&form, "/h5/account", &[("name", " New　Name "), ("birthday", "1991-03-04"), ("store", "24")])
            .await;
        assert_eq!((saved.status, saved.location.as_deref()), (303, Some("/h5/account?saved=1")), "{}", saved.body);
        assert!(b.get("/h5/account?saved=1").await.body.contains("id=\"saved\""));
        let m = wxoa::members::by_openid(&store, "oAccount").await.unwrap().unwrap();
        assert_eq!(
            (m.name.as_deref(), m.birthday.as_deref(), m.store_id),
            (Some("New Name"), Some("1991-03-04"), Some(24))
        );
        server.stop().await;
        db.drop_db().await;
    }
}

/// 100 binds of one card sent at once by a stranger, each with a fresh form (its own `once`
/// key) and the right phone last: at most five phones are compared, the card stays unbound and
/// is locked, and so is the stranger — whatever the concurrency.
#[tokio::test]
async fn a_burst_of_binds_compares_at_most_five_phones() {
    for backend in backends() {
        let (db, server, _fake, _) = h5_server(backend, |_| {}).await;
        let store = server.state.store.clone();
        wxoa::members::import::import(&store, "card,phone\nC3003,13700000003\n").await.unwrap();
        let mut b = Browser::new(&server);
        b.sign_in("bind", "oStranger9").await;
        let mut forms = Vec::new();
        for _ in 0..100 {
            forms.push(hidden_fields(&b.get("/h5/bind").await.body, "/h5/bind"));
        }
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let (cookie, base) = (b.cookie_header(), format!("http://{}", server.addr));
        let mut burst = tokio::task::JoinSet::new();
        for (i, hidden) in forms.into_iter().enumerate() {
            let phone = if i == 99 { "13700000003".to_owned() } else { format!("1370000{:04}", 1000 + i) };
            let (http, cookie, url) = (http.clone(), cookie.clone(), format!("{base}/h5/bind"));
            burst.spawn(async move {
                let mut form = hidden;
                form.push(("card_no".into(), "C3003".into()));
                form.push(("phone".into(), phone));
                http.post(url).header("cookie", cookie).form(&form).send().await.unwrap().status().as_u16()
            });
        }
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        while let Some(status) = burst.join_next().await {
            *statuses.entry(status.unwrap()).or_default() += 1;
        }
        // A wrong phone answers 400 (shown on the form), a try refused for the lock 429.
        assert_eq!(statuses.values().sum::<usize>(), 100, "{backend:?}: {statuses:?}");
        let compared = statuses.get(&400).copied().unwrap_or(0) + statuses.get(&303).copied().unwrap_or(0);
        assert!(compared <= 5, "{backend:?}: at most five phones compared: {statuses:?}");
        assert!(statuses.get(&429).copied().unwrap_or(0) >= 95, "{backend:?}: {statuses:?}");
        let bound = count(&store, "SELECT COUNT(*) FROM members WHERE card_no = 'C3003' AND openid IS NOT NULL").await;
        if !statuses.contains_key(&303) {
            assert_eq!(bound, 0, "{backend:?}: the card was not bound to the stranger");
        }
        // Locked afterwards, for the card and the stranger alike.
        let form = b.get("/h5/bind").await.body;
        let again = b.submit(&form, "/h5/bind", &[("card_no", "C3003"), ("phone", "13700000003")]).await;
        assert_eq!(again.status, 429, "{backend:?}: {}", again.body);
        // Staff see the card's lock, and when it ends.
        let (status, m) =
            api_call(&server.addr.to_string(), "GET", "/api/v1/members/C3003", Some(ADMIN_TOKEN), None).await;
        assert_eq!((status, m["bind_locked_minutes"].as_i64()), (200, Some(30)), "{backend:?}: {m}");
        server.stop().await;
        db.drop_db().await;
    }
}

/// A session cookie planted on a narrower path (`wxoa_session=SB; Path=/h5/bind` over http)
/// reaches the bind page before the victim's own: with two session cookies, none is trusted —
/// the request is signed out and every path's copy expired, so nothing binds to the planter.
/// `POST /h5/logout` ends a session.
#[tokio::test]
async fn two_session_cookies_are_trusted_neither_and_logout_ends_a_session() {
    for backend in backends() {
        let (db, server, _fake, config) = h5_server(backend, |_| {}).await;
        let store = server.state.store.clone();
        wxoa::members::import::import(&store, "card,phone\nC4004,13700000004\n").await.unwrap();
        let mut attacker = Browser::new(&server);
        attacker.sign_in("bind", "oPlanter01").await;
        let planted = attacker.session().unwrap().clone();
        let mut victim = Browser::new(&server);
        victim.sign_in("bind", "oVictim001").await;
        let own = victim.session().unwrap().clone();
        let form = victim.get("/h5/bind").await.body;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let both = format!("wxoa_session={planted}; wxoa_session={own}");
        let base = format!("http://{}", server.addr);

        let page = http.get(format!("{base}/h5/bind")).header("cookie", &both).send().await.unwrap();
        assert_eq!(page.status().as_u16(), 303, "{backend:?}");
        assert_eq!(page.headers()["location"], "/h5/start?to=bind");
        let cleared: Vec<&str> = page.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
        for path in ["/h5/bind", "/h5/card", "/h5"] {
            let want = format!("wxoa_session=; Path={path}; Max-Age=0;");
            assert!(cleared.iter().any(|c| c.starts_with(&want)), "{backend:?}: {path} expired: {cleared:?}");
        }
        let mut fields = hidden_fields(&form, "/h5/bind");
        fields.push(("card_no".into(), "C4004".into()));
        fields.push(("phone".into(), "13700000004".into()));
        let post = http.post(format!("{base}/h5/bind")).header("cookie", &both).form(&fields).send().await.unwrap();
        assert_eq!(post.status().as_u16(), 303, "{backend:?}: signed out, not bound");
        assert_eq!(post.headers()["location"], "/h5/start?to=bind");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM members WHERE openid IS NOT NULL").await, 0, "{backend:?}");

        // Signing out: the session row goes, the cookie expires, the old cookie opens nothing.
        let card_page = victim.get("/h5/bind").await.body;
        let token = hidden_fields(&card_page, "/h5/bind").into_iter().find(|(k, _)| k == "token").unwrap().1;
        let bad = victim.post("/h5/logout", &[("token", "forged")]).await;
        assert_eq!(bad.status, 403, "{backend:?}: a logout needs the form token");
        let out = victim.post("/h5/logout", &[("token", &token)]).await;
        assert_eq!(out.status, 200, "{backend:?}: {}", out.body);
        assert!(victim.session().is_none(), "{backend:?}: the cookie is expired");
        let gone =
            http.get(format!("{base}/h5/card")).header("cookie", format!("wxoa_session={own}")).send().await.unwrap();
        assert_eq!(gone.headers()["location"], "/h5/start?to=card", "{backend:?}: the ended session opens nothing");
        let _ = config;
        server.stop().await;
        db.drop_db().await;
    }
}
