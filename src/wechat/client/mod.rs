//! The WeChat API client: one [`Client`] for everything wxoa sends to WeChat, with one module per
//! API family the way WeChat groups them ([`menu`], [`message`], [`template`], [`user`], [`tag`],
//! [`qrcode`], [`media`], [`mass`], [`jssdk`], [`oauth`]).
//!
//! Every call carries the shared access token ([`token`]). WeChat answers errors as JSON
//! `{"errcode": n, "errmsg": "…"}` with HTTP 200; each becomes [`CallError::WeChat`]. The client
//! retries only what is safe to retry:
//! * 40001 / 42001 / 40014 (token invalid, expired, malformed): expire the token *if it is still
//!   the one that failed*, refresh, and retry once — never in a loop;
//! * -1 (system busy) and network failures: bounded exponential backoff.
//!
//! Calls are paced per family ([`RateLimits`]) so a burst never earns a 45009 (quota); the pace
//! is the account's, kept in the database and shared by every instance ([`budget`]).

mod budget;
pub mod jssdk;
pub mod mass;
pub mod media;
pub mod menu;
pub mod message;
pub mod oauth;
pub mod qrcode;
pub mod tag;
pub mod template;
pub mod token;
pub mod user;

use crate::store::Store;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use token::TokenManager;

/// errcodes that mean "this access token is no good".
pub const TOKEN_ERRORS: [i64; 3] = [40001, 42001, 40014];
/// System busy.
pub const BUSY: i64 = -1;
/// API quota reached.
pub const QUOTA: i64 = 45009;
/// A mass send's `clientmsgid` was used before (the answer carries that send's msg_id).
pub const CLIENTMSGID_EXISTS: i64 = 45065;
/// The same `clientmsgid` again within a minute: try later.
pub const CLIENTMSGID_TOO_FAST: i64 = 45066;
/// The follower has unsubscribed (or refuses messages).
pub const UNSUBSCRIBED: i64 = 43004;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// WeChat answered with a non-zero errcode.
    WeChat { errcode: i64, errmsg: String },
    /// The call did not get an answer (connection, timeout, HTTP status).
    Http(String),
    /// The answer was not what the API documents.
    Decode(String),
    /// Refused before calling: the arguments break the API's documented limits.
    Invalid(String),
    /// The shared token could not be read or written (the database failed).
    Store(String),
}

impl CallError {
    pub fn errcode(&self) -> Option<i64> {
        match self {
            CallError::WeChat { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    pub fn is_token_error(&self) -> bool {
        self.errcode().is_some_and(|c| TOKEN_ERRORS.contains(&c))
    }

    /// Worth trying again after a pause.
    pub fn is_transient(&self) -> bool {
        matches!(self, CallError::Http(_) | CallError::Store(_)) || self.errcode() == Some(BUSY)
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::WeChat { errcode, errmsg } => write!(f, "WeChat error {errcode}: {errmsg}"),
            CallError::Http(e) => write!(f, "WeChat API unreachable: {e}"),
            CallError::Decode(e) => write!(f, "unexpected WeChat API answer: {e}"),
            CallError::Invalid(e) => write!(f, "not sent to WeChat: {e}"),
            CallError::Store(e) => write!(f, "access token store: {e}"),
        }
    }
}

impl std::error::Error for CallError {}

/// API families, each with its own pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Token,
    Menu,
    Message,
    Template,
    User,
    Tag,
    Qrcode,
    Media,
    Mass,
    Jssdk,
}

const FAMILIES: usize = 10;

impl Family {
    /// The family's name, as `[rate_limits]` and the shared budget's rows call it.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Token => "token",
            Family::Menu => "menu",
            Family::Message => "message",
            Family::Template => "template",
            Family::User => "user",
            Family::Tag => "tag",
            Family::Qrcode => "qrcode",
            Family::Media => "media",
            Family::Mass => "mass",
            Family::Jssdk => "jssdk",
        }
    }
}

/// Calls per second per family (0 = unpaced), from `[rate_limits]` in the config: the budget of
/// the account, shared by every instance on the database.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    pub menu: f64,
    pub message: f64,
    pub template: f64,
    pub user: f64,
    pub tag: f64,
    pub qrcode: f64,
    pub media: f64,
    /// Mass sends: WeChat allows 60 calls a minute.
    pub mass: f64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { menu: 0.0, message: 0.0, template: 0.0, user: 0.0, tag: 0.0, qrcode: 0.0, media: 0.0, mass: 1.0 }
    }
}

impl RateLimits {
    fn per_sec(&self, family: Family) -> f64 {
        match family {
            Family::Token | Family::Jssdk => 0.0,
            Family::Menu => self.menu,
            Family::Message => self.message,
            Family::Template => self.template,
            Family::User => self.user,
            Family::Tag => self.tag,
            Family::Qrcode => self.qrcode,
            Family::Media => self.media,
            Family::Mass => self.mass,
        }
    }
}

/// Backoff for busy answers and network failures.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first: Duration,
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: 3, first: Duration::from_millis(200), max: Duration::from_secs(2) }
    }
}

/// The Official Account a [`Client`] calls WeChat for, and where.
#[derive(Debug, Clone)]
pub struct Account {
    pub app_id: String,
    pub app_secret: crate::secret::Secret,
    /// `https://api.weixin.qq.com`, or a fake's address.
    pub api_base: String,
    pub token_api: token::TokenApi,
}

#[derive(Clone)]
pub struct Client(Arc<Inner>);

struct Inner {
    http: reqwest::Client,
    base: String,
    app_id: String,
    tokens: TokenManager,
    /// Where the shared pace is kept.
    store: Store,
    pacers: Vec<Option<budget::Pace>>,
    /// The JS-SDK ticket this process last read.
    tickets: jssdk::Tickets,
    retry: Retry,
}

/// The `{"errcode":0,"errmsg":"ok"}` most write calls answer.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Ack {
    #[serde(default)]
    pub errcode: i64,
    #[serde(default)]
    pub errmsg: String,
}

impl Client {
    pub fn new(account: &Account, limits: &RateLimits, store: Store) -> Client {
        Self::with_retry(account, limits, store, Retry::default())
    }

    pub fn with_retry(account: &Account, limits: &RateLimits, store: Store, retry: Retry) -> Client {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(256)
            .build()
            .expect("HTTP client");
        let base = account.api_base.trim_end_matches('/').to_owned();
        let tokens = TokenManager::new(store.clone(), http.clone(), &base, account);
        let families = [
            Family::Token,
            Family::Menu,
            Family::Message,
            Family::Template,
            Family::User,
            Family::Tag,
            Family::Qrcode,
            Family::Media,
            Family::Mass,
            Family::Jssdk,
        ];
        debug_assert_eq!(families.len(), FAMILIES);
        let pacers = families.iter().map(|f| budget::Pace::new(*f, limits.per_sec(*f))).collect();
        Client(Arc::new(Inner {
            http,
            base,
            app_id: account.app_id.clone(),
            tokens,
            store,
            pacers,
            tickets: Default::default(),
            retry,
        }))
    }

    pub fn app_id(&self) -> &str {
        &self.0.app_id
    }

    pub fn base(&self) -> &str {
        &self.0.base
    }

    pub fn tokens(&self) -> &TokenManager {
        &self.0.tokens
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.0.http
    }

    /// POST `body` as JSON to `path` with the access token.
    pub async fn post<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        family: Family,
        path: &str,
        body: &Req,
    ) -> Result<Resp, CallError> {
        let body = serde_json::to_vec(body).map_err(|e| CallError::Decode(e.to_string()))?;
        self.call(family, reqwest::Method::POST, path, &[], Some(("application/json".to_owned(), body))).await
    }

    /// POST a ready-made body of `content_type` (a multipart upload) to `path` with the access
    /// token, paced and retried like every other call.
    pub async fn post_body<Resp: DeserializeOwned>(
        &self,
        family: Family,
        path: &str,
        content_type: String,
        body: Vec<u8>,
    ) -> Result<Resp, CallError> {
        self.call(family, reqwest::Method::POST, path, &[], Some((content_type, body))).await
    }

    /// GET `path` with `query` and the access token.
    pub async fn get<Resp: DeserializeOwned>(
        &self,
        family: Family,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Resp, CallError> {
        self.call(family, reqwest::Method::GET, path, query, None).await
    }

    async fn call<Resp: DeserializeOwned>(
        &self,
        family: Family,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<(String, Vec<u8>)>,
    ) -> Result<Resp, CallError> {
        if let Some(pace) = &self.0.pacers[family as usize] {
            pace.wait(&self.0.store, &self.0.app_id).await?;
        }
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            let token = self.0.tokens.get().await?;
            let result = self.send(method.clone(), path, query, &token, body.clone()).await;
            match result {
                Err(e) if e.is_token_error() && !refreshed => {
                    // Expire it only if nobody replaced it meanwhile, then retry once.
                    self.0.tokens.invalidate(&token).await?;
                    refreshed = true;
                }
                Err(e) if e.is_transient() && attempt + 1 < self.0.retry.attempts => {
                    let pause = self.0.retry.first.saturating_mul(1 << attempt).min(self.0.retry.max);
                    attempt += 1;
                    tracing::debug!(path, error = %e, ?pause, "WeChat API retry");
                    tokio::time::sleep(pause).await;
                }
                other => return other,
            }
        }
    }

    async fn send<Resp: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        token: &str,
        body: Option<(String, Vec<u8>)>,
    ) -> Result<Resp, CallError> {
        let url = format!("{}{}", self.0.base, path);
        let mut req = self.0.http.request(method, url).query(&[("access_token", token)]).query(query);
        if let Some((content_type, body)) = body {
            req = req.header("content-type", content_type).body(body);
        }
        let resp = req.send().await.map_err(|e| CallError::Http(e.without_url().to_string()))?;
        decode(resp).await
    }
}

/// Reads a WeChat JSON answer: a non-zero `errcode` is an error, anything else the response.
pub(crate) async fn decode<Resp: DeserializeOwned>(resp: reqwest::Response) -> Result<Resp, CallError> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| CallError::Http(e.without_url().to_string()))?;
    if !status.is_success() {
        return Err(CallError::Http(format!("HTTP {status}")));
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| CallError::Decode(e.to_string()))?;
    let errcode = value.get("errcode").and_then(|c| c.as_i64()).unwrap_or(0);
    // 45065 (a mass send's clientmsgid seen before) carries the first send's msg_id: that send
    // is the result the caller wanted, so it is an answer, marked by its errcode.
    let repeat = errcode == CLIENTMSGID_EXISTS && value.get("msg_id").is_some();
    if errcode != 0 && !repeat {
        let errmsg = value.get("errmsg").and_then(|m| m.as_str()).unwrap_or_default().to_owned();
        return Err(CallError::WeChat { errcode, errmsg });
    }
    serde_json::from_value(value).map_err(|e| CallError::Decode(e.to_string()))
}
