//! `cgi-bin/token` and `cgi-bin/stable_token`, and access-token checks on every other call.
//!
//! `token` issues a new token each call; the previous one keeps working for five minutes.
//! `stable_token` returns the current token until it expires, a new one on `force_refresh`.
//! A wrong appid is 40013, a wrong secret 40125; an unknown token is 40001, an expired one
//! 42001, a missing one 41001.

use super::{Answer, Req};
use crate::fake::{FakeWeChat, IssuedToken};
use serde_json::{Value, json};

/// Previous tokens keep working this long after a new one is issued.
const OVERLAP_MS: i64 = 5 * 60 * 1000;
const TOKEN_TTL_SECS: i64 = 7200;

pub(super) fn issue(fake: &FakeWeChat, req: &Req) -> Answer {
    if req.path == "/cgi-bin/token" {
        if req.query.get("grant_type").map(String::as_str) != Some("client_credential") {
            return Err((40002, "invalid grant_type"));
        }
        check_credentials(
            fake,
            req.query.get("appid").map(String::as_str),
            req.query.get("secret").map(String::as_str),
        )?;
        return Ok(issue_token(fake, true));
    }
    let body = req.body;
    if body["grant_type"] != "client_credential" {
        return Err((40002, "invalid grant_type"));
    }
    check_credentials(fake, body["appid"].as_str(), body["secret"].as_str())?;
    Ok(issue_token(fake, body["force_refresh"].as_bool().unwrap_or(false)))
}

pub(super) fn check_credentials(
    fake: &FakeWeChat,
    appid: Option<&str>,
    secret: Option<&str>,
) -> Result<(), (i64, &'static str)> {
    if appid != Some(fake.0.app_id.as_str()) {
        return Err((40013, "invalid appid"));
    }
    if secret != Some(fake.0.secret.as_str()) {
        return Err((40125, "invalid appsecret"));
    }
    Ok(())
}

/// `always_new`: `token` semantics (and `stable_token` with force_refresh).
fn issue_token(fake: &FakeWeChat, always_new: bool) -> Value {
    let now = fake.now_ms();
    let mut s = fake.0.state.lock().unwrap();
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
    let token = format!("FAKE_{}_{}", fake.next_id(), crate::wechat::envelope::random_nonce());
    s.tokens.insert(token.clone(), IssuedToken { expires_at: now + ttl * 1000, retired_at: None, revoked: false });
    s.current = Some(token.clone());
    s.issued += 1;
    json!({ "access_token": token, "expires_in": ttl })
}

pub(super) fn authenticate(fake: &FakeWeChat, token: Option<&String>) -> Result<(), (i64, &'static str)> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err((41001, "access_token missing"));
    };
    let now = fake.now_ms();
    let s = fake.0.state.lock().unwrap();
    match s.tokens.get(token) {
        None => Err((40001, "invalid credential, access_token is invalid or not latest")),
        Some(t) if t.revoked || t.retired_at.is_some_and(|r| r < now) => {
            Err((40001, "invalid credential, access_token is invalid or not latest"))
        }
        Some(t) if t.expires_at <= now => Err((42001, "access_token expired")),
        Some(_) => Ok(()),
    }
}
