//! The follower simulator at `/simulator` (mounted by `wxoa dev` only, never by `serve`).
//!
//! The page plays followers; this module plays WeChat's side of them:
//! * **Inbound.** What a follower does (types, taps a menu button, sends a location, scans a
//!   store's QR code, unsubscribes) becomes the XML WeChat would post; the fake signs and
//!   encrypts it with the account's token and key and posts it to `/wechat`, exactly as WeChat
//!   does. The reply comes back decrypted and is shown as WeChat shows it.
//! * **Outbound.** Everything the server sends later — deferred replies and customer-service
//!   messages, template messages, mass sends and previews — reaches the fake's API; the
//!   simulator reads the fake's record of calls and puts each in the right follower's chat (a
//!   mass send to a tag in the chats of that tag's followers).
//! * **H5.** Links open in a frame; the fake's OAuth page signs in the current follower.

use crate::fake::FakeWeChat;
use crate::wechat::client::menu::Button;
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const PAGE: &str = include_str!("simulator.html");
/// WeChat's name for the account (the `ToUserName` of every message).
const ACCOUNT: &str = "gh_wxoa_dev";

#[derive(Debug, Clone, Serialize)]
pub struct Follower {
    pub openid: String,
    pub name: String,
    /// Tag names (the fake holds the ids).
    pub tags: Vec<String>,
}

/// One chat bubble.
#[derive(Debug, Clone, Serialize)]
pub struct Bubble {
    pub id: u64,
    pub openid: String,
    /// `follower` (what they did) or `account` (what came back).
    pub from: &'static str,
    /// `text`, `news`, `image`, `voice`, `video`, `music`, `transfer`, `template`, `action`.
    pub kind: &'static str,
    pub body: Value,
}

/// The last exchange with the webhook, before encryption.
#[derive(Debug, Clone, Serialize)]
pub struct Exchange {
    pub request: String,
    pub reply: String,
    pub suggested_name: String,
}

#[derive(Default)]
struct SimState {
    followers: Vec<Follower>,
    bubbles: Vec<Bubble>,
    next_bubble: u64,
    next_msg_id: u64,
    /// How many of the fake's recorded calls have become bubbles.
    calls_seen: usize,
    last: Option<Exchange>,
}

#[derive(Clone)]
pub struct Simulator(Arc<Inner>);

struct Inner {
    fake: FakeWeChat,
    menu: Vec<Button>,
    /// Where "save as fixture" writes.
    fixtures: PathBuf,
    store: crate::store::Store,
    /// Verifies checkout tokens on the stand-in checkout page, as the shop would.
    checkout_secret: String,
    /// The H5 pages' cookies (switching followers drops the session).
    cookies: crate::h5::session::Cookies,
    state: Mutex<SimState>,
}

impl Simulator {
    pub fn new(
        fake: FakeWeChat,
        menu: Vec<Button>,
        fixtures: PathBuf,
        store: crate::store::Store,
        checkout_secret: &str,
        cookies: crate::h5::session::Cookies,
    ) -> Simulator {
        let state = SimState { next_msg_id: crate::store::now_ms() as u64 * 1000, ..SimState::default() };
        let checkout_secret = checkout_secret.to_owned();
        Simulator(Arc::new(Inner { fake, menu, fixtures, store, checkout_secret, cookies, state: Mutex::new(state) }))
    }

    /// Adds a simulated follower (tags are created at the fake as needed).
    pub fn add_follower(&self, name: &str, tags: &[&str]) -> Follower {
        let mut s = self.0.state.lock().unwrap();
        let openid = format!("oSim{:024}", s.followers.len() + 1);
        self.0.fake.follow(&openid);
        for t in tags {
            let id = self.0.fake.ensure_tag(t);
            self.0.fake.tag_follower(&openid, id);
        }
        let f = Follower { openid, name: name.to_owned(), tags: tags.iter().map(|t| t.to_string()).collect() };
        s.followers.push(f.clone());
        f
    }

    fn push(&self, s: &mut SimState, openid: &str, from: &'static str, kind: &'static str, body: Value) {
        s.next_bubble += 1;
        let id = s.next_bubble;
        s.bubbles.push(Bubble { id, openid: openid.to_owned(), from, kind, body });
    }

    /// Turns the fake's new calls into bubbles in the right chats.
    fn sync_outbound(&self) {
        let calls = self.0.fake.calls_since(self.0.state.lock().unwrap().calls_seen);
        let mut s = self.0.state.lock().unwrap();
        s.calls_seen += calls.len();
        for call in calls.into_iter().filter(|c| c.errcode == 0) {
            let b = &call.body;
            match call.path.as_str() {
                "/cgi-bin/message/custom/send" => {
                    let to = b["touser"].as_str().unwrap_or_default().to_owned();
                    let (kind, body) = self.custom_bubble(b);
                    self.push(&mut s, &to, "account", kind, body);
                }
                "/cgi-bin/message/template/send" => {
                    let to = b["touser"].as_str().unwrap_or_default().to_owned();
                    self.push(&mut s, &to, "account", "template", template_card(b));
                }
                "/cgi-bin/message/mass/sendall" | "/cgi-bin/message/mass/send" | "/cgi-bin/message/mass/preview" => {
                    // Whom WeChat delivered it to, as the fake recorded it.
                    let to = call.reached.clone().unwrap_or_default();
                    let (kind, body) = self.custom_bubble(b);
                    let preview = call.path.ends_with("/preview");
                    for openid in &to {
                        let mut body = body.clone();
                        body["note"] = json!(if preview { "预览 preview" } else { "群发 mass send" });
                        self.push(&mut s, openid, "account", kind, body);
                    }
                }
                _ => {}
            }
        }
    }

    /// A customer-service or mass-send body as a bubble (`mpnews` shows the draft's articles).
    fn custom_bubble(&self, b: &Value) -> (&'static str, Value) {
        match b["msgtype"].as_str().unwrap_or_default() {
            "text" => ("text", json!({ "text": b["text"]["content"] })),
            "news" => {
                let articles: Vec<Value> = b["news"]["articles"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| json!({ "title": a["title"], "description": a["description"], "url": a["url"], "picurl": a["picurl"] }))
                    .collect();
                ("news", json!({ "articles": articles }))
            }
            "mpnews" => {
                let media_id = b["mpnews"]["media_id"].as_str().unwrap_or_default();
                let articles: Vec<Value> = self
                    .0
                    .fake
                    .draft(media_id)
                    .and_then(|d| d.as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .map(|a| {
                        json!({ "title": a["title"], "description": a["digest"], "url": a["content_source_url"], "picurl": "" })
                    })
                    .collect();
                ("news", json!({ "articles": articles }))
            }
            other => ("text", json!({ "text": format!("[{other}]") })),
        }
    }

    /// Posts `xml` as the follower, records the exchange and the reply's bubble.
    async fn deliver(&self, openid: &str, xml: String, hint: &str) -> Result<(), String> {
        let (status, reply) = self.0.fake.send_as_follower(&xml).await?;
        if status != 200 {
            return Err(format!("the webhook answered {status}: {}", reply.unwrap_or_default()));
        }
        let mut s = self.0.state.lock().unwrap();
        s.last = Some(Exchange {
            request: xml,
            reply: reply.clone().unwrap_or_else(|| "success".into()),
            suggested_name: hint.to_owned(),
        });
        if let Some(reply) = reply
            && let Some((kind, body)) = reply_bubble(&reply)
        {
            self.push(&mut s, openid, "account", kind, body);
        }
        Ok(())
    }

    fn next_msg_id(&self) -> u64 {
        let mut s = self.0.state.lock().unwrap();
        s.next_msg_id += 1;
        s.next_msg_id
    }
}

/// A passive reply as WeChat shows it; `None` for nothing shown.
fn reply_bubble(xml: &str) -> Option<(&'static str, Value)> {
    let f = crate::wechat::xml::parse(xml).ok()?;
    let get = |p: &str| f.get(p).unwrap_or_default().to_owned();
    Some(match f.get("MsgType")? {
        "text" => ("text", json!({ "text": get("Content") })),
        "news" => {
            let titles: Vec<&str> = f.all("Articles/item/Title").collect();
            let descriptions: Vec<&str> = f.all("Articles/item/Description").collect();
            let urls: Vec<&str> = f.all("Articles/item/Url").collect();
            let pics: Vec<&str> = f.all("Articles/item/PicUrl").collect();
            let articles: Vec<Value> = titles
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    json!({ "title": t, "description": descriptions.get(i), "url": urls.get(i), "picurl": pics.get(i) })
                })
                .collect();
            ("news", json!({ "articles": articles }))
        }
        "image" => ("image", json!({ "media_id": get("Image/MediaId") })),
        "voice" => ("voice", json!({ "media_id": get("Voice/MediaId") })),
        "video" => ("video", json!({ "title": get("Video/Title"), "media_id": get("Video/MediaId") })),
        "music" => ("music", json!({ "title": get("Music/Title"), "url": get("Music/MusicUrl") })),
        "transfer_customer_service" => ("transfer", json!({})),
        other => ("text", json!({ "text": format!("[{other}]") })),
    })
}

/// A template message as WeChat's card: the fields in order (`first` on top, `remark` last).
fn template_card(b: &Value) -> Value {
    let mut fields: Vec<(String, String)> = b["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v["value"].as_str().unwrap_or_default().to_owned()))
        .collect();
    let rank = |k: &str| match k {
        "first" => 0,
        "remark" => 2,
        _ => 1,
    };
    fields.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then(a.0.cmp(&b.0)));
    json!({ "template_id": b["template_id"], "url": b["url"], "fields": fields })
}

fn xml_message(openid: &str, msg_type: &str, inner: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{inner}</xml>",
        crate::store::now_ms() / 1000
    )
}

fn cdata(s: &str) -> String {
    format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"))
}

pub fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/simulator", get(page))
        .route("/simulator/cover.svg", get(cover))
        .route("/simulator/checkout", get(checkout))
        .route("/simulator/api/state", get(state))
        .route("/simulator/api/messages", get(messages))
        .route("/simulator/api/followers", post(add_follower))
        .route("/simulator/api/current", post(current))
        .route("/simulator/api/act", post(act))
        .route("/simulator/api/fixture", post(save_fixture))
        .with_state(sim)
}

async fn page() -> Response {
    ([(CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

/// The demo campaign's cover.
async fn cover() -> Response {
    let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" width="900" height="383"><defs><linearGradient id="g" x1="0" x2="1"><stop offset="0" stop-color="#1d1d1f"/><stop offset="1" stop-color="#6b5a45"/></linearGradient></defs><rect width="900" height="383" fill="url(#g)"/><text x="450" y="205" fill="#f4e7c5" font-size="54" font-family="serif" text-anchor="middle">Limited Edition No. 5</text></svg>"##;
    ([(CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}

#[derive(Deserialize)]
struct CheckoutQuery {
    #[serde(default)]
    token: String,
}

/// Stands in for the shop's checkout in development: shows what the token carries once it
/// verifies, as the shop would.
async fn checkout(State(sim): State<Simulator>, Query(q): Query<CheckoutQuery>) -> Response {
    let shown = match crate::shop::checkout::verify(&sim.0.checkout_secret, &q.token, crate::store::now_ms() / 1000) {
        Ok(c) => format!(
            "<h2>Checkout (the shop's page)</h2><p>Token verified.</p><p>Campaign {} · product {} · follower {}</p>",
            c.campaign_id,
            html_escape(&c.sku),
            html_escape(&crate::mask(&c.openid))
        ),
        Err(e) => format!("<h2>Checkout</h2><p>Token refused: {}</p>", html_escape(&e.to_string())),
    };
    (
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        format!("<!doctype html><meta charset=utf-8><body style='font:16px sans-serif;padding:16px'>{shown}</body>"),
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn state(State(sim): State<Simulator>) -> Json<Value> {
    let stores = crate::stores::list(&sim.0.store).await.unwrap_or_default();
    let stores: Vec<Value> = stores.iter().map(|s| json!({ "id": s.id, "code": s.code, "name": s.name })).collect();
    let s = sim.0.state.lock().unwrap();
    let followers: Vec<Value> = s
        .followers
        .iter()
        .map(|f| {
            let ids = sim.0.fake.tags_of(&f.openid);
            let tags: Vec<String> = sim
                .0
                .fake
                .tags()
                .into_iter()
                .filter(|(id, _)| ids.contains(id))
                .map(|(id, name)| format!("{name} #{id}"))
                .collect();
            json!({ "openid": f.openid, "name": f.name, "tags": tags, "subscribed": sim.0.fake.is_subscribed(&f.openid) })
        })
        .collect();
    Json(json!({ "followers": followers, "menu": sim.0.menu, "stores": stores, "last": s.last }))
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
}

async fn messages(State(sim): State<Simulator>, Query(q): Query<After>) -> Json<Value> {
    sim.sync_outbound();
    let s = sim.0.state.lock().unwrap();
    let new: Vec<&Bubble> = s.bubbles.iter().filter(|b| b.id > q.after).collect();
    Json(json!({ "bubbles": new, "last": s.last }))
}

#[derive(Deserialize)]
struct NewFollower {
    name: String,
    #[serde(default)]
    tags: String,
}

async fn add_follower(State(sim): State<Simulator>, Json(f): Json<NewFollower>) -> Response {
    let name = f.name.trim();
    if name.is_empty() || name.chars().count() > 30 {
        return (StatusCode::BAD_REQUEST, "a name of 1 to 30 characters").into_response();
    }
    let tags: Vec<&str> =
        f.tags.split(',').map(str::trim).filter(|t| !t.is_empty() && t.chars().count() <= 30).collect();
    if sim.0.state.lock().unwrap().followers.len() >= 50 {
        return (StatusCode::BAD_REQUEST, "at most 50 simulated followers").into_response();
    }
    Json(json!(sim.add_follower(name, &tags))).into_response()
}

#[derive(Deserialize)]
struct Current {
    openid: String,
}

/// Makes `openid` the follower the H5 pages sign in as; the browser's H5 session is dropped so
/// the next page signs in afresh.
async fn current(State(sim): State<Simulator>, Json(c): Json<Current>) -> Response {
    sim.0.fake.set_current_follower(Some(&c.openid));
    let clear = sim.0.cookies.clear_session();
    ([(SET_COOKIE, clear)], Json(json!({ "current": c.openid }))).into_response()
}

/// What a follower does.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Action {
    Text {
        content: String,
    },
    /// A menu button of any type (`click`, `view`, `location_select`, `scancode_push`, …).
    Menu {
        button_type: String,
        key: Option<String>,
        url: Option<String>,
        name: String,
    },
    Location {
        lat: f64,
        lon: f64,
        label: String,
    },
    ScanStore {
        store_id: i64,
    },
    Subscribe,
    Unsubscribe,
}

#[derive(Deserialize)]
struct Act {
    openid: String,
    #[serde(flatten)]
    action: Action,
}

async fn act(State(sim): State<Simulator>, Json(a): Json<Act>) -> Response {
    let openid = a.openid.as_str();
    if !sim.0.state.lock().unwrap().followers.iter().any(|f| f.openid == openid) {
        return (StatusCode::BAD_REQUEST, "no such simulated follower").into_response();
    }
    let event =
        |event: &str, extra: &str| xml_message(openid, "event", &format!("<Event>{}</Event>{extra}", cdata(event)));
    let (shown, xml, hint): (Value, String, String) = match &a.action {
        Action::Text { content } => {
            if content.trim().is_empty() || content.len() > 2048 {
                return (StatusCode::BAD_REQUEST, "text of 1 to 2048 bytes").into_response();
            }
            let inner = format!("<Content>{}</Content><MsgId>{}</MsgId>", cdata(content), sim.next_msg_id());
            (json!({ "text": content }), xml_message(openid, "text", &inner), "text".into())
        }
        Action::Menu { button_type, key, url, name } => {
            let key = key.clone().unwrap_or_default();
            let xml = match button_type.as_str() {
                "view" => event("VIEW", &format!("<EventKey>{}</EventKey>", cdata(url.as_deref().unwrap_or_default()))),
                "location_select" => event(
                    "location_select",
                    &format!(
                        "<EventKey>{}</EventKey><SendLocationInfo><Location_X>31.2304</Location_X><Location_Y>121.4737</Location_Y>\
                         <Scale>15</Scale><Label>{}</Label><Poiname></Poiname></SendLocationInfo>",
                        cdata(&key),
                        cdata("上海市人民广场 People's Square")
                    ),
                ),
                "click" => event("CLICK", &format!("<EventKey>{}</EventKey>", cdata(&key))),
                other => event(other, &format!("<EventKey>{}</EventKey>", cdata(&key))),
            };
            (json!({ "action": format!("点击菜单 tapped “{name}”") }), xml, format!("menu_{button_type}"))
        }
        Action::Location { lat, lon, label } => {
            let inner = format!(
                "<Location_X>{lat}</Location_X><Location_Y>{lon}</Location_Y><Scale>15</Scale><Label>{}</Label><MsgId>{}</MsgId>",
                cdata(label),
                sim.next_msg_id()
            );
            (json!({ "action": format!("📍 {label}") }), xml_message(openid, "location", &inner), "location".into())
        }
        Action::ScanStore { store_id } => {
            // WeChat's rule: a follower scanning gets SCAN; someone not following subscribes
            // with the scene prefixed qrscene_.
            let ticket = format!("<Ticket>{}</Ticket>", cdata(&format!("gQSIM{store_id}")));
            let xml = if sim.0.fake.is_subscribed(openid) {
                event("SCAN", &format!("<EventKey>{}</EventKey>{ticket}", cdata(&format!("store_{store_id}"))))
            } else {
                sim.0.fake.subscribe(openid);
                event(
                    "subscribe",
                    &format!("<EventKey>{}</EventKey>{ticket}", cdata(&format!("qrscene_store_{store_id}"))),
                )
            };
            (json!({ "action": format!("扫码 scanned store {store_id}'s QR code") }), xml, "scan_store".into())
        }
        Action::Subscribe => {
            sim.0.fake.subscribe(openid);
            (
                json!({ "action": "关注 followed" }),
                event("subscribe", "<EventKey><![CDATA[]]></EventKey>"),
                "subscribe".into(),
            )
        }
        Action::Unsubscribe => {
            sim.0.fake.unsubscribe(openid);
            (
                json!({ "action": "取消关注 unfollowed" }),
                event("unsubscribe", "<EventKey><![CDATA[]]></EventKey>"),
                "unsubscribe".into(),
            )
        }
    };
    {
        let mut s = sim.0.state.lock().unwrap();
        let kind = if shown.get("text").is_some() { "text" } else { "action" };
        sim.push(&mut s, openid, "follower", kind, shown);
    }
    match sim.deliver(openid, xml, &hint).await {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e).into_response(),
    }
}

#[derive(Deserialize)]
struct Fixture {
    name: String,
}

/// Saves the last request as a recorded fixture (`<name>.xml`); never overwrites one.
async fn save_fixture(State(sim): State<Simulator>, Json(f): Json<Fixture>) -> Response {
    let name = f.name.trim();
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return (StatusCode::BAD_REQUEST, "a fixture name is 1 to 64 letters, digits, _ or -").into_response();
    }
    let Some(last) = sim.0.state.lock().unwrap().last.clone() else {
        return (StatusCode::CONFLICT, "nothing exchanged yet").into_response();
    };
    let path = sim.0.fixtures.join(format!("{name}.xml"));
    if let Err(e) = std::fs::create_dir_all(&sim.0.fixtures) {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot create {}: {e}", sim.0.fixtures.display()))
            .into_response();
    }
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path);
    match file.and_then(|mut f| std::io::Write::write_all(&mut f, format!("{}\n", last.request).as_bytes())) {
        Ok(()) => Json(json!({ "saved": path.display().to_string() })).into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            (StatusCode::CONFLICT, format!("{} exists already", path.display())).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot write {}: {e}", path.display())).into_response(),
    }
}
