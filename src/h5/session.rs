//! Browser sessions for the H5 pages and the OAuth round trip that puts an openid in them.
//!
//! The cookie `wxoa_session` holds `<id>.<hmac>`: a random id and its HMAC-SHA256 under
//! `h5.session_secret`, HttpOnly, SameSite=Lax (the OAuth redirect back is a top-level GET),
//! Secure when the public URL is https. The openid lives only in the database row, never in a
//! URL or the cookie. OAuth states are random, single use, expire after 5 minutes and belong to
//! the session that started the flow, so a state lifted from one browser is useless in another.

use crate::store::{Store, now_ms};
use crate::with_pool;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

pub const COOKIE: &str = "wxoa_session";
/// How long an OAuth state is good for (WeChat's code lives as long).
pub const STATE_TTL_MS: i64 = 5 * 60 * 1000;

/// Hex HMAC-SHA256 of `data` under `secret` (cookies and form tokens, here and in the console).
pub(crate) fn mac(secret: &str, data: &str) -> String {
    let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(data.as_bytes());
    crate::wechat::signature::hex(&m.finalize().into_bytes())
}

/// A random token of `n` bytes, hex.
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut b);
    crate::wechat::signature::hex(&b)
}

/// `<id>.<mac>` for the cookie.
pub fn sign(secret: &str, id: &str) -> String {
    format!("{id}.{}", mac(secret, id))
}

/// The session id in a cookie value, if its signature is good (constant-time compare).
pub fn verify(secret: &str, value: &str) -> Option<String> {
    let (id, sig) = value.split_once('.')?;
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let want = mac(secret, id);
    let good: bool = subtle::ConstantTimeEq::ct_eq(want.as_bytes(), sig.as_bytes()).into();
    good.then(|| id.to_owned())
}

/// The form token of a session (forms post it back; a cross-site form cannot know it).
pub fn form_token(secret: &str, session_id: &str) -> String {
    mac(secret, &format!("form:{session_id}"))
}

pub fn form_token_ok(secret: &str, session_id: &str, token: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(form_token(secret, session_id).as_bytes(), token.as_bytes()).into()
}

/// The `cookie` header's value for our cookie.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<String> {
    named_cookie(headers, COOKIE)
}

/// The value of the cookie `name` in the request's `cookie` headers.
pub fn named_cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

pub fn set_cookie(secret: &str, id: &str, secure: bool, ttl_secs: u64) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={}; Path=/h5; Max-Age={ttl_secs}; HttpOnly; SameSite=Lax{secure}", sign(secret, id))
}

/// A live session: its id and openid (once OAuth is done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub openid: Option<String>,
    /// The WeChat nickname, when the follower granted `snsapi_userinfo`.
    pub nickname: Option<String>,
}

pub async fn load(store: &Store, id: &str) -> Result<Option<Session>, sqlx::Error> {
    let row: Option<(String, Option<String>, Option<String>)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, openid, nickname FROM h5_sessions WHERE id = $1 AND expires_at > $2").bind(id).bind(now_ms()).fetch_optional(pool).await)?;
    Ok(row.map(|(id, openid, nickname)| Session { id, openid, nickname }))
}

pub async fn create(store: &Store, ttl_secs: u64) -> Result<Session, sqlx::Error> {
    let id = random_token(16);
    let now = now_ms();
    with_pool!(store, pool => sqlx::query("INSERT INTO h5_sessions (id, openid, created_at, expires_at) VALUES ($1, NULL, $2, $3)")
        .bind(&id).bind(now).bind(now + ttl_secs as i64 * 1000).execute(pool).await.map(|_| ()))?;
    Ok(Session { id, openid: None, nickname: None })
}

/// A new single-use state for `session`, leading to `next` afterwards.
pub async fn new_state(store: &Store, session: &Session, next: &str) -> Result<String, sqlx::Error> {
    let state = random_token(16);
    with_pool!(store, pool => sqlx::query("INSERT INTO oauth_states (state, session_id, next, created_at, used) VALUES ($1, $2, $3, $4, $5)")
        .bind(&state).bind(&session.id).bind(next).bind(now_ms()).bind(false).execute(pool).await.map(|_| ()))?;
    Ok(state)
}

/// Spends `state` for `session`: its `next`, or `None` if it is unknown, used, expired or
/// another session's.
pub async fn spend_state(store: &Store, session: &Session, state: &str) -> Result<Option<String>, sqlx::Error> {
    let fresh_after = now_ms() - STATE_TTL_MS;
    let spent = with_pool!(store, pool => sqlx::query(
        "UPDATE oauth_states SET used = $4 WHERE state = $1 AND session_id = $2 AND used = $5 AND created_at > $3")
        .bind(state).bind(&session.id).bind(fresh_after).bind(true).bind(false)
        .execute(pool).await.map(|r| r.rows_affected() == 1))?;
    if !spent {
        return Ok(None);
    }
    with_pool!(store, pool => sqlx::query_scalar("SELECT next FROM oauth_states WHERE state = $1").bind(state).fetch_optional(pool).await)
}

pub async fn set_openid(
    store: &Store,
    session: &Session,
    openid: &str,
    nickname: Option<&str>,
) -> Result<(), sqlx::Error> {
    with_pool!(store, pool => sqlx::query("UPDATE h5_sessions SET openid = $2, nickname = COALESCE($3, nickname) WHERE id = $1")
        .bind(&session.id).bind(openid).bind(nickname).execute(pool).await.map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_signed() {
        let id = random_token(16);
        let v = sign("secret-secret-secret-secret-12345", &id);
        assert_eq!(verify("secret-secret-secret-secret-12345", &v), Some(id.clone()));
        assert_eq!(verify("another-secret-another-secret-123", &v), None);
        let tampered = format!("{}{}", &v[..v.len() - 1], if v.ends_with('0') { '1' } else { '0' });
        assert_eq!(verify("secret-secret-secret-secret-12345", &tampered), None);
        assert_eq!(verify("secret-secret-secret-secret-12345", "nodot"), None);
        assert!(form_token_ok("s", &id, &form_token("s", &id)));
        assert!(!form_token_ok("s", &id, "00"));
    }
}
