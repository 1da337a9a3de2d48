//! Console sign-in, sessions and sign-out.
//!
//! A session lives on the server: sign-in stores the SHA-256 of a random 256-bit id in
//! `console_sessions` with the admin token it was opened with and its end; the browser holds
//! only the id (`wxoa_admin`, HttpOnly, SameSite=Strict). Nothing in the cookie says who it is,
//! a copy of the table signs no one in, signing out deletes the row (every copy of the cookie
//! ends with it), and removing a token from config ends its sessions. Behind an https
//! `h5.public_url` the cookies are `__Host-` ones (Secure, `Path=/`, no domain): no subdomain
//! and no plain-http page can set or shadow them. A request with two copies of the cookie is
//! trusted with neither.
//!
//! Every form carries a token derived from the session id, so a form posted from another site
//! is refused even where SameSite is not honoured; the sign-in form carries a login token bound
//! to a short-lived cookie of its own, so another site cannot sign a browser in either.

use super::error::Invalid;
use super::{Error, render};
use crate::admin::{Caller, authenticate, hash_token};
use crate::h5::session::{mac, only_cookie};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Form, FromRequest, FromRequestParts, RawForm, Request, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// How long a sign-in form stays usable.
const LOGIN_TTL_SECS: u64 = 3600;

/// The console's two cookies as this deployment names and scopes them.
struct Cookies {
    /// The session id's cookie.
    session: &'static str,
    /// The sign-in form's cookie (a random value the form's `login_token` is the MAC of).
    login: &'static str,
    /// `Path=` (`/` for `__Host-` cookies, which require it).
    path: &'static str,
    /// `; Secure`, or nothing over plain http (development).
    secure: &'static str,
}

fn cookies(app: &AppState) -> Cookies {
    if app.config.h5.public_url.starts_with("https://") {
        Cookies { session: "__Host-wxoa_admin", login: "__Host-wxoa_admin_login", path: "/", secure: "; Secure" }
    } else {
        Cookies { session: "wxoa_admin", login: "wxoa_admin_login", path: "/admin", secure: "" }
    }
}

impl Cookies {
    fn set(&self, name: &str, value: &str, max_age_secs: u64) -> String {
        format!("{name}={value}; Path={}; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{}", self.path, self.secure)
    }

    fn cleared(&self, name: &str) -> String {
        self.set(name, "", 0)
    }
}

/// A signed-in member of staff, and the form token their pages carry.
pub(super) struct Staff {
    /// Who it is, with their role.
    pub caller: Caller,
    /// The token each of their forms must carry.
    pub form_token: String,
    /// The session's row (`console_sessions.id_hash`).
    id_hash: String,
}

/// A session id as the cookie carries it: 64 hex digits.
fn well_formed(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The staff member this browser's session is, unless it has none, two, one that ended or
/// was signed out, or one whose token is gone from the config. A session that cannot be
/// checked (the database failed) lets no one in: the failure is the answer, not a sign-in.
async fn staff(app: &AppState, headers: &HeaderMap) -> Result<Option<Staff>, sqlx::Error> {
    let Some(id) = only_cookie(headers, cookies(app).session).filter(|id| well_formed(id)) else { return Ok(None) };
    let id_hash = hash_token(&id);
    let row: Option<(String, i64)> = crate::with_pool!(&app.store, pool =>
        sqlx::query_as("SELECT token_sha256, expires_at FROM console_sessions WHERE id_hash = $1")
            .bind(&id_hash).fetch_optional(pool).await)?;
    let Some((token_sha256, expires_at)) = row else { return Ok(None) };
    if expires_at <= app.clock.now_ms() {
        return Ok(None);
    }
    let Some(token) = app.config.admin.tokens.iter().find(|t| t.sha256 == token_sha256) else { return Ok(None) };
    Ok(Some(Staff {
        caller: Caller { name: token.name.clone(), role: token.role },
        form_token: mac(&app.config.h5.session_secret, &format!("admin-form:{id}")),
        id_hash,
    }))
}

/// The signed-in staff member, with the form (when one was posted) checked: else
/// [`Error::SignIn`], [`Error::ForeignForm`], or the database's failure.
pub(super) async fn signed_in(app: &AppState, headers: &HeaderMap, form_token: Option<&str>) -> Result<Staff, Error> {
    let s = staff(app, headers).await?.ok_or(Error::SignIn)?;
    if let Some(t) = form_token {
        let ok: bool = subtle::ConstantTimeEq::ct_eq(s.form_token.as_bytes(), t.as_bytes()).into();
        if !ok {
            return Err(Error::ForeignForm);
        }
    }
    Ok(s)
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = Error;

    /// The signed-in staff member of a page that posts nothing: [`signed_in`] without a form.
    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Staff, Error> {
        signed_in(app, &parts.headers, None).await
    }
}

/// A console form: it carries the form token of the session that loaded it.
pub(super) trait Posted {
    /// The form token the form was posted with.
    fn form_token(&self) -> &str;
}

/// A form (axum's [`Form`], refused as it refuses) posted by the signed-in staff member whose
/// session's token it carries ([`signed_in`] with the form).
pub(super) struct Signed<F>(pub Staff, pub F);

impl<F: DeserializeOwned + Posted + Send> FromRequest<AppState> for Signed<F> {
    type Rejection = Response;

    /// Reads the form, then checks the session and the form's token.
    async fn from_request(req: Request, app: &AppState) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let Form(f) = Form::<F>::from_request(req, app).await.map_err(IntoResponse::into_response)?;
        let s = signed_in(app, &headers, Some(f.form_token())).await.map_err(IntoResponse::into_response)?;
        Ok(Signed(s, f))
    }
}

/// A form read from its raw body (its checkbox lists are read from that, by
/// [`super::pickers::repeated`]), posted by the signed-in staff member whose session's token it
/// carries: the staff member, the form's single fields and the body. A body that is not such a
/// form is refused as axum's `Form` would (400).
pub(super) struct SignedRaw<F>(pub Staff, pub F, pub Bytes);

impl<F: DeserializeOwned + Posted + Send> FromRequest<AppState> for SignedRaw<F> {
    type Rejection = Response;

    /// Reads the body and its single fields, then checks the session and the form's token.
    async fn from_request(req: Request, app: &AppState) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let RawForm(raw) = RawForm::from_request(req, app).await.map_err(IntoResponse::into_response)?;
        let f: F = serde_urlencoded::from_bytes(&raw).map_err(|e| Error::from(Invalid::from(e)).into_response())?;
        let s = signed_in(app, &headers, Some(f.form_token())).await.map_err(IntoResponse::into_response)?;
        Ok(SignedRaw(s, f, raw))
    }
}

pub(super) async fn login_page(State(app): State<AppState>) -> Response {
    login_form(&app, StatusCode::OK, None)
}

/// The sign-in form with a fresh login token: a random value in a short-lived cookie and its MAC
/// in the form, so only a form this browser loaded from here signs in (a page elsewhere cannot
/// sign a victim's browser in to the attacker's account). Nothing is stored before sign-in.
fn login_form(app: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let nonce = random_hex::<16>();
    let login_token = login_token_for(app, &nonce);
    let c = cookies(app);
    let cookie = c.set(c.login, &nonce, LOGIN_TTL_SECS);
    let mut page = render(app, status, "login.html", context! { login_token, error });
    page.headers_mut().insert(SET_COOKIE, cookie.parse().expect("a valid header"));
    page
}

fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    crate::text::hex(&bytes)
}

/// The login token the sign-in form carries for the login cookie's `nonce`.
fn login_token_for(app: &AppState, nonce: &str) -> String {
    mac(&app.config.h5.session_secret, &format!("admin-login:{nonce}"))
}

/// Whether `login_token` is the MAC of this browser's (one) login cookie.
fn login_token_ok(app: &AppState, headers: &HeaderMap, login_token: &str) -> bool {
    let Some(nonce) = only_cookie(headers, cookies(app).login) else { return false };
    let expected = login_token_for(app, &nonce);
    subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), login_token.as_bytes()).into()
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: String,
    #[serde(default)]
    login_token: String,
}

/// Opens a session for a known token: a new id (a session the browser already had is ended,
/// so a sign-in never continues an id someone else may know).
pub(super) async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, Error> {
    if !login_token_ok(&app, &headers, &f.login_token) {
        tracing::warn!("console: sign-in form without this browser's login token");
        return Ok(login_form(
            &app,
            StatusCode::FORBIDDEN,
            Some("表单已过期，请重新登录 This form has expired; please sign in again."),
        ));
    }
    let token = f.token.trim();
    let known = (token.len() <= 256).then(|| authenticate(&app.config.admin.tokens, token)).flatten();
    let Some(known) = known else {
        tracing::warn!("console: sign-in with an unknown token");
        return Ok(login_form(&app, StatusCode::UNAUTHORIZED, Some("令牌无效 Unknown token.")));
    };
    let ttl = app.config.admin.session_ttl_secs;
    let id = random_hex::<32>();
    let now = app.clock.now_ms();
    let previous = staff(&app, &headers).await?.map(|s| s.id_hash).unwrap_or_default();
    open_session(&app.store, &previous, &hash_token(&id), &known.sha256, now, now + ttl as i64 * 1000).await?;
    tracing::info!(who = %known.name, "console: signed in");
    let c = cookies(&app);
    let mut resp = (StatusCode::SEE_OTHER, [(LOCATION, "/admin".to_owned()), (SET_COOKIE, c.set(c.session, &id, ttl))])
        .into_response();
    // The login token has done its job: its cookie goes.
    resp.headers_mut().append(SET_COOKIE, c.cleared(c.login).parse().expect("a valid header"));
    Ok(resp)
}

/// Stores a session (and ends the one it replaces) in one transaction.
async fn open_session(
    store: &crate::store::Store,
    previous: &str,
    id_hash: &str,
    token_sha256: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = store.begin().await?;
    crate::with_tx!(tx, conn => sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
        .bind(previous).execute(conn).await.map(|_| ()))?;
    crate::with_tx!(tx, conn => sqlx::query(
        "INSERT INTO console_sessions (id_hash, token_sha256, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(id_hash).bind(token_sha256).bind(now).bind(expires_at).execute(conn).await.map(|_| ()))?;
    tx.commit().await
}

/// Ends this session: its row is deleted, so the cookie, wherever a copy of it is, no longer
/// gets in. A logout without this session's form token (posted from elsewhere) is refused.
pub(super) async fn logout(
    State(app): State<AppState>,
    Signed(s, _): Signed<super::TokenOnly>,
) -> Result<Response, Error> {
    crate::with_pool!(&app.store, pool => sqlx::query(
        "DELETE FROM console_sessions WHERE id_hash = $1").bind(&s.id_hash).execute(pool).await.map(|_| ()))?;
    tracing::info!(who = %s.caller.name, "console: signed out");
    let c = cookies(&app);
    let to = [(LOCATION, "/admin/login".to_owned()), (SET_COOKIE, c.cleared(c.session))];
    Ok((StatusCode::SEE_OTHER, to).into_response())
}

/// Deletes at most `batch` sessions that have ended (the hourly sweep).
pub async fn purge_sessions(store: &crate::store::Store, now: i64, batch: i64) -> Result<u64, sqlx::Error> {
    crate::with_pool!(store, pool => sqlx::query(
        "DELETE FROM console_sessions WHERE id_hash IN \
         (SELECT id_hash FROM console_sessions WHERE expires_at <= $1 LIMIT $2)")
        .bind(now).bind(batch).execute(pool).await.map(|r| r.rows_affected()))
}
