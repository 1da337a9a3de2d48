//! The fake's HTTP API, one module per API family as [`crate::wechat::client`] has them. Every
//! call goes through [`handle`]: the knobs (latency, dropped connections), authentication by
//! access token for `/cgi-bin/…`, forced errcodes and random `-1`s, then the family's answer,
//! and the call recorded (`GET /_fake/calls`).

mod jssdk;
mod mass;
mod media;
mod menu;
mod message;
mod oauth;
mod qrcode;
mod tag;
mod template;
mod token;
mod user;

use super::{Call, FakeWeChat};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State as AxState};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

pub fn router(fake: FakeWeChat) -> Router {
    Router::new()
        .route("/_fake/calls", axum::routing::get(calls))
        .route("/_fake/knobs", axum::routing::get(get_knobs).post(set_knobs))
        // WeChat's image host (mmbiz.qpic.cn), for what `media/uploadimg` took.
        .route("/mmbiz_jpg/{id}/{n}", axum::routing::get(image))
        .route("/mmbiz_png/{id}/{n}", axum::routing::get(image))
        .fallback(handle)
        .with_state(fake)
}

async fn calls(AxState(fake): AxState<FakeWeChat>) -> axum::Json<Vec<Call>> {
    axum::Json(fake.calls())
}

async fn image(AxState(fake): AxState<FakeWeChat>, uri: Uri) -> Response {
    served_image(&fake, uri.path().trim_start_matches('/'))
}

/// The image at `path` on the image host (`mmbiz_png/fake12/0`) as WeChat's host answers it, or
/// 404.
pub fn served_image(fake: &FakeWeChat, path: &str) -> Response {
    match fake.image(path) {
        Some(image) => ([(axum::http::header::CONTENT_TYPE, image.mime)], image.bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn get_knobs(AxState(fake): AxState<FakeWeChat>) -> axum::Json<super::Knobs> {
    axum::Json(fake.knobs())
}

async fn set_knobs(AxState(fake): AxState<FakeWeChat>, axum::Json(knobs): axum::Json<super::Knobs>) -> StatusCode {
    fake.set_knobs(knobs);
    StatusCode::NO_CONTENT
}

/// An API's answer: its JSON, or WeChat's `(errcode, errmsg)`.
type Answer = Result<Value, (i64, &'static str)>;
type Query = HashMap<String, String>;

/// `{"errcode":0,"errmsg":"ok"}`.
fn ok() -> Answer {
    Ok(json!({ "errcode": 0, "errmsg": "ok" }))
}

/// What one call carries.
struct Req<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a Query,
    body: &'a Value,
    raw: &'a Bytes,
}

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
    let query: Query = form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
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
        return oauth::authorize(&fake, &query);
    }
    let req = Req { method: &method, path: &path, query: &query, body: &json_body, raw: &body };
    let answer = answer(&fake, &req);
    let errcode = match &answer {
        // 45065 is an error that carries data (the first send's msg_id).
        Ok(v) => v["errcode"].as_i64().unwrap_or(0),
        Err((code, _)) => *code,
    };
    let reached = if errcode == 0 { mass::reached(&fake, &path, &json_body, answer.as_ref().ok()) } else { None };
    fake.record(&path, &query, json_body, errcode, reached);
    let value = match answer {
        Ok(v) => v,
        Err((errcode, errmsg)) => json!({ "errcode": errcode, "errmsg": errmsg }),
    };
    axum::Json(value).into_response()
}

fn answer(fake: &FakeWeChat, req: &Req) -> Answer {
    let path = req.path;
    if path == "/cgi-bin/token" || path == "/cgi-bin/stable_token" {
        return token::issue(fake, req);
    }
    if path.starts_with("/sns/") {
        return oauth::sns(fake, req);
    }
    let Some(api) = path.strip_prefix("/cgi-bin/") else { return Err((404, "no such API in the fake")) };
    token::authenticate(fake, req.query.get("access_token"))?;
    fake.faults()?;
    if *req.method == Method::POST && req.body.is_null() && api != "media/uploadimg" {
        return Err((47001, "data format error"));
    }
    let family = api.split('/').next().unwrap_or("");
    match family {
        "menu" => menu::answer(fake, api, req),
        "message" if api.starts_with("message/mass/") => mass::answer(fake, api, req),
        "message" if api.starts_with("message/template/") => template::answer(fake, api, req),
        "message" => message::answer(fake, api, req),
        "user" if api == "user/tag/get" => tag::answer(fake, api, req),
        "user" => user::answer(fake, api, req),
        "tags" => tag::answer(fake, api, req),
        "qrcode" => qrcode::answer(fake, api, req),
        "media" | "draft" => media::answer(fake, api, req),
        "ticket" => jssdk::answer(fake, api, req),
        _ => Err((404, "no such API in the fake")),
    }
}

impl FakeWeChat {
    /// Posts a job-finish event to the webhook shortly after (when callbacks are on).
    fn finish_event(&self, openid: &str, event: &str, msg_id: i64, extra: String) {
        if !self.0.state.lock().unwrap().knobs.callbacks || self.0.webhook.lock().unwrap().is_none() {
            return;
        }
        let xml = format!(
            "<xml><ToUserName><![CDATA[gh_fake]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>\
             <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>\
             <MsgID>{msg_id}</MsgID>{extra}</xml>",
            self.now_secs()
        );
        let fake = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Err(e) = fake.post_to_webhook(&xml).await {
                tracing::debug!(error = %e, "fake: job-finish callback failed");
            }
        });
    }

    fn record(&self, path: &str, query: &Query, body: Value, errcode: i64, reached: Option<Vec<String>>) {
        let mut q = query.clone();
        q.remove("secret");
        self.0.state.lock().unwrap().calls.push(Call {
            path: path.to_owned(),
            query: q,
            body,
            errcode,
            reached,
            at_ms: self.0.clock.now_ms(),
        });
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

    /// The follower a call names: 40003 for no (or a malformed) openid, 43004 for one who left;
    /// known from now on.
    fn follower(&self, s: &mut super::State, openid: Option<&str>) -> Result<String, (i64, &'static str)> {
        let openid = openid.filter(|o| valid_openid(o)).ok_or((40003, "invalid openid"))?;
        if !s.followers.is_subscribed(openid) {
            return Err((43004, "require subscribe"));
        }
        s.followers.seen(openid, self.now_secs());
        Ok(openid.to_owned())
    }
}

/// What WeChat takes for an openid (real ones are 28 characters of `[A-Za-z0-9_-]`).
fn valid_openid(o: &str) -> bool {
    !o.is_empty() && o.len() <= 64 && o.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
