//! The simulator's HTTP side: the page, its JSON API (state, new bubbles, followers, the
//! current follower, actions, saving a fixture), the mass-sent article as WeChat opens it, and
//! the stand-ins for WeChat's image host and the demo cover.

use super::*;

const PAGE: &str = include_str!("page.html");

pub fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/simulator", get(page))
        .route("/simulator/cover.svg", get(cover))
        // WeChat's image host as the fake keeps it (`wechat.image_base` points here).
        .route("/simulator/mmbiz/{*path}", get(image))
        .route("/simulator/article", get(article))
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

/// An article image the editor uploaded, as WeChat's image host serves it.
async fn image(State(sim): State<Simulator>, axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    crate::fake::served_image(&sim.0.fake, &path)
}

/// The demo campaign's cover.
async fn cover() -> Response {
    let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" width="900" height="383"><defs><linearGradient id="g" x1="0" x2="1"><stop offset="0" stop-color="#1d1d1f"/><stop offset="1" stop-color="#6b5a45"/></linearGradient></defs><rect width="900" height="383" fill="url(#g)"/><text x="450" y="205" fill="#f4e7c5" font-size="54" font-family="serif" text-anchor="middle">Limited Edition No. 5</text></svg>"##;
    ([(CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}

#[derive(Deserialize)]
struct ArticleQuery {
    /// The bubble (a mass send or preview in someone's chat).
    b: u64,
    /// Which of its articles.
    #[serde(default)]
    i: usize,
}

/// A mass-sent article as WeChat opens it: its page (title, author, body), as the bubble keeps
/// it from the draft that was sent, with its link ("阅读原文 Read more", the
/// `content_source_url`) at the bottom — the way to `/buy`. The body is the account's own
/// HTML; the page runs no script.
async fn article(State(sim): State<Simulator>, Query(q): Query<ArticleQuery>) -> Response {
    let found = {
        let s = sim.0.state.lock().unwrap();
        let bubble = s.bubbles.iter().find(|b| b.id == q.b && b.body["opens"] == "article");
        bubble.and_then(|b| b.body["articles"].get(q.i).cloned())
    };
    let Some(a) = found else {
        return (StatusCode::NOT_FOUND, "no such article").into_response();
    };
    let text = |k: &str| html_escape(a[k].as_str().unwrap_or_default());
    let link = a["link"].as_str().unwrap_or_default();
    let more = if link.is_empty() {
        String::new()
    } else {
        format!("<p><a id=read-more href=\"{}\">阅读原文 Read more</a></p>", html_escape(link))
    };
    let html = format!(
        "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'><title>{title}</title>\
         <body style='font:16px/1.6 sans-serif;padding:16px;margin:0'><h1 id=article-title style='font-size:22px'>{title}</h1>\
         <p style='color:#888;font-size:14px'>{author} · 微信公众号 Official Account</p>\
         <div id=article-body>{body}</div>{more}</body>",
        title = text("title"),
        author = text("author"),
        body = a["content"].as_str().unwrap_or_default(),
    );
    let policy = "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; form-action 'none'";
    ([(CONTENT_TYPE, "text/html; charset=utf-8"), (CONTENT_SECURITY_POLICY, policy)], html).into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Whose last exchange the page shows.
#[derive(Deserialize)]
struct Whose {
    #[serde(default)]
    openid: String,
}

async fn state(State(sim): State<Simulator>, Query(w): Query<Whose>) -> Json<Value> {
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
    Json(json!({ "followers": followers, "menu": sim.0.menu, "stores": stores, "last": s.last.get(&w.openid) }))
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
    /// The current follower, whose last exchange comes with the bubbles.
    #[serde(default)]
    openid: String,
}

async fn messages(State(sim): State<Simulator>, Query(q): Query<After>) -> Json<Value> {
    sim.sync_outbound().await;
    let s = sim.0.state.lock().unwrap();
    let new: Vec<&Bubble> = s.bubbles.iter().filter(|b| b.id > q.after).collect();
    Json(json!({ "bubbles": new, "last": s.last.get(&q.openid) }))
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
    match sim.add_follower(name, &tags).await {
        Ok(f) => Json(json!(f)).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.0).into_response(),
    }
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
    let now = sim.0.app.clock.now_secs();
    let event = |event: &str, extra: &str| {
        xml_message(openid, "event", &format!("<Event>{}</Event>{extra}", cdata(event)), now)
    };
    let (shown, xml, hint): (Value, String, String) = match &a.action {
        Action::Text { content } => {
            if content.trim().is_empty() || content.len() > 2048 {
                return (StatusCode::BAD_REQUEST, "text of 1 to 2048 bytes").into_response();
            }
            let inner = format!("<Content>{}</Content><MsgId>{}</MsgId>", cdata(content), sim.next_msg_id());
            (json!({ "text": content }), xml_message(openid, "text", &inner, now), "text".into())
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
            (
                json!({ "action": format!("📍 {label}") }),
                xml_message(openid, "location", &inner, now),
                "location".into(),
            )
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
    let made = {
        let mut s = sim.0.state.lock().unwrap();
        let kind = if shown.get("text").is_some() { "text" } else { "action" };
        sim.push(&mut s, openid, "follower", kind, shown)
    };
    sim.keep(&[made]).await;
    match sim.deliver(openid, xml, &hint).await {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.0).into_response(),
    }
}

#[derive(Deserialize)]
struct Fixture {
    name: String,
    /// Whose last request is saved.
    openid: String,
}

/// Saves the last request as a recorded fixture (`<name>.xml`); never overwrites one.
async fn save_fixture(State(sim): State<Simulator>, Json(f): Json<Fixture>) -> Response {
    let name = f.name.trim();
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return (StatusCode::BAD_REQUEST, "a fixture name is 1 to 64 letters, digits, _ or -").into_response();
    }
    let Some(last) = sim.0.state.lock().unwrap().last.get(&f.openid).cloned() else {
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
