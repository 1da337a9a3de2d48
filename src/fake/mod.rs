//! A fake WeChat: the API server (`api.weixin.qq.com`) with WeChat's documented semantics, for
//! tests, the benchmarks and development without an Official Account. It can also play
//! followers, posting signed (and encrypted) messages to the webhook the way WeChat does.
//!
//! * `token` issues a new token each call, the previous one working for 5 more minutes;
//!   `stable_token` returns the current one until it expires, a new one on `force_refresh`. A
//!   wrong appid is 40013, a wrong secret 40125; an unknown token 40001, an expired one 42001, a
//!   missing one 41001.
//! * A follower who unsubscribed is 43004, template sends over the daily quota 45009, a repeated
//!   `clientmsgid` 45065. A template send answers a msgid and later posts TEMPLATESENDJOBFINISH to
//!   the webhook; a mass send posts MASSSENDJOBFINISH with its counts.
//! * Every call is recorded ([`FakeWeChat::calls`]) and the knobs ([`Knobs`]) add latency,
//!   random -1s, forced errcodes and dropped connections.
//! * Followers ([`followers`]): any openid is a follower until [`FakeWeChat::unsubscribe`] says
//!   otherwise, and one the fake has seen is in its list (`user/get`) and counted by mass sends.

mod api;
pub use api::served_image;
pub mod followers;

use crate::config::Config;
use crate::wechat::envelope::{Envelope, Rejection, random_nonce};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// One recorded API call.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Call {
    pub path: String,
    pub query: HashMap<String, String>,
    pub body: Value,
    /// The errcode answered (0 for success).
    pub errcode: i64,
    /// Who a mass send or preview reached (after WeChat's filtering), when at most 10,000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reached: Option<Vec<String>>,
    /// When it arrived, on the fake's clock (unix milliseconds): how fast a deployment called.
    pub at_ms: i64,
}

/// A mass send as the fake keeps it.
#[derive(Debug, Clone, Default)]
struct SentMass {
    /// Its `msgtype` (only `mpnews` and `mpvideo` can be deleted).
    msgtype: String,
    /// How many articles an `mpnews` send's draft had.
    articles: usize,
    /// The articles deleted (1-based); all of them once the whole send is.
    deleted: std::collections::BTreeSet<usize>,
}

/// Fault injection.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Knobs {
    /// Added to every API call.
    pub latency_ms: u64,
    /// Share of API calls answered -1 (system busy), 0.0 to 1.0.
    pub error_rate: f64,
    /// Errcodes answered to the next API calls, one each, in order.
    pub forced: VecDeque<i64>,
    /// The next this many API calls have their connection dropped without an answer.
    pub drop_connections: u32,
    /// Lifetime of issued tokens (0: WeChat's 7,200 s).
    pub token_ttl_secs: i64,
    /// Template messages allowed before 45009 (0: WeChat's 100,000 a day).
    pub template_quota: i64,
    /// Post job-finish events to the webhook.
    pub callbacks: bool,
    /// A repeated clientmsgid sooner than this is 45066 rather than 45065 (None: WeChat's minute).
    pub clientmsgid_retry_ms: Option<i64>,
}

#[derive(Debug, Clone)]
struct IssuedToken {
    expires_at: i64,
    /// Set when a newer token replaced it: it still works until then.
    retired_at: Option<i64>,
    revoked: bool,
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, IssuedToken>,
    current: Option<String>,
    calls: Vec<Call>,
    knobs: Knobs,
    followers: followers::Directory,
    /// Tags by id (WeChat's star group, 2, is there from the start; ours begin at 100).
    tags: std::collections::BTreeMap<i64, String>,
    next_tag_id: i64,
    menu: Option<Value>,
    conditional: Vec<Value>,
    /// clientmsgid → (msg_id, when it was first used).
    clientmsgids: HashMap<String, (i64, i64)>,
    templates_sent: i64,
    oauth_codes: HashMap<String, (String, i64, String)>,
    /// Who WeChat's OAuth page signs in when the request names nobody (the simulator's
    /// current follower).
    current_follower: Option<String>,
    /// Who each mass send reached (by msg_id), until its call is recorded.
    mass_reached: HashMap<i64, Vec<String>>,
    /// Every mass send that went out, by msg_id: what `mass/get` and `mass/delete` act on.
    mass_sent: HashMap<i64, SentMass>,
    /// Drafts by media_id (their articles), as `draft/add` stored them.
    drafts: HashMap<String, Value>,
    /// Images `media/uploadimg` took, by their path on WeChat's image host
    /// (`mmbiz_png/fake12/0`), the oldest first out past [`MAX_IMAGES`].
    images: HashMap<String, Image>,
    /// The paths of `images`, oldest first.
    image_order: std::collections::VecDeque<String>,
    /// The URLs of permanent materials by media_id (an article's cover, its `thumb_url`).
    material_urls: HashMap<String, String>,
    /// Token issues per kind, for assertions on refresh storms.
    issued: u64,
}

/// Images the fake keeps at most (a dev session uploads a few dozen).
const MAX_IMAGES: usize = 256;

/// An image WeChat hosts for the account.
#[derive(Debug, Clone)]
pub struct Image {
    /// `image/png` or `image/jpeg`.
    pub mime: &'static str,
    /// The file as it was uploaded.
    pub bytes: axum::body::Bytes,
}

/// The fake. Cheap to clone; every clone is the same server state.
#[derive(Clone)]
pub struct FakeWeChat(Arc<Inner>);

struct Inner {
    app_id: String,
    secret: String,
    envelope: Envelope,
    webhook: Mutex<Option<String>>,
    state: Mutex<State>,
    ids: AtomicI64,
    http: reqwest::Client,
    /// The time the fake keeps (the config's clock: in tests, the app's).
    clock: crate::clock::Clock,
}

impl FakeWeChat {
    /// A fake for the account in `config` (app id, secret, token, AES key).
    pub fn new(config: &Config) -> FakeWeChat {
        let state = State {
            knobs: Knobs { callbacks: true, ..Knobs::default() },
            tags: [(2, "星标组".to_owned())].into_iter().collect(),
            next_tag_id: 100,
            ..State::default()
        };
        FakeWeChat(Arc::new(Inner {
            app_id: config.wechat.app_id.clone(),
            secret: config.wechat.app_secret.expose().to_owned(),
            envelope: config.envelope(),
            webhook: Mutex::new(None),
            state: Mutex::new(state),
            ids: AtomicI64::new(1_000_000),
            http: reqwest::Client::new(),
            clock: config.clock.clone(),
        }))
    }

    /// Where job-finish events (and [`FakeWeChat::send_as_follower`]) go.
    pub fn set_webhook(&self, url: Option<String>) {
        *self.0.webhook.lock().unwrap() = url;
    }

    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// Serves the API on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }

    /// Starts on an ephemeral loopback port; returns its base URL.
    pub async fn spawn(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(self.clone().serve(listener, std::future::pending()));
        format!("http://{addr}")
    }

    pub fn knobs(&self) -> Knobs {
        self.0.state.lock().unwrap().knobs.clone()
    }

    pub fn set_knobs(&self, knobs: Knobs) {
        self.0.state.lock().unwrap().knobs = knobs;
    }

    /// Changes some knobs.
    pub fn tweak(&self, f: impl FnOnce(&mut Knobs)) {
        f(&mut self.0.state.lock().unwrap().knobs);
    }

    /// Every API call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.0.state.lock().unwrap().calls.clone()
    }

    /// The calls after the first `n`.
    pub fn calls_since(&self, n: usize) -> Vec<Call> {
        self.0.state.lock().unwrap().calls.iter().skip(n).cloned().collect()
    }

    /// Calls to `path` so far.
    pub fn calls_to(&self, path: &str) -> Vec<Call> {
        self.0.state.lock().unwrap().calls.iter().filter(|c| c.path == path).cloned().collect()
    }

    pub fn clear_calls(&self) {
        self.0.state.lock().unwrap().calls.clear();
    }

    /// How many tokens were issued (by `token` or `stable_token`).
    pub fn tokens_issued(&self) -> u64 {
        self.0.state.lock().unwrap().issued
    }

    /// Makes every issued token invalid at once (as a secret reset does): the next call with one
    /// is 40001.
    pub fn revoke_tokens(&self) {
        let mut s = self.0.state.lock().unwrap();
        for t in s.tokens.values_mut() {
            t.revoked = true;
        }
        s.current = None;
    }

    /// The follower WeChat's OAuth page signs in from now on (when the request names none).
    pub fn set_current_follower(&self, openid: Option<&str>) {
        self.0.state.lock().unwrap().current_follower = openid.map(str::to_owned);
    }

    /// Keeps an uploaded image at `path` on the image host (what `media/uploadimg` does).
    pub(crate) fn keep_image(&self, path: String, image: Image) {
        let mut s = self.0.state.lock().unwrap();
        if s.image_order.len() >= MAX_IMAGES
            && let Some(old) = s.image_order.pop_front()
        {
            s.images.remove(&old);
        }
        s.image_order.push_back(path.clone());
        s.images.insert(path, image);
    }

    /// The image at `path` on WeChat's image host (`mmbiz_png/fake12/0`), if it was uploaded.
    pub fn image(&self, path: &str) -> Option<Image> {
        self.0.state.lock().unwrap().images.get(path).cloned()
    }

    /// Makes `media_id` a permanent material whose image is at `url` (a draft's article with it
    /// as `thumb_media_id` gets it as `thumb_url`, as `draft/get` answers).
    pub fn add_material_url(&self, media_id: &str, url: &str) {
        self.0.state.lock().unwrap().material_urls.insert(media_id.to_owned(), url.to_owned());
    }

    /// The URL of the material `media_id`, if the fake knows it.
    pub(crate) fn material_url(&self, media_id: &str) -> Option<String> {
        self.0.state.lock().unwrap().material_urls.get(media_id).cloned()
    }

    /// The articles of a draft `draft/add` stored.
    /// The articles (1-based) of mass send `msg_id` that `message/mass/delete` took down.
    pub fn mass_deleted(&self, msg_id: i64) -> Vec<usize> {
        let s = self.0.state.lock().unwrap();
        s.mass_sent.get(&msg_id).map(|m| m.deleted.iter().copied().collect()).unwrap_or_default()
    }

    pub fn draft(&self, media_id: &str) -> Option<Value> {
        self.0.state.lock().unwrap().drafts.get(media_id).cloned()
    }

    /// A tag's id, created if need be (as `tags/create` would).
    pub fn ensure_tag(&self, name: &str) -> i64 {
        let mut s = self.0.state.lock().unwrap();
        if let Some((id, _)) = s.tags.iter().find(|(_, n)| *n == name) {
            return *id;
        }
        let id = s.next_tag_id;
        s.next_tag_id += 1;
        s.tags.insert(id, name.to_owned());
        id
    }

    /// Adds `n` synthetic followers (`oSYN…`, 28 characters, as real openids are), for scale
    /// tests of the follower sync and tag pushes.
    pub fn add_synthetic_followers(&self, n: usize) {
        let mut s = self.0.state.lock().unwrap();
        let now = self.now_secs();
        let start = s.followers.len();
        for i in start..start + n {
            s.followers.seen(&format!("oSYN{i:024}"), now);
        }
    }

    /// Puts a follower under a tag (as `tags/members/batchtagging` would).
    pub fn tag_follower(&self, openid: &str, tag_id: i64) {
        self.0.state.lock().unwrap().followers.seen(openid, self.now_secs()).tags.insert(tag_id);
    }

    /// Sets the remark the account keeps on a follower (as `user/info/updateremark` would).
    pub fn set_remark(&self, openid: &str, remark: &str) {
        self.0.state.lock().unwrap().followers.seen(openid, self.now_secs()).remark = remark.to_owned();
    }

    /// The ids of the tags a follower has.
    pub fn tags_of(&self, openid: &str) -> Vec<i64> {
        let s = self.0.state.lock().unwrap();
        s.followers.get(openid).map(|f| f.tags.iter().copied().collect()).unwrap_or_default()
    }

    /// Makes `openid` a follower (subscribed now, if they were not already known).
    pub fn follow(&self, openid: &str) {
        self.0.state.lock().unwrap().followers.subscribe(openid, self.now_secs());
    }

    /// The subscribed followers the fake knows.
    pub fn followers(&self) -> Vec<String> {
        self.0.state.lock().unwrap().followers.subscribed().map(|(o, _)| o.clone()).collect()
    }

    /// Tag ids and names.
    pub fn tags(&self) -> Vec<(i64, String)> {
        self.0.state.lock().unwrap().tags.iter().map(|(id, n)| (*id, n.clone())).collect()
    }

    pub fn is_subscribed(&self, openid: &str) -> bool {
        self.0.state.lock().unwrap().followers.is_subscribed(openid)
    }

    pub fn unsubscribe(&self, openid: &str) {
        self.0.state.lock().unwrap().followers.unsubscribe(openid, self.now_secs());
    }

    pub fn subscribe(&self, openid: &str) {
        self.0.state.lock().unwrap().followers.subscribe(openid, self.now_secs());
    }

    /// A single-use OAuth code for `openid`, valid 5 minutes (what WeChat's authorize page
    /// hands the redirect).
    pub fn oauth_code(&self, openid: &str) -> String {
        self.oauth_code_for(openid, "snsapi_base")
    }

    /// A code granted for `scope` (`snsapi_base` or `snsapi_userinfo`).
    pub fn oauth_code_for(&self, openid: &str, scope: &str) -> String {
        let code = format!("code{}", self.next_id());
        let expires = self.now_ms() + 300_000;
        self.0.state.lock().unwrap().oauth_codes.insert(code.clone(), (openid.to_owned(), expires, scope.to_owned()));
        code
    }

    /// Posts a plaintext message to the webhook as WeChat would (signed, encrypted per mode);
    /// returns the HTTP status and the decrypted reply (`None` for `success`). The sender is a
    /// follower from then on; a `subscribe` or `unsubscribe` event changes whether they follow.
    pub async fn send_as_follower(&self, xml: &str) -> Result<(u16, Option<String>), PostError> {
        if let Ok(doc) = crate::wechat::xml::parse(xml)
            && let Some(openid) = doc.get("FromUserName")
        {
            let mut s = self.0.state.lock().unwrap();
            match (doc.get("MsgType"), doc.get("Event")) {
                (Some("event"), Some("unsubscribe")) => s.followers.unsubscribe(openid, self.now_secs()),
                (Some("event"), Some("subscribe")) => s.followers.subscribe(openid, self.now_secs()),
                _ => {
                    s.followers.seen(openid, self.now_secs());
                }
            }
        }
        self.post_to_webhook(xml).await
    }

    /// Posts WeChat's own events (job finishes) to the webhook.
    async fn post_to_webhook(&self, xml: &str) -> Result<(u16, Option<String>), PostError> {
        let url = self.0.webhook.lock().unwrap().clone().ok_or(PostError::NoWebhook)?;
        post(&self.0.http, &self.0.envelope, &url, xml, self.now_secs()).await
    }

    /// Now on the fake's clock, unix milliseconds.
    fn now_ms(&self) -> i64 {
        self.0.clock.now_ms()
    }

    /// Now on the fake's clock, unix seconds.
    fn now_secs(&self) -> i64 {
        self.0.clock.now_secs()
    }

    fn next_id(&self) -> i64 {
        self.0.ids.fetch_add(1, Ordering::Relaxed)
    }
}

/// Why a message posted as WeChat got no reply.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The fake was given no webhook to post to.
    #[error("no webhook configured")]
    NoWebhook,
    /// The request got no answer.
    #[error("POST {url}: {source}")]
    Send { url: String, source: reqwest::Error },
    /// The answer's body could not be read.
    #[error("reading reply: {0}")]
    Read(#[source] reqwest::Error),
    /// The webhook answered other than 200 (with this body, trimmed).
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// The reply does not open (signature, encryption, XML).
    #[error("reply: {0}")]
    Reply(Rejection),
}

/// Posts one plaintext message to `url` the way WeChat does, signed at `now` (unix seconds).
pub async fn post(
    client: &reqwest::Client,
    envelope: &Envelope,
    url: &str,
    xml: &str,
    now: i64,
) -> Result<(u16, Option<String>), PostError> {
    let (query, body) = envelope.wrap(xml, now, &random_nonce());
    let sep = if url.contains('?') { '&' } else { '?' };
    let resp = client
        .post(format!("{url}{sep}{query}"))
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .map_err(|source| PostError::Send { url: url.to_owned(), source })?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(PostError::Read)?;
    if status != 200 {
        return Err(PostError::Status { status, body: text.trim().to_owned() });
    }
    let reply = envelope.unwrap_reply(&text).map_err(PostError::Reply)?;
    Ok((status, reply))
}
