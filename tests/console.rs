//! The marketing console clicked through in a real headless Chromium (Debian's chromium and
//! chromedriver, which `.ci/run` installs), spoken to over the W3C WebDriver protocol: sign in,
//! create a campaign watching the live preview, send a preview to a test follower, schedule a
//! push seconds ahead and see it fire with its delivery figures on the timeline. Screenshots of
//! each step go to target/test-artifacts/console/.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wxoa::wechat::envelope::Mode;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver and one browser session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    shots: PathBuf,
    step: usize,
}

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n))).find(|p| p.is_file())
}

impl Browser {
    /// `None` when chromedriver is not installed (a failure under CI, where `.ci/run` installs it).
    async fn start() -> Option<Browser> {
        let (Some(driver), Some(chromium)) =
            (find_binary(&["chromedriver"]), find_binary(&["chromium", "chromium-browser", "google-chrome"]))
        else {
            assert!(std::env::var_os("CI").is_none(), "CI=true but chromium/chromedriver are not installed");
            eprintln!("skipping the browser test: chromium and chromedriver are not installed (.ci/run installs them)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.json::<Value>().await.ok().is_some_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = temp_dir("chromium-profile");
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                         "--no-first-run", "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--window-size=1280,1000", format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let resp: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = resp["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {resp}")).to_owned();
        let shots = repo().join("target/test-artifacts/console");
        std::fs::create_dir_all(&shots).unwrap();
        Some(Browser { driver, base, session, http, shots, step: 0 })
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(v["value"]["error"].is_null(), "webdriver {method} {path}: {v}");
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }

    /// The element matching `css`, waiting up to 5 s for it (a page may still be loading).
    async fn find(&self, css: &str) -> String {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v: Value = self
                .http
                .post(&url)
                .json(&json!({ "using": "css selector", "value": css }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(e) = v["value"][ELEMENT].as_str() {
                return e.to_owned();
            }
            if Instant::now() > deadline {
                let page = self.script("return location.href + '\\n' + document.body.innerText").await;
                panic!("no element {css} on the page:\n{}", page.as_str().unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call("POST", &format!("/element/{e}/clear"), json!({})).await;
        self.call("POST", &format!("/element/{e}/value"), json!({ "text": text })).await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call("POST", &format!("/element/{e}/click"), json!({})).await;
    }

    /// Clicks something that loads a new page, and waits until the new page is there.
    async fn click_through(&self, css: &str) {
        self.script("window.__before_click = true").await;
        self.click(css).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let v = self.script("return !window.__before_click && document.readyState === 'complete'").await;
            if v == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("clicking {css} loaded no new page");
    }

    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.call("GET", &format!("/element/{e}/text"), Value::Null).await.as_str().unwrap_or_default().to_owned()
    }

    async fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", json!({ "script": script, "args": [] })).await
    }

    /// Saves a screenshot of this step.
    async fn shot(&mut self, name: &str) {
        use base64::Engine;
        let png = self.call("GET", "/screenshot", Value::Null).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        self.step += 1;
        std::fs::write(self.shots.join(format!("{:02}-{name}.png", self.step)), bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test]
async fn console_main_path_in_a_real_browser() {
    let Some(mut browser) = Browser::start().await else { return };
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
    browser.type_into("#content", "<p id='p'>Launching at <b>00:13</b>.</p>").await;
    assert_eq!(browser.text("#preview-title").await, "The Limited Edition, tonight");
    assert_eq!(browser.text("#preview-digest").await, "300 pieces, numbered.");
    let body = browser.script("return document.getElementById('preview-body').srcdoc").await;
    assert!(body.as_str().unwrap().contains("<b>00:13</b>"), "{body}");
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

    // A form from elsewhere (no form token) is refused.
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{base}/admin/campaigns"))
        .form(&[("name", "x"), ("title", "t"), ("form_token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "no cookie: sent to sign in");

    browser.call("DELETE", "", Value::Null).await;
    server.stop().await;
    db.drop_db().await;
}
