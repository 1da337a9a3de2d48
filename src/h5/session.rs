//! Browser sessions for the H5 pages, and the OAuth round trip that starts one.
//!
//! Nothing is stored before sign-in. `/h5/start` puts the OAuth state in a short-lived signed
//! cookie (`wxoa_oauth`: state, where to go next, expiry, HMAC-SHA256 under
//! `h5.session_secret`) and sends the browser to WeChat. The callback takes the state from the
//! query *and* the cookie — a state lifted from one browser is useless in another — exchanges
//! the code, and only then writes a session row: a **new** id each sign-in, whatever cookie the
//! browser brought (its old session is deleted). A session id planted in a victim's browser
//! therefore never becomes the victim's session (session fixation), and an anonymous visitor
//! costs no database write, however many starts it makes.
//!
//! The session cookie (`wxoa_session`) holds `<id>.<hmac>`; the openid lives only in the
//! database row, never in a URL or a cookie. Both cookies are HttpOnly and SameSite=Lax (the
//! OAuth redirect back is a top-level GET). With an https `public_url` they are `Secure` and
//! carry the `__Host-` prefix (Path=/, no Domain), which browsers refuse to accept from a
//! sibling subdomain or plain HTTP, so a cookie cannot be planted in the first place.

use crate::store::Store;
use crate::with_pool;
use axum::http::HeaderMap;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// How long an OAuth state is good for (WeChat's code lives as long).
pub const STATE_TTL_MS: i64 = 5 * 60 * 1000;

/// Hex HMAC-SHA256 of `data` under `secret` (cookies and form tokens, here and in the console).
pub(crate) fn mac(secret: &str, data: &str) -> String {
    let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(data.as_bytes());
    crate::wechat::signature::hex(&m.finalize().into_bytes())
}

/// Whether `a` and `b` are equal, in time that does not depend on where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()).into()
}

/// A random token of `n` bytes, hex.
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut b);
    crate::wechat::signature::hex(&b)
}

/// The cookies' names and attributes for a deployment: `__Host-` and `Secure` on https.
#[derive(Debug, Clone)]
pub struct Cookies {
    secure: bool,
}

impl Cookies {
    pub fn for_public_url(public_url: &str) -> Cookies {
        Cookies { secure: public_url.starts_with("https://") }
    }

    pub fn session_name(&self) -> &'static str {
        if self.secure { "__Host-wxoa_session" } else { "wxoa_session" }
    }

    pub fn oauth_name(&self) -> &'static str {
        if self.secure { "__Host-wxoa_oauth" } else { "wxoa_oauth" }
    }

    /// `Set-Cookie` for `name=value` living `max_age_secs` (0 deletes it).
    fn set(&self, name: &str, value: &str, max_age_secs: u64) -> String {
        // `__Host-` cookies must be Secure, Path=/ and carry no Domain.
        let (path, secure) = if self.secure { ("/", "; Secure") } else { ("/h5", "") };
        format!("{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}")
    }

    pub fn set_session(&self, secret: &str, id: &str, ttl_secs: u64) -> String {
        self.set(self.session_name(), &format!("{id}.{}", mac(secret, &format!("session:{id}"))), ttl_secs)
    }

    pub fn set_oauth(&self, secret: &str, state: &OAuthState) -> String {
        self.set(self.oauth_name(), &state.seal(secret), (STATE_TTL_MS / 1000) as u64)
    }

    pub fn clear_oauth(&self) -> String {
        self.set(self.oauth_name(), "", 0)
    }

    pub fn clear_session(&self) -> String {
        self.set(self.session_name(), "", 0)
    }

    /// How many session cookies the request carries. More than one means a copy was planted
    /// on a narrower path (over http a page of any site on the same host can set one): the
    /// browser sends the narrower first, so neither can be trusted.
    pub fn session_cookies(&self, headers: &HeaderMap) -> usize {
        cookie_values(headers, self.session_name()).count()
    }

    /// `Set-Cookie`s that expire a session cookie on every path an H5 page is served under
    /// (the last one deletes the cookie we set ourselves).
    pub fn clear_session_everywhere(&self) -> Vec<String> {
        let name = self.session_name();
        let secure = if self.secure { "; Secure" } else { "" };
        let mut out: Vec<String> = H5_PATHS
            .iter()
            .map(|path| format!("{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Lax{secure}"))
            .collect();
        out.push(self.clear_session());
        out
    }

    /// The session id in the request's session cookie, if its signature is good and it is the
    /// only one (see [`Cookies::session_cookies`]).
    pub fn session_id(&self, secret: &str, headers: &HeaderMap) -> Option<String> {
        if self.session_cookies(headers) > 1 {
            return None;
        }
        let value = named_cookie(headers, self.session_name())?;
        let (id, sig) = value.split_once('.')?;
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        same(&mac(secret, &format!("session:{id}")), sig).then(|| id.to_owned())
    }

    /// The OAuth state this browser was given, if its cookie is good and fresh.
    pub fn oauth_state(&self, secret: &str, headers: &HeaderMap, now: i64) -> Option<OAuthState> {
        OAuthState::open(secret, &named_cookie(headers, self.oauth_name())?, now)
    }
}

/// The paths a planted session cookie may sit on: every H5 route and the folders above them.
const H5_PATHS: &[&str] = &[
    "/",
    "/h5/",
    "/h5/start",
    "/h5/oauth",
    "/h5/oauth/callback",
    "/h5/card",
    "/h5/bind",
    "/h5/enrol",
    "/h5/unbind",
    "/h5/catalogue",
    "/h5/redeem",
    "/h5/book",
    "/h5/book/confirm",
    "/h5/booking",
    "/h5/booking/cancel",
    "/h5/history",
    "/h5/account",
    "/h5/logout",
];

/// The value of the cookie `name` in the request's `cookie` headers (the first, if several).
pub fn named_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    cookie_values(headers, name).next().map(str::to_owned)
}

/// The value of the cookie `name` when the request carries exactly one: with two (one planted
/// on a narrower path or by a sibling domain beside the real one) neither is trusted.
pub fn only_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = cookie_values(headers, name);
    let first = values.next()?;
    values.next().is_none().then(|| first.to_owned())
}

fn cookie_values<'h>(headers: &'h HeaderMap, name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// An OAuth round trip in flight: the state sent to WeChat and where to go after sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthState {
    /// 32 hex characters (WeChat allows `[A-Za-z0-9]{1,128}`).
    pub state: String,
    /// The H5 path to land on (one the start checked).
    pub next: String,
    /// Unix ms after which the state is refused.
    pub expires_at: i64,
}

impl OAuthState {
    pub fn new(next: String, now: i64) -> OAuthState {
        OAuthState { state: random_token(16), next, expires_at: now + STATE_TTL_MS }
    }

    /// `state.expires.next.mac` (`next` is a checked H5 path, with no `.` or `;` in it).
    fn seal(&self, secret: &str) -> String {
        let body = format!("{}.{}.{}", self.state, self.expires_at, self.next);
        format!("{body}.{}", mac(secret, &format!("oauth:{body}")))
    }

    fn open(secret: &str, value: &str, now: i64) -> Option<OAuthState> {
        let (body, sig) = value.rsplit_once('.')?;
        if !same(&mac(secret, &format!("oauth:{body}")), sig) {
            return None;
        }
        let mut parts = body.splitn(3, '.');
        let state = parts.next()?.to_owned();
        let expires_at: i64 = parts.next()?.parse().ok()?;
        let next = parts.next()?.to_owned();
        (expires_at > now).then_some(OAuthState { state, next, expires_at })
    }
}

/// The form token of a session (forms post it back; a cross-site form cannot know it).
pub fn form_token(secret: &str, session_id: &str) -> String {
    mac(secret, &format!("form:{session_id}"))
}

pub fn form_token_ok(secret: &str, session_id: &str, token: &str) -> bool {
    same(&form_token(secret, session_id), token)
}

/// A signed-in browser: its session id and the follower's openid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub openid: String,
    /// The WeChat nickname, when the follower granted `snsapi_userinfo`.
    pub nickname: Option<String>,
}

pub async fn load(store: &Store, id: &str) -> Result<Option<Session>, sqlx::Error> {
    let row: Option<(String, Option<String>, Option<String>)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, openid, nickname FROM h5_sessions WHERE id = $1 AND expires_at > $2").bind(id).bind(store.now_ms()).fetch_optional(pool).await)?;
    Ok(row.and_then(|(id, openid, nickname)| Some(Session { id, openid: openid?, nickname })))
}

/// A new session for `openid` (the sign-in just verified it), replacing the browser's old one
/// (`previous`), which is deleted.
pub async fn sign_in(
    store: &Store,
    openid: &str,
    nickname: Option<&str>,
    ttl_secs: u64,
    previous: Option<&str>,
) -> Result<Session, sqlx::Error> {
    let id = random_token(16);
    let now = store.now_ms();
    let mut tx = store.begin().await?;
    crate::with_tx!(&mut tx, conn => {
        if let Some(old) = previous {
            sqlx::query("DELETE FROM h5_sessions WHERE id = $1").bind(old).execute(&mut *conn).await?;
        }
        sqlx::query("INSERT INTO h5_sessions (id, openid, nickname, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id).bind(openid).bind(nickname).bind(now).bind(now + ttl_secs as i64 * 1000)
            .execute(&mut *conn).await?;
    });
    tx.commit().await?;
    Ok(Session { id, openid: openid.to_owned(), nickname: nickname.map(str::to_owned) })
}

/// Ends a session (signing out): its row deleted, so its cookie opens nothing any more.
pub async fn end(store: &Store, id: &str) -> Result<(), sqlx::Error> {
    with_pool!(store, pool => sqlx::query("DELETE FROM h5_sessions WHERE id = $1").bind(id).execute(pool).await.map(|_| ()))
}

/// Deletes expired sessions, at most `batch` of them; returns how many.
pub async fn purge_expired(store: &Store, now: i64, batch: i64) -> Result<u64, sqlx::Error> {
    with_pool!(store, pool => sqlx::query(
        "DELETE FROM h5_sessions WHERE id IN (SELECT id FROM h5_sessions WHERE expires_at <= $1 LIMIT $2)")
        .bind(now).bind(batch).execute(pool).await.map(|r| r.rows_affected()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "secret-secret-secret-secret-12345";

    fn with_cookie(set_cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::COOKIE, set_cookie.split(';').next().unwrap().parse().unwrap());
        h
    }

    #[test]
    fn session_cookies_are_signed() {
        let c = Cookies::for_public_url("http://127.0.0.1:8080");
        let id = random_token(16);
        let set = c.set_session(SECRET, &id, 60);
        assert!(set.starts_with("wxoa_session=") && set.contains("Path=/h5; Max-Age=60; HttpOnly; SameSite=Lax"));
        assert_eq!(c.session_id(SECRET, &with_cookie(&set)), Some(id.clone()));
        assert_eq!(c.session_id("another-secret-another-secret-123", &with_cookie(&set)), None);
        // The value's last character changed (to one it is not).
        let end = set.find(';').unwrap();
        let last = if &set[end - 1..end] == "0" { "1" } else { "0" };
        let tampered = format!("{}{last}", &set[..end - 1]);
        assert_eq!(c.session_id(SECRET, &with_cookie(&tampered)), None);
        assert!(form_token_ok("s", &id, &form_token("s", &id)));
        assert!(!form_token_ok("s", &id, "00"));

        let https = Cookies::for_public_url("https://wx.example.com");
        let set = https.set_session(SECRET, &id, 60);
        assert!(set.starts_with("__Host-wxoa_session=") && set.contains("Path=/;") && set.ends_with("; Secure"));
    }

    #[test]
    fn oauth_states_are_signed_and_expire() {
        let c = Cookies::for_public_url("http://127.0.0.1:8080");
        let s = OAuthState::new("/h5/buy/12".into(), 1_000);
        let set = c.set_oauth(SECRET, &s);
        assert!(set.contains("Max-Age=300"), "{set}");
        assert_eq!(c.oauth_state(SECRET, &with_cookie(&set), 2_000), Some(s.clone()));
        assert_eq!(c.oauth_state(SECRET, &with_cookie(&set), s.expires_at), None, "expired");
        assert_eq!(c.oauth_state("another-secret-another-secret-123", &with_cookie(&set), 2_000), None);
        let forged = set.replacen("/h5/buy/12", "/h5/card", 1);
        assert_eq!(c.oauth_state(SECRET, &with_cookie(&forged), 2_000), None, "next is signed");
    }
}
