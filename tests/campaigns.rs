//! Launch campaigns end to end with the fake WeChat: the admin API (auth, roles, validation,
//! WeChat's limits), pushes firing exactly once from two `wxoa serve` processes sharing one
//! database, a restart across a push's time (fired late within the grace, or marked missed),
//! previews, cancelling, and MASSSENDJOBFINISH figures on the push.

mod common;

use common::api_call as api;
use common::*;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wxoa::wechat::envelope::Mode;

const BIN: &str = env!("CARGO_BIN_EXE_wxoa");

/// Calls the admin API at `base` as the holder of `token`.
fn campaign_body(name: &str) -> Value {
    json!({
        "name": name,
        "product": { "sku": "LE-2026", "name": "Limited Edition No. 5", "stock": 300 },
        "articles": [{
            "title": "The Limited Edition, tonight",
            "digest": "300 pieces, numbered.",
            "content": "<p>Launching at 00:13.</p>",
            "cover_media_id": "THUMB_1",
            "cover_url": "https://example.com/cover.jpg"
        }]
    })
}

/// RFC 3339 for `secs` seconds from now on `clock` (China time, as marketing would write it).
fn in_secs(clock: &wxoa::clock::Clock, secs: f64) -> String {
    (clock.china_now() + chrono::Duration::milliseconds((secs * 1000.0) as i64)).to_rfc3339()
}

fn push_body(name: &str, audience: Value, at: &str) -> Value {
    json!({ "name": name, "msg_type": "mpnews", "audience": audience, "at": at })
}

async fn wait_for(secs: u64, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn push(base: &str, id: i64) -> Value {
    let (status, p) = api(base, "GET", &format!("/api/v1/pushes/{id}"), Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{p}");
    p
}

/// A server on `db` with the fake WeChat wired both ways, as the launch tests run it.
struct Launch {
    /// The server's clock, settable.
    clock: wxoa::clock::Clock,
    fake: wxoa::fake::FakeWeChat,
    server: TestServer,
    /// `http://` and the server's address.
    base: String,
}

/// The launch tests' server: its clock on a fixed day (2026-06-01 09:00 China time, so the
/// dates the tests write stay in the future whatever day the suite runs), pushes polled every
/// 100 ms, and `tweak`'s changes to the config.
async fn launch(db: &Db, tweak: impl FnOnce(&mut wxoa::config::Config)) -> Launch {
    let mut config = test_config(db, Mode::Safe);
    config.clock.set(china_ms("2026-06-01 09:00"));
    let clock = config.clock.clone();
    config.campaigns.poll_ms = 100;
    tweak(&mut config);
    let fake = start_fake(&mut config).await;
    let server = TestServer::start(config).await;
    fake.set_webhook(Some(server.url.clone()));
    let base = format!("http://{}", server.addr);
    Launch { clock, fake, server, base }
}

#[tokio::test]
async fn admin_api_campaigns_pushes_previews_and_figures() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let Launch { clock, fake, server, base } =
            launch(&db, |c| c.campaigns.test_openids = vec!["oTester1".into()]).await;
        let c = server.state.client.clone();
        let fans = c.tag_create("fans").await.unwrap().id;
        let others = c.tag_create("others").await.unwrap().id;
        c.tag_members(fans, &["oFan1", "oFan2"], false).await.unwrap();
        c.tag_members(others, &["oOther"], false).await.unwrap();
        // The account's followers: the three tagged, the test follower, and one who left
        // (WeChat counts only who follows now).
        fake.follow("oTester1");
        fake.follow("oLeft");
        fake.unsubscribe("oLeft");

        // Who may do what.
        let table: Vec<(&str, &str, Option<&str>, u16)> = vec![
            ("GET", "/api/v1/campaigns", None, 401),
            ("GET", "/api/v1/campaigns", Some("not-a-token"), 401),
            ("GET", "/api/v1/campaigns", Some(MARKETING_TOKEN), 200),
            ("GET", "/api/v1/menu", Some(MARKETING_TOKEN), 403),
            ("GET", "/api/v1/members/oNobody", Some(MARKETING_TOKEN), 403),
            ("GET", "/api/v1/members/oNobody", Some(ADMIN_TOKEN), 404),
            ("GET", "/api/v1/menu", Some(ADMIN_TOKEN), 200),
            ("GET", "/api/v1/pushes/999", Some(ADMIN_TOKEN), 404),
            ("GET", "/api/v1/pushes/abc", Some(ADMIN_TOKEN), 400),
            ("GET", "/api/v1/pushes?limit=many", Some(ADMIN_TOKEN), 400),
        ];
        for (method, path, token, want) in table {
            let (status, body) = api(&base, method, path, token, None).await;
            assert_eq!(status, want, "{method} {path} as {token:?}: {body}");
            if status != 200 {
                assert!(body["error"].is_string(), "{method} {path}: errors are JSON: {body}");
            }
        }

        // A path no route has, and a method a path does not take: JSON like every API answer.
        let http = reqwest::Client::new();
        let resp = http.get(format!("{base}/api/v1/no-such-thing")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 404);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "error": "no endpoint /api/v1/no-such-thing" }));
        let resp = http.delete(format!("{base}/api/v1/campaigns")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 405);
        assert_eq!(resp.headers()["allow"], "GET,HEAD,POST");
        assert_eq!(
            resp.json::<Value>().await.unwrap(),
            json!({ "error": "DELETE is not allowed on /api/v1/campaigns" })
        );
        // Outside the API a miss stays a bare 404.
        let resp = http.get(format!("{base}/no-such-page")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 404);
        assert_eq!(resp.text().await.unwrap(), "");

        // Bad campaigns change nothing.
        let bad: Vec<(&str, Value, u16)> = vec![
            ("no articles", json!({ "name": "x", "articles": [] }), 400),
            ("nine articles", json!({ "name": "x", "articles": vec![json!({"title": "t"}); 9] }), 400),
            ("long title", json!({ "name": "x", "articles": [{ "title": "t".repeat(65) }] }), 400),
            ("unknown field", json!({ "name": "x", "articles": [{ "title": "t" }], "colour": 1 }), 400),
            ("bad link", json!({ "name": "x", "articles": [{ "title": "t", "link": "javascript:x" }] }), 400),
        ];
        for (what, body, want) in bad {
            let (status, answer) = api(&base, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(body)).await;
            assert_eq!(status, want, "{what}: {answer}");
            assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {answer}");
        }
        let (status, _) = api(&base, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(json!("{"))).await;
        assert_eq!(status, 400);
        let (_, list) = api(&base, "GET", "/api/v1/campaigns", Some(MARKETING_TOKEN), None).await;
        assert_eq!(list["campaigns"].as_array().unwrap().len(), 0);

        let (status, campaign) =
            api(&base, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(campaign_body("LE launch"))).await;
        assert_eq!(status, 201, "{campaign}");
        let id = campaign["id"].as_i64().unwrap();
        let (status, _) =
            api(&base, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(campaign_body("LE launch"))).await;
        assert_eq!(status, 409, "same name twice");

        // Preview to the configured test follower: a draft, then mass/preview.
        let (status, previews) =
            api(&base, "POST", &format!("/api/v1/campaigns/{id}/preview"), Some(MARKETING_TOKEN), Some(json!({})))
                .await;
        assert_eq!(status, 200, "{previews}");
        assert_eq!(previews["previews"][0]["openid"], "oTester1");
        assert_eq!(previews["previews"][0]["ok"], true, "{previews}");
        let sent = fake.calls_to("/cgi-bin/message/mass/preview");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].body["touser"], "oTester1");
        assert!(sent[0].body["mpnews"]["media_id"].as_str().unwrap().starts_with("DRAFT_"));
        let draft = &fake.calls_to("/cgi-bin/draft/add")[0].body["articles"][0];
        assert_eq!(draft["title"], "The Limited Edition, tonight");
        assert_eq!(draft["thumb_media_id"], "THUMB_1");
        assert_eq!(draft["content_source_url"], format!("{}/buy/{id}", server.state.config.h5.public_url));

        // Teaser to a tag, launch to everyone, seconds ahead; one more to cancel.
        let pushes = format!("/api/v1/campaigns/{id}/pushes");
        let (status, teaser) = api(
            &base,
            "POST",
            &pushes,
            Some(MARKETING_TOKEN),
            Some(push_body("teaser", json!({ "type": "tag", "tag_id": fans }), &in_secs(&clock, 1.5))),
        )
        .await;
        assert_eq!(status, 201, "{teaser}");
        let (status, launch) = api(
            &base,
            "POST",
            &pushes,
            Some(MARKETING_TOKEN),
            Some(push_body("launch", json!({ "type": "all" }), &in_secs(&clock, 2.5))),
        )
        .await;
        assert_eq!(status, 201, "{launch}");
        let (status, spare) = api(
            &base,
            "POST",
            &pushes,
            Some(MARKETING_TOKEN),
            Some(push_body("spare", json!({ "type": "tag", "tag_id": others }), &in_secs(&clock, 30.0))),
        )
        .await;
        assert_eq!(status, 201, "{spare}");
        let spare_id = spare["id"].as_i64().unwrap();
        let (status, cancelled) =
            api(&base, "POST", &format!("/api/v1/pushes/{spare_id}/cancel"), Some(MARKETING_TOKEN), None).await;
        assert_eq!((status, cancelled["status"].as_str()), (200, Some("cancelled")), "{cancelled}");
        let (status, _) =
            api(&base, "POST", &format!("/api/v1/pushes/{spare_id}/cancel"), Some(MARKETING_TOKEN), None).await;
        assert_eq!(status, 409, "cancelling twice");

        // Refusals when scheduling: the past, nonsense, and WeChat's four a month.
        let refusals: Vec<(&str, Value, u16)> = vec![
            ("past", push_body("old", json!({ "type": "all" }), &in_secs(&clock, -3600.0)), 422),
            ("no time", json!({ "name": "x", "audience": { "type": "all" } }), 400),
            (
                "bad zone",
                json!({ "name": "x", "audience": { "type": "all" }, "at": "2027-01-01 10:00", "time_zone": "Mars/Base" }),
                400,
            ),
            ("bad audience", json!({ "name": "x", "audience": { "type": "everyone" }, "at": "2027-01-01 10:00" }), 400),
            (
                "one openid",
                json!({ "name": "x", "audience": { "type": "list", "openids": ["oA"] }, "at": "2027-01-01 10:00" }),
                400,
            ),
        ];
        for (what, body, want) in refusals {
            let (status, answer) = api(&base, "POST", &pushes, Some(MARKETING_TOKEN), Some(body)).await;
            assert_eq!(status, want, "{what}: {answer}");
        }
        for day in 1..=4 {
            let at = format!("2027-03-0{day} 10:00");
            let (status, answer) = api(
                &base,
                "POST",
                &pushes,
                Some(MARKETING_TOKEN),
                Some(push_body("march", json!({ "type": "all" }), &at)),
            )
            .await;
            assert_eq!(status, 201, "march {day}: {answer}");
        }
        let (status, answer) = api(
            &base,
            "POST",
            &pushes,
            Some(MARKETING_TOKEN),
            Some(push_body("fifth", json!({ "type": "tag", "tag_id": 100 }), "2027-03-09 10:00")),
        )
        .await;
        assert_eq!(status, 422, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains("4 times a month"), "{answer}");

        // Both fire once, within a second of their time, and WeChat's figures arrive.
        for (p, reached) in [(&teaser, 2), (&launch, 4)] {
            let pid = p["id"].as_i64().unwrap();
            assert!(
                wait_for(15, async || push(&base, pid).await["runs"][0]["status"] == "finished").await,
                "push {pid} did not finish: {}",
                push(&base, pid).await
            );
            let got = push(&base, pid).await;
            assert_eq!(got["status"], "fired");
            let runs = got["runs"].as_array().unwrap();
            assert_eq!(runs.len(), 1, "{got}");
            let late = runs[0]["fired_at"].as_i64().unwrap() - runs[0]["due_at"].as_i64().unwrap();
            assert!((0..1000).contains(&late), "fired {late} ms after its time");
            for figure in ["total_count", "filter_count", "sent_count"] {
                assert_eq!(runs[0][figure], reached, "{figure}: {got}");
            }
            assert_eq!(runs[0]["finish_status"], "send success");
        }
        let sendall = fake.calls_to("/cgi-bin/message/mass/sendall");
        assert_eq!(sendall.len(), 2, "cancelled push stayed unsent");
        assert_eq!(sendall[0].body["filter"], json!({ "is_to_all": false, "tag_id": fans }));
        assert_eq!(sendall[1].body["filter"]["is_to_all"], true);
        assert_ne!(sendall[0].body["clientmsgid"], sendall[1].body["clientmsgid"]);
        let (_, cancelled) =
            api(&base, "GET", &format!("/api/v1/pushes/{spare_id}"), Some(MARKETING_TOKEN), None).await;
        assert_eq!(cancelled["runs"].as_array().unwrap().len(), 0);

        let (status, stats) = api(&base, "GET", "/api/v1/stats", Some(MARKETING_TOKEN), None).await;
        assert_eq!(status, 200);
        assert_eq!((stats["total_count"].as_i64(), stats["sent_count"].as_i64()), (Some(6), Some(6)), "{stats}");
        assert_eq!(stats["pushes"]["fired"], 2, "{stats}");
        assert_eq!(stats["pushes"]["cancelled"], 1, "{stats}");

        // The OpenAPI document describes every route.
        let (status, doc) = api(&base, "GET", "/api/v1/openapi.json", None, None).await;
        assert_eq!(status, 200);
        for path in [
            "/api/v1/campaigns",
            "/api/v1/campaigns/{id}",
            "/api/v1/campaigns/{id}/pushes",
            "/api/v1/campaigns/{id}/preview",
            "/api/v1/pushes",
            "/api/v1/pushes/{id}",
            "/api/v1/pushes/{id}/cancel",
            "/api/v1/pushes/{id}/reschedule",
            "/api/v1/stats",
            "/api/v1/menu",
            "/api/v1/menu/sync",
            "/api/v1/members/{key}",
            "/api/v1/stock",
            "/api/v1/orders",
            "/api/v1/followers",
            "/api/v1/followers/{id}",
            "/api/v1/followers/sync",
            "/api/v1/followers/sync/{id}",
            "/api/v1/segments",
            "/api/v1/segments/{id}",
            "/api/v1/segments/{id}/sync",
            "/api/v1/campaigns/{id}/funnel",
            "/api/v1/replies",
            "/api/v1/replies/{id}",
            "/api/v1/replies/preview",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing from openapi.json");
        }
        server.stop().await;
        db.drop_db().await;
    }
}

/// `wxoa serve` as a process, with the test's config written to a file.
struct Process {
    child: Child,
    base: String,
}

impl Process {
    fn start(config: &wxoa::config::Config, env: &[(&str, &str)]) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut config = config.clone();
        config.server.listen = format!("127.0.0.1:{port}");
        let dir = temp_dir("campaign-proc");
        let file = dir.join("wxoa.toml");
        std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config", file.to_str().unwrap()])
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let process = Process { child: cmd.spawn().unwrap(), base: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return process;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("wxoa serve did not start; see {}", dir.join("stderr.log").display());
    }

    /// As a crash: no chance to finish anything.
    fn kill(self) {
        drop(self);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn pushes_fire_once_across_processes_and_restarts() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        // `serve` processes run on the system clock.
        let system = wxoa::clock::Clock::system();
        config.campaigns.poll_ms = 100;
        let fake = start_fake(&mut config).await;
        // The schema exists before two processes race to create it.
        let setup = TestServer::start(config.clone()).await;
        let fans = setup.state.client.tag_create("fans").await.unwrap().id;
        setup.state.client.tag_members(fans, &["oFan1", "oFan2"], false).await.unwrap();
        setup.stop().await;

        let a = Process::start(&config, &[]);
        let b = Process::start(&config, &[]);
        fake.set_webhook(Some(format!("{}/wechat", a.base)));
        let (status, campaign) =
            api(&a.base, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(campaign_body("LE"))).await;
        assert_eq!(status, 201, "{campaign}");
        let pushes = format!("/api/v1/campaigns/{}/pushes", campaign["id"]);
        // Scheduled on one instance, the other one's: either may fire, only one does.
        let mut ids = Vec::new();
        for (name, audience, at, on) in [
            ("teaser", json!({ "type": "tag", "tag_id": fans }), in_secs(&system, 1.5), &a),
            ("launch", json!({ "type": "list", "openids": ["oFan1", "oFan2", "oFan3"] }), in_secs(&system, 2.5), &b),
        ] {
            let (status, p) =
                api(&on.base, "POST", &pushes, Some(MARKETING_TOKEN), Some(push_body(name, audience, &at))).await;
            assert_eq!(status, 201, "{p}");
            ids.push(p["id"].as_i64().unwrap());
        }
        for id in &ids {
            assert!(
                wait_for(15, async || push(&a.base, *id).await["runs"][0]["status"] == "finished").await,
                "{}",
                push(&a.base, *id).await
            );
        }
        // Give a second firing every chance to show up.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(fake.calls_to("/cgi-bin/message/mass/sendall").len(), 1, "teaser sent once");
        assert_eq!(fake.calls_to("/cgi-bin/message/mass/send").len(), 1, "launch sent once");
        for id in &ids {
            let p = push(&b.base, *id).await;
            assert_eq!(p["runs"].as_array().unwrap().len(), 1, "{p}");
            let late = p["runs"][0]["fired_at"].as_i64().unwrap() - p["runs"][0]["due_at"].as_i64().unwrap();
            assert!((0..1000).contains(&late), "fired {late} ms after its time");
        }
        b.kill();

        // Down across a push's time: on start it fires at once, being within the grace...
        let (_, late) = api(
            &a.base,
            "POST",
            &pushes,
            Some(MARKETING_TOKEN),
            Some(push_body("late", json!({ "type": "list", "openids": ["oFan1", "oFan4"] }), &in_secs(&system, 3.0))),
        )
        .await;
        // ...and one whose time passed longer ago than the grace is marked missed, not sent.
        let (_, missed) = api(
            &a.base,
            "POST",
            &pushes,
            Some(MARKETING_TOKEN),
            Some(push_body(
                "missed",
                json!({ "type": "list", "openids": ["oFan5", "oFan6"] }),
                &in_secs(&system, 600.0),
            )),
        )
        .await;
        a.kill();
        let late_id = late["id"].as_i64().unwrap();
        let missed_id = missed["id"].as_i64().unwrap();
        // As if everything had been down since a minute before "missed" was due.
        let store = wxoa::store::Store::connect(&db.url, 1).await.unwrap();
        let past = store.now_ms() - 60_000;
        wxoa::with_pool!(&store, pool => sqlx::query("UPDATE pushes SET at_ms = $1, next_at = $1 WHERE id = $2")
            .bind(past).bind(missed_id).execute(pool).await.map(|_| ()))
        .unwrap();
        store.close().await;
        tokio::time::sleep(Duration::from_millis(4500)).await;
        let before = fake.calls_to("/cgi-bin/message/mass/send").len();
        // The restarted instance allows 15 s: "late" is under 2 s overdue, "missed" over a minute.
        let c = Process::start(&config, &[("WXOA_CAMPAIGNS__GRACE_SECS", "15")]);
        assert!(
            wait_for(10, async || {
                let l = push(&c.base, late_id).await;
                let m = push(&c.base, missed_id).await;
                // A claimed run reads "sending" until WeChat has taken the job: wait past that.
                let sent = ["submitted", "finished"].contains(&l["runs"][0]["status"].as_str().unwrap_or(""));
                sent && m["status"] == "missed"
            })
            .await,
            "{} / {}",
            push(&c.base, late_id).await,
            push(&c.base, missed_id).await
        );
        let l = push(&c.base, late_id).await;
        assert_eq!(l["status"], "fired", "{l}");
        assert!(["submitted", "finished"].contains(&l["runs"][0]["status"].as_str().unwrap()), "{l}");
        let m = push(&c.base, missed_id).await;
        assert_eq!(m["runs"][0]["status"], "missed", "{m}");
        assert!(m["runs"][0]["error"].as_str().unwrap().contains("no instance was running"), "{m}");
        let sends = fake.calls_to("/cgi-bin/message/mass/send");
        assert_eq!(sends.len(), before + 1, "only the late push went out");
        assert_eq!(sends.last().unwrap().body["touser"], json!(["oFan1", "oFan4"]));
        c.kill();
        db.drop_db().await;
    }
}

fn wxoa(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).current_dir(repo()).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn campaign_and_push_from_the_command_line() {
    let db = Db::new(Backend::Sqlite).await;
    let config = test_config(&db, Mode::Safe);
    let dir = temp_dir("campaign-cli");
    let file = dir.join("wxoa.toml");
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    let cfg = file.to_str().unwrap();
    let body = dir.join("campaign.json");
    std::fs::write(&body, campaign_body("Winter launch").to_string()).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"name": "x", "articles": []}"#).unwrap();

    let (code, out, err) = wxoa(&["campaign", "--config", cfg, "create", body.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("campaign 1 created: Winter launch"), "{out}");
    let (code, _, err) = wxoa(&["campaign", "--config", cfg, "create", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("1 to 8 articles") && err.lines().count() == 1, "{err}");

    // The command line runs on the system clock: its dates are days from today.
    let today = wxoa::clock::Clock::system().now_ms();
    let (d15, d16, d18, d19) = (china_day(today, 40), china_day(today, 41), china_day(today, 43), china_day(today, 44));
    let schedule = |at: &str, extra: &[&str]| {
        let mut args = vec!["push", "--config", cfg, "schedule", "Winter launch", "--name", "launch", "--at", at];
        args.extend_from_slice(extra);
        wxoa(&args)
    };
    let (code, out, err) = schedule(&format!("{d15} 00:13"), &["--tag", "7"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("push 1 scheduled: launch to tag 7, next {d15} 00:13:00 CST")), "{out}");
    let (code, _, err) = schedule("2020-01-01 00:00", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("in the past"), "{err}");
    let (code, _, err) = schedule(&format!("{d16} 00:13"), &["--type", "text"]);
    assert_eq!(code, 2);
    assert!(err.contains("needs its text"), "{err}");

    // Which articles: an index the campaign does not have is refused, its own are taken.
    let (code, _, err) = schedule(&format!("{d16} 00:13"), &["--articles", "0,3"]);
    assert_eq!(code, 2);
    assert!(err.contains("the campaign has 1 article(s), indexes 0 to 0; there is no 3"), "{err}");
    let (code, out, err) = schedule(&format!("{d16} 00:13"), &["--articles", "0", "--tag", "8"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, shown, _) = wxoa(&["campaign", "--config", cfg, "show", "Winter launch"]);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    let second = shown["pushes"].as_array().unwrap().iter().find(|p| p["id"] == 2).unwrap().clone();
    assert_eq!(second["articles"], json!([0]), "{second}");

    let (code, out, _) = wxoa(&["push", "--config", cfg, "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("Winter launch") && out.contains("scheduled"), "{out}");

    // Rescheduled: the new time, checked as at scheduling.
    let reschedule = |push: &str, at: &str| wxoa(&["push", "--config", cfg, "reschedule", push, "--at", at]);
    let (code, out, err) = reschedule("1", &format!("{d18} 09:00"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("push 1 rescheduled: launch, next {d18} 09:00:00 CST")), "{out}");
    let (code, _, err) = reschedule("1", "2020-01-01 00:00");
    assert_eq!(code, 2);
    assert!(err.contains("in the past"), "{err}");

    let (code, out, _) = wxoa(&["push", "--config", cfg, "cancel", "1"]);
    assert_eq!(code, 0);
    assert!(out.contains("push 1 cancelled"), "{out}");
    let (code, _, err) = wxoa(&["push", "--config", cfg, "cancel", "1"]);
    assert_eq!(code, 2);
    assert!(err.contains("cancelled and cannot be cancelled"), "{err}");
    let (code, _, err) = reschedule("1", &format!("{d19} 09:00"));
    assert_eq!(code, 2);
    assert!(err.contains("push 1 is cancelled and cannot be rescheduled"), "{err}");

    let (code, out, _) = wxoa(&["admin", "hash-token", "a-long-enough-token-123"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), wxoa::admin::hash_token("a-long-enough-token-123"));
    db.drop_db().await;
}

/// An instance that died mid-send: another takes the run over after the lease and sends it
/// again with the same clientmsgid; WeChat refuses the repeat (45065) naming the first send, so
/// followers got it once and the figures still land on the run. One abandoned longer ago than
/// the grace is not sent late.
#[tokio::test]
async fn a_send_interrupted_by_a_crash_is_taken_over_not_repeated() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let Launch { clock, fake, server, base } = launch(&db, |c| {
            c.campaigns.lease_secs = 5;
            c.campaigns.grace_secs = 120;
        })
        .await;
        fake.tweak(|k| k.clientmsgid_retry_ms = Some(0));
        let (_, campaign) =
            api(&base, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(campaign_body("LE"))).await;
        let pushes = format!("/api/v1/campaigns/{}/pushes", campaign["id"]);
        let audience = json!({ "type": "list", "openids": ["oFan1", "oFan2"] });
        let mut ids = Vec::new();
        for name in ["interrupted", "abandoned"] {
            let (status, p) = api(
                &base,
                "POST",
                &pushes,
                Some(MARKETING_TOKEN),
                Some(json!({ "name": name, "msg_type": "text", "text": "Tonight.", "audience": audience, "at": in_secs(&clock, 3600.0) })),
            )
            .await;
            assert_eq!(status, 201, "{p}");
            ids.push(p["id"].as_i64().unwrap());
        }

        // The dead instance had claimed both; it reached WeChat with the first only.
        let store = &server.state.store;
        let now = server.state.clock.now_ms();
        for (id, due) in [(ids[0], now - 10_000), (ids[1], now - 600_000)] {
            let clientmsgid = format!("wxoa-{id}-{due}");
            wxoa::with_pool!(store, pool => sqlx::query(
                "UPDATE pushes SET next_at = NULL, status = 'fired' WHERE id = $1"
            ).bind(id).execute(pool).await.map(|_| ()))
            .unwrap();
            wxoa::with_pool!(store, pool => sqlx::query(
                "INSERT INTO push_runs (push_id, due_at, status, claimed_by, claimed_at, clientmsgid, attempts)
                 VALUES ($1, $2, 'sending', 'dead-instance', $3, $4, 1)"
            ).bind(id).bind(due).bind(now - 6_000).bind(&clientmsgid).execute(pool).await.map(|_| ()))
            .unwrap();
            if id == ids[0] {
                let text = wxoa::wechat::client::mass::MassContent::Text { content: "Tonight.".into() };
                server.state.client.mass_send(&["oFan1", "oFan2"], &text, Some(&clientmsgid)).await.unwrap();
            }
        }

        assert!(
            wait_for(15, async || {
                push(&base, ids[0]).await["runs"][0]["status"] == "finished"
                    && push(&base, ids[1]).await["runs"][0]["status"] == "failed"
            })
            .await,
            "{} / {}",
            push(&base, ids[0]).await,
            push(&base, ids[1]).await
        );
        let taken = push(&base, ids[0]).await;
        let run = &taken["runs"][0];
        assert_eq!(run["sent_count"], 2, "the first send's figures: {taken}");
        assert!(run["error"].as_str().unwrap().contains("earlier attempt"), "{taken}");
        let sends = fake.calls_to("/cgi-bin/message/mass/send");
        assert_eq!(sends.len(), 2, "the original and the refused repeat");
        assert_eq!(sends[1].errcode, 45065);
        let abandoned = push(&base, ids[1]).await;
        assert!(abandoned["runs"][0]["error"].as_str().unwrap().contains("grace"), "{abandoned}");
        server.stop().await;
        db.drop_db().await;
    }
}

/// A campaign as large as WeChat's drafts allow — 8 articles of 20,000 Chinese characters, about
/// 480 KB, or twice that with `\uXXXX` escapes — is taken by the API and the console (it used to
/// get the 64 KiB `server.max_body_bytes`); one character more is a 400 naming the article, a
/// body past the campaign limit a JSON 413; the other API routes keep the 64 KiB bound.
#[tokio::test]
async fn a_campaign_as_large_as_wechat_allows_is_taken() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let config = test_config(&db, Mode::Safe);
        let server = TestServer::start(config).await;
        let base = format!("http://{}", server.addr);
        let article = |n: usize, chars: usize| json!({ "title": format!("第{n}篇"), "content": "限".repeat(chars) });
        let campaign = |name: &str, last: usize| {
            let articles: Vec<Value> = (1..=8).map(|n| article(n, if n == 8 { last } else { 20_000 })).collect();
            json!({ "name": name, "articles": articles })
        };
        let post_raw = |path: String, body: String| {
            let http = reqwest::Client::new();
            async move {
                let resp = http
                    .post(path)
                    .bearer_auth(MARKETING_TOKEN)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap();
                (status, serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)))
            }
        };
        let count = async || {
            let (_, list) = api(&base, "GET", "/api/v1/campaigns", Some(MARKETING_TOKEN), None).await;
            list["campaigns"].as_array().unwrap().len()
        };

        let full = campaign("全文", 20_000);
        assert!(full.to_string().len() > 480_000, "{}", full.to_string().len());
        let (status, made) = api(&base, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(full)).await;
        assert_eq!(status, 201, "{made}");
        let id = made["id"].as_i64().unwrap();
        let (status, shown) = api(&base, "GET", &format!("/api/v1/campaigns/{id}"), Some(MARKETING_TOKEN), None).await;
        assert_eq!(status, 200);
        assert_eq!(shown["articles"][7]["content"].as_str().unwrap().chars().count(), 20_000);
        let (status, updated) = api(
            &base,
            "PUT",
            &format!("/api/v1/campaigns/{id}"),
            Some(MARKETING_TOKEN),
            Some(campaign("全文 v2", 20_000)),
        )
        .await;
        assert_eq!(status, 200, "{updated}");

        // The same campaign written by an encoder that escapes every character: ~960 KB.
        let escaped = campaign("转义", 20_000).to_string().replace('限', "\\u9650");
        assert!(escaped.len() > 960_000);
        let (status, answer) = post_raw(format!("{base}/api/v1/campaigns"), escaped).await;
        assert_eq!(status, 201, "{answer}");

        let (status, answer) =
            api(&base, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(campaign("多一字", 20_001))).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains("article 8 content"), "{answer}");

        let huge = json!({ "name": "太大", "articles": [{ "title": "t", "content": "x".repeat(2 << 20) }] });
        let (status, answer) = post_raw(format!("{base}/api/v1/campaigns"), huge.to_string()).await;
        assert_eq!(status, 413, "{answer}");
        assert_eq!(answer["error"], "the body is larger than this endpoint takes");
        assert_eq!(count().await, 2, "only the two full campaigns exist");

        // Everything else keeps server.max_body_bytes (64 KiB).
        let segment = json!({ "name": "x".repeat(100 * 1024), "rules": {} });
        let (status, answer) = post_raw(format!("{base}/api/v1/segments"), segment.to_string()).await;
        assert_eq!(status, 413, "{answer}");
        assert_eq!(answer["error"], "the body is larger than this endpoint takes");

        // The console's campaign form: one article of 20,000 characters, 180 KB URL-encoded.
        let cookie = console_sign_in(server.addr, MARKETING_TOKEN).await;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let html = http.get(format!("{base}/admin/campaigns/new")).header("cookie", &cookie).send().await.unwrap();
        let html = html.text().await.unwrap();
        let token = html.split("name=\"form_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        let content = "限".repeat(20_000);
        let form = [("form_token", token.as_str()), ("name", "控制台"), ("title", "长文"), ("content", &content)];
        let resp = http.post(format!("{base}/admin/campaigns")).header("cookie", &cookie).form(&form).send().await;
        let resp = resp.unwrap();
        assert_eq!(resp.status().as_u16(), 303, "{}", resp.text().await.unwrap());
        assert_eq!(count().await, 3);
    }
}

/// An article body with a script, an `onerror` and a `javascript:` link, as it could come from a
/// script, a pasted page or a careless tool.
const DIRTY: &str = "<p onclick=\"steal()\">Launch <script>alert(1)</script><strong>tonight</strong></p>\
    <img src=\"https://mmbiz.qpic.cn/mmbiz_png/x/0\" onerror=\"alert(2)\">\
    <a href=\"javascript:alert(3)\">buy</a> <a href=\"https://example.com/buy\" target=\"_blank\">buy</a>";
/// [`DIRTY`] after the allow-list (src/campaigns/html.rs).
const CLEANED: &str = "<p>Launch <strong>tonight</strong></p><img src=\"https://mmbiz.qpic.cn/mmbiz_png/x/0\">\
    <a rel=\"noopener noreferrer\">buy</a> <a href=\"https://example.com/buy\" rel=\"noopener noreferrer\">buy</a>";

/// The console's form token on `page` (a console page's HTML).
fn form_token(page: &str) -> String {
    page.split("name=\"form_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned()
}

/// Every way an article's HTML comes in — the API's POST and PUT, the console's form (the CLI's
/// is in tests/cli.rs) — stores it cleaned to the allow-list: the script, the handlers and the
/// `javascript:` URL are gone from what GET shows and from the mpnews draft WeChat receives.
#[tokio::test]
async fn article_html_is_cleaned_on_every_way_in() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        config.campaigns.test_openids = vec!["oTester1".into()];
        let fake = start_fake(&mut config).await;
        let server = TestServer::start(config).await;
        let base = format!("http://{}", server.addr);
        let content_of = async |id: i64| {
            let (status, shown) =
                api(&base, "GET", &format!("/api/v1/campaigns/{id}"), Some(MARKETING_TOKEN), None).await;
            assert_eq!(status, 200, "{shown}");
            shown["articles"][0]["content"].as_str().unwrap().to_owned()
        };

        let mut body = campaign_body("Cleaned");
        body["articles"][0]["content"] = json!(DIRTY);
        let (status, made) = api(&base, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(body.clone())).await;
        assert_eq!(status, 201, "{made}");
        assert_eq!(made["articles"][0]["content"], CLEANED, "the answer shows what was stored");
        let id = made["id"].as_i64().unwrap();
        assert_eq!(content_of(id).await, CLEANED);

        body["articles"][0]["content"] = json!(format!("<h2 onmouseover=\"x()\">v2</h2>{DIRTY}"));
        let (status, updated) =
            api(&base, "PUT", &format!("/api/v1/campaigns/{id}"), Some(MARKETING_TOKEN), Some(body)).await;
        assert_eq!(status, 200, "{updated}");
        let v2 = format!("<h2>v2</h2>{CLEANED}");
        assert_eq!(content_of(id).await, v2);

        // The mpnews draft WeChat gets is the cleaned body.
        let (status, previewed) =
            api(&base, "POST", &format!("/api/v1/campaigns/{id}/preview"), Some(MARKETING_TOKEN), Some(json!({})))
                .await;
        assert_eq!(status, 200, "{previewed}");
        let drafts = fake.calls_to("/cgi-bin/draft/add");
        assert_eq!(drafts.len(), 1, "{drafts:?}");
        assert_eq!(drafts[0].body["articles"][0]["content"], v2.as_str());

        // The console's form.
        let cookie = console_sign_in(server.addr, MARKETING_TOKEN).await;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let page = http.get(format!("{base}/admin/campaigns/new")).header("cookie", &cookie).send().await.unwrap();
        let token = form_token(&page.text().await.unwrap());
        let form = [("form_token", token.as_str()), ("name", "控制台"), ("title", "文章"), ("content", DIRTY)];
        let resp = http.post(format!("{base}/admin/campaigns")).header("cookie", &cookie).form(&form).send().await;
        let resp = resp.unwrap();
        assert_eq!(resp.status().as_u16(), 303, "{}", resp.text().await.unwrap());
        let made = resp.headers()["location"].to_str().unwrap().to_owned();
        let console_id: i64 = made.trim_start_matches("/admin/campaigns/").split('?').next().unwrap().parse().unwrap();
        assert_eq!(content_of(console_id).await, CLEANED);
        // The edit page hands the editor the cleaned body, escaped into its textarea.
        let page = http.get(format!("{base}{made}")).header("cookie", &cookie).send().await.unwrap();
        let page = page.text().await.unwrap();
        assert!(page.contains("&lt;p&gt;Launch &lt;strong&gt;tonight"), "{page}");
        assert!(!page.contains("alert("), "nothing of the script reaches the page");

        server.stop().await;
        db.drop_db().await;
    }
}

/// The console edits each of a campaign's articles on its own page: a second article is added
/// (its HTML cleaned like every other way in), edited, listed on the campaign page, and sent alone
/// by a push that chooses it; removing it is refused with the domain's reason while a scheduled
/// push sends it (nothing changes) and works once that push is cancelled; a 9th article is
/// refused with the exact reason; a form without the session's token is 403 and changes nothing.
/// Both databases.
#[tokio::test]
async fn console_edits_adds_and_removes_a_campaigns_articles() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let Launch { clock, fake, server, base } = launch(&db, |_| {}).await;
        fake.follow("oFan1");
        let (status, made) =
            api(&base, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(campaign_body("Articles"))).await;
        assert_eq!(status, 201, "{made}");
        let id = made["id"].as_i64().unwrap();
        let articles_of = async || {
            let (status, shown) =
                api(&base, "GET", &format!("/api/v1/campaigns/{id}"), Some(MARKETING_TOKEN), None).await;
            assert_eq!(status, 200, "{shown}");
            shown["articles"].clone()
        };
        let first = made["articles"][0].clone();

        let cookie = console_sign_in(server.addr, MARKETING_TOKEN).await;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let get = async |path: &str| {
            let resp = http.get(format!("{base}{path}")).header("cookie", &cookie).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        };
        let post = async |path: &str, form: &[(&str, &str)]| {
            let resp = http.post(format!("{base}{path}")).header("cookie", &cookie).form(form).send().await.unwrap();
            let status = resp.status().as_u16();
            let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
            (status, location, resp.text().await.unwrap())
        };
        let campaign_page = format!("/admin/campaigns/{id}");
        let (status, page) = get(&campaign_page).await;
        assert_eq!(status, 200, "{page}");
        let token = form_token(&page);
        assert!(page.contains(&format!("href=\"/admin/campaigns/{id}/articles/1\"")), "{page}");
        assert!(page.contains("id=\"add-article\""), "{page}");
        assert!(!page.contains("id=\"remove-article-1\""), "the only article cannot be removed: {page}");

        // The form of an empty article: the editor's fields, not the campaign's.
        let (status, page) = get(&format!("/admin/campaigns/{id}/articles")).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains(&format!("action=\"/admin/campaigns/{id}/articles\"")), "{page}");
        assert!(page.contains("id=\"content\"") && page.contains("/admin/editor.js"), "{page}");
        assert!(!page.contains("id=\"name\""), "{page}");

        // A second article, added then edited: its HTML cleaned, the first untouched.
        let added = [("form_token", token.as_str()), ("title", "第二篇 The second"), ("cover_media_id", "THUMB_2")];
        let (status, to, text) = post(&format!("/admin/campaigns/{id}/articles"), &added).await;
        assert_eq!((status, to.as_deref()), (303, Some(&*format!("{campaign_page}?done=article-added"))), "{text}");
        let edited = [
            ("form_token", token.as_str()),
            ("title", "第二篇 The second, edited"),
            ("cover_media_id", "THUMB_2"),
            ("content", DIRTY),
        ];
        let (status, to, text) = post(&format!("/admin/campaigns/{id}/articles/2"), &edited).await;
        assert_eq!((status, to.as_deref()), (303, Some(&*format!("{campaign_page}?done=article-saved"))), "{text}");
        let articles = articles_of().await;
        assert_eq!(articles.as_array().unwrap().len(), 2, "{articles}");
        assert_eq!(articles[0], first, "the first article is as it was");
        assert_eq!(articles[1]["title"], "第二篇 The second, edited");
        assert_eq!(articles[1]["content"], CLEANED);
        let (status, page) = get(&format!("/admin/campaigns/{id}/articles/2")).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("&lt;p&gt;Launch &lt;strong&gt;tonight"), "{page}");
        let (status, page) = get(&format!("/admin/campaigns/{id}/articles/3")).await;
        assert_eq!(status, 404, "{page}");

        // The campaign page lists both, each with its edit link and remove button.
        let (_, page) = get(&format!("{campaign_page}?done=article-saved")).await;
        assert!(page.contains("文章已保存 Article saved"), "{page}");
        assert!(page.contains("The Limited Edition, tonight") && page.contains("第二篇 The second, edited"), "{page}");
        for n in [1, 2] {
            assert!(page.contains(&format!("href=\"/admin/campaigns/{id}/articles/{n}\"")), "{page}");
            assert!(page.contains(&format!("id=\"remove-article-{n}\"")), "{page}");
        }

        // A form without the session's token: 403, nothing changed.
        let forged = [("form_token", "forged"), ("title", "Forged"), ("cover_media_id", "THUMB_9")];
        for path in [format!("/admin/campaigns/{id}/articles"), format!("/admin/campaigns/{id}/articles/2")] {
            let (status, _, text) = post(&path, &forged).await;
            assert_eq!(status, 403, "{path}: {text}");
        }
        let (status, _, text) = post(&format!("/admin/campaigns/{id}/articles/2/remove"), &[("form_token", "x")]).await;
        assert_eq!(status, 403, "{text}");
        assert_eq!(articles_of().await, articles, "nothing changed");

        // A push choosing article 2 sends it alone.
        let pushes = format!("/api/v1/campaigns/{id}/pushes");
        let mut now = push_body("second only", json!({ "type": "all" }), &in_secs(&clock, 1.0));
        now["articles"] = json!([1]);
        let (status, sent) = api(&base, "POST", &pushes, Some(MARKETING_TOKEN), Some(now)).await;
        assert_eq!(status, 201, "{sent}");
        let sent_id = sent["id"].as_i64().unwrap();
        assert!(
            wait_for(15, async || push(&base, sent_id).await["runs"][0]["status"] == "finished").await,
            "{}",
            push(&base, sent_id).await
        );
        let drafts = fake.calls_to("/cgi-bin/draft/add");
        assert_eq!(drafts.len(), 1, "{drafts:?}");
        let titles: Vec<&str> =
            drafts[0].body["articles"].as_array().unwrap().iter().map(|a| a["title"].as_str().unwrap()).collect();
        assert_eq!(titles, ["第二篇 The second, edited"]);
        assert_eq!(drafts[0].body["articles"][0]["thumb_media_id"], "THUMB_2");

        // While a scheduled push sends article 2, it cannot be removed.
        let mut later = push_body("later", json!({ "type": "all" }), "2027-02-01 10:00");
        later["articles"] = json!([1]);
        let (status, later) = api(&base, "POST", &pushes, Some(MARKETING_TOKEN), Some(later)).await;
        assert_eq!(status, 201, "{later}");
        let later_id = later["id"].as_i64().unwrap();
        let remove = format!("/admin/campaigns/{id}/articles/2/remove");
        let (status, to, page) = post(&remove, &[("form_token", &token)]).await;
        assert_eq!((status, to), (409, None), "{page}");
        let reason = format!(
            "未能删除 Not removed: push {later_id} (later) is to send article index 1, which this edit removes: \
             cancel that push first (and schedule it anew)"
        );
        assert!(page.contains(&format!("<div class=\"error\" id=\"error\">{reason}</div>")), "{page}");
        assert_eq!(articles_of().await, articles, "nothing changed");

        // Cancelled, the push no longer holds it: removed.
        let (status, answer) =
            api(&base, "POST", &format!("/api/v1/pushes/{later_id}/cancel"), Some(MARKETING_TOKEN), None).await;
        assert_eq!(status, 200, "{answer}");
        let (status, to, page) = post(&remove, &[("form_token", &token)]).await;
        assert_eq!((status, to.as_deref()), (303, Some(&*format!("{campaign_page}?done=article-removed"))), "{page}");
        assert_eq!(articles_of().await, json!([first]));
        let (_, page) = get(&campaign_page).await;
        assert!(!page.contains("id=\"remove-article-1\""), "{page}");

        // Up to 8 articles; the 9th is refused with the reason and stores nothing.
        for n in 2..=8 {
            let title = format!("第 {n} 篇 Article {n}");
            let form = [("form_token", token.as_str()), ("title", &title), ("cover_media_id", "THUMB_2")];
            let (status, _, text) = post(&format!("/admin/campaigns/{id}/articles"), &form).await;
            assert_eq!(status, 303, "article {n}: {text}");
        }
        let eight = articles_of().await;
        assert_eq!(eight.as_array().unwrap().len(), 8, "{eight}");
        let (_, page) = get(&campaign_page).await;
        assert!(!page.contains("id=\"add-article\"") && page.contains("id=\"articles-full\""), "{page}");
        let ninth = [("form_token", token.as_str()), ("title", "第九篇 The ninth"), ("cover_media_id", "THUMB_2")];
        let (status, to, page) = post(&format!("/admin/campaigns/{id}/articles"), &ninth).await;
        assert_eq!((status, to), (400, None), "{page}");
        assert!(
            page.contains(
                "<div class=\"error\" id=\"error\">未能保存 Not saved: a campaign has 1 to 8 articles (got 9)</div>"
            ),
            "{page}"
        );
        assert!(page.contains("value=\"第九篇 The ninth\""), "the form keeps what was typed: {page}");
        assert_eq!(articles_of().await, eight, "nothing changed");

        // Removing an article before one a scheduled push sends would move that one: refused too.
        let mut third = push_body("third", json!({ "type": "all" }), "2027-02-01 10:00");
        third["articles"] = json!([2]);
        let (status, third) = api(&base, "POST", &pushes, Some(MARKETING_TOKEN), Some(third)).await;
        assert_eq!(status, 201, "{third}");
        let (status, to, page) = post(&remove, &[("form_token", &token)]).await;
        assert_eq!((status, to), (409, None), "{page}");
        let reason = format!(
            "未能删除 Not removed: push {} (third) is to send article index 2, which this edit moves: \
             cancel that push first (and schedule it anew)",
            third["id"]
        );
        assert!(page.contains(&format!("<div class=\"error\" id=\"error\">{reason}</div>")), "{page}");
        assert_eq!(articles_of().await, eight, "nothing changed");
        // The last article, which no push sends, goes.
        let (status, to, page) =
            post(&format!("/admin/campaigns/{id}/articles/8/remove"), &[("form_token", &token)]).await;
        assert_eq!((status, to.as_deref()), (303, Some(&*format!("{campaign_page}?done=article-removed"))), "{page}");
        assert_eq!(articles_of().await.as_array().unwrap()[..], eight.as_array().unwrap()[..7]);

        server.stop().await;
        db.drop_db().await;
    }
}

/// A PNG's signature and a little more: enough for WeChat (and the fake) to take it as a PNG.
fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.resize(len, 0);
    bytes
}

/// The editor's image button: `POST /admin/images` with the image as the body and the session's
/// form token in `X-Form-Token` reaches WeChat's `media/uploadimg` through the client and answers
/// the URL; a file over 1 MB, one that is not a JPEG or PNG, or a request without the form token
/// gets its exact error and reaches nobody; WeChat's own refusal is passed on.
#[tokio::test]
async fn article_images_upload_through_the_console_to_wechat() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let mut config = test_config(&db, Mode::Safe);
        let fake = start_fake(&mut config).await;
        let server = TestServer::start(config).await;
        let base = format!("http://{}", server.addr);
        let cookie = console_sign_in(server.addr, MARKETING_TOKEN).await;
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let page = http.get(format!("{base}/admin/campaigns/new")).header("cookie", &cookie).send().await.unwrap();
        let token = form_token(&page.text().await.unwrap());
        let upload = async |token: &str, content_type: &str, bytes: Vec<u8>| {
            let resp = http
                .post(format!("{base}/admin/images"))
                .header("cookie", &cookie)
                .header("x-form-token", token)
                .header("content-type", content_type)
                .body(bytes)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        };
        let uploads = || fake.calls_to("/cgi-bin/media/uploadimg");

        let (status, answer) = upload(&token, "image/png", png(2048)).await;
        assert_eq!(status, 200, "{answer}");
        let url = answer["url"].as_str().unwrap();
        assert!(url.starts_with("https://mmbiz.qpic.cn/mmbiz_png/fake") && url.ends_with("?wx_fmt=png"), "{url}");
        assert_eq!(uploads().len(), 1);
        assert_eq!(uploads()[0].errcode, 0);

        let refused: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
            (
                "too large",
                "image/png",
                png(1024 * 1024 + 1),
                413,
                "图片不能超过 1 MB · An article image is at most 1 MB",
            ),
            (
                "a GIF",
                "image/gif",
                b"GIF89a\x01\x00\x01\x00".to_vec(),
                415,
                "只能上传 JPEG 或 PNG 图片 · An article image must be a JPEG or PNG",
            ),
            (
                "a PNG by name only",
                "image/png",
                b"<svg onload=alert(1)>".to_vec(),
                415,
                "只能上传 JPEG 或 PNG 图片 · An article image must be a JPEG or PNG",
            ),
            ("nothing", "image/png", Vec::new(), 400, "没有图片 · No image was sent"),
        ];
        for (what, content_type, bytes, want, error) in refused {
            let (status, answer) = upload(&token, content_type, bytes).await;
            assert_eq!((status, answer["error"].as_str()), (want, Some(error)), "{what}: {answer}");
        }
        let (status, answer) = upload("forged", "image/png", png(100)).await;
        assert_eq!((status, answer["error"].as_str()), (403, Some("invalid form; reload the page")), "{answer}");
        let signed_out = http.post(format!("{base}/admin/images")).header("x-form-token", &token).body(png(100));
        let resp = signed_out.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        assert_eq!(uploads().len(), 1, "no refused file reached WeChat");

        // WeChat's refusal (here forced) is passed on, not taken for a URL.
        fake.tweak(|k| k.forced.push_back(40005));
        let (status, answer) = upload(&token, "image/jpeg", vec![0xff, 0xd8, 0xff, 0xe0, 0, 0]).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (415, Some("只能上传 JPEG 或 PNG 图片 · An article image must be a JPEG or PNG"))
        );
        fake.tweak(|k| k.forced.push_back(45009));
        let (status, answer) = upload(&token, "image/jpeg", vec![0xff, 0xd8, 0xff, 0xe0, 0, 0]).await;
        assert_eq!(status, 502, "{answer}");
        assert_eq!(
            answer["error"],
            "微信未接受图片 · WeChat did not take the image: WeChat error 45009: forced by the fake"
        );

        server.stop().await;
        db.drop_db().await;
    }
}

/// A campaign of three articles, and pushes that each choose which they send (the teaser two of
/// them, the launch all): the draft WeChat gets carries only the chosen ones, in the order
/// chosen, and so does a preview. Bad choices are refused with their reason and store nothing;
/// an edit that would drop an article a scheduled push sends is refused. Rescheduling moves a
/// push with WeChat's limits checked again (its own old time not counted against it), and is
/// refused with the reason once the push fired or was cancelled. Both databases.
#[tokio::test]
async fn pushes_choose_their_articles_and_move_to_new_times() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let Launch { clock, fake, server, base } = launch(&db, |_| {}).await;
        fake.follow("oFan1");
        fake.follow("oFan2");

        let mut body = campaign_body("Three articles");
        body["articles"] = json!([
            { "title": "Teaser: tonight", "cover_media_id": "THUMB_1" },
            { "title": "The collection", "cover_media_id": "THUMB_2" },
            { "title": "How to buy", "cover_media_id": "THUMB_3" },
        ]);
        let (status, campaign) =
            api(&base, "POST", "/api/v1/campaigns", Some(MARKETING_TOKEN), Some(body.clone())).await;
        assert_eq!(status, 201, "{campaign}");
        let id = campaign["id"].as_i64().unwrap();
        let pushes = format!("/api/v1/campaigns/{id}/pushes");
        let choosing = |name: &str, articles: Value, at: &str| {
            let mut b = push_body(name, json!({ "type": "all" }), at);
            b["articles"] = articles;
            b
        };
        let titles = |draft: &Value| -> Vec<String> {
            draft["articles"].as_array().unwrap().iter().map(|a| a["title"].as_str().unwrap().to_owned()).collect()
        };

        // Bad choices: refused with the reason; nothing stored.
        let text = json!({ "name": "t", "msg_type": "text", "text": "hi", "audience": { "type": "all" },
                           "at": "2027-02-01 10:00", "articles": [0] });
        let bad: Vec<(&str, Value, &str)> = vec![
            ("out of range", choosing("x", json!([0, 3]), "2027-02-01 10:00"), "indexes 0 to 2; there is no 3"),
            ("twice", choosing("x", json!([1, 1]), "2027-02-01 10:00"), "index 1 is chosen twice"),
            ("none", choosing("x", json!([]), "2027-02-01 10:00"), "1 to 8 of the campaign's articles (got 0)"),
            ("nine", choosing("x", json!([0, 1, 2, 3, 4, 5, 6, 7, 8]), "2027-02-01 10:00"), "(got 9)"),
            ("negative", choosing("x", json!([-1]), "2027-02-01 10:00"), "-1 is not an index"),
            ("for a text", text, "a text push sends its text, not articles"),
        ];
        for (what, body, reason) in bad {
            let (status, answer) = api(&base, "POST", &pushes, Some(MARKETING_TOKEN), Some(body)).await;
            assert_eq!(status, 400, "{what}: {answer}");
            assert!(answer["error"].as_str().unwrap().contains(reason), "{what}: {answer}");
        }
        let (_, listed) = api(&base, "GET", "/api/v1/pushes", Some(MARKETING_TOKEN), None).await;
        assert_eq!(listed["pushes"].as_array().unwrap().len(), 0, "nothing stored: {listed}");

        // A preview of one article: its draft carries that one.
        let preview = format!("/api/v1/campaigns/{id}/preview");
        let (status, answer) =
            api(&base, "POST", &preview, Some(MARKETING_TOKEN), Some(json!({ "openids": ["oFan1"], "articles": [1] })))
                .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(titles(&fake.calls_to("/cgi-bin/draft/add")[0].body), ["The collection"]);
        let (status, answer) =
            api(&base, "POST", &preview, Some(MARKETING_TOKEN), Some(json!({ "openids": ["oFan1"], "articles": [7] })))
                .await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(fake.calls_to("/cgi-bin/draft/add").len(), 1, "no draft for a refused preview");

        // The teaser sends the third article then the first; the launch, choosing nothing, all.
        let (status, teaser) = api(
            &base,
            "POST",
            &pushes,
            Some(MARKETING_TOKEN),
            Some(choosing("teaser", json!([2, 0]), &in_secs(&clock, 1.5))),
        )
        .await;
        assert_eq!((status, &teaser["articles"]), (201, &json!([2, 0])), "{teaser}");
        let (status, launch) = api(
            &base,
            "POST",
            &pushes,
            Some(MARKETING_TOKEN),
            Some(push_body("launch", json!({ "type": "all" }), &in_secs(&clock, 2.5))),
        )
        .await;
        assert_eq!((status, &launch["articles"]), (201, &Value::Null), "{launch}");
        for p in [&teaser, &launch] {
            let pid = p["id"].as_i64().unwrap();
            assert!(
                wait_for(15, async || push(&base, pid).await["runs"][0]["status"] == "finished").await,
                "push {pid}: {}",
                push(&base, pid).await
            );
        }
        let drafts = fake.calls_to("/cgi-bin/draft/add");
        assert_eq!(drafts.len(), 3, "one draft per send");
        assert_eq!(titles(&drafts[1].body), ["How to buy", "Teaser: tonight"]);
        assert_eq!(drafts[1].body["articles"][0]["thumb_media_id"], "THUMB_3");
        assert_eq!(titles(&drafts[2].body), ["Teaser: tonight", "The collection", "How to buy"]);

        // A later push sending the third article: an edit dropping it is refused.
        let (status, later) =
            api(&base, "POST", &pushes, Some(MARKETING_TOKEN), Some(choosing("later", json!([2]), "2027-02-01 10:00")))
                .await;
        assert_eq!(status, 201, "{later}");
        let later_id = later["id"].as_i64().unwrap();
        let mut shorter = body.clone();
        shorter["articles"].as_array_mut().unwrap().pop();
        let (status, answer) =
            api(&base, "PUT", &format!("/api/v1/campaigns/{id}"), Some(MARKETING_TOKEN), Some(shorter)).await;
        assert_eq!(status, 409, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(&format!("push {later_id} (later) is to send article index 2"))
        );
        let (_, kept) = api(&base, "GET", &format!("/api/v1/campaigns/{id}"), Some(MARKETING_TOKEN), None).await;
        assert_eq!(kept["articles"].as_array().unwrap().len(), 3);

        // Rescheduled: a new time, checked as when scheduling.
        let reschedule = |pid: i64, body: Value| {
            let base = base.clone();
            async move {
                api(&base, "POST", &format!("/api/v1/pushes/{pid}/reschedule"), Some(MARKETING_TOKEN), Some(body)).await
            }
        };
        let ms = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp_millis();
        let (status, moved) = reschedule(later_id, json!({ "at": "2027-02-02 11:00" })).await;
        assert_eq!(status, 200, "{moved}");
        assert_eq!(
            (moved["at"].as_i64(), moved["next_at"].as_i64()),
            (Some(ms("2027-02-02T11:00:00+08:00")), Some(ms("2027-02-02T11:00:00+08:00")))
        );
        assert_eq!(moved["articles"], json!([2]), "the rest of the push is as it was");
        let refusals: Vec<(Value, u16, &str)> = vec![
            (json!({ "at": "2020-01-01 00:00" }), 422, "in the past"),
            (json!({}), 400, "give either at (a time) or cron (a pattern)"),
            (json!({ "cron": "* * * * *" }), 400, "at most once an hour"),
            (json!({ "at": "2027-02-03 10:00", "colour": "red" }), 400, "unknown field"),
        ];
        for (body, want, reason) in refusals {
            let (status, answer) = reschedule(later_id, body.clone()).await;
            assert_eq!(status, want, "{body}: {answer}");
            assert!(answer["error"].as_str().unwrap().contains(reason), "{body}: {answer}");
        }
        // WeChat's four a month: four pushes to everyone in March; "later" may not join them,
        // while one of the four may move within March (its old time is not counted twice).
        let mut march = Vec::new();
        for day in 1..=4 {
            let (status, p) = api(
                &base,
                "POST",
                &pushes,
                Some(MARKETING_TOKEN),
                Some(push_body("march", json!({ "type": "all" }), &format!("2027-03-0{day} 10:00"))),
            )
            .await;
            assert_eq!(status, 201, "{p}");
            march.push(p["id"].as_i64().unwrap());
        }
        let (status, answer) = reschedule(later_id, json!({ "at": "2027-03-10 10:00" })).await;
        assert_eq!(status, 422, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains("4 times a month"), "{answer}");
        assert_eq!(push(&base, later_id).await["at"].as_i64(), Some(ms("2027-02-02T11:00:00+08:00")), "unchanged");
        let (status, answer) = reschedule(march[0], json!({ "at": "2027-03-20 10:00" })).await;
        assert_eq!(status, 200, "{answer}");

        // Fired or cancelled: 409 with the reason; unknown: 404; no token: 401.
        let teaser_id = teaser["id"].as_i64().unwrap();
        let (status, answer) = reschedule(teaser_id, json!({ "at": "2027-02-05 10:00" })).await;
        assert_eq!(status, 409, "{answer}");
        assert_eq!(answer["error"], format!("push {teaser_id} is fired and cannot be rescheduled"));
        let (status, _) =
            api(&base, "POST", &format!("/api/v1/pushes/{later_id}/cancel"), Some(MARKETING_TOKEN), None).await;
        assert_eq!(status, 200);
        let (status, answer) = reschedule(later_id, json!({ "at": "2027-02-05 10:00" })).await;
        assert_eq!(status, 409, "{answer}");
        assert_eq!(answer["error"], format!("push {later_id} is cancelled and cannot be rescheduled"));
        assert_eq!(reschedule(999, json!({ "at": "2027-02-05 10:00" })).await.0, 404);
        let (status, _) =
            api(&base, "POST", &format!("/api/v1/pushes/{later_id}/reschedule"), None, Some(json!({ "at": "x" })))
                .await;
        assert_eq!(status, 401);

        server.stop().await;
        db.drop_db().await;
    }
}
