//! A real headless Chromium (Debian's chromium + chromedriver, which `.ci/run` installs), driven
//! over the W3C WebDriver protocol with plain HTTP: enough to click through pages, read them and
//! save screenshots as test artefacts (target/test-artifacts/<test>/).

use super::{repo, temp_dir};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver and one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    shots: PathBuf,
    step: usize,
}

pub fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n))).find(|p| p.is_file())
}

impl Browser {
    /// `None` when chromedriver is not installed (a failure under CI, where `.ci/run` installs it).
    pub async fn start(artefacts: &str) -> Option<Browser> {
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
        let shots = repo().join("target/test-artifacts").join(artefacts);
        std::fs::create_dir_all(&shots).unwrap();
        Some(Browser { driver, base, session, http, shots, step: 0 })
    }

    pub async fn call(&self, method: &str, path: &str, body: Value) -> Value {
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

    pub async fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }

    /// The element matching `css`, waiting up to 5 s for it (a page may still be loading).
    pub async fn find(&self, css: &str) -> String {
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

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call("POST", &format!("/element/{e}/clear"), json!({})).await;
        self.call("POST", &format!("/element/{e}/value"), json!({ "text": text })).await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call("POST", &format!("/element/{e}/click"), json!({})).await;
    }

    /// Clicks something that loads a new page, and waits until the new page is there.
    pub async fn click_through(&self, css: &str) {
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

    /// Reads and acts inside the frame matching `css` until [`Browser::leave_frame`].
    pub async fn enter_frame(&self, css: &str) {
        let e = self.find(css).await;
        self.call("POST", "/frame", json!({ "id": { ELEMENT: e } })).await;
    }

    pub async fn leave_frame(&self) {
        self.call("POST", "/frame", json!({ "id": null })).await;
    }

    /// Waits up to `secs` for the text of `css` to contain `needle`; returns the last text.
    pub async fn wait_for_text(&self, css: &str, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let text = self.text(css).await;
            if text.contains(needle) || Instant::now() > deadline {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.call("GET", &format!("/element/{e}/text"), Value::Null).await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", json!({ "script": script, "args": [] })).await
    }

    /// Saves a screenshot of this step.
    pub async fn shot(&mut self, name: &str) {
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
