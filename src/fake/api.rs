//! The fake's HTTP API: one handler that authenticates, applies the knobs, records the call and
//! dispatches by path.

use super::{Call, FakeWeChat, IssuedToken, State};
use crate::store::now_ms;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State as AxState};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// Previous tokens keep working this long after a new one is issued.
const OVERLAP_MS: i64 = 5 * 60 * 1000;
const TOKEN_TTL_SECS: i64 = 7200;
const TEMPLATE_DAILY_QUOTA: i64 = 100_000;

pub fn router(fake: FakeWeChat) -> Router {
    Router::new()
        .route("/_fake/calls", axum::routing::get(calls))
        .route("/_fake/knobs", axum::routing::get(get_knobs).post(set_knobs))
        .fallback(handle)
        .with_state(fake)
}

async fn calls(AxState(fake): AxState<FakeWeChat>) -> axum::Json<Vec<Call>> {
    axum::Json(fake.calls())
}

async fn get_knobs(AxState(fake): AxState<FakeWeChat>) -> axum::Json<super::Knobs> {
    axum::Json(fake.knobs())
}

async fn set_knobs(AxState(fake): AxState<FakeWeChat>, axum::Json(knobs): axum::Json<super::Knobs>) -> StatusCode {
    fake.set_knobs(knobs);
    StatusCode::NO_CONTENT
}

type Answer = Result<Value, (i64, &'static str)>;

/// A response body that fails at once: hyper drops the connection without an answer.
struct Dropped;

impl axum::body::HttpBody for Dropped {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::other("dropped by the fake"))))
    }
}

async fn handle(
    AxState(fake): AxState<FakeWeChat>,
    method: Method,
    uri: Uri,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query: HashMap<String, String> = form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let is_token_call = path == "/cgi-bin/token" || path == "/cgi-bin/stable_token";

    let (latency, drop_it) = {
        let mut s = fake.0.state.lock().unwrap();
        let drop_it = s.knobs.drop_connections > 0 && !is_token_call;
        if drop_it {
            s.knobs.drop_connections -= 1;
        }
        (s.knobs.latency_ms, drop_it)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if drop_it {
        fake.record(&path, &query, json_body, -2, None);
        return Response::new(Body::new(Dropped));
    }

    if path == "/connect/oauth2/authorize" {
        return fake.authorize(&query);
    }
    let answer = fake.answer(&method, &path, &query, &json_body, &body);
    let errcode = match &answer {
        // 45065 is an error that carries data (the first send's msg_id).
        Ok(v) => v["errcode"].as_i64().unwrap_or(0),
        Err((code, _)) => *code,
    };
    let reached = match (&answer, path.as_str()) {
        (Ok(_), "/cgi-bin/message/mass/preview") if errcode == 0 => {
            json_body["touser"].as_str().map(|o| vec![o.to_owned()])
        }
        (Ok(v), "/cgi-bin/message/mass/sendall" | "/cgi-bin/message/mass/send") if errcode == 0 => {
            v["msg_id"].as_i64().and_then(|id| fake.0.state.lock().unwrap().mass_reached.remove(&id))
        }
        _ => None,
    };
    fake.record(&path, &query, json_body, errcode, reached);
    let value = match answer {
        Ok(v) => v,
        Err((errcode, errmsg)) => json!({ "errcode": errcode, "errmsg": errmsg }),
    };
    axum::Json(value).into_response()
}

impl FakeWeChat {
    fn record(
        &self,
        path: &str,
        query: &HashMap<String, String>,
        body: Value,
        errcode: i64,
        reached: Option<Vec<String>>,
    ) {
        let mut q = query.clone();
        q.remove("secret");
        self.0.state.lock().unwrap().calls.push(Call { path: path.to_owned(), query: q, body, errcode, reached });
    }

    fn answer(
        &self,
        method: &Method,
        path: &str,
        query: &HashMap<String, String>,
        body: &Value,
        raw: &Bytes,
    ) -> Answer {
        match path {
            "/cgi-bin/token" => {
                if query.get("grant_type").map(String::as_str) != Some("client_credential") {
                    return Err((40002, "invalid grant_type"));
                }
                self.check_credentials(query.get("appid"), query.get("secret"))?;
                Ok(self.issue_token(true))
            }
            "/cgi-bin/stable_token" => {
                if body["grant_type"] != "client_credential" {
                    return Err((40002, "invalid grant_type"));
                }
                let appid = body["appid"].as_str().map(str::to_owned);
                let secret = body["secret"].as_str().map(str::to_owned);
                self.check_credentials(appid.as_ref(), secret.as_ref())?;
                Ok(self.issue_token(body["force_refresh"].as_bool().unwrap_or(false)))
            }
            p if p.starts_with("/sns/") => self.sns(p, query),
            "/connect/oauth2/authorize" => Err((302, "handled by authorize()")),
            p if p.starts_with("/cgi-bin/") => {
                self.authenticate(query.get("access_token"))?;
                self.faults()?;
                self.api(method, p, query, body, raw)
            }
            _ => Err((404, "no such API in the fake")),
        }
    }

    /// WeChat's authorize page, as the follower's browser sees it: straight back to
    /// `redirect_uri` with a fresh code and the state. The follower is `openid` (a fake-only
    /// parameter), else the current follower (`set_current_follower`), else `oFakeFollower`.
    fn authorize(&self, query: &HashMap<String, String>) -> Response {
        let bad = |why: &str| (StatusCode::BAD_REQUEST, why.to_owned()).into_response();
        if query.get("appid") != Some(&self.0.app_id) {
            return bad("invalid appid");
        }
        if query.get("response_type").map(String::as_str) != Some("code") {
            return bad("response_type must be code");
        }
        let state = query.get("state").cloned().unwrap_or_default();
        if !crate::wechat::client::oauth::valid_state(&state) && !state.is_empty() {
            return bad("invalid state");
        }
        let Some(redirect) = query.get("redirect_uri").filter(|r| r.starts_with("http")) else {
            return bad("invalid redirect_uri");
        };
        let current = self.0.state.lock().unwrap().current_follower.clone();
        let openid = query.get("openid").cloned().or(current).unwrap_or_else(|| "oFakeFollower".into());
        let scope = query.get("scope").map(String::as_str).unwrap_or("snsapi_base");
        if scope != "snsapi_base" && scope != "snsapi_userinfo" {
            return bad("invalid scope");
        }
        let code = self.oauth_code_for(&openid, scope);
        let sep = if redirect.contains('?') { '&' } else { '?' };
        let location = format!("{redirect}{sep}code={code}&state={state}");
        self.record("/connect/oauth2/authorize", query, Value::Null, 0, None);
        (StatusCode::FOUND, [(axum::http::header::LOCATION, location)]).into_response()
    }

    fn check_credentials(&self, appid: Option<&String>, secret: Option<&String>) -> Result<(), (i64, &'static str)> {
        if appid.map(String::as_str) != Some(self.0.app_id.as_str()) {
            return Err((40013, "invalid appid"));
        }
        if secret.map(String::as_str) != Some(self.0.secret.as_str()) {
            return Err((40125, "invalid appsecret"));
        }
        Ok(())
    }

    /// `always_new`: `token` semantics (and `stable_token` with force_refresh).
    fn issue_token(&self, always_new: bool) -> Value {
        let now = now_ms();
        let mut s = self.0.state.lock().unwrap();
        let ttl = if s.knobs.token_ttl_secs > 0 { s.knobs.token_ttl_secs } else { TOKEN_TTL_SECS };
        if !always_new
            && let Some(current) = s.current.clone()
            && let Some(t) = s.tokens.get(&current)
            && t.expires_at > now
            && !t.revoked
        {
            return json!({ "access_token": current, "expires_in": (t.expires_at - now) / 1000 });
        }
        if let Some(old) = s.current.take()
            && let Some(t) = s.tokens.get_mut(&old)
        {
            t.retired_at = Some(now + OVERLAP_MS);
        }
        let token = format!("FAKE_{}_{}", self.next_id(), crate::wechat::envelope::random_nonce());
        s.tokens.insert(token.clone(), IssuedToken { expires_at: now + ttl * 1000, retired_at: None, revoked: false });
        s.current = Some(token.clone());
        s.issued += 1;
        json!({ "access_token": token, "expires_in": ttl })
    }

    fn authenticate(&self, token: Option<&String>) -> Result<(), (i64, &'static str)> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err((41001, "access_token missing"));
        };
        let now = now_ms();
        let s = self.0.state.lock().unwrap();
        match s.tokens.get(token) {
            None => Err((40001, "invalid credential, access_token is invalid or not latest")),
            Some(t) if t.revoked || t.retired_at.is_some_and(|r| r < now) => {
                Err((40001, "invalid credential, access_token is invalid or not latest"))
            }
            Some(t) if t.expires_at <= now => Err((42001, "access_token expired")),
            Some(_) => Ok(()),
        }
    }

    fn faults(&self) -> Result<(), (i64, &'static str)> {
        let mut s = self.0.state.lock().unwrap();
        if let Some(code) = s.knobs.forced.pop_front() {
            return Err((code, "forced by the fake"));
        }
        if s.knobs.error_rate > 0.0 && rand::random::<f64>() < s.knobs.error_rate {
            return Err((-1, "system error"));
        }
        Ok(())
    }

    /// The follower a call names: 40003 for no openid, 43004 for one who left; known from now on.
    fn follower(&self, s: &mut State, openid: Option<&str>) -> Result<String, (i64, &'static str)> {
        let openid = openid.filter(|o| !o.is_empty() && o.len() <= 64).ok_or((40003, "invalid openid"))?;
        if !s.followers.is_subscribed(openid) {
            return Err((43004, "require subscribe"));
        }
        s.followers.seen(openid, now_ms() / 1000);
        Ok(openid.to_owned())
    }

    fn api(&self, method: &Method, path: &str, query: &HashMap<String, String>, body: &Value, raw: &Bytes) -> Answer {
        let ok = || Ok(json!({ "errcode": 0, "errmsg": "ok" }));
        let post = method == Method::POST;
        if post && body.is_null() && path != "/cgi-bin/media/uploadimg" {
            return Err((47001, "data format error"));
        }
        match path {
            "/cgi-bin/menu/create" => {
                let buttons = body["button"].as_array().ok_or((47001, "data format error"))?;
                if buttons.is_empty() || buttons.len() > 3 {
                    return Err((40016, "invalid button size"));
                }
                self.0.state.lock().unwrap().menu = Some(json!({ "button": buttons }));
                ok()
            }
            "/cgi-bin/menu/get" => {
                let s = self.0.state.lock().unwrap();
                match &s.menu {
                    None => Err((46003, "menu no exist")),
                    Some(menu) => Ok(json!({ "menu": menu, "conditionalmenu": s.conditional })),
                }
            }
            "/cgi-bin/menu/delete" => {
                let mut s = self.0.state.lock().unwrap();
                s.menu = None;
                s.conditional.clear();
                ok()
            }
            "/cgi-bin/menu/addconditional" => {
                if body["matchrule"].is_null() {
                    return Err((47001, "data format error"));
                }
                let id = self.next_id();
                let mut menu = body.clone();
                menu["menuid"] = json!(id);
                self.0.state.lock().unwrap().conditional.push(menu);
                Ok(json!({ "menuid": id }))
            }
            "/cgi-bin/menu/delconditional" => {
                let id = body["menuid"].as_i64().ok_or((47001, "data format error"))?;
                let mut s = self.0.state.lock().unwrap();
                let before = s.conditional.len();
                s.conditional.retain(|m| m["menuid"].as_i64() != Some(id));
                if s.conditional.len() == before { Err((65301, "no such conditional menu")) } else { ok() }
            }
            "/cgi-bin/menu/trymatch" => {
                let s = self.0.state.lock().unwrap();
                let user = body["user_id"].as_str().unwrap_or_default();
                let tags = s.followers.get(user).map(|f| f.tags.clone()).unwrap_or_default();
                let matched = s.conditional.iter().find(|m| {
                    m["matchrule"]["tag_id"]
                        .as_str()
                        .and_then(|t| t.parse::<i64>().ok())
                        .is_some_and(|t| tags.contains(&t))
                });
                match matched.or(s.menu.as_ref()) {
                    Some(menu) => Ok(json!({ "button": menu["button"] })),
                    None => Err((46003, "menu no exist")),
                }
            }
            "/cgi-bin/message/custom/send" => {
                let mut s = self.0.state.lock().unwrap();
                self.follower(&mut s, body["touser"].as_str())?;
                let msgtype = body["msgtype"].as_str().unwrap_or_default();
                if body[msgtype].is_null() {
                    return Err((47001, "data format error"));
                }
                if msgtype == "text" && body["text"]["content"].as_str().is_none_or(str::is_empty) {
                    return Err((44003, "empty content"));
                }
                ok()
            }
            "/cgi-bin/message/custom/typing" => {
                let mut s = self.0.state.lock().unwrap();
                self.follower(&mut s, body["touser"].as_str())?;
                ok()
            }
            "/cgi-bin/message/template/send" => {
                let openid = {
                    let mut s = self.0.state.lock().unwrap();
                    let openid = self.follower(&mut s, body["touser"].as_str())?;
                    if body["template_id"].as_str().is_none_or(str::is_empty) {
                        return Err((40037, "invalid template_id"));
                    }
                    let quota = if s.knobs.template_quota > 0 { s.knobs.template_quota } else { TEMPLATE_DAILY_QUOTA };
                    if s.templates_sent >= quota {
                        return Err((QUOTA, "reach max api daily quota limit"));
                    }
                    s.templates_sent += 1;
                    openid
                };
                let msgid = self.next_id();
                self.finish_event(
                    &openid,
                    "TEMPLATESENDJOBFINISH",
                    msgid,
                    "<Status><![CDATA[success]]></Status>".into(),
                );
                Ok(json!({ "errcode": 0, "errmsg": "ok", "msgid": msgid }))
            }
            "/cgi-bin/user/info" => {
                let mut s = self.0.state.lock().unwrap();
                let openid = query.get("openid").cloned().filter(|o| !o.is_empty()).ok_or((40003, "invalid openid"))?;
                s.followers.seen(&openid, now_ms() / 1000);
                Ok(user_json(&s, &openid))
            }
            "/cgi-bin/user/info/batchget" => {
                let mut s = self.0.state.lock().unwrap();
                let list = body["user_list"].as_array().ok_or((47001, "data format error"))?;
                if list.len() > 100 {
                    return Err((45035, "too many users"));
                }
                for openid in list.iter().filter_map(|u| u["openid"].as_str()) {
                    s.followers.seen(openid, now_ms() / 1000);
                }
                let users: Vec<Value> =
                    list.iter().map(|u| user_json(&s, u["openid"].as_str().unwrap_or_default())).collect();
                Ok(json!({ "user_info_list": users }))
            }
            "/cgi-bin/user/get" => Ok(json!({ "total": 0, "count": 0, "data": { "openid": [] }, "next_openid": "" })),
            "/cgi-bin/tags/create" => {
                let name = body["tag"]["name"]
                    .as_str()
                    .filter(|n| !n.is_empty() && n.chars().count() <= 30)
                    .ok_or((45158, "tag name too long"))?;
                let mut s = self.0.state.lock().unwrap();
                if s.tags.iter().any(|(_, n)| n == name) {
                    return Err((45157, "tag name duplicate"));
                }
                let id = 100 + s.tags.len() as i64;
                s.tags.push((id, name.to_owned()));
                Ok(json!({ "tag": { "id": id, "name": name } }))
            }
            "/cgi-bin/tags/get" => {
                let s = self.0.state.lock().unwrap();
                let tags: Vec<Value> = s
                    .tags
                    .iter()
                    .map(|(id, name)| json!({ "id": id, "name": name, "count": s.followers.tag_count(*id) }))
                    .collect();
                Ok(json!({ "tags": tags }))
            }
            "/cgi-bin/tags/members/batchtagging" | "/cgi-bin/tags/members/batchuntagging" => {
                let tagid = body["tagid"].as_i64().ok_or((47001, "data format error"))?;
                let openids = body["openid_list"].as_array().ok_or((47001, "data format error"))?;
                if openids.len() > 50 {
                    return Err((40032, "invalid openid_list size"));
                }
                let mut s = self.0.state.lock().unwrap();
                if !s.tags.iter().any(|(id, _)| *id == tagid) {
                    return Err((45159, "invalid tag id"));
                }
                for o in openids.iter().filter_map(Value::as_str) {
                    let tags = &mut s.followers.seen(o, now_ms() / 1000).tags;
                    if path.ends_with("batchtagging") {
                        tags.insert(tagid);
                    } else {
                        tags.remove(&tagid);
                    }
                }
                ok()
            }
            "/cgi-bin/tags/getidlist" => {
                let mut s = self.0.state.lock().unwrap();
                let openid = self.follower(&mut s, body["openid"].as_str())?;
                let ids: Vec<i64> =
                    s.followers.get(&openid).map(|f| f.tags.iter().copied().collect()).unwrap_or_default();
                Ok(json!({ "tagid_list": ids }))
            }
            "/cgi-bin/user/tag/get" => {
                let tagid = body["tagid"].as_i64().ok_or((47001, "data format error"))?;
                let s = self.0.state.lock().unwrap();
                let openids: Vec<&String> = s.followers.with_tag(tagid).map(|(o, _)| o).collect();
                Ok(json!({ "count": openids.len(), "data": { "openid": openids }, "next_openid": "" }))
            }
            "/cgi-bin/qrcode/create" => {
                let action = body["action_name"].as_str().unwrap_or_default();
                if !["QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"].contains(&action) {
                    return Err((40097, "invalid action_name"));
                }
                let ticket = format!("gQFAKE{}", self.next_id());
                let mut answer = json!({ "ticket": ticket, "url": format!("http://weixin.qq.com/q/{ticket}") });
                if action.starts_with("QR_SCENE") || action == "QR_STR_SCENE" {
                    answer["expire_seconds"] = json!(body["expire_seconds"].as_i64().unwrap_or(60));
                }
                Ok(answer)
            }
            "/cgi-bin/media/uploadimg" => {
                if !raw.windows(12).any(|w| w == b"name=\"media\"") {
                    return Err((41005, "media data missing"));
                }
                Ok(json!({ "url": format!("http://mmbiz.qpic.cn/mmbiz_jpg/fake{}/0", self.next_id()) }))
            }
            "/cgi-bin/draft/add" => {
                let articles = body["articles"].as_array().ok_or((47001, "data format error"))?;
                if articles.is_empty() || articles.len() > 8 {
                    return Err((45008, "article size out of limit"));
                }
                let media_id = format!("DRAFT_{}", self.next_id());
                self.0.state.lock().unwrap().drafts.insert(media_id.clone(), body["articles"].clone());
                Ok(json!({ "media_id": media_id }))
            }
            "/cgi-bin/message/mass/sendall" | "/cgi-bin/message/mass/send" => self.mass(path, body),
            "/cgi-bin/message/mass/preview" => {
                let mut s = self.0.state.lock().unwrap();
                self.follower(&mut s, body["touser"].as_str())?;
                ok()
            }
            "/cgi-bin/message/mass/get" => {
                let id = body["msg_id"].as_i64().ok_or((47001, "data format error"))?;
                Ok(json!({ "msg_id": id, "msg_status": "SEND_SUCCESS" }))
            }
            "/cgi-bin/ticket/getticket" => {
                if query.get("type").map(String::as_str) != Some("jsapi") {
                    return Err((40097, "invalid type"));
                }
                Ok(
                    json!({ "errcode": 0, "errmsg": "ok", "ticket": format!("FAKE_TICKET_{}", self.next_id()), "expires_in": 7200 }),
                )
            }
            _ => Err((404, "no such API in the fake")),
        }
    }

    fn mass(&self, path: &str, body: &Value) -> Answer {
        let msgtype = body["msgtype"].as_str().unwrap_or_default();
        if body[msgtype].is_null() {
            return Err((47001, "data format error"));
        }
        if msgtype == "mpnews" && body["mpnews"]["media_id"].as_str().is_none_or(|m| !m.starts_with("DRAFT_")) {
            return Err((40007, "invalid media_id"));
        }
        let mut s = self.0.state.lock().unwrap();
        // Whom it aims at: the list, everyone who follows, or the tag's members.
        let targets: Vec<String> = if path.ends_with("/send") {
            let to = body["touser"].as_array().ok_or((47001, "data format error"))?;
            if to.len() < 2 || to.len() > 10_000 {
                return Err((40130, "invalid openid list size, at least two openid"));
            }
            to.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        } else if body["filter"]["is_to_all"].as_bool() == Some(true) {
            s.followers.subscribed().map(|(o, _)| o.clone()).collect()
        } else {
            let tag = body["filter"]["tag_id"].as_i64().ok_or((40050, "invalid tag id"))?;
            if !s.tags.iter().any(|(id, _)| *id == tag) {
                return Err((40050, "invalid tag id"));
            }
            s.followers.with_tag(tag).map(|(o, _)| o.clone()).collect()
        };
        if let Some(id) = body["clientmsgid"].as_str() {
            // WeChat: a clientmsgid seen before is 45065 with the first send's msg_id, or
            // 45066 when repeated within a minute.
            if let Some(&(prev, at)) = s.clientmsgids.get(id) {
                if now_ms() - at < s.knobs.clientmsgid_retry_ms.unwrap_or(60_000) {
                    return Err((45066, "clientmsgid retry too fast, please wait 1 minute"));
                }
                return Ok(
                    json!({ "errcode": 45065, "errmsg": "clientmsgid exist", "msg_id": prev, "msg_data_id": prev }),
                );
            }
        }
        let msg_id = self.next_id();
        if let Some(id) = body["clientmsgid"].as_str() {
            s.clientmsgids.insert(id.to_owned(), (msg_id, now_ms()));
        }
        let (total, sent) = s.followers.mass_send(targets.iter().map(String::as_str), china_month(), now_ms() / 1000);
        if targets.len() <= 10_000 {
            let reached = targets.into_iter().filter(|o| s.followers.get(o).is_some_and(|f| f.subscribed)).collect();
            s.mass_reached.insert(msg_id, reached);
        }
        drop(s);
        self.mass_finished(msg_id, total, sent);
        Ok(json!({ "errcode": 0, "errmsg": "send job submission success", "msg_id": msg_id, "msg_data_id": msg_id }))
    }

    /// MASSSENDJOBFINISH with WeChat's figures: `total` aimed at, `sent` after its filtering
    /// (who left, who already had this month's four); nothing fails in the fake.
    fn mass_finished(&self, msg_id: i64, total: i64, sent: i64) {
        let counts = format!(
            "<Status><![CDATA[send success]]></Status><TotalCount>{total}</TotalCount><FilterCount>{sent}</FilterCount>\
             <SentCount>{sent}</SentCount><ErrorCount>0</ErrorCount>"
        );
        self.finish_event("oFAKEMASSSENDER0000000000000", "MASSSENDJOBFINISH", msg_id, counts);
    }

    /// Posts a job-finish event to the webhook shortly after (when callbacks are on).
    fn finish_event(&self, openid: &str, event: &str, msg_id: i64, extra: String) {
        if !self.0.state.lock().unwrap().knobs.callbacks || self.0.webhook.lock().unwrap().is_none() {
            return;
        }
        let xml = format!(
            "<xml><ToUserName><![CDATA[gh_fake]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
             <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>\
             <MsgID>{msg_id}</MsgID>{extra}</xml>",
            now_ms() / 1000
        );
        let fake = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Err(e) = fake.post_to_webhook(&xml).await {
                tracing::debug!(error = %e, "fake: job-finish callback failed");
            }
        });
    }

    fn sns(&self, path: &str, query: &HashMap<String, String>) -> Answer {
        match path {
            "/sns/oauth2/access_token" => {
                self.check_credentials(query.get("appid"), query.get("secret"))?;
                let code = query.get("code").ok_or((41008, "missing code"))?;
                let (openid, expires, scope) =
                    self.0.state.lock().unwrap().oauth_codes.remove(code).ok_or((40029, "invalid code"))?;
                if expires < now_ms() {
                    return Err((40029, "invalid code"));
                }
                let token = format!("SNS_{}", self.next_id());
                Ok(
                    json!({ "access_token": token, "expires_in": 7200, "refresh_token": format!("R{token}"), "openid": openid, "scope": scope }),
                )
            }
            "/sns/userinfo" => {
                let openid = query.get("openid").ok_or((41009, "missing openid"))?;
                if !query.get("access_token").is_some_and(|t| t.starts_with("SNS_")) {
                    return Err((40001, "invalid credential"));
                }
                Ok(
                    json!({ "openid": openid, "nickname": format!("Follower {}", &openid[openid.len().saturating_sub(4)..]), "headimgurl": "" }),
                )
            }
            _ => Err((404, "no such API in the fake")),
        }
    }
}

use crate::wechat::client::QUOTA;

/// `user/info` for `openid` as WeChat answers it (no nickname or avatar since 2021).
fn user_json(s: &State, openid: &str) -> Value {
    let Some(f) = s.followers.get(openid).filter(|f| f.subscribed) else {
        return json!({ "subscribe": 0, "openid": openid });
    };
    let tags: Vec<i64> = f.tags.iter().copied().collect();
    json!({ "subscribe": 1, "openid": openid, "language": "zh_CN", "subscribe_time": f.subscribe_time,
            "remark": f.remark, "groupid": 0, "tagid_list": tags, "subscribe_scene": f.scene,
            "qr_scene": 0, "qr_scene_str": f.qr_scene_str })
}

/// The calendar month in China (`yyyymm`), which WeChat's four-a-month limit counts in.
fn china_month() -> i32 {
    use chrono::Datelike;
    let t = chrono::Utc::now() + chrono::Duration::hours(8);
    t.year() * 100 + t.month() as i32
}
