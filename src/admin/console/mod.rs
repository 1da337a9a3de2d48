//! The marketing console at `/admin`: server-rendered pages over the same campaign functions
//! the API uses. Sign in with an admin token; create a campaign and write its article with a
//! live preview; schedule pushes; preview to test followers; the schedule as a timeline with
//! each push's delivery figures.
//!
//! Sign-in sets `wxoa_admin` = `<expiry>.<token sha256>.<hmac>` (HMAC-SHA256 under
//! `h5.session_secret`), HttpOnly, SameSite=Strict, Path=/admin: removing the token from config
//! ends its sessions, signing out ends this one (its signature goes into `console_signouts` until
//! it would have expired, so a copy of the cookie is refused too). Every form carries a token
//! derived from the cookie, so a form posted from another site is refused even where SameSite is
//! not honoured; the sign-in form carries a login token bound to a cookie of its own, so another
//! site cannot sign a browser in either.

mod articles;
mod audiences;
mod campaigns;
mod charts;
mod editor;
mod figures;
mod images;
mod pickers;
mod pushes;
mod replies;

use super::{Caller, authenticate};
use crate::h5::session::{mac, named_cookie};
use crate::state::AppState;
use axum::Router;
use axum::extract::{Form, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::context;
use serde::Deserialize;

const COOKIE: &str = "wxoa_admin";
/// The sign-in form's cookie (a random value the form's `login_token` is the MAC of).
const LOGIN_COOKIE: &str = "wxoa_admin_login";
/// How long a sign-in form stays usable.
const LOGIN_TTL_SECS: u64 = 3600;

pub fn router(pages: crate::http::page::Renderer) -> Router<AppState> {
    Router::new()
        .route("/admin", get(campaigns::dashboard))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/campaigns/new", get(campaigns::new_campaign))
        // An article's content may be 20,000 characters: URL-encoded Chinese, 180 KB.
        .route("/admin/campaigns", post(campaigns::create_campaign).layer(article_limit()))
        .route(
            "/admin/campaigns/{id}",
            get(campaigns::show_campaign).post(campaigns::update_campaign).layer(article_limit()),
        )
        .route(
            "/admin/campaigns/{id}/articles",
            get(articles::new_article).post(articles::add_article).layer(article_limit()),
        )
        .route(
            "/admin/campaigns/{id}/articles/{n}",
            get(articles::show_article).post(articles::update_article).layer(article_limit()),
        )
        .route("/admin/campaigns/{id}/articles/{n}/remove", post(articles::remove_article))
        .route("/admin/campaigns/{id}/pushes", post(campaigns::schedule_push))
        .route("/admin/campaigns/{id}/preview", post(campaigns::preview))
        .route("/admin/pushes/{id}", get(pushes::show))
        .route("/admin/pushes/{id}/reschedule", post(pushes::reschedule))
        .route("/admin/pushes/{id}/cancel", get(pushes::confirm_cancel).post(pushes::cancel))
        .route("/admin/replies", get(replies::list).post(replies::create))
        .route("/admin/replies/preview", post(replies::preview))
        .route("/admin/replies/{id}", get(replies::show).post(replies::update))
        .route("/admin/segments", get(audiences::segments).post(audiences::create))
        .route("/admin/segments/count", post(audiences::count))
        .route("/admin/segments/{id}/sync", post(audiences::start_sync))
        .route("/admin/followers", get(audiences::followers))
        .route("/admin/followers/{id}", get(audiences::follower))
        .route("/admin/images", post(images::upload).layer(images::limit()))
        .route("/admin/console.js", get(script))
        .route("/admin/editor.js", get(editor::editor_js))
        .route("/admin/vendor/quill-2.0.3.js", get(editor::quill_js))
        .route("/admin/vendor/quill-2.0.3.snow.css", get(editor::quill_css))
        .layer(axum::middleware::map_response_with_state(pages, crate::http::page::render))
}

fn article_limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(crate::campaigns::MAX_BODY)
}

/// The console's script (the live article preview), served from the binary: pages carry no
/// inline script, so their Content Security Policy can forbid it.
async fn script() -> Response {
    let headers = [
        (axum::http::header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
        (axum::http::header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, include_str!("../console.js")).into_response()
}

/// A signed-in member of staff, and the form token their pages carry.
struct Staff {
    /// Who it is, with their role.
    caller: Caller,
    /// The token each of their forms must carry.
    form_token: String,
    /// The cookie's signature: what signing out records.
    sig: String,
    /// When the cookie expires (unix ms): how long that record is needed.
    expires_at: i64,
}

/// The staff member the console cookie names, unless it is forged, expired, its token gone from
/// the config, or it was signed out.
async fn staff(app: &AppState, headers: &HeaderMap) -> Option<Staff> {
    let s = cookie_staff(app, headers)?;
    let signed_out: Result<Option<i64>, sqlx::Error> = crate::with_pool!(&app.store, pool =>
        sqlx::query_scalar("SELECT expires_at FROM console_signouts WHERE sig = $1")
            .bind(&s.sig).fetch_optional(pool).await);
    match signed_out {
        Ok(None) => Some(s),
        Ok(Some(_)) => None,
        Err(e) => {
            // Fail closed: a session that cannot be checked is not let in.
            tracing::warn!(error = %e, "console: could not check the session");
            None
        }
    }
}

fn cookie_staff(app: &AppState, headers: &HeaderMap) -> Option<Staff> {
    let secret = &app.config.h5.session_secret;
    let value = named_cookie(headers, COOKIE)?;
    let (body, sig) = value.rsplit_once('.')?;
    let good: bool =
        subtle::ConstantTimeEq::ct_eq(mac(secret, &format!("admin:{body}")).as_bytes(), sig.as_bytes()).into();
    let (expiry, hash) = body.split_once('.')?;
    let expires_at = expiry.parse::<i64>().ok()?;
    if !good || expires_at < app.clock.now_ms() {
        return None;
    }
    let token = app.config.admin.tokens.iter().find(|t| t.sha256 == hash)?;
    Some(Staff {
        caller: Caller { name: token.name.clone(), role: token.role },
        form_token: mac(secret, &format!("admin-form:{sig}")),
        sig: sig.to_owned(),
        expires_at,
    })
}

fn render(_: &AppState, status: StatusCode, page: &'static str, ctx: minijinja::Value) -> Response {
    crate::http::page::Page::new(page, ctx).with_status(status).into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response()
}

fn to_login() -> Response {
    redirect("/admin/login")
}

fn failure(app: &AppState, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console: database or API failure");
    render(
        app,
        StatusCode::SERVICE_UNAVAILABLE,
        "login.html",
        context! { error => "系统出错，请稍后再试 Something went wrong on our side; please try again." },
    )
}

/// What a redirect after a form says happened: a fixed code (`?done=saved`), which each page
/// turns into its own words, so a link cannot put words of its own on the page.
#[derive(Deserialize)]
struct Notice {
    #[serde(default)]
    done: Option<String>,
}

impl Notice {
    /// The words `texts` gives the code; none for a code it does not know.
    fn text(&self, texts: &[(&str, &str)]) -> Option<String> {
        let done = self.done.as_deref()?;
        texts.iter().find(|(code, _)| *code == done).map(|(_, text)| (*text).to_owned())
    }
}

/// A form that carries nothing but this session's form token (a button).
#[derive(Deserialize)]
struct TokenOnly {
    form_token: String,
}

/// Why a console request is turned away.
enum Refused {
    /// Not signed in (or the sign-in expired): to the login page.
    SignIn,
    /// A form without this session's token: posted from elsewhere.
    ForeignForm,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::SignIn => to_login(),
            Refused::ForeignForm => {
                (StatusCode::FORBIDDEN, "表单无效，请刷新页面 invalid form; reload the page").into_response()
            }
        }
    }
}

/// The signed-in staff member, with the form (when one was posted) checked.
async fn signed_in(app: &AppState, headers: &HeaderMap, form_token: Option<&str>) -> Result<Staff, Refused> {
    let s = staff(app, headers).await.ok_or(Refused::SignIn)?;
    if let Some(t) = form_token {
        let ok: bool = subtle::ConstantTimeEq::ct_eq(s.form_token.as_bytes(), t.as_bytes()).into();
        if !ok {
            return Err(Refused::ForeignForm);
        }
    }
    Ok(s)
}

async fn login_page(State(app): State<AppState>) -> Response {
    login_form(&app, StatusCode::OK, None)
}

/// The sign-in form with a fresh login token: a random value in a short-lived cookie and its MAC
/// in the form, so only a form this browser loaded from here signs in (a page elsewhere cannot
/// sign a victim's browser in to the attacker's account). Nothing is stored on the server.
fn login_form(app: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let mut nonce = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut nonce);
    let nonce = crate::text::hex(&nonce);
    let login_token = login_token_for(app, &nonce);
    let cookie = cookie(app, LOGIN_COOKIE, &nonce, LOGIN_TTL_SECS);
    let mut page = render(app, status, "login.html", context! { login_token, error });
    page.headers_mut().insert(SET_COOKIE, cookie.parse().expect("a valid header"));
    page
}

/// The login token the sign-in form carries for the login cookie's `nonce`.
fn login_token_for(app: &AppState, nonce: &str) -> String {
    mac(&app.config.h5.session_secret, &format!("admin-login:{nonce}"))
}

/// A console cookie (`Path=/admin`, HttpOnly, SameSite=Strict; Secure behind https).
fn cookie(app: &AppState, name: &str, value: &str, max_age_secs: u64) -> String {
    let secure = if app.config.h5.public_url.starts_with("https://") { "; Secure" } else { "" };
    format!("{name}={value}; Path=/admin; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict{secure}")
}

/// The console cookie `name`, deleted.
fn cleared(name: &str) -> String {
    format!("{name}=; Path=/admin; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// Whether `login_token` is the MAC of this browser's login cookie.
fn login_token_ok(app: &AppState, headers: &HeaderMap, login_token: &str) -> bool {
    let Some(nonce) = named_cookie(headers, LOGIN_COOKIE) else { return false };
    let expected = login_token_for(app, &nonce);
    subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), login_token.as_bytes()).into()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    login_token: String,
}

async fn login(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    if !login_token_ok(&app, &headers, &f.login_token) {
        tracing::warn!("console: sign-in form without this browser's login token");
        return login_form(
            &app,
            StatusCode::FORBIDDEN,
            Some("表单已过期，请重新登录 This form has expired; please sign in again."),
        );
    }
    let token = f.token.trim();
    let known = (token.len() <= 256).then(|| authenticate(&app.config.admin.tokens, token)).flatten();
    let Some(known) = known else {
        tracing::warn!("console: sign-in with an unknown token");
        return login_form(&app, StatusCode::UNAUTHORIZED, Some("令牌无效 Unknown token."));
    };
    let ttl = app.config.admin.session_ttl_secs;
    let body = format!("{}.{}", app.clock.now_ms() + ttl as i64 * 1000, known.sha256);
    let sig = mac(&app.config.h5.session_secret, &format!("admin:{body}"));
    let cookie = cookie(&app, COOKIE, &format!("{body}.{sig}"), ttl);
    tracing::info!(who = %known.name, "console: signed in");
    // The login token has done its job: its cookie goes.
    let spent = cleared(LOGIN_COOKIE);
    let mut resp = (StatusCode::SEE_OTHER, [(LOCATION, "/admin".to_owned()), (SET_COOKIE, cookie)]).into_response();
    resp.headers_mut().append(SET_COOKIE, spent.parse().expect("a valid header"));
    resp
}

/// Signs this session out for good: its signature is recorded (until it would have expired) so
/// the same cookie, wherever a copy of it is, no longer gets in. A logout without this
/// session's form token (posted from elsewhere) is refused.
async fn logout(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<TokenOnly>) -> Response {
    let s = match signed_in(&app, &headers, Some(&f.form_token)).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let recorded = crate::with_pool!(&app.store, pool => sqlx::query(
        "INSERT INTO console_signouts (sig, expires_at) VALUES ($1, $2) ON CONFLICT (sig) DO NOTHING")
        .bind(&s.sig).bind(s.expires_at).execute(pool).await.map(|_| ()));
    if let Err(e) = recorded {
        return failure(&app, e);
    }
    tracing::info!(who = %s.caller.name, "console: signed out");
    (StatusCode::SEE_OTHER, [(LOCATION, "/admin/login".to_owned()), (SET_COOKIE, cleared(COOKIE))]).into_response()
}

/// Deletes at most `batch` sign-out records whose cookies have expired anyway (the hourly sweep).
pub async fn purge_signouts(store: &crate::store::Store, now: i64, batch: i64) -> Result<u64, sqlx::Error> {
    crate::with_pool!(store, pool => sqlx::query(
        "DELETE FROM console_signouts WHERE sig IN (SELECT sig FROM console_signouts WHERE expires_at <= $1 LIMIT $2)")
        .bind(now).bind(batch).execute(pool).await.map(|r| r.rows_affected()))
}
