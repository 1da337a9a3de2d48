//! H5 pages followers open from the chat: the membership card, binding or enrolling, the
//! rewards catalogue, advisor bookings, their details and history. Server-rendered
//! (`templates/pages/*.html`, HTML-escaped), mobile-first, no JavaScript.
//!
//! * **Sign-in** ([`sign_in`], [`session`]): every chat link goes to `/h5/start?to=<page>`,
//!   which starts WeChat's OAuth; the callback exchanges the code server-side and opens a new
//!   session. The [`Follower`] and [`Member`] extractors send a browser without one through it.
//! * **Forms** that change something carry the session's form token (a cross-site post cannot
//!   know it) and a one-time submission key ([`submission`]): posted twice, they take effect
//!   once. Spending points or booking a slot has a confirmation step first; every result is a
//!   page of its own (POST, redirect, GET), with a banner saying what happened.
//! * **Rooms**: [`card`] (card, bind, enrol, unbind), [`rewards`] (catalogue, redeem),
//!   [`booking`], [`account`] (details, history). The shop's article landing
//!   (`/h5/buy/{id}`, [`crate::shop::landing`]) signs in the same way (`to=buy/<id>`).
//! * **Images** for the chat ([`assets`]): the balance card's shipped cover, outside the page
//!   layer (no page headers, cached).

pub mod account;
pub mod assets;
pub mod booking;
pub mod card;
pub mod rewards;
pub mod session;
pub mod sign_in;
pub mod submission;

use crate::error::PageError;
use crate::http::page::Renderer;
use crate::state::AppState;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use session::Session;

/// The templates the pages need; start-up fails without one.
pub const PAGES: &[&str] = &[
    "card.html",
    "bind.html",
    "message.html",
    "catalogue.html",
    "redeem_confirm.html",
    "book.html",
    "book_confirm.html",
    "cancel_confirm.html",
    "history.html",
    "account.html",
    "sold_out.html",
];

pub fn router(renderer: Renderer) -> Router<AppState> {
    Router::new()
        .route("/h5/start", get(sign_in::start))
        .route("/h5/oauth/callback", get(sign_in::callback))
        .route("/h5/card", get(card::card))
        .route("/h5/bind", get(card::bind_page).post(card::bind))
        .route("/h5/enrol", post(card::enrol))
        .route("/h5/unbind", post(card::unbind))
        .route("/h5/catalogue", get(rewards::catalogue))
        .route("/h5/redeem", get(rewards::confirm).post(rewards::redeem))
        .route("/h5/book", get(booking::book_page).post(booking::book))
        .route("/h5/book/confirm", get(booking::confirm))
        .route("/h5/booking/cancel", get(booking::cancel_confirm).post(booking::cancel))
        .route("/h5/history", get(account::history))
        .route("/h5/account", get(account::account_page).post(account::account))
        .route("/h5/logout", post(sign_in::logout))
        .layer(axum::middleware::map_response_with_state(renderer, crate::http::page::render))
        .route(crate::bot::handlers::BALANCE_COVER_PATH, get(assets::balance_cover))
}

/// The H5 page a sign-in started from `path` comes back to: the page itself, or for a form's
/// target the page the form was on.
fn return_page(path: &str) -> String {
    let page = path.trim_start_matches("/h5/");
    let page = match page {
        "enrol" => "bind",
        "unbind" => "card",
        "redeem" => "catalogue",
        "book/confirm" | "booking/cancel" => "book",
        p => p,
    };
    if sign_in::target(page).is_some() { page.to_owned() } else { "card".to_owned() }
}

/// The signed-in follower: their session and openid. Without a live session, the browser is
/// sent through OAuth and back to the page it asked for.
pub struct Follower {
    pub session: Session,
    pub openid: String,
}

impl FromRequestParts<AppState> for Follower {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Follower, PageError> {
        follower(app, &parts.headers, &return_page(parts.uri.path())).await
    }
}

/// The signed-in follower of a request, or the sign-in that comes back to `page`.
pub async fn follower(app: &AppState, headers: &axum::http::HeaderMap, page: &str) -> Result<Follower, PageError> {
    let to_sign_in = || PageError::SignIn(format!("/h5/start?to={page}"));
    let jar = cookies(app);
    if jar.session_cookies(headers) > 1 {
        let set_cookies = jar.clear_session_everywhere();
        return Err(PageError::SignInAgain { to: format!("/h5/start?to={page}"), set_cookies });
    }
    let Some(id) = jar.session_id(&app.config.h5.session_secret, headers) else { return Err(to_sign_in()) };
    match session::load(&app.store, &id).await? {
        Some(session) => Ok(Follower { openid: session.openid.clone(), session }),
        None => Err(to_sign_in()),
    }
}

/// The signed-in follower's membership; without a bound card, to the bind page.
pub struct Member {
    pub session: Session,
    pub openid: String,
    pub member: crate::members::Member,
}

impl FromRequestParts<AppState> for Member {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Member, PageError> {
        let Follower { session, openid } = Follower::from_request_parts(parts, app).await?;
        match crate::members::by_openid(&app.store, &openid).await? {
            Some(member) => Ok(Member { session, openid, member }),
            None => Err(PageError::Redirect("/h5/bind".into())),
        }
    }
}

/// A posted form, its token checked against the session (a form from another site or another
/// sign-in is refused), parsed into `T` (an unreadable body is a 400 page).
pub fn form<T: serde::de::DeserializeOwned>(app: &AppState, session: &Session, body: &[u8]) -> Result<T, PageError> {
    #[derive(serde::Deserialize)]
    struct Token {
        #[serde(default)]
        token: String,
    }
    let bad = || {
        PageError::refused(
            StatusCode::BAD_REQUEST,
            "请求无效 / Invalid request",
            "请从对话中重新打开页面。Please open the page again from the chat.",
        )
    };
    let Token { token } = serde_urlencoded_from(body).map_err(|_| bad())?;
    if !session::form_token_ok(&app.config.h5.session_secret, &session.id, &token) {
        return Err(PageError::foreign_form());
    }
    serde_urlencoded_from(body).map_err(|_| bad())
}

fn serde_urlencoded_from<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, serde_urlencoded::de::Error> {
    serde_urlencoded::from_bytes(body)
}

/// The form token, and `once()`, which gives each form on the page a fresh submission key.
pub fn form_fields(app: &AppState, session: &Session) -> minijinja::Value {
    minijinja::context! {
        token => session::form_token(&app.config.h5.session_secret, &session.id),
        once => minijinja::Value::from_function(submission::new_key),
    }
}

/// A posted submission key, or the refusal of a form without a good one.
pub fn once(key: &str) -> Result<&str, PageError> {
    if submission::well_formed(key) {
        Ok(key)
    } else {
        Err(PageError::refused(
            StatusCode::BAD_REQUEST,
            "页面已过期 / Page expired",
            "请重新打开页面再提交。Please open the page again and resubmit.",
        ))
    }
}

/// Runs one form's change exactly once: claims `key` in a transaction, runs `change` in it,
/// records the result URL it returns and commits; a repeat of the key goes to the first
/// post's result. A refusal rolls everything back and is returned as it is.
pub async fn once_only<E>(
    app: &AppState,
    session: &Session,
    key: &str,
    change: impl AsyncFnOnce(&mut crate::store::Tx) -> Result<String, E>,
) -> Result<Result<String, E>, PageError> {
    let key = once(key)?;
    let mut tx = app.store.begin().await?;
    match submission::claim(&mut tx, key, &session.id).await? {
        submission::Claim::Fresh => {}
        submission::Claim::Done(result) => return Ok(Ok(result)),
        submission::Claim::Foreign => return Err(PageError::foreign_form()),
    }
    match change(&mut tx).await {
        Ok(result) => {
            submission::complete(&mut tx, key, &result).await?;
            tx.commit().await?;
            app.outbox_wake.notify_one();
            Ok(Ok(result))
        }
        Err(refused) => Ok(Err(refused)),
    }
}

/// The H5 cookies' names and attributes for this deployment (`__Host-` on https).
pub fn cookies(app: &AppState) -> session::Cookies {
    session::Cookies::for_public_url(&app.config.h5.public_url)
}

/// The card number as a QR code (inline SVG) for the store's scanner at the till.
pub fn card_qr(card_no: &str) -> Option<String> {
    let code = qrcode::QrCode::new(card_no.as_bytes()).ok()?;
    let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(160, 160).quiet_zone(true).build();
    // Inline in HTML: the SVG element without its XML declaration.
    svg.find("<svg").map(|at| svg[at..].to_owned())
}
