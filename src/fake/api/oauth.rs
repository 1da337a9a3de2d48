//! WeChat's OAuth for web pages: the authorize page a follower's browser passes through
//! (`open.weixin.qq.com/connect/oauth2/authorize`) and `sns/oauth2/access_token` and
//! `sns/userinfo`. A code is single use and lives five minutes.

use super::{Answer, Query, Req};
use crate::fake::FakeWeChat;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The authorize page, as the follower's browser sees it: straight back to `redirect_uri` with
/// a fresh code and the state. The follower is `openid` (a fake-only parameter), else the
/// current follower (`set_current_follower`), else `oFakeFollower`.
pub(super) fn authorize(fake: &FakeWeChat, query: &Query) -> Response {
    let bad = |why: &str| (StatusCode::BAD_REQUEST, why.to_owned()).into_response();
    if query.get("appid") != Some(&fake.0.app_id) {
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
    let current = fake.0.state.lock().unwrap().current_follower.clone();
    let openid = query.get("openid").cloned().or(current).unwrap_or_else(|| "oFakeFollower".into());
    let scope = query.get("scope").map(String::as_str).unwrap_or("snsapi_base");
    if scope != "snsapi_base" && scope != "snsapi_userinfo" {
        return bad("invalid scope");
    }
    let code = fake.oauth_code_for(&openid, scope);
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let location = format!("{redirect}{sep}code={code}&state={state}");
    fake.record("/connect/oauth2/authorize", query, Value::Null, 0, None);
    (StatusCode::FOUND, [(axum::http::header::LOCATION, location)]).into_response()
}

pub(super) fn sns(fake: &FakeWeChat, req: &Req) -> Answer {
    let query = req.query;
    match req.path {
        "/sns/oauth2/access_token" => {
            super::token::check_credentials(
                fake,
                query.get("appid").map(String::as_str),
                query.get("secret").map(String::as_str),
            )?;
            let code = query.get("code").ok_or((41008, "missing code"))?;
            let (openid, expires, scope) =
                fake.0.state.lock().unwrap().oauth_codes.remove(code).ok_or((40029, "invalid code"))?;
            if expires < fake.now_ms() {
                return Err((40029, "invalid code"));
            }
            let token = format!("SNS_{}", fake.next_id());
            Ok(
                json!({ "access_token": token, "expires_in": 7200, "refresh_token": format!("R{token}"), "openid": openid, "scope": scope }),
            )
        }
        "/sns/userinfo" => {
            let openid = query.get("openid").ok_or((41009, "missing openid"))?;
            if !query.get("access_token").is_some_and(|t| t.starts_with("SNS_")) {
                return Err((40001, "invalid credential"));
            }
            let nickname = format!("Follower {}", &openid[openid.len().saturating_sub(4)..]);
            Ok(json!({ "openid": openid, "nickname": nickname, "headimgurl": "" }))
        }
        _ => Err((404, "no such API in the fake")),
    }
}
