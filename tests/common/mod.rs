//! Test harness: real servers on loopback sockets, over SQLite files or fresh PostgreSQL
//! databases (when `WXOA_TEST_POSTGRES_URL` is set; with `CI=true` it must be).
#![allow(dead_code)]

pub mod browser;
pub mod h5_browser;
pub mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use wxoa::app::App;
use wxoa::bot::handlers::Handlers;
use wxoa::config::Config;
use wxoa::state::AppState;
use wxoa::wechat::envelope::{Envelope, Mode, random_nonce};

pub const APP_ID: &str = "wx5f0e1d2c3b4a6978";
pub const TOKEN: &str = "testtoken";
pub const AES_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the PostgreSQL tests connect: `WXOA_TEST_POSTGRES_URL`, or the local server the
/// machines here run (postgres@127.0.0.1:5432/test) when it answers.
pub fn postgres_url() -> Option<String> {
    static URL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("WXOA_TEST_POSTGRES_URL") {
            return (!url.is_empty()).then_some(url);
        }
        let local = "127.0.0.1:5432".parse().unwrap();
        std::net::TcpStream::connect_timeout(&local, std::time::Duration::from_millis(300))
            .ok()
            .map(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    })
    .clone()
}

/// The backends to run a storage-touching test against. With `CI=true` PostgreSQL is required.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    match postgres_url() {
        Some(_) => out.push(Backend::Postgres),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but no PostgreSQL (set WXOA_TEST_POSTGRES_URL): the PostgreSQL tests must run in CI")
        }
        None => eprintln!("note: no PostgreSQL reachable; PostgreSQL tests skipped"),
    }
    out
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let mut id = [0u8; 6];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
    let dir = std::env::temp_dir().join(format!("wxoa-{tag}-{}", wxoa::wechat::signature::hex(&id)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A database of its own for one test.
pub struct Db {
    pub backend: Backend,
    pub url: String,
    pg_name: Option<String>,
}

impl Db {
    pub async fn new(backend: Backend) -> Db {
        match backend {
            Backend::Sqlite => {
                let dir = temp_dir("db");
                Db { backend, url: format!("sqlite://{}/wxoa.db", dir.display()), pg_name: None }
            }
            Backend::Postgres => {
                let admin_url = postgres_url().unwrap();
                let mut id = [0u8; 6];
                rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
                let name = format!("wxoa_t_{}", wxoa::wechat::signature::hex(&id));
                let admin =
                    wxoa::store::Store::connect(&admin_url, 1).await.expect("connect to WXOA_TEST_POSTGRES_URL");
                if let wxoa::store::Pool::Postgres(pool) = &admin.pool {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(pool).await.unwrap();
                }
                admin.close().await;
                let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
                Db { backend, url: format!("{base}/{name}"), pg_name: Some(name) }
            }
        }
    }

    /// A SQLite database in `dir` (created on first use).
    pub fn sqlite_in(dir: &std::path::Path) -> Db {
        Db { backend: Backend::Sqlite, url: format!("sqlite://{}/wxoa.db", dir.display()), pg_name: None }
    }

    pub async fn drop_db(self) {
        if let Some(name) = self.pg_name {
            let admin_url = postgres_url().unwrap();
            let admin = wxoa::store::Store::connect(&admin_url, 1).await.unwrap();
            if let wxoa::store::Pool::Postgres(pool) = &admin.pool {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(pool)
                    .await;
            }
            admin.close().await;
        }
    }
}

pub const CHECKOUT_SECRET: &str = "test-checkout-secret-0123456789abcdef";
pub const SHOP_SECRET: &str = "test-shop-secret-0123456789abcdef0123";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const MARKETING_TOKEN: &str = "test-marketing-token";

/// The configuration tests start from: the repo's routes and templates, a test account.
pub fn test_config(db: &Db, mode: Mode) -> Config {
    // A clock of the test's own, shared by the app and the fake built from this config.
    let mut c = Config { clock: wxoa::clock::Clock::settable(), ..Config::default() };
    c.server.listen = "127.0.0.1:0".into();
    c.server.shutdown_grace_secs = 5;
    c.wechat.app_id = APP_ID.into();
    c.wechat.app_secret = "secret".into();
    c.wechat.token = TOKEN.into();
    c.wechat.encoding_aes_key = AES_KEY.into();
    c.wechat.mode = mode;
    c.database.url = db.url.clone();
    c.database.max_connections = 4;
    // Each test's database is new (an empty PostgreSQL database gets wxoa's tables).
    c.database.create = true;
    c.bot.routes = repo().join("config/routes.toml");
    c.bot.templates = repo().join("templates/replies");
    c.bot.menu = repo().join("config/menu.toml");
    c.admin.pages = repo().join("templates/admin");
    // Nothing is reachable at WeChat's real address from here; tests that send start a fake.
    c.wechat.api_base = "http://127.0.0.1:9".into();
    c.outbox.poll_ms = 50;
    c.h5.session_secret = "test-session-secret-0123456789abcdef".into();
    c.h5.pages = repo().join("templates/pages");
    c.notices.file = repo().join("config/notices.toml");
    c.notices.templates = repo().join("templates/notices");
    c.checkout.secret = CHECKOUT_SECRET.into();
    c.shop.secret = SHOP_SECRET.into();
    c.admin.tokens = vec![
        wxoa::config::AdminToken {
            name: "test-admin".into(),
            role: wxoa::config::Role::Admin,
            sha256: wxoa::admin::hash_token(ADMIN_TOKEN),
        },
        wxoa::config::AdminToken {
            name: "test-marketing".into(),
            role: wxoa::config::Role::Marketing,
            sha256: wxoa::admin::hash_token(MARKETING_TOKEN),
        },
    ];
    c.validate().unwrap();
    c
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    pub state: AppState,
    pub envelope: Envelope,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        Self::start_with(config, Handlers::builtin()).await
    }

    pub async fn start_with(config: Config, handlers: Handlers) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let envelope = config.envelope();
        let app = App::build(config, handlers).await.unwrap_or_else(|e| panic!("app: {e}"));
        let state = app.state.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.serve(listener, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            url: format!("http://{addr}/wechat"),
            state,
            envelope,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task,
        }
    }

    /// Posts a plaintext message signed (and encrypted, per mode) as WeChat would; returns the
    /// status and the decrypted reply (`None` for `success`).
    pub async fn send(&self, xml: &str) -> (u16, Option<String>) {
        let now = self.state.clock.now_secs();
        self.send_at(xml, now, &random_nonce()).await
    }

    pub async fn send_at(&self, xml: &str, timestamp: i64, nonce: &str) -> (u16, Option<String>) {
        let (query, body) = self.envelope.wrap(xml, timestamp, nonce);
        let (status, text) = self.raw("POST", &query, body).await;
        if status != 200 {
            return (status, Some(text));
        }
        (status, self.envelope.unwrap_reply(&text).expect("reply verifies and decrypts"))
    }

    /// A raw request to /wechat with the given query string and body.
    pub async fn raw(&self, method: &str, query: &str, body: String) -> (u16, String) {
        let url = format!("{}?{query}", self.url);
        let req = match method {
            "GET" => self.client.get(url),
            _ => self.client.post(url).body(body),
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self.client.get(format!("http://{}{path}", self.addr)).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// Graceful shutdown, as on SIGTERM; fails the test if serving ended in an error.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let TestServer { state, task, .. } = self;
        drop(state);
        task.await.unwrap().unwrap();
    }
}

/// Starts a fake WeChat for `config`'s account and points the config's API base at it.
pub async fn start_fake(config: &mut Config) -> wxoa::fake::FakeWeChat {
    let fake = wxoa::fake::FakeWeChat::new(config);
    config.wechat.api_base = fake.spawn().await;
    fake
}

/// Polls `check` every 20 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    check()
}

/// A plaintext event from `openid` (`subscribe`, `CLICK`, …) with its `EventKey`, at
/// `create_time` (unix seconds: events are deduplicated by it).
pub fn event_message(openid: &str, event: &str, key: &str, create_time: i64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_3f2a1b0c9d8e]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>\
         <EventKey><![CDATA[{key}]]></EventKey></xml>"
    )
}

/// A plaintext text message from `openid` with `msg_id`.
pub fn text_message(openid: &str, msg_id: u64, content: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_3f2a1b0c9d8e]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{msg_id}</MsgId></xml>",
        // Only the query's timestamp is checked against the server's clock, not CreateTime.
        wxoa::clock::Clock::system().now_secs()
    )
}

/// Reads a field of a reply document.
pub fn field(doc: &str, path: &str) -> Option<String> {
    wxoa::wechat::xml::parse(doc).ok()?.get(path).map(str::to_owned)
}

/// A child process killed (and reaped) when it goes out of scope, however the test ends.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (up to `secs`) until `GET /healthz` at `addr` answers 200; panics with `what` otherwise.
pub fn wait_healthy(addr: &str, secs: u64, what: impl Fn() -> String) {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ =
                s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes());
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no /healthz at {addr}: {}", what());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A call to the admin API at `base` (`host:port`, or `http://host:port`) with a bearer token
/// and a JSON body; the status and the JSON answer (a string if it is not JSON).
pub async fn api_call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let http = reqwest::Client::new();
    let url = format!("http://{}{path}", base.trim_start_matches("http://"));
    let mut req = match method {
        "POST" => http.post(url),
        "PUT" => http.put(url),
        "DELETE" => http.delete(url),
        _ => http.get(url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// A server on a fresh database of `backend` whose WeChat API and OAuth go to a fake WeChat,
/// with `tweak` applied to its config: the database, the server, the fake and the config.
pub async fn oauth_server(
    backend: Backend,
    tweak: impl FnOnce(&mut Config),
) -> (Db, TestServer, wxoa::fake::FakeWeChat, Config) {
    let db = Db::new(backend).await;
    let mut config = test_config(&db, Mode::Safe);
    let fake = start_fake(&mut config).await;
    config.h5.oauth_base = config.wechat.api_base.clone();
    tweak(&mut config);
    let server = TestServer::start(config.clone()).await;
    (db, server, fake, config)
}

/// Posts JSON `body` to `url` signed with `secret` at `timestamp` (as the shop, the CRM or a
/// till signs its calls): the status and the answer's text.
pub async fn signed_call(
    client: &reqwest::Client,
    url: String,
    body: &str,
    secret: &str,
    timestamp: i64,
) -> (u16, String) {
    let ts = timestamp.to_string();
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header(wxoa::http::signed::TIMESTAMP_HEADER, &ts)
        .header(wxoa::http::signed::SIGNATURE_HEADER, wxoa::http::signed::signature(secret, &ts, body.as_bytes()))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Posts `body` to the shop API signed with `secret` at `timestamp`.
pub async fn shop_call(server: &TestServer, path: &str, body: &str, secret: &str, timestamp: i64) -> (u16, String) {
    signed_call(&server.client, format!("http://{}{path}", server.addr), body, secret, timestamp).await
}

/// A correctly signed shop call, now.
pub async fn shop(server: &TestServer, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (status, text) =
        shop_call(server, path, &body.to_string(), SHOP_SECRET, server.state.clock.now_ms() / 1000).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON answer: {text}")))
}

/// Signs in to the console as a browser does — the login page first (its login cookie and the
/// form's `login_token`), then the form — and gives the session cookie (`wxoa_admin=…`).
pub async fn console_sign_in(addr: std::net::SocketAddr, token: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(format!("http://{addr}/admin/login")).send().await.unwrap();
    let login_cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let login_token = html.split("name=\"login_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let resp = http
        .post(format!("http://{addr}/admin/login"))
        .header("cookie", login_cookie)
        .form(&[("token", token), ("login_token", &login_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "signed in");
    let cookie = resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned());
    cookie.map(|c| c.split(';').next().unwrap().to_owned()).find(|c| c.starts_with("wxoa_admin=")).unwrap()
}

/// Unix milliseconds of `"YYYY-MM-DD HH:MM"` in China time (what a test sets its clock to).
pub fn china_ms(local: &str) -> i64 {
    let t = chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").expect("YYYY-MM-DD HH:MM");
    t.and_local_timezone(chrono::FixedOffset::east_opt(8 * 3600).unwrap()).unwrap().timestamp_millis()
}

/// `"YYYY-MM-DD"` in China time, `days` after `now_ms` (a date relative to a clock).
pub fn china_day(now_ms: i64, days: i64) -> String {
    wxoa::clock::china_time(now_ms + days * 86_400_000).format("%Y-%m-%d").to_string()
}

/// The code block after `<!-- readme-test: NAME -->` in the README.
pub fn readme_snippet(name: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let marker = format!("<!-- readme-test: {name} -->");
    let after = &readme[readme.find(&marker).unwrap_or_else(|| panic!("README has {marker}")) + marker.len()..];
    let code = &after[after.find("```python\n").expect("a python block") + 10..];
    code[..code.find("\n```").unwrap()].to_owned()
}
