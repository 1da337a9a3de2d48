//! `/h5/start` and `/h5/oauth/callback`: WeChat OAuth for the H5 pages (see [`super::session`]
//! for why nothing is stored before the callback and why each sign-in gets a new session).

use super::session::{self, OAuthState};
use crate::error::PageError;
use crate::http::page::see_other;
use crate::members::import::normalise_name;
use crate::state::AppState;
use crate::wechat::client::oauth::Scope;
use axum::extract::{Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Pages a chat link may lead to (anything else is refused: no open redirects).
const PAGES: &[&str] = &["card", "bind", "catalogue", "book", "history", "account"];

/// Where `/h5/start?to=…` may lead after sign-in: one of [`PAGES`], or `buy/<campaign id>`
/// optionally with `?p=<push id>` (the article link's landing, [`crate::shop::landing`]).
pub fn target(to: &str) -> Option<String> {
    let digits = |s: &str| (1..=18).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    let is_buy = to.strip_prefix("buy/").is_some_and(|rest| match rest.split_once("?p=") {
        Some((id, push)) => digits(id) && digits(push),
        None => digits(rest),
    });
    (PAGES.contains(&to) || is_buy).then(|| format!("/h5/{to}"))
}

#[derive(serde::Deserialize)]
pub struct StartQuery {
    to: Option<String>,
    /// `1`: ask for the follower's profile (`snsapi_userinfo`), to prefill the enrolment form.
    profile: Option<String>,
}

fn link_refused() -> PageError {
    PageError::refused(StatusCode::BAD_REQUEST, "链接无效 / Invalid link", "此链接无效。This link is not valid.")
}

fn expired() -> PageError {
    PageError::refused(
        StatusCode::BAD_REQUEST,
        "链接已过期 / Link expired",
        "链接已过期，请从对话中重新打开。This link has expired. Please open it again from the chat.",
    )
}

/// To WeChat's authorize page, with a fresh state in this browser's OAuth cookie.
pub async fn start(State(app): State<AppState>, Query(q): Query<StartQuery>) -> Result<Response, PageError> {
    let next = target(q.to.as_deref().unwrap_or("card")).ok_or_else(link_refused)?;
    let h5 = &app.config.h5;
    let oauth = OAuthState::new(next, app.clock.now_ms());
    let redirect_uri = format!("{}/h5/oauth/callback", h5.public_url.trim_end_matches('/'));
    let scope = if q.profile.as_deref() == Some("1") { Scope::UserInfo } else { Scope::Base };
    let url = app
        .client
        .oauth_authorize_url(&h5.oauth_base, &redirect_uri, scope, &oauth.state)
        .map_err(|e| PageError::Unavailable(e.to_string()))?;
    let cookie = super::cookies(&app).set_oauth(&h5.session_secret, &oauth);
    Ok((StatusCode::FOUND, [(LOCATION, url), (SET_COOKIE, cookie)]).into_response())
}

#[derive(serde::Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

/// Back from WeChat: the state must be this browser's, the code good; then a new session.
/// The OAuth cookie is spent whatever happens.
pub async fn callback(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, PageError> {
    let spent = HeaderValue::from_str(&super::cookies(&app).clear_oauth()).expect("a cookie is a header value");
    let mut response = signed_in(&app, &headers, q).await.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().append(SET_COOKIE, spent);
    Ok(response)
}

async fn signed_in(app: &AppState, headers: &HeaderMap, q: CallbackQuery) -> Result<Response, PageError> {
    let h5 = &app.config.h5;
    let (Some(code), Some(state)) = (q.code.filter(|c| !c.is_empty() && c.len() <= 128), q.state) else {
        return Err(expired());
    };
    let Some(oauth) = super::cookies(app).oauth_state(&h5.session_secret, headers, app.clock.now_ms()) else {
        return Err(expired());
    };
    if !session::same(&oauth.state, &state) {
        return Err(expired());
    }
    let token = match app.client.oauth_exchange(&code, &app.config.wechat.app_secret).await {
        Ok(t) => t,
        Err(e) if e.errcode().is_some() => {
            tracing::info!(error = %e, "h5: OAuth code refused");
            return Err(expired());
        }
        Err(e) => return Err(PageError::Unavailable(e.to_string())),
    };
    // With snsapi_userinfo granted, the nickname prefills the enrolment form; without it, fine.
    let nickname = if token.scope.contains("snsapi_userinfo") {
        match app.client.oauth_userinfo(&token).await {
            Ok(info) => normalise_name(&info.nickname).ok(),
            Err(e) => {
                tracing::info!(error = %e, "h5: userinfo unavailable");
                None
            }
        }
    } else {
        None
    };
    let jar = super::cookies(app);
    // Several session cookies (one planted on a narrower path): none is trusted, all expire.
    let shadowed = jar.session_cookies(headers) > 1;
    let previous = jar.session_id(&h5.session_secret, headers);
    let session =
        session::sign_in(&app.store, &token.openid, nickname.as_deref(), h5.session_ttl_secs, previous.as_deref())
            .await?;
    let cookie = jar.set_session(&h5.session_secret, &session.id, h5.session_ttl_secs);
    let mut response = see_other(&oauth.next);
    let headers = response.headers_mut();
    if shadowed {
        for clear in jar.clear_session_everywhere() {
            headers.append(SET_COOKIE, HeaderValue::from_str(&clear).expect("a cookie is a header value"));
        }
    }
    // Last, after the deletions: the browser applies them in order.
    headers.append(SET_COOKIE, HeaderValue::from_str(&cookie).expect("a cookie is a header value"));
    Ok(response)
}

/// `POST /h5/logout` (with the form token): ends the session and expires the cookie on every
/// path; a page says so (opening a page from the chat signs in again).
pub async fn logout(
    State(app): State<AppState>,
    super::Follower { session, .. }: super::Follower,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    #[derive(serde::Deserialize)]
    struct Logout {}
    let Logout {} = super::form(&app, &session, &body)?;
    session::end(&app.store, &session.id).await?;
    let mut response = PageError::refused(
        axum::http::StatusCode::OK,
        "已退出 / Signed out",
        "您已退出登录。从对话中打开页面即可再次登录。You are signed out; open a page from the chat to sign in again.",
    )
    .into_response();
    for clear in super::cookies(&app).clear_session_everywhere() {
        response.headers_mut().append(SET_COOKIE, HeaderValue::from_str(&clear).expect("a cookie is a header value"));
    }
    Ok(response)
}
