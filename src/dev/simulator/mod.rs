//! The follower simulator at `/simulator` (mounted by `wxoa dev` only, never by `serve`).
//!
//! The page plays followers; this module plays WeChat's side of them:
//! * **Inbound.** What a follower does (types, taps a menu button, sends a location, scans a
//!   store's QR code, unsubscribes) becomes the XML WeChat would post, signed and encrypted by the
//!   fake and posted to `/wechat` as WeChat does; the reply is shown decrypted, as WeChat shows it.
//! * **Outbound.** What the server sends later (deferred and customer-service messages, template
//!   messages, mass sends, previews) is read from the fake's record of calls into each follower's
//!   chat (a mass send to a tag in the chats of that tag's followers).
//! * **H5.** Links open in a frame, signed in by the fake's OAuth page as the current follower; a
//!   mass-sent article opens as the article ([`article`]) and links on to `/buy`, where the
//!   stand-in checkout ([`super::checkout`]) can post the shop's signed `created` and `paid`
//!   statuses with the checkout token, so the funnel credits the push.
//! * **Memory.** Followers and chats are kept in the dev database ([`super::chats`]); the last
//!   exchange is kept per follower, and the side panel shows the current one's.

mod routes;

pub use super::chats::{Bubble, Follower};
use crate::fake::FakeWeChat;
use crate::state::AppState;
use crate::text::Failure;
use crate::wechat::client::menu::Button;
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, SET_COOKIE};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
pub use routes::router;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// WeChat's name for the account (the `ToUserName` of every message).
const ACCOUNT: &str = "gh_wxoa_dev";

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
    /// Each follower's last exchange with the webhook, by openid.
    last: HashMap<String, Exchange>,
}

#[derive(Clone)]
pub struct Simulator(Arc<Inner>);

struct Inner {
    fake: FakeWeChat,
    menu: Vec<Button>,
    /// Where "save as fixture" writes.
    fixtures: PathBuf,
    store: crate::store::Store,
    /// The server's state: its notices (the template labels) and config.
    app: AppState,
    /// The H5 pages' cookies (switching followers drops the session).
    cookies: crate::h5::session::Cookies,
    state: Mutex<SimState>,
}

/// The openid of the `n`th simulated follower (from 1).
pub fn openid_of(n: usize) -> String {
    format!("oSim{n:024}")
}

impl Simulator {
    pub fn new(fake: FakeWeChat, menu: Vec<Button>, fixtures: PathBuf, app: AppState) -> Simulator {
        let state = SimState { next_msg_id: app.clock.now_ms() as u64 * 1000, ..SimState::default() };
        let (store, cookies) = (app.store.clone(), crate::h5::cookies(&app));
        Simulator(Arc::new(Inner { fake, menu, fixtures, store, app, cookies, state: Mutex::new(state) }))
    }

    /// Brings back the followers and chats of earlier runs from the database, or, on a first
    /// run, adds `defaults` (name, tags).
    pub async fn restore(&self, defaults: &[(&str, &[&str])]) -> Result<(), Failure> {
        let followers = super::chats::followers(&self.0.store).await.map_err(|e| format!("simulator: {e}"))?;
        let bubbles = super::chats::bubbles(&self.0.store).await.map_err(|e| format!("simulator: {e}"))?;
        if followers.is_empty() {
            for (name, tags) in defaults {
                self.add_follower(name, tags).await?;
            }
        }
        for f in followers {
            self.enter(f);
        }
        let mut s = self.0.state.lock().unwrap();
        s.next_bubble = bubbles.last().map_or(0, |b| b.id);
        s.bubbles = bubbles;
        Ok(())
    }

    /// Adds a simulated follower (tags are created at the fake as needed), kept in the database.
    pub async fn add_follower(&self, name: &str, tags: &[&str]) -> Result<Follower, Failure> {
        let openid = openid_of(self.0.state.lock().unwrap().followers.len() + 1);
        let f = Follower { openid, name: name.to_owned(), tags: tags.iter().map(|t| t.to_string()).collect() };
        super::chats::add_follower(&self.0.store, &f).await.map_err(|e| format!("simulator: {e}"))?;
        self.enter(f.clone());
        Ok(f)
    }

    /// Makes `f` a follower at the fake, with their tags, and one of the page's.
    fn enter(&self, f: Follower) {
        self.0.fake.follow(&f.openid);
        // Their name as the account's remark on them: what the console names test followers by.
        self.0.fake.set_remark(&f.openid, &f.name);
        for t in &f.tags {
            let id = self.0.fake.ensure_tag(t);
            self.0.fake.tag_follower(&f.openid, id);
        }
        self.0.state.lock().unwrap().followers.push(f);
    }

    fn push(&self, s: &mut SimState, openid: &str, from: &str, kind: &str, body: Value) -> Bubble {
        s.next_bubble += 1;
        let id = s.next_bubble;
        let bubble = Bubble { id, openid: openid.to_owned(), from: from.to_owned(), kind: kind.to_owned(), body };
        s.bubbles.push(bubble.clone());
        bubble
    }

    /// Writes new bubbles through to the database (a failure is logged: the chat goes on).
    async fn keep(&self, bubbles: &[Bubble]) {
        if let Err(e) = super::chats::save(&self.0.store, bubbles).await {
            tracing::warn!(error = %e, "simulator: cannot keep the chat");
        }
    }

    /// Turns the fake's new calls into bubbles in the right chats.
    async fn sync_outbound(&self) {
        let seen = self.0.state.lock().unwrap().calls_seen;
        self.learn_covers(&self.0.fake.calls_since(seen)).await;
        let mut made = Vec::new();
        {
            let mut s = self.0.state.lock().unwrap();
            let calls = self.0.fake.calls_since(s.calls_seen);
            s.calls_seen += calls.len();
            for call in calls.into_iter().filter(|c| c.errcode == 0) {
                let b = &call.body;
                match call.path.as_str() {
                    "/cgi-bin/message/custom/send" => {
                        let to = b["touser"].as_str().unwrap_or_default().to_owned();
                        let (kind, body) = self.custom_bubble(b);
                        made.push(self.push(&mut s, &to, "account", kind, body));
                    }
                    "/cgi-bin/message/template/send" => {
                        let to = b["touser"].as_str().unwrap_or_default().to_owned();
                        let labels = self.0.app.notices.labels(b["template_id"].as_str().unwrap_or_default());
                        made.push(self.push(&mut s, &to, "account", "template", template_card(b, &labels)));
                    }
                    "/cgi-bin/message/mass/sendall"
                    | "/cgi-bin/message/mass/send"
                    | "/cgi-bin/message/mass/preview" => {
                        // Whom WeChat delivered it to, as the fake recorded it.
                        let to = call.reached.clone().unwrap_or_default();
                        let (kind, body) = self.custom_bubble(b);
                        let preview = call.path.ends_with("/preview");
                        for openid in &to {
                            let mut body = body.clone();
                            body["note"] = json!(if preview { "预览 preview" } else { "群发 mass send" });
                            made.push(self.push(&mut s, openid, "account", kind, body));
                        }
                    }
                    _ => {}
                }
            }
        }
        self.keep(&made).await;
    }

    /// Gives the fake the covers the mass sends in `calls` name and it does not know: in `dev`
    /// the account's material library is the campaigns' covers (`cover_media_id` →
    /// `cover_url`), so an `mpnews` card shows the cover the follower will see.
    async fn learn_covers(&self, calls: &[crate::fake::Call]) {
        let fake = &self.0.fake;
        let unknown: Vec<String> = calls
            .iter()
            .filter_map(|c| c.body["mpnews"]["media_id"].as_str())
            .filter_map(|m| fake.draft(m))
            .flat_map(|d| d.as_array().cloned().unwrap_or_default())
            .filter(|a| a["thumb_url"].is_null())
            .filter_map(|a| a["thumb_media_id"].as_str().map(str::to_owned))
            .collect();
        if unknown.is_empty() {
            return;
        }
        match crate::campaigns::list(&self.0.store, 1000).await {
            Ok(campaigns) => {
                for a in campaigns.iter().flat_map(|c| &c.articles) {
                    if unknown.contains(&a.cover_media_id) && !a.cover_url.is_empty() {
                        fake.add_material_url(&a.cover_media_id, &a.cover_url);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "simulator: cannot read the campaigns' covers"),
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
                // Each article opens as the article (WeChat's page, [`article`]), not at its
                // link; the bubble keeps the articles, which outlive the fake's drafts.
                let media_id = b["mpnews"]["media_id"].as_str().unwrap_or_default();
                let articles: Vec<Value> = self
                    .0
                    .fake
                    .draft(media_id)
                    .and_then(|d| d.as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .map(|a| {
                        let cover = a["thumb_url"].as_str().map(str::to_owned).or_else(|| {
                            a["thumb_media_id"].as_str().and_then(|m| self.0.fake.material_url(m))
                        });
                        json!({ "title": a["title"], "description": a["digest"], "picurl": cover.unwrap_or_default(), "author": a["author"],
                                "content": a["content"], "link": a["content_source_url"] })
                    })
                    .collect();
                ("news", json!({ "articles": articles, "opens": "article" }))
            }
            other => ("text", json!({ "text": format!("[{other}]") })),
        }
    }

    /// Posts `xml` as the follower, records the exchange and the reply's bubble.
    async fn deliver(&self, openid: &str, xml: String, hint: &str) -> Result<(), Failure> {
        let (status, reply) = self.0.fake.send_as_follower(&xml).await?;
        if status != 200 {
            return Err(Failure(format!("the webhook answered {status}: {}", reply.unwrap_or_default())));
        }
        let made = {
            let mut s = self.0.state.lock().unwrap();
            let exchange = Exchange {
                request: xml,
                reply: reply.clone().unwrap_or_else(|| "success".into()),
                suggested_name: hint.to_owned(),
            };
            s.last.insert(openid.to_owned(), exchange);
            reply.as_deref().and_then(reply_bubble).map(|(kind, body)| self.push(&mut s, openid, "account", kind, body))
        };
        self.keep(made.as_slice()).await;
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

/// A template message as WeChat's card shows it: `first` on top, then one `label: value` line
/// per keyword (the label the template gives it, from `labels`; the field's name when none is
/// configured), `remark` at the bottom.
fn template_card(b: &Value, labels: &std::collections::BTreeMap<String, String>) -> Value {
    let value = |k: &str| b["data"][k]["value"].as_str().map(str::to_owned);
    let mut keywords: Vec<&String> = b["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| *k != "first" && *k != "remark")
        .collect();
    // keyword2 before keyword10.
    keywords
        .sort_by_key(|k| (k.trim_start_matches(|c: char| !c.is_ascii_digit()).parse::<u32>().unwrap_or(u32::MAX), *k));
    let fields: Vec<(String, String)> = keywords
        .into_iter()
        .map(|k| (labels.get(k).cloned().unwrap_or_else(|| k.clone()), value(k).unwrap_or_default()))
        .collect();
    json!({ "template_id": b["template_id"], "url": b["url"], "first": value("first"), "fields": fields, "remark": value("remark") })
}

/// A message from `openid` as WeChat would post it, created at `now` (unix seconds).
fn xml_message(openid: &str, msg_type: &str, inner: &str, now: i64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>{now}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{inner}</xml>"
    )
}

fn cdata(s: &str) -> String {
    format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"))
}
