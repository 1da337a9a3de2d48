//! H5 pages followers open from the chat: the membership card, binding an existing card, enrolling.
//! Server-rendered (templates/pages/*.html, HTML-escaped), mobile-first, no JavaScript needed.
//!
//! Every link from the chat goes to `/h5/start?to=<page>`, which starts WeChat's OAuth
//! (`snsapi_base`) with a state bound to this browser's session; the callback exchanges the code
//! server-side and stores the openid in the session. Forms carry a token derived from the session
//! (CSRF); binding attempts are limited and lock after repeated failures. The shop's article
//! landing (`/h5/buy/{id}`, [`crate::shop::landing`]) signs in the same way (`to=buy/<id>`).

pub mod session;

use crate::app::AppState;
use crate::members::ledger::day as date;
use crate::members::{
    self,
    import::{normalise_birthday, normalise_card, normalise_name, normalise_phone},
};
use crate::store::now_ms;
use crate::with_pool;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::context;
use session::Session;

/// Pages a chat link may lead to (anything else is refused: no open redirects).
const PAGES: &[&str] = &["card", "bind", "catalogue", "book", "history", "account"];
/// History entries per page.
const HISTORY_PAGE: i64 = 10;
/// Failed binding attempts before the lockout, and its length.
const MAX_FAILURES: i64 = 5;
const LOCKOUT_MS: i64 = 30 * 60 * 1000;

/// Where `/h5/start?to=…` may lead after sign-in: one of [`PAGES`], or `buy/<campaign id>`
/// (the article link's landing, [`crate::shop::landing`]).
fn sign_in_target(to: &str) -> Option<String> {
    let is_buy = to
        .strip_prefix("buy/")
        .is_some_and(|id| (1..=18).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit()));
    (PAGES.contains(&to) || is_buy).then(|| format!("/h5/{to}"))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/h5/start", get(start))
        .route("/h5/oauth/callback", get(callback))
        .route("/h5/card", get(card))
        .route("/h5/bind", get(bind_page).post(bind))
        .route("/h5/enrol", post(enrol))
        .route("/h5/unbind", post(unbind))
        .route("/h5/catalogue", get(catalogue))
        .route("/h5/redeem", post(redeem))
        .route("/h5/book", get(book_page).post(book))
        .route("/h5/booking/cancel", post(cancel_booking))
        .route("/h5/history", get(history_page))
        .route("/h5/account", get(account_page).post(account))
}

/// Page templates, loaded once at start.
pub struct Pages(minijinja::Environment<'static>);

impl Pages {
    pub fn load(dir: &std::path::Path) -> Result<Pages, String> {
        Self::load_with(
            dir,
            &[
                "card.html",
                "bind.html",
                "message.html",
                "catalogue.html",
                "book.html",
                "history.html",
                "account.html",
                "sold_out.html",
            ],
        )
    }

    /// Every `*.html` in `dir`, refusing to start without the `required` ones.
    pub fn load_with(dir: &std::path::Path, required: &[&str]) -> Result<Pages, String> {
        let mut env = minijinja::Environment::new();
        let entries = std::fs::read_dir(dir).map_err(|e| format!("pages: cannot read {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| format!("pages: {e}"))?.path();
            if path.extension().is_some_and(|e| e == "html") {
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                let source = std::fs::read_to_string(&path).map_err(|e| format!("pages: {}: {e}", path.display()))?;
                env.add_template_owned(name.clone(), source).map_err(|e| format!("pages: {name}: {e}"))?;
            }
        }
        for required in required {
            env.get_template(required).map_err(|_| format!("pages: {required} missing in {}", dir.display()))?;
        }
        Ok(Pages(env))
    }

    pub fn render(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        match self.0.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
            Err(e) => {
                tracing::error!(page = name, error = %e, "page failed to render");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
            }
        }
    }
}

pub(crate) fn message(app: &AppState, status: StatusCode, title: &str, text: &str) -> Response {
    app.pages.render(status, "message.html", context! { title, text })
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response()
}

pub(crate) fn unavailable(app: &AppState, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "h5: database or API failure");
    message(
        app,
        StatusCode::SERVICE_UNAVAILABLE,
        "请稍后再试 / Please try again",
        "Something went wrong on our side. Please try again in a moment.",
    )
}

/// The browser's session, if its cookie is good and the session alive.
async fn current(app: &AppState, headers: &HeaderMap) -> Result<Option<Session>, sqlx::Error> {
    let Some(id) = session::cookie_value(headers).and_then(|v| session::verify(&app.config.h5.session_secret, &v))
    else {
        return Ok(None);
    };
    session::load(&app.store, &id).await
}

/// The refusal of a form posted without this session's token (a cross-site post cannot know it).
fn foreign_form(app: &AppState, session: &Session, token: &str) -> Option<Response> {
    (!session::form_token_ok(&app.config.h5.session_secret, &session.id, token)).then(|| {
        message(app, StatusCode::FORBIDDEN, "请求无效 / Invalid request", "Please open the page again from the chat.")
    })
}

/// The session's openid, or a response sending the browser through OAuth back to `page`.
pub(crate) async fn follower(app: &AppState, headers: &HeaderMap, page: &str) -> Result<(Session, String), Response> {
    match current(app, headers).await {
        Ok(Some(s)) => match s.openid.clone() {
            Some(openid) => Ok((s, openid)),
            None => Err(redirect(&format!("/h5/start?to={page}"))),
        },
        Ok(None) => Err(redirect(&format!("/h5/start?to={page}"))),
        Err(e) => Err(unavailable(app, e)),
    }
}

#[derive(serde::Deserialize)]
struct StartQuery {
    to: Option<String>,
    /// `1`: ask for the follower's profile (`snsapi_userinfo`), to prefill the enrolment form.
    profile: Option<String>,
}

async fn start(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<StartQuery>) -> Response {
    let Some(next) = sign_in_target(q.to.as_deref().unwrap_or("card")) else {
        return message(&app, StatusCode::BAD_REQUEST, "链接无效 / Invalid link", "This link is not valid.");
    };
    let h5 = &app.config.h5;
    let result = async {
        let session = match current(&app, &headers).await? {
            Some(s) => s,
            None => session::create(&app.store, h5.session_ttl_secs).await?,
        };
        let state = session::new_state(&app.store, &session, &next).await?;
        Ok::<_, sqlx::Error>((session, state))
    }
    .await;
    let (session, state) = match result {
        Ok(v) => v,
        Err(e) => return unavailable(&app, e),
    };
    let redirect_uri = format!("{}/h5/oauth/callback", h5.public_url.trim_end_matches('/'));
    let scope = match q.profile.as_deref() {
        Some("1") => crate::wechat::client::oauth::Scope::UserInfo,
        _ => crate::wechat::client::oauth::Scope::Base,
    };
    let url = match app.client.oauth_authorize_url(&h5.oauth_base, &redirect_uri, scope, &state) {
        Ok(url) => url,
        Err(e) => return unavailable(&app, e),
    };
    let cookie = session::set_cookie(
        &h5.session_secret,
        &session.id,
        h5.public_url.starts_with("https://"),
        h5.session_ttl_secs,
    );
    (StatusCode::FOUND, [(LOCATION, url), (SET_COOKIE, cookie)]).into_response()
}

#[derive(serde::Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

async fn callback(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<CallbackQuery>) -> Response {
    let expired = || {
        message(
            &app,
            StatusCode::BAD_REQUEST,
            "链接已过期 / Link expired",
            "This link has expired. Please open it again from the chat.",
        )
    };
    let (Some(code), Some(state)) = (q.code.filter(|c| !c.is_empty() && c.len() <= 128), q.state) else {
        return expired();
    };
    let session = match current(&app, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return expired(),
        Err(e) => return unavailable(&app, e),
    };
    let next = match session::spend_state(&app.store, &session, &state).await {
        Ok(Some(next)) => next,
        Ok(None) => return expired(),
        Err(e) => return unavailable(&app, e),
    };
    let token = match app.client.oauth_exchange(&code, &app.config.wechat.app_secret).await {
        Ok(t) => t,
        Err(e) if e.errcode().is_some() => {
            tracing::info!(error = %e, "h5: OAuth code refused");
            return expired();
        }
        Err(e) => return unavailable(&app, e),
    };
    // With snsapi_userinfo granted, the nickname prefills the enrolment form; without it, fine.
    let nickname = if token.scope.contains("snsapi_userinfo") {
        match app.client.oauth_userinfo(&token).await {
            Ok(info) => normalise_name(&info.nickname),
            Err(e) => {
                tracing::info!(error = %e, "h5: userinfo unavailable");
                None
            }
        }
    } else {
        None
    };
    if let Err(e) = session::set_openid(&app.store, &session, &token.openid, nickname.as_deref()).await {
        return unavailable(&app, e);
    }
    redirect(&next)
}

/// The card number as a QR code (inline SVG) for the store's scanner at the till.
fn card_qr(card_no: &str) -> Option<String> {
    let code = qrcode::QrCode::new(card_no.as_bytes()).ok()?;
    let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(160, 160).quiet_zone(true).build();
    // Inline in HTML: the SVG element without its XML declaration.
    svg.find("<svg").map(|at| svg[at..].to_owned())
}

async fn card(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let (session, openid) = match follower(&app, &headers, "card").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let member = match members::by_openid(&app.store, &openid).await {
        Ok(Some(m)) => m,
        Ok(None) => return redirect("/h5/bind"),
        Err(e) => return unavailable(&app, e),
    };
    let now = now_ms();
    let (balance, history) = match tokio::try_join!(
        members::ledger::balance(&app.store, member.id, now),
        members::ledger::history(&app.store, member.id, 10, 0)
    ) {
        Ok(v) => v,
        Err(e) => return unavailable(&app, e),
    };
    let expiring: Vec<_> = balance.expiring.iter().map(|(p, at)| context! { points => p, date => date(*at) }).collect();
    let history: Vec<_> = history
        .iter()
        .map(|t| context! { date => date(t.created_at), kind => t.kind, points => t.points, note => t.note })
        .collect();
    app.pages.render(
        StatusCode::OK,
        "card.html",
        context! {
            qr => member.card_no.as_deref().and_then(card_qr).map(minijinja::Value::from_safe_string),
            name => member.name, card_no => member.card_no, tier => member.tier, points => balance.points,
            expiring, history, token => session::form_token(&app.config.h5.session_secret, &session.id),
        },
    )
}

async fn bind_page(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let (session, openid) = match follower(&app, &headers, "bind").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match members::by_openid(&app.store, &openid).await {
        Ok(Some(_)) => redirect("/h5/card"),
        Ok(None) => bind_form(&app, &session, StatusCode::OK, None, None),
        Err(e) => unavailable(&app, e),
    }
}

fn bind_form(
    app: &AppState,
    session: &Session,
    status: StatusCode,
    bind_error: Option<&str>,
    enrol_error: Option<&str>,
) -> Response {
    let token = session::form_token(&app.config.h5.session_secret, &session.id);
    app.pages.render(status, "bind.html", context! { token, bind_error, enrol_error, nickname => session.nickname })
}

#[derive(serde::Deserialize)]
struct BindForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    card_no: String,
    #[serde(default)]
    phone: String,
}

async fn bind(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<BindForm>) -> Response {
    let (session, openid) = match follower(&app, &headers, "bind").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(r) = foreign_form(&app, &session, &f.token) {
        return r;
    }
    match try_bind(&app, &openid, &f).await {
        Ok(Ok(())) => redirect("/h5/card"),
        Ok(Err((status, why))) => bind_form(&app, &session, status, Some(&why), None),
        Err(e) => unavailable(&app, e),
    }
}

type Refusal = (StatusCode, String);

async fn try_bind(app: &AppState, openid: &str, f: &BindForm) -> Result<Result<(), Refusal>, sqlx::Error> {
    let store = &app.store;
    let now = now_ms();
    let locked: Option<i64> = with_pool!(store, pool => sqlx::query_scalar(
        "SELECT locked_until FROM bind_attempts WHERE openid = $1 AND locked_until > $2").bind(openid).bind(now).fetch_optional(pool).await)?;
    if let Some(until) = locked {
        let mins = (until - now + 59_999) / 60_000;
        return Ok(Err((
            StatusCode::TOO_MANY_REQUESTS,
            format!("尝试次数过多，请 {mins} 分钟后再试。Too many attempts: try again in {mins} minutes."),
        )));
    }
    if members::by_openid(store, openid).await?.is_some() {
        return Ok(Err((
            StatusCode::CONFLICT,
            "您已绑定会员卡，请先解绑。You already have a card bound; unbind it first.".into(),
        )));
    }
    let (Some(card), Some(phone)) = (normalise_card(&f.card_no), normalise_phone(&f.phone)) else {
        return Ok(Err((
            StatusCode::BAD_REQUEST,
            "请填写卡号和手机号。Please enter your card number and mobile number.".into(),
        )));
    };
    let found: Option<(i64, Option<String>, Option<String>)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, phone, openid FROM members WHERE card_no = $1").bind(&card).fetch_optional(pool).await)?;
    let member = match found {
        Some((id, Some(p), bound)) if p == phone => (id, bound),
        _ => {
            // Same answer for "no such card" and "wrong phone": no probing for card numbers.
            let failures: i64 = with_pool!(store, pool => sqlx::query_scalar(
                "INSERT INTO bind_attempts (openid, failures, locked_until) VALUES ($1, 1, 0) \
                 ON CONFLICT (openid) DO UPDATE SET failures = bind_attempts.failures + 1 RETURNING failures")
                .bind(openid).fetch_one(pool).await)?;
            if failures >= MAX_FAILURES {
                with_pool!(store, pool => sqlx::query("UPDATE bind_attempts SET failures = 0, locked_until = $2 WHERE openid = $1")
                    .bind(openid).bind(now + LOCKOUT_MS).execute(pool).await.map(|_| ()))?;
            }
            return Ok(Err((
                StatusCode::BAD_REQUEST,
                "卡号或手机号不正确。The card number or mobile number does not match.".into(),
            )));
        }
    };
    if member.1.as_deref().is_some_and(|b| b != openid) {
        return Ok(Err((
            StatusCode::CONFLICT,
            "此卡已绑定其他微信账号，请到门店处理。This card is bound to another WeChat account; please visit a store."
                .into(),
        )));
    }
    let bound = with_pool!(store, pool => sqlx::query("UPDATE members SET openid = $2, updated_at = $3 WHERE id = $1 AND openid IS NULL")
        .bind(member.0).bind(openid).bind(now).execute(pool).await.map(|r| r.rows_affected() == 1))?;
    if !bound {
        return Ok(Err((StatusCode::CONFLICT, "此卡已绑定其他微信账号。This card is already bound.".into())));
    }
    with_pool!(store, pool => sqlx::query("DELETE FROM bind_attempts WHERE openid = $1").bind(openid).execute(pool).await.map(|_| ()))?;
    Ok(Ok(()))
}

#[derive(serde::Deserialize)]
struct EnrolForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    birthday: String,
}

async fn enrol(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<EnrolForm>) -> Response {
    let (session, openid) = match follower(&app, &headers, "bind").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(r) = foreign_form(&app, &session, &f.token) {
        return r;
    }
    let refuse = |why: &str| bind_form(&app, &session, StatusCode::BAD_REQUEST, None, Some(why));
    let Some(name) = normalise_name(&f.name) else { return refuse("请填写姓名。Please enter your name.") };
    let Some(phone) = normalise_phone(&f.phone) else {
        return refuse("请填写有效的手机号。Please enter a valid mobile number.");
    };
    let birthday = match f.birthday.trim() {
        "" => None,
        b => match normalise_birthday(b) {
            Some(b) => Some(b),
            None => return refuse("生日格式不正确。Please enter your birthday as YYYY-MM-DD."),
        },
    };
    let store = &app.store;
    let result: Result<Result<(), &str>, sqlx::Error> = async {
        if members::by_openid(store, &openid).await?.is_some() {
            return Ok(Err("您已有会员卡。You already have a card."));
        }
        let taken: Option<i64> = with_pool!(store, pool => sqlx::query_scalar("SELECT id FROM members WHERE phone = $1 LIMIT 1")
            .bind(&phone).fetch_optional(pool).await)?;
        if taken.is_some() {
            return Ok(Err("此手机号已有会员卡，请用卡号绑定。This mobile number already has a card: bind it with the card number."));
        }
        let now = now_ms();
        for _ in 0..5 {
            let card = format!("WX{:08}", rand::random::<u32>() % 100_000_000);
            let inserted = with_pool!(store, pool => sqlx::query(
                "INSERT INTO members (card_no, name, phone, birthday, tier, openid, source, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'standard', $5, 'enrol', $6, $6) ON CONFLICT DO NOTHING")
                .bind(&card).bind(&name).bind(&phone).bind(&birthday).bind(&openid).bind(now)
                .execute(pool).await.map(|r| r.rows_affected() == 1))?;
            if inserted {
                return Ok(Ok(()));
            }
        }
        Ok(Err("请稍后再试。Please try again."))
    }
    .await;
    match result {
        Ok(Ok(())) => redirect("/h5/card"),
        Ok(Err(why)) => refuse(why),
        Err(e) => unavailable(&app, e),
    }
}

#[derive(serde::Deserialize)]
struct TokenForm {
    #[serde(default)]
    token: String,
}

async fn unbind(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<TokenForm>) -> Response {
    let (session, openid) = match follower(&app, &headers, "card").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(r) = foreign_form(&app, &session, &f.token) {
        return r;
    }
    let result = with_pool!(&app.store, pool => sqlx::query("UPDATE members SET openid = NULL, updated_at = $2 WHERE openid = $1")
        .bind(&openid).bind(now_ms()).execute(pool).await.map(|_| ()));
    match result {
        Ok(()) => redirect("/h5/bind"),
        Err(e) => unavailable(&app, e),
    }
}

/// The member behind the session, or the response that gets the browser there.
async fn member(
    app: &AppState,
    headers: &HeaderMap,
    page: &str,
) -> Result<(Session, members::Member, String), Response> {
    let (session, openid) = follower(app, headers, page).await?;
    match members::by_openid(&app.store, &openid).await {
        Ok(Some(m)) => Ok((session, m, openid)),
        Ok(None) => Err(redirect("/h5/bind")),
        Err(e) => Err(unavailable(app, e)),
    }
}

async fn catalogue_page(
    app: &AppState,
    session: &Session,
    m: &members::Member,
    status: StatusCode,
    notice: Option<String>,
) -> Response {
    let now = now_ms();
    let (items, balance) =
        match tokio::try_join!(members::redeem::catalogue(&app.store), members::ledger::balance(&app.store, m.id, now))
        {
            Ok(v) => v,
            Err(e) => return unavailable(app, e),
        };
    let items: Vec<_> = items
        .iter()
        .map(|i| context! { id => i.id, name => i.name, cost => i.points_cost, stock => i.stock, affordable => balance.points >= i.points_cost })
        .collect();
    let token = session::form_token(&app.config.h5.session_secret, &session.id);
    app.pages.render(status, "catalogue.html", context! { items, points => balance.points, token, notice })
}

async fn catalogue(State(app): State<AppState>, headers: HeaderMap) -> Response {
    match member(&app, &headers, "catalogue").await {
        Ok((session, m, _)) => catalogue_page(&app, &session, &m, StatusCode::OK, None).await,
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct RedeemForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    item: i64,
}

async fn redeem(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<RedeemForm>) -> Response {
    let (session, m, openid) = match member(&app, &headers, "catalogue").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(r) = foreign_form(&app, &session, &f.token) {
        return r;
    }
    let notice = |id: i64, item: &members::redeem::Item| {
        let ctx = context! { item => item.name, points => item.points_cost, number => id };
        match app.notices.render("redemption_confirmed", &openid, ctx) {
            Ok(message) => Some(crate::jobs::outbox::NewJob::new(
                crate::jobs::outbox::KIND_TEMPLATE,
                message,
                format!("redemption:{id}"),
            )),
            Err(e) => {
                tracing::error!(error = %e, "redemption notice not rendered");
                None
            }
        }
    };
    match members::redeem::redeem(&app.store, m.id, f.item, notice).await {
        Ok(Ok((id, item))) => {
            let text = format!(
                "已兑换 {} (−{} 积分)，兑换号 {id}。Redeemed {} for {} points; redemption number {id}.",
                item.name, item.points_cost, item.name, item.points_cost
            );
            catalogue_page(&app, &session, &m, StatusCode::OK, Some(text)).await
        }
        Ok(Err(why)) => {
            let status = match why {
                members::redeem::Refused::NoSuchItem => StatusCode::NOT_FOUND,
                _ => StatusCode::CONFLICT,
            };
            catalogue_page(&app, &session, &m, status, Some(why.to_string())).await
        }
        Err(e) => unavailable(&app, e),
    }
}

#[derive(serde::Deserialize)]
struct BookQuery {
    store: Option<i64>,
    advisor: Option<i64>,
}

/// The booking page: upcoming bookings, then store → advisor → free slots.
async fn book_page(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<BookQuery>) -> Response {
    let (session, m, _) = match member(&app, &headers, "book").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    render_book(&app, &session, &m, q, StatusCode::OK, None).await
}

async fn render_book(
    app: &AppState,
    session: &Session,
    m: &members::Member,
    q: BookQuery,
    status: StatusCode,
    notice: Option<String>,
) -> Response {
    use crate::bookings;
    let now = now_ms();
    let result = async {
        let upcoming = bookings::upcoming(&app.store, m.id, now).await?;
        let stores = crate::stores::list(&app.store).await?;
        let advisors = match q.store {
            Some(s) => bookings::advisors(&app.store, s).await?,
            None => vec![],
        };
        let slots = match q.advisor {
            Some(a) if advisors.iter().any(|x| x.id == a) => bookings::free_slots(&app.store, a, now).await?,
            _ => vec![],
        };
        Ok::<_, sqlx::Error>((upcoming, stores, advisors, slots))
    }
    .await;
    let (upcoming, stores, advisors, slots) = match result {
        Ok(v) => v,
        Err(e) => return unavailable(app, e),
    };
    let upcoming: Vec<_> = upcoming
        .iter()
        .map(|b| context! { id => b.id, time => bookings::slot_label(b.slot_start), advisor => b.advisor, store => b.store })
        .collect();
    let stores: Vec<_> = stores.iter().map(|s| context! { id => s.id, name => s.name }).collect();
    let advisors: Vec<_> = advisors.iter().map(|a| context! { id => a.id, name => a.name }).collect();
    let slots: Vec<_> = slots.iter().map(|s| context! { start => s, label => bookings::slot_label(*s) }).collect();
    let token = session::form_token(&app.config.h5.session_secret, &session.id);
    app.pages.render(
        status,
        "book.html",
        context! { upcoming, stores, advisors, slots, store => q.store, advisor => q.advisor, token, notice },
    )
}

#[derive(serde::Deserialize)]
struct BookForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    advisor: i64,
    #[serde(default)]
    slot: i64,
}

async fn book(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<BookForm>) -> Response {
    let (session, m, openid) = match member(&app, &headers, "book").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(r) = foreign_form(&app, &session, &f.token) {
        return r;
    }
    let lead = app.config.notices.reminder_lead_mins;
    let jobs = |id: i64, d: &crate::bookings::Details| {
        let ctx = context! { store => d.store, advisor => d.advisor, time => d.time };
        let mut jobs = Vec::new();
        match app.notices.render("booking_confirmed", &openid, ctx.clone()) {
            Ok(m) => jobs.push(crate::jobs::outbox::NewJob::new(
                crate::jobs::outbox::KIND_TEMPLATE,
                m,
                format!("booking:{id}:confirmed"),
            )),
            Err(e) => tracing::error!(error = %e, "booking notice not rendered"),
        }
        match app.notices.render("booking_reminder", &openid, ctx) {
            Ok(message) => jobs.push(
                crate::jobs::outbox::NewJob::new(
                    crate::bookings::KIND_REMINDER,
                    crate::jobs::worker::ReminderJob { booking_id: id, message },
                    format!("booking:{id}:reminder"),
                )
                .at(crate::bookings::reminder_at(f.slot, lead, now_ms())),
            ),
            Err(e) => tracing::error!(error = %e, "booking reminder not rendered"),
        }
        jobs
    };
    match crate::bookings::book(&app.store, m.id, f.advisor, f.slot, jobs).await {
        Ok(Ok(_)) => {
            app.outbox_wake.notify_one();
            redirect("/h5/book")
        }
        Ok(Err(why)) => {
            let q = BookQuery { store: None, advisor: None };
            render_book(&app, &session, &m, q, StatusCode::CONFLICT, Some(why.to_string())).await
        }
        Err(e) => unavailable(&app, e),
    }
}

#[derive(serde::Deserialize)]
struct CancelForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    booking: i64,
}

async fn cancel_booking(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<CancelForm>) -> Response {
    let (session, m, _) = match member(&app, &headers, "book").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(r) = foreign_form(&app, &session, &f.token) {
        return r;
    }
    match crate::bookings::cancel(&app.store, m.id, f.booking).await {
        Ok(true) => redirect("/h5/book"),
        // Someone else's booking, or a past one: nothing changes.
        Ok(false) => message(
            &app,
            StatusCode::NOT_FOUND,
            "未找到预约 / No such booking",
            "There is no such upcoming booking of yours.",
        ),
        Err(e) => unavailable(&app, e),
    }
}

#[derive(serde::Deserialize)]
struct HistoryQuery {
    page: Option<i64>,
}

/// The whole points history, ten entries a page.
async fn history_page(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<HistoryQuery>) -> Response {
    let (_, m, _) = match member(&app, &headers, "history").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let page = q.page.unwrap_or(1).clamp(1, 10_000);
    // One more than a page tells whether there is a next one.
    let entries = match members::ledger::history(&app.store, m.id, HISTORY_PAGE + 1, (page - 1) * HISTORY_PAGE).await {
        Ok(e) => e,
        Err(e) => return unavailable(&app, e),
    };
    let more = entries.len() as i64 > HISTORY_PAGE;
    let entries: Vec<_> = entries
        .iter()
        .take(HISTORY_PAGE as usize)
        .map(|t| context! { date => date(t.created_at), kind => t.kind, points => t.points, note => t.note })
        .collect();
    let prev = (page > 1).then_some(page - 1);
    let next = more.then_some(page + 1);
    app.pages.render(StatusCode::OK, "history.html", context! { entries, page, prev, next })
}

fn account_form(
    app: &AppState,
    session: &Session,
    m: &members::Member,
    stores: &[crate::stores::BrandStore],
    status: StatusCode,
    error: Option<&str>,
    saved: bool,
) -> Response {
    let stores: Vec<_> = stores.iter().map(|s| context! { id => s.id, name => s.name }).collect();
    let token = session::form_token(&app.config.h5.session_secret, &session.id);
    app.pages.render(
        status,
        "account.html",
        context! { name => m.name, birthday => m.birthday, store_id => m.store_id, stores, token, error, saved },
    )
}

/// Account details: name, birthday, preferred store.
async fn account_page(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let (session, m, _) = match member(&app, &headers, "account").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match crate::stores::list(&app.store).await {
        Ok(stores) => account_form(&app, &session, &m, &stores, StatusCode::OK, None, false),
        Err(e) => unavailable(&app, e),
    }
}

#[derive(serde::Deserialize)]
struct AccountForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    birthday: String,
    #[serde(default)]
    store: String,
}

async fn account(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<AccountForm>) -> Response {
    let (session, mut m, _) = match member(&app, &headers, "account").await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(r) = foreign_form(&app, &session, &f.token) {
        return r;
    }
    let stores = match crate::stores::list(&app.store).await {
        Ok(s) => s,
        Err(e) => return unavailable(&app, e),
    };
    let refuse = |m: &members::Member, why: &str| {
        account_form(&app, &session, m, &stores, StatusCode::BAD_REQUEST, Some(why), false)
    };
    let Some(name) = normalise_name(&f.name) else { return refuse(&m, "请填写姓名。Please enter your name.") };
    let birthday = match f.birthday.trim() {
        "" => None,
        b => match normalise_birthday(b) {
            Some(b) => Some(b),
            None => return refuse(&m, "生日格式不正确。Please enter your birthday as YYYY-MM-DD."),
        },
    };
    let store_id = match f.store.trim() {
        "" => None,
        s => match s.parse::<i64>().ok().filter(|id| stores.iter().any(|st| st.id == *id)) {
            Some(id) => Some(id),
            None => return refuse(&m, "请选择门店。Please choose a store from the list."),
        },
    };
    let saved = with_pool!(&app.store, pool => sqlx::query("UPDATE members SET name = $2, birthday = $3, store_id = $4, updated_at = $5 WHERE id = $1")
        .bind(m.id).bind(&name).bind(&birthday).bind(store_id).bind(now_ms()).execute(pool).await.map(|_| ()));
    if let Err(e) = saved {
        return unavailable(&app, e);
    }
    (m.name, m.birthday, m.store_id) = (Some(name), birthday, store_id);
    account_form(&app, &session, &m, &stores, StatusCode::OK, None, true)
}
